/* datasets/teacher.c — the /teacher group of a tokens.h5.  See teacher.h. */
#include "teacher.h"

#include <hdf5.h>

#include "h5file.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

/* IEEE 754 binary16, little-endian: what h5py writes for numpy.float16. */
static hid_t f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0 ||
        H5Tset_precision(t, 16) < 0 || H5Tset_offset(t, 0) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

struct et_teacher_writer {
    hid_t file, grp, d_ids, d_lp, d_tgt, d_sc, f16, d_cnt;
    int64_t n, k;
    et_teacher_meta m;
    char *path;
};

/* Close every object and the file; -1 when a write failed (now or before). */
static int wclose(et_teacher_writer *w) {
    if (w->d_ids >= 0) H5Dclose(w->d_ids);
    if (w->d_lp >= 0) H5Dclose(w->d_lp);
    if (w->d_tgt >= 0) H5Dclose(w->d_tgt);
    if (w->d_sc >= 0) H5Dclose(w->d_sc);
    if (w->d_cnt >= 0) H5Dclose(w->d_cnt);
    if (w->f16 >= 0) H5Tclose(w->f16);
    if (w->grp >= 0) H5Gclose(w->grp);
    int rc = w->file >= 0 ? et_h5_close(w->file) : 0;
    free(w->path);
    free(w);
    return rc;
}

static hid_t create_nd(hid_t g, const char *name, hid_t type, int rank, int64_t n, int64_t k) {
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)k};
    hsize_t rows = n < 4096 ? (hsize_t)(n > 0 ? n : 1) : 4096;
    hsize_t chunk[2] = {rows, (hsize_t)k};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (sp >= 0 && pl >= 0 && (n == 0 || H5Pset_chunk(pl, rank, chunk) >= 0))
        d = H5Dcreate2(g, name, type, sp, H5P_DEFAULT, n ? pl : H5P_DEFAULT, H5P_DEFAULT);
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    return d;
}

