/* train/lora_llama.c — frozen llama base with LoRA branches (see lora_llama.h). */
#include "lora_llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "ffn_frozen.h"
#include "op_lmhead.h"
#include "qat.h"

static et_linear *lin_of(et_llama_block *b, int i) {
    switch (i) {
    case ET_LIN_Q: return &b->q;
    case ET_LIN_K: return &b->k;
    case ET_LIN_V: return &b->v;
    case ET_LIN_O: return &b->o;
    case ET_LIN_GATE: return &b->gate;
    case ET_LIN_UP: return &b->up;
    case ET_LIN_DOWN: return &b->down;
    default: return NULL;
    }
}

/* splitmix64 finalizer: a slot's dropout seed from the forward's seed */
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The et_linear hook: every linear of an adapted or non-F32 base. */
static et_tensor *slot_forward(et_tape *t, const char *name, et_tensor *x, et_linear *lin) {
    et_lora_slot *s = lin->ctx;
    const et_lora_llama *ll = s->owner;
    const int lora = s->a.data != NULL;
    et_lora_opts o = {.scale = s->scale,
                      .dropout = lora && ll->train ? ll->dropout : 0.0f,
                      .seed = mix64(ll->seed ^ mix64((uint64_t)s->layer * ET_N_LIN + (uint64_t)s->lin)),
                      .scratch = ll->scratch,
                      .scratch_floats = ll->scratch_floats};
    return et_lora_linear(t, name, x, &s->w, lin->b.data ? &lin->b : NULL, lora ? &s->a : NULL,
                          lora ? &s->b : NULL, &o);
}

et_lora_slot *et_lora_llama_slot(et_lora_llama *ll, int layer, int lin) {
    if (!ll->slots || layer < 0 || layer >= ll->L.n_layer || lin < 0 || lin >= ET_N_LIN) return NULL;
    et_lora_slot *s = &ll->slots[(size_t)layer * ET_N_LIN + (size_t)lin];
    return s->w.data ? s : NULL;
}

static int is_linear_weight(const et_lora_llama *ll, const et_tensor *x) {
    for (int l = 0; l < ll->L.n_layer; l++)
        for (int i = 0; i < ET_N_LIN; i++)
            if (x == &lin_of(&ll->L.blocks[l], i)->w) return 1;
    return 0;
}

/* Convert every linear to its type in one block; F32 tensors copied into
 * `small`; the tape tensors repointed so nothing refers to m's floats. */
