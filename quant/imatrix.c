/* quant/imatrix.c — importance-matrix files (.dat and GGUF), the
 * accumulator, and the model check.  Formats: see imatrix.h. */
#include "imatrix.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../export/gguf.h"

void et_imatrix_init(et_imatrix *im) { memset(im, 0, sizeof *im); }

void et_imatrix_free(et_imatrix *im) {
    if (!im) return;
    for (int i = 0; i < im->n_entries; i++) free(im->e[i].sum2);
    free(im->e);
    free(im->dataset);
    memset(im, 0, sizeof *im);
}

const et_imatrix_entry *et_imatrix_find(const et_imatrix *im, const char *name) {
    for (int i = 0; i < im->n_entries; i++)
        if (!strcmp(im->e[i].name, name)) return &im->e[i];
    return NULL;
}

/* A new zeroed entry with n values; NULL on out of memory. */
static et_imatrix_entry *add_entry(et_imatrix *im, const char *name, size_t name_len, int64_t n) {
    if (im->n_entries == im->cap) {
        int cap = im->cap ? 2 * im->cap : 64;
        et_imatrix_entry *p = realloc(im->e, sizeof *p * (size_t)cap);
        if (!p) return NULL;
        im->e = p;
        im->cap = cap;
    }
    et_imatrix_entry *x = &im->e[im->n_entries];
    memset(x, 0, sizeof *x);
    x->sum2 = calloc((size_t)n, sizeof(float));
    if (!x->sum2) return NULL;
    memcpy(x->name, name, name_len);
    x->name[name_len] = 0;
    x->n = n;
    im->n_entries++;
    return x;
}

void et_imatrix_weights(const et_imatrix *im, const et_imatrix_entry *x, float *w) {
    if (im->format == ET_IMATRIX_DAT) {
        /* examples/quantize/quantize.cpp load_imatrix: if (ncall > 0) v /= ncall */
        int32_t ncall = (int32_t)x->count;
        for (int64_t j = 0; j < x->n; j++) w[j] = ncall > 0 ? x->sum2[j] / (float)ncall : x->sum2[j];
        return;
    }
    const float c = (float)x->count;
    for (int64_t j = 0; j < x->n; j++) w[j] = c > 0.0f ? x->sum2[j] / c : 1.0f;
}

/* ------------------------------------------------------------ accumulate */

int et_imatrix_accumulate(et_imatrix *im, const char *name, const float *x, int n_tok, int64_t n, et_err *e) {
    size_t len = strlen(name);
    if (len == 0 || len >= ET_IMATRIX_MAX_NAME) return et_fail(e, ET_EINPUT, "imatrix: bad tensor name '%s'", name);
    et_imatrix_entry *en = (et_imatrix_entry *)et_imatrix_find(im, name);
    if (!en) {
        if (n <= 0 || n > INT32_MAX) return et_fail(e, ET_EINPUT, "imatrix: '%s': bad column count %" PRId64, name, n);
        en = add_entry(im, name, len, n);
        if (!en) return et_fail(e, ET_ERUN, "imatrix: out of memory");
    } else if (en->n != n) {
        return et_fail(e, ET_EINPUT, "imatrix: inconsistent size for '%s' (%" PRId64 " vs %" PRId64 ")", name, en->n, n);
    }
    float *s = en->sum2;
    for (int t = 0; t < n_tok; t++) {
        const float *r = x + (size_t)t * (size_t)n;
        for (int64_t j = 0; j < n; j++) {
            float p = r[j] * r[j];
            s[j] = s[j] + p;
        }
    }
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(s[j])) return et_fail(e, ET_EINPUT, "imatrix: %s detected in '%s' (column %" PRId64 ")",
                                            isnan(s[j]) ? "NaN" : "inf", name, j);
    en->count += n_tok;
    en->ncall++;
    return 0;
}

/* ------------------------------------------------------------ .dat */

typedef struct rd {
    const uint8_t *p;
    size_t n, off;
} rd;

static int rd_i32(rd *r, int32_t *v) {
    if (r->n - r->off < 4) return -1;
    memcpy(v, r->p + r->off, 4);  /* little-endian hosts (as the writer) */
    r->off += 4;
    return 0;
}

