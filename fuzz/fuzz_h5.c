/* fuzz/fuzz_h5.c — libFuzzer harness for the HDF5 files edgetune reads from
 * users (issue 11): tokens.h5 (datasets/dataset.c et_ds_open, which
 * validates every array, then reading tokens and masks back), teacher
 * logits (datasets/teacher.c et_teacher_open / et_teacher_read) and run
 * checkpoints (train/checkpoint.c et_ckpt_peek, et_ckpt_load against a small
 * fixed parameter block).  The bytes are written to a file (the readers take
 * paths, as the commands do); every refusal must say why.  Seeds:
 * fuzz_h5.seed.sh.  Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../datasets/teacher.h"
#include "../train/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libhdf5 1.10 leaks some of its own allocations on malformed files (e.g.
 * an object header decoded for H5Aexists): not edgetune's memory; leaks of
 * edgetune's allocations are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\nleak:libhdf5.so\n"; }

static void tokens(const char *path) {
    et_ds *ds;
    et_err e = {0};
    if (et_ds_open(&ds, path, &e)) {
        if (!e.msg[0]) abort();
        return;
    }
    int64_t n = ds->n_tokens < 4096 ? ds->n_tokens : 4096;
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    uint8_t *m = malloc((size_t)(n ? n : 1));
    if (t && m && n > 0) {
        if (et_ds_read_tokens(ds, 0, n, t, &e) == 0)
            for (int64_t i = 0; i < n; i++)
                if (t[i] < 0 || t[i] >= ds->n_vocab) abort();   /* validated on open */
        if (ds->has_mask) (void)et_ds_read_mask(ds, 0, n, m, &e);
    }
    for (int split = 0; split < 2; split++) {
        int64_t b, en;
        et_ds_split_docs(ds, split, &b, &en);
        if (b < 0 || en < b || en > ds->n_docs) abort();
    }
    free(t);
    free(m);
    et_ds_close(ds);
}

static void teacher(const char *path) {
    et_teacher *t;
    et_teacher_meta meta;
    et_err e = {0};
    if (et_teacher_open(&t, path, &meta, &e)) {
        if (!e.msg[0]) abort();
        return;
    }
    int k = meta.k > 0 && meta.k <= 4096 ? meta.k : 1;
    int32_t *ids = malloc(sizeof(int32_t) * 4 * (size_t)k);
    float *lp = malloc(sizeof(float) * 4 * (size_t)k), tgt[4];
    uint8_t sc[4];
    if (ids && lp) (void)et_teacher_read(t, 0, 1, ids, lp, tgt, sc, &e);
    free(ids);
    free(lp);
    et_teacher_close(t);
}

static void checkpoint(const char *path) {
    et_ckpt st;
    et_err e = {0};
    if (et_ckpt_peek(path, &st, &e)) {
        if (!e.msg[0]) abort();
    } else {
        et_ckpt_free(&st);
    }
    /* a load against a fixed block: the table checks, then the reads */
    static float p[96], mm[96], vv[96];
    et_named t[2] = {{"token_embd.weight", p, 2, {8, 8}, 64}, {"output_norm.weight", p + 64, 1, {32, 1}, 32}};
    et_param_block b = {p, 96, t, 2};
    et_adamw o;
    memset(&o, 0, sizeof o);
    o.n = 96;
    o.m = mm;
    o.v = vv;
    memset(&e, 0, sizeof e);
    if (et_ckpt_load(path, &b, &o, &st, &e)) {
        if (!e.msg[0]) abort();
    } else {
        et_ckpt_free(&st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_h5.%ld.h5", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    tokens(path);
    teacher(path);
    checkpoint(path);
    return 0;
}
