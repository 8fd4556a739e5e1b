/* lora/adapter.c — target names, layer selection, creation against a base
 * (et_model or GGUF), initialisation, scale.  GGUF I/O is in
 * adapter_gguf.c, PEFT I/O in adapter_peft.c. */
#include "adapter.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/shuffle.h"
#include "lora_impl.h"

/* ------------------------------------------------------------ names */
static const char *const T_SHORT[LORA_N_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *const T_GGUF[LORA_N_TARGETS] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down"};
static const char *const T_PEFT[LORA_N_TARGETS] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
static const char *const T_HF[LORA_N_TARGETS] = {"self_attn.q_proj", "self_attn.k_proj",
                                                 "self_attn.v_proj", "self_attn.o_proj",
                                                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

const char *lora_target_short(int t) { return t >= 0 && t < LORA_N_TARGETS ? T_SHORT[t] : NULL; }
const char *lora_target_gguf(int t) { return t >= 0 && t < LORA_N_TARGETS ? T_GGUF[t] : NULL; }
const char *lora_target_peft(int t) { return t >= 0 && t < LORA_N_TARGETS ? T_PEFT[t] : NULL; }
const char *lora_target_hf(int t) { return t >= 0 && t < LORA_N_TARGETS ? T_HF[t] : NULL; }

/* Target id of a name of len bytes in any of the spellings, or -1. */
static int target_from_name(const char *s, size_t len) {
    for (int t = 0; t < LORA_N_TARGETS; t++) {
        const char *names[3] = {T_SHORT[t], T_GGUF[t], T_PEFT[t]};
        for (int k = 0; k < 3; k++)
            if (strlen(names[k]) == len && !strncmp(names[k], s, len)) return t;
    }
    return -1;
}

int lora_parse_targets(const char *s, unsigned *bits, et_err *e) {
    *bits = 0;
    if (!s) return et_fail(e, ET_EUSAGE, "LoRA targets: empty list");
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        const char *q = p;
        while (*q && *q != ',') q++;
        size_t len = (size_t)(q - p);
        while (len > 0 && p[len - 1] == ' ') len--;
        if (len == 0) return et_fail(e, ET_EUSAGE, "LoRA targets '%s': empty item", s);
        if (len == 10 && !strncmp(p, "all-linear", 10)) {
            *bits |= LORA_ALL_LINEAR;
        } else {
            int t = target_from_name(p, len);
            if (t < 0)
                return et_fail(e, ET_EUSAGE,
                               "LoRA targets '%s': unknown target '%.*s' (expected q, k, v, o, gate, up, "
                               "down, their GGUF or PEFT names, or all-linear)", s, (int)len, p);
            *bits |= LORA_TARGET_BIT(t);
        }
        if (!*q) break;
        p = q + 1;
    }
    return 0;
}

void lora_format_targets(unsigned bits, char *out, size_t cap) {
    if (cap == 0) return;
    out[0] = 0;
    if ((bits & LORA_ALL_LINEAR) == LORA_ALL_LINEAR) {
        snprintf(out, cap, "all-linear");
        return;
    }
    size_t n = 0;
    for (int t = 0; t < LORA_N_TARGETS; t++) {
        if (!(bits & LORA_TARGET_BIT(t))) continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? "," : "", T_SHORT[t]);
        if (w < 0 || (size_t)w >= cap - n) return;
        n += (size_t)w;
    }
}

/* Parse a non-negative decimal at *p (advanced). -1 when none or too big. */
static long parse_index(const char **p) {
    if (!isdigit((unsigned char)**p)) return -1;
    long v = 0;
    while (isdigit((unsigned char)**p)) {
        v = v * 10 + (**p - '0');
        if (v > 1000000) return -1;
        (*p)++;
    }
    return v;
}

