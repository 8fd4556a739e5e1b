/* datasets/dataset.h — tokenized data sets in HDF5 (tokens.h5): writer and
 * validating reader.  The schema is DESIGN §3, written out in
 * docs/formats.md (with an h5py snippet that produces the same files):
 *
 *   /tokens       int32 [N]     every document's tokens, concatenated
 *   /doc_offsets  int64 [D+1]   document d is tokens[doc_offsets[d] : doc_offsets[d+1]];
 *                               0 = doc_offsets[0] < doc_offsets[1] < ... < doc_offsets[D] = N
 *   /loss_mask    uint8 [N]     optional; 1 = the token is a target that counts in the
 *                               loss, 0 = not (prompt, padding).  Absent = all 1.
 *   /labels       int32 [D]     optional, classification: label index of each document;
 *                               attribute label_names (string array) names them.
 *   root attributes: tokenizer_sha256 (64 hex, et_tok_sha256), n_vocab, bos_id, eos_id
 *   (-1 = none), source (string); optional n_train_docs (documents 0..n_train_docs-1
 *   are the training split, the rest validation; absent = all training),
 *   packed_len (every document is a packed row of exactly this many tokens; 0/absent =
 *   one row per document), format (how the input was read).
 *   /teacher/topk_ids int32 [N,k], /teacher/topk_logprobs float16 [N,k]: distillation
 *   targets, written by distill/ (see docs/formats.md); the reader here ignores them.
 *
 *   et_ds_writer *w; et_err e = {0};
 *   et_ds_meta m = {.n_vocab = 512, .bos_id = 1, .eos_id = 2, .source = "x.txt"};
 *   et_ds_writer_open(&w, "tokens.h5", &m, 0, &e);
 *   et_ds_writer_add(w, toks, NULL, n, -1, &e);       // one document
 *   et_ds_writer_commit(w, &e);                        // atomically renamed into place
 *
 *   et_ds *ds; et_ds_open(&ds, "tokens.h5", &e);       // validates everything
 *   et_ds_read_tokens(ds, ds->doc_offsets[3], 10, buf, &e);
 *   et_ds_close(ds);
 *
 * Reading: each dataset is opened with a 16 MiB HDF5 chunk cache (so an open
 * et_ds may hold up to ~32 MiB of cached tokens and mask); the writer uses
 * chunks of 65536 elements, which measured fastest for random 257-token reads.
 *
 * Errors name the file and the dataset/attribute.  HDF5's own error printing
 * is switched off (H5Eset_auto); HDF5 is not thread-safe in this build, so
 * one et_ds (and the loaders on it) must be used from one thread at a time.
 */
#ifndef ET_DATASET_H
#define ET_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"

/* Limits the reader enforces on hostile files. */
#define ET_DS_MAX_TOKENS ((int64_t)1 << 40)
#define ET_DS_MAX_DOCS   ((int64_t)1 << 31)
#define ET_DS_MAX_LABELS 65536
#define ET_DS_MAX_STR    (1 << 20)   /* bytes of one string attribute */

enum { ET_SPLIT_TRAIN = 0, ET_SPLIT_VALID = 1 };

/* File-level attributes. Strings are copied by the writer. */
typedef struct et_ds_meta {
    char tokenizer_sha256[65]; /* 64 lowercase hex + NUL ("" = unknown) */
    int64_t n_vocab;           /* > 0; every token is in [0, n_vocab) */
    int64_t bos_id, eos_id;    /* -1 when the tokenizer has none */
    const char *source;        /* input file(s), free text; may be NULL */
    const char *format;        /* "text", "jsonl", ...; may be NULL */
    int64_t packed_len;        /* 0, or T+1 when every document is a packed row */
    int n_labels;              /* > 0 for classification (then /labels is written) */
    const char *const *label_names; /* [n_labels], may be NULL (then not written) */
} et_ds_meta;

/* ------------------------------------------------------------------ writer */
typedef struct et_ds_writer et_ds_writer;

enum { ET_DS_WITH_MASK = 1 };  /* writer flag: write /loss_mask */

/* Create "<path>.tmp.<pid>" and the datasets.  flags: ET_DS_WITH_MASK.
 * /labels is written when meta->n_labels > 0.  0, ET_EUSAGE (bad meta), or
 * ET_ERUN (cannot create). */
int et_ds_writer_open(et_ds_writer **w, const char *path, const et_ds_meta *meta, int flags,
                      et_err *e);
/* Optional hint of the total token count, to size HDF5 chunks (default 65536
 * tokens per chunk; smaller files get one chunk). Call before the first add. */
void et_ds_writer_size_hint(et_ds_writer *w, int64_t n_tokens);
/* Append one document of n >= 1 tokens [n] with its mask [n] (NULL = all 1;
 * ignored without ET_DS_WITH_MASK, required to be 0/1) and label (ignored
 * without labels, else in [0, n_labels)).  Tokens must be in [0, n_vocab).
 * 0, ET_EUSAGE (bad values), ET_ERUN (write error). */
