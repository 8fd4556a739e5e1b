/* datasets/tokenizer.h — SentencePiece-style BPE ("llama") and GPT-2
 * byte-level BPE ("gpt2") tokenizers, as llama.cpp implements them
 * (src/llama-vocab.cpp: llm_tokenizer_spm, llm_tokenizer_bpe and the
 * pre-tokenizer regexes chosen by tokenizer.ggml.pre).
 *
 *   et_tokenizer *tok; et_err e = {0};
 *   gguf_file g; gguf_open(&g, "stories260K.gguf", &e);
 *   et_tok_from_gguf(&tok, &g, &e);            // copies what it needs; g may be closed
 *   int32_t *ids; size_t n;
 *   et_tok_encode(tok, "Once upon a time", 16, ET_TOK_ADD_BOS, &ids, &n, &e);
 *   char *text; size_t len; et_tok_decode(tok, ids, n, 0, &text, &len, &e);
 *   free(ids); free(text); et_tok_free(tok);
 *
 * encode/decode only read the tokenizer (scratch memory is per call), so one
 * et_tokenizer may serve several threads at once.  docs/tokenizers.md says
 * how exactness with llama.cpp is obtained and tested.
 *
 * Dependency rule: C11 + libc only (the runtime uses it).  Loading an HF
 * tokenizer.json needs cJSON and lives in datasets/hf_tokenizer.h.
 */
#ifndef ET_TOKENIZER_H
#define ET_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../export/gguf.h"

typedef struct et_tokenizer et_tokenizer;

enum et_tok_model { ET_TOK_SPM = 1 /* GGUF "llama" */, ET_TOK_BPE = 2 /* GGUF "gpt2" */ };

/* Token attribute, numbered as GGUF tokenizer.ggml.token_type. */
enum et_tok_attr {
    ET_TOKT_NORMAL = 1, ET_TOKT_UNKNOWN = 2, ET_TOKT_CONTROL = 3,
    ET_TOKT_USER_DEFINED = 4, ET_TOKT_UNUSED = 5, ET_TOKT_BYTE = 6
};

/* Encode flags. */
enum { ET_TOK_ADD_BOS = 1, ET_TOK_ADD_EOS = 2, ET_TOK_PARSE_SPECIAL = 4,
       ET_TOK_DEFAULT_BOS = 8 /* add BOS iff the vocab says add_bos_token (tokenizer.ggml.add_bos_token) */,
       ET_TOK_REFERENCE = 16  /* slow reference path: no word cache, SPM merges over each whole
                                 fragment at once (for tests: the fast path must give the same ids) */ };

/* Load from GGUF tokenizer.ggml.* keys (model, tokens, scores, token_type,
 * merges, pre, bos/eos/unk/pad ids, add_bos/add_eos).  0 or ET_EINPUT
 * naming the file and key. */
int et_tok_from_gguf(et_tokenizer **out, const gguf_file *g, et_err *e);
/* Load a llama2.c tokenizer.bin (i32 max_token_length, then per token:
 * f32 score, i32 len, len bytes) with n_vocab entries (from the model
 * header; 0 = as many as the file holds, which must then end exactly after
 * the last one). Treated as SPM with byte fallback <0xXX>, BOS 1, EOS 2;
 * pieces become what llama.cpp's convert-llama2c-to-ggml writes (ids 0-2
 * "<unk>" "<s>" "</s>", spaces as U+2581), so the fingerprint equals the
 * converted GGUF's. */
int et_tok_from_llama2c(et_tokenizer **out, const char *path, int n_vocab, et_err *e);
void et_tok_free(et_tokenizer *t);              /* NULL is fine */

/* Accessors; none fails.  Special-token ids are in [0, n_vocab) or -1. */
int et_tok_model(const et_tokenizer *t);      /* ET_TOK_SPM or ET_TOK_BPE */
int et_tok_n_vocab(const et_tokenizer *t);
/* The one check of a model's vocabulary against the rows of its embedding
 * (and output) matrix, used by every model loader: engine/load.c (run,
 * edgerun, perplexity, eval, logits) and export/model_gguf.c, export/model.c
 * (convert, train, lora, merge, the llama2.c and HF imports).  llama.cpp
 * sizes token_embd.weight and output.weight by the token list
 * (src/llama-model.cpp), so the tokenizer must have exactly n_rows tokens
 * (a model with 100 tokens over 512 rows used to load and fail only when
 * decoding).  0 or ET_EINPUT naming path and tensor. */
int et_tok_check_rows(const et_tokenizer *t, const char *path, const char *tensor, int64_t n_rows, et_err *e);
int et_tok_bos(const et_tokenizer *t);        /* -1 when none */
int et_tok_eos(const et_tokenizer *t);
int et_tok_pad(const et_tokenizer *t);
/* Piece text of id (raw vocab string, e.g. "▁the" or "Ġthe"), length in *len. NULL if out of range. */
const char *et_tok_piece(const et_tokenizer *t, int id, size_t *len);
/* Id of an exact piece, or -1. */
int et_tok_find(const et_tokenizer *t, const char *piece, size_t len);

