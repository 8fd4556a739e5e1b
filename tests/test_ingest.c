/* tests/test_ingest.c — input parsing (text, JSON array/JSONL, TSV), masks,
 * split, packing and truncation with hand-made encoders whose output can be
 * computed by hand; bad input gives the right message and writes nothing. */
#include "testutil.h"

#include "../datasets/dataset.h"
#include "../datasets/ingest.h"

static const char *tpath(const char *name) {
    static char bufs[4][512];
    static int k = 0;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static const char *write_input(const char *name, const char *data, size_t n) {
    const char *p = tpath(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

static int leftovers(const char *prefix) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q '^%s'", test_tmpdir(), prefix);
    return system(cmd) == 0;
}

/* Byte encoder: BOS 1, then byte b -> b + 3; EOS 2; n_vocab 259.
 * With ctx != NULL, the pair "ab" becomes the single token 259 (n_vocab 260),
 * so that a prompt ending in 'a' and a response starting with 'b' share a token. */
static int byte_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n, et_err *e) {
    (void)e;
    int32_t *o = malloc((len + 1) * sizeof(int32_t));
    size_t k = 0;
    o[k++] = 1;
    for (size_t i = 0; i < len; i++) {
        if (ctx && i + 1 < len && text[i] == 'a' && text[i + 1] == 'b') {
            o[k++] = 259;
            i++;
        } else {
            o[k++] = (uint8_t)text[i] + 3;
        }
    }
    *ids = o;
    *n = k;
    return 0;
}

static et_encoder byte_enc(void) {
    et_encoder enc = {.encode = byte_encode, .ctx = NULL, .n_vocab = 259, .bos_id = 1, .eos_id = 2};
    memcpy(enc.sha256, "00000000000000000000000000000000000000000000000000000000000000ff", 65);
    return enc;
}

/* Expected tokens of a text under byte_encode (no merges): BOS, bytes+3, EOS. */
static size_t expect_tokens(const char *s, int32_t *out) {
    size_t k = 0;
    out[k++] = 1;
    for (const char *p = s; *p; p++) out[k++] = (uint8_t)*p + 3;
    out[k++] = 2;
    return k;
}

static int parse(const char *data, const char *name, const et_ingest_opts *o, et_docs *d, et_err *e) {
    return et_parse_input(data, strlen(data), name, o, d, e);
}

/* ---------------------------------------------------------------- parsing */

static void test_text_separators(void **state) {
    (void)state;
    et_ingest_opts o = et_ingest_defaults();
    et_docs d;
    et_err e = {0};
    const char *txt = "\nOne day.\nThe end.\n\n  \nSecond story\n\n\n\nThird\n";
    assert_int_equal(parse(txt, "s.txt", &o, &d, &e), 0);
    assert_int_equal(d.format, ET_FMT_TEXT);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.doc[0].text, "One day.\nThe end.");
    assert_int_equal(d.doc[0].line, 2);
    assert_string_equal(d.doc[1].text, "Second story");
    assert_int_equal(d.doc[1].line, 6);
    assert_string_equal(d.doc[2].text, "Third");
    assert_int_equal(d.doc[2].line, 10);
    assert_int_equal(d.doc[2].n_segs, 1);
    assert_int_equal(d.doc[2].segs[0].train, 1);
    assert_int_equal(d.doc[2].segs[0].end, 5);
    assert_int_equal(d.doc[2].label, -1);
    et_docs_free(&d);

    o.separator = "<|endoftext|>";
    assert_int_equal(parse("A story.\n<|endoftext|>\nB story\n\nstill B<|endoftext|><|endoftext|>C", "x", &o, &d, &e), 0);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.doc[1].text, "B story\n\nstill B");
    assert_int_equal(d.doc[1].line, 3);
    assert_string_equal(d.doc[2].text, "C");
    et_docs_free(&d);

    o.separator = "line";
    assert_int_equal(parse("a\n\nb b\r\nc", "x", &o, &d, &e), 0);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.doc[1].text, "b b");
    assert_int_equal(d.doc[2].line, 4);
    et_docs_free(&d);

    o.separator = "none";
    assert_int_equal(parse("\xef\xbb\xbf a\n\nb \n", "x", &o, &d, &e), 0); /* BOM skipped */
    assert_int_equal(d.n, 1);
    assert_string_equal(d.doc[0].text, "a\n\nb");
    et_docs_free(&d);
}

