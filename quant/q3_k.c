/* quant/q3_k.c — Q3_K: super-blocks of 256 weights = 16 sub-blocks of 16,
 * signed 6-bit sub-block scales (stored +32) under one fp16 scale, 3-bit
 * quants q in 0..7 (2 low bits in qs, the high bit in hmask):
 * w = d * (sc - 32) * (q - 4).
 *
 * Bit-exact with ggml-quants.c quantize_row_q3_K_ref (llama-quantize
 * without an importance matrix: make_q3_quants with nmax 4 and the rmse
 * refinement) and dequantize_row_q3_K.  The float expressions keep ggml's
 * operation order on purpose. */
#include "quant_impl.h"


/* Symmetric fit x ~ scale * l, l in -nmax..nmax-1, then up to 5 passes
 * moving single l's where that raises (sum w x l)^2 / sum w l^2 with
 * w = x^2.  Stores L = l + nmax and returns the scale.  ggml-quants.c
 * make_q3_quants with do_rmse = true. */
static float make_q3_quants_rmse(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    const float max = et_signed_absmax(n, x, &amax);
    if (amax < ET_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = et_nearest_int(iscale * x[i]);
        l = et_imax(-nmax, et_imin(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = et_nearest_int(x[i] * sl2 / slx);
                new_l = et_imax(-nmax, et_imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* The 6-bit stored scale (0..63) of sub-block j: low 4 bits in scales[j]
 * (j < 8) or the high nibble of scales[j-8]; bits 4-5 in scales[8 + j%4]
 * at bit 2*(j/4). */
static inline int q3_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

void et_quantize_row_q3_K(const float *x, void *vy, int64_t k) {
    et_block_q3_K *y = vy;
    const int64_t nb = k / ET_QK_K;
    int8_t L[ET_QK_K];
    float scales[ET_QK_K / 16];

    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0;
        float amax = 0;
        for (int j = 0; j < ET_QK_K / 16; ++j) {
            scales[j] = make_q3_quants_rmse(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }

        memset(y[i].scales, 0, 12);
        if (max_scale != 0.0f) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < ET_QK_K / 16; ++j) {
                /* ggml: int8_t l = nearest_int(...): the low byte */
                int l = et_low_i8(et_nearest_int(iscale * scales[j]));
                l = et_imax(-32, et_imin(31, l)) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = et_fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = et_fp32_to_fp16(0.f);
        }

        for (int j = 0; j < ET_QK_K / 16; ++j) {
            const int sc = q3_scale(y[i].scales, j) - 32;
            float d = et_fp16_to_fp32(y[i].d) * sc;
            if (!(d != 0.0f)) continue;  /* ggml: if (!d) continue; */
            for (int ii = 0; ii < 16; ++ii) {
                int l = et_nearest_int(x[16 * j + ii] / d);
                l = et_imax(-4, et_imin(3, l));
                L[16 * j + ii] = (int8_t)(l + 4);
            }
        }

        /* high bit of weight j: hmask[j % 32] bit j / 32 */
        memset(y[i].hmask, 0, ET_QK_K / 8);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < ET_QK_K; ++j) {
            if (L[j] > 3) {
                y[i].hmask[m] |= hm;
                L[j] = (int8_t)(L[j] - 4);
            }
            if (++m == ET_QK_K / 8) {
                m = 0;
                hm = (uint8_t)(hm << 1);
            }
        }
        /* 2 low bits: halves of 128, qs[32h + l] holds weights 128h + l + 32s at bits 2s */
        for (int j = 0; j < ET_QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                               (L[j + l + 96] << 6));
        x += ET_QK_K;
    }
}

void et_dequantize_row_q3_K(const void *vx, float *y, int64_t k) {
    const et_block_q3_K *x = vx;
    const int64_t nb = k / ET_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = et_fp16_to_fp32(x[i].d);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        unsigned m = 1;
        int is = 0;
        for (int n = 0; n < ET_QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; ++j) {
                float dl = d_all * (q3_scale(x[i].scales, is++) - 32);
                for (int l = 0; l < 16; ++l) *y++ = dl * (((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                dl = d_all * (q3_scale(x[i].scales, is++) - 32);
                for (int l = 0; l < 16; ++l) *y++ = dl * (((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}
