import CFaissShim
import Foundation
import Tensor

/// A nearest-neighbour index over fixed-dimension float vectors, squared-L2 metric.
///
/// The coalescer trainer keys every training pair by `concat(desc_scale * DE, IE)` and asks for
/// the pair nearest to `concat(desc_scale * DE_query, R)`. Ids are insertion order (0-based).
public protocol VectorIndex: AnyObject {
    /// Vector dimension.
    var dimension: Int { get }
    /// Number of stored vectors.
    var count: Int { get }
    /// Adds `n` vectors from `vectors` (n * dimension values, row-major).
    func add(_ vectors: [Float]) throws
    /// The `k` nearest stored vectors to each of the queries (n * dimension values): for query q,
    /// `ids[q * k + j]` and `distances[q * k + j]` (squared L2, ascending); id -1 where fewer exist.
    func search(_ queries: [Float], k: Int) throws -> (ids: [Int], distances: [Float])
}

/// Exact search by brute force: |q|^2 - 2 q.x + |x|^2 with one sgemm per block of queries.
/// The reference for tests and a fallback where FAISS is not wanted.
public final class BruteForceIndex: VectorIndex {
    public let dimension: Int
    private var data: [Float] = []
    private var norms: [Float] = []

    public init(dimension: Int) {
        precondition(dimension > 0, "BruteForceIndex: dimension must be > 0")
        self.dimension = dimension
    }

    public var count: Int { norms.count }

    public func add(_ vectors: [Float]) throws {
        guard vectors.count % dimension == 0 else {
            throw TrainingError.invalidData("index add: \(vectors.count) values is not a multiple of dimension \(dimension)")
        }
        let n = vectors.count / dimension
        data.append(contentsOf: vectors)
        for i in 0..<n {
            var s: Float = 0
            for j in 0..<dimension { let v = vectors[i * dimension + j]; s += v * v }
            norms.append(s)
        }
    }

    public func search(_ queries: [Float], k: Int) throws -> (ids: [Int], distances: [Float]) {
        guard k >= 1, queries.count % dimension == 0 else {
            throw TrainingError.invalidData("index search: k \(k) must be >= 1 and \(queries.count) values a multiple of \(dimension)")
        }
        let nq = queries.count / dimension, n = count
        var ids = [Int](repeating: -1, count: nq * k)
        var dists = [Float](repeating: .infinity, count: nq * k)
        if n == 0 || nq == 0 { return (ids, dists) }
        let block = max(1, min(nq, (1 << 22) / max(1, n)))
        var dot = [Float](repeating: 0, count: block * n)
        var q0 = 0
        while q0 < nq {
            let b = min(block, nq - q0)
            queries.withUnsafeBufferPointer { qp in
                data.withUnsafeBufferPointer { dp in
                    dot.withUnsafeMutableBufferPointer { op in
                        BLAS.sgemm(transA: false, transB: true, m: b, n: n, k: dimension,
                                   a: qp.baseAddress! + q0 * dimension, lda: dimension,
                                   b: dp.baseAddress!, ldb: dimension, beta: 0,
                                   c: op.baseAddress!, ldc: n)
                    }
                }
            }
            for qi in 0..<b {
                let q = q0 + qi
                var qn: Float = 0
                for j in 0..<dimension { let v = queries[q * dimension + j]; qn += v * v }
                // Keep the k best in a small sorted list (k is small).
                var bestD = [Float](repeating: .infinity, count: k)
                var bestI = [Int](repeating: -1, count: k)
                for i in 0..<n {
                    let d = max(0, qn - 2 * dot[qi * n + i] + norms[i])
                    if d < bestD[k - 1] {
                        var pos = k - 1
                        while pos > 0 && bestD[pos - 1] > d {
                            bestD[pos] = bestD[pos - 1]; bestI[pos] = bestI[pos - 1]; pos -= 1
                        }
                        bestD[pos] = d; bestI[pos] = i
                    }
                }
                for j in 0..<k { ids[q * k + j] = bestI[j]; dists[q * k + j] = bestD[j] }
            }
            q0 += b
        }
        return (ids, dists)
    }
}

/// A FAISS index (through the CFaissShim C++ target). `description` is a `faiss::index_factory`
/// string: "Flat" (exact, the default), "HNSW32" or "IVF256,Flat" (approximate). Indexes that
/// need training (IVF) are trained on the first batch given to `add`.
public final class FaissIndex: VectorIndex {
    public let dimension: Int
    public let description: String
    private let handle: OpaquePointer

