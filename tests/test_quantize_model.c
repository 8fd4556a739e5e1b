/* tests/test_quantize_model.c — whole-model quantization (quant/quantize_model.h).
 *
 * - rand-llama-256.gguf quantized to F16, Q8_0, Q4_0, Q4_K_M, Q6_K gives,
 *   tensor by tensor and KV by KV, exactly what llama-quantize wrote
 *   (../shared/golden/quant/rand-llama-256-<TYPE>.gguf), and the whole file
 *   is byte-identical; for Q4_1 and Q5_1, which have no file in ../shared,
 *   the whole file's sha256 equals that of llama-quantize's (recorded
 *   below), the tensor types are the policy's, and every tensor
 *   requantizes to itself (dequantize -> quantize is a fixed point); so do
 *   the K-quant mixes Q5_K_S/M, Q3_K_S/M/L and Q2_K, with every tensor's
 *   type as llama-quantize's log printed it; stories260K through the six
 *   mixes (IQ4_NL, Q5_0, Q5_1, Q8_0 and F16 fallbacks) gives llama-quantize's
 *   files' sha256;
 * - stories260K (n_embd 64, n_ff 172) quantizes with the documented
 *   fallbacks, and every tensor of the result loads back and dequantizes
 *   close to the F32 original;
 * - the type policy on a 32-layer model against llama.cpp's Q4_K_M layer
 *   picks and the other K-quant mixes' (written out from llama-quant.cpp),
 *   the row-length fallbacks, tensor order, KV handling, and bad inputs. */
#include "testutil.h"

#include <math.h>

#include "../eval/eval.h"
#include "../export/gguf.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"

static const char *tmp_path(const char *name) {
    static char bufs[4][512];
    static int k = 0;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static char *tensor_name(const gguf_tensor *t, char buf[GGUF_MAX_NAME]) {
    memcpy(buf, t->name.ptr, (size_t)t->name.len);
    buf[t->name.len] = 0;
    return buf;
}

static char *kv_key(const gguf_kv *kv, char *buf, size_t cap) {
    size_t n = kv->key.len < cap - 1 ? (size_t)kv->key.len : cap - 1;
    memcpy(buf, kv->key.ptr, n);
    buf[n] = 0;
    return buf;
}

/* ------------------------------------------------ golden: llama-quantize */

static void check_model_golden(const char *type) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/quant/rand-llama-256-%s.gguf", type);
    SHARED_OR_SKIP(src, "golden/quant/rand-llama-256.gguf");
    SHARED_OR_SKIP(ref, rel);
    const char *out = tmp_path("golden-out.gguf");
    et_quant_params p = {et_ftype_from_name(type), 0, NULL, NULL};
    et_quant_stats st;
    et_err e = {0};
    if (et_quantize_model(src, out, &p, &st, &e)) fail_msg("%s: %s", type, e.msg);

    gguf_file a, b;
    assert_int_equal(gguf_open(&a, out, &e), 0);
    assert_int_equal(gguf_open(&b, ref, &e), 0);
    /* KVs: same keys in the same order, same types, same bytes */
    assert_int_equal(a.n_kv, b.n_kv);
    for (uint64_t i = 0; i < a.n_kv; i++) {
        char ka[128], kb[128];
        kv_key(&a.kv[i], ka, sizeof ka);
        kv_key(&b.kv[i], kb, sizeof kb);
        if (strcmp(ka, kb)) fail_msg("%s: KV %llu is '%s', llama-quantize wrote '%s'", type, (unsigned long long)i, ka, kb);
        if (a.kv[i].type != b.kv[i].type || a.kv[i].raw_len != b.kv[i].raw_len ||
            memcmp(a.kv[i].raw, b.kv[i].raw, (size_t)a.kv[i].raw_len))
            fail_msg("%s: KV '%s' differs from llama-quantize's", type, ka);
    }
    /* tensors: same order, names, types, shapes, bytes */
    assert_int_equal(a.n_tensors, b.n_tensors);
    for (uint64_t i = 0; i < a.n_tensors; i++) {
        char na[GGUF_MAX_NAME], nb[GGUF_MAX_NAME];
        const gguf_tensor *ta = &a.tensors[i], *tb = &b.tensors[i];
        tensor_name(ta, na);
        tensor_name(tb, nb);
        if (strcmp(na, nb)) fail_msg("%s: tensor %llu is '%s', llama-quantize wrote '%s'", type, (unsigned long long)i, na, nb);
        if (ta->type != tb->type)
            fail_msg("%s: tensor %s is %s, llama-quantize chose %s", type, na, ggml_type_name(ta->type),
                     ggml_type_name(tb->type));
        assert_int_equal(ta->n_dims, tb->n_dims);
        for (int d = 0; d < GGUF_MAX_DIMS; d++) assert_int_equal(ta->ne[d], tb->ne[d]);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, (size_t)ta->nbytes)) {
            uint64_t k = 0;
            const uint8_t *x = ta->data, *y = tb->data;
            while (x[k] == y[k]) k++;
            uint64_t be, bb;
            ggml_type_block(ta->type, &be, &bb);
            fail_msg("%s: tensor %s (%s): byte %llu differs (block %llu)", type, na, ggml_type_name(ta->type),
                     (unsigned long long)k, (unsigned long long)(k / bb));
        }
    }
    /* and the whole file */
    assert_int_equal(a.map.size, b.map.size);
    if (memcmp(a.map.data, b.map.data, a.map.size)) {
        size_t k = 0;
        while (a.map.data[k] == b.map.data[k]) k++;
        fail_msg("%s: files differ first at byte %zu", type, k);
    }
    assert_int_equal(st.file_bytes_out, b.map.size);
    assert_int_equal(st.n_fallback, 0);
    gguf_close(&a);
    gguf_close(&b);
}

