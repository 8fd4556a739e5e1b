/* train/x86_avx512.h — internal: what the AVX-512 kernels of train/ share
 * (the GEMMs train/gemm_x86.c, gemm_f32_x86.c, gemm_bf16s_x86.c and the
 * attention tiles train/attn_kd8_x86.c): the CPU feature probe, tail masks,
 * the 16 x 16 register transpose and the GEMM tiles' store of C.
 * Include only from x86-64 GCC/clang code, after <immintrin.h>; the inline
 * helpers compile for AVX-512F and inline into callers whose target is
 * AVX-512F or a superset of it.  Their loops are fully unrolled (pragmas):
 * at -O2 GCC would otherwise keep the register arrays in memory (the
 * attention tiles measured 1.2-1.3x slower that way). */
#ifndef ET_X86_AVX512_H
#define ET_X86_AVX512_H

#include <stddef.h>

/* Feature bits of et_cpu_x86_features. */
enum {
    ET_X86_AVX512F = 1,   /* AVX-512F, with the OS saving zmm and opmask state */
    ET_X86_AVX512BF16 = 2 /* AVX-512 F, BW, VL and BF16 */
};

/* The ET_X86_* bits this CPU and OS support (CPUID leaves 1 and 7, XGETBV:
 * Intel SDM vol. 1, 15.2 "Detection of AVX-512 foundation instructions").
 * Probed once, then cached; thread-safe.  Defined in train/gemm_x86.c. */
int et_cpu_x86_features(void);

#define ET_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))

/* Lanes 0 .. n-1 (n clamped to 0 .. 16). */
static inline __mmask16 mask16(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* In-place transpose of a 16 x 16 matrix of 32-bit elements (r[a] = row a):
 * 32-bit then 64-bit interleaves inside 128-bit lanes, then a 4 x 4
 * transpose of the lanes. */
ET_AVX512_INLINE void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    #pragma GCC unroll 16
    for (int c = 0; c < 4; c++) { /* u[4i + c] lane l = column 4l + c, rows 4i..4i+3 */
        __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44), v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}

/* transpose16 of 16 rows of floats (the same bits moved). */
ET_AVX512_INLINE void transpose16_ps(__m512 r[16]) {
    __m512i x[16];
    #pragma GCC unroll 16
    for (int a = 0; a < 16; a++) x[a] = _mm512_castps_si512(r[a]);
    transpose16(x);
    #pragma GCC unroll 16
    for (int a = 0; a < 16; a++) r[a] = _mm512_castsi512_ps(x[a]);
}

/* The end of a GEMM tile of MV rows x up to 32 columns (NV vectors of 16,
 * lanes of the second beyond the tile masked by m1, of the first by m0):
 *   C[i][j] = alpha * acc[i][j]  (+ beta * C[i][j] when beta != 0: C is not
 *   read otherwise, so NaN there does not propagate)
 * alpha 1 skips the multiply (the same bits). */
ET_AVX512_INLINE void store_tile(const int MV, const int NV, __m512 acc[][2], float *c, size_t ldc, float alpha,
                                 float beta, __mmask16 m0, __mmask16 m1) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int scale = alpha != 1.0f;
#pragma GCC unroll 12
    for (int i = 0; i < MV; i++) {
        float *ci = c + (size_t)i * ldc;
        __m512 y0 = scale ? _mm512_mul_ps(va, acc[i][0]) : acc[i][0];
        if (beta != 0.0f) y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), y0);
        _mm512_mask_storeu_ps(ci, m0, y0);
        if (NV == 2) {
            __m512 y1 = scale ? _mm512_mul_ps(va, acc[i][1]) : acc[i][1];
            if (beta != 0.0f) y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), y1);
            _mm512_mask_storeu_ps(ci + 16, m1, y1);
        }
    }
}

#endif
