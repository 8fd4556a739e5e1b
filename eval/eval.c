/* eval/eval.c — et_eval_run: open the artifact on the engine, run the task,
 * and build the eval result (schema in eval.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../datasets/teacher.h"

#include "../datasets/chat_template.h"
#include "../datasets/ingest.h"
#include "logits.h"
#include "tasks.h"

et_eval_opts et_eval_defaults(void) {
    et_eval_opts o;
    memset(&o, 0, sizeof o);
    o.task = "perplexity";
    o.scoring = "all";
    o.split = "all";
    o.n_predict = 128;
    o.n_threads = 1;
    return o;
}

int et_task_sample(et_task_ctx *c, cJSON *s, et_err *e) {
    char *line = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (!line) return et_fail(e, ET_ERUN, "samples: out of memory");
    int bad = fputs(line, c->samples->f) == EOF || fputc('\n', c->samples->f) == EOF;
    free(line);
    return bad ? et_fail(e, ET_ERUN, "%s: write failed", c->o->samples) : 0;
}

void et_task_warn(et_task_ctx *c, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cJSON_AddItemToArray(c->warnings, cJSON_CreateString(buf));
}

/* ------------------------------------------------------------ what the device pays */

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* model: path, sha256, bytes, arch, n_params, widths, type_mix (parameters per GGML type). */
static int model_info(const et_engine *m, const char *path, cJSON *out, uint64_t *bytes, uint64_t *n_params, et_err *e) {
    char hex[65];
    int rc = et_file_sha256(path, hex, bytes, e);
    if (rc) return rc;
    gguf_file g;
    if ((rc = gguf_open(&g, path, e))) return rc;
    cJSON *mix = cJSON_CreateObject();
    uint64_t np = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) ne *= (uint64_t)t->ne[d];
        np += ne;
        const char *tn = ggml_type_name(t->type);
        cJSON *x = cJSON_GetObjectItemCaseSensitive(mix, tn);
        if (x) cJSON_SetNumberValue(x, x->valuedouble + (double)ne);
        else cJSON_AddNumberToObject(mix, tn, (double)ne);
    }
    char arch[64] = "";
    gguf_get_str(&g, "general.architecture", arch, sizeof arch, NULL);
    gguf_close(&g);
    cJSON_AddStringToObject(out, "path", path);
    cJSON_AddStringToObject(out, "sha256", hex);
    cJSON_AddNumberToObject(out, "bytes", (double)*bytes);
    cJSON_AddStringToObject(out, "arch", arch);
    cJSON_AddNumberToObject(out, "n_params", (double)np);
    cJSON_AddNumberToObject(out, "n_layer", m->hp.n_layer);
    cJSON_AddNumberToObject(out, "n_embd", m->hp.n_embd);
    cJSON_AddNumberToObject(out, "n_vocab", m->hp.n_vocab);
    cJSON_AddItemToObject(out, "type_mix", mix);
    *n_params = np;
    return 0;
}

static int adapter_info(const char *path, float scale, cJSON *arr, uint64_t *bytes, uint64_t *n_params, et_err *e) {
    char hex[65];
    int rc = et_file_sha256(path, hex, bytes, e);
    if (rc) return rc;
    gguf_file g;
    if ((rc = gguf_open(&g, path, e))) return rc;
    uint64_t np = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        uint64_t ne = 1;
        for (uint32_t d = 0; d < g.tensors[i].n_dims; d++) ne *= (uint64_t)g.tensors[i].ne[d];
        np += ne;
    }
    gguf_close(&g);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "path", path);
    cJSON_AddStringToObject(a, "sha256", hex);
    cJSON_AddNumberToObject(a, "bytes", (double)*bytes);
    cJSON_AddNumberToObject(a, "scale", scale);
    cJSON_AddNumberToObject(a, "n_params", (double)np);
    cJSON_AddItemToArray(arr, a);
    *n_params = np;
    return 0;
}

