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
    uint8_t L[ET_QK_K];
    for (int64_t i = 0; i < k / ET_QK_K; i++, x += ET_QK_K) {
        et_k4_ref_block(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        et_k4_pack_q5(L, y[i].qh, y[i].qs);
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
