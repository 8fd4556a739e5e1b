/* tests/test_lora_q4_1.c — a LoRA base held as Q4_1 (issue 12 §4: the real
 * SmolLM2-135M-Instruct file is Q4_1; QLoRA-style, dequantized tile by tile
 * in the forward and in dX, train/op_lora.h).
 *  - random model whose linears are Q4_1 numbers: loss and every LoRA
 *    gradient with a Q4_1 base equal those of an F32 base holding the same
 *    dequantized weights (only float rounding may differ; the independent
 *    side never touches a Q4_1 block), with dropout and with recomputation;
 *    a corrupted block changes the loss (the check can fail);
 *  - the real SmolLM2 Q4_1 file: the Q4_1 base built from the imported
 *    (dequantized) model holds the file's own blocks byte for byte in every
 *    one of its 210 linears (ggml's reference Q4_1 quantizer is idempotent on
 *    its output: the block's minimum is m exactly and its maximum m + 15 d),
 *    so training sees exactly the weights the file carries — built from the
 *    imported model and, as `edgetune lora` does, tensor by tensor from the
 *    file (no F32 copy of the linears); skips when the file is absent (scripts/get_models.sh, `make models`, fetches it). */
#include "testutil.h"

#include <math.h>

#include "../export/gguf.h"
#include "../export/model.h"
#include "../quant/quant.h"
#include "../train/lora_llama.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((rs >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* A small llama (n_embd 64, n_ff 96: rows of 64 and 96, multiples of Q4_1's 32) */
static void make_model(et_model *m) {
    et_hparams hp = {.arch = "llama", .n_vocab = 96, .n_embd = 64, .n_ff = 96, .n_layer = 2, .n_head = 4,
                     .n_head_kv = 2, .head_dim = 16, .n_ctx = 64, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
                     .tied_output = 1};
    et_err e = {0};
    if (et_model_alloc(m, &hp, &e)) fail_msg("%s", e.msg);
    rs = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = 0.1f * frand();
    for (int l = 0; l < hp.n_layer; l++)
        for (int c = 0; c < hp.n_embd; c++) m->layers[l].attn_norm[c] = m->layers[l].ffn_norm[c] = 1.0f + 0.1f * frand();
}

/* Every linear weight -> dequantize(quantize_Q4_1(W)); returns how many. */
static int round_q4_1(et_model *m) {
    et_named t[64];
    const int n = et_model_tensors(m, t, 64);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].n_dims != 2 || strncmp(t[i].name, "blk.", 4)) continue;
        assert_int_equal(t[i].ne[0] % 32, 0);
        uint8_t *q = malloc(et_quant_row_bytes(GGML_TYPE_Q4_1, (int64_t)t[i].n));
        assert_int_equal(et_quantize_row(GGML_TYPE_Q4_1, t[i].data, q, (int64_t)t[i].n), 0);
        assert_int_equal(et_dequantize_row(GGML_TYPE_Q4_1, q, t[i].data, (int64_t)t[i].n), 0);
        free(q);
        k++;
    }
    return k;
}

typedef struct adapter {
    float *p, *g;
    size_t n;
} adapter;

/* rank 4 on q, v, up of every layer; same values for every call (seeded) */
static void attach(et_lora_llama *ll, adapter *a) {
    const int lins[3] = {ET_LIN_Q, ET_LIN_V, ET_LIN_UP}, rank = 4;
    a->n = 0;
    for (int l = 0; l < ll->L.n_layer; l++)
        for (int k = 0; k < 3; k++) {
            et_lora_slot *s = et_lora_llama_slot(ll, l, lins[k]);
            a->n += (size_t)rank * (size_t)(s->w.n_in + s->w.n_out);
        }
    a->p = malloc(a->n * sizeof(float));
    a->g = calloc(a->n, sizeof(float));
    uint64_t save = rs;
    rs = 12345;
    for (size_t i = 0; i < a->n; i++) a->p[i] = 0.2f * frand();
    rs = save;
    size_t off = 0;
    et_err e = {0};
    for (int l = 0; l < ll->L.n_layer; l++)
        for (int k = 0; k < 3; k++) {
            et_lora_slot *s = et_lora_llama_slot(ll, l, lins[k]);
            const size_t na = (size_t)rank * s->w.n_in, nb = (size_t)rank * s->w.n_out;
            if (et_lora_llama_attach(ll, l, lins[k], a->p + off, a->g + off, a->p + off + na, a->g + off + na, rank,
                                     2.0f, &e))
                fail_msg("%s", e.msg);
            off += na + nb;
        }
}

