/* train/gemm_bf16_x86.h — internal: the AVX-512 helpers shared by the two
 * bf16 GEMM kernels (train/gemm_x86.c, blocked, for large products, and
 * train/gemm_bf16s_x86.c, whole-K, for small ones): f32 -> bf16 rounding
 * (round to nearest even, NaN quieted: et_fp32_to_bf16's bits except
 * subnormals, which vdpbf16ps reads as zero either way) and the packing of
 * k pairs; tests/test_gemm.c checks the products value by value.
 * Include only from x86-64 GCC/clang code, after <immintrin.h>. */
#ifndef ET_GEMM_BF16_X86_H
#define ET_GEMM_BF16_X86_H

#include <stddef.h>
#include <stdint.h>

#include "x86_avx512.h" /* mask16, transpose16 */

/* ---- rounding helpers (AVX-512F/BW) ---- */

/* x with the subnormal lanes that round to nearest even to the smallest
 * normal bf16 (|x| in [2^-126 - 2^-134, 2^-126)) set to +-2^-126: so that
 * vcvtne2ps2bf16, which reads subnormal inputs as zero (Intel SDM,
 * "VCVTNE2PS2BF16": DAZ), gives the same vdpbf16ps products as the bits
 * of et_fp32_to_bf16 (other subnormal lanes round to bf16 subnormals,
 * which vdpbf16ps reads as zero too).  |x| << 1 - 0x00ff0000 < 0x10000
 * (unsigned) picks them; ternary logic 0xea is (x & sign) | 2^-126. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512 fix_min_normal(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i t = _mm512_sub_epi32(_mm512_slli_epi32(u, 1), _mm512_set1_epi32(0x00ff0000));
    const __mmask16 m = _mm512_cmplt_epu32_mask(t, _mm512_set1_epi32(0x10000));
    return _mm512_castsi512_ps(_mm512_mask_ternarylogic_epi32(u, m, _mm512_set1_epi32((int)0x80000000u),
                                                              _mm512_set1_epi32(0x00800000), 0xea));
}

/* 32 f32 lanes lo[0..15], hi[0..15] rounded to bf16 words 0..15 (lo) and
 * 16..31 (hi) with vcvtne2ps2bf16: round to nearest even, NaN quieted, as
 * et_fp32_to_bf16 (as operands of vdpbf16ps, which reads subnormals as
 * zero, the same values: see fix_min_normal). */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512i cvt_words(__m512 lo, __m512 hi) {
    return (__m512i)_mm512_cvtne2ps_pbh(fix_min_normal(hi), fix_min_normal(lo));
}

/* Pairs (lo[l], hi[l]) of two f32 vectors as 16 packed bf16 pairs. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512i pair_lanes(__m512 lo, __m512 hi) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, cvt_words(lo, hi));
}

/* 32 consecutive f32 x[0..31] (x0 = x[0..15], x1 = x[16..31]) as 16 bf16
 * pairs (x[2p], x[2p+1]) in 32-bit lanes p: bf16 words in memory order. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512i pair_adjacent(__m512 x0, __m512 x1) {
    return cvt_words(x0, x1);
}

/* Prefetch (into L1) the bytes [p, p + bytes) a line at a time: the rows
 * a packing loop reads a few iterations later (activations another core
 * may have just written). */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
void prefetch_bytes(const void *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

/* Rows ahead that the packing loops prefetch, for rows of at most
 * ET_BF16_PF_MAX_BYTES (so that what is in flight stays well inside L1);
 * longer rows (SmolLM2's) are left to the hardware prefetchers.  Measured
 * on the stories260K bf16 step: 8, 16, 32 rows gave 0.97, 0.94-0.96, 0.97
 * of the time without (medians of 12 runs in rotated order). */
enum { ET_BF16_PF_ROWS = 16, ET_BF16_PF_MAX_BYTES = 1024 };

static inline __mmask32 mask32(int n) { return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

/* Up to 16 rows of k-contiguous data (row a at src + a*ld, rows >= nrows
 * zero), k pairs p0 .. p0+15 of kc: r[q] = the 16 rows' pair p0 + q. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
void rows_to_pairs(const float *Bf, const uint16_t *Bh, size_t base, size_t ld, int nrows, int left, __m512i r[16]) {
    for (int a = 0; a < 16; a++) {
        if (a >= nrows) { r[a] = _mm512_setzero_si512(); continue; }
        const size_t o = base + (size_t)a * ld;
        if (Bf)
            r[a] = pair_adjacent(_mm512_maskz_loadu_ps(mask16(left), Bf + o),
                                 _mm512_maskz_loadu_ps(mask16(left - 16), Bf + o + 16));
        else
            r[a] = _mm512_maskz_loadu_epi16(mask32(left), Bh + o);
    }
    transpose16(r);
}

#endif
