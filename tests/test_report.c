/* tests/test_report.c — `edgetune report` (eval/report.h):
 *  - et_pareto against a brute-force O(n^2) check on random points with
 *    ties, both directions, and a hand-made case;
 *  - the report of the fixture results (tests/data/eval/: 7 classify and 4
 *    perplexity artifacts from 181 KB to 273 MB): three files, the rows and
 *    frontier marks of report.md, report.json read back as input, the SVG
 *    well formed (a small checker, and xmllint when installed) with the
 *    names escaped;
 *  - refusals: the same name and task twice (both files named), NaN, a file
 *    that is not an eval result, a metric of unknown direction;
 *  - sizes: et_human_bytes, et_parse_bytes;
 *  - sweep files: parsed into et_eval_opts, bad keys named (exit 2), and a
 *    real sweep on stories260K through ./edgetune when the model is there;
 *  - ./edgetune report exit codes 0, 1, 2, 3. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../eval/report.h"

#define FX "tests/data/eval/"

/* |a - b| <= tol (this cmocka has no assert_double_equal) */
#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))


/* ------------------------------------------------------------ XML checker */

static int name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == ':' || c == '.';
}

/* An entity at s ("&amp;" ...): its length, or 0. */
static int entity(const char *s) {
    static const char *const ok[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;", NULL};
    for (const char *const *k = ok; *k; k++) if (!strncmp(s, *k, strlen(*k))) return (int)strlen(*k);
    return 0;
}

/* 1 when s is well formed as far as a report needs: one root element, tags
 * balanced and nested, attribute values quoted with no '<' in them, every
 * '&' an entity.  Skips <?...?> and <!--...-->. */
static int xml_ok(const char *s) {
    char stack[64][64];
    int depth = 0, roots = 0;
    while (*s) {
        if (*s == '&') {
            int n = entity(s);
            if (!n) return 0;
            s += n;
        } else if (!strncmp(s, "<?", 2) || !strncmp(s, "<!--", 4)) {
            const char *end = strstr(s, s[1] == '?' ? "?>" : "-->");
            if (!end) return 0;
            s = end + (s[1] == '?' ? 2 : 3);
        } else if (*s == '<') {
            int close = s[1] == '/';
            s += 1 + close;
            char name[64];
            int n = 0;
            while (name_char(*s) && n < 63) name[n++] = *s++;
            name[n] = 0;
            if (!n) return 0;
            if (close) {
                if (!depth || strcmp(stack[--depth], name) || *s != '>') return 0;
                s++;
                continue;
            }
            for (;;) { /* attributes */
                while (*s == ' ' || *s == '\n' || *s == '\t') s++;
                if (*s == '>' || !strncmp(s, "/>", 2)) break;
                while (name_char(*s)) s++;
                if (*s++ != '=' || *s++ != '"') return 0;
                while (*s && *s != '"') {
                    if (*s == '<') return 0;
                    if (*s == '&') {
                        int k = entity(s);
                        if (!k) return 0;
                        s += k;
                    } else s++;
                }
                if (*s++ != '"') return 0;
            }
            if (!depth) roots++;
            if (*s == '/') s += 2;
            else {
                if (depth == 64) return 0;
                snprintf(stack[depth++], 64, "%s", name);
                s++;
            }
        } else s++;
    }
    return depth == 0 && roots == 1;
}

static void test_xml_checker(void **state) {
    (void)state;
    assert_true(xml_ok("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/><c y=\"&amp;\">t &lt; u</c></a>\n"));
    assert_false(xml_ok("<a><b></a></b>"));
    assert_false(xml_ok("<a x=\"<\"/>"));
    assert_false(xml_ok("<a>x & y</a>"));
    assert_false(xml_ok("<a></a><b></b>"));
    assert_false(xml_ok("<a>"));
}

/* ------------------------------------------------------------ Pareto */

static int dominated_brute(int n, const double *x, const double *y, int higher, int i) {
    for (int j = 0; j < n; j++) {
        if (j == i) continue;
        double gi = higher ? y[i] : -y[i], gj = higher ? y[j] : -y[j];
        if (x[j] <= x[i] && gj >= gi && (x[j] < x[i] || gj > gi)) return 1;
    }
    return 0;
}

static void test_pareto_brute_force(void **state) {
    (void)state;
    uint64_t s[4] = {1, 2, 3, 4};
    double x[64], y[64];
    int on[64];
    for (int trial = 0; trial < 3000; trial++) {
        int n = 1 + (int)(et_xoshiro256ss(s) % 40);
        int grid = 2 + (int)(et_xoshiro256ss(s) % 10); /* small grids: many ties */
        int higher = (int)(et_xoshiro256ss(s) & 1);
        for (int i = 0; i < n; i++) {
            x[i] = (double)(et_xoshiro256ss(s) % (uint64_t)grid) * 1e5;
            y[i] = trial % 3 ? (double)(et_xoshiro256ss(s) % (uint64_t)grid) / grid
                             : (double)(et_xoshiro256ss(s) >> 11) / 9007199254740992.0;
        }
        assert_int_equal(et_pareto(n, x, y, higher, on), 0);
        for (int i = 0; i < n; i++) assert_int_equal(on[i], !dominated_brute(n, x, y, higher, i));
    }
}

static void test_pareto_known(void **state) {
    (void)state;
    /* sizes and accuracies: b dominates c (smaller, better); d == e (both on);
     * f is larger than d and no better */
    double x[] = {100, 200, 300, 400, 400, 500};
    double y[] = {0.5, 0.8, 0.7, 0.9, 0.9, 0.9};
    int on[6], want[] = {1, 1, 0, 1, 1, 0};
    assert_int_equal(et_pareto(6, x, y, 1, on), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(on[i], want[i]);
    /* lower is better (ppl): the smallest is on, and so is each size that improves */
    double p[] = {20, 15, 16, 12, 13, 12};
    int want2[] = {1, 1, 0, 1, 0, 0};
    assert_int_equal(et_pareto(6, x, p, 0, on), 0);
    for (int i = 0; i < 6; i++) assert_int_equal(on[i], want2[i]);
}

/* ------------------------------------------------------------ report */

static const char *const FIXTURES[] = {
    FX "cls_base_f16.json",      FX "cls_base_lora.json", FX "cls_merged_q8_0.json", FX "cls_merged_q4_k_m.json",
    FX "cls_merged_q4_0.json",   FX "cls_pruned_q4_k_m.json", FX "cls_tiny.json",    FX "ppl_base_f16.json",
    FX "ppl_merged_q8_0.json",   FX "ppl_merged_q4_k_m.json", FX "ppl_pruned_q4_k_m.json", NULL};

static void build(et_report *r, const char *metric) {
    et_err e = {0};
    et_result_list l = {0};
    for (const char *const *f = FIXTURES; *f; f++) {
        if (et_result_list_add_file(&l, *f, &e)) fail_msg("%s", e.msg);
    }
    et_report_init(r);
    assert_int_equal(et_report_take(r, &l, &e), 0);
    assert_int_equal(l.n, 0);
    if (et_report_finish(r, metric, &e)) fail_msg("%s", e.msg);
    et_result_list_free(&l);
}

static const et_report_row *row(const et_report *r, const char *task, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->rows[i].task, task) && !strcmp(r->rows[i].name, name)) return &r->rows[i];
    fail_msg("no row %s %s", task, name);
    return NULL;
}

