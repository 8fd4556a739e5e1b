/* tests/test_kd.c — the distillation loss (train/op_kd.c) against PyTorch
 * float64 (../shared/golden/kd_topk.h5: forward, reverse and mixed losses on
 * stored top-k, k 16, 64 and V, T 1 and 2), and the sampled estimator
 * against the full-vocabulary KL in expectation.  Finite differences of every
 * mode are in test_autograd_ops.c. */
#include <hdf5.h>
#include <math.h>

#include "../train/ops.h"
#include "../train/rng.h"
#include "testutil.h"

enum { GN = 48, GV = 512 };

static int read_ds(hid_t f, const char *name, hid_t mt, void *buf) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    herr_t r = H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    return r < 0 ? -1 : 0;
}

/* Loss and gradient with respect to the logits: x = logits [N, V], w = identity [V, V]. */
static float kd_on_logits(const float *z, float *gz, int N, int V, const int32_t *tg, const et_kd_opts *o) {
    float *w = calloc((size_t)V * V, sizeof(float)), *gw = calloc((size_t)V * V, sizeof(float));
    assert_non_null(w);
    assert_non_null(gw);
    for (int v = 0; v < V; v++) w[(size_t)v * V + v] = 1.0f;
    memset(gz, 0, sizeof(float) * (size_t)N * V);
    et_tensor X, W;
    et_tensor_wrap(&X, "z", (float *)z, gz, 2, (int64_t[]){N, V});
    et_tensor_wrap(&W, "eye", w, NULL, 2, (int64_t[]){V, V});
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    et_tensor *l = et_kd_loss(&t, "kd", &X, &W, tg, o);
    assert_non_null(l);
    const float loss = l->data[0];
    assert_int_equal(et_tape_backward(&t, l), 0);
    et_tape_free(&t);
    free(w);
    free(gw);
    return loss;
}

