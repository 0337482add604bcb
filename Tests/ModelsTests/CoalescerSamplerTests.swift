import Foundation
import Models
import Tensor
import XCTest

/// Generation: determinism, odd prompts, bad settings, and the saved checkpoint round trip.
final class CoalescerSamplerTests: XCTestCase {
    static func smallModel(seed: UInt64 = 9) throws -> CoalescerModel {
        var cfg = CoalescerConfig()
        cfg.autoencoder.channels = [8, 16, 16]
        cfg.textEncoder.buckets = 256; cfg.textEncoder.hidden = 16; cfg.textEncoder.dim = 8
        cfg.net.latentDim = 12; cfg.net.descDim = 8; cfg.net.hidden = 32; cfg.net.depth = 2
        var rng = RandomGenerator(seed: seed)
        let m = try CoalescerModel(config: cfg, rng: &rng)
        // A projection with random orthogonal-ish rows so decoding sees non-trivial latents.
        for i in 0..<m.projection.components.count { m.projection.components.data[i] = rng.nextNormal() * 0.1 }
        return m
    }

    func testSameSeedSameImageAndImageIUsesSeedPlusI() throws {
        let m = try Self.smallModel()
        let s = CoalescerSampler(model: m)
        let a = try s.generate(prompt: "ankle boot", seed: 42, count: 4, steps: .fixed(2))
        let b = try s.generate(prompt: "ankle boot", seed: 42, count: 4, steps: .fixed(2))
        XCTAssertEqual(a.pixels, b.pixels)
        XCTAssertEqual(a.pixels.count, 4 * 28 * 28)
        let c = try s.generate(prompt: "ankle boot", seed: 43, count: 4, steps: .fixed(2))
        XCTAssertNotEqual(a.pixels, c.pixels)
        // Image 2 of the seed-42 batch is image 0 of a seed-44 request.
        let single = try s.generate(prompt: "ankle boot", seed: 44, count: 1, steps: .fixed(2))
        let n = 28 * 28
        for i in 0..<n { XCTAssertEqual(a.pixels[2 * n + i], single.pixels[i], accuracy: 1e-5) }
        // A fresh model loaded from the same checkpoint gives the same pixels.
        let path = NSTemporaryDirectory() + "coalescer-test-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try m.save(path: path)
        let loaded = try CoalescerModel.load(path: path)
        XCTAssertEqual(loaded.config, m.config)
        let d = try CoalescerSampler(model: loaded).generate(prompt: "ankle boot", seed: 42, count: 4, steps: .fixed(2))
        XCTAssertEqual(a.pixels, d.pixels)
    }

    /// The fused channels-last decoder (after prepareForInference) computes what the autograd
    /// layers compute, and keeps "image i of a batch = a single image with seed + i".
    func testPreparedDecoderMatchesLayers() throws {
        let m = try Self.smallModel()
        let plain = try CoalescerSampler(model: m).generate(prompt: "sneaker", seed: 5, count: 3, steps: .fixed(2))
        m.prepareForInference()
        XCTAssertNotNil(m.autoencoder.inferenceDecoder)
        let fast = try CoalescerSampler(model: m).generate(prompt: "sneaker", seed: 5, count: 3, steps: .fixed(2))
        XCTAssertEqual(fast.pixels.count, plain.pixels.count)
        var worst: Float = 0
        for i in plain.pixels.indices { worst = max(worst, abs(fast.pixels[i] - plain.pixels[i])) }
        XCTAssertLessThan(worst, 1e-5)
        XCTAssertGreaterThan(Set(fast.pixels).count, 100)  // not a constant image
        let single = try CoalescerSampler(model: m).generate(prompt: "sneaker", seed: 7, count: 1, steps: .fixed(2))
        let n = 28 * 28
        for i in 0..<n { XCTAssertEqual(fast.pixels[2 * n + i], single.pixels[i], accuracy: 1e-5) }
        // With gradients on, decode takes the autograd layers even when prepared.
        let y = Tensor.randn([2, m.config.net.latentDim], rng: &rngForTest)
        let viaLayers = try m.decode(y)
        let viaFast = try GradMode.withDisabled { try m.decode(y) }
        for i in 0..<viaLayers.count { XCTAssertEqual(viaLayers.data[i], viaFast.data[i], accuracy: 1e-5) }
    }
    var rngForTest = RandomGenerator(seed: 11)