static void test_report_groups_and_frontier(void **state) {
    (void)state;
    et_report r;
    build(&r, NULL);
    assert_int_equal(r.n, 11);
    assert_int_equal(r.n_groups, 2);
    assert_string_equal(r.groups[0].task, "classify");
    assert_string_equal(r.groups[0].metric, "accuracy");
    assert_true(r.groups[0].higher_is_better);
    assert_true(r.groups[0].fraction);
    assert_string_equal(r.groups[1].metric, "ppl");
    assert_false(r.groups[1].higher_is_better);
    /* rows by size */
    for (int g = 0; g < 2; g++)
        for (int k = 1; k < r.groups[g].n; k++)
            assert_true(r.rows[r.groups[g].rows[k - 1]].bytes <= r.rows[r.groups[g].rows[k]].bytes);
    assert_true(row(&r, "classify", "merged-q4_k_m")->pareto);
    assert_true(row(&r, "classify", "base-f16+lora")->pareto);
    assert_false(row(&r, "classify", "merged-q4_0")->pareto);  /* pruned: smaller and better */
    assert_false(row(&r, "classify", "base-f16")->pareto);     /* q8_0: smaller and better */
    assert_true(row(&r, "perplexity", "base-f16")->pareto);    /* the lowest ppl */
    assert_near(row(&r, "classify", "base-f16+lora")->bytes, 272741376.0, 0);
    assert_near(row(&r, "classify", "merged-q8_0")->tokens_per_s, 88.0, 0);
    et_report_free(&r);
}

