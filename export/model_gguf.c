/* export/model_gguf.c — Model <-> GGUF (arch "llama" and "deci").
 *
 * Keys and tensor shapes as llama.cpp reads them (src/llama-model.cpp
 * load_hparams / load_tensors, src/llama-arch.cpp key names) and as
 * convert_hf_to_gguf.py writes them (gguf-py GGUFWriter: counts UINT32,
 * epsilon and rope base FLOAT32, per-layer lists INT32 arrays).  Import
 * accepts every type quant/quant.h dequantizes (F32, F16, BF16, Q8_0, Q4_0,
 * Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL) and converts it to F32; m->src_type keeps each
 * tensor's file type. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "gguf.h"
#include "model.h"

enum { MAX_WIDTH = 1 << 20 };

static void key(char *out, size_t cap, const char *arch, const char *suffix) {
    snprintf(out, cap, "%s.%s", arch, suffix);
}

static int is_int_type(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* A u32 key that must be present and in [lo, hi]. */
static int get_count(const gguf_file *g, const char *k, int lo, int hi, int *out, et_err *e) {
    uint32_t v;
    int rc = gguf_get_u32(g, k, &v, e);
    if (rc) return rc;
    if ((int64_t)v < lo || (int64_t)v > hi)
        return et_fail(e, ET_EINPUT, "%s: key '%s' = %u out of range [%d, %d]", g->path, k, v, lo, hi);
    *out = (int)v;
    return 0;
}

/* A per-layer value: a scalar integer (all layers) or an integer array of
 * n_layer elements (llama.cpp llama_model_loader::get_key_or_arr).
 * *present = 0 when the key is absent (out untouched).  0 or ET_EINPUT. */
static int get_layer_values(const gguf_file *g, const char *k, int n_layer, int *out, int *present, et_err *e) {
    int64_t i = gguf_find_key(g, k);
    *present = i >= 0;
    if (i < 0) return 0;
    const gguf_kv *kv = &g->kv[i];
    if (kv->type == GGUF_TYPE_ARRAY) {
        if (!is_int_type(kv->arr_type))
            return et_fail(e, ET_EINPUT, "%s: key '%s' is an array of non-integers", g->path, k);
        if (kv->n != (uint64_t)n_layer)
            return et_fail(e, ET_EINPUT, "%s: key '%s' has %llu elements, expected block_count = %d", g->path, k,
                           (unsigned long long)kv->n, n_layer);
        for (int l = 0; l < n_layer; l++) {
            int64_t v;
            if (gguf_arr_i64(kv, (uint64_t)l, &v) || v < 0 || v > MAX_WIDTH)
                return et_fail(e, ET_EINPUT, "%s: key '%s'[%d] out of range", g->path, k, l);
            out[l] = (int)v;
        }
        return 0;
    }
    int64_t v;
    int rc = gguf_get_i64(g, k, &v, e);
    if (rc) return rc;
    if (v < 0 || v > MAX_WIDTH) return et_fail(e, ET_EINPUT, "%s: key '%s' = %lld out of range", g->path, k, (long long)v);
    for (int l = 0; l < n_layer; l++) out[l] = (int)v;
    return 0;
}

static int has_key(const gguf_file *g, const char *k) { return gguf_find_key(g, k) >= 0; }

/* Refuse RoPE variants the model cannot represent. */
static int check_rope(const gguf_file *g, const char *arch, int head_dim, et_err *e) {
    char k[128];
    key(k, sizeof k, arch, "rope.dimension_count");
    if (has_key(g, k)) {
        uint32_t nrot;
        int rc = gguf_get_u32(g, k, &nrot, e);
        if (rc) return rc;
        if ((int64_t)nrot != head_dim)
            return et_fail(e, ET_EINPUT, "%s: %s = %u but head_dim = %d: partial RoPE is not supported", g->path, k,
                           nrot, head_dim);
    }
    key(k, sizeof k, arch, "rope.scaling.type");
    if (has_key(g, k)) {
        char type[32];
        int rc = gguf_get_str(g, k, type, sizeof type, e);
        if (rc) return rc;
        if (strcmp(type, "none") != 0) {
            float factor = 1.0f;
            char kf[128];
            key(kf, sizeof kf, arch, "rope.scaling.factor");
            if (has_key(g, kf) && (rc = gguf_get_f32(g, kf, &factor, e))) return rc;
            if (strcmp(type, "linear") != 0 || factor != 1.0f)
                return et_fail(e, ET_EINPUT, "%s: RoPE scaling '%s' (factor %g) is not supported", g->path, type,
                               (double)factor);
        }
    }
    return 0;
}

