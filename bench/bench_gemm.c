/* bench/bench_gemm.c — et_gemm in bf16 (train/gemm.h) against OpenBLAS
 * cblas_sgemm (f32) on the GEMMs of a SmolLM2-135M training step at
 * batch 4 x 256 = 1024 tokens: for each linear layer x[1024, n_in] W[n_out, n_in]
 *   forward  y  = x  W^T   (NoTrans, Trans)   M 1024,  N n_out, K n_in
 *   dx       dx = dy W     (NoTrans, NoTrans) M 1024,  N n_in,  K n_out
 *   dw       dw = dy^T x   (Trans, NoTrans)   M n_out, N n_in,  K 1024
 * for (n_in, n_out) = (576, 576) q/o, (576, 192) k/v, (576, 1536) gate/up,
 * (1536, 576) down, (576, 49152) the LM head.  Both run in the same process
 * with the same threads, alternating, so their ratio is measured under the
 * same load (the machine is shared): medians of `reps`.
 *
 *   build/bench/bench_gemm [reps]        (default 5; the LM head uses 3)
 *
 * `bench_gemm f32 [reps]` times the f32 GEMMs instead: train/sgemm_omp.h
 * (OpenBLAS, single-threaded per OpenMP thread: et_gemm's f32 path before
 * the AVX-512F kernel) against the AVX-512F kernel (train/gemm_f32_x86.c)
 * on the same three products per linear layer of stories260K (n_embd 64,
 * n_ff 172, 4 kv heads x head_dim 8, the tied LM head of n_vocab 512) and
 * of SmolLM2-135M, at batch 1024 tokens, alternating, medians of reps
 * (default 41 for stories260K, 5 for SmolLM2).  "route" says which one
 * et_gemm uses for the shape; the step line weights each shape by how often
 * a step runs it.
 *
 * `bench_gemm bf16s [reps]`: the same shapes in bf16, the whole-K kernel
 * (train/gemm_bf16s_x86.c) against the blocked one (train/gemm_x86.c) and
 * the f32 AVX-512F kernel, alternating, medians ("route": which bf16
 * kernel et_gemm uses). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../train/gemm.h"
#include "../train/gemm_kernel.h"
#include "../train/sgemm_omp.h"
#include "../train/threads.h"

#include "bench_util.h"

static float *rand_buf(size_t n) {
    static uint64_t s = 0x9E3779B97F4A7C15ull;
    float *p = malloc(n * sizeof(float));
    if (!p) { fprintf(stderr, "bench_gemm: out of memory\n"); exit(3); }
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        p[i] = (float)((s >> 40) * (1.0 / 8388608.0) - 1.0);
    }
    return p;
}

/* One model's linear layers {n_in, n_out, times per step}. */
typedef struct f32_model { const char *name; int n; int layers[8][3]; int reps; } f32_model;

/* The linear layers of a step at batch 1024 tokens, and the default
 * repetitions, for the f32 and bf16s modes. */
static const f32_model SMALL_MODELS[2] = {
    {"stories260K", 5, {{64, 64, 10}, {64, 32, 10}, {64, 172, 10}, {172, 64, 5}, {64, 512, 1}}, 41},
    {"smollm2", 4, {{576, 576, 60}, {576, 192, 60}, {576, 1536, 60}, {1536, 576, 30}}, 5},
};

/* One GEMM of a linear layer y = x W^T over T tokens, as et_gemm arguments
 * (C's leading dimension is N). */
typedef struct product {
    int ta, tb, M, N, K, lda, ldb;
    const float *A, *B;
    float *C;
    float beta;
} product;

/* g 0: forward y[T, n_out] = x W^T; g 1: dx[T, n_in] = dy W; g 2: dW[n_out,
 * n_in] += dy^T x (beta 1: weight gradients accumulate).  x [T, n_in],
 * w [n_out, n_in], dy [T, n_out]; out holds y or dx. */
static product layer_product(int g, int T, int n_in, int n_out, const float *x, const float *w, const float *dy,
                             float *out, float *dw) {
    if (g == 0) return (product){0, 1, T, n_out, n_in, n_in, n_in, x, w, out, 0.0f};
    if (g == 1) return (product){0, 0, T, n_in, n_out, n_out, n_in, dy, w, out, 0.0f};
    return (product){1, 0, n_out, n_in, T, n_out, n_in, dy, x, dw, 1.0f};
}

