/* engine/kernels_x86.c — AVX2 and AVX-512 dot products, compiled with
 * per-function target attributes (the rest of the build stays baseline
 * x86-64) and chosen at run time by CPUID (kernels.c).
 *
 * Each function reproduces the scalar reference's accumulation order
 * exactly (engine/kernels.h): the same lanes, products and sums as
 * separate roundings (mul then add, never FMA), the same pairwise fold.
 * The integer parts use ggml's tricks (ggml-cpu-quants.c): the sign trick
 * for maddubs, bytes_from_bits for Q5_0, unsigned K-quant nibbles. */
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* ------------------------------------------------------------ AVX2 helpers */

/* Fold 8 lanes pairwise (w = 4, 2, 1) to lane 0. */
static inline AVX2 float fold8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

/* Fold the 32 lanes a0..a3 (8 each) as the scalar fold(acc, 32). */
static inline AVX2 float fold32(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    a0 = _mm256_add_ps(a0, a2);
    a1 = _mm256_add_ps(a1, a3);
    a0 = _mm256_add_ps(a0, a1);
    return fold8(a0);
}

static inline AVX2 __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline AVX2 __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* Sums of 4 consecutive products of 32 signed bytes: 8 int32 lanes. */
static inline AVX2 __m256i dot_groups4(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

static inline AVX2 int32_t hsum_i32(__m256i v) {
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
    return _mm_cvtsi128_si32(x);
}

/* One 32-element block: acc + (float)sumi * d, sumi the exact sum of the
 * block's 8 group sums (kernels.h: product rounded, then the sum). */
static inline AVX2 float add_block(float acc, __m256i groups, float d) {
    float p = (float)hsum_i32(groups) * d;
    return acc + p;
}

/* Four fp16 values as four floats (F16C, exact; built in registers: four
 * scalar stores read back as one vector would stall store forwarding). */
static inline AVX2 __m128 f16x4(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    return _mm_cvtph_ps(_mm_setr_epi16((short)a, (short)b, (short)c, (short)d, 0, 0, 0, 0));
}

/* The exact sums of four vectors of 8 int32 lanes each (four blocks, or one
 * block against four tokens): [sum g0, sum g1, sum g2, sum g3]. */
static inline AVX2 __m128i hsum4_i32(__m256i g0, __m256i g1, __m256i g2, __m256i g3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(g0, g1), _mm256_hadd_epi32(g2, g3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* 32 bytes: 0xFF where bit j of the 32-bit x is set (ggml bytes_from_bits_32). */
static inline AVX2 __m256i bytes_from_bits(uint32_t x) {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL,
                                            0x0303030303030303LL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* 32 nibbles of 16 bytes: low nibbles then high nibbles (Q4_0/Q5_0 order). */
static inline AVX2 __m256i nibbles32(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
    return _mm256_set_m128i(hi, lo);
}

/* fp16 -> fp32 by F16C (exact; the same value as the scalar table). */
static inline AVX2 float f16(uint16_t h) { return _cvtsh_ss(h); }

/* ------------------------------------------------------------ AVX2 kernels */

static AVX2 float avx2_dot_f32(int n, const void *wv, const void *xv) {
    const float *w = wv, *x = xv;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int r = 0; r < 4; r++)
            a[r] = _mm256_add_ps(a[r], _mm256_mul_ps(_mm256_loadu_ps(w + i + 8 * r), _mm256_loadu_ps(x + i + 8 * r)));
    float s = fold32(a[0], a[1], a[2], a[3]);
    for (; i < n; i++) {
        float p = w[i] * x[i];
        s = s + p;
    }
    return s;
}

static AVX2 float avx2_dot_f16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int r = 0; r < 4; r++)
            a[r] = _mm256_add_ps(a[r], _mm256_mul_ps(load_f16x8(w + i + 8 * r), load_f16x8(x + i + 8 * r)));
    float s = fold32(a[0], a[1], a[2], a[3]);
    for (; i < n; i++) {
        float p = f16(w[i]) * f16(x[i]);
        s = s + p;
    }
    return s;
}

static AVX2 float avx2_dot_bf16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int r = 0; r < 4; r++)
            a[r] = _mm256_add_ps(a[r], _mm256_mul_ps(load_bf16x8(w + i + 8 * r), load_bf16x8(x + i + 8 * r)));
    float s = fold32(a[0], a[1], a[2], a[3]);
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

