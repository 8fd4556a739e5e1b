/* bench/bench_train.c — full training steps (forward, backward, clipping,
 * AdamW) against PyTorch on the same machine in the same run.
 *
 *   build/bench/bench_train [SHAPE]         all configurations (of SHAPE) + PyTorch + sgemm
 *   build/bench/bench_train --one SHAPE [STEPS [--recompute] [--bf16]]   one configuration (a child process)
 *
 * Configurations: the SmolLM2-135M shape (n_vocab 49152, n_embd 576, n_ff
 * 1536, 30 layers, 9 heads, 3 kv heads, tied) and the stories260K shape
 * (512, 64, 172, 5 layers, 8 heads, 4 kv heads, tied), random init
 * (train/init.h), batch 4 x 256 random tokens.  Each configuration runs in
 * its own process so that its peak RSS (getrusage ru_maxrss) is its own;
 * PyTorch runs bench/torch_train_step.py (Debian python3-torch) the same
 * way.  Each shape also runs with bf16 mixed-precision GEMMs (--bf16:
 * tape gemm_precision ET_GEMM_BF16, train/gemm.h; `edgetune train
 * --precision bf16`), compared with PyTorch in float32 and with PyTorch
 * under torch.autocast("cpu", dtype=torch.bfloat16) (its own bf16 mixed
 * precision).  Figures are medians of the timed steps (one warm-up step is not
 * timed); the machine is shared, so the ratios are what to read.
 * FLOPs of a step: 3 x forward, forward = 2 x tokens x (weights of every
 * matmul incl. the LM head) + causal attention 2 x 2 x B x n_head x
 * T(T+1)/2 x head_dim per layer (Kaplan et al. 2020; PaLM appendix B).
 * Environment: ET_BENCH_TORCH=0 skips PyTorch; ET_BENCH_RECOMPUTE=0 skips the
 * --recompute run; ET_BENCH_PYTHON (default /usr/bin/python3). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../train/gemm.h"
#include "../train/init.h"
#include "../train/optim.h"
#include "../train/threads.h"
#include "../train/train_llama.h"

#include "bench_util.h"

typedef struct shape {
    const char *name, *torch_name;
    int n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv;
    float rope_theta;
    int steps;           /* timed steps */
    double torch_target; /* required ratio of tokens/s vs PyTorch */
} shape;

static const shape SHAPES[] = {
    {"stories260K", "stories260k", 512, 64, 172, 5, 8, 4, 10000.0f, 10, 5.0},
    {"smollm2", "smollm2", 49152, 576, 1536, 30, 9, 3, 100000.0f, 3, 2.0},
};
enum { BATCH = 4, SEQ = 256 };

/* User + system CPU seconds of this process, all threads. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

static const shape *find_shape(const char *name) {
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, name)) return &SHAPES[i];
    return NULL;
}

/* FLOPs of one training step (see the file comment). */
static double step_flops(const shape *s) {
    const double C = s->n_embd, F = s->n_ff, D = (double)s->n_embd / s->n_head, N = (double)BATCH * SEQ;
    const double w = s->n_layer * (C * s->n_head * D * 2 + C * s->n_head_kv * D * 2 + 3 * C * F) + C * s->n_vocab;
    const double attn = 2.0 * 2.0 * BATCH * s->n_head * (SEQ * (SEQ + 1.0) / 2.0) * D * s->n_layer;
    return 3.0 * (2.0 * N * w + attn);
}

/* A model of this shape, weights zero (et_model_alloc). */
static int alloc_model(et_model *m, const shape *s, et_err *e) {
    et_hparams hp;
    memset(&hp, 0, sizeof hp);
    snprintf(hp.arch, sizeof hp.arch, "llama");
    hp.n_vocab = s->n_vocab, hp.n_embd = s->n_embd, hp.n_ff = s->n_ff, hp.n_layer = s->n_layer;
    hp.n_head = s->n_head, hp.n_head_kv = s->n_head_kv, hp.head_dim = s->n_embd / s->n_head;
    hp.n_ctx = 2048, hp.rms_eps = 1e-5f, hp.rope_theta = s->rope_theta, hp.tied_output = 1;
    return et_model_alloc(m, &hp, e);
}

