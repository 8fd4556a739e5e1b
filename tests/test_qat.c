/* tests/test_qat.c — quantization-aware training (train/qat.h,
 * train/op_fakequant.c, `edgetune train --qat`).
 *
 *  - the fake-quant forward of every type equals an independent
 *    quantize -> dequantize of each row (quant/quant.h), in place too;
 *  - the STE gradient: after fwd_bwd, w's gradient equals central finite
 *    differences of the loss with respect to the cached w_q (the function
 *    the forward computes), summed in double; with per-layer recomputation
 *    and gradient accumulation, and the cache is made once per step;
 *  - the export (the key property): stories260K trained with --qat TYPE,
 *    then `edgetune quantize --type TYPE` on its F32 model.gguf (Q4_0, Q4_K_M
 *    on stories260K's rows of 64/172: the fallback chain; Q4_K_M, Q3_K_M,
 *    Q2_K on a 256-wide model: the K-quant grids themselves): the file's
 *    tensors have the types QAT chose and dequantize to the training
 *    forward's w_q bit for bit, and the engine's logits on those weights
 *    equal the training forward's logits up to float summation order;
 *  - bad input: an unknown --qat type and a type map naming no tensor exit 2;
 *    a row length the block does not divide falls back with a notice;
 *  - resume with --qat is bit-exact. */
#include <math.h>
#include <stdarg.h>
#include <unistd.h>

#include "testutil.h"
#include "../engine/engine.h"
#include "../engine/kernels.h"
#include "../export/gguf.h"
#include "../lora/lora_train.h"
#include "../quant/imatrix.h"
#include "../quant/quant.h"
#include "../quant/quantize_model.h"
#include "../train/init.h"
#include "../train/qat.h"
#include "../train/train_llama.h"

static const uint32_t TYPES[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                 GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q3_K, GGML_TYPE_Q2_K};

static void test_rows_each_type(void **state) {
    (void)state;
    enum { R = 6, K = 512 };
    float *w = malloc(sizeof(float) * R * K), *wq = malloc(sizeof(float) * R * K),
          *ref = malloc(sizeof(float) * K), *in = malloc(sizeof(float) * R * K);
    uint8_t *scratch = malloc(R * K * 2), *blk = malloc(K * 2);
    uint32_t s = 12345;
    for (int i = 0; i < R * K; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (i % 97 == 0 ? 4.0f : 0.2f);
    }
    for (size_t k = 0; k < sizeof TYPES / sizeof TYPES[0]; k++) {
        const uint32_t ty = TYPES[k];
        assert_int_equal(et_fake_quant_rows(ty, w, wq, R, K, scratch), 0);
        memcpy(in, w, sizeof(float) * R * K);
        assert_int_equal(et_fake_quant_rows(ty, in, in, R, K, scratch), 0); /* in place */
        int moved = 0;
        for (int r = 0; r < R; r++) {
            assert_int_equal(et_quantize_row(ty, w + r * K, blk, K), 0);
            assert_int_equal(et_dequantize_row(ty, blk, ref, K), 0);
            if (memcmp(ref, wq + r * K, sizeof(float) * K) || memcmp(ref, in + r * K, sizeof(float) * K))
                fail_msg("%s: row %d differs from quantize -> dequantize", ggml_type_name(ty), r);
            for (int i = 0; i < K; i++) moved += ref[i] != w[r * K + i];
        }
        assert_true(moved > R * K / 2); /* it did quantize */
    }
    /* a row length the block does not divide */
    assert_int_equal(et_fake_quant_rows(GGML_TYPE_Q4_0, w, wq, 2, 100, scratch), ET_EINPUT);
    assert_int_equal(et_fake_quant_rows(GGML_TYPE_Q4_K, w, wq, 2, 128, scratch), ET_EINPUT);
    free(w), free(wq), free(ref), free(in), free(scratch), free(blk);
}

/* --qat-act's rounding against the engine's own arithmetic: for a weight
 * row of each type, the engine's dot kernel (its activation quantizer and
 * integer sums) equals the double-precision dot of the dequantized weights
 * with et_fake_quant_act_rows' activations, to float rounding; the plain
 * F32 activations do not (the test would not see a missing rounding). */
