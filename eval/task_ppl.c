/* eval/task_ppl.c — perplexity and KL(ref || model) on the engine, the
 * teacher-logits writer behind `edgetune logits`.  Definitions follow
 * llama.cpp examples/perplexity/perplexity.cpp (c392e509): full-vocabulary
 * log-softmax per scored token, PPL = exp(mean NLL), its standard error
 * carried through exp, percentiles by linear interpolation on the sorted
 * values (docs/evaluation.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/dataset.h"
#include "../datasets/teacher.h"
#include "logits.h"
#include "tasks.h"

/* ------------------------------------------------------------ the input tokens */

int et_is_hdf5(const char *path) { return et_sniff_hdf5(path); }

void et_docs_tok_free(et_doc_tokens *d) {
    if (!d) return;
    free(d->tok);
    free(d->off);
    free(d->mask);
    memset(d, 0, sizeof *d);
}

int et_check_tokenizer(const et_engine *m, const char *path, const char *sha, int64_t n_vocab, et_err *e) {
    return et_ds_check_tokenizer(path, sha, n_vocab, -1, -1, m->tok, m->hp.n_vocab, "model", e);
}

int et_doc_tokens_read(const et_engine *m, const char *path, const char *split, et_doc_tokens *out, et_err *e) {
    memset(out, 0, sizeof *out);
    int rc = 0;
    if (et_is_hdf5(path)) {
        et_ds *ds;
        if ((rc = et_ds_open(&ds, path, e))) return rc;
        rc = et_ds_check_tokenizer(path, ds->tokenizer_sha256, ds->n_vocab, ds->bos_id, ds->eos_id, m->tok,
                                   m->hp.n_vocab, "model", e);   /* datasets/dataset.h: the one check */
        int64_t d0 = 0, d1 = ds->n_docs;
        if (!rc && split && !strcmp(split, "train")) et_ds_split_docs(ds, ET_SPLIT_TRAIN, &d0, &d1);
        else if (!rc && split && !strcmp(split, "valid")) et_ds_split_docs(ds, ET_SPLIT_VALID, &d0, &d1);
        else if (!rc && split && strcmp(split, "all")) rc = et_fail(e, ET_EUSAGE, "--split must be all, train or valid");
        int64_t t0 = ds->doc_offsets[d0], nt = ds->doc_offsets[d1] - t0;
        if (!rc && (d1 <= d0 || nt <= 0)) rc = et_fail(e, ET_EINPUT, "%s: the %s split has no documents", path, split ? split : "all");
        if (!rc && (!(out->tok = malloc(sizeof(int32_t) * (size_t)nt)) ||
                    !(out->off = malloc(sizeof(int64_t) * (size_t)(d1 - d0 + 1)))))
            rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        if (!rc) rc = et_ds_read_tokens(ds, t0, nt, out->tok, e);
        if (!rc && ds->has_mask && !(out->mask = malloc((size_t)nt))) rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        if (!rc && out->mask) rc = et_ds_read_mask(ds, t0, nt, out->mask, e);
        for (int64_t d = d0; !rc && d <= d1; d++) out->off[d - d0] = ds->doc_offsets[d] - t0;
        out->n_docs = d1 - d0;
        out->n_tokens = nt;
        out->first_token = t0;
        int64_t v0 = 0, v1 = 0;
        et_ds_split_docs(ds, ET_SPLIT_VALID, &v0, &v1);
        /* the whole file keeps its split; a single split is all training */
        out->valid_doc = d0 == 0 && d1 == ds->n_docs && v1 > v0 && v0 > 0 ? v0 : out->n_docs;
        et_ds_close(ds);
    } else {
        if (et_is_h5_name(path) && (rc = et_need_regular(path, "a tokens.h5 is read by seeking", e))) return rc;
        if (et_is_h5_name(path))   /* common/et.h: never read a .h5 as text */
            return et_fail(e, ET_EINPUT, "%s: not an HDF5 file (no HDF5 signature), though named like a tokens.h5", path);
        if (!m->tok) return et_fail(e, ET_EINPUT, "%s: the model has no tokenizer to read text with", m->path);
        et_map mp;
        if ((rc = et_map_open(&mp, path, e))) return rc;
        int32_t *ids = NULL;
        size_t n = 0;
        if (mp.size == 0) rc = et_fail(e, ET_EINPUT, "%s: empty file: nothing to score", path);
        else rc = et_tok_encode(m->tok, (const char *)mp.data, mp.size, ET_TOK_DEFAULT_BOS, &ids, &n, e);
        et_map_close(&mp);
        if (!rc && n < 2) rc = et_fail(e, ET_EINPUT, "%s: %zu token(s): nothing to score", path, n);
        if (!rc && !(out->off = malloc(2 * sizeof(int64_t)))) rc = et_fail(e, ET_ERUN, "out of memory");
        if (rc) {
            free(ids);
            et_docs_tok_free(out);
            return rc;
        }
        out->tok = ids;
        out->off[0] = 0;
        out->off[1] = (int64_t)n;
        out->n_docs = 1;
        out->valid_doc = 1;
        out->n_tokens = (int64_t)n;
    }
    if (rc) et_docs_tok_free(out);
    return rc;
}