static int bench_f32(int reps_arg) {
    const int T = 1024;
    if (!et_gemm_x86_f32_available()) {
        printf("bench_gemm f32: no AVX-512F on this CPU, nothing to compare\n");
        return 0;
    }
    printf("bench_gemm f32: GFLOP/s, medians, %d OpenMP threads; blas = et_sgemm_omp (OpenBLAS), "
           "avx512 = et_gemm_x86_f32\n", omp_get_max_threads());
    for (int mi = 0; mi < 2; mi++) {
        const f32_model *md = &SMALL_MODELS[mi];
        const int r = reps_arg > 0 ? reps_arg : md->reps;
        printf("%-12s %-8s %6s %6s %6s  %8s %8s %6s  %s\n", md->name, "gemm", "M", "N", "K", "blas", "avx512",
               "ratio", "route");
        double step[2] = {0, 0}, routed = 0;
        for (int l = 0; l < md->n; l++) {
            const int n_in = md->layers[l][0], n_out = md->layers[l][1], times = md->layers[l][2];
            float *x = rand_buf((size_t)T * n_in), *w = rand_buf((size_t)n_out * n_in);
            float *dy = rand_buf((size_t)T * n_out), *out = rand_buf((size_t)T * (n_out > n_in ? n_out : n_in));
            float *dw = rand_buf((size_t)n_out * n_in);
            for (int g = 0; g < 3; g++) {
                const product P = layer_product(g, T, n_in, n_out, x, w, dy, out, dw);
                const int ta = P.ta, tb = P.tb, M = P.M, N = P.N, K = P.K, lda = P.lda, ldb = P.ldb;
                const float *A = P.A, *B = P.B;
                const float beta = P.beta;
                float *C = P.C;
                double tb_[101], tk[101];
                for (int i = -1; i < r; i++) {
                    double t0 = now();
                    et_sgemm_omp(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
                    double t1 = now();
                    et_gemm_x86_f32(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
                    double t2 = now();
                    if (i >= 0) { tb_[i] = t1 - t0; tk[i] = t2 - t1; }
                }
                const double fl = 2.0 * M * N * (double)K * 1e-9;
                const double mb = median(tb_, r), mk = median(tk, r);
                const int kern = (double)M * N * K <= ET_SGEMM_OMP_MAX_WORK;
                step[0] += times * mb;
                step[1] += times * (kern ? mk : mb);
                routed += kern ? times * mk : 0;
                printf("%-12s %-8s %6d %6d %6d  %8.1f %8.1f %5.2fx  %s\n", "", g == 0 ? "forward" : g == 1 ? "dx" : "dw",
                       M, N, K, fl / mb, fl / mk, mb / mk, kern ? "avx512" : "blas");
            }
            free(x); free(w); free(dy); free(out); free(dw);
        }
        printf("%s step's linear-layer GEMMs (weighted sum of medians): blas %.2f ms, et_gemm f32 %.2f ms "
               "(%.2f ms of it on avx512), ratio %.2fx\n", md->name, step[0] * 1e3, step[1] * 1e3, routed * 1e3,
               step[0] / step[1]);
    }
    return 0;
}

/* bench_gemm bf16s: on the same shapes as bench_f32, the whole-K bf16
 * kernel (train/gemm_bf16s_x86.c) against the blocked bf16 kernel
 * (train/gemm_x86.c, et_gemm's bf16 path before it) and the f32 AVX-512F
 * kernel, the three alternating, medians of reps. */
static int bench_bf16s(int reps_arg) {
    const int T = 1024;
    if (!et_gemm_x86_bf16_available() || !et_gemm_x86_f32_available()) {
        printf("bench_gemm bf16s: no AVX512_BF16 on this CPU, nothing to compare\n");
        return 0;
    }
    printf("bench_gemm bf16s: GFLOP/s, medians, %d OpenMP threads; whole = et_gemm_x86_bf16s, "
           "blocked = et_gemm_x86_bf16, f32 = et_gemm_x86_f32\n", omp_get_max_threads());
    for (int mi = 0; mi < 2; mi++) {
        const f32_model *md = &SMALL_MODELS[mi];
        const int r = reps_arg > 0 ? reps_arg : md->reps;
        printf("%-12s %-8s %6s %6s %6s  %8s %8s %8s %8s %8s  %s\n", md->name, "gemm", "M", "N", "K", "whole",
               "blocked", "f32", "/blocked", "/f32", "route");
        double step[3] = {0, 0, 0};
        for (int l = 0; l < md->n; l++) {
            const int n_in = md->layers[l][0], n_out = md->layers[l][1], times = md->layers[l][2];
            float *x = rand_buf((size_t)T * n_in), *w = rand_buf((size_t)n_out * n_in);
            float *dy = rand_buf((size_t)T * n_out), *out = rand_buf((size_t)T * (n_out > n_in ? n_out : n_in));
            float *dw = rand_buf((size_t)n_out * n_in);
            for (int g = 0; g < 3; g++) {
                const product P = layer_product(g, T, n_in, n_out, x, w, dy, out, dw);
                const int ta = P.ta, tb = P.tb, M = P.M, N = P.N, K = P.K, lda = P.lda, ldb = P.ldb;
                const float *A = P.A, *B = P.B;
                const float beta = P.beta;
                float *C = P.C;
                double tw[101], tbl[101], tf[101];
                for (int i = -1; i < r; i++) {
                    double t0 = now();
                    et_gemm_x86_bf16s(ta, tb, M, N, K, 1.0f, A, lda, B, NULL, ldb, beta, C, N);
                    double t1 = now();
                    et_gemm_x86_bf16(ta, tb, M, N, K, 1.0f, A, lda, B, NULL, ldb, beta, C, N);
                    double t2 = now();
                    et_gemm_x86_f32(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
                    double t3 = now();
                    if (i >= 0) { tw[i] = t1 - t0; tbl[i] = t2 - t1; tf[i] = t3 - t2; }
                }
                const double fl = 2.0 * M * N * (double)K * 1e-9;
                const double mw = median(tw, r), mb = median(tbl, r), mf = median(tf, r);
                const int whole = (double)M * N * K <= ET_SGEMM_OMP_MAX_WORK;
                step[0] += times * (whole ? mw : mb);
                step[1] += times * mb;
                step[2] += times * mf;
                printf("%-12s %-8s %6d %6d %6d  %8.1f %8.1f %8.1f %7.2fx %7.2fx  %s\n", "",
                       g == 0 ? "forward" : g == 1 ? "dx" : "dw", M, N, K, fl / mw, fl / mb, fl / mf, mb / mw,
                       mf / mw, whole ? "whole" : "blocked");
            }
            free(x); free(w); free(dy); free(out); free(dw);
        }
        printf("%s step's linear-layer GEMMs (weighted sum of medians): et_gemm bf16 %.2f ms, blocked only "
               "%.2f ms (%.2fx), f32 kernel %.2f ms (%.2fx)\n", md->name, step[0] * 1e3, step[1] * 1e3,
               step[1] / step[0], step[2] * 1e3, step[2] / step[0]);
    }
    return 0;
}

int main(int argc, char **argv) {
    et_omp_passive_reexec();
    if (argc > 1 && !strcmp(argv[1], "bf16s")) {
        int reps = argc > 2 ? atoi(argv[2]) : 0;
        if (reps < 0 || reps > 100) { fprintf(stderr, "usage: bench_gemm bf16s [reps 1..100]\n"); return 1; }
        return bench_bf16s(reps);
    }
    if (argc > 1 && !strcmp(argv[1], "f32")) {
        int reps = argc > 2 ? atoi(argv[2]) : 0;
        if (reps < 0 || reps > 100) { fprintf(stderr, "usage: bench_gemm f32 [reps 1..100]\n"); return 1; }
        return bench_f32(reps);
    }
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 100) { fprintf(stderr, "usage: bench_gemm [reps 1..100]\n"); return 1; }
    const int T = 1024;
    const int layers[][2] = {{576, 576}, {576, 192}, {576, 1536}, {1536, 576}, {576, 49152}};
    const char *names[] = {"q/o", "k/v", "gate/up", "down", "lm_head"};
    printf("bench_gemm: GFLOP/s, medians; bf16 = et_gemm ET_GEMM_BF16 (%s), f32 = cblas_sgemm\n",
           et_gemm_bf16_native() ? "AVX512_BF16 kernel" : "portable path: rounding + sgemm");
    printf("%-8s %-8s %6s %6s %6s  %8s %8s %6s\n", "layer", "gemm", "M", "N", "K", "bf16", "f32", "ratio");
    double sum_t[2] = {0, 0};
    for (int l = 0; l < 5; l++) {
        const int n_in = layers[l][0], n_out = layers[l][1];
        float *x = rand_buf((size_t)T * n_in), *w = rand_buf((size_t)n_out * n_in);
        float *dy = rand_buf((size_t)T * n_out), *out = rand_buf((size_t)T * (n_out > n_in ? n_out : n_in));
        float *dw = rand_buf((size_t)n_out * n_in);
        const int r = n_out > 10000 ? (reps < 3 ? reps : 3) : reps;
        for (int g = 0; g < 3; g++) {
            int ta = g == 2, tb = g == 0, M, N, K;
            const float *A, *B;
            float *C;
            int lda, ldb;
            if (g == 0) { M = T; N = n_out; K = n_in; A = x; lda = n_in; B = w; ldb = n_in; C = out; }
            else if (g == 1) { M = T; N = n_in; K = n_out; A = dy; lda = n_out; B = w; ldb = n_in; C = out; }
            else { M = n_out; N = n_in; K = T; A = dy; lda = n_out; B = x; ldb = n_in; C = dw; }
            double tb16[100], tf32[100];
            for (int i = -1; i < r; i++) { /* i = -1: warm-up */
                double t0 = now();
                et_gemm(ET_GEMM_BF16, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
                double t1 = now();
                cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                            M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
                double t2 = now();
                if (i >= 0) { tb16[i] = t1 - t0; tf32[i] = t2 - t1; }
            }
            const double fl = 2.0 * M * N * (double)K * 1e-9;
            const double mb = median(tb16, r), mf = median(tf32, r);
            sum_t[0] += mb;
            sum_t[1] += mf;
            printf("%-8s %-8s %6d %6d %6d  %8.1f %8.1f %5.2fx\n", names[l], g == 0 ? "forward" : g == 1 ? "dx" : "dw",
                   M, N, K, fl / mb, fl / mf, mf / mb);
        }
        free(x); free(w); free(dy); free(out); free(dw);
    }
    printf("one of each (sum of medians): bf16 %.1f ms, f32 %.1f ms, ratio %.2fx\n",
           sum_t[0] * 1e3, sum_t[1] * 1e3, sum_t[1] / sum_t[0]);
    return 0;
}
