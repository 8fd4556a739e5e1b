/* export/gguf.c — GGUF v2/v3 reader and v3 writer; see gguf.h.
 *
 * Format: ggml docs/gguf.md; the reader's checks follow llama.cpp
 * ggml/src/gguf.cpp (gguf_init_from_file_impl) and add more: every count
 * is bounded by the bytes left in the file before anything is allocated,
 * and tensor data must lie inside the file without overlapping.
 * The writer follows gguf_write_to_buf / gguf-py GGUFWriter: KVs in
 * insertion order, tensor infos in declaration order with offsets that are
 * the running sum of the tensor sizes each padded to the alignment, the
 * data section at the first aligned byte after the infos, zero padding.
 * All integers are little-endian; they are decoded byte by byte, so the
 * code does not depend on the host's byte order or on alignment.
 */
#include "gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ types */

/* Block sizes from ggml.c type_traits (blck_size, type_size): elements and bytes per block. */
typedef struct type_info { uint32_t type; const char *name; uint32_t blck; uint32_t bytes; } type_info;
static const type_info TYPES[] = {
    {GGML_TYPE_F32, "F32", 1, 4},       {GGML_TYPE_F16, "F16", 1, 2},
    {GGML_TYPE_Q4_0, "Q4_0", 32, 18},   {GGML_TYPE_Q4_1, "Q4_1", 32, 20},
    {GGML_TYPE_Q5_0, "Q5_0", 32, 22},   {GGML_TYPE_Q5_1, "Q5_1", 32, 24},
    {GGML_TYPE_Q8_0, "Q8_0", 32, 34},   {GGML_TYPE_Q8_1, "Q8_1", 32, 36},
    {GGML_TYPE_Q2_K, "Q2_K", 256, 84},  {GGML_TYPE_Q3_K, "Q3_K", 256, 110},
    {GGML_TYPE_Q4_K, "Q4_K", 256, 144}, {GGML_TYPE_Q5_K, "Q5_K", 256, 176},
    {GGML_TYPE_Q6_K, "Q6_K", 256, 210}, {GGML_TYPE_Q8_K, "Q8_K", 256, 292},
    {GGML_TYPE_I8, "I8", 1, 1},         {GGML_TYPE_I16, "I16", 1, 2},
    {GGML_TYPE_I32, "I32", 1, 4},       {GGML_TYPE_I64, "I64", 1, 8},
    {GGML_TYPE_F64, "F64", 1, 8},       {GGML_TYPE_BF16, "BF16", 1, 2},
    /* i-quants, ternary and MXFP4: sizes as gguf-py constants.py GGML_QUANT_SIZES */
    {GGML_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66}, {GGML_TYPE_IQ2_XS, "IQ2_XS", 256, 74},
    {GGML_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98}, {GGML_TYPE_IQ1_S, "IQ1_S", 256, 50},
    {GGML_TYPE_IQ4_NL, "IQ4_NL", 32, 18},    {GGML_TYPE_IQ3_S, "IQ3_S", 256, 110},
    {GGML_TYPE_IQ2_S, "IQ2_S", 256, 82},     {GGML_TYPE_IQ4_XS, "IQ4_XS", 256, 136},
    {GGML_TYPE_IQ1_M, "IQ1_M", 256, 56},     {GGML_TYPE_TQ1_0, "TQ1_0", 256, 54},
    {GGML_TYPE_TQ2_0, "TQ2_0", 256, 66},     {GGML_TYPE_MXFP4, "MXFP4", 32, 17},
};

static const type_info *type_lookup(uint32_t type) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == type) return &TYPES[i];
    return NULL;
}

const char *ggml_type_name(uint32_t type) {
    const type_info *t = type_lookup(type);
    return t ? t->name : NULL;
}

void ggml_type_block(uint32_t type, uint64_t *block_elems, uint64_t *block_bytes) {
    const type_info *t = type_lookup(type);
    if (block_elems) *block_elems = t ? t->blck : 0;
    if (block_bytes) *block_bytes = t ? t->bytes : 0;
}

uint64_t ggml_row_bytes(uint32_t type, uint64_t n) {
    const type_info *t = type_lookup(type);
    if (!t || n % t->blck != 0) return 0;
    uint64_t blocks = n / t->blck;
    if (blocks > UINT64_MAX / t->bytes) return 0;
    return blocks * t->bytes;
}

uint64_t gguf_type_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t type) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
        "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    return type < GGUF_TYPE_COUNT ? names[type] : NULL;
}

