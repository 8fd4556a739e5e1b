/* tests/test_lora_op.c — train/op_lora.h against an independent double
 * reference.
 *
 * Reference (double): y = x W^T + b + scale * (drop(x) A^T) B^T with W the
 * dequantized weight (quant/quant.h), drop(x)_i = x_i * et_lora_dropout_mult.
 * Objective J = sum_k R_k y_k with fixed random R; the op's backward is
 * seeded with R and every input's gradient is compared with central
 * differences of J on the reference (x, b, lora_a, lora_b):
 *   max_i |g_i - fd_i| / max_i |fd_i| < 1e-5.
 * The forward of a quantized W is compared with the op on an F32 copy of
 * the dequantized W (same numbers, so only float rounding may differ), and
 * the harness is shown to catch a corrupted gradient. */
#include "testutil.h"

#include <math.h>

#include "../export/gguf.h"
#include "../quant/quant.h"
#include "../train/gemm.h"
#include "../train/op_lora.h"
#include "../train/threads.h"

#define GRAD_TOL 1e-5
#define FWD_TOL 2e-6

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static double urand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

typedef struct lcase {
    const char *name;
    uint32_t type;      /* of W */
    int M, K, N, r;     /* x [M, K], W [N, K], A [r, K], B [N, r] */
    int has_bias, has_lora;
    float scale, dropout;
    uint64_t seed;
    size_t scratch_floats; /* 0: arena scratch */
} lcase;

typedef struct lres {
    double fwd_err;     /* vs the double reference, relative to max(1, max|y|) */
    double grad_err[4]; /* x, b, A, B */
    double worst;
    double vs_f32;      /* max |y - y_f32(dequantized W)| / max(1, max|y|) */
} lres;

/* double reference; Wd [N, K] dequantized */
static void ref_forward(const lcase *c, const double *x, const double *Wd, const double *b, const double *A,
                        const double *B, const double *mult, double *y) {
    const int M = c->M, K = c->K, N = c->N, r = c->r;
    double u[64];
    for (int i = 0; i < M; i++) {
        if (c->has_lora)
            for (int q = 0; q < r; q++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += x[i * K + k] * mult[i * K + k] * A[q * K + k];
                u[q] = s;
            }
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += x[i * K + k] * Wd[j * K + k];
            if (c->has_bias) s += b[j];
            if (c->has_lora) {
                double l = 0;
                for (int q = 0; q < r; q++) l += u[q] * B[j * r + q];
                s += c->scale * l;
            }
            y[i * N + j] = s;
        }
    }
}

static double objective(const lcase *c, double *const *in, const double *Wd, const double *mult, const double *R,
                        double *y) {
    ref_forward(c, in[0], Wd, in[1], in[2], in[3], mult, y);
    double J = 0;
    for (int k = 0; k < c->M * c->N; k++) J += R[k] * y[k];
    return J;
}

