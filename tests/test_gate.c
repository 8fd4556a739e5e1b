/* tests/test_gate.c — `edgetune gate` (eval/gate.h) on the fixture results
 * of tests/data/eval/, changed in memory:
 *  - a pass (also exactly at a limit) returns 0;
 *  - each threshold kind, pushed over its limit, returns ET_ECHECK with the
 *    right failing row (and passes under a looser limit);
 *  - refusals (ET_EINPUT): another task, other data, another vocabulary, a
 *    task setting; a changed model is what a gate compares, so it pairs;
 *  - missing baselines fail, new results do not;
 *  - policies: precedence flags > artifact > task > default, unknown keys
 *    and bad values named;
 *  - JUnit XML (escaped, the failure message) and the JSON verdict;
 *  - ./edgetune gate: exit 0, 4, 1, 2, the table's last line, report.json
 *    as a baseline. */
#include "testutil.h"

#include <math.h>
#include <sys/wait.h>

#include "../eval/gate.h"

#define FX "tests/data/eval/"


/* ------------------------------------------------------------ results */

static cJSON *load(const char *fixture) {
    char *txt = test_slurp(fixture);
    assert_non_null(txt);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    return j;
}

static cJSON *obj(cJSON *j, const char *key) {
    cJSON *o = cJSON_GetObjectItem(j, key);
    assert_non_null(o);
    return o;
}

static void set(cJSON *o, const char *key, double v) {
    cJSON *n = cJSON_GetObjectItem(o, key);
    if (n) cJSON_SetNumberValue(n, v);
    else cJSON_AddNumberToObject(o, key, v);
}

/* metrics[m] = v, and primary.value when m is the primary metric */
static void set_metric(cJSON *r, const char *m, double v) {
    set(obj(r, "metrics"), m, v);
    if (!strcmp(cJSON_GetObjectItem(obj(r, "primary"), "metric")->valuestring, m)) set(obj(r, "primary"), "value", v);
}

static void set_bytes(cJSON *r, double v) { set(obj(r, "artifact"), "bytes", v); }
static void set_tps(cJSON *r, double v) { set(obj(r, "speed"), "tokens_per_s", v); }
static double metric(cJSON *r, const char *m) { return cJSON_GetObjectItem(obj(r, "metrics"), m)->valuedouble; }

static void add(et_result_list *l, cJSON *r, const char *where) {
    et_err e = {0};
    assert_int_equal(et_result_list_add(l, r, where, &e), 0);
}

/* Run the gate on one baseline and one current result (both consumed). */
static int gate1(cJSON *b, cJSON *c, const et_gate_policy *p, et_gate_result *g, et_err *e) {
    et_result_list lb = {0}, lc = {0};
    add(&lb, b, "base.json");
    add(&lc, c, "cur.json");
    int rc = et_gate_run(&lb, &lc, p, g, e);
    et_result_list_free(&lb);
    et_result_list_free(&lc);
    return rc;
}

static et_gate_policy flag(int k, double v) {
    et_gate_policy p;
    et_gate_policy_init(&p);
    p.flags[k] = v;
    return p;
}

static const et_gate_check *find(const et_gate_result *g, const char *metric, const char *kind) {
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->checks[i].metric, metric) && !strcmp(g->checks[i].kind, kind)) return &g->checks[i];
    return NULL;
}

/* ------------------------------------------------------------ pass / fail */

