import Foundation
import ImageIO
import Models
import Tensor

/// A `LatentDiffusionModel` in process as an evaluation `Generator`, at a fixed guidance scale.
/// For measurements that change the model between runs (the block table of
/// `coalesce bench unet-blocks`); served models go through the Engine like every backend.
public final class LatentDiffusionGenerator: Generator {
    public let name: String
    public let model: LatentDiffusionModel
    public var guidance: Float
    public var imageSide: Int { model.config.autoencoder.imageSize }

    public init(name: String, model: LatentDiffusionModel, guidance: Float) {
        self.name = name
        self.model = model
        self.guidance = guidance
        model.prepareForInference()
    }

    public func generate(prompt: String, seed: UInt64, steps: Int, count: Int) throws -> [UInt8] {
        let px = try LatentDiffusionSampler(model: model).generate(
            [.init(prompt: prompt, seed: seed, count: count, guidance: guidance)], steps: steps)
        return EightBit.pixels(px)
    }
}
