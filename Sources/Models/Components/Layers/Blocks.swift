import Tensor

/// Residual block of a diffusion UNet (as diffusers `ResnetBlock2D`):
/// h = conv1(silu(norm1(x))) + proj(silu(temb)); h = conv2(silu(norm2(h))); return skip(x) + h.
/// conv2 starts at zero so a fresh block is the identity on its skip path.
public final class ResBlock: Layer {
    public let norm1: GroupNorm, conv1: Conv2d, timeProj: Linear?, norm2: GroupNorm, conv2: Conv2d
    public let skip: Conv2d?

    public init(_ inChannels: Int, _ outChannels: Int, timeDim: Int?, groups: Int = 8,
                rng: inout RandomGenerator) {
        norm1 = GroupNorm(groups: min(groups, inChannels), channels: inChannels)
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, rng: &rng)
        timeProj = timeDim.map { Linear($0, outChannels, rng: &rng) }
        norm2 = GroupNorm(groups: min(groups, outChannels), channels: outChannels)
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, rng: &rng)
        conv2.zeroInit()
        skip = inChannels == outChannels ? nil : Conv2d(inChannels, outChannels, kernel: 1, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] {
        var p = nest("norm1", norm1) + nest("conv1", conv1)
        if let timeProj { p += nest("time_proj", timeProj) }
        p += nest("norm2", norm2) + nest("conv2", conv2)
        if let skip { p += nest("skip", skip) }
        return p
    }

    /// Packs the convolutions' and the time projection's weights for inference (`Conv2d.prepareForInference`).
    public func prepareForInference() {
        for c in [conv1, conv2] + (skip.map { [$0] } ?? []) { c.prepareForInference() }
        timeProj?.prepareForInference()
    }

    /// x: (B, Cin, H, W); temb: (B, timeDim) already passed through SiLU by the caller, or nil.
    public func callAsFunction(_ x: Tensor, _ temb: Tensor?) -> Tensor {
        var h = conv1(norm1(x).silu())
        if let timeProj, let temb {
            let t = timeProj(temb)  // (B, Cout)
            h = h + t.reshaped([t.shape[0], t.shape[1], 1, 1])  // broadcast over H, W
        }
        h = conv2(norm2(h).silu())
        return (skip.map { $0(x) } ?? x) + h
    }
}

/// Multi-head self-attention over spatial positions with a residual connection:
/// x + proj(attention(qkv(norm(x)))). The output projection starts at zero.
public final class SpatialSelfAttention: Layer {
    public let norm: GroupNorm, qkv: Linear, out: Linear
    public let heads: Int

    public init(channels: Int, heads: Int, groups: Int = 8, rng: inout RandomGenerator) {
        norm = GroupNorm(groups: min(groups, channels), channels: channels)
        qkv = Linear(channels, 3 * channels, rng: &rng)
        out = Linear(channels, channels, rng: &rng)
        out.zeroInit()
        self.heads = heads
    }

    public var namedParameters: [(String, Tensor)] { nest("norm", norm) + nest("qkv", qkv) + nest("out", out) }

    /// Packs the projections' weights for inference (`Linear.prepareForInference`).
    public func prepareForInference() { for l in [qkv, out] { l.prepareForInference() } }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let tokens = Tensor.channelsToTokens(norm(x))        // (B, HW, C)
        let qkvOut = qkv(tokens).reshaped([b * h * w, 3 * c])  // (B*HW, 3C)
        let parts = qkvOut.splitColumns([c, c, c]).map { $0.reshaped([b, h * w, c]) }
        let a = Tensor.attention(q: parts[0], k: parts[1], v: parts[2], heads: heads)  // (B, HW, C)
        return x + Tensor.tokensToChannels(out(a), height: h, width: w)
    }
}

/// Multi-head cross-attention from spatial positions to a conditioning sequence (text tokens):
/// x + proj(attention(q(norm(x)), k(ctx), v(ctx))). The output projection starts at zero.
public final class CrossAttention: Layer {
    public let norm: GroupNorm, q: Linear, k: Linear, v: Linear, out: Linear
    public let heads: Int

    public init(channels: Int, contextDim: Int, heads: Int, groups: Int = 8, rng: inout RandomGenerator) {
        norm = GroupNorm(groups: min(groups, channels), channels: channels)
        q = Linear(channels, channels, rng: &rng)
        k = Linear(contextDim, channels, rng: &rng)
        v = Linear(contextDim, channels, rng: &rng)
        out = Linear(channels, channels, rng: &rng)
        out.zeroInit()
        self.heads = heads
    }

    public var namedParameters: [(String, Tensor)] {
        nest("norm", norm) + nest("q", q) + nest("k", k) + nest("v", v) + nest("out", out)
    }

    /// Packs the projections' weights for inference (`Linear.prepareForInference`).
    public func prepareForInference() { for l in [q, k, v, out] { l.prepareForInference() } }

    /// x: (B, C, H, W); context: (B, T, contextDim).
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (h, w) = (x.shape[2], x.shape[3])
        let tokens = Tensor.channelsToTokens(norm(x))
        let a = Tensor.attention(q: q(tokens), k: k(context), v: v(context), heads: heads)
        return x + Tensor.tokensToChannels(out(a), height: h, width: w)
    }
}

extension Tensor {
    /// Splits a (N, sum(sizes)) matrix into column blocks.
    public func splitColumns(_ sizes: [Int]) -> [Tensor] {
        precondition(rank == 2 && sizes.reduce(0, +) == shape[1], "splitColumns \(sizes) of \(shape)")
        // (N, D) viewed as (N, D, 1, ...) is exactly splitChannels on (N, D).
        return reshaped([shape[0], shape[1], 1]).splitChannels(sizes).map { $0.reshaped([shape[0], $0.shape[1]]) }
    }
}
