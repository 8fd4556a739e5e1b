/* cli/runner.h — what `edgetune run`, `edgetune perplexity` and the
 * standalone `edgerun` share: open a model with its adapters, generate with
 * streaming text, score perplexity, print for people.  Runtime-only
 * (C11 + libm + pthreads: engine/, datasets/tokenizer, export/gguf), so
 * edgerun links it (Makefile: edgerun).
 *
 *   et_runner_opts o; et_runner_defaults(&o);
 *   o.model = "stories260K.gguf"; o.prompt = "Once upon a time";
 *   et_runner r; et_err e = {0};
 *   if (et_runner_open(&r, &o, NULL, &e) || et_runner_generate(&r, stdout, &e)) ...
 *   et_runner_close(&r);
 */
#ifndef ET_CLI_RUNNER_H
#define ET_CLI_RUNNER_H

#include <stdio.h>

#include "../engine/engine.h"

#define ET_RUNNER_MAX_LORA 16

typedef struct et_runner_opts {
    const char *model;          /* GGUF path (unless an engine is given to et_runner_open) */
    const char *prompt;         /* text, tokenized with the model's tokenizer; NULL: BOS only */
    int n_predict;              /* tokens to generate (default 128) */
    et_sampler_params sp;       /* default: et_sampler_default_params() */
    int n_threads;              /* default 1 */
    int n_ctx;                  /* 0: the model's context, capped at 4096 */
    int n_batch;                /* 0: 64 */
    uint32_t kv_type;           /* GGML_TYPE_F16 (default) or GGML_TYPE_F32 */
    const char *isa;            /* NULL: the best SIMD path */
    const char *lora[ET_RUNNER_MAX_LORA];
    float lora_scale[ET_RUNNER_MAX_LORA];
    int n_lora;
    int ignore_eos;             /* keep generating after EOS */
    int stats;                  /* timings (and sizes) on stderr */
    const char *prog;           /* "edgerun" or "edgetune", for messages */
    /* et_runner_chat */
    const char *system;         /* system message, or NULL */
    const char *chat_template;  /* a template name (datasets/chat_template.h); NULL: the model's
                                   tokenizer.chat_template, recognised by signature */
    int verbose_prompt;         /* print each turn's rendered prompt and cache use on stderr */
} et_runner_opts;

typedef struct et_runner {
    et_runner_opts o;
    et_engine *m;
    int own_engine;
    et_adapter *ad[ET_RUNNER_MAX_LORA];
    int n_ad;
    et_state *s;
} et_runner;

void et_runner_defaults(et_runner_opts *o);
/* Add adapters from "FILE[:SCALE]" (a comma-separated list is accepted).
 * ET_EUSAGE for a malformed scale or too many adapters. */
int et_runner_add_lora(et_runner_opts *o, const char *spec, et_err *e);
/* Split an adapter argument "FILE[:SCALE]" in place, the one rule of
 * --lora (run, perplexity, edgerun) and `merge`: the suffix after the last
 * ':' is the scale when it parses completely as a number (so "C:\x" or
 * "a:b.gguf" stay paths); a number that is not finite ("A.gguf:nan",
 * ":inf", ":1e999") is refused (ET_EUSAGE naming it) instead of being
 * taken as part of the file name.  *scale is 1 without a suffix. */
int et_runner_split_scale(char *item, float *scale, et_err *e);
/* Parse "F16"/"F32" (any case) into *type; ET_EUSAGE otherwise. */
int et_runner_kv_type(const char *s, uint32_t *type, et_err *e);
/* Load the model (or use `engine`, borrowed, when not NULL), attach the
 * adapters, make the state.  0 or an et code.  r takes over the adapter
 * names of o (freed by et_runner_close, also on failure). */
int et_runner_open(et_runner *r, const et_runner_opts *o, et_engine *engine, et_err *e);
void et_runner_close(et_runner *r);
/* Generate from the prompt, streaming text to out as it comes. */
int et_runner_generate(et_runner *r, FILE *out, et_err *e);
/* A conversation: each line of `in` is a user turn; the whole conversation
 * (system message, earlier turns, the new one) is rendered through the chat
 * template with the generation prompt, tokenized with special tokens parsed,
 * and only the tokens after the part already in the KV cache are run (the
 * cache is kept across turns; it is cut back where a re-rendered turn
 * tokenizes differently).  The reply streams to `out` and stops at EOS or the
 * template's end-of-turn token; it joins the conversation.  Ends at EOF.
 * 0, ET_EINPUT (no recognisable template: the message names
 * --chat-template; the conversation outgrows the context), or an et code. */
int et_runner_chat(et_runner *r, FILE *in, FILE *out, et_err *e);
/* Perplexity of tokens[0..n) in windows of the state's n_ctx (engine
 * et_perplexity); the result is added to *acc (zero it first). */
int et_runner_perplexity(et_runner *r, const int32_t *tokens, size_t n, et_ppl *acc, et_err *e);
/* Tokenize text (BOS as the vocabulary says) and score it; `file` names the
 * text in messages (invalid UTF-8 at byte N). */
int et_runner_perplexity_text(et_runner *r, const char *text, size_t len, const char *file, et_ppl *acc, et_err *e);
/* The one "nothing to score" rule of `edgetune perplexity` and `edgerun
 * --perplexity` (empty input, a FIFO with nothing in it, documents of one
 * token): 0 when acc scored at least one token, else ET_EINPUT naming file. */
int et_runner_check_scored(const et_ppl *acc, const char *file, et_err *e);
/* "perplexity 4.9536 (NLL 54.404152 nats over 34 tokens, 1.600122 nats/token)" */
void et_runner_print_ppl(FILE *f, const et_ppl *p);

#endif
