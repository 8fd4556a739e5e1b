/* train/op_lmhead.c — frozen LM head + cross-entropy with the gradient
 * computed in the forward pass (see op_lmhead.h).
 *
 * x [N, C], w [V, C], per chunk of R rows:
 *   z[R, V] = x_c @ w^T                                   et_gemm(NoTrans, Trans)
 *   per row: m = max z, e_v = exp(z_v - m) (kept in z), se = sum e_v (double),
 *            lse = m + log se, loss_i = lse - z_i[target_i]
 *   with a gradient: dz_v = c e_v / se - c [v == target], c = 1 / norm
 *                    dx1[chunk] = dz @ w                   et_gemm(NoTrans, NoTrans)
 * backward: dx += dloss * dx1. */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "op_lmhead.h"
#include "simd.h"

typedef struct lmhead_saved {
    float *dx1;     /* [N, C]: dloss/dx for an upstream gradient of 1 */
    size_t n;       /* N * C */
} lmhead_saved;

/* One row of logits z [V]: returns its logsumexp; z becomes exp(z - max)
 * and *se their sum (double lanes: V up to ~128k). */
ET_SIMD_CLONES
static float row_exp_lse(float *z, int V, double *se) {
    const int V16 = V / 16 * 16;
    float m = V16 ? et_max16(z, V16) : z[0];
    for (int v = V16; v < V; v++) m = z[v] > m ? z[v] : m;
    double acc[16] = {0};
    for (int j = 0; j < V16; j += 16) {
        #pragma omp simd
        for (int u = 0; u < 16; u++) {
            const float e = et_vexpf(z[j + u] - m);
            z[j + u] = e;
            acc[u] += e;
        }
    }
    double s = 0.0;
    for (int u = 0; u < 16; u++) s += acc[u];
    for (int v = V16; v < V; v++) {
        z[v] = et_vexpf(z[v] - m);
        s += z[v];
    }
    *se = s;
    return m + (float)log(s);
}

ET_SIMD_CLONES
static void row_scale(float *z, int V, float f) {
    #pragma omp simd
    for (int v = 0; v < V; v++) z[v] *= f;
}

static void lmhead_backward(et_tape *t, const et_node *nd) {
    const lmhead_saved *s = nd->saved;
    int fresh = 0;
    float *dx = et_grad_fresh(t, nd->in[0], &fresh);
    if (!dx || t->code) return;
    const float g = nd->out->grad[0];
    const size_t n = s->n;
    #pragma omp parallel for schedule(static) if (n > ET_OMP_MIN_WORK)
    for (size_t i = 0; i < n; i++) dx[i] = (fresh ? 0.0f : dx[i]) + g * s->dx1[i];
}

et_tensor *et_lm_head_xent(et_tape *t, const char *name, et_tensor *x, const et_tensor *w, const int32_t *targets,
                           const et_xent_opts *opts) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    static const et_xent_opts none = {0};
    if (!opts) opts = &none;
    if (!x || !w || !targets) return et_tape_fail(t, ET_EINPUT, "lm_head_xent %s: NULL input", nm);
    if (x->ndim < 1 || w->ndim != 2 || (size_t)w->shape[1] != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "lm_head_xent %s: x rows have %zu columns, weight %s is not [V, %zu]", nm,
                            et_cols(x), w->name, et_cols(x));
    if (et_rows(x) > INT32_MAX || w->shape[0] > INT32_MAX || w->shape[1] > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "lm_head_xent %s: dimensions exceed the BLAS int range", nm);
    if (opts->norm < 0 || opts->chunk_rows < 0)
        return et_tape_fail(t, ET_EINPUT, "lm_head_xent %s: negative norm or chunk_rows", nm);
    const int N = (int)et_rows(x), C = (int)et_cols(x), V = (int)w->shape[0];
    for (int i = 0; i < N; i++)
        if (targets[i] >= V)
            return et_tape_fail(t, ET_EINPUT, "lm_head_xent %s: target %d at row %d outside [0, %d)", nm, targets[i],
                                i, V);
    int chunk = opts->chunk_rows;
    if (!chunk) chunk = (1 << 24) / V > 0 ? (1 << 24) / V : 1;
    if (chunk > N) chunk = N;
    const int precision = t->gemm_precision == ET_GEMM_BF16 ? ET_GEMM_BF16 : ET_GEMM_F32;

    et_tensor *in[1] = {x};
    const int wants = et_tape_wants_grad(t, in, 1);
    et_tensor *out = et_tensor_2d(t, name, 1, 1, wants);
    if (!out) return NULL;
    out->ndim = 1;
    int n_in = 0;
    for (int i = 0; i < N; i++) n_in += targets[i] >= 0 && (!opts->mask || opts->mask[i]);
    const double norm = n_in == 0 ? 0.0 : opts->norm > 0 ? opts->norm : (double)n_in;
    const int grad = wants && norm > 0.0;
    lmhead_saved *s = NULL;
    if (wants) {
        s = et_tape_alloc(t, sizeof *s);
        if (!s) return NULL;
        s->n = (size_t)N * (size_t)C;
        s->dx1 = et_tape_alloc(t, s->n * sizeof(float));
        if (!s->dx1) return NULL;
        if (!grad) memset(s->dx1, 0, s->n * sizeof(float));
    }
    float *row_loss = opts->row_loss_out ? opts->row_loss_out : et_tape_alloc(t, (size_t)N * sizeof(float));
    float *z = row_loss ? et_tape_scratch(t, (size_t)chunk * (size_t)V * sizeof(float)) : NULL;
    if (!z) return NULL;
    const float c = grad ? (float)(1.0 / norm) : 0.0f;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int nr = N - r0 < chunk ? N - r0 : chunk;
        et_gemm(precision, 0, 1, nr, V, C, 1.0f, x->data + (size_t)r0 * C, C, w->data, C, 0.0f, z, V);
        if (opts->logits_out) memcpy(opts->logits_out + (size_t)r0 * V, z, (size_t)nr * V * sizeof(float));
        #pragma omp parallel for schedule(static) if ((size_t)nr * V > ET_OMP_MIN_WORK)
        for (int i = 0; i < nr; i++) {
            float *zi = z + (size_t)i * V;
            const int row = r0 + i;
            const int in_loss = targets[row] >= 0 && (!opts->mask || opts->mask[row]);
            const float z_tg = in_loss ? zi[targets[row]] : 0.0f;
            double se;
            const float lse = row_exp_lse(zi, V, &se);
            row_loss[row] = in_loss ? lse - z_tg : 0.0f;
            if (!grad) continue;
            if (!in_loss) {
                memset(zi, 0, (size_t)V * sizeof(float));
                continue;
            }
            row_scale(zi, V, (float)(c / se));
            zi[targets[row]] -= c;
        }
        if (grad)
            et_gemm(precision, 0, 0, nr, C, V, 1.0f, z, V, w->data, C, 0.0f, s->dx1 + (size_t)r0 * C, C);
    }
    double total = 0.0; /* serial, fixed order: the loss is the same on any thread count */
    for (int i = 0; i < N; i++) total += row_loss[i];
    out->data[0] = norm == 0.0 ? 0.0f : (float)(total / norm);
    if (wants && !et_tape_push(t, "lm_head_xent", lmhead_backward, out, in, 1, s)) return NULL;
    return out;
}