/* corrupt: add 1% of max|fd| to one element of x's gradient */
static lres run_lcase(const lcase *c, int corrupt) {
    lres res = {0};
    const int M = c->M, K = c->K, N = c->N, r = c->r;
    const size_t n_in[4] = {(size_t)M * K, (size_t)N, (size_t)r * K, (size_t)N * r};
    /* W: random floats stored in c->type, and its dequantized values */
    float *wf = malloc(sizeof(float) * N * K), *wdq = malloc(sizeof(float) * N * K);
    for (int k = 0; k < N * K; k++) wf[k] = (float)(0.5 * urand());
    const uint64_t wbytes = et_quant_row_bytes(c->type, (int64_t)N * K);
    assert_true(wbytes > 0);
    uint8_t *wq = malloc(wbytes);
    assert_int_equal(et_quantize_row(c->type, wf, wq, (int64_t)N * K), 0);
    assert_int_equal(et_dequantize_row(c->type, wq, wdq, (int64_t)N * K), 0);
    double *Wd = malloc(sizeof(double) * N * K);
    for (int k = 0; k < N * K; k++) Wd[k] = wdq[k];

    double *xd[4];
    float *xf[4], *gf[4];
    et_tensor wrap[4];
    int64_t shapes[4][2] = {{M, K}, {N, 0}, {r, K}, {N, r}};
    for (int i = 0; i < 4; i++) {
        xd[i] = malloc(n_in[i] * sizeof(double));
        xf[i] = malloc(n_in[i] * sizeof(float));
        gf[i] = calloc(n_in[i], sizeof(float));
        for (size_t k = 0; k < n_in[i]; k++) xf[i][k] = (float)urand(), xd[i][k] = xf[i][k];
        et_tensor_wrap(&wrap[i], i == 0 ? "x" : i == 1 ? "b" : i == 2 ? "lora_a" : "lora_b", xf[i], gf[i],
                       i == 1 ? 1 : 2, shapes[i]);
    }
    double *mult = malloc(sizeof(double) * M * K);
    for (int k = 0; k < M * K; k++) mult[k] = c->has_lora ? et_lora_dropout_mult(c->seed, (uint64_t)k, c->dropout) : 1;
    double *R = malloc(sizeof(double) * M * N), *yref = malloc(sizeof(double) * M * N);
    float *Rf = malloc(sizeof(float) * M * N);
    for (int k = 0; k < M * N; k++) Rf[k] = (float)urand(), R[k] = Rf[k];

    float *scratch = c->scratch_floats ? malloc(c->scratch_floats * sizeof(float)) : NULL;
    et_lora_opts o = {.scale = c->scale, .dropout = c->dropout, .seed = c->seed, .scratch = scratch,
                      .scratch_floats = c->scratch_floats};
    et_frozen_w w = {.type = c->type, .data = wq, .n_out = N, .n_in = K};
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    et_tensor *bb = c->has_bias ? &wrap[1] : NULL;
    et_tensor *y = c->has_lora ? et_lora_linear(&t, "y", &wrap[0], &w, bb, &wrap[2], &wrap[3], &o)
                               : et_frozen_matmul(&t, "y", &wrap[0], &w, bb, &o);
    et_err e = {0};
    if (et_tape_status(&t, &e)) fail_msg("%s: %s", c->name, e.msg);
    assert_int_equal(y->n, (size_t)M * N);
    assert_int_equal(y->shape[0], M);
    assert_int_equal(y->shape[1], N);

    /* forward vs reference, and vs the same op on an F32 copy of the dequantized W */
    objective(c, xd, Wd, mult, R, yref);
    double ymax = 1, d = 0;
    for (int k = 0; k < M * N; k++) ymax = fmax(ymax, fabs(yref[k]));
    for (int k = 0; k < M * N; k++) d = fmax(d, fabs(y->data[k] - yref[k]));
    res.fwd_err = d / ymax;
    et_tape t2;
    assert_int_equal(et_tape_init(&t2, 0, NULL), 0);
    et_frozen_w w32 = {.type = GGML_TYPE_F32, .data = wdq, .n_out = N, .n_in = K};
    et_tensor *y32 = c->has_lora ? et_lora_linear(&t2, "y32", &wrap[0], &w32, bb, &wrap[2], &wrap[3], &o)
                                 : et_frozen_matmul(&t2, "y32", &wrap[0], &w32, bb, &o);
    assert_non_null(y32);
    d = 0;
    for (int k = 0; k < M * N; k++) d = fmax(d, fabs(y->data[k] - y32->data[k]));
    res.vs_f32 = d / ymax;
    et_tape_free(&t2);

    assert_int_equal(et_tape_backward_seed(&t, y, Rf), 0);
    for (int i = 0; i < 4; i++) {
        if ((i == 1 && !c->has_bias) || (i >= 2 && !c->has_lora)) continue;
        double *fd = malloc(n_in[i] * sizeof(double));
        double fmaxv = 0, emax = 0;
        for (size_t k = 0; k < n_in[i]; k++) {
            const double x0 = xd[i][k], h = 1e-4 * fmax(1.0, fabs(x0));
            xd[i][k] = x0 + h;
            const double jp = objective(c, xd, Wd, mult, R, yref);
            xd[i][k] = x0 - h;
            const double jm = objective(c, xd, Wd, mult, R, yref);
            xd[i][k] = x0;
            fd[k] = (jp - jm) / (2 * h);
            fmaxv = fmax(fmaxv, fabs(fd[k]));
        }
        if (corrupt && i == 0) gf[0][n_in[0] / 2] += (float)(0.01 * fmaxv);
        for (size_t k = 0; k < n_in[i]; k++) emax = fmax(emax, fabs(gf[i][k] - fd[k]));
        res.grad_err[i] = fmaxv > 0 ? emax / fmaxv : (emax > 1e-12 ? 1.0 : 0.0);
        res.worst = fmax(res.worst, res.grad_err[i]);
        free(fd);
    }
    et_tape_free(&t);
    for (int i = 0; i < 4; i++) free(xd[i]), free(xf[i]), free(gf[i]);
    free(wf), free(wdq), free(wq), free(Wd), free(mult), free(R), free(yref), free(Rf), free(scratch);
    return res;
}

