/* prune/plan.c — pruning plans: JSON I/O, validation, application
 * (prune/plan.h). */
#include "plan.h"

#include "../quant/quantize_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ basics */

static int *iota(int n) {
    int *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    if (a)
        for (int i = 0; i < n; i++) a[i] = i;
    return a;
}

void et_prune_plan_free(et_prune_plan *p) {
    if (!p) return;
    if (p->layers)
        for (int l = 0; l < p->n_layer; l++) {
            free(p->layers[l].keep_head);
            free(p->layers[l].keep_kv);
            free(p->layers[l].keep_ff);
        }
    free(p->layers);
    free(p->keep_embd);
    cJSON_Delete(p->scores);
    memset(p, 0, sizeof *p);
}

int et_prune_plan_full(et_prune_plan *p, const et_model *m, const char *sha256, et_err *e) {
    memset(p, 0, sizeof *p);
    const et_hparams *hp = &m->hp;
    p->n_layer = hp->n_layer;
    p->n_embd = hp->n_embd;
    p->n_keep_embd = hp->n_embd;
    p->head_dim = hp->head_dim;
    if (sha256) snprintf(p->base_sha256, sizeof p->base_sha256, "%s", sha256);
    p->layers = calloc((size_t)hp->n_layer, sizeof *p->layers);
    if (!p->layers) return et_fail(e, ET_ERUN, "prune plan: out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        et_prune_layer *L = &p->layers[l];
        L->n_head = L->n_keep_head = hp->layer_n_head[l];
        L->n_head_kv = L->n_keep_kv = hp->layer_n_head_kv[l];
        L->n_ff = L->n_keep_ff = hp->layer_n_ff[l];
        L->keep_head = iota(L->n_head);
        L->keep_kv = iota(L->n_head_kv);
        L->keep_ff = iota(L->n_ff);
        if (!L->keep_head || !L->keep_kv || !L->keep_ff) {
            et_prune_plan_free(p);
            return et_fail(e, ET_ERUN, "prune plan: out of memory");
        }
    }
    return 0;
}

/* ascending, unique, in [0, n) */
static int check_list(const int *a, int k, int n, const char *what, int layer, const char *name, et_err *e) {
    for (int i = 0; i < k; i++) {
        if (a[i] < 0 || a[i] >= n)
            return et_fail(e, ET_EINPUT, "%s: layer %d: %s[%d] = %d is outside [0, %d)", what, layer, name, i, a[i], n);
        if (i && a[i] <= a[i - 1])
            return et_fail(e, ET_EINPUT, "%s: layer %d: %s must be strictly ascending (%d after %d)", what, layer, name,
                           a[i], a[i - 1]);
    }
    return 0;
}

