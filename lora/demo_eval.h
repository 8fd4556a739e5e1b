/* lora/demo_eval.h — score a model (with or without LoRA adapters) on
 * prompt/completion records through the inference engine: greedy
 * generation + exact-match accuracy, and the held-out loss of the
 * completions.  Behind `edgetune eval-task` and make demo (docs/demo.md).
 *
 *   demo_records r; et_err e = {0};
 *   demo_records_read(&r, "test.jsonl", &e);        // {"prompt":..,"completion":..} lines
 *   et_engine *m; et_engine_load(&m, "base.gguf", &e);
 *   et_adapter *a; et_adapter_load(&a, "adapter.gguf", m, &e); et_engine_attach(m, a, 1.0f, &e);
 *   demo_eval_opts o = demo_eval_defaults();
 *   demo_eval_result res;
 *   demo_eval_run(m, &r, &o, &res, &e);             // res.n_exact / res.n, res.nll / res.n_loss_tokens
 *   demo_eval_result_free(&res); demo_records_free(&r);
 *
 * Generation: the prompt is encoded as `edgetune data` encodes a record
 * (BOS as the vocabulary says), then greedy decoding (argmax, lowest id on
 * ties) until EOS, a newline in the output, or n_predict tokens.  The
 * answer (the text before the first newline) is scored with
 * demo_task_exact and demo_task_json_match (lora/demo_task.h).
 *
 * Loss: for each record, ids = encode(prompt + completion) + EOS, exactly
 * the tokens and loss mask `edgetune data` writes (datasets/ingest.h: the
 * prompt's tokens are the longest common prefix of encode(prompt) and
 * encode(prompt + completion)); the scored targets are every token after
 * the prompt, EOS included, each given all tokens before it.  nll is the
 * sum of -ln p over them in nats (double), so nll / n_loss_tokens is the
 * masked validation loss the trainer reports for the same records.
 */
#ifndef ET_DEMO_EVAL_H
#define ET_DEMO_EVAL_H

#include <stdint.h>

#include "../common/et.h"
#include "../engine/engine.h"

typedef struct demo_record {
    char *prompt;       /* text the model is given */
    char *completion;   /* expected answer */
} demo_record;

typedef struct demo_records {
    demo_record *r;
    int n;
} demo_records;

/* Read JSON lines of {"prompt": .., "completion": ..} (demo_task_write_jsonl
 * DEMO_STYLE_PROMPT) or {"instruction": .., "input": .., "output": ..}
 * (DEMO_STYLE_ALPACA; the prompt is built as demo_task_prompt does, with a
 * non-empty input refused).  Blank lines are skipped.  0, ET_EINPUT
 * ("FILE: line N: ...") or ET_ERUN. */
int demo_records_read(demo_records *out, const char *path, et_err *e);
void demo_records_free(demo_records *r);

typedef struct demo_eval_opts {
    int n_predict;      /* most tokens generated per prompt */
    int n_threads;      /* engine threads */
    uint32_t kv_type;   /* GGML_TYPE_F16 or GGML_TYPE_F32 */
    int n_ctx;          /* KV cache length: longest prompt + answer (0: the model's, at most 1024) */
    int max_records;    /* 0: all */
    int do_generate;    /* greedy generation + accuracy */
    int do_loss;        /* completion loss */
} demo_eval_opts;

/* n_predict 64, 1 thread, F32 KV cache, n_ctx 0, all records, both. */
demo_eval_opts demo_eval_defaults(void);

typedef struct demo_eval_result {
    int n;              /* records evaluated */
    int n_exact;        /* answers equal to the completion (demo_task_exact) */
    int n_json;         /* answers with the same JSON object (demo_task_json_match) */
    char **answers;     /* [n] generated text up to the first newline (malloc'd), or NULL */
    double nll;         /* sum of -ln p over the scored tokens, nats */
    long n_loss_tokens; /* tokens scored */
    double t_gen_s, t_loss_s; /* wall time */
    long n_gen_tokens;  /* tokens generated */
    int n_fail_at;      /* internal: the record being evaluated (errors name it) */
} demo_eval_result;

/* Evaluate m (with whatever adapters are attached) on r.  The engine must
 * have a tokenizer.  0 or an et code (ET_EINPUT when a record does not fit
 * the context, "record K of N: ...", or the model has no tokenizer). */
int demo_eval_run(et_engine *m, const demo_records *r, const demo_eval_opts *o, demo_eval_result *res, et_err *e);
void demo_eval_result_free(demo_eval_result *res);

#endif