static void expect_ok(const lcase *c) {
    lres r = run_lcase(c, 0);
    printf("  %-28s fwd %.1e  vs F32(deq W) %.1e  grad x %.1e b %.1e A %.1e B %.1e\n", c->name, r.fwd_err,
           r.vs_f32, r.grad_err[0], r.grad_err[1], r.grad_err[2], r.grad_err[3]);
    assert_true(r.fwd_err < FWD_TOL);
    assert_true(r.vs_f32 < FWD_TOL);
    assert_true(r.worst < GRAD_TOL);
}

/* Sizes: K a multiple of 32 (Q8_0/Q4_0 blocks); the small scratch makes
 * W go through several tiles (N = 40 rows, 16 per tile) and dropout
 * through several row chunks (M = 21 rows, 16 per chunk). */
static void test_lora_f32(void **s) {
    (void)s;
    expect_ok(&(lcase){"f32 lora+bias", GGML_TYPE_F32, 21, 64, 40, 3, 1, 1, 2.0f, 0.0f, 0, 0});
    expect_ok(&(lcase){"f32 lora dropout 0.3", GGML_TYPE_F32, 21, 64, 40, 3, 1, 1, 1.5f, 0.3f, 7, 16 * 64});
    expect_ok(&(lcase){"f32 frozen matmul", GGML_TYPE_F32, 21, 64, 40, 0, 1, 0, 0, 0, 0, 0});
}

static void test_lora_quantized(void **s) {
    (void)s;
    expect_ok(&(lcase){"q8_0 lora, 3 tiles", GGML_TYPE_Q8_0, 21, 64, 40, 3, 0, 1, 2.0f, 0.0f, 0, 16 * 64});
    expect_ok(&(lcase){"q8_0 lora dropout, 3 tiles", GGML_TYPE_Q8_0, 21, 64, 40, 2, 1, 1, 0.7f, 0.25f, 99, 16 * 64});
    expect_ok(&(lcase){"q4_0 lora+bias, arena tile", GGML_TYPE_Q4_0, 21, 64, 40, 4, 1, 1, 2.0f, 0.0f, 0, 0});
    expect_ok(&(lcase){"q4_0 lora dropout, 5 tiles", GGML_TYPE_Q4_0, 21, 64, 40, 4, 0, 1, 2.0f, 0.1f, 3, 9 * 64});
    expect_ok(&(lcase){"f16 lora", GGML_TYPE_F16, 21, 64, 40, 3, 1, 1, 2.0f, 0.0f, 0, 16 * 64});
    expect_ok(&(lcase){"bf16 lora", GGML_TYPE_BF16, 21, 64, 40, 3, 1, 1, 2.0f, 0.0f, 0, 16 * 64});
    expect_ok(&(lcase){"q8_0 frozen matmul", GGML_TYPE_Q8_0, 21, 64, 40, 0, 1, 0, 0, 0, 0, 16 * 64});
}

