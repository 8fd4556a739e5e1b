/* tests/test_dataset.c — tokens.h5 writer/reader round trips, validation of
 * hostile files (built here with the raw HDF5 API, as h5py would), and the
 * batch loader against a direct computation from the token array. */
#include "testutil.h"

#include <hdf5.h>

#include "../datasets/dataset.h"
#include "../datasets/loader.h"
#include "../datasets/shuffle.h"

static const char *tpath(const char *name) {
    static char bufs[4][512];
    static int k = 0;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* 1 if any file in the temp dir starts with prefix (leftover temporaries). */
static int leftovers(const char *prefix) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '^%s'", test_tmpdir(), prefix);
    return system(cmd) == 0;
}

static const char *SHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* ---- write then read back equals the input ---- */
static void test_roundtrip(void **state) {
    (void)state;
    const char *path = tpath("rt.h5");
    int32_t d0[] = {1, 5, 6, 7, 2}, d1[] = {1, 9, 2}, d2[] = {1, 3, 4, 4, 4, 8, 2};
    uint8_t m0[] = {0, 0, 1, 1, 1}, m1[] = {0, 1, 1}, m2[] = {0, 0, 0, 1, 0, 1, 1};
    const char *names[] = {"neg", "pos", "neutral"};
    et_ds_meta meta = {.n_vocab = 10, .bos_id = 1, .eos_id = 2, .source = "hand.jsonl", .format = "jsonl",
                       .n_labels = 3, .label_names = names};
    memcpy(meta.tokenizer_sha256, SHA, 65);
    et_err e = {0};
    et_ds_writer *w;
    assert_int_equal(et_ds_writer_open(&w, path, &meta, ET_DS_WITH_MASK, &e), 0);
    assert_int_equal(et_ds_writer_add(w, d0, m0, 5, 2, &e), 0);
    assert_int_equal(et_ds_writer_add(w, d1, m1, 3, 0, &e), 0);
    et_ds_writer_begin_valid(w);
    assert_int_equal(et_ds_writer_add(w, d2, m2, 7, 1, &e), 0);
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    assert_false(leftovers("rt.h5.tmp"));

    et_ds *ds;
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    assert_int_equal(ds->n_tokens, 15);
    assert_int_equal(ds->n_docs, 3);
    assert_int_equal(ds->n_train_docs, 2);
    int64_t want_off[] = {0, 5, 8, 15};
    assert_memory_equal(ds->doc_offsets, want_off, sizeof want_off);
    int32_t toks[15];
    uint8_t mask[15];
    assert_int_equal(et_ds_read_tokens(ds, 0, 15, toks, &e), 0);
    assert_int_equal(et_ds_read_mask(ds, 0, 15, mask, &e), 0);
    assert_memory_equal(toks, d0, sizeof d0);
    assert_memory_equal(toks + 5, d1, sizeof d1);
    assert_memory_equal(toks + 8, d2, sizeof d2);
    assert_memory_equal(mask, m0, 5);
    assert_memory_equal(mask + 5, m1, 3);
    assert_memory_equal(mask + 8, m2, 7);
    int32_t labels[3], want_l[] = {2, 0, 1};
    assert_int_equal(et_ds_read_labels(ds, 0, 3, labels, &e), 0);
    assert_memory_equal(labels, want_l, sizeof want_l);
    assert_int_equal(ds->n_labels, 3);
    for (int i = 0; i < 3; i++) assert_string_equal(ds->label_names[i], names[i]);
    assert_int_equal(ds->n_vocab, 10);
    assert_int_equal(ds->bos_id, 1);
    assert_int_equal(ds->eos_id, 2);
    assert_int_equal(ds->packed_len, 0);
    assert_string_equal(ds->tokenizer_sha256, SHA);
    assert_string_equal(ds->source, "hand.jsonl");
    assert_string_equal(ds->format, "jsonl");
    assert_true(ds->has_mask);
    assert_false(ds->has_teacher);
    int64_t b, en;
    et_ds_split_docs(ds, ET_SPLIT_VALID, &b, &en);
    assert_int_equal(b, 2);
    assert_int_equal(en, 3);
    /* reading out of range is refused */
    assert_int_equal(et_ds_read_tokens(ds, 10, 6, toks, &e), ET_EUSAGE);
    et_ds_close(ds);
}

