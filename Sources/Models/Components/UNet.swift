import Foundation
import Tensor

/// Configuration of `UNet`. JSON keys are snake_case (stored in checkpoint metadata).
public struct UNetConfig: Codable, Equatable, Sendable {
    public var inChannels: Int = 1
    public var outChannels: Int = 1
    /// Channels per resolution level; each level after the first halves H and W.
    public var channels: [Int] = [32, 64, 128]
    public var layersPerLevel: Int = 2
    /// Self-attention after the residual blocks of these levels (and always in the middle).
    public var attentionLevels: [Bool] = [false, false, true]
    public var heads: Int = 4
    public var groups: Int = 8
    /// Size of a conditioning vector added to the time embedding (0 = none).
    public var condDim: Int = 0
    /// Width of cross-attention context tokens (0 = no cross-attention).
    public var contextDim: Int = 0
    /// Self-attention between the two middle residual blocks.
    public var midAttention: Bool = true
    /// The middle block (res, attention, res). False for the outer network of a `NestedUNet`,
    /// whose middle is the inner network.
    public var midBlock: Bool = true

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = UNetConfig()
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? d.inChannels
        outChannels = try c.decodeIfPresent(Int.self, forKey: .outChannels) ?? d.outChannels
        channels = try c.decodeIfPresent([Int].self, forKey: .channels) ?? d.channels
        layersPerLevel = try c.decodeIfPresent(Int.self, forKey: .layersPerLevel) ?? d.layersPerLevel
        attentionLevels = try c.decodeIfPresent([Bool].self, forKey: .attentionLevels) ?? d.attentionLevels
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        groups = try c.decodeIfPresent(Int.self, forKey: .groups) ?? d.groups
        condDim = try c.decodeIfPresent(Int.self, forKey: .condDim) ?? d.condDim
        contextDim = try c.decodeIfPresent(Int.self, forKey: .contextDim) ?? d.contextDim
        midAttention = try c.decodeIfPresent(Bool.self, forKey: .midAttention) ?? d.midAttention
        midBlock = try c.decodeIfPresent(Bool.self, forKey: .midBlock) ?? d.midBlock
    }

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", channels
        case layersPerLevel = "layers_per_level", attentionLevels = "attention_levels", heads, groups
        case condDim = "cond_dim", contextDim = "context_dim", midAttention = "mid_attention", midBlock = "mid_block"
    }

    /// Writes `mid_block` only when false, so configs of networks with a middle read as before.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outChannels, forKey: .outChannels)
        try c.encode(channels, forKey: .channels)
        try c.encode(layersPerLevel, forKey: .layersPerLevel)
        try c.encode(attentionLevels, forKey: .attentionLevels)
        try c.encode(heads, forKey: .heads)
        try c.encode(groups, forKey: .groups)
        try c.encode(condDim, forKey: .condDim)
        try c.encode(contextDim, forKey: .contextDim)
        try c.encode(midAttention, forKey: .midAttention)
        if !midBlock { try c.encode(midBlock, forKey: .midBlock) }
    }

    /// Checks sizes; the message names the bad field.
    public func validate() throws {
        guard !channels.isEmpty, channels.allSatisfy({ $0 > 0 && $0 % groups == 0 }) else {
            throw ModelError.invalidConfig("channels \(channels) must be positive multiples of groups \(groups)")
        }
        guard attentionLevels.count == channels.count else {
            throw ModelError.invalidConfig("attention_levels has \(attentionLevels.count) entries for \(channels.count) levels")
        }
        guard layersPerLevel >= 1, heads >= 1, channels.allSatisfy({ $0 % heads == 0 }) else {
            throw ModelError.invalidConfig("layers_per_level >= 1 and channels divisible by heads \(heads) required")
        }
    }
}