int lora_parse_layers(const char *s, int n_layer, uint8_t *sel, et_err *e) {
    if (n_layer <= 0) return et_fail(e, ET_EUSAGE, "LoRA layers: the base has no layers");
    int all = !s || !*s || !strcmp(s, "all");
    memset(sel, all ? 1 : 0, (size_t)n_layer);
    if (all) return 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        long a = parse_index(&p), b = a;
        if (a >= 0 && *p == '-') {
            p++;
            b = parse_index(&p);
        }
        while (*p == ' ') p++;
        if (a < 0 || b < 0 || (*p && *p != ','))
            return et_fail(e, ET_EUSAGE, "LoRA layers '%s': expected indices and ranges like 0-3,7", s);
        if (b < a) return et_fail(e, ET_EUSAGE, "LoRA layers '%s': range %ld-%ld is backwards", s, a, b);
        if (b >= n_layer)
            return et_fail(e, ET_EUSAGE, "LoRA layers '%s': layer %ld out of range (the base has %d layers)",
                           s, b, n_layer);
        for (long i = a; i <= b; i++) sel[i] = 1;
        if (!*p) break;
        p++;
    }
    return 0;
}

/* ------------------------------------------------------------ creation */
int lora_check_config(const lora_config *c, et_err *e) {
    if (c->rank < 1 || c->rank > LORA_MAX_RANK)
        return et_fail(e, ET_EUSAGE, "LoRA rank %d out of range (1..%d)", c->rank, LORA_MAX_RANK);
    if (!(c->alpha > 0.0f) || !isfinite(c->alpha))
        return et_fail(e, ET_EUSAGE, "LoRA alpha %g must be a positive number", (double)c->alpha);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return et_fail(e, ET_EUSAGE, "LoRA dropout %g out of range [0, 1)", (double)c->dropout);
    if (c->targets & ~LORA_ALL_LINEAR) return et_fail(e, ET_EUSAGE, "LoRA targets: unknown bits 0x%x", c->targets);
    return 0;
}

void lora_adapter_free(lora_adapter *ad) {
    if (!ad) return;
    free(ad->params);
    free(ad->tensors);
    free(ad->layer_sel);
    memset(ad, 0, sizeof *ad);
}

int lora_adapter_alloc(lora_adapter *ad, const char *arch, int n_layer, const lora_shape *shapes, int n,
                       et_err *e) {
    memset(ad, 0, sizeof *ad);
    if (n_layer <= 0 || n_layer > LORA_MAX_LAYER) return et_fail(e, ET_EINPUT, "LoRA: n_layer %d out of range", n_layer);
    if (n <= 0) return et_fail(e, ET_EUSAGE, "LoRA: no base tensor matches the chosen targets and layers");
    snprintf(ad->arch, sizeof ad->arch, "%s", arch);
    ad->n_layer = n_layer;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const lora_shape *s = &shapes[i];
        if (s->rank < 1 || s->rank > LORA_MAX_RANK || s->n_in < 1 || s->n_in > LORA_MAX_DIM ||
            s->n_out < 1 || s->n_out > LORA_MAX_DIM)
            return et_fail(e, ET_EINPUT, "LoRA: tensor %s: shape rank %d, n_in %d, n_out %d out of range",
                           s->base_name, s->rank, s->n_in, s->n_out);
        total += (size_t)s->rank * ((size_t)s->n_in + (size_t)s->n_out); /* < 2^12 * 2^21 each */
        if (total > LORA_MAX_PARAMS) return et_fail(e, ET_EINPUT, "LoRA: more than %llu parameters",
                                                     (unsigned long long)LORA_MAX_PARAMS);
    }
    ad->layer_sel = calloc((size_t)n_layer, 1);
    ad->tensors = calloc((size_t)n, sizeof *ad->tensors);
    ad->params = calloc(total, sizeof(float));
    if (!ad->layer_sel || !ad->tensors || !ad->params) {
        lora_adapter_free(ad);
        return et_fail(e, ET_ERUN, "LoRA: out of memory for %zu parameters", total);
    }
    ad->n_params = total;
    ad->n_tensors = n;
    float *p = ad->params;
    for (int i = 0; i < n; i++) {
        const lora_shape *s = &shapes[i];
        lora_tensor *t = &ad->tensors[i];
        snprintf(t->base_name, sizeof t->base_name, "%s", s->base_name);
        t->layer = s->layer;
        t->target = s->target;
        t->rank = s->rank;
        t->n_in = s->n_in;
        t->n_out = s->n_out;
        t->n_head_rope = s->n_head_rope;
        t->lora_a = p;
        p += (size_t)t->rank * (size_t)t->n_in;
        t->lora_b = p;
        p += (size_t)t->n_out * (size_t)t->rank;
        if (t->layer >= 0 && t->layer < n_layer) ad->layer_sel[t->layer] = 1;
        ad->targets |= LORA_TARGET_BIT(t->target);
        if (t->rank > ad->rank) ad->rank = t->rank;
    }
    return 0;
}

