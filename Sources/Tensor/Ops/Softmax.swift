import Foundation

// Softmax over the last dimension.

extension Tensor {
    /// Softmax over the last dimension: (..., D) -> (..., D), rows summing to 1.
    /// Stable (subtracts the row maximum). Backward: dx = y * (dy - Σ dy*y).
    public static func softmaxLastDim(_ x: Tensor) -> Tensor {
        precondition(x.rank >= 1, "softmaxLastDim: needs rank >= 1, got a scalar")
        let d = x.shape[x.rank - 1], rows = d == 0 ? 0 : x.count / d
        let out = Tensor(uninitialized: x.shape)
        Kernels.softmaxRows(x.data, into: out.data, rows: rows, cols: d)
        return out.recording([x]) { out in
            let g = out.grad!, gx = x.gradBuffer(), y = out.data
            Kernels.softmaxBackwardRows(y: y, dy: g, into: gx, rows: rows, cols: d, scale: 1, accumulate: true)
        }
    }
}

/// Softmax row kernels, shared with attention.
extension Kernels {
    /// y[r] = softmax(x[r]) for `rows` rows of `cols`; x and y may be the same buffer.
    /// Uses `expApprox` in plain loops the compiler vectorises (libm's expf, one call per
    /// element, was most of the attention forward time). The in-place case has its own loop:
    /// with two pointers that might overlap the compiler falls back to scalar code.
    static func softmaxRows(_ x: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>,
                            rows: Int, cols: Int) {
        Runtime.parallelFor(rows, cost: cols * 2) { lo, hi in
            for r in lo..<hi {
                let xr = x + r * cols, yr = y + r * cols
                let m = max(xr, cols)
                if xr == yr {
                    for j in 0..<cols { yr[j] = expApprox(yr[j] - m) }
                } else {
                    for j in 0..<cols { yr[j] = expApprox(xr[j] - m) }
                }
                let inv = 1 / sum(yr, cols)
                for j in 0..<cols { yr[j] *= inv }
            }
        }
    }

    /// dx[r] (= or +=) scale * y[r] * (dy[r] - Σ_j dy[r][j] * y[r][j]). dx may alias dy when
    /// not accumulating.
    static func softmaxBackwardRows(y: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>,
                                    into dx: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                    scale: Float, accumulate: Bool) {
        Runtime.parallelFor(rows, cost: cols * 3) { lo, hi in
            for r in lo..<hi {
                let yr = y + r * cols, gr = dy + r * cols, dr = dx + r * cols
                var dot: Float = 0
                for j in 0..<cols { dot += gr[j] * yr[j] }
                if accumulate {
                    for j in 0..<cols { dr[j] += scale * yr[j] * (gr[j] - dot) }
                } else {
                    for j in 0..<cols { dr[j] = scale * yr[j] * (gr[j] - dot) }
                }
            }
        }
    }
}