static void test_golden_f16(void **state) { (void)state; check_model_golden("F16"); }
static void test_golden_q8_0(void **state) { (void)state; check_model_golden("Q8_0"); }
static void test_golden_q4_0(void **state) { (void)state; check_model_golden("Q4_0"); }
static void test_golden_q4_k_m(void **state) { (void)state; check_model_golden("Q4_K_M"); }
static void test_golden_q6_k(void **state) { (void)state; check_model_golden("Q6_K"); }

/* sha256 of the files llama.cpp c392e509's llama-quantize writes from
 * ../shared/golden/quant/rand-llama-256.gguf (F32):
 *   llama-quantize rand-llama-256.gguf out.gguf Q4_1   (and Q5_1)
 * edgetune's files were byte-identical when recorded (cmp); the files
 * themselves are not kept (../shared has none, the project keeps no data). */
static void check_model_sha(const char *type, const char *want_sha) {
    SHARED_OR_SKIP(src, "golden/quant/rand-llama-256.gguf");
    const char *out = tmp_path("sha-out.gguf");
    et_quant_params p = {et_ftype_from_name(type), 0, NULL, NULL};
    et_quant_stats st;
    et_err e = {0};
    if (et_quantize_model(src, out, &p, &st, &e)) fail_msg("%s: %s", type, e.msg);
    assert_int_equal(st.n_fallback, 0);
    const uint32_t base = et_ftype_base_type(p.ftype);
    gguf_file g;
    assert_int_equal(gguf_open(&g, out, &e), 0);
    int n_base = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        char name[GGUF_MAX_NAME];
        tensor_name(t, name);
        /* the policy: 2-D weights -> the base type, output.weight (256
         * wide) -> Q6_K, 1-D norms stay F32 */
        uint32_t want = t->ne[1] == 1 ? GGML_TYPE_F32 : !strcmp(name, "output.weight") ? GGML_TYPE_Q6_K : base;
        if (t->type != want)
            fail_msg("%s: tensor %s is %s, expected %s", type, name, ggml_type_name(t->type), ggml_type_name(want));
        if (t->type != base) continue;
        n_base++;
        /* a fixed point: dequantize, quantize again, same bytes */
        int64_t nel = t->ne[0] * t->ne[1];
        float *f = malloc(sizeof(float) * (size_t)nel);
        uint8_t *q = malloc((size_t)t->nbytes);
        assert_int_equal(et_dequantize_row(t->type, t->data, f, nel), 0);
        assert_int_equal(et_quantize_row(t->type, f, q, nel), 0);
        if (memcmp(q, t->data, (size_t)t->nbytes)) fail_msg("%s: tensor %s does not requantize to itself", type, name);
        free(f);
        free(q);
    }
    assert_true(n_base >= 14);
    gguf_close(&g);
    char hex[65];
    assert_int_equal(et_file_sha256(out, hex, NULL, &e), 0);
    if (strcmp(hex, want_sha)) fail_msg("%s: sha256 %s, llama-quantize's file has %s", type, hex, want_sha);
}

static void test_golden_q4_1(void **state) {
    (void)state;
    check_model_sha("Q4_1", "4f8ef2837d516fc88143eea1ee84ccd2e1ca5c084f0d9902d9e07ad558188d66");
}
static void test_golden_q5_1(void **state) {
    (void)state;
    check_model_sha("Q5_1", "ffc6cf495c7f02f6ee7c566b38cd59d6330f472c0fb405d1a132b82b0b3c07e9");
}
/* A K-quant mix: the whole file's sha256 is llama-quantize's, and the
 * tensors carry the types `types` lists (in output order, F32 norms
 * skipped), e.g. Q3_K_M's Q5_K/Q4_K attn_v and ffn_down. */
