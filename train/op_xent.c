/* train/op_xent.c — fused LM head + softmax cross-entropy over chunks of rows (see ops.h).
 *
 * x [N, C], w [V, C] (GGUF [n_vocab, n_embd]), targets [N]; per chunk of R rows:
 *   z[R, V] = x_c @ w^T                          (sgemm NoTrans/Trans)
 *   lse_i = logsumexp_v z_iv,  loss_i = lse_i - z_i,target
 *   loss = (1/norm) sum_i loss_i  over rows in the loss
 * Backward, with c = dloss / norm, recomputing z chunk by chunk:
 *   dz_iv = c (exp(z_iv - lse_i) - [v == target_i])   (0 for rows not in the loss)
 *   dx_c += dz @ w        (sgemm NoTrans/NoTrans)
 *   dw   += dz^T @ x_c    (sgemm Trans/NoTrans)
 * so the [N, V] logits never exist at once (the same idea as the chunked
 * "fused linear cross-entropy" of Liger-Kernel; llm.c fuses softmax and
 * loss the same way).  Exponentials are summed in double, the total loss too.
 * The three products run on et_gemm in the tape's gemm_precision (f32, or
 * bf16 operands with f32 accumulation; train/gemm.h). */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "simd.h"

typedef struct {
    int N, C, V, chunk;
    int precision;    /* the tape's gemm_precision when the forward ran */
    int32_t *target;  /* [N] copy; -1 where the row is not in the loss */
    float *lse;       /* [N] */

    double norm;      /* 0 when no row is in the loss */
    int fused;        /* grad_in_forward applied: */
    float *dx1;       /*   [N, C] dloss/dx for dloss = 1 (NULL when x needs none) */
    int dw_done;      /*   dloss/dw for dloss = 1 already added into w's gradient */
} xent_saved;

void et_fused_dx(float *dx, const float *dx1, float g, size_t n, int fresh) {
    const long m = (long)n;
    if (fresh) {
        #pragma omp parallel for schedule(static) if (n > ET_OMP_MIN_WORK)
        for (long i = 0; i < m; i++) dx[i] = 0.0f + g * dx1[i];
    } else {
        #pragma omp parallel for schedule(static) if (n > ET_OMP_MIN_WORK)
        for (long i = 0; i < m; i++) dx[i] += g * dx1[i];
    }
}

/* z [V] := c * softmax(z) given its logsumexp L */
ET_SIMD_CLONES
static void row_scaled_softmax(float *z, int V, float L, float c) {
    #pragma omp simd
    for (int v = 0; v < V; v++) z[v] = c * et_vexpf(z[v] - L);
}

/* z[nr, V] = x[r0 : r0+nr] @ w^T */
static void chunk_logits(const xent_saved *s, const float *x, const float *w, int r0, int nr, float *z) {
    et_gemm(s->precision, 0, 1, nr, s->V, s->C, 1.0f, x + (size_t)r0 * s->C, s->C, w, s->C, 0.0f, z, s->V);
}

/* Chunk by chunk: recompute the logits, turn them into dz = c (softmax -
 * onehot), dx += dz @ w (dx may be NULL), dw += dz^T @ x (dw may be NULL). */
static void grad_chunks(et_tape *t, const xent_saved *s, const et_tensor *x, const et_tensor *w, float c,
                        float *dx, float *dw) {
    const int V = s->V, C = s->C;
    for (int r0 = 0; r0 < s->N; r0 += s->chunk) {
        const int nr = s->N - r0 < s->chunk ? s->N - r0 : s->chunk;
        float *z = et_tape_scratch(t, (size_t)s->chunk * V * sizeof(float));
        if (!z) return;
        chunk_logits(s, x->data, w->data, r0, nr, z);
        #pragma omp parallel for schedule(static) if ((size_t)nr * V > ET_OMP_MIN_WORK)
        for (int i = 0; i < nr; i++) {
            float *zi = z + (size_t)i * V;
            const int tg = s->target[r0 + i];
            if (tg < 0) { memset(zi, 0, (size_t)V * sizeof(float)); continue; }
            row_scaled_softmax(zi, V, s->lse[r0 + i], c);
            zi[tg] -= c;
        }
        if (dx) et_gemm(s->precision, 0, 0, nr, C, V, 1.0f, z, V, w->data, C, 1.0f, dx + (size_t)r0 * C, C);
        if (dw) et_gemm(s->precision, 1, 0, V, C, nr, 1.0f, z, V, x->data + (size_t)r0 * C, C, 1.0f, dw, C);
    }
}

