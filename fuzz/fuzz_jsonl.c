/* fuzz/fuzz_jsonl.c — libFuzzer harness for the record parsing layer of
 * datasets/ingest.h (no tokenizer): the same bytes are parsed as JSON
 * (a JSON array of records or JSONL, by content), as TSV with inferred labels
 * and as plain text with a literal separator.  Every accepted document must
 * be valid UTF-8 with segments covering its text in order; every refusal must
 * say why.  The input is copied to an exact-size buffer so ASan sees any read
 * past its end.  Run: make fuzz FUZZ_SECONDS=30 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *buf, size_t size, int format, const char *sep) {
    et_ingest_opts o = et_ingest_defaults();
    o.format = format;
    o.separator = sep;
    et_docs d;
    et_err e = {0};
    if (et_parse_input(buf, size, "fuzz", &o, &d, &e)) {
        if (!e.msg[0] || d.n != 0) abort();
        return;
    }
    if (d.n == 0) abort();
    for (size_t i = 0; i < d.n; i++) {
        const et_doc *x = &d.doc[i];
        size_t bad;
        if (x->len == 0 || x->text[x->len] != 0 || !et_utf8_valid(x->text, x->len, &bad)) abort();
        if (x->n_segs < 1 || x->segs[x->n_segs - 1].end != x->len || x->line < 1) abort();
        for (int k = 1; k < x->n_segs; k++)
            if (x->segs[k].end <= x->segs[k - 1].end) abort();
        if (format == ET_FMT_TSV && (x->label < 0 || x->label >= d.n_labels)) abort();
    }
    et_docs_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    check(buf, size, ET_FMT_JSON, NULL);
    check(buf, size, ET_FMT_TSV, NULL);
    check(buf, size, ET_FMT_TEXT, "<|endoftext|>");
    free(buf);
    return 0;
}
