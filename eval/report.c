/* eval/report.c — the accuracy-vs-size report: result lists, the Pareto
 * frontier, report.json / report.md / report.svg, and sweep files.
 * See report.h; the reference is docs/report_gate.md. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sys/stat.h>

#include "report.h"

/* ================================================================ strings */

void et_sbuf_printf(et_sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid. */
static int utf8_len(const unsigned char *p) {
    int n = p[0] < 0x80 ? 1 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : p[0] >= 0xe0 && p[0] < 0xf0 ? 3
            : p[0] >= 0xf0 && p[0] < 0xf5 ? 4 : 0;
    for (int i = 1; i < n; i++) if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
}

void et_sbuf_xml(et_sbuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = utf8_len(p);
        if (n > 1) { et_sbuf_printf(b, "%.*s", n, (const char *)p); p += n; continue; }
        unsigned char c = *p++;
        if (c == '&') et_sbuf_printf(b, "&amp;");
        else if (c == '<') et_sbuf_printf(b, "&lt;");
        else if (c == '>') et_sbuf_printf(b, "&gt;");
        else if (c == '"') et_sbuf_printf(b, "&quot;");
        else if (c == '\'') et_sbuf_printf(b, "&apos;");
        else if (n == 0 || (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f) et_sbuf_printf(b, "?");
        else et_sbuf_printf(b, "%c", c);
    }
}

void et_sbuf_free(et_sbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* ================================================================ results */

int et_result_check(const cJSON *j, const char *where, et_err *e) { return et_eval_check(j, where, e); }

int et_result_list_add(et_result_list *l, cJSON *res, const char *where, et_err *e) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        cJSON **r = realloc(l->res, sizeof *r * (size_t)cap);
        if (r) l->res = r;
        char **w = r ? realloc(l->where, sizeof *w * (size_t)cap) : NULL;
        if (w) l->where = w;
        if (!r || !w) {
            cJSON_Delete(res);
            return et_fail(e, ET_ERUN, "%s: out of memory", where);
        }
        l->cap = cap;
    }
    char *wd = strdup(where);
    if (!wd) {
        cJSON_Delete(res);
        return et_fail(e, ET_ERUN, "%s: out of memory", where);
    }
    l->res[l->n] = res;
    l->where[l->n++] = wd;
    return 0;
}

/* Drop the entries from n0 on (undo a partly added file). */
static void list_truncate(et_result_list *l, int n0) {
    while (l->n > n0) {
        l->n--;
        cJSON_Delete(l->res[l->n]);
        free(l->where[l->n]);
    }
}

/* Every tasks[i].rows[j].result of a report.json. */
static int add_report_rows(et_result_list *l, const cJSON *rep, const char *path, et_err *e) {
    const cJSON *tasks = et_json_get(rep, "tasks");
    if (!cJSON_IsArray(tasks)) return et_fail(e, ET_EINPUT, "%s: report without a \"tasks\" array", path);
    int i = 0, n0 = l->n;
    for (const cJSON *t = tasks->child; t; t = t->next, i++) {
        const cJSON *rows = et_json_get(t, "rows");
        if (!cJSON_IsArray(rows)) {
            list_truncate(l, n0);
            return et_fail(e, ET_EINPUT, "%s: tasks[%d] has no \"rows\" array", path, i);
        }
        int j = 0;
        for (const cJSON *row = rows->child; row; row = row->next, j++) {
            char where[1200];
            snprintf(where, sizeof where, "%s: tasks[%d].rows[%d].result", path, i, j);
            const cJSON *res = et_json_get(row, "result");
            int rc = et_result_check(res, where, e);
            cJSON *dup = rc ? NULL : cJSON_Duplicate(res, 1);
            if (!rc && !dup) rc = et_fail(e, ET_ERUN, "%s: out of memory", where);
            if (!rc) rc = et_result_list_add(l, dup, where, e);
            if (rc) {
                list_truncate(l, n0);
                return rc;
            }
        }
    }
    return 0;
}

int et_result_list_add_file(et_result_list *l, const char *path, et_err *e) {
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    cJSON *j = m.size ? cJSON_ParseWithLength((const char *)m.data, m.size) : NULL;
    et_map_close(&m);
    if (j && !strcmp(et_json_str(j, "schema", ""), ET_REPORT_SCHEMA)) {
        rc = add_report_rows(l, j, path, e);
        cJSON_Delete(j);
        return rc;
    }
    cJSON_Delete(j);
    cJSON *res = NULL;
    rc = et_eval_read_json(path, &res, e);
    return rc ? rc : et_result_list_add(l, res, path, e);
}

void et_result_list_free(et_result_list *l) {
    list_truncate(l, 0);
    free(l->res);
    free(l->where);
    memset(l, 0, sizeof *l);
}

/* ================================================================ metrics */

int et_metric_info(const char *name, int *higher, int *fraction) {
    static const char *const up_frac[] = {"accuracy", "accuracy_norm", "macro_f1", "exact_match", "same_json",
                                          "acc", "acc_norm", "same_top1", NULL};
    static const char *const down[] = {"ppl", "nll_per_token", "kl_mean", "kl_median", "kl_p90", "kl_p99",
                                       "kl_p999", "kl_max", "ppl_ratio", "ln_ppl_ratio", "rms_delta_p", NULL};
    *higher = 1;
    *fraction = 0;
    for (const char *const *k = up_frac; *k; k++)
        if (!strcmp(*k, name)) { *fraction = 1; return 0; }
    for (const char *const *k = down; *k; k++)
        if (!strcmp(*k, name)) { *higher = 0; return 0; }
    return -1;
}

void et_human_bytes(double bytes, char *buf, size_t n) {
    static const char *const unit[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    double v = bytes;
    while (fabs(v) >= 999.5 && u < 4) { v /= 1000.0; u++; }
    if (u == 0) snprintf(buf, n, "%.0f B", v);
    else snprintf(buf, n, "%.3g %s", v, unit[u]);
}

int et_parse_bytes(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, *end) : NULL;
    if (u) {
        int k = (int)(u - units) + 1;
        int bin = end[1] == 'i';
        for (int i = 0; i < k; i++) mul *= bin ? 1024.0 : 1000.0;
        end += 1 + bin;
    }
    if (*end == 'B') end++;
    if (*end) return -1;
    *out = v * mul;
    return 0;
}

/* ================================================================ Pareto */

typedef struct pt { double bytes, good; int i; } pt;

