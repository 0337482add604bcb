// One ISA's version of the direct 3x3 convolution (included by kernels.c once per ISA).
// Expects (and #undefs at its end): CCK_W (floats per register), CCK_T (type suffix), CCK_TARGET (a target attribute or
// empty), CCK_CBMAX (output-channel registers per tile), CCK_PX (most output pixels per tile).
// A tile keeps PX x CB accumulators in registers; PX is chosen per CB so that there are at least
// 8 independent accumulators (two FMA ports x four cycles of latency) without spilling.
// GCC/clang vector extensions: `a * b + c` on vectors contracts to FMA where the target has it.

#define CCK_CAT2(a, b) a##b
#define CCK_CAT(a, b) CCK_CAT2(a, b)
#define VF CCK_CAT(vf_, CCK_T)
#define VI CCK_CAT(vi_, CCK_T)

typedef float VF __attribute__((vector_size(CCK_W * 4), aligned(4)));
typedef int VI __attribute__((vector_size(CCK_W * 4), aligned(4)));
// Reductions (a sum over k, channels or positions) accumulate in CCK_RLANES partial sums whatever
// the register width: one AVX-512 register, two AVX2 registers or four SSE ones hold the same 16
// partial sums, so every instruction set adds the same terms in the same order and AVX2 and
// AVX-512 machines get the same bits. The lane-wise kernels (the convolution's tiles, the row
// GEMM, the activations) need nothing of the kind: each lane is one output there.
#define VR CCK_CAT(vr_, CCK_T)
typedef float VR __attribute__((vector_size(CCK_RLANES * 4), aligned(4)));

static inline __attribute__((always_inline)) CCK_TARGET VF CCK_CAT(splat_, CCK_T)(float s) {
    VF v;
    for (int i = 0; i < CCK_W; i++) v[i] = s;
    return v;
}

// e^x: Cephes expf (the same polynomial as Tensor's Kernels.expApprox), lane-wise.
static inline __attribute__((always_inline)) CCK_TARGET VF CCK_CAT(vexp_, CCK_T)(VF x) {
    x = __builtin_elementwise_min(x, CCK_CAT(splat_, CCK_T)(88.72283f));
    x = __builtin_elementwise_max(x, CCK_CAT(splat_, CCK_T)(-87.33654f));
    const VF magic = CCK_CAT(splat_, CCK_T)(12582912.0f);
    VF t = x * 1.44269504088896341f + magic;
    VF n = t - magic;
    VF v = x - n * 0.693359375f;
    v = v + n * 2.12194440e-4f;
    VF v2 = v * v;
    VF p = CCK_CAT(splat_, CCK_T)(1.9875691500e-4f);
    p = p * v + 1.3981999507e-3f;
    p = p * v + 8.3334519073e-3f;
    p = p * v + 4.1665795894e-2f;
    p = p * v + 1.6666665459e-1f;
    p = p * v + 5.0000001201e-1f;
    VF e = p * v2 + v + 1.0f;
    VI ni = __builtin_convertvector(n, VI);
    VI bits = (ni + 127) << 23;
    VF scale;
    __builtin_memcpy(&scale, &bits, sizeof(scale));
    return e * scale;
}

static inline __attribute__((always_inline)) CCK_TARGET VF CCK_CAT(activate_, CCK_T)(VF v, int act) {
    if (act == CCK_ACT_SILU) return v / (1.0f + CCK_CAT(vexp_, CCK_T)(-v));
    if (act == CCK_ACT_SIGMOID) return 1.0f / (1.0f + CCK_CAT(vexp_, CCK_T)(-v));
    return v;
}

// The partial sums added in lane order 0, 1, ..., CCK_RLANES - 1 (by pointer: a 16-float vector
// is not passed in registers where the target is narrower).
static inline __attribute__((always_inline)) CCK_TARGET float CCK_CAT(hsum_, CCK_T)(const VR *v) {
    float s = 0;
    for (int i = 0; i < CCK_RLANES; i++) s += (*v)[i];
    return s;
}

// The end of a convolution tile: PX positions (consecutive from q) x CB registers of output
// channels from cb0, acc[p * CCK_CBMAX + c], plus bias, through the activation, stored (only the
// channels below cout of a partial register).
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(store_tile_, CCK_T)(
    const VF *acc, const int PX, const int CB, const float *bias, int cb0, int cout, float *oimg, int q, int act) {
    for (int c = 0; c < CB; c++) {
        const int co = (cb0 + c) * CCK_W;
        const VF bv = bias ? *(const VF *)(bias + co) : CCK_CAT(splat_, CCK_T)(0.0f);
        for (int p = 0; p < PX; p++) {
            VF v = CCK_CAT(activate_, CCK_T)(acc[p * CCK_CBMAX + c] + bv, act);
            float *dst = oimg + (size_t)(q + p) * cout + co;
            if (co + CCK_W <= cout) {
                *(VF *)dst = v;
            } else {
                for (int i = 0; i < cout - co; i++) dst[i] = v[i];
            }
        }
    }
}

