/* quant/q5_k.c — Q5_K: super-blocks of 256 weights = 8 sub-blocks of 32,
 * each with a 6-bit scale and a 6-bit min (packed as Q4_K), 5-bit
 * unsigned quants: w = d*sc * q - dmin*m.
 *
 * Bit-exact with ggml-quants.c quantize_row_q5_K_ref (llama-quantize
 * without an importance matrix: make_qkx2_quants with nmax 31, rmin -0.5,
 * rdelta 0.1, 15 steps, weights av_x + |x|) and dequantize_row_q5_K.  The
 * float expressions keep ggml's operation order on purpose. */
#include "quant_impl.h"

void et_quantize_row_q5_K(const float *x, void *vy, int64_t k) {
    et_block_q5_K *y = vy;
    const int64_t nb = k / ET_QK_K;
    uint8_t L[ET_QK_K];
    uint8_t Laux[32];
    float weights[32];
    float mins[ET_QK_K / 32];
    float scales[ET_QK_K / 32];

    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0;  /* scales are positive once the min is taken out */
        float max_min = 0;
        for (int j = 0; j < ET_QK_K / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = et_make_qkx2_quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                            -0.5f, 0.1f, 15, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < ET_QK_K / 32; ++j) {
            /* ggml: uint8_t ls = nearest_int(...): the low byte */
            uint8_t ls = (uint8_t)et_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)et_nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                y[i].scales[j] = ls;
                y[i].scales[j + 4] = lm;
            } else {
                y[i].scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                y[i].scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[i].d = et_fp32_to_fp16(max_scale / 63.f);
        y[i].dmin = et_fp32_to_fp16(max_min / 63.f);

        uint8_t sc, m;
        for (int j = 0; j < ET_QK_K / 32; ++j) {
            et_get_scale_min_k4(j, y[i].scales, &sc, &m);
            const float d = et_fp16_to_fp32(y[i].d) * sc;
            if (!(d != 0.0f)) continue;  /* ggml: if (!d) continue; */
            const float dm = et_fp16_to_fp32(y[i].dmin) * m;
            for (int ii = 0; ii < 32; ++ii) {
                int l = et_nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (uint8_t)et_imax(0, et_imin(31, l));
            }
        }

        /* 4 groups of 64: low nibbles = weights 0..31 of the group, high =
         * 32..63; bit 4 of weight 64g + j in qh[j] bit 2g, of 64g + 32 + j
         * in bit 2g + 1. */
        uint8_t *qh = y[i].qh;
        uint8_t *ql = y[i].qs;
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
        x += ET_QK_K;
    }
}

void et_dequantize_row_q5_K(const void *vx, float *y, int64_t k) {
    const et_block_q5_K *x = vx;
    const int64_t nb = k / ET_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        const float d = et_fp16_to_fp32(x[i].d);
        const float min = et_fp16_to_fp32(x[i].dmin);
        int is = 0;
        uint8_t sc, m;
        unsigned u1 = 1, u2 = 2;
        for (int j = 0; j < ET_QK_K; j += 64) {
            et_get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            et_get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}
