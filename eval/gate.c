/* eval/gate.c — the CI regression gate: policy, pairing, checks, JUnit and
 * JSON verdicts.  See gate.h; the reference is docs/report_gate.md. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate.h"

const char *const et_gate_limit_names[ET_GATE_NLIMITS] = {
    "max_acc_drop", "max_ppl_ratio", "max_kl", "max_bytes", "max_bytes_ratio", "min_tokens_per_s", "min_speed_ratio"};

/* Slack for comparing a value with its limit: a drop of 1.0000000000000009
 * points is within a limit of 1. */
#define EPS 1e-9

/* ================================================================ policy */

int et_gate_limit_index(const char *key) {
    for (int k = 0; k < ET_GATE_NLIMITS; k++) if (!strcmp(et_gate_limit_names[k], key)) return k;
    return -1;
}

static int limit_ok(int k, double v) {
    if (!isfinite(v)) return 0;
    if (k == ET_GATE_MAX_PPL_RATIO || k == ET_GATE_MAX_BYTES_RATIO || k == ET_GATE_MIN_SPEED_RATIO) return v > 0;
    if (k == ET_GATE_MAX_ACC_DROP) return 1;
    return v >= 0;
}

int et_gate_limit_parse(int k, const char *text, double *out) {
    double v;
    if (k == ET_GATE_MAX_BYTES) {
        if (et_parse_bytes(text, &v)) return -1;
    } else {
        char *end;
        errno = 0;
        v = strtod(text, &end);
        if (end == text || *end || errno) return -1;
    }
    if (!limit_ok(k, v)) return -1;
    *out = v;
    return 0;
}

static void limits_unset(double lim[ET_GATE_NLIMITS]) {
    for (int k = 0; k < ET_GATE_NLIMITS; k++) lim[k] = NAN;
}

void et_gate_policy_init(et_gate_policy *p) {
    memset(p, 0, sizeof *p);
    limits_unset(p->flags);
    limits_unset(p->def);
}

static void scopes_free(et_gate_scope *s, int n) {
    for (int i = 0; i < n; i++) free(s[i].name);
    free(s);
}

void et_gate_policy_free(et_gate_policy *p) {
    scopes_free(p->tasks, p->n_tasks);
    scopes_free(p->artifacts, p->n_artifacts);
    et_gate_policy_init(p);
}

/* {"max_acc_drop": 1, ...} into lim; `where` says which object it is. */
static int read_limits(const cJSON *o, double lim[ET_GATE_NLIMITS], const char *path, const char *where, et_err *e) {
    if (!cJSON_IsObject(o)) return et_fail(e, ET_EINPUT, "%s: %s is not an object", path, where);
    for (const cJSON *c = o->child; c; c = c->next) {
        char key[64];
        snprintf(key, sizeof key, "%s", c->string);
        for (char *q = key; *q; q++) if (*q == '-') *q = '_';
        int k = et_gate_limit_index(key);
        if (k < 0)
            return et_fail(e, ET_EINPUT, "%s: %s: unknown key \"%s\" (known: max_acc_drop, max_ppl_ratio, max_kl, "
                                         "max_bytes, max_bytes_ratio, min_tokens_per_s, min_speed_ratio)",
                           path, where, c->string);
        int bad = cJSON_IsNumber(c) ? !limit_ok(k, c->valuedouble) : -1;
        if (bad == 0) lim[k] = c->valuedouble;
        else if (cJSON_IsString(c) && k == ET_GATE_MAX_BYTES) bad = et_gate_limit_parse(k, c->valuestring, &lim[k]);
        if (bad) return et_fail(e, ET_EINPUT, "%s: %s: bad value for \"%s\"", path, where, c->string);
    }
    return 0;
}

