/* lora/demo_task.h — the small, real task behind `make demo` (issue 5 §6):
 * smart-home commands and the JSON action each one means.
 *
 *   "turn off the kitchen lights"
 *       -> {"device":"light","room":"kitchen","action":"off"}
 *   "set the bedroom thermostat to 21 degrees"
 *       -> {"device":"thermostat","room":"bedroom","action":"set","value":21}
 *
 *   demo_task_opts o = demo_task_defaults();         // seed 1, 2000 train, 200 test
 *   demo_task t; et_err e = {0};
 *   demo_task_generate(&t, &o, &e);
 *   demo_task_write_jsonl(t.train, t.n_train, "train.jsonl", DEMO_STYLE_PROMPT, &e);
 *   demo_task_write_jsonl(t.test, t.n_test, "test.jsonl", DEMO_STYLE_PROMPT, &e);
 *   // ... generate with the model from demo_task_prompt(style, t.test[i].command) ...
 *   int ok = demo_task_exact(t.test[i].action, generated);
 *   demo_task_free(&t);
 *
 * The task: 6 devices (light, thermostat, fan, tv, blinds, lock), 8 rooms,
 * 12 actions, numeric values (light brightness 10..100 step 10, thermostat
 * 16..28 degrees), 2-6 paraphrase templates per action.  The output is
 * canonical JSON: keys in the order device, room, action[, value], no
 * spaces, integers for values, so exact string match is the metric.
 *
 * Held-out split (nothing the model is tested on was seen in training):
 *  - held-out phrasings: about one template in four per action is never
 *    used for training;
 *  - held-out slots: a seeded `heldout_fraction` of each action's
 *    (room, value) slots is never used for training;
 *  a test example uses a held-out phrasing or a held-out slot (or both);
 *  train examples use neither.  So train and test commands are disjoint
 *  strings, and so are their (command, action) pairs.
 * Deterministic: the same options give the same examples in the same order
 * on every platform (splitmix64 + Fisher-Yates, datasets/shuffle.h).
 * Small on purpose: 55 distinct words plus numbers, commands of 3-8 words, so a
 * tiny model learns it in minutes on 2 cores.
 */
#ifndef ET_DEMO_TASK_H
#define ET_DEMO_TASK_H

#include <stdint.h>

#include "../common/et.h"

#define DEMO_MAX_TEXT 128

typedef struct demo_example {
    char command[DEMO_MAX_TEXT]; /* "turn off the kitchen lights" */
    char action[DEMO_MAX_TEXT];  /* canonical JSON, e.g. {"device":"light","room":"kitchen","action":"off"} */
    int heldout_phrasing;        /* 1 if the template is never used for training */
    int heldout_slot;            /* 1 if the (room, value) slot is never used for training */
} demo_example;

typedef struct demo_task_opts {
    uint64_t seed;
    int n_train;              /* training examples; the distinct ones are repeated (reshuffled) if fewer */
    int n_test;               /* test examples, distinct; capped at the number available */
    double heldout_fraction;  /* share of (room, value) slots kept for testing, [0, 0.9] */
} demo_task_opts;

typedef struct demo_task {
    demo_example *train;
    int n_train;
    demo_example *test;
    int n_test;
    int n_train_distinct;     /* distinct training commands available */
    int n_test_available;     /* distinct test commands available */
} demo_task;

/* seed 1, n_train 2000, n_test 200, heldout_fraction 0.2. */
demo_task_opts demo_task_defaults(void);

/* Generate both splits.  0, ET_EUSAGE (bad options) or ET_ERUN (memory). */
int demo_task_generate(demo_task *t, const demo_task_opts *o, et_err *e);
void demo_task_free(demo_task *t);

/* Record styles for `edgetune data` (datasets/ingest.h):
 *  DEMO_STYLE_PROMPT: {"prompt": "Command: <command>\nAction:\n", "completion": "<json>"}
 *                     (short, for tiny models);
 *  DEMO_STYLE_ALPACA: {"instruction": "<command>", "input": "", "output": "<json>"}
 *                     (ingest wraps it in the Stanford Alpaca prompt). */
enum { DEMO_STYLE_PROMPT = 0, DEMO_STYLE_ALPACA = 1 };

/* Write n examples as JSON lines (atomic).  0, ET_EUSAGE or ET_ERUN. */
int demo_task_write_jsonl(const demo_example *ex, int n, const char *path, int style, et_err *e);
/* The exact text the model sees before its answer in `style` (what ingest
 * builds as the masked prompt), written into out[cap]; returns out, or
 * NULL if it does not fit. */
char *demo_task_prompt(int style, const char *command, char *out, size_t cap);

/* Exact match: 1 if `generated`, with leading spaces and everything from
 * the first newline (or trailing whitespace) removed, equals `expected`. */
int demo_task_exact(const char *expected, const char *generated);
/* Semantic match: 1 if `generated` (trimmed as above) is a JSON object
 * with the same keys and values as `expected`, in any order and spacing. */
int demo_task_json_match(const char *expected, const char *generated);

#endif
