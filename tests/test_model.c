/* tests/test_model.c — the in-memory model and its imports/exports.
 *  - layout: tensor list, order, shapes and block offsets against counts
 *    computed here from the hyperparameters;
 *  - llama2.c stories260K.bin (+ tok512.bin) equals stories260K.gguf
 *    (converted by llama.cpp) tensor for tensor, bit for bit;
 *  - GGUF -> Model -> GGUF F32 -> Model is lossless; F16 export equals
 *    fp16 rounding; llama.cpp's own F16 file (llama-quantize) imports to
 *    the rounded F32 values; deci per-layer widths round-trip;
 *  - a synthesized HF directory imports with Q/K rows permuted into the
 *    interleaved RoPE order written out by hand here;
 *  - hostile inputs are refused with messages naming file and tensor. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "../export/gguf.h"
#include "../export/model.h"
#include "../datasets/hf_tokenizer.h"
#include "../export/safetensors.h"

/* ------------------------------------------------------------ helpers */

static uint32_t rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((float)(rng_state >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

static void fill_random(et_model *m) {
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = frand();
}

static const char *tmp(const char *name) {
    static char bufs[8][512];
    static int k = 0;
    char *b = bufs[k++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* Same hyperparameters and bit-identical tensors (by name). */
static void assert_same_model(const et_model *a, const et_model *b) {
    assert_int_equal(a->hp.n_vocab, b->hp.n_vocab);
    assert_int_equal(a->hp.n_embd, b->hp.n_embd);
    assert_int_equal(a->hp.n_layer, b->hp.n_layer);
    assert_int_equal(a->hp.head_dim, b->hp.head_dim);
    assert_int_equal(a->hp.tied_output, b->hp.tied_output);
    assert_int_equal(a->hp.qkv_bias, b->hp.qkv_bias);
    assert_true(a->hp.rms_eps == b->hp.rms_eps);
    assert_true(a->hp.rope_theta == b->hp.rope_theta);
    for (int l = 0; l < a->hp.n_layer; l++) {
        assert_int_equal(a->hp.layer_n_head[l], b->hp.layer_n_head[l]);
        assert_int_equal(a->hp.layer_n_head_kv[l], b->hp.layer_n_head_kv[l]);
        assert_int_equal(a->hp.layer_n_ff[l], b->hp.layer_n_ff[l]);
    }
    int n = et_model_tensors(a, NULL, 0);
    assert_int_equal(n, et_model_tensors(b, NULL, 0));
    et_named *ta = malloc((size_t)n * sizeof *ta), *tb = malloc((size_t)n * sizeof *tb);
    et_model_tensors(a, ta, n);
    et_model_tensors(b, tb, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(ta[i].name, tb[i].name);
        assert_int_equal(ta[i].n, tb[i].n);
        if (memcmp(ta[i].data, tb[i].data, ta[i].n * sizeof(float)) != 0) fail_msg("tensor %s differs", ta[i].name);
    }
    free(ta);
    free(tb);
}

/* Expect refusal with the message containing both needles. */
static void expect_msg(int rc, const et_err *e, int code, const char *n1, const char *n2) {
    if (rc != code) fail_msg("expected code %d, got %d (%s)", code, rc, e->msg);
    if ((n1 && !strstr(e->msg, n1)) || (n2 && !strstr(e->msg, n2)))
        fail_msg("message lacks '%s' / '%s': %s", n1 ? n1 : "", n2 ? n2 : "", e->msg);
}

/* ------------------------------------------------------------ layout */

static void test_layout(void **state) {
    (void)state;
    et_hparams hp = {0};
    hp.n_vocab = 10;
    hp.n_embd = 8;
    hp.n_layer = 2;
    hp.n_ctx = 16;
    hp.n_head = 4;
    hp.n_head_kv = 2;
    hp.n_ff = 12;
    hp.rms_eps = 1e-5f;
    hp.rope_theta = 10000.0f;
    hp.qkv_bias = 1;
    et_model m;
    et_err e = {0};
    assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
    assert_int_equal(m.hp.head_dim, 2);
    assert_string_equal(m.hp.arch, "llama");
    /* 3 global + 2 layers x (attn_norm, q, bq, k, bk, v, bv, o, ffn_norm, gate, up, down) */
    int n = et_model_tensors(&m, NULL, 0);
    assert_int_equal(n, 3 + 2 * 12);
    /* counted by hand: embd 80, norm 8, output 80; per layer 8 + 64 + 8 + 32 + 4 + 32 + 4 + 64 + 8 + 96 + 96 + 96 */
    assert_int_equal(m.n_params, 80 + 8 + 80 + 2 * (8 + 64 + 8 + 32 + 4 + 32 + 4 + 64 + 8 + 96 + 96 + 96));
    et_named t[27];
    et_model_tensors(&m, t, 27);
    static const char *names[15] = {"token_embd.weight", "output_norm.weight", "output.weight",
                                    "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_q.bias",
                                    "blk.0.attn_k.weight", "blk.0.attn_k.bias", "blk.0.attn_v.weight",
                                    "blk.0.attn_v.bias", "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
                                    "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"};
    for (int i = 0; i < 15; i++) assert_string_equal(t[i].name, names[i]);
    /* contiguous, in order, covering the block */
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        assert_ptr_equal(t[i].data, m.params + off);
        off += t[i].n;
    }
    assert_int_equal(off, m.n_params);
    assert_int_equal(t[4].ne[0], 8);  /* attn_q: ne = {n_embd, n_head*head_dim} */
    assert_int_equal(t[4].ne[1], 8);
    assert_int_equal(t[6].ne[1], 4);  /* attn_k rows = n_head_kv*head_dim */
    assert_int_equal(t[14].ne[0], 12); /* ffn_down: ne = {n_ff, n_embd} */
    assert_int_equal(t[14].ne[1], 8);
    assert_int_equal(t[5].n_dims, 1);
    assert_ptr_equal(m.layers[1].w_down, t[26].data);
    assert_ptr_equal(m.layers[0].bk, t[7].data);
    et_named f;
    assert_int_equal(et_model_find(&m, "blk.1.ffn_up.weight", &f), 0);
    assert_ptr_equal(f.data, m.layers[1].w_up);
    assert_int_equal(et_model_find(&m, "blk.2.ffn_up.weight", &f), -1);
    assert_true(et_model_is_uniform(&m));
    et_model_free(&m);

    /* tied; per-layer widths with an attention-free and an FFN-free layer */
    int nh[3] = {4, 0, 2}, nkv[3] = {2, 0, 1}, nff[3] = {12, 6, 0};
    hp.qkv_bias = 0;
    hp.tied_output = 1;
    hp.n_layer = 3;
    hp.layer_n_head = nh;
    hp.layer_n_head_kv = nkv;
    hp.layer_n_ff = nff;
    assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
    assert_false(et_model_is_uniform(&m));
    assert_ptr_equal(m.output, m.tok_embd);
    assert_null(m.layers[1].wq);
    assert_null(m.layers[1].attn_norm);
    assert_null(m.layers[2].w_up);
    assert_null(m.layers[2].ffn_norm);
    assert_non_null(m.layers[2].wq);
    /* 2 global + 9 + 4 + 5 */
    assert_int_equal(et_model_tensors(&m, NULL, 0), 2 + 9 + 4 + 5);
    assert_int_equal(m.n_params, 80 + 8 + (8 + 64 + 32 + 32 + 64 + 8 + 3 * 96) + (8 + 3 * 48) + (8 + 32 + 16 + 16 + 32));
    et_model_free(&m);

    /* refusals */
    nh[1] = 3; nkv[1] = 2;
    expect_msg(et_model_alloc(&m, &hp, &e), &e, ET_EINPUT, "layer 1", "multiple");
    nh[1] = 2; nkv[1] = 0;
    expect_msg(et_model_alloc(&m, &hp, &e), &e, ET_EINPUT, "layer 1", "linear attention");
    nkv[1] = 1;
    hp.head_dim = 3;
    expect_msg(et_model_alloc(&m, &hp, &e), &e, ET_EINPUT, "head_dim", "even");
    hp.head_dim = 0;
    hp.n_vocab = 0;
    expect_msg(et_model_alloc(&m, &hp, &e), &e, ET_EINPUT, "n_vocab", NULL);
}

/* ------------------------------------------------------------ llama2.c vs GGUF */

static void test_llama2c_equals_gguf(void **state) {
    (void)state;
    SHARED_OR_SKIP(bin, "models/stories260K/stories260K.bin");
    SHARED_OR_SKIP(tok, "models/stories260K/tok512.bin");
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    et_model a, b;
    et_err e = {0};
    if (et_model_load(&a, bin, tok, &e)) fail_msg("%s", e.msg);
    if (et_model_load(&b, gg, NULL, &e)) fail_msg("%s", e.msg);
    /* README: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab 512, seq 512 */
    assert_int_equal(a.hp.n_embd, 64);
    assert_int_equal(a.hp.n_ff, 172);
    assert_int_equal(a.hp.n_layer, 5);
    assert_int_equal(a.hp.n_head, 8);
    assert_int_equal(a.hp.n_head_kv, 4);
    assert_int_equal(a.hp.n_vocab, 512);
    assert_int_equal(a.hp.n_ctx, 512);
    assert_int_equal(a.hp.head_dim, 8);
    assert_true(a.hp.tied_output);
    assert_string_equal(a.name, "stories260K");
    /* llama.cpp's converter writes output.weight (a copy of the embedding) and n_ctx 2048 */
    assert_false(b.hp.tied_output);
    assert_int_equal(b.hp.n_ctx, 2048);
    assert_true(a.hp.rms_eps == b.hp.rms_eps);
    assert_true(b.hp.rope_theta == 10000.0f);
    int n = et_model_tensors(&b, NULL, 0);
    et_named *tb = malloc((size_t)n * sizeof *tb);
    et_model_tensors(&b, tb, n);
    for (int i = 0; i < n; i++) {
        et_named ta;
        const char *name = strcmp(tb[i].name, "output.weight") == 0 ? "token_embd.weight" : tb[i].name;
        if (et_model_find(&a, name, &ta)) fail_msg("llama2.c model lacks %s", name);
        assert_int_equal(ta.n, tb[i].n);
        assert_int_equal(ta.ne[0], tb[i].ne[0]);
        assert_int_equal(ta.ne[1], tb[i].ne[1]);
        if (memcmp(ta.data, tb[i].data, ta.n * sizeof(float))) fail_msg("%s differs between .bin and .gguf", tb[i].name);
    }
    assert_int_equal(n, et_model_tensors(&a, NULL, 0) + 1);
    free(tb);
    assert_non_null(a.tok);
    assert_non_null(b.tok);
    {
        assert_int_equal(et_tok_n_vocab(a.tok), et_tok_n_vocab(b.tok));
        for (int i = 0; i < 512; i++) {
            size_t la, lb;
            const char *pa = et_tok_piece(a.tok, i, &la), *pb = et_tok_piece(b.tok, i, &lb);
            assert_int_equal(la, lb);
            assert_memory_equal(pa, pb, la);
            assert_true(et_tok_score(a.tok, i) == et_tok_score(b.tok, i));
            assert_int_equal(et_tok_type(a.tok, i), et_tok_type(b.tok, i));
        }
        assert_int_equal(et_tok_bos(a.tok), et_tok_bos(b.tok));
        assert_int_equal(et_tok_eos(a.tok), et_tok_eos(b.tok));
        assert_int_equal(et_tok_unk(a.tok), et_tok_unk(b.tok));
        char ha[65], hb[65];
        et_tok_sha256(a.tok, ha);
        et_tok_sha256(b.tok, hb);
        assert_string_equal(ha, hb); /* pieces, scores, types, special ids */
    }
    et_model_free(&a);
    et_model_free(&b);
}

/* A tokenizer given beside the model replaces its own, from any format. */
static void test_tokenizer_override(void **state) {
    (void)state;
    SHARED_OR_SKIP(bin, "models/stories260K/stories260K.bin");
    SHARED_OR_SKIP(tok, "models/stories260K/tok512.bin");
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(spm, "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
    et_model a, b;
    et_err e = {0};
    /* GGUF model, llama2.c tokenizer */
    if (et_model_load(&a, gg, tok, &e)) fail_msg("%s", e.msg);
    /* llama2.c model, tokenizer from a GGUF */
    if (et_model_load(&b, bin, gg, &e)) fail_msg("%s", e.msg);
    char ha[65], hb[65];
    et_tok_sha256(a.tok, ha);
    et_tok_sha256(b.tok, hb);
    assert_string_equal(ha, hb);
    et_model_free(&b);
    /* a 32000-piece vocabulary does not fit a 512-token model */
    expect_msg(et_model_load(&b, bin, spm, &e), &e, ET_EINPUT, "ggml-vocab-llama-spm.gguf", "32000 tokens");
    expect_msg(et_model_set_tokenizer(&a, spm, &e), &e, ET_EINPUT, "32000 tokens", "vocabulary is 512");
    assert_non_null(a.tok); /* unchanged */
    et_model_free(&a);
}

/* ------------------------------------------------------------ GGUF round trips */

static void test_gguf_f32_roundtrip(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    et_model a, b;
    et_err e = {0};
    if (et_model_load_gguf(&a, gg, &e)) fail_msg("%s", e.msg);
    const char *out = tmp("rt32.gguf");
    if (et_model_save_gguf(&a, out, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&b, out, &e)) fail_msg("%s", e.msg);
    assert_same_model(&a, &b);
    assert_int_equal(b.hp.n_ctx, a.hp.n_ctx);
    assert_string_equal(b.name, a.name);
    /* metadata as llama.cpp reads it: exact key types */
    gguf_file g;
    if (gguf_open(&g, out, &e)) fail_msg("%s", e.msg);
    static const struct { const char *k; uint32_t type; } keys[] = {
        {"general.architecture", GGUF_TYPE_STRING}, {"general.name", GGUF_TYPE_STRING},
        {"llama.context_length", GGUF_TYPE_UINT32}, {"llama.embedding_length", GGUF_TYPE_UINT32},
        {"llama.block_count", GGUF_TYPE_UINT32}, {"llama.feed_forward_length", GGUF_TYPE_UINT32},
        {"llama.rope.dimension_count", GGUF_TYPE_UINT32}, {"llama.attention.head_count", GGUF_TYPE_UINT32},
        {"llama.attention.head_count_kv", GGUF_TYPE_UINT32},
        {"llama.attention.layer_norm_rms_epsilon", GGUF_TYPE_FLOAT32}, {"llama.rope.freq_base", GGUF_TYPE_FLOAT32},
        {"general.file_type", GGUF_TYPE_UINT32}, {"llama.vocab_size", GGUF_TYPE_UINT32}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int64_t k = gguf_find_key(&g, keys[i].k);
        if (k < 0) fail_msg("missing key %s", keys[i].k);
        assert_int_equal(g.kv[k].type, keys[i].type);
    }
    uint32_t v;
    assert_int_equal(gguf_get_u32(&g, "llama.rope.dimension_count", &v, &e), 0);
    assert_int_equal(v, 8);
    assert_int_equal(gguf_get_u32(&g, "general.file_type", &v, &e), 0);
    assert_int_equal(v, 0);
    assert_int_equal(gguf_get_u32(&g, "llama.feed_forward_length", &v, &e), 0);
    assert_int_equal(v, 172);
    char s[32];
    assert_int_equal(gguf_get_str(&g, "general.architecture", s, sizeof s, &e), 0);
    assert_string_equal(s, "llama");
    if (a.tok) assert_true(gguf_find_key(&g, "tokenizer.ggml.tokens") >= 0);
    assert_int_equal(g.n_tensors, (uint64_t)et_model_tensors(&a, NULL, 0));
    for (uint64_t i = 0; i < g.n_tensors; i++) assert_int_equal(g.tensors[i].type, GGML_TYPE_F32);
    gguf_close(&g);
    et_model_free(&a);
    et_model_free(&b);
}

static void test_gguf_f16_export(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    et_model a, b;
    et_err e = {0};
    if (et_model_load_gguf(&a, gg, &e)) fail_msg("%s", e.msg);
    const char *out = tmp("rt16.gguf");
    if (et_model_save_gguf(&a, out, GGML_TYPE_F16, &e)) fail_msg("%s", e.msg);
    gguf_file g;
    if (gguf_open(&g, out, &e)) fail_msg("%s", e.msg);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        assert_int_equal(g.tensors[i].type, g.tensors[i].n_dims == 2 ? GGML_TYPE_F16 : GGML_TYPE_F32);
    uint32_t ft;
    assert_int_equal(gguf_get_u32(&g, "general.file_type", &ft, &e), 0);
    assert_int_equal(ft, 1);
    gguf_close(&g);
    if (et_model_load_gguf(&b, out, &e)) fail_msg("%s", e.msg);
    int n = et_model_tensors(&a, NULL, 0);
    et_named *ta = malloc((size_t)n * sizeof *ta), *tb = malloc((size_t)n * sizeof *tb);
    et_model_tensors(&a, ta, n);
    et_model_tensors(&b, tb, n);
    size_t changed = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < ta[i].n; j++) {
            float x = ta[i].data[j];
            float want = ta[i].n_dims == 2 ? et_fp16_to_fp32(et_fp32_to_fp16(x)) : x;
            if (memcmp(&want, &tb[i].data[j], 4)) fail_msg("%s[%zu]: %g -> %g, want %g", ta[i].name, j, x, tb[i].data[j], want);
            changed += want != x;
            /* and within half-precision rounding of the original */
            assert_true(fabsf(tb[i].data[j] - x) <= fabsf(x) * 0x1p-11f + 0x1p-25f);
        }
    assert_true(changed > 0); /* F16 really rounded something */
    free(ta);
    free(tb);
    et_model_free(&a);
    et_model_free(&b);
}

/* llama.cpp's llama-quantize F16 file imports to the fp16-rounded F32
 * values (2-D) and the F32 values (1-D) of the F32 original. */
static void test_llamacpp_f16_import(void **state) {
    (void)state;
    SHARED_OR_SKIP(f32, "golden/quant/rand-llama-256.gguf");
    SHARED_OR_SKIP(f16, "golden/quant/rand-llama-256-F16.gguf");
    et_model a, b;
    et_err e = {0};
    if (et_model_load_gguf(&a, f32, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&b, f16, &e)) fail_msg("%s", e.msg);
    assert_string_equal(a.name, "rand-llama-256");
    assert_int_equal(a.hp.n_embd, 256);
    assert_int_equal(a.hp.n_ff, 768);
    assert_int_equal(a.hp.head_dim, 64);
    for (size_t i = 0; i < a.n_params; i++) {
        /* the block layouts are identical (same hparams) */
        float x = a.params[i], y = b.params[i];
        float r = et_fp16_to_fp32(et_fp32_to_fp16(x));
        if (y != x && y != r) fail_msg("param %zu: F16 file has %g for %g", i, y, x);
    }
    et_named n1;
    assert_int_equal(et_model_find(&b, "blk.1.ffn_norm.weight", &n1), 0);
    et_named n0;
    assert_int_equal(et_model_find(&a, "blk.1.ffn_norm.weight", &n0), 0);
    assert_memory_equal(n0.data, n1.data, n0.n * 4);
    et_model_free(&a);
    et_model_free(&b);
}

static et_model make_deci(int head0) {
    int nh[4] = {head0, 0, 2, 4}, nkv[4] = {head0 ? 2 : 0, 0, 1, 2}, nff[4] = {40, 24, 0, 8};
    et_hparams hp = {0};
    hp.n_vocab = 32;
    hp.n_embd = 16;
    hp.n_layer = 4;
    hp.n_ctx = 64;
    hp.head_dim = 4;
    hp.rms_eps = 1e-6f;
    hp.rope_theta = 500000.0f;
    hp.layer_n_head = nh;
    hp.layer_n_head_kv = nkv;
    hp.layer_n_ff = nff;
    et_model m;
    et_err e = {0};
    if (et_model_alloc(&m, &hp, &e)) fail_msg("%s", e.msg);
    snprintf(m.name, sizeof m.name, "deci-test");
    fill_random(&m);
    return m;
}

static void test_deci_roundtrip(void **state) {
    (void)state;
    et_model a = make_deci(4), b;
    et_err e = {0};
    const char *out = tmp("deci.gguf");
    if (et_model_save_gguf(&a, out, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    gguf_file g;
    if (gguf_open(&g, out, &e)) fail_msg("%s", e.msg);
    char arch[16];
    assert_int_equal(gguf_get_str(&g, "general.architecture", arch, sizeof arch, &e), 0);
    assert_string_equal(arch, "deci");
    static const char *ak[3] = {"deci.attention.head_count", "deci.attention.head_count_kv", "deci.feed_forward_length"};
    /* the FFN-free layer 2 has attention, so it is written with a zero FFN of width 1 */
    const int64_t want[3][4] = {{4, 0, 2, 4}, {2, 0, 1, 2}, {40, 24, 1, 8}};
    for (int k = 0; k < 3; k++) {
        int64_t i = gguf_find_key(&g, ak[k]);
        assert_true(i >= 0);
        assert_int_equal(g.kv[i].type, GGUF_TYPE_ARRAY);
        assert_int_equal(g.kv[i].arr_type, GGUF_TYPE_INT32);
        assert_int_equal(g.kv[i].n, 4);
        for (uint64_t l = 0; l < 4; l++) {
            int64_t v;
            assert_int_equal(gguf_arr_i64(&g.kv[i], l, &v), 0);
            assert_int_equal(v, want[k][l]);
        }
    }
    uint32_t kl;
    assert_int_equal(gguf_get_u32(&g, "deci.attention.key_length", &kl, &e), 0);
    assert_int_equal(kl, 4);
    assert_null(gguf_find_tensor(&g, "blk.1.attn_q.weight"));
    assert_null(gguf_find_tensor(&g, "blk.1.attn_norm.weight"));
    const gguf_tensor *pad = gguf_find_tensor(&g, "blk.2.ffn_down.weight");
    assert_non_null(pad);
    assert_int_equal(pad->ne[0], 1);
    assert_int_equal(pad->ne[1], 16);
    gguf_close(&g);
    if (et_model_load_gguf(&b, out, &e)) fail_msg("%s", e.msg);
    assert_string_equal(b.hp.arch, "deci");
    assert_string_equal(b.name, "deci-test");
    assert_int_equal(b.hp.layer_n_ff[2], 1);
    /* the padding FFN is exactly zero, and every other tensor is bit-equal */
    for (int i = 0; i < 16; i++) assert_true(b.layers[2].w_down[i] == 0.0f && b.layers[2].w_gate[i] == 0.0f);
    int n = et_model_tensors(&a, NULL, 0);
    et_named *ta = malloc((size_t)n * sizeof *ta);
    et_model_tensors(&a, ta, n);
    for (int i = 0; i < n; i++) {
        et_named tb;
        if (et_model_find(&b, ta[i].name, &tb)) fail_msg("reloaded deci lacks %s", ta[i].name);
        assert_int_equal(ta[i].n, tb.n);
        assert_memory_equal(ta[i].data, tb.data, ta[i].n * 4);
    }
    free(ta);
    assert_int_equal(et_model_tensors(&b, NULL, 0), n + 4);
    /* saving the reloaded model again gives the same model */
    const char *out2 = tmp("deci2.gguf");
    et_model c;
    if (et_model_save_gguf(&b, out2, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&c, out2, &e)) fail_msg("%s", e.msg);
    assert_same_model(&b, &c);
    et_model_free(&a);
    et_model_free(&b);
    et_model_free(&c);
    /* layer 0 without attention cannot be written for llama.cpp */
    a = make_deci(0);
    expect_msg(et_model_save_gguf(&a, tmp("deci0.gguf"), GGML_TYPE_F32, &e), &e, ET_EINPUT, "deci0.gguf", "layer 0");
    et_model_free(&a);
}

/* ------------------------------------------------------------ hostile GGUF */

/* Copy src to dst replacing tensor `name` by (type, ne, data), or
 * dropping it (type == UINT32_MAX), or adding `extra` with a copy of it. */
static void rewrite_gguf(const char *src, const char *dst, const char *name, uint32_t type, uint32_t n_dims,
                         const int64_t *ne, const void *data, const char *extra) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, src, &e)) fail_msg("%s", e.msg);
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) assert_int_equal(gguf_set_kv_from(w, &g, i), 0);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        if (name && gguf_str_eq(g.tensors[i].name, name)) {
            if (type != UINT32_MAX && gguf_add_tensor(w, name, type, n_dims, ne, data, &e)) fail_msg("%s", e.msg);
            continue;
        }
        if (gguf_add_tensor_from(w, &g, i, &e)) fail_msg("%s", e.msg);
    }
    if (extra) {
        const gguf_tensor *t = gguf_find_tensor(&g, "output_norm.weight");
        if (gguf_add_tensor(w, extra, t->type, t->n_dims, t->ne, t->data, &e)) fail_msg("%s", e.msg);
    }
    if (gguf_writer_write(w, dst, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    gguf_close(&g);
}

static void test_gguf_hostile(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    static float buf[64 * 64 * 2];
    et_model m;
    et_err e = {0};
    const char *p = tmp("bad.gguf");
    rewrite_gguf(gg, p, "blk.2.attn_k.weight", GGML_TYPE_F32, 2, (int64_t[]){64, 64}, buf, NULL);
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, p, "'blk.2.attn_k.weight' has shape [64, 64], expected [64, 32]");
    rewrite_gguf(gg, p, "blk.0.ffn_norm.weight", GGML_TYPE_F32, 1, (int64_t[]){63}, buf, NULL);
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, p, "'blk.0.ffn_norm.weight'");
    /* a type quant/ cannot dequantize (MXFP4) */
    rewrite_gguf(gg, p, "blk.1.attn_q.weight", GGML_TYPE_MXFP4, 2, (int64_t[]){64, 64}, buf, NULL);
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, "'blk.1.attn_q.weight'", "MXFP4");
    rewrite_gguf(gg, p, "blk.4.ffn_up.weight", UINT32_MAX, 0, NULL, NULL, NULL);
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, p, "missing tensor 'blk.4.ffn_up.weight'");
    rewrite_gguf(gg, p, NULL, 0, 0, NULL, NULL, "blk.0.attn_output.bias");
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, p, "'blk.0.attn_output.bias'");
    rewrite_gguf(gg, p, NULL, 0, 0, NULL, NULL, "rope_freqs.weight");
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, p, "rope_freqs");
    /* quantized files that load: tests/test_model_quant.c */
    /* wrong architecture */
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "gpt2");
    assert_int_equal(gguf_writer_write(w, p, &e), 0);
    gguf_writer_free(w);
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, p, "'gpt2'");
    /* deci array of the wrong length */
    w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "deci");
    gguf_set_u32(w, "deci.context_length", 64);
    gguf_set_u32(w, "deci.embedding_length", 16);
    gguf_set_u32(w, "deci.block_count", 3);
    int32_t two[2] = {4, 4};
    gguf_set_arr(w, "deci.attention.head_count", GGUF_TYPE_INT32, two, 2);
    assert_int_equal(gguf_writer_write(w, p, &e), 0);
    gguf_writer_free(w);
    expect_msg(et_model_load_gguf(&m, p, &e), &e, ET_EINPUT, "deci.attention.head_count", "block_count = 3");
    /* not a GGUF: the loader falls back to llama2.c and reports the header */
    FILE *f = fopen(p, "wb");
    fwrite("GGUX", 1, 4, f);
    fclose(f);
    expect_msg(et_model_load(&m, p, NULL, &e), &e, ET_EINPUT, p, "too short");
}