static void test_act_rounding(void **state) {
    (void)state;
    enum { K = 512 };
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_IQ4_NL, GGML_TYPE_Q4_K,
                              GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q3_K, GGML_TYPE_Q2_K, GGML_TYPE_F16};
    float *w = malloc(sizeof(float) * K), *wd = malloc(sizeof(float) * K), *x = malloc(sizeof(float) * K),
          *xq = malloc(sizeof(float) * K);
    uint8_t *blk = malloc(K * 4), *act = malloc(K * 4 + 4096);
    const et_kernels *kr = et_kernels_get("scalar");
    assert_non_null(kr);
    et_kernels_init();
    uint32_t s = 777;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        double worst = 0, plain_err = 0;
        for (int trial = 0; trial < 20; trial++) {
            for (int i = 0; i < K; i++) {
                s = s * 1664525u + 1013904223u;
                w[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.2f;
                s = s * 1664525u + 1013904223u;
                x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * (i % 61 == 0 ? 8.0f : 1.0f);
            }
            assert_int_equal(et_quantize_row(types[k], w, blk, K), 0);
            assert_int_equal(et_dequantize_row(types[k], blk, wd, K), 0);
            assert_int_equal(et_fake_quant_act_rows(types[k], x, xq, 1, K), 0);
            et_act_convert(types[k], x, act, K);
            const float eng = et_kernels_dot(kr, types[k])(K, blk, act);
            double ref = 0, pl = 0, mag = 0;
            for (int i = 0; i < K; i++) {
                ref += (double)wd[i] * xq[i];
                pl += (double)wd[i] * x[i];
                mag += fabs((double)wd[i] * x[i]);
            }
            worst = fmax(worst, fabs(eng - ref) / mag);
            plain_err = fmax(plain_err, fabs(eng - pl) / mag);
        }
        fprintf(stderr, "act %s: engine dot vs dequantized weights x rounded activations: %.2g of sum|w x| "
                "(unrounded activations: %.2g)\n", ggml_type_name(types[k]), worst, plain_err);
        assert_true(worst < 2e-6);
        assert_true(plain_err > 10 * worst);
    }
    assert_int_equal(et_fake_quant_act_rows(GGML_TYPE_Q4_K, x, xq, 1, 100), ET_EINPUT);
    assert_int_equal(et_fake_quant_act_rows(GGML_TYPE_F32, x, xq, 1, K), 0);
    assert_memory_equal(x, xq, sizeof(float) * K);
    free(w), free(wd), free(x), free(xq), free(blk), free(act);
}

/* ---- STE gradient against finite differences ---- */

enum { B = 2, T = 10, N_ACCUM = 2, VOCAB = 40 };

static void fill_batch(int32_t tok[N_ACCUM][B][T + 1], uint8_t mask[N_ACCUM][B][T + 1], int *n_tok) {
    uint32_t s = 7;
    *n_tok = 0;
    for (int a = 0; a < N_ACCUM; a++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j <= T; j++) {
                s = s * 1664525u + 1013904223u;
                tok[a][b][j] = (int32_t)((s >> 8) % VOCAB);
                mask[a][b][j] = j >= 3;
                *n_tok += j >= 1 && mask[a][b][j];
            }
}

