/* train/qat.c — attaching fake quantization to a bound llama model: the
 * per-tensor types of `edgetune quantize`, the caches, the schedule (see qat.h). */
#include "qat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/imatrix.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"

/* ---- the quantizer's per-tensor types ---- */

/* quantize_model.c's layer_of for the names llama.c binds ("blk.<n>." or none). */
static int64_t layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    return end == name + 4 ? -1 : v;
}

typedef struct ord {
    int i;
    int64_t layer;
    const char *name;
} ord;

/* llama_model_loader's weights_map order, as et_quantize_model writes tensors. */
static int cmp_ord(const void *a, const void *b) {
    const ord *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

int et_qat_types(const et_llama *L, int ftype, int has_imatrix, uint32_t *types, uint32_t *want,
                 void (*msg)(void *ctx, const char *name, const char *why), void *ctx, et_err *e) {
    if (et_ftype_base_type(ftype) == GGML_TYPE_COUNT)
        return et_fail(e, ET_EUSAGE, "qat: unknown quantization type %d", ftype);
    const et_model *m = L->m;
    if (!m) return et_fail(e, ET_EINPUT, "qat: the model is not bound (or its base was converted)");
    const int n = L->n_tensors;
    ord *o = calloc(n > 0 ? (size_t)n : 1, sizeof *o);
    if (!o) return et_fail(e, ET_ERUN, "qat: out of memory");
    /* quantize_model.c init_policy, from the model instead of its GGUF */
    et_quant_policy qp;
    memset(&qp, 0, sizeof qp);
    qp.ftype = ftype;
    qp.base_type = et_ftype_base_type(ftype);
    qp.has_imatrix = has_imatrix != 0;
    for (int i = 0; i < n; i++) {
        const char *nm = L->tensors[i]->name;
        o[i] = (ord){i, layer_of(nm), nm};
        if (strstr(nm, "attn_v.weight") || strstr(nm, "attn_qkv.weight") || strstr(nm, "attn_kv_b.weight"))
            qp.n_attention_wv++;
        else if (!strcmp(nm, "output.weight"))
            qp.has_output = 1;
    }
    if (qp.base_type != GGML_TYPE_F32 && qp.base_type != GGML_TYPE_F16 && qp.base_type != GGML_TYPE_BF16) {
        const et_hparams *hp = &m->hp;
        const char *arch = et_model_export_arch(m);
        const int64_t n_head = hp->layer_n_head && hp->n_layer > 0 ? hp->layer_n_head[0] : hp->n_head;
        const int64_t n_head_kv = hp->layer_n_head_kv && hp->n_layer > 0 ? hp->layer_n_head_kv[0] : hp->n_head_kv;
        qp.n_layer = hp->n_layer;
        qp.n_gqa = n_head_kv != 0 ? (int)(n_head / n_head_kv) : 0;
        qp.is_70b = hp->n_layer == 80 && ((!strcmp(arch, "llama") && n_head != n_head_kv) || !strcmp(arch, "deci"));
    }
    qsort(o, (size_t)n, sizeof *o, cmp_ord);
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        const et_tensor *t = L->tensors[o[k].i];
        const int64_t ne0 = t->shape[t->ndim - 1];
        const uint32_t n_dims = t->ndim >= 2 && t->shape[0] > 1 ? 2 : 1; /* ggml_n_dims */
        uint32_t ty = GGML_TYPE_F32, w = GGML_TYPE_F32;
        char why[256] = "";
        if (et_quant_wants(t->name, n_dims)) {
            ty = et_quant_choose(&qp, t->name, ne0, &w, why, sizeof why);
            if (ty == GGML_TYPE_COUNT) rc = et_fail(e, ET_EINPUT, "qat: tensor '%s': %s", t->name, why);
            else if (ty != w && msg) msg(ctx, t->name, why);
        }
        types[o[k].i] = ty;
        if (want) want[o[k].i] = w;
    }
    free(o);
    return rc;
}

/* ---- attach ---- */

/* et_llama.head_in with --qat-act: h as the engine rounds it for the LM head. */
static et_tensor *qat_head_in(et_tape *t, et_tensor *h, void *ctx) {
    const et_qat_w *w = ctx;
    return w->owner->active && w->owner->act ? et_fake_quant_act(t, "result_norm.act", h, w->type) : h;
}

/* The imatrix against the bound model, as et_quantize_model_imatrix checks
 * it (quantize_model.c check_imatrix): every entry names a tensor with its
 * column count, and every blk.* weight quantized with weights (not Q8_0,
 * F16, BF16) has an entry. */
