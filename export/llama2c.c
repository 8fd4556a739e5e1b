/* export/llama2c.c — import a karpathy/llama2.c checkpoint (.bin, the
 * unversioned "v0" format that run.c reads).
 *
 * Layout (llama2.c run.c read_checkpoint / memory_map_weights): 7 int32
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
 * vocab_size < 0 means the classifier is NOT shared with the embedding),
 * then float32 arrays, each one stacked over all layers:
 *   token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim],
 *   wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim],
 *   rms_ffn [L, dim], w1 [L, hidden, dim] (gate), w2 [L, dim, hidden] (down),
 *   w3 [L, hidden, dim] (up), rms_final [dim],
 *   freq_cis_real [seq_len, head_size/2], freq_cis_imag (same; skipped),
 *   wcls [vocab, dim] only when unshared.
 * Matrices are row-major [out, in] and RoPE rotates interleaved pairs, as
 * in GGUF, so tensors are copied as they are (llama.cpp
 * examples/convert-llama2c-to-ggml does the same). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"

static int32_t rd_i32(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t s;
    memcpy(&s, &v, 4);
    return s;
}

/* Copy n floats from the file cursor into dst and advance. */
static void take(float *dst, const uint8_t **cur, size_t n) {
    memcpy(dst, *cur, n * sizeof(float));
    *cur += n * sizeof(float);
}

/* Look for tokenizer.bin, then tok<n_vocab>.bin, in the model's folder. */
static int find_tokenizer(const char *model_path, int n_vocab, char *out, size_t cap) {
    const char *slash = strrchr(model_path, '/');
    int dlen = slash ? (int)(slash - model_path + 1) : 0;
    snprintf(out, cap, "%.*stokenizer.bin", dlen, model_path);
    if (access(out, R_OK) == 0) return 0;
    snprintf(out, cap, "%.*stok%d.bin", dlen, model_path, n_vocab);
    if (access(out, R_OK) == 0) return 0;
    return -1;
}

/* general.name from the file name: "dir/stories260K.bin" -> "stories260K". */
static void stem(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    int n = dot && dot > b ? (int)(dot - b) : (int)strlen(b);
    snprintf(out, cap, "%.*s", n, b);
}

int et_model_load_llama2c(et_model *m, const char *path, const char *tokenizer_path, et_err *e) {
    memset(m, 0, sizeof *m);
    et_map map;
    int rc = et_map_open(&map, path, e);
    if (rc) return rc;
    const size_t size = map.size;   /* the messages below print it after et_map_close */
    if (size < 28) {
        et_map_close(&map);
        return et_fail(e, ET_EINPUT, "%s: %zu bytes, too short for a llama2.c header (28 bytes)", path, size);
    }
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = rd_i32(map.data + 4 * i);
    int32_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv = h[4], vocab = h[5], seq_len = h[6];
    const char *why = NULL;
    if (dim <= 0 || dim > (1 << 20)) why = "dim";
    else if (hidden <= 0 || hidden > (1 << 20)) why = "hidden_dim";
    else if (n_layers <= 0 || n_layers > (1 << 16)) why = "n_layers";
    else if (n_heads <= 0 || dim % n_heads) why = "n_heads (must divide dim)";
    else if (n_kv <= 0 || n_kv > n_heads || n_heads % n_kv) why = "n_kv_heads (must divide n_heads)";
    else if (vocab == 0 || vocab == INT32_MIN || abs(vocab) > (1 << 24)) why = "vocab_size";
    else if (seq_len <= 0 || seq_len > (1 << 24)) why = "seq_len";
    else if ((dim / n_heads) % 2) why = "n_heads (head size dim/n_heads must be even)";
    if (why) {
        et_map_close(&map);
        return et_fail(e, ET_EINPUT,
                       "%s: not a llama2.c checkpoint: bad %s in header (dim %d, hidden_dim %d, n_layers %d, "
                       "n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d)",
                       path, why, dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len);
    }
    int shared = vocab > 0;
    uint64_t V = (uint64_t)(vocab < 0 ? -vocab : vocab), D = (uint64_t)dim, F = (uint64_t)hidden,
             L = (uint64_t)n_layers, hs = D / (uint64_t)n_heads, kvd = hs * (uint64_t)n_kv;
    uint64_t floats = V * D + L * D + L * D * D + 2 * L * kvd * D + L * D * D + L * D + 3 * L * F * D + D +
                      (uint64_t)seq_len * hs + (shared ? 0 : V * D);
    uint64_t want = 28 + 4 * floats;
    if ((uint64_t)size != want) {
        et_map_close(&map);
        return et_fail(e, ET_EINPUT,
                       "%s: %zu bytes, but the header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
                       "vocab_size %d, seq_len %d) implies %llu bytes",
                       path, size, dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, (unsigned long long)want);
    }

    et_hparams hp = {0};
    snprintf(hp.arch, sizeof hp.arch, "llama");
    hp.n_vocab = (int)V;
    hp.n_embd = dim;
    hp.n_layer = n_layers;
    hp.n_ctx = seq_len;
    hp.n_head = n_heads;
    hp.n_head_kv = n_kv;
    hp.n_ff = hidden;
    hp.head_dim = (int)hs;
    hp.rms_eps = 1e-5f;   /* llama2.c run.c rmsnorm */
    hp.rope_theta = 10000.0f;
    hp.tied_output = shared;
    rc = et_model_alloc(m, &hp, e);
    if (rc) {
        et_map_close(&map);
        return rc;
    }
    stem(path, m->name, sizeof m->name);
    const uint8_t *cur = map.data + 28;
    take(m->tok_embd, &cur, V * D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].attn_norm, &cur, D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].wq, &cur, D * D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].wk, &cur, kvd * D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].wv, &cur, kvd * D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].wo, &cur, D * D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].ffn_norm, &cur, D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].w_gate, &cur, F * D);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].w_down, &cur, D * F);
    for (int l = 0; l < n_layers; l++) take(m->layers[l].w_up, &cur, F * D);
    take(m->output_norm, &cur, D);
    cur += (size_t)seq_len * hs * sizeof(float); /* freq_cis_real, freq_cis_imag */
    if (!shared) take(m->output, &cur, V * D);
    et_map_close(&map);

    char found[4096];
    const char *tp = tokenizer_path;
    if (!tp && find_tokenizer(path, (int)V, found, sizeof found) == 0) tp = found;
    if (tp && (rc = et_model_set_tokenizer(m, tp, e))) {
        et_model_free(m);
        return rc;
    }
    return 0;
}