static int load_dat(et_imatrix *im, const uint8_t *p, size_t size, const char *path, et_err *e) {
    rd r = {p, size, 0};
    int32_t n_entries;
    if (rd_i32(&r, &n_entries)) return et_fail(e, ET_EINPUT, "%s: not an imatrix file (%zu bytes)", path, size);
    /* each entry needs at least 4 + 1 + 4 + 4 + 4 bytes */
    if (n_entries < 1 || (uint64_t)n_entries > (size - 4) / 17)
        return et_fail(e, ET_EINPUT, "%s: bad entry count %" PRId32 " for a file of %zu bytes", path, n_entries, size);
    for (int32_t i = 0; i < n_entries; i++) {
        size_t at = r.off;
        int32_t len, ncall, nval;
        if (rd_i32(&r, &len))
            return et_fail(e, ET_EINPUT, "%s: byte %zu: entry %" PRId32 ": truncated name length", path, at, i);
        if (len < 1 || len >= ET_IMATRIX_MAX_NAME || (size_t)len > r.n - r.off)
            return et_fail(e, ET_EINPUT, "%s: byte %zu: entry %" PRId32 ": bad name length %" PRId32, path, at, i, len);
        const char *name = (const char *)r.p + r.off;
        if (memchr(name, 0, (size_t)len))
            return et_fail(e, ET_EINPUT, "%s: byte %zu: entry %" PRId32 ": name contains a NUL byte", path, at, i);
        r.off += (size_t)len;
        char nm[ET_IMATRIX_MAX_NAME];
        memcpy(nm, name, (size_t)len);
        nm[len] = 0;
        if (rd_i32(&r, &ncall) || rd_i32(&r, &nval))
            return et_fail(e, ET_EINPUT, "%s: entry '%s': truncated header", path, nm);
        if (ncall < 0) return et_fail(e, ET_EINPUT, "%s: entry '%s': negative call count %" PRId32, path, nm, ncall);
        if (nval < 1 || (size_t)nval > (r.n - r.off) / 4)
            return et_fail(e, ET_EINPUT, "%s: entry '%s': %" PRId32 " values do not fit in the %zu bytes left", path,
                           nm, nval, r.n - r.off);
        if (et_imatrix_find(im, nm)) return et_fail(e, ET_EINPUT, "%s: entry '%s' appears twice", path, nm);
        et_imatrix_entry *x = add_entry(im, nm, (size_t)len, nval);
        if (!x) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        memcpy(x->sum2, r.p + r.off, (size_t)nval * 4);
        r.off += (size_t)nval * 4;
        for (int32_t j = 0; j < nval; j++)
            if (!isfinite(x->sum2[j]))
                return et_fail(e, ET_EINPUT, "%s: entry '%s': value %" PRId32 " is not finite", path, nm, j);
        x->count = ncall;
        x->ncall = ncall;
    }
    if (r.off < r.n) {  /* the trailer: chunk count, dataset name */
        int32_t last, dlen;
        if (rd_i32(&r, &last) || rd_i32(&r, &dlen))
            return et_fail(e, ET_EINPUT, "%s: byte %zu: truncated trailer (chunk count, dataset)", path, r.off);
        if (dlen < 0 || (size_t)dlen != r.n - r.off)
            return et_fail(e, ET_EINPUT, "%s: trailer: dataset name of %" PRId32 " bytes, %zu bytes left", path, dlen,
                           r.n - r.off);
        im->chunk_count = last;
        im->dataset = malloc((size_t)dlen + 1);
        if (!im->dataset) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        memcpy(im->dataset, r.p + r.off, (size_t)dlen);
        im->dataset[dlen] = 0;
    }
    im->format = ET_IMATRIX_DAT;
    return 0;
}

/* ------------------------------------------------------------ GGUF */

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n > k && !memcmp(s + n - k, suf, k);
}