static int read_scopes(const cJSON *o, const char *what, et_gate_scope **out, int *n, const char *path, et_err *e) {
    if (!cJSON_IsObject(o)) return et_fail(e, ET_EINPUT, "%s: \"%s\" is not an object", path, what);
    if (*out) return et_fail(e, ET_EINPUT, "%s: \"%s\" given twice", path, what);
    int cnt = cJSON_GetArraySize(o), i = 0;
    *out = calloc((size_t)(cnt ? cnt : 1), sizeof **out);
    if (!*out) return et_fail(e, ET_ERUN, "%s: out of memory", path);
    for (const cJSON *c = o->child; c; c = c->next, i++) {
        char where[256];
        snprintf(where, sizeof where, "\"%s\".\"%.200s\"", what, c->string);
        limits_unset((*out)[i].lim);
        (*out)[i].name = strdup(c->string);
        *n = i + 1;
        if (!(*out)[i].name) return et_fail(e, ET_ERUN, "%s: out of memory", path);
        int rc = read_limits(c, (*out)[i].lim, path, where, e);
        if (rc) return rc;
    }
    return 0;
}

static int policy_build(et_gate_policy *q, const cJSON *j, const char *path, et_err *e) {
    if (!cJSON_IsObject(j)) return et_fail(e, ET_EINPUT, "%s: not a JSON object (a gate policy)", path);
    for (const cJSON *c = j->child; c; c = c->next) {
        int rc;
        if (!strcmp(c->string, "default")) rc = read_limits(c, q->def, path, "\"default\"", e);
        else if (!strcmp(c->string, "tasks")) rc = read_scopes(c, "tasks", &q->tasks, &q->n_tasks, path, e);
        else if (!strcmp(c->string, "artifacts"))
            rc = read_scopes(c, "artifacts", &q->artifacts, &q->n_artifacts, path, e);
        else
            rc = et_fail(e, ET_EINPUT, "%s: unknown key \"%s\" (known: default, tasks, artifacts)", path, c->string);
        if (rc) return rc;
    }
    return 0;
}

int et_gate_policy_read(et_gate_policy *p, const char *path, et_err *e) {
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    cJSON *j = m.size ? cJSON_ParseWithLength((const char *)m.data, m.size) : NULL;
    et_map_close(&m);
    et_gate_policy q;
    et_gate_policy_init(&q);
    memcpy(q.flags, p->flags, sizeof q.flags);
    rc = policy_build(&q, j, path, e);
    cJSON_Delete(j);
    if (rc) {
        et_gate_policy_free(&q);
        return rc;
    }
    et_gate_policy_free(p);
    *p = q;
    return 0;
}

static const et_gate_scope *find_scope(const et_gate_scope *s, int n, const char *name) {
    for (int i = 0; i < n; i++) if (!strcmp(s[i].name, name)) return &s[i];
    return NULL;
}

void et_gate_resolve(const et_gate_policy *p, const char *artifact, const char *task, double out[ET_GATE_NLIMITS]) {
    const et_gate_scope *a = find_scope(p->artifacts, p->n_artifacts, artifact);
    const et_gate_scope *t = find_scope(p->tasks, p->n_tasks, task);
    for (int k = 0; k < ET_GATE_NLIMITS; k++) {
        out[k] = p->flags[k];
        if (isnan(out[k]) && a) out[k] = a->lim[k];
        if (isnan(out[k]) && t) out[k] = t->lim[k];
        if (isnan(out[k])) out[k] = p->def[k];
    }
}

int et_gate_policy_any(const et_gate_policy *p) {
    int any = 0;
    for (int k = 0; k < ET_GATE_NLIMITS; k++) {
        any |= !isnan(p->flags[k]) || !isnan(p->def[k]);
        for (int i = 0; i < p->n_tasks; i++) any |= !isnan(p->tasks[i].lim[k]);
        for (int i = 0; i < p->n_artifacts; i++) any |= !isnan(p->artifacts[i].lim[k]);
    }
    return any;
}

/* ================================================================ pairing */

static const char *rname(const cJSON *r) { return et_json_str(r, "name", ""); }
static const char *rtask(const cJSON *r) { return et_json_str(et_json_get(r, "task"), "name", ""); }

/* Same data: the sha256 when both results have one, else the path. */
static int same_data(const cJSON *a, const cJSON *b) {
    const cJSON *ta = et_json_get(a, "task"), *tb = et_json_get(b, "task");
    const char *sa = et_json_str(ta, "data_sha256", NULL), *sb = et_json_str(tb, "data_sha256", NULL);
    if (sa && sb) return !strcmp(sa, sb);
    return !strcmp(et_json_str(ta, "data", ""), et_json_str(tb, "data", ""));
}

