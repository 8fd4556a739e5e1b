/* tests/test_tokenizer.c — SPM and GPT-2 BPE tokenizers against llama.cpp.
 *  - every string of ../shared/tokenizers/llamacpp-vocab/X.gguf.inp encodes
 *    to exactly the ids in X.gguf.out (llama.cpp tests/test-tokenizer-0:
 *    add_special = false, parse_special = false), for llama-spm, phi-3,
 *    gpt-2, deepseek-llm and stories260K (GGUF and llama2.c tok512.bin);
 *  - decode(encode(s)) == s on those strings (exceptions are listed and
 *    explained where they occur);
 *  - tok512.bin and stories260K.gguf have the same fingerprint;
 *  - BOS/EOS/special-token handling, invalid UTF-8, hostile tokenizer.bin,
 *    GGUF write + reload. */
#include "testutil.h"

#include "../datasets/tokenizer.h"

/* ------------------------------------------------------------ helpers */

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

/* Test strings and expected ids, parsed as llama.cpp test-tokenizer-0
 * does: strings separated by "\n__ggml_vocab_test__\n" (the text after the
 * last separator is empty and is not a test), ids one line per string. */
typedef struct vectors {
    int n;
    char **str;
    size_t *len;
    int32_t **ids;
    size_t *n_ids;
    char *inp, *outp;
} vectors;

static void vectors_free(vectors *v) {
    for (int i = 0; i < v->n; i++) free(v->ids[i]);
    free(v->str); free(v->len); free(v->ids); free(v->n_ids); free(v->inp); free(v->outp);
}

static void load_vectors(vectors *v, const char *inp_path, const char *out_path) {
    memset(v, 0, sizeof *v);
    size_t ni, no;
    v->inp = read_file(inp_path, &ni);
    v->outp = read_file(out_path, &no);
    assert_non_null(v->inp);
    assert_non_null(v->outp);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    int cap = 64;
    v->str = malloc(cap * sizeof *v->str);
    v->len = malloc(cap * sizeof *v->len);
    for (size_t pos = 0; pos < ni;) {
        char *next = memmem(v->inp + pos, ni - pos, sep, sl);
        size_t end = next ? (size_t)(next - v->inp) : ni;
        if (v->n == cap) {
            cap *= 2;
            v->str = realloc(v->str, cap * sizeof *v->str);
            v->len = realloc(v->len, cap * sizeof *v->len);
        }
        v->str[v->n] = v->inp + pos;
        v->len[v->n++] = end - pos;
        pos = end + sl;
    }
    v->ids = calloc(v->n, sizeof *v->ids);
    v->n_ids = calloc(v->n, sizeof *v->n_ids);
    char *line = v->outp;
    for (int i = 0; i < v->n; i++) {
        assert_true(line < v->outp + no);
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        v->ids[i] = malloc((strlen(line) / 2 + 1) * sizeof(int32_t));
        for (char *p = line, *q;; p = q) {
            long x = strtol(p, &q, 10);
            if (q == p) break;
            v->ids[i][v->n_ids[i]++] = (int32_t)x;
        }
        line = nl + 1;
    }
    assert_true(line == v->outp + no); /* as many lines as strings */
}

static et_tokenizer *load_gguf_tok(const char *path) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    et_tokenizer *t = NULL;
    if (et_tok_from_gguf(&t, &g, &e)) fail_msg("%s", e.msg);
    gguf_close(&g); /* the tokenizer keeps its own copy */
    return t;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Encode every vector and compare; then check decode(encode(s)) == s.
 * Returns the number of strings that do not round-trip. */
static int check_vectors(const et_tokenizer *t, const vectors *v, const char *name) {
    int bad = 0, no_rt = 0;
    for (int i = 0; i < v->n; i++) {
        int32_t *ids;
        size_t n;
        et_err e = {0};
        if (et_tok_encode(t, v->str[i], v->len[i], 0, &ids, &n, &e)) fail_msg("%s: %s", name, e.msg);
        if (n != v->n_ids[i] || memcmp(ids, v->ids[i], n * sizeof *ids) != 0) {
            fprintf(stderr, "%s: string %d '%.*s' differs\n", name, i, (int)v->len[i], v->str[i]);
            print_ids("want", v->ids[i], v->n_ids[i]);
            print_ids("got ", ids, n);
            bad++;
        }
        char *text;
        size_t len;
        if (et_tok_decode(t, ids, n, 0, &text, &len, &e)) fail_msg("%s: %s", name, e.msg);
        if (len != v->len[i] || memcmp(text, v->str[i], len) != 0) {
            fprintf(stderr, "%s: string %d does not round-trip: '%.*s' -> '%s'\n", name, i, (int)v->len[i],
                    v->str[i], text);
            no_rt++;
        }
        free(text);
        free(ids);
    }
    if (bad) fail_msg("%s: %d of %d strings differ from llama.cpp", name, bad, v->n);
    return no_rt;
}

