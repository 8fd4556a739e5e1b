/* tests/test_engine.c — the reference inference engine.
 *  - stories260K (GGUF) reproduces the 255 greedy tokens of
 *    ../shared/golden/stories260K_greedy.json (PyTorch float64 reference);
 *  - logits agree with llama.cpp's (../shared/golden/llamacpp_logits.h5) for
 *    every model file there: F32/F16 within 1% of max |logit|; quantized
 *    files agree on the argmax at no fewer positions than llama.cpp's own
 *    quantized file agrees with its F32 file (both figures printed);
 *  - every SIMD path gives bit-identical dot products and logits to the
 *    scalar reference (also for Q4_1/Q5_1 models quantized here from the
 *    F32 rand-llama-256); batch size, thread count and KV type checks;
 *  - LoRA adapters (one and two at once) against merged F32 weights;
 *  - samplers: seeded determinism, filters, and the empirical distribution;
 *  - bad inputs: wrong shape, unsupported/unknown type, truncated file,
 *    adapters made for another base — a clear error naming the culprit. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <math.h>

#include "../engine/engine.h"
#include "../engine/internal.h"
#include "../engine/kernels.h"
#include "../engine/repack.h"
#include "../export/model.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"

#define STORIES "models/stories260K/stories260K.gguf"

/* ------------------------------------------------------------ helpers */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    if (b) *n = (size_t)len;
    return b;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static et_engine *load_or_fail(const char *path) {
    et_engine *m = NULL;
    et_err e = {0};
    if (et_engine_load(&m, path, &e)) fail_msg("%s", e.msg);
    return m;
}

static et_state *state_or_fail(const et_engine *m, int n_ctx, int threads, const char *isa, uint32_t kv) {
    et_state_opts o = et_state_default_opts();
    o.n_ctx = n_ctx;
    o.n_threads = threads;
    o.isa = isa;
    o.kv_type = kv;
    et_state *s = NULL;
    et_err e = {0};
    if (et_state_new(&s, m, &o, &e)) fail_msg("%s", e.msg);
    return s;
}

/* Logits for every position of tokens[0..n) from an empty cache. */
static float *all_logits(et_state *s, const int32_t *tok, int n, int chunk) {
    int nv = s->m->hp.n_vocab;
    float *lg = malloc(sizeof(float) * (size_t)n * (size_t)nv);
    assert_non_null(lg);
    et_err e = {0};
    et_state_reset(s);
    for (int i = 0; i < n; i += chunk) {
        int c = n - i < chunk ? n - i : chunk;
        if (et_forward(s, tok + i, c, lg + (size_t)i * nv, 1, &e)) fail_msg("%s", e.msg);
    }
    return lg;
}

/* Under ASan+UBSan (make check) the slowest tests use less data. */
static int sanitized(void) { return getenv("ET_SANITIZED") != NULL; }

/* The SIMD paths this CPU and build have, besides scalar. */
static const char *const ISAS[] = {"avx2", "avx512", "avx512vnni", "neon"};

/* ------------------------------------------------------------ greedy golden */

