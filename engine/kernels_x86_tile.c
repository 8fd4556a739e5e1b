/* engine/kernels_x86_tile.c — AVX512-VNNI multi-token tiles for Q8_0, Q4_0
 * and Q4_1 weights (engine/tile.h), compiled with a per-function target
 * attribute and chosen at run time by CPUID.7.0:ECX[11] (AVX512_VNNI).
 *
 * A tile is TR weight rows x TT tokens: per block pair (blocks b, b+1: 64
 * inputs) each row is loaded and unpacked once, each token's quants and
 * corrections once, and every (row, token) pair costs one vpdpbusd (the
 * exact 16 group sums), one conversion, one product and one sum: the
 * reference's per-lane arithmetic (kernels.h: lane (b % 2) * 8 + g) with
 * products and sums rounded separately, folded pairwise at the end as the
 * single dot does.
 *
 * The registers hold the 16 lanes interleaved: register lane i is block
 * parity i % 2 and group G(i) (Q8_0: 0,0,1,1,4,4,5,5,2,2,3,3,6,6,7,7,
 * what two vpunpck{l,h}dq of the row's blocks give; Q4_0/Q4_1: i / 2), so
 * that the scale products of one (row, token) — fp32(w.d) * fp32(x.d) of
 * blocks b and b+1, two floats — are one 64-bit broadcast.  They are made
 * for the TT tokens at once, one multiply per row and block pair (16
 * products), instead of one 16-lane multiply per (row, token).  The
 * packing puts the activations in the same lane order; the accumulators
 * are permuted back to the reference's lanes before the fold.
 *
 * Q4_1 (w = d q + m against Q8_1) is Q4_0's tile without the correction
 * (its quants are unsigned) plus, per (row, token), the min terms
 * fp32(w.m) * fp32(x.s) of the two blocks (made as the scale products are)
 * added to the lanes of group 0 right after that group's product (a masked
 * add: the other lanes are left untouched), the order of
 * et_dot_q4_1_scalar. */
#include <string.h>

#include "../export/gguf.h"
#include "tile.h"

size_t et_tile_act_bytes(int n) { return (size_t)n * 3; }

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#ifndef TR
#define TR 2   /* rows per tile */
#endif
#ifndef TT
#define TT 8   /* tokens per tile */
#endif
#define TOK_BYTES 128                        /* per token and pair: quants, corrections */
#define PAIR_BYTES (TT * TOK_BYTES + 128)    /* + the TT tokens' d and s */
_Static_assert(PAIR_BYTES <= TT * 3 * 64, "a packed group fits et_tile_act_bytes");
_Static_assert(2 * TT == 16, "the scale products of TT tokens fill one register");

/* Group G(i) of register lane i (parity i % 2). */
static const int G_Q8[16] = {0, 0, 1, 1, 4, 4, 5, 5, 2, 2, 3, 3, 6, 6, 7, 7};
static const int G_Q4[16] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};

/* A group of TT tokens, per block pair p, at p * PAIR_BYTES:
 *   token k at k * TOK_BYTES: int8 qs[16][4] (register lane i: the 4 quants
 *     of group G(i) of block 2p + i % 2), int32 corr[16] (-c times their
 *     sum; Q4_1: 0);
 *   at TT * TOK_BYTES: float d[16], lane 2k + j: fp32(x.d) of token k's
 *     block 2p + j; then float s[16], the same for fp32(x.s) (Q4_1 only).
 * Scalar code: the packing is done once per token, the tiles read it many
 * times. */
static void pack_any(const int8_t *qs, size_t bstride, const int32_t *gsum, const float *xd, const float *xs, int n,
                     void *dst, int k, int c, const int *G) {
    for (int p = 0; p < n / 64; p++) {
        uint8_t *base = (uint8_t *)dst + (size_t)p * PAIR_BYTES, *o = base + (size_t)k * TOK_BYTES;
        int32_t corr[16];
        for (int i = 0; i < 16; i++) {
            int b = 2 * p + i % 2, g = G[i];
            memcpy(o + 4 * i, qs + (size_t)b * bstride + 4 * g, 4);
            corr[i] = gsum ? -c * gsum[8 * b + g] : 0;
        }
        memcpy(o + 64, corr, sizeof corr);
        float *d = (float *)(void *)(base + TT * TOK_BYTES), *s = d + 16;
        d[2 * k] = xd[2 * p];
        d[2 * k + 1] = xd[2 * p + 1];
        s[2 * k] = xs ? xs[2 * p] : 0.0f;
        s[2 * k + 1] = xs ? xs[2 * p + 1] : 0.0f;
    }
}

