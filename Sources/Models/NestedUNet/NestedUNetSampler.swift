import Foundation
import Tensor

/// Joint DDIM sampling (η = 0) of every resolution of a `NestedUNetModel` with classifier-free
/// guidance, for a batch mixing requests with different prompts, seeds and guidance scales
/// (one step count per call). The output is the highest resolution.
///
/// Image j of a request starts from noise drawn by its own generator seeded `seed + j`: the
/// highest resolution first, then the lower one. Per step all resolutions share the timestep;
/// each takes a DDIM step on its own (shifted) schedule with its guided v
/// (`ClassifierFreeGuidance`, within the config's `guidance_interval`), x̂0 clipped to
/// [−1, 1] when the config says so. Every op on the way is row-invariant, so an image does not
/// depend on the batch around it. Thread-safe: it only reads the model.
public struct NestedUNetSampler {
    public let model: NestedUNetModel

    public init(model: NestedUNetModel) { self.model = model }

    public typealias Request = SamplerRequest

    /// Images (count * C*S*S planar floats in [0, 1]) of all requests in order. `progress(step,
    /// steps)` after each step; returning false cancels (throws `ModelError.cancelled`).
    public func generate(_ requests: [Request], steps: Int,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> [Float] {
        let xs = try sample(requests, steps: steps, progress: progress)
        return xs[0].map { min(1, max(0, ($0 + 1) / 2)) }
    }

    /// The final samples in [−1, 1] of every resolution, highest first (B * C*r*r each).
    public func sample(_ requests: [Request], steps: Int,
                       progress: ((Int, Int) -> Bool)? = nil) throws -> [[Float]] {
        let cfg = model.config
        let (prompts, guidance, seeds) = try SamplerRequest.rows(requests, steps: steps, maxSteps: cfg.maxSteps)
        let b = prompts.count
        let res = cfg.resolutions, sizes = model.sizes, c = cfg.imageChannels
        var xs = sizes.map { [Float](repeating: 0, count: b * $0) }
        for i in 0..<b {
            var rng = RandomGenerator(seed: seeds[i])
            for (l, per) in sizes.enumerated() { for k in 0..<per { xs[l][i * per + k] = rng.nextNormal() } }
        }
        let cond = model.conditions(prompts)
        let guide = ClassifierFreeGuidance(scales: guidance, interval: ClassifierFreeGuidance.range(cfg.guidanceInterval),
                                          trainSteps: model.schedules[0].trainSteps)
        // The schedules share the training steps, so one timestep grid serves every resolution.
        let updates = model.schedules[0].updates(steps, spacing: cfg.spacing)
        let clip: Float? = cfg.clipSample ? 1 : nil
        try GradMode.withDisabled {
            for (k, u) in updates.enumerated() {
                let g = guide.scales(at: u.t)
                let (condRows, uncondRows) = ClassifierFreeGuidance.rows(g)
                func predict(_ rows: [Int], _ cond: Tensor) -> [[Float]] {
                    let inputs = res.indices.map { l in
                        Tensor(LatentDiffusionSampler.rows(xs[l], rows, sizes[l]), shape: [rows.count, c, res[l], res[l]])
                    }
                    return model.predictV(inputs, t: [Float](repeating: Float(u.t), count: rows.count), cond: cond).map(\.array)
                }
                let vc = condRows.isEmpty ? [] : predict(condRows, condRows.count == b ? cond : cond.gatherRows(condRows))
                let vu = uncondRows.isEmpty ? [] : predict(uncondRows, Tensor(zeros: [uncondRows.count, cond.shape[1]]))
                for l in res.indices {
                    let v = ClassifierFreeGuidance.combine(g, per: sizes[l], vc: vc.isEmpty ? [] : vc[l], vu: vu.isEmpty ? [] : vu[l])
                    model.schedules[l].ddimStep(&xs[l], v: v, t: u.t, prev: u.prev, clip: clip,
                                                recomputeNoise: cfg.clipRecomputeNoise ?? false)
                }
                if let progress, !progress(k + 1, steps) { throw ModelError.cancelled }
            }
        }
        return xs
    }
}