static const char *ALPACA_JSON =
    "[\n"
    "  {\"instruction\": \"Add 2 and 3.\", \"input\": \"\", \"output\": \"5\"},\n"
    "  {\n"
    "    \"instruction\": \"Translate.\",\n"
    "    \"input\": \"hola\",\n"
    "    \"output\": \"hello\"\n"
    "  },\n"
    "  {\"instruction\": \"\", \"input\": \"What is 100%?\", \"output\": \"All of it.\"}\n"
    "]\n";

/* Stanford Alpaca's PROMPT_DICT, written out here independently of the library. */
static const char *P0 = "Below is an instruction that describes a task. Write a response that appropriately "
                        "completes the request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n";
static const char *P1 = "Below is an instruction that describes a task, paired with an input that provides further "
                        "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                        "Translate.\n\n### Input:\nhola\n\n### Response:\n";
static const char *P2 = "Below is an instruction that describes a task. Write a response that appropriately "
                        "completes the request.\n\n### Instruction:\nWhat is 100%?\n\n### Response:\n";

static void check_alpaca_doc(const et_doc *d, const char *prompt, const char *output, int64_t line) {
    char want[1024];
    snprintf(want, sizeof want, "%s%s", prompt, output);
    assert_string_equal(d->text, want);
    assert_int_equal(d->n_segs, 2);
    assert_int_equal(d->segs[0].end, strlen(prompt));
    assert_int_equal(d->segs[0].train, 0);
    assert_int_equal(d->segs[1].end, strlen(want));
    assert_int_equal(d->segs[1].train, 1);
    assert_int_equal(d->line, line);
}

static void test_json_alpaca_array_and_jsonl(void **state) {
    (void)state;
    et_ingest_opts o = et_ingest_defaults();
    et_docs d;
    et_err e = {0};
    assert_int_equal(parse(ALPACA_JSON, "a.json", &o, &d, &e), 0);
    assert_int_equal(d.format, ET_FMT_JSON);
    assert_int_equal(d.n, 3);
    check_alpaca_doc(&d.doc[0], P0, "5", 2);
    check_alpaca_doc(&d.doc[1], P1, "hello", 3);
    check_alpaca_doc(&d.doc[2], P2, "All of it.", 8);
    et_docs_free(&d);

    const char *jl = "{\"text\": \"plain \\u00e9t\\u00e9\"}\n\n"
                     "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                     "{\"role\": \"user\", \"content\": \"Hi\"},{\"role\": \"assistant\", \"content\": \"Hello!\"},"
                     "{\"role\": \"user\", \"content\": \"Bye\"},{\"role\": \"assistant\", \"content\": \"Bye.\"}]}\r\n"
                     "{\"prompt\": \"Q: 1+1\\nA:\", \"completion\": \" 2\"}\n";
    assert_int_equal(parse(jl, "c.jsonl", &o, &d, &e), 0);
    assert_int_equal(d.format, ET_FMT_JSONL);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.doc[0].text, "plain \xc3\xa9t\xc3\xa9");
    assert_int_equal(d.doc[0].n_segs, 1);
    assert_int_equal(d.doc[1].line, 3);
    const char *chat = "### System:\nBe brief.\n\n### User:\nHi\n\n### Assistant:\nHello!\n\n"
                       "### User:\nBye\n\n### Assistant:\nBye.";
    assert_string_equal(d.doc[1].text, chat);
    /* trained: exactly the two assistant contents */
    const char *h1 = strstr(chat, "Hello!"), *h2 = strstr(chat, "Bye.");
    size_t want_ends[] = {(size_t)(h1 - chat), (size_t)(h1 - chat) + 6, (size_t)(h2 - chat), strlen(chat)};
    int want_train[] = {0, 1, 0, 1};
    assert_int_equal(d.doc[1].n_segs, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(d.doc[1].segs[i].end, want_ends[i]);
        assert_int_equal(d.doc[1].segs[i].train, want_train[i]);
    }
    assert_string_equal(d.doc[2].text, "Q: 1+1\nA: 2");
    assert_int_equal(d.doc[2].segs[0].end, 9);
    assert_int_equal(d.doc[2].line, 4);
    et_docs_free(&d);
}

