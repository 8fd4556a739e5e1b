/* export/hf.c — import a Hugging Face model directory: config.json +
 * model.safetensors (or model.safetensors.index.json and its shards).
 *
 * Supported: model_type "llama", "mistral" (its sliding window is ignored,
 * as llama.cpp's llama arch does) and "qwen2" (q/k/v biases); F32, F16 and
 * BF16 weights.  HF applies RoPE to the two halves of each head
 * (rotate_half); edgetune and GGUF rotate interleaved pairs, so the rows of
 * q_proj and k_proj (and their biases) are permuted exactly as llama.cpp
 * convert_hf_to_gguf.py LlamaModel.permute does:
 *   w.reshape(n_head, 2, head_dim/2, in).swapaxes(1, 2).reshape(w.shape)
 * i.e. new row h*head_dim + 2i + j = old row h*head_dim + j*head_dim/2 + i,
 * with n_head = num_key_value_heads for k_proj. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "safetensors.h"

/* ------------------------------------------------------------ config.json */

/* Parse a JSON file; errors give the line of the failure. */
static int read_json(const char *path, cJSON **out, et_err *e) {
    et_map mp;
    int rc = et_map_open(&mp, path, e);
    if (rc) return rc;
    if (mp.size > (64u << 20)) {
        et_map_close(&mp);
        return et_fail(e, ET_EINPUT, "%s: %zu bytes is too large for a JSON configuration", path, mp.size);
    }
    const char *end = NULL;
    *out = mp.size ? cJSON_ParseWithLengthOpts((const char *)mp.data, mp.size, &end, 0) : NULL;
    if (!*out) {
        size_t at = end && mp.data ? (size_t)(end - (const char *)mp.data) : 0, line = 1;
        for (size_t i = 0; i < at && i < mp.size; i++) line += mp.data[i] == '\n';
        et_map_close(&mp);
        return et_fail(e, ET_EINPUT, "%s: line %zu (byte %zu): malformed JSON", path, line, at);
    }
    et_map_close(&mp);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return et_fail(e, ET_EINPUT, "%s: not a JSON object", path);
    }
    return 0;
}

/* Integer field in [lo, hi]; *out keeps def when absent or null (required = 0). */
static int cfg_int(const cJSON *c, const char *path, const char *name, int required, long lo, long hi, int *out,
                   et_err *e) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c, name);
    if (!j || cJSON_IsNull(j)) {
        if (required) return et_fail(e, ET_EINPUT, "%s: missing \"%s\"", path, name);
        return 0;
    }
    double v = j->valuedouble;
    if (!cJSON_IsNumber(j) || v != floor(v) || v < (double)lo || v > (double)hi)
        return et_fail(e, ET_EINPUT, "%s: \"%s\" must be an integer in [%ld, %ld]", path, name, lo, hi);
    *out = (int)v;
    return 0;
}

static int cfg_float(const cJSON *c, const char *path, const char *name, float *out, et_err *e) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c, name);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0.0) || !isfinite(j->valuedouble))
        return et_fail(e, ET_EINPUT, "%s: \"%s\" must be a positive number", path, name);
    *out = (float)j->valuedouble;
    return 0;
}

static int cfg_bool(const cJSON *c, const char *path, const char *name, int *out, et_err *e) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c, name);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsBool(j)) return et_fail(e, ET_EINPUT, "%s: \"%s\" must be true or false", path, name);
    *out = cJSON_IsTrue(j);
    return 0;
}

static const char *cfg_str(const cJSON *c, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c, name);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* Hyperparameters from config.json (transformers LlamaConfig / Qwen2Config
 * field names and defaults). *is_qwen2 = 1 for q/k/v biases. */
