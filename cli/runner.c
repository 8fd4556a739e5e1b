/* cli/runner.c — see runner.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../datasets/chat_template.h"
#include "runner.h"

void et_runner_defaults(et_runner_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->sp = et_sampler_default_params();
    o->n_threads = 1;
    o->kv_type = GGML_TYPE_F16;
    o->prog = "edgetune";
}

int et_runner_kv_type(const char *s, uint32_t *type, et_err *e) {
    if (!strcasecmp(s, "f16")) *type = GGML_TYPE_F16;
    else if (!strcasecmp(s, "f32")) *type = GGML_TYPE_F32;
    else return et_fail(e, ET_EUSAGE, "KV cache type '%s': use F16 or F32", s);
    return 0;
}

int et_runner_split_scale(char *item, float *scale, et_err *e) {
    *scale = 1.0f;
    char *colon = strrchr(item, ':');
    if (!colon || !colon[1]) return 0;
    char *stop;
    errno = 0;
    double v = strtod(colon + 1, &stop);
    if (stop == colon + 1 || *stop) return 0;   /* not a number: part of the path */
    if (errno == ERANGE || !isfinite(v) || fabs(v) > 3.4e38)
        return et_fail(e, ET_EUSAGE, "'%s': the adapter scale '%s' is not a finite number", item, colon + 1);
    *scale = (float)v;
    *colon = 0;
    return 0;
}

int et_runner_add_lora(et_runner_opts *o, const char *spec, et_err *e) {
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (o->n_lora == ET_RUNNER_MAX_LORA) return et_fail(e, ET_EUSAGE, "at most %d adapters", ET_RUNNER_MAX_LORA);
        char *item = malloc(len + 1);
        if (!item) return et_fail(e, ET_ERUN, "out of memory");
        memcpy(item, p, len);
        item[len] = 0;
        float scale = 1.0f;
        int rc = et_runner_split_scale(item, &scale, e);
        if (rc) {
            free(item);
            return rc;
        }
        if (!item[0]) {
            free(item);
            return et_fail(e, ET_EUSAGE, "--lora '%s': expected FILE[:SCALE]", spec);
        }
        o->lora[o->n_lora] = item;   /* owned by the options until et_runner_close */
        o->lora_scale[o->n_lora++] = scale;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

int et_runner_open(et_runner *r, const et_runner_opts *o, et_engine *engine, et_err *e) {
    memset(r, 0, sizeof *r);
    r->o = *o;
    int rc;
    if (engine) {
        r->m = engine;
    } else {
        if (!o->model) {
            rc = et_fail(e, ET_EUSAGE, "no model given");
            goto fail;
        }
        if ((rc = et_engine_load(&r->m, o->model, e))) goto fail;
        r->own_engine = 1;
    }
    for (int i = 0; i < o->n_lora; i++) {
        if ((rc = et_adapter_load(&r->ad[i], o->lora[i], r->m, e))) goto fail;
        r->n_ad++;
        if ((rc = et_engine_attach(r->m, r->ad[i], o->lora_scale[i], e))) goto fail;
    }
    et_state_opts so = et_state_default_opts();
    so.n_ctx = o->n_ctx;
    so.n_threads = o->n_threads;
    so.n_batch = o->n_batch;
    so.kv_type = o->kv_type;
    so.isa = o->isa;
    if ((rc = et_state_new(&r->s, r->m, &so, e))) goto fail;
    return 0;
fail:
    et_runner_close(r);
    return rc;
}

void et_runner_close(et_runner *r) {
    et_state_free(r->s);
    if (r->m) et_engine_detach_all(r->m);
    for (int i = 0; i < r->n_ad; i++) et_adapter_free(r->ad[i]);
    if (r->own_engine) et_engine_free(r->m);
    for (int i = 0; i < r->o.n_lora; i++) free((char *)r->o.lora[i]);
    memset(r, 0, sizeof *r);
}

typedef struct stream_ctx { FILE *out; } stream_ctx;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    (void)id;
    stream_ctx *c = user;
    if (len) {
        fwrite(text, 1, len, c->out);
        fflush(c->out);
    }
    return 0;
}

