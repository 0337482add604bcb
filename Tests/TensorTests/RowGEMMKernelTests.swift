import CCoalesceKernels
import Tensor
import XCTest

/// The row-stable GEMM kernels on every instruction set, with and without accumulation, against a
/// double-precision reference, at sizes with register tails in every dimension.
final class RowGEMMKernelTests: XCTestCase {
    func testKernelsMatchAReferenceOnEveryISA() {
        var rng = RandomGenerator(seed: 77)
        for (m, k, n) in [(7, 37, 5), (3, 64, 16), (9, 130, 49), (1, 512, 33), (4, 128, 384), (5, 256, 20), (13, 776, 70),
                          (8, 768, 32)] {
            let x = (0..<(m * k)).map { _ in rng.nextNormal() }
            let wKN = (0..<(k * n)).map { _ in rng.nextNormal() }            // w: (k, n)
            var wNK = [Float](repeating: 0, count: n * k)                      // its transpose (n, k)
            for kk in 0..<k { for j in 0..<n { wNK[j * k + kk] = wKN[kk * n + j] } }
            let np = (n + 15) / 16 * 16
            var wPadded = [Float](repeating: 0, count: k * np)                 // (k, np) for cck_gemm_rows
            for kk in 0..<k { for j in 0..<n { wPadded[kk * np + j] = wKN[kk * n + j] } }
            let y0 = (0..<(m * n)).map { _ in rng.nextNormal() }
            for isa in [CCK_ISA_SCALAR, CCK_ISA_AVX2, CCK_ISA_AVX512] {
                for accumulate in [0, 1] {
                    var ref = [Double](repeating: 0, count: m * n)
                    for r in 0..<m {
                        for j in 0..<n {
                            var s = accumulate == 1 ? Double(y0[r * n + j]) : 0
                            for kk in 0..<k { s += Double(x[r * k + kk]) * Double(wKN[kk * n + j]) }
                            ref[r * n + j] = s
                        }
                    }
                    var y1 = y0, y2 = y0
                    cck_gemm_rows(x, Int32(k), Int32(k), wPadded, Int32(np), Int32(n), &y1, Int32(n), Int32(accumulate),
                                  0, Int32(m), Int32(isa))
                    cck_gemm_rows_nt(x, Int32(k), Int32(k), wNK, Int32(k), Int32(n), &y2, Int32(n), Int32(accumulate),
                                     0, Int32(m), Int32(isa))
                    for i in 0..<(m * n) {
                        let tol = 1e-4 * (1 + abs(ref[i]))
                        XCTAssertEqual(Double(y1[i]), ref[i], accuracy: tol, "gemm_rows isa \(isa) (\(m),\(k),\(n)) acc \(accumulate) at \(i)")
                        XCTAssertEqual(Double(y2[i]), ref[i], accuracy: tol, "gemm_rows_nt isa \(isa) (\(m),\(k),\(n)) acc \(accumulate) at \(i)")
                    }
                    // Row ranges computed separately give the same bits as one call.
                    var y3 = y0
                    for r in 0..<m {
                        cck_gemm_rows_nt(x, Int32(k), Int32(k), wNK, Int32(k), Int32(n), &y3, Int32(n), Int32(accumulate),
                                         Int32(r), Int32(r + 1), Int32(isa))
                    }
                    XCTAssertEqual(y3, y2, "row by row vs all rows, isa \(isa)")
                    // The nt product from the weight in panels of CCK_PANEL columns: the same bits, in one call or in row ranges.
                    var panels = [Float](repeating: 0, count: k * ((n + Int(CCK_PANEL) - 1) / Int(CCK_PANEL) * Int(CCK_PANEL)))
                    cck_pack_linear_panels(wNK, Int32(n), Int32(k), &panels)
                    var y6 = y0, y7 = y0
                    cck_gemm_rows_nt_panels(x, Int32(k), Int32(k), panels, Int32(n), &y6, Int32(n), Int32(accumulate),
                                            0, Int32(m), Int32(isa))
                    for r in stride(from: 0, to: m, by: 5) {
                        cck_gemm_rows_nt_panels(x, Int32(k), Int32(k), panels, Int32(n), &y7, Int32(n), Int32(accumulate),
                                                Int32(r), Int32(min(m, r + 5)), Int32(isa))
                    }
                    XCTAssertEqual(y6, y2, "nt panels vs nt, isa \(isa) (\(m),\(k),\(n)) acc \(accumulate)")
                    XCTAssertEqual(y7, y2, "nt panels in row ranges of 5 vs nt, isa \(isa)")
                }
            }
        }
    }
}
