/* train/op_attention.c — causal self-attention with grouped-query heads (see ops.h).
 *
 * q [B*T, H*D], k and v [B*T, G*D], out [B*T, H*D]; H = n_head, G = n_head_kv,
 * D = head_dim, query head h uses key/value head g = h / (H/G); scale = 1/sqrt(D).
 * For sequence b, head h, query row i and keys j <= i:
 *   s_ij = scale q_i . k_j,   L_i = logsumexp_j s_ij,   p_ij = exp(s_ij - L_i)
 *   out_i = sum_j p_ij v_j
 * Only L [B, H, T] is saved (head_dim KD = 8: the probabilities p too, see
 * ops.h).  Backward (FlashAttention-2, Dao 2023, Alg. 2, four query rows of a
 * head at a time) recomputes p_ij from q, k and L (head_dim KD: reads them back):
 *   Delta_i = dout_i . out_i
 *   dp_ij = dout_i . v_j,   ds_ij = p_ij (dp_ij - Delta_i)
 *   dq_i += scale sum_j ds_ij k_j
 *   dk_j += scale sum_{h in group, i >= j} ds_ij q_i
 *   dv_j += sum_{h in group, i >= j} p_ij dout_i
 * Layout for speed: k and v of each (b, g) are first transposed to [D, T], so
 * every inner loop runs over keys j with unit stride and vectorizes
 * (`omp simd`, et_vexpf; AVX-512/AVX2 clones of the row kernels) for any
 * head_dim.  Other head_dims (64: SmolLM2) take RB = 4 query rows of a head
 * per kernel call, so each load of k, v (and load/store of dk, dv) serves
 * four rows and the sums over d stay in registers; RB rows of scores live
 * in a per-thread buffer.
 * At head_dim 8 on CPUs with AVX-512F the work goes to the 16 x 16 tiles of
 * train/attn_kd8.h instead (sums down the vector lanes, no per-row
 * horizontal reductions); the row kernels below remain for other CPUs and
 * head_dims (et_attention_force_portable selects them in tests).
 * Threads: forward in parallel over (b, h, i); backward over (b, g), each
 * task owning its dk/dv rows and the dq rows of its query heads, so no two
 * threads write the same memory and every sum runs in a fixed order
 * (results independent of the thread count). */
#include <math.h>
#include <omp.h>
#include <string.h>

/* Multiply-adds as fused FMA instructions in this file (ISO C mode makes
 * GCC keep them apart, -ffp-contract=off): the row kernels are chains of
 * multiply-adds (dot products over head_dim, the exp polynomial). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT ON
/* clang does not vectorize the max-reduction in attn_row_forward_kd's
   score loop (gcc does); its scalar loop is correct, so the request to
   vectorize is allowed to fail quietly there */
#pragma clang diagnostic ignored "-Wpass-failed"
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include "attn_kd8.h"
#include "ops.h"
#include "simd.h"

typedef struct {
    int B, T, H, G, D;
    float *lse;   /* [B, H, T]; NULL when tiled */
    float *p;     /* head_dim KD: the probabilities, [B, H] blocks of p_rows(T)
                     floats (row i at p_row(i), round_up(i + 1) long, zero
                     past key i), or (tiled) the tiles of train/attn_kd8.h;
                     else NULL */
    int tiled;    /* forward ran the AVX-512 tiles of train/attn_kd8.h */
} attn_saved;

static int force_rows = 0;
void et_attention_force_portable(int on) { force_rows = on != 0; }

/* Rows of keys are processed PAD at a time: every j-loop runs over
 * round_up(n, PAD) columns (no scalar remainder iterations, which would
 * otherwise dominate for short rows); the padded scores are zeroed after the
 * exponential, so they add nothing. */
enum { PAD = 16 }; /* the et_*16 reductions of simd.h need multiples of 16 */
static int round_up(int n) { return (n + PAD - 1) / PAD * PAD; }

/* Offset of query row i in a block of kept probabilities, whose rows are
 * round_up(i + 1) long: rows 16q .. 16q+15 have q+1 groups of PAD each. */
static size_t p_row(int i) {
    const size_t q = (size_t)i / PAD, r = (size_t)i % PAD;
    return PAD * (PAD * q * (q + 1) / 2 + r * (q + 1));
}

