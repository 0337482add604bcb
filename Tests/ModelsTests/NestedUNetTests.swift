import Foundation
import Models
import Tensor
import XCTest

/// The nested-UNet model (Matryoshka Diffusion) on a small random model: the zero adapters make
/// the nested network's low-resolution output that of its inner network alone (progressive
/// training starts where phase 1 ended); finite-difference gradient checks through the adapters
/// and the shifted-schedule noising; the shifted schedule against an independent float64
/// computation; pixels depend only on (model, prompt, seed, steps, guidance), not on batch
/// size, threads or neighbouring requests; cancel; bad arguments; save/load.
final class NestedUNetTests: XCTestCase {
    func tinyConfig(size: Int = 8) -> NestedUNetConfig {
        var c = NestedUNetConfig()
        c.imageSize = size
        c.textEncoder.dim = 8
        var outer = UNetConfig()
        outer.channels = [8, 16]; outer.attentionLevels = [false, false]; outer.layersPerLevel = 1
        outer.groups = 4; outer.heads = 2; outer.midBlock = false
        outer.condDim = 8; outer.contextDim = 8
        var inner = UNetConfig()
        inner.channels = [8, 16]; inner.attentionLevels = [false, true]; inner.layersPerLevel = 1
        inner.groups = 4; inner.heads = 2
        inner.condDim = 8; inner.contextDim = 8
        c.outer = outer; c.inner = inner
        c.classNames = ["a", "b"]
        return c
    }

    /// Output convs (and, unless `zeroAdapters`, the adapters) get values so every path matters.
    func tinyModel(zeroAdapters: Bool = false, size: Int = 8) throws -> NestedUNetModel {
        var rng = RandomGenerator(seed: 9)
        let m = try NestedUNetModel(config: tinyConfig(size: size), rng: &rng)
        for (k, p) in m.net.namedParameters where ((k.contains("conv2") || k.contains("out")) && !k.contains("adapter"))
            || (!zeroAdapters && k.contains("adapter")) {
            for i in 0..<p.count { p.data[i] = Float(sin(Double(i) * 0.37 + Double(k.count))) * 0.05 }
        }
        for (k, p) in m.textEncoder.namedParameters where k == "fc1.weight" {
            for i in 0..<p.count { p.data[i] = Float(cos(Double(i) * 0.61)) * 0.5 }
        }
        return m
    }

    func images(_ m: NestedUNetModel, _ reqs: [NestedUNetSampler.Request], steps: Int, threads: Int) throws -> [[Float]] {
        let n = m.sizes[0]
        let px = try Runtime.withThreadCap(threads) { try NestedUNetSampler(model: m).generate(reqs, steps: steps) }
        return (0..<(px.count / n)).map { Array(px[($0 * n)..<(($0 + 1) * n)]) }
    }

    // MARK: structure

    func testConfigSizesAndValidation() throws {
        var c = tinyConfig(size: 28)
        XCTAssertEqual(c.resolutions, [28, 14])
        c.outer.channels = [8, 16, 16]; c.outer.attentionLevels = [false, false, false]
        XCTAssertEqual(c.resolutions, [28, 7])
        XCTAssertNoThrow(try c.validate())
        c.imageSize = 30  // not divisible by 4
        XCTAssertThrowsError(try c.validate())
        var p = tinyConfig()
        p.inner = nil
        XCTAssertThrowsError(try p.validate(), "a plain UNet needs its middle block")
        p.outer.midBlock = true; p.lossWeights = [1]
        XCTAssertNoThrow(try p.validate())
        XCTAssertEqual(p.resolutions, [8])
        var w = tinyConfig()
        w.lossWeights = [1]
        XCTAssertThrowsError(try w.validate(), "one loss weight per resolution")
        // mid_block is written only when false: configs of UNets with a middle read as before.
        let json = String(decoding: try JSONEncoder().encode(UNetConfig()), as: UTF8.self)
        XCTAssertFalse(json.contains("mid_block"))
        XCTAssertTrue(try tinyConfig().json().contains("\"mid_block\":false"))
    }