int et_prune_plan_validate(const et_prune_plan *p, const char *what, et_err *e) {
    if (p->n_layer < 1 || !p->layers) return et_fail(e, ET_EINPUT, "%s: the plan has no layers", what);
    if (p->n_embd < 1 || p->head_dim < 1) return et_fail(e, ET_EINPUT, "%s: n_embd / head_dim must be positive", what);
    if (p->keep_embd) {
        if (p->n_keep_embd < 1 || p->n_keep_embd > p->n_embd)
            return et_fail(e, ET_EINPUT, "%s: embd keeps %d of %d channels", what, p->n_keep_embd, p->n_embd);
        int rc = check_list(p->keep_embd, p->n_keep_embd, p->n_embd, what, -1, "embd", e);
        if (rc) return rc;
    } else if (p->n_keep_embd != p->n_embd) {
        return et_fail(e, ET_EINPUT, "%s: n_keep_embd %d without a keep list", what, p->n_keep_embd);
    }
    int kept = 0;
    for (int l = 0; l < p->n_layer; l++) {
        const et_prune_layer *L = &p->layers[l];
        if (L->n_head < 0 || L->n_head_kv < 0 || L->n_ff < 0 || (L->n_head > 0 && (L->n_head_kv < 1 || L->n_head % L->n_head_kv)))
            return et_fail(e, ET_EINPUT, "%s: layer %d: n_head %d, n_head_kv %d, n_ff %d are not a valid layer", what, l,
                           L->n_head, L->n_head_kv, L->n_ff);
        if (L->removed) continue;
        kept++;
        if (L->n_keep_head < 0 || L->n_keep_head > L->n_head || L->n_keep_kv < 0 || L->n_keep_kv > L->n_head_kv ||
            L->n_keep_ff < 0 || L->n_keep_ff > L->n_ff)
            return et_fail(e, ET_EINPUT, "%s: layer %d: keeps more than it has", what, l);
        if (L->n_head > 0 && L->n_keep_head == 0)
            return et_fail(e, ET_EINPUT,
                           "%s: layer %d: every attention head is pruned but the layer is not removed "
                           "(keep at least one head per kept layer, or remove the layer)",
                           what, l);
        if (L->n_ff > 0 && L->n_keep_ff == 0)
            return et_fail(e, ET_EINPUT,
                           "%s: layer %d: every FFN channel is pruned but the layer is not removed "
                           "(keep at least one channel, or remove the layer)",
                           what, l);
        int rc = check_list(L->keep_head, L->n_keep_head, L->n_head, what, l, "heads", e);
        if (!rc) rc = check_list(L->keep_kv, L->n_keep_kv, L->n_head_kv, what, l, "kv_heads", e);
        if (!rc) rc = check_list(L->keep_ff, L->n_keep_ff, L->n_ff, what, l, "ffn", e);
        if (rc) return rc;
        if (L->n_head == 0) continue;
        if (L->n_keep_kv < 1 || L->n_keep_head % L->n_keep_kv)
            return et_fail(e, ET_EINPUT,
                           "%s: layer %d: %d query heads cannot be shared evenly by %d kv heads (GQA: keep the same "
                           "number of query heads in each kept kv group)",
                           what, l, L->n_keep_head, L->n_keep_kv);
        int g = L->n_head / L->n_head_kv, c = L->n_keep_head / L->n_keep_kv;
        for (int i = 0; i < L->n_keep_head; i++)
            if (L->keep_head[i] / g != L->keep_kv[i / c])
                return et_fail(e, ET_EINPUT,
                               "%s: layer %d: query head %d belongs to kv head %d, but as kept head %d it would use kv "
                               "head %d (GQA: keep %d query heads in each kept kv group)",
                               what, l, L->keep_head[i], L->keep_head[i] / g, i, L->keep_kv[i / c], c);
    }
    if (!kept) return et_fail(e, ET_EINPUT, "%s: every layer is removed", what);
    return 0;
}

int et_prune_plan_check_model(const et_prune_plan *p, const et_model *m, const char *sha256, const char *path,
                              et_err *e) {
    const et_hparams *hp = &m->hp;
    if (p->n_embd != hp->n_embd || p->head_dim != hp->head_dim)
        return et_fail(e, ET_EINPUT, "%s: the plan is for another model: n_embd %d, head_dim %d in the plan, %d, %d in the model",
                       path, p->n_embd, p->head_dim, hp->n_embd, hp->head_dim);
    int n = p->n_layer < hp->n_layer ? p->n_layer : hp->n_layer;
    for (int l = 0; l < n; l++) {
        const et_prune_layer *L = &p->layers[l];
        if (L->n_head != hp->layer_n_head[l] || L->n_head_kv != hp->layer_n_head_kv[l] || L->n_ff != hp->layer_n_ff[l])
            return et_fail(e, ET_EINPUT,
                           "%s: the plan is for another model: layer %d has n_head %d, n_head_kv %d, n_ff %d in the "
                           "plan but %d, %d, %d in the model",
                           path, l, L->n_head, L->n_head_kv, L->n_ff, hp->layer_n_head[l], hp->layer_n_head_kv[l],
                           hp->layer_n_ff[l]);
    }
    if (p->n_layer != hp->n_layer)
        return et_fail(e, ET_EINPUT, "%s: the plan is for another model: it has %d layers, the model %d (first differing layer %d)",
                       path, p->n_layer, hp->n_layer, n);
    if (sha256 && sha256[0] && p->base_sha256[0] && strcmp(sha256, p->base_sha256))
        return et_fail(e, ET_EINPUT,
                       "%s: the plan is for another model: same shapes, but the plan's base_sha256 %.16s... differs "
                       "from this file's %.16s...",
                       path, p->base_sha256, sha256);
    return 0;
}