// One tile: PX consecutive output positions q (flattened y * w + x within one image, so a tile
// may wrap to the next row and short rows such as 7x7 need no one-pixel tails) x CB registers
// of output channels.
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(tile_, CCK_T)(
    const float *img, int w, int wp, int cin, const float *wt, int coutp, const float *bias, int cout,
    float *oimg, int q, int cb0, int act, const int PX, const int CB) {
    VF acc[CCK_PX][CCK_CBMAX];
    const float *ipx[CCK_PX];  // top-left input pixel of each position's window
    for (int p = 0; p < PX; p++) {
        const int qq = q + p, oy = qq / w, ox = qq - oy * w;
        ipx[p] = img + ((size_t)oy * wp + ox) * cin;
        for (int c = 0; c < CB; c++) acc[p][c] = CCK_CAT(splat_, CCK_T)(0.0f);
    }
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const size_t tap = ((size_t)ky * wp + kx) * cin;
            const float *wk = wt + (size_t)(ky * 3 + kx) * cin * coutp + cb0 * CCK_W;
            for (int ci = 0; ci < cin; ci++) {
                VF wv[CCK_CBMAX];
                for (int c = 0; c < CB; c++) wv[c] = *(const VF *)(wk + (size_t)ci * coutp + c * CCK_W);
                for (int p = 0; p < PX; p++) {
                    const float s = ipx[p][tap + ci];
                    for (int c = 0; c < CB; c++) acc[p][c] += s * wv[c];
                }
            }
        }
    }
    CCK_CAT(store_tile_, CCK_T)(&acc[0][0], PX, CB, bias, cb0, cout, oimg, q, act);
}

// A tile of PX positions inside one output row, for a compile-time CIN: position p's input window
// starts p * CIN floats after position 0's, so one pointer (and constant displacements) serves every
// position, where the general tile keeps a pointer per position and runs out of integer registers
// past 8. The same sums in the same order as tile_ (ky, kx, then ci, one FMA each).
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(rtile_, CCK_T)(
    const float *img, int wp, const float *wt, int coutp, const float *bias, int cout, float *oimg, int w, int oy,
    int ox, int cb0, int act, const int PX, const int CB, const int CIN) {
    VF acc[CCK_RPX][CCK_CBMAX];
    for (int p = 0; p < PX; p++)
        for (int c = 0; c < CB; c++) acc[p][c] = CCK_CAT(splat_, CCK_T)(0.0f);
    const float *base = img + ((size_t)oy * wp + ox) * CIN;
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const float *tp = base + ((size_t)ky * wp + kx) * CIN;
            const float *wk = wt + (size_t)(ky * 3 + kx) * CIN * coutp + cb0 * CCK_W;
            for (int ci = 0; ci < CIN; ci++) {
                VF wv[CCK_CBMAX];
                for (int c = 0; c < CB; c++) wv[c] = *(const VF *)(wk + (size_t)ci * coutp + c * CCK_W);
                for (int p = 0; p < PX; p++) {
                    const float s = tp[p * CIN + ci];
                    for (int c = 0; c < CB; c++) acc[p][c] += s * wv[c];
                }
            }
        }
    }
    const int q = oy * w + ox;
    CCK_CAT(store_tile_, CCK_T)(&acc[0][0], PX, CB, bias, cb0, cout, oimg, q, act);
}

