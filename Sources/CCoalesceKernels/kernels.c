// See include/CCoalesceKernels.h. The convolution body lives in conv3x3_template.h and is
// compiled three times: for AVX-512, for AVX2+FMA, and for the baseline the package targets.
#include "CCoalesceKernels.h"

#include <stddef.h>
#include <string.h>

int cck_padded_cout(int cout) { return (cout + CCK_COUT_BLOCK - 1) / CCK_COUT_BLOCK * CCK_COUT_BLOCK; }

#define CCK_W 16
#define CCK_T 512
#define CCK_TARGET __attribute__((target("avx512f")))
#define CCK_CBMAX 4
#define CCK_PX 8
#include "conv3x3_template.h"
#undef CCK_W
#undef CCK_T
#undef CCK_TARGET
#undef CCK_CBMAX
#undef CCK_PX

#define CCK_W 8
#define CCK_T 256
#define CCK_TARGET __attribute__((target("avx2,fma")))
#define CCK_CBMAX 2
#define CCK_PX 8
#include "conv3x3_template.h"
#undef CCK_W
#undef CCK_T
#undef CCK_TARGET
#undef CCK_CBMAX
#undef CCK_PX

#define CCK_W 4
#define CCK_T base
#define CCK_TARGET
#define CCK_CBMAX 2
#define CCK_PX 8
#include "conv3x3_template.h"
#undef CCK_W
#undef CCK_T
#undef CCK_TARGET
#undef CCK_CBMAX
#undef CCK_PX

int cck_best_isa(void) {
    static int best = -2;
    if (best == -2) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) best = CCK_ISA_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = CCK_ISA_AVX2;
        else best = CCK_ISA_SCALAR;
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

// An ISA the CPU lacks falls back to the best it has, never to illegal instructions.
static int resolve(int isa) {
    const int best = cck_best_isa();
    return isa < 0 || isa > best ? best : isa;
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

void cck_pack_conv3x3(const float *weight, const float *bias, int cout, int cin, float *dst,
                      float *bias_dst) {
    const int coutp = cck_padded_cout(cout);
    memset(dst, 0, sizeof(float) * (size_t)9 * cin * coutp);
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++)
            for (int t = 0; t < 9; t++)
                dst[((size_t)t * cin + ci) * coutp + co] = weight[((size_t)co * cin + ci) * 9 + t];
    if (bias_dst) {
        memset(bias_dst, 0, sizeof(float) * (size_t)coutp);
        if (bias) memcpy(bias_dst, bias, sizeof(float) * (size_t)cout);
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
