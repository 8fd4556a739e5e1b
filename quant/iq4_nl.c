/* quant/iq4_nl.c — IQ4_NL: 32 weights per block, an fp16 scale d and 4-bit
 * indices into a fixed non-linear table: w = d * kvalues[q].  llama.cpp's
 * llama-quantize falls back to it for Q2_K/Q3_K tensors whose rows are not
 * a multiple of 256 (SmolLM2's 576, stories260K's 64).
 *
 * Bit-exact with ggml-quants.c quantize_iq4_nl (what llama-quantize calls
 * without an importance matrix: quantize_row_iq4_nl_impl with a super-block
 * of one block of 32, weights x^2, ntry 7; note this is not
 * quantize_row_iq4_nl_ref, which uses ntry -1) and dequantize_row_iq4_nl.
 * The float expressions keep ggml's operation order on purpose. */
#include "quant_impl.h"

#define GROUP_MAX_EPS 1e-15f /* ggml-quants.c: below this a group is all zero */

/* ggml-common.h kvalues_iq4nl */
const int8_t et_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Index of the table value nearest to x (the lower one on a tie);
 * ggml-quants.c best_index_int8.  NaN gives a defined index. */
static inline int best_index(const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav;
        else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

void et_quantize_row_iq4_nl(const float *x, void *vy, int64_t k) { et_quantize_row_iq4_nl_w(x, vy, k, NULL); }

/* With qw (one weight per element of the row): the error weights are
 * qw[j] * sqrt(sigma2 + x[j]^2), sigma2 = 2 * the block's mean square
 * (quantize_row_iq4_nl_impl with quant_weights, super-block = block = 32). */
void et_quantize_row_iq4_nl_w(const float *x, void *vy, int64_t k, const float *qw) {
    et_block_iq4_nl *y = vy;
    const int8_t *values = et_kvalues_iq4nl;
    const int64_t nb = k / ET_QK4_NL;
    const int ntry = 7;
    uint8_t L[ET_QK4_NL];
    float weight[ET_QK4_NL];
    for (int64_t i = 0; i < nb; i++, x += ET_QK4_NL) {
        const float *xb = x;
        memset(y[i].qs, 0, sizeof y[i].qs);
        float scale;
        if (qw) {
            float sigma2 = 0;
            for (int j = 0; j < ET_QK4_NL; ++j) sigma2 += xb[j] * xb[j];
            sigma2 *= 2.f / ET_QK4_NL;
            const float *qb = qw + i * ET_QK4_NL;
            for (int j = 0; j < ET_QK4_NL; ++j) weight[j] = qb[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < ET_QK4_NL; ++j) weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < ET_QK4_NL; ++j) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            scale = 0;
        } else {
            float d = -max / values[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < ET_QK4_NL; ++j) {
                float al = id * xb[j];
                int l = best_index(values, al);
                L[j] = (uint8_t)l;
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            d = sumqx / sumq2;
            float best = d * sumqx;
            for (int itry = -ntry; itry <= ntry; ++itry) {
                id = (itry + values[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < ET_QK4_NL; ++j) {
                    float al = id * xb[j];
                    int l = best_index(values, al);
                    float q = values[l];
                    float w = weight[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scale = d;
        }
        /* one block per "super-block": d is the block's scale as fp16, and
         * the indices are recomputed against the float scale */
        y[i].d = et_fp32_to_fp16(scale);
        float id = scale != 0.0f ? 1 / scale : 0;
        for (int j = 0; j < ET_QK4_NL; ++j) L[j] = (uint8_t)best_index(values, id * x[j]);
        for (int j = 0; j < 16; ++j) y[i].qs[j] = (uint8_t)(L[j] | (L[16 + j] << 4));
    }
}

void et_dequantize_row_iq4_nl(const void *vx, float *y, int64_t k) {
    const et_block_iq4_nl *x = vx;
    const int64_t nb = k / ET_QK4_NL;
    for (int64_t i = 0; i < nb; i++) {
        const float d = et_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * et_kvalues_iq4nl[x[i].qs[j] & 0xf];
            y[j + 16] = d * et_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
        y += ET_QK4_NL;
    }
}
