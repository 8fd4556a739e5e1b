/* lora/adapter_gguf.c — the GGUF LoRA adapter as llama.cpp reads it
 * (src/llama-adapter.cpp llama_adapter_lora_init_impl; written the way
 * convert_lora_to_gguf.py writes it), and the check of an adapter against
 * its base.  See adapter.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/engine.h"
#include "../quant/quant.h"
#include "adapter.h"
#include "lora_impl.h"

/* ------------------------------------------------------------ KVs */
enum { KV_STR, KV_F32, KV_BOOL, KV_U64 };
typedef struct kvdesc {
    const char *key;
    int kind;
    const char *s;
    float f;
    uint64_t u;
} kvdesc;

/* The adapter's KVs, in file order; returns the count (<= 8). */
static int adapter_kvs(const lora_adapter *ad, kvdesc kv[8]) {
    int n = 0;
    kv[n++] = (kvdesc){"general.architecture", KV_STR, ad->arch, 0, 0};
    kv[n++] = (kvdesc){"general.type", KV_STR, "adapter", 0, 0};
    kv[n++] = (kvdesc){"adapter.type", KV_STR, "lora", 0, 0};
    kv[n++] = (kvdesc){"adapter.lora.alpha", KV_F32, NULL, lora_gguf_alpha(ad), 0};
    kv[n++] = (kvdesc){"edgetune.lora.alpha", KV_F32, NULL, ad->alpha, 0};
    kv[n++] = (kvdesc){"edgetune.lora.use_rslora", KV_BOOL, NULL, 0, (uint64_t)(ad->use_rslora != 0)};
    kv[n++] = (kvdesc){"edgetune.lora.dropout", KV_F32, NULL, ad->dropout, 0};
    kv[n++] = (kvdesc){"edgetune.lora.seed", KV_U64, NULL, 0, ad->seed};
    return n;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

uint64_t lora_adapter_gguf_bytes(const lora_adapter *ad, uint32_t type) {
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16) return 0;
    const uint64_t esz = type == GGML_TYPE_F32 ? 4 : 2;
    kvdesc kv[8];
    int nkv = adapter_kvs(ad, kv);
    uint64_t n = 4 + 4 + 8 + 8; /* magic, version, n_tensors, n_kv */
    for (int i = 0; i < nkv; i++) {
        n += 8 + strlen(kv[i].key) + 4;
        switch (kv[i].kind) {
        case KV_STR: n += 8 + strlen(kv[i].s); break;
        case KV_F32: n += 4; break;
        case KV_BOOL: n += 1; break;
        default: n += 8; break;
        }
    }
    uint64_t data = 0;
    for (int i = 0; i < ad->n_tensors; i++) {
        const lora_tensor *t = &ad->tensors[i];
        /* name (base + ".lora_a"), n_dims, 2 x ne, type, offset; twice */
        n += 2 * (8 + strlen(t->base_name) + 7 + 4 + 2 * 8 + 4 + 8);
        data += pad_to((uint64_t)t->rank * (uint64_t)t->n_in * esz, GGUF_DEFAULT_ALIGNMENT);
        data += pad_to((uint64_t)t->n_out * (uint64_t)t->rank * esz, GGUF_DEFAULT_ALIGNMENT);
    }
    if (ad->n_tensors > 0) n = pad_to(n, GGUF_DEFAULT_ALIGNMENT) + data;
    return n;
}

