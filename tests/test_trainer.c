/* tests/test_trainer.c — the training loop on a tiny llama and synthetic
 * data: the validation loss falls; two runs with one seed are bit-identical;
 * gradient accumulation (B 2 x 2 micro-batches) matches one batch of 4;
 * a NaN stops the run naming the step and keeps the last good checkpoint;
 * the event JSON lines; bf16 mixed-precision GEMMs (train/gemm.h) train to
 * about the f32 run's validation loss (the f32 run is the independent
 * computation), and recomputation keeps bf16 bit-identical too. */
#include <math.h>

#include "train_fixture.h"
#include "../train/threads.h"
#include "../train/checkpoint.h"
#include "../train/gemm.h"

static const char *data_path(void) {
    static char p[512];
    if (!p[0]) {
        snprintf(p, sizeof p, "%s/fx_tokens.h5", test_tmpdir());
        fx_write_data(p, 48, 6, 40);
    }
    return p;
}

typedef struct log {
    int n_step, n_eval, n_ckpt;
    double loss[256];           /* by step */
    double val[64];             /* evaluations in order */
    int64_t val_step[64];
    int64_t ckpt_step[64];
} log_t;

static int on_event(void *user, const et_train_event *ev) {
    log_t *l = user;
    if (ev->kind == ET_EV_STEP) {
        if (ev->step < 256) l->loss[ev->step] = ev->loss;
        l->n_step++;
    } else if (ev->kind == ET_EV_EVAL && l->n_eval < 64) {
        l->val_step[l->n_eval] = ev->step;
        l->val[l->n_eval++] = ev->val_loss;
    } else if (ev->kind == ET_EV_CKPT && l->n_ckpt < 64) {
        l->ckpt_step[l->n_ckpt++] = ev->step;
    }
    return 0;
}

static int run_precision = ET_GEMM_F32; /* the GEMM precision of run_once_ex */

