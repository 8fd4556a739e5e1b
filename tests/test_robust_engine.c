/* tests/test_robust_engine.c — issue 11, items 1 and 2: non-finite logits
 * and non-finite LoRA adapters.
 *
 *  1. The samplers never index an empty candidate set (all-NaN logits with
 *     temperature, top-p and min-p used to read idx[-1]), and the engine
 *     refuses non-finite logits (ET_ERUN naming the position): a stories260K
 *     whose output_norm holds a NaN makes `run` and `edgerun` exit 3.
 *  2. One adapter validation (engine/engine.h et_lora_check_*): an adapter
 *     with a NaN in lora_b, or a NaN alpha, is refused by the engine loader
 *     (run, edgerun, perplexity, eval, logits) and by the training-side
 *     loader (merge), with the same message.
 * The models are stories260K (skipped when ../shared is absent). */
#include <math.h>

#include "testutil.h"

#include "../engine/engine.h"
#include "../export/gguf.h"
#include "../lora/adapter.h"

/* ------------------------------------------------------------ 1. sampler */

static void sample_all(const float *lg, int n, float temp, int top_k, float top_p, float min_p) {
    et_sampler s;
    et_err e = {0};
    et_sampler_params p = {temp, top_k, top_p, min_p, 7};
    assert_int_equal(et_sampler_init(&s, &p, n, &e), 0);
    for (int r = 0; r < 20; r++) {
        int id = et_sample(&s, lg);
        assert_true(id >= 0 && id < n);
    }
    et_sampler_free(&s);
}

static void test_sampler_nonfinite(void **state) {
    (void)state;
    enum { N = 300 };
    float *lg = malloc(sizeof(float) * N);
    assert_non_null(lg);
    /* all NaN: min-p used to keep no candidate and read idx[k-1] with k = 0 */
    for (int i = 0; i < N; i++) lg[i] = NAN;
    sample_all(lg, N, 0.8f, 0, 0.95f, 0.05f);
    sample_all(lg, N, 0.8f, 40, 0.95f, 0.05f);
    sample_all(lg, N, 0.8f, 0, 1.0f, 0.05f);
    sample_all(lg, N, 0.0f, 0, 1.0f, 0.0f);
    /* one NaN among finite values, +Inf, -Inf everywhere */
    for (int i = 0; i < N; i++) lg[i] = (float)(i % 17) * 0.1f;
    lg[5] = NAN;
    sample_all(lg, N, 1.2f, 0, 0.9f, 0.1f);
    lg[5] = INFINITY;
    sample_all(lg, N, 1.2f, 0, 0.9f, 0.1f);
    for (int i = 0; i < N; i++) lg[i] = -INFINITY;
    sample_all(lg, N, 0.8f, 0, 0.95f, 0.05f);
    sample_all(lg, N, 0.8f, 10, 0.5f, 0.0f);
    free(lg);
}

/* ------------------------------------------------------------ 1. engine */

/* A copy of stories260K.gguf with output_norm.weight[0] = NaN. */
static const char *nan_model(void) {
    const char *src = shared_path("models/stories260K/stories260K.gguf");
    if (!src) return NULL;
    static char out[600];
    snprintf(out, sizeof out, "%s", test_tmp("nan_model.gguf"));
    if (access(out, R_OK) == 0) return out;
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, src, &e), 0);
    const gguf_tensor *t = gguf_find_tensor(&g, "output_norm.weight");
    assert_non_null(t);
    assert_int_equal(t->type, 0);   /* F32 */
    size_t off = (size_t)((const uint8_t *)t->data - (const uint8_t *)g.map.data);
    gguf_close(&g);
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    float nan = NAN;
    memcpy(buf + off, &nan, sizeof nan);
    f = fopen(out, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(buf);
    return out;
}

