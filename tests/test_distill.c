/* tests/test_distill.c — `edgetune logits` + `edgetune distill` on the real
 * stories260K: a 3-layer student made of the teacher's layers gets closer to
 * the teacher (KL measured by `edgetune eval`, an independent path: the
 * engine); stored and online teachers; bit-exact resume; and bad teacher
 * files refused with exit 2 and nothing written. */
#include <hdf5.h>
#include <math.h>
#include <sys/stat.h>

#include "../datasets/dataset.h"
#include "../distill/distill.h"
#include "../eval/eval.h"
#include "../train/init.h"
#include "testutil.h"

static const char *S; /* stories260K.gguf */

static char *cmdf(const char *fmt, ...) {
    static char b[4][4096];
    static int k;
    char *o = b[k++ & 3];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o, sizeof b[0], fmt, ap);
    va_end(ap);
    return o;
}

/* Once: a small tokens.h5 with a validation split and a top-16 teacher file. */
static int setup(void **state) {
    (void)state;
    S = shared_path("models/stories260K/stories260K.gguf");
    const char *txt = shared_path("data/tinystories_sample.txt");
    if (!S || !txt || access("./edgetune", X_OK)) return 0;
    char *t = test_slurp(txt);
    if (!t) return 0;
    t[60000] = 0;
    char *cut = strrchr(t, '\n');
    if (cut) *cut = 0;
    test_spit(test_tmp("ts.txt"), t);
    free(t);
    if (test_run(cmdf("./edgetune data --tokenizer %s --input %s -o %s --valid-fraction 0.2 --seed 1", S, test_tmp("ts.txt"),
                      test_tmp("ts.h5"))) ||
        test_run(cmdf("./edgetune logits %s --data %s -o %s --ctx 64 --top-k 16", S, test_tmp("ts.h5"), test_tmp("t16.h5"))))
        fprintf(stderr, "setup failed: see %s\n", test_tmp("cmd.log"));
    return 0;
}

#define NEED()                                                                                  \
    if (!S || access("./edgetune", X_OK)) {                                                     \
        fprintf(stderr, "SKIP: needs ../shared/models/stories260K and ./edgetune\n");            \
        skip();                                                                                 \
    }

static double kl_of(const char *model, const char *name) {
    et_eval_opts o = et_eval_defaults();
    o.model = model, o.task = "kl", o.data = test_tmp("ts.h5"), o.split = "valid", o.ref_model = S;
    o.ref = test_tmp("ref_valid.h5"), o.n_ctx = 64, o.ref_full = 1, o.name = name;
    cJSON *r = NULL;
    et_err e = {0};
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    double kl = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "metrics"), "kl_mean"));
    cJSON_Delete(r);
    return kl;
}

#define DISTILL DISTILL0 "--keep-layers 0,2,4 "
#define DISTILL0 "./edgetune distill --teacher %s --batch-size 8 --seq-len 63 --loader rows " \
                "--lr 3e-3 --warmup 2 --eval-every 0 --eval-batches 2 --threads 1 --no-eval "

/* The student moves toward the teacher: KL on held-out text, from the
 * engine's forward over the saved GGUFs, before (0 steps) and after. */
static void test_distill_lowers_kl(void **state) {
    (void)state;
    NEED();
    assert_int_equal(test_run(cmdf(DISTILL "--teacher-logits %s --steps 0 --out %s", S, test_tmp("t16.h5"), test_tmp("d0"))), 0);
    assert_int_equal(test_run(cmdf(DISTILL "--teacher-logits %s --steps 40 --alpha 1 --out %s", S, test_tmp("t16.h5"),
                                   test_tmp("dk"))), 0);
    assert_int_equal(test_run(cmdf(DISTILL "--data %s --steps 40 --alpha 1 --out %s", S, test_tmp("ts.h5"), test_tmp("don"))), 0);
    char p0[512], pk[512], pon[512];
    snprintf(p0, sizeof p0, "%s/model.gguf", test_tmp("d0"));
    snprintf(pk, sizeof pk, "%s/model.gguf", test_tmp("dk"));
    snprintf(pon, sizeof pon, "%s/model.gguf", test_tmp("don"));
    /* a student of all the teacher's layers is the teacher (its layers are copied, not re-initialised) */
    assert_int_equal(test_run(cmdf(DISTILL0 "--keep-layers 0-4 --teacher-logits %s --steps 0 --out %s", S, test_tmp("t16.h5"), test_tmp("dall"))), 0);
    char pall[512];
    snprintf(pall, sizeof pall, "%s/model.gguf", test_tmp("dall"));
    const double kall = kl_of(pall, "all-layers");
    printf("  KL(teacher || student of all 5 layers, 0 steps) = %.3g\n", kall);
    assert_true(kall < 1e-5);
    const double k0 = kl_of(p0, "init"), kk = kl_of(pk, "top16"), kon = kl_of(pon, "online");
    printf("  KL(teacher || 3-layer student) on held-out text: init %.4f, 40 steps top-16 %.4f, online %.4f\n", k0, kk, kon);
    assert_true(kk < 0.8 * k0);
    assert_true(kon < 0.8 * k0);
}

