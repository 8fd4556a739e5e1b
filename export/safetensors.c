/* export/safetensors.c — see safetensors.h. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *const DTYPE_NAMES[ST_DTYPE_COUNT] = {
    "BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "F16", "BF16",
    "I32", "U32", "F32", "I64", "U64", "F64"};
static const size_t DTYPE_SIZES[ST_DTYPE_COUNT] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};

const char *st_dtype_name(int dtype) {
    return (dtype >= 0 && dtype < ST_DTYPE_COUNT) ? DTYPE_NAMES[dtype] : NULL;
}

size_t st_dtype_size(int dtype) {
    return (dtype >= 0 && dtype < ST_DTYPE_COUNT) ? DTYPE_SIZES[dtype] : 0;
}

static int dtype_from_name(const char *s) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, DTYPE_NAMES[i]) == 0) return i;
    return -1;
}

static uint64_t rd_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------------ reader */

void st_close(st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->path);
    et_map_close(&f->map);
    memset(f, 0, sizeof *f);
}

/* A JSON number that is an exact non-negative integer below 2^53 (cJSON
 * keeps numbers as doubles, which are exact up to there). */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0.0 && v <= 9007199254740992.0)) return -1; /* also rejects NaN */
    uint64_t u = (uint64_t)v;
    if ((double)u != v) return -1;
    *out = u;
    return 0;
}

static int parse_meta(st_file *f, const cJSON *obj, et_err *e) {
    if (!cJSON_IsObject(obj))
        return et_fail(e, ET_EINPUT, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = (size_t)cJSON_GetArraySize(obj);
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta) return et_fail(e, ET_ERUN, "%s: out of memory", f->path);
    const cJSON *c;
    cJSON_ArrayForEach(c, obj) {
        if (!cJSON_IsString(c))
            return et_fail(e, ET_EINPUT, "%s: __metadata__ '%.200s' is not a string", f->path, c->string);
        st_meta *m = &f->meta[f->n_meta++];
        m->key = strdup(c->string);
        m->value = strdup(c->valuestring);
        if (!m->key || !m->value) return et_fail(e, ET_ERUN, "%s: out of memory", f->path);
    }
    return 0;
}