int et_teacher_writer_open(et_teacher_writer **out, const char *path, int64_t n_rows, const et_teacher_meta *m,
                           et_err *e) {
    *out = NULL;
    if (m->k < 1 || m->k > ET_TEACHER_MAX_K || m->k > m->n_vocab || n_rows < 0)
        return et_fail(e, ET_EUSAGE, "%s: k = %d must be in [1, min(n_vocab %lld, %d)]", path, m->k,
                       (long long)m->n_vocab, ET_TEACHER_MAX_K);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    et_teacher_writer *w = calloc(1, sizeof *w);
    if (!w) return et_fail(e, ET_ERUN, "out of memory");
    w->file = w->grp = w->d_ids = w->d_lp = w->d_tgt = w->d_sc = w->f16 = w->d_cnt = -1;
    w->n = n_rows;
    w->k = m->k;
    w->m = *m;
    w->path = strdup(path);
    hid_t fapl = et_h5_fapl();
    w->file = H5Fopen(path, H5F_ACC_RDWR, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->file >= 0) w->grp = H5Gcreate2(w->file, "teacher", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    w->f16 = f16_type();
    if (w->grp >= 0 && w->f16 >= 0) {
        w->d_ids = create_nd(w->grp, "topk_ids", H5T_STD_I32LE, 2, n_rows, m->k);
        w->d_lp = create_nd(w->grp, "topk_logprobs", w->f16, 2, n_rows, m->k);
        w->d_tgt = create_nd(w->grp, "target_logprob", H5T_IEEE_F32LE, 1, n_rows, 1);
        w->d_sc = create_nd(w->grp, "scored", H5T_STD_U8LE, 1, n_rows, 1);
        if (!strcmp(m->mode, "sample")) w->d_cnt = create_nd(w->grp, "sample_counts", H5T_STD_U16LE, 2, n_rows, m->k);
    }
    if (!w->path || w->d_ids < 0 || w->d_lp < 0 || w->d_tgt < 0 || w->d_sc < 0 ||
        (!strcmp(m->mode, "sample") && w->d_cnt < 0)) {
        wclose(w);
        return et_fail(e, ET_ERUN, "%s: cannot create the /teacher datasets", path);
    }
    *out = w;
    return 0;
}

static int write_rows(hid_t d, hid_t memtype, int rank, int64_t start, int64_t count, int64_t k, const void *buf) {
    hsize_t st[2] = {(hsize_t)start, 0}, cn[2] = {(hsize_t)count, (hsize_t)k};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, cn, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cn, NULL) >= 0 &&
        H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

int et_teacher_writer_rows(et_teacher_writer *w, int64_t start, int64_t count, const int32_t *ids,
                           const uint16_t *logprobs, const float *target, const uint8_t *scored, et_err *e) {
    if (count == 0) return 0;
    if (start < 0 || count < 0 || start + count > w->n)
        return et_fail(e, ET_EUSAGE, "%s: rows [%lld, +%lld) outside [0, %lld)", w->path, (long long)start,
                       (long long)count, (long long)w->n);
    if (write_rows(w->d_ids, H5T_NATIVE_INT32, 2, start, count, w->k, ids) ||
        write_rows(w->d_lp, w->f16, 2, start, count, w->k, logprobs) ||
        write_rows(w->d_tgt, H5T_NATIVE_FLOAT, 1, start, count, 1, target) ||
        write_rows(w->d_sc, H5T_NATIVE_UINT8, 1, start, count, 1, scored))
        return et_fail(e, ET_ERUN, "%s: writing /teacher rows %lld.. failed (disk full?)", w->path, (long long)start);
    return 0;
}

int et_teacher_writer_counts(et_teacher_writer *w, int64_t start, int64_t count, const uint16_t *counts, et_err *e) {
    if (count == 0) return 0;
    if (w->d_cnt < 0) return et_fail(e, ET_EUSAGE, "%s: counts are only written in sample mode", w->path);
    if (start < 0 || count < 0 || start + count > w->n)
        return et_fail(e, ET_EUSAGE, "%s: rows [%lld, +%lld) outside [0, %lld)", w->path, (long long)start,
                       (long long)count, (long long)w->n);
    if (write_rows(w->d_cnt, H5T_NATIVE_UINT16, 2, start, count, w->k, counts))
        return et_fail(e, ET_ERUN, "%s: writing /teacher/sample_counts rows %lld.. failed (disk full?)", w->path,
                       (long long)start);
    return 0;
}

static int attr_str(hid_t loc, const char *name, const char *v) {
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0) return -1;
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(loc, name, st, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = (a >= 0 && H5Awrite(a, st, &v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    H5Tclose(st);
    return rc;
}

static int attr_num(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = (a >= 0 && H5Awrite(a, mtype, v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

int et_teacher_writer_close(et_teacher_writer *w, et_err *e) {
    const et_teacher_meta *m = &w->m;
    int64_t k = m->k, nv = m->n_vocab, nc = m->n_ctx;
    int bad = attr_str(w->grp, "teacher", m->teacher) || attr_str(w->grp, "teacher_sha256", m->teacher_sha256) ||
              attr_num(w->grp, "temperature", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &m->temperature) ||
              attr_num(w->grp, "k", H5T_STD_I64LE, H5T_NATIVE_INT64, &k) || attr_str(w->grp, "mode", m->mode) ||
              attr_str(w->grp, "tokenizer_sha256", m->tokenizer_sha256) ||
              attr_str(w->grp, "data_sha256", m->data_sha256) ||
              attr_num(w->grp, "n_vocab", H5T_STD_I64LE, H5T_NATIVE_INT64, &nv) ||
              attr_num(w->grp, "n_ctx", H5T_STD_I64LE, H5T_NATIVE_INT64, &nc) || attr_str(w->grp, "scoring", m->scoring) ||
              (w->d_cnt >= 0 && attr_num(w->grp, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &m->seed));
    char *path = w->path;
    w->path = NULL;
    bad |= wclose(w) != 0;
    int rc = bad ? et_fail(e, ET_ERUN, "%s: writing the /teacher rows or attributes failed (disk full?)", path) : 0;
    free(path);
    return rc;
}

/* ------------------------------------------------------------------ reader */

struct et_teacher {
    hid_t file, d_ids, d_lp, d_tgt, d_sc, d_cnt;
    hid_t lp_half;          /* the log-probs' IEEE half type (read raw, converted here: HDF5's soft
                               float16 conversion is slow), or -1 */
    int64_t n, k, n_vocab;
    char *path;
};

void et_teacher_close(et_teacher *t) {
    if (!t) return;
    if (t->d_ids >= 0) H5Dclose(t->d_ids);
    if (t->d_lp >= 0) H5Dclose(t->d_lp);
    if (t->d_tgt >= 0) H5Dclose(t->d_tgt);
    if (t->d_sc >= 0) H5Dclose(t->d_sc);
    if (t->d_cnt >= 0) H5Dclose(t->d_cnt);
    if (t->lp_half >= 0) H5Tclose(t->lp_half);
    if (t->file >= 0) H5Fclose(t->file);
    free(t->path);
    free(t);
}

/* Dimensions of dataset d: rank and dims[2]. */
static int dims_of(hid_t d, int *rank, hsize_t dims[2]) {
    hid_t sp = H5Dget_space(d);
    if (sp < 0) return -1;
    int r = H5Sget_simple_extent_ndims(sp);
    int ok = r >= 1 && r <= 2 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0;
    H5Sclose(sp);
    *rank = r;
    return ok ? 0 : -1;
}

static int read_attr_s(hid_t loc, const char *name, char *out, size_t cap) {
    out[0] = 0;
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = -1;
    if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(ft) > 0) {
            H5Tset_size(mt, H5T_VARIABLE);
            char *v = NULL;
            if (H5Aread(a, mt, &v) >= 0 && v) {
                snprintf(out, cap, "%s", v);
                H5free_memory(v);
                rc = 0;
            }
        } else {
            size_t n = H5Tget_size(ft);
            char *buf = n < (1u << 20) ? calloc(n + 1, 1) : NULL;
            H5Tset_size(mt, n + 1);
            if (buf && H5Aread(a, mt, buf) >= 0) {
                snprintf(out, cap, "%s", buf);
                rc = 0;
            }
            free(buf);
        }
        H5Tclose(mt);
    }
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    return rc;
}

static int read_attr_d(hid_t loc, const char *name, double *out) {
    if (H5Aexists(loc, name) <= 0) return 1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = -1;
    if (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0) rc = 0;
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return rc;
}

int et_teacher_open(et_teacher **out, const char *path, et_teacher_meta *meta, et_err *e) {
    *out = NULL;
    et_ds *ds = NULL;
    int rc = et_ds_open(&ds, path, e); /* validates /tokens and friends */
    if (rc) return rc;
    int64_t n_tokens = ds->n_tokens, n_vocab = ds->n_vocab;
    char tok_sha[65];
    snprintf(tok_sha, sizeof tok_sha, "%s", ds->tokenizer_sha256);
    et_ds_close(ds);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    et_teacher *t = calloc(1, sizeof *t);
    if (!t) return et_fail(e, ET_ERUN, "out of memory");
    t->file = t->d_ids = t->d_lp = t->d_tgt = t->d_sc = t->d_cnt = t->lp_half = -1;
    t->path = strdup(path);
    t->n_vocab = n_vocab;
    /* the same close degree as et_ds_open, so both may hold the file at once */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    t->file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    hid_t g = t->file >= 0 && H5Lexists(t->file, "teacher", H5P_DEFAULT) > 0 ? H5Gopen2(t->file, "teacher", H5P_DEFAULT) : -1;
    if (g < 0) {
        et_teacher_close(t);
        return et_fail(e, ET_EINPUT, "%s: no /teacher group (make one with `edgetune logits`)", path);
    }
    static const char *names[4] = {"topk_ids", "topk_logprobs", "target_logprob", "scored"};
    hid_t *ds4[4] = {&t->d_ids, &t->d_lp, &t->d_tgt, &t->d_sc};
    for (int i = 0; i < 4 && !rc; i++) {
        if (H5Lexists(g, names[i], H5P_DEFAULT) <= 0 || (*ds4[i] = H5Dopen2(g, names[i], H5P_DEFAULT)) < 0) {
            rc = et_fail(e, ET_EINPUT, "%s: /teacher/%s is missing", path, names[i]);
            break;
        }
        int rank;
        hsize_t d[2] = {0, 0};
        int want = i < 2 ? 2 : 1;
        if (dims_of(*ds4[i], &rank, d) || rank != want || (int64_t)d[0] != n_tokens)
            rc = et_fail(e, ET_EINPUT, "%s: /teacher/%s must have %s %lld rows (one per token)", path, names[i],
                         want == 2 ? "shape [N, k] with N =" : "", (long long)n_tokens);
        else if (i == 0) t->k = (int64_t)d[1];
        else if (i == 1 && (int64_t)d[1] != t->k)
            rc = et_fail(e, ET_EINPUT, "%s: /teacher/topk_logprobs has k = %llu but topk_ids has %lld", path,
                         (unsigned long long)d[1], (long long)t->k);
        hid_t ty = rc ? -1 : H5Dget_type(*ds4[i]);
        if (ty >= 0) {
            H5T_class_t cl = H5Tget_class(ty);
            if ((i == 1 || i == 2) && cl != H5T_FLOAT)
                rc = et_fail(e, ET_EINPUT, "%s: /teacher/%s is not a float dataset", path, names[i]);
            if ((i == 0 || i == 3) && cl != H5T_INTEGER)
                rc = et_fail(e, ET_EINPUT, "%s: /teacher/%s is not an integer dataset", path, names[i]);
            H5Tclose(ty);
        }
    }
    t->n = n_tokens;
    if (!rc && (t->k < 1 || t->k > n_vocab || t->k > ET_TEACHER_MAX_K))
        rc = et_fail(e, ET_EINPUT, "%s: /teacher k = %lld is outside [1, n_vocab %lld]", path, (long long)t->k,
                     (long long)n_vocab);
    if (!rc) { /* IEEE half little-endian log-probs (what the writer makes): read raw */
        hid_t ty = H5Dget_type(t->d_lp);
        size_t spos, epos, esize, mpos, msize;
        if (ty >= 0 && H5Tget_class(ty) == H5T_FLOAT && H5Tget_size(ty) == 2 && H5Tget_order(ty) == H5T_ORDER_LE &&
            H5Tget_fields(ty, &spos, &epos, &esize, &mpos, &msize) >= 0 && spos == 15 && epos == 10 && esize == 5 &&
            mpos == 0 && msize == 10 && H5Tget_ebias(ty) == 15)
            t->lp_half = ty;
        else if (ty >= 0)
            H5Tclose(ty);
    }
    /* sample mode: counts beside the ids */
    char mode[16] = "";
    read_attr_s(g, "mode", mode, sizeof mode);
    if (!rc && !strcmp(mode, "sample")) {
        int rank;
        hsize_t d[2] = {0, 0};
        hid_t ty = -1;
        if (H5Lexists(g, "sample_counts", H5P_DEFAULT) <= 0 || (t->d_cnt = H5Dopen2(g, "sample_counts", H5P_DEFAULT)) < 0)
            rc = et_fail(e, ET_EINPUT, "%s: mode 'sample' but /teacher/sample_counts is missing", path);
        else if (dims_of(t->d_cnt, &rank, d) || rank != 2 || (int64_t)d[0] != n_tokens || (int64_t)d[1] != t->k)
            rc = et_fail(e, ET_EINPUT, "%s: /teacher/sample_counts must have the shape of topk_ids [%lld, %lld]", path,
                         (long long)n_tokens, (long long)t->k);
        else if ((ty = H5Dget_type(t->d_cnt)) < 0 || H5Tget_class(ty) != H5T_INTEGER)
            rc = et_fail(e, ET_EINPUT, "%s: /teacher/sample_counts is not an integer dataset", path);
        if (ty >= 0) H5Tclose(ty);
    }
    if (!rc && meta) {
        memset(meta, 0, sizeof *meta);
        double v;
        read_attr_s(g, "teacher", meta->teacher, sizeof meta->teacher);
        read_attr_s(g, "teacher_sha256", meta->teacher_sha256, sizeof meta->teacher_sha256);
        read_attr_s(g, "mode", meta->mode, sizeof meta->mode);
        read_attr_s(g, "tokenizer_sha256", meta->tokenizer_sha256, sizeof meta->tokenizer_sha256);
        if (!meta->tokenizer_sha256[0]) snprintf(meta->tokenizer_sha256, sizeof meta->tokenizer_sha256, "%s", tok_sha);
        read_attr_s(g, "data_sha256", meta->data_sha256, sizeof meta->data_sha256);
        read_attr_s(g, "scoring", meta->scoring, sizeof meta->scoring);
        meta->temperature = read_attr_d(g, "temperature", &v) == 0 ? v : 1.0;
        meta->n_ctx = read_attr_d(g, "n_ctx", &v) == 0 && v >= 0 && v < 1e9 ? (int)v : 0;
        meta->k = (int)t->k;
        meta->n_vocab = n_vocab;
        if (!(meta->temperature > 0) || !isfinite(meta->temperature))
            rc = et_fail(e, ET_EINPUT, "%s: /teacher temperature must be a positive number", path);
        if (!meta->mode[0]) snprintf(meta->mode, sizeof meta->mode, "topk");
        if (!rc && strcmp(meta->mode, "topk") && strcmp(meta->mode, "sample"))
            rc = et_fail(e, ET_EINPUT, "%s: /teacher mode '%s' is not topk or sample", path, meta->mode);
        if (!strcmp(meta->mode, "sample") && read_attr_d(g, "seed", &v) == 0) meta->seed = (uint64_t)v;
    }
    H5Gclose(g);
    if (rc) {
        et_teacher_close(t);
        return rc;
    }
    *out = t;
    return 0;
}

int et_teacher_read(const et_teacher *t, int64_t start, int64_t count, int32_t *ids, float *logprobs, float *target,
                    uint8_t *scored, et_err *e) {
    if (start < 0 || count < 0 || start > t->n || count > t->n - start)
        return et_fail(e, ET_EUSAGE, "%s: rows [%lld, +%lld) outside [0, %lld)", t->path, (long long)start,
                       (long long)count, (long long)t->n);
    if (count == 0) return 0;
    hsize_t st[2] = {(hsize_t)start, 0}, cn[2] = {(hsize_t)count, (hsize_t)t->k};
    struct { hid_t d; hid_t mt; int rank; void *buf; } r[4] = {
        {t->d_ids, H5T_NATIVE_INT32, 2, ids}, {t->d_lp, t->lp_half >= 0 ? t->lp_half : H5T_NATIVE_FLOAT, 2, logprobs},
        {t->d_tgt, H5T_NATIVE_FLOAT, 1, target}, {t->d_sc, H5T_NATIVE_UINT8, 1, scored}};
    for (int i = 0; i < 4; i++) {
        if (!r[i].buf) continue;
        hid_t fs = H5Dget_space(r[i].d), ms = H5Screate_simple(r[i].rank, cn, NULL);
        int ok = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cn, NULL) >= 0 &&
                 H5Dread(r[i].d, r[i].mt, ms, fs, H5P_DEFAULT, r[i].buf) >= 0;
        if (ms >= 0) H5Sclose(ms);
        if (fs >= 0) H5Sclose(fs);
        if (!ok) return et_fail(e, ET_ERUN, "%s: reading /teacher rows %lld.. failed", t->path, (long long)start);
    }
    size_t nk = (size_t)count * (size_t)t->k;
    if (logprobs && t->lp_half >= 0) { /* nk halves at the start of the float buffer: widen from the end */
        const uint16_t *h = (const uint16_t *)logprobs;
        for (size_t i = nk; i-- > 0;) logprobs[i] = et_fp16_to_fp32(h[i]);
    }
    for (size_t i = 0; ids && i < nk; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return et_fail(e, ET_EINPUT, "%s: /teacher/topk_ids[%lld][%lld] = %d is outside [0, %lld)", t->path,
                           (long long)(start + (int64_t)(i / (size_t)t->k)), (long long)(i % (size_t)t->k), ids[i],
                           (long long)t->n_vocab);
    for (size_t i = 0; logprobs && i < nk; i++)
        if (isnan(logprobs[i]) || logprobs[i] > 1e-3f)
            return et_fail(e, ET_EINPUT, "%s: /teacher/topk_logprobs[%lld][%lld] = %g is not a log-probability", t->path,
                           (long long)(start + (int64_t)(i / (size_t)t->k)), (long long)(i % (size_t)t->k),
                           (double)logprobs[i]);
    for (int64_t i = 0; target && i < count; i++)
        if (isnan(target[i]) || target[i] > 1e-3f)
            return et_fail(e, ET_EINPUT, "%s: /teacher/target_logprob[%lld] = %g is not a log-probability", t->path,
                           (long long)(start + i), (double)target[i]);
    return 0;
}

int et_teacher_read_weights(const et_teacher *t, int64_t start, int64_t count, float *weights, et_err *e) {
    if (t->d_cnt < 0) return et_fail(e, ET_EUSAGE, "%s: not a sampled teacher file (mode topk)", t->path);
    if (start < 0 || count < 0 || start > t->n || count > t->n - start)
        return et_fail(e, ET_EUSAGE, "%s: rows [%lld, +%lld) outside [0, %lld)", t->path, (long long)start,
                       (long long)count, (long long)t->n);
    if (count == 0) return 0;
    size_t nk = (size_t)count * (size_t)t->k;
    uint16_t *c = malloc(sizeof *c * nk);
    if (!c) return et_fail(e, ET_ERUN, "out of memory");
    hsize_t st[2] = {(hsize_t)start, 0}, cn[2] = {(hsize_t)count, (hsize_t)t->k};
    hid_t fs = H5Dget_space(t->d_cnt), ms = H5Screate_simple(2, cn, NULL);
    int ok = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cn, NULL) >= 0 &&
             H5Dread(t->d_cnt, H5T_NATIVE_UINT16, ms, fs, H5P_DEFAULT, c) >= 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    int rc = ok ? 0 : et_fail(e, ET_ERUN, "%s: reading /teacher/sample_counts rows %lld.. failed", t->path, (long long)start);
    for (int64_t r = 0; !rc && r < count; r++) {
        int64_t sum = 0;
        for (int64_t j = 0; j < t->k; j++) sum += c[r * t->k + j];
        if (sum != 0 && sum != t->k)
            rc = et_fail(e, ET_EINPUT, "%s: /teacher/sample_counts row %lld adds up to %lld draws, not k = %lld", t->path,
                         (long long)(start + r), (long long)sum, (long long)t->k);
        for (int64_t j = 0; !rc && j < t->k; j++) weights[r * t->k + j] = (float)c[r * t->k + j] / (float)t->k;
    }
    free(c);
    return rc;
}
