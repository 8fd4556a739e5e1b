/* engine/kernels_x86_gemv.c — single-token kernels (gemv) for Q4_0, Q4_1
 * and Q8_0 weights on AVX-512 with VNNI (vpdpbusd), the generation path:
 * out[r] = dot(row r, x) for n rows, each bit-identical to the scalar
 * reference (engine/kernels.h accumulation order).
 *
 * What makes them cheaper than one dot per row (docs/speed.md, proposals 1-4):
 *  - the token's side of every block pair (its bytes in the weights' lane
 *    order, the group-sum correction, its float d in the pair's lanes) is
 *    made once per call and read by every row;
 *  - the activation carries float d and int32 group sums (the Q8_0
 *    activation layout of kernels.h), so no per-block fp16 work on x;
 *  - the weight's two fp16 d of a pair: two memory broadcasts, one vcvtph2ps;
 *  - the exact group sums come from one vpdpbusd (unsigned x signed bytes)
 *    started from a correction instead of zero:
 *      Q4_0: nibbles u (0..15), w = u - 8:  sum w x = sum u x - 8 gsum
 *      Q8_0: w ^ 0x80 = w + 128 (unsigned): sum w x = sum (w+128) x - 128 gsum
 *      Q4_1: the nibbles are the (unsigned) weights: no correction
 *    (integer arithmetic, so exactly the scalar s(b,g));
 *  - Q4_1 against Q8_1: the 16 lanes as Q4_0 (d of x from the activation's
 *    float d[]); then per pair one more product and sum for the min terms:
 *    fp16(m) of blocks b, b+1 broadcast into the lanes of their group 0
 *    (two masked broadcasts and the d's vcvtph2ps) times the activation's
 *    float s[] in those lanes, zeros elsewhere.
 * Rows are read one after another (rows side by side share more but stream
 * from DRAM at half speed; docs/speed.md), Q4_0 with a software prefetch
 * ahead (Q8_0 without: its prefetches made it stream slower than the dot),
 * and folded four rows at a time (fold16x4).
 * Per block pair, lanes 0..7 hold block b's groups and 8..15 block b+1's
 * for Q8_0 (the scalar lanes); Q4_0 holds them as 128-bit quarters
 * (b g0-3, b+1 g0-3, b g4-7, b+1 g4-7), the order the nibbles unpack in,
 * and moves the quarters back before the fold.  A last odd block adds
 * exactly +0 to the odd lanes (which are never -0), as kernels_x86.c. */
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))


/* Fold 16 lanes pairwise (w = 8, 4, 2, 1): the scalar fold(acc, 16). */
static inline VNNI float fold16(__m512 a) {
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

/* 128-bit quarters (0, 2, 1, 3): natural pair order <-> Q4_0 unpack order (an involution). */
#define QUARTERS _MM_SHUFFLE(3, 1, 2, 0)

/* fold16 of four rows' accumulators at once, stored to out[0..3]: the same
 * additions on the same lanes (w = 8, 4, 2, 1), done for the four rows in
 * the lanes of a few vectors, so bit-identical to four fold16 calls (float
 * addition is commutative).  q4: the accumulators are in the quarters order,
 * whose w = 8 step adds adjacent quarters (0+1, 2+3) instead of 0+2, 1+3. */
static inline VNNI void fold16x4(__m512 a, __m512 b, __m512 c, __m512 d, int q4, float *out) {
    __m512 ab, cd;
    if (q4) {   /* w = 8: per row (Q0+Q1, Q2+Q3) = the natural lanes 0..7 */
        ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1)));
    } else {    /* w = 8: per row (N0+N2, N1+N3) */
        ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
        cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    /* w = 4: one row per 128-bit quarter (a, b, c, d) */
    __m512 v = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));   /* w = 2 */
    v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));   /* w = 1 */
    v = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), v);
    _mm_storeu_ps(out, _mm512_castps512_ps128(v));
}

/* The last block of an odd count, as a pair with a zero block b+1. */
static inline VNNI __m512i q8_0_last(const et_block_q8_0 *w, int b) {
    __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[b].qs));
    return _mm512_xor_si512(_mm512_maskz_mov_epi64(0x0F, v), _mm512_set1_epi8((char)0x80));
}
static inline VNNI __m512i q4_0_last(const et_block_q4_0 *w, int b) {
    __m256i t = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w[b].qs));
    t = _mm256_inserti128_si256(t, _mm_setzero_si128(), 1);
    __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    return _mm512_and_si512(u, _mm512_set1_epi8(0x0F));
}

