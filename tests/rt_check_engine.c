/* tests/rt_check_engine.c — the engine checks that must also hold on
 * aarch64, as a runtime-only program (C11 + libm + pthreads: no cmocka,
 * HDF5 or cJSON exist for the cross target).  `make cross` builds it for
 * aarch64 and tests/test_cross.c runs it under qemu-user:
 *   - every SIMD path this CPU has (NEON on aarch64) gives bit-identical dot
 *     products to the scalar reference, for every weight type;
 *   - the same for K-quant blocks of random bytes (Q2_K .. Q6_K);
 *   - whole-model logits are bit-identical between the paths (the shared
 *     models, rand-llama-256 quantized here to Q4_1, Q5_1, Q2_K, Q3_K_M
 *     and Q5_K_M, and stories260K to Q3_K_M: IQ4_NL, Q5_0, Q5_1 tensors);
 *   - stories260K reproduces ../shared/golden/stories260K_greedy.json.
 * Prints one line per check; exit status 0 when all pass, 1 otherwise.
 * Usage: rt_check_engine [SHARED_DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/engine.h"
#include "../engine/kernels.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"

static int failures = 0;

#define CHECK(cond, ...)                          \
    do {                                          \
        if (!(cond)) {                            \
            printf("FAIL: " __VA_ARGS__);         \
            printf("\n");                         \
            failures++;                           \
        }                                         \
    } while (0)

static uint64_t rs = 88172645463325252ULL;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static const char *const ISAS[] = {"avx2", "avx512", "avx512vnni", "neon"};

static void check_dots(void) {
    static const uint32_t types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
                                     GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL};
    const et_kernels *sc = et_kernels_get("scalar");
    for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
        const et_kernels *kk = et_kernels_get(ISAS[k]);
        if (!kk) continue;
        int n_checked = 0;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (int n = 256; n <= 1280; n += 1024) {
                uint32_t t = types[ti];
                float *w = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n);
                uint8_t *wq = malloc(et_quant_row_bytes(t, n)), *xq = malloc(et_act_bytes(t, n) + 64);
                for (int trial = 0; trial < 3; trial++) {
                    for (int i = 0; i < n; i++) {
                        w[i] = frand() * (trial == 2 && i % 31 == 0 ? 30.0f : 1.0f);
                        x[i] = frand() * (trial == 1 ? 1e-3f : 2.0f);
                    }
                    if (trial == 1) for (int i = 32; i < 64; i++) w[i] = 0.25f;   /* a constant block */
                    et_quantize_row(t, w, wq, n);
                    et_act_convert(t, x, xq, n);
                    int lens[3] = {n, 37, 5};
                    for (int li = 0; li < 3; li++) {
                        int m = lens[li];
                        if (li && t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16) break;
                        float a = et_kernels_dot(sc, t)(m, wq, xq), b = et_kernels_dot(kk, t)(m, wq, xq);
                        CHECK(!memcmp(&a, &b, sizeof a), "%s %s n=%d: %.9g != scalar %.9g", ISAS[k],
                              ggml_type_name(t), m, b, a);
                        n_checked++;
                    }
                    et_dot4_fn d4 = et_kernels_dot4(kk, t);
                    if (d4) {   /* the four-token kernel: x and three rescaled copies */
                        size_t xs = et_act_bytes(t, n) + 64;
                        uint8_t *x4 = malloc(4 * xs);
                        float *xp = malloc(sizeof(float) * n), got[4];
                        for (int r = 0; r < 4; r++) {
                            for (int i = 0; i < n; i++) xp[i] = x[i] * (1.0f + 0.5f * r) * (r == 3 ? 40.0f : 1.0f);
                            et_act_convert(t, xp, x4 + r * xs, n);
                        }
                        d4(n, wq, x4, xs, got);
                        for (int r = 0; r < 4; r++) {
                            float want = et_kernels_dot(sc, t)(n, wq, x4 + r * xs);
                            CHECK(!memcmp(&want, &got[r], sizeof want), "%s dot4 %s n=%d row %d: %.9g != scalar %.9g",
                                  ISAS[k], ggml_type_name(t), n, r, got[r], want);
                        }
                        n_checked++;
                        free(x4); free(xp);
                    }
                }
                free(w); free(x); free(wq); free(xq);
            }
        printf("ok: %s dot products == scalar (%d cases)\n", ISAS[k], n_checked);
    }
}

