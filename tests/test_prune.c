/* tests/test_prune.c — structured pruning (prune/plan.h) against an
 * independent computation: the ORIGINAL model with the pruned parts masked
 * (columns of attn_output of pruned query heads zeroed, rows of ffn_gate and
 * ffn_up of pruned channels zeroed so silu(0)*0 = 0, attn_output and
 * ffn_down of removed layers zeroed so the layer is the identity) must give
 * the pruned model's logits, both through the training forward
 * (train/llama.c), on stories260K (8 heads / 4 kv heads, n_ff 172) and on a
 * random GQA model (8 heads / 2 kv heads); for heads (within kv groups and
 * whole groups), FFN channels, layers, a mix and embedding channels (n_embd:
 * zeroed in token_embd and the rows of attn_output/ffn_down, and since the
 * pruned RMSNorm averages over C' < C channels, every norm weight of the
 * masked model x sqrt(C'/C) and its eps x C'/C, which is the same function).
 * The pruned model also goes
 * through GGUF (llama or deci) and back bit for bit, applying a plan twice
 * gives the same bytes, plan JSON round-trips, and bad plans are refused
 * with the first differing layer named.  Last, a deci model of unequal
 * widths trains: a trainer step's gradients against finite differences; LoRA
 * and QAT run on a deci file of the CLI (2 steps each). */
#include <math.h>

#include "testutil.h"
#include "../export/gguf.h"
#include "../prune/importance.h"
#include "../prune/plan.h"
#include "../prune/select.h"
#include "../quant/quantize_model.h"
#include "../train/init.h"
#include "../train/llama.h"
#include "../train/threads.h"
#include "../train/train_llama.h"
#include "../train/trainer.h"

enum { NT = 40 };

/* logits [NT, n_vocab] of m on fixed tokens, through et_llama_forward */
static float *logits_of(et_model *m) {
    et_err e = {0};
    et_llama L;
    assert_int_equal(et_llama_bind(&L, m, NULL, &e), 0);
    et_tape t;
    assert_int_equal(et_tape_init(&t, 0, &e), 0);
    int32_t tok[NT], tg[NT];
    for (int i = 0; i < NT; i++) {
        tok[i] = (int32_t)((i * 37 + 11) % m->hp.n_vocab);
        tg[i] = (int32_t)((i * 53 + 5) % m->hp.n_vocab);
    }
    float *lg = malloc((size_t)NT * m->hp.n_vocab * sizeof *lg);
    assert_non_null(lg);
    et_xent_opts xo = {0};
    xo.logits_out = lg;
    et_tensor *loss = et_llama_forward(&t, &L, tok, tg, 1, NT, &xo);
    if (et_tape_status(&t, &e)) fprintf(stderr, "%s\n", e.msg);
    assert_non_null(loss);
    et_tape_free(&t);
    et_llama_unbind(&L);
    return lg;
}

/* a copy of m (same hparams, same weights) */
static void clone(et_model *dst, const et_model *m) {
    et_err e = {0};
    assert_int_equal(et_model_alloc(dst, &m->hp, &e), 0);
    assert_int_equal(dst->n_params, m->n_params);
    memcpy(dst->params, m->params, m->n_params * sizeof(float));
}

