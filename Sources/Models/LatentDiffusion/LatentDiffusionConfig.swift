import Foundation
import Tensor

/// Everything a latent diffusion model (the `latent-diffusion` teacher and the step-distilled
/// `distilled-unet` student) needs to generate, stored as JSON (snake_case) in the metadata of
/// its safetensors file under "config".
public struct LatentDiffusionConfig: Codable, Equatable, Sendable {
    /// The backend that serves it: "latent-diffusion" (the many-step teacher) or
    /// "distilled-unet" (the student).
    public var backend = "latent-diffusion"
    public var autoencoder = AutoencoderConfig()
    public var textEncoder = TextEncoderConfig()
    /// The denoiser on the latent grid (latent_channels x side x side); cond_dim and
    /// context_dim equal text_encoder.dim.
    public var unet = UNetConfig()
    /// Training steps T of the cosine schedule.
    public var trainSteps = 1000
    /// Sampling timestep spacing (trailing: the first step starts at T − 1).
    public var spacing: DiffusionSchedule.Spacing = .trailing
    /// Steps used when the caller does not say (50 for the teacher, 8 for the student).
    public var defaultSteps = 50
    /// Largest step count a request may ask for (at most `SamplingLimits.maxSteps`, CZ_MAX_STEPS).
    public var maxSteps = SamplingLimits.maxSteps
    /// Classifier-free guidance scale used when the caller does not say (chosen by measurement;
    /// models/README.md). 1 = the conditional prediction alone, 0 = unconditional.
    public var defaultGuidance: Float = 3
    /// Band of noise levels [lo, hi] (fractions of t / (T − 1), 1 = pure noise) where guidance
    /// applies; outside it a guided row runs conditional only (`ClassifierFreeGuidance`).
    /// nil: every step is guided.
    public var guidanceInterval: [Double]? = nil
    /// For a distilled student: the step count of its last distillation phase (its native
    /// step count); nil for a teacher.
    public var distilledSteps: Int? = nil
    /// For a student distilled with guidance in its target: the guidance it was distilled at
    /// (then it runs one network evaluation per step, no unconditional pass). nil: the
    /// student is guided at sampling time like the teacher.
    public var distilledGuidance: Float? = nil
    /// Names of the classes it was trained on (describe's "classes").
    public var classNames: [String] = []

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = LatentDiffusionConfig()
        backend = try c.decodeIfPresent(String.self, forKey: .backend) ?? d.backend
        autoencoder = try c.decode(AutoencoderConfig.self, forKey: .autoencoder)
        textEncoder = try c.decode(TextEncoderConfig.self, forKey: .textEncoder)
        unet = try c.decode(UNetConfig.self, forKey: .unet)
        trainSteps = try c.decodeIfPresent(Int.self, forKey: .trainSteps) ?? d.trainSteps
        spacing = try c.decodeIfPresent(DiffusionSchedule.Spacing.self, forKey: .spacing) ?? d.spacing
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? d.defaultSteps
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? d.maxSteps
        defaultGuidance = try c.decodeIfPresent(Float.self, forKey: .defaultGuidance) ?? d.defaultGuidance
        guidanceInterval = try c.decodeIfPresent([Double].self, forKey: .guidanceInterval)
        distilledSteps = try c.decodeIfPresent(Int.self, forKey: .distilledSteps)
        distilledGuidance = try c.decodeIfPresent(Float.self, forKey: .distilledGuidance)
        classNames = try c.decodeIfPresent([String].self, forKey: .classNames) ?? []
    }

    enum CodingKeys: String, CodingKey {
        case backend, autoencoder, textEncoder = "text_encoder", unet, trainSteps = "train_steps", spacing
        case defaultSteps = "default_steps", maxSteps = "max_steps", defaultGuidance = "default_guidance"
        case guidanceInterval = "guidance_interval"
        case distilledSteps = "distilled_steps", distilledGuidance = "distilled_guidance", classNames = "class_names"
    }

    public func validate() throws {
        try autoencoder.validate()
        try textEncoder.validate()
        try unet.validate()
        guard unet.inChannels == autoencoder.latentChannels, unet.outChannels == autoencoder.latentChannels else {
            throw ModelError.invalidConfig("unet in/out channels \(unet.inChannels)/\(unet.outChannels) must equal the latent channels \(autoencoder.latentChannels)")
        }
        guard unet.condDim == textEncoder.dim, unet.contextDim == 0 || unet.contextDim == textEncoder.dim else {
            throw ModelError.invalidConfig("unet cond_dim \(unet.condDim) and context_dim \(unet.contextDim) must equal text_encoder.dim \(textEncoder.dim)")
        }
        guard trainSteps >= 2, trainSteps <= 100_000 else {
            throw ModelError.invalidConfig("train_steps \(trainSteps) must be in 2...100000")
        }
        guard maxSteps >= 1, maxSteps <= trainSteps, defaultSteps >= 1, defaultSteps <= maxSteps else {
            throw ModelError.invalidConfig("need 1 <= default_steps (\(defaultSteps)) <= max_steps (\(maxSteps)) <= train_steps (\(trainSteps))")
        }
        guard defaultGuidance.isFinite, SamplingLimits.guidanceRange.contains(defaultGuidance) else {
            throw ModelError.invalidConfig("default_guidance \(defaultGuidance) must be in 0...\(Int(SamplingLimits.guidanceRange.upperBound))")
        }
        try ClassifierFreeGuidance.validate(interval: guidanceInterval)
        guard backend == "latent-diffusion" || backend == "distilled-unet" else {
            throw ModelError.invalidConfig("backend \"\(backend)\" must be latent-diffusion or distilled-unet")
        }
    }

    public func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    public static func from(json: String) throws -> LatentDiffusionConfig {
        do {
            return try JSONDecoder().decode(LatentDiffusionConfig.self, from: Data(json.utf8))
        } catch {
            throw ModelError.invalidConfig("latent diffusion config JSON: \(error)")
        }
    }

    /// The schedule it was trained with.
    public var schedule: DiffusionSchedule { .cosine(trainSteps: trainSteps) }
}