static void pack_q4_0(const et_block_q8_0 *x, int n, void *dst, int k) {
    pack_any(x[0].qs, sizeof *x, et_act_q8_0_gsum(x, n), et_act_q8_0_d(x, n), NULL, n, dst, k, 8, G_Q4);
}
static void pack_q8_0(const et_block_q8_0 *x, int n, void *dst, int k) {
    pack_any(x[0].qs, sizeof *x, et_act_q8_0_gsum(x, n), et_act_q8_0_d(x, n), NULL, n, dst, k, 128, G_Q8);
}
/* Q4_1: x is Q8_1 (blocks, then fp32 d and s: kernels.h); the cast is only the pack signature. */
static void pack_q4_1(const et_block_q8_0 *xv, int n, void *dst, int k) {
    const et_block_q8_1 *x = (const et_block_q8_1 *)(const void *)xv;
    pack_any(x[0].qs, sizeof *x, NULL, et_act_q8_1_d(x, n), et_act_q8_1_s(x, n), n, dst, k, 0, G_Q4);
}

/* Fold 16 lanes pairwise (w = 8, 4, 2, 1) as the scalar fold(acc, 16). */
static inline VNNI float fold16(__m512 a) {
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

/* fp32 of h0, h1 (two fp16 scales) in lanes 2j, 2j+1: [h0, h1] x 8. */
static inline VNNI __m512 pair16(uint16_t h0, uint16_t h1) {
    return _mm512_cvtph_ps(_mm256_set1_epi32((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
}

/* Blocks b, b+1 of a Q4_0 or Q4_1 row (their 16 quant bytes at qs0, qs1)
 * as 64 unsigned nibbles, register lane i = group i / 2 of block b + i % 2. */
static inline VNNI __m512i nibbles64(const uint8_t *qs0, const uint8_t *qs1) {
    __m128i a = _mm_loadu_si128((const __m128i *)qs0), b = _mm_loadu_si128((const __m128i *)qs1);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi32(a, b)), _mm_unpackhi_epi32(a, b), 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);   /* groups 0-3, then 4-7 */
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* Blocks b, b+1 of a Q8_0 row as 64 bytes w + 128 (unsigned), lane order G_Q8. */
static inline VNNI __m512i bytes64(const et_block_q8_0 *blk) {
    __m256i a = _mm256_loadu_si256((const __m256i *)blk[0].qs), b = _mm256_loadu_si256((const __m256i *)blk[1].qs);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_unpacklo_epi32(a, b)), _mm256_unpackhi_epi32(a, b), 1);
    return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
}

enum { K_Q8_0 = 0, K_Q4_0 = 1, K_Q4_1 = 2 };   /* the weight format, a constant once inlined */

/* Register lane of reference lane L = (L / 8) * 8 + g: parity L / 8, group L % 8. */
static inline VNNI __m512i to_reference(int kind) {
    return kind == K_Q8_0 ? _mm512_setr_epi32(0, 2, 8, 10, 4, 6, 12, 14, 1, 3, 9, 11, 5, 7, 13, 15)
                          : _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
}

/* Two floats at p broadcast: [p[0], p[1]] x 8. */
static inline VNNI __m512 bcast2(const float *p) {
    double v;
    memcpy(&v, p, sizeof v);
    return _mm512_castpd_ps(_mm512_set1_pd(v));
}

static inline VNNI __attribute__((always_inline)) void tile_body(int n, const uint8_t *w, size_t rb, const uint8_t *act,
                                                                  float *out, size_t ldo, int kind) {
    int nb = n / ET_QK;
    __m512 acc[TR][TT];
    _Alignas(64) float dp[TR][16], mp[TR][16];   /* per row: the TT tokens' scale (min) products */
#pragma GCC unroll 8
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) acc[r][t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b += 2) {
        const uint8_t *pa = act + (size_t)(b / 2) * PAIR_BYTES;
        const __m512 xd = _mm512_load_ps((const void *)(pa + TT * TOK_BYTES));
        __m512i wq[TR];
#pragma GCC unroll 8
        for (int r = 0; r < TR; r++) {
            if (kind == K_Q4_1) {
                const et_block_q4_1 *blk = (const et_block_q4_1 *)(const void *)(w + (size_t)r * rb) + b;
                wq[r] = nibbles64(blk[0].qs, blk[1].qs);
                _mm512_store_ps(dp[r], _mm512_mul_ps(pair16(blk[0].d, blk[1].d), xd));
                const __m512 xs = _mm512_load_ps((const void *)(pa + TT * TOK_BYTES + 64));
                _mm512_store_ps(mp[r], _mm512_mul_ps(pair16(blk[0].m, blk[1].m), xs));
            } else if (kind == K_Q4_0) {
                const et_block_q4_0 *blk = (const et_block_q4_0 *)(const void *)(w + (size_t)r * rb) + b;
                wq[r] = nibbles64(blk[0].qs, blk[1].qs);
                _mm512_store_ps(dp[r], _mm512_mul_ps(pair16(blk[0].d, blk[1].d), xd));
            } else {
                const et_block_q8_0 *blk = (const et_block_q8_0 *)(const void *)(w + (size_t)r * rb) + b;
                wq[r] = bytes64(blk);
                _mm512_store_ps(dp[r], _mm512_mul_ps(pair16(blk[0].d, blk[1].d), xd));
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) {
            const uint8_t *xt = pa + (size_t)t * TOK_BYTES;
            __m512i xq = _mm512_load_si512((const void *)xt);
            __m512i corr = kind == K_Q4_1 ? _mm512_setzero_si512() : _mm512_load_si512((const void *)(xt + 64));
#pragma GCC unroll 8
            for (int r = 0; r < TR; r++) {
                __m512i s = _mm512_dpbusd_epi32(corr, wq[r], xq);
                __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(s), bcast2(dp[r] + 2 * t));
                acc[r][t] = _mm512_add_ps(acc[r][t], p);
                if (kind == K_Q4_1)   /* the min terms, lanes 0 and 1 (group 0), after their group's product */
                    acc[r][t] = _mm512_mask_add_ps(acc[r][t], (__mmask16)0x0003, acc[r][t], bcast2(mp[r] + 2 * t));
            }
        }
    }
    const __m512i perm = to_reference(kind);
#pragma GCC unroll 8
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) out[(size_t)t * ldo + (size_t)r] = fold16(_mm512_permutexvar_ps(perm, acc[r][t]));
}