static int read_config(const char *path, et_hparams *hp, int *is_qwen2, et_err *e) {
    cJSON *c;
    int rc = read_json(path, &c, e);
    if (rc) return rc;
    const char *mt = cfg_str(c, "model_type");
    if (!mt) {
        const cJSON *ar = cJSON_GetObjectItemCaseSensitive(c, "architectures");
        const cJSON *a0 = cJSON_IsArray(ar) ? cJSON_GetArrayItem(ar, 0) : NULL;
        const char *an = cJSON_IsString(a0) ? a0->valuestring : "";
        mt = strcmp(an, "LlamaForCausalLM") == 0 ? "llama" : strcmp(an, "Qwen2ForCausalLM") == 0 ? "qwen2"
             : strcmp(an, "MistralForCausalLM") == 0 ? "mistral" : NULL;
    }
    *is_qwen2 = mt && strcmp(mt, "qwen2") == 0;
    if (!mt || (strcmp(mt, "llama") != 0 && strcmp(mt, "mistral") != 0 && !*is_qwen2)) {
        rc = et_fail(e, ET_EINPUT, "%s: model_type '%s' is not supported (llama, mistral, qwen2)", path, mt ? mt : "(none)");
        goto out;
    }
    snprintf(hp->arch, sizeof hp->arch, "llama");
    hp->rms_eps = 1e-6f;
    hp->rope_theta = 10000.0f;
    hp->n_ctx = 2048;
    if ((rc = cfg_int(c, path, "hidden_size", 1, 1, 1 << 20, &hp->n_embd, e))) goto out;
    if ((rc = cfg_int(c, path, "intermediate_size", 1, 1, 1 << 20, &hp->n_ff, e))) goto out;
    if ((rc = cfg_int(c, path, "num_hidden_layers", 1, 1, 1 << 16, &hp->n_layer, e))) goto out;
    if ((rc = cfg_int(c, path, "num_attention_heads", 1, 1, 1 << 20, &hp->n_head, e))) goto out;
    hp->n_head_kv = hp->n_head;
    if ((rc = cfg_int(c, path, "num_key_value_heads", 0, 1, 1 << 20, &hp->n_head_kv, e))) goto out;
    if ((rc = cfg_int(c, path, "vocab_size", 1, 1, 1 << 24, &hp->n_vocab, e))) goto out;
    if ((rc = cfg_int(c, path, "max_position_embeddings", 0, 1, 1 << 24, &hp->n_ctx, e))) goto out;
    if ((rc = cfg_float(c, path, "rms_norm_eps", &hp->rms_eps, e))) goto out;
    if ((rc = cfg_float(c, path, "rope_theta", &hp->rope_theta, e))) goto out;
    if ((rc = cfg_bool(c, path, "tie_word_embeddings", &hp->tied_output, e))) goto out;
    hp->head_dim = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : 0;
    if ((rc = cfg_int(c, path, "head_dim", 0, 2, 1 << 20, &hp->head_dim, e))) goto out;
    if (hp->head_dim <= 0 || hp->head_dim % 2) {
        rc = et_fail(e, ET_EINPUT, "%s: head size %d (hidden_size / num_attention_heads or head_dim) must be even",
                     path, hp->head_dim);
        goto out;
    }
    if (hp->n_head % hp->n_head_kv) {
        rc = et_fail(e, ET_EINPUT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                     hp->n_head, hp->n_head_kv);
        goto out;
    }
    int flag = 0;
    if ((rc = cfg_bool(c, path, "mlp_bias", &flag, e))) goto out;
    if (flag) { rc = et_fail(e, ET_EINPUT, "%s: mlp_bias is not supported", path); goto out; }
    if ((rc = cfg_bool(c, path, "attention_bias", &flag, e))) goto out;
    if (flag) { rc = et_fail(e, ET_EINPUT, "%s: attention_bias (o_proj bias) is not supported", path); goto out; }
    flag = 0;
    if ((rc = cfg_bool(c, path, "use_sliding_window", &flag, e))) goto out;
    if (flag) { rc = et_fail(e, ET_EINPUT, "%s: use_sliding_window is not supported", path); goto out; }
    const char *act = cfg_str(c, "hidden_act");
    if (act && strcmp(act, "silu") != 0) {
        rc = et_fail(e, ET_EINPUT, "%s: hidden_act '%s' is not supported (silu)", path, act);
        goto out;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(c, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        const char *t = cfg_str(rs, "rope_type");
        if (!t) t = cfg_str(rs, "type");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(rs, "factor");
        int identity = t && strcmp(t, "linear") == 0 && (!f || (cJSON_IsNumber(f) && f->valuedouble == 1.0));
        if (!(t && strcmp(t, "default") == 0) && !identity) {
            rc = et_fail(e, ET_EINPUT, "%s: rope_scaling '%s' is not supported", path, t ? t : "(unknown)");
            goto out;
        }
    }
out:
    cJSON_Delete(c);
    return rc;
}

/* -------------------------------------------------------------- tensors */

typedef struct shards {
    int n;
    char **file;     /* [n] file names relative to the directory */
    st_file *st;     /* [n] */
    cJSON *index;    /* weight_map object, or NULL for a single file */
} shards;

static void shards_close(shards *s) {
    for (int i = 0; i < s->n; i++) {
        st_close(&s->st[i]);
        free(s->file[i]);
    }
    free(s->file);
    free(s->st);
    cJSON_Delete(s->index);
    memset(s, 0, sizeof *s);
}

static int add_shard(shards *s, const char *dir, const char *file, et_err *e) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->file[i], file) == 0) return 0;
    if (!*file || strchr(file, '/') || strcmp(file, "..") == 0)
        return et_fail(e, ET_EINPUT, "%s/model.safetensors.index.json: shard name '%.200s' is not a file in the directory",
                       dir, file);
    char **nf = realloc(s->file, (size_t)(s->n + 1) * sizeof *nf);
    if (nf) s->file = nf;
    st_file *ns = nf ? realloc(s->st, (size_t)(s->n + 1) * sizeof *ns) : NULL;
    if (ns) s->st = ns;
    if (!nf || !ns) return et_fail(e, ET_ERUN, "%s: out of memory", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    s->file[s->n] = strdup(file);
    if (!s->file[s->n]) return et_fail(e, ET_ERUN, "%s: out of memory", dir);
    int rc = st_open(&s->st[s->n], path, e);
    if (rc) {
        free(s->file[s->n]);
        return rc;
    }
    s->n++;
    return 0;
}

