/* tests/test_hf_tokenizer.c — Hugging Face tokenizer.json loader.
 *  - a tokenizer.json written from the GPT-2 GGUF vocabulary (both merge
 *    formats) reproduces llama.cpp's gpt-2 vectors and, with a sibling
 *    tokenizer_config.json naming the BOS/EOS, has the GGUF's fingerprint;
 *  - the SmolLM pre-tokenizer (Digits + ByteLevel) splits digits one by one
 *    and otherwise gives the GPT-2 ids;
 *  - llama3/qwen2 Split patterns are recognized, unknown ones refused;
 *  - malformed or unsupported files are refused naming the file;
 *  - SmolLM2's real tokenizer.json (if present in ../shared) loads and
 *    round-trips. */
#include "testutil.h"

#include <sys/stat.h>

#include <cJSON.h>

#include "../datasets/hf_tokenizer.h"

static char *read_file(const char *path, size_t *n) {
    *n = 0;
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

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(s, 1, strlen(s), f), strlen(s));
    fclose(f);
}

static et_tokenizer *load_gguf_tok(const char *path) {
    gguf_file g;
    et_err e = {0};
    if (gguf_open(&g, path, &e)) fail_msg("%s", e.msg);
    et_tokenizer *t = NULL;
    if (et_tok_from_gguf(&t, &g, &e)) fail_msg("%s", e.msg);
    gguf_close(&g);
    return t;
}

/* tokenizer.json text for the vocabulary of t (a GPT-2 style BPE), with
 * the given pre_tokenizer JSON; merges as strings or pairs. */
static char *hf_json_from(const et_tokenizer *t, const char *pre_json, int pair_merges, int ignore_merges) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    int n = et_tok_n_vocab(t);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = et_tok_piece(t, i, &len);
        char *s = strndup(p, len);
        if (et_tok_type(t, i) == ET_TOKT_CONTROL) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", i);
            cJSON_AddStringToObject(a, "content", s);
            cJSON_AddBoolToObject(a, "special", 1);
            cJSON_AddItemToArray(added, a);
        }
        cJSON_AddNumberToObject(vocab, s, i);
        free(s);
    }
    /* merges: read back from a GGUF written by the tokenizer itself */
    gguf_writer *w = gguf_writer_new();
    et_err e = {0};
    assert_int_equal(et_tok_write_gguf(t, w, &e), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/merges.gguf", test_tmpdir());
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    gguf_file g;
    assert_int_equal(gguf_open(&g, path, &e), 0);
    const gguf_kv *kv = &g.kv[gguf_find_key(&g, "tokenizer.ggml.merges")];
    for (uint64_t i = 0; i < kv->n; i++) {
        char *m = strndup(kv->strs[i].ptr, kv->strs[i].len);
        if (pair_merges) {
            char *sp = strchr(m + 1, ' ');
            assert_non_null(sp);
            *sp = 0;
            cJSON *pr = cJSON_CreateArray();
            cJSON_AddItemToArray(pr, cJSON_CreateString(m));
            cJSON_AddItemToArray(pr, cJSON_CreateString(sp + 1));
            cJSON_AddItemToArray(merges, pr);
        } else {
            cJSON_AddItemToArray(merges, cJSON_CreateString(m));
        }
        free(m);
    }
    gguf_close(&g);
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", cJSON_Parse(pre_json));
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    return txt;
}

static const char *const PRE_BYTELEVEL =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
static const char *const PRE_SMOLLM =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]}";
/* as in Meta-Llama-3 tokenizer.json (JSON-escaped) */
static const char *const PRE_LLAMA3 =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}";
/* as in Qwen2 tokenizer.json, with literal CR LF inside the class */
static const char *const PRE_QWEN2 =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\r\\n]*|"
    "\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";

typedef struct vectors { int n; char *str[128]; size_t len[128]; char *buf; } vectors;

