/* train/train_llama.c — the llama forward/backward as an et_train_model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "qat.h"
#include "recompute.h"
#include "train_llama.h"

static double sum_rows(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

/* et_llama_forward, or the same graph with each layer recomputed in backward;
 * the loss is the cross-entropy or tl->loss_fn on the final hidden states. */
static et_tensor *forward_loss(et_train_llama *tl, et_tape *t, int B, int T, const et_xent_opts *xo) {
    et_llama *L = &tl->L;
    et_tensor *h;
    if (!tl->recompute || !t->record) {
        h = et_llama_hidden(t, L, tl->inputs, B, T, NULL);
    } else {
        et_tensor *x = et_embedding(t, "inp_embd", &L->tok_embd, tl->inputs, B * T);
        const int n_rc = tl->recompute_layers > 0 && tl->recompute_layers < L->n_layer ? tl->recompute_layers
                                                                                      : L->n_layer;
        for (int l = 0; l < L->n_layer; l++)
            x = l < n_rc ? et_llama_layer_recompute(t, &tl->inner, L, l, x, T, NULL) : et_llama_layer(t, L, l, x, T, NULL);
        h = et_llama_head_input(t, L, et_rmsnorm(t, "result_norm", x, &L->output_norm, L->rms_eps));
    }
    if (tl->loss_fn) return h ? tl->loss_fn(tl->loss_ctx, t, tl, h, B, T, xo->norm) : NULL;
    return et_cross_entropy(t, "loss", h, L->output, tl->targets, xo);
}

static int run_loss(et_train_llama *tl, const int32_t *tokens, const uint8_t *mask, int B, int T, double norm,
                    int backward, double *loss_sum, et_err *e) {
    int rc = et_batch_split(tokens, mask, B, T, &tl->inputs, &tl->targets, &tl->row_loss, &tl->cap, "train", e);
    if (rc) return rc;
    et_tape *t = &tl->tape;
    if (tl->qat) et_qat_sync(tl->qat);
    t->record = backward;
    /* backward is seeded with 1: the LM head's gradients are made in its forward (ops.h) */
    et_xent_opts xo = {.norm = norm, .chunk_rows = tl->chunk_rows, .row_loss_out = tl->row_loss,
                       .grad_in_forward = backward};
    et_tensor *loss = forward_loss(tl, t, B, T, &xo);
    rc = et_tape_status(t, e);
    if (!rc && backward) rc = et_tape_backward(t, loss);
    if (!rc) *loss_sum = sum_rows(tl->row_loss, (size_t)B * (size_t)T);
    et_tape_reset(t);
    t->record = 1;
    return rc;
}

static int fwd_bwd(void *ctx, const int32_t *tokens, const uint8_t *mask, int B, int T, double norm,
                   double *loss_sum, et_err *e) {
    return run_loss(ctx, tokens, mask, B, T, norm, 1, loss_sum, e);
}

static int forward(void *ctx, const int32_t *tokens, const uint8_t *mask, int B, int T, double *loss_sum,
                   et_err *e) {
    return run_loss(ctx, tokens, mask, B, T, 0.0, 0, loss_sum, e);
}

