/* train/op_kd.c — fused LM head + knowledge-distillation loss (KL to a
 * teacher, with an optional cross-entropy share) over chunks of rows; the
 * distillation twin of op_xent.c (see ops.h, et_kd_loss).
 *
 * x [N, C] student hidden states, w [V, C] its output weight; per chunk of R
 * rows the student logits z[R, V] = x_c @ w^T, and with s = 1/T:
 *   log q_v  = s z_v - lse(s z)                    student at temperature T
 *   CE_r     = lse(z) - z_target                   (T = 1, the data's targets)
 * teacher, one of
 *   top-k    ids[r, 0..k-1], lp[r, i] = log p(ids_i) at T (stored, e.g. float16):
 *            p~_i = exp(lp_i) / sum_j exp(lp_j)   (renormalised over the top-k)
 *            forward  KD_r = sum_i p~_i (log p~_i - log q_ids_i)
 *            reverse  KD_r = sum_i q~_i (log q~_i - log p~_i),
 *                     q~_i = q_ids_i / sum_j q_ids_j (student renormalised over the ids)
 *            (../shared/golden/kd_topk.h5 `definitions`; with k = V both are the exact KL)
 *   sampled  ids[r, i] drawn from p, weights w_i = count_i / K (sum 1), lp_i = log p(ids_i):
 *            KD_r = sum_i w_i (lp_i - log q_ids_i)
 *            an unbiased estimate of forward KL(p || q) and of its gradient
 *            (E[w_v] = p_v): "Random Sampling KD", Anshumann et al. 2025,
 *            arXiv:2503.16870, with the teacher itself as the proposal
 *   dense    teacher logits zt[R, V] = xt_c @ wt^T (an online teacher's final
 *            hidden states and output weight), log p = s zt - lse(s zt):
 *            forward KD_r = sum_v p_v (log p_v - log q_v), reverse sum_v q_v (log q_v - log p_v)
 * loss = (alpha T^2 sum_r KD_r + (1 - alpha) sum_r CE_r) / norm     (Hinton et al.
 * 2015, arXiv:1503.02531: the T^2 keeps the soft-target gradients' scale).
 * Gradient with respect to z (c_kd = alpha T^2 / norm, c_ce = (1 - alpha) / norm):
 *   CE         c_ce (softmax(z)_v - [v == target])
 *   forward    c_kd s (q_v sum_i p~_i - sum_{i: ids_i = v} p~_i)     (p~ -> w for sampled)
 *   reverse    c_kd s q~_m (log q~_m - log p~_m - KD_r)  at v = ids_m, 0 elsewhere
 *   dense fwd  c_kd s (q_v - p_v);  dense rev  c_kd s q_v (log q_v - log p_v - KD_r)
 * then dx += dz @ w and dw += dz^T @ x, as op_xent.c; the [N, V] logits never
 * exist at once, and with grad_in_forward each chunk is computed once.  Row
 * sums are in double; the loss is summed serially (bit-identical reruns). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "simd.h"

typedef struct {
    int N, C, V, chunk, k, kind, mode, precision;
    float inv_t, t2;
    float c_ce, c_kd;         /* per unit of dloss: (1 - alpha) / norm, alpha T^2 / norm */
    int32_t *target;          /* [N] -1 where the row has no CE term */
    uint8_t *kd_row;          /* [N] 1 where the row has a KD term */
    const int32_t *ids;       /* [N, k] (copies in the arena) */
    const float *lp;          /* [N, k] */
    const float *wt;          /* [N, k] or NULL */
    const float *tx, *tw;     /* dense teacher: [N, Ct], [V, Ct] (borrowed) */
    int tc;                   /* Ct */
    double norm;
    int fused;
    float *dx1;
    int dw_done;
} kd_saved;

enum { KD_SPARSE = 0, KD_SAMPLED = 1, KD_DENSE = 2 };