/// A compact diffusion UNet in the style of diffusers' `UNet2DModel` (Ho et al. 2020 layout):
/// conv_in; down levels of residual blocks (+ self-attention) with strided-conv downsampling;
/// a middle block (res, attention, res); up levels that concatenate the skip of the same level,
/// with nearest upsampling + conv; GroupNorm, SiLU, conv_out. Time (and an optional condition
/// vector) enter every residual block through a shared embedding MLP; optional cross-attention
/// to context tokens follows self-attention.
///
/// Any H and W work: a level of odd size is downsampled to the ceiling of half, and the
/// upsampled result is cropped back to the skip's size (7 -> 4 -> 8 -> 7 on a 7x7 latent).
public final class UNet: Layer {
    public let config: UNetConfig
    public let convIn: Conv2d
    public let time1: Linear, time2: Linear
    public let condProj: Linear?
    public let down: [[ResBlock]], downAttn: [[SpatialSelfAttention]], downCross: [[CrossAttention]]
    public let downsample: [Conv2d]
    /// The middle block; nil when `config.midBlock` is false.
    public let mid1: ResBlock?, midAttn: SpatialSelfAttention?, mid2: ResBlock?
    public let up: [[ResBlock]], upAttn: [[SpatialSelfAttention]], upCross: [[CrossAttention]]
    public let upsample: [Conv2d]
    public let normOut: GroupNorm, convOut: Conv2d
    public let timeDim: Int
    /// Blocks to bypass (a residual block keeps only its skip path, an attention block is the
    /// identity), by the names of `blockNames`. For measuring what each block contributes
    /// (SnapFusion's architecture evolution); empty in normal use, where the forward pass does
    /// not build or look up a single name. Not thread-safe to change.
    public var disabledBlocks: Set<String> = []

    /// A network of the same architecture and the same bypassed blocks, for data-parallel training
    /// (`DataParallelStep`, which makes its weights alias this network's).
    public func replica() throws -> UNet {
        var rng = RandomGenerator(seed: 0)  // its own weights are never used
        let r = try UNet(config, rng: &rng)
        r.disabledBlocks = disabledBlocks
        return r
    }

    public init(_ config: UNetConfig, rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        let ch = config.channels, g = config.groups
        let c0 = ch[0]
        timeDim = 4 * c0
        convIn = Conv2d(config.inChannels, c0, kernel: 3, rng: &rng)
        time1 = Linear(c0, timeDim, rng: &rng)
        time2 = Linear(timeDim, timeDim, rng: &rng)
        condProj = config.condDim > 0 ? Linear(config.condDim, timeDim, rng: &rng) : nil
        var down: [[ResBlock]] = [], downAttn: [[SpatialSelfAttention]] = [], downCross: [[CrossAttention]] = []
        var downsample: [Conv2d] = []
        var cin = c0
        for (i, c) in ch.enumerated() {
            var blocks: [ResBlock] = [], attn: [SpatialSelfAttention] = [], cross: [CrossAttention] = []
            for _ in 0..<config.layersPerLevel {
                blocks.append(ResBlock(cin, c, timeDim: timeDim, groups: g, rng: &rng))
                if config.attentionLevels[i] {
                    attn.append(SpatialSelfAttention(channels: c, heads: config.heads, groups: g, rng: &rng))
                    if config.contextDim > 0 {
                        cross.append(CrossAttention(channels: c, contextDim: config.contextDim, heads: config.heads, groups: g, rng: &rng))
                    }
                }
                cin = c
            }
            down.append(blocks); downAttn.append(attn); downCross.append(cross)
            if i < ch.count - 1 { downsample.append(Conv2d(c, c, kernel: 3, stride: 2, rng: &rng)) }
        }
        let cm = ch[ch.count - 1]
        if config.midBlock {
            mid1 = ResBlock(cm, cm, timeDim: timeDim, groups: g, rng: &rng)
            midAttn = config.midAttention ? SpatialSelfAttention(channels: cm, heads: config.heads, groups: g, rng: &rng) : nil
            mid2 = ResBlock(cm, cm, timeDim: timeDim, groups: g, rng: &rng)
        } else {
            mid1 = nil; midAttn = nil; mid2 = nil
        }
        var up: [[ResBlock]] = [], upAttn: [[SpatialSelfAttention]] = [], upCross: [[CrossAttention]] = []
        var upsample: [Conv2d] = []
        cin = cm
        for i in stride(from: ch.count - 1, through: 0, by: -1) {
            let c = ch[i]
            var blocks: [ResBlock] = [], attn: [SpatialSelfAttention] = [], cross: [CrossAttention] = []
            for j in 0..<config.layersPerLevel {
                // The first block of a level takes the concatenated skip of the same level.
                blocks.append(ResBlock(j == 0 ? cin + c : c, c, timeDim: timeDim, groups: g, rng: &rng))
                if config.attentionLevels[i] {
                    attn.append(SpatialSelfAttention(channels: c, heads: config.heads, groups: g, rng: &rng))
                    if config.contextDim > 0 {
                        cross.append(CrossAttention(channels: c, contextDim: config.contextDim, heads: config.heads, groups: g, rng: &rng))
                    }
                }
            }
            up.append(blocks); upAttn.append(attn); upCross.append(cross)
            if i > 0 { upsample.append(Conv2d(c, ch[i - 1], kernel: 3, rng: &rng)) }
            cin = i > 0 ? ch[i - 1] : c
        }
        self.down = down; self.downAttn = downAttn; self.downCross = downCross; self.downsample = downsample
        self.up = up; self.upAttn = upAttn; self.upCross = upCross; self.upsample = upsample
        normOut = GroupNorm(groups: min(g, c0), channels: c0)
        convOut = Conv2d(c0, config.outChannels, kernel: 3, rng: &rng)
    }

