/* eval/records.c — a task's records, read through the same parsing and
 * rendering as `edgetune data` (datasets/ingest.h), so that what was trained
 * is what is evaluated.  See internal.h. */
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../datasets/ingest.h"
#include "internal.h"

void et_recs_free(et_recs *r) {
    if (!r) return;
    for (long i = 0; i < r->n; i++) {
        free(r->r[i].prompt);
        free(r->r[i].gold);
        if (r->owns_choices) et_strs_free(r->r[i].choices, r->r[i].n_choices);
    }
    free(r->r);
    et_strs_free(r->verbalizers, r->n_classes);
    et_strs_free(r->class_names, r->n_classes);
    memset(r, 0, sizeof *r);
}

static int push(et_recs *r, long *cap, const char *path, et_err *e) {
    if (r->n < *cap) return 0;
    long nc = *cap ? 2 * *cap : 256;
    et_rec *q = realloc(r->r, (size_t)nc * sizeof *q);
    if (!q) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    r->r = q;
    *cap = nc;
    return 0;
}

/* Verbalizers: --labels (comma list) or " " + the class name. */
static int set_verbalizers(et_recs *r, const et_eval_opts *o, char **names, int n, et_err *e) {
    r->n_classes = n;
    r->class_names = names;
    if (o->labels) {
        int nv = 0;
        int rc = et_split_list(o->labels, 4096, &r->verbalizers, &nv, e);
        if (rc) return rc;
        if (nv != n) {
            et_strs_free(r->verbalizers, nv);
            r->verbalizers = NULL;
            return et_fail(e, ET_EINPUT, "%s: --labels gives %d verbalizers but the data has %d classes (%s%s%s...)", o->data,
                           nv, n, n ? names[0] : "", n > 1 ? ", " : "", n > 1 ? names[1] : "");
        }
        return 0;
    }
    if (!(r->verbalizers = calloc((size_t)n, sizeof(char *)))) return et_fail(e, ET_ERUN, "out of memory");
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (!(r->verbalizers[i] = malloc(l + 2))) return et_fail(e, ET_ERUN, "out of memory");
        r->verbalizers[i][0] = ' ';
        memcpy(r->verbalizers[i] + 1, names[i], l + 1);
    }
    return 0;
}

/* Each line of a JSONL file (blank lines skipped) through fn. */
typedef int (*line_fn)(void *u, const cJSON *o, int64_t line, et_err *e);
static int each_jsonl(const et_map *m, const char *path, line_fn fn, void *u, et_err *e) {
    const char *d = (const char *)m->data;
    size_t n = m->size, pos = 0;
    int64_t line = 0;
    int rc = 0;
    while (pos < n && !rc) {
        const char *nl = memchr(d + pos, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - (d + pos)) : n - pos;
        line++;
        size_t k = 0;
        while (k < len && (d[pos + k] == ' ' || d[pos + k] == '\t' || d[pos + k] == '\r')) k++;
        if (k < len) {
            cJSON *o = cJSON_ParseWithLength(d + pos, len);
            if (!o || !cJSON_IsObject(o)) rc = et_fail(e, ET_EINPUT, "%s: line %lld: not a JSON object", path, (long long)line);
            else rc = fn(u, o, line, e);
            cJSON_Delete(o);
        }
        pos += len + (nl ? 1 : 0);
    }
    return rc;
}

typedef struct jl_ctx {
    et_recs *r;
    long cap;
    const et_eval_opts *o;
    char **names;   /* classify JSONL: class names in order of appearance or --classes */
    int n_names, fixed;
} jl_ctx;

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int choice_line(void *u, const cJSON *o, int64_t line, et_err *e) {
    jl_ctx *c = u;
    const char *path = c->o->data;
    const char *ctx = str_of(o, "context");
    if (!ctx) ctx = str_of(o, "query");
    if (!ctx) ctx = str_of(o, "ctx");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
    const cJSON *ans = cJSON_GetObjectItemCaseSensitive(o, "answer");
    if (!ans) ans = cJSON_GetObjectItemCaseSensitive(o, "gold");
    if (!ctx) return et_fail(e, ET_EINPUT, "%s: line %lld: no string \"context\"", path, (long long)line);
    int nch = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    if (nch < 2 || nch > 4096)
        return et_fail(e, ET_EINPUT, "%s: line %lld: \"choices\" must be an array of 2 to 4096 strings", path, (long long)line);
    if (!cJSON_IsNumber(ans) || ans->valuedouble != (double)(int)ans->valuedouble || ans->valueint < 0 ||
        ans->valueint >= nch)
        return et_fail(e, ET_EINPUT, "%s: line %lld: \"answer\" must be an index in [0, %d)", path, (long long)line, nch);
    int rc = push(c->r, &c->cap, path, e);
    if (rc) return rc;
    et_rec *r = &c->r->r[c->r->n];
    memset(r, 0, sizeof *r);
    r->line = line;
    r->answer = ans->valueint;
    if (!(r->prompt = strdup(ctx)) || !(r->choices = calloc((size_t)nch, sizeof(char *)))) {
        free(r->prompt);
        return et_fail(e, ET_ERUN, "%s: out of memory", path);
    }
    c->r->n++;
    for (int i = 0; i < nch; i++) {
        const cJSON *x = cJSON_GetArrayItem(ch, i);
        if (!cJSON_IsString(x) || !*x->valuestring)
            return et_fail(e, ET_EINPUT, "%s: line %lld: choices[%d] is not a non-empty string", path, (long long)line, i);
        if (!(r->choices[i] = strdup(x->valuestring))) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        r->n_choices = i + 1;
    }
    return 0;
}