static void load_strings(vectors *v, const char *path) {
    size_t n = 0;
    v->buf = read_file(path, &n);
    assert_non_null(v->buf);
    v->n = 0;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (size_t pos = 0; pos < n;) {
        assert_true(v->n < 128);
        char *next = memmem(v->buf + pos, n - pos, sep, sizeof sep - 1);
        size_t end = next ? (size_t)(next - v->buf) : n;
        v->str[v->n] = v->buf + pos;
        v->len[v->n++] = end - pos;
        pos = end + sizeof sep - 1;
    }
}

static void same_ids(const et_tokenizer *a, const et_tokenizer *b, const char *s, size_t len) {
    int32_t *x, *y;
    size_t nx, ny;
    et_err e = {0};
    if (et_tok_encode(a, s, len, 0, &x, &nx, &e)) fail_msg("%s", e.msg);
    if (et_tok_encode(b, s, len, 0, &y, &ny, &e)) fail_msg("%s", e.msg);
    if (nx != ny || memcmp(x, y, nx * sizeof *x)) fail_msg("ids differ for '%.*s'", (int)len, s);
    free(x);
    free(y);
}

/* ------------------------------------------------------------------ tests */

static void gpt2_as_json(int pairs) {
    SHARED_OR_SKIP(gg, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    SHARED_OR_SKIP(inp, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp");
    et_tokenizer *ref = load_gguf_tok(gg);
    char *json = hf_json_from(ref, PRE_BYTELEVEL, pairs, 0);
    char dir[512], path[600], cfg[600];
    snprintf(dir, sizeof dir, "%s/gpt2-%d", test_tmpdir(), pairs);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_file(path, json);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    write_file(cfg, "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"}}");
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_tok_from_hf_json(&t, path, &e)) fail_msg("%s", e.msg);
    assert_string_equal(et_tok_pre(t), "gpt-2");
    assert_int_equal(et_tok_bos(t), 50256);
    assert_int_equal(et_tok_eos(t), 50256);
    vectors v;
    load_strings(&v, inp);
    assert_int_equal(v.n, 46);
    for (int i = 0; i < v.n; i++) same_ids(t, ref, v.str[i], v.len[i]);
    char h1[65], h2[65];
    et_tok_sha256(t, h1);
    et_tok_sha256(ref, h2);
    assert_string_equal(h1, h2);
    /* from memory: no sibling config, so no BOS; EOS found by name */
    et_tokenizer *m = NULL;
    if (et_tok_from_hf_json_mem(&m, json, strlen(json), "mem.json", &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_tok_bos(m), -1);
    assert_int_equal(et_tok_eos(m), 50256);
    et_tok_free(m);
    free(v.buf);
    free(json);
    et_tok_free(t);
    et_tok_free(ref);
}

static void test_gpt2_string_merges(void **state) { (void)state; gpt2_as_json(0); }
static void test_gpt2_pair_merges(void **state) { (void)state; gpt2_as_json(1); }

/* Digits(individual_digits) + ByteLevel: "\p{N}" then the GPT-2 regex.
 * Every digit is its own word, so a digit run encodes as the concatenation
 * of its single digits, and " 12" as " " then 1 then 2; text without digits
 * gives exactly the GPT-2 ids. */
static void test_smollm_pre(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    et_tokenizer *ref = load_gguf_tok(gg);
    char *json = hf_json_from(ref, PRE_SMOLLM, 0, 0);
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_tok_from_hf_json_mem(&t, json, strlen(json), "smollm.json", &e)) fail_msg("%s", e.msg);
    assert_string_equal(et_tok_pre(t), "smollm");
    static const char plain[] = "Hello, y'all! How are you \xf0\x9f\x98\x81 ?  \n\n  done";
    same_ids(t, ref, plain, sizeof plain - 1);
    int32_t *ids, *one;
    size_t n, n1;
    assert_int_equal(et_tok_encode(t, "2024", 4, 0, &ids, &n, &e), 0);
    assert_int_equal(n, 4);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(et_tok_encode(ref, &"2024"[k], 1, 0, &one, &n1, &e), 0);
        assert_int_equal(n1, 1);
        assert_int_equal(ids[k], one[0]);
        free(one);
    }
    free(ids);
    assert_int_equal(et_tok_encode(t, " 12", 3, 0, &ids, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 220); /* " " (llama.cpp gpt-2 vector) */
    free(ids);
    free(json);
    et_tok_free(t);
    et_tok_free(ref);
}