/* ------------------------------------------------------------ hostile llama2.c */

static void test_llama2c_hostile(void **state) {
    (void)state;
    SHARED_OR_SKIP(bin, "models/stories260K/stories260K.bin");
    FILE *f = fopen(bin, "rb");
    uint8_t *b = malloc(1056540);
    assert_int_equal(fread(b, 1, 1056540, f), 1056540);
    fclose(f);
    const char *p = tmp("cut.bin");
    et_model m;
    et_err e = {0};
    f = fopen(p, "wb");
    fwrite(b, 1, 1056540 - 4, f);
    fclose(f);
    expect_msg(et_model_load_llama2c(&m, p, NULL, &e), &e, ET_EINPUT, p, "implies 1056540 bytes");
    /* unshared classifier flag without the extra wcls bytes */
    int32_t neg = -512;
    memcpy(b + 20, &neg, 4);
    f = fopen(p, "wb");
    fwrite(b, 1, 1056540, f);
    fclose(f);
    expect_msg(et_model_load_llama2c(&m, p, NULL, &e), &e, ET_EINPUT, p, "vocab_size -512");
    /* ... and with them: an untied model whose output is the appended matrix */
    f = fopen(p, "ab");
    for (int i = 0; i < 512 * 64; i++) {
        float x = (float)i;
        fwrite(&x, 4, 1, f);
    }
    fclose(f);
    if (et_model_load_llama2c(&m, p, NULL, &e)) fail_msg("%s", e.msg);
    assert_false(m.hp.tied_output);
    assert_true(m.output != m.tok_embd);
    assert_true(m.output[777] == 777.0f);
    et_model_free(&m);
    /* n_heads not dividing dim */
    int32_t seven = 7;
    memcpy(b + 12, &seven, 4);
    f = fopen(p, "wb");
    fwrite(b, 1, 1056540, f);
    fclose(f);
    expect_msg(et_model_load_llama2c(&m, p, NULL, &e), &e, ET_EINPUT, p, "n_heads");
    free(b);
}