static VNNI void tile_q4_0(int n, const void *w, size_t rb, const void *act, float *out, size_t ldo) {
    tile_body(n, w, rb, act, out, ldo, K_Q4_0);
}

static VNNI void tile_q4_1(int n, const void *w, size_t rb, const void *act, float *out, size_t ldo) {
    tile_body(n, w, rb, act, out, ldo, K_Q4_1);
}

static VNNI void tile_q8_0(int n, const void *w, size_t rb, const void *act, float *out, size_t ldo) {
    tile_body(n, w, rb, act, out, ldo, K_Q8_0);
}

static const et_tile tile_set_q4_0 = {"avx512vnni", TR, TT, pack_q4_0, tile_q4_0};
static const et_tile tile_set_q8_0 = {"avx512vnni", TR, TT, pack_q8_0, tile_q8_0};
static const et_tile tile_set_q4_1 = {"avx512vnni", TR, TT, pack_q4_1, tile_q4_1};

static int vnni;

static void check_vnni(void) {
    unsigned a, b, c, d;
    vnni = __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((c >> 11) & 1);
}

/* CPUID once (it traps to the hypervisor in a VM). */
static int has_vnni(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, check_vnni);
    return vnni;
}

const et_tile *et_tile_get(const et_kernels *k, uint32_t weight_type, int n) {
    if (!k || strncmp(k->name, "avx512", 6) || n <= 0 || n % 64 || !has_vnni()) return NULL;
    if (weight_type == GGML_TYPE_Q4_0) return &tile_set_q4_0;
    if (weight_type == GGML_TYPE_Q8_0) return &tile_set_q8_0;
    if (weight_type == GGML_TYPE_Q4_1) return &tile_set_q4_1;
    return NULL;
}

#else

const et_tile *et_tile_get(const et_kernels *k, uint32_t weight_type, int n) {
    (void)k;
    (void)weight_type;
    (void)n;
    return NULL;
}

#endif
