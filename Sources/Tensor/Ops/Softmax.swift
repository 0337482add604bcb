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

/// Row kernels shared by softmax and attention.
enum Kernels {
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

    /// max p[0..<n] (-inf for n = 0) with eight partial maxima (a single running maximum is a
    /// serial dependency chain).
    @inline(__always)
    static func max(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        var m0 = -Float.infinity, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0
        var j = 0
        while j + 8 <= n {
            m0 = p[j] > m0 ? p[j] : m0; m1 = p[j + 1] > m1 ? p[j + 1] : m1
            m2 = p[j + 2] > m2 ? p[j + 2] : m2; m3 = p[j + 3] > m3 ? p[j + 3] : m3
            m4 = p[j + 4] > m4 ? p[j + 4] : m4; m5 = p[j + 5] > m5 ? p[j + 5] : m5
            m6 = p[j + 6] > m6 ? p[j + 6] : m6; m7 = p[j + 7] > m7 ? p[j + 7] : m7
            j += 8
        }
        var m = Swift.max(Swift.max(Swift.max(m0, m1), Swift.max(m2, m3)), Swift.max(Swift.max(m4, m5), Swift.max(m6, m7)))
        while j < n { m = p[j] > m ? p[j] : m; j += 1 }
        return m
    }

    /// Σ p[0..<n] with eight partial sums (independent adds pipeline and vectorise).
    @inline(__always)
    static func sum(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
        var a4: Float = 0, a5: Float = 0, a6: Float = 0, a7: Float = 0
        var j = 0
        while j + 8 <= n {
            a0 += p[j]; a1 += p[j + 1]; a2 += p[j + 2]; a3 += p[j + 3]
            a4 += p[j + 4]; a5 += p[j + 5]; a6 += p[j + 6]; a7 += p[j + 7]
            j += 8
        }
        var s = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
        while j < n { s += p[j]; j += 1 }
        return s
    }

    /// e^x in float32 without a libm call, so loops over it vectorise: Cephes `expf` (range
    /// reduction by ln 2 in two parts, degree-5 polynomial, 2^n from the exponent bits).
    /// Relative error about 1.2e-7 (measured against expf); inputs are clamped to
    /// [-87.34, 88.72], so e^-inf gives about 1.2e-38 rather than 0.
    @inline(__always)
    static func expApprox(_ x: Float) -> Float {
        var v = x < -87.33654 ? -87.33654 : x
        v = v > 88.72283 ? 88.72283 : v
        let t = v * 1.44269504088896341 + 12582912.0   // adding 1.5 * 2^23 rounds to an integer
        let n = t - 12582912.0
        v = v - n * 0.693359375
        v = v + n * 2.12194440e-4
        let v2 = v * v
        var p: Float = 1.9875691500e-4
        p = p * v + 1.3981999507e-3
        p = p * v + 8.3334519073e-3
        p = p * v + 4.1665795894e-2
        p = p * v + 1.6666665459e-1
        p = p * v + 5.0000001201e-1
        let e = p * v2 + v + 1
        let ni = Int32(bitPattern: t.bitPattern) &- 0x4B40_0000   // n as an integer
        // 2^n in two factors so n = -127 and n = 128 (reachable after clamping) stay finite.
        let half = ni &>> 1
        let s1 = Float(bitPattern: UInt32(bitPattern: (half &+ 127) &<< 23))
        let s2 = Float(bitPattern: UInt32(bitPattern: (ni &- half &+ 127) &<< 23))
        return e * s1 * s2
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