static void check_mix_sha(const char *type, const char *want_sha, const char *types) {
    SHARED_OR_SKIP(src, "golden/quant/rand-llama-256.gguf");
    const char *out = tmp_path("mix-out.gguf");
    et_quant_params p = {et_ftype_from_name(type), 0, NULL, NULL};
    et_quant_stats st;
    et_err e = {0};
    if (et_quantize_model(src, out, &p, &st, &e)) fail_msg("%s: %s", type, e.msg);
    assert_int_equal(st.n_fallback, 0);
    gguf_file g;
    assert_int_equal(gguf_open(&g, out, &e), 0);
    char got[512] = "";
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        if (g.tensors[i].type == GGML_TYPE_F32) continue;
        size_t n = strlen(got);
        snprintf(got + n, sizeof got - n, "%s%s", n ? " " : "", ggml_type_name(g.tensors[i].type));
    }
    gguf_close(&g);
    if (strcmp(got, types)) fail_msg("%s: tensor types\n  %s\nexpected\n  %s", type, got, types);
    char hex[65];
    assert_int_equal(et_file_sha256(out, hex, NULL, &e), 0);
    if (strcmp(hex, want_sha)) fail_msg("%s: sha256 %s, llama-quantize's file has %s", type, hex, want_sha);
}

/* stories260K (n_embd 64, n_ff 172) through a K-quant mix: every fallback
 * of llama.cpp's chain at once (Q3_K -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1,
 * output -> Q8_0, 172-wide rows -> F16); the whole file's sha256 is
 * llama-quantize's (c392e509: llama-quantize stories260K.gguf out.gguf Q3_K_M). */
static void check_stories_sha(const char *type, const char *want_sha) {
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    const char *out = tmp_path("stories-mix.gguf");
    et_quant_params p = {et_ftype_from_name(type), 0, NULL, NULL};
    et_err e = {0};
    if (et_quantize_model(src, out, &p, NULL, &e)) fail_msg("%s: %s", type, e.msg);
    char hex[65];
    assert_int_equal(et_file_sha256(out, hex, NULL, &e), 0);
    if (strcmp(hex, want_sha)) fail_msg("stories260K %s: sha256 %s, llama-quantize's file has %s", type, hex, want_sha);
}

static void test_stories260K_k_mixes(void **state) {
    (void)state;
    check_stories_sha("Q3_K_M", "f3814735f08781006cc032d9c1a2d94b63f4fc3e113052a8b19f1a24506570f0");
    check_stories_sha("Q3_K_S", "69ee8bab5840a3166749017fa4bc4ecfb441941cfd5fd8042c92874a658b8ad4");
    check_stories_sha("Q3_K_L", "f0d86cfc324b819cc70bae4b80166ec6ff0b284218d5ffcbd7f8e3eba1633ce2");
    check_stories_sha("Q2_K", "cde7e9520495a6f8ae3f3a8bda69982b9c6fa159fc29ef93a9d092d6b365658e");
    check_stories_sha("Q5_K_S", "66ed769a4df768d67b88ea4395e9dab273b717de9f64980b9cd5cfe832108b6f");
    check_stories_sha("Q5_K_M", "017253a152346d29609472739647c6c1136557abaad67c24e6966fccd07eafda");
}

/* the K-quant mixes: sha256 of llama-quantize rand-llama-256.gguf out.gguf Q5_K_S (etc.), c392e509 */
static void test_golden_k_mixes(void **state) {
    (void)state;
    check_mix_sha("Q5_K_S", "928dc28e829ae9acf13f2e6992d980e1b0f9d1cc8cd061b1039a538ef70f232a",
                  "Q6_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K");
    check_mix_sha("Q5_K_M", "b483b4a7b519a6a5d962d104e8220935502d5d4f9a61333d040420ffcd9f3c79",
                  "Q6_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q5_K Q6_K Q6_K Q5_K Q5_K");
    check_mix_sha("Q3_K_S", "ee24aa04fd2fb0b6726da96fdc8b2976f02d690a666a27fbce1b38d71cb12450",
                  "Q6_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K Q3_K");
    check_mix_sha("Q3_K_M", "982f4b950bf5da859bfb0bd161e16098bfea170f4970bdd06ccc4e80654bc4a9",
                  "Q6_K Q3_K Q3_K Q4_K Q3_K Q5_K Q4_K Q3_K Q3_K Q3_K Q4_K Q3_K Q5_K Q4_K Q3_K Q3_K");
    check_mix_sha("Q3_K_L", "25f0186169953b191a8119aa0a4cb1709814c7fa3d495bd45335885c8e838cb0",
                  "Q6_K Q3_K Q3_K Q5_K Q3_K Q5_K Q5_K Q3_K Q3_K Q3_K Q5_K Q3_K Q5_K Q5_K Q3_K Q3_K");
    check_mix_sha("Q2_K", "762c7f6d03c960d6c0794e027c11aef3e3417be2f90d72ea7e1774abc5d9afb1",
                  "Q6_K Q2_K Q2_K Q3_K Q2_K Q3_K Q3_K Q2_K Q2_K Q2_K Q3_K Q2_K Q3_K Q3_K Q2_K Q2_K");
}

