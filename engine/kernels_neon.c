/* engine/kernels_neon.c — AArch64 NEON dot products (ARMv8.0 baseline: no
 * dotprod extension needed).  Each function reproduces the scalar
 * reference's accumulation order exactly (engine/kernels.h): products and
 * sums as separate roundings (vmulq then vaddq, never vfmaq), the same
 * lanes and the same pairwise fold, so aarch64 gives x86-64's tokens. */
#include <string.h>

#include "kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static inline float f16(uint16_t h) { return et_f16_table[h]; }

/* Fold 4 lanes pairwise (w = 2, 1). */
static inline float fold4(float32x4_t v) {
    float32x2_t x = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(x, 0) + vget_lane_f32(x, 1);
}

/* Fold 32 lanes held in a[0..7] (4 each) as the scalar fold(acc, 32). */
static inline float fold32(float32x4_t *a) {
    for (int i = 0; i < 4; i++) a[i] = vaddq_f32(a[i], a[i + 4]);   /* w = 16 */
    a[0] = vaddq_f32(a[0], a[2]);                                   /* w = 8 */
    a[1] = vaddq_f32(a[1], a[3]);
    a[0] = vaddq_f32(a[0], a[1]);                                   /* w = 4 */
    return fold4(a[0]);
}

static inline float32x4_t load_f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
static inline float32x4_t load_bf16x4(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static float neon_dot_f32(int n, const void *wv, const void *xv) {
    const float *w = wv, *x = xv;
    float32x4_t a[8];
    for (int r = 0; r < 8; r++) a[r] = vdupq_n_f32(0);
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int r = 0; r < 8; r++) a[r] = vaddq_f32(a[r], vmulq_f32(vld1q_f32(w + i + 4 * r), vld1q_f32(x + i + 4 * r)));
    float s = fold32(a);
    for (; i < n; i++) {
        float p = w[i] * x[i];
        s = s + p;
    }
    return s;
}

static float neon_dot_f16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    float32x4_t a[8];
    for (int r = 0; r < 8; r++) a[r] = vdupq_n_f32(0);
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int r = 0; r < 8; r++) a[r] = vaddq_f32(a[r], vmulq_f32(load_f16x4(w + i + 4 * r), load_f16x4(x + i + 4 * r)));
    float s = fold32(a);
    for (; i < n; i++) {
        float p = f16(w[i]) * f16(x[i]);
        s = s + p;
    }
    return s;
}

static float neon_dot_bf16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    float32x4_t a[8];
    for (int r = 0; r < 8; r++) a[r] = vdupq_n_f32(0);
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int r = 0; r < 8; r++)
            a[r] = vaddq_f32(a[r], vmulq_f32(load_bf16x4(w + i + 4 * r), load_bf16x4(x + i + 4 * r)));
    float s = fold32(a);
    for (; i < n; i++) {
        uint32_t uw = (uint32_t)w[i] << 16, ux = (uint32_t)x[i] << 16;
        float fw, fx;
        memcpy(&fw, &uw, 4);
        memcpy(&fx, &ux, 4);
        float p = fw * fx;
        s = s + p;
    }
    return s;
}

/* Sums of 4 consecutive products of 16 signed bytes: 4 int32 lanes. */
static inline int32x4_t groups4(int8x16_t x, int8x16_t y) {
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(x), vget_low_s8(y)));
    int32x4_t hi = vpaddlq_s16(vmull_high_s8(x, y));
    return vpaddq_s32(lo, hi);
}

/* One 32-element block (w0 = elements 0..15, w1 = 16..31) against y:
 * acc + (float)sumi * d, sumi the exact sum of the 32 products (kernels.h:
 * the product rounded, then the sum). */
static inline float add_block(float acc, int8x16_t w0, int8x16_t w1, const int8_t *y, float d) {
    int32x4_t g = vaddq_s32(groups4(w0, vld1q_s8(y)), groups4(w1, vld1q_s8(y + 16)));
    float p = (float)vaddvq_s32(g) * d;
    return acc + p;
}

