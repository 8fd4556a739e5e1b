/* quant/q8_0.c — Q8_0: 32 weights per block, one fp16 scale, int8 quants.
 * Bit-exact with ggml-quants.c quantize_row_q8_0_ref / dequantize_row_q8_0:
 * d = max|x| / 127, q = roundf(x / d) (half away from zero). */
#include "quant_impl.h"

void et_quantize_row_q8_0(const float *x, void *vy, int64_t k) {
    et_block_q8_0 *y = vy;
    const int64_t nb = k / ET_QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * ET_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < ET_QK8_0; j++) {
            const float a = fabsf(xb[j]);
            amax = amax > a ? amax : a;  /* ggml MAX(amax, fabsf(v)) */
        }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = et_fp32_to_fp16(d);
        for (int j = 0; j < ET_QK8_0; j++)
            y[i].qs[j] = et_low_i8(et_trunc_i32(roundf(xb[j] * id)));
    }
}

void et_dequantize_row_q8_0(const void *vx, float *y, int64_t k) {
    const et_block_q8_0 *x = vx;
    const int64_t nb = k / ET_QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        for (int j = 0; j < ET_QK8_0; j++) y[i * ET_QK8_0 + j] = x[i].qs[j] * d;
    }
}