static double step(et_lora_llama *ll, adapter *a, const int32_t *tok, int B, int T) {
    et_tape t;
    et_err e = {0};
    if (et_tape_init(&t, 0, &e)) fail_msg("%s", e.msg);
    memset(a->g, 0, a->n * sizeof(float));
    et_tensor *loss = et_lora_llama_forward(&t, ll, tok, tok + 1, B, T, NULL);
    assert_non_null(loss);
    et_tape_backward(&t, loss);
    if (et_tape_status(&t, &e)) fail_msg("%s", e.msg);
    const double v = loss->data[0];
    et_tape_free(&t);
    return v;
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : INFINITY;
}

static void test_q4_1_base_equals_f32_dequantized(void **state) {
    (void)state;
    enum { B = 3, T = 24 };
    int32_t tok[B * T + 1];
    for (int i = 0; i < B * T + 1; i++) tok[i] = (int32_t)((i * 37 + 11) % 96);
    et_err e = {0};
    et_model mq, mf;
    make_model(&mq);
    make_model(&mf);
    assert_int_equal(round_q4_1(&mf), 2 * 7);
    et_lora_llama llq, llf;
    if (et_lora_llama_init(&llq, &mq, GGML_TYPE_Q4_1, &e)) fail_msg("%s", e.msg);
    et_model_free(&mq); /* the Q4_1 base holds its own blocks */
    if (et_lora_llama_init(&llf, &mf, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < ET_N_LIN; i++) assert_int_equal(et_lora_llama_slot(&llq, l, i)->w.type, GGML_TYPE_Q4_1);
    /* the held bytes: 20 per 32 weights */
    const uint64_t lin_w = 2ull * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 64 * 96);
    assert_true(et_lora_llama_base_bytes(&llq) >= lin_w / 32 * 20);
    adapter aq, af;
    attach(&llq, &aq);
    attach(&llf, &af);
    const char *what[3] = {"plain", "dropout 0.1", "dropout 0.1 + recompute"};
    for (int c = 0; c < 3; c++) {
        llq.train = llf.train = 1;
        llq.dropout = llf.dropout = c ? 0.1f : 0.0f;
        llq.seed = llf.seed = 5;
        llq.recompute = llf.recompute = c == 2;
        const double lq = step(&llq, &aq, tok, B, T), lf = step(&llf, &af, tok, B, T);
        const double rel = rel_diff(aq.g, af.g, aq.n);
        printf("  Q4_1 base vs F32 base of the same dequantized weights (%s): loss %.8f vs %.8f, "
               "LoRA grads rel diff %.1e\n", what[c], lq, lf, rel);
        assert_true(isfinite(lq));
        assert_true(fabs(lq - lf) <= 1e-6 * fabs(lf));
        assert_true(rel < 1e-5);
    }
    /* the comparison can fail: one corrupted Q4_1 scale moves the loss */
    llq.dropout = llf.dropout = 0.0f, llq.recompute = 0;
    const double before = step(&llq, &aq, tok, B, T);
    et_lora_slot *s = et_lora_llama_slot(&llq, 0, ET_LIN_Q);
    uint8_t *blk = (uint8_t *)s->w.data;
    const uint8_t save0 = blk[1];
    blk[1] ^= 0x08; /* the high byte of block 0's fp16 d */
    const double after = step(&llq, &aq, tok, B, T);
    blk[1] = save0;
    printf("  one corrupted Q4_1 block: loss %.8f -> %.8f\n", before, after);
    assert_true(fabs(after - before) > 1e-6 * fabs(before));
    free(aq.p), free(aq.g), free(af.p), free(af.g);
    et_lora_llama_free(&llq);
    et_lora_llama_free(&llf);
    et_model_free(&mf);
}

