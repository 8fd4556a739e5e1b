/* quant/weighted.c — quantization with an importance matrix: ggml's
 * quantize_row_*_impl paths, which llama-quantize --imatrix takes through
 * ggml_quantize_chunk(type, ..., imatrix) (ggml/src/ggml-quants.c,
 * quantize_q4_0 .. quantize_q6_K, quantize_iq4_nl, early 2025).
 *
 * Each row is quantized with per-column weights qw[n_per_row] (the mean
 * squared activation entering that column: llama-imatrix's Σx²/count).
 * The weight of element j in the error being minimised is
 *   qw[j] * sqrt(sigma2 + x[j]^2)
 * with sigma2 the row's (Q4_0/Q4_1/Q5_0/Q5_1), super-block's (Q2_K: mean,
 * Q3_K/Q4_K/Q5_K: twice the mean) or block's (IQ4_NL: twice the mean)
 * mean square; Q6_K uses qw alone.  The K-quants' sub-block scales and
 * mins are then fitted with the summed weights (make_qp_quants,
 * make_qx_quants on the scales).
 *
 * Bit-exact with ggml: the float expressions keep ggml's operation order
 * (no FMA; quant_impl.h); do not "simplify" them. */
#include "quant_impl.h"


static inline uint8_t low_u8(int v) { return (uint8_t)((unsigned)v & 0xffu); }

/* ---------------------------------------------------------- the fitters */

float et_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw) {
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
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
#if defined(ET_QUANT_LANES)
    /* the 18 trials is = -9..-1, 1..9 as lanes t = 0..17 (20 lanes, the
     * last two repeat is = 9 and are not read) */
    float tlx[20], tl2[20];
    {
        et_v4f iv[5], slx[5], sl2[5];
        for (int g = 0; g < 5; ++g) {
            for (int k = 0; k < 4; ++k) {
                const int t = et_imin(4 * g + k, 17), is = t < 9 ? t - 9 : t - 8;
                iv[g][k] = -(nmax + 0.1f * is) / max;
            }
            slx[g] = sl2[g] = (et_v4f){0, 0, 0, 0};
        }
        for (int i = 0; i < n; ++i) {
            const float w = qw ? qw[i] : x[i] * x[i];
            const float wx = w * x[i];
            for (int g = 0; g < 5; ++g) {
                const et_v4f lf = __builtin_convertvector(et_clamp4(et_nearest_int4(iv[g] * x[i]), -nmax, nmax - 1), et_v4f);
                slx[g] += wx * lf;
                sl2[g] += w * lf * lf;
            }
        }
        for (int t = 0; t < 20; ++t) tlx[t] = slx[t / 4][t % 4], tl2[t] = sl2[t / 4][t % 4];
    }
#endif
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
#if defined(ET_QUANT_LANES)
        sumlx = tlx[is < 0 ? is + 9 : is + 8];
        suml2 = tl2[is < 0 ? is + 9 : is + 8];
#else
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = et_nearest_int(iscale * x[i]);
            l = et_imax(-nmax, et_imin(nmax - 1, l));
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
#endif
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = et_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + et_imax(-nmax, et_imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}


/* Fit non-negative x ~ scale * L, L in 0..nmax, weighted by qw: 9 trial
 * inverse scales (0.1*is + nmax)/max, then up to 5 passes moving single L's
 * where that raises (Σ w x L)^2 / Σ w L^2.  Returns the scale.
 * ggml-quants.c make_qp_quants (the K-quants' scales and mins). */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];
    if (!(max != 0.0f)) {  /* ggml: if (!max) */
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i) L[i] = low_u8(et_nearest_int(iscale * x[i]));
    float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * L[i];
        float w = qw[i];
        best_mse += w * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            int l = et_nearest_int(iscale_is * x[i]);
            l = et_imin(nmax, l);
            float diff = x[i] - scale_is * l;
            float w = qw[i];
            mse += w * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = et_nearest_int(iscale * x[i]);
        l = et_imin(nmax, l);
        L[i] = low_u8(l);
        float w = qw[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = et_nearest_int(x[i] * sl2 / slx);
                new_l = et_imin(nmax, new_l);
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = low_u8(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return sumlx / suml2;
}

/* ---------------------------------------------------------- 32-weight blocks */

/* Σ x^2 / n over the whole row (ggml: float sum, then / n_per_row). */
static float row_sigma2(const float *x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / n;
}

static void block_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < 32; ++j) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* quantize_row_q4_0_impl / q5_0_impl: nmax 8 (Q4_0) or 16 (Q5_0). */
static void row_q4_0(const float *x, void *vy, int64_t n, const float *qw) {
    et_block_q4_0 *y = vy;
    float weight[32];
    int8_t L[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, weight);
        float d = et_make_qx_quants(32, 8, xb, L, weight);
        y[ib].d = et_fp32_to_fp16(d);
        for (int j = 0; j < 16; ++j) y[ib].qs[j] = low_u8(L[j] | (L[j + 16] << 4));
    }
}