// Row tiles where they apply: rows of 14 or 28 positions and CIN 16, 32 or 64 (an image decoder's
// narrow convolutions), one register of output channels (cout <= CCK_W) on tiles of 14 positions
// (1.4-1.8x the general tile at 32 -> 16 channels on 28x28), two on tiles of 7 (1.1-1.2x at 64 -> 32
// on 14x14 and 32 -> 32 on 28x28; two registers on 14 positions spill: 2-3x slower). Returns 0
// where they do not apply.
static CCK_TARGET int CCK_CAT(conv3x3_rows_, CCK_T)(const float *in, int h, int w, int cin, const float *wt,
                                                     const float *bias, int cout, float *out, int act, int row0,
                                                     int row1) {
#if CCK_RPX >= 14
    if (cout > 2 * CCK_W || w % 14 != 0 || !(cin == 16 || cin == 32 || cin == 64)) return 0;
    const int coutp = cck_padded_cout(cout), wp = w + 2;
    if (cout > CCK_W) {  // two registers of channels: tiles of 7 positions
        for (int r = row0; r < row1; r++) {
            const int b = r / h, oy = r - b * h;
            const float *img = in + (size_t)b * (h + 2) * wp * cin;
            float *oimg = out + (size_t)b * h * w * cout;
            for (int ox = 0; ox < w; ox += 7) {
                switch (cin) {
                case 16: CCK_CAT(rtile_, CCK_T)(img, wp, wt, coutp, bias, cout, oimg, w, oy, ox, 0, act, 7, 2, 16); break;
                case 32: CCK_CAT(rtile_, CCK_T)(img, wp, wt, coutp, bias, cout, oimg, w, oy, ox, 0, act, 7, 2, 32); break;
                default: CCK_CAT(rtile_, CCK_T)(img, wp, wt, coutp, bias, cout, oimg, w, oy, ox, 0, act, 7, 2, 64); break;
                }
            }
        }
        return 1;
    }
    for (int r = row0; r < row1; r++) {
        const int b = r / h, oy = r - b * h;
        const float *img = in + (size_t)b * (h + 2) * wp * cin;
        float *oimg = out + (size_t)b * h * w * cout;
        for (int ox = 0; ox < w; ox += 14) {
#define CCK_RT(CB, CIN) CCK_CAT(rtile_, CCK_T)(img, wp, wt, coutp, bias, cout, oimg, w, oy, ox, 0, act, 14, CB, CIN)
            switch (cin) {
            case 16: CCK_RT(1, 16); break;
            case 32: CCK_RT(1, 32); break;
            default: CCK_RT(1, 64); break;
            }
#undef CCK_RT
        }
    }
    return 1;
#else
    (void)in; (void)h; (void)w; (void)cin; (void)wt; (void)bias; (void)cout; (void)out; (void)act; (void)row0; (void)row1;
    return 0;
#endif
}

// One output channel (an image decoder's last layer): vectorised over input channels instead of
// output channels, so no lanes are wasted on padding (the general tile would compute 16 channels
// to keep one). Each of the three kernel rows' 3 * cin taps is summed in CCK_RLANES partial sums
// over whole blocks of CCK_RLANES, the remainder in index order beside them.
static CCK_TARGET void CCK_CAT(conv3x3_cout1_, CCK_T)(const float *in, int h, int w, int cin,
                                                      const float *wt, const float *bias,
                                                      float *out, int act, int row0, int row1) {
    const int coutp = cck_padded_cout(1), wp = w + 2;
    const int taps = 9 * cin;
    float w1[taps];  // the weight contiguous over (tap, ci)
    for (int i = 0; i < taps; i++) w1[i] = wt[(size_t)i * coutp];
    const float b0 = bias ? bias[0] : 0.0f;
    for (int r = row0; r < row1; r++) {
        const int b = r / h, oy = r % h;
        const float *img = in + (size_t)b * (h + 2) * wp * cin;
        for (int ox = 0; ox < w; ox++) {
            VR acc = (VR){0};
            float tail = 0;
            for (int ky = 0; ky < 3; ky++) {
                const float *row = img + ((size_t)(oy + ky) * wp + ox) * cin;  // 3 pixels x cin, contiguous
                const float *wk = w1 + ky * 3 * cin;
                int i = 0;
                for (; i + CCK_RLANES <= 3 * cin; i += CCK_RLANES) acc += *(const VR *)(row + i) * *(const VR *)(wk + i);
                for (; i < 3 * cin; i++) tail += row[i] * wk[i];
            }
            VF v = CCK_CAT(splat_, CCK_T)(0.0f);
            v[0] = CCK_CAT(hsum_, CCK_T)(&acc) + tail + b0;
            out[(size_t)r * w + ox] = CCK_CAT(activate_, CCK_T)(v, act)[0];
        }
    }
}

static CCK_TARGET void CCK_CAT(conv3x3_, CCK_T)(const float *in, int h, int w, int cin,
                                                const float *wt, const float *bias, int cout,
                                                float *out, int act, int row0, int row1) {
    if (cout == 1 && cin <= 1024) {
        CCK_CAT(conv3x3_cout1_, CCK_T)(in, h, w, cin, wt, bias, out, act, row0, row1);
        return;
    }
    if (CCK_CAT(conv3x3_rows_, CCK_T)(in, h, w, cin, wt, bias, cout, out, act, row0, row1)) return;
    const int coutp = cck_padded_cout(cout);
    const int nb = (cout + CCK_W - 1) / CCK_W;  // registers of output channels actually needed
    const int wp = w + 2;
    int r = row0;
    while (r < row1) {
        // The rows of one image in [r, row1) are one run of flattened positions [q0, q1).
        const int b = r / h, rEnd = (b + 1) * h < row1 ? (b + 1) * h : row1;
        const int q0 = (r - b * h) * w, q1 = (rEnd - b * h) * w;
        const float *img = in + (size_t)b * (h + 2) * wp * cin;
        float *oimg = out + (size_t)b * h * w * cout;
        for (int cb0 = 0; cb0 < nb; cb0 += CCK_CBMAX) {
            const int cbn = nb - cb0 < CCK_CBMAX ? nb - cb0 : CCK_CBMAX;
            int q = q0;
#define CCK_TILE(PXN, CBN) CCK_CAT(tile_, CCK_T)(img, w, wp, cin, wt, coutp, bias, cout, oimg, q, cb0, act, PXN, CBN)
#define CCK_RUN(PXN, CBN)                                                                              \
    for (; q + (PXN) <= q1; q += (PXN)) CCK_TILE(PXN, CBN);                                            \
    if ((PXN) > 4 && q + 4 <= q1) { CCK_TILE(4, CBN); q += 4; }                                        \
    if ((PXN) > 2 && q + 2 <= q1) { CCK_TILE(2, CBN); q += 2; }                                        \
    for (; q < q1; q++) CCK_TILE(1, CBN);
            switch (cbn) {
            case 1: CCK_RUN(CCK_PX, 1) break;
            case 2: CCK_RUN(CCK_PX / 2 + 2, 2) break;
#if CCK_CBMAX >= 4
            case 3: CCK_RUN(6, 3) break;
            default: CCK_RUN(6, 4) break;
#endif
            }
#undef CCK_RUN
#undef CCK_TILE
        }
        r = rEnd;
    }
}

