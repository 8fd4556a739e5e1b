/* bench/bench_distill.c — the cost of a distillation step (distill/distill.h)
 * beside a plain training step of the same student, in the same run:
 * steps alternate plain CE / KD from stored top-k / KD from an online
 * teacher, medians of the repeats; then each mode once more in a child
 * process for its peak RSS.
 *
 *   build/bench/bench_distill [smollm2|stories260K] [B (4)] [T (128)] [reps (5)]
 *
 * smollm2 (default): SmolLM2-135M's shapes (n_vocab 49152, n_embd 576, 9
 * heads / 3 kv, n_ff 1536), a student of 15 layers, a teacher of 30, random
 * weights (speed only); the stored teacher is a top-64 file of the same
 * layout `edgetune logits` writes (random ids, decreasing log-probs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../datasets/teacher.h"
#include "../distill/distill.h"
#include "../train/threads.h"

#include "bench_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static float frand(void) { return (float)((next() >> 40) * (1.0 / 8388608.0) - 1.0); }

static int make_model(et_model *m, et_hparams hp, int n_layer, et_err *e) {
    hp.n_layer = n_layer;
    if (et_model_alloc(m, &hp, e)) return -1;
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = 0.035f * frand();
    et_named t[1024];
    int n = et_model_tensors(m, t, 1024);
    for (int i = 0; i < n; i++)
        if (t[i].n_dims == 1)
            for (size_t j = 0; j < t[i].n; j++) t[i].data[j] = 1.0f;
    return 0;
}

/* rows documents of T+1 tokens and their top-64 teacher rows */
static int make_teacher_file(const char *path, int V, int rows, int T, int k, et_err *e) {
    et_ds_meta dm = {.n_vocab = V, .bos_id = 1, .eos_id = 2, .source = "bench"};
    et_ds_writer *w;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", path);
    if (et_ds_writer_open(&w, tmp, &dm, 0, e)) return -1;
    int32_t *tok = malloc(sizeof *tok * (size_t)(T + 1));
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j <= T; j++) tok[j] = (int32_t)(next() % (uint64_t)V);
        if (et_ds_writer_add(w, tok, NULL, (size_t)T + 1, -1, e)) return -1;
    }
    free(tok);
    if (et_ds_writer_commit(w, e)) return -1;
    int64_t n = (int64_t)rows * (T + 1);
    et_teacher_meta m = {.temperature = 1.0, .k = k, .n_vocab = V, .n_ctx = T + 1};
    snprintf(m.mode, sizeof m.mode, "topk");
    snprintf(m.scoring, sizeof m.scoring, "all");
    et_teacher_writer *tw;
    if (et_teacher_writer_open(&tw, path, n, &m, e)) return -1;
    int32_t *ids = malloc(sizeof *ids * (size_t)n * k);
    uint16_t *lp = malloc(sizeof *lp * (size_t)n * k);
    float *tg = calloc((size_t)n, sizeof(float));
    uint8_t *sc = malloc((size_t)n);
    for (int64_t p = 0; p < n; p++) {
        const int32_t base = (int32_t)(next() % (uint64_t)V);
        for (int j = 0; j < k; j++) {
            ids[p * k + j] = (base + j * 7919) % V;
            lp[p * k + j] = et_fp32_to_fp16(-1.0f - 0.1f * (float)j);
        }
        sc[p] = (p % (T + 1)) != T;
    }
    int rc = et_teacher_writer_rows(tw, 0, n, ids, lp, tg, sc, e);
    free(ids), free(lp), free(tg), free(sc);
    int rc2 = et_teacher_writer_close(tw, e);
    return rc || rc2 ? -1 : 0;
}

enum { PLAIN = 0, STORED = 1, ONLINE = 2 };
static const char *const MODE[3] = {"plain CE", "KD stored top-64", "KD online teacher"};

typedef struct {
    et_train_llama tl;
    et_train_model tm;
    et_distill d[2];
    int32_t *tok;
    uint8_t *msk;
    int B, T;
} bench;

static int step(bench *b, int mode, et_err *e) {
    et_train_llama *tl = &b->tl;
    if (mode == PLAIN) {
        tl->loss_fn = NULL;
    } else {
        et_distill *d = &b->d[mode - 1];
        tl->loss_ctx = d; /* tl->loss_fn: the KD hook, set by the caller */
        for (int r = 0; r < b->B; r++) d->row_pos[r] = (int64_t)r * (b->T + 1);
    }
    double ls;
    return b->tm.fwd_bwd(tl, b->tok, b->msk, b->B, b->T, (double)b->B * b->T, &ls, e);
}