static int read_hparams(const gguf_file *g, et_hparams *hp, int **arrs, et_err *e) {
    int rc = gguf_get_str(g, "general.architecture", hp->arch, sizeof hp->arch, e);
    if (rc) return rc;
    const char *arch = hp->arch;
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "deci") != 0)
        return et_fail(e, ET_EINPUT, "%s: architecture '%s' is not supported (llama or deci)", g->path, arch);
    char k[128];
    key(k, sizeof k, arch, "context_length");
    if ((rc = get_count(g, k, 1, 1 << 24, &hp->n_ctx, e))) return rc;
    key(k, sizeof k, arch, "embedding_length");
    if ((rc = get_count(g, k, 1, MAX_WIDTH, &hp->n_embd, e))) return rc;
    key(k, sizeof k, arch, "block_count");
    if ((rc = get_count(g, k, 1, 1 << 16, &hp->n_layer, e))) return rc;
    for (int i = 0; i < 3; i++) {
        arrs[i] = calloc((size_t)hp->n_layer, sizeof(int));
        if (!arrs[i]) return et_fail(e, ET_ERUN, "%s: out of memory", g->path);
    }
    hp->layer_n_head = arrs[0];
    hp->layer_n_head_kv = arrs[1];
    hp->layer_n_ff = arrs[2];
    int present;
    key(k, sizeof k, arch, "attention.head_count");
    if ((rc = get_layer_values(g, k, hp->n_layer, hp->layer_n_head, &present, e))) return rc;
    if (!present) return et_fail(e, ET_EINPUT, "%s: missing key '%s'", g->path, k);
    key(k, sizeof k, arch, "attention.head_count_kv");
    if ((rc = get_layer_values(g, k, hp->n_layer, hp->layer_n_head_kv, &present, e))) return rc;
    if (!present) memcpy(hp->layer_n_head_kv, hp->layer_n_head, (size_t)hp->n_layer * sizeof(int));
    key(k, sizeof k, arch, "feed_forward_length");
    if ((rc = get_layer_values(g, k, hp->n_layer, hp->layer_n_ff, &present, e))) return rc;
    if (!present) return et_fail(e, ET_EINPUT, "%s: missing key '%s'", g->path, k);
    for (int l = 0; l < hp->n_layer; l++)
        if (hp->layer_n_head[l] > 0 && hp->layer_n_head_kv[l] == 0)
            return et_fail(e, ET_EINPUT,
                           "%s: layer %d has %d heads and 0 KV heads (DeciLM linear attention), which is not supported",
                           g->path, l, hp->layer_n_head[l]);
    key(k, sizeof k, arch, "attention.layer_norm_rms_epsilon");
    if ((rc = gguf_get_f32(g, k, &hp->rms_eps, e))) return rc;
    hp->rope_theta = 10000.0f;
    key(k, sizeof k, arch, "rope.freq_base");
    if (has_key(g, k) && (rc = gguf_get_f32(g, k, &hp->rope_theta, e))) return rc;
    /* head size: llama.cpp takes n_embd / n_head(layer 0) unless key_length is given */
    int nh0 = hp->layer_n_head[0];
    hp->head_dim = nh0 > 0 && hp->n_embd % nh0 == 0 ? hp->n_embd / nh0 : 0;
    key(k, sizeof k, arch, "attention.key_length");
    if (has_key(g, k) && (rc = get_count(g, k, 1, MAX_WIDTH, &hp->head_dim, e))) return rc;
    if (hp->head_dim <= 0)
        return et_fail(e, ET_EINPUT, "%s: cannot tell the head size (no %s, and n_embd %d / n_head %d of layer 0)",
                       g->path, k, hp->n_embd, nh0);
    key(k, sizeof k, arch, "attention.value_length");
    if (has_key(g, k)) {
        int vl;
        if ((rc = get_count(g, k, 1, MAX_WIDTH, &vl, e))) return rc;
        if (vl != hp->head_dim)
            return et_fail(e, ET_EINPUT, "%s: %s = %d differs from key_length %d: not supported", g->path, k, vl,
                           hp->head_dim);
    }
    if ((rc = check_rope(g, arch, hp->head_dim, e))) return rc;
    /* vocabulary: vocab_size, else the tokenizer's token count, else token_embd */
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    key(k, sizeof k, arch, "vocab_size");
    int64_t tk = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (has_key(g, k)) {
        if ((rc = get_count(g, k, 1, 1 << 24, &hp->n_vocab, e))) return rc;
    } else if (tk >= 0 && g->kv[tk].type == GGUF_TYPE_ARRAY && g->kv[tk].n > 0 && g->kv[tk].n <= (1 << 24)) {
        hp->n_vocab = (int)g->kv[tk].n;
    } else if (te && te->ne[1] > 0 && te->ne[1] <= (1 << 24)) {
        hp->n_vocab = (int)te->ne[1];
    } else {
        return et_fail(e, ET_EINPUT, "%s: cannot tell the vocabulary size (no %s, tokenizer or token_embd.weight)",
                       g->path, k);
    }
    hp->tied_output = gguf_find_tensor(g, "output.weight") == NULL;
    hp->qkv_bias = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        if (hp->layer_n_head[l] == 0) continue;
        snprintf(k, sizeof k, "blk.%d.attn_q.bias", l);
        hp->qkv_bias = gguf_find_tensor(g, k) != NULL;
        break;
    }
    return 0;
}

