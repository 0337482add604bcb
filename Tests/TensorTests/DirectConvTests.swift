import CCoalesceKernels
import Foundation
import XCTest
import Tensor

/// The direct NHWC 3x3 kernel (every instruction-set version this CPU can run) against a naive
/// loop-nest convolution written here (conv2d itself now uses the kernel for 3x3 stride 1, so it
/// cannot be the reference), with nearest upsampling and activations applied the plain way.
final class DirectConvTests: XCTestCase {
    /// y[b][co][y][x] = act(bias[co] + Σ w[co][ci][ky][kx] * up(x)[b][ci][y+ky-1][x+kx-1]), NCHW.
    func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?, upsample: Int, activation: FusedActivation) -> Tensor {
        let (n, cin, hIn, wIn) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (h, wd, cout) = (hIn * upsample, wIn * upsample, w.shape[0])
        var out = [Float](repeating: 0, count: n * cout * h * wd)
        for bi in 0..<n {
            for co in 0..<cout {
                for y in 0..<h {
                    for xx in 0..<wd {
                        var acc = Double(b?.data[co] ?? 0)
                        for ci in 0..<cin {
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let iy = y + ky - 1, ix = xx + kx - 1
                                    if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                                    let v = x.data[((bi * cin + ci) * hIn + iy / upsample) * wIn + ix / upsample]
                                    acc += Double(v) * Double(w.data[((co * cin + ci) * 3 + ky) * 3 + kx])
                                }
                            }
                        }
                        switch activation {
                        case .none: break
                        case .silu: acc = acc / (1 + Foundation.exp(-acc))
                        case .sigmoid: acc = 1 / (1 + Foundation.exp(-acc))
                        }
                        out[((bi * cout + co) * h + y) * wd + xx] = Float(acc)
                    }
                }
            }
        }
        return Tensor(out, shape: [n, cout, h, wd])
    }

    func testMatchesConv2dOnEveryISA() {
        var rng = RandomGenerator(seed: 7)
        // (batch, cin, cout, side, upsample): the coalescer decoder's shapes plus odd sizes that
        // hit the channel and pixel tails (cout not a multiple of 16 or 8, width not of 4).
        let cases: [(Int, Int, Int, Int, Int)] = [
            (2, 4, 48, 7, 1), (1, 48, 48, 7, 1), (3, 48, 32, 7, 2), (2, 32, 16, 14, 2), (2, 16, 1, 28, 1),
            (1, 3, 5, 5, 1), (2, 7, 70, 6, 1), (1, 1, 9, 3, 3),
            (2, 5, 1, 6, 2), (1, 1, 1, 4, 1),  // one output channel: the per-pixel dot-product path, with tails
            (1, 64, 13, 14, 1), (2, 16, 16, 28, 1), (1, 32, 29, 28, 1), (2, 64, 32, 7, 2),  // row tiles
        ]
        let isas = (0...Int(cck_cpu_isa())).map { Int32($0) }
        XCTAssertFalse(isas.isEmpty)
        for (n, cin, cout, side, up) in cases {
            let x = Tensor.randn([n, cin, side, side], rng: &rng)
            let w = Tensor.randn([cout, cin, 3, 3], std: 0.3, rng: &rng)
            let b = Tensor.randn([cout], rng: &rng)
            let packed = PackedConv3x3(weight: w, bias: b)
            for act in [FusedActivation.none, .silu, .sigmoid] {
                let want = reference(x, w, b, upsample: up, activation: act)
                for isa in isas {
                    let got = Tensor.conv3x3NHWC(x.nchwToNHWC(), packed, upsample: up, activation: act, isa: isa).nhwcToNCHW()
                    XCTAssertEqual(got.shape, want.shape)
                    var worst: Float = 0
                    for i in 0..<want.count { worst = max(worst, abs(got.data[i] - want.data[i]) / (1 + abs(want.data[i]))) }
                    XCTAssertLessThan(worst, 1e-4, "n\(n) \(cin)->\(cout) \(side)x\(side) up\(up) \(act) isa \(isa)")
                }
            }
        }
    }

    /// The SiLU kernels (forward and input gradient) on every ISA against the formula, over a
    /// length that leaves a tail for every vector width, values from -90 to 90.
    func testSiLUKernelsOnEveryISA() {
        let n = 1003
        let x = (0..<n).map { Float($0 - 501) * 0.18 }
        let gy = (0..<n).map { Float(($0 * 37) % 11) - 5 }
        for isa in (0...cck_cpu_isa()).map({ Int32($0) }) {
            var y = [Float](repeating: 0, count: n)
            var gx = [Float](repeating: 1, count: n)   // the kernel accumulates
            cck_silu(x, &y, n, isa)
            cck_silu_backward(x, gy, &gx, n, isa)
            for i in 0..<n {
                let v = Double(x[i]), s = 1 / (1 + Foundation.exp(-v))
                XCTAssertEqual(Double(y[i]), v * s, accuracy: 1e-5 * max(1, abs(v)), "isa \(isa) x \(v)")
                XCTAssertEqual(Double(gx[i]), 1 + Double(gy[i]) * s * (1 + v * (1 - s)), accuracy: 1e-5 * max(1, abs(v)),
                               "isa \(isa) x \(v)")
            }
        }
    }

    /// The C transposes (8x8 register blocks and scalar edges) in all three modes, on every ISA,
    /// over sizes that leave edges in both directions, against the definition.
    func testTransposeOnEveryISA() {
        for (rows, cols) in [(1, 1), (8, 8), (13, 21), (40, 9), (33, 70)] {
            let src = (0..<(rows * cols)).map { Float($0 % 97) - 48 }
            let bias = (0..<cols).map { Float($0) * 0.5 }
            for isa in (0...cck_cpu_isa()).map({ Int32($0) }) {
                for mode in [CCK_STORE, CCK_STORE_BIAS, CCK_ACCUMULATE].map({ Int32($0) }) {
                    var dst = (0..<(rows * cols)).map { Float($0 % 5) }
                    let before = dst
                    // Two row ranges, as two threads would do them.
                    let mid = rows / 2
                    cck_transpose_rows(src, Int32(rows), Int32(cols), 0, Int32(mid), &dst, bias, mode, isa)
                    cck_transpose_rows(src, Int32(rows), Int32(cols), Int32(mid), Int32(rows), &dst, bias, mode, isa)
                    for r in 0..<rows {
                        for c in 0..<cols {
                            let v = src[r * cols + c]
                            let want = mode == Int32(CCK_ACCUMULATE) ? before[c * rows + r] + v
                                : (mode == Int32(CCK_STORE_BIAS) ? v + bias[c] : v)
                            XCTAssertEqual(dst[c * rows + r], want, "\(rows)x\(cols) isa \(isa) mode \(mode) r\(r) c\(c)")
                        }
                    }
                }
            }
        }
    }

    /// NCHW -> zero-bordered NHWC (the direct convolution's input), every ISA, odd sizes.
    func testPaddedNHWCOnEveryISA() {
        for (n, c, h, w) in [(1, 1, 1, 1), (2, 8, 8, 8), (2, 13, 5, 11), (1, 32, 7, 7)] {
            let x = (0..<(n * c * h * w)).map { Float($0 % 89) - 44 }
            for isa in (0...cck_cpu_isa()).map({ Int32($0) }) {
                var dst = [Float](repeating: .nan, count: n * (h + 2) * (w + 2) * c)
                let units = n * (h + 2)
                cck_nchw_to_padded_nhwc(x, Int32(n), Int32(c), Int32(h), Int32(w), 0, Int32(units / 2), &dst, isa)
                cck_nchw_to_padded_nhwc(x, Int32(n), Int32(c), Int32(h), Int32(w), Int32(units / 2), Int32(units), &dst, isa)
                for b in 0..<n { for yp in 0..<(h + 2) { for xp in 0..<(w + 2) { for ch in 0..<c {
                    let inside = yp >= 1 && yp <= h && xp >= 1 && xp <= w
                    let want = inside ? x[((b * c + ch) * h + yp - 1) * w + xp - 1] : 0
                    XCTAssertEqual(dst[((b * (h + 2) + yp) * (w + 2) + xp) * c + ch], want, "isa \(isa) \(n)x\(c)x\(h)x\(w)")
                } } } }
            }
        }
    }

    /// Group-norm kernels: every ISA gives what the baseline version gives (the baseline is
    /// checked against NumPy and by gradient checks in NormalizationTests only on the best ISA).
    func testGroupNormKernelsAgreeAcrossISAs() {
        let (cg, l) = (3, 37)   // 37: tails for every vector width
        let n = cg * l
        let x = (0..<n).map { Float(($0 * 29) % 23) * 0.3 - 3 }
        let g = (0..<n).map { Float(($0 * 13) % 7) - 3 }
        let w: [Float] = [0.5, -1.25, 2], b: [Float] = [0.1, 0, -0.3]
        func run(_ isa: Int32) -> ([Float], [Float], [Float], [Float]) {
            var y = [Float](repeating: 0, count: n), stats: [Float] = [0, 0]
            cck_group_norm_forward(x, &y, Int32(cg), l, w, b, 1e-5, &stats, isa)
            var gx = [Float](repeating: 0.5, count: n), partial = [Float](repeating: 0, count: 2 * cg)
            cck_group_norm_backward(x, g, &gx, Int32(cg), l, w, stats[0], stats[1], &partial, isa)
            return (y, stats, gx, partial)
        }
        let base = run(Int32(CCK_ISA_SCALAR))
        // The baseline against the definition: mean and biased variance of the block.
        let mean = x.reduce(0, +) / Float(n)
        let rstd = 1 / (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(n) + 1e-5).squareRoot()
        XCTAssertEqual(base.1[0], mean, accuracy: 1e-5)
        XCTAssertEqual(base.1[1], rstd, accuracy: 1e-4)
        XCTAssertEqual(base.0[l + 2], (x[l + 2] - mean) * rstd * w[1] + b[1], accuracy: 1e-4)
        for isa in (0...cck_cpu_isa()).map({ Int32($0) }) {
            let r = run(isa)
            for (a, e) in [(r.0, base.0), (r.1, base.1), (r.2, base.2), (r.3, base.3)] {
                for i in a.indices { XCTAssertEqual(a[i], e[i], accuracy: 1e-4 * max(1, abs(e[i])), "isa \(isa) i \(i)") }
            }
        }
    }

    /// The AVX2 and AVX-512 versions of every kernel give the same bits (the promise that an AVX2
    /// machine reproduces an AVX-512 machine's images): convolutions with one and many output
    /// channels, both row GEMMs, SiLU and group norm, at sizes with tails for both widths.
    func testAVX2AndAVX512GiveTheSameBits() throws {
        guard cck_cpu_isa() >= Int32(CCK_ISA_AVX512) else { throw XCTSkip("this CPU has no AVX-512") }
        let (a2, a5) = (Int32(CCK_ISA_AVX2), Int32(CCK_ISA_AVX512))
        var rng = RandomGenerator(seed: 11)
        for (n, cin, cout, side) in [(2, 48, 48, 7), (1, 64, 1, 28), (2, 37, 1, 6), (1, 13, 70, 5),
                                     (1, 32, 16, 28), (2, 64, 9, 14), (1, 16, 3, 28), (1, 64, 32, 14), (2, 32, 20, 28)] {
            let x = Tensor.randn([n, cin, side, side], rng: &rng)
            let packed = PackedConv3x3(weight: Tensor.randn([cout, cin, 3, 3], std: 0.3, rng: &rng),
                                       bias: Tensor.randn([cout], rng: &rng))
            let xh = x.nchwToNHWC()
            for act in [FusedActivation.none, .silu, .sigmoid] {
                XCTAssertEqual(Tensor.conv3x3NHWC(xh, packed, activation: act, isa: a2).array,
                               Tensor.conv3x3NHWC(xh, packed, activation: act, isa: a5).array, "conv \(cin)->\(cout) \(act)")
            }
        }
        for (m, k, n) in [(1, 512, 512), (3, 37, 70), (5, 128, 33), (2, 200, 9), (7, 16, 1), (14, 784, 45)] {
            let x = (0..<(m * k)).map { _ in rng.nextNormal() }
            let np = (n + 15) / 16 * 16
            let w = (0..<(k * np)).map { _ in rng.nextNormal() }    // (k, np) for gemm_rows, (n, k) rows for _nt
            func run(_ isa: Int32, nt: Bool) -> [Float] {
                var y = [Float](repeating: 0, count: m * n)
                if nt { cck_gemm_rows_nt(x, Int32(k), Int32(k), w, Int32(k), Int32(n), &y, Int32(n), 0, 0, Int32(m), isa) }
                else { cck_gemm_rows(x, Int32(k), Int32(k), w, Int32(np), Int32(n), &y, Int32(n), 0, 0, Int32(m), isa) }
                return y
            }
            XCTAssertEqual(run(a2, nt: false), run(a5, nt: false), "gemm_rows \(m)x\(k)x\(n)")
            XCTAssertEqual(run(a2, nt: true), run(a5, nt: true), "gemm_rows_nt \(m)x\(k)x\(n)")
            var panels = [Float](repeating: 0, count: k * ((n + Int(CCK_PANEL) - 1) / Int(CCK_PANEL) * Int(CCK_PANEL)))
            cck_pack_linear_panels(w, Int32(n), Int32(k), &panels)    // w's first n * k values as (n, k)
            func runPanels(_ isa: Int32) -> [Float] {
                var y = [Float](repeating: 0, count: m * n)
                cck_gemm_rows_nt_panels(x, Int32(k), Int32(k), panels, Int32(n), &y, Int32(n), 0, 0, Int32(m), isa)
                return y
            }
            XCTAssertEqual(runPanels(a2), runPanels(a5), "gemm_rows_nt_panels \(m)x\(k)x\(n)")
            XCTAssertEqual(runPanels(a5), run(a5, nt: true), "gemm_rows_nt_panels against gemm_rows_nt \(m)x\(k)x\(n)")
        }
        let v = (0..<1003).map { _ in 3 * rng.nextNormal() }
        var y2 = [Float](repeating: 0, count: v.count), y5 = y2
        cck_silu(v, &y2, v.count, a2)
        cck_silu(v, &y5, v.count, a5)
        XCTAssertEqual(y2, y5, "silu")
        for (cg, l) in [(4, 49), (2, 784), (8, 16), (3, 37)] {
            let xs = Array(v.prefix(cg * l)) + [Float](repeating: 0.25, count: max(0, cg * l - v.count))
            let g = xs.map { $0 * 0.5 - 1 }
            let w = (0..<cg).map { Float($0) * 0.3 + 0.5 }, b = (0..<cg).map { Float($0) * -0.1 }
            func run(_ isa: Int32) -> [Float] {
                var y = [Float](repeating: 0, count: cg * l), stats: [Float] = [0, 0]
                cck_group_norm_forward(xs, &y, Int32(cg), l, w, b, 1e-5, &stats, isa)
                var gx = [Float](repeating: 0, count: cg * l), partial = [Float](repeating: 0, count: 2 * cg)
                cck_group_norm_backward(xs, g, &gx, Int32(cg), l, w, stats[0], stats[1], &partial, isa)
                return y + stats + gx + partial
            }
            XCTAssertEqual(run(a2), run(a5), "group norm \(cg)x\(l)")
        }
    }

    func testNoBiasAndLayoutRoundTrip() {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.randn([2, 5, 4, 6], rng: &rng)
        XCTAssertEqual(x.nchwToNHWC().nhwcToNCHW().array, x.array)
        XCTAssertEqual(x.nchwToNHWC().shape, [2, 4, 6, 5])
        let w = Tensor.randn([3, 5, 3, 3], rng: &rng)
        let want = reference(x, w, nil, upsample: 1, activation: .none)
        let got = Tensor.conv3x3NHWC(x.nchwToNHWC(), PackedConv3x3(weight: w, bias: nil)).nhwcToNCHW()
        for i in 0..<want.count { XCTAssertEqual(got.data[i], want.data[i], accuracy: 1e-4) }
    }
}
