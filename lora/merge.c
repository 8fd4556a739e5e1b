/* lora/merge.c — fold LoRA adapters into a base GGUF. See merge.h. */
#include "merge.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../quant/quant.h"
#include "../quant/quantize_model.h"

int lora_merge_f32(float *w, const lora_tensor *t, float s) {
    const size_t n_in = (size_t)t->n_in, rank = (size_t)t->rank;
    float *delta = malloc(n_in * sizeof *delta);
    if (!delta) return ET_ERUN;
    for (size_t o = 0; o < (size_t)t->n_out; o++) {
        memset(delta, 0, n_in * sizeof *delta);
        for (size_t r = 0; r < rank; r++) {
            const float c = t->lora_b[o * rank + r];
            if (c == 0.0f) continue;
            const float *a = t->lora_a + r * n_in;
            for (size_t i = 0; i < n_in; i++) delta[i] += c * a[i];
        }
        float *row = w + o * n_in;
        for (size_t i = 0; i < n_in; i++) row[i] += s * delta[i];
    }
    free(delta);
    return 0;
}

typedef struct merge_ctx {
    gguf_file base;
    int base_open;
    lora_adapter *ads;
    int n_ads;
    void **bufs;        /* [n_tensors] encoded data of adapted tensors */
    gguf_writer *w;
} merge_ctx;

static void ctx_free(merge_ctx *c) {
    if (c->bufs)
        for (uint64_t i = 0; i < c->base.n_tensors; i++) free(c->bufs[i]);
    free(c->bufs);
    if (c->ads)
        for (int i = 0; i < c->n_ads; i++) lora_adapter_free(&c->ads[i]);
    free(c->ads);
    gguf_writer_free(c->w);
    if (c->base_open) gguf_close(&c->base);
}

/* Dequantize base tensor t, add every adapter's delta, encode as type_out
 * into a new buffer (*out).  0 or an et code. */
static int merge_tensor(merge_ctx *c, const gguf_tensor *t, const char *name, uint32_t type_out,
                        const lora_merge_adapter *in, void **out, int *pairs, et_err *e) {
    const int64_t n_in = t->ne[0], n_out = t->ne[1];
    const size_t nel = (size_t)n_in * (size_t)n_out;
    if (!et_quant_supported(t->type))
        return et_fail(e, ET_EINPUT, "%s: tensor '%s' has type %s, which edgetune cannot dequantize for merging",
                       c->base.path, name, ggml_type_name(t->type) ? ggml_type_name(t->type) : "?");
    float *w = malloc(nel * sizeof *w);
    uint64_t ob = et_quant_row_bytes(type_out, n_in) * (uint64_t)n_out;
    void *enc = malloc(ob ? (size_t)ob : 1);
    if (!w || !enc) {
        free(w);
        free(enc);
        return et_fail(e, ET_ERUN, "%s: tensor '%s': out of memory", c->base.path, name);
    }
    const uint64_t rb = et_quant_row_bytes(t->type, n_in);
    for (int64_t r = 0; r < n_out; r++)
        et_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, w + (size_t)r * (size_t)n_in, n_in);
    for (int k = 0; k < c->n_ads; k++) {
        const lora_tensor *lt = lora_adapter_find(&c->ads[k], name);
        if (!lt) continue;
        if (lora_merge_f32(w, lt, in[k].scale * lora_tensor_scale(&c->ads[k], lt))) {
            free(w);
            free(enc);
            return et_fail(e, ET_ERUN, "%s: tensor '%s': out of memory", c->base.path, name);
        }
        (*pairs)++;
    }
    for (size_t i = 0; i < nel; i++)
        if (!isfinite(w[i])) {
            free(w);
            free(enc);
            return et_fail(e, ET_EINPUT, "%s: tensor '%s': merged element %zu is not finite", c->base.path, name, i);
        }
    et_quantize_row(type_out, w, enc, (int64_t)nel);
    free(w);
    *out = enc;
    return 0;
}

/* Write the merged model to path; adapted tensors in their own type
 * (keep_types) or F32. */
