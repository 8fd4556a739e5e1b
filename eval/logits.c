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
#include "../train/ops.h"
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
    int32_t *heap;       /* [k] ids drawn (sample mode) */
    float *sel;          /* [n_vocab] scratch of the top-k selection */
    int sample;          /* sample mode: k draws */
    uint64_t seed;
    int64_t base;        /* /tokens index of the current document's first token */
    uint16_t *cnt;       /* [n_doc][k] sample counts */
    double *cdf;         /* [n_vocab] */
    int *drawn;          /* [n_vocab] counts of this position (zeroed after use) */
} lg_ctx;

static const int *g_cnt_v;
static int cmp_count(const void *a, const void *b) {
    int x = g_cnt_v[*(const int32_t *)a], y = g_cnt_v[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* Sample mode: K draws from exp(ls) by inversion of the CDF with a generator
 * seeded from (seed, absolute position), so any subset of rows can be redone
 * identically; distinct ids stored most drawn first with their counts. */
static void lg_sample(lg_ctx *c, int64_t pos) {
    const int V = c->n_vocab, K = c->k;
    double acc = 0;
    for (int v = 0; v < V; v++) c->cdf[v] = (acc += exp(c->ls[v]));
    uint64_t x = c->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(c->base + pos + 1)), s[4];
    for (int i = 0; i < 4; i++) s[i] = et_splitmix64(&x);
    int n = 0;
    for (int d = 0; d < K; d++) {
        const double u = (double)(et_xoshiro256ss(s) >> 11) * 0x1.0p-53 * acc;
        int lo = 0, hi = V - 1; /* first v with cdf[v] > u */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (c->cdf[mid] > u) hi = mid;
            else lo = mid + 1;
        }
        if (c->drawn[lo]++ == 0) c->heap[n++] = lo;
    }
    g_cnt_v = c->drawn;
    qsort(c->heap, (size_t)n, sizeof *c->heap, cmp_count);
    for (int j = 0; j < K; j++) {
        const size_t at = (size_t)pos * K + j;
        const int32_t id = j < n ? c->heap[j] : 0;
        c->ids[at] = id;
        c->lp[at] = j < n ? et_fp32_to_fp16((float)c->ls[id]) : 0;
        c->cnt[at] = j < n ? (uint16_t)c->drawn[id] : 0;
    }
    for (int j = 0; j < n; j++) c->drawn[c->heap[j]] = 0;
}

/* The k-th largest of x [n] (0 < k <= n; x is reordered): quickselect with
 * median-of-three pivots (Hoare 1961), expected O(n). */