static void run_vocab(const char *base, int expect_no_roundtrip) {
    char rel[256], inp[256], outp[256];
    snprintf(rel, sizeof rel, "tokenizers/llamacpp-vocab/%s.gguf", base);
    SHARED_OR_SKIP(path, rel);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(outp, sizeof outp, "%s.out", path);
    vectors v;
    load_vectors(&v, inp, outp);
    assert_int_equal(v.n, 46); /* the llama.cpp vocab test strings */
    et_tokenizer *t = load_gguf_tok(path);
    int no_rt = check_vectors(t, &v, base);
    assert_int_equal(no_rt, expect_no_roundtrip);
    et_tok_free(t);
    vectors_free(&v);
}

/* -------------------------------------------------------- llama.cpp vectors */

static void test_llama_spm(void **state) { (void)state; run_vocab("ggml-vocab-llama-spm", 0); }
static void test_phi3(void **state) { (void)state; run_vocab("ggml-vocab-phi-3", 0); }
static void test_gpt2(void **state) { (void)state; run_vocab("ggml-vocab-gpt-2", 0); }
/* DeepSeek: "ø", "ö", ... are USER_DEFINED tokens (matched before BPE and
 * decoded verbatim), so every string round-trips too. */
static void test_deepseek_llm(void **state) { (void)state; run_vocab("ggml-vocab-deepseek-llm", 0); }

static void test_stories260k_gguf(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(inp, "tokenizers/llamacpp-vocab/stories260K.gguf.inp");
    SHARED_OR_SKIP(outp, "tokenizers/llamacpp-vocab/stories260K.gguf.out");
    vectors v;
    load_vectors(&v, inp, outp);
    assert_int_equal(v.n, 48); /* the llama.cpp strings but the empty one, + 3 stories sentences */
    et_tokenizer *t = load_gguf_tok(gg);
    assert_int_equal(et_tok_model(t), ET_TOK_SPM);
    assert_int_equal(et_tok_n_vocab(t), 512);
    assert_int_equal(et_tok_bos(t), 1);
    assert_int_equal(et_tok_eos(t), 2);
    assert_int_equal(et_tok_pad(t), -1); /* the file says 0xFFFFFFFF: none */
    assert_int_equal(check_vectors(t, &v, "stories260K.gguf"), 0);
    et_tok_free(t);
    vectors_free(&v);
}

/* llama2.c tok512.bin: same ids as the GGUF vocabulary on the same strings,
 * and the same fingerprint. */
static void test_stories260k_llama2c(void **state) {
    (void)state;
    SHARED_OR_SKIP(bin, "models/stories260K/tok512.bin");
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(inp, "tokenizers/llamacpp-vocab/stories260K.gguf.inp");
    SHARED_OR_SKIP(outp, "tokenizers/llamacpp-vocab/stories260K.gguf.out");
    vectors v;
    load_vectors(&v, inp, outp);
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_tok_from_llama2c(&t, bin, 512, &e)) fail_msg("%s", e.msg);
    assert_int_equal(check_vectors(t, &v, "tok512.bin"), 0);
    et_tokenizer *g = load_gguf_tok(gg);
    char h1[65], h2[65];
    et_tok_sha256(t, h1);
    et_tok_sha256(g, h2);
    assert_string_equal(h1, h2);
    size_t n;
    assert_memory_equal(et_tok_piece(t, 1, &n), "<s>", 3);
    assert_int_equal(et_tok_type(t, 1), ET_TOKT_CONTROL);
    et_tok_free(t);
    et_tok_free(g);
    vectors_free(&v);
}

/* --------------------------------------------------------------- behaviour */