// One register of a GEMM output row stored at dst: `avail` columns are real (a full register when
// avail >= CCK_W), added to what is there when `accumulate`.
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(store_cols_, CCK_T)(float *dst, VF v, int avail,
                                                                                      int accumulate) {
    if (avail >= CCK_W) {
        if (accumulate) v += *(const VF *)dst;
        *(VF *)dst = v;
    } else {
        for (int i = 0; i < avail; i++) dst[i] = accumulate ? v[i] + dst[i] : v[i];
    }
}

// One GEMM tile: PX rows of x x CB registers of output columns, each accumulator summed over
// kk = 0, 1, ..., k-1 in that order (one FMA per step), whatever the tile: a row's result does not
// depend on the rows computed beside it.
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(gemm_tile_, CCK_T)(
    const float *x, int ldx, int k, const float *w, int ldw, float *y, int ldy, int n, int r, int cb0,
    int accumulate, const int PX, const int CB) {
    VF acc[CCK_PX][CCK_CBMAX];
    for (int p = 0; p < PX; p++)
        for (int c = 0; c < CB; c++) acc[p][c] = CCK_CAT(splat_, CCK_T)(0.0f);
    const float *xr = x + (size_t)r * ldx;
    for (int kk = 0; kk < k; kk++) {
        VF wv[CCK_CBMAX];
        for (int c = 0; c < CB; c++) wv[c] = *(const VF *)(w + (size_t)kk * ldw + (cb0 + c) * CCK_W);
        for (int p = 0; p < PX; p++) {
            const float s = xr[(size_t)p * ldx + kk];
            for (int c = 0; c < CB; c++) acc[p][c] += s * wv[c];
        }
    }
    for (int c = 0; c < CB; c++) {
        const int co = (cb0 + c) * CCK_W;
        for (int p = 0; p < PX; p++) {
            CCK_CAT(store_cols_, CCK_T)(y + (size_t)(r + p) * ldy + co, acc[p][c], n - co, accumulate);
        }
    }
}

static CCK_TARGET void CCK_CAT(gemm_rows_, CCK_T)(const float *x, int ldx, int k, const float *w, int ldw, int n,
                                                  float *y, int ldy, int accumulate, int row0, int row1) {
    const int nb = (n + CCK_W - 1) / CCK_W;
    for (int cb0 = 0; cb0 < nb; cb0 += CCK_CBMAX) {
        const int cbn = nb - cb0 < CCK_CBMAX ? nb - cb0 : CCK_CBMAX;
        int r = row0;
#define CCK_TILE(PXN, CBN) CCK_CAT(gemm_tile_, CCK_T)(x, ldx, k, w, ldw, y, ldy, n, r, cb0, accumulate, PXN, CBN)
#define CCK_RUN(PXN, CBN)                                                                              \
    for (; r + (PXN) <= row1; r += (PXN)) CCK_TILE(PXN, CBN);                                          \
    if ((PXN) > 4 && r + 4 <= row1) { CCK_TILE(4, CBN); r += 4; }                                      \
    if ((PXN) > 2 && r + 2 <= row1) { CCK_TILE(2, CBN); r += 2; }                                      \
    for (; r < row1; r++) CCK_TILE(1, CBN);
        switch (cbn) {
        case 1: CCK_RUN(CCK_PX, 1) break;
        case 2: CCK_RUN(CCK_PX / 2 + 2, 2) break;
#if CCK_CBMAX >= 4
        case 3: CCK_RUN(6, 3) break;
        default: CCK_RUN(6, 4) break;
#endif
        }
#undef CCK_RUN
#undef CCK_TILE
    }
}

