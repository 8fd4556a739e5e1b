/* engine/adapter.c — GGUF LoRA adapters applied at run time.
 *
 * Format and checks follow llama.cpp src/llama-adapter.cpp
 * (llama_adapter_lora_init_impl): general.type "adapter", adapter.type
 * "lora", adapter.lora.alpha, general.architecture equal to the base's,
 * tensor pairs "<base>.lora_a" (ne {n_in, rank}) / "<base>.lora_b"
 * (ne {rank, n_out}) whose base tensor exists with ne {n_in, n_out}. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "internal.h"

typedef struct lora_pair {
    char base[GGUF_MAX_NAME];
    et_wmat a, b;
} lora_pair;

struct et_adapter {
    char *path;
    gguf_file g;
    char arch[16];
    float alpha;
    lora_pair *pairs;
    int n_pairs;
};

float et_adapter_alpha(const et_adapter *a) { return a->alpha; }

void et_adapter_free(et_adapter *a) {
    if (!a) return;
    gguf_close(&a->g);
    free(a->pairs);
    free(a->path);
    free(a);
}

static int ends_with(const gguf_str s, const char *suf, size_t *stem) {
    size_t n = strlen(suf);
    if (s.len < n || memcmp(s.ptr + s.len - n, suf, n)) return 0;
    *stem = (size_t)s.len - n;
    return 1;
}

static lora_pair *pair_for(et_adapter *a, const char *base) {
    for (int i = 0; i < a->n_pairs; i++)
        if (!strcmp(a->pairs[i].base, base)) return &a->pairs[i];
    lora_pair *p = &a->pairs[a->n_pairs++];
    memset(p, 0, sizeof *p);
    snprintf(p->base, sizeof p->base, "%s", base);
    return p;
}

/* Bind one LoRA tensor of the adapter as a matrix [ne1, ne0]. */
static int bind(et_adapter *a, et_wmat *w, const gguf_tensor *t, const char *name, et_err *e) {
    if (et_vec_dot_type(t->type) == (uint32_t)-1)
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has type %s (%u), which the engine does not run", a->path,
                       name, ggml_type_name(t->type) ? ggml_type_name(t->type) : "unknown", t->type);
    if (t->n_dims != 2 || t->ne[0] < 1 || t->ne[1] < 1 || t->ne[0] > (1 << 24) || t->ne[1] > (1 << 24))
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' must be 2-D", a->path, name);
    uint64_t rb = ggml_row_bytes(t->type, (uint64_t)t->ne[0]);
    if (!rb || t->nbytes != rb * (uint64_t)t->ne[1])
        return et_fail(e, ET_EINPUT, "%s: tensor '%s': row length %" PRId64 " does not fit type %s", a->path, name,
                       t->ne[0], ggml_type_name(t->type));
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->data = t->data;
    w->type = t->type;
    w->n_in = (int)t->ne[0];
    w->n_out = (int)t->ne[1];
    w->row_bytes = (size_t)rb;
    return 0;
}

int et_lora_check_alpha(const char *path, double alpha, et_err *e) {
    if (!isfinite(alpha)) return et_fail(e, ET_EINPUT, "%s: adapter.lora.alpha is not finite (%g)", path, alpha);
    return 0;
}

int et_lora_check_values(const char *path, const char *tensor, const float *x, size_t n, et_err *e) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return et_fail(e, ET_EINPUT, "%s: tensor '%s' holds a non-finite value (%s at element %zu)", path, tensor,
                           isnan(x[i]) ? "NaN" : "Inf", i);
    return 0;
}

/* Every element of a bound LoRA matrix [n_out][n_in], dequantized, through
 * et_lora_check_values (so both loaders name the same element). */
static int check_wmat_values(const char *path, const et_wmat *w, et_err *e) {
    size_t n = (size_t)w->n_in * (size_t)w->n_out;
    float *x = malloc(sizeof(float) * n);
    if (!x) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    for (int r = 0; r < w->n_out; r++)
        et_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_bytes, x + (size_t)r * w->n_in,
                          w->n_in);
    int rc = et_lora_check_values(path, w->name, x, n, e);
    free(x);
    return rc;
}

static const et_wmat *find_base(const et_engine *m, const char *name) {
    int n = et_engine_mats((et_engine *)m, NULL, 0);
    et_wmat **all = malloc(sizeof(et_wmat *) * (size_t)n);
    if (!all) return NULL;
    et_engine_mats((et_engine *)m, all, n);
    const et_wmat *w = NULL;
    for (int i = 0; i < n && !w; i++)
        if (!strcmp(all[i]->name, name)) w = all[i];
    free(all);
    return w;
}

/* Does the adapter fit this base?  Names the first key or tensor that differs. */
static int check_base(const et_adapter *a, const et_engine *m, et_err *e) {
    if (strcmp(a->arch, m->hp.arch))
        return et_fail(e, ET_EINPUT, "%s: general.architecture is '%s' but the base model's is '%s'", a->path,
                       a->arch, m->hp.arch);
    for (int i = 0; i < a->n_pairs; i++) {
        const lora_pair *p = &a->pairs[i];
        if (!strcmp(p->base, "token_embd.weight"))
            return et_fail(e, ET_EINPUT, "%s: a LoRA on the embedding lookup 'token_embd.weight' is not supported",
                           a->path);
        const et_wmat *w = find_base(m, p->base);
        if (!w)
            return et_fail(e, ET_EINPUT, "%s: tensor '%s.lora_a' adapts '%s', which the base model %s does not have%s",
                           a->path, p->base, p->base, m->path,
                           !strcmp(p->base, "output.weight") ? " (its output is tied to token_embd)" : "");
        if (p->a.n_in != w->n_in)
            return et_fail(e, ET_EINPUT, "%s: tensor '%s.lora_a' has n_in %d but the base's '%s' has %d", a->path,
                           p->base, p->a.n_in, p->base, w->n_in);
        if (p->b.n_out != w->n_out)
            return et_fail(e, ET_EINPUT, "%s: tensor '%s.lora_b' has n_out %d but the base's '%s' has %d", a->path,
                           p->base, p->b.n_out, p->base, w->n_out);
    }
    return 0;
}

