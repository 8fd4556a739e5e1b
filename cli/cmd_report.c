/* cli/cmd_report.c — `edgetune report EVAL.json... [--sweep S.json] -o DIR`:
 * the accuracy-vs-size report (eval/report.h) as DIR/report.json, report.md
 * and report.svg; with --sweep, the evaluations are run first (eval/eval.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/report.h"
#include "cli.h"

static const char USAGE[] =
    "usage: edgetune report EVAL.json... [--sweep sweep.json] -o DIR [--metric NAME] [--title T] [--series]\n"
    "  EVAL.json      eval results (edgetune eval --json), or report.json files of an earlier report\n"
    "  -o DIR         writes DIR/report.json, DIR/report.md and DIR/report.svg (each atomically)\n"
    "  --sweep FILE   first evaluate every artifact x task of FILE:\n"
    "                 {\"tasks\": [{\"task\": \"perplexity\", \"data\": \"wiki.txt\", ...eval flags}],\n"
    "                  \"artifacts\": [{\"name\": \"base\", \"model\": \"m.gguf\", \"lora\": [\"a.gguf:1.0\"]}]}\n"
    "                 each result is also written to DIR/evals/<artifact>__<task>.json\n"
    "  --metric NAME  rank and plot by metrics.NAME instead of each task's primary metric\n"
    "  --title T      title of report.md and report.svg\n"
    "  --series       report.svg: also join the results whose names share the first word (\"PTQ Q4_0\",\n"
    "                 \"PTQ Q3_K_M\" / \"QAT Q4_0\", ...) into one dashed line each, e.g. PTQ and QAT side by side\n"
    "  One table and one plot panel per task (task name + data); rows on the Pareto frontier (no other\n"
    "  artifact both no larger and no worse) are marked.  Reference: docs/report_gate.md\n"
    "  exit: 0 written, 1 usage, 2 bad input (not an eval result, NaN, the same name and task twice,\n"
    "  a bad sweep file), 3 I/O or an evaluation that failed";

/* Run every job of the sweep; each result into DIR/evals/ and the list. */
static int run_sweep(const char *path, const char *dir, et_result_list *l, et_err *e) {
    et_eval_opts def = et_eval_defaults();
    et_sweep s;
    int rc = et_sweep_read(path, &def, &s, e);
    char evdir[4096];
    snprintf(evdir, sizeof evdir, "%s/evals", dir);
    if (!rc) rc = et_mkdir_p(evdir, e);
    int nj = s.n_tasks * s.n_artifacts;
    for (int j = 0; !rc && j < nj; j++) {
        const et_eval_opts *o = &s.jobs[j];
        char out[8192];
        snprintf(out, sizeof out, "%s/%s", evdir, s.files[j]);
        fprintf(stderr, "report: [%d/%d] %s on %s%s%s\n", j + 1, nj, o->name, o->task, o->data ? " " : "",
                o->data ? o->data : "");
        cJSON *res = NULL;
        et_err ee = {0};
        rc = et_eval_run(o, &res, &ee);
        if (rc) {
            rc = et_fail(e, rc == ET_EUSAGE ? ET_EINPUT : rc, "%s: artifact \"%s\", task %s: %s", path, o->name,
                         o->task, ee.msg);
            break;
        }
        rc = et_eval_write_json(res, out, e);
        if (!rc) rc = et_result_list_add(l, res, out, e);
        else cJSON_Delete(res);
    }
    et_sweep_free(&s);
    return rc;
}

static void print_summary(const et_report *r, const char *dir) {
    printf("report: %d result%s on %d task%s -> %s/report.json, report.md, report.svg\n", r->n, r->n == 1 ? "" : "s",
           r->n_groups, r->n_groups == 1 ? "" : "s", dir);
    for (int g = 0; g < r->n_groups; g++) {
        const et_report_group *G = &r->groups[g];
        printf("  %s%s%s (%s): frontier", G->task, *G->data ? " " : "", G->data, G->metric);
        for (int k = 0; k < G->n; k++) {
            const et_report_row *w = &r->rows[G->rows[k]];
            char sz[32];
            et_human_bytes(w->bytes, sz, sizeof sz);
            if (w->pareto) printf(" %s (%s, %.4g)", w->name, sz, w->value);
        }
        printf("\n");
    }
}

static int report_run(const cli_args *a, et_err *e) {
    const char *dir = cli_str(a, "output", NULL), *sweep = cli_str(a, "sweep", NULL);
    et_result_list l = {0};
    et_report r;
    et_report_init(&r);
    r.series = cli_on(a, "series");
    int rc = 0;
    for (int i = 0; !rc && i < a->npos; i++) rc = et_result_list_add_file(&l, a->pos[i], e);
    if (!rc && dir) rc = cli_lock_outdir(dir, e);   /* one run per output directory */
    if (!rc && sweep) rc = run_sweep(sweep, dir, &l, e);
    if (!rc) rc = et_report_take(&r, &l, e);
    if (!rc) rc = et_report_finish(&r, cli_str(a, "metric", NULL), e);
    if (!rc) rc = et_report_write(&r, dir, cli_str(a, "title", NULL), e);
    if (!rc) print_summary(&r, dir);
    et_result_list_free(&l);
    et_report_free(&r);
    return rc;
}

int cmd_report(int argc, char **argv) {
    static const char *const bools[] = {"help", "series", NULL};
    static const char *const known[] = {"output", "sweep", "metric", "title", "help", "series", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    if (!cli_str(&a, "output", NULL) || (a.npos == 0 && !cli_str(&a, "sweep", NULL))) {
        fprintf(stderr, "edgetune: report: needs eval results (or --sweep) and -o DIR\n%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    et_err e = {0};
    rc = report_run(&a, &e);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
