/* tests/test_cross_aarch64.c — edgerun cross-built for aarch64
 * (build-cross/edgerun-aarch64, `make cross`) run under qemu-user gives the
 * same results as on x86-64 (issue 4 §4):
 *  - greedy generation from BOS with stories260K on the NEON path: the text
 *    of ../shared/golden/stories260K_greedy.json (255 tokens) and exactly
 *    the x86-64 edgerun's output;
 *  - the same on the scalar path (--isa scalar), 64 tokens;
 *  - `--perplexity` of the golden NLL sentence: byte-identical output on
 *    both machines (the engine's kernels are bit-identical across paths,
 *    engine/kernels.h), NLL within 1e-3 of
 *    ../shared/models/stories260K/golden_nll.json.
 * Skips with a message when aarch64-linux-gnu-gcc or qemu-aarch64
 * (qemu-aarch64-static) is absent (`ET_WANT_CROSS=1 scripts/deps.sh`
 * installs them); `make test` builds the binary whenever the compiler exists.
 * Under ET_SANITIZED (make check) only the NEON run is repeated: the
 * emulated binary is not sanitized. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>

#define CROSS_BIN "build-cross/edgerun-aarch64"
#define X86_BIN "./edgerun"
#define STORIES "models/stories260K/stories260K.gguf"

static const char *qemu;   /* qemu-aarch64 or qemu-aarch64-static */

static int have_cmd(const char *name) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

/* Run `[qemu] bin args`, stdout into *out, stderr into *err (malloc'd).
 * Returns the exit status. */
static int run(const char *emu, const char *bin, const char *args, char **out, char **err) {
    char o[512], r[512], cmd[4096];
    static int k = 0;
    snprintf(o, sizeof o, "%s/out%d.txt", test_tmpdir(), k);
    snprintf(r, sizeof r, "%s/err%d.txt", test_tmpdir(), k++);
    snprintf(cmd, sizeof cmd, "%s%s'%s' %s >'%s' 2>'%s'", emu ? emu : "", emu ? " " : "", bin, args, o, r);
    int st = system(cmd);
    *out = read_all(o);
    *err = read_all(r);
    assert_non_null(*out);
    assert_non_null(*err);
    if (st != 0) fprintf(stderr, "FAILED (status %d): %s\n%s", st, cmd, *err);
    return st;
}

static int setup(void **state) {
    (void)state;
    if (!have_cmd("aarch64-linux-gnu-gcc")) {
        fprintf(stderr, "SKIP: aarch64-linux-gnu-gcc not installed (ET_WANT_CROSS=1 scripts/deps.sh)\n");
        return 0;
    }
    if (have_cmd("qemu-aarch64")) qemu = "qemu-aarch64";
    else if (have_cmd("qemu-aarch64-static")) qemu = "qemu-aarch64-static";
    else fprintf(stderr, "SKIP: qemu-aarch64 not installed (Debian qemu-user; ET_WANT_CROSS=1 scripts/deps.sh)\n");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    return system(cmd) == 0 ? 0 : -1;
}

#define CROSS_OR_SKIP()                                                                              \
    do {                                                                                             \
        if (!qemu) skip();                                                                           \
        if (access(CROSS_BIN, X_OK) != 0) fail_msg("%s missing: `make cross` did not build it", CROSS_BIN); \
        if (access(X86_BIN, X_OK) != 0) fail_msg("%s missing: run `make`", X86_BIN);                \
    } while (0)