ET_SIMD_CLONES
static float row_lse(const float *z, int V, float s) {
    const int V16 = V / 16 * 16;
    float m = V16 ? et_max16(z, V16) : z[0];
    for (int v = V16; v < V; v++) m = z[v] > m ? z[v] : m;
    m *= s; /* s > 0: max(s z) = s max(z) */
    double acc[16] = {0};
    for (int j = 0; j < V16; j += 16) {
        #pragma omp simd
        for (int u = 0; u < 16; u++) acc[u] += et_vexpf(s * z[j + u] - m);
    }
    double se = 0.0;
    for (int u = 0; u < 16; u++) se += acc[u];
    for (int v = V16; v < V; v++) se += et_vexpf(s * z[v] - m);
    return m + (float)log(se);
}

/* the exported symbol is a plain function (clang emits only the clones of a
   target_clones function declared without the attribute) */
float et_row_lse(const float *z, int V, float s) { return row_lse(z, V, s); }

/* zi [V] := a exp(z - L1) + b exp(s z - LT) (either term skipped when its factor is 0) */
ET_SIMD_CLONES
static void row_dense_grad(float *zi, int V, float a, float L1, float b, float s, float LT) {
    if (a != 0.0f && b != 0.0f) {
        #pragma omp simd
        for (int v = 0; v < V; v++) zi[v] = a * et_vexpf(zi[v] - L1) + b * et_vexpf(s * zi[v] - LT);
    } else if (a != 0.0f) {
        #pragma omp simd
        for (int v = 0; v < V; v++) zi[v] = a * et_vexpf(zi[v] - L1);
    } else {
        #pragma omp simd
        for (int v = 0; v < V; v++) zi[v] = b * et_vexpf(s * zi[v] - LT);
    }
}

/* One row: losses (ce, kd) and, when c != 0, zi [V] turned into dloss/dz for a
 * loss scaled by c (c multiplies c_ce and c_kd).  zt [V] dense teacher logits
 * or NULL; buf [k] per-row scratch (sparse modes). */
