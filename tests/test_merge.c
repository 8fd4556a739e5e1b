/* tests/test_merge.c — folding LoRA adapters into a base GGUF (lora/merge.h).
 *
 * - two adapters (one rsLoRA) with user scales merged into a small synthetic
 *   F32 model equal an independent W + sum s*k*B@A computed in double
 *   (max abs diff < 1e-5); every other tensor and every KV is byte-identical;
 * - the same on the real stories260K with a random all-linear adapter;
 * - --type Q8_0: the adapted tensor is exactly ggml's Q8_0 of the F32 merge;
 *   keeping the types of a Q8_0 base re-quantizes the adapted tensor to Q8_0;
 * - an adapter for another base is refused naming the adapter file and the
 *   tensor, and no output file appears. */
#include "testutil.h"

#include <math.h>

#include "../export/gguf.h"
#include "../lora/adapter.h"
#include "../lora/merge.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"
#include "lora_fixtures.h"

static const fx_dims DIMS = {2, 16, 4, 2, 4, 24, 32};

static char *name_of(const gguf_tensor *t, char buf[GGUF_MAX_NAME]) {
    memcpy(buf, t->name.ptr, (size_t)t->name.len);
    buf[t->name.len] = 0;
    return buf;
}

static float *tensor_f32(const gguf_tensor *t) {
    size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    assert_int_equal(et_dequantize_row(t->type, t->data, x, (int64_t)n), 0);
    return x;
}

/* Check out = base + sum_k s_k * k_k * B_k @ A_k (double), other tensors and KVs identical. */
static void check_merged(const char *base_path, const char *out_path, lora_adapter *ads, const float *scales,
                         int n_ads, double tol) {
    gguf_file b, o;
    et_err e = {0};
    assert_int_equal(gguf_open(&b, base_path, &e), 0);
    assert_int_equal(gguf_open(&o, out_path, &e), 0);
    assert_int_equal(b.n_kv, o.n_kv);
    for (uint64_t i = 0; i < b.n_kv; i++) {
        assert_int_equal(b.kv[i].key.len, o.kv[i].key.len);
        assert_memory_equal(b.kv[i].key.ptr, o.kv[i].key.ptr, b.kv[i].key.len);
        assert_int_equal(b.kv[i].raw_len, o.kv[i].raw_len);
        assert_memory_equal(b.kv[i].raw, o.kv[i].raw, b.kv[i].raw_len);
    }
    assert_int_equal(b.n_tensors, o.n_tensors);
    int adapted = 0;
    double worst = 0;
    for (uint64_t i = 0; i < b.n_tensors; i++) {
        const gguf_tensor *bt = &b.tensors[i], *ot = &o.tensors[i];
        char nb[GGUF_MAX_NAME], no[GGUF_MAX_NAME];
        assert_string_equal(name_of(bt, nb), name_of(ot, no));
        assert_int_equal(bt->type, ot->type);
        assert_memory_equal(bt->ne, ot->ne, sizeof bt->ne);
        int hit = 0;
        for (int k = 0; k < n_ads; k++) hit |= lora_adapter_find(&ads[k], nb) != NULL;
        if (!hit) {
            assert_memory_equal(bt->data, ot->data, bt->nbytes);
            continue;
        }
        adapted++;
        const int64_t n_in = bt->ne[0], n_out = bt->ne[1];
        float *w = tensor_f32(bt), *got = tensor_f32(ot);
        for (int64_t r = 0; r < n_out; r++)
            for (int64_t c = 0; c < n_in; c++) {
                double want = w[r * n_in + c];
                for (int k = 0; k < n_ads; k++) {
                    const lora_tensor *t = lora_adapter_find(&ads[k], nb);
                    if (!t) continue;
                    double kk = ads[k].use_rslora ? ads[k].alpha / sqrt((double)t->rank) : ads[k].alpha / (double)t->rank;
                    double d = 0;
                    for (int j = 0; j < t->rank; j++)
                        d += (double)t->lora_b[r * t->rank + j] * (double)t->lora_a[(size_t)j * (size_t)n_in + (size_t)c];
                    want += (double)scales[k] * kk * d;
                }
                double diff = fabs(want - got[r * n_in + c]);
                if (diff > worst) worst = diff;
            }
        free(w);
        free(got);
    }
    if (worst >= tol) fail_msg("max abs diff %g >= %g", worst, tol);
    assert_true(adapted > 0);
    gguf_close(&b);
    gguf_close(&o);
}