/* Larger than the writer's 1M-token buffer, with one document bigger than it:
 * compare against the generating formula. */
static void test_roundtrip_big(void **state) {
    (void)state;
    const char *path = tpath("big.h5");
    const int64_t lens[] = {7, 1500000, 3, 700001, 1};
    et_ds_meta meta = {.n_vocab = 32000, .bos_id = -1, .eos_id = -1};
    et_err e = {0};
    et_ds_writer *w;
    assert_int_equal(et_ds_writer_open(&w, path, &meta, ET_DS_WITH_MASK, &e), 0);
    int32_t *buf = malloc(1500000 * sizeof(int32_t));
    uint8_t *mb = malloc(1500000);
    int64_t pos = 0;
    for (int d = 0; d < 5; d++) {
        for (int64_t i = 0; i < lens[d]; i++) {
            buf[i] = (int32_t)((pos + i) * 7919 % 32000);
            mb[i] = (uint8_t)(((pos + i) % 3) == 0);
        }
        assert_int_equal(et_ds_writer_add(w, buf, mb, (size_t)lens[d], -1, &e), 0);
        pos += lens[d];
    }
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    et_ds *ds;
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    assert_int_equal(ds->n_tokens, pos);
    assert_int_equal(ds->n_train_docs, 5);
    int64_t off = 0;
    for (int d = 0; d < 5; d++) {
        assert_int_equal(ds->doc_offsets[d], off);
        off += lens[d];
    }
    assert_int_equal(ds->doc_offsets[5], off);
    for (int64_t s = 0; s < pos; s += 1500000) {
        int64_t k = pos - s < 1500000 ? pos - s : 1500000;
        assert_int_equal(et_ds_read_tokens(ds, s, k, buf, &e), 0);
        assert_int_equal(et_ds_read_mask(ds, s, k, mb, &e), 0);
        for (int64_t i = 0; i < k; i++) {
            if (buf[i] != (int32_t)((s + i) * 7919 % 32000)) fail_msg("token %ld differs", (long)(s + i));
            if (mb[i] != (uint8_t)(((s + i) % 3) == 0)) fail_msg("mask %ld differs", (long)(s + i));
        }
    }
    et_ds_close(ds);
    free(buf);
    free(mb);
}

static void test_writer_abort_and_bad_values(void **state) {
    (void)state;
    const char *path = tpath("ab.h5");
    et_ds_meta meta = {.n_vocab = 10, .bos_id = 1, .eos_id = 2};
    et_err e = {0};
    et_ds_writer *w;
    int32_t d[] = {1, 2, 3};
    assert_int_equal(et_ds_writer_open(&w, path, &meta, 0, &e), 0);
    assert_int_equal(et_ds_writer_add(w, d, NULL, 3, -1, &e), 0);
    et_ds_writer_abort(w);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_false(leftovers("ab.h5"));
    /* token outside the vocabulary, empty document */
    int32_t bad[] = {1, 10};
    assert_int_equal(et_ds_writer_open(&w, path, &meta, 0, &e), 0);
    assert_int_equal(et_ds_writer_add(w, bad, NULL, 2, -1, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "= 10"));
    assert_int_equal(et_ds_writer_add(w, bad, NULL, 0, -1, &e), ET_EUSAGE);
    et_ds_writer_abort(w);
    /* bad mask value */
    uint8_t m[] = {1, 2};
    assert_int_equal(et_ds_writer_open(&w, path, &meta, ET_DS_WITH_MASK, &e), 0);
    assert_int_equal(et_ds_writer_add(w, d, m, 2, -1, &e), ET_EUSAGE);
    et_ds_writer_abort(w);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_false(leftovers("ab.h5"));
    /* committing over an existing file replaces it */
    assert_int_equal(et_ds_writer_open(&w, path, &meta, 0, &e), 0);
    assert_int_equal(et_ds_writer_add(w, d, NULL, 3, -1, &e), 0);
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    assert_int_equal(et_ds_writer_open(&w, path, &meta, 0, &e), 0);
    assert_int_equal(et_ds_writer_add(w, d, NULL, 2, -1, &e), 0);
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    et_ds *ds;
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    assert_int_equal(ds->n_tokens, 2);
    et_ds_close(ds);
    /* a directory that does not exist */
    assert_int_equal(et_ds_writer_open(&w, "/nonexistent/dir/x.h5", &meta, 0, &e), ET_ERUN);
    assert_non_null(strstr(e.msg, "/nonexistent/dir/x.h5"));
}