static void greedy_matches_golden(et_engine *m, const char *isa, int threads, uint32_t kv) {
    SHARED_OR_SKIP(gp, "golden/stories260K_greedy.json");
    char *txt = read_text(gp);
    assert_non_null(txt);
    cJSON *j = cJSON_Parse(txt);
    assert_non_null(j);
    cJSON *prompt = cJSON_GetObjectItem(j, "prompt_ids"), *ids = cJSON_GetObjectItem(j, "ids");
    cJSON *steps = cJSON_GetObjectItem(j, "n_steps");
    assert_non_null(prompt);
    assert_non_null(ids);
    assert_non_null(steps);
    int n_prompt = cJSON_GetArraySize(prompt), n_ids = cJSON_GetArraySize(ids), n_steps = steps->valueint;
    /* the JSON's ids are the prompt followed by the n_steps generated tokens */
    assert_int_equal(n_ids, n_prompt + n_steps);
    for (int i = 0; i < n_prompt; i++)
        assert_int_equal(cJSON_GetArrayItem(prompt, i)->valueint, cJSON_GetArrayItem(ids, i)->valueint);

    et_state *s = state_or_fail(m, 512, threads, isa, kv);
    et_sampler smp;
    et_sampler_params sp = et_sampler_default_params();
    sp.temp = 0;
    et_err e = {0};
    assert_int_equal(et_sampler_init(&smp, &sp, m->hp.n_vocab, &e), 0);
    int32_t *pr = malloc(sizeof(int32_t) * (size_t)n_prompt), *out = malloc(sizeof(int32_t) * (size_t)n_steps);
    for (int i = 0; i < n_prompt; i++) pr[i] = cJSON_GetArrayItem(prompt, i)->valueint;
    int n_out = 0;
    if (et_generate(s, &smp, pr, n_prompt, n_steps, 0, NULL, NULL, out, &n_out, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(n_out, n_steps);
    for (int i = 0; i < n_steps; i++) {
        int want = cJSON_GetArrayItem(ids, n_prompt + i)->valueint;
        if (out[i] != want)
            fail_msg("greedy token %d: got %d, golden %d (isa %s, %d threads, KV %s)", i, out[i], want,
                     et_state_isa(s), threads, kv == GGML_TYPE_F16 ? "F16" : "F32");
    }
    free(pr);
    free(out);
    et_sampler_free(&smp);
    et_state_free(s);
    cJSON_Delete(j);
    free(txt);
}

static void test_greedy_stories260K(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    et_engine *m = load_or_fail(mp);
    assert_int_equal(m->hp.n_vocab, 512);
    assert_int_equal(m->hp.n_embd, 64);
    assert_int_equal(m->hp.n_layer, 5);
    assert_int_equal(m->hp.head_dim, 8);
    greedy_matches_golden(m, "scalar", 1, GGML_TYPE_F16);
    greedy_matches_golden(m, "scalar", 1, GGML_TYPE_F32);
    greedy_matches_golden(m, NULL, 2, GGML_TYPE_F16);   /* best SIMD path, two threads */
    et_engine_free(m);
}

/* ------------------------------------------------------------ llama.cpp logits */

static float *h5_read(hid_t f, const char *name, hsize_t *dims, int rank_want) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    assert_int_equal(rank, rank_want);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *buf = malloc(sizeof(float) * n);
    assert_non_null(buf);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    return buf;
}

static int argmax_row(const float *x, int n) { return et_argmax(x, n); }

static void test_llamacpp_logits(void **state) {
    (void)state;
    SHARED_OR_SKIP(hp, "golden/llamacpp_logits.h5");
    hid_t f = H5Fopen(hp, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t td[1], ld[2];
    float *tokf = NULL;
    int32_t tok[64];
    {
        hid_t d = H5Dopen2(f, "/tokens", H5P_DEFAULT);
        assert_true(d >= 0);
        hid_t sp = H5Dget_space(d);
        H5Sget_simple_extent_dims(sp, td, NULL);
        assert_int_equal(td[0], 64);
        assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok) >= 0);
        H5Sclose(sp);
        H5Dclose(d);
    }
    (void)tokf;
    int T = (int)td[0];
    /* llama.cpp's F32 rand-llama-256 logits: the reference its quantized files are scored against */
    float *ref32 = h5_read(f, "/logits/rand-llama-256.gguf", ld, 2);
    assert_non_null(ref32);
    static const struct { const char *file, *dir; int quantized; } cases[] = {
        {"stories260K.gguf", "models/stories260K", 0},
        {"rand-llama-256.gguf", "golden/quant", 0},
        {"rand-llama-256-F16.gguf", "golden/quant", 0},
        {"rand-llama-256-Q8_0.gguf", "golden/quant", 1},
        {"rand-llama-256-Q6_K.gguf", "golden/quant", 1},
        {"rand-llama-256-Q4_K_M.gguf", "golden/quant", 1},
        {"rand-llama-256-Q4_0.gguf", "golden/quant", 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char rel[256], ds[256];
        snprintf(rel, sizeof rel, "%s/%s", cases[c].dir, cases[c].file);
        snprintf(ds, sizeof ds, "/logits/%s", cases[c].file);
        const char *mp = shared_path(rel);
        if (!mp) { fprintf(stderr, "SKIP: %s not found\n", rel); continue; }
        float *ref = h5_read(f, ds, ld, 2);
        assert_non_null(ref);
        assert_int_equal(ld[0], (hsize_t)T);
        et_engine *m = load_or_fail(mp);
        int nv = m->hp.n_vocab;
        assert_int_equal(ld[1], (hsize_t)nv);
        et_state *s = state_or_fail(m, 128, 1, NULL, GGML_TYPE_F16);
        float *lg = all_logits(s, tok, T, T);
        double maxabs = 0, maxdiff = 0;
        int agree = 0, agree_ref = 0;
        for (int t = 0; t < T; t++) {
            for (int i = 0; i < nv; i++) {
                double r = ref[(size_t)t * nv + i], d = fabs(lg[(size_t)t * nv + i] - r);
                if (fabs(r) > maxabs) maxabs = fabs(r);
                if (d > maxdiff) maxdiff = d;
            }
            int a = argmax_row(lg + (size_t)t * nv, nv), b = argmax_row(ref + (size_t)t * nv, nv);
            agree += a == b;
            agree_ref += b == argmax_row(ref32 + (size_t)t * nv, nv);
        }
        if (!cases[c].quantized) {
            fprintf(stderr, "  %-28s max |diff| %.5f, max |logit| %.3f (%.4f%%), argmax agreement %d/%d\n",
                    cases[c].file, maxdiff, maxabs, 100 * maxdiff / maxabs, agree, T);
            if (!(maxdiff < 0.01 * maxabs))
                fail_msg("%s: max |diff| %.5f is not under 1%% of max |logit| %.3f", cases[c].file, maxdiff, maxabs);
        } else {
            fprintf(stderr, "  %-28s argmax = llama.cpp same file: %d/%d (%.1f%%); llama.cpp file vs its F32: %d/%d "
                    "(%.1f%%); max |diff| %.4f\n", cases[c].file, agree, T, 100.0 * agree / T, agree_ref, T,
                    100.0 * agree_ref / T, maxdiff);
            if (agree < agree_ref)
                fail_msg("%s: argmax agrees with llama.cpp at %d/%d positions, fewer than llama.cpp's own %d/%d",
                         cases[c].file, agree, T, agree_ref, T);
        }
        free(lg);
        free(ref);
        et_state_free(s);
        et_engine_free(m);
    }
    free(ref32);
    H5Fclose(f);
}

/* ------------------------------------------------------------ consistency */

/* The same logits, bit for bit, whatever the chunking, thread count and SIMD path. */
/* rand-llama-256 quantized to an ftype edgetune writes but ../shared has
 * no llama.cpp file of (Q4_1, Q5_1, the K-quant mixes), or stories260K
 * when the spec is "stories:TYPE" (its 64-wide rows take the fallbacks:
 * IQ4_NL, Q5_0, Q5_1, Q8_0, F16): a path in the test's temp dir, or NULL
 * when the F32 source is absent. */
static const char *quantized_rand(const char *spec) {
    const int st = !strncmp(spec, "stories:", 8);
    const char *type = st ? spec + 8 : spec;
    const char *src = shared_path(st ? STORIES : "golden/quant/rand-llama-256.gguf");
    if (!src) return NULL;
    static char out[4][512];
    static int k = 0;
    char *p = out[k++ & 3];
    snprintf(p, sizeof out[0], "%s/%s-%s.gguf", test_tmpdir(), st ? "stories260K" : "rand-llama-256", type);
    if (access(p, R_OK) == 0) return p;
    et_quant_params qp = {et_ftype_from_name(type), 0, NULL, NULL};
    et_err e = {0};
    if (et_quantize_model(src, p, &qp, NULL, &e)) fail_msg("%s", e.msg);
    return p;
}

static void test_bitwise_consistency(void **state) {
    (void)state;
    static const char *files[] = {STORIES, "golden/quant/rand-llama-256-Q4_K_M.gguf", "Q4_1",
                                  "golden/quant/rand-llama-256-Q8_0.gguf", "golden/quant/rand-llama-256-Q4_0.gguf",
                                  "golden/quant/rand-llama-256-F16.gguf", "golden/quant/rand-llama-256-Q6_K.gguf",
                                  "Q5_1", "Q3_K_M", "Q2_K", "Q5_K_M", "stories:Q3_K_M"};
    int32_t tok[40];
    for (int i = 0; i < 40; i++) tok[i] = (int32_t)((i * 37 + 1) % 512);
    tok[0] = 1;
    int done = 0;
    size_t n_files = sanitized() ? 3 : sizeof files / sizeof files[0];
    for (size_t fi = 0; fi < n_files; fi++) {
        const char *mp = strchr(files[fi], '/') ? shared_path(files[fi]) : quantized_rand(files[fi]);
        if (!mp) continue;
        done++;
        et_engine *m = load_or_fail(mp);
        size_t nlg = (size_t)40 * (size_t)m->hp.n_vocab;
        et_state *s0 = state_or_fail(m, 64, 1, "scalar", GGML_TYPE_F16);
        float *ref = all_logits(s0, tok, 40, 40);
        float *one = all_logits(s0, tok, 40, 1);     /* token by token through the KV cache */
        if (memcmp(ref, one, nlg * sizeof(float))) fail_msg("%s: batched and incremental logits differ", files[fi]);
        float *odd = all_logits(s0, tok, 40, 7);
        if (memcmp(ref, odd, nlg * sizeof(float))) fail_msg("%s: chunks of 7 differ from one batch", files[fi]);
        et_state *s2 = state_or_fail(m, 64, 2, "scalar", GGML_TYPE_F16);
        float *two = all_logits(s2, tok, 40, 40);
        if (memcmp(ref, two, nlg * sizeof(float))) fail_msg("%s: 2 threads differ from 1", files[fi]);
        for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
            if (!et_kernels_get(ISAS[k])) continue;
            et_state *sk = state_or_fail(m, 64, 2, ISAS[k], GGML_TYPE_F16);
            float *lk = all_logits(sk, tok, 40, 13);
            if (memcmp(ref, lk, nlg * sizeof(float))) fail_msg("%s: %s logits differ from scalar", files[fi], ISAS[k]);
            free(lk);
            lk = all_logits(sk, tok, 40, 1);   /* generation: one token at a time (one-token repacked kernels) */
            if (memcmp(ref, lk, nlg * sizeof(float)))
                fail_msg("%s: %s token-by-token logits differ from scalar", files[fi], ISAS[k]);
            free(lk);
            et_state_free(sk);
        }
        free(ref); free(one); free(odd); free(two);
        et_state_free(s0);
        et_state_free(s2);
        et_engine_free(m);
    }
    if (!done) skip();
}

/* The original rows of the repacked matrices are given back to the OS at
 * load (engine/load.c engine_repack, et_wmat.n_dropped): every row read
 * through et_wmat_row is the file's bytes (against an engine that never
 * repacked, ET_REPACK=0), and the logits on the scalar path (which reads
 * the rebuilt rows) and on the best one (the repacked kernels) equal the
 * never-repacked engine's, bit for bit. */
static void test_dropped_rows(void **state) {
    (void)state;
    if (!et_repack_cpu()) skip();   /* nothing is repacked on this CPU */
    static const char *specs[] = {"stories:Q8_0", "stories:Q4_0", "stories:Q3_K_M", "stories:Q5_K_M", "Q4_1", "Q5_1", "Q8_0"};
    int32_t tok[24];
    int seen[64] = {0};   /* the types whose rows were dropped somewhere */
    for (int i = 0; i < 24; i++) tok[i] = (int32_t)((i * 53 + 1) % 512);
    tok[0] = 1;
    int done = 0;
    for (size_t fi = 0; fi < sizeof specs / sizeof specs[0]; fi++) {
        const char *mp = quantized_rand(specs[fi]);
        if (!mp) continue;
        done++;
        assert_int_equal(setenv("ET_REPACK", "0", 1), 0);
        et_engine *m0 = load_or_fail(mp);
        unsetenv("ET_REPACK");
        et_engine *m1 = load_or_fail(mp);
        et_wmat *w0[256], *w1[256];
        int n = et_engine_mats(m0, w0, 256);
        assert_int_equal(et_engine_mats(m1, w1, 256), n);
        assert_true(n <= 256);
        int dropped = 0;
        uint8_t buf[ET_WMAT_ROW_MAX];
        for (int i = 0; i < n; i++) {
            assert_int_equal(w0[i]->n_dropped, 0);
            dropped += w1[i]->n_dropped > 0;
            if (w1[i]->n_dropped) seen[w1[i]->type < 64 ? w1[i]->type : 63] = 1;
            for (int r = 0; r < w1[i]->n_out; r++)
                if (memcmp(et_wmat_row(w1[i], r, buf), (const uint8_t *)w0[i]->data + (size_t)r * w0[i]->row_bytes,
                           w0[i]->row_bytes))
                    fail_msg("%s: %s row %d rebuilt differs from the file", specs[fi], w1[i]->name, r);
        }
        if (!dropped) fail_msg("%s: no matrix had its rows given back", specs[fi]);
        if (m1->hp.tied_output) assert_int_equal(m1->output.n_dropped, m1->tok_embd.n_dropped);
        const size_t nlg = (size_t)24 * (size_t)m0->hp.n_vocab;
        et_state *s0 = state_or_fail(m0, 32, 1, "scalar", GGML_TYPE_F16);
        et_state *s1 = state_or_fail(m1, 32, 2, "scalar", GGML_TYPE_F16);
        et_state *sb = state_or_fail(m1, 32, 2, NULL, GGML_TYPE_F16);
        float *ref = all_logits(s0, tok, 24, 24), *l1 = all_logits(s1, tok, 24, 5), *lb = all_logits(sb, tok, 24, 24);
        if (memcmp(ref, l1, nlg * sizeof(float))) fail_msg("%s: scalar logits from rebuilt rows differ", specs[fi]);
        if (memcmp(ref, lb, nlg * sizeof(float))) fail_msg("%s: %s logits differ", specs[fi], et_state_isa(sb));
        free(ref), free(l1), free(lb);
        et_state_free(s0), et_state_free(s1), et_state_free(sb);
        et_engine_free(m0), et_engine_free(m1);
    }
    if (!done) skip();
    static const uint32_t every[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_IQ4_NL, GGML_TYPE_Q4_1,
                                     GGML_TYPE_Q5_1};
    for (size_t i = 0; i < sizeof every / sizeof every[0]; i++)
        if (!seen[every[i]]) fail_msg("no %s matrix was dropped and rebuilt", ggml_type_name(every[i]));
}

