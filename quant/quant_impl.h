/* quant/quant_impl.h — helpers shared by the quant/ row functions (internal).
 *
 * Bit-exactness with ggml needs the same float operations in the same order
 * with no fused multiply-add: the project builds with -std=c11, for which
 * GCC does not contract a*b+c; clang contracts within an expression unless
 * told not to, hence the pragma. */
#ifndef ET_QUANT_IMPL_H
#define ET_QUANT_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../common/et.h"
#include "quant.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline int et_imin(int a, int b) { return a < b ? a : b; }
static inline int et_imax(int a, int b) { return a > b ? a : b; }

/* Round to nearest (ties to even) by the 1.5*2^23 trick; ggml-quants.c
 * nearest_int.  Valid for |fval| <= 4194303; beyond that the result is
 * garbage but defined (no undefined behaviour for inf/NaN). */
static inline int et_nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* (int)v truncating toward zero, as a C cast, for v in (-2^31, 2^31);
 * NaN and out-of-range values give INT32_MIN (what x86 cvttss2si returns)
 * instead of undefined behaviour. */
static inline int32_t et_trunc_i32(float v) {
    if (v > -2147483648.f && v < 2147483648.f) return (int32_t)v;
    return INT32_MIN;
}

/* The low byte of an int, as a conversion to int8_t does on every target
 * edgetune supports (two's complement). */
static inline int8_t et_low_i8(int32_t v) { return (int8_t)(uint8_t)((uint32_t)v & 0xffu); }

/* Lanes (GCC/clang vector extensions, 4 floats: SSE2 on x86-64, NEON on
 * arm64): the scale searches run their independent trial scales side by
 * side, one trial per lane, each lane doing exactly the scalar code's float
 * operations in the same order, so results stay bit-identical.  Without
 * vector extensions the scalar loops are used. */
#if defined(__GNUC__)
#define ET_QUANT_LANES 1
typedef float et_v4f __attribute__((vector_size(16)));
typedef int32_t et_v4i __attribute__((vector_size(16)));
/* et_nearest_int per lane (the same bit trick). */
static inline et_v4i et_nearest_int4(et_v4f f) {
    const et_v4f v = f + 12582912.f;
    return ((et_v4i)v & 0x007fffff) - 0x00400000;
}
/* et_imax(lo, et_imin(hi, l)) per lane. */
static inline et_v4i et_clamp4(et_v4i l, int lo, int hi) {
    et_v4i m = l > hi;
    l = (l & ~m) | (hi & m);
    m = l < lo;
    return (l & ~m) | (lo & m);
}
static inline et_v4f et_fabs4(et_v4f v) { return (et_v4f)((et_v4i)v & 0x7fffffff); }
#endif

/* Fit x[0..n) ~ scale * L + min with L in 0..nmax, min <= 0, minimising
 * the weighted squared (use_mad: absolute) error; tries nstep+1 trial
 * inverse scales (rmin + rdelta*is + nmax) / (max - min).  Returns the
 * scale and stores -min in *the_min.  ggml-quants.c make_qkx2_quants
 * (quant/q4_k.c; Q4_K, Q5_K and Q2_K use it). */
float et_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad);

/* ggml-quants.c make_qkx3_quants (the imatrix paths): et_make_qkx2_quants
 * with use_mad 0, except that an all-equal test max <= min (not ==). */
float et_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                          uint8_t *Laux, float rmin, float rdelta, int nstep);

/* Q4_K/Q5_K super-block pieces (quant/q4_k.c), bit-exact with ggml:
 * et_k4_pack_scales: 8 six-bit scales Ls and mins Lm into the 12 bytes s
 *   (clamp63: each first limited to 63, as the reference quantizers do);
 * et_k4_requant: L[256] = clamp(nearest((x + dmin*m_j) / (d*sc_j)), 0, nmax)
 *   against the stored scales (sub-blocks whose d*sc_j is 0 keep L);
 * et_k4_ref_block: the whole no-imatrix super-block of quantize_row_q4_K_ref
 *   / q5_K_ref: per 32 make_qkx2_quants(nmax, rmin, 0.1, nstep) with weights
 *   av_x + |x|, scales and mins to 6 bits, d, dmin, then et_k4_requant;
 * et_k4_pack_q4 / _q5: L[256] into Q4_K's qs[128] / Q5_K's qh[32], qs[128]. */
void et_k4_pack_scales(const uint8_t *Ls, const uint8_t *Lm, uint8_t *s, int clamp63);
void et_k4_requant(const float *x, const uint8_t *sc12, uint16_t d16, uint16_t dmin16, int nmax, uint8_t *L);
void et_k4_ref_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d, uint16_t *dmin, uint8_t *sc12,
                     uint8_t *L);
void et_k4_pack_q4(const uint8_t *L, uint8_t *qs);
void et_k4_pack_q5(const uint8_t *L, uint8_t *qh, uint8_t *ql);

/* The signed value of largest magnitude of x[0..n) (the first on a tie),
 * *amax its magnitude; NaN never wins.  The preamble of ggml's symmetric
 * fitters (make_qx_quants, make_q3_quants, quantize_row_iq4_nl_impl). */
static inline float et_signed_absmax(int n, const float *x, float *amax) {
    float max = 0, am = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > am) {
            am = ax;
            max = x[i];
        }
    }
    *amax = am;
    return max;
}
#define ET_GROUP_MAX_EPS 1e-15f /* ggml-quants.c GROUP_MAX_EPS: below this a group is all zero */

/* Symmetric fit x ~ scale * (L - nmax), L in 0..2*nmax-1, minimising
 * Σ w (x - scale*l)^2 with w = qw[i], or x[i]^2 when qw is NULL, over 18
 * trial inverse scales around -nmax/max.  Returns the scale.
 * ggml-quants.c make_qx_quants with rmse_type = 1 (quant/weighted.c;
 * Q6_K, and with weights Q3_K, Q4_0, Q5_0). */
float et_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* One row x [n] (n a multiple of the block) quantized with per-column
 * importance weights qw [n] (NULL: the unweighted path): ggml-quants.c
 * quantize_row_q6_K_impl / quantize_iq4_nl's impl with quant_weights. */
void et_quantize_row_q6_K_w(const float *x, void *y, int64_t n, const float *qw);
void et_quantize_row_iq4_nl_w(const float *x, void *y, int64_t n, const float *qw);

/* Scale and min (6 bits each) of sub-block j of a Q4_K/Q5_K super-block
 * from its 12 packed bytes (ggml get_scale_min_k4). */
static inline void et_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

#endif
