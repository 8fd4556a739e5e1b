/* tests/test_train_golden.c — the whole stories260K model, forward and
 * backward through the tape, against PyTorch float64
 * (../shared/golden/stories260K_grads.h5):
 *   /tokens int32 [4, 65]: inputs = [:, :64], targets = [:, 1:]
 *   /loss   mean next-token cross-entropy     relative error < 1e-5
 *   /logits [4, 64, 512]                      max abs difference < 1e-4
 *   /grads/<GGUF name> [out, in]              ||g - g_ref|| / ||g_ref|| < 1e-4
 * The same with bf16 mixed-precision GEMMs (tape gemm_precision
 * ET_GEMM_BF16, train/gemm.h): bf16 operands round at 2^-9 relative, so the
 * bounds are the measured errors with about 2x margin (loss, logits,
 * gradients: BF16_* below; measured 8.3e-4, 0.18 (logits up to ~15) and
 * 3.5e-2 for blk.0.attn_k.weight, the worst tensor), and the gradient error must also exceed the f32
 * bound, which shows the bf16 products were really used.
 * The model is tied (no output.weight), so token_embd's gradient is the sum
 * of the embedding's and the LM head's, as in the reference.  Loaded from
 * the GGUF (through et_model_load; that file stores the classifier again as
 * output.weight) and from the llama2.c .bin (tied). */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>

#include "../train/gemm.h"
#include "../train/llama.h"

#define GOLDEN "golden/stories260K_grads.h5"
#define MODEL_GGUF "models/stories260K/stories260K.gguf"
#define MODEL_BIN "models/stories260K/stories260K.bin"

/* ---- HDF5 ---- */
/* Read dataset `name` as float (HDF5 converts) into a new buffer; checks the
 * rank and dimensions (dims[] == 0 means any). */
static float *h5_floats(hid_t f, const char *name, int rank, const hsize_t *want, size_t *n_out) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[8] = {0};
    int r = H5Sget_simple_extent_ndims(sp);
    float *buf = NULL;
    if (r == rank && r <= 8) {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        size_t n = 1;
        int ok = 1;
        for (int i = 0; i < r; i++) {
            if (want && want[i] && want[i] != dims[i]) ok = 0;
            n *= dims[i];
        }
        if (ok && (buf = malloc((n ? n : 1) * sizeof(float))) &&
            H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        }
        if (n_out) *n_out = n;
    }
    H5Sclose(sp);
    H5Dclose(d);
    return buf;
}

