/* cli/cli.h — the command table and a small flag parser shared by commands.
 * cli/ is the only place that parses argv and prints for people (DESIGN §5).
 * Exit codes: 0 success, 1 usage, 2 bad input, 3 failure during the run,
 * 4 a check that ran and failed (gate). */
#ifndef ET_CLI_H
#define ET_CLI_H
#include "../common/et.h"

typedef struct cli_cmd {
    const char *name;
    const char *summary;                    /* one line for `edgetune help` */
    const char *usage;                      /* full text for `edgetune help NAME` */
    int (*run)(int argc, char **argv);      /* argv[0] is the command name */
} cli_cmd;

/* Parsed flags: `--name value`, `--name=value`, bare `--flag` (value "1"),
 * and positionals.  `--config recipe.json` loads every key of the JSON
 * object as a flag of the same name (flags given on the command line win). */
typedef struct cli_args {
    int n;                 /* flags */
    char **names, **values;
    int npos;              /* positional arguments */
    char **pos;
    char *derived;         /* ",k1,k2," the flags that took a derived value from a resumed run's
                              recipe (see cli_parse), or NULL */
} cli_args;

/* Parse argv[1..argc-1]. `bool_flags` is a NULL-terminated list of flags
 * that take no value. --config FILE fills in the flags the command line
 * omits from a recipe JSON, except the keys its "derived" entry lists
 * (values the run computed, e.g. warmup from steps: they are derived again
 * for this run); --resume-config FILE (what --resume uses) takes those too,
 * as the same run continues, and remembers them in a->derived so the
 * resumed run's recipe still lists them as derived.
 * Returns 0, or ET_EUSAGE / ET_EINPUT with e filled. */
int cli_parse(cli_args *a, int argc, char **argv, const char *const *bool_flags, et_err *e);
void cli_free(cli_args *a);
/* 1 when the flag was set by the user (command line, or a recipe key that
 * was not derived) to something other than 0 or "auto"; 0 when it is absent,
 * 0/auto (both mean "derive it", common/et.h) or a derived value of a resumed
 * run's recipe. */
int cli_given(const cli_args *a, const char *name);
/* Value of --name, or def when absent. */
const char *cli_str(const cli_args *a, const char *name, const char *def);
/* Numeric values; ET_EUSAGE with a message if present but malformed. */
int cli_int(const cli_args *a, const char *name, long def, long *out, et_err *e);
int cli_float(const cli_args *a, const char *name, double def, double *out, et_err *e);
/* cli_int / cli_float that also require lo <= value <= hi (ET_EUSAGE naming the flag). */
int cli_int_range(const cli_args *a, const char *name, long def, long lo, long hi, long *out, et_err *e);
int cli_float_range(const cli_args *a, const char *name, double def, double lo, double hi, double *out, et_err *e);
/* 1 if the boolean flag --name was given (value "1"). */
int cli_on(const cli_args *a, const char *name);
/* ET_EUSAGE naming the first flag not in the NULL-terminated `known`. */
int cli_check_known(const cli_args *a, const char *const *known, et_err *e);
/* Write every flag as a JSON object (the effective recipe) to path,
 * atomically. 0 or ET_ERUN. */
int cli_save_recipe(const cli_args *a, const char *path, et_err *e);

/* The common start of a command: cli_parse, cli_check_known, and --help
 * (a flag in `bools` and `known`).  Returns -1 when the command should go
 * on with `a` parsed; otherwise `a` is already freed and the return value
 * is the exit code: 0 after printing `usage` for --help, or the usage/input
 * error code after printing the message and `usage` to stderr. */
int cli_start(cli_args *a, int argc, char **argv, const char *const *bools, const char *const *known,
              const char *usage);

/* Print s[0..len) to stdout as a double-quoted string with C escapes
 * (\n \t \r \" \\, \xHH for other control bytes), at most max bytes of it,
 * then "... (len bytes)" when it was cut. */
void cli_print_escaped(const char *s, uint64_t len, uint64_t max);

/* Lock the output directory of a run (cli/outdir.c): create `dir` when
 * absent and take an exclusive flock on dir/.edgetune.lock (holding this
 * process's pid) until the process exits; then remove the temporary files
 * of killed writes (*.tmp.<pid>, in dir and dir/peft).  A second run on the
 * same directory is refused with ET_EUSAGE: "DIR is in use by another
 * edgetune run (pid N, lock DIR/.edgetune.lock) ...".  Every command that
 * writes into an --out DIR calls it once its inputs are validated and
 * before it writes anything there: train, lora, demo-task, report, and
 * distill (written by another worker: call it the same way).  A second call
 * in the same process is a no-op.  0, ET_EUSAGE (busy, or not a directory)
 * or ET_ERUN (cannot create or lock). */
int cli_lock_outdir(const char *dir, et_err *e);

/* Print "edgetune: <msg>" to stderr and return e->code (or 3 if unset). */
int cli_report(const et_err *e);

/* Commands, one file each: cli/cmd_<name>.c */
int cmd_inspect(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_vocab(int argc, char **argv);        /* cli/cmd_vocab.c */
int cmd_demo_task(int argc, char **argv);    /* cli/cmd_demo.c */
int cmd_eval_task(int argc, char **argv);    /* cli/cmd_demo.c */
int cmd_eval(int argc, char **argv);         /* cli/cmd_eval.c */
int cmd_logits(int argc, char **argv);       /* cli/cmd_logits.c */
int cmd_report(int argc, char **argv);       /* cli/cmd_report.c */
int cmd_gate(int argc, char **argv);         /* cli/cmd_gate.c */
int cmd_prune(int argc, char **argv);        /* cli/cmd_prune.c */

extern const cli_cmd cli_commands[];
#endif
