import Foundation
import Tensor

/// Everything a trained coalescer needs to generate: the sub-model configs, the settings it was
/// trained with (for the record) and the generation settings. Stored as JSON (snake_case) in the
/// metadata of `coalescer.safetensors` under "config".
public struct CoalescerConfig: Codable, Equatable, Sendable {
    public var autoencoder = AutoencoderConfig()
    public var textEncoder = TextEncoderConfig()
    public var net = CoalescerNetConfig()
    /// Weight of the description embedding in the index key concat(desc_scale * DE, R).
    public var descScale: Float = 8
    /// Exponent p of the direction loss |u - normalize(x - R)|^p.
    public var directionExponent: Float = 0.5
    /// A start point whose predicted direction is shorter than this is redrawn.
    public var minDirectionNorm: Float = 0.2
    /// At most this many redraws per image (then the last draw is used).
    public var maxRedraws: Int = 8
    /// `--steps auto`: stop when the predicted distance is below this (whitened units) ...
    public var autoStopDistance: Float = 1.0
    /// ... or after this many steps.
    public var autoMaxSteps: Int = 4
    /// Steps used when the caller does not say.
    public var defaultSteps: Int = 2

    public init() {}

    enum CodingKeys: String, CodingKey {
        case autoencoder, textEncoder = "text_encoder", net, descScale = "desc_scale"
        case directionExponent = "direction_exponent", minDirectionNorm = "min_direction_norm"
        case maxRedraws = "max_redraws", autoStopDistance = "auto_stop_distance"
        case autoMaxSteps = "auto_max_steps", defaultSteps = "default_steps"
    }

    public func validate() throws {
        try autoencoder.validate()
        try textEncoder.validate()
        try net.validate()
        guard net.descDim == textEncoder.dim else {
            throw ModelError.invalidConfig("net.desc_dim \(net.descDim) must equal text_encoder.dim \(textEncoder.dim)")
        }
        guard net.latentDim <= autoencoder.latentDim else {
            throw ModelError.invalidConfig("net.latent_dim \(net.latentDim) exceeds the latent size \(autoencoder.latentDim)")
        }
        guard maxRedraws >= 0, autoMaxSteps >= 1, defaultSteps >= 1 else {
            throw ModelError.invalidConfig("max_redraws >= 0, auto_max_steps >= 1, default_steps >= 1")
        }
    }

    public func json() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }

    public static func from(json: String) throws -> CoalescerConfig {
        do {
            return try JSONDecoder().decode(CoalescerConfig.self, from: Data(json.utf8))
        } catch {
            throw ModelError.invalidConfig("coalescer config JSON: \(error)")
        }
    }
}
