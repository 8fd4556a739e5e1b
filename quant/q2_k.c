/* quant/q2_k.c — Q2_K: super-blocks of 256 weights = 16 sub-blocks of 16,
 * each with a 4-bit scale (low nibble of scales[j]) and a 4-bit min (high
 * nibble), 2-bit unsigned quants: w = d*sc * q - dmin*m.
 *
 * Bit-exact with ggml-quants.c quantize_row_q2_K_ref (llama-quantize
 * without an importance matrix: make_qkx2_quants with nmax 3, weights |x|,
 * rmin -0.5, rdelta 0.1, 15 steps, absolute error) and dequantize_row_q2_K.
 * The float expressions keep ggml's operation order on purpose. */
#include "quant_impl.h"

void et_quantize_row_q2_K(const float *x, void *vy, int64_t k) {
    et_block_q2_K *y = vy;
    const int64_t nb = k / ET_QK_K;
    uint8_t L[ET_QK_K];
    uint8_t Laux[16];
    float weights[16];
    float mins[ET_QK_K / 16];
    float scales[ET_QK_K / 16];
    const float q4scale = 15.f;

    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0;  /* scales are positive once the min is taken out */
        float max_min = 0;
        for (int j = 0; j < ET_QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = et_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                            -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }

        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            /* ggml stores the int into uint8_t: the low byte */
            for (int j = 0; j < ET_QK_K / 16; ++j)
                y[i].scales[j] = (uint8_t)et_nearest_int(iscale * scales[j]);
            y[i].d = et_fp32_to_fp16(max_scale / q4scale);
        } else {
            for (int j = 0; j < ET_QK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = et_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < ET_QK_K / 16; ++j) {
                int l = et_nearest_int(iscale * mins[j]);
                y[i].scales[j] |= (uint8_t)((unsigned)l << 4);
            }
            y[i].dmin = et_fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = et_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < ET_QK_K / 16; ++j) {
            const float d = et_fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!(d != 0.0f)) continue;  /* ggml: if (!d) continue; */
            const float dm = et_fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = et_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)et_imax(0, et_imin(3, l));
            }
        }

        /* halves of 128: qs[32h + l] holds weights 128h + l + 32s at bits 2s */
        for (int j = 0; j < ET_QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                               (L[j + l + 96] << 6));
        x += ET_QK_K;
    }
}

void et_dequantize_row_q2_K(const void *vx, float *y, int64_t k) {
    const et_block_q2_K *x = vx;
    const int64_t nb = k / ET_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        const float min = et_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < ET_QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                uint8_t sc = x[i].scales[is++];
                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l] >> shift) & 3) - ml;
                sc = x[i].scales[is++];
                dl = d * (sc & 0xF);
                ml = min * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}
