/* lora/lora_train.c — LoRA fine-tuning bound to the training loop (see lora_train.h). */
#include "lora_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/batch.h"

uint64_t lora_batch_seed(uint64_t seed, const int32_t *tokens, size_t n) {
    uint64_t h = seed ^ 0x6A09E667F3BCC909ull;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = h ^ (uint32_t)tokens[i];
        h = et_splitmix64(&x); /* the splitmix64 mix of (x + golden ratio) */
    }
    return h;
}

static int run_loss(lora_train *lt, const int32_t *tokens, const uint8_t *mask, int B, int T, double norm,
                    int backward, double *loss_sum, et_err *e) {
    int rc = et_batch_split(tokens, mask, B, T, &lt->inputs, &lt->targets, &lt->row_loss, &lt->cap, "lora", e);
    if (rc) return rc;
    et_tape *t = &lt->tape;
    t->record = backward;
    lt->ll.train = backward;
    lt->ll.recompute = lt->recompute;
    lt->ll.seed = lora_batch_seed(lt->ad->seed, tokens, (size_t)B * (size_t)(T + 1));
    et_xent_opts xo = {.norm = norm, .chunk_rows = lt->chunk_rows, .row_loss_out = lt->row_loss};
    et_tensor *loss = et_lora_llama_forward(t, &lt->ll, lt->inputs, lt->targets, B, T, &xo);
    rc = et_tape_status(t, e);
    if (!rc && backward) rc = et_tape_backward(t, loss);
    if (!rc) {
        double s = 0.0;
        for (size_t i = 0; i < (size_t)B * (size_t)T; i++) s += lt->row_loss[i];
        *loss_sum = s;
    }
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

static int init(lora_train *lt, et_model *m, uint32_t base_type,
                int (*fill)(void *, const char *, float *, int64_t, int64_t, et_err *), void *fill_ctx,
                lora_adapter *ad, et_train_model *tm, et_err *e) {
    memset(lt, 0, sizeof *lt);
    lt->ad = ad;
    int rc = lora_adapter_check_model(ad, "adapter", m, e);
    if (rc) return rc;
    if ((rc = fill ? et_lora_llama_init_fill(&lt->ll, m, base_type, fill, fill_ctx, e)
                   : et_lora_llama_init(&lt->ll, m, base_type, e)))
        return rc;
    lt->ll.dropout = ad->dropout;
    lt->grads = calloc(ad->n_params ? ad->n_params : 1, sizeof(float));
    lt->t = calloc((size_t)(2 * ad->n_tensors + 1), sizeof *lt->t);
    if (!lt->grads || !lt->t || (rc = et_tape_init(&lt->tape, 0, e))) {
        lora_train_free(lt);
        return rc ? rc : et_fail(e, ET_ERUN, "lora: out of memory");
    }
    for (int i = 0; i < ad->n_tensors; i++) {
        const lora_tensor *x = &ad->tensors[i];
        float *ga = lt->grads + (x->lora_a - ad->params), *gb = lt->grads + (x->lora_b - ad->params);
        rc = et_lora_llama_attach(&lt->ll, x->layer, x->target, x->lora_a, ga, x->lora_b, gb, x->rank,
                                  lora_tensor_scale(ad, x), e);
        if (rc) {
            lora_train_free(lt);
            return rc;
        }
        et_named *na = &lt->t[lt->n_t++], *nb = &lt->t[lt->n_t++];
        snprintf(na->name, sizeof na->name, "%.56s.lora_a", x->base_name);
        na->data = x->lora_a, na->n_dims = 2, na->ne[0] = x->n_in, na->ne[1] = x->rank;
        na->n = (size_t)x->n_in * (size_t)x->rank;
        snprintf(nb->name, sizeof nb->name, "%.56s.lora_b", x->base_name);
        nb->data = x->lora_b, nb->n_dims = 2, nb->ne[0] = x->rank, nb->ne[1] = x->n_out;
        nb->n = (size_t)x->n_out * (size_t)x->rank;
    }
    *tm = (et_train_model){.ctx = lt, .params = ad->params, .grads = lt->grads, .n = ad->n_params, .t = lt->t,
                           .n_t = lt->n_t, .fwd_bwd = fwd_bwd, .forward = forward};
    return 0;
}

int lora_train_init(lora_train *lt, et_model *m, uint32_t base_type, lora_adapter *ad, et_train_model *tm,
                    et_err *e) {
    return init(lt, m, base_type, NULL, NULL, ad, tm, e);
}

int lora_train_init_fill(lora_train *lt, et_model *m, uint32_t base_type,
                         int (*fill)(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in, et_err *e),
                         void *fill_ctx, lora_adapter *ad, et_train_model *tm, et_err *e) {
    if (!fill) return et_fail(e, ET_EINPUT, "lora: no fill function");
    return init(lt, m, base_type, fill, fill_ctx, ad, tm, e);
}

void lora_train_free(lora_train *lt) {
    et_tape_free(&lt->tape);
    et_lora_llama_free(&lt->ll);
    free(lt->grads);
    free(lt->t);
    free(lt->inputs);
    free(lt->targets);
    free(lt->row_loss);
    memset(lt, 0, sizeof *lt);
}
