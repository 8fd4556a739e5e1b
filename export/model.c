/* export/model.c — the in-memory model: layout of the one parameter block,
 * named views, and the format-sniffing loader.  Imports live in
 * model_gguf.c, llama2c.c and hf.c; export in model_gguf.c. */
#include "model.h"

#include "../datasets/hf_tokenizer.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* One parameter tensor of the layout: its view and the model field that
 * points at it. */
typedef struct spec {
    et_named t;
    float **slot;
} spec;

static void put(spec *out, int cap, int *k, float **slot, const char *name, int64_t ne0, int64_t ne1) {
    if (out && *k < cap) {
        spec *s = &out[*k];
        memset(s, 0, sizeof *s);
        snprintf(s->t.name, sizeof s->t.name, "%s", name);
        s->t.n_dims = ne1 > 0 ? 2 : 1;
        s->t.ne[0] = ne0;
        s->t.ne[1] = ne1 > 0 ? ne1 : 1;
        s->t.n = (size_t)ne0 * (size_t)s->t.ne[1];
        s->t.data = *slot;
        s->slot = slot;
    }
    (*k)++;
}

/* The layout (GGUF names and order, see model.h).  m's hparams must be
 * valid; slots point into m (read-only use when m is const). */
static int layout(et_model *m, spec *out, int cap) {
    const et_hparams *hp = &m->hp;
    int k = 0;
    char nm[64];
    put(out, cap, &k, &m->tok_embd, "token_embd.weight", hp->n_embd, hp->n_vocab);
    put(out, cap, &k, &m->output_norm, "output_norm.weight", hp->n_embd, 0);
    if (!hp->tied_output) put(out, cap, &k, &m->output, "output.weight", hp->n_embd, hp->n_vocab);
    for (int il = 0; il < hp->n_layer; il++) {
        et_layer *L = &m->layers[il];
        int64_t nq = (int64_t)hp->layer_n_head[il] * hp->head_dim;
        int64_t nkv = (int64_t)hp->layer_n_head_kv[il] * hp->head_dim;
        int64_t nff = hp->layer_n_ff[il];
#define T(field, suffix, ne0, ne1) \
        (snprintf(nm, sizeof nm, "blk.%d.%s", il, suffix), put(out, cap, &k, &L->field, nm, ne0, ne1))
        if (nq > 0) {
            T(attn_norm, "attn_norm.weight", hp->n_embd, 0);
            T(wq, "attn_q.weight", hp->n_embd, nq);
            if (hp->qkv_bias) T(bq, "attn_q.bias", nq, 0);
            T(wk, "attn_k.weight", hp->n_embd, nkv);
            if (hp->qkv_bias) T(bk, "attn_k.bias", nkv, 0);
            T(wv, "attn_v.weight", hp->n_embd, nkv);
            if (hp->qkv_bias) T(bv, "attn_v.bias", nkv, 0);
            T(wo, "attn_output.weight", nq, hp->n_embd);
        }
        if (nff > 0) {
            T(ffn_norm, "ffn_norm.weight", hp->n_embd, 0);
            T(w_gate, "ffn_gate.weight", hp->n_embd, nff);
            T(w_up, "ffn_up.weight", hp->n_embd, nff);
            T(w_down, "ffn_down.weight", nff, hp->n_embd);
        }
#undef T
    }
    return k;
}

/* Upper bounds that keep every size product far from overflow. */
enum { MAX_DIM = 1 << 20, MAX_VOCAB = 1 << 24, MAX_LAYER = 1 << 16 };

