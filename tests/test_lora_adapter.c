/* tests/test_lora_adapter.c — the in-memory LoRA adapter and its GGUF export.
 *
 * - target and layer parsing;
 * - creation against a model: shapes from the base, one contiguous block in
 *   the documented order, PEFT init (A in +-1/sqrt(n_in), B = 0), seeded and
 *   independent of the other targets;
 * - GGUF adapter written and read back through the GGUF reader
 *   independently: KVs (general.type, adapter.type, architecture,
 *   adapter.lora.alpha F32, rsLoRA written as alpha*sqrt(rank)), tensor names,
 *   ne order {n_in, rank} / {rank, n_out}, bytes; the file size matches
 *   lora_adapter_gguf_bytes; lora_adapter_load_gguf restores everything;
 * - an adapter checked against a base GGUF: accepted when it fits, refused
 *   naming the key or tensor when the architecture, a tensor or a shape differs;
 * - hostile adapter files refused with the tensor named;
 * - PEFT export: keys and shapes, lora_A as is, lora_B of q/k un-permuted
 *   (checked against a permutation built in the test as the 3-D transpose
 *   of convert_hf_to_gguf.py's reshape/swapaxes), adapter_config.json fields
 *   parsed with cJSON, read back exactly; bad PEFT inputs refused. */
#include "testutil.h"

#include <math.h>

#include <cjson/cJSON.h>

#include "../export/gguf.h"
#include "../export/safetensors.h"
#include "../lora/adapter.h"
#include "lora_fixtures.h"

static const fx_dims DIMS = {3, 16, 4, 2, 4, 24, 32}; /* n_layer n_embd n_head n_head_kv head_dim n_ff n_vocab */

