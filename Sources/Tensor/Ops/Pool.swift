// Average pooling.

extension Tensor {
    /// Average pooling with a `kernel` x `kernel` window and stride `kernel`:
    /// x (B, C, H, W) -> (B, C, H / kernel, W / kernel). H and W must be divisible by `kernel`
    /// (no padding, no partial windows).
    public static func avgPool2d(_ x: Tensor, kernel: Int) -> Tensor {
        precondition(x.rank == 4, "avgPool2d: input must be (B, C, H, W), got \(x.shape)")
        precondition(kernel >= 1, "avgPool2d: kernel must be >= 1, got \(kernel)")
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(h % kernel == 0 && w % kernel == 0,
                     "avgPool2d: height \(h) and width \(w) of \(x.shape) must be divisible by kernel \(kernel)")
        let (ho, wo, k) = (h / kernel, w / kernel, kernel)
        let out = Tensor(uninitialized: [b, c, ho, wo])       // out: (B, C, Ho, Wo)
        let scale = 1 / Float(k * k)
        let (px, py) = (x.data, out.data)
        // One unit = one output row (plane, oy); it reads `k` input rows.
        Runtime.parallelFor(b * c * ho, cost: k * w) { lo, hi in
            for unit in lo..<hi {
                let plane = unit / ho, oy = unit % ho
                let src = px + plane * h * w + oy * k * w, dst = py + unit * wo
                for ox in 0..<wo { dst[ox] = 0 }
                for ky in 0..<k {
                    let row = src + ky * w
                    for ox in 0..<wo {
                        var acc: Float = 0
                        for kx in 0..<k { acc += row[ox * k + kx] }
                        dst[ox] += acc
                    }
                }
                for ox in 0..<wo { dst[ox] *= scale }
            }
        }
        return out.recording([x]) { out in
            let g = out.grad!, gx = x.gradBuffer()              // g: (B, C, Ho, Wo)
            Runtime.parallelFor(b * c * ho, cost: k * w) { lo, hi in
                for unit in lo..<hi {
                    let plane = unit / ho, oy = unit % ho
                    let dst = gx + plane * h * w + oy * k * w, src = g + unit * wo
                    for ky in 0..<k {
                        let row = dst + ky * w
                        for ox in 0..<wo {
                            let v = src[ox] * scale
                            for kx in 0..<k { row[ox * k + kx] += v }
                        }
                    }
                }
            }
        }
    }
}
