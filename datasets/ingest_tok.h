/* datasets/ingest_tok.h — connect ingest.h to the tokenizers of
 * datasets/tokenizer.h: an et_encoder over an et_tokenizer, and loading a
 * tokenizer from whatever file `edgetune data --tokenizer` is given.
 *
 *   et_tokenizer *tok; et_err e = {0};
 *   et_ingest_load_tokenizer(&tok, "stories260K.gguf", 0, &e);
 *   et_encoder enc; et_encoder_from_tok(&enc, tok);   // enc borrows tok
 */
#ifndef ET_INGEST_TOK_H
#define ET_INGEST_TOK_H

#include "ingest.h"
#include "tokenizer.h"

/* enc->encode = et_tok_encode(t, text, len, ET_TOK_DEFAULT_BOS) (BOS when the
 * vocabulary says add_bos_token, never EOS; special-token text such as
 * "<|endoftext|>" inside documents is encoded as plain text); n_vocab, bos,
 * eos and sha256 (et_tok_sha256) from t.  t must outlive enc. */
void et_encoder_from_tok(et_encoder *enc, const et_tokenizer *t);
/* The same with ET_TOK_PARSE_SPECIAL: special-token text ("<|im_start|>",
 * "</s>") becomes its special id, as in a chat template's rendering
 * (et_ingest_opts.chat_template) and as llama.cpp tokenizes a chat prompt. */
void et_encoder_from_tok_special(et_encoder *enc, const et_tokenizer *t);

/* Load a tokenizer from a GGUF (a model or a vocab-only file: tokenizer.ggml.*
 * keys) or a llama2.c tokenizer.bin.  A tokenizer.bin does not store its
 * vocabulary size: n_vocab > 0 gives it, else it is the number of entries that
 * fill the file exactly.  0 or ET_EINPUT naming the file. */
int et_ingest_load_tokenizer(et_tokenizer **out, const char *path, int n_vocab, et_err *e);

#endif
