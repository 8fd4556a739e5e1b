/* engine/f16row.c — see f16row.h.  The AVX-512 functions use per-function
 * target attributes; the choice is made once by CPUID (et_kernels_get). */
#include <string.h>

#include "../common/et.h"
#include "f16row.h"

#if !defined(__x86_64__)
/* The reference F16 dot (kernels_scalar.c) with the second operand already fp32. */
static float et_dot_f16_scalar_f(int n, const uint16_t *h, const float *f) {
    float acc[32] = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 32; l++) {
            float p = et_f16_table[h[i + l]] * f[i + l];
            acc[l] = acc[l] + p;
        }
    for (int w = 16; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] = acc[l] + acc[l + w];
    float s = acc[0];
    for (; i < n; i++) {
        float p = et_f16_table[h[i]] * f[i];
        s = s + p;
    }
    return s;
}
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#include <pthread.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* vcvtps2ph rounds to nearest even like et_fp32_to_fp16, and overflows to
 * inf as it does; only NaN payloads differ, so NaN lanes are replaced. */
static AVX512 void f16_row_avx512(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        if (nan) {
            __m512i sign = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 16), _mm512_set1_epi32(0x8000));
            __m256i q = _mm512_cvtepi32_epi16(_mm512_or_si512(sign, _mm512_set1_epi32(0x7e00)));
            h = _mm256_mask_mov_epi16(h, nan, q);
        }
        _mm256_storeu_si256((__m256i *)(y + i), h);
    }
    for (; i < n; i++) y[i] = et_fp32_to_fp16(x[i]);
}

/* As et_quantize_q8_0: amax (NaN never wins: vmaxps returns its second
 * operand when one is NaN), d and id in scalar, x * id rounded half to
 * even by vcvtps2dq, NaN -> 0, beyond +-127 saturated. */
static AVX512 void q8_0_row_avx512(const float *x, et_block_q8_0 *y, int n) {
    for (int b = 0; b < n / 32; b++, x += 32) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.f;
        float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[b].d = et_fp32_to_fp16(d);
        __m512 vid = _mm512_set1_ps(id), lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_mul_ps(h ? v1 : v0, vid);
            __mmask16 ok = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            __m512i q = _mm512_maskz_cvt_roundps_epi32(ok, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * h), _mm512_cvtepi32_epi8(q));
        }
    }
}

/* 32 lanes (zmm a0: lanes 0..15, a1: 16..31) folded pairwise: w = 16 is
 * a0 + a1, then 8, 4, 2, 1 (the reference's fold). */
static inline AVX512 float fold32(__m512 a0, __m512 a1) {
    __m512 z = _mm512_add_ps(a0, a1);
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(z), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1)));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

static inline AVX512 __m512 f16x16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

/* dot of n fp16 values h with n floats f (fp32 of fp16 values). */
static inline AVX512 float dot_hf(int n, const uint16_t *h, const float *f) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_mul_ps(f16x16(h + i), _mm512_loadu_ps(f + i)));
        a1 = _mm512_add_ps(a1, _mm512_mul_ps(f16x16(h + i + 16), _mm512_loadu_ps(f + i + 16)));
    }
    float s = fold32(a0, a1);
    if (i < n) {   /* the tail: products made 16 at a time, added in order */
        float prod[32];
        for (int k = i; k < n; k += 16) {
            __mmask16 m = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - k)) - 1);
            __m512 hv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + k));
            _mm512_storeu_ps(prod + (k - i), _mm512_mul_ps(hv, _mm512_maskz_loadu_ps(m, f + k)));
        }
        for (int k = 0; k < n - i; k++) s = s + prod[k];
    }
    return s;
}

/* Four folds of 32 lanes at once (zr = a0 + a1 of row r is the w = 16
 * step): w = 8, 4, 2, 1 as the reference, lane by lane the same sums. */
static inline AVX512 void fold4(__m512 z0, __m512 z1, __m512 z2, __m512 z3, float *out) {
    __m512 t01 = _mm512_add_ps(_mm512_shuffle_f32x4(z0, z1, 0x44), _mm512_shuffle_f32x4(z0, z1, 0xEE));
    __m512 t23 = _mm512_add_ps(_mm512_shuffle_f32x4(z2, z3, 0x44), _mm512_shuffle_f32x4(z2, z3, 0xEE));
    __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(t01, t23, 0x88), _mm512_shuffle_f32x4(t01, t23, 0xDD));
    u = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0xEE));
    u = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0x55));
    float r[16];
    _mm512_storeu_ps(r, u);
    for (int k = 0; k < 4; k++) out[k] = r[4 * k];
}