/* bytes ascending, then better first */
static int pt_cmp(const void *a, const void *b) {
    const pt *p = a, *q = b;
    if (p->bytes != q->bytes) return p->bytes < q->bytes ? -1 : 1;
    if (p->good != q->good) return p->good > q->good ? -1 : 1;
    return p->i - q->i;
}

/* A point is dominated by a smaller one that is at least as good, or by one
 * of the same size that is strictly better; sweep the sizes in order,
 * keeping the best goodness seen among strictly smaller sizes. */
int et_pareto(int n, const double *bytes, const double *value, int higher_is_better, int *on) {
    if (n <= 0) return 0;
    pt *p = malloc(sizeof *p * (size_t)n);
    if (!p) return ET_ERUN;
    for (int i = 0; i < n; i++) p[i] = (pt){bytes[i], higher_is_better ? value[i] : -value[i], i};
    qsort(p, (size_t)n, sizeof *p, pt_cmp);
    double best_before = -INFINITY;
    for (int a = 0; a < n;) {
        int b = a;
        while (b < n && p[b].bytes == p[a].bytes) b++;
        double top = p[a].good; /* best of this size */
        for (int k = a; k < b; k++) on[p[k].i] = p[k].good == top && p[k].good > best_before;
        if (top > best_before) best_before = top;
        a = b;
    }
    free(p);
    return 0;
}

/* ================================================================ report */

void et_report_init(et_report *r) { memset(r, 0, sizeof *r); }

void et_report_free(et_report *r) {
    for (int i = 0; i < r->n; i++) {
        cJSON_Delete(r->rows[i].result);
        free(r->rows[i].where);
    }
    for (int g = 0; g < r->n_groups; g++) free(r->groups[g].rows);
    free(r->rows);
    free(r->groups);
    memset(r, 0, sizeof *r);
}

static int same_group(const et_report_row *a, const et_report_row *b) {
    return !strcmp(a->task, b->task) && !strcmp(a->data, b->data);
}

static void row_fill(et_report_row *w, cJSON *res, char *where) {
    const cJSON *task = et_json_get(res, "task"), *art = et_json_get(res, "artifact");
    w->result = res;
    w->where = where;
    w->name = et_json_str(res, "name", "");
    w->task = et_json_str(task, "name", "");
    w->data = et_json_str(task, "data", "");
    w->bytes = et_json_num(art, "bytes");
    w->n_params = et_json_num(art, "n_params");
    w->tokens_per_s = et_json_num(et_json_get(res, "speed"), "tokens_per_s");
    w->peak_rss = et_json_num(et_json_get(res, "memory"), "peak_rss_bytes");
    w->value = et_json_num(et_json_get(res, "primary"), "value");
}

int et_report_take(et_report *r, et_result_list *l, et_err *e) {
    if (r->n + l->n > r->cap) {
        int cap = r->n + l->n;
        et_report_row *rows = realloc(r->rows, sizeof *rows * (size_t)cap);
        if (!rows) return et_fail(e, ET_ERUN, "out of memory");
        r->rows = rows;
        r->cap = cap;
    }
    for (int i = 0; i < l->n; i++) {
        et_report_row w = {0};
        row_fill(&w, l->res[i], l->where[i]);
        for (int k = 0; k < r->n; k++) {
            if (strcmp(r->rows[k].name, w.name) || !same_group(&r->rows[k], &w)) continue;
            et_fail(e, ET_EINPUT, "%s and %s: both are \"%s\" on task %s%s%s; give one of them another --name",
                    r->rows[k].where, w.where, w.name, w.task, *w.data ? " " : "", w.data);
            list_truncate(l, 0); /* entries < i moved to r (NULL here); the rest are freed */
            return ET_EINPUT;
        }
        r->rows[r->n++] = w;
        l->res[i] = NULL;
        l->where[i] = NULL;
    }
    l->n = 0;
    return 0;
}

/* primary.higher_is_better, else what the metric's name says, else 1. */
static int primary_higher(const cJSON *res) {
    const cJSON *p = et_json_get(res, "primary"), *h = et_json_get(p, "higher_is_better");
    if (cJSON_IsBool(h)) return cJSON_IsTrue(h);
    int higher, frac;
    et_metric_info(et_json_str(p, "metric", ""), &higher, &frac);
    return higher;
}

/* The rows of a group agree on the primary metric and its direction. */
static int check_primary(const et_report *r, const et_report_group *g, et_err *e) {
    const et_report_row *a = &r->rows[g->rows[0]];
    const char *pm = et_json_str(et_json_get(a->result, "primary"), "metric", "");
    for (int k = 1; k < g->n; k++) {
        const et_report_row *b = &r->rows[g->rows[k]];
        const char *bm = et_json_str(et_json_get(b->result, "primary"), "metric", "");
        if (strcmp(pm, bm) || primary_higher(a->result) != primary_higher(b->result))
            return et_fail(e, ET_EINPUT, "%s and %s: task %s with different primary metrics (%s, %s)", a->where,
                           b->where, g->task, pm, bm);
    }
    return 0;
}

/* Choose the group's metric (see et_report_finish) and set each row's value. */
static int group_metric(et_report *r, et_report_group *g, const char *metric, et_err *e) {
    int rc = check_primary(r, g, e);
    if (rc) return rc;
    const cJSON *r0 = r->rows[g->rows[0]].result;
    const char *pm = et_json_str(et_json_get(r0, "primary"), "metric", "");
    int have = 0, missing = -1;
    for (int k = 0; metric && k < g->n; k++) {
        if (cJSON_IsNumber(et_json_get(et_json_get(r->rows[g->rows[k]].result, "metrics"), metric))) have++;
        else if (missing < 0) missing = g->rows[k];
    }
    if (have > 0 && have < g->n)
        return et_fail(e, ET_EINPUT, "%s: no metrics.%s, which other results of task %s have", r->rows[missing].where,
                       metric, g->task);
    int frac = 0, higher = 1;
    int known = et_metric_info(have ? metric : pm, &higher, &frac) == 0;
    if (have && strcmp(metric, pm) && !known)
        return et_fail(e, ET_EUSAGE, "--metric %s: not known whether higher or lower is better", metric);
    g->metric = have ? metric : pm;
    g->higher_is_better = (have && strcmp(metric, pm)) ? higher : primary_higher(r0);
    g->fraction = frac;
    for (int k = 0; k < g->n; k++) {
        et_report_row *w = &r->rows[g->rows[k]];
        w->value = have ? et_json_num(et_json_get(w->result, "metrics"), metric) : et_json_num(et_json_get(w->result, "primary"), "value");
    }
    return 0;
}