/* Fill t from one header entry; checks everything but overlap. */
static int parse_tensor(st_file *f, const char *name, const cJSON *obj, uint64_t data_size,
                        st_tensor *t, et_err *e) {
    const char *p = f->path;
    if (!cJSON_IsObject(obj)) return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': entry is not a JSON object", p, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(jd)) return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': missing or non-string dtype", p, name);
    if (!cJSON_IsArray(js)) return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': missing or non-array shape", p, name);
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': data_offsets must be an array of 2 integers", p, name);
    t->dtype = dtype_from_name(jd->valuestring);
    if (t->dtype < 0)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': unknown dtype '%.40s'", p, name, jd->valuestring);
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': %d dimensions (at most %d supported)", p, name, nd, ST_MAX_DIMS);
    t->n_dims = nd;
    uint64_t n = 1;
    int overflow = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (json_u64(cJSON_GetArrayItem(js, i), &d))
            return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': shape[%d] is not a non-negative integer", p, name, i);
        t->shape[i] = (int64_t)d;
        if (d != 0 && n > UINT64_MAX / d) overflow = 1;
        else n *= d;
    }
    size_t es = st_dtype_size(t->dtype);
    if (overflow || n > UINT64_MAX / es)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': shape is too large (size overflows)", p, name);
    t->n_elems = n;
    uint64_t b, end;
    if (json_u64(cJSON_GetArrayItem(jo, 0), &b) || json_u64(cJSON_GetArrayItem(jo, 1), &end))
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': data_offsets must be non-negative integers", p, name);
    if (b > end)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] end before they begin", p, name,
                       (unsigned long long)b, (unsigned long long)end);
    if (end > data_size)
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] run past the data block (%llu bytes)",
                       p, name, (unsigned long long)b, (unsigned long long)end, (unsigned long long)data_size);
    if (end - b != n * es) {
        char sh[160] = "";
        size_t k = 0;
        for (int i = 0; i < nd && k < sizeof sh - 24; i++)
            k += (size_t)snprintf(sh + k, sizeof sh - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes, dtype %s x shape [%s] needs %llu",
                       p, name, (unsigned long long)b, (unsigned long long)end, (unsigned long long)(end - b),
                       DTYPE_NAMES[t->dtype], sh, (unsigned long long)(n * es));
    }
    t->offset = b;
    t->nbytes = end - b;
    t->data = f->base + 8 + f->header_len + b;
    t->name = strdup(name);
    if (!t->name) return et_fail(e, ET_ERUN, "%s: out of memory", p);
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* No duplicate names; no two non-empty tensors sharing bytes. */
static int check_layout(st_file *f, et_err *e) {
    if (f->n_tensors < 2) return 0;
    const st_tensor **ix = malloc(f->n_tensors * sizeof *ix);
    if (!ix) return et_fail(e, ET_ERUN, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n_tensors; i++) ix[i] = &f->tensors[i];
    int rc = 0;
    qsort(ix, f->n_tensors, sizeof *ix, cmp_name);
    for (size_t i = 1; i < f->n_tensors && !rc; i++)
        if (strcmp(ix[i - 1]->name, ix[i]->name) == 0)
            rc = et_fail(e, ET_EINPUT, "%s: tensor '%.200s' appears twice in the header", f->path, ix[i]->name);
    if (!rc) {
        qsort(ix, f->n_tensors, sizeof *ix, cmp_offset);
        const st_tensor *prev = NULL;
        for (size_t i = 0; i < f->n_tensors && !rc; i++) {
            const st_tensor *t = ix[i];
            if (t->nbytes == 0) continue;
            if (prev && prev->offset + prev->nbytes > t->offset)
                rc = et_fail(e, ET_EINPUT, "%s: tensor '%.200s' (bytes %llu..%llu) overlaps tensor '%.200s' (bytes %llu..%llu)",
                             f->path, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                             prev->name, (unsigned long long)prev->offset, (unsigned long long)(prev->offset + prev->nbytes));
            prev = t;
        }
    }
    free(ix);
    return rc;
}

static int parse_all(st_file *f, et_err *e) {
    const char *p = f->path;
    if (f->size < 8)
        return et_fail(e, ET_EINPUT, "%s: %zu bytes, too short for the 8-byte header length", p, f->size);
    uint64_t n = rd_u64le(f->base);
    if (n > ST_MAX_HEADER)
        return et_fail(e, ET_EINPUT, "%s: byte 0: header length %llu exceeds the %u-byte limit", p,
                       (unsigned long long)n, ST_MAX_HEADER);
    if (n > f->size - 8)
        return et_fail(e, ET_EINPUT, "%s: byte 0: header length %llu runs past end of file (%zu bytes)", p,
                       (unsigned long long)n, f->size);
    f->header_len = n;
    const char *h = (const char *)f->base + 8;
    if (n < 2 || h[0] != '{')
        return et_fail(e, ET_EINPUT, "%s: byte 8: header is not a JSON object (does not start with '{')", p);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)n, &end, 0);
    if (!root) {
        size_t at = (end && end >= h && end <= h + n) ? (size_t)(end - h) : 0;
        return et_fail(e, ET_EINPUT, "%s: byte %zu: malformed JSON in the header", p, 8 + at);
    }
    int rc = 0;
    for (const char *q = end; q < h + n && !rc; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
            rc = et_fail(e, ET_EINPUT, "%s: byte %zu: unexpected data after the JSON header", p, (size_t)(8 + (q - h)));
    if (!rc && !cJSON_IsObject(root))
        rc = et_fail(e, ET_EINPUT, "%s: byte 8: header is not a JSON object", p);
    size_t cnt = rc ? 0 : (size_t)cJSON_GetArraySize(root);
    if (!rc) {
        f->tensors = calloc(cnt ? cnt : 1, sizeof *f->tensors);
        if (!f->tensors) rc = et_fail(e, ET_ERUN, "%s: out of memory", p);
    }
    uint64_t data_size = (uint64_t)f->size - 8 - n;
    const cJSON *c;
    if (!rc) {
        cJSON_ArrayForEach(c, root) {
            if (strcmp(c->string, "__metadata__") == 0) {
                if (f->meta) { rc = et_fail(e, ET_EINPUT, "%s: __metadata__ appears twice", p); break; }
                rc = parse_meta(f, c, e);
            } else {
                rc = parse_tensor(f, c->string, c, data_size, &f->tensors[f->n_tensors], e);
                if (!rc) f->n_tensors++;
            }
            if (rc) break;
        }
    }
    cJSON_Delete(root);
    if (!rc) rc = check_layout(f, e);
    return rc;
}