/* level 3: same name, task and data; 2: name and task; 1: name. */
static int same_key(const cJSON *a, const cJSON *b, int level) {
    if (strcmp(rname(a), rname(b))) return 0;
    if (level >= 2 && strcmp(rtask(a), rtask(b))) return 0;
    return level < 3 || same_data(a, b);
}

static int find_dup(const et_result_list *l, const char *side, et_err *e) {
    for (int i = 0; i < l->n; i++)
        for (int j = i + 1; j < l->n; j++)
            if (same_key(l->res[i], l->res[j], 3))
                return et_fail(e, ET_EINPUT, "%s and %s: two %s results for \"%s\" on task %s with the same data",
                               l->where[i], l->where[j], side, rname(l->res[i]), rtask(l->res[i]));
    return 0;
}

/* Pair each unpaired current result with the only unpaired baseline of the
 * same key, when it is also the only unpaired current result of that key. */
static void match_level(const et_result_list *b, const et_result_list *c, int *bm, int *cm, int level) {
    for (int i = 0; i < c->n; i++) {
        if (cm[i] >= 0) continue;
        int hit = -1, nb = 0, nc = 0;
        for (int j = 0; j < b->n; j++)
            if (bm[j] < 0 && same_key(b->res[j], c->res[i], level)) { hit = j; nb++; }
        for (int k = 0; k < c->n; k++) nc += cm[k] < 0 && same_key(c->res[k], c->res[i], level);
        if (nb == 1 && nc == 1) { cm[i] = hit; bm[hit] = i; }
    }
}

/* Keys of "task" that are not settings: the name, the data (compared on
 * their own), paths, and counts that follow from the data. */
static int is_setting(const char *k) {
    static const char *const skip[] = {"name", "data", "data_sha256", "ref", "samples", "records", "scored",
                                       "skipped", "truncated", "tokens", "documents", NULL};
    for (const char *const *s = skip; *s; s++) if (!strcmp(*s, k)) return 0;
    return 1;
}

static void short_json(const cJSON *v, char *buf, size_t n) {
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    if (!v) snprintf(buf, n, "absent");
    else snprintf(buf, n, "%.60s%s", t ? t : "?", t && strlen(t) > 60 ? "..." : "");
    free(t);
}

/* The first setting of one task object that the other lacks or differs in. */
static const char *setting_differs(const cJSON *x, const cJSON *y) {
    for (const cJSON *k = x ? x->child : NULL; k; k = k->next)
        if (is_setting(k->string) && !cJSON_Compare(k, et_json_get(y, k->string), 1)) return k->string;
    return NULL;
}

/* Why b and c may not be compared (into why), or 0 when they may. */
static int pair_differs(const cJSON *b, const cJSON *c, char *why, size_t n) {
    const cJSON *tb = et_json_get(b, "task"), *tc = et_json_get(c, "task");
    if (strcmp(rtask(b), rtask(c))) {
        snprintf(why, n, "the task differs (baseline %s, current %s)", rtask(b), rtask(c));
        return 1;
    }
    if (!same_data(b, c)) {
        const char *sb = et_json_str(tb, "data_sha256", NULL), *sc = et_json_str(tc, "data_sha256", NULL);
        if (sb && sc) snprintf(why, n, "the data differs (task.data_sha256 %.12s... vs %.12s...; %s, %s)", sb, sc,
                               et_json_str(tb, "data", "?"), et_json_str(tc, "data", "?"));
        else snprintf(why, n, "the data differs (%s vs %s)", et_json_str(tb, "data", "none"), et_json_str(tc, "data", "none"));
        return 1;
    }
    double vb = et_json_num(et_json_get(et_json_get(b, "artifact"), "model"), "n_vocab"), vc = et_json_num(et_json_get(et_json_get(c, "artifact"), "model"), "n_vocab");
    if (!isnan(vb) && !isnan(vc) && vb != vc) {
        snprintf(why, n, "the model vocabulary differs (n_vocab %.0f vs %.0f)", vb, vc);
        return 1;
    }
    const char *k = setting_differs(tb, tc);
    if (!k) k = setting_differs(tc, tb);
    if (k) {
        char vb_s[80], vc_s[80];
        short_json(et_json_get(tb, k), vb_s, sizeof vb_s);
        short_json(et_json_get(tc, k), vc_s, sizeof vc_s);
        snprintf(why, n, "task setting \"%s\" differs (baseline %s, current %s)", k, vb_s, vc_s);
        return 1;
    }
    return 0;
}

