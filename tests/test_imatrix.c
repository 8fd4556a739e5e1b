/* tests/test_imatrix.c — the importance matrix (quant/imatrix.h, engine
 * et_imatrix_run) and quantization with it (quant/weighted.c,
 * et_quantize_model_imatrix).
 *
 * - collection: stories260K over the first 100,000 bytes of
 *   ../shared/data/tinystories_sample.txt (ctx 128, 40 chunks, F32 KV
 *   cache) gives the entries, ncall and chunk count of llama.cpp
 *   c392e509's llama-imatrix on the same text (tests/data/imatrix/
 *   stories260K.imatrix.dat, made by `llama-imatrix -m stories260K.gguf
 *   -f calib.txt -o ... -c 128 --chunks 40 -t 1 --no-ppl -ctk f32 -ctv f32`)
 *   and its weights to 1e-5 relative; Σx² against a double-precision sum;
 * - quantization: rand-llama-256 (rows of 256, every K-quant without
 *   fallback) with a synthetic imatrix made here (hash-defined values
 *   0.001..20), and stories260K with llama-imatrix's file above (the
 *   IQ4_NL, Q5_0, Q5_1 fallbacks weighted too): the whole file's sha256 is
 *   that of `llama-quantize --imatrix F IN OUT TYPE` (c392e509) for every
 *   ftype edgetune quantize writes;
 * - the files: .dat and GGUF round trips, the weights llama-quantize would
 *   derive, every truncation and random corruption of a file either loads
 *   or fails with ET_EINPUT (no crash; ASan in `make check`);
 * - bad input: an imatrix for another model (missing entry, wrong column
 *   count, an extra entry) is refused naming the tensor, nothing written;
 *   the Q4_0 + imatrix ffn_down rule on a 32-layer policy. */
#include "testutil.h"

#include <math.h>

#include "../engine/engine.h"
#include "../eval/eval.h"
#include "../export/gguf.h"
#include "../quant/imatrix.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"

#define STORIES_IMATRIX "tests/data/imatrix/stories260K.imatrix.dat"

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A synthetic imatrix for every blk.* weight of `model` that llama-quantize
 * quantizes: value j of tensor `name` = (hash(name, j) % 20000 + 1) / 1000
 * (exact decimal steps, no libm), count 1, ncall 1, written as a .dat. */
static void synth_imatrix(const char *model, const char *out) {
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, model, &e), 0);
    et_imatrix im;
    et_imatrix_init(&im);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[GGUF_MAX_NAME];
        memcpy(name, t->name.ptr, (size_t)t->name.len);
        name[t->name.len] = 0;
        if (strncmp(name, "blk.", 4) || !et_quant_wants(name, t->ne[1] > 1 ? 2 : 1)) continue;
        uint64_t h = 1469598103934665603ull;
        for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
        float *x = malloc(sizeof(float) * (size_t)t->ne[0]);
        for (int64_t j = 0; j < t->ne[0]; j++) x[j] = sqrtf((float)(mix64(h + (uint64_t)j) % 20000 + 1) / 1000.0f);
        assert_int_equal(et_imatrix_accumulate(&im, name, x, 1, t->ne[0], &e), 0);  /* sum2 = x^2 */
        free(x);
    }
    im.chunk_count = 1;
    im.dataset = strdup("synthetic");
    assert_int_equal(et_imatrix_save(&im, out, ET_IMATRIX_DAT, &e), 0);
    et_imatrix_free(&im);
    gguf_close(&g);
}

/* Quantize with an imatrix, recorded in the file as `name`; sha256 of the result. */
static void quantize_sha(const char *src, const char *type, const char *imf, const char *name, char hex[65]) {
    et_imatrix im;
    et_err e = {0};
    if (et_imatrix_load(&im, imf, &e)) fail_msg("%s", e.msg);
    const char *out = test_tmp("im-out.gguf");
    et_quant_params p = {.ftype = et_ftype_from_name(type)};
    if (et_quantize_model_imatrix(src, out, &p, &im, name, NULL, &e)) fail_msg("%s: %s", type, e.msg);
    et_imatrix_free(&im);
    assert_int_equal(et_file_sha256(out, hex, NULL, &e), 0);
}

typedef struct golden { const char *type, *sha; } golden;

/* sha256 of `llama-quantize --imatrix rand-llama-256.imatrix.dat rand-llama-256.gguf out.gguf TYPE`
 * (c392e509), the imatrix being synth_imatrix's, in the current directory. */
