/* lora/demo_task.c — smart-home commands -> JSON actions. See demo_task.h. */
#include "demo_task.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/ingest.h"
#include "../datasets/shuffle.h"

/* ------------------------------------------------------------ the grammar */
enum { V_NONE, V_PERCENT, V_DEGREES };

static const char *const ROOMS_ALL[] = {"kitchen", "bedroom", "living room", "bathroom",
                                        "office", "hallway", "garage", "dining room", NULL};
static const char *const ROOMS_CLIMATE[] = {"bedroom", "living room", "office", "kitchen", "bathroom", NULL};
static const char *const ROOMS_TV[] = {"living room", "bedroom", "kitchen", "office", NULL};
static const char *const ROOMS_BLINDS[] = {"kitchen", "bedroom", "living room", "office", "bathroom",
                                           "dining room", NULL};
static const char *const DOORS[] = {"front", "back", "garage", "side", NULL};

/* One action and its phrasings; a template starting with '*' is held out
 * (test only).  {room} and {value} are substituted. */
typedef struct action_spec {
    const char *device, *action;
    int value_kind;
    const char *const *rooms;
    const char *templates[8];
} action_spec;

static const action_spec ACTIONS[] = {
    {"light", "on", V_NONE, ROOMS_ALL,
     {"turn on the {room} lights", "switch on the {room} light", "{room} lights on", "turn the {room} lights on",
      "*lights on in the {room}", "*please light up the {room}", NULL}},
    {"light", "off", V_NONE, ROOMS_ALL,
     {"turn off the {room} lights", "switch off the {room} light", "{room} lights off", "turn the {room} lights off",
      "*lights off in the {room}", "*please shut off the {room} lights", NULL}},
    {"light", "set", V_PERCENT, ROOMS_ALL,
     {"dim the {room} lights to {value} percent", "set the {room} lights to {value} percent",
      "{room} lights at {value} percent", "*make the {room} lights {value} percent", NULL}},
    {"thermostat", "set", V_DEGREES, ROOMS_CLIMATE,
     {"set the {room} thermostat to {value} degrees", "make the {room} {value} degrees",
      "{room} temperature to {value}", "heat the {room} to {value} degrees", "*i want the {room} at {value} degrees",
      "*change the {room} thermostat to {value}", NULL}},
    {"fan", "on", V_NONE, ROOMS_CLIMATE,
     {"turn on the {room} fan", "start the fan in the {room}", "{room} fan on", "*switch the {room} fan on", NULL}},
    {"fan", "off", V_NONE, ROOMS_CLIMATE,
     {"turn off the {room} fan", "stop the fan in the {room}", "{room} fan off", "*switch the {room} fan off", NULL}},
    {"tv", "on", V_NONE, ROOMS_TV,
     {"turn on the {room} tv", "switch on the tv in the {room}", "{room} tv on", "*put the {room} tv on", NULL}},
    {"tv", "off", V_NONE, ROOMS_TV,
     {"turn off the {room} tv", "switch off the tv in the {room}", "{room} tv off", "*shut the {room} tv off", NULL}},
    {"blinds", "open", V_NONE, ROOMS_BLINDS,
     {"open the {room} blinds", "raise the blinds in the {room}", "{room} blinds up", "*pull up the {room} blinds",
      NULL}},
    {"blinds", "close", V_NONE, ROOMS_BLINDS,
     {"close the {room} blinds", "lower the blinds in the {room}", "{room} blinds down",
      "*pull down the {room} blinds", NULL}},
    {"lock", "lock", V_NONE, DOORS,
     {"lock the {room} door", "{room} door lock", "*make sure the {room} door is locked", NULL}},
    {"lock", "unlock", V_NONE, DOORS,
     {"unlock the {room} door", "{room} door unlock", "*open the lock of the {room} door", NULL}},
};
#define N_ACTIONS ((int)(sizeof ACTIONS / sizeof ACTIONS[0]))

static int n_values(int kind) { return kind == V_PERCENT ? 10 : kind == V_DEGREES ? 13 : 1; }
static int value_at(int kind, int i) { return kind == V_PERCENT ? 10 * (i + 1) : kind == V_DEGREES ? 16 + i : 0; }
static int count(const char *const *list) {
    int n = 0;
    while (list[n]) n++;
    return n;
}