static void test_pass(void **state) {
    (void)state;
    cJSON *b = load(FX "cls_merged_q4_k_m.json"), *c = cJSON_Duplicate(b, 1);
    set_metric(c, "accuracy", 0.897);
    set_metric(c, "macro_f1", 0.891); /* exactly 1 point lower: at the limit, which holds */
    et_gate_policy p = flag(ET_GATE_MAX_ACC_DROP, 1.0);
    et_gate_result g;
    et_err e = {0};
    assert_int_equal(gate1(b, c, &p, &g, &e), 0);
    assert_int_equal(g.n_checks, 2);
    assert_int_equal(g.n_passed, 2);
    assert_int_equal(g.n_failed, 0);
    const et_gate_check *k = find(&g, "accuracy", "max_acc_drop");
    assert_non_null(k);
    assert_int_equal(k->status, ET_GATE_PASS);
    assert_true(fabs(k->change - -0.5) < 1e-9);
    assert_string_equal(k->change_txt, "-0.50 pts");
    assert_string_equal(k->baseline_txt, "90.20%");
    assert_string_equal(k->current_txt, "89.70%");
    assert_string_equal(k->artifact, "merged-q4_k_m");
    assert_string_equal(k->task, "classify");
    et_gate_free(&g);
}

typedef struct kind_case {
    const char *fixture;
    void (*change)(cJSON *b, cJSON *c);
    int k;
    double fail_at, pass_at;
    const char *metric;
} kind_case;

static void worse_acc(cJSON *b, cJSON *c) { (void)b; set_metric(c, "accuracy", 0.880); }
static void worse_ppl(cJSON *b, cJSON *c) { set_metric(c, "ppl", metric(b, "ppl") * 1.10); }
static void as_kl(cJSON *r, double kl) {
    cJSON_SetValuestring(obj(obj(r, "task"), "name"), "kl");
    cJSON_ReplaceItemInObject(r, "metrics", cJSON_CreateObject());
    set(obj(r, "metrics"), "kl_mean", kl);
    set(obj(r, "metrics"), "same_top1", 0.93);
    cJSON_SetValuestring(obj(obj(r, "primary"), "metric"), "kl_mean");
    set(obj(r, "primary"), "value", kl);
}
static void worse_kl(cJSON *b, cJSON *c) { as_kl(b, 0.02); as_kl(c, 0.08); }
static void bigger(cJSON *b, cJSON *c) { (void)b; set_bytes(c, 105.47e6 * 1.2); }
static void slower(cJSON *b, cJSON *c) { (void)b; set_tps(c, 121.0 * 0.8); }

static void test_each_threshold_fails(void **state) {
    (void)state;
    const kind_case cases[] = {
        {FX "cls_merged_q4_k_m.json", worse_acc, ET_GATE_MAX_ACC_DROP, 1.0, 2.5, "accuracy"},
        {FX "ppl_merged_q4_k_m.json", worse_ppl, ET_GATE_MAX_PPL_RATIO, 1.05, 1.10, "ppl"},
        {FX "ppl_merged_q4_k_m.json", worse_kl, ET_GATE_MAX_KL, 0.05, 0.08, "kl_mean"},
        {FX "cls_merged_q4_k_m.json", bigger, ET_GATE_MAX_BYTES, 100e6, 130e6, "bytes"},
        {FX "cls_merged_q4_k_m.json", bigger, ET_GATE_MAX_BYTES_RATIO, 1.1, 1.2, "bytes"},
        {FX "cls_merged_q4_k_m.json", slower, ET_GATE_MIN_TOKENS_PER_S, 100, 96.8, "tokens_per_s"},
        {FX "cls_merged_q4_k_m.json", slower, ET_GATE_MIN_SPEED_RATIO, 0.9, 0.8, "tokens_per_s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const kind_case *t = &cases[i];
        for (int pass = 0; pass <= 1; pass++) {
            cJSON *b = load(t->fixture), *c = cJSON_Duplicate(b, 1);
            t->change(b, c);
            et_gate_policy p = flag(t->k, pass ? t->pass_at : t->fail_at);
            et_gate_result g;
            et_err e = {0};
            int rc = gate1(b, c, &p, &g, &e);
            if (rc != (pass ? 0 : ET_ECHECK)) fail_msg("case %s pass=%d: rc %d %s", et_gate_limit_names[t->k], pass, rc, e.msg);
            const et_gate_check *k = find(&g, t->metric, et_gate_limit_names[t->k]);
            if (!k) fail_msg("case %s: no %s row", et_gate_limit_names[t->k], t->metric);
            assert_int_equal(k->status, pass ? ET_GATE_PASS : ET_GATE_FAIL);
            assert_int_equal(g.n_failed, pass ? 0 : 1);
            assert_int_equal(g.n_checks, t->k == ET_GATE_MAX_ACC_DROP ? 2 : 1); /* accuracy and macro_f1 */
            if (!pass) assert_non_null(strstr(k->message, t->metric));
            else assert_string_equal(k->message, "");
            et_gate_free(&g);
        }
    }
}

static void test_speed_missing_fails(void **state) {
    (void)state;
    cJSON *b = load(FX "cls_merged_q4_k_m.json"), *c = cJSON_Duplicate(b, 1);
    cJSON_DeleteItemFromObject(obj(c, "speed"), "tokens_per_s");
    et_gate_policy p = flag(ET_GATE_MIN_TOKENS_PER_S, 10);
    et_gate_result g;
    et_err e = {0};
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_ECHECK);
    assert_non_null(strstr(g.checks[0].message, "no tokens_per_s in the current result"));
    et_gate_free(&g);
}

