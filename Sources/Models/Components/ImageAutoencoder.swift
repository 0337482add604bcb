import Foundation
import Tensor

/// Configuration of `ImageAutoencoder`. JSON keys are snake_case.
public struct AutoencoderConfig: Codable, Equatable, Sendable {
    /// Side of the square input image (28 for Fashion-MNIST).
    public var imageSize: Int = 28
    /// Channels of the input image: 1 (gray) or 3 (RGB).
    public var imageChannels: Int = 1
    /// Channels of the encoder's three 3x3 convolutions (strides 1, 2, 2).
    public var channels: [Int] = [16, 32, 48]
    /// Channels of the decoder's convolutions at full, half and quarter size (nil = `channels`).
    /// The decoder runs at generation time and the encoder does not, so the encoder can be wider.
    public var decoderChannels: [Int]? = nil
    /// Latent channels at imageSize/4 x imageSize/4 (4 gives a 7x7x4 = 196-value latent).
    public var latentChannels: Int = 4
    /// Weight of the KL term (per image, summed over latent values) beside the summed squared error.
    public var klWeight: Float = 0.005
    /// Latents are stored divided by this (the std of encoder means on the training set), so the
    /// latent space has unit variance. Set by training.
    public var latentScale: Float = 1

    public init() {}

    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", imageChannels = "image_channels", channels
        case decoderChannels = "decoder_channels", latentChannels = "latent_channels"
        case klWeight = "kl_weight", latentScale = "latent_scale"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? 28
        imageChannels = try c.decodeIfPresent(Int.self, forKey: .imageChannels) ?? 1
        channels = try c.decodeIfPresent([Int].self, forKey: .channels) ?? [16, 32, 48]
        decoderChannels = try c.decodeIfPresent([Int].self, forKey: .decoderChannels)
        latentChannels = try c.decodeIfPresent(Int.self, forKey: .latentChannels) ?? 4
        klWeight = try c.decodeIfPresent(Float.self, forKey: .klWeight) ?? 0.005
        latentScale = try c.decodeIfPresent(Float.self, forKey: .latentScale) ?? 1
    }

    /// The decoder's channels (full, half, quarter size).
    public var decoderWidths: [Int] { decoderChannels ?? channels }
    /// Values in one image (C * S * S).
    public var pixelCount: Int { imageChannels * imageSize * imageSize }

    public var latentSide: Int { imageSize / 4 }
    /// Number of values in one flattened latent (C * H * W).
    public var latentDim: Int { latentChannels * latentSide * latentSide }

    public func validate() throws {
        guard imageSize >= 8, imageSize % 4 == 0 else {
            throw ModelError.invalidConfig("image_size \(imageSize) must be a multiple of 4, >= 8")
        }
        guard imageChannels == 1 || imageChannels == 3 else {
            throw ModelError.invalidConfig("image_channels \(imageChannels) must be 1 or 3")
        }
        guard channels.count == 3, channels.allSatisfy({ $0 > 0 }) else {
            throw ModelError.invalidConfig("channels \(channels) must be three positive sizes")
        }
        guard decoderWidths.count == 3, decoderWidths.allSatisfy({ $0 > 0 }) else {
            throw ModelError.invalidConfig("decoder_channels \(decoderWidths) must be three positive sizes")
        }
        guard klWeight >= 0, klWeight.isFinite else {
            throw ModelError.invalidConfig("kl_weight \(klWeight) must be finite and >= 0")
        }
        guard latentChannels > 0 else { throw ModelError.invalidConfig("latent_channels must be > 0") }
        guard latentScale > 0, latentScale.isFinite else {
            throw ModelError.invalidConfig("latent_scale \(latentScale) must be positive")
        }
    }
}

/// A small convolutional VAE (Kingma & Welling, 2014) for S x S gray or RGB images.
///
/// Encoder: conv3x3(C->c0) SiLU, conv3x3/2(c0->c1) SiLU, conv3x3/2(c1->c2) SiLU, conv1x1(c2->2L)
/// giving mean and log-variance of a (L, S/4, S/4) Gaussian. Decoder (widths d, by default c):
/// conv3x3(L->d2) SiLU, conv3x3(d2->d2) SiLU, upsample x2, conv3x3(d2->d1) SiLU, upsample x2,
/// conv3x3(d1->d0) SiLU, conv3x3(d0->C) giving pixel logits (sigmoid -> [0, 1]).
///
/// Images are (B, C*S*S) in (C, H, W) order. Public latents are `mean / latentScale`, flattened
/// (B, L*(S/4)^2) in (C, H, W) order.
public final class ImageAutoencoder: Layer {
    public var config: AutoencoderConfig
    let enc0: Conv2d, enc1: Conv2d, enc2: Conv2d, encOut: Conv2d
    let dec0: Conv2d, dec1: Conv2d, dec2: Conv2d, dec3: Conv2d, decOut: Conv2d

