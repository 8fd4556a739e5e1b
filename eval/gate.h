/* eval/gate.h — the CI regression gate (`edgetune gate`): current eval
 * results against baseline ones, under thresholds, to a verdict.
 *
 *   et_result_list base = {0}, cur = {0};
 *   et_result_list_add_file(&base, "baseline.json", &e);   // eval result or report.json
 *   et_result_list_add_file(&cur, "current.json", &e);
 *   et_gate_policy p;
 *   et_gate_policy_init(&p);
 *   et_gate_policy_read(&p, "policy.json", &e);            // optional
 *   p.flags[ET_GATE_MAX_ACC_DROP] = 1.0;                   // command line: wins
 *   et_gate_result g;
 *   int rc = et_gate_run(&base, &cur, &p, &g, &e);         // 0 pass, ET_ECHECK fail
 *   ... g.checks[i] ...; et_gate_write_junit(&g, "gate.xml", &e);
 *   et_gate_free(&g); et_gate_policy_free(&p);
 *
 * Pairing: a current result goes with the baseline of the same name, task
 * name and data (task.data_sha256 when both have one, else task.data);
 * failing that, with the only baseline of the same name and task, or of the
 * same name — and such a pair is refused (ET_EINPUT) saying what differs.
 * A pair must agree on task.name, the data, artifact.model.n_vocab and every
 * task setting (every key of "task" except name, data, data_sha256, ref,
 * samples, and the counts records, scored, skipped, truncated, tokens,
 * documents); the
 * model itself may differ.  A
 * current result with no baseline is "new" (listed, not a check); a
 * baseline with no current result is a failed check ("missing").
 *
 * Thresholds (ET_GATE_*; NAN when not set), each applied where its metric is:
 *   max_acc_drop      percentage points: 100 * (baseline - current) of accuracy,
 *                     macro_f1, exact_match, acc, acc_norm (fractions 0..1)
 *   max_ppl_ratio     current ppl / baseline ppl
 *   max_kl            current metrics.kl_mean (nats)
 *   max_bytes         current artifact.bytes
 *   max_bytes_ratio   current bytes / baseline bytes
 *   min_tokens_per_s  current speed.tokens_per_s (missing: the check fails)
 *   min_speed_ratio   current tokens/s / baseline tokens/s
 * A limit is a bound that holds with equality (drop <= max_acc_drop, ...).
 * Which value applies to a pair: the command line (flags[]), else the
 * policy's "artifacts"[name], else its "tasks"[task name], else "default".
 */
#ifndef ET_GATE_H
#define ET_GATE_H

#include <cJSON.h>

#include "../common/et.h"
#include "report.h"

enum {
    ET_GATE_MAX_ACC_DROP,
    ET_GATE_MAX_PPL_RATIO,
    ET_GATE_MAX_KL,
    ET_GATE_MAX_BYTES,
    ET_GATE_MAX_BYTES_RATIO,
    ET_GATE_MIN_TOKENS_PER_S,
    ET_GATE_MIN_SPEED_RATIO,
    ET_GATE_NLIMITS
};

/* The policy keys (= command-line flags with '_' for '-'), in enum order. */
extern const char *const et_gate_limit_names[ET_GATE_NLIMITS];

/* Index of a policy key, or -1. */
int et_gate_limit_index(const char *key);
/* Parse a limit's value from text (max_bytes takes K/M/G/T suffixes, see
 * et_parse_bytes); ratios must be > 0, max_kl, max_bytes and
 * min_tokens_per_s >= 0, max_acc_drop any finite number.  0 or -1. */
int et_gate_limit_parse(int k, const char *text, double *out);

typedef struct et_gate_scope {
    char *name;                        /* artifact or task name (owned) */
    double lim[ET_GATE_NLIMITS];
} et_gate_scope;

typedef struct et_gate_policy {
    double flags[ET_GATE_NLIMITS];     /* command line: override everything */
    double def[ET_GATE_NLIMITS];       /* policy "default" */
    int n_tasks, n_artifacts;
    et_gate_scope *tasks, *artifacts;  /* policy "tasks" / "artifacts" */
} et_gate_policy;

/* Every limit unset (NAN), no scopes. */
void et_gate_policy_init(et_gate_policy *p);
/* Read a policy JSON: {"default": {limits}, "tasks": {"name": {limits}},
 * "artifacts": {"name": {limits}}}, limits keyed by et_gate_limit_names
 * with numbers (max_bytes also a string such as "300M").  0, or ET_EINPUT
 * naming the file and the key (an unknown key, a bad value); p keeps its
 * flags and is otherwise unchanged on error. */
int et_gate_policy_read(et_gate_policy *p, const char *path, et_err *e);
/* The limits that apply to (artifact, task); NAN where none is set. */
void et_gate_resolve(const et_gate_policy *p, const char *artifact, const char *task, double out[ET_GATE_NLIMITS]);
/* 1 when any limit is set anywhere in p. */
int et_gate_policy_any(const et_gate_policy *p);
/* Free the scopes; p is left as et_gate_policy_init leaves it. */
void et_gate_policy_free(et_gate_policy *p);

enum { ET_GATE_PASS, ET_GATE_FAIL, ET_GATE_NEW };

typedef struct et_gate_check {
    int status;                 /* ET_GATE_PASS / FAIL / NEW */
    char *artifact, *task;      /* result name, task.name */
    char *metric;               /* "accuracy", "ppl", "bytes", "tokens_per_s", "-" */
    char *kind;                 /* the limit's key, "missing" or "new" */
    double baseline, current;   /* the metric's values (fractions for accuracy); NAN when absent */
    double change;              /* pts for max_acc_drop (current - baseline), a ratio for *_ratio,
                                 * current - baseline otherwise; NAN when n/a */
    double threshold;           /* the limit; NAN for missing/new */
    char *baseline_txt, *current_txt, *change_txt, *threshold_txt;  /* as printed: "81.2%", "x1.04", "<= 1 pts" */
    char *message;              /* one line for a failure or a new result ("" for a pass) */
} et_gate_check;

typedef struct et_gate_result {
    int n, cap;
    et_gate_check *checks;      /* in order: each current result's checks, then missing baselines */
    int n_checks, n_passed, n_failed, n_new;   /* n_checks = n_passed + n_failed (new ones are not checks) */
} et_gate_result;

/* Pair base and cur and run every check that applies.  Returns 0 when
 * every check holds, ET_ECHECK when one fails (out filled either way),
 * ET_EINPUT when a pair may not be compared or a side holds the same
 * (name, task, data) twice (out empty, the message names both files and
 * what differs), ET_ERUN when out of memory. */
int et_gate_run(const et_result_list *base, const et_result_list *cur, const et_gate_policy *p, et_gate_result *out,
                et_err *e);
/* JUnit XML: <testsuites><testsuite name="edgetune gate"> with a
 * <testcase classname="ARTIFACT.TASK" name="METRIC KIND"> per check,
 * <failure message=...> for failed ones and <skipped> for new results;
 * written atomically.  0 or ET_ERUN. */
int et_gate_write_junit(const et_gate_result *g, const char *path, et_err *e);
/* The verdict as JSON (schema "edgetune.gate/1": pass, counts, checks[]);
 * NULL when out of memory.  The caller frees it with cJSON_Delete. */
cJSON *et_gate_json(const et_gate_result *g);
/* Free every check and zero g (safe on a zeroed result). */
void et_gate_free(et_gate_result *g);

#endif
