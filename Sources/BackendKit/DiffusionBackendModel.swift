import Foundation
import Models

/// The model part of every diffusion plugin (`latent-diffusion`, `distilled-unet`,
/// `nested-unet`): a `DiffusionGenerator` loaded from the directory's weights, its settings
/// overridden by the directory's config.json, described and sampled. A plugin names the backend
/// and its default weights file; everything else is here, once.
public final class DiffusionBackendModel<Model: DiffusionGenerator>: SwiftBackendModel {
    public let model: Model
    public let description: BackendDescription

    /// Loads `<directory>/<weights>` and checks that its config says `backend`.
    public init(backend: String, directory: String, config: ModelDirectoryConfig, defaultWeights: String) throws {
        let weights = try config.weights(default: defaultWeights)
        let model = try Model.load(path: directory + "/" + weights)
        guard model.backendName == backend else {
            throw BackendError.invalidArgument("\(directory)/\(weights) holds a \(model.backendName) model, not \(backend)")
        }
        try config.apply(to: &model.config)
        model.prepareForInference()
        self.model = model
        let c = model.config
        description = BackendDescription(
            backend: backend, height: model.imageSide, width: model.imageSide,
            channels: model.imageChannels, defaultSteps: c.defaultSteps, maxSteps: c.maxSteps,
            maxBatch: BackendKit.maxBatch, supportsGuidance: true, supportsAutoSteps: false,
            classes: model.classNames, defaultGuidance: c.defaultGuidance)
    }

    public func generate(_ requests: [SwiftBackendRequest], progress: (Int, Int) -> Bool) throws -> [Float] {
        try withoutActuallyEscaping(progress) { p in
            try model.generate(requests.map { .init(prompt: $0.prompt, seed: $0.seed, count: $0.count, guidance: $0.guidance) },
                               steps: requests[0].steps, progress: p)
        }
    }
}

/// The teacher's and the student's plugins (`latent-diffusion`, `distilled-unet`).
public typealias LatentDiffusionBackendModel = DiffusionBackendModel<LatentDiffusionModel>
/// The `nested-unet` plugin.
public typealias NestedUNetBackendModel = DiffusionBackendModel<NestedUNetModel>