int lora_adapter_save_gguf(const lora_adapter *ad, const char *path, uint32_t type, et_err *e) {
    if (type != GGML_TYPE_F32 && type != GGML_TYPE_F16)
        return et_fail(e, ET_EUSAGE, "%s: LoRA adapter tensors must be F32 or F16, not %s", path,
                       ggml_type_name(type) ? ggml_type_name(type) : "an unknown type");
    if (ad->n_tensors <= 0) return et_fail(e, ET_EUSAGE, "%s: the adapter has no tensors", path);
    gguf_writer *w = gguf_writer_new();
    uint16_t *half = NULL;
    if (type == GGML_TYPE_F16) {
        half = malloc(ad->n_params * sizeof *half);
        if (half) et_quantize_row_f16(ad->params, half, (int64_t)ad->n_params);
    }
    if (!w || (type == GGML_TYPE_F16 && !half)) {
        gguf_writer_free(w);
        free(half);
        return et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    kvdesc kv[8];
    int nkv = adapter_kvs(ad, kv), rc = 0;
    for (int i = 0; i < nkv && !rc; i++) {
        switch (kv[i].kind) {
        case KV_STR: rc = gguf_set_str(w, kv[i].key, kv[i].s); break;
        case KV_F32: rc = gguf_set_f32(w, kv[i].key, kv[i].f); break;
        case KV_BOOL: rc = gguf_set_bool(w, kv[i].key, (int)kv[i].u); break;
        default: rc = gguf_set_u64(w, kv[i].key, kv[i].u); break;
        }
    }
    if (rc) rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
    for (int i = 0; i < ad->n_tensors && !rc; i++) {
        const lora_tensor *t = &ad->tensors[i];
        char name[GGUF_MAX_NAME + 8];
        const void *a = t->lora_a, *b = t->lora_b;
        if (half) {
            a = half + (t->lora_a - ad->params);
            b = half + (t->lora_b - ad->params);
        }
        int64_t ne_a[2] = {t->n_in, t->rank}, ne_b[2] = {t->rank, t->n_out};
        snprintf(name, sizeof name, "%s.lora_a", t->base_name);
        rc = gguf_add_tensor(w, name, type, 2, ne_a, a, e);
        if (rc) break;
        snprintf(name, sizeof name, "%s.lora_b", t->base_name);
        rc = gguf_add_tensor(w, name, type, 2, ne_b, b, e);
    }
    if (!rc) rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    free(half);
    return rc;
}

/* ------------------------------------------------------------ reading */
int lora_parse_base_name(const char *s, size_t len, int *layer, int *target) {
    if (len < 6 || strncmp(s, "blk.", 4)) return -1;
    size_t i = 4;
    long l = 0;
    if (i >= len || s[i] < '0' || s[i] > '9') return -1;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        l = l * 10 + (s[i] - '0');
        if (l >= LORA_MAX_LAYER) return -1;
        i++;
    }
    if (i >= len || s[i] != '.') return -1;
    i++;
    for (int t = 0; t < LORA_N_TARGETS; t++) {
        const char *g = lora_target_gguf(t);
        size_t gl = strlen(g);
        if (len - i == gl + 7 && !strncmp(s + i, g, gl) && !strncmp(s + i + gl, ".weight", 7)) {
            *layer = (int)l;
            *target = t;
            return 0;
        }
    }
    return -1;
}

static int ends_with(gguf_str s, const char *suf) {
    size_t n = strlen(suf);
    return s.len >= n && !memcmp(s.ptr + s.len - n, suf, n);
}

static int cmp_shape(const void *pa, const void *pb) {
    const lora_shape *a = pa, *b = pb;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return (a->target > b->target) - (a->target < b->target);
}

/* Decode a 2-D tensor of any dequantizable type into out[ne0*ne1]. */
static int tensor_to_f32(const gguf_file *g, const gguf_tensor *t, float *out, et_err *e) {
    if (t->type == GGML_TYPE_F32) {
        memcpy(out, t->data, (size_t)t->ne[0] * (size_t)t->ne[1] * sizeof(float));
        return 0;
    }
    uint64_t rb = et_quant_row_bytes(t->type, t->ne[0]);
    if (!et_quant_supported(t->type) || rb == 0)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.*s' has type %s, which edgetune cannot read", g->path,
                       (int)t->name.len, t->name.ptr, ggml_type_name(t->type) ? ggml_type_name(t->type) : "?");
    const uint8_t *p = t->data;
    for (int64_t r = 0; r < t->ne[1]; r++)
        et_dequantize_row(t->type, p + (size_t)r * rb, out + (size_t)r * (size_t)t->ne[0], t->ne[0]);
    return 0;
}