static void check_ste(int recompute, int ftype, int hooks) {
    et_hparams hp;
    memset(&hp, 0, sizeof hp);
    snprintf(hp.arch, sizeof hp.arch, "llama");
    hp.n_vocab = VOCAB, hp.n_embd = 256, hp.n_layer = 2, hp.n_ctx = 64, hp.n_head = 4, hp.n_head_kv = 2;
    hp.n_ff = 256, hp.head_dim = 64, hp.rms_eps = 1e-5f, hp.rope_theta = 10000.0f, hp.tied_output = 0;
    et_model m;
    et_train_llama tl;
    et_train_model tm;
    et_err e = {0};
    assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
    assert_int_equal(et_train_llama_init(&tl, &m, 7, &tm, &e), 0);
    tl.recompute = recompute;
    et_xoshiro rng;
    et_xoshiro_seed(&rng, 5);
    et_init_normal(tm.t, tm.n_t, hp.n_layer, 0.3f, &rng);
    int32_t tok[N_ACCUM][B][T + 1];
    uint8_t mask[N_ACCUM][B][T + 1];
    int n_tok;
    fill_batch(tok, mask, &n_tok);

    /* the loss without QAT, to see that fake quantization changes it */
    double plain = 0.0, ls;
    for (int a = 0; a < N_ACCUM; a++) {
        assert_int_equal(tm.forward(tm.ctx, &tok[a][0][0], &mask[a][0][0], B, T, &ls, &e), 0);
        plain += ls;
    }
    et_qat q;
    et_qat_opts o = {.ftype = ftype, .hooks = hooks};
    if (et_qat_attach(&q, &tl.L, &o, &e)) fail_msg("%s", e.msg);
    et_qat_set_step(&q, 0);
    tl.qat = &q;
    assert_true(q.n_w == 2 + 7 * hp.n_layer); /* token_embd, output and every linear */
    memset(tm.grads, 0, tm.n * sizeof(float));
    double fq = 0.0;
    for (int a = 0; a < N_ACCUM; a++) {
        if (tm.fwd_bwd(tm.ctx, &tok[a][0][0], &mask[a][0][0], B, T, (double)n_tok, &ls, &e)) fail_msg("%s", e.msg);
        fq += ls;
    }
    assert_true(fabs(fq - plain) > 1e-4 * fabs(plain));
    assert_int_equal((int)q.n_refresh, q.n_w); /* once per step, whatever the micro-batches and recomputation */

    double worst = 0.0;
    for (int k = 0; k < q.n_w; k++) {
        et_qat_w *w = &q.w[k];
        const size_t n = (size_t)(w->rows * w->cols), stride = n > 5 ? n / 4 : 1; /* 4-5 points a tensor */
        const size_t off = (size_t)(w->master - tm.params);
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < n; i += stride) {
            float *p = w->wq + i; /* the forward reads the cache: perturb w_q */
            const float old = *p, hi = old + 1e-2f, lo = old - 1e-2f;
            double l[2] = {0.0, 0.0};
            for (int side = 0; side < 2; side++) {
                *p = side ? lo : hi;
                for (int a = 0; a < N_ACCUM; a++) {
                    assert_int_equal(tm.forward(tm.ctx, &tok[a][0][0], &mask[a][0][0], B, T, &ls, &e), 0);
                    l[side] += ls;
                }
            }
            *p = old;
            const double fd = (l[0] - l[1]) / ((double)hi - (double)lo) / n_tok, g = tm.grads[off + i];
            num += (g - fd) * (g - fd);
            den += fd * fd;
        }
        const double rel = sqrt(num / (den + 1e-30));
        if (rel > 3e-2) fprintf(stderr, "%s (%s): STE gradient vs finite differences in w_q: %.3g\n", w->name,
                                ggml_type_name(w->type), rel);
        worst = fmax(worst, rel);
    }
    fprintf(stderr, "qat %s recompute %d hooks %d: %d tensors, STE gradient vs finite differences: worst relative error %.3g\n",
            et_ftype_name(ftype), recompute, hooks, q.n_w, worst);
    /* float forwards, h = 1e-2: the sparse embedding rows reach ~1.7e-2;
       a gradient routed wrongly (not added, or missing the STE) is off by O(1) */
    assert_true(worst < 3e-2);
    assert_int_equal((int)q.n_refresh, q.n_w); /* forwards alone never requantize */

    /* after an optimizer step the cache follows the master weights */
    float *m0 = q.w[0].master;
    m0[0] += 0.5f;
    et_qat_step(&q, 1);
    assert_int_equal(tm.forward(tm.ctx, &tok[0][0][0], &mask[0][0][0], B, T, &ls, &e), 0);
    assert_int_equal((int)q.n_refresh, 2 * q.n_w);
    float *ref = malloc(sizeof(float) * (size_t)(q.w[0].rows * q.w[0].cols));
    uint8_t *scr = malloc(q.scratch_bytes);
    et_fake_quant_rows(q.w[0].type, m0, ref, q.w[0].rows, q.w[0].cols, scr);
    assert_memory_equal(ref, q.w[0].wq, sizeof(float) * (size_t)(q.w[0].rows * q.w[0].cols));
    free(ref), free(scr);
    /* detached: the model is as it was */
    et_qat_free(&q);
    tl.qat = NULL;
    for (int i = 0; i < tl.L.n_tensors; i++) assert_true(tl.L.tensors[i]->data >= m.params &&
                                                          tl.L.tensors[i]->data < m.params + m.n_params);
    et_train_llama_free(&tl);
    et_model_free(&m);
}

static void test_ste_q4_0(void **state) { (void)state; check_ste(0, ET_FTYPE_MOSTLY_Q4_0, 0); }
static void test_ste_q4_k_m_recompute(void **state) { (void)state; check_ste(1, ET_FTYPE_MOSTLY_Q4_K_M, 0); }
/* the same through the linear hook (et_qat_opts.hooks) */
static void test_ste_q4_0_hooks(void **state) { (void)state; check_ste(1, ET_FTYPE_MOSTLY_Q4_0, 1); }

/* ---- the export ---- */

static const char *data_h5(void) {
    static char path[512];
    if (path[0]) return path;
    const char *txt = shared_path("data/tinystories_sample.txt"), *model = shared_path("models/stories260K/stories260K.gguf");
    if (!txt || !model) return NULL;
    snprintf(path, sizeof path, "%s", test_tmp("ts.h5"));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "head -c 120000 %s > %s && ./edgetune data --tokenizer %s --input %s -o %s "
             "--valid-fraction 0.1", txt, test_tmp("ts.txt"), model, test_tmp("ts.txt"), path);
    if (test_run(cmd)) fail_msg("%s failed", cmd);
    return path;
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static void engine_logits(et_engine *en, const int32_t *tok, int n, float *logits) {
    et_err e = {0};
    et_state_opts o = et_state_default_opts();
    o.kv_type = GGML_TYPE_F32;
    o.n_ctx = 64;
    et_state *s;
    if (et_state_new(&s, en, &o, &e)) fail_msg("%s", e.msg);
    if (et_forward(s, tok, n, logits, 1, &e)) fail_msg("%s", e.msg);
    et_state_free(s);
}

/* wide: a new 256-wide model (from scratch, the stories260K tokenizer), so the
 * K-quants' blocks of 256 divide its rows; else stories260K itself (rows of
 * 64 and 172: the fallback chain). */
