import Foundation
import Models
import Tensor

/// Noise-to-latent pairs of a latent diffusion teacher: x_T and the latent its deterministic DDIM
/// sampler reaches from it, for one class prompt (or the empty prompt) each.
///
/// The coalescer's regression target from a prior start is otherwise the training item a vector
/// search finds, and from a random start many items are almost equally near, so the net learns
/// their mean (blurry, alike images). A deterministic sampler defines one target per start
/// instead (the coupling of rectified flow's "reflow" and of Luhman & Luhman's knowledge
/// distillation of iterative generative models): the net has nothing to average.
///
/// The coalescer runs in whitened PCA coordinates y = diag(1/s) V (z - mean). Its start R maps to
/// the teacher's noise by the same rotation, x_T = Vᵀ R (+ noise in the discarded directions),
/// so R = V x_T; for Gaussian data the teacher's map is then the identity in these coordinates,
/// and the net learns only what is not Gaussian about the data.
///
/// With `trajectory_every` > 0 the file also keeps points of each sampling trajectory: x_t after
/// every `trajectory_every`-th DDIM update (not the last, which is the target), at P timesteps
/// whose signal and noise scales (α_t, σ_t) are stored beside them. A point x_t on the way
/// determines the target as x_T does, and has the marginal of α_t z + σ_t ε, so a net trained on
/// (x_t, t) -> target can continue from a re-noised sample (consistency distillation's idea).
///
/// File: safetensors with `noise` (N, L), `latents` (N, L), `labels` (N; class index, -1 for the
/// empty prompt), optionally `trajectory` (N, P, L), `trajectory_timesteps`, `trajectory_alphas`
/// and `trajectory_sigmas` (P), and the generation settings in the metadata; written every
/// chunk, so an interrupted run continues where it stopped.
public struct TeacherPairs: Sendable {
    public var noise: [Float]
    public var latents: [Float]
    public var labels: [Int]
    public var latentDim: Int
    public var settings: Settings
    /// (N, P, L) trajectory points, pair-major; empty without `trajectory_every`.
    public var trajectory: [Float] = []
    /// The P timesteps of the trajectory points (noisiest first) and their α_t, σ_t.
    public var trajectoryTimesteps: [Int] = []
    public var trajectoryAlphas: [Float] = []
    public var trajectorySigmas: [Float] = []

    public var count: Int { labels.count }
    /// Trajectory points per pair.
    public var trajectoryLevels: Int { trajectoryTimesteps.count }

    /// How the pairs were made (stored in the file's metadata; a resumed run must match).
    public struct Settings: Codable, Equatable, Sendable {
        public var teacher: String
        public var steps: Int
        public var guidance: Float
        public var seed: UInt64
        public var unconditionalFraction: Float
        public var prompts: [String]
        /// FNV-1a hash of the teacher autoencoder's weights: the coalescer must decode with the same.
        public var autoencoderHash: String
        /// Keep x_t after every this many updates (0 = no trajectory points).
        public var trajectoryEvery: Int

        public init(teacher: String, steps: Int, guidance: Float, seed: UInt64, unconditionalFraction: Float,
                    prompts: [String], autoencoderHash: String, trajectoryEvery: Int = 0) {
            self.teacher = teacher; self.steps = steps; self.guidance = guidance; self.seed = seed
            self.unconditionalFraction = unconditionalFraction; self.prompts = prompts; self.autoencoderHash = autoencoderHash
            self.trajectoryEvery = trajectoryEvery
        }

        enum CodingKeys: String, CodingKey {
            case teacher, steps, guidance, seed, prompts
            case unconditionalFraction = "unconditional_fraction", autoencoderHash = "autoencoder_hash"
            case trajectoryEvery = "trajectory_every"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            teacher = try c.decode(String.self, forKey: .teacher)
            steps = try c.decode(Int.self, forKey: .steps)
            guidance = try c.decode(Float.self, forKey: .guidance)
            seed = try c.decode(UInt64.self, forKey: .seed)
            unconditionalFraction = try c.decode(Float.self, forKey: .unconditionalFraction)
            prompts = try c.decode([String].self, forKey: .prompts)
            autoencoderHash = try c.decode(String.self, forKey: .autoencoderHash)
            trajectoryEvery = try c.decodeIfPresent(Int.self, forKey: .trajectoryEvery) ?? 0
        }