/* Row indices of a group by bytes ascending, then name (insertion sort). */
static void group_sort(const et_report *r, et_report_group *g) {
    for (int a = 1; a < g->n; a++) {
        int x = g->rows[a], b = a;
        const et_report_row *w = &r->rows[x];
        while (b > 0) {
            const et_report_row *v = &r->rows[g->rows[b - 1]];
            if (v->bytes < w->bytes || (v->bytes == w->bytes && strcmp(v->name, w->name) <= 0)) break;
            g->rows[b] = g->rows[b - 1];
            b--;
        }
        g->rows[b] = x;
    }
}

static int group_frontier(et_report *r, et_report_group *g) {
    double *xy = malloc(sizeof *xy * 2 * (size_t)g->n);
    int *on = malloc(sizeof *on * (size_t)g->n);
    int rc = (!xy || !on) ? ET_ERUN : 0;
    for (int k = 0; !rc && k < g->n; k++) {
        xy[k] = r->rows[g->rows[k]].bytes;
        xy[g->n + k] = r->rows[g->rows[k]].value;
    }
    if (!rc) rc = et_pareto(g->n, xy, xy + g->n, g->higher_is_better, on);
    for (int k = 0; !rc && k < g->n; k++) r->rows[g->rows[k]].pareto = on[k];
    free(xy);
    free(on);
    return rc;
}

/* Assign each row to a group (task.name + task.data, first-seen order). */
static int make_groups(et_report *r) {
    r->groups = calloc((size_t)(r->n ? r->n : 1), sizeof *r->groups);
    if (!r->groups) return ET_ERUN;
    for (int i = 0; i < r->n; i++) {
        int g = 0;
        while (g < r->n_groups && !same_group(&r->rows[r->groups[g].rows[0]], &r->rows[i])) g++;
        et_report_group *G = &r->groups[g];
        if (g == r->n_groups) {
            r->n_groups++;
            G->task = r->rows[i].task;
            G->data = r->rows[i].data;
            if (!(G->rows = malloc(sizeof *G->rows * (size_t)r->n))) return ET_ERUN;
        }
        G->rows[G->n++] = i;
        r->rows[i].group = g;
    }
    return 0;
}

int et_report_finish(et_report *r, const char *metric, et_err *e) {
    for (int g = 0; g < r->n_groups; g++) free(r->groups[g].rows);
    free(r->groups);
    r->groups = NULL;
    r->n_groups = 0;
    if (make_groups(r)) return et_fail(e, ET_ERUN, "out of memory");
    for (int g = 0; g < r->n_groups; g++) {
        int rc = group_metric(r, &r->groups[g], metric, e);
        if (rc) return rc;
        group_sort(r, &r->groups[g]);
        if (group_frontier(r, &r->groups[g])) return et_fail(e, ET_ERUN, "out of memory");
    }
    return 0;
}

/* ================================================================ report.json */

static cJSON *row_json(const et_report_row *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", w->name);
    cJSON_AddStringToObject(o, "file", w->where);
    cJSON_AddNumberToObject(o, "bytes", w->bytes);
    et_json_num_or_null(o, "n_params", w->n_params);
    et_json_num_or_null(o, "tokens_per_s", w->tokens_per_s);
    et_json_num_or_null(o, "peak_rss_bytes", w->peak_rss);
    cJSON_AddNumberToObject(o, "value", w->value);
    cJSON_AddBoolToObject(o, "pareto", w->pareto);
    cJSON_AddItemToObject(o, "result", cJSON_Duplicate(w->result, 1));
    return o;
}

static cJSON *group_json(const et_report *r, const et_report_group *g) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "task", g->task);
    cJSON_AddStringToObject(o, "data", g->data);
    cJSON_AddStringToObject(o, "metric", g->metric);
    cJSON_AddBoolToObject(o, "higher_is_better", g->higher_is_better);
    cJSON *front = cJSON_AddArrayToObject(o, "frontier");
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    for (int k = 0; k < g->n; k++) {
        const et_report_row *w = &r->rows[g->rows[k]];
        if (w->pareto) cJSON_AddItemToArray(front, cJSON_CreateString(w->name));
        cJSON_AddItemToArray(rows, row_json(w));
    }
    return o;
}

static void utc_now(char buf[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

cJSON *et_report_json(const et_report *r, const char *title) {
    char now[32];
    utc_now(now);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "schema", ET_REPORT_SCHEMA);
    cJSON_AddStringToObject(o, "edgetune_version", ET_VERSION);
    cJSON_AddStringToObject(o, "created", now);
    cJSON_AddStringToObject(o, "title", title ? title : "");
    cJSON *tasks = cJSON_AddArrayToObject(o, "tasks");
    for (int g = 0; g < r->n_groups; g++) cJSON_AddItemToArray(tasks, group_json(r, &r->groups[g]));
    return o;
}

/* ================================================================ report.md */

static void fmt_value(double v, int fraction, char *buf, size_t n) {
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (fraction) snprintf(buf, n, "%.1f%%", 100.0 * v);
    else if (v == floor(v) && fabs(v) < 1e9) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.4g", v);
}

/* 812, 292.5K, 135.0M, 1.24B */
static void fmt_count(double v, char *buf, size_t n) {
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (v < 1e3) snprintf(buf, n, "%.0f", v);
    else if (v < 1e6) snprintf(buf, n, "%.1fK", v / 1e3);
    else if (v < 1e9) snprintf(buf, n, "%.1fM", v / 1e6);
    else snprintf(buf, n, "%.2fB", v / 1e9);
}

static void md_text(et_sbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '|') et_sbuf_printf(b, "\\|");
        else if (*s == '<') et_sbuf_printf(b, "&lt;");
        else if (*s == '>') et_sbuf_printf(b, "&gt;");
        else if (*s == '&') et_sbuf_printf(b, "&amp;");
        else if (*s == '\n' || *s == '\r') et_sbuf_printf(b, " ");
        else et_sbuf_printf(b, "%c", *s);
    }
}

#define MD_MAX_COLS 24

/* The group's metric, then every other number in the rows' metrics
 * objects in first-seen order (at most MD_MAX_COLS). */
static int md_columns(const et_report *r, const et_report_group *g, const char **col) {
    int n = 0;
    col[n++] = g->metric;
    for (int k = 0; k < g->n; k++) {
        const cJSON *m = et_json_get(r->rows[g->rows[k]].result, "metrics");
        for (const cJSON *c = m->child; c && n < MD_MAX_COLS; c = c->next) {
            if (!cJSON_IsNumber(c)) continue;
            int seen = 0;
            for (int i = 0; i < n; i++) seen |= !strcmp(col[i], c->string);
            if (!seen) col[n++] = c->string;
        }
    }
    return n;
}

