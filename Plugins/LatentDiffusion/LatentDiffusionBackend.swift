// The latent-diffusion backend plugin (the many-step teacher): exports `cz_backend_entry`.
// A model directory holds config.json {"backend": "latent-diffusion", "weights":
// "latent-diffusion.safetensors"} and the weights (config in their metadata).
import BackendKit
import CCoalesceABI

struct LatentDiffusionBackend: SwiftBackend {
    static let name = "latent-diffusion"
    static let version = "0.1.0"

    static func load(directory: String, config: ModelDirectoryConfig) throws -> SwiftBackendModel {
        try LatentDiffusionBackendModel(backend: name, directory: directory, config: config,
                                        defaultWeights: "latent-diffusion.safetensors")
    }
}

@_cdecl("cz_backend_entry")
public func czBackendEntry() -> UnsafePointer<cz_backend_vtable> {
    BackendKit.vtable(for: LatentDiffusionBackend.self)
}