static void kd_row(const kd_saved *s, int r, float *zi, const float *zt, float c, double *buf, float *ce_out,
                   float *kd_out) {
    const int V = s->V, k = s->k, tg = s->target[r];
    int has_kd = s->kd_row[r];
    if (has_kd && s->mode == KD_SPARSE) { /* a row whose stored log-probs are all -inf has no teacher */
        int any = 0;
        for (int i = 0; i < k && !any; i++) any = s->lp[(size_t)r * k + i] > -INFINITY;
        has_kd = any;
    }
    const float st = s->inv_t;
    const float L1 = tg >= 0 ? et_row_lse(zi, V, 1.0f) : 0.0f;
    const float LT = has_kd ? (st == 1.0f && tg >= 0 ? L1 : et_row_lse(zi, V, st)) : 0.0f;
    double ce = tg >= 0 ? (double)L1 - zi[tg] : 0.0, kd = 0.0;
    const float gce = tg >= 0 ? c * s->c_ce : 0.0f, gkd = has_kd ? c * s->c_kd * st : 0.0f;
    float LTt = 0.0f;
    const int32_t *ids = s->ids ? s->ids + (size_t)r * k : NULL;
    const float *lp = s->lp ? s->lp + (size_t)r * k : NULL;
    const float *w = s->wt ? s->wt + (size_t)r * k : NULL;
    if (has_kd && s->mode == KD_DENSE) {
        LTt = et_row_lse(zt, V, st);
        for (int v = 0; v < V; v++) {
            const double lq = (double)st * zi[v] - LT, lpv = (double)st * zt[v] - LTt;
            kd += s->kind == ET_KD_FORWARD ? exp(lpv) * (lpv - lq) : exp(lq) * (lq - lpv);
        }
    } else if (has_kd && s->mode == KD_SAMPLED) {
        for (int i = 0; i < k; i++)
            if (w[i] > 0.0f) kd += (double)w[i] * ((double)lp[i] - ((double)st * zi[ids[i]] - LT));
    } else if (has_kd) {
        double mx = -INFINITY, se = 0.0;
        for (int i = 0; i < k; i++) mx = lp[i] > mx ? lp[i] : mx;
        for (int i = 0; i < k; i++) se += exp((double)lp[i] - mx);
        const double lz = mx + log(se); /* log sum_j exp(lp_j) */
        if (s->kind == ET_KD_FORWARD) {
            for (int i = 0; i < k; i++) {
                const double lpn = lp[i] - lz, p = exp(lpn);
                kd += p * (lpn - ((double)st * zi[ids[i]] - LT));
                buf[i] = p;
            }
        } else {
            double um = -INFINITY, su = 0.0;
            for (int i = 0; i < k; i++) um = st * zi[ids[i]] > um ? st * zi[ids[i]] : um;
            for (int i = 0; i < k; i++) su += exp((double)st * zi[ids[i]] - um);
            const double lk = um + log(su);
            for (int i = 0; i < k; i++) {
                const double lqn = (double)st * zi[ids[i]] - lk, q = exp(lqn), a = lqn - (lp[i] - lz);
                kd += q * a;
                buf[i] = a;
            }
            for (int i = 0; i < k; i++) buf[i] = exp((double)st * zi[ids[i]] - lk) * (buf[i] - kd);
        }
    }
    if (ce_out) *ce_out = (float)ce;
    if (kd_out) *kd_out = (float)kd;
    if (c == 0.0f) return;
    if (tg < 0 && !has_kd) {
        memset(zi, 0, (size_t)V * sizeof(float));
        return;
    }
    /* dense part: gce softmax(z) + gkd q (forward and sampled: sum_i p~_i = 1, sum w = 1) */
    const int q_term = has_kd && (s->kind == ET_KD_FORWARD || s->mode == KD_DENSE);
    if (has_kd && s->mode == KD_DENSE && s->kind == ET_KD_REVERSE) {
        /* gkd q_v (log q_v - log p_v - KD), plus the CE part */
        for (int v = 0; v < V; v++) {
            const double lq = (double)st * zi[v] - LT, lpv = (double)st * zt[v] - LTt;
            const double g = gkd * exp(lq) * (lq - lpv - kd);
            zi[v] = (float)(g + (gce != 0.0f ? gce * exp((double)zi[v] - L1) : 0.0));
        }
    } else if (gce != 0.0f || q_term) {
        row_dense_grad(zi, V, gce, L1, q_term ? gkd : 0.0f, st, LT);
    } else {
        memset(zi, 0, (size_t)V * sizeof(float));
    }
    if (tg >= 0) zi[tg] -= gce;
    if (!has_kd) return;
    if (s->mode == KD_DENSE) {
        if (s->kind == ET_KD_FORWARD)
            for (int v = 0; v < V; v++) zi[v] -= gkd * (float)exp((double)st * zt[v] - LTt);
    } else if (s->mode == KD_SAMPLED) {
        for (int i = 0; i < k; i++) zi[ids[i]] -= gkd * w[i];
    } else if (s->kind == ET_KD_FORWARD) {
        for (int i = 0; i < k; i++) zi[ids[i]] -= gkd * (float)buf[i];
    } else {
        for (int i = 0; i < k; i++) zi[ids[i]] += gkd * (float)buf[i];
    }
}

/* Student (and dense teacher) logits of rows [r0, r0+nr) into z (and zt). */
static void kd_logits(const kd_saved *s, const float *x, const float *w, int r0, int nr, float *z, float *zt) {
    et_gemm(s->precision, 0, 1, nr, s->V, s->C, 1.0f, x + (size_t)r0 * s->C, s->C, w, s->C, 0.0f, z, s->V);
    if (zt) et_gemm(s->precision, 0, 1, nr, s->V, s->tc, 1.0f, s->tx + (size_t)r0 * s->tc, s->tc, s->tw, s->tc, 0.0f, zt, s->V);
}

/* Scratch for one chunk: z [chunk, V], zt [chunk, V] (dense), buf [chunk, k] doubles (sparse). */
static int kd_scratch(et_tape *t, const kd_saved *s, float **z, float **zt, double **buf) {
    const size_t zn = (size_t)s->chunk * s->V, bn = s->mode == KD_DENSE ? 0 : (size_t)s->chunk * s->k;
    char *p = et_tape_scratch(t, zn * sizeof(float) * (s->mode == KD_DENSE ? 2 : 1) + bn * sizeof(double) + 64);
    if (!p) return -1;
    *buf = (double *)p;
    *z = (float *)(p + bn * sizeof(double));
    *zt = s->mode == KD_DENSE ? *z + zn : NULL;
    return 0;
}

