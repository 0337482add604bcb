import Foundation
import ImageIO
import Models
import Tensor

/// A pseudo-generator that scores the shared image autoencoder: held-out (test) images of the
/// requested class, chosen at random by the seed as `RealTrainGenerator` chooses training
/// images, passed through the autoencoder (encoder mean, then decoder). What any latent
/// generator would score if it produced exactly the latents of real images; `steps` is ignored.
public final class ReconstructionGenerator: Generator {
    public static let registryName = "reconstruction"
    public var name: String { ReconstructionGenerator.registryName }
    public let imageSide: Int
    private let images: LabeledImages
    private let autoencoder: ImageAutoencoder
    private let byClass: [Int: [Int]]

    public init(autoencoder: ImageAutoencoder, images: LabeledImages) throws {
        guard autoencoder.config.imageSize == images.width, autoencoder.config.imageChannels == images.channels else {
            throw TrainingError.invalidData("reconstruction: the autoencoder takes \(autoencoder.config.imageSize)x\(autoencoder.config.imageSize)x\(autoencoder.config.imageChannels) images, the data is \(images.width)x\(images.height)x\(images.channels)")
        }
        self.autoencoder = autoencoder
        self.images = images
        self.imageSide = images.width
        autoencoder.prepareForInference()
        byClass = Dictionary(grouping: 0..<images.count, by: { images.labels[$0] })
    }

    /// Registers "reconstruction": Fashion-MNIST test images through `autoencoder` (a directory
    /// as `coalesce train autoencoder --out` writes it), by default `<models>/autoencoder`.
    public static func register(autoencoder: String? = nil) {
        GeneratorRegistry.register(registryName) { ctx in
            try ReconstructionGenerator(autoencoder: AutoencoderArtifact.load(path: autoencoder ?? ctx.modelsDirectory + "/autoencoder"),
                                        images: FashionMNIST.load(split: .test))
        }
    }

    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        let pool: [Int]
        if let c = EvaluationPrompts.classIndex(of: prompt), let items = byClass[c], !items.isEmpty {
            pool = items
        } else {
            pool = Array(0..<images.count)
        }
        var rng = RandomGenerator(seed: seed)
        let n = images.valuesPerImage
        var x = [Float]()
        x.reserveCapacity(count * n)
        for _ in 0..<count {
            let i = pool[rng.nextInt(below: pool.count)]
            x += images.pixels[(i * n)..<((i + 1) * n)].map { Float($0) / 255 }
        }
        let r = try GradMode.withDisabled { try autoencoder.decode(try autoencoder.encode(Tensor(x, shape: [count, n]))) }
        return EightBit.pixels(r.array)
    }
}
