import Foundation
import Tensor

/// A class-conditional discriminator on the coalescer's whitened latent coordinates, for the
/// adversarial fine-tuning of the coalescer net (the method author's proposal, as adversarial
/// diffusion distillation does it): phi = SiLU MLP (k -> h -> h), D(x, c) = w . phi(x) + b +
/// <embed(c), phi(x)> (Miyato & Koyama's projection discriminator). Class `classes` stands for
/// "no class" (unconditional). Used only in training.
public final class LatentDiscriminator: Layer {
    public let classes: Int
    let l1: Linear, l2: Linear, out: Linear
    let embed: Embedding

    public init(dim: Int, hidden: Int, classes: Int, rng: inout RandomGenerator) {
        self.classes = classes
        l1 = Linear(dim, hidden, rng: &rng)
        l2 = Linear(hidden, hidden, rng: &rng)
        out = Linear(hidden, 1, rng: &rng)
        embed = Embedding(classes + 1, hidden, rng: &rng)
        embed.weight.data.update(from: embed.weight.array.map { $0 * 0.02 }, count: embed.weight.count)
    }

    public var namedParameters: [(String, Tensor)] {
        nest("l1", l1) + nest("l2", l2) + nest("out", out) + nest("embed", embed)
    }

    /// x (B, dim), class indices (B) in 0...classes -> logits (B, 1).
    public func callAsFunction(_ x: Tensor, classes c: [Int]) -> Tensor {
        let phi = l2(l1(x).silu()).silu()                                  // (B, h)
        return out(phi) + (embed(c) * phi).sumLast()
    }
}

/// A classifier on the coalescer's whitened latent coordinates (SiLU MLP k -> h -> h -> classes),
/// trained on the training set's latents, whose cross-entropy on the net's outputs for the
/// requested class can join the adversarial fine-tuning (AC-GAN's auxiliary classifier). Used
/// only in training; unrelated to the evaluation classifier, which sees pixels.
public final class LatentClassifier: Layer {
    let l1: Linear, l2: Linear, out: Linear

    public init(dim: Int, hidden: Int, classes: Int, rng: inout RandomGenerator) {
        l1 = Linear(dim, hidden, rng: &rng)
        l2 = Linear(hidden, hidden, rng: &rng)
        out = Linear(hidden, classes, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] { nest("l1", l1) + nest("l2", l2) + nest("out", out) }

    /// x (B, dim) -> logits (B, classes).
    public func callAsFunction(_ x: Tensor) -> Tensor { out(l2(l1(x).silu()).silu()) }
}