/* ------------------------------------------- stories260K: fallbacks */

typedef struct seen {
    int n, n_fallback, n_msg;
} seen;

static void count_cb(const et_quant_tensor *t, void *ctx) {
    seen *s = ctx;
    s->n++;
    s->n_fallback += t->fallback;
    if (t->fallback) {
        assert_non_null(t->message);
        assert_non_null(strstr(t->message, "row length"));
        s->n_msg++;
    } else {
        assert_null(t->message);
    }
    assert_int_equal(t->fallback, t->type_out != t->type_want);
}

/* The type stories260K's tensor gets: worked out by hand from the rules
 * (n_embd 64: rows of 64 fit 32 but not 256; ffn_down rows of 172 fit neither). */
static uint32_t stories_expected(const char *type, const char *name) {
    int is2d = !strstr(name, "_norm");
    int is_down = strstr(name, "ffn_down") != NULL;
    if (!is2d) return GGML_TYPE_F32;
    if (!strcmp(type, "F16")) return GGML_TYPE_F16;
    if (is_down) return GGML_TYPE_F16;  /* 172: no 32- or 256-block type fits */
    if (!strcmp(type, "Q8_0")) return GGML_TYPE_Q8_0;
    if (!strcmp(type, "Q6_K")) return GGML_TYPE_Q8_0;  /* Q6_K -> Q8_0 */
    if (!strcmp(name, "output.weight")) return GGML_TYPE_Q8_0; /* output rule: Q6_K -> Q8_0 */
    if (!strcmp(type, "Q4_0")) return GGML_TYPE_Q4_0;
    /* Q4_K_M: Q4_K -> Q5_0, except attn_v of layers 2 and 4 (use_more_bits
     * with 5 layers: i >= 7*5/8 = 4, or i % 3 == 2), wanted Q6_K -> Q8_0 */
    if (!strcmp(name, "blk.2.attn_v.weight") || !strcmp(name, "blk.4.attn_v.weight")) return GGML_TYPE_Q8_0;
    return GGML_TYPE_Q5_0;
}

static void test_stories260K_fallbacks(void **state) {
    (void)state;
    SHARED_OR_SKIP(src, "models/stories260K/stories260K.gguf");
    const char *types[] = {"F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K"};
    const int want_fallbacks[] = {0, 5, 6, 37, 37};
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, src, &e), 0);
    for (int k = 0; k < 5; k++) {
        const char *out = tmp_path("stories-q.gguf");
        seen s = {0, 0, 0};
        et_quant_params p = {et_ftype_from_name(types[k]), 0, count_cb, &s};
        et_quant_stats st;
        if (et_quantize_model(src, out, &p, &st, &e)) fail_msg("%s: %s", types[k], e.msg);
        assert_int_equal(s.n, 48);
        if (s.n_fallback != want_fallbacks[k])
            fail_msg("%s: %d fallbacks, expected %d", types[k], s.n_fallback, want_fallbacks[k]);
        assert_int_equal(st.n_fallback, (uint64_t)s.n_fallback);
        gguf_file q;
        assert_int_equal(gguf_open(&q, out, &e), 0);
        assert_int_equal(q.n_tensors, g.n_tensors);
        uint32_t ft;
        assert_int_equal(gguf_get_u32(&q, "general.file_type", &ft, &e), 0);
        assert_int_equal(ft, (uint32_t)et_ftype_from_name(types[k]));
        for (uint64_t i = 0; i < q.n_tensors; i++) {
            char name[GGUF_MAX_NAME];
            const gguf_tensor *t = &q.tensors[i];
            tensor_name(t, name);
            uint32_t want = stories_expected(types[k], name);
            if (t->type != want)
                fail_msg("%s: %s is %s, expected %s", types[k], name, ggml_type_name(t->type), ggml_type_name(want));
            const gguf_tensor *o = gguf_find_tensor(&g, name);
            assert_non_null(o);
            int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
            float *y = malloc((size_t)nel * sizeof(float));
            assert_non_null(y);
            assert_int_equal(et_dequantize_row(t->type, t->data, y, nel), 0);
            const float *x = o->data;
            /* per row: max error <= tol * max |x| of the row; a 4-bit block's
             * worst case is one step, max|x| / 8 (the value opposite the signed
             * max is clamped from +8 to +7); 5-bit: / 16 */
            double tol = t->type == GGML_TYPE_F32 ? 0 : t->type == GGML_TYPE_F16 ? 1e-3
                       : t->type == GGML_TYPE_Q8_0 ? 0.01 : t->type == GGML_TYPE_Q5_0 ? 0.07 : 0.13;
            for (int64_t r = 0; r < nel / t->ne[0]; r++) {
                double amax = 0, emax = 0;
                for (int64_t j = r * t->ne[0]; j < (r + 1) * t->ne[0]; j++) {
                    assert_true(isfinite(y[j]));
                    amax = fmax(amax, fabs(x[j]));
                    emax = fmax(emax, fabs((double)y[j] - x[j]));
                }
                if (emax > tol * amax)
                    fail_msg("%s: %s row %lld: error %g > %g * %g", types[k], name, (long long)r, emax, tol, amax);
            }
            free(y);
        }
        gguf_close(&q);
    }
    gguf_close(&g);
}