static void run_once_ex(int B, int A, int64_t steps, int recompute, log_t *l, float *params_out, size_t *n_out) {
    fx_run r;
    fx_open_ex(&r, data_path(), B, 16, 3, recompute);
    r.tl.tape.gemm_precision = run_precision;
    et_train_opts o = fx_opts(B * A, 16, steps);
    o.batch_size = B;
    o.grad_accum = A;
    o.eval_every = 10;
    o.on_event = on_event;
    o.user = l;
    memset(l, 0, sizeof *l);
    et_train_result res;
    et_err e = {0};
    int rc = et_train_run(&r.tm, r.train, r.valid, &o, &res, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(res.step, steps);
    if (params_out) {
        memcpy(params_out, r.m.params, r.m.n_params * sizeof(float));
        *n_out = r.m.n_params;
    }
    fx_close(&r);
}

static void run_once(int B, int A, int64_t steps, log_t *l, float *params_out, size_t *n_out) {
    run_once_ex(B, A, steps, 0, l, params_out, n_out);
}

static void test_loss_falls_and_events(void **state) {
    (void)state;
    log_t l;
    run_once(4, 1, 60, &l, NULL, NULL);
    assert_int_equal(l.n_step, 60);
    /* evaluations at steps 0, 10, ..., 60 */
    assert_int_equal(l.n_eval, 7);
    assert_int_equal(l.val_step[0], 0);
    assert_int_equal(l.val_step[6], 60);
    fprintf(stderr, "val loss: step 0 %.4f, step 60 %.4f (ln 32 = %.4f)\n", l.val[0], l.val[6], log(32.0));
    assert_true(fabs(l.val[0] - log(32.0)) < 0.2); /* random init: about uniform */
    assert_true(l.val[6] < l.val[0] - 1.0);
    assert_true(l.loss[60] < l.loss[1]);
}

static void test_deterministic(void **state) {
    (void)state;
    static log_t a, b;
    run_once(4, 1, 12, &a, NULL, NULL);
    run_once(4, 1, 12, &b, NULL, NULL);
    for (int s = 1; s <= 12; s++) assert_true(a.loss[s] == b.loss[s]);
    assert_true(a.val[1] == b.val[1]);
}

/* Accumulating 2 micro-batches of 2 rows = one batch of 4 rows (the same
 * samples: the loader's order depends only on seed and sample count). */
static void test_grad_accum(void **state) {
    (void)state;
    static log_t a, b;
    float *pa = malloc(100000 * sizeof(float)), *pb = malloc(100000 * sizeof(float));
    size_t na = 0, nb = 0;
    run_once(4, 1, 8, &a, pa, &na);
    run_once(2, 2, 8, &b, pb, &nb);
    assert_int_equal(na, nb);
    for (int s = 1; s <= 8; s++) {
        if (fabs(a.loss[s] - b.loss[s]) > 1e-5 * fabs(a.loss[s])) {
            fprintf(stderr, "step %d: %.9g vs %.9g\n", s, a.loss[s], b.loss[s]);
            fail();
        }
    }
    double md = 0;
    for (size_t i = 0; i < na; i++) md = fmax(md, fabs((double)pa[i] - pb[i]));
    assert_true(md < 1e-4);
    free(pa);
    free(pb);
}

/* Activation recomputation changes memory, not the arithmetic: the same
 * losses and parameters, bit for bit. */
static void test_recompute_same_floats(void **state) {
    (void)state;
    static log_t a, b;
    float *pa = malloc(100000 * sizeof(float)), *pb = malloc(100000 * sizeof(float));
    size_t na = 0, nb = 0;
    run_once_ex(4, 1, 10, 0, &a, pa, &na);
    run_once_ex(4, 1, 10, 1, &b, pb, &nb);
    assert_int_equal(na, nb);
    for (int s = 1; s <= 10; s++) {
        if (a.loss[s] != b.loss[s]) {
            fprintf(stderr, "step %d: %.17g vs %.17g with recomputation\n", s, a.loss[s], b.loss[s]);
            fail();
        }
    }
    assert_memory_equal(pa, pb, na * sizeof(float));
    free(pa);
    free(pb);
}

/* bf16 GEMMs: the loss falls as in f32 and ends close to the f32 run's; the
 * two runs differ (the setting took effect); recomputation is still exact. */
static void test_bf16_close_to_f32(void **state) {
    (void)state;
    static log_t f, b, br;
    float *pa = malloc(100000 * sizeof(float)), *pb = malloc(100000 * sizeof(float));
    size_t na = 0, nb = 0;
    run_precision = ET_GEMM_F32;
    run_once_ex(4, 1, 60, 0, &f, NULL, NULL);
    run_precision = ET_GEMM_BF16;
    run_once_ex(4, 1, 60, 0, &b, pa, &na);
    run_once_ex(4, 1, 60, 1, &br, pb, &nb);
    run_precision = ET_GEMM_F32;
    printf("  val loss f32 %.4f -> %.4f, bf16 %.4f -> %.4f\n", f.val[0], f.val[6], b.val[0], b.val[6]);
    assert_int_equal(b.n_eval, 7);
    assert_true(b.val[6] < b.val[0] - 1.0);
    assert_true(fabs(b.val[6] - f.val[6]) < 0.05 * f.val[6] + 0.02);
    assert_true(b.loss[60] != f.loss[60]);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof(float));
    free(pa);
    free(pb);
}

/* Wraps the llama binding and poisons the loss at one call. */
typedef struct poison { et_train_model inner; int calls, at; } poison;
static int poisoned_fwd_bwd(void *ctx, const int32_t *tok, const uint8_t *msk, int B, int T, double norm,
                            double *loss_sum, et_err *e) {
    poison *p = ctx;
    int rc = p->inner.fwd_bwd(p->inner.ctx, tok, msk, B, T, norm, loss_sum, e);
    if (++p->calls == p->at) *loss_sum = NAN;
    return rc;
}
static int plain_forward(void *ctx, const int32_t *tok, const uint8_t *msk, int B, int T, double *loss_sum,
                         et_err *e) {
    poison *p = ctx;
    return p->inner.forward(p->inner.ctx, tok, msk, B, T, loss_sum, e);
}

