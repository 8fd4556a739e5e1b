/* tests/test_demo_task.c — the smart-home task behind `make demo`.
 *
 * - the same seed gives the same examples, another seed other ones;
 * - train and test are disjoint (no test command appears in training) and
 *   every test example is held out by phrasing or by slot;
 * - the commands of the issue map to exactly the JSON the issue gives;
 * - every action is canonical JSON with in-range values;
 * - the JSONL files parse with `edgetune data`'s parser into a masked prompt
 *   equal to demo_task_prompt and a trained completion equal to the action;
 * - the scorers score known strings right. */
#include "testutil.h"

#include <cJSON.h>

#include "../datasets/ingest.h"
#include "../lora/demo_task.h"

static const char *tmp_path(const char *name) {
    static char bufs[4][512];
    static int k = 0;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static void test_deterministic(void **state) {
    (void)state;
    demo_task_opts o = demo_task_defaults();
    demo_task a, b, c;
    et_err e = {0};
    assert_int_equal(demo_task_generate(&a, &o, &e), 0);
    assert_int_equal(demo_task_generate(&b, &o, &e), 0);
    assert_int_equal(a.n_train, 2000);
    assert_int_equal(a.n_test, 200);
    assert_memory_equal(a.train, b.train, (size_t)a.n_train * sizeof *a.train);
    assert_memory_equal(a.test, b.test, (size_t)a.n_test * sizeof *a.test);
    o.seed = 2;
    assert_int_equal(demo_task_generate(&c, &o, &e), 0);
    assert_memory_not_equal(a.train, c.train, (size_t)a.n_train * sizeof *a.train);
    demo_task_free(&a);
    demo_task_free(&b);
    demo_task_free(&c);
    o.n_train = 0;
    assert_int_equal(demo_task_generate(&a, &o, &e), ET_EUSAGE);
    o.n_train = 10;
    o.heldout_fraction = 0.95;
    assert_int_equal(demo_task_generate(&a, &o, &e), ET_EUSAGE);
}

static int find_cmd(const demo_example *ex, int n, const char *cmd) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ex[i].command, cmd)) return i;
    return -1;
}

static void test_splits_disjoint(void **state) {
    (void)state;
    demo_task_opts o = demo_task_defaults();
    o.seed = 5;
    demo_task t;
    et_err e = {0};
    assert_int_equal(demo_task_generate(&t, &o, &e), 0);
    /* every pass over the distinct training examples is a permutation */
    int nd = t.n_train_distinct;
    assert_true(nd > 300 && nd < t.n_train);
    for (int i = 0; i < nd; i++) assert_int_equal(find_cmd(t.train, nd, t.train[i].command), i);
    for (int i = nd; i < 2 * nd && i < t.n_train; i++) assert_true(find_cmd(t.train, nd, t.train[i].command) >= 0);
    for (int i = 0; i < t.n_train; i++) {
        assert_int_equal(t.train[i].heldout_phrasing, 0);
        assert_int_equal(t.train[i].heldout_slot, 0);
    }
    int by_phrase = 0, by_slot = 0;
    for (int i = 0; i < t.n_test; i++) {
        assert_int_equal(find_cmd(t.train, nd, t.test[i].command), -1);
        assert_int_equal(find_cmd(t.test, i, t.test[i].command), -1); /* distinct */
        assert_true(t.test[i].heldout_phrasing || t.test[i].heldout_slot);
        by_phrase += t.test[i].heldout_phrasing;
        by_slot += t.test[i].heldout_slot;
    }
    assert_true(by_phrase > 20 && by_slot > 20); /* both kinds are tested */
    demo_task_free(&t);
}