/* The 32-element block types against Q8_0, four blocks at a time: their
 * integer sums reduced together (hsum4_i32), the four products (float)sumi
 * * d in one vector, then added to the one accumulator in block order (the
 * single dot of kernels.h, the same roundings); the last nb % 4 blocks one
 * by one.  kind: 0 Q8_0, 1 Q4_0, 2 IQ4_NL, 3 Q5_0 (a constant after
 * inlining). */
enum { SK_Q8_0, SK_Q4_0, SK_IQ4_NL, SK_Q5_0 };

/* Block b's 32 weights as signed bytes. */
static inline AVX2 __attribute__((always_inline)) __m256i signed_bytes(int kind, const void *w, int b, __m256i table) {
    switch (kind) {
    case SK_Q8_0: return _mm256_loadu_si256((const __m256i *)((const et_block_q8_0 *)w)[b].qs);
    case SK_Q4_0: return _mm256_sub_epi8(nibbles32(((const et_block_q4_0 *)w)[b].qs), _mm256_set1_epi8(8));
    case SK_IQ4_NL: return _mm256_shuffle_epi8(table, nibbles32(((const et_block_iq4_nl *)w)[b].qs));
    default: {
        const et_block_q5_0 *q = (const et_block_q5_0 *)w + b;
        uint32_t qh;
        memcpy(&qh, q->qh, 4);
        __m256i hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
        return _mm256_sub_epi8(_mm256_or_si256(nibbles32(q->qs), hi), _mm256_set1_epi8(16));
    }
    }
}

/* Block b's fp16 d (every block type starts with it), and its fp32. */
static inline AVX2 __attribute__((always_inline)) uint16_t block_dh(int kind, const void *w, int b) {
    size_t bs = kind == SK_Q8_0 ? sizeof(et_block_q8_0) : kind == SK_Q5_0 ? sizeof(et_block_q5_0)
              : kind == SK_Q4_0 ? sizeof(et_block_q4_0) : sizeof(et_block_iq4_nl);
    uint16_t h;
    memcpy(&h, (const uint8_t *)w + (size_t)b * bs, 2);
    return h;
}
static inline AVX2 __attribute__((always_inline)) float block_d(int kind, const void *w, int b) {
    return f16(block_dh(kind, w, b));
}

static inline AVX2 __attribute__((always_inline)) float dot_signed(int kind, int n, const void *w, const et_block_q8_0 *x) {
    const __m128i t = _mm_loadu_si128((const __m128i *)et_kvalues_iq4nl);
    const __m256i table = _mm256_set_m128i(t, t);
    const int nb = n / ET_QK;
    float acc = 0;
    int b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m256i g[4];
        float p[4];
        for (int i = 0; i < 4; i++)
            g[i] = dot_groups4(signed_bytes(kind, w, b + i, table), _mm256_loadu_si256((const __m256i *)x[b + i].qs));
        /* d(b) = fp16(w.d) * fp16(x.d) lane by lane, as the scalar product */
        __m128 d = _mm_mul_ps(f16x4(block_dh(kind, w, b), block_dh(kind, w, b + 1), block_dh(kind, w, b + 2), block_dh(kind, w, b + 3)),
                              f16x4(x[b].d, x[b + 1].d, x[b + 2].d, x[b + 3].d));
        _mm_storeu_ps(p, _mm_mul_ps(_mm_cvtepi32_ps(hsum4_i32(g[0], g[1], g[2], g[3])), d));
        for (int i = 0; i < 4; i++) acc = acc + p[i];
    }
    for (; b < nb; b++)
        acc = add_block(acc, dot_groups4(signed_bytes(kind, w, b, table), _mm256_loadu_si256((const __m256i *)x[b].qs)),
                        block_d(kind, w, b) * f16(x[b].d));
    return acc;
}

static AVX2 float avx2_dot_q8_0(int n, const void *w, const void *x) { return dot_signed(SK_Q8_0, n, w, x); }
static AVX2 float avx2_dot_q4_0(int n, const void *w, const void *x) { return dot_signed(SK_Q4_0, n, w, x); }
/* IQ4_NL: the nibbles as Q4_0's, mapped through the table by pshufb. */
static AVX2 float avx2_dot_iq4_nl(int n, const void *w, const void *x) { return dot_signed(SK_IQ4_NL, n, w, x); }
static AVX2 float avx2_dot_q5_0(int n, const void *w, const void *x) { return dot_signed(SK_Q5_0, n, w, x); }

