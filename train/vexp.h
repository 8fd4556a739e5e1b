/* train/vexp.h — an exp(x) for float that GCC and clang vectorize inside
 * `#pragma omp simd` loops (libm's expf is a call, so loops using it stay
 * scalar).  Relative error below 3e-7 for x in [-87.3, 88]
 * (tests/test_autograd_ops.c); smaller x return exp(-87.33) ~ 1e-38 instead
 * of a denormal or 0 (harmless in a softmax), larger x return exp(88).
 * The clamps are arithmetic rather than `?:` so that GCC's if-conversion is
 * not needed (it refuses at -O2 with trapping math).
 *
 * Method (the classic Cephes expf scheme): x = k ln2 + r with k = round(x/ln2)
 * and |r| <= ln2/2 (ln2 split in two parts so r is exact), e^r by a degree-6
 * polynomial (the Cephes expf coefficients), then 2^k put into the exponent
 * bits. Rounding uses the 1.5*2^23 trick, exact in IEEE arithmetic. */
#ifndef ET_VEXP_H
#define ET_VEXP_H

#include <stdint.h>
#include <string.h>

static inline float et_vexpf(float x) {
    x += (float)(x < -87.33f) * (-87.33f - x); /* clamp without a branch */
    x -= (float)(x > 88.0f) * (x - 88.0f);
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float kf = x * 1.44269504088896341f + magic;
    kf -= magic;                     /* round(x / ln2) */
    float r = x - kf * 0.693359375f; /* ln2 = 0.693359375 - 2.12194440e-4 */
    r = r + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t k = (int32_t)kf;
    int32_t bits = (k + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