// GEMM against a weight stored (n, k) (a Linear layer's): output (r, j) is the dot product of row
// r of x and row j of w, summed in CCK_RLANES partial sums over whole blocks of k in index order,
// then across the partial sums in lane order, then the k tail in index order: a fixed order that
// depends on k alone, not on the register width. A tile is PX rows x NJ weight rows.
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(gemm_nt_tile_, CCK_T)(
    const float *x, int ldx, int k, const float *w, int ldw, float *y, int ldy, int r, int j, int accumulate,
    const int PX, const int NJ) {
    VR acc[2][4];
    for (int p = 0; p < PX; p++)
        for (int q = 0; q < NJ; q++) acc[p][q] = (VR){0};
    const int kv = k / CCK_RLANES * CCK_RLANES;
    for (int kk = 0; kk < kv; kk += CCK_RLANES) {
        VR wv[4];
        for (int q = 0; q < NJ; q++) wv[q] = *(const VR *)(w + (size_t)(j + q) * ldw + kk);
        for (int p = 0; p < PX; p++) {
            const VR xv = *(const VR *)(x + (size_t)(r + p) * ldx + kk);
            for (int q = 0; q < NJ; q++) acc[p][q] += xv * wv[q];
        }
    }
    for (int p = 0; p < PX; p++) {
        const float *xr = x + (size_t)(r + p) * ldx;
        for (int q = 0; q < NJ; q++) {
            const float *wr = w + (size_t)(j + q) * ldw;
            float s = CCK_CAT(hsum_, CCK_T)(&acc[p][q]);
            for (int kk = kv; kk < k; kk++) s += xr[kk] * wr[kk];
            float *dst = y + (size_t)(r + p) * ldy + j + q;
            *dst = accumulate ? s + *dst : s;
        }
    }
}

static CCK_TARGET void CCK_CAT(gemm_nt_rows_, CCK_T)(const float *x, int ldx, int k, const float *w, int ldw, int n,
                                                     float *y, int ldy, int accumulate, int row0, int row1) {
    enum { JB = 64 };  // weight rows per block: 64 x k floats stay in L2 while every row tile passes
    // Weight rows per tile: as many as fit the registers beside the 2 x NJ accumulators (a tile's
    // shape changes only speed, never a sum).
    enum { NJ = CCK_W >= CCK_RLANES ? 4 : 2 };
    for (int j0 = 0; j0 < n; j0 += JB) {
        const int j1 = j0 + JB < n ? j0 + JB : n;
        int r = row0;
        for (; r + 2 <= row1; r += 2) {
            int j = j0;
            for (; j + NJ <= j1; j += NJ) CCK_CAT(gemm_nt_tile_, CCK_T)(x, ldx, k, w, ldw, y, ldy, r, j, accumulate, 2, NJ);
            for (; j < j1; j++) CCK_CAT(gemm_nt_tile_, CCK_T)(x, ldx, k, w, ldw, y, ldy, r, j, accumulate, 2, 1);
        }
        for (; r < row1; r++) {
            int j = j0;
            for (; j + NJ <= j1; j += NJ) CCK_CAT(gemm_nt_tile_, CCK_T)(x, ldx, k, w, ldw, y, ldy, r, j, accumulate, 1, NJ);
            for (; j < j1; j++) CCK_CAT(gemm_nt_tile_, CCK_T)(x, ldx, k, w, ldw, y, ldy, r, j, accumulate, 1, 1);
        }
    }
}

// The same products and sums as gemm_nt_rows, from the weight packed in panels of
// CCK_PANEL output columns (wp: panel after panel, each (k, CCK_PANEL), row-major, zero past n), so
// that a tile streams its weights from consecutive addresses. Output (r, j)'s partial sum p (terms
// kk = p, p + CCK_RLANES, ... below the last whole block, one FMA each in that order) is formed in an
// accumulator of its own, then added to the running total in order p = 0, 1, ..., CCK_RLANES - 1:
// gemm_nt_rows' bits. A tile is R rows x C registers of columns, each weight register used for R
// rows and each x value for C registers.
static inline __attribute__((always_inline)) CCK_TARGET void CCK_CAT(gemm_ntb_tile_, CCK_T)(
    const float *x, int ldx, int k, const float *panel, float *y, int ldy, int n, int r, int j, int accumulate,
    const int R, const int C) {
    const int kv = k / CCK_RLANES * CCK_RLANES;
    VF s[CCK_NTB_R][CCK_NTB_C];
    for (int q = 0; q < R; q++)
        for (int c = 0; c < C; c++) s[q][c] = CCK_CAT(splat_, CCK_T)(0.0f);
    for (int p = 0; p < CCK_RLANES; p++) {
        VF acc[CCK_NTB_R][CCK_NTB_C];
        for (int q = 0; q < R; q++)
            for (int c = 0; c < C; c++) acc[q][c] = CCK_CAT(splat_, CCK_T)(0.0f);
        for (int kk = p; kk < kv; kk += CCK_RLANES) {
            VF wv[CCK_NTB_C];
            for (int c = 0; c < C; c++) wv[c] = *(const VF *)(panel + (size_t)kk * CCK_PANEL + c * CCK_W);
            for (int q = 0; q < R; q++) {
                const float xs = x[(size_t)(r + q) * ldx + kk];
                for (int c = 0; c < C; c++) acc[q][c] += xs * wv[c];
            }
        }
        for (int q = 0; q < R; q++)
            for (int c = 0; c < C; c++) s[q][c] += acc[q][c];
    }
    for (int kk = kv; kk < k; kk++) {
        for (int c = 0; c < C; c++) {
            const VF wv = *(const VF *)(panel + (size_t)kk * CCK_PANEL + c * CCK_W);
            for (int q = 0; q < R; q++) s[q][c] += x[(size_t)(r + q) * ldx + kk] * wv;
        }
    }
    for (int q = 0; q < R; q++)
        for (int c = 0; c < C; c++)
            CCK_CAT(store_cols_, CCK_T)(y + (size_t)(r + q) * ldy + j + c * CCK_W, s[q][c], n - j - c * CCK_W, accumulate);
}