/* Sums of 4 consecutive products of 32 unsigned (w, 0..31) by signed (x)
 * bytes: 8 int32 lanes.  |2 * 31 * 127| fits maddubs' int16 exactly. */
static inline AVX2 __m256i dot_groups4_u(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

/* Q5_1's 32 quants (0..31): nibbles with the fifth bits of qh. */
static inline AVX2 __m256i q5_bytes(const uint8_t *qs, const uint8_t *qhb) {
    uint32_t qh;
    memcpy(&qh, qhb, 4);
    return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10)));
}

/* Block b's min term, after its d_w q term. */
static inline AVX2 float add_min(float acc, float ms) { return acc + ms; }

/* Q4_1 (q5 = 0) / Q5_1 (q5 = 1) against Q8_1, four blocks at a time as
 * dot_signed: per block in order acc + (float)sumi * d, then + m * s. */
static inline AVX2 __attribute__((always_inline)) float dot_q_1(int q5, int n, const void *wv, const et_block_q8_1 *x) {
    const et_block_q4_1 *w4 = wv;
    const et_block_q5_1 *w5 = wv;
    const int nb = n / ET_QK;
    float acc = 0;
    int b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m256i g[4];
        uint16_t dh[4], mh[4];   /* the weight blocks' fp16 d and m */
        float ms[4], p[4];
        for (int i = 0; i < 4; i++) {
            const int j = b + i;
            __m256i qw = q5 ? q5_bytes(w5[j].qs, w5[j].qh) : nibbles32(w4[j].qs);
            g[i] = dot_groups4_u(qw, _mm256_loadu_si256((const __m256i *)x[j].qs));
            dh[i] = q5 ? w5[j].d : w4[j].d;
            mh[i] = q5 ? w5[j].m : w4[j].m;
        }
        __m128 d = _mm_mul_ps(f16x4(dh[0], dh[1], dh[2], dh[3]), f16x4(x[b].d, x[b + 1].d, x[b + 2].d, x[b + 3].d));
        _mm_storeu_ps(ms, _mm_mul_ps(f16x4(mh[0], mh[1], mh[2], mh[3]), f16x4(x[b].s, x[b + 1].s, x[b + 2].s, x[b + 3].s)));
        _mm_storeu_ps(p, _mm_mul_ps(_mm_cvtepi32_ps(hsum4_i32(g[0], g[1], g[2], g[3])), d));
        for (int i = 0; i < 4; i++) {
            acc = acc + p[i];
            acc = add_min(acc, ms[i]);
        }
    }
    for (; b < nb; b++) {
        __m256i qw = q5 ? q5_bytes(w5[b].qs, w5[b].qh) : nibbles32(w4[b].qs);
        acc = add_block(acc, dot_groups4_u(qw, _mm256_loadu_si256((const __m256i *)x[b].qs)),
                        f16(q5 ? w5[b].d : w4[b].d) * f16(x[b].d));
        acc = add_min(acc, f16(q5 ? w5[b].m : w4[b].m) * f16(x[b].s));
    }
    return acc;
}

static AVX2 float avx2_dot_q4_1(int n, const void *w, const void *x) { return dot_q_1(0, n, w, x); }
static AVX2 float avx2_dot_q5_1(int n, const void *w, const void *x) { return dot_q_1(1, n, w, x); }

static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static AVX2 float avx2_dot_q4_K(int n, const void *wv, const void *xv) {
    const et_block_q4_K *w = wv;
    const et_block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) scale_min_k4(j, w[b].scales, &sc[j], &mn[j]);
        int32_t summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {   /* 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high) */
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * c));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16((short)sc[2 * c]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16((short)sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        int32_t sumi = hsum_i32(isum);
        float d = f16(w[b].d) * x[b].d;
        float dmin = f16(w[b].dmin) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
        float u = dmin * (float)summ;
        acc = acc - u;
    }
    return acc;
}