/* ------------------------------------------------------------ refusals */

static void test_refusals(void **state) {
    (void)state;
    et_gate_policy p = flag(ET_GATE_MAX_ACC_DROP, 1.0);
    et_gate_result g;
    et_err e = {0};
    /* another task, same artifact name */
    assert_int_equal(gate1(load(FX "ppl_merged_q4_k_m.json"), load(FX "cls_merged_q4_k_m.json"), &p, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "the task differs (baseline perplexity, current classify)"));
    assert_non_null(strstr(e.msg, "cur.json"));
    assert_non_null(strstr(e.msg, "base.json"));
    assert_int_equal(g.n, 0);
    /* other data */
    cJSON *b = load(FX "cls_merged_q4_k_m.json"), *c = cJSON_Duplicate(b, 1);
    cJSON_SetValuestring(obj(obj(c, "task"), "data_sha256"), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "the data differs"));
    /* another vocabulary */
    b = load(FX "cls_merged_q4_k_m.json");
    c = cJSON_Duplicate(b, 1);
    set(obj(obj(c, "artifact"), "model"), "n_vocab", 32000);
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "n_vocab 49152 vs 32000"));
    /* a task setting: the template; then one only the current has */
    b = load(FX "cls_merged_q4_k_m.json");
    c = cJSON_Duplicate(b, 1);
    cJSON_SetValuestring(obj(obj(c, "task"), "template"), "{text}\n");
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "task setting \"template\" differs"));
    b = load(FX "cls_merged_q4_k_m.json");
    c = cJSON_Duplicate(b, 1);
    cJSON_AddStringToObject(obj(c, "task"), "scoring", "llama");
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "\"scoring\""));
    /* counts and the model may differ */
    b = load(FX "cls_merged_q4_k_m.json");
    c = cJSON_Duplicate(b, 1);
    set(obj(c, "task"), "skipped", 3);
    cJSON_SetValuestring(obj(obj(obj(c, "artifact"), "model"), "sha256"), "feedface");
    cJSON_SetValuestring(obj(obj(c, "task"), "data"), "/elsewhere/sst2_test.tsv"); /* same sha256 */
    assert_int_equal(gate1(b, c, &p, &g, &e), 0);
    et_gate_free(&g);
    /* the same result twice on one side */
    et_result_list lb = {0}, lc = {0};
    add(&lb, load(FX "cls_tiny.json"), "a.json");
    add(&lc, load(FX "cls_tiny.json"), "b.json");
    add(&lc, load(FX "cls_tiny.json"), "c.json");
    assert_int_equal(et_gate_run(&lb, &lc, &p, &g, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "b.json and c.json"));
    et_result_list_free(&lb);
    et_result_list_free(&lc);
    /* NaN never gets in */
    assert_int_equal(et_result_list_add_file(&lb, FX "nan.json", &e), ET_EINPUT);
}

