// See include/CCoalesceKernels.h. The convolution body lives in conv3x3_template.h and is
// compiled three times: for AVX-512, for AVX2+FMA, and for the baseline the package targets.
#include "CCoalesceKernels.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// Partial sums of every reduction, whatever the register width (see conv3x3_template.h).
#define CCK_RLANES 16

int cck_padded_cout(int cout) { return (cout + CCK_COUT_BLOCK - 1) / CCK_COUT_BLOCK * CCK_COUT_BLOCK; }

// Each instantiation defines the template's parameters; the template #undefs them at its end.
#define CCK_W 16
#define CCK_T 512
#define CCK_TARGET __attribute__((target("avx512f")))
#define CCK_CBMAX 4
#define CCK_PX 8
#define CCK_NTB_R 6
#define CCK_NTB_C 2
#define CCK_RPX 14
#include "conv3x3_template.h"

#define CCK_W 8
#define CCK_T 256
#define CCK_TARGET __attribute__((target("avx2,fma")))
#define CCK_CBMAX 2
#define CCK_PX 8
#define CCK_NTB_R 3
#define CCK_NTB_C 2
#define CCK_RPX 1
#include "conv3x3_template.h"

#define CCK_W 4
#define CCK_T base
#define CCK_TARGET
#define CCK_CBMAX 2
#define CCK_PX 8
#define CCK_NTB_R 3
#define CCK_NTB_C 2
#define CCK_RPX 1
#include "conv3x3_template.h"

int cck_cpu_isa(void) {
    static int cpu = -2;
    if (cpu == -2) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) cpu = CCK_ISA_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) cpu = CCK_ISA_AVX2;
        else cpu = CCK_ISA_SCALAR;
    }
    return cpu;
}

// Read once; a race between two first callers computes the same value twice.
int cck_best_isa(void) {
    static int best = -2;
    if (best == -2) {
        int isa = cck_cpu_isa();
        const char *want = getenv("COALESCE_ISA");
        if (want && strcmp(want, "avx2") == 0 && isa > CCK_ISA_AVX2) isa = CCK_ISA_AVX2;
        else if (want && strcmp(want, "scalar") == 0) isa = CCK_ISA_SCALAR;
        best = isa;
    }
    return best;
}

const char *cck_isa_name(int isa) {
    switch (isa) {
    case CCK_ISA_AVX512: return "avx512";
    case CCK_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

// CCK_ISA_BEST is cck_best_isa(); an ISA the CPU lacks falls back to the best it has, never to
// illegal instructions.
static int resolve(int isa) {
    if (isa < 0) return cck_best_isa();
    const int cpu = cck_cpu_isa();
    return isa > cpu ? cpu : isa;
}

void cck_conv3x3_nhwc(const float *in, int n, int h, int w, int cin, const float *weight,
                      const float *bias, int cout, float *out, int act, int row0, int row1, int isa) {
    if (row0 < 0) row0 = 0;
    if (row1 > n * h) row1 = n * h;
    if (row0 >= row1 || cout <= 0) return;
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: conv3x3_512(in, h, w, cin, weight, bias, cout, out, act, row0, row1); break;
    case CCK_ISA_AVX2: conv3x3_256(in, h, w, cin, weight, bias, cout, out, act, row0, row1); break;
    default: conv3x3_base(in, h, w, cin, weight, bias, cout, out, act, row0, row1); break;
    }
}

void cck_gemm_rows(const float *x, int ldx, int k, const float *w, int ldw, int n, float *y, int ldy,
                   int accumulate, int row0, int row1, int isa) {
    if (row0 >= row1 || n <= 0) return;
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: gemm_rows_512(x, ldx, k, w, ldw, n, y, ldy, accumulate, row0, row1); break;
    case CCK_ISA_AVX2: gemm_rows_256(x, ldx, k, w, ldw, n, y, ldy, accumulate, row0, row1); break;
    default: gemm_rows_base(x, ldx, k, w, ldw, n, y, ldy, accumulate, row0, row1); break;
    }
}

void cck_gemm_rows_nt(const float *x, int ldx, int k, const float *w, int ldw, int n, float *y, int ldy,
                      int accumulate, int row0, int row1, int isa) {
    if (row0 >= row1 || n <= 0) return;
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: gemm_nt_rows_512(x, ldx, k, w, ldw, n, y, ldy, accumulate, row0, row1); break;
    case CCK_ISA_AVX2: gemm_nt_rows_256(x, ldx, k, w, ldw, n, y, ldy, accumulate, row0, row1); break;
    default: gemm_nt_rows_base(x, ldx, k, w, ldw, n, y, ldy, accumulate, row0, row1); break;
    }
}

