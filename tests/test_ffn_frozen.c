/* tests/test_ffn_frozen.c — train/ffn_frozen.h against independent computations:
 *  - dL/dx vs central differences of a double reference of the whole block
 *    (L = sum R * y with fixed random R), F32 weights;
 *  - forward and dx vs the unfused ops (et_rmsnorm, et_matmul, et_swiglu,
 *    et_matmul_add) on the same tape precision, f32 and bf16;
 *  - Q8_0 weights (several tiles) vs F32 weights holding the dequantized values;
 *  - the memory it keeps: less arena than the unfused ops. */
#include "testutil.h"

#include <math.h>

#include "../quant/quant.h"
#include "../train/ffn_frozen.h"
#include "../train/gemm.h"
#include "../train/ops.h"
#include "../train/threads.h"

enum { M = 9, C = 64, F = 96 };
static const float EPS = 1e-5f;

static uint64_t rng_state = 0x1234567887654321ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

typedef struct fix {
    float x[M * C], nw[C], wg[F * C], wu[F * C], wd[C * F], R[M * C];
} fix;

static void make(fix *f) {
    for (int i = 0; i < M * C; i++) f->x[i] = (float)urand(), f->R[i] = (float)urand();
    for (int i = 0; i < C; i++) f->nw[i] = (float)(1.0 + 0.3 * urand());
    for (int i = 0; i < F * C; i++) f->wg[i] = (float)(0.2 * urand()), f->wu[i] = (float)(0.2 * urand());
    for (int i = 0; i < C * F; i++) f->wd[i] = (float)(0.15 * urand());
}

/* double reference: L = sum R y */
static double ref_L(const fix *f, const double *x) {
    double L = 0;
    for (int i = 0; i < M; i++) {
        double ss = 0, h[C], s[F];
        for (int j = 0; j < C; j++) ss += x[i * C + j] * x[i * C + j];
        const double r = 1.0 / sqrt(ss / C + EPS);
        for (int j = 0; j < C; j++) h[j] = x[i * C + j] * r * f->nw[j];
        for (int k = 0; k < F; k++) {
            double g = 0, u = 0;
            for (int j = 0; j < C; j++) g += h[j] * f->wg[k * C + j], u += h[j] * f->wu[k * C + j];
            s[k] = g / (1 + exp(-g)) * u;
        }
        for (int j = 0; j < C; j++) {
            double y = x[i * C + j];
            for (int k = 0; k < F; k++) y += s[k] * f->wd[j * F + k];
            L += f->R[i * C + j] * y;
        }
    }
    return L;
}

/* fused (fused = 1) or unfused on a tape of `precision`: y and dx out; returns arena bytes used */
static size_t run(const fix *f, int fused, int precision, uint32_t type, float *y, float *dx) {
    float xs[M * C];
    memcpy(xs, f->x, sizeof xs);
    memset(dx, 0, sizeof(float) * M * C);
    et_tensor x, nw, wg, wu, wd;
    et_tensor_wrap(&x, "x", xs, dx, 2, (int64_t[]){M, C});
    et_tensor_wrap(&nw, "ffn_norm", (float *)f->nw, NULL, 1, (int64_t[]){C});
    et_tensor_wrap(&wg, "ffn_gate", (float *)f->wg, NULL, 2, (int64_t[]){F, C});
    et_tensor_wrap(&wu, "ffn_up", (float *)f->wu, NULL, 2, (int64_t[]){F, C});
    et_tensor_wrap(&wd, "ffn_down", (float *)f->wd, NULL, 2, (int64_t[]){C, F});
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    t.gemm_precision = precision;
    et_tensor *out;
    uint8_t *q[3] = {NULL, NULL, NULL};
    if (fused) {
        const float *src[3] = {f->wg, f->wu, f->wd};
        const int64_t shp[3][2] = {{F, C}, {F, C}, {C, F}};
        et_frozen_w w[3];
        for (int k = 0; k < 3; k++) {
            const void *data = src[k];
            if (type != GGML_TYPE_F32) {
                q[k] = malloc(et_quant_row_bytes(type, shp[k][0] * shp[k][1]));
                assert_int_equal(et_quantize_row(type, src[k], q[k], shp[k][0] * shp[k][1]), 0);
                data = q[k];
            }
            w[k] = (et_frozen_w){.type = type, .data = data, .n_out = shp[k][0], .n_in = shp[k][1]};
        }
        float tile[16 * F]; /* 16 rows per tile: several tiles per weight */
        out = et_ffn_frozen(&t, "l_out", &x, &nw, EPS, &w[0], &w[1], &w[2], tile, 16 * F);
        assert_non_null(out);
        memcpy(y, out->data, sizeof(float) * M * C);
        assert_int_equal(et_tape_backward_seed(&t, out, f->R), 0);
    } else {
        et_tensor *h = et_rmsnorm(&t, "ffn_norm", &x, &nw, EPS);
        et_tensor *g = et_matmul(&t, "gate", h, &wg, NULL), *u = et_matmul(&t, "up", h, &wu, NULL);
        out = et_matmul_add(&t, "l_out", et_swiglu(&t, "swiglu", g, u), &wd, NULL, &x);
        assert_non_null(out);
        memcpy(y, out->data, sizeof(float) * M * C);
        assert_int_equal(et_tape_backward_seed(&t, out, f->R), 0);
    }
    const size_t used = t.arena.peak;
    et_tape_free(&t);
    for (int k = 0; k < 3; k++) free(q[k]);
    return used;
}

