import Foundation
import Models
import Tensor
import Training
import XCTest

/// The latent diffusion model and sampler on a small random model: pixels depend only on
/// (model, prompt, seed, steps, guidance) — not on batch size, threads, or the requests around
/// them; guidance 1 is the conditional prediction alone; cancel stops at the next step; bad
/// arguments are refused; the config round-trips through safetensors metadata.
final class LatentDiffusionTests: XCTestCase {
    func tinyModel() throws -> LatentDiffusionModel { try Self.tinyModel() }

    static func tinyModel() throws -> LatentDiffusionModel {
        var c = LatentDiffusionConfig()
        c.autoencoder.channels = [8, 8, 8]
        c.autoencoder.latentChannels = 4
        c.unet.channels = [16, 32]
        c.unet.attentionLevels = [false, true]
        c.unet.layersPerLevel = 1
        c.unet.groups = 4
        c.unet.heads = 2
        c.unet.inChannels = 4; c.unet.outChannels = 4
        c.unet.condDim = c.textEncoder.dim; c.unet.contextDim = c.textEncoder.dim
        c.classNames = ["a", "b"]
        var rng = RandomGenerator(seed: 9)
        let m = try LatentDiffusionModel(config: c, rng: &rng)
        // Output convs start at zero; give them values so predictions depend on the input.
        for (k, p) in m.unet.namedParameters where k.contains("conv2") || k.contains("out") {
            for i in 0..<p.count { p.data[i] = Float(sin(Double(i) * 0.37 + Double(k.count))) * 0.05 }
        }
        // The text encoder's first layer starts at zero (every prompt alike); make prompts differ.
        for (k, p) in m.textEncoder.namedParameters where k == "fc1.weight" {
            for i in 0..<p.count { p.data[i] = Float(cos(Double(i) * 0.61)) * 0.5 }
        }
        m.prepareForInference()
        return m
    }

    func images(_ m: LatentDiffusionModel, _ reqs: [LatentDiffusionSampler.Request], steps: Int, threads: Int) throws -> [[Float]] {
        let n = m.config.autoencoder.pixelCount
        let px = try Runtime.withThreadCap(threads) { try LatentDiffusionSampler(model: m).generate(reqs, steps: steps) }
        return (0..<(px.count / n)).map { Array(px[($0 * n)..<(($0 + 1) * n)]) }
    }

    /// Min-SNR-γ for v-prediction: min(SNR, γ) / (SNR + 1).
    func testMinSNRWeight() {
        let h = Float(0.5).squareRoot()
        XCTAssertEqual(LatentDiffusionTrainer.minSNRWeight(alpha: h, sigma: h, gamma: 5), 0.5, accuracy: 1e-6)  // SNR 1
        let a = Float(0.99).squareRoot(), s = Float(0.01).squareRoot()                                         // SNR 99
        XCTAssertEqual(LatentDiffusionTrainer.minSNRWeight(alpha: a, sigma: s, gamma: 5), 0.05, accuracy: 1e-5)
        XCTAssertEqual(LatentDiffusionTrainer.minSNRWeight(alpha: 0, sigma: 1, gamma: 5), 0)                    // pure noise
    }

    func testBatchThreadAndMixInvariance() throws {
        let m = try tinyModel()
        let one = try (0..<6).flatMap { i in
            try images(m, [.init(prompt: "ankle boot", seed: 100 + UInt64(i), count: 1, guidance: 2.5)], steps: 3, threads: 1)
        }
        XCTAssertGreaterThan(Set(one.map { $0.reduce(0, +) }).count, 3, "seeds give different images")
        for threads in [1, 2] {
            let batch = try images(m, [.init(prompt: "ankle boot", seed: 100, count: 6, guidance: 2.5)], steps: 3, threads: threads)
            XCTAssertEqual(batch, one, "\(threads) thread(s)")
        }
        // Mixed with other prompts and guidance scales (conditional-only and unconditional rows).
        let mixed = try images(m, [.init(prompt: "", seed: 1, count: 2, guidance: 1),
                                   .init(prompt: "ankle boot", seed: 102, count: 3, guidance: 2.5),
                                   .init(prompt: "bag", seed: 5, count: 2, guidance: 0)], steps: 3, threads: 2)
        XCTAssertEqual(Array(mixed[2..<5]), Array(one[2..<5]))
    }

