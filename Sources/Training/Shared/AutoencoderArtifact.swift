import Foundation
import Models
import Tensor

/// The shared image autoencoder as its own trained artifact (`models/autoencoder/`), which every
/// latent backend loads instead of training its own:
///
/// - `autoencoder.safetensors`: the VAE's weights, its `AutoencoderConfig` JSON in the metadata
///   under "config";
/// - `autoencoder.json`: the same config, readable (not `config.json`: that name marks a servable
///   model in a models directory);
/// - `training-report.txt` and `reconstructions.png`, written by `coalesce train autoencoder`.
public enum AutoencoderArtifact {
    public static let weightsFile = "autoencoder.safetensors"
    public static let configFile = "autoencoder.json"

    /// Loads the autoencoder of `path`: a directory holding `autoencoder.safetensors`, or the file.
    public static func load(path: String) throws -> ImageAutoencoder {
        var isDir: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? path + "/" + weightsFile : path
        guard FileManager.default.fileExists(atPath: file) else {
            throw TrainingError.invalidData("autoencoder: \(file) does not exist (train one with `coalesce train autoencoder --out DIR`)")
        }
        let st = try SafeTensors.read(path: file)
        guard let json = st.config else { throw TrainingError.invalidData("autoencoder: \(file) has no \"config\" metadata") }
        let config: AutoencoderConfig
        do { config = try JSONDecoder().decode(AutoencoderConfig.self, from: Data(json.utf8)) } catch {
            throw TrainingError.invalidData("autoencoder: \(file): config metadata is not an autoencoder config: \(error)")
        }
        var rng = RandomGenerator(seed: 0)
        let ae = try ImageAutoencoder(config: config, rng: &rng)
        let tensors = try st.allTensors()
        try ae.load(from: tensors)
        return ae
    }

    /// Writes `autoencoder.safetensors` and `autoencoder.json` into `directory` (created if needed).
    public static func save(_ ae: ImageAutoencoder, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = String(decoding: try enc.encode(ae.config), as: UTF8.self)
        try SafeTensors(tensors: ae.stateDict(), metadata: [SafeTensors.configKey: json])
            .write(path: directory + "/" + weightsFile)
        try (json + "\n").write(toFile: directory + "/" + configFile, atomically: true, encoding: .utf8)
    }
}
