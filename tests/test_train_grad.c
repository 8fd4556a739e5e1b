/* tests/test_train_grad.c — a whole trainer step's gradients (et_train_llama's
 * fwd_bwd, as `edgetune train` calls it) against central finite differences
 * of its own loss (et_train_model.forward, summed in double).
 *
 * The case the op tests do not cover together: tied embeddings (token_embd
 * is both the embedding and the LM head, so its gradient gets the LM head's
 * share — made in the forward by et_xent_opts.grad_in_forward — AND the
 * embedding's scatter), masked prompt positions (targets -1), gradient
 * accumulation over micro-batches (fwd_bwd adds; norm = the tokens of all
 * micro-batches), the LM head in several chunks (the last one partial),
 * head_dim 8 with grouped-query attention, with and without per-layer
 * recomputation.  A gradient that is overwritten instead of added, or
 * scaled by the wrong dloss, is off by O(1); the finite differences agree
 * within about 1e-3 (float parameters, h = 1e-2). */
#include <math.h>

#include "testutil.h"
#include "../train/gemm.h"
#include "../train/init.h"
#include "../train/threads.h"
#include "../train/train_llama.h"
#include "../train/trainer.h"

enum { B = 2, T = 12, N_ACCUM = 2, VOCAB = 29 };

/* The tiny llama of these tests: head_dim 8, grouped-query attention, tied
 * embeddings, n_layer layers. */
static void tiny_hparams(et_hparams *hp, int n_layer) {
    memset(hp, 0, sizeof *hp);
    snprintf(hp->arch, sizeof hp->arch, "llama");
    hp->n_vocab = VOCAB;
    hp->n_embd = 32;
    hp->n_layer = n_layer;
    hp->n_ctx = 64;
    hp->n_head = 4;
    hp->n_head_kv = 2;
    hp->n_ff = 40;
    hp->head_dim = 8;
    hp->rms_eps = 1e-5f;
    hp->rope_theta = 10000.0f;
    hp->tied_output = 1;
}