/* --series: one dashed line per first word of the names (two or more rows) */
static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_report_series(void **state) {
    (void)state;
    et_report r;
    build(&r, NULL);
    static const char *const names[] = {"PTQ f16", "PTQ q8_0", "QAT q4_k_m", "QAT pruned"};
    int k = 0;
    for (int i = 0; i < r.n; i++)
        if (!strcmp(r.rows[i].task, "perplexity")) r.rows[i].name = names[k++ % 4];
    assert_int_equal(k, 4);
    char *plain = et_report_svg(&r, "t");
    assert_non_null(plain);
    assert_int_equal(count_of(plain, "stroke-dasharray"), 0);
    r.series = 1;
    char *svg = et_report_svg(&r, "t");
    assert_non_null(svg);
    assert_true(xml_ok(svg));
    /* two lines (PTQ, QAT) + their two legend strokes; the classify rows' names are all different: none */
    assert_int_equal(count_of(svg, "stroke-dasharray"), 4);
    assert_non_null(strstr(svg, ">PTQ</text>"));
    assert_non_null(strstr(svg, ">QAT</text>"));
    free(plain), free(svg);
    et_report_free(&r);
}

static void test_report_metric_option(void **state) {
    (void)state;
    et_report r;
    build(&r, "nll_per_token"); /* perplexity rows have it, classify rows do not */
    assert_string_equal(r.groups[0].metric, "accuracy");
    assert_string_equal(r.groups[1].metric, "nll_per_token");
    assert_false(r.groups[1].higher_is_better);
    assert_near(row(&r, "perplexity", "base-f16")->value, log(12.41), 1e-12);
    et_report_free(&r);
    build(&r, "macro_f1");
    assert_string_equal(r.groups[0].metric, "macro_f1");
    assert_near(row(&r, "classify", "merged-q4_0")->value, 0.869, 0);
    et_report_free(&r);
    /* a metric whose direction is not known */
    et_err e = {0};
    et_result_list l = {0};
    assert_int_equal(et_result_list_add_file(&l, FX "ppl_base_f16.json", &e), 0);
    et_report_init(&r);
    assert_int_equal(et_report_take(&r, &l, &e), 0);
    assert_int_equal(et_report_finish(&r, "tokens", &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "tokens"));
    et_report_free(&r);
    et_result_list_free(&l);
}

