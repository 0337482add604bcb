import Foundation
import ImageIO
import Models
import Tensor

/// The training set of a pixel-space (nested-UNet) diffusion model, prepared once: every image
/// in [−1, 1] at each side it is trained at (the full side and its average poolings D^r(x)),
/// and every distinct caption embedded by the text encoder. Item i draws a random caption of
/// its class on each use, as `LatentDiffusionData` does.
public struct NestedUNetData {
    public let count: Int
    public let channels: Int
    /// Pixels per side: pixels[side] is count * C*side*side floats in [−1, 1].
    public let pixels: [Int: [Float]]
    public let itemClasses: [Int]
    public let classNames: [String]
    /// Caption embeddings per class: classEmbeddings[c] is (k_c * dim) floats.
    public let classEmbeddings: [[Float]]
    public let dim: Int

    public init(train: LabeledImages, fashionMNIST: Bool, sides: [Int], textEncoder: TextEncoder) throws {
        let plan = try CaptionPlan(train: train, fashionMNIST: fashionMNIST)
        guard train.width == train.height else {
            throw TrainingError.invalidData("nested-unet trains on square images, got \(train.width)x\(train.height)")
        }
        count = train.count
        channels = train.channels
        let full = floatPixels(train).map { $0 * 2 - 1 }
        var px: [Int: [Float]] = [:]
        for s in Set(sides) {
            guard s >= 1, train.width % s == 0 else {
                throw TrainingError.invalidData("side \(s) does not divide the image side \(train.width)")
            }
            px[s] = NestedUNetModel.pool(full, count: count, channels: channels, side: train.width, factor: train.width / s)
        }
        pixels = px
        itemClasses = plan.itemClasses
        classNames = plan.classNames
        dim = textEncoder.config.dim
        classEmbeddings = GradMode.withDisabled { plan.classCaptions.map { textEncoder.embed($0).array } }
    }

    /// Condition rows (B, dim) for items `idx`; a row is zero (unconditional) with probability
    /// `dropout`.
    public func conditions(_ idx: [Int], dropout: Float, rng: inout RandomGenerator) -> [Float] {
        var cond = [Float](repeating: 0, count: idx.count * dim)
        for (r, i) in idx.enumerated() {
            let drop = rng.nextFloat() < dropout
            let table = classEmbeddings[itemClasses[i]]
            let pick = rng.nextInt(below: max(1, table.count / dim))
            if !drop, !table.isEmpty {
                for k in 0..<dim { cond[r * dim + k] = table[pick * dim + k] }
            }
        }
        return cond
    }

    /// Items `idx` at `side` (B * C*side*side).
    public func images(_ idx: [Int], side: Int) -> [Float] {
        let all = pixels[side]!, per = channels * side * side
        var out = [Float](repeating: 0, count: idx.count * per)
        for (r, i) in idx.enumerated() { for k in 0..<per { out[r * per + k] = all[i * per + k] } }
        return out
    }
}