static void check_step(int recompute) {
    et_hparams hp;
    tiny_hparams(&hp, 2);
    et_model m;
    et_train_llama tl;
    et_train_model tm;
    et_err e = {0};
    assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
    assert_int_equal(et_train_llama_init(&tl, &m, 5, &tm, &e), 0); /* 24 rows: chunks of 5, the last of 4 */
    tl.recompute = recompute;
    et_xoshiro rng;
    et_xoshiro_seed(&rng, 3);
    et_init_normal(tm.t, tm.n_t, hp.n_layer, 0.3f, &rng); /* large enough that every path matters */

    /* N_ACCUM micro-batches; the first 5 positions of each row are a masked prompt */
    int32_t tok[N_ACCUM][B][T + 1];
    uint8_t mask[N_ACCUM][B][T + 1];
    uint32_t s = 7;
    int n_tok = 0;
    for (int a = 0; a < N_ACCUM; a++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j <= T; j++) {
                s = s * 1664525u + 1013904223u;
                tok[a][b][j] = (int32_t)((s >> 8) % VOCAB);
                mask[a][b][j] = j >= 5 + a; /* a different count per micro-batch */
                n_tok += j >= 1 && mask[a][b][j];
            }

    memset(tm.grads, 0, tm.n * sizeof(float));
    for (int a = 0; a < N_ACCUM; a++) {
        double ls;
        int rc = tm.fwd_bwd(tm.ctx, &tok[a][0][0], &mask[a][0][0], B, T, (double)n_tok, &ls, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
    }
    /* the mean token loss over all micro-batches, in double */
    double worst = 0.0;
    for (int ti = 0; ti < tm.n_t; ti++) {
        const et_named *d = &tm.t[ti];
        const size_t off = (size_t)(d->data - tm.params), stride = d->n > 24 ? d->n / 23 : 1;
        double num = 0.0, den = 0.0;
        for (size_t k = 0; k < d->n; k += stride) {
            float *p = tm.params + off + k;
            const float old = *p, hi = old + 1e-2f, lo = old - 1e-2f;
            double l[2] = {0.0, 0.0};
            for (int side = 0; side < 2; side++) {
                *p = side ? lo : hi;
                for (int a = 0; a < N_ACCUM; a++) {
                    double ls;
                    assert_int_equal(tm.forward(tm.ctx, &tok[a][0][0], &mask[a][0][0], B, T, &ls, &e), 0);
                    l[side] += ls;
                }
            }
            *p = old;
            const double fd = (l[0] - l[1]) / ((double)hi - (double)lo) / n_tok, g = tm.grads[off + k];
            num += (g - fd) * (g - fd);
            den += fd * fd;
        }
        const double rel = sqrt(num / (den + 1e-30));
        if (rel > 1e-2) fprintf(stderr, "recompute %d: %s: gradient vs finite differences, relative error %.3g\n",
                                recompute, d->name, rel);
        worst = fmax(worst, rel);
    }
    assert_true(worst < 1e-2);
    et_train_llama_free(&tl);
    et_model_free(&m);
}

static void test_step_tied_masked_accum(void **state) {
    (void)state;
    check_step(0);
}

static void test_step_recompute(void **state) {
    (void)state;
    check_step(1);
}

/* Rematerialisation (train/tape.h et_tape_drop: the normed rows and
 * swiglu's product recomputed in backward) gives the same loss and the same
 * gradient bits as keeping them, with and without per-layer recomputation,
 * in f32 and bf16 GEMMs, and a smaller arena: a restore that recomputed
 * anything else (or into the wrong tensor) would change dW of the
 * projections that read them. */
static void test_remat_same_bits(void **state) {
    (void)state;
    et_hparams hp;
    tiny_hparams(&hp, 3);
    int32_t tok[B][T + 1];
    uint8_t mask[B][T + 1];
    memset(mask, 1, sizeof mask);
    uint32_t s = 11;
    for (int b = 0; b < B; b++)
        for (int j = 0; j <= T; j++) {
            s = s * 1664525u + 1013904223u;
            tok[b][j] = (int32_t)((s >> 8) % VOCAB);
        }
    for (int cfg = 0; cfg < 4; cfg++) {
        const int recompute = cfg & 1, bf16 = cfg >> 1;
        float *g[2] = {NULL, NULL};
        double loss[2];
        size_t peak[2];
        for (int keep = 0; keep < 2; keep++) {
            et_model m;
            et_train_llama tl;
            et_train_model tm;
            et_err e = {0};
            assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
            assert_int_equal(et_train_llama_init(&tl, &m, 0, &tm, &e), 0);
            tl.recompute = recompute;
            tl.tape.no_remat = tl.inner.no_remat = keep;
            if (bf16) tl.tape.gemm_precision = tl.inner.gemm_precision = ET_GEMM_BF16;
            et_xoshiro rng;
            et_xoshiro_seed(&rng, 5);
            et_init_normal(tm.t, tm.n_t, hp.n_layer, 0.3f, &rng);
            for (int step = 0; step < 2; step++) { /* the second step reuses the pool */
                memset(tm.grads, 0, tm.n * sizeof(float));
                int rc = tm.fwd_bwd(tm.ctx, &tok[0][0], &mask[0][0], B, T, (double)(B * T), &loss[keep], &e);
                if (rc) fprintf(stderr, "%s\n", e.msg);
                assert_int_equal(rc, 0);
            }
            peak[keep] = tl.tape.arena.peak + tl.inner.arena.peak;
            g[keep] = malloc(tm.n * sizeof(float));
            memcpy(g[keep], tm.grads, tm.n * sizeof(float));
            if (!keep) assert_true(tl.tape.n_pool + tl.inner.n_pool >= 1 && tl.tape.n_pool <= 2);
            et_train_llama_free(&tl);
            et_model_free(&m);
        }
        printf("  recompute %d, bf16 %d: loss %.9g, arena peak %zu bytes rematerialising, %zu keeping\n",
               recompute, bf16, loss[0], peak[0], peak[1]);
        assert_true(loss[0] == loss[1]);
        et_model m0;
        et_err e = {0};
        assert_int_equal(et_model_alloc(&m0, &hp, &e), 0);
        assert_memory_equal(g[0], g[1], m0.n_params * sizeof(float));
        /* 2 n_embd + n_ff floats per row and layer fewer (recompute: per layer being recomputed) */
        assert_true(peak[0] < peak[1]);
        et_model_free(&m0);
        free(g[0]), free(g[1]);
    }
}

int main(void) {
    et_omp_passive_reexec(); /* idle OpenMP workers sleep: see train/threads.h */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_tied_masked_accum),
        cmocka_unit_test(test_step_recompute),
        cmocka_unit_test(test_remat_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