static int load_gguf(et_imatrix *im, const void *data, size_t size, const char *path, et_err *e) {
    gguf_file g;
    int rc = gguf_open_mem(&g, data, size, path, e);
    if (rc) return rc;
    char type[32] = "";
    if (gguf_find_key(&g, "general.type") >= 0 && gguf_get_str(&g, "general.type", type, sizeof type, NULL) == 0 &&
        strcmp(type, "imatrix")) {
        rc = et_fail(e, ET_EINPUT, "%s: a GGUF file of general.type '%s', not an imatrix", path, type);
        goto out;
    }
    uint32_t u;
    if (gguf_find_key(&g, "imatrix.chunk_count") >= 0) {
        if ((rc = gguf_get_u32(&g, "imatrix.chunk_count", &u, e))) goto out;
        im->chunk_count = u > INT32_MAX ? INT32_MAX : (int32_t)u;
    }
    if (gguf_find_key(&g, "imatrix.chunk_size") >= 0) {
        if ((rc = gguf_get_u32(&g, "imatrix.chunk_size", &u, e))) goto out;
        im->chunk_size = u > INT32_MAX ? INT32_MAX : (int32_t)u;
    }
    int64_t kd = gguf_find_key(&g, "imatrix.datasets");
    if (kd >= 0 && g.kv[kd].type == GGUF_TYPE_ARRAY && g.kv[kd].arr_type == GGUF_TYPE_STRING && g.kv[kd].n > 0) {
        const gguf_str *s = &g.kv[kd].strs[0];
        im->dataset = malloc((size_t)s->len + 1);
        if (!im->dataset) { rc = et_fail(e, ET_ERUN, "%s: out of memory", path); goto out; }
        memcpy(im->dataset, s->ptr, (size_t)s->len);
        im->dataset[s->len] = 0;
    }
    /* pass 1: the .in_sum2 tensors make the entries; pass 2: their .counts */
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const gguf_tensor *t = &g.tensors[i];
            const char *suf = pass == 0 ? ".in_sum2" : ".counts";
            if (!ends_with(t->name.ptr, (size_t)t->name.len, suf)) continue;
            size_t blen = (size_t)t->name.len - strlen(suf);
            char nm[ET_IMATRIX_MAX_NAME];
            if (blen >= sizeof nm || memchr(t->name.ptr, 0, (size_t)t->name.len)) {
                rc = et_fail(e, ET_EINPUT, "%s: tensor %" PRIu64 ": bad name", path, i);
                goto out;
            }
            memcpy(nm, t->name.ptr, blen);
            nm[blen] = 0;
            if (t->type != GGML_TYPE_F32) {
                rc = et_fail(e, ET_EINPUT, "%s: tensor '%s%s' is %s, expected F32", path, nm, suf,
                             ggml_type_name(t->type) ? ggml_type_name(t->type) : "?");
                goto out;
            }
            if (t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1) {
                rc = et_fail(e, ET_EINPUT, "%s: entry '%s' holds %" PRId64 " matrices (mixture-of-experts imatrix "
                             "entries are not supported)", path, nm, t->ne[1] * t->ne[2] * t->ne[3]);
                goto out;
            }
            float v0;
            if (pass == 0) {
                if (t->ne[0] < 1 || t->ne[0] > INT32_MAX) {
                    rc = et_fail(e, ET_EINPUT, "%s: entry '%s': bad size %" PRId64, path, nm, t->ne[0]);
                    goto out;
                }
                if (et_imatrix_find(im, nm)) {
                    rc = et_fail(e, ET_EINPUT, "%s: entry '%s' appears twice", path, nm);
                    goto out;
                }
                et_imatrix_entry *x = add_entry(im, nm, blen, t->ne[0]);
                if (!x) { rc = et_fail(e, ET_ERUN, "%s: out of memory", path); goto out; }
                memcpy(x->sum2, t->data, (size_t)t->ne[0] * 4);
                for (int64_t j = 0; j < x->n; j++)
                    if (!isfinite(x->sum2[j])) {
                        rc = et_fail(e, ET_EINPUT, "%s: entry '%s': value %" PRId64 " is not finite", path, nm, j);
                        goto out;
                    }
                x->count = -1;  /* until its .counts is seen */
            } else {
                et_imatrix_entry *x = (et_imatrix_entry *)et_imatrix_find(im, nm);
                if (!x || t->ne[0] != 1) {
                    rc = et_fail(e, ET_EINPUT, "%s: '%s.counts' %s", path, nm,
                                 x ? "must hold one count" : "has no matching .in_sum2");
                    goto out;
                }
                memcpy(&v0, t->data, 4);
                if (!isfinite(v0) || v0 < 0 || v0 > 1e15f) {
                    rc = et_fail(e, ET_EINPUT, "%s: entry '%s': bad count %g", path, nm, (double)v0);
                    goto out;
                }
                x->count = v0;
                int64_t cs = im->chunk_size > 0 ? im->chunk_size : 512;
                x->ncall = (int32_t)(((int64_t)llround(v0) + cs - 1) / cs);
            }
        }
    for (int i = 0; i < im->n_entries; i++)
        if (im->e[i].count < 0) {
            rc = et_fail(e, ET_EINPUT, "%s: entry '%s' has sums but no '%s.counts'", path, im->e[i].name, im->e[i].name);
            goto out;
        }
    if (im->n_entries == 0) rc = et_fail(e, ET_EINPUT, "%s: no imatrix entries (no '*.in_sum2' tensors)", path);
    im->format = ET_IMATRIX_GGUF;
