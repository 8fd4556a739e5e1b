/* bench/bench_attention.c — one layer's causal GQA attention (et_attention,
 * train/ops.h), forward and backward, at the two training shapes of
 * bench_train, batch 4 x 256 tokens:
 *   stories260K: 8 heads, 4 kv heads, head_dim 8 — the AVX-512F 16 x 16
 *     tiles (train/attn_kd8.h) against the portable row kernels
 *     (et_attention_force_portable), alternating call by call in this one
 *     process, so their ratio is measured under the same load;
 *   SmolLM2-135M: 9 heads, 3 kv heads, head_dim 64 (the row kernels, four
 *     query rows per call).
 * Inputs uniform in [-0.5, 0.5); the backward is seeded with a random
 * gradient of the output.  Medians of `reps` calls (default 41, 15 at
 * head_dim 64), milliseconds, threads as OMP_NUM_THREADS (default: all).
 * GFLOP/s counts the causal multiply-adds only: forward 2 products
 * (q k^T, p v), backward 4 (dp, dq, dk, dv), 2 x B x n_head x T(T+1)/2 x
 * head_dim FLOPs each.
 *
 *   build/bench/bench_attention [reps] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../train/ops.h"
#include "../train/tape.h"

#include "bench_util.h"

/* uniform in [-0.5, 0.5) */
static float urand(void) { return (float)((double)rand() / ((double)RAND_MAX + 1.0) - 0.5); }

typedef struct {
    const char *name;
    int H, G, D;
} shape;

enum { B = 4, T = 256, MAX_REPS = 201 };

/* One forward + backward on tape t; adds the two times in seconds to f, b.
 * Returns 0 or -1 on a tape error. */
static int run_once(et_tape *t, const shape *s, const float *q, const float *k, const float *v,
                    const float *dout, double *f, double *b) {
    const size_t nq = (size_t)B * T * s->H * s->D, nk = (size_t)B * T * s->G * s->D;
    et_tensor *Q = et_tensor_2d(t, "q", B * T, (int64_t)s->H * s->D, 1);
    et_tensor *K = et_tensor_2d(t, "k", B * T, (int64_t)s->G * s->D, 1);
    et_tensor *V = et_tensor_2d(t, "v", B * T, (int64_t)s->G * s->D, 1);
    if (!Q || !K || !V) return -1;
    for (size_t i = 0; i < nq; i++) Q->data[i] = q[i];
    for (size_t i = 0; i < nk; i++) K->data[i] = k[i], V->data[i] = v[i];
    const double t0 = now();
    et_tensor *O = et_attention(t, "att", Q, K, V, T, s->H, s->G, s->D);
    const double t1 = now();
    if (!O || et_tape_backward_seed(t, O, dout)) return -1;
    const double t2 = now();
    *f = t1 - t0, *b = t2 - t1;
    et_tape_reset(t);
    return 0;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 41;
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: %s [reps 1..%d]\n", argv[0], MAX_REPS);
        return 2;
    }
    static const shape shapes[] = {{"stories260K", 8, 4, 8}, {"smollm2", 9, 3, 64}};
    printf("bench_attention: one layer, B %d x T %d, %d threads, medians, ms\n", B, T, omp_get_max_threads());
    for (int si = 0; si < 2; si++) {
        const shape *s = &shapes[si];
        const int n = s->D == 8 ? reps : (reps < 15 ? reps : 15), modes = s->D == 8 ? 2 : 1;
        const size_t nq = (size_t)B * T * s->H * s->D, nk = (size_t)B * T * s->G * s->D;
        float *q = malloc(nq * sizeof(float)), *k = malloc(nk * sizeof(float)), *v = malloc(nk * sizeof(float));
        float *dout = malloc(nq * sizeof(float));
        double *f = malloc(2 * (size_t)n * sizeof(double)), *b = malloc(2 * (size_t)n * sizeof(double));
        if (!q || !k || !v || !dout || !f || !b) {
            fprintf(stderr, "bench_attention: out of memory\n");
            return 1;
        }
        srand(1);
        for (size_t i = 0; i < nq; i++) q[i] = urand(), dout[i] = urand();
        for (size_t i = 0; i < nk; i++) k[i] = urand(), v[i] = urand();
        et_err e;
        et_tape t;
        if (et_tape_init(&t, 0, &e)) {
            fprintf(stderr, "bench_attention: %s\n", e.msg);
            return 1;
        }
        for (int r = 0; r < n; r++)
            for (int m = 0; m < modes; m++) {
                et_attention_force_portable(m);
                if (run_once(&t, s, q, k, v, dout, &f[m * n + r], &b[m * n + r])) {
                    et_tape_status(&t, &e);
                    fprintf(stderr, "bench_attention: %s\n", e.msg);
                    return 1;
                }
            }
        et_attention_force_portable(0);
        const double flop = 2.0 * B * s->H * (T * (T + 1) / 2.0) * s->D;
        double fm[2], bm[2];
        for (int m = 0; m < modes; m++) fm[m] = median(f + m * n, n), bm[m] = median(b + m * n, n);
        printf("%-12s head_dim %2d: forward %7.3f ms (%5.1f GFLOP/s)  backward %7.3f ms (%5.1f GFLOP/s)", s->name,
               s->D, 1e3 * fm[0], 2 * flop / fm[0] * 1e-9, 1e3 * bm[0], 4 * flop / bm[0] * 1e-9);
        if (modes == 2)
            printf("\n             row kernels: forward %7.3f ms (tiles %.2fx)      backward %7.3f ms (tiles %.2fx)",
                   1e3 * fm[1], fm[1] / fm[0], 1e3 * bm[1], bm[1] / bm[0]);
        printf("\n");
        et_tape_free(&t);
        free(q), free(k), free(v), free(dout), free(f), free(b);
    }
    return 0;
}