/* bm[j]: the current result paired with baseline j, cm[i]: the baseline of
 * current i; -1 when none.  ET_EINPUT for a pair that may not be compared. */
static int pair_all(const et_result_list *b, const et_result_list *c, int *bm, int *cm, et_err *e) {
    int rc = find_dup(b, "baseline", e);
    if (!rc) rc = find_dup(c, "current", e);
    if (rc) return rc;
    for (int j = 0; j < b->n; j++) bm[j] = -1;
    for (int i = 0; i < c->n; i++) cm[i] = -1;
    for (int level = 3; level >= 1; level--) match_level(b, c, bm, cm, level);
    for (int i = 0; i < c->n; i++) {
        char why[512];
        if (cm[i] >= 0 && pair_differs(b->res[cm[i]], c->res[i], why, sizeof why))
            return et_fail(e, ET_EINPUT, "cannot compare %s with baseline %s (\"%s\"): %s", c->where[i],
                           b->where[cm[i]], rname(c->res[i]), why);
    }
    return 0;
}

/* ================================================================ checks */

typedef struct spec {
    int status;
    const char *artifact, *task, *metric, *kind;
    double b, c, chg, thr;
    char bt[48], ct[48], cht[48], tt[64], msg[768];
} spec;

static void check_free(et_gate_check *k) {
    free(k->artifact);
    free(k->task);
    free(k->metric);
    free(k->kind);
    free(k->baseline_txt);
    free(k->current_txt);
    free(k->change_txt);
    free(k->threshold_txt);
    free(k->message);
}

void et_gate_free(et_gate_result *g) {
    for (int i = 0; i < g->n; i++) check_free(&g->checks[i]);
    free(g->checks);
    memset(g, 0, sizeof *g);
}

static int push(et_gate_result *g, const spec *s) {
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        et_gate_check *c = realloc(g->checks, sizeof *c * (size_t)cap);
        if (!c) return ET_ERUN;
        g->checks = c;
        g->cap = cap;
    }
    et_gate_check *k = &g->checks[g->n];
    *k = (et_gate_check){s->status, strdup(s->artifact), strdup(s->task), strdup(s->metric), strdup(s->kind),
                         s->b, s->c, s->chg, s->thr, strdup(s->bt), strdup(s->ct), strdup(s->cht), strdup(s->tt),
                         strdup(s->msg)};
    if (!k->artifact || !k->task || !k->metric || !k->kind || !k->baseline_txt || !k->current_txt ||
        !k->change_txt || !k->threshold_txt || !k->message) {
        check_free(k);
        return ET_ERUN;
    }
    g->n++;
    if (s->status == ET_GATE_NEW) g->n_new++;
    else {
        g->n_checks++;
        if (s->status == ET_GATE_PASS) g->n_passed++;
        else g->n_failed++;
    }
    return 0;
}

enum { V_FRAC, V_NUM, V_BYTES };

static void fmt(double v, int vk, char *buf, size_t n) {
    if (isnan(v)) snprintf(buf, n, "-");
    else if (vk == V_FRAC) snprintf(buf, n, "%.2f%%", 100.0 * v);
    else if (vk == V_BYTES) et_human_bytes(v, buf, n);
    else if (fabs(v) >= 1000) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.4g", v);
}

static spec spec_for(const cJSON *c, const char *metric, const char *kind) {
    spec s = {ET_GATE_PASS, rname(c), rtask(c), metric, kind, NAN, NAN, NAN, NAN, "-", "-", "-", "-", ""};
    return s;
}

