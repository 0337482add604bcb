import Foundation
import Models

/// The model part shared by the two latent-diffusion plugins (the `latent-diffusion` teacher
/// and the `distilled-unet` student): both are a `LatentDiffusionModel` sampled with DDIM and
/// classifier-free guidance; they differ in their weights, default steps and name.
public final class LatentDiffusionBackendModel: SwiftBackendModel {
    public let model: LatentDiffusionModel
    public let description: BackendDescription

    /// Loads `<directory>/<weights>` and checks that its config says `backend`.
    public init(backend: String, directory: String, config: ModelDirectoryConfig, defaultWeights: String) throws {
        let weights = try config.weights(default: defaultWeights)
        let model = try LatentDiffusionModel.load(path: directory + "/" + weights)
        guard model.config.backend == backend else {
            throw BackendError.invalidArgument("\(directory)/\(weights) holds a \(model.config.backend) model, not \(backend)")
        }
        try config.apply(to: &model.config)
        model.prepareForInference()
        self.model = model
        let c = model.config
        description = BackendDescription(
            backend: backend, height: c.autoencoder.imageSize, width: c.autoencoder.imageSize,
            channels: c.autoencoder.imageChannels, defaultSteps: c.defaultSteps, maxSteps: c.maxSteps,
            maxBatch: BackendKit.maxCount, supportsGuidance: true, supportsAutoSteps: false,
            classes: c.classNames, defaultGuidance: c.defaultGuidance)
    }

    public func generate(_ requests: [SwiftBackendRequest], progress: (Int, Int) -> Bool) throws -> [Float] {
        let steps = requests[0].steps
        let sampler = LatentDiffusionSampler(model: model)
        return try withoutActuallyEscaping(progress) { p in
            try sampler.generate(requests.map { .init(prompt: $0.prompt, seed: $0.seed, count: $0.count, guidance: $0.guidance) },
                                 steps: steps, progress: p)
        }
    }
}
