/* train/recompute.c — one layer with activation recomputation (see recompute.h). */
#include "recompute.h"

#include <stdio.h>
#include <string.h>

typedef struct recompute_saved {
    et_tape *inner;
    et_layer_fn fn;
    void *ctx;
    int l, T;
    const int32_t *pos;     /* copy in t's arena, or NULL */
} recompute_saved;

static void copy_error(et_tape *t, const et_tape *inner) {
    et_err e = {0};
    int code = et_tape_status(inner, &e);
    et_tape_fail(t, code ? code : ET_ERUN, "%s", e.msg);
}

static void recompute_backward(et_tape *t, const et_node *nd) {
    const recompute_saved *s = nd->saved;
    et_tensor *x = nd->in[0], *y = nd->out;
    et_tape *in = s->inner;
    et_tape_reset(in);
    in->gemm_precision = t->gemm_precision; /* the same GEMMs as the outer tape's */
    in->record = 1;
    et_tensor xl; /* the input as a leaf of the inner tape; its gradient lands in the inner arena */
    et_tensor_wrap(&xl, "layer_in", x->data, NULL, x->ndim, x->shape);
    xl.requires_grad = x->requires_grad;
    et_tensor *yi = s->fn(in, s->ctx, s->l, &xl, s->T, s->pos);
    if (!yi || yi->n != y->n || et_tape_backward_seed(in, yi, y->grad)) {
        copy_error(t, in);
        et_tape_reset(in);
        return;
    }
    float *dx = et_grad(t, x);
    if (dx && xl.grad) {
        const long n = (long)x->n;
        const float *g = xl.grad;
        #pragma omp parallel for schedule(static)
        for (long i = 0; i < n; i++) dx[i] += g[i];
    }
    et_tape_reset(in);
}

et_tensor *et_layer_recompute(et_tape *t, et_tape *inner, et_layer_fn fn, void *ctx, int l, et_tensor *x, int T,
                              const int32_t *pos) {
    if (t->code) return NULL;
    if (!x || !inner) return et_tape_fail(t, ET_EINPUT, "layer %d recompute: NULL input", l);
    if (!t->record) return fn(t, ctx, l, x, T, pos); /* nothing to recompute for */
    et_tape_reset(inner);
    inner->record = 0;
    inner->gemm_precision = t->gemm_precision;
    et_tensor *yi = fn(inner, ctx, l, x, T, pos);
    if (!yi) {
        copy_error(t, inner);
        et_tape_reset(inner);
        return NULL;
    }
    char name[48];
    snprintf(name, sizeof name, "l_out-%d", l);
    et_tensor *y = et_tensor_new(t, name, yi->ndim, yi->shape, 1);
    if (!y) return NULL;
    memcpy(y->data, yi->data, yi->n * sizeof(float));
    et_tape_reset(inner);
    inner->record = 1;
    recompute_saved *s = et_tape_alloc(t, sizeof *s);
    if (!s) return NULL;
    *s = (recompute_saved){.inner = inner, .fn = fn, .ctx = ctx, .l = l, .T = T, .pos = NULL};
    if (pos) {
        const size_t n = et_rows(x);
        int32_t *p = et_tape_alloc(t, n * sizeof *p);
        if (!p) return NULL;
        memcpy(p, pos, n * sizeof *p);
        s->pos = p;
    }
    et_tensor *in[1] = {x};
    if (!et_tape_push(t, "layer_recompute", recompute_backward, y, in, 1, s)) return NULL;
    return y;
}

static et_tensor *llama_layer_fn(et_tape *t, void *ctx, int l, et_tensor *x, int T, const int32_t *pos) {
    return et_llama_layer(t, ctx, l, x, T, pos);
}

et_tensor *et_llama_layer_recompute(et_tape *t, et_tape *inner, et_llama *L, int l, et_tensor *x, int T,
                                    const int32_t *pos) {
    return et_layer_recompute(t, inner, llama_layer_fn, L, l, x, T, pos);
}