static void test_golden_topk(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "golden/kd_topk.h5");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    float *z = malloc(sizeof(float) * GN * GV), *gz = malloc(sizeof(float) * GN * GV);
    double *ref = malloc(sizeof(double) * GN * GV);
    int32_t tg[GN], *ids = malloc(sizeof(int32_t) * GN * GV);
    uint8_t mask[GN];
    float *lp = malloc(sizeof(float) * GN * GV);
    assert_true(z && gz && ref && ids && lp);
    assert_int_equal(read_ds(f, "student_logits", H5T_NATIVE_FLOAT, z), 0);
    assert_int_equal(read_ds(f, "targets", H5T_NATIVE_INT32, tg), 0);
    assert_int_equal(read_ds(f, "mask", H5T_NATIVE_UINT8, mask), 0);
    static const struct { const char *grp; int k; float T; } cases[] = {
        {"teacher_T1_k16", 16, 1}, {"teacher_T1_k64", 64, 1}, {"teacher_T1_k512", 512, 1},
        {"teacher_T2_k16", 16, 2}, {"teacher_T2_k64", 64, 2}, {"teacher_T2_k512", 512, 2}};
    static const struct { const char *name; int kind; float alpha; } kinds[] = {
        {"forward_kl", ET_KD_FORWARD, 1.0f}, {"reverse_kl", ET_KD_REVERSE, 1.0f},
        {"mixed_alpha0.7_forward", ET_KD_FORWARD, 0.7f}};
    int n_checked = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char nm[256];
        snprintf(nm, sizeof nm, "%s/topk_ids", cases[c].grp);
        assert_int_equal(read_ds(f, nm, H5T_NATIVE_INT32, ids), 0);
        snprintf(nm, sizeof nm, "%s/topk_logprobs", cases[c].grp);
        assert_int_equal(read_ds(f, nm, H5T_NATIVE_FLOAT, lp), 0); /* float16 -> float: exact */
        for (size_t q = 0; q < sizeof kinds / sizeof kinds[0]; q++) {
            if (kinds[q].alpha < 1.0f && cases[c].T != 1.0f) continue; /* mixed: T = 1 only */
            double loss_ref;
            snprintf(nm, sizeof nm, "%s/%s/loss", cases[c].grp, kinds[q].name);
            assert_int_equal(read_ds(f, nm, H5T_NATIVE_DOUBLE, &loss_ref), 0);
            snprintf(nm, sizeof nm, "%s/%s/grad_student_logits", cases[c].grp, kinds[q].name);
            assert_int_equal(read_ds(f, nm, H5T_NATIVE_DOUBLE, ref), 0);
            et_kd_opts o = {.kind = kinds[q].kind, .temperature = cases[c].T, .alpha = kinds[q].alpha,
                            .mask = mask, .k = cases[c].k, .ids = ids, .logprobs = lp, .chunk_rows = 7};
            const float loss = kd_on_logits(z, gz, GN, GV, tg, &o);
            /* relative to the gradient's scale (max |ref|): float32 cannot do better
               on entries many orders below it; entries within 1% of it are also
               held to 1e-5 of their own size */
            double gmax = 0, gerr = 0, gbig = 0;
            for (int i = 0; i < GN * GV; i++) gmax = fmax(gmax, fabs(ref[i]));
            for (int i = 0; i < GN * GV; i++) {
                gerr = fmax(gerr, fabs(gz[i] - ref[i]) / gmax);
                if (fabs(ref[i]) > 1e-2 * gmax) gbig = fmax(gbig, fabs(gz[i] - ref[i]) / fabs(ref[i]));
            }
            gerr = fmax(gerr, gbig);
            const double lerr = fabs(loss - loss_ref) / fabs(loss_ref);
            printf("  %-16s %-24s loss %.8f (ref %.8f, rel %.1e)  grad rel err %.1e\n", cases[c].grp, kinds[q].name,
                   loss, loss_ref, lerr, gerr);
            if (lerr > 1e-5) fail_msg("%s %s: loss %.9g vs %.9g", cases[c].grp, kinds[q].name, loss, loss_ref);
            if (gerr > 1e-5) fail_msg("%s %s: gradient relative error %.3g", cases[c].grp, kinds[q].name, gerr);
            n_checked++;
        }
    }
    assert_int_equal(n_checked, 15);
    H5Fclose(f);
    free(z), free(gz), free(ref), free(ids), free(lp);
}

/* Random Sampling KD: K draws from the teacher with weights count/K; the
 * average over many draws of the loss and of its gradient is the
 * full-vocabulary forward KL and its gradient (the estimator is unbiased). */
