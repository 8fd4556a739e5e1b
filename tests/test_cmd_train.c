/* tests/test_cmd_train.c — `edgetune train` end to end (runs ./edgetune):
 * a new model from architecture flags, its outputs (checkpoint, recipe,
 * GGUF equal to the checkpoint's parameters, JSON-lines metrics), --resume
 * extending a run, --config from the saved recipe reproducing a run, exit
 * codes for usage and input errors, and continued pretraining of the real
 * stories260K.  The --resume/--config run uses --precision bf16, so the
 * recipe must carry it (the resumed steps and the rerun's losses depend on it). */
#include <math.h>
#include <sys/wait.h>

#include "train_fixture.h"
#include "../train/checkpoint.h"

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* Exit code of a shell command (output to log). */
static int run(const char *cmd) {
    char full[8192];
    snprintf(full, sizeof full, "%.4096s >>%.1000s 2>&1", cmd, tmp("cmd.log"));
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int have_edgetune(void) {
    if (access("./edgetune", X_OK) == 0) return 1;
    fprintf(stderr, "SKIP: ./edgetune not built\n");
    return 0;
}

static const char *data(void) {
    static char p[512];
    if (!p[0]) {
        snprintf(p, sizeof p, "%s", tmp("cli_tokens.h5"));
        fx_write_data(p, 48, 6, 40);
    }
    return p;
}

#define ARCH "--n-embd 16 --n-layer 2 --n-head 4 --n-head-kv 2 --n-ff 24 --n-ctx 64"

/* Count lines of a metrics file that are JSON objects with an event. */
static int metric_lines(const char *path, const char *event) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[2048], want[64];
    snprintf(want, sizeof want, "\"event\":\"%s\"", event);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        assert_true(line[0] == '{' && strstr(line, "}\n"));
        if (strstr(line, want)) n++;
    }
    fclose(f);
    return n;
}