static float neon_dot_q8_0(int n, const void *wv, const void *xv) {
    const et_block_q8_0 *w = wv, *x = xv;
    float a = 0;
    for (int b = 0; b < n / ET_QK; b++)
        a = add_block(a, vld1q_s8(w[b].qs), vld1q_s8(w[b].qs + 16), x[b].qs, f16(w[b].d) * f16(x[b].d));
    return a;
}

static float neon_dot_q4_0(int n, const void *wv, const void *xv) {
    const et_block_q4_0 *w = wv;
    const et_block_q8_0 *x = xv;
    float a = 0;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t s8 = vdupq_n_s8(8);
    for (int b = 0; b < n / ET_QK; b++) {
        uint8x16_t q = vld1q_u8(w[b].qs);
        int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), s8);
        int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), s8);
        a = add_block(a, lo, hi, x[b].qs, f16(w[b].d) * f16(x[b].d));
    }
    return a;
}

static float neon_dot_iq4_nl(int n, const void *wv, const void *xv) {
    const et_block_iq4_nl *w = wv;
    const et_block_q8_0 *x = xv;
    float a = 0;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t table = vld1q_s8(et_kvalues_iq4nl);
    for (int b = 0; b < n / ET_QK; b++) {
        uint8x16_t q = vld1q_u8(w[b].qs);
        int8x16_t lo = vqtbl1q_s8(table, vandq_u8(q, m4));
        int8x16_t hi = vqtbl1q_s8(table, vshrq_n_u8(q, 4));
        a = add_block(a, lo, hi, x[b].qs, f16(w[b].d) * f16(x[b].d));
    }
    return a;
}

static float neon_dot_q5_0(int n, const void *wv, const void *xv) {
    const et_block_q5_0 *w = wv;
    const et_block_q8_0 *x = xv;
    float a = 0;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t s16 = vdupq_n_s8(16);
    /* bit j of a byte pattern: byte k tests bit k % 8 */
    static const uint8_t bitsel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t sel = vld1q_u8(bitsel);
    for (int b = 0; b < n / ET_QK; b++) {
        uint8_t hb[4];
        memcpy(hb, w[b].qh, 4);
        /* 0x10 where the fifth bit of element j is set: bytes of qh spread 8 ways */
        uint8x16_t h0 = vcombine_u8(vdup_n_u8(hb[0]), vdup_n_u8(hb[1]));
        uint8x16_t h1 = vcombine_u8(vdup_n_u8(hb[2]), vdup_n_u8(hb[3]));
        h0 = vandq_u8(vtstq_u8(h0, sel), vdupq_n_u8(0x10));
        h1 = vandq_u8(vtstq_u8(h1, sel), vdupq_n_u8(0x10));
        uint8x16_t q = vld1q_u8(w[b].qs);
        int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), h0)), s16);
        int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), h1)), s16);
        a = add_block(a, lo, hi, x[b].qs, f16(w[b].d) * f16(x[b].d));
    }
    return a;
}

/* Q4_1/Q5_1 against Q8_1: the unsigned quants (0..31) are valid signed
 * bytes, so add_block's sum is exact; then block b's min term. */
static inline float add_min(float acc, float ms) { return acc + ms; }

static float neon_dot_q4_1(int n, const void *wv, const void *xv) {
    const et_block_q4_1 *w = wv;
    const et_block_q8_1 *x = xv;
    float a = 0;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int b = 0; b < n / ET_QK; b++) {
        uint8x16_t q = vld1q_u8(w[b].qs);
        int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, m4));
        int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
        a = add_block(a, lo, hi, x[b].qs, f16(w[b].d) * f16(x[b].d));
        a = add_min(a, f16(w[b].m) * f16(x[b].s));
    }
    return a;
}