/* Default artifact name: the model's file name without .gguf, + each adapter's. */
static void default_name(const et_eval_opts *o, char *out, size_t cap) {
    size_t n = 0;
    const char *paths[1 + ET_EVAL_MAX_LORA];
    paths[0] = o->model;
    for (int i = 0; i < o->n_lora; i++) paths[1 + i] = o->lora[i];
    for (int i = 0; i <= o->n_lora && n + 1 < cap; i++) {
        const char *b = base_name(paths[i]);
        size_t l = strlen(b);
        if (l > 5 && !strcmp(b + l - 5, ".gguf")) l -= 5;
        n += (size_t)snprintf(out + n, cap - n, "%s%.*s", i ? "+" : "", (int)l, b);
        if (n >= cap) n = cap - 1;
    }
}


/* kl with --ref-model: reuse the cache o->ref when it was made from the same
 * reference, data, window and k; otherwise run the reference over the data
 * (eval/logits.c) into o->ref, or into a temporary file (*tmp = 1) that the
 * caller removes. */
static int ensure_ref(const et_eval_opts *o, char *path, size_t cap, int *tmp, et_err *e) {
    *tmp = 0;
    if (!o->data) return et_fail(e, ET_EUSAGE, "kl: --ref-model needs --data (text or tokens.h5)");
    char msha[65], dsha[65];
    int rc = et_file_sha256(o->ref_model, msha, NULL, e);
    if (!rc) rc = et_file_sha256(o->data, dsha, NULL, e);
    if (rc) return rc;
    et_logits_opts lo = et_logits_defaults();
    lo.top_k = o->ref_top_k > 0 ? o->ref_top_k : 64;
    lo.full = o->ref_full;
    lo.n_ctx = o->n_ctx;
    lo.scoring = o->scoring ? o->scoring : "all";
    lo.split = o->split;
    lo.n_threads = o->n_threads;
    lo.isa = o->isa;
    lo.kv_f16 = o->kv_f16;
    if (o->ref) {
        snprintf(path, cap, "%s", o->ref);
        et_teacher *t = NULL;
        et_teacher_meta mt;
        et_err ignore = {0};
        if (access(path, R_OK) == 0 && !et_teacher_open(&t, path, &mt, &ignore)) {
            int same = !strcmp(mt.teacher_sha256, msha) && !strcmp(mt.data_sha256, dsha) &&
                       !strcmp(mt.scoring, lo.scoring) && (o->n_ctx <= 0 || mt.n_ctx == o->n_ctx) &&
                       (lo.full ? mt.k == mt.n_vocab : mt.k == lo.top_k) && mt.temperature == 1.0 &&
                       !strcmp(mt.mode, "topk");
            et_teacher_close(t);
            if (same) return 0; /* the cache holds this reference */
        }
    } else {
        snprintf(path, cap, "/tmp/edgetune-ref-%ld-%s.h5", (long)getpid(), msha + 56);
        *tmp = 1;
    }
    et_engine *ref = NULL;
    if ((rc = et_engine_load(&ref, o->ref_model, e))) return rc;
    rc = et_logits_run(ref, o->ref_model, o->data, &lo, path, NULL, NULL, e);
    et_engine_free(ref);
    if (rc && *tmp) remove(path);
    if (rc) *tmp = 0;
    return rc;
}

static const char *const TASKS[] = {"perplexity", "kl", "classify", "choice", "generate", NULL};

