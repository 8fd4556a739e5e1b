/* tests/test_edgerun.c — the command line of the engine, run as programs
 * (./edgerun, ./edgetune run, ./edgetune perplexity) against in-process
 * engine results and the shared goldens:
 *  - streamed text of the 255 greedy tokens == golden_greedy.json "text",
 *    through the library callback and through edgerun's stdout;
 *  - edgetune run on the llama2.c .bin prints what edgerun prints on the GGUF;
 *  - edgetune perplexity on a text file and on a two-document tokens.h5
 *    prints the NLL that et_nll computes in process;
 *  - a mismatched adapter or a wrong flag: exit code 2 / 1 with a message. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sys/wait.h>

#include "../datasets/dataset.h"
#include "../engine/engine.h"

#define STORIES "models/stories260K/stories260K.gguf"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

#define NEED_BINS()                                                              \
    if (access("edgerun", X_OK) || access("edgetune", X_OK)) {                   \
        fprintf(stderr, "SKIP: ./edgerun or ./edgetune not built (make all)\n"); \
        skip();                                                                  \
    }

/* Run cmd; stdout into *out (malloc'd), stderr into *err when not NULL. */
static int run(const char *cmd, char **out, char **err) {
    char full[2048], ep[512];
    snprintf(ep, sizeof ep, "%s/stderr.txt", test_tmpdir());
    snprintf(full, sizeof full, "%s 2>%s", cmd, ep);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 1 << 16, n = 0, got;
    char *b = malloc(cap);
    while ((got = fread(b + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) b = realloc(b, cap *= 2);
    }
    b[n] = 0;
    int st = pclose(p);
    *out = b;
    if (err) *err = read_text(ep);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *golden_text(void) {
    const char *gp = shared_path("golden/stories260K_greedy.json");
    if (!gp) return NULL;
    char *txt = read_text(gp);
    cJSON *j = cJSON_Parse(txt);
    char *t = strdup(cJSON_GetObjectItem(j, "text")->valuestring);
    cJSON_Delete(j);
    free(txt);
    return t;
}

typedef struct collect { char *buf; size_t n, cap; int calls; } collect;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    (void)id;
    collect *c = user;
    if (c->n + len + 1 > c->cap) c->buf = realloc(c->buf, c->cap = 2 * (c->n + len + 1));
    memcpy(c->buf + c->n, text, len);
    c->n += len;
    c->buf[c->n] = 0;
    c->calls++;
    return 0;
}

static void test_streamed_text_golden(void **state) {
    (void)state;
    NEED_BINS();
    SHARED_OR_SKIP(mp, STORIES);
    char *want = golden_text();
    if (!want) skip();
    et_engine *m;
    et_err e = {0};
    if (et_engine_load(&m, mp, &e)) fail_msg("%s", e.msg);
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 512;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &o, &e), 0);
    et_sampler smp;
    et_sampler_params sp = et_sampler_default_params();
    sp.temp = 0;
    et_sampler_init(&smp, &sp, m->hp.n_vocab, &e);
    collect c = {calloc(1, 1), 0, 1, 0};
    int32_t bos = 1;
    int n_out;
    if (et_generate(s, &smp, &bos, 1, 255, 0, on_token, &c, NULL, &n_out, NULL, &e)) fail_msg("%s", e.msg);
    assert_int_equal(c.calls, 255);
    assert_string_equal(c.buf, want);
    free(c.buf);
    et_sampler_free(&smp);
    et_state_free(s);
    et_engine_free(m);

    /* the same text from edgerun's stdout (plus a final newline), and from edgetune run on the .bin */
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "./edgerun -m %s -n 255 --temp 0 --ignore-eos", mp);
    assert_int_equal(run(cmd, &out, NULL), 0);
    size_t wl = strlen(want);
    assert_int_equal(strlen(out), wl + 1);
    assert_memory_equal(out, want, wl);
    free(out);
    const char *bp = shared_path("models/stories260K/stories260K.bin");
    const char *tp = shared_path("models/stories260K/tok512.bin");
    if (bp && tp) {
        snprintf(cmd, sizeof cmd, "./edgetune run %s --tokenizer %s --n 255 --temp 0 --ignore-eos", bp, tp);
        assert_int_equal(run(cmd, &out, NULL), 0);
        assert_memory_equal(out, want, wl);
        free(out);
    }
    free(want);
}