    /// With zero adapters the nested network's low-resolution output is the inner network's
    /// alone, and its high-resolution output does not depend on the low-resolution input.
    func testZeroAdaptersKeepTheInnerNetwork() throws {
        let m = try tinyModel(zeroAdapters: true)
        var rng = RandomGenerator(seed: 3)
        let xh = Tensor.randn([2, 1, 8, 8], rng: &rng), xl = Tensor.randn([2, 1, 4, 4], rng: &rng)
        let xl2 = Tensor.randn([2, 1, 4, 4], rng: &rng)
        let cond = Tensor.randn([2, 8], rng: &rng)
        let ctx = cond.reshaped([2, 1, 8])
        let (nested, alone, other) = GradMode.withDisabled {
            (m.net([xh, xl], t: [10, 700], cond: cond, context: ctx),
             m.net.inner!(xl, t: [10, 700], cond: cond, context: ctx),
             m.net([xh, xl2], t: [10, 700], cond: cond, context: ctx))
        }
        XCTAssertEqual(nested[1].array, alone.array)
        XCTAssertEqual(nested[0].array, other[0].array)
        // Nonzero adapters couple the resolutions both ways.
        let c = try tinyModel()
        let (a, b) = GradMode.withDisabled {
            (c.net([xh, xl], t: [10, 700], cond: cond, context: ctx), c.net([xh, xl2], t: [10, 700], cond: cond, context: ctx))
        }
        XCTAssertNotEqual(a[0].array, b[0].array)
        let inner = GradMode.withDisabled { c.net.inner!(xl, t: [10, 700], cond: cond, context: ctx) }
        XCTAssertNotEqual(a[1].array, inner.array)
    }

    // MARK: gradients

    /// Finite differences (float64 accumulation of a random projection of the outputs) against
    /// backward, as Tests/TensorTests/GradCheck.swift does; max relative error with a floor of
    /// 1e-2 of the tensor's largest numeric gradient.
    func gradCheck(_ name: String, inputs: [Tensor], h: Float = 1e-2, bound: Double = 2e-2, _ f: () -> [Tensor]) {
        for t in inputs { t.requiresGrad = true; t.clearGrad() }
        var rng = RandomGenerator(seed: 7)
        let outs = f()
        let weights = outs.map { Tensor.randn($0.shape, rng: &rng) }
        // One backward pass of the projected sum (the outputs share most of the graph).
        var total: Tensor? = nil
        for (o, r) in zip(outs, weights) { let s = (o * r).sum(); total = total.map { $0 + s } ?? s }
        total!.backward()
        let analytic = inputs.map { $0.gradArray ?? [Float](repeating: 0, count: $0.count) }
        func loss() -> Double {
            GradMode.withDisabled {
                var acc = 0.0
                for (o, r) in zip(f(), weights) { for i in 0..<o.count { acc += Double(o[i]) * Double(r[i]) } }
                return acc
            }
        }
        var worst = 0.0, at = ""
        for (ti, t) in inputs.enumerated() {
            var numeric = [Double](repeating: 0, count: t.count)
            for i in 0..<t.count {
                let orig = t[i]
                t[i] = orig + h; let up = t[i]; let lp = loss()
                t[i] = orig - h; let down = t[i]; let lm = loss()
                t[i] = orig
                numeric[i] = (lp - lm) / (Double(up) - Double(down))
            }
            let floor = max(1e-3, 1e-2 * (numeric.map(abs).max() ?? 0))
            XCTAssertGreaterThan(numeric.map(abs).max() ?? 0, 1e-4, "\(name): input \(ti) has a gradient")
            for i in 0..<t.count {
                let a = Double(analytic[ti][i])
                let err = abs(a - numeric[i]) / max(abs(a), abs(numeric[i]), floor)
                if err > worst { worst = err; at = "input \(ti) element \(i): analytic \(a), numeric \(numeric[i])" }
            }
        }
        for t in inputs { t.requiresGrad = false; t.clearGrad() }
        print("gradcheck \(name): max relative error \(String(format: "%.3e", worst)) (bound \(bound)) \(at)")
        XCTAssertLessThan(worst, bound, "\(name): \(at)")
    }