static void test_new_model_outputs(void **state) {
    (void)state;
    if (!have_edgetune()) skip();
    char cmd[2048];
    const char *out = tmp("run1"), *metrics = tmp("run1.jsonl");
    snprintf(cmd, sizeof cmd,
             "./edgetune train " ARCH " --data %s --out %s --steps 10 --batch-size 4 --seq-len 16 --lr 0.01 "
             "--eval-every 5 --ckpt-every 5 --metrics %s",
             data(), out, metrics);
    assert_int_equal(run(cmd), 0);
    assert_int_equal(metric_lines(metrics, "step"), 10);
    assert_int_equal(metric_lines(metrics, "eval"), 3); /* steps 0, 5, 10 */
    assert_int_equal(metric_lines(metrics, "checkpoint"), 2);
    /* model.gguf holds the checkpoint's parameters */
    et_model m;
    et_err e = {0};
    char path[600];
    snprintf(path, sizeof path, "%s/model.gguf", out);
    int rc = et_model_load(&m, path, NULL, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(m.hp.n_embd, 16);
    assert_int_equal(m.hp.n_head_kv, 2);
    float *from_gguf = malloc(m.n_params * sizeof(float));
    memcpy(from_gguf, m.params, m.n_params * sizeof(float));
    int k = et_model_tensors(&m, NULL, 0);
    et_named *t = malloc(sizeof *t * (size_t)k);
    et_param_block b;
    et_param_block_of_model(&b, &m, t);
    et_adamw opt;
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    assert_int_equal(et_adamw_init(&opt, m.n_params, &hp, NULL), 0);
    et_ckpt st;
    snprintf(path, sizeof path, "%s/checkpoint.h5", out);
    rc = et_ckpt_load(path, &b, &opt, &st, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(st.step, 10);
    assert_non_null(strstr(st.config, "\"n_embd\":"));
    assert_memory_equal(from_gguf, m.params, m.n_params * sizeof(float));
    et_ckpt_free(&st);
    et_adamw_free(&opt);
    free(t);
    free(from_gguf);
    et_model_free(&m);
}

/* A run's metrics lines for steps, as "step loss" strings. */
static int step_losses(const char *path, char losses[][64], int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (!strstr(line, "\"event\":\"step\"")) continue;
        const char *s = strstr(line, "\"step\":"), *l = strstr(line, "\"loss\":");
        assert_non_null(s);
        assert_non_null(l);
        snprintf(losses[n++], 64, "%ld %.20s", strtol(s + 7, NULL, 10), l + 7);
    }
    fclose(f);
    return n;
}

static void test_resume_and_config(void **state) {
    (void)state;
    if (!have_edgetune()) skip();
    char cmd[2048];
    const char *out = tmp("run2"), *m2 = tmp("run2.jsonl");
    snprintf(cmd, sizeof cmd,
             "./edgetune train " ARCH " --data %s --out %s --steps 6 --batch-size 4 --seq-len 16 --lr 0.01 "
             "--warmup 2 --ckpt-every 3 --eval-every 3 --metrics %s --precision bf16",
             data(), out, m2);
    assert_int_equal(run(cmd), 0);
    char rpath[600], rtext[8192] = {0};
    snprintf(rpath, sizeof rpath, "%s/recipe.json", out);
    FILE *rf = fopen(rpath, "r");
    assert_non_null(rf);
    size_t rn = fread(rtext, 1, sizeof rtext - 1, rf);
    fclose(rf);
    assert_true(rn > 0);
    assert_non_null(strstr(rtext, "\"precision\":\t\"bf16\""));
    /* extend to 9 steps: every setting comes from out/recipe.json */
    snprintf(cmd, sizeof cmd, "./edgetune train --resume --out %s --steps 9", out);
    assert_int_equal(run(cmd), 0);
    assert_int_equal(metric_lines(m2, "step"), 9);
    /* the saved recipe (now steps 9) run from scratch: the losses of steps
     * 1..3 depend on updates 1..2 only, whose warmup learning rates do not
     * depend on the schedule's total, so they equal the first run's */
    const char *out3 = tmp("run3"), *m3 = tmp("run3.jsonl");
    char recipe[600];
    snprintf(recipe, sizeof recipe, "%s/recipe.json", out);
    snprintf(cmd, sizeof cmd, "./edgetune train --config %s --out %s --metrics %s", recipe, out3, m3);
    assert_int_equal(run(cmd), 0);
    char a[16][64], b[16][64];
    assert_int_equal(step_losses(m2, a, 16), 9);
    assert_int_equal(step_losses(m3, b, 16), 9);
    for (int i = 0; i < 3; i++) assert_string_equal(a[i], b[i]);
    /* resuming a finished run of 9 steps with --steps 9: nothing to do, still fine */
    snprintf(cmd, sizeof cmd, "./edgetune train --resume --out %s", out3);
    assert_int_equal(run(cmd), 0);
}

/* --optim adamw8bit: recorded in the recipe, kept by --resume (the moments
 * are in the checkpoint in 8-bit form), refused when a resume asks for the
 * other optimizer; an unknown --optim is a usage error. */
static void test_optim_8bit(void **state) {
    (void)state;
    if (!have_edgetune()) skip();
    char cmd[2048];
    const char *out = tmp("run8"), *m8 = tmp("run8.jsonl");
    snprintf(cmd, sizeof cmd,
             "./edgetune train " ARCH " --data %s --out %s --steps 6 --batch-size 4 --seq-len 16 --lr 0.01 "
             "--warmup 2 --ckpt-every 3 --eval-every 3 --metrics %s --optim adamw8bit",
             data(), out, m8);
    assert_int_equal(run(cmd), 0);
    char rpath[600];
    snprintf(rpath, sizeof rpath, "%s/recipe.json", out);
    assert_true(test_file_contains(rpath, "\"optim\":\t\"adamw8bit\""));
    snprintf(cmd, sizeof cmd, "./edgetune train --resume --out %s --steps 9 --optim adamw", out);
    assert_int_equal(run(cmd), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "./edgetune train --resume --out %s --steps 9", out);
    assert_int_equal(run(cmd), 0);
    assert_int_equal(metric_lines(m8, "step"), 9);
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --data %s --out %s --optim adam4bit", data(), tmp("r8b"));
    assert_int_equal(run(cmd), ET_EUSAGE);
}

static void test_exit_codes(void **state) {
    (void)state;
    if (!have_edgetune()) skip();
    char cmd[2048];
    assert_int_equal(run("./edgetune train --out /tmp/nowhere"), ET_EUSAGE);          /* no --data */
    snprintf(cmd, sizeof cmd, "./edgetune train --data %s --out %s", data(), tmp("r4"));
    assert_int_equal(run(cmd), ET_EUSAGE);                                              /* no model */
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --data %s --out %s --bogus 1", data(), tmp("r4"));
    assert_int_equal(run(cmd), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --data %s --out %s --schedule step", data(), tmp("r4"));
    assert_int_equal(run(cmd), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --data %s --out %s --seq-len 65", data(), tmp("r4"));
    assert_int_equal(run(cmd), ET_EUSAGE);                                              /* > n_ctx */
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --data %s --out %s", tmp("missing.h5"), tmp("r4"));
    assert_int_equal(run(cmd), ET_EINPUT);
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --n-vocab 16 --data %s --out %s", data(), tmp("r4"));
    assert_int_equal(run(cmd), ET_EINPUT);                                              /* tokens >= n_vocab */
    snprintf(cmd, sizeof cmd, "./edgetune train " ARCH " --data %s --out %s --precision fp8", data(), tmp("r4"));
    assert_int_equal(run(cmd), ET_EUSAGE);
    snprintf(cmd, sizeof cmd, "./edgetune train --resume --out %s", tmp("never_ran"));
    assert_int_equal(run(cmd), ET_EUSAGE);
}

static void test_stories260K_continued(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    if (!have_edgetune()) skip();
    char cmd[4096];
    const char *tokens = tmp("stories.h5"), *out = tmp("stories_run");
    snprintf(cmd, sizeof cmd,
             "./edgetune data --tokenizer %s --input %s --separator '<|endoftext|>' --valid-fraction 0.05 --seed 1 -o %s",
             model, text, tokens);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "./edgetune train --model %s --data %s --out %s --steps 3 --batch-size 2 --seq-len 64 --lr 1e-4 "
             "--eval-every 3 --eval-batches 2 --metrics %s/m.jsonl",
             model, tokens, out, out);
    assert_int_equal(run(cmd), 0);
    char path[700];
    snprintf(path, sizeof path, "%s/model.gguf", out);
    et_model m;
    et_err e = {0};
    assert_int_equal(et_model_load(&m, path, NULL, &e), 0);
    assert_non_null(m.tok); /* the tokenizer travels with the model */
    assert_int_equal(m.hp.n_vocab, 512);
    et_model_free(&m);
    /* the pretrained model starts near its known loss (val 1.30 on TinyStories): below 2 nats */
    snprintf(path, sizeof path, "%s/m.jsonl", out);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    const char *v = strstr(line, "\"val_loss\":");
    assert_non_null(v);
    double val = strtod(v + 11, NULL);
    fprintf(stderr, "stories260K val loss at step 0: %.4f\n", val);
    assert_true(val > 0.5 && val < 2.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_model_outputs),
        cmocka_unit_test(test_resume_and_config),
        cmocka_unit_test(test_optim_8bit),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_stories260K_continued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
