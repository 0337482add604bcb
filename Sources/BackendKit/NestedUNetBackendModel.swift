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
        try config.apply(to: &model.config)
        self.model = model
        let c = model.config
        description = BackendDescription(
            backend: backend, height: c.imageSize, width: c.imageSize,
            channels: c.imageChannels, defaultSteps: c.defaultSteps, maxSteps: c.maxSteps,
            maxBatch: BackendKit.maxCount, supportsGuidance: true, supportsAutoSteps: false,
            classes: c.classNames, defaultGuidance: c.defaultGuidance)
    }

    public func generate(_ requests: [SwiftBackendRequest], progress: (Int, Int) -> Bool) throws -> [Float] {
        let steps = requests[0].steps
        let sampler = NestedUNetSampler(model: model)
        return try withoutActuallyEscaping(progress) { p in
            try sampler.generate(requests.map { .init(prompt: $0.prompt, seed: $0.seed, count: $0.count, guidance: $0.guidance) },
                                 steps: steps, progress: p)
        }
    }
}