static AVX2 float avx2_dot_q6_K(int n, const void *wv, const void *xv) {
    const et_block_q6_K *w = wv;
    const et_block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t corr = 0;   /* 32 * sum_j scale_j * bsum_j: the -32 offset of every weight */
        for (int j = 0; j < 16; j++) corr += w[b].scales[j] * x[b].bsums[j];
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *sc = w[b].scales + 8 * h;
            const int8_t *y = x[b].qs + 128 * h;
            __m256i qa = _mm256_loadu_si256((const __m256i *)ql);
            __m256i qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            v[1] = _mm256_or_si256(_mm256_and_si256(qb, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            for (int k = 0; k < 4; k++) {   /* elements 32k..32k+31 of this half: sub-blocks 2k, 2k+1 */
                __m256i yy = _mm256_loadu_si256((const __m256i *)(y + 32 * k));
                __m256i p16 = _mm256_maddubs_epi16(v[k], yy);
                __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, s));
            }
        }
        int32_t sumi = hsum_i32(isum) - 32 * corr;
        float d = f16(w[b].d) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
    }
    return acc;
}

/* Q5_K: Q4_K's nibbles plus the fifth bit of sub-block j from qh[l] bit j. */
static AVX2 float avx2_dot_q5_K(int n, const void *wv, const void *xv) {
    const et_block_q5_K *w = wv;
    const et_block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) scale_min_k4(j, w[b].scales, &sc[j], &mn[j]);
        int32_t summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
        const __m256i hb = _mm256_loadu_si256((const __m256i *)w[b].qh);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {   /* 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high) */
            __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * c));
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4);
            __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(x[b].qs + 64 * c + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16((short)sc[2 * c]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16((short)sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        int32_t sumi = hsum_i32(isum);
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

/* Q3_K with unsigned q' = q + 4 (0..7): sumi = sum_j sc_j (dot'_j - 4 bsum_j). */
static AVX2 float avx2_dot_q3_K(int n, const void *wv, const void *xv) {
    const et_block_q3_K *w = wv;
    const et_block_q8_K *x = xv;
    const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int sc[16];
        int32_t corr = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = scale_q3(w[b].scales, j);
            corr += sc[j] * x[b].bsums[j];
        }
        const __m256i hb = _mm256_loadu_si256((const __m256i *)w[b].hmask);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h));
            for (int k = 0; k < 4; k++) {   /* elements 128h + 32k ..: sub-blocks 8h + 2k, 8h + 2k + 1 */
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m2);
                __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4 * h + k), one), 2);
                __m256i v = _mm256_or_si256(lo, hi);
                __m256i yy = _mm256_loadu_si256((const __m256i *)(x[b].qs + 128 * h + 32 * k));
                __m256i s = _mm256_set_m128i(_mm_set1_epi16((short)sc[8 * h + 2 * k + 1]),
                                             _mm_set1_epi16((short)sc[8 * h + 2 * k]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(v, yy), s));
            }
        }
        int32_t sumi = hsum_i32(isum) - 4 * corr;
        float d = f16(w[b].d) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
    }
    return acc;
}

static AVX2 float avx2_dot_q2_K(int n, const void *wv, const void *xv) {
    const et_block_q2_K *w = wv;
    const et_block_q8_K *x = xv;
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int b = 0; b < n / ET_QK_K; b++) {
        int32_t summ = 0;
        for (int j = 0; j < 16; j++) summ += (w[b].scales[j] >> 4) * x[b].bsums[j];
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h));
            for (int k = 0; k < 4; k++) {   /* elements 128h + 32k ..: sub-blocks 8h + 2k, 8h + 2k + 1 */
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m2);
                __m256i yy = _mm256_loadu_si256((const __m256i *)(x[b].qs + 128 * h + 32 * k));
                const int j = 8 * h + 2 * k;
                __m256i s = _mm256_set_m128i(_mm_set1_epi16((short)(w[b].scales[j + 1] & 0xF)),
                                             _mm_set1_epi16((short)(w[b].scales[j] & 0xF)));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(v, yy), s));
            }
        }
        int32_t sumi = hsum_i32(isum);
        float d = f16(w[b].d) * x[b].d;
        float dmin = f16(w[b].dmin) * x[b].d;
        float t = d * (float)sumi;
        acc = acc + t;
        float u = dmin * (float)summ;
        acc = acc - u;
    }
    return acc;
}

/* Four activation rows against one weight row: the weight bytes of a block
 * are loaded (and for Q4_0 unpacked) once; the four tokens' block sums are
 * reduced together (hsum4_i32) and lane k of one float vector is token k's
 * accumulator, with the single dot's roundings in its order. */