/* Optional keys of the edgetune namespace (absent -> defaults). */
static void read_edgetune_keys(const gguf_file *g, lora_adapter *ad, float gguf_alpha) {
    float alpha = 0, dropout = 0;
    int rs = 0;
    int64_t seed = 0;
    int have = gguf_find_key(g, "edgetune.lora.alpha") >= 0 && !gguf_get_f32(g, "edgetune.lora.alpha", &alpha, NULL);
    if (gguf_find_key(g, "edgetune.lora.use_rslora") >= 0) gguf_get_bool(g, "edgetune.lora.use_rslora", &rs, NULL);
    if (gguf_find_key(g, "edgetune.lora.dropout") >= 0) gguf_get_f32(g, "edgetune.lora.dropout", &dropout, NULL);
    if (gguf_find_key(g, "edgetune.lora.seed") >= 0) gguf_get_i64(g, "edgetune.lora.seed", &seed, NULL);
    /* edgetune's alpha/rsLoRA are used only when they reproduce the alpha
     * llama.cpp uses; otherwise llama.cpp's reading wins (scale alpha/rank). */
    ad->alpha = gguf_alpha;
    ad->use_rslora = 0;
    if (have) {
        double want = rs ? alpha * sqrt((double)ad->rank) : alpha;
        if (fabs(want - gguf_alpha) <= 1e-5 * fabs(want) + 1e-12) {
            ad->alpha = alpha;
            ad->use_rslora = rs ? 1 : 0;
        }
    }
    ad->dropout = dropout >= 0.0f && dropout < 1.0f ? dropout : 0.0f;
    ad->seed = (uint64_t)seed;
}