static void test_tsv(void **state) {
    (void)state;
    et_ingest_opts o = et_ingest_defaults();
    et_docs d;
    et_err e = {0};
    const char *sst = "sentence\tlabel\ngreat fun \t1\n\ndull\t0\r\nok\t1\n";
    assert_int_equal(parse(sst, "s.tsv", &o, &d, &e), 0);
    assert_int_equal(d.format, ET_FMT_TSV);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.n_labels, 2);
    assert_string_equal(d.label_names[0], "0");
    assert_string_equal(d.label_names[1], "1");
    assert_string_equal(d.doc[0].text, "great fun");
    assert_int_equal(d.doc[0].label, 1);
    assert_int_equal(d.doc[0].line, 2);
    assert_int_equal(d.doc[1].label, 0);
    assert_int_equal(d.doc[1].line, 4);
    et_docs_free(&d);
    /* label first, given label order, no header */
    o.label_first = 1;
    o.labels = "spam,ham";
    o.format = ET_FMT_TSV;
    assert_int_equal(parse("ham\tGo home\nspam\tWIN a\tprize\n", "sms", &o, &d, &e), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.doc[0].label, 1);
    assert_int_equal(d.doc[1].label, 0);
    assert_string_equal(d.doc[1].text, "WIN a\tprize");
    et_docs_free(&d);
    /* an unknown first label is a header; an unknown label later is an error */
    assert_int_equal(parse("class\ttext\nham\thi\neggs\tno\n", "sms", &o, &d, &e), ET_EINPUT);
    assert_string_equal(e.msg, "sms: line 3: unknown label 'eggs' (labels: spam,ham)");
    o.labels = "a,,b";
    assert_int_equal(parse("a\tx\n", "sms", &o, &d, &e), ET_EUSAGE);
    o.labels = "a,b,a";
    assert_int_equal(parse("a\tx\n", "sms", &o, &d, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "names 'a' twice"));
    /* many distinct inferred labels: sorted bytewise, each row gets its own */
    o = et_ingest_defaults();
    o.format = ET_FMT_TSV;
    char *big = malloc(3000 * 16);
    size_t len = 0;
    for (int i = 2999; i >= 0; i--) len += (size_t)sprintf(big + len, "t%d\tL%05d\n", i, i);
    assert_int_equal(et_parse_input(big, len, "big.tsv", &o, &d, &e), 0);
    assert_int_equal(d.n_labels, 3000);
    for (int i = 0; i < 3000; i++) {
        char want[16];
        snprintf(want, sizeof want, "L%05d", i);
        assert_string_equal(d.label_names[i], want);
        assert_int_equal(d.doc[i].label, 2999 - i);
    }
    et_docs_free(&d);
    free(big);
}

/* ------------------------------------------------------------- bad input */

/* Ingest `data` from file `name`; expect ET_EINPUT with a message equal to
 * "<path>: <rest>" and no output (nor temporaries) left. */
static void expect_bad_input(const char *name, const char *data, size_t n, const et_ingest_opts *o,
                             const char *rest) {
    const char *in = write_input(name, data, n);
    const char *out = tpath("bad_out.h5");
    et_encoder enc = byte_enc();
    et_ingest_summary s;
    et_err e = {0};
    int rc = et_ingest_file(&enc, in, out, o, &s, &e);
    char want[1024];
    snprintf(want, sizeof want, "%s: %s", in, rest);
    if (rc != ET_EINPUT || strcmp(e.msg, want) != 0) fail_msg("%s: got rc %d '%s'\nwanted '%s'", name, rc, e.msg, want);
    assert_int_not_equal(access(out, F_OK), 0);
    assert_false(leftovers("bad_out"));
}

