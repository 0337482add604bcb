// CCoalesceKernels: hand-vectorised inner loops the tensor core calls where a GEMM is the wrong
// shape. Each kernel has an AVX-512, an AVX2+FMA and a portable C version; the widest one this CPU
// supports is chosen at run time (cpuid), so the package still builds for baseline x86-64 and
// runs on any machine. Tests call every version through the `isa` argument and compare them.
//
// The AVX-512 and AVX2 versions give the same bits: every output is summed in an order that does
// not depend on the register width (lane-wise kernels keep one output per lane; reductions keep
// 16 partial sums, in one AVX-512 register or two AVX2 registers, added in lane order at the end),
// and both contract a * b + c to one FMA. The portable version (no FMA) rounds differently.
#ifndef CCOALESCE_KERNELS_H
#define CCOALESCE_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction sets a kernel can run on. CCK_ISA_BEST picks the widest this CPU has.
enum {
    CCK_ISA_BEST = -1,
    CCK_ISA_SCALAR = 0,
    CCK_ISA_AVX2 = 1,    // AVX2 + FMA, 8 floats per register
    CCK_ISA_AVX512 = 2,  // AVX-512 F, 16 floats per register
};

/// The widest instruction set this CPU supports (CCK_ISA_AVX512, _AVX2 or _SCALAR).
int cck_cpu_isa(void);
/// The instruction set CCK_ISA_BEST runs on: cck_cpu_isa(), or less where the environment variable
/// COALESCE_ISA (read once) asks for "avx2" or "scalar" (tests compare the paths this way; on AVX2
/// and AVX-512 the results are the same bits, see below).
int cck_best_isa(void);
/// "avx512", "avx2" or "scalar".
const char *cck_isa_name(int isa);

/// Activation applied to each output value after the bias.
enum { CCK_ACT_NONE = 0, CCK_ACT_SILU = 1, CCK_ACT_SIGMOID = 2 };

/// Output channels are processed in blocks of this many (weights and bias are padded to it).
#define CCK_COUT_BLOCK 16

/// Direct 3x3, stride-1 convolution on channels-last (NHWC) data, for inference.
///
/// - in: (n, h + 2, w + 2, cin): the input with a one-pixel zero border already in place
///   (cck_pad_nhwc makes it).
/// - weight: packed by cck_pack_conv3x3: (3, 3, cin, coutp), coutp = cout rounded up to
///   CCK_COUT_BLOCK, zero in the padding columns. bias: (coutp) or NULL.
/// - out: (n, h, w, cout), written (not accumulated).
/// Work is split over (image, output row) pairs in [row0, row1) so callers can run row ranges on
/// different threads; pass 0 and n*h for all of it.
void cck_conv3x3_nhwc(const float *in, int n, int h, int w, int cin, const float *weight,
                      const float *bias, int cout, float *out, int act, int row0, int row1, int isa);

/// Packs a PyTorch-layout weight (cout, cin, 3, 3) into `dst` (3, 3, cin, coutp) and pads the
/// bias (cout, may be NULL) into `bias_dst` (coutp, may be NULL). coutp = cck_padded_cout(cout).
void cck_pack_conv3x3(const float *weight, const float *bias, int cout, int cin, float *dst,
                      float *bias_dst);
int cck_padded_cout(int cout);

/// Packs the weight of the convolution that maps a 3x3, stride-1, padding-1 convolution's output
/// gradient to its input gradient: from `weight` (cout, cin, 3, 3), W'[ci][co][ky][kx] =
/// W[co][ci][2 - ky][2 - kx] in cck_pack_conv3x3's layout, (3, 3, cout, cinp) with cinp =
/// cck_padded_cout(cin), zero in the padding columns. The same values as flipping, then packing.
void cck_pack_conv3x3_input_gradient(const float *weight, int cout, int cin, float *dst);

/// dst (n, H + 2, W + 2, c) = src (n, h, w, c) with a zero border, where H = h * scale,
/// W = w * scale and pixel (y, x) of the result is src pixel (y / scale, x / scale) (nearest
/// upsampling; scale 1 is a plain copy).
void cck_pad_nhwc(const float *src, int n, int h, int w, int c, int scale, float *dst);

/// Row-stable matrix product for inference: for rows r in [row0, row1),
/// y[r][j] = (y[r][j] +) sum over kk = 0..k-1 of x[r][kk] * w[kk][j], j < n, each sum taken in
/// that order with one fused multiply-add per term (plain multiply and add on the baseline ISA),
/// so a row's result depends only on that row and w: not on the other rows, the row range or the
/// thread that computes it. x: rows of k floats, stride ldx; w: k rows, stride ldw, each with at
/// least n rounded up to CCK_COUT_BLOCK readable floats (lanes past n are computed, never stored);
/// y: stride ldy; accumulate: 0 writes y, 1 adds into it.
void cck_gemm_rows(const float *x, int ldx, int k, const float *w, int ldw, int n, float *y, int ldy,
                   int accumulate, int row0, int row1, int isa);

/// The same for a weight stored transposed, w: (n, k) with stride ldw (a Linear layer's weight):
/// y[r][j] = (y[r][j] +) dot(x[r], w[j]), summed in 16 partial sums over whole blocks of 16 in
/// index order, then across the partial sums in order, then the k % 16 tail in index order (the
/// same on every ISA with FMA). No packing.
void cck_gemm_rows_nt(const float *x, int ldx, int k, const float *w, int ldw, int n, float *y, int ldy,
                      int accumulate, int row0, int row1, int isa);