static void check_export_act(const char *type, int wide, const char *imatrix, int act) {
    if (!test_have_edgetune()) skip();
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    char margs[1024];
    if (wide) snprintf(margs, sizeof margs, "--tokenizer %s --n-embd 256 --n-layer 2 --n-head 4 --n-head-kv 2 "
                       "--n-ff 512 --n-ctx 128", model);
    else snprintf(margs, sizeof margs, "--model %s", model);
    const char *data = data_h5();
    char dir[512], cmd[4096], qpath[600], f32[600], mine[600];
    char imflag[600] = "";
    if (imatrix) snprintf(imflag, sizeof imflag, " --imatrix %s", imatrix);
    snprintf(dir, sizeof dir, "%s-%d%s%s", test_tmp(type), wide, imatrix ? "-im" : "", act ? "-act" : "");
    snprintf(cmd, sizeof cmd, "./edgetune train %s --data %s --out %s --qat %s --steps 2 --batch-size 4 "
             "--seq-len 64 --lr 1e-3 --warmup 0 --threads 2 --eval-batches 1%s%s%s", margs, data, dir, type,
             imatrix ? " --qat-imatrix " : "", imatrix ? imatrix : "", act ? " --qat-act" : "");
    if (test_run(cmd)) fail_msg("%s failed", cmd);
    snprintf(f32, sizeof f32, "%s/model.gguf", dir);
    snprintf(mine, sizeof mine, "%s/model-%s.gguf", dir, type);
    snprintf(qpath, sizeof qpath, "%s/quantized.gguf", dir);
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type %s --quiet%s", f32, qpath, type, imflag);
    if (test_run(cmd)) fail_msg("%s failed", cmd);
    /* train's own export is the same file */
    char *a = NULL, *b = NULL;
    {
        FILE *fa = fopen(qpath, "rb"), *fb = fopen(mine, "rb");
        assert_non_null(fa), assert_non_null(fb);
        fseek(fa, 0, SEEK_END), fseek(fb, 0, SEEK_END);
        long na = ftell(fa), nb = ftell(fb);
        assert_int_equal(na, nb);
        rewind(fa), rewind(fb);
        a = malloc((size_t)na), b = malloc((size_t)nb);
        assert_int_equal(fread(a, 1, (size_t)na, fa), (size_t)na);
        assert_int_equal(fread(b, 1, (size_t)nb, fb), (size_t)nb);
        assert_memory_equal(a, b, (size_t)na);
        fclose(fa), fclose(fb), free(a), free(b);
    }

    /* the training forward on the trained F32 weights, with QAT */
    et_err e = {0};
    et_model m, mq;
    if (et_model_load(&m, f32, NULL, &e)) fail_msg("%s", e.msg);
    et_llama L;
    if (et_llama_bind(&L, &m, NULL, &e)) fail_msg("%s", e.msg);
    et_qat q;
    et_qat_opts o = {.ftype = et_ftype_from_name(type), .act = act};
    et_imatrix im;
    et_imatrix_init(&im);
    if (imatrix) {
        if (et_imatrix_load(&im, imatrix, &e)) fail_msg("%s", e.msg);
        o.imatrix = &im, o.imatrix_name = imatrix;
    }
    if (et_qat_attach(&q, &L, &o, &e)) fail_msg("%s", e.msg);
    et_qat_set_step(&q, 0);
    et_qat_sync(&q);
    if (imatrix && !act) {
        /* the weighted grid differs from the plain one (else this test would
         * not tell the two apart) */
        int weighted = 0, differs = 0;
        for (int k = 0; k < q.n_w; k++) {
            const et_qat_w *w = &q.w[k];
            /* ggml's F16, BF16 and Q8_0 quantizers ignore the weights */
            if (!w->imw || w->type == GGML_TYPE_F16 || w->type == GGML_TYPE_BF16 || w->type == GGML_TYPE_Q8_0) continue;
            weighted++;
            const size_t n = (size_t)(w->rows * w->cols);
            float *plain = malloc(n * sizeof *plain);
            void *scr = malloc((size_t)et_quant_row_bytes(w->type, w->cols) * (size_t)w->rows);
            assert_int_equal(et_fake_quant_rows(w->type, w->master, plain, w->rows, w->cols, scr), 0);
            differs += memcmp(plain, w->wq, n * sizeof *plain) != 0;
            free(plain), free(scr);
        }
        fprintf(stderr, "qat %s --qat-imatrix: %d of %d tensors on a weighted grid, %d differ from the plain grid\n", type,
                weighted, q.n_w, differs);
        assert_true(weighted > 0 && differs == weighted);
    }

    /* every quantized tensor of the file: QAT's type, and w_q bit for bit */
    gguf_file g;
    if (gguf_open(&g, qpath, &e)) fail_msg("%s", e.msg);
    int n_quant = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) n_quant += g.tensors[i].type != GGML_TYPE_F32;
    assert_int_equal(n_quant, q.n_w);
    for (int k = 0; k < q.n_w; k++) {
        const et_qat_w *w = &q.w[k];
        const gguf_tensor *t = gguf_find_tensor(&g, w->name);
        assert_non_null(t);
        if (t->type != w->type)
            fail_msg("%s: file has %s, QAT trained %s", w->name, ggml_type_name(t->type), ggml_type_name(w->type));
        const size_t n = (size_t)(w->rows * w->cols);
        float *deq = malloc(n * sizeof *deq);
        assert_int_equal(et_dequantize_row(t->type, t->data, deq, (int64_t)n), 0);
        if (memcmp(deq, w->wq, n * sizeof *deq)) fail_msg("%s (%s): the file's weights differ from w_q", w->name, type);
        free(deq);
    }
    gguf_close(&g);

    /* logits: training forward vs the engine */
    enum { NT = 48 };
    int32_t tok[NT], tgt[NT];
    for (int i = 0; i < NT; i++) tok[i] = 1 + (i * 37 + 11) % 500, tgt[i] = 0;
    const int V = m.hp.n_vocab;
    float *lt = malloc(sizeof(float) * NT * V), *lq = malloc(sizeof(float) * NT * V), *lf = malloc(sizeof(float) * NT * V);
    et_tape tp;
    if (et_tape_init(&tp, 0, &e)) fail_msg("%s", e.msg);
    tp.record = 0;
    et_xent_opts xo = {.logits_out = lt};
    et_llama_forward(&tp, &L, tok, tgt, 1, NT, &xo);
    if (et_tape_status(&tp, &e)) fail_msg("%s", e.msg);
    et_tape_free(&tp);
    et_engine *eq, *ef;
    if (et_engine_load(&eq, qpath, &e)) fail_msg("%s", e.msg);
    if (et_model_load_gguf(&mq, qpath, &e)) fail_msg("%s", e.msg); /* the file's weights, dequantized */
    if (et_engine_from_model(&ef, &mq, &e)) fail_msg("%s", e.msg);
    engine_logits(eq, tok, NT, lq);
    engine_logits(ef, tok, NT, lf);
    const size_t all = (size_t)NT * V;
    double scale = max_abs(lt, all), d_f = 0, d_q = 0, ss = 0, sq = 0;
    int agree = 0;
    for (size_t i = 0; i < all; i++) {
        d_f = fmax(d_f, fabs((double)lf[i] - lt[i]));
        d_q = fmax(d_q, fabs((double)lq[i] - lt[i]));
        ss += (double)lt[i] * lt[i];
        sq += ((double)lq[i] - lt[i]) * ((double)lq[i] - lt[i]);
    }
    for (int t = 0; t < NT; t++) agree += et_argmax(lq + (size_t)t * V, V) == et_argmax(lt + (size_t)t * V, V);
    /* per token: max |engine on the quantized file - training forward| */
    double tok_d[NT];
    for (int t = 0; t < NT; t++) {
        tok_d[t] = 0;
        for (int v = 0; v < V; v++) tok_d[t] = fmax(tok_d[t], fabs((double)lq[(size_t)t * V + v] - lt[(size_t)t * V + v]));
    }
    for (int i = 1; i < NT; i++) /* insertion sort: the median */
        for (int j = i; j > 0 && tok_d[j] < tok_d[j - 1]; j--) {
            const double x = tok_d[j];
            tok_d[j] = tok_d[j - 1], tok_d[j - 1] = x;
        }
    int close = 0;
    for (int t = 0; t < NT; t++) close += tok_d[t] <= 1e-4 * fmax(1.0, scale);
    fprintf(stderr, "qat %s%s: %d tensors == file bit for bit; max|logit| %.3g; engine on the file's weights (F32 "
            "activations) - training forward: max %.3g (%.2g relative); engine on the quantized file (Q8 "
            "activations): max %.3g (%.2g relative), rms/rms %.3g, argmax %d/%d, per-token max median %.3g, %d/%d tokens "
            "within 1e-4 of max|logit|\n",
            type, act ? " --qat-act" : "", q.n_w, scale, d_f, d_f / scale, d_q, d_q / scale, sqrt(sq / ss), agree, NT,
            tok_d[NT / 2], close, NT);
    if (!act) {
        /* the same weights: only float summation order differs */
        assert_true(d_f <= 2e-5 * fmax(1.0, scale));
        /* the engine's activation rounding (ggml's Q8_0/Q8_K vec_dot) is the rest */
        assert_true(sqrt(sq / ss) < 0.08);
        assert_true(close < NT / 4); /* without --qat-act the logits do differ */
    } else {
        /* the training forward rounds the activations as the engine does, so
           it is closer to the engine on the quantized file than the forward
           with F32 activations (ef, the same weights).  Not equal: float-order
           noise of ~1e-6 moves a few values across an fp16 or Q8 rounding
           boundary, each flip is worth one quantization step, and causal
           attention carries it to every later token (every matmul input
           was compared: no other difference) */
        double sf = 0;
        for (size_t i = 0; i < all; i++) sf += ((double)lq[i] - lf[i]) * ((double)lq[i] - lf[i]);
        fprintf(stderr, "qat %s --qat-act: rms(engine on the file - training forward) / rms(engine on the file - the "
                "same forward with F32 activations) = %.3g\n", type, sqrt(sq / sf));
        assert_true(sqrt(sq / sf) < 0.8);
        /* at most one near-tie apart: since the engine's per-block order
           (engine/kernels.h, 2026-12-07) Q4_0 --qat-act token 34 is one,
           engine 333 12.0802 vs 295 12.0614, training forward 295 12.0690
           vs 333 12.0594 (48/48 with the 16-lane order before) */
        assert_true(agree >= NT - 1);
    }
    free(lt), free(lq), free(lf);
    et_engine_free(eq), et_engine_free(ef);
    et_model_free(&mq);
    et_qat_free(&q);
    et_imatrix_free(&im);
    et_llama_unbind(&L);
    et_model_free(&m);
}