static void test_report_files(void **state) {
    (void)state;
    et_report r;
    build(&r, NULL);
    et_err e = {0};
    const char *dir = test_tmp("rep/sub");
    if (et_report_write(&r, dir, "SmolLM2 & friends", &e)) fail_msg("%s", e.msg);
    et_report_free(&r);
    char *md = test_slurp(test_tmp("rep/sub/report.md")), *svg = test_slurp(test_tmp("rep/sub/report.svg"));
    char *js = test_slurp(test_tmp("rep/sub/report.json"));
    assert_non_null(md);
    assert_non_null(svg);
    assert_non_null(js);
    assert_non_null(strstr(md, "# SmolLM2 &amp; friends\n"));
    assert_non_null(strstr(md, "## classify — data/sst2_test.tsv"));
    assert_non_null(strstr(md, "| ★ | merged-q4_k_m | 90.2% | 90.1% | 105 MB | 135.0M | 121.0 | 170 MB |\n"));
    assert_non_null(strstr(md, "|  | merged-q4_0 | 87.1% | 86.9% | 91.7 MB |"));
    assert_non_null(strstr(md, "| ★ | tiny-distilled-q8_0 &lt;r=8&gt; &amp; \"qat\" | 63.1% |"));
    assert_non_null(strstr(md, "| ★ | base-f16 | 12.41 |"));
    assert_non_null(strstr(md, "| 181 KB |"));
    /* the classify table lists rows smallest first */
    assert_true(strstr(md, "| tiny-distilled") < strstr(md, "| pruned-distilled-q4_k_m | 88.4%"));
    /* SVG: well formed, the names escaped, two panels, one point each */
    assert_true(xml_ok(svg));
    assert_non_null(strstr(svg, ">tiny-distilled-q8_0 &lt;r=8&gt; &amp; &quot;qat&quot;</text>"));
    assert_non_null(strstr(svg, ">classify — data/sst2_test.tsv</text>"));
    assert_non_null(strstr(svg, ">100 MB</text>"));
    int circles = 0;
    for (const char *p = svg; (p = strstr(p, "<g><title>")); p++) circles++;
    assert_int_equal(circles, 11);
    if (access("/usr/bin/xmllint", X_OK) == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "xmllint --noout %s", test_tmp("rep/sub/report.svg"));
        assert_int_equal(test_run(cmd), 0);
    } else {
        fprintf(stderr, "note: xmllint not installed; the SVG was checked by the built-in checker only\n");
    }
    /* report.json: the schema and every row's result, readable as input */
    cJSON *j = cJSON_Parse(js);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "schema")->valuestring, ET_REPORT_SCHEMA);
    cJSON_Delete(j);
    et_result_list l = {0};
    if (et_result_list_add_file(&l, test_tmp("rep/sub/report.json"), &e)) fail_msg("%s", e.msg);
    assert_int_equal(l.n, 11);
    assert_non_null(strstr(l.where[0], "tasks[0].rows[0]"));
    et_result_list_free(&l);
    free(md);
    free(svg);
    free(js);
}

static void test_report_refusals(void **state) {
    (void)state;
    et_err e = {0};
    et_result_list l = {0};
    /* the same name and task in two files */
    char *txt = test_slurp(FX "cls_merged_q8_0.json");
    test_spit(test_tmp("copy_q8.json"), txt);
    free(txt);
    assert_int_equal(et_result_list_add_file(&l, FX "cls_merged_q8_0.json", &e), 0);
    assert_int_equal(et_result_list_add_file(&l, test_tmp("copy_q8.json"), &e), 0);
    et_report r;
    et_report_init(&r);
    assert_int_equal(et_report_take(&r, &l, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, FX "cls_merged_q8_0.json"));
    assert_non_null(strstr(e.msg, "copy_q8.json"));
    assert_int_equal(l.n, 0);
    et_report_free(&r);
    et_result_list_free(&l);
    /* NaN (not JSON) and infinity (not finite) */
    assert_int_equal(et_result_list_add_file(&l, FX "nan.json", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "nan.json"));
    txt = test_slurp(FX "cls_merged_q8_0.json");
    char *acc = strstr(txt, "\"accuracy\": 0.913");
    assert_non_null(acc);
    memcpy(acc + 12, "1e999", 5);
    test_spit(test_tmp("inf.json"), txt);
    free(txt);
    assert_int_equal(et_result_list_add_file(&l, test_tmp("inf.json"), &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "accuracy"));
    /* something else */
    test_spit(test_tmp("other.json"), "{\"schema\": \"something/1\", \"name\": \"x\"}\n");
    assert_int_equal(et_result_list_add_file(&l, test_tmp("other.json"), &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "schema"));
    test_spit(test_tmp("badrep.json"), "{\"schema\": \"edgetune.report/1\", \"tasks\": [{\"rows\": [{\"result\": {}}]}]}\n");
    assert_int_equal(et_result_list_add_file(&l, test_tmp("badrep.json"), &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "tasks[0].rows[0]"));
    assert_int_equal(et_result_list_add_file(&l, test_tmp("does-not-exist.json"), &e), ET_EINPUT);
    assert_int_equal(l.n, 0);
    et_result_list_free(&l);
}