/// Output columns per panel of cck_pack_linear_panels.
#define CCK_PANEL 32

/// Packs a Linear weight w (n, k) for cck_gemm_rows_nt_panels: dst holds ceil(n / CCK_PANEL) panels
/// one after the other, panel i = columns [i * CCK_PANEL, (i + 1) * CCK_PANEL) as (k, CCK_PANEL)
/// row-major, zero past n (dst: k * n rounded up to CCK_PANEL floats).
void cck_pack_linear_panels(const float *w, int n, int k, float *dst);

/// cck_gemm_rows_nt's result, bit for bit, from the weight packed by cck_pack_linear_panels: the
/// same products summed in the same order, each weight register used for several rows and each x
/// value for two registers of columns. Faster than cck_gemm_rows_nt except at k >= 512 with fewer
/// than about 8 rows (PackedLinearWeight chooses per thread).
void cck_gemm_rows_nt_panels(const float *x, int ldx, int k, const float *wp, int n, float *y, int ldy,
                             int accumulate, int row0, int row1, int isa);

/// The machine's arithmetic ceiling for one thread: `iterations` rounds of 12 independent fused
/// multiply-adds on whole registers (AVX-512 or AVX2; nothing on the baseline ISA). Returns the
/// floating-point operations done (2 per lane per FMA); writes a value derived from them to sink.
long cck_fma_peak_loop(long iterations, int isa, float *sink);

/// Row-major C (m, n) = alpha * op(A) op(B) + beta * C for training (sgemm.c): op(A) is A (m, k)
/// with row stride lda, or the transpose of A (k, m) when transA; op(B) likewise (k, n) or the
/// transpose of (n, k). Packed blocks and an AVX-512 register tile; each output is summed over k
/// in blocks of 256, in index order within a block (no promise across shapes: inference uses the
/// row-stable kernels). Returns 0, or -1 without touching C where the CPU (or COALESCE_ISA) has no
/// AVX-512: the caller then uses another GEMM. beta 0 never reads C.
int cck_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
              int ldb, float beta, float *c, int ldc);

/// y = x * sigmoid(x) over n values (y may alias x).
void cck_silu(const float *x, float *y, long n, int isa);
/// gx += gy * d silu(x) / dx over n values.
void cck_silu_backward(const float *x, const float *gy, float *gx, long n, int isa);

/// How cck_transpose_rows writes dst: overwrite, overwrite + bias[c], or add into dst.
enum { CCK_STORE = 0, CCK_STORE_BIAS = 1, CCK_ACCUMULATE = 2 };

/// dst[c][r] (=, = + bias[c], or +=) src[r][c] for rows r in [r0, r1) and all cols c, where
/// src is (rows, cols) and dst is (cols, rows), both contiguous. Callers split row ranges over
/// threads (Tensor's Layout.transpose); 8x8 blocks are transposed in registers.
void cck_transpose_rows(const float *src, int rows, int cols, int r0, int r1, float *dst,
                        const float *bias, int mode, int isa);

/// Rows [u0, u1) of dst (n, h + 2, w + 2, c) = x (n, c, h, w) moved to channels-last with a
/// one-pixel zero border (a unit is one padded row: image u / (h + 2), row u % (h + 2)).
void cck_nchw_to_padded_nhwc(const float *x, int n, int c, int h, int w, int u0, int u1, float *dst,
                             int isa);

/// Group normalisation of one (image, group) block x, y (cg channels, l positions each):
/// stats[0] = mean, stats[1] = 1/sqrt(biased variance + eps); y = xhat * w[c] + b[c].
void cck_group_norm_forward(const float *x, float *y, int cg, long l, const float *w, const float *b,
                            float eps, float *stats, int isa);
/// Its backward for output gradient g: partial[2c] = Σ g·xhat and partial[2c+1] = Σ g over channel
/// c's positions; gx (NULL to skip) += the input gradient.
void cck_group_norm_backward(const float *x, const float *g, float *gx, int cg, long l, const float *w,
                             float mean, float rstd, float *partial, int isa);

/// One AdamW step and the weight average's update, fused into one pass over n values (elementwise,
/// with contraction off, so every instruction set gives the bits of the plain float arithmetic):
///   g' = g * grad_scale                          (gradient clipping's factor; 1 for none)
///   m  = beta1 m + (1 - beta1) g';  v = beta2 v + (1 - beta2) g' g'
///   p  = p - (decay p + lr (m / bc1) / (sqrt(v / bc2) + eps))
///   ema = ema_decay ema + (1 - ema_decay) p      (when ema is not NULL)
/// decay is lr * weight decay (0 for parameters without decay); bc1, bc2 the bias corrections.
typedef struct {
    float grad_scale, lr, decay, beta1, beta2, bc1, bc2, eps, ema_decay;
} cck_adamw_params;
void cck_adamw_step(float *p, const float *g, float *m, float *v, float *ema, long n,
                    const cck_adamw_params *h, int isa);
/// The weight average alone: ema = d ema + (1 - d) p, elementwise (contraction off).
void cck_ema_update(float *ema, const float *p, long n, float d, int isa);
/// Σ x² in double, in 16 partial sums by index (j mod 16) over the whole array, then added in
/// lane order: the same bits on every instruction set.
double cck_sum_squares(const float *x, long n, int isa);

#ifdef __cplusplus
}
#endif
#endif