/* Little-endian decoding of unaligned bytes. */
static uint64_t le_get(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void le_put(uint8_t *p, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int gguf_str_eq(gguf_str a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

/* A printable copy of (at most the first 80 bytes of) s, for messages. */
static const char *printable(gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 4 ? (size_t)s.len : cap - 4, j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[j++] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    if (n < s.len) { buf[j++] = '.'; buf[j++] = '.'; buf[j++] = '.'; }
    buf[j] = 0;
    return buf;
}

/* ----------------------------------------------------------------- reader */

typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos;
    const char *path;
    et_err *e;
} rd;

/* Fail unless n more bytes are available; `what` names the field. */
static int rd_need(rd *r, uint64_t n, const char *what) {
    if (n > r->size - r->pos)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: truncated (needs %" PRIu64
                       " bytes, %" PRIu64 " left in the file)", r->path, r->pos, what, n, r->size - r->pos);
    return 0;
}

static int rd_uint(rd *r, unsigned n, uint64_t *out, const char *what) {
    int rc = rd_need(r, n, what);
    if (rc) return rc;
    *out = le_get(r->p + r->pos, n);
    r->pos += n;
    return 0;
}

static int rd_u32(rd *r, uint32_t *out, const char *what) {
    uint64_t v = 0;
    int rc = rd_uint(r, 4, &v, what);
    *out = (uint32_t)v;
    return rc;
}

static int rd_str(rd *r, gguf_str *s, uint64_t max_len, const char *what) {
    uint64_t at = r->pos, n;
    int rc = rd_uint(r, 8, &n, what);
    if (rc) return rc;
    if (n > max_len)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: string length %" PRIu64
                       " exceeds the limit of %" PRIu64 " bytes", r->path, at, what, n, max_len);
    if ((rc = rd_need(r, n, what))) return rc;
    s->ptr = (const char *)(r->p + r->pos);
    s->len = n;
    r->pos += n;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    const gguf_str *x = *(const gguf_str *const *)a, *y = *(const gguf_str *const *)b;
    uint64_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->ptr, y->ptr, (size_t)n) : 0;
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Index (into the sorted array) of a duplicate, or -1. */
static int64_t find_duplicate(const gguf_str **sorted, uint64_t n) {
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    for (uint64_t i = 1; i < n; i++)
        if (cmp_str_ptr(&sorted[i - 1], &sorted[i]) == 0) return (int64_t)i;
    return -1;
}

static int parse_kv(rd *r, gguf_file *g, uint64_t i) {
    gguf_kv *kv = &g->kv[i];
    char what[160], pk[96];
    kv->file_offset = r->pos;
    snprintf(what, sizeof what, "KV %" PRIu64 " key", i);
    int rc = rd_str(r, &kv->key, 65535, what);
    if (rc) return rc;
    snprintf(what, sizeof what, "KV %" PRIu64 " '%s'", i, printable(kv->key, pk, sizeof pk));
    uint64_t at = r->pos;
    if ((rc = rd_u32(r, &kv->type, what))) return rc;
    if (kv->type >= GGUF_TYPE_COUNT)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: unknown value type %u",
                       r->path, at, what, kv->type);
    kv->raw = r->p + r->pos;
    uint64_t start = r->pos;
    uint32_t et = kv->type;
    kv->n = 1;
    if (kv->type == GGUF_TYPE_ARRAY) {
        at = r->pos;
        if ((rc = rd_u32(r, &kv->arr_type, what))) return rc;
        if (kv->arr_type >= GGUF_TYPE_COUNT || kv->arr_type == GGUF_TYPE_ARRAY)
            return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: %s array element type %u",
                           r->path, at, what, kv->arr_type == GGUF_TYPE_ARRAY ? "unsupported (nested)" : "unknown",
                           kv->arr_type);
        at = r->pos;
        if ((rc = rd_uint(r, 8, &kv->n, what))) return rc;
        et = kv->arr_type;
        uint64_t min_size = et == GGUF_TYPE_STRING ? 8 : gguf_type_size(et);
        if (kv->n > (r->size - r->pos) / min_size)
            return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: array of %" PRIu64
                           " %s elements does not fit in the %" PRIu64 " bytes left in the file",
                           r->path, at, what, kv->n, gguf_type_name(et), r->size - r->pos);
    }
    kv->data = r->p + r->pos;
    if (et == GGUF_TYPE_STRING) {
        kv->strs = calloc(kv->n ? (size_t)kv->n : 1, sizeof *kv->strs);
        if (!kv->strs) return et_fail(r->e, ET_ERUN, "%s: %s: out of memory", r->path, what);
        for (uint64_t j = 0; j < kv->n; j++)
            if ((rc = rd_str(r, &kv->strs[j], GGUF_MAX_STRING, what))) return rc;
    } else {
        uint64_t es = gguf_type_size(et);
        if ((rc = rd_need(r, es * kv->n, what))) return rc; /* n bounded above: no overflow */
        r->pos += es * kv->n;
    }
    kv->raw_len = r->pos - start;
    return 0;
}

