/* engine/generate.c — the generation loop and streaming detokenization. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ streaming text */

#define WIN ((int)(sizeof(((et_detok *)0)->win) / sizeof(int32_t)))

void et_detok_init(et_detok *d, const et_tokenizer *tok, const int32_t *prompt, int n_prompt) {
    memset(d, 0, sizeof *d);
    d->tok = tok;
    int bos = tok ? et_tok_bos(tok) : -1;
    for (int i = 0; i < n_prompt; i++) {
        if (prompt[i] == bos) continue;
        if (d->n_win == WIN) {
            memmove(d->win, d->win + 1, sizeof(int32_t) * (WIN - 1));
            d->n_win--;
        }
        d->win[d->n_win++] = prompt[i];
        d->started = 1;
    }
}

/* Length of the longest prefix of s[0..n) that ends on a complete UTF-8
 * character (a trailing incomplete sequence is held back). */
static size_t utf8_complete(const char *s, size_t n) {
    size_t i = n, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) { i--; back++; }
    if (i == 0) return n;
    unsigned char c = (unsigned char)s[i - 1];
    if (c == 0xC0 || c == 0xC1 || c >= 0xF5) return n;   /* can never start a character: nothing to wait for */
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return back + 1 >= need ? n : i - 1;
}

int et_detok_push(et_detok *d, int32_t id, char **text, size_t *len, et_err *e) {
    *text = NULL;
    *len = 0;
    char *prev = NULL, *cur = NULL;
    size_t lp = 0, lc = 0;
    int32_t ids[sizeof d->win / sizeof(int32_t) + 1];
    memcpy(ids, d->win, sizeof(int32_t) * (size_t)d->n_win);
    ids[d->n_win] = id;
    int rc = 0;
    if (d->tok) {
        /* decode(window + id) minus decode(window); with an empty window the
         * first piece of a generation keeps no SPM leading space, as llama.cpp
         * prints it. */
        if (d->n_win && (rc = et_tok_decode(d->tok, ids, (size_t)d->n_win, 0, &prev, &lp, e))) return rc;
        if ((rc = et_tok_decode(d->tok, ids, (size_t)d->n_win + 1, 0, &cur, &lc, e))) {
            free(prev);
            return rc;
        }
    }
    /* the window's text is normally a prefix of the longer decode; if a
     * tokenizer ever rewrites it, the extra length is still what is new */
    const char *add = cur && lc > lp ? cur + lp : "";
    size_t nadd = cur && lc > lp ? lc - lp : 0;
    size_t total = (size_t)d->n_pend + nadd;
    char *buf = malloc(total + 1);
    if (!buf) {
        free(prev);
        free(cur);
        return et_fail(e, ET_ERUN, "engine: out of memory");
    }
    memcpy(buf, d->pend, (size_t)d->n_pend);
    memcpy(buf + d->n_pend, add, nadd);
    size_t ok = utf8_complete(buf, total);
    size_t keep = total - ok;
    if (keep > sizeof d->pend) { ok = total; keep = 0; }   /* invalid UTF-8: pass it through */
    memcpy(d->pend, buf + ok, keep);
    d->n_pend = (int)keep;
    buf[ok] = 0;
    *text = buf;
    *len = ok;
    free(prev);
    free(cur);
    if (d->n_win == WIN) {
        memmove(d->win, d->win + 1, sizeof(int32_t) * (WIN - 1));
        d->n_win--;
    }
    d->win[d->n_win++] = id;
    d->started = 1;
    return 0;
}

int et_detok_flush(et_detok *d, char **text, size_t *len, et_err *e) {
    *text = NULL;
    *len = 0;
    char *buf = malloc((size_t)d->n_pend + 1);
    if (!buf) return et_fail(e, ET_ERUN, "engine: out of memory");
    memcpy(buf, d->pend, (size_t)d->n_pend);
    buf[d->n_pend] = 0;
    *text = buf;
    *len = (size_t)d->n_pend;
    d->n_pend = 0;
    return 0;
}

/* ------------------------------------------------------------ generation */

int et_generate(et_state *s, et_sampler *smp, const int32_t *prompt, int n_prompt, int n_predict, int stop_at_eos,
                et_token_cb cb, void *user, int32_t *out_ids, int *n_out, et_gen_stats *stats, et_err *e) {
    const et_engine *m = s->m;
    int n_vocab = m->hp.n_vocab, rc = 0, n_gen = 0;
    int eos = m->tok ? et_tok_eos(m->tok) : -1;
    if (n_out) *n_out = 0;
    if (stats) memset(stats, 0, sizeof *stats);
    if (n_prompt < 1 && s->n_past == 0) return et_fail(e, ET_EUSAGE, "generate: empty prompt and empty cache");
    float *logits = malloc(sizeof(float) * (size_t)n_vocab);
    if (!logits) return et_fail(e, ET_ERUN, "generate: out of memory");
    et_detok dt;
    et_detok_init(&dt, m->tok, prompt, n_prompt);
    double t0 = now_s();
    if (n_prompt > 0 && (rc = et_forward(s, prompt, n_prompt, logits, 0, e))) goto done;
    if (n_prompt == 0) {
        rc = et_fail(e, ET_EUSAGE, "generate: give at least one prompt token");
        goto done;
    }
    double t1 = now_s();
    if (stats) {
        stats->n_prompt = n_prompt;
        stats->t_prompt_s = t1 - t0;
    }
    for (; n_gen < n_predict; ) {
        int32_t id = et_sample(smp, logits);
        if (out_ids) out_ids[n_gen] = id;
        n_gen++;
        int stop = stop_at_eos && id == eos;
        /* the last token of the generation gets the bytes still held back
         * (an incomplete UTF-8 sequence is printed as it is, as llama.cpp does) */
        int last = stop || n_gen == n_predict || s->n_past >= s->n_ctx;
        if (cb) {
            char *text = NULL;
            size_t len = 0;
            if (!stop && m->tok && (rc = et_detok_push(&dt, id, &text, &len, e))) goto done;
            if (last && dt.n_pend > 0) {
                char *tail = NULL;
                size_t tl = 0;
                if ((rc = et_detok_flush(&dt, &tail, &tl, e))) {
                    free(text);
                    goto done;
                }
                char *both = malloc(len + tl + 1);
                if (!both) {
                    free(text);
                    free(tail);
                    rc = et_fail(e, ET_ERUN, "generate: out of memory");
                    goto done;
                }
                if (len) memcpy(both, text, len);
                memcpy(both + len, tail, tl + 1);
                free(text);
                free(tail);
                text = both;
                len += tl;
            }
            int r = cb(user, id, text ? text : "", len);
            free(text);
            if (r) break;
        }
        if (stop || n_gen == n_predict) break;
        if (s->n_past >= s->n_ctx) break;   /* context full */
        if ((rc = et_forward(s, &id, 1, logits, 0, e))) goto done;
    }
    if (stats) {
        stats->n_gen = n_gen;
        stats->t_gen_s = now_s() - t1;
    }
done:
    if (n_out) *n_out = n_gen;
    free(logits);
    return rc;
}
