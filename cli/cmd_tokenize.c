/* cli/cmd_tokenize.c — `edgetune tokenize TOKENIZER (--text STR | --file F)
 *                       [--bos] [--eos] [--special] [--verbose] [--decode]`.
 *
 * TOKENIZER is a GGUF model or vocabulary, an HF tokenizer.json or a
 * llama2.c tokenizer.bin (datasets/hf_tokenizer.h et_tok_load).  Prints the
 * ids on one line, space separated; --verbose prints one line per token
 * instead (id, then the piece with C escapes); --decode reads the input as
 * ids (separated by spaces, commas or newlines) and prints the text.
 * --bos/--eos add BOS/EOS; --special matches special tokens written in the
 * text (and renders control tokens when decoding).
 * Exit codes: 0, 1 usage, 2 bad input (unreadable file, invalid UTF-8, id out
 * of range), 3 failure during the run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/hf_tokenizer.h"
#include "cli.h"

/* Parse ids separated by spaces, commas or newlines. */
static int parse_ids(const char *s, int32_t **ids, size_t *n, et_err *e) {
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return et_fail(e, ET_ERUN, "out of memory");
    for (const char *p = s;;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\r' || *p == '\t' || *p == '[' || *p == ']') p++;
        if (!*p) return 0;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX)
            return et_fail(e, ET_EINPUT, "--decode: '%.20s' is not a token id", p);
        if (*n == cap) {
            cap *= 2;
            int32_t *b = realloc(*ids, cap * sizeof **ids);
            if (!b) return et_fail(e, ET_ERUN, "out of memory");
            *ids = b;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
}

int cmd_tokenize(int argc, char **argv) {
    static const char *const bools[] = {"bos", "eos", "special", "verbose", "decode", NULL};
    static const char *const known[] = {"text", "file", "bos", "eos", "special", "verbose", "decode", NULL};
    cli_args a;
    et_err e = {0};
    if (cli_parse(&a, argc, argv, bools, &e) || cli_check_known(&a, known, &e)) return cli_report(&e);
    const char *text_arg = cli_str(&a, "text", NULL), *file = cli_str(&a, "file", NULL);
    if (a.npos != 1 || (!text_arg) == (!file)) {
        fprintf(stderr, "usage: edgetune tokenize TOKENIZER (--text STR | --file F) [--bos] [--eos] [--special] "
                        "[--verbose] [--decode]\n  TOKENIZER: model .gguf, tokenizer.json or llama2.c tokenizer.bin\n");
        cli_free(&a);
        return ET_EUSAGE;
    }
    et_tokenizer *t = NULL;
    et_map m = {0};
    int rc = et_tok_load(&t, a.pos[0], &e);
    const char *text = text_arg;
    size_t len = text ? strlen(text) : 0;
    char *owned = NULL;
    if (!rc && file) {
        if ((rc = et_map_open(&m, file, &e)) == 0) {
            owned = malloc(m.size + 1); /* NUL-terminated copy for --decode */
            if (!owned) rc = et_fail(&e, ET_ERUN, "out of memory");
            else {
                if (m.size) memcpy(owned, m.data, m.size);
                owned[m.size] = 0;
                text = owned;
                len = m.size;
            }
        }
    }
    int flags = (cli_str(&a, "bos", NULL) ? ET_TOK_ADD_BOS : 0) | (cli_str(&a, "eos", NULL) ? ET_TOK_ADD_EOS : 0) |
                (cli_str(&a, "special", NULL) ? ET_TOK_PARSE_SPECIAL : 0);
    int32_t *ids = NULL;
    size_t n = 0;
    if (!rc && cli_str(&a, "decode", NULL)) {
        char *out = NULL;
        size_t olen;
        if (!(rc = parse_ids(text, &ids, &n, &e)) && !(rc = et_tok_decode(t, ids, n, flags, &out, &olen, &e))) {
            fwrite(out, 1, olen, stdout);
            putchar('\n');
        }
        free(out);
    } else if (!rc && !(rc = et_tok_encode(t, text, len, flags, &ids, &n, &e))) {
        if (cli_str(&a, "verbose", NULL)) {
            for (size_t i = 0; i < n; i++) {
                size_t pl;
                const char *p = et_tok_piece(t, ids[i], &pl);
                printf("%6d  ", ids[i]);
                cli_print_escaped(p, pl, pl);
                putchar('\n');
            }
            fprintf(stderr, "%zu tokens from %zu bytes\n", n, len);
        } else {
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
        }
    }
    if (rc) rc = cli_report(&e);
    free(ids);
    free(owned);
    if (file) et_map_close(&m);
    et_tok_free(t);
    cli_free(&a);
    return rc;
}
