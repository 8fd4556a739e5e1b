/* tests/train_fixture.h — a tiny llama model and a synthetic tokens.h5 for
 * the trainer tests (test_trainer.c, test_train_resume.c).
 *
 * Data: documents of the stories260K vocabulary size class (n_vocab 32):
 * BOS then an arithmetic sequence x, x+d, x+2d, ... (mod 30, offset 2) with
 * d in {1, 2, 3} per document, so the next token is predictable from the
 * context once d is seen: a model that learns has a falling validation loss. */
#ifndef ET_TRAIN_FIXTURE_H
#define ET_TRAIN_FIXTURE_H

#include "testutil.h"
#include "../datasets/dataset.h"
#include "../datasets/loader.h"
#include "../train/init.h"
#include "../train/train_llama.h"
#include "../train/trainer.h"

enum { FX_VOCAB = 32, FX_EMBD = 16, FX_LAYER = 2, FX_HEAD = 4, FX_HEAD_KV = 2, FX_FF = 24 };

static inline void fx_hparams(et_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    snprintf(hp->arch, sizeof hp->arch, "llama");
    hp->n_vocab = FX_VOCAB;
    hp->n_embd = FX_EMBD;
    hp->n_layer = FX_LAYER;
    hp->n_ctx = 64;
    hp->n_head = FX_HEAD;
    hp->n_head_kv = FX_HEAD_KV;
    hp->n_ff = FX_FF;
    hp->head_dim = FX_EMBD / FX_HEAD;
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    hp->tied_output = 1;
}

/* Write the synthetic data set: n_train + n_valid documents of len tokens. */
static inline void fx_write_data(const char *path, int n_train, int n_valid, int len) {
    et_ds_meta meta = {.n_vocab = FX_VOCAB, .bos_id = 1, .eos_id = -1, .source = "synthetic"};
    et_ds_writer *w;
    et_err e = {0};
    assert_int_equal(et_ds_writer_open(&w, path, &meta, 0, &e), 0);
    uint32_t s = 12345;
    int32_t doc[256];
    assert_true(len <= 256);
    for (int d = 0; d < n_train + n_valid; d++) {
        if (d == n_train) et_ds_writer_begin_valid(w);
        s = s * 1664525u + 1013904223u;
        int x = (int)((s >> 8) % 30), step = 1 + (int)((s >> 20) % 3);
        doc[0] = 1;
        for (int j = 1; j < len; j++) {
            doc[j] = 2 + x;
            x = (x + step) % 30;
        }
        assert_int_equal(et_ds_writer_add(w, doc, NULL, (size_t)len, -1, &e), 0);
    }
    int rc = et_ds_writer_commit(w, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
}

/* Everything one training run needs. */
typedef struct fx_run {
    et_model m;
    et_train_llama tl;
    et_train_model tm;
    et_ds *ds;
    et_loader *train, *valid;
    int recompute;
} fx_run;

/* Model with random init from `seed`, loaders (B, T) on data_path;
 * recompute: activation recomputation per layer. */
static inline void fx_open_ex(fx_run *r, const char *data_path, int B, int T, uint64_t seed, int recompute) {
    memset(r, 0, sizeof *r);
    r->recompute = recompute;
    et_err e = {0};
    et_hparams hp;
    fx_hparams(&hp);
    assert_int_equal(et_model_alloc(&r->m, &hp, &e), 0);
    int rc = et_train_llama_init(&r->tl, &r->m, 0, &r->tm, &e);
    r->tl.recompute = recompute;
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    et_xoshiro rng;
    et_xoshiro_seed(&rng, seed);
    et_init_normal(r->tm.t, r->tm.n_t, hp.n_layer, 0.02f, &rng);
    assert_int_equal(et_ds_open(&r->ds, data_path, &e), 0);
    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = B;
    lo.seq_len = T;
    lo.seed = seed;
    assert_int_equal(et_loader_open(&r->train, r->ds, &lo, &e), 0);
    lo.split = ET_SPLIT_VALID;
    lo.shuffle = 0;
    lo.loop = 0;
    assert_int_equal(et_loader_open(&r->valid, r->ds, &lo, &e), 0);
}

static inline void fx_open(fx_run *r, const char *data_path, int B, int T, uint64_t seed) {
    fx_open_ex(r, data_path, B, T, seed, 0);
}

static inline void fx_close(fx_run *r) {
    et_loader_close(r->train);
    et_loader_close(r->valid);
    et_ds_close(r->ds);
    et_train_llama_free(&r->tl);
    et_model_free(&r->m);
    memset(r, 0, sizeof *r);
}

/* Options shared by the tests: small, fast, learning. */
static inline et_train_opts fx_opts(int B, int T, int64_t steps) {
    et_train_opts o = et_train_defaults();
    o.steps = steps;
    o.batch_size = B;
    o.seq_len = T;
    o.sched = (et_lr_sched){ET_LR_COSINE, 1e-2f, 1e-3f, 5, steps};
    o.adamw.weight_decay = 0.01f;
    o.seed = 7;
    return o;
}

#endif
