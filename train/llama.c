/* train/llama.c — binding an et_model to tape tensors, and its forward pass (see llama.h). */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- gradients with the model's layout ---- */
static float *rebase(float *p, const et_model *m, float *base) {
    return p ? base + (p - m->params) : NULL;
}

/* dst's tensor pointers at the offsets src's have in src->params, over base
 * (dst may be src itself: its pointers move to base). */
static void rebase_model(et_model *dst, const et_model *src, float *base) {
    dst->tok_embd = rebase(src->tok_embd, src, base);
    dst->output_norm = rebase(src->output_norm, src, base);
    dst->output = rebase(src->output, src, base);
    for (int l = 0; l < src->hp.n_layer; l++) {
        const et_layer *s = &src->layers[l];
        et_layer *d = &dst->layers[l];
        d->attn_norm = rebase(s->attn_norm, src, base);
        d->wq = rebase(s->wq, src, base);
        d->wk = rebase(s->wk, src, base);
        d->wv = rebase(s->wv, src, base);
        d->bq = rebase(s->bq, src, base);
        d->bk = rebase(s->bk, src, base);
        d->bv = rebase(s->bv, src, base);
        d->wo = rebase(s->wo, src, base);
        d->ffn_norm = rebase(s->ffn_norm, src, base);
        d->w_gate = rebase(s->w_gate, src, base);
        d->w_up = rebase(s->w_up, src, base);
        d->w_down = rebase(s->w_down, src, base);
    }
}

int et_model_grads_alloc(et_model *g, const et_model *m, et_err *e) {
    memset(g, 0, sizeof *g);
    g->hp = m->hp;
    g->n_params = m->n_params;
    g->params = calloc(m->n_params ? m->n_params : 1, sizeof(float));
    g->layers = calloc(m->hp.n_layer > 0 ? (size_t)m->hp.n_layer : 1, sizeof(et_layer));
    if (!g->params || !g->layers) {
        et_model_grads_free(g);
        return et_fail(e, ET_ERUN, "gradients: out of memory for %zu floats", m->n_params);
    }
    rebase_model(g, m, g->params);
    return 0;
}

int et_model_grow_block(et_model *m, size_t n_total, et_err *e) {
    if (n_total < m->n_params)
        return et_fail(e, ET_EUSAGE, "model block: %zu floats asked, the model has %zu", n_total, m->n_params);
    float *b = calloc(n_total ? n_total : 1, sizeof(float));
    if (!b) return et_fail(e, ET_ERUN, "model block: out of memory for %zu floats", n_total);
    if (m->n_params) memcpy(b, m->params, m->n_params * sizeof(float));
    rebase_model(m, m, b);
    free(m->params);
    m->params = b;
    return 0;
}

void et_model_grads_free(et_model *g) {
    free(g->params);
    free(g->layers);
    memset(g, 0, sizeof *g);
}

/* ---- binding ---- */
static float *grad_of(const float *p, const et_model *m, const et_model *g) {
    return g && p ? g->params + (p - m->params) : NULL;
}

/* Wrap one parameter [rows, cols] (cols == 0: 1-D [rows]); appends it to the list. */
static void bind_one(et_llama *L, et_tensor *t, const char *name, float *p, const et_model *g,
                     int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    et_tensor_wrap(t, name, p, grad_of(p, L->m, g), cols ? 2 : 1, shape);
    if (p) L->tensors[L->n_tensors++] = t;
}

static void bind_linear(et_llama *L, et_linear *lin, int layer, const char *what, float *w, float *b,
                        const et_model *g, int64_t out, int64_t in) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, what);
    bind_one(L, &lin->w, name, w, g, out, in);
    snprintf(name, sizeof name, "blk.%d.%s.bias", layer, what);
    bind_one(L, &lin->b, name, b, g, out, 0);
}

