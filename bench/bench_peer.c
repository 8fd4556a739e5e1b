/* bench/bench_peer.c — edgetune's side of the peer comparison of issue 12
 * §5 (bench/peer/run.sh runs it beside PyTorch + transformers + PEFT):
 * training steps on a REAL model (a GGUF, e.g. SmolLM2-135M-Instruct Q4_1)
 * over fixed token rows, one configuration per process.
 *
 *   build/bench/bench_peer lora MODEL.gguf TOKENS.i32 B T STEPS [--base TYPE] [--bf16] [--rc] [--rc-layers N]
 *   build/bench/bench_peer full MODEL.gguf TOKENS.i32 B T STEPS [--bf16] [--rc] [--rc-layers N] [--optim adamw8bit] [--mem] [--chunk N]
 *   build/bench/bench_peer            (no arguments: runs bench/peer/run.sh,
 *                                      which skips when the peer venv is absent)
 *
 * TOKENS.i32: B rows of T + 1 little-endian int32 token ids (bench/peer/
 * peer.py writes it from an edgetune tokens.h5; PyTorch reads the same
 * ids); inputs are row[0..T), targets row[1..T], every target counted.
 * lora: rank 8, alpha 16, dropout 0 on q and v of every layer (lora/
 * adapter.h: A as PEFT's kaiming_uniform_(a=sqrt(5)), B = 0, so the first
 * step's loss is the base model's), the base held as TYPE (default BF16;
 * F32 loads the whole model, any other type is built tensor by tensor from
 * the file: export/model.h et_model_from_gguf_no_linears), AdamW on the
 * adapter (lr 1e-4).  full: every parameter trained (train/train_llama.h),
 * gradient clipping at 1, AdamW (lr 1e-5, weight decay 0.1 on 2-D tensors).
 * --bf16: GEMMs in bf16 mixed precision (train/gemm.h); --rc: per-layer
 * activation recomputation (train/recompute.h); --rc-layers N (N >= 2):
 * recompute only the first N layers; --optim adamw8bit: block-wise
 * 8-bit AdamW moments (train/optim.h, arXiv:2110.02861); --mem: where the
 * memory goes, on stderr (resident set after each phase, the tape arenas'
 * peaks, the optimizer state; full mode); --chunk N (full): at most N rows
 * per LM-head loss chunk (train/ops.h et_xent_opts.chunk_rows; default the
 * rows of 2^24 logits), to compare chunk sizes.
 * One untimed warm-up step (arena growth), then STEPS timed steps, each on
 * the same rows.  Prints one JSON line: {"side":"edgetune", "mode",
 * "config", "first_loss" (loss of the warm-up step, before any update),
 * "step_s": [...], "tokens_per_s" (B*T / median step), "tokens_per_cpu_s"
 * (B*T / median user+system CPU seconds of a step, all threads), "peak_rss_mb"
 * (VmHWM of this process: load, base, adapter/optimizer, tape arena, BLAS
 * and OpenMP buffers), "load_s"}. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../export/gguf.h"
#include "../export/model.h"
#include "../lora/lora_train.h"
#include "../quant/quant.h"
#include "../train/gemm.h"
#include "../train/optim.h"
#include "../train/threads.h"
#include "../train/train_llama.h"

#include "bench_util.h"

static int fail(const char *what, const et_err *e) {
    fprintf(stderr, "bench_peer: %s: %s\n", what, e && e->msg[0] ? e->msg : "failed");
    return 3;
}

/* user + system CPU seconds of this process, all threads */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* VmRSS and VmHWM of this process in MB */
static void rss_mb(double *rss, double *hwm) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb;
    *rss = *hwm = -1.0;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) *rss = kb / 1024.0;
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) *hwm = kb / 1024.0;
    }
    if (f) fclose(f);
}

