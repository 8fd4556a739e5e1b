/* bench/bench_lora.c — one LoRA training step (forward, backward, AdamW on
 * the adapter) on the SmolLM2-135M shape (n_vocab 49152, n_embd 576, n_ff
 * 1536, 30 layers, 9 heads, 3 kv heads, tied embeddings; random weights),
 * rank 8 on q and v, batch 4 x 256: tokens/s and peak RSS, with the frozen
 * base held as F32 and as Q8_0 (train/lora_llama.h).
 *
 *   build/bench/bench_lora [steps] [F32|F16|BF16|Q8_0|Q4_0[+rc] ...]
 *
 * "+rc" turns on per-layer activation recomputation (train/recompute.h):
 * the tape keeps one tensor per layer instead of every activation, at the
 * cost of one more forward of each layer.  Default: F32, F32+rc, Q8_0+rc.
 * Each configuration runs in its own child process (fork), so its peak RSS
 * (getrusage of that child, via wait4) is its own: model, adapter, AdamW
 * moments, the tape's arena, BLAS and OpenMP buffers.  The Q8_0 base is
 * built linear by linear from the random generator (et_lora_llama_init_fill),
 * so no F32 copy of the linear weights ever exists in that process.
 * Reference (issue 5, Debian python3-torch 1.13, 2 threads, same shape and
 * batch; bench/torch_lora_step.py re-measures it when torch is installed):
 * 156 tokens/s, 5.4 GB peak RSS.  Targets: >= 2x the tokens/s and <= 0.3x
 * the memory with an F32 base. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../quant/quant.h"
#include "../train/lora_llama.h"
#include "../train/optim.h"
#include "../train/threads.h"

#define TORCH_TOKENS_PER_S 156.0
#define TORCH_PEAK_BYTES 5.4e9

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* weights ~ U(-a, a) with std 0.02 */
static int fill_random(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in, et_err *e) {
    (void)ctx, (void)name, (void)e;
    for (int64_t i = 0; i < n_out * n_in; i++) dst[i] = 0.02f * 1.7320508f * frand();
    return 0;
}

typedef struct result {
    double ms_per_step, tokens_per_s, loss;
    double cpu_s_per_step;  /* user + system CPU time of the process per timed step */
    double peak_rss_mb, arena_mb, base_mb, adapter_kb;
} result;

static int run_config(uint32_t type, int recompute, int steps, int B, int T, result *r) {
    et_hparams hp = {.arch = "llama", .n_vocab = 49152, .n_embd = 576, .n_ff = 1536, .n_layer = 30, .n_head = 9,
                     .n_head_kv = 3, .head_dim = 64, .n_ctx = 2048, .rms_eps = 1e-5f, .rope_theta = 100000.0f,
                     .tied_output = 1};
    et_model m;
    et_err e = {0};
    if (et_model_alloc(&m, &hp, &e)) goto fail;
    /* F32 tensors: embedding random, norms 1 (linears below) */
    for (size_t i = 0; i < (size_t)hp.n_vocab * hp.n_embd; i++) m.tok_embd[i] = 0.02f * 1.7320508f * frand();
    for (int c = 0; c < hp.n_embd; c++) m.output_norm[c] = 1.0f;
    for (int l = 0; l < hp.n_layer; l++)
        for (int c = 0; c < hp.n_embd; c++) m.layers[l].attn_norm[c] = m.layers[l].ffn_norm[c] = 1.0f;
    et_lora_llama ll;
    if (type == GGML_TYPE_F32) {
        et_named t[512];
        int n = et_model_tensors(&m, t, 512);
        for (int i = 0; i < n; i++)
            if (t[i].n_dims == 2 && strncmp(t[i].name, "blk.", 4) == 0) fill_random(NULL, NULL, t[i].data, t[i].ne[1], t[i].ne[0], NULL);
        if (et_lora_llama_init(&ll, &m, type, &e)) goto fail;
    } else {
        if (et_lora_llama_init_fill(&ll, &m, type, fill_random, NULL, &e)) goto fail;
        et_model_free(&m); /* the base holds its own copies */
    }
    /* the adapter: rank 8 on q and v of every layer, alpha 16, in one block */
    const int rank = 8, lins[2] = {ET_LIN_Q, ET_LIN_V};
    size_t n = 0;
    for (int l = 0; l < hp.n_layer; l++)
        for (int k = 0; k < 2; k++) {
            et_lora_slot *s = et_lora_llama_slot(&ll, l, lins[k]);
            n += (size_t)rank * (size_t)(s->w.n_in + s->w.n_out);
        }
    float *p = malloc(n * sizeof(float)), *g = calloc(n, sizeof(float));
    size_t off = 0;
    for (int l = 0; l < hp.n_layer; l++)
        for (int k = 0; k < 2; k++) {
            et_lora_slot *s = et_lora_llama_slot(&ll, l, lins[k]);
            const size_t na = (size_t)rank * s->w.n_in, nb = (size_t)rank * s->w.n_out;
            for (size_t i = 0; i < na; i++) p[off + i] = frand() / sqrtf((float)s->w.n_in);
            for (size_t i = 0; i < nb; i++) p[off + na + i] = 0.01f * frand(); /* nonzero: every GEMM is real */
            if (et_lora_llama_attach(&ll, l, lins[k], p + off, g + off, p + off + na, g + off + na, rank, 16.0f / rank, &e))
                goto fail;
            off += na + nb;
        }
    et_adamw opt;
    if (et_adamw_init(&opt, n, &(et_adamw_hp){0.9f, 0.999f, 1e-8f, 0.0f}, &e)) goto fail;
    int32_t *tok = malloc(sizeof(int32_t) * ((size_t)B * T + 1));
    for (int i = 0; i < B * T + 1; i++) tok[i] = (int32_t)((rng = rng * 6364136223846793005ull + 1) >> 33) % hp.n_vocab;
    et_tape t;
    if (et_tape_init(&t, 0, &e)) goto fail;
    ll.train = 1;
    ll.recompute = recompute;
    double times[64], cpu0 = 0;
    for (int s = 0; s < steps + 1; s++) {
        if (s == 1) cpu0 = cpu_seconds(); /* step 0 grows the arena: not timed */
        const double t0 = now();
        ll.seed = (uint64_t)s;
        et_tensor *loss = et_lora_llama_forward(&t, &ll, tok, tok + 1, B, T, NULL);
        et_tape_backward(&t, loss);
        if (et_tape_status(&t, &e)) goto fail;
        et_adamw_step(&opt, p, g, 1e-4f, 1.0f);
        memset(g, 0, n * sizeof(float));
        r->loss = loss->data[0];
        et_tape_reset(&t);
        if (s) times[s - 1] = now() - t0;
    }
    qsort(times, (size_t)steps, sizeof times[0], cmp_double);
    const double med = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    r->cpu_s_per_step = (cpu_seconds() - cpu0) / steps;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->ms_per_step = med * 1e3;
    r->tokens_per_s = (double)B * T / med;
    r->peak_rss_mb = ru.ru_maxrss / 1024.0;
    r->arena_mb = t.arena.peak / 1048576.0;
    r->base_mb = et_lora_llama_base_bytes(&ll) / 1048576.0;
    r->adapter_kb = n * sizeof(float) / 1024.0;
    return 0;
fail:
    fprintf(stderr, "bench_lora: %s\n", e.msg[0] ? e.msg : "out of memory");
    return 3;
}