/* ------------------------------------------------------------ JSON */

static cJSON *int_array(const int *a, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        cJSON *v = cJSON_CreateNumber(a[i]);
        if (!v || !cJSON_AddItemToArray(arr, v)) {
            cJSON_Delete(v);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static int add_int(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }

int et_prune_plan_write(const et_prune_plan *p, const char *path, et_err *e) {
    int rc = et_prune_plan_validate(p, path, e);
    if (rc) return rc;
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "format", "edgetune.prune_plan");
    ok = ok && add_int(o, "version", 1);
    ok = ok && cJSON_AddStringToObject(o, "base_sha256", p->base_sha256);
    ok = ok && add_int(o, "n_layer", p->n_layer) && add_int(o, "n_embd", p->n_embd) && add_int(o, "head_dim", p->head_dim);
    if (ok && p->keep_embd) {
        cJSON *a = int_array(p->keep_embd, p->n_keep_embd);
        ok = a && cJSON_AddItemToObject(o, "embd", a);
    }
    cJSON *layers = ok ? cJSON_AddArrayToObject(o, "layers") : NULL;
    ok = ok && layers;
    for (int l = 0; ok && l < p->n_layer; l++) {
        const et_prune_layer *L = &p->layers[l];
        cJSON *j = cJSON_CreateObject();
        ok = j && cJSON_AddItemToArray(layers, j);
        if (!ok) {
            cJSON_Delete(j);
            break;
        }
        ok = add_int(j, "layer", l) && add_int(j, "n_head", L->n_head) && add_int(j, "n_head_kv", L->n_head_kv) &&
             add_int(j, "n_ff", L->n_ff);
        if (ok && L->removed) {
            ok = cJSON_AddTrueToObject(j, "removed") != NULL;
            continue;
        }
        cJSON *a = ok ? int_array(L->keep_head, L->n_keep_head) : NULL;
        ok = a && cJSON_AddItemToObject(j, "heads", a);
        a = ok ? int_array(L->keep_kv, L->n_keep_kv) : NULL;
        ok = a && cJSON_AddItemToObject(j, "kv_heads", a);
        a = ok ? int_array(L->keep_ff, L->n_keep_ff) : NULL;
        ok = a && cJSON_AddItemToObject(j, "ffn", a);
    }
    if (ok && p->scores) {
        cJSON *s = cJSON_Duplicate(p->scores, 1);
        ok = s && cJSON_AddItemToObject(o, "scores", s);
    }
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    rc = et_write_text(path, text, e);
    cJSON_free(text);
    return rc;
}

/* A non-negative integer member (bounded), or def when absent (def < 0: required). */
static int get_int(const cJSON *o, const char *k, int def, int hi, int *out, const char *path, const char *where,
                   et_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) {
        if (def < 0) return et_fail(e, ET_EINPUT, "%s: %s: missing \"%s\"", path, where, k);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > hi || v->valuedouble != (double)(int)v->valuedouble)
        return et_fail(e, ET_EINPUT, "%s: %s: \"%s\" must be an integer in [0, %d]", path, where, k, hi);
    *out = (int)v->valuedouble;
    return 0;
}

/* An array of integers in [0, n) into a fresh malloc'd list. */
static int get_list(const cJSON *o, const char *k, int n, int **out, int *count, const char *path, const char *where,
                    et_err *e) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!a || !cJSON_IsArray(a)) return et_fail(e, ET_EINPUT, "%s: %s: \"%s\" must be an array", path, where, k);
    int len = cJSON_GetArraySize(a);
    if (len > n) return et_fail(e, ET_EINPUT, "%s: %s: \"%s\" lists %d entries, more than %d", path, where, k, len, n);
    int *v = malloc((size_t)(len > 0 ? len : 1) * sizeof *v);
    if (!v) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble >= n ||
            x->valuedouble != (double)(int)x->valuedouble) {
            free(v);
            return et_fail(e, ET_EINPUT, "%s: %s: \"%s\"[%d] must be an integer in [0, %d)", path, where, k, i, n);
        }
        v[i++] = (int)x->valuedouble;
    }
    *out = v;
    *count = len;
    return 0;
}