static void test_nan_stops_keeps_checkpoint(void **state) {
    (void)state;
    fx_run r;
    fx_open(&r, data_path(), 4, 16, 3);
    poison p = {r.tm, 0, 9};
    et_train_model tm = r.tm;
    tm.ctx = &p;
    tm.fwd_bwd = poisoned_fwd_bwd;
    tm.forward = plain_forward;
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/nan_ckpt.h5", test_tmpdir());
    et_train_opts o = fx_opts(4, 16, 20);
    o.ckpt_every = 4;
    o.ckpt_path = ckpt;
    static log_t l;
    memset(&l, 0, sizeof l);
    o.on_event = on_event;
    o.user = &l;
    et_err e = {0};
    et_train_result res;
    int rc = et_train_run(&tm, r.train, r.valid, &o, &res, &e);
    fprintf(stderr, "NaN run: %s\n", e.msg);
    assert_int_equal(rc, ET_ERUN);
    assert_non_null(strstr(e.msg, "step 9"));
    assert_non_null(strstr(e.msg, "NaN"));
    assert_non_null(strstr(e.msg, ckpt));
    assert_non_null(strstr(e.msg, "step 8"));
    assert_int_equal(res.step, 8);
    assert_int_equal(l.n_step, 8);
    /* the parameters are those after step 8: equal to the checkpoint's */
    float *now = malloc(r.m.n_params * sizeof(float));
    memcpy(now, r.m.params, r.m.n_params * sizeof(float));
    et_adamw opt;
    assert_int_equal(et_adamw_init(&opt, r.m.n_params, &o.adamw, NULL), 0);
    et_param_block b = {r.m.params, r.m.n_params, r.tm.t, r.tm.n_t};
    et_ckpt st;
    assert_int_equal(et_ckpt_load(ckpt, &b, &opt, &st, &e), 0);
    assert_int_equal(st.step, 8);
    assert_memory_equal(now, r.m.params, r.m.n_params * sizeof(float));
    et_ckpt_free(&st);
    et_adamw_free(&opt);
    free(now);
    fx_close(&r);
}

/* Issue 11 (training-loop audit): a step in which no micro-batch has a target
 * token ran AdamW on zero gradients (weight decay and momentum moved the
 * weights, the schedule advanced).  Now it is skipped: a run on data with
 * fully masked rows between the real ones must end with the same parameters,
 * AdamW moments and step count, bit for bit, as a run on the real rows
 * alone (same order: no shuffle, B 1), having reported each skip. */
static void write_masked_mix(const char *path, int with_empty, int all_empty) {
    et_ds_meta meta = {.n_vocab = FX_VOCAB, .bos_id = 1, .eos_id = -1, .source = "synthetic"};
    et_ds_writer *w;
    et_err e = {0};
    assert_int_equal(et_ds_writer_open(&w, path, &meta, ET_DS_WITH_MASK, &e), 0);
    uint32_t s = 999;
    int32_t doc[17];
    uint8_t on[17], off[17];
    memset(on, 1, sizeof on);
    memset(off, 0, sizeof off);
    for (int d = 0; d < 12; d++) {
        s = s * 1664525u + 1013904223u;
        int x = (int)((s >> 8) % 30), step = 1 + (int)((s >> 20) % 3);
        doc[0] = 1;
        for (int j = 1; j < 17; j++) doc[j] = 2 + (x = (x + step) % 30);
        int empties = with_empty ? d % 3 : 0;   /* 0, 1 or 2 masked rows before each real one */
        for (int k = 0; k < empties; k++) assert_int_equal(et_ds_writer_add(w, doc, off, 17, -1, &e), 0);
        assert_int_equal(et_ds_writer_add(w, doc, all_empty ? off : on, 17, -1, &e), 0);
    }
    et_ds_writer_begin_valid(w);   /* the fixture opens a validation loader */
    assert_int_equal(et_ds_writer_add(w, doc, on, 17, -1, &e), 0);
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
}

typedef struct skip_log { int n_step, n_skip; int64_t last_skipped; } skip_log;
static int on_skip_event(void *user, const et_train_event *ev) {
    skip_log *l = user;
    if (ev->kind == ET_EV_STEP) l->n_step++;
    if (ev->kind == ET_EV_SKIP) l->n_skip++, l->last_skipped = ev->skipped;
    return 0;
}

static int run_masked(const char *data, const char *ckpt, skip_log *l, float **params, size_t *n, et_err *e) {
    fx_run r;
    fx_open(&r, data, 1, 16, 3);
    et_loader_close(r.train);
    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = 1, lo.seq_len = 16, lo.shuffle = 0, lo.mode = ET_LOAD_ROWS;
    assert_int_equal(et_loader_open(&r.train, r.ds, &lo, e), 0);
    et_train_opts o = fx_opts(1, 16, 10);
    o.ckpt_path = ckpt;
    o.on_event = on_skip_event;
    o.user = l;
    memset(l, 0, sizeof *l);
    et_train_result res;
    int rc = et_train_run(&r.tm, r.train, NULL, &o, &res, e);
    if (!rc) {
        assert_int_equal(res.step, 10);
        assert_int_equal(res.skipped, l->n_skip);
        *n = r.m.n_params;
        *params = malloc(*n * sizeof(float));
        memcpy(*params, r.m.params, *n * sizeof(float));
    }
    fx_close(&r);
    return rc;
}