static int check_acc(et_gate_result *g, const cJSON *b, const cJSON *c, double thr) {
    static const char *const acc[] = {"accuracy", "macro_f1", "exact_match", "acc", "acc_norm", NULL};
    for (const char *const *m = acc; *m; m++) {
        double bv = et_json_num(et_json_get(b, "metrics"), *m), cv = et_json_num(et_json_get(c, "metrics"), *m);
        if (isnan(bv) || isnan(cv)) continue;
        spec s = spec_for(c, *m, "max_acc_drop");
        s.b = bv, s.c = cv, s.chg = 100.0 * (cv - bv), s.thr = thr;
        fmt(bv, V_FRAC, s.bt, sizeof s.bt);
        fmt(cv, V_FRAC, s.ct, sizeof s.ct);
        snprintf(s.cht, sizeof s.cht, "%+.2f pts", s.chg);
        snprintf(s.tt, sizeof s.tt, "drop <= %g pts", thr);
        if (-s.chg > thr + EPS) {
            s.status = ET_GATE_FAIL;
            snprintf(s.msg, sizeof s.msg, "%s (%s): %s fell %.2f points (%s -> %s), more than the %g allowed",
                     s.artifact, s.task, *m, -s.chg, s.bt, s.ct, thr);
        }
        if (push(g, &s)) return ET_ERUN;
    }
    return 0;
}

/* current / baseline against a limit: at most thr (is_max) or at least. */
static int check_ratio(et_gate_result *g, spec s, int is_max, int vk) {
    fmt(s.b, vk, s.bt, sizeof s.bt);
    fmt(s.c, vk, s.ct, sizeof s.ct);
    snprintf(s.tt, sizeof s.tt, "ratio %s %g", is_max ? "<=" : ">=", s.thr);
    if (isnan(s.b) || isnan(s.c)) {
        s.status = ET_GATE_FAIL;
        snprintf(s.msg, sizeof s.msg, "%s (%s): no %s in the %s result", s.artifact, s.task, s.metric,
                 isnan(s.c) ? "current" : "baseline");
        return push(g, &s);
    }
    s.chg = s.b > 0 ? s.c / s.b : s.c == 0 ? 1 : INFINITY;
    snprintf(s.cht, sizeof s.cht, "x%.3f", s.chg);
    if (is_max ? s.chg > s.thr + EPS : s.chg < s.thr - EPS) {
        s.status = ET_GATE_FAIL;
        snprintf(s.msg, sizeof s.msg, "%s (%s): %s went from %s to %s (x%.3f), %s the ratio %g allowed", s.artifact,
                 s.task, s.metric, s.bt, s.ct, s.chg, is_max ? "above" : "below", s.thr);
    }
    return push(g, &s);
}

/* The current value against a limit: at most thr (is_max) or at least. */
static int check_abs(et_gate_result *g, spec s, int is_max, int vk) {
    fmt(s.b, vk, s.bt, sizeof s.bt);
    fmt(s.c, vk, s.ct, sizeof s.ct);
    char lim[48];
    fmt(s.thr, vk, lim, sizeof lim);
    snprintf(s.tt, sizeof s.tt, "%s %s", is_max ? "<=" : ">=", lim);
    if (isnan(s.c)) {
        s.status = ET_GATE_FAIL;
        snprintf(s.msg, sizeof s.msg, "%s (%s): no %s in the current result", s.artifact, s.task, s.metric);
        return push(g, &s);
    }
    s.chg = s.c - s.b; /* printed relative for sizes and speeds, as a difference for kl_mean */
    if (isnan(s.chg)) snprintf(s.cht, sizeof s.cht, "-");
    else if (!strcmp(s.metric, "kl_mean")) snprintf(s.cht, sizeof s.cht, "%+.4g", s.chg);
    else if (s.b > 0) snprintf(s.cht, sizeof s.cht, "%+.1f%%", 100.0 * s.chg / s.b);
    else snprintf(s.cht, sizeof s.cht, "-");
    if (is_max ? s.c > s.thr + EPS : s.c < s.thr - EPS) {
        s.status = ET_GATE_FAIL;
        snprintf(s.msg, sizeof s.msg, "%s (%s): %s is %s, %s the limit %s", s.artifact, s.task, s.metric, s.ct,
                 is_max ? "above" : "below", lim);
    }
    return push(g, &s);
}

static double tps(const cJSON *r) { return et_json_num(et_json_get(r, "speed"), "tokens_per_s"); }
static double bytes(const cJSON *r) { return et_json_num(et_json_get(r, "artifact"), "bytes"); }
static double metric(const cJSON *r, const char *m) { return et_json_num(et_json_get(r, "metrics"), m); }

