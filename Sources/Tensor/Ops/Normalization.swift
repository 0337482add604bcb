import CCoalesceKernels

// Group normalisation and layer normalisation (forward keeps mean and 1/std for backward).

extension Tensor {
    /// Group normalisation (Wu & He, 2018; PyTorch `group_norm`): x (B, C, ...) with C divisible
    /// by `groups`; each (batch item, group) is normalised over its C/groups channels and all
    /// trailing positions with the biased variance, then y = xhat * weight[c] + bias[c].
    /// weight and bias: (C). Accepts (B, C, H, W), (B, C, L) and (B, C).
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor, bias: Tensor,
                                 eps: Float = 1e-5) -> Tensor {
        precondition(x.rank >= 2, "groupNorm: input must be (B, C, ...), got \(x.shape)")
        let (bn, c) = (x.shape[0], x.shape[1])
        precondition(groups >= 1 && c % groups == 0,
                     "groupNorm: \(c) channels of \(x.shape) are not divisible into \(groups) groups")
        precondition(weight.count == c && bias.count == c,
                     "groupNorm: weight \(weight.shape) and bias \(bias.shape) must have \(c) elements")
        let l = c == 0 || bn == 0 ? 0 : x.count / (bn * c)          // positions per channel
        let cg = c / groups, n = cg * l                              // elements per group
        let out = Tensor(uninitialized: x.shape)
        let stats = Tensor(uninitialized: [bn * groups, 2])          // stats: (B*G, [mean, rstd])
        let (px, py, ps, pw, pb) = (x.data, out.data, stats.data, weight.data, bias.data)
        // Per (image, group) blocks on the vectorised C kernels (CCoalesceKernels).
        let isa = Int32(CCK_ISA_BEST)
        Runtime.parallelFor(bn * groups, cost: n * 4) { lo, hi in
            for bg in lo..<hi {
                let c0 = (bg % groups) * cg
                cck_group_norm_forward(px + bg * n, py + bg * n, Int32(cg), l, pw + c0, pb + c0, eps, ps + 2 * bg, isa)
            }
        }
        return out.recording([x, weight, bias]) { out in
            let g = out.grad!                                        // g: like x
            defer { withExtendedLifetime(stats) {} }                 // ps points into stats
            // Per (batch item, channel) partial sums for the weight and bias gradients.
            let partial = Tensor(uninitialized: [bn * c, 2])         // (B*C, [Σ dy*xhat, Σ dy])
            let pp = partial.data
            let gx: UnsafeMutablePointer<Float>? = x.requiresGrad ? x.gradBuffer() : nil
            let isa = Int32(CCK_ISA_BEST)
            Runtime.parallelFor(bn * groups, cost: n * 8) { lo, hi in
                for bg in lo..<hi {
                    let c0 = (bg % groups) * cg, b = bg / groups
                    // pp rows (b, c0 ..< c0 + cg) are this block's; gx rows likewise.
                    cck_group_norm_backward(px + bg * n, g + bg * n, gx.map { $0 + bg * n }, Int32(cg), l, pw + c0,
                                            ps[2 * bg], ps[2 * bg + 1], pp + 2 * (b * c + c0), isa)
                }
            }
            if weight.requiresGrad {
                let gw = weight.gradBuffer()
                for b in 0..<bn { for ch in 0..<c { gw[ch] += pp[2 * (b * c + ch)] } }
            }
            if bias.requiresGrad {
                let gb = bias.gradBuffer()
                for b in 0..<bn { for ch in 0..<c { gb[ch] += pp[2 * (b * c + ch) + 1] } }
            }
        }
    }

    /// Layer normalisation over the last dimension (PyTorch `layer_norm` with
    /// normalized_shape = [D]): x (..., D), weight and bias (D); biased variance.
    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float = 1e-5) -> Tensor {
        precondition(x.rank >= 1, "layerNorm: needs rank >= 1, got a scalar")
        let d = x.shape[x.rank - 1]
        precondition(weight.count == d && bias.count == d,
                     "layerNorm: weight \(weight.shape) and bias \(bias.shape) must have \(d) elements (last dim of \(x.shape))")
        let rows = d == 0 ? 0 : x.count / d
        let out = Tensor(uninitialized: x.shape)
        let stats = Tensor(uninitialized: [rows, 2])                  // stats: (rows, [mean, rstd])
        let (px, py, ps, pw, pb) = (x.data, out.data, stats.data, weight.data, bias.data)
        Runtime.parallelFor(rows, cost: d * 4) { lo, hi in
            for r in lo..<hi {
                let xr = px + r * d, yr = py + r * d
                let mean = Kernels.sum(xr, d) / Float(d)
                let sq = Kernels.sumSquaredDeviations(xr, d, mean: mean)
                let rstd = 1 / (sq / Float(d) + eps).squareRoot()
                ps[2 * r] = mean; ps[2 * r + 1] = rstd
                for j in 0..<d { yr[j] = (xr[j] - mean) * rstd * pw[j] + pb[j] }
            }
        }
        return out.recording([x, weight, bias]) { out in
            let g = out.grad!                                         // g: (rows, D)
            defer { withExtendedLifetime(stats) {} }                  // ps points into stats
            if x.requiresGrad {
                let gx = x.gradBuffer()
                Runtime.parallelFor(rows, cost: d * 8) { lo, hi in
                    for r in lo..<hi {
                        let xr = px + r * d, gr = g + r * d, dr = gx + r * d
                        let mean = ps[2 * r], rstd = ps[2 * r + 1]
                        // s1 = Σ dxhat, s2 = Σ dxhat * xhat with dxhat = dy * w (four partial sums each)
                        var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
                        var b0: Float = 0, b1: Float = 0, b2: Float = 0, b3: Float = 0
                        var j = 0
                        while j + 4 <= d {
                            let e0 = gr[j] * pw[j], e1 = gr[j + 1] * pw[j + 1]
                            let e2 = gr[j + 2] * pw[j + 2], e3 = gr[j + 3] * pw[j + 3]
                            a0 += e0; a1 += e1; a2 += e2; a3 += e3
                            b0 += e0 * (xr[j] - mean); b1 += e1 * (xr[j + 1] - mean)
                            b2 += e2 * (xr[j + 2] - mean); b3 += e3 * (xr[j + 3] - mean)
                            j += 4
                        }
                        var s1 = (a0 + a2) + (a1 + a3), s2 = (b0 + b2) + (b1 + b3)
                        while j < d { let e = gr[j] * pw[j]; s1 += e; s2 += e * (xr[j] - mean); j += 1 }
                        s2 *= rstd
                        let m1 = s1 / Float(d), m2 = s2 / Float(d)
                        for j in 0..<d {
                            let xhat = (xr[j] - mean) * rstd
                            dr[j] += rstd * (gr[j] * pw[j] - m1 - xhat * m2)
                        }
                    }
                }
            }
            if weight.requiresGrad {
                let gw = weight.gradBuffer()
                // Parallel over columns so each thread owns its slice of gw.
                Runtime.parallelFor(d, cost: rows * 3) { lo, hi in
                    for r in 0..<rows {
                        let xr = px + r * d, gr = g + r * d
                        let mean = ps[2 * r], rstd = ps[2 * r + 1]
                        for j in lo..<hi { gw[j] += gr[j] * (xr[j] - mean) * rstd }
                    }
                }
            }
            if bias.requiresGrad {
                let gb = bias.gradBuffer()
                Runtime.parallelFor(d, cost: rows) { lo, hi in
                    for r in 0..<rows {
                        let gr = g + r * d
                        for j in lo..<hi { gb[j] += gr[j] }
                    }
                }
            }
        }
    }
}