static void test_missing_and_new(void **state) {
    (void)state;
    et_result_list lb = {0}, lc = {0};
    add(&lb, load(FX "cls_merged_q4_k_m.json"), "b1");
    add(&lb, load(FX "cls_merged_q8_0.json"), "b2");
    add(&lb, load(FX "ppl_merged_q4_k_m.json"), "b3");
    add(&lc, load(FX "ppl_merged_q4_k_m.json"), "c0");
    add(&lc, load(FX "cls_merged_q4_k_m.json"), "c1");
    add(&lc, load(FX "cls_pruned_q4_k_m.json"), "c2");
    et_gate_policy p = flag(ET_GATE_MAX_BYTES_RATIO, 1.0);
    et_gate_result g;
    et_err e = {0};
    assert_int_equal(et_gate_run(&lb, &lc, &p, &g, &e), ET_ECHECK);
    assert_int_equal(g.n_new, 1);
    assert_int_equal(g.n_checks, 3); /* two pairs' bytes ratio, one missing */
    assert_int_equal(g.n_failed, 1);
    const et_gate_check *m = find(&g, "-", "missing");
    assert_non_null(m);
    assert_string_equal(m->artifact, "merged-q8_0");
    assert_int_equal(m->status, ET_GATE_FAIL);
    const et_gate_check *n = find(&g, "-", "new");
    assert_non_null(n);
    assert_string_equal(n->artifact, "pruned-distilled-q4_k_m");
    assert_int_equal(n->status, ET_GATE_NEW);
    et_gate_free(&g);
    et_result_list_free(&lb);
    et_result_list_free(&lc);
}

/* ------------------------------------------------------------ policies */

