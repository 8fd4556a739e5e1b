/* tests/test_gemm.c — et_gemm / et_gemm_bf16w (train/gemm.h) against a
 * double-precision reference.
 *
 * bf16: the reference is computed in double from the bf16-rounded operands
 * (et_fp32_to_bf16, common/et.h), so the only difference allowed is the f32
 * accumulation: |C - ref| <= (K + 2) * 2^-23 * (|alpha| sum_k |a_ik b_kj| +
 * |beta c_ij|) + 1e-30 (the standard gamma_K bound of recursive summation,
 * Higham, "Accuracy and Stability of Numerical Algorithms" §3.1, with a
 * factor 2 of slack).  Unrounded f32 operands miss that bound by ~100x
 * (test_bf16_bound_catches_f32 shows it).  f32: the same bound against the
 * unrounded operands.  Every trans combination, odd sizes, K and N beyond
 * the kernel's cache blocks, alpha/beta (beta 0 with C full of NaN: C must
 * not be read), leading dimensions larger than the rows; the native
 * AVX512_BF16 kernel and the portable path both, when the CPU has it; the
 * f32 AVX-512F kernel and OpenBLAS both, the whole-K bf16 kernel and the
 * blocked one both, and the whole-K kernels' results bit-identical at 1, 2
 * and 3 OpenMP threads. */
#include "testutil.h"

#include <math.h>
#include <omp.h>

#include "../train/gemm.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double round_bf16(float x) { return et_bf16_to_fp32(et_fp32_to_bf16(x)); }

typedef struct gcase {
    int ta, tb, M, N, K;
    float alpha, beta;
    int pad;      /* extra leading-dimension elements */
    int bf16w;    /* B given as bf16 bits */
} gcase;

/* Run one case in `precision`; returns the largest |C - ref| / bound. */
static double run_case(int precision, const gcase *g) {
    const int M = g->M, N = g->N, K = g->K;
    const int ar = g->ta ? K : M, ac = g->ta ? M : K; /* A stored [ar, ac] */
    const int br = g->tb ? N : K, bc = g->tb ? K : N;
    const int lda = ac + g->pad, ldb = bc + g->pad, ldc = N + g->pad;
    float *A = malloc((size_t)ar * lda * sizeof(float));
    float *B = malloc((size_t)br * ldb * sizeof(float));
    uint16_t *Bh = malloc((size_t)br * ldb * sizeof(uint16_t));
    float *C = malloc((size_t)M * ldc * sizeof(float));
    float *C0 = malloc((size_t)M * ldc * sizeof(float));
    assert_non_null(A); assert_non_null(B); assert_non_null(Bh); assert_non_null(C); assert_non_null(C0);
    for (size_t i = 0; i < (size_t)ar * lda; i++) A[i] = frand();
    for (size_t i = 0; i < (size_t)br * ldb; i++) { B[i] = frand(); Bh[i] = et_fp32_to_bf16(B[i]); }
    for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = g->beta == 0.0f ? NAN : frand();
    memcpy(C, C0, (size_t)M * ldc * sizeof(float));
    int rc = g->bf16w ? et_gemm_bf16w(g->ta, g->tb, M, N, K, g->alpha, A, lda, Bh, ldb, g->beta, C, ldc)
                      : et_gemm(precision, g->ta, g->tb, M, N, K, g->alpha, A, lda, B, ldb, g->beta, C, ldc);
    assert_int_equal(rc, 0);
    const int rnd = precision == ET_GEMM_BF16 || g->bf16w;
    double worst = 0.0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < K; k++) {
                float a = g->ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = g->tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                double p = rnd ? round_bf16(a) * round_bf16(b) : (double)a * b;
                s += p;
                sa += fabs(p);
            }
            double c0 = g->beta == 0.0f ? 0.0 : C0[(size_t)i * ldc + j];
            double ref = g->alpha * s + g->beta * c0;
            double bound = (K + 2) * 0x1p-23 * (fabs(g->alpha) * sa + fabs(g->beta * c0)) + 1e-30;
            double err = fabs(C[(size_t)i * ldc + j] - ref) / bound;
            if (!(err <= worst)) worst = err; /* NaN propagates */
        }
        for (int j = N; j < ldc; j++) /* the padding of C is never written */
            if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float))) worst = INFINITY;
    }
    free(A); free(B); free(Bh); free(C); free(C0);
    return worst;
}

