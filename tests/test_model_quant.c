/* tests/test_model_quant.c — importing quantized GGUF files into the F32
 * model (export/model_gguf.c): every tensor equals the dequantization of
 * the file's blocks, the engine agrees, hostile files are refused naming
 * the tensor, and `edgetune convert --type F32` works on a Q8_0 file.
 *
 * Data: ../shared/golden/quant/rand-llama-256{,-Q8_0,-Q4_0,-Q4_K_M,-Q6_K}.gguf
 * (llama-quantize output of one random llama model, shared/README.md). */
#include "testutil.h"

#include <math.h>
#include <sys/wait.h>

#include "../engine/engine.h"
#include "../export/gguf.h"
#include "../export/model.h"
#include "../quant/quant.h"

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static const char *const FILES[] = {"Q8_0", "Q4_0", "Q4_K_M", "Q6_K"};
enum { N_FILES = sizeof FILES / sizeof FILES[0] };

static const char *quant_file(const char *kind) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/quant/rand-llama-256-%s.gguf", kind);
    return shared_path(rel);
}

/* Q8_0 decoded by hand, independently of quant/: w = fp16(d) * qs[j]
 * (ggml-common.h block_q8_0: u16 d, then 32 int8). */
static void decode_q8_0(const uint8_t *blk, float *y) {
    uint16_t h = (uint16_t)(blk[0] | blk[1] << 8);
    float d = et_fp16_to_fp32(h);
    for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)blk[2 + j];
}

/* Tensor t of g decoded block by block into out [n]. */
static void decode_blocks(const gguf_tensor *t, float *out, size_t n) {
    int64_t be = et_quant_block_elems(t->type);
    uint64_t bb = et_quant_row_bytes(t->type, be);
    assert_true(be > 0 && bb > 0);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i += (size_t)be, p += bb) {
        if (t->type == GGML_TYPE_Q8_0)
            decode_q8_0(p, out + i);
        else
            assert_int_equal(et_dequantize_row(t->type, p, out + i, be), 0);
    }
    assert_true((uint64_t)(p - (const uint8_t *)t->data) == t->nbytes);
}

/* Every tensor of the imported model is exactly the file's blocks decoded;
 * F32 tensors are the file's bytes; src_type is the file's type. */
static void test_tensors_exact(void **state) {
    (void)state;
    SHARED_OR_SKIP(first, "golden/quant/rand-llama-256-Q8_0.gguf");
    (void)first;
    for (int f = 0; f < N_FILES; f++) {
        const char *path = quant_file(FILES[f]);
        if (!path) continue;
        et_model m;
        et_err e = {0};
        if (et_model_load_gguf(&m, path, &e)) fail_msg("%s", e.msg);
        gguf_file g;
        if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
        int n = et_model_tensors(&m, NULL, 0);
        et_named *ts = calloc((size_t)n, sizeof *ts);
        et_model_tensors(&m, ts, n);
        assert_int_equal((uint64_t)n, g.n_tensors);
        assert_non_null(m.src_type);
        int n_quant = 0;
        for (int i = 0; i < n; i++) {
            const gguf_tensor *t = gguf_find_tensor(&g, ts[i].name);
            assert_non_null(t);
            assert_int_equal(m.src_type[i], t->type);
            if (t->type == GGML_TYPE_F32) {
                assert_int_equal(t->nbytes, ts[i].n * sizeof(float));
                assert_memory_equal(ts[i].data, t->data, t->nbytes);
                continue;
            }
            n_quant++;
            float *want = malloc(ts[i].n * sizeof *want);
            decode_blocks(t, want, ts[i].n);
            if (memcmp(want, ts[i].data, ts[i].n * sizeof *want) != 0)
                fail_msg("%s: tensor %s (%s) differs from its blocks", path, ts[i].name, ggml_type_name(t->type));
            free(want);
        }
        assert_true(n_quant >= 2 * 7); /* at least the layers' matrices */
        free(ts);
        gguf_close(&g);
        et_model_free(&m);
    }
}