static void test_policy(void **state) {
    (void)state;
    test_spit(test_tmp("policy.json"), "{\"default\": {\"max_acc_drop\": 5, \"max_bytes\": \"300M\"},\n"
                             " \"tasks\": {\"classify\": {\"max_acc_drop\": 2, \"max-ppl-ratio\": 1.2}},\n"
                             " \"artifacts\": {\"merged-q4_k_m\": {\"max_acc_drop\": 0.5}}}\n");
    et_gate_policy p;
    et_gate_policy_init(&p);
    assert_false(et_gate_policy_any(&p));
    et_err e = {0};
    if (et_gate_policy_read(&p, test_tmp("policy.json"), &e)) fail_msg("%s", e.msg);
    assert_true(et_gate_policy_any(&p));
    double lim[ET_GATE_NLIMITS];
    et_gate_resolve(&p, "merged-q4_k_m", "classify", lim);
    assert_true(lim[ET_GATE_MAX_ACC_DROP] == 0.5);
    assert_true(lim[ET_GATE_MAX_PPL_RATIO] == 1.2);
    assert_true(lim[ET_GATE_MAX_BYTES] == 3e8);
    assert_true(isnan(lim[ET_GATE_MAX_KL]));
    et_gate_resolve(&p, "merged-q8_0", "classify", lim);
    assert_true(lim[ET_GATE_MAX_ACC_DROP] == 2);
    et_gate_resolve(&p, "merged-q8_0", "choice", lim);
    assert_true(lim[ET_GATE_MAX_ACC_DROP] == 5);
    assert_true(isnan(lim[ET_GATE_MAX_PPL_RATIO]));
    p.flags[ET_GATE_MAX_ACC_DROP] = 1; /* the command line wins over everything */
    et_gate_resolve(&p, "merged-q4_k_m", "classify", lim);
    assert_true(lim[ET_GATE_MAX_ACC_DROP] == 1);
    /* the artifact's tighter limit fails a drop the task's limit allows */
    p.flags[ET_GATE_MAX_ACC_DROP] = NAN;
    cJSON *b = load(FX "cls_merged_q4_k_m.json"), *c = cJSON_Duplicate(b, 1);
    set_metric(c, "accuracy", 0.895);
    et_gate_result g;
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_ECHECK);
    assert_string_equal(find(&g, "accuracy", "max_acc_drop")->threshold_txt, "drop <= 0.5 pts");
    et_gate_free(&g);
    /* a failed read keeps the flags and changes nothing else */
    p.flags[ET_GATE_MAX_KL] = 0.1;
    struct { const char *json, *want; } bad[] = {
        {"{\"default\": {\"max_acc\": 1}}", "\"max_acc\""},
        {"{\"tasks\": {\"classify\": {\"min_accuracy\": 0.9}}}", "\"min_accuracy\""},
        {"{\"artifacts\": {\"q4\": {\"max_kl\": 0.1, \"maxkl\": 1}}}", "\"maxkl\""},
        {"{\"defaults\": {}}", "\"defaults\""},
        {"{\"default\": {\"max_ppl_ratio\": 0}}", "\"max_ppl_ratio\""},
        {"{\"default\": {\"max_acc_drop\": \"1\"}}", "\"max_acc_drop\""},
        {"{\"default\": {\"max_bytes\": \"12X\"}}", "\"max_bytes\""},
        {"{\"tasks\": [1]}", "\"tasks\""},
        {"not json", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_spit(test_tmp("bad_policy.json"), bad[i].json);
        assert_int_equal(et_gate_policy_read(&p, test_tmp("bad_policy.json"), &e), ET_EINPUT);
        if (!strstr(e.msg, bad[i].want) || !strstr(e.msg, "bad_policy.json")) fail_msg("case %zu: %s", i, e.msg);
    }
    assert_true(p.flags[ET_GATE_MAX_KL] == 0.1);
    assert_true(p.def[ET_GATE_MAX_ACC_DROP] == 5);
    assert_int_equal(p.n_artifacts, 1);
    et_gate_policy_free(&p);
    /* flag values */
    double v;
    assert_int_equal(et_gate_limit_parse(ET_GATE_MAX_BYTES, "1.5G", &v), 0);
    assert_true(v == 1.5e9);
    assert_int_equal(et_gate_limit_parse(ET_GATE_MAX_ACC_DROP, "-0.5", &v), 0);
    assert_int_equal(et_gate_limit_parse(ET_GATE_MIN_SPEED_RATIO, "0", &v), -1);
    assert_int_equal(et_gate_limit_parse(ET_GATE_MAX_KL, "nan", &v), -1);
    assert_int_equal(et_gate_limit_parse(ET_GATE_MAX_KL, "0.1x", &v), -1);
    assert_int_equal(et_gate_limit_index("min_tokens_per_s"), ET_GATE_MIN_TOKENS_PER_S);
    assert_int_equal(et_gate_limit_index("bogus"), -1);
}

/* ------------------------------------------------------------ verdicts */