/* ------------------------------------------------------------ perplexity */

typedef struct ppl_acc {
    double nll, nll2;
    long n;
} ppl_acc;

typedef struct ppl_ctx {
    ppl_acc acc;
    int n_vocab;
} ppl_ctx;

static int ppl_cb2(void *user, int64_t pos, const float *row, int target, et_err *e) {
    (void)pos;
    (void)e;
    ppl_ctx *c = user;
    if (target < 0) return 0;
    double nll = -et_logprob(row, c->n_vocab, target);
    c->acc.nll += nll;
    c->acc.nll2 += nll * nll;
    c->acc.n++;
    return 0;
}

/* Standard error of a mean from its sums (llama.cpp: 0 when n <= 1). */
static double sem(double s, double s2, long n) {
    if (n <= 1) return 0;
    double m = s / (double)n, v = s2 / (double)n - m * m;
    return v > 0 ? sqrt(v / (double)(n - 1)) : 0;
}

int et_task_perplexity(et_task_ctx *c, cJSON *metrics, et_err *e) {
    const et_eval_opts *o = c->o;
    int scoring = et_scoring_from_name(o->scoring);
    if (scoring < 0) return et_fail(e, ET_EUSAGE, "--scoring must be all or llama");
    et_doc_tokens d;
    int rc = et_doc_tokens_read(c->m, o->data, o->split, &d, e);
    if (rc) return rc;
    ppl_ctx pc = {.n_vocab = c->sc->n_vocab};
    int n_ctx = c->sc->n_ctx;
    for (int64_t k = 0; k < d.n_docs && !rc; k++) {
        rc = et_scorer_windows(c->sc, d.tok + d.off[k], d.off[k + 1] - d.off[k], n_ctx, scoring, ppl_cb2, &pc, e);
        et_task_progress(c, (long)(k + 1), (long)d.n_docs);
    }
    if (!rc && pc.acc.n == 0)
        rc = et_fail(e, ET_EINPUT, "%s: no token was scored (%lld tokens; %s scoring needs %s)", o->data,
                     (long long)d.n_tokens, o->scoring ? o->scoring : "all",
                     scoring == ET_WIN_LLAMA ? "at least one whole window of --ctx tokens" : "documents of 2+ tokens");
    if (!rc) {
        double mean = pc.acc.nll / (double)pc.acc.n, ppl = exp(mean);
        cJSON_AddNumberToObject(metrics, "nll_per_token", mean);
        cJSON_AddNumberToObject(metrics, "nll_per_token_se", sem(pc.acc.nll, pc.acc.nll2, pc.acc.n));
        cJSON_AddNumberToObject(metrics, "ppl", ppl);
        cJSON_AddNumberToObject(metrics, "ppl_se", ppl * sem(pc.acc.nll, pc.acc.nll2, pc.acc.n));
        cJSON_AddNumberToObject(metrics, "tokens_scored", (double)pc.acc.n);
        cJSON_AddNumberToObject(c->task, "n_ctx", n_ctx);
        cJSON_AddStringToObject(c->task, "scoring", scoring == ET_WIN_LLAMA ? "llama" : "all");
        cJSON_AddNumberToObject(c->task, "tokens", (double)d.n_tokens);
        cJSON_AddNumberToObject(c->task, "documents", (double)d.n_docs);
        c->n_scored = pc.acc.n;
    }
    et_docs_tok_free(&d);
    return rc;
}

/* ------------------------------------------------------------ KL */

typedef struct kl_ctx {
    const et_teacher *t;
    int k, n_vocab;
    int64_t base;            /* first row of the current document in the file */
    int32_t *ids;            /* [n_doc * k] the document's reference rows */
    float *lp, *tgt;
    uint8_t *scored;
    double *kl;              /* [cap] per-token KL */
    long n, cap;
    double s_nq, s_nq2, s_nb, s_nb2, s_nqnb, s_dp, s_dp2, kl_s, kl_s2;
    long same;
    double *lq;              /* [n_vocab] scratch: the model's log-softmax */
} kl_ctx;

