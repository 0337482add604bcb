// The nested-unet backend plugin (Matryoshka Diffusion in pixel space): exports
// `cz_backend_entry`. A model directory holds config.json {"backend": "nested-unet",
// "weights": "nested-unet.safetensors"} and the weights (config in their metadata).
import BackendKit
import CCoalesceABI

struct NestedUnetBackend: SwiftBackend {
    static let name = "nested-unet"
    static let version = "0.1.0"

    static func load(directory: String, config: ModelDirectoryConfig) throws -> SwiftBackendModel {
        try NestedUNetBackendModel(backend: name, directory: directory, config: config, defaultWeights: "nested-unet.safetensors")
    }
}

@_cdecl("cz_backend_entry")
public func czBackendEntry() -> UnsafePointer<cz_backend_vtable> {
    BackendKit.vtable(for: NestedUnetBackend.self)
}
