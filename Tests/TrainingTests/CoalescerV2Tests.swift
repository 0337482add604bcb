import Foundation
import Models
import Tensor
import Training
import XCTest

/// The coalescer's second version: residual net told the noise level, the differentiable jump,
/// one-to-one matching, re-noised second steps and the adversarial phase.
final class CoalescerV2Tests: XCTestCase {
    static func netConfig() -> CoalescerNetConfig {
        var c = CoalescerNetConfig()
        c.latentDim = 4; c.descDim = 3; c.hidden = 16; c.blocks = 2; c.levelInput = true
        return c
    }

    /// d L / d R of the jump x = R + relu(d) u / |u| against central differences (float64 sums).
    func testJumpGradientMatchesFiniteDifferences() throws {
        var rng = RandomGenerator(seed: 3)
        let net = try CoalescerNet(config: Self.netConfig(), rng: &rng)
        // Make the zero-initialised block outputs non-zero so the blocks matter.
        for (_, p) in net.namedParameters { for i in 0..<p.count { p.data[i] += 0.05 * rng.nextNormal() } }
        let r = Tensor.randn([3, 4], rng: &rng), desc = Tensor.randn([3, 3], rng: &rng)
        let level = Tensor([1, 0.5, 0.2], shape: [3, 1])
        let w = Tensor.randn([3, 4], rng: &rng)
        func loss() -> Double {
            GradMode.withDisabled {
                let x = net.jump(r, desc, level: level)
                var s = 0.0
                for i in 0..<x.count { s += Double(x.data[i]) * Double(w.data[i]) }
                return s
            }
        }
        r.requiresGrad = true
        let x = net.jump(r, desc, level: level)
        x.backward(seed: w)
        let analytic = r.gradArray!
        let h: Float = 1e-2
        var worst = 0.0
        for i in 0..<r.count {
            let v = r.data[i]
            r.data[i] = v + h; let up = loss()
            r.data[i] = v - h; let down = loss()
            r.data[i] = v
            let numeric = (up - down) / Double(2 * h)
            worst = max(worst, abs(numeric - Double(analytic[i])) / max(abs(numeric), 1e-2))
        }
        XCTAssertLessThan(worst, 2e-2)
    }