int et_adapter_load(et_adapter **out, const char *path, const et_engine *base, et_err *e) {
    *out = NULL;
    et_adapter *a = calloc(1, sizeof *a);
    if (!a) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    size_t n = strlen(path) + 1;
    a->path = malloc(n);
    if (!a->path) { free(a); return et_fail(e, ET_ERUN, "%s: out of memory", path); }
    memcpy(a->path, path, n);
    int rc = gguf_open(&a->g, path, e);
    if (rc) {
        free(a->path);
        free(a);
        return rc;
    }
    char buf[32];
    if ((rc = gguf_get_str(&a->g, "general.type", buf, sizeof buf, e))) goto fail;
    if (strcmp(buf, "adapter")) {
        rc = et_fail(e, ET_EINPUT, "%s: general.type is '%s', expected 'adapter'", path, buf);
        goto fail;
    }
    if ((rc = gguf_get_str(&a->g, "adapter.type", buf, sizeof buf, e))) goto fail;
    if (strcmp(buf, "lora")) {
        rc = et_fail(e, ET_EINPUT, "%s: adapter.type is '%s', expected 'lora'", path, buf);
        goto fail;
    }
    if ((rc = gguf_get_str(&a->g, "general.architecture", a->arch, sizeof a->arch, e))) goto fail;
    a->alpha = 0;
    if (gguf_find_key(&a->g, "adapter.lora.alpha") >= 0 &&
        (rc = gguf_get_f32(&a->g, "adapter.lora.alpha", &a->alpha, e)))
        goto fail;
    if ((rc = et_lora_check_alpha(path, a->alpha, e))) goto fail;
    a->pairs = calloc(a->g.n_tensors + 1, sizeof *a->pairs);
    if (!a->pairs) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        goto fail;
    }
    for (uint64_t i = 0; i < a->g.n_tensors; i++) {
        const gguf_tensor *t = &a->g.tensors[i];
        size_t stem;
        int is_a = ends_with(t->name, ".lora_a", &stem), is_b = !is_a && ends_with(t->name, ".lora_b", &stem);
        char name[GGUF_MAX_NAME], basen[GGUF_MAX_NAME];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 63 ? t->name.len : 63), t->name.ptr);
        if (!is_a && !is_b) {
            rc = et_fail(e, ET_EINPUT, "%s: tensor '%s' is not a LoRA tensor (<base>.lora_a / .lora_b)", path, name);
            goto fail;
        }
        snprintf(basen, sizeof basen, "%.*s", (int)(stem < 63 ? stem : 63), t->name.ptr);
        lora_pair *p = pair_for(a, basen);
        et_wmat *w = is_a ? &p->a : &p->b;
        if (w->data) {
            rc = et_fail(e, ET_EINPUT, "%s: tensor '%s' appears twice", path, name);
            goto fail;
        }
        if ((rc = bind(a, w, t, name, e)) || (rc = check_wmat_values(path, w, e))) goto fail;
    }
    for (int i = 0; i < a->n_pairs; i++) {
        lora_pair *p = &a->pairs[i];
        if (!p->a.data || !p->b.data) {
            rc = et_fail(e, ET_EINPUT, "%s: LoRA pair for '%s' is missing its %s", path, p->base,
                         p->a.data ? "lora_b" : "lora_a");
            goto fail;
        }
        if (p->a.n_out != p->b.n_in) {
            rc = et_fail(e, ET_EINPUT, "%s: '%s.lora_a' has rank %d but '%s.lora_b' has rank %d", path, p->base,
                         p->a.n_out, p->base, p->b.n_in);
            goto fail;
        }
    }
    if (a->n_pairs == 0) {
        rc = et_fail(e, ET_EINPUT, "%s: the adapter has no LoRA tensors", path);
        goto fail;
    }
    if (base && (rc = check_base(a, base, e))) goto fail;
    *out = a;
    return 0;
fail:
    et_adapter_free(a);
    return rc;
}

int et_engine_attach(et_engine *m, const et_adapter *a, float scale, et_err *e) {
    int rc = check_base(a, m, e);
    if (rc) return rc;
    for (int i = 0; i < a->n_pairs; i++) {
        const lora_pair *p = &a->pairs[i];
        et_wmat *w = (et_wmat *)find_base(m, p->base);
        et_lora_use *u = realloc(w->lora, sizeof *u * (size_t)(w->n_lora + 1));
        if (!u) return et_fail(e, ET_ERUN, "%s: out of memory", a->path);
        w->lora = u;
        float rank = (float)p->a.n_out;
        u[w->n_lora].a = &p->a;
        u[w->n_lora].b = &p->b;
        u[w->n_lora].scale = a->alpha != 0 ? scale * a->alpha / rank : scale;
        w->n_lora++;
    }
    return 0;
}
