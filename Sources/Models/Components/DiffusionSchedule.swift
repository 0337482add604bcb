import Foundation

/// The discrete noise schedule of a diffusion model and the DDIM update (Song et al. 2021) in
/// v-prediction form (Salimans & Ho 2022).
///
/// `alphasCumprod[t]` (t = 0..<trainSteps) is ᾱ_t; the noised sample is
/// x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε and the network predicts v = √ᾱ_t·ε − √(1-ᾱ_t)·x0.
///
/// The cosine schedule is diffusers' "squaredcos_cap_v2" (Nichol & Dhariwal 2021):
/// β_t = min(1 − ᾱ(t+1)/ᾱ(t), 0.999) with ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), computed in
/// Double as diffusers does in float64 before its float32 cast. `shifted(by:)` divides every
/// SNR by s (Matryoshka Diffusion's resolution shift, log SNR − log s).
public struct DiffusionSchedule: Equatable, Sendable {
    public let trainSteps: Int
    /// ᾱ_t, t = 0..<trainSteps.
    public let alphasCumprod: [Double]

    public init(alphasCumprod: [Double]) {
        precondition(!alphasCumprod.isEmpty, "schedule needs at least one step")
        self.trainSteps = alphasCumprod.count
        self.alphasCumprod = alphasCumprod
    }

    /// diffusers `DDPMScheduler/DDIMScheduler(beta_schedule="squaredcos_cap_v2")`.
    public static func cosine(trainSteps: Int = 1000, maxBeta: Double = 0.999) -> DiffusionSchedule {
        func abar(_ t: Double) -> Double {
            let c = Foundation.cos((t + 0.008) / 1.008 * Double.pi / 2)
            return c * c
        }
        var cumprod: [Double] = []
        cumprod.reserveCapacity(trainSteps)
        var acc = 1.0
        for i in 0..<trainSteps {
            let t1 = Double(i) / Double(trainSteps), t2 = Double(i + 1) / Double(trainSteps)
            // diffusers casts betas to float32 before the cumulative product.
            let beta = Double(Float(min(1 - abar(t2) / abar(t1), maxBeta)))
            acc *= (1 - beta)
            cumprod.append(acc)
        }
        return DiffusionSchedule(alphasCumprod: cumprod)
    }

    /// The same steps with every SNR divided by `s` (s > 0): ᾱ' = ᾱ / (ᾱ + s·(1 − ᾱ)).
    public func shifted(by s: Double) -> DiffusionSchedule {
        precondition(s > 0, "shift must be positive")
        return DiffusionSchedule(alphasCumprod: alphasCumprod.map { a in a / (a + s * (1 - a)) })
    }

    /// Signal and noise scales (√ᾱ_t, √(1−ᾱ_t)) of step t; t = −1 is the clean end (ᾱ = 1,
    /// diffusers' `set_alpha_to_one`).
    public func scales(_ t: Int) -> (alpha: Float, sigma: Float) {
        let a = t < 0 ? 1.0 : alphasCumprod[t]
        return (Float(a.squareRoot()), Float((1 - a).squareRoot()))
    }

    /// log SNR of step t.
    public func logSNR(_ t: Int) -> Double { Foundation.log(alphasCumprod[t] / (1 - alphasCumprod[t])) }

    /// How sampling timesteps are picked from the training steps (diffusers' `timestep_spacing`).
    public enum Spacing: String, Codable, Sendable {
        /// (0..<n)·(T/n) reversed: 50 steps of T = 1000 are 980, 960, …, 0.
        case leading
        /// round(T, T − T/n, …) − 1: always starts at the noisiest step T − 1, which one- and
        /// few-step sampling needs (Lin et al. 2024, "Common diffusion noise schedules are flawed").
        case trailing
    }

    /// The n sampling timesteps, noisiest first (diffusers `set_timesteps`, steps_offset 0).
    public func timesteps(_ n: Int, spacing: Spacing) -> [Int] {
        precondition(n >= 1 && n <= trainSteps, "steps \(n) must be in 1...\(trainSteps)")
        switch spacing {
        case .leading:
            let ratio = trainSteps / n
            return (0..<n).reversed().map { $0 * ratio }
        case .trailing:
            let ratio = Double(trainSteps) / Double(n)
            return (0..<n).map { k in Int((Double(trainSteps) - Double(k) * ratio).rounded()) - 1 }
        }
    }

    /// The n DDIM updates of a sampling run as (from t, to prev), noisiest first; the last
    /// lands on −1 (clean). Each lands on the next timestep of the grid; where n divides T this
    /// is diffusers' `t − T/n`. Trailing grids nest: the 2n grid's steps 2k and 2k + 2 are the n
    /// grid's steps k and k + 1, which progressive distillation (two teacher steps = one student
    /// step) relies on.
    public func updates(_ n: Int, spacing: Spacing) -> [(t: Int, prev: Int)] {
        let ts = timesteps(n, spacing: spacing)
        return ts.indices.map { i in (ts[i], i + 1 < ts.count ? ts[i + 1] : -1) }
    }

    /// One deterministic DDIM step (η = 0) from x_t at step t to step `prev` given the
    /// network's v: x̂0 = α_t x_t − σ_t v, ε̂ = σ_t x_t + α_t v, x_prev = α_prev x̂0 + σ_prev ε̂.
    /// Element-wise over equal-length arrays; writes x_prev into `x`. With `clip`, x̂0 is
    /// clamped to [−clip, clip] before the update and ε̂ kept (diffusers' `clip_sample` with
    /// `use_clipped_model_output` false); with `recomputeNoise` too, ε̂ is recomputed from the
    /// clamped x̂0 so that x_t = α_t x̂0 + σ_t ε̂ still holds (`use_clipped_model_output` true).
    public func ddimStep(_ x: inout [Float], v: [Float], t: Int, prev: Int, clip: Float? = nil,
                         recomputeNoise: Bool = false) {
        precondition(x.count == v.count, "ddimStep: x and v differ in length")
        let (a, s) = scales(t), (ap, sp) = scales(prev)
        if let clip, recomputeNoise {
            for i in x.indices {
                let x0 = min(clip, max(-clip, a * x[i] - s * v[i]))
                let eps = (x[i] - a * x0) / s
                x[i] = ap * x0 + sp * eps
            }
            return
        }
        if let clip {
            for i in x.indices {
                let x0 = min(clip, max(-clip, a * x[i] - s * v[i]))
                let eps = s * x[i] + a * v[i]
                x[i] = ap * x0 + sp * eps
            }
            return
        }
        for i in x.indices {
            let x0 = a * x[i] - s * v[i]
            let eps = s * x[i] + a * v[i]
            x[i] = ap * x0 + sp * eps
        }
    }

    /// x̂0 from x_t and v at step t.
    public func predictX0(x: Float, v: Float, t: Int) -> Float {
        let (a, s) = scales(t)
        return a * x - s * v
    }
}
