/* datasets/hf_tokenizer.h — load a Hugging Face `tokenizer.json`
 * (huggingface/tokenizers serialization) into an et_tokenizer.
 *
 *   et_tokenizer *tok; et_err e = {0};
 *   if (et_tok_from_hf_json(&tok, "smollm2/tokenizer.json", &e)) puts(e.msg);
 *
 * What is understood (the byte-level BPE family llama.cpp's
 * convert_hf_to_gguf.py turns into tokenizer.ggml.model = "gpt2"):
 *   - model.type "BPE": vocab {piece: id}, merges as "a b" strings or
 *     ["a", "b"] pairs (a space inside a part becomes U+0120, as gguf-py
 *     does), ignore_merges; holes in the id range become "[PADi]" UNUSED;
 *   - added_tokens: special ones (or ones that look special, "<|...|>")
 *     become CONTROL, the others USER_DEFINED, as convert_hf_to_gguf.py;
 *   - pre_tokenizer: ByteLevel (GPT-2 regex); Sequence[Digits(individual),
 *     ByteLevel] (SmolLM/StarCoder: "smollm"); Sequence[Split(regex),
 *     ByteLevel(use_regex=false)] with the GPT-2, llama3 ("llama-bpe", or
 *     "dbrx" without ignore_merges) or qwen2 regex.  Anything else is refused
 *     with a message saying what was found;
 *   - normalizer null (NFC is accepted and, like llama.cpp, not applied);
 *   - post_processor TemplateProcessing: a leading special token is BOS
 *     (added by default), a trailing one EOS.
 * Beside a file, tokenizer_config.json (bos_token, eos_token, pad_token,
 * add_bos_token) and config.json (bos/eos/pad_token_id) are read when present.
 * SentencePiece-style tokenizer.json files (byte_fallback, "▁" pieces) are
 * refused: use the GGUF.  lstrip/rstrip flags of added tokens are ignored
 * (llama.cpp ignores them too).
 *
 * Needs cJSON, hence not in datasets/tokenizer*.c (the runtime is libc only).
 */
#ifndef ET_HF_TOKENIZER_H
#define ET_HF_TOKENIZER_H

#include <stddef.h>

#include "tokenizer.h"

/* 0, or ET_EINPUT with a message naming the file (malformed JSON with its
 * line and byte offset, missing or wrong fields, unsupported parts), or
 * ET_ERUN (out of memory). */
int et_tok_from_hf_json(et_tokenizer **out, const char *path, et_err *e);
/* Same over len bytes of JSON in memory (no sibling config files);
 * `name` is used in messages. */
int et_tok_from_hf_json_mem(et_tokenizer **out, const char *json, size_t len, const char *name, et_err *e);

/* Load whatever tokenizer `path` is: a GGUF (by its magic; tokenizer.ggml.*
 * keys), a tokenizer.json (first non-blank byte '{'), else a llama2.c
 * tokenizer.bin (vocabulary size from the file).  0, ET_EINPUT (path
 * unreadable), or the errors of the loader chosen. */
int et_tok_load(et_tokenizer **out, const char *path, et_err *e);

#endif