/* Common tail of the two create functions: shapes[] holds every
 * (layer, target) the base has, in order; keep the selected ones. */
static int create_from_shapes(lora_adapter *ad, const char *arch, int n_layer, lora_shape *shapes, int n,
                              const lora_config *c, et_err *e) {
    unsigned targets = c->targets ? c->targets : LORA_DEFAULT_TARGETS;
    uint8_t *sel = malloc((size_t)n_layer);
    if (!sel) return et_fail(e, ET_ERUN, "LoRA: out of memory");
    int rc = lora_parse_layers(c->layers, n_layer, sel, e);
    if (rc) {
        free(sel);
        return rc;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!sel[shapes[i].layer] || !(targets & LORA_TARGET_BIT(shapes[i].target))) continue;
        shapes[k] = shapes[i];
        shapes[k].rank = c->rank;
        k++;
    }
    free(sel);
    rc = lora_adapter_alloc(ad, arch, n_layer, shapes, k, e);
    if (rc) return rc;
    ad->rank = c->rank;
    ad->alpha = c->alpha;
    ad->use_rslora = c->use_rslora ? 1 : 0;
    ad->dropout = c->dropout;
    ad->seed = c->seed;
    lora_adapter_init(ad, c->seed);
    return 0;
}

static void set_shape(lora_shape *s, int layer, int target, int64_t n_in, int64_t n_out, int n_head_rope) {
    memset(s, 0, sizeof *s);
    snprintf(s->base_name, sizeof s->base_name, "blk.%d.%s.weight", layer, T_GGUF[target]);
    s->layer = layer;
    s->target = target;
    s->n_in = (int)n_in;
    s->n_out = (int)n_out;
    s->n_head_rope = n_head_rope;
}

/* Expected shapes of every adaptable tensor of m, in order. */
int lora_model_shapes(const et_model *m, lora_shape **out, int *n_out, et_err *e) {
    const et_hparams *hp = &m->hp;
    if (hp->n_layer <= 0 || hp->n_layer > LORA_MAX_LAYER)
        return et_fail(e, ET_EINPUT, "LoRA: base n_layer %d out of range", hp->n_layer);
    if (hp->n_embd <= 0 || hp->n_embd > LORA_MAX_DIM || hp->head_dim <= 0 || hp->head_dim > LORA_MAX_DIM)
        return et_fail(e, ET_EINPUT, "LoRA: base n_embd %d / head_dim %d out of range", hp->n_embd, hp->head_dim);
    lora_shape *s = calloc((size_t)hp->n_layer * LORA_N_TARGETS, sizeof *s);
    if (!s) return et_fail(e, ET_ERUN, "LoRA: out of memory");
    int k = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        int64_t nh = hp->layer_n_head ? hp->layer_n_head[il] : hp->n_head;
        int64_t nkv = hp->layer_n_head_kv ? hp->layer_n_head_kv[il] : hp->n_head_kv;
        int64_t nff = hp->layer_n_ff ? hp->layer_n_ff[il] : hp->n_ff;
        int64_t nq = nh * hp->head_dim, nk = nkv * hp->head_dim, d = hp->n_embd;
        if (nq > LORA_MAX_DIM || nk > LORA_MAX_DIM || nff > LORA_MAX_DIM || nh < 0 || nkv < 0 || nff < 0) {
            free(s);
            return et_fail(e, ET_EINPUT, "LoRA: base layer %d: widths out of range", il);
        }
        if (nq > 0 && nk > 0) {
            set_shape(&s[k++], il, LORA_T_Q, d, nq, (int)nh);
            set_shape(&s[k++], il, LORA_T_K, d, nk, (int)nkv);
            set_shape(&s[k++], il, LORA_T_V, d, nk, 0);
            set_shape(&s[k++], il, LORA_T_O, nq, d, 0);
        }
        if (nff > 0) {
            set_shape(&s[k++], il, LORA_T_GATE, d, nff, 0);
            set_shape(&s[k++], il, LORA_T_UP, d, nff, 0);
            set_shape(&s[k++], il, LORA_T_DOWN, nff, d, 0);
        }
    }
    *out = s;
    *n_out = k;
    return 0;
}