static int check_imatrix(const et_llama *L, const et_qat_opts *o, const uint32_t *types, et_err *e) {
    const int n = L->n_tensors;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    int64_t *ne0 = calloc((size_t)n + 1, sizeof *ne0), *ne2 = calloc((size_t)n + 1, sizeof *ne2);
    int *want = calloc((size_t)n + 1, sizeof *want);
    int rc;
    if (!names || !ne0 || !ne2 || !want) {
        rc = et_fail(e, ET_ERUN, "qat: out of memory");
    } else {
        for (int i = 0; i < n; i++) {
            const et_tensor *t = L->tensors[i];
            names[i] = t->name;
            ne0[i] = t->shape[t->ndim - 1];
            ne2[i] = 1;
            want[i] = types[i] != GGML_TYPE_F32 && types[i] != GGML_TYPE_F16 && types[i] != GGML_TYPE_BF16 &&
                      types[i] != GGML_TYPE_Q8_0;
        }
        rc = et_imatrix_check(o->imatrix, o->imatrix_name ? o->imatrix_name : "imatrix", n, names, ne0, ne2, want, e);
    }
    free(names);
    free(ne0);
    free(ne2);
    free(want);
    return rc;
}

static et_linear *linear_of(et_llama *L, const et_tensor *t) {
    for (int l = 0; l < L->n_layer; l++) {
        et_llama_block *b = &L->blocks[l];
        et_linear *all[] = {&b->q, &b->k, &b->v, &b->o, &b->gate, &b->up, &b->down};
        for (int i = 0; i < 7; i++)
            if (&all[i]->w == t) return all[i];
    }
    return NULL;
}

int et_qat_attach(et_qat *q, et_llama *L, const et_qat_opts *o, et_err *e) {
    memset(q, 0, sizeof *q);
    const int n = L->n_tensors;
    uint32_t *types = calloc(n > 0 ? (size_t)n : 1, sizeof *types);
    uint32_t *want = calloc(n > 0 ? (size_t)n : 1, sizeof *want);
    if (!types || !want) {
        free(types);
        free(want);
        return et_fail(e, ET_ERUN, "qat: out of memory");
    }
    int rc = et_qat_types(L, o->ftype, o->imatrix != NULL, types, want, o->notice, o->notice_ctx, e);
    for (int k = 0; k < o->n_over && !rc; k++) {
        int i = 0;
        while (i < n && strcmp(L->tensors[i]->name, o->over_names[k])) i++;
        if (i == n) {
            rc = et_fail(e, ET_EINPUT, "qat: the type map names '%s', which is not a tensor of this model",
                         o->over_names[k]);
            break;
        }
        const et_tensor *t = L->tensors[i];
        const int64_t cols = t->shape[t->ndim - 1];
        if (!et_quant_supported(o->over_types[k]) || (o->over_types[k] != GGML_TYPE_F32 && t->ndim < 2)) {
            rc = et_fail(e, ET_EINPUT, "qat: type %s cannot be used for '%s'",
                         ggml_type_name(o->over_types[k]) ? ggml_type_name(o->over_types[k]) : "?", t->name);
            break;
        }
        want[i] = o->over_types[k];
        types[i] = et_quant_fallback(want[i], cols);
        if (types[i] != want[i] && o->notice) {
            char why[160];
            snprintf(why, sizeof why, "row length %lld is not a multiple of %s's block of %lld: using %s",
                     (long long)cols, ggml_type_name(want[i]), (long long)et_quant_block_elems(want[i]),
                     ggml_type_name(types[i]));
            o->notice(o->notice_ctx, t->name, why);
        }
    }
    if (!rc && o->imatrix) rc = check_imatrix(L, o, types, e);
    int n_w = 0;
    for (int i = 0; i < n && !rc; i++) n_w += types[i] != GGML_TYPE_F32;
    q->L = L;
    q->start_step = o->start_step;
    q->gen = 1;
    q->w = calloc(n_w > 0 ? (size_t)n_w : 1, sizeof *q->w);
    if (!rc && !q->w) rc = et_fail(e, ET_ERUN, "qat: out of memory");
    size_t scratch = 1;
    for (int i = 0; i < n && !rc; i++) {
        if (types[i] == GGML_TYPE_F32) continue;
        et_tensor *t = L->tensors[i];
        et_qat_w *w = &q->w[q->n_w];
        snprintf(w->name, sizeof w->name, "%s", t->name);
        w->t = t, w->master = t->data, w->type = types[i], w->want = want[i], w->owner = q;
        w->cols = t->shape[t->ndim - 1];
        w->rows = (int64_t)(t->n / (size_t)w->cols);
        w->constant = t->grad == NULL;
        w->wq = malloc(t->n * sizeof(float));
        if (!w->wq) {
            rc = et_fail(e, ET_ERUN, "qat: out of memory for %s's cache", t->name);
            break;
        }
        q->n_w++;
        q->n_fallback += types[i] != want[i];
        const et_imatrix_entry *ix = o->imatrix ? et_imatrix_find(o->imatrix, t->name) : NULL;
        if (ix && ix->n == w->cols) {
            if (!(w->imw = malloc(sizeof(float) * (size_t)w->cols))) {
                rc = et_fail(e, ET_ERUN, "qat: out of memory");
                break;
            }
            et_imatrix_weights(o->imatrix, ix, w->imw);
        }
        et_fake_quant_view(&w->view, t, w->wq);
        const size_t bytes = (size_t)et_quant_row_bytes(w->type, w->cols) * (size_t)w->rows;
        if (bytes > scratch) scratch = bytes;
        et_linear *lin = linear_of(L, t);
        w->lin = lin;
        if (!lin || !(o->hooks || o->act)) {
            w->data_ptr = &t->data;
        } else if (lin->fn) {
            rc = et_fail(e, ET_EUSAGE, "qat: %s already has a linear hook (LoRA: use et_lora_llama_qat)", t->name);
            break;
        } else {
            lin->fn = et_qat_linear;
            lin->ctx = w;
        }
    }
    if (!rc && !(q->scratch = malloc(scratch))) rc = et_fail(e, ET_ERUN, "qat: out of memory");
    q->act = o->act;
    if (!rc && o->act) {
        /* the LM head's input, rounded for the output weight's type */
        for (int k = 0; k < q->n_w; k++)
            if (q->w[k].t == L->output) L->head_in = qat_head_in, L->head_in_ctx = &q->w[k];
    }
    q->scratch_bytes = scratch;
    free(types);
    free(want);
    if (rc) et_qat_free(q);
    return rc;
}