/* Q5_0/Q5_1 quants: low nibbles in qs (weights j and j + 16 share a byte),
 * bit 4 of weight j in bit j of the little-endian qh. */
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh4) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        const uint8_t xi0 = L[j], xi1 = L[j + 16];
        qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
        qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
        qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    memcpy(qh4, &qh, sizeof qh);  /* little-endian targets only, as ggml */
}

static void row_q5_0(const float *x, void *vy, int64_t n, const float *qw) {
    et_block_q5_0 *y = vy;
    float weight[32];
    int8_t L[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, weight);
        float d = et_make_qx_quants(32, 16, xb, L, weight);
        y[ib].d = et_fp32_to_fp16(d);
        uint8_t U[32];
        for (int j = 0; j < 32; ++j) U[j] = (uint8_t)L[j];
        pack_q5(U, y[ib].qs, y[ib].qh);
    }
}

/* quantize_row_q4_1_impl / q5_1_impl: make_qkx3_quants, nmax 15 (Q4_1) or
 * 31 (Q5_1). */
static void row_x_1(const float *x, void *vy, int64_t n, const float *qw, int q5) {
    float weight[32];
    uint8_t L[32], Laux[32];
    const float sigma2 = row_sigma2(x, n);
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        block_weights(xb, qw + 32 * ib, sigma2, weight);
        float min;
        float d = et_make_qkx3_quants(32, q5 ? 31 : 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36);
        if (q5) {
            et_block_q5_1 *y = (et_block_q5_1 *)vy + ib;
            y->d = et_fp32_to_fp16(d);
            y->m = et_fp32_to_fp16(-min);
            pack_q5(L, y->qs, y->qh);
        } else {
            et_block_q4_1 *y = (et_block_q4_1 *)vy + ib;
            y->d = et_fp32_to_fp16(d);
            y->m = et_fp32_to_fp16(-min);
            for (int j = 0; j < 16; ++j) y->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
    }
}
static void row_q4_1(const float *x, void *vy, int64_t n, const float *qw) { row_x_1(x, vy, n, qw, 0); }
static void row_q5_1(const float *x, void *vy, int64_t n, const float *qw) { row_x_1(x, vy, n, qw, 1); }

/* ---------------------------------------------------------- K-quants */

/* Q2_K / Q3_K pack: 2 low bits of weight 128h + 32s + l at qs[32h + l] bits 2s. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < ET_QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* quantize_row_q2_K_impl */
static void row_q2_K(const float *x, void *vy, int64_t n, const float *quant_weights) {
    et_block_q2_K *y = vy;
    uint8_t L[ET_QK_K], Laux[16], Ls[16], Lm[16];
    float mins[16], scales[16], sw[16], weight[16];
    for (int64_t i = 0; i < n / ET_QK_K; i++) {
        memset(sw, 0, sizeof sw);
        float sumx2 = 0;
        for (int j = 0; j < ET_QK_K; ++j) sumx2 += x[j] * x[j];
        float sigma2 = sumx2 / ET_QK_K;
        for (int j = 0; j < 16; ++j) {
            const float *qw = quant_weights + ET_QK_K * i + 16 * j;
            for (int l = 0; l < 16; ++l) weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; ++l) sw[j] += weight[l];
            scales[j] = et_make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
        }
        float dm = make_qp_quants(16, 15, scales, Ls, sw);
        float mm = make_qp_quants(16, 15, mins, Lm, sw);
        y[i].d = et_fp32_to_fp16(dm);
        y[i].dmin = et_fp32_to_fp16(mm);
        dm = et_fp16_to_fp32(y[i].d);
        mm = et_fp16_to_fp32(y[i].dmin);
        for (int j = 0; j < 16; ++j) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        for (int j = 0; j < 16; ++j) {
            const float d = dm * (y[i].scales[j] & 0xF);
            if (!(d != 0.0f)) continue;
            const float m = mm * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = et_nearest_int((x[16 * j + ii] + m) / d);
                L[16 * j + ii] = (uint8_t)et_imax(0, et_imin(3, l));
            }
        }
        pack_2bit(L, y[i].qs);
        x += ET_QK_K;
    }
}

