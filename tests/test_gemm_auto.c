/* tests/test_gemm_auto.c — `--precision auto` (train/gemm_auto.h): the CPU
 * table answers for the families measured (a Sapphire Rapids /proc/cpuinfo
 * gets f32 even though the bf16 kernel runs), a calibration follows its own
 * measurement and is cached, a cache entry is honoured, hostile cache files
 * are ignored and rewritten, and the CLI shows the choice in its first line
 * and stores the resolved precision in the recipe. */
#include <math.h>
#include <sys/stat.h>

#include "../train/gemm.h"
#include "../train/gemm_auto.h"
#include "testutil.h"

static const char *SPR = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
                         "model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\nstepping\t: 8\n\n";
static const char *ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                          "model name\t: AMD EPYC 9R14\nstepping\t: 1\n\n";
static const char *OTHER = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\n"
                           "model name\t: Intel(R) Xeon(R) Platinum 8581C\nstepping\t: 2\n\n";

#define NEED_BF16()                                                                            \
    if (!et_gemm_bf16_native()) {                                                              \
        fprintf(stderr, "SKIP: needs the native bf16 kernel (AVX512_BF16) for the table/calibration paths\n"); \
        skip();                                                                                \
    }

static void use_cpu(const char *name, const char *text) {
    test_spit(test_tmp(name), text);
    setenv("ET_CPUINFO", test_tmp(name), 1);
}

static void test_table(void **state) {
    (void)state;
    NEED_BF16();
    et_gemm_auto ga;
    et_err e = {0};
    use_cpu("spr", SPR);
    assert_int_equal(et_gemm_auto_choose(576, 1536, 1024, 2, NULL, &ga, &e), 0);
    assert_int_equal(ga.precision, ET_GEMM_F32); /* the bf16 kernel runs here, but SPR measured slower */
    assert_non_null(strstr(ga.why, "Sapphire Rapids"));
    assert_non_null(strstr(ga.cpu, "family 6 model 143"));
    use_cpu("zen4", ZEN4);
    assert_int_equal(et_gemm_auto_choose(576, 1536, 1024, 2, NULL, &ga, &e), 0);
    assert_int_equal(ga.precision, ET_GEMM_BF16);
    assert_non_null(strstr(ga.why, "Zen 4"));
    unsetenv("ET_CPUINFO");
}

/* Not in the table: measured; the choice follows the rates it reports; cached; the cache read back. */
static void test_calibrate_and_cache(void **state) {
    (void)state;
    NEED_BF16();
    use_cpu("other", OTHER);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", test_tmp("cache1"));
    et_gemm_auto a, b;
    et_err e = {0};
    assert_int_equal(et_gemm_auto_choose(64, 172, 256, 1, dir, &a, &e), 0);
    assert_false(a.cached);
    assert_true(a.f32_gflops > 0 && a.bf16_gflops > 0);
    assert_int_equal(a.precision, a.bf16_gflops >= 1.05 * a.f32_gflops ? ET_GEMM_BF16 : ET_GEMM_F32);
    assert_non_null(strstr(a.why, "measured now"));
    assert_int_equal(et_gemm_auto_choose(64, 172, 256, 1, dir, &b, &e), 0);
    assert_true(b.cached);
    assert_int_equal(b.precision, a.precision);
    assert_true(fabs(b.f32_gflops - a.f32_gflops) < 1e-9 * a.f32_gflops + 1e-12);
    /* another shape or thread count is another entry */
    assert_int_equal(et_gemm_auto_choose(64, 172, 256, 2, dir, &b, &e), 0);
    assert_false(b.cached);
    unsetenv("ET_CPUINFO");
}

/* An entry written by hand (what another machine of this model measured) is what auto picks. */
static void test_cache_honoured(void **state) {
    (void)state;
    NEED_BF16();
    use_cpu("other", OTHER);
    char dir[512], path[600], cpu[256];
    snprintf(dir, sizeof dir, "%s", test_tmp("cache2"));
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/gemm_auto.json", dir);
    et_gemm_auto a;
    et_err e = {0};
    assert_int_equal(et_gemm_auto_choose(32, 64, 128, 1, NULL, &a, &e), 0); /* for the cpu string */
    snprintf(cpu, sizeof cpu, "%s", a.cpu);
    for (int want = 0; want < 2; want++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"schema\": \"edgetune.gemm_auto/1\", \"entries\": [{\"cpu\": \"%s\", \"threads\": 1, \"n_embd\": 32, "
                 "\"n_ff\": 64, \"rows\": 128, \"f32_gflops\": 10, \"bf16_gflops\": 5, \"precision\": \"%s\"}]}",
                 cpu, want ? "bf16" : "f32");
        test_spit(path, json);
        assert_int_equal(et_gemm_auto_choose(32, 64, 128, 1, dir, &a, &e), 0);
        assert_true(a.cached);
        assert_int_equal(a.precision, want ? ET_GEMM_BF16 : ET_GEMM_F32);
    }
    unsetenv("ET_CPUINFO");
}

