// Nearest-neighbour upsampling.

extension Tensor {
    /// Nearest-neighbour upsampling by an integer factor: x (B, C, H, W) -> (B, C, H*scale, W*scale),
    /// out[.., y, x] = in[.., y / scale, x / scale] (PyTorch `interpolate(mode="nearest")`).
    public static func upsampleNearest2d(_ x: Tensor, scale: Int) -> Tensor {
        precondition(x.rank == 4, "upsampleNearest2d: input must be (B, C, H, W), got \(x.shape)")
        precondition(scale >= 1, "upsampleNearest2d: scale must be >= 1, got \(scale)")
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let s = scale, (ho, wo) = (h * scale, w * scale)
        let out = Tensor(uninitialized: [b, c, ho, wo])       // out: (B, C, H*s, W*s)
        let (px, py) = (x.data, out.data)
        // One unit = one input row (plane, iy), written to `s` output rows.
        Runtime.parallelFor(b * c * h, cost: s * wo) { lo, hi in
            for unit in lo..<hi {
                let src = px + unit * w, dst = py + unit * s * wo
                for ix in 0..<w {
                    let v = src[ix]
                    for k in 0..<s { dst[ix * s + k] = v }
                }
                for r in 1..<max(s, 1) { (dst + r * wo).update(from: dst, count: wo) }
            }
        }
        return out.recording([x]) { out in
            let g = out.grad!, gx = x.gradBuffer()              // g: (B, C, H*s, W*s)
            Runtime.parallelFor(b * c * h, cost: s * wo) { lo, hi in
                for unit in lo..<hi {
                    let src = g + unit * s * wo, dst = gx + unit * w
                    for ix in 0..<w {
                        var acc: Float = 0
                        for r in 0..<s { for k in 0..<s { acc += src[r * wo + ix * s + k] } }
                        dst[ix] += acc
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// The top-left (height, width) window of x (B, C, H, W): joins an upsampled odd-sized
    /// level back to its skip (7 -> 4 -> 8 -> crop to 7). Gradients scatter back; the cropped
    /// border gets none.
    public func cropSpatial(height ho: Int, width wo: Int) -> Tensor {
        precondition(rank == 4 && ho <= shape[2] && wo <= shape[3] && ho >= 1 && wo >= 1,
                     "cropSpatial(\(ho), \(wo)) of \(shape)")
        let (b, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        if ho == h && wo == w { return self }
        let out = Tensor(uninitialized: [b, c, ho, wo])
        let (px, py) = (data, out.data)
        for plane in 0..<(b * c) {
            for y in 0..<ho { (py + (plane * ho + y) * wo).update(from: px + (plane * h + y) * w, count: wo) }
        }
        return out.recording([self]) { [self] out in
            let g = out.grad!, gx = self.gradBuffer()
            for plane in 0..<(b * c) {
                for y in 0..<ho {
                    let src = g + (plane * ho + y) * wo, dst = gx + (plane * h + y) * w
                    for x in 0..<wo { dst[x] += src[x] }
                }
            }
        }
    }
}
