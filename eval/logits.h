/* eval/logits.h — a model's next-token log-probabilities over a data set,
 * stored once in the teacher-logits HDF5 (datasets/teacher.h): the KL
 * reference of `edgetune eval --task kl` and the distillation targets.
 * The input tokens and their windowing are shared with the perplexity and
 * KL tasks (eval/internal.h et_scorer_windows). */
#ifndef ET_EVAL_LOGITS_H
#define ET_EVAL_LOGITS_H

#include <stdint.h>

#include "../engine/engine.h"

/* The tokens of a text file (tokenized with the model's tokenizer, BOS as its
 * vocabulary says, one document) or of a tokens.h5 split. */
typedef struct et_doc_tokens {
    int32_t *tok;        /* [n_tokens] */
    int64_t *off;        /* [n_docs+1] document d is tok[off[d] .. off[d+1]) */
    int64_t n_docs, n_tokens;
    int64_t first_token; /* index of tok[0] in the file's /tokens */
    int64_t valid_doc;   /* the first document of the file's validation split (n_docs: none) */
    uint8_t *mask;       /* [n_tokens] the file's /loss_mask, or NULL when it has none (text) */
} et_doc_tokens;

/* 1 when path starts with the HDF5 signature. */
int et_is_hdf5(const char *path);
/* Read path (text or tokens.h5; split "all" | "train" | "valid", NULL = all).
 * A tokens.h5 made with another tokenizer (sha256) or a larger n_vocab is
 * refused (ET_EINPUT); so is input with nothing to score. */
int et_doc_tokens_read(const et_engine *m, const char *path, const char *split, et_doc_tokens *out, et_err *e);
void et_docs_tok_free(et_doc_tokens *d);
/* ET_EINPUT when data made with tokenizer `sha` (64 hex, "" = unknown) and
 * n_vocab cannot be read by model m: datasets/dataset.h et_ds_check_tokenizer
 * (the one check, which also compares BOS/EOS where a tokens.h5 has them). */
int et_check_tokenizer(const et_engine *m, const char *path, const char *sha, int64_t n_vocab, et_err *e);

typedef struct et_logits_opts {
    int top_k;            /* stored entries per position (default 64); full = n_vocab */
    int full;             /* store the whole distribution (k = n_vocab) */
    int sample;           /* > 0: mode "sample", K = sample draws per position from the
                             teacher at the temperature (datasets/teacher.h), instead of top-k */
    uint64_t seed;        /* the draws' seed (position p uses a generator seeded from seed and p) */
    double temperature;   /* log_softmax(logits / T) (default 1) */
    int n_ctx;            /* window (0: the model's, capped at 4096) */
    const char *scoring;  /* "all" (default) or "llama" */
    const char *split;    /* tokens.h5 split (default all) */
    int n_threads;
    const char *isa;
    int kv_f16;           /* KV cache in F16 (llama.cpp's default); default F32 */
} et_logits_opts;

et_logits_opts et_logits_defaults(void);

/* Run model m (adapters attached by the caller) over `data` and write out_path
 * atomically: a tokens.h5 of the data plus /teacher (datasets/teacher.h).
 * model_path names the teacher in the attributes.  *tokens_per_s gets the
 * engine's rate during the run.  0 or an et code; nothing is left on error. */
int et_logits_run(const et_engine *m, const char *model_path, const char *data, const et_logits_opts *o,
                  const char *out_path, double *tokens_per_s, int64_t *n_rows, et_err *e);

#endif
