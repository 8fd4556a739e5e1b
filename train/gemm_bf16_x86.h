/* train/gemm_bf16_x86.h — internal: the AVX-512 helpers shared by the two
 * bf16 GEMM kernels (train/gemm_x86.c, blocked, for large products, and
 * train/gemm_bf16s_x86.c, whole-K, for small ones): f32 -> bf16 rounding
 * bit-identical to et_fp32_to_bf16 (round to nearest even, NaN quieted) and
 * the packing of k pairs.  Include only from x86-64 GCC/clang code, after
 * <immintrin.h>. */
#ifndef ET_GEMM_BF16_X86_H
#define ET_GEMM_BF16_X86_H

#include <stddef.h>
#include <stdint.h>

/* ---- rounding helpers (AVX-512F/BW) ---- */

/* f32 lanes -> their bits rounded to nearest even at bit 16 (bf16 in the
 * high half); NaN lanes quieted, as et_fp32_to_bf16. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512i round_hi(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
}

/* Pairs (lo[l], hi[l]) of two f32 vectors as 16 packed bf16 pairs. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512i pair_lanes(__m512 lo, __m512 hi) {
    return _mm512_or_si512(_mm512_srli_epi32(round_hi(lo), 16),
                           _mm512_and_si512(round_hi(hi), _mm512_set1_epi32((int)0xffff0000u)));
}

/* 32 consecutive f32 x[0..31] (x0 = x[0..15], x1 = x[16..31]) as 16 bf16
 * pairs (x[2p], x[2p+1]) in 32-bit lanes p. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
__m512i pair_adjacent(__m512 x0, __m512 x1) {
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
                                         31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_permutex2var_epi16(round_hi(x0), idx, round_hi(x1));
}

static inline __mmask16 mask16(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }
static inline __mmask32 mask32(int n) { return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

/* In-place transpose of a 16 x 16 matrix of 32-bit elements (r[a] = row a):
 * 32-bit then 64-bit interleaves inside 128-bit lanes, then a 4 x 4
 * transpose of the lanes. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int c = 0; c < 4; c++) { /* u[4i + c] lane l = column 4l + c, rows 4i..4i+3 */
        __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44), v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}

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
