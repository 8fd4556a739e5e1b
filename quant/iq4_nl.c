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


/* ggml-common.h kvalues_iq4nl */
const int8_t et_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* bracket[f + 127], f = -127..112: the largest k <= 14 with
 * kvalues[k] <= f (the table values are integers, so for x in
 * (-127, 113) the k with kvalues[k] <= x < kvalues[k + 1] is
 * bracket[floor(x) + 127]).  Generated from et_kvalues_iq4nl. */
static const uint8_t bracket[240] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11,
    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
};

/* Index of the table value nearest to x (the lower one on a tie);
 * ggml-quants.c best_index_int8, which finds the bracket
 * kvalues[ml] <= x < kvalues[ml + 1] by bisection: here the bracket comes
 * from a table on floor(x), and the final comparison is ggml's, in the
 * same float operations, so the index is the same for every x, NaN
 * included (15).  About 6x faster than the bisection, whose branches do
 * not predict; this is most of the cost of fake-quantizing to IQ4_NL. */
static inline int bracket_of(float x) { /* the k of kvalues[k] <= x < kvalues[k+1], clamped to 0..14 */
    if (!(x > -127.f)) return 0;
    if (x >= 113.f) return 14;
    const int t = (int)x;
    return bracket[t - (x < (float)t) + 127];
}

static inline int best_index(const int8_t *val, float x) {
    if (!(x > -127.f)) return x != x ? 15 : 0; /* x <= val[0]; NaN: 15, as the bisection ends */
    if (x >= 113.f) return 15;
    const int t = (int)x; /* |x| < 127: defined */
    const int l = bracket[t - (x < (float)t) + 127];
    return x - val[l] < val[l + 1] - x ? l : l + 1;
}

/* The trial scales of quantize_row_iq4_nl_impl (ntry 7): for itry =
 * -7..7, id = (itry + kvalues[0]) / max, every x[j] rounded to its nearest
 * table value q_j(id), and sumqx = sum_j w_j q_j x_j, sumq2 = sum_j w_j q_j^2,
 * summed over j in ggml's order.  The 15 trials are independent, so they
 * run side by side as lanes of a vector (16 lanes, the last unused); each
 * lane performs exactly the scalar float operations, so the sums are
 * bit-identical.  In a lane the nearest value comes from comparisons
 * against the 14 inner table values: lo = kvalues[c], hi = kvalues[c + 1]
 * with c = #{k in 1..14 : al >= kvalues[k]} (integers, exact in float),
 * then ggml's al - lo < hi - al; this equals best_index for finite al.
 * Since al = id * x is monotone in the lane, only the k between the
 * brackets of the first and last lane are compared (one or two, not 14).
 * Blocks with a non-finite weight take the scalar path.  Out: tqx, tq2
 * [16], lane itry + 7. */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define IQ4_V16 1
/* try_scales' vector path with the 16 lanes in one AVX-512 register (the
 * same operations; GCC/clang compile no FMA here: quant_impl.h). */
__attribute__((target("arch=x86-64-v4"))) static void try_v16(const float *xb, const float *weight, float max,
                                                                float *tqx, float *tq2) {
    typedef float v16f __attribute__((vector_size(64)));
    typedef int32_t v16i __attribute__((vector_size(64)));
    v16f idv, sqx = {0}, sq2 = {0};
    for (int l = 0; l < 16; ++l) idv[l] = (et_imin(l, 14) - 7 + et_kvalues_iq4nl[0]) / max;
    for (int j = 0; j < ET_QK4_NL; ++j) {
        const float xj = xb[j], wj = weight[j];
        const float a0 = idv[0] * xj, a1 = idv[14] * xj;
        const int b0 = bracket_of(a0 < a1 ? a0 : a1), b1 = bracket_of(a0 < a1 ? a1 : a0);
        const v16f al = idv * xj;
        v16i lo = {0}, hi = {0};
        for (int k = b0 + 1; k <= b1; ++k) {
            const v16i m = al >= (float)et_kvalues_iq4nl[k];
            lo += m & (et_kvalues_iq4nl[k] - et_kvalues_iq4nl[k - 1]);
            hi += m & (et_kvalues_iq4nl[k + 1] - et_kvalues_iq4nl[k]);
        }
        const v16f flo = __builtin_convertvector(lo + et_kvalues_iq4nl[b0], v16f);
        const v16f fhi = __builtin_convertvector(hi + et_kvalues_iq4nl[b0 + 1], v16f);
        const v16i pick_lo = al - flo < fhi - al;
        const v16f q = (v16f)(((v16i)flo & pick_lo) | ((v16i)fhi & ~pick_lo));
        const v16f wq = wj * q;
        sqx += wq * xj;
        sq2 += wq * q;
    }
    for (int l = 0; l < 16; ++l) tqx[l] = sqx[l], tq2[l] = sq2[l];
}

/* L[j] = best_index(id * xb[j]) for the 32 elements of a block (finite
 * id * xb[j]): c = #{k in 1..14 : al >= kvalues[k]}, then ggml's
 * al - kvalues[c] < kvalues[c+1] - al ? c : c + 1. */