static int same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    int same = f && g;
    while (same) {
        int x = fgetc(f), y = fgetc(g);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* `base` (a whole command but its --steps/--out) stopped after 3 steps and resumed to 6 writes
 * the same bytes as 6 steps straight (with warmup 2 the first 3 steps' learning rates are the
 * same in a 3- and a 6-step schedule).  dir_a, dir_b: the two runs' --out. */
static void assert_resume_exact(const char *base, const char *dir_a, const char *dir_b) {
    char cmd[4096], a[512], b[512];
    snprintf(cmd, sizeof cmd, "%s --steps 6 --ckpt-every 3 --out %s", base, dir_a);
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --steps 3 --out %s", base, dir_b);
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --steps 6 --resume --out %s", base, dir_b);
    assert_int_equal(test_run(cmd), 0);
    snprintf(a, sizeof a, "%s/model.gguf", dir_a);
    snprintf(b, sizeof b, "%s/model.gguf", dir_b);
    assert_true(same_file(a, b));
}

/* Stopping after 3 steps and resuming gives the same bytes as 6 steps straight. */
static void test_distill_resume(void **state) {
    (void)state;
    NEED();
    assert_resume_exact(cmdf(DISTILL "--teacher-logits %s", S, test_tmp("t16.h5")), test_tmp("ra"), test_tmp("rb"));
}

/* Hidden-state KD between different widths: the learned projection W [n_embd_t, n_embd_s]
 * (TinyBERT's W_h).  Its gradient from the trainer's fwd_bwd against central differences of
 * the hidden-state loss (MSE: exactly quadratic in W, so the difference is exact but for
 * rounding); other tensors' gradients unchanged by the block's move (the same step
 * without the projection's loss would differ, so check the model's own block is intact). */
static void test_distill_hidden_projection_grad(void **state) {
    (void)state;
    NEED();
    et_err e = {0};
    et_model teacher = {0}, m = {0};
    assert_int_equal(et_model_load(&teacher, S, NULL, &e), 0);
    et_hparams hp = {0};
    snprintf(hp.arch, sizeof hp.arch, "llama");
    hp.n_vocab = teacher.hp.n_vocab, hp.n_embd = 24, hp.n_layer = 2, hp.n_head = 4, hp.n_head_kv = 2, hp.n_ff = 40;
    hp.n_ctx = 64, hp.rms_eps = 1e-5f, hp.rope_theta = 10000.0f;
    assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
    et_train_llama tl;
    et_train_model tm;
    assert_int_equal(et_train_llama_init(&tl, &m, 0, &tm, &e), 0);
    et_xoshiro r;
    et_xoshiro_seed(&r, 7);
    et_init_normal(tm.t, tm.n_t, m.hp.n_layer, 0.1f, &r);
    float *before = malloc(sizeof(float) * m.n_params);
    memcpy(before, m.params, sizeof(float) * m.n_params);
    const size_t n_model = tm.n;
    et_distill_opts o = et_distill_defaults();
    o.teacher = &teacher, o.alpha = 0.5f, o.hidden_map = "0:1,1:4";
    et_distill d;
    enum { B = 2, T = 16 };
    assert_int_equal(et_distill_init(&d, &tl, &tm, &o, B, T, &e), 0);
    assert_int_equal(tl.n_extra, 2);
    assert_int_equal(tm.n, n_model + 2 * (size_t)teacher.hp.n_embd * hp.n_embd);
    assert_memory_equal(before, m.params, sizeof(float) * m.n_params); /* the model's block moved intact */
    assert_ptr_equal(tm.t[tm.n_t - 1].data, tl.extra[1].data);
    int32_t tok[B * (T + 1)];
    uint8_t mask[B * (T + 1)];
    for (int i = 0; i < B * (T + 1); i++) tok[i] = (int32_t)(1 + (i * 37) % (hp.n_vocab - 1)), mask[i] = 1;
    const double norm = B * T;
    double ls, sums[3];
    memset(tm.grads, 0, sizeof(float) * tm.n);
    assert_int_equal(tm.fwd_bwd(tm.ctx, tok, mask, B, T, norm, &ls, &e), 0);
    tm.aux_take(tm.ctx, sums);
    assert_true(sums[2] > 0);
    float *g = malloc(sizeof(float) * tm.n);
    memcpy(g, tm.grads, sizeof(float) * tm.n);
    /* the four largest |dW| of pair 1 */
    float *w = tl.extra[1].data;
    const size_t off = (size_t)(w - tm.params), nw = tl.extra[1].n;
    int checked = 0;
    for (int pick = 0; pick < 4; pick++) {
        size_t best = 0;
        for (size_t j = 1; j < nw; j++)
            if (fabsf(g[off + j]) > fabsf(g[off + best])) best = j;
        const float w0 = w[best], h = 0.25f;
        double hs[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            w[best] = w0 + (sgn ? -h : h);
            assert_int_equal(tm.fwd_bwd(tm.ctx, tok, mask, B, T, norm, &ls, &e), 0);
            tm.aux_take(tm.ctx, sums);
            hs[sgn] = sums[2];
        }
        w[best] = w0;
        const double fd = (hs[0] - hs[1]) / (2.0 * h * norm);
        printf("  dW[%zu]: backward %.6e, central difference %.6e\n", best, g[off + best], fd);
        assert_true(fabs(fd - g[off + best]) <= 2e-3 * fabs(fd) + 1e-6);
        g[off + best] = 0; /* next largest */
        checked++;
    }
    assert_int_equal(checked, 4);
    free(g), free(before);
    et_distill_free(&d);
    et_train_llama_free(&tl);
    et_model_free(&m);
    et_model_free(&teacher);
}

/* Through the CLI: a narrower student from scratch (n_embd 32, the teacher's 64) with a hidden
 * map; the projections are in the checkpoint, so a resumed run is bit-exact (it is not when
 * they are re-initialised instead of read back), and the hidden loss falls. */
#define NARROW "./edgetune distill --teacher %s --data %s --n-embd 32 --n-layer 2 --n-head 4 --n-ff 64 " \
               "--hidden-map 0:1,1:4 --batch-size 8 --seq-len 63 --loader rows --lr 3e-3 --warmup 2 " \
               "--eval-every 0 --eval-batches 2 --threads 1 --no-eval --log-every 1 "
static void test_distill_hidden_projection_cli(void **state) {
    (void)state;
    NEED();
    char met[512];
    snprintf(met, sizeof met, "%s.jsonl", test_tmp("hp_a"));
    assert_resume_exact(cmdf(NARROW, S, test_tmp("ts.h5")), test_tmp("hp_a"), test_tmp("hp_b"));
    assert_int_equal(test_run(cmdf(NARROW "--steps 20 --metrics %s --out %s", S, test_tmp("ts.h5"), met, test_tmp("hp_c"))), 0);
    char *j = test_slurp(met);
    assert_non_null(j);
    double first = -1, last = -1;
    for (char *p = strstr(j, "\"hidden\""); p; p = strstr(p + 1, "\"hidden\"")) {
        double v = strtod(strchr(p, ':') + 1, NULL);
        if (first < 0) first = v;
        last = v;
    }
    free(j);
    printf("  hidden-state loss %.4f -> %.4f over 20 steps\n", first, last);
    assert_true(first > 0 && last < first);
}

/* Copy src to dst, then change one thing in dst's /teacher with HDF5. */
static void copy_file(const char *src, const char *dst) {
    assert_int_equal(test_run(cmdf("cp %s %s", src, dst)), 0);
}
static void set_attr_str(const char *path, const char *name, const char *val) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "teacher", H5P_DEFAULT);
    H5Adelete(g, name);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, name, st, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, st, &val) >= 0);
    H5Aclose(a), H5Sclose(sp), H5Tclose(st), H5Gclose(g), H5Fclose(f);
}
static void set_logprob(const char *path, int64_t row, float v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "teacher/topk_logprobs", H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t st[2] = {(hsize_t)row, 0}, cn[2] = {1, 1};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cn, NULL);
    hid_t ms = H5Screate_simple(2, cn, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &v) >= 0);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d), H5Fclose(f);
}

