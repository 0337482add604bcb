import Foundation

/// One request of a diffusion sampler: a prompt, the first seed (image j of the request uses
/// seed + j), how many images and the classifier-free guidance scale (1 = conditional only,
/// 0 = unconditional).
public struct SamplerRequest: Sendable, Equatable {
    public var prompt: String, seed: UInt64, count: Int, guidance: Float
    public init(prompt: String, seed: UInt64, count: Int, guidance: Float) {
        self.prompt = prompt; self.seed = seed; self.count = count; self.guidance = guidance
    }

    /// One row per image of `requests`, in order (image j of a request: its prompt, its
    /// guidance, seed + j), after checking the step count against `maxSteps`, each guidance
    /// against `SamplingLimits` and that some image is asked for. Both diffusion samplers start
    /// here.
    public static func rows(_ requests: [SamplerRequest], steps: Int, maxSteps: Int) throws
        -> (prompts: [String], guidance: [Float], seeds: [UInt64]) {
        guard steps >= 1, steps <= maxSteps else {
            throw ModelError.invalidInput("steps \(steps) must be in 1...\(maxSteps)")
        }
        var prompts: [String] = [], guidance: [Float] = [], seeds: [UInt64] = []
        for r in requests {
            guard r.guidance.isFinite, SamplingLimits.guidanceRange.contains(r.guidance) else {
                throw ModelError.invalidInput("guidance \(r.guidance) must be a finite number in 0...\(Int(SamplingLimits.guidanceRange.upperBound))")
            }
            for j in 0..<r.count { prompts.append(r.prompt); guidance.append(r.guidance); seeds.append(r.seed &+ UInt64(j)) }
        }
        guard !prompts.isEmpty else { throw ModelError.invalidInput("no images requested") }
        return (prompts, guidance, seeds)
    }
}

/// The sampling settings a diffusion model's config carries, which a model directory's
/// config.json may override and every face caps.
public protocol DiffusionSamplingSettings {
    var defaultSteps: Int { get set }
    var maxSteps: Int { get set }
    var defaultGuidance: Float { get set }
    var guidanceInterval: [Double]? { get set }
}

/// The clipping settings of a pixel-space sampler (x̂0 clipped to the pixel range at each step).
public protocol PixelSamplingSettings: DiffusionSamplingSettings {
    var clipSample: Bool { get set }
    var clipRecomputeNoise: Bool? { get set }
}

/// A diffusion generator as a backend serves it, the same for the latent models (teacher and
/// student) and the nested UNet: load from one safetensors file, the settings a directory may
/// override, what `describe` reports, and the sampler.
public protocol DiffusionGenerator: AnyObject {
    associatedtype Config: DiffusionSamplingSettings
    static func load(path: String) throws -> Self
    var config: Config { get set }
    /// The backend its config names ("latent-diffusion", "distilled-unet", "nested-unet").
    var backendName: String { get }
    /// Generated images: side (square) and channels.
    var imageSide: Int { get }
    var imageChannels: Int { get }
    var classNames: [String] { get }
    /// Packs weights for the inference kernels (same values); called once after loading.
    func prepareForInference()
    /// Images (count * C*S*S planar floats in [0, 1]) of all requests in order, one step count
    /// for all; `progress(step, steps)` after each step, false cancels (`ModelError.cancelled`).
    func generate(_ requests: [SamplerRequest], steps: Int, progress: ((Int, Int) -> Bool)?) throws -> [Float]
}

extension LatentDiffusionConfig: DiffusionSamplingSettings {}
extension NestedUNetConfig: PixelSamplingSettings {}

extension LatentDiffusionModel: DiffusionGenerator {
    public var backendName: String { config.backend }
    public var imageSide: Int { config.autoencoder.imageSize }
    public var imageChannels: Int { config.autoencoder.imageChannels }
    public var classNames: [String] { config.classNames }
    public func generate(_ requests: [SamplerRequest], steps: Int, progress: ((Int, Int) -> Bool)?) throws -> [Float] {
        try LatentDiffusionSampler(model: self).generate(requests, steps: steps, progress: progress)
    }
}

extension NestedUNetModel: DiffusionGenerator {
    public var backendName: String { config.backend }
    public var imageSide: Int { config.imageSize }
    public var imageChannels: Int { config.imageChannels }
    public var classNames: [String] { config.classNames }
    public func prepareForInference() { net.prepareForInference() }
    public func generate(_ requests: [SamplerRequest], steps: Int, progress: ((Int, Int) -> Bool)?) throws -> [Float] {
        try NestedUNetSampler(model: self).generate(requests, steps: steps, progress: progress)
    }
}