/* One (b, g) block of the transpose of src [B*T, G*D] (k or v):
 * dst[d][t] = src[(b*T + t)*G*D + g*D + d] for the block's dst [D, Tp],
 * row stride Tp >= T, columns T..Tp-1 zero.  Called inside the attention's
 * own parallel loops (one block per task), so it costs no parallel region
 * of its own. */
static void transpose_head(const float *src, float *dst, int b, int g, int T, int Tp, int G, int D) {
    for (int d = 0; d < D; d++) {
        float *row = dst + (size_t)d * Tp;
        for (int t = 0; t < T; t++) row[t] = src[((size_t)b * T + t) * G * D + (size_t)g * D + d];
        for (int t = T; t < Tp; t++) row[t] = 0.0f;
    }
}

/* Backward of RB (4) query rows i0 .. i0+RB-1 of one head at once (the
 * formulas at the top of this file, p recomputed from L): row r has q qi[r], dout doi[r], out
 * oi[r], log-sum-exp L[r] and keys 0..n[r]-1 (n[r] = 0: an unused row, all
 * p and ds zero; its pointers repeat a live row's).  Every load of kt, vt
 * and every load/store of dkt, dvt [D, Tp] serves the RB rows.  Adds into
 * dqi[r] (NULL: none).  p, ds [RB, Tp] scratch.  Sums run over d, then r,
 * in a fixed order; an unused row adds exact zeros. */
enum { RB = 4 };
ET_SIMD_CLONES
static void attn_rows_backward(const float *const *qi, const float *const *doi, const float *const *oi,
                               const float *L, const int *n, const float *kt, const float *vt, int D, int Tp,
                               float scale, float *p, float *ds, float *const *dqi, float *dkt, float *dvt) {
    int nmax = 0;
    for (int r = 0; r < RB; r++) nmax = n[r] > nmax ? n[r] : nmax;
    const int np = round_up(nmax);
    const float *q0 = qi[0], *q1 = qi[1], *q2 = qi[2], *q3 = qi[3];
    const float *o0 = doi[0], *o1 = doi[1], *o2 = doi[2], *o3 = doi[3];
    float delta[RB];
    for (int r = 0; r < RB; r++) {
        delta[r] = 0.0f;
        for (int d = 0; d < D; d++) delta[r] += doi[r][d] * oi[r][d];
    }
    const float L0 = L[0], L1 = L[1], L2 = L[2], L3 = L[3], e0 = delta[0], e1 = delta[1], e2 = delta[2],
                e3 = delta[3];
    const int n0 = n[0], n1 = n[1], n2 = n[2], n3 = n[3];
    float *p0 = p, *p1 = p + Tp, *p2 = p + 2 * (size_t)Tp, *p3 = p + 3 * (size_t)Tp;
    float *s0 = ds, *s1 = ds + Tp, *s2 = ds + 2 * (size_t)Tp, *s3 = ds + 3 * (size_t)Tp;
    /* scores q_r . k_j and dp_r = dout_r . v_j for the RB rows, PAD keys
       at a time, the sums kept in registers across the loop over d */
    for (int j0 = 0; j0 < np; j0 += PAD) {
        float a0[PAD] = {0}, a1[PAD] = {0}, a2[PAD] = {0}, a3[PAD] = {0};
        float b0[PAD] = {0}, b1[PAD] = {0}, b2[PAD] = {0}, b3[PAD] = {0};
        for (int d = 0; d < D; d++) {
            const float *k = kt + (size_t)d * Tp + j0, *v = vt + (size_t)d * Tp + j0;
            const float qa = q0[d], qb = q1[d], qc = q2[d], qd = q3[d];
            const float oa = o0[d], ob = o1[d], oc = o2[d], od = o3[d];
            #pragma omp simd
            for (int j = 0; j < PAD; j++) {
                a0[j] += qa * k[j], a1[j] += qb * k[j], a2[j] += qc * k[j], a3[j] += qd * k[j];
                b0[j] += oa * v[j], b1[j] += ob * v[j], b2[j] += oc * v[j], b3[j] += od * v[j];
            }
        }
        #pragma omp simd
        for (int j = 0; j < PAD; j++) {
            const int jj = j0 + j;
            /* (jj - n) >> 31 as unsigned: 1 for live keys jj < n, else 0 */
            const float x0 = et_vexpf(scale * a0[j] - L0) * (float)((uint32_t)(jj - n0) >> 31);
            const float x1 = et_vexpf(scale * a1[j] - L1) * (float)((uint32_t)(jj - n1) >> 31);
            const float x2 = et_vexpf(scale * a2[j] - L2) * (float)((uint32_t)(jj - n2) >> 31);
            const float x3 = et_vexpf(scale * a3[j] - L3) * (float)((uint32_t)(jj - n3) >> 31);
            p0[jj] = x0, p1[jj] = x1, p2[jj] = x2, p3[jj] = x3;
            s0[jj] = x0 * (b0[j] - e0) * scale, s1[jj] = x1 * (b1[j] - e1) * scale;
            s2[jj] = x2 * (b2[j] - e2) * scale, s3[jj] = x3 * (b3[j] - e3) * scale;
        }
    }
    /* one pass over d, keys inside, for the three sums that read ds:
         dq_r[d] += sum_j ds_r[j] kt[d][j]          (RB dot products per load of kt)
         dkt[d][j] += sum_r ds_r[j] q_r[d],  dvt[d][j] += sum_r p_r[j] dout_r[d]
       each ds/p load serving both; the dq sums run down PAD lanes in key
       order, then as a tree (et_lanes_sum16) */
    for (int d = 0; d < D; d++) {
        const float *k = kt + (size_t)d * Tp;
        float *dk = dkt + (size_t)d * Tp, *dv = dvt + (size_t)d * Tp;
        const float qa = q0[d], qb = q1[d], qc = q2[d], qd = q3[d];
        const float oa = o0[d], ob = o1[d], oc = o2[d], od = o3[d];
        float a0[PAD] = {0}, a1[PAD] = {0}, a2[PAD] = {0}, a3[PAD] = {0};
        for (int j0 = 0; j0 < np; j0 += PAD) {
            #pragma omp simd
            for (int j = 0; j < PAD; j++) {
                const int jj = j0 + j;
                const float kj = k[jj], x0 = s0[jj], x1 = s1[jj], x2 = s2[jj], x3 = s3[jj];
                a0[j] += x0 * kj, a1[j] += x1 * kj;
                a2[j] += x2 * kj, a3[j] += x3 * kj;
                dk[jj] += x0 * qa + x1 * qb + x2 * qc + x3 * qd;
                dv[jj] += p0[jj] * oa + p1[jj] * ob + p2[jj] * oc + p3[jj] * od;
            }
        }
        if (dqi[0]) dqi[0][d] += et_lanes_sum16(a0);
        if (dqi[1]) dqi[1][d] += et_lanes_sum16(a1);
        if (dqi[2]) dqi[2][d] += et_lanes_sum16(a2);
        if (dqi[3]) dqi[3][d] += et_lanes_sum16(a3);
    }
}

