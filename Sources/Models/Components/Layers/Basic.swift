import Foundation
import Tensor

/// Kaiming-uniform-like initialisation as PyTorch's default for Linear/Conv:
/// U(-1/sqrt(fanIn), 1/sqrt(fanIn)) for weights and biases.
@usableFromInline
func defaultInit(_ shape: [Int], fanIn: Int, rng: inout RandomGenerator) -> Tensor {
    let bound = 1 / Float(max(1, fanIn)).squareRoot()
    return Tensor.uniform(shape, lo: -bound, hi: bound, rng: &rng, requiresGrad: true)
}

/// y = x Wᵀ + b. weight (out, in), bias (out).
public final class Linear: Layer {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout RandomGenerator) {
        weight = defaultInit([outFeatures, inFeatures], fanIn: inFeatures, rng: &rng)
        self.bias = bias ? defaultInit([outFeatures], fanIn: inFeatures, rng: &rng) : nil
    }

    /// From given parameters (a pretrained checkpoint): weight (out, in), bias (out).
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2 && (bias == nil || bias!.count == weight.shape[0]),
                     "Linear: weight \(weight.shape), bias \(bias?.shape ?? [])")
        self.weight = weight
        self.bias = bias
    }

    /// Zero-initialised (for residual/adapter outputs that should start as the identity).
    public func zeroInit() {
        weight.data.update(repeating: 0, count: weight.count)
        if let bias { bias.data.update(repeating: 0, count: bias.count) }
    }

    public var namedParameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// The weight packed for inference (`prepareForInference`).
    public private(set) var packed: PackedLinearWeight?

    /// Packs the weight once for the inference products (gradients off); the weight must not
    /// change afterwards. Training never calls it: its products do not use the pack.
    public func prepareForInference() { packed = PackedLinearWeight(weight: weight) }

    public func callAsFunction(_ x: Tensor) -> Tensor { Tensor.linear(x, weight: weight, bias: bias, packed: packed) }
}

/// 2-D convolution. weight (out, in, k, k), bias (out).
public final class Conv2d: Layer {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int, padding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int? = nil,
                bias: Bool = true, rng: inout RandomGenerator) {
        let fanIn = inChannels * kernel * kernel
        weight = defaultInit([outChannels, inChannels, kernel, kernel], fanIn: fanIn, rng: &rng)
        self.bias = bias ? defaultInit([outChannels], fanIn: fanIn, rng: &rng) : nil
        self.stride = stride
        self.padding = padding ?? kernel / 2
    }

    public func zeroInit() {
        weight.data.update(repeating: 0, count: weight.count)
        if let bias { bias.data.update(repeating: 0, count: bias.count) }
    }

    public var namedParameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// The weight packed for inference (`prepareForInference`); nil where the forward pass reads
    /// the weight as it is (1x1).
    public private(set) var packed: PackedConvWeight?

    /// Packs the weight once for the inference forward pass (gradients off); the weight must not
    /// change afterwards (or call it again). Training never calls it: its passes do not use the pack.
    public func prepareForInference() { packed = PackedConvWeight(weight: weight, stride: stride, padding: padding) }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        Tensor.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, packed: packed)
    }
}

/// Group normalisation (Wu & He, 2018) with per-channel scale and shift.
public final class GroupNorm: Layer {
    public let groups: Int
    public let weight: Tensor, bias: Tensor

    public init(groups: Int, channels: Int) {
        precondition(channels % groups == 0, "GroupNorm: \(channels) channels not divisible by \(groups) groups")
        self.groups = groups
        weight = Tensor(filled: 1, shape: [channels], requiresGrad: true)
        bias = Tensor(zeros: [channels], requiresGrad: true)
    }

    public var namedParameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        Tensor.groupNorm(x, groups: groups, weight: weight, bias: bias)
    }
}

/// Layer normalisation over the last dimension.
public final class LayerNorm: Layer {
    public let weight: Tensor, bias: Tensor
    /// Added to the variance (1e-5 as PyTorch's default; BERT checkpoints use 1e-12).
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-5) {
        weight = Tensor(filled: 1, shape: [dim], requiresGrad: true)
        bias = Tensor(zeros: [dim], requiresGrad: true)
        self.eps = eps
    }

    /// From given parameters (a pretrained checkpoint), weight and bias (D).
    public init(weight: Tensor, bias: Tensor, eps: Float) {
        precondition(weight.rank == 1 && bias.shape == weight.shape, "LayerNorm: weight \(weight.shape), bias \(bias.shape)")
        self.weight = weight
        self.bias = bias
        self.eps = eps
    }

    public var namedParameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }

    public func callAsFunction(_ x: Tensor) -> Tensor { Tensor.layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// A lookup table: indices -> rows of weight (vocab, dim).
public final class Embedding: Layer {
    public let weight: Tensor

    public init(_ vocab: Int, _ dim: Int, rng: inout RandomGenerator) {
        weight = Tensor.randn([vocab, dim], std: 1, rng: &rng, requiresGrad: true)
    }

    public var namedParameters: [(String, Tensor)] { [("weight", weight)] }

    public func callAsFunction(_ indices: [Int]) -> Tensor { Tensor.embedding(weight, indices: indices) }
}