static float neon_dot_q5_1(int n, const void *wv, const void *xv) {
    const et_block_q5_1 *w = wv;
    const et_block_q8_1 *x = xv;
    float a = 0;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    static const uint8_t bitsel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t sel = vld1q_u8(bitsel);
    for (int b = 0; b < n / ET_QK; b++) {
        uint8_t hb[4];
        memcpy(hb, w[b].qh, 4);
        uint8x16_t h0 = vcombine_u8(vdup_n_u8(hb[0]), vdup_n_u8(hb[1]));
        uint8x16_t h1 = vcombine_u8(vdup_n_u8(hb[2]), vdup_n_u8(hb[3]));
        h0 = vandq_u8(vtstq_u8(h0, sel), vdupq_n_u8(0x10));
        h1 = vandq_u8(vtstq_u8(h1, sel), vdupq_n_u8(0x10));
        uint8x16_t q = vld1q_u8(w[b].qs);
        int8x16_t lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), h0));
        int8x16_t hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), h1));
        a = add_block(a, lo, hi, x[b].qs, f16(w[b].d) * f16(x[b].d));
        a = add_min(a, f16(w[b].m) * f16(x[b].s));
    }
    return a;
}

/* Exact sum of 16 products of signed bytes (values of a K-quant sub-block). */
static inline int32_t dot16(int8x16_t x, int8x16_t y) {
    int16x8_t p0 = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    int16x8_t p1 = vmull_high_s8(x, y);
    return vaddvq_s32(vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}

static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static float neon_dot_q4_K(int n, const void *wv, const void *xv) {
    const et_block_q4_K *w = wv;
    const et_block_q8_K *x = xv;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, w[b].scales, &sc, &m);
            const uint8_t *q = w[b].qs + 32 * (j / 2);
            const int8_t *y = x[b].qs + 32 * j;
            uint8x16_t q0 = vld1q_u8(q), q1 = vld1q_u8(q + 16);
            if (j & 1) { q0 = vshrq_n_u8(q0, 4); q1 = vshrq_n_u8(q1, 4); }
            else { q0 = vandq_u8(q0, m4); q1 = vandq_u8(q1, m4); }
            int32_t s = dot16(vreinterpretq_s8_u8(q0), vld1q_s8(y)) + dot16(vreinterpretq_s8_u8(q1), vld1q_s8(y + 16));
            sumi += sc * s;
            summ += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        float d = f16(w[b].d) * x[b].d;
        float dmin = f16(w[b].dmin) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
        float u = dmin * (float)summ;
        acc = acc - u;
    }
    return acc;
}

static float neon_dot_q6_K(int n, const void *wv, const void *xv) {
    const et_block_q6_K *w = wv;
    const et_block_q8_K *x = xv;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(3);
    const int8x16_t s32 = vdupq_n_s8(32);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *sc = w[b].scales + 8 * h;
            const int8_t *y = x[b].qs + 128 * h;
            for (int half = 0; half < 2; half++) {   /* l = 16*half .. 16*half+15 */
                uint8x16_t qa = vld1q_u8(ql + 16 * half), qb = vld1q_u8(ql + 32 + 16 * half);
                uint8x16_t hb = vld1q_u8(qh + 16 * half);
                uint8x16_t v[4];
                v[0] = vorrq_u8(vandq_u8(qa, m4), vshlq_n_u8(vandq_u8(hb, m2), 4));
                v[1] = vorrq_u8(vandq_u8(qb, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m2), 4));
                v[2] = vorrq_u8(vshrq_n_u8(qa, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m2), 4));
                v[3] = vorrq_u8(vshrq_n_u8(qb, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4));
                for (int k = 0; k < 4; k++) {   /* elements 32k + 16*half ..: sub-block 2k + half */
                    int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(v[k]), s32);
                    sumi += sc[2 * k + half] * dot16(q, vld1q_s8(y + 32 * k + 16 * half));
                }
            }
        }
        float d = f16(w[b].d) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
    }
    return acc;
}