/* Chunk by chunk: recompute the logits, make dz for a loss scaled by c, and
 * dx += dz @ w (dx may be NULL), dw += dz^T @ x (dw may be NULL). */
static void kd_grad_chunks(et_tape *t, const kd_saved *s, const et_tensor *x, const et_tensor *w, float c, float *dx,
                           float *dw) {
    float *z, *zt;
    double *buf;
    if (kd_scratch(t, s, &z, &zt, &buf)) return;
    for (int r0 = 0; r0 < s->N; r0 += s->chunk) {
        const int nr = s->N - r0 < s->chunk ? s->N - r0 : s->chunk;
        kd_logits(s, x->data, w->data, r0, nr, z, zt);
        #pragma omp parallel for schedule(dynamic, 4) if ((size_t)nr * s->V > ET_OMP_MIN_WORK)
        for (int i = 0; i < nr; i++)
            kd_row(s, r0 + i, z + (size_t)i * s->V, zt ? zt + (size_t)i * s->V : NULL, c, buf + (size_t)i * s->k, NULL,
                   NULL);
        if (dx) et_gemm(s->precision, 0, 0, nr, s->C, s->V, 1.0f, z, s->V, w->data, s->C, 1.0f, dx + (size_t)r0 * s->C, s->C);
        if (dw) et_gemm(s->precision, 1, 0, s->V, s->C, nr, 1.0f, z, s->V, x->data + (size_t)r0 * s->C, s->C, 1.0f, dw, s->C);
    }
}

static void kd_backward(et_tape *t, const et_node *nd) {
    et_tensor *x = nd->in[0], *w = nd->in[1];
    const kd_saved *s = nd->saved;
    int fresh = 0;
    float *dx = s->fused && s->dx1 ? et_grad_fresh(t, x, &fresh) : et_grad(t, x), *dw = et_grad(t, w);
    if (t->code) return;
    if (s->norm == 0.0) {
        if (fresh) memset(dx, 0, x->n * sizeof(float));
        return;
    }
    const float g = nd->out->grad[0];
    if (!s->fused) {
        kd_grad_chunks(t, s, x, w, g, dx, dw);
        return;
    }
    if (dx && s->dx1) et_fused_dx(dx, s->dx1, g, x->n, fresh);
    if (dw && g != 1.0f)
        kd_grad_chunks(t, s, x, w, g - 1.0f, NULL, dw);
    else if (dw && !s->dw_done)
        kd_grad_chunks(t, s, x, w, g, NULL, dw);
}