/* dot_hf of four rows h + r * ld (r < 4) with the same f. */
static inline AVX512 void dot4_hf(int n, const uint16_t *h, size_t ld, const float *f, float *out) {
    __m512 a0[4], a1[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) a0[r] = a1[r] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 f0 = _mm512_loadu_ps(f + i), f1 = _mm512_loadu_ps(f + i + 16);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            a0[r] = _mm512_add_ps(a0[r], _mm512_mul_ps(f16x16(h + r * ld + i), f0));
            a1[r] = _mm512_add_ps(a1[r], _mm512_mul_ps(f16x16(h + r * ld + i + 16), f1));
        }
    }
    fold4(_mm512_add_ps(a0[0], a1[0]), _mm512_add_ps(a0[1], a1[1]), _mm512_add_ps(a0[2], a1[2]),
          _mm512_add_ps(a0[3], a1[3]), out);
    if (i < n) {
        float prod[4][32];
        for (int k = i; k < n; k += 16) {
            __mmask16 m = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - k)) - 1);
            __m512 fv = _mm512_maskz_loadu_ps(m, f + k);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
                _mm512_storeu_ps(prod[r] + (k - i), _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + r * ld + k)), fv));
        }
        float s0 = out[0], s1 = out[1], s2 = out[2], s3 = out[3];
        for (int k = 0; k < n - i; k++) {
            s0 = s0 + prod[0][k];
            s1 = s1 + prod[1][k];
            s2 = s2 + prod[2][k];
            s3 = s3 + prod[3][k];
        }
        out[0] = s0;
        out[1] = s1;
        out[2] = s2;
        out[3] = s3;
    }
}

static AVX512 void scores_avx512(int hd, int n_kv, const uint16_t *k, size_t ld, const float *qf, float *sc) {
    int p = 0;
    for (; p + 4 <= n_kv; p += 4) dot4_hf(hd, k + (size_t)p * ld, ld, qf, sc + p);
    for (; p < n_kv; p++) sc[p] = dot_hf(hd, k + (size_t)p * ld, qf);
}

static AVX512 void values_avx512(int hd, int n_kv, const uint16_t *v, size_t ld, const float *pf, float *o) {
    int d = 0;
    for (; d + 4 <= hd; d += 4) dot4_hf(n_kv, v + (size_t)d * ld, ld, pf, o + d);
    for (; d < hd; d++) o[d] = dot_hf(n_kv, v + (size_t)d * ld, pf);
}

static int use_avx512;

static void pick(void) { use_avx512 = et_kernels_get("avx512") != NULL; }

static int avx512(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, pick);
    return use_avx512;
}

void et_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n) {
    if (avx512()) f16_row_avx512(x, y, n);
    else for (size_t i = 0; i < n; i++) y[i] = et_fp32_to_fp16(x[i]);
}

void et_quantize_q8_0_row(const float *x, et_block_q8_0 *y, int n) {
    if (avx512()) q8_0_row_avx512(x, y, n);
    else et_quantize_q8_0(x, y, n);
}

int et_att_f16_fast(void) { return avx512(); }

void et_att_scores_f16(int hd, int n_kv, const uint16_t *k, size_t ld, const float *qf, float *sc) {
    scores_avx512(hd, n_kv, k, ld, qf, sc);
}

void et_att_values_f16(int hd, int n_kv, const uint16_t *v, size_t ld, const float *pf, float *o) {
    values_avx512(hd, n_kv, v, ld, pf, o);
}

#else

void et_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = et_fp32_to_fp16(x[i]);
}

void et_quantize_q8_0_row(const float *x, et_block_q8_0 *y, int n) { et_quantize_q8_0(x, y, n); }

int et_att_f16_fast(void) { return 0; }

void et_att_scores_f16(int hd, int n_kv, const uint16_t *k, size_t ld, const float *qf, float *sc) {
    for (int p = 0; p < n_kv; p++) sc[p] = et_dot_f16_scalar_f(hd, k + (size_t)p * ld, qf);
}

void et_att_values_f16(int hd, int n_kv, const uint16_t *v, size_t ld, const float *pf, float *o) {
    for (int d = 0; d < hd; d++) o[d] = et_dot_f16_scalar_f(n_kv, v + (size_t)d * ld, pf);
}

#endif