    /// OpenMP threads FAISS uses. 1 by default: measured on our 2-core machines, FAISS's OpenMP
    /// pool (busy-waiting beside OpenBLAS's threads and the Swift runtime's) made batched exact
    /// search 20x slower (2.4k vs 48k queries/s over 3000 keys); `COALESCE_FAISS_THREADS` overrides.
    public static let threads: Int = {
        if let s = ProcessInfo.processInfo.environment["COALESCE_FAISS_THREADS"], let n = Int(s), n >= 1 { return n }
        return 1
    }()

    /// Creates the index; throws `TrainingError.invalidConfig` with FAISS's message on failure.
    public init(dimension: Int, description: String = "Flat") throws {
        _ = BLAS.load()  // OpenBLAS (chosen core) first: FAISS's BLAS calls forward to it.
        cfaiss_set_threads(Int32(FaissIndex.threads))
        guard let h = cfaiss_create(Int32(clamping: dimension), description) else {
            throw TrainingError.invalidConfig("FAISS index '\(description)' (dimension \(dimension)): \(FaissIndex.lastError)")
        }
        self.dimension = dimension
        self.description = description
        self.handle = h
    }

    deinit { cfaiss_free(handle) }

    static var lastError: String { String(cString: cfaiss_last_error()) }

    public var count: Int { Int(cfaiss_ntotal(handle)) }

    /// Sets a search parameter: "nprobe" (IVF) or "efSearch" (HNSW).
    public func setParameter(_ name: String, _ value: Double) throws {
        guard cfaiss_set_param(handle, name, value) == 0 else {
            throw TrainingError.invalidConfig("FAISS parameter \(name)=\(value): \(FaissIndex.lastError)")
        }
    }

    public func add(_ vectors: [Float]) throws {
        guard vectors.count % dimension == 0 else {
            throw TrainingError.invalidData("index add: \(vectors.count) values is not a multiple of dimension \(dimension)")
        }
        let n = Int64(vectors.count / dimension)
        if cfaiss_is_trained(handle) == 0 {
            guard cfaiss_train(handle, n, vectors) == 0 else {
                throw TrainingError.invalidData("FAISS train: \(FaissIndex.lastError)")
            }
        }
        guard cfaiss_add(handle, n, vectors) == 0 else {
            throw TrainingError.invalidData("FAISS add: \(FaissIndex.lastError)")
        }
    }

    public func search(_ queries: [Float], k: Int) throws -> (ids: [Int], distances: [Float]) {
        guard k >= 1, queries.count % dimension == 0 else {
            throw TrainingError.invalidData("index search: k \(k) must be >= 1 and \(queries.count) values a multiple of \(dimension)")
        }
        let nq = queries.count / dimension
        var labels = [Int64](repeating: -1, count: nq * k)
        var dists = [Float](repeating: 0, count: nq * k)
        if nq == 0 { return ([], []) }
        // FAISS runs one OpenMP thread and its sgemm goes to the single-threaded OpenBLAS (one
        // thread pool, see Runtime), so a batch is split into query blocks over our pool instead;
        // searching a built index is read-only and safe from several threads.
        let parts = nq >= 64 ? Runtime.availableThreads : 1
        let per = (nq + parts - 1) / parts
        var failed = Array(repeating: Int32(0), count: parts)
        let handle = self.handle, d = dimension
        queries.withUnsafeBufferPointer { qp in
            labels.withUnsafeMutableBufferPointer { lp in
                dists.withUnsafeMutableBufferPointer { dp in
                    failed.withUnsafeMutableBufferPointer { fp in
                        let (q, l, dd, f) = (qp.baseAddress!, lp.baseAddress!, dp.baseAddress!, fp.baseAddress!)
                        Runtime.parallelFor(parts, cost: Runtime.parallelGrain) { lo, hi in
                            for part in lo..<hi {
                                let q0 = part * per, q1 = min(nq, q0 + per)
                                if q0 >= q1 { continue }
                                f[part] = cfaiss_search(handle, Int64(q1 - q0), q + q0 * d, Int64(k),
                                                        dd + q0 * k, l + q0 * k)
                            }
                        }
                    }
                }
            }
        }
        guard failed.allSatisfy({ $0 == 0 }) else { throw TrainingError.invalidData("FAISS search: \(FaissIndex.lastError)") }
        return (labels.map { Int($0) }, dists)
    }
}