et_tensor *et_kd_loss(et_tape *t, const char *name, et_tensor *x, et_tensor *w, const int32_t *targets,
                      const et_kd_opts *o) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    if (!x || !w || !o) return et_tape_fail(t, ET_EINPUT, "kd_loss %s: NULL input", nm);
    if (x->ndim < 1 || w->ndim != 2 || (size_t)w->shape[1] != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "kd_loss %s: x rows have %zu columns, weight %s is not [V, %zu]", nm,
                            et_cols(x), w->name, et_cols(x));
    if (et_rows(x) > INT32_MAX || w->shape[0] > INT32_MAX || w->shape[1] > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "kd_loss %s: dimensions exceed the BLAS int range", nm);
    const int N = (int)et_rows(x), C = (int)et_cols(x), V = (int)w->shape[0];
    if (!(o->temperature > 0.0f) || !isfinite(o->temperature) || !(o->alpha >= 0.0f && o->alpha <= 1.0f))
        return et_tape_fail(t, ET_EINPUT, "kd_loss %s: temperature %g must be > 0 and alpha %g in [0, 1]", nm,
                            o->temperature, o->alpha);
    if (o->kind != ET_KD_FORWARD && o->kind != ET_KD_REVERSE)
        return et_tape_fail(t, ET_EINPUT, "kd_loss %s: kind %d is not forward or reverse", nm, o->kind);
    if (o->norm < 0 || o->chunk_rows < 0) return et_tape_fail(t, ET_EINPUT, "kd_loss %s: negative norm or chunk_rows", nm);
    if (o->alpha < 1.0f && !targets) return et_tape_fail(t, ET_EINPUT, "kd_loss %s: alpha < 1 needs targets", nm);
    const int dense = o->teacher_x != NULL;
    int mode = dense ? KD_DENSE : o->weights ? KD_SAMPLED : KD_SPARSE;
    if (dense) {
        const et_tensor *tx = o->teacher_x, *tw = o->teacher_w;
        if (!tw || tw->ndim != 2 || tw->shape[0] != V || (size_t)tw->shape[1] != et_cols(tx) || et_rows(tx) != (size_t)N)
            return et_tape_fail(t, ET_EINPUT, "kd_loss %s: the teacher's hidden states must be [%d, Ct] and its output [%d, Ct]",
                                nm, N, V);
    } else if (o->alpha > 0.0f && (!o->ids || !o->logprobs || o->k < 1 || o->k > V)) {
        return et_tape_fail(t, ET_EINPUT, "kd_loss %s: a stored teacher needs ids and logprobs with 1 <= k (%d) <= n_vocab (%d)",
                            nm, o->k, V);
    }
    if (mode == KD_SAMPLED && o->kind == ET_KD_REVERSE)
        return et_tape_fail(t, ET_EINPUT, "kd_loss %s: reverse KL is not defined on sampled teacher tokens (use top-k or an online teacher)", nm);
    const int k = dense || o->alpha == 0.0f ? 0 : o->k;
    if (o->alpha == 0.0f && !dense) mode = KD_SPARSE;
    int chunk;
    et_tensor *out = et_lmhead_loss_out(t, name, x, w, o->chunk_rows, N, V, &chunk), *in[2] = {x, w};
    const int wants = out && out->requires_grad;
    kd_saved *s = out ? et_tape_alloc(t, sizeof *s) : NULL;
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->N = N, s->C = C, s->V = V, s->chunk = chunk, s->k = k, s->kind = o->kind, s->mode = mode;
    s->precision = t->gemm_precision == ET_GEMM_BF16 ? ET_GEMM_BF16 : ET_GEMM_F32;
    s->inv_t = 1.0f / o->temperature, s->t2 = o->temperature * o->temperature;
    s->target = et_tape_alloc(t, (size_t)N * sizeof(int32_t));
    s->kd_row = s->target ? et_tape_alloc(t, (size_t)N) : NULL;
    if (!s->kd_row) return NULL;
    int n_in = 0;
    for (int i = 0; i < N; i++) {
        const int in_mask = !o->mask || o->mask[i];
        const int tg = targets ? targets[i] : -1;
        if (tg >= V) return et_tape_fail(t, ET_EINPUT, "kd_loss %s: target %d at row %d outside [0, %d)", nm, tg, i, V);
        s->target[i] = in_mask && tg >= 0 ? tg : -1;
        s->kd_row[i] = in_mask && o->alpha > 0.0f && (!o->kd_mask || o->kd_mask[i]);
        n_in += s->target[i] >= 0 || s->kd_row[i];
    }
    if (k) {
        int32_t *ids = et_tape_alloc(t, (size_t)N * k * sizeof(int32_t));
        float *lp = ids ? et_tape_alloc(t, (size_t)N * k * sizeof(float)) : NULL;
        float *wt = lp && mode == KD_SAMPLED ? et_tape_alloc(t, (size_t)N * k * sizeof(float)) : NULL;
        if (!lp || (mode == KD_SAMPLED && !wt)) return NULL;
        for (size_t i = 0; i < (size_t)N * k; i++) {
            const int r = (int)(i / (size_t)k);
            ids[i] = o->ids[i], lp[i] = o->logprobs[i];
            if (wt) wt[i] = o->weights[i];
            if (!s->kd_row[r]) continue;
            if (ids[i] < 0 || ids[i] >= V || isnan(lp[i]) || lp[i] > 1e-3f || (wt && !(wt[i] >= 0.0f && wt[i] <= 1.0f)))
                return et_tape_fail(t, ET_EINPUT, "kd_loss %s: row %d, entry %d: id %d, log-prob %g%s", nm, r,
                                    (int)(i % (size_t)k), ids[i], lp[i], wt ? " or a weight outside [0, 1]" : "");
        }
        s->ids = ids, s->lp = lp, s->wt = wt;
    }
    if (dense) s->tx = o->teacher_x->data, s->tw = o->teacher_w->data, s->tc = (int)et_cols(o->teacher_x);
    s->norm = n_in == 0 ? 0.0 : o->norm > 0 ? o->norm : (double)n_in;
    s->c_ce = s->norm ? (float)((1.0 - o->alpha) / s->norm) : 0.0f;
    s->c_kd = s->norm ? (float)(o->alpha * (double)s->t2 / s->norm) : 0.0f;

    float *row_ce = o->row_ce_out ? o->row_ce_out : et_tape_alloc(t, (size_t)N * sizeof(float));
    float *row_kd = o->row_kd_out ? o->row_kd_out : et_tape_alloc(t, (size_t)N * sizeof(float));
    if (!row_ce || !row_kd) return NULL;
    const int fused = wants && o->grad_in_forward && s->norm != 0.0;
    float *dw = fused ? et_grad(t, w) : NULL;
    if (fused && x->requires_grad && !(s->dx1 = et_tape_alloc(t, (size_t)N * C * sizeof(float)))) return NULL;
    s->fused = fused;
    s->dw_done = fused && dw;
    float *z, *zt;
    double *buf;
    if (kd_scratch(t, s, &z, &zt, &buf)) return NULL;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int nr = N - r0 < chunk ? N - r0 : chunk;
        kd_logits(s, x->data, w->data, r0, nr, z, zt);
        #pragma omp parallel for schedule(dynamic, 4) if ((size_t)nr * V > ET_OMP_MIN_WORK)
        for (int i = 0; i < nr; i++)
            kd_row(s, r0 + i, z + (size_t)i * V, zt ? zt + (size_t)i * V : NULL, fused ? 1.0f : 0.0f,
                   buf + (size_t)i * k, row_ce + r0 + i, row_kd + r0 + i);
        if (!fused) continue;
        if (s->dx1) et_gemm(s->precision, 0, 0, nr, C, V, 1.0f, z, V, w->data, C, 0.0f, s->dx1 + (size_t)r0 * C, C);
        if (dw) et_gemm(s->precision, 1, 0, V, C, nr, 1.0f, z, V, x->data + (size_t)r0 * C, C, 1.0f, dw, C);
    }
    double ce = 0.0, kd = 0.0;
    for (int i = 0; i < N; i++) {
        if (s->target[i] >= 0) ce += row_ce[i];
        else row_ce[i] = 0.0f;
        if (s->kd_row[i]) kd += row_kd[i];
        else row_kd[i] = 0.0f;
    }
    out->data[0] = s->norm == 0.0 ? 0.0f : (float)((o->alpha * (double)s->t2 * kd + (1.0 - o->alpha) * ce) / s->norm);
    if (wants && !et_tape_push(t, "kd_loss", kd_backward, out, in, 2, s)) return NULL;
    return out;
}