static void test_bad_inputs(void **state) {
    (void)state;
    et_ingest_opts o = et_ingest_defaults();
    expect_bad_input("e.txt", "", 0, &o, "empty file");
    expect_bad_input("w.jsonl", " \n\n\t\n", 5, &o, "empty file (only whitespace)");
    expect_bad_input("u.txt", "good line\nbad \xff byte\n", 19, &o, "line 2: invalid UTF-8 at byte offset 14 (byte 0xff)");
    expect_bad_input("o.txt", "ok\n\xc0\xaf", 5, &o, "line 2: invalid UTF-8 at byte offset 3 (byte 0xc0)"); /* overlong */
    expect_bad_input("s.txt", "x\xed\xa0\x80", 4, &o, "line 1: invalid UTF-8 at byte offset 1 (byte 0xed)"); /* surrogate */
    expect_bad_input("t.txt", "abc\xe2\x82", 5, &o, "line 1: invalid UTF-8 at byte offset 3 (byte 0xe2)"); /* truncated */
    const char *jl = "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"\n{\"text\": \"d\"}\n";
    expect_bad_input("m.jsonl", jl, strlen(jl), &o, "line 3: malformed JSON (column 12)");
    const char *tr = "{\"text\": \"a\"} {\"text\": \"b\"}\n";
    expect_bad_input("g.jsonl", tr, strlen(tr), &o, "line 1: malformed JSON: unexpected text after the record (column 15)");
    const char *mf = "{\"text\": \"a\"}\n\n{\"instruction\": \"do\", \"input\": \"\"}\n";
    expect_bad_input("f.jsonl", mf, strlen(mf), &o, "line 3: missing field 'output'");
    const char *nf = "{\"txt\": \"a\"}\n";
    expect_bad_input("n.jsonl", nf, strlen(nf), &o,
                     "line 1: missing field: a record needs 'messages', 'instruction'+'output', 'prompt'+'completion' or 'text'");
    const char *ty = "[{\"text\": \"a\"},\n {\"text\": 5}]";
    expect_bad_input("y.json", ty, strlen(ty), &o, "line 2: field 'text' is not a string");
    const char *ms = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\"}]}\n";
    expect_bad_input("c.jsonl", ms, strlen(ms), &o, "line 1: missing field 'content' in messages[1]");
    const char *rl = "{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}\n";
    expect_bad_input("r.jsonl", rl, strlen(rl), &o, "line 1: messages[0]: unknown role 'robot' (system, user, assistant)");
    /* a JSON array: the malformed record's own line, deep inside */
    const char *arr = "[\n {\"text\": \"a\"},\n {\"text\": \"b\",\n  \"x\": [1, 2,, 3]},\n {\"text\": \"c\"}\n]\n";
    expect_bad_input("a.json", arr, strlen(arr), &o, "line 4: malformed JSON (column 14)");
    const char *unc = "[\n {\"text\": \"a\"},\n {\"text\": \"b\"}\n";
    expect_bad_input("b.json", unc, strlen(unc), &o, "line 4: malformed JSON: the array is not closed");
    const char *tc = "[{\"text\": \"a\"},\n]";
    expect_bad_input("d.json", tc, strlen(tc), &o, "line 2: malformed JSON: ',' before ']'");
    const char *ar = "[1]";
    expect_bad_input("h.json", ar, strlen(ar), &o, "line 1: record is not a JSON object");
    const char *esc = "{\"text\": \"\\ud800\"}\n";
    expect_bad_input("i.jsonl", esc, strlen(esc), &o, "line 1: malformed JSON (column 11)");
    expect_bad_input("j.json", "[]", 2, &o, "no records");
    expect_bad_input("hd.tsv", "sentence\tlabel\n", 15, &o, "no records"); /* a header only */
    const char *tsv = "text\tlabel\nfine\tpos\nbad\tmeh\n";
    o.labels = "neg,pos";
    expect_bad_input("l.tsv", tsv, strlen(tsv), &o, "line 3: unknown label 'meh' (labels: neg,pos)");
    o.labels = NULL;
    expect_bad_input("k.tsv", "a\t1\nno tab here\n", 16, &o, "line 2: no TAB: expected text<TAB>label");
    /* an existing output is left untouched by a failed run */
    const char *out = tpath("bad_out.h5");
    write_input("bad_out.h5", "keep", 4);
    et_encoder enc = byte_enc();
    et_ingest_summary s;
    et_err e = {0};
    assert_int_equal(et_ingest_file(&enc, tpath("k.tsv"), out, &o, &s, &e), ET_EINPUT);
    FILE *f = fopen(out, "rb");
    char buf[8] = {0};
    assert_int_equal(fread(buf, 1, 8, f), 4);
    fclose(f);
    assert_string_equal(buf, "keep");
    unlink(out);
    /* missing input */
    assert_int_equal(et_ingest_file(&enc, tpath("none.txt"), out, &o, &s, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "none.txt"));
}

/* ---------------------------------------------------- tokens, masks, file */

typedef struct readback {
    et_ds *ds;
    int32_t *tok;
    uint8_t *mask;
} readback;

static void read_all(const char *path, readback *r) {
    et_err e = {0};
    if (et_ds_open(&r->ds, path, &e)) fail_msg("%s", e.msg);
    int64_t n = r->ds->n_tokens;
    r->tok = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    r->mask = malloc((size_t)(n ? n : 1));
    assert_int_equal(et_ds_read_tokens(r->ds, 0, n, r->tok, &e), 0);
    assert_int_equal(et_ds_read_mask(r->ds, 0, n, r->mask, &e), 0);
}

static void free_rb(readback *r) {
    et_ds_close(r->ds);
    free(r->tok);
    free(r->mask);
}

/* Alpaca: BOS and prompt masked, output and EOS trained; offsets from lengths. */
static void test_alpaca_masks(void **state) {
    (void)state;
    const char *in = write_input("al.json", ALPACA_JSON, strlen(ALPACA_JSON));
    const char *out = tpath("al.h5");
    et_encoder enc = byte_enc();
    et_ingest_opts o = et_ingest_defaults();
    et_ingest_summary s;
    et_err e = {0};
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), 0);
    readback r;
    read_all(out, &r);
    const char *prompts[] = {P0, P1, P2}, *outputs[] = {"5", "hello", "All of it."};
    int64_t off = 0, loss = 0;
    assert_int_equal(r.ds->n_docs, 3);
    assert_true(r.ds->has_mask);
    for (int d = 0; d < 3; d++) {
        char full[1024];
        int32_t want[1024];
        snprintf(full, sizeof full, "%s%s", prompts[d], outputs[d]);
        size_t n = expect_tokens(full, want);
        size_t np = 1 + strlen(prompts[d]); /* BOS + prompt bytes */
        assert_int_equal(r.ds->doc_offsets[d], off);
        assert_int_equal(r.ds->doc_offsets[d + 1], off + (int64_t)n);
        assert_memory_equal(r.tok + off, want, n * sizeof(int32_t));
        for (size_t i = 0; i < n; i++) assert_int_equal(r.mask[off + i], i >= np);
        loss += (int64_t)(n - np);
        off += (int64_t)n;
    }
    assert_int_equal(s.records, 3);
    assert_int_equal(s.train.docs, 3);
    assert_int_equal(s.valid.docs, 0);
    assert_int_equal(s.train.tokens, off);
    assert_int_equal(s.train.loss_tokens, loss);
    assert_int_equal(s.format, ET_FMT_JSON);
    assert_string_equal(r.ds->tokenizer_sha256, enc.sha256);
    assert_string_equal(r.ds->source, in);
    assert_string_equal(r.ds->format, "json");
    assert_int_equal(r.ds->n_vocab, 259);
    assert_int_equal(r.ds->eos_id, 2);
    free_rb(&r);

    /* --no-mask-prompt: no /loss_mask at all */
    o.mask_prompt = 0;
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), 0);
    read_all(out, &r);
    assert_false(r.ds->has_mask);
    assert_int_equal(s.train.loss_tokens, s.train.tokens);
    free_rb(&r);
}

