/* bench/bench_tokenizer.c — encode throughput (MB/s of UTF-8 input) on
 * ../shared/data/tinystories_sample.txt (2 MiB) for the stories260K SPM
 * vocabulary and the GPT-2 byte-level BPE vocabulary, median of several
 * runs, beside a baseline measured in the same run (one memchr pass
 * counting newlines over the same bytes) so the figures can be quoted as a
 * ratio.  The whole file is one encode call (plain text, no special-token
 * parsing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../datasets/tokenizer.h"

#include "bench_util.h"

#define RUNS 5

/* memchr newline count: the cheapest pass that still reads every byte. */
static double bench_baseline(const char *text, size_t len) {
    double mbs[RUNS];
    volatile size_t sink = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        size_t lines = 0;
        for (int rep = 0; rep < 20; rep++) { /* 20 passes: one is too short to time */
            const char *p = text, *end = text + len;
            while ((p = memchr(p, '\n', (size_t)(end - p)))) { lines++; p++; }
        }
        sink += lines;
        mbs[r] = 20.0 * len / 1e6 / (now() - t0);
    }
    (void)sink;
    return median(mbs, RUNS);
}

static int bench_vocab(const char *label, const char *path, const char *text, size_t len, double base) {
    gguf_file g;
    et_err e = {0};
    et_tokenizer *t = NULL;
    if (gguf_open(&g, path, &e) || et_tok_from_gguf(&t, &g, &e)) {
        fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
        return 1;
    }
    gguf_close(&g);
    double mbs[RUNS];
    size_t n_tok = 0;
    for (int r = 0; r < RUNS; r++) {
        int32_t *ids;
        double t0 = now();
        if (et_tok_encode(t, text, len, 0, &ids, &n_tok, &e)) {
            fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
            et_tok_free(t);
            return 1;
        }
        mbs[r] = len / 1e6 / (now() - t0);
        free(ids);
    }
    double m = median(mbs, RUNS);
    printf("%-22s %8.2f MB/s  (%zu tokens, %.2f bytes/token; %.4f x baseline)\n", label, m, n_tok,
           (double)len / (double)n_tok, m / base);
    et_tok_free(t);
    return 0;
}

int main(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/tinystories_sample.txt", et_shared_dir());
    et_map m;
    et_err e = {0};
    if (et_map_open(&m, path, &e)) {
        printf("SKIP: %s\n", e.msg);
        return 0;
    }
    const char *text = (const char *)m.data;
    size_t len = m.size;
    double base = bench_baseline(text, len);
    printf("tokenizer encode, %s (%zu bytes), median of %d runs\n", path, len, RUNS);
    printf("%-22s %8.2f MB/s  (memchr newline scan, same text)\n", "baseline", base);
    char spm[4096], bpe[4096];
    snprintf(spm, sizeof spm, "%s/models/stories260K/stories260K.gguf", et_shared_dir());
    snprintf(bpe, sizeof bpe, "%s/tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf", et_shared_dir());
    int rc = bench_vocab("stories260K SPM", spm, text, len, base);
    rc |= bench_vocab("gpt-2 BPE", bpe, text, len, base);
    et_map_close(&m);
    return rc;
}
