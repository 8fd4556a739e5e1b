/* tests/test_lora_golden.c — LoRA on the real stories260K through the tape
 * (train/lora_llama.h) against PyTorch float64
 * (../shared/golden/stories260K_grads.h5, group /lora):
 *   rank 4, alpha 8 (scale 2) on attn_q and attn_v of every layer,
 *   /lora/init/<base>.lora_a [4, in] and .lora_b [out, 4] the starting values,
 *   /lora/loss                         relative error < 1e-5
 *   /lora/grads/<base>.lora_{a,b}      ||g - g_ref|| / ||g_ref|| < 1e-4 each
 * with inputs /tokens[:, :64] and targets /tokens[:, 1:].
 * Then the frozen base held as Q8_0 / Q4_0 / Q4_1 / BF16 (QLoRA-style): loss and
 * LoRA gradients equal those of an F32 base holding the same dequantized
 * weights (so only float rounding differs), and the F32 model may be freed
 * once the quantized base is built. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>

#include "../quant/quant.h"
#include "../train/lora_llama.h"
#include "../train/threads.h"

#define GOLDEN "golden/stories260K_grads.h5"
#define MODEL_BIN "models/stories260K/stories260K.bin"

enum { B = 4, T = 64, N_TGT = 2 };
static const int tgt_lin[N_TGT] = {ET_LIN_Q, ET_LIN_V};

static float *h5_floats(hid_t f, const char *name, int64_t d0, int64_t d1) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    float *buf = NULL;
    if (H5Sget_simple_extent_ndims(sp) == 2) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        if ((int64_t)dims[0] == d0 && (int64_t)dims[1] == d1 && (buf = malloc(sizeof(float) * d0 * d1)) &&
            H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        }
    }
    H5Sclose(sp);
    H5Dclose(d);
    return buf;
}

static double h5_attr(hid_t f, const char *obj, const char *name) {
    double v = NAN;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return v;
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

static double h5_scalar(hid_t f, const char *name) {
    double v = NAN;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return v;
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
    H5Dclose(d);
    return v;
}

/* The golden file's LoRA: its init values in one block (a then b per
 * target, layer by layer), a gradient block of the same layout. */
typedef struct golden_lora {
    int n_layer, rank;
    float alpha, scale;
    float *params, *grads;
    size_t n;
    size_t off_a[64][N_TGT], off_b[64][N_TGT];
    int64_t n_in[64][N_TGT], n_out[64][N_TGT];
    int32_t inputs[B * T], targets[B * T];
    double loss_ref;
} golden_lora;

static void base_name(char *out, size_t cap, int layer, int lin) {
    snprintf(out, cap, "blk.%d.%s.weight", layer, lin == ET_LIN_Q ? "attn_q" : "attn_v");
}

static void golden_load(golden_lora *g, hid_t f, const et_lora_llama *ll) {
    memset(g, 0, sizeof *g);
    g->n_layer = ll->L.n_layer;
    assert_true(g->n_layer <= 64);
    g->rank = (int)h5_attr(f, "/lora", "rank");
    g->alpha = (float)h5_attr(f, "/lora", "alpha");
    g->scale = (float)h5_attr(f, "/lora", "scale");
    assert_int_equal(g->rank, 4);
    assert_true(fabsf(g->scale - g->alpha / g->rank) < 1e-6f); /* the file's convention: alpha/rank */
    for (int l = 0; l < g->n_layer; l++)
        for (int k = 0; k < N_TGT; k++) {
            et_lora_slot *s = et_lora_llama_slot((et_lora_llama *)ll, l, tgt_lin[k]);
            assert_non_null(s);
            g->n_in[l][k] = s->w.n_in, g->n_out[l][k] = s->w.n_out;
            g->off_a[l][k] = g->n, g->n += (size_t)g->rank * s->w.n_in;
            g->off_b[l][k] = g->n, g->n += (size_t)s->w.n_out * g->rank;
        }
    g->params = malloc(g->n * sizeof(float));
    g->grads = calloc(g->n, sizeof(float));
    for (int l = 0; l < g->n_layer; l++)
        for (int k = 0; k < N_TGT; k++) {
            char bn[64], path[128];
            base_name(bn, sizeof bn, l, tgt_lin[k]);
            snprintf(path, sizeof path, "/lora/init/%s.lora_a", bn);
            float *a = h5_floats(f, path, g->rank, g->n_in[l][k]);
            snprintf(path, sizeof path, "/lora/init/%s.lora_b", bn);
            float *b = h5_floats(f, path, g->n_out[l][k], g->rank);
            if (!a || !b) fail_msg("%s: missing or wrong shape", path);
            memcpy(g->params + g->off_a[l][k], a, sizeof(float) * g->rank * g->n_in[l][k]);
            memcpy(g->params + g->off_b[l][k], b, sizeof(float) * g->rank * g->n_out[l][k]);
            free(a), free(b);
        }
    int32_t tok[B][T + 1];
    hid_t d = H5Dopen2(f, "/tokens", H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok) >= 0);
    H5Dclose(d);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) g->inputs[b * T + i] = tok[b][i], g->targets[b * T + i] = tok[b][i + 1];
    g->loss_ref = h5_scalar(f, "/lora/loss");
    assert_true(isfinite(g->loss_ref));
}