static void expect_ids(const et_tokenizer *t, const char *s, int flags, const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    et_err e = {0};
    if (et_tok_encode(t, s, strlen(s), flags, &ids, &n, &e)) fail_msg("%s", e.msg);
    if (n != n_want || (n && memcmp(ids, want, n * sizeof *ids))) {
        print_ids("want", want, n_want);
        print_ids("got ", ids, n);
        fail_msg("'%s' flags %d", s, flags);
    }
    free(ids);
}

static void test_bos_eos_special(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    et_tokenizer *t = load_gguf_tok(gg);
    int32_t *plain;
    size_t np;
    et_err e = {0};
    assert_int_equal(et_tok_encode(t, "Once upon a time", 16, 0, &plain, &np, &e), 0);
    assert_true(np > 2);
    int32_t want[64];
    want[0] = 1;
    memcpy(want + 1, plain, np * sizeof *plain);
    expect_ids(t, "Once upon a time", ET_TOK_ADD_BOS, want, np + 1);
    expect_ids(t, "Once upon a time", ET_TOK_DEFAULT_BOS, want, np + 1); /* SPM adds BOS by default */
    want[np + 1] = 2;
    expect_ids(t, "Once upon a time", ET_TOK_ADD_BOS | ET_TOK_ADD_EOS, want, np + 2);
    free(plain);
    /* empty text: nothing, or only BOS (as sentencepiece) */
    expect_ids(t, "", 0, NULL, 0);
    expect_ids(t, "", ET_TOK_ADD_BOS, (int32_t[]){1}, 1);
    /* "<s>" is a CONTROL token: only matched with PARSE_SPECIAL; the text
     * after a special token gets the space prefix again */
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(et_tok_encode(t, "<s>Once", 7, ET_TOK_PARSE_SPECIAL, &a, &na, &e), 0);
    assert_int_equal(et_tok_encode(t, "Once", 4, 0, &b, &nb, &e), 0);
    assert_int_equal(na, nb + 1);
    assert_int_equal(a[0], 1);
    assert_memory_equal(a + 1, b, nb * sizeof *b);
    char *text;
    size_t len;
    assert_int_equal(et_tok_decode(t, a, na, 0, &text, &len, &e), 0);
    assert_string_equal(text, "Once");
    free(text);
    assert_int_equal(et_tok_decode(t, a, na, ET_TOK_PARSE_SPECIAL, &text, &len, &e), 0);
    assert_string_equal(text, "<s>Once");
    free(text);
    free(a);
    free(b);
    assert_int_equal(et_tok_encode(t, "<s>", 3, 0, &a, &na, &e), 0);
    assert_true(na > 1); /* plain text: not the BOS id alone */
    free(a);
    /* decode rejects out-of-range ids */
    int32_t badid[2] = {5, 512};
    assert_int_equal(et_tok_decode(t, badid, 2, 0, &text, &len, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "512"));
    et_tok_free(t);
}

static void test_gpt2_special(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    et_tokenizer *t = load_gguf_tok(gg);
    assert_int_equal(et_tok_model(t), ET_TOK_BPE);
    assert_int_equal(et_tok_add_bos(t), 0);
    assert_string_equal(et_tok_pre(t), "gpt-2");
    /* " Hello world" -> 18435 995 (from the llama.cpp vectors) */
    expect_ids(t, "Hello<|endoftext|> world", ET_TOK_PARSE_SPECIAL, (int32_t[]){15496, 50256, 995}, 3);
    expect_ids(t, " world", ET_TOK_DEFAULT_BOS, (int32_t[]){995}, 1); /* no add_bos for gpt-2 */
    int32_t *ids;
    size_t n;
    et_err e = {0};
    assert_int_equal(et_tok_encode(t, "<|endoftext|>", 13, 0, &ids, &n, &e), 0);
    assert_true(n > 1);
    char *text;
    size_t len;
    assert_int_equal(et_tok_decode(t, ids, n, 0, &text, &len, &e), 0);
    assert_string_equal(text, "<|endoftext|>");
    free(text);
    free(ids);
    et_tok_free(t);
}

