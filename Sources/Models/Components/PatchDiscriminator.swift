import Foundation
import Tensor

/// Configuration of `PatchDiscriminator`. JSON keys are snake_case.
public struct PatchDiscriminatorConfig: Codable, Equatable, Sendable {
    /// Channels of the input images (1 or 3).
    public var imageChannels: Int = 1
    /// Channels of the two stride-2 convolutions.
    public var channels: [Int] = [32, 64]

    public init() {}

    enum CodingKeys: String, CodingKey { case imageChannels = "image_channels", channels }
}

/// A small patch discriminator (pix2pix's PatchGAN idea, as latent-diffusion autoencoders use
/// it): conv3x3/2(C->c0) SiLU, conv3x3/2(c0->c1) SiLU, conv3x3(c1->1) giving one real/fake logit
/// per patch, (B, 1, S/4, S/4). Used only while training an autoencoder, to push its
/// reconstructions towards sharp local texture that a squared error alone averages away.
public final class PatchDiscriminator: Layer {
    public let config: PatchDiscriminatorConfig
    let conv0: Conv2d, conv1: Conv2d, out: Conv2d

    public init(config: PatchDiscriminatorConfig, rng: inout RandomGenerator) {
        self.config = config
        let c = config.channels
        conv0 = Conv2d(config.imageChannels, c[0], kernel: 3, stride: 2, rng: &rng)
        conv1 = Conv2d(c[0], c[1], kernel: 3, stride: 2, rng: &rng)
        out = Conv2d(c[1], 1, kernel: 3, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] {
        nest("conv0", conv0) + nest("conv1", conv1) + nest("out", out)
    }

    /// images (B, C, S, S) in [0, 1] -> patch logits (B, 1, S/4, S/4).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        out(conv1(conv0(x.adding(-0.5)).silu()).silu())
    }
}
