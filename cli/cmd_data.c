/* cli/cmd_data.c — `edgetune data`: text, JSON/JSONL instructions or TSV ->
 * tokens.h5 (datasets/ingest.h; rules in docs/data.md), then a summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/ingest.h"
#include "../datasets/ingest_tok.h"
#include "cli.h"

static const char *const KNOWN[] = {"tokenizer", "input", "output", "format", "separator", "valid_fraction",
                                    "seed", "pack", "seq_len", "max_len", "no_mask_prompt", "labels",
                                    "label_first", "n_vocab", "template", "classes", NULL};
static const char *const BOOLS[] = {"pack", "no_mask_prompt", "label_first", NULL};

/* "\n", "\t", "\\" in a --separator value become the characters. */
static char *unescape(const char *s) {
    char *o = malloc(strlen(s) + 1), *w = o;
    if (!o) return NULL;
    for (; *s; s++) {
        if (s[0] == '\\' && (s[1] == 'n' || s[1] == 't' || s[1] == '\\')) {
            *w++ = s[1] == 'n' ? '\n' : s[1] == 't' ? '\t' : '\\';
            s++;
        } else {
            *w++ = *s;
        }
    }
    *w = 0;
    return o;
}

static void print_split(const char *name, const et_split_summary *s, int packed) {
    double masked = s->tokens ? 100.0 * (double)(s->tokens - s->loss_tokens) / (double)s->tokens : 0.0;
    printf("  %s: %lld documents, %lld rows, %lld tokens, %.1f%% masked, %lld truncated", name, (long long)s->docs,
           (long long)s->rows, (long long)s->tokens, masked, (long long)s->truncated_docs);
    if (packed) printf(", %lld padding", (long long)s->pad_tokens);
    printf("\n");
}

/* Options from flags; ET_EUSAGE with a message for bad values. */
static int read_opts(const cli_args *a, et_ingest_opts *o, long *n_vocab, et_err *e) {
    *o = et_ingest_defaults();
    const char *fmt = cli_str(a, "format", "auto");
    o->format = et_format_from_name(fmt);
    if (o->format < 0) return et_fail(e, ET_EUSAGE, "--format: unknown format '%s' (auto, text, jsonl, json, tsv)", fmt);
    long seed, seq_len, max_len;
    double vf;
    int rc;
    if ((rc = cli_float(a, "valid_fraction", 0.0, &vf, e)) || (rc = cli_int(a, "seed", 0, &seed, e)) ||
        (rc = cli_int(a, "seq_len", 0, &seq_len, e)) || (rc = cli_int(a, "max_len", 0, &max_len, e)) ||
        (rc = cli_int(a, "n_vocab", 0, n_vocab, e)))
        return rc;
    if (!(vf >= 0 && vf < 1)) return et_fail(e, ET_EUSAGE, "--valid-fraction must be in [0, 1), got %g", vf);
    if (max_len < 0) return et_fail(e, ET_EUSAGE, "--max-len must be >= 0");
    o->valid_fraction = vf;
    o->seed = (uint64_t)seed;
    o->max_len = max_len;
    o->pack = !strcmp(cli_str(a, "pack", "0"), "1");
    o->seq_len = seq_len;
    if (o->pack && seq_len < 1) return et_fail(e, ET_EUSAGE, "--pack needs --seq-len T (T >= 1)");
    if (!o->pack && cli_str(a, "seq_len", NULL)) return et_fail(e, ET_EUSAGE, "--seq-len is only used with --pack");
    o->mask_prompt = strcmp(cli_str(a, "no_mask_prompt", "0"), "1") != 0;
    o->labels = cli_str(a, "labels", NULL);
    o->template_ = cli_str(a, "template", NULL);
    if (o->template_) { /* as `edgetune eval --task classify`: --labels are the verbalizers, --classes the classes */
        o->verbalizers = o->labels;
        o->labels = cli_str(a, "classes", NULL);
    }
    o->label_first = !strcmp(cli_str(a, "label_first", "0"), "1");
    return 0;
}

int cmd_data(int argc, char **argv) {
    cli_args a;
    et_err e = {0};
    int rc = cli_parse(&a, argc, argv, BOOLS, &e);
    if (!rc) rc = cli_check_known(&a, KNOWN, &e);
    if (!rc && a.npos > 0) rc = et_fail(&e, ET_EUSAGE, "unexpected argument '%s'", a.pos[0]);
    const char *tok_path = cli_str(&a, "tokenizer", NULL), *in = cli_str(&a, "input", NULL);
    const char *out = cli_str(&a, "output", NULL);
    if (!rc && (!tok_path || !in || !out))
        rc = et_fail(&e, ET_EUSAGE, "data needs --tokenizer MODEL, --input FILE and -o tokens.h5 "
                                    "(see `edgetune help data`)");
    et_ingest_opts o;
    long n_vocab = 0;
    if (!rc) rc = read_opts(&a, &o, &n_vocab, &e);
    char *sep = NULL;
    if (!rc && cli_str(&a, "separator", NULL) && !(sep = unescape(cli_str(&a, "separator", NULL))))
        rc = et_fail(&e, ET_ERUN, "out of memory");
    o.separator = sep;
    et_tokenizer *tok = NULL;
    if (!rc) rc = et_ingest_load_tokenizer(&tok, tok_path, (int)n_vocab, &e);
    et_ingest_summary s;
    if (!rc) {
        et_encoder enc;
        et_encoder_from_tok(&enc, tok);
        rc = et_ingest_file(&enc, in, out, &o, &s, &e);
        if (!rc) {
            printf("%s (%s): %lld records, tokenizer %.12s…, n_vocab %d", in, et_format_name(s.format),
                   (long long)s.records, enc.sha256, enc.n_vocab);
            if (s.n_labels) printf(", %d labels", s.n_labels);
            printf("\n");
            print_split("train", &s.train, o.pack);
            print_split("valid", &s.valid, o.pack);
            printf("wrote %s\n", out);
        }
    }
    et_tok_free(tok);
    free(sep);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