static void test_junit_and_json(void **state) {
    (void)state;
    cJSON *b = load(FX "cls_tiny.json"), *c = cJSON_Duplicate(b, 1);
    set_metric(c, "accuracy", 0.60);
    et_gate_policy p = flag(ET_GATE_MAX_ACC_DROP, 1.0);
    et_gate_result g;
    et_err e = {0};
    assert_int_equal(gate1(b, c, &p, &g, &e), ET_ECHECK);
    if (et_gate_write_junit(&g, test_tmp("gate.xml"), &e)) fail_msg("%s", e.msg);
    char *x = test_slurp(test_tmp("gate.xml"));
    assert_non_null(x);
    assert_non_null(strstr(x, "<testsuites name=\"edgetune gate\" tests=\"2\" failures=\"1\""));
    assert_non_null(strstr(x, "<testcase classname=\"tiny-distilled-q8_0 &lt;r=8&gt; &amp; &quot;qat&quot;.classify\" "
                              "name=\"accuracy max_acc_drop\">"));
    assert_non_null(strstr(x, "<failure message=\"tiny-distilled-q8_0 &lt;r=8&gt; &amp; &quot;qat&quot; (classify): "
                              "accuracy fell 3.10 points (63.10% -&gt; 60.00%), more than the 1 allowed\""));
    assert_non_null(strstr(x, "name=\"macro_f1 max_acc_drop\"/>"));
    int open = 0, close = 0;
    for (const char *s = x; (s = strstr(s, "<testcase")); s++) open++;
    for (const char *s = x; (s = strstr(s, "</testcase>")); s++) close++;
    assert_int_equal(open, 2);
    assert_int_equal(close, 1); /* the passing one is <testcase .../> */
    if (access("/usr/bin/xmllint", X_OK) == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "xmllint --noout %s", test_tmp("gate.xml"));
        assert_int_equal(test_run(cmd), 0);
    }
    free(x);
    cJSON *j = et_gate_json(&g);
    assert_non_null(j);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "pass")));
    assert_int_equal(cJSON_GetObjectItem(j, "failed")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "checks")->valueint, 2);
    cJSON *r0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
    assert_string_equal(cJSON_GetObjectItem(r0, "status")->valuestring, "fail");
    assert_string_equal(cJSON_GetObjectItem(r0, "metric")->valuestring, "accuracy");
    assert_true(fabs(cJSON_GetObjectItem(r0, "change")->valuedouble - -3.1) < 1e-9);
    assert_true(cJSON_GetObjectItem(r0, "threshold")->valuedouble == 1.0);
    cJSON_Delete(j);
    et_gate_free(&g);
}

/* ------------------------------------------------------------ the command */

static void write_json(const char *path, cJSON *j) {
    char *t = cJSON_Print(j);
    test_spit(path, t);
    free(t);
    cJSON_Delete(j);
}