    /// A mixed batch (different prompts and seeds, as the daemon batches requests) gives each
    /// request the images it gets alone, in order.
    func testMixedBatchEqualsSeparateRequests() throws {
        let m = try Self.smallModel()
        // Random text-encoder and net weights (the fresh net's output layer starts at zero), so
        // that different prompts move the points differently.
        var r = RandomGenerator(seed: 21)
        for (_, t) in m.textEncoder.namedParameters + m.net.namedParameters {
            for i in 0..<t.count { t.data[i] = r.nextNormal() * 0.3 }
        }
        m.prepareForInference()
        let s = CoalescerSampler(model: m)
        let reqs = [CoalescerSampler.Request(prompt: "sneaker", seed: 3, count: 2),
                    CoalescerSampler.Request(prompt: "a bag", seed: 100, count: 0),
                    CoalescerSampler.Request(prompt: "ankle boot", seed: 50, count: 1),
                    CoalescerSampler.Request(prompt: "sneaker", seed: 77, count: 1)]
        let mixed = try s.generate(reqs, steps: .fixed(2))
        let alone = try reqs.flatMap { try s.generate(prompt: $0.prompt, seed: $0.seed, count: $0.count, steps: .fixed(2)).pixels }
        XCTAssertEqual(mixed.pixels.count, 4 * 28 * 28)
        XCTAssertEqual(mixed.steps, [2, 2, 2, 2])
        for i in alone.indices { XCTAssertEqual(mixed.pixels[i], alone[i], accuracy: 1e-5) }
        // The prompt is per request: the same seed with another prompt gives another image.
        let n = 28 * 28
        let other = try s.generate(prompt: "ankle boot", seed: 3, count: 1, steps: .fixed(2))
        XCTAssertNotEqual(Array(mixed.pixels[0..<n]), other.pixels)
    }

    func testOddPromptsGiveImages() throws {
        let s = CoalescerSampler(model: try Self.smallModel())
        let long = String(repeating: "very long prompt with a boot, ", count: 350)  // ~10 KB
        XCTAssertGreaterThan(long.utf8.count, 10_000)
        for prompt in ["", " ", "👢🥾 ботинок 靴", "!!!???...", "\u{0}", "zzqxj unknownword", long,
                       String(repeating: "a", count: 10_000)] {
            let r = try s.generate(prompt: prompt, seed: 1, count: 2, steps: .auto)
            XCTAssertEqual(r.pixels.count, 2 * 28 * 28)
            XCTAssertTrue(r.pixels.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 }, "prompt of \(prompt.count) chars")
            XCTAssertTrue(r.steps.allSatisfy { $0 >= 1 && $0 <= 4 })
        }
        let e = try Self.smallModel().textEncoder.embed(["", long])
        XCTAssertTrue(e.array.allSatisfy(\.isFinite))
    }

    func testBadSettingsAreErrors() throws {
        let s = CoalescerSampler(model: try Self.smallModel())
        XCTAssertThrowsError(try s.generate(prompt: "bag", seed: 1, count: 1, steps: .fixed(0)))
        XCTAssertThrowsError(try s.generate(prompt: "bag", seed: 1, count: -1, steps: .fixed(1)))
        XCTAssertEqual(try s.generate(prompt: "bag", seed: 1, count: 0, steps: .fixed(1)).pixels.count, 0)
        XCTAssertNil(CoalescerSteps("0")); XCTAssertNil(CoalescerSteps("x")); XCTAssertEqual(CoalescerSteps("auto"), .auto)
        // Cancellation from the progress callback.
        XCTAssertThrowsError(try s.generate(prompt: "bag", seed: 1, count: 1, steps: .fixed(3)) { step, _ in step < 2 }) { error in
            XCTAssertEqual(error as? ModelError, .cancelled)
        }
        XCTAssertThrowsError(try CoalescerModel.load(path: "/nonexistent/coalescer.safetensors"))
    }
}
