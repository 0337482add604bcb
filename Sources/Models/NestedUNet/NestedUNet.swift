import Foundation
import Tensor

/// The network of Matryoshka Diffusion (Gu et al. 2024, apple/ml-mdm's `NestedUNet`): a
/// high-resolution UNet whose middle block is replaced by a complete low-resolution UNet.
///
/// The outer network (`outer`, built with `mid_block` false) runs its down levels on the
/// high-resolution input; its bottleneck features (outer.channels.last at the low resolution)
/// pass through the zero-initialised 3x3 `inAdapter` and are added to the inner network's
/// conv_in output; the inner network (`inner`) runs on the low-resolution input; its last
/// features (inner.channels[0]) pass through the zero-initialised 3x3 `outAdapter` and are
/// added back to the outer bottleneck, which the outer up levels then decode. Both outputs
/// are returned, so one pass predicts every resolution. Zero adapters make the nested network
/// start as the pretrained inner network plus an outer network that does not disturb it
/// (progressive training).
///
/// Without an inner network (`inner == nil`) it is a plain UNet with its middle block: the
/// single-resolution baseline.
///
/// Parameter names: `outer.*`, `inner.*`, `in_adapter.*`, `out_adapter.*`.
public final class NestedUNet: Layer {
    public let outer: UNet
    public let inner: UNet?
    public let inAdapter: Conv2d?, outAdapter: Conv2d?

    /// A network of the same architecture and bypassed blocks, for data-parallel training
    /// (`DataParallelStep`, which makes its weights alias this network's).
    public func replica() throws -> NestedUNet {
        var rng = RandomGenerator(seed: 0)  // its own weights are never used
        let r = try NestedUNet(outer: outer.config, inner: inner?.config, rng: &rng)
        r.outer.disabledBlocks = outer.disabledBlocks
        if let inner { r.inner?.disabledBlocks = inner.disabledBlocks }
        return r
    }

    public init(outer outerConfig: UNetConfig, inner innerConfig: UNetConfig?, rng: inout RandomGenerator) throws {
        outer = try UNet(outerConfig, rng: &rng)
        if let innerConfig {
            guard !outerConfig.midBlock else {
                throw ModelError.invalidConfig("a nested outer UNet has no middle block (mid_block false)")
            }
            let inner = try UNet(innerConfig, rng: &rng)
            let co = outerConfig.channels[outerConfig.channels.count - 1], ci = innerConfig.channels[0]
            let a = Conv2d(co, ci, kernel: 3, rng: &rng), b = Conv2d(ci, co, kernel: 3, rng: &rng)
            a.zeroInit(); b.zeroInit()
            self.inner = inner; inAdapter = a; outAdapter = b
        } else {
            guard outerConfig.midBlock else { throw ModelError.invalidConfig("a UNet without an inner network needs its middle block") }
            inner = nil; inAdapter = nil; outAdapter = nil
        }
    }

    public var namedParameters: [(String, Tensor)] {
        var p = nest("outer", outer)
        if let inner, let inAdapter, let outAdapter {
            p += nest("inner", inner) + nest("in_adapter", inAdapter) + nest("out_adapter", outAdapter)
        }
        return p
    }

    /// Packs both networks' and the adapters' weights for inference (`UNet.prepareForInference`).
    public func prepareForInference() {
        outer.prepareForInference()
        inner?.prepareForInference()
        inAdapter?.prepareForInference()
        outAdapter?.prepareForInference()
    }

    /// One prediction per resolution, highest first: `xs` are the noisy inputs, highest first
    /// ((B, C, H, W) and, when nested, (B, C, H/2^k, W/2^k) with k = outer levels − 1); `t` one
    /// noise level per row shared by the resolutions; cond (B, dim); context (B, T, dim) or nil.
    public func callAsFunction(_ xs: [Tensor], t: [Float], cond: Tensor?, context: Tensor?) -> [Tensor] {
        guard let inner, let inAdapter, let outAdapter else {
            precondition(xs.count == 1, "a plain UNet takes one resolution")
            return [outer(xs[0], t: t, cond: cond, context: context)]
        }
        precondition(xs.count == 2, "a nested UNet takes two resolutions")
        var low: Tensor? = nil
        let high = outer.forward(xs[0], t: t, cond: cond, context: context, middle: { h in
            let r = inner.forward(xs[1], t: t, cond: cond, context: context, inject: inAdapter(h))
            low = r.output
            return h + outAdapter(r.features)
        }).output
        return [high, low!]
    }
}