/* ---- hidden-state distillation (TinyBERT, Jiao et al. 2019, arXiv:1909.10351) ----
 * x [N, C] student hidden states, y [N, C] the teacher's (a constant), per row r in the mask:
 *   MSE     l_r = (1/C) sum_c (x_rc - y_rc)^2          dl_r/dx_rc = 2 (x_rc - y_rc) / C
 *   cosine  l_r = 1 - x_r.y_r / (|x_r| |y_r|)           dl_r/dx_r = -(y_r / (|x_r||y_r|) - (x_r.y_r) x_r / (|x_r|^3 |y_r|))
 * loss = sum_r l_r / norm. */
typedef struct {
    int N, C, kind;
    double norm;
    const float *y;
    uint8_t *in;
} hid_saved;

static void hidden_backward(et_tape *t, const et_node *nd) {
    et_tensor *x = nd->in[0];
    const hid_saved *s = nd->saved;
    float *dx = et_grad(t, x);
    if (!dx || s->norm == 0.0) return;
    const double g = nd->out->grad[0] / s->norm;
    #pragma omp parallel for schedule(static) if ((size_t)s->N * s->C > ET_OMP_MIN_WORK)
    for (int r = 0; r < s->N; r++) {
        if (!s->in[r]) continue;
        const float *xr = x->data + (size_t)r * s->C, *yr = s->y + (size_t)r * s->C;
        float *d = dx + (size_t)r * s->C;
        if (s->kind == ET_HIDDEN_MSE) {
            for (int c = 0; c < s->C; c++) d[c] += (float)(g * 2.0 * ((double)xr[c] - yr[c]) / s->C);
            continue;
        }
        double xx = 0, yy = 0, xy = 0;
        for (int c = 0; c < s->C; c++) xx += (double)xr[c] * xr[c], yy += (double)yr[c] * yr[c], xy += (double)xr[c] * yr[c];
        const double nx = sqrt(xx), ny = sqrt(yy);
        if (nx == 0 || ny == 0) continue;
        for (int c = 0; c < s->C; c++) d[c] += (float)(-g * (yr[c] / (nx * ny) - xy * xr[c] / (nx * nx * nx * ny)));
    }
}