static void golden_free(golden_lora *g) {
    free(g->params);
    free(g->grads);
}

static void attach_all(et_lora_llama *ll, golden_lora *g) {
    et_err e = {0};
    for (int l = 0; l < g->n_layer; l++)
        for (int k = 0; k < N_TGT; k++)
            if (et_lora_llama_attach(ll, l, tgt_lin[k], g->params + g->off_a[l][k], g->grads + g->off_a[l][k],
                                     g->params + g->off_b[l][k], g->grads + g->off_b[l][k], g->rank, g->scale, &e))
                fail_msg("%s", e.msg);
}

/* forward + backward; returns the loss, grads in g->grads (zeroed first) */
static double run_step(et_lora_llama *ll, golden_lora *g) {
    memset(g->grads, 0, g->n * sizeof(float));
    et_tape t;
    et_err e = {0};
    assert_int_equal(et_tape_init(&t, 0, &e), 0);
    et_xent_opts xo = {.chunk_rows = 96};
    et_tensor *loss = et_lora_llama_forward(&t, ll, g->inputs, g->targets, B, T, &xo);
    if (et_tape_status(&t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_tape_backward(&t, loss), 0);
    double v = loss->data[0];
    et_tape_free(&t);
    return v;
}

static void load_model(et_model *m) {
    const char *path = shared_path(MODEL_BIN);
    et_err e = {0};
    if (et_model_load(m, path, NULL, &e)) fail_msg("%s", e.msg);
}

static double f32_loss = NAN; /* set by test_lora_golden_f32 */

static void test_lora_golden_f32(void **state) {
    (void)state;
    SHARED_OR_SKIP(golden, GOLDEN);
    SHARED_OR_SKIP(model_path, MODEL_BIN);
    et_model m;
    load_model(&m);
    et_lora_llama ll;
    et_err e = {0};
    if (et_lora_llama_init(&ll, &m, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);
    hid_t f = H5Fopen(golden, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    golden_lora g;
    golden_load(&g, f, &ll);
    attach_all(&ll, &g);
    const double loss = run_step(&ll, &g);
    const double loss_rel = fabs(loss - g.loss_ref) / fabs(g.loss_ref);
    f32_loss = loss;

    double worst = 0;
    char worst_name[128] = "";
    int n_checked = 0;
    for (int l = 0; l < g.n_layer; l++)
        for (int k = 0; k < N_TGT; k++)
            for (int ab = 0; ab < 2; ab++) {
                char bn[64], path[128];
                base_name(bn, sizeof bn, l, tgt_lin[k]);
                snprintf(path, sizeof path, "/lora/grads/%s.lora_%c", bn, ab ? 'b' : 'a');
                const int64_t d0 = ab ? g.n_out[l][k] : g.rank, d1 = ab ? g.rank : g.n_in[l][k];
                float *ref = h5_floats(f, path, d0, d1);
                if (!ref) fail_msg("%s: missing or wrong shape in %s", path, golden);
                const float *got = g.grads + (ab ? g.off_b[l][k] : g.off_a[l][k]);
                double num = 0, den = 0;
                for (int64_t i = 0; i < d0 * d1; i++) {
                    num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
                    den += (double)ref[i] * ref[i];
                }
                assert_true(den > 0);
                const double rel = sqrt(num / den);
                if (rel > worst) worst = rel, snprintf(worst_name, sizeof worst_name, "%s", path + 12);
                n_checked++;
                free(ref);
            }
    printf("  stories260K LoRA (rank %d, alpha %g, q+v): loss %.8f (ref %.8f, rel err %.2e),\n"
           "  worst gradient rel err %.2e (%s) over %d lora_a/lora_b tensors\n",
           g.rank, g.alpha, loss, g.loss_ref, loss_rel, worst, worst_name, n_checked);
    assert_int_equal(n_checked, 4 * m.hp.n_layer);
    assert_true(loss_rel < 1e-5);
    assert_true(worst < 1e-4);

    /* activation recomputation: the same loss and gradients (here with dropout too) */
    float *g_plain = malloc(g.n * sizeof(float));
    ll.dropout = 0.1f, ll.train = 1, ll.seed = 3;
    const double lp = run_step(&ll, &g);
    memcpy(g_plain, g.grads, g.n * sizeof(float));
    ll.recompute = 1;
    const double lr = run_step(&ll, &g);
    double num = 0, den = 0;
    for (size_t i = 0; i < g.n; i++) {
        num += ((double)g.grads[i] - g_plain[i]) * ((double)g.grads[i] - g_plain[i]);
        den += (double)g_plain[i] * g_plain[i];
    }
    printf("  recompute (dropout 0.1): loss %.8f vs %.8f, gradients rel diff %.1e\n", lr, lp, sqrt(num / den));
    assert_true(lr == lp);
    assert_true(sqrt(num / den) < 1e-6);
    /* recomputing only the first layer: the same again */
    ll.recompute_layers = 1;
    const double l1r = run_step(&ll, &g);
    num = den = 0;
    for (size_t i = 0; i < g.n; i++) {
        num += ((double)g.grads[i] - g_plain[i]) * ((double)g.grads[i] - g_plain[i]);
        den += (double)g_plain[i] * g_plain[i];
    }
    printf("  recompute of layer 0 only: loss %.8f, gradients rel diff %.1e\n", l1r, sqrt(num / den));
    assert_true(l1r == lp);
    assert_true(sqrt(num / den) < 1e-6);
    ll.recompute_layers = 0;
    ll.dropout = 0.0f;
    assert_true(fabs(run_step(&ll, &g) - loss) < 1e-6);
    free(g_plain);
    ll.recompute = 0;

    /* evaluation mode with dropout configured: same loss (dropout off in eval) */
    ll.dropout = 0.5f, ll.train = 0;
    assert_true(fabs(run_step(&ll, &g) - loss) < 1e-6);
    /* training with dropout changes the loss, and the same seed repeats it */
    ll.train = 1, ll.seed = 7;
    const double l1 = run_step(&ll, &g), l2 = run_step(&ll, &g);
    ll.seed = 8;
    const double l3 = run_step(&ll, &g);
    printf("  dropout 0.5: loss %.6f (seed 7, twice %.6f), %.6f (seed 8)\n", l1, l2, l3);
    assert_true(l1 == l2);
    assert_true(l1 != l3);
    /* lora_b starts at the golden values (not zero), so dropout changes the loss */
    assert_true(fabs(l1 - loss) > 1e-7);

    golden_free(&g);
    H5Fclose(f);
    et_lora_llama_free(&ll);
    et_model_free(&m);
}

/* Replace every linear weight by dequantize(quantize(W)) in the type the
 * quantized base would use (with the same fallback). */
static void round_linears(et_model *m, uint32_t type) {
    et_named t[512];
    int n = et_model_tensors(m, t, 512);
    assert_true(n <= 512);
    for (int i = 0; i < n; i++) {
        if (t[i].n_dims != 2 || strncmp(t[i].name, "blk.", 4) != 0) continue;
        const uint32_t ty = et_quant_fallback(type, t[i].ne[0]);
        uint8_t *q = malloc(et_quant_row_bytes(ty, (int64_t)t[i].n));
        assert_int_equal(et_quantize_row(ty, t[i].data, q, t[i].ne[0] * t[i].ne[1]), 0);
        assert_int_equal(et_dequantize_row(ty, q, t[i].data, t[i].ne[0] * t[i].ne[1]), 0);
        free(q);
    }
}

static void test_quantized_base(void **state) {
    (void)state;
    SHARED_OR_SKIP(golden, GOLDEN);
    SHARED_OR_SKIP(model_path, MODEL_BIN);
    hid_t f = H5Fopen(golden, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_BF16};
    /* under the sanitizers (slow) only Q8_0 */
    const size_t n_types = getenv("ET_SANITIZED") ? 1 : sizeof types / sizeof types[0];
    for (size_t ti = 0; ti < n_types; ti++) {
        et_err e = {0};
        /* quantized base: built from a model that is freed right after */
        et_model mq;
        load_model(&mq);
        et_lora_llama llq;
        if (et_lora_llama_init(&llq, &mq, types[ti], &e)) fail_msg("%s", e.msg);
        const uint64_t model_bytes = mq.n_params * sizeof(float);
        et_model_free(&mq);
        /* F32 base over the same dequantized numbers */
        et_model mf;
        load_model(&mf);
        round_linears(&mf, types[ti]);
        et_lora_llama llf;
        if (et_lora_llama_init(&llf, &mf, GGML_TYPE_F32, &e)) fail_msg("%s", e.msg);

        golden_lora gq, gf;
        golden_load(&gq, f, &llq);
        golden_load(&gf, f, &llf);
        attach_all(&llq, &gq);
        attach_all(&llf, &gf);
        const double lq = run_step(&llq, &gq), lf = run_step(&llf, &gf);
        double num = 0, den = 0;
        for (size_t i = 0; i < gq.n; i++) {
            num += ((double)gq.grads[i] - gf.grads[i]) * ((double)gq.grads[i] - gf.grads[i]);
            den += (double)gf.grads[i] * gf.grads[i];
        }
        const double rel = sqrt(num / den);
        printf("  base %-5s: %7.1f KB held (F32 model %.1f KB); loss %.6f (F32 base %.6f), vs F32 base of the "
               "dequantized weights: loss diff %.1e, LoRA grads rel err %.1e\n",
               types[ti] == GGML_TYPE_Q8_0 ? "Q8_0" : types[ti] == GGML_TYPE_Q4_0 ? "Q4_0" : types[ti] == GGML_TYPE_Q4_1 ? "Q4_1" :
               types[ti] == GGML_TYPE_F16 ? "F16" : "BF16",
               et_lora_llama_base_bytes(&llq) / 1024.0, model_bytes / 1024.0, lq, f32_loss, fabs(lq - lf), rel);
        assert_true(fabs(lq - lf) < 1e-5 * fabs(lf));
        assert_true(rel < 1e-5);
        assert_true(et_lora_llama_base_bytes(&llq) < model_bytes);
        if (isfinite(f32_loss)) assert_true(fabs(lq - f32_loss) < 0.2); /* quantization moves the loss a little */
        golden_free(&gq);
        golden_free(&gf);
        et_lora_llama_free(&llq);
        et_lora_llama_free(&llf);
        et_model_free(&mf);
    }
    H5Fclose(f);
}

static void test_attach_errors(void **state) {
    (void)state;
    SHARED_OR_SKIP(model_path, MODEL_BIN);
    et_model m;
    load_model(&m);
    et_lora_llama ll;
    et_err e = {0};
    assert_int_equal(et_lora_llama_init(&ll, &m, GGML_TYPE_F32, &e), 0);
    float a[4 * 64], b[64 * 4];
    assert_int_equal(et_lora_llama_attach(&ll, 5, ET_LIN_Q, a, NULL, b, NULL, 4, 1, &e), ET_EINPUT);
    printf("  %s\n", e.msg);
    assert_int_equal(et_lora_llama_attach(&ll, 0, ET_N_LIN, a, NULL, b, NULL, 4, 1, &e), ET_EINPUT);
    assert_int_equal(et_lora_llama_attach(&ll, 0, ET_LIN_Q, a, NULL, b, NULL, 0, 1, &e), ET_EINPUT);
    et_lora_llama_free(&ll);
    assert_int_equal(et_lora_llama_init(&ll, &m, GGML_TYPE_Q4_K + 100, &e), ET_EINPUT);
    printf("  %s\n", e.msg);
    et_model_free(&m);
}

int main(void) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_golden_f32),
        cmocka_unit_test(test_quantized_base),
        cmocka_unit_test(test_attach_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