static void shape_str(char *out, size_t cap, int n_dims, const int64_t *ne) {
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < n_dims && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? ", " : "", (long long)ne[i]);
}

/* Check one GGUF tensor's shape and type against what the model expects. */
static int check_tensor(const gguf_file *g, const et_named *want, const gguf_tensor *t, et_err *e) {
    int64_t ne[GGUF_MAX_DIMS] = {1, 1, 1, 1};
    for (int i = 0; i < want->n_dims; i++) ne[i] = want->ne[i];
    int same = 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) same &= t->ne[i] == ne[i];
    if (!same) {
        char got[96], exp[96];
        shape_str(got, sizeof got, (int)t->n_dims, t->ne);
        shape_str(exp, sizeof exp, want->n_dims, want->ne);
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has shape [%s], expected [%s] from the hyperparameters", g->path,
                       want->name, got, exp);
    }
    /* quantized tensors are dequantized on import (quant/quant.h, bit-exact
     * with ggml's dequantize_row_*); gguf_open has checked ne[0] against the
     * block size and nbytes against the file, checked again here against
     * quant/'s own block table */
    const char *tn = ggml_type_name(t->type);
    if (!et_quant_supported(t->type))
        return et_fail(e, ET_EINPUT,
                       "%s: tensor '%s' has type %s%s%u%s: only F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, "
                       "Q5_K, Q6_K and IQ4_NL tensors can be loaded into the model",
                       g->path, want->name, tn ? tn : "", tn ? " (" : "unknown (", t->type, ")");
    uint64_t row = et_quant_row_bytes(t->type, want->ne[0]);
    uint64_t rows = want->n_dims == 2 ? (uint64_t)want->ne[1] : 1;
    if (row == 0 || rows > UINT64_MAX / row || row * rows != t->nbytes)
        return et_fail(e, ET_EINPUT,
                       "%s: tensor '%s' (%s): row length %lld is not a multiple of the block size %lld, or its "
                       "%llu bytes do not match the shape",
                       g->path, want->name, tn, (long long)want->ne[0], (long long)et_quant_block_elems(t->type),
                       (unsigned long long)t->nbytes);
    return 0;
}

/* Convert a checked tensor into want->data (F32 copied, everything else
 * dequantized: rows lie back to back and each is a whole number of blocks,
 * so the tensor is one call). */
static void copy_tensor(const et_named *want, const gguf_tensor *t) {
    et_dequantize_row(t->type, t->data, want->data, (int64_t)want->n);
}

/* Every tensor of the model present with the right shape and type, and
 * every tensor of the file with a place in the model. */