static int classify_line(void *u, const cJSON *o, int64_t line, et_err *e) {
    jl_ctx *c = u;
    const char *path = c->o->data;
    const char *text = str_of(o, "text");
    if (!text) text = str_of(o, "sentence");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "label");
    if (!text) return et_fail(e, ET_EINPUT, "%s: line %lld: no string \"text\"", path, (long long)line);
    char buf[32];
    const char *ls = NULL;
    if (cJSON_IsString(lab)) ls = lab->valuestring;
    else if (cJSON_IsNumber(lab) && lab->valuedouble == (double)(int)lab->valuedouble) {
        snprintf(buf, sizeof buf, "%d", lab->valueint);
        ls = buf;
    }
    if (!ls || !*ls) return et_fail(e, ET_EINPUT, "%s: line %lld: no \"label\" (string or integer)", path, (long long)line);
    int k = -1;
    for (int i = 0; i < c->n_names; i++)
        if (!strcmp(c->names[i], ls)) k = i;
    if (k < 0 && c->fixed)
        return et_fail(e, ET_EINPUT, "%s: line %lld: label '%.64s' is not in the label set (--classes)", path, (long long)line, ls);
    if (k < 0) {
        if (c->n_names >= 4096) return et_fail(e, ET_EINPUT, "%s: more than 4096 classes", path);
        char **q = realloc(c->names, (size_t)(c->n_names + 1) * sizeof *q);
        if (!q) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        c->names = q;
        if (!(q[c->n_names] = strdup(ls))) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        k = c->n_names++;
    }
    int rc = push(c->r, &c->cap, path, e);
    if (rc) return rc;
    et_rec *r = &c->r->r[c->r->n];
    memset(r, 0, sizeof *r);
    r->line = line;
    r->answer = k;
    if (!(r->prompt = strdup(text))) return et_fail(e, ET_ERUN, "%s: out of memory", path); /* rendered later */
    c->r->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Classify from JSONL: texts and labels, classes sorted bytewise unless --classes fixes them. */
static int classify_jsonl(const et_eval_opts *o, const et_map *m, et_recs *out, et_err *e) {
    jl_ctx c = {.r = out, .o = o};
    int rc = 0;
    if (o->classes) {
        rc = et_split_list(o->classes, 4096, &c.names, &c.n_names, e);
        c.fixed = 1;
    }
    if (!rc) rc = each_jsonl(m, o->data, classify_line, &c, e);
    if (!rc && !c.fixed && c.n_names > 0) { /* sort the classes, remap the answers */
        char **sorted = malloc((size_t)c.n_names * sizeof *sorted);
        int *map = malloc((size_t)c.n_names * sizeof *map);
        if (!sorted || !map) rc = et_fail(e, ET_ERUN, "out of memory");
        if (!rc) {
            memcpy(sorted, c.names, (size_t)c.n_names * sizeof *sorted);
            qsort(sorted, (size_t)c.n_names, sizeof *sorted, cmp_str);
            for (int i = 0; i < c.n_names; i++)
                for (int j = 0; j < c.n_names; j++)
                    if (c.names[i] == sorted[j]) map[i] = j;
            for (long i = 0; i < out->n; i++) out->r[i].answer = map[out->r[i].answer];
            free(c.names);
            c.names = sorted;
            sorted = NULL;
        }
        free(sorted);
        free(map);
    }
    if (!rc) return set_verbalizers(out, o, c.names, c.n_names, e);
    et_strs_free(c.names, c.n_names);
    return rc;
}