#define SMOLLM2 "SmolLM2-135M-Instruct.Q4_1.gguf"

static const char *find_smollm2(char *path, size_t cap) {
    const char *cache = getenv("ET_MODEL_CACHE"), *home = getenv("HOME");
    snprintf(path, cap, "%s/models/smollm2-135m-instruct/%s", et_shared_dir(), SMOLLM2);
    if (!access(path, R_OK)) return path;
    if (cache && *cache) {
        snprintf(path, cap, "%s/%s", cache, SMOLLM2);
        if (!access(path, R_OK)) return path;
    }
    snprintf(path, cap, "%s/.cache/edgetune/%s", home ? home : "/nonexistent", SMOLLM2);
    return access(path, R_OK) ? NULL : path;
}

static void test_smollm2_q4_1_base_is_the_file(void **state) {
    (void)state;
    char path[4096];
    if (!find_smollm2(path, sizeof path)) {
        fprintf(stderr, "SKIP: " SMOLLM2 " not found in %s/models/smollm2-135m-instruct/, $ET_MODEL_CACHE or "
                "~/.cache/edgetune (fetch it with scripts/get_models.sh, i.e. make models)\n", et_shared_dir());
        skip();
    }
    et_err e = {0};
    gguf_file g;
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    for (int way = 0; way < 2; way++) {
        /* way 0: from the imported F32 model (et_model_load); way 1: as `edgetune lora` builds it, tensor
           by tensor from the file (et_model_from_gguf_no_linears + et_model_gguf_fill) */
        et_model m;
        et_lora_llama ll;
        if (way == 0) {
            if (et_model_load(&m, path, NULL, &e) || et_lora_llama_init(&ll, &m, GGML_TYPE_Q4_1, &e)) fail_msg("%s", e.msg);
        } else {
            if (et_model_from_gguf_no_linears(&m, &g, &e)) fail_msg("%s", e.msg);
            et_named q0;
            assert_int_equal(et_model_find(&m, "blk.0.attn_q.weight", &q0), 0);
            for (size_t i = 0; i < q0.n; i++) assert_true(q0.data[i] == 0.0f); /* never read */
            if (et_lora_llama_init_fill(&ll, &m, GGML_TYPE_Q4_1, et_model_gguf_fill, &g, &e)) fail_msg("%s", e.msg);
        }
        et_model_free(&m);
        int same = 0, q4_1 = 0;
        for (int l = 0; l < ll.L.n_layer; l++)
            for (int i = 0; i < ET_N_LIN; i++) {
                const et_lora_slot *s = et_lora_llama_slot(&ll, l, i);
                static const char *const nm[ET_N_LIN] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                         "ffn_gate", "ffn_up", "ffn_down"};
                char name[64];
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, nm[i]);
                const gguf_tensor *t = gguf_find_tensor(&g, name);
                assert_non_null(t);
                if (t->type != GGML_TYPE_Q4_1) continue;
                q4_1++;
                assert_int_equal(s->w.type, GGML_TYPE_Q4_1);
                assert_int_equal(et_frozen_w_bytes(&s->w), t->nbytes);
                if (!memcmp(s->w.data, t->data, t->nbytes)) same++;
                else fail_msg("%s: the Q4_1 base's blocks differ from the file's", name);
            }
        printf("  SmolLM2-135M Q4_1 base (%s): %d of %d Q4_1 linears byte-identical to the file; %.1f MiB held\n",
               way ? "tensor by tensor from the file" : "from the imported F32 model", same, q4_1,
               et_lora_llama_base_bytes(&ll) / 1048576.0);
        assert_int_equal(q4_1, 210);
        et_lora_llama_free(&ll);
    }
    gguf_close(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q4_1_base_equals_f32_dequantized),
        cmocka_unit_test(test_smollm2_q4_1_base_is_the_file),
    };
    return cmocka_run_group_tests_name("lora_q4_1", tests, NULL, NULL);
}