static float neon_dot_q5_K(int n, const void *wv, const void *xv) {
    const et_block_q5_K *w = wv;
    const et_block_q8_K *x = xv;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0, summ = 0;
        const uint8x16_t h0 = vld1q_u8(w[b].qh), h1 = vld1q_u8(w[b].qh + 16);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, w[b].scales, &sc, &m);
            const uint8_t *q = w[b].qs + 32 * (j / 2);
            const int8_t *y = x[b].qs + 32 * j;
            const int8x16_t sh = vdupq_n_s8((int8_t)-j);
            uint8x16_t b0 = vshlq_n_u8(vandq_u8(vshlq_u8(h0, sh), one), 4);
            uint8x16_t b1 = vshlq_n_u8(vandq_u8(vshlq_u8(h1, sh), one), 4);
            uint8x16_t q0 = vld1q_u8(q), q1 = vld1q_u8(q + 16);
            if (j & 1) { q0 = vshrq_n_u8(q0, 4); q1 = vshrq_n_u8(q1, 4); }
            else { q0 = vandq_u8(q0, m4); q1 = vandq_u8(q1, m4); }
            q0 = vorrq_u8(q0, b0);
            q1 = vorrq_u8(q1, b1);
            int32_t s = dot16(vreinterpretq_s8_u8(q0), vld1q_s8(y)) + dot16(vreinterpretq_s8_u8(q1), vld1q_s8(y + 16));
            sumi += sc * s;
            summ += m * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        }
        float d = f16(w[b].d) * x[b].d;
        float dmin = f16(w[b].dmin) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
        float u = dmin * (float)summ;
        acc = acc - u;
    }
    return acc;
}

/* Signed 6-bit scale j of a Q3_K super-block, minus 32. */
static inline int scale_q3(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

static float neon_dot_q3_K(int n, const void *wv, const void *xv) {
    const et_block_q3_K *w = wv;
    const et_block_q8_K *x = xv;
    const uint8x16_t m2 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const int8x16_t four = vdupq_n_s8(4);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0;
        for (int h = 0; h < 2; h++) {
            for (int half = 0; half < 2; half++) {   /* l = 16*half .. 16*half+15 */
                const uint8x16_t q = vld1q_u8(w[b].qs + 32 * h + 16 * half);
                const uint8x16_t hm = vld1q_u8(w[b].hmask + 16 * half);
                for (int k = 0; k < 4; k++) {   /* elements 128h + 32k + 16*half ..: sub-block 8h + 2k + half */
                    uint8x16_t lo = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * k))), m2);
                    uint8x16_t hi = vshlq_n_u8(vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(-(4 * h + k)))), one), 2);
                    int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), four);
                    sumi += scale_q3(w[b].scales, 8 * h + 2 * k + half) *
                            dot16(v, vld1q_s8(x[b].qs + 128 * h + 32 * k + 16 * half));
                }
            }
        }
        float d = f16(w[b].d) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
    }
    return acc;
}

static float neon_dot_q2_K(int n, const void *wv, const void *xv) {
    const et_block_q2_K *w = wv;
    const et_block_q8_K *x = xv;
    const uint8x16_t m2 = vdupq_n_u8(3);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 16; j++) summ += (w[b].scales[j] >> 4) * x[b].bsums[j];
        for (int h = 0; h < 2; h++) {
            for (int half = 0; half < 2; half++) {
                const uint8x16_t q = vld1q_u8(w[b].qs + 32 * h + 16 * half);
                for (int k = 0; k < 4; k++) {   /* sub-block 8h + 2k + half */
                    uint8x16_t v = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * k))), m2);
                    sumi += (w[b].scales[8 * h + 2 * k + half] & 0xF) *
                            dot16(vreinterpretq_s8_u8(v), vld1q_s8(x[b].qs + 128 * h + 32 * k + 16 * half));
                }
            }
        }
        float d = f16(w[b].d) * x[b].d;
        float dmin = f16(w[b].dmin) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
        float u = dmin * (float)summ;
        acc = acc - u;
    }
    return acc;
}