static int open_common(st_file *f, const char *name, et_err *e) {
    f->path = strdup(name);
    if (!f->path) {
        st_close(f);
        return et_fail(e, ET_ERUN, "%s: out of memory", name);
    }
    int rc = parse_all(f, e);
    if (rc) st_close(f);
    return rc;
}

int st_open(st_file *f, const char *path, et_err *e) {
    memset(f, 0, sizeof *f);
    int rc = et_map_open(&f->map, path, e);
    if (rc) return rc;
    f->base = f->map.data;
    f->size = f->map.size;
    return open_common(f, path, e);
}

int st_open_mem(st_file *f, const void *data, size_t size, const char *name, et_err *e) {
    memset(f, 0, sizeof *f);
    f->base = data;
    f->size = data ? size : 0;
    return open_common(f, name, e);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_get_meta(const st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

/* Little-endian hosts only (x86-64, aarch64), as GGUF is read in place. */
int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *out, et_err *e) {
    const uint8_t *s = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (t->nbytes) memcpy(out, s, t->nbytes);
        return 0;
    case ST_F16:
        for (uint64_t i = 0; i < t->n_elems; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            out[i] = et_fp16_to_fp32(h);
        }
        return 0;
    case ST_BF16:
        for (uint64_t i = 0; i < t->n_elems; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            out[i] = et_bf16_to_fp32(h);
        }
        return 0;
    default:
        return et_fail(e, ET_EINPUT, "%s: tensor '%.200s': dtype %s is not supported (need F32, F16 or BF16)",
                       f->path, t->name, DTYPE_NAMES[t->dtype]);
    }
}

/* ------------------------------------------------------------------ writer */

typedef struct st_wtensor {
    char *name;
    int dtype, n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t n_elems;
    const float *data;
} st_wtensor;

struct st_writer {
    st_wtensor *t;
    size_t n, cap;
    st_meta *meta;
    size_t n_meta, cap_meta;
};

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    free(w);
}

int st_writer_add(st_writer *w, const char *name, int dtype, int n_dims, const int64_t *shape,
                  const float *data, et_err *e) {
    if (!name || !*name || strncmp(name, "__", 2) == 0)
        return et_fail(e, ET_EINPUT, "safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return et_fail(e, ET_EINPUT, "safetensors writer: tensor '%s': dtype must be F32, F16 or BF16", name);
    if (n_dims < 0 || n_dims > ST_MAX_DIMS)
        return et_fail(e, ET_EINPUT, "safetensors writer: tensor '%s': %d dimensions", name, n_dims);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return et_fail(e, ET_EINPUT, "safetensors writer: duplicate tensor '%s'", name);
    st_wtensor t = {0};
    t.dtype = dtype;
    t.n_dims = n_dims;
    t.n_elems = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && t.n_elems > (UINT64_MAX / 8) / (uint64_t)shape[i]))
            return et_fail(e, ET_EINPUT, "safetensors writer: tensor '%s': bad shape", name);
        t.shape[i] = shape[i];
        t.n_elems *= (uint64_t)shape[i];
    }
    if (t.n_elems && !data) return et_fail(e, ET_EINPUT, "safetensors writer: tensor '%s': no data", name);
    t.data = data;
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 16;
        st_wtensor *nt = realloc(w->t, nc * sizeof *nt);
        if (!nt) return et_fail(e, ET_ERUN, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = nc;
    }
    t.name = strdup(name);
    if (!t.name) return et_fail(e, ET_ERUN, "safetensors writer: out of memory");
    w->t[w->n++] = t;
    return 0;
}