static int kl_cb(void *user, int64_t pos, const float *row, int target, et_err *e) {
    kl_ctx *c = user;
    if (target < 0) return 0;
    if (!c->scored[pos]) return 0; /* the reference did not score it: keep the same token set */
    int V = c->n_vocab, K = c->k;
    float mx = row[0];
    for (int v = 1; v < V; v++)
        if (row[v] > mx) mx = row[v];
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
    double lse = mx + log(s);
    for (int v = 0; v < V; v++) c->lq[v] = (double)row[v] - lse;
    /* KL over the reference's top-k plus one bucket for the rest (exact when k = n_vocab,
     * otherwise a lower bound: merging outcomes cannot increase KL) */
    const int32_t *ids = c->ids + (size_t)pos * K;
    const float *lp = c->lp + (size_t)pos * K;
    double kl = 0, pk = 0, qk = 0;
    for (int j = 0; j < K; j++) {
        double lpj = lp[j], p = exp(lpj);
        if (p > 0) kl += p * (lpj - c->lq[ids[j]]);
        pk += p;
        qk += exp(c->lq[ids[j]]);
    }
    double pt = 1 - pk, qt = 1 - qk;
    if (K < V && pt > 1e-12 && qt > 1e-300) kl += pt * log(pt / qt);
    if (!isfinite(kl)) return et_fail(e, ET_ERUN, "kl: non-finite KL at token %lld", (long long)(c->base + pos));
    if (c->n == c->cap) {
        long nc = c->cap ? 2 * c->cap : 4096;
        double *x = realloc(c->kl, sizeof(double) * (size_t)nc);
        if (!x) return et_fail(e, ET_ERUN, "kl: out of memory");
        c->kl = x;
        c->cap = nc;
    }
    c->kl[c->n++] = kl;
    c->kl_s += kl;
    c->kl_s2 += kl * kl;
    double nq = -c->lq[target], nb = -(double)c->tgt[pos];
    c->s_nq += nq;
    c->s_nq2 += nq * nq;
    c->s_nb += nb;
    c->s_nb2 += nb * nb;
    c->s_nqnb += nq * nb;
    double dp = exp(-nq) - exp(-nb);
    c->s_dp += dp;
    c->s_dp2 += dp * dp;
    int am = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > row[am]) am = v;
    c->same += am == ids[0];
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile by linear interpolation on sorted v (llama.cpp perplexity.cpp). */
static double pct(const double *v, long n, double f) {
    double p = f * (double)(n - 1);
    long i = (long)p;
    if (i >= n - 1) return v[n - 1];
    double fr = p - (double)i;
    return v[i] * (1 - fr) + v[i + 1] * fr;
}