/* ---- four activation rows per weight row (prompt processing): the
 * weight is unpacked once per block / super-block, each row keeps its
 * single dot's lanes, integer sums and float order. ---- */

static void neon_dot4_q4_1(int n, const void *wv, const void *xv, size_t xs, float *out) {
    const et_block_q4_1 *w = wv;
    float a[4] = {0, 0, 0, 0};
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int b = 0; b < n / ET_QK; b++) {
        uint8x16_t q = vld1q_u8(w[b].qs);
        int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, m4));
        int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
        float dw = f16(w[b].d), mw = f16(w[b].m);
        for (int k = 0; k < 4; k++) {
            const et_block_q8_1 *xb = (const et_block_q8_1 *)(const void *)((const uint8_t *)xv + (size_t)k * xs) + b;
            a[k] = add_block(a[k], lo, hi, xb->qs, dw * f16(xb->d));
            a[k] = add_min(a[k], mw * f16(xb->s));
        }
    }
    for (int k = 0; k < 4; k++) out[k] = a[k];
}

/* The 4 partial sums of 16 products of signed bytes (exact). */
static inline int32x4_t dot16v(int8x16_t x, int8x16_t y) {
    int16x8_t p0 = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    int16x8_t p1 = vmull_high_s8(x, y);
    return vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1));
}

enum { DK_Q4_K, DK_Q5_K, DK_Q6_K };

/* Q4_K / Q5_K / Q6_K: the super-block's 256 quants as 16 signed 16-byte
 * pieces (Q6_K: q - 32) with the scale of each (exact integers, so the
 * regrouping is free: kernels.h), then per row sumi (and summ). */
