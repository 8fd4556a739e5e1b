/* eval/tasks.h — the task runners behind et_eval_run (eval/eval.c). */
#ifndef ET_EVAL_TASKS_H
#define ET_EVAL_TASKS_H

#include "internal.h"

typedef struct et_task_ctx {
    const et_eval_opts *o;
    const et_engine *m;
    et_scorer *sc;
    const et_recs *recs;      /* classify / choice / generate */
    et_afile *samples;        /* --samples: one JSON line per record, or NULL */
    cJSON *warnings;          /* array of strings */
    cJSON *task;              /* the result's "task" object (tasks add their settings) */
    double t0;                /* start, for the progress line */
    long n_scored, n_skipped, n_truncated;
    int chat;                 /* generate: the chat template the records went through (ET_CHAT_*) */
    int tok_flags;            /* extra encode flags (ET_TOK_PARSE_SPECIAL with a chat template) */
} et_task_ctx;

/* Classify (is_classify 1: accuracy, macro_f1, per_class, confusion
 * [gold][predicted]) or choice (acc, acc_norm): metrics added to `metrics`.
 * 0 or an et code naming the record's line. */
int et_task_choices(et_task_ctx *c, int is_classify, cJSON *metrics, et_err *e);
/* Greedy generation: exact_match, same_json, nll_per_token (completion + EOS),
 * eos_prob_mean. */
int et_task_generate(et_task_ctx *c, cJSON *metrics, et_err *e);
/* Perplexity over text or a tokens.h5 (eval/task_ppl.c). */
int et_task_perplexity(et_task_ctx *c, cJSON *metrics, et_err *e);
/* KL(ref || model) against a reference log-probs file (eval/task_ppl.c). */
int et_task_kl(et_task_ctx *c, cJSON *metrics, et_err *e);

/* Write one sample line (takes ownership of s).  0 or ET_ERUN. */
int et_task_sample(et_task_ctx *c, cJSON *s, et_err *e);
/* Add a warning to the result (printf-style). */
void et_task_warn(et_task_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void et_task_progress(et_task_ctx *c, long done, long total);

#endif