    /// d(outputs at both resolutions)/d(adapter weights and biases).
    func testAdapterGradients() throws {
        let m = try tinyModel()
        var rng = RandomGenerator(seed: 4)
        let xh = Tensor.randn([2, 1, 8, 8], rng: &rng), xl = Tensor.randn([2, 1, 4, 4], rng: &rng)
        let cond = Tensor.randn([2, 8], rng: &rng)
        let ina = m.net.inAdapter!, outa = m.net.outAdapter!
        gradCheck("nested adapters", inputs: [ina.weight, ina.bias!, outa.weight, outa.bias!]) {
            m.net([xh, xl], t: [30, 600], cond: cond, context: cond.reshaped([2, 1, 8]))
        }
    }

    /// The multi-resolution training loss Σ_r w_r · mse(v̂_r, v_r) with x_t^r = α_r x0^r + σ_r ε^r
    /// on each resolution's shifted schedule, differentiated with respect to the clean images
    /// at both resolutions (through the noising, the nested network and the targets).
    func testShiftedScheduleLossGradients() throws {
        let m = try tinyModel()
        var rng = RandomGenerator(seed: 5)
        let x0h = Tensor.randn([2, 1, 8, 8], rng: &rng), x0l = Tensor.randn([2, 1, 4, 4], rng: &rng)
        let eh = Tensor.randn([2, 1, 8, 8], rng: &rng), el = Tensor.randn([2, 1, 4, 4], rng: &rng)
        let cond = Tensor.randn([2, 8], rng: &rng)
        let t = 400
        let (ah, sh) = m.schedules[0].scales(t), (al, sl) = m.schedules[1].scales(t)
        XCTAssertLessThan(ah, al, "the high resolution is noisier at the same step")
        gradCheck("shifted-schedule loss", inputs: [x0h, x0l]) {
            let xt = [ah * x0h + sh * eh, al * x0l + sl * el]
            let v = [ah * eh - sh * x0h, al * el - sl * x0l]
            let p = m.predictV(xt, t: [Float(t), Float(t)], cond: cond)
            // mse written out: mseLoss treats its target as a constant, and here it is not.
            let w = m.config.lossWeights
            return [(p[0] - v[0]).square().sum().scaled(w[0] / Float(p[0].count))
                    + (p[1] - v[1]).square().sum().scaled(w[1] / Float(p[1].count))]
        }
    }

    /// ᾱ'(s) = ᾱ / (ᾱ + s(1 − ᾱ)): dᾱ'/ds = −ᾱ(1 − ᾱ) / (ᾱ + s(1 − ᾱ))², against central
    /// differences of `shifted(by:)` in float64.
    func testShiftDerivative() {
        let base = DiffusionSchedule.cosine(trainSteps: 1000)
        var worst = 0.0
        for s in [0.5, 2.0, 4.0] {
            let h = 1e-5
            let up = base.shifted(by: s + h).alphasCumprod, down = base.shifted(by: s - h).alphasCumprod
            for t in stride(from: 0, to: 1000, by: 7) {
                let a = base.alphasCumprod[t]
                let analytic = -a * (1 - a) / ((a + s * (1 - a)) * (a + s * (1 - a)))
                let numeric = (up[t] - down[t]) / (2 * h)
                worst = max(worst, abs(analytic - numeric) / max(abs(analytic), 1e-8))
            }
        }
        print("shift derivative: max relative error \(worst)")
        XCTAssertLessThan(worst, 1e-6)
    }