static CCK_TARGET void CCK_CAT(gemm_ntb_rows_, CCK_T)(const float *x, int ldx, int k, const float *wp, int n,
                                                      float *y, int ldy, int accumulate, int row0, int row1) {
    for (int j0 = 0; j0 < n; j0 += CCK_PANEL) {
        const float *panel = wp + (size_t)(j0 / CCK_PANEL) * k * CCK_PANEL;
        for (int c0 = 0; c0 < CCK_PANEL && j0 + c0 < n; c0 += CCK_NTB_C * CCK_W) {
            const float *sub = panel + c0;
            const int j = j0 + c0;
            // Full tiles, then the rest in tiles of at least 3 rows where there are enough rows (a
            // tile of R rows has R x C independent accumulators; below 8 the FMA latency shows).
            int full = (row1 - row0) / CCK_NTB_R, rest = (row1 - row0) % CCK_NTB_R;
            if (full > 0 && rest > 0 && rest < 3 && CCK_NTB_R + rest >= 6) { full -= 1; rest += CCK_NTB_R; }
            int r = row0;
            for (int t = 0; t < full; t++, r += CCK_NTB_R)
                CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, CCK_NTB_R, CCK_NTB_C);
            while (rest > 0) {
                const int h = rest > CCK_NTB_R ? rest - rest / 2 : rest;   // 7 -> 4 + 3, 8 -> 4 + 4
                switch (h) {
                case 1: CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, 1, CCK_NTB_C); break;
                case 2: CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, 2, CCK_NTB_C); break;
                case 3: CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, 3, CCK_NTB_C); break;
#if CCK_NTB_R > 5
                case 4: CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, 4, CCK_NTB_C); break;
                case 5: CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, 5, CCK_NTB_C); break;
#endif
                default: CCK_CAT(gemm_ntb_tile_, CCK_T)(x, ldx, k, sub, y, ldy, n, r, j, accumulate, CCK_NTB_R, CCK_NTB_C); break;
                }
                r += h;
                rest -= h;
            }
        }
    }
}

// The FMA peak loop (cck_fma_peak_loop): twelve independent accumulators, each updated by a fused
// multiply-add per iteration, so the instruction throughput, not the latency, bounds it. Returns
// their sum so the work is kept.
static __attribute__((unused)) CCK_TARGET float CCK_CAT(fma_loop_, CCK_T)(long iterations) {
    VF a[12];
    const VF m = CCK_CAT(splat_, CCK_T)(0.999999f), c = CCK_CAT(splat_, CCK_T)(1e-7f);
    for (int j = 0; j < 12; j++) a[j] = m * (float)(j + 1);
    for (long i = 0; i < iterations; i++) {
        for (int j = 0; j < 12; j++) a[j] = a[j] * m + c;
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]));
    }
    float s = 0;
    for (int j = 0; j < 12; j++)
        for (int i = 0; i < CCK_W; i++) s += a[j][i];
    return s;
}

// y[i] = x[i] * sigmoid(x[i]) for i in [0, n).
static CCK_TARGET void CCK_CAT(silu_, CCK_T)(const float *x, float *y, long n) {
    long i = 0;
    for (; i + CCK_W <= n; i += CCK_W) {
        VF v = *(const VF *)(x + i);
        *(VF *)(y + i) = v / (1.0f + CCK_CAT(vexp_, CCK_T)(-v));
    }
    if (i < n) {
        VF v = CCK_CAT(splat_, CCK_T)(0.0f);
        for (long j = i; j < n; j++) v[j - i] = x[j];
        v = v / (1.0f + CCK_CAT(vexp_, CCK_T)(-v));
        for (long j = i; j < n; j++) y[j] = v[j - i];
    }
}