static int open_shards(shards *s, const char *dir, et_err *e) {
    memset(s, 0, sizeof *s);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (access(path, R_OK) != 0) return add_shard(s, dir, "model.safetensors", e);
    cJSON *idx;
    int rc = read_json(path, &idx, e);
    if (rc) return rc;
    cJSON *wm = cJSON_DetachItemFromObjectCaseSensitive(idx, "weight_map");
    cJSON_Delete(idx);
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(wm);
        return et_fail(e, ET_EINPUT, "%s: missing \"weight_map\" object", path);
    }
    s->index = wm;
    const cJSON *c;
    cJSON_ArrayForEach(c, wm) {
        if (!cJSON_IsString(c))
            return et_fail(e, ET_EINPUT, "%s: weight_map[\"%.200s\"] is not a file name", path, c->string);
        if ((rc = add_shard(s, dir, c->valuestring, e))) return rc;
    }
    return 0;
}

/* The tensor named hf (and its file), or NULL. */
static const st_tensor *shard_find(const shards *s, const char *hf, const st_file **f) {
    int from = 0, to = s->n;
    if (s->index) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(s->index, hf);
        if (!cJSON_IsString(j)) return NULL;
        for (from = 0; from < s->n && strcmp(s->file[from], j->valuestring) != 0; from++) {}
        to = from + 1;
    }
    for (int i = from; i < to && i < s->n; i++) {
        const st_tensor *t = st_find(&s->st[i], hf);
        if (t) {
            *f = &s->st[i];
            return t;
        }
    }
    return NULL;
}

/* HF name of a GGUF tensor name; *perm_heads > 0 asks for the RoPE row
 * permutation with that many heads. */