static int parse_tensor_info(rd *r, gguf_file *g, uint64_t i) {
    gguf_tensor *t = &g->tensors[i];
    char what[160], pn[96];
    uint64_t at = r->pos;
    snprintf(what, sizeof what, "tensor %" PRIu64 " name", i);
    int rc = rd_str(r, &t->name, 65535, what);
    if (rc) return rc;
    snprintf(what, sizeof what, "tensor %" PRIu64 " '%s'", i, printable(t->name, pn, sizeof pn));
    if (t->name.len >= GGUF_MAX_NAME)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: name is %" PRIu64
                       " bytes (must be < %d)", r->path, at, what, t->name.len, GGUF_MAX_NAME);
    at = r->pos;
    if ((rc = rd_u32(r, &t->n_dims, what))) return rc;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: n_dims = %u (must be 1..%d)",
                       r->path, at, what, t->n_dims, GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        at = r->pos;
        if ((rc = rd_uint(r, 8, &ne, what))) return rc;
        if (ne == 0 || ne > (uint64_t)INT64_MAX || ne > (uint64_t)INT64_MAX / n_elem)
            return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: ne[%u] = %" PRIu64
                           " is zero or makes the element count overflow", r->path, at, what, d, ne);
        t->ne[d] = (int64_t)ne;
        n_elem *= ne;
    }
    at = r->pos;
    if ((rc = rd_u32(r, &t->type, what))) return rc;
    uint64_t blck, bb;
    ggml_type_block(t->type, &blck, &bb);
    if (!blck)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: unknown ggml type %u",
                       r->path, at, what, t->type);
    uint64_t row = ggml_row_bytes(t->type, (uint64_t)t->ne[0]);
    if (!row)
        return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: row length ne[0] = %" PRId64
                       " is not a multiple of the %s block size %" PRIu64,
                       r->path, at, what, t->ne[0], ggml_type_name(t->type), blck);
    uint64_t nbytes = row;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        if ((uint64_t)t->ne[d] > UINT64_MAX / nbytes)
            return et_fail(r->e, ET_EINPUT, "%s: byte %" PRIu64 ": %s: size in bytes overflows",
                           r->path, at, what);
        nbytes *= (uint64_t)t->ne[d];
    }
    t->nbytes = nbytes;
    return rd_uint(r, 8, &t->offset, what);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Alignment from general.alignment (must be UINT32, a power of two). */
static int read_alignment(gguf_file *g, et_err *e) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t k = gguf_find_key(g, "general.alignment");
    if (k < 0) return 0;
    const gguf_kv *kv = &g->kv[k];
    if (kv->type != GGUF_TYPE_UINT32)
        return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": general.alignment has type %s (must be UINT32)",
                       g->path, kv->file_offset, gguf_type_name(kv->type));
    uint64_t a = le_get(kv->data, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": general.alignment = %" PRIu64
                       " is not a power of two", g->path, kv->file_offset, a);
    g->alignment = a;
    return 0;
}

/* Tensor data: aligned, inside the file, not overlapping. */
static int check_tensor_data(gguf_file *g, et_err *e) {
    uint64_t size = g->map.size;
    if (g->n_tensors == 0) return 0;
    if (g->data_offset > size)
        return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": data section starts past the end of the file (%" PRIu64 " bytes)",
                       g->path, g->data_offset, size);
    uint64_t avail = size - g->data_offset;
    char pn[96], pn2[96];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return et_fail(e, ET_EINPUT, "%s: tensor %" PRIu64 " '%s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                           g->path, i, printable(t->name, pn, sizeof pn), t->offset, g->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": tensor %" PRIu64 " '%s': data (%" PRIu64
                           " bytes at offset %" PRIu64 ") runs past end of file (%" PRIu64 " bytes)",
                           g->path, t->offset <= UINT64_MAX - g->data_offset ? g->data_offset + t->offset : UINT64_MAX,
                           i, printable(t->name, pn, sizeof pn), t->nbytes, t->offset, size);
        t->data = g->map.data + g->data_offset + t->offset;
    }
    const gguf_tensor **by_off = malloc((size_t)g->n_tensors * sizeof *by_off);
    if (!by_off) return et_fail(e, ET_ERUN, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_tensors; i++) by_off[i] = &g->tensors[i];
    qsort(by_off, (size_t)g->n_tensors, sizeof *by_off, cmp_tensor_offset);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors && !rc; i++) {
        const gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (a->offset + a->nbytes > b->offset)
            rc = et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": tensors '%s' and '%s' overlap (offsets %" PRIu64
                         " + %" PRIu64 " bytes > %" PRIu64 ")", g->path, g->data_offset + b->offset,
                         printable(a->name, pn, sizeof pn), printable(b->name, pn2, sizeof pn2),
                         a->offset, a->nbytes, b->offset);
    }
    free(by_off);
    return rc;
}