int lora_adapter_create(lora_adapter *ad, const et_model *m, const lora_config *c, et_err *e) {
    memset(ad, 0, sizeof *ad);
    int rc = lora_check_config(c, e);
    if (rc) return rc;
    lora_shape *s;
    int n;
    if ((rc = lora_model_shapes(m, &s, &n, e))) return rc;
    rc = create_from_shapes(ad, m->hp.arch[0] ? m->hp.arch : "llama", m->hp.n_layer, s, n, c, e);
    free(s);
    return rc;
}

int lora_gguf_layer_heads(const gguf_file *g, const char *arch, int il, int n_layer, int *n_head, int *n_head_kv,
                          et_err *e) {
    const char *suffix[2] = {"attention.head_count", "attention.head_count_kv"};
    int *out[2] = {n_head, n_head_kv};
    for (int k = 0; k < 2; k++) {
        char key[96];
        snprintf(key, sizeof key, "%s.%s", arch, suffix[k]);
        int64_t i = gguf_find_key(g, key);
        if (i < 0) {
            if (k == 1) { /* llama.cpp: head_count_kv defaults to head_count */
                *n_head_kv = *n_head;
                return 0;
            }
            return et_fail(e, ET_EINPUT, "%s: missing key '%s'", g->path, key);
        }
        const gguf_kv *kv = &g->kv[i];
        int64_t v;
        if (kv->type == GGUF_TYPE_ARRAY) {
            if (kv->n != (uint64_t)n_layer || gguf_arr_i64(kv, (uint64_t)il, &v))
                return et_fail(e, ET_EINPUT, "%s: key '%s' must be an integer array of %d elements", g->path,
                               key, n_layer);
        } else if (gguf_get_i64(g, key, &v, e)) {
            return ET_EINPUT;
        }
        if (v < 0 || v > LORA_MAX_DIM) return et_fail(e, ET_EINPUT, "%s: key '%s' = %lld out of range", g->path,
                                                      key, (long long)v);
        *out[k] = (int)v;
    }
    return 0;
}

int lora_gguf_base_info(const gguf_file *g, char *arch, size_t cap, int *n_layer, et_err *e) {
    if (gguf_get_str(g, "general.architecture", arch, cap, e)) return ET_EINPUT;
    char key[96];
    snprintf(key, sizeof key, "%s.block_count", arch);
    uint32_t nl;
    if (gguf_get_u32(g, key, &nl, e)) return ET_EINPUT;
    if (nl == 0 || nl > LORA_MAX_LAYER)
        return et_fail(e, ET_EINPUT, "%s: key '%s' = %u out of range", g->path, key, nl);
    *n_layer = (int)nl;
    return 0;
}