static spec spec_vals(const cJSON *c, const char *m, int k, double bv, double cv, const double *lim) {
    spec s = spec_for(c, m, et_gate_limit_names[k]);
    s.b = bv, s.c = cv, s.thr = lim[k];
    return s;
}

/* Every check whose limit is set and whose metric the pair has. */
static int pair_checks(et_gate_result *g, const cJSON *b, const cJSON *c, const double *lim) {
    int rc = 0;
    if (!isnan(lim[ET_GATE_MAX_ACC_DROP])) rc = check_acc(g, b, c, lim[ET_GATE_MAX_ACC_DROP]);
    if (!rc && !isnan(lim[ET_GATE_MAX_PPL_RATIO]) && !isnan(metric(b, "ppl")) && !isnan(metric(c, "ppl")))
        rc = check_ratio(g, spec_vals(c, "ppl", ET_GATE_MAX_PPL_RATIO, metric(b, "ppl"), metric(c, "ppl"), lim), 1, V_NUM);
    if (!rc && !isnan(lim[ET_GATE_MAX_KL]) && !isnan(metric(c, "kl_mean")))
        rc = check_abs(g, spec_vals(c, "kl_mean", ET_GATE_MAX_KL, metric(b, "kl_mean"), metric(c, "kl_mean"), lim), 1,
                       V_NUM);
    if (!rc && !isnan(lim[ET_GATE_MAX_BYTES]))
        rc = check_abs(g, spec_vals(c, "bytes", ET_GATE_MAX_BYTES, bytes(b), bytes(c), lim), 1, V_BYTES);
    if (!rc && !isnan(lim[ET_GATE_MAX_BYTES_RATIO]))
        rc = check_ratio(g, spec_vals(c, "bytes", ET_GATE_MAX_BYTES_RATIO, bytes(b), bytes(c), lim), 1, V_BYTES);
    if (!rc && !isnan(lim[ET_GATE_MIN_TOKENS_PER_S]))
        rc = check_abs(g, spec_vals(c, "tokens_per_s", ET_GATE_MIN_TOKENS_PER_S, tps(b), tps(c), lim), 0, V_NUM);
    if (!rc && !isnan(lim[ET_GATE_MIN_SPEED_RATIO]))
        rc = check_ratio(g, spec_vals(c, "tokens_per_s", ET_GATE_MIN_SPEED_RATIO, tps(b), tps(c), lim), 0, V_NUM);
    return rc;
}

static int push_new(et_gate_result *g, const cJSON *c, const char *where) {
    spec s = spec_for(c, "-", "new");
    s.status = ET_GATE_NEW;
    snprintf(s.msg, sizeof s.msg, "%s (%s): new result (%s), no baseline to compare with", s.artifact, s.task, where);
    return push(g, &s);
}

static int push_missing(et_gate_result *g, const cJSON *b, const char *where) {
    spec s = spec_for(b, "-", "missing");
    s.status = ET_GATE_FAIL;
    snprintf(s.bt, sizeof s.bt, "present");
    snprintf(s.ct, sizeof s.ct, "missing");
    snprintf(s.msg, sizeof s.msg, "%s (%s): baseline %s has no current result", s.artifact, s.task, where);
    return push(g, &s);
}

static int gate_fill(et_gate_result *g, const et_result_list *b, const et_result_list *c, const int *bm,
                     const int *cm, const et_gate_policy *p) {
    int rc = 0;
    for (int i = 0; !rc && i < c->n; i++) {
        double lim[ET_GATE_NLIMITS];
        et_gate_resolve(p, rname(c->res[i]), rtask(c->res[i]), lim);
        if (cm[i] < 0) rc = push_new(g, c->res[i], c->where[i]);
        else rc = pair_checks(g, b->res[cm[i]], c->res[i], lim);
    }
    for (int j = 0; !rc && j < b->n; j++)
        if (bm[j] < 0) rc = push_missing(g, b->res[j], b->where[j]);
    return rc;
}