/* Substitute {room} and {value} into tpl (without a leading '*'). */
static void render(char *out, size_t cap, const char *tpl, const char *room, int value) {
    if (*tpl == '*') tpl++;
    size_t n = 0;
    for (const char *p = tpl; *p && n + 1 < cap;) {
        const char *ins = NULL;
        char num[16];
        if (!strncmp(p, "{room}", 6)) {
            ins = room;
            p += 6;
        } else if (!strncmp(p, "{value}", 7)) {
            snprintf(num, sizeof num, "%d", value);
            ins = num;
            p += 7;
        }
        if (ins) {
            for (; *ins && n + 1 < cap; ins++) out[n++] = *ins;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
}

static void action_json(char *out, size_t cap, const action_spec *a, const char *room, int value) {
    if (a->value_kind == V_NONE)
        snprintf(out, cap, "{\"device\":\"%s\",\"room\":\"%s\",\"action\":\"%s\"}", a->device, room, a->action);
    else
        snprintf(out, cap, "{\"device\":\"%s\",\"room\":\"%s\",\"action\":\"%s\",\"value\":%d}", a->device, room,
                 a->action, value);
}

/* ------------------------------------------------------------ generation */
demo_task_opts demo_task_defaults(void) {
    demo_task_opts o = {.seed = 1, .n_train = 2000, .n_test = 200, .heldout_fraction = 0.2};
    return o;
}

void demo_task_free(demo_task *t) {
    if (!t) return;
    free(t->train);
    free(t->test);
    memset(t, 0, sizeof *t);
}

typedef struct pool {
    demo_example *ex;
    int n, cap;
} pool;

static int pool_add(pool *p, const action_spec *a, const char *tpl, const char *room, int value, int hp, int hs) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        demo_example *x = realloc(p->ex, (size_t)cap * sizeof *x);
        if (!x) return ET_ERUN;
        p->ex = x;
        p->cap = cap;
    }
    demo_example *d = &p->ex[p->n++];
    memset(d, 0, sizeof *d);
    render(d->command, sizeof d->command, tpl, room, value);
    action_json(d->action, sizeof d->action, a, room, value);
    d->heldout_phrasing = hp;
    d->heldout_slot = hs;
    return 0;
}

static void shuffle_pool(pool *p, uint64_t *st, int64_t *perm, demo_example *tmp) {
    et_shuffle_perm(st, perm, p->n);
    for (int i = 0; i < p->n; i++) tmp[i] = p->ex[perm[i]];
    memcpy(p->ex, tmp, (size_t)p->n * sizeof *tmp);
}

int demo_task_generate(demo_task *t, const demo_task_opts *o, et_err *e) {
    memset(t, 0, sizeof *t);
    if (o->n_train < 1 || o->n_train > 10000000 || o->n_test < 0 || o->n_test > 10000000)
        return et_fail(e, ET_EUSAGE, "demo task: n_train %d / n_test %d out of range", o->n_train, o->n_test);
    if (!(o->heldout_fraction >= 0.0 && o->heldout_fraction <= 0.9))
        return et_fail(e, ET_EUSAGE, "demo task: heldout_fraction %g out of range [0, 0.9]", o->heldout_fraction);
    uint64_t st = et_shuffle_split_state(o->seed ^ 0x736d617274686f6dull); /* "smarthom" */
    pool tr = {0}, te = {0};
    int rc = 0;
    for (int ai = 0; ai < N_ACTIONS && !rc; ai++) {
        const action_spec *a = &ACTIONS[ai];
        const int nr = count(a->rooms), nv = n_values(a->value_kind), ns = nr * nv;
        /* held-out slots: a seeded share of the (room, value) grid
         * (at most 8 rooms x 13 values in the tables above) */
        int64_t perm[16 * 16];
        uint8_t held[16 * 16] = {0};
        et_shuffle_perm(&st, perm, ns);
        int nh = (int)(o->heldout_fraction * ns + 0.5);
        if (o->heldout_fraction > 0 && nh == 0 && ns > 1) nh = 1;
        for (int k = 0; k < nh; k++) held[perm[k]] = 1;
        for (int ti = 0; a->templates[ti] && !rc; ti++) {
            const char *tpl = a->templates[ti];
            int hp = tpl[0] == '*';
            for (int s = 0; s < ns && !rc; s++) {
                const char *room = a->rooms[s / nv];
                int value = value_at(a->value_kind, s % nv);
                if (hp || held[s]) rc = pool_add(&te, a, tpl, room, value, hp, held[s]);
                else rc = pool_add(&tr, a, tpl, room, value, 0, 0);
            }
        }
    }
    int big = tr.n > te.n ? tr.n : te.n;
    int64_t *perm = rc ? NULL : malloc((size_t)(big ? big : 1) * sizeof *perm);
    demo_example *tmp = rc ? NULL : malloc((size_t)(big ? big : 1) * sizeof *tmp);
    t->train = rc ? NULL : malloc((size_t)o->n_train * sizeof *t->train);
    t->test = rc ? NULL : malloc((size_t)(o->n_test ? o->n_test : 1) * sizeof *t->test);
    if (rc || !perm || !tmp || !t->train || !t->test) {
        free(perm);
        free(tmp);
        free(tr.ex);
        free(te.ex);
        demo_task_free(t);
        return et_fail(e, ET_ERUN, "demo task: out of memory");
    }
    t->n_train_distinct = tr.n;
    t->n_test_available = te.n;
    /* training: passes over the distinct examples, reshuffled each pass */
    for (int k = 0; k < o->n_train; k++) {
        if (k % tr.n == 0) shuffle_pool(&tr, &st, perm, tmp);
        t->train[k] = tr.ex[k % tr.n];
    }
    t->n_train = o->n_train;
    shuffle_pool(&te, &st, perm, tmp);
    t->n_test = o->n_test < te.n ? o->n_test : te.n;
    memcpy(t->test, te.ex, (size_t)t->n_test * sizeof *t->test);
    free(perm);
    free(tmp);
    free(tr.ex);
    free(te.ex);
    return 0;
}