static inline AVX2 void dot4_blocks(int nb, const void *wrow, int q4, const uint8_t *x, size_t xs, float *out) {
    const et_block_q8_0 *w8 = wrow;
    const et_block_q4_0 *w4 = wrow;
    __m128 acc = _mm_setzero_ps();   /* lane k: token k's accumulator, as the single dot's acc */
    for (int b = 0; b < nb; b++) {
        __m256i qw;
        float dw;
        if (q4) {
            qw = _mm256_sub_epi8(nibbles32(w4[b].qs), _mm256_set1_epi8(8));
            dw = f16(w4[b].d);
        } else {
            qw = _mm256_loadu_si256((const __m256i *)w8[b].qs);
            dw = f16(w8[b].d);
        }
        __m256i ax = _mm256_sign_epi8(qw, qw), g[4];
        const et_block_q8_0 *xb[4];
        for (int k = 0; k < 4; k++) {
            xb[k] = (const et_block_q8_0 *)(x + (size_t)k * xs) + b;
            __m256i sy = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xb[k]->qs), qw);
            g[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
        }
        /* per lane: (float)sumi * (dw * dx), then the sum — the single dot's roundings */
        __m128 d = _mm_mul_ps(_mm_set1_ps(dw), f16x4(xb[0]->d, xb[1]->d, xb[2]->d, xb[3]->d));
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(hsum4_i32(g[0], g[1], g[2], g[3])), d));
    }
    _mm_storeu_ps(out, acc);
}

static AVX2 void avx2_dot4_q8_0(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_blocks(n / ET_QK, w, 0, x, xs, out);
}

static AVX2 void avx2_dot4_q4_0(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_blocks(n / ET_QK, w, 1, x, xs, out);
}

/* Q4_1 (q5 = 0) / Q5_1 (q5 = 1) against four Q8_1 rows: the weight's
 * quants, d and m unpacked once per block; lane k is token k's accumulator,
 * with avx2_dot_q4_1's roundings in its order. */
static inline AVX2 void dot4_q_1(int nb, const void *wrow, int q5, const uint8_t *x, size_t xs, float *out) {
    const et_block_q4_1 *w4 = wrow;
    const et_block_q5_1 *w5 = wrow;
    __m128 acc = _mm_setzero_ps();   /* lane k: token k's accumulator */
    for (int b = 0; b < nb; b++) {
        __m256i qw = q5 ? q5_bytes(w5[b].qs, w5[b].qh) : nibbles32(w4[b].qs), g[4];
        float dw = f16(q5 ? w5[b].d : w4[b].d), mw = f16(q5 ? w5[b].m : w4[b].m);
        const et_block_q8_1 *xb[4];
        for (int k = 0; k < 4; k++) {
            xb[k] = (const et_block_q8_1 *)(x + (size_t)k * xs) + b;
            g[k] = dot_groups4_u(qw, _mm256_loadu_si256((const __m256i *)xb[k]->qs));
        }
        __m128 d = _mm_mul_ps(_mm_set1_ps(dw), f16x4(xb[0]->d, xb[1]->d, xb[2]->d, xb[3]->d));
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(hsum4_i32(g[0], g[1], g[2], g[3])), d));
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(mw), f16x4(xb[0]->s, xb[1]->s, xb[2]->s, xb[3]->s)));   /* the min term, after */
    }
    _mm_storeu_ps(out, acc);
}

static AVX2 void avx2_dot4_q4_1(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_q_1(n / ET_QK, w, 0, x, xs, out);
}

static AVX2 void avx2_dot4_q5_1(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_q_1(n / ET_QK, w, 1, x, xs, out);
}

/* Q4_K / Q5_K / Q6_K against four Q8_K rows: per super-block the weight's
 * quants are unpacked once into eight 32-byte units (unsigned: Q4_K 0..15,
 * Q5_K 0..31, Q6_K q + 32 in 0..63) with their 16-bit scales, then each row
 * takes its exact integer sums as the single-row kernels above do (sumi,
 * summ / the Q6_K offset correction) and keeps their float order. */
enum { DK_Q4_K, DK_Q5_K, DK_Q6_K };

