/* quant/q5_0.c — Q5_0: 32 weights per block, one fp16 scale, 5-bit quants
 * (the fallback for Q4_K rows that are a multiple of 32 but not of 256).
 * Bit-exact with ggml-quants.c quantize_row_q5_0_ref / dequantize_row_q5_0:
 * d = (signed value of largest magnitude) / -16; q = min(31, (int)(x/d + 16.5)).
 * Low 4 bits as Q4_0; bit 4 of weight j is bit j of the little-endian u32 qh. */
#include "quant_impl.h"

void et_quantize_row_q5_0(const float *x, void *vy, int64_t k) {
    et_block_q5_0 *y = vy;
    const int64_t nb = k / ET_QK5_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * ET_QK5_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < ET_QK5_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = et_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < ET_QK5_0 / 2; j++) {
            const float x0 = xb[j] * id;
            const float x1 = xb[ET_QK5_0 / 2 + j] * id;
            const uint8_t q0 = (uint8_t)et_imin(31, et_low_i8(et_trunc_i32(x0 + 16.5f)));
            const uint8_t q1 = (uint8_t)et_imin(31, et_low_i8(et_trunc_i32(x1 + 16.5f)));
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((uint32_t)(q0 & 0x10u) >> 4) << j;
            qh |= ((uint32_t)(q1 & 0x10u) >> 4) << (j + ET_QK5_0 / 2);
        }
        for (int b = 0; b < 4; b++) y[i].qh[b] = (uint8_t)(qh >> (8 * b));
    }
}

void et_dequantize_row_q5_0(const void *vx, float *y, int64_t k) {
    const et_block_q5_0 *x = vx;
    const int64_t nb = k / ET_QK5_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        const uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                            (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < ET_QK5_0 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1u) << 4;
            const int h1 = (int)((qh >> (j + ET_QK5_0 / 2)) & 1u) << 4;
            const int x0 = ((x[i].qs[j] & 0x0F) | h0) - 16;
            const int x1 = ((x[i].qs[j] >> 4) | h1) - 16;
            y[i * ET_QK5_0 + j] = x0 * d;
            y[i * ET_QK5_0 + j + ET_QK5_0 / 2] = x1 * d;
        }
    }
}
