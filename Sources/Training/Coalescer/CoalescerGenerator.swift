import Foundation
import Models
import Tensor

/// The trained coalescer behind the evaluation `Generator` protocol (`coalesce eval --model
/// coalescer`, `coalesce bench generate --model coalescer`). Loads
/// `<modelsDirectory>/coalescer/coalescer.safetensors`.
public final class CoalescerGenerator: Generator {
    public static let registryName = "coalescer"
    public let name = CoalescerGenerator.registryName
    public let imageSide: Int
    public let model: CoalescerModel
    /// Redraws and steps of the most recent call (for reports).
    public private(set) var lastRedraws = 0

    public init(model: CoalescerModel) {
        self.model = model
        self.imageSide = model.config.autoencoder.imageSize
    }

    public convenience init(modelsDirectory: String) throws {
        let path = modelsDirectory + "/coalescer/coalescer.safetensors"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError.file(path: path, message: "no trained coalescer (run `make models` or `coalesce train coalescer`)")
        }
        self.init(model: try CoalescerModel.load(path: path))
    }

    /// Adds "coalescer" to `GeneratorRegistry`.
    public static func register() {
        GeneratorRegistry.register(registryName) { try CoalescerGenerator(modelsDirectory: $0.modelsDirectory) }
    }

    /// `steps` <= 0 means `--steps auto`.
    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        let batch = try CoalescerSampler(model: model).generate(
            prompt: prompt, seed: seed, count: count, steps: steps <= 0 ? .auto : .fixed(steps))
        lastRedraws = batch.redraws
        return CoalescerGenerator.bytes(batch.pixels)
    }

    /// [0, 1] floats -> bytes (rounded, clamped).
    public static func bytes(_ pixels: [Float]) -> [UInt8] {
        pixels.map { UInt8(max(0, min(255, ($0 * 255).rounded()))) }
    }
}