enum { MAX_N = 1 << 20 };

static int parse(et_prune_plan *p, const cJSON *o, const char *path, et_err *e) {
    if (!cJSON_IsObject(o)) return et_fail(e, ET_EINPUT, "%s: not a JSON object", path);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, "edgetune.prune_plan"))
        return et_fail(e, ET_EINPUT, "%s: \"format\" must be \"edgetune.prune_plan\"", path);
    int ver, rc;
    if ((rc = get_int(o, "version", -1, 1000, &ver, path, "plan", e))) return rc;
    if (ver != 1) return et_fail(e, ET_EINPUT, "%s: plan version %d is not supported (1)", path, ver);
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "base_sha256");
    if (sha) {
        if (!cJSON_IsString(sha) || (strlen(sha->valuestring) != 64 && sha->valuestring[0]))
            return et_fail(e, ET_EINPUT, "%s: \"base_sha256\" must be 64 hex digits or \"\"", path);
        snprintf(p->base_sha256, sizeof p->base_sha256, "%s", sha->valuestring);
    }
    if ((rc = get_int(o, "n_layer", -1, 65536, &p->n_layer, path, "plan", e)) ||
        (rc = get_int(o, "n_embd", -1, MAX_N, &p->n_embd, path, "plan", e)) ||
        (rc = get_int(o, "head_dim", -1, MAX_N, &p->head_dim, path, "plan", e)))
        return rc;
    p->n_keep_embd = p->n_embd;
    if (cJSON_GetObjectItemCaseSensitive(o, "embd") &&
        (rc = get_list(o, "embd", p->n_embd, &p->keep_embd, &p->n_keep_embd, path, "plan", e)))
        return rc;
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != p->n_layer)
        return et_fail(e, ET_EINPUT, "%s: \"layers\" must be an array of n_layer = %d entries", path, p->n_layer);
    if (p->n_layer < 1) return et_fail(e, ET_EINPUT, "%s: the plan has no layers", path);
    p->layers = calloc((size_t)p->n_layer, sizeof *p->layers);
    if (!p->layers) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    int l = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, layers) {
        char where[32];
        snprintf(where, sizeof where, "layers[%d]", l);
        et_prune_layer *L = &p->layers[l];
        int idx;
        if (!cJSON_IsObject(j)) return et_fail(e, ET_EINPUT, "%s: %s must be an object", path, where);
        if ((rc = get_int(j, "layer", -1, 65536, &idx, path, where, e))) return rc;
        if (idx != l) return et_fail(e, ET_EINPUT, "%s: %s has \"layer\": %d (layers must be listed in order)", path, where, idx);
        if ((rc = get_int(j, "n_head", -1, MAX_N, &L->n_head, path, where, e)) ||
            (rc = get_int(j, "n_head_kv", -1, MAX_N, &L->n_head_kv, path, where, e)) ||
            (rc = get_int(j, "n_ff", -1, MAX_N, &L->n_ff, path, where, e)))
            return rc;
        const cJSON *rm = cJSON_GetObjectItemCaseSensitive(j, "removed");
        if (rm && !cJSON_IsBool(rm)) return et_fail(e, ET_EINPUT, "%s: %s: \"removed\" must be true or false", path, where);
        L->removed = cJSON_IsTrue(rm);
        if (!L->removed &&
            ((rc = get_list(j, "heads", L->n_head, &L->keep_head, &L->n_keep_head, path, where, e)) ||
             (rc = get_list(j, "kv_heads", L->n_head_kv, &L->keep_kv, &L->n_keep_kv, path, where, e)) ||
             (rc = get_list(j, "ffn", L->n_ff, &L->keep_ff, &L->n_keep_ff, path, where, e))))
            return rc;
        l++;
    }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "scores");
    if (sc && !(p->scores = cJSON_Duplicate(sc, 1))) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    return et_prune_plan_validate(p, path, e);
}

