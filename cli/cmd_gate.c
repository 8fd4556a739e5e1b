/* cli/cmd_gate.c — `edgetune gate --baseline B --current C [thresholds]
 * [--policy P] [--junit OUT.xml] [--json OUT.json]`: the CI regression gate
 * (eval/gate.h).  Prints a table of every check and a last line
 * "gate: N checks, N passed, N failed"; exit 0 when all hold, 4 when one fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/gate.h"
#include "cli.h"

static const char USAGE[] =
    "usage: edgetune gate --baseline BASE.json[,...] --current CUR.json[,...] [thresholds]\n"
    "                     [--policy policy.json] [--junit OUT.xml] [--json OUT.json]\n"
    "  BASE, CUR: eval results (edgetune eval --json), comma-separated lists, or report.json files\n"
    "             (every row); paired by artifact name, task name and data (docs/report_gate.md)\n"
    "  thresholds (on the command line they override the policy):\n"
    "    --max-acc-drop PTS     accuracy, macro_f1, exact_match, acc, acc_norm fall at most PTS points\n"
    "    --max-ppl-ratio R      current ppl / baseline ppl <= R\n"
    "    --max-kl X             current kl_mean <= X (nats)\n"
    "    --max-bytes N          current bytes on disk <= N (K M G T: powers of 1000; Ki Mi Gi Ti: of 1024)\n"
    "    --max-bytes-ratio R    current bytes / baseline bytes <= R\n"
    "    --min-tokens-per-s X   current tokens/s >= X\n"
    "    --min-speed-ratio R    current tokens/s / baseline tokens/s >= R\n"
    "  --policy FILE   {\"default\": {...}, \"tasks\": {\"classify\": {...}}, \"artifacts\": {\"q4\": {...}}}\n"
    "                  with the keys max_acc_drop, max_ppl_ratio, ...; flags > artifact > task > default\n"
    "  --junit FILE    JUnit XML of the checks;  --json FILE  the verdict as JSON\n"
    "  exit: 0 every check holds, 4 a check failed, 1 usage, 2 bad input (a result that is not one,\n"
    "  NaN, a baseline of another task, data or vocabulary, a bad policy key), 3 I/O";

/* Thresholds given as flags into p->flags.  ET_EUSAGE naming a bad value. */
static int read_flags(const cli_args *a, et_gate_policy *p, et_err *e) {
    for (int k = 0; k < ET_GATE_NLIMITS; k++) {
        const char *v = cli_str(a, et_gate_limit_names[k], NULL);
        if (v && et_gate_limit_parse(k, v, &p->flags[k])) {
            char flag[64];
            snprintf(flag, sizeof flag, "%s", et_gate_limit_names[k]);
            for (char *q = flag; *q; q++) if (*q == '_') *q = '-';
            return et_fail(e, ET_EUSAGE, "--%s: bad value '%s'", flag, v);
        }
    }
    return 0;
}

/* "a.json,b.json" (or one report.json) into l. */
static int read_side(const char *spec, et_result_list *l, et_err *e) {
    char *s = strdup(spec), *save = NULL;
    if (!s) return et_fail(e, ET_ERUN, "out of memory");
    int rc = 0;
    for (char *p = strtok_r(s, ",", &save); p && !rc; p = strtok_r(NULL, ",", &save)) rc = et_result_list_add_file(l, p, e);
    free(s);
    if (!rc && !l->n) rc = et_fail(e, ET_EUSAGE, "no files in '%s'", spec);
    return rc;
}

static const char *verdict(const et_gate_check *k) {
    if (k->status == ET_GATE_NEW) return "NEW";
    if (k->status == ET_GATE_PASS) return "PASS";
    return strcmp(k->kind, "missing") ? "FAIL" : "FAIL (missing)";
}

static const char *cell(const et_gate_check *k, int c) {
    const char *v[8] = {k->artifact, k->task, k->metric, k->baseline_txt, k->current_txt, k->change_txt,
                        k->threshold_txt, verdict(k)};
    return *v[c] ? v[c] : "-";
}