static void check_export(const char *type, int wide) { check_export_act(type, wide, NULL, 0); }
static void check_export_im(const char *type, int wide, const char *imatrix) { check_export_act(type, wide, imatrix, 0); }
/* --qat-act: the training forward against the engine on the quantized file
 * (Q8_0 / Q8_K / F16 activations), stories260K (Q4_0 + F16 ffn_down + Q8_0
 * output) and the 256-wide model (Q4_K_M: Q4_K, Q6_K, Q8_K activations) */
static void test_export_act_q4_0(void **state) { (void)state; check_export_act("Q4_0", 0, NULL, 1); }
static void test_export_act_q4_k_m(void **state) { (void)state; check_export_act("Q4_K_M", 1, NULL, 1); }

/* --qat-imatrix: training sees `quantize --imatrix F`'s grid, and train's
 * model-TYPE.gguf is `edgetune quantize --imatrix F` of its F32 weights
 * (stories260K with llama-imatrix's own file: Q4_0; Q3_K_M, whose 64-wide
 * rows fall back to the weighted IQ4_NL; Q4_K_M -> weighted Q5_0). */
#define STORIES_IMATRIX "tests/data/imatrix/stories260K.imatrix.dat"
static void test_export_imatrix_q4_0(void **state) { (void)state; check_export_im("Q4_0", 0, STORIES_IMATRIX); }
static void test_export_imatrix_q3_k_m(void **state) { (void)state; check_export_im("Q3_K_M", 0, STORIES_IMATRIX); }
static void test_export_imatrix_q4_k_m(void **state) { (void)state; check_export_im("Q4_K_M", 0, STORIES_IMATRIX); }