static void test_sizes(void **state) {
    (void)state;
    char b[32];
    et_human_bytes(812, b, sizeof b);
    assert_string_equal(b, "812 B");
    et_human_bytes(181248, b, sizeof b);
    assert_string_equal(b, "181 KB");
    et_human_bytes(1185376, b, sizeof b);
    assert_string_equal(b, "1.19 MB");
    et_human_bytes(3.1e9, b, sizeof b);
    assert_string_equal(b, "3.1 GB");
    double v;
    assert_int_equal(et_parse_bytes("300M", &v), 0);
    assert_near(v, 3e8, 0);
    assert_int_equal(et_parse_bytes("1.5G", &v), 0);
    assert_near(v, 1.5e9, 0);
    assert_int_equal(et_parse_bytes("64Ki", &v), 0);
    assert_near(v, 65536, 0);
    assert_int_equal(et_parse_bytes("2MiB", &v), 0);
    assert_near(v, 2097152, 0);
    assert_int_equal(et_parse_bytes("1234", &v), 0);
    assert_near(v, 1234, 0);
    assert_int_equal(et_parse_bytes("12X", &v), -1);
    assert_int_equal(et_parse_bytes("-1M", &v), -1);
    assert_int_equal(et_parse_bytes("", &v), -1);
}

/* ------------------------------------------------------------ sweeps */

