/* train/checkpoint.c — HDF5 run state. See checkpoint.h. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "../datasets/h5file.h"
#include "checkpoint.h"

#define CKPT_FORMAT "edgetune-checkpoint"
#define CKPT_VERSION 1
#define CKPT_CHUNK ((size_t)1 << 20) /* floats per chunk (4 MiB) */
#define NAME_LEN 64

/* The library never prints: silence HDF5's automatic error stack printing
 * for the duration of one call and restore the caller's setting after. */
typedef struct quiet { H5E_auto2_t func; void *data; } quiet;
static void quiet_on(quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void quiet_off(const quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

/* ------------------------------------------------------------------ write */

static int write_attr(hid_t obj, const char *name, hid_t type, hid_t mem, const void *v, hsize_t n) {
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mem, v) >= 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return ok ? 0 : -1;
}

static int write_attr_str(hid_t obj, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    size_t len = strlen(s);
    int rc = t >= 0 && H5Tset_size(t, len ? len : 1) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0
                 ? write_attr(obj, name, t, t, len ? s : "", 0)
                 : -1;
    if (t >= 0) H5Tclose(t);
    return rc;
}

/* A 1-D or 2-D dataset; chunked with Fletcher-32 when `checksum`. */
static int write_ds(hid_t f, const char *name, hid_t ftype, hid_t mtype, const void *x, int rank,
                    const hsize_t *dims, int checksum) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = sp >= 0 && dcpl >= 0;
    if (ok && checksum) {
        hsize_t chunk[2] = {dims[0] < CKPT_CHUNK ? dims[0] : CKPT_CHUNK, rank > 1 ? dims[1] : 1};
        ok = H5Pset_chunk(dcpl, rank, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0;
    }
    hid_t d = ok ? H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = d >= 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0;
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return ok ? 0 : -1;
}

static int write_table(hid_t f, const et_param_block *b) {
    size_t k = (size_t)b->n_t;
    char (*names)[NAME_LEN] = calloc(k, NAME_LEN);
    int64_t *off = malloc(k * sizeof *off), *ne = malloc(2 * k * sizeof *ne);
    int rc = -1;
    hid_t st = H5Tcopy(H5T_C_S1);
    hid_t g = H5Gcreate2(f, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!names || !off || !ne || st < 0 || g < 0) goto done;
    if (H5Tset_size(st, NAME_LEN) < 0 || H5Tset_strpad(st, H5T_STR_NULLTERM) < 0) goto done;
    for (size_t i = 0; i < k; i++) {
        snprintf(names[i], NAME_LEN, "%s", b->t[i].name);
        off[i] = (int64_t)(b->t[i].data - b->data);
        ne[2 * i] = b->t[i].ne[0];
        ne[2 * i + 1] = b->t[i].n_dims > 1 ? b->t[i].ne[1] : 1;
    }
    hsize_t d1[1] = {k}, d2[2] = {k, 2};
    if (write_ds(g, "name", st, st, names, 1, d1, 0) || write_ds(g, "offset", H5T_STD_I64LE, H5T_NATIVE_INT64, off, 1, d1, 0) ||
        write_ds(g, "ne", H5T_STD_I64LE, H5T_NATIVE_INT64, ne, 2, d2, 0))
        goto done;
    rc = 0;
done:
    if (g >= 0) H5Gclose(g);
    if (st >= 0) H5Tclose(st);
    free(names);
    free(off);
    free(ne);
    return rc;
}

static int check_block(const char *path, const et_param_block *b, const et_adamw *o, et_err *e) {
    if (!b->data || b->n == 0) return et_fail(e, ET_EINPUT, "%s: empty parameter block", path);
    if (o->n != b->n)
        return et_fail(e, ET_EINPUT, "%s: optimizer holds %zu floats but the parameter block %zu", path, o->n, b->n);
    if (b->n_t <= 0) return et_fail(e, ET_EINPUT, "%s: parameter block has no tensor table", path);
    for (int i = 0; i < b->n_t; i++) {
        const et_named *t = &b->t[i];
        if (t->data < b->data || (size_t)(t->data - b->data) > b->n || t->n > b->n - (size_t)(t->data - b->data))
            return et_fail(e, ET_EINPUT, "%s: tensor %s lies outside the parameter block", path, t->name);
    }
    return 0;
}

int et_ckpt_save(const char *path, const et_param_block *b, const et_adamw *o, const et_ckpt *st, et_err *e) {
    int rc = check_block(path, b, o, e);
    if (rc) return rc;
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    quiet q;
    quiet_on(&q);
    hid_t fapl = et_h5_fapl();   /* a failed write cannot crash the process (datasets/h5file.h) */
    if (fapl >= 0) H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST);
    hid_t f = fapl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) {
        quiet_off(&q);
        rc = et_fail(e, ET_ERUN, "%s: cannot create temporary checkpoint %s", path, tmp);
        free(tmp);
        return rc;
    }
    hsize_t n = b->n;
    int32_t version = CKPT_VERSION;
    int64_t n_params = (int64_t)b->n;
    const float hp[4] = {o->hp.beta1, o->hp.beta2, o->hp.eps, o->hp.weight_decay};
    const char *hp_names[4] = {"adamw_beta1", "adamw_beta2", "adamw_eps", "adamw_weight_decay"};
    hsize_t nb = o->n_blk ? o->n_blk : 1;
    int bad = write_ds(f, "params", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, b->data, 1, &n, 1) ||
              write_attr_str(f, "adamw_state", et_adamw_state_name(o->state)) ||
              (o->state == ET_ADAMW_8BIT
                   ? write_ds(f, "adamw_m8", H5T_STD_U8LE, H5T_NATIVE_UINT8, o->m8, 1, &n, 1) ||
                         write_ds(f, "adamw_v8", H5T_STD_U8LE, H5T_NATIVE_UINT8, o->v8, 1, &n, 1) ||
                         write_ds(f, "adamw_m_absmax", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, o->m_absmax, 1, &nb, 1) ||
                         write_ds(f, "adamw_v_absmax", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, o->v_absmax, 1, &nb, 1)
                   : write_ds(f, "adamw_m", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, o->m, 1, &n, 1) ||
                         write_ds(f, "adamw_v", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, o->v, 1, &n, 1)) ||
              write_table(f, b) ||
              write_attr_str(f, "format", CKPT_FORMAT) ||
              write_attr(f, "version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version, 0) ||
              write_attr(f, "n_params", H5T_STD_I64LE, H5T_NATIVE_INT64, &n_params, 0) ||
              write_attr(f, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->step, 0) ||
              write_attr(f, "tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->tokens, 0) ||
              write_attr(f, "rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, st->rng, 4) ||
              write_attr_str(f, "config", st->config ? st->config : "");
    for (int i = 0; i < 4 && !bad; i++) bad = write_attr(f, hp_names[i], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &hp[i], 0);
    if (!bad && st->has_val_start)
        bad = write_attr(f, "val_loss_start", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &st->val_start, 0) ||
              write_attr(f, "val_loss_start_step", H5T_STD_I64LE, H5T_NATIVE_INT64, &st->val_start_step, 0);
    if (!bad && st->cursor_len) {
        hsize_t c = st->cursor_len;
        bad = write_ds(f, "data_cursor", H5T_STD_U8LE, H5T_NATIVE_UINT8, st->cursor, 1, &c, 0);
    }
    if (et_h5_close(f) < 0) bad = 1;
    quiet_off(&q);
    if (bad) {
        unlink(tmp);
        free(tmp);
        return et_fail(e, ET_ERUN, "%s: writing the checkpoint failed (disk full?); the previous file is untouched", path);
    }
    rc = et_commit_tmp(tmp, path, e);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------- read */

static int read_attr(hid_t obj, const char *name, H5T_class_t cls, hid_t mem, void *v, hssize_t n) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == cls && H5Sget_simple_extent_npoints(sp) == n &&
             H5Aread(a, mem, v) >= 0;
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return ok ? 0 : -1;
}

/* A string attribute (fixed or variable length) as a malloc'd C string. */
static char *read_attr_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    char *out = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            char *s = NULL;
            if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Aread(a, mt, &s) >= 0 && s) {
                out = strdup(s);
                H5free_memory(s);
            }
            if (mt >= 0) H5Tclose(mt);
        } else {
            size_t len = H5Tget_size(t);
            hid_t mt = H5Tcopy(t);
            out = len && len < ((size_t)1 << 30) ? calloc(len + 1, 1) : NULL;
            if (out && (mt < 0 || H5Aread(a, mt, out) < 0)) {
                free(out);
                out = NULL;
            }
            if (mt >= 0) H5Tclose(mt);
        }
    }
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return out;
}

