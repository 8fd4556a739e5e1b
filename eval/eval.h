/* eval/eval.h — evaluation on the engine: what runs on the device is what is
 * measured.  Every stage (LoRA, distillation, pruning, quantization, QAT)
 * reports through here: one eval result JSON per (artifact, task), which
 * `edgetune report` turns into the accuracy-vs-size picture and `edgetune
 * gate` into a CI verdict.
 *
 *   et_eval_opts o = et_eval_defaults();
 *   o.model = "stories260K.gguf"; o.task = "perplexity"; o.data = "wiki.test.raw";
 *   cJSON *res = NULL; et_err e = {0};
 *   if (et_eval_run(&o, &res, &e)) { puts(e.msg); return e.code; }
 *   et_eval_write_json(res, "eval.json", &e);      // atomically
 *   cJSON_Delete(res);
 *
 * Tasks (docs/evaluation.md has the definitions and formulas):
 *   perplexity  text or tokens.h5: nats/token, ppl, tokens scored, context.
 *               scoring "all" (every token after a window's first, as
 *               `edgetune perplexity`) or "llama" (llama.cpp's
 *               tools/perplexity/perplexity.cpp: chunks of n_ctx tokens, the
 *               first replaced by BOS, the second half of each scored).
 *   kl          against a reference's cached log-probabilities (the
 *               teacher-logits HDF5 of DESIGN §3, datasets/teacher.h): mean
 *               KL(ref || model), its percentiles, same top-1, mean Δp,
 *               ppl ratio — the statistics `llama-perplexity
 *               --kl-divergence` prints.
 *   classify    TSV (text, label) or JSONL/JSON ({"text", "label"}); each
 *               class's verbalizer scored by log-likelihood after the
 *               rendered template: accuracy, macro-F1, confusion matrix.
 *   choice      JSONL {"context", "choices": [...], "answer": i}: lm-eval's
 *               acc (summed log-likelihood) and acc_norm (per byte).
 *   generate    prompt/completion records (every format `edgetune data`
 *               reads): greedy generation, exact match after trimming
 *               trailing whitespace, and "same JSON".
 *
 * Eval result JSON (schema "edgetune.eval/1"), the input of report and gate:
 *   { "schema": "edgetune.eval/1", "edgetune_version": "...", "created": ISO-8601 UTC,
 *     "name": artifact label (--name; default: model file name [+ "+" adapter names]),
 *     "task": { "name": "classify", "data": path, "data_sha256": hex, "records": n,
 *               "skipped": n, "truncated": n, ... task settings (template, labels, n_ctx) },
 *     "artifact": { "model": {path, sha256, bytes, arch, n_params, n_layer, n_embd, n_vocab,
 *                             "type_mix": {"F32": params, "Q8_0": params, ...}},
 *                   "adapters": [{path, sha256, bytes, scale, n_params}],
 *                   "bytes": model + adapters on disk, "n_params": model + adapters },
 *     "metrics": { task-specific numbers, e.g. accuracy (fraction 0..1), macro_f1,
 *                  nll_per_token (nats), ppl, kl_mean, kl_p90, kl_p99, kl_p999, kl_max,
 *                  same_top1 (fraction), mean_delta_p (fraction), ppl_ratio, exact_match, same_json },
 *     "primary": { "metric": "accuracy", "value": x, "higher_is_better": true },
 *     "speed": { "tokens": tokens through the engine, "seconds": wall, "tokens_per_s",
 *                "examples_per_s", "threads", "isa" },
 *     "memory": { "peak_rss_bytes": n } }
 * Every number is finite (a NaN anywhere makes et_eval_run fail with ET_ERUN).
 *
 * Errors: ET_EUSAGE (bad options), ET_EINPUT (a bad file, named with the
 * line), ET_ERUN (engine failure, non-finite values, I/O).  Nothing is
 * written on error.
 */
#ifndef ET_EVAL_H
#define ET_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "../common/et.h"

#define ET_EVAL_SCHEMA "edgetune.eval/1"
#define ET_EVAL_MAX_LORA 16
#define ET_EVAL_MAX_STOP 8

/* Progress of a running evaluation (for the CLI's progress line). */
typedef void (*et_eval_progress_fn)(void *user, const char *task, long done, long total, double elapsed_s);