/* K-quant super-blocks of random bytes (every scale, min, high bit and
 * quant reachable) with finite fp16 scales: each path's dot == scalar. */
static void check_k_random_blocks(void) {
    static const uint32_t types[] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const size_t dofs[][2] = {{80, 82}, {108, 108}, {0, 2}, {0, 2}, {208, 208}};   /* fp16 d, dmin */
    const et_kernels *sc = et_kernels_get("scalar");
    const int n = 512;
    float x[512];
    for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
        const et_kernels *kk = et_kernels_get(ISAS[k]);
        if (!kk) continue;
        int n_checked = 0;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const uint32_t t = types[ti];
            const size_t rb = et_quant_row_bytes(t, n), bb = rb / 2;
            uint8_t *wq = malloc(rb), *xq = malloc(et_act_bytes(t, n));
            for (int trial = 0; trial < 20; trial++) {
                for (size_t i = 0; i < rb; i++) wq[i] = (uint8_t)(frand() * 128.0f + 128.0f);
                if (trial % 5 == 0) memset(wq, trial % 10 ? 0xff : 0x00, bb);
                for (int b = 0; b < 2; b++)
                    for (int d = 0; d < 2; d++) {
                        uint16_t h = et_fp32_to_fp16(frand() * 0.01f);
                        memcpy(wq + bb * (size_t)b + dofs[ti][d], &h, 2);
                    }
                for (int i = 0; i < n; i++) x[i] = frand() * (trial % 3 ? 3.0f : 100.0f);
                et_act_convert(t, x, xq, n);
                float a = et_kernels_dot(sc, t)(n, wq, xq), b = et_kernels_dot(kk, t)(n, wq, xq);
                CHECK(!memcmp(&a, &b, sizeof a), "%s %s random blocks trial %d: %.9g != scalar %.9g", ISAS[k],
                      ggml_type_name(t), trial, b, a);
                et_dot4_fn d4 = et_kernels_dot4(kk, t);
                if (d4) {   /* the four-token kernel, this activation as each row */
                    size_t xs = et_act_bytes(t, n);
                    uint8_t *x4 = malloc(4 * xs);
                    float got[4];
                    for (int r = 0; r < 4; r++) memcpy(x4 + r * xs, xq, xs);
                    d4(n, wq, x4, xs, got);
                    for (int r = 0; r < 4; r++)
                        CHECK(!memcmp(&a, &got[r], sizeof a), "%s dot4 %s random blocks trial %d row %d: %.9g != %.9g",
                              ISAS[k], ggml_type_name(t), trial, r, got[r], a);
                    free(x4);
                }
                n_checked++;
            }
            free(wq);
            free(xq);
        }
        printf("ok: %s K-quant random blocks == scalar (%d cases)\n", ISAS[k], n_checked);
    }
}

static float *logits_of(const et_engine *m, const char *isa, const int32_t *tok, int n) {
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 64;
    o.isa = isa;
    o.n_threads = 2;
    et_state *s;
    et_err e = {0};
    if (et_state_new(&s, m, &o, &e)) {
        printf("FAIL: %s\n", e.msg);
        failures++;
        return NULL;
    }
    float *lg = malloc(sizeof(float) * (size_t)n * (size_t)m->hp.n_vocab);
    if (et_forward(s, tok, n, lg, 1, &e)) {
        printf("FAIL: %s\n", e.msg);
        failures++;
    }
    et_state_free(s);
    return lg;
}

/* rand-llama-256 quantized to `ftype` in /tmp (the shared folder has no
 * llama.cpp file of Q4_1/Q5_1/Q2_K/Q3_K_M/Q5_K_M), or stories260K for
 * "stories:TYPE" (its 64-wide rows take the IQ4_NL/Q5_0/Q5_1 fallbacks);
 * path into out, 0 on success. */
