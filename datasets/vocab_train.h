/* datasets/vocab_train.h — learn a small SentencePiece-style BPE vocabulary
 * from text, for a model trained from scratch (`edgetune vocab`, make demo).
 *
 *   et_vocab_opts o = et_vocab_defaults();          // n_vocab 512
 *   const char *texts[] = {"turn off the kitchen lights", ...};
 *   size_t lens[] = {27, ...};
 *   et_tokenizer *tok; et_vocab_stats st; et_err e = {0};
 *   if (et_vocab_train(&tok, texts, lens, n, &o, &st, &e)) { puts(e.msg); return; }
 *   et_tok_save_vocab_gguf(tok, "vocab.gguf", "demo-vocab", &e);   // for edgetune data / train
 *   et_tok_free(tok);
 *
 * The result is an ordinary GGUF "llama" (SPM) vocabulary with byte
 * fallback, which llama.cpp's llm_tokenizer_spm (src/llama-vocab.cpp) and
 * edgetune's datasets/tokenizer.h encode identically.
 *
 * The algorithm is byte-pair encoding (Sennrich, Haddow & Birch 2016,
 * "Neural Machine Translation of Rare Words with Subword Units",
 * arXiv:1508.07909) over the text as the SPM encoder sees it, the way
 * sentencepiece's bpe_model_trainer.cc builds a BPE model:
 *   1. each text is escaped as the encoder escapes it: U+2581 "▁" for every
 *      space and one "▁" in front (add_space_prefix);
 *   2. it is cut into words: a word starts at every "▁"; a control
 *      character (byte < 0x20: newline, tab) is a word of its own;
 *   3. words start as UTF-8 characters; repeatedly the most frequent pair of
 *      adjacent symbols over all words (ties: the bytewise smallest merged
 *      piece) becomes a new piece, until n_vocab pieces exist, no pair
 *      occurs min_pair_count times, or no pair may be merged (a merged piece
 *      longer than max_piece_bytes, or containing a control character);
 *   4. scores: merged piece k (0-based merge order) gets -k, so that the
 *      SPM encoder, which merges the highest-scoring adjacent pair first,
 *      applies merges in the order they were learnt.
 * So no piece spans a word boundary: encoding never merges across a space
 * or a newline.
 * Cost: each merge recounts the pairs over the DISTINCT words, so time is
 * O(n_merges x symbols of the distinct words) (1.1 MB of Shakespeare to
 * 2048 entries: 3.5 s); memory is the distinct words and a pair table.
 *
 * Vocabulary layout (ids):
 *   0 "<unk>" UNKNOWN, 1 "<s>" CONTROL (BOS), 2 "</s>" CONTROL (EOS),
 *   3..258 "<0x00>".."<0xFF>" BYTE (byte fallback for anything unseen),
 *   then every character seen (most frequent first, ties bytewise; score
 *   -(n_merges + i)), then the merged pieces in merge order.
 * add_bos_token true, add_eos_token false, add_space_prefix true.
 * Deterministic: the same texts and options give the same vocabulary (and
 * the same et_tok_sha256) on every platform.
 *
 * C11 + libc only.  Errors: 0 or an ET_E* code with e filled.
 */
#ifndef ET_VOCAB_TRAIN_H
#define ET_VOCAB_TRAIN_H

#include <stddef.h>

#include "../common/et.h"
#include "tokenizer.h"

#define ET_VOCAB_N_FIXED 259 /* <unk> <s> </s> + 256 byte tokens */

typedef struct et_vocab_opts {
    int n_vocab;          /* total size, including the 259 fixed entries and the characters */
    int max_piece_bytes;  /* longest merged piece in bytes (sentencepiece's max_sentencepiece_length) */
    int min_pair_count;   /* stop when the best pair occurs fewer times */
} et_vocab_opts;

/* n_vocab 512, max_piece_bytes 16, min_pair_count 2. */
et_vocab_opts et_vocab_defaults(void);

typedef struct et_vocab_stats {
    int n_chars;          /* distinct characters (pieces of one character) */
    int n_merges;         /* merged pieces */
    long long n_words;    /* word occurrences in the input */
    int n_unique_words;   /* distinct words */
} et_vocab_stats;

/* Learn a vocabulary from n texts (texts[i] has lens[i] bytes of UTF-8).
 * The vocabulary may be smaller than o->n_vocab when the text runs out of
 * pairs.  stats may be NULL.  0, ET_EUSAGE (n_vocab < 259 + the characters
 * seen, or bad options), ET_EINPUT (invalid UTF-8: text index and byte
 * offset) or ET_ERUN (memory). */
int et_vocab_train(et_tokenizer **out, const char *const *texts, const size_t *lens, size_t n,
                   const et_vocab_opts *o, et_vocab_stats *stats, et_err *e);

/* Write a vocabulary-only GGUF (no tensors; general.architecture "llama",
 * general.name `name` (may be NULL), the tokenizer.ggml.* keys as
 * et_tok_write_gguf writes them), as llama.cpp's vocab files are laid out.
 * edgetune data / train / tokenize and et_model_set_tokenizer read it.
 * Atomic.  0 or ET_ERUN. */
int et_tok_save_vocab_gguf(const et_tokenizer *t, const char *path, const char *name, et_err *e);

#endif