static void test_fd_catches_corruption(void **s) {
    (void)s;
    lres r = run_lcase(&(lcase){"corrupt", GGML_TYPE_Q8_0, 21, 64, 40, 3, 1, 1, 2.0f, 0.2f, 5, 16 * 64}, 1);
    printf("  corrupted dx: measured error %.1e (must exceed %.0e)\n", r.grad_err[0], GRAD_TOL);
    assert_true(r.grad_err[0] > 100 * GRAD_TOL);
}

/* Quantized W gives the same result as an F32 W that holds its dequantized
 * values, on a bigger case (many tiles, 3-D x). */
static void test_quantized_equals_dequantized_f32(void **s) {
    (void)s;
    enum { B = 3, T = 50, K = 96, N = 300, R = 8 };
    float *x = malloc(sizeof(float) * B * T * K), *w = malloc(sizeof(float) * N * K), *wd = malloc(sizeof(float) * N * K);
    float *a = malloc(sizeof(float) * R * K), *bb = malloc(sizeof(float) * N * R);
    for (int i = 0; i < B * T * K; i++) x[i] = (float)urand();
    for (int i = 0; i < N * K; i++) w[i] = (float)(0.1 * urand());
    for (int i = 0; i < R * K; i++) a[i] = (float)urand();
    for (int i = 0; i < N * R; i++) bb[i] = (float)urand();
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_F16};
    for (int ti = 0; ti < 3; ti++) {
        uint8_t *q = malloc(et_quant_row_bytes(types[ti], (int64_t)N * K));
        et_quantize_row(types[ti], w, q, (int64_t)N * K);
        et_dequantize_row(types[ti], q, wd, (int64_t)N * K);
        et_tensor xt, at, bt;
        et_tensor_wrap(&xt, "x", x, NULL, 3, (int64_t[]){B, T, K});
        et_tensor_wrap(&at, "a", a, NULL, 2, (int64_t[]){R, K});
        et_tensor_wrap(&bt, "b", bb, NULL, 2, (int64_t[]){N, R});
        et_lora_opts o = {.scale = 2.0f};
        et_tape t;
        assert_int_equal(et_tape_init(&t, 0, NULL), 0);
        et_tensor *yq = et_lora_linear(&t, "q", &xt, &(et_frozen_w){types[ti], q, N, K}, NULL, &at, &bt, &o);
        et_tensor *yf = et_lora_linear(&t, "f", &xt, &(et_frozen_w){GGML_TYPE_F32, wd, N, K}, NULL, &at, &bt, &o);
        assert_non_null(yq);
        assert_non_null(yf);
        assert_int_equal(yq->ndim, 3);
        assert_int_equal(yq->shape[2], N);
        double d = 0, m = 1;
        for (size_t i = 0; i < yq->n; i++) d = fmax(d, fabs(yq->data[i] - yf->data[i])), m = fmax(m, fabs(yf->data[i]));
        printf("  type %u, %d tiles of 256 rows: max |y_q - y_f32| / max|y| = %.1e\n", types[ti], (N + 255) / 256, d / m);
        assert_true(d / m < 1e-6);
        et_tape_free(&t);
        free(q);
    }
    free(x), free(w), free(wd), free(a), free(bb);
}

/* Tape precision bf16 (train/gemm.h): the two products with W use
 * bf16-rounded operands (x and W forward, dy and W backward) with f32
 * accumulation; the LoRA branch stays f32.  Reference in double on the
 * rounded operands: y = bf16(x) bf16(W)^T + b + scale drop(x) A^T B^T,
 * dx = bf16(dy) bf16(W) + drop'(scale dy B A), dA, dB exact.  The errors
 * must be f32-accumulation small (< 2e-5 of the largest value) while the
 * same outputs differ from the unrounded reference by much more (> 1e-4):
 * the rounding really happens, and only where it should.  K = 320 crosses
 * the native kernel's 256-deep K blocks; sizes are not multiples of its
 * 12 x 32 tile. */