int et_llama_bind(et_llama *L, et_model *m, et_model *g, et_err *e) {
    memset(L, 0, sizeof *L);
    const et_hparams *hp = &m->hp;
    if (g && g->n_params != m->n_params)
        return et_fail(e, ET_EINPUT, "llama bind: gradient block has %zu floats, model %zu", g->n_params, m->n_params);
    if (hp->n_embd < 1 || hp->n_vocab < 1 || hp->n_layer < 0 || !m->tok_embd || !m->output_norm)
        return et_fail(e, ET_EINPUT, "llama bind: n_embd %d, n_vocab %d, n_layer %d or missing token_embd/output_norm",
                       hp->n_embd, hp->n_vocab, hp->n_layer);
    L->m = m;
    L->n_embd = hp->n_embd;
    L->n_vocab = hp->n_vocab;
    L->n_layer = hp->n_layer;
    L->head_dim = hp->head_dim > 0 ? hp->head_dim : (hp->n_head > 0 ? hp->n_embd / hp->n_head : 0);
    L->rms_eps = hp->rms_eps;
    L->rope_theta = hp->rope_theta > 0 ? hp->rope_theta : 10000.0f;
    L->blocks = calloc(hp->n_layer > 0 ? (size_t)hp->n_layer : 1, sizeof *L->blocks);
    L->tensors = calloc(3 + 12 * (size_t)(hp->n_layer > 0 ? hp->n_layer : 0), sizeof *L->tensors);
    if (!L->blocks || !L->tensors) {
        et_llama_unbind(L);
        return et_fail(e, ET_ERUN, "llama bind: out of memory");
    }
    const int64_t C = hp->n_embd, V = hp->n_vocab, D = L->head_dim;
    bind_one(L, &L->tok_embd, "token_embd.weight", m->tok_embd, g, V, C);
    bind_one(L, &L->output_norm, "output_norm.weight", m->output_norm, g, C, 0);
    if (hp->tied_output || !m->output || m->output == m->tok_embd) {
        L->output = &L->tok_embd;
    } else {
        bind_one(L, &L->output_own, "output.weight", m->output, g, V, C);
        L->output = &L->output_own;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        et_llama_block *b = &L->blocks[l];
        const et_layer *s = &m->layers[l];
        b->n_head = hp->layer_n_head ? hp->layer_n_head[l] : hp->n_head;
        b->n_head_kv = hp->layer_n_head_kv ? hp->layer_n_head_kv[l] : hp->n_head_kv;
        b->n_ff = hp->layer_n_ff ? hp->layer_n_ff[l] : hp->n_ff;
        if (b->n_head < 0 || b->n_ff < 0 || (b->n_head > 0 && (b->n_head_kv < 1 || b->n_head % b->n_head_kv ||
                                                               D < 2 || D % 2 || !s->wq || !s->wk || !s->wv || !s->wo)) ||
            (b->n_ff > 0 && (!s->w_gate || !s->w_up || !s->w_down))) {
            et_llama_unbind(L);
            return et_fail(e, ET_EINPUT, "llama bind: layer %d has n_head %d, n_head_kv %d, head_dim %lld, n_ff %d "
                           "(or missing weights)", l, b->n_head, b->n_head_kv, (long long)D, b->n_ff);
        }
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        bind_one(L, &b->attn_norm, name, s->attn_norm, g, C, 0);
        const int64_t Cq = (int64_t)b->n_head * D, Ck = (int64_t)b->n_head_kv * D;
        bind_linear(L, &b->q, l, "attn_q", s->wq, s->bq, g, Cq, C);
        bind_linear(L, &b->k, l, "attn_k", s->wk, s->bk, g, Ck, C);
        bind_linear(L, &b->v, l, "attn_v", s->wv, s->bv, g, Ck, C);
        bind_linear(L, &b->o, l, "attn_output", s->wo, NULL, g, C, Cq);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        bind_one(L, &b->ffn_norm, name, s->ffn_norm, g, C, 0);
        bind_linear(L, &b->gate, l, "ffn_gate", s->w_gate, NULL, g, b->n_ff, C);
        bind_linear(L, &b->up, l, "ffn_up", s->w_up, NULL, g, b->n_ff, C);
        bind_linear(L, &b->down, l, "ffn_down", s->w_down, NULL, g, C, b->n_ff);
    }
    return 0;
}

void et_llama_unbind(et_llama *L) {
    free(L->blocks);
    free(L->tensors);
    memset(L, 0, sizeof *L);
}

et_tensor *et_llama_find(const et_llama *L, const char *name) {
    for (int i = 0; i < L->n_tensors; i++)
        if (strcmp(L->tensors[i]->name, name) == 0) return L->tensors[i];
    return NULL;
}