void cck_pack_linear_panels(const float *w, int n, int k, float *dst) {
    const int np = (n + CCK_PANEL - 1) / CCK_PANEL * CCK_PANEL;
    for (int j0 = 0; j0 < np; j0 += CCK_PANEL) {
        float *panel = dst + (size_t)(j0 / CCK_PANEL) * k * CCK_PANEL;
        for (int kk = 0; kk < k; kk++)
            for (int c = 0; c < CCK_PANEL; c++)
                panel[(size_t)kk * CCK_PANEL + c] = j0 + c < n ? w[(size_t)(j0 + c) * k + kk] : 0.0f;
    }
}

void cck_gemm_rows_nt_panels(const float *x, int ldx, int k, const float *wp, int n, float *y, int ldy,
                             int accumulate, int row0, int row1, int isa) {
    if (row0 >= row1 || n <= 0) return;
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: gemm_ntb_rows_512(x, ldx, k, wp, n, y, ldy, accumulate, row0, row1); break;
    case CCK_ISA_AVX2: gemm_ntb_rows_256(x, ldx, k, wp, n, y, ldy, accumulate, row0, row1); break;
    default: gemm_ntb_rows_base(x, ldx, k, wp, n, y, ldy, accumulate, row0, row1); break;
    }
}

long cck_fma_peak_loop(long iterations, int isa, float *sink) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: *sink = fma_loop_512(iterations); return iterations * 12 * 16 * 2;
    case CCK_ISA_AVX2: *sink = fma_loop_256(iterations); return iterations * 12 * 8 * 2;
    default: *sink = 0; return 0;
    }
}

void cck_silu(const float *x, float *y, long n, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: silu_512(x, y, n); break;
    case CCK_ISA_AVX2: silu_256(x, y, n); break;
    default: silu_base(x, y, n); break;
    }
}

void cck_silu_backward(const float *x, const float *gy, float *gx, long n, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: silu_backward_512(x, gy, gx, n); break;
    case CCK_ISA_AVX2: silu_backward_256(x, gy, gx, n); break;
    default: silu_backward_base(x, gy, gx, n); break;
    }
}

// ---- transposes ------------------------------------------------------------------------------

static inline void transpose_element(const float *src, int rows, int cols, int r, int c, float *dst,
                                     const float *bias, int mode) {
    const float v = src[(size_t)r * cols + c];
    float *d = dst + (size_t)c * rows + r;
    if (mode == CCK_ACCUMULATE) *d += v;
    else if (mode == CCK_STORE_BIAS) *d = v + bias[c];
    else *d = v;
}

static void transpose_rows_scalar(const float *src, int rows, int cols, int r0, int r1, float *dst,
                                  const float *bias, int mode) {
    enum { T = 32 };
    for (int c0 = 0; c0 < cols; c0 += T) {
        const int c1 = c0 + T < cols ? c0 + T : cols;
        for (int r = r0; r < r1; r++)
            for (int c = c0; c < c1; c++) transpose_element(src, rows, cols, r, c, dst, bias, mode);
    }
}

// 8x8 block: rows r..r+7, cols c..c+7 of src -> rows c..c+7, cols r..r+7 of dst.
static inline __attribute__((always_inline, target("avx2,fma"))) void block8_avx2(
    const float *s, int ls, float *d, int ld, const float *bias, int mode) {
    __m256 r0 = _mm256_loadu_ps(s + 0 * (size_t)ls), r1 = _mm256_loadu_ps(s + 1 * (size_t)ls);
    __m256 r2 = _mm256_loadu_ps(s + 2 * (size_t)ls), r3 = _mm256_loadu_ps(s + 3 * (size_t)ls);
    __m256 r4 = _mm256_loadu_ps(s + 4 * (size_t)ls), r5 = _mm256_loadu_ps(s + 5 * (size_t)ls);
    __m256 r6 = _mm256_loadu_ps(s + 6 * (size_t)ls), r7 = _mm256_loadu_ps(s + 7 * (size_t)ls);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    __m256 o[8];
    o[0] = _mm256_permute2f128_ps(u0, u4, 0x20); o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    o[2] = _mm256_permute2f128_ps(u2, u6, 0x20); o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    o[4] = _mm256_permute2f128_ps(u0, u4, 0x31); o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    o[6] = _mm256_permute2f128_ps(u2, u6, 0x31); o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
    for (int j = 0; j < 8; j++) {
        float *dj = d + (size_t)j * ld;
        __m256 v = o[j];
        if (mode == CCK_STORE_BIAS) v = _mm256_add_ps(v, _mm256_set1_ps(bias[j]));
        else if (mode == CCK_ACCUMULATE) v = _mm256_add_ps(v, _mm256_loadu_ps(dj));
        _mm256_storeu_ps(dj, v);
    }
}