/* Encode len bytes of UTF-8 text.  *ids is malloc'd (caller frees), *n_ids
 * its count.  Returns 0, or ET_EINPUT for invalid UTF-8 (message gives the
 * byte offset). */
int et_tok_encode(const et_tokenizer *t, const char *text, size_t len, int flags,
                  int32_t **ids, size_t *n_ids, et_err *e);
/* Decode ids to text (malloc'd, NUL-terminated; *len without the NUL).
 * flags: ET_TOK_PARSE_SPECIAL renders control tokens, otherwise they are
 * skipped.  SPM: "▁" -> " ", <0xXX> -> byte, and the leading space added
 * by encoding is removed.  ET_EINPUT for an id out of range. */
int et_tok_decode(const et_tokenizer *t, const int32_t *ids, size_t n_ids, int flags,
                  char **text, size_t *len, et_err *e);

/* Load a llama2.c tokenizer.bin already in memory (size bytes); `name`
 * is used in messages. Same rules as et_tok_from_llama2c. */
int et_tok_from_llama2c_mem(et_tokenizer **out, const void *data, size_t size, int n_vocab,
                            const char *name, et_err *e);

/* Build a tokenizer from its parts (what every loader does; also for
 * formats read elsewhere, e.g. datasets/hf_tokenizer.c).  Everything is
 * copied.  Token ids are the array indices. */
typedef struct et_tok_spec {
    int model;                  /* ET_TOK_SPM or ET_TOK_BPE */
    const char *pre;            /* BPE pre-tokenizer, a tokenizer.ggml.pre name: "gpt-2",
                                   "llama-bpe", "qwen2", "smollm", "deepseek-llm", "default"...;
                                   NULL or "" = "default" (BPE) / none (SPM) */
    int n_vocab;                /* > 0 */
    const char *const *pieces;  /* [n_vocab] piece bytes, not NUL-terminated */
    const size_t *piece_lens;   /* [n_vocab] bytes */
    const float *scores;        /* [n_vocab] SPM merge scores, or NULL (all 0) */
    const int32_t *types;       /* [n_vocab] enum et_tok_attr, or NULL (all NORMAL) */
    size_t n_merges;            /* BPE: merges in rank order, "left right" */
    const char *const *merges;  /* [n_merges] */
    const size_t *merge_lens;   /* [n_merges] bytes */
    int bos, eos, unk, pad;     /* ids, -1 when none */
    int add_bos, add_eos;       /* 0/1, or -1 = the model's default as llama.cpp (SPM: BOS yes) */
    int add_space_prefix;       /* SPM: 0/1, or -1 = default (1 for SPM, 0 for BPE) */
    const char *name;           /* general.name or NULL (llama.cpp strips spaces after
                                   special tokens for names containing "phi-3"/"phi3") */
} et_tok_spec;
/* 0, or ET_EINPUT naming `src` (duplicate piece, id out of range, bad
 * model, unknown pre-tokenizer, ...), or ET_ERUN (out of memory). */
int et_tok_build(et_tokenizer **out, const et_tok_spec *s, const char *src, et_err *e);

/* Id of the unknown-token piece (tokenizer.ggml.unknown_token_id), -1 when none. */
int et_tok_unk(const et_tokenizer *t);
/* GGUF token type of id (enum et_tok_attr as stored), 0 if out of range. */
int et_tok_type(const et_tokenizer *t, int id);
/* SPM merge score of id (0 for BPE vocabularies without scores). */
float et_tok_score(const et_tokenizer *t, int id);
/* What ET_TOK_DEFAULT_BOS does: 1 if the vocab adds BOS (add_bos_token, or
 * llama.cpp's default for the model). */
int et_tok_add_bos(const et_tokenizer *t);
/* The pre-tokenizer name ("" for SPM). */
const char *et_tok_pre(const et_tokenizer *t);
/* Number of BPE merges (0 for SPM). */
size_t et_tok_n_merges(const et_tokenizer *t);

/* The chat template the file carried (GGUF tokenizer.chat_template: Jinja
 * text, kept verbatim and written back by et_tok_write_gguf), or NULL.
 * datasets/chat_template.h recognises it.  set copies tmpl[0..len) (NULL
 * removes it); 0 or ET_ERUN.  Not part of et_tok_sha256. */
const char *et_tok_chat_template(const et_tokenizer *t);
int et_tok_set_chat_template(et_tokenizer *t, const char *tmpl, size_t len, et_err *e);

/* Write the tokenizer.ggml.* keys (and tokenizer.chat_template when the
 * tokenizer has one) into a GGUF being built, as llama.cpp's converters do.
 * 0 or ET_ERUN. */
int et_tok_write_gguf(const et_tokenizer *t, gguf_writer *w, et_err *e);
/* SHA-256 over the vocabulary (model kind, pieces, scores, types, merges,
 * special ids): hex[65]. Equal vocabularies give equal hashes whatever
 * file they came from. */
void et_tok_sha256(const et_tokenizer *t, char hex[65]);

#endif
