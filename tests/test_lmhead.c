/* tests/test_lmhead.c — train/op_lmhead.h (frozen LM head + cross-entropy,
 * gradient formed in the forward) against independent computations:
 *  - a double reference of the loss, and central differences of it for
 *    every element of dloss/dx (f32 precision, several chunks, a mask, a
 *    skipped target, an explicit norm, an upstream gradient != 1);
 *  - the unchunked et_cross_entropy (train/ops.h) on the same inputs: loss,
 *    row losses, logits, dx;
 *  - bf16 precision: the same double reference on bf16-rounded x and w
 *    (logits) and on bf16-rounded dlogits and w (dx). */
#include "testutil.h"

#include <math.h>

#include "../train/gemm.h"
#include "../train/op_lmhead.h"
#include "../train/threads.h"

enum { N = 13, C = 40, V = 70 };

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double bf16r(double v) { return et_bf16_to_fp32(et_fp32_to_bf16((float)v)); }

typedef struct fixture {
    float x[N * C], w[V * C];
    int32_t tg[N];
    uint8_t mask[N];
} fixture;

static void make_fixture(fixture *f) {
    for (int i = 0; i < N * C; i++) f->x[i] = (float)urand();
    for (int i = 0; i < V * C; i++) f->w[i] = (float)(0.5 * urand());
    for (int i = 0; i < N; i++) f->tg[i] = (int32_t)((i * 37 + 5) % V), f->mask[i] = i % 5 != 2;
    f->tg[4] = -1; /* a row left out by its target */
}

/* double loss; round: bf16-round x and w first.  Row logits into z [N, V] when set. */
static double ref_loss(const fixture *f, const double *x, const uint8_t *mask, double norm, int round, double *z) {
    double total = 0;
    int n_in = 0;
    for (int i = 0; i < N; i++) {
        double zi[V], m = -1e300, se = 0;
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int c = 0; c < C; c++)
                s += round ? bf16r(x[i * C + c]) * bf16r(f->w[v * C + c]) : x[i * C + c] * f->w[v * C + c];
            zi[v] = s;
            m = fmax(m, s);
            if (z) z[i * V + v] = s;
        }
        for (int v = 0; v < V; v++) se += exp(zi[v] - m);
        if (f->tg[i] < 0 || (mask && !mask[i])) continue;
        total += m + log(se) - zi[f->tg[i]];
        n_in++;
    }
    return total / (norm > 0 ? norm : n_in);
}

/* The op on f; returns loss; dx gets g * dloss/dx. */
static float run_op(const fixture *f, int precision, const et_xent_opts *xo, float g, float *dx, float *row_loss) {
    float xs[N * C];
    memcpy(xs, f->x, sizeof xs);
    memset(dx, 0, sizeof(float) * N * C);
    et_tensor x, w;
    et_tensor_wrap(&x, "x", xs, dx, 2, (int64_t[]){N, C});
    et_tensor_wrap(&w, "output.weight", (float *)f->w, NULL, 2, (int64_t[]){V, C});
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    t.gemm_precision = precision;
    et_xent_opts o = *xo;
    o.row_loss_out = row_loss;
    et_tensor *loss = et_lm_head_xent(&t, "loss", &x, &w, f->tg, &o);
    et_err e = {0};
    if (et_tape_status(&t, &e)) fail_msg("%s", e.msg);
    const float l = loss->data[0];
    assert_int_equal(et_tape_backward_seed(&t, loss, &g), 0);
    et_tape_free(&t);
    return l;
}

static void test_f32_vs_finite_differences(void **s) {
    (void)s;
    fixture f;
    make_fixture(&f);
    const et_xent_opts cases[] = {{.chunk_rows = 0}, {.chunk_rows = 3, .mask = f.mask}, {.chunk_rows = 5, .norm = 20.0}};
    for (int k = 0; k < 3; k++) {
        float dx[N * C], rl[N];
        const float g = k == 2 ? 0.7f : 1.0f;
        const float loss = run_op(&f, ET_GEMM_F32, &cases[k], g, dx, rl);
        double xd[N * C], fdmax = 0, err = 0;
        for (int i = 0; i < N * C; i++) xd[i] = f.x[i];
        const double lref = ref_loss(&f, xd, cases[k].mask, cases[k].norm, 0, NULL);
        for (int i = 0; i < N * C; i++) {
            const double x0 = xd[i], h = 1e-4;
            xd[i] = x0 + h;
            const double lp = ref_loss(&f, xd, cases[k].mask, cases[k].norm, 0, NULL);
            xd[i] = x0 - h;
            const double lm = ref_loss(&f, xd, cases[k].mask, cases[k].norm, 0, NULL);
            xd[i] = x0;
            const double fd = g * (lp - lm) / (2 * h);
            fdmax = fmax(fdmax, fabs(fd));
            err = fmax(err, fabs(dx[i] - fd));
        }
        printf("  f32, chunk %d%s%s, upstream %.1f: loss %.8f (ref %.8f), dx vs central differences %.1e\n",
               cases[k].chunk_rows, cases[k].mask ? ", mask" : "", cases[k].norm > 0 ? ", norm 20" : "", (double)g,
               (double)loss, lref, err / fdmax);
        assert_true(fabs(loss - lref) < 1e-5 * fmax(1.0, fabs(lref)));
        assert_true(err / fdmax < 1e-5);
        assert_true(rl[4] == 0.0f);
    }
}

