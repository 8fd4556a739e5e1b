/* eval/tasks.c — classify, choice and generate on the engine.  Definitions
 * (lm-eval-harness's acc / acc_norm, macro-F1, exact match after trimming)
 * are written out in docs/evaluation.md. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../datasets/chat_template.h"
#include "../datasets/ingest.h"
#include "tasks.h"

void et_task_progress(et_task_ctx *c, long done, long total) {
    if (c->o->progress) c->o->progress(c->o->progress_user, c->o->task, done, total, et_now_s() - c->t0);
}

/* ------------------------------------------------------------ tokens of a choice */

/* ids = encode(prompt + cont) with BOS as the vocabulary says; *b = where the
 * continuation starts (longest common prefix with encode(prompt), at least 1:
 * as datasets/ingest.h masks prompts).  With eos, EOS is appended. */
static int encode_pair(const et_tokenizer *tok, int flags, const char *prompt, const char *cont, int eos, int32_t **ids,
                       int *n, int *b, et_err *e) {
    size_t lp = strlen(prompt), lc = strlen(cont);
    char *full = malloc(lp + lc + 1);
    if (!full) return et_fail(e, ET_ERUN, "eval: out of memory");
    memcpy(full, prompt, lp);
    memcpy(full + lp, cont, lc + 1);
    int32_t *f = NULL, *p = NULL;
    size_t nf = 0, np = 0;
    int rc = et_tok_encode(tok, full, lp + lc, ET_TOK_DEFAULT_BOS | flags, &f, &nf, e);
    if (!rc) rc = et_tok_encode(tok, prompt, lp, ET_TOK_DEFAULT_BOS | flags, &p, &np, e);
    free(full);
    if (!rc && eos >= 0) {
        int32_t *x = realloc(f, (nf + 1) * sizeof *x);
        if (!x) rc = et_fail(e, ET_ERUN, "eval: out of memory");
        else {
            f = x;
            f[nf++] = eos;
        }
    }
    size_t k = 0;
    while (!rc && k < np && k < nf && p[k] == f[k]) k++;
    if (k < 1) k = 1;
    free(p);
    if (!rc && nf > (size_t)1 << 30) rc = et_fail(e, ET_EINPUT, "eval: record too long");
    if (rc) {
        free(f);
        return rc;
    }
    *ids = f;
    *n = (int)nf;
    *b = (int)k;
    return 0;
}

/* Fit seq into n_ctx tokens: drop prompt tokens after the first (BOS) one.
 * Returns 1 when cut, 0 when it fits, -1 when even the continuation does not fit. */
static int fit(int32_t *seq, int *n, int *b, int n_ctx) {
    if (*n <= n_ctx) return 0;
    int cut = *n - n_ctx;
    if (*b - 1 - cut < 1) return -1; /* keep the first token and one of prompt */
    memmove(seq + 1, seq + 1 + cut, sizeof(int32_t) * (size_t)(*n - 1 - cut));
    *n -= cut;
    *b -= cut;
    return 1;
}

/* ------------------------------------------------------------ classify and choice */