int et_prune_plan_read(et_prune_plan *p, const char *path, et_err *e) {
    memset(p, 0, sizeof *p);
    et_map mp;
    int rc = et_map_open(&mp, path, e);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *o = mp.data ? cJSON_ParseWithLengthOpts((const char *)mp.data, mp.size, &end, 0) : NULL;
    et_map_close(&mp);
    if (!o) return et_fail(e, ET_EINPUT, "%s: not valid JSON", path);
    rc = parse(p, o, path, e);
    cJSON_Delete(o);
    if (rc) et_prune_plan_free(p);
    return rc;
}

/* ------------------------------------------------------------ sizes */

void et_prune_plan_widths(const et_prune_plan *p, int *n_layer_out, int *n_head, int *n_head_kv, int *n_ff) {
    int k = 0;
    for (int l = 0; l < p->n_layer; l++) {
        const et_prune_layer *L = &p->layers[l];
        if (L->removed) continue;
        if (n_head) n_head[k] = L->n_keep_head;
        if (n_head_kv) n_head_kv[k] = L->n_keep_kv;
        if (n_ff) n_ff[k] = L->n_keep_ff;
        k++;
    }
    *n_layer_out = k;
}

size_t et_prune_plan_params(const et_prune_plan *p, const et_model *m) {
    const et_hparams *hp = &m->hp;
    const size_t C = (size_t)p->n_keep_embd, D = (size_t)hp->head_dim;
    size_t n = (size_t)hp->n_vocab * C * (hp->tied_output ? 1 : 2) + C;
    for (int l = 0; l < p->n_layer; l++) {
        const et_prune_layer *L = &p->layers[l];
        if (L->removed) continue;
        size_t q = (size_t)L->n_keep_head * D, kv = (size_t)L->n_keep_kv * D;
        if (q) n += C + 2 * q * C + 2 * kv * C + (hp->qkv_bias ? q + 2 * kv : 0);
        if (L->n_keep_ff) n += C + 3 * (size_t)L->n_keep_ff * C;
    }
    return n;
}

typedef struct pt_tensor {
    char name[48];
    int layer;               /* -1: not a layer tensor */
    int64_t ne0, ne1;        /* ne1 = 1: 1-D */
} pt_tensor;

/* llama_model_loader's weights_map order, as quant/quantize_model.c sorts: non-layer tensors first,
 * then by layer number, then by name. */