static int check_duplicates(gguf_file *g, et_err *e) {
    uint64_t n = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
    if (n < 2) return 0;
    const gguf_str **s = malloc((size_t)n * sizeof *s);
    if (!s) return et_fail(e, ET_ERUN, "%s: out of memory", g->path);
    char pk[96];
    int rc = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) s[i] = &g->kv[i].key;
    int64_t d = find_duplicate(s, g->n_kv);
    if (d >= 0) {
        rc = et_fail(e, ET_EINPUT, "%s: duplicate key '%s'", g->path, printable(*s[d], pk, sizeof pk));
    } else {
        for (uint64_t i = 0; i < g->n_tensors; i++) s[i] = &g->tensors[i].name;
        d = find_duplicate(s, g->n_tensors);
        if (d >= 0) rc = et_fail(e, ET_EINPUT, "%s: duplicate tensor name '%s'", g->path, printable(*s[d], pk, sizeof pk));
    }
    free(s);
    return rc;
}

static int parse(gguf_file *g, et_err *e) {
    rd r = {g->map.data, g->map.size, 0, g->path, e};
    int rc;
    if ((rc = rd_need(&r, 4, "magic"))) return rc;
    if (memcmp(r.p, "GGUF", 4) != 0)
        return et_fail(e, ET_EINPUT, "%s: byte 0: bad magic (not a GGUF file)", g->path);
    r.pos = 4;
    if ((rc = rd_u32(&r, &g->version, "version"))) return rc;
    if (g->version == 1)
        return et_fail(e, ET_EINPUT, "%s: byte 4: GGUF version 1 is not supported (only 2 and 3)", g->path);
    if (g->version != 2 && g->version != 3)
        return et_fail(e, ET_EINPUT, "%s: byte 4: unsupported GGUF version %u%s", g->path, g->version,
                       (g->version == 0x02000000u || g->version == 0x03000000u) ? " (a big-endian file?)" : "");
    if ((rc = rd_uint(&r, 8, &g->n_tensors, "n_tensors"))) return rc;
    if ((rc = rd_uint(&r, 8, &g->n_kv, "n_kv"))) return rc;
    /* each KV takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor
     * info 8 + 4 + 8 + 4 + 8: larger counts cannot fit in the file. */
    uint64_t left = r.size - r.pos;
    if (g->n_kv > left / 13)
        return et_fail(e, ET_EINPUT, "%s: byte 16: n_kv = %" PRIu64 " cannot fit in the %" PRIu64 " bytes left",
                       g->path, g->n_kv, left);
    if (g->n_tensors > left / 32)
        return et_fail(e, ET_EINPUT, "%s: byte 8: n_tensors = %" PRIu64 " cannot fit in the %" PRIu64 " bytes left",
                       g->path, g->n_tensors, left);
    g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return et_fail(e, ET_ERUN, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(&r, g, i))) return rc;
    if ((rc = read_alignment(g, e))) return rc;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor_info(&r, g, i))) return rc;
    if ((rc = check_duplicates(g, e))) return rc;
    g->data_offset = (r.pos + g->alignment - 1) / g->alignment * g->alignment;
    return check_tensor_data(g, e);
}

static void free_parsed(gguf_file *g) {
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    free(g->path);
    if (g->owns_map) et_map_close(&g->map);
    memset(g, 0, sizeof *g);
}

static int open_common(gguf_file *g, const char *name, et_err *e) {
    g->path = strdup(name ? name : "(memory)");
    if (!g->path) {
        if (g->owns_map) et_map_close(&g->map);
        memset(g, 0, sizeof *g);
        return et_fail(e, ET_ERUN, "%s: out of memory", name ? name : "(memory)");
    }
    int rc = parse(g, e);
    if (rc) free_parsed(g);
    return rc;
}

int gguf_open(gguf_file *g, const char *path, et_err *e) {
    memset(g, 0, sizeof *g);
    int rc = et_map_open(&g->map, path, e);
    if (rc) return rc;
    g->owns_map = 1;
    return open_common(g, path, e);
}