/* RB (4) query rows of one head against their keys (the formulas at
 * the top of this file): row r has q qi[r] and keys
 * 0..n[r]-1 (n[r] = 0: an unused row, nothing written; its qi repeats a
 * live row's); kt, vt [D, Tp]; p [RB, Tp] scratch; writes oi[r] [D] and
 * L[r].  Each load of kt and vt serves the RB rows; the sums run over d,
 * then down 16 lanes and their tree (fixed order). */
ET_SIMD_CLONES
static void attn_rows_forward(const float *const *qi, const int *n, const float *kt, const float *vt, int D,
                              int Tp, float scale, float *p, float *const *oi, float *L) {
    int nmax = 0;
    for (int r = 0; r < RB; r++) nmax = n[r] > nmax ? n[r] : nmax;
    const int np = round_up(nmax);
    const float *q0 = qi[0], *q1 = qi[1], *q2 = qi[2], *q3 = qi[3];
    float *p0 = p, *p1 = p + Tp, *p2 = p + 2 * (size_t)Tp, *p3 = p + 3 * (size_t)Tp;
    for (int j0 = 0; j0 < np; j0 += PAD) {
        float a0[PAD] = {0}, a1[PAD] = {0}, a2[PAD] = {0}, a3[PAD] = {0};
        for (int d = 0; d < D; d++) {
            const float *k = kt + (size_t)d * Tp + j0;
            const float qa = q0[d], qb = q1[d], qc = q2[d], qd = q3[d];
            #pragma omp simd
            for (int j = 0; j < PAD; j++) a0[j] += qa * k[j], a1[j] += qb * k[j], a2[j] += qc * k[j], a3[j] += qd * k[j];
        }
        #pragma omp simd
        for (int j = 0; j < PAD; j++) p0[j0 + j] = a0[j], p1[j0 + j] = a1[j], p2[j0 + j] = a2[j], p3[j0 + j] = a3[j];
    }
    float lsum[RB];
    for (int r = 0; r < RB; r++) {
        float *pr = p + (size_t)r * Tp;
        if (!n[r]) {
            for (int j = 0; j < np; j++) pr[j] = 0.0f;
            lsum[r] = 0.0f;
            continue;
        }
        const int nr = round_up(n[r]);
        for (int j = n[r]; j < nr; j++) pr[j] = pr[0]; /* padding: leaves the max as it is */
        const float m = scale * et_max16(pr, nr);
        #pragma omp simd
        for (int j = 0; j < nr; j++) pr[j] = et_vexpf(scale * pr[j] - m);
        for (int j = n[r]; j < np; j++) pr[j] = 0.0f;
        const float l = et_sum16(pr, nr);
        L[r] = m + logf(l);
        lsum[r] = l;
    }
    for (int d = 0; d < D; d++) {
        const float *v = vt + (size_t)d * Tp;
        float a0[PAD] = {0}, a1[PAD] = {0}, a2[PAD] = {0}, a3[PAD] = {0};
        for (int j0 = 0; j0 < np; j0 += PAD) {
            #pragma omp simd
            for (int j = 0; j < PAD; j++) {
                const float vj = v[j0 + j];
                a0[j] += p0[j0 + j] * vj, a1[j] += p1[j0 + j] * vj;
                a2[j] += p2[j0 + j] * vj, a3[j] += p3[j0 + j] * vj;
            }
        }
        if (n[0]) oi[0][d] = et_lanes_sum16(a0) / lsum[0];
        if (n[1]) oi[1][d] = et_lanes_sum16(a1) / lsum[1];
        if (n[2]) oi[2][d] = et_lanes_sum16(a2) / lsum[2];
        if (n[3]) oi[3][d] = et_lanes_sum16(a3) / lsum[3];
    }
}