    /// The schedules of a 28/14 model against an independent float64 computation of the
    /// cosine schedule (continuous ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + 0.008)/1.008 · π/2),
    /// with diffusers' β clip at 0.999) and MDM's shift log SNR_r = log SNR − p·log(r/r_low):
    /// |Δ log SNR| <= 2e-3 at every step (diffusers rounds each β to float32 before the
    /// product, which is the whole difference).
    func testShiftedScheduleAgainstIndependentComputation() {
        for p in [1.0, 2.0] {
            var c = tinyConfig(size: 28)
            c.shiftPower = p
            let sch = c.schedules
            XCTAssertEqual(sch.count, 2)
            let T = 1000
            func f(_ t: Double) -> Double { let v = cos((t / Double(T) + 0.008) / 1.008 * Double.pi / 2); return v * v }
            var abar = 1.0, worst = 0.0
            for t in 0..<T {
                abar *= 1 - min(1 - f(Double(t + 1)) / f(Double(t)), 0.999)
                let logSNR = log(abar / (1 - abar))
                for (l, r) in [28.0, 14.0].enumerated() {
                    let expected = logSNR - p * log(r / 14)
                    worst = max(worst, abs(sch[l].logSNR(t) - expected))
                }
            }
            print("shifted schedule p = \(p): max |Δ log SNR| \(worst)")
            XCTAssertLessThan(worst, 2e-3)
            XCTAssertEqual(sch[0].logSNR(500) - sch[1].logSNR(500), -p * log(2), accuracy: 1e-9)
        }
    }

    // MARK: sampling