/* m with everything the plan prunes zeroed */
static void mask(et_model *m, const et_prune_plan *p) {
    const int C = m->hp.n_embd, D = m->hp.head_dim;
    for (int l = 0; l < p->n_layer; l++) {
        const et_prune_layer *L = &p->layers[l];
        et_layer *y = &m->layers[l];
        const int nq = L->n_head * D;
        for (int h = 0; h < L->n_head; h++) {
            int kept = !L->removed;
            if (kept) {
                kept = 0;
                for (int i = 0; i < L->n_keep_head; i++) kept |= L->keep_head[i] == h;
            }
            if (!kept)
                for (int r = 0; r < C; r++)
                    for (int d = 0; d < D; d++) y->wo[(size_t)r * nq + h * D + d] = 0.0f;
        }
        for (int c = 0; c < L->n_ff; c++) {
            int kept = !L->removed;
            if (kept) {
                kept = 0;
                for (int i = 0; i < L->n_keep_ff; i++) kept |= L->keep_ff[i] == c;
            }
            if (!kept) {
                memset(y->w_gate + (size_t)c * C, 0, (size_t)C * sizeof(float));
                memset(y->w_up + (size_t)c * C, 0, (size_t)C * sizeof(float));
            }
        }
        if (L->removed) memset(y->w_down, 0, (size_t)C * L->n_ff * sizeof(float));
    }
    if (!p->keep_embd) return;
    /* embedding channels: zero in token_embd and in the rows of attn_output and ffn_down, so the
     * residual stream is 0 there; RMSNorm of the C' kept channels, x / sqrt(S/C' + eps), is that of
     * all C with weights x sqrt(C'/C) and eps x C'/C: x sqrt(C'/C) / sqrt(S/C + eps C'/C) */
    const int Ck = p->n_keep_embd;
    const float g = sqrtf((float)Ck / (float)C);
    for (int c = 0; c < C; c++) {
        int kept = 0;
        for (int i = 0; i < Ck; i++) kept |= p->keep_embd[i] == c;
        m->output_norm[c] *= g;
        for (int v = 0; v < m->hp.n_vocab && !kept; v++) m->tok_embd[(size_t)v * C + c] = 0.0f;
        for (int l = 0; l < p->n_layer; l++) {
            et_layer *y = &m->layers[l];
            const int nq = p->layers[l].n_head * D, nf = p->layers[l].n_ff;
            if (y->attn_norm) y->attn_norm[c] *= g;
            if (y->ffn_norm) y->ffn_norm[c] *= g;
            if (!kept && y->wo) memset(y->wo + (size_t)c * nq, 0, (size_t)nq * sizeof(float));
            if (!kept && y->w_down) memset(y->w_down + (size_t)c * nf, 0, (size_t)nf * sizeof(float));
        }
    }
    m->hp.rms_eps *= (float)Ck / (float)C;
}

static void set_list(int **a, int *n, const int *v, int k) {
    free(*a);
    *a = malloc((size_t)(k ? k : 1) * sizeof(int));
    memcpy(*a, v, (size_t)k * sizeof(int));
    *n = k;
}

/* keep c query heads of each kept group; groups listed in kv */
static void keep_heads(et_prune_layer *L, const int *kv, int nkv, int c, int offset) {
    int g = L->n_head / L->n_head_kv, h[64], k = 0;
    for (int i = 0; i < nkv; i++)
        for (int j = 0; j < c; j++) h[k++] = kv[i] * g + (j + offset) % g;
    /* ascending within the group */
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (h[j] < h[i]) {
                int s = h[i];
                h[i] = h[j];
                h[j] = s;
            }
    set_list(&L->keep_head, &L->n_keep_head, h, k);
    set_list(&L->keep_kv, &L->n_keep_kv, kv, nkv);
}

static void keep_ff_every(et_prune_layer *L, int mod, int rem) {
    int *v = malloc((size_t)L->n_ff * sizeof(int)), k = 0;
    for (int c = 0; c < L->n_ff; c++)
        if ((c * 7 + rem) % mod) v[k++] = c;
    set_list(&L->keep_ff, &L->n_keep_ff, v, k);
    free(v);
}

