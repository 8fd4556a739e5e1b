/* quant/q6_k.c — Q6_K: super-blocks of 256 weights = 16 sub-blocks of 16,
 * int8 sub-block scales under one fp16 scale, 6-bit quants.
 *
 * Bit-exact with ggml-quants.c quantize_row_q6_K_ref, make_qx_quants
 * (rmse_type 1, no importance weights) and dequantize_row_q6_K.  The float
 * expressions keep ggml's operation order on purpose. */
#include "quant_impl.h"

#define GROUP_MAX_EPS 1e-15f /* ggml-quants.c: below this a group is all zero */

/* Symmetric fit x ~ scale * (L - nmax), L in 0..2*nmax-1, weighted by
 * x^2 (rmse_type 1), trying 18 inverse scales around -nmax/max.  Returns
 * the scale.  ggml-quants.c make_qx_quants with rmse_type = 1, qw = NULL. */
static float make_qx_quants_rmse1(int n, int nmax, const float *x, int8_t *L) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = et_nearest_int(iscale * x[i]);
        l = et_imax(-nmax, et_imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = et_nearest_int(iscale * x[i]);
            l = et_imax(-nmax, et_imin(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = et_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + et_imax(-nmax, et_imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void et_quantize_row_q6_K(const float *x, void *vy, int64_t k) {
    et_block_q6_K *y = vy;
    const int64_t nb = k / ET_QK_K;
    int8_t L[ET_QK_K];
    float scales[ET_QK_K / 16];

    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0;
        float max_abs_scale = 0;
        for (int ib = 0; ib < ET_QK_K / 16; ++ib) {
            const float scale = make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }

        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = et_fp32_to_fp16(0.f);
            x += ET_QK_K;
            continue;
        }

        float iscale = -128.f / max_scale;
        y[i].d = et_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < ET_QK_K / 16; ++ib)
            y[i].scales[ib] = et_low_i8(et_imin(127, et_nearest_int(iscale * scales[ib])));

        for (int j = 0; j < ET_QK_K / 16; ++j) {
            float d = et_fp16_to_fp32(y[i].d) * y[i].scales[j];
            if (!(d != 0.0f)) continue;  /* ggml: if (!d) continue; */
            for (int ii = 0; ii < 16; ++ii) {
                int l = et_nearest_int(x[16 * j + ii] / d);
                l = et_imax(-32, et_imin(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }

        uint8_t *ql = y[i].ql;
        uint8_t *qh = y[i].qh;
        for (int j = 0; j < ET_QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
        x += ET_QK_K;
    }
}

void et_dequantize_row_q6_K(const void *vx, float *y, int64_t k) {
    const et_block_q6_K *x = vx;
    const int64_t nb = k / ET_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < ET_QK_K; n += 128) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}
