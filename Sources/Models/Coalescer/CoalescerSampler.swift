import Foundation
import Tensor

/// How many coalescer steps to take.
public enum CoalescerSteps: Equatable, Sendable {
    /// Exactly n steps (n >= 1).
    case fixed(Int)
    /// Step until the predicted distance is below `auto_stop_distance` or the predicted direction
    /// is shorter than `min_direction_norm`, at most `auto_max_steps` steps.
    case auto

    /// Parses "2" or "auto".
    public init?(_ text: String) {
        if text.lowercased() == "auto" { self = .auto; return }
        guard let n = Int(text), n >= 1, n <= SamplingLimits.maxSteps else { return nil }
        self = .fixed(n)
    }
}

/// The result of one `CoalescerSampler.generate` call.
public struct CoalescerBatch: Sendable {
    /// count * S * S pixel values in [0, 1], image i at [i*S*S, (i+1)*S*S).
    public var pixels: [Float]
    /// Steps taken per image.
    public var steps: [Int]
    /// How many start points were redrawn (|u| below `min_direction_norm`), summed over images.
    public var redraws: Int
    /// Images whose start was still unsure after `max_redraws` redraws (the last draw was used).
    public var exhausted: Int
    /// |u| of the first step, per image (the net's confidence).
    public var firstDirectionNorms: [Float]
}

/// Generation with a trained coalescer (DESIGN.md, the seed proposal's "generation process"):
/// 1. DE = text_encoder(prompt); 2. R ~ N(0, I) in the whitened latent coordinates;
/// 3. (d, u) = net(R, DE); if |u| is tiny draw a new R (at most `max_redraws` times);
/// 4. x = R + normalize(u) * d; optionally repeat from x (re-noised to `renoise_levels` first,
/// where the model has them); 5. decode x.
///
/// Image i uses its own generator seeded with `seed + i`, so the same seed gives the same image
/// whatever the batch size. Thread-safe: it only reads the model.
public struct CoalescerSampler {
    public let model: CoalescerModel

    public init(model: CoalescerModel) { self.model = model }

    /// One request inside a mixed batch: `count` images of `prompt`, image j seeded `seed + j`.
    public struct Request: Sendable {
        public var prompt: String, seed: UInt64, count: Int
        public init(prompt: String, seed: UInt64, count: Int) {
            self.prompt = prompt; self.seed = seed; self.count = count
        }
    }

