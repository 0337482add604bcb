import CCoalesceBLAS

/// The BLAS the tensor core runs on: OpenBLAS, loaded at first use with the fastest kernel this
/// CPU supports (see `CCoalesceBLAS.h` for why it is loaded with dlopen).
public enum BLAS {
    /// Loads OpenBLAS if needed and sets its thread count to `Runtime.threads`.
    /// Returns an error message if OpenBLAS could not be loaded (a slow fallback then runs).
    @discardableResult
    public static func load() -> String? {
        _ = configured
        if ccblas_load() != 0 { return String(cString: ccblas_error()) }
        return nil
    }

    private static let configured: Bool = {
        if ccblas_load() == 0 { ccblas_set_threads(Int32(Runtime.threads)) }
        return true
    }()

    /// The kernel family OpenBLAS runs, e.g. "SkylakeX"; "fallback" if OpenBLAS is missing.
    public static var coreName: String { load(); return String(cString: ccblas_corename()) }
    /// Who chose the core: "user" (OPENBLAS_CORETYPE was set), "coalesce" (we set it), "none".
    public static var coreSource: String { load(); return String(cString: ccblas_coretype_source()) }
    /// The core Coalesce picks for this CPU when the user does not.
    public static var preferredCore: String { String(cString: ccblas_preferred_core()) }
    public static var config: String { load(); return String(cString: ccblas_config()) }
    public static var threads: Int { load(); return Int(ccblas_get_threads()) }
    public static var cpuFeatures: String { String(cString: ccblas_cpu_features()) }

    /// Row-major C = alpha * op(A) * op(B) + beta * C.
    @inline(__always)
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = configured
        ccblas_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                     a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