int st_writer_set_meta(st_writer *w, const char *key, const char *value) {
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            char *v = strdup(value);
            if (!v) return ET_ERUN;
            free(w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    }
    if (w->n_meta == w->cap_meta) {
        size_t nc = w->cap_meta ? 2 * w->cap_meta : 8;
        st_meta *nm = realloc(w->meta, nc * sizeof *nm);
        if (!nm) return ET_ERUN;
        w->meta = nm;
        w->cap_meta = nc;
    }
    st_meta m = {strdup(key), strdup(value)};
    if (!m.key || !m.value) {
        free(m.key);
        free(m.value);
        return ET_ERUN;
    }
    w->meta[w->n_meta++] = m;
    return 0;
}

/* A growing text buffer for the header. */
typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (b->n + n + 1 > nc) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal (RFC 8259 escapes). */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        char esc[8];
        if (*q == '"' || *q == '\\') { esc[0] = '\\'; esc[1] = (char)*q; sb_put(b, esc, 2); }
        else if (*q < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *q); sb_put(b, esc, 6); }
        else sb_put(b, (const char *)q, 1);
    }
    sb_put(b, "\"", 1);
}

static void sb_u64(sbuf *b, uint64_t v) {
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    sb_str(b, t);
}

static int write_tensor_data(FILE *fp, const st_wtensor *t) {
    if (t->dtype == ST_F32) return t->n_elems && fwrite(t->data, 4, t->n_elems, fp) != t->n_elems ? -1 : 0;
    uint16_t buf[4096];
    for (uint64_t i = 0; i < t->n_elems;) {
        size_t k = 0;
        for (; k < 4096 && i < t->n_elems; k++, i++)
            buf[k] = t->dtype == ST_F16 ? et_fp32_to_fp16(t->data[i]) : et_fp32_to_bf16(t->data[i]);
        if (fwrite(buf, 2, k, fp) != k) return -1;
    }
    return 0;
}

int st_writer_write(st_writer *w, const char *path, et_err *e) {
    sbuf b = {0};
    sb_str(&b, "{");
    if (w->n_meta) {
        sb_str(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&b, ",");
            sb_json_str(&b, w->meta[i].key);
            sb_str(&b, ":");
            sb_json_str(&b, w->meta[i].value);
        }
        sb_str(&b, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        if (i || w->n_meta) sb_str(&b, ",");
        sb_json_str(&b, t->name);
        sb_str(&b, ":{\"dtype\":\"");
        sb_str(&b, DTYPE_NAMES[t->dtype]);
        sb_str(&b, "\",\"shape\":[");
        for (int d = 0; d < t->n_dims; d++) {
            if (d) sb_str(&b, ",");
            sb_u64(&b, (uint64_t)t->shape[d]);
        }
        uint64_t nb = t->n_elems * st_dtype_size(t->dtype);
        sb_str(&b, "],\"data_offsets\":[");
        sb_u64(&b, off);
        sb_str(&b, ",");
        sb_u64(&b, off + nb);
        sb_str(&b, "]}");
        off += nb;
    }
    sb_str(&b, "}");
    while (!b.oom && b.n % 8) sb_str(&b, " ");
    if (b.oom) {
        free(b.p);
        return et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    et_afile a;
    int rc = et_afile_open(&a, path, e);
    if (rc) {
        free(b.p);
        return rc;
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
    int bad = fwrite(len, 1, 8, a.f) != 8 || fwrite(b.p, 1, b.n, a.f) != b.n;
    for (size_t i = 0; i < w->n && !bad; i++) bad = write_tensor_data(a.f, &w->t[i]) != 0;
    free(b.p);
    if (bad) {
        et_afile_abort(&a);
        return et_fail(e, ET_ERUN, "%s: write error", path);
    }
    return et_afile_commit(&a, e);
}