/* A tokenizer that merges across the prompt/response boundary: the shared
 * token counts as response (the common prefix of encode(prompt) and
 * encode(prompt+response) is what is masked). */
static void test_mask_boundary_merge(void **state) {
    (void)state;
    et_encoder enc = byte_enc();
    enc.ctx = (void *)1;
    enc.n_vocab = 260;
    const char *jl = "{\"prompt\": \"xa\", \"completion\": \"by\"}\n{\"prompt\": \"ab\", \"completion\": \"c\"}\n";
    const char *in = write_input("mg.jsonl", jl, strlen(jl));
    const char *out = tpath("mg.h5");
    et_ingest_opts o = et_ingest_defaults();
    et_ingest_summary s;
    et_err e = {0};
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), 0);
    readback r;
    read_all(out, &r);
    /* doc 0: "xaby" -> BOS x ab y EOS; prefix "xa" -> BOS x a: common prefix 2 */
    int32_t t0[] = {1, 'x' + 3, 259, 'y' + 3, 2}, t1[] = {1, 259, 'c' + 3, 2};
    uint8_t m0[] = {0, 0, 1, 1, 1}, m1[] = {0, 0, 1, 1};
    assert_int_equal(r.ds->n_tokens, 9);
    assert_memory_equal(r.tok, t0, sizeof t0);
    assert_memory_equal(r.mask, m0, sizeof m0);
    assert_memory_equal(r.tok + 5, t1, sizeof t1);
    assert_memory_equal(r.mask + 5, m1, sizeof m1);
    free_rb(&r);
}