/* ---- hand-made files, as another tool (h5py) would write them ---- */
typedef struct raw_file {
    hid_t tok_type;            /* file type of /tokens (0: skip) */
    const void *tokens; hid_t tok_mem; hsize_t n_tok; int tok_rank2;
    hid_t off_type; const int64_t *offsets; hsize_t n_off;
    const uint8_t *mask; hsize_t n_mask;
    const int32_t *labels; hsize_t n_labels;
    int64_t n_vocab;           /* < 0: attribute absent */
    int64_t n_train_docs;      /* < 0: absent */
    const char *sha;           /* fixed-length string attribute, NULL: absent */
} raw_file;

static void put_1d(hid_t f, const char *name, hid_t ftype, hid_t mtype, const void *data, hsize_t n, int rank2) {
    hsize_t dims[2] = {n, 1};
    if (rank2) dims[0] = n / 2, dims[1] = 2;
    hid_t s = H5Screate_simple(rank2 ? 2 : 1, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    if (n) assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(s);
}

static void put_attr_i64(hid_t loc, const char *name, int64_t v) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
}

static void write_raw(const char *path, const raw_file *r) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    if (r->tok_type) put_1d(f, "tokens", r->tok_type, r->tok_mem, r->tokens, r->n_tok, r->tok_rank2);
    if (r->off_type) put_1d(f, "doc_offsets", r->off_type, H5T_NATIVE_INT64, r->offsets, r->n_off, 0);
    if (r->mask) put_1d(f, "loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, r->mask, r->n_mask, 0);
    if (r->labels) put_1d(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, r->labels, r->n_labels, 0);
    if (r->n_vocab >= 0) put_attr_i64(f, "n_vocab", r->n_vocab);
    if (r->n_train_docs >= 0) put_attr_i64(f, "n_train_docs", r->n_train_docs);
    if (r->sha) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, strlen(r->sha));
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "tokenizer_sha256", st, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, st, r->sha);
        H5Aclose(a);
        H5Sclose(s);
        H5Tclose(st);
    }
    H5Fclose(f);
}

static const int32_t T6[] = {1, 4, 5, 2, 1, 3};
static const int64_t O3[] = {0, 4, 6};

static raw_file good_raw(void) {
    raw_file r = {.tok_type = H5T_STD_I32LE, .tokens = T6, .tok_mem = H5T_NATIVE_INT32, .n_tok = 6,
                  .off_type = H5T_STD_I64LE, .offsets = O3, .n_off = 3, .n_vocab = 6, .n_train_docs = -1};
    return r;
}

/* Expect et_ds_open to fail with code and a message holding the path and `what`. */
static void expect_bad(const raw_file *r, int code, const char *what) {
    const char *path = tpath("bad.h5");
    write_raw(path, r);
    et_ds *ds = (et_ds *)1;
    et_err e = {0};
    int rc = et_ds_open(&ds, path, &e);
    if (rc != code || !strstr(e.msg, path) || !strstr(e.msg, what))
        fail_msg("expected code %d and '%s', got %d: %s", code, what, rc, e.msg);
    assert_null(ds);
}