static void test_split_patterns(void **state) {
    (void)state;
    SHARED_OR_SKIP(gg, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    et_tokenizer *ref = load_gguf_tok(gg);
    struct { const char *pre; int ignore; const char *want; } cases[] = {
        {PRE_LLAMA3, 1, "llama-bpe"}, {PRE_LLAMA3, 0, "dbrx"}, {PRE_QWEN2, 0, "qwen2"},
    };
    for (size_t k = 0; k < 3; k++) {
        char *json = hf_json_from(ref, cases[k].pre, 0, cases[k].ignore);
        et_tokenizer *t = NULL;
        et_err e = {0};
        if (et_tok_from_hf_json_mem(&t, json, strlen(json), "split.json", &e)) fail_msg("%s", e.msg);
        assert_string_equal(et_tok_pre(t), cases[k].want);
        et_tok_free(t);
        free(json);
    }
    /* llama3 splits digits in threes, qwen2 one by one: "12345" words */
    char *json = hf_json_from(ref, PRE_QWEN2, 0, 0);
    et_tokenizer *t = NULL;
    et_err e = {0};
    assert_int_equal(et_tok_from_hf_json_mem(&t, json, strlen(json), "q.json", &e), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(t, "12345", 5, 0, &ids, &n, &e), 0);
    assert_int_equal(n, 5);
    free(ids);
    et_tok_free(t);
    free(json);
    /* an unknown regex is refused, naming the file and the pre_tokenizer */
    json = hf_json_from(ref,
                        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},"
                        "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
                        0, 0);
    assert_int_equal(et_tok_from_hf_json_mem(&t, json, strlen(json), "odd.json", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "odd.json"));
    assert_non_null(strstr(e.msg, "pre_tokenizer"));
    assert_non_null(strstr(e.msg, "\\\\w+"));
    assert_null(t);
    free(json);
    et_tok_free(ref);
}

static void expect_refused(const char *json, const char *needle) {
    et_tokenizer *t = NULL;
    et_err e = {0};
    int rc = et_tok_from_hf_json_mem(&t, json, strlen(json), "bad.json", &e);
    if (rc != ET_EINPUT) fail_msg("accepted: %s", json);
    assert_null(t);
    assert_non_null(strstr(e.msg, "bad.json"));
    if (!strstr(e.msg, needle)) fail_msg("'%s' lacks '%s'", e.msg, needle);
}

static void test_malformed(void **state) {
    (void)state;
    expect_refused("", "malformed JSON at line 1");
    expect_refused("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {\"a\": 0,}", "malformed JSON at line 2");
    expect_refused("[1, 2]", "not an object");
    expect_refused("{}", "model");
    expect_refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": true}}",
                   "byte_fallback");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "model.vocab['a']");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "twice");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [3]}}", "merges[0]");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", "pre_tokenizer null");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                   "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}}", "pre_tokenizer");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": "
                   "{\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "Lowercase");
    expect_refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": "
                   "[{\"id\": 1}], \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "added_tokens");
    et_tokenizer *t = NULL;
    et_err e = {0};
    assert_int_equal(et_tok_from_hf_json(&t, "/nonexistent/tokenizer.json", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/tokenizer.json"));
    /* a minimal valid one: holes become [PADi], added tokens typed */
    static const char ok[] =
        "{\"added_tokens\": [{\"id\": 5, \"content\": \"<|x|>\", \"special\": false},"
        " {\"id\": 6, \"content\": \"abc\", \"special\": false}],"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 3}, \"merges\": [[\"a\", \"b\"]]},"
        " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
    assert_int_equal(et_tok_from_hf_json_mem(&t, ok, sizeof ok - 1, "ok.json", &e), 0);
    assert_int_equal(et_tok_n_vocab(t), 7);
    size_t len;
    assert_memory_equal(et_tok_piece(t, 2, &len), "[PAD2]", 6);
    assert_int_equal(et_tok_type(t, 2), ET_TOKT_UNUSED);
    assert_int_equal(et_tok_type(t, 5), ET_TOKT_CONTROL);      /* looks special */
    assert_int_equal(et_tok_type(t, 6), ET_TOKT_USER_DEFINED);
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(t, "abab", 4, 0, &ids, &n, &e), 0); /* "abc" not involved */
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 3);
    free(ids);
    assert_int_equal(et_tok_encode(t, "ababc", 5, 0, &ids, &n, &e), 0); /* user-defined "abc" */
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 6);
    free(ids);
    et_tok_free(t);
}