int et_runner_generate(et_runner *r, FILE *out, et_err *e) {
    const et_engine *m = r->m;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc;
    if (r->o.prompt && r->o.prompt[0]) {
        if (!m->tok) return et_fail(e, ET_EINPUT, "%s: the model has no tokenizer to encode the prompt", m->path);
        if ((rc = et_tok_encode(m->tok, r->o.prompt, strlen(r->o.prompt), ET_TOK_DEFAULT_BOS, &ids, &n, e)))
            return rc;
    }
    if (n == 0) {
        int bos = m->tok ? et_tok_bos(m->tok) : 1;
        free(ids);
        ids = malloc(sizeof(int32_t));
        if (!ids) return et_fail(e, ET_ERUN, "out of memory");
        ids[0] = bos >= 0 ? bos : 0;
        n = 1;
    }
    if ((int)n >= et_state_n_ctx(r->s)) {
        free(ids);
        return et_fail(e, ET_EUSAGE, "the prompt has %zu tokens; the context holds %d", n, et_state_n_ctx(r->s));
    }
    /* echo the prompt as text, then stream the continuation */
    if (m->tok && r->o.prompt && r->o.prompt[0]) {
        fputs(r->o.prompt, out);
        fflush(out);
    }
    et_sampler smp;
    if ((rc = et_sampler_init(&smp, &r->o.sp, m->hp.n_vocab, e))) {
        free(ids);
        return rc;
    }
    stream_ctx sc = {out};
    int n_out = 0;
    et_gen_stats st;
    et_state_reset(r->s);
    rc = et_generate(r->s, &smp, ids, (int)n, r->o.n_predict, !r->o.ignore_eos, on_token, &sc, NULL, &n_out, &st, e);
    fputc('\n', out);
    fflush(out);
    if (!rc && r->o.stats) {
        fprintf(stderr, "%s: %s, SIMD %s, %d thread%s, KV %s\n", r->o.prog, m->path, et_state_isa(r->s),
                r->o.n_threads, r->o.n_threads == 1 ? "" : "s", r->o.kv_type == GGML_TYPE_F16 ? "F16" : "F32");
        fprintf(stderr, "%s: prompt %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s (%.1f tokens/s)\n",
                r->o.prog, st.n_prompt, st.t_prompt_s, st.t_prompt_s > 0 ? st.n_prompt / st.t_prompt_s : 0, st.n_gen,
                st.t_gen_s, st.t_gen_s > 0 && st.n_gen > 1 ? (st.n_gen - 1) / st.t_gen_s : 0);
    }
    et_sampler_free(&smp);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------------ chat */

typedef struct chat_ctx {
    FILE *out;
    int32_t eot;        /* the template's end-of-turn token, or -1 */
    char *reply;        /* the streamed text */
    size_t len, cap;
    int oom;
} chat_ctx;

static int on_chat_token(void *user, int32_t id, const char *text, size_t len) {
    chat_ctx *c = user;
    if (id == c->eot) return 1;
    if (!len) return 0;
    fwrite(text, 1, len, c->out);
    fflush(c->out);
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + len + 1) cap *= 2;
        char *q = realloc(c->reply, cap);
        if (!q) {
            c->oom = 1;
            return 1;
        }
        c->reply = q;
        c->cap = cap;
    }
    memcpy(c->reply + c->len, text, len);
    c->len += len;
    c->reply[c->len] = 0;
    return 0;
}

