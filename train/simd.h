/* train/simd.h — vectorization helpers for the ops.
 *
 * et_vexpf: an exp(x) for float that GCC and clang vectorize inside
 * `#pragma omp simd` loops (libm's expf is a call, so loops using it stay
 * scalar).  Relative error below 3e-7 for x in [-87.3, 88]
 * (tests/test_autograd_ops.c); smaller x return exp(-87.33) ~ 1e-38 instead
 * of a denormal or 0 (harmless in a softmax), larger x return exp(88).
 * x must be finite for a meaningful result (NaN gives NaN; an infinite or
 * |x| > ~1e9 gives garbage, without undefined behaviour).
 * The clamps are arithmetic rather than `?:` so that GCC's if-conversion is
 * not needed (it refuses at -O2 with trapping math).
 *
 * Method (the classic Cephes expf scheme): x = k ln2 + r with k = round(x/ln2)
 * and |r| <= ln2/2 (ln2 split in two parts so r is exact), e^r by a degree-6
 * polynomial (the Cephes expf coefficients), then 2^k put into the exponent
 * bits. Rounding uses the 1.5*2^23 trick, exact in IEEE arithmetic. */
#ifndef ET_SIMD_H
#define ET_SIMD_H

#include <stdint.h>
#include <string.h>

/* exp(x) as described above (float, vectorizable; x finite). */
static inline float et_vexpf(float x) {
    x += (float)(x < -87.33f) * (-87.33f - x); /* clamp without a branch */
    x -= (float)(x > 88.0f) * (x - 88.0f);
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float m = x * 1.44269504088896341f + magic;
    float kf = m - magic;            /* round(x / ln2) */
    float r = x - kf * 0.693359375f; /* ln2 = 0.693359375 - 2.12194440e-4 */
    r = r + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^k from m's bits (k = bits(m) - bits(magic) for |k| < 2^22), in
     * unsigned arithmetic: a NaN or a huge x makes garbage, never UB (was
     * (int32_t)kf and a signed overflow, issue 11). */
    uint32_t mb;
    memcpy(&mb, &m, sizeof mb);
    uint32_t bits = (mb - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Reductions over n floats, n a multiple of 16 (callers pad): 16 lanes
 * accumulated vertically (one vector op per 16 elements for AVX-512, two
 * or four otherwise), then summed as a tree, so no long chain of dependent
 * scalar additions; the order is fixed (same result for any thread count). */
static inline float et_lanes_sum16(const float *a) {
    float s8[8], s4[4];
    for (int u = 0; u < 8; u++) s8[u] = a[u] + a[u + 8];
    for (int u = 0; u < 4; u++) s4[u] = s8[u] + s8[u + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* sum_i x[i] * y[i] over x [n], y [n]. */
static inline float et_dot16(const float *x, const float *y, int n) {
    float acc[16] = {0};
    for (int j = 0; j < n; j += 16) {
        #pragma omp simd
        for (int u = 0; u < 16; u++) acc[u] += x[j + u] * y[j + u];
    }
    return et_lanes_sum16(acc);
}

/* sum_i x[i] over x [n]. */
static inline float et_sum16(const float *x, int n) {
    float acc[16] = {0};
    for (int j = 0; j < n; j += 16) {
        #pragma omp simd
        for (int u = 0; u < 16; u++) acc[u] += x[j + u];
    }
    return et_lanes_sum16(acc);
}

/* max of x[0..n), n a positive multiple of 16 */
static inline float et_max16(const float *x, int n) {
    float mv[16];
    for (int u = 0; u < 16; u++) mv[u] = x[u];
    for (int j = 16; j < n; j += 16) {
        #pragma omp simd
        for (int u = 0; u < 16; u++) mv[u] = x[j + u] > mv[u] ? x[j + u] : mv[u];
    }
    float m = mv[0];
    for (int u = 1; u < 16; u++) m = mv[u] > m ? mv[u] : m;
    return m;
}

/* ET_SIMD_CLONES before a hot kernel function compiles it three times
 * (AVX-512, AVX2+FMA, baseline SSE2) and picks one at load time from the CPU
 * (GCC/clang target_clones, an ELF ifunc), so the default -O2 build stays
 * portable yet uses the wide vectors where they exist.  The kernels' inner
 * loops are `omp simd` loops.  Elsewhere (other OS/arch) it is empty. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define ET_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ET_SIMD_CLONES
#endif

#endif