static double maxrel(const float *a, const float *b, int n) {
    double d = 0, m = 1e-30;
    for (int i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), m = fmax(m, fabs(b[i]));
    return d / m;
}

static void test_vs_finite_differences(void **s) {
    (void)s;
    fix f;
    make(&f);
    float y[M * C], dx[M * C];
    run(&f, 1, ET_GEMM_F32, GGML_TYPE_F32, y, dx);
    double xd[M * C], err = 0, fdmax = 0;
    for (int i = 0; i < M * C; i++) xd[i] = f.x[i];
    for (int i = 0; i < M * C; i++) {
        const double x0 = xd[i], h = 1e-4;
        xd[i] = x0 + h;
        const double lp = ref_L(&f, xd);
        xd[i] = x0 - h;
        const double lm = ref_L(&f, xd);
        xd[i] = x0;
        const double fd = (lp - lm) / (2 * h);
        fdmax = fmax(fdmax, fabs(fd));
        err = fmax(err, fabs(dx[i] - fd));
    }
    printf("  dx vs central differences of the double reference: %.1e (relative to max %.2f)\n", err / fdmax, fdmax);
    assert_true(err / fdmax < 1e-5);
}

static void test_vs_unfused(void **s) {
    (void)s;
    fix f;
    make(&f);
    float y1[M * C], dx1[M * C], y2[M * C], dx2[M * C], yf32[M * C];
    for (int p = 0; p < 2; p++) {
        const int prec = p ? ET_GEMM_BF16 : ET_GEMM_F32;
        const size_t a1 = run(&f, 1, prec, GGML_TYPE_F32, y1, dx1);
        const size_t a2 = run(&f, 0, prec, GGML_TYPE_F32, y2, dx2);
        const double ey = maxrel(y1, y2, M * C), ed = maxrel(dx1, dx2, M * C);
        printf("  %s: fused vs unfused ops: y %.1e, dx %.1e; arena %zu vs %zu bytes\n", et_gemm_precision_name(prec),
               ey, ed, a1, a2);
        /* bf16: the same rounding points, but f32 inputs to them may differ in
           the last bit and flip a bf16 rounding */
        assert_true(ey < (p ? 2e-3 : 2e-6));
        assert_true(ed < (p ? 2e-3 : 2e-6));
        assert_true(a1 < a2);
        if (!p) memcpy(yf32, y1, sizeof yf32);
    }
    const double eb = maxrel(y1, yf32, M * C); /* bf16 really rounds */
    printf("  bf16 vs f32 output: %.1e\n", eb);
    assert_true(eb > 1e-4);
}

static void test_quantized(void **s) {
    (void)s;
    fix f;
    make(&f);
    float y1[M * C], dx1[M * C], y2[M * C], dx2[M * C];
    run(&f, 1, ET_GEMM_F32, GGML_TYPE_Q8_0, y1, dx1);
    /* the same with F32 weights holding the dequantized values */
    fix g = f;
    float *w[3] = {g.wg, g.wu, g.wd};
    for (int k = 0; k < 3; k++) {
        const int64_t n = F * C;
        uint8_t *q = malloc(et_quant_row_bytes(GGML_TYPE_Q8_0, n));
        et_quantize_row(GGML_TYPE_Q8_0, w[k], q, n);
        et_dequantize_row(GGML_TYPE_Q8_0, q, w[k], n);
        free(q);
    }
    run(&g, 1, ET_GEMM_F32, GGML_TYPE_F32, y2, dx2);
    const double ey = maxrel(y1, y2, M * C), ed = maxrel(dx1, dx2, M * C);
    printf("  Q8_0 weights (tiles of 16 rows) vs F32 of their dequantized values: y %.1e, dx %.1e\n", ey, ed);
    assert_true(ey < 1e-6 && ed < 1e-6);
}

static void test_bad_shapes(void **s) {
    (void)s;
    fix f;
    make(&f);
    et_tensor x, nw;
    et_tensor_wrap(&x, "x", f.x, NULL, 2, (int64_t[]){M, C});
    et_tensor_wrap(&nw, "ffn_norm", f.nw, NULL, 1, (int64_t[]){C});
    et_frozen_w g = {GGML_TYPE_F32, f.wg, F, C}, u = {GGML_TYPE_F32, f.wu, F, C}, d = {GGML_TYPE_F32, f.wd, F, C};
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, NULL), 0);
    assert_null(et_ffn_frozen(&t, "l_out", &x, &nw, EPS, &g, &u, &d, NULL, 0)); /* down not [C, F] */
    assert_int_equal(et_tape_status(&t, NULL), ET_EINPUT);
    printf("  %s\n", t.err.msg);
    et_tape_free(&t);
}

int main(void) {
    et_omp_passive_reexec();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_finite_differences),
        cmocka_unit_test(test_vs_unfused),
        cmocka_unit_test(test_quantized),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