int lora_adapter_load_gguf(lora_adapter *ad, const char *path, et_err *e) {
    memset(ad, 0, sizeof *ad);
    gguf_file g;
    int rc = gguf_open(&g, path, e);
    if (rc) return rc;
    char s[64], arch[32];
    lora_shape *shapes = NULL;
    const gguf_tensor **ta = NULL, **tb = NULL;
#define FAIL(...) do { rc = et_fail(e, ET_EINPUT, __VA_ARGS__); goto done; } while (0)
    if (gguf_find_key(&g, "general.type") < 0) FAIL("%s: missing key 'general.type' (expected \"adapter\")", path);
    if ((rc = gguf_get_str(&g, "general.type", s, sizeof s, e))) goto done;
    if (strcmp(s, "adapter")) FAIL("%s: key 'general.type' is \"%s\", expected \"adapter\"", path, s);
    if (gguf_find_key(&g, "adapter.type") < 0) FAIL("%s: missing key 'adapter.type' (expected \"lora\")", path);
    if ((rc = gguf_get_str(&g, "adapter.type", s, sizeof s, e))) goto done;
    if (strcmp(s, "lora")) FAIL("%s: key 'adapter.type' is \"%s\", expected \"lora\"", path, s);
    if ((rc = gguf_get_str(&g, "general.architecture", arch, sizeof arch, e))) goto done;
    float gguf_alpha = 0.0f;
    if (gguf_find_key(&g, "adapter.lora.alpha") >= 0 && (rc = gguf_get_f32(&g, "adapter.lora.alpha", &gguf_alpha, e)))
        goto done;
    if ((rc = et_lora_check_alpha(path, gguf_alpha, e))) goto done;

    uint64_t nt = g.n_tensors;
    shapes = calloc(nt ? nt : 1, sizeof *shapes);
    ta = calloc(nt ? nt : 1, sizeof *ta);
    tb = calloc(nt ? nt : 1, sizeof *tb);
    if (!shapes || !ta || !tb) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        goto done;
    }
    /* names first, as llama.cpp does before pairing */
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = &g.tensors[i];
        if (!ends_with(t->name, "_norm.weight") && !ends_with(t->name, ".lora_a") && !ends_with(t->name, ".lora_b"))
            FAIL("%s: tensor '%.*s' has an unexpected suffix (expected .lora_a or .lora_b)", path,
                 (int)t->name.len, t->name.ptr);
    }
    int n = 0, max_layer = -1;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = &g.tensors[i];
        if (ends_with(t->name, "_norm.weight")) continue; /* ignored, as llama.cpp does */
        if (ends_with(t->name, ".lora_b")) {
            char nm[GGUF_MAX_NAME + 8];
            snprintf(nm, sizeof nm, "%.*s_a", (int)(t->name.len - 2), t->name.ptr);
            if (!gguf_find_tensor(&g, nm))
                FAIL("%s: tensor '%.*s' has no matching '%s'", path, (int)t->name.len, t->name.ptr, nm);
            continue;
        }
        size_t blen = (size_t)t->name.len - 7;
        int layer, target;
        if (lora_parse_base_name(t->name.ptr, blen, &layer, &target))
            FAIL("%s: tensor '%.*s': edgetune adapts only blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,"
                 "ffn_up,ffn_down}.weight", path, (int)t->name.len, t->name.ptr);
        char nb[GGUF_MAX_NAME + 8];
        snprintf(nb, sizeof nb, "%.*s.lora_b", (int)blen, t->name.ptr);
        const gguf_tensor *b = gguf_find_tensor(&g, nb);
        if (!b) FAIL("%s: tensor '%.*s' has no matching '%s'", path, (int)t->name.len, t->name.ptr, nb);
        if (t->n_dims != 2 || b->n_dims != 2)
            FAIL("%s: tensor '%s': lora_a and lora_b must be 2-D", path, nb);
        if (t->ne[1] != b->ne[0])
            FAIL("%s: tensor '%.*s' has ne {%lld, %lld} but '%s' has ne {%lld, %lld}: rank differs "
                 "(lora_a must be ne {n_in, rank}, lora_b ne {rank, n_out})", path, (int)t->name.len, t->name.ptr,
                 (long long)t->ne[0], (long long)t->ne[1], nb, (long long)b->ne[0], (long long)b->ne[1]);
        lora_shape *sh = &shapes[n];
        snprintf(sh->base_name, sizeof sh->base_name, "%.*s", (int)blen, t->name.ptr);
        sh->layer = layer;
        sh->target = target;
        if (t->ne[1] > LORA_MAX_RANK || t->ne[0] > LORA_MAX_DIM || b->ne[1] > LORA_MAX_DIM)
            FAIL("%s: tensor '%.*s': shape out of range", path, (int)t->name.len, t->name.ptr);
        sh->rank = (int)t->ne[1];
        sh->n_in = (int)t->ne[0];
        sh->n_out = (int)b->ne[1];
        ta[n] = t;
        tb[n] = b;
        if (layer > max_layer) max_layer = layer;
        n++;
    }
    if (n == 0) FAIL("%s: the adapter has no lora_a/lora_b tensors", path);
    /* sort shapes and the tensor pointers together: sort an index */
    for (int i = 0; i < n; i++) shapes[i].n_head_rope = i; /* carry the index through the sort */
    qsort(shapes, (size_t)n, sizeof *shapes, cmp_shape);
    if ((rc = lora_adapter_alloc(ad, arch, max_layer + 1, shapes, n, e))) goto done;
    for (int i = 0; i < n; i++) {
        int k = shapes[i].n_head_rope;
        ad->tensors[i].n_head_rope = 0;
        if ((rc = tensor_to_f32(&g, ta[k], ad->tensors[i].lora_a, e))) goto done;
        if ((rc = tensor_to_f32(&g, tb[k], ad->tensors[i].lora_b, e))) goto done;
    }
    for (int i = 0; i < n; i++) {   /* the shared validation (engine/engine.h) */
        const lora_tensor *t = &ad->tensors[i];
        char na[GGUF_MAX_NAME + 8], nb[GGUF_MAX_NAME + 8];
        snprintf(na, sizeof na, "%s.lora_a", t->base_name);
        snprintf(nb, sizeof nb, "%s.lora_b", t->base_name);
        if ((rc = et_lora_check_values(path, na, t->lora_a, (size_t)t->rank * (size_t)t->n_in, e)) ||
            (rc = et_lora_check_values(path, nb, t->lora_b, (size_t)t->n_out * (size_t)t->rank, e)))
            goto done;
    }
    read_edgetune_keys(&g, ad, gguf_alpha);
#undef FAIL
done:
    if (rc) lora_adapter_free(ad);
    free(shapes);
    free(ta);
    free(tb);
    gguf_close(&g);
    return rc;
}