/* One configuration in this process: prints one JSON line on stdout. */
static int run_one(const shape *s, int steps, int recompute, int precision) {
    et_model m;
    et_train_llama tl;
    et_train_model tm;
    et_err e = {0};
    if (alloc_model(&m, s, &e)) {
        fprintf(stderr, "bench_train: %s\n", e.msg);
        return 3;
    }
    if (et_train_llama_init(&tl, &m, 0, &tm, &e)) {
        fprintf(stderr, "bench_train: %s\n", e.msg);
        return 3;
    }
    tl.recompute = recompute;
    tl.tape.gemm_precision = precision;
    et_xoshiro rng;
    et_xoshiro_seed(&rng, 1);
    et_init_normal(tm.t, tm.n_t, s->n_layer, 0.02f, &rng);
    et_adamw opt;
    et_adamw_hp hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    if (et_adamw_init(&opt, tm.n, &hp, &e) || et_adamw_mask_tensors(&opt, tm.params, tm.t, tm.n_t, ET_WD_DEFAULT, &e)) {
        fprintf(stderr, "bench_train: %s\n", e.msg);
        return 3;
    }
    const size_t row = SEQ + 1;
    int32_t *tok = malloc(sizeof *tok * BATCH * row);
    uint8_t *msk = malloc(BATCH * row);
    double *times = malloc(sizeof(double) * (size_t)(steps + 1)), *opt_times = malloc(sizeof(double) * (size_t)(steps + 1)),
           *cpu_times = malloc(sizeof(double) * (size_t)(steps + 1));
    if (!tok || !msk || !times || !opt_times || !cpu_times) return 3;
    memset(msk, 1, BATCH * row);
    double loss = 0.0;
    for (int step = 0; step <= steps; step++) { /* step 0 warms up (arena growth): not timed */
        for (size_t i = 0; i < BATCH * row; i++) tok[i] = (int32_t)(et_xoshiro_next(&rng) % (uint64_t)s->n_vocab);
        double t0 = now(), c0 = cpu_s(), sum = 0.0, norm = 0.0;
        memset(tm.grads, 0, tm.n * sizeof(float));
        if (tm.fwd_bwd(tm.ctx, tok, msk, BATCH, SEQ, (double)BATCH * SEQ, &sum, &e)) {
            fprintf(stderr, "bench_train: %s\n", e.msg);
            return 3;
        }
        double t1 = now();
        float g = et_grad_scale_clip(tm.grads, tm.n, 1.0f, 1.0f, &norm);
        et_adamw_step(&opt, tm.params, tm.grads, 1e-4f, g);
        if (step) times[step - 1] = now() - t0, opt_times[step - 1] = now() - t1, cpu_times[step - 1] = cpu_s() - c0;
        loss = sum / (BATCH * SEQ);
    }
    double med = median(times, steps), med_opt = median(opt_times, steps), med_cpu = median(cpu_times, steps);
    printf("{\"shape\":\"%s\",\"recompute\":%d,\"precision\":\"%s\",\"steps\":%d,\"step_s\":%.4f,\"optimizer_s\":%.4f,\"tokens_per_s\":%.1f,"
           "\"tokens_per_cpu_s\":%.1f,"
           "\"gflops\":%.2f,\"peak_rss_mb\":%.1f,\"arena_peak_mb\":%.1f,\"loss\":%.4f,\"n_params\":%zu}\n",
           s->name, recompute, et_gemm_precision_name(precision), steps, med, med_opt, BATCH * SEQ / med, BATCH * SEQ / med_cpu, step_flops(s) / med * 1e-9, peak_rss_mb(),
           (double)tl.tape.arena.peak / 1048576.0, loss, tm.n);
    fflush(stdout);
    et_adamw_free(&opt);
    et_train_llama_free(&tl);
    et_model_free(&m);
    free(tok);
    free(msk);
    free(times);
    free(opt_times);
    free(cpu_times);
    return 0;
}