et_tensor *et_hidden_loss(et_tape *t, const char *name, et_tensor *x, const float *y, const uint8_t *mask, int kind,
                          double norm) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    if (!x || !y) return et_tape_fail(t, ET_EINPUT, "hidden_loss %s: NULL input", nm);
    if (kind != ET_HIDDEN_MSE && kind != ET_HIDDEN_COSINE)
        return et_tape_fail(t, ET_EINPUT, "hidden_loss %s: kind %d is not MSE or cosine", nm, kind);
    if (norm < 0) return et_tape_fail(t, ET_EINPUT, "hidden_loss %s: negative norm", nm);
    const int N = (int)et_rows(x), C = (int)et_cols(x);
    et_tensor *in[1] = {x};
    int wants = et_tape_wants_grad(t, in, 1);
    et_tensor *out = et_tensor_2d(t, name, 1, 1, wants);
    if (out) out->ndim = 1;
    hid_saved *s = out ? et_tape_alloc(t, sizeof *s) : NULL;
    uint8_t *inm = s ? et_tape_alloc(t, (size_t)N) : NULL;
    if (!inm) return NULL;
    int n_in = 0;
    for (int r = 0; r < N; r++) n_in += inm[r] = !mask || mask[r];
    s->N = N, s->C = C, s->kind = kind, s->y = y, s->in = inm;
    s->norm = n_in == 0 ? 0.0 : norm > 0 ? norm : (double)n_in;
    double total = 0;
    for (int r = 0; r < N; r++) {
        if (!inm[r]) continue;
        const float *xr = x->data + (size_t)r * C, *yr = y + (size_t)r * C;
        if (kind == ET_HIDDEN_MSE) {
            double a = 0;
            for (int c = 0; c < C; c++) a += ((double)xr[c] - yr[c]) * ((double)xr[c] - yr[c]);
            total += a / C;
        } else {
            double xx = 0, yy = 0, xy = 0;
            for (int c = 0; c < C; c++) xx += (double)xr[c] * xr[c], yy += (double)yr[c] * yr[c], xy += (double)xr[c] * yr[c];
            total += xx > 0 && yy > 0 ? 1.0 - xy / sqrt(xx * yy) : 0.0;
        }
    }
    out->data[0] = s->norm == 0.0 ? 0.0f : (float)(total / s->norm);
    if (wants && !et_tape_push(t, "hidden_loss", hidden_backward, out, in, 1, s)) return NULL;
    return out;
}