    /// Generates `count` images. `progress(step, totalSteps)` is called after each step; return
    /// false to cancel (throws `ModelError.cancelled`).
    public func generate(prompt: String, seed: UInt64, count: Int, steps: CoalescerSteps,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> CoalescerBatch {
        try generate([Request(prompt: prompt, seed: seed, count: count)], steps: steps, progress: progress)
    }

    /// Generates several requests (different prompts and seeds, the same steps) as one batch:
    /// one network call per step and one decode for all their images, in request order. Each
    /// image equals what a request of its own would give (same seed, same image).
    public func generate(_ requests: [Request], steps: CoalescerSteps,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> CoalescerBatch {
        let l = try latents(requests, steps: steps, progress: progress)
        let count = l.steps.count
        let pixels: [Float] = try GradMode.withDisabled {
            count == 0 ? [] : try model.decode(Tensor(l.points, shape: [count, model.config.net.latentDim])).array
        }
        return CoalescerBatch(pixels: pixels, steps: l.steps, redraws: l.redraws, exhausted: l.exhausted,
                              firstDirectionNorms: l.firstDirectionNorms)
    }

    /// The stepping alone: final points in whitened latent coordinates (count * latentDim) in
    /// `pixels`' place, without decoding.
    public func latents(prompt: String, seed: UInt64, count: Int, steps: CoalescerSteps,
                        progress: ((Int, Int) -> Bool)? = nil) throws -> (points: [Float], steps: [Int], redraws: Int, exhausted: Int, firstDirectionNorms: [Float]) {
        try latents([Request(prompt: prompt, seed: seed, count: count)], steps: steps, progress: progress)
    }

    /// The stepping alone for a mixed batch (see `generate(_:steps:progress:)`).
    public func latents(_ requests: [Request], steps: CoalescerSteps,
                        progress: ((Int, Int) -> Bool)? = nil) throws -> (points: [Float], steps: [Int], redraws: Int, exhausted: Int, firstDirectionNorms: [Float]) {
        for r in requests where r.count < 0 { throw ModelError.invalidInput("count \(r.count) must be >= 0") }
        if case let .fixed(n) = steps, n < 1 { throw ModelError.invalidInput("steps \(n) must be >= 1") }
        let cfg = model.config
        let k = cfg.net.latentDim, dd = cfg.net.descDim
        let count = requests.reduce(0) { $0 + $1.count }
        if count == 0 { return ([], [], 0, 0, []) }
        let maxSteps: Int
        switch steps {
        case let .fixed(n): maxSteps = n
        case .auto: maxSteps = cfg.autoMaxSteps
        }
        return try GradMode.withDisabled {
            // One embedding per distinct prompt.
            var promptRow: [String: Int] = [:], prompts: [String] = []
            for r in requests where r.count > 0 && promptRow[r.prompt] == nil {
                promptRow[r.prompt] = prompts.count
                prompts.append(r.prompt)
            }
            let embedded = model.textEncoder.embed(prompts)        // embedded: (P, descDim)
            var rngs: [RandomGenerator] = []
            rngs.reserveCapacity(count)
            let de = Tensor(zeros: [count, dd])                     // de: (N, descDim)
            for r in requests where r.count > 0 {
                let src = embedded.data + promptRow[r.prompt]! * dd
                for j in 0..<r.count {
                    (de.data + rngs.count * dd).update(from: src, count: dd)
                    rngs.append(RandomGenerator(seed: r.seed &+ UInt64(j)))
                }
            }
            let x = Tensor(zeros: [count, k])                       // x: (N, k) current points
            for i in 0..<count { for j in 0..<k { x.data[i * k + j] = rngs[i].nextNormal() } }

            var stepsTaken = [Int](repeating: 0, count: count)
            var active = [Bool](repeating: true, count: count)
            var redraws = 0, exhausted = 0
            var firstNorms = [Float](repeating: 0, count: count)
            let levels = Tensor(filled: 1, shape: [count, 1])        // levels: (N, 1) noise level of x
            for step in 0..<maxSteps {
                let t = cfg.renoiseLevel(beforeStep: step)
                if step > 0 && t > 0 {
                    // Re-noise to level t from each image's own generator (consistency-model
                    // multistep sampling) along the config's path; the net is told the level.
                    let (a, b) = cfg.renoisePath.coefficients(level: t, scales: model.projection.scales.array)
                    for i in 0..<count where active[i] {
                        for j in 0..<k { x.data[i * k + j] = a[j] * x.data[i * k + j] + b[j] * rngs[i].nextNormal() }
                    }
                }
                if step > 0 { for i in 0..<count { levels.data[i] = t } }
                var (d, u) = model.net(x, de, level: levels)
                var norms = Self.rowNorms(u)
                if step == 0 {
                    // Redraw unsure starts, batched over the images that need it.
                    var tries = [Int](repeating: 0, count: count)
                    while true {
                        let redo = (0..<count).filter { norms[$0] < cfg.minDirectionNorm && tries[$0] < cfg.maxRedraws }
                        if redo.isEmpty { break }
                        for i in redo {
                            tries[i] += 1; redraws += 1
                            for j in 0..<k { x.data[i * k + j] = rngs[i].nextNormal() }
                        }
                        (d, u) = model.net(x, de, level: levels)
                        norms = Self.rowNorms(u)
                    }
                    for i in 0..<count where norms[i] < cfg.minDirectionNorm { exhausted += 1 }
                    firstNorms = norms
                } else if steps == .auto {
                    for i in 0..<count where active[i] {
                        if d.data[i] < cfg.autoStopDistance || norms[i] < cfg.minDirectionNorm { active[i] = false }
                    }
                }
                for i in 0..<count where active[i] {
                    let scale = max(0, d.data[i]) / max(norms[i], 1e-12)
                    for j in 0..<k { x.data[i * k + j] += scale * u.data[i * k + j] }
                    stepsTaken[i] += 1
                }
                if let progress, !progress(step + 1, maxSteps) { throw ModelError.cancelled }
                if !active.contains(true) { break }
            }
            return (x.array, stepsTaken, redraws, exhausted, firstNorms)
        }
    }

    static func rowNorms(_ t: Tensor) -> [Float] {
        let n = t.shape[0], k = t.shape[1]
        return (0..<n).map { i in
            var s: Float = 0
            for j in 0..<k { let v = t.data[i * k + j]; s += v * v }
            return s.squareRoot()
        }
    }
}