int gguf_open_mem(gguf_file *g, const void *data, size_t size, const char *name, et_err *e) {
    memset(g, 0, sizeof *g);
    g->map.data = data;
    g->map.size = data ? size : 0;
    g->owns_map = 0;
    return open_common(g, name, e);
}

void gguf_close(gguf_file *g) {
    if (g) free_parsed(g);
}

/* ---------------------------------------------------------------- lookups */

int64_t gguf_find_key(const gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (gguf_str_eq(g->kv[i].key, key)) return (int64_t)i;
    return -1;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static const gguf_kv *need_key(const gguf_file *g, const char *key, et_err *e) {
    int64_t k = gguf_find_key(g, key);
    if (k < 0) {
        et_fail(e, ET_EINPUT, "%s: missing key '%s'", g->path, key);
        return NULL;
    }
    return &g->kv[k];
}

static int wrong_type(const gguf_file *g, const gguf_kv *kv, const char *key, const char *want, et_err *e) {
    return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": key '%s' has type %s, expected %s", g->path,
                   kv->file_offset, key, kv->type == GGUF_TYPE_ARRAY ? "ARRAY" : gguf_type_name(kv->type), want);
}

static int is_int_type(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

static int is_signed_type(uint32_t t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

/* Decode an integer element: *neg = 1 and *mag = |v| for negative values. */
static void int_elem(uint32_t t, const uint8_t *p, int *neg, uint64_t *mag) {
    unsigned n = (unsigned)gguf_type_size(t);
    uint64_t v = le_get(p, n);
    *neg = 0;
    *mag = v;
    if (is_signed_type(t) && n < 8 && (v >> (8 * n - 1)) & 1) {
        *neg = 1;
        *mag = (1ull << (8 * n)) - v;
    } else if (is_signed_type(t) && n == 8 && (v >> 63)) {
        *neg = 1;
        *mag = ~v + 1;
    }
}

int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, et_err *e) {
    const gguf_kv *kv = need_key(g, key, e);
    if (!kv) return ET_EINPUT;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, key, "an integer", e);
    int neg;
    uint64_t mag;
    int_elem(kv->type, kv->data, &neg, &mag);
    if (neg || mag > UINT32_MAX)
        return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": key '%s': value %s%" PRIu64 " does not fit in uint32",
                       g->path, kv->file_offset, key, neg ? "-" : "", mag);
    *out = (uint32_t)mag;
    return 0;
}

int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, et_err *e) {
    const gguf_kv *kv = need_key(g, key, e);
    if (!kv) return ET_EINPUT;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, key, "an integer", e);
    int neg;
    uint64_t mag;
    int_elem(kv->type, kv->data, &neg, &mag);
    if ((!neg && mag > (uint64_t)INT64_MAX) || (neg && mag > (uint64_t)INT64_MAX + 1))
        return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": key '%s': value does not fit in int64",
                       g->path, kv->file_offset, key);
    *out = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return 0;
}