// gx[i] += gy[i] * s * (1 + x * (1 - s)), s = sigmoid(x[i]): the SiLU input gradient.
static CCK_TARGET void CCK_CAT(silu_backward_, CCK_T)(const float *x, const float *gy, float *gx, long n) {
    long i = 0;
    for (; i + CCK_W <= n; i += CCK_W) {
        VF v = *(const VF *)(x + i);
        VF s = 1.0f / (1.0f + CCK_CAT(vexp_, CCK_T)(-v));
        *(VF *)(gx + i) += *(const VF *)(gy + i) * (s * (1.0f + v * (1.0f - s)));
    }
    for (; i < n; i++) {
        VF v = CCK_CAT(splat_, CCK_T)(x[i]);
        VF s = 1.0f / (1.0f + CCK_CAT(vexp_, CCK_T)(-v));
        gx[i] += gy[i] * (s[0] * (1.0f + x[i] * (1.0f - s[0])));
    }
}


// Σ p[0..n): two sets of CCK_RLANES partial sums over blocks of 2 x CCK_RLANES, one more block of
// CCK_RLANES into the first, the sets added lane-wise and then in lane order, then the tail.
static inline __attribute__((always_inline)) CCK_TARGET float CCK_CAT(sum_, CCK_T)(const float *p, long n) {
    VR a0 = (VR){0}, a1 = a0;
    long i = 0;
    for (; i + 2 * CCK_RLANES <= n; i += 2 * CCK_RLANES) { a0 += *(const VR *)(p + i); a1 += *(const VR *)(p + i + CCK_RLANES); }
    for (; i + CCK_RLANES <= n; i += CCK_RLANES) a0 += *(const VR *)(p + i);
    const VR a = a0 + a1;
    float s = CCK_CAT(hsum_, CCK_T)(&a);
    for (; i < n; i++) s += p[i];
    return s;
}

// One group of group norm, forward: x, y (cg, l); stats[0] = mean, stats[1] = 1/std.
static CCK_TARGET void CCK_CAT(gn_forward_, CCK_T)(const float *x, float *y, int cg, long l, const float *w,
                                                  const float *b, float eps, float *stats) {
    const long n = (long)cg * l;
    const float mean = CCK_CAT(sum_, CCK_T)(x, n) / (float)(n > 0 ? n : 1);
    VR acc = (VR){0};
    VR mv;
    for (int k = 0; k < CCK_RLANES; k++) mv[k] = mean;
    long i = 0;
    for (; i + CCK_RLANES <= n; i += CCK_RLANES) { VR d = *(const VR *)(x + i) - mv; acc += d * d; }
    float sq = CCK_CAT(hsum_, CCK_T)(&acc);
    for (; i < n; i++) { float d = x[i] - mean; sq += d * d; }
    const float rstd = 1.0f / __builtin_sqrtf(sq / (float)(n > 0 ? n : 1) + eps);
    stats[0] = mean;
    stats[1] = rstd;
    for (int c = 0; c < cg; c++) {
        const float a = rstd * w[c], sh = b[c] - mean * a;
        const float *xc = x + (long)c * l;
        float *yc = y + (long)c * l;
        const VF av = CCK_CAT(splat_, CCK_T)(a), shv = CCK_CAT(splat_, CCK_T)(sh);
        long j = 0;
        for (; j + CCK_W <= l; j += CCK_W) *(VF *)(yc + j) = *(const VF *)(xc + j) * av + shv;
        for (; j < l; j++) yc[j] = xc[j] * a + sh;
    }
}