static int convert_base(et_lora_llama *ll, int (*fill)(void *, const char *, float *, int64_t, int64_t, et_err *),
                        void *ctx, et_err *e) {
    et_llama *L = &ll->L;
    size_t n_slots = (size_t)L->n_layer * ET_N_LIN;
    size_t *off = calloc(n_slots ? n_slots : 1, sizeof *off);
    if (!off) return et_fail(e, ET_ERUN, "lora base: out of memory");
    size_t total = 0;
    for (size_t k = 0; k < n_slots; k++) {
        et_lora_slot *s = &ll->slots[k];
        if (!s->w.data) continue;
        s->w.type = et_quant_fallback(ll->base_type, s->w.n_in);
        uint64_t bytes = et_frozen_w_bytes(&s->w);
        if (!bytes || bytes > SIZE_MAX - total - 64) {
            free(off);
            return et_fail(e, ET_EINPUT, "lora base: blk.%d.%s cannot be held as type %u", s->layer,
                           lin_of(&L->blocks[s->layer], s->lin)->w.name, ll->base_type);
        }
        off[k] = total;
        total += (size_t)(bytes + 63) / 64 * 64;
    }
    ll->wblock = malloc(total ? total : 1);
    ll->wbytes = total;
    size_t max_n = 0;
    for (size_t k = 0; k < n_slots; k++)
        if (ll->slots[k].w.data) {
            size_t n = (size_t)(ll->slots[k].w.n_out * ll->slots[k].w.n_in);
            if (n > max_n) max_n = n;
        }
    float *tmp = fill ? malloc((max_n ? max_n : 1) * sizeof(float)) : NULL;
    if (!ll->wblock || (fill && !tmp)) {
        free(off);
        free(tmp);
        return et_fail(e, ET_ERUN, "lora base: out of memory for %zu bytes of weights", total);
    }
    int rc = 0;
    for (size_t k = 0; k < n_slots && !rc; k++) {
        et_lora_slot *s = &ll->slots[k];
        if (!s->w.data) continue;
        et_linear *lin = lin_of(&L->blocks[s->layer], s->lin);
        const float *src = lin->w.data;
        if (fill) {
            rc = fill(ctx, lin->w.name, tmp, s->w.n_out, s->w.n_in, e);
            src = tmp;
        }
        if (rc) break;
        uint8_t *dst = ll->wblock + off[k];
        const size_t rb = (size_t)et_quant_row_bytes(s->w.type, s->w.n_in);
        const int64_t K = s->w.n_in;
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < s->w.n_out; r++)
            et_quantize_row(s->w.type, src + (size_t)r * (size_t)K, dst + (size_t)r * rb, K);
        s->w.data = dst;
        lin->w.data = NULL; /* only the hook reads this weight now */
    }
    free(off);
    free(tmp);
    if (rc) return rc;

    /* the F32 tensors: embedding, norms, biases, output */
    size_t n_small = 0;
    for (int i = 0; i < L->n_tensors; i++)
        if (!is_linear_weight(ll, L->tensors[i])) n_small += (L->tensors[i]->n + 15) / 16 * 16;
    ll->small = malloc((n_small ? n_small : 1) * sizeof(float));
    if (!ll->small) return et_fail(e, ET_ERUN, "lora base: out of memory for %zu floats", n_small);
    ll->small_floats = n_small;
    size_t pos = 0;
    for (int i = 0; i < L->n_tensors; i++) {
        et_tensor *x = L->tensors[i];
        if (is_linear_weight(ll, x)) continue;
        memcpy(ll->small + pos, x->data, x->n * sizeof(float));
        x->data = ll->small + pos;
        pos += (x->n + 15) / 16 * 16;
    }
    L->m = NULL; /* nothing refers to the model's memory any more */
    return 0;
}

static int init(et_lora_llama *ll, et_model *m, uint32_t base_type,
                int (*fill)(void *, const char *, float *, int64_t, int64_t, et_err *), void *ctx, et_err *e) {
    memset(ll, 0, sizeof *ll);
    if (!et_quant_supported(base_type) || (fill && base_type == GGML_TYPE_F32))
        return et_fail(e, ET_EINPUT, "lora base: type %u is not supported for a frozen base", base_type);
    int rc = et_llama_bind(&ll->L, m, NULL, e);
    if (rc) return rc;
    ll->base_type = base_type;
    et_llama *L = &ll->L;
    ll->slots = calloc((size_t)(L->n_layer > 0 ? L->n_layer : 1) * ET_N_LIN, sizeof *ll->slots);
    if (!ll->slots) {
        et_lora_llama_free(ll);
        return et_fail(e, ET_ERUN, "lora base: out of memory");
    }
    int64_t max_in = 1;
    for (int l = 0; l < L->n_layer; l++)
        for (int i = 0; i < ET_N_LIN; i++) {
            et_linear *lin = lin_of(&L->blocks[l], i);
            et_lora_slot *s = &ll->slots[(size_t)l * ET_N_LIN + (size_t)i];
            s->owner = ll, s->layer = l, s->lin = i;
            if (!lin->w.data) continue; /* layer without attention / FFN */
            s->w = (et_frozen_w){GGML_TYPE_F32, lin->w.data, lin->w.shape[0], lin->w.shape[1]};
            if (s->w.n_in > max_in) max_in = s->w.n_in;
        }
    ll->scratch_floats = et_lora_scratch_floats(max_in);
    ll->scratch = malloc(ll->scratch_floats * sizeof(float));
    if (!ll->scratch) {
        et_lora_llama_free(ll);
        return et_fail(e, ET_ERUN, "lora base: out of memory");
    }
    if (base_type != GGML_TYPE_F32) {
        rc = convert_base(ll, fill, ctx, e);
        if (rc) {
            et_lora_llama_free(ll);
            return rc;
        }
        for (int l = 0; l < L->n_layer; l++)
            for (int i = 0; i < ET_N_LIN; i++)
                if (ll->slots[(size_t)l * ET_N_LIN + (size_t)i].w.data) {
                    et_linear *lin = lin_of(&L->blocks[l], i);
                    lin->fn = slot_forward;
                    lin->ctx = &ll->slots[(size_t)l * ET_N_LIN + (size_t)i];
                }
    }
    return 0;
}