static void md_row(et_sbuf *b, const et_report_row *w, const char **col, int ncol) {
    char s[64];
    et_sbuf_printf(b, "| %s | ", w->pareto ? "★" : "");
    md_text(b, w->name);
    for (int c = 0; c < ncol; c++) {
        int higher, frac;
        et_metric_info(col[c], &higher, &frac);
        fmt_value(et_json_num(et_json_get(w->result, "metrics"), col[c]), frac, s, sizeof s);
        et_sbuf_printf(b, " | %s", s);
    }
    et_human_bytes(w->bytes, s, sizeof s);
    et_sbuf_printf(b, " | %s", s);
    fmt_count(w->n_params, s, sizeof s);
    et_sbuf_printf(b, " | %s", s);
    if (isfinite(w->tokens_per_s)) et_sbuf_printf(b, " | %.1f", w->tokens_per_s);
    else et_sbuf_printf(b, " | -");
    if (isfinite(w->peak_rss)) et_human_bytes(w->peak_rss, s, sizeof s);
    et_sbuf_printf(b, " | %s |\n", isfinite(w->peak_rss) ? s : "-");
}

static void md_group(et_sbuf *b, const et_report *r, const et_report_group *g) {
    const char *col[MD_MAX_COLS];
    int ncol = md_columns(r, g, col);
    et_sbuf_printf(b, "\n## ");
    md_text(b, g->task);
    if (*g->data) {
        et_sbuf_printf(b, " — ");
        md_text(b, g->data);
    }
    et_sbuf_printf(b, "\n\n%s: %s is better; %d result%s.\n\n", g->metric, g->higher_is_better ? "higher" : "lower",
                   g->n, g->n == 1 ? "" : "s");
    et_sbuf_printf(b, "| Pareto | artifact");
    for (int c = 0; c < ncol; c++) et_sbuf_printf(b, " | %s", col[c]);
    et_sbuf_printf(b, " | size | params | tokens/s | peak RSS |\n|:-:|:--");
    for (int c = 0; c < ncol + 4; c++) et_sbuf_printf(b, "|--:");
    et_sbuf_printf(b, "|\n");
    for (int k = 0; k < g->n; k++) md_row(b, &r->rows[g->rows[k]], col, ncol);
}

char *et_report_markdown(const et_report *r, const char *title) {
    et_sbuf b = {0};
    et_sbuf_printf(&b, "# ");
    md_text(&b, title && *title ? title : "edgetune report");
    et_sbuf_printf(&b, "\n\n%d result%s on %d task%s. Size: bytes on disk, model + adapters (1 KB = 1000 bytes). "
                       "★: on the Pareto frontier of its task (no other artifact is both no larger and no worse "
                       "in the task's metric).\n\n![accuracy against size](report.svg)\n",
                   r->n, r->n == 1 ? "" : "s", r->n_groups, r->n_groups == 1 ? "" : "s");
    for (int g = 0; g < r->n_groups; g++) md_group(&b, r, &r->groups[g]);
    if (b.oom) {
        et_sbuf_free(&b);
        return NULL;
    }
    return b.s;
}

/* ================================================================ report.svg
 * One panel per task group, stacked: the metric (y, linear) against bytes
 * on disk (x, log10), the frontier as a step line, a label per point. */

#define SVG_W 900.0
#define SVG_TITLE_H 44.0
#define SVG_PANEL_H 460.0
#define SVG_PL 96.0   /* plot left */
#define SVG_PR 820.0  /* plot right (labels may run into the margin on its right) */
#define SVG_PT 70.0   /* plot top, from the panel's top */
#define SVG_PB 384.0  /* plot bottom, from the panel's top */

typedef struct frame {
    double x0, x1, y0, y1;      /* plot rectangle in pixels (y0 top) */
    double xlo, xhi, ylo, yhi;  /* data range: log10 bytes, metric */
} frame;

typedef struct box { double x, y, w, h; } box;

static double lg_bytes(double b) { return log10(b > 1 ? b : 1); }
static double fx(const frame *f, double bytes) {
    return f->x0 + (lg_bytes(bytes) - f->xlo) / (f->xhi - f->xlo) * (f->x1 - f->x0);
}
static double fy(const frame *f, double v) { return f->y1 - (v - f->ylo) / (f->yhi - f->ylo) * (f->y1 - f->y0); }

/* 1, 2 or 5 times a power of ten, near span/5. */
static double nice_step(double span) {
    double raw = span / 5, mag = pow(10, floor(log10(raw))), q = raw / mag;
    return (q < 1.5 ? 1 : q < 3.5 ? 2 : q < 7.5 ? 5 : 10) * mag;
}

static void svg_ranges(const et_report *r, const et_report_group *g, frame *f) {
    double xa = INFINITY, xb = -INFINITY, ya = INFINITY, yb = -INFINITY;
    for (int k = 0; k < g->n; k++) {
        const et_report_row *w = &r->rows[g->rows[k]];
        xa = fmin(xa, lg_bytes(w->bytes));
        xb = fmax(xb, lg_bytes(w->bytes));
        ya = fmin(ya, w->value);
        yb = fmax(yb, w->value);
    }
    double px = xb > xa ? fmax(0.15, 0.06 * (xb - xa)) : 0.5;
    f->xlo = xa - px;
    f->xhi = xb + px;
    if (xa - floor(xa) < 0.3) f->xlo = fmin(f->xlo, floor(xa) - 0.05); /* show the decade tick just below */
    if (ceil(xb) - xb < 0.3) f->xhi = fmax(f->xhi, ceil(xb) + 0.05);
    double py = yb > ya ? 0.12 * (yb - ya) : fmax(fabs(ya) * 0.05, 0.01);
    f->ylo = ya - py;
    f->yhi = yb + py;
    if (g->fraction && f->ylo < 0 && ya >= 0) f->ylo = 0;
    if (g->fraction && f->yhi > 1 && yb <= 1) f->yhi = 1;
}

static void svg_text(et_sbuf *b, double x, double y, const char *anchor, const char *style, const char *s) {
    et_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" %s>", x, y, anchor, style);
    et_sbuf_xml(b, s);
    et_sbuf_printf(b, "</text>\n");
}

static void svg_x_tick(et_sbuf *b, const frame *f, double bytes, int label) {
    double x = fx(f, bytes);
    if (label)
        et_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", x, f->y0, x,
                       f->y1);
    et_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", x, f->y1, x,
                   f->y1 + (label ? 6 : 3));
    if (!label) return;
    char s[32];
    et_human_bytes(bytes, s, sizeof s);
    svg_text(b, x, f->y1 + 19, "middle", "font-size=\"12\"", s);
}

