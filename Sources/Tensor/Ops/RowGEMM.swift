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

/// A Linear weight (n, k) packed once for inference in the layout `cck_gemm_rows` reads, for the
/// layers whose products take the packed path (k below `RowGEMM.dotMinK`); `RowGEMM.multiply`
/// would otherwise pack it again on every call, which at one row costs as much as the product.
/// The packed product gives the same bits as the unpacked one. The weight must not change after
/// packing (callers pack in `prepareForInference`, after loading).
public final class PackedLinearWeight: @unchecked Sendable {
    let data: UnsafeMutablePointer<Float>
    let ldw: Int, n: Int, k: Int

    /// nil where the product reads the weight as it is (k >= `RowGEMM.dotMinK`): nothing to pack.
    public init?(weight: Tensor) {
        precondition(weight.rank == 2, "PackedLinearWeight: weight must be (out, in), got \(weight.shape)")
        (n, k) = (weight.shape[0], weight.shape[1])
        guard k < RowGEMM.dotMinK else { return nil }
        let block = Int(CCK_COUT_BLOCK)
        ldw = (n + block - 1) / block * block
        data = Tensor.allocate(max(1, k * ldw))
        for kk in 0..<k {
            let row = data + kk * ldw
            for j in 0..<n { row[j] = weight.data[j * k + kk] }
            for j in n..<ldw { row[j] = 0 }
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
        let block = Int(CCK_COUT_BLOCK), np = (n + block - 1) / block * block
        var packed: Scratch.Buffer?
        let w: UnsafePointer<Float>, ldw: Int
        if transB {
            let buf = Scratch.take(k * np)                               // w: (k, np) = Bᵀ, zero columns past n
            let p = buf.pointer
            for kk in 0..<k {
                let row = p + kk * np
                for j in 0..<n { row[j] = b[j * ldb + kk] }
                for j in n..<np { row[j] = 0 }
            }
            packed = buf
            (w, ldw) = (UnsafePointer(p), np)
        } else if n == np {
            (w, ldw) = (b, ldb)                                          // B as it is
        } else {
            let buf = Scratch.take(k * np)                               // w: (k, np), zero columns past n
            let p = buf.pointer
            for kk in 0..<k {
                let row = p + kk * np
                for j in 0..<n { row[j] = b[kk * ldb + j] }
                for j in n..<np { row[j] = 0 }
            }
            packed = buf
            (w, ldw) = (UnsafePointer(p), np)
        }
        Runtime.parallelFor(m, cost: max(1, n * k / 16)) { lo, hi in
            cck_gemm_rows(a, Int32(lda), Int32(k), w, Int32(ldw), Int32(n), c, Int32(ldc), accumulate ? 1 : 0,
                          Int32(lo), Int32(hi), isa)
        }
        if let packed { Scratch.give(packed) }
    }

    /// Bᵀ for B (n, k) with stride ldb, as `cck_gemm_rows` reads it: (k, np) with zero columns
    /// past n, np = n rounded up to CCK_COUT_BLOCK. Give the buffer back to `Scratch`.
    static func packTransposed(_ b: UnsafePointer<Float>, n: Int, k: Int, ldb: Int) -> (buffer: Scratch.Buffer, ldw: Int) {
        let block = Int(CCK_COUT_BLOCK), np = (n + block - 1) / block * block
        let buf = Scratch.take(k * np)
        let p = buf.pointer
        for kk in 0..<k {
            let row = p + kk * np
            for j in 0..<n { row[j] = b[j * ldb + kk] }
            for j in n..<np { row[j] = 0 }
        }
        return (buf, np)
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