/* Dimensions of dataset `name` (rank must be `rank`); 0 or -1. */
static int ds_dims(hid_t f, const char *name, int rank, hsize_t *dims) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == rank && H5Sget_simple_extent_dims(sp, dims, NULL) == rank;
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return ok ? 0 : -1;
}

static int read_ds(hid_t f, const char *name, hid_t mtype, void *x) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    int ok = d >= 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0;
    if (d >= 0) H5Dclose(d);
    return ok ? 0 : -1;
}

static hid_t open_ckpt(const char *path, et_err *e) {
    if (access(path, R_OK) != 0) {
        et_fail(e, ET_EINPUT, "%s: no such checkpoint (or not readable)", path);
        return -1;
    }
    if (et_need_regular(path, "a checkpoint is read by seeking", e)) return -1;   /* never opens a FIFO */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        et_fail(e, ET_EINPUT, "%s: not a readable HDF5 checkpoint (truncated or corrupt)", path);
        return -1;
    }
    char *fmt = read_attr_str(f, "format");
    int32_t version = 0;
    int ok = fmt && !strcmp(fmt, CKPT_FORMAT);
    free(fmt);
    if (!ok) {
        H5Fclose(f);
        et_fail(e, ET_EINPUT, "%s: not an edgetune checkpoint (attribute format != \"%s\")", path, CKPT_FORMAT);
        return -1;
    }
    if (read_attr(f, "version", H5T_INTEGER, H5T_NATIVE_INT32, &version, 1) || version != CKPT_VERSION) {
        H5Fclose(f);
        et_fail(e, ET_EINPUT, "%s: checkpoint version %d, this build reads %d", path, (int)version, CKPT_VERSION);
        return -1;
    }
    return f;
}