int et_task_choices(et_task_ctx *c, int is_classify, cJSON *metrics, et_err *e) {
    const et_recs *R = c->recs;
    int K = R->n_classes, rc = 0;
    long n = R->n, n_acc = 0, n_acc_norm = 0, n_done = 0;
    long *conf = NULL; /* [K][K] gold x predicted */
    if (is_classify && !(conf = calloc((size_t)K * (size_t)K, sizeof *conf))) return et_fail(e, ET_ERUN, "out of memory");
    double *ll = NULL, *lln = NULL;
    int cap = 0;
    for (long i = 0; i < n && !rc; i++) {
        const et_rec *r = &R->r[i];
        if (r->n_choices > cap) {
            cap = r->n_choices;
            double *a = realloc(ll, sizeof(double) * (size_t)cap), *b2 = a ? realloc(lln, sizeof(double) * (size_t)cap) : NULL;
            if (a) ll = a;
            if (b2) lln = b2;
            if (!a || !b2) {
                rc = et_fail(e, ET_ERUN, "out of memory");
                break;
            }
        }
        int skipped = 0, truncated = 0, gold_greedy = 0;
        for (int j = 0; j < r->n_choices && !rc; j++) {
            int32_t *ids = NULL;
            int nt = 0, b = 0, gr = 0;
            rc = encode_pair(c->m->tok, c->tok_flags, r->prompt, r->choices[j], -1, &ids, &nt, &b, e);
            if (!rc && b >= nt)
                rc = et_fail(e, ET_EINPUT, "%s: line %lld: choice %d ('%.40s') adds no token to the prompt", c->o->data,
                             (long long)r->line, j, r->choices[j]);
            int f = rc ? 0 : fit(ids, &nt, &b, c->sc->n_ctx);
            if (!rc && (f < 0 || (f > 0 && c->o->skip_long))) skipped = 1;
            else if (!rc) {
                truncated |= f;
                rc = et_scorer_loglik(c->sc, ids, nt, b, &ll[j], &gr, NULL, e);
                lln[j] = ll[j] / (double)(strlen(r->choices[j]) ? strlen(r->choices[j]) : 1);
                if (j == r->answer) gold_greedy = gr;
            }
            free(ids);
            if (skipped) break;
        }
        if (rc) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e ? e->msg : "");
            et_fail(e, rc, "%s: line %lld: %s", c->o->data, (long long)r->line, msg);
            break;
        }
        if (skipped) {
            c->n_skipped++;
            continue;
        }
        c->n_truncated += truncated;
        int best = 0, best_n = 0;
        for (int j = 1; j < r->n_choices; j++) {
            if (ll[j] > ll[best]) best = j;
            if (lln[j] > lln[best_n]) best_n = j;
        }
        n_acc += best == r->answer;
        n_acc_norm += best_n == r->answer;
        if (conf) conf[(size_t)r->answer * (size_t)K + (size_t)best]++;
        n_done++;
        if (c->samples) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddNumberToObject(s, "line", (double)r->line);
            cJSON_AddStringToObject(s, "prompt", r->prompt);
            cJSON_AddNumberToObject(s, "gold", r->answer);
            cJSON_AddNumberToObject(s, "pred", best);
            cJSON_AddNumberToObject(s, "pred_norm", best_n);
            cJSON_AddBoolToObject(s, "gold_is_greedy", gold_greedy);
            cJSON_AddItemToObject(s, "choices", cJSON_CreateStringArray((const char *const *)r->choices, r->n_choices));
            cJSON_AddItemToObject(s, "loglik", cJSON_CreateDoubleArray(ll, r->n_choices));
            rc = et_task_sample(c, s, e);
        }
        et_task_progress(c, i + 1, n);
    }
    free(ll);
    free(lln);
    if (!rc && n_done == 0)
        rc = et_fail(e, ET_EINPUT, "%s: every record was longer than the context of %d tokens (none scored)", c->o->data,
                     c->sc->n_ctx);
    if (!rc) {
        c->n_scored = n_done;
        /* lm-eval's names for choice (acc, acc_norm); accuracy for classify */
        cJSON_AddNumberToObject(metrics, is_classify ? "accuracy" : "acc", (double)n_acc / (double)n_done);
        cJSON_AddNumberToObject(metrics, is_classify ? "accuracy_norm" : "acc_norm", (double)n_acc_norm / (double)n_done);
        cJSON_AddNumberToObject(metrics, "n_correct", (double)n_acc);
    }
    if (!rc && conf) {
        double f1 = 0;
        cJSON *per = cJSON_CreateObject(), *cm = cJSON_CreateArray();
        for (int k = 0; k < K; k++) {
            long tp = conf[(size_t)k * K + k], fp = 0, fn = 0;
            cJSON *row = cJSON_CreateArray();
            for (int j = 0; j < K; j++) {
                if (j != k) {
                    fn += conf[(size_t)k * K + j];
                    fp += conf[(size_t)j * K + k];
                }
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)conf[(size_t)k * K + j]));
            }
            cJSON_AddItemToArray(cm, row);
            /* F1 = 2TP / (2TP + FP + FN); a class never gold nor predicted scores 0 (sklearn's zero_division=0) */
            double fk = 2 * tp + fp + fn > 0 ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
            f1 += fk;
            cJSON *pc = cJSON_CreateObject();
            cJSON_AddNumberToObject(pc, "f1", fk);
            cJSON_AddNumberToObject(pc, "support", (double)(tp + fn));
            cJSON_AddItemToObject(per, R->class_names[k], pc);
        }
        cJSON_AddNumberToObject(metrics, "macro_f1", f1 / K);
        cJSON_AddItemToObject(metrics, "per_class", per);
        cJSON_AddItemToObject(metrics, "confusion", cm);
    }
    free(conf);
    return rc;
}