static inline AVX2 __attribute__((always_inline)) void dot4_k(int nb, const void *wrow, int kind, const uint8_t *x,
                                                              size_t xs, float *out) {
    const et_block_q4_K *w4 = wrow;
    const et_block_q5_K *w5 = wrow;
    const et_block_q6_K *w6 = wrow;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    float acc[4] = {0, 0, 0, 0};
    for (int b = 0; b < nb; b++) {
        __m256i v[8], s16[8];
        int mn[8] = {0};
        float dw, dmw = 0;
        if (kind == DK_Q6_K) {
            dw = f16(w6[b].d);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = w6[b].ql + 64 * h, *qh = w6[b].qh + 32 * h;
                const int8_t *sc = w6[b].scales + 8 * h;
                __m256i qa = _mm256_loadu_si256((const __m256i *)ql);
                __m256i qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
                v[4 * h] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
                v[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(qb, m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
                v[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
                v[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
                for (int k = 0; k < 4; k++)
                    s16[4 * h + k] = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
            }
        } else {
            const uint8_t *scales = kind == DK_Q5_K ? w5[b].scales : w4[b].scales;
            const uint8_t *qs = kind == DK_Q5_K ? w5[b].qs : w4[b].qs;
            dw = f16(kind == DK_Q5_K ? w5[b].d : w4[b].d);
            dmw = f16(kind == DK_Q5_K ? w5[b].dmin : w4[b].dmin);
            int sc[8];
            for (int j = 0; j < 8; j++) scale_min_k4(j, scales, &sc[j], &mn[j]);
            const __m256i hb = kind == DK_Q5_K ? _mm256_loadu_si256((const __m256i *)w5[b].qh) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {   /* 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high) */
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (kind == DK_Q5_K) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4));
                }
                v[2 * c] = lo;
                v[2 * c + 1] = hi;
                s16[2 * c] = _mm256_set1_epi16((short)sc[2 * c]);
                s16[2 * c + 1] = _mm256_set1_epi16((short)sc[2 * c + 1]);
            }
        }
        for (int k = 0; k < 4; k++) {
            const et_block_q8_K *xb = (const et_block_q8_K *)(const void *)(x + (size_t)k * xs) + b;
            __m256i isum = _mm256_setzero_si256();
            for (int u = 0; u < 8; u++) {
                __m256i p16 = _mm256_maddubs_epi16(v[u], _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * u)));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, s16[u]));
            }
            int32_t sumi = hsum_i32(isum);
            float d = dw * xb->d;
            if (kind == DK_Q6_K) {
                int32_t corr = 0;
                for (int j = 0; j < 16; j++) corr += w6[b].scales[j] * xb->bsums[j];
                float t = d * (float)(sumi - 32 * corr);
                acc[k] = acc[k] + t;
            } else {
                int32_t summ = 0;
                for (int j = 0; j < 8; j++) summ += mn[j] * (xb->bsums[2 * j] + xb->bsums[2 * j + 1]);
                float dmin = dmw * xb->d;
                float t = d * (float)sumi;
                acc[k] = acc[k] + t;
                float u = dmin * (float)summ;
                acc[k] = acc[k] - u;
            }
        }
    }
    for (int k = 0; k < 4; k++) out[k] = acc[k];
}

static AVX2 void avx2_dot4_q4_K(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_k(n / ET_QK_K, w, DK_Q4_K, x, xs, out);
}

static AVX2 void avx2_dot4_q5_K(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_k(n / ET_QK_K, w, DK_Q5_K, x, xs, out);
}

static AVX2 void avx2_dot4_q6_K(int n, const void *w, const void *x, size_t xs, float *out) {
    dot4_k(n / ET_QK_K, w, DK_Q6_K, x, xs, out);
}

const et_kernels et_kernels_avx2 = {
    .name = "avx2",
    .dot_f32 = avx2_dot_f32, .dot_f16 = avx2_dot_f16, .dot_bf16 = avx2_dot_bf16,
    .dot_q8_0 = avx2_dot_q8_0, .dot_q4_0 = avx2_dot_q4_0, .dot_q5_0 = avx2_dot_q5_0,
    .dot_q4_1 = avx2_dot_q4_1, .dot_q5_1 = avx2_dot_q5_1,
    .dot_q4_K = avx2_dot_q4_K, .dot_q6_K = avx2_dot_q6_K,
    .dot_q2_K = avx2_dot_q2_K, .dot_q3_K = avx2_dot_q3_K, .dot_q5_K = avx2_dot_q5_K, .dot_iq4_nl = avx2_dot_iq4_nl,
    .dot4_q8_0 = avx2_dot4_q8_0, .dot4_q4_0 = avx2_dot4_q4_0, .dot4_q4_1 = avx2_dot4_q4_1, .dot4_q5_1 = avx2_dot4_q5_1,
    .dot4_q4_K = avx2_dot4_q4_K, .dot4_q5_K = avx2_dot4_q5_K, .dot4_q6_K = avx2_dot4_q6_K,
};

