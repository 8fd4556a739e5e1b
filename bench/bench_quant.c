/* bench/bench_quant.c — quantize / dequantize throughput per type, in MB/s
 * of float data (4 bytes per weight, 1 MB = 1e6 bytes), single thread,
 * beside a memcpy of the same float buffer in the same run.
 *
 *   make bench            (or: build/bench/bench_quant [n_floats])
 *
 * Data: 4M uniform floats in [-1, 1) with an outlier every 997 values, so
 * the K-quant searches see realistic blocks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../quant/quant.h"

#include "bench_util.h"

/* Repeat fn until at least min_s seconds have passed; return MB/s of nbytes per call. */
typedef void (*bench_fn)(void *ctx);
static double rate(bench_fn fn, void *ctx, double nbytes, double min_s) {
    fn(ctx);  /* warm up: page in the buffers */
    int reps = 0;
    double t0 = now(), t;
    do {
        fn(ctx);
        reps++;
        t = now() - t0;
    } while (t < min_s);
    return nbytes * reps / t / 1e6;
}

typedef struct job {
    uint32_t type;
    const float *x;
    void *q;
    float *y;
    int64_t n;
} job;

static void do_memcpy(void *c) { job *j = c; memcpy(j->y, j->x, (size_t)j->n * sizeof(float)); }
static void do_quant(void *c) { job *j = c; et_quantize_row(j->type, j->x, j->q, j->n); }
static void do_dequant(void *c) { job *j = c; et_dequantize_row(j->type, j->q, j->y, j->n); }

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : (int64_t)1 << 22;
    n = n / 256 * 256;
    if (n <= 0) { fprintf(stderr, "bench_quant: n_floats must be >= 256\n"); return 1; }
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    void *q = malloc((size_t)n * sizeof(float));
    if (!x || !y || !q) { fprintf(stderr, "bench_quant: out of memory\n"); return 3; }
    uint32_t s = 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
        if (i % 997 == 0) x[i] *= 20.0f;
    }
    const double bytes = (double)n * sizeof(float);
    job j = {GGML_TYPE_F32, x, q, y, n};
    printf("bench_quant: %lld floats (%.1f MB), 1 thread, MB/s of float data\n", (long long)n, bytes / 1e6);
    double mc = rate(do_memcpy, &j, bytes, 0.3);
    printf("%-6s %12s %12s\n", "type", "quantize", "dequantize");
    printf("%-6s %12.0f %12s   (baseline)\n", "memcpy", mc, "");
    const uint32_t types[] = {GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0,
                              GGML_TYPE_Q4_1, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q2_K,
                              GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL};
    const char *names[] = {"F16",  "BF16", "Q8_0", "Q4_0", "Q5_0", "Q4_1", "Q5_1",
                           "Q4_K", "Q6_K", "Q2_K", "Q3_K", "Q5_K", "IQ4_NL"};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        j.type = types[t];
        double qr = rate(do_quant, &j, bytes, 0.3);
        double dr = rate(do_dequant, &j, bytes, 0.3);
        printf("%-6s %12.0f %12.0f   (%.3fx / %.3fx memcpy)\n", names[t], qr, dr, qr / mc, dr / mc);
    }
    free(x);
    free(y);
    free(q);
    return 0;
}