int et_lora_llama_init(et_lora_llama *ll, et_model *m, uint32_t base_type, et_err *e) {
    return init(ll, m, base_type, NULL, NULL, e);
}

int et_lora_llama_init_fill(et_lora_llama *ll, et_model *m, uint32_t base_type,
                            int (*fill)(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in,
                                        et_err *e),
                            void *ctx, et_err *e) {
    if (!fill) return et_fail(e, ET_EINPUT, "lora base: no fill function");
    return init(ll, m, base_type, fill, ctx, e);
}

void et_lora_llama_free(et_lora_llama *ll) {
    if (ll->inner_ready) et_tape_free(&ll->inner);
    et_llama_unbind(&ll->L);
    free(ll->slots);
    free(ll->wblock);
    free(ll->small);
    free(ll->scratch);
    memset(ll, 0, sizeof *ll);
}

int et_lora_llama_attach(et_lora_llama *ll, int layer, int lin, float *lora_a, float *grad_a, float *lora_b,
                         float *grad_b, int rank, float scale, et_err *e) {
    et_lora_slot *s = et_lora_llama_slot(ll, layer, lin);
    if (!s) return et_fail(e, ET_EINPUT, "lora: layer %d has no linear %d to adapt", layer, lin);
    if (rank < 1 || !lora_a || !lora_b) return et_fail(e, ET_EINPUT, "lora: rank %d or missing lora_a/lora_b", rank);
    et_linear *L = lin_of(&ll->L.blocks[layer], lin);
    char name[64];
    snprintf(name, sizeof name, "%s.lora_a", L->w.name);
    et_tensor_wrap(&s->a, name, lora_a, grad_a, 2, (int64_t[]){rank, s->w.n_in});
    snprintf(name, sizeof name, "%s.lora_b", L->w.name);
    et_tensor_wrap(&s->b, name, lora_b, grad_b, 2, (int64_t[]){s->w.n_out, rank});
    s->scale = scale;
    L->fn = slot_forward;
    L->ctx = s;
    return 0;
}

int et_lora_llama_qat(et_lora_llama *ll, et_qat *q, const et_qat_opts *o_in, et_err *e) {
    if (ll->wblock || ll->base_type != GGML_TYPE_F32 || !ll->L.m)
        return et_fail(e, ET_EUSAGE, "lora qat: the base must be held as F32 (the merge adds to F32 weights)");
    if (ll->dropout > 0.0f)
        return et_fail(e, ET_EUSAGE, "lora qat: dropout %g must be 0 (a dropped branch has no merged weight)",
                       (double)ll->dropout);
    et_qat_opts o = *o_in;
    o.hooks = 0;
    int rc = et_qat_attach(q, &ll->L, &o, e);
    if (rc) return rc;
    for (int k = 0; k < q->n_w; k++) {
        et_qat_w *w = &q->w[k];
        if (!w->lin) continue;
        et_lora_slot *s = NULL;
        for (int l = 0; l < ll->L.n_layer && !s; l++)
            for (int i = 0; i < ET_N_LIN && !s; i++)
                if (lin_of(&ll->L.blocks[l], i) == w->lin) s = et_lora_llama_slot(ll, l, i);
        if (!s) continue;
        w->frozen_ptr = &s->w.data;
        if (s->a.data) {
            w->lora_a = s->a.data, w->lora_b = s->b.data;
            w->rank = (int)s->a.shape[0], w->lora_scale = s->scale;
            w->constant = 0;
        }
    }
    ll->qat = q;
    return 0;
}

