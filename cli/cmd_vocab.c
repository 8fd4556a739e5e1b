/* cli/cmd_vocab.c — `edgetune vocab`: learn a SentencePiece-style BPE
 * vocabulary from text (datasets/vocab_train.h) and write it as a
 * vocabulary-only GGUF that `edgetune data --tokenizer`, `edgetune train
 * --tokenizer` and the engine read.  The input files are read by the same
 * parser as `edgetune data`, so the vocabulary is learnt from exactly the
 * text that will be tokenized (for JSONL records: prompt + completion). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/ingest.h"
#include "../datasets/vocab_train.h"
#include "cli.h"

static const char *const KNOWN[] = {"input", "output", "n_vocab", "max_piece", "min_count", "format", "name", NULL};

typedef struct texts {
    const char **s;
    size_t *len;
    size_t n, cap;
} texts;

static int texts_add(texts *t, const char *s, size_t len) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        const char **ns = realloc(t->s, cap * sizeof *ns);
        if (!ns) return -1;
        t->s = ns;
        size_t *nl = realloc(t->len, cap * sizeof *nl);
        if (!nl) return -1;
        t->len = nl;
        t->cap = cap;
    }
    t->s[t->n] = s;
    t->len[t->n++] = len;
    return 0;
}

/* Parse one input file into docs (kept: texts point into them). */
static int read_input(const char *path, const et_ingest_opts *o, et_docs *docs, texts *t, et_err *e) {
    et_map m;
    int rc = et_map_open(&m, path, e);
    if (rc) return rc;
    rc = et_parse_input((const char *)m.data, m.size, path, o, docs, e);
    et_map_close(&m);
    for (size_t i = 0; !rc && i < docs->n; i++)
        if (texts_add(t, docs->doc[i].text, docs->doc[i].len)) rc = et_fail(e, ET_ERUN, "out of memory");
    return rc;
}

int cmd_vocab(int argc, char **argv) {
    cli_args a;
    et_err e = {0};
    int rc = cli_parse(&a, argc, argv, NULL, &e);
    if (!rc) rc = cli_check_known(&a, KNOWN, &e);
    if (!rc && a.npos > 0) rc = et_fail(&e, ET_EUSAGE, "unexpected argument '%s'", a.pos[0]);
    const char *in = cli_str(&a, "input", NULL), *out = cli_str(&a, "output", NULL);
    if (!rc && (!in || !out))
        rc = et_fail(&e, ET_EUSAGE, "vocab needs --input FILE[,FILE...] and -o vocab.gguf (see `edgetune help vocab`)");
    et_vocab_opts vo = et_vocab_defaults();
    long nv = 0, mp = 0, mc = 0;
    if (!rc && !(rc = cli_int(&a, "n_vocab", vo.n_vocab, &nv, &e)) &&
        !(rc = cli_int(&a, "max_piece", vo.max_piece_bytes, &mp, &e)) &&
        !(rc = cli_int(&a, "min_count", vo.min_pair_count, &mc, &e))) {
        if (nv < ET_VOCAB_N_FIXED + 1 || nv > (1 << 24) || mp < 2 || mp > 256 || mc < 1)
            rc = et_fail(&e, ET_EUSAGE, "--n-vocab must be in [%d, %d], --max-piece in [2, 256], --min-count >= 1",
                         ET_VOCAB_N_FIXED + 1, 1 << 24);
        vo.n_vocab = (int)nv, vo.max_piece_bytes = (int)mp, vo.min_pair_count = (int)mc;
    }
    et_ingest_opts io = et_ingest_defaults();
    if (!rc && (io.format = et_format_from_name(cli_str(&a, "format", "auto"))) < 0)
        rc = et_fail(&e, ET_EUSAGE, "--format: unknown format '%s' (auto, text, jsonl, json, tsv)",
                     cli_str(&a, "format", ""));
    /* the inputs, comma-separated */
    char *list = in ? strdup(in) : NULL;
    int n_files = 0;
    et_docs docs[64];
    texts t = {0};
    if (!rc && !list) rc = et_fail(&e, ET_ERUN, "out of memory");
    for (char *save = NULL, *p = rc ? NULL : strtok_r(list, ",", &save); p && !rc; p = strtok_r(NULL, ",", &save)) {
        if (n_files == 64) {
            rc = et_fail(&e, ET_EUSAGE, "--input: at most 64 files");
            break;
        }
        memset(&docs[n_files], 0, sizeof docs[0]);
        rc = read_input(p, &io, &docs[n_files++], &t, &e);
    }
    et_tokenizer *tok = NULL;
    et_vocab_stats st;
    if (!rc) rc = et_vocab_train(&tok, t.s, t.len, t.n, &vo, &st, &e);
    if (!rc) rc = et_tok_save_vocab_gguf(tok, out, cli_str(&a, "name", "edgetune-vocab"), &e);
    if (!rc) {
        char hex[65];
        et_tok_sha256(tok, hex);
        printf("vocab: %zu documents from %s, %lld words (%d distinct), %d characters, %d merges\n", t.n, in,
               st.n_words, st.n_unique_words, st.n_chars, st.n_merges);
        printf("wrote %s: n_vocab %d (SPM with byte fallback), tokenizer %.12s…\n", out, et_tok_n_vocab(tok), hex);
        if (t.n) { /* how the first document tokenizes */
            int32_t *ids = NULL;
            size_t n = 0;
            size_t len = t.len[0] < 200 ? t.len[0] : 200;
            while (len < t.len[0] && len > 0 && ((unsigned char)t.s[0][len] & 0xC0) == 0x80) len--;
            if (!et_tok_encode(tok, t.s[0], len, 0, &ids, &n, &e)) {
                printf("first document: %zu bytes -> %zu tokens:", len, n);
                for (size_t i = 0; i < n && i < 40; i++) {
                    size_t pl;
                    const char *pc = et_tok_piece(tok, ids[i], &pl);
                    printf(" [");
                    for (size_t k = 0; k < pl; k++) {
                        if (pc[k] == '\n') fputs("\\n", stdout);
                        else putchar(pc[k]);
                    }
                    printf("]");
                }
                printf("%s\n", n > 40 ? " ..." : "");
            }
            free(ids);
        }
    }
    et_tok_free(tok);
    for (int i = 0; i < n_files; i++) et_docs_free(&docs[i]);
    free(t.s);
    free(t.len);
    free(list);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