/* The same numbers as the unchunked et_cross_entropy (train/ops.h). */
static void test_matches_cross_entropy(void **s) {
    (void)s;
    fixture f;
    make_fixture(&f);
    float logits_a[N * V], logits_b[N * V], rl_a[N], rl_b[N], dx_a[N * C], dx_b[N * C];
    et_xent_opts xo = {.chunk_rows = 4, .mask = f.mask, .logits_out = logits_a};
    const float la = run_op(&f, ET_GEMM_F32, &xo, 1.0f, dx_a, rl_a);

    float xs[N * C];
    memcpy(xs, f.x, sizeof xs);
    memset(dx_b, 0, sizeof dx_b);
    et_tensor x, w;
    et_tensor_wrap(&x, "x", xs, dx_b, 2, (int64_t[]){N, C});
    et_tensor_wrap(&w, "output.weight", f.w, NULL, 2, (int64_t[]){V, C});
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    et_xent_opts xb = {.chunk_rows = N, .mask = f.mask, .logits_out = logits_b, .row_loss_out = rl_b};
    et_tensor *loss = et_cross_entropy(&t, "loss", &x, &w, f.tg, &xb);
    assert_non_null(loss);
    const float lb = loss->data[0];
    assert_int_equal(et_tape_backward(&t, loss), 0);
    et_tape_free(&t);
    double dz = 0, dr = 0, dd = 0, dmax = 0;
    for (int i = 0; i < N * V; i++) dz = fmax(dz, fabs(logits_a[i] - logits_b[i]));
    for (int i = 0; i < N; i++) dr = fmax(dr, fabs(rl_a[i] - rl_b[i]));
    for (int i = 0; i < N * C; i++) dd = fmax(dd, fabs(dx_a[i] - dx_b[i])), dmax = fmax(dmax, fabs(dx_b[i]));
    printf("  vs et_cross_entropy: loss %.8f vs %.8f, logits %.1e, row losses %.1e, dx %.1e (relative)\n", (double)la,
           (double)lb, dz, dr, dd / dmax);
    assert_true(fabs(la - lb) < 1e-6 * fmax(1.0, fabs(lb)));
    assert_true(dz < 1e-5 && dr < 1e-5 && dd / dmax < 1e-5);
}

/* bf16 precision against the double reference on rounded operands. */
static void bf16_check(void) {
    fixture f;
    make_fixture(&f);
    float dx[N * C], rl[N];
    const et_xent_opts xo = {.chunk_rows = 4};
    const float loss = run_op(&f, ET_GEMM_BF16, &xo, 1.0f, dx, rl);
    double xd[N * C], z[N * V];
    for (int i = 0; i < N * C; i++) xd[i] = f.x[i];
    const double lr = ref_loss(&f, xd, NULL, 0, 1, z), le = ref_loss(&f, xd, NULL, 0, 0, NULL);
    /* dx = sum_v bf16(dz_v) bf16(w_v): dz from the rounded logits */
    int n_in = 0;
    for (int i = 0; i < N; i++) n_in += f.tg[i] >= 0;
    double err = 0, err_exact = 0, dmax = 0;
    for (int i = 0; i < N; i++) {
        double m = -1e300, se = 0, dzr[V], dze[V];
        for (int v = 0; v < V; v++) m = fmax(m, z[i * V + v]);
        for (int v = 0; v < V; v++) se += exp(z[i * V + v] - m);
        for (int v = 0; v < V; v++) {
            double d = f.tg[i] < 0 ? 0 : (exp(z[i * V + v] - m) / se - (v == f.tg[i])) / n_in;
            dze[v] = d;
            dzr[v] = bf16r(d);
        }
        for (int c = 0; c < C; c++) {
            double sr = 0, se2 = 0;
            for (int v = 0; v < V; v++) sr += dzr[v] * bf16r(f.w[v * C + c]), se2 += dze[v] * f.w[v * C + c];
            dmax = fmax(dmax, fabs(sr));
            err = fmax(err, fabs(dx[i * C + c] - sr));
            err_exact = fmax(err_exact, fabs(dx[i * C + c] - se2));
        }
    }
    printf("  bf16 (%s): loss %.8f, rounded ref %.8f, unrounded %.8f; dx vs rounded ref %.1e, vs unrounded %.1e\n",
           et_gemm_bf16_native() ? "native" : "portable", (double)loss, lr, le, err / dmax, err_exact / dmax);
    assert_true(fabs(loss - lr) < 2e-6 * fmax(1.0, fabs(lr)));
    assert_true(fabs(loss - le) > 5e-6 * fabs(le)); /* the rounding is there */
    assert_true(err / dmax < 1e-4);
    assert_true(err_exact / dmax > 1e-3);
}

static void test_bf16(void **s) {
    (void)s;
    bf16_check();
    if (et_gemm_bf16_native()) {
        et_gemm_force_portable(1);
        bf16_check();
        et_gemm_force_portable(0);
    }
}

static void test_bad_inputs(void **s) {
    (void)s;
    fixture f;
    make_fixture(&f);
    et_tensor x, w;
    et_tensor_wrap(&x, "x", f.x, NULL, 2, (int64_t[]){N, C});
    et_tensor_wrap(&w, "output.weight", f.w, NULL, 2, (int64_t[]){V / 2, 2 * C});
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    assert_null(et_lm_head_xent(&t, "loss", &x, &w, f.tg, NULL));
    assert_int_equal(et_tape_status(&t, NULL), ET_EINPUT);
    printf("  %s\n", t.err.msg);
    et_tape_reset(&t);
    et_tensor_wrap(&w, "output.weight", f.w, NULL, 2, (int64_t[]){V, C});
    f.tg[3] = V;
    assert_null(et_lm_head_xent(&t, "loss", &x, &w, f.tg, NULL));
    printf("  %s\n", t.err.msg);
    assert_non_null(strstr(t.err.msg, "row 3"));
    et_tape_free(&t);
}

int main(void) {
    et_omp_passive_reexec();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_vs_finite_differences),
        cmocka_unit_test(test_matches_cross_entropy),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