/* A Q8_0 / Q4_0 tensor re-quantized to its own type gives the file's blocks
 * back bit for bit (reference quantization is idempotent on its own
 * output: the block's extreme weight is exactly -8d or +-127d), which is
 * why `edgetune lora --base-type Q8_0` on a Q8_0 file does not quantize
 * twice in effect. */
static void test_requantize_identical(void **state) {
    (void)state;
    SHARED_OR_SKIP(first, "golden/quant/rand-llama-256-Q8_0.gguf");
    (void)first;
    const char *kinds[] = {"Q8_0", "Q4_0"};
    for (int f = 0; f < 2; f++) {
        const char *path = quant_file(kinds[f]);
        if (!path) continue;
        et_model m;
        et_err e = {0};
        if (et_model_load_gguf(&m, path, &e)) fail_msg("%s", e.msg);
        gguf_file g;
        if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
        int n = et_model_tensors(&m, NULL, 0);
        et_named *ts = calloc((size_t)n, sizeof *ts);
        et_model_tensors(&m, ts, n);
        int checked = 0;
        for (int i = 0; i < n; i++) {
            const gguf_tensor *t = gguf_find_tensor(&g, ts[i].name);
            if (t->type != GGML_TYPE_Q8_0 && t->type != GGML_TYPE_Q4_0) continue;
            uint8_t *q = malloc(t->nbytes);
            assert_int_equal(et_quantize_row(t->type, ts[i].data, q, (int64_t)ts[i].n), 0);
            if (memcmp(q, t->data, t->nbytes) != 0)
                fail_msg("%s: %s re-quantized to %s differs from the file", path, ts[i].name, ggml_type_name(t->type));
            free(q);
            checked++;
        }
        assert_true(checked > 0);
        free(ts);
        gguf_close(&g);
        et_model_free(&m);
    }
}

