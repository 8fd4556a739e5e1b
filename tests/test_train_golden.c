/* tests/test_train_golden.c — the whole stories260K model, forward and
 * backward through the tape, against PyTorch float64
 * (../shared/golden/stories260K_grads.h5):
 *   /tokens int32 [4, 65]: inputs = [:, :64], targets = [:, 1:]
 *   /loss   mean next-token cross-entropy     relative error < 1e-5
 *   /logits [4, 64, 512]                      max abs difference < 1e-4
 *   /grads/<GGUF name> [out, in]              ||g - g_ref|| / ||g_ref|| < 1e-4
 * The model is tied (no output.weight), so token_embd's gradient is the sum
 * of the embedding's and the LM head's, as in the reference. */
#include "testutil.h"

#include <hdf5.h>
#include <math.h>

#include "../train/llama.h"

#define GOLDEN "golden/stories260K_grads.h5"
#define MODEL_BIN "models/stories260K/stories260K.bin"

/* ---- temporary: a minimal llama2.c .bin reader until export/model.c lands ---- */
static int load_llama2c(et_model *m, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int32_t h[7];
    if (fread(h, sizeof h, 1, f) != 1) { fclose(f); return -1; }
    memset(m, 0, sizeof *m);
    et_hparams *hp = &m->hp;
    snprintf(hp->arch, sizeof hp->arch, "llama");
    hp->n_embd = h[0], hp->n_ff = h[1], hp->n_layer = h[2], hp->n_head = h[3], hp->n_head_kv = h[4];
    hp->n_vocab = abs(h[5]), hp->n_ctx = h[6], hp->tied_output = h[5] > 0;
    hp->head_dim = hp->n_embd / hp->n_head, hp->rms_eps = 1e-5f, hp->rope_theta = 10000.0f;
    const size_t C = hp->n_embd, F = hp->n_ff, L = hp->n_layer, V = hp->n_vocab;
    const size_t Cq = hp->n_head * hp->head_dim, Ck = hp->n_head_kv * hp->head_dim;
    const size_t half = hp->head_dim / 2;
    m->n_params = V * C + L * (2 * C + C * Cq + 2 * C * Ck + Cq * C + 3 * F * C) + C;
    m->params = malloc(m->n_params * sizeof(float));
    m->layers = calloc(L, sizeof(et_layer));
    float *p = m->params;
    size_t need = m->n_params;
    /* file order: embd, att norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm, freq tables */
    m->tok_embd = p, p += V * C;
    float *an = p; p += L * C;
    float *wq = p; p += L * C * Cq;
    float *wk = p; p += L * C * Ck;
    float *wv = p; p += L * C * Ck;
    float *wo = p; p += L * Cq * C;
    float *fn = p; p += L * C;
    float *w1 = p; p += L * F * C;
    float *w2 = p; p += L * C * F;
    float *w3 = p; p += L * F * C;
    m->output_norm = p, p += C;
    m->output = m->tok_embd;
    for (size_t l = 0; l < L; l++) {
        et_layer *y = &m->layers[l];
        y->attn_norm = an + l * C, y->wq = wq + l * C * Cq, y->wk = wk + l * C * Ck, y->wv = wv + l * C * Ck;
        y->wo = wo + l * Cq * C, y->ffn_norm = fn + l * C;
        y->w_gate = w1 + l * F * C, y->w_down = w2 + l * C * F, y->w_up = w3 + l * F * C;
    }
    int ok = fread(m->params, sizeof(float), need, f) == need;
    (void)half;
    fclose(f);
    return ok ? 0 : -1;
}
static void free_llama2c(et_model *m) {
    free(m->params);
    free(m->layers);
}

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

static void test_stories260k_golden(void **state) {
    (void)state;
    SHARED_OR_SKIP(golden, GOLDEN);
    SHARED_OR_SKIP(model_path, MODEL_BIN);
    et_model m, g;
    assert_int_equal(load_llama2c(&m, model_path), 0);
    et_err e = {0};
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
    float *logits = malloc(sizeof(float) * B * T * V);
    /* small chunks so the chunked LM head is exercised over several chunks */
    et_xent_opts xo = {.logits_out = logits, .chunk_rows = 96};
    et_tensor *loss = et_llama_forward(&t, &L, inputs, targets, B, T, &xo);
    if (et_tape_status(&t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_tape_backward(&t, loss), 0);

    const double loss_rel = fabs(loss->data[0] - loss_ref) / fabs(loss_ref);
    double logit_diff = 0;
    for (size_t i = 0; i < (size_t)B * T * V; i++) logit_diff = fmax(logit_diff, fabs(logits[i] - logits_ref[i]));

    double worst = 0;
    const char *worst_name = "";
    int n_checked = 0;
    for (int i = 0; i < L.n_tensors; i++) {
        const et_tensor *p = L.tensors[i];
        char path[128];
        snprintf(path, sizeof path, "/grads/%s", p->name);
        hsize_t want[2] = {(hsize_t)p->shape[0], p->ndim > 1 ? (hsize_t)p->shape[1] : 0};
        size_t n = 0;
        float *ref = h5_floats(f, path, p->ndim, want, &n);
        if (!ref) fail_msg("%s: missing or wrong shape in %s", path, golden);
        assert_int_equal(n, p->n);
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++) {
            num += ((double)p->grad[k] - ref[k]) * ((double)p->grad[k] - ref[k]);
            den += (double)ref[k] * ref[k];
        }
        const double rel = sqrt(num / den);
        if (rel > worst) worst = rel, worst_name = p->name;
        n_checked++;
        free(ref);
    }
    printf("  stories260K: loss %.8f (ref %.8f, rel err %.2e), logits max abs diff %.2e,\n"
           "  worst gradient rel err %.2e (%s) over %d tensors\n",
           loss->data[0], loss_ref, loss_rel, logit_diff, worst, worst_name, n_checked);
    assert_int_equal(n_checked, 2 + 9 * m.hp.n_layer);
    assert_true(loss_rel < 1e-5);
    assert_true(logit_diff < 1e-4);
    assert_true(worst < 1e-4);

    free(logits);
    free(logits_ref);
    H5Fclose(f);
    et_tape_free(&t);
    et_llama_unbind(&L);
    et_model_grads_free(&g);
    free_llama2c(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
