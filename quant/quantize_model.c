/* quant/quantize_model.c — read a GGUF, quantize its tensors as
 * llama-quantize does, write a GGUF (see quantize_model.h for the rules;
 * the per-tensor type choice is in tensor_type.c). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "imatrix.h"
#include "quant.h"
#include "quantize_model.h"

/* ---------------------------------------------------------- tensor order */

/* sscanf(name, "blk.%d.", &layer) as llama_model_loader's
 * weight_name_comparer uses it: the layer is stored once %d matched
 * (leading white space and a sign allowed), whatever follows; -1 otherwise.
 * Values beyond int range are clamped (sscanf's behaviour is undefined there). */
static int64_t layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r')) p++;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (*p < '0' || *p > '9') return -1;
    int64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if (v < ((int64_t)1 << 40)) v = v * 10 + (*p - '0');
    return neg ? -v : v;
}

typedef struct tref {
    uint64_t idx;       /* index in the input file */
    char name[GGUF_MAX_NAME];
    int64_t layer;
} tref;

/* weight_name_comparer: by layer, then by name as std::string compares (bytes). */
static int cmp_tref(const void *a, const void *b) {
    const tref *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);  /* unique names, so a total order */
}

/* ggml_n_dims: the number of dimensions up to the last one > 1 (at least 1). */
static uint32_t n_dims_of(const int64_t *ne) {
    uint32_t n = GGUF_MAX_DIMS;
    while (n > 1 && ne[n - 1] == 1) n--;
    return n;
}

/* ---------------------------------------------------------- model facts */

/* {arch}.<suffix> as an integer (scalar, or element 0 of an array); def if absent. */
static int64_t arch_int(const gguf_file *g, const char *arch, const char *suffix, int64_t def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t k = gguf_find_key(g, key);
    if (k < 0) return def;
    int64_t v;
    if (g->kv[k].type == GGUF_TYPE_ARRAY) return g->kv[k].n > 0 && !gguf_arr_i64(&g->kv[k], 0, &v) ? v : def;
    return gguf_get_i64(g, key, &v, NULL) ? def : v;
}

static int init_policy(et_quant_policy *qp, const gguf_file *g, const tref *order, int ftype, et_err *e) {
    memset(qp, 0, sizeof *qp);
    qp->ftype = ftype;
    qp->base_type = et_ftype_base_type(ftype);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const char *n = order[i].name;
        if (strstr(n, "attn_v.weight") || strstr(n, "attn_qkv.weight") || strstr(n, "attn_kv_b.weight"))
            qp->n_attention_wv++;
        else if (!strcmp(n, "output.weight"))
            qp->has_output = 1;
    }
    if (qp->base_type == GGML_TYPE_F32 || qp->base_type == GGML_TYPE_F16 || qp->base_type == GGML_TYPE_BF16)
        return 0;  /* no per-tensor rules apply */

    char arch[64];
    if (gguf_get_str(g, "general.architecture", arch, sizeof arch, e)) return ET_EINPUT;
    qp->is_falcon = !strcmp(arch, "falcon");
    int64_t n_layer = arch_int(g, arch, "block_count", -1);
    if (n_layer < 0 || n_layer > 1000000)
        return et_fail(e, ET_EINPUT, "%s: missing or bad key '%s.block_count' (the layer count decides per-layer types)",
                       g->path, arch);
    qp->n_layer = (int)n_layer;
    if (arch_int(g, arch, "expert_count", 0) > 1)
        return et_fail(e, ET_EINPUT, "%s: mixture-of-experts models are not supported by edgetune quantize", g->path);
    int64_t n_head = arch_int(g, arch, "attention.head_count", 0);
    int64_t n_head_kv = arch_int(g, arch, "attention.head_count_kv", n_head);
    /* llama-model.cpp load_hparams: LLM_TYPE_70B */
    qp->n_gqa = n_head_kv != 0 ? (int)(n_head / n_head_kv) : 0;
    qp->is_70b = n_layer == 80 && ((!strcmp(arch, "llama") && n_head != n_head_kv) || !strcmp(arch, "deci"));
    return 0;
}

/* ---------------------------------------------------------- data */

/* First non-finite element of x[0..n), or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* llama_model_loader(check_tensors = true) refuses F32/F16/BF16 data with
 * NaN or inf; so does this.  Converts in chunks to bound memory. */