/* ------------------------------------------------------------ HF directory */

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

/* Row r of a [rows, cols] matrix holds 1000*tag + r in every column. */
static float *rows_tagged(int rows, int cols, int tag) {
    float *w = malloc((size_t)rows * cols * sizeof *w);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) w[(size_t)r * cols + c] = (float)(1000 * tag + r);
    return w;
}

/* Small HF llama/qwen2: hidden 8, 2 heads of 4, 1 KV head, ff 6, vocab 5, 2 layers. */
static void make_hf_v(const char *dir, int qwen2, int tied, int sharded, int st_dtype, int vocab) {
    mkdir(dir, 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char cfg[800];
    snprintf(cfg, sizeof cfg,
             "{\n \"architectures\": [\"%s\"],\n \"model_type\": \"%s\",\n \"hidden_size\": 8,\n"
             " \"intermediate_size\": 6,\n \"num_hidden_layers\": 2,\n \"num_attention_heads\": 2,\n"
             " \"num_key_value_heads\": 1,\n \"vocab_size\": %d,\n \"rms_norm_eps\": 1e-05,\n"
             " \"rope_theta\": 1000000.0,\n \"max_position_embeddings\": 128,\n \"tie_word_embeddings\": %s,\n"
             " \"hidden_act\": \"silu\",\n \"rope_scaling\": null,\n \"bos_token_id\": 1,\n \"eos_token_id\": 2,\n \"torch_dtype\": \"bfloat16\"\n}\n",
             qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", qwen2 ? "qwen2" : "llama", vocab, tied ? "true" : "false");
    write_text(p, cfg);
    st_writer *w[2] = {st_writer_new(), st_writer_new()};
    float *keep[64];
    int nk = 0;
    char nm[128];
    et_err e = {0};
#define ADD(shard, name, r, c, tag)                                                                     \
    do {                                                                                                \
        keep[nk] = rows_tagged(r, (c) ? (c) : 1, tag);                                                            \
        int64_t sh[2] = {r, c};                                                                         \
        assert_int_equal(st_writer_add(w[sharded ? shard : 0], name, st_dtype, (c) ? 2 : 1, sh, keep[nk], &e), 0); \
        nk++;                                                                                           \
    } while (0)
    ADD(0, "model.embed_tokens.weight", vocab, 8, 1);
    ADD(1, "model.norm.weight", 8, 0, 2);
    if (!tied) ADD(1, "lm_head.weight", vocab, 8, 3);
    for (int l = 0; l < 2; l++) {
        int s = l;
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l); ADD(s, nm, 8, 0, 10 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l); ADD(s, nm, 8, 8, 20 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.weight", l); ADD(s, nm, 4, 8, 30 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.v_proj.weight", l); ADD(s, nm, 4, 8, 40 + l);
        if (qwen2) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.bias", l); ADD(s, nm, 8, 0, 50 + l);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.bias", l); ADD(s, nm, 4, 0, 60 + l);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.v_proj.bias", l); ADD(s, nm, 4, 0, 70 + l);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.o_proj.weight", l); ADD(s, nm, 8, 8, 80 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l); ADD(s, nm, 8, 0, 90 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.gate_proj.weight", l); ADD(s, nm, 6, 8, 100 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.up_proj.weight", l); ADD(s, nm, 6, 8, 110 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", l); ADD(s, nm, 8, 6, 120 + l);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.rotary_emb.inv_freq", l); ADD(s, nm, 2, 0, 130 + l);
    }
