// The coalescer backend plugin: exports `cz_backend_entry` (Include/coalesce_backend.h).
//
// A model directory holds config.json {"backend": "coalescer", "weights": "coalescer.safetensors",
// "default_steps": ..., "renoise_levels": [...]} and the weights. The C surface (vtable, request
// validation, batching, progress, errors) is BackendKit's; this file is the model-specific part.
import BackendKit
import CCoalesceABI
import Foundation
import Models

struct CoalescerBackend: SwiftBackend {
    static let name = "coalescer"
    static let version = "0.2.0"

    static func load(directory: String, config: ModelDirectoryConfig) throws -> SwiftBackendModel {
        let weights = try config.weights(default: "coalescer.safetensors")
        let defaultSteps = try config.int("default_steps", in: 1...SamplingLimits.maxSteps)
        // Sampler settings may be overridden per model directory (no retraining needed).
        var renoise: [Float]?
        if let v = config.object["renoise_levels"] {
            guard let levels = v as? [Double], levels.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
                throw BackendError.invalidArgument("\(config.path): \"renoise_levels\" must be a list of numbers in [0, 1)")
            }
            renoise = levels.map { Float($0) }
        }
        // A MiniLM text encoder is read from "minilm_dir" (relative to the model directory),
        // by default the repository's minilm directory beside the model's (models/minilm).
        let minilmDir = (config.object["minilm_dir"] as? String).map { $0.hasPrefix("/") ? $0 : directory + "/" + $0 }
        let model = try CoalescerModel.load(path: directory + "/" + weights, minilmDirectory: minilmDir)
        model.prepareForInference()
        if let defaultSteps { model.config.defaultSteps = defaultSteps }
        if let renoise { model.config.renoiseLevels = renoise }
        return CoalescerInstance(model: model)
    }
}

final class CoalescerInstance: SwiftBackendModel {
    let model: CoalescerModel
    let description: BackendDescription

    init(model: CoalescerModel) {
        self.model = model
        let c = model.config
        description = BackendDescription(
            backend: CoalescerBackend.name, height: c.autoencoder.imageSize, width: c.autoencoder.imageSize,
            channels: c.autoencoder.imageChannels, defaultSteps: c.defaultSteps, maxSteps: SamplingLimits.maxSteps,
            maxBatch: BackendKit.maxBatch, supportsGuidance: false, supportsAutoSteps: true,
            classes: c.classNames.isEmpty ? Captions.classPhrases.map { $0[0] } : c.classNames)
    }

    func generate(_ requests: [SwiftBackendRequest], progress: (Int, Int) -> Bool) throws -> [Float] {
        let steps: CoalescerSteps = requests[0].steps == -1 ? .auto : .fixed(requests[0].steps)
        let total = requests[0].steps == -1 ? model.config.autoMaxSteps : requests[0].steps
        return try withoutActuallyEscaping(progress) { report in
            try CoalescerSampler(model: model).generate(
                requests.map { .init(prompt: $0.prompt, seed: $0.seed, count: $0.count) }, steps: steps,
                progress: { step, _ in report(step, total) }).pixels
        }
    }
}

/// The plugin's one exported symbol.
@_cdecl("cz_backend_entry")
public func czBackendEntry() -> UnsafePointer<cz_backend_vtable> {
    BackendKit.vtable(for: CoalescerBackend.self)
}
