import Foundation
import CCoalesceKernels

// Matrix products whose rows are samples (a batch of inputs), for inference: every row's result
// depends only on that row and the weights, never on how many rows share the product, where a row
// sits among them or how many threads run it. OpenBLAS cannot promise that (it picks kernels and
// tail paths by the product's shape: the same row multiplied in products of 1 and of 8 rows came
// out a few ulps apart). `cck_gemm_rows` (B (k, n)) sums each output over k in index order, one
// FMA per term; `cck_gemm_rows_nt` (B (n, k), a Linear weight) takes dot products in an order set
// by k alone; in both, the register tiles' shape changes nothing about the sums, and neither does
// the register width (AVX2 and AVX-512 give the same bits). Every product of inference runs here
// (Linear, matmul, attention, convolutions that are not the direct 3x3 kernel's), so generation
// never calls OpenBLAS, whose kernels differ between its cores.

/// A Linear weight (n, k) packed once for inference. Below `RowGEMM.dotMinK` it is packed
/// transposed in the layout `cck_gemm_rows` reads (k, n rounded up), which the product takes anyway
/// and `RowGEMM.multiply` would pack again on every call (at one row that costs as much as the
/// product). From `dotMinK` on the product is `cck_gemm_rows_nt`'s dot products, and the pack is in
/// panels of 32 output columns (`cck_pack_linear_panels`), from which `cck_gemm_rows_nt_panels`
/// computes the same sums in the same order (the same bits) with each weight register used for six
/// rows. Which kernel runs is chosen by the call's rows, never changing a bit: the panels wherever
/// k < `panelsOnlyAtRowsFromK` or the call has at least `panelRowsAtLargeK` rows on AVX-512, else
/// the dot products on the weight as stored (AVX-512, 1 thread, GFLOP/s, `cck` kernels against each
/// other: 768 -> 768 at 64 rows 157-158 panels against 97 dot products, at 8 rows 118-121 against
/// 92-94, at 2 rows 50-57 against 69-75; 256 -> 256 at 2 rows 91-120 against 65-75; 145 -> 768 at
/// 64 rows 165-197 against 41-48; BENCHMARKS.md). The weight must not change after packing (callers
/// pack in `prepareForInference`, after loading).
public final class PackedLinearWeight: @unchecked Sendable {
    let data: UnsafeMutablePointer<Float>
    let ldw: Int, n: Int, k: Int
    /// The weight as stored, for the dot-product kernel at few rows.
    let weight: Tensor

    /// From this k on, a thread with few rows takes the dot products instead of the panels.
    static let panelsOnlyAtRowsFromK = 512
    /// Rows a thread needs for the panels at k >= `panelsOnlyAtRowsFromK` (AVX-512; on AVX2 the dot
    /// products are as fast or faster there at every row count measured).
    static let panelRowsAtLargeK = 8
    /// `COALESCE_LINEAR=dot` sends every product from `dotMinK` on through the dot products (for
    /// comparisons: the same bits, another speed).
    static let panelsDisabled = ProcessInfo.processInfo.environment["COALESCE_LINEAR"] == "dot"

    public init(weight: Tensor) {
        precondition(weight.rank == 2, "PackedLinearWeight: weight must be (out, in), got \(weight.shape)")
        (n, k) = (weight.shape[0], weight.shape[1])
        self.weight = weight
        if k < RowGEMM.dotMinK {
            ldw = RowGEMM.paddedWidth(n)
            data = Tensor.allocate(max(1, k * ldw))
            RowGEMM.pack(weight.data, transposed: true, n: n, k: k, ldb: k, into: data, ldw: ldw)
        } else {
            ldw = (n + Int(CCK_PANEL) - 1) / Int(CCK_PANEL) * Int(CCK_PANEL)
            data = Tensor.allocate(max(1, k * ldw))
            cck_pack_linear_panels(weight.data, Int32(n), Int32(k), data)
        }
    }

    /// C (m, n) = A (m, k) @ weightᵀ (+ C when `accumulate`), the same bits as
    /// `RowGEMM.multiply(transB: true, ...)` on the weight as stored.
    func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if k < RowGEMM.dotMinK {
            RowGEMM.multiplyPacked(m: m, n: n, k: k, a: a, lda: lda, w: data, ldw: ldw, accumulate: accumulate, c: c, ldc: ldc)
            return
        }
        if m <= 0 || n <= 0 { return }
        let (n, k, wp, isa) = (n, k, UnsafePointer(data), Int32(CCK_ISA_BEST))
        let minPanelRows = Self.panelsDisabled ? Int.max : k < Self.panelsOnlyAtRowsFromK ? 1
            : (cck_best_isa() == Int32(CCK_ISA_AVX512) ? Self.panelRowsAtLargeK : Int.max)
        let usePanels = m >= minPanelRows
        // Each thread takes whole blocks of output columns and every row, so each streams only its
        // share of the weight (at few rows the product is the weight's read; at many, two threads
        // re-reading all of it from the shared cache cost more than the halves). Each output's
        // sums are the same whichever thread computes it.
        let unit = usePanels ? Int(CCK_PANEL) : 16
        let blocks = (n + unit - 1) / unit
        withExtendedLifetime(weight) {
            let w = UnsafePointer(weight.data)
            Runtime.parallelFor(blocks, cost: max(1, m * k * unit / 16)) { lo, hi in
                let j0 = lo * unit, j1 = min(n, hi * unit)
                if usePanels {
                    cck_gemm_rows_nt_panels(a, Int32(lda), Int32(k), wp + j0 * k, Int32(j1 - j0), c + j0, Int32(ldc),
                                            accumulate ? 1 : 0, 0, Int32(m), isa)
                } else {
                    cck_gemm_rows_nt(a, Int32(lda), Int32(k), w + j0 * k, Int32(k), Int32(j1 - j0), c + j0, Int32(ldc),
                                     accumulate ? 1 : 0, 0, Int32(m), isa)
                }
            }
        }
    }

    deinit { data.deallocate() }
}