static int cmp_pt(const void *a, const void *b) {
    const pt_tensor *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

int et_prune_plan_bytes(const et_prune_plan *p, const et_model *m, int ftype, uint64_t *bytes, et_err *e) {
    const et_hparams *hp = &m->hp;
    const uint32_t base = et_ftype_base_type(ftype);
    if (base == GGML_TYPE_COUNT || !et_ftype_name(ftype))
        return et_fail(e, ET_EUSAGE, "prune: --target-type: not a type edgetune quantize writes");
    const int64_t C = p->n_keep_embd, D = hp->head_dim > 0 ? hp->head_dim : p->head_dim;
    pt_tensor *t = calloc(3 + 9 * (size_t)(p->n_layer > 0 ? p->n_layer : 1), sizeof *t);
    if (!t) return et_fail(e, ET_ERUN, "prune: out of memory");
    int n = 0, kept = 0, uniform = 1, first_head = 0, first_kv = 0, first_ff = 0;
#define PT(nm, L, a, b) (snprintf(t[n].name, sizeof t[n].name, "%s", nm), t[n].layer = (L), t[n].ne0 = (a), t[n].ne1 = (b), n++)
    PT("token_embd.weight", -1, C, hp->n_vocab);
    PT("output_norm.weight", -1, C, 1);
    if (!hp->tied_output) PT("output.weight", -1, C, hp->n_vocab);
    for (int l = 0; l < p->n_layer; l++) {
        const et_prune_layer *L = &p->layers[l];
        if (L->removed) continue;
        const int64_t q = (int64_t)L->n_keep_head * D, kv = (int64_t)L->n_keep_kv * D, ff = L->n_keep_ff;
        if (!kept) first_head = L->n_keep_head, first_kv = L->n_keep_kv, first_ff = L->n_keep_ff;
        else if (L->n_keep_head != first_head || L->n_keep_kv != first_kv || L->n_keep_ff != first_ff) uniform = 0;
        char nm[48];
        static const char *const what[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                            "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"};
        const int64_t ne0[9] = {C, C, C, C, q, C, C, ff, C}, ne1[9] = {1, q, kv, kv, C, 1, ff, C, ff};
        for (int k = 0; k < 9; k++) {
            if ((k == 1 || k == 2 || k == 3) && hp->qkv_bias) {
                snprintf(nm, sizeof nm, "blk.%d.%s.bias", kept, what[k]);
                PT(nm, kept, ne1[k], 1);
            }
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", kept, what[k]);
            PT(nm, kept, ne0[k], ne1[k]);
        }
        kept++;
    }
#undef PT
    qsort(t, (size_t)n, sizeof *t, cmp_pt);
    et_quant_policy qp;
    memset(&qp, 0, sizeof qp);
    qp.ftype = ftype;
    qp.base_type = base;
    for (int i = 0; i < n; i++) {
        if (strstr(t[i].name, "attn_v.weight")) qp.n_attention_wv++;
        else if (!strcmp(t[i].name, "output.weight")) qp.has_output = 1;
    }
    qp.n_layer = kept;
    qp.n_gqa = first_kv ? first_head / first_kv : 0;
    qp.is_70b = kept == 80 && (!uniform || first_head != first_kv);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        const int nd = t[i].ne1 > 1 ? 2 : 1;
        uint32_t type = GGML_TYPE_F32, want;
        if (et_quant_wants(t[i].name, (uint32_t)nd)) {
            if (base == GGML_TYPE_F32 || base == GGML_TYPE_F16 || base == GGML_TYPE_BF16) type = base;
            else type = et_quant_choose(&qp, t[i].name, t[i].ne0, &want, NULL, 0);
        }
        if (type == GGML_TYPE_COUNT) {
            int rc = et_fail(e, ET_EUSAGE, "prune: --target-type: %s has no type edgetune can write", t[i].name);
            free(t);
            return rc;
        }
        sum += (uint64_t)t[i].ne1 * ggml_row_bytes(type, (uint64_t)t[i].ne0);
    }
    free(t);
    *bytes = sum;
    return 0;
}

/* ------------------------------------------------------------ apply */

/* dst[r][c] = src[rows[r]][cols[c]]; rows/cols NULL = identity. src has
 * src_cols columns. */
static void gather(float *dst, const float *src, size_t src_cols, const int *rows, int n_rows, const int *cols,
                   int n_cols) {
    for (int r = 0; r < n_rows; r++) {
        const float *s = src + (size_t)(rows ? rows[r] : r) * src_cols;
        float *d = dst + (size_t)r * (size_t)n_cols;
        if (!cols)
            memcpy(d, s, (size_t)n_cols * sizeof *d);
        else
            for (int c = 0; c < n_cols; c++) d[c] = s[cols[c]];
    }
}

/* Rows of kept heads: head i of list covers rows [h*D, (h+1)*D). */
static int *head_rows(const int *heads, int n, int D) {
    int *r = malloc((size_t)(n * D > 0 ? n * D : 1) * sizeof *r);
    if (r)
        for (int i = 0; i < n; i++)
            for (int d = 0; d < D; d++) r[i * D + d] = heads[i] * D + d;
    return r;
}