/* Many one-line documents "doc N": the split is deterministic for a seed,
 * disjoint, covers everything, and has round(D * fraction) documents. */
static void test_split(void **state) {
    (void)state;
    enum { D = 200 };
    char *txt = malloc(D * 16);
    size_t len = 0;
    for (int i = 0; i < D; i++) len += (size_t)sprintf(txt + len, "doc %d\n", i);
    const char *in = write_input("sp.txt", txt, len);
    free(txt);
    et_encoder enc = byte_enc();
    et_ingest_opts o = et_ingest_defaults();
    o.separator = "line";
    o.valid_fraction = 0.1;
    o.seed = 7;
    et_ingest_summary s;
    et_err e = {0};
    int valid_of[3][D];
    const char *outs[3] = {tpath("sp1.h5"), tpath("sp2.h5"), tpath("sp3.h5")};
    uint64_t seeds[3] = {7, 7, 8};
    for (int run = 0; run < 3; run++) {
        o.seed = seeds[run];
        assert_int_equal(et_ingest_file(&enc, in, outs[run], &o, &s, &e), 0);
        assert_int_equal(s.valid.docs, 20);
        assert_int_equal(s.train.docs, 180);
        readback r;
        read_all(outs[run], &r);
        assert_int_equal(r.ds->n_docs, D);
        assert_int_equal(r.ds->n_train_docs, 180);
        int seen[D] = {0};
        for (int64_t d = 0; d < D; d++) {
            /* decode "doc N" from the byte tokens */
            char buf[32] = {0};
            int64_t a = r.ds->doc_offsets[d] + 1, b = r.ds->doc_offsets[d + 1] - 1;
            assert_true(b - a < 31);
            for (int64_t i = a; i < b; i++) buf[i - a] = (char)(r.tok[i] - 3);
            int k = -1;
            assert_int_equal(sscanf(buf, "doc %d", &k), 1);
            assert_true(k >= 0 && k < D);
            seen[k]++;
            valid_of[run][k] = d >= 180;
            /* each split keeps the input order */
            static int prev[2];
            int sp = d >= 180;
            if (d == 0 || d == 180) prev[sp] = -1;
            assert_true(k > prev[sp]);
            prev[sp] = k;
        }
        for (int k = 0; k < D; k++) assert_int_equal(seen[k], 1);
        free_rb(&r);
    }
    assert_memory_equal(valid_of[0], valid_of[1], sizeof valid_of[0]);
    assert_memory_not_equal(valid_of[0], valid_of[2], sizeof valid_of[0]);
    /* the assignment function itself */
    uint8_t v[10];
    assert_int_equal(et_split_assign(10, 0.0, 1, v), 0);
    assert_int_equal(et_split_assign(10, 0.01, 1, v), 1);
    assert_int_equal(et_split_assign(10, 0.99, 1, v), 9);
    assert_int_equal(et_split_assign(1, 0.5, 1, v), 0);
    assert_int_equal(et_split_assign(10, 0.25, 1, v), 3); /* 2.5 rounds up */
}