static int check_finite(const gguf_file *g, const gguf_tensor *t, const char *name, int64_t nel, et_err *e) {
    if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16) return 0;
    float buf[1024];
    const uint8_t *p = t->data;
    const int64_t esz = t->type == GGML_TYPE_F32 ? 4 : 2;
    for (int64_t i0 = 0; i0 < nel; i0 += 1024) {
        int64_t n = nel - i0 < 1024 ? nel - i0 : 1024;
        if (t->type == GGML_TYPE_F32) memcpy(buf, p + i0 * esz, (size_t)n * 4);  /* no alignment assumed */
        else {
            uint16_t hb[1024];
            memcpy(hb, p + i0 * esz, (size_t)n * 2);
            et_dequantize_row(t->type, hb, buf, n);
        }
        int64_t bad = first_nonfinite(buf, n);
        if (bad >= 0)
            return et_fail(e, ET_EINPUT, "%s: tensor '%s': element %" PRId64 " (row %" PRId64 ") is %s",
                           g->path, name, i0 + bad, (i0 + bad) / t->ne[0], isnan(buf[bad]) ? "NaN" : "infinite");
    }
    return 0;
}

/* The tensor as floats: the mapping itself when it is aligned F32, else a
 * malloc'ed copy (*owned set).  NULL with e filled on failure. */
static const float *source_floats(const gguf_file *g, const gguf_tensor *t, const char *name, int64_t nel,
                                  int allow_requantize, float **owned, et_err *e) {
    *owned = NULL;
    if (t->type == GGML_TYPE_F32 && (uintptr_t)t->data % sizeof(float) == 0) return t->data;
    int quantized = t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16;
    if (quantized && !allow_requantize) {
        et_fail(e, ET_EINPUT, "%s: tensor '%s' is already %s; requantizing is disabled (allow it explicitly)",
                g->path, name, ggml_type_name(t->type));
        return NULL;
    }
    if (!et_quant_supported(t->type)) {
        et_fail(e, ET_EINPUT, "%s: tensor '%s': cannot dequantize type %s", g->path, name,
                ggml_type_name(t->type) ? ggml_type_name(t->type) : "?");
        return NULL;
    }
    float *f = malloc((size_t)nel * sizeof(float));
    if (!f) {
        et_fail(e, ET_ERUN, "%s: tensor '%s': out of memory (%" PRId64 " floats)", g->path, name, nel);
        return NULL;
    }
    et_dequantize_row(t->type, t->data, f, nel);  /* row length checked by the reader */
    int64_t bad = quantized ? first_nonfinite(f, nel) : -1;
    if (bad >= 0) {
        free(f);
        et_fail(e, ET_EINPUT, "%s: tensor '%s': element %" PRId64 " dequantizes to a non-finite value", g->path, name, bad);
        return NULL;
    }
    *owned = f;
    return f;
}

/* ---------------------------------------------------------- driver */

static int copy_kvs(gguf_writer *w, const gguf_file *g, int ftype) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (gguf_set_kv_from(w, g, i)) return ET_ERUN;
    gguf_remove_key(w, "split.no");
    gguf_remove_key(w, "split.count");
    gguf_remove_key(w, "split.tensors.count");
    /* ggml gguf_set_val_*: remove, then append */
    gguf_remove_key(w, "general.quantization_version");
    if (gguf_set_u32(w, "general.quantization_version", 2)) return ET_ERUN;  /* GGML_QNT_VERSION */
    gguf_remove_key(w, "general.file_type");
    if (gguf_set_u32(w, "general.file_type", (uint32_t)ftype)) return ET_ERUN;
    return 0;
}

/* llama-quantize's KV overrides for an imatrix (examples/quantize/quantize.cpp:
 * strncpy into a 128-byte val_str, so at most 127 bytes and up to a NUL;
 * INT overrides are written as INT32), appended after the copied KVs. */