static void test_merge_synthetic(void **state) {
    (void)state;
    float *wb;
    const char *base = fx_tmp("base.gguf");
    fx_write_base(base, &DIMS, 5, "llama", &wb);
    et_model m = fx_model(&DIMS);
    et_err e = {0};
    lora_adapter ads[2];
    lora_config c1 = {.targets = (1u << LORA_T_Q) | (1u << LORA_T_V) | (1u << LORA_T_DOWN), .rank = 4, .alpha = 8,
                      .seed = 1};
    lora_config c2 = {.targets = LORA_ALL_LINEAR, .layers = "1", .rank = 2, .alpha = 3, .use_rslora = 1, .seed = 2};
    assert_int_equal(lora_adapter_create(&ads[0], &m, &c1, &e), 0);
    assert_int_equal(lora_adapter_create(&ads[1], &m, &c2, &e), 0);
    fx_randomize_b(&ads[0], 21, 0.5f);
    fx_randomize_b(&ads[1], 22, 0.5f);
    const char *a1 = fx_tmp("a1.gguf"), *a2 = fx_tmp("a2.gguf"), *out = fx_tmp("merged.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ads[0], a1, GGML_TYPE_F32, &e), 0);
    assert_int_equal(lora_adapter_save_gguf(&ads[1], a2, GGML_TYPE_F32, &e), 0);
    const float scales[2] = {0.7f, -1.5f};
    lora_merge_adapter in[2] = {{a1, scales[0]}, {a2, scales[1]}};
    lora_merge_stats st;
    if (lora_merge(base, in, 2, out, -1, &st, &e)) fail_msg("%s", e.msg);
    /* adapted: q,v,down of both layers (6) + o,k,gate,up of layer 1 (4) */
    assert_int_equal(st.n_adapted, 10);
    assert_int_equal(st.n_pairs, 6 + 7);
    assert_true(st.file_bytes_out > 0);
    check_merged(base, out, ads, scales, 2, 1e-5);

    /* a scale of 0 leaves the model unchanged (bit for bit) */
    lora_merge_adapter zero = {a1, 0.0f};
    assert_int_equal(lora_merge(base, &zero, 1, out, -1, NULL, &e), 0);
    gguf_file b, o;
    assert_int_equal(gguf_open(&b, base, &e), 0);
    assert_int_equal(gguf_open(&o, out, &e), 0);
    for (uint64_t i = 0; i < b.n_tensors; i++) assert_memory_equal(b.tensors[i].data, o.tensors[i].data, b.tensors[i].nbytes);
    gguf_close(&b);
    gguf_close(&o);
    lora_adapter_free(&ads[0]);
    lora_adapter_free(&ads[1]);
    free(wb);
}

static void test_merge_stories260k(void **state) {
    (void)state;
    SHARED_OR_SKIP(base, "models/stories260K/stories260K.gguf");
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, base, &e), 0);
    lora_config c = {.targets = LORA_ALL_LINEAR, .rank = 4, .alpha = 8, .seed = 9};
    lora_adapter ad;
    if (lora_adapter_create_gguf(&ad, &g, &c, &e)) fail_msg("%s", e.msg);
    gguf_close(&g);
    assert_int_equal(ad.n_tensors, 5 * 7);
    assert_int_equal(ad.tensors[0].n_head_rope, 8);
    assert_int_equal(ad.tensors[1].n_head_rope, 4);
    fx_randomize_b(&ad, 33, 0.1f);
    const char *a = fx_tmp("s260.gguf"), *out = fx_tmp("s260-merged.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ad, a, GGML_TYPE_F32, &e), 0);
    lora_merge_adapter in = {a, 1.0f};
    lora_merge_stats st;
    if (lora_merge(base, &in, 1, out, -1, &st, &e)) fail_msg("%s", e.msg);
    assert_int_equal(st.n_adapted, 35);
    float one = 1.0f;
    check_merged(base, out, &ad, &one, 1, 1e-5);
    lora_adapter_free(&ad);
}