/* Hostile cache files: ignored (measured again), then rewritten as a valid cache. */
static void test_cache_hostile(void **state) {
    (void)state;
    NEED_BF16();
    use_cpu("other", OTHER);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", test_tmp("cache3"));
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/gemm_auto.json", dir);
    et_gemm_auto a;
    et_err e = {0};
    assert_int_equal(et_gemm_auto_choose(32, 64, 128, 1, NULL, &a, &e), 0);
    char good[1024];
    snprintf(good, sizeof good, "{\"schema\": \"edgetune.gemm_auto/1\", \"entries\": [{\"cpu\": \"%s\", \"threads\": 1, "
             "\"n_embd\": 32, \"n_ff\": 64, \"rows\": 128, \"f32_gflops\": %%s, \"bf16_gflops\": 5, \"precision\": %%s}]}",
             a.cpu);
    char bad[6][1200];
    snprintf(bad[0], sizeof bad[0], "not json at all {{{");
    snprintf(bad[1], sizeof bad[1], "{\"schema\": \"other/9\", \"entries\": []}");
    snprintf(bad[2], sizeof bad[2], good, "10", "\"fp8\"");    /* unknown precision */
    snprintf(bad[3], sizeof bad[3], good, "-3", "\"bf16\"");   /* negative rate */
    snprintf(bad[4], sizeof bad[4], good, "\"x\"", "\"bf16\""); /* a string for a number */
    snprintf(bad[5], sizeof bad[5], good, "10", "7");          /* a number for a string */
    for (int i = 0; i < 6; i++) {
        test_spit(path, bad[i]);
        assert_int_equal(et_gemm_auto_choose(32, 64, 128, 1, dir, &a, &e), 0);
        assert_false(a.cached);
        assert_int_equal(et_gemm_auto_choose(32, 64, 128, 1, dir, &a, &e), 0);
        assert_true(a.cached); /* rewritten valid */
    }
    /* a file over the 1 MB bound */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < (1 << 20) + 10; i++) fputc(' ', f);
    fclose(f);
    assert_int_equal(et_gemm_auto_choose(32, 64, 128, 1, dir, &a, &e), 0);
    assert_false(a.cached);
    unsetenv("ET_CPUINFO");
}

/* Without the native kernel: f32 by rule, nothing measured. */
static void test_portable(void **state) {
    (void)state;
    et_gemm_force_portable(1);
    et_gemm_auto a;
    et_err e = {0};
    assert_int_equal(et_gemm_auto_choose(64, 172, 256, 1, NULL, &a, &e), 0);
    et_gemm_force_portable(0);
    assert_int_equal(a.precision, ET_GEMM_F32);
    assert_true(a.f32_gflops == 0 && a.bf16_gflops == 0);
    assert_non_null(strstr(a.why, "no native bf16"));
    assert_int_equal(et_gemm_auto_choose(0, 172, 256, 1, NULL, &a, &e), ET_EUSAGE);
}

/* The CLI: `train --precision auto` shows the choice in its first line and stores the resolved
 * precision in recipe.json (so --resume keeps it). */
static void test_cli(void **state) {
    (void)state;
    const char *s = shared_path("models/stories260K/stories260K.gguf");
    const char *txt = shared_path("data/tinystories_sample.txt");
    if (!s || !txt || access("./edgetune", X_OK)) {
        fprintf(stderr, "SKIP: needs ../shared/models/stories260K and ./edgetune\n");
        skip();
    }
    char cmd[2048];
    char *t = test_slurp(txt);
    assert_non_null(t);
    t[20000] = 0;
    test_spit(test_tmp("t.txt"), t);
    free(t);
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s", s, test_tmp("t.txt"), test_tmp("t.h5"));
    assert_int_equal(test_run(cmd), 0);
    test_spit(test_tmp("spr"), SPR);
    snprintf(cmd, sizeof cmd, "ET_CPUINFO=%s ET_CACHE_DIR=%s ./edgetune train --data %s --tokenizer %s --n-embd 32 --n-layer 1 "
             "--n-head 4 --n-ff 64 --batch-size 2 --seq-len 32 --steps 1 --threads 1 --precision auto --out %s",
             test_tmp("spr"), test_tmp("cache4"), test_tmp("t.h5"), s, test_tmp("run"));
    assert_int_equal(test_run(cmd), 0);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(log);
    if (et_gemm_bf16_native()) assert_non_null(strstr(log, "f32 GEMMs (auto, from the CPU table: Intel Sapphire Rapids"));
    else assert_non_null(strstr(log, "f32 GEMMs (auto: no native bf16"));
    free(log);
    char rp[600];
    snprintf(rp, sizeof rp, "%s/recipe.json", test_tmp("run"));
    char *r = test_slurp(rp);
    assert_non_null(r);
    assert_non_null(strstr(r, "\"precision\":\t\"f32\""));
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),        cmocka_unit_test(test_calibrate_and_cache),
        cmocka_unit_test(test_cache_honoured), cmocka_unit_test(test_cache_hostile),
        cmocka_unit_test(test_portable),     cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
