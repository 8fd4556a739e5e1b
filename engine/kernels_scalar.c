/* engine/kernels_scalar.c — the reference dot products.  Plain C that
 * DEFINES the accumulation order every SIMD path reproduces bit for bit
 * (engine/kernels.h).  Integer parts follow ggml-cpu-quants.c's scalar
 * ggml_vec_dot_*; products and sums are separate statements so that no
 * compiler contracts them into FMAs (GCC -std=c11 uses -ffp-contract=off;
 * clang needs the pragma). */
#include <string.h>

#include "kernels.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static inline float f16(uint16_t h) { return et_f16_table[h]; }
static inline float bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Fold 2w partial sums pairwise: lane l += lane l+w for w = n/2 .. 1. */
static float fold(float *acc, int n) {
    for (int w = n / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
    return acc[0];
}

/* ---- float types: 32 lanes, then the tail in order ---- */

float et_dot_f32_scalar(int n, const void *wv, const void *xv) {
    const float *w = wv, *x = xv;
    float acc[32] = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 32; l++) {
            float p = w[i + l] * x[i + l];
            acc[l] = acc[l] + p;
        }
    float s = fold(acc, 32);
    for (; i < n; i++) {
        float p = w[i] * x[i];
        s = s + p;
    }
    return s;
}

float et_dot_f16_scalar(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    float acc[32] = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 32; l++) {
            float p = f16(w[i + l]) * f16(x[i + l]);
            acc[l] = acc[l] + p;
        }
    float s = fold(acc, 32);
    for (; i < n; i++) {
        float p = f16(w[i]) * f16(x[i]);
        s = s + p;
    }
    return s;
}

float et_dot_bf16_scalar(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    float acc[32] = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 32; l++) {
            float p = bf16(w[i + l]) * bf16(x[i + l]);
            acc[l] = acc[l] + p;
        }
    float s = fold(acc, 32);
    for (; i < n; i++) {
        float p = bf16(w[i]) * bf16(x[i]);
        s = s + p;
    }
    return s;
}

/* ---- 32-element blocks: one accumulator, acc += (float)sumi(b) * d(b) per block ---- */

/* acc + (float)sumi * d: the product rounded, then the sum (kernels.h). */
static inline float add_block(float acc, int32_t sumi, float d) {
    float p = (float)sumi * d;
    return acc + p;
}

/* The exact sum of one block's 32 signed quants v times y. */
static inline int32_t block_s(const int8_t *v, const int8_t *y) {
    int32_t s = 0;
    for (int j = 0; j < ET_QK; j++) s += v[j] * y[j];
    return s;
}

float et_dot_q8_0_scalar(int n, const void *wv, const void *xv) {
    const et_block_q8_0 *w = wv, *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK; b++) acc = add_block(acc, block_s(w[b].qs, x[b].qs), f16(w[b].d) * f16(x[b].d));
    return acc;
}

float et_dot_q4_0_scalar(int n, const void *wv, const void *xv) {
    const et_block_q4_0 *w = wv;
    const et_block_q8_0 *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK; b++) {
        int8_t v[32];   /* element j: low nibble of qs[j] (j < 16), high nibble of qs[j-16] */
        for (int j = 0; j < 16; j++) {
            v[j] = (int8_t)((w[b].qs[j] & 0x0F) - 8);
            v[j + 16] = (int8_t)((w[b].qs[j] >> 4) - 8);
        }
        acc = add_block(acc, block_s(v, x[b].qs), f16(w[b].d) * f16(x[b].d));
    }
    return acc;
}