static void test_merge_quantized(void **state) {
    (void)state;
    /* dims divisible by 32 so every weight can be Q8_0 */
    const fx_dims d = {2, 64, 2, 1, 32, 96, 64};
    float *wb;
    const char *base = fx_tmp("qbase.gguf");
    fx_write_base(base, &d, 7, "llama", &wb);
    et_model m = fx_model(&d);
    lora_config c = {.targets = (1u << LORA_T_Q) | (1u << LORA_T_DOWN), .rank = 8, .alpha = 16, .seed = 4};
    lora_adapter ad;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m, &c, &e), 0);
    fx_randomize_b(&ad, 5, 0.2f);
    const char *a = fx_tmp("qa.gguf"), *f32 = fx_tmp("q-f32.gguf"), *q8 = fx_tmp("q-q8.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ad, a, GGML_TYPE_F16, &e), 0);
    lora_merge_adapter in = {a, 1.0f};
    if (lora_merge(base, &in, 1, f32, -1, NULL, &e)) fail_msg("%s", e.msg);
    if (lora_merge(base, &in, 1, q8, ET_FTYPE_MOSTLY_Q8_0, NULL, &e)) fail_msg("%s", e.msg);
    gguf_file gf, gq;
    assert_int_equal(gguf_open(&gf, f32, &e), 0);
    assert_int_equal(gguf_open(&gq, q8, &e), 0);
    uint32_t ft;
    assert_int_equal(gguf_get_u32(&gq, "general.file_type", &ft, &e), 0);
    assert_int_equal(ft, ET_FTYPE_MOSTLY_Q8_0);
    const char *names[2] = {"blk.0.attn_q.weight", "blk.1.ffn_down.weight"};
    for (int k = 0; k < 2; k++) {
        const gguf_tensor *tf = gguf_find_tensor(&gf, names[k]), *tq = gguf_find_tensor(&gq, names[k]);
        assert_non_null(tf);
        assert_non_null(tq);
        assert_int_equal(tf->type, GGML_TYPE_F32);
        assert_int_equal(tq->type, GGML_TYPE_Q8_0);
        size_t n = (size_t)tf->ne[0] * (size_t)tf->ne[1];
        float *x = tensor_f32(tf);
        uint8_t *want = malloc(et_quant_row_bytes(GGML_TYPE_Q8_0, (int64_t)n));
        et_quantize_row_q8_0(x, want, (int64_t)n);
        assert_memory_equal(want, tq->data, tq->nbytes);
        free(want);
        free(x);
    }
    gguf_close(&gf);
    gguf_close(&gq);

    /* keep the types of a Q8_0 base: the adapted tensor is re-quantized to Q8_0 */
    const char *qbase = fx_tmp("qbase-q8.gguf"), *qout = fx_tmp("qbase-q8-merged.gguf");
    et_quant_params qp = {.ftype = ET_FTYPE_MOSTLY_Q8_0};
    assert_int_equal(et_quantize_model(base, qbase, &qp, NULL, &e), 0);
    lora_merge_adapter in16 = {a, 0.5f};
    if (lora_merge(qbase, &in16, 1, qout, -1, NULL, &e)) fail_msg("%s", e.msg);
    lora_adapter back;
    assert_int_equal(lora_adapter_load_gguf(&back, a, &e), 0); /* the F16-rounded adapter */
    assert_int_equal(gguf_open(&gf, qbase, &e), 0);
    assert_int_equal(gguf_open(&gq, qout, &e), 0);
    for (int k = 0; k < 2; k++) {
        const gguf_tensor *tb = gguf_find_tensor(&gf, names[k]), *to = gguf_find_tensor(&gq, names[k]);
        assert_int_equal(to->type, GGML_TYPE_Q8_0);
        float *x = tensor_f32(tb);
        const lora_tensor *t = lora_adapter_find(&back, names[k]);
        assert_int_equal(lora_merge_f32(x, t, 0.5f * lora_tensor_scale(&back, t)), 0);
        size_t n = (size_t)tb->ne[0] * (size_t)tb->ne[1];
        uint8_t *want = malloc(et_quant_row_bytes(GGML_TYPE_Q8_0, (int64_t)n));
        et_quantize_row_q8_0(x, want, (int64_t)n);
        assert_memory_equal(want, to->data, to->nbytes);
        assert_memory_not_equal(tb->data, to->data, to->nbytes);
        free(want);
        free(x);
    }
    gguf_close(&gf);
    gguf_close(&gq);
    lora_adapter_free(&back);
    lora_adapter_free(&ad);
    free(wb);
}