static void test_reader_accepts_other_writers(void **state) {
    (void)state;
    /* int64 tokens, int32 offsets, fixed-length string attribute, no bos/eos */
    int64_t t64[] = {1, 4, 5, 2, 1, 3};
    int32_t o32[] = {0, 4, 6};
    int64_t o64[] = {0, 4, 6};
    (void)o32;
    raw_file r = good_raw();
    r.tok_type = H5T_STD_I64LE;
    r.tokens = t64;
    r.tok_mem = H5T_NATIVE_INT64;
    r.off_type = H5T_STD_I32LE;
    r.offsets = o64;
    r.sha = SHA;
    const char *path = tpath("other.h5");
    write_raw(path, &r);
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    assert_int_equal(ds->n_tokens, 6);
    assert_int_equal(ds->n_docs, 2);
    assert_int_equal(ds->n_train_docs, 2);
    assert_int_equal(ds->bos_id, -1);
    assert_string_equal(ds->tokenizer_sha256, SHA);
    assert_false(ds->has_mask);
    int32_t got[6];
    uint8_t m[6];
    assert_int_equal(et_ds_read_tokens(ds, 0, 6, got, &e), 0);
    assert_memory_equal(got, T6, sizeof T6);
    assert_int_equal(et_ds_read_mask(ds, 0, 6, m, &e), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(m[i], 1);
    et_ds_close(ds);
}

static void test_reader_rejects_bad_files(void **state) {
    (void)state;
    raw_file r;
    int32_t big[] = {1, 4, 6, 2, 1, 3}, neg[] = {1, 4, -1, 2, 1, 3};
    int64_t nonmono[] = {0, 4, 4}, short_end[] = {0, 4, 5}, nonzero[] = {1, 4, 6};
    uint8_t mask2[] = {0, 1, 2, 1, 1, 1};
    float ftok[] = {1, 4, 5, 2, 1, 3};
    int32_t lab_bad[] = {0, -1};

    r = good_raw(); r.tokens = big;
    expect_bad(&r, ET_EINPUT, "/tokens[2] = 6");
    r = good_raw(); r.tokens = neg;
    expect_bad(&r, ET_EINPUT, "/tokens[2] = -1");
    r = good_raw(); r.offsets = nonmono;
    expect_bad(&r, ET_EINPUT, "/doc_offsets[2]");
    r = good_raw(); r.offsets = short_end;
    expect_bad(&r, ET_EINPUT, "/doc_offsets ends at 5");
    r = good_raw(); r.offsets = nonzero;
    expect_bad(&r, ET_EINPUT, "/doc_offsets[0] = 1");
    r = good_raw(); r.n_off = 0;
    expect_bad(&r, ET_EINPUT, "/doc_offsets is empty");
    r = good_raw(); r.mask = mask2; r.n_mask = 6;
    expect_bad(&r, ET_EINPUT, "/loss_mask[2] = 2");
    r = good_raw(); r.mask = mask2; r.n_mask = 5;
    expect_bad(&r, ET_EINPUT, "/loss_mask has 5 elements");
    r = good_raw(); r.tok_type = H5T_IEEE_F32LE; r.tokens = ftok; r.tok_mem = H5T_NATIVE_FLOAT;
    expect_bad(&r, ET_EINPUT, "/tokens has float elements");
    r = good_raw(); r.tok_rank2 = 1;
    expect_bad(&r, ET_EINPUT, "/tokens has 2 dimensions");
    r = good_raw(); r.tok_type = 0;
    expect_bad(&r, ET_EINPUT, "missing dataset /tokens");
    r = good_raw(); r.n_vocab = -1;
    expect_bad(&r, ET_EINPUT, "missing attribute n_vocab");
    r = good_raw(); r.n_train_docs = 3;
    expect_bad(&r, ET_EINPUT, "n_train_docs = 3");
    r = good_raw(); r.sha = "abc";
    expect_bad(&r, ET_EINPUT, "tokenizer_sha256");
    r = good_raw(); r.labels = lab_bad; r.n_labels = 2;
    expect_bad(&r, ET_EINPUT, "/labels[1] = -1");
    r = good_raw(); r.labels = lab_bad; r.n_labels = 1;
    expect_bad(&r, ET_EINPUT, "/labels has 1 elements");

    /* not HDF5 at all, and missing */
    const char *path = tpath("noth5.h5");
    FILE *f = fopen(path, "wb");
    fputs("GGUF this is not hdf5", f);
    fclose(f);
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, path, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "not an HDF5 file"));
    assert_int_equal(et_ds_open(&ds, tpath("missing.h5"), &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "missing.h5"));
}

/* ---- loader ---- */

/* A file with docs of the given lengths; token value = 3 + global index % 97,
 * mask = (index % 5 != 0); the first n_train docs train. */
