/* cli/cmd_data.c — `edgetune data`: text, JSON/JSONL instructions or TSV ->
 * tokens.h5 (datasets/ingest.h; rules in docs/data.md), then a summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../datasets/chat_template.h"
#include "../datasets/ingest.h"
#include "../datasets/ingest_tok.h"
#include "cli.h"

static const char *const KNOWN[] = {"tokenizer", "input", "output", "format", "separator", "valid_fraction",
                                    "seed", "pack", "seq_len", "max_len", "no_mask_prompt", "labels",
                                    "label_first", "n_vocab", "template", "classes", "test_fraction", "test_out",
                                    "chat_template", NULL};
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
    if (o->pack && seq_len < 1)   /* no automatic value (common/et.h's rule for 0): it must be the training's */
        return et_fail(e, ET_EUSAGE, "--pack needs --seq-len T (T >= 1, the --seq-len of the training; 0 has no "
                       "automatic value here)");
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

/* --test-fraction F --test-out FILE: hold out a seeded share of the records
 * (one per line: JSONL or TSV) verbatim in FILE, for `edgetune eval`, and
 * tokenize the rest.  Header and blank lines go to both.  The test file is
 * written (atomically) only once the tokens.h5 is. */
static int ingest_with_test(const et_encoder *enc, const char *in, const char *out, const et_ingest_opts *o,
                            double tf, const char *test_out, et_ingest_summary *s, et_err *e) {
    et_map mp;
    int rc = et_map_open(&mp, in, e);
    if (rc) return rc;
    et_docs d;
    memset(s, 0, sizeof *s);
    rc = et_parse_input((const char *)mp.data, mp.size, in, o, &d, e);
    if (!rc && d.format != ET_FMT_JSONL && d.format != ET_FMT_TSV)
        rc = et_fail(e, ET_EUSAGE, "%s: --test-out needs one record per line (JSONL or TSV), not %s", in,
                     et_format_name(d.format));
    if (!rc && d.n < 2) rc = et_fail(e, ET_EINPUT, "%s: %zu record(s): nothing to hold out", in, d.n);
    uint8_t *is_test = rc ? NULL : calloc(d.n, 1);
    char *train = rc ? NULL : malloc(mp.size + 1), *test = rc ? NULL : malloc(mp.size + 1);
    if (!rc && (!is_test || !train || !test)) rc = et_fail(e, ET_ERUN, "out of memory");
    size_t nt = 0, ns = 0;
    if (!rc) {
        et_split_assign((int64_t)d.n, tf, o->seed ^ 0x7e57f12a7e57ull, is_test);
        const char *p = (const char *)mp.data, *end = p + mp.size;
        size_t k = 0;
        for (int64_t line = 1; p < end; line++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
            while (k < d.n && d.doc[k].line < line) k++;
            int rec = k < d.n && d.doc[k].line == line;
            if (!rec || !is_test[k]) {
                memcpy(train + nt, p, len);
                nt += len;
            }
            if (!rec || is_test[k]) {
                memcpy(test + ns, p, len);
                ns += len;
            }
            p += len;
        }
    }
    et_docs_free(&d);
    et_docs td;
    if (!rc) rc = et_parse_input(train, nt, in, o, &td, e);
    if (!rc) {
        rc = et_ingest_docs(enc, &td, o, in, out, s, e);
        et_docs_free(&td);
    }
    et_afile af;
    if (!rc && !(rc = et_afile_open(&af, test_out, e))) {
        if (fwrite(test, 1, ns, af.f) != ns) {
            et_afile_abort(&af);
            rc = et_fail(e, ET_ERUN, "%s: write failed", test_out);
        } else {
            rc = et_afile_commit(&af, e);
        }
    }
    free(is_test);
    free(train);
    free(test);
    et_map_close(&mp);
    return rc;
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
    /* chat template: --chat-template NAME, else the tokenizer file's tokenizer.chat_template */
    const char *ct = cli_str(&a, "chat_template", NULL);
    if (!rc && ct && (o.chat_template = et_chat_from_name(ct)) < 0)
        rc = et_fail(&e, ET_EUSAGE, "--chat-template: unknown template '%s' (%s)", ct, et_chat_names());
    if (!rc && !ct) o.chat_template = et_chat_detect(et_tok_chat_template(tok), NULL);
    et_ingest_summary s;
    if (!rc) {
        et_encoder enc;
        if (o.chat_template != ET_CHAT_NONE) et_encoder_from_tok_special(&enc, tok);
        else et_encoder_from_tok(&enc, tok);
        double tf = 0;
        const char *test_out = cli_str(&a, "test_out", NULL);
        rc = cli_float_range(&a, "test_fraction", 0.0, 0.0, 0.99, &tf, &e);
        if (!rc && (tf > 0) != (test_out != NULL))
            rc = et_fail(&e, ET_EUSAGE, "--test-fraction F and --test-out FILE go together");
        if (!rc && tf > 0) rc = ingest_with_test(&enc, in, out, &o, tf, test_out, &s, &e);
        else if (!rc) rc = et_ingest_file(&enc, in, out, &o, &s, &e);
        if (!rc) {
            printf("%s (%s): %lld records, tokenizer %.12s…, n_vocab %d", in, et_format_name(s.format),
                   (long long)s.records, enc.sha256, enc.n_vocab);
            if (s.n_labels) printf(", %d labels", s.n_labels);
            if (o.chat_template > 0) printf(", chat template %s", et_chat_name(o.chat_template));
            printf("\n");
            print_split("train", &s.train, o.pack);
            print_split("valid", &s.valid, o.pack);
            printf("wrote %s\n", out);
            if (cli_str(&a, "test_out", NULL)) printf("held out %s (records verbatim, for edgetune eval)\n", cli_str(&a, "test_out", NULL));
        }
    }
    et_tok_free(tok);
    free(sep);
    cli_free(&a);
    return rc ? cli_report(&e) : 0;
}
