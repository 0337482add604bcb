// The distilled-unet backend plugin (SnapFusion-style step-distilled student): exports
// `cz_backend_entry`. A model directory holds config.json {"backend": "distilled-unet",
// "weights": "distilled-unet.safetensors"} and the weights (config in their metadata).
import BackendKit
import CCoalesceABI

struct DistilledUNetBackend: SwiftBackend {
    static let name = "distilled-unet"
    static let version = "0.1.0"

    static func load(directory: String, config: ModelDirectoryConfig) throws -> SwiftBackendModel {
        try LatentDiffusionBackendModel(backend: name, directory: directory, config: config,
                                        defaultWeights: "distilled-unet.safetensors")
    }
}

@_cdecl("cz_backend_entry")
public func czBackendEntry() -> UnsafePointer<cz_backend_vtable> {
    BackendKit.vtable(for: DistilledUNetBackend.self)
}