static void print_table(const et_gate_result *g) {
    static const char *const head[8] = {"artifact", "task", "metric", "baseline", "current", "change", "threshold",
                                        "verdict"};
    int w[8];
    for (int c = 0; c < 8; c++) {
        w[c] = (int)strlen(head[c]);
        for (int i = 0; i < g->n; i++) {
            int n = (int)strlen(cell(&g->checks[i], c));
            if (n > w[c]) w[c] = n;
        }
    }
    w[7] = 0; /* the last column unpadded */
    for (int c = 0; c < 8; c++) printf("%-*s%s", w[c], head[c], c < 7 ? "  " : "\n");
    for (int i = 0; i < g->n; i++)  /* numbers right-aligned */
        for (int c = 0; c < 8; c++)
            printf("%*s%s", c >= 3 && c <= 5 ? w[c] : -w[c], cell(&g->checks[i], c), c < 7 ? "  " : "\n");
    for (int i = 0; i < g->n; i++)
        if (g->checks[i].status != ET_GATE_PASS)
            printf("%s: %s\n", g->checks[i].status == ET_GATE_NEW ? "new" : "FAIL", g->checks[i].message);
    printf("gate: %d checks, %d passed, %d failed\n", g->n_checks, g->n_passed, g->n_failed);
}

static int write_outputs(const cli_args *a, const et_gate_result *g, et_err *e) {
    const char *junit = cli_str(a, "junit", NULL), *json = cli_str(a, "json", NULL);
    int rc = junit ? et_gate_write_junit(g, junit, e) : 0;
    if (!rc && json) {
        cJSON *j = et_gate_json(g);
        rc = j ? et_eval_write_json(j, json, e) : et_fail(e, ET_ERUN, "%s: out of memory", json);
        cJSON_Delete(j);
    }
    return rc;
}

static int gate_run(const cli_args *a, et_err *e) {
    et_gate_policy p;
    et_gate_policy_init(&p);
    et_result_list base = {0}, cur = {0};
    et_gate_result g = {0};
    const char *policy = cli_str(a, "policy", NULL);
    int rc = read_flags(a, &p, e);
    if (!rc && policy) rc = et_gate_policy_read(&p, policy, e);
    if (!rc && !et_gate_policy_any(&p))
        rc = et_fail(e, ET_EUSAGE, "no thresholds: give --policy or a flag such as --max-acc-drop");
    if (!rc) rc = read_side(cli_str(a, "baseline", ""), &base, e);
    if (!rc) rc = read_side(cli_str(a, "current", ""), &cur, e);
    if (!rc) rc = et_gate_run(&base, &cur, &p, &g, e);
    if (rc == 0 || rc == ET_ECHECK) {
        print_table(&g);
        int wrc = write_outputs(a, &g, e);
        if (wrc) rc = wrc;
    }
    et_gate_free(&g);
    et_result_list_free(&base);
    et_result_list_free(&cur);
    et_gate_policy_free(&p);
    return rc;
}

int cmd_gate(int argc, char **argv) {
    static const char *const bools[] = {"help", NULL};
    static const char *const known[] = {"baseline", "current", "policy", "junit", "json", "max_acc_drop",
                                        "max_ppl_ratio", "max_kl", "max_bytes", "max_bytes_ratio",
                                        "min_tokens_per_s", "min_speed_ratio", "help", NULL};
    cli_args a;
    int rc = cli_start(&a, argc, argv, bools, known, USAGE);
    if (rc >= 0) return rc;
    if (!cli_str(&a, "baseline", NULL) || !cli_str(&a, "current", NULL) || a.npos) {
        fprintf(stderr, "edgetune: gate: needs --baseline and --current (and no other arguments)\n%s\n", USAGE);
        cli_free(&a);
        return ET_EUSAGE;
    }
    et_err e = {0};
    rc = gate_run(&a, &e);
    cli_free(&a);
    if (rc == ET_ECHECK || rc == 0) return rc;
    rc = cli_report(&e);
    if (rc == ET_EUSAGE) fprintf(stderr, "%s\n", USAGE);
    return rc;
}