out:
    gguf_close(&g);
    return rc;
}

int et_imatrix_load_mem(et_imatrix *im, const void *data, size_t size, const char *name, et_err *e) {
    et_imatrix_init(im);
    int rc = size >= 4 && !memcmp(data, "GGUF", 4) ? load_gguf(im, data, size, name, e)
                                                 : load_dat(im, data, size, name, e);
    if (rc) et_imatrix_free(im);
    return rc;
}

int et_imatrix_load(et_imatrix *im, const char *path, et_err *e) {
    et_imatrix_init(im);
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    rc = et_imatrix_load_mem(im, m.data ? (const void *)m.data : (const void *)"", m.size, path, e);
    et_map_close(&m);
    return rc;
}

/* ------------------------------------------------------------ save */

static int w_i32(FILE *f, int32_t v) { return fwrite(&v, 4, 1, f) == 1 ? 0 : -1; }

static int save_dat(const et_imatrix *im, const char *path, et_err *e) {
    et_afile a;
    int rc = et_afile_open(&a, path, e);
    if (rc) return rc;
    int n = 0, bad = 0;
    for (int i = 0; i < im->n_entries; i++) n += im->e[i].count > 0;
    bad |= w_i32(a.f, n);
    float *tmp = NULL;
    for (int i = 0; i < im->n_entries && !bad; i++) {
        const et_imatrix_entry *x = &im->e[i];
        if (!(x->count > 0)) continue;
        int32_t len = (int32_t)strlen(x->name);
        bad |= w_i32(a.f, len);
        bad |= fwrite(x->name, 1, (size_t)len, a.f) != (size_t)len;
        /* llama-imatrix: (values[i] / (float)counts[i]) * (float)ncall; a loaded
         * .dat keeps (stored, ncall) in (sum2, count), which round-trips to stored/ncall*ncall */
        int32_t ncall = im->format == ET_IMATRIX_DAT && x->ncall == 0 ? (int32_t)x->count : x->ncall;
        bad |= w_i32(a.f, ncall);
        bad |= w_i32(a.f, (int32_t)x->n);
        float *t2 = realloc(tmp, sizeof(float) * (size_t)x->n);
        if (!t2) { bad = 2; break; }
        tmp = t2;
        const float c = (float)(int64_t)x->count;
        for (int64_t j = 0; j < x->n; j++) tmp[j] = (x->sum2[j] / c) * (float)ncall;
        bad |= fwrite(tmp, 4, (size_t)x->n, a.f) != (size_t)x->n;
    }
    free(tmp);
    if (!bad) {
        bad |= w_i32(a.f, im->chunk_count);
        int32_t dl = im->dataset ? (int32_t)strlen(im->dataset) : 0;
        bad |= w_i32(a.f, dl);
        if (dl) bad |= fwrite(im->dataset, 1, (size_t)dl, a.f) != (size_t)dl;
    }
    if (bad) {
        et_afile_abort(&a);
        return et_fail(e, ET_ERUN, "%s: %s", path, bad == 2 ? "out of memory" : "write failed");
    }
    return et_afile_commit(&a, e);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const et_imatrix_entry *const *)a)->name, (*(const et_imatrix_entry *const *)b)->name);
}