static uint32_t parse_type(const char *s) {
    if (!strcmp(s, "F32")) return GGML_TYPE_F32;
    if (!strcmp(s, "F16")) return GGML_TYPE_F16;
    if (!strcmp(s, "BF16")) return GGML_TYPE_BF16;
    if (!strcmp(s, "Q8_0")) return GGML_TYPE_Q8_0;
    if (!strcmp(s, "Q4_0")) return GGML_TYPE_Q4_0;
    return UINT32_MAX;
}

int main(int argc, char **argv) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep (train/threads.h) */
    const int steps = argc > 1 ? atoi(argv[1]) : 3, B = 4, T = 256;
    const char *def[] = {"F32", "F32+rc", "Q8_0+rc"};
    const char **cfg = argc > 2 ? (const char **)argv + 2 : def;
    const int n_cfg = argc > 2 ? argc - 2 : 3;
    if (steps < 1 || steps > 64) {
        fprintf(stderr, "usage: %s [steps 1..64] [F32|F16|BF16|Q8_0|Q4_0 ...]\n", argv[0]);
        return 1;
    }
    printf("LoRA step, SmolLM2-135M shape, rank 8 on q,v, batch %d x %d, median of %d steps (child process each)\n",
           B, T, steps);
    printf("  %-8s %9s %9s %8s %9s %11s %8s %9s %8s %8s\n", "base", "ms/step", "tokens/s", "vs torch", "tok/CPU-s",
           "peak RSS MB", "vs torch", "arena MB", "base MB", "loss");
    int rc = 0;
    for (int c = 0; c < n_cfg; c++) {
        char tname[16];
        snprintf(tname, sizeof tname, "%s", cfg[c]);
        char *plus = strchr(tname, '+');
        const int recompute = plus && !strcmp(plus, "+rc");
        if (plus) *plus = 0;
        const uint32_t type = parse_type(tname);
        if (type == UINT32_MAX) {
            fprintf(stderr, "bench_lora: unknown base type %s (F32, F16, BF16, Q8_0, Q4_0, each optionally +rc)\n", cfg[c]);
            return 1;
        }
        int fd[2];
        if (pipe(fd)) return 3;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            result r = {0};
            int crc = run_config(type, recompute, steps, B, T, &r);
            if (!crc && write(fd[1], &r, sizeof r) != (ssize_t)sizeof r) crc = 3;
            _exit(crc);
        }
        close(fd[1]);
        result r = {0};
        ssize_t got = read(fd[0], &r, sizeof r);
        close(fd[0]);
        int status = 0;
        struct rusage ru;
        wait4(pid, &status, 0, &ru);
        if (got != (ssize_t)sizeof r || !WIFEXITED(status) || WEXITSTATUS(status)) {
            fprintf(stderr, "bench_lora: configuration %s failed\n", cfg[c]);
            rc = 3;
            continue;
        }
        const double peak_mb = ru.ru_maxrss / 1024.0; /* the child's own peak, as the kernel saw it */
        printf("  %-8s %9.0f %9.1f %7.2fx %9.1f %11.0f %7.3fx %9.0f %8.1f %8.4f\n", cfg[c], r.ms_per_step,
               r.tokens_per_s, r.tokens_per_s / TORCH_TOKENS_PER_S, (double)B * T / r.cpu_s_per_step, peak_mb,
               peak_mb * 1048576.0 / TORCH_PEAK_BYTES, r.arena_mb, r.base_mb, r.loss);
    }
    printf("  tok/CPU-s: tokens per second of CPU time (user+sys, all threads); on an otherwise idle machine\n"
           "  the wall rate is at most (cores) x this.  The machine here is shared: wall figures vary with load.\n");
    printf("  PyTorch 1.13 (issue 5): %.0f tokens/s, %.1f GB peak RSS; targets >= 2x tokens/s, <= 0.3x memory (F32 base)\n",
           TORCH_TOKENS_PER_S, TORCH_PEAK_BYTES / 1e9);
    return rc;
}