#undef ADD
    if (!sharded) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        assert_int_equal(st_writer_write(w[0], p, &e), 0);
    } else {
        snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
        assert_int_equal(st_writer_write(w[0], p, &e), 0);
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        assert_int_equal(st_writer_write(w[1], p, &e), 0);
        /* index: layer 0 + embeddings in shard 1, the rest in shard 2 */
        char idx[4096];
        int k = snprintf(idx, sizeof idx, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {"
                                          "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
                                          "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"%s",
                         tied ? "" : ",\"lm_head.weight\": \"model-00002-of-00002.safetensors\"");
        static const char *sub[] = {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                    "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                    "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                                    "mlp.down_proj.weight", "self_attn.rotary_emb.inv_freq"};
        static const char *bias[] = {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"};
        for (int l = 0; l < 2; l++) {
            for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
                k += snprintf(idx + k, sizeof idx - (size_t)k, ",\"model.layers.%d.%s\": \"model-0000%d-of-00002.safetensors\"",
                              l, sub[i], l + 1);
            for (int i = 0; qwen2 && i < 3; i++)
                k += snprintf(idx + k, sizeof idx - (size_t)k, ",\"model.layers.%d.%s\": \"model-0000%d-of-00002.safetensors\"",
                              l, bias[i], l + 1);
        }
        snprintf(idx + k, sizeof idx - (size_t)k, "}}");
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        write_text(p, idx);
    }
    st_writer_free(w[0]);
    st_writer_free(w[1]);
    for (int i = 0; i < nk; i++) free(keep[i]);
}

static void make_hf(const char *dir, int qwen2, int tied, int sharded, int st_dtype) {
    make_hf_v(dir, qwen2, tied, sharded, st_dtype, 5);
}

/* Interleaving of each head's halves, written out by hand for head_dim 4:
 * HF rows (0 1 | 2 3) -> (0 2 1 3) per head. */
static const int Q_ORDER[8] = {0, 2, 1, 3, 4, 6, 5, 7}; /* 2 heads */
static const int K_ORDER[4] = {0, 2, 1, 3};             /* 1 KV head */

static void check_hf_model(const et_model *m, int qwen2, int tied) {
    assert_int_equal(m->hp.n_embd, 8);
    assert_int_equal(m->hp.n_head, 2);
    assert_int_equal(m->hp.n_head_kv, 1);
    assert_int_equal(m->hp.head_dim, 4);
    assert_int_equal(m->hp.n_ff, 6);
    assert_int_equal(m->hp.n_vocab, 5);
    assert_int_equal(m->hp.n_ctx, 128);
    assert_true(m->hp.rope_theta == 1000000.0f);
    assert_true(m->hp.rms_eps == 1e-5f);
    assert_int_equal(m->hp.tied_output, tied);
    assert_int_equal(m->hp.qkv_bias, qwen2);
    for (int l = 0; l < 2; l++) {
        const et_layer *L = &m->layers[l];
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++) {
                assert_true(L->wq[r * 8 + c] == (float)(1000 * (20 + l) + Q_ORDER[r]));
                assert_true(L->wo[r * 8 + c] == (float)(1000 * (80 + l) + r)); /* not permuted */
            }
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 8; c++) {
                assert_true(L->wk[r * 8 + c] == (float)(1000 * (30 + l) + K_ORDER[r]));
                assert_true(L->wv[r * 8 + c] == (float)(1000 * (40 + l) + r));
            }
        if (qwen2) {
            for (int r = 0; r < 8; r++) assert_true(L->bq[r] == (float)(1000 * (50 + l) + Q_ORDER[r]));
            for (int r = 0; r < 4; r++) assert_true(L->bk[r] == (float)(1000 * (60 + l) + K_ORDER[r]));
            for (int r = 0; r < 4; r++) assert_true(L->bv[r] == (float)(1000 * (70 + l) + r));
        }
        for (int r = 0; r < 8; r++) assert_true(L->attn_norm[r] == (float)(1000 * (10 + l) + r));
        for (int r = 0; r < 6; r++) assert_true(L->w_up[r * 8 + 7] == (float)(1000 * (110 + l) + r));
        for (int r = 0; r < 8; r++) assert_true(L->w_down[r * 6 + 5] == (float)(1000 * (120 + l) + r));
    }
    assert_true(m->tok_embd[3 * 8 + 2] == 1003.0f);
    if (tied) assert_ptr_equal(m->output, m->tok_embd);
    else assert_true(m->output[4 * 8] == 3004.0f);
}

