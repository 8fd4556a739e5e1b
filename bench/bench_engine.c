/* bench/bench_engine.c — the inference engine's speed on a random-weight
 * model of SmolLM2-135M's shape (issue 4 §5), beside the memory-bandwidth
 * bound for generation measured in the same run.
 *
 *   make bench          (or: build/bench/bench_engine [options])
 *
 * The model: n_vocab 49152, n_embd 576, n_ff 1536, 30 layers, 9 heads,
 * 3 KV heads (head_dim 64), tied output, rope_theta 1e5, rms_eps 1e-5
 * (HuggingFaceTB/SmolLM2-135M config.json), weights uniform in
 * [-0.0346, 0.0346) (std 0.02), norms 1.  It is written as an F32 GGUF with
 * et_model_save_gguf, with SmolLM2's tokenizer when
 * ../shared/tokenizers/smollm2-135m/tokenizer.json exists (llama.cpp needs
 * one to load the file), then quantized with et_quantize_model to F16, Q8_0
 * and Q4_0 (llama-quantize's rules: with Q4_0 the tied token_embd is Q6_K).
 *
 * What is measured, as llama.cpp's llama-bench does it (examples/llama-bench):
 *  - pp N: N random tokens in one et_forward from an empty cache, logits of
 *    the last one; tokens/s = N / seconds.
 *  - tg N: from an empty cache, N forwards of one token each with its
 *    logits; tokens/s = N / seconds.
 * One untimed warm-up of each, then up to --reps timed runs (fewer when a
 * case has used its time budget); the median is printed.
 *  - read bandwidth: a sum over a 512 MiB buffer of 64-bit words split over
 *    the threads, median of 5; the generation bound is
 *    bandwidth / (bytes of weights read per token, et_engine_weight_bytes).
 *
 * Options:
 *   --dir DIR        keep the model files in DIR (created; existing files
 *                    bench-smollm2-135m-TYPE.gguf are reused); default: a
 *                    temporary directory removed at the end
 *   --make-only      write the files and exit (bench/compare_llamacpp.sh)
 *   --types LIST     default F32,F16,Q8_0,Q4_0
 *   --threads LIST   default 1,2
 *   --reps N         timed runs per case (default 5)
 *   --budget S       seconds per case after which no further run starts (default 4)
 *   --pp N --tg N    default 128 and 32; 0 skips that test
 *   --batch N        engine n_batch (default 512, llama-bench's n_ubatch)
 *   --small          6 layers and a 4096-token vocabulary, no tokenizer (a quick look)
 *   --model LABEL=PATH   measure this GGUF instead (repeatable; no random
 *                    model is written, --types is ignored), e.g. the real
 *                    SmolLM2-135M-Instruct: --model Q4_1=SmolLM2.Q4_1.gguf
 * Output: one line per case, machine-readable after "|" (also every timed
 * run's tokens/s: pp_runs=a,b,... tg_runs=..., for medians over rounds).  Beside the wall
 * time figures, "cpu" gives tokens per (process CPU time / threads): on a
 * shared machine the wall time includes waiting for a core, the CPU-time
 * figure approximates an idle machine (the engine's threads spin while
 * they wait for work, so it is not inflated by idle waits).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../engine/engine.h"
#include "../export/model.h"
#include "../quant/quantize_model.h"

#include "bench_util.h"

#define MAX_LIST 8
#define TOKENIZER "../shared/tokenizers/smollm2-135m/tokenizer.json"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ bandwidth */

typedef struct bw_job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_job;

static void *bw_read(void *arg) {
    bw_job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= j->n; i += 4) {
        s0 += j->p[i];
        s1 += j->p[i + 1];
        s2 += j->p[i + 2];
        s3 += j->p[i + 3];
    }
    for (; i < j->n; i++) s0 += j->p[i];
    j->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* Read bandwidth in bytes/s over buf[n] with n_threads threads (median of
 * 5); *per_cpu gets bytes per (CPU second / threads), median of 5. */
static double read_bandwidth(const uint64_t *buf, size_t n, int n_threads, double *per_cpu) {
    double r[5], c[5];
    bw_job jobs[MAX_LIST];
    pthread_t th[MAX_LIST];
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now(), c0 = cpu_now();
        for (int i = 0; i < n_threads; i++) {
            size_t a = n * (size_t)i / (size_t)n_threads, b = n * (size_t)(i + 1) / (size_t)n_threads;
            jobs[i] = (bw_job){buf + a, b - a, 0};
            if (i > 0) pthread_create(&th[i], NULL, bw_read, &jobs[i]);
        }
        bw_read(&jobs[0]);
        for (int i = 1; i < n_threads; i++) pthread_join(th[i], NULL);
        r[rep] = (double)(n * sizeof *buf) / (now() - t0);
        c[rep] = (double)(n * sizeof *buf) * n_threads / (cpu_now() - c0);
        for (int i = 0; i < n_threads; i++) sink += jobs[i].sum;
    }
    (void)sink;
    *per_cpu = median(c, 5);
    return median(r, 5);
}