/* ------------------------------------------------------------ SIMD kernels vs scalar */

static uint64_t rng_state = 0x1234567;
static float frand(void) {   /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void test_simd_dots_match_scalar(void **state) {
    (void)state;
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
                                     GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL};
    static const int sizes[] = {256, 512, 768, 2048, 4096 + 256, 288, 32, 96};
    const et_kernels *sc = et_kernels_get("scalar");
    int n_isa = 0;
    for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
        const et_kernels *kk = et_kernels_get(ISAS[k]);
        if (!kk) { fprintf(stderr, "  (%s not available here)\n", ISAS[k]); continue; }
        n_isa++;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                int n = sizes[si];
                uint32_t t = types[ti];
                if (n % et_quant_block_elems(t)) continue;   /* K-quants: odd block counts 9, 1, 3 are not theirs */
                float *w = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n);
                for (int trial = 0; trial < 4; trial++) {
                    for (int i = 0; i < n; i++) {
                        w[i] = frand() * (trial == 3 && i % 97 == 0 ? 40.0f : 1.0f);   /* outliers */
                        x[i] = frand() * (trial == 2 ? 1e-3f : 3.0f);
                    }
                    if (trial == 1) for (int i = 0; i < 64 && i < n; i++) w[i] = 0;    /* an all-zero block */
                    if (trial == 2) for (int i = n - 32; i < n; i++) w[i] = -0.5f;    /* a constant block: d = 0 */
                    uint8_t *wq = malloc(et_quant_row_bytes(t, n)), *xq = malloc(et_act_bytes(t, n) + 64);
                    assert_int_equal(et_quantize_row(t, w, wq, n), 0);
                    et_act_convert(t, x, xq, n);
                    float a = et_kernels_dot(sc, t)(n, wq, xq), b = et_kernels_dot(kk, t)(n, wq, xq);
                    if (memcmp(&a, &b, sizeof a))
                        fail_msg("%s %s n=%d trial %d: %.9g != scalar %.9g", ISAS[k], ggml_type_name(t), n, trial, b, a);
                    et_dot4_fn d4 = et_kernels_dot4(kk, t);
                    if (d4) {   /* four activation rows: x and three perturbed copies */
                        size_t xs = et_act_bytes(t, n) + 64;
                        uint8_t *x4 = malloc(4 * xs);
                        float *xp = malloc(sizeof(float) * (size_t)n), got[4];
                        for (int r = 0; r < 4; r++) {
                            for (int i = 0; i < n; i++) xp[i] = x[i] * (1.0f + 0.25f * r) + (r == 3 ? frand() : 0.0f);
                            et_act_convert(t, xp, x4 + r * xs, n);
                        }
                        d4(n, wq, x4, xs, got);
                        for (int r = 0; r < 4; r++) {
                            float want = et_kernels_dot(sc, t)(n, wq, x4 + r * xs);
                            if (memcmp(&want, &got[r], sizeof want))
                                fail_msg("%s dot4 %s n=%d row %d: %.9g != scalar %.9g", ISAS[k], ggml_type_name(t), n, r,
                                         got[r], want);
                        }
                        free(x4);
                        free(xp);
                    }
                    /* odd lengths for the float types (tails) */
                    if (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) {
                        for (int m = 1; m < 70 && m <= n; m += 3) {
                            float c = et_kernels_dot(sc, t)(m, wq, xq), d = et_kernels_dot(kk, t)(m, wq, xq);
                            if (memcmp(&c, &d, sizeof c)) fail_msg("%s %s n=%d: %.9g != %.9g", ISAS[k], ggml_type_name(t), m, d, c);
                        }
                    }
                    free(wq);
                    free(xq);
                }
                free(w);
                free(x);
            }
    }
    if (!n_isa) skip();
}

/* Q2_K/Q3_K/Q5_K (and Q4_K/Q6_K) blocks of random bytes — every scale,
 * min, high bit and quant value reachable, not only what the quantizer
 * writes — with finite fp16 scales: every ISA's dot == the scalar dot. */
static void test_simd_k_random_blocks(void **state) {
    (void)state;
    static const uint32_t types[] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const size_t dofs[][2] = {{80, 82}, {108, 108}, {0, 2}, {0, 2}, {208, 208}};   /* fp16 d, dmin offsets */
    const et_kernels *sc = et_kernels_get("scalar");
    int n_checked = 0;
    const int n = 1024;
    float *x = malloc(sizeof(float) * n);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        const size_t rb = et_quant_row_bytes(t, n), bb = rb / (size_t)(n / 256);
        uint8_t *wq = malloc(rb), *xq = malloc(et_act_bytes(t, n));
        for (int trial = 0; trial < 50; trial++) {
            for (size_t i = 0; i < rb; i++) wq[i] = (uint8_t)(frand() * 128.0f + 128.0f);
            if (trial % 5 == 0) memset(wq, trial % 10 ? 0xff : 0x00, bb);   /* extreme quants and scales */
            for (int b = 0; b < n / 256; b++)
                for (int k = 0; k < 2; k++) {
                    uint16_t h = et_fp32_to_fp16(frand() * 0.01f);   /* finite scales */
                    memcpy(wq + bb * (size_t)b + dofs[ti][k], &h, 2);
                }
            for (int i = 0; i < n; i++) x[i] = frand() * (trial % 3 ? 3.0f : 100.0f);
            et_act_convert(t, x, xq, n);
            const float want = et_kernels_dot(sc, t)(n, wq, xq);
            for (size_t k = 0; k < sizeof ISAS / sizeof ISAS[0]; k++) {
                const et_kernels *kk = et_kernels_get(ISAS[k]);
                if (!kk) continue;
                const float got = et_kernels_dot(kk, t)(n, wq, xq);
                if (memcmp(&want, &got, sizeof want))
                    fail_msg("%s %s random blocks trial %d: %.9g != scalar %.9g", ISAS[k], ggml_type_name(t), trial,
                             got, want);
                et_dot4_fn d4 = et_kernels_dot4(kk, t);
                if (d4) {   /* the multi-token kernel: this activation as each of the four rows */
                    const size_t xs = et_act_bytes(t, n);
                    uint8_t *x4 = malloc(4 * xs);
                    float got4[4];
                    for (int r = 0; r < 4; r++) memcpy(x4 + (size_t)r * xs, xq, xs);
                    d4(n, wq, x4, xs, got4);
                    for (int r = 0; r < 4; r++)
                        if (memcmp(&want, &got4[r], sizeof want))
                            fail_msg("%s dot4 %s random blocks trial %d row %d: %.9g != scalar %.9g", ISAS[k],
                                     ggml_type_name(t), trial, r, got4[r], want);
                    free(x4);
                }
                n_checked++;
            }
        }
        free(wq);
        free(xq);
    }
    free(x);
    if (!n_checked) skip();
}

/* The scalar quantized dot against an independent double-precision
 * computation on dequantized weights and activations. */