/* Packing: rows of T+1 = the split's concatenated documents, last row padded
 * with EOS and mask 0; truncation cuts documents and counts them. */
static void test_pack_and_truncate(void **state) {
    (void)state;
    const char *txt = "abcdefg\n\nhi\n\njklmnopqrstu\n";
    const char *in = write_input("pk.txt", txt, strlen(txt));
    const char *out = tpath("pk.h5");
    et_encoder enc = byte_enc();
    et_ingest_opts o = et_ingest_defaults();
    o.pack = 1;
    o.seq_len = 4;
    et_ingest_summary s;
    et_err e = {0};
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), 0);
    int32_t stream[64];
    size_t n = expect_tokens("abcdefg", stream);
    n += expect_tokens("hi", stream + n);
    n += expect_tokens("jklmnopqrstu", stream + n); /* 9 + 4 + 14 = 27 */
    assert_int_equal(n, 27);
    readback r;
    read_all(out, &r);
    assert_int_equal(r.ds->packed_len, 5);
    assert_int_equal(r.ds->n_docs, 6);
    assert_int_equal(r.ds->n_tokens, 30);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(r.tok[i], i < 27 ? stream[i] : 2);
        assert_int_equal(r.mask[i], i < 27);
    }
    assert_int_equal(s.train.rows, 6);
    assert_int_equal(s.train.docs, 3);
    assert_int_equal(s.train.tokens, 27);
    assert_int_equal(s.train.pad_tokens, 3);
    free_rb(&r);

    /* truncation to 6 tokens: the first and third documents are cut */
    o = et_ingest_defaults();
    o.max_len = 6;
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), 0);
    read_all(out, &r);
    int64_t want_off[] = {0, 6, 10, 16};
    assert_memory_equal(r.ds->doc_offsets, want_off, sizeof want_off);
    assert_memory_equal(r.tok, stream, 6 * sizeof(int32_t));
    assert_memory_equal(r.tok + 6, stream + 9, 4 * sizeof(int32_t));
    assert_memory_equal(r.tok + 10, stream + 13, 6 * sizeof(int32_t));
    assert_int_equal(s.train.truncated_docs, 2);
    assert_false(r.ds->has_mask);
    free_rb(&r);

    /* classification data cannot be packed; bad fractions are refused */
    const char *tsv = "a\tx\nb\ty\n";
    in = write_input("pk.tsv", tsv, strlen(tsv));
    o = et_ingest_defaults();
    o.pack = 1;
    o.seq_len = 4;
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), ET_EUSAGE);
    o.pack = 0;
    o.valid_fraction = 1.0;
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), ET_EUSAGE);
}

static void test_tsv_labels_in_file(void **state) {
    (void)state;
    const char *tsv = "sentence\tlabel\ngood\tpos\nbad\tneg\nfine\tpos\n";
    const char *in = write_input("lb.tsv", tsv, strlen(tsv));
    const char *out = tpath("lb.h5");
    et_encoder enc = byte_enc();
    et_ingest_opts o = et_ingest_defaults();
    o.labels = "neg,pos";
    et_ingest_summary s;
    et_err e = {0};
    assert_int_equal(et_ingest_file(&enc, in, out, &o, &s, &e), 0);
    readback r;
    read_all(out, &r);
    assert_int_equal(r.ds->n_labels, 2);
    assert_string_equal(r.ds->label_names[0], "neg");
    assert_string_equal(r.ds->label_names[1], "pos");
    int32_t lab[3], want[] = {1, 0, 1};
    assert_int_equal(et_ds_read_labels(r.ds, 0, 3, lab, &e), 0);
    assert_memory_equal(lab, want, sizeof want);
    int32_t t[16];
    size_t n = expect_tokens("good", t);
    assert_memory_equal(r.tok, t, n * sizeof(int32_t));
    assert_int_equal(s.n_labels, 2);
    free_rb(&r);
}

static int remove_tmpdir(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_separators),
        cmocka_unit_test(test_json_alpaca_array_and_jsonl),
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_alpaca_masks),
        cmocka_unit_test(test_mask_boundary_merge),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_pack_and_truncate),
        cmocka_unit_test(test_tsv_labels_in_file),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmpdir);
}
