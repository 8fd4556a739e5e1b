/* bench/bench_engine.c — engine speed on a random-weight model of
 * SmolLM2-135M's shape (n_embd 576, 30 layers, 9 heads, 3 KV heads, n_ff
 * 1536, n_vocab 49152, tied embeddings), as llama-bench measures it:
 *   pp128  one 128-token prompt from an empty cache (tokens/s)
 *   tg32   32 single-token steps from an empty cache (tokens/s)
 * for F32, F16, Q8_0, Q4_0 (quantized by quant/ as llama-quantize does) at
 * 1 and 2 threads, with the memory-bandwidth bound for generation: weight
 * bytes read per token / measured read bandwidth.  Reference (issue 4,
 * llama.cpp llama-bench, same shape, 2 threads, this machine):
 *   F32 345/29  F16 252/45  Q8_0 362/70  Q4_0 462/92  (pp128/tg32 tokens/s).
 *
 *   bench_engine [--types F32,F16,Q8_0,Q4_0] [--threads 1,2] [--small] [--reps N]
 * --small uses 6 layers and a 4096-token vocabulary (for a quick look).
 * Model files go to $TMPDIR (default /tmp) and are removed at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../engine/engine.h"
#include "../export/gguf.h"
#include "../quant/quantize_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static float randn(void) {   /* sum of 4 uniforms: roughly normal, sd ~ 0.58 */
    float s = 0;
    for (int i = 0; i < 4; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        s += (float)((rng >> 40) & 0xffffff) / 16777216.0f - 0.5f;
    }
    return s;
}

typedef struct shape { int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab; } shape;

static float *rand_tensor(size_t n, float scale) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = scale * randn();
    return x;
}

static int write_f32_model(const char *path, const shape *sh) {
    gguf_writer *w = gguf_writer_new();
    et_err e = {0};
    gguf_set_str(w, "general.architecture", "llama");
    gguf_set_str(w, "general.name", "random SmolLM2-135M shape");
    gguf_set_u32(w, "llama.context_length", 2048);
    gguf_set_u32(w, "llama.embedding_length", (uint32_t)sh->n_embd);
    gguf_set_u32(w, "llama.block_count", (uint32_t)sh->n_layer);
    gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->n_ff);
    gguf_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head);
    gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv);
    gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_f32(w, "llama.rope.freq_base", 100000.0f);
    int d = sh->n_embd, hd = d / sh->n_head, nkv = sh->n_head_kv * hd;
    float *bufs[16 * 64];
    int nb = 0;
#define ADD(name, n0, n1) do {                                                              \
        int64_t ne[2] = {(n0), (n1)};                                                       \
        float *t = bufs[nb++] = rand_tensor((size_t)(n0) * (size_t)(n1), (n1) == 1 ? 1.0f : 0.05f); \
        if ((n1) == 1) for (int i = 0; i < (n0); i++) t[i] = 1.0f + 0.1f * t[i];          \
        if (gguf_add_tensor(w, name, GGML_TYPE_F32, (n1) == 1 ? 1 : 2, ne, t, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; } \
    } while (0)
    ADD("token_embd.weight", d, sh->n_vocab);
    ADD("output_norm.weight", d, 1);
    char nm[64];
    for (int l = 0; l < sh->n_layer; l++) {
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l); ADD(nm, d, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l); ADD(nm, d, d);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l); ADD(nm, d, nkv);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l); ADD(nm, d, nkv);
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l); ADD(nm, d, d);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l); ADD(nm, d, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", l); ADD(nm, d, sh->n_ff);
        snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l); ADD(nm, d, sh->n_ff);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l); ADD(nm, sh->n_ff, d);
    }
#undef ADD
    int rc = gguf_writer_write(w, path, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    gguf_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
}

/* Read bandwidth in bytes/s over a buffer much larger than the caches. */
static double read_bandwidth(void) {
    size_t n = (size_t)256 << 20;
    uint64_t *b = malloc(n);
    memset(b, 1, n);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i < n / 8; i += 4) { s0 += b[i]; s1 += b[i + 1]; s2 += b[i + 2]; s3 += b[i + 3]; }
        double t = now_s() - t0;
        volatile uint64_t sink = s0 + s1 + s2 + s3;
        (void)sink;
        if (n / t > best) best = n / t;
    }
    free(b);
    return best;
}