static int check_hparams(const et_hparams *hp, et_err *e) {
#define BAD(...) et_fail(e, ET_EINPUT, "model hparams: " __VA_ARGS__)
    if (hp->n_vocab <= 0 || hp->n_vocab > MAX_VOCAB) return BAD("n_vocab %d out of range", hp->n_vocab);
    if (hp->n_embd <= 0 || hp->n_embd > MAX_DIM) return BAD("n_embd %d out of range", hp->n_embd);
    if (hp->n_layer <= 0 || hp->n_layer > MAX_LAYER) return BAD("n_layer %d out of range", hp->n_layer);
    if (hp->n_ctx <= 0 || hp->n_ctx > MAX_VOCAB) return BAD("n_ctx %d out of range", hp->n_ctx);
    if (hp->head_dim <= 0 || hp->head_dim > MAX_DIM || hp->head_dim % 2)
        return BAD("head_dim %d must be positive and even (RoPE rotates pairs)", hp->head_dim);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f)) return BAD("rms_eps %g out of range", (double)hp->rms_eps);
    if (!(hp->rope_theta > 0.0f && hp->rope_theta < 1e30f)) return BAD("rope_theta %g out of range", (double)hp->rope_theta);
    int any_attn = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        int nh = hp->layer_n_head[il], nkv = hp->layer_n_head_kv[il], nff = hp->layer_n_ff[il];
        if (nh < 0 || nh > MAX_DIM / hp->head_dim) return BAD("layer %d: n_head %d out of range", il, nh);
        if (nkv < 0 || nkv > nh) return BAD("layer %d: n_head_kv %d out of range (n_head %d)", il, nkv, nh);
        if (nh > 0 && nkv == 0)
            return BAD("layer %d: n_head %d with n_head_kv 0 (DeciLM linear attention) is not supported", il, nh);
        if (nh > 0 && nh % nkv) return BAD("layer %d: n_head %d is not a multiple of n_head_kv %d", il, nh, nkv);
        if (nff < 0 || nff > MAX_DIM) return BAD("layer %d: n_ff %d out of range", il, nff);
        any_attn |= nh > 0;
    }
    if (!any_attn) return BAD("no layer has attention heads");
#undef BAD
    return 0;
}

void et_model_free(et_model *m) {
    if (!m) return;
    free(m->params);
    free(m->layers);
    free(m->hp.layer_n_head);
    free(m->hp.layer_n_head_kv);
    free(m->hp.layer_n_ff);
    free(m->src_type);
    if (m->tok) et_tok_free(m->tok);
    memset(m, 0, sizeof *m);
}

int et_model_plan(et_model *m, const et_hparams *hp_in, et_err *e) {
    memset(m, 0, sizeof *m);
    et_hparams hp = *hp_in;
    if (hp.n_layer <= 0 || hp.n_layer > MAX_LAYER)
        return et_fail(e, ET_EINPUT, "model hparams: n_layer %d out of range", hp.n_layer);
    size_t nl = (size_t)hp.n_layer;
    hp.layer_n_head = malloc(nl * sizeof(int));
    hp.layer_n_head_kv = malloc(nl * sizeof(int));
    hp.layer_n_ff = malloc(nl * sizeof(int));
    m->layers = calloc(nl, sizeof *m->layers);
    m->hp = hp;
    if (!hp.layer_n_head || !hp.layer_n_head_kv || !hp.layer_n_ff || !m->layers) {
        et_model_free(m);
        return et_fail(e, ET_ERUN, "model: out of memory");
    }
    for (size_t i = 0; i < nl; i++) {
        hp.layer_n_head[i] = hp_in->layer_n_head ? hp_in->layer_n_head[i] : hp_in->n_head;
        hp.layer_n_head_kv[i] = hp_in->layer_n_head_kv ? hp_in->layer_n_head_kv[i] : hp_in->n_head_kv;
        hp.layer_n_ff[i] = hp_in->layer_n_ff ? hp_in->layer_n_ff[i] : hp_in->n_ff;
    }
    hp.n_head = hp.layer_n_head[0];
    hp.n_head_kv = hp.layer_n_head_kv[0];
    hp.n_ff = hp.layer_n_ff[0];
    if (hp.head_dim == 0) {
        int nh = 0;
        for (size_t i = 0; i < nl && !nh; i++) nh = hp.layer_n_head[i];
        if (nh > 0 && hp.n_embd % nh == 0) hp.head_dim = hp.n_embd / nh;
    }
    if (!hp.arch[0]) snprintf(hp.arch, sizeof hp.arch, "llama");
    m->hp = hp;
    int rc = check_hparams(&m->hp, e);
    if (rc) et_model_free(m);
    return rc;
}