static int hf_name(const et_model *m, const char *gg, char *out, size_t cap, int *perm_heads) {
    *perm_heads = 0;
    if (strcmp(gg, "token_embd.weight") == 0) return snprintf(out, cap, "model.embed_tokens.weight"), 0;
    if (strcmp(gg, "output_norm.weight") == 0) return snprintf(out, cap, "model.norm.weight"), 0;
    if (strcmp(gg, "output.weight") == 0) return snprintf(out, cap, "lm_head.weight"), 0;
    int l, pos = 0;
    if (sscanf(gg, "blk.%d.%n", &l, &pos) != 1 || pos == 0) return -1;
    static const char *const map[][2] = {
        {"attn_norm.weight", "input_layernorm.weight"},  {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},        {"attn_k.weight", "self_attn.k_proj.weight"},
        {"attn_k.bias", "self_attn.k_proj.bias"},        {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_v.bias", "self_attn.v_proj.bias"},        {"attn_output.weight", "self_attn.o_proj.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},         {"ffn_down.weight", "mlp.down_proj.weight"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(gg + pos, map[i][0]) != 0) continue;
        snprintf(out, cap, "model.layers.%d.%s", l, map[i][1]);
        if (strncmp(map[i][0], "attn_q.", 7) == 0) *perm_heads = m->hp.layer_n_head[l];
        if (strncmp(map[i][0], "attn_k.", 7) == 0) *perm_heads = m->hp.layer_n_head_kv[l];
        return 0;
    }
    return -1;
}

/* Copy row `from` of src to row `to` of dst for every (head, i, j); see model.h. */
static void rope_rows(float *dst, const float *src, int n_head, int head_dim, size_t row_len, int to_gguf) {
    int half = head_dim / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++) {
                size_t gg = (size_t)h * head_dim + 2 * i + j, hf = (size_t)h * head_dim + j * half + i;
                size_t to = to_gguf ? gg : hf, from = to_gguf ? hf : gg;
                memcpy(dst + to * row_len, src + from * row_len, row_len * sizeof(float));
            }
}

void et_rope_rows_hf_to_gguf(float *dst, const float *src, int n_head, int head_dim, size_t row_len) {
    rope_rows(dst, src, n_head, head_dim, row_len, 1);
}

void et_rope_rows_gguf_to_hf(float *dst, const float *src, int n_head, int head_dim, size_t row_len) {
    rope_rows(dst, src, n_head, head_dim, row_len, 0);
}

/* Check one tensor's presence, shape and dtype; with copy, also decode it
 * into t->data (permuting Q/K rows). */
static int load_one(const et_model *m, const shards *s, const char *dir, const et_named *t, int copy, et_err *e) {
    char hf[160];
    int perm = 0;
    if (hf_name(m, t->name, hf, sizeof hf, &perm))
        return et_fail(e, ET_ERUN, "%s: internal: no HF name for '%s'", dir, t->name);
    const st_file *f = NULL;
    const st_tensor *st = shard_find(s, hf, &f);
    if (!st) return et_fail(e, ET_EINPUT, "%s: missing tensor '%s' (for %s)", dir, hf, t->name);
    /* HF shapes are [out, in] = (ne[1], ne[0]); vectors [n] */
    int ok = st->n_dims == t->n_dims && st->shape[0] == (t->n_dims == 2 ? t->ne[1] : t->ne[0]) &&
             (t->n_dims == 1 || st->shape[1] == t->ne[0]);
    if (!ok) {
        char got[96] = "";
        size_t k = 0;
        for (int i = 0; i < st->n_dims && k < sizeof got; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)st->shape[i]);
        if (t->n_dims == 2)
            return et_fail(e, ET_EINPUT, "%s: tensor '%s' has shape [%s], expected [%lld, %lld] from config.json",
                           f->path, hf, got, (long long)t->ne[1], (long long)t->ne[0]);
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has shape [%s], expected [%lld] from config.json", f->path, hf,
                       got, (long long)t->ne[0]);
    }
    if (st->dtype != ST_F32 && st->dtype != ST_F16 && st->dtype != ST_BF16)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", f->path, hf,
                       st_dtype_name(st->dtype));
    if (!copy) return 0;
    if (!perm) return st_tensor_to_f32(f, st, t->data, e);
    float *tmp = malloc(t->n * sizeof *tmp);
    if (!tmp) return et_fail(e, ET_ERUN, "%s: out of memory", dir);
    int rc = st_tensor_to_f32(f, st, tmp, e);
    if (!rc) et_rope_rows_hf_to_gguf(t->data, tmp, perm, m->hp.head_dim, t->n_dims == 2 ? (size_t)t->ne[0] : 1);
    free(tmp);
    return rc;
}

