/* eval/score.c — log-likelihoods on the engine with KV-cache reuse, and
 * the windowing of perplexity / logits / KL.  See internal.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int et_scorer_init(et_scorer *s, const et_engine *m, int n_ctx, int n_threads, const char *isa, int kv_f16, et_err *e) {
    memset(s, 0, sizeof *s);
    et_state_opts so = et_state_default_opts();
    so.n_ctx = n_ctx;
    so.n_threads = n_threads > 0 ? n_threads : 1;
    so.kv_type = kv_f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    so.isa = isa;
    int rc = et_state_new(&s->st, m, &so, e);
    if (rc) return rc;
    s->m = m;
    s->n_vocab = m->hp.n_vocab;
    s->n_ctx = et_state_n_ctx(s->st);
    if (!(s->cache = malloc(sizeof(int32_t) * (size_t)s->n_ctx))) {
        et_scorer_free(s);
        return et_fail(e, ET_ERUN, "eval: out of memory");
    }
    return 0;
}

void et_scorer_free(et_scorer *s) {
    if (!s) return;
    et_state_free(s->st);
    free(s->cache);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

int et_scorer_forward(et_scorer *s, const int32_t *ids, int n, float *logits, int all_logits, et_err *e) {
    double t0 = et_now_s();
    int rc = et_forward(s->st, ids, n, logits, all_logits, e);
    s->t_fwd += et_now_s() - t0;
    s->n_tokens += n;
    return rc;
}

static int reserve(et_scorer *s, size_t n, et_err *e) {
    if (n <= s->cap) return 0;
    float *v = realloc(s->logits, n * sizeof *v);
    if (!v) return et_fail(e, ET_ERUN, "eval: out of memory for %zu logits", n);
    s->logits = v;
    s->cap = n;
    return 0;
}

int et_scorer_run(et_scorer *s, const int32_t *seq, int n, int from, const float **out, et_err *e) {
    if (n > s->n_ctx) return et_fail(e, ET_EUSAGE, "eval: %d tokens exceed the context of %d", n, s->n_ctx);
    if (from < 0) from = 0;
    if (from > n) from = n;
    int keep = 0;
    while (keep < s->n_cache && keep < n && s->cache[keep] == seq[keep]) keep++;
    if (keep > from) keep = from;
    if (keep == n && n > 0) keep = n - 1; /* run at least one token so the state is defined */
    int rc = et_state_truncate(s->st, keep, e);
    if (rc) return rc;
    s->n_cache = keep;
    int nl = n - from;
    if (from > keep) {
        if ((rc = et_scorer_forward(s, seq + keep, from - keep, NULL, 0, e))) {
            s->n_cache = 0;
            et_state_reset(s->st);
            return rc;
        }
    }
    if (nl > 0) {
        if ((rc = reserve(s, (size_t)nl * (size_t)s->n_vocab, e))) return rc;
        if ((rc = et_scorer_forward(s, seq + from, nl, s->logits, 1, e))) {
            s->n_cache = 0;
            et_state_reset(s->st);
            return rc;
        }
    }
    memcpy(s->cache, seq, sizeof(int32_t) * (size_t)n);
    s->n_cache = n;
    if (out) *out = s->logits;
    return 0;
}

double et_logprob(const float *row, int n_vocab, int target) {
    float mx = row[0];
    for (int i = 1; i < n_vocab; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)row[i] - (double)mx);
    return (double)row[target] - (double)mx - log(sum);
}

int et_scorer_loglik(et_scorer *s, const int32_t *seq, int n, int b, double *sum, int *greedy, double *logp,
                     et_err *e) {
    if (b < 1 || b >= n) return et_fail(e, ET_EUSAGE, "eval: continuation [%d, %d) is empty or has no context", b, n);
    const float *lg;
    /* logits of positions b-1 .. n-2 predict tokens b .. n-1 */
    int rc = et_scorer_run(s, seq, n - 1, b - 1, &lg, e);
    if (rc) return rc;
    *sum = 0;
    *greedy = 1;
    for (int j = b; j < n; j++) {
        const float *row = lg + (size_t)(j - b) * (size_t)s->n_vocab;
        for (int v = 0; v < s->n_vocab; v++)
            if (!isfinite(row[v])) return et_fail(e, ET_ERUN, "eval: non-finite logit at position %d (token %d)", j - 1, v);
        double lp = et_logprob(row, s->n_vocab, seq[j]);
        if (logp) logp[j - b] = lp;
        *sum += lp;
        if (et_argmax(row, s->n_vocab) != seq[j]) *greedy = 0;
    }
    return 0;
}

