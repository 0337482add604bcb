import Foundation
import Tensor

/// Configuration of `CoalescerNet`. JSON keys are snake_case.
public struct CoalescerNetConfig: Codable, Equatable, Sendable {
    /// Dimension of the space the net moves in (whitened PCA coordinates of the image latent).
    public var latentDim: Int = 24
    /// Description-embedding dimension (the text encoder's `dim`).
    public var descDim: Int = 16
    /// Hidden width.
    public var hidden: Int = 512
    /// Plain MLP (`blocks == 0`): number of hidden Linear+SiLU layers.
    public var depth: Int = 3
    /// Residual MLP when > 0: this many pre-norm blocks h += W2 silu(W1 LayerNorm(h)).
    public var blocks: Int = 0
    /// Whether the net is told the noise level of its start (1 = a prior draw, t for
    /// (1 - t) y + t eps), as shortcut models are told the step size.
    public var levelInput: Bool = false

    public init() {}

    enum CodingKeys: String, CodingKey {
        case latentDim = "latent_dim", descDim = "desc_dim", hidden, depth, blocks, levelInput = "level_input"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        latentDim = try c.decode(Int.self, forKey: .latentDim)
        descDim = try c.decode(Int.self, forKey: .descDim)
        hidden = try c.decode(Int.self, forKey: .hidden)
        depth = try c.decodeIfPresent(Int.self, forKey: .depth) ?? 3
        blocks = try c.decodeIfPresent(Int.self, forKey: .blocks) ?? 0
        levelInput = try c.decodeIfPresent(Bool.self, forKey: .levelInput) ?? false
    }

    public func validate() throws {
        guard latentDim > 0, descDim > 0, hidden > 0, depth >= 1, blocks >= 0, blocks <= 64, hidden <= 16384 else {
            throw ModelError.invalidConfig("coalescer net: latent_dim, desc_dim, hidden > 0, depth >= 1, 0 <= blocks <= 64 (got \(self))")
        }
    }
}

/// The coalescer network: (R, DE[, level]) -> (distance, direction).
///
/// The last layer gives 1 + latentDim values: the predicted distance from R to the target and an
/// unnormalised direction whose length says how sure the net is (it shrinks where the target
/// direction changes quickly). Two bodies:
/// - plain MLP (`blocks == 0`, the first version): `depth` Linear + SiLU layers;
/// - residual MLP (`blocks > 0`): Linear in, `blocks` pre-norm residual blocks
///   h += W2 silu(W1 LayerNorm(h)) (W2 zero-initialised, so each block starts as the identity),
///   LayerNorm, Linear out.
/// With `levelInput` the start's noise level (B, 1) is a further input column.
public final class CoalescerNet: Layer {
    public let config: CoalescerNetConfig
    let layers: [Linear]
    let norms1: [LayerNorm]
    let inner: [Linear]
    let outNorm: LayerNorm?
    let out: Linear

    public init(config: CoalescerNetConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        var ls: [Linear] = []
        var width = config.latentDim + config.descDim + (config.levelInput ? 1 : 0)
        if config.blocks == 0 {
            for _ in 0..<config.depth {
                ls.append(Linear(width, config.hidden, rng: &rng))
                width = config.hidden
            }
            norms1 = []; inner = []; outNorm = nil
        } else {
            let h = config.hidden
            ls.append(Linear(width, h, rng: &rng))
            var n1: [LayerNorm] = [], inn: [Linear] = []
            for _ in 0..<config.blocks {
                n1.append(LayerNorm(h))
                inn.append(Linear(h, h, rng: &rng))
                let w2 = Linear(h, h, rng: &rng)
                w2.zeroInit()
                inn.append(w2)
            }
            norms1 = n1; inner = inn; outNorm = LayerNorm(h)
            width = h
        }
        layers = ls
        out = Linear(width, 1 + config.latentDim, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] {
        var p = nest("layers", layers)
        if config.blocks > 0 {
            p += nest("norms", norms1) + nest("blocks", inner)
            if let outNorm { p += nest("out_norm", outNorm) }
        }
        return p + nest("out", out)
    }

    /// r (B, latentDim), desc (B, descDim), level (B, 1) or nil -> (distance (B, 1), direction
    /// (B, latentDim)). A net with `levelInput` takes level 1 (a prior start) when given nil.
    /// With gradients off, the batch is cut into one chunk of rows per thread, each chunk's whole
    /// pass on its thread (`BatchChunks`; the same bits).
    public func callAsFunction(_ r: Tensor, _ desc: Tensor, level: Tensor? = nil) -> (distance: Tensor, direction: Tensor) {
        let b = r.shape[0]
        let o = BatchChunks.map(batch: b) { rows -> [Tensor] in
            if rows.count == b { let (d, u) = forward(r, desc, level: level); return [d, u] }
            let (d, u) = forward(r.slice(rows), desc.slice(rows), level: level?.slice(rows))
            return [d, u]
        }
        return (o[0], o[1])
    }

    func forward(_ r: Tensor, _ desc: Tensor, level: Tensor?) -> (distance: Tensor, direction: Tensor) {
        var parts = [r, desc]
        if config.levelInput { parts.append(level ?? Tensor(filled: 1, shape: [r.shape[0], 1])) }
        var h = Tensor.concat(parts, axis: 1)
        if config.blocks == 0 {
            for l in layers { h = l(h).silu() }
        } else {
            h = layers[0](h)
            for b in 0..<config.blocks {
                h = h + inner[2 * b + 1](inner[2 * b](norms1[b](h)).silu())
            }
            h = outNorm!(h)
        }
        let o = out(h).splitChannels([1, config.latentDim])  // (B, 1), (B, latentDim)
        return (o[0], o[1])
    }

    /// Packs the Linear weights for inference (see `Linear.prepareForInference`).
    public func prepareForInference() {
        for l in layers + inner + [out] { l.prepareForInference() }
    }

    /// The differentiable jump x = R + d * u / |u| (what the sampler does, with gradients): r
    /// (B, latentDim) -> (B, latentDim).
    public func jump(_ r: Tensor, _ desc: Tensor, level: Tensor? = nil) -> Tensor {
        let (d, u) = self(r, desc, level: level)
        let norm = u.square().sumLast().sqrt(eps: 1e-12)                 // (B, 1)
        return r + u * (d.relu() / norm)
    }
}