static const golden RAND_GOLDEN[] = {
    {"Q4_0", "5196376b8f14290b22a41e0fe32c11895c0eca01affe82a7451b79e7e59f6f60"},
    {"Q4_1", "bcf4a6a3bc113f22304ec076fad9ace88e9a4efbc38dc3bcb2050f8d2c168b49"},
    {"Q5_1", "39c04a4e1dfba97d71312aaabad5d32522f14fcae0bfec84d55b644c1ba4d178"},
    {"Q8_0", "cbbd26faacb47e167c04e7db4a6a914e80fb4714eb093551007f0367013ee8fd"},
    {"Q2_K", "b094e5e6f08147632a2489cf9c06172b378cbf67ab7b247031e56062d0f691a7"},
    {"Q3_K_S", "6b06b31df671448f822bf41133235b1abed3600c4e62fa886ee824b41a4db028"},
    {"Q3_K_M", "7cd0bc38e8e69259aa5b13c547302926ae1d55f915a6348a93f4336e36e4b7b3"},
    {"Q3_K_L", "57195a06157caa211a17c412b4cce4a8b07c3092e49c55986a02aeca5c206f68"},
    {"Q4_K_M", "6f47fb339384fd37c6491345fccb860aa85cffd48570259cd7a2dc91c1cb021c"},
    {"Q5_K_S", "3b9dcb167863fd9ec32bfe9a9f40dbadd51a5677c62d58dc9db54c0d5828c01b"},
    {"Q5_K_M", "9a28c05fbd0ae9d8738f1c36871509d04f680be59bf148e217936ac3e2abc0bb"},
    {"Q6_K", "0d5a531738ee814b156dac65e3df3c2214a2d287ccf7ba2376a4bf43501b2587"},
};

/* sha256 of `llama-quantize --imatrix stories260K.imatrix.dat stories260K.gguf out.gguf TYPE` (c392e509). */
static const golden STORIES_GOLDEN[] = {
    {"Q2_K", "739243397c2b5bd86bdda6f62eddf3d95593b33d90e3adb0605c047bc1b95d0d"},
    {"Q3_K_S", "8754585ae980b92f408462aec40758578daf6d4e6bd10036a51209517e871c40"},
    {"Q3_K_M", "de9488210575f328f50b114c4f7c8c9396da25bc7d5dfec1948587d3bb987652"},
    {"Q3_K_L", "49be25e4df4837da02bf9a619e800701c0ce9863abc4bc05b190ae0f2d25adcd"},
    {"Q4_K_M", "9797190dad2e211719e0b24db8a7d2e335c31bacfa3f47dc0119ca6e62efd5a3"},
    {"Q5_K_S", "65a00aef4acd5e0c4082ef1e52dd08979685d6db3d3ec2b9e4c01a539ec736f6"},
    {"Q5_K_M", "c0cf83d188cb254feb2100aaf0540d8cd0414ef6c4af2d1d5b705b1e7ffa5443"},
    {"Q6_K", "c6fcf8fbe9897af7337f5e2d6f75ae7a13b562cb1c8566c7a47996b19c63a040"},
};

static void dump_goldens(void) {
    /* ET_IMATRIX_DUMP=DIR: write the synthetic imatrix and print edgetune's sha256s (to record goldens) */
    const char *dir = getenv("ET_IMATRIX_DUMP");
    if (!dir) return;
    char path[1024];
    const char *rand_m = shared_path("golden/quant/rand-llama-256.gguf");
    const char *stories = shared_path("models/stories260K/stories260K.gguf");
    snprintf(path, sizeof path, "%s/rand-llama-256.imatrix.dat", dir);
    synth_imatrix(rand_m, path);
    static const char *const RT[] = {"Q4_0", "Q4_1", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
                                     "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", NULL};
    for (int i = 0; RT[i]; i++) {
        char hex[65];
        quantize_sha(rand_m, RT[i], path, "rand-llama-256.imatrix.dat", hex);
        printf("rand %s %s\n", RT[i], hex);
    }
    static const char *const ST[] = {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", NULL};
    for (int i = 0; ST[i]; i++) {
        char hex[65];
        quantize_sha(stories, ST[i], STORIES_IMATRIX, "stories260K.imatrix.dat", hex);
        printf("stories %s %s\n", ST[i], hex);
    }
}

static void test_golden_rand(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "golden/quant/rand-llama-256.gguf");
    char imf[512];
    snprintf(imf, sizeof imf, "%s", test_tmp("rand-llama-256.imatrix.dat"));
    synth_imatrix(src, imf);
    for (size_t i = 0; i < sizeof RAND_GOLDEN / sizeof RAND_GOLDEN[0]; i++) {
        char hex[65];
        quantize_sha(src, RAND_GOLDEN[i].type, imf, "rand-llama-256.imatrix.dat", hex);
        if (strcmp(hex, RAND_GOLDEN[i].sha))
            fail_msg("rand-llama-256 %s + imatrix: sha256 %s, llama-quantize's file has %s", RAND_GOLDEN[i].type, hex,
                     RAND_GOLDEN[i].sha);
    }
}

