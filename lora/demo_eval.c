/* lora/demo_eval.c — greedy exact-match accuracy and completion loss through
 * the engine.  See demo_eval.h. */
#include "demo_eval.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo_task.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ records */

void demo_records_free(demo_records *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        free(r->r[i].prompt);
        free(r->r[i].completion);
    }
    free(r->r);
    memset(r, 0, sizeof *r);
}

static const char *field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One parsed line into *rec; 0 or ET_EINPUT/ET_ERUN. */
static int parse_record(const char *line, size_t len, const char *path, long lineno, demo_record *rec, et_err *e) {
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return et_fail(e, ET_EINPUT, "%s: line %ld: not a JSON object", path, lineno);
    }
    const char *p = field(o, "prompt"), *c = field(o, "completion");
    const char *ins = field(o, "instruction"), *inp = field(o, "input"), *out = field(o, "output");
    char buf[2048];
    int rc = 0;
    if (p && c) {
        rec->prompt = strdup(p);
        rec->completion = strdup(c);
    } else if (ins && out) {
        if (inp && *inp)
            rc = et_fail(e, ET_EINPUT, "%s: line %ld: records with a non-empty \"input\" are not supported", path,
                         lineno);
        else if (!demo_task_prompt(DEMO_STYLE_ALPACA, ins, buf, sizeof buf))
            rc = et_fail(e, ET_EINPUT, "%s: line %ld: instruction too long", path, lineno);
        else {
            rec->prompt = strdup(buf);
            rec->completion = strdup(out);
        }
    } else {
        rc = et_fail(e, ET_EINPUT, "%s: line %ld: needs string fields \"prompt\" and \"completion\" "
                     "(or \"instruction\" and \"output\")", path, lineno);
    }
    cJSON_Delete(o);
    if (!rc && (!rec->prompt || !rec->completion)) rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
    return rc;
}

int demo_records_read(demo_records *out, const char *path, et_err *e) {
    memset(out, 0, sizeof *out);
    et_map mp;
    int rc = et_map_open(&mp, path, e);
    if (rc) return rc;
    const char *d = (const char *)mp.data;
    size_t size = mp.size, pos = 0;
    int cap = 0;
    long lineno = 0;
    while (pos < size && !rc) {
        const char *nl = memchr(d + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (d + pos)) : size - pos;
        lineno++;
        size_t k = 0;
        while (k < len && (d[pos + k] == ' ' || d[pos + k] == '\t' || d[pos + k] == '\r')) k++;
        if (k < len) {
            if (out->n == cap) {
                if (cap >= (1 << 26)) {
                    rc = et_fail(e, ET_EINPUT, "%s: too many records", path);
                    break;
                }
                int nc = cap ? 2 * cap : 256;
                demo_record *nr = realloc(out->r, (size_t)nc * sizeof *nr);
                if (!nr) {
                    rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
                    break;
                }
                out->r = nr;
                cap = nc;
            }
            demo_record *rec = &out->r[out->n];
            memset(rec, 0, sizeof *rec);
            out->n++;
            rc = parse_record(d + pos, len, path, lineno, rec, e);
        }
        pos += len + (nl ? 1 : 0);
    }
    et_map_close(&mp);
    if (!rc && out->n == 0) rc = et_fail(e, ET_EINPUT, "%s: no records", path);
    if (rc) demo_records_free(out);
    return rc;
}

/* ------------------------------------------------------------ evaluation */

demo_eval_opts demo_eval_defaults(void) {
    demo_eval_opts o = {.n_predict = 64, .n_threads = 1, .kv_type = GGML_TYPE_F32, .n_ctx = 0, .max_records = 0,
                        .do_generate = 1, .do_loss = 1};
    return o;
}

void demo_eval_result_free(demo_eval_result *res) {
    if (!res) return;
    if (res->answers)
        for (int i = 0; i < res->n; i++) free(res->answers[i]);
    free(res->answers);
    memset(res, 0, sizeof *res);
}

/* The generated text so far; generation stops at the first newline. */
typedef struct gen_text {
    char *s;
    size_t n, cap;
    int oom;
} gen_text;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    (void)id;
    gen_text *g = user;
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
    return memchr(text, '\n', len) != NULL;
}

/* Greedy answer to one prompt into *answer (text before the first newline). */
static int generate_one(et_state *st, et_sampler *smp, const et_tokenizer *tok, const demo_record *rec,
                        int n_predict, char **answer, long *n_gen, et_err *e) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = et_tok_encode(tok, rec->prompt, strlen(rec->prompt), ET_TOK_DEFAULT_BOS, &ids, &n_ids, e);
    if (rc) return rc;
    if ((int)n_ids >= et_state_n_ctx(st)) {
        free(ids);
        return et_fail(e, ET_EINPUT, "the prompt is %zu tokens, not less than the context of %d", n_ids, et_state_n_ctx(st));
    }
    et_state_reset(st);
    gen_text g = {0};
    int n_out = 0;
    rc = et_generate(st, smp, ids, (int)n_ids, n_predict, 1, on_token, &g, NULL, &n_out, NULL, e);
    free(ids);
    if (!rc && g.oom) rc = et_fail(e, ET_ERUN, "generate: out of memory");
    if (rc) {
        free(g.s);
        return rc;
    }
    *n_gen += n_out;
    if (!g.s && !(g.s = calloc(1, 1))) return et_fail(e, ET_ERUN, "generate: out of memory");
    char *nl = strchr(g.s, '\n');
    if (nl) *nl = 0;
    *answer = g.s;
    return 0;
}

/* Logits of n positions, grown on demand. */
typedef struct logit_buf {
    float *v;
    size_t cap;   /* floats */
} logit_buf;

