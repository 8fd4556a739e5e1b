/* engine/kernels_x86_tile.c — AVX512-VNNI multi-token tiles for Q8_0, Q4_0
 * and Q4_1 weights (engine/tile.h), compiled with a per-function target
 * attribute and chosen at run time by CPUID.7.0:ECX[11] (AVX512_VNNI).
 * Q4_1 (w = d q + m against Q8_1) is Q4_0's tile without the correction
 * (its quants are unsigned) plus, per (row, token), the min terms
 * fp32(w.m) * fp32(x.s) added to lanes 0 and 8 after their group's product
 * (a masked add: the other lanes are left untouched), the order of
 * et_dot_q4_1_scalar.
 *
 * A tile is TR weight rows x TT tokens: per block pair (64 inputs) each row
 * is loaded and unpacked once, each token's quants, corrections and scales
 * once, and every (row, token) pair costs one vpdpbusd (the exact 16 group
 * sums of blocks b, b+1), one scale product fp32(w.d) * fp32(x.d), one
 * conversion, one product and one sum: the reference's lane order
 * (kernels.h: lane (b % 2) * 8 + g) with products and sums rounded
 * separately, folded pairwise at the end as the single dot does. */
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

/* Token k of a group of TT: per block pair p, 192 bytes at (p * TT + k) * 192:
 * quants, -c * group sums, scales repeated per lane (tile.h), from the
 * Q8_0 activations with their group sums and fp32 scales (kernels.h). */
static VNNI void pack_c(const et_block_q8_0 *x, int n, void *dst, int k, int c) {
    const int32_t *gsum = et_act_q8_0_gsum(x, n);
    const float *xd = et_act_q8_0_d(x, n);
    const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int p = 0; p < n / 64; p++) {
        uint8_t *o = (uint8_t *)dst + ((size_t)p * TT + (size_t)k) * 192;
        __m256i q0 = _mm256_loadu_si256((const __m256i *)x[2 * p].qs), q1 = _mm256_loadu_si256((const __m256i *)x[2 * p + 1].qs);
        _mm512_store_si512((void *)o, _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1));
        __m512i g = _mm512_loadu_si512((const void *)(gsum + 16 * p));
        _mm512_store_si512((void *)(o + 64), _mm512_mullo_epi32(g, _mm512_set1_epi32(-c)));
        __m512 d = _mm512_castpd_ps(_mm512_castpd128_pd512(_mm_castps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)(xd + 2 * p))))));
        _mm512_store_ps((void *)(o + 128), _mm512_permutexvar_ps(lanes, d));
    }
}

static void pack_q4_0(const et_block_q8_0 *x, int n, void *dst, int k) { pack_c(x, n, dst, k, 8); }

/* Q4_1 weights against Q8_1 activations (x as et_act_convert writes them
 * for Q8_1, blocks then fp32 d and s; the cast is only the pack signature):
 * the quants are unsigned, so no correction; its slot holds fp32(x.s) of
 * block 2p in lane 0 and of 2p+1 in lane 8 (their group 0), 0 elsewhere. */
static VNNI void pack_q4_1(const et_block_q8_0 *xv, int n, void *dst, int k) {
    const et_block_q8_1 *x = (const et_block_q8_1 *)(const void *)xv;
    const float *xd = et_act_q8_1_d(x, n), *xs = et_act_q8_1_s(x, n);
    const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    for (int p = 0; p < n / 64; p++) {
        uint8_t *o = (uint8_t *)dst + ((size_t)p * TT + (size_t)k) * 192;
        __m256i q0 = _mm256_loadu_si256((const __m256i *)x[2 * p].qs), q1 = _mm256_loadu_si256((const __m256i *)x[2 * p + 1].qs);
        _mm512_store_si512((void *)o, _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1));
        __m512 s = _mm512_maskz_mov_ps((__mmask16)0x0001, _mm512_set1_ps(xs[2 * p]));
        s = _mm512_mask_mov_ps(s, (__mmask16)0x0100, _mm512_set1_ps(xs[2 * p + 1]));
        _mm512_store_ps((void *)(o + 64), s);
        __m512 d = _mm512_castpd_ps(_mm512_castpd128_pd512(_mm_castps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)(xd + 2 * p))))));
        _mm512_store_ps((void *)(o + 128), _mm512_permutexvar_ps(lanes, d));
    }
}
static void pack_q8_0(const et_block_q8_0 *x, int n, void *dst, int k) { pack_c(x, n, dst, k, 128); }