/* Greedy generation of n tokens from BOS on `isa`, aarch64 vs x86-64. */
static void greedy(const char *isa, int n, const char *golden_text) {
    SHARED_OR_SKIP(model, STORIES);
    char args[4096];
    snprintf(args, sizeof args, "-m '%s' --temp 0 -n %d --ignore-eos --stats --isa %s", model, n, isa);
    char *a_out, *a_err, *x_out, *x_err;
    assert_int_equal(run(qemu, CROSS_BIN, args, &a_out, &a_err), 0);
    char want[64];
    snprintf(want, sizeof want, "SIMD %s,", isa);
    if (!strstr(a_err, want)) fail_msg("aarch64 edgerun did not use the %s path:\n%s", isa, a_err);
    snprintf(args, sizeof args, "-m '%s' --temp 0 -n %d --ignore-eos", model, n);
    assert_int_equal(run(NULL, X86_BIN, args, &x_out, &x_err), 0);
    if (strcmp(a_out, x_out)) fail_msg("aarch64 (%s) text differs from x86-64:\n--- aarch64\n%s\n--- x86-64\n%s", isa, a_out, x_out);
    size_t n_out = strlen(a_out);
    if (n_out && a_out[n_out - 1] == '\n') a_out[--n_out] = 0;   /* edgerun ends with a newline */
    if (golden_text && strcmp(a_out, golden_text))
        fail_msg("aarch64 (%s) text differs from the golden:\n--- aarch64\n%s\n--- golden\n%s", isa, a_out, golden_text);
    fprintf(stderr, "aarch64 %s: %d greedy tokens, same text as x86-64%s\n", isa, n,
            golden_text ? " and the golden" : "");
    free(a_out); free(a_err); free(x_out); free(x_err);
}

static void test_greedy_neon(void **state) {
    (void)state;
    CROSS_OR_SKIP();
    SHARED_OR_SKIP(gp, "golden/stories260K_greedy.json");
    char *js = read_all(gp);
    assert_non_null(js);
    cJSON *j = cJSON_Parse(js);
    assert_non_null(j);
    const cJSON *text = cJSON_GetObjectItem(j, "text"), *steps = cJSON_GetObjectItem(j, "n_steps");
    assert_true(cJSON_IsString(text) && cJSON_IsNumber(steps));
    greedy("neon", steps->valueint, text->valuestring);
    cJSON_Delete(j);
    free(js);
}

static void test_greedy_scalar(void **state) {
    (void)state;
    CROSS_OR_SKIP();
    if (getenv("ET_SANITIZED")) { fprintf(stderr, "SKIP: scalar run not repeated under sanitizers\n"); skip(); }
    greedy("scalar", 64, NULL);
}

static void test_perplexity(void **state) {
    (void)state;
    CROSS_OR_SKIP();
    if (getenv("ET_SANITIZED")) { fprintf(stderr, "SKIP: perplexity run not repeated under sanitizers\n"); skip(); }
    SHARED_OR_SKIP(model, STORIES);
    SHARED_OR_SKIP(gp, "models/stories260K/golden_nll.json");
    char *js = read_all(gp);
    assert_non_null(js);
    cJSON *j = cJSON_Parse(js);
    assert_non_null(j);
    const cJSON *sent = cJSON_GetObjectItem(j, "sentence"), *nll = cJSON_GetObjectItem(j, "nll");
    assert_true(cJSON_IsString(sent) && cJSON_IsNumber(nll));
    char txt[512];
    snprintf(txt, sizeof txt, "%s/sentence.txt", test_tmpdir());
    FILE *f = fopen(txt, "wb");
    assert_non_null(f);
    fputs(sent->valuestring, f);
    fclose(f);
    char args[4096];
    snprintf(args, sizeof args, "-m '%s' --perplexity '%s'", model, txt);
    char *a_out, *a_err, *x_out, *x_err;
    assert_int_equal(run(qemu, CROSS_BIN, args, &a_out, &a_err), 0);
    assert_int_equal(run(NULL, X86_BIN, args, &x_out, &x_err), 0);
    if (strcmp(a_out, x_out)) fail_msg("perplexity differs:\n--- aarch64\n%s--- x86-64\n%s", a_out, x_out);
    const char *p = strstr(a_out, "NLL ");
    assert_non_null(p);
    double got = atof(p + 4);
    fprintf(stderr, "aarch64 perplexity: %s", a_out);
    if (fabs(got - nll->valuedouble) > 1e-3) fail_msg("NLL %.6f, golden %.6f", got, nll->valuedouble);
    free(a_out); free(a_err); free(x_out); free(x_err);
    cJSON_Delete(j);
    free(js);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_neon),
        cmocka_unit_test(test_greedy_scalar),
        cmocka_unit_test(test_perplexity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