static const int sizes[][3] = {
    {1, 1, 1}, {1, 7, 33}, {7, 1, 257}, {33, 7, 1}, {7, 33, 257}, {257, 33, 7},
    {1, 257, 33}, {33, 257, 257}, {100, 65, 130}, {40, 37, 600}, {13, 4100, 9}, {25, 70, 1031},
    {257, 33, 257}, {20, 30, 5001}, /* threads split by rows, by k (native kernel) */
    /* f32 AVX-512F kernel (12 x 32 tiles): tails in M and N, K = 1, one
     * zmm column panel (N <= 16), split by columns (M small, N large) */
    {12, 32, 1}, {24, 64, 64}, {25, 48, 3}, {13, 17, 1}, {11, 16, 70}, {100, 172, 64}, {5, 300, 20},
    {50, 40, 1024}, {37, 15, 2},
    /* bf16 whole-K kernel: odd K (the last pair half zero), split by rows
     * (M >= 64 per thread) with a row tail, a stories260K dW shape */
    {150, 45, 65}, {131, 20, 3}, {32, 172, 1023},
};
#define N_SIZES (int)(sizeof sizes / sizeof sizes[0])

static void check_all(int precision, int bf16w) {
    const float ab[][2] = {{1.0f, 0.0f}, {0.75f, 1.0f}, {-1.5f, -0.5f}};
    for (int s = 0; s < N_SIZES; s++)
        for (int t = 0; t < 4; t++) {
            gcase g = {t & 1, t >> 1, sizes[s][0], sizes[s][1], sizes[s][2],
                       ab[(s + t) % 3][0], ab[(s + t) % 3][1], (s + t) % 2 ? 3 : 0, bf16w};
            double w = run_case(precision, &g);
            if (!(w <= 1.0))
                fail_msg("%s%s ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: error %.3g x the bound",
                         et_gemm_precision_name(precision), bf16w ? " (bf16 B)" : "", g.ta, g.tb,
                         g.M, g.N, g.K, g.alpha, g.beta, g.pad, w);
        }
}

static void test_f32(void **state) {
    (void)state;
    if (!et_gemm_f32_native()) fprintf(stderr, "note: no AVX-512F on this CPU, f32 runs on OpenBLAS\n");
    check_all(ET_GEMM_F32, 0);
}

static void test_f32_blas(void **state) {
    (void)state;
    et_gemm_f32_force_blas(1);
    assert_int_equal(et_gemm_f32_native(), 0);
    check_all(ET_GEMM_F32, 0);
    et_gemm_f32_force_blas(0);
}

/* The f32 kernel computes every element of C as one chain over k whatever
 * the split: bit-identical results at 1, 2 and 3 OpenMP threads (shapes of
 * the stories260K step, split by rows and by columns, every trans).
 * trans_b with M < 16 goes to OpenBLAS (train/gemm.c), whose split of C by
 * columns is not bit-identical, so those combinations are left out. */
static void test_f32_threads_identical(void **state) {
    (void)state;
    const int shapes[][3] = {{1024, 64, 64}, {1024, 172, 64}, {64, 172, 1024}, {172, 64, 1024}, {9, 300, 50},
                             {20, 300, 50}, {30, 45, 77}};
    const int saved = omp_get_max_threads();
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (int t = 0; t < 4; t++) {
            const int ta = t & 1, tb = t >> 1, M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            if (tb && M < 16) continue;
            const int lda = ta ? M : K, ldb = tb ? K : N;
            float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
            float *C[3];
            assert_non_null(A); assert_non_null(B);
            for (size_t i = 0; i < (size_t)M * K; i++) A[i] = frand();
            for (size_t i = 0; i < (size_t)K * N; i++) B[i] = frand();
            for (int n = 0; n < 3; n++) {
                assert_non_null(C[n] = malloc((size_t)M * N * sizeof(float)));
                for (size_t i = 0; i < (size_t)M * N; i++) C[n][i] = (float)i * 0x1p-10f;
                omp_set_num_threads(n + 1);
                assert_int_equal(et_gemm(ET_GEMM_F32, ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C[n], N), 0);
            }
            omp_set_num_threads(saved);
            for (int n = 1; n < 3; n++)
                if (memcmp(C[0], C[n], (size_t)M * N * sizeof(float)))
                    fail_msg("f32 ta=%d tb=%d M=%d N=%d K=%d: 1 and %d threads differ", ta, tb, M, N, K, n + 1);
            free(A); free(B); free(C[0]); free(C[1]); free(C[2]);
        }
}

/* Native bf16: the whole-K kernel (train/gemm_bf16s_x86.c) takes every
 * product of `sizes` up to 2^26 multiply-adds, i.e. all of them; forced to
 * the blocked kernel (train/gemm_x86.c), the same cases again. */
static void test_bf16_native(void **state) {
    (void)state;
    if (!et_gemm_bf16_native()) {
        fprintf(stderr, "SKIP: no AVX512_BF16 on this CPU (the portable path is tested below)\n");
        skip();
    }
    check_all(ET_GEMM_BF16, 0);
    check_all(ET_GEMM_BF16, 1);
    et_gemm_bf16_force_blocked(1);
    check_all(ET_GEMM_BF16, 0);
    check_all(ET_GEMM_BF16, 1);
    et_gemm_bf16_force_blocked(0);
}