/* ------------------------------------------------------------ AVX-512 */

/* Fold the 32 lanes z0 (0..15), z1 (16..31) as the scalar fold(acc, 32). */
static inline AVX512 float fold32_512(__m512 z0, __m512 z1) {
    z0 = _mm512_add_ps(z0, z1);
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(z0), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z0), 1)));
    return fold8(a);
}

static AVX512 float avx512_dot_f32(int n, const void *wv, const void *xv) {
    const float *w = wv, *x = xv;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16)));
    }
    float s = fold32_512(a0, a1);
    for (; i < n; i++) {
        float p = w[i] * x[i];
        s = s + p;
    }
    return s;
}

static inline AVX512 __m512 load_f16x16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static AVX512 float avx512_dot_f16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(load_f16x16(w + i), load_f16x16(x + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(load_f16x16(w + i + 16), load_f16x16(x + i + 16)));
    }
    float s = fold32_512(a0, a1);
    for (; i < n; i++) {
        float p = f16(w[i]) * f16(x[i]);
        s = s + p;
    }
    return s;
}

static inline AVX512 __m512 load_bf16x16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static AVX512 float avx512_dot_bf16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv, *x = xv;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(load_bf16x16(w + i), load_bf16x16(x + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(load_bf16x16(w + i + 16), load_bf16x16(x + i + 16)));
    }
    float s = fold32_512(a0, a1);
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

/* The 32-element block types use the AVX2 kernels above: with one float
 * accumulator per (row, token) a single dot is a chain of scalar adds, and
 * a zmm per block pair adds only a shuffle; the AVX512-VNNI set runs them
 * through the repacked 16-row kernels (kernels_x86_repack.c). */

const et_kernels et_kernels_avx512 = {
    .name = "avx512",
    .dot_f32 = avx512_dot_f32, .dot_f16 = avx512_dot_f16, .dot_bf16 = avx512_dot_bf16,
    .dot_q8_0 = avx2_dot_q8_0, .dot_q4_0 = avx2_dot_q4_0, .dot_q5_0 = avx2_dot_q5_0,
    .dot_q4_1 = avx2_dot_q4_1, .dot_q5_1 = avx2_dot_q5_1,
    .dot_q4_K = avx2_dot_q4_K, .dot_q6_K = avx2_dot_q6_K,
    .dot_q2_K = avx2_dot_q2_K, .dot_q3_K = avx2_dot_q3_K, .dot_q5_K = avx2_dot_q5_K, .dot_iq4_nl = avx2_dot_iq4_nl,
    .dot4_q8_0 = avx2_dot4_q8_0, .dot4_q4_0 = avx2_dot4_q4_0,   /* measured faster than two-block zmm versions */
    .dot4_q4_1 = avx2_dot4_q4_1, .dot4_q5_1 = avx2_dot4_q5_1,
    .dot4_q4_K = avx2_dot4_q4_K, .dot4_q5_K = avx2_dot4_q5_K, .dot4_q6_K = avx2_dot4_q6_K,
};

const et_kernels et_kernels_avx512vnni = {
    .name = "avx512vnni",
    .dot_f32 = avx512_dot_f32, .dot_f16 = avx512_dot_f16, .dot_bf16 = avx512_dot_bf16,
    .dot_q8_0 = avx2_dot_q8_0, .dot_q4_0 = avx2_dot_q4_0, .dot_q5_0 = avx2_dot_q5_0,
    .dot_q4_1 = avx2_dot_q4_1, .dot_q5_1 = avx2_dot_q5_1,
    .dot_q4_K = avx2_dot_q4_K, .dot_q6_K = avx2_dot_q6_K,
    .dot_q2_K = avx2_dot_q2_K, .dot_q3_K = avx2_dot_q3_K, .dot_q5_K = avx2_dot_q5_K, .dot_iq4_nl = avx2_dot_iq4_nl,
    .dot4_q8_0 = avx2_dot4_q8_0, .dot4_q4_0 = avx2_dot4_q4_0,
    .dot4_q4_1 = avx2_dot4_q4_1, .dot4_q5_1 = avx2_dot4_q5_1,
    .dot4_q4_K = avx2_dot4_q4_K, .dot4_q5_K = avx2_dot4_q5_K, .dot4_q6_K = avx2_dot4_q6_K,
};

#endif
