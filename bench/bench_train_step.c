/* bench/bench_train_step.c — forward+backward time of one training step
 * through the tape (train/llama.h), and beside it cblas_sgemm's own
 * GFLOP/s measured in the same run (the machine is shared and noisy:
 * medians, and the step's rate as a fraction of sgemm's).
 *
 *   build/bench/bench_train_step [stories260K|smollm2] [B] [T] [steps] [f32|bf16]
 *
 * Default: the stories260K shape (n_vocab 512, n_embd 64, n_ff 172, 5 layers,
 * 8 heads, 4 kv heads, tied) at batch 4 x 256, random weights, f32 GEMMs;
 * bf16: the tape's gemm_precision ET_GEMM_BF16 (train/gemm.h).
 * FLOPs of a step are counted the usual way (Kaplan et al. 2020; PaLM
 * appendix B): forward = 2 * tokens * (matmul weights incl. the LM head)
 * + causal attention 2 * 2 * B * n_head * T(T+1)/2 * head_dim; a step =
 * 3 x forward.  (The chunked LM head also recomputes its logits in backward:
 * that work is done but not counted.) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../train/gemm.h"
#include "../train/llama.h"
#include "../train/threads.h"

#include "bench_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* A uniform llama model (et_model_alloc) with random weights, std ~0.02 as
 * GPT-2/llama inits, norms 1. */
static int make_model(et_model *m, const et_hparams *hp, et_err *e) {
    if (et_model_alloc(m, hp, e)) return -1;
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = 0.02f * 1.7320508f * frand();
    et_named t[512];
    int n = et_model_tensors(m, t, 512);
    for (int i = 0; i < n && i < 512; i++)
        if (t[i].n_dims == 1)
            for (size_t k = 0; k < t[i].n; k++) t[i].data[k] = 1.0f;
    return 0;
}

/* GFLOP/s of one n x n x n sgemm, median of `reps`. */
static double sgemm_gflops(int n, int reps) {
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = frand(), b[i] = frand();
    double t[16];
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r) t[r - 1] = now() - t0; /* first run warms up */
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * n / median(t, reps) * 1e-9;
}

int main(int argc, char **argv) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    const char *shape = argc > 1 ? argv[1] : "stories260K";
    et_hparams hp = {.arch = "llama", .rms_eps = 1e-5f, .rope_theta = 10000.0f, .tied_output = 1};
    if (strcmp(shape, "smollm2") == 0) {
        hp.n_vocab = 49152, hp.n_embd = 576, hp.n_ff = 1536, hp.n_layer = 30, hp.n_head = 9, hp.n_head_kv = 3;
        hp.rope_theta = 100000.0f;
    } else {
        hp.n_vocab = 512, hp.n_embd = 64, hp.n_ff = 172, hp.n_layer = 5, hp.n_head = 8, hp.n_head_kv = 4;
    }
    hp.head_dim = hp.n_embd / hp.n_head;
    hp.n_ctx = 2048;
    const int B = argc > 2 ? atoi(argv[2]) : 4, T = argc > 3 ? atoi(argv[3]) : 256;
    int steps = argc > 4 ? atoi(argv[4]) : (strcmp(shape, "smollm2") == 0 ? 3 : 20);
    const int prec = argc > 5 ? et_gemm_precision_parse(argv[5]) : ET_GEMM_F32;
    if (B < 1 || T < 1 || steps < 1 || steps > 1000 || prec < 0) {
        fprintf(stderr, "usage: %s [stories260K|smollm2] [B] [T] [steps<=1000] [f32|bf16]\n", argv[0]);
        return 1;
    }
    et_model m, g;
    et_err e = {0};
    et_llama L;
    if (make_model(&m, &hp, &e) || et_model_grads_alloc(&g, &m, &e) || et_llama_bind(&L, &m, &g, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg[0] ? e.msg : "out of memory");
        return 3;
    }
    int32_t *tok = malloc(sizeof(int32_t) * (B * T + 1));
    for (int i = 0; i < B * T + 1; i++) tok[i] = (int32_t)((rng = rng * 6364136223846793005ull + 1) >> 33) % hp.n_vocab;

    /* FLOPs per step (see the file comment) */
    const double C = hp.n_embd, F = hp.n_ff, D = hp.head_dim, N = (double)B * T;
    const double matmul_w = hp.n_layer * (C * hp.n_head * D * 2 + C * hp.n_head_kv * D * 2 + 3 * C * F) + C * hp.n_vocab;
    const double attn = 2.0 * 2.0 * B * hp.n_head * (T * (T + 1.0) / 2.0) * D * hp.n_layer;
    const double step_flops = 3.0 * (2.0 * N * matmul_w + attn);

    et_tape t;
    if (et_tape_init(&t, 0, &e)) return 3;
    t.gemm_precision = prec;
    double *times = malloc(sizeof(double) * (steps + 1)), loss = 0;
    for (int s = 0; s < steps + 1; s++) { /* step 0 grows the arena: not timed */
        double t0 = now();
        et_tensor *l = et_llama_forward(&t, &L, tok, tok + 1, B, T, NULL);
        et_tape_backward(&t, l);
        if (et_tape_status(&t, &e)) { fprintf(stderr, "bench: %s\n", e.msg); return 3; }
        if (s) times[s - 1] = now() - t0;
        loss = l->data[0];
        memset(g.params, 0, g.n_params * sizeof(float));
        et_tape_reset(&t);
    }
    const double step_s = median(times, steps);
    const double gemm = sgemm_gflops(1024, 5);
    const double step_gf = step_flops / step_s * 1e-9;
    printf("train step %s, batch %d x %d, %zu params, %s GEMMs (%d steps, median)\n", shape, B, T, m.n_params,
           et_gemm_precision_name(prec), steps);
    printf("  forward+backward  %8.2f ms/step   %10.0f tokens/s   loss %.4f\n", step_s * 1e3, N / step_s, loss);
    printf("  step GFLOP/s      %8.2f  (%.3f GFLOP/step)\n", step_gf, step_flops * 1e-9);
    printf("  sgemm GFLOP/s     %8.2f  (1024^3, same run)   step/sgemm %.3f\n", gemm, step_gf / gemm);
    printf("  arena peak        %8.1f MiB   peak RSS %.1f MiB\n", t.arena.peak / 1048576.0, peak_rss_kb() / 1024.0);
    et_tape_free(&t);
    et_llama_unbind(&L);
    et_model_grads_free(&g);
    et_model_free(&m);
    free(tok), free(times);
    return 0;
}