static void test_engine_nonfinite_logits(void **state) {
    (void)state;
    const char *path = nan_model();
    if (!path) {
        fprintf(stderr, "SKIP: stories260K.gguf not found (shared data absent)\n");
        skip();
    }
    et_engine *m;
    et_err e = {0};
    assert_int_equal(et_engine_load(&m, path, &e), 0);
    et_state *st;
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 32;
    assert_int_equal(et_state_new(&st, m, &o, &e), 0);
    float *lg = malloc(sizeof(float) * 3 * (size_t)m->hp.n_vocab);
    int32_t tok[3] = {1, 400, 38};
    int rc = et_forward(st, tok, 3, lg, 1, &e);
    assert_int_equal(rc, ET_ERUN);
    assert_non_null(strstr(e.msg, "position 0"));
    assert_non_null(strstr(e.msg, "not finite"));
    /* last-token logits: the position is the last one */
    et_state_reset(st);
    memset(&e, 0, sizeof e);
    assert_int_equal(et_forward(st, tok, 3, lg, 0, &e), ET_ERUN);
    assert_non_null(strstr(e.msg, "position 2"));
    free(lg);
    et_state_free(st);
    et_engine_free(m);
    /* the commands: exit 3 with the message, nothing printed as text */
    if (!test_have_edgetune()) return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./edgetune run %s --prompt 'Once upon' --n 8 --temp 0.8 --top-p 0.95 --min-p 0.05",
             path);
    assert_int_equal(test_run(cmd), 3);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(log);
    assert_non_null(strstr(log, "not finite"));
    free(log);
    if (access("./edgerun", X_OK) == 0) {
        snprintf(cmd, sizeof cmd, "./edgerun -m %s -p 'Once upon' -n 8 --temp 0.8", path);
        assert_int_equal(test_run(cmd), 3);
    }
}

/* ------------------------------------------------------------ 2. adapters */

/* A one-pair adapter on blk.0.attn_q.weight of stories260K (n_embd 64,
 * rank 4): lora_b[bad] = v (no change when bad < 0), alpha as given. */
static const char *write_adapter(const char *name, float alpha, int bad, float v) {
    static float a[4 * 64], b[64 * 4];
    for (int i = 0; i < 4 * 64; i++) {
        a[i] = 0.01f * (float)((i * 7) % 13 - 6);
        b[i] = 0.02f * (float)((i * 5) % 11 - 5);
    }
    if (bad >= 0) b[bad] = v;
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(gguf_set_str(w, "general.type", "adapter"), 0);
    assert_int_equal(gguf_set_str(w, "adapter.type", "lora"), 0);
    assert_int_equal(gguf_set_f32(w, "adapter.lora.alpha", alpha), 0);
    et_err e = {0};
    int64_t nea[2] = {64, 4}, neb[2] = {4, 64};
    assert_int_equal(gguf_add_tensor(w, "blk.0.attn_q.weight.lora_a", 0, 2, nea, a, &e), 0);
    assert_int_equal(gguf_add_tensor(w, "blk.0.attn_q.weight.lora_b", 0, 2, neb, b, &e), 0);
    const char *path = test_tmp(name);
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    return path;
}

static void expect_refused(const char *model, const char *ad, const char *what) {
    et_engine *m;
    et_err e = {0};
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    et_adapter *a = NULL;
    assert_int_equal(et_adapter_load(&a, ad, m, &e), ET_EINPUT);
    assert_null(a);
    assert_non_null(strstr(e.msg, what));
    char engine_msg[1024];
    snprintf(engine_msg, sizeof engine_msg, "%s", e.msg);
    et_engine_free(m);
    /* the training-side loader (merge, lora) says the same */
    lora_adapter la;
    memset(&e, 0, sizeof e);
    assert_int_equal(lora_adapter_load_gguf(&la, ad, &e), ET_EINPUT);
    assert_string_equal(e.msg, engine_msg);
    if (!test_have_edgetune()) return;
    const char *text = test_tmp("ppl.txt");
    test_spit(text, "Once upon a time there was a little girl. She liked to play in the park with her dog.\n");
    const char *cmds[] = {
        "./edgetune run %s --prompt Once --n 4 --lora %s",
        "./edgetune perplexity %s %s.txt --lora %s",
        "./edgetune merge %s %s -o %s.merged.gguf",
        "./edgerun -m %s -p Once -n 4 --lora %s",
    };
    char cmd[4096];
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        if (i == 0) snprintf(cmd, sizeof cmd, cmds[i], model, ad);
        else if (i == 1) snprintf(cmd, sizeof cmd, "./edgetune perplexity %s %s --lora %s", model, text, ad);
        else if (i == 2) snprintf(cmd, sizeof cmd, cmds[i], model, ad, ad);
        else if (access("./edgerun", X_OK) == 0) snprintf(cmd, sizeof cmd, cmds[i], model, ad);
        else continue;
        int rc = test_run(cmd);
        char *log = test_slurp(test_tmp("cmd.log"));
        if (rc != 2 || !log || !strstr(log, what)) fprintf(stderr, "%s -> %d:\n%s\n", cmd, rc, log ? log : "");
        assert_int_equal(rc, 2);
        assert_non_null(strstr(log, what));
        free(log);
    }
}