/* Every tensor in the files must be used (or be a known leftover). */
static int check_unused(const et_model *m, const shards *s, const et_named *ts, int n, et_err *e) {
    for (int k = 0; k < s->n; k++) {
        const st_file *f = &s->st[k];
        for (size_t i = 0; i < f->n_tensors; i++) {
            const char *name = f->tensors[i].name;
            static const char inv_freq[] = "rotary_emb.inv_freq"; /* a buffer, recomputed from rope_theta */
            size_t len = strlen(name), il = sizeof inv_freq - 1;
            if (len >= il && strcmp(name + len - il, inv_freq) == 0) continue;
            if (m->hp.tied_output && strcmp(name, "lm_head.weight") == 0) continue;        /* tied copy */
            int used = 0;
            for (int j = 0; j < n && !used; j++) {
                char hf[160];
                int perm;
                used = hf_name(m, ts[j].name, hf, sizeof hf, &perm) == 0 && strcmp(hf, name) == 0;
            }
            if (!used)
                return et_fail(e, ET_EINPUT, "%s: tensor '%.200s' has no place in a llama model with this config.json",
                               f->path, name);
        }
    }
    return 0;
}

int et_model_load_hf(et_model *m, const char *dir, et_err *e) {
    return et_model_load_hf_with_tokenizer(m, dir, NULL, e);
}

int et_model_load_hf_with_tokenizer(et_model *m, const char *dir, const char *tokenizer_path, et_err *e) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    et_hparams hp = {0};
    int is_qwen2 = 0;
    int rc = read_config(path, &hp, &is_qwen2, e);
    if (rc) return rc;
    shards s;
    rc = open_shards(&s, dir, e);
    if (rc) {
        shards_close(&s);
        return rc;
    }
    const st_file *f;
    hp.qkv_bias = is_qwen2 || shard_find(&s, "model.layers.0.self_attn.q_proj.bias", &f) != NULL;
    rc = et_model_plan(m, &hp, e);
    if (rc) {
        shards_close(&s);
        return rc;
    }
    /* general.name: the directory's last component */
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    size_t bs = dl;
    while (bs > 0 && dir[bs - 1] != '/') bs--;
    snprintf(m->name, sizeof m->name, "%.*s", (int)(dl - bs), dir + bs);
    int n = et_model_tensors(m, NULL, 0);
    et_named *ts = malloc((size_t)n * sizeof *ts);
    if (!ts) rc = et_fail(e, ET_ERUN, "%s: out of memory", dir);
    else et_model_tensors(m, ts, n);
    /* check everything before allocating the block */
    for (int i = 0; i < n && !rc; i++) rc = load_one(m, &s, dir, &ts[i], 0, e);
    if (!rc) rc = check_unused(m, &s, ts, n, e);
    if (!rc && !(rc = et_model_alloc_params(m, e))) {
        et_model_tensors(m, ts, n);
        for (int i = 0; i < n && !rc; i++) rc = load_one(m, &s, dir, &ts[i], 1, e);
    }
    free(ts);
    shards_close(&s);
    if (!rc && tokenizer_path) {
        rc = et_model_set_tokenizer(m, tokenizer_path, e);
    } else if (!rc) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (access(path, R_OK) == 0) rc = et_model_set_tokenizer(m, path, e); /* else m->tok stays NULL */
    }
    if (rc) et_model_free(m);
    return rc;
}