/* Labels at 1x of each decade, plus 2x and 5x when fewer than three
 * decades show; unlabelled minor ticks at 2..9x.  When that still labels
 * fewer than three ticks (less than a decade), labels at a linear 1-2-5
 * step instead. */
static void svg_x_axis(et_sbuf *b, const frame *f) {
    int majors = 0, labels = 0;
    for (double d = ceil(f->xlo); d <= f->xhi; d++) majors++;
    for (double d = floor(f->xlo); d <= f->xhi; d++)
        for (int m = 1; m <= 9; m++) {
            double l = d + log10(m);
            labels += l >= f->xlo && l <= f->xhi && (m == 1 || (majors < 3 && (m == 2 || m == 5)));
        }
    if (labels < 3) {
        double lo = pow(10, f->xlo), hi = pow(10, f->xhi), step = nice_step(hi - lo);
        for (double v = ceil(lo / step) * step; v <= hi; v += step) svg_x_tick(b, f, v, 1);
        return;
    }
    for (double d = floor(f->xlo); d <= f->xhi; d++)
        for (int m = 1; m <= 9; m++) {
            double l = d + log10(m);
            if (l >= f->xlo && l <= f->xhi)
                svg_x_tick(b, f, m * pow(10, d), m == 1 || (majors < 3 && (m == 2 || m == 5)));
        }
}

static void svg_y_axis(et_sbuf *b, const frame *f, int fraction) {
    double step = nice_step(f->yhi - f->ylo);
    int dec = (int)fmax(0, ceil(-log10(fraction ? step * 100 : step) - 1e-9));
    for (double v = ceil(f->ylo / step) * step; v <= f->yhi + step * 1e-9; v += step) {
        double y = fy(f, v);
        char s[48];
        if (fraction) snprintf(s, sizeof s, "%.*f%%", dec, 100 * v + 0.0);
        else snprintf(s, sizeof s, "%.*f", dec, fabs(v) < step * 1e-6 ? 0.0 : v);
        et_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", f->x0, y,
                       f->x1, y);
        et_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n", f->x0 - 6, y,
                       f->x0, y);
        svg_text(b, f->x0 - 9, y + 4, "end", "font-size=\"12\"", s);
    }
}

/* Horizontal to the next frontier point's size, then vertical to its
 * value: the best metric reachable within a size budget. */
static void svg_frontier(et_sbuf *b, const et_report *r, const et_report_group *g, const frame *f) {
    int first = 1;
    for (int k = 0; k < g->n; k++) {
        const et_report_row *w = &r->rows[g->rows[k]];
        if (!w->pareto) continue;
        if (first) et_sbuf_printf(b, "<path d=\"M%.1f %.1f", fx(f, w->bytes), fy(f, w->value));
        else et_sbuf_printf(b, " H%.1f V%.1f", fx(f, w->bytes), fy(f, w->value));
        first = 0;
    }
    if (!first)
        et_sbuf_printf(b, " H%.1f\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" stroke-opacity=\"0.55\"/>\n",
                       f->x1);
}

static double box_overlap(box a, box c) {
    double w = fmin(a.x + a.w, c.x + c.w) - fmax(a.x, c.x), h = fmin(a.y + a.h, c.y + c.h) - fmax(a.y, c.y);
    return w > 0 && h > 0 ? w * h : 0;
}

static int utf8_chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* Label position for point (px, py): the first of a few offsets whose text
 * box hits no placed label, no point and stays in bounds; else the least bad. */
static box place_label(double px, double py, int nch, const box *taken, int ntaken, box bounds, const char **anchor) {
    static const struct { double dx, dy; const char *a; } c[] = {
        {8, -8, "start"}, {8, 16, "start"}, {-8, -8, "end"}, {-8, 16, "end"}, {0, -13, "middle"},
        {0, 23, "middle"}, {8, -22, "start"}, {8, 30, "start"}, {-8, -22, "end"}, {-8, 30, "end"}};
    double w = 6.4 * nch + 2, best = INFINITY;
    box pick = {0};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        double x = px + c[i].dx - (!strcmp(c[i].a, "end") ? w : !strcmp(c[i].a, "middle") ? w / 2 : 0);
        box t = {x, py + c[i].dy - 10, w, 13};
        double bad = (t.w * t.h - box_overlap(t, bounds)) * 4;
        for (int k = 0; k < ntaken; k++) bad += box_overlap(t, taken[k]);
        if (bad < best) {
            best = bad;
            pick = t;
            *anchor = c[i].a;
        }
        if (bad == 0) break;
    }
    return pick;
}

/* Points and their labels: frontier rows placed first, the rest after. */
static void svg_points(et_sbuf *b, const et_report *r, const et_report_group *g, const frame *f, box bounds) {
    box *taken = malloc(sizeof *taken * (size_t)(2 * g->n));
    if (!taken) { b->oom = 1; return; }
    for (int k = 0; k < g->n; k++) {
        const et_report_row *w = &r->rows[g->rows[k]];
        taken[k] = (box){fx(f, w->bytes) - 6, fy(f, w->value) - 6, 12, 12};
    }
    int nt = g->n;
    for (int pass = 1; pass >= 0; pass--) {
        for (int k = 0; k < g->n; k++) {
            const et_report_row *w = &r->rows[g->rows[k]];
            if (w->pareto != pass) continue;
            double px = fx(f, w->bytes), py = fy(f, w->value);
            char sz[32], val[48];
            et_human_bytes(w->bytes, sz, sizeof sz);
            fmt_value(w->value, g->fraction, val, sizeof val);
            et_sbuf_printf(b, "<g><title>");
            et_sbuf_xml(b, w->name);
            et_sbuf_printf(b, ": %s %s, %s</title><circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" %s/></g>\n", g->metric, val,
                           sz, px, py,
                           pass ? "fill=\"#1f77b4\" stroke=\"#0b3d66\"" : "fill=\"#fff\" stroke=\"#7f7f7f\" stroke-width=\"1.5\"");
            const char *anchor = "start";
            box t = place_label(px, py, utf8_chars(w->name), taken, nt, bounds, &anchor);
            taken[nt++] = t;
            double tx = !strcmp(anchor, "start") ? t.x + 1 : !strcmp(anchor, "end") ? t.x + t.w - 1 : t.x + t.w / 2;
            svg_text(b, tx, t.y + 10, anchor, pass ? "font-size=\"11\" fill=\"#0b3d66\"" : "font-size=\"11\" fill=\"#555\"",
                     w->name);
        }
    }
    free(taken);
}