static inline VNNI __m512i load2x256(const void *a, const void *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* Q8_0 weight bytes of blocks b, b+1 as unsigned (w + 128). */
static inline VNNI __m512i q8_0_pair(const et_block_q8_0 *w, int b) {
    return _mm512_xor_si512(load2x256(w[b].qs, w[b + 1].qs), _mm512_set1_epi8((char)0x80));
}

/* Q4_0 nibbles of blocks b, b+1 in the quarters order (lo b, lo b+1, hi b, hi b+1). */
static inline VNNI __m512i q4_0_pair(const et_block_q4_0 *w, int b) {
    __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w[b].qs)),
                                        _mm_loadu_si128((const __m128i *)w[b + 1].qs), 1);
    __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    return _mm512_and_si512(u, _mm512_set1_epi8(0x0F));
}

/* The weight formats (a compile-time constant in the inlined functions). */
enum { K_Q8_0 = 0, K_Q4_0 = 1, K_Q4_1 = 2 };

/* Q4_1 nibbles of blocks b, b+1 in the quarters order, as q4_0_pair (no offset: the quants are unsigned). */
static inline VNNI __m512i q4_1_pair(const et_block_q4_1 *w, int b) {
    __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w[b].qs)),
                                        _mm_loadu_si128((const __m128i *)w[b + 1].qs), 1);
    __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    return _mm512_and_si512(u, _mm512_set1_epi8(0x0F));
}
static inline VNNI __m512i q4_1_last(const et_block_q4_1 *w, int b) {
    __m256i t = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)w[b].qs));
    t = _mm256_inserti128_si256(t, _mm_setzero_si128(), 1);
    __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    return _mm512_and_si512(u, _mm512_set1_epi8(0x0F));
}

/* Lanes of block b+1 in a pair: 8..15 (Q8_0), the quarters 1 and 3 (Q4_0, Q4_1). */
static inline __mmask16 odd_lanes(int q4) { return (__mmask16)(q4 ? 0xF0F0 : 0xFF00); }

/* fp32 of a row's fp16 d of blocks b and b+1 (two = 0: 0 for b+1) in the
 * pair's lanes: two broadcasts and one vcvtph2ps. */
static inline VNNI __m512 row_d(const void *db, const void *db1, int two, int q4) {
    __m256i h = _mm256_broadcastw_epi16(_mm_loadu_si16(db));
    if (two) h = _mm256_mask_broadcastw_epi16(h, odd_lanes(q4), _mm_loadu_si16(db1));
    else h = _mm256_maskz_mov_epi16((__mmask16)~odd_lanes(q4), h);
    return _mm512_cvtph_ps(h);
}

/* The token's side of one block pair, made once per call and read by every row. */
typedef struct act_pair {
    __m512i qx;     /* activation bytes (Q4_0, Q4_1: quarters order) */
    __m512i corr;   /* -128 (Q8_0) or -8 (Q4_0) times the group sums; 0 (Q4_1) */
    __m512 d;       /* fp32(d_x) in the pair's lanes */
    __m512 s;       /* Q4_1: fp32(s_x) of b in lane 0, of b+1 in lane 4 (their group 0), 0 elsewhere */
} act_pair;

/* The activation's bytes of block b (and b+1 when two; Q8_0 or Q8_1 blocks). */
static inline VNNI __m512i act_bytes(const void *x, int b, int two, int kind) {
    const int8_t *q0 = kind == K_Q4_1 ? ((const et_block_q8_1 *)x)[b].qs : ((const et_block_q8_0 *)x)[b].qs;
    __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q0));
    if (!two) return _mm512_maskz_mov_epi64(0x0F, v);
    const int8_t *q1 = kind == K_Q4_1 ? ((const et_block_q8_1 *)x)[b + 1].qs : ((const et_block_q8_0 *)x)[b + 1].qs;
    return _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)q1), 1);
}

