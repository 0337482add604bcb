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

/// A Linear weight (n, k) packed once for inference, transposed in the layout `cck_gemm_rows`
/// reads (k, n rounded up). Below `RowGEMM.dotMinK` the product takes the packed path anyway, and
/// `RowGEMM.multiply` would pack the weight again on every call, which at one row costs as much as
/// the product; from it on the product is `cck_gemm_rows_nt`'s dot products, which
/// `cck_gemm_rows_nt_packed` takes from the pack with the same bits and without a horizontal sum
/// per output (AVX-512, 1 thread, best of 15: 128 -> 384 at 32 rows 84-88 GFLOP/s against 58, at
/// 2048 rows 77 against 55; 256 -> 256 at 2 rows level, 75 against 77; from k = 512 on it is
/// slower, 15 against 45 at one row, so such weights stay unpacked). The packed product gives the same bits as the unpacked one. The weight must not
/// change after packing (callers pack in `prepareForInference`, after loading).
public final class PackedLinearWeight: @unchecked Sendable {
    let data: UnsafeMutablePointer<Float>
    let ldw: Int, n: Int, k: Int

    /// Packed only below this k (see above); chosen from k alone.
    static let maxK = 512

    /// nil where the product reads the weight as it is (k >= `maxK`): nothing to pack.
    public init?(weight: Tensor) {
        precondition(weight.rank == 2, "PackedLinearWeight: weight must be (out, in), got \(weight.shape)")
        (n, k) = (weight.shape[0], weight.shape[1])
        guard k < Self.maxK else { return nil }
        ldw = RowGEMM.paddedWidth(n)
        data = Tensor.allocate(max(1, k * ldw))
        RowGEMM.pack(weight.data, transposed: true, n: n, k: k, ldb: k, into: data, ldw: ldw)
    }

    /// C (m, n) = A (m, k) @ weightᵀ (+ C when `accumulate`), the same bits as
    /// `RowGEMM.multiply(transB: true, ...)` on the weight as stored.
    func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if k < RowGEMM.dotMinK {
            RowGEMM.multiplyPacked(m: m, n: n, k: k, a: a, lda: lda, w: data, ldw: ldw, accumulate: accumulate, c: c, ldc: ldc)
            return
        }
        if m <= 0 || n <= 0 { return }
        let (n, k, w, ldw, isa) = (n, k, UnsafePointer(data), ldw, Int32(CCK_ISA_BEST))
        Runtime.parallelFor(m, cost: max(1, n * k / 16)) { lo, hi in
            cck_gemm_rows_nt_packed(a, Int32(lda), Int32(k), w, Int32(ldw), Int32(n), c, Int32(ldc), accumulate ? 1 : 0,
                                    Int32(lo), Int32(hi), isa)
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