static int g_mem; /* --mem */
static int g_chunk; /* --chunk N: LM head rows per chunk (full mode; 0: the default) */
static void mem_phase(const char *phase) {
    if (!g_mem) return;
    double rss, hwm;
    rss_mb(&rss, &hwm);
    fprintf(stderr, "bench_peer mem: %-44s RSS %7.1f MB  peak %7.1f MB\n", phase, rss, hwm);
}

static uint32_t parse_type(const char *s) {
    static const struct { const char *n; uint32_t t; } T[] = {
        {"F32", GGML_TYPE_F32}, {"F16", GGML_TYPE_F16}, {"BF16", GGML_TYPE_BF16},
        {"Q8_0", GGML_TYPE_Q8_0}, {"Q4_0", GGML_TYPE_Q4_0}, {"Q4_1", GGML_TYPE_Q4_1}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(s, T[i].n)) return T[i].t;
    return UINT32_MAX;
}

/* B rows of T+1 int32 from path, or NULL */
static int32_t *read_tokens(const char *path, int B, int T, int n_vocab) {
    const size_t n = (size_t)B * (size_t)(T + 1);
    int32_t *tok = malloc(n * sizeof *tok);
    FILE *f = fopen(path, "rb");
    if (!tok || !f || fread(tok, sizeof *tok, n, f) != n) {
        fprintf(stderr, "bench_peer: %s: cannot read %zu int32 token ids\n", path, n);
        if (f) fclose(f);
        free(tok);
        return NULL;
    }
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= n_vocab) {
            fprintf(stderr, "bench_peer: %s: token %d at %zu outside the vocabulary (%d)\n", path, tok[i], i, n_vocab);
            free(tok);
            return NULL;
        }
    return tok;
}

static void print_json(const char *mode, const char *config, double first_loss, double *times, double *cpu, int steps,
                       int B, int T, double load_s) {
    printf("{\"side\": \"edgetune\", \"mode\": \"%s\", \"config\": \"%s\", \"first_loss\": %.7f, \"step_s\": [", mode,
           config, first_loss);
    for (int i = 0; i < steps; i++) printf("%s%.4f", i ? ", " : "", times[i]);
    const double med = median(times, steps), med_cpu = median(cpu, steps);
    printf("], \"tokens_per_s\": %.2f, \"tokens_per_cpu_s\": %.2f, \"peak_rss_mb\": %.1f, \"load_s\": %.2f}\n",
           (double)B * T / med, (double)B * T / med_cpu, peak_rss_kb() / 1024.0, load_s);
    fflush(stdout);
}

/* One run of et_train_model tm: warm-up + steps, then the JSON line. */
static int run_steps(et_train_model *tm, et_adamw *opt, float lr, float clip, const int32_t *tok, int B, int T,
                     int steps, const char *mode, const char *config, double load_s) {
    uint8_t *msk = malloc((size_t)B * (size_t)(T + 1));
    double *times = malloc(sizeof(double) * (size_t)steps), *cpu = malloc(sizeof(double) * (size_t)steps), first = NAN;
    if (!msk || !times || !cpu) return 3;
    memset(msk, 1, (size_t)B * (size_t)(T + 1));
    et_err e = {0};
    for (int s = 0; s <= steps; s++) {
        const double t0 = now(), c0 = cpu_s();
        double sum = 0.0, norm = 0.0;
        memset(tm->grads, 0, tm->n * sizeof(float));
        if (tm->fwd_bwd(tm->ctx, tok, msk, B, T, (double)B * T, &sum, &e)) return fail("step", &e);
        if (!s) mem_phase("warm-up step: after forward + backward");
        const float g = clip > 0 ? et_grad_scale_clip(tm->grads, tm->n, 1.0f, clip, &norm) : 1.0f;
        et_adamw_step(opt, tm->params, tm->grads, lr, g);
        if (!s) mem_phase("warm-up step: after the AdamW update");
        if (s) times[s - 1] = now() - t0, cpu[s - 1] = cpu_s() - c0;
        else first = sum / ((double)B * T);
    }
    print_json(mode, config, first, times, cpu, steps, B, T, load_s);
    free(msk);
    free(times);
    free(cpu);
    return 0;
}