/* The template to use: the option's name, else the model's. */
static int chat_template_of(const et_runner *r, int *t, et_err *e) {
    const et_engine *m = r->m;
    if (r->o.chat_template) {
        *t = et_chat_from_name(r->o.chat_template);
        if (*t <= ET_CHAT_NONE)
            return et_fail(e, ET_EUSAGE, "--chat-template: unknown template '%s' (%s)", r->o.chat_template,
                           et_chat_names());
        return 0;
    }
    const char *family = NULL;
    *t = et_chat_detect(m->tok ? et_tok_chat_template(m->tok) : NULL, &family);
    if (*t == ET_CHAT_NONE)
        return et_fail(e, ET_EINPUT, "%s: the model has no chat template (tokenizer.chat_template); pass --chat-template NAME (%s)",
                       m->path, et_chat_names());
    if (*t == ET_CHAT_UNKNOWN) return et_chat_unknown_error(m->path, family, e);
    return 0;
}

typedef struct chat_hist {
    et_chat_msg *msg;   /* role static, content owned */
    int n, cap;
} chat_hist;

static int hist_push(chat_hist *h, const char *role, const char *content, size_t len) {
    if (h->n == h->cap) {
        int c = h->cap ? 2 * h->cap : 16;
        et_chat_msg *q = realloc(h->msg, (size_t)c * sizeof *q);
        if (!q) return -1;
        h->msg = q;
        h->cap = c;
    }
    char *s = malloc(len + 1);
    if (!s) return -1;
    if (len) memcpy(s, content, len);
    s[len] = 0;
    h->msg[h->n].role = role;
    h->msg[h->n].content = s;
    h->n++;
    return 0;
}

int et_runner_chat(et_runner *r, FILE *in, FILE *out, et_err *e) {
    const et_engine *m = r->m;
    if (!m->tok) return et_fail(e, ET_EINPUT, "%s: the model has no tokenizer", m->path);
    int tmpl, rc = chat_template_of(r, &tmpl, e);
    if (rc) return rc;
    const int flags = ET_TOK_DEFAULT_BOS | ET_TOK_PARSE_SPECIAL;
    chat_ctx cc = {out, -1, NULL, 0, 0, 0};
    const char *eot = et_chat_eot(tmpl);
    if (eot) { /* stop at the end-of-turn marker when it is one token of this vocabulary */
        int32_t *ids = NULL;
        size_t n = 0;
        if (!et_tok_encode(m->tok, eot, strlen(eot), ET_TOK_PARSE_SPECIAL, &ids, &n, NULL) && n == 1) cc.eot = ids[0];
        free(ids);
    }
    et_sampler smp;
    if ((rc = et_sampler_init(&smp, &r->o.sp, m->hp.n_vocab, e))) return rc;
    chat_hist h = {0};
    int32_t *hist = NULL, *gen = malloc(sizeof(int32_t) * (size_t)(r->o.n_predict + 1));
    size_t n_hist = 0;
    char *line = NULL;
    size_t line_cap = 0;
    if (!gen || (r->o.system && hist_push(&h, "system", r->o.system, strlen(r->o.system))))
        rc = et_fail(e, ET_ERUN, "out of memory");
    et_state_reset(r->s);
    for (int turn = 1; !rc; turn++) {
        ssize_t got = getline(&line, &line_cap, in);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) {
            turn--;
            continue;
        }
        if (hist_push(&h, "user", line, (size_t)got)) {
            rc = et_fail(e, ET_ERUN, "out of memory");
            break;
        }
        et_chat_out co;
        if ((rc = et_chat_render(tmpl, h.msg, h.n, 1, &co, e))) break;
        int32_t *ids = NULL;
        size_t n = 0;
        rc = et_tok_encode(m->tok, co.text, co.len, flags, &ids, &n, e);
        /* reuse the cached prefix; feed at least one token */
        size_t k = 0, n_past = (size_t)et_state_n_past(r->s);
        while (!rc && k < n_hist && k < n_past && k < n && hist[k] == ids[k]) k++;
        if (!rc && k == n) k = n ? n - 1 : 0;
        if (!rc && n >= (size_t)et_state_n_ctx(r->s))
            rc = et_fail(e, ET_EINPUT, "the conversation has %zu tokens; the context holds %d (--ctx)", n,
                         et_state_n_ctx(r->s));
        if (!rc && r->o.verbose_prompt)
            fprintf(stderr, "%s: turn %d: %zu prompt tokens, %zu cached, %zu new\n%s\n", r->o.prog, turn, n, k, n - k,
                    co.text);
        et_chat_out_free(&co);
        if (!rc) rc = et_state_truncate(r->s, (int)k, e);
        int n_out = 0;
        cc.len = 0;
        if (cc.reply) cc.reply[0] = 0;
        if (!rc)
            rc = et_generate(r->s, &smp, ids + k, (int)(n - k), r->o.n_predict, !r->o.ignore_eos, on_chat_token, &cc,
                             gen, &n_out, NULL, e);
        if (!rc && cc.oom) rc = et_fail(e, ET_ERUN, "out of memory");
        fputc('\n', out);
        fflush(out);
        if (!rc) { /* what the cache now holds: the prompt and the generated tokens that were fed */
            size_t keep = (size_t)et_state_n_past(r->s);
            int32_t *q = realloc(hist, sizeof(int32_t) * (n + (size_t)n_out + 1));
            if (!q) rc = et_fail(e, ET_ERUN, "out of memory");
            else {
                hist = q;
                memcpy(hist, ids, n * sizeof *ids);
                memcpy(hist + n, gen, (size_t)n_out * sizeof *gen);
                n_hist = keep < n + (size_t)n_out ? keep : n + (size_t)n_out;
            }
        }
        free(ids);
        if (!rc && hist_push(&h, "assistant", cc.reply ? cc.reply : "", cc.len)) rc = et_fail(e, ET_ERUN, "out of memory");
    }
    for (int i = 0; i < h.n; i++) free((char *)h.msg[i].content);
    free(h.msg);
    free(hist);
    free(gen);
    free(line);
    free(cc.reply);
    et_sampler_free(&smp);
    return rc;
}