static void test_scalar_dots_vs_double(void **state) {
    (void)state;
    static const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_1,
                                     GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_F32,
                                     GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL};
    const et_kernels *sc = et_kernels_get("scalar");
    int n = 1024;
    float *w = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n), *wd = malloc(sizeof(float) * n),
          *xd = malloc(sizeof(float) * n);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti], vt = et_vec_dot_type(t);
        for (int i = 0; i < n; i++) { w[i] = frand(); x[i] = frand(); }
        uint8_t *wq = malloc(et_quant_row_bytes(t, n)), *xq = malloc(et_act_bytes(t, n));
        et_quantize_row(t, w, wq, n);
        et_act_convert(t, x, xq, n);
        et_dequantize_row(t, wq, wd, n);
        if (vt == GGML_TYPE_Q8_K) {   /* Q8_K dequantized by hand: d * q */
            const et_block_q8_K *b = (const et_block_q8_K *)xq;
            for (int i = 0; i < n; i++) xd[i] = b[i / 256].d * b[i / 256].qs[i % 256];
            /* bsums are the group sums */
            for (int j = 0; j < 16; j++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += b[0].qs[16 * j + i];
                assert_int_equal(b[0].bsums[j], s);
            }
        } else if (vt == GGML_TYPE_Q8_1) {   /* Q8_1 by hand: d * q; s is d * sum(q), rounded to fp16 */
            const et_block_q8_1 *b = (const et_block_q8_1 *)xq;
            for (int i = 0; i < n; i++) xd[i] = et_fp16_to_fp32(b[i / 32].d) * b[i / 32].qs[i % 32];
            for (int k = 0; k < n / 32; k++) {
                double sum = 0;
                for (int i = 0; i < 32; i++) sum += xd[32 * k + i];
                assert_true(fabs(et_fp16_to_fp32(b[k].s) - sum) <= 2e-3 * fabs(sum) + 1e-3 * et_fp16_to_fp32(b[k].d));
            }
        } else {
            et_dequantize_row(vt, xq, xd, n);
        }
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            ref += (double)wd[i] * xd[i];
            mag += fabs((double)wd[i] * xd[i]);
        }
        if (vt == GGML_TYPE_Q8_1) {   /* ggml's min term uses s (fp16), not the exact sum: m * (s - sum) per block */
            const et_block_q8_1 *b = (const et_block_q8_1 *)xq;
            const size_t bs = t == GGML_TYPE_Q4_1 ? sizeof(et_block_q4_1) : sizeof(et_block_q5_1);
            for (int k = 0; k < n / 32; k++) {
                uint16_t mh;
                memcpy(&mh, wq + bs * (size_t)k + 2, 2);
                double sum = 0;
                for (int i = 0; i < 32; i++) sum += xd[32 * k + i];
                ref += (double)et_fp16_to_fp32(mh) * (et_fp16_to_fp32(b[k].s) - sum);
            }
        }
        double got = et_kernels_dot(sc, t)(n, wq, xq);
        if (fabs(got - ref) > 1e-5 * mag + 1e-6)
            fail_msg("%s: scalar dot %.9g vs double %.9g", ggml_type_name(t), got, ref);
        /* the activation quantization error is what ggml's is: small */
        double exact = 0;
        for (int i = 0; i < n; i++) exact += (double)wd[i] * x[i];
        if (fabs(got - exact) > 0.02 * mag) fail_msg("%s: dot %.6g far from unquantized %.6g", ggml_type_name(t), got, exact);
        free(wq);
        free(xq);
    }
    free(w); free(x); free(wd); free(xd);
}

/* Activation quantizers against their definitions (ggml x86 quantize_row_q8_0,
 * x86 quantize_row_q8_1, quantize_row_q8_K_ref). */
static void test_activation_quantizers(void **state) {
    (void)state;
    float x[288];
    for (int i = 0; i < 256; i++) x[i] = frand() * 5;
    for (int i = 256; i < 288; i++) x[i] = (float)(i % 7) - 3.5f;   /* a ninth block (odd count) */
    x[7] = -6.0f;   /* the largest magnitude is negative */
    et_block_q8_0 q0[8];
    et_quantize_q8_0(x, q0, 256);
    for (int b = 0; b < 8; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        assert_int_equal(q0[b].d, et_fp32_to_fp16(amax / 127.f));
        for (int j = 0; j < 32; j++) {
            float v = x[32 * b + j] * (127.f / amax);
            assert_int_equal(q0[b].qs[j], (int)nearbyintf(v));
        }
    }
    /* Q8_1: Q8_0's d and qs, s = fp16(d * sum) with the fp32 d; 9 blocks */
    et_block_q8_1 q1[9];
    et_quantize_q8_1(x, q1, 288);
    for (int b = 0; b < 9; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        float d = amax / 127.f;
        assert_int_equal(q1[b].d, et_fp32_to_fp16(d));
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int want = (int)nearbyintf(x[32 * b + j] * (127.f / amax));
            assert_int_equal(q1[b].qs[j], want);
            if (b < 8) assert_int_equal(q1[b].qs[j], q0[b].qs[j]);
            sum += want;
        }
        assert_int_equal(q1[b].s, et_fp32_to_fp16(d * (float)sum));
    }
    {   /* ties to even at id = 1 (amax 127), and the sum they give; a zero block */
        float t[64] = {0};
        t[0] = 127.0f; t[1] = 0.5f; t[2] = 1.5f; t[3] = -2.5f; t[4] = -127.0f;
        et_block_q8_1 tb[2];
        et_quantize_q8_1(t, tb, 64);
        assert_int_equal(tb[0].qs[1], 0);
        assert_int_equal(tb[0].qs[2], 2);
        assert_int_equal(tb[0].qs[3], -2);
        assert_int_equal(tb[0].d, et_fp32_to_fp16(1.0f));
        assert_int_equal(tb[0].s, et_fp32_to_fp16(0.0f));   /* 127 + 0 + 2 - 2 - 127 */
        assert_int_equal(tb[1].d, 0);
        assert_int_equal(tb[1].s, 0);
        for (int j = 0; j < 32; j++) assert_int_equal(tb[1].qs[j], 0);
        /* the Q8_1 activation layout (kernels.h): the blocks, then float d[] and s[] */
        assert_int_equal(et_vec_dot_type(GGML_TYPE_Q5_1), GGML_TYPE_Q8_1);
        assert_int_equal(et_act_bytes(GGML_TYPE_Q4_1, 64), 128 + 2 * 8);
        assert_int_equal(et_act_bytes(GGML_TYPE_Q5_1, 288), et_act_q8_1_extra_offset(288) + 9 * 8);
        uint8_t *a = malloc(et_act_bytes(GGML_TYPE_Q5_1, 64));
        et_act_convert(GGML_TYPE_Q5_1, t, a, 64);
        assert_memory_equal(a, tb, sizeof tb);
        for (int b = 0; b < 2; b++) {
            assert_true(et_act_q8_1_d(a, 64)[b] == et_fp16_to_fp32(tb[b].d));
            assert_true(et_act_q8_1_s(a, 64)[b] == et_fp16_to_fp32(tb[b].s));
        }
        free(a);
        a = malloc(et_act_bytes(GGML_TYPE_Q4_1, 288));
        et_act_convert(GGML_TYPE_Q4_1, x, a, 288);
        assert_memory_equal(a, q1, sizeof q1);
        for (int b = 0; b < 9; b++) assert_true(et_act_q8_1_s(a, 288)[b] == et_fp16_to_fp32(q1[b].s));
        free(a);
    }
    et_block_q8_K qk;
    et_quantize_q8_K(x, &qk, 256);
    assert_true(qk.d == 1 / (-127.f / -6.0f));
    assert_int_equal(qk.qs[7], -127);   /* iscale = -127/max maps max to -127 */
    /* ties round to even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2 at iscale 1 (max = -127) */
    float y[256] = {0};
    y[0] = -127.0f; y[1] = 0.5f; y[2] = 1.5f; y[3] = -2.5f;
    et_quantize_q8_K(y, &qk, 256);
    assert_true(qk.d == 1.0f);
    assert_int_equal(qk.qs[0], -127);
    assert_int_equal(qk.qs[1], 0);
    assert_int_equal(qk.qs[2], 2);
    assert_int_equal(qk.qs[3], -2);
    assert_int_equal(qk.bsums[0], -127 + 2 - 2);
    /* a positive max maps to -127 and is never above 127 */
    y[0] = 127.0f;
    et_quantize_q8_K(y, &qk, 256);
    assert_int_equal(qk.qs[0], -127);
    assert_int_equal(qk.qs[2], -2);
    /* the Q8_0 activation layout (kernels.h): the blocks, then int32 block
     * sums and float d, recomputed here from the blocks; 9 blocks (odd) */
    for (int n = 256; n <= 288; n += 32) {
        uint8_t *a = malloc(et_act_bytes(GGML_TYPE_Q4_0, n));
        et_act_convert(GGML_TYPE_Q4_0, x, a, n);
        assert_int_equal(et_act_bytes(GGML_TYPE_Q8_0, n), et_act_q8_0_extra_offset(n) + (size_t)(n / 32) * 8);
        assert_true(et_act_q8_0_extra_offset(n) >= (size_t)(n / 32) * sizeof(et_block_q8_0));
        const et_block_q8_0 *blk = (const et_block_q8_0 *)a;
        if (n == 256) assert_memory_equal(blk, q0, sizeof q0);
        const int32_t *bs = et_act_q8_0_bsum(a, n);
        const float *dd = et_act_q8_0_d(a, n);
        for (int b = 0; b < n / 32; b++) {
            assert_true(dd[b] == et_fp16_to_fp32(blk[b].d));
            int s = 0;
            for (int i = 0; i < 32; i++) s += blk[b].qs[i];
            assert_int_equal(bs[b], s);
        }
        free(a);
    }
}