/* ---- fused row kernels for head_dim KD (stories260K: 8) ----
 * The same formulas as attn_rows_forward / attn_rows_backward, but each pass
 * over the keys does all of its work per vector of keys with the head_dim
 * loop innermost (unrolled: D is a constant), so the scores, probabilities
 * and their gradients stay in registers instead of being stored and
 * reloaded once per d.  Masked keys (j >= n, the causal mask and the
 * padding) get p = 0 by a multiplication with (j - n) >> 31 as unsigned (1
 * for j < n): a compare there keeps GCC from vectorizing the AVX2/SSE2
 * clones. */
enum { KD = 8 };

/* out[d] = sum_j x[j] mt[d*Tp + j] for d < KD (8), over j < np; returns
 * sum_j x[j].  One loop with nine independent accumulators (omp simd
 * reductions), where eight separate dot products would each wait on the
 * latency of their own single accumulator. */
static inline __attribute__((always_inline)) float dots_kd(const float *x, const float *mt, int Tp, int np,
                                                             float *out) {
    const float *m0 = mt, *m1 = mt + Tp, *m2 = mt + 2 * (size_t)Tp, *m3 = mt + 3 * (size_t)Tp;
    const float *m4 = mt + 4 * (size_t)Tp, *m5 = mt + 5 * (size_t)Tp, *m6 = mt + 6 * (size_t)Tp,
                *m7 = mt + 7 * (size_t)Tp;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f, a6 = 0.0f, a7 = 0.0f, sx = 0.0f;
    #pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7, sx)
    for (int j = 0; j < np; j++) {
        const float v = x[j];
        sx += v;
        a0 += v * m0[j], a1 += v * m1[j], a2 += v * m2[j], a3 += v * m3[j];
        a4 += v * m4[j], a5 += v * m5[j], a6 += v * m6[j], a7 += v * m7[j];
    }
    out[0] = a0, out[1] = a1, out[2] = a2, out[3] = a3, out[4] = a4, out[5] = a5, out[6] = a6, out[7] = a7;
    return sx;
}

/* keep: p [round_up(n)] is the row's slot of kept probabilities, left
 * normalized (p_j = exp(s_j - L)) for backward; else scratch. */
