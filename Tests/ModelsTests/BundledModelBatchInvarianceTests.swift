import Foundation
import Models
import Tensor
import XCTest

/// An image's pixels depend only on (model, prompt, seed, steps): the same seeds generated at
/// batch sizes 1, 3, 8, 17 and 64, on 1 and 2 threads, as one request or mixed with others, give
/// bit-identical pixels. Runs the committed coalescer in process, on both decoder paths (the
/// packed channels-last kernel after `prepareForInference()` and the layer-by-layer one).
final class BatchInvarianceTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let seeds = 64
    static let base: UInt64 = 1000

    func committedModel(prepared: Bool) throws -> CoalescerModel {
        let path = Self.root + "/models/coalescer/coalescer.safetensors"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("no weights at \(path)") }
        let m = try CoalescerModel.load(path: path)
        if prepared { m.prepareForInference() }
        return m
    }

    /// Images `base ..< base + seeds`, generated in requests of `batch` consecutive seeds, with
    /// this thread's parallelism capped at `threads`. Returns one pixel array per seed.
    func images(_ sampler: CoalescerSampler, prompt: String, batch: Int, threads: Int) throws -> [[Float]] {
        let n = sampler.model.config.autoencoder.imageSize * sampler.model.config.autoencoder.imageSize
        var out: [[Float]] = []
        try Runtime.withThreadCap(threads) {
            var i = 0
            while i < Self.seeds {
                let count = min(batch, Self.seeds - i)
                let px = try sampler.generate(prompt: prompt, seed: Self.base + UInt64(i), count: count, steps: .fixed(2)).pixels
                for j in 0..<count { out.append(Array(px[(j * n)..<((j + 1) * n)])) }
                i += count
            }
        }
        return out
    }

    func checkSampler(prepared: Bool) throws {
        let sampler = CoalescerSampler(model: try committedModel(prepared: prepared))
        let reference = try images(sampler, prompt: "sneaker", batch: 1, threads: 1)
        XCTAssertEqual(reference.count, Self.seeds)
        XCTAssertGreaterThan(Set(reference.map { $0.reduce(0, +) }).count, Self.seeds / 2, "seeds give different images")
        for threads in [1, 2] {
            for batch in [1, 3, 8, 17, 64] {
                let got = try images(sampler, prompt: "sneaker", batch: batch, threads: threads)
                let differing = (0..<Self.seeds).filter { got[$0] != reference[$0] }
                XCTAssertEqual(differing, [], "batch \(batch), \(threads) thread(s), prepared \(prepared): seeds "
                               + "\(differing.map { Self.base + UInt64($0) }) differ from batch 1")
            }
        }
        // Mixed batch: other prompts around each image change nothing either.
        let mixed = try sampler.generate([.init(prompt: "ankle boot", seed: 7, count: 5),
                                          .init(prompt: "sneaker", seed: Self.base + 20, count: 9),
                                          .init(prompt: "", seed: 3, count: 2)], steps: .fixed(2)).pixels
        let n = mixed.count / 16
        for j in 0..<9 {
            XCTAssertEqual(Array(mixed[((5 + j) * n)..<((6 + j) * n)]), reference[20 + j], "mixed batch, image \(j)")
        }
    }

    func testPreparedDecoderIsBatchAndThreadInvariant() throws { try checkSampler(prepared: true) }

    func testLayerDecoderIsBatchAndThreadInvariant() throws { try checkSampler(prepared: false) }
}