static void test_cli_gate(void **state) {
    (void)state;
    if (!test_have_edgetune()) skip();
    cJSON *c = load(FX "cls_merged_q4_k_m.json");
    set_metric(c, "accuracy", 0.885);
    write_json(test_tmp("cur_bad.json"), c);
    char cmd[4096];
    /* pass */
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline " FX "cls_merged_q4_k_m.json --current " FX
             "cls_merged_q4_k_m.json --max-acc-drop 1 --max-bytes 200M --junit %s --json %s",
             test_tmp("ok.xml"), test_tmp("ok.json"));
    assert_int_equal(test_run(cmd), 0);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "artifact"));
    assert_non_null(strstr(log, "PASS"));
    size_t n = strlen(log);
    assert_true(n > 2 && log[n - 1] == '\n');
    log[n - 1] = 0;
    assert_string_equal(strrchr(log, '\n') + 1, "gate: 3 checks, 3 passed, 0 failed");
    free(log);
    assert_int_equal(access(test_tmp("ok.xml"), R_OK), 0);
    assert_int_equal(access(test_tmp("ok.json"), R_OK), 0);
    /* fail: exit 4, the row and the JUnit failure */
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline " FX "cls_merged_q4_k_m.json --current %s --max-acc-drop 1 "
             "--junit %s", test_tmp("cur_bad.json"), test_tmp("bad.xml"));
    assert_int_equal(test_run(cmd), ET_ECHECK);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "accuracy fell 1.70 points"));
    assert_non_null(strstr(log, "gate: 2 checks, 1 passed, 1 failed\n"));
    free(log);
    log = test_slurp(test_tmp("bad.xml"));
    assert_non_null(strstr(log, "<failure message=\"merged-q4_k_m (classify): accuracy fell 1.70 points"));
    free(log);
    /* a policy looser than the flag: the flag wins */
    test_spit(test_tmp("loose.json"), "{\"default\": {\"max_acc_drop\": 5}}");
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline " FX "cls_merged_q4_k_m.json --current %s --policy %s",
             test_tmp("cur_bad.json"), test_tmp("loose.json"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline " FX "cls_merged_q4_k_m.json --current %s --policy %s "
             "--max-acc-drop 1", test_tmp("cur_bad.json"), test_tmp("loose.json"));
    assert_int_equal(test_run(cmd), ET_ECHECK);
    /* bad input: another task, NaN, an unknown policy key (named) */
    assert_int_equal(test_run("./edgetune gate --baseline " FX "ppl_merged_q4_k_m.json --current " FX
                         "cls_merged_q4_k_m.json --max-acc-drop 1"), ET_EINPUT);
    assert_int_equal(test_run("./edgetune gate --baseline " FX "cls_base_f16.json --current " FX "nan.json --max-acc-drop 1"),
                     ET_EINPUT);
    test_spit(test_tmp("typo.json"), "{\"default\": {\"max_acc_dorp\": 1}}");
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline " FX "cls_base_f16.json --current " FX "cls_base_f16.json "
             "--policy %s", test_tmp("typo.json"));
    assert_int_equal(test_run(cmd), ET_EINPUT);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "max_acc_dorp"));
    free(log);
    /* usage: no thresholds, a bad flag value, no --current */
    assert_int_equal(test_run("./edgetune gate --baseline " FX "cls_base_f16.json --current " FX "cls_base_f16.json"), 1);
    assert_int_equal(test_run("./edgetune gate --baseline " FX "cls_base_f16.json --current " FX
                         "cls_base_f16.json --max-bytes 12X"), 1);
    assert_int_equal(test_run("./edgetune gate --baseline " FX "cls_base_f16.json --max-acc-drop 1"), 1);
    /* I/O: the JUnit file cannot be written */
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline " FX "cls_base_f16.json --current " FX "cls_base_f16.json "
             "--max-acc-drop 1 --junit %s/no/such/dir/x.xml", test_tmpdir());
    assert_int_equal(test_run(cmd), 3);
}

static void test_cli_gate_report(void **state) {
    (void)state;
    if (!test_have_edgetune()) skip();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "./edgetune report " FX "cls_*.json " FX "ppl_*.json -o %s", test_tmp("rep"));
    assert_int_equal(test_run(cmd), 0);
    /* every row of the report against a comma-separated list of the same results */
    const char *cur = FX "cls_base_f16.json," FX "cls_base_lora.json," FX "cls_merged_q8_0.json," FX
                      "cls_merged_q4_k_m.json," FX "cls_merged_q4_0.json," FX "cls_pruned_q4_k_m.json," FX
                      "cls_tiny.json," FX "ppl_base_f16.json," FX "ppl_merged_q8_0.json," FX
                      "ppl_merged_q4_k_m.json," FX "ppl_pruned_q4_k_m.json";
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline %s --current %s --max-acc-drop 0 --max-ppl-ratio 1",
             test_tmp("rep/report.json"), cur);
    assert_int_equal(test_run(cmd), 0);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "gate: 18 checks, 18 passed, 0 failed")); /* 7 x 2 accuracy + 4 ppl */
    free(log);
    /* the report as the current side, under a size limit two of them break */
    snprintf(cmd, sizeof cmd, "./edgetune gate --baseline %s --current %s --max-bytes 200M", cur, test_tmp("rep/report.json"));
    assert_int_equal(test_run(cmd), ET_ECHECK);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "gate: 11 checks, 8 passed, 3 failed"));
    free(log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass),
        cmocka_unit_test(test_each_threshold_fails),
        cmocka_unit_test(test_speed_missing_fails),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_missing_and_new),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_junit_and_json),
        cmocka_unit_test(test_cli_gate),
        cmocka_unit_test(test_cli_gate_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