static void load_moments(const char *ckpt, size_t n, et_adamw *opt) {
    fx_run r;
    fx_open(&r, data_path(), 1, 16, 3);
    assert_int_equal(r.m.n_params, n);
    et_adamw_hp hp = fx_opts(1, 16, 10).adamw;
    assert_int_equal(et_adamw_init(opt, n, &hp, NULL), 0);
    et_param_block b = {r.m.params, r.m.n_params, r.tm.t, r.tm.n_t};
    et_ckpt st;
    et_err e = {0};
    assert_int_equal(et_ckpt_load(ckpt, &b, opt, &st, &e), 0);
    assert_int_equal(st.step, 10);
    assert_int_equal(opt->step, 10);
    et_ckpt_free(&st);
    fx_close(&r);
}

static void test_no_target_step_skipped(void **state) {
    (void)state;
    char plain[512], mixed[512], none[512], ck1[512], ck2[512];
    snprintf(plain, sizeof plain, "%s/skip_plain.h5", test_tmpdir());
    snprintf(mixed, sizeof mixed, "%s/skip_mixed.h5", test_tmpdir());
    snprintf(none, sizeof none, "%s/skip_none.h5", test_tmpdir());
    snprintf(ck1, sizeof ck1, "%s/skip_ck1.h5", test_tmpdir());
    snprintf(ck2, sizeof ck2, "%s/skip_ck2.h5", test_tmpdir());
    write_masked_mix(plain, 0, 0);
    write_masked_mix(mixed, 1, 0);
    write_masked_mix(none, 0, 1);
    skip_log la, lb;
    float *pa, *pb;
    size_t na, nb;
    et_err e = {0};
    assert_int_equal(run_masked(plain, ck1, &la, &pa, &na, &e), 0);
    assert_int_equal(run_masked(mixed, ck2, &lb, &pb, &nb, &e), 0);
    fprintf(stderr, "skip: %d steps + %d skipped vs %d steps\n", lb.n_step, lb.n_skip, la.n_step);
    assert_int_equal(la.n_skip, 0);
    assert_int_equal(lb.n_step, 10);                /* steps count updates only */
    assert_int_equal(lb.n_skip, 0 + 1 + 2 + 0 + 1 + 2 + 0 + 1 + 2 + 0);   /* the masked rows before real rows 0..9 */
    assert_int_equal(lb.last_skipped, lb.n_skip);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na * sizeof(float));   /* weights: bit for bit */
    et_adamw oa, ob;
    load_moments(ck1, na, &oa);
    load_moments(ck2, nb, &ob);
    assert_memory_equal(oa.m, ob.m, na * sizeof(float));   /* AdamW state: bit for bit */
    assert_memory_equal(oa.v, ob.v, na * sizeof(float));
    et_adamw_free(&oa);
    et_adamw_free(&ob);
    free(pa);
    free(pb);
    /* no target anywhere: an error after one pass, not an endless loop */
    skip_log lc;
    float *pc = NULL;
    size_t nc;
    assert_int_equal(run_masked(none, ck1, &lc, &pc, &nc, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "no micro-batch of a whole pass over the training data has a target token"));
    assert_null(pc);
}

static void test_event_json(void **state) {
    (void)state;
    char buf[512];
    et_train_event ev = {.kind = ET_EV_STEP, .step = 3, .steps = 10, .loss = 2.5, .lr = 1e-3f, .grad_norm = 0.5,
                         .tokens = 1024, .tokens_per_s = 100, .elapsed_s = 1, .eta_s = 7};
    int n = et_train_event_json(&ev, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(buf));
    assert_non_null(strstr(buf, "\"event\":\"step\",\"step\":3,\"steps\":10,\"tokens\":1024"));
    assert_non_null(strstr(buf, "\"loss\":2.5"));
    assert_true(buf[0] == '{' && buf[n - 1] == '}');
    ev = (et_train_event){.kind = ET_EV_EVAL, .step = 4, .val_loss = NAN, .val_ppl = INFINITY};
    et_train_event_json(&ev, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"val_loss\":null")); /* JSON has no NaN */
    /* truncation never overruns */
    char small[16];
    n = et_train_event_json(&ev, small, sizeof small);
    assert_true(n > 15 && strlen(small) == 15);
}

int main(void) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_and_events),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_grad_accum),
        cmocka_unit_test(test_recompute_same_floats),
        cmocka_unit_test(test_bf16_close_to_f32),
        cmocka_unit_test(test_nan_stops_keeps_checkpoint),
        cmocka_unit_test(test_event_json),
        cmocka_unit_test(test_no_target_step_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
