/* train/ffn_frozen.c — fused frozen feed-forward half of a llama layer (see ffn_frozen.h).
 * Row reductions (mean of squares, the rmsnorm backward dot) in double as
 * train/op_rmsnorm.c; element-wise kernels compiled per CPU (ET_SIMD_CLONES)
 * and called from plain OpenMP loops. */
#include <math.h>
#include <string.h>

#include "../quant/quant.h"
#include "ffn_frozen.h"
#include "gemm.h"
#include "simd.h"

typedef struct ffn_saved {
    const float *norm_w;
    float eps;
    et_frozen_w gate, up, down;
    int precision;
    float *g, *u;       /* [M, F] */
    float *rstd;        /* [M] */
    float *tile;        /* tile_rows * max(C, F) floats, or NULL when no weight needs one */
    int64_t tile_rows;
} ffn_saved;

/* h[C] = x * r * w, returns r = 1/sqrt(mean x^2 + eps) */
static float rms_row(const float *x, const float *w, int C, float eps, float *h) {
    double ss = 0.0;
    for (int j = 0; j < C; j++) ss += (double)x[j] * x[j];
    const float r = (float)(1.0 / sqrt(ss / C + eps));
    for (int j = 0; j < C; j++) h[j] = x[j] * r * w[j];
    return r;
}

ET_SIMD_CLONES
static void swiglu_row(const float *g, const float *u, float *s, int n) {
    #pragma omp simd
    for (int k = 0; k < n; k++) s[k] = g[k] / (1.0f + et_vexpf(-g[k])) * u[k];
}

/* ds (in: dL/ds) -> dg in place; du = ds * silu(g) */
ET_SIMD_CLONES
static void swiglu_back_row(const float *g, const float *u, float *ds, float *du, int n) {
    #pragma omp simd
    for (int k = 0; k < n; k++) {
        const float sg = 1.0f / (1.0f + et_vexpf(-g[k]));
        const float d = ds[k];
        du[k] = d * g[k] * sg;
        ds[k] = d * u[k] * sg * (1.0f + g[k] * (1.0f - sg));
    }
}

static void swiglu_rows(const float *g, const float *u, float *s, int M, int F) {
    #pragma omp parallel for schedule(static) if ((size_t)M * F > ET_OMP_MIN_WORK)
    for (int i = 0; i < M; i++)
        swiglu_row(g + (size_t)i * F, u + (size_t)i * F, s + (size_t)i * F, F);
}

static void ffn_backward(et_tape *t, const et_node *nd) {
    const ffn_saved *s = nd->saved;
    et_tensor *x = nd->in[0], *y = nd->out;
    int fresh = 0;
    float *dx = et_grad_fresh(t, x, &fresh); /* every element written below */
    if (!dx || t->code) return;
    const int M = (int)et_rows(x), C = (int)et_cols(x), F = (int)s->gate.n_out;
    float *buf = et_tape_scratch(t, ((size_t)2 * F + C) * (size_t)M * sizeof(float));
    if (!buf) return;
    float *ds = buf, *du = buf + (size_t)M * F, *dh = buf + (size_t)2 * M * F;
    const float *dy = y->grad;
    et_frozen_w_backward(&s->down, s->precision, dy, M, 0.0f, ds, s->tile, s->tile_rows);
    #pragma omp parallel for schedule(static) if ((size_t)M * F > ET_OMP_MIN_WORK)
    for (int i = 0; i < M; i++) {
        const size_t o = (size_t)i * F;
        swiglu_back_row(s->g + o, s->u + o, ds + o, du + o, F);
    }
    et_frozen_w_backward(&s->gate, s->precision, ds, M, 0.0f, dh, s->tile, s->tile_rows);
    et_frozen_w_backward(&s->up, s->precision, du, M, 1.0f, dh, s->tile, s->tile_rows);
    const float *w = s->norm_w;
    #pragma omp parallel for schedule(static) if ((size_t)M * C > ET_OMP_MIN_WORK)
    for (int i = 0; i < M; i++) {
        const float *xi = x->data + (size_t)i * C, *dhi = dh + (size_t)i * C, *dyi = dy + (size_t)i * C;
        float *dxi = dx + (size_t)i * C;
        const float r = s->rstd[i];
        double dot = 0.0;
        for (int j = 0; j < C; j++) dot += (double)dhi[j] * w[j] * xi[j];
        const float c = (float)(dot * r * r * r / C);
        if (fresh)
            for (int j = 0; j < C; j++) dxi[j] = dyi[j] + r * dhi[j] * w[j] - xi[j] * c;
        else
            for (int j = 0; j < C; j++) dxi[j] += dyi[j] + r * dhi[j] * w[j] - xi[j] * c;
    }
}