/* Logits of the last of `n` tokens. */
static void run_engine(et_engine *en, const int32_t *tok, int n, float *logits) {
    et_err e = {0};
    et_state_opts o = et_state_default_opts();
    o.kv_type = GGML_TYPE_F32;
    o.n_ctx = 64;
    et_state *s;
    if (et_state_new(&s, en, &o, &e)) fail_msg("%s", e.msg);
    if (et_forward(s, tok, n, logits, 1, &e)) fail_msg("%s", e.msg);
    et_state_free(s);
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* Engine on the quantized file vs the engine on an F32 export of the
 * imported model, and that export vs the imported model in memory. */
static void test_engine_logits(void **state) {
    (void)state;
    SHARED_OR_SKIP(first, "golden/quant/rand-llama-256-Q8_0.gguf");
    (void)first;
    SHARED_OR_SKIP(orig, "golden/quant/rand-llama-256.gguf");
    et_engine *e0;
    {
        et_err e = {0};
        if (et_engine_load(&e0, orig, &e)) fail_msg("%s", e.msg);
    }
    const int32_t tok[] = {1, 403, 17, 250, 99, 7};
    enum { NT = sizeof tok / sizeof tok[0] };
    for (int f = 0; f < N_FILES; f++) {
        const char *path = quant_file(FILES[f]);
        if (!path) continue;
        et_err e = {0};
        et_model m;
        if (et_model_load_gguf(&m, path, &e)) fail_msg("%s", e.msg);
        int nv = m.hp.n_vocab;
        const char *f32 = tmp("import-f32.gguf");
        if (et_model_save_gguf(&m, f32, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
        et_engine *eq, *ef, *em;
        if (et_engine_load(&eq, path, &e)) fail_msg("%s", e.msg);
        if (et_engine_load(&ef, f32, &e)) fail_msg("%s", e.msg);
        if (et_engine_from_model(&em, &m, &e)) fail_msg("%s", e.msg);
        float *lq = malloc((size_t)NT * nv * sizeof *lq), *lf = malloc((size_t)NT * nv * sizeof *lf),
              *lm = malloc((size_t)NT * nv * sizeof *lm), *lo = malloc((size_t)NT * nv * sizeof *lo);
        run_engine(eq, tok, NT, lq);
        run_engine(ef, tok, NT, lf);
        run_engine(em, tok, NT, lm);
        run_engine(e0, tok, NT, lo); /* the unquantized original */
        size_t all = (size_t)NT * nv;
        double scale = max_abs(lf, all), d_file = 0, d_mem = 0, ss = 0, sd = 0, sw = 0;
        for (size_t i = 0; i < all; i++) {
            d_file = fmax(d_file, fabs((double)lq[i] - lf[i]));
            d_mem = fmax(d_mem, fabs((double)lm[i] - lf[i]));
            ss += (double)lf[i] * lf[i];
            sd += ((double)lq[i] - lf[i]) * ((double)lq[i] - lf[i]);
            sw += ((double)lo[i] - lf[i]) * ((double)lo[i] - lf[i]);
        }
        int agree = 0;
        for (int t = 0; t < NT; t++) agree += et_argmax(lq + (size_t)t * nv, nv) == et_argmax(lf + (size_t)t * nv, nv);
        fprintf(stderr,
                "%s: max|logit| %.3g, engine(quant file) - engine(F32 export): max %.3g, rms/rms %.3g, argmax %d/%d; "
                "in-memory - export %.3g; weight quantization rms/rms %.3g\n",
                FILES[f], scale, d_file, sqrt(sd / ss), agree, NT, d_mem, sqrt(sw / ss));
        /* the same F32 weights through the same engine: equal up to
         * float summation order */
        assert_true(d_mem <= 1e-5 * fmax(1.0, scale));
        /* The quantized file's matmuls quantize the activations (ggml
         * vec_dot_*: to Q8_0 blocks of 32 for Q8_0/Q4_0/Q5_0 weights, to
         * Q8_K blocks of 256 with one scale for Q4_K/Q6_K), which the F32
         * export does not.  The step is max|x|/127 per block, and this
         * model's rows have outliers, so a 256-block loses most.  Measured
         * rms(diff)/rms(logits): Q8_0 0.013, Q4_0 0.048 (its output.weight
         * is Q6_K), Q4_K_M 0.045, Q6_K 0.059 (the line printed above); the
         * weights' own quantization error (original F32 file vs the
         * export) is 0.006 / 0.095 / 0.040 / 0.015.  Bound: 0.1, and the
         * argmax (the greedy token) the same at every position.  That the
         * import is exact is test_tensors_exact's job; this checks that
         * the engine and the imported model compute the same network. */
        assert_true(sqrt(sd / ss) <= 0.1);
        assert_int_equal(agree, NT);
        free(lq), free(lf), free(lm), free(lo);
        et_engine_free(eq), et_engine_free(ef), et_engine_free(em);
        et_model_free(&m);
    }
    et_engine_free(e0);
}

static void expect_refused(const char *path, const char *n1, const char *n2) {
    et_model m;
    et_err e = {0};
    int rc = et_model_load_gguf(&m, path, &e);
    assert_int_equal(rc, ET_EINPUT);
    if (!strstr(e.msg, n1) || (n2 && !strstr(e.msg, n2))) fail_msg("message '%s' lacks '%s' / '%s'", e.msg, n1, n2);
}

/* Copy src to dst with tensor `name` replaced (type, ne, data). */
static void rewrite(const char *src, const char *dst, const char *name, uint32_t type, const int64_t *ne,
                    const void *data) {
    et_err e = {0};
    gguf_file g;
    if (gguf_open(&g, src, &e)) fail_msg("%s", e.msg);
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) assert_int_equal(gguf_set_kv_from(w, &g, i), 0);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        if (gguf_str_eq(g.tensors[i].name, name)) {
            if (gguf_add_tensor(w, name, type, 2, ne, data, &e)) fail_msg("%s", e.msg);
        } else if (gguf_add_tensor_from(w, &g, i, &e))
            fail_msg("%s", e.msg);
    }
    if (gguf_writer_write(w, dst, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    gguf_close(&g);
}

static void test_hostile(void **state) {
    (void)state;
    SHARED_OR_SKIP(q8, "golden/quant/rand-llama-256-Q8_0.gguf");
    et_err e = {0};
    /* truncated: the last tensor's blocks run past the end */
    size_t size;
    void *bytes;
    {
        FILE *fp = fopen(q8, "rb");
        assert_non_null(fp);
        fseek(fp, 0, SEEK_END);
        size = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        bytes = malloc(size);
        assert_int_equal(fread(bytes, 1, size, fp), size);
        fclose(fp);
    }
    gguf_file g;
    if (gguf_open(&g, q8, &e)) fail_msg("%s", e.msg);
    const gguf_tensor *last = &g.tensors[0];
    for (uint64_t i = 1; i < g.n_tensors; i++)
        if (g.tensors[i].offset > last->offset) last = &g.tensors[i];
    char last_name[80];
    snprintf(last_name, sizeof last_name, "'%.*s'", (int)last->name.len, last->name.ptr);
    const char *p = tmp("trunc.gguf");
    FILE *fp = fopen(p, "wb");
    assert_int_equal(fwrite(bytes, 1, size - 17, fp), size - 17);
    fclose(fp);
    expect_refused(p, last_name, "past end");
    free(bytes);

    /* blk.0.ffn_up.weight [256, 768] Q8_0 in the file */
    const gguf_tensor *up = gguf_find_tensor(&g, "blk.0.ffn_up.weight");
    assert_non_null(up);
    assert_int_equal(up->type, GGML_TYPE_Q8_0);
    static uint8_t buf[768 * 256 * 4];
    /* a type quant/ does not dequantize (MXFP4: 17 bytes / 32) */
    rewrite(q8, p, "blk.0.ffn_up.weight", GGML_TYPE_MXFP4, (int64_t[]){256, 768}, buf);
    expect_refused(p, "'blk.0.ffn_up.weight'", "MXFP4");
    /* (rows that are not a whole number of blocks cannot even be written:
     * gguf_add_tensor refuses them, and gguf_open refuses them on read) */
    /* right byte count, wrong shape for the hyperparameters */
    rewrite(q8, p, "blk.0.ffn_up.weight", GGML_TYPE_Q8_0, (int64_t[]){768, 256}, buf);
    expect_refused(p, "'blk.0.ffn_up.weight'", "shape");
    gguf_close(&g);
}

static int run(const char *cmd) {
    char full[8192];
    snprintf(full, sizeof full, "%.4096s >>%.1000s 2>&1", cmd, tmp("cmd.log"));
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `edgetune convert Q8_0.gguf -o x.gguf --type F32` writes the imported
 * model: every tensor F32 and equal to the import. */
static void test_cli_convert(void **state) {
    (void)state;
    SHARED_OR_SKIP(q8, "golden/quant/rand-llama-256-Q8_0.gguf");
    if (access("./edgetune", X_OK) != 0) {
        fprintf(stderr, "SKIP: ./edgetune not built\n");
        skip();
    }
    const char *out = tmp("x.gguf");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./edgetune convert '%s' -o '%s' --type F32", q8, out);
    assert_int_equal(run(cmd), 0);
    et_err e = {0};
    et_model a, b;
    if (et_model_load_gguf(&a, q8, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&b, out, &e)) fail_msg("%s", e.msg);
    assert_int_equal(a.n_params, b.n_params);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    int n = et_model_tensors(&b, NULL, 0);
    for (int i = 0; i < n; i++) assert_int_equal(b.src_type[i], GGML_TYPE_F32);
    et_model_free(&a);
    et_model_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensors_exact),   cmocka_unit_test(test_requantize_identical),
        cmocka_unit_test(test_engine_logits),   cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_cli_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