/* pruned logits == masked logits; file round trip; apply twice equal bytes */
static void check_plan(et_model *m, const et_prune_plan *p, const char *tag) {
    et_err e = {0};
    int rc = et_prune_plan_validate(p, tag, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    et_model pr, mk;
    rc = et_prune_apply(m, p, &pr, 0, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(pr.n_params, et_prune_plan_params(p, m));
    clone(&mk, m);
    mask(&mk, p);
    float *a = logits_of(&pr), *b = logits_of(&mk), *o = logits_of(m);
    double worst = 0, moved = 0, mag = 0;
    const size_t n = (size_t)NT * m->hp.n_vocab;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        moved = fmax(moved, fabs((double)a[i] - o[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    fprintf(stderr, "%s: %zu -> %zu params, max |pruned - masked| = %.3g (max |logit| %.3g; vs unpruned %.3g)\n", tag,
            m->n_params, pr.n_params, worst, mag, moved);
    /* embedding channels: the identity holds in real arithmetic; in float the norms sum other
     * counts of channels in another order (seen: 1.5e-5 at |logit| 16, 1e-6 relative) */
    assert_true(worst <= (p->keep_embd ? 1e-5 * fmax(1.0, mag) : 1e-5));
    assert_true(moved > 1e-3); /* the plan did change the model */
    /* through GGUF: reload gives the same tensors; saving twice the same bytes */
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s", test_tmp("pruned1.gguf"));
    snprintf(p2, sizeof p2, "%s", test_tmp("pruned2.gguf"));
    assert_int_equal(et_model_save_gguf(&pr, p1, GGML_TYPE_F32, &e), 0);
    et_model pr2;
    assert_int_equal(et_prune_apply(m, p, &pr2, 0, &e), 0);
    assert_int_equal(et_model_save_gguf(&pr2, p2, GGML_TYPE_F32, &e), 0);
    char h1[65], h2[65];
    assert_int_equal(et_prune_file_sha256(p1, h1, &e), 0);
    assert_int_equal(et_prune_file_sha256(p2, h2, &e), 0);
    assert_string_equal(h1, h2);
    et_model back;
    rc = et_model_load_gguf(&back, p1, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(back.hp.arch, et_model_export_arch(&pr));
    assert_int_equal(back.n_params, pr.n_params);
    assert_memory_equal(back.params, pr.params, pr.n_params * sizeof(float));
    /* the plan's JSON round trip */
    const char *pj = test_tmp("plan.json");
    assert_int_equal(et_prune_plan_write(p, pj, &e), 0);
    et_prune_plan q;
    rc = et_prune_plan_read(&q, pj, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    et_model pr3;
    assert_int_equal(et_prune_apply(m, &q, &pr3, 0, &e), 0);
    assert_int_equal(pr3.n_params, pr.n_params);
    assert_memory_equal(pr3.params, pr.params, pr.n_params * sizeof(float));
    et_prune_plan_free(&q);
    et_model_free(&pr3);
    et_model_free(&back);
    et_model_free(&pr2);
    free(a);
    free(b);
    free(o);
    et_model_free(&mk);
    et_model_free(&pr);
}

/* a fresh plan of m that keeps everything */
static void full_plan(et_prune_plan *p, const et_model *m) {
    et_err e = {0};
    assert_int_equal(et_prune_plan_full(p, m, NULL, &e), 0);
}

/* check_plan under the tag "NAME WHAT", then the plan freed unless keep */
static void check_case(et_model *m, et_prune_plan *p, const char *name, const char *what, int keep) {
    char tag[96];
    snprintf(tag, sizeof tag, "%s %s", name, what);
    check_plan(m, p, tag);
    if (!keep) et_prune_plan_free(p);
}

/* heads, channels, layers, mix, on model m (n_head 8) */
static void run_cases(et_model *m, const char *name) {
    const int nkv = m->hp.n_head_kv, g = m->hp.n_head / nkv;
    /* 1. query heads within every group: keep g/2 (the last ones in layer 0) */
    et_prune_plan p;
    full_plan(&p, m);
    int kv[16];
    for (int i = 0; i < nkv; i++) kv[i] = i;
    for (int l = 0; l < p.n_layer; l++) keep_heads(&p.layers[l], kv, nkv, g / 2, l == 0 ? g / 2 : l);
    check_case(m, &p, name, "heads within groups", 0);
    /* 2. whole kv groups: drop group 0, in layer 1 group nkv-1 instead */
    full_plan(&p, m);
    for (int l = 0; l < p.n_layer; l++) {
        int k = 0, v[16];
        for (int i = 0; i < nkv; i++)
            if (i != (l == 1 ? nkv - 1 : 0)) v[k++] = i;
        keep_heads(&p.layers[l], v, k, g, 0);
    }
    check_case(m, &p, name, "whole kv groups", 0);
    /* 3. FFN channels, different per layer */
    full_plan(&p, m);
    for (int l = 0; l < p.n_layer; l++) keep_ff_every(&p.layers[l], 2 + l, l);
    check_case(m, &p, name, "ffn channels", 0);
    /* 4. layers: remove layer 1 (and the last) */
    full_plan(&p, m);
    p.layers[1].removed = 1;
    p.layers[p.n_layer - 1].removed = 1;
    check_case(m, &p, name, "layers", 0);
    /* 5. a mix */
    full_plan(&p, m);
    p.layers[0].removed = 1;
    for (int l = 1; l < p.n_layer; l++) {
        int v[16], k = 0;
        for (int i = 0; i < nkv; i++)
            if (i != l % nkv) v[k++] = i;
        keep_heads(&p.layers[l], v, k, l % 2 ? g : 1, l);
        keep_ff_every(&p.layers[l], 3, l);
    }
    check_case(m, &p, name, "mix", 1);
    /* 6. the mix and a quarter of the embedding channels (every 4th, shifted) */
    const int C = m->hp.n_embd;
    int *ce = malloc((size_t)C * sizeof *ce), nce = 0;
    for (int c = 0; c < C; c++)
        if ((c + 1) % 4) ce[nce++] = c;
    set_list(&p.keep_embd, &p.n_keep_embd, ce, nce);
    free(ce);
    check_case(m, &p, name, "mix + embedding channels", 0);
    /* 7. embedding channels alone */
    full_plan(&p, m);
    int ce2[1024], n2 = 0;
    for (int c = 0; c < C && c < 1024; c++)
        if (c % 3) ce2[n2++] = c;
    set_list(&p.keep_embd, &p.n_keep_embd, ce2, n2);
    check_case(m, &p, name, "embedding channels", 0);
}

static void test_stories260k(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "models/stories260K/stories260K.gguf");
    et_model m;
    et_err e = {0};
    assert_int_equal(et_model_load(&m, path, NULL, &e), 0);
    run_cases(&m, "stories260K");
    et_model_free(&m);
}

static void random_model(et_model *m, int n_layer, int n_head, int n_head_kv, int n_ff, uint64_t seed) {
    et_hparams hp;
    memset(&hp, 0, sizeof hp);
    snprintf(hp.arch, sizeof hp.arch, "llama");
    hp.n_vocab = 96;
    hp.n_embd = 48;
    hp.n_layer = n_layer;
    hp.n_ctx = 64;
    hp.n_head = n_head;
    hp.n_head_kv = n_head_kv;
    hp.n_ff = n_ff;
    hp.head_dim = 8;
    hp.rms_eps = 1e-5f;
    hp.rope_theta = 10000.0f;
    hp.tied_output = 0;
    et_err e = {0};
    assert_int_equal(et_model_alloc(m, &hp, &e), 0);
    int n = et_model_tensors(m, NULL, 0);
    et_named *t = malloc((size_t)n * sizeof *t);
    et_model_tensors(m, t, n);
    et_xoshiro r;
    et_xoshiro_seed(&r, seed);
    et_init_normal(t, n, n_layer, 0.3f, &r);
    free(t);
}

static void test_random_gqa(void **state) {
    (void)state;
    et_model m;
    random_model(&m, 4, 8, 2, 72, 11);
    run_cases(&m, "random GQA 8/2");
    et_model_free(&m);
}

/* bad plans: another model, all heads gone, GQA broken, embedding channels */
static void test_bad_plans(void **state) {
    (void)state;
    et_model m, m2;
    random_model(&m, 3, 8, 2, 40, 5);
    random_model(&m2, 3, 8, 2, 48, 5);
    et_err e = {0};
    et_prune_plan p;
    assert_int_equal(et_prune_plan_full(&p, &m, "00", &e), 0);
    assert_int_equal(et_prune_plan_check_model(&p, &m2, NULL, "other.gguf", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "layer 0"));
    /* differs only from layer 2 on */
    m2.hp.layer_n_ff[0] = m2.hp.layer_n_ff[1] = 40;
    assert_int_equal(et_prune_plan_check_model(&p, &m2, NULL, "other.gguf", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "layer 2"));
    p.layers[1].n_keep_head = 0;
    p.layers[1].n_keep_kv = 0;
    assert_int_equal(et_prune_plan_validate(&p, "p.json", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "layer 1: every attention head is pruned"));
    assert_int_equal(et_prune_plan_write(&p, test_tmp("bad.json"), &e), ET_EINPUT);
    assert_int_equal(access(test_tmp("bad.json"), F_OK), -1); /* nothing written */
    p.layers[1].removed = 1; /* removing the layer makes it fine */
    assert_int_equal(et_prune_plan_validate(&p, "p.json", &e), 0);
    /* GQA: query head 1 (group 0) listed with kv head 1 only */
    int h[2] = {1, 4}, kv[1] = {1};
    set_list(&p.layers[0].keep_head, &p.layers[0].n_keep_head, h, 2);
    set_list(&p.layers[0].keep_kv, &p.layers[0].n_keep_kv, kv, 1);
    assert_int_equal(et_prune_plan_validate(&p, "p.json", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "layer 0"));
    et_prune_plan_free(&p);
    /* JSON: an index out of range and a truncated file */
    test_spit(test_tmp("oob.json"),
              "{\"format\":\"edgetune.prune_plan\",\"version\":1,\"n_layer\":1,\"n_embd\":48,\"head_dim\":8,"
              "\"layers\":[{\"layer\":0,\"n_head\":8,\"n_head_kv\":2,\"n_ff\":40,\"heads\":[0,9],\"kv_heads\":[0],"
              "\"ffn\":[1]}]}");
    assert_int_equal(et_prune_plan_read(&p, test_tmp("oob.json"), &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "heads"));
    test_spit(test_tmp("trunc.json"), "{\"format\":\"edgetune.prune_plan\",\"version\":1,\"n_la");
    assert_int_equal(et_prune_plan_read(&p, test_tmp("trunc.json"), &e), ET_EINPUT);
    /* embedding channels: applies, shapes shrink, file loads back */
    assert_int_equal(et_prune_plan_full(&p, &m, NULL, &e), 0);
    int ce[40];
    for (int i = 0; i < 40; i++) ce[i] = i + (i >= 20) * 8;
    set_list(&p.keep_embd, &p.n_keep_embd, ce, 40);
    et_model pr, back;
    assert_int_equal(et_prune_apply(&m, &p, &pr, 0, &e), 0);
    assert_int_equal(pr.hp.n_embd, 40);
    assert_int_equal(pr.n_params, et_prune_plan_params(&p, &m));
    assert_float_equal(pr.tok_embd[40 + 20], m.tok_embd[48 + 28], 0);
    assert_float_equal(pr.layers[2].w_down[3 * 40 + 5], m.layers[2].w_down[3 * 40 + 5], 0);
    assert_int_equal(et_model_save_gguf(&pr, test_tmp("embd.gguf"), GGML_TYPE_F32, &e), 0);
    assert_int_equal(et_model_load_gguf(&back, test_tmp("embd.gguf"), &e), 0);
    assert_int_equal(back.hp.n_embd, 40);
    et_model_free(&back);
    et_model_free(&pr);
    et_prune_plan_free(&p);
    et_model_free(&m);
    et_model_free(&m2);
}

/* without GQA (n_head == n_head_kv) a kv group is one query head: --heads
 * without --head-groups must still remove heads (it kept all of them) */
static void test_select_no_gqa(void **state) {
    (void)state;
    et_model m;
    random_model(&m, 2, 4, 4, 40, 3);
    enum { R = 4, T = 8 };
    int32_t rows[R * (T + 1)];
    for (int i = 0; i < R * (T + 1); i++) rows[i] = (int32_t)((i * 31 + 7) % m.hp.n_vocab);
    et_err e = {0};
    et_prune_score_opts so = {0};
    et_prune_scores sc;
    memset(&sc, 0, sizeof sc);
    assert_int_equal(et_prune_score(&m, rows, R, T, &so, &sc, &e), 0);
    for (int uniform = 0; uniform < 2; uniform++) {
        et_prune_targets t = {0};
        t.heads = 0.5;
        t.heads_set = 1;
        t.uniform = uniform;
        et_prune_plan p;
        int rc = et_prune_select(&m, &sc, &t, "", &p, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        int kept = 0;
        for (int l = 0; l < p.n_layer; l++) {
            assert_int_equal(p.layers[l].n_keep_head, p.layers[l].n_keep_kv);
            if (uniform) assert_int_equal(p.layers[l].n_keep_head, 2);
            kept += p.layers[l].n_keep_head;
        }
        assert_int_equal(kept, 4);
        et_prune_plan_free(&p);
    }
    et_prune_scores_free(&sc);
    et_model_free(&m);
}

/* a deci model (two layers of unequal widths) trains: et_train_llama's
 * step gradients against central finite differences of its own loss */
static void test_train_deci(void **state) {
    (void)state;
    enum { B = 2, T = 10, V = 29 };
    et_hparams hp;
    memset(&hp, 0, sizeof hp);
    snprintf(hp.arch, sizeof hp.arch, "deci");
    hp.n_vocab = V;
    hp.n_embd = 32;
    hp.n_layer = 2;
    hp.n_ctx = 64;
    hp.head_dim = 8;
    hp.rms_eps = 1e-5f;
    hp.rope_theta = 10000.0f;
    hp.tied_output = 1;
    int nh[2] = {4, 2}, nkv[2] = {2, 1}, nff[2] = {40, 24};
    hp.layer_n_head = nh;
    hp.layer_n_head_kv = nkv;
    hp.layer_n_ff = nff;
    et_model m;
    et_train_llama tl;
    et_train_model tm;
    et_err e = {0};
    assert_int_equal(et_model_alloc(&m, &hp, &e), 0);
    assert_int_equal(m.hp.layer_n_head[1], 2);
    assert_string_equal(et_model_export_arch(&m), "deci");
    assert_int_equal(et_train_llama_init(&tl, &m, 7, &tm, &e), 0);
    et_xoshiro rng;
    et_xoshiro_seed(&rng, 9);
    et_init_normal(tm.t, tm.n_t, hp.n_layer, 0.3f, &rng);
    int32_t tok[B][T + 1];
    uint8_t msk[B][T + 1];
    uint32_t s = 3;
    int n_tok = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j <= T; j++) {
            s = s * 1664525u + 1013904223u;
            tok[b][j] = (int32_t)((s >> 8) % V);
            msk[b][j] = 1;
            n_tok += j >= 1;
        }
    memset(tm.grads, 0, tm.n * sizeof(float));
    double ls;
    assert_int_equal(tm.fwd_bwd(tm.ctx, &tok[0][0], &msk[0][0], B, T, (double)n_tok, &ls, &e), 0);
    double worst = 0.0;
    for (int ti = 0; ti < tm.n_t; ti++) {
        const et_named *d = &tm.t[ti];
        const size_t off = (size_t)(d->data - tm.params), stride = d->n > 24 ? d->n / 23 : 1;
        double num = 0.0, den = 0.0;
        for (size_t k = 0; k < d->n; k += stride) {
            float *p = tm.params + off + k;
            const float old = *p, hi = old + 1e-2f, lo = old - 1e-2f;
            double l[2];
            for (int side = 0; side < 2; side++) {
                *p = side ? lo : hi;
                assert_int_equal(tm.forward(tm.ctx, &tok[0][0], &msk[0][0], B, T, &l[side], &e), 0);
            }
            *p = old;
            const double fd = (l[0] - l[1]) / ((double)hi - (double)lo) / n_tok, g = tm.grads[off + k];
            num += (g - fd) * (g - fd);
            den += fd * fd;
        }
        const double rel = sqrt(num / (den + 1e-30));
        if (rel > 1e-2) fprintf(stderr, "deci: %s: gradient vs finite differences, relative error %.3g\n", d->name, rel);
        worst = fmax(worst, rel);
    }
    fprintf(stderr, "deci 2-layer (4/2 heads, 2/1 kv, n_ff 40/24): worst relative gradient error %.3g\n", worst);
    assert_true(worst < 1e-2);
    et_train_llama_free(&tl);
    et_model_free(&m);
}

/* the command line: a plan, applying it, bad input -> exit 2, nothing written */
static void test_cli(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(llama2_tok, "tokenizers/llama2/tokenizer.bin");
    if (!test_have_edgetune()) skip();
    char cmd[4096];
    char txt[512];
    snprintf(txt, sizeof txt, "%s", test_tmp("calib.txt"));
    test_spit(txt, "Once upon a time there was a little girl named Lily. She liked to play in the park with her dog.\n\n"
                   "One day a big bird came to the tree. The bird was sad because it lost its way home.\n\n"
                   "Tom and Sue went to the beach. They built a castle of sand and laughed when the waves came.\n");
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s", model, txt, test_tmp("calib.h5"));
    assert_int_equal(test_run(cmd), 0);
    /* score + plan + prune; then the plan alone gives the same file */
    snprintf(cmd, sizeof cmd,
             "./edgetune prune %s --calib %s --calib-rows 3 --seq-len 16 --heads 0.25 --ffn 0.3 --layers 1 "
             "--plan %s --scores %s -o %s",
             model, test_tmp("calib.h5"), test_tmp("p.json"), test_tmp("s.json"), test_tmp("a.gguf"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --plan %s -o %s", model, test_tmp("p.json"), test_tmp("b.gguf"));
    assert_int_equal(test_run(cmd), 0);
    et_err e = {0};
    char h1[65], h2[65];
    assert_int_equal(et_prune_file_sha256(test_tmp("a.gguf"), h1, &e), 0);
    assert_int_equal(et_prune_file_sha256(test_tmp("b.gguf"), h2, &e), 0);
    assert_string_equal(h1, h2);
    et_model pm;
    assert_int_equal(et_model_load_gguf(&pm, test_tmp("a.gguf"), &e), 0);
    assert_int_equal(pm.hp.n_layer, 4);
    assert_non_null(pm.tok); /* the tokenizer came along */
    et_model_free(&pm);
    snprintf(cmd, sizeof cmd, "./edgetune inspect %s | grep -c 'per-layer widths'", test_tmp("a.gguf"));
    assert_int_equal(test_run(cmd), 0);
    /* LoRA and QAT train the per-layer-width (deci) model */
    snprintf(cmd, sizeof cmd,
             "./edgetune lora --model %s --data %s --out %s --targets all-linear --steps 2 --batch-size 1 "
             "--seq-len 16 --threads 1 && ./edgetune train --model %s --data %s --out %s --qat Q4_0 --steps 2 "
             "--batch-size 1 --seq-len 16 --threads 1",
             test_tmp("a.gguf"), test_tmp("calib.h5"), test_tmp("lora"), test_tmp("a.gguf"), test_tmp("calib.h5"),
             test_tmp("qat"));
    assert_int_equal(test_run(cmd), 0);
    assert_int_equal(access(test_tmp("lora/adapter.gguf"), R_OK), 0);
    assert_int_equal(access(test_tmp("qat/model-Q4_0.gguf"), R_OK), 0);
    /* recovery through edgetune distill --prune-plan: 0 steps give the pruned model itself,
     * 2 steps of cross-entropy (--recover ce) change it */
    snprintf(cmd, sizeof cmd,
             "./edgetune prune %s --plan %s -o %s --recover distill --recover-data %s --recover-steps 0 "
             "--recover-batch 1 --recover-seq-len 16 --threads 1",
             model, test_tmp("p.json"), test_tmp("r0.gguf"), test_tmp("calib.h5"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "./edgetune prune %s --plan %s -o %s --recover ce --recover-data %s --recover-steps 2 "
             "--recover-batch 1 --recover-seq-len 16 --threads 1",
             model, test_tmp("p.json"), test_tmp("r2.gguf"), test_tmp("calib.h5"));
    assert_int_equal(test_run(cmd), 0);
    et_model pa, r0, r2;
    assert_int_equal(et_model_load_gguf(&pa, test_tmp("a.gguf"), &e), 0);
    assert_int_equal(et_model_load_gguf(&r0, test_tmp("r0.gguf"), &e), 0);
    assert_int_equal(et_model_load_gguf(&r2, test_tmp("r2.gguf"), &e), 0);
    assert_int_equal(r0.n_params, pa.n_params);
    assert_int_equal(r2.n_params, pa.n_params);
    assert_memory_equal(r0.params, pa.params, pa.n_params * sizeof(float));
    assert_memory_not_equal(r2.params, pa.params, pa.n_params * sizeof(float));
    et_model_free(&pa);
    et_model_free(&r0);
    et_model_free(&r2);
    /* a ratio outside [0, 1) */
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --scores %s --ffn 1.0 -o %s", model, test_tmp("s.json"),
             test_tmp("c.gguf"));
    assert_int_equal(test_run(cmd), 2);
    assert_int_equal(access(test_tmp("c.gguf"), F_OK), -1);
    /* a plan for another model names the layer */
    et_model rm;
    random_model(&rm, 5, 8, 4, 64, 1);
    et_prune_plan p;
    assert_int_equal(et_prune_plan_full(&p, &rm, NULL, &e), 0);
    assert_int_equal(et_prune_plan_write(&p, test_tmp("other.json"), &e), 0);
    et_prune_plan_free(&p);
    et_model_free(&rm);
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --plan %s -o %s", model, test_tmp("other.json"), test_tmp("c.gguf"));
    assert_int_equal(test_run(cmd), 2);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(log);
    assert_non_null(strstr(log, "another model"));
    free(log);
    assert_int_equal(access(test_tmp("c.gguf"), F_OK), -1);
    /* calibration data from another tokenizer */
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s", llama2_tok, txt, test_tmp("l2.h5"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --calib %s --seq-len 8 --heads 0.25 -o %s", model, test_tmp("l2.h5"),
             test_tmp("c.gguf"));
    assert_int_equal(test_run(cmd), 2);
    assert_int_equal(access(test_tmp("c.gguf"), F_OK), -1);
}

/* --target-bytes: et_prune_plan_bytes equals the tensor data `edgetune quantize` writes for the
 * pruned model, byte for byte, at F16, Q8_0, Q4_0 and the K-mixes (whose per-tensor rules and
 * shape fallbacks apply: stories260K's rows of 64 do not divide a K block); and a search for a
 * byte target lands at or under it. */
static uint64_t tensor_bytes(const char *path) {
    gguf_file g;
    et_err e = {0};
    assert_int_equal(gguf_open(&g, path, &e), 0);
    uint64_t n = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) n += g.tensors[i].nbytes;
    gguf_close(&g);
    return n;
}

static void test_target_bytes(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (!test_have_edgetune()) skip();
    char cmd[4096];
    test_spit(test_tmp("tb.txt"), "Once upon a time there was a little girl named Lily. She liked to play in the park.\n\n"
                                  "One day a big bird came to the tree. The bird was sad because it lost its way home.\n");
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s", model, test_tmp("tb.txt"), test_tmp("tb.h5"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --calib %s --calib-rows 2 --seq-len 16 --heads 0.25 --ffn 0.3 --layers 1 "
             "--plan %s --scores %s -o %s", model, test_tmp("tb.h5"), test_tmp("tb.json"), test_tmp("tbs.json"),
             test_tmp("tb.gguf"));
    assert_int_equal(test_run(cmd), 0);
    et_err e = {0};
    et_model m;
    et_prune_plan p;
    assert_int_equal(et_model_load_gguf(&m, model, &e), 0);
    assert_int_equal(et_prune_plan_read(&p, test_tmp("tb.json"), &e), 0);
    static const char *const types[] = {"F16", "Q8_0", "Q4_0", "Q4_K_M", "Q3_K_M", "Q2_K"};
    uint64_t q4_0 = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type %s --quiet", test_tmp("tb.gguf"), test_tmp("tbq.gguf"),
                 types[i]);
        assert_int_equal(test_run(cmd), 0);
        uint64_t want = tensor_bytes(test_tmp("tbq.gguf")), got = 0;
        assert_int_equal(et_prune_plan_bytes(&p, &m, et_ftype_from_name(types[i]), &got, &e), 0);
        printf("  %-6s: planned %llu bytes, quantize wrote %llu\n", types[i], (unsigned long long)got,
               (unsigned long long)want);
        assert_int_equal(got, want);
        if (!strcmp(types[i], "Q4_0")) q4_0 = got;
    }
    et_prune_plan_free(&p);
    et_model_free(&m);
    /* the search: at most q4_0 bytes at Q4_0, with one layer fewer given (the ratios are searched) */
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --scores %s --layers 1 --target-bytes %llu --target-type Q4_0 -o %s",
             model, test_tmp("tbs.json"), (unsigned long long)q4_0, test_tmp("tbt.gguf"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type Q4_0 --quiet", test_tmp("tbt.gguf"), test_tmp("tbtq.gguf"));
    assert_int_equal(test_run(cmd), 0);
    const uint64_t hit = tensor_bytes(test_tmp("tbtq.gguf"));
    printf("  --target-bytes %llu at Q4_0: %llu\n", (unsigned long long)q4_0, (unsigned long long)hit);
    assert_true(hit <= q4_0 && hit > q4_0 * 9 / 10);
    /* a target below what pruning can reach, and a type quantize does not write: exit 2 / 1 */
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --scores %s --target-bytes 1000 --target-type Q4_0 -o %s", model,
             test_tmp("tbs.json"), test_tmp("tbx.gguf"));
    assert_int_equal(test_run(cmd), 2);
    assert_int_equal(access(test_tmp("tbx.gguf"), F_OK), -1);
    snprintf(cmd, sizeof cmd, "./edgetune prune %s --scores %s --target-bytes 100000 --target-type Q9_9 -o %s", model,
             test_tmp("tbs.json"), test_tmp("tbx.gguf"));
    assert_int_equal(test_run(cmd), 1);
}

int main(void) {
    et_omp_passive_reexec();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_random_gqa),
        cmocka_unit_test(test_bad_plans),
        cmocka_unit_test(test_select_no_gqa),
        cmocka_unit_test(test_train_deci),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_target_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