static int check_tensors(const gguf_file *g, const et_model *m, const et_named *want, int n, et_err *e) {
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_find_tensor(g, want[i].name);
        if (!t) return et_fail(e, ET_EINPUT, "%s: missing tensor '%s'", g->path, want[i].name);
        int rc = check_tensor(g, &want[i], t, e);
        if (rc) return rc;
    }
    for (uint64_t j = 0; j < g->n_tensors; j++) {
        gguf_str tn = g->tensors[j].name;
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = gguf_str_eq(tn, want[i].name);
        if (found) continue;
        int len = (int)(tn.len < 64 ? tn.len : 64);
        if (gguf_str_eq(tn, "rope_freqs.weight"))
            return et_fail(e, ET_EINPUT,
                           "%s: tensor 'rope_freqs.weight' (Llama 3 RoPE frequency scaling) is not supported", g->path);
        return et_fail(e, ET_EINPUT, "%s: tensor '%.*s' has no place in a %s model with these hyperparameters",
                       g->path, len, tn.ptr, m->hp.arch);
    }
    return 0;
}

/* A linear weight of a layer: a 2-D "blk.*" tensor (attn_q/k/v/output,
 * ffn_gate/up/down; the norms and biases are 1-D). */
static int is_block_linear(const et_named *t) { return t->n_dims == 2 && !strncmp(t->name, "blk.", 4); }

static int from_gguf(et_model *m, const gguf_file *g, int skip_linears, et_err *e) {
    memset(m, 0, sizeof *m);
    et_hparams hp = {0};
    int *arrs[3] = {0};
    int rc = read_hparams(g, &hp, arrs, e);
    if (!rc) rc = et_model_plan(m, &hp, e);
    for (int i = 0; i < 3; i++) free(arrs[i]);
    if (rc) {
        /* hparams refusals name no file: prefix it */
        size_t pl = strlen(g->path) + 2, ml = e ? strlen(e->msg) : 0;
        if (e && !strstr(e->msg, g->path) && pl + ml < sizeof e->msg) {
            memmove(e->msg + pl, e->msg, ml + 1);
            memcpy(e->msg, g->path, pl - 2);
            memcpy(e->msg + pl - 2, ": ", 2);
        }
        return rc;
    }
    if (gguf_get_str(g, "general.name", m->name, sizeof m->name, NULL)) m->name[0] = 0; /* optional */
    /* check everything before allocating the block: it is only as large as
     * the file's own (size-validated) tensors */
    int n = et_model_tensors(m, NULL, 0);
    et_named *want = malloc((size_t)n * sizeof *want);
    if (!want) rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path);
    if (!rc) {
        et_model_tensors(m, want, n);
        rc = check_tensors(g, m, want, n, e);
    }
    if (!rc) rc = et_model_alloc_params(m, e);
    if (!rc && !(m->src_type = malloc((size_t)n * sizeof *m->src_type)))
        rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path);
    if (!rc) {
        et_model_tensors(m, want, n);
        for (int i = 0; i < n; i++) {
            const gguf_tensor *t = gguf_find_tensor(g, want[i].name);
            if (!skip_linears || !is_block_linear(&want[i])) copy_tensor(&want[i], t);
            m->src_type[i] = t->type;
        }
    }
    free(want);
    if (!rc && has_key(g, "tokenizer.ggml.model")) {
        rc = et_tok_from_gguf(&m->tok, g, e);
        /* the shared vocabulary check (datasets/tokenizer.h): token_embd/output have n_vocab rows */
        if (!rc) rc = et_tok_check_rows(m->tok, g->path, "token_embd.weight", m->hp.n_vocab, e);
    }
    if (rc) et_model_free(m);
    return rc;
}

int et_model_from_gguf(et_model *m, const gguf_file *g, et_err *e) { return from_gguf(m, g, 0, e); }

int et_model_from_gguf_no_linears(et_model *m, const gguf_file *g, et_err *e) { return from_gguf(m, g, 1, e); }

int et_model_gguf_fill(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in, et_err *e) {
    const gguf_file *g = ctx;
    const gguf_tensor *t = gguf_find_tensor(g, name);
    if (!t) return et_fail(e, ET_EINPUT, "%s: missing tensor '%s'", g->path, name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' is not [%lld, %lld]", g->path, name, (long long)n_out,
                       (long long)n_in);
    if (et_dequantize_row(t->type, t->data, dst, n_out * n_in))
        return et_fail(e, ET_EINPUT, "%s: tensor '%s': type %u cannot be dequantized", g->path, name, t->type);
    return 0;
}

int et_model_load_gguf(et_model *m, const char *path, et_err *e) {
    memset(m, 0, sizeof *m);
    gguf_file g;
    int rc = gguf_open(&g, path, e);
    if (rc) return rc;
    rc = et_model_from_gguf(m, &g, e);
    gguf_close(&g);
    return rc;
}

