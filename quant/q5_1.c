/* quant/q5_1.c — Q5_1: 32 weights per block, an fp16 scale d and an fp16
 * min m, 5-bit unsigned quants: w = d * q + m (low 4 bits as Q4_1, bit 4
 * of weight j is bit j of the little-endian u32 qh, as Q5_0).
 * Bit-exact with ggml-quants.c quantize_row_q5_1_ref / dequantize_row_q5_1:
 * d = (max - min) / 31, id = 1/d (0 when d = 0),
 * q = (uint8)((x - min) * id + 0.5) — no clamp to 31 in ggml; for finite
 * input the value stays below 31.5, so q <= 31.  Dequantization: a product
 * then a sum (two roundings), as quant/q4_1.c. */
#include <float.h>

#include "quant_impl.h"

void et_quantize_row_q5_1(const float *x, void *vy, int64_t k) {
    et_block_q5_1 *y = vy;
    const int64_t nb = k / ET_QK5_1;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * ET_QK5_1;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < ET_QK5_1; j++) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = et_fp32_to_fp16(d);
        y[i].m = et_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < ET_QK5_1 / 2; j++) {
            const float x0 = (xb[j] - min) * id;
            const float x1 = (xb[ET_QK5_1 / 2 + j] - min) * id;
            /* ggml: const uint8_t xi = (uint8_t)(x + 0.5f); the low byte of the truncation */
            const uint8_t q0 = (uint8_t)((uint32_t)et_trunc_i32(x0 + 0.5f) & 0xffu);
            const uint8_t q1 = (uint8_t)((uint32_t)et_trunc_i32(x1 + 0.5f) & 0xffu);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((uint32_t)(q0 & 0x10u) >> 4) << j;
            qh |= ((uint32_t)(q1 & 0x10u) >> 4) << (j + ET_QK5_1 / 2);
        }
        for (int b = 0; b < 4; b++) y[i].qh[b] = (uint8_t)(qh >> (8 * b));
    }
}

void et_dequantize_row_q5_1(const void *vx, float *y, int64_t k) {
    const et_block_q5_1 *x = vx;
    const int64_t nb = k / ET_QK5_1;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        const float m = et_fp16_to_fp32(x[i].m);
        const uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                            (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < ET_QK5_1 / 2; j++) {
            const int q0 = (x[i].qs[j] & 0x0F) | (int)((qh >> j) & 1u) << 4;
            const int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + ET_QK5_1 / 2)) & 1u) << 4;
            const float p0 = (float)q0 * d;
            const float p1 = (float)q1 * d;
            y[i * ET_QK5_1 + j] = p0 + m;
            y[i * ET_QK5_1 + j + ET_QK5_1 / 2] = p1 + m;
        }
    }
}