int lora_adapter_create_gguf(lora_adapter *ad, const gguf_file *g, const lora_config *c, et_err *e) {
    memset(ad, 0, sizeof *ad);
    int rc = lora_check_config(c, e);
    if (rc) return rc;
    char arch[32];
    int n_layer;
    if ((rc = lora_gguf_base_info(g, arch, sizeof arch, &n_layer, e))) return rc;
    lora_shape *s = calloc((size_t)n_layer * LORA_N_TARGETS, sizeof *s);
    if (!s) return et_fail(e, ET_ERUN, "LoRA: out of memory");
    int k = 0;
    for (int il = 0; il < n_layer && !rc; il++) {
        int nh = 0, nkv = 0;
        for (int t = 0; t < LORA_N_TARGETS && !rc; t++) {
            char name[GGUF_MAX_NAME];
            snprintf(name, sizeof name, "blk.%d.%s.weight", il, T_GGUF[t]);
            const gguf_tensor *bt = gguf_find_tensor(g, name);
            if (!bt) continue;
            if (bt->n_dims != 2 || bt->ne[0] > LORA_MAX_DIM || bt->ne[1] > LORA_MAX_DIM) {
                rc = et_fail(e, ET_EINPUT, "%s: tensor '%s' is not a 2-D weight of a supported size", g->path, name);
                break;
            }
            int heads = 0;
            if (t == LORA_T_Q || t == LORA_T_K) {
                if (!nh && (rc = lora_gguf_layer_heads(g, arch, il, n_layer, &nh, &nkv, e))) break;
                heads = t == LORA_T_Q ? nh : nkv;
            }
            set_shape(&s[k++], il, t, bt->ne[0], bt->ne[1], heads);
        }
    }
    if (!rc) rc = create_from_shapes(ad, arch, n_layer, s, k, c, e);
    free(s);
    return rc;
}

/* ------------------------------------------------------------ init, scale */
/* FNV-1a of a string, to derive a per-tensor random stream. */
static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

void lora_adapter_init(lora_adapter *ad, uint64_t seed) {
    for (int i = 0; i < ad->n_tensors; i++) {
        lora_tensor *t = &ad->tensors[i];
        uint64_t st = seed ^ fnv1a(t->base_name);
        et_shuffle_next(&st);
        /* kaiming_uniform_(a=sqrt(5)) on [rank, n_in]: gain = sqrt(2/(1+5)),
         * bound = gain * sqrt(3/fan_in) = 1/sqrt(fan_in), fan_in = n_in. */
        const double bound = 1.0 / sqrt((double)t->n_in);
        size_t na = (size_t)t->rank * (size_t)t->n_in;
        for (size_t j = 0; j < na; j++) {
            double u = (double)(et_shuffle_next(&st) >> 11) * 0x1.0p-53; /* [0, 1) */
            t->lora_a[j] = (float)((2.0 * u - 1.0) * bound);
        }
        memset(t->lora_b, 0, (size_t)t->n_out * (size_t)t->rank * sizeof(float));
    }
}

lora_tensor *lora_adapter_find(const lora_adapter *ad, const char *base_name) {
    for (int i = 0; i < ad->n_tensors; i++)
        if (!strcmp(ad->tensors[i].base_name, base_name)) return &ad->tensors[i];
    return NULL;
}

float lora_tensor_scale(const lora_adapter *ad, const lora_tensor *t) {
    if (ad->alpha == 0.0f) return 1.0f;
    double r = (double)t->rank;
    return (float)(ad->alpha / (ad->use_rslora ? sqrt(r) : r));
}

float lora_gguf_alpha(const lora_adapter *ad) {
    return ad->use_rslora ? (float)(ad->alpha * sqrt((double)ad->rank)) : ad->alpha;
}

/* ------------------------------------------------------------ RoPE row order */
int64_t lora_rope_hf_row(int64_t r, int64_t n_out, int64_t n_head) {
    if (n_head <= 0 || n_out <= 0 || n_out % n_head || (n_out / n_head) % 2 || r < 0 || r >= n_out) return -1;
    int64_t hd = n_out / n_head;
    int64_t h = r / hd, j = r % hd, i = j / 2, p = j % 2;
    return h * hd + p * (hd / 2) + i;
}