static double float_elem(uint32_t t, const uint8_t *p) {
    if (t == GGUF_TYPE_FLOAT32) {
        uint32_t u = (uint32_t)le_get(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    uint64_t u = le_get(p, 8);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

int gguf_get_f32(const gguf_file *g, const char *key, float *out, et_err *e) {
    const gguf_kv *kv = need_key(g, key, e);
    if (!kv) return ET_EINPUT;
    if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return wrong_type(g, kv, key, "FLOAT32", e);
    *out = (float)float_elem(kv->type, kv->data);
    return 0;
}

int gguf_get_bool(const gguf_file *g, const char *key, int *out, et_err *e) {
    const gguf_kv *kv = need_key(g, key, e);
    if (!kv) return ET_EINPUT;
    if (kv->type != GGUF_TYPE_BOOL) return wrong_type(g, kv, key, "BOOL", e);
    *out = kv->data[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_file *g, const char *key, char *out, size_t cap, et_err *e) {
    const gguf_kv *kv = need_key(g, key, e);
    if (!kv) return ET_EINPUT;
    if (kv->type != GGUF_TYPE_STRING) return wrong_type(g, kv, key, "STRING", e);
    if (cap == 0 || kv->strs[0].len > cap - 1)
        return et_fail(e, ET_EINPUT, "%s: byte %" PRIu64 ": key '%s': string of %" PRIu64
                       " bytes does not fit in a buffer of %zu", g->path, kv->file_offset, key, kv->strs[0].len, cap);
    if (kv->strs[0].len) memcpy(out, kv->strs[0].ptr, (size_t)kv->strs[0].len);
    out[kv->strs[0].len] = 0;
    return 0;
}

/* Element type and count of a KV viewed as an array (a scalar is 1 element). */
static uint32_t elem_type(const gguf_kv *kv) {
    return kv->type == GGUF_TYPE_ARRAY ? kv->arr_type : kv->type;
}

int gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out) {
    uint32_t t = elem_type(kv);
    if (i >= kv->n || (!is_int_type(t) && t != GGUF_TYPE_BOOL)) return ET_EINPUT;
    if (t == GGUF_TYPE_BOOL) { *out = kv->data[i] != 0; return 0; }
    int neg;
    uint64_t mag;
    int_elem(t, kv->data + i * gguf_type_size(t), &neg, &mag);
    if ((!neg && mag > (uint64_t)INT64_MAX)) return ET_EINPUT;
    *out = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return 0;
}

int gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out) {
    uint32_t t = elem_type(kv);
    if (i >= kv->n) return ET_EINPUT;
    if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
        *out = float_elem(t, kv->data + i * gguf_type_size(t));
        return 0;
    }
    if (!is_int_type(t)) return ET_EINPUT;
    int neg;
    uint64_t mag;
    int_elem(t, kv->data + i * gguf_type_size(t), &neg, &mag);
    *out = neg ? -(double)mag : (double)mag;
    return 0;
}

/* ----------------------------------------------------------------- writer */

typedef struct wkv {
    char *key;          /* key bytes (NUL-terminated copy; key_len may be shorter than strlen if hostile) */
    uint64_t key_len;
    uint32_t type;
    uint8_t *raw;       /* value bytes exactly as written after the type */
    uint64_t raw_len;
} wkv;

typedef struct wtensor {
    char name[GGUF_MAX_NAME];
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

gguf_writer *gguf_writer_new(void) {
    return calloc(1, sizeof(gguf_writer));
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].raw);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

static int64_t w_find(const gguf_writer *w, const char *key, uint64_t len) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (w->kv[i].key_len == len && memcmp(w->kv[i].key, key, (size_t)len) == 0) return (int64_t)i;
    return -1;
}

/* Set key (len bytes) to type + raw (taken over: freed on failure too). */
static int w_set(gguf_writer *w, const char *key, uint64_t key_len, uint32_t type, uint8_t *raw, uint64_t raw_len) {
    if (!w || !key || !raw) { free(raw); return ET_ERUN; }
    int64_t k = w_find(w, key, key_len);
    if (k >= 0) {
        free(w->kv[k].raw);
        w->kv[k].type = type;
        w->kv[k].raw = raw;
        w->kv[k].raw_len = raw_len;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) { free(raw); return ET_ERUN; }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *kc = malloc((size_t)key_len + 1);
    if (!kc) { free(raw); return ET_ERUN; }
    memcpy(kc, key, (size_t)key_len);
    kc[key_len] = 0;
    w->kv[w->n_kv++] = (wkv){kc, key_len, type, raw, raw_len};
    return 0;
}

static int w_set_scalar(gguf_writer *w, const char *key, uint32_t type, uint64_t bits) {
    unsigned n = (unsigned)gguf_type_size(type);
    uint8_t *raw = malloc(n);
    if (raw) le_put(raw, bits, n);
    return w_set(w, key, key ? strlen(key) : 0, type, raw, n);
}

int gguf_set_u8(gguf_writer *w, const char *key, uint8_t v) { return w_set_scalar(w, key, GGUF_TYPE_UINT8, v); }
int gguf_set_i8(gguf_writer *w, const char *key, int8_t v) { return w_set_scalar(w, key, GGUF_TYPE_INT8, (uint8_t)v); }
int gguf_set_u16(gguf_writer *w, const char *key, uint16_t v) { return w_set_scalar(w, key, GGUF_TYPE_UINT16, v); }
int gguf_set_i16(gguf_writer *w, const char *key, int16_t v) { return w_set_scalar(w, key, GGUF_TYPE_INT16, (uint16_t)v); }
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { return w_set_scalar(w, key, GGUF_TYPE_UINT32, v); }
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { return w_set_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)v); }
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v) { return w_set_scalar(w, key, GGUF_TYPE_UINT64, v); }
int gguf_set_i64(gguf_writer *w, const char *key, int64_t v) { return w_set_scalar(w, key, GGUF_TYPE_INT64, (uint64_t)v); }
int gguf_set_bool(gguf_writer *w, const char *key, int v) { return w_set_scalar(w, key, GGUF_TYPE_BOOL, v != 0); }

int gguf_set_f32(gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return w_set_scalar(w, key, GGUF_TYPE_FLOAT32, u);
}

int gguf_set_f64(gguf_writer *w, const char *key, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return w_set_scalar(w, key, GGUF_TYPE_FLOAT64, u);
}