static int peek_open(hid_t f, const char *path, et_ckpt *st, et_err *e) {
    memset(st, 0, sizeof *st);
    if (read_attr(f, "step", H5T_INTEGER, H5T_NATIVE_INT64, &st->step, 1) || st->step < 0 ||
        read_attr(f, "tokens", H5T_INTEGER, H5T_NATIVE_INT64, &st->tokens, 1) || st->tokens < 0 ||
        read_attr(f, "rng", H5T_INTEGER, H5T_NATIVE_UINT64, st->rng, 4))
        return et_fail(e, ET_EINPUT, "%s: attribute step, tokens or rng missing or malformed", path);
    st->config = read_attr_str(f, "config");
    if (!st->config) return et_fail(e, ET_EINPUT, "%s: attribute config missing or not a string", path);
    if (H5Aexists(f, "val_loss_start") > 0 &&   /* optional: older files lack it */
        (read_attr(f, "val_loss_start", H5T_FLOAT, H5T_NATIVE_DOUBLE, &st->val_start, 1) ||
         read_attr(f, "val_loss_start_step", H5T_INTEGER, H5T_NATIVE_INT64, &st->val_start_step, 1) ||
         st->val_start_step < 0 || st->val_start_step > st->step))
        return et_fail(e, ET_EINPUT, "%s: attribute val_loss_start or val_loss_start_step malformed", path);
    st->has_val_start = H5Aexists(f, "val_loss_start") > 0;
    if (H5Lexists(f, "data_cursor", H5P_DEFAULT) > 0) {
        hsize_t c;
        if (ds_dims(f, "data_cursor", 1, &c) || c > ((hsize_t)1 << 24))
            return et_fail(e, ET_EINPUT, "%s: /data_cursor malformed", path);
        st->cursor = malloc(c ? (size_t)c : 1);
        if (!st->cursor) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        st->cursor_len = (size_t)c;
        if (c && read_ds(f, "data_cursor", H5T_NATIVE_UINT8, st->cursor))
            return et_fail(e, ET_EINPUT, "%s: /data_cursor unreadable", path);
    }
    return 0;
}

int et_ckpt_peek(const char *path, et_ckpt *st, et_err *e) {
    memset(st, 0, sizeof *st);
    quiet q;
    quiet_on(&q);
    hid_t f = open_ckpt(path, e);
    int rc = f < 0 ? ET_EINPUT : peek_open(f, path, st, e);
    if (f >= 0) H5Fclose(f);
    quiet_off(&q);
    if (rc) et_ckpt_free(st);
    return rc;
}