int et_runner_perplexity(et_runner *r, const int32_t *tokens, size_t n, et_ppl *acc, et_err *e) {
    et_ppl p;
    int rc = et_perplexity(r->s, tokens, n, 0, &p, e);
    if (rc) return rc;
    acc->nll += p.nll;
    acc->n_scored += p.n_scored;
    acc->ppl = acc->n_scored ? exp(acc->nll / (double)acc->n_scored) : 0;
    return 0;
}

int et_runner_perplexity_text(et_runner *r, const char *text, size_t len, const char *file, et_ppl *acc, et_err *e) {
    if (!r->m->tok) return et_fail(e, ET_EINPUT, "%s: the model has no tokenizer", r->m->path);
    int32_t *ids;
    size_t n;
    int rc = et_tok_encode(r->m->tok, text, len, ET_TOK_DEFAULT_BOS, &ids, &n, e);
    if (rc) {   /* the tokenizer says "text: ..."; name the file */
        char msg[sizeof e->msg];
        const char *m = strncmp(e->msg, "text: ", 6) ? e->msg : e->msg + 6;
        size_t lf = strnlen(file, 512), lm = strnlen(m, sizeof msg - lf - 3);
        memcpy(msg, file, lf);
        memcpy(msg + lf, ": ", 2);
        memcpy(msg + lf + 2, m, lm);
        msg[lf + 2 + lm] = 0;
        memcpy(e->msg, msg, lf + 3 + lm);
        return rc;
    }
    rc = et_runner_perplexity(r, ids, n, acc, e);
    free(ids);
    return rc;
}

int et_runner_check_scored(const et_ppl *acc, const char *file, et_err *e) {
    if (acc->n_scored > 0) return 0;
    return et_fail(e, ET_EINPUT, "%s: nothing to score (no document of 2 or more tokens)", file);
}

void et_runner_print_ppl(FILE *f, const et_ppl *p) {
    fprintf(f, "perplexity %.6f (NLL %.6f nats over %ld tokens, %.6f nats/token)\n", p->ppl, p->nll, p->n_scored,
            p->n_scored ? p->nll / (double)p->n_scored : 0.0);
}