static double h5_attr_double(hid_t f, const char *name) {
    double v = NAN;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return v;
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

/* Bounds of the bf16 run (see the top comment). */
#define BF16_LOSS_REL 2e-3
#define BF16_LOGIT_ABS 0.4
#define BF16_GRAD_REL 0.07

/* The model file through et_model_load, then forward + backward in
 * `precision` + compare. */
static void run_golden(const char *golden, const char *model_path, int precision, int fused) {
    et_model m, g;
    et_err e = {0};
    if (et_model_load(&m, model_path, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_model_grads_alloc(&g, &m, &e), 0);
    et_llama L;
    if (et_llama_bind(&L, &m, &g, &e)) fail_msg("%s", e.msg);

    hid_t f = H5Fopen(golden, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    /* the file's conventions must be the model's */
    assert_int_equal((int)h5_attr_double(f, "dim"), m.hp.n_embd);
    assert_int_equal((int)h5_attr_double(f, "n_layers"), m.hp.n_layer);
    assert_int_equal((int)h5_attr_double(f, "n_heads"), m.hp.n_head);
    assert_int_equal((int)h5_attr_double(f, "n_kv_heads"), m.hp.n_head_kv);
    assert_int_equal((int)h5_attr_double(f, "vocab_size"), m.hp.n_vocab);
    assert_true(fabs(h5_attr_double(f, "rms_norm_eps") - m.hp.rms_eps) < 1e-12);
    assert_true(fabs(h5_attr_double(f, "rope_theta") - m.hp.rope_theta) < 1e-6);

    enum { B = 4, T = 64, V = 512 };
    int32_t tok[B][T + 1], inputs[B * T], targets[B * T];
    hid_t d = H5Dopen2(f, "/tokens", H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok) >= 0);
    H5Dclose(d);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++) inputs[b * T + i] = tok[b][i], targets[b * T + i] = tok[b][i + 1];
    double loss_ref = NAN;
    d = H5Dopen2(f, "/loss", H5P_DEFAULT);
    assert_true(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &loss_ref) >= 0);
    H5Dclose(d);
    float *logits_ref = h5_floats(f, "/logits", 3, (hsize_t[]){B, T, V}, NULL);
    assert_non_null(logits_ref);

    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, &e), 0);
    t.gemm_precision = precision;
    float *logits = malloc(sizeof(float) * B * T * V);
    /* small chunks so the chunked LM head is exercised over several chunks */
    et_xent_opts xo = {.logits_out = fused ? NULL : logits, .chunk_rows = 96, .grad_in_forward = fused};
    et_tensor *loss = et_llama_forward(&t, &L, inputs, targets, B, T, &xo);
    if (et_tape_status(&t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_tape_backward(&t, loss), 0);

    const double loss_rel = fabs(loss->data[0] - loss_ref) / fabs(loss_ref);
    double logit_diff = 0;
    for (size_t i = 0; i < (size_t)B * T * V && !fused; i++) logit_diff = fmax(logit_diff, fabs(logits[i] - logits_ref[i]));

    /* llama.cpp's convert-llama2c-to-ggml writes the tied classifier again as
       output.weight: the GGUF model is untied with output == token_embd, and
       the reference's token_embd gradient is the sum of both uses. */
    const et_tensor *out_w = et_llama_find(&L, "output.weight");
    float *tied_sum = NULL;
    if (out_w) {
        assert_memory_equal(out_w->data, L.tok_embd.data, L.tok_embd.n * sizeof(float));
        tied_sum = malloc(L.tok_embd.n * sizeof(float));
        for (size_t k = 0; k < L.tok_embd.n; k++) tied_sum[k] = L.tok_embd.grad[k] + out_w->grad[k];
    }
    double worst = 0;
    const char *worst_name = "";
    int n_checked = 0;
    for (int i = 0; i < L.n_tensors; i++) {
        const et_tensor *p = L.tensors[i];
        if (p == out_w) continue;
        const float *grad = p == &L.tok_embd && tied_sum ? tied_sum : p->grad;
        char path[128];
        snprintf(path, sizeof path, "/grads/%s", p->name);
        hsize_t want[2] = {(hsize_t)p->shape[0], p->ndim > 1 ? (hsize_t)p->shape[1] : 0};
        size_t n = 0;
        float *ref = h5_floats(f, path, p->ndim, want, &n);
        if (!ref) fail_msg("%s: missing or wrong shape in %s", path, golden);
        assert_int_equal(n, p->n);
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++) {
            num += ((double)grad[k] - ref[k]) * ((double)grad[k] - ref[k]);
            den += (double)ref[k] * ref[k];
        }
        const double rel = sqrt(num / den);
        if (rel > worst) worst = rel, worst_name = p->name;
        n_checked++;
        free(ref);
    }
    printf("  %s (%s GEMMs%s):\n  loss %.8f (ref %.8f, rel err %.2e), logits max abs diff %.2e,\n"
           "  worst gradient rel err %.2e (%s) over %d tensors\n",
           strrchr(model_path, '/') + 1, et_gemm_precision_name(precision), fused ? ", LM-head gradients in forward" : "",
           loss->data[0], loss_ref, loss_rel, logit_diff, worst, worst_name, n_checked);
    assert_int_equal(n_checked, 2 + 9 * m.hp.n_layer);
    if (precision == ET_GEMM_F32) {
        assert_true(loss_rel < 1e-5);
        assert_true(logit_diff < 1e-4);
        assert_true(worst < 1e-4);
    } else {
        assert_true(loss_rel < BF16_LOSS_REL);
        assert_true(logit_diff < BF16_LOGIT_ABS);
        assert_true(worst < BF16_GRAD_REL);
        assert_true(worst > 1e-4); /* the bf16 path really ran */
    }

    free(tied_sum);
    free(logits);
    free(logits_ref);
    H5Fclose(f);
    et_tape_free(&t);
    et_llama_unbind(&L);
    et_model_grads_free(&g);
    et_model_free(&m);
}

static void test_golden_gguf(void **state) {
    (void)state;
    SHARED_OR_SKIP(golden, GOLDEN);
    SHARED_OR_SKIP(model, MODEL_GGUF);
    run_golden(golden, model, ET_GEMM_F32, 0);
}

/* The same weights from the llama2.c file (tied, no tokenizer needed). */
static void test_golden_llama2c(void **state) {
    (void)state;
    SHARED_OR_SKIP(golden, GOLDEN);
    SHARED_OR_SKIP(model, MODEL_BIN);
    run_golden(golden, model, ET_GEMM_F32, 0);
    run_golden(golden, model, ET_GEMM_F32, 1); /* as the trainer: et_xent_opts.grad_in_forward */
}

/* bf16 GEMMs: the native kernel where the CPU has one, and the portable path. */
static void test_golden_bf16(void **state) {
    (void)state;
    SHARED_OR_SKIP(golden, GOLDEN);
    SHARED_OR_SKIP(model, MODEL_BIN);
    run_golden(golden, model, ET_GEMM_BF16, 0);
    run_golden(golden, model, ET_GEMM_BF16, 1);
    et_gemm_force_portable(1);
    run_golden(golden, model, ET_GEMM_BF16, 0);
    et_gemm_force_portable(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_gguf),
        cmocka_unit_test(test_golden_llama2c),
        cmocka_unit_test(test_golden_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
