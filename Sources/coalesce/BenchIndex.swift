import ArgumentParser
import Foundation
import Tensor
import Training

/// `coalesce bench index`: build time, queries/s and recall@1 (against exact search) of the
/// vector indexes the coalescer trainer can use, on Gaussian vectors of the trainer's key shape.
struct BenchIndex: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Vector index speed: build time, queries/s (batched and single), recall@1 vs exact.")

    @Option(help: "Stored vectors.") var count = 60000
    @Option(help: "Dimension (16 description + 24 latent = 40 by default).") var dim = 40
    @Option(help: "Queries per timed batch.") var batch = 256
    @Option(help: "Timed batched queries.") var queries = 20480
    @Option(help: "Comma-separated faiss::index_factory strings.") var indexes = "Flat,HNSW32,IVF256,Flat"

    func run() throws {
        _ = BLAS.load()
        var rng = RandomGenerator(seed: 1)
        let data = (0..<(count * dim)).map { _ in rng.nextNormal() }
        let q = (0..<(queries * dim)).map { _ in rng.nextNormal() }
        // Split "IVF256,Flat" correctly: known names start an entry.
        var names: [String] = []
        for part in indexes.split(separator: ",").map(String.init) {
            if part == "Flat", let last = names.last, last.hasPrefix("IVF"), !last.contains(",") { names[names.count - 1] += ",Flat" }
            else { names.append(part) }
        }
        let exact = try FaissIndex(dimension: dim)
        try exact.add(data)
        let truth = try exact.search(q, k: 1).ids
        print("index benchmark: \(count) vectors of dimension \(dim), \(queries) queries in batches of \(batch), FAISS threads \(FaissIndex.threads)")
        print("index            build s   batched q/s   single q/s   recall@1")
        for name in names {
            let t0 = Date()
            let idx = try FaissIndex(dimension: dim, description: name)
            try idx.add(data)
            if name.hasPrefix("IVF") { try idx.setParameter("nprobe", 8) }
            let build = Date().timeIntervalSince(t0)
            var ids: [Int] = []
            let t1 = Date()
            var i = 0
            while i < queries {
                let b = min(batch, queries - i)
                ids += try idx.search(Array(q[(i * dim)..<((i + b) * dim)]), k: 1).ids
                i += b
            }
            let batched = Double(queries) / Date().timeIntervalSince(t1)
            let singles = min(queries, 2000)
            let t2 = Date()
            for j in 0..<singles { _ = try idx.search(Array(q[(j * dim)..<((j + 1) * dim)]), k: 1) }
            let single = Double(singles) / Date().timeIntervalSince(t2)
            let recall = Double(zip(ids, truth).filter { $0 == $1 }.count) / Double(queries)
            print(String(format: "%-15@ %8.2f   %11.0f   %10.0f   %7.3f", name + (name.hasPrefix("IVF") ? " np8" : ""), build, batched, single, recall))
        }
    }
}