enum RowGEMM {
    /// Below this k a transposed B is packed for `cck_gemm_rows` (measured: 64 -> 512 ran 1.4x
    /// faster packed); from it on, `cck_gemm_rows_nt` reads B as it is (512 -> 512 at one row: 6x
    /// faster than OpenBLAS, which packs the weight on every call). Chosen from k alone.
    static let dotMinK = 128

    /// C (m, n) = A (m, k) @ op(B) (+ C when `accumulate`): A row-major with stride lda; B (k, n)
    /// with stride ldb, or (n, k) when `transB`.
    static func multiply(transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, accumulate: Bool,
                         c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m <= 0 || n <= 0 { return }
        let isa = Int32(CCK_ISA_BEST)
        if transB && k >= dotMinK {
            // B (n, k) as it is: dot products of rows, no packing.
            Runtime.parallelFor(m, cost: max(1, n * k / 16)) { lo, hi in
                cck_gemm_rows_nt(a, Int32(lda), Int32(k), b, Int32(ldb), Int32(n), c, Int32(ldc), accumulate ? 1 : 0,
                                 Int32(lo), Int32(hi), isa)
            }
            return
        }
        // The kernel reads w (k, ldw) in whole registers: n rounded up to CCK_COUT_BLOCK columns.
        if !transB && n == paddedWidth(n) {
            multiplyPacked(m: m, n: n, k: k, a: a, lda: lda, w: b, ldw: ldb, accumulate: accumulate, c: c, ldc: ldc)
            return                                                       // B as it is
        }
        let ldw = paddedWidth(n)
        let buf = Scratch.take(k * ldw)                                  // w: (k, ldw) = op(B), zero columns past n
        pack(b, transposed: transB, n: n, k: k, ldb: ldb, into: buf.pointer, ldw: ldw)
        multiplyPacked(m: m, n: n, k: k, a: a, lda: lda, w: buf.pointer, ldw: ldw, accumulate: accumulate, c: c, ldc: ldc)
        Scratch.give(buf)
    }

    /// n rounded up to CCK_COUT_BLOCK: the row stride of a packed operand.
    static func paddedWidth(_ n: Int) -> Int {
        let block = Int(CCK_COUT_BLOCK)
        return (n + block - 1) / block * block
    }

    /// op(B) as `cck_gemm_rows` reads it: dst (k, ldw), zero columns past n; B is (n, k) with
    /// stride ldb when `transposed`, else (k, n).
    static func pack(_ b: UnsafePointer<Float>, transposed: Bool, n: Int, k: Int, ldb: Int,
                     into dst: UnsafeMutablePointer<Float>, ldw: Int) {
        for kk in 0..<k {
            let row = dst + kk * ldw
            if transposed {
                for j in 0..<n { row[j] = b[j * ldb + kk] }
            } else {
                for j in 0..<n { row[j] = b[kk * ldb + j] }
            }
            for j in n..<ldw { row[j] = 0 }
        }
    }

    /// Bᵀ for B (n, k) with stride ldb, packed by `pack` into a `Scratch` buffer (give it back).
    static func packTransposed(_ b: UnsafePointer<Float>, n: Int, k: Int, ldb: Int) -> (buffer: Scratch.Buffer, ldw: Int) {
        let ldw = paddedWidth(n)
        let buf = Scratch.take(k * ldw)
        pack(b, transposed: true, n: n, k: k, ldb: ldb, into: buf.pointer, ldw: ldw)
        return (buf, ldw)
    }

    /// C (m, n) = A (m, k) @ W (+ C when `accumulate`) with W already packed (k, ldw) by
    /// `packTransposed`: rows split over the threads.
    static func multiplyPacked(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                               w: UnsafePointer<Float>, ldw: Int, accumulate: Bool,
                               c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m <= 0 || n <= 0 { return }
        let isa = Int32(CCK_ISA_BEST)
        Runtime.parallelFor(m, cost: max(1, n * k / 16)) { lo, hi in
            cck_gemm_rows(a, Int32(lda), Int32(k), w, Int32(ldw), Int32(n), c, Int32(ldc), accumulate ? 1 : 0,
                          Int32(lo), Int32(hi), isa)
        }
    }
}