static int bench_one(const char *path, const char *type, int threads, int reps, double bw) {
    et_engine *m;
    et_err e = {0};
    if (et_engine_load(&m, path, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 256;
    o.n_threads = threads;
    o.n_batch = 128;
    et_state *s;
    if (et_state_new(&s, m, &o, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    int32_t tok[128];
    for (int i = 0; i < 128; i++) tok[i] = (int32_t)((i * 7919) % m->hp.n_vocab);
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    double best_pp = 1e30, best_tg = 1e30, cpu_pp = 1e30, cpu_tg = 1e30;
    for (int r = 0; r < reps + 1; r++) {   /* the first run warms the page cache */
        et_state_reset(s);
        double t0 = now_s(), c0 = cpu_s();
        et_forward(s, tok, 128, logits, 0, &e);
        double t = now_s() - t0, c = cpu_s() - c0;
        if (r && t < best_pp) best_pp = t;
        if (r && c < cpu_pp) cpu_pp = c;
        et_state_reset(s);
        t0 = now_s();
        c0 = cpu_s();
        for (int i = 0; i < 32; i++) et_forward(s, &tok[i], 1, logits, 0, &e);
        t = now_s() - t0;
        c = cpu_s() - c0;
        if (r && t < best_tg) best_tg = t;
        if (r && c < cpu_tg) cpu_tg = c;
    }
    double bytes = (double)et_engine_weight_bytes(m);
    /* on a shared machine the wall time includes waiting for a core; the
     * CPU-time figure (threads x wall when they all ran) shows the speed of
     * an idle machine */
    printf("%-5s %d thr  %-7s pp128 %7.1f tok/s (cpu-time %7.1f)   tg32 %6.1f tok/s (cpu-time %6.1f)   "
           "%6.1f MiB/token, bandwidth bound %6.1f tok/s\n",
           type, threads, et_state_isa(s), 128 / best_pp, 128 * threads / cpu_pp, 32 / best_tg, 32 * threads / cpu_tg,
           bytes / 1048576.0, bw / bytes);
    fflush(stdout);
    free(logits);
    et_state_free(s);
    et_engine_free(m);
    return 0;
}

int main(int argc, char **argv) {
    const char *types = "F32,F16,Q8_0,Q4_0", *threads = "1,2";
    int small = 0, reps = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--small")) small = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: bench_engine [--types LIST] [--threads LIST] [--small] [--reps N]\n"); return 1; }
    }
    shape sh = {576, 30, 9, 3, 1536, 49152};
    if (small) { sh.n_layer = 6; sh.n_vocab = 4096; }
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char f32[512];
    snprintf(f32, sizeof f32, "%s/bench_engine_%d_F32.gguf", tmp, (int)getpid());
    printf("== engine: random %s model (n_embd %d, %d layers, n_ff %d, n_vocab %d)\n",
           small ? "small" : "SmolLM2-135M-shape", sh.n_embd, sh.n_layer, sh.n_ff, sh.n_vocab);
    if (write_f32_model(f32, &sh)) return 1;
    double bw = read_bandwidth();
    printf("measured read bandwidth: %.1f GB/s (1 thread)\n", bw / 1e9);
    int rc = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    for (char *t = strtok(list, ","); t && !rc; t = strtok(NULL, ",")) {
        char path[600];
        if (!strcmp(t, "F32")) {
            snprintf(path, sizeof path, "%s", f32);
        } else {
            snprintf(path, sizeof path, "%s/bench_engine_%d_%s.gguf", tmp, (int)getpid(), t);
            et_quant_params qp = {0};
            qp.ftype = et_ftype_from_name(t);
            et_err e = {0};
            if (qp.ftype < 0 || et_quantize_model(f32, path, &qp, NULL, &e)) {
                fprintf(stderr, "bench_engine: %s: %s\n", t, e.msg[0] ? e.msg : "unknown type");
                rc = 1;
                break;
            }
        }
        char tl[64];
        snprintf(tl, sizeof tl, "%s", threads);
        for (char *p = tl; *p && !rc;) {
            int th = atoi(p);
            rc = bench_one(path, t, th > 0 ? th : 1, reps, bw);
            while (*p && *p != ',') p++;
            if (*p == ',') p++;
        }
        if (strcmp(t, "F32")) unlink(path);
    }
    unlink(f32);
    return rc;
}