static const char *make_loader_file(const char *name, const int64_t *lens, int nd, int n_train, int64_t packed,
                                    int32_t **all_tok, uint8_t **all_mask, int64_t *n_all) {
    const char *path = tpath(name);
    et_ds_meta meta = {.n_vocab = 100, .bos_id = 1, .eos_id = 2, .packed_len = packed};
    et_err e = {0};
    et_ds_writer *w;
    assert_int_equal(et_ds_writer_open(&w, path, &meta, ET_DS_WITH_MASK, &e), 0);
    int64_t tot = 0;
    for (int d = 0; d < nd; d++) tot += lens[d];
    int32_t *t = malloc((size_t)tot * sizeof(int32_t));
    uint8_t *m = malloc((size_t)tot);
    for (int64_t i = 0; i < tot; i++) {
        t[i] = (int32_t)(3 + i % 97);
        m[i] = (uint8_t)(i % 5 != 0);
    }
    int64_t pos = 0;
    for (int d = 0; d < nd; d++) {
        if (d == n_train) et_ds_writer_begin_valid(w);
        assert_int_equal(et_ds_writer_add(w, t + pos, m + pos, (size_t)lens[d], -1, &e), 0);
        pos += lens[d];
    }
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    *all_tok = t;
    *all_mask = m;
    *n_all = tot;
    return path;
}

/* Stream mode: sample k of the training split = window [k*T, k*T+T+1) of the
 * concatenated training tokens, padded with eos (2) and mask 0. */
static void test_loader_stream_matches_direct(void **state) {
    (void)state;
    const int64_t lens[] = {10, 1, 25, 7, 13};
    int32_t *tok;
    uint8_t *msk;
    int64_t n_all;
    const char *path = make_loader_file("ld.h5", lens, 5, 4, 0, &tok, &msk, &n_all);
    int64_t n_train_tok = 10 + 1 + 25 + 7; /* 43 */
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    const int64_t T = 8, B = 3;
    et_loader_opts o = et_loader_defaults();
    o.batch_size = B;
    o.seq_len = T;
    o.shuffle = 0;
    o.loop = 0;
    et_loader *L;
    assert_int_equal(et_loader_open(&L, ds, &o, &e), 0);
    assert_int_equal(et_loader_mode(L), ET_LOAD_STREAM);
    int64_t want_n = (n_train_tok - 1 + T - 1) / T; /* ceil(42/8) = 6 */
    assert_int_equal(et_loader_n_samples(L), want_n);
    int32_t bt[3 * 9];
    uint8_t bm[3 * 9];
    int64_t rows, k = 0;
    for (;;) {
        assert_int_equal(et_loader_next(L, bt, bm, &rows, &e), 0);
        if (rows == 0) break;
        for (int64_t b = 0; b < B; b++, k++) {
            for (int64_t j = 0; j <= T; j++) {
                int64_t g = k * T + j;
                int real = k < want_n && g < n_train_tok;
                int32_t wt = real ? tok[g] : 2;
                uint8_t wm = real ? msk[g] : 0;
                assert_int_equal(bt[b * (T + 1) + j], wt);
                assert_int_equal(bm[b * (T + 1) + j], wm);
            }
        }
    }
    assert_int_equal(k, 6); /* 2 full batches */
    et_loader_close(L);

    /* the validation split is the 13-token last document: ceil(12/8) = 2 samples */
    o.split = ET_SPLIT_VALID;
    assert_int_equal(et_loader_open(&L, ds, &o, &e), 0);
    assert_int_equal(et_loader_n_samples(L), 2);
    assert_int_equal(et_loader_next(L, bt, bm, &rows, &e), 0);
    assert_int_equal(rows, 2);
    for (int64_t j = 0; j <= T; j++) {
        assert_int_equal(bt[j], tok[n_train_tok + j]);
        int64_t g = T + j;
        assert_int_equal(bt[(T + 1) + j], g < 13 ? tok[n_train_tok + g] : 2);
        assert_int_equal(bm[(T + 1) + j], g < 13 ? msk[n_train_tok + g] : 0);
        assert_int_equal(bm[2 * (T + 1) + j], 0); /* third row is padding */
    }
    et_loader_close(L);
    et_ds_close(ds);
    free(tok);
    free(msk);
}

/* Rows mode: sample d = document d cut/padded to T+1; AUTO picks ROWS for a
 * file packed with packed_len == T+1. */