int et_prune_apply(et_model *src, const et_prune_plan *p, et_model *dst, int take_tokenizer, et_err *e) {
    memset(dst, 0, sizeof *dst);
    const et_hparams *hs = &src->hp;
    int rc = et_prune_plan_validate(p, "prune plan", e);
    if (!rc) rc = et_prune_plan_check_model(p, src, NULL, "prune plan", e);
    if (rc) return rc;
    et_hparams hp = *hs;
    int nl = 0;
    hp.layer_n_head = malloc((size_t)p->n_layer * sizeof(int));
    hp.layer_n_head_kv = malloc((size_t)p->n_layer * sizeof(int));
    hp.layer_n_ff = malloc((size_t)p->n_layer * sizeof(int));
    int *map = malloc((size_t)p->n_layer * sizeof(int));
    if (!hp.layer_n_head || !hp.layer_n_head_kv || !hp.layer_n_ff || !map) {
        rc = et_fail(e, ET_ERUN, "prune: out of memory");
        goto out;
    }
    et_prune_plan_widths(p, &nl, hp.layer_n_head, hp.layer_n_head_kv, hp.layer_n_ff);
    for (int l = 0, k = 0; l < p->n_layer; l++)
        if (!p->layers[l].removed) map[k++] = l;
    hp.n_layer = nl;
    hp.n_embd = p->n_keep_embd;
    /* head_dim stays: pass it explicitly so alloc does not derive n_embd/n_head */
    if ((rc = et_model_alloc(dst, &hp, e))) goto out;
    snprintf(dst->hp.arch, sizeof dst->hp.arch, "%s", et_model_export_arch(dst));
    snprintf(dst->name, sizeof dst->name, "%s", src->name);
    const int *ce = p->keep_embd; /* kept residual channels, NULL = all */
    const int C = p->n_keep_embd, C0 = hs->n_embd, D = hs->head_dim;
    gather(dst->tok_embd, src->tok_embd, (size_t)C0, NULL, hs->n_vocab, ce, C);
    gather(dst->output_norm, src->output_norm, (size_t)C0, NULL, 1, ce, C);
    if (!hs->tied_output) gather(dst->output, src->output, (size_t)C0, NULL, hs->n_vocab, ce, C);
    for (int k = 0; k < nl && !rc; k++) {
        const et_prune_layer *L = &p->layers[map[k]];
        const et_layer *s = &src->layers[map[k]];
        et_layer *d = &dst->layers[k];
        if (L->n_keep_head > 0) {
            int *qr = head_rows(L->keep_head, L->n_keep_head, D), *kr = head_rows(L->keep_kv, L->n_keep_kv, D);
            if (!qr || !kr) {
                free(qr);
                free(kr);
                rc = et_fail(e, ET_ERUN, "prune: out of memory");
                break;
            }
            const int nq = L->n_keep_head * D, nk = L->n_keep_kv * D, nq0 = L->n_head * D;
            gather(d->attn_norm, s->attn_norm, (size_t)C0, NULL, 1, ce, C);
            gather(d->wq, s->wq, (size_t)C0, qr, nq, ce, C);
            gather(d->wk, s->wk, (size_t)C0, kr, nk, ce, C);
            gather(d->wv, s->wv, (size_t)C0, kr, nk, ce, C);
            if (hs->qkv_bias) {
                gather(d->bq, s->bq, (size_t)nq0, NULL, 1, qr, nq);
                gather(d->bk, s->bk, (size_t)(L->n_head_kv * D), NULL, 1, kr, nk);
                gather(d->bv, s->bv, (size_t)(L->n_head_kv * D), NULL, 1, kr, nk);
            }
            gather(d->wo, s->wo, (size_t)nq0, ce, C, qr, nq);
            free(qr);
            free(kr);
        }
        if (L->n_keep_ff > 0) {
            gather(d->ffn_norm, s->ffn_norm, (size_t)C0, NULL, 1, ce, C);
            gather(d->w_gate, s->w_gate, (size_t)C0, L->keep_ff, L->n_keep_ff, ce, C);
            gather(d->w_up, s->w_up, (size_t)C0, L->keep_ff, L->n_keep_ff, ce, C);
            gather(d->w_down, s->w_down, (size_t)L->n_ff, ce, C, L->keep_ff, L->n_keep_ff);
        }
    }
    if (rc) {
        et_model_free(dst);
        goto out;
    }
    if (take_tokenizer) {
        dst->tok = src->tok;
        src->tok = NULL;
    }
out:
    free(hp.layer_n_head);
    free(hp.layer_n_head_kv);
    free(hp.layer_n_ff);
    free(map);
    return rc;
}

int et_prune_file_sha256(const char *path, char hex[65], et_err *e) {
    et_map mp;
    int rc = et_map_open(&mp, path, e);
    if (rc) return rc;
    et_sha256 s;
    et_sha256_init(&s);
    if (mp.size) et_sha256_update(&s, mp.data, mp.size);
    et_sha256_final_hex(&s, hex);
    et_map_close(&mp);
    return 0;
}