/* ------------------------------------------------------------ samplers */

static void test_sampler(void **state) {
    (void)state;
    et_err e = {0};
    enum { NV = 6 };
    float lg[NV] = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 3.0f};
    et_sampler s;
    et_sampler_params p = {0, 0, 1.0f, 0, 42};
    assert_int_equal(et_sampler_init(&s, &p, NV, &e), 0);
    assert_int_equal(et_sample(&s, lg), 1);   /* greedy: lowest id on ties */
    et_sampler_free(&s);
    /* top-k 1 is greedy whatever the temperature */
    p.temp = 5.0f; p.top_k = 1;
    et_sampler_init(&s, &p, NV, &e);
    for (int i = 0; i < 50; i++) assert_int_equal(et_sample(&s, lg), 1);
    et_sampler_free(&s);
    /* top-k 3: ids 1, 5 (3.0) and 2 (2.5) only, at any temperature */
    p.top_k = 3; p.temp = 50.0f;
    et_sampler_init(&s, &p, NV, &e);
    int seen3[NV] = {0};
    for (int i = 0; i < 3000; i++) seen3[et_sample(&s, lg)]++;
    assert_int_equal(seen3[0] + seen3[3] + seen3[4], 0);
    assert_true(seen3[1] > 700 && seen3[2] > 700 && seen3[5] > 700);
    et_sampler_free(&s);
    /* top-k 2 with a tie at the cut: 1 and 5 (both 3.0), never 2 */
    p.top_k = 2;
    et_sampler_init(&s, &p, NV, &e);
    for (int i = 0; i < 500; i++) {
        int id = et_sample(&s, lg);
        assert_true(id == 1 || id == 5);
    }
    et_sampler_free(&s);
    /* min-p 0.5 keeps ids with p >= 0.5 p_max: 1, 5 (e^0) and 2 (e^-0.5 = 0.61) */
    p.top_k = 0; p.min_p = 0.5f; p.temp = 1.0f;
    et_sampler_init(&s, &p, NV, &e);
    int seen[NV] = {0};
    for (int i = 0; i < 3000; i++) seen[et_sample(&s, lg)]++;
    assert_int_equal(seen[0] + seen[3] + seen[4], 0);
    assert_true(seen[1] > 0 && seen[2] > 0 && seen[5] > 0);
    et_sampler_free(&s);
    /* top-p 0.5: p(1) = p(5) = 0.35.., so {1, 5} is the smallest set >= 0.5 */
    p.min_p = 0; p.top_p = 0.5f;
    et_sampler_init(&s, &p, NV, &e);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 3000; i++) seen[et_sample(&s, lg)]++;
    assert_int_equal(seen[0] + seen[2] + seen[3] + seen[4], 0);
    assert_true(seen[1] > 1300 && seen[5] > 1300);
    et_sampler_free(&s);
    /* full distribution at temperature 0.7: frequencies within 4 sigma of softmax(lg / 0.7) */
    p.top_p = 1.0f; p.temp = 0.7f; p.seed = 7;
    et_sampler_init(&s, &p, NV, &e);
    const int N = sanitized() ? 40000 : 200000;
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) seen[et_sample(&s, lg)]++;
    double z = 0, pr[NV];
    for (int i = 0; i < NV; i++) z += exp(lg[i] / 0.7);
    for (int i = 0; i < NV; i++) {
        pr[i] = exp(lg[i] / 0.7) / z;
        double sd = sqrt(N * pr[i] * (1 - pr[i]));
        if (fabs(seen[i] - N * pr[i]) > 4 * sd + 1)
            fail_msg("token %d drawn %d times, expected %.0f +- %.0f", i, seen[i], N * pr[i], sd);
    }
    et_sampler_free(&s);
    /* same seed, same draws; another seed, other draws */
    int a[64], b[64], c[64];
    for (int r = 0; r < 3; r++) {
        p.seed = r == 2 ? 8 : 7;
        et_sampler_init(&s, &p, NV, &e);
        for (int i = 0; i < 64; i++) (r == 0 ? a : r == 1 ? b : c)[i] = et_sample(&s, lg);
        et_sampler_free(&s);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* bad parameters */
    p.top_p = 0;
    assert_int_equal(et_sampler_init(&s, &p, NV, &e), ET_EUSAGE);
}

/* Sampled generation is reproducible from the seed on the real model. */
static void test_seeded_generation(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    et_engine *m = load_or_fail(mp);
    int32_t out[2][40], bos = 1;
    for (int r = 0; r < 2; r++) {
        et_state *s = state_or_fail(m, 128, r + 1, NULL, GGML_TYPE_F16);
        et_sampler smp;
        et_sampler_params p = et_sampler_default_params();
        p.seed = 1234;
        et_err e = {0};
        assert_int_equal(et_sampler_init(&smp, &p, m->hp.n_vocab, &e), 0);
        int n = 0;
        if (et_generate(s, &smp, &bos, 1, 40, 0, NULL, NULL, out[r], &n, NULL, &e)) fail_msg("%s", e.msg);
        assert_int_equal(n, 40);
        et_sampler_free(&smp);
        et_state_free(s);
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    et_engine_free(m);
}

/* ------------------------------------------------------------ model files built for the tests */

/* Copy a GGUF, replacing tensor `name` (when not NULL) by one of the given
 * shape/type/data, or dropping it when drop. */
static void copy_gguf(const char *src, const char *dst, const char *name, const int64_t *ne, uint32_t type,
                      const void *data, int drop) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, src, &e)) fail_msg("%s", e.msg);
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) assert_int_equal(gguf_set_kv_from(w, &g, i), 0);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        if (name && gguf_str_eq(g.tensors[i].name, name)) {
            if (!drop && gguf_add_tensor(w, name, type, 2, ne, data, &e)) fail_msg("%s", e.msg);
            continue;
        }
        if (gguf_add_tensor_from(w, &g, i, &e)) fail_msg("%s", e.msg);
    }
    if (gguf_writer_write(w, dst, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    gguf_close(&g);
}

static void expect_load_error(const char *path, const char *needle1, const char *needle2) {
    et_engine *m = NULL;
    et_err e = {0};
    int rc = et_engine_load(&m, path, &e);
    if (rc == 0) fail_msg("%s loaded, expected an error mentioning '%s'", path, needle1);
    assert_null(m);
    assert_int_equal(rc, ET_EINPUT);
    if (!strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)))
        fail_msg("error '%s' does not mention '%s'%s%s", e.msg, needle1, needle2 ? " and " : "", needle2 ? needle2 : "");
    fprintf(stderr, "  ok: %s\n", e.msg);
}