static void test_loader_rows(void **state) {
    (void)state;
    const int64_t lens[] = {5, 12, 9, 1};
    int32_t *tok;
    uint8_t *msk;
    int64_t n_all;
    const char *path = make_loader_file("rows.h5", lens, 4, 4, 0, &tok, &msk, &n_all);
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    const int64_t T = 8;
    et_loader_opts o = et_loader_defaults();
    o.batch_size = 4;
    o.seq_len = T;
    o.mode = ET_LOAD_ROWS;
    o.shuffle = 0;
    o.pad_id = 0;
    et_loader *L;
    assert_int_equal(et_loader_open(&L, ds, &o, &e), 0);
    int32_t bt[4 * 9];
    uint8_t bm[4 * 9];
    int64_t rows, off = 0;
    assert_int_equal(et_loader_next(L, bt, bm, &rows, &e), 0);
    assert_int_equal(rows, 4);
    for (int d = 0; d < 4; d++) {
        for (int64_t j = 0; j <= T; j++) {
            int real = j < lens[d];
            assert_int_equal(bt[d * (T + 1) + j], real ? tok[off + j] : 0);
            assert_int_equal(bm[d * (T + 1) + j], real ? msk[off + j] : 0);
        }
        off += lens[d];
    }
    et_loader_close(L);
    et_ds_close(ds);
    free(tok);
    free(msk);

    /* packed: three rows of 9 → AUTO = ROWS for T = 8, STREAM for T = 4 */
    const int64_t plens[] = {9, 9, 9};
    path = make_loader_file("packed.h5", plens, 3, 3, 9, &tok, &msk, &n_all);
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    o = et_loader_defaults();
    o.seq_len = 8;
    assert_int_equal(et_loader_open(&L, ds, &o, &e), 0);
    assert_int_equal(et_loader_mode(L), ET_LOAD_ROWS);
    assert_int_equal(et_loader_n_samples(L), 3);
    et_loader_close(L);
    o.seq_len = 4;
    assert_int_equal(et_loader_open(&L, ds, &o, &e), 0);
    assert_int_equal(et_loader_mode(L), ET_LOAD_STREAM);
    et_loader_close(L);
    /* the validation split is empty: a clear error */
    o.split = ET_SPLIT_VALID;
    assert_int_equal(et_loader_open(&L, ds, &o, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "validation split has no samples"));
    et_ds_close(ds);
    free(tok);
    free(msk);
}

/* Identify a sample by its first token: in stream mode with T = 4 over
 * tokens 3 + i % 97 (< 97 tokens), sample k starts with 3 + 4k. */