__attribute__((target("arch=x86-64-v4"))) static void nearest_v16(const float *xb, float id, uint8_t *L) {
    typedef float v16f __attribute__((vector_size(64)));
    typedef int32_t v16i __attribute__((vector_size(64)));
    for (int h = 0; h < ET_QK4_NL; h += 16) {
        v16f al;
        for (int l = 0; l < 16; ++l) al[l] = id * xb[h + l];
        v16i c = {0}, lo = {0}, hi = {0};
        for (int k = 1; k < 15; ++k) {
            const v16i m = al >= (float)et_kvalues_iq4nl[k];
            c -= m;
            lo += m & (et_kvalues_iq4nl[k] - et_kvalues_iq4nl[k - 1]);
            hi += m & (et_kvalues_iq4nl[k + 1] - et_kvalues_iq4nl[k]);
        }
        const v16f flo = __builtin_convertvector(lo + et_kvalues_iq4nl[0], v16f);
        const v16f fhi = __builtin_convertvector(hi + et_kvalues_iq4nl[1], v16f);
        const v16i idx = c + 1 + (al - flo < fhi - al); /* the compare is -1 where lo wins */
        for (int l = 0; l < 16; ++l) L[h + l] = (uint8_t)idx[l];
    }
}

static int have_v16(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

/* L[j] = best_index(id * xb[j]), j < 32; v16: the AVX-512 path may be used
 * (finite: every xb[j] is finite, so id * xb[j] is not NaN for finite id). */
static void nearest_block(const float *xb, float id, uint8_t *L, int v16, int finite) {
#if defined(IQ4_V16)
    if (v16 && finite && id - id == 0.0f) {
        nearest_v16(xb, id, L);
        return;
    }
#endif
    (void)v16, (void)finite;
    for (int j = 0; j < ET_QK4_NL; ++j) L[j] = (uint8_t)best_index(et_kvalues_iq4nl, id * xb[j]);
}

static void try_scales(const float *xb, const float *weight, float max, float *tqx, float *tq2, int v16,
                       int finite) {
    const int ntry = 7;
    (void)v16;
#if defined(IQ4_V16)
    if (finite && v16) {
        try_v16(xb, weight, max, tqx, tq2);
        return;
    }
#endif
#if defined(__GNUC__)
    if (finite) {
        typedef float v4f __attribute__((vector_size(16)));
        typedef int32_t v4i __attribute__((vector_size(16)));
        v4f idv[4], sqx[4], sq2[4];
        for (int g = 0; g < 4; ++g) {
            for (int l = 0; l < 4; ++l) idv[g][l] = (et_imin(4 * g + l, 2 * ntry) - ntry + et_kvalues_iq4nl[0]) / max;
            sqx[g] = sq2[g] = (v4f){0, 0, 0, 0};
        }
        for (int j = 0; j < ET_QK4_NL; ++j) {
            const float xj = xb[j], wj = weight[j];
            /* al is monotone in the lane (id is), so every lane's bracket
             * lies between those of lanes 0 and 14: only the table values
             * in between are compared */
            const float a0 = idv[0][0] * xj, a1 = idv[3][2] * xj;
            const int b0 = bracket_of(a0 < a1 ? a0 : a1), b1 = bracket_of(a0 < a1 ? a1 : a0);
            for (int g = 0; g < 4; ++g) {
                const v4f al = idv[g] * xj;
                v4i lo = {0, 0, 0, 0}, hi = {0, 0, 0, 0};
                for (int k = b0 + 1; k <= b1; ++k) {
                    const v4i m = al >= (float)et_kvalues_iq4nl[k];
                    lo += m & (et_kvalues_iq4nl[k] - et_kvalues_iq4nl[k - 1]);
                    hi += m & (et_kvalues_iq4nl[k + 1] - et_kvalues_iq4nl[k]);
                }
                const v4f flo = __builtin_convertvector(lo + et_kvalues_iq4nl[b0], v4f);
                const v4f fhi = __builtin_convertvector(hi + et_kvalues_iq4nl[b0 + 1], v4f);
                const v4i pick_lo = al - flo < fhi - al;
                const v4f q = (v4f)(((v4i)flo & pick_lo) | ((v4i)fhi & ~pick_lo));
                const v4f wq = wj * q;
                sqx[g] += wq * xj;
                sq2[g] += wq * q;
            }
        }
        for (int l = 0; l < 16; ++l) tqx[l] = sqx[l / 4][l % 4], tq2[l] = sq2[l / 4][l % 4];
        return;
    }
#endif
    for (int itry = -ntry; itry <= ntry; ++itry) {
        const float id = (itry + et_kvalues_iq4nl[0]) / max;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < ET_QK4_NL; ++j) {
            float al = id * xb[j];
            int l = best_index(et_kvalues_iq4nl, al);
            float q = et_kvalues_iq4nl[l];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        tqx[itry + ntry] = sumqx, tq2[itry + ntry] = sumq2;
    }
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
#if defined(IQ4_V16)
    const int v16 = have_v16();
#else
    const int v16 = 0;
#endif
    for (int64_t i = 0; i < nb; i++, x += ET_QK4_NL) {
        const float *xb = x;
        int finite = 1;
        for (int j = 0; j < ET_QK4_NL; ++j) finite &= xb[j] - xb[j] == 0.0f;
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
        float amax;
        const float max = et_signed_absmax(ET_QK4_NL, xb, &amax);
        if (amax < ET_GROUP_MAX_EPS) {
            scale = 0;
        } else {
            float d = -max / values[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            nearest_block(xb, id, L, v16, finite);
            for (int j = 0; j < ET_QK4_NL; ++j) {
                float q = values[L[j]];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            d = sumqx / sumq2;
            float best = d * sumqx;
            float tqx[16], tq2[16]; /* the 2*ntry+1 trial scales' sums, itry = -ntry + lane */
            try_scales(xb, weight, max, tqx, tq2, v16, finite);
            for (int itry = -ntry; itry <= ntry; ++itry) {
                sumqx = tqx[itry + ntry];
                sumq2 = tq2[itry + ntry];
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
        nearest_block(x, id, L, v16, finite);
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
