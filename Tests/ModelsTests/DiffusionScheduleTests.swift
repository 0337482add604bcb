import Foundation
import Models
import Tensor
import XCTest

/// DiffusionSchedule against diffusers' DDIMScheduler (fixture written by scripts/ddim-fixture.py
/// with diffusers on PyTorch): the cosine ("squaredcos_cap_v2") ᾱ, the sampling timesteps of
/// both spacings, and one DDIM update in v-prediction.
final class DiffusionScheduleTests: XCTestCase {
    struct Fixture: Decodable {
        struct Steps: Decodable { var spacing: String; var steps: Int; var timesteps: [Int] }
        struct Update: Decodable {
            var spacing: String; var steps: Int; var t: Int
            var x: [Float]; var v: [Float]
            var prev_sample: [Float]; var pred_original_sample: [Float]
        }
        var alphas_cumprod: [Double]
        var timesteps: [Steps]
        var steps: [Update]
    }

    func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/ddim-diffusers.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// ᾱ_t: diffusers takes the cumulative product in float32, we in float64 of the same
    /// float32 betas. Tolerance: relative 1e-5 (the float32 product's rounding over 1000 factors).
    func testCosineAlphasMatchDiffusers() throws {
        let f = try fixture()
        let s = DiffusionSchedule.cosine(trainSteps: 1000)
        XCTAssertEqual(s.alphasCumprod.count, f.alphas_cumprod.count)
        var worst = 0.0
        for (a, b) in zip(s.alphasCumprod, f.alphas_cumprod) { worst = max(worst, abs(a - b) / b) }
        XCTAssertLessThan(worst, 1e-5, "largest relative difference of alphas_cumprod")
    }

    func testTimestepsMatchDiffusers() throws {
        let f = try fixture()
        let s = DiffusionSchedule.cosine(trainSteps: 1000)
        for case let e in f.timesteps {
            let spacing = DiffusionSchedule.Spacing(rawValue: e.spacing)!
            XCTAssertEqual(s.timesteps(e.steps, spacing: spacing), e.timesteps, "\(e.spacing) \(e.steps)")
            // The update lands where diffusers' step() does: t - T/n, clean (-1) below zero.
            for u in s.updates(e.steps, spacing: spacing) {
                XCTAssertEqual(u.prev, max(-1, u.t - 1000 / e.steps))
            }
        }
    }

    /// One DDIM step (η = 0): prev_sample and x̂0 to 2e-5 absolute (float32 arithmetic on
    /// values of order 1).
    func testDDIMStepMatchesDiffusers() throws {
        let f = try fixture()
        let s = DiffusionSchedule.cosine(trainSteps: 1000)
        XCTAssertEqual(f.steps.count, 9)
        for e in f.steps {
            let spacing = DiffusionSchedule.Spacing(rawValue: e.spacing)!
            let u = try XCTUnwrap(s.updates(e.steps, spacing: spacing).first { $0.t == e.t })
            var x = e.x
            s.ddimStep(&x, v: e.v, t: u.t, prev: u.prev)
            for i in x.indices {
                XCTAssertEqual(x[i], e.prev_sample[i], accuracy: 2e-5, "\(e.spacing) n=\(e.steps) t=\(e.t) [\(i)]")
                XCTAssertEqual(s.predictX0(x: e.x[i], v: e.v[i], t: u.t), e.pred_original_sample[i], accuracy: 2e-5)
            }
        }
    }

    /// Trailing grids nest (two steps of the 2n grid = one of the n grid), which progressive
    /// distillation relies on; and the shifted schedule divides the SNR by s.
    func testNestingAndShift() {
        let s = DiffusionSchedule.cosine(trainSteps: 1000)
        for n in [1, 2, 4, 8, 16, 32] {
            let a = s.timesteps(n, spacing: .trailing), b = s.timesteps(2 * n, spacing: .trailing)
            XCTAssertEqual(a, stride(from: 0, to: b.count, by: 2).map { b[$0] }, "n = \(n)")
        }
        let shifted = s.shifted(by: 4)
        for t in [0, 10, 300, 700, 998] {
            XCTAssertEqual(shifted.logSNR(t), s.logSNR(t) - log(4.0), accuracy: 1e-9)
        }
    }

    /// Clipping x̂0: without clipping at work (|x̂0| <= 1) all three updates agree; where x̂0 is
    /// clipped, the recomputed ε̂ keeps x_t = α_t x̂0 + σ_t ε̂, so the update is α_prev·clip(x̂0)
    /// + σ_prev·(x_t − α_t·clip(x̂0)) / σ_t, between the unclipped and the plainly clipped one.
    func testClippedDDIMStepWithRecomputedNoise() {
        let s = DiffusionSchedule.cosine(trainSteps: 1000)
        let (t, prev) = (600, 400)
        let (a, sg) = s.scales(t), (ap, sp) = s.scales(prev)
        let x: [Float] = [0.3, -0.2, 2.5, -3.0], v: [Float] = [0.1, 0.05, -1.5, 2.0]
        var plain = x, clipped = x, recomputed = x
        s.ddimStep(&plain, v: v, t: t, prev: prev)
        s.ddimStep(&clipped, v: v, t: t, prev: prev, clip: 1)
        s.ddimStep(&recomputed, v: v, t: t, prev: prev, clip: 1, recomputeNoise: true)
        for i in x.indices {
            let x0 = a * x[i] - sg * v[i]
            if abs(x0) <= 1 {
                XCTAssertEqual(recomputed[i], plain[i], accuracy: 1e-5)
                XCTAssertEqual(clipped[i], plain[i])
            } else {
                let c = min(1, max(-1, x0))
                XCTAssertEqual(recomputed[i], ap * c + sp * (x[i] - a * c) / sg, accuracy: 1e-5)
                let lo = min(plain[i], clipped[i]), hi = max(plain[i], clipped[i])
                XCTAssertTrue(recomputed[i] >= lo - 1e-5 && recomputed[i] <= hi + 1e-5, "element \(i)")
            }
        }
        XCTAssertTrue(x.indices.contains { abs(a * x[$0] - sg * v[$0]) > 1 }, "the test clips something")
    }
}