static void test_export_q4_0(void **state) { (void)state; check_export("Q4_0", 0); }
static void test_export_q4_k_m_fallbacks(void **state) { (void)state; check_export("Q4_K_M", 0); }
static void test_export_q4_k_m(void **state) { (void)state; check_export("Q4_K_M", 1); }
static void test_export_q3_k_m(void **state) { (void)state; check_export("Q3_K_M", 1); }
static void test_export_q2_k(void **state) { (void)state; check_export("Q2_K", 1); }

/* LoRA-QAT: `edgetune lora --qat TYPE`, then its merged-TYPE.gguf (= merge
 * into the F32 base, then quantize): the engine on that file's weights gives
 * the training forward's logits (base + adapter with fake quantization). */
static void check_lora_export(const char *imatrix) {
    if (!test_have_edgetune()) skip();
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    const char *data = data_h5();
    char cmd[4096], path[600];
    const char *dir = test_tmp(imatrix ? "lora-im" : "lora");
    snprintf(cmd, sizeof cmd, "./edgetune lora --model %s --data %s --out %s --qat Q4_0 --steps 4 --batch-size 4 "
             "--seq-len 64 --lr 1e-2 --warmup 0 --targets q,v,down --threads 2 --eval-batches 1%s%s", model, data, dir,
             imatrix ? " --qat-imatrix " : "", imatrix ? imatrix : "");
    if (test_run(cmd)) fail_msg("%s failed", cmd);
    et_err e = {0};
    et_model m, mq;
    lora_adapter ad;
    lora_train lt;
    et_train_model tm;
    if (et_model_load(&m, model, NULL, &e)) fail_msg("%s", e.msg);
    snprintf(path, sizeof path, "%s/adapter.gguf", dir);
    if (lora_adapter_load_gguf(&ad, path, &e)) fail_msg("%s", e.msg);
    if (lora_train_init(&lt, &m, GGML_TYPE_F32, &ad, &tm, &e)) fail_msg("%s", e.msg);
    et_qat q;
    et_qat_opts o = {.ftype = ET_FTYPE_MOSTLY_Q4_0};
    et_imatrix im;
    et_imatrix_init(&im);
    if (imatrix) {
        if (et_imatrix_load(&im, imatrix, &e)) fail_msg("%s", e.msg);
        o.imatrix = &im, o.imatrix_name = imatrix;
    }
    if (et_lora_llama_qat(&lt.ll, &q, &o, &e)) fail_msg("%s", e.msg);
    et_qat_set_step(&q, 0);
    int adapted = 0;
    for (int k = 0; k < q.n_w; k++) adapted += q.w[k].lora_a != NULL;
    assert_int_equal(adapted, 3 * m.hp.n_layer);

    enum { NT = 48 };
    int32_t tok[NT], tgt[NT];
    for (int i = 0; i < NT; i++) tok[i] = 1 + (i * 37 + 11) % 500, tgt[i] = 0;
    const int V = m.hp.n_vocab;
    float *lt_ = malloc(sizeof(float) * NT * V), *lf = malloc(sizeof(float) * NT * V), *l0 = malloc(sizeof(float) * NT * V);
    et_tape tp;
    if (et_tape_init(&tp, 0, &e)) fail_msg("%s", e.msg);
    tp.record = 0;
    et_xent_opts xo = {.logits_out = lt_};
    et_lora_llama_forward(&tp, &lt.ll, tok, tgt, 1, NT, &xo);
    if (et_tape_status(&tp, &e)) fail_msg("%s", e.msg);
    et_tape_free(&tp);
    snprintf(path, sizeof path, "%s/merged-Q4_0.gguf", dir);
    et_engine *ef, *e0;
    if (et_model_load_gguf(&mq, path, &e)) fail_msg("%s", e.msg);
    if (et_engine_from_model(&ef, &mq, &e)) fail_msg("%s", e.msg);
    engine_logits(ef, tok, NT, lf);
    /* the base without the adapter, quantized: the adapter must matter */
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type Q4_0 --quiet", model, test_tmp("base-q4_0.gguf"));
    assert_int_equal(test_run(cmd), 0);
    et_model mb;
    if (et_model_load_gguf(&mb, test_tmp("base-q4_0.gguf"), &e)) fail_msg("%s", e.msg);
    if (et_engine_from_model(&e0, &mb, &e)) fail_msg("%s", e.msg);
    engine_logits(e0, tok, NT, l0);
    const size_t all = (size_t)NT * V;
    double scale = max_abs(lt_, all), d = 0, d0 = 0;
    for (size_t i = 0; i < all; i++) {
        d = fmax(d, fabs((double)lf[i] - lt_[i]));
        d0 = fmax(d0, fabs((double)l0[i] - lt_[i]));
    }
    fprintf(stderr, "lora qat Q4_0%s: engine on merged-Q4_0's weights - training forward: max %.3g (%.2g relative); "
            "without the adapter: %.3g\n", imatrix ? " --qat-imatrix" : "", d, d / scale, d0);
    assert_true(d <= 2e-5 * fmax(1.0, scale));
    assert_true(d0 > 100 * d);
    free(lt_), free(lf), free(l0);
    et_engine_free(ef), et_engine_free(e0);
    et_model_free(&mq), et_model_free(&mb);
    et_qat_free(&q);
    et_imatrix_free(&im);
    lora_train_free(&lt);
    lora_adapter_free(&ad);
    et_model_free(&m);
}

