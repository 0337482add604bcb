import Foundation
import ImageIO
import Models
import Tensor

/// The training set of a latent diffusion model, prepared once: every image encoded to the
/// shared autoencoder's latent (mean, scaled to unit variance), and every distinct caption
/// embedded by the text encoder. Item i draws a random caption of its class on each use
/// (Fashion-MNIST: the training phrasings of `Captions`; a folder: the items' own captions).
public struct LatentDiffusionData {
    public let count: Int
    public let latentSize: Int
    public let latents: [Float]
    public let itemClasses: [Int]
    public let classNames: [String]
    /// Caption embeddings per class: classEmbeddings[c] is (k_c * dim) floats.
    public let classEmbeddings: [[Float]]
    public let dim: Int

    public init(train: LabeledImages, fashionMNIST: Bool, autoencoder: ImageAutoencoder, textEncoder: TextEncoder) throws {
        let plan = try CaptionPlan(train: train, fashionMNIST: fashionMNIST)
        count = train.count
        latentSize = autoencoder.config.latentDim
        latents = try GradMode.withDisabled {
            try AutoencoderTrainer.encodeAll(autoencoder, pixels: floatPixels(train), count: train.count)
        }
        itemClasses = plan.itemClasses
        classNames = plan.classNames
        dim = textEncoder.config.dim
        classEmbeddings = GradMode.withDisabled { plan.classCaptions.map { textEncoder.embed($0).array } }
    }

    /// One minibatch: latents (B, latentSize) and condition rows (B, dim); a row is zero
    /// (unconditional) with probability `dropout`.
    public func batch(_ idx: [Int], dropout: Float, rng: inout RandomGenerator) -> (x0: [Float], cond: [Float]) {
        var x0 = [Float](repeating: 0, count: idx.count * latentSize)
        var cond = [Float](repeating: 0, count: idx.count * dim)
        for (r, i) in idx.enumerated() {
            for k in 0..<latentSize { x0[r * latentSize + k] = latents[i * latentSize + k] }
            let drop = rng.nextFloat() < dropout
            let table = classEmbeddings[itemClasses[i]]
            let pick = rng.nextInt(below: max(1, table.count / dim))
            if !drop, !table.isEmpty {
                for k in 0..<dim { cond[r * dim + k] = table[pick * dim + k] }
            }
        }
        return (x0, cond)
    }
}
