/* quant/q4_1.c — Q4_1: 32 weights per block, an fp16 scale d and an fp16
 * min m, 4-bit unsigned quants: w = d * q + m.
 * Bit-exact with ggml-quants.c quantize_row_q4_1_ref / dequantize_row_q4_1:
 * min and max of the block, d = (max - min) / 15, id = 1/d (0 when d = 0),
 * q = min(15, (int8)((x - min) * id + 0.5)) (truncation: x - min >= 0, so
 * this rounds half up); m is stored as fp16(min), so a block's smallest
 * weight comes back as fp16(min), not min.  Nibble order as Q4_0.
 * Dequantization is a product then a sum, two roundings (no FMA), as
 * ggml-base is built for x86-64 (no -march, so no contraction). */
#include <float.h>

#include "quant_impl.h"

void et_quantize_row_q4_1(const float *x, void *vy, int64_t k) {
    et_block_q4_1 *y = vy;
    const int64_t nb = k / ET_QK4_1;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * ET_QK4_1;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < ET_QK4_1; j++) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = et_fp32_to_fp16(d);
        y[i].m = et_fp32_to_fp16(min);
        for (int j = 0; j < ET_QK4_1 / 2; j++) {
            const float x0 = (xb[j] - min) * id;
            const float x1 = (xb[ET_QK4_1 / 2 + j] - min) * id;
            /* ggml: uint8_t xi = MIN(15, (int8_t)(x + 0.5f)); qs = xi0 | xi1 << 4 (no mask) */
            const uint8_t q0 = (uint8_t)et_imin(15, et_low_i8(et_trunc_i32(x0 + 0.5f)));
            const uint8_t q1 = (uint8_t)et_imin(15, et_low_i8(et_trunc_i32(x1 + 0.5f)));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void et_dequantize_row_q4_1(const void *vx, float *y, int64_t k) {
    const et_block_q4_1 *x = vx;
    const int64_t nb = k / ET_QK4_1;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        const float m = et_fp16_to_fp32(x[i].m);
        for (int j = 0; j < ET_QK4_1 / 2; j++) {
            const float p0 = (float)(x[i].qs[j] & 0x0F) * d;
            const float p1 = (float)(x[i].qs[j] >> 4) * d;
            y[i * ET_QK4_1 + j] = p0 + m;
            y[i * ET_QK4_1 + j + ET_QK4_1 / 2] = p1 + m;
        }
    }
}