static void test_sweep_parse(void **state) {
    (void)state;
    test_spit(test_tmp("sweep.json"),
         "{\"tasks\": [{\"task\": \"classify\", \"data\": \"t.tsv\", \"template\": \"Review: {text}\\n\","
         " \"labels\": [\" negative\", \" positive\"], \"label-first\": true, \"ctx\": 256, \"max\": 50},"
         " {\"task\": \"perplexity\", \"data\": \"w.txt\", \"scoring\": \"llama\", \"threads\": 2}],"
         " \"artifacts\": [{\"name\": \"base+lora\", \"model\": \"m.gguf\", \"lora\": [\"a.gguf:0.5\", \"b.gguf\"]},"
         " {\"model\": \"dir/q4.gguf\"}]}");
    et_eval_opts def = {0};
    def.task = "perplexity";
    def.n_threads = 1;
    def.scoring = "all";
    et_sweep s;
    et_err e = {0};
    if (et_sweep_read(test_tmp("sweep.json"), &def, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.n_tasks, 2);
    assert_int_equal(s.n_artifacts, 2);
    const et_eval_opts *o = &s.jobs[0];
    assert_string_equal(o->name, "base+lora");
    assert_string_equal(o->model, "m.gguf");
    assert_string_equal(o->task, "classify");
    assert_string_equal(o->labels, " negative, positive");
    assert_string_equal(o->template_, "Review: {text}\n");
    assert_int_equal(o->label_first, 1);
    assert_int_equal(o->n_ctx, 256);
    assert_int_equal(o->max_records, 50);
    assert_int_equal(o->n_lora, 2);
    assert_string_equal(o->lora[0], "a.gguf");
    assert_true(o->lora_scale[0] == 0.5f);
    assert_string_equal(o->lora[1], "b.gguf");
    assert_true(o->lora_scale[1] == 1.0f);
    assert_int_equal(o->n_threads, 1);
    o = &s.jobs[1];
    assert_string_equal(o->scoring, "llama");
    assert_int_equal(o->n_threads, 2);
    assert_int_equal(o->n_ctx, 0);
    o = &s.jobs[3];
    assert_string_equal(o->name, "q4");
    assert_int_equal(o->n_lora, 0);
    assert_string_equal(s.files[0], "base+lora__classify.json");
    assert_string_equal(s.files[3], "q4__perplexity.json");
    et_sweep_free(&s);
    /* bad files: the file and the key are named */
    struct { const char *json, *want; } bad[] = {
        {"{\"tasks\": [{\"task\": \"classify\", \"tempate\": \"x\"}], \"artifacts\": [{\"model\": \"m\"}]}", "\"tempate\""},
        {"{\"tasks\": [{\"task\": \"classify\"}], \"artifacts\": [{\"model\": \"m\", \"lorra\": []}]}", "\"lorra\""},
        {"{\"tasks\": [{\"data\": \"x\"}], \"artifacts\": [{\"model\": \"m\"}]}", "\"task\""},
        {"{\"tasks\": [{\"task\": \"classify\", \"ctx\": \"big\"}], \"artifacts\": [{\"model\": \"m\"}]}", "\"ctx\""},
        {"{\"tasks\": [], \"artifacts\": [{\"model\": \"m\"}]}", "\"tasks\""},
        {"{\"tasks\": [{\"task\": \"kl\"}], \"artifacts\": [{\"name\": \"a\"}]}", "\"model\""},
        {"{\"tasks\": [{\"task\": \"kl\"}], \"artifacts\": [{\"model\": \"a\"}, {\"model\": \"d/a.gguf\"}]}", "\"a\""},
        {"{\"tasks\": [{\"task\": \"kl\"}], \"artifacts\": [{\"model\": \"a\"}], \"extra\": 1}", "\"extra\""},
        {"[1, 2]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        test_spit(test_tmp("bad_sweep.json"), bad[i].json);
        assert_int_equal(et_sweep_read(test_tmp("bad_sweep.json"), &def, &s, &e), ET_EINPUT);
        if (!strstr(e.msg, bad[i].want) || !strstr(e.msg, "bad_sweep.json")) fail_msg("case %zu: %s", i, e.msg);
        assert_null(s.jobs);
    }
}

/* ------------------------------------------------------------ the command */

static void test_cli_report(void **state) {
    (void)state;
    if (!test_have_edgetune()) skip();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "./edgetune report " FX "cls_*.json " FX "ppl_*.json -o %s --title 'Size & accuracy'",
             test_tmp("cli"));
    assert_int_equal(test_run(cmd), 0);
    struct stat st;
    assert_int_equal(stat(test_tmp("cli/report.json"), &st), 0);
    assert_int_equal(stat(test_tmp("cli/report.md"), &st), 0);
    assert_int_equal(stat(test_tmp("cli/report.svg"), &st), 0);
    char *log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "11 results on 2 tasks"));
    free(log);
    /* a report of a report */
    snprintf(cmd, sizeof cmd, "./edgetune report %s -o %s", test_tmp("cli/report.json"), test_tmp("cli2"));
    assert_int_equal(test_run(cmd), 0);
    /* usage */
    assert_int_equal(test_run("./edgetune report " FX "cls_tiny.json"), 1);
    assert_int_equal(test_run("./edgetune report -o /tmp/x"), 1);
    assert_int_equal(test_run("./edgetune report " FX "cls_tiny.json -o /tmp/x --bogus 1"), 1);
    /* bad input: NaN, the same name and task twice */
    snprintf(cmd, sizeof cmd, "./edgetune report " FX "nan.json -o %s", test_tmp("bad"));
    assert_int_equal(test_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "./edgetune report " FX "cls_tiny.json " FX "cls_tiny.json -o %s", test_tmp("bad"));
    assert_int_equal(test_run(cmd), 2);
    log = test_slurp(test_tmp("cmd.log"));
    assert_non_null(strstr(log, "cls_tiny.json and " FX "cls_tiny.json"));
    free(log);
    snprintf(cmd, sizeof cmd, "./edgetune report " FX "cls_tiny.json -o %s --sweep %s", test_tmp("bad"), test_tmp("bad_sweep.json"));
    test_spit(test_tmp("bad_sweep.json"), "{\"tasks\": [{\"task\": \"ppl\", \"bogus\": 1}], \"artifacts\": [{\"model\": \"m\"}]}");
    assert_int_equal(test_run(cmd), 2);
    /* I/O: the output is a file, not a directory */
    test_spit(test_tmp("afile"), "x");
    snprintf(cmd, sizeof cmd, "./edgetune report " FX "cls_tiny.json -o %s", test_tmp("afile/out"));
    assert_int_equal(test_run(cmd), 3);
}