int et_ds_writer_add(et_ds_writer *w, const int32_t *tokens, const uint8_t *mask, size_t n,
                     int32_t label, et_err *e);
/* Documents added from now on belong to the validation split (sets
 * n_train_docs to the count so far).  Call at most once. */
void et_ds_writer_begin_valid(et_ds_writer *w);
/* Write the attributes, close, fsync and rename onto the final path; frees w.
 * On error the temporary file is removed and the path left untouched.
 * 0 or ET_ERUN. */
int et_ds_writer_commit(et_ds_writer *w, et_err *e);
/* Close and remove the temporary file; frees w.  NULL is fine. */
void et_ds_writer_abort(et_ds_writer *w);

/* ------------------------------------------------------------------ reader */
typedef struct et_ds_h5 et_ds_h5; /* HDF5 handles (private) */

typedef struct et_ds {
    char *path;
    int64_t n_tokens;          /* N */
    int64_t n_docs;            /* D */
    int64_t n_train_docs;      /* documents [0, n_train_docs) are training */
    int64_t *doc_offsets;      /* [D+1], read into memory, validated */
    int64_t n_vocab, bos_id, eos_id, packed_len;
    char tokenizer_sha256[65]; /* "" when the attribute is absent */
    char *source, *format;     /* "" when absent */
    int has_mask;              /* /loss_mask present */
    int n_labels;              /* 0 = no /labels */
    char **label_names;        /* [n_labels] or NULL when the attribute is absent */
    int has_teacher;           /* /teacher group present (not validated here) */
    et_ds_h5 *h5;
} et_ds;

/* Open and validate: types (integer datasets, 1-D), lengths (doc_offsets D+1,
 * loss_mask N, labels D), doc_offsets strictly increasing from 0 to N,
 * every token in [0, n_vocab), mask values 0/1, labels in [0, n_labels),
 * n_train_docs in [0, D].  Reads the token/mask/label arrays once, in blocks
 * of 1M elements (never the whole file at once).  Any integer storage type
 * is accepted (converted; out-of-range values then fail the range checks).
 * Returns 0 or ET_EINPUT naming the file, dataset and index, e.g.
 * "x.h5: /tokens[12] = 600 is not below n_vocab 512"; ET_ERUN for I/O or
 * memory.  On error *ds is NULL. */
int et_ds_open(et_ds **ds, const char *path, et_err *e);
void et_ds_close(et_ds *ds);

/* Read count tokens [count] starting at token index start (0 <= start,
 * start+count <= N) by hyperslab.  0, ET_EUSAGE (range), ET_ERUN (I/O). */
int et_ds_read_tokens(const et_ds *ds, int64_t start, int64_t count, int32_t *out, et_err *e);
/* Same for the loss mask; all 1 when the file has no /loss_mask. */
int et_ds_read_mask(const et_ds *ds, int64_t start, int64_t count, uint8_t *out, et_err *e);
/* Labels of documents [start, start+count). ET_EUSAGE when there are none. */
int et_ds_read_labels(const et_ds *ds, int64_t start, int64_t count, int32_t *out, et_err *e);
/* Documents [*begin, *end) of split ET_SPLIT_TRAIN or ET_SPLIT_VALID. */
void et_ds_split_docs(const et_ds *ds, int split, int64_t *begin, int64_t *end);

struct et_tokenizer;
/* The one compatibility check of token data with a model, used by every
 * command that pairs a model with a tokens.h5 (or a teacher file): train,
 * lora, distill (cli/train_ui.c cli_check_data), perplexity, eval, logits
 * (eval/logits.h et_check_tokenizer, et_doc_tokens_read).  Refused
 * (ET_EINPUT naming `path` and `what`, e.g. "model", "base"): a tokenizer
 * sha256 that differs from the model tokenizer's (when both are known), an
 * n_vocab larger than the model's, a BOS or EOS id that differs from the
 * model tokenizer's (when the data records it, >= 0).  sha: 64 hex or ""
 * (unknown); bos/eos: -1 when unknown; tok may be NULL (a model without a
 * tokenizer: only n_vocab is checked). */
int et_ds_check_tokenizer(const char *path, const char *sha, int64_t n_vocab, int64_t bos, int64_t eos,
                          const struct et_tokenizer *tok, int model_n_vocab, const char *what, et_err *e);

/* A tokens.h5 to run a model over (perplexity, imatrix): et_ds_open, the
 * check above against the model ("model"), and the documents [*d0, *d1) of
 * split "all", "train" or "valid".  0 with *ds open, or the error code with
 * *ds NULL (ET_EUSAGE for another split name). */
int et_ds_open_split(et_ds **ds, const char *path, const char *split, const struct et_tokenizer *tok,
                     int model_n_vocab, int64_t *d0, int64_t *d1, et_err *e);

#endif