static void test_golden_stories(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    for (size_t i = 0; i < sizeof STORIES_GOLDEN / sizeof STORIES_GOLDEN[0]; i++) {
        char hex[65];
        quantize_sha(src, STORIES_GOLDEN[i].type, STORIES_IMATRIX, "stories260K.imatrix.dat", hex);
        if (strcmp(hex, STORIES_GOLDEN[i].sha))
            fail_msg("stories260K %s + imatrix: sha256 %s, llama-quantize's file has %s", STORIES_GOLDEN[i].type, hex,
                     STORIES_GOLDEN[i].sha);
    }
}

/* ------------------------------------------------ collection vs llama-imatrix */

/* Weights of every entry of a and b, max relative difference (entries must match). */
static double max_rel_diff(const et_imatrix *a, const et_imatrix *b) {
    double worst = 0;
    assert_int_equal(a->n_entries, b->n_entries);
    for (int i = 0; i < a->n_entries; i++) {
        const et_imatrix_entry *x = &a->e[i], *y = et_imatrix_find(b, x->name);
        if (!y) fail_msg("entry '%s' missing from the other imatrix", x->name);
        assert_int_equal(x->n, y->n);
        float *wa = malloc(sizeof(float) * (size_t)x->n), *wb = malloc(sizeof(float) * (size_t)x->n);
        et_imatrix_weights(a, x, wa);
        et_imatrix_weights(b, y, wb);
        for (int64_t j = 0; j < x->n; j++) {
            double d = fabs((double)wa[j] - wb[j]) / fmax(fmax(fabs(wa[j]), fabs(wb[j])), 1e-30);
            if (d > worst) worst = d;
        }
        free(wa);
        free(wb);
    }
    return worst;
}

static void test_collect_stories(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(text, "data/tinystories_sample.txt");
    et_err e = {0};
    et_engine *m;
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 128;
    o.n_batch = 128;
    o.kv_type = GGML_TYPE_F32;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &o, &e), 0);
    et_map mp;
    assert_int_equal(et_map_open(&mp, text, &e), 0);
    int32_t *tok;
    size_t n;
    assert_int_equal(et_tok_encode(m->tok, (const char *)mp.data, 100000, ET_TOK_DEFAULT_BOS, &tok, &n, &e), 0);
    et_map_close(&mp);
    assert_int_equal(n, 50772);  /* llama-imatrix: "tokenizes to" 50772 tokens */
    et_imatrix got, want;
    et_imatrix_init(&got);
    et_imatrix_opts io = {128, 40, 0, et_tok_bos(m->tok)};
    if (et_imatrix_run(s, tok, n, &io, &got, NULL, NULL, &e)) fail_msg("%s", e.msg);
    got.format = ET_IMATRIX_GGUF;  /* collected sums: weight = sum2 / count */
    assert_int_equal(et_imatrix_load(&want, STORIES_IMATRIX, &e), 0);
    assert_int_equal(got.n_entries, 35);  /* 5 layers x q k v o gate up down; not token_embd, not the tied head */
    assert_int_equal(got.chunk_count, want.chunk_count);
    for (int i = 0; i < got.n_entries; i++) {
        const et_imatrix_entry *w = et_imatrix_find(&want, got.e[i].name);
        assert_non_null(w);
        assert_int_equal(got.e[i].ncall, w->ncall);
        assert_true(got.e[i].count == 40 * 128);
    }
    double d = max_rel_diff(&got, &want);
    fprintf(stderr, "stories260K imatrix vs llama-imatrix (F32 KV, 40 chunks of 128): max relative difference %.3g\n", d);
    assert_true(d < 1e-5);
    et_imatrix_free(&got);
    et_imatrix_free(&want);
    free(tok);
    /* too little data, as llama-imatrix: 2 * ctx tokens needed */
    et_imatrix_init(&got);
    int32_t few[200] = {0};
    assert_int_equal(et_imatrix_run(s, few, 200, &io, &got, NULL, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "at least 256 tokens"));
    et_imatrix_free(&got);
    et_state_free(s);
    et_engine_free(m);
}