/* Compare the stored tensor table with b's; 0 or ET_EINPUT naming the first difference. */
static int check_table(hid_t f, const char *path, const et_param_block *b, et_err *e) {
    hsize_t k, d2[2];
    if (ds_dims(f, "tensors/name", 1, &k) || ds_dims(f, "tensors/offset", 1, d2) || d2[0] != k ||
        ds_dims(f, "tensors/ne", 2, d2) || d2[0] != k || d2[1] != 2)
        return et_fail(e, ET_EINPUT, "%s: tensor table /tensors missing or malformed", path);
    if (k != (hsize_t)b->n_t)
        return et_fail(e, ET_EINPUT, "%s: checkpoint has %llu tensors, the model %d", path, (unsigned long long)k, b->n_t);
    char (*names)[NAME_LEN] = calloc((size_t)k, NAME_LEN);
    int64_t *off = malloc((size_t)k * sizeof *off), *ne = malloc(2 * (size_t)k * sizeof *ne);
    hid_t st = H5Tcopy(H5T_C_S1);
    int rc = 0;
    if (!names || !off || !ne || st < 0 || H5Tset_size(st, NAME_LEN) < 0 || H5Tset_strpad(st, H5T_STR_NULLTERM) < 0) {
        rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
    } else if (read_ds(f, "tensors/name", st, names) || read_ds(f, "tensors/offset", H5T_NATIVE_INT64, off) ||
               read_ds(f, "tensors/ne", H5T_NATIVE_INT64, ne)) {
        rc = et_fail(e, ET_EINPUT, "%s: tensor table /tensors unreadable", path);
    } else {
        for (size_t i = 0; i < (size_t)k && !rc; i++) {
            const et_named *t = &b->t[i];
            names[i][NAME_LEN - 1] = 0;
            int64_t want_off = (int64_t)(t->data - b->data), want_rows = t->n_dims > 1 ? t->ne[1] : 1;
            if (strcmp(names[i], t->name))
                rc = et_fail(e, ET_EINPUT, "%s: tensor %zu is %s in the checkpoint but %s in the model", path, i,
                             names[i], t->name);
            else if (ne[2 * i] != t->ne[0] || ne[2 * i + 1] != want_rows)
                rc = et_fail(e, ET_EINPUT, "%s: tensor %s has shape [%lld, %lld] in the checkpoint, [%lld, %lld] in the model",
                             path, t->name, (long long)ne[2 * i + 1], (long long)ne[2 * i], (long long)want_rows,
                             (long long)t->ne[0]);
            else if (off[i] != want_off)
                rc = et_fail(e, ET_EINPUT, "%s: tensor %s at offset %lld in the checkpoint, %lld in the model", path,
                             t->name, (long long)off[i], (long long)want_off);
        }
    }
    if (st >= 0) H5Tclose(st);
    free(names);
    free(off);
    free(ne);
    return rc;
}

/* The optimizer must be the one the moments were made with: a resume with
 * another beta1/beta2/eps/weight_decay would mix two optimizers (issue 11).
 * Checkpoints written before these attributes existed are not checked. */
static int check_optimizer(hid_t f, const char *path, const et_adamw_hp *hp, et_err *e) {
    const float want[4] = {hp->beta1, hp->beta2, hp->eps, hp->weight_decay};
    const char *names[4] = {"adamw_beta1", "adamw_beta2", "adamw_eps", "adamw_weight_decay"};
    const char *flags[4] = {"--beta1", "--beta2", "--eps", "--weight-decay"};
    for (int i = 0; i < 4; i++) {
        float got;
        if (H5Aexists(f, names[i]) <= 0) continue;
        if (read_attr(f, names[i], H5T_FLOAT, H5T_NATIVE_FLOAT, &got, 1))
            return et_fail(e, ET_EINPUT, "%s: attribute %s malformed", path, names[i]);
        if (got != want[i])
            return et_fail(e, ET_EUSAGE, "%s: the run's AdamW %s was %g, this resume has %g: resume with the same %s "
                           "(the moments belong to that optimizer), or start a new run", path, names[i] + 6,
                           (double)got, (double)want[i], flags[i]);
    }
    return 0;
}