int et_gate_run(const et_result_list *base, const et_result_list *cur, const et_gate_policy *p, et_gate_result *out,
                et_err *e) {
    memset(out, 0, sizeof *out);
    int *bm = malloc(sizeof *bm * (size_t)(base->n + 1)), *cm = malloc(sizeof *cm * (size_t)(cur->n + 1));
    int rc = (!bm || !cm) ? et_fail(e, ET_ERUN, "out of memory") : pair_all(base, cur, bm, cm, e);
    if (!rc && gate_fill(out, base, cur, bm, cm, p)) rc = et_fail(e, ET_ERUN, "out of memory");
    free(bm);
    free(cm);
    if (rc) {
        et_gate_free(out);
        return rc;
    }
    return out->n_failed ? ET_ECHECK : 0;
}

/* ================================================================ verdicts */

int et_gate_write_junit(const et_gate_result *g, const char *path, et_err *e) {
    et_sbuf b = {0};
    et_sbuf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                       "<testsuites name=\"edgetune gate\" tests=\"%d\" failures=\"%d\" skipped=\"%d\">\n"
                       "  <testsuite name=\"edgetune gate\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"%d\">\n",
                   g->n, g->n_failed, g->n_new, g->n, g->n_failed, g->n_new);
    for (int i = 0; i < g->n; i++) {
        const et_gate_check *k = &g->checks[i];
        et_sbuf_printf(&b, "    <testcase classname=\"");
        et_sbuf_xml(&b, k->artifact);
        et_sbuf_printf(&b, ".");
        et_sbuf_xml(&b, k->task);
        et_sbuf_printf(&b, "\" name=\"");
        if (strcmp(k->metric, "-")) { /* "accuracy max_acc_drop"; "missing" / "new" alone */
            et_sbuf_xml(&b, k->metric);
            et_sbuf_printf(&b, " ");
        }
        et_sbuf_xml(&b, k->kind);
        if (k->status == ET_GATE_PASS) { et_sbuf_printf(&b, "\"/>\n"); continue; }
        et_sbuf_printf(&b, "\">\n      <%s message=\"", k->status == ET_GATE_NEW ? "skipped" : "failure");
        et_sbuf_xml(&b, k->message);
        if (k->status == ET_GATE_NEW) { et_sbuf_printf(&b, "\"/>\n    </testcase>\n"); continue; }
        et_sbuf_printf(&b, "\" type=\"%s\">baseline ", k->kind);
        et_sbuf_xml(&b, k->baseline_txt);
        et_sbuf_printf(&b, ", current ");
        et_sbuf_xml(&b, k->current_txt);
        et_sbuf_printf(&b, ", change ");
        et_sbuf_xml(&b, k->change_txt);
        et_sbuf_printf(&b, ", threshold ");
        et_sbuf_xml(&b, k->threshold_txt);
        et_sbuf_printf(&b, "</failure>\n    </testcase>\n");
    }
    et_sbuf_printf(&b, "  </testsuite>\n</testsuites>\n");
    int rc = b.oom ? et_fail(e, ET_ERUN, "%s: out of memory", path) : et_write_text(path, b.s, e);
    et_sbuf_free(&b);
    return rc;
}

cJSON *et_gate_json(const et_gate_result *g) {
    static const char *const status[] = {"pass", "fail", "new"};
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "schema", "edgetune.gate/1");
    cJSON_AddStringToObject(o, "edgetune_version", ET_VERSION);
    cJSON_AddBoolToObject(o, "pass", g->n_failed == 0);
    cJSON_AddNumberToObject(o, "checks", g->n_checks);
    cJSON_AddNumberToObject(o, "passed", g->n_passed);
    cJSON_AddNumberToObject(o, "failed", g->n_failed);
    cJSON_AddNumberToObject(o, "new", g->n_new);
    cJSON *arr = cJSON_AddArrayToObject(o, "results");
    for (int i = 0; i < g->n; i++) {
        const et_gate_check *k = &g->checks[i];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "status", status[k->status]);
        cJSON_AddStringToObject(c, "artifact", k->artifact);
        cJSON_AddStringToObject(c, "task", k->task);
        cJSON_AddStringToObject(c, "metric", k->metric);
        cJSON_AddStringToObject(c, "kind", k->kind);
        et_json_num_or_null(c, "baseline", k->baseline);
        et_json_num_or_null(c, "current", k->current);
        et_json_num_or_null(c, "change", k->change);
        et_json_num_or_null(c, "threshold", k->threshold);
        cJSON_AddStringToObject(c, "message", k->message);
        cJSON_AddItemToArray(arr, c);
    }
    return o;
}