static void test_invalid_utf8(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "models/stories260K/stories260K.gguf");
    et_tokenizer *t = load_gguf_tok(gg);
    static const struct { const char *s; size_t len, off; } cases[] = {
        {"abc\xff", 4, 3},            /* invalid byte */
        {"ab\xc3", 3, 2},             /* truncated 2-byte */
        {"a\xe2\x82 b", 5, 1},        /* bad continuation */
        {"\xc0\xaf", 2, 0},           /* overlong '/' */
        {"xy\xed\xa0\x80", 5, 2},     /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, 0},   /* > U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *ids = (int32_t *)1;
        size_t n = 7;
        et_err e = {0};
        assert_int_equal(et_tok_encode(t, cases[i].s, cases[i].len, 0, &ids, &n, &e), ET_EINPUT);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu", cases[i].off);
        if (!strstr(e.msg, want)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, want);
        assert_null(ids);
        assert_int_equal(n, 0);
    }
    et_tok_free(t);
}

static void test_bad_llama2c(void **state) {
    (void)state;
    SHARED_OR_SKIP(bin, "models/stories260K/tok512.bin");
    size_t n;
    char *d = read_file(bin, &n);
    assert_non_null(d);
    et_tokenizer *t = NULL;
    et_err e = {0};
    /* truncated in the middle of the table */
    assert_int_equal(et_tok_from_llama2c_mem(&t, d, n / 2, 512, "cut.bin", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "cut.bin"));
    assert_null(t);
    /* more tokens than the file holds */
    assert_int_equal(et_tok_from_llama2c_mem(&t, d, n, 513, "tok512.bin", &e), ET_EINPUT);
    /* a huge length field */
    char *c = malloc(n);
    memcpy(c, d, n);
    memcpy(c + 8, "\xff\xff\xff\x7f", 4); /* token 0's length */
    assert_int_equal(et_tok_from_llama2c_mem(&t, c, n, 512, "big.bin", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "big.bin"));
    /* duplicate pieces are refused (llama.cpp refuses them too) */
    memcpy(c, d, n);
    assert_int_equal(et_tok_from_llama2c_mem(&t, c, n, 512, "ok.bin", &e), 0);
    et_tok_free(t);
    assert_int_equal(et_tok_from_llama2c(&t, "/nonexistent/tok.bin", 512, &e), ET_EINPUT);
    free(c);
    free(d);
}

/* Write the tokenizer into a GGUF, read it back: same fingerprint, ids. */
static void write_reload(const char *path) {
    et_tokenizer *t = load_gguf_tok(path);
    gguf_writer *w = gguf_writer_new();
    et_err e = {0};
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), 0);
    if (et_tok_write_gguf(t, w, &e)) fail_msg("%s", e.msg);
    char out[512];
    snprintf(out, sizeof out, "%s/tok.gguf", test_tmpdir());
    if (gguf_writer_write(w, out, &e)) fail_msg("%s", e.msg);
    gguf_writer_free(w);
    et_tokenizer *r = load_gguf_tok(out);
    char h1[65], h2[65];
    et_tok_sha256(t, h1);
    et_tok_sha256(r, h2);
    assert_string_equal(h1, h2);
    static const char s[] = " Hello, y'all! 3333 caf\xc3\xa9 \xf0\x9f\xa6\x99";
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(et_tok_encode(t, s, sizeof s - 1, 0, &a, &na, &e), 0);
    assert_int_equal(et_tok_encode(r, s, sizeof s - 1, 0, &b, &nb, &e), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a);
    free(b);
    et_tok_free(t);
    et_tok_free(r);
}