    public init(config: AutoencoderConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        let c = config.channels, d = config.decoderWidths, l = config.latentChannels
        let ic = config.imageChannels
        enc0 = Conv2d(ic, c[0], kernel: 3, rng: &rng)
        enc1 = Conv2d(c[0], c[1], kernel: 3, stride: 2, rng: &rng)
        enc2 = Conv2d(c[1], c[2], kernel: 3, stride: 2, rng: &rng)
        encOut = Conv2d(c[2], 2 * l, kernel: 1, rng: &rng)
        dec0 = Conv2d(l, d[2], kernel: 3, rng: &rng)
        dec1 = Conv2d(d[2], d[2], kernel: 3, rng: &rng)
        dec2 = Conv2d(d[2], d[1], kernel: 3, rng: &rng)
        dec3 = Conv2d(d[1], d[0], kernel: 3, rng: &rng)
        decOut = Conv2d(d[0], ic, kernel: 3, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] {
        nest("encoder.conv0", enc0) + nest("encoder.conv1", enc1) + nest("encoder.conv2", enc2)
            + nest("encoder.out", encOut) + nest("decoder.conv0", dec0) + nest("decoder.conv1", dec1)
            + nest("decoder.conv2", dec2) + nest("decoder.conv3", dec3) + nest("decoder.out", decOut)
    }

    /// Encoder: images (B, C, S, S) in [0, 1] -> (mean, logvar), each (B, L, S/4, S/4), unscaled.
    public func encodeDistribution(_ x: Tensor) -> (mean: Tensor, logvar: Tensor) {
        var h = enc0(x).silu()
        h = enc1(h).silu()
        h = enc2(h).silu()
        let parts = encOut(h).splitChannels([config.latentChannels, config.latentChannels])
        return (parts[0], parts[1])
    }

    /// Decoder: unscaled latents (B, L, S/4, S/4) -> pixel logits (B, C, S, S).
    public func decodeLogits(_ z: Tensor) -> Tensor {
        var h = dec0(z).silu()
        h = dec1(h).silu()
        h = Tensor.upsampleNearest2d(h, scale: 2)
        h = dec2(h).silu()
        h = Tensor.upsampleNearest2d(h, scale: 2)
        h = dec3(h).silu()
        return decOut(h)
    }

    /// Scaled latents (B, latentDim) of images given as (B, C*S*S) floats in [0, 1] (no sampling).
    public func encode(_ pixels: Tensor) throws -> Tensor {
        let s = config.imageSize, n = config.pixelCount
        guard pixels.rank == 2, pixels.shape[1] == n else {
            throw ModelError.invalidInput("encode: expected (B, \(n)) pixels, got \(pixels.shape)")
        }
        let b = pixels.shape[0]
        let mean = encodeDistribution(pixels.reshaped([b, config.imageChannels, s, s])).mean
        return mean.reshaped([b, config.latentDim]).scaled(1 / config.latentScale)
    }

    /// Images (B, C*S*S) in [0, 1], (C, H, W) order, from scaled latents (B, latentDim).
    ///
    /// After `prepareForInference()`, and with gradients off, this runs the fused channels-last
    /// decoder (`Tensor.conv3x3NHWC`: bias, SiLU/sigmoid and the x2 upsampling inside each
    /// convolution); otherwise the autograd layers. Both compute the same function (tested).
    public func decode(_ latents: Tensor) throws -> Tensor {
        let side = config.latentSide, n = config.pixelCount
        guard latents.rank == 2, latents.shape[1] == config.latentDim else {
            throw ModelError.invalidInput("decode: expected (B, \(config.latentDim)) latents, got \(latents.shape)")
        }
        let b = latents.shape[0]
        let z = latents.scaled(config.latentScale).reshaped([b, config.latentChannels, side, side])
        if let fast = inferenceDecoder, !GradMode.isEnabled {
            // z (B, L, s, s) -> NHWC; with one channel NHWC (B, S, S, 1) is already the image.
            var h = Tensor.conv3x3NHWC(z.nchwToNHWC(), fast[0], activation: .silu)
            h = Tensor.conv3x3NHWC(h, fast[1], activation: .silu)
            h = Tensor.conv3x3NHWC(h, fast[2], upsample: 2, activation: .silu)
            h = Tensor.conv3x3NHWC(h, fast[3], upsample: 2, activation: .silu)
            let img = Tensor.conv3x3NHWC(h, fast[4], activation: .sigmoid)   // img: (B, S, S, C)
            return (config.imageChannels == 1 ? img : img.nhwcToNCHW()).reshaped([b, n])
        }
        return decodeLogits(z).sigmoid().reshaped([b, n])
    }

    /// The decoder's convolutions packed for `Tensor.conv3x3NHWC`; nil until
    /// `prepareForInference()`.
    public private(set) var inferenceDecoder: [PackedConv3x3]?

    /// Packs the decoder's weights for the fast inference path of `decode`. Call it once the
    /// weights are final (after loading a checkpoint); weights changed afterwards are not seen
    /// until it is called again. Training code never calls it.
    public func prepareForInference() {
        inferenceDecoder = [dec0, dec1, dec2, dec3, decOut].map { PackedConv3x3(weight: $0.weight, bias: $0.bias) }
    }
}