static void test_merge_refuses_mismatch(void **state) {
    (void)state;
    float *w1, *w2;
    fx_dims other = DIMS;
    other.n_ff = 20;
    const char *base = fx_tmp("mm-base.gguf"), *base2 = fx_tmp("mm-base2.gguf");
    fx_write_base(base, &DIMS, 1, "llama", &w1);
    fx_write_base(base2, &other, 1, "llama", &w2);
    et_model m2 = fx_model(&other);
    lora_config c = {.targets = (1u << LORA_T_V) | (1u << LORA_T_UP), .rank = 2, .alpha = 2, .seed = 1};
    lora_adapter ad;
    et_err e = {0};
    assert_int_equal(lora_adapter_create(&ad, &m2, &c, &e), 0);
    const char *a = fx_tmp("mm-a.gguf"), *out = fx_tmp("mm-out.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ad, a, GGML_TYPE_F32, &e), 0);
    lora_merge_adapter in = {a, 1.0f};
    assert_int_equal(lora_merge(base, &in, 1, out, -1, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "mm-a.gguf"));
    assert_non_null(strstr(e.msg, "'blk.0.ffn_up.weight.lora_a'"));
    assert_int_equal(access(out, F_OK), -1);
    /* it fits its own base */
    assert_int_equal(lora_merge(base2, &in, 1, out, -1, NULL, &e), 0);
    /* a second, good adapter does not rescue a bad one, and the old output stays */
    lora_adapter ad1;
    et_model m = fx_model(&DIMS);
    assert_int_equal(lora_adapter_create(&ad1, &m, &c, &e), 0);
    const char *a1 = fx_tmp("mm-a1.gguf");
    assert_int_equal(lora_adapter_save_gguf(&ad1, a1, GGML_TYPE_F32, &e), 0);
    lora_merge_adapter two[2] = {{a1, 1.0f}, {a, 1.0f}};
    assert_int_equal(lora_merge(base, two, 2, out, -1, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "mm-a.gguf"));
    gguf_file g;
    assert_int_equal(gguf_open(&g, out, &e), 0); /* still the earlier merge onto base2 */
    assert_int_equal(gguf_find_tensor(&g, "blk.0.ffn_up.weight")->ne[1], 20);
    gguf_close(&g);
    /* not an adapter at all */
    lora_merge_adapter notad = {base, 1.0f};
    assert_int_equal(lora_merge(base, &notad, 1, fx_tmp("x.gguf"), -1, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "general.type"));
    lora_adapter_free(&ad);
    lora_adapter_free(&ad1);
    free(w1);
    free(w2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_synthetic),
        cmocka_unit_test(test_merge_stories260k),
        cmocka_unit_test(test_merge_quantized),
        cmocka_unit_test(test_merge_refuses_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