static int imatrix_kvs(gguf_writer *w, const et_imatrix *im, const char *imatrix_name) {
    const char *file = imatrix_name ? imatrix_name : "";
    gguf_remove_key(w, "quantize.imatrix.file");
    if (gguf_set_strn(w, "quantize.imatrix.file", file, strnlen(file, 127))) return ET_ERUN;
    if (im->dataset && im->dataset[0]) {
        gguf_remove_key(w, "quantize.imatrix.dataset");
        if (gguf_set_strn(w, "quantize.imatrix.dataset", im->dataset, strnlen(im->dataset, 127))) return ET_ERUN;
    }
    gguf_remove_key(w, "quantize.imatrix.entries_count");
    if (gguf_set_i32(w, "quantize.imatrix.entries_count", im->n_entries)) return ET_ERUN;
    if (im->chunk_count > 0) {
        gguf_remove_key(w, "quantize.imatrix.chunks_count");
        if (gguf_set_i32(w, "quantize.imatrix.chunks_count", im->chunk_count)) return ET_ERUN;
    }
    return 0;
}

/* The quantize-with-weights decision of every tensor (a dry run of the
 * type policy on a copy), then et_imatrix_check against the model. */
static int check_imatrix(const gguf_file *g, const tref *order, const et_quant_policy *qp0, const et_imatrix *im,
                         const char *imatrix_name, et_err *e) {
    int n = (int)g->n_tensors, rc = 0;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    int64_t *ne0 = calloc((size_t)n + 1, sizeof *ne0), *ne2 = calloc((size_t)n + 1, sizeof *ne2);
    int *want = calloc((size_t)n + 1, sizeof *want);
    if (!names || !ne0 || !ne2 || !want) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", g->path);
        goto out;
    }
    et_quant_policy qp = *qp0;
    for (int k = 0; k < n; k++) {
        const gguf_tensor *t = &g->tensors[order[k].idx];
        names[k] = order[k].name;
        ne0[k] = t->ne[0];
        ne2[k] = t->ne[2];
        if (!et_quant_wants(order[k].name, n_dims_of(t->ne))) continue;
        uint32_t w, type_out = et_quant_choose(&qp, order[k].name, t->ne[0], &w, NULL, 0);
        want[k] = type_out != t->type && type_out != GGML_TYPE_F32 && type_out != GGML_TYPE_F16 &&
                  type_out != GGML_TYPE_BF16 && type_out != GGML_TYPE_Q8_0;
    }
    rc = et_imatrix_check(im, imatrix_name ? imatrix_name : "imatrix", n, names, ne0, ne2, want, e);
out:
    free(names);
    free(ne0);
    free(ne2);
    free(want);
    return rc;
}

int et_quantize_model(const char *in, const char *out, const et_quant_params *p, et_quant_stats *stats,
                      et_err *e) {
    return et_quantize_model_imatrix(in, out, p, NULL, NULL, stats, e);
}

