/* cli/train_ui.h — what a training command shows and writes for people,
 * shared by commands that drive train/trainer.h (`edgetune lora`, ...):
 * the progress line (a \r line on a terminal, plain log lines otherwise),
 * JSON-lines metrics, Ctrl-C as "stop after a checkpoint", the effective
 * recipe, and --resume filling in flags from OUT/recipe.json. */
#ifndef ET_CLI_TRAIN_UI_H
#define ET_CLI_TRAIN_UI_H

#include <stdio.h>

#include "../datasets/dataset.h"
#include "../export/model.h"
#include "../train/checkpoint.h"
#include "../train/trainer.h"
#include "cli.h"

typedef struct cli_progress {
    int tty;                /* stderr is a terminal */
    int log_every;          /* plain log line every N steps */
    FILE *metrics;          /* JSON lines (et_train_event_json), or NULL */
    int line_open;          /* a \r line is on the terminal */
    const char *what;       /* prefix of the progress line ("lora"), or NULL for none */
    double tokens_per_step; /* B x T x grad_accum; when set, tok/s is averaged over this
                               process's steps (one step's rate is too noisy to read) */
    double step_time;       /* seconds spent in this process's steps */
    int64_t n_steps;
    /* filled in from the events, for the summary: */
    double first_val_loss;  /* first evaluation seen (NaN if none) */
    int64_t first_val_step;
    double last_val_loss;   /* last evaluation seen (NaN if none) */
    int64_t skipped;        /* steps skipped for having no target token (ET_EV_SKIP) */
} cli_progress;

/* A progress state for stderr; metrics may be NULL. */
void cli_progress_init(cli_progress *p, const char *what, int log_every, FILE *metrics);
/* et_train_opts.on_event: prints and records; returns nonzero after Ctrl-C
 * (cli_progress_catch_sigint) so the loop stops after a checkpoint. */
int cli_progress_event(void *user, const et_train_event *ev);
/* Finish an open \r line. */
void cli_progress_end(cli_progress *p);
/* Install / remove the SIGINT handler; cli_interrupted() says whether it fired. */
void cli_progress_catch_sigint(int on);
int cli_interrupted(void);

/* The effective recipe: every setting as a flag of the same name. */
typedef struct cli_recipe {
    int n;
    char *names[96], *values[96];
} cli_recipe;
void cli_recipe_add(cli_recipe *r, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The shortest decimal (6 to 9 digits) that reads back as the same float. */
void cli_recipe_float(cli_recipe *r, const char *k, float v);
/* The recipe's "derived" entry: those of keys (NULL-terminated) that the
 * user did not set (cli_given), so their recorded values are computed ones
 * (warmup from steps, min_lr from lr, seq_len from the model...): a later
 * --config derives them again, --resume keeps them (cli_parse). */
void cli_recipe_derived(cli_recipe *r, const cli_args *a, const char *const *keys);
/* Write it to path (atomic) and return its text in *json (malloc'd, for
 * checkpoints); frees r's strings.  0 or an error code. */
int cli_recipe_save(cli_recipe *r, const char *path, char **json, et_err *e);

/* cli_parse, and with --resume but no --config: parse again with
 * --config OUT/recipe.json appended, so the saved recipe fills in every flag
 * the command line omits.  0, ET_EUSAGE (no run to resume) or ET_ERUN. */
int cli_parse_with_resume(cli_args *a, int argc, char **argv, const char *const *bools, et_err *e);

/* Per-command defaults of the shared training flags. */
typedef struct cli_train_defaults {
    long steps;            /* --steps */
    double lr;             /* --lr (min_lr defaults to lr/10) */
    double weight_decay;   /* --weight-decay */
    double beta2;          /* --beta2 */
    long eval_every;       /* --eval-every */
} cli_train_defaults;

/* Read the flags every training command shares into *o (starting from
 * et_train_defaults()): steps, batch_size, seq_len, grad_accum, schedule, lr,
 * min_lr, warmup, weight_decay, beta1, beta2, eps, optim (--optim adamw|adamw8bit), grad_clip, eval_every,
 * eval_batches, ckpt_every, seed, resume; plus *threads and *log_every.
 * o->wd_policy and o->ckpt_path are left to the caller.  0 or ET_EUSAGE
 * naming the flag. */
int cli_train_opts(const cli_args *a, const cli_train_defaults *d, et_train_opts *o, int *threads, int *log_every,
                   et_err *e);

/* --precision f32|bf16|auto (default f32): the GEMM precision of training
 * (ET_GEMM_*, train/gemm.h) into *precision; "auto" gives
 * CLI_PRECISION_AUTO, resolved by cli_resolve_precision once the model is
 * known.  0 or ET_EUSAGE. */
#define CLI_PRECISION_AUTO (-2)
int cli_train_precision(const cli_args *a, int *precision, et_err *e);

/* Resolve CLI_PRECISION_AUTO in *precision by measurement on this CPU
 * (train/gemm_auto.h: the run's own products, cached per CPU model in
 * et_gemm_auto_cache_dir()) for a model of hp with rows = B*T per
 * micro-batch; why [cap] gets the choice and its figures for the run's first
 * line ("" when *precision was not auto).  0 or an error code. */
int cli_resolve_precision(int *precision, const et_hparams *hp, int rows, char *why, size_t cap, et_err *e);

/* The data must fit the model: token ids below n_vocab, the same tokenizer
 * (tokenizer_sha256), the same BOS/EOS (datasets/dataset.h
 * et_ds_check_tokenizer, the check every command shares), seq_len at most n_ctx.  `what` names the model in
 * messages ("model", "base").  0, ET_EINPUT or ET_EUSAGE naming data_path. */
int cli_check_data(const char *data_path, const char *what, int seq_len, const et_model *m, const et_ds *ds,
                   et_err *e);

#endif