/* ------------------------------------------------------------ generate */

typedef struct gen_buf {
    char *s;
    size_t n, cap;
    int oom;
    const et_eval_opts *o;
    int stopped;
    int32_t stop_id;   /* the chat template's end-of-turn token, or -1 */
} gen_buf;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    gen_buf *g = user;
    if (id == g->stop_id) {
        g->stopped = 1;
        return 1;
    }
    if (g->n + len + 1 > g->cap) {
        size_t cap = (g->n + len + 1) * 2;
        char *ns = realloc(g->s, cap);
        if (!ns) {
            g->oom = 1;
            return 1;
        }
        g->s = ns;
        g->cap = cap;
    }
    memcpy(g->s + g->n, text, len);
    g->n += len;
    g->s[g->n] = 0;
    for (int k = 0; k < g->o->n_stop; k++) {
        char *hit = strstr(g->s, g->o->stop[k]);
        if (hit) {
            *hit = 0;
            g->n = (size_t)(hit - g->s);
            g->stopped = 1;
            return 1;
        }
    }
    return 0;
}

static size_t trimmed_len(const char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return n;
}

/* s with every byte that is not part of valid UTF-8 replaced by U+FFFD, so
 * that the samples file stays valid JSON text (a model may emit a lone
 * byte-fallback token); malloc'd, NULL on out of memory. */
static char *utf8_clean(const char *s) {
    size_t n = strlen(s), o = 0, bad;
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    while (n) {
        size_t good = et_utf8_valid(s, n, &bad) ? n : bad;
        memcpy(out + o, s, good);
        o += good;
        s += good;
        n -= good;
        if (n) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            s++;
            n--;
        }
    }
    out[o] = 0;
    return out;
}

/* 1 when both parse as JSON and are equal (cJSON_Compare, case-sensitive). */
static int same_json(const char *a, const char *b) {
    cJSON *x = cJSON_Parse(a), *y = cJSON_Parse(b);
    int r = x && y && cJSON_Compare(x, y, 1);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return r;
}

/* The gold answer as generation would give it: without the chat template's
 * end-of-turn marker (the trained segment ends with it), trailing
 * whitespace trimmed.  Length of gold to compare. */
static size_t gold_len(const char *gold, const char *eot) {
    size_t n = trimmed_len(gold);
    size_t k = eot ? strlen(eot) : 0;
    if (k && n >= k && !memcmp(gold + n - k, eot, k)) {
        n -= k;
        while (n && isspace((unsigned char)gold[n - 1])) n--;
    }
    return n;
}