static void test_lora_export(void **state) { (void)state; check_lora_export(NULL); }
static void test_lora_export_imatrix(void **state) { (void)state; check_lora_export(STORIES_IMATRIX); }

/* ---- the command line ---- */

/* Runs the command made from fmt; checks its exit code and, with needle,
 * that its log (test_tmp("cmd.log")) contains needle. */
static void expect_run(int rc, const char *needle, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_run(int rc, const char *needle, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (test_run(cmd) != rc) fail_msg("%s: exit code is not %d", cmd, rc);
    if (!needle) return;
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(log);
    if (!strstr(log, needle)) fail_msg("%s: the log has no '%s'", cmd, needle);
    free(log);
}

static void test_bad_input(void **state) {
    (void)state;
    if (!test_have_edgetune()) skip();
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    const char *data = data_h5();
    const char *train = "./edgetune train --model %s --data %s --out %s --qat Q4_0 --steps 1 --batch-size 2 "
                        "--seq-len 32";
    char base[1024];
    expect_run(2, "'Q4_Z' is not a quantization type", "./edgetune train --model %s --data %s --out %s --qat Q4_Z "
               "--steps 1", model, data, test_tmp("bad1"));
    test_spit(test_tmp("map.txt"), "# per-tensor types\nblk.0.attn_q.weight Q8_0\nblk.9.nothing.weight Q4_0\n");
    snprintf(base, sizeof base, train, model, data, test_tmp("bad2"));
    expect_run(2, "blk.9.nothing.weight", "%s --qat-type-map %s", base, test_tmp("map.txt"));
    test_spit(test_tmp("map2.txt"), "blk.0.attn_q.weight Q9_9\n");
    snprintf(base, sizeof base, train, model, data, test_tmp("bad3"));
    expect_run(2, NULL, "%s --qat-type-map %s", base, test_tmp("map2.txt"));
    /* stories260K's ffn_down rows (172) fit no block of 32: F16, said per tensor */
    snprintf(base, sizeof base, train, model, data, test_tmp("fb"));
    expect_run(0, "qat: blk.0.ffn_down.weight: row length 172", "%s", base);
    /* a type map: trained and exported with its types */
    test_spit(test_tmp("map3.txt"), "blk.0.attn_q.weight Q8_0\nblk.1.ffn_up.weight Q5_0  # comment\n");
    snprintf(base, sizeof base, train, model, data, test_tmp("map"));
    expect_run(0, NULL, "%s --qat-type-map %s", base, test_tmp("map3.txt"));
    char path[600];
    snprintf(path, sizeof path, "%s/model-Q4_0.gguf", test_tmp("map"));
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(gguf_find_tensor(&g, "blk.0.attn_q.weight")->type, GGML_TYPE_Q8_0);
    assert_int_equal(gguf_find_tensor(&g, "blk.1.ffn_up.weight")->type, GGML_TYPE_Q5_0);
    assert_int_equal(gguf_find_tensor(&g, "blk.1.attn_q.weight")->type, GGML_TYPE_Q4_0);
    gguf_close(&g);
    /* --qat-imatrix: for another model (a 32-column entry for a 64-column tensor), malformed, without --qat */
    et_imatrix im;
    et_imatrix_init(&im);
    float x[2 * 32];
    for (int i = 0; i < 64; i++) x[i] = 0.5f + (float)i;
    assert_int_equal(et_imatrix_accumulate(&im, "blk.0.attn_q.weight", x, 2, 32, &e), 0);
    assert_int_equal(et_imatrix_save(&im, test_tmp("other.imatrix.dat"), ET_IMATRIX_DAT, &e), 0);
    et_imatrix_free(&im);
    snprintf(base, sizeof base, train, model, data, test_tmp("bad4"));
    expect_run(2, "'blk.0.attn_q.weight' has 32 columns", "%s --qat-imatrix %s", base, test_tmp("other.imatrix.dat"));
    snprintf(path, sizeof path, "%s/model.gguf", test_tmp("bad4"));
    assert_int_equal(access(path, F_OK), -1); /* refused before training: nothing written */
    test_spit(test_tmp("trunc.imatrix.dat"), "\x05\x00\x00\x00\x13\x00");
    snprintf(base, sizeof base, train, model, data, test_tmp("bad5"));
    expect_run(2, "trunc.imatrix.dat", "%s --qat-imatrix %s", base, test_tmp("trunc.imatrix.dat"));
    expect_run(1, "need --qat TYPE", "./edgetune train --model %s --data %s --out %s --steps 1 --qat-imatrix %s", model,
               data, test_tmp("bad6"), STORIES_IMATRIX);
    expect_run(1, "--qat-act is for", "./edgetune lora --model %s --data %s --out %s --steps 1 --qat Q4_0 --qat-act",
               model, data, test_tmp("bad7"));
}

/* --resume with QAT continues bit for bit, across the --qat-start switch */
static void test_resume(void **state) {
    (void)state;
    if (!test_have_edgetune()) skip();
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    const char *data = data_h5();
    const char *common = "--qat Q4_0 --qat-start 2 --batch-size 4 --seq-len 64 --lr 1e-3 --threads 2 --seed 3 --eval-batches 1";
    const char *train = "./edgetune train --model %s --data %s --out %s %s --steps %d%s";
    expect_run(0, NULL, train, model, data, test_tmp("full"), common, 4, "");
    expect_run(0, NULL, train, model, data, test_tmp("part"), common, 1, "");
    expect_run(0, NULL, train, model, data, test_tmp("part"), common, 4, " --resume");
    expect_run(0, NULL, "cmp %s/model.gguf %s/model.gguf && cmp %s/model-Q4_0.gguf %s/model-Q4_0.gguf",
               test_tmp("full"), test_tmp("part"), test_tmp("full"), test_tmp("part"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_each_type),
        cmocka_unit_test(test_act_rounding),
        cmocka_unit_test(test_ste_q4_0),
        cmocka_unit_test(test_ste_q4_k_m_recompute),
        cmocka_unit_test(test_ste_q4_0_hooks),
        cmocka_unit_test(test_export_q4_0),
        cmocka_unit_test(test_export_act_q4_0),
        cmocka_unit_test(test_export_act_q4_k_m),
        cmocka_unit_test(test_export_q4_k_m_fallbacks),
        cmocka_unit_test(test_export_q4_k_m),
        cmocka_unit_test(test_export_q3_k_m),
        cmocka_unit_test(test_export_q2_k),
        cmocka_unit_test(test_lora_export),
        cmocka_unit_test(test_lora_export_imatrix),
        cmocka_unit_test(test_export_imatrix_q4_0),
        cmocka_unit_test(test_export_imatrix_q3_k_m),
        cmocka_unit_test(test_export_imatrix_q4_k_m),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