static __attribute__((target("avx2,fma"))) void transpose_rows_avx2(
    const float *src, int rows, int cols, int r0, int r1, float *dst, const float *bias, int mode) {
    enum { T = 32 };
    for (int c0 = 0; c0 < cols; c0 += T) {
        const int c1 = c0 + T < cols ? c0 + T : cols;
        int r = r0;
        for (; r + 8 <= r1; r += 8) {
            int c = c0;
            for (; c + 8 <= c1; c += 8)
                block8_avx2(src + (size_t)r * cols + c, cols, dst + (size_t)c * rows + r, rows,
                            bias ? bias + c : NULL, mode);
            for (; c < c1; c++)
                for (int rr = r; rr < r + 8; rr++) transpose_element(src, rows, cols, rr, c, dst, bias, mode);
        }
        for (; r < r1; r++)
            for (int c = c0; c < c1; c++) transpose_element(src, rows, cols, r, c, dst, bias, mode);
    }
}

void cck_transpose_rows(const float *src, int rows, int cols, int r0, int r1, float *dst,
                        const float *bias, int mode, int isa) {
    if (r0 < 0) r0 = 0;
    if (r1 > rows) r1 = rows;
    if (r0 >= r1 || cols <= 0) return;
    if (mode == CCK_STORE_BIAS && !bias) mode = CCK_STORE;
    if (resolve(isa) >= CCK_ISA_AVX2) transpose_rows_avx2(src, rows, cols, r0, r1, dst, bias, mode);
    else transpose_rows_scalar(src, rows, cols, r0, r1, dst, bias, mode);
}

static __attribute__((target("avx2,fma"))) void padded_row_avx2(const float *src, int plane, int c, int w,
                                                                 float *d) {
    int c0 = 0;
    for (; c0 + 8 <= c; c0 += 8) {
        int x0 = 0;
        for (; x0 + 8 <= w; x0 += 8)
            block8_avx2(src + (size_t)c0 * plane + x0, plane, d + (size_t)x0 * c + c0, c, NULL, CCK_STORE);
        for (int x = x0; x < w; x++)
            for (int ch = c0; ch < c0 + 8; ch++) d[(size_t)x * c + ch] = src[(size_t)ch * plane + x];
    }
    for (int ch = c0; ch < c; ch++)
        for (int x = 0; x < w; x++) d[(size_t)x * c + ch] = src[(size_t)ch * plane + x];
}

void cck_nchw_to_padded_nhwc(const float *x, int n, int c, int h, int w, int u0, int u1, float *dst,
                             int isa) {
    const int wp = w + 2, plane = h * w;
    const size_t rowFloats = (size_t)wp * c;
    const int avx2 = resolve(isa) >= CCK_ISA_AVX2;
    if (u0 < 0) u0 = 0;
    if (u1 > n * (h + 2)) u1 = n * (h + 2);
    for (int u = u0; u < u1; u++) {
        const int b = u / (h + 2), yp = u % (h + 2);
        float *drow = dst + (size_t)u * rowFloats;
        if (yp == 0 || yp == h + 1) {
            memset(drow, 0, sizeof(float) * rowFloats);
            continue;
        }
        memset(drow, 0, sizeof(float) * c);
        memset(drow + (size_t)(w + 1) * c, 0, sizeof(float) * c);
        const float *src = x + (size_t)b * c * plane + (size_t)(yp - 1) * w;  // (ch, x) at src[ch*plane + x]
        float *d = drow + c;                                                   // (x, ch) at d[x*c + ch]
        if (avx2) {
            padded_row_avx2(src, plane, c, w, d);
        } else {
            for (int ch = 0; ch < c; ch++)
                for (int xx = 0; xx < w; xx++) d[(size_t)xx * c + ch] = src[(size_t)ch * plane + xx];
        }
    }
}

void cck_group_norm_forward(const float *x, float *y, int cg, long l, const float *w, const float *b,
                            float eps, float *stats, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: gn_forward_512(x, y, cg, l, w, b, eps, stats); break;
    case CCK_ISA_AVX2: gn_forward_256(x, y, cg, l, w, b, eps, stats); break;
    default: gn_forward_base(x, y, cg, l, w, b, eps, stats); break;
    }
}

void cck_group_norm_backward(const float *x, const float *g, float *gx, int cg, long l, const float *w,
                             float mean, float rstd, float *partial, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: gn_backward_512(x, g, gx, cg, l, w, mean, rstd, partial); break;
    case CCK_ISA_AVX2: gn_backward_256(x, g, gx, cg, l, w, mean, rstd, partial); break;
    default: gn_backward_base(x, g, gx, cg, l, w, mean, rstd, partial); break;
    }
}