/* ------------------------------------------------------------ the model files */

static int small;   /* --small */

static void model_path(char *out, size_t cap, const char *dir, const char *type) {
    snprintf(out, cap, "%s/bench-%s-%s.gguf", dir, small ? "small" : "smollm2-135m", type);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* Write the F32 model (random weights, SmolLM2-135M shape). */
static int write_f32(const char *path, et_err *e) {
    et_hparams hp = {.arch = "llama", .n_vocab = 49152, .n_embd = 576, .n_layer = 30, .n_ctx = 8192,
                     .n_head = 9, .n_head_kv = 3, .n_ff = 1536, .head_dim = 64, .rms_eps = 1e-5f,
                     .rope_theta = 100000.0f, .tied_output = 1};
    if (small) { hp.n_layer = 6; hp.n_vocab = 4096; }
    et_model m;
    if (et_model_alloc(&m, &hp, e)) return e->code;
    snprintf(m.name, sizeof m.name, "SmolLM2-135M shape, random weights");
    int n_t = et_model_tensors(&m, NULL, 0);
    et_named *t = malloc(sizeof *t * (size_t)n_t);
    if (!t) { et_model_free(&m); return et_fail(e, ET_ERUN, "bench_engine: out of memory"); }
    et_model_tensors(&m, t, n_t);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n_t; i++) {
        int is_norm = strstr(t[i].name, "_norm") != NULL;
        for (size_t k = 0; k < t[i].n; k++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;   /* xorshift64 (Marsaglia 2003) */
            t[i].data[k] = is_norm ? 1.0f : 0.0346f * ((float)(s >> 40) / 8388608.0f - 1.0f);
        }
    }
    free(t);
    int rc = 0;
    if (small) (void)0;
    else if (access(TOKENIZER, R_OK) == 0) rc = et_model_set_tokenizer(&m, TOKENIZER, e);
    else fprintf(stderr, "bench_engine: %s absent: no tokenizer in the files (llama.cpp cannot load them)\n", TOKENIZER);
    if (!rc) rc = et_model_save_gguf(&m, path, GGML_TYPE_F32, e);
    et_model_free(&m);
    return rc;
}

static int make_files(const char *dir, char types[][8], int n_types, et_err *e) {
    char f32[4096];
    model_path(f32, sizeof f32, dir, "F32");
    if (!exists(f32)) {
        double t0 = now();
        if (write_f32(f32, e)) return e->code;
        fprintf(stderr, "bench_engine: wrote %s in %.1f s\n", f32, now() - t0);
    }
    for (int i = 0; i < n_types; i++) {
        if (!strcmp(types[i], "F32")) continue;
        char out[4096];
        model_path(out, sizeof out, dir, types[i]);
        if (exists(out)) continue;
        et_quant_params p = {.ftype = et_ftype_from_name(types[i])};
        if (p.ftype < 0) return et_fail(e, ET_EUSAGE, "bench_engine: unknown type '%s'", types[i]);
        double t0 = now();
        if (et_quantize_model(f32, out, &p, NULL, e)) return e->code;
        fprintf(stderr, "bench_engine: wrote %s in %.1f s\n", out, now() - t0);
    }
    return 0;
}

/* ------------------------------------------------------------ one case */

typedef struct bench_opts {
    int reps, pp, tg, batch;
    double budget;
} bench_opts;

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

typedef struct bench_result {
    double pp, tg;           /* tokens/s, wall time, medians */
    char pp_runs[512], tg_runs[512];   /* every timed run's tokens/s, comma-separated */
    double pp_cpu, tg_cpu;   /* tokens / (CPU seconds / threads), medians */
    const char *isa;
} bench_result;

/* pp: tokens/s of one forward of o->pp tokens; tg: of o->tg single-token
 * forwards. */
/* The n values of v as "a,b,c" (2 decimals) into out[cap]. */
static void list_runs(const double *v, int n, char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < n && k + 16 < cap; i++) k += (size_t)snprintf(out + k, cap - k, "%s%.2f", i ? "," : "", v[i]);
}