/* RoPE equivalence, independently of the row formula: HF rotate_half on
 * W_hf x equals interleaved-pair RoPE on W_perm x (per head, any position). */
static void test_hf_permutation_rope(void **state) {
    (void)state;
    const char *dir = tmp("hf_rope");
    make_hf(dir, 0, 1, 0, ST_F32);
    /* replace q_proj of layer 0 by random numbers */
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_file f;
    et_err e = {0};
    if (st_open(&f, p, &e)) fail_msg("%s", e.msg);
    st_writer *w = st_writer_new();
    float *data[64];
    for (size_t i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        data[i] = malloc(t->n_elems * 4 + 4);
        st_tensor_to_f32(&f, t, data[i], &e);
        if (strcmp(t->name, "model.layers.0.self_attn.q_proj.weight") == 0)
            for (uint64_t j = 0; j < t->n_elems; j++) data[i][j] = frand();
        assert_int_equal(st_writer_add(w, t->name, ST_F32, t->n_dims, t->shape, data[i], &e), 0);
    }
    const float *wq_hf = NULL;
    for (size_t i = 0; i < f.n_tensors; i++)
        if (strcmp(f.tensors[i].name, "model.layers.0.self_attn.q_proj.weight") == 0) wq_hf = data[i];
    size_t nt = f.n_tensors;
    st_close(&f);
    assert_int_equal(st_writer_write(w, p, &e), 0);
    st_writer_free(w);
    et_model m;
    if (et_model_load_hf(&m, dir, &e)) fail_msg("%s", e.msg);
    double x[8], qh[8], qp[8];
    for (int i = 0; i < 8; i++) x[i] = frand();
    for (int r = 0; r < 8; r++) {
        qh[r] = qp[r] = 0;
        for (int c = 0; c < 8; c++) {
            qh[r] += (double)wq_hf[r * 8 + c] * x[c];
            qp[r] += (double)m.layers[0].wq[r * 8 + c] * x[c];
        }
    }
    const int hd = 4, pos = 3;
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < hd / 2; i++) {
            double th = pos * pow(1000000.0, -2.0 * i / hd), cs = cos(th), sn = sin(th);
            /* HF (transformers apply_rotary_pos_emb): pair (i, i + hd/2) */
            double a0 = qh[h * hd + i], a1 = qh[h * hd + i + hd / 2];
            double hf0 = a0 * cs - a1 * sn, hf1 = a1 * cs + a0 * sn;
            /* GGUF / llama2.c: pair (2i, 2i+1) */
            double b0 = qp[h * hd + 2 * i], b1 = qp[h * hd + 2 * i + 1];
            double gg0 = b0 * cs - b1 * sn, gg1 = b1 * cs + b0 * sn;
            assert_true(fabs(hf0 - gg0) < 1e-9 && fabs(hf1 - gg1) < 1e-9);
        }
    for (size_t i = 0; i < nt; i++) free(data[i]);
    et_model_free(&m);
}