ET_SIMD_CLONES
static float attn_row_forward_kd(const float *qi, const float *kt, const float *vt, int Tp, int n,
                                 float scale, float *p, float *o, int keep) {
    const int np = round_up(n);
    float q[KD];
    #pragma GCC unroll 8
    for (int d = 0; d < KD; d++) q[d] = qi[d];
    /* the scores and their maximum over the live keys j < n in one pass:
       masked keys get s - 2^100 (finite scores are far smaller), which
       leaves the maximum as it is; their exponentials below are clamped
       finite (et_vexpf) and multiplied by 0 */
    float smax = -HUGE_VALF;
    #pragma omp simd reduction(max : smax)
    for (int j = 0; j < np; j++) {
        float s = 0.0f;
        #pragma GCC unroll 8
        for (int d = 0; d < KD; d++) s += q[d] * kt[(size_t)d * Tp + j];
        p[j] = s;
        const float dead = (float)((uint32_t)(n - 1 - j) >> 31); /* 1 for j >= n */
        const float sm = s - dead * 0x1p100f;
        smax = sm > smax ? sm : smax;
    }
    const float m = scale * smax;
    #pragma omp simd
    for (int j = 0; j < np; j++) p[j] = et_vexpf(scale * p[j] - m) * (float)((uint32_t)(j - n) >> 31);
    float acc[KD];
    const float l = dots_kd(p, vt, Tp, np, acc);
    #pragma GCC unroll 8
    for (int d = 0; d < KD; d++) o[d] = acc[d] / l;
    if (keep) {
        const float inv = 1.0f / l;
        #pragma omp simd
        for (int j = 0; j < np; j++) p[j] *= inv;
    }
    return m + logf(l);
}

/* Backward of R = 1 or 2 query rows at the same position (so the same
 * keys 0..n-1): row r has q qi[r], dout doi[r], out oi[r], the kept
 * probabilities pk[r] [round_up(n)] (zero past key n-1), and adds into
 * dqi[r] (NULL: no dq; dq_set: stores instead).  Two query heads of one GQA
 * group share k and v, so their rows share every load of kt, vt and every
 * load/store of dkt, dvt [KD, Tp].  ds [R, Tp] scratch. */
static inline __attribute__((always_inline)) void rows_backward_kd(
    const int R, const float *const *qi, const float *const *doi, const float *const *oi, const float *const *pk,
    const float *kt, const float *vt, int Tp, int n, float scale, float *ds, float *const *dqi, int dq_set,
    float *dkt, float *dvt) {
    const int np = round_up(n);
    float q[2][KD], dO[2][KD], delta[2];
    for (int r = 0; r < R; r++) {
        delta[r] = 0.0f;
        #pragma GCC unroll 8
        for (int d = 0; d < KD; d++) q[r][d] = qi[r][d], dO[r][d] = doi[r][d], delta[r] += doi[r][d] * oi[r][d];
    }
    float *ds1 = ds + (R - 1) * Tp;
    const float *p0 = pk[0], *p1 = pk[R - 1];
    if (R == 2) {
        #pragma omp simd
        for (int j = 0; j < np; j++) {
            const float pa = p0[j], pb = p1[j];
            float dpa = 0.0f, dpb = 0.0f;
            #pragma GCC unroll 8
            for (int d = 0; d < KD; d++) {
                const float vd = vt[(size_t)d * Tp + j];
                dpa += dO[0][d] * vd, dpb += dO[1][d] * vd;
            }
            const float dsa = pa * (dpa - delta[0]) * scale, dsb = pb * (dpb - delta[1]) * scale;
            #pragma GCC unroll 8
            for (int d = 0; d < KD; d++) {
                dkt[(size_t)d * Tp + j] += dsa * q[0][d] + dsb * q[1][d];
                dvt[(size_t)d * Tp + j] += pa * dO[0][d] + pb * dO[1][d];
            }
            ds[j] = dsa, ds1[j] = dsb;
        }
    } else {
        #pragma omp simd
        for (int j = 0; j < np; j++) {
            const float pa = p0[j];
            float dpa = 0.0f;
            #pragma GCC unroll 8
            for (int d = 0; d < KD; d++) dpa += dO[0][d] * vt[(size_t)d * Tp + j];
            const float dsa = pa * (dpa - delta[0]) * scale;
            #pragma GCC unroll 8
            for (int d = 0; d < KD; d++) {
                dkt[(size_t)d * Tp + j] += dsa * q[0][d];
                dvt[(size_t)d * Tp + j] += pa * dO[0][d];
            }
            ds[j] = dsa;
        }
    }
    for (int r = 0; r < R; r++)
        if (dqi[r]) {
            float dot[KD];
            dots_kd(ds + (size_t)r * Tp, kt, Tp, np, dot);
            #pragma GCC unroll 8
            for (int d = 0; d < KD; d++) dqi[r][d] = dq_set ? dot[d] : dqi[r][d] + dot[d];
        }
}