/* ------------------------------------------------------------ checks */
/* Resize layer_sel to the base's n_layer after a check succeeded. */
static int adopt_n_layer(lora_adapter *ad, int n_layer, et_err *e) {
    if (n_layer == ad->n_layer) return 0;
    uint8_t *sel = calloc((size_t)n_layer, 1);
    if (!sel) return et_fail(e, ET_ERUN, "LoRA: out of memory");
    for (int i = 0; i < ad->n_tensors; i++) sel[ad->tensors[i].layer] = 1;
    free(ad->layer_sel);
    ad->layer_sel = sel;
    ad->n_layer = n_layer;
    return 0;
}

static int shape_mismatch(const char *name, const lora_tensor *t, int64_t ne0, int64_t ne1, const char *base, et_err *e) {
    return et_fail(e, ET_EINPUT,
                   "%s: tensor '%s.lora_a'/'.lora_b' does not fit the base %s: the base weight '%s' has ne "
                   "{%lld, %lld}, the adapter expects ne {%d, %d} (n_in, n_out)",
                   name, t->base_name, base, t->base_name, (long long)ne0, (long long)ne1, t->n_in, t->n_out);
}

int lora_adapter_check_gguf(lora_adapter *ad, const char *name, const gguf_file *base, et_err *e) {
    char arch[32];
    int n_layer;
    int rc = lora_gguf_base_info(base, arch, sizeof arch, &n_layer, e);
    if (rc) return rc;
    if (strcmp(arch, ad->arch))
        return et_fail(e, ET_EINPUT, "%s: key 'general.architecture' is \"%s\" but the base %s has \"%s\"", name,
                       ad->arch, base->path, arch);
    for (int i = 0; i < ad->n_tensors; i++) {
        lora_tensor *t = &ad->tensors[i];
        const gguf_tensor *bt = gguf_find_tensor(base, t->base_name);
        if (!bt)
            return et_fail(e, ET_EINPUT, "%s: tensor '%s.lora_a': the base %s has no tensor '%s'", name,
                           t->base_name, base->path, t->base_name);
        if (bt->n_dims != 2 || bt->ne[0] != t->n_in || bt->ne[1] != t->n_out)
            return shape_mismatch(name, t, bt->ne[0], bt->n_dims >= 2 ? bt->ne[1] : 0, base->path, e);
        if (t->target == LORA_T_Q || t->target == LORA_T_K) {
            int nh, nkv;
            if ((rc = lora_gguf_layer_heads(base, arch, t->layer, n_layer, &nh, &nkv, e))) return rc;
            t->n_head_rope = t->target == LORA_T_Q ? nh : nkv;
        }
    }
    if (ad->n_layer > n_layer)
        return et_fail(e, ET_EINPUT, "%s: the adapter has layers up to %d but the base %s has %d", name,
                       ad->n_layer - 1, base->path, n_layer);
    return adopt_n_layer(ad, n_layer, e);
}

int lora_adapter_check_model(lora_adapter *ad, const char *name, const et_model *m, et_err *e) {
    const char *arch = m->hp.arch[0] ? m->hp.arch : "llama";
    if (strcmp(arch, ad->arch))
        return et_fail(e, ET_EINPUT, "%s: key 'general.architecture' is \"%s\" but the base model has \"%s\"", name,
                       ad->arch, arch);
    lora_shape *s;
    int n, rc = lora_model_shapes(m, &s, &n, e);
    if (rc) return rc;
    for (int i = 0; i < ad->n_tensors && !rc; i++) {
        lora_tensor *t = &ad->tensors[i];
        const lora_shape *hit = NULL;
        for (int k = 0; k < n && !hit; k++)
            if (s[k].layer == t->layer && s[k].target == t->target) hit = &s[k];
        if (!hit)
            rc = et_fail(e, ET_EINPUT, "%s: tensor '%s.lora_a': the base model has no tensor '%s'", name,
                         t->base_name, t->base_name);
        else if (hit->n_in != t->n_in || hit->n_out != t->n_out)
            rc = shape_mismatch(name, t, hit->n_in, hit->n_out, "model", e);
        else
            t->n_head_rope = hit->n_head_rope;
    }
    free(s);
    if (!rc && ad->n_layer > m->hp.n_layer)
        rc = et_fail(e, ET_EINPUT, "%s: the adapter has layers up to %d but the base has %d", name, ad->n_layer - 1,
                     m->hp.n_layer);
    return rc ? rc : adopt_n_layer(ad, m->hp.n_layer, e);
}