static int bench_case(const et_engine *m, int n_threads, const bench_opts *o, bench_result *res, et_err *e) {
    et_state_opts so = et_state_default_opts();
    so.n_ctx = o->pp + o->tg + 1;
    so.n_threads = n_threads;
    so.n_batch = o->batch;
    et_state *st;
    if (et_state_new(&st, m, &so, e)) return e->code;
    res->isa = et_state_isa(st);
    int n_vocab = m->hp.n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)n_vocab);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(o->pp > o->tg ? o->pp : o->tg));
    double *r = malloc(sizeof(double) * (size_t)(o->reps + 1)), *c = malloc(sizeof(double) * (size_t)(o->reps + 1));
    int rc = 0;
    if (!logits || !toks || !r || !c) { rc = et_fail(e, ET_ERUN, "bench_engine: out of memory"); goto done; }
    uint32_t seed = 1;
    for (int i = 0; i < o->pp; i++) toks[i] = (int32_t)(lcg(&seed) % (uint32_t)n_vocab);

    int n = 0;
    double t_case = now();
    for (int rep = -1; rep < (o->pp ? o->reps : -1); rep++) {   /* rep -1: warm-up */
        et_state_reset(st);
        double t0 = now(), c0 = cpu_now();
        if ((rc = et_forward(st, toks, o->pp, logits, 0, e))) goto done;
        double dt = now() - t0, dc = cpu_now() - c0;
        if (rep >= 0) { c[n] = o->pp * n_threads / dc; r[n++] = o->pp / dt; }
        if (rep >= 0 && now() - t_case > o->budget) break;
    }
    list_runs(r, n, res->pp_runs, sizeof res->pp_runs);
    res->pp = n ? median(r, n) : 0;
    res->pp_cpu = n ? median(c, n) : 0;

    n = 0;
    t_case = now();
    for (int rep = -1; rep < (o->tg ? o->reps : -1); rep++) {
        et_state_reset(st);
        int32_t tok = 1;   /* BOS, as llama-bench when the vocabulary adds one */
        double t0 = now(), c0 = cpu_now();
        for (int i = 0; i < (rep < 0 ? 1 : o->tg); i++) {
            if ((rc = et_forward(st, &tok, 1, logits, 0, e))) goto done;
            tok = (int32_t)(lcg(&seed) % (uint32_t)n_vocab);
        }
        double dt = now() - t0, dc = cpu_now() - c0;
        if (rep >= 0) { c[n] = o->tg * n_threads / dc; r[n++] = o->tg / dt; }
        if (rep >= 0 && now() - t_case > o->budget) break;
    }
    list_runs(r, n, res->tg_runs, sizeof res->tg_runs);
    res->tg = n ? median(r, n) : 0;
    res->tg_cpu = n ? median(c, n) : 0;
done:
    free(c);
    free(r);
    free(toks);
    free(logits);
    et_state_free(st);
    return rc;
}

/* ------------------------------------------------------------ main */

static int split_list(const char *s, char out[][8], int cap) {
    int n = 0;
    while (*s && n < cap) {
        size_t k = strcspn(s, ",");
        if (k == 0 || k >= 8) return -1;
        memcpy(out[n], s, k);
        out[n++][k] = 0;
        s += k + (s[k] == ',');
    }
    return n;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_engine [--dir DIR] [--make-only] [--types F32,F16,Q8_0,Q4_0] [--threads 1,2]\n"
                    "                    [--reps N] [--budget S] [--pp N] [--tg N] [--batch N] [--small]\n"
                    "                    [--model LABEL=PATH]...\n");
    return 2;
}