static double bf16r(double v) { return et_bf16_to_fp32(et_fp32_to_bf16((float)v)); }

static void bf16_case(uint32_t type, float dropout, uint64_t seed) {
    const int M = 37, K = 320, N = 70, r = 4;
    const float scale = 1.5f;
    float *xf = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K), *wdq = malloc(sizeof(float) * N * K);
    float *bf = malloc(sizeof(float) * N), *af = malloc(sizeof(float) * r * K), *bbf = malloc(sizeof(float) * N * r);
    float *dyf = malloc(sizeof(float) * M * N);
    float *gx = calloc((size_t)M * K, sizeof(float)), *gb = calloc(N, sizeof(float));
    float *ga = calloc((size_t)r * K, sizeof(float)), *gbb = calloc((size_t)N * r, sizeof(float));
    for (int k = 0; k < M * K; k++) xf[k] = (float)urand();
    for (int k = 0; k < N * K; k++) wf[k] = (float)(0.5 * urand());
    for (int k = 0; k < N; k++) bf[k] = (float)urand();
    for (int k = 0; k < r * K; k++) af[k] = (float)(0.2 * urand());
    for (int k = 0; k < N * r; k++) bbf[k] = (float)(0.2 * urand());
    for (int k = 0; k < M * N; k++) dyf[k] = (float)urand();
    uint8_t *wq = malloc(et_quant_row_bytes(type, (int64_t)N * K));
    assert_int_equal(et_quantize_row(type, wf, wq, (int64_t)N * K), 0);
    assert_int_equal(et_dequantize_row(type, wq, wdq, (int64_t)N * K), 0);

    et_tensor x, b, A, B;
    et_tensor_wrap(&x, "x", xf, gx, 2, (int64_t[]){M, K});
    et_tensor_wrap(&b, "b", bf, gb, 1, (int64_t[]){N});
    et_tensor_wrap(&A, "lora_a", af, ga, 2, (int64_t[]){r, K});
    et_tensor_wrap(&B, "lora_b", bbf, gbb, 2, (int64_t[]){N, r});
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    t.gemm_precision = ET_GEMM_BF16;
    et_frozen_w w = {.type = type, .data = wq, .n_out = N, .n_in = K};
    et_lora_opts o = {.scale = scale, .dropout = dropout, .seed = seed};
    et_tensor *y = et_lora_linear(&t, "y", &x, &w, &b, &A, &B, &o);
    et_err e = {0};
    if (et_tape_status(&t, &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_tape_backward_seed(&t, y, dyf), 0);

    /* double references: rounded (what bf16 precision computes) and exact */
    double ey = 0, ey_exact = 0, ymax = 1, edx = 0, edx_exact = 0, dxmax = 1, ea = 0, amax = 0, eb = 0, bmax = 0;
    double *u = malloc(sizeof(double) * M * r), *du = malloc(sizeof(double) * M * r);
    for (int i = 0; i < M; i++)
        for (int q = 0; q < r; q++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += xf[i * K + k] * et_lora_dropout_mult(seed, (uint64_t)(i * K + k), dropout) * af[q * K + k];
            u[i * r + q] = s;
        }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double sr = 0, se = 0, l = 0;
            for (int k = 0; k < K; k++) {
                sr += bf16r(xf[i * K + k]) * bf16r(wdq[j * K + k]);
                se += (double)xf[i * K + k] * wdq[j * K + k];
            }
            for (int q = 0; q < r; q++) l += u[i * r + q] * bbf[j * r + q];
            const double yr = sr + bf[j] + scale * l, ye = se + bf[j] + scale * l;
            ymax = fmax(ymax, fabs(yr));
            ey = fmax(ey, fabs(y->data[i * N + j] - yr));
            ey_exact = fmax(ey_exact, fabs(y->data[i * N + j] - ye));
        }
    for (int i = 0; i < M; i++)
        for (int q = 0; q < r; q++) {
            double s = 0;
            for (int j = 0; j < N; j++) s += scale * (double)dyf[i * N + j] * bbf[j * r + q];
            du[i * r + q] = s;
        }
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            double sr = 0, se = 0, l = 0;
            for (int j = 0; j < N; j++) {
                sr += bf16r(dyf[i * N + j]) * bf16r(wdq[j * K + k]);
                se += (double)dyf[i * N + j] * wdq[j * K + k];
            }
            for (int q = 0; q < r; q++) l += du[i * r + q] * af[q * K + k];
            l *= et_lora_dropout_mult(seed, (uint64_t)(i * K + k), dropout);
            dxmax = fmax(dxmax, fabs(sr + l));
            edx = fmax(edx, fabs(gx[i * K + k] - (sr + l)));
            edx_exact = fmax(edx_exact, fabs(gx[i * K + k] - (se + l)));
        }
    for (int q = 0; q < r; q++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int i = 0; i < M; i++) s += du[i * r + q] * xf[i * K + k] * et_lora_dropout_mult(seed, (uint64_t)(i * K + k), dropout);
            amax = fmax(amax, fabs(s));
            ea = fmax(ea, fabs(ga[q * K + k] - s));
        }
    for (int j = 0; j < N; j++)
        for (int q = 0; q < r; q++) {
            double s = 0;
            for (int i = 0; i < M; i++) s += scale * (double)dyf[i * N + j] * u[i * r + q];
            bmax = fmax(bmax, fabs(s));
            eb = fmax(eb, fabs(gbb[j * r + q] - s));
        }
    printf("  bf16 precision, W %-4s dropout %.2f: y %.1e (vs unrounded %.1e)  dx %.1e (vs unrounded %.1e)  "
           "dA %.1e dB %.1e\n", ggml_type_name(type), (double)dropout, ey / ymax, ey_exact / ymax, edx / dxmax,
           edx_exact / dxmax, ea / amax, eb / bmax);
    assert_true(ey / ymax < 2e-5);
    assert_true(edx / dxmax < 2e-5);
    assert_true(ey_exact / ymax > 1e-4);
    assert_true(edx_exact / dxmax > 1e-4);
    assert_true(ea / amax < 2e-5);
    assert_true(eb / bmax < 2e-5);
    et_tape_free(&t);
    free(xf), free(wf), free(wdq), free(bf), free(af), free(bbf), free(dyf), free(gx), free(gb), free(ga), free(gbb);
    free(wq), free(u), free(du);
}