static inline VNNI void make_act_pair(act_pair *a, const void *x, const int32_t *gsum, const float *xd,
                                      const float *xs, int b, int two, int kind) {
    const int q4 = kind != K_Q8_0;
    __m512i v = act_bytes(x, b, two, kind);
    if (q4) v = _mm512_shuffle_i64x2(v, v, QUARTERS);
    a->qx = v;
    a->s = _mm512_setzero_ps();
    if (kind == K_Q4_1) {
        a->corr = _mm512_setzero_si512();
        a->s = _mm512_maskz_mov_ps((__mmask16)0x0001, _mm512_set1_ps(xs[b]));
        if (two) a->s = _mm512_mask_mov_ps(a->s, (__mmask16)0x0010, _mm512_set1_ps(xs[b + 1]));
    } else {
        __m512i g = _mm512_maskz_loadu_epi32(two ? 0xFFFF : 0x00FF, gsum + 8 * b);
        if (q4) g = _mm512_shuffle_i64x2(g, g, QUARTERS);
        a->corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(g, q4 ? 3 : 7));
    }
    a->d = _mm512_mask_mov_ps(_mm512_set1_ps(xd[b]), odd_lanes(q4), _mm512_set1_ps(two ? xd[b + 1] : 0.0f));
}

#define CHUNK_PAIRS 64    /* activation pairs prepared at a time (16 KiB of stack) */
#define ROW_GROUP 16      /* rows whose accumulators live across chunks */

/* One row's share of block pair b, b+1 (two = 0: b alone): acc += (float)s * d. */
static inline VNNI __attribute__((always_inline)) __m512 pair_step(__m512 acc, const uint8_t *row, int b, int two,
                                                                   const act_pair *a, int kind) {
    const et_block_q8_0 *w8 = (const et_block_q8_0 *)row;
    const et_block_q4_0 *w4 = (const et_block_q4_0 *)row;
    const et_block_q4_1 *w41 = (const et_block_q4_1 *)row;
    __m512i qw;
    __m512 dw;
    if (kind == K_Q4_1) {
        qw = two ? q4_1_pair(w41, b) : q4_1_last(w41, b);
        dw = row_d(&w41[b].d, two ? &w41[b + 1].d : NULL, two, 1);
    } else if (kind == K_Q4_0) {
        qw = two ? q4_0_pair(w4, b) : q4_0_last(w4, b);
        dw = row_d(&w4[b].d, two ? &w4[b + 1].d : NULL, two, 1);
    } else {
        qw = two ? q8_0_pair(w8, b) : q8_0_last(w8, b);
        dw = row_d(&w8[b].d, two ? &w8[b + 1].d : NULL, two, 0);
    }
    __m512i s = _mm512_dpbusd_epi32(a->corr, qw, a->qx);
    __m512 d = _mm512_mul_ps(dw, a->d);   /* fp32(d_w) * fp32(d_x), as the scalar */
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
    if (kind == K_Q4_1) {   /* the min terms: lanes 0 and 4 get fp16(m) * s, the others + 0 (never -0) */
        __m256i h = _mm256_maskz_broadcastw_epi16((__mmask16)0x0001, _mm_loadu_si16(&w41[b].m));
        if (two) h = _mm256_mask_broadcastw_epi16(h, (__mmask16)0x0010, _mm_loadu_si16(&w41[b + 1].m));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtph_ps(h), a->s));
    }
    return acc;
}

#ifndef PF_AHEAD
#define PF_AHEAD 2048
#endif
/* One row, pairs [p0, p0 + np) of its nb blocks: acc +=.  Also prefetches
 * the bytes PF_AHEAD after those it reads (the rows that follow). */
static inline VNNI __attribute__((always_inline)) __m512 row_pairs(__m512 acc, const uint8_t *row, int nb, int p0,
                                                                   int np, const act_pair *ap, int kind) {
    size_t bs = kind == K_Q4_1 ? sizeof(et_block_q4_1) : kind == K_Q4_0 ? sizeof(et_block_q4_0) : sizeof(et_block_q8_0);
    int full = 2 * (p0 + np) <= nb ? np : np - 1;   /* pairs with both blocks */
    for (int p = 0; p < full; p++) {
        int b = 2 * (p0 + p);
#if PF_AHEAD
        if (kind != K_Q8_0) _mm_prefetch((const char *)((uintptr_t)row + (uintptr_t)b * bs + PF_AHEAD), _MM_HINT_T0);
#endif
        acc = pair_step(acc, row, b, 1, &ap[p], kind);
    }
    if (full < np) acc = pair_step(acc, row, 2 * (p0 + full), 0, &ap[full], kind);   /* an odd last block */
    return acc;
}