/* ------------------------------------------------ the policy alone */

static void test_policy_q4_k_m_32_layers(void **state) {
    (void)state;
    /* llama.cpp Q4_K_M on a 32-layer model: attn_v and ffn_down in Q6_K for
     * layers 0-3, 28-31 and 6, 9, ..., 27 ((i - 4) % 3 == 2) */
    static const int more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    et_quant_policy qp = {0};
    qp.ftype = ET_FTYPE_MOSTLY_Q4_K_M;
    qp.base_type = GGML_TYPE_Q4_K;
    qp.n_layer = 32;
    qp.n_attention_wv = 32;
    qp.has_output = 1;
    for (int i = 0; i < 32; i++) {
        int m = 0;
        for (size_t j = 0; j < sizeof more / sizeof more[0]; j++) m |= more[j] == i;
        char name[64];
        uint32_t want;
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", i);
        assert_int_equal(et_quant_choose(&qp, name, 4096, &want, NULL, 0), m ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", i);
        assert_int_equal(et_quant_choose(&qp, name, 11008, &want, NULL, 0), m ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", i);
        assert_int_equal(et_quant_choose(&qp, name, 4096, &want, NULL, 0), GGML_TYPE_Q4_K);
    }
    uint32_t want;
    char msg[200];
    assert_int_equal(et_quant_choose(&qp, "output.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q6_K);
    assert_int_equal(et_quant_choose(&qp, "token_embd.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q4_K);
    /* tied embeddings: token_embd takes the output rule */
    qp.has_output = 0;
    assert_int_equal(et_quant_choose(&qp, "token_embd.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q6_K);
    /* Q8_0 keeps output in Q8_0; Q4_0 puts it in Q6_K */
    et_quant_policy q8 = {.ftype = ET_FTYPE_MOSTLY_Q8_0, .base_type = GGML_TYPE_Q8_0, .n_layer = 2, .has_output = 1};
    assert_int_equal(et_quant_choose(&q8, "output.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q8_0);
    et_quant_policy q4 = {.ftype = ET_FTYPE_MOSTLY_Q4_0, .base_type = GGML_TYPE_Q4_0, .n_layer = 2, .has_output = 1};
    assert_int_equal(et_quant_choose(&q4, "output.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q6_K);
    assert_int_equal(et_quant_choose(&q4, "blk.0.ffn_down.weight", 11008, &want, msg, sizeof msg), GGML_TYPE_Q4_0);
    /* F16: every 2-D tensor F16, output included */
    et_quant_policy f16 = {.ftype = ET_FTYPE_MOSTLY_F16, .base_type = GGML_TYPE_F16, .has_output = 1};
    assert_int_equal(et_quant_choose(&f16, "output.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_F16);
    /* 70B: attn_v of a Q4_K layer goes to Q5_K (use_more_bits(10, 80) is false) */
    et_quant_policy big = qp;
    big.is_70b = 1;
    big.i_attention_wv = 10;
    big.n_attention_wv = 80;
    assert_int_equal(et_quant_choose(&big, "blk.10.attn_v.weight", 8192, &want, msg, sizeof msg), GGML_TYPE_Q5_K);
    /* falcon Q4_K_M ffn_down: Q6_K below n/16, Q5_K where use_more_bits, else Q4_K */
    et_quant_policy fal = {.ftype = ET_FTYPE_MOSTLY_Q4_K_M, .base_type = GGML_TYPE_Q4_K, .n_layer = 32,
                           .is_falcon = 1, .has_output = 1};
    assert_int_equal(et_quant_choose(&fal, "blk.0.ffn_down.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q6_K);
    assert_int_equal(et_quant_choose(&fal, "blk.1.ffn_down.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q6_K);
    assert_int_equal(et_quant_choose(&fal, "blk.2.ffn_down.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q5_K);
    fal.i_ffn_down = 5;
    assert_int_equal(et_quant_choose(&fal, "blk.5.ffn_down.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q4_K);
}

/* The per-tensor choices of the K-quant mixes on a 32-layer model with
 * n_head / n_head_kv = 1, written out from llama-quant.cpp's rules. */
static void test_policy_k_mixes_32_layers(void **state) {
    (void)state;
    static const int more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    static const struct { int ftype; uint32_t base; } MIX[] = {
        {ET_FTYPE_MOSTLY_Q2_K, GGML_TYPE_Q2_K},   {ET_FTYPE_MOSTLY_Q3_K_S, GGML_TYPE_Q3_K},
        {ET_FTYPE_MOSTLY_Q3_K_M, GGML_TYPE_Q3_K}, {ET_FTYPE_MOSTLY_Q3_K_L, GGML_TYPE_Q3_K},
        {ET_FTYPE_MOSTLY_Q5_K_S, GGML_TYPE_Q5_K}, {ET_FTYPE_MOSTLY_Q5_K_M, GGML_TYPE_Q5_K},
    };
    for (size_t f = 0; f < sizeof MIX / sizeof MIX[0]; f++) {
        const int ft = MIX[f].ftype;
        assert_int_equal(et_ftype_base_type(ft), MIX[f].base);
        et_quant_policy qp = {.ftype = ft, .base_type = MIX[f].base, .n_layer = 32, .n_attention_wv = 32,
                              .has_output = 1, .n_gqa = 1};
        uint32_t want;
        for (int i = 0; i < 32; i++) {
            int m = 0;
            for (size_t j = 0; j < sizeof more / sizeof more[0]; j++) m |= more[j] == i;
            uint32_t v = MIX[f].base, d = MIX[f].base, o = MIX[f].base;
            switch (ft) {
            case ET_FTYPE_MOSTLY_Q2_K: v = d = o = GGML_TYPE_Q3_K; break;
            case ET_FTYPE_MOSTLY_Q3_K_M:
                v = i < 2 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
                d = i < 2 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;  /* n/16 = 2 */
                o = GGML_TYPE_Q4_K;
                break;
            case ET_FTYPE_MOSTLY_Q3_K_L: v = d = o = GGML_TYPE_Q5_K; break;
            case ET_FTYPE_MOSTLY_Q5_K_M: v = d = m ? GGML_TYPE_Q6_K : GGML_TYPE_Q5_K; break;
            default: break;
            }
            char name[64];
            snprintf(name, sizeof name, "blk.%d.attn_v.weight", i);
            assert_int_equal(et_quant_choose(&qp, name, 4096, &want, NULL, 0), v);
            snprintf(name, sizeof name, "blk.%d.ffn_down.weight", i);
            assert_int_equal(et_quant_choose(&qp, name, 11008 - 11008 % 256, &want, NULL, 0), d);
            snprintf(name, sizeof name, "blk.%d.attn_output.weight", i);
            assert_int_equal(et_quant_choose(&qp, name, 4096, &want, NULL, 0), o);
            snprintf(name, sizeof name, "blk.%d.attn_q.weight", i);
            assert_int_equal(et_quant_choose(&qp, name, 4096, &want, NULL, 0), MIX[f].base);
            snprintf(name, sizeof name, "blk.%d.ffn_up.weight", i);
            assert_int_equal(et_quant_choose(&qp, name, 4096, &want, NULL, 0), MIX[f].base);
        }
        assert_int_equal(et_quant_choose(&qp, "output.weight", 4096, &want, NULL, 0), GGML_TYPE_Q6_K);
        assert_int_equal(et_quant_choose(&qp, "token_embd.weight", 4096, &want, NULL, 0), MIX[f].base);
    }
    uint32_t want;
    char msg[200];
    /* Q2_K with grouped-query attention (n_gqa >= 4): attn_v in Q4_K */
    et_quant_policy g = {.ftype = ET_FTYPE_MOSTLY_Q2_K, .base_type = GGML_TYPE_Q2_K, .n_layer = 2,
                         .n_attention_wv = 2, .has_output = 1, .n_gqa = 4};
    assert_int_equal(et_quant_choose(&g, "blk.0.attn_v.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q4_K);
    /* attn_qkv: Q3_K_M/L -> Q4_K, Q5_K_M -> Q6_K */
    et_quant_policy qkv = {.ftype = ET_FTYPE_MOSTLY_Q3_K_L, .base_type = GGML_TYPE_Q3_K, .n_layer = 2, .has_output = 1};
    assert_int_equal(et_quant_choose(&qkv, "blk.0.attn_qkv.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q4_K);
    qkv.ftype = ET_FTYPE_MOSTLY_Q5_K_M;
    qkv.base_type = GGML_TYPE_Q5_K;
    assert_int_equal(et_quant_choose(&qkv, "blk.0.attn_qkv.weight", 4096, &want, msg, sizeof msg), GGML_TYPE_Q6_K);
    /* row-length fallbacks (llama.cpp's): Q5_K -> Q5_1, Q3_K/Q2_K -> IQ4_NL, then F16 */
    et_quant_policy q5 = {.ftype = ET_FTYPE_MOSTLY_Q5_K_S, .base_type = GGML_TYPE_Q5_K, .n_layer = 2, .has_output = 1};
    assert_int_equal(et_quant_choose(&q5, "blk.0.attn_q.weight", 576, &want, msg, sizeof msg), GGML_TYPE_Q5_1);
    assert_int_equal(want, GGML_TYPE_Q5_K);
    assert_int_equal(et_quant_choose(&q5, "blk.0.attn_q.weight", 100, &want, msg, sizeof msg), GGML_TYPE_F16);
    assert_non_null(strstr(msg, "Q5_1"));
    et_quant_policy q3 = {.ftype = ET_FTYPE_MOSTLY_Q3_K_S, .base_type = GGML_TYPE_Q3_K, .n_layer = 2, .has_output = 1};
    assert_int_equal(et_quant_choose(&q3, "blk.0.attn_q.weight", 576, &want, msg, sizeof msg), GGML_TYPE_IQ4_NL);
    assert_non_null(strstr(msg, "IQ4_NL"));
    assert_int_equal(et_quant_choose(&q3, "output.weight", 576, &want, msg, sizeof msg), GGML_TYPE_Q8_0);
    et_quant_policy q2 = {.ftype = ET_FTYPE_MOSTLY_Q2_K, .base_type = GGML_TYPE_Q2_K, .n_layer = 2, .has_output = 1};
    assert_int_equal(et_quant_choose(&q2, "blk.0.attn_q.weight", 48, &want, msg, sizeof msg), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q2_K, 576), GGML_TYPE_IQ4_NL);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q5_K, 576), GGML_TYPE_Q5_1);
}

static void test_wants(void **state) {
    (void)state;
    assert_true(et_quant_wants("blk.0.attn_q.weight", 2));
    assert_true(et_quant_wants("token_embd.weight", 2));
    assert_false(et_quant_wants("blk.0.attn_norm.weight", 1));
    assert_false(et_quant_wants("blk.0.attn_norm.weight", 2));  /* "_norm.weight" */
    assert_false(et_quant_wants("blk.0.attn_q.weight", 1));
    assert_false(et_quant_wants("blk.0.attn_q.bias", 2));
    assert_false(et_quant_wants("blk.0.ffn_gate_inp.weight", 2));
    assert_false(et_quant_wants("rope_freqs.weigh", 2));
}

/* ---------------------------------------- order, KVs, bad inputs (built here) */

/* A small F32 model: 2-D tensors of `cols` x 2 with the given names, values
 * i * 0.01 (one of them set to `poison` at element 3 if poison_name matches). */
static void write_model(const char *path, const char *const *names, int n, int64_t cols, const char *poison_name,
                        float poison) {
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(gguf_set_u32(w, "general.file_type", 0), 0);
    assert_int_equal(gguf_set_u16(w, "split.count", 1), 0);
    assert_int_equal(gguf_set_u32(w, "llama.block_count", 11), 0);
    assert_int_equal(gguf_set_str(w, "general.name", "tiny"), 0);
    float *data = calloc((size_t)(n * cols * 2), sizeof(float));
    assert_non_null(data);
    et_err e = {0};
    for (int i = 0; i < n; i++) {
        float *d = data + (size_t)i * (size_t)cols * 2;
        for (int64_t j = 0; j < cols * 2; j++) d[j] = (float)j * 0.01f - 1.0f;
        if (poison_name && !strcmp(names[i], poison_name)) d[3] = poison;
        int64_t ne[2] = {cols, 2};
        assert_int_equal(gguf_add_tensor(w, names[i], GGML_TYPE_F32, 2, ne, d, &e), 0);
    }
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    free(data);
}

static void test_order_and_kvs(void **state) {
    (void)state;
    const char *names[] = {"blk.10.ffn_up.weight", "blk.9.ffn_up.weight", "output.weight", "blk.2.attn_q.weight",
                           "token_embd.weight", "blk.2.attn_k.weight"};
    const char *in = tmp_path("order-in.gguf"), *out = tmp_path("order-out.gguf");
    write_model(in, names, 6, 256, NULL, 0);
    et_quant_params p = {ET_FTYPE_MOSTLY_Q8_0, 0, NULL, NULL};
    et_err e = {0};
    if (et_quantize_model(in, out, &p, NULL, &e)) fail_msg("%s", e.msg);
    gguf_file g;
    assert_int_equal(gguf_open(&g, out, &e), 0);
    /* llama_model_loader order: non-layer tensors by name, then by layer number */
    const char *want[] = {"output.weight", "token_embd.weight", "blk.2.attn_k.weight", "blk.2.attn_q.weight",
                          "blk.9.ffn_up.weight", "blk.10.ffn_up.weight"};
    for (int i = 0; i < 6; i++) {
        char name[GGUF_MAX_NAME];
        assert_string_equal(tensor_name(&g.tensors[i], name), want[i]);
        assert_int_equal(g.tensors[i].type, GGML_TYPE_Q8_0);
    }
    /* KVs: copied in order, split.* removed, quantization_version then file_type last */
    const char *keys[] = {"general.architecture", "llama.block_count", "general.name",
                          "general.quantization_version", "general.file_type"};
    assert_int_equal(g.n_kv, 5);
    for (int i = 0; i < 5; i++) {
        char k[64];
        assert_string_equal(kv_key(&g.kv[i], k, sizeof k), keys[i]);
    }
    uint32_t v;
    assert_int_equal(gguf_get_u32(&g, "general.file_type", &v, &e), 0);
    assert_int_equal(v, ET_FTYPE_MOSTLY_Q8_0);
    assert_int_equal(gguf_get_u32(&g, "general.quantization_version", &v, &e), 0);
    assert_int_equal(v, 2);
    gguf_close(&g);
}

static void test_bad_inputs(void **state) {
    (void)state;
    const char *names[] = {"token_embd.weight", "blk.0.attn_q.weight"};
    const char *in = tmp_path("bad-in.gguf"), *out = tmp_path("bad-out.gguf");
    et_err e = {0};
    et_quant_params p = {ET_FTYPE_MOSTLY_Q4_0, 0, NULL, NULL};

    /* NaN in a tensor: refused, naming the tensor and the element; no output */
    write_model(in, names, 2, 64, "blk.0.attn_q.weight", NAN);
    remove(out);
    assert_int_equal(et_quantize_model(in, out, &p, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "blk.0.attn_q.weight"));
    assert_non_null(strstr(e.msg, "element 3"));
    assert_int_not_equal(access(out, F_OK), 0);

    /* unknown ftype */
    write_model(in, names, 2, 64, NULL, 0);
    et_quant_params bad = {25 /* IQ4_NL */, 0, NULL, NULL};
    assert_int_equal(et_quantize_model(in, out, &bad, NULL, &e), ET_EUSAGE);
    assert_int_equal(et_ftype_from_name("IQ4_NL"), -1);
    assert_int_equal(et_ftype_from_name("Q4_K_S"), -1);
    assert_int_equal(et_ftype_from_name("Q5_K_M"), ET_FTYPE_MOSTLY_Q5_K_M);
    assert_int_equal(et_ftype_from_name("q3_k_l"), ET_FTYPE_MOSTLY_Q3_K_L);
    assert_int_equal(et_ftype_from_name("Q2_K"), ET_FTYPE_MOSTLY_Q2_K);
    assert_int_equal(et_ftype_from_name("q4_1"), ET_FTYPE_MOSTLY_Q4_1);
    assert_int_equal(et_ftype_from_name("Q5_1"), ET_FTYPE_MOSTLY_Q5_1);
    assert_int_equal(et_ftype_base_type(ET_FTYPE_MOSTLY_Q5_1), GGML_TYPE_Q5_1);
    assert_int_equal(et_ftype_from_name("q4_k_m"), ET_FTYPE_MOSTLY_Q4_K_M);

    /* requantizing: refused unless allowed, then Q4_0 -> Q8_0 works */
    assert_int_equal(et_quantize_model(in, out, &p, NULL, &e), 0);
    const char *out2 = tmp_path("bad-out2.gguf");
    et_quant_params rq = {ET_FTYPE_MOSTLY_Q8_0, 0, NULL, NULL};
    assert_int_equal(et_quantize_model(out, out2, &rq, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "requantiz"));
    rq.allow_requantize = 1;
    if (et_quantize_model(out, out2, &rq, NULL, &e)) fail_msg("%s", e.msg);
    gguf_file g;
    assert_int_equal(gguf_open(&g, out2, &e), 0);
    assert_int_equal(gguf_find_tensor(&g, "blk.0.attn_q.weight")->type, GGML_TYPE_Q8_0);
    gguf_close(&g);

    /* missing and truncated inputs; the old output stays */
    assert_int_equal(et_quantize_model(tmp_path("nope.gguf"), out2, &p, NULL, &e), ET_EINPUT);
    et_map m;
    assert_int_equal(et_map_open(&m, in, &e), 0);
    const char *trunc = tmp_path("trunc.gguf");
    FILE *f = fopen(trunc, "wb");
    assert_non_null(f);
    fwrite(m.data, 1, m.size - 100, f);
    fclose(f);
    et_map_close(&m);
    assert_int_equal(et_quantize_model(trunc, out2, &p, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "trunc.gguf"));
    assert_int_equal(access(out2, F_OK), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_f16),
        cmocka_unit_test(test_golden_q8_0),
        cmocka_unit_test(test_golden_q4_0),
        cmocka_unit_test(test_golden_q4_k_m),
        cmocka_unit_test(test_golden_q6_k),
        cmocka_unit_test(test_golden_q4_1),
        cmocka_unit_test(test_golden_q5_1),
        cmocka_unit_test(test_golden_k_mixes),
        cmocka_unit_test(test_stories260K_k_mixes),
        cmocka_unit_test(test_stories260K_fallbacks),
        cmocka_unit_test(test_policy_q4_k_m_32_layers),
        cmocka_unit_test(test_policy_k_mixes_32_layers),
        cmocka_unit_test(test_wants),
        cmocka_unit_test(test_order_and_kvs),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests_name("quantize_model", tests, NULL, NULL);
}
