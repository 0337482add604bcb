// CCoalesceBLAS: loads OpenBLAS at first use, after choosing its kernel ("core").
//
// Why not link OpenBLAS directly: OpenBLAS reads OPENBLAS_CORETYPE once, in its load-time
// constructor. On the AVX-512 machines we run on, Debian's OpenBLAS 0.3.21 detects the CPU as
// "Prescott" and runs sgemm at ~30 GFLOP/s instead of ~190 with the SkylakeX kernels (DESIGN.md).
// A library loaded into someone else's process (libcoalesce.so inside Python) cannot re-exec its
// host, so we never put OpenBLAS in DT_NEEDED: ccblas_load() sets the variable (only if the user
// has not, and only to a core this CPU supports, checked with cpuid) and then dlopens OpenBLAS.
#ifndef CCOALESCE_BLAS_H
#define CCOALESCE_BLAS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Loads OpenBLAS once (thread-safe). Returns 0 on success, -1 on failure
/// (ccblas_error() then says why). Safe to call many times.
int ccblas_load(void);
/// Human-readable reason for the last load failure, or "" if none.
const char *ccblas_error(void);
/// The core OpenBLAS reports it is using (openblas_get_corename), e.g. "SkylakeX".
const char *ccblas_corename(void);
/// The OPENBLAS_CORETYPE that was in effect at load, and who chose it ("user", "coalesce", "none").
const char *ccblas_coretype_source(void);
/// OpenBLAS build configuration string (openblas_get_config).
const char *ccblas_config(void);
/// Number of threads OpenBLAS uses; setter clamps to >= 1.
int ccblas_get_threads(void);
void ccblas_set_threads(int n);
/// Per-thread cap on compute parallelism (0 = no cap). Thread-local, so two engine calls running
/// on two threads can each be held to one core without affecting each other.
int ccblas_thread_cap(void);
void ccblas_set_thread_cap(int cap);
/// Which CPU features cpuid reports (for `coalesce info`), as a space-separated list.
const char *ccblas_cpu_features(void);
/// The core ccblas_load would choose for this CPU ("SkylakeX", "Haswell", or "" for no override).
const char *ccblas_preferred_core(void);

/// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C.
/// transA/transB: 0 = no transpose, 1 = transpose. Calls ccblas_load() if needed; if OpenBLAS
/// cannot be loaded a (slow) portable fallback runs instead, and ccblas_corename() says "fallback".
void ccblas_sgemm(int transA, int transB, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/// Symmetric eigen-decomposition (LAPACK dsyevd via OpenBLAS) of the n x n matrix a (float64).
/// On return w holds the eigenvalues ascending and a[i*n + j] is component j of eigenvector i
/// (the matrix is symmetric, so row/column-major input is the same). Returns LAPACK info
/// (0 = ok), -1000 if LAPACK is unavailable, -1001 if out of memory.
int ccblas_dsyevd(int n, double *a, double *w);

/// Tunes glibc malloc for tensor workloads: large blocks come from the heap instead of fresh
/// mmap()s and freed memory is kept for reuse, so the kernel does not zero new pages on every
/// large allocation (profiled: 23% of a UNet training step was page clearing). Process-global:
/// the CLI and daemon call it at start; a library loaded into someone else's process does not.
/// Returns 0 on success.
int ccblas_tune_malloc(void);

#ifdef __cplusplus
}
#endif
#endif