static void xent_backward(et_tape *t, const et_node *nd) {
    et_tensor *x = nd->in[0], *w = nd->in[1];
    const xent_saved *s = nd->saved;
    /* with dx1, a first gradient of x is stored (0 + g dx1: the same floats
       as adding into zeros, -0 included) instead of zeroed, then added */
    int fresh = 0;
    float *dx = s->fused && s->dx1 ? et_grad_fresh(t, x, &fresh) : et_grad(t, x), *dw = et_grad(t, w);
    if (t->code) return;
    if (s->norm == 0.0) {
        if (fresh) memset(dx, 0, x->n * sizeof(float));
        return;
    }
    const float g = nd->out->grad[0];
    if (!s->fused) {
        grad_chunks(t, s, x, w, (float)(g / s->norm), dx, dw);
        return;
    }
    /* grad_in_forward: the gradients for g = 1 exist; scale dx1 by g, and
       (only when g != 1) add (g - 1) times dw's share, recomputed */
    if (dx && s->dx1) et_fused_dx(dx, s->dx1, g, x->n, fresh);
    if (dw && g != 1.0f)
        grad_chunks(t, s, x, w, (float)((g - 1.0f) / s->norm), NULL, dw);
    else if (dw && !s->dw_done)
        grad_chunks(t, s, x, w, (float)(g / s->norm), NULL, dw);
}

et_tensor *et_lmhead_loss_out(et_tape *t, const char *name, et_tensor *x, et_tensor *w, int chunk_rows, int N, int V,
                              int *chunk) {
    int c = chunk_rows ? chunk_rows : ((1 << 24) / V > 0 ? (1 << 24) / V : 1);
    /* as many chunks as that needs, of equal size (1024 rows at most 341:
       4 x 256, not 3 x 341 + 1, whose last GEMMs would pack the whole
       weight twice and rewrite all of dw for one row) */
    if (c < N) {
        const int nc = (N + c - 1) / c;
        c = (N + nc - 1) / nc;
    }
    *chunk = c > N ? N : c;
    et_tensor *in[2] = {x, w};
    et_tensor *out = et_tensor_2d(t, name, 1, 1, et_tape_wants_grad(t, in, 2));
    if (out) out->ndim = 1;
    return out;
}