/* quantize_row_q3_K_impl */
static void row_q3_K(const float *x, void *vy, int64_t n, const float *quant_weights) {
    et_block_q3_K *y = vy;
    int8_t L[ET_QK_K], Ls[16];
    float scales[16], weight[16], sw[16];
    for (int64_t i = 0; i < n / ET_QK_K; i++) {
        float sumx2 = 0;
        for (int j = 0; j < ET_QK_K; ++j) sumx2 += x[j] * x[j];
        float sigma2 = 2 * sumx2 / ET_QK_K;
        for (int j = 0; j < 16; ++j) {
            const float *qw = quant_weights + ET_QK_K * i + 16 * j;
            for (int l = 0; l < 16; ++l) weight[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = et_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
        }
        memset(y[i].scales, 0, 12);
        float d_block = et_make_qx_quants(16, 32, scales, Ls, sw);
        for (int j = 0; j < 16; ++j) {
            int l = Ls[j];
            if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
            else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
            l >>= 4;
            y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
        }
        y[i].d = et_fp32_to_fp16(d_block);
        for (int j = 0; j < 16; ++j) {
            int sc = j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4;
            sc = (sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            float d = et_fp16_to_fp32(y[i].d) * sc;
            if (!(d != 0.0f)) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = et_nearest_int(x[16 * j + ii] / d);
                l = et_imax(-4, et_imin(3, l));
                L[16 * j + ii] = (int8_t)(l + 4);
            }
        }
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
        pack_2bit((const uint8_t *)L, y[i].qs);
        x += ET_QK_K;
    }
}


/* Shared head of quantize_row_q4_K_impl / q5_K_impl: per 32-weight
 * sub-block, make_qkx3_quants with nmax, then the scales and mins by
 * make_qp_quants; leaves d, dmin, scales set and L[256] requantized
 * against the stored scales (0..nmax). */
static void k4_scales(const float *x, const float *qwb, int nmax, uint16_t *d, uint16_t *dmin, uint8_t *sc12,
                      uint8_t *L, int clamp63) {
    uint8_t Laux[32], Ls[8], Lm[8];
    float weights[32], sw[8], mins[8], scales[8];
    float sum_x2 = 0;
    for (int l = 0; l < ET_QK_K; ++l) sum_x2 += x[l] * x[l];
    float sigma2 = 2 * sum_x2 / ET_QK_K;
    for (int j = 0; j < 8; ++j) {
        const float *qw = qwb + 32 * j;
        for (int l = 0; l < 32; ++l) weights[l] = qw[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = et_make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
    }
    float d_block = make_qp_quants(8, 63, scales, Ls, sw);
    float m_block = make_qp_quants(8, 63, mins, Lm, sw);
    et_k4_pack_scales(Ls, Lm, sc12, clamp63);
    *d = et_fp32_to_fp16(d_block);
    *dmin = et_fp32_to_fp16(m_block);
    et_k4_requant(x, sc12, *d, *dmin, nmax, L);
}

static void row_q4_K(const float *x, void *vy, int64_t n, const float *quant_weights) {
    et_block_q4_K *y = vy;
    uint8_t L[ET_QK_K];
    for (int64_t i = 0; i < n / ET_QK_K; i++) {
        k4_scales(x, quant_weights + ET_QK_K * i, 15, &y[i].d, &y[i].dmin, y[i].scales, L, 0);
        et_k4_pack_q4(L, y[i].qs);
        x += ET_QK_K;
    }
}

static void row_q5_K(const float *x, void *vy, int64_t n, const float *quant_weights) {
    et_block_q5_K *y = vy;
    uint8_t L[ET_QK_K];
    for (int64_t i = 0; i < n / ET_QK_K; i++) {
        k4_scales(x, quant_weights + ET_QK_K * i, 31, &y[i].d, &y[i].dmin, y[i].scales, L, 1);
        et_k4_pack_q5(L, y[i].qh, y[i].qs);
        x += ET_QK_K;
    }
}

/* ---------------------------------------------------------- dispatch */

int et_quantize_rows_imatrix(uint32_t type, const float *x, void *y, int64_t nrows, int64_t n_per_row,
                             const float *qw) {
    const int64_t be = et_quant_block_elems(type);
    if (be <= 0 || nrows < 0 || n_per_row <= 0 || n_per_row % be) return ET_EINPUT;
    if (!qw) return et_quantize_row(type, x, y, nrows * n_per_row);
    void (*row)(const float *, void *, int64_t, const float *) = NULL;
    switch (type) {
    case GGML_TYPE_Q4_0: row = row_q4_0; break;
    case GGML_TYPE_Q5_0: row = row_q5_0; break;
    case GGML_TYPE_Q4_1: row = row_q4_1; break;
    case GGML_TYPE_Q5_1: row = row_q5_1; break;
    case GGML_TYPE_Q2_K: row = row_q2_K; break;
    case GGML_TYPE_Q3_K: row = row_q3_K; break;
    case GGML_TYPE_Q4_K: row = row_q4_K; break;
    case GGML_TYPE_Q5_K: row = row_q5_K; break;
    case GGML_TYPE_Q6_K: row = et_quantize_row_q6_K_w; break;
    case GGML_TYPE_IQ4_NL: row = et_quantize_row_iq4_nl_w; break;
    default:  /* F32/F16/BF16/Q8_0: ggml ignores the weights */
        return et_quantize_row(type, x, y, nrows * n_per_row);
    }
    const uint64_t rb = et_quant_row_bytes(type, n_per_row);
    for (int64_t r = 0; r < nrows; r++) row(x + r * n_per_row, (uint8_t *)y + (uint64_t)r * rb, n_per_row, qw);
    return 0;
}
