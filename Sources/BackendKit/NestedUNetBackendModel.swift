import Foundation
import Models

/// The model part of the nested-unet plugin: a `NestedUNetModel` sampled with joint DDIM over
/// its resolutions and classifier-free guidance; the highest resolution is the image.
public final class NestedUNetBackendModel: SwiftBackendModel {
    public let model: NestedUNetModel
    public let description: BackendDescription

    /// Loads `<directory>/<weights>` and checks that its config says `backend`.
    public init(backend: String, directory: String, config: ModelDirectoryConfig, defaultWeights: String) throws {
        let weights = try config.weights(default: defaultWeights)
        let model = try NestedUNetModel.load(path: directory + "/" + weights)
        guard model.config.backend == backend else {
            throw BackendError.invalidArgument("\(directory)/\(weights) holds a \(model.config.backend) model, not \(backend)")
        }
        if let s = try config.int("default_steps", in: 1...model.config.maxSteps) { model.config.defaultSteps = s }
        if let g = try config.number("default_guidance", in: 0...100) { model.config.defaultGuidance = Float(g) }
        // Every face caps steps at 64 (CZ_MAX_STEPS); report what can actually be asked for.
        model.config.maxSteps = min(model.config.maxSteps, 64)
        model.config.defaultSteps = min(model.config.defaultSteps, model.config.maxSteps)
        self.model = model
        let c = model.config
        description = BackendDescription(
            backend: backend, height: c.imageSize, width: c.imageSize,
            channels: c.imageChannels, defaultSteps: c.defaultSteps, maxSteps: c.maxSteps,
            maxBatch: BackendKit.maxCount, supportsGuidance: true, supportsAutoSteps: false,
            classes: c.classNames, defaultGuidance: c.defaultGuidance)
    }

    public func generate(_ requests: [BackendRequest], progress: (Int, Int) -> Bool) throws -> [Float] {
        let steps = requests[0].steps
        let sampler = NestedUNetSampler(model: model)
        do {
            return try withoutActuallyEscaping(progress) { p in
                try sampler.generate(requests.map { .init(prompt: $0.prompt, seed: $0.seed, count: $0.count, guidance: $0.guidance) },
                                     steps: steps, progress: p)
            }
        } catch let e as ModelError {
            if case .invalidInput(let m) = e, m == "cancelled" { throw BackendError.cancelled }
            throw BackendError.failed("\(e)")
        }
    }
}