int et_train_llama_init(et_train_llama *tl, et_model *m, int chunk_rows, et_train_model *tm, et_err *e) {
    memset(tl, 0, sizeof *tl);
    tl->m = m;
    tl->chunk_rows = chunk_rows;
    int rc = et_model_grads_alloc(&tl->g, m, e);
    if (!rc) rc = et_llama_bind(&tl->L, m, &tl->g, e);
    if (!rc) rc = et_tape_init(&tl->tape, 0, e);
    if (!rc) rc = et_tape_init(&tl->inner, 0, e);
    if (rc) {
        et_train_llama_free(tl);
        return rc;
    }
    tl->n_t = tl->L.n_tensors;
    tl->t = calloc((size_t)(tl->n_t ? tl->n_t : 1), sizeof *tl->t);
    if (!tl->t) {
        et_train_llama_free(tl);
        return et_fail(e, ET_ERUN, "train: out of memory");
    }
    for (int i = 0; i < tl->n_t; i++) {
        const et_tensor *x = tl->L.tensors[i];
        et_named *d = &tl->t[i];
        snprintf(d->name, sizeof d->name, "%s", x->name);
        d->data = x->data;
        d->n_dims = x->ndim;
        d->ne[0] = x->shape[x->ndim - 1];
        d->ne[1] = x->ndim > 1 ? x->shape[0] : 1;
        d->n = x->n;
    }
    *tm = (et_train_model){.ctx = tl, .params = m->params, .grads = tl->g.params, .n = m->n_params,
                           .t = tl->t, .n_t = tl->n_t, .fwd_bwd = fwd_bwd, .forward = forward};
    return 0;
}

int et_train_llama_add_params(et_train_llama *tl, et_train_model *tm, int n, const char *const *names,
                              const int64_t *rows, const int64_t *cols, et_err *e) {
    if (tl->n_extra || tl->qat) return et_fail(e, ET_EUSAGE, "train: extra parameters must be added once, before hooks");
    if (n < 1 || n > 4096) return et_fail(e, ET_EUSAGE, "train: %d extra tensors", n);
    size_t total = tl->m->n_params;
    for (int i = 0; i < n; i++) {
        if (rows[i] < 1 || cols[i] < 0 || rows[i] > ((int64_t)1 << 31) || cols[i] > ((int64_t)1 << 31) ||
            strlen(names[i]) >= sizeof tl->t[0].name)
            return et_fail(e, ET_EUSAGE, "train: extra tensor %d: bad name or shape", i);
        total += (size_t)rows[i] * (size_t)(cols[i] ? cols[i] : 1);
    }
    et_named *t = realloc(tl->t, sizeof *t * (size_t)(tl->n_t + n));
    if (t) tl->t = t;
    tl->extra = calloc((size_t)n, sizeof *tl->extra);
    int rc = !t || !tl->extra ? et_fail(e, ET_ERUN, "train: out of memory") : 0;
    if (!rc) rc = et_model_grow_block(tl->m, total, e);
    if (!rc) rc = et_model_grow_block(&tl->g, total, e);
    if (rc) return rc;
    et_llama_unbind(&tl->L);
    if ((rc = et_llama_bind(&tl->L, tl->m, &tl->g, e))) return rc;
    for (int i = 0; i < tl->n_t; i++) tl->t[i].data = tl->L.tensors[i]->data; /* the same order, moved */
    size_t off = tl->m->n_params;
    for (int i = 0; i < n; i++) {
        const int64_t shape[2] = {rows[i], cols[i]};
        const size_t k = (size_t)rows[i] * (size_t)(cols[i] ? cols[i] : 1);
        et_tensor_wrap(&tl->extra[i], names[i], tl->m->params + off, tl->g.params + off, cols[i] ? 2 : 1, shape);
        et_named *d = &tl->t[tl->n_t + i];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", names[i]);
        d->data = tl->m->params + off;
        d->n_dims = cols[i] ? 2 : 1;
        d->ne[0] = cols[i] ? cols[i] : rows[i];
        d->ne[1] = cols[i] ? rows[i] : 1;
        d->n = k;
        off += k;
    }
    tl->n_t += n;
    tl->n_extra = n;
    tm->params = tl->m->params, tm->grads = tl->g.params, tm->n = total, tm->t = tl->t, tm->n_t = tl->n_t;
    return 0;
}

void et_train_llama_free(et_train_llama *tl) {
    free(tl->extra);
    et_tape_free(&tl->tape);
    et_tape_free(&tl->inner);
    et_llama_unbind(&tl->L);
    et_model_grads_free(&tl->g);
    free(tl->t);
    free(tl->inputs);
    free(tl->targets);
    free(tl->row_loss);
    memset(tl, 0, sizeof *tl);
}