// One group, backward: g = dL/dy (cg, l). partial[2c] = Σ g·xhat, partial[2c+1] = Σ g per channel
// (the weight and bias gradients' terms); gx (may be NULL) += the input gradient.
static CCK_TARGET void CCK_CAT(gn_backward_, CCK_T)(const float *x, const float *g, float *gx, int cg, long l,
                                                   const float *w, float mean, float rstd, float *partial) {
    const long n = (long)cg * l;
    const VF mv = CCK_CAT(splat_, CCK_T)(mean);
    VR mr;
    for (int k = 0; k < CCK_RLANES; k++) mr[k] = mean;
    float s1 = 0, s2 = 0;  // Σ dxhat, Σ dxhat·xhat (dxhat = g·w)
    for (int c = 0; c < cg; c++) {
        const float *xc = x + (long)c * l, *gc = g + (long)c * l;
        VR dot = (VR){0}, sg = dot;
        long j = 0;
        for (; j + CCK_RLANES <= l; j += CCK_RLANES) {
            VR gv = *(const VR *)(gc + j);
            dot += gv * (*(const VR *)(xc + j) - mr);
            sg += gv;
        }
        float d = CCK_CAT(hsum_, CCK_T)(&dot), db = CCK_CAT(hsum_, CCK_T)(&sg);
        for (; j < l; j++) { d += gc[j] * (xc[j] - mean); db += gc[j]; }
        const float dw = d * rstd;
        partial[2 * c] = dw;
        partial[2 * c + 1] = db;
        s1 += db * w[c];
        s2 += dw * w[c];
    }
    if (!gx) return;
    const float inv = 1.0f / (float)(n > 0 ? n : 1), m1 = s1 * inv, m2 = s2 * inv;
    for (int c = 0; c < cg; c++) {
        const float *xc = x + (long)c * l, *gc = g + (long)c * l;
        float *gxc = gx + (long)c * l;
        const float wc = w[c];
        const VF rv = CCK_CAT(splat_, CCK_T)(rstd), wv = CCK_CAT(splat_, CCK_T)(wc);
        const VF m1v = CCK_CAT(splat_, CCK_T)(m1), m2v = CCK_CAT(splat_, CCK_T)(m2);
        long j = 0;
        for (; j + CCK_W <= l; j += CCK_W) {
            VF xhat = (*(const VF *)(xc + j) - mv) * rv;
            *(VF *)(gxc + j) += rv * (*(const VF *)(gc + j) * wv - m1v - xhat * m2v);
        }
        for (; j < l; j++) {
            const float xhat = (xc[j] - mean) * rstd;
            gxc[j] += rstd * (gc[j] * wc - m1 - xhat * m2);
        }
    }
}

// AdamW with the weight average (cck_adamw_step), the average alone, and the sum of squares.
// Lane-wise with contraction off: every lane computes the plain float expression, so the vector
// width does not change a bit.
static CCK_TARGET void CCK_CAT(adamw_, CCK_T)(float *p, const float *g, float *m, float *v, float *ema, long n,
                                              const cck_adamw_params *h) {
#pragma clang fp contract(off)
    const float s = h->grad_scale, lr = h->lr, dc = h->decay, b1 = h->beta1, b2 = h->beta2;
    const float c1 = 1.0f - b1, c2 = 1.0f - b2, bc1 = h->bc1, bc2 = h->bc2, eps = h->eps;
    const float ed = h->ema_decay, ec = 1.0f - ed;
    long j = 0;
    for (; j + CCK_W <= n; j += CCK_W) {
        VF gj = *(const VF *)(g + j) * s;
        VF mj = *(const VF *)(m + j) * b1 + gj * c1;
        VF vj = *(const VF *)(v + j) * b2 + gj * c2 * gj;
        *(VF *)(m + j) = mj;
        *(VF *)(v + j) = vj;
        VF pj = *(const VF *)(p + j);
        pj = pj - (pj * dc + (mj / bc1) * lr / (__builtin_elementwise_sqrt(vj / bc2) + eps));
        *(VF *)(p + j) = pj;
        if (ema) *(VF *)(ema + j) = *(const VF *)(ema + j) * ed + pj * ec;
    }
    for (; j < n; j++) {
        float gj = g[j] * s;
        float mj = m[j] * b1 + gj * c1;
        float vj = v[j] * b2 + gj * c2 * gj;
        m[j] = mj;
        v[j] = vj;
        float pj = p[j];
        pj = pj - (pj * dc + (mj / bc1) * lr / (__builtin_sqrtf(vj / bc2) + eps));
        p[j] = pj;
        if (ema) ema[j] = ema[j] * ed + pj * ec;
    }
}

static CCK_TARGET void CCK_CAT(ema_, CCK_T)(float *ema, const float *p, long n, float d) {
#pragma clang fp contract(off)
    const float c = 1.0f - d;
    long j = 0;
    for (; j + CCK_W <= n; j += CCK_W) *(VF *)(ema + j) = *(const VF *)(ema + j) * d + *(const VF *)(p + j) * c;
    for (; j < n; j++) ema[j] = ema[j] * d + p[j] * c;
}

static CCK_TARGET double CCK_CAT(sumsq_, CCK_T)(const float *x, long n) {
#pragma clang fp contract(off)
    double acc[CCK_RLANES] = {0};
    long j = 0;
    for (; j + CCK_RLANES <= n; j += CCK_RLANES)
        for (int l = 0; l < CCK_RLANES; l++) { const double t = x[j + l]; acc[l] += t * t; }
    for (int l = 0; j + l < n; l++) { const double t = x[j + l]; acc[l] += t * t; }
    double total = 0;
    for (int l = 0; l < CCK_RLANES; l++) total += acc[l];
    return total;
}

#undef VF
#undef VI
#undef CCK_NTB_R
#undef CCK_NTB_C
#undef VR
#undef CCK_W
#undef CCK_T
#undef CCK_TARGET
#undef CCK_CBMAX
#undef CCK_PX
#undef CCK_RPX
