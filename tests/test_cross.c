/* tests/test_cross.c — the aarch64 build under qemu-user (DESIGN §4: the
 * same tokens on x86-64 and aarch64).  `make test` runs `make cross` first
 * when aarch64-linux-gnu-gcc is installed (ET_WANT_CROSS=1 scripts/deps.sh
 * installs it); without it, or without qemu-aarch64, these tests skip.
 *  - build-cross/rt_check_engine: NEON == scalar bit for bit (dots, K-quant
 *    blocks of random bytes, and logits of every shared model and of
 *    rand-llama-256 quantized to Q4_1/Q5_1/Q2_K/Q3_K_M/Q5_K_M and of
 *    stories260K quantized to Q3_K_M, with IQ4_NL), stories260K greedy ==
 *    golden;
 *  - build-cross/edgerun prints the same 255 greedy tokens' text as the
 *    x86-64 ./edgerun;
 *  - and the same 32 greedy tokens' text for the real SmolLM2-135M-Instruct
 *    Q4_1 file (NEON Q4_1 x Q8_1 kernels; tests/test_smollm2.c checks
 *    x86-64's tokens against llama.cpp's), when the file is present. */
#include "testutil.h"

#include <sys/wait.h>

static const char *qemu(void) {
    static const char *const cands[] = {"/usr/bin/qemu-aarch64", "/usr/bin/qemu-aarch64-static", NULL};
    for (int i = 0; cands[i]; i++)
        if (access(cands[i], X_OK) == 0) return cands[i];
    return NULL;
}

/* Run cmd, capture stdout (malloc'd), return the exit status. */
static int run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t got;
    while ((got = fread(b + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    int st = pclose(p);
    *out = b;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define NEED_CROSS(bin)                                                                             \
    const char *q = qemu();                                                                         \
    if (!q || access(bin, X_OK) != 0) {                                                             \
        fprintf(stderr, "SKIP: %s or qemu-aarch64 absent (install gcc-aarch64-linux-gnu, "          \
                "libc6-dev-arm64-cross, qemu-user; make cross)\n", bin);                            \
        skip();                                                                                     \
    }

static void test_rt_check_under_qemu(void **state) {
    (void)state;
    NEED_CROSS("build-cross/rt_check_engine");
    SHARED_OR_SKIP(mp, "models/stories260K/stories260K.gguf");
    (void)mp;
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s build-cross/rt_check_engine %s", q, et_shared_dir());
    int rc = run(cmd, &out);
    fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "best SIMD path: neon"));
    assert_non_null(strstr(out, "ok: neon dot products == scalar"));
    assert_non_null(strstr(out, "ok: neon K-quant random blocks == scalar"));
    assert_non_null(strstr(out, "rand-llama-256 -> Q3_K_M: neon logits == scalar"));
    assert_non_null(strstr(out, "stories:Q3_K_M: neon logits == scalar"));
    assert_non_null(strstr(out, "greedy tokens == golden (neon)"));
    assert_int_equal(rc, 0);
    free(out);
}

static void test_edgerun_same_text(void **state) {
    (void)state;
    NEED_CROSS("build-cross/edgerun");
    SHARED_OR_SKIP(mp, "models/stories260K/stories260K.gguf");
    if (access("edgerun", X_OK) != 0) skip();
    char cmd[1024], *a = NULL, *b = NULL;
    snprintf(cmd, sizeof cmd, "./edgerun -m %s -n 255 --temp 0 --ignore-eos", mp);
    assert_int_equal(run(cmd, &a), 0);
    snprintf(cmd, sizeof cmd, "%s build-cross/edgerun -m %s -n 255 --temp 0 --ignore-eos", q, mp);
    assert_int_equal(run(cmd, &b), 0);
    assert_true(strlen(a) > 500);
    assert_string_equal(a, b);
    /* sampled text is the same too (the sampler and its RNG are portable) */
    free(a);
    free(b);
    snprintf(cmd, sizeof cmd, "./edgerun -m %s -n 60 --seed 42 -p 'One day' -t 2", mp);
    assert_int_equal(run(cmd, &a), 0);
    snprintf(cmd, sizeof cmd, "%s build-cross/edgerun -m %s -n 60 --seed 42 -p 'One day'", q, mp);
    assert_int_equal(run(cmd, &b), 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* ../shared/models/smollm2-135m-instruct/, $ET_MODEL_CACHE, ~/.cache/edgetune
 * (scripts/get_models.sh puts it there), as tests/test_smollm2.c. */
static const char *smollm2_path(void) {
    static char path[3][1024];   /* (et_shared_dir and $HOME are short) */
    const char *cache = getenv("ET_MODEL_CACHE"), *home = getenv("HOME");
    snprintf(path[0], sizeof path[0], "%s/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", et_shared_dir());
    snprintf(path[1], sizeof path[1], "%s/SmolLM2-135M-Instruct.Q4_1.gguf", cache && *cache ? cache : "/nonexistent");
    snprintf(path[2], sizeof path[2], "%s/.cache/edgetune/SmolLM2-135M-Instruct.Q4_1.gguf", home ? home : "/nonexistent");
    for (int i = 0; i < 3; i++)
        if (access(path[i], R_OK) == 0) return path[i];
    return NULL;
}

static void test_edgerun_smollm2_q4_1(void **state) {
    (void)state;
    NEED_CROSS("build-cross/edgerun");
    const char *mp = smollm2_path();
    if (!mp) {
        fprintf(stderr, "SKIP: SmolLM2-135M-Instruct.Q4_1.gguf not found (scripts/get_models.sh fetches it into "
                        "~/.cache/edgetune)\n");
        skip();
    }
    if (access("edgerun", X_OK) != 0) skip();
    char cmd[4096], *a = NULL, *b = NULL;
    snprintf(cmd, sizeof cmd, "./edgerun -m %s -n 32 -c 64 --temp 0 --ignore-eos -p 'The capital of France is'", mp);
    assert_int_equal(run(cmd, &a), 0);
    snprintf(cmd, sizeof cmd, "%s build-cross/edgerun -m %s -n 32 -c 64 --temp 0 --ignore-eos -p 'The capital of France is'",
             q, mp);
    assert_int_equal(run(cmd, &b), 0);
    fprintf(stderr, "%s\n", b);
    /* llama.cpp's 32 tokens (tests/test_smollm2.c) read, from the prompt on: */
    assert_non_null(strstr(a, "The capital of France is Paris."));
    assert_string_equal(a, b);
    free(a);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rt_check_under_qemu),
        cmocka_unit_test(test_edgerun_same_text),
        cmocka_unit_test(test_edgerun_smollm2_q4_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
