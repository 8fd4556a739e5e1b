/* eval/internal.h — what the eval tasks share: a scorer on one engine state
 * that keeps the tokens of its KV cache so the next sequence reuses their
 * common prefix (choices of one example, examples of one template), and the
 * windowing rules of perplexity, logits and KL. */
#ifndef ET_EVAL_INTERNAL_H
#define ET_EVAL_INTERNAL_H

#include <stdint.h>

#include "../engine/engine.h"
#include "eval.h"

typedef struct et_scorer {
    et_state *st;
    const et_engine *m;
    int n_vocab, n_ctx;
    int32_t *cache;      /* [n_ctx] the ids in the KV cache, positions 0..n_cache-1 */
    int n_cache;
    float *logits;       /* scratch [cap] */
    size_t cap;
    long n_tokens;       /* tokens run through the engine */
    double t_fwd;        /* seconds inside et_forward */
} et_scorer;

/* State of n_ctx tokens (0: the model's, capped at 4096) on m; F32 KV cache
 * (an evaluation) unless kv_f16.  0 or an et code. */
int et_scorer_init(et_scorer *s, const et_engine *m, int n_ctx, int n_threads, const char *isa, int kv_f16, et_err *e);
void et_scorer_free(et_scorer *s);
/* et_forward with time and token accounting. */
int et_scorer_forward(et_scorer *s, const int32_t *ids, int n, float *logits, int all_logits, et_err *e);
/* Make the KV cache hold exactly seq[0..keep) (keep <= n_cache after the
 * longest common prefix is taken), then run seq[keep..n) with logits of
 * the positions from `from` on (from >= keep): *out points to
 * [(n - from)][n_vocab] logits (scratch, valid until the next call).
 * from = n: no logits. */
int et_scorer_run(et_scorer *s, const int32_t *seq, int n, int from, const float **out, et_err *e);

/* ln softmax(row)[target] in double (log-sum-exp). */
double et_logprob(const float *row, int n_vocab, int target);

/* Log-likelihood of the continuation seq[b..n) given seq[0..b), 1 <= b < n
 * <= n_ctx: *sum = Σ ln p(seq[j] | seq[<j]), *greedy = 1 when each is the
 * argmax.  logp [n-b] (may be NULL) gets each term.  Reuses the cached
 * prefix. */
int et_scorer_loglik(et_scorer *s, const int32_t *seq, int n, int b, double *sum, int *greedy, double *logp,
                     et_err *e);

/* Windowing of one document of n tokens (perplexity, logits, KL):
 *  ET_WIN_ALL:   windows [i*n_ctx, +n_ctx) (the last may be shorter), each
 *                from an empty cache; the predictions at window positions
 *                0..len-2 are scored (targets 1..len-1).
 *  ET_WIN_LLAMA: llama.cpp tools/perplexity/perplexity.cpp: n/n_ctx whole
 *                chunks (the remainder is dropped), the chunk's first token
 *                replaced by BOS when the vocabulary adds BOS (add_bos_token), the predictions at
 *                positions n_ctx/2 .. n_ctx-2 scored.
 *  ET_WIN_STREAM: windows [i*(n_ctx-1), +n_ctx): consecutive windows share
 *                one token, so every position but the last is scored once,
 *                in the window that starts at a multiple of n_ctx-1 before
 *                it: the samples of datasets/loader.h's stream mode with
 *                T = n_ctx - 1 (a distillation teacher that sees exactly the
 *                student's context).  A window's last position is also
 *                passed (unscored) before the next window scores it.
 * The callback gets each position p (0-based in the document) that has
 * logits, its row [n_vocab], the target id (-1 when p is not scored) and
 * returns 0 or an et code. */
enum { ET_WIN_ALL = 0, ET_WIN_LLAMA = 1, ET_WIN_STREAM = 2 };
typedef int (*et_win_fn)(void *user, int64_t pos, const float *row, int target, et_err *e);
int et_scorer_windows(et_scorer *s, const int32_t *tok, int64_t n, int n_ctx, int scoring, et_win_fn fn, void *user,
                      et_err *e);
/* "all" / "llama" / "stream" -> ET_WIN_*; -1 when unknown. */
int et_scoring_from_name(const char *name);

/* Records of a task file (eval/records.c). */
typedef struct et_rec {
    char *prompt;        /* rendered prompt (classify: template with {text}; choice: context) */
    char *gold;          /* generate: the completion; else NULL */
    char **choices;      /* classify: the verbalizers (shared, not owned); choice: owned */
    int n_choices;
    int answer;          /* index of the right choice (classify: the class), -1 for generate */
    int64_t line;        /* 1-based line of the input */
} et_rec;

typedef struct et_recs {
    et_rec *r;
    long n;
    char **verbalizers;  /* classify: [n_classes] (owned) */
    char **class_names;  /* classify: [n_classes] (owned) */
    int n_classes;
    int owns_choices;    /* choice task: each record owns its choices */
} et_recs;

/* Read the task's records from o->data.  0, ET_EUSAGE (bad options, e.g. a
 * template without {text}), ET_EINPUT ("FILE: line N: ..."). */
int et_recs_read(const et_eval_opts *o, et_recs *out, et_err *e);
/* The same, with generate's chat/Alpaca records rendered through chat
 * template `chat` (datasets/chat_template.h ET_CHAT_*; ET_CHAT_NONE: the
 * plain layout), as `edgetune data` renders them for that model. */
int et_recs_read_chat(const et_eval_opts *o, int chat, et_recs *out, et_err *e);
void et_recs_free(et_recs *r);

#endif
