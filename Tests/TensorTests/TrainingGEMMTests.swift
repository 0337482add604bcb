import CCoalesceKernels
import Tensor
import XCTest

/// `cck_sgemm`, the packed AVX-512 GEMM that training's products run on (`BLAS.sgemm`), against a
/// double-precision reference: every transpose, alpha and beta, and shapes with tails in every
/// dimension (rows past the 8-row tile, columns past each of its 48-column panels, depth past
/// its 256-deep blocks, and products wider than one 480-column block).
final class TrainingGEMMTests: XCTestCase {
    func testAgainstAReference() throws {
        var probe: Float = 7
        guard cck_sgemm(0, 0, 1, 1, 1, 1, [1], 1, [1], 1, 0, &probe, 1) == 0 else {
            XCTAssertEqual(probe, 7, "a CPU without AVX-512 must leave C alone")
            throw XCTSkip("no AVX-512: BLAS.sgemm uses OpenBLAS alone")
        }
        XCTAssertEqual(probe, 1)
        var rng = RandomGenerator(seed: 5)
        let cases: [(Int, Int, Int, Bool, Bool, Float, Float)] = [
            (1, 1, 1, false, false, 1, 0), (9, 17, 3, false, false, 2, 0.5), (8, 48, 256, true, false, 1, 0),
            (13, 100, 300, false, true, -0.5, 1), (37, 497, 20, true, true, 1, 0), (130, 49, 513, true, false, 1.5, -2),
            (3, 1000, 7, false, false, 1, 1),
        ]
        for (m, n, k, ta, tb, alpha, beta) in cases {
            let a = (0..<(m * k)).map { _ in rng.nextNormal() }, b = (0..<(k * n)).map { _ in rng.nextNormal() }
            let c0 = (0..<(m * n)).map { _ in rng.nextNormal() }
            let (lda, ldb) = (ta ? m : k, tb ? k : n)
            var c = c0
            XCTAssertEqual(cck_sgemm(ta ? 1 : 0, tb ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                                     beta, &c, Int32(n)), 0)
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for kk in 0..<k {
                        let x = ta ? a[kk * lda + i] : a[i * lda + kk], y = tb ? b[j * ldb + kk] : b[kk * ldb + j]
                        s += Double(x) * Double(y)
                    }
                    let want = Double(alpha) * s + Double(beta) * Double(c0[i * n + j])
                    worst = max(worst, abs(Double(c[i * n + j]) - want) / (1 + abs(want)))
                }
            }
            XCTAssertLessThan(worst, 1e-4, "(\(m), \(n), \(k)) transA \(ta) transB \(tb) alpha \(alpha) beta \(beta)")
        }
        // beta 0 never reads C: NaN there does not reach the result.
        var c = [Float](repeating: .nan, count: 4)
        _ = cck_sgemm(0, 0, 2, 2, 2, 1, [1, 2, 3, 4], 2, [1, 0, 0, 1], 2, 0, &c, 2)
        XCTAssertEqual(c, [1, 2, 3, 4])
    }

    /// Through `BLAS.sgemm` at the size where it takes the own kernel (split over threads), against
    /// OpenBLAS on the same operands.
    func testBLASSgemmAgreesWithOpenBLAS() {
        var rng = RandomGenerator(seed: 6)
        let (m, n, k) = (200, 150, 300)   // 9M multiply-adds: the own kernel, in parts
        let a = (0..<(m * k)).map { _ in rng.nextNormal() }, b = (0..<(n * k)).map { _ in rng.nextNormal() }
        var own = [Float](repeating: 0, count: m * n), ref = own
        BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, beta: 0, c: &own, ldc: n)
        BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: k, beta: 0, c: &ref, ldc: n,
                   openBLASOnly: true)
        for i in 0..<(m * n) { XCTAssertEqual(own[i], ref[i], accuracy: 1e-3 * (1 + abs(ref[i]))) }
    }
}