static int write_merged(merge_ctx *c, const lora_merge_adapter *in, const char *path, int keep_types,
                        lora_merge_stats *st, et_err *e) {
    int rc = 0;
    for (uint64_t i = 0; i < c->base.n_kv && !rc; i++)
        if (gguf_set_kv_from(c->w, &c->base, i)) rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
    for (uint64_t i = 0; i < c->base.n_tensors && !rc; i++) {
        const gguf_tensor *t = &c->base.tensors[i];
        char name[GGUF_MAX_NAME];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < GGUF_MAX_NAME ? t->name.len : GGUF_MAX_NAME - 1),
                 t->name.ptr);
        int hit = 0;
        for (int k = 0; k < c->n_ads && !hit; k++) hit = lora_adapter_find(&c->ads[k], name) != NULL;
        if (!hit) {
            rc = gguf_add_tensor_from(c->w, &c->base, i, e);
            continue;
        }
        uint32_t type_out = keep_types ? t->type : GGML_TYPE_F32;
        if ((rc = merge_tensor(c, t, name, type_out, in, &c->bufs[i], &st->n_pairs, e))) break;
        rc = gguf_add_tensor(c->w, name, type_out, 2, t->ne, c->bufs[i], e);
        st->n_adapted++;
    }
    if (!rc) rc = gguf_writer_write(c->w, path, e);
    return rc;
}

int lora_merge(const char *base_path, const lora_merge_adapter *in, int n, const char *out_path, int out_ftype,
               lora_merge_stats *stats, et_err *e) {
    lora_merge_stats st;
    memset(&st, 0, sizeof st);
    if (stats) *stats = st;
    if (n < 1 || !in || !base_path || !out_path) return et_fail(e, ET_EUSAGE, "merge: no adapter given");
    if (out_ftype != -1 && et_ftype_base_type(out_ftype) == GGML_TYPE_COUNT)
        return et_fail(e, ET_EUSAGE, "merge: unknown output type %d", out_ftype);
    for (int k = 0; k < n; k++)
        if (!isfinite(in[k].scale)) return et_fail(e, ET_EUSAGE, "merge: %s: scale is not finite", in[k].path);
    merge_ctx c;
    memset(&c, 0, sizeof c);
    int rc = gguf_open(&c.base, base_path, e);
    if (rc) return rc;
    c.base_open = 1;
    c.ads = calloc((size_t)n, sizeof *c.ads);
    c.bufs = calloc(c.base.n_tensors ? c.base.n_tensors : 1, sizeof *c.bufs);
    c.w = gguf_writer_new();
    if (!c.ads || !c.bufs || !c.w) {
        ctx_free(&c);
        return et_fail(e, ET_ERUN, "merge: out of memory");
    }
    for (int k = 0; k < n && !rc; k++) {
        rc = lora_adapter_load_gguf(&c.ads[k], in[k].path, e);
        if (!rc) {
            c.n_ads = k + 1;
            rc = lora_adapter_check_gguf(&c.ads[k], in[k].path, &c.base, e);
        }
    }
    if (!rc && out_ftype == -1) {
        rc = write_merged(&c, in, out_path, 1, &st, e);
    } else if (!rc) {
        /* F32 merge into a temporary file beside out, then llama-quantize's policy */
        size_t len = strlen(out_path) + 48;
        char *tmp = malloc(len);
        if (!tmp) {
            ctx_free(&c);
            return et_fail(e, ET_ERUN, "merge: out of memory");
        }
        snprintf(tmp, len, "%s.merge-f32.%ld.tmp", out_path, (long)getpid());
        rc = write_merged(&c, in, tmp, 0, &st, e);
        gguf_writer_free(c.w); /* release the F32 buffers before quantizing */
        c.w = NULL;
        for (uint64_t i = 0; c.bufs && i < c.base.n_tensors; i++) {
            free(c.bufs[i]);
            c.bufs[i] = NULL;
        }
        if (!rc) {
            et_quant_params qp = {.ftype = out_ftype, .allow_requantize = 1};
            rc = et_quantize_model(tmp, out_path, &qp, NULL, e);
        }
        unlink(tmp);
        free(tmp);
    }
    ctx_free(&c);
    if (!rc) {
        struct stat sb;
        if (stat(out_path, &sb) == 0) st.file_bytes_out = (uint64_t)sb.st_size;
        if (stats) *stats = st;
    }
    return rc;
}