static void test_accumulate(void **state) {
    (void)state;
    et_imatrix im;
    et_imatrix_init(&im);
    et_err e = {0};
    float x[3 * 5];
    double ref[5] = {0};
    for (int i = 0; i < 15; i++) {
        x[i] = (float)((int)(mix64((uint64_t)i) % 2001) - 1000) / 250.0f;
        ref[i % 5] += (double)x[i] * x[i];
    }
    assert_int_equal(et_imatrix_accumulate(&im, "blk.0.attn_q.weight", x, 2, 5, &e), 0);
    assert_int_equal(et_imatrix_accumulate(&im, "blk.0.attn_q.weight", x + 10, 1, 5, &e), 0);
    const et_imatrix_entry *en = et_imatrix_find(&im, "blk.0.attn_q.weight");
    assert_non_null(en);
    assert_int_equal(en->ncall, 2);
    assert_true(en->count == 3);
    for (int j = 0; j < 5; j++) assert_true(fabs(en->sum2[j] - ref[j]) <= 1e-6 * ref[j] + 1e-12);
    /* another width for the same tensor, a non-finite sum */
    assert_int_equal(et_imatrix_accumulate(&im, "blk.0.attn_q.weight", x, 1, 4, &e), ET_EINPUT);
    float big[2] = {3e38f, 3e38f};
    assert_int_equal(et_imatrix_accumulate(&im, "blk.0.ffn_up.weight", big, 1, 2, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.0.ffn_up.weight"));
    et_imatrix_free(&im);
}

/* ------------------------------------------------ files */

static void test_roundtrip(void **state) {
    (void)state;
    et_err e = {0};
    et_imatrix a, b, c;
    assert_int_equal(et_imatrix_load(&a, STORIES_IMATRIX, &e), 0);
    assert_int_equal(a.n_entries, 35);
    assert_int_equal(a.chunk_count, 40);
    assert_string_equal(a.dataset, "calib.txt");
    const char *pd = test_tmp("rt.dat"), *pg = test_tmp("rt.imatrix.gguf");
    assert_int_equal(et_imatrix_save(&a, pd, ET_IMATRIX_DAT, &e), 0);
    assert_int_equal(et_imatrix_save(&a, pg, ET_IMATRIX_GGUF, &e), 0);
    assert_int_equal(et_imatrix_load(&b, pd, &e), 0);
    assert_int_equal(et_imatrix_load(&c, pg, &e), 0);
    assert_int_equal(c.format, ET_IMATRIX_GGUF);
    assert_int_equal(c.chunk_count, 40);
    assert_string_equal(c.dataset, "calib.txt");
    /* the weights quantize would use: the same from all three */
    assert_true(max_rel_diff(&a, &c) == 0.0);
    assert_true(max_rel_diff(&a, &b) < 2e-7);
    /* and the same quantized file from the .dat and the GGUF form */
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    char h1[65], h2[65];
    quantize_sha(src, "Q3_K_M", STORIES_IMATRIX, "x", h1);
    quantize_sha(src, "Q3_K_M", pg, "x", h2);
    assert_string_equal(h1, h2);
    et_imatrix_free(&a);
    et_imatrix_free(&b);
    et_imatrix_free(&c);
}

/* Every step-th prefix and 3000 random corruptions of a file load or fail
 * with ET_EINPUT; at most max_ok prefixes load (a .dat without its trailer;
 * a GGUF cut in its final padding). */
static void fuzz_file(const char *path, size_t step, int max_ok) {
    size_t n;
    uint8_t *buf = (uint8_t *)test_slurp(path);
    assert_non_null(buf);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    n = (size_t)ftell(f);
    fclose(f);
    et_err e = {0};
    et_imatrix im;
    int n_ok = 0;
    for (size_t k = 0; k < n; k += step) {
        uint8_t *cp = malloc(k ? k : 1);  /* exact size, so ASan sees any over-read */
        memcpy(cp, buf, k);
        int rc = et_imatrix_load_mem(&im, cp, k, "prefix", &e);
        if (rc != 0 && rc != ET_EINPUT) fail_msg("prefix %zu: code %d (%s)", k, rc, e.msg);
        n_ok += rc == 0;
        if (!rc) et_imatrix_free(&im);
        free(cp);
    }
    if (n_ok > max_ok) fail_msg("%s: %d truncated copies load", path, n_ok);
    uint64_t r = 42;
    for (int it = 0; it < 3000; it++) {
        uint8_t *cp = malloc(n);
        memcpy(cp, buf, n);
        int flips = 1 + (int)(mix64(r++) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(mix64(r++) % n);
            cp[at] ^= (uint8_t)(1u << (mix64(r++) % 8));
        }
        int rc = et_imatrix_load_mem(&im, cp, n, "corrupt", &e);
        if (rc != 0 && rc != ET_EINPUT) fail_msg("corruption %d: code %d (%s)", it, rc, e.msg);
        if (!rc) et_imatrix_free(&im);
        free(cp);
    }
    assert_int_equal(et_imatrix_load_mem(&im, buf, n, "whole", &e), 0);
    et_imatrix_free(&im);
    free(buf);
}

static void test_malformed(void **state) {
    (void)state;
    fuzz_file(STORIES_IMATRIX, 1, 2);
    et_err e = {0};
    et_imatrix a;
    assert_int_equal(et_imatrix_load(&a, STORIES_IMATRIX, &e), 0);
    const char *pg = test_tmp("fz.imatrix.gguf");
    assert_int_equal(et_imatrix_save(&a, pg, ET_IMATRIX_GGUF, &e), 0);
    et_imatrix_free(&a);
    fuzz_file(pg, 3, 32 / 3 + 1);
    /* named failures */
    static const struct { const char *bytes; size_t n; const char *msg; } BAD[] = {
        {"", 0, "not an imatrix"},
        {"\x00\x00\x00\x00", 4, "bad entry count 0"},
        {"\x01\x00\x00\x00\xff\xff\xff\x7f" "abcdefghijklm", 21, "bad name length"},
        {"\x01\x00\x00\x00\x01\x00\x00\x00" "a\x01\x00\x00\x00\x00\x00\x00\x00" "zzzz", 21, "values do not fit"},
        {"\x01\x00\x00\x00\x01\x00\x00\x00" "a\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x80\x7f", 21, "not finite"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        et_imatrix im;
        assert_int_equal(et_imatrix_load_mem(&im, BAD[i].bytes, BAD[i].n, "bad.dat", &e), ET_EINPUT);
        if (!strstr(e.msg, BAD[i].msg)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, BAD[i].msg);
    }
}

/* ------------------------------------------------ bad input to quantize */

static void expect_refused(const char *src, const et_imatrix *im, const char *want_msg) {
    const char *out = test_tmp("refused.gguf");
    remove(out);
    et_quant_params p = {.ftype = ET_FTYPE_MOSTLY_Q4_K_M};
    et_err e = {0};
    assert_int_equal(et_quantize_model_imatrix(src, out, &p, im, "im.dat", NULL, &e), ET_EINPUT);
    if (!strstr(e.msg, want_msg)) fail_msg("message '%s' lacks '%s'", e.msg, want_msg);
    assert_int_not_equal(access(out, F_OK), 0);  /* nothing written */
}

static void test_other_model(void **state) {
    (void)state;
    SHARED_OR_SKIP(rand_m, "golden/quant/rand-llama-256.gguf");
    SHARED_OR_SKIP(stories, "models/stories260K/stories260K.gguf");
    et_err e = {0};
    et_imatrix im;
    assert_int_equal(et_imatrix_load(&im, STORIES_IMATRIX, &e), 0);
    /* stories260K's imatrix on rand-llama-256: the first tensor in output order differs in width */
    expect_refused(rand_m, &im, "entry 'blk.0.attn_k.weight' has 64 columns but the model's tensor has 256");
    /* a missing entry: drop blk.3.ffn_up.weight */
    et_imatrix_entry *x = (et_imatrix_entry *)et_imatrix_find(&im, "blk.3.ffn_up.weight");
    assert_non_null(x);
    et_imatrix_entry keep = *x;
    snprintf(x->name, sizeof x->name, "blk.9.ffn_up.weight");
    expect_refused(stories, &im, "no entry for the model's tensor 'blk.3.ffn_up.weight'");
    /* an extra entry naming no tensor */
    *x = keep;
    assert_int_equal(et_imatrix_accumulate(&im, "blk.7.attn_q.weight", x->sum2, 1, 64, &e), 0);
    expect_refused(stories, &im, "entry 'blk.7.attn_q.weight' names no tensor");
    et_imatrix_free(&im);
    /* the command line: exit 2, no output, for a truncated file and another model's */
    if (!test_have_edgetune()) return;
    char *whole = test_slurp(STORIES_IMATRIX);
    FILE *f = fopen(test_tmp("trunc.dat"), "wb");
    fwrite(whole, 1, 5000, f);
    fclose(f);
    free(whole);
    char cmd[2048];
    const char *out = test_tmp("cli-out.gguf");
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type Q4_K_M --imatrix %s", stories, out, test_tmp("trunc.dat"));
    assert_int_equal(test_run(cmd), 2);
    assert_int_not_equal(access(out, F_OK), 0);
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type Q4_K_M --imatrix %s", rand_m, out, STORIES_IMATRIX);
    assert_int_equal(test_run(cmd), 2);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "blk.0.attn_k.weight"));
    free(log);
    assert_int_not_equal(access(out, F_OK), 0);
    /* a K-quant on rows of 64/172 falls back and says so, with the imatrix used there too */
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type Q3_K_M --imatrix %s", stories, out, STORIES_IMATRIX);
    assert_int_equal(test_run(cmd), 0);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "fallback: blk.0.attn_q.weight wanted Q3_K"));
    assert_non_null(strstr(log, "(imatrix)"));
    free(log);
}