static float kth_largest(float *x, int n, int k) {
    int lo = 0, hi = n - 1;
    const int want = k - 1; /* index in descending order */
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        float a = x[lo], b = x[mid], c = x[hi];
        float p = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        int i = lo, j = hi;
        while (i <= j) {
            while (x[i] > p) i++;
            while (x[j] < p) j--;
            if (i <= j) {
                float t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[want];
}

static const float *g_sort_z; /* the callback runs on one thread */
static int cmp_desc(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_sort_z[x] != g_sort_z[y]) return g_sort_z[x] > g_sort_z[y] ? -1 : 1;
    return x - y;
}

/* ids [k] sorted by z descending, ties by id ascending (insertion sort while k
 * is small, qsort beyond: --full stores the whole vocabulary). */
static void sort_ids(int32_t *ids, int k, const float *z) {
    if (k > 128) {
        g_sort_z = z;
        qsort(ids, (size_t)k, sizeof *ids, cmp_desc);
        return;
    }
    for (int i = 1; i < k; i++) {
        const int32_t id = ids[i];
        const float v = z[id];
        int j = i - 1;
        while (j >= 0 && (z[ids[j]] < v || (z[ids[j]] == v && ids[j] > id))) {
            ids[j + 1] = ids[j];
            j--;
        }
        ids[j + 1] = id;
    }
}

/* The log-softmax of row/T is z/T - lse: the top-k of the log-probs are the
 * top-k of the logits (T > 0), so they are selected on the float row and only
 * the k kept (and the target) are turned into log-probs.  lse: et_row_lse
 * (exponentials summed in double). */
static int lg_cb(void *user, int64_t pos, const float *row, int target, et_err *e) {
    (void)e;
    lg_ctx *c = user;
    const int V = c->n_vocab, K = c->k;
    const float it = (float)c->inv_t, lse = et_row_lse(row, V, it);
    c->tgt[pos] = target >= 0 ? row[target] * it - lse : 0.0f;
    c->scored[pos] = target >= 0;
    if (c->sample) {
        for (int v = 0; v < V; v++) c->ls[v] = (double)(row[v] * it - lse);
        lg_sample(c, pos);
        return 0;
    }
    /* the k largest: their threshold by quickselect on a copy, then the ids above it (and the
     * lowest ids among ties at it), sorted best first */
    float *x = c->sel;
    memcpy(x, row, sizeof(float) * (size_t)V);
    const float thr = kth_largest(x, V, K);
    int32_t *ids = c->ids + (size_t)pos * K;
    int n = 0;
    for (int v = 0; v < V; v++)
        if (row[v] > thr) ids[n++] = v;
    for (int v = 0; v < V && n < K; v++)
        if (row[v] == thr) ids[n++] = v;
    sort_ids(ids, K, row);
    uint16_t *lp = c->lp + (size_t)pos * K;
    for (int j = 0; j < K; j++) lp[j] = et_fp32_to_fp16(row[ids[j]] * it - lse);
    return 0;
}

int et_logits_run(const et_engine *m, const char *model_path, const char *data, const et_logits_opts *o,
                  const char *out_path, double *tokens_per_s, int64_t *n_rows, et_err *e) {
    int scoring = et_scoring_from_name(o->scoring);
    if (scoring < 0) return et_fail(e, ET_EUSAGE, "--scoring must be all, llama or stream");
    if (!(o->temperature > 0) || !isfinite(o->temperature)) return et_fail(e, ET_EUSAGE, "--temperature must be > 0");
    int V = m->hp.n_vocab, K = o->full ? V : o->sample > 0 ? o->sample : o->top_k;
    if (o->sample > 0 && (o->full || o->sample > 65535))
        return et_fail(e, ET_EUSAGE, "--sample K: K in [1, 65535], and not with --full");
    if (!o->sample && (K < 1 || K > V)) return et_fail(e, ET_EUSAGE, "--top-k must be in [1, n_vocab %d]", V);
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
    snprintf(meta.mode, sizeof meta.mode, "%s", o->sample > 0 ? "sample" : "topk");
    meta.seed = o->seed;
    meta.n_vocab = V;
    snprintf(meta.scoring, sizeof meta.scoring, "%s", scoring == ET_WIN_LLAMA ? "llama" : scoring == ET_WIN_STREAM ? "stream" : "all");
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
        rc = et_ds_writer_open(&w, part, &dm, d.mask ? ET_DS_WITH_MASK : 0, e); /* the data's loss mask is kept */
        if (!rc) et_ds_writer_size_hint(w, d.n_tokens);
        for (int64_t q = 0; !rc && q < d.n_docs; q++) {
            if (q == d.valid_doc) et_ds_writer_begin_valid(w); /* the data's split is kept */
            rc = et_ds_writer_add(w, d.tok + d.off[q], d.mask ? d.mask + d.off[q] : NULL, (size_t)(d.off[q + 1] - d.off[q]), -1, e);
        }
        if (!rc) rc = et_ds_writer_commit(w, e);
        else et_ds_writer_abort(w);
    }
    /* 2. the rows, document by document */
    et_teacher_writer *tw = NULL;
    int made_part = !rc;
    if (!rc) rc = et_teacher_writer_open(&tw, part, d.n_tokens, &meta, e);
    lg_ctx c = {.k = K, .n_vocab = V, .inv_t = 1.0 / o->temperature, .sample = o->sample > 0, .seed = o->seed};
    if (!rc && (!(c.ls = malloc(sizeof(double) * (size_t)V)) || !(c.heap = malloc(sizeof(int32_t) * (size_t)K)) ||
                !(c.sel = malloc(sizeof(float) * (size_t)V))))
        rc = et_fail(e, ET_ERUN, "out of memory");
    if (!rc && c.sample && (!(c.cdf = malloc(sizeof(double) * (size_t)V)) || !(c.drawn = calloc((size_t)V, sizeof(int)))))
        rc = et_fail(e, ET_ERUN, "out of memory");
    /* the units scored: documents, or (stream) each split's documents as one
       stream, in pieces of 64 windows that overlap by one token */
    int64_t n_units = d.n_docs, seg[3] = {0, d.off[d.valid_doc < d.n_docs ? d.valid_doc : d.n_docs], d.n_tokens};
    if (scoring == ET_WIN_STREAM) n_units = seg[1] > 0 && seg[1] < d.n_tokens ? 2 : 1, seg[1] = n_units == 2 ? seg[1] : d.n_tokens;
    const int64_t piece = scoring == ET_WIN_STREAM ? 64 * (int64_t)(meta.n_ctx - 1) : 0;
    for (int64_t q = 0, at = 0; !rc && q < n_units;) {
        int64_t a, n;
        if (scoring != ET_WIN_STREAM) {
            a = d.off[q], n = d.off[q + 1] - a, q++;
        } else {
            a = at > seg[q] ? at : seg[q];
            n = seg[q + 1] - a > piece + 1 ? piece + 1 : seg[q + 1] - a;
            at = a + piece;
            if (at + 1 >= seg[q + 1]) q++, at = 0;
            if (n < 2) continue;
        }
        free(c.ids);
        free(c.lp);
        free(c.tgt);
        free(c.scored);
        free(c.cnt);
        c.cnt = c.sample ? calloc((size_t)n * (size_t)K, sizeof(uint16_t)) : NULL;
        c.base = a;
        c.ids = calloc((size_t)n * (size_t)K, sizeof(int32_t));
        c.lp = malloc(sizeof(uint16_t) * (size_t)n * (size_t)K);
        c.tgt = calloc((size_t)n, sizeof(float));
        c.scored = calloc((size_t)n, 1);
        if (!c.ids || !c.lp || !c.tgt || !c.scored || (c.sample && !c.cnt)) {
            rc = et_fail(e, ET_ERUN, "logits: out of memory for %lld rows of %d", (long long)n, K);
            break;
        }
        for (size_t i = 0; i < (size_t)n * (size_t)K; i++) c.lp[i] = 0xfc00; /* -inf: no logits (dropped tail) */
        rc = et_scorer_windows(&sc, d.tok + a, n, meta.n_ctx, scoring, lg_cb, &c, e);
        if (!rc) rc = et_teacher_writer_rows(tw, a, n, c.ids, c.lp, c.tgt, c.scored, e);
        if (!rc && c.sample) rc = et_teacher_writer_counts(tw, a, n, c.cnt, e);
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
    free(c.sel);
    free(c.heap);
    free(c.cnt);
    free(c.cdf);
    free(c.drawn);
    free(part);
    if (have_sc) et_scorer_free(&sc);
    et_docs_tok_free(&d);
    return rc;
}