/* Classify from TSV through the data command's parser (same header and label rules). */
static int classify_tsv(const et_eval_opts *o, const et_map *m, et_recs *out, et_err *e) {
    et_ingest_opts io = et_ingest_defaults();
    io.format = ET_FMT_TSV;
    io.labels = o->classes;
    io.label_first = o->label_first;
    et_docs d;
    int rc = et_parse_input((const char *)m->data, m->size, o->data, &io, &d, e);
    if (rc) return rc;
    long cap = 0;
    for (size_t i = 0; i < d.n && !rc; i++) {
        if ((rc = push(out, &cap, o->data, e))) break;
        et_rec *r = &out->r[out->n];
        memset(r, 0, sizeof *r);
        r->line = d.doc[i].line;
        r->answer = d.doc[i].label;
        r->prompt = d.doc[i].text; /* rendered later */
        d.doc[i].text = NULL;
        out->n++;
    }
    char **names = d.label_names;
    int nn = d.n_labels;
    d.label_names = NULL;
    d.n_labels = 0;
    et_docs_free(&d);
    if (!rc) return set_verbalizers(out, o, names, nn, e);
    et_strs_free(names, nn);
    return rc;
}

/* Generate: every format `edgetune data` reads; the prompt is the text before
 * the last trained segment, the gold completion that segment. */
static int generate_recs(const et_eval_opts *o, int chat, const et_map *m, et_recs *out, et_err *e) {
    et_ingest_opts io = et_ingest_defaults();
    io.chat_template = chat;
    et_docs d;
    int rc = et_parse_input((const char *)m->data, m->size, o->data, &io, &d, e);
    if (rc) return rc;
    long cap = 0;
    for (size_t i = 0; i < d.n && !rc; i++) {
        const et_doc *doc = &d.doc[i];
        int last = -1;
        for (int s = 0; s < doc->n_segs; s++)
            if (doc->segs[s].train) last = s;
        if (last <= 0) {
            rc = et_fail(e, ET_EINPUT, "%s: line %lld: the record has no prompt and completion (plain text?)", o->data,
                         (long long)doc->line);
            break;
        }
        size_t a = doc->segs[last - 1].end, b = doc->segs[last].end;
        if ((rc = push(out, &cap, o->data, e))) break;
        et_rec *r = &out->r[out->n];
        memset(r, 0, sizeof *r);
        r->line = doc->line;
        r->answer = -1;
        r->prompt = strndup(doc->text, a);
        r->gold = strndup(doc->text + a, b - a);
        out->n++;
        if (!r->prompt || !r->gold) rc = et_fail(e, ET_ERUN, "%s: out of memory", o->data);
    }
    et_docs_free(&d);
    return rc;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int et_recs_read(const et_eval_opts *o, et_recs *out, et_err *e) { return et_recs_read_chat(o, 0, out, e); }

int et_recs_read_chat(const et_eval_opts *o, int chat, et_recs *out, et_err *e) {
    memset(out, 0, sizeof *out);
    if (!o->data) return et_fail(e, ET_EUSAGE, "eval: --data FILE is needed for task %s", o->task);
    const char *task = o->task;
    int classify = !strcmp(task, "classify"), choice = !strcmp(task, "choice");
    if (classify && o->template_) {
        int rc = et_template_check(o->template_, e);
        if (rc) return rc;
    }
    et_map m;
    int rc = et_map_open(&m, o->data, e);
    if (rc) return rc;
    if (m.size == 0) rc = et_fail(e, ET_EINPUT, "%s: empty file (no records to evaluate)", o->data);
    else if (classify) {
        int tsv = ends_with(o->data, ".tsv") || !(ends_with(o->data, ".jsonl") || ends_with(o->data, ".json"));
        rc = tsv ? classify_tsv(o, &m, out, e) : classify_jsonl(o, &m, out, e);
        const char *tmpl = o->template_ ? o->template_ : "{text}\n";
        for (long i = 0; !rc && i < out->n; i++) { /* render each prompt */
            char *p = et_render_template(tmpl, out->r[i].prompt, strlen(out->r[i].prompt));
            if (!p) rc = et_fail(e, ET_ERUN, "out of memory");
            else {
                free(out->r[i].prompt);
                out->r[i].prompt = p;
                out->r[i].choices = out->verbalizers;
                out->r[i].n_choices = out->n_classes;
            }
        }
    } else if (choice) {
        jl_ctx c = {.r = out, .o = o};
        out->owns_choices = 1;
        rc = each_jsonl(&m, o->data, choice_line, &c, e);
    } else {
        rc = generate_recs(o, chat, &m, out, e);
    }
    et_map_close(&m);
    if (!rc && out->n == 0) rc = et_fail(e, ET_EINPUT, "%s: no records (an empty test split?)", o->data);
    if (rc) et_recs_free(out);
    return rc;
}
