/* tests/test_ingest_real.c — `edgetune data` end to end with the real
 * stories260K tokenizer on the shared data: Alpaca (masks checked by decoding
 * the trained part back to the record's output), wikisql JSONL with a split,
 * TinyStories packed and read back through the loader, SST-2 labels, and the
 * command line's exit codes.  Expected values come from reading the inputs
 * independently here (cJSON / line splitting) and encoding with et_tok_encode. */
#include "testutil.h"

#include <cJSON.h>
#include <sys/wait.h>

#include "../datasets/dataset.h"
#include "../datasets/ingest.h"
#include "../datasets/ingest_tok.h"
#include "../datasets/loader.h"

static const char *tpath(const char *name) {
    static char bufs[4][512];
    static int k = 0;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static et_tokenizer *g_tok;

static int load_tok(void **state) {
    (void)state;
    const char *p = shared_path("models/stories260K/stories260K.gguf");
    if (!p) return 0;
    et_err e = {0};
    if (et_ingest_load_tokenizer(&g_tok, p, 0, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    et_tok_free(g_tok);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    return system(cmd) == 0 ? 0 : -1;
}

#define NEED_TOK()                                                                          \
    if (!g_tok) {                                                                           \
        fprintf(stderr, "SKIP: %s/models/stories260K/stories260K.gguf not found\n", et_shared_dir()); \
        skip();                                                                             \
    }

typedef struct readback {
    et_ds *ds;
    int32_t *tok;
    uint8_t *mask;
} readback;

static void read_all(const char *path, readback *r) {
    et_err e = {0};
    if (et_ds_open(&r->ds, path, &e)) fail_msg("%s", e.msg);
    int64_t n = r->ds->n_tokens;
    r->tok = malloc((size_t)n * sizeof(int32_t));
    r->mask = malloc((size_t)n);
    assert_int_equal(et_ds_read_tokens(r->ds, 0, n, r->tok, &e), 0);
    assert_int_equal(et_ds_read_mask(r->ds, 0, n, r->mask, &e), 0);
}

static void free_rb(readback *r) {
    et_ds_close(r->ds);
    free(r->tok);
    free(r->mask);
}

static char *decode(const int32_t *ids, size_t n) {
    char *s;
    size_t len;
    et_err e = {0};
    if (et_tok_decode(g_tok, ids, n, 0, &s, &len, &e)) fail_msg("%s", e.msg);
    return s;
}

static cJSON *read_json(const char *path) {
    et_map m;
    et_err e = {0};
    assert_int_equal(et_map_open(&m, path, &e), 0);
    cJSON *j = cJSON_ParseWithLength((const char *)m.data, m.size);
    et_map_close(&m);
    assert_non_null(j);
    return j;
}

/* Alpaca: each document decodes to the record's own rendered "text" field,
 * the mask is one boundary (prompt 0, response 1) and the trained tokens
 * minus EOS decode exactly to the "output" field. */
static void test_alpaca(void **state) {
    (void)state;
    NEED_TOK();
    SHARED_OR_SKIP(in, "data/alpaca_tiny_torchtune.json");
    const char *out = tpath("alpaca.h5");
    et_encoder enc;
    et_encoder_from_tok(&enc, g_tok);
    et_ingest_opts o = et_ingest_defaults();
    et_ingest_summary s;
    et_err e = {0};
    if (et_ingest_file(&enc, in, out, &o, &s, &e)) fail_msg("%s", e.msg);
    readback r;
    read_all(out, &r);
    cJSON *recs = read_json(in);
    assert_int_equal(cJSON_GetArraySize(recs), 100);
    assert_int_equal(r.ds->n_docs, 100);
    char sha[65];
    et_tok_sha256(g_tok, sha);
    assert_string_equal(r.ds->tokenizer_sha256, sha);
    int64_t loss = 0;
    int d = 0;
    for (cJSON *rec = recs->child; rec; rec = rec->next, d++) {
        const char *text = cJSON_GetObjectItem(rec, "text")->valuestring;
        const char *output = cJSON_GetObjectItem(rec, "output")->valuestring;
        int64_t a = r.ds->doc_offsets[d], b = r.ds->doc_offsets[d + 1];
        assert_int_equal(r.tok[a], 1);     /* BOS */
        assert_int_equal(r.tok[b - 1], 2); /* EOS */
        assert_int_equal(r.mask[a], 0);
        assert_int_equal(r.mask[b - 1], 1);
        int64_t k = a;
        while (k < b && r.mask[k] == 0) k++;
        for (int64_t i = k; i < b; i++) assert_int_equal(r.mask[i], 1);
        loss += b - k;
        /* the same tokens as encoding the rendered text directly */
        int32_t *ids;
        size_t n;
        assert_int_equal(et_tok_encode(g_tok, text, strlen(text), ET_TOK_ADD_BOS, &ids, &n, &e), 0);
        assert_int_equal((int64_t)n + 1, b - a);
        assert_memory_equal(ids, r.tok + a, n * sizeof(int32_t));
        free(ids);
        char *all = decode(r.tok + a + 1, (size_t)(b - a - 2));
        assert_string_equal(all, text);
        free(all);
        char *resp = decode(r.tok + k, (size_t)(b - 1 - k));
        if (strcmp(resp, output) != 0) fail_msg("record %d: trained part decodes to '%s', output is '%s'", d, resp, output);
        free(resp);
    }
    assert_int_equal(s.train.loss_tokens, loss);
    assert_int_equal(s.train.tokens, r.ds->n_tokens);
    cJSON_Delete(recs);
    free_rb(&r);
}

/* wikisql {"text"} JSONL with a 10% split: each split holds its records in
 * input order (checked against et_split_assign), each document equals the
 * direct encoding + EOS, and nothing is masked. */
static void test_wikisql_split(void **state) {
    (void)state;
    NEED_TOK();
    SHARED_OR_SKIP(in, "data/wikisql/train.jsonl");
    const char *out = tpath("wikisql.h5");
    et_encoder enc;
    et_encoder_from_tok(&enc, g_tok);
    et_ingest_opts o = et_ingest_defaults();
    o.valid_fraction = 0.1;
    o.seed = 3;
    et_ingest_summary s;
    et_err e = {0};
    if (et_ingest_file(&enc, in, out, &o, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.records, 1000);
    assert_int_equal(s.train.docs, 900);
    assert_int_equal(s.valid.docs, 100);
    readback r;
    read_all(out, &r);
    assert_false(r.ds->has_mask);
    assert_int_equal(r.ds->n_train_docs, 900);
    uint8_t is_valid[1000];
    assert_int_equal(et_split_assign(1000, 0.1, 3, is_valid), 100);
    /* expected file order: train records, then valid records, each in input order */
    FILE *f = fopen(in, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int64_t rec = 0, next[2] = {0, 900};
    while (getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const char *text = cJSON_GetObjectItem(j, "text")->valuestring;
        int64_t d = next[is_valid[rec]]++;
        int32_t *ids;
        size_t n;
        assert_int_equal(et_tok_encode(g_tok, text, strlen(text), ET_TOK_DEFAULT_BOS, &ids, &n, &e), 0);
        int64_t a = r.ds->doc_offsets[d];
        assert_int_equal(r.ds->doc_offsets[d + 1] - a, (int64_t)n + 1);
        assert_memory_equal(r.tok + a, ids, n * sizeof(int32_t));
        assert_int_equal(r.tok[a + (int64_t)n], 2);
        free(ids);
        cJSON_Delete(j);
        rec++;
    }
    free(line);
    fclose(f);
    assert_int_equal(rec, 1000);
    assert_int_equal(next[0], 900);
    assert_int_equal(next[1], 1000);
    free_rb(&r);
}

/* TinyStories split on <|endoftext|>, packed into rows of 65: the rows are
 * the concatenated direct encodings; the loader's batches are those rows;
 * tok512.bin (llama2.c) gives the same file contents as the GGUF. */
static void test_tinystories_packed(void **state) {
    (void)state;
    NEED_TOK();
    SHARED_OR_SKIP(in, "data/tinystories_sample.txt");
    SHARED_OR_SKIP(tokbin, "models/stories260K/tok512.bin");
    /* under sanitizers use the first 256 KiB */
    et_map m;
    et_err e = {0};
    assert_int_equal(et_map_open(&m, in, &e), 0);
    size_t n = getenv("ET_SANITIZED") ? 256 * 1024 : m.size;
    const char *sep = "<|endoftext|>";
    et_ingest_opts o = et_ingest_defaults();
    o.separator = sep;
    o.pack = 1;
    o.seq_len = 64;
    /* cut at a valid UTF-8 boundary */
    while (n < m.size && ((uint8_t)m.data[n] & 0xc0) == 0x80) n--;
    et_docs docs;
    if (et_parse_input((const char *)m.data, n, in, &o, &docs, &e)) fail_msg("%s", e.msg);
    /* independent split of the text on the separator */
    size_t n_docs = 0;
    int32_t *stream = NULL;
    size_t ns = 0, cap = 0;
    const char *p = (const char *)m.data, *end = p + n;
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), sep, strlen(sep));
        if (!q) q = end;
        const char *a = p, *b = q;
        while (a < b && (*a == ' ' || *a == '\n' || *a == '\r' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\n' || b[-1] == '\r' || b[-1] == '\t')) b--;
        if (a < b) {
            assert_memory_equal(docs.doc[n_docs].text, a, (size_t)(b - a));
            int32_t *ids;
            size_t k;
            assert_int_equal(et_tok_encode(g_tok, a, (size_t)(b - a), ET_TOK_DEFAULT_BOS, &ids, &k, &e), 0);
            if (ns + k + 1 > cap) {
                cap = (ns + k + 1) * 2;
                stream = realloc(stream, cap * sizeof(int32_t));
            }
            memcpy(stream + ns, ids, k * sizeof(int32_t));
            ns += k;
            stream[ns++] = 2;
            free(ids);
            n_docs++;
        }
        p = q == end ? end : q + strlen(sep);
    }
    et_map_close(&m);
    assert_int_equal(docs.n, n_docs);
    if (!getenv("ET_SANITIZED")) assert_int_equal(n_docs, 2317);

    const char *out = tpath("stories.h5"), *out2 = tpath("stories2.h5");
    et_encoder enc;
    et_encoder_from_tok(&enc, g_tok);
    et_ingest_summary s;
    if (et_ingest_docs(&enc, &docs, &o, in, out, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.train.tokens, (int64_t)ns);
    int64_t rows = ((int64_t)ns + 64) / 65;
    assert_int_equal(s.train.rows, rows);
    assert_int_equal(s.train.pad_tokens, rows * 65 - (int64_t)ns);

    /* the same through the llama2.c tokenizer */
    et_tokenizer *t2;
    assert_int_equal(et_ingest_load_tokenizer(&t2, tokbin, 0, &e), 0);
    assert_int_equal(et_tok_n_vocab(t2), 512);
    et_encoder enc2;
    et_encoder_from_tok(&enc2, t2);
    assert_string_equal(enc2.sha256, enc.sha256);
    et_ingest_summary s2;
    if (et_ingest_docs(&enc2, &docs, &o, in, out2, &s2, &e)) fail_msg("%s", e.msg);
    et_tok_free(t2);
    et_docs_free(&docs);

    readback r, r2;
    read_all(out, &r);
    read_all(out2, &r2);
    assert_int_equal(r.ds->n_tokens, rows * 65);
    assert_int_equal(r2.ds->n_tokens, rows * 65);
    assert_memory_equal(r.tok, r2.tok, (size_t)r.ds->n_tokens * sizeof(int32_t));
    assert_memory_equal(r.tok, stream, ns * sizeof(int32_t));
    for (int64_t i = (int64_t)ns; i < rows * 65; i++) assert_int_equal(r.mask[i], 0);
    for (size_t i = 0; i < ns; i++) assert_int_equal(r.mask[i], 1);
    free_rb(&r2);

    /* the loader (AUTO -> rows for T = 64, in file order) hands out exactly these rows */
    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = 4;
    lo.seq_len = 64;
    lo.shuffle = 0;
    lo.loop = 0;
    et_loader *L;
    assert_int_equal(et_loader_open(&L, r.ds, &lo, &e), 0);
    assert_int_equal(et_loader_mode(L), ET_LOAD_ROWS);
    assert_int_equal(et_loader_n_samples(L), rows);
    int32_t bt[4 * 65];
    uint8_t bm[4 * 65];
    int64_t got, k = 0;
    for (;;) {
        assert_int_equal(et_loader_next(L, bt, bm, &got, &e), 0);
        if (got == 0) break;
        for (int b = 0; b < got; b++, k++) {
            assert_memory_equal(bt + b * 65, r.tok + k * 65, 65 * sizeof(int32_t));
            assert_memory_equal(bm + b * 65, r.mask + k * 65, 65);
        }
    }
    assert_int_equal(k, rows);
    et_loader_close(L);
    free(stream);
    free_rb(&r);
}

/* SST-2 (GLUE dev, labelled): labels inferred and sorted ("0", "1"), the
 * header skipped, every label equal to the file's column. */
static void test_sst2_labels(void **state) {
    (void)state;
    NEED_TOK();
    SHARED_OR_SKIP(in, "data/sst2/test.tsv");
    const char *out = tpath("sst2.h5");
    et_encoder enc;
    et_encoder_from_tok(&enc, g_tok);
    et_ingest_opts o = et_ingest_defaults();
    et_ingest_summary s;
    et_err e = {0};
    if (et_ingest_file(&enc, in, out, &o, &s, &e)) fail_msg("%s", e.msg);
    assert_int_equal(s.records, 872);
    readback r;
    read_all(out, &r);
    assert_int_equal(r.ds->n_labels, 2);
    assert_string_equal(r.ds->label_names[0], "0");
    assert_string_equal(r.ds->label_names[1], "1");
    int32_t *lab = malloc(872 * sizeof(int32_t));
    assert_int_equal(et_ds_read_labels(r.ds, 0, 872, lab, &e), 0);
    FILE *f = fopen(in, "r");
    char *line = NULL;
    size_t cap = 0;
    int64_t k = -1;
    while (getline(&line, &cap, f) > 0) {
        if (k++ < 0) continue; /* header */
        char *tab = strrchr(line, '\t');
        assert_non_null(tab);
        assert_int_equal(lab[k - 1], atoi(tab + 1));
    }
    assert_int_equal(k, 872);
    free(line);
    fclose(f);
    free(lab);
    free_rb(&r);
}

/* The command line: exit 0 and a summary; 2 for bad input with nothing
 * written; 1 for a usage error. */
static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state) {
    (void)state;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(in, "data/alpaca_tiny_torchtune.json");
    if (access("./edgetune", X_OK) != 0) {
        fprintf(stderr, "SKIP: ./edgetune not built\n");
        skip();
    }
    char cmd[2048];
    const char *out = tpath("cli.h5"), *log = tpath("cli.log");
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s --valid-fraction 0.05 --seed 1 >%s 2>&1",
             model, in, out, log);
    assert_int_equal(run(cmd), 0);
    et_map m;
    et_err e = {0};
    assert_int_equal(et_map_open(&m, log, &e), 0);
    char *txt = strndup((const char *)m.data, m.size);
    et_map_close(&m);
    assert_non_null(strstr(txt, "100 records"));
    assert_non_null(strstr(txt, "train: 95 documents"));
    assert_non_null(strstr(txt, "valid: 5 documents"));
    free(txt);
    et_ds *ds;
    assert_int_equal(et_ds_open(&ds, out, &e), 0);
    assert_int_equal(ds->n_train_docs, 95);
    et_ds_close(ds);
    /* bad input: exit 2, message with file and line, no output */
    const char *bad = tpath("bad.jsonl"), *out2 = tpath("cli_bad.h5");
    FILE *f = fopen(bad, "w");
    fputs("{\"text\": \"ok\"}\n{\"instruction\": \"x\"}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s 2>%s", model, bad, out2, log);
    assert_int_equal(run(cmd), 2);
    assert_int_not_equal(access(out2, F_OK), 0);
    assert_int_equal(et_map_open(&m, log, &e), 0);
    txt = strndup((const char *)m.data, m.size);
    et_map_close(&m);
    assert_non_null(strstr(txt, "bad.jsonl: line 2: missing field 'output'"));
    free(txt);
    /* usage errors: exit 1 */
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s -o %s 2>/dev/null", model, out2);
    assert_int_equal(run(cmd), 1);
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s --bogus 1 2>/dev/null", model, in, out2);
    assert_int_equal(run(cmd), 1);
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s --format xml 2>/dev/null", model, in, out2);
    assert_int_equal(run(cmd), 1);
    assert_int_not_equal(access(out2, F_OK), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alpaca),
        cmocka_unit_test(test_wikisql_split),
        cmocka_unit_test(test_tinystories_packed),
        cmocka_unit_test(test_sst2_labels),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, load_tok, teardown);
}