static void test_bad_models(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    char p[512];
    float *big = calloc(64 * 64, sizeof(float));
    /* wrong shape: blk.0.attn_k.weight [48 rows] instead of 32 */
    snprintf(p, sizeof p, "%s/wrong_shape.gguf", test_tmpdir());
    int64_t ne[2] = {64, 48};
    copy_gguf(mp, p, "blk.0.attn_k.weight", ne, GGML_TYPE_F32, big, 0);
    expect_load_error(p, "blk.0.attn_k.weight", "shape");
    /* a type the engine does not run (MXFP4: the reader knows it, the engine does not) */
    snprintf(p, sizeof p, "%s/mxfp4.gguf", test_tmpdir());
    int64_t ne2[2] = {64, 32};
    copy_gguf(mp, p, "blk.1.attn_v.weight", ne2, GGML_TYPE_MXFP4, big, 0);
    expect_load_error(p, "blk.1.attn_v.weight", "MXFP4");
    /* ... and a ternary TQ2_0 (256-element blocks) in rand-llama-256's 256-wide attn_q */
    const char *rp = shared_path("golden/quant/rand-llama-256.gguf");
    if (rp) {
        snprintf(p, sizeof p, "%s/tq2_0.gguf", test_tmpdir());
        int64_t ne3[2] = {256, 256};
        uint8_t *tq = calloc(256, 66);
        copy_gguf(rp, p, "blk.0.attn_q.weight", ne3, GGML_TYPE_TQ2_0, tq, 0);
        expect_load_error(p, "blk.0.attn_q.weight", "TQ2_0");
        free(tq);
    }
    /* Q4_1 runs now: the same tensor as Q4_1 loads */
    snprintf(p, sizeof p, "%s/q4_1.gguf", test_tmpdir());
    copy_gguf(mp, p, "blk.1.attn_v.weight", ne2, GGML_TYPE_Q4_1, big, 0);
    et_engine_free(load_or_fail(p));
    /* missing tensor */
    snprintf(p, sizeof p, "%s/missing.gguf", test_tmpdir());
    copy_gguf(mp, p, "blk.4.ffn_up.weight", NULL, 0, NULL, 1);
    expect_load_error(p, "blk.4.ffn_up.weight", "missing");
    /* a 1-D norm stored quantized */
    snprintf(p, sizeof p, "%s/qnorm.gguf", test_tmpdir());
    copy_gguf(mp, p, "blk.2.ffn_norm.weight", ne2, GGML_TYPE_F32, big, 0);
    expect_load_error(p, "blk.2.ffn_norm.weight", NULL);

    size_t n = 0;
    uint8_t *b = read_bytes(mp, &n);
    assert_non_null(b);
    /* unknown type number: patch blk.3.attn_q.weight's type field to 4 (removed from ggml) */
    const char *nm = "blk.3.attn_q.weight";
    uint8_t *hit = memmem(b, n, nm, strlen(nm));
    assert_non_null(hit);
    uint8_t *ty = hit + strlen(nm) + 4 + 2 * 8;   /* u32 n_dims, 2 x u64 ne, then u32 type */
    uint32_t four = 4, old;
    memcpy(&old, ty, 4);
    assert_int_equal(old, GGML_TYPE_F32);
    memcpy(ty, &four, 4);
    snprintf(p, sizeof p, "%s/unknown_type.gguf", test_tmpdir());
    write_bytes(p, b, n);
    expect_load_error(p, "blk.3.attn_q.weight", NULL);
    memcpy(ty, &old, 4);
    /* truncated: at several points, including inside the tensor data */
    size_t cuts[] = {3, 24, 1000, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(p, sizeof p, "%s/trunc.gguf", test_tmpdir());
        write_bytes(p, b, cuts[i]);
        et_engine *m = NULL;
        et_err e = {0};
        assert_int_equal(et_engine_load(&m, p, &e), ET_EINPUT);
        assert_non_null(strstr(e.msg, "trunc.gguf"));
        fprintf(stderr, "  ok: %s\n", e.msg);
    }
    free(b);
    free(big);
    /* wrong architecture: a vocab-only GGUF of another arch */
    const char *vp = shared_path("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    if (vp) expect_load_error(vp, "gpt2", "not supported");
}

/* ------------------------------------------------------------ LoRA */

typedef struct lora_spec { const char *base; int rank; float *a, *b; int n_in, n_out; } lora_spec;

static void write_adapter(const char *path, const char *arch, float alpha, lora_spec *ls, int n) {
    gguf_writer *w = gguf_writer_new();
    et_err e = {0};
    gguf_set_str(w, "general.architecture", arch);
    gguf_set_str(w, "general.type", "adapter");
    gguf_set_str(w, "adapter.type", "lora");
    gguf_set_f32(w, "adapter.lora.alpha", alpha);
    for (int i = 0; i < n; i++) {
        char nm[128];
        int64_t nea[2] = {ls[i].n_in, ls[i].rank}, neb[2] = {ls[i].rank, ls[i].n_out};
        snprintf(nm, sizeof nm, "%s.lora_a", ls[i].base);
        if (gguf_add_tensor(w, nm, GGML_TYPE_F32, 2, nea, ls[i].a, &e)) fail_msg("%s", e.msg);
        snprintf(nm, sizeof nm, "%s.lora_b", ls[i].base);
        if (gguf_add_tensor(w, nm, GGML_TYPE_F32, 2, neb, ls[i].b, &e)) fail_msg("%s", e.msg);
    }
    if (gguf_writer_write(w, path, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
}

static void lora_fill(lora_spec *l, const char *base, int n_in, int n_out, int rank) {
    l->base = base;
    l->n_in = n_in;
    l->n_out = n_out;
    l->rank = rank;
    l->a = malloc(sizeof(float) * (size_t)n_in * rank);
    l->b = malloc(sizeof(float) * (size_t)n_out * rank);
    for (int i = 0; i < n_in * rank; i++) l->a[i] = 0.3f * frand();
    for (int i = 0; i < n_out * rank; i++) l->b[i] = 0.3f * frand();
}

/* W += s * B A in a float copy (W [n_out][n_in], A [rank][n_in], B [n_out][rank]). */
static void merge_into(float *W, const lora_spec *l, float s) {
    for (int o = 0; o < l->n_out; o++)
        for (int i = 0; i < l->n_in; i++) {
            double acc = 0;
            for (int r = 0; r < l->rank; r++) acc += (double)l->b[o * l->rank + r] * l->a[r * l->n_in + i];
            W[o * l->n_in + i] += (float)(s * acc);
        }
}

static float *dup_floats(const void *p, size_t n) {
    float *c = malloc(sizeof(float) * n);
    memcpy(c, p, sizeof(float) * n);
    return c;
}

static void test_lora(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    et_engine *m = load_or_fail(mp);
    const et_hparams *hp = &m->hp;
    int d = hp->n_embd;
    /* adapter 1: q and ffn_down of layer 0 and 3; adapter 2: v of layer 1 and the output */
    lora_spec l1[3], l2[2];
    lora_fill(&l1[0], "blk.0.attn_q.weight", d, 64, 4);
    lora_fill(&l1[1], "blk.3.ffn_down.weight", hp->n_ff, d, 4);
    lora_fill(&l1[2], "blk.0.ffn_down.weight", hp->n_ff, d, 4);
    lora_fill(&l2[0], "blk.1.attn_v.weight", d, 32, 2);
    lora_fill(&l2[1], "output.weight", d, hp->n_vocab, 2);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/a1.gguf", test_tmpdir());
    snprintf(p2, sizeof p2, "%s/a2.gguf", test_tmpdir());
    write_adapter(p1, "llama", 8.0f, l1, 3);
    write_adapter(p2, "llama", 0.0f, l2, 2);   /* alpha 0: the scale is used as is (llama.cpp) */
    et_adapter *a1, *a2;
    et_err e = {0};
    if (et_adapter_load(&a1, p1, m, &e)) fail_msg("%s", e.msg);
    if (et_adapter_load(&a2, p2, m, &e)) fail_msg("%s", e.msg);
    if (et_engine_attach(m, a1, 0.5f, &e)) fail_msg("%s", e.msg);
    if (et_engine_attach(m, a2, 1.5f, &e)) fail_msg("%s", e.msg);

    /* the same model with the adapters merged into F32 weights, through et_engine_from_model */
    et_model mm;
    memset(&mm, 0, sizeof mm);
    mm.hp = *hp;
    size_t nv = (size_t)hp->n_vocab;
    mm.tok_embd = dup_floats(m->tok_embd.data, nv * d);
    mm.output = dup_floats(m->output.data, nv * d);
    mm.output_norm = dup_floats(m->output_norm, d);
    mm.layers = calloc((size_t)hp->n_layer, sizeof *mm.layers);
    for (int l = 0; l < hp->n_layer; l++) {
        const et_engine_layer *s = &m->layers[l];
        et_layer *t = &mm.layers[l];
        t->attn_norm = dup_floats(s->attn_norm, d);
        t->ffn_norm = dup_floats(s->ffn_norm, d);
        t->wq = dup_floats(s->wq.data, (size_t)s->wq.n_in * s->wq.n_out);
        t->wk = dup_floats(s->wk.data, (size_t)s->wk.n_in * s->wk.n_out);
        t->wv = dup_floats(s->wv.data, (size_t)s->wv.n_in * s->wv.n_out);
        t->wo = dup_floats(s->wo.data, (size_t)s->wo.n_in * s->wo.n_out);
        t->w_gate = dup_floats(s->w_gate.data, (size_t)s->w_gate.n_in * s->w_gate.n_out);
        t->w_up = dup_floats(s->w_up.data, (size_t)s->w_up.n_in * s->w_up.n_out);
        t->w_down = dup_floats(s->w_down.data, (size_t)s->w_down.n_in * s->w_down.n_out);
    }
    merge_into(mm.layers[0].wq, &l1[0], 0.5f * 8.0f / 4);
    merge_into(mm.layers[3].w_down, &l1[1], 0.5f * 8.0f / 4);
    merge_into(mm.layers[0].w_down, &l1[2], 0.5f * 8.0f / 4);
    merge_into(mm.layers[1].wv, &l2[0], 1.5f);
    merge_into(mm.output, &l2[1], 1.5f);
    et_engine *mg;
    if (et_engine_from_model(&mg, &mm, &e)) fail_msg("%s", e.msg);

    int32_t tok[24];
    for (int i = 0; i < 24; i++) tok[i] = (int32_t)((i * 53 + 1) % 512);
    tok[0] = 1;
    et_state *sa = state_or_fail(m, 32, 1, NULL, GGML_TYPE_F32), *sb = state_or_fail(mg, 32, 1, NULL, GGML_TYPE_F32);
    float *la = all_logits(sa, tok, 24, 24), *lb = all_logits(sb, tok, 24, 24);
    double maxd = 0, maxv = 0;
    for (size_t i = 0; i < 24 * nv; i++) {
        maxd = fmax(maxd, fabs(la[i] - lb[i]));
        maxv = fmax(maxv, fabs(lb[i]));
    }
    fprintf(stderr, "  LoRA at run time vs merged weights: max |diff| %.2e of max |logit| %.2f\n", maxd, maxv);
    assert_true(maxd < 1e-4 * maxv);
    /* and the adapters do change the logits */
    et_engine_detach_all(m);
    float *l0 = all_logits(sa, tok, 24, 24);
    double moved = 0;
    for (size_t i = 0; i < 24 * nv; i++) moved = fmax(moved, fabs(l0[i] - lb[i]));
    assert_true(moved > 100 * maxd && moved > 1e-2);
    free(la); free(lb); free(l0);
    et_state_free(sa);
    et_state_free(sb);
    et_engine_free(mg);
    free(mm.tok_embd); free(mm.output); free(mm.output_norm);
    for (int l = 0; l < hp->n_layer; l++) {
        et_layer *t = &mm.layers[l];
        free(t->attn_norm); free(t->ffn_norm); free(t->wq); free(t->wk); free(t->wv); free(t->wo);
        free(t->w_gate); free(t->w_up); free(t->w_down);
    }
    free(mm.layers);

    /* adapters made for another base are refused, naming what differs */
    char p3[512];
    snprintf(p3, sizeof p3, "%s/bad.gguf", test_tmpdir());
    et_adapter *bad = NULL;
    write_adapter(p3, "gpt2", 8.0f, l1, 1);
    assert_int_equal(et_adapter_load(&bad, p3, m, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "general.architecture"));
    fprintf(stderr, "  ok: %s\n", e.msg);
    lora_spec w1 = l1[0];
    w1.n_in = 32;   /* lora_a made for a base with n_embd 32 */
    write_adapter(p3, "llama", 8.0f, &w1, 1);
    assert_int_equal(et_adapter_load(&bad, p3, m, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.0.attn_q.weight.lora_a"));
    fprintf(stderr, "  ok: %s\n", e.msg);
    lora_spec w2 = l1[0];
    w2.n_out = 32;
    write_adapter(p3, "llama", 8.0f, &w2, 1);
    assert_int_equal(et_adapter_load(&bad, p3, m, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.0.attn_q.weight.lora_b"));
    fprintf(stderr, "  ok: %s\n", e.msg);
    lora_spec w3 = l1[0];
    w3.base = "blk.9.attn_q.weight";   /* stories260K has 5 layers */
    write_adapter(p3, "llama", 8.0f, &w3, 1);
    assert_int_equal(et_adapter_load(&bad, p3, m, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.9.attn_q.weight"));
    fprintf(stderr, "  ok: %s\n", e.msg);
    /* an adapter given as the model */
    et_engine *not_model = NULL;
    assert_int_equal(et_engine_load(&not_model, p1, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "adapter"));
    fprintf(stderr, "  ok: %s\n", e.msg);

    for (int i = 0; i < 3; i++) { free(l1[i].a); free(l1[i].b); }
    for (int i = 0; i < 2; i++) { free(l2[i].a); free(l2[i].b); }
    et_adapter_free(a1);
    et_adapter_free(a2);
    et_engine_free(m);
}

/* ------------------------------------------------------------ perplexity plumbing */

/* et_perplexity over windows equals the sum of et_nll over the same windows,
 * and et_nll equals -log softmax computed here from all_logits. */
static void test_nll_plumbing(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    et_engine *m = load_or_fail(mp);
    et_state *s = state_or_fail(m, 40, 1, NULL, GGML_TYPE_F16);
    int32_t tok[50];
    for (int i = 0; i < 50; i++) tok[i] = (int32_t)((i * 29 + 3) % 512);
    tok[0] = 1;
    float *lg = all_logits(s, tok, 32, 32);
    double want = 0;
    int nv = m->hp.n_vocab;
    for (int t = 0; t < 31; t++) {
        double mx = -1e30, z = 0;
        for (int i = 0; i < nv; i++) mx = fmax(mx, lg[(size_t)t * nv + i]);
        for (int i = 0; i < nv; i++) z += exp(lg[(size_t)t * nv + i] - mx);
        want += log(z) + mx - lg[(size_t)t * nv + tok[t + 1]];
    }
    et_ppl r = {0};
    et_err e = {0};
    assert_int_equal(et_nll(s, tok, 32, &r, &e), 0);
    assert_int_equal(r.n_scored, 31);
    assert_true(fabs(r.nll - want) < 1e-9 * want);
    et_ppl w;
    assert_int_equal(et_perplexity(s, tok, 50, 32, &w, &e), 0);
    et_ppl second = {0};
    et_nll(s, tok + 32, 18, &second, &e);
    assert_int_equal(w.n_scored, 31 + 17);
    assert_true(fabs(w.nll - (r.nll + second.nll)) < 1e-9 * w.nll);
    assert_true(fabs(w.ppl - exp(w.nll / w.n_scored)) < 1e-9 * w.ppl);
    /* overflow and bad ids are usage errors */
    assert_int_equal(et_nll(s, tok, 50, &r, &e), ET_EUSAGE);
    int32_t badt[2] = {1, 600};
    et_state_reset(s);
    assert_int_equal(et_forward(s, badt, 2, NULL, 0, &e), ET_EUSAGE);
    free(lg);
    et_state_free(s);
    et_engine_free(m);
}

/* ------------------------------------------------------------ golden NLL, and the .bin import */

/* golden_nll.json: teacher-forced NLL of one sentence (35 tokens with BOS)
 * under stories260K.bin with tok512.bin: 54.404121. */
static void nll_golden(et_engine *m, const et_tokenizer *tok, const char *what) {
    SHARED_OR_SKIP(gp, "models/stories260K/golden_nll.json");
    char *txt = read_text(gp);
    cJSON *j = cJSON_Parse(txt);
    assert_non_null(j);
    const char *sentence = cJSON_GetObjectItem(j, "sentence")->valuestring;
    int n_want = cJSON_GetObjectItem(j, "n_tokens")->valueint;
    double nll_want = cJSON_GetObjectItem(j, "nll")->valuedouble;
    int32_t *ids;
    size_t n;
    et_err e = {0};
    if (et_tok_encode(tok, sentence, strlen(sentence), ET_TOK_ADD_BOS, &ids, &n, &e)) fail_msg("%s", e.msg);
    assert_int_equal((int)n, n_want);
    for (int kv = 1; kv >= 0; kv--) {
        et_state *s = state_or_fail(m, 64, 1, NULL, kv ? GGML_TYPE_F32 : GGML_TYPE_F16);
        et_ppl r = {0};
        if (et_nll(s, ids, (int)n, &r, &e)) fail_msg("%s", e.msg);
        fprintf(stderr, "  %s, KV %s: NLL %.6f over %ld tokens (golden %.6f), perplexity %.6f\n", what,
                kv ? "F32" : "F16", r.nll, r.n_scored, nll_want, r.ppl);
        assert_int_equal(r.n_scored, n_want - 1);
        /* the golden is an F32 computation: 1e-3 with an F32 cache; the F16 cache
         * (llama.cpp's default) rounds K and V to 11 bits: the JSON's own tolerance */
        double tol = kv ? 1e-3 : cJSON_GetObjectItem(j, "tolerance")->valuedouble;
        if (fabs(r.nll - nll_want) > tol)
            fail_msg("%s: NLL %.6f differs from %.6f by more than %g", what, r.nll, nll_want, tol);
        et_state_free(s);
    }
    free(ids);
    cJSON_Delete(j);
    free(txt);
}

static void test_nll_golden(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    et_engine *m = load_or_fail(mp);
    assert_non_null(m->tok);
    nll_golden(m, m->tok, "stories260K.gguf");
    et_engine_free(m);
}

/* stories260K.bin (llama2.c) through export/ and et_engine_from_model: the
 * same greedy tokens and NLL. */
static void test_llama2c_bin(void **state) {
    (void)state;
    SHARED_OR_SKIP(bp, "models/stories260K/stories260K.bin");
    SHARED_OR_SKIP(tp, "models/stories260K/tok512.bin");
    et_model mm;
    et_err e = {0};
    if (et_model_load_llama2c(&mm, bp, tp, &e)) fail_msg("%s", e.msg);
    et_engine *m;
    if (et_engine_from_model(&m, &mm, &e)) fail_msg("%s", e.msg);
    assert_non_null(m->tok);
    greedy_matches_golden(m, NULL, 1, GGML_TYPE_F16);
    nll_golden(m, mm.tok, "stories260K.bin");
    et_engine_free(m);
    et_model_free(&mm);
}

/* ------------------------------------------------------------ deci: per-layer widths */

/* A deci model whose layers keep a subset of heads / FFN channels (or none)
 * must compute what the llama model computes when the dropped parts are
 * zeroed out of attn_output / ffn_down (their contribution is then 0). */
static void test_deci_widths(void **state) {
    (void)state;
    SHARED_OR_SKIP(mp, STORIES);
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, mp, &e)) fail_msg("%s", e.msg);
    enum { L = 5, D = 64, HD = 8, NH = 8, NKV = 4, FF = 172 };
    /* per layer: heads kept (a prefix of whole GQA groups), kv heads, FFN channels kept */
    const int nh[L] = {8, 4, 0, 6, 8}, nkv[L] = {4, 2, 0, 3, 4}, nff[L] = {172, 100, 64, 0, 172};
    char zp[512], dp[512];
    snprintf(zp, sizeof zp, "%s/zeroed.gguf", test_tmpdir());
    snprintf(dp, sizeof dp, "%s/deci.gguf", test_tmpdir());
    gguf_writer *wz = gguf_writer_new(), *wd = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) {
        assert_int_equal(gguf_set_kv_from(wz, &g, i), 0);
        const gguf_str k = g.kv[i].key;
        if (k.len > 6 && !memcmp(k.ptr, "llama.", 6)) {
            char nk[128];
            snprintf(nk, sizeof nk, "deci.%.*s", (int)k.len - 6, k.ptr + 6);
            if (!strcmp(nk, "deci.attention.head_count") || !strcmp(nk, "deci.attention.head_count_kv") ||
                !strcmp(nk, "deci.feed_forward_length"))
                continue;
            int64_t v;
            if (g.kv[i].type == GGUF_TYPE_UINT32 && !gguf_arr_i64(&g.kv[i], 0, &v)) gguf_set_u32(wd, nk, (uint32_t)v);
            else if (g.kv[i].type == GGUF_TYPE_FLOAT32) {
                float f;
                memcpy(&f, g.kv[i].data, 4);
                gguf_set_f32(wd, nk, f);
            }
        } else if (gguf_str_eq(k, "general.architecture")) {
            gguf_set_str(wd, "general.architecture", "deci");
        } else {
            assert_int_equal(gguf_set_kv_from(wd, &g, i), 0);
        }
    }
    int32_t a_nh[L], a_nkv[L], a_nff[L];
    for (int l = 0; l < L; l++) { a_nh[l] = nh[l]; a_nkv[l] = nkv[l]; a_nff[l] = nff[l]; }
    gguf_set_arr(wd, "deci.attention.head_count", GGUF_TYPE_INT32, a_nh, L);
    gguf_set_arr(wd, "deci.attention.head_count_kv", GGUF_TYPE_INT32, a_nkv, L);
    gguf_set_arr(wd, "deci.feed_forward_length", GGUF_TYPE_INT32, a_nff, L);
    gguf_set_u32(wd, "deci.attention.key_length", HD);
    gguf_set_u32(wd, "deci.attention.value_length", HD);
    /* buffers that must live until the writers are done */
    float *bufs[64];
    int nb = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        int l = -1;
        char what[48] = "";
        sscanf(name, "blk.%d.%47s", &l, what);
        const float *src = t->data;
        if (l < 0) {
            assert_int_equal(gguf_add_tensor_from(wz, &g, i, &e), 0);
            assert_int_equal(gguf_add_tensor_from(wd, &g, i, &e), 0);
            continue;
        }
        int64_t ne[2] = {t->ne[0], t->ne[1]};
        if (!strcmp(what, "attn_output.weight") || !strcmp(what, "ffn_down.weight")) {
            /* zeroed copy: columns (inputs) beyond what the deci layer keeps are 0 */
            int keep = !strcmp(what, "ffn_down.weight") ? nff[l] : nh[l] * HD;
            float *z = bufs[nb++] = dup_floats(src, (size_t)ne[0] * ne[1]);
            for (int o = 0; o < ne[1]; o++)
                for (int c = keep; c < ne[0]; c++) z[o * ne[0] + c] = 0;
            assert_int_equal(gguf_add_tensor(wz, name, GGML_TYPE_F32, 2, ne, z, &e), 0);
            if (keep == 0) continue;
            float *s2 = bufs[nb++] = malloc(sizeof(float) * (size_t)keep * ne[1]);
            for (int o = 0; o < ne[1]; o++) memcpy(s2 + o * keep, src + o * ne[0], sizeof(float) * keep);
            int64_t ne2[2] = {keep, ne[1]};
            assert_int_equal(gguf_add_tensor(wd, name, GGML_TYPE_F32, 2, ne2, s2, &e), 0);
            continue;
        }
        assert_int_equal(gguf_add_tensor_from(wz, &g, i, &e), 0);
        int rows = -1;   /* rows kept in the deci file (-1: all) */
        if (!strcmp(what, "attn_q.weight")) rows = nh[l] * HD;
        if (!strcmp(what, "attn_k.weight") || !strcmp(what, "attn_v.weight")) rows = nkv[l] * HD;
        if (!strcmp(what, "ffn_gate.weight") || !strcmp(what, "ffn_up.weight")) rows = nff[l];
        if (!strcmp(what, "attn_norm.weight") && nh[l] == 0) continue;
        if (!strcmp(what, "ffn_norm.weight") && nff[l] == 0) continue;
        if (rows == 0) continue;
        if (rows < 0) {
            assert_int_equal(gguf_add_tensor_from(wd, &g, i, &e), 0);
        } else {
            int64_t ne2[2] = {ne[0], rows};
            assert_int_equal(gguf_add_tensor(wd, name, GGML_TYPE_F32, 2, ne2, src, &e), 0);  /* a row prefix */
        }
    }
    if (gguf_writer_write(wz, zp, &e)) fail_msg("%s", e.msg);
    if (gguf_writer_write(wd, dp, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(wz);
    gguf_writer_free(wd);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    gguf_close(&g);

    et_engine *mz = load_or_fail(zp), *md = load_or_fail(dp);
    assert_string_equal(md->hp.arch, "deci");
    for (int l = 0; l < L; l++) {
        assert_int_equal(md->layers[l].n_head, nh[l]);
        assert_int_equal(md->layers[l].n_head_kv, nkv[l]);
        assert_int_equal(md->layers[l].n_ff, nff[l]);
    }
    int32_t tok[30];
    for (int i = 0; i < 30; i++) tok[i] = (int32_t)((i * 71 + 5) % 512);
    tok[0] = 1;
    et_state *sz = state_or_fail(mz, 32, 1, NULL, GGML_TYPE_F32), *sd = state_or_fail(md, 32, 2, NULL, GGML_TYPE_F32);
    float *lz = all_logits(sz, tok, 30, 30), *ld = all_logits(sd, tok, 30, 9);
    double maxd = 0, maxv = 0;
    for (size_t i = 0; i < (size_t)30 * 512; i++) {
        maxd = fmax(maxd, fabs(lz[i] - ld[i]));
        maxv = fmax(maxv, fabs(lz[i]));
    }
    fprintf(stderr, "  deci (heads 8,4,0,6,8; ffn 172,100,64,0,172) vs zeroed llama: max |diff| %.2e of %.2f\n", maxd, maxv);
    assert_true(maxd < 1e-4 * maxv);
    free(lz);
    free(ld);
    et_state_free(sz);
    et_state_free(sd);
    et_engine_free(mz);
    et_engine_free(md);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_stories260K),
        cmocka_unit_test(test_llamacpp_logits),
        cmocka_unit_test(test_bitwise_consistency),
        cmocka_unit_test(test_dropped_rows),
        cmocka_unit_test(test_simd_dots_match_scalar),
        cmocka_unit_test(test_simd_k_random_blocks),
        cmocka_unit_test(test_scalar_dots_vs_double),
        cmocka_unit_test(test_activation_quantizers),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_seeded_generation),
        cmocka_unit_test(test_bad_models),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_nll_plumbing),
        cmocka_unit_test(test_nll_golden),
        cmocka_unit_test(test_llama2c_bin),
        cmocka_unit_test(test_deci_widths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
