/* datasets/dataset.c — tokens.h5 writer and validating reader (HDF5 C API).
 * Schema: dataset.h and docs/formats.md. */
#include "dataset.h"
#include "h5file.h"
#include "tokenizer.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK ((int64_t)1 << 20) /* elements per buffered write / validation read */

/* HDF5 prints its error stack to stderr by default; the library must not. */
static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

/* ====================================================================== */
/*                                 writer                                 */
/* ====================================================================== */

struct et_ds_writer {
    char *path, *tmp;
    hid_t file, d_tokens, d_offsets, d_mask, d_labels;
    int with_mask, n_labels;
    int64_t n_vocab, bos_id, eos_id, packed_len;
    char sha[65];
    char *source, *format;
    char **label_names;     /* [n_labels] or NULL */
    int64_t chunk;          /* tokens per HDF5 chunk */
    int64_t n_tokens, n_docs, n_train_docs; /* n_train_docs < 0: not marked */
    int64_t written_tokens, written_docs;   /* what is already in the file */
    /* buffered until BLOCK tokens */
    int32_t *tbuf; uint8_t *mbuf; size_t nt, cap_t, cap_m;
    int64_t *obuf; int32_t *lbuf; size_t nd, cap_o, cap_l;
};

static hid_t create_1d(hid_t file, const char *name, hid_t type, hsize_t chunk) {
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, ch[1] = {chunk ? chunk : 1};
    hid_t space = H5Screate_simple(1, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, ch) >= 0)
        d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return d;
}