/* ---- forward ---- */
static et_tensor *linear(et_tape *t, const char *name, et_tensor *x, et_linear *lin) {
    if (lin->fn) return lin->fn(t, name, x, lin);
    return et_matmul(t, name, x, &lin->w, lin->b.data ? &lin->b : NULL);
}

/* res + linear(x): fused into the GEMM when there is no hook. */
static et_tensor *linear_add(et_tape *t, const char *name, et_tensor *x, et_linear *lin, et_tensor *res) {
    if (lin->fn) return et_add(t, name, res, lin->fn(t, name, x, lin));
    return et_matmul_add(t, name, x, &lin->w, lin->b.data ? &lin->b : NULL, res);
}

static const char *nm(char *buf, const char *what, int layer) {
    snprintf(buf, 48, "%s-%d", what, layer);
    return buf;
}

et_tensor *et_llama_layer(et_tape *t, et_llama *L, int l, et_tensor *x, int T, const int32_t *pos) {
    if (t->code) return NULL;
    if (l < 0 || l >= L->n_layer) return et_tape_fail(t, ET_EINPUT, "llama layer %d of %d", l, L->n_layer);
    char n[48];
    const int D = L->head_dim;
    et_llama_block *b = &L->blocks[l];
    if (b->n_head > 0) {
        /* the normed rows and swiglu's product are read again only by the
           projections' backward: recomputed there (et_tape_drop) */
        et_tensor *h = et_rmsnorm_remat(t, nm(n, "attn_norm", l), x, &b->attn_norm, L->rms_eps);
        et_tensor *q = linear(t, nm(n, "Qcur", l), h, &b->q);
        et_tensor *k = linear(t, nm(n, "Kcur", l), h, &b->k);
        et_tensor *v = linear(t, nm(n, "Vcur", l), h, &b->v);
        et_tape_drop(t, h);
        /* in place: the projections' backward never reads their outputs */
        char nk[48];
        et_rope_qk_inplace(t, nm(n, "Qrope", l), nm(nk, "Krope", l), q, k, T, b->n_head, b->n_head_kv, D, pos,
                           L->rope_theta, &q, &k);
        et_tensor *a = et_attention(t, nm(n, "kqv_out", l), q, k, v, T, b->n_head, b->n_head_kv, D);
        x = linear_add(t, nm(n, "ffn_inp", l), a, &b->o, x);
    }
    if (b->n_ff > 0) {
        et_tensor *h = et_rmsnorm_remat(t, nm(n, "ffn_norm", l), x, &b->ffn_norm, L->rms_eps);
        et_tensor *g = linear(t, nm(n, "ffn_gate", l), h, &b->gate);
        et_tensor *u = linear(t, nm(n, "ffn_up", l), h, &b->up);
        et_tape_drop(t, h);
        et_tensor *s = et_swiglu_remat(t, nm(n, "ffn_swiglu", l), g, u);
        x = linear_add(t, nm(n, "l_out", l), s, &b->down, x);
        et_tape_drop(t, s);
    }
    return x;
}

et_tensor *et_llama_hidden(et_tape *t, et_llama *L, const int32_t *tokens, int B, int T,
                           const int32_t *pos) {
    if (t->code) return NULL;
    if (B < 1 || T < 1 || (int64_t)B * T > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "llama forward: batch %d x %d tokens", B, T);
    et_tensor *x = et_embedding(t, "inp_embd", &L->tok_embd, tokens, B * T);
    for (int l = 0; l < L->n_layer; l++) x = et_llama_layer(t, L, l, x, T, pos);
    return et_llama_head_input(t, L, et_rmsnorm(t, "result_norm", x, &L->output_norm, L->rms_eps));
}

et_tensor *et_llama_head_input(et_tape *t, const et_llama *L, et_tensor *h) {
    return L->head_in && h ? L->head_in(t, h, L->head_in_ctx) : h;
}

et_tensor *et_llama_forward(et_tape *t, et_llama *L, const int32_t *tokens, const int32_t *targets,
                            int B, int T, const et_xent_opts *xo) {
    et_tensor *h = et_llama_hidden(t, L, tokens, B, T, NULL);
    return et_cross_entropy(t, "loss", h, L->output, targets, xo);
}