static void test_known_commands_and_json(void **state) {
    (void)state;
    demo_task_opts o = demo_task_defaults();
    demo_task t;
    et_err e = {0};
    /* everything: all distinct training commands and all test commands */
    assert_int_equal(demo_task_generate(&t, &o, &e), 0);
    o.n_train = t.n_train_distinct;
    o.n_test = t.n_test_available;
    demo_task_free(&t);
    assert_int_equal(demo_task_generate(&t, &o, &e), 0);
    struct { const char *cmd, *json; } known[] = {
        {"turn off the kitchen lights", "{\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"off\"}"},
        {"set the bedroom thermostat to 21 degrees",
         "{\"device\":\"thermostat\",\"room\":\"bedroom\",\"action\":\"set\",\"value\":21}"},
        {"dim the living room lights to 40 percent",
         "{\"device\":\"light\",\"room\":\"living room\",\"action\":\"set\",\"value\":40}"},
        {"unlock the front door", "{\"device\":\"lock\",\"room\":\"front\",\"action\":\"unlock\"}"},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        int i = find_cmd(t.train, t.n_train, known[k].cmd);
        const demo_example *x = i >= 0 ? &t.train[i] : NULL;
        if (!x) {
            i = find_cmd(t.test, t.n_test, known[k].cmd);
            assert_true(i >= 0);
            x = &t.test[i];
        }
        assert_string_equal(x->action, known[k].json);
    }
    /* every action: canonical JSON with known keys in order and values in range */
    for (int s = 0; s < 2; s++) {
        const demo_example *ex = s ? t.test : t.train;
        int n = s ? t.n_test : t.n_train;
        for (int i = 0; i < n; i++) {
            cJSON *j = cJSON_Parse(ex[i].action);
            assert_non_null(j);
            char *back = cJSON_PrintUnformatted(j);
            assert_string_equal(back, ex[i].action); /* canonical: no spaces, order kept */
            cJSON_free(back);
            const cJSON *c = j->child;
            assert_string_equal(c->string, "device");
            assert_string_equal(c->next->string, "room");
            assert_string_equal(c->next->next->string, "action");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
            const char *dev = c->valuestring;
            if (!strcmp(dev, "thermostat")) assert_true(v && v->valueint >= 16 && v->valueint <= 28);
            else if (v) assert_true(!strcmp(dev, "light") && v->valueint >= 10 && v->valueint <= 100);
            cJSON_Delete(j);
            assert_true(strlen(ex[i].command) > 5 && !strchr(ex[i].command, '{') && !strchr(ex[i].command, '*'));
        }
    }
    demo_task_free(&t);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void test_jsonl_ingests(void **state) {
    (void)state;
    demo_task_opts o = demo_task_defaults();
    o.n_train = 50;
    o.n_test = 20;
    demo_task t;
    et_err e = {0};
    assert_int_equal(demo_task_generate(&t, &o, &e), 0);
    for (int style = 0; style < 2; style++) {
        const char *path = tmp_path(style ? "alpaca.jsonl" : "prompt.jsonl");
        assert_int_equal(demo_task_write_jsonl(t.train, t.n_train, path, style, &e), 0);
        size_t n;
        char *text = slurp(path, &n);
        et_ingest_opts io = et_ingest_defaults();
        et_docs docs;
        if (et_parse_input(text, n, path, &io, &docs, &e)) fail_msg("%s", e.msg);
        assert_int_equal(docs.n, (size_t)t.n_train);
        for (int i = 0; i < t.n_train; i++) {
            const et_doc *d = &docs.doc[i];
            char prompt[512];
            assert_non_null(demo_task_prompt(style, t.train[i].command, prompt, sizeof prompt));
            assert_int_equal(d->n_segs, 2);
            assert_int_equal(d->segs[0].train, 0);
            assert_int_equal(d->segs[1].train, 1);
            assert_int_equal(d->segs[0].end, strlen(prompt));
            assert_memory_equal(d->text, prompt, strlen(prompt));
            assert_string_equal(d->text + d->segs[0].end, t.train[i].action);
        }
        et_docs_free(&docs);
        free(text);
    }
    assert_int_equal(demo_task_write_jsonl(t.train, 1, tmp_path("x.jsonl"), 7, &e), ET_EUSAGE);
    demo_task_free(&t);
}

static void test_scorer(void **state) {
    (void)state;
    const char *want = "{\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"off\"}";
    assert_int_equal(demo_task_exact(want, want), 1);
    assert_int_equal(demo_task_exact(want, " {\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"off\"}  \nmore"), 1);
    assert_int_equal(demo_task_exact(want, "{\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"on\"}"), 0);
    assert_int_equal(demo_task_exact(want, "{\"device\":\"light\",\"room\":\"kitchen\""), 0);
    assert_int_equal(demo_task_exact(want, "{\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"off\"}}"), 0);
    assert_int_equal(demo_task_exact(want, ""), 0);
    assert_int_equal(demo_task_exact(want, NULL), 0);
    const char *reordered = "{ \"action\": \"off\", \"device\": \"light\", \"room\": \"kitchen\" }";
    assert_int_equal(demo_task_exact(want, reordered), 0);
    assert_int_equal(demo_task_json_match(want, reordered), 1);
    assert_int_equal(demo_task_json_match(want, "{\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"off\",\"value\":1}"), 0);
    assert_int_equal(demo_task_json_match(want, "{\"device\":\"light\",\"room\":\"kitchen\"}"), 0);
    assert_int_equal(demo_task_json_match(want, "not json"), 0);
    const char *wv = "{\"device\":\"thermostat\",\"room\":\"bedroom\",\"action\":\"set\",\"value\":21}";
    assert_int_equal(demo_task_json_match(wv, "{\"device\":\"thermostat\",\"room\":\"bedroom\",\"action\":\"set\",\"value\":22}"), 0);
    assert_int_equal(demo_task_json_match(wv, "{\"value\":21,\"device\":\"thermostat\",\"room\":\"bedroom\",\"action\":\"set\"}\n"), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_splits_disjoint),
        cmocka_unit_test(test_known_commands_and_json),
        cmocka_unit_test(test_jsonl_ingests),
        cmocka_unit_test(test_scorer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
