/* bench/bench_qat.c — the cost of quantization-aware training (train/qat.h):
 * a QAT step against a plain training step of the same model in the same
 * run, interleaved (plain, QAT, plain, QAT, ...) so both see the same
 * machine load, medians.
 *
 *   build/bench/bench_qat [stories260K|smollm2] [TYPE] [B] [T] [steps] [imatrix]
 *
 * A step here = forward + backward + AdamW (et_adamw_step) over every
 * parameter; the QAT step also requantizes every fake-quantized weight once
 * (et_qat_step after the update, the cache remade on the next forward), as
 * `edgetune train --qat` does.  Default: stories260K at batch 4 x 256,
 * Q4_K_M; random weights (std 0.02), tied embeddings.  Reported: both
 * medians, their ratio, and the requantization's own median time.  With
 * "imatrix": the QAT step on the imatrix grid (--qat-imatrix: ggml's
 * weighted searches), from a synthetic imatrix (random column weights). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/imatrix.h"
#include "../quant/quantize_model.h"
#include "../train/llama.h"
#include "../train/optim.h"
#include "../train/qat.h"
#include "../train/threads.h"

#include "bench_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}

static double step(et_tape *t, et_llama *L, et_model *m, et_model *g, et_adamw *opt, et_qat *q,
                   const int32_t *tok, int B, int T, double *t_fq) {
    double t0 = now();
    if (q) {
        et_qat_sync(q); /* the requantization of this step */
        *t_fq = now() - t0;
    }
    et_tensor *l = et_llama_forward(t, L, tok, tok + 1, B, T, NULL);
    et_tape_backward(t, l);
    et_err e = {0};
    if (et_tape_status(t, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg);
        exit(3);
    }
    et_adamw_step(opt, m->params, g->params, 1e-5f, 1.0f);
    if (q) et_qat_step(q, opt->step);
    memset(g->params, 0, g->n_params * sizeof(float));
    et_tape_reset(t);
    return now() - t0;
}

int main(int argc, char **argv) {
    et_omp_passive_reexec();
    const char *shape = argc > 1 ? argv[1] : "stories260K";
    const char *type = argc > 2 ? argv[2] : "Q4_K_M";
    et_hparams hp = {.arch = "llama", .rms_eps = 1e-5f, .rope_theta = 10000.0f, .tied_output = 1};
    if (!strcmp(shape, "smollm2")) {
        hp.n_vocab = 49152, hp.n_embd = 576, hp.n_ff = 1536, hp.n_layer = 30, hp.n_head = 9, hp.n_head_kv = 3;
        hp.rope_theta = 100000.0f;
    } else {
        hp.n_vocab = 512, hp.n_embd = 64, hp.n_ff = 172, hp.n_layer = 5, hp.n_head = 8, hp.n_head_kv = 4;
    }
    hp.head_dim = hp.n_embd / hp.n_head;
    hp.n_ctx = 2048;
    const int B = argc > 3 ? atoi(argv[3]) : 4, T = argc > 4 ? atoi(argv[4]) : 256;
    const int steps = argc > 5 ? atoi(argv[5]) : (!strcmp(shape, "smollm2") ? 3 : 20);
    const int ftype = et_ftype_from_name(type);
    if (B < 1 || T < 1 || steps < 1 || steps > 1000 || ftype < 0) {
        fprintf(stderr, "usage: %s [stories260K|smollm2] [TYPE] [B] [T] [steps<=1000]\n", argv[0]);
        return 1;
    }
    et_model m, g;
    et_err e = {0};
    et_llama L;
    if (et_model_alloc(&m, &hp, &e) || et_model_grads_alloc(&g, &m, &e) || et_llama_bind(&L, &m, &g, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg[0] ? e.msg : "out of memory");
        return 3;
    }
    for (size_t i = 0; i < m.n_params; i++) m.params[i] = 0.02f * 1.7320508f * frand();
    for (int i = 0; i < L.n_tensors; i++)
        if (L.tensors[i]->ndim == 1)
            for (size_t k = 0; k < L.tensors[i]->n; k++) L.tensors[i]->data[k] = 1.0f;
    int32_t *tok = malloc(sizeof(int32_t) * (B * T + 1));
    for (int i = 0; i < B * T + 1; i++) tok[i] = (int32_t)((rng = rng * 6364136223846793005ull + 1) >> 33) % hp.n_vocab;

    et_adamw opt;
    et_adamw_hp ahp = {0.9f, 0.95f, 1e-8f, 0.0f};
    et_qat q;
    et_qat_opts qo = {.ftype = ftype};
    et_imatrix im;
    et_imatrix_init(&im);
    const int use_im = argc > 6 && !strcmp(argv[6], "imatrix");
    for (int i = 0; use_im && i < L.n_tensors; i++) {
        const et_tensor *w = L.tensors[i];
        if (w->ndim != 2 || strncmp(w->name, "blk.", 4)) continue;
        const int64_t n = w->shape[1];
        float *x = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++) x[j] = 1.1f + frand();
        if (et_imatrix_accumulate(&im, w->name, x, 1, n, &e)) {
            fprintf(stderr, "bench: %s\n", e.msg);
            return 3;
        }
        free(x);
    }
    if (use_im) qo.imatrix = &im, qo.imatrix_name = "synthetic";
    et_tape t;
    if (et_adamw_init(&opt, m.n_params, &ahp, &e) || et_qat_attach(&q, &L, &qo, &e) || et_tape_init(&t, 0, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg);
        return 3;
    }
    double *tp = malloc(sizeof(double) * steps), *tq = malloc(sizeof(double) * steps),
           *tf = malloc(sizeof(double) * steps), fq = 0;
    for (int s = 0; s < steps + 1; s++) { /* step 0 grows the arenas: not timed */
        q.active = 0;
        et_qat_sync(&q); /* the model's own weights: a plain step */
        double a = step(&t, &L, &m, &g, &opt, NULL, tok, B, T, &fq);
        et_qat_set_step(&q, 0);
        double b = step(&t, &L, &m, &g, &opt, &q, tok, B, T, &fq);
        if (s) tp[s - 1] = a, tq[s - 1] = b, tf[s - 1] = fq;
    }
    const double mp = median(tp, steps), mq = median(tq, steps), mf = median(tf, steps);
    printf("QAT step %s, %s%s (%d tensors fake-quantized), batch %d x %d, %zu params (%d steps each, interleaved, medians)\n",
           shape, type, use_im ? " on the imatrix grid" : "", q.n_w, B, T, m.n_params, steps);
    printf("  plain step  %9.2f ms\n  QAT step    %9.2f ms   (requantization %.2f ms)   QAT/plain %.3f\n", mp * 1e3,
           mq * 1e3, mf * 1e3, mq / mp);
    et_tape_free(&t);
    et_qat_free(&q);
    et_imatrix_free(&im);
    et_adamw_free(&opt);
    et_llama_unbind(&L);
    et_model_grads_free(&g);
    et_model_free(&m);
    free(tok), free(tp), free(tq), free(tf);
    return 0;
}