static inline VNNI __attribute__((always_inline)) void gemv(int n, const void *w, size_t ws, int n_rows,
                                                            const void *x, float *out, int kind) {
    const int q4 = kind != K_Q8_0;
    const int32_t *gsum = kind == K_Q4_1 ? NULL : et_act_q8_0_gsum(x, n);
    const float *xd = kind == K_Q4_1 ? et_act_q8_1_d(x, n) : et_act_q8_0_d(x, n);
    const float *xs = kind == K_Q4_1 ? et_act_q8_1_s(x, n) : NULL;
    int nb = n / ET_QK, n_pairs = (nb + 1) / 2;
    act_pair ap[CHUNK_PAIRS];
    if (n_pairs <= CHUNK_PAIRS) {   /* the usual case: the token's side made once for all rows */
        for (int p = 0; p < n_pairs; p++) make_act_pair(&ap[p], x, gsum, xd, xs, 2 * p, 2 * p + 1 < nb, kind);
        int r = 0;
        for (; r + 4 <= n_rows; r += 4) {   /* rows one after another, folded four at a time */
            const uint8_t *row = (const uint8_t *)w + ws * (size_t)r;
            __m512 a0 = row_pairs(_mm512_setzero_ps(), row, nb, 0, n_pairs, ap, kind);
            __m512 a1 = row_pairs(_mm512_setzero_ps(), row + ws, nb, 0, n_pairs, ap, kind);
            __m512 a2 = row_pairs(_mm512_setzero_ps(), row + 2 * ws, nb, 0, n_pairs, ap, kind);
            __m512 a3 = row_pairs(_mm512_setzero_ps(), row + 3 * ws, nb, 0, n_pairs, ap, kind);
            fold16x4(a0, a1, a2, a3, q4, out + r);
        }
        for (; r < n_rows; r++) {
            __m512 acc = row_pairs(_mm512_setzero_ps(), (const uint8_t *)w + ws * (size_t)r, nb, 0, n_pairs, ap, kind);
            out[r] = fold16(q4 ? _mm512_shuffle_f32x4(acc, acc, QUARTERS) : acc);
        }
        return;
    }
    for (int r0 = 0; r0 < n_rows; r0 += ROW_GROUP) {
        int nr = n_rows - r0 < ROW_GROUP ? n_rows - r0 : ROW_GROUP;
        __m512 acc[ROW_GROUP];
        for (int r = 0; r < nr; r++) acc[r] = _mm512_setzero_ps();
        for (int p0 = 0; p0 < n_pairs; p0 += CHUNK_PAIRS) {
            int np = n_pairs - p0 < CHUNK_PAIRS ? n_pairs - p0 : CHUNK_PAIRS;
            for (int p = 0; p < np; p++) {
                int b = 2 * (p0 + p);
                make_act_pair(&ap[p], x, gsum, xd, xs, b, b + 1 < nb, kind);
            }
            for (int r = 0; r < nr; r++)
                acc[r] = row_pairs(acc[r], (const uint8_t *)w + ws * (size_t)(r0 + r), nb, p0, np, ap, kind);
        }
        int r = 0;
        for (; r + 4 <= nr; r += 4) fold16x4(acc[r], acc[r + 1], acc[r + 2], acc[r + 3], q4, out + r0 + r);
        for (; r < nr; r++) out[r0 + r] = fold16(q4 ? _mm512_shuffle_f32x4(acc[r], acc[r], QUARTERS) : acc[r]);
    }
}

VNNI void et_gemv_q8_0_avx512vnni(int n, const void *w, size_t w_stride, int n_rows, const void *x, float *out) {
    gemv(n, w, w_stride, n_rows, x, out, K_Q8_0);
}

VNNI void et_gemv_q4_0_avx512vnni(int n, const void *w, size_t w_stride, int n_rows, const void *x, float *out) {
    gemv(n, w, w_stride, n_rows, x, out, K_Q4_0);
}

VNNI void et_gemv_q4_1_avx512vnni(int n, const void *w, size_t w_stride, int n_rows, const void *x, float *out) {
    gemv(n, w, w_stride, n_rows, x, out, K_Q4_1);
}

#endif