uint64_t et_lora_llama_base_bytes(const et_lora_llama *ll) {
    uint64_t n = 0;
    if (ll->wblock) return (uint64_t)ll->wbytes + (uint64_t)ll->small_floats * sizeof(float);
    for (int i = 0; i < ll->L.n_tensors; i++) n += (uint64_t)ll->L.tensors[i]->n * sizeof(float);
    return n;
}

/* Layer l without recomputation: the attention half by et_llama_layer (on
 * the block seen without its FFN: n_ff 0 is a layer without feed-forward,
 * train/llama.h), then the FFN as one fused op (train/ffn_frozen.h) when its
 * three linears are plain frozen weights (no LoRA branch, no bias), which
 * keeps 2 n_ff + 1 floats per row instead of the unfused ops' n_embd +
 * 3 n_ff + n_embd.  Otherwise et_llama_layer as it is. */
static et_tensor *layer_fused(et_tape *t, void *ctx, int l, et_tensor *x, int T, const int32_t *pos) {
    et_lora_llama *ll = ctx;
    et_llama_block *b = &ll->L.blocks[l];
    const et_lora_slot *g = et_lora_llama_slot(ll, l, ET_LIN_GATE), *u = et_lora_llama_slot(ll, l, ET_LIN_UP),
                       *d = et_lora_llama_slot(ll, l, ET_LIN_DOWN);
    if (b->n_ff <= 0 || !g || !u || !d || g->a.data || u->a.data || d->a.data || b->gate.b.data || b->up.b.data ||
        b->down.b.data)
        return et_llama_layer(t, &ll->L, l, x, T, pos);
    const int n_ff = b->n_ff;
    b->n_ff = 0;
    x = et_llama_layer(t, &ll->L, l, x, T, pos);
    b->n_ff = n_ff;
    char name[48];
    snprintf(name, sizeof name, "l_out-%d", l);
    return et_ffn_frozen(t, name, x, &b->ffn_norm, ll->L.rms_eps, &g->w, &u->w, &d->w, ll->scratch,
                         ll->scratch_floats);
}

et_tensor *et_lora_llama_forward(et_tape *t, et_lora_llama *ll, const int32_t *tokens, const int32_t *targets,
                                 int B, int T, const et_xent_opts *xo_in) {
    if (t->code) return NULL;
    et_xent_opts xo = xo_in ? *xo_in : (et_xent_opts){0};
    if (!xo.chunk_rows) xo.chunk_rows = ET_LORA_XENT_CHUNK_ROWS;
    if (B < 1 || T < 1 || (int64_t)B * T > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "llama forward: batch %d x %d tokens", B, T);
    if (ll->qat) et_qat_sync(ll->qat);
    const int rc_on = ll->recompute && t->record;
    if (rc_on && !ll->inner_ready) {
        et_err e = {0};
        if (et_tape_init(&ll->inner, 0, &e)) return et_tape_fail(t, ET_ERUN, "%s", e.msg);
        ll->inner_ready = 1;
    }
    et_llama *L = &ll->L;
    const int n_rc = !rc_on ? 0
                     : ll->recompute_layers > 0 && ll->recompute_layers < L->n_layer ? ll->recompute_layers
                                                                                    : L->n_layer;
    et_tensor *x = et_embedding(t, "inp_embd", &L->tok_embd, tokens, B * T);
    for (int l = 0; l < L->n_layer; l++)
        x = l < n_rc ? et_layer_recompute(t, &ll->inner, layer_fused, ll, l, x, T, NULL)
                     : layer_fused(t, ll, l, x, T, NULL);
    et_tensor *h = et_llama_head_input(t, L, et_rmsnorm(t, "result_norm", x, &L->output_norm, L->rms_eps));
    return et_lm_head_xent(t, "loss", h, L->output, targets, &xo);
}