/* SmolLM2-135M's own tokenizer.json, when the shared folder has it. */
static void test_smollm2_file(void **state) {
    (void)state;
    SHARED_OR_SKIP(path, "tokenizers/smollm2-135m/tokenizer.json");
    SHARED_OR_SKIP(inp, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp");
    et_tokenizer *t = NULL;
    et_err e = {0};
    if (et_tok_from_hf_json(&t, path, &e)) fail_msg("%s", e.msg);
    assert_int_equal(et_tok_n_vocab(t), 49152);
    assert_string_equal(et_tok_pre(t), "smollm");
    vectors v;
    load_strings(&v, inp);
    for (int i = 0; i < v.n; i++) {
        int32_t *ids;
        size_t n, len;
        char *text;
        if (et_tok_encode(t, v.str[i], v.len[i], 0, &ids, &n, &e)) fail_msg("%s", e.msg);
        if (et_tok_decode(t, ids, n, 0, &text, &len, &e)) fail_msg("%s", e.msg);
        if (len != v.len[i] || memcmp(text, v.str[i], len)) fail_msg("string %d does not round-trip", i);
        free(text);
        free(ids);
    }
    free(v.buf);
    /* ids equal those of an independent implementation (OpenAI encoder.py
     * algorithm + Python re, scripts/ref_bpe.py --digits) on ASCII text */
    load_strings(&v, "tests/data/smollm2-135m.inp");
    size_t no;
    char *outp = read_file("tests/data/smollm2-135m.out", &no), *line = outp;
    assert_non_null(outp);
    assert_true(v.n >= 40);
    for (int i = 0; i < v.n; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        int32_t *ids;
        size_t n, k = 0;
        if (et_tok_encode(t, v.str[i], v.len[i], 0, &ids, &n, &e)) fail_msg("%s", e.msg);
        for (char *p = line, *q;; p = q, k++) {
            long x = strtol(p, &q, 10);
            if (q == p) break;
            if (k >= n || ids[k] != x) fail_msg("string %d '%.*s': token %zu differs", i, (int)v.len[i], v.str[i], k);
        }
        if (k != n) fail_msg("string %d: %zu ids, want %zu", i, n, k);
        free(ids);
        line = nl + 1;
    }
    assert_true(line == outp + no); /* every expected line used */
    free(outp);
    /* a special token with PARSE_SPECIAL is one id; digits are split */
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(t, "<|im_start|>", 12, ET_TOK_PARSE_SPECIAL, &ids, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(et_tok_type(t, ids[0]), ET_TOKT_CONTROL);
    free(ids);
    assert_int_equal(et_tok_encode(t, "2024", 4, 0, &ids, &n, &e), 0);
    assert_int_equal(n, 4);
    free(ids);
    assert_int_equal(et_tok_bos(t), 1); /* config.json beside it */
    assert_int_equal(et_tok_eos(t), 2);
    free(v.buf);
    et_tok_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_string_merges),
        cmocka_unit_test(test_gpt2_pair_merges),
        cmocka_unit_test(test_smollm_pre),
        cmocka_unit_test(test_split_patterns),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_smollm2_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