static void expect_refused(const char *cmd, const char *out_dir, const char *needle) {
    int rc = test_run(cmd);
    char *log = test_slurp(test_tmp("cmd.log"));
    if (rc != 2 || !log || !strstr(log, needle))
        fail_msg("expected exit 2 with '%s', got %d: %s", needle, rc, log ? log : "(no output)");
    free(log);
    char p[512];
    snprintf(p, sizeof p, "%s/model.gguf", out_dir);
    assert_int_not_equal(access(p, F_OK), 0); /* nothing written */
}

static void test_distill_bad_teacher(void **state) {
    (void)state;
    NEED();
    const char *bad = test_tmp("bad.h5"), *out = test_tmp("dbad");
    copy_file(test_tmp("t16.h5"), bad);
    set_attr_str(bad, "tokenizer_sha256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    expect_refused(cmdf(DISTILL "--teacher-logits %s --steps 2 --out %s", S, bad, out), out, "another tokenizer");
    copy_file(test_tmp("t16.h5"), bad);
    set_logprob(bad, 5, NAN);
    expect_refused(cmdf(DISTILL "--teacher-logits %s --steps 30 --out %s", S, bad, out), out, "topk_logprobs");
    expect_refused(cmdf(DISTILL "--teacher-logits %s --temperature 2 --steps 2 --out %s", S, test_tmp("t16.h5"), out), out,
                   "temperature");
    /* a teacher file made from other data than --data */
    expect_refused(cmdf(DISTILL "--teacher-logits %s --data %s --steps 2 --out %s", S, test_tmp("t16.h5"), test_tmp("t16.h5.x"),
                        out), out, "t16.h5.x");
    test_spit(test_tmp("other.txt"), "Once upon a time there was a cat.\n\nThe end.\n");
    assert_int_equal(test_run(cmdf("./edgetune data --tokenizer %s --input %s -o %s", S, test_tmp("other.txt"),
                                   test_tmp("other.h5"))), 0);
    expect_refused(cmdf(DISTILL "--teacher-logits %s --data %s --steps 2 --out %s", S, test_tmp("t16.h5"),
                        test_tmp("other.h5"), out), out, "another data file");
    expect_refused(cmdf("./edgetune distill --teacher %s --keep-layers 0,7 --data %s --steps 2 --out %s", S,
                        test_tmp("ts.h5"), out), out, "layer 7 does not exist");
    expect_refused(cmdf(DISTILL "--data %s --hidden-map 0:0,1:9 --steps 2 --out %s", S, test_tmp("ts.h5"), out), out,
                   "the teacher has no layer 9");
}

/* A teacher stored with --scoring stream sees each student row of the stream
 * loader exactly (T = ctx - 1): distill reports 100% context agreement;
 * rows mode on documents within the window does too. */
#define STREAM "./edgetune distill --teacher %s --keep-layers 0,2,4 --batch-size 8 --loader stream --eval-every 0 " \
               "--eval-batches 2 --threads 1 --no-eval "
static void test_distill_context(void **state) {
    (void)state;
    NEED();
    assert_int_equal(test_run(cmdf("./edgetune logits %s --data %s -o %s --ctx 32 --top-k 4 --scoring stream", S,
                                   test_tmp("ts.h5"), test_tmp("ts_stream.h5"))), 0);
    assert_int_equal(test_run(cmdf(STREAM "--teacher-logits %s --seq-len 31 --steps 3 --out %s", S,
                                   test_tmp("ts_stream.h5"), test_tmp("dst"))), 0);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(log);
    assert_non_null(strstr(log, "context at 100.0%"));
    free(log);
    /* the same file read with rows of 15: windows no longer match */
    assert_int_equal(test_run(cmdf(STREAM "--teacher-logits %s --seq-len 15 --steps 3 --out %s", S,
                                   test_tmp("ts_stream.h5"), test_tmp("dst2"))), 0);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(log);
    assert_null(strstr(log, "context at 100.0%"));
    free(log);
}

/* A student pruned by a plan of `edgetune prune` (per-layer widths: arch deci) distils and
 * moves toward the teacher; a plan for another model is refused. */
static void test_distill_prune_plan(void **state) {
    (void)state;
    NEED();
    char plan[512];
    snprintf(plan, sizeof plan, "%s", test_tmp("p.plan.json"));
    assert_int_equal(test_run(cmdf("./edgetune prune %s -o %s --calib %s --calib-rows 8 --seq-len 32 --heads 0.25 --ffn 0.3 "
                                   "--plan %s", S, test_tmp("pruned.gguf"), test_tmp("ts.h5"), plan)), 0);
    const char *common = "./edgetune distill --teacher %s --data %s --prune-plan %s --batch-size 8 --seq-len 63 "
                         "--loader rows --lr 3e-3 --warmup 2 --eval-every 0 --eval-batches 2 --threads 1 --no-eval "
                         "--alpha 1 --steps %d --out %s";
    assert_int_equal(test_run(cmdf(common, S, test_tmp("ts.h5"), plan, 0, test_tmp("dp0"))), 0);
    assert_int_equal(test_run(cmdf(common, S, test_tmp("ts.h5"), plan, 30, test_tmp("dp"))), 0);
    char p0[512], p1[512];
    snprintf(p0, sizeof p0, "%s/model.gguf", test_tmp("dp0"));
    snprintf(p1, sizeof p1, "%s/model.gguf", test_tmp("dp"));
    char *g = test_slurp(p1);
    assert_non_null(g);
    assert_non_null(memmem(g, 4096, "deci", 4)); /* per-layer widths */
    free(g);
    const double k0 = kl_of(p0, "pruned"), k1 = kl_of(p1, "pruned+kd"), kp = kl_of(test_tmp("pruned.gguf"), "prune");
    assert_true(fabs(k0 - kp) < 1e-6); /* the 0-step student is edgetune prune's model, weights kept */
    printf("  pruned student: KL to the teacher %.4f -> %.4f after 30 steps of KD\n", k0, k1);
    assert_true(k1 < 0.9 * k0);
    /* the plan applied to another teacher (the pruned file itself): exit 2 */
    expect_refused(cmdf(common, test_tmp("pruned.gguf"), test_tmp("ts.h5"), plan, 2, test_tmp("dpx")), test_tmp("dpx"),
                   "layer");
}

/* The teacher file keeps the data's loss mask (instruction data: prompts are not trained on, by
 * CE or KD), so `distill --teacher-logits F` trains on what `train --data D` would. */
static void test_logits_keep_mask(void **state) {
    (void)state;
    NEED();
    test_spit(test_tmp("inst.jsonl"), "{\"prompt\": \"Once upon a time\", \"completion\": \" there was a cat.\"}\n"
                                      "{\"prompt\": \"The dog\", \"completion\": \" ran home to his mom.\"}\n");
    assert_int_equal(test_run(cmdf("./edgetune data --tokenizer %s --input %s -o %s", S, test_tmp("inst.jsonl"),
                                   test_tmp("inst.h5"))), 0);
    assert_int_equal(test_run(cmdf("./edgetune logits %s --data %s -o %s --top-k 4", S, test_tmp("inst.h5"),
                                   test_tmp("inst_t.h5"))), 0);
    et_ds *a, *b;
    et_err e = {0};
    assert_int_equal(et_ds_open(&a, test_tmp("inst.h5"), &e), 0);
    assert_int_equal(et_ds_open(&b, test_tmp("inst_t.h5"), &e), 0);
    assert_true(a->has_mask && b->has_mask);
    assert_int_equal(a->n_tokens, b->n_tokens);
    uint8_t ma[256], mb[256];
    assert_true(a->n_tokens <= 256);
    assert_int_equal(et_ds_read_mask(a, 0, a->n_tokens, ma, &e), 0);
    assert_int_equal(et_ds_read_mask(b, 0, b->n_tokens, mb, &e), 0);
    int masked = 0;
    for (int64_t i = 0; i < a->n_tokens; i++) masked += !ma[i];
    assert_true(masked > 0);
    assert_memory_equal(ma, mb, (size_t)a->n_tokens);
    et_ds_close(a);
    et_ds_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distill_lowers_kl),
        cmocka_unit_test(test_distill_resume),
        cmocka_unit_test(test_distill_hidden_projection_grad),
        cmocka_unit_test(test_distill_hidden_projection_cli),
        cmocka_unit_test(test_distill_bad_teacher),
        cmocka_unit_test(test_distill_context),
        cmocka_unit_test(test_distill_prune_plan),
        cmocka_unit_test(test_logits_keep_mask),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