static int w_ok(const et_frozen_w *w, int64_t n_out, int64_t n_in) {
    return w && w->data && et_quant_supported(w->type) && w->n_out == n_out && w->n_in == n_in &&
           et_frozen_w_bytes(w) && n_out <= INT32_MAX && n_in <= INT32_MAX;
}

et_tensor *et_ffn_frozen(et_tape *t, const char *name, et_tensor *x, const et_tensor *norm_w, float eps,
                         const et_frozen_w *gate, const et_frozen_w *up, const et_frozen_w *down, float *tile,
                         size_t tile_floats) {
    if (t->code) return NULL;
    const char *nm = name ? name : "";
    if (!x || !norm_w || !gate) return et_tape_fail(t, ET_EINPUT, "ffn_frozen %s: NULL input", nm);
    const int64_t C = (int64_t)et_cols(x), F = gate->n_out;
    if (norm_w->n != (size_t)C || !w_ok(gate, F, C) || !w_ok(up, F, C) || !w_ok(down, C, F) ||
        et_rows(x) > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "ffn_frozen %s: x [.., %lld], norm [%zu], gate/up must be [n_ff, %lld] "
                            "and down [%lld, n_ff] of a supported type", nm, (long long)C, norm_w->n, (long long)C,
                            (long long)C);
    const int M = (int)et_rows(x);
    const int precision = t->gemm_precision == ET_GEMM_BF16 ? ET_GEMM_BF16 : ET_GEMM_F32;
    et_tensor *in[1] = {x};
    const int wants = et_tape_wants_grad(t, in, 1);
    et_tensor *y = et_tensor_new(t, name, x->ndim, x->shape, wants);
    ffn_saved *s = y ? et_tape_alloc(t, sizeof *s) : NULL;
    if (!s) return NULL;
    *s = (ffn_saved){.norm_w = norm_w->data, .eps = eps, .gate = *gate, .up = *up, .down = *down,
                     .precision = precision};
    const int64_t kmax = C > F ? C : F;
    if (et_frozen_w_needs_tile(gate, precision) || et_frozen_w_needs_tile(up, precision) ||
        et_frozen_w_needs_tile(down, precision)) {
        if (tile && tile_floats >= (size_t)kmax) {
            s->tile = tile;
            s->tile_rows = (int64_t)(tile_floats / (size_t)kmax);
        } else {
            s->tile_rows = 256;
            s->tile = et_tape_alloc(t, (size_t)s->tile_rows * (size_t)kmax * sizeof(float));
            if (!s->tile) return NULL;
        }
    }
    s->g = et_tape_alloc(t, (size_t)M * (size_t)F * sizeof(float));
    s->u = s->g ? et_tape_alloc(t, (size_t)M * (size_t)F * sizeof(float)) : NULL;
    s->rstd = s->u ? et_tape_alloc(t, (size_t)M * sizeof(float)) : NULL;
    /* h [M, C] then swiglu(g, u) [M, F] in the same scratch */
    float *scr = s->rstd ? et_tape_scratch(t, (size_t)M * (size_t)kmax * sizeof(float)) : NULL;
    if (!scr) return NULL;
    #pragma omp parallel for schedule(static) if ((size_t)M * C > ET_OMP_MIN_WORK)
    for (int i = 0; i < M; i++)
        s->rstd[i] = rms_row(x->data + (size_t)i * C, norm_w->data, (int)C, eps, scr + (size_t)i * C);
    et_frozen_w_forward(gate, precision, scr, M, 0.0f, s->g, s->tile, s->tile_rows);
    et_frozen_w_forward(up, precision, scr, M, 0.0f, s->u, s->tile, s->tile_rows);
    swiglu_rows(s->g, s->u, scr, M, (int)F);
    memcpy(y->data, x->data, x->n * sizeof(float));
    et_frozen_w_forward(down, precision, scr, M, 1.0f, y->data, s->tile, s->tile_rows);
    if (wants && !et_tape_push(t, "ffn_frozen", ffn_backward, y, in, 1, s)) return NULL;
    return y;
}