/* The public row maps: hand-written order for head_dim 6, and inverse. */
static void test_rope_rows(void **state) {
    (void)state;
    /* HF rows (0 1 2 | 3 4 5) -> GGUF (0 3 1 4 2 5) per head */
    const int want[12] = {0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11};
    float src[24], dst[24], back[24];
    for (int i = 0; i < 24; i++) src[i] = (float)i; /* row r = {2r, 2r+1} */
    et_rope_rows_hf_to_gguf(dst, src, 2, 6, 2);
    for (int r = 0; r < 12; r++) {
        assert_true(dst[2 * r] == (float)(2 * want[r]));
        assert_true(dst[2 * r + 1] == (float)(2 * want[r] + 1));
    }
    et_rope_rows_gguf_to_hf(back, dst, 2, 6, 2);
    assert_memory_equal(back, src, sizeof src);
}

static void test_hf_import(void **state) {
    (void)state;
    et_model m;
    et_err e = {0};
    const char *d1 = tmp("hf_llama");
    make_hf(d1, 0, 0, 0, ST_F32);
    if (et_model_load(&m, d1, NULL, &e)) fail_msg("%s", e.msg);
    check_hf_model(&m, 0, 0);
    assert_string_equal(m.name, "hf_llama");
    /* and exports to a GGUF that re-imports identically */
    const char *g = tmp("hf_llama.gguf");
    if (et_model_save_gguf(&m, g, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    et_model r;
    if (et_model_load_gguf(&r, g, &e)) fail_msg("%s", e.msg);
    assert_same_model(&m, &r);
    et_model_free(&r);
    et_model_free(&m);

    const char *d2 = tmp("hf_qwen2_sharded");
    make_hf(d2, 1, 1, 1, ST_F32);
    if (et_model_load_hf(&m, d2, &e)) fail_msg("%s", e.msg);
    check_hf_model(&m, 1, 1);
    const char *g2 = tmp("hf_qwen2.gguf");
    if (et_model_save_gguf(&m, g2, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&r, g2, &e)) fail_msg("%s", e.msg);
    assert_same_model(&m, &r);
    et_model_free(&r);
    et_model_free(&m);

    /* BF16 and F16 weights: the tags (< 131072, integers below 2^8 apart)
     * are not all representable, so compare with the rounded values */
    const char *d3 = tmp("hf_bf16");
    make_hf(d3, 0, 1, 0, ST_BF16);
    if (et_model_load_hf(&m, d3, &e)) fail_msg("%s", e.msg);
    assert_true(m.layers[1].wq[1 * 8] == et_bf16_to_fp32(et_fp32_to_bf16(21000.0f + 2)));
    assert_true(m.layers[0].attn_norm[7] == et_bf16_to_fp32(et_fp32_to_bf16(10007.0f)));
    et_model_free(&m);
    const char *d4 = tmp("hf_f16");
    make_hf(d4, 0, 1, 0, ST_F16);
    if (et_model_load_hf(&m, d4, &e)) fail_msg("%s", e.msg);
    assert_true(m.layers[1].wk[2 * 8 + 3] == et_fp16_to_fp32(et_fp32_to_fp16(31000.0f + 1)));
    et_model_free(&m);
}

/* An HF directory with SmolLM2's real tokenizer.json: the tokenizer comes
 * along, survives GGUF export, and encodes as the file loaded directly. */
static void test_hf_tokenizer_json(void **state) {
    (void)state;
    SHARED_OR_SKIP(tj, "tokenizers/smollm2-135m/tokenizer.json");
    const char *d = tmp("hf_smol_tok");
    make_hf_v(d, 0, 1, 0, ST_BF16, 49152);
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    FILE *in = fopen(tj, "rb"), *out = fopen(p, "wb");
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    et_model m, r;
    et_err e = {0};
    if (et_model_load(&m, d, NULL, &e)) fail_msg("%s", e.msg);
    assert_non_null(m.tok);
    assert_int_equal(et_tok_n_vocab(m.tok), 49152);
    et_tokenizer *t;
    if (et_tok_from_hf_json(&t, tj, &e)) fail_msg("%s", e.msg);
    const char *text = "Hello world, 123 tokens!";
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(et_tok_encode(m.tok, text, strlen(text), 0, &a, &na, &e), 0);
    assert_int_equal(et_tok_encode(t, text, strlen(text), 0, &b, &nb, &e), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a);
    free(b);
    et_tok_free(t);
    const char *g = tmp("hf_smol_tok.gguf");
    if (et_model_save_gguf(&m, g, GGML_TYPE_F16, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&r, g, &e)) fail_msg("%s", e.msg);
    assert_non_null(r.tok);
    char ha[65], hb[65];
    et_tok_sha256(m.tok, ha);
    et_tok_sha256(r.tok, hb);
    assert_string_equal(ha, hb);
    et_model_free(&r);
    et_model_free(&m);
    /* a config whose vocabulary is larger than the tokenizer's is refused */
    const char *d2 = tmp("hf_smol_tok2");
    make_hf_v(d2, 0, 1, 0, ST_BF16, 49160);
    expect_msg(et_model_load(&m, d2, tj, &e), &e, ET_EINPUT, "tokenizer.json", "49152 tokens");
}

static void test_hf_hostile(void **state) {
    (void)state;
    et_model m;
    et_err e = {0};
    char p[600];
    const char *d = tmp("hf_bad");
    make_hf(d, 0, 1, 0, ST_F32);
    snprintf(p, sizeof p, "%s/config.json", d);
    write_text(p, "{\n \"hidden_size\": 8,\n \"model_type\": \"llama\"\n \"x\": 1}\n");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "config.json: line 4", "malformed JSON");
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": 8}");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "config.json", "\"intermediate_size\"");
    write_text(p, "{\"model_type\": \"gpt2\"}");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "config.json", "'gpt2'");
    write_text(p, "[1]");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "config.json", "not a JSON object");
    /* config says 3 layers: the third layer's tensors are missing */
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 6, \"num_hidden_layers\": 3,"
                  "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 5, \"tie_word_embeddings\": true}");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "missing tensor", "model.layers.2.input_layernorm.weight");
    /* config says intermediate 7: shape mismatch named */
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 7, \"num_hidden_layers\": 2,"
                  "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 5, \"tie_word_embeddings\": true}");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "'model.layers.0.mlp.gate_proj.weight' has shape [6, 8]",
               "expected [7, 8]");
    /* untied but no lm_head */
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 6, \"num_hidden_layers\": 2,"
                  "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"vocab_size\": 5}");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "missing tensor 'lm_head.weight'", NULL);
    write_text(p, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 6, \"num_hidden_layers\": 2,"
                  "\"num_attention_heads\": 2, \"vocab_size\": 5, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}}");
    expect_msg(et_model_load_hf(&m, d, &e), &e, ET_EINPUT, "config.json", "'llama3'");
    /* a truncated shard */
    const char *d2 = tmp("hf_bad2");
    make_hf(d2, 0, 1, 1, ST_F32);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d2);
    assert_int_equal(truncate(p, 100), 0);
    expect_msg(et_model_load_hf(&m, d2, &e), &e, ET_EINPUT, "model-00002-of-00002.safetensors", NULL);
    /* an index naming a missing shard / a path outside the directory */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d2);
    write_text(p, "{\"weight_map\": {\"model.norm.weight\": \"model-00009.safetensors\"}}");
    expect_msg(et_model_load_hf(&m, d2, &e), &e, ET_EINPUT, "model-00009.safetensors", NULL);
    write_text(p, "{\"weight_map\": {\"model.norm.weight\": \"../x.safetensors\"}}");
    expect_msg(et_model_load_hf(&m, d2, &e), &e, ET_EINPUT, "index.json", "'../x.safetensors'");
    /* an unexpected tensor */
    const char *d3 = tmp("hf_bad3");
    make_hf(d3, 0, 1, 0, ST_F32);
    snprintf(p, sizeof p, "%s/model.safetensors", d3);
    st_file f;
    if (st_open(&f, p, &e)) fail_msg("%s", e.msg);
    st_writer *w = st_writer_new();
    float *data[64];
    for (size_t i = 0; i < f.n_tensors; i++) {
        data[i] = malloc(f.tensors[i].n_elems * 4 + 4);
        st_tensor_to_f32(&f, &f.tensors[i], data[i], &e);
        st_writer_add(w, f.tensors[i].name, ST_F32, f.tensors[i].n_dims, f.tensors[i].shape, data[i], &e);
    }
    size_t nt = f.n_tensors;
    st_close(&f);
    static float bias[8];
    st_writer_add(w, "model.layers.1.self_attn.o_proj.bias", ST_F32, 1, (int64_t[]){8}, bias, &e);
    assert_int_equal(st_writer_write(w, p, &e), 0);
    st_writer_free(w);
    for (size_t i = 0; i < nt; i++) free(data[i]);
    expect_msg(et_model_load_hf(&m, d3, &e), &e, ET_EINPUT, "model.safetensors", "'model.layers.1.self_attn.o_proj.bias'");
    /* SmolLM2-135M's real config.json is accepted: the import gets as far as the weights */
    const char *smol = shared_path("tokenizers/smollm2-135m/config.json");
    if (smol) {
        const char *d4 = tmp("hf_smol");
        mkdir(d4, 0755);
        FILE *in = fopen(smol, "rb");
        char cfg[4096];
        size_t n = fread(cfg, 1, sizeof cfg - 1, in);
        fclose(in);
        cfg[n] = 0;
        snprintf(p, sizeof p, "%s/config.json", d4);
        write_text(p, cfg);
        expect_msg(et_model_load_hf(&m, d4, &e), &e, ET_EINPUT, "hf_smol/model.safetensors", "cannot open");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_llama2c_equals_gguf),
        cmocka_unit_test(test_tokenizer_override),
        cmocka_unit_test(test_gguf_f32_roundtrip),
        cmocka_unit_test(test_gguf_f16_export),
        cmocka_unit_test(test_llamacpp_f16_import),
        cmocka_unit_test(test_deci_roundtrip),
        cmocka_unit_test(test_gguf_hostile),
        cmocka_unit_test(test_llama2c_hostile),
        cmocka_unit_test(test_hf_permutation_rope),
        cmocka_unit_test(test_rope_rows),
        cmocka_unit_test(test_hf_import),
        cmocka_unit_test(test_hf_tokenizer_json),
        cmocka_unit_test(test_hf_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
