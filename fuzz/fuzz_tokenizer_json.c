/* fuzz/fuzz_tokenizer_json.c — libFuzzer harness for the HF tokenizer.json
 * loader (datasets/hf_tokenizer.c).  Loads the input from memory; when it
 * is accepted, encodes a few fixed strings and the input itself (when it is
 * valid UTF-8) with and without special-token parsing, checks that the fast
 * path (word cache) gives the ids of the reference path, and decodes the
 * ids.  A refusal must carry a message.  Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/hf_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const et_tokenizer *t, const char *s, size_t len, int flags) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    et_err e = {0};
    int ra = et_tok_encode(t, s, len, flags, &a, &na, &e);
    int rb = et_tok_encode(t, s, len, flags | ET_TOK_REFERENCE, &b, &nb, &e);
    if (ra != rb) abort();
    if (ra) {
        if (!e.msg[0]) abort();
        return;
    }
    if (na != nb || (na && memcmp(a, b, na * sizeof *a))) abort(); /* fast path == reference */
    char *text = NULL;
    size_t tl;
    if (et_tok_decode(t, a, na, flags, &text, &tl, &e)) abort();    /* ids from encode are valid */
    free(text);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_tok_from_hf_json_mem(&t, (const char *)data, size, "fuzz.json", &e)) {
        if (!e.msg[0] || t) abort();
        return 0;
    }
    static const char *const texts[] = {
        "Hello, world! 123 4567", " \t\n\n  x  ", "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\xa6\x99", "<|endoftext|>a<s>",
        "I've 'RE 'll", "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        check(t, texts[i], strlen(texts[i]), 0);
        check(t, texts[i], strlen(texts[i]), ET_TOK_PARSE_SPECIAL | ET_TOK_DEFAULT_BOS);
    }
    check(t, (const char *)data, size < 4096 ? size : 4096, 0);
    et_tok_free(t);
    return 0;
}