int et_quantize_model_imatrix(const char *in, const char *out, const et_quant_params *p,
                              const et_imatrix *imatrix, const char *imatrix_name, et_quant_stats *stats, et_err *e) {
    et_quant_stats st;
    memset(&st, 0, sizeof st);
    if (stats) memset(stats, 0, sizeof *stats);
    if (!in || !out || !p) return et_fail(e, ET_EUSAGE, "et_quantize_model: NULL argument");
    if (et_ftype_base_type(p->ftype) == GGML_TYPE_COUNT)
        return et_fail(e, ET_EUSAGE, "unknown quantization type %d (expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_1, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K)",
                       p->ftype);

    gguf_file g;
    int rc = gguf_open(&g, in, e);
    if (rc) return rc;
    tref *order = calloc(g.n_tensors ? g.n_tensors : 1, sizeof *order);
    void **bufs = calloc(g.n_tensors ? g.n_tensors : 1, sizeof *bufs);
    gguf_writer *w = gguf_writer_new();
    if (!order || !bufs || !w) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", in);
        goto done;
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        if (t->name.len >= GGUF_MAX_NAME || memchr(t->name.ptr, 0, (size_t)t->name.len)) {
            rc = et_fail(e, ET_EINPUT, "%s: tensor %" PRIu64 ": bad name", in, i);
            goto done;
        }
        order[i].idx = i;
        memcpy(order[i].name, t->name.ptr, (size_t)t->name.len);
        order[i].name[t->name.len] = 0;
        order[i].layer = layer_of(order[i].name);
    }
    qsort(order, g.n_tensors, sizeof *order, cmp_tref);

    et_quant_policy qp;
    if ((rc = init_policy(&qp, &g, order, p->ftype, e))) goto done;
    qp.has_imatrix = imatrix != NULL;
    if (imatrix && (rc = check_imatrix(&g, order, &qp, imatrix, imatrix_name, e))) goto done;
    if ((rc = copy_kvs(w, &g, p->ftype)) || (imatrix && (rc = imatrix_kvs(w, imatrix, imatrix_name)))) {
        et_fail(e, rc, "%s: out of memory copying metadata", out);
        goto done;
    }

    st.n_tensors = g.n_tensors;
    st.file_bytes_in = g.map.size;
    for (uint64_t k = 0; k < g.n_tensors; k++) {
        const gguf_tensor *t = &g.tensors[order[k].idx];
        const char *name = order[k].name;
        const uint32_t n_dims = n_dims_of(t->ne);
        const int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if ((rc = check_finite(&g, t, name, nel, e))) goto done;

        char msg[256] = "";
        uint32_t want = t->type, type_out = t->type;
        if (et_quant_wants(name, n_dims)) {
            type_out = et_quant_choose(&qp, name, t->ne[0], &want, msg, sizeof msg);
            if (type_out == GGML_TYPE_COUNT) {
                rc = et_fail(e, ET_EINPUT, "%s: tensor '%s': %s", in, name, msg);
                goto done;
            }
        }
        const void *data = t->data;
        uint64_t bytes_out = t->nbytes;
        int used_imatrix = 0;
        if (type_out != t->type) {
            bytes_out = et_quant_row_bytes(type_out, t->ne[0]) * (uint64_t)(nel / t->ne[0]);
            float *owned;
            const float *src = source_floats(&g, t, name, nel, p->allow_requantize, &owned, e);
            if (!src) { rc = e ? e->code : ET_EINPUT; goto done; }
            bufs[k] = malloc(bytes_out ? (size_t)bytes_out : 1);
            if (!bufs[k]) {
                free(owned);
                rc = et_fail(e, ET_ERUN, "%s: tensor '%s': out of memory (%" PRIu64 " bytes)", in, name, bytes_out);
                goto done;
            }
            const et_imatrix_entry *ix = imatrix ? et_imatrix_find(imatrix, name) : NULL;
            if (ix && ix->n == t->ne[0] * t->ne[2]) {
                /* llama_model_quantize_impl: one imatrix slice per ne[2] matrix */
                float *qw = malloc(sizeof(float) * (size_t)ix->n);
                if (!qw) {
                    free(owned);
                    rc = et_fail(e, ET_ERUN, "%s: tensor '%s': out of memory", in, name);
                    goto done;
                }
                et_imatrix_weights(imatrix, ix, qw);
                const int64_t nrows = t->ne[1], per_mat = t->ne[0] * t->ne[1];
                const uint64_t mat_bytes = et_quant_row_bytes(type_out, t->ne[0]) * (uint64_t)nrows;
                for (int64_t i3 = 0; i3 < nel / per_mat; i3++)
                    et_quantize_rows_imatrix(type_out, src + i3 * per_mat, (uint8_t *)bufs[k] + (uint64_t)i3 * mat_bytes,
                                             nrows, t->ne[0], qw + (i3 % t->ne[2]) * t->ne[0]);
                free(qw);
                used_imatrix = 1;
            } else {
                et_quantize_row(type_out, src, bufs[k], nel);
            }
            free(owned);
            data = bufs[k];
            st.n_quantized++;
        }
        if ((rc = gguf_add_tensor(w, name, type_out, n_dims, t->ne, data, e))) goto done;
        int fallback = type_out != want;
        st.n_fallback += (uint64_t)fallback;
        st.bytes_in += t->nbytes;
        st.bytes_out += bytes_out;
        if (p->on_tensor) {
            et_quant_tensor info = {name, k, g.n_tensors, n_dims, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]},
                                    t->type, want, type_out, t->nbytes, bytes_out, fallback,
                                    msg[0] ? msg : NULL, used_imatrix};
            p->on_tensor(&info, p->ctx);
        }
    }
    if ((rc = gguf_writer_write(w, out, e))) goto done;
    struct stat sb;
    if (stat(out, &sb) == 0) st.file_bytes_out = (uint64_t)sb.st_size;
    if (stats) *stats = st;
done:
    if (bufs)
        for (uint64_t k = 0; k < g.n_tensors; k++) free(bufs[k]);
    free(bufs);
    free(order);
    gguf_writer_free(w);
    gguf_close(&g);
    return rc;
}