/* The first word of a row's name: its series (--series). */
static size_t series_len(const char *name) {
    size_t n = strcspn(name, " ");
    return n ? n : strlen(name);
}

/* --series: one dashed line per series of two or more rows (bytes
 * ascending, as the group is), eight colours in turn, and a legend under
 * the panel's subtitle. */
static void svg_series(et_sbuf *b, const et_report *r, const et_report_group *g, const frame *f, double top) {
    static const char *const colour[] = {"#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                         "#8c564b", "#e377c2", "#17becf", "#bcbd22"};
    int n_series = 0;
    double lx = SVG_PL;
    for (int k = 0; k < g->n; k++) {
        const char *nk = r->rows[g->rows[k]].name;
        size_t lk = series_len(nk);
        int seen = 0, count = 0;
        for (int j = 0; j < g->n && !seen; j++) {
            const char *nj = r->rows[g->rows[j]].name;
            if (series_len(nj) == lk && !strncmp(nj, nk, lk)) {
                if (j < k) seen = 1;
                count++;
            }
        }
        if (seen || count < 2) continue;
        const char *c = colour[n_series++ % 8];
        int first = 1;
        for (int j = 0; j < g->n; j++) {
            const et_report_row *w = &r->rows[g->rows[j]];
            if (series_len(w->name) != lk || strncmp(w->name, nk, lk)) continue;
            et_sbuf_printf(b, first ? "<path d=\"M%.1f %.1f" : " L%.1f %.1f", fx(f, w->bytes), fy(f, w->value));
            first = 0;
        }
        et_sbuf_printf(b, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" stroke-dasharray=\"6 3\"/>\n", c);
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(lk < 60 ? lk : 60), nk);
        et_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\" "
                          "stroke-dasharray=\"6 3\"/>\n", lx, top + 60, lx + 22, top + 60, c);
        svg_text(b, lx + 26, top + 64, "start", "font-size=\"11\"", key);
        lx += 44 + 7.2 * utf8_chars(key);
    }
}

static void svg_panel(et_sbuf *b, const et_report *r, const et_report_group *g, double top) {
    frame f = {SVG_PL, SVG_PR, top + SVG_PT, top + SVG_PB, 0, 0, 0, 0};
    svg_ranges(r, g, &f);
    char head[1200];
    snprintf(head, sizeof head, "%s%s%s", g->task, *g->data ? " — " : "", g->data);
    svg_text(b, SVG_PL, top + 28, "start", "font-size=\"16\" font-weight=\"bold\"", head);
    snprintf(head, sizeof head, "%s, %s is better; %d result%s", g->metric, g->higher_is_better ? "higher" : "lower",
             g->n, g->n == 1 ? "" : "s");
    svg_text(b, SVG_PL, top + 48, "start", "font-size=\"12\" fill=\"#555\"", head);
    et_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#1f77b4\" stroke=\"#0b3d66\"/>\n", SVG_PR - 170,
                   top + 44);
    svg_text(b, SVG_PR - 160, top + 48, "start", "font-size=\"12\"", "Pareto frontier");
    et_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#fff\" stroke=\"#7f7f7f\" stroke-width=\"1.5\"/>\n",
                   SVG_PR - 55, top + 44);
    svg_text(b, SVG_PR - 45, top + 48, "start", "font-size=\"12\"", "other");
    svg_x_axis(b, &f);
    svg_y_axis(b, &f, g->fraction);
    et_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
                   f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
    svg_text(b, (f.x0 + f.x1) / 2, f.y1 + 42, "middle", "font-size=\"13\"", "bytes on disk (log scale)");
    snprintf(head, sizeof head, "%s (%s is better)", g->metric, g->higher_is_better ? "higher" : "lower");
    et_sbuf_printf(b, "<text transform=\"translate(28 %.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">",
                   (f.y0 + f.y1) / 2);
    et_sbuf_xml(b, head);
    et_sbuf_printf(b, "</text>\n");
    if (r->series) svg_series(b, r, g, &f, top);
    svg_frontier(b, r, g, &f);
    svg_points(b, r, g, &f, (box){f.x0 + 2, f.y0 - 12, SVG_W - 4 - f.x0, f.y1 - f.y0 + 10});
}

char *et_report_svg(const et_report *r, const char *title) {
    et_sbuf b = {0};
    double h = SVG_TITLE_H + SVG_PANEL_H * (r->n_groups ? r->n_groups : 1);
    et_sbuf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                       "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
                       "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
                   SVG_W, h, SVG_W, h);
    svg_text(&b, SVG_W / 2, 30, "middle", "font-size=\"20\" font-weight=\"bold\"",
             title && *title ? title : "edgetune report: accuracy against size");
    if (!r->n_groups) svg_text(&b, SVG_W / 2, SVG_TITLE_H + 60, "middle", "font-size=\"14\"", "no results");
    for (int g = 0; g < r->n_groups; g++) {
        double top = SVG_TITLE_H + g * SVG_PANEL_H;
        if (g) et_sbuf_printf(&b, "<line x1=\"20\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\"/>\n", top,
                              SVG_W - 20, top);
        svg_panel(&b, r, &r->groups[g], top);
    }
    et_sbuf_printf(&b, "</svg>\n");
    if (b.oom) {
        et_sbuf_free(&b);
        return NULL;
    }
    return b.s;
}

/* ================================================================ writing */

int et_mkdir_p(const char *dir, et_err *e) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return et_fail(e, ET_ERUN, "%s: path too long", dir);
    for (char *s = p + 1; ; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST) return et_fail(e, ET_ERUN, "%s: cannot create: %s", p, strerror(errno));
        *s = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return et_fail(e, ET_ERUN, "%s: not a directory", dir);
    return 0;
}

static int write_doc(const char *dir, const char *name, char *text, et_err *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!text) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    int rc = et_write_text(path, text, e);
    free(text);
    return rc;
}

int et_report_write(const et_report *r, const char *dir, const char *title, et_err *e) {
    int rc = et_mkdir_p(dir, e);
    if (rc) return rc;
    cJSON *j = et_report_json(r, title);
    char *txt = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    size_t n = txt ? strlen(txt) : 0;
    char *txt2 = txt ? realloc(txt, n + 2) : NULL;
    if (txt2) memcpy(txt2 + n, "\n", 2);
    else free(txt);
    rc = write_doc(dir, "report.json", txt2, e);
    if (!rc) rc = write_doc(dir, "report.md", et_report_markdown(r, title), e);
    if (!rc) rc = write_doc(dir, "report.svg", et_report_svg(r, title), e);
    return rc;
}