et_tensor *et_cross_entropy(et_tape *t, const char *name, et_tensor *x, et_tensor *w,
                            const int32_t *targets, const et_xent_opts *opts) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    static const et_xent_opts none = {0};
    if (!opts) opts = &none;
    if (!x || !w || !targets) return et_tape_fail(t, ET_EINPUT, "cross_entropy %s: NULL input", nm);
    if (x->ndim < 1 || w->ndim != 2 || (size_t)w->shape[1] != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "cross_entropy %s: x rows have %zu columns, weight %s is not [V, %zu]",
                            nm, et_cols(x), w->name, et_cols(x));
    if (et_rows(x) > INT32_MAX || w->shape[0] > INT32_MAX || w->shape[1] > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "cross_entropy %s: dimensions exceed the BLAS int range", nm);
    if (opts->norm < 0 || opts->chunk_rows < 0)
        return et_tape_fail(t, ET_EINPUT, "cross_entropy %s: negative norm or chunk_rows", nm);
    const int N = (int)et_rows(x), C = (int)et_cols(x), V = (int)w->shape[0];
    for (int i = 0; i < N; i++)
        if (targets[i] >= V)
            return et_tape_fail(t, ET_EINPUT, "cross_entropy %s: target %d at row %d outside [0, %d)",
                                nm, targets[i], i, V);
    int chunk;
    et_tensor *out = et_lmhead_loss_out(t, name, x, w, opts->chunk_rows, N, V, &chunk), *in[2] = {x, w};
    const int wants = out && out->requires_grad;
    xent_saved *s = out ? et_tape_alloc(t, sizeof *s) : NULL;
    if (!s) return NULL;
    s->N = N; s->C = C; s->V = V; s->chunk = chunk;
    s->fused = 0, s->dx1 = NULL, s->dw_done = 0;
    s->precision = t->gemm_precision == ET_GEMM_BF16 ? ET_GEMM_BF16 : ET_GEMM_F32;
    s->target = et_tape_alloc(t, (size_t)N * sizeof(int32_t));
    s->lse = s->target ? et_tape_alloc(t, (size_t)N * sizeof(float)) : NULL;
    float *buf = opts->logits_out || !s->lse ? NULL : et_tape_scratch(t, (size_t)chunk * V * sizeof(float));
    if (!s->lse || (!buf && !opts->logits_out)) return NULL;
    int n_in = 0;
    for (int i = 0; i < N; i++) {
        const int keep = targets[i] >= 0 && (!opts->mask || opts->mask[i]);
        s->target[i] = keep ? targets[i] : -1;
        n_in += keep;
    }
    s->norm = n_in == 0 ? 0.0 : opts->norm > 0 ? opts->norm : (double)n_in;

    /* per-row losses, summed serially afterwards (a fixed order, unlike an
       OpenMP reduction, so the loss is bit-identical from run to run) */
    float *row_loss = opts->row_loss_out ? opts->row_loss_out : et_tape_alloc(t, (size_t)N * sizeof(float));
    if (!row_loss) return NULL;
    /* grad_in_forward: dz of each chunk made right away for dloss = 1 (each
       chunk of logits computed once; see ops.h) */
    const int fused = wants && opts->grad_in_forward && !opts->logits_out && s->norm != 0.0;
    const float c1 = fused ? (float)(1.0 / s->norm) : 0.0f;
    float *dw = fused ? et_grad(t, w) : NULL;
    if (fused && x->requires_grad && !(s->dx1 = et_tape_alloc(t, (size_t)N * C * sizeof(float)))) return NULL;
    s->fused = fused;
    s->dw_done = fused && dw;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int nr = N - r0 < chunk ? N - r0 : chunk;
        float *z = opts->logits_out ? opts->logits_out + (size_t)r0 * V : buf;
        chunk_logits(s, x->data, w->data, r0, nr, z);
        #pragma omp parallel for schedule(static) if ((size_t)nr * V > ET_OMP_MIN_WORK)
        for (int i = 0; i < nr; i++) {
            float *zi = z + (size_t)i * V;
            const float L = et_row_lse(zi, V, 1.0f);
            s->lse[r0 + i] = L;
            const int tg = s->target[r0 + i];
            row_loss[r0 + i] = tg < 0 ? 0.0f : L - zi[tg];
            if (!fused) continue;
            if (tg < 0) { memset(zi, 0, (size_t)V * sizeof(float)); continue; }
            row_scaled_softmax(zi, V, L, c1);
            zi[tg] -= c1;
        }
        if (!fused) continue;
        if (s->dx1) et_gemm(s->precision, 0, 0, nr, C, V, 1.0f, z, V, w->data, C, 0.0f, s->dx1 + (size_t)r0 * C, C);
        if (dw) et_gemm(s->precision, 1, 0, V, C, nr, 1.0f, z, V, x->data + (size_t)r0 * C, C, 1.0f, dw, C);
    }
    double total = 0.0;
    for (int i = 0; i < N; i++) total += row_loss[i];
    out->data[0] = s->norm == 0.0 ? 0.0f : (float)(total / s->norm);
    if (wants && !et_tape_push(t, "cross_entropy", xent_backward, out, in, 2, s)) return NULL;
    return out;
}