static void test_write_gguf(void **state) {
    (void)state;
    SHARED_OR_SKIP(a, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(b, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    write_reload(a);
    write_reload(b);
}

/* Different vocabularies have different fingerprints. */
static void test_sha_differs(void **state) {
    (void)state;
    SHARED_OR_SKIP(a, "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
    SHARED_OR_SKIP(b, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
    et_tokenizer *x = load_gguf_tok(a), *y = load_gguf_tok(b);
    char h1[65], h2[65];
    et_tok_sha256(x, h1);
    et_tok_sha256(y, h2);
    assert_int_equal(strlen(h1), 64);
    assert_string_not_equal(h1, h2);
    et_tok_free(x);
    et_tok_free(y);
}


/* The fast path (SPM chunks, word cache) gives the ids of the reference
 * path (one SPM merge queue over the whole text, no cache) on real text:
 * TinyStories, Shakespeare and all the llama.cpp test strings glued
 * together (many scripts, emoji, whitespace runs). */
static void same_as_reference(const et_tokenizer *t, const char *text, size_t len, const char *what) {
    int32_t *a, *b;
    size_t na, nb;
    et_err e = {0};
    if (et_tok_encode(t, text, len, 0, &a, &na, &e)) fail_msg("%s", e.msg);
    if (et_tok_encode(t, text, len, ET_TOK_REFERENCE, &b, &nb, &e)) fail_msg("%s", e.msg);
    if (na != nb || memcmp(a, b, na * sizeof *a)) {
        size_t i = 0;
        while (i < na && i < nb && a[i] == b[i]) i++;
        fail_msg("%s: fast and reference paths differ at token %zu (%zu vs %zu tokens)", what, i, na, nb);
    }
    free(a);
    free(b);
}

static void test_fast_path_exact(void **state) {
    (void)state;
    SHARED_OR_SKIP(stories, "data/tinystories_sample.txt");
    SHARED_OR_SKIP(shakes, "data/tiny_shakespeare.txt");
    SHARED_OR_SKIP(inp, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp");
    static const char *const vocabs[] = {
        "models/stories260K/stories260K.gguf", "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf",
        "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf", "tokenizers/llamacpp-vocab/ggml-vocab-deepseek-llm.gguf",
    };
    size_t cut = getenv("ET_SANITIZED") ? 24 * 1024 : 256 * 1024; /* bytes of each text */
    size_t n1, n2, n3;
    char *t1 = read_file(stories, &n1), *t2 = read_file(shakes, &n2), *t3 = read_file(inp, &n3);
    assert_true(t1 && t2 && t3);
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        const char *p = shared_path(vocabs[v]);
        if (!p) continue;
        et_tokenizer *t = load_gguf_tok(p);
        same_as_reference(t, t1, n1 < cut ? n1 : cut, "tinystories");
        same_as_reference(t, t2, n2 < cut ? n2 : cut, "shakespeare");
        same_as_reference(t, t3, n3, "llama.cpp test strings");
        et_tok_free(t);
    }
    free(t1);
    free(t2);
    free(t3);
}


/* ---------------------------------------------------- Llama 3 (tiktoken) */

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static size_t b64decode(const char *s, size_t n, uint8_t *out) {
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        acc = acc << 6 | (uint32_t)b64val(s[i]);
        bits += 6;
        if (bits >= 8) { bits -= 8; out[k++] = (uint8_t)(acc >> bits); }
    }
    return k;
}

/* GPT-2 byte-level text of bytes b[0..n) into out; returns its length. */
static size_t byte_level(const uint8_t *b, size_t n, char *out, size_t *offs) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (offs) offs[i] = k;
        int c = b[i], printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        int cp = c;
        if (!printable) { /* 256 + index among the non-printable bytes */
            int idx = 0;
            for (int x = 0; x < c; x++)
                idx += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF));
            cp = 256 + idx;
        }
        if (cp < 0x80) out[k++] = (char)cp;
        else { out[k++] = (char)(0xC0 | (cp >> 6)); out[k++] = (char)(0x80 | (cp & 0x3F)); }
    }
    if (offs) offs[n] = k;
    return k;
}

/* The Llama 3 tiktoken ranks become a GPT-2 style vocabulary plus merges
 * (each token of rank r split by running tiktoken's merging with ranks < r,
 * as the HF converters do); with the llama3 pre-tokenizer ("llama-bpe":
 * ignore_merges) edgetune must give the ids of tiktoken's own algorithm
 * (scripts/ref_tiktoken.py -> tests/data/llama3.{inp,out}). */
