/* export/tok_weak.h — TEMPORARY: datasets/tokenizer.c (branch `tok`) has
 * not landed yet.  Until it does, the tokenizer functions the model code
 * calls are weak references: they are NULL when no tokenizer is linked
 * and the importers then leave m->tok NULL.  Delete this file (and its
 * includes) once the tokenizer is on main. */
#ifndef ET_TOK_WEAK_H
#define ET_TOK_WEAK_H
#include "../datasets/tokenizer.h"
#pragma weak et_tok_from_gguf
#pragma weak et_tok_from_llama2c
#pragma weak et_tok_free
#pragma weak et_tok_n_vocab
#pragma weak et_tok_write_gguf
#pragma weak et_tok_piece
#pragma weak et_tok_sha256
#endif
