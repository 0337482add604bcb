import Foundation
import Tensor

/// DDIM sampling (η = 0) of a `LatentDiffusionModel` with classifier-free guidance, for a batch
/// mixing requests with different prompts, seeds and guidance scales (one step count per call).
///
/// Image j of a request starts from x_T ~ N(0, I) drawn by its own generator seeded
/// `seed + j`, and every op on the way is row-invariant, so an image does not depend on the
/// batch around it. Per step, each row's v is v_c (guidance 1), v_u (guidance 0) or
/// v_u + g (v_c − v_u); the unconditional rows are evaluated only when a row needs them, and
/// only inside the config's `guidance_interval` (`ClassifierFreeGuidance`).
/// Thread-safe: it only reads the model.
public struct LatentDiffusionSampler {
    public let model: LatentDiffusionModel

    public init(model: LatentDiffusionModel) { self.model = model }

    public typealias Request = SamplerRequest

    /// Images (count * C*H*W planar floats in [0, 1]) of all requests in order. `progress(step,
    /// steps)` after each step; returning false cancels (throws `ModelError.cancelled`).
    public func generate(_ requests: [Request], steps: Int,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> [Float] {
        let x = try latents(requests, steps: steps, progress: progress)
        return try StageClock.measure("decode") { try GradMode.withDisabled { try model.autoencoder.decode(x).array } }
    }

    /// The final latents (B, latentDim) before decoding. `initialNoise` (B * latentDim values)
    /// replaces the seeded x_T draws (a teacher's noise-to-latent pairs for distillation).
    /// `visit(k, prev, x)` sees the whole batch's x_prev (B * latentDim values) after update k
    /// (0-based) lands on timestep `prev`: the points of each sampling trajectory.
    public func latents(_ requests: [Request], steps: Int, initialNoise: [Float]? = nil,
                        visit: ((_ update: Int, _ prev: Int, _ x: [Float]) -> Void)? = nil,
                        progress: ((Int, Int) -> Bool)? = nil) throws -> Tensor {
        let cfg = model.config
        let (prompts, guidance, seeds) = try SamplerRequest.rows(requests, steps: steps, maxSteps: cfg.maxSteps)
        let b = prompts.count
        let (c, s) = model.latentShape
        let per = c * s * s
        var x = [Float](repeating: 0, count: b * per)
        if let initialNoise {
            guard initialNoise.count == b * per else {
                throw ModelError.invalidInput("initial noise has \(initialNoise.count) values, \(b) images need \(b * per)")
            }
            x = initialNoise
        } else {
            for i in 0..<b {
                var rng = RandomGenerator(seed: seeds[i])
                for k in 0..<per { x[i * per + k] = rng.nextNormal() }
            }
        }
        let cond = StageClock.measure("text encoder") { model.conditions(prompts) }, dim = cond.shape[1]
        let guide = ClassifierFreeGuidance(scales: guidance, interval: ClassifierFreeGuidance.range(cfg.guidanceInterval),
                                          trainSteps: model.schedule.trainSteps)
        let updates = model.schedule.updates(steps, spacing: cfg.spacing)
        try GradMode.withDisabled {
            for (k, u) in updates.enumerated() {
                let g = guide.scales(at: u.t)
                let (condRows, uncondRows) = ClassifierFreeGuidance.rows(g)
                // One network call for the conditional and the unconditional rows together
                // (row-invariant kernels: the same values as two calls, at larger GEMMs);
                // its condition rows are the conditional rows' embeddings, then zeros.
                let rowsIn = condRows + uncondRows
                let (xt, condAll) = StageClock.measure("guidance and DDIM update") { () -> (Tensor, Tensor) in
                    let condAll = Tensor(zeros: [rowsIn.count, dim])
                    for (r, i) in condRows.enumerated() {
                        (condAll.data + r * dim).update(from: cond.data + i * dim, count: dim)
                    }
                    return (Tensor(Self.rows(x, rowsIn, per), shape: [rowsIn.count, c, s, s]), condAll)
                }
                let out = StageClock.measure("UNet calls") {
                    model.predictV(xt, t: [Float](repeating: Float(u.t), count: rowsIn.count), cond: condAll).array
                }
                StageClock.measure("guidance and DDIM update") {
                    let v = ClassifierFreeGuidance.combine(g, per: per, vc: out, vu: out, vuStart: condRows.count * per)
                    model.schedule.ddimStep(&x, v: v, t: u.t, prev: u.prev)
                }
                visit?(k, u.prev, x)
                if let progress, !progress(k + 1, steps) { throw ModelError.cancelled }
            }
        }
        return Tensor(x, shape: [b, per])
    }

    static func rows(_ x: [Float], _ idx: [Int], _ per: Int) -> [Float] {
        var out = [Float](repeating: 0, count: idx.count * per)
        for (r, i) in idx.enumerated() { for j in 0..<per { out[r * per + j] = x[i * per + j] } }
        return out
    }
}