static void test_loader_shuffle_epochs_and_resume(void **state) {
    (void)state;
    const int64_t lens[] = {30, 20, 31};
    int32_t *tok;
    uint8_t *msk;
    int64_t n_all;
    const char *path = make_loader_file("shuf.h5", lens, 3, 3, 0, &tok, &msk, &n_all);
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, path, &e), 0);
    et_loader_opts o = et_loader_defaults();
    o.batch_size = 3;
    o.seq_len = 4;
    o.seed = 1234;
    et_loader *A, *B;
    assert_int_equal(et_loader_open(&A, ds, &o, &e), 0);
    const int64_t ns = et_loader_n_samples(A); /* ceil(80/4) = 20 */
    assert_int_equal(ns, 20);
    int32_t bt[3 * 5], bt2[3 * 5];
    uint8_t bm[3 * 5], bm2[3 * 5];
    int64_t rows;
    /* three epochs: each visits every sample exactly once; orders differ */
    int64_t order[3][20];
    int64_t taken = 0;
    while (taken < 60) {
        assert_int_equal(et_loader_next(A, bt, bm, &rows, &e), 0);
        assert_int_equal(rows, 3);
        for (int b = 0; b < 3 && taken < 60; b++, taken++) {
            int64_t k = (bt[b * 5] - 3) / 4;
            assert_true(k >= 0 && k < ns);
            /* the row equals sample k read directly */
            int32_t st[5];
            uint8_t sm[5];
            assert_int_equal(et_loader_sample(A, k, st, sm, &e), 0);
            assert_memory_equal(bt + b * 5, st, sizeof st);
            assert_memory_equal(bm + b * 5, sm, sizeof sm);
            order[taken / 20][taken % 20] = k;
        }
    }
    for (int ep = 0; ep < 3; ep++) {
        int seen[20] = {0};
        for (int i = 0; i < 20; i++) seen[order[ep][i]]++;
        for (int i = 0; i < 20; i++) assert_int_equal(seen[i], 1);
    }
    assert_memory_not_equal(order[0], order[1], sizeof order[0]);
    et_loader_close(A);

    /* resume: A takes 5 batches (crossing into epoch 0's end at 15 samples),
     * saves the cursor; B restores it; the next 12 batches agree */
    assert_int_equal(et_loader_open(&A, ds, &o, &e), 0);
    for (int i = 0; i < 5; i++) assert_int_equal(et_loader_next(A, bt, bm, &rows, &e), 0);
    et_cursor c;
    et_loader_get_cursor(A, &c);
    assert_int_equal(c.position, 15);
    assert_int_equal(c.epoch, 0);
    et_loader_opts o2 = o;
    o2.seed = 999; /* the cursor carries the seed */
    assert_int_equal(et_loader_open(&B, ds, &o2, &e), 0);
    uint8_t packed[ET_CURSOR_BYTES];
    et_cursor_pack(&c, packed); /* through the checkpoint's opaque bytes */
    et_cursor c2;
    assert_int_equal(et_cursor_unpack(&c2, packed, sizeof packed - 1, &e), ET_EINPUT);
    assert_int_equal(et_cursor_unpack(&c2, packed, sizeof packed, &e), 0);
    assert_int_equal(et_loader_set_cursor(B, &c2, &e), 0);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(et_loader_next(A, bt, bm, &rows, &e), 0);
        assert_int_equal(et_loader_next(B, bt2, bm2, &rows, &e), 0);
        assert_memory_equal(bt, bt2, sizeof bt);
        assert_memory_equal(bm, bm2, sizeof bm);
    }
    et_loader_get_cursor(A, &c);
    assert_int_equal(c.epoch, 2); /* 15 + 36 = 51 samples: epoch 2, position 11 */
    assert_int_equal(c.position, 11);
    et_loader_close(B);
    /* a cursor from another configuration is refused */
    o2.seq_len = 8;
    assert_int_equal(et_loader_open(&B, ds, &o2, &e), 0);
    assert_int_equal(et_loader_set_cursor(B, &c, &e), ET_EUSAGE);
    et_loader_close(B);
    /* same seed → same batches; another seed → another order */
    o2 = o;
    assert_int_equal(et_loader_open(&B, ds, &o2, &e), 0);
    et_loader *C;
    o2.seed = 4321;
    assert_int_equal(et_loader_open(&C, ds, &o2, &e), 0);
    et_loader_close(A);
    assert_int_equal(et_loader_open(&A, ds, &o, &e), 0);
    int differ = 0;
    for (int i = 0; i < 7; i++) {
        assert_int_equal(et_loader_next(A, bt, bm, &rows, &e), 0);
        assert_int_equal(et_loader_next(B, bt2, bm2, &rows, &e), 0);
        assert_memory_equal(bt, bt2, sizeof bt);
        assert_int_equal(et_loader_next(C, bt2, bm2, &rows, &e), 0);
        differ |= memcmp(bt, bt2, sizeof bt) != 0;
    }
    assert_true(differ);
    et_loader_close(A);
    et_loader_close(B);
    et_loader_close(C);
    et_ds_close(ds);
    free(tok);
    free(msk);
}

/* Fisher-Yates with splitmix64: a permutation, and every position of a
 * 3-element permutation is equally likely (chi-square-free coarse check). */
static void test_shuffle(void **state) {
    (void)state;
    uint64_t st = 7;
    int64_t p[1000];
    et_shuffle_perm(&st, p, 1000);
    char seen[1000] = {0};
    for (int i = 0; i < 1000; i++) seen[p[i]]++;
    for (int i = 0; i < 1000; i++) assert_int_equal(seen[i], 1);
    int count[6] = {0};
    for (int r = 0; r < 60000; r++) {
        int64_t q[3];
        et_shuffle_perm(&st, q, 3);
        count[q[0] * 2 + (q[1] > q[2])]++;
    }
    for (int i = 0; i < 6; i++) assert_true(count[i] > 9500 && count[i] < 10500);
    /* splitmix64 reference value (Vigna's splitmix64.c with state 0) */
    uint64_t z = 0;
    assert_true(et_shuffle_next(&z) == 0xe220a8397b1dcdafull);
}

static int remove_tmpdir(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_big),
        cmocka_unit_test(test_writer_abort_and_bad_values),
        cmocka_unit_test(test_reader_accepts_other_writers),
        cmocka_unit_test(test_reader_rejects_bad_files),
        cmocka_unit_test(test_loader_stream_matches_direct),
        cmocka_unit_test(test_loader_rows),
        cmocka_unit_test(test_loader_shuffle_epochs_and_resume),
        cmocka_unit_test(test_shuffle),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmpdir);
}