    public var namedParameters: [(String, Tensor)] {
        var p = nest("conv_in", convIn) + nest("time_1", time1) + nest("time_2", time2)
        if let condProj { p += nest("cond_proj", condProj) }
        for i in down.indices {
            p += nest("down.\(i).res", down[i]) + nest("down.\(i).attn", downAttn[i]) + nest("down.\(i).cross", downCross[i])
            if i < downsample.count { p += nest("down.\(i).downsample", downsample[i]) }
        }
        if let mid1 { p += nest("mid.res1", mid1) }
        if let midAttn { p += nest("mid.attn", midAttn) }
        if let mid2 { p += nest("mid.res2", mid2) }
        for i in up.indices {
            p += nest("up.\(i).res", up[i]) + nest("up.\(i).attn", upAttn[i]) + nest("up.\(i).cross", upCross[i])
            if i < upsample.count { p += nest("up.\(i).upsample", upsample[i]) }
        }
        return p + nest("norm_out", normOut) + nest("conv_out", convOut)
    }

    /// Packs every convolution's and linear layer's weight for the inference forward pass (same
    /// values, same bits). Call it once the weights are final (after loading); weights changed
    /// afterwards are not seen with gradients off until it is called again. Training never needs it.
    public func prepareForInference() {
        for c in [convIn, convOut] + downsample + upsample { c.prepareForInference() }
        for l in [time1, time2] + (condProj.map { [$0] } ?? []) { l.prepareForInference() }
        for b in (down + up).joined() + [mid1, mid2].compactMap({ $0 }) { b.prepareForInference() }
        for a in (downAttn + upAttn).joined() + [midAttn].compactMap({ $0 }) { a.prepareForInference() }
        for a in (downCross + upCross).joined() { a.prepareForInference() }
    }

