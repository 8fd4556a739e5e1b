/* eval/report.h — the accuracy-vs-size report (`edgetune report`): eval
 * results (eval.h, schema "edgetune.eval/1") grouped by task, the Pareto
 * frontier of bytes on disk against the task's metric, written as
 * DIR/report.json, DIR/report.md and DIR/report.svg.
 *
 *   et_report r;
 *   et_report_init(&r);
 *   et_result_list l = {0};
 *   et_result_list_add_file(&l, "q8.json", &e);        // eval result or report.json
 *   et_report_take(&r, &l, &e);                        // rows; refuses duplicates
 *   et_report_finish(&r, NULL, &e);                    // groups, metric, frontier
 *   et_report_write(&r, "out", "stories260K", &e);     // three files, atomically
 *   et_report_free(&r);
 *
 * Pareto frontier (per task group): a row is on it when no other row of
 * the group is both no larger in bytes and no worse in the metric, with at
 * least one of the two strictly better.  Two identical points are both on it.
 *
 * Sizes are printed in decimal units (1 KB = 1000 bytes, 1 MB = 10^6), the
 * units of the log10 axis of the plot.  docs/report_gate.md is the reference.
 *
 * Also here, because `edgetune gate` reads the same inputs: the list of
 * results read from eval JSONs or report.json files, a growable string with
 * XML escaping, and an atomic text write.  Nothing here prints or exits.
 */
#ifndef ET_REPORT_H
#define ET_REPORT_H

#include <stddef.h>

#include <cJSON.h>

#include "../common/et.h"
#include "eval.h"

#define ET_REPORT_SCHEMA "edgetune.report/1"

/* ---- a growable string ---- */
typedef struct et_sbuf {
    char *s;          /* NUL-terminated text (NULL until the first append) */
    size_t n, cap;    /* bytes used (without the NUL), bytes allocated */
    int oom;          /* 1 after an allocation failed (later appends do nothing) */
} et_sbuf;