/* ------------------------------------------------------------------ export */

const char *et_model_export_arch(const et_model *m) {
    const et_hparams *hp = &m->hp;
    int all_full = 1;
    for (int l = 0; l < hp->n_layer; l++) all_full &= hp->layer_n_head[l] > 0 && hp->layer_n_ff[l] > 0;
    return all_full && et_model_is_uniform(m) ? "llama" : "deci";
}

/* Checks that llama.cpp can run the model as written; sets *deci. */
static int export_plan(const et_model *m, const char *path, int *deci, et_err *e) {
    const et_hparams *hp = &m->hp;
    *deci = strcmp(et_model_export_arch(m), "deci") == 0;
    if (*deci && hp->layer_n_head[0] == 0)
        return et_fail(e, ET_EINPUT,
                       "%s: layer 0 has no attention heads; llama.cpp's deci loader takes the head size from layer 0, "
                       "so this model cannot be exported",
                       path);
    if (hp->qkv_bias)
        for (int l = 0; l < hp->n_layer; l++)
            if (hp->layer_n_head[l] > 0 && hp->layer_n_head[l] * hp->head_dim != hp->n_embd)
                return et_fail(e, ET_EINPUT,
                               "%s: layer %d: attn_q.bias has %d elements but llama.cpp expects n_embd = %d", path, l,
                               hp->layer_n_head[l] * hp->head_dim, hp->n_embd);
    return 0;
}

static int set_layer_key(gguf_writer *w, const char *k, int deci, const int32_t *vals, int n) {
    if (!deci) return gguf_set_u32(w, k, (uint32_t)vals[0]);
    return gguf_set_arr(w, k, GGUF_TYPE_INT32, vals, (uint64_t)n);
}

static int write_metadata(const et_model *m, gguf_writer *w, int deci, uint32_t type, const int32_t *ff) {
    const et_hparams *hp = &m->hp;
    const char *arch = deci ? "deci" : "llama";
    char k[128];
    int rc = 0, n = hp->n_layer;
    int32_t *nh = malloc((size_t)n * sizeof *nh), *nkv = malloc((size_t)n * sizeof *nkv);
    if (!nh || !nkv) {
        free(nh);
        free(nkv);
        return ET_ERUN;
    }
    for (int l = 0; l < n; l++) {
        nh[l] = hp->layer_n_head[l];
        nkv[l] = hp->layer_n_head_kv[l];
    }
    rc |= gguf_set_str(w, "general.architecture", arch);
    rc |= gguf_set_str(w, "general.type", "model");
    rc |= gguf_set_str(w, "general.name", m->name[0] ? m->name : "edgetune");
    key(k, sizeof k, arch, "block_count");
    rc |= gguf_set_u32(w, k, (uint32_t)n);
    key(k, sizeof k, arch, "context_length");
    rc |= gguf_set_u32(w, k, (uint32_t)hp->n_ctx);
    key(k, sizeof k, arch, "embedding_length");
    rc |= gguf_set_u32(w, k, (uint32_t)hp->n_embd);
    key(k, sizeof k, arch, "feed_forward_length");
    rc |= set_layer_key(w, k, deci, ff, n);
    key(k, sizeof k, arch, "attention.head_count");
    rc |= set_layer_key(w, k, deci, nh, n);
    key(k, sizeof k, arch, "attention.head_count_kv");
    rc |= set_layer_key(w, k, deci, nkv, n);
    key(k, sizeof k, arch, "rope.freq_base");
    rc |= gguf_set_f32(w, k, hp->rope_theta);
    key(k, sizeof k, arch, "attention.layer_norm_rms_epsilon");
    rc |= gguf_set_f32(w, k, hp->rms_eps);
    if (deci || hp->head_dim * hp->layer_n_head[0] != hp->n_embd) {
        key(k, sizeof k, arch, "attention.key_length");
        rc |= gguf_set_u32(w, k, (uint32_t)hp->head_dim);
        key(k, sizeof k, arch, "attention.value_length");
        rc |= gguf_set_u32(w, k, (uint32_t)hp->head_dim);
    }
    rc |= gguf_set_u32(w, "general.file_type", type == GGML_TYPE_F16 ? 1 : 0); /* LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 */
    key(k, sizeof k, arch, "vocab_size");
    rc |= gguf_set_u32(w, k, (uint32_t)hp->n_vocab);
    key(k, sizeof k, arch, "rope.dimension_count");
    rc |= gguf_set_u32(w, k, (uint32_t)hp->head_dim);
    rc |= gguf_set_u32(w, "general.quantization_version", 2);
    free(nh);
    free(nkv);
    return rc ? ET_ERUN : 0;
}

