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
    /// Before step k + 2, the point is re-noised to level t = renoise_levels[k] (the last entry
    /// repeats) along `renoise_path`, and a net with `level_input` is told t (consistency
    /// models' multistep sampling). Empty: step on from x unchanged (the first version).
    public var renoiseLevels: [Float] = []
    /// How a point is re-noised to level t (and how training starts near data are made).
    public var renoisePath: RenoisePath = .linear
    /// Names of the classes the model was trained on (`describe`'s "classes"; prompts that
    /// name them work best). Empty: the Fashion-MNIST class prompts.
    public var classNames: [String] = []

    public init() {}

    /// Paths from a point y (whitened latent coordinates) to noise, indexed by level t in [0, 1].
    public enum RenoisePath: String, Codable, Sendable {
        /// (1 - t) y + t ε: the straight line (rectified flow's interpolation).
        case linear
        /// The latent diffusion teacher's variance-preserving path seen through the projection:
        /// t is the noise scale σ, α = √(1 − σ²), and coordinate j (whitening scale s_j) is
        /// (α s_j y_j + σ ε_j) / √(α² s_j² + σ²), unit variance at every level. A point of the
        /// teacher's trajectory x_t maps to the same coordinates, (V x_t − α V μ) / √(α² s² + σ²),
        /// so a re-noised sample lands where the net saw the teacher's trajectories.
        case variancePreserving = "variance_preserving"

        /// Coefficients (a_j, b_j) of the point y_j = a_j y_j + b_j ε_j at level t for whitening
        /// scales `scales` (one pair per coordinate).
        public func coefficients(level t: Float, scales: [Float]) -> (signal: [Float], noise: [Float]) {
            switch self {
            case .linear:
                return ([Float](repeating: 1 - t, count: scales.count), [Float](repeating: t, count: scales.count))
            case .variancePreserving:
                let a = max(0, 1 - t * t).squareRoot()
                var signal = [Float](repeating: 0, count: scales.count), noise = signal
                for (j, s) in scales.enumerated() {
                    let norm = max((a * a * s * s + t * t).squareRoot(), 1e-12)
                    signal[j] = a * s / norm
                    noise[j] = t / norm
                }
                return (signal, noise)
            }
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CoalescerConfig()
        autoencoder = try c.decode(AutoencoderConfig.self, forKey: .autoencoder)
        textEncoder = try c.decode(TextEncoderConfig.self, forKey: .textEncoder)
        net = try c.decode(CoalescerNetConfig.self, forKey: .net)
        descScale = try c.decodeIfPresent(Float.self, forKey: .descScale) ?? d.descScale
        directionExponent = try c.decodeIfPresent(Float.self, forKey: .directionExponent) ?? d.directionExponent
        minDirectionNorm = try c.decodeIfPresent(Float.self, forKey: .minDirectionNorm) ?? d.minDirectionNorm
        maxRedraws = try c.decodeIfPresent(Int.self, forKey: .maxRedraws) ?? d.maxRedraws
        autoStopDistance = try c.decodeIfPresent(Float.self, forKey: .autoStopDistance) ?? d.autoStopDistance
        autoMaxSteps = try c.decodeIfPresent(Int.self, forKey: .autoMaxSteps) ?? d.autoMaxSteps
        defaultSteps = try c.decodeIfPresent(Int.self, forKey: .defaultSteps) ?? d.defaultSteps
        renoiseLevels = try c.decodeIfPresent([Float].self, forKey: .renoiseLevels) ?? []
        renoisePath = try c.decodeIfPresent(RenoisePath.self, forKey: .renoisePath) ?? .linear
        classNames = try c.decodeIfPresent([String].self, forKey: .classNames) ?? []
    }

    /// The re-noising level before step `step` (0-based; 0 for the first step, which starts
    /// from the prior).
    public func renoiseLevel(beforeStep step: Int) -> Float {
        guard step >= 1, !renoiseLevels.isEmpty else { return 0 }
        return renoiseLevels[min(step - 1, renoiseLevels.count - 1)]
    }

    enum CodingKeys: String, CodingKey {
        case autoencoder, textEncoder = "text_encoder", net, descScale = "desc_scale"
        case directionExponent = "direction_exponent", minDirectionNorm = "min_direction_norm"
        case maxRedraws = "max_redraws", autoStopDistance = "auto_stop_distance"
        case autoMaxSteps = "auto_max_steps", defaultSteps = "default_steps", renoiseLevels = "renoise_levels"
        case renoisePath = "renoise_path"
        case classNames = "class_names"
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
        let steps = 1...SamplingLimits.maxSteps
        guard maxRedraws >= 0, maxRedraws <= 1000, steps.contains(autoMaxSteps), steps.contains(defaultSteps) else {
            throw ModelError.invalidConfig("max_redraws in 0...1000, auto_max_steps and default_steps in 1...\(SamplingLimits.maxSteps)")
        }
        guard renoiseLevels.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
            throw ModelError.invalidConfig("renoise_levels \(renoiseLevels) must be in [0, 1)")
        }
        guard descScale.isFinite, descScale > 0, minDirectionNorm.isFinite, minDirectionNorm >= 0 else {
            throw ModelError.invalidConfig("desc_scale must be finite and > 0, min_direction_norm finite and >= 0")
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