/* Run argv as a child process and return its first stdout line that starts
 * with '{' (malloc'd) or NULL. */
static char *child_json(char *const argv[]) {
    int fds[2];
    if (pipe(fds)) return NULL;
    pid_t pid = fork();
    if (pid < 0) return NULL;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[4096], *out = NULL;
    while (f && fgets(line, sizeof line, f))
        if (!out && line[0] == '{') out = strdup(line);
    if (f) fclose(f);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        free(out);
        return NULL;
    }
    return out;
}

/* A number field of a flat JSON line, NAN when absent. */
static double json_field(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p) return NAN;
    p += strlen(pat);
    while (*p == ' ') p++;
    return strtod(p, NULL);
}

/* GFLOP/s of an n x n x n cblas_sgemm (A B^T, as the linear layers), median of reps. */
static double sgemm_gflops(int n, int reps) {
    float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n);
    float *c = malloc(sizeof(float) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 17) * 0.1f, b[i] = (float)(i % 13) * 0.1f;
    double t[64];
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r) t[r - 1] = now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / median(t, reps) * 1e-9;
}

/* Print one of our runs beside PyTorch's (torch, torch_bf16 may be NULL). */
static void report(const shape *s, const char *label, const char *ours, const char *torch, const char *torch_bf16,
                   double gemm) {
    double tps = json_field(ours, "tokens_per_s"), rss = json_field(ours, "peak_rss_mb");
    double gf = json_field(ours, "gflops"), tpc = json_field(ours, "tokens_per_cpu_s");
    printf("%-12s %-22s %9.1f tokens/s %9.1f tok/CPU-s %8.1f MB peak RSS  %6.1f GFLOP/s (%.0f%% of sgemm)\n", s->name,
           label, tps, tpc, rss, gf, 100.0 * gf / gemm);
    if (torch) {
        double ttps = json_field(torch, "tokens_per_s"), trss = json_field(torch, "peak_rss_mb");
        double ttpc = json_field(torch, "tokens_per_cpu_s");
        printf("%-12s %-22s %8.2fx tokens/s %8.2fx tok/CPU-s %7.2fx peak RSS   (targets: >= %.0fx tokens/s%s)\n",
               s->name, "  vs pytorch", tps / ttps, tpc / ttpc, rss / trss, s->torch_target,
               s->n_layer == 30 ? ", <= 0.5x peak RSS" : "");
    }
    if (torch_bf16) {
        double ttps = json_field(torch_bf16, "tokens_per_s"), trss = json_field(torch_bf16, "peak_rss_mb");
        double ttpc = json_field(torch_bf16, "tokens_per_cpu_s");
        printf("%-12s %-22s %8.2fx tokens/s %8.2fx tok/CPU-s %7.2fx peak RSS\n", s->name, "  vs pytorch bf16",
               tps / ttps, tpc / ttpc, rss / trss);
    }
    printf("  %s", ours);
}

