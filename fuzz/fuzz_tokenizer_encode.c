/* fuzz/fuzz_tokenizer_encode.c — libFuzzer harness for et_tok_encode /
 * et_tok_decode on real vocabularies from ../shared: stories260K (SPM,
 * byte fallback) and GPT-2 (byte-level BPE).  Input: one flags byte, then
 * the text.  Checks, for every input:
 *  - invalid UTF-8 is refused with a message, nothing else is;
 *  - the fast path (SPM chunks, word cache) gives the reference ids;
 *  - decode(encode(s)) == s when no control/unknown token came out and
 *    (SPM) s has no U+2581, which SentencePiece reads as a space.
 * Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static et_tokenizer *load(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", et_shared_dir(), rel);
    gguf_file g;
    et_err e = {0};
    et_tokenizer *t = NULL;
    if (gguf_open(&g, path, &e)) return NULL;
    if (et_tok_from_gguf(&t, &g, &e)) t = NULL;
    gguf_close(&g);
    return t;
}

static void check(const et_tokenizer *t, const char *s, size_t len, int flags) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    et_err e = {0};
    int ra = et_tok_encode(t, s, len, flags, &a, &na, &e);
    if (ra) {
        if (ra != ET_EINPUT || !strstr(e.msg, "UTF-8")) abort();
        return;
    }
    if (et_tok_encode(t, s, len, flags | ET_TOK_REFERENCE, &b, &nb, &e)) abort();
    if (na != nb || (na && memcmp(a, b, na * sizeof *a))) abort();
    char *text = NULL;
    size_t tl;
    if (et_tok_decode(t, a, na, 0, &text, &tl, &e)) abort();
    int special = 0;
    for (size_t i = 0; i < na; i++) {
        int ty = et_tok_type(t, a[i]);
        special |= ty == ET_TOKT_CONTROL || ty == ET_TOKT_UNKNOWN;
    }
    int spm_space = et_tok_model(t) == ET_TOK_SPM && len >= 3 && memmem(s, len, "\xe2\x96\x81", 3);
    if (!special && !spm_space && (tl != len || memcmp(text, s, len))) abort();
    free(text);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static et_tokenizer *spm, *bpe;
    static int init;
    if (!init) {
        init = 1;
        spm = load("models/stories260K/stories260K.gguf");
        bpe = load("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
        if (!spm || !bpe) fprintf(stderr, "fuzz_tokenizer_encode: shared vocabularies missing\n");
    }
    if (size < 1) return 0;
    int flags = data[0] & (ET_TOK_ADD_BOS | ET_TOK_ADD_EOS | ET_TOK_PARSE_SPECIAL);
    const char *s = (const char *)data + 1;
    size_t len = size - 1 < 8192 ? size - 1 : 8192;
    if (spm) check(spm, s, len, flags);
    if (bpe) check(bpe, s, len, flags);
    return 0;
}
