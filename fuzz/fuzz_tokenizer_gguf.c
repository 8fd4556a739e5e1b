/* fuzz/fuzz_tokenizer_gguf.c — libFuzzer harness for the GGUF tokenizer
 * loader (datasets/tokenizer_gguf.c): the input is opened as a GGUF from
 * memory; when the tokenizer.ggml.* keys are accepted, a few strings are
 * encoded (fast path checked against the reference path) and decoded, and
 * the tokenizer is written into a GGUF writer (not to disk).  Refusals must
 * carry a message.  Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open_mem(&g, data, size, "fuzz.gguf", &e)) return 0;
    et_tokenizer *t = NULL;
    int rc = et_tok_from_gguf(&t, &g, &e);
    gguf_close(&g);
    if (rc) {
        if (!e.msg[0] || t) abort();
        return 0;
    }
    static const char *const texts[] = {"Hello world! 123", "  \n\t x <s> <|endoftext|>", "caf\xc3\xa9 \xe4\xbd\xa0 \xf0\x9f\xa6\x99", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int f = 0; f < 2; f++) {
            int flags = f ? ET_TOK_PARSE_SPECIAL | ET_TOK_DEFAULT_BOS : 0;
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            int ra = et_tok_encode(t, texts[i], strlen(texts[i]), flags, &a, &na, &e);
            int rb = et_tok_encode(t, texts[i], strlen(texts[i]), flags | ET_TOK_REFERENCE, &b, &nb, &e);
            if (ra != rb || (!ra && (na != nb || (na && memcmp(a, b, na * sizeof *a))))) abort();
            char *text = NULL;
            size_t tl;
            if (!ra && et_tok_decode(t, a, na, flags, &text, &tl, &e)) abort();
            free(text);
            free(a);
            free(b);
        }
    }
    gguf_writer *w = gguf_writer_new();
    if (w && et_tok_write_gguf(t, w, &e) && !e.msg[0]) abort();
    gguf_writer_free(w);
    char hex[65];
    et_tok_sha256(t, hex);
    et_tok_free(t);
    return 0;
}
