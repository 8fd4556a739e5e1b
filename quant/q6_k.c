/* quant/q6_k.c — Q6_K: super-blocks of 256 weights = 16 sub-blocks of 16,
 * int8 sub-block scales under one fp16 scale, 6-bit quants.
 *
 * Bit-exact with ggml-quants.c quantize_row_q6_K_ref, make_qx_quants
 * (rmse_type 1; quant/weighted.c), quantize_row_q6_K_impl with an importance
 * matrix, and dequantize_row_q6_K.  The float
 * expressions keep ggml's operation order on purpose. */
#include "quant_impl.h"


void et_quantize_row_q6_K(const float *x, void *vy, int64_t k) { et_quantize_row_q6_K_w(x, vy, k, NULL); }

/* quantize_row_q6_K_impl: with qw, the sub-block fits are weighted by qw
 * alone (ggml's sqrt(sigma2 + x^2) factor is commented out there). */
void et_quantize_row_q6_K_w(const float *x, void *vy, int64_t k, const float *qw) {
    et_block_q6_K *y = vy;
    const int64_t nb = k / ET_QK_K;
    int8_t L[ET_QK_K];
    float scales[ET_QK_K / 16];

    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0;
        float max_abs_scale = 0;
        for (int ib = 0; ib < ET_QK_K / 16; ++ib) {
            const float scale = et_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + ET_QK_K * i + 16 * ib : NULL);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }

        if (max_abs_scale < ET_GROUP_MAX_EPS) {
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