static inline VNNI float fold16(__m512 a) {
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

/* fp32 of the scales h0 (lanes 0..7) and h1 (lanes 8..15). */
static inline VNNI __m512 scales2(uint16_t h0, uint16_t h1) {
    __m256i h = _mm256_mask_set1_epi16(_mm256_set1_epi16((short)h0), (__mmask16)0xFF00, (short)h1);
    return _mm512_cvtph_ps(h);
}

/* Blocks b, b+1 of a Q4_0 or Q4_1 row (their 16 quant bytes at qs0, qs1)
 * as 64 unsigned nibbles in element order. */
static inline VNNI __m512i nibbles64(const uint8_t *qs0, const uint8_t *qs1) {
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                        _mm_loadu_si128((const __m128i *)qs1), 1);
    __m512i z = _mm512_castsi256_si512(v);
    z = _mm512_shuffle_i64x2(z, z, 0x50);                       /* 128-bit lanes qs0, qs0, qs1, qs1 */
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xFF00FF00, z, 4);  /* high nibbles in lanes 1 and 3 */
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* Blocks b, b+1 of a Q8_0 row as 64 bytes w + 128 (unsigned). */
static inline VNNI __m512i bytes64(const et_block_q8_0 *blk) {
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)blk[0].qs)),
                                   _mm256_loadu_si256((const __m256i *)blk[1].qs), 1);
    return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
}

enum { K_Q8_0 = 0, K_Q4_0 = 1, K_Q4_1 = 2 };   /* the weight format, a constant once inlined */

static inline VNNI __attribute__((always_inline)) void tile_body(int n, const uint8_t *w, size_t rb, const uint8_t *act,
                                                                  float *out, size_t ldo, int kind) {
    int nb = n / ET_QK;
    __m512 acc[TR][TT];
#pragma GCC unroll 8
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) acc[r][t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b += 2) {
        __m512i wq[TR];
        __m512 wd[TR], wm[TR];
#pragma GCC unroll 8
        for (int r = 0; r < TR; r++) {
            if (kind == K_Q4_1) {
                const et_block_q4_1 *blk = (const et_block_q4_1 *)(const void *)(w + (size_t)r * rb) + b;
                wq[r] = nibbles64(blk[0].qs, blk[1].qs);
                wd[r] = scales2(blk[0].d, blk[1].d);
                wm[r] = scales2(blk[0].m, blk[1].m);
            } else if (kind == K_Q4_0) {
                const et_block_q4_0 *blk = (const et_block_q4_0 *)(const void *)(w + (size_t)r * rb) + b;
                wq[r] = nibbles64(blk[0].qs, blk[1].qs);
                wd[r] = scales2(blk[0].d, blk[1].d);
            } else {
                const et_block_q8_0 *blk = (const et_block_q8_0 *)(const void *)(w + (size_t)r * rb) + b;
                wq[r] = bytes64(blk);
                wd[r] = scales2(blk[0].d, blk[1].d);
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) {
            const uint8_t *xt = act + ((size_t)(b / 2) * TT + (size_t)t) * 192;
            __m512i xq = _mm512_load_si512((const void *)xt);
            __m512i corr = _mm512_load_si512((const void *)(xt + 64));
            __m512 xd = _mm512_load_ps((const void *)(xt + 128));
#pragma GCC unroll 8
            for (int r = 0; r < TR; r++) {
                __m512i s = _mm512_dpbusd_epi32(kind == K_Q4_1 ? _mm512_setzero_si512() : corr, wq[r], xq);
                __m512 d = _mm512_mul_ps(wd[r], xd);
                __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(s), d);
                acc[r][t] = _mm512_add_ps(acc[r][t], p);
                if (kind == K_Q4_1) {   /* the min terms fp32(w.m) * fp32(x.s), lanes 0 and 8, after their group's product */
                    __m512 mt = _mm512_mul_ps(wm[r], _mm512_castsi512_ps(corr));
                    acc[r][t] = _mm512_mask_add_ps(acc[r][t], (__mmask16)0x0101, acc[r][t], mt);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TT; t++) out[(size_t)t * ldo + (size_t)r] = fold16(acc[r][t]);
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