int main(int argc, char **argv) {
    char types[MAX_LIST][8] = {"F32", "F16", "Q8_0", "Q4_0"}, thr[MAX_LIST][8] = {"1", "2"};
    int n_types = 4, n_thr = 2, make_only = 0;
    const char *dir = NULL, *model_files[MAX_LIST];
    int n_models = 0;
    bench_opts o = {.reps = 5, .pp = 128, .tg = 32, .batch = 512, .budget = 4.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--make-only")) { make_only = 1; continue; }
        if (!strcmp(a, "--small")) { small = 1; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--types")) { if ((n_types = split_list(v, types, MAX_LIST)) <= 0) return usage(); }
        else if (!strcmp(a, "--threads")) { if ((n_thr = split_list(v, thr, MAX_LIST)) <= 0) return usage(); }
        else if (!strcmp(a, "--reps")) o.reps = atoi(v);
        else if (!strcmp(a, "--budget")) o.budget = atof(v);
        else if (!strcmp(a, "--pp")) o.pp = atoi(v);
        else if (!strcmp(a, "--tg")) o.tg = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--model")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || eq - v >= 8 || !eq[1] || n_models == MAX_LIST) return usage();
            memcpy(types[n_models], v, (size_t)(eq - v));
            types[n_models][eq - v] = 0;
            model_files[n_models++] = eq + 1;
        }
        else return usage();
    }
    if (o.reps < 1 || o.pp < 0 || o.tg < 0 || o.batch < 1) return usage();
    for (int i = 0; i < n_thr; i++)
        if (atoi(thr[i]) < 1 || atoi(thr[i]) > MAX_LIST) return usage();

    if (n_models) {
        n_types = n_models;
        if (make_only) return 0;
    }
    char tmpl[] = "/tmp/bench_engine.XXXXXX";
    int own_dir = !dir && !n_models;
    if (own_dir && !(dir = mkdtemp(tmpl))) { perror("bench_engine: mkdtemp"); return 3; }
    if (dir && !own_dir && mkdir(dir, 0755) && errno != EEXIST) { perror(dir); return 3; }

    et_err e = {0};
    int rc = n_models ? 0 : make_files(dir, types, n_types, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    if (rc || make_only) goto cleanup;

    size_t bw_n = ((size_t)512 << 20) / sizeof(uint64_t);
    uint64_t *bw_buf = malloc(bw_n * sizeof *bw_buf);
    if (!bw_buf) { fprintf(stderr, "bench_engine: out of memory\n"); rc = 3; goto cleanup; }
    for (size_t i = 0; i < bw_n; i++) bw_buf[i] = i;
    double bw[MAX_LIST], bw_cpu[MAX_LIST];
    for (int t = 0; t < n_thr; t++) {
        bw[t] = read_bandwidth(bw_buf, bw_n, atoi(thr[t]), &bw_cpu[t]);
        printf("read bandwidth, %s thread%s: %.2f GB/s (per CPU time: %.2f GB/s)\n", thr[t],
               atoi(thr[t]) > 1 ? "s" : "", bw[t] / 1e9, bw_cpu[t] / 1e9);
    }
    free(bw_buf);

    printf("%s; pp%d / tg%d tokens/s, median of up to %d runs; n_batch %d\n",
           n_models ? "given files" : small ? "small (6 layers, n_vocab 4096), random weights"
                                            : "SmolLM2-135M shape, random weights", o.pp, o.tg, o.reps, o.batch);
    printf("%-5s %3s %-7s %9s %9s %9s %9s %10s %12s %7s\n", "type", "thr", "isa", "pp t/s", "(cpu)", "tg t/s", "(cpu)",
           "MB/token", "tg bound t/s", "(cpu)");
    for (int i = 0; i < n_types && !rc; i++) {
        char path[4096];
        if (n_models) snprintf(path, sizeof path, "%s", model_files[i]);
        else model_path(path, sizeof path, dir, types[i]);
        et_engine *m;
        if ((rc = et_engine_load(&m, path, &e))) { fprintf(stderr, "%s\n", e.msg); break; }
        double bytes = (double)et_engine_weight_bytes(m);
        for (int t = 0; t < n_thr && !rc; t++) {
            bench_result b = {.isa = "?"};
            if ((rc = bench_case(m, atoi(thr[t]), &o, &b, &e))) { fprintf(stderr, "%s\n", e.msg); break; }
            printf("%-5s %3s %-7s %9.1f %9.1f %9.1f %9.1f %10.1f %12.1f %7.1f   | edgetune %s t=%s pp=%.2f tg=%.2f "
                   "bound=%.2f pp_cpu=%.2f tg_cpu=%.2f bound_cpu=%.2f pp_runs=%s tg_runs=%s\n",
                   types[i], thr[t], b.isa, b.pp, b.pp_cpu, b.tg, b.tg_cpu, bytes / 1e6, bw[t] / bytes,
                   bw_cpu[t] / bytes, types[i], thr[t], b.pp, b.tg, bw[t] / bytes, b.pp_cpu, b.tg_cpu,
                   bw_cpu[t] / bytes, b.pp_runs[0] ? b.pp_runs : "-", b.tg_runs[0] ? b.tg_runs : "-");
            fflush(stdout);
        }
        et_engine_free(m);
    }

cleanup:
    if (own_dir) {
        for (int i = 0; i < n_types; i++) {
            char path[4096];
            model_path(path, sizeof path, dir, types[i]);
            unlink(path);
        }
        char f32[4096];
        model_path(f32, sizeof f32, dir, "F32");
        unlink(f32);
        rmdir(dir);
    }
    return rc ? 1 : 0;
}