int et_task_generate(et_task_ctx *c, cJSON *metrics, et_err *e) {
    const et_recs *R = c->recs;
    const et_tokenizer *tok = c->m->tok;
    /* with a chat template the trained answer ends with its end-of-turn marker
     * (its last token, whose probability is the "stop" probability), no EOS */
    const char *eot = c->chat > 0 ? et_chat_eot(c->chat) : NULL;
    int32_t eot_id = eot ? et_tok_find(tok, eot, strlen(eot)) : -1;
    int eos = c->chat > 0 ? -1 : et_tok_eos(tok), n_vocab = c->sc->n_vocab, rc = 0;
    int has_stop = c->chat > 0 ? eot_id >= 0 || et_tok_eos(tok) >= 0 : eos >= 0;
    long n_exact = 0, n_json = 0, n_done = 0, n_loss_tok = 0, n_eos = 0, n_gen = 0;
    double nll = 0, p_eos_sum = 0;
    et_sampler smp;
    et_sampler_params sp = et_sampler_default_params();
    sp.temp = 0.0f;
    if ((rc = et_sampler_init(&smp, &sp, n_vocab, e))) return rc;
    int n_predict = c->o->n_predict > 0 ? c->o->n_predict : 128;
    double *lp = NULL;
    int lp_cap = 0;
    for (long i = 0; i < R->n && !rc; i++) {
        const et_rec *r = &R->r[i];
        /* loss of the completion (and EOS) given the prompt */
        int32_t *ids = NULL;
        int nt = 0, b = 0, gr = 0;
        rc = encode_pair(tok, c->tok_flags, r->prompt, r->gold, eos, &ids, &nt, &b, e);
        int f = rc ? 0 : fit(ids, &nt, &b, c->sc->n_ctx - 1);
        if (!rc && (f < 0 || (f > 0 && c->o->skip_long))) {
            c->n_skipped++;
            free(ids);
            continue;
        }
        c->n_truncated += f > 0;
        double sum = 0;
        if (!rc && nt - b > lp_cap) {
            lp_cap = nt - b;
            double *x = realloc(lp, sizeof(double) * (size_t)lp_cap);
            if (!x) rc = et_fail(e, ET_ERUN, "out of memory");
            else lp = x;
        }
        if (!rc && b < nt) rc = et_scorer_loglik(c->sc, ids, nt, b, &sum, &gr, lp, e);
        if (!rc && b < nt) {
            nll -= sum;
            n_loss_tok += nt - b;
            if (has_stop) { /* EOS, or the end-of-turn token that closes the gold answer */
                p_eos_sum += exp(lp[nt - b - 1]);
                n_eos++;
            }
        }
        /* greedy generation from the prompt: its tokens are ids[0..b) */
        gen_buf g = {.o = c->o, .stop_id = eot_id};
        int n_out = 0;
        if (!rc) {
            int np = b;
            int room = c->sc->n_ctx - np;
            int npred = n_predict < room ? n_predict : room;
            const float *unused;
            /* reuse the cached prompt: keep it, then let et_generate run from there */
            rc = et_scorer_run(c->sc, ids, np - 1, np - 1, &unused, e);
            if (!rc) {
                rc = et_generate(c->sc->st, &smp, ids + np - 1, 1, npred, 1, on_token, &g, NULL, &n_out, NULL, e);
                c->sc->n_cache = 0; /* the cache now holds generated tokens */
                c->sc->n_tokens += n_out + 1;
            }
            if (!rc && g.oom) rc = et_fail(e, ET_ERUN, "out of memory");
        }
        free(ids);
        if (rc) {
            free(g.s);
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e ? e->msg : "");
            et_fail(e, rc, "%s: line %lld: %s", c->o->data, (long long)r->line, msg);
            break;
        }
        const char *pred = g.s ? g.s : "";
        size_t lg = gold_len(r->gold, eot), lpd = trimmed_len(pred);
        int exact = lg == lpd && !memcmp(r->gold, pred, lg);
        char *gold_cut = strndup(r->gold, lg);
        int js = gold_cut && same_json(gold_cut, pred);
        free(gold_cut);
        n_exact += exact;
        n_json += js;
        n_gen += n_out;
        n_done++;
        if (c->samples) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddNumberToObject(s, "line", (double)r->line);
            cJSON_AddStringToObject(s, "prompt", r->prompt);
            cJSON_AddStringToObject(s, "gold", r->gold);
            char *clean = utf8_clean(pred);
            cJSON_AddStringToObject(s, "pred", clean ? clean : "");
            free(clean);
            cJSON_AddBoolToObject(s, "exact", exact);
            cJSON_AddBoolToObject(s, "same_json", js);
            cJSON_AddNumberToObject(s, "loss", -sum);
            rc = et_task_sample(c, s, e);
        }
        free(g.s);
        et_task_progress(c, i + 1, R->n);
    }
    free(lp);
    et_sampler_free(&smp);
    if (!rc && n_done == 0)
        rc = et_fail(e, ET_EINPUT, "%s: every record was longer than the context of %d tokens", c->o->data, c->sc->n_ctx);
    if (!rc) {
        c->n_scored = n_done;
        cJSON_AddNumberToObject(metrics, "exact_match", (double)n_exact / (double)n_done);
        cJSON_AddNumberToObject(metrics, "same_json", (double)n_json / (double)n_done);
        cJSON_AddNumberToObject(metrics, "nll_per_token", n_loss_tok ? nll / (double)n_loss_tok : 0.0);
        cJSON_AddNumberToObject(metrics, "loss_tokens", (double)n_loss_tok);
        cJSON_AddNumberToObject(metrics, "generated_tokens", (double)n_gen);
        if (n_eos) {
            double pe = p_eos_sum / (double)n_eos;
            cJSON_AddNumberToObject(metrics, "eos_prob_mean", pe);
            if (pe < 0.01)
                et_task_warn(c, "the model gives the end-of-sequence token a mean probability of %.4f after the gold "
                             "completions: it has not learned to stop (generation runs to --n-predict)", pe);
        }
    }
    return rc;
}