    func testGuidanceOneIsTheConditionalPredictionAndPromptsMatter() throws {
        let m = try tinyModel()
        let g1 = try images(m, [.init(prompt: "bag", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let g1b = try images(m, [.init(prompt: "bag", seed: 3, count: 2, guidance: 1.0000001)], steps: 2, threads: 1)
        let other = try images(m, [.init(prompt: "trousers", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let uncond = try images(m, [.init(prompt: "", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let g0 = try images(m, [.init(prompt: "bag", seed: 3, count: 2, guidance: 0)], steps: 2, threads: 1)
        XCTAssertEqual(g0, uncond, "guidance 0 is the unconditional prediction")
        XCTAssertTrue(g1 != other, "different prompts give different images")
        for (a, b) in zip(g1.joined(), g1b.joined()) { XCTAssertEqual(a, b, accuracy: 1e-4) }
    }

    /// A `guidance_interval` band holding no step of the grid leaves the conditional
    /// prediction alone; [0, 1] is every step, the same bytes as no band.
    func testGuidanceInterval() throws {
        let m = try tinyModel()
        let req = LatentDiffusionSampler.Request(prompt: "bag", seed: 3, count: 2, guidance: 2.5)
        let every = try images(m, [req], steps: 2, threads: 1)
        let g1 = try images(m, [.init(prompt: "bag", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        XCTAssertTrue(every != g1)
        m.config.guidanceInterval = [0, 1]
        XCTAssertEqual(try images(m, [req], steps: 2, threads: 1), every)
        m.config.guidanceInterval = [0.6, 0.9]
        XCTAssertEqual(try images(m, [req], steps: 2, threads: 2), g1)
        m.config.guidanceInterval = [0.9, 0.6]
        XCTAssertThrowsError(try m.config.validate())
    }

    /// The distillation's guided teacher target follows the guidance interval step by step: no
    /// interval or one holding both steps guides both, one holding neither gives the conditional
    /// path, and one holding only the second step gives a third result.
    func testDistillationTeacherStepsFollowTheGuidanceInterval() throws {
        let m = try tinyModel()
        let (c, s) = m.latentShape
        var rng = RandomGenerator(seed: 4)
        let xt = (0..<(2 * c * s * s)).map { _ in rng.nextNormal() }
        let cond = m.textEncoder.embed(["a", "b"])
        let steps = [(999, 749), (749, 499)]                 // noise fractions 1 and 0.75
        func run(_ w: Float?, _ interval: ClosedRange<Double>?) -> [Float] {
            DistillationTrainer.teacherSteps(m, xt: xt, cond: cond, steps: steps, guidance: w, interval: interval)
        }
        let plain = run(nil, nil), guided = run(3, nil)
        XCTAssertNotEqual(plain, guided)
        XCTAssertEqual(run(3, 0...1), guided)
        XCTAssertEqual(run(3, 0...0.7), plain)
        let second = run(3, 0...0.8)
        XCTAssertNotEqual(second, plain)
        XCTAssertNotEqual(second, guided)
    }

    func testCancelAndBadArguments() throws {
        let m = try tinyModel()
        var seen: [Int] = []
        XCTAssertThrowsError(try LatentDiffusionSampler(model: m).generate(
            [.init(prompt: "x", seed: 1, count: 2, guidance: 2)], steps: 10, progress: { s, _ in seen.append(s); return s < 3 })) { error in
            XCTAssertEqual(error as? ModelError, .cancelled, "a cancel is its own error, not an invalid input")
        }
        XCTAssertEqual(seen, [1, 2, 3])
        for (steps, g) in [(0, Float(2)), (65, 2), (4, -1), (4, .nan), (4, .infinity)] {
            XCTAssertThrowsError(try LatentDiffusionSampler(model: m).generate([.init(prompt: "x", seed: 1, count: 1, guidance: g)], steps: steps),
                                 "steps \(steps), guidance \(g)")
        }
    }

    func testSaveLoadRoundTrip() throws {
        let m = try tinyModel()
        let path = NSTemporaryDirectory() + "/ld-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try m.save(path: path)
        let back = try LatentDiffusionModel.load(path: path)
        back.prepareForInference()
        XCTAssertEqual(back.config, m.config)
        XCTAssertEqual(try images(back, [.init(prompt: "bag", seed: 4, count: 2, guidance: 3)], steps: 2, threads: 1),
                       try images(m, [.init(prompt: "bag", seed: 4, count: 2, guidance: 3)], steps: 2, threads: 1))
    }

    /// Another text encoder (as `coalesce train text-encoder` fits a MiniLM projection) keeps the
    /// autoencoder and UNet bytes: the same embedding gives the same images; another embedding
    /// different ones; an encoder of another width is refused.
    func testReplacingTheTextEncoderKeepsTheUNet() throws {
        let m = try tinyModel()
        var rng = RandomGenerator(seed: 31)
        let same = try TextEncoder(config: m.config.textEncoder, rng: &rng)
        for ((_, p), (_, q)) in zip(same.namedParameters, m.textEncoder.namedParameters) { p.data.update(from: q.data, count: q.count) }
        let copy = try m.replacingTextEncoder(with: same)
        copy.prepareForInference()
        XCTAssertEqual(copy.stateDict().filter { !$0.key.hasPrefix("text_encoder.") }.mapValues(\.array),
                       m.stateDict().filter { !$0.key.hasPrefix("text_encoder.") }.mapValues(\.array))
        let req = [LatentDiffusionSampler.Request(prompt: "bag", seed: 4, count: 2, guidance: 3)]
        XCTAssertEqual(try images(copy, req, steps: 2, threads: 1), try images(m, req, steps: 2, threads: 1))
        let other = try TextEncoder(config: m.config.textEncoder, rng: &rng)
        for (k, p) in other.namedParameters where k == "fc1.weight" {
            for i in 0..<p.count { p.data[i] = Float(sin(Double(i) * 0.23)) * 0.5 }
        }
        let swapped = try m.replacingTextEncoder(with: other)
        swapped.prepareForInference()
        XCTAssertNotEqual(try images(swapped, req, steps: 2, threads: 1), try images(m, req, steps: 2, threads: 1))
        var wide = m.config.textEncoder
        wide.dim += 1
        XCTAssertThrowsError(try m.replacingTextEncoder(with: try TextEncoder(config: wide, rng: &rng)))
    }

    /// The stage clock of `bench generate --profile`: off, nothing is recorded; on, the sampler's
    /// stages are, the network once per step, and the images are the same bytes.
    func testStageClock() throws {
        let m = try tinyModel()
        let req = [LatentDiffusionSampler.Request(prompt: "bag", seed: 4, count: 2, guidance: 3)]
        StageClock.reset()
        let plain = try images(m, req, steps: 3, threads: 1)
        XCTAssertTrue(StageClock.report().isEmpty)
        StageClock.enabled = true
        defer { StageClock.enabled = false; StageClock.reset() }
        XCTAssertEqual(try images(m, req, steps: 3, threads: 1), plain)
        let report = StageClock.report()
        XCTAssertEqual(report.map(\.stage), ["text encoder", "guidance and DDIM update", "UNet calls", "decode"])
        XCTAssertEqual(report.first { $0.stage == "UNet calls" }?.calls, 3)
        XCTAssertTrue(report.allSatisfy { $0.seconds >= 0 })
    }

    /// The UNet joins odd-sized levels (7 -> 4 -> 8 -> crop 7) and its gradient reaches the input.
    func testUNetOnAnOddGridHasGradients() throws {
        var u = UNetConfig()
        u.channels = [8, 16, 16]; u.attentionLevels = [false, false, true]; u.layersPerLevel = 1; u.groups = 4; u.heads = 2
        var rng = RandomGenerator(seed: 1)
        let net = try UNet(u, rng: &rng)
        let x = Tensor.randn([2, 1, 7, 7], rng: &rng, requiresGrad: true)
        let y = net(x, t: [10, 500])
        XCTAssertEqual(y.shape, [2, 1, 7, 7])
        y.square().sum().backward()
        XCTAssertNotNil(x.grad)
        XCTAssertGreaterThan(net.blockNames.count, 5)
    }

    /// `disabledBlocks` (the block bypass of `coalesce bench unet-blocks`): each named block,
    /// bypassed, changes the output; an unknown name or an emptied set gives the same bytes.
    func testBlockBypass() throws {
        var u = UNetConfig()
        u.channels = [8, 16]; u.attentionLevels = [false, true]; u.layersPerLevel = 1; u.groups = 4; u.heads = 2
        u.condDim = 4; u.contextDim = 4
        var rng = RandomGenerator(seed: 2)
        let net = try UNet(u, rng: &rng)
        for (k, p) in net.namedParameters where k.contains("conv2") || k.contains("out") {
            for i in 0..<p.count { p.data[i] = Float(sin(Double(i) * 0.37 + Double(k.count))) * 0.05 }
        }
        let x = Tensor.randn([2, 1, 8, 8], rng: &rng), c = Tensor.randn([2, 4], rng: &rng)
        let ctx = c.reshaped([2, 1, 4])
        let base = GradMode.withDisabled { net(x, t: [10, 500], cond: c, context: ctx).array }
        for name in net.blockNames {
            net.disabledBlocks = [name]
            let y = GradMode.withDisabled { net(x, t: [10, 500], cond: c, context: ctx).array }
            XCTAssertNotEqual(y, base, name)
        }
        net.disabledBlocks = ["no.such.block"]
        XCTAssertEqual(GradMode.withDisabled { net(x, t: [10, 500], cond: c, context: ctx).array }, base)
        net.disabledBlocks = []
        XCTAssertEqual(GradMode.withDisabled { net(x, t: [10, 500], cond: c, context: ctx).array }, base)
    }
}