static void test_lora_bf16_precision(void **s) {
    (void)s;
    bf16_case(GGML_TYPE_F32, 0.0f, 0);
    bf16_case(GGML_TYPE_BF16, 0.0f, 0);
    bf16_case(GGML_TYPE_BF16, 0.2f, 11);
    bf16_case(GGML_TYPE_Q8_0, 0.1f, 12);
    if (et_gemm_bf16_native()) { /* the same on the portable path */
        et_gemm_force_portable(1);
        bf16_case(GGML_TYPE_F32, 0.0f, 0);
        bf16_case(GGML_TYPE_BF16, 0.0f, 0);
        et_gemm_force_portable(0);
    }
}

static void test_dropout_mask(void **s) {
    (void)s;
    const float p = 0.3f;
    size_t dropped = 0, n = 200000;
    for (size_t i = 0; i < n; i++) {
        float m = et_lora_dropout_mult(42, i, p);
        assert_true(m == 0.0f || fabsf(m - 1.0f / (1.0f - p)) < 1e-6f);
        dropped += m == 0.0f;
    }
    const double frac = (double)dropped / n;
    printf("  dropout p=0.3: dropped fraction %.4f\n", frac);
    assert_true(fabs(frac - p) < 0.005);
    /* a different seed gives a different mask; p = 0 keeps everything */
    int differ = 0;
    for (size_t i = 0; i < 1000; i++) differ += et_lora_dropout_mult(42, i, p) != et_lora_dropout_mult(43, i, p);
    assert_true(differ > 100);
    assert_true(et_lora_dropout_mult(1, 5, 0.0f) == 1.0f);
}