static int run_lora(const char *model, const char *tokens, int B, int T, int steps, uint32_t type, int precision,
                    int rc_on, const char *config) {
    et_err e = {0};
    et_model m;
    gguf_file g;
    lora_adapter ad = {0};
    lora_train lt;
    et_train_model tm;
    const double t0 = now();
    if (gguf_open(&g, model, &e)) return fail(model, &e);
    if (type == GGML_TYPE_F32 ? et_model_from_gguf(&m, &g, &e) : et_model_from_gguf_no_linears(&m, &g, &e))
        return fail(model, &e);
    int32_t *tok = read_tokens(tokens, B, T, m.hp.n_vocab);
    if (!tok) return 3;
    lora_config lc = {.targets = 0, .rank = 8, .alpha = 16.0f, .dropout = 0.0f, .seed = 1};
    if (lora_adapter_create(&ad, &m, &lc, &e)) return fail("adapter", &e);
    if (type == GGML_TYPE_F32 ? lora_train_init(&lt, &m, type, &ad, &tm, &e)
                              : lora_train_init_fill(&lt, &m, type, et_model_gguf_fill, &g, &ad, &tm, &e))
        return fail("base", &e);
    if (type != GGML_TYPE_F32) {
        gguf_close(&g);
        et_model_free(&m);
    }
    lt.recompute = rc_on > 0;
    lt.ll.recompute_layers = rc_on > 1 ? rc_on : 0; /* --rc-layers N: the first N layers */
    lt.tape.gemm_precision = precision;
    et_adamw opt;
    if (et_adamw_init(&opt, tm.n, &(et_adamw_hp){0.9f, 0.999f, 1e-8f, 0.0f}, &e)) return fail("adamw", &e);
    const int r = run_steps(&tm, &opt, 1e-4f, 0.0f, tok, B, T, steps, "lora", config, now() - t0);
    et_adamw_free(&opt);
    lora_train_free(&lt);
    lora_adapter_free(&ad);
    if (type == GGML_TYPE_F32) {
        gguf_close(&g);
        et_model_free(&m);
    }
    free(tok);
    return r;
}

static int run_full(const char *model, const char *tokens, int B, int T, int steps, int precision, int rc_on,
                    int optim, const char *config) {
    et_err e = {0};
    et_model m;
    et_train_llama tl;
    et_train_model tm;
    const double t0 = now();
    mem_phase("start");
    if (et_model_load(&m, model, NULL, &e)) return fail(model, &e);
    mem_phase("model loaded (f32 weights)");
    int32_t *tok = read_tokens(tokens, B, T, m.hp.n_vocab);
    if (!tok) return 3;
    if (et_train_llama_init(&tl, &m, g_chunk, &tm, &e)) return fail("model", &e);
    mem_phase("trainer bound (gradient block)");
    tl.recompute = rc_on > 0;
    tl.recompute_layers = rc_on > 1 ? rc_on : 0;
    tl.tape.gemm_precision = precision;
    et_adamw opt;
    if (et_adamw_init_state(&opt, tm.n, &(et_adamw_hp){0.9f, 0.999f, 1e-8f, 0.1f}, optim, &e) ||
        et_adamw_mask_tensors(&opt, tm.params, tm.t, tm.n_t, ET_WD_DEFAULT, &e))
        return fail("adamw", &e);
    mem_phase("AdamW state allocated (untouched)");
    const int r = run_steps(&tm, &opt, 1e-5f, 1.0f, tok, B, T, steps, "full", config, now() - t0);
    if (g_mem)
        fprintf(stderr, "bench_peer mem: params %.1f MB, grads %.1f MB, AdamW state %.1f MB (%s), tape arena peak "
                "%.1f MB, recompute arena peak %.1f MB, tape scratch %.1f MB\n", tm.n * 4 / 1048576.0,
                tm.n * 4 / 1048576.0, et_adamw_state_bytes(&opt) / 1048576.0, et_adamw_state_name(opt.state),
                tl.tape.arena.peak / 1048576.0, tl.inner.arena.peak / 1048576.0, tl.tape.scratch_cap / 1048576.0);
    mem_phase("end");
    et_adamw_free(&opt);
    et_train_llama_free(&tl);
    et_model_free(&m);
    free(tok);
    return r;
}