/* ------------------------------------------------ the policy and the weighted quantizers */

static void test_policy_q4_0_imatrix(void **state) {
    (void)state;
    et_quant_policy qp;
    memset(&qp, 0, sizeof qp);
    qp.ftype = ET_FTYPE_MOSTLY_Q4_0;
    qp.base_type = GGML_TYPE_Q4_0;
    qp.n_layer = 32;
    qp.n_attention_wv = 32;
    qp.has_output = 1;
    for (int pass = 0; pass < 2; pass++) {
        qp.i_ffn_down = 0;
        qp.has_imatrix = pass;
        for (int l = 0; l < 32; l++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
            uint32_t want, t = et_quant_choose(&qp, name, 11008, &want, NULL, 0);
            /* llama-quant.cpp: Q4_0 with an imatrix -> Q4_1 for i_layer < n_layer/8 */
            assert_int_equal(t, pass && l < 4 ? GGML_TYPE_Q4_1 : GGML_TYPE_Q4_0);
        }
    }
}

/* The weighted paths lower the weighted error Σ w (x - deq)^2 against the
 * unweighted ones on rows with skewed weights (summed over 16 rows). */
static void test_weighted_error(void **state) {
    (void)state;
    static const uint32_t TYPES[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K,
                                     GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL};
    enum { N = 512, R = 16 };
    float *x = malloc(sizeof(float) * N * R), *w = malloc(sizeof(float) * N), *d = malloc(sizeof(float) * N * R);
    uint8_t *q = malloc(N * R * 2);
    uint64_t r = 7;
    for (int i = 0; i < N * R; i++) x[i] = (float)((int)(mix64(r++) % 20001) - 10000) / 10000.0f;
    for (int j = 0; j < N; j++) w[j] = (mix64(r++) % 8 == 0) ? 50.0f : 0.1f;
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++) {
        double err[2];
        for (int pass = 0; pass < 2; pass++) {
            assert_int_equal(et_quantize_rows_imatrix(TYPES[k], x, q, R, N, pass ? w : NULL), 0);
            assert_int_equal(et_dequantize_row(TYPES[k], q, d, N * R), 0);
            err[pass] = 0;
            for (int i = 0; i < N * R; i++) err[pass] += w[i % N] * ((double)x[i] - d[i]) * ((double)x[i] - d[i]);
        }
        if (!(err[1] < 0.9 * err[0]))
            fail_msg("%s: weighted error %g with the imatrix, %g without", ggml_type_name(TYPES[k]), err[1], err[0]);
    }
    assert_int_equal(et_quantize_rows_imatrix(GGML_TYPE_Q4_K, x, q, 1, 100, w), ET_EINPUT);
    free(x);
    free(w);
    free(d);
    free(q);
}

int main(void) {
    dump_goldens();
    if (getenv("ET_IMATRIX_DUMP")) return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_rand),
        cmocka_unit_test(test_golden_stories),
        cmocka_unit_test(test_collect_stories),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_other_model),
        cmocka_unit_test(test_policy_q4_0_imatrix),
        cmocka_unit_test(test_weighted_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