ET_SIMD_CLONES
static void attn_row_backward_kd(const float *const *qi, const float *const *doi, const float *const *oi,
                                 const float *const *pk, const float *kt, const float *vt, int Tp, int n,
                                 float scale, float *ds, float *const *dqi, int dq_set, float *dkt, float *dvt) {
    rows_backward_kd(1, qi, doi, oi, pk, kt, vt, Tp, n, scale, ds, dqi, dq_set, dkt, dvt);
}

ET_SIMD_CLONES
static void attn_row2_backward_kd(const float *const *qi, const float *const *doi, const float *const *oi,
                                  const float *const *pk, const float *kt, const float *vt, int Tp, int n,
                                  float scale, float *ds, float *const *dqi, int dq_set, float *dkt, float *dvt) {
    rows_backward_kd(2, qi, doi, oi, pk, kt, vt, Tp, n, scale, ds, dqi, dq_set, dkt, dvt);
}

static void attention_backward(et_tape *t, const et_node *nd) {
    et_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2], *o = nd->out;
    const attn_saved *s = nd->saved;
    const int B = s->B, T = s->T, H = s->H, G = s->G, D = s->D, grp = H / G;
    const size_t Cq = (size_t)H * D, Ck = (size_t)G * D;
    const float scale = 1.0f / sqrtf((float)D);
    const float *dO = o->grad, *lse = s->lse, *qd = q->data, *od = o->data;
    /* first gradients are stored, not added to zeros (et_grad_fresh): each
       dq row is written by one row kernel, each dk/dv row by one task */
    int dq_set, dk_set, dv_set;
    float *dq = et_grad_fresh(t, q, &dq_set), *dk = et_grad_fresh(t, k, &dk_set), *dv = et_grad_fresh(t, v, &dv_set);
    const int nth = omp_get_max_threads(), Tp = round_up(T);
    if (s->tiled) {
        float *sc = et_tape_scratch(t, (size_t)nth * et_attn_kd8_scratch_floats(T, H, G) * sizeof(float));
        if (!t->code)
            et_attn_kd8_backward(B, T, H, G, qd, k->data, v->data, od, dO, s->p, dq, dq_set, dk, dk_set, dv,
                                 dv_set, sc);
        return;
    }
    if (dq && dq_set && !s->p) memset(dq, 0, q->n * sizeof(float)), dq_set = 0; /* attn_rows_backward adds */
    const size_t kv = (size_t)B * G * D * Tp;
    /* scratch: kt, vt [B*G, D, Tp], then per thread p[RB*Tp], ds[RB*Tp], dkt[D*Tp], dvt[D*Tp] */
    const size_t per = 2 * (size_t)RB * Tp + 2 * (size_t)D * Tp;
    float *kt = et_tape_scratch(t, (2 * kv + (size_t)nth * per) * sizeof(float));
    if (t->code) return;
    float *vt = kt + kv, *scratch = vt + kv;
    const float *kd = k->data, *vd = v->data;

    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            float *p = scratch + (size_t)omp_get_thread_num() * per, *ds = p + (size_t)RB * Tp;
            float *dkt = ds + (size_t)RB * Tp, *dvt = dkt + (size_t)D * Tp;
            float *ktb = kt + ((size_t)b * G + g) * D * Tp, *vtb = vt + ((size_t)b * G + g) * D * Tp;
            transpose_head(kd, ktb, b, g, T, Tp, G, D);
            transpose_head(vd, vtb, b, g, T, Tp, G, D);
            for (size_t x = 0; x < 2 * (size_t)D * Tp; x++) dkt[x] = 0.0f;
            if (s->p) {
                /* the group's query heads two at a time (then one if grp is odd) */
                for (int h = g * grp; h < (g + 1) * grp; h += 2) {
                    const int R = h + 1 < (g + 1) * grp ? 2 : 1;
                    for (int i = 0; i < T; i++) {
                        const float *qr[2], *dor[2], *orr[2], *pr[2];
                        float *dqr[2];
                        for (int r = 0; r < R; r++) {
                            const size_t ri = ((size_t)b * T + i) * Cq + (size_t)(h + r) * D;
                            qr[r] = qd + ri, dor[r] = dO + ri, orr[r] = od + ri, dqr[r] = dq ? dq + ri : NULL;
                            pr[r] = s->p + ((size_t)b * H + h + r) * p_row(T) + p_row(i);
                        }
                        if (R == 2)
                            attn_row2_backward_kd(qr, dor, orr, pr, ktb, vtb, Tp, i + 1, scale, p, dqr, dq_set, dkt,
                                                  dvt);
                        else
                            attn_row_backward_kd(qr, dor, orr, pr, ktb, vtb, Tp, i + 1, scale, p, dqr, dq_set, dkt, dvt);
                    }
                }
            } else {
                /* RB query rows of one head at a time; the last block of a
                   head may have fewer live rows */
                for (int h = g * grp; h < (g + 1) * grp; h++)
                    for (int i0 = 0; i0 < T; i0 += RB) {
                        const float *qr[RB], *dor[RB], *orr[RB];
                        float *dqr[RB], L[RB];
                        int n[RB];
                        for (int r = 0; r < RB; r++) {
                            const int i = i0 + r < T ? i0 + r : T - 1;
                            const size_t ri = ((size_t)b * T + i) * Cq + (size_t)h * D;
                            qr[r] = qd + ri, dor[r] = dO + ri, orr[r] = od + ri;
                            dqr[r] = dq && i0 + r < T ? dq + ri : NULL;
                            L[r] = lse[((size_t)b * H + h) * T + i];
                            n[r] = i0 + r < T ? i0 + r + 1 : 0;
                        }
                        attn_rows_backward(qr, dor, orr, L, n, ktb, vtb, D, Tp, scale, p, ds, dqr, dkt, dvt);
                    }
            }
            for (int j = 0; j < T; j++) {
                const size_t rj = ((size_t)b * T + j) * Ck + (size_t)g * D;
                for (int d = 0; d < D; d++) {
                    if (dk) dk[rj + d] = (dk_set ? 0.0f : dk[rj + d]) + dkt[(size_t)d * Tp + j];
                    if (dv) dv[rj + d] = (dv_set ? 0.0f : dv[rj + d]) + dvt[(size_t)d * Tp + j];
                }
            }
        }
}

