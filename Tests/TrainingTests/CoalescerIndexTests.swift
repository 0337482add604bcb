import Foundation
import Tensor
import Training
import XCTest

/// The vector index: FAISS must return the true nearest neighbours (checked against brute force).
final class CoalescerIndexTests: XCTestCase {
    func randomVectors(_ n: Int, _ d: Int, seed: UInt64) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        return (0..<(n * d)).map { _ in rng.nextNormal() }
    }

    /// Exact distances by a plain double loop (independent of both indexes).
    func exactNearest(_ data: [Float], _ q: [Float], d: Int) -> (Int, Double) {
        var best = (-1, Double.infinity)
        for i in 0..<(data.count / d) {
            var s = 0.0
            for j in 0..<d { let e = Double(data[i * d + j] - q[j]); s += e * e }
            if s < best.1 { best = (i, s) }
        }
        return best
    }

    func testFlatMatchesBruteForce() throws {
        let d = 40, n = 3000, nq = 300, k = 5
        let data = randomVectors(n, d, seed: 1)
        let queries = randomVectors(nq, d, seed: 2)
        let faiss = try FaissIndex(dimension: d, description: "Flat")
        let brute = BruteForceIndex(dimension: d)
        try faiss.add(data)
        try brute.add(data)
        XCTAssertEqual(faiss.count, n)
        let f = try faiss.search(queries, k: k)
        let b = try brute.search(queries, k: k)
        XCTAssertEqual(f.ids, b.ids)
        for i in 0..<(nq * k) { XCTAssertEqual(f.distances[i], b.distances[i], accuracy: 1e-3 * max(1, b.distances[i])) }
        // And both against a float64 loop for the first neighbour.
        for q in 0..<20 {
            let (id, dist) = exactNearest(data, Array(queries[(q * d)..<((q + 1) * d)]), d: d)
            XCTAssertEqual(f.ids[q * k], id)
            XCTAssertEqual(Double(f.distances[q * k]), dist, accuracy: 1e-3 * dist)
        }
        // Distances ascend.
        for q in 0..<nq { for j in 1..<k { XCTAssertLessThanOrEqual(f.distances[q * k + j - 1], f.distances[q * k + j]) } }
    }

    func testSingleQueryAndSelfMatch() throws {
        let d = 24
        let data = randomVectors(500, d, seed: 3)
        let faiss = try FaissIndex(dimension: d)
        try faiss.add(data)
        // A stored vector is its own nearest neighbour at distance ~0 (one query: FAISS's non-BLAS path).
        let r = try faiss.search(Array(data[(77 * d)..<(78 * d)]), k: 1)
        XCTAssertEqual(r.ids, [77])
        XCTAssertLessThan(r.distances[0], 1e-4)
    }

    func testApproximateIndexesFindMostNeighbours() throws {
        let d = 16, n = 4000, nq = 200
        let data = randomVectors(n, d, seed: 4)
        let queries = randomVectors(nq, d, seed: 5)
        let truth = try { let b = BruteForceIndex(dimension: d); try b.add(data); return try b.search(queries, k: 1).ids }()
        for desc in ["HNSW32", "IVF64,Flat"] {
            let idx = try FaissIndex(dimension: d, description: desc)
            try idx.add(data)
            if desc.hasPrefix("IVF") { try idx.setParameter("nprobe", 16) }
            let got = try idx.search(queries, k: 1).ids
            let recall = Double(zip(got, truth).filter { $0 == $1 }.count) / Double(nq)
            XCTAssertGreaterThan(recall, 0.8, desc)
        }
    }

    func testBadInputThrowsInsteadOfCrashing() throws {
        XCTAssertThrowsError(try FaissIndex(dimension: 8, description: "NoSuchIndex,Foo")) { e in
            XCTAssertTrue("\(e)".contains("NoSuchIndex"), "\(e)")
        }
        let idx = try FaissIndex(dimension: 8)
        XCTAssertThrowsError(try idx.add([1, 2, 3]))
        XCTAssertThrowsError(try idx.search([1, 2, 3], k: 1))
        XCTAssertThrowsError(try idx.search([Float](repeating: 0, count: 8), k: 0))
        // Searching an empty index gives -1 ids, not a crash.
        let r = try idx.search([Float](repeating: 0, count: 8), k: 2)
        XCTAssertEqual(r.ids, [-1, -1])
    }
}