int et_task_kl(et_task_ctx *c, cJSON *metrics, et_err *e) {
    const et_eval_opts *o = c->o;
    const char *ref = o->ref ? o->ref : o->data;
    if (!ref) return et_fail(e, ET_EUSAGE, "kl: --ref REF.h5 (from `edgetune logits`) is needed");
    et_teacher *t = NULL;
    et_teacher_meta meta;
    int rc = et_teacher_open(&t, ref, &meta, e);
    if (rc) return rc;
    if (meta.temperature != 1.0)
        rc = et_fail(e, ET_EINPUT, "%s: stored at temperature %g; a KL reference must be at temperature 1", ref,
                     meta.temperature);
    if (!rc && strcmp(meta.mode, "topk"))
        rc = et_fail(e, ET_EINPUT, "%s: a sampled teacher file (mode %s) is a distillation target, not a KL reference "
                     "(make one with `edgetune logits --top-k K` or --full)", ref, meta.mode);
    if (!rc) rc = et_check_tokenizer(c->m, ref, meta.tokenizer_sha256, meta.n_vocab, e);
    if (!rc && meta.n_vocab != c->m->hp.n_vocab)
        rc = et_fail(e, ET_EINPUT, "%s: reference n_vocab %lld differs from the model's %d", ref, (long long)meta.n_vocab,
                     c->m->hp.n_vocab);
    int scoring = et_scoring_from_name(meta.scoring[0] ? meta.scoring : "all");
    if (!rc && scoring < 0) rc = et_fail(e, ET_EINPUT, "%s: /teacher scoring '%s' is unknown", ref, meta.scoring);
    if (!rc && meta.n_ctx > c->sc->n_ctx)
        rc = et_fail(e, ET_EINPUT, "%s: the reference used windows of %d tokens, more than this model's context of %d",
                     ref, meta.n_ctx, c->sc->n_ctx);
    et_doc_tokens d = {0};
    if (!rc) rc = et_doc_tokens_read(c->m, ref, "all", &d, e);
    kl_ctx k = {.t = t, .k = meta.k, .n_vocab = c->sc->n_vocab};
    if (!rc && !(k.lq = malloc(sizeof(double) * (size_t)k.n_vocab))) rc = et_fail(e, ET_ERUN, "out of memory");
    for (int64_t q = 0; q < d.n_docs && !rc; q++) {
        int64_t a = d.off[q], n = d.off[q + 1] - a;
        free(k.ids);
        free(k.lp);
        free(k.tgt);
        free(k.scored);
        k.ids = malloc(sizeof(int32_t) * (size_t)n * (size_t)k.k);
        k.lp = malloc(sizeof(float) * (size_t)n * (size_t)k.k);
        k.tgt = malloc(sizeof(float) * (size_t)n);
        k.scored = malloc((size_t)n);
        if (!k.ids || !k.lp || !k.tgt || !k.scored) {
            rc = et_fail(e, ET_ERUN, "kl: out of memory for %lld rows of %d", (long long)n, k.k);
            break;
        }
        k.base = a;
        rc = et_teacher_read(t, a, n, k.ids, k.lp, k.tgt, k.scored, e);
        if (!rc) rc = et_scorer_windows(c->sc, d.tok + a, n, meta.n_ctx, scoring, kl_cb, &k, e);
        et_task_progress(c, (long)(q + 1), (long)d.n_docs);
    }
    if (!rc && k.n == 0) rc = et_fail(e, ET_EINPUT, "%s: no scored token to compare", ref);
    if (!rc) {
        long n = k.n;
        qsort(k.kl, (size_t)n, sizeof(double), cmp_d);
        double mq = k.s_nq / n, mb = k.s_nb / n;
        cJSON_AddNumberToObject(metrics, "kl_mean", k.kl_s / n);
        cJSON_AddNumberToObject(metrics, "kl_mean_se", sem(k.kl_s, k.kl_s2, n));
        cJSON_AddNumberToObject(metrics, "kl_median", pct(k.kl, n, 0.5));
        cJSON_AddNumberToObject(metrics, "kl_p90", pct(k.kl, n, 0.90));
        cJSON_AddNumberToObject(metrics, "kl_p99", pct(k.kl, n, 0.99));
        cJSON_AddNumberToObject(metrics, "kl_p999", pct(k.kl, n, 0.999));
        cJSON_AddNumberToObject(metrics, "kl_max", k.kl[n - 1]);
        cJSON_AddNumberToObject(metrics, "same_top1", (double)k.same / n);
        cJSON_AddNumberToObject(metrics, "mean_delta_p", k.s_dp / n);
        cJSON_AddNumberToObject(metrics, "rms_delta_p", sqrt(k.s_dp2 / n));
        cJSON_AddNumberToObject(metrics, "ppl", exp(mq));
        cJSON_AddNumberToObject(metrics, "ppl_ref", exp(mb));
        cJSON_AddNumberToObject(metrics, "ppl_ratio", exp(mq - mb));
        cJSON_AddNumberToObject(metrics, "ln_ppl_ratio", mq - mb);
        cJSON_AddNumberToObject(metrics, "tokens_scored", (double)n);
        cJSON_AddStringToObject(c->task, "ref", ref);
        cJSON_AddStringToObject(c->task, "ref_model", meta.teacher);
        cJSON_AddStringToObject(c->task, "ref_model_sha256", meta.teacher_sha256);
        cJSON_AddNumberToObject(c->task, "ref_top_k", meta.k);
        cJSON_AddBoolToObject(c->task, "kl_exact", meta.k == meta.n_vocab);
        cJSON_AddNumberToObject(c->task, "n_ctx", meta.n_ctx);
        cJSON_AddStringToObject(c->task, "scoring", scoring == ET_WIN_LLAMA ? "llama" : "all");
        c->n_scored = n;
    }
    free(k.ids);
    free(k.lp);
    free(k.tgt);
    free(k.scored);
    free(k.kl);
    free(k.lq);
    et_docs_tok_free(&d);
    et_teacher_close(t);
    return rc;
}