    /// Names of the blocks `disabledBlocks` can bypass, input to output.
    public var blockNames: [String] {
        var names: [String] = []
        for i in down.indices {
            for j in down[i].indices {
                names.append("down.\(i).res.\(j)")
                if j < downAttn[i].count { names.append("down.\(i).attn.\(j)") }
                if j < downCross[i].count { names.append("down.\(i).cross.\(j)") }
            }
        }
        if mid1 != nil { names.append("mid.res1") }
        if midAttn != nil { names.append("mid.attn") }
        if mid2 != nil { names.append("mid.res2") }
        for i in up.indices {
            for j in up[i].indices {
                names.append("up.\(i).res.\(j)")
                if j < upAttn[i].count { names.append("up.\(i).attn.\(j)") }
                if j < upCross[i].count { names.append("up.\(i).cross.\(j)") }
            }
        }
        return names
    }

    /// x: (B, inChannels, H, W), any H and W; t: B noise levels (any
    /// scale the caller's schedule uses, e.g. 0...1000); cond: (B, condDim) or nil;
    /// context: (B, T, contextDim) or nil. Returns (B, outChannels, H, W).
    public func callAsFunction(_ x: Tensor, t: [Float], cond: Tensor? = nil, context: Tensor? = nil) -> Tensor {
        forward(x, t: t, cond: cond, context: context).output
    }

    /// The forward pass with the hooks a `NestedUNet` needs: `inject` (B, channels[0], H, W) is
    /// added to conv_in's output; `middle`, when given, replaces the middle block (it maps the
    /// bottleneck features to features of the same shape). Returns the output and the features
    /// of the last up level before norm_out (B, channels[0], H, W).
    public func forward(_ x: Tensor, t: [Float], cond: Tensor? = nil, context: Tensor? = nil, inject: Tensor? = nil,
                        middle: ((Tensor) -> Tensor)? = nil) -> (output: Tensor, features: Tensor) {
        var temb = time2(time1(Tensor.timestepEmbedding(t, dim: config.channels[0])).silu())
        if let condProj, let cond { temb = temb + condProj(cond) }
        let te = temb.silu()
        // Block names are built only when a bypass is set (never in normal use).
        let off = disabledBlocks
        func on(_ name: @autoclosure () -> String) -> Bool { off.isEmpty || !off.contains(name()) }
        func res(_ name: @autoclosure () -> String, _ block: ResBlock, _ h: Tensor) -> Tensor {
            on(name()) ? block(h, te) : (block.skip.map { $0(h) } ?? h)
        }
        var h = convIn(x)
        if let inject { h = h + inject }
        var skips: [Tensor] = []
        for i in down.indices {
            for (j, block) in down[i].enumerated() {
                h = res("down.\(i).res.\(j)", block, h)
                if j < downAttn[i].count, on("down.\(i).attn.\(j)") { h = downAttn[i][j](h) }
                if j < downCross[i].count, let context, on("down.\(i).cross.\(j)") {
                    h = downCross[i][j](h, context: context)
                }
            }
            skips.append(h)
            if i < downsample.count { h = downsample[i](h) }
        }
        if let middle {
            h = middle(h)
        } else {
            if let mid1 { h = res("mid.res1", mid1, h) }
            if let midAttn, on("mid.attn") { h = midAttn(h) }
            if let mid2 { h = res("mid.res2", mid2, h) }
        }
        for i in up.indices {
            let level = down.count - 1 - i
            for (j, block) in up[i].enumerated() {
                if j == 0 { h = Tensor.concat([h, skips[level]], axis: 1) }
                h = res("up.\(i).res.\(j)", block, h)
                if j < upAttn[i].count, on("up.\(i).attn.\(j)") { h = upAttn[i][j](h) }
                if j < upCross[i].count, let context, on("up.\(i).cross.\(j)") {
                    h = upCross[i][j](h, context: context)
                }
            }
            if i < upsample.count {
                let next = skips[level - 1]
                h = Tensor.upsampleNearest2d(h, scale: 2).cropSpatial(height: next.shape[2], width: next.shape[3])
                h = upsample[i](h)
            }
        }
        return (convOut(normOut(h).silu()), h)
    }
}