/* ================================================================ sweeps */

static char *own(et_sweep *s, char *p) {
    if (!p) return NULL;
    if (s->n_owned == s->cap_owned) {
        int cap = s->cap_owned ? 2 * s->cap_owned : 16;
        char **o = realloc(s->owned, sizeof *o * (size_t)cap);
        if (!o) { free(p); return NULL; }
        s->owned = o;
        s->cap_owned = cap;
    }
    return s->owned[s->n_owned++] = p;
}

void et_sweep_free(et_sweep *s) {
    for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
    for (int i = 0; s->files && i < s->n_tasks * s->n_artifacts; i++) free(s->files[i]);
    free(s->owned);
    free(s->files);
    free(s->jobs);
    cJSON_Delete(s->root);
    memset(s, 0, sizeof *s);
}

/* A string, or a list of strings joined with commas (labels, classes). */
static int sw_list(et_sweep *s, const cJSON *v, const char **out) {
    if (cJSON_IsString(v)) { *out = v->valuestring; return 0; }
    if (!cJSON_IsArray(v)) return -1;
    et_sbuf b = {0};
    et_sbuf_printf(&b, "%s", "");
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!cJSON_IsString(c)) { et_sbuf_free(&b); return -1; }
        et_sbuf_printf(&b, "%s%s", c == v->child ? "" : ",", c->valuestring);
    }
    if (b.oom || !own(s, b.s)) { if (b.oom) et_sbuf_free(&b); return -2; }
    *out = b.s;
    return 0;
}

static int sw_int(const cJSON *v, int *out) {
    if (cJSON_IsBool(v)) { *out = cJSON_IsTrue(v); return 0; }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2e9) return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int sw_stop(et_eval_opts *o, const cJSON *v) {
    o->n_stop = 0;
    if (cJSON_IsString(v)) { o->stop[o->n_stop++] = v->valuestring; return 0; }
    if (!cJSON_IsArray(v)) return -1;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!cJSON_IsString(c) || o->n_stop == ET_EVAL_MAX_STOP) return -1;
        o->stop[o->n_stop++] = c->valuestring;
    }
    return 0;
}

/* One key of a task object into o: 0, -1 wrong type, -2 out of memory, -3 unknown. */
static int sw_task_key(et_sweep *s, et_eval_opts *o, const char *k, const cJSON *v) {
    const char **str = !strcmp(k, "task") ? &o->task : !strcmp(k, "data") ? &o->data
                       : !strcmp(k, "scoring") ? &o->scoring : !strcmp(k, "split") ? &o->split
                       : !strcmp(k, "ref") ? &o->ref : !strcmp(k, "template") ? &o->template_
                       : !strcmp(k, "isa") ? &o->isa : NULL;
    if (str) {
        if (!cJSON_IsString(v)) return -1;
        *str = v->valuestring;
        return 0;
    }
    if (!strcmp(k, "labels")) return sw_list(s, v, &o->labels);
    if (!strcmp(k, "classes")) return sw_list(s, v, &o->classes);
    if (!strcmp(k, "stop")) return sw_stop(o, v);
    int *i = !strcmp(k, "label_first") ? &o->label_first : !strcmp(k, "skip_long") ? &o->skip_long
             : !strcmp(k, "n_predict") ? &o->n_predict : (!strcmp(k, "ctx") || !strcmp(k, "n_ctx")) ? &o->n_ctx
             : (!strcmp(k, "threads") || !strcmp(k, "n_threads")) ? &o->n_threads : NULL;
    if (i) return sw_int(v, i);
    if (!strcmp(k, "kv_type")) {
        if (!cJSON_IsString(v) || (strcasecmp(v->valuestring, "F16") && strcasecmp(v->valuestring, "F32"))) return -1;
        o->kv_f16 = !strcasecmp(v->valuestring, "F16");
        return 0;
    }
    if (!strcmp(k, "max_records") || !strcmp(k, "max")) {
        int n;
        if (sw_int(v, &n) || n < 0) return -1;
        o->max_records = n;
        return 0;
    }
    return -3;
}

static int sw_fail(const char *path, const char *what, int i, const char *key, int why, et_err *e) {
    if (why == -2) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    return et_fail(e, ET_EINPUT, "%s: %s[%d]: %s \"%s\"", path, what, i,
                   why == -3 ? "unknown key" : why == -4 ? "missing key" : "wrong type or value for", key);
}

/* dashes to underscores, as the flag parser does */
static void norm_key(const char *k, char *out, size_t n) {
    snprintf(out, n, "%s", k);
    for (char *p = out; *p; p++) if (*p == '-') *p = '_';
}

static int sw_task(et_sweep *s, const cJSON *t, int ti, et_eval_opts *o, const char *path, et_err *e) {
    if (!cJSON_IsObject(t)) return et_fail(e, ET_EINPUT, "%s: tasks[%d] is not an object", path, ti);
    for (const cJSON *c = t->child; c; c = c->next) {
        char k[64];
        norm_key(c->string, k, sizeof k);
        int why = sw_task_key(s, o, k, c);
        if (why) return sw_fail(path, "tasks", ti, c->string, why, e);
    }
    if (!cJSON_IsString(et_json_get(t, "task"))) return sw_fail(path, "tasks", ti, "task", -4, e);
    return 0;
}

/* "path[:scale]": the suffix after the last ':' is a scale when it parses
 * completely as a finite number (as `edgetune merge` and --lora read it). */
static int sw_lora_one(et_sweep *s, et_eval_opts *o, const char *arg) {
    if (o->n_lora == ET_EVAL_MAX_LORA) return -1;
    char *p = own(s, strdup(arg));
    if (!p) return -2;
    float scale = 1.0f;
    char *colon = strrchr(p, ':'), *end;
    if (colon && colon[1]) {
        errno = 0;
        double v = strtod(colon + 1, &end);
        if (!*end && !errno && isfinite(v)) { scale = (float)v; *colon = 0; }
    }
    o->lora[o->n_lora] = p;
    o->lora_scale[o->n_lora++] = scale;
    return 0;
}

static int sw_lora(et_sweep *s, et_eval_opts *o, const cJSON *v) {
    if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next) {
            int rc = cJSON_IsString(c) ? sw_lora_one(s, o, c->valuestring) : -1;
            if (rc) return rc;
        }
        return 0;
    }
    if (!cJSON_IsString(v)) return -1;
    char *list = own(s, strdup(v->valuestring)), *save = NULL;
    if (!list) return -2;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int rc = sw_lora_one(s, o, tok);
        if (rc) return rc;
    }
    return 0;
}