static int logit_reserve(logit_buf *b, size_t n, et_err *e) {
    if (n <= b->cap) return 0;
    float *v = realloc(b->v, n * sizeof *v);
    if (!v) return et_fail(e, ET_ERUN, "loss: out of memory for %zu logits", n);
    b->v = v;
    b->cap = n;
    return 0;
}

/* Sum of -ln p(target) over the completion tokens (and EOS) of one record. */
static int loss_one(et_state *st, const et_tokenizer *tok, const demo_record *rec, logit_buf *lb, int n_vocab,
                    double *nll, long *n_scored, et_err *e) {
    size_t lp = strlen(rec->prompt), lc = strlen(rec->completion);
    char *full = malloc(lp + lc + 1);
    if (!full) return et_fail(e, ET_ERUN, "loss: out of memory");
    memcpy(full, rec->prompt, lp);
    memcpy(full + lp, rec->completion, lc + 1);
    int32_t *ids = NULL, *pids = NULL;
    size_t n = 0, np = 0;
    int rc = et_tok_encode(tok, full, lp + lc, ET_TOK_DEFAULT_BOS, &ids, &n, e);
    if (!rc) rc = et_tok_encode(tok, rec->prompt, lp, ET_TOK_DEFAULT_BOS, &pids, &np, e);
    free(full);
    int eos = et_tok_eos(tok);
    if (!rc && eos >= 0) {
        int32_t *x = realloc(ids, (n + 1) * sizeof *x);
        if (!x) rc = et_fail(e, ET_ERUN, "loss: out of memory");
        else {
            ids = x;
            ids[n++] = eos;
        }
    }
    size_t b = 0; /* the prompt's tokens: longest common prefix (datasets/ingest.h) */
    while (!rc && b < np && b < n && pids[b] == ids[b]) b++;
    if (!rc && (int)n > et_state_n_ctx(st))
        rc = et_fail(e, ET_EINPUT, "prompt + answer are %zu tokens, more than the context of %d", n, et_state_n_ctx(st));
    if (!rc && b < 1) b = 1; /* the first token has no prefix to be predicted from */
    if (!rc && b < n) rc = logit_reserve(lb, (n - b) * (size_t)n_vocab, e);
    if (!rc && b < n) {
        float *logits = lb->v;
        et_state_reset(st);
        /* logits of positions b-1 .. n-2 predict tokens b .. n-1 */
        if (b > 1) rc = et_forward(st, ids, (int)(b - 1), NULL, 0, e);
        if (!rc) rc = et_forward(st, ids + b - 1, (int)(n - b), logits, 1, e);
        for (size_t j = b; !rc && j < n; j++) {
            const float *l = logits + (j - b) * (size_t)n_vocab;
            double mx = l[0], s = 0.0;
            for (int v = 1; v < n_vocab; v++)
                if (l[v] > mx) mx = l[v];
            for (int v = 0; v < n_vocab; v++) s += exp((double)l[v] - mx);
            *nll += mx + log(s) - (double)l[ids[j]];
            (*n_scored)++;
        }
    }
    free(ids);
    free(pids);
    return rc;
}

int demo_eval_run(et_engine *m, const demo_records *r, const demo_eval_opts *o, demo_eval_result *res, et_err *e) {
    memset(res, 0, sizeof *res);
    if (!m->tok) return et_fail(e, ET_EINPUT, "%s: the model has no tokenizer", m->path ? m->path : "model");
    int n = o->max_records > 0 && o->max_records < r->n ? o->max_records : r->n;
    et_state_opts so = et_state_default_opts();
    so.n_threads = o->n_threads > 0 ? o->n_threads : 1;
    so.kv_type = o->kv_type;
    so.n_ctx = o->n_ctx > 0 ? o->n_ctx : m->hp.n_ctx > 0 && m->hp.n_ctx < 1024 ? m->hp.n_ctx : 1024;
    et_state *st = NULL;
    int rc = et_state_new(&st, m, &so, e);
    if (rc) return rc;
    int n_vocab = m->hp.n_vocab;
    logit_buf lb = {0};
    et_sampler smp = {0};
    et_sampler_params sp = et_sampler_default_params();
    sp.temp = 0.0f; /* greedy */
    if (o->do_generate) rc = et_sampler_init(&smp, &sp, n_vocab, e);
    if (!rc && o->do_generate && !(res->answers = calloc((size_t)(n ? n : 1), sizeof *res->answers)))
        rc = et_fail(e, ET_ERUN, "eval: out of memory");
    res->n = n;
    double t0 = now_s();
    for (int i = 0; i < n && !rc && o->do_loss; i++) {
        rc = loss_one(st, m->tok, &r->r[i], &lb, n_vocab, &res->nll, &res->n_loss_tokens, e);
        res->n_fail_at = i;
    }
    double t1 = now_s();
    for (int i = 0; i < n && !rc && o->do_generate; i++) {
        rc = generate_one(st, &smp, m->tok, &r->r[i], o->n_predict, &res->answers[i], &res->n_gen_tokens, e);
        res->n_fail_at = i;
        if (!rc) {
            res->n_exact += demo_task_exact(r->r[i].completion, res->answers[i]);
            res->n_json += demo_task_json_match(r->r[i].completion, res->answers[i]);
        }
    }
    if (rc && e) { /* name the record */
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        et_fail(e, rc, "record %d of %d: %s", res->n_fail_at + 1, n, msg);
    }
    res->t_loss_s = t1 - t0;
    res->t_gen_s = now_s() - t1;
    if (o->do_generate) et_sampler_free(&smp);
    free(lb.v);
    et_state_free(st);
    if (rc) demo_eval_result_free(res);
    return rc;
}