int main(int argc, char **argv) {
    const char *shape = argc > 1 ? argv[1] : "smollm2";
    const int B = argc > 2 ? atoi(argv[2]) : 4, T = argc > 3 ? atoi(argv[3]) : 128, reps = argc > 4 && atoi(argv[4]) > 0 ? atoi(argv[4]) : 5;
    et_omp_passive_reexec();
    et_hparams hp = {.arch = "llama", .n_vocab = 49152, .n_embd = 576, .n_head = 9, .n_head_kv = 3, .n_ff = 1536,
                     .n_ctx = 2048, .rms_eps = 1e-5f, .rope_theta = 10000.0f, .tied_output = 1};
    int ls = 15, lt = 30;
    if (!strcmp(shape, "stories260K")) {
        hp.n_vocab = 512, hp.n_embd = 64, hp.n_head = 8, hp.n_head_kv = 4, hp.n_ff = 172, hp.n_ctx = 512;
        ls = 3, lt = 5;
    }
    et_err e = {0};
    et_model student = {0}, teacher = {0};
    char path[256];
    snprintf(path, sizeof path, "/tmp/edgetune-bench-distill-%ld.h5", (long)getpid());
    bench b = {.B = B, .T = T};
    if (make_model(&student, hp, ls, &e) || make_model(&teacher, hp, lt, &e) ||
        make_teacher_file(path, hp.n_vocab, B, T, 64, &e) || et_train_llama_init(&b.tl, &student, 0, &b.tm, &e)) {
        fprintf(stderr, "bench_distill: %s\n", e.msg);
        return 1;
    }
    et_distill_opts o = et_distill_defaults();
    o.teacher_logits = path;
    et_train_model tm2 = b.tm;
    if (et_distill_init(&b.d[0], &b.tl, &tm2, &o, B, T, &e)) {
        fprintf(stderr, "bench_distill: %s\n", e.msg);
        return 1;
    }
    o.teacher_logits = NULL, o.teacher = &teacher;
    b.tl.loss_fn = NULL, b.tl.loss_ctx = NULL;
    if (et_distill_init(&b.d[1], &b.tl, &tm2, &o, B, T, &e)) {
        fprintf(stderr, "bench_distill: %s\n", e.msg);
        return 1;
    }
    b.d[0].tl = NULL, b.d[1].tl = NULL; /* the loss hook is switched per step below */
    et_tensor *(*kd_fn)(void *, et_tape *, et_train_llama *, et_tensor *, int, int, double) = b.tl.loss_fn;
    b.tok = malloc(sizeof *b.tok * (size_t)B * (T + 1));
    b.msk = malloc((size_t)B * (T + 1));
    et_ds *ds;
    if (et_ds_open(&ds, path, &e)) return 1;
    et_ds_read_tokens(ds, 0, (int64_t)B * (T + 1), b.tok, &e);
    et_ds_close(ds);
    memset(b.msk, 1, (size_t)B * (T + 1));
    if (argc > 4 && !strncmp(argv[4], "rss", 3)) {
        const int mode = atoi(argv[4] + 3);
        b.tl.loss_fn = mode ? kd_fn : NULL;
        if (step(&b, mode, &e) || step(&b, mode, &e)) return 1;
        printf("%ld\n", peak_rss_kb());
        remove(path);
        return 0;
    }
    printf("bench_distill: %s shapes, student %d layers (%zu parameters), teacher %d layers; batch %d x %d; %d reps\n",
           shape, ls, student.n_params, lt, B, T, reps);
    double t[3][64];
    int n = reps > 64 ? 64 : reps;
    for (int r = -1; r < n; r++) /* r = -1: warm-up */
        for (int mode = 0; mode < 3; mode++) {
            b.tl.loss_fn = mode ? kd_fn : NULL;
            double t0 = now();
            if (step(&b, mode, &e)) {
                fprintf(stderr, "bench_distill: %s: %s\n", MODE[mode], e.msg);
                return 1;
            }
            if (r >= 0) t[mode][r] = now() - t0;
        }
    double med[3];
    for (int mode = 0; mode < 3; mode++) med[mode] = median(t[mode], n);
    for (int mode = 0; mode < 3; mode++)
        printf("  %-20s %8.1f ms/step  %7.0f tokens/s  %.3fx plain\n", MODE[mode], 1e3 * med[mode],
               (double)B * T / med[mode], med[mode] / med[0]);
    printf("  online teacher's share of its step: %.0f%% (the online step minus the stored one)\n",
           100.0 * (med[2] - med[1]) / med[2]);
    /* peak RSS per mode: this program again with only that mode (fork after
       OpenMP has started threads is not safe), VmHWM after setup and 2 steps */
    long rss[3] = {0};
    for (int mode = 0; mode < 3; mode++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "/proc/%ld/exe %s %d %d rss%d", (long)getpid(), shape, B, T, mode);
        FILE *f = popen(cmd, "r");
        if (!f || fscanf(f, "%ld", &rss[mode]) != 1) rss[mode] = -1;
        if (f) pclose(f);
    }
    printf("  peak RSS (setup + 2 steps, one mode per process): plain %.0f MB, stored %.0f MB (%.3fx), online %.0f MB (%.3fx)\n",
           rss[0] / 1024.0, rss[1] / 1024.0, (double)rss[1] / (double)rss[0], rss[2] / 1024.0, (double)rss[2] / (double)rss[0]);
    remove(path);
    return 0;
}