int main(int argc, char **argv) {
    if (argc == 1) { /* `make bench`: the whole comparison, or a clean skip without the venv */
        execl("/bin/sh", "sh", "bench/peer/run.sh", (char *)NULL);
        perror("bench_peer: bench/peer/run.sh");
        return 0;
    }
    et_omp_passive_reexec(); /* idle OpenMP workers sleep (train/threads.h) */
    if (argc < 7 || (strcmp(argv[1], "lora") && strcmp(argv[1], "full"))) {
        fprintf(stderr, "usage: %s lora|full MODEL.gguf TOKENS.i32 B T STEPS [--base TYPE] [--bf16] [--rc] [--optim adamw|adamw8bit] [--mem] [--chunk N]\n",
                argv[0]);
        return 1;
    }
    const int B = atoi(argv[4]), T = atoi(argv[5]), steps = atoi(argv[6]);
    uint32_t type = GGML_TYPE_BF16;
    int precision = ET_GEMM_F32, rc_on = 0, optim = ET_ADAMW_F32;
    for (int i = 7; i < argc; i++) {
        if (!strcmp(argv[i], "--bf16")) precision = ET_GEMM_BF16;
        else if (!strcmp(argv[i], "--rc")) rc_on = 1;
        else if (!strcmp(argv[i], "--mem")) g_mem = 1;
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            g_chunk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rc-layers") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            rc_on = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--optim") && i + 1 < argc && et_adamw_state_parse(argv[i + 1]) >= 0)
            optim = et_adamw_state_parse(argv[++i]);
        else if (!strcmp(argv[i], "--base") && i + 1 < argc && parse_type(argv[i + 1]) != UINT32_MAX)
            type = parse_type(argv[++i]);
        else {
            fprintf(stderr, "bench_peer: bad option %s (--base F32|F16|BF16|Q8_0|Q4_0|Q4_1, --bf16, --rc, --rc-layers N, --optim adamw|adamw8bit, --mem, --chunk N)\n", argv[i]);
            return 1;
        }
    }
    if (B < 1 || T < 2 || B * T > (1 << 22) || steps < 1 || steps > 100) {
        fprintf(stderr, "bench_peer: B, T, STEPS out of range\n");
        return 1;
    }
    const char *th = getenv("ET_THREADS");
    const int n_th = th && atoi(th) > 0 ? atoi(th) : 2;
    omp_set_num_threads(n_th);
    openblas_set_num_threads(n_th);
    char config[128];
    if (!strcmp(argv[1], "lora")) {
        const char *tn = "BF16";
        for (int i = 7; i + 1 < argc; i++)
            if (!strcmp(argv[i], "--base")) tn = argv[i + 1];
        char rc_l[64] = "";
        if (rc_on) snprintf(rc_l, sizeof rc_l, rc_on > 1 ? ", recompute %d layers" : ", recompute", rc_on);
        snprintf(config, sizeof config, "%s base, %s GEMMs%s", tn, precision == ET_GEMM_BF16 ? "bf16" : "f32", rc_l);
        return run_lora(argv[2], argv[3], B, T, steps, type, precision, rc_on, config);
    }
    char rc_s[64] = "";
    if (rc_on) snprintf(rc_s, sizeof rc_s, rc_on > 1 ? ", recompute %d layers" : ", recompute", rc_on);
    snprintf(config, sizeof config, "%s GEMMs%s%s", precision == ET_GEMM_BF16 ? "bf16" : "f32", rc_s,
             optim == ET_ADAMW_8BIT ? ", adamw8bit" : "");
    return run_full(argv[2], argv[3], B, T, steps, precision, rc_on, optim, config);
}