/* The rounding of both native bf16 kernels, operand by operand: op(A) (or
 * op(B)) holds every f32 high half with low halves 0, 0x7fff, 0x8000
 * (ties), 0x8001 and 0xffff (what would round to Inf made finite), and the other operand is the 2 x 2
 * identity, so C is the rounded operand itself: it must equal
 * et_fp32_to_bf16's rounding, subnormal results read as zero (gemm.h).
 * Covers both positions of a k pair and every trans. */
static float rounded_ref(float x) {
    float r = et_bf16_to_fp32(et_fp32_to_bf16(x));
    return fabsf(r) < 0x1p-126f ? 0.0f : r;
}

static void check_rounding(int blocked) {
    static const uint32_t lows[] = {0, 0x7fff, 0x8000, 0x8001, 0xffff};
    const int L = 65536 * 5; /* values, as L / 2 rows of 2 */
    float *V = malloc((size_t)L * sizeof(float)), *C = malloc((size_t)L * sizeof(float));
    assert_non_null(V); assert_non_null(C);
    int n = 0;
    for (uint32_t h = 0; h < 65536; h++)
        for (int l = 0; l < 5; l++) {
            uint32_t u = h << 16 | lows[l];
            /* Inf, NaN and what rounds to Inf (Inf x 0 is NaN) -> the largest finite */
            if ((u & 0x7fffffffu) >= 0x7f7f8000u) u = (u & 0x80000000u) | 0x7f7f7fffu;
            memcpy(&V[n++], &u, 4);
        }
    const int R = L / 2;
    const float I[4] = {1, 0, 0, 1};
    et_gemm_bf16_force_blocked(blocked);
    for (int t = 0; t < 8; t++) {
        const int tr = t & 1, side_b = (t >> 1) & 1, w = t >> 2;
        if (w && !side_b) continue; /* bf16 B bits: nothing rounded on that side */
        uint16_t Ih[4] = {et_fp32_to_bf16(1), 0, 0, et_fp32_to_bf16(1)};
        /* V as op(A) [R, 2] (stored [R, 2] or [2, R]) times I, or I times
         * V as op(B) [2, R] (stored [2, R] or [R, 2]); C [R, 2] or [2, R]. */
        float *Vs = malloc((size_t)L * sizeof(float));
        assert_non_null(Vs);
        for (int i = 0; i < R; i++)
            for (int k = 0; k < 2; k++) {
                const float v = V[2 * i + k];
                if (!side_b) Vs[tr ? (size_t)k * R + i : (size_t)i * 2 + k] = v;   /* op(A)(i, k) */
                else Vs[tr ? (size_t)i * 2 + k : (size_t)k * R + i] = v;           /* op(B)(k, i) */
            }
        int rc;
        if (!side_b) {
            rc = w ? et_gemm_bf16w(tr, 0, R, 2, 2, 1.0f, Vs, tr ? R : 2, Ih, 2, 0.0f, C, 2)
                   : et_gemm(ET_GEMM_BF16, tr, 0, R, 2, 2, 1.0f, Vs, tr ? R : 2, I, 2, 0.0f, C, 2);
        } else {
            rc = et_gemm(ET_GEMM_BF16, 0, tr, 2, R, 2, 1.0f, I, 2, Vs, tr ? 2 : R, 0.0f, C, R);
        }
        assert_int_equal(rc, 0);
        for (int i = 0; i < R; i++)
            for (int k = 0; k < 2; k++) {
                const float got = side_b ? C[(size_t)k * R + i] : C[(size_t)i * 2 + k], v = V[2 * i + k];
                if (!(got == rounded_ref(v)))
                    fail_msg("%s kernel, %s trans %d: %a rounds to %a, expected %a", blocked ? "blocked" : "whole-K",
                             side_b ? "B" : w ? "A (bf16 B)" : "A", tr, v, got, rounded_ref(v));
            }
        free(Vs);
    }
    et_gemm_bf16_force_blocked(0);
    free(V); free(C);
}

static void test_bf16_rounding(void **state) {
    (void)state;
    if (!et_gemm_bf16_native()) skip();
    check_rounding(0);
    check_rounding(1);
}

/* The whole-K bf16 kernel computes every element of C as one vdpbf16ps
 * chain over the k pairs whatever the split: bit-identical results at 1, 2
 * and 3 OpenMP threads (stories260K shapes split by rows and by columns,
 * odd K, every trans, B as f32 and as bf16 bits). */