et_tensor *et_attention(et_tape *t, const char *name, et_tensor *q, et_tensor *k, et_tensor *v,
                        int T, int n_head, int n_head_kv, int head_dim) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    if (!q || !k || !v) return et_tape_fail(t, ET_EINPUT, "attention %s: NULL input", nm);
    if (T < 1 || n_head < 1 || n_head_kv < 1 || head_dim < 1 || n_head % n_head_kv)
        return et_tape_fail(t, ET_EINPUT, "attention %s: T %d, n_head %d, n_head_kv %d, head_dim %d "
                            "(n_head must be a multiple of n_head_kv)", nm, T, n_head, n_head_kv, head_dim);
    const size_t rows = et_rows(q);
    if (rows % (size_t)T || et_cols(q) != (size_t)n_head * head_dim ||
        et_rows(k) != rows || et_cols(k) != (size_t)n_head_kv * head_dim ||
        et_rows(v) != rows || et_cols(v) != (size_t)n_head_kv * head_dim)
        return et_tape_fail(t, ET_EINPUT, "attention %s: q [%zu, %zu], k [%zu, %zu], v [%zu, %zu] do not fit "
                            "T %d, n_head %d, n_head_kv %d, head_dim %d", nm, et_rows(q), et_cols(q),
                            et_rows(k), et_cols(k), et_rows(v), et_cols(v), T, n_head, n_head_kv, head_dim);
    const int B = (int)(rows / (size_t)T), H = n_head, G = n_head_kv, D = head_dim, grp = H / G;
    const size_t Cq = (size_t)H * D;
    const float scale = 1.0f / sqrtf((float)D);
    et_tensor *in[3] = {q, k, v};
    int wants = et_tape_wants_grad(t, in, 3);
    const int nth = omp_get_max_threads(), Tp = round_up(T);
    et_tensor *out = et_tensor_2d(t, name, (int64_t)rows, (int64_t)Cq, wants);
    attn_saved *s = out ? et_tape_alloc(t, sizeof *s) : NULL;
    if (!s) return NULL;
    const int tiled = D == KD && !force_rows && et_attn_kd8_available();
    /* the row kernels' log-sum-exp (the tiles' backward reads p instead) */
    float *lse = tiled ? NULL : et_tape_alloc(t, (size_t)B * H * T * sizeof(float));
    if (!tiled && !lse) return NULL;
    /* head_dim KD with a backward to come: keep the probabilities (see ops.h) */
    const size_t pfl = tiled ? et_attn_kd8_p_floats(T) : p_row(T);
    float *pkeep = wants && D == KD ? et_tape_alloc(t, (size_t)B * H * pfl * sizeof(float)) : NULL;
    if (wants && D == KD && !pkeep) return NULL;
    if (tiled) {
        float *sc = et_tape_scratch(t, (size_t)nth * et_attn_kd8_scratch_floats(T, H, G) * sizeof(float));
        if (!sc) return NULL;
        et_attn_kd8_forward(B, T, H, G, q->data, k->data, v->data, out->data, pkeep, sc);
    } else {
        /* scratch: the transposes kt, vt [B*G, D, Tp] and RB rows of scores per thread */
        const size_t kv = (size_t)B * G * D * Tp;
        float *kt = et_tape_scratch(t, (2 * kv + (size_t)nth * RB * Tp) * sizeof(float));
        if (!kt) return NULL;
        float *vt = kt + kv, *scratch = vt + kv;
        const float *qd = q->data, *kd = k->data, *vd = v->data;
        float *od = out->data;
        /* one parallel region: the transposes of k and v, then the rows */
        #pragma omp parallel
        {
            #pragma omp for collapse(2) schedule(static)
            for (int b = 0; b < B; b++)
                for (int g = 0; g < G; g++) {
                    const size_t bg = (size_t)b * G + g;
                    transpose_head(kd, kt + bg * D * Tp, b, g, T, Tp, G, D);
                    transpose_head(vd, vt + bg * D * Tp, b, g, T, Tp, G, D);
                }
            if (D == KD) {
                #pragma omp for collapse(3) schedule(dynamic, 16)
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++)
                        for (int i = 0; i < T; i++) {
                            const size_t bg = (size_t)b * G + h / grp, ri = ((size_t)b * T + i) * Cq + (size_t)h * D;
                            float *p = pkeep ? pkeep + ((size_t)b * H + h) * p_row(T) + p_row(i)
                                             : scratch + (size_t)omp_get_thread_num() * RB * Tp;
                            lse[((size_t)b * H + h) * T + i] = attn_row_forward_kd(
                                qd + ri, kt + bg * D * Tp, vt + bg * D * Tp, Tp, i + 1, scale, p, od + ri, pkeep != NULL);
                        }
            } else {
                /* RB query rows of one head per call; the last block of a
                   head may have fewer live rows */
                const int nb = (T + RB - 1) / RB;
                #pragma omp for collapse(3) schedule(dynamic, 4)
                for (int b = 0; b < B; b++)
                    for (int h = 0; h < H; h++)
                        for (int ib = 0; ib < nb; ib++) {
                            const size_t bg = (size_t)b * G + h / grp;
                            const float *qr[RB];
                            float *orr[RB], L[RB];
                            int n[RB];
                            for (int r = 0; r < RB; r++) {
                                const int i = ib * RB + r < T ? ib * RB + r : T - 1;
                                const size_t ri = ((size_t)b * T + i) * Cq + (size_t)h * D;
                                qr[r] = qd + ri, orr[r] = od + ri;
                                n[r] = ib * RB + r < T ? ib * RB + r + 1 : 0;
                            }
                            attn_rows_forward(qr, n, kt + bg * D * Tp, vt + bg * D * Tp, D, Tp, scale,
                                              scratch + (size_t)omp_get_thread_num() * RB * Tp, orr, L);
                            for (int r = 0; r < RB && ib * RB + r < T; r++)
                                lse[((size_t)b * H + h) * T + ib * RB + r] = L[r];
                        }
            }
        }
    }

    s->B = B; s->T = T; s->H = H; s->G = G; s->D = D;
    s->lse = lse;
    s->p = pkeep;
    s->tiled = tiled;
    if (wants && !et_tape_push(t, "attention", attention_backward, out, in, 3, s)) return NULL;
    return out;
}
