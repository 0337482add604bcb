import Foundation
import ImageIO
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
        let model = try CoalescerModel.load(path: path)
        model.prepareForInference()
        self.init(model: model)
    }

    /// Adds the diagnostic "coalescer-ceiling" to `GeneratorRegistry`. (The coalescer itself is
    /// evaluated like every backend, through the plugin loader.)
    public static func register() {
        GeneratorRegistry.register(CoalescerCeilingGenerator.registryName) { ctx in
            try CoalescerCeilingGenerator(model: CoalescerGenerator(modelsDirectory: ctx.modelsDirectory).model,
                                          train: ctx.trainingData())
        }
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
        EightBit.pixels(pixels)
    }
}

/// Diagnostic: what a perfect coalescer (one that lands exactly on training items) would score.
/// Returns random training images of the prompt's class passed through the autoencoder and the
/// whitened PCA the net runs in (encode, project, unproject, decode); `steps` is ignored.
public final class CoalescerCeilingGenerator: Generator {
    public static let registryName = "coalescer-ceiling"
    public let name = CoalescerCeilingGenerator.registryName
    public let imageSide: Int
    let model: CoalescerModel
    let train: LabeledImages
    let byClass: [[Int]]

    public init(model: CoalescerModel, train: LabeledImages) throws {
        self.model = model
        self.train = train
        self.imageSide = model.config.autoencoder.imageSize
        var b = [[Int]](repeating: [], count: 10)
        for (i, l) in train.labels.enumerated() where l < 10 { b[l].append(i) }
        byClass = b
    }

    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        var rng = RandomGenerator(seed: seed)
        let c = EvaluationPrompts.classIndex(of: prompt)
        let n = imageSide * imageSide
        var px: [Float] = []
        for _ in 0..<count {
            let pool = c.map { byClass[$0] } ?? Array(0..<train.count)
            let i = pool[rng.nextInt(below: pool.count)]
            px += train.pixels[(i * n)..<((i + 1) * n)].map { Float($0) / 255 }
        }
        let out = try GradMode.withDisabled {
            try model.decode(model.latentCoordinates(Tensor(px, shape: [count, n]))).array
        }
        return CoalescerGenerator.bytes(out)
    }
}
