// General matrix product for training (include/CCoalesceKernels.h, cck_sgemm): packed blocks and
// an AVX-512 register tile, the usual layered GEMM. Training products need no fixed summation
// order across batch sizes (the row-stable kernels of inference are elsewhere), so this one sums
// each output over k in blocks of KC, in index order within a block.
#include "CCoalesceKernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

enum {
    MR = 8,    // rows of the register tile
    NR = 48,   // columns of the register tile: 3 AVX-512 registers (the training products' n are
               // mostly multiples of 48 or 16: 72, 128, 144, 288, 384 in the teacher's step)
    KC = 256,  // depth of a packed block (A's micro-panel, 8 KB, stays in L1)
    MC = 128,  // rows of A packed at once (128 KB, in L2)
    NC = 480,  // columns of B packed at once (480 KB, in L2)
};

// op(A)(i, kk) and op(B)(kk, j) for row-major A and B.
#define A_AT(i, kk) (transA ? a[(size_t)(kk) * lda + (i)] : a[(size_t)(i) * lda + (kk)])
#define B_AT(kk, j) (transB ? b[(size_t)(j) * ldb + (kk)] : b[(size_t)(kk) * ldb + (j)])

// B's block (kc x nc at (k0, j0)) as panels of NR columns, each (kc, NR) row-major, zero past nc.
static void pack_b(int transB, const float *b, int ldb, int k0, int kc, int j0, int nc, float *dst) {
    for (int jp = 0; jp < nc; jp += NR) {
        float *panel = dst + (size_t)(jp / NR) * kc * NR;
        const int w = nc - jp < NR ? nc - jp : NR;
        if (!transB) {
            for (int kk = 0; kk < kc; kk++) {
                memcpy(panel + (size_t)kk * NR, b + (size_t)(k0 + kk) * ldb + j0 + jp, sizeof(float) * w);
                for (int jj = w; jj < NR; jj++) panel[(size_t)kk * NR + jj] = 0.0f;
            }
        } else {
            for (int jj = 0; jj < NR; jj++) {
                if (jj < w) {
                    const float *src = b + (size_t)(j0 + jp + jj) * ldb + k0;
                    for (int kk = 0; kk < kc; kk++) panel[(size_t)kk * NR + jj] = src[kk];
                } else {
                    for (int kk = 0; kk < kc; kk++) panel[(size_t)kk * NR + jj] = 0.0f;
                }
            }
        }
    }
}

// A's block (mc x kc at (i0, k0)) as micro-panels of MR rows, each (kc, MR), zero past mc.
static void pack_a(int transA, const float *a, int lda, int i0, int mc, int k0, int kc, float *dst) {
    for (int ip = 0; ip < mc; ip += MR) {
        float *panel = dst + (size_t)(ip / MR) * kc * MR;
        const int h = mc - ip < MR ? mc - ip : MR;
        for (int kk = 0; kk < kc; kk++) {
            for (int ii = 0; ii < h; ii++) panel[(size_t)kk * MR + ii] = A_AT(i0 + ip + ii, k0 + kk);
            for (int ii = h; ii < MR; ii++) panel[(size_t)kk * MR + ii] = 0.0f;
        }
    }
}

// C tile (mr x nr) = alpha * A_panel B_panel + (first ? beta * C : C), nr <= 16 * NB; beta 0 never
// reads C. NB registers of columns: the last panel of a product computes only the registers it needs.
static inline __attribute__((always_inline, target("avx512f"))) void tile_512(
    int kc, const float *ap, const float *bp, float *c, int ldc, int mr, int nr, int first, float alpha, float beta,
    const int NB) {
    __m512 acc[MR][3];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();
    for (int kk = 0; kk < kc; kk++) {
        __m512 bv[3];
        for (int j = 0; j < NB; j++) bv[j] = _mm512_load_ps(bp + (size_t)kk * NR + 16 * j);
        for (int i = 0; i < MR; i++) {
            const __m512 av = _mm512_set1_ps(ap[(size_t)kk * MR + i]);
            for (int j = 0; j < NB; j++) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < NB; j++) {
            const int cols = nr - 16 * j;
            if (cols <= 0) break;
            const __mmask16 mask = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
            float *dst = c + (size_t)i * ldc + 16 * j;
            __m512 v = _mm512_mul_ps(va, acc[i][j]);
            if (!first) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, dst));
            else if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, dst), v);
            _mm512_mask_storeu_ps(dst, mask, v);
        }
    }
}

__attribute__((target("avx512f"))) static void tile_dispatch(int kc, const float *ap, const float *bp, float *c,
                                                             int ldc, int mr, int nr, int first, float alpha,
                                                             float beta) {
    if (nr > 32) tile_512(kc, ap, bp, c, ldc, mr, nr, first, alpha, beta, 3);
    else if (nr > 16) tile_512(kc, ap, bp, c, ldc, mr, nr, first, alpha, beta, 2);
    else tile_512(kc, ap, bp, c, ldc, mr, nr, first, alpha, beta, 1);
}

// Packing buffers, one pair per thread, kept for the thread's life.
static __thread float *t_apack, *t_bpack;

int cck_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
              int ldb, float beta, float *c, int ldc) {
    if (cck_best_isa() != CCK_ISA_AVX512) return -1;
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == 0.0f) {  // C = beta * C
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return 0;
    }
    if (!t_apack) t_apack = aligned_alloc(64, sizeof(float) * MC * KC);
    if (!t_bpack) t_bpack = aligned_alloc(64, sizeof(float) * KC * NC);
    if (!t_apack || !t_bpack) return -1;
    for (int j0 = 0; j0 < n; j0 += NC) {
        const int nc = n - j0 < NC ? n - j0 : NC;
        for (int k0 = 0; k0 < k; k0 += KC) {
            const int kc = k - k0 < KC ? k - k0 : KC;
            pack_b(transB, b, ldb, k0, kc, j0, nc, t_bpack);
            for (int i0 = 0; i0 < m; i0 += MC) {
                const int mc = m - i0 < MC ? m - i0 : MC;
                pack_a(transA, a, lda, i0, mc, k0, kc, t_apack);
                for (int jp = 0; jp < nc; jp += NR) {
                    const float *bp = t_bpack + (size_t)(jp / NR) * kc * NR;
                    for (int ip = 0; ip < mc; ip += MR) {
                        tile_dispatch(kc, t_apack + (size_t)(ip / MR) * kc * MR, bp, c + (size_t)(i0 + ip) * ldc + j0 + jp, ldc,
                                 mc - ip < MR ? mc - ip : MR, nc - jp < NR ? nc - jp : NR, k0 == 0, alpha, beta);
                    }
                }
            }
        }
    }
    return 0;
}