static int sw_artifact(et_sweep *s, const cJSON *a, int ai, et_eval_opts *o, const char *path, et_err *e) {
    if (!cJSON_IsObject(a)) return et_fail(e, ET_EINPUT, "%s: artifacts[%d] is not an object", path, ai);
    for (const cJSON *c = a->child; c; c = c->next) {
        int why = -3;
        if (!strcmp(c->string, "name") || !strcmp(c->string, "model")) {
            why = cJSON_IsString(c) && *c->valuestring ? 0 : -1;
            if (!why) *(!strcmp(c->string, "name") ? &o->name : &o->model) = c->valuestring;
        } else if (!strcmp(c->string, "lora")) {
            why = sw_lora(s, o, c);
        }
        if (why) return sw_fail(path, "artifacts", ai, c->string, why, e);
    }
    if (!o->model) return sw_fail(path, "artifacts", ai, "model", -4, e);
    if (!o->name) { /* the model file's name without .gguf */
        const char *base = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
        char *n = own(s, strdup(base));
        if (!n) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        size_t len = strlen(n);
        if (len > 5 && !strcmp(n + len - 5, ".gguf")) n[len - 5] = 0;
        o->name = n;
    }
    return 0;
}

/* File-safe copy: [A-Za-z0-9._+-] kept, anything else '_'. */
static void safe_name(et_sbuf *b, const char *s) {
    for (; *s; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._+-", c);
        et_sbuf_printf(b, "%c", ok ? c : '_');
    }
}

static int sw_files(et_sweep *s, const et_eval_opts *art, const et_eval_opts *task, const char *path, et_err *e) {
    int nj = s->n_artifacts * s->n_tasks;
    if (!(s->files = calloc((size_t)nj, sizeof *s->files))) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    for (int j = 0; j < nj; j++) {
        int a = j / s->n_tasks, t = j % s->n_tasks, dup = 0;
        for (int u = 0; u < s->n_tasks; u++) dup += !strcmp(task[u].task, task[t].task);
        et_sbuf b = {0};
        safe_name(&b, art[a].name);
        et_sbuf_printf(&b, "__");
        safe_name(&b, task[t].task);
        if (dup > 1) et_sbuf_printf(&b, "_%d", t + 1);
        et_sbuf_printf(&b, ".json");
        if (b.oom) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        s->files[j] = b.s;
        for (int k = 0; k < j; k++)
            if (!strcmp(s->files[k], b.s))
                return et_fail(e, ET_EINPUT, "%s: artifacts \"%s\" and \"%s\" would both be written to evals/%s", path,
                               art[k / s->n_tasks].name, art[a].name, b.s);
    }
    return 0;
}

static int sw_build(et_sweep *s, const et_eval_opts *def, const char *path, et_err *e) {
    const cJSON *tasks = et_json_get(s->root, "tasks"), *arts = et_json_get(s->root, "artifacts");
    for (const cJSON *c = s->root->child; c; c = c->next)
        if (strcmp(c->string, "tasks") && strcmp(c->string, "artifacts"))
            return et_fail(e, ET_EINPUT, "%s: unknown key \"%s\" (expected \"tasks\" and \"artifacts\")", path, c->string);
    if (!cJSON_IsArray(tasks) || !cJSON_GetArraySize(tasks))
        return et_fail(e, ET_EINPUT, "%s: \"tasks\" must be a non-empty array", path);
    if (!cJSON_IsArray(arts) || !cJSON_GetArraySize(arts))
        return et_fail(e, ET_EINPUT, "%s: \"artifacts\" must be a non-empty array", path);
    s->n_tasks = cJSON_GetArraySize(tasks);
    s->n_artifacts = cJSON_GetArraySize(arts);
    et_eval_opts *tk = calloc((size_t)(s->n_tasks + s->n_artifacts), sizeof *tk), *ar = tk + s->n_tasks;
    s->jobs = calloc((size_t)(s->n_tasks * s->n_artifacts), sizeof *s->jobs);
    int rc = (!tk || !s->jobs) ? et_fail(e, ET_ERUN, "%s: out of memory", path) : 0, i = 0;
    for (const cJSON *t = tasks->child; !rc && t; t = t->next, i++) {
        tk[i] = *def;
        rc = sw_task(s, t, i, &tk[i], path, e);
        for (int k = 0; !rc && k < i; k++) /* a report groups by task and data: they would collide */
            if (!strcmp(tk[k].task, tk[i].task) && !strcmp(tk[k].data ? tk[k].data : "", tk[i].data ? tk[i].data : ""))
                rc = et_fail(e, ET_EINPUT, "%s: tasks[%d] and tasks[%d] are both %s on the same data (a report has one "
                             "table per task and data)", path, k, i, tk[i].task);
    }
    i = 0;
    for (const cJSON *a = arts->child; !rc && a; a = a->next, i++) {
        ar[i] = (et_eval_opts){0};
        rc = sw_artifact(s, a, i, &ar[i], path, e);
        for (int k = 0; !rc && k < i; k++)
            if (!strcmp(ar[k].name, ar[i].name))
                rc = et_fail(e, ET_EINPUT, "%s: artifacts[%d] and artifacts[%d] are both named \"%s\"", path, k, i,
                             ar[i].name);
    }
    if (!rc) rc = sw_files(s, ar, tk, path, e);
    for (int j = 0; !rc && j < s->n_tasks * s->n_artifacts; j++) {
        et_eval_opts *o = &s->jobs[j];
        const et_eval_opts *a = &ar[j / s->n_tasks];
        *o = tk[j % s->n_tasks];
        o->model = a->model;
        o->name = a->name;
        o->n_lora = a->n_lora;
        memcpy(o->lora, a->lora, sizeof o->lora);
        memcpy(o->lora_scale, a->lora_scale, sizeof o->lora_scale);
    }
    free(tk);
    return rc;
}

int et_sweep_read(const char *path, const et_eval_opts *defaults, et_sweep *s, et_err *e) {
    memset(s, 0, sizeof *s);
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    s->root = m.size ? cJSON_ParseWithLength((const char *)m.data, m.size) : NULL;
    et_map_close(&m);
    if (!cJSON_IsObject(s->root)) rc = et_fail(e, ET_EINPUT, "%s: not a JSON object (a sweep file)", path);
    if (!rc) rc = sw_build(s, defaults, path, e);
    if (rc) et_sweep_free(s);
    return rc;
}
