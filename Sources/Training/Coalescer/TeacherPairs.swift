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
/// File: safetensors with `noise` (N, L), `latents` (N, L), `labels` (N; class index, -1 for the
/// empty prompt) and the generation settings in the metadata; written every chunk, so an
/// interrupted run continues where it stopped.
public struct TeacherPairs: Sendable {
    public var noise: [Float]
    public var latents: [Float]
    public var labels: [Int]
    public var latentDim: Int
    public var settings: Settings

    public var count: Int { labels.count }

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

        public init(teacher: String, steps: Int, guidance: Float, seed: UInt64, unconditionalFraction: Float,
                    prompts: [String], autoencoderHash: String) {
            self.teacher = teacher; self.steps = steps; self.guidance = guidance; self.seed = seed
            self.unconditionalFraction = unconditionalFraction; self.prompts = prompts; self.autoencoderHash = autoencoderHash
        }

        enum CodingKeys: String, CodingKey {
            case teacher, steps, guidance, seed, prompts
            case unconditionalFraction = "unconditional_fraction", autoencoderHash = "autoencoder_hash"
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
        let st = SafeTensors(tensors: ["noise": Tensor(noise, shape: [n, l]),
                                       "latents": Tensor(latents, shape: [n, l]),
                                       "labels": Tensor(labels.map(Float.init), shape: [n])],
                             metadata: ["teacher_pairs": meta])
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
        return TeacherPairs(noise: noise.array, latents: latents.array, labels: ls, latentDim: noise.shape[1], settings: settings)
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
            let out = try sampler.latents(requests, steps: settings.steps, initialNoise: noise)
            pairs.noise += noise; pairs.latents += out.array; pairs.labels += labels
            try pairs.save(path: path)
            reporter.update(step: pairs.count - start)
        }
        return pairs
    }
}