/* Append printf-style text (on allocation failure b->oom is set and the text dropped). */
void et_sbuf_printf(et_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s escaped for XML text and attribute values (& < > " '); control
 * bytes and invalid UTF-8 become '?', so the output is always well formed. */
void et_sbuf_xml(et_sbuf *b, const char *s);
/* Free the text and zero b (safe on a zeroed buffer). */
void et_sbuf_free(et_sbuf *b);
/* et_write_text (write text to a file atomically): common/et.h */
/* mkdir -p: create dir and its missing parents.  0 or ET_ERUN. */
int et_mkdir_p(const char *dir, et_err *e);

/* ---- eval results read from files ---- */
typedef struct et_result_list {
    int n, cap;
    cJSON **res;     /* validated eval results (owned) */
    char **where;    /* "file" or "report.json: rows[3]" for messages (owned) */
} et_result_list;

/* Validate an eval result object as et_eval_read_json does (schema, name,
 * task.name, metrics, primary {metric, value}, artifact.bytes, every number
 * finite).  0 or ET_EINPUT naming `where` and the field. */
int et_result_check(const cJSON *j, const char *where, et_err *e);
/* Read path: an eval result (added as one entry) or a report.json from
 * et_report_write (every row's result added).  0, ET_EINPUT (not JSON, not
 * a result, a bad row), or ET_ERUN (out of memory).  On error l is as before. */
int et_result_list_add_file(et_result_list *l, const char *path, et_err *e);
/* Add a result object (ownership passes to l, also on error).  0 or ET_ERUN. */
int et_result_list_add(et_result_list *l, cJSON *res, const char *where, et_err *e);
/* Free every result and zero l (safe on a zeroed list). */
void et_result_list_free(et_result_list *l);

/* ---- metrics ---- */
/* Direction and kind of a metric by name: *higher 1 when higher is
 * better, *fraction 1 when it is a fraction 0..1 (printed as a percentage).
 * Returns 0, or -1 for a metric whose direction is not known. */
int et_metric_info(const char *name, int *higher, int *fraction);
/* Human size in decimal units: "812 B", "98.3 KB", "1.25 MB", "3.1 GB". */
void et_human_bytes(double bytes, char *buf, size_t n);
/* Parse a size: a number with an optional suffix K, M, G, T (powers of
 * 1000) or Ki, Mi, Gi, Ti (powers of 1024), optionally followed by B.
 * 0 and *out in bytes, or -1 (malformed, negative or not finite). */
int et_parse_bytes(const char *s, double *out);

/* ---- Pareto frontier ---- */
/* on[i] = 1 when point i (bytes[i], value[i]) is on the frontier of the n
 * points (definition above; higher_is_better says which way value is
 * better), else 0.  O(n log n).  Returns 0, or ET_ERUN when out of memory. */
int et_pareto(int n, const double *bytes, const double *value, int higher_is_better, int *on);

/* ---- the report ---- */
typedef struct et_report_row {
    cJSON *result;         /* the eval result (owned) */
    char *where;           /* the file it came from (owned) */
    const char *name;      /* result "name" */
    const char *task;      /* task.name */
    const char *data;      /* task.data ("" when absent) */
    double bytes;          /* artifact.bytes */
    double n_params;       /* artifact.n_params; NAN when absent */
    double tokens_per_s;   /* speed.tokens_per_s; NAN when absent */
    double peak_rss;       /* memory.peak_rss_bytes; NAN when absent */
    double value;          /* the group's metric (set by et_report_finish) */
    int group;             /* index into groups */
    int pareto;            /* 1 on the frontier of its group */
} et_report_row;

typedef struct et_report_group {
    const char *task, *data;   /* the key (borrowed from the first row) */
    const char *metric;        /* plotted metric: --metric, or the rows' primary */
    int higher_is_better;
    int fraction;              /* metric is a fraction 0..1 */
    int n;
    int *rows;                 /* row indices, bytes ascending (owned) */
} et_report_group;

typedef struct et_report {
    int n, cap;
    et_report_row *rows;
    int n_groups;
    et_report_group *groups;
    int series;  /* report.svg: also join the rows whose names share the first word (e.g. "PTQ Q4_0",
                    "PTQ Q3_K_M" / "QAT Q4_0", ...) into one line each, smallest first (edgetune report --series) */
} et_report;

/* An empty report (no rows, no groups). */
void et_report_init(et_report *r);
/* Move every result of l into the report (l is left empty, also on error:
 * what was not moved yet is freed).  ET_EINPUT when
 * two results have the same name and task (task.name and task.data): the
 * message names both files; ET_ERUN when out of memory. */
int et_report_take(et_report *r, et_result_list *l, et_err *e);
/* Group the rows by task, choose each group's metric and mark the frontier.
 * metric: NULL for each result's primary metric, else a metrics key: groups
 * where no row has it keep the primary one.  ET_EINPUT when the rows of a
 * group disagree on the primary metric or its direction, or only some of
 * them have `metric`; ET_EUSAGE when `metric`'s direction is not known. */
int et_report_finish(et_report *r, const char *metric, et_err *e);
/* The three documents (after et_report_finish).  The caller frees them
 * (cJSON_Delete / free); NULL when out of memory. */
cJSON *et_report_json(const et_report *r, const char *title);
char *et_report_markdown(const et_report *r, const char *title);
char *et_report_svg(const et_report *r, const char *title);
/* mkdir -p dir, then write dir/report.json, dir/report.md, dir/report.svg,
 * each atomically.  0 or ET_ERUN (out of memory, a directory or a file
 * that cannot be written). */
int et_report_write(const et_report *r, const char *dir, const char *title, et_err *e);
/* Free the rows (their results), the groups, and zero r. */
void et_report_free(et_report *r);

/* ---- sweeps: artifacts x tasks to evaluate (`report --sweep`) ----
 * {"tasks": [{"task": "perplexity", "data": "wiki.txt", ...}],
 *  "artifacts": [{"name": "base", "model": "m.gguf", "lora": ["a.gguf:1.0"]}]}
 * A task's other keys are `edgetune eval` flags (dashes or underscores):
 * scoring, split, ref, template, labels, classes, label_first, n_predict,
 * stop, ctx (n_ctx), threads (n_threads), max (max_records), skip_long,
 * kv_type (F32 | F16), isa.
 * labels, classes and stop may be a list of strings. */
typedef struct et_sweep {
    cJSON *root;           /* the parsed file; the opts point into it (owned) */
    int n_tasks, n_artifacts;
    et_eval_opts *jobs;    /* n_artifacts * n_tasks; job a * n_tasks + t */
    char **files;          /* per job: "<artifact>__<task>.json", names made
                            * file-safe; "__<task>_<t+1>" when a task name repeats */
    char **owned;          /* strings the opts point to (joined lists, paths) */
    int n_owned, cap_owned;
} et_sweep;

/* Read a sweep file: each job starts as *defaults (et_eval_defaults() in
 * the CLI).  0, or ET_EINPUT naming the file and the key (not JSON, no
 * "tasks"/"artifacts", an unknown key, a wrong type, a repeated artifact
 * name, two tasks of the same name on the same data), or ET_ERUN (out of
 * memory).  On error s is zeroed. */
int et_sweep_read(const char *path, const et_eval_opts *defaults, et_sweep *s, et_err *e);
/* Free everything the sweep owns and zero s (safe on a zeroed sweep). */
void et_sweep_free(et_sweep *s);

#endif