int main(int argc, char **argv) {
    et_omp_passive_reexec(); /* train/threads.h */
    if (argc >= 3 && !strcmp(argv[1], "--one")) {
        const shape *s = find_shape(argv[2]);
        int steps = argc > 3 ? atoi(argv[3]) : (s ? s->steps : 0);
        int recompute = 0, precision = ET_GEMM_F32;
        for (int i = 4; i < argc; i++) {
            if (!strcmp(argv[i], "--recompute")) recompute = 1;
            else if (!strcmp(argv[i], "--bf16")) precision = ET_GEMM_BF16;
            else s = NULL;
        }
        if (!s || steps < 1 || steps > 1000) {
            fprintf(stderr, "usage: %s --one stories260K|smollm2 [steps [--recompute] [--bf16]]\n", argv[0]);
            return 1;
        }
        return run_one(s, steps, recompute, precision);
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 3;
    self[n] = 0;
    const char *py = getenv("ET_BENCH_PYTHON") ? getenv("ET_BENCH_PYTHON") : "/usr/bin/python3";
    const char *tv = getenv("ET_BENCH_TORCH");
    int want_torch = !(tv && !strcmp(tv, "0"));
    int have_torch = want_torch && access(py, X_OK) == 0 && access("bench/torch_train_step.py", R_OK) == 0;
    const char *threads = getenv("OMP_NUM_THREADS") ? getenv("OMP_NUM_THREADS") : "2";
    double gemm = sgemm_gflops(1024, 15);
    printf("bench_train: batch %d x %d tokens, full step (forward, backward, clip, AdamW), medians\n", BATCH, SEQ);
    printf("cblas_sgemm 1024^3: %.1f GFLOP/s (OpenBLAS, this process's threads); OMP_WAIT_POLICY %s\n", gemm,
           getenv("OMP_WAIT_POLICY"));
    int failed = 0;
    const shape *only = argc > 1 ? find_shape(argv[1]) : NULL;
    if (argc > 1 && !only) {
        fprintf(stderr, "usage: %s [stories260K|smollm2] | --one SHAPE [STEPS [--recompute] [--bf16]]\n", argv[0]);
        return 1;
    }
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const shape *s = &SHAPES[i];
        if (only && s != only) continue;
        char steps[16];
        snprintf(steps, sizeof steps, "%d", s->steps);
        char *torch = NULL, *torch_bf16 = NULL;
        if (have_torch) {
            char *argv_t[] = {(char *)py, "bench/torch_train_step.py", "--shape", (char *)s->torch_name, "--threads",
                              (char *)threads, "--steps", steps, NULL, NULL, NULL};
            torch = child_json(argv_t);
            argv_t[8] = "--autocast", argv_t[9] = "bf16";
            torch_bf16 = child_json(argv_t);
        }
        if (torch) printf("%-12s %-22s %9.1f tokens/s %9.1f tok/CPU-s %8.1f MB peak RSS\n  %s", s->name, "pytorch",
                          json_field(torch, "tokens_per_s"), json_field(torch, "tokens_per_cpu_s"),
                          json_field(torch, "peak_rss_mb"), torch);
        else printf("%-12s pytorch skipped (%s)\n", s->name,
                    want_torch ? "python3-torch or bench/torch_train_step.py not found / failed" : "ET_BENCH_TORCH=0");
        if (torch_bf16)
            printf("%-12s %-22s %9.1f tokens/s %9.1f tok/CPU-s %8.1f MB peak RSS\n  %s", s->name, "pytorch bf16",
                   json_field(torch_bf16, "tokens_per_s"), json_field(torch_bf16, "tokens_per_cpu_s"),
                   json_field(torch_bf16, "peak_rss_mb"), torch_bf16);
        /* every layer's activations kept; then (large shape) recomputed per
         * layer; then bf16 GEMMs (activations kept) */
        for (int run = 0; run < 3; run++) {
            const int rec = run == 1, bf16 = run == 2;
            if (rec && (s->n_layer != 30 || (getenv("ET_BENCH_RECOMPUTE") && !strcmp(getenv("ET_BENCH_RECOMPUTE"), "0"))))
                continue;
            char *argv_c[] = {self, "--one", (char *)s->name, rec ? "2" : steps, rec ? "--recompute" : bf16 ? "--bf16" : NULL,
                              NULL};
            char *ours = child_json(argv_c);
            if (!ours) {
                printf("%-12s edgetune run failed\n", s->name);
                failed = 1;
                continue;
            }
            report(s, rec ? "edgetune --recompute" : bf16 ? "edgetune --precision bf16" : "edgetune", ours, torch,
                   bf16 ? torch_bf16 : NULL, gemm);
            free(ours);
        }
        free(torch);
        free(torch_bf16);
    }
    /* sgemm again at the end: the machine is shared, so the rate moves during the run */
    double gemm2 = sgemm_gflops(1024, 15);
    printf("cblas_sgemm 1024^3 again at the end: %.1f GFLOP/s (the percentages above use %.1f)\n", gemm2, gemm);
    return failed ? 3 : 0;
}