int et_ckpt_check_optimizer(const char *path, const et_adamw_hp *hp, et_err *e) {
    quiet q;
    quiet_on(&q);
    hid_t f = open_ckpt(path, e);
    int rc = f < 0 ? ET_EINPUT : check_optimizer(f, path, hp, e);
    if (f >= 0) H5Fclose(f);
    quiet_off(&q);
    return rc;
}

/* The stored moment format (attribute adamw_state; absent: "adamw", files
 * from before 8-bit moments) must be `state`. */
static int check_state(hid_t f, const char *path, int state, et_err *e) {
    char *s = read_attr_str(f, "adamw_state");
    const int got = s ? et_adamw_state_parse(s) : ET_ADAMW_F32;
    int rc = 0;
    if (got < 0)
        rc = et_fail(e, ET_EINPUT, "%s: attribute adamw_state '%s' is not adamw or adamw8bit", path, s);
    else if (got != state)
        rc = et_fail(e, ET_EUSAGE, "%s: the run's optimizer was --optim %s, this resume has --optim %s: resume with "
                     "the same --optim (the moments are stored in its format), or start a new run", path,
                     et_adamw_state_name(got), et_adamw_state_name(state));
    free(s);
    return rc;
}

int et_ckpt_check_optimizer_state(const char *path, const et_adamw_hp *hp, int state, et_err *e) {
    quiet q;
    quiet_on(&q);
    hid_t f = open_ckpt(path, e);
    int rc = f < 0 ? ET_EINPUT : check_optimizer(f, path, hp, e);
    if (!rc) rc = check_state(f, path, state, e);
    if (f >= 0) H5Fclose(f);
    quiet_off(&q);
    return rc;
}

int et_ckpt_load(const char *path, et_param_block *b, et_adamw *o, et_ckpt *st, et_err *e) {
    memset(st, 0, sizeof *st);
    int rc = check_block(path, b, o, e);
    if (rc) return rc;
    quiet q;
    quiet_on(&q);
    hid_t f = open_ckpt(path, e);
    if (f < 0) {
        quiet_off(&q);
        return ET_EINPUT;
    }
    rc = peek_open(f, path, st, e);
    int64_t n_params = -1;
    hsize_t dims[1];
    const int q8 = o->state == ET_ADAMW_8BIT;
    /* the datasets, their lengths and memory types: the block, then the moments in o's format */
    const char *ds[5] = {"params", "adamw_m", "adamw_v", NULL, NULL};
    const char *ds8[5] = {"params", "adamw_m8", "adamw_v8", "adamw_m_absmax", "adamw_v_absmax"};
    const size_t nb = o->n_blk ? o->n_blk : 1;
    const hsize_t len[5] = {b->n, b->n, b->n, nb, nb};
    const hid_t mt[5] = {H5T_NATIVE_FLOAT, q8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                         q8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT};
    void *dst[5] = {b->data, q8 ? (void *)o->m8 : (void *)o->m, q8 ? (void *)o->v8 : (void *)o->v, o->m_absmax,
                    o->v_absmax};
    const char *const *name = q8 ? ds8 : ds;
    const int n_ds = q8 ? 5 : 3;
    if (!rc && (read_attr(f, "n_params", H5T_INTEGER, H5T_NATIVE_INT64, &n_params, 1) || n_params != (int64_t)b->n))
        rc = et_fail(e, ET_EINPUT, "%s: checkpoint has %lld parameters, the model %zu", path, (long long)n_params, b->n);
    if (!rc) rc = check_optimizer(f, path, &o->hp, e);
    if (!rc) rc = check_state(f, path, o->state, e);
    for (int i = 0; i < n_ds && !rc; i++)
        if (ds_dims(f, name[i], 1, dims) || dims[0] != len[i])
            rc = et_fail(e, ET_EINPUT, "%s: dataset /%s missing or not of length %llu", path, name[i],
                         (unsigned long long)len[i]);
    if (!rc) rc = check_table(f, path, b, e);
    for (int i = 0; i < n_ds && !rc; i++)
        if (read_ds(f, name[i], mt[i], dst[i]))
            rc = et_fail(e, ET_EINPUT, "%s: dataset /%s is corrupt (checksum or read error)", path, name[i]);
    H5Fclose(f);
    quiet_off(&q);
    if (rc) {
        et_ckpt_free(st);
        return rc;
    }
    o->step = st->step;
    return 0;
}

void et_ckpt_free(et_ckpt *st) {
    free(st->cursor);
    free(st->config);
    memset(st, 0, sizeof *st);
}
