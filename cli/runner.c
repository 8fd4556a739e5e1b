/* cli/runner.c — see runner.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
        char *colon = strrchr(item, ':');
        if (colon && colon[1]) {
            char *stop;
            errno = 0;
            double v = strtod(colon + 1, &stop);
            if (!errno && !*stop && isfinite(v)) {
                scale = (float)v;
                *colon = 0;
            }
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

int et_runner_perplexity(et_runner *r, const int32_t *tokens, size_t n, et_ppl *acc, et_err *e) {
    et_ppl p;
    int rc = et_perplexity(r->s, tokens, n, 0, &p, e);
    if (rc) return rc;
    acc->nll += p.nll;
    acc->n_scored += p.n_scored;
    acc->ppl = acc->n_scored ? exp(acc->nll / (double)acc->n_scored) : 0;
    return 0;
}

int et_runner_perplexity_text(et_runner *r, const char *text, size_t len, et_ppl *acc, et_err *e) {
    if (!r->m->tok) return et_fail(e, ET_EINPUT, "%s: the model has no tokenizer", r->m->path);
    int32_t *ids;
    size_t n;
    int rc = et_tok_encode(r->m->tok, text, len, ET_TOK_DEFAULT_BOS, &ids, &n, e);
    if (rc) return rc;
    rc = et_runner_perplexity(r, ids, n, acc, e);
    free(ids);
    return rc;
}

void et_runner_print_ppl(FILE *f, const et_ppl *p) {
    fprintf(f, "perplexity %.6f (NLL %.6f nats over %ld tokens, %.6f nats/token)\n", p->ppl, p->nll, p->n_scored,
            p->n_scored ? p->nll / (double)p->n_scored : 0.0);
}