static void test_bad_inputs(void **s) {
    (void)s;
    float x[4 * 64] = {0}, w[8 * 64] = {0}, a[2 * 64] = {0}, b[8 * 2] = {0};
    et_tensor xt, at, bt, bad;
    et_tensor_wrap(&xt, "x", x, NULL, 2, (int64_t[]){4, 64});
    et_tensor_wrap(&at, "a", a, NULL, 2, (int64_t[]){2, 64});
    et_tensor_wrap(&bt, "b", b, NULL, 2, (int64_t[]){8, 2});
    et_tensor_wrap(&bad, "bad", b, NULL, 2, (int64_t[]){2, 8});
    uint8_t q[8 * 34 * 2];
    struct { const char *what; et_frozen_w w; et_tensor *a, *b; float p; size_t scratch; } cases[] = {
        {"columns", {GGML_TYPE_F32, w, 8, 32}, NULL, NULL, 0, 0},
        {"lora_b shape", {GGML_TYPE_F32, w, 8, 64}, &at, &bad, 0, 0},
        {"only lora_a", {GGML_TYPE_F32, w, 8, 64}, &at, NULL, 0, 0},
        {"dropout 1", {GGML_TYPE_F32, w, 8, 64}, &at, &bt, 1.0f, 0},
        {"scratch", {GGML_TYPE_Q8_0, q, 8, 64}, &at, &bt, 0, 10},
        {"type", {GGML_TYPE_COUNT + 5, q, 8, 64}, NULL, NULL, 0, 0},
        {"null data", {GGML_TYPE_F32, NULL, 8, 64}, NULL, NULL, 0, 0},
    };
    float scratch[16];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        et_tape t;
        assert_int_equal(et_tape_init(&t, 0, NULL), 0);
        et_lora_opts o = {.scale = 1, .dropout = cases[i].p, .scratch = cases[i].scratch ? scratch : NULL,
                          .scratch_floats = cases[i].scratch};
        assert_null(et_lora_linear(&t, "y", &xt, &cases[i].w, NULL, cases[i].a, cases[i].b, &o));
        et_err e = {0};
        assert_int_equal(et_tape_status(&t, &e), ET_EINPUT);
        printf("  %-12s -> %s\n", cases[i].what, e.msg);
        et_tape_free(&t);
    }
    /* rows of 40 are not a multiple of the 32-element Q8_0 block */
    float x40[2 * 40] = {0};
    et_tensor x40t;
    et_tensor_wrap(&x40t, "x40", x40, NULL, 2, (int64_t[]){2, 40});
    et_tape tb;
    assert_int_equal(et_tape_init(&tb, 0, NULL), 0);
    assert_null(et_frozen_matmul(&tb, "y", &x40t, &(et_frozen_w){GGML_TYPE_Q8_0, q, 8, 40}, NULL, NULL));
    et_err eb = {0};
    assert_int_equal(et_tape_status(&tb, &eb), ET_EINPUT);
    printf("  %-12s -> %s\n", "block", eb.msg);
    et_tape_free(&tb);
    /* Q8_0 with a 64-column row is fine */
    memset(q, 0, sizeof q);
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    assert_non_null(et_frozen_matmul(&t, "y", &xt, &(et_frozen_w){GGML_TYPE_Q8_0, q, 8, 64}, NULL, NULL));
    et_tape_free(&t);
}

int main(void) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_f32),
        cmocka_unit_test(test_lora_quantized),
        cmocka_unit_test(test_fd_catches_corruption),
        cmocka_unit_test(test_quantized_equals_dequantized_f32),
        cmocka_unit_test(test_lora_bf16_precision),
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