    func testBatchThreadAndMixInvariance() throws {
        let m = try tinyModel()
        let one = try (0..<5).flatMap { i in
            try images(m, [.init(prompt: "b", seed: 100 + UInt64(i), count: 1, guidance: 2.5)], steps: 3, threads: 1)
        }
        XCTAssertGreaterThan(Set(one.map { $0.reduce(0, +) }).count, 3, "seeds give different images")
        for threads in [1, 2] {
            let batch = try images(m, [.init(prompt: "b", seed: 100, count: 5, guidance: 2.5)], steps: 3, threads: threads)
            XCTAssertEqual(batch, one, "\(threads) thread(s)")
        }
        let mixed = try images(m, [.init(prompt: "", seed: 1, count: 2, guidance: 1),
                                   .init(prompt: "b", seed: 102, count: 3, guidance: 2.5),
                                   .init(prompt: "a", seed: 5, count: 1, guidance: 0)], steps: 3, threads: 2)
        XCTAssertEqual(Array(mixed[2..<5]), Array(one[2..<5]))
        XCTAssertTrue(one.joined().allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    func testGuidanceSemanticsAndPrompts() throws {
        let m = try tinyModel()
        let g1 = try images(m, [.init(prompt: "a", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let other = try images(m, [.init(prompt: "b", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let uncond = try images(m, [.init(prompt: "", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let g0 = try images(m, [.init(prompt: "a", seed: 3, count: 2, guidance: 0)], steps: 2, threads: 1)
        XCTAssertEqual(g0, uncond, "guidance 0 is the unconditional prediction")
        XCTAssertTrue(g1 != other, "different prompts give different images")
    }

    /// `guidance_interval`: [0, 1] is every step (the same bytes as none); a band that holds no
    /// step of the grid is the conditional prediction alone (guidance 1), while guidance 0 stays
    /// unconditional; a band holding one of two steps differs from both; the batch around an
    /// image still does not matter; bad bands are refused by validation.
    func testGuidanceInterval() throws {
        let m = try tinyModel()
        let req = NestedUNetSampler.Request(prompt: "a", seed: 3, count: 2, guidance: 2.5)
        let every = try images(m, [req], steps: 2, threads: 1)
        let g1 = try images(m, [.init(prompt: "a", seed: 3, count: 2, guidance: 1)], steps: 2, threads: 1)
        let g0 = try images(m, [.init(prompt: "a", seed: 3, count: 2, guidance: 0)], steps: 2, threads: 1)
        XCTAssertTrue(every != g1)
        // Two trailing steps of T = 1000 start at t = 999 (fraction 1) and t = 499 (0.4995).
        m.config.guidanceInterval = [0, 1]
        XCTAssertEqual(try images(m, [req], steps: 2, threads: 1), every)
        m.config.guidanceInterval = [0.6, 0.9]
        XCTAssertEqual(try images(m, [req], steps: 2, threads: 1), g1, "no step in the band: conditional only")
        XCTAssertEqual(try images(m, [.init(prompt: "a", seed: 3, count: 2, guidance: 0)], steps: 2, threads: 1), g0)
        m.config.guidanceInterval = [0.4, 0.9]
        let band = try images(m, [req], steps: 2, threads: 1)
        XCTAssertTrue(band != every && band != g1, "one guided step of two")
        let mixed = try images(m, [.init(prompt: "b", seed: 1, count: 1, guidance: 1), req,
                                   .init(prompt: "a", seed: 9, count: 1, guidance: 0)], steps: 2, threads: 2)
        XCTAssertEqual(Array(mixed[1..<3]), band)
        for bad in [[0.5, 0.5], [-0.1, 0.5], [0.2], [0.3, 1.2], [Double.nan, 0.5], [0.8, 0.2]] {
            var c = m.config
            c.guidanceInterval = bad
            XCTAssertThrowsError(try c.validate(), "\(bad)")
        }
        var c = m.config
        c.guidanceInterval = [0.2, 0.8]
        XCTAssertEqual(try NestedUNetConfig.from(json: try c.json()).guidanceInterval, [0.2, 0.8])
        c.guidanceInterval = nil
        XCTAssertFalse(try c.json().contains("guidance_interval"), "absent when unset: stored configs are unchanged")
    }

    func testCancelAndBadArguments() throws {
        let m = try tinyModel()
        var seen: [Int] = []
        XCTAssertThrowsError(try NestedUNetSampler(model: m).generate(
            [.init(prompt: "x", seed: 1, count: 2, guidance: 2)], steps: 10, progress: { s, _ in seen.append(s); return s < 3 })) { error in
            XCTAssertEqual(error as? ModelError, .cancelled, "a cancel is its own error, not an invalid input")
        }
        XCTAssertEqual(seen, [1, 2, 3])
        for (steps, g) in [(0, Float(2)), (65, 2), (4, -1), (4, .nan), (4, .infinity)] {
            XCTAssertThrowsError(try NestedUNetSampler(model: m).generate([.init(prompt: "x", seed: 1, count: 1, guidance: g)], steps: steps),
                                 "steps \(steps), guidance \(g)")
        }
        XCTAssertThrowsError(try NestedUNetSampler(model: m).generate([], steps: 2))
    }

    /// Sizes and channels come from the config: RGB at 12x12 nests a 6x6 inner network.
    func testRGBAndOtherSizes() throws {
        var c = tinyConfig(size: 12)
        c.imageChannels = 3
        for u in [\NestedUNetConfig.outer, \NestedUNetConfig.inner!] { c[keyPath: u].inChannels = 3; c[keyPath: u].outChannels = 3 }
        var rng = RandomGenerator(seed: 2)
        let m = try NestedUNetModel(config: c, rng: &rng)
        XCTAssertEqual(c.resolutions, [12, 6])
        XCTAssertEqual(m.sizes, [3 * 144, 3 * 36])
        let px = try NestedUNetSampler(model: m).generate([.init(prompt: "a", seed: 1, count: 2, guidance: 2)], steps: 2)
        XCTAssertEqual(px.count, 2 * 3 * 144)
        c.inner!.inChannels = 1
        XCTAssertThrowsError(try c.validate())
    }

    func testSaveLoadRoundTripAndPooling() throws {
        let m = try tinyModel()
        let path = NSTemporaryDirectory() + "/nested-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try m.save(path: path)
        let back = try NestedUNetModel.load(path: path)
        XCTAssertEqual(back.config, m.config)
        XCTAssertEqual(try images(back, [.init(prompt: "a", seed: 4, count: 2, guidance: 3)], steps: 2, threads: 1),
                       try images(m, [.init(prompt: "a", seed: 4, count: 2, guidance: 3)], steps: 2, threads: 1))
        // D^r(x): 2x2 average pooling of a 4x4 image.
        let x: [Float] = (0..<16).map(Float.init)
        XCTAssertEqual(NestedUNetModel.pool(x, count: 1, channels: 1, side: 4, factor: 2), [2.5, 4.5, 10.5, 12.5])
    }
}