static void test_cli_sweep_stories(void **state) {
    (void)state;
    if (!test_have_edgetune()) skip();
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    test_spit(test_tmp("story.txt"), "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.\n"
                           "One day, she saw a big red ball in the park. She ran to get it and played with her friends.\n");
    char sweep[4096], cmd[4096];
    snprintf(sweep, sizeof sweep,
             "{\"tasks\": [{\"task\": \"perplexity\", \"data\": \"%s\", \"ctx\": 64}],\n"
             " \"artifacts\": [{\"name\": \"f32\", \"model\": \"%s\"}, {\"name\": \"q8 <0>\", \"model\": \"%s\"}]}\n",
             test_tmp("story.txt"), model, test_tmp("q8.gguf"));
    test_spit(test_tmp("sweep_ok.json"), sweep);
    snprintf(cmd, sizeof cmd, "./edgetune quantize %s %s --type Q8_0 --quiet", model, test_tmp("q8.gguf"));
    assert_int_equal(test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "./edgetune report --sweep %s -o %s", test_tmp("sweep_ok.json"), test_tmp("sw"));
    int rc = test_run(cmd);
    if (rc) {
        char *log = test_slurp(test_tmp("cmd.log"));
        fail_msg("report --sweep: exit %d\n%s", rc, log);
    }
    et_err e = {0};
    et_result_list l = {0};
    if (et_result_list_add_file(&l, test_tmp("sw/evals/f32__perplexity.json"), &e)) fail_msg("%s", e.msg);
    if (et_result_list_add_file(&l, test_tmp("sw/evals/q8__0___perplexity.json"), &e)) fail_msg("%s", e.msg);
    assert_string_equal(cJSON_GetObjectItem(l.res[1], "name")->valuestring, "q8 <0>");
    et_result_list_free(&l);
    char *md = test_slurp(test_tmp("sw/report.md"));
    assert_non_null(md);
    assert_non_null(strstr(md, "| ★ | q8 &lt;0&gt; |")); /* smaller, and no worse than F32 here */
    free(md);
    /* a model that is not there: the evaluation's error, exit 2 */
    test_spit(test_tmp("sweep_missing.json"), "{\"tasks\": [{\"task\": \"perplexity\", \"data\": \"/nonexistent.txt\"}],"
                                    " \"artifacts\": [{\"model\": \"/nonexistent.gguf\"}]}");
    snprintf(cmd, sizeof cmd, "./edgetune report --sweep %s -o %s", test_tmp("sweep_missing.json"), test_tmp("sw2"));
    assert_int_equal(test_run(cmd), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_checker),
        cmocka_unit_test(test_pareto_brute_force),
        cmocka_unit_test(test_pareto_known),
        cmocka_unit_test(test_report_groups_and_frontier),
        cmocka_unit_test(test_report_metric_option),
        cmocka_unit_test(test_report_series),
        cmocka_unit_test(test_report_files),
        cmocka_unit_test(test_report_refusals),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_sweep_parse),
        cmocka_unit_test(test_cli_report),
        cmocka_unit_test(test_cli_sweep_stories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
