/* quant/q4_0.c — Q4_0: 32 weights per block, one fp16 scale, 4-bit quants.
 * Bit-exact with ggml-quants.c quantize_row_q4_0_ref / dequantize_row_q4_0:
 * d = (the value of largest magnitude, with its sign) / -8, so that value
 * maps to -8; q = min(15, (int)(x/d + 8.5)) truncating; stored q - 8 is in
 * -8..7.  Weight j < 16 is the low nibble of qs[j], weight j + 16 the high. */
#include "quant_impl.h"

void et_quantize_row_q4_0(const float *x, void *vy, int64_t k) {
    et_block_q4_0 *y = vy;
    const int64_t nb = k / ET_QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * ET_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < ET_QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = et_fp32_to_fp16(d);
        for (int j = 0; j < ET_QK4_0 / 2; j++) {
            const float x0 = xb[j] * id;
            const float x1 = xb[ET_QK4_0 / 2 + j] * id;
            const int q0 = et_imin(15, et_low_i8(et_trunc_i32(x0 + 8.5f)));
            const int q1 = et_imin(15, et_low_i8(et_trunc_i32(x1 + 8.5f)));
            y[i].qs[j] = (uint8_t)((uint8_t)q0 | (uint8_t)((unsigned)q1 << 4));
        }
    }
}

void et_dequantize_row_q4_0(const void *vx, float *y, int64_t k) {
    const et_block_q4_0 *x = vx;
    const int64_t nb = k / ET_QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        for (int j = 0; j < ET_QK4_0 / 2; j++) {
            const int x0 = (x[i].qs[j] & 0x0F) - 8;
            const int x1 = (x[i].qs[j] >> 4) - 8;
            y[i * ET_QK4_0 + j] = x0 * d;
            y[i * ET_QK4_0 + j + ET_QK4_0 / 2] = x1 * d;
        }
    }
}