static void test_bf16_threads_identical(void **state) {
    (void)state;
    if (!et_gemm_bf16_native()) skip();
    const int shapes[][3] = {{1024, 64, 64}, {1024, 172, 64}, {64, 172, 1024}, {172, 64, 1024}, {9, 300, 50},
                             {20, 300, 51}, {30, 45, 77}, {200, 33, 7}};
    const int saved = omp_get_max_threads();
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (int t = 0; t < 8; t++) {
            const int ta = t & 1, tb = (t >> 1) & 1, w = t >> 2, M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            const int lda = ta ? M : K, ldb = tb ? K : N;
            float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
            uint16_t *Bh = malloc((size_t)K * N * sizeof(uint16_t));
            float *C[3];
            assert_non_null(A); assert_non_null(B); assert_non_null(Bh);
            for (size_t i = 0; i < (size_t)M * K; i++) A[i] = frand();
            for (size_t i = 0; i < (size_t)K * N; i++) { B[i] = frand(); Bh[i] = et_fp32_to_bf16(B[i]); }
            for (int n = 0; n < 3; n++) {
                assert_non_null(C[n] = malloc((size_t)M * N * sizeof(float)));
                for (size_t i = 0; i < (size_t)M * N; i++) C[n][i] = (float)i * 0x1p-10f;
                omp_set_num_threads(n + 1);
                int rc = w ? et_gemm_bf16w(ta, tb, M, N, K, 0.5f, A, lda, Bh, ldb, 0.25f, C[n], N)
                           : et_gemm(ET_GEMM_BF16, ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 0.25f, C[n], N);
                assert_int_equal(rc, 0);
            }
            omp_set_num_threads(saved);
            for (int n = 1; n < 3; n++)
                if (memcmp(C[0], C[n], (size_t)M * N * sizeof(float)))
                    fail_msg("bf16%s ta=%d tb=%d M=%d N=%d K=%d: 1 and %d threads differ", w ? " (bf16 B)" : "",
                             ta, tb, M, N, K, n + 1);
            free(A); free(B); free(Bh); free(C[0]); free(C[1]); free(C[2]);
        }
}

static void test_bf16_portable(void **state) {
    (void)state;
    et_gemm_force_portable(1);
    assert_int_equal(et_gemm_bf16_native(), 0);
    check_all(ET_GEMM_BF16, 0);
    check_all(ET_GEMM_BF16, 1);
    et_gemm_force_portable(0);
}

/* The bound is tight enough to see a product that skipped the rounding. */
static void test_bf16_bound_catches_f32(void **state) {
    (void)state;
    /* Compare the f32 product against the bf16 reference by running the
     * bf16 checker on f32 results: emulate with K large enough. */
    const int M = 9, N = 11, K = 64;
    float A[9 * 64], B[64 * 11], C[9 * 11];
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    assert_int_equal(et_gemm(ET_GEMM_F32, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N), 0);
    double worst = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0, sa = 0.0;
            for (int k = 0; k < K; k++) {
                double p = round_bf16(A[i * K + k]) * round_bf16(B[k * N + j]);
                s += p;
                sa += fabs(p);
            }
            double e = fabs(C[i * N + j] - s) / ((K + 2) * 0x1p-23 * sa);
            if (e > worst) worst = e;
        }
    assert_true(worst > 10.0);
}

static void test_bad_args(void **state) {
    (void)state;
    float a[4] = {0}, b[4] = {0}, c[4] = {0};
    assert_int_equal(et_gemm(7, 0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2), ET_EINPUT);
    assert_int_equal(et_gemm(ET_GEMM_BF16, 0, 0, 2, 2, 2, 1.0f, a, 1, b, 2, 0.0f, c, 2), ET_EINPUT);
    assert_int_equal(et_gemm(ET_GEMM_BF16, 0, 1, 2, 2, 2, 1.0f, a, 2, b, 1, 0.0f, c, 2), ET_EINPUT);
    assert_int_equal(et_gemm(ET_GEMM_F32, 0, 0, -1, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2), ET_EINPUT);
    /* K == 0: C = beta C. */
    float c2[4] = {1, 2, 3, 4};
    assert_int_equal(et_gemm(ET_GEMM_BF16, 0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, c2, 2), 0);
    assert_true(c2[0] == 0.5f && c2[3] == 2.0f);
    assert_int_equal(et_gemm_precision_parse("bf16"), ET_GEMM_BF16);
    assert_int_equal(et_gemm_precision_parse("f32"), ET_GEMM_F32);
    assert_int_equal(et_gemm_precision_parse("fp8"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_f32_blas),
        cmocka_unit_test(test_f32_threads_identical),
        cmocka_unit_test(test_bf16_native),
        cmocka_unit_test(test_bf16_threads_identical),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_bf16_portable),
        cmocka_unit_test(test_bf16_bound_catches_f32),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