int et_scoring_from_name(const char *name) {
    if (!name || !strcmp(name, "all")) return ET_WIN_ALL;
    if (!strcmp(name, "llama")) return ET_WIN_LLAMA;
    if (!strcmp(name, "stream")) return ET_WIN_STREAM;
    return -1;
}

/* Run one window w[0..len) from an empty cache and hand every position's
 * logits to fn; positions >= first are scored (target w[p+1]). */
static int run_window(et_scorer *s, const int32_t *w, int len, int64_t base, int first, et_win_fn fn, void *user,
                      et_err *e) {
    int B = 64, rc = 0;
    et_state_reset(s->st);
    s->n_cache = 0;
    if ((rc = reserve(s, (size_t)B * (size_t)s->n_vocab, e))) return rc;
    for (int i = 0; i < len && !rc; i += B) {
        int c = len - i < B ? len - i : B;
        if ((rc = et_scorer_forward(s, w + i, c, s->logits, 1, e))) break;
        for (int t = 0; t < c && !rc; t++) {
            int p = i + t;
            const float *row = s->logits + (size_t)t * (size_t)s->n_vocab;
            for (int v = 0; v < s->n_vocab; v++)
                if (!isfinite(row[v])) {
                    rc = et_fail(e, ET_ERUN, "eval: non-finite logit at position %lld (token %d)", (long long)(base + p), v);
                    break;
                }
            if (!rc) rc = fn(user, base + p, row, p >= first && p + 1 < len ? w[p + 1] : -1, e);
        }
    }
    et_state_reset(s->st);
    return rc;
}

int et_scorer_windows(et_scorer *s, const int32_t *tok, int64_t n, int n_ctx, int scoring, et_win_fn fn, void *user,
                      et_err *e) {
    if (n_ctx <= 0 || n_ctx > s->n_ctx) n_ctx = s->n_ctx;
    if (n_ctx < 2) return et_fail(e, ET_EUSAGE, "eval: the context must hold at least 2 tokens");
    int rc = 0;
    if (scoring == ET_WIN_STREAM) {
        for (int64_t i = 0; i + 1 < n && !rc; i += n_ctx - 1) {
            int len = n - i < n_ctx ? (int)(n - i) : n_ctx;
            rc = run_window(s, tok + i, len, i, 0, fn, user, e);
        }
        return rc;
    }
    if (scoring == ET_WIN_ALL) {
        for (int64_t i = 0; i < n && !rc; i += n_ctx) {
            int len = n - i < n_ctx ? (int)(n - i) : n_ctx;
            if (len >= 2) rc = run_window(s, tok + i, len, i, 0, fn, user, e);
        }
        return rc;
    }
    if (n_ctx < 4) return et_fail(e, ET_EUSAGE, "eval: llama scoring needs a context of at least 4 tokens");
    int32_t *w = malloc(sizeof(int32_t) * (size_t)n_ctx);
    if (!w) return et_fail(e, ET_ERUN, "eval: out of memory");
    /* llama-perplexity replaces the chunk's first token only when the vocabulary adds BOS */
    int bos = s->m->tok && et_tok_add_bos(s->m->tok) ? et_tok_bos(s->m->tok) : -1;
    for (int64_t c = 0; c < n / n_ctx && !rc; c++) {
        memcpy(w, tok + c * n_ctx, sizeof(int32_t) * (size_t)n_ctx);
        if (bos >= 0) w[0] = bos;
        rc = run_window(s, w, n_ctx, c * n_ctx, n_ctx / 2, fn, user, e);
    }
    free(w);
    return rc;
}
