import CCoalesceBLAS
import CCoalesceKernels
import Foundation

/// The BLAS the tensor core runs on: OpenBLAS, loaded at first use with the fastest kernel this
/// CPU supports (see `CCoalesceBLAS.h` for why it is loaded with dlopen).
public enum BLAS {
    /// Loads OpenBLAS if needed and makes it single-threaded (`sgemm` splits work itself).
    /// Returns an error message if OpenBLAS could not be loaded (a slow fallback then runs).
    @discardableResult
    public static func load() -> String? {
        _ = configured
        if ccblas_load() != 0 { return String(cString: ccblas_error()) }
        return nil
    }

    /// OpenBLAS's own thread count: 1 (we split products ourselves) unless
    /// `COALESCE_OPENBLAS_THREADS` asks for its pool instead (then `sgemm` does not split).
    static let openBLASThreads: Int = {
        if let s = ProcessInfo.processInfo.environment["COALESCE_OPENBLAS_THREADS"], let n = Int(s), n >= 1 {
            return n
        }
        return 1
    }()

    private static let configured: Bool = {
        if ccblas_load() == 0 { ccblas_set_threads(Int32(openBLASThreads)) }
        return true
    }()

    /// The kernel family OpenBLAS runs, e.g. "SkylakeX"; "fallback" if OpenBLAS is missing.
    public static var coreName: String { load(); return String(cString: ccblas_corename()) }
    /// Who chose the core: "user" (OPENBLAS_CORETYPE was set), "coalesce" (we set it), "none".
    public static var coreSource: String { load(); return String(cString: ccblas_coretype_source()) }
    /// The core Coalesce picks for this CPU when the user does not.
    public static var preferredCore: String { String(cString: ccblas_preferred_core()) }
    public static var config: String { load(); return String(cString: ccblas_config()) }
    /// A note for trainers when the environment's `OPENBLAS_CORETYPE` holds OpenBLAS to narrower
    /// kernels than this CPU runs (AVX2's where it has AVX-512) and training's products run on
    /// OpenBLAS (`COALESCE_GEMM=openblas`); nil otherwise. Coalesce honours the variable; generation
    /// never uses OpenBLAS, so only training and evaluation speed depend on it.
    public static var narrowCoreNote: String? {
        guard !ownKernels, coreSource == "user", preferredCore == "SkylakeX", coreName != "SkylakeX" else { return nil }
        return "note: OPENBLAS_CORETYPE=\(coreName) in the environment holds training's matrix products to OpenBLAS's "
            + "\(coreName) kernels; this CPU runs its SkylakeX (AVX-512) kernels, 1.6x the sgemm on the machine of "
            + "BENCHMARKS.md. Unset it or set OPENBLAS_CORETYPE=SkylakeX to train faster (images do not depend on it)."
    }
    public static var threads: Int { load(); return Int(ccblas_get_threads()) }
    public static var cpuFeatures: String { String(cString: ccblas_cpu_features()) }

    /// Products below this many multiply-adds are not cut into parts (about 10 µs of work).
    static let splitGrain = 1 << 20
    /// Most parts a product is cut into.
    static let maxParts = 8

    /// Row-major C = alpha * op(A) * op(B) + beta * C (training and evaluation; generation never
    /// calls it: its products run on the row-stable kernels of `RowGEMM`, whose bits do not depend
    /// on the batch, the threads or the machine, where OpenBLAS's depend on all three).
    ///
    /// OpenBLAS runs single-threaded; a product worth splitting is cut into 2, 4 or 8 blocks of
    /// C rows (or of C columns when C is wide and short), each an independent single-threaded
    /// sgemm on a `parallelFor` worker. The cut depends on (m, n, k) only, never on the thread
    /// count, so the result does not either.
    ///
    /// On a CPU with AVX-512, products of at least `ownKernelGrain` multiply-adds run on
    /// Coalesce's own packed GEMM (`cck_sgemm`, 1.4-1.9x OpenBLAS's Haswell kernels and close to its
    /// SkylakeX ones, BENCHMARKS.md) unless `openBLASOnly` (the evaluation metrics keep OpenBLAS, so
    /// their stored results repeat) or `COALESCE_GEMM=openblas`.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, openBLASOnly: Bool = false) {
        _ = configured
        if m <= 0 || n <= 0 { return }
        let own = !openBLASOnly && ownKernels && m * n * k >= ownKernelGrain
        let parts = openBLASThreads > 1 && !own ? 1 : partCount(work: m * n * k)
        let call: Call = own ? callOwn : callOpenBLAS
        if parts <= 1 || (m < 2 * 16 && n < 2 * 16) {
            call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        if m >= n {
            // Rows i0..<i1 of C and of op(A).
            let per = (m + parts - 1) / parts
            Runtime.parallelFor(parts, cost: Runtime.parallelGrain) { lo, hi in
                for p in lo..<hi {
                    let i0 = p * per, i1 = min(m, i0 + per)
                    if i0 >= i1 { continue }
                    call(transA, transB, i1 - i0, n, k, alpha, a + (transA ? i0 : i0 * lda), lda, b, ldb,
                         beta, c + i0 * ldc, ldc)
                }
            }
        } else {
            // Columns j0..<j1 of C and of op(B).
            let per = (n + parts - 1) / parts
            Runtime.parallelFor(parts, cost: Runtime.parallelGrain) { lo, hi in
                for p in lo..<hi {
                    let j0 = p * per, j1 = min(n, j0 + per)
                    if j0 >= j1 { continue }
                    call(transA, transB, m, j1 - j0, k, alpha, a, lda, b + (transB ? j0 * ldb : j0), ldb,
                         beta, c + j0, ldc)
                }
            }
        }
    }

    /// 1, 2, 4 or 8 parts: the largest power of two <= work / splitGrain, at most `maxParts`.
    static func partCount(work: Int) -> Int {
        let limit = min(maxParts, work / splitGrain)
        var p = 1
        while p * 2 <= limit { p *= 2 }
        return p
    }

    /// Products below this many multiply-adds stay on OpenBLAS (packing costs more than it saves).
    static let ownKernelGrain = 1 << 20
    /// Whether `sgemm` may use `cck_sgemm`: the CPU runs AVX-512 and `COALESCE_GEMM` is not `openblas`.
    public static let ownKernels: Bool =
        cck_best_isa() == Int32(CCK_ISA_AVX512) && ProcessInfo.processInfo.environment["COALESCE_GEMM"] != "openblas"

    private typealias Call = (Bool, Bool, Int, Int, Int, Float, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int,
                              Float, UnsafeMutablePointer<Float>, Int) -> Void

    private static func callOpenBLAS(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                                     _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                                     _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        ccblas_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                     a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    private static func callOwn(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                                _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                                _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if cck_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                     a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc)) != 0 {
            callOpenBLAS(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
    }

    /// Symmetric eigen-decomposition in float64 (LAPACK dsyevd). Returns eigenvalues ascending
    /// and eigenvectors as rows (vectors[i] belongs to values[i]).
    public static func symmetricEigen(_ matrix: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(matrix.count == n * n)
        var a = matrix
        var w = [Double](repeating: 0, count: n)
        let info = a.withUnsafeMutableBufferPointer { ap in
            w.withUnsafeMutableBufferPointer { wp in ccblas_dsyevd(Int32(n), ap.baseAddress, wp.baseAddress) }
        }
        if info != 0 { throw TensorError.lapack(call: "dsyevd", info: Int(info)) }
        return (w, a)
    }
}