int gguf_set_strn(gguf_writer *w, const char *key, const char *v, uint64_t len) {
    if (!v && len) return ET_ERUN;
    if (len > GGUF_MAX_STRING) return ET_EINPUT;
    uint8_t *raw = malloc(8 + (size_t)len);
    if (raw) {
        le_put(raw, len, 8);
        if (len) memcpy(raw + 8, v, (size_t)len);
    }
    return w_set(w, key, key ? strlen(key) : 0, GGUF_TYPE_STRING, raw, 8 + len);
}

int gguf_set_str(gguf_writer *w, const char *key, const char *v) {
    return gguf_set_strn(w, key, v, v ? strlen(v) : 0);
}

int gguf_set_arr(gguf_writer *w, const char *key, uint32_t arr_type, const void *data, uint64_t n) {
    uint64_t es = gguf_type_size(arr_type);
    if (!es) return ET_EINPUT;
    if (n && !data) return ET_ERUN;
    if (n > (SIZE_MAX - 12) / es) return ET_ERUN;
    uint8_t *raw = malloc(12 + (size_t)(n * es));
    if (raw) {
        le_put(raw, arr_type, 4);
        le_put(raw + 4, n, 8);
        if (n) memcpy(raw + 12, data, (size_t)(n * es)); /* elements are already little-endian */
    }
    return w_set(w, key, key ? strlen(key) : 0, GGUF_TYPE_ARRAY, raw, 12 + n * es);
}

int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    if (n && !strs) return ET_ERUN;
    uint64_t total = 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
        if (len > GGUF_MAX_STRING) return ET_EINPUT;
        if (len && !strs[i]) return ET_ERUN;
        total += 8 + len;
        if (total > SIZE_MAX / 2) return ET_ERUN;
    }
    uint8_t *raw = malloc((size_t)total);
    if (raw) {
        le_put(raw, GGUF_TYPE_STRING, 4);
        le_put(raw + 4, n, 8);
        uint8_t *p = raw + 12;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
            le_put(p, len, 8);
            if (len) memcpy(p + 8, strs[i], (size_t)len);
            p += 8 + len;
        }
    }
    return w_set(w, key, key ? strlen(key) : 0, GGUF_TYPE_ARRAY, raw, total);
}

int gguf_set_kv_from(gguf_writer *w, const gguf_file *g, uint64_t i) {
    if (!g || i >= g->n_kv) return ET_EINPUT;
    const gguf_kv *kv = &g->kv[i];
    uint8_t *raw = malloc(kv->raw_len ? (size_t)kv->raw_len : 1);
    if (raw && kv->raw_len) memcpy(raw, kv->raw, (size_t)kv->raw_len);
    return w_set(w, kv->key.len ? kv->key.ptr : "", kv->key.len, kv->type, raw, kv->raw_len);
}

void gguf_remove_key(gguf_writer *w, const char *key) {
    if (!w || !key) return;
    int64_t k = w_find(w, key, strlen(key));
    if (k < 0) return;
    free(w->kv[k].key);
    free(w->kv[k].raw);
    memmove(&w->kv[k], &w->kv[k + 1], (w->n_kv - (size_t)k - 1) * sizeof *w->kv);
    w->n_kv--;
}

int gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                    const int64_t *ne, const void *data, et_err *e) {
    if (!w || !name) return et_fail(e, ET_EUSAGE, "gguf_add_tensor: NULL writer or name");
    size_t len = strlen(name);
    if (len >= GGUF_MAX_NAME)
        return et_fail(e, ET_EINPUT, "tensor '%s': name is %zu bytes (must be < %d)", name, len, GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return et_fail(e, ET_EINPUT, "tensor '%s': duplicate name", name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return et_fail(e, ET_EINPUT, "tensor '%s': n_dims = %u (must be 1..%d)", name, n_dims, GGUF_MAX_DIMS);
    if (!ggml_type_name(type)) return et_fail(e, ET_EINPUT, "tensor '%s': unknown ggml type %u", name, type);
    wtensor t;
    memset(&t, 0, sizeof t);
    memcpy(t.name, name, len + 1);
    t.type = type;
    t.n_dims = n_dims;
    uint64_t n_elem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || (uint64_t)ne[d] > (uint64_t)INT64_MAX / n_elem)
            return et_fail(e, ET_EINPUT, "tensor '%s': ne[%u] = %" PRId64 " is not positive or overflows", name, d, ne[d]);
        t.ne[d] = ne[d];
        n_elem *= (uint64_t)ne[d];
    }
    uint64_t nbytes = ggml_row_bytes(type, (uint64_t)t.ne[0]);
    if (!nbytes) {
        uint64_t blck;
        ggml_type_block(type, &blck, NULL);
        return et_fail(e, ET_EINPUT, "tensor '%s': row length ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRIu64,
                       name, t.ne[0], ggml_type_name(type), blck);
    }
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        if ((uint64_t)t.ne[d] > UINT64_MAX / nbytes) return et_fail(e, ET_EINPUT, "tensor '%s': size overflows", name);
        nbytes *= (uint64_t)t.ne[d];
    }
    if (!data) return et_fail(e, ET_EUSAGE, "tensor '%s': NULL data", name);
    t.nbytes = nbytes;
    t.data = data;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 32;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return et_fail(e, ET_ERUN, "tensor '%s': out of memory", name);
        w->t = nt;
        w->cap_t = cap;
    }
    w->t[w->n_t++] = t;
    return 0;
}

