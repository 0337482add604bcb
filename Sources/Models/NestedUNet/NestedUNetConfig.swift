import Foundation
import Tensor

/// Everything a `nested-unet` model (Matryoshka Diffusion in pixel space) needs to generate,
/// stored as JSON (snake_case) in the metadata of its safetensors file under "config".
///
/// Resolutions: the image side S and, when `inner` is set, the low side S / 2^(L−1) with L the
/// outer network's levels (28 -> 14 with two outer levels). A model without `inner` is a
/// plain single-resolution pixel UNet (the baseline the nesting is measured against; the
/// first training phase is such a model at the low resolution).
public struct NestedUNetConfig: Codable, Equatable, Sendable {
    public var backend = "nested-unet"
    /// Side S and channels of the generated images.
    public var imageSize = 28
    public var imageChannels = 1
    public var textEncoder = TextEncoderConfig()
    /// The high-resolution network (the outer one of a nested model, `mid_block` false; the
    /// whole network of a plain one). in/out channels = image_channels; cond_dim and
    /// context_dim = text_encoder.dim.
    public var outer = UNetConfig()
    /// The low-resolution network that replaces the outer network's middle; nil: plain UNet.
    public var inner: UNetConfig? = nil
    /// Training steps T of the cosine schedule.
    public var trainSteps = 1000
    /// Resolution shift exponent p: resolution r uses the cosine schedule with every SNR
    /// divided by (r / r_lowest)^p (log SNR − p·log(r / r_lowest)).
    public var shiftPower: Double = 1
    /// Loss weight per resolution, highest first (one entry per resolution).
    public var lossWeights: [Float] = [1, 1]
    /// Sampling timestep spacing.
    public var spacing: DiffusionSchedule.Spacing = .trailing
    /// Clip each step's x̂0 to the pixel range [−1, 1] (diffusers' `clip_sample`).
    public var clipSample = true
    /// With `clip_sample`: recompute each step's ε̂ from the clipped x̂0 (diffusers'
    /// `use_clipped_model_output`), so the update stays on a DDIM path through x_t. nil/false:
    /// ε̂ from the network, as trained models were first sampled.
    public var clipRecomputeNoise: Bool? = nil
    public var defaultSteps = 50
    public var maxSteps = SamplingLimits.maxSteps
    /// Classifier-free guidance used when the caller does not say (1 = conditional only).
    public var defaultGuidance: Float = 3
    /// Band of noise levels [lo, hi] (fractions of t / (T − 1), 1 = pure noise) where guidance
    /// applies; outside it a guided row runs conditional only (`ClassifierFreeGuidance`).
    /// nil: every step is guided.
    public var guidanceInterval: [Double]? = nil
    public var classNames: [String] = []

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = NestedUNetConfig()
        backend = try c.decodeIfPresent(String.self, forKey: .backend) ?? d.backend
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        imageChannels = try c.decodeIfPresent(Int.self, forKey: .imageChannels) ?? d.imageChannels
        textEncoder = try c.decode(TextEncoderConfig.self, forKey: .textEncoder)
        outer = try c.decode(UNetConfig.self, forKey: .outer)
        inner = try c.decodeIfPresent(UNetConfig.self, forKey: .inner)
        trainSteps = try c.decodeIfPresent(Int.self, forKey: .trainSteps) ?? d.trainSteps
        shiftPower = try c.decodeIfPresent(Double.self, forKey: .shiftPower) ?? d.shiftPower
        lossWeights = try c.decodeIfPresent([Float].self, forKey: .lossWeights) ?? (inner == nil ? [1] : d.lossWeights)
        spacing = try c.decodeIfPresent(DiffusionSchedule.Spacing.self, forKey: .spacing) ?? d.spacing
        clipSample = try c.decodeIfPresent(Bool.self, forKey: .clipSample) ?? d.clipSample
        clipRecomputeNoise = try c.decodeIfPresent(Bool.self, forKey: .clipRecomputeNoise)
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? d.defaultSteps
        maxSteps = try c.decodeIfPresent(Int.self, forKey: .maxSteps) ?? d.maxSteps
        defaultGuidance = try c.decodeIfPresent(Float.self, forKey: .defaultGuidance) ?? d.defaultGuidance
        guidanceInterval = try c.decodeIfPresent([Double].self, forKey: .guidanceInterval)
        classNames = try c.decodeIfPresent([String].self, forKey: .classNames) ?? []
    }

    enum CodingKeys: String, CodingKey {
        case backend, imageSize = "image_size", imageChannels = "image_channels", textEncoder = "text_encoder"
        case outer, inner, trainSteps = "train_steps", shiftPower = "shift_power", lossWeights = "loss_weights"
        case spacing, clipSample = "clip_sample", clipRecomputeNoise = "clip_recompute_noise", defaultSteps = "default_steps", maxSteps = "max_steps"
        case defaultGuidance = "default_guidance", guidanceInterval = "guidance_interval", classNames = "class_names"
    }

    /// Image sides, highest first: [S, S / 2^(L−1)] nested, [S] plain.
    public var resolutions: [Int] {
        guard inner != nil else { return [imageSize] }
        return [imageSize, imageSize >> (outer.channels.count - 1)]
    }

    /// The schedule of each resolution, highest first: cosine, SNR / (r / r_lowest)^p.
    public var schedules: [DiffusionSchedule] {
        let base = DiffusionSchedule.cosine(trainSteps: trainSteps)
        let low = Double(resolutions.last!)
        return resolutions.map { r in r == Int(low) ? base : base.shifted(by: Foundation.pow(Double(r) / low, shiftPower)) }
    }

    public func validate() throws {
        try textEncoder.validate()
        try outer.validate()
        guard backend == "nested-unet" else { throw ModelError.invalidConfig("backend \"\(backend)\" must be nested-unet") }
        guard imageSize >= 4, imageSize <= 1024, imageChannels == 1 || imageChannels == 3 else {
            throw ModelError.invalidConfig("image_size \(imageSize) must be in 4...1024 and image_channels \(imageChannels) 1 or 3")
        }
        func checkIO(_ u: UNetConfig, _ name: String) throws {
            guard u.inChannels == imageChannels, u.outChannels == imageChannels else {
                throw ModelError.invalidConfig("\(name) in/out channels \(u.inChannels)/\(u.outChannels) must equal image_channels \(imageChannels)")
            }
            guard u.condDim == textEncoder.dim, u.contextDim == 0 || u.contextDim == textEncoder.dim else {
                throw ModelError.invalidConfig("\(name) cond_dim \(u.condDim) and context_dim \(u.contextDim) must equal text_encoder.dim \(textEncoder.dim)")
            }
        }
        try checkIO(outer, "outer")
        if let inner {
            try inner.validate()
            try checkIO(inner, "inner")
            let k = outer.channels.count - 1
            guard k >= 1, imageSize % (1 << k) == 0 else {
                throw ModelError.invalidConfig("a nested outer UNet needs >= 2 levels and image_size \(imageSize) divisible by 2^\(k)")
            }
            guard !outer.midBlock else { throw ModelError.invalidConfig("the outer UNet of a nested model has mid_block false") }
        } else {
            guard outer.midBlock else { throw ModelError.invalidConfig("a plain UNet (no inner) needs its middle block") }
        }
        guard lossWeights.count == resolutions.count, lossWeights.allSatisfy({ $0.isFinite && $0 >= 0 }),
              lossWeights.contains(where: { $0 > 0 }) else {
            throw ModelError.invalidConfig("loss_weights \(lossWeights) must be \(resolutions.count) non-negative numbers, one positive")
        }
        guard shiftPower.isFinite, shiftPower >= 0, shiftPower <= 4 else {
            throw ModelError.invalidConfig("shift_power \(shiftPower) must be in 0...4")
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
    }

    public func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    public static func from(json: String) throws -> NestedUNetConfig {
        do {
            return try JSONDecoder().decode(NestedUNetConfig.self, from: Data(json.utf8))
        } catch {
            throw ModelError.invalidConfig("nested-unet config JSON: \(error)")
        }
    }
}