int et_eval_run(const et_eval_opts *o, cJSON **out, et_err *e) {
    *out = NULL;
    int known = 0;
    for (int i = 0; TASKS[i]; i++) known |= o->task && !strcmp(o->task, TASKS[i]);
    if (!known) return et_fail(e, ET_EUSAGE, "unknown task '%s' (perplexity, kl, classify, choice, generate)", o->task ? o->task : "");
    if (!o->model) return et_fail(e, ET_EUSAGE, "eval: no model");
    if (o->n_lora < 0 || o->n_lora > ET_EVAL_MAX_LORA) return et_fail(e, ET_EUSAGE, "eval: too many adapters");
    if (o->n_stop < 0 || o->n_stop > ET_EVAL_MAX_STOP) return et_fail(e, ET_EUSAGE, "eval: too many stop strings");
    int is_kl = !strcmp(o->task, "kl"), is_ppl = !strcmp(o->task, "perplexity");
    if (!is_kl && !o->data) return et_fail(e, ET_EUSAGE, "eval: --data FILE is needed for task %s", o->task);
    /* the result records each input's sha256, a second read: FIFOs are refused
     * before anything is read from them (common/et.h) */
    const char *why = "eval records the sha256 of its inputs, a second read";
    int rc0 = et_need_regular(o->model, why, e);
    for (int i = 0; !rc0 && i < o->n_lora; i++) rc0 = et_need_regular(o->lora[i], why, e);
    if (!rc0 && o->data) rc0 = et_need_regular(o->data, why, e);
    if (!rc0 && o->ref_model) rc0 = et_need_regular(o->ref_model, why, e);
    if (rc0) return rc0;
    double t_start = et_now_s();
    et_engine *m = NULL;
    et_adapter *ad[ET_EVAL_MAX_LORA] = {0};
    et_recs recs = {0};
    et_scorer sc;
    int have_sc = 0;
    et_afile samples;
    int have_samples = 0;
    cJSON *res = cJSON_CreateObject(), *task = cJSON_CreateObject(), *art = cJSON_CreateObject();
    cJSON *mjs = cJSON_CreateObject(), *adj = cJSON_CreateArray(), *metrics = cJSON_CreateObject();
    cJSON *warnings = cJSON_CreateArray();
    int rc = 0;
    if (!res || !task || !art || !mjs || !adj || !metrics || !warnings) rc = et_fail(e, ET_ERUN, "out of memory");
    char ref_path[4096];
    int ref_tmp = 0;
    et_eval_opts ko;
    if (is_kl && o->ref_model) { /* the reference's log-probs, computed once and cached */
        rc = ensure_ref(o, ref_path, sizeof ref_path, &ref_tmp, e);
        ko = *o;
        ko.ref = ref_path; /* ko.data stays: the result names the text, not the cache */
        o = &ko;
    }
    if (!rc) rc = et_engine_load(&m, o->model, e);
    if (!rc && !m->tok && !is_kl) rc = et_fail(e, ET_EINPUT, "%s: the model has no tokenizer", o->model);
    for (int i = 0; i < o->n_lora && !rc; i++) {
        rc = et_adapter_load(&ad[i], o->lora[i], m, e);
        if (!rc) rc = et_engine_attach(m, ad[i], o->lora_scale[i], e);
    }
    /* what the device pays */
    uint64_t bytes = 0, np = 0, b = 0, p = 0;
    if (!rc) rc = model_info(m, o->model, mjs, &bytes, &np, e);
    for (int i = 0; i < o->n_lora && !rc; i++) {
        rc = adapter_info(o->lora[i], o->lora_scale[i], adj, &b, &p, e);
        bytes += b;
        np += p;
    }
    /* the task's input */
    /* generate: chat records through the template `edgetune data` used for this model */
    int chat = ET_CHAT_NONE;
    if (!rc && !strcmp(o->task, "generate")) {
        if (o->chat_template && (chat = et_chat_from_name(o->chat_template)) < 0)
            rc = et_fail(e, ET_EUSAGE, "--chat-template '%s' is unknown (%s)", o->chat_template, et_chat_names());
        else if (!o->chat_template) chat = et_chat_detect(et_tok_chat_template(m->tok), NULL);
    }
    if (!rc && !is_kl && !is_ppl) rc = et_recs_read_chat(o, chat, &recs, e);
    if (!rc && o->max_records > 0 && recs.n > o->max_records) {
        for (long i = o->max_records; i < recs.n; i++) {
            free(recs.r[i].prompt);
            free(recs.r[i].gold);
            if (recs.owns_choices) et_strs_free(recs.r[i].choices, recs.r[i].n_choices);
        }
        recs.n = o->max_records;
    }
    if (!rc) rc = et_scorer_init(&sc, m, o->n_ctx, o->n_threads, o->isa, o->kv_f16, e);
    if (!rc) have_sc = 1;
    if (!rc && o->samples) {
        rc = et_afile_open(&samples, o->samples, e);
        have_samples = !rc;
    }
    et_task_ctx c = {.o = o, .m = m, .sc = have_sc ? &sc : NULL, .recs = &recs, .samples = have_samples ? &samples : NULL,
                     .warnings = warnings, .task = task, .t0 = et_now_s(), .chat = chat > 0 ? chat : 0,
                     .tok_flags = chat > 0 ? ET_TOK_PARSE_SPECIAL : 0};
    char dsha[65] = "";
    uint64_t dbytes = 0;
    const char *data = o->data ? o->data : o->ref;
    if (!rc && data) rc = et_file_sha256(data, dsha, &dbytes, e);
    if (!rc) {
        cJSON_AddStringToObject(task, "name", o->task);
        cJSON_AddStringToObject(task, "data", data ? data : "");
        cJSON_AddStringToObject(task, "data_sha256", dsha);
        if (!strcmp(o->task, "classify")) {
            cJSON_AddStringToObject(task, "template", o->template_ ? o->template_ : "{text}\\n");
            cJSON_AddItemToObject(task, "labels", cJSON_CreateStringArray((const char *const *)recs.verbalizers, recs.n_classes));
            cJSON_AddItemToObject(task, "classes", cJSON_CreateStringArray((const char *const *)recs.class_names, recs.n_classes));
        }
        if (!strcmp(o->task, "generate")) {
            cJSON_AddNumberToObject(task, "n_predict", o->n_predict > 0 ? o->n_predict : 128);
            cJSON_AddItemToObject(task, "stop", cJSON_CreateStringArray(o->stop, o->n_stop));
            cJSON_AddStringToObject(task, "chat_template", chat > 0 ? et_chat_name(chat) : "none");
        }
        if (!is_kl && !is_ppl) cJSON_AddNumberToObject(task, "n_ctx", sc.n_ctx);
    }
    double t_task = et_now_s();
    if (!rc) {
        if (is_ppl) rc = et_task_perplexity(&c, metrics, e);
        else if (is_kl) rc = et_task_kl(&c, metrics, e);
        else if (!strcmp(o->task, "generate")) rc = et_task_generate(&c, metrics, e);
        else rc = et_task_choices(&c, !strcmp(o->task, "classify"), metrics, e);
    }
    double t_end = et_now_s();
    const char *bad = NULL;
    if (!rc && !et_json_all_finite(metrics, &bad)) rc = et_fail(e, ET_ERUN, "eval: metric '%s' is not a finite number", bad);
    if (!rc) {
        if (!is_kl && !is_ppl) {
            cJSON_AddNumberToObject(task, "records", (double)recs.n);
            cJSON_AddNumberToObject(task, "scored", (double)c.n_scored);
            cJSON_AddNumberToObject(task, "skipped", (double)c.n_skipped);
            cJSON_AddNumberToObject(task, "truncated", (double)c.n_truncated);
            if (c.n_skipped)
                et_task_warn(&c, "%ld of %ld records were longer than the context of %d tokens and skipped", c.n_skipped,
                             recs.n, sc.n_ctx);
            if (c.n_truncated)
                et_task_warn(&c, "%ld of %ld records were longer than the context of %d tokens: their prompts were cut "
                             "from the left", c.n_truncated, recs.n, sc.n_ctx);
        }
        char name[512];
        if (o->name) snprintf(name, sizeof name, "%s", o->name);
        else default_name(o, name, sizeof name);
        time_t now = time(NULL);
        struct tm tmv;
        char ts[32];
        gmtime_r(&now, &tmv);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        cJSON_AddStringToObject(res, "schema", ET_EVAL_SCHEMA);
        cJSON_AddStringToObject(res, "edgetune_version", ET_VERSION);
        cJSON_AddStringToObject(res, "created", ts);
        cJSON_AddStringToObject(res, "name", name);
        cJSON_AddItemToObject(res, "task", task);
        task = NULL;
        cJSON_AddItemToObject(art, "model", mjs);
        cJSON_AddItemToObject(art, "adapters", adj);
        mjs = adj = NULL;
        cJSON_AddNumberToObject(art, "bytes", (double)bytes);
        cJSON_AddNumberToObject(art, "n_params", (double)np);
        cJSON_AddItemToObject(res, "artifact", art);
        art = NULL;
        const char *pm = is_ppl ? "ppl" : is_kl ? "kl_mean" : !strcmp(o->task, "generate") ? "exact_match"
                       : !strcmp(o->task, "choice") ? "acc" : "accuracy";
        cJSON *prim = cJSON_CreateObject();
        cJSON_AddStringToObject(prim, "metric", pm);
        cJSON_AddNumberToObject(prim, "value", cJSON_GetObjectItemCaseSensitive(metrics, pm)->valuedouble);
        cJSON_AddBoolToObject(prim, "higher_is_better", !is_ppl && !is_kl);
        cJSON_AddItemToObject(res, "metrics", metrics);
        metrics = NULL;
        cJSON_AddItemToObject(res, "primary", prim);
        cJSON *sp = cJSON_CreateObject();
        cJSON_AddNumberToObject(sp, "tokens", (double)sc.n_tokens);
        cJSON_AddNumberToObject(sp, "seconds", t_end - t_task);
        cJSON_AddNumberToObject(sp, "engine_seconds", sc.t_fwd);
        cJSON_AddNumberToObject(sp, "tokens_per_s", sc.t_fwd > 0 ? (double)sc.n_tokens / sc.t_fwd : 0.0);
        if (!is_ppl && !is_kl)
            cJSON_AddNumberToObject(sp, "examples_per_s", t_end > t_task ? (double)c.n_scored / (t_end - t_task) : 0.0);
        cJSON_AddNumberToObject(sp, "total_seconds", t_end - t_start);
        cJSON_AddNumberToObject(sp, "threads", o->n_threads > 0 ? o->n_threads : 1);
        cJSON_AddStringToObject(sp, "isa", et_state_isa(sc.st));
        cJSON_AddItemToObject(res, "speed", sp);
        cJSON *mem = cJSON_CreateObject();
        cJSON_AddNumberToObject(mem, "peak_rss_bytes", (double)et_peak_rss_bytes());
        cJSON_AddItemToObject(res, "memory", mem);
        cJSON_AddItemToObject(res, "warnings", warnings);
        warnings = NULL;
    }
    if (have_samples) {
        if (rc) et_afile_abort(&samples);
        else rc = et_afile_commit(&samples, e);
    }
    cJSON_Delete(task);
    cJSON_Delete(art);
    cJSON_Delete(mjs);
    cJSON_Delete(adj);
    cJSON_Delete(metrics);
    cJSON_Delete(warnings);
    if (have_sc) et_scorer_free(&sc);
    et_recs_free(&recs);
    if (m) et_engine_detach_all(m);
    for (int i = 0; i < o->n_lora; i++) et_adapter_free(ad[i]);
    et_engine_free(m);
    if (ref_tmp) remove(ref_path);
    if (rc) {
        cJSON_Delete(res);
        return rc;
    }
    *out = res;
    return 0;
}