int gguf_add_tensor_from(gguf_writer *w, const gguf_file *g, uint64_t i, et_err *e) {
    if (!g || i >= g->n_tensors) return et_fail(e, ET_EUSAGE, "gguf_add_tensor_from: no tensor %" PRIu64, i);
    const gguf_tensor *t = &g->tensors[i];
    char name[GGUF_MAX_NAME];
    if (t->name.len >= GGUF_MAX_NAME || memchr(t->name.ptr, 0, (size_t)t->name.len))
        return et_fail(e, ET_EINPUT, "%s: tensor %" PRIu64 ": name is not a valid C string", g->path, i);
    memcpy(name, t->name.ptr, (size_t)t->name.len);
    name[t->name.len] = 0;
    return gguf_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, e);
}

/* fwrite that remembers failure and counts bytes. */
typedef struct wout { FILE *f; uint64_t pos; int bad; } wout;

static void out_bytes(wout *o, const void *p, uint64_t n) {
    if (o->bad || n == 0) return;
    if (fwrite(p, 1, (size_t)n, o->f) != (size_t)n) o->bad = 1;
    o->pos += n;
}

static void out_uint(wout *o, uint64_t v, unsigned n) {
    uint8_t b[8];
    le_put(b, v, n);
    out_bytes(o, b, n);
}

static void out_pad(wout *o, uint64_t alignment) {
    static const uint8_t zeros[4096];
    uint64_t n = (alignment - o->pos % alignment) % alignment;
    while (n > 0) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        out_bytes(o, zeros, k);
        n -= k;
    }
}

int gguf_writer_write(gguf_writer *w, const char *path, et_err *e) {
    if (!w || !path) return et_fail(e, ET_EUSAGE, "gguf_writer_write: NULL writer or path");
    uint64_t alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t k = w_find(w, "general.alignment", strlen("general.alignment"));
    if (k >= 0) {
        if (w->kv[k].type != GGUF_TYPE_UINT32)
            return et_fail(e, ET_EINPUT, "%s: general.alignment must be UINT32", path);
        alignment = le_get(w->kv[k].raw, 4);
        if (alignment == 0 || (alignment & (alignment - 1)))
            return et_fail(e, ET_EINPUT, "%s: general.alignment = %" PRIu64 " is not a power of two", path, alignment);
    }
    et_afile a;
    int rc = et_afile_open(&a, path, e);
    if (rc) return rc;
    wout o = {a.f, 0, 0};
    out_bytes(&o, "GGUF", 4);
    out_uint(&o, 3, 4);
    out_uint(&o, w->n_t, 8);
    out_uint(&o, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        out_uint(&o, w->kv[i].key_len, 8);
        out_bytes(&o, w->kv[i].key, w->kv[i].key_len);
        out_uint(&o, w->kv[i].type, 4);
        out_bytes(&o, w->kv[i].raw, w->kv[i].raw_len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        out_uint(&o, len, 8);
        out_bytes(&o, t->name, len);
        out_uint(&o, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) out_uint(&o, (uint64_t)t->ne[d], 8);
        out_uint(&o, t->type, 4);
        out_uint(&o, offset, 8);
        uint64_t padded = (t->nbytes + alignment - 1) / alignment * alignment;
        offset += padded;
    }
    if (w->n_t > 0) {
        out_pad(&o, alignment);
        for (size_t i = 0; i < w->n_t; i++) {
            out_bytes(&o, w->t[i].data, w->t[i].nbytes);
            out_pad(&o, alignment);
        }
    }
    if (o.bad) {
        et_afile_abort(&a);
        return et_fail(e, ET_ERUN, "%s: write error after %" PRIu64 " bytes", path, o.pos);
    }
    return et_afile_commit(&a, e);
}