        /// The 0-based updates after which a trajectory point is kept.
        public var trajectoryUpdates: [Int] {
            guard trajectoryEvery > 0 else { return [] }
            return (0..<max(0, steps - 1)).filter { ($0 + 1) % trajectoryEvery == 0 }
        }
    }

    /// Hash of an autoencoder's weights (names in order, values bit for bit).
    public static func hash(_ ae: ImageAutoencoder) -> String {
        var h = FNV1a()
        for (name, t) in ae.namedParameters {
            h.add(bytes: Array(name.utf8))
            h.add(floats: t.data, count: t.count)
        }
        return String(h.value, radix: 16)
    }

    public func save(path: String) throws {
        let n = count, l = latentDim
        let meta = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
        var tensors = ["noise": Tensor(noise, shape: [n, l]),
                       "latents": Tensor(latents, shape: [n, l]),
                       "labels": Tensor(labels.map(Float.init), shape: [n])]
        let p = trajectoryLevels
        if p > 0 {
            tensors["trajectory"] = Tensor(trajectory, shape: [n, p, l])
            tensors["trajectory_timesteps"] = Tensor(trajectoryTimesteps.map(Float.init), shape: [p])
            tensors["trajectory_alphas"] = Tensor(trajectoryAlphas, shape: [p])
            tensors["trajectory_sigmas"] = Tensor(trajectorySigmas, shape: [p])
        }
        let st = SafeTensors(tensors: tensors, metadata: ["teacher_pairs": meta])
        let tmp = path + ".tmp"
        try st.write(path: tmp)
        _ = try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: tmp, toPath: path)
    }

    public static func load(path: String) throws -> TeacherPairs {
        let st: SafeTensors
        do { st = try SafeTensors.read(path: path) } catch {
            throw TrainingError.invalidData("teacher pairs \(path): \(error)")
        }
        guard let meta = st.metadata["teacher_pairs"],
              let settings = try? JSONDecoder().decode(Settings.self, from: Data(meta.utf8)) else {
            throw TrainingError.invalidData("\(path) is not a teacher-pairs file (no teacher_pairs metadata; make one with `coalesce train teacher-pairs`)")
        }
        let noise = try st.tensor("noise"), latents = try st.tensor("latents"), labels = try st.tensor("labels")
        guard noise.rank == 2, noise.shape == latents.shape, labels.shape == [noise.shape[0]] else {
            throw TrainingError.invalidData("teacher pairs \(path): shapes noise \(noise.shape), latents \(latents.shape), labels \(labels.shape) do not match")
        }
        let ls = labels.array.map { Int($0) }
        guard ls.allSatisfy({ $0 >= -1 && $0 < max(1, settings.prompts.count) }) else {
            throw TrainingError.invalidData("teacher pairs \(path): a label is outside -1..<\(settings.prompts.count)")
        }
        var pairs = TeacherPairs(noise: noise.array, latents: latents.array, labels: ls, latentDim: noise.shape[1], settings: settings)
        let p = settings.trajectoryUpdates.count
        if p > 0 {
            let tr = try st.tensor("trajectory"), ts = try st.tensor("trajectory_timesteps")
            let ta = try st.tensor("trajectory_alphas"), tsg = try st.tensor("trajectory_sigmas")
            guard tr.shape == [noise.shape[0], p, noise.shape[1]], ts.shape == [p], ta.shape == [p], tsg.shape == [p] else {
                throw TrainingError.invalidData("teacher pairs \(path): trajectory \(tr.shape) does not hold \(p) points per pair of \(noise.shape)")
            }
            pairs.trajectory = tr.array
            pairs.trajectoryTimesteps = ts.array.map { Int($0) }
            pairs.trajectoryAlphas = ta.array
            pairs.trajectorySigmas = tsg.array
        }
        return pairs
    }

    /// Generates `count` pairs with `teacher` (appending to `path` if it holds pairs made with the
    /// same settings), writing the file after every `chunk` pairs. Pair i draws from its own
    /// generator seeded `seed + i`: whether it is unconditional, its class, then x_T; so the
    /// pairs do not depend on the chunk size or on where a run was resumed.
    @discardableResult
    public static func generate(teacher: LatentDiffusionModel, settings: Settings, count: Int, path: String,
                                chunk: Int = 512, progress enabled: Bool = true,
                                log: (String) -> Void = { print($0) }) throws -> TeacherPairs {
        guard count > 0, chunk > 0 else { throw TrainingError.invalidConfig("teacher pairs: count and chunk must be > 0") }
        guard !settings.prompts.isEmpty else { throw TrainingError.invalidConfig("teacher pairs: no prompts") }
        let (c, s) = teacher.latentShape
        let l = c * s * s
        var pairs = TeacherPairs(noise: [], latents: [], labels: [], latentDim: l, settings: settings)
        let kept = settings.trajectoryUpdates, p = kept.count
        let updates = teacher.schedule.updates(settings.steps, spacing: teacher.config.spacing)
        pairs.trajectoryTimesteps = kept.map { updates[$0].prev }
        pairs.trajectoryAlphas = pairs.trajectoryTimesteps.map { teacher.schedule.scales($0).alpha }
        pairs.trajectorySigmas = pairs.trajectoryTimesteps.map { teacher.schedule.scales($0).sigma }
        if FileManager.default.fileExists(atPath: path) {
            let prev = try load(path: path)
            guard prev.settings == settings, prev.latentDim == l else {
                throw TrainingError.invalidConfig("\(path) holds pairs made with other settings (\(prev.settings)); remove it or choose another --out")
            }
            pairs = prev
            log("teacher pairs: resuming at \(prev.count) of \(count) pairs from \(path)")
        }
        teacher.prepareForInference()
        let sampler = LatentDiffusionSampler(model: teacher)
        let reporter = ProgressReporter(label: "teacher pairs", total: max(1, count - pairs.count), itemsPerStep: 1,
                                        interval: 10, enabled: enabled)
        let start = pairs.count
        while pairs.count < count {
            let lo = pairs.count, hi = min(count, lo + chunk)
            var requests: [LatentDiffusionSampler.Request] = [], noise: [Float] = [], labels: [Int] = []
            for i in lo..<hi {
                var rng = RandomGenerator(seed: settings.seed &+ UInt64(i))
                let uncond = rng.nextFloat() < settings.unconditionalFraction
                let label = rng.nextInt(below: settings.prompts.count)
                for _ in 0..<l { noise.append(rng.nextNormal()) }
                labels.append(uncond ? -1 : label)
                requests.append(.init(prompt: uncond ? "" : settings.prompts[label], seed: 0, count: 1,
                                      guidance: uncond ? 1 : settings.guidance))
            }
            // Trajectory points of this chunk, level-major as the sampler visits them.
            var visited = [[Float]](repeating: [], count: p)
            let out = try sampler.latents(requests, steps: settings.steps, initialNoise: noise, visit: { k, _, x in
                if let level = kept.firstIndex(of: k) { visited[level] = x }
            })
            if p > 0 {
                let rows = hi - lo
                var points = [Float](repeating: 0, count: rows * p * l)
                for level in 0..<p {
                    for i in 0..<rows {
                        for j in 0..<l { points[(i * p + level) * l + j] = visited[level][i * l + j] }
                    }
                }
                pairs.trajectory += points
            }
            pairs.noise += noise; pairs.latents += out.array; pairs.labels += labels
            try pairs.save(path: path)
            reporter.update(step: pairs.count - start)
        }
        return pairs
    }
}