static void test_adapter_nonfinite(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    /* a sane adapter loads everywhere */
    const char *good = write_adapter("good.gguf", 8.0f, -1, 0);
    et_engine *m;
    et_err e = {0};
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    et_adapter *a;
    assert_int_equal(et_adapter_load(&a, good, m, &e), 0);
    et_adapter_free(a);
    et_engine_free(m);
    expect_refused(model, write_adapter("nan_b.gguf", 8.0f, 77, NAN),
                   "tensor 'blk.0.attn_q.weight.lora_b' holds a non-finite value (NaN at element 77)");
    expect_refused(model, write_adapter("inf_b.gguf", 8.0f, 3, -INFINITY), "(Inf at element 3)");
    expect_refused(model, write_adapter("nan_alpha.gguf", NAN, -1, 0), "adapter.lora.alpha is not finite");
}

/* ------------------------------------------------------------ smaller: trailing bytes */

/* The id whose decoding is the single byte b, or -1. */
static int byte_id(const et_tokenizer *t, unsigned char b) {
    for (int32_t id = 0; id < et_tok_n_vocab(t); id++) {
        char *out = NULL;
        size_t len = 0;
        et_err e = {0};
        if (et_tok_decode(t, &id, 1, 0, &out, &len, &e)) continue;
        int hit = len == 1 && (unsigned char)out[0] == b;
        free(out);
        if (hit) return id;
    }
    return -1;
}

/* edgerun held back a raw-byte token that can never start a character
 * (0xC1) and dropped an incomplete sequence at the end of a generation;
 * llama.cpp prints such bytes. */
static void test_detok_trailing_bytes(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "models/stories260K/stories260K.gguf");
    et_engine *m;
    et_err e = {0};
    assert_int_equal(et_engine_load(&m, path, &e), 0);
    int c1 = byte_id(m->tok, 0xC1), e2 = byte_id(m->tok, 0xE2);
    assert_true(c1 >= 0 && e2 >= 0);
    et_detok d;
    int32_t prompt[2] = {1, 400};
    et_detok_init(&d, m->tok, prompt, 2);
    char *text;
    size_t len;
    assert_int_equal(et_detok_push(&d, c1, &text, &len, &e), 0);
    assert_int_equal(len, 1);   /* not held: 0xC1 never starts a character */
    assert_int_equal((unsigned char)text[0], 0xC1);
    free(text);
    assert_int_equal(et_detok_push(&d, e2, &text, &len, &e), 0);
    assert_int_equal(len, 0);   /* a lead byte: held for its continuation */
    free(text);
    assert_int_equal(et_detok_flush(&d, &text, &len, &e), 0);
    assert_int_equal(len, 1);   /* the end of a generation gives it back */
    assert_int_equal((unsigned char)text[0], 0xE2);
    free(text);
    et_engine_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detok_trailing_bytes),
        cmocka_unit_test(test_sampler_nonfinite),
        cmocka_unit_test(test_engine_nonfinite_logits),
        cmocka_unit_test(test_adapter_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
