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

int main(void) {
    dump_goldens();
    if (getenv("ET_IMATRIX_DUMP")) return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_rand),
        cmocka_unit_test(test_golden_stories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
