/* quant/q4_k.c — Q4_K: super-blocks of 256 weights = 8 sub-blocks of 32,
 * each sub-block with its own scale and min (6 bits each), 4-bit quants.
 *
 * Bit-exact with ggml-quants.c quantize_row_q4_K_ref (what llama-quantize
 * uses without an importance matrix), make_qkx2_quants, get_scale_min_k4
 * and dequantize_row_q4_K.  Every float expression below keeps ggml's
 * operation order; do not "simplify" it. */
#include "quant_impl.h"

#if defined(ET_QUANT_LANES)
/* The trial loop of make_qkx2_quants, four trials at a time as the lanes of
 * a vector (n <= 32): per lane the rounding at iscale = (rmin + rdelta*is +
 * nmax) / (max - min), the weighted sums, the least-squares scale and min
 * and the error, each in ggml's float operations and order; the trials are
 * then compared in ggml's order.  ggml's trial is uses the min of the best
 * trial before it, so when a trial wins with a different min the lanes
 * after it are recomputed from the next trial on: the result is
 * bit-identical to the scalar loop. */
/* The body for vectors VF (floats) / VI (int32) of W lanes. */
#define QKX_LANES_BODY(VF, VI, W)                                                                            \
    VF lf[32];                                                                                               \
    int start = 0;                                                                                           \
    while (start <= nstep) {                                                                                 \
        VF iv, sl = {0}, sl2 = {0}, sxl = {0}, err = {0}, vs, vm;                                            \
        for (int k = 0; k < W; ++k) iv[k] = (rmin + rdelta * et_imin(start + k, nstep) + nmax) / (max - min); \
        for (int i = 0; i < n; ++i) {                                                                        \
            const float w = weights[i], xm = x[i] - min;                                                     \
            const VF f = iv * xm + 12582912.f; /* et_nearest_int, then clamp to 0..nmax */                   \
            VI li = ((VI)f & 0x007fffff) - 0x00400000;                                                       \
            VI m = li > nmax;                                                                                \
            li = (li & ~m) | (nmax & m);                                                                     \
            li &= ~(li < 0);                                                                                 \
            const VF l = __builtin_convertvector(li, VF);                                                    \
            lf[i] = l;                                                                                       \
            const VF wl = w * l;                                                                             \
            sl += wl;                                                                                        \
            sl2 += wl * l;                                                                                   \
            sxl += wl * x[i];                                                                                \
        }                                                                                                    \
        float tscale[W], tmin[W];                                                                            \
        int ok[W];                                                                                           \
        for (int k = 0; k < W; ++k) {                                                                        \
            const float sum_l = sl[k], sum_l2 = sl2[k], sum_xl = sxl[k];                                     \
            float D = sum_w * sum_l2 - sum_l * sum_l;                                                        \
            float this_scale = 0, this_min = 0;                                                              \
            ok[k] = D > 0;                                                                                   \
            if (ok[k]) {                                                                                     \
                this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;                                           \
                this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;                                            \
                if (this_min > 0) {                                                                          \
                    this_min = 0;                                                                            \
                    this_scale = sum_xl / sum_l2;                                                            \
                }                                                                                            \
            }                                                                                                \
            vs[k] = tscale[k] = this_scale, vm[k] = tmin[k] = this_min;                                      \
        }                                                                                                    \
        for (int i = 0; i < n; ++i) {                                                                        \
            VF diff = vs * lf[i] + vm - x[i];                                                                \
            diff = use_mad ? (VF)((VI)diff & 0x7fffffff) : diff * diff;                                      \
            err += weights[i] * diff;                                                                        \
        }                                                                                                    \
        int next = start + W;                                                                                \
        for (int k = 0; k < W && start + k <= nstep; ++k) {                                                  \
            if (ok[k] && err[k] < best_error) {                                                              \
                for (int i = 0; i < n; ++i) L[i] = (uint8_t)lf[i][k];                                        \
                best_error = err[k];                                                                         \
                scale = tscale[k];                                                                           \
                const int same = tmin[k] == min; /* the later lanes used this min: still valid */           \
                min = tmin[k];                                                                               \
                if (!same) {                                                                                 \
                    next = start + k + 1;                                                                    \
                    break;                                                                                   \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
        start = next;                                                                                        \
    }                                                                                                        \
    *the_min = -min;                                                                                         \
    return scale;

static float qkx2_lanes(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                        float rmin, float rdelta, int nstep, int use_mad, float min, float max, float sum_w,
                        float sum_x, float scale, float best_error) {
    QKX_LANES_BODY(et_v4f, et_v4i, 4)
}

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define QKX_V16 1
/* The same with 16 lanes in an AVX-512 register (picked at run time):
 * fewer passes over the 21 (Q4_K) or 16 (Q2_K, Q5_K) trials. */
__attribute__((target("arch=x86-64-v4"))) static float qkx2_lanes16(int n, int nmax, const float *x,
                                                                      const float *weights, uint8_t *L,
                                                                      float *the_min, float rmin, float rdelta,
                                                                      int nstep, int use_mad, float min, float max,
                                                                      float sum_w, float sum_x, float scale,
                                                                      float best_error) {
    typedef float v16f __attribute__((vector_size(64)));
    typedef int32_t v16i __attribute__((vector_size(64)));
    QKX_LANES_BODY(v16f, v16i, 16)
}
#endif
#endif

/* make_qkx2_quants and make_qkx3_quants (quant_impl.h): one fitter, as
 * the two ggml functions differ only in the all-equal test (qkx2: max ==
 * min; qkx3: max <= min, which differs for NaN only) and qkx3 never uses
 * the absolute error.  Q4_K, Q5_K, Q2_K; with an imatrix Q4_1, Q5_1, Q4_K,
 * Q5_K (quant/weighted.c). */
static float make_qkx(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                      uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad, int degenerate_le) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (degenerate_le ? max <= min : max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = et_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)et_imax(0, et_imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
#if defined(ET_QUANT_LANES)
#if defined(QKX_V16)
    if (n <= 32 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return qkx2_lanes16(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep, use_mad, min, max, sum_w, sum_x,
                            scale, best_error);
#endif
    if (n <= 32) return qkx2_lanes(n, nmax, x, weights, L, the_min, rmin, rdelta, nstep, use_mad,
                                                 min, max, sum_w, sum_x, scale, best_error);
#else
    (void)Laux;
#endif
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = et_nearest_int(iscale * (x[i] - min));
            l = et_imax(0, et_imin(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

float et_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                          uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    return make_qkx(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad, 0);
}

float et_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                          uint8_t *Laux, float rmin, float rdelta, int nstep) {
    return make_qkx(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, 0, 1);
}

/* ---- the Q4_K/Q5_K super-block pieces (quant_impl.h), shared by the
 * reference quantizers (q4_k.c, q5_k.c) and the imatrix ones (weighted.c) */

void et_k4_pack_scales(const uint8_t *Ls, const uint8_t *Lm, uint8_t *s, int clamp63) {
    memset(s, 0, 12); /* ggml sets bytes 0..7 at j < 4 before the |= of j >= 4: the same */
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) {
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
        }
        if (j < 4) {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
}

void et_k4_requant(const float *x, const uint8_t *sc12, uint16_t d16, uint16_t dmin16, int nmax, uint8_t *L) {
    uint8_t sc, m;
    for (int j = 0; j < ET_QK_K / 32; ++j) {
        et_get_scale_min_k4(j, sc12, &sc, &m);
        const float d = et_fp16_to_fp32(d16) * sc;
        if (!(d != 0.0f)) continue;  /* ggml: if (!d) continue; */
        const float dm = et_fp16_to_fp32(dmin16) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = et_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)et_imax(0, et_imin(nmax, l));
        }
    }
}

void et_k4_ref_block(const float *x, int nmax, float rmin, int nstep, uint16_t *d, uint16_t *dmin, uint8_t *sc12,
                     uint8_t *L) {
    uint8_t Laux[32], Ls[8], Lm[8];
    float weights[32], mins[ET_QK_K / 32], scales[ET_QK_K / 32];
    float max_scale = 0;  /* scales are positive once the min is taken out */
    float max_min = 0;
    for (int j = 0; j < ET_QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = et_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                        nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < ET_QK_K / 32; ++j) { /* ggml: uint8_t ls = nearest_int(...): the low byte */
        Ls[j] = (uint8_t)et_nearest_int(inv_scale * scales[j]);
        Lm[j] = (uint8_t)et_nearest_int(inv_min * mins[j]);
    }
    et_k4_pack_scales(Ls, Lm, sc12, 1);
    *d = et_fp32_to_fp16(max_scale / 63.f);
    *dmin = et_fp32_to_fp16(max_min / 63.f);
    et_k4_requant(x, sc12, *d, *dmin, nmax, L);
}

void et_k4_pack_q4(const uint8_t *L, uint8_t *q) {
    for (int j = 0; j < ET_QK_K; j += 64) {
        for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
    }
}

void et_k4_pack_q5(const uint8_t *L, uint8_t *qh, uint8_t *ql) {
    memset(qh, 0, ET_QK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < ET_QK_K; n += 64) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            int l2 = L[n + j + 32];
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
        ql += 32;
    }
}

/* Q4_K without an imatrix: make_qkx2_quants with nmax 15, rmin -1, rdelta
 * 0.1, 20 steps, weights av_x + |x| (quantize_row_q4_K_ref). */
void et_quantize_row_q4_K(const float *x, void *vy, int64_t k) {
    et_block_q4_K *y = vy;
    uint8_t L[ET_QK_K];
    for (int64_t i = 0; i < k / ET_QK_K; i++, x += ET_QK_K) {
        et_k4_ref_block(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        et_k4_pack_q4(L, y[i].qs);
    }
}

void et_dequantize_row_q4_K(const void *vx, float *y, int64_t k) {
    const et_block_q4_K *x = vx;
    const int64_t nb = k / ET_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        const float d = et_fp16_to_fp32(x[i].d);
        const float min = et_fp16_to_fp32(x[i].dmin);
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < ET_QK_K; j += 64) {
            et_get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            et_get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}