/* Append n elements of memtype from buf at the end (current length *len). */
static int append_1d(hid_t d, hid_t memtype, const void *buf, int64_t n, int64_t *len) {
    if (n == 0) return 0;
    hsize_t newlen[1] = {(hsize_t)(*len + n)}, start[1] = {(hsize_t)*len}, count[1] = {(hsize_t)n};
    if (H5Dset_extent(d, newlen) < 0) return -1;
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(1, count, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (rc == 0) *len += n;
    return rc;
}

static void close_id(hid_t *h, herr_t (*fn)(hid_t)) {
    if (*h >= 0) fn(*h);
    *h = -1;
}

static void writer_free(et_ds_writer *w) {
    if (!w) return;
    close_id(&w->d_tokens, H5Dclose);
    close_id(&w->d_offsets, H5Dclose);
    close_id(&w->d_mask, H5Dclose);
    close_id(&w->d_labels, H5Dclose);
    if (w->file >= 0) et_h5_close(w->file);
    w->file = -1;
    if (w->label_names)
        for (int i = 0; i < w->n_labels; i++) free(w->label_names[i]);
    free(w->label_names);
    free(w->source);
    free(w->format);
    free(w->tbuf);
    free(w->mbuf);
    free(w->obuf);
    free(w->lbuf);
    free(w->path);
    free(w->tmp);
    free(w);
}

static int create_datasets(et_ds_writer *w, et_err *e) {
    hsize_t ch = (hsize_t)w->chunk;
    hsize_t dch = ch < 4096 ? ch : 4096;
    w->d_tokens = create_1d(w->file, "tokens", H5T_STD_I32LE, ch);
    w->d_offsets = create_1d(w->file, "doc_offsets", H5T_STD_I64LE, dch);
    if (w->with_mask) w->d_mask = create_1d(w->file, "loss_mask", H5T_STD_U8LE, ch);
    if (w->n_labels > 0) w->d_labels = create_1d(w->file, "labels", H5T_STD_I32LE, dch);
    int64_t zero = 0, len = 0;
    if (w->d_tokens < 0 || w->d_offsets < 0 || (w->with_mask && w->d_mask < 0) ||
        (w->n_labels > 0 && w->d_labels < 0) || append_1d(w->d_offsets, H5T_NATIVE_INT64, &zero, 1, &len))
        return et_fail(e, ET_ERUN, "%s: cannot create the HDF5 datasets in %s", w->path, w->tmp);
    return 0;
}

int et_ds_writer_open(et_ds_writer **out, const char *path, const et_ds_meta *m, int flags,
                      et_err *e) {
    *out = NULL;
    quiet_hdf5();
    if (m->n_vocab <= 0 || m->n_vocab > INT32_MAX)
        return et_fail(e, ET_EUSAGE, "%s: n_vocab %" PRId64 " out of range", path, m->n_vocab);
    if (m->n_labels < 0 || m->n_labels > ET_DS_MAX_LABELS)
        return et_fail(e, ET_EUSAGE, "%s: %d labels out of range", path, m->n_labels);
    if (m->packed_len < 0) return et_fail(e, ET_EUSAGE, "%s: negative packed_len", path);
    et_ds_writer *w = calloc(1, sizeof *w);
    if (!w) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    w->file = w->d_tokens = w->d_offsets = w->d_mask = w->d_labels = -1;
    w->with_mask = (flags & ET_DS_WITH_MASK) != 0;
    w->n_labels = m->n_labels;
    w->n_vocab = m->n_vocab;
    w->bos_id = m->bos_id;
    w->eos_id = m->eos_id;
    w->packed_len = m->packed_len;
    snprintf(w->sha, sizeof w->sha, "%s", m->tokenizer_sha256);
    w->chunk = 65536;
    w->n_train_docs = -1;
    size_t tn = strlen(path) + 48;
    w->path = strdup(path);
    w->tmp = malloc(tn);
    w->source = xstrdup(m->source);
    w->format = xstrdup(m->format);
    int oom = !w->path || !w->tmp || !w->source || !w->format;
    if (!oom && m->n_labels > 0 && m->label_names) {
        w->label_names = calloc((size_t)m->n_labels, sizeof(char *));
        oom = !w->label_names;
        for (int i = 0; !oom && i < m->n_labels; i++) oom = !(w->label_names[i] = xstrdup(m->label_names[i]));
    }
    if (oom) {
        writer_free(w);
        return et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    snprintf(w->tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    hid_t fapl = et_h5_fapl();   /* a failed write cannot crash the process (h5file.h) */
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->file < 0) {
        int rc = et_fail(e, ET_ERUN, "%s: cannot create temporary HDF5 file %s", path, w->tmp);
        writer_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void et_ds_writer_size_hint(et_ds_writer *w, int64_t n_tokens) {
    if (!w || w->d_tokens >= 0) return;
    w->chunk = n_tokens < 1 ? 1 : n_tokens < 65536 ? n_tokens : 65536;
}

static int flush(et_ds_writer *w, et_err *e) {
    if (w->d_tokens < 0 && create_datasets(w, e)) return ET_ERUN;
    int64_t n = (int64_t)w->nt, nd = (int64_t)w->nd;
    int64_t tl = w->written_tokens, ml = w->written_tokens, ol = w->written_docs + 1, ll = w->written_docs;
    if (append_1d(w->d_tokens, H5T_NATIVE_INT32, w->tbuf, n, &tl) ||
        (w->with_mask && append_1d(w->d_mask, H5T_NATIVE_UINT8, w->mbuf, n, &ml)) ||
        append_1d(w->d_offsets, H5T_NATIVE_INT64, w->obuf, nd, &ol) ||
        (w->n_labels > 0 && append_1d(w->d_labels, H5T_NATIVE_INT32, w->lbuf, nd, &ll)))
        return et_fail(e, ET_ERUN, "%s: write error in %s (disk full?)", w->path, w->tmp);
    w->written_tokens += n;
    w->written_docs += nd;
    w->nt = w->nd = 0;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int et_ds_writer_add(et_ds_writer *w, const int32_t *tokens, const uint8_t *mask, size_t n,
                     int32_t label, et_err *e) {
    if (n == 0) return et_fail(e, ET_EUSAGE, "%s: document %" PRId64 " is empty", w->path, w->n_docs);
    if ((int64_t)n > ET_DS_MAX_TOKENS - w->n_tokens || w->n_docs >= ET_DS_MAX_DOCS)
        return et_fail(e, ET_EUSAGE, "%s: too many tokens or documents", w->path);
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= w->n_vocab)
            return et_fail(e, ET_EUSAGE, "%s: document %" PRId64 " token %zu = %d is outside [0, %" PRId64 ")",
                           w->path, w->n_docs, i, (int)tokens[i], w->n_vocab);
        if (w->with_mask && mask && mask[i] > 1)
            return et_fail(e, ET_EUSAGE, "%s: document %" PRId64 " mask %zu = %d is not 0/1", w->path,
                           w->n_docs, i, mask[i]);
    }
    if (w->n_labels > 0 && (label < 0 || label >= w->n_labels))
        return et_fail(e, ET_EUSAGE, "%s: document %" PRId64 " label %d outside [0, %d)", w->path, w->n_docs,
                       (int)label, w->n_labels);
    /* big documents go straight through the buffer in BLOCK pieces */
    size_t done = 0;
    while (done < n) {
        size_t room = (size_t)BLOCK > w->nt ? (size_t)BLOCK - w->nt : 0;
        if (room == 0) {
            if (flush(w, e)) return ET_ERUN;
            continue;
        }
        size_t k = n - done < room ? n - done : room;
        if (grow((void **)&w->tbuf, &w->cap_t, w->nt + k, sizeof(int32_t)) ||
            (w->with_mask && grow((void **)&w->mbuf, &w->cap_m, w->nt + k, 1)))
            return et_fail(e, ET_ERUN, "%s: out of memory", w->path);
        if (w->with_mask)
            for (size_t i = 0; i < k; i++) w->mbuf[w->nt + i] = mask ? mask[done + i] : 1;
        memcpy(w->tbuf + w->nt, tokens + done, k * sizeof(int32_t));
        w->nt += k;
        done += k;
    }
    w->n_tokens += (int64_t)n;
    if (grow((void **)&w->obuf, &w->cap_o, w->nd + 1, sizeof(int64_t)) ||
        (w->n_labels > 0 && grow((void **)&w->lbuf, &w->cap_l, w->nd + 1, sizeof(int32_t))))
        return et_fail(e, ET_ERUN, "%s: out of memory", w->path);
    if (w->n_labels > 0) w->lbuf[w->nd] = label;
    w->obuf[w->nd++] = w->n_tokens;
    w->n_docs++;
    if (w->nt >= (size_t)BLOCK || w->nd >= (size_t)BLOCK) return flush(w, e);
    return 0;
}

void et_ds_writer_begin_valid(et_ds_writer *w) {
    if (w && w->n_train_docs < 0) w->n_train_docs = w->n_docs;
}

/* ---- attributes ---- */
static int attr_i64(hid_t loc, const char *name, int64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* Variable-length UTF-8 strings, as h5py writes Python str. n = 0: scalar. */
static int attr_strs(hid_t loc, const char *name, const char *const *v, hsize_t n) {
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0) return -1;
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hsize_t dims[1] = {n};
    hid_t sp = n ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(loc, name, st, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = (a >= 0 && H5Awrite(a, st, v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    H5Tclose(st);
    return rc;
}

static int write_attrs(et_ds_writer *w) {
    const char *sha = w->sha, *src = w->source, *fmt = w->format;
    int rc = attr_strs(w->file, "tokenizer_sha256", &sha, 0) | attr_i64(w->file, "n_vocab", w->n_vocab) |
             attr_i64(w->file, "bos_id", w->bos_id) | attr_i64(w->file, "eos_id", w->eos_id) |
             attr_strs(w->file, "source", &src, 0) | attr_strs(w->file, "format", &fmt, 0) |
             attr_i64(w->file, "n_train_docs", w->n_train_docs < 0 ? w->n_docs : w->n_train_docs);
    if (w->packed_len > 0) rc |= attr_i64(w->file, "packed_len", w->packed_len);
    if (w->n_labels > 0 && w->label_names)
        rc |= attr_strs(w->d_labels, "label_names", (const char *const *)w->label_names, (hsize_t)w->n_labels);
    return rc;
}

int et_ds_writer_commit(et_ds_writer *w, et_err *e) {
    int rc = flush(w, e);
    if (!rc && write_attrs(w)) rc = et_fail(e, ET_ERUN, "%s: cannot write attributes in %s", w->path, w->tmp);
    close_id(&w->d_tokens, H5Dclose);
    close_id(&w->d_offsets, H5Dclose);
    close_id(&w->d_mask, H5Dclose);
    close_id(&w->d_labels, H5Dclose);
    if (w->file >= 0 && et_h5_close(w->file) < 0 && !rc)
        rc = et_fail(e, ET_ERUN, "%s: write error in %s (disk full?)", w->path, w->tmp);
    w->file = -1;
    if (!rc) rc = et_commit_tmp(w->tmp, w->path, e); /* removes tmp on failure */
    else unlink(w->tmp);
    writer_free(w);
    return rc;
}

void et_ds_writer_abort(et_ds_writer *w) {
    if (!w) return;
    close_id(&w->d_tokens, H5Dclose);
    close_id(&w->d_offsets, H5Dclose);
    close_id(&w->d_mask, H5Dclose);
    close_id(&w->d_labels, H5Dclose);
    if (w->file >= 0) et_h5_close(w->file);
    w->file = -1;
    unlink(w->tmp);
    writer_free(w);
}

int et_ds_check_tokenizer(const char *path, const char *sha, int64_t n_vocab, int64_t bos, int64_t eos,
                          const struct et_tokenizer *tok, int model_n_vocab, const char *what, et_err *e) {
    if (n_vocab > model_n_vocab)
        return et_fail(e, ET_EINPUT, "%s: n_vocab %lld is larger than the %s's %d", path, (long long)n_vocab, what,
                       model_n_vocab);
    if (!tok) return 0;
    if (sha && sha[0]) {
        char hex[65];
        et_tok_sha256(tok, hex);
        if (strcmp(hex, sha))
            return et_fail(e, ET_EINPUT, "%s was tokenized with another vocabulary (tokenizer sha256 %.12s..., the "
                           "%s's %.12s...)", path, sha, what, hex);
    }
    const int64_t mb = et_tok_bos(tok), me = et_tok_eos(tok);
    if (bos >= 0 && bos != mb)
        return et_fail(e, ET_EINPUT, "%s: bos_id %lld differs from the %s's BOS %lld (made with another tokenizer)",
                       path, (long long)bos, what, (long long)mb);
    if (eos >= 0 && eos != me)
        return et_fail(e, ET_EINPUT, "%s: eos_id %lld differs from the %s's EOS %lld (made with another tokenizer)",
                       path, (long long)eos, what, (long long)me);
    return 0;
}

int et_ds_open_split(et_ds **ds, const char *path, const char *split, const struct et_tokenizer *tok,
                     int model_n_vocab, int64_t *d0, int64_t *d1, et_err *e) {
    *ds = NULL;
    if (strcmp(split, "all") && strcmp(split, "train") && strcmp(split, "valid"))
        return et_fail(e, ET_EUSAGE, "--split must be all, train or valid");
    int rc = et_ds_open(ds, path, e);
    if (rc) return rc;
    rc = et_ds_check_tokenizer(path, (*ds)->tokenizer_sha256, (*ds)->n_vocab, (*ds)->bos_id, (*ds)->eos_id, tok,
                               model_n_vocab, "model", e);
    if (rc) {
        et_ds_close(*ds);
        *ds = NULL;
        return rc;
    }
    *d0 = 0, *d1 = (*ds)->n_docs;
    if (strcmp(split, "all")) et_ds_split_docs(*ds, !strcmp(split, "train") ? ET_SPLIT_TRAIN : ET_SPLIT_VALID, d0, d1);
    return 0;
}

/* ====================================================================== */
/*                                 reader                                 */
/* ====================================================================== */

struct et_ds_h5 {
    hid_t file, tokens, mask, labels;
};

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    default: return "non-numeric";
    }
}

/* Open dataset `name` (absent: *d = -1 and 0 unless required), check it is
 * a 1-D integer array and return its length. */
static int open_int_1d(et_ds *ds, const char *name, int required, hid_t *d, int64_t *len, et_err *e) {
    *d = -1;
    *len = 0;
    htri_t ex = H5Lexists(ds->h5->file, name, H5P_DEFAULT);
    if (ex <= 0) {
        if (required) return et_fail(e, ET_EINPUT, "%s: missing dataset /%s", ds->path, name);
        return 0;
    }
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0) H5Pset_chunk_cache(dapl, 12421, (size_t)16 << 20, 1.0); /* 16 MiB per dataset */
    *d = H5Dopen2(ds->h5->file, name, dapl >= 0 ? dapl : H5P_DEFAULT);
    if (dapl >= 0) H5Pclose(dapl);
    if (*d < 0) return et_fail(e, ET_EINPUT, "%s: /%s is not a dataset", ds->path, name);
    hid_t t = H5Dget_type(*d);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    if (c != H5T_INTEGER)
        return et_fail(e, ET_EINPUT, "%s: /%s has %s elements, expected integers", ds->path, name, class_name(c));
    hid_t s = H5Dget_space(*d);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[H5S_MAX_RANK] = {0};
    if (nd == 1) H5Sget_simple_extent_dims(s, dims, NULL);
    if (s >= 0) H5Sclose(s);
    if (nd != 1) return et_fail(e, ET_EINPUT, "%s: /%s has %d dimensions, expected 1", ds->path, name, nd);
    if (dims[0] > (hsize_t)ET_DS_MAX_TOKENS)
        return et_fail(e, ET_EINPUT, "%s: /%s has %llu elements, more than the limit %" PRId64, ds->path, name,
                       (unsigned long long)dims[0], ET_DS_MAX_TOKENS);
    *len = (int64_t)dims[0];
    return 0;
}

/* Integer attribute (scalar or one element); absent -> *v = def, or an error if required. */
static int read_attr_i64(et_ds *ds, hid_t loc, const char *where, const char *name, int required, int64_t def,
                         int64_t *v, et_err *e) {
    *v = def;
    htri_t ex = H5Aexists(loc, name);
    if (ex <= 0) {
        if (required) return et_fail(e, ET_EINPUT, "%s: missing attribute %s%s", ds->path, where, name);
        return 0;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    hid_t s = a >= 0 ? H5Aget_space(a) : -1;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    int rc = 0;
    if (c != H5T_INTEGER || np != 1)
        rc = et_fail(e, ET_EINPUT, "%s: attribute %s%s must be one integer", ds->path, where, name);
    else if (H5Aread(a, H5T_NATIVE_INT64, v) < 0)
        rc = et_fail(e, ET_EINPUT, "%s: cannot read attribute %s%s", ds->path, where, name);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* Copy at most ET_DS_MAX_STR bytes of a C string into a fresh malloc'd string. */
static char *copy_str(const char *s, size_t cap) {
    size_t n = s ? strnlen(s, cap) : 0;
    char *o = malloc(n + 1);
    if (!o) return NULL;
    if (n) memcpy(o, s, n);
    o[n] = 0;
    return o;
}

/* String attribute (fixed or variable length) with n elements (want_n = 0:
 * scalar or one element).  *out = malloc'd array of n malloc'd strings. */
static int read_attr_strs(et_ds *ds, hid_t loc, const char *where, const char *name, hsize_t want_n, char ***out,
                          et_err *e) {
    *out = NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    hid_t s = a >= 0 ? H5Aget_space(a) : -1;
    hid_t mt = -1;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    hsize_t n = want_n ? want_n : 1;
    int rc = 0;
    char **res = NULL;
    if (c != H5T_STRING || np < 0 || (hsize_t)np != n) {
        rc = et_fail(e, ET_EINPUT, "%s: attribute %s%s must be %llu string(s)", ds->path, where, name,
                     (unsigned long long)n);
        goto done;
    }
    res = calloc(n, sizeof(char *));
    if (!res) { rc = et_fail(e, ET_ERUN, "%s: out of memory", ds->path); goto done; }
    mt = H5Tcopy(H5T_C_S1);
    if (H5Tis_variable_str(t) > 0) {
        char **raw = calloc(n, sizeof(char *));
        if (!raw) { rc = et_fail(e, ET_ERUN, "%s: out of memory", ds->path); goto done; }
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, raw) < 0) rc = et_fail(e, ET_EINPUT, "%s: cannot read attribute %s%s", ds->path, where, name);
        for (hsize_t i = 0; i < n; i++) {
            if (!rc && !(res[i] = copy_str(raw[i], ET_DS_MAX_STR))) rc = et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
            if (raw[i]) H5free_memory(raw[i]);
        }
        free(raw);
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > ET_DS_MAX_STR || n > (hsize_t)(SIZE_MAX / 2 / sz)) {
            rc = et_fail(e, ET_EINPUT, "%s: attribute %s%s: string size %zu out of range", ds->path, where, name, sz);
            goto done;
        }
        char *buf = calloc(n, sz);
        if (!buf) { rc = et_fail(e, ET_ERUN, "%s: out of memory", ds->path); goto done; }
        H5Tset_size(mt, sz);
        if (H5Aread(a, mt, buf) < 0) rc = et_fail(e, ET_EINPUT, "%s: cannot read attribute %s%s", ds->path, where, name);
        for (hsize_t i = 0; !rc && i < n; i++)
            if (!(res[i] = copy_str(buf + i * sz, sz))) rc = et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
        free(buf);
    }
done:
    if (mt >= 0) H5Tclose(mt);
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (rc && res) {
        for (hsize_t i = 0; i < n; i++) free(res[i]);
        free(res);
        res = NULL;
    }
    *out = res;
    return rc;
}

/* Scalar string attribute into *out (malloc'd); absent -> "". */
static int read_attr_str(et_ds *ds, const char *name, char **out, et_err *e) {
    *out = NULL;
    if (H5Aexists(ds->h5->file, name) <= 0) {
        *out = xstrdup("");
        return *out ? 0 : et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
    }
    char **v;
    int rc = read_attr_strs(ds, ds->h5->file, "", name, 0, &v, e);
    if (rc) return rc;
    *out = v[0];
    free(v);
    return 0;
}

static int read_1d(hid_t d, hid_t memtype, int64_t start, int64_t count, void *out) {
    if (count == 0) return 0;
    hsize_t st[1] = {(hsize_t)start}, cn[1] = {(hsize_t)count};
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(1, cn, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cn, NULL) >= 0 &&
        H5Dread(d, memtype, ms, fs, H5P_DEFAULT, out) >= 0)
        rc = 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

static int is_hex64(const char *s) {
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Stream through tokens, mask and labels in BLOCK pieces checking ranges. */
static int validate_values(et_ds *ds, et_err *e) {
    size_t bn = (size_t)(ds->n_tokens < BLOCK ? (ds->n_tokens > 0 ? ds->n_tokens : 1) : BLOCK);
    int32_t *buf = malloc(bn * sizeof(int32_t));
    if (!buf) return et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
    int rc = 0;
    for (int64_t s = 0; !rc && s < ds->n_tokens; s += BLOCK) {
        int64_t k = ds->n_tokens - s < BLOCK ? ds->n_tokens - s : BLOCK;
        if ((rc = et_ds_read_tokens(ds, s, k, buf, e))) break;
        for (int64_t i = 0; i < k; i++)
            if (buf[i] < 0 || buf[i] >= ds->n_vocab) {
                rc = et_fail(e, ET_EINPUT, "%s: /tokens[%" PRId64 "] = %d is outside [0, n_vocab %" PRId64 ")",
                             ds->path, s + i, (int)buf[i], ds->n_vocab);
                break;
            }
    }
    for (int64_t s = 0; !rc && ds->has_mask && s < ds->n_tokens; s += BLOCK) {
        int64_t k = ds->n_tokens - s < BLOCK ? ds->n_tokens - s : BLOCK;
        uint8_t *m = (uint8_t *)buf;
        if ((rc = et_ds_read_mask(ds, s, k, m, e))) break;
        for (int64_t i = 0; i < k; i++)
            if (m[i] > 1) {
                rc = et_fail(e, ET_EINPUT, "%s: /loss_mask[%" PRId64 "] = %d, expected 0 or 1", ds->path, s + i, m[i]);
                break;
            }
    }
    for (int64_t s = 0; !rc && ds->n_labels > 0 && s < ds->n_docs; s += BLOCK) {
        int64_t k = ds->n_docs - s < BLOCK ? ds->n_docs - s : BLOCK;
        if (read_1d(ds->h5->labels, H5T_NATIVE_INT32, s, k, buf) < 0) {
            rc = et_fail(e, ET_ERUN, "%s: cannot read /labels", ds->path);
            break;
        }
        for (int64_t i = 0; i < k; i++)
            if (buf[i] < 0 || buf[i] >= ds->n_labels) {
                rc = et_fail(e, ET_EINPUT, "%s: /labels[%" PRId64 "] = %d is outside [0, %d)", ds->path, s + i,
                             (int)buf[i], ds->n_labels);
                break;
            }
    }
    free(buf);
    return rc;
}

/* Labels: names from /labels attribute label_names if present, else the
 * count is max(label)+1. */
static int open_labels(et_ds *ds, et_err *e) {
    int64_t n;
    int rc = open_int_1d(ds, "labels", 0, &ds->h5->labels, &n, e);
    if (rc || ds->h5->labels < 0) return rc;
    if (n != ds->n_docs)
        return et_fail(e, ET_EINPUT, "%s: /labels has %" PRId64 " elements but there are %" PRId64 " documents",
                       ds->path, n, ds->n_docs);
    if (H5Aexists(ds->h5->labels, "label_names") > 0) {
        hid_t a = H5Aopen(ds->h5->labels, "label_names", H5P_DEFAULT);
        hid_t s = a >= 0 ? H5Aget_space(a) : -1;
        hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
        if (s >= 0) H5Sclose(s);
        if (a >= 0) H5Aclose(a);
        if (np < 1 || np > ET_DS_MAX_LABELS)
            return et_fail(e, ET_EINPUT, "%s: /labels attribute label_names has %lld names (1..%d allowed)", ds->path,
                           (long long)np, ET_DS_MAX_LABELS);
        if ((rc = read_attr_strs(ds, ds->h5->labels, "/labels:", "label_names", (hsize_t)np, &ds->label_names, e)))
            return rc;
        ds->n_labels = (int)np;
        return 0;
    }
    /* no names: the number of classes is max(label)+1 */
    int32_t mx = -1;
    int32_t *buf = malloc((size_t)(n < BLOCK ? (n ? n : 1) : BLOCK) * sizeof(int32_t));
    if (!buf) return et_fail(e, ET_ERUN, "%s: out of memory", ds->path);
    for (int64_t s = 0; s < n; s += BLOCK) {
        int64_t k = n - s < BLOCK ? n - s : BLOCK;
        if (read_1d(ds->h5->labels, H5T_NATIVE_INT32, s, k, buf) < 0) {
            free(buf);
            return et_fail(e, ET_ERUN, "%s: cannot read /labels", ds->path);
        }
        for (int64_t i = 0; i < k; i++) {
            if (buf[i] < 0 || buf[i] >= ET_DS_MAX_LABELS) {
                int32_t v = buf[i];
                free(buf);
                return et_fail(e, ET_EINPUT, "%s: /labels[%" PRId64 "] = %d is outside [0, %d)", ds->path, s + i,
                               (int)v, ET_DS_MAX_LABELS);
            }
            if (buf[i] > mx) mx = buf[i];
        }
    }
    free(buf);
    ds->n_labels = (int)mx + 1;
    if (ds->n_labels == 0) ds->n_labels = 1;
    return 0;
}

static int open_inner(et_ds *ds, et_err *e) {
    et_ds_h5 *h = ds->h5;
    /* HDF5 seeks: a FIFO is refused by stat() alone (opening it would wait for a writer) */
    int rc0 = et_need_regular(ds->path, "a tokens.h5 is read by seeking", e);
    if (rc0) return rc0;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    h->file = H5Fopen(ds->path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    if (h->file < 0) {
        if (access(ds->path, R_OK) != 0) return et_fail(e, ET_EINPUT, "%s: cannot open: %s", ds->path, strerror(errno));
        return et_fail(e, ET_EINPUT, "%s: not an HDF5 file (or damaged)", ds->path);
    }
    int rc;
    int64_t n_off;
    hid_t d_off;
    if ((rc = read_attr_i64(ds, h->file, "", "n_vocab", 1, 0, &ds->n_vocab, e)) ||
        (rc = read_attr_i64(ds, h->file, "", "bos_id", 0, -1, &ds->bos_id, e)) ||
        (rc = read_attr_i64(ds, h->file, "", "eos_id", 0, -1, &ds->eos_id, e)) ||
        (rc = read_attr_i64(ds, h->file, "", "packed_len", 0, 0, &ds->packed_len, e)))
        return rc;
    if (ds->n_vocab <= 0 || ds->n_vocab > INT32_MAX)
        return et_fail(e, ET_EINPUT, "%s: attribute n_vocab = %" PRId64 " is out of range", ds->path, ds->n_vocab);
    if (ds->bos_id < -1 || ds->bos_id >= ds->n_vocab || ds->eos_id < -1 || ds->eos_id >= ds->n_vocab)
        return et_fail(e, ET_EINPUT, "%s: attribute bos_id %" PRId64 " / eos_id %" PRId64 " outside [-1, n_vocab)",
                       ds->path, ds->bos_id, ds->eos_id);
    if ((rc = read_attr_str(ds, "source", &ds->source, e)) || (rc = read_attr_str(ds, "format", &ds->format, e)))
        return rc;
    char *sha;
    if ((rc = read_attr_str(ds, "tokenizer_sha256", &sha, e))) return rc;
    int ok = sha[0] == 0 || is_hex64(sha);
    if (ok) snprintf(ds->tokenizer_sha256, sizeof ds->tokenizer_sha256, "%s", sha);
    free(sha);
    if (!ok) return et_fail(e, ET_EINPUT, "%s: attribute tokenizer_sha256 is not 64 lowercase hex digits", ds->path);

    if ((rc = open_int_1d(ds, "tokens", 1, &h->tokens, &ds->n_tokens, e))) return rc;
    if ((rc = open_int_1d(ds, "doc_offsets", 1, &d_off, &n_off, e))) return rc;
    ds->n_docs = n_off - 1;
    if (n_off < 1 || ds->n_docs > ET_DS_MAX_DOCS || ds->n_docs > ds->n_tokens) {
        H5Dclose(d_off);
        if (n_off < 1) return et_fail(e, ET_EINPUT, "%s: /doc_offsets is empty (needs D+1 >= 1 elements)", ds->path);
        return et_fail(e, ET_EINPUT, "%s: /doc_offsets has %" PRId64 " elements: more documents than the %" PRId64
                       " tokens", ds->path, n_off, ds->n_tokens);
    }
    ds->doc_offsets = malloc((size_t)n_off * sizeof(int64_t));
    if (!ds->doc_offsets) { H5Dclose(d_off); return et_fail(e, ET_ERUN, "%s: out of memory", ds->path); }
    int rd = read_1d(d_off, H5T_NATIVE_INT64, 0, n_off, ds->doc_offsets);
    H5Dclose(d_off);
    if (rd < 0) return et_fail(e, ET_EINPUT, "%s: cannot read /doc_offsets", ds->path);
    if (ds->doc_offsets[0] != 0)
        return et_fail(e, ET_EINPUT, "%s: /doc_offsets[0] = %" PRId64 ", expected 0", ds->path, ds->doc_offsets[0]);
    for (int64_t i = 1; i < n_off; i++)
        if (ds->doc_offsets[i] <= ds->doc_offsets[i - 1])
            return et_fail(e, ET_EINPUT, "%s: /doc_offsets[%" PRId64 "] = %" PRId64 " is not above /doc_offsets[%" PRId64
                           "] = %" PRId64 " (offsets must increase; documents are not empty)", ds->path, i,
                           ds->doc_offsets[i], i - 1, ds->doc_offsets[i - 1]);
    if (ds->doc_offsets[ds->n_docs] != ds->n_tokens)
        return et_fail(e, ET_EINPUT, "%s: /doc_offsets ends at %" PRId64 " but /tokens has %" PRId64 " elements",
                       ds->path, ds->doc_offsets[ds->n_docs], ds->n_tokens);
    if ((rc = read_attr_i64(ds, h->file, "", "n_train_docs", 0, ds->n_docs, &ds->n_train_docs, e))) return rc;
    if (ds->n_train_docs < 0 || ds->n_train_docs > ds->n_docs)
        return et_fail(e, ET_EINPUT, "%s: attribute n_train_docs = %" PRId64 " outside [0, %" PRId64 "]", ds->path,
                       ds->n_train_docs, ds->n_docs);
    if (ds->packed_len < 0) return et_fail(e, ET_EINPUT, "%s: attribute packed_len is negative", ds->path);
    for (int64_t i = 0; ds->packed_len > 0 && i < ds->n_docs; i++)
        if (ds->doc_offsets[i + 1] - ds->doc_offsets[i] != ds->packed_len)
            return et_fail(e, ET_EINPUT, "%s: packed_len = %" PRId64 " but document %" PRId64 " has %" PRId64 " tokens",
                           ds->path, ds->packed_len, i, ds->doc_offsets[i + 1] - ds->doc_offsets[i]);
    int64_t n_mask;
    if ((rc = open_int_1d(ds, "loss_mask", 0, &h->mask, &n_mask, e))) return rc;
    ds->has_mask = h->mask >= 0;
    if (ds->has_mask && n_mask != ds->n_tokens)
        return et_fail(e, ET_EINPUT, "%s: /loss_mask has %" PRId64 " elements but /tokens has %" PRId64, ds->path,
                       n_mask, ds->n_tokens);
    if ((rc = open_labels(ds, e))) return rc;
    ds->has_teacher = H5Lexists(h->file, "teacher", H5P_DEFAULT) > 0;
    return validate_values(ds, e);
}

int et_ds_open(et_ds **out, const char *path, et_err *e) {
    *out = NULL;
    quiet_hdf5();
    et_ds *ds = calloc(1, sizeof *ds);
    et_ds_h5 *h = calloc(1, sizeof *h);
    char *p = strdup(path);
    if (!ds || !h || !p) {
        free(ds); free(h); free(p);
        return et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    h->file = h->tokens = h->mask = h->labels = -1;
    ds->h5 = h;
    ds->path = p;
    int rc = open_inner(ds, e);
    if (rc) {
        et_ds_close(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

void et_ds_close(et_ds *ds) {
    if (!ds) return;
    if (ds->h5) {
        close_id(&ds->h5->tokens, H5Dclose);
        close_id(&ds->h5->mask, H5Dclose);
        close_id(&ds->h5->labels, H5Dclose);
        close_id(&ds->h5->file, H5Fclose);
        free(ds->h5);
    }
    if (ds->label_names)
        for (int i = 0; i < ds->n_labels; i++) free(ds->label_names[i]);
    free(ds->label_names);
    free(ds->doc_offsets);
    free(ds->source);
    free(ds->format);
    free(ds->path);
    free(ds);
}

static int check_range(const et_ds *ds, const char *what, int64_t start, int64_t count, int64_t n, et_err *e) {
    if (start < 0 || count < 0 || start > n || count > n - start)
        return et_fail(e, ET_EUSAGE, "%s: %s range [%" PRId64 ", +%" PRId64 ") outside [0, %" PRId64 ")", ds->path, what,
                       start, count, n);
    return 0;
}

int et_ds_read_tokens(const et_ds *ds, int64_t start, int64_t count, int32_t *out, et_err *e) {
    if (check_range(ds, "/tokens", start, count, ds->n_tokens, e)) return ET_EUSAGE;
    if (read_1d(ds->h5->tokens, H5T_NATIVE_INT32, start, count, out) < 0)
        return et_fail(e, ET_ERUN, "%s: cannot read /tokens[%" PRId64 ", +%" PRId64 ")", ds->path, start, count);
    return 0;
}

int et_ds_read_mask(const et_ds *ds, int64_t start, int64_t count, uint8_t *out, et_err *e) {
    if (check_range(ds, "/loss_mask", start, count, ds->n_tokens, e)) return ET_EUSAGE;
    if (!ds->has_mask) {
        memset(out, 1, (size_t)count);
        return 0;
    }
    if (read_1d(ds->h5->mask, H5T_NATIVE_UINT8, start, count, out) < 0)
        return et_fail(e, ET_ERUN, "%s: cannot read /loss_mask[%" PRId64 ", +%" PRId64 ")", ds->path, start, count);
    return 0;
}

int et_ds_read_labels(const et_ds *ds, int64_t start, int64_t count, int32_t *out, et_err *e) {
    if (ds->n_labels == 0) return et_fail(e, ET_EUSAGE, "%s: has no /labels", ds->path);
    if (check_range(ds, "/labels", start, count, ds->n_docs, e)) return ET_EUSAGE;
    if (read_1d(ds->h5->labels, H5T_NATIVE_INT32, start, count, out) < 0)
        return et_fail(e, ET_ERUN, "%s: cannot read /labels", ds->path);
    return 0;
}

void et_ds_split_docs(const et_ds *ds, int split, int64_t *begin, int64_t *end) {
    if (split == ET_SPLIT_VALID) {
        *begin = ds->n_train_docs;
        *end = ds->n_docs;
    } else {
        *begin = 0;
        *end = ds->n_train_docs;
    }
}