static int quantize_rand(const char *shared, const char *spec, char *out, size_t cap) {
    const int st = !strncmp(spec, "stories:", 8);
    const char *type = st ? spec + 8 : spec;
    char src[1024];
    snprintf(src, sizeof src, "%s/%s", shared,
             st ? "models/stories260K/stories260K.gguf" : "golden/quant/rand-llama-256.gguf");
    snprintf(out, cap, "/tmp/rt_check_engine-%d-%s.gguf", (int)getpid(), type);
    et_quant_params p = {et_ftype_from_name(type), 0, NULL, NULL};
    et_err e = {0};
    if (et_quantize_model(src, out, &p, NULL, &e)) {
        printf("skip: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static void check_models(const char *shared) {
    static const char *const files[] = {"models/stories260K/stories260K.gguf", "golden/quant/rand-llama-256-F16.gguf",
                                        "golden/quant/rand-llama-256-Q8_0.gguf", "golden/quant/rand-llama-256-Q4_0.gguf",
                                        "golden/quant/rand-llama-256-Q4_K_M.gguf", "golden/quant/rand-llama-256-Q6_K.gguf",
                                        "Q4_1", "Q5_1", "Q2_K", "Q3_K_M", "Q5_K_M", "stories:Q3_K_M"};
    int32_t tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (int32_t)((i * 37 + 1) % 512);
    tok[0] = 1;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[1024];
        int made = !strchr(files[f], '/');
        if (made && quantize_rand(shared, files[f], path, sizeof path)) continue;
        if (!made) snprintf(path, sizeof path, "%s/%s", shared, files[f]);
        et_engine *m;
        et_err e = {0};
        if (et_engine_load(&m, path, &e)) {
            printf("skip: %s\n", e.msg);
            if (made) remove(path);
            continue;
        }
        float *ref = logits_of(m, "scalar", tok, 16);
        for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
            if (!et_kernels_get(ISAS[k]) || !ref) continue;
            float *lk = logits_of(m, ISAS[k], tok, 16);
            int same = lk && !memcmp(ref, lk, sizeof(float) * 16 * (size_t)m->hp.n_vocab);
            const char *pre = !made ? "" : strncmp(files[f], "stories:", 8) ? "rand-llama-256 -> " : "";
            CHECK(same, "%s%s: %s logits differ from scalar", pre, files[f], ISAS[k]);
            if (same) printf("ok: %s%s: %s logits == scalar\n", pre, files[f], ISAS[k]);
            free(lk);
        }
        free(ref);
        et_engine_free(m);
        if (made) remove(path);
    }
}

/* The "ids" array of the golden JSON, parsed by hand (no cJSON here). */
static int golden_ids(const char *path, int32_t *ids, int cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, "\"ids\"");
    if (!p || !(p = strchr(p, '['))) return -1;
    int k = 0;
    for (p++; *p && *p != ']' && k < cap;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) { p++; continue; }
        ids[k++] = (int32_t)v;
        p = end;
    }
    return k;
}

static void check_greedy(const char *shared) {
    char mp[1024], gp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K/stories260K.gguf", shared);
    snprintf(gp, sizeof gp, "%s/golden/stories260K_greedy.json", shared);
    int32_t want[512];
    int n = golden_ids(gp, want, 512);
    et_engine *m;
    et_err e = {0};
    if (n < 2 || et_engine_load(&m, mp, &e)) {
        printf("skip: greedy golden (%s)\n", n < 2 ? gp : e.msg);
        return;
    }
    const char *isas[] = {NULL};   /* the best path; scalar == it is checked above */
    for (int k = 0; k < 1; k++) {
        et_state_opts o = et_state_default_opts();
        o.n_ctx = 512;
        o.isa = isas[k];
        et_state *s;
        if (et_state_new(&s, m, &o, &e)) { printf("FAIL: %s\n", e.msg); failures++; continue; }
        et_sampler smp;
        et_sampler_params sp = et_sampler_default_params();
        sp.temp = 0;
        et_sampler_init(&smp, &sp, m->hp.n_vocab, &e);
        int32_t out[512];
        int n_out = 0;
        if (et_generate(s, &smp, want, 1, n - 1, 0, NULL, NULL, out, &n_out, NULL, &e)) {
            printf("FAIL: %s\n", e.msg);
            failures++;
        }
        int bad = n_out != n - 1;
        for (int i = 0; i < n_out && !bad; i++) bad = out[i] != want[i + 1];
        CHECK(!bad, "stories260K greedy (%s) differs from the golden tokens", et_state_isa(s));
        if (!bad) printf("ok: stories260K %d greedy tokens == golden (%s)\n", n_out, et_state_isa(s));
        et_sampler_free(&smp);
        et_state_free(s);
    }
    et_engine_free(m);
}

int main(int argc, char **argv) {
    const char *shared = argc > 1 ? argv[1] : et_shared_dir();
    et_kernels_init();
    printf("best SIMD path: %s\n", et_kernels_best()->name);
    check_dots();
    check_k_random_blocks();
    check_models(shared);
    check_greedy(shared);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