static void test_parse_targets(void **state) {
    (void)state;
    unsigned b;
    et_err e = {0};
    assert_int_equal(lora_parse_targets("q,v", &b, &e), 0);
    assert_int_equal(b, LORA_TARGET_BIT(LORA_T_Q) | LORA_TARGET_BIT(LORA_T_V));
    assert_int_equal(lora_parse_targets("all-linear", &b, &e), 0);
    assert_int_equal(b, 0x7f);
    assert_int_equal(lora_parse_targets("q_proj, attn_k ,down,ffn_up,o", &b, &e), 0);
    assert_int_equal(b, (1u << LORA_T_Q) | (1u << LORA_T_K) | (1u << LORA_T_DOWN) | (1u << LORA_T_UP) |
                            (1u << LORA_T_O));
    assert_int_equal(lora_parse_targets("q,bogus", &b, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "'bogus'"));
    assert_int_equal(lora_parse_targets("q,,v", &b, &e), ET_EUSAGE);
    char s[64];
    lora_format_targets((1u << LORA_T_Q) | (1u << LORA_T_V) | (1u << LORA_T_GATE), s, sizeof s);
    assert_string_equal(s, "q,v,gate");
    lora_format_targets(LORA_ALL_LINEAR, s, sizeof s);
    assert_string_equal(s, "all-linear");

    uint8_t sel[6];
    assert_int_equal(lora_parse_layers("0-1,4", 6, sel, &e), 0);
    uint8_t want[6] = {1, 1, 0, 0, 1, 0};
    assert_memory_equal(sel, want, 6);
    assert_int_equal(lora_parse_layers(NULL, 6, sel, &e), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(sel[i], 1);
    assert_int_equal(lora_parse_layers("6", 6, sel, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "layer 6 out of range"));
    assert_int_equal(lora_parse_layers("3-1", 6, sel, &e), ET_EUSAGE);
    assert_int_equal(lora_parse_layers("1;2", 6, sel, &e), ET_EUSAGE);
}

static void test_create_shapes_block_init(void **state) {
    (void)state;
    et_model m = fx_model(&DIMS);
    lora_config c = {.targets = LORA_ALL_LINEAR, .layers = "0,2", .rank = 3, .alpha = 6, .seed = 7, .dropout = 0.1f};
    lora_adapter ad;
    et_err e = {0};
    if (lora_adapter_create(&ad, &m, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ad.n_tensors, 14);
    assert_string_equal(ad.arch, "llama");
    assert_int_equal(ad.n_layer, 3);
    assert_int_equal(ad.layer_sel[0], 1);
    assert_int_equal(ad.layer_sel[1], 0);
    assert_int_equal(ad.layer_sel[2], 1);
    /* expected (n_in, n_out) per target for these dims */
    const int Q = 16, K = 8, E = 16, F = 24;
    const int want_in[7] = {E, E, E, Q, E, E, F}, want_out[7] = {Q, K, K, E, F, F, E};
    const int want_heads[7] = {4, 2, 0, 0, 0, 0, 0};
    const char *gg[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    float *p = ad.params;
    for (int i = 0; i < ad.n_tensors; i++) {
        const lora_tensor *t = &ad.tensors[i];
        int layer = i < 7 ? 0 : 2, tg = i % 7;
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s.weight", layer, gg[tg]);
        assert_string_equal(t->base_name, name);
        assert_int_equal(t->layer, layer);
        assert_int_equal(t->target, tg);
        assert_int_equal(t->rank, 3);
        assert_int_equal(t->n_in, want_in[tg]);
        assert_int_equal(t->n_out, want_out[tg]);
        assert_int_equal(t->n_head_rope, want_heads[tg]);
        /* one block: a then b, back to back */
        assert_ptr_equal(t->lora_a, p);
        p += 3 * t->n_in;
        assert_ptr_equal(t->lora_b, p);
        p += 3 * t->n_out;
        double bound = 1.0 / sqrt((double)t->n_in), amax = 0;
        for (int j = 0; j < 3 * t->n_in; j++) {
            assert_true(fabs(t->lora_a[j]) <= bound);
            if (fabs(t->lora_a[j]) > amax) amax = fabs(t->lora_a[j]);
        }
        assert_true(amax > 0.6 * bound); /* actually spread over the interval */
        for (int j = 0; j < 3 * t->n_out; j++) assert_true(t->lora_b[j] == 0.0f);
    }
    assert_int_equal((size_t)(p - ad.params), ad.n_params);
    assert_ptr_equal(lora_adapter_find(&ad, "blk.2.ffn_up.weight"), &ad.tensors[12]);
    assert_null(lora_adapter_find(&ad, "blk.1.ffn_up.weight"));
    assert_true(fabsf(lora_tensor_scale(&ad, &ad.tensors[0]) - 2.0f) < 1e-7f);

    /* uniform distribution: mean ~ 0, variance ~ bound^2/3 over all of A */
    double s1 = 0, s2 = 0, n = 0;
    for (int i = 0; i < ad.n_tensors; i++) {
        const lora_tensor *t = &ad.tensors[i];
        double b = 1.0 / sqrt((double)t->n_in);
        for (int j = 0; j < 3 * t->n_in; j++) {
            double u = t->lora_a[j] / b;
            s1 += u;
            s2 += u * u;
            n++;
        }
    }
    assert_true(fabs(s1 / n) < 0.1);
    assert_true(fabs(s2 / n - 1.0 / 3.0) < 0.05);

    /* seeded: same seed same A; q's A does not depend on the other targets */
    lora_adapter ad2;
    lora_config c2 = c;
    c2.targets = LORA_TARGET_BIT(LORA_T_Q);
    c2.layers = "2";
    assert_int_equal(lora_adapter_create(&ad2, &m, &c2, &e), 0);
    assert_int_equal(ad2.n_tensors, 1);
    assert_memory_equal(ad2.tensors[0].lora_a, ad.tensors[7].lora_a, 3 * 16 * sizeof(float));
    lora_adapter_init(&ad2, 8);
    assert_memory_not_equal(ad2.tensors[0].lora_a, ad.tensors[7].lora_a, 3 * 16 * sizeof(float));
    lora_adapter_free(&ad2);
    lora_adapter_free(&ad);

    /* defaults: q, v on every layer */
    lora_config c3 = {.rank = 2, .alpha = 4};
    assert_int_equal(lora_adapter_create(&ad, &m, &c3, &e), 0);
    assert_int_equal(ad.n_tensors, 6);
    assert_int_equal(ad.targets, LORA_DEFAULT_TARGETS);
    lora_adapter_free(&ad);
    /* bad configs */
    lora_config bad = {.rank = 0, .alpha = 4};
    assert_int_equal(lora_adapter_create(&ad, &m, &bad, &e), ET_EUSAGE);
    bad.rank = 2;
    bad.alpha = -1;
    assert_int_equal(lora_adapter_create(&ad, &m, &bad, &e), ET_EUSAGE);
    bad.alpha = 1;
    bad.dropout = 1.0f;
    assert_int_equal(lora_adapter_create(&ad, &m, &bad, &e), ET_EUSAGE);
}

static char *str_of(gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

/* Read the written file with the plain GGUF reader and compare with ad. */
static void check_gguf_file(const char *path, const lora_adapter *ad, uint32_t type, float want_alpha) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    char s[64];
    assert_int_equal(gguf_get_str(&g, "general.type", s, sizeof s, &e), 0);
    assert_string_equal(s, "adapter");
    assert_int_equal(gguf_get_str(&g, "adapter.type", s, sizeof s, &e), 0);
    assert_string_equal(s, "lora");
    assert_int_equal(gguf_get_str(&g, "general.architecture", s, sizeof s, &e), 0);
    assert_string_equal(s, "llama");
    int64_t k = gguf_find_key(&g, "adapter.lora.alpha");
    assert_true(k >= 0);
    assert_int_equal(g.kv[k].type, GGUF_TYPE_FLOAT32);
    float alpha;
    memcpy(&alpha, g.kv[k].data, 4);
    assert_true(alpha == want_alpha);
    assert_int_equal(g.n_tensors, (uint64_t)(2 * ad->n_tensors));
    for (int i = 0; i < ad->n_tensors; i++) {
        const lora_tensor *t = &ad->tensors[i];
        for (int ab = 0; ab < 2; ab++) {
            const gguf_tensor *gt = &g.tensors[2 * i + ab];
            char name[80], want[80];
            snprintf(want, sizeof want, "%s.lora_%c", t->base_name, ab ? 'b' : 'a');
            assert_string_equal(str_of(gt->name, name, sizeof name), want);
            assert_int_equal(gt->n_dims, 2);
            assert_int_equal(gt->type, type);
            const float *src = ab ? t->lora_b : t->lora_a;
            /* lora_a ne {n_in, rank}; lora_b ne {rank, n_out} */
            assert_int_equal(gt->ne[0], ab ? t->rank : t->n_in);
            assert_int_equal(gt->ne[1], ab ? t->n_out : t->rank);
            size_t n = (size_t)gt->ne[0] * (size_t)gt->ne[1];
            for (size_t j = 0; j < n; j++) {
                float v;
                if (type == GGML_TYPE_F32) {
                    memcpy(&v, (const uint8_t *)gt->data + 4 * j, 4);
                    assert_true(v == src[j]);
                } else {
                    uint16_t h;
                    memcpy(&h, (const uint8_t *)gt->data + 2 * j, 2);
                    assert_int_equal(h, et_fp32_to_fp16(src[j]));
                }
            }
        }
    }
    gguf_close(&g);
}

static void test_gguf_round_trip(void **state) {
    (void)state;
    et_model m = fx_model(&DIMS);
    lora_config c = {.targets = (1u << LORA_T_Q) | (1u << LORA_T_V) | (1u << LORA_T_DOWN), .rank = 4,
                     .alpha = 8, .seed = 3, .dropout = 0.05f};
    lora_adapter ad, back;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    fx_randomize_b(&ad, 11, 0.3f);
    const char *path = fx_tmp("a.gguf");
    if (lora_adapter_save_gguf(&ad, path, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    check_gguf_file(path, &ad, GGML_TYPE_F32, 8.0f);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    assert_int_equal((uint64_t)ftell(f), lora_adapter_gguf_bytes(&ad, GGML_TYPE_F32));
    fclose(f);

    if (lora_adapter_load_gguf(&back, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(back.n_tensors, ad.n_tensors);
    assert_int_equal(back.n_params, ad.n_params);
    assert_memory_equal(back.params, ad.params, ad.n_params * sizeof(float));
    assert_int_equal(back.rank, 4);
    assert_true(back.alpha == 8.0f);
    assert_int_equal(back.use_rslora, 0);
    assert_true(back.dropout == 0.05f);
    assert_int_equal(back.seed, 3);
    assert_int_equal(back.targets, c.targets);
    for (int i = 0; i < ad.n_tensors; i++) {
        assert_string_equal(back.tensors[i].base_name, ad.tensors[i].base_name);
        assert_int_equal(back.tensors[i].layer, ad.tensors[i].layer);
        assert_int_equal(back.tensors[i].target, ad.tensors[i].target);
    }
    lora_adapter_free(&back);

    /* rsLoRA: llama.cpp's alpha/rank must give alpha/sqrt(rank) */
    ad.use_rslora = 1;
    assert_true(fabsf(lora_tensor_scale(&ad, &ad.tensors[0]) - 4.0f) < 1e-6f); /* 8 / sqrt(4) */
    const char *rs = fx_tmp("rs.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ad, rs, GGML_TYPE_F16, &e), 0);
    check_gguf_file(rs, &ad, GGML_TYPE_F16, 16.0f); /* 8 * sqrt(4) */
    f = fopen(rs, "rb");
    fseek(f, 0, SEEK_END);
    assert_int_equal((uint64_t)ftell(f), lora_adapter_gguf_bytes(&ad, GGML_TYPE_F16));
    fclose(f);
    assert_int_equal(lora_adapter_load_gguf(&back, rs, &e), 0);
    assert_int_equal(back.use_rslora, 1);
    assert_true(back.alpha == 8.0f);
    /* llama.cpp's scale = adapter.lora.alpha / rank = 16 / 4 = 4 = the rsLoRA scale */
    assert_true(fabsf(lora_tensor_scale(&back, &back.tensors[0]) - 4.0f) < 1e-6f);
    for (size_t j = 0; j < ad.n_params; j++)
        assert_true(back.params[j] == et_fp16_to_fp32(et_fp32_to_fp16(ad.params[j])));
    lora_adapter_free(&back);

    assert_int_equal(lora_adapter_save_gguf(&ad, fx_tmp("q.gguf"), GGML_TYPE_Q8_0, &e), ET_EUSAGE);
    assert_int_equal(lora_adapter_gguf_bytes(&ad, GGML_TYPE_Q8_0), 0);
    lora_adapter_free(&ad);
}

static void test_check_against_base(void **state) {
    (void)state;
    float *w1, *w2, *w3;
    const char *base = fx_tmp("base.gguf");
    fx_write_base(base, &DIMS, 1, "llama", &w1);
    fx_dims other = DIMS;
    other.n_ff = 20;
    const char *base2 = fx_tmp("base2.gguf");
    fx_write_base(base2, &other, 1, "llama", &w2);
    const char *base3 = fx_tmp("base3.gguf");
    fx_write_base(base3, &DIMS, 1, "qwen2", &w3);
    et_model m = fx_model(&DIMS);
    lora_config c = {.targets = LORA_ALL_LINEAR, .rank = 2, .alpha = 4, .seed = 1};
    lora_adapter ad, from_gguf;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);

    gguf_file g;
    assert_int_equal(gguf_open(&g, base, &e), 0);
    /* creating from the GGUF gives the same tensors and the same init */
    if (lora_adapter_create_gguf(&from_gguf, &g, &c, &e)) fail_msg("%s", e.msg);
    assert_int_equal(from_gguf.n_tensors, ad.n_tensors);
    assert_int_equal(from_gguf.n_params, ad.n_params);
    assert_memory_equal(from_gguf.params, ad.params, ad.n_params * sizeof(float));
    for (int i = 0; i < ad.n_tensors; i++)
        assert_int_equal(from_gguf.tensors[i].n_head_rope, ad.tensors[i].n_head_rope);
    lora_adapter_free(&from_gguf);
    if (lora_adapter_check_gguf(&ad, "ad.gguf", &g, &e)) fail_msg("%s", e.msg);
    assert_int_equal(lora_adapter_check_model(&ad, "ad.gguf", &m, &e), 0);
    gguf_close(&g);

    /* shape differs: the first differing tensor is named */
    assert_int_equal(gguf_open(&g, base2, &e), 0);
    assert_int_equal(lora_adapter_check_gguf(&ad, "ad.gguf", &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "ad.gguf"));
    assert_non_null(strstr(e.msg, "'blk.0.ffn_gate.weight.lora_a'"));
    assert_non_null(strstr(e.msg, "{16, 20}"));
    gguf_close(&g);
    et_model m2 = fx_model(&other);
    assert_int_equal(lora_adapter_check_model(&ad, "ad.gguf", &m2, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.0.ffn_gate.weight"));

    /* architecture differs */
    assert_int_equal(gguf_open(&g, base3, &e), 0);
    assert_int_equal(lora_adapter_check_gguf(&ad, "ad.gguf", &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "general.architecture"));
    assert_non_null(strstr(e.msg, "qwen2"));
    gguf_close(&g);

    /* a tensor the base lacks: an adapter for 4 layers on a 3-layer base */
    fx_dims four = DIMS;
    four.n_layer = 4;
    et_model m4 = fx_model(&four);
    lora_adapter ad4;
    c.layers = "3";
    assert_int_equal(lora_adapter_create(&ad4, &m4, &c, &e), 0);
    assert_int_equal(gguf_open(&g, base, &e), 0);
    assert_int_equal(lora_adapter_check_gguf(&ad4, "ad4.gguf", &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "no tensor 'blk.3.attn_q.weight'"));
    gguf_close(&g);
    lora_adapter_free(&ad4);
    lora_adapter_free(&ad);
    free(w1);
    free(w2);
    free(w3);
}

/* Hand-built adapter files with one defect each. */
static void write_adapter(const char *path, const char *gtype, const char *atype, const char *name_a,
                          const int64_t ne_a[2], const char *name_b, const int64_t ne_b[2]) {
    static float data[4096];
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "llama");
    if (gtype) gguf_set_str(w, "general.type", gtype);
    if (atype) gguf_set_str(w, "adapter.type", atype);
    gguf_set_f32(w, "adapter.lora.alpha", 4.0f);
    et_err e = {0};
    if (name_a) assert_int_equal(gguf_add_tensor(w, name_a, GGML_TYPE_F32, 2, ne_a, data, &e), 0);
    if (name_b) assert_int_equal(gguf_add_tensor(w, name_b, GGML_TYPE_F32, 2, ne_b, data, &e), 0);
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
}

static void expect_refused(const char *path, const char *needle) {
    lora_adapter ad;
    et_err e = {0};
    assert_int_equal(lora_adapter_load_gguf(&ad, path, &e), ET_EINPUT);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
    assert_null(ad.params);
}

static void test_hostile_adapters(void **state) {
    (void)state;
    const char *p = fx_tmp("bad.gguf");
    int64_t a[2] = {16, 2}, b[2] = {2, 16}, b3[2] = {3, 16};
    write_adapter(p, "model", "lora", "blk.0.attn_q.weight.lora_a", a, "blk.0.attn_q.weight.lora_b", b);
    expect_refused(p, "'general.type' is \"model\"");
    write_adapter(p, NULL, "lora", "blk.0.attn_q.weight.lora_a", a, "blk.0.attn_q.weight.lora_b", b);
    expect_refused(p, "missing key 'general.type'");
    write_adapter(p, "adapter", "control_vector", "blk.0.attn_q.weight.lora_a", a, "blk.0.attn_q.weight.lora_b", b);
    expect_refused(p, "'adapter.type'");
    write_adapter(p, "adapter", "lora", "blk.0.attn_q.weight.lora_a", a, NULL, NULL);
    expect_refused(p, "no matching 'blk.0.attn_q.weight.lora_b'");
    write_adapter(p, "adapter", "lora", NULL, NULL, "blk.0.attn_q.weight.lora_b", b);
    expect_refused(p, "no matching 'blk.0.attn_q.weight.lora_a'");
    write_adapter(p, "adapter", "lora", "blk.0.attn_q.weight.lora_a", a, "blk.0.attn_q.weight.lora_b", b3);
    expect_refused(p, "rank differs");
    write_adapter(p, "adapter", "lora", "blk.0.attn_q.weight.lora_a", a, "blk.0.attn_q.weight.lora_x", b);
    expect_refused(p, "unexpected suffix");
    write_adapter(p, "adapter", "lora", "output.weight.lora_a", a, "output.weight.lora_b", b);
    expect_refused(p, "'output.weight.lora_a'");
    write_adapter(p, "adapter", "lora", "blk.0.attn_norm.weight", a, NULL, NULL); /* ignored -> empty */
    expect_refused(p, "no lora_a/lora_b tensors");
    /* a valid one loads */
    write_adapter(p, "adapter", "lora", "blk.1.ffn_down.weight.lora_a", a, "blk.1.ffn_down.weight.lora_b", b);
    lora_adapter ad;
    et_err e = {0};
    if (lora_adapter_load_gguf(&ad, p, &e)) fail_msg("%s", e.msg);
    assert_int_equal(ad.n_tensors, 1);
    assert_int_equal(ad.tensors[0].layer, 1);
    assert_int_equal(ad.tensors[0].target, LORA_T_DOWN);
    assert_true(ad.alpha == 4.0f); /* no edgetune keys: llama.cpp's reading */
    assert_int_equal(ad.use_rslora, 0);
    lora_adapter_free(&ad);
}

static void test_rope_rows(void **state) {
    (void)state;
    /* independent statement of LlamaModel.permute: for n_head 2, head_dim 4
     * the GGUF rows are hf rows [0,2,1,3, 4,6,5,7] */
    const int64_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int r = 0; r < 8; r++) assert_int_equal(lora_rope_hf_row(r, 8, 2), want[r]);
    assert_int_equal(lora_rope_hf_row(0, 6, 2), -1); /* head_dim 3 is odd */
    assert_int_equal(lora_rope_hf_row(8, 8, 2), -1);
}


/* GGUF row order of HF rows, built as numpy would: hf rows numbered
 * 0..n-1 viewed as [n_head, 2, hd/2], swapaxes(1, 2) -> [n_head, hd/2, 2],
 * flattened; gguf_to_hf[g] = the HF row that lands at GGUF row g. */
static void permute_like_numpy(int64_t *gguf_to_hf, int n_out, int n_head) {
    int hd = n_out / n_head, half = hd / 2;
    int g = 0;
    for (int h = 0; h < n_head; h++)         /* axis 0 */
        for (int i = 0; i < half; i++)       /* axis 1 after the swap (was axis 2) */
            for (int p = 0; p < 2; p++)      /* axis 2 after the swap (was axis 1) */
                gguf_to_hf[g++] = (int64_t)h * hd + (int64_t)p * half + i;
}

static const char *json_str(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *c = cJSON_Parse(buf);
    assert_non_null(c);
    return c;
}

static void test_peft_export(void **state) {
    (void)state;
    float *wb;
    const char *base = fx_tmp("peft-base.gguf");
    fx_write_base(base, &DIMS, 2, "llama", &wb);
    et_model m = fx_model(&DIMS);
    lora_config c = {.targets = (1u << LORA_T_Q) | (1u << LORA_T_K) | (1u << LORA_T_V) | (1u << LORA_T_UP),
                     .layers = "0,2", .rank = 4, .alpha = 16, .dropout = 0.05f, .seed = 5};
    lora_adapter ad, back;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    fx_randomize_b(&ad, 77, 1.0f);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", fx_tmp("peft"));
    if (lora_adapter_save_peft(&ad, dir, "HuggingFaceTB/SmolLM2-135M", ST_F32, &e)) fail_msg("%s", e.msg);

    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file f;
    if (st_open(&f, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(f.n_tensors, (size_t)(2 * ad.n_tensors));
    const char *hf[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    for (int i = 0; i < ad.n_tensors; i++) {
        const lora_tensor *t = &ad.tensors[i];
        char ka[160], kb[160];
        snprintf(ka, sizeof ka, "base_model.model.model.layers.%d.%s.lora_A.weight", t->layer, hf[t->target]);
        snprintf(kb, sizeof kb, "base_model.model.model.layers.%d.%s.lora_B.weight", t->layer, hf[t->target]);
        const st_tensor *a = st_find(&f, ka), *b = st_find(&f, kb);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(a->dtype, ST_F32);
        assert_int_equal(a->n_dims, 2);
        assert_int_equal(a->shape[0], 4);
        assert_int_equal(a->shape[1], t->n_in);
        assert_int_equal(b->shape[0], t->n_out);
        assert_int_equal(b->shape[1], 4);
        assert_memory_equal(a->data, t->lora_a, a->nbytes);
        const float *bd = b->data; /* F32, 8-byte aligned header: aligned here */
        int64_t perm[64];
        int rope = t->target == LORA_T_Q || t->target == LORA_T_K;
        if (rope) permute_like_numpy(perm, t->n_out, t->target == LORA_T_Q ? DIMS.n_head : DIMS.n_head_kv);
        for (int g = 0; g < t->n_out; g++) {
            int64_t h = rope ? perm[g] : g;
            assert_memory_equal(bd + h * 4, t->lora_b + g * 4, 4 * sizeof(float));
        }
        if (rope) assert_memory_not_equal(b->data, t->lora_b, b->nbytes); /* really permuted */
    }
    assert_string_equal(st_get_meta(&f, "format"), "pt");
    st_close(&f);

    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cJSON *cfg = read_json(path);
    assert_string_equal(json_str(cfg, "peft_type"), "LORA");
    assert_string_equal(json_str(cfg, "task_type"), "CAUSAL_LM");
    assert_string_equal(json_str(cfg, "bias"), "none");
    assert_string_equal(json_str(cfg, "base_model_name_or_path"), "HuggingFaceTB/SmolLM2-135M");
    assert_true(cJSON_GetObjectItemCaseSensitive(cfg, "r")->valuedouble == 4);
    assert_true(cJSON_GetObjectItemCaseSensitive(cfg, "lora_alpha")->valuedouble == 16);
    assert_true(cJSON_GetObjectItemCaseSensitive(cfg, "lora_dropout")->valuedouble == 0.05);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, "use_rslora")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, "use_dora")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, "fan_in_fan_out")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "init_lora_weights")));
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(cfg, "target_modules");
    assert_int_equal(cJSON_GetArraySize(tm), 4);
    const char *want_tm[4] = {"q_proj", "k_proj", "v_proj", "up_proj"};
    for (int k = 0; k < 4; k++) assert_string_equal(cJSON_GetArrayItem(tm, k)->valuestring, want_tm[k]);
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(cfg, "layers_to_transform");
    assert_int_equal(cJSON_GetArraySize(lt), 2);
    assert_int_equal(cJSON_GetArrayItem(lt, 0)->valueint, 0);
    assert_int_equal(cJSON_GetArrayItem(lt, 1)->valueint, 2);
    cJSON_Delete(cfg);

    /* read back against the base: identical to the original */
    gguf_file g;
    assert_int_equal(gguf_open(&g, base, &e), 0);
    if (lora_adapter_load_peft(&back, dir, &g, &e)) fail_msg("%s", e.msg);
    assert_int_equal(back.n_params, ad.n_params);
    assert_memory_equal(back.params, ad.params, ad.n_params * sizeof(float));
    assert_true(back.alpha == 16.0f && back.rank == 4 && back.dropout == 0.05f && !back.use_rslora);
    for (int i = 0; i < ad.n_tensors; i++) {
        assert_string_equal(back.tensors[i].base_name, ad.tensors[i].base_name);
        assert_int_equal(back.tensors[i].n_head_rope, ad.tensors[i].n_head_rope);
    }
    lora_adapter_free(&back);

    /* rsLoRA and F16, every layer: use_rslora true, layers_to_transform null */
    lora_adapter_free(&ad);
    c.layers = NULL;
    c.use_rslora = 1;
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    fx_randomize_b(&ad, 78, 1.0f);
    assert_int_equal(lora_adapter_save_peft(&ad, dir, NULL, ST_F16, &e), 0);
    cfg = read_json(path);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "use_rslora")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cfg, "layers_to_transform")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cfg, "base_model_name_or_path")));
    cJSON_Delete(cfg);
    assert_int_equal(lora_adapter_load_peft(&back, dir, &g, &e), 0);
    assert_int_equal(back.use_rslora, 1);
    for (size_t j = 0; j < ad.n_params; j++)
        assert_true(back.params[j] == et_fp16_to_fp32(et_fp32_to_fp16(ad.params[j])));
    lora_adapter_free(&back);

    /* layers with different targets: target_modules becomes a regex */
    ad.n_tensors = 3; /* layer 0: q, k, v (not up) while others have q, k, v, up */
    ad.targets = (1u << LORA_T_Q) | (1u << LORA_T_K) | (1u << LORA_T_V) | (1u << LORA_T_UP);
    lora_tensor keep = ad.tensors[3];
    ad.tensors[3] = ad.tensors[ad.n_tensors + 4]; /* layer 1 up */
    ad.n_tensors = 4;
    assert_int_equal(lora_adapter_save_peft(&ad, dir, NULL, ST_F32, &e), 0);
    cfg = read_json(path);
    assert_string_equal(json_str(cfg, "target_modules"),
                        "(model\\.layers\\.0\\.self_attn\\.q_proj|model\\.layers\\.0\\.self_attn\\.k_proj|"
                        "model\\.layers\\.0\\.self_attn\\.v_proj|model\\.layers\\.1\\.mlp\\.up_proj)");
    cJSON_Delete(cfg);
    ad.tensors[3] = keep;
    ad.n_tensors = 12;

    /* q/k without a head count cannot be un-permuted */
    ad.tensors[0].n_head_rope = 0;
    assert_int_equal(lora_adapter_save_peft(&ad, dir, NULL, ST_F32, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "blk.0.attn_q.weight"));
    gguf_close(&g);
    lora_adapter_free(&ad);
    free(wb);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_peft_refused(void **state) {
    (void)state;
    float *wb, *wb2;
    const char *base = fx_tmp("pr-base.gguf"), *base2 = fx_tmp("pr-base2.gguf");
    fx_write_base(base, &DIMS, 2, "llama", &wb);
    fx_dims other = DIMS;
    other.n_embd = 20;
    fx_write_base(base2, &other, 2, "llama", &wb2);
    et_model m = fx_model(&DIMS);
    lora_config c = {.rank = 2, .alpha = 4, .seed = 1};
    lora_adapter ad, back;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    char dir[512], cfgp[600];
    snprintf(dir, sizeof dir, "%s", fx_tmp("pr"));
    snprintf(cfgp, sizeof cfgp, "%s/adapter_config.json", dir);
    assert_int_equal(lora_adapter_save_peft(&ad, dir, NULL, ST_F32, &e), 0);
    gguf_file g, g2;
    assert_int_equal(gguf_open(&g, base, &e), 0);
    assert_int_equal(gguf_open(&g2, base2, &e), 0);
    /* another base: the first differing tensor named */
    assert_int_equal(lora_adapter_load_peft(&back, dir, &g2, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.0.attn_q.weight"));
    const char *bad[][2] = {
        {"{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4,\"use_dora\":true}", "'use_dora'"},
        {"{\"peft_type\":\"IA3\",\"r\":2,\"lora_alpha\":4}", "'peft_type'"},
        {"{\"peft_type\":\"LORA\",\"r\":3,\"lora_alpha\":4}", "r = 3"},
        {"{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4,\"bias\":\"all\"}", "'bias'"},
        {"{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4,\"rank_pattern\":{\"q_proj\":8}}", "'rank_pattern'"},
        {"{\"peft_type\":\"LORA\",\"r\":2,\n\"lora_alpha\":}", "line 2"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_text(cfgp, bad[k][0]);
        assert_int_equal(lora_adapter_load_peft(&back, dir, &g, &e), ET_EINPUT);
        if (!strstr(e.msg, bad[k][1])) fail_msg("'%s' lacks '%s'", e.msg, bad[k][1]);
    }
    write_text(cfgp, "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4,\"use_dora\":false}");
    assert_int_equal(lora_adapter_load_peft(&back, dir, &g, &e), 0);
    lora_adapter_free(&back);
    /* an unknown tensor key is named */
    char stp[600];
    snprintf(stp, sizeof stp, "%s/adapter_model.safetensors", dir);
    st_writer *w = st_writer_new();
    float x[8] = {0};
    assert_int_equal(st_writer_add(w, "base_model.model.lm_head.lora_A.weight", ST_F32, 2, (int64_t[]){2, 4}, x, &e), 0);
    assert_int_equal(st_writer_write(w, stp, &e), 0);
    st_writer_free(w);
    assert_int_equal(lora_adapter_load_peft(&back, dir, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "'base_model.model.lm_head.lora_A.weight'"));
    gguf_close(&g);
    gguf_close(&g2);
    lora_adapter_free(&ad);
    free(wb);
    free(wb2);
}

/* Issue 5 §4: the default settings on a SmolLM2-135M-shaped model give an
 * adapter under 5 MB.  Shapes from ../shared/tokenizers/smollm2-135m/config.json
 * (hidden 576, 9 heads, 3 kv heads, head_dim 64, ffn 1536, 30 layers). */
static void test_smollm2_size(void **state) {
    (void)state;
    const fx_dims d = {30, 576, 9, 3, 64, 1536, 49152};
    et_model m = fx_model(&d);
    lora_config c = {.rank = 8, .alpha = 16, .seed = 1}; /* defaults: q, v */
    lora_adapter ad;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    /* q: 8*(576+576), v: 8*(576+192) per layer */
    assert_int_equal(ad.n_params, (size_t)30 * (8 * (576 + 576) + 8 * (576 + 192)));
    uint64_t f32 = lora_adapter_gguf_bytes(&ad, GGML_TYPE_F32), f16 = lora_adapter_gguf_bytes(&ad, GGML_TYPE_F16);
    assert_true(f32 < 5000000);
    assert_true(f16 < f32 / 2 + 20000);
    /* tensor data dominates: header + names are a few KB */
    assert_true(f32 - 4 * ad.n_params < 16384);
    print_message("SmolLM2-135M q,v r8: %zu params, GGUF F32 %llu bytes, F16 %llu bytes\n", ad.n_params,
                  (unsigned long long)f32, (unsigned long long)f16);
    lora_adapter_free(&ad);
    c.targets = LORA_ALL_LINEAR;
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    print_message("SmolLM2-135M all-linear r8: %zu params, GGUF F32 %llu bytes, F16 %llu bytes\n", ad.n_params,
                  (unsigned long long)lora_adapter_gguf_bytes(&ad, GGML_TYPE_F32),
                  (unsigned long long)lora_adapter_gguf_bytes(&ad, GGML_TYPE_F16));
    lora_adapter_free(&ad);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_targets),
        cmocka_unit_test(test_create_shapes_block_init),
        cmocka_unit_test(test_gguf_round_trip),
        cmocka_unit_test(test_check_against_base),
        cmocka_unit_test(test_hostile_adapters),
        cmocka_unit_test(test_rope_rows),
        cmocka_unit_test(test_peft_export),
        cmocka_unit_test(test_peft_refused),
        cmocka_unit_test(test_smollm2_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
