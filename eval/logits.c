/* eval/logits.c — `edgetune logits`: store a model's top-k log-probabilities
 * per token position.  See logits.h and datasets/teacher.h. */
#include "logits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../datasets/teacher.h"
#include "eval.h"
#include "internal.h"

et_logits_opts et_logits_defaults(void) {
    et_logits_opts o = {.top_k = 64, .temperature = 1.0, .scoring = "all", .split = "all", .n_threads = 1};
    return o;
}

typedef struct lg_ctx {
    int k, n_vocab;
    double inv_t;
    int32_t *ids;        /* [n_doc][k] */
    uint16_t *lp;        /* [n_doc][k] */
    float *tgt;
    uint8_t *scored;
    double *ls;          /* [n_vocab] scratch */
    int32_t *heap;       /* [k] min-heap of ids by ls */
} lg_ctx;

static void sift_down(int32_t *h, int n, const double *v, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && v[h[l]] < v[h[m]]) m = l;
        if (r < n && v[h[r]] < v[h[m]]) m = r;
        if (m == i) return;
        int32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static const double *g_sort_v;
static int cmp_desc(const void *a, const void *b) {
    double x = g_sort_v[*(const int32_t *)a], y = g_sort_v[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b; /* ties: lower id first */
}

static int lg_cb(void *user, int64_t pos, const float *row, int target, et_err *e) {
    (void)e;
    lg_ctx *c = user;
    int V = c->n_vocab, K = c->k;
    double mx = -INFINITY;
    for (int v = 0; v < V; v++) {
        c->ls[v] = (double)row[v] * c->inv_t;
        if (c->ls[v] > mx) mx = c->ls[v];
    }
    double s = 0;
    for (int v = 0; v < V; v++) s += exp(c->ls[v] - mx);
    double lse = mx + log(s);
    for (int v = 0; v < V; v++) c->ls[v] -= lse;
    /* the k largest: a min-heap of k ids, then sorted best first */
    int32_t *h = c->heap;
    for (int v = 0; v < K; v++) h[v] = v;
    for (int i = K / 2 - 1; i >= 0; i--) sift_down(h, K, c->ls, i);
    for (int v = K; v < V; v++)
        if (c->ls[v] > c->ls[h[0]]) {
            h[0] = v;
            sift_down(h, K, c->ls, 0);
        }
    g_sort_v = c->ls;
    qsort(h, (size_t)K, sizeof *h, cmp_desc);
    for (int j = 0; j < K; j++) {
        c->ids[(size_t)pos * K + j] = h[j];
        c->lp[(size_t)pos * K + j] = et_fp32_to_fp16((float)c->ls[h[j]]);
    }
    c->tgt[pos] = target >= 0 ? (float)c->ls[target] : 0.0f;
    c->scored[pos] = target >= 0;
    return 0;
}

int et_logits_run(const et_engine *m, const char *model_path, const char *data, const et_logits_opts *o,
                  const char *out_path, double *tokens_per_s, int64_t *n_rows, et_err *e) {
    int scoring = et_scoring_from_name(o->scoring);
    if (scoring < 0) return et_fail(e, ET_EUSAGE, "--scoring must be all or llama");
    if (!(o->temperature > 0) || !isfinite(o->temperature)) return et_fail(e, ET_EUSAGE, "--temperature must be > 0");
    int V = m->hp.n_vocab, K = o->full ? V : o->top_k;
    if (K < 1 || K > V) return et_fail(e, ET_EUSAGE, "--top-k must be in [1, n_vocab %d]", V);
    et_doc_tokens d;
    int rc = et_doc_tokens_read(m, data, o->split, &d, e);
    if (rc) return rc;
    et_teacher_meta meta;
    memset(&meta, 0, sizeof meta);
    const char *base = strrchr(model_path, '/');
    snprintf(meta.teacher, sizeof meta.teacher, "%s", base ? base + 1 : model_path);
    uint64_t bytes;
    if (!rc) rc = et_file_sha256(model_path, meta.teacher_sha256, &bytes, e);
    if (!rc) rc = et_file_sha256(data, meta.data_sha256, &bytes, e);
    if (m->tok) et_tok_sha256(m->tok, meta.tokenizer_sha256);
    meta.temperature = o->temperature;
    meta.k = K;
    snprintf(meta.mode, sizeof meta.mode, "topk");
    meta.n_vocab = V;
    snprintf(meta.scoring, sizeof meta.scoring, "%s", scoring == ET_WIN_LLAMA ? "llama" : "all");
    et_scorer sc;
    int have_sc = 0;
    if (!rc) rc = et_scorer_init(&sc, m, o->n_ctx, o->n_threads, o->isa, o->kv_f16, e);
    if (!rc) have_sc = 1;
    meta.n_ctx = have_sc ? (o->n_ctx > 0 && o->n_ctx < sc.n_ctx ? o->n_ctx : sc.n_ctx) : 0;
    /* 1. the tokens, as a tokens.h5 at a temporary path */
    size_t pl = strlen(out_path) + 32;
    char *part = malloc(pl);
    if (!rc && !part) rc = et_fail(e, ET_ERUN, "out of memory");
    if (!rc) snprintf(part, pl, "%s.part.%ld", out_path, (long)getpid());
    et_ds_writer *w = NULL;
    if (!rc) {
        et_ds_meta dm = {.n_vocab = V, .bos_id = m->tok ? et_tok_bos(m->tok) : -1, .eos_id = m->tok ? et_tok_eos(m->tok) : -1,
                         .source = data, .format = et_is_hdf5(data) ? "tokens.h5" : "text"};
        snprintf(dm.tokenizer_sha256, sizeof dm.tokenizer_sha256, "%s", meta.tokenizer_sha256);
        rc = et_ds_writer_open(&w, part, &dm, 0, e);
        if (!rc) et_ds_writer_size_hint(w, d.n_tokens);
        for (int64_t q = 0; !rc && q < d.n_docs; q++)
            rc = et_ds_writer_add(w, d.tok + d.off[q], NULL, (size_t)(d.off[q + 1] - d.off[q]), -1, e);
        if (!rc) rc = et_ds_writer_commit(w, e);
        else et_ds_writer_abort(w);
    }
    /* 2. the rows, document by document */
    et_teacher_writer *tw = NULL;
    int made_part = !rc;
    if (!rc) rc = et_teacher_writer_open(&tw, part, d.n_tokens, &meta, e);
    lg_ctx c = {.k = K, .n_vocab = V, .inv_t = 1.0 / o->temperature};
    if (!rc && (!(c.ls = malloc(sizeof(double) * (size_t)V)) || !(c.heap = malloc(sizeof(int32_t) * (size_t)K))))
        rc = et_fail(e, ET_ERUN, "out of memory");
    for (int64_t q = 0; !rc && q < d.n_docs; q++) {
        int64_t a = d.off[q], n = d.off[q + 1] - a;
        free(c.ids);
        free(c.lp);
        free(c.tgt);
        free(c.scored);
        c.ids = calloc((size_t)n * (size_t)K, sizeof(int32_t));
        c.lp = malloc(sizeof(uint16_t) * (size_t)n * (size_t)K);
        c.tgt = calloc((size_t)n, sizeof(float));
        c.scored = calloc((size_t)n, 1);
        if (!c.ids || !c.lp || !c.tgt || !c.scored) {
            rc = et_fail(e, ET_ERUN, "logits: out of memory for %lld rows of %d", (long long)n, K);
            break;
        }
        for (size_t i = 0; i < (size_t)n * (size_t)K; i++) c.lp[i] = 0xfc00; /* -inf: no logits (dropped tail) */
        rc = et_scorer_windows(&sc, d.tok + a, n, meta.n_ctx, scoring, lg_cb, &c, e);
        if (!rc) rc = et_teacher_writer_rows(tw, a, n, c.ids, c.lp, c.tgt, c.scored, e);
    }
    if (tw) {
        int rc2 = et_teacher_writer_close(tw, e);
        if (!rc) rc = rc2;
    }
    if (!rc) rc = et_commit_tmp(part, out_path, e);
    if (rc && made_part) remove(part);
    if (!rc && tokens_per_s) *tokens_per_s = sc.t_fwd > 0 ? (double)sc.n_tokens / sc.t_fwd : 0;
    if (!rc && n_rows) *n_rows = d.n_tokens;
    free(c.ids);
    free(c.lp);
    free(c.tgt);
    free(c.scored);
    free(c.ls);
    free(c.heap);
    free(part);
    if (have_sc) et_scorer_free(&sc);
    et_docs_tok_free(&d);
    return rc;
}
