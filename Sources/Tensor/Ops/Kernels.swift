import Foundation

/// Raw-buffer numeric kernels shared by ops: reductions with independent partial results (a
/// single running sum or maximum is a serial dependency chain the compiler must not reorder, so
/// it runs at one element per add latency), and a vectorisable exp.
enum Kernels {
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

    /// Σ (p[i] - mean)^2 over p[0..<n], eight partial sums.
    @inline(__always)
    static func sumSquaredDeviations(_ p: UnsafeMutablePointer<Float>, _ n: Int, mean: Float) -> Float {
        var a0: Float = 0, a1: Float = 0, a2: Float = 0, a3: Float = 0
        var a4: Float = 0, a5: Float = 0, a6: Float = 0, a7: Float = 0
        var j = 0
        while j + 8 <= n {
            let d0 = p[j] - mean, d1 = p[j + 1] - mean, d2 = p[j + 2] - mean, d3 = p[j + 3] - mean
            let d4 = p[j + 4] - mean, d5 = p[j + 5] - mean, d6 = p[j + 6] - mean, d7 = p[j + 7] - mean
            a0 += d0 * d0; a1 += d1 * d1; a2 += d2 * d2; a3 += d3 * d3
            a4 += d4 * d4; a5 += d5 * d5; a6 += d6 * d6; a7 += d7 * d7
            j += 8
        }
        var s = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
        while j < n { let d = p[j] - mean; s += d * d; j += 1 }
        return s
    }
}