void et_qat_free(et_qat *q) {
    if (q->L && q->L->head_in == qat_head_in) q->L->head_in = NULL, q->L->head_in_ctx = NULL;
    for (int k = 0; k < q->n_w; k++) {
        et_qat_w *w = &q->w[k];
        if (w->lin && w->lin->fn == et_qat_linear) w->lin->fn = NULL, w->lin->ctx = NULL;
        if (w->data_ptr) *w->data_ptr = w->master;
        if (w->frozen_ptr) *w->frozen_ptr = w->master;
    }
    for (int k = 0; k < q->n_w; k++) free(q->w[k].wq), free(q->w[k].imw);
    free(q->w);
    free(q->scratch);
    memset(q, 0, sizeof *q);
}

/* ---- the schedule and the caches ---- */

void et_qat_set_step(et_qat *q, int64_t step) { q->active = step >= q->start_step; }

void et_qat_step(et_qat *q, int64_t step) {
    q->gen++;
    et_qat_set_step(q, step);
}

void et_qat_invalidate(et_qat *q) { q->gen++; }

/* w_q of a weight with a LoRA branch (qat.h): row by row, merged =
 * W + s * (B A) in lora_merge_f32's order of operations (lora/merge.c: the
 * row's delta summed over r, skipping zero B entries, then added times s),
 * so the merged file's floats are these; then w_q - s * delta. */
static void refresh_lora(et_qat_w *w) {
    const int64_t K = w->cols, R = w->rank;
    const size_t rb = (size_t)et_quant_row_bytes(w->type, K);
    const float s = w->lora_scale;
    uint8_t *qb = w->owner->scratch;
    #pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < w->rows; o++) {
        float *row = w->wq + (size_t)o * (size_t)K;
        const float *src = w->master + (size_t)o * (size_t)K;
        memset(row, 0, (size_t)K * sizeof(float));
        for (int64_t r = 0; r < R; r++) {
            const float c = w->lora_b[o * R + r];
            if (c == 0.0f) continue;
            const float *a = w->lora_a + r * K;
            for (int64_t i = 0; i < K; i++) row[i] += c * a[i];
        }
        for (int64_t i = 0; i < K; i++) row[i] = src[i] + s * row[i];
        if (w->imw) et_quantize_rows_imatrix(w->type, row, qb + (size_t)o * rb, 1, K, w->imw);
        else et_quantize_row(w->type, row, qb + (size_t)o * rb, K);
        et_dequantize_row(w->type, qb + (size_t)o * rb, row, K);
        for (int64_t r = 0; r < R; r++) {
            const float c = s * w->lora_b[o * R + r];
            if (c == 0.0f) continue;
            const float *a = w->lora_a + r * K;
            for (int64_t i = 0; i < K; i++) row[i] -= c * a[i];
        }
    }
}

static void refresh(et_qat_w *w) {
    if (w->lora_a) refresh_lora(w);
    else et_fake_quant_rows_imatrix(w->type, w->master, w->wq, w->rows, w->cols, w->imw, w->owner->scratch);
    w->gen = w->owner->gen;
    w->owner->n_refresh++;
}

int et_qat_stale(const et_qat_w *w) {
    return w->owner->active && (w->constant ? w->gen == 0 : w->gen != w->owner->gen);
}

void et_qat_sync(et_qat *q) {
    for (int k = 0; k < q->n_w; k++) {
        et_qat_w *w = &q->w[k];
        if (et_qat_stale(w)) refresh(w);
        float *use = q->active ? w->wq : w->master;
        if (w->data_ptr) *w->data_ptr = use;
        if (w->frozen_ptr) *w->frozen_ptr = use;
    }
}

et_qat_w *et_qat_find(et_qat *q, const char *name) {
    for (int k = 0; k < q->n_w; k++)
        if (!strcmp(q->w[k].name, name)) return &q->w[k];
    return NULL;
}