int et_model_save_gguf(const et_model *m, const char *path, uint32_t type, et_err *e) {
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16)
        return et_fail(e, ET_EINPUT, "%s: export type must be F32 or F16, not %s", path,
                       ggml_type_name(type) ? ggml_type_name(type) : "unknown");
    int deci;
    int rc = export_plan(m, path, &deci, e);
    if (rc) return rc;
    const et_hparams *hp = &m->hp;
    int n = et_model_tensors(m, NULL, 0);
    et_named *ts = malloc((size_t)n * sizeof *ts);
    int32_t *ff = malloc((size_t)hp->n_layer * sizeof *ff);
    /* zero FFN of width 1 for FFN-free layers with attention (see model.h) */
    float *zeros = calloc((size_t)hp->n_embd, sizeof(float)), *ones = malloc((size_t)hp->n_embd * sizeof(float));
    uint16_t *half = NULL;
    gguf_writer *w = gguf_writer_new();
    if (!ts || !ff || !zeros || !ones || !w) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        goto done;
    }
    et_model_tensors(m, ts, n);
    for (int i = 0; i < hp->n_embd; i++) ones[i] = 1.0f;
    for (int l = 0; l < hp->n_layer; l++)
        ff[l] = hp->layer_n_ff[l] == 0 && hp->layer_n_head[l] > 0 ? 1 : hp->layer_n_ff[l];
    if (write_metadata(m, w, deci, type, ff)) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory writing metadata", path);
        goto done;
    }
    if (m->tok && (rc = et_tok_write_gguf(m->tok, w, e))) goto done;
    if (type == GGML_TYPE_F16) {
        size_t nh = 0;
        for (int i = 0; i < n; i++) nh += ts[i].n_dims == 2 ? ts[i].n : 0;
        half = malloc((nh ? nh : 1) * sizeof *half);
        if (!half) {
            rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
            goto done;
        }
    }
    size_t ho = 0;
    int next_layer = 0; /* layers before this one have had their padding FFN added */
    for (int i = 0; i < n && !rc; i++) {
        const et_named *t = &ts[i];
        int layer = -1;
        if (sscanf(t->name, "blk.%d.", &layer) != 1) layer = -1;
        const void *data = t->data;
        uint32_t tt = GGML_TYPE_F32;
        if (t->n_dims == 2 && type == GGML_TYPE_F16) {
            for (size_t j = 0; j < t->n; j++) half[ho + j] = et_fp32_to_fp16(t->data[j]);
            data = half + ho;
            ho += t->n;
            tt = GGML_TYPE_F16;
        }
        rc = gguf_add_tensor(w, t->name, tt, (uint32_t)t->n_dims, t->ne, data, e);
        /* after a layer's last attention tensor, add the padding FFN if needed */
        int last_of_layer = i + 1 == n || sscanf(ts[i + 1].name, "blk.%d.", &next_layer) != 1 || next_layer != layer;
        if (!rc && layer >= 0 && last_of_layer && hp->layer_n_ff[layer] == 0 && ff[layer] == 1) {
            char nm[64];
            int64_t ne_n[1] = {hp->n_embd}, ne_in[2] = {hp->n_embd, 1}, ne_out[2] = {1, hp->n_embd};
            uint32_t wt = type; /* zeros are zeros in F16 and F32 */
            snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", layer);
            rc = gguf_add_tensor(w, nm, GGML_TYPE_F32, 1, ne_n, ones, e);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", layer);
            if (!rc) rc = gguf_add_tensor(w, nm, wt, 2, ne_in, zeros, e);
            snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", layer);
            if (!rc) rc = gguf_add_tensor(w, nm, wt, 2, ne_in, zeros, e);
            snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", layer);
            if (!rc) rc = gguf_add_tensor(w, nm, wt, 2, ne_out, zeros, e);
        }
    }
    if (!rc) rc = gguf_writer_write(w, path, e);
done:
    gguf_writer_free(w);
    free(ts);
    free(ff);
    free(zeros);
    free(ones);
    free(half);
    return rc;
}