float et_dot_q5_0_scalar(int n, const void *wv, const void *xv) {
    const et_block_q5_0 *w = wv;
    const et_block_q8_0 *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK; b++) {
        uint32_t qh;
        memcpy(&qh, w[b].qh, 4);
        int8_t v[32];
        for (int j = 0; j < 16; j++) {
            v[j] = (int8_t)(((w[b].qs[j] & 0x0F) | (((qh >> j) & 1) << 4)) - 16);
            v[j + 16] = (int8_t)(((w[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        acc = add_block(acc, block_s(v, x[b].qs), f16(w[b].d) * f16(x[b].d));
    }
    return acc;
}

float et_dot_iq4_nl_scalar(int n, const void *wv, const void *xv) {
    const et_block_iq4_nl *w = wv;
    const et_block_q8_0 *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK; b++) {
        int8_t v[32];   /* element j: table value of the low nibble of qs[j] (j < 16), high nibble of qs[j-16] */
        for (int j = 0; j < 16; j++) {
            v[j] = et_kvalues_iq4nl[w[b].qs[j] & 0x0F];
            v[j + 16] = et_kvalues_iq4nl[w[b].qs[j] >> 4];
        }
        acc = add_block(acc, block_s(v, x[b].qs), f16(w[b].d) * f16(x[b].d));
    }
    return acc;
}

/* ---- Q4_1/Q5_1 against Q8_1: per block the d_w q term, then the min term m_w * s_y ---- */

static inline float add_min(float acc, float ms) { return acc + ms; }

/* The exact sum of one block's 32 unsigned quants v times y. */
static inline int32_t block_u(const uint8_t *v, const int8_t *y) {
    int32_t s = 0;
    for (int j = 0; j < ET_QK; j++) s += v[j] * y[j];
    return s;
}

float et_dot_q4_1_scalar(int n, const void *wv, const void *xv) {
    const et_block_q4_1 *w = wv;
    const et_block_q8_1 *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK; b++) {
        uint8_t v[32];   /* element j: low nibble of qs[j] (j < 16), high nibble of qs[j-16] */
        for (int j = 0; j < 16; j++) {
            v[j] = w[b].qs[j] & 0x0F;
            v[j + 16] = w[b].qs[j] >> 4;
        }
        acc = add_block(acc, block_u(v, x[b].qs), f16(w[b].d) * f16(x[b].d));
        acc = add_min(acc, f16(w[b].m) * f16(x[b].s));
    }
    return acc;
}

float et_dot_q5_1_scalar(int n, const void *wv, const void *xv) {
    const et_block_q5_1 *w = wv;
    const et_block_q8_1 *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK; b++) {
        uint32_t qh;
        memcpy(&qh, w[b].qh, 4);
        uint8_t v[32];
        for (int j = 0; j < 16; j++) {
            v[j] = (uint8_t)((w[b].qs[j] & 0x0F) | (((qh >> j) & 1) << 4));
            v[j + 16] = (uint8_t)((w[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        acc = add_block(acc, block_u(v, x[b].qs), f16(w[b].d) * f16(x[b].d));
        acc = add_min(acc, f16(w[b].m) * f16(x[b].s));
    }
    return acc;
}

/* ---- K-quants against Q8_K: exact integers per super-block ---- */

/* 6-bit scale and min j (0..7) of a Q4_K super-block (ggml get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

float et_dot_q4_K_scalar(int n, const void *wv, const void *xv) {
    const et_block_q4_K *w = wv;
    const et_block_q8_K *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {   /* sub-block j: elements 32j .. 32j+31 */
            int sc, m;
            scale_min_k4(j, w[b].scales, &sc, &m);
            const uint8_t *q = w[b].qs + 32 * (j / 2);
            const int8_t *y = x[b].qs + 32 * j;
            int32_t s = 0;
            for (int l = 0; l < 32; l++) s += ((j & 1) ? (q[l] >> 4) : (q[l] & 0x0F)) * y[l];
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

float et_dot_q6_K_scalar(int n, const void *wv, const void *xv) {
    const et_block_q6_K *w = wv;
    const et_block_q8_K *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int8_t v[256];
        for (int h = 0; h < 2; h++) {     /* halves of 128: ql += 64, qh += 32 */
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            int8_t *o = v + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t sumi = 0;
        for (int j = 0; j < 16; j++) {    /* sub-block j: elements 16j .. 16j+15 */
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += v[16 * j + l] * x[b].qs[16 * j + l];
            sumi += w[b].scales[j] * s;
        }
        float d = f16(w[b].d) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
    }
    return acc;
}

float et_dot_q5_K_scalar(int n, const void *wv, const void *xv) {
    const et_block_q5_K *w = wv;
    const et_block_q8_K *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {   /* sub-block j: elements 32j .. 32j+31 */
            int sc, m;
            scale_min_k4(j, w[b].scales, &sc, &m);
            const uint8_t *q = w[b].qs + 32 * (j / 2);
            const int8_t *y = x[b].qs + 32 * j;
            int32_t s = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((j & 1) ? (q[l] >> 4) : (q[l] & 0x0F)) | (((w[b].qh[l] >> j) & 1) << 4);
                s += v * y[l];
            }
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

/* Signed 6-bit scale j (0..15) of a Q3_K super-block, minus 32. */
static inline int scale_q3(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

float et_dot_q3_K_scalar(int n, const void *wv, const void *xv) {
    const et_block_q3_K *w = wv;
    const et_block_q8_K *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; j++) {   /* sub-block j: elements 16j .. 16j+15 */
            const int sc = scale_q3(w[b].scales, j);
            int32_t s = 0;
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l, h = e / 128, sh = (e % 128) / 32, k = e % 32;
                const int v = ((w[b].qs[32 * h + k] >> (2 * sh)) & 3) - (((w[b].hmask[k] >> (4 * h + sh)) & 1) ? 0 : 4);
                s += v * x[b].qs[e];
            }
            sumi += sc * s;
        }
        float d = f16(w[b].d) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
    }
    return acc;
}

float et_dot_q2_K_scalar(int n, const void *wv, const void *xv) {
    const et_block_q2_K *w = wv;
    const et_block_q8_K *x = xv;
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 16; j++) {   /* sub-block j: elements 16j .. 16j+15 */
            int32_t s = 0;
            for (int l = 0; l < 16; l++) {
                const int e = 16 * j + l, h = e / 128, sh = (e % 128) / 32, k = e % 32;
                s += ((w[b].qs[32 * h + k] >> (2 * sh)) & 3) * x[b].qs[e];
            }
            sumi += (w[b].scales[j] & 0xF) * s;
            summ += (w[b].scales[j] >> 4) * x[b].bsums[j];
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

const et_kernels et_kernels_scalar = {
    .name = "scalar",
    .dot_f32 = et_dot_f32_scalar, .dot_f16 = et_dot_f16_scalar, .dot_bf16 = et_dot_bf16_scalar,
    .dot_q8_0 = et_dot_q8_0_scalar, .dot_q4_0 = et_dot_q4_0_scalar, .dot_q5_0 = et_dot_q5_0_scalar,
    .dot_q4_1 = et_dot_q4_1_scalar, .dot_q5_1 = et_dot_q5_1_scalar,
    .dot_q4_K = et_dot_q4_K_scalar, .dot_q6_K = et_dot_q6_K_scalar,
    .dot_q2_K = et_dot_q2_K_scalar, .dot_q3_K = et_dot_q3_K_scalar, .dot_q5_K = et_dot_q5_K_scalar,
    .dot_iq4_nl = et_dot_iq4_nl_scalar,
    /* dot4_*: NULL (single dots) */
};