/* ------------------------------------------------------------ output */
char *demo_task_prompt(int style, const char *command, char *out, size_t cap) {
    int n;
    if (style == DEMO_STYLE_ALPACA) { /* ingest's template, expanded as ingest does */
        const char *t = ET_ALPACA_PROMPT_NO_INPUT, *p = strstr(t, "%s");
        if (!p) return NULL;
        n = snprintf(out, cap, "%.*s%s%s", (int)(p - t), t, command, p + 2);
    } else
        n = snprintf(out, cap, "Command: %s\nAction:\n", command);
    return n >= 0 && (size_t)n < cap ? out : NULL;
}

int demo_task_write_jsonl(const demo_example *ex, int n, const char *path, int style, et_err *e) {
    if (style != DEMO_STYLE_PROMPT && style != DEMO_STYLE_ALPACA)
        return et_fail(e, ET_EUSAGE, "%s: unknown record style %d", path, style);
    et_afile f;
    int rc = et_afile_open(&f, path, e);
    if (rc) return rc;
    for (int i = 0; i < n && !rc; i++) {
        cJSON *o = cJSON_CreateObject();
        char prompt[512];
        int ok = o != NULL;
        if (ok && style == DEMO_STYLE_PROMPT) {
            ok = demo_task_prompt(style, ex[i].command, prompt, sizeof prompt) &&
                 cJSON_AddStringToObject(o, "prompt", prompt) && cJSON_AddStringToObject(o, "completion", ex[i].action);
        } else if (ok) {
            ok = cJSON_AddStringToObject(o, "instruction", ex[i].command) && cJSON_AddStringToObject(o, "input", "") &&
                 cJSON_AddStringToObject(o, "output", ex[i].action);
        }
        char *line = ok ? cJSON_PrintUnformatted(o) : NULL;
        if (!line) rc = et_fail(e, ET_ERUN, "%s: out of memory", path);
        else if (fprintf(f.f, "%s\n", line) < 0) rc = et_fail(e, ET_ERUN, "%s: write error", path);
        cJSON_free(line);
        cJSON_Delete(o);
    }
    if (rc) {
        et_afile_abort(&f);
        return rc;
    }
    return et_afile_commit(&f, e);
}

/* ------------------------------------------------------------ scoring */
/* The answer part of a generation: leading blanks skipped, cut at the first
 * newline, trailing whitespace dropped.  Copies into out[cap] (truncating). */
static void answer_of(const char *g, char *out, size_t cap) {
    while (*g == ' ' || *g == '\t') g++;
    size_t n = 0;
    while (g[n] && g[n] != '\n' && g[n] != '\r') n++;
    while (n > 0 && (g[n - 1] == ' ' || g[n - 1] == '\t')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, g, n);
    out[n] = 0;
}

int demo_task_exact(const char *expected, const char *generated) {
    if (!expected || !generated) return 0;
    char ans[1024];
    answer_of(generated, ans, sizeof ans);
    return !strcmp(ans, expected);
}

int demo_task_json_match(const char *expected, const char *generated) {
    if (!expected || !generated) return 0;
    char ans[1024];
    answer_of(generated, ans, sizeof ans);
    cJSON *a = cJSON_Parse(expected), *b = cJSON_Parse(ans);
    int ok = a && b && cJSON_IsObject(a) && cJSON_IsObject(b) &&
             cJSON_GetArraySize(a) == cJSON_GetArraySize(b) && cJSON_Compare(a, b, 1);
    cJSON_Delete(a);
    cJSON_Delete(b);
    return ok;
}
