/* tests/lora_fixtures.h — small synthetic llama models for the LoRA tests:
 * an et_model with only its hyperparameters set (all LoRA creation needs)
 * and a matching base GGUF with random F32 weights, written by hand with
 * the GGUF writer (independent of export/model). Include after testutil.h. */
#ifndef ET_LORA_FIXTURES_H
#define ET_LORA_FIXTURES_H

#include <math.h>

#include "../export/gguf.h"
#include "../export/model.h"

typedef struct fx_dims {
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
} fx_dims;

static const char *fx_tmp(const char *name) {
    static char bufs[8][512];
    static int k = 0;
    char *b = bufs[k++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static uint64_t fx_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static float fx_rand(uint64_t *s) { return (float)((double)(fx_rng_next(s) >> 11) * 0x1.0p-52 - 1.0); }

static void fx_fill(float *x, size_t n, float amp, uint64_t *s) {
    for (size_t i = 0; i < n; i++) x[i] = amp * fx_rand(s);
}

/* An et_model with hp only (uniform layers; layer_* arrays NULL). */
static et_model fx_model(const fx_dims *d) {
    et_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.hp.arch, sizeof m.hp.arch, "llama");
    m.hp.n_layer = d->n_layer;
    m.hp.n_embd = d->n_embd;
    m.hp.n_head = d->n_head;
    m.hp.n_head_kv = d->n_head_kv;
    m.hp.head_dim = d->head_dim;
    m.hp.n_ff = d->n_ff;
    m.hp.n_vocab = d->n_vocab;
    m.hp.n_ctx = 64;
    m.hp.rms_eps = 1e-5f;
    m.hp.rope_theta = 10000.0f;
    return m;
}

/* Write a base GGUF (arch "llama") with random F32 weights; returns the
 * number of tensors.  Weights are kept in *store (caller frees). */
static int fx_write_base(const char *path, const fx_dims *d, uint64_t seed, const char *arch, float **store) {
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    char key[96];
    gguf_set_str(w, "general.architecture", arch);
    gguf_set_str(w, "general.name", "fixture");
    snprintf(key, sizeof key, "%s.block_count", arch);
    gguf_set_u32(w, key, (uint32_t)d->n_layer);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    gguf_set_u32(w, key, (uint32_t)d->n_embd);
    snprintf(key, sizeof key, "%s.feed_forward_length", arch);
    gguf_set_u32(w, key, (uint32_t)d->n_ff);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    gguf_set_u32(w, key, (uint32_t)d->n_head);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    gguf_set_u32(w, key, (uint32_t)d->n_head_kv);
    const int64_t E = d->n_embd, Q = (int64_t)d->n_head * d->head_dim, K = (int64_t)d->n_head_kv * d->head_dim,
                  F = d->n_ff, V = d->n_vocab;
    struct { const char *suffix; int64_t ne0, ne1; } L[] = {
        {"attn_norm.weight", E, 0}, {"attn_q.weight", E, Q}, {"attn_k.weight", E, K},
        {"attn_v.weight", E, K}, {"attn_output.weight", Q, E}, {"ffn_norm.weight", E, 0},
        {"ffn_gate.weight", E, F}, {"ffn_up.weight", E, F}, {"ffn_down.weight", F, E},
    };
    size_t total = (size_t)(2 * V * E + E);
    for (int l = 0; l < d->n_layer; l++)
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) total += (size_t)(L[k].ne0 * (L[k].ne1 ? L[k].ne1 : 1));
    float *buf = malloc(total * sizeof *buf);
    assert_non_null(buf);
    uint64_t s = seed;
    fx_fill(buf, total, 0.5f, &s);
    float *p = buf;
    et_err e = {0};
    int n = 0;
    int64_t ne[2] = {E, V};
    assert_int_equal(gguf_add_tensor(w, "token_embd.weight", GGML_TYPE_F32, 2, ne, p, &e), 0);
    p += E * V;
    n++;
    int64_t ne1[1] = {E};
    assert_int_equal(gguf_add_tensor(w, "output_norm.weight", GGML_TYPE_F32, 1, ne1, p, &e), 0);
    p += E;
    n++;
    assert_int_equal(gguf_add_tensor(w, "output.weight", GGML_TYPE_F32, 2, ne, p, &e), 0);
    p += E * V;
    n++;
    for (int l = 0; l < d->n_layer; l++)
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, L[k].suffix);
            int64_t tne[2] = {L[k].ne0, L[k].ne1};
            assert_int_equal(gguf_add_tensor(w, name, GGML_TYPE_F32, L[k].ne1 ? 2 : 1, tne, p, &e), 0);
            p += L[k].ne0 * (L[k].ne1 ? L[k].ne1 : 1);
            n++;
        }
    if (gguf_writer_write(w, path, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    *store = buf;
    return n;
}

/* Random lora_b (and leave lora_a from init) so merges are not no-ops. */
static void fx_randomize_b(lora_adapter *ad, uint64_t seed, float amp) {
    uint64_t s = seed;
    for (int i = 0; i < ad->n_tensors; i++) {
        lora_tensor *t = &ad->tensors[i];
        fx_fill(t->lora_b, (size_t)t->n_out * (size_t)t->rank, amp, &s);
    }
}

#endif