static int save_gguf(const et_imatrix *im, const char *path, et_err *e) {
    gguf_writer *w = gguf_writer_new();
    const et_imatrix_entry **order = calloc((size_t)im->n_entries + 1, sizeof *order);
    float *counts = calloc((size_t)im->n_entries + 1, sizeof(float));
    int rc = 0, n = 0;
    if (!w || !order || !counts) { rc = et_fail(e, ET_ERUN, "%s: out of memory", path); goto out; }
    for (int i = 0; i < im->n_entries; i++)
        if (im->e[i].count > 0) order[n++] = &im->e[i];
    qsort(order, (size_t)n, sizeof *order, cmp_name);
    const char *ds = im->dataset ? im->dataset : "";
    if (gguf_set_str(w, "general.type", "imatrix") ||
        gguf_set_arr_str(w, "imatrix.datasets", &ds, NULL, im->dataset ? 1 : 0) ||
        gguf_set_u32(w, "imatrix.chunk_count", (uint32_t)(im->chunk_count > 0 ? im->chunk_count : 0)) ||
        gguf_set_u32(w, "imatrix.chunk_size", (uint32_t)(im->chunk_size > 0 ? im->chunk_size : 0))) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const et_imatrix_entry *x = order[i];
        char tn[ET_IMATRIX_MAX_NAME + 16];
        int64_t ne[GGUF_MAX_DIMS] = {x->n, 1, 1, 1}, ne1[GGUF_MAX_DIMS] = {1, 1, 1, 1};
        counts[i] = (float)x->count;
        snprintf(tn, sizeof tn, "%s.in_sum2", x->name);
        if ((rc = gguf_add_tensor(w, tn, GGML_TYPE_F32, 2, ne, x->sum2, e))) goto out;
        snprintf(tn, sizeof tn, "%s.counts", x->name);
        if ((rc = gguf_add_tensor(w, tn, GGML_TYPE_F32, 2, ne1, &counts[i], e))) goto out;
    }
    rc = gguf_writer_write(w, path, e);
out:
    gguf_writer_free(w);
    free(order);
    free(counts);
    return rc;
}

int et_imatrix_save(const et_imatrix *im, const char *path, int format, et_err *e) {
    int n = 0;
    for (int i = 0; i < im->n_entries; i++) n += im->e[i].count > 0;
    if (n == 0) return et_fail(e, ET_EINPUT, "%s: the imatrix has no entry with data", path);
    if (format == ET_IMATRIX_DAT) return save_dat(im, path, e);
    if (format == ET_IMATRIX_GGUF) return save_gguf(im, path, e);
    return et_fail(e, ET_EUSAGE, "imatrix: unknown output format %d", format);
}

/* ------------------------------------------------------------ model check */

static int is_lora_entry(const char *s) {
    size_t n = strlen(s);
    return ends_with(s, n, ".lora_a") || ends_with(s, n, ".lora_b");
}

int et_imatrix_check(const et_imatrix *im, const char *path, int n, const char *const *names, const int64_t *ne0,
                     const int64_t *ne2, const int *want, et_err *e) {
    for (int i = 0; i < n; i++) {
        const et_imatrix_entry *x = et_imatrix_find(im, names[i]);
        if (x) {
            int64_t cols = ne0[i] * ne2[i];
            /* llama-quantize throws on this, except for token_embd.weight */
            if (x->n != cols && strcmp(names[i], "token_embd.weight"))
                return et_fail(e, ET_EINPUT, "%s: entry '%s' has %" PRId64 " columns but the model's tensor has %" PRId64
                               " (an imatrix for another model?)", path, names[i], x->n, cols);
        } else if (want[i] && !strncmp(names[i], "blk.", 4)) {
            return et_fail(e, ET_EINPUT, "%s: no entry for the model's tensor '%s' (an imatrix for another model?)",
                           path, names[i]);
        }
    }
    for (int k = 0; k < im->n_entries; k++) {
        const char *nm = im->e[k].name;
        if (is_lora_entry(nm)) continue;
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = !strcmp(names[i], nm);
        if (!found)
            return et_fail(e, ET_EINPUT, "%s: entry '%s' names no tensor of the model (an imatrix for another model?)",
                           path, nm);
    }
    return 0;
}