/* "perplexity P (NLL X nats over N tokens, ...)" -> X, N */
static void parse_ppl(const char *out, double *nll, long *n) {
    const char *p = strstr(out, "NLL ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "NLL %lf nats over %ld tokens", nll, n), 2);
}

static void test_perplexity_cli(void **state) {
    (void)state;
    NEED_BINS();
    SHARED_OR_SKIP(mp, STORIES);
    et_engine *m;
    et_err e = {0};
    if (et_engine_load(&m, mp, &e)) fail_msg("%s", e.msg);
    et_state_opts o = et_state_default_opts();
    o.n_ctx = 64;
    o.kv_type = GGML_TYPE_F32;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &o, &e), 0);
    const char *docs[2] = {"One day, a clever fox found a shiny key under the old oak tree.",
                           "Lily and Ben went to the park. They played on the swings all day."};
    int32_t *ids[2];
    size_t n[2];
    double want[2];
    for (int d = 0; d < 2; d++) {
        assert_int_equal(et_tok_encode(m->tok, docs[d], strlen(docs[d]), ET_TOK_ADD_BOS, &ids[d], &n[d], &e), 0);
        et_ppl r = {0};
        assert_int_equal(et_nll(s, ids[d], (int)n[d], &r, &e), 0);
        want[d] = r.nll;
    }
    /* a text file: the first sentence alone */
    char tp[512], hp[512], cmd[1024], *out;
    snprintf(tp, sizeof tp, "%s/s.txt", test_tmpdir());
    FILE *f = fopen(tp, "w");
    fputs(docs[0], f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "./edgetune perplexity %s %s --ctx 64", mp, tp);
    assert_int_equal(run(cmd, &out, NULL), 0);
    double nll;
    long cnt;
    parse_ppl(out, &nll, &cnt);
    assert_int_equal(cnt, (long)n[0] - 1);
    assert_true(fabs(nll - want[0]) < 1e-5);
    free(out);
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --perplexity %s -c 64", mp, tp);
    assert_int_equal(run(cmd, &out, NULL), 0);
    parse_ppl(out, &nll, &cnt);
    assert_true(fabs(nll - want[0]) < 1e-5);
    free(out);
    /* a tokens.h5 with both documents: the sum */
    snprintf(hp, sizeof hp, "%s/t.h5", test_tmpdir());
    et_ds_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.n_vocab = m->hp.n_vocab;
    meta.bos_id = 1;
    meta.eos_id = 2;
    et_tok_sha256(m->tok, meta.tokenizer_sha256);
    et_ds_writer *w;
    assert_int_equal(et_ds_writer_open(&w, hp, &meta, 0, &e), 0);
    for (int d = 0; d < 2; d++) assert_int_equal(et_ds_writer_add(w, ids[d], NULL, n[d], 0, &e), 0);
    assert_int_equal(et_ds_writer_commit(w, &e), 0);
    snprintf(cmd, sizeof cmd, "./edgetune perplexity %s %s --ctx 64", mp, hp);
    assert_int_equal(run(cmd, &out, NULL), 0);
    parse_ppl(out, &nll, &cnt);
    assert_int_equal(cnt, (long)(n[0] + n[1] - 2));
    assert_true(fabs(nll - (want[0] + want[1])) < 1e-5);
    free(out);
    for (int d = 0; d < 2; d++) free(ids[d]);
    et_state_free(s);
    et_engine_free(m);
}

static void test_cli_errors(void **state) {
    (void)state;
    NEED_BINS();
    SHARED_OR_SKIP(mp, STORIES);
    char ap[512], cmd[1024], *out, *err;
    /* an adapter for a base with n_embd 32 */
    snprintf(ap, sizeof ap, "%s/bad_adapter.gguf", test_tmpdir());
    gguf_writer *w = gguf_writer_new();
    et_err e = {0};
    gguf_set_str(w, "general.architecture", "llama");
    gguf_set_str(w, "general.type", "adapter");
    gguf_set_str(w, "adapter.type", "lora");
    gguf_set_f32(w, "adapter.lora.alpha", 8.0f);
    static float a[32 * 4], b[4 * 64];
    int64_t nea[2] = {32, 4}, neb[2] = {4, 64};
    assert_int_equal(gguf_add_tensor(w, "blk.0.attn_q.weight.lora_a", GGML_TYPE_F32, 2, nea, a, &e), 0);
    assert_int_equal(gguf_add_tensor(w, "blk.0.attn_q.weight.lora_b", GGML_TYPE_F32, 2, neb, b, &e), 0);
    assert_int_equal(gguf_writer_write(w, ap, &e), 0);
    gguf_writer_free(w);
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --lora %s:0.5 -n 4", mp, ap);
    assert_int_equal(run(cmd, &out, &err), ET_EINPUT);
    assert_non_null(strstr(err, "blk.0.attn_q.weight.lora_a"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "./edgetune run %s --lora %s --n 4", mp, ap);
    assert_int_equal(run(cmd, &out, &err), ET_EINPUT);
    assert_non_null(strstr(err, "n_in 32"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "./edgerun -m %s --frobnicate 3", mp);
    assert_int_equal(run(cmd, &out, &err), ET_EUSAGE);
    assert_non_null(strstr(err, "--frobnicate"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "./edgerun -m %s/missing.gguf", test_tmpdir());
    assert_int_equal(run(cmd, &out, &err), ET_EINPUT);
    assert_non_null(strstr(err, "missing.gguf"));
    free(out);
    free(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_text_golden),
        cmocka_unit_test(test_perplexity_cli),
        cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