int et_model_alloc_params(et_model *m, et_err *e) {
    int n = layout(m, NULL, 0);
    spec *s = malloc((size_t)n * sizeof *s);
    if (!s) {
        et_model_free(m);
        return et_fail(e, ET_ERUN, "model: out of memory");
    }
    layout(m, s, n);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += s[i].t.n;
    m->params = calloc(total, sizeof(float));
    if (!m->params) {
        free(s);
        et_model_free(m);
        return et_fail(e, ET_ERUN, "model: out of memory for %zu parameters", total);
    }
    m->n_params = total;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *s[i].slot = m->params + off;
        off += s[i].t.n;
    }
    if (m->hp.tied_output) m->output = m->tok_embd;
    free(s);
    return 0;
}

int et_model_alloc(et_model *m, const et_hparams *hp, et_err *e) {
    int rc = et_model_plan(m, hp, e);
    return rc ? rc : et_model_alloc_params(m, e);
}

int et_model_tensors(const et_model *m, et_named *out, int cap) {
    et_model *mm = (et_model *)m; /* layout() only reads through the slots here */
    int n = layout(mm, NULL, 0);
    if (!out || cap <= 0) return n;
    spec *s = malloc((size_t)n * sizeof *s);
    if (!s) return -1;
    layout(mm, s, n);
    for (int i = 0; i < n && i < cap; i++) out[i] = s[i].t;
    free(s);
    return n;
}

int et_model_find(const et_model *m, const char *name, et_named *out) {
    int n = et_model_tensors(m, NULL, 0);
    et_named *all = malloc((size_t)n * sizeof *all);
    if (!all) return -1;
    et_model_tensors(m, all, n);
    int rc = -1;
    for (int i = 0; i < n && rc; i++)
        if (strcmp(all[i].name, name) == 0) {
            *out = all[i];
            rc = 0;
        }
    free(all);
    return rc;
}

int et_model_is_uniform(const et_model *m) {
    const et_hparams *hp = &m->hp;
    for (int i = 1; i < hp->n_layer; i++)
        if (hp->layer_n_head[i] != hp->layer_n_head[0] || hp->layer_n_head_kv[i] != hp->layer_n_head_kv[0] ||
            hp->layer_n_ff[i] != hp->layer_n_ff[0])
            return 0;
    return 1;
}

/* 1 if the file starts with "GGUF". */
static int is_gguf(const char *path) {
    char magic[4];
    return et_sniff(path, magic, 4) == 4 && memcmp(magic, "GGUF", 4) == 0;   /* never opens a FIFO */
}

int et_model_set_tokenizer(et_model *m, const char *path, et_err *e) {
    et_tokenizer *t = NULL;
    int rc;
    size_t n = strlen(path);
    if (is_gguf(path)) {
        gguf_file g;
        rc = gguf_open(&g, path, e);
        if (rc) return rc;
        rc = et_tok_from_gguf(&t, &g, e);
        gguf_close(&g);
    } else if (n >= 5 && strcmp(path + n - 5, ".json") == 0) {
        rc = et_tok_from_hf_json(&t, path, e);
    } else {
        rc = et_tok_from_llama2c(&t, path, m->hp.n_vocab, e);
    }
    if (rc) return rc;
    if ((rc = et_tok_check_rows(t, path, "token_embd.weight", m->hp.n_vocab, e))) {   /* datasets/tokenizer.h */
        et_tok_free(t);
        return rc;
    }
    if (m->tok) et_tok_free(m->tok);
    m->tok = t;
    return 0;
}

int et_model_load(et_model *m, const char *path, const char *tokenizer_path, et_err *e) {
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st) != 0) return et_fail(e, ET_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))   /* sniffing would eat a pipe's first bytes */
        return et_fail(e, ET_EINPUT, "%s: not a regular file (a FIFO or a device): this command needs the model in "
                       "a file (`edgetune run`, `perplexity` and edgerun read a GGUF from a pipe)", path);
    int rc;
    if (S_ISDIR(st.st_mode)) rc = et_model_load_hf_with_tokenizer(m, path, tokenizer_path, e);
    else if (is_gguf(path)) rc = et_model_load_gguf(m, path, e);
    else return et_model_load_llama2c(m, path, tokenizer_path, e);
    if (!rc && tokenizer_path && !S_ISDIR(st.st_mode) && (rc = et_model_set_tokenizer(m, tokenizer_path, e)))
        et_model_free(m);
    return rc;
}