    func testOldConfigsStillLoad() throws {
        let json = #"{"latent_dim": 48, "desc_dim": 16, "hidden": 512, "depth": 3}"#
        let c = try JSONDecoder().decode(CoalescerNetConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c.blocks, 0)
        XCTAssertFalse(c.levelInput)
        let ae = try JSONDecoder().decode(AutoencoderConfig.self, from: Data(#"{"image_size": 28, "channels": [16, 32, 48], "latent_channels": 4, "kl_weight": 0.005, "latent_scale": 0.9}"#.utf8))
        XCTAssertEqual(ae.imageChannels, 1)
        XCTAssertEqual(ae.decoderWidths, [16, 32, 48])
    }

    func testOneToOneMatching() {
        // q1 takes item 5 (0.5), q2 then item 6 (0.8), q0's candidates are taken: its nearest.
        let ids = [5, 6, 5, 7, 5, 6]
        let dist: [Float] = [1, 2, 0.5, 3, 0.7, 0.8]
        XCTAssertEqual(CoalescerTrainer.matchOneToOne(ids: ids, distances: dist, rows: 3, k: 2), [5, 5, 6])
        // Distinct nearest items are kept as they are.
        XCTAssertEqual(CoalescerTrainer.matchOneToOne(ids: [1, 2, 3, 4], distances: [0, 1, 0, 1], rows: 2, k: 2), [1, 3])
    }

    /// Re-noised second steps draw from each image's own generator: a batch and single requests
    /// agree, and the re-noising changes the result.
    func testRenoisedStepsAreBatchIndependent() throws {
        var cfg = CoalescerConfig()
        cfg.autoencoder.channels = [8, 16, 16]
        cfg.textEncoder.buckets = 256; cfg.textEncoder.hidden = 16; cfg.textEncoder.dim = 8
        cfg.net.latentDim = 12; cfg.net.descDim = 8; cfg.net.hidden = 32; cfg.net.blocks = 2; cfg.net.levelInput = true
        var rng = RandomGenerator(seed: 4)
        let m = try CoalescerModel(config: cfg, rng: &rng)
        for i in 0..<m.projection.components.count { m.projection.components.data[i] = rng.nextNormal() * 0.1 }
        let plain = try CoalescerSampler(model: m).latents(prompt: "bag", seed: 10, count: 3, steps: .fixed(2)).points
        m.config.renoiseLevels = [0.5]
        let s = CoalescerSampler(model: m)
        let batch = try s.latents(prompt: "bag", seed: 10, count: 3, steps: .fixed(2)).points
        let single = try s.latents(prompt: "bag", seed: 12, count: 1, steps: .fixed(2)).points
        for j in 0..<12 { XCTAssertEqual(batch[2 * 12 + j], single[j], accuracy: 1e-5) }
        XCTAssertNotEqual(plain, batch)
        // The variance-preserving path: also per image, and a different point than linear.
        m.config.renoisePath = .variancePreserving
        for i in 0..<12 { m.projection.scales.data[i] = 0.2 + 0.2 * Float(i) }
        let vp = CoalescerSampler(model: m)
        let vpBatch = try vp.latents(prompt: "bag", seed: 10, count: 3, steps: .fixed(2)).points
        let vpSingle = try vp.latents(prompt: "bag", seed: 12, count: 1, steps: .fixed(2)).points
        XCTAssertEqual(Array(vpBatch[24..<36]), vpSingle)
        XCTAssertNotEqual(vpBatch, batch)
        m.config.renoisePath = .linear
        XCTAssertEqual(m.config.renoiseLevel(beforeStep: 0), 0)
        XCTAssertEqual(m.config.renoiseLevel(beforeStep: 3), 0.5)
        m.config.renoiseLevels = [1.5]
        XCTAssertThrowsError(try m.config.validate())
    }

    /// A few regression steps, then adversarial steps with a second-step term: the loop runs,
    /// the net changes in the adversarial phase, and everything stays finite.
    func testAdversarialPhaseRunsAndMovesTheNet() throws {
        var rng = RandomGenerator(seed: 5)
        let n = 200, k = 4, dd = 3
        var points = [Float](), labels = [Int](), desc = [Float]()
        let classDesc: [[[Float]]] = (0..<2).map { c in [[Float(c), 1, 0], [Float(c), 0.9, 0.1]] }
        for i in 0..<n {
            let c = i % 2
            labels.append(c)
            for _ in 0..<k { points.append(Float(2 * c - 1) + 0.3 * rng.nextNormal()) }
            desc += classDesc[c][0]
        }
        let data = CoalescerData(points: points, labels: labels, descriptions: desc, classDescriptions: classDesc,
                                 unconditional: [0, 0, 1], dim: k, descDim: dd)
        var o = CoalescerTrainingOptions()
        o.steps = 5; o.batchSize = 16; o.adversarialSteps = 4; o.secondStepLevel = 0.5; o.progress = false
        o.coupling = .matched; o.candidates = 4
        let trainer = try CoalescerTrainer(data: data, options: o, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        var c = Self.netConfig(); c.latentDim = k; c.descDim = dd
        let net = try CoalescerNet(config: c, rng: &rng)
        let report = try trainer.train(net)
        XCTAssertEqual(report.steps, 9)
        XCTAssertTrue(net.parameters.allSatisfy { $0.array.allSatisfy(\.isFinite) })
        // Only adversarial steps, from the trained net: it moves.
        var o2 = o; o2.steps = 0; o2.adversarialSteps = 3
        let before = net.parameters.map(\.array)
        let t2 = try CoalescerTrainer(data: data, options: o2, descScale: 2, makeIndex: { BruteForceIndex(dimension: $0) })
        XCTAssertEqual(try t2.train(net).steps, 3)
        XCTAssertNotEqual(before, net.parameters.map(\.array))
    }
}