static inline void dot4_k(int nb, const void *wv, int kind, const uint8_t *x, size_t xs, float *out) {
    const et_block_q4_K *w4 = wv;
    const et_block_q5_K *w5 = wv;
    const et_block_q6_K *w6 = wv;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const int8x16_t s32 = vdupq_n_s8(32);
    float acc[4] = {0, 0, 0, 0};
    for (int b = 0; b < nb; b++) {
        int8x16_t q[16];
        int32_t sc16[16];
        int mn[8] = {0};
        float dw, dmw = 0;
        if (kind == DK_Q6_K) {
            dw = f16(w6[b].d);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = w6[b].ql + 64 * h, *qh = w6[b].qh + 32 * h;
                for (int half = 0; half < 2; half++) {
                    uint8x16_t qa = vld1q_u8(ql + 16 * half), qb = vld1q_u8(ql + 32 + 16 * half);
                    uint8x16_t hb = vld1q_u8(qh + 16 * half);
                    uint8x16_t v[4];
                    v[0] = vorrq_u8(vandq_u8(qa, m4), vshlq_n_u8(vandq_u8(hb, m2), 4));
                    v[1] = vorrq_u8(vandq_u8(qb, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m2), 4));
                    v[2] = vorrq_u8(vshrq_n_u8(qa, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m2), 4));
                    v[3] = vorrq_u8(vshrq_n_u8(qb, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4));
                    for (int k = 0; k < 4; k++) {   /* elements 128h + 32k + 16 half: sub-block 8h + 2k + half */
                        q[8 * h + 2 * k + half] = vsubq_s8(vreinterpretq_s8_u8(v[k]), s32);
                        sc16[8 * h + 2 * k + half] = w6[b].scales[8 * h + 2 * k + half];
                    }
                }
            }
        } else {
            const uint8_t *scales = kind == DK_Q5_K ? w5[b].scales : w4[b].scales;
            const uint8_t *qs = kind == DK_Q5_K ? w5[b].qs : w4[b].qs;
            dw = f16(kind == DK_Q5_K ? w5[b].d : w4[b].d);
            dmw = f16(kind == DK_Q5_K ? w5[b].dmin : w4[b].dmin);
            uint8x16_t h0 = vdupq_n_u8(0), h1 = vdupq_n_u8(0);
            if (kind == DK_Q5_K) { h0 = vld1q_u8(w5[b].qh); h1 = vld1q_u8(w5[b].qh + 16); }
            for (int j = 0; j < 8; j++) {
                int sc;
                scale_min_k4(j, scales, &sc, &mn[j]);
                const uint8_t *qq = qs + 32 * (j / 2);
                uint8x16_t q0 = vld1q_u8(qq), q1 = vld1q_u8(qq + 16);
                if (j & 1) { q0 = vshrq_n_u8(q0, 4); q1 = vshrq_n_u8(q1, 4); }
                else { q0 = vandq_u8(q0, m4); q1 = vandq_u8(q1, m4); }
                if (kind == DK_Q5_K) {
                    const int8x16_t sh = vdupq_n_s8((int8_t)-j);
                    q0 = vorrq_u8(q0, vshlq_n_u8(vandq_u8(vshlq_u8(h0, sh), one), 4));
                    q1 = vorrq_u8(q1, vshlq_n_u8(vandq_u8(vshlq_u8(h1, sh), one), 4));
                }
                q[2 * j] = vreinterpretq_s8_u8(q0);
                q[2 * j + 1] = vreinterpretq_s8_u8(q1);
                sc16[2 * j] = sc16[2 * j + 1] = sc;
            }
        }
        for (int k = 0; k < 4; k++) {
            const et_block_q8_K *xb = (const et_block_q8_K *)(const void *)(x + (size_t)k * xs) + b;
            int32x4_t si = vdupq_n_s32(0);
            for (int i = 0; i < 16; i++) si = vmlaq_n_s32(si, dot16v(q[i], vld1q_s8(xb->qs + 16 * i)), sc16[i]);
            int32_t sumi = vaddvq_s32(si);
            float d = dw * xb->d;
            float t = d * (float)sumi;
            acc[k] = acc[k] + t;
            if (kind != DK_Q6_K) {
                int32_t summ = 0;
                for (int j = 0; j < 8; j++) summ += mn[j] * (xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
                float dmin = dmw * xb->d;
                float u = dmin * (float)summ;
                acc[k] = acc[k] - u;
            }
        }
    }
    for (int k = 0; k < 4; k++) out[k] = acc[k];
}

static void neon_dot4_q4_K(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_k(n / ET_QK_K, w, DK_Q4_K, x, xs, out);
}

static void neon_dot4_q5_K(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_k(n / ET_QK_K, w, DK_Q5_K, x, xs, out);
}

static void neon_dot4_q6_K(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_k(n / ET_QK_K, w, DK_Q6_K, x, xs, out);
}

const et_kernels et_kernels_neon = {
    .name = "neon",
    .dot_f32 = neon_dot_f32, .dot_f16 = neon_dot_f16, .dot_bf16 = neon_dot_bf16,
    .dot_q8_0 = neon_dot_q8_0, .dot_q4_0 = neon_dot_q4_0, .dot_q5_0 = neon_dot_q5_0,
    .dot_q4_1 = neon_dot_q4_1, .dot_q5_1 = neon_dot_q5_1,
    .dot_q4_K = neon_dot_q4_K, .dot_q6_K = neon_dot_q6_K,
    .dot_q2_K = neon_dot_q2_K, .dot_q3_K = neon_dot_q3_K, .dot_q5_K = neon_dot_q5_K, .dot_iq4_nl = neon_dot_iq4_nl,
    .dot4_q4_1 = neon_dot4_q4_1, .dot4_q4_K = neon_dot4_q4_K, .dot4_q5_K = neon_dot4_q5_K, .dot4_q6_K = neon_dot4_q6_K,
    /* the other dot4_*: NULL (single dots) */
};

#endif