static void test_llama3_tiktoken(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "tokenizers/llama3/tokenizer.model");
    size_t size;
    char *txt = read_file(model, &size);
    assert_non_null(txt);
    enum { N = 128000 };
    char **pieces = calloc(N, sizeof *pieces);
    size_t *lens = calloc(N, sizeof *lens);
    uint8_t **raw = calloc(N, sizeof *raw);
    size_t *rawn = calloc(N, sizeof *rawn);
    int n = 0;
    for (char *line = txt; *line && n < N;) {
        char *sp = strchr(line, ' '), *nl = strchr(line, '\n');
        assert_true(sp && nl && sp < nl);
        assert_int_equal(atoi(sp + 1), n); /* ranks are the line numbers */
        raw[n] = malloc((size_t)(sp - line));
        rawn[n] = b64decode(line, (size_t)(sp - line), raw[n]);
        pieces[n] = malloc(2 * rawn[n] + 1);
        lens[n] = byte_level(raw[n], rawn[n], pieces[n], NULL);
        n++;
        line = nl + 1;
    }
    assert_int_equal(n, N);
    et_tok_spec s = {.model = ET_TOK_BPE, .pre = "llama-bpe", .n_vocab = N, .pieces = (const char *const *)pieces,
                     .piece_lens = lens, .bos = -1, .eos = -1, .unk = -1, .pad = -1, .add_bos = 0, .add_eos = 0,
                     .add_space_prefix = 0};
    et_tokenizer *lookup = NULL, *t = NULL;
    et_err e = {0};
    if (et_tok_build(&lookup, &s, "llama3 ranks", &e)) fail_msg("%s", e.msg);
    /* merges as transformers' TikTokenConverter writes them (Llama 3's
     * tokenizer.json): for each token in rank order, every split into two
     * tokens, ordered by the ranks of the two halves */
    size_t cap = 4 * N, nm = 0;
    char **merges = calloc(cap, sizeof *merges);
    size_t *mlens = calloc(cap, sizeof *mlens);
    char buf[1024];
    size_t offs[260];
    int split[256][3];
    for (int r = 0; r < N; r++) {
        if (rawn[r] < 2) continue;
        assert_true(rawn[r] < 256);
        byte_level(raw[r], rawn[r], buf, offs);
        int ns = 0;
        for (size_t k = 1; k < rawn[r]; k++) {
            int a = et_tok_find(lookup, buf, offs[k]), b = et_tok_find(lookup, buf + offs[k], offs[rawn[r]] - offs[k]);
            if (a >= 0 && b >= 0) { split[ns][0] = a; split[ns][1] = b; split[ns++][2] = (int)k; }
        }
        for (int x = 1; x < ns; x++) /* insertion sort by (rank left, rank right) */
            for (int y = x; y > 0 && (split[y][0] < split[y - 1][0] ||
                                      (split[y][0] == split[y - 1][0] && split[y][1] < split[y - 1][1])); y--) {
                int tmp[3] = {split[y][0], split[y][1], split[y][2]};
                memcpy(split[y], split[y - 1], sizeof tmp);
                memcpy(split[y - 1], tmp, sizeof tmp);
            }
        for (int x = 0; x < ns; x++) {
            if (nm == cap) {
                cap *= 2;
                merges = realloc(merges, cap * sizeof *merges);
                mlens = realloc(mlens, cap * sizeof *mlens);
            }
            size_t l0 = offs[split[x][2]], l1 = offs[rawn[r]] - l0;
            merges[nm] = malloc(l0 + l1 + 2);
            memcpy(merges[nm], buf, l0);
            merges[nm][l0] = ' ';
            memcpy(merges[nm] + l0 + 1, buf + l0, l1);
            mlens[nm++] = l0 + l1 + 1;
        }
    }
    s.n_merges = nm;
    s.merges = (const char *const *)merges;
    s.merge_lens = mlens;
    if (et_tok_build(&t, &s, "llama3", &e)) fail_msg("%s", e.msg);
    vectors v;
    load_vectors(&v, "tests/data/llama3.inp", "tests/data/llama3.out");
    assert_true(v.n >= 40);
    assert_int_equal(check_vectors(t, &v, "llama3"), 0);
    vectors_free(&v);
    et_tok_free(t);
    et_tok_free(lookup);
    for (int i = 0; i < N; i++) { free(pieces[i]); free(raw[i]); }
    for (size_t i = 0; i < nm; i++) free(merges[i]);
    free(pieces); free(lens); free(raw); free(rawn); free(merges); free(mlens); free(txt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm),
        cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_deepseek_llm),
        cmocka_unit_test(test_stories260k_gguf),
        cmocka_unit_test(test_stories260k_llama2c),
        cmocka_unit_test(test_bos_eos_special),
        cmocka_unit_test(test_gpt2_special),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_bad_llama2c),
        cmocka_unit_test(test_write_gguf),
        cmocka_unit_test(test_sha_differs),
        cmocka_unit_test(test_fast_path_exact),
        cmocka_unit_test(test_llama3_tiktoken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