typedef struct et_eval_opts {
    const char *model;                       /* GGUF path */
    const char *lora[ET_EVAL_MAX_LORA];      /* GGUF adapters */
    float lora_scale[ET_EVAL_MAX_LORA];
    int n_lora;
    const char *task;                        /* perplexity | kl | classify | choice | generate */
    const char *data;                        /* the task's input file */
    const char *name;                        /* artifact label; NULL: derived from the paths */
    /* perplexity / kl */
    const char *scoring;                     /* "all" (default) or "llama" */
    const char *split;                       /* tokens.h5: all | train | valid (default all) */
    const char *ref;                         /* kl: reference log-probs file (datasets/teacher.h); with
                                                ref_model, its cache (made or reused) */
    const char *ref_model;                   /* kl: the reference GGUF, run over data once */
    int ref_top_k;                           /* kl with ref_model: stored entries (default 64) */
    int ref_full;                            /* kl with ref_model: the whole vocabulary (exact KL) */
    /* classify */
    const char *template_;                   /* must hold {text}; default "{text}" + "\n" */
    const char *labels;                      /* verbalizers, comma-separated, in class order */
    const char *classes;                     /* class names as in the file (default: sorted distinct) */
    int label_first;                         /* TSV columns are label<TAB>text */
    /* generate */
    int n_predict;                           /* max new tokens (default 128) */
    const char *stop[ET_EVAL_MAX_STOP];      /* stop strings (default: none; EOS always stops) */
    int n_stop;
    const char *chat_template;               /* generate: chat and Alpaca records rendered through this
                                                template (datasets/chat_template.h names; "none": the
                                                plain layout); NULL: the model's tokenizer.chat_template,
                                                as `edgetune data` does */
    /* common */
    int n_ctx;                               /* 0: the model's (capped at 4096) */
    int n_threads;                           /* default 1 */
    long max_records;                        /* 0: all */
    int skip_long;                           /* records longer than the context: 1 skip, 0 truncate the prompt's left */
    const char *samples;                     /* JSONL path: one line per record (lm-eval --log_samples) */
    const char *isa;                         /* engine SIMD path; NULL: best */
    int kv_f16;                              /* KV cache in F16 (llama.cpp's default); default F32 */
    et_eval_progress_fn progress;
    void *progress_user;
} et_eval_opts;

/* Defaults: task "perplexity", scoring "all", split "all", n_predict 128,
 * 1 thread, skip_long 0 (truncate). */
et_eval_opts et_eval_defaults(void);

/* Run one task on one artifact (model + adapters) and build the result
 * object (schema above; the caller frees it with cJSON_Delete).  0 or an
 * et code; *out is NULL on error and the samples file is not written. */
int et_eval_run(const et_eval_opts *o, cJSON **out, et_err *e);

/* Write a result (or any JSON) to path atomically (tmp + fsync + rename),
 * pretty-printed.  0 or ET_ERUN. */
int et_eval_write_json(const cJSON *r, const char *path, et_err *e);

/* Read and validate an eval result: schema, a name, task.name, metrics
 * (finite numbers), primary, artifact.bytes.  0 or ET_EINPUT naming the
 * file and the field.  *out is NULL on error. */
int et_eval_read_json(const char *path, cJSON **out, et_err *e);

/* Validate a parsed eval result (the checks of et_eval_read_json); `where`
 * names it in messages.  0 or ET_EINPUT. */
int et_eval_check(const cJSON *j, const char *where, et_err *e);

/* cJSON helpers shared by eval/, report and gate.  get: the member or NULL;
 * str: the string member or def; num: the number member or NaN. */
const cJSON *et_json_get(const cJSON *j, const char *key);
const char *et_json_str(const cJSON *j, const char *key, const char *def);
double et_json_num(const cJSON *j, const char *key);
/* 1 when every number under j is finite; else 0 with *where = the first bad key. */
int et_json_all_finite(const cJSON *j, const char **where);
/* Add v as a number, or null when it is not finite. */
void et_json_num_or_null(cJSON *o, const char *key, double v);

/* sha256 of a whole file (64 hex + NUL) and its size in bytes.  0 or ET_EINPUT. */
int et_file_sha256(const char *path, char hex[65], uint64_t *bytes, et_err *e);

/* Peak resident set size of this process in bytes (getrusage ru_maxrss). */
uint64_t et_peak_rss_bytes(void);

#endif