void cck_adamw_step(float *p, const float *g, float *m, float *v, float *ema, long n,
                    const cck_adamw_params *h, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: adamw_512(p, g, m, v, ema, n, h); break;
    case CCK_ISA_AVX2: adamw_256(p, g, m, v, ema, n, h); break;
    default: adamw_base(p, g, m, v, ema, n, h); break;
    }
}

void cck_ema_update(float *ema, const float *p, long n, float d, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: ema_512(ema, p, n, d); break;
    case CCK_ISA_AVX2: ema_256(ema, p, n, d); break;
    default: ema_base(ema, p, n, d); break;
    }
}

double cck_sum_squares(const float *x, long n, int isa) {
    switch (resolve(isa)) {
    case CCK_ISA_AVX512: return sumsq_512(x, n);
    case CCK_ISA_AVX2: return sumsq_256(x, n);
    default: return sumsq_base(x, n);
    }
}

// The two packings below read the weight (cout, cin, 3, 3) row after row and write dst in blocks
// of CCK_COUT_BLOCK output columns: for each input channel, a block's 16 source rows (9 taps each,
// consecutive as ci grows) become 9 runs of 16 consecutive floats. Writing dst one element at a
// time in source order touched a new cache line per element (training packs every step).
void cck_pack_conv3x3(const float *weight, const float *bias, int cout, int cin, float *dst,
                      float *bias_dst) {
    const int coutp = cck_padded_cout(cout);
    for (int c0 = 0; c0 < coutp; c0 += CCK_COUT_BLOCK) {
        const int nb = cout - c0 < CCK_COUT_BLOCK ? cout - c0 : CCK_COUT_BLOCK;
        for (int ci = 0; ci < cin; ci++) {
            float blk[9][CCK_COUT_BLOCK];
            for (int j = 0; j < CCK_COUT_BLOCK; j++) {
                const float *src = j < nb ? weight + ((size_t)(c0 + j) * cin + ci) * 9 : NULL;
                for (int t = 0; t < 9; t++) blk[t][j] = src ? src[t] : 0.0f;
            }
            for (int t = 0; t < 9; t++) memcpy(dst + ((size_t)t * cin + ci) * coutp + c0, blk[t], sizeof blk[t]);
        }
    }
    if (bias_dst) {
        memset(bias_dst, 0, sizeof(float) * (size_t)coutp);
        if (bias) memcpy(bias_dst, bias, sizeof(float) * (size_t)cout);
    }
}

void cck_pack_conv3x3_input_gradient(const float *weight, int cout, int cin, float *dst) {
    const int cinp = cck_padded_cout(cin);
    for (int c0 = 0; c0 < cinp; c0 += CCK_COUT_BLOCK) {
        const int nb = cin - c0 < CCK_COUT_BLOCK ? cin - c0 : CCK_COUT_BLOCK;
        for (int co = 0; co < cout; co++) {
            float blk[9][CCK_COUT_BLOCK];
            const float *row = weight + ((size_t)co * cin + c0) * 9;   // channels c0.. of output co
            for (int j = 0; j < CCK_COUT_BLOCK; j++)
                for (int t = 0; t < 9; t++) blk[t][j] = j < nb ? row[(size_t)j * 9 + 8 - t] : 0.0f;
            for (int t = 0; t < 9; t++) memcpy(dst + ((size_t)t * cout + co) * cinp + c0, blk[t], sizeof blk[t]);
        }
    }
}

void cck_pad_nhwc(const float *src, int n, int h, int w, int c, int scale, float *dst) {
    const int H = h * scale, W = w * scale, wp = W + 2;
    const size_t row = (size_t)wp * c;
    for (int b = 0; b < n; b++) {
        float *img = dst + (size_t)b * (H + 2) * row;
        memset(img, 0, sizeof(float) * row);                      // top border
        memset(img + (size_t)(H + 1) * row, 0, sizeof(float) * row);  // bottom border
        for (int y = 0; y < H; y++) {
            float *d = img + (size_t)(y + 1) * row;
            const float *s = src + ((size_t)b * h + y / scale) * w * c;
            memset(d, 0, sizeof(float) * c);
            memset(d + (size_t)(W + 1) * c, 0, sizeof(float) * c);
            if (scale == 1) {
                memcpy(d + c, s, sizeof(float) * (size_t)W * c);  // one copy per row
            } else {
                for (int x = 0; x < W; x++) memcpy(d + (size_t)(x + 1) * c, s + (size_t)(x / scale) * c, sizeof(float) * c);
            }
        }
    }
}