static void test_sampled_unbiased(void **state) {
    (void)state;
    enum { N = 3, V = 23, K = 12, M = 3000 };
    const float T = 1.5f;
    et_xoshiro r;
    et_xoshiro_seed(&r, 7);
    float z[N * V], zt[N * V], g[N * V], gfull[N * V];
    double p[N][V], gsum[N * V] = {0}, lsum = 0;
    for (int i = 0; i < N * V; i++) z[i] = (float)(2 * et_xoshiro_normal(&r)), zt[i] = (float)(2 * et_xoshiro_normal(&r));
    for (int i = 0; i < N; i++) {
        double m = -1e300, se = 0;
        for (int v = 0; v < V; v++) m = fmax(m, zt[i * V + v] / T);
        for (int v = 0; v < V; v++) se += exp(zt[i * V + v] / T - m);
        for (int v = 0; v < V; v++) p[i][v] = exp(zt[i * V + v] / T - m) / se;
    }
    /* the exact KL: an online ("dense") teacher whose hidden states are its logits */
    float eye[V * V] = {0};
    for (int v = 0; v < V; v++) eye[v * V + v] = 1.0f;
    et_tensor TX, TW;
    et_tensor_wrap(&TX, "zt", zt, NULL, 2, (int64_t[]){N, V});
    et_tensor_wrap(&TW, "eye", eye, NULL, 2, (int64_t[]){V, V});
    et_kd_opts full = {.kind = ET_KD_FORWARD, .temperature = T, .alpha = 1, .teacher_x = &TX, .teacher_w = &TW};
    const float lfull = kd_on_logits(z, gfull, N, V, NULL, &full);
    int32_t ids[N * K];
    float lp[N * K], w[N * K];
    for (int s = 0; s < M; s++) {
        for (int i = 0; i < N; i++) {
            int cnt[V] = {0}, n = 0;
            for (int d = 0; d < K; d++) {
                double u = et_xoshiro_uniform(&r), c = 0;
                int v = 0;
                while (v < V - 1 && (c += p[i][v]) <= u) v++;
                cnt[v]++;
            }
            for (int v = 0; v < V; v++)
                if (cnt[v]) ids[i * K + n] = v, lp[i * K + n] = (float)log(p[i][v]), w[i * K + n] = (float)cnt[v] / K, n++;
            for (; n < K; n++) ids[i * K + n] = 0, lp[i * K + n] = 0, w[i * K + n] = 0; /* unused slots */
        }
        et_kd_opts o = {.kind = ET_KD_FORWARD, .temperature = T, .alpha = 1, .k = K, .ids = ids, .logprobs = lp, .weights = w};
        lsum += kd_on_logits(z, g, N, V, NULL, &o);
        for (int i = 0; i < N * V; i++) gsum[i] += g[i];
    }
    double gerr = 0, gmax = 0;
    for (int i = 0; i < N * V; i++) gerr = fmax(gerr, fabs(gsum[i] / M - gfull[i])), gmax = fmax(gmax, fabs(gfull[i]));
    printf("  sampled (K %d, %d draws): mean loss %.5f vs full KL %.5f; max |mean grad - full grad| %.2e (max |grad| %.2e)\n",
           K, M, lsum / M, lfull, gerr, gmax);
    /* standard errors here: about 0.01 for the loss, 0.003 for the gradient */
    assert_true(fabs(lsum / M - lfull) < 0.05 * lfull);
    assert_true(gerr < 0.05 * gmax);
    /* and a single draw is not the full KL (the test can fail) */
    assert_true(fabs(lfull) > 0.05);
}

static void test_kd_bad_input(void **state) {
    (void)state;
    float z[2 * 4] = {0}, gz[2 * 4], eye[16] = {0};
    for (int v = 0; v < 4; v++) eye[v * 4 + v] = 1;
    int32_t ids[2 * 2] = {0, 1, 2, 7};
    float lp[2 * 2] = {-0.5f, -1.0f, -0.2f, -2.0f};
    et_tensor X, W;
    et_tensor_wrap(&X, "z", z, gz, 2, (int64_t[]){2, 4});
    et_tensor_wrap(&W, "eye", eye, NULL, 2, (int64_t[]){4, 4});
    et_tape t;
    et_err e = {0};
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    et_kd_opts o = {.kind = ET_KD_FORWARD, .temperature = 1, .alpha = 1, .k = 2, .ids = ids, .logprobs = lp};
    assert_null(et_kd_loss(&t, "kd", &X, &W, NULL, &o)); /* id 7 >= V 4 */
    assert_int_equal(et_tape_status(&t, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "row 1"));
    et_tape_reset(&t);
    ids[3] = 3, lp[1] = NAN;
    assert_null(et_kd_loss(&t, "kd", &X, &W, NULL, &o));
    et_tape_reset(&t);
    lp[1] = -1.0f, o.k = 5; /* k > V */
    assert_null(et_kd_loss(&t, "kd", &X, &W, NULL, &o));
    et_tape_reset(&t);
    o.k = 2, o.temperature = 0;
    assert_null(et_kd_loss(&t, "kd", &X, &W, NULL, &o));
    et_tape_reset(&t);
    o.temperature = 1, o.weights = lp, o.kind = ET_KD_REVERSE;
    assert_null(et_kd_loss(&t, "kd", &X, &W, NULL, &o));
    et_tape_reset(&t);
    o.weights = NULL, o.kind = ET_KD_FORWARD;
    assert_non_null(et_kd_loss(&t, "kd", &X, &W, NULL, &o));
    et_tape_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_topk),
        cmocka_unit_test(test_sampled_unbiased),
        cmocka_unit_test(test_kd_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
