/* tests/test_demo.c — the pieces behind `make demo` (docs/demo.md).
 *
 * - vocabulary learning (datasets/vocab_train.h): a hand-worked BPE example
 *   (ids, pieces, scores, encoding); on the demo texts: deterministic, the
 *   GGUF file reloads with the same fingerprint, encode/decode round trips
 *   (also unseen characters, through byte fallback), no piece spans a space
 *   or a newline; bad options and invalid UTF-8 are refused;
 * - the base corpus (lora/demo_corpus.h): replies by hand, no held-out
 *   command and no command -> JSON pairing in it;
 * - a miniature pipeline end to end: task files -> vocabulary -> tokens.h5
 *   (ingest) -> a small base trained a few steps (validation loss falls)
 *   -> GGUF -> a LoRA adapter trained a few steps on the task on the frozen
 *   base (its validation loss falls; GGUF + PEFT files) -> merge; the engine's
 *   logits with the adapter applied at run time equal the merged model's
 *   within 1e-4 (F32); the held-out loss of `edgetune eval` (eval/eval.h) equals the
 *   trainer's masked validation loss on the same records (an independent
 *   forward pass), for the base and for base + adapter (the LoRA trainer's
 *   forward), and the adapter lowers it; exact-match counts come from the generations (records
 *   whose completion is the model's own answer score n/n, altered ones 0). */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "../datasets/ingest.h"
#include "../datasets/ingest_tok.h"
#include "../datasets/loader.h"
#include "../datasets/vocab_train.h"
#include "../engine/engine.h"
#include "../export/safetensors.h"
#include "../lora/adapter.h"
#include "../lora/demo_corpus.h"
#include "../eval/eval.h"
#include "../eval/internal.h"
#include "../lora/demo_task.h"
#include "../lora/lora_train.h"
#include "../lora/merge.h"
#include "../train/train_llama.h"
#include "../train/trainer.h"

static const char *tmp(const char *name) {
    static char bufs[8][512];
    static int k = 0;
    char *b = bufs[k++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && st.st_size > 0;
}

static void check(int rc, const et_err *e) {
    if (rc) fail_msg("rc %d: %s", rc, e->msg);
}

static void piece_is(const et_tokenizer *t, int id, const char *s) {
    size_t len;
    const char *p = et_tok_piece(t, id, &len);
    assert_non_null(p);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(p, s, len);
}

/* ------------------------------------------------------------ vocabulary */

/* "ab ab ab cd": words ▁ab x3, ▁cd x1.  Pairs (▁,a) 3, (a,b) 3, (▁,c) 1,
 * (c,d) 1: the tie at 3 goes to the bytewise smaller piece "ab" (0x61 <
 * 0xE2), then (▁,ab) 3 -> "▁ab"; the rest occur once (< min count 2). */
static void test_vocab_by_hand(void **state) {
    (void)state;
    const char *texts[] = {"ab ab ab cd"};
    size_t lens[] = {11};
    et_vocab_opts o = et_vocab_defaults();
    et_tokenizer *t;
    et_vocab_stats st;
    et_err e = {0};
    check(et_vocab_train(&t, texts, lens, 1, &o, &st, &e), &e);
    assert_int_equal(st.n_chars, 5);
    assert_int_equal(st.n_merges, 2);
    assert_int_equal(st.n_words, 4);
    assert_int_equal(st.n_unique_words, 2);
    assert_int_equal(et_tok_n_vocab(t), 259 + 5 + 2);
    piece_is(t, 0, "<unk>");
    piece_is(t, 1, "<s>");
    piece_is(t, 2, "</s>");
    piece_is(t, 3, "<0x00>");
    piece_is(t, 3 + 0x41, "<0x41>");
    piece_is(t, 258, "<0xFF>");
    /* characters by frequency (▁ 4, a 3, b 3, c 1, d 1; ties bytewise) */
    piece_is(t, 259, "\xe2\x96\x81");
    piece_is(t, 260, "a");
    piece_is(t, 261, "b");
    piece_is(t, 262, "c");
    piece_is(t, 263, "d");
    piece_is(t, 264, "ab");
    piece_is(t, 265, "\xe2\x96\x81"
                     "ab");
    assert_true(et_tok_score(t, 264) == 0.0f);
    assert_true(et_tok_score(t, 265) == -1.0f);
    assert_true(et_tok_score(t, 259) == -2.0f);
    assert_int_equal(et_tok_type(t, 1), ET_TOKT_CONTROL);
    assert_int_equal(et_tok_type(t, 10), ET_TOKT_BYTE);
    assert_int_equal(et_tok_type(t, 265), ET_TOKT_NORMAL);
    assert_int_equal(et_tok_bos(t), 1);
    assert_int_equal(et_tok_eos(t), 2);
    int32_t *ids;
    size_t n;
    check(et_tok_encode(t, "ab cd", 5, ET_TOK_DEFAULT_BOS, &ids, &n, &e), &e);
    int32_t want[] = {1, 265, 259, 262, 263};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    /* "x" was never seen: byte fallback <0x78> */
    check(et_tok_encode(t, "abx", 3, 0, &ids, &n, &e), &e);
    int32_t want2[] = {265, 3 + 'x'};
    assert_int_equal(n, 2);
    assert_memory_equal(ids, want2, sizeof want2);
    free(ids);
    et_tok_free(t);
}

/* The demo texts: the base corpus and the training records, as `edgetune
 * vocab` reads them (et_parse_input). */
typedef struct texts {
    et_docs docs[2];
    const char **s;
    size_t *len;
    size_t n;
} texts;

static void texts_load(texts *t, const char *const *paths, int n_paths) {
    memset(t, 0, sizeof *t);
    size_t cap = 0;
    for (int f = 0; f < n_paths; f++) {
        et_map m;
        et_err e = {0};
        check(et_map_open(&m, paths[f], &e), &e);
        et_ingest_opts io = et_ingest_defaults();
        check(et_parse_input((const char *)m.data, m.size, paths[f], &io, &t->docs[f], &e), &e);
        et_map_close(&m);
        cap += t->docs[f].n;
    }
    t->s = malloc(cap * sizeof *t->s);
    t->len = malloc(cap * sizeof *t->len);
    for (int f = 0; f < n_paths; f++)
        for (size_t i = 0; i < t->docs[f].n; i++) {
            t->s[t->n] = t->docs[f].doc[i].text;
            t->len[t->n++] = t->docs[f].doc[i].len;
        }
}

static void texts_free(texts *t) {
    for (int f = 0; f < 2; f++) et_docs_free(&t->docs[f]);
    free(t->s);
    free(t->len);
}

/* Write the task files of a small demo into the temporary directory. */
static void write_task(int n_train, int n_test) {
    demo_task_opts o = demo_task_defaults();
    o.n_train = n_train;
    o.n_test = n_test;
    demo_task t;
    et_err e = {0};
    check(demo_task_generate(&t, &o, &e), &e);
    check(demo_task_write_jsonl(t.train, t.n_train, tmp("train.jsonl"), DEMO_STYLE_PROMPT, &e), &e);
    check(demo_task_write_jsonl(t.test, t.n_test, tmp("test.jsonl"), DEMO_STYLE_PROMPT, &e), &e);
    check(demo_corpus_write(t.train, t.n_train, tmp("pretrain.txt"), NULL, &e), &e);
    demo_task_free(&t);
}

static void test_vocab_demo_texts(void **state) {
    (void)state;
    write_task(300, 20);
    const char *paths[] = {tmp("pretrain.txt"), tmp("train.jsonl")};
    texts tx;
    texts_load(&tx, paths, 2);
    et_vocab_opts o = et_vocab_defaults();
    o.n_vocab = 1024; /* more than the pairs that occur twice: every frequent word becomes one piece */
    et_tokenizer *t, *t2, *t3;
    et_err e = {0};
    check(et_vocab_train(&t, tx.s, tx.len, tx.n, &o, NULL, &e), &e);
    check(et_vocab_train(&t2, tx.s, tx.len, tx.n, &o, NULL, &e), &e);
    assert_true(et_tok_n_vocab(t) > 400 && et_tok_n_vocab(t) < 1024);
    char h1[65], h2[65], h3[65];
    et_tok_sha256(t, h1);
    et_tok_sha256(t2, h2);
    assert_string_equal(h1, h2); /* deterministic */
    check(et_tok_save_vocab_gguf(t, tmp("vocab.gguf"), "test-vocab", &e), &e);
    check(et_ingest_load_tokenizer(&t3, tmp("vocab.gguf"), 0, &e), &e);
    et_tok_sha256(t3, h3);
    assert_string_equal(h1, h3); /* the file holds the same vocabulary */
    /* no merged piece spans a word boundary */
    for (int id = ET_VOCAB_N_FIXED; id < et_tok_n_vocab(t); id++) {
        size_t len;
        const char *p = et_tok_piece(t, id, &len);
        for (size_t k = 1; k + 2 < len; k++) assert_false(!memcmp(p + k, "\xe2\x96\x81", 3));
        if (len > 1)
            for (size_t k = 0; k < len; k++) assert_false((unsigned char)p[k] < 0x20);
    }
    /* round trips, on the texts and on unseen characters */
    const char *samples[] = {tx.s[0], tx.s[tx.n - 1], "Zebra caf\xc3\xa9 \xf0\x9f\x99\x82\tdone\n{\"x\":1}"};
    for (int k = 0; k < 3; k++) {
        int32_t *ids;
        size_t n;
        char *back;
        size_t blen;
        check(et_tok_encode(t3, samples[k], strlen(samples[k]), 0, &ids, &n, &e), &e);
        check(et_tok_decode(t3, ids, n, 0, &back, &blen, &e), &e);
        assert_string_equal(back, samples[k]);
        if (k < 2) assert_true(n * 3 < strlen(samples[k])); /* words of the corpus are single pieces */
        free(ids);
        free(back);
    }
    et_tok_free(t);
    et_tok_free(t2);
    et_tok_free(t3);
    texts_free(&tx);
}

static void test_vocab_errors(void **state) {
    (void)state;
    et_tokenizer *t = NULL;
    et_err e = {0};
    et_vocab_opts o = et_vocab_defaults();
    const char *bad[] = {"fine", "ok \xc3\x28 no"};
    size_t lens[] = {4, 9};
    assert_int_equal(et_vocab_train(&t, bad, lens, 2, &o, NULL, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "text 1"));
    assert_non_null(strstr(e.msg, "offset 3"));
    assert_null(t);
    o.n_vocab = 100;
    assert_int_equal(et_vocab_train(&t, bad, lens, 1, &o, NULL, &e), ET_EUSAGE);
    o.n_vocab = 260; /* 259 fixed + 4 characters do not fit */
    assert_int_equal(et_vocab_train(&t, bad, lens, 1, &o, NULL, &e), ET_EUSAGE);
    assert_non_null(strstr(e.msg, "characters"));
    /* a merge never produces a reserved piece: "<s>" stays three characters */
    const char *sp[] = {"<s> <s> <s> <s>"};
    size_t spl[] = {15};
    o = et_vocab_defaults();
    check(et_vocab_train(&t, sp, spl, 1, &o, NULL, &e), &e);
    int32_t *ids;
    size_t n;
    check(et_tok_encode(t, "<s>", 3, 0, &ids, &n, &e), &e);
    assert_true(n >= 1 && ids[0] != 1);
    free(ids);
    et_tok_free(t);
}

/* ------------------------------------------------------------ corpus */

static void test_corpus(void **state) {
    (void)state;
    char r[256];
    assert_int_equal(demo_corpus_reply("{\"device\":\"light\",\"room\":\"kitchen\",\"action\":\"off\"}", r, sizeof r), 0);
    assert_string_equal(r, "ok, the kitchen light is off now.");
    assert_int_equal(
        demo_corpus_reply("{\"device\":\"thermostat\",\"room\":\"bedroom\",\"action\":\"set\",\"value\":21}", r, sizeof r),
        0);
    assert_string_equal(r, "ok, the bedroom thermostat is at 21 degrees now.");
    assert_int_equal(demo_corpus_reply("{\"device\":\"blinds\",\"room\":\"office\",\"action\":\"close\"}", r, sizeof r), 0);
    assert_string_equal(r, "ok, the office blinds are closed now.");
    assert_int_equal(demo_corpus_reply("{\"device\":\"lock\",\"room\":\"front\",\"action\":\"unlock\"}", r, sizeof r), 0);
    assert_string_equal(r, "ok, the front door is unlocked now.");
    assert_int_equal(demo_corpus_reply("{\"device\":\"toaster\",\"room\":\"x\",\"action\":\"pop\"}", r, sizeof r), -1);
    assert_int_equal(demo_corpus_reply("not json", r, sizeof r), -1);

    demo_task_opts o = demo_task_defaults();
    demo_task t;
    et_err e = {0};
    check(demo_task_generate(&t, &o, &e), &e);
    demo_corpus_stats st;
    check(demo_corpus_write(t.train, t.n_train, tmp("corpus.txt"), &st, &e), &e);
    assert_int_equal(st.n_replies, t.n_train);
    assert_int_equal(st.n_logs, t.n_train / DEMO_CORPUS_LOG_EVERY);
    et_map m;
    check(et_map_open(&m, tmp("corpus.txt"), &e), &e);
    assert_int_equal(m.size, st.bytes);
    char *text = strndup((const char *)m.data, m.size);
    et_map_close(&m);
    assert_null(strstr(text, "Action:")); /* never the task's pairing */
    for (int i = 0; i < t.n_test; i++) {  /* never a held-out command */
        char line[256];
        snprintf(line, sizeof line, "Command: %s\n", t.test[i].command);
        assert_null(strstr(text, line));
    }
    free(text);
    /* an example that is not a task action is refused, nothing written */
    demo_example bad = t.train[0];
    snprintf(bad.action, sizeof bad.action, "{}");
    assert_int_equal(demo_corpus_write(&bad, 1, tmp("bad.txt"), NULL, &e), ET_EINPUT);
    assert_false(file_exists(tmp("bad.txt")));
    demo_task_free(&t);
}

/* ------------------------------------------------------------ pipeline */

static uint64_t g_rng = 0x1234567;
static float urand(void) { /* uniform in [-1, 1), splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1.0p-52 - 1.0);
}

/* Ingest a file with the vocabulary into tokens.h5. */
static void ingest(const et_tokenizer *tok, const char *in, const char *out, double valid, int pack_T) {
    et_encoder enc;
    et_encoder_from_tok(&enc, tok);
    et_ingest_opts o = et_ingest_defaults();
    o.valid_fraction = valid;
    o.seed = 1;
    if (pack_T) {
        o.pack = 1;
        o.seq_len = pack_T;
    }
    et_ingest_summary s;
    et_err e = {0};
    check(et_ingest_file(&enc, in, out, &o, &s, &e), &e);
}

/* Max |a - b| of the logits of every position of `text` under two engines. */
/* `edgetune eval --task generate` (greedy, stop at a newline, 24 tokens) of
 * model [+ adapter] on a prompt/completion JSONL; samples (may be NULL)
 * gets one line per record. */
static cJSON *eval_generate(const char *model, const char *adapter, const char *data, const char *samples) {
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "generate";
    o.data = data;
    o.n_predict = 24;
    o.stop[0] = "\n";
    o.n_stop = 1;
    o.samples = samples;
    if (adapter) {
        o.lora[0] = adapter;
        o.lora_scale[0] = 1.0f;
        o.n_lora = 1;
    }
    cJSON *r = NULL;
    et_err e = {0};
    check(et_eval_run(&o, &r, &e), &e);
    return r;
}

static double metric_of(const cJSON *r, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "metrics"), k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* The "pred" of each line of a --samples file, in order ([n], malloc'd). */
static char **sample_preds(const char *path, int n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char **out = calloc((size_t)n, sizeof *out);
    char line[1 << 14];
    int i = 0;
    while (i < n && fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        out[i++] = strdup(cJSON_GetObjectItemCaseSensitive(j, "pred")->valuestring);
        cJSON_Delete(j);
    }
    fclose(f);
    assert_int_equal(i, n);
    return out;
}

/* A prompt/completion JSONL of recs' prompts with the given completions (suffix appended). */
static void write_jsonl(const char *path, const et_recs *recs, char **completions, const char *suffix) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (long i = 0; i < recs->n; i++) {
        cJSON *o = cJSON_CreateObject();
        char c[2048];
        snprintf(c, sizeof c, "%s%s", completions[i], suffix);
        cJSON_AddStringToObject(o, "prompt", recs->r[i].prompt);
        cJSON_AddStringToObject(o, "completion", c);
        char *t = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", t);
        free(t);
        cJSON_Delete(o);
    }
    fclose(f);
}

static double logits_diff(et_engine *a, et_engine *b, const char *text) {
    et_state_opts so = et_state_default_opts();
    so.kv_type = GGML_TYPE_F32;
    et_state *sa, *sb;
    et_err e = {0};
    check(et_state_new(&sa, a, &so, &e), &e);
    check(et_state_new(&sb, b, &so, &e), &e);
    int32_t *ids;
    size_t n;
    check(et_tok_encode(a->tok, text, strlen(text), ET_TOK_DEFAULT_BOS, &ids, &n, &e), &e);
    int nv = a->hp.n_vocab;
    float *la = malloc(sizeof(float) * n * (size_t)nv), *lb = malloc(sizeof(float) * n * (size_t)nv);
    check(et_forward(sa, ids, (int)n, la, 1, &e), &e);
    check(et_forward(sb, ids, (int)n, lb, 1, &e), &e);
    double worst = 0, mag = 0;
    for (size_t i = 0; i < n * (size_t)nv; i++) {
        double d = fabs((double)la[i] - lb[i]);
        if (d > worst) worst = d;
        if (fabs(la[i]) > mag) mag = fabs(la[i]);
    }
    assert_true(mag > 0.1); /* the logits are not all tiny */
    free(ids);
    free(la);
    free(lb);
    et_state_free(sa);
    et_state_free(sb);
    return worst;
}

static void test_pipeline(void **state) {
    (void)state;
    et_err e = {0};
    write_task(240, 24);
    /* 1. the vocabulary */
    const char *paths[] = {tmp("pretrain.txt"), tmp("train.jsonl")};
    texts tx;
    texts_load(&tx, paths, 2);
    et_vocab_opts vo = et_vocab_defaults();
    vo.n_vocab = 384;
    et_tokenizer *tok;
    check(et_vocab_train(&tok, tx.s, tx.len, tx.n, &vo, NULL, &e), &e);
    texts_free(&tx);
    check(et_tok_save_vocab_gguf(tok, tmp("vocab.gguf"), NULL, &e), &e);
    et_tok_free(tok);
    check(et_ingest_load_tokenizer(&tok, tmp("vocab.gguf"), 0, &e), &e);
    /* 2. tokens.h5: the corpus packed, the held-out records one per row */
    const int T = 32;
    ingest(tok, tmp("pretrain.txt"), tmp("pretrain.h5"), 0.1, T);
    ingest(tok, tmp("test.jsonl"), tmp("test.h5"), 0.0, 0);
    assert_true(file_exists(tmp("pretrain.h5")) && file_exists(tmp("test.h5")));
    /* 3. a small base model trained a few steps */
    et_hparams hp = {0};
    snprintf(hp.arch, sizeof hp.arch, "llama");
    hp.n_vocab = et_tok_n_vocab(tok);
    hp.n_embd = 32, hp.n_layer = 2, hp.n_head = 4, hp.n_head_kv = 2, hp.n_ff = 64, hp.n_ctx = 96;
    hp.rms_eps = 1e-5f, hp.rope_theta = 10000.0f, hp.tied_output = 1;
    et_model m;
    check(et_model_alloc(&m, &hp, &e), &e);
    m.tok = tok;
    et_named *nt = malloc(sizeof(et_named) * 64);
    int n_t = et_model_tensors(&m, nt, 64);
    for (int i = 0; i < n_t; i++)
        for (size_t k = 0; k < nt[i].n; k++)
            nt[i].data[k] = strstr(nt[i].name, "_norm") ? 1.0f : 0.08f * urand();
    free(nt);
    et_train_llama tl;
    et_train_model tm;
    check(et_train_llama_init(&tl, &m, 0, &tm, &e), &e);
    et_ds *ds, *dt;
    check(et_ds_open(&ds, tmp("pretrain.h5"), &e), &e);
    et_loader_opts lo = et_loader_defaults();
    lo.batch_size = 8, lo.seq_len = T, lo.seed = 1;
    et_loader *ltr, *lva;
    check(et_loader_open(&ltr, ds, &lo, &e), &e);
    lo.split = ET_SPLIT_VALID, lo.shuffle = 0, lo.loop = 0;
    check(et_loader_open(&lva, ds, &lo, &e), &e);
    double before;
    int64_t nv_tok;
    check(et_train_evaluate(&tm, lva, 8, T, 0, &before, &nv_tok, &e), &e);
    et_train_opts to = et_train_defaults();
    to.steps = getenv("ET_SANITIZED") ? 15 : 40;
    to.batch_size = 8, to.seq_len = T;
    to.sched.lr = 3e-3f, to.sched.min_lr = 3e-4f, to.sched.warmup = 2;
    et_train_result res;
    check(et_train_run(&tm, ltr, lva, &to, &res, &e), &e);
    fprintf(stderr, "  base: validation loss %.4f -> %.4f over %lld tokens\n", before, res.val_loss,
            (long long)nv_tok);
    assert_true(res.val_loss < before - 0.5);
    check(et_model_save_gguf(&m, tmp("base.gguf"), GGML_TYPE_F32, &e), &e);
    /* 4. the held-out loss through the engine (edgetune eval) == the trainer's masked loss */
    et_eval_opts ro = et_eval_defaults();
    ro.task = "generate";
    ro.data = tmp("test.jsonl");
    et_recs recs;
    check(et_recs_read(&ro, &recs, &e), &e);
    assert_int_equal(recs.n, 24);
    et_engine *base;
    check(et_engine_load(&base, tmp("base.gguf"), &e), &e);
    cJSON *r0 = eval_generate(tmp("base.gguf"), NULL, tmp("test.jsonl"), NULL);
    check(et_ds_open(&dt, tmp("test.h5"), &e), &e);
    lo = et_loader_defaults();
    lo.batch_size = 4, lo.seq_len = 63, lo.shuffle = 0, lo.loop = 0, lo.mode = ET_LOAD_ROWS;
    et_loader *lte;
    check(et_loader_open(&lte, dt, &lo, &e), &e);
    double tr_loss;
    int64_t tr_tok;
    check(et_train_evaluate(&tm, lte, 4, 63, 0, &tr_loss, &tr_tok, &e), &e);
    double ev_loss = metric_of(r0, "nll_per_token"), base_loss = ev_loss;
    fprintf(stderr, "  held-out loss: engine %.6f over %.0f tokens, trainer %.6f over %lld\n", ev_loss,
            metric_of(r0, "loss_tokens"), tr_loss, (long long)tr_tok);
    assert_int_equal((int64_t)metric_of(r0, "loss_tokens"), tr_tok);
    assert_true(fabs(ev_loss - tr_loss) < 1e-4 * fmax(1.0, tr_loss));
    /* 5. a LoRA adapter trained a few steps on the task (frozen base), its files */
    ingest(tok, tmp("train.jsonl"), tmp("task.h5"), 0.1, T);
    et_ds *dk;
    check(et_ds_open(&dk, tmp("task.h5"), &e), &e);
    lo = et_loader_defaults();
    lo.batch_size = 8, lo.seq_len = T, lo.seed = 1;
    et_loader *lktr, *lkva;
    check(et_loader_open(&lktr, dk, &lo, &e), &e);
    lo.split = ET_SPLIT_VALID, lo.shuffle = 0, lo.loop = 0;
    check(et_loader_open(&lkva, dk, &lo, &e), &e);
    lora_config lc = {.targets = LORA_ALL_LINEAR, .rank = 4, .alpha = 8, .seed = 7};
    lora_adapter ad;
    check(lora_adapter_create(&ad, &m, &lc, &e), &e);
    lora_train lt;
    et_train_model tmk;
    check(lora_train_init(&lt, &m, GGML_TYPE_F32, &ad, &tmk, &e), &e);
    double k_before;
    int64_t k_tok;
    check(et_train_evaluate(&tmk, lkva, 8, T, 0, &k_before, &k_tok, &e), &e);
    to = et_train_defaults();
    to.steps = getenv("ET_SANITIZED") ? 10 : 30;
    to.batch_size = 8, to.seq_len = T;
    to.sched.lr = 2e-2f, to.sched.min_lr = 2e-3f, to.sched.warmup = 2;
    to.adamw.weight_decay = 0.0f;
    check(et_train_run(&tmk, lktr, lkva, &to, &res, &e), &e);
    fprintf(stderr, "  LoRA: task validation loss %.4f -> %.4f over %lld tokens\n", k_before, res.val_loss,
            (long long)k_tok);
    assert_true(res.val_loss < k_before - 0.1);
    check(lora_adapter_save_gguf(&ad, tmp("adapter.gguf"), GGML_TYPE_F32, &e), &e);
    check(lora_adapter_save_peft(&ad, tmp("peft"), NULL, ST_F32, &e), &e);
    assert_true(file_exists(tmp("adapter.gguf")));
    assert_true(file_exists(tmp("peft/adapter_model.safetensors")) && file_exists(tmp("peft/adapter_config.json")));
    lora_merge_adapter ma = {tmp("adapter.gguf"), 1.0f};
    check(lora_merge(tmp("base.gguf"), &ma, 1, tmp("merged.gguf"), -1, NULL, &e), &e);
    et_engine *merged;
    et_adapter *rt;
    check(et_engine_load(&merged, tmp("merged.gguf"), &e), &e);
    check(et_adapter_load(&rt, tmp("adapter.gguf"), base, &e), &e);
    check(et_engine_attach(base, rt, 1.0f, &e), &e);
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", recs.r[i].prompt, recs.r[i].gold);
        double d = logits_diff(base, merged, text);
        if (d > worst) worst = d;
    }
    fprintf(stderr, "  adapter at run time vs merged: max |logit diff| %.3g\n", worst);
    assert_true(worst < 1e-4);
    /* the held-out loss with the adapter at run time == the LoRA trainer's forward */
    cJSON *ra = eval_generate(tmp("base.gguf"), tmp("adapter.gguf"), tmp("test.jsonl"), tmp("lora_samples.jsonl"));
    check(et_train_evaluate(&tmk, lte, 4, 63, 0, &tr_loss, &tr_tok, &e), &e);
    ev_loss = metric_of(ra, "nll_per_token");
    fprintf(stderr, "  held-out loss with the adapter: engine %.6f, LoRA trainer %.6f (base %.6f)\n", ev_loss,
            tr_loss, base_loss);
    assert_int_equal((int64_t)metric_of(ra, "loss_tokens"), tr_tok);
    assert_true(fabs(ev_loss - tr_loss) < 1e-4 * fmax(1.0, tr_loss));
    assert_true(ev_loss < base_loss); /* the adapter helps on held-out records */
    /* 6. accuracy is counted from the generations: the model's own answers are
     * exact matches, the same answers with a character appended are not */
    char **preds = sample_preds(tmp("lora_samples.jsonl"), 24);
    int recount = 0;
    for (int i = 0; i < 24; i++) recount += !strcmp(preds[i], recs.r[i].gold);
    assert_int_equal(recount, (int)(metric_of(ra, "exact_match") * 24 + 0.5));
    write_jsonl(tmp("own.jsonl"), &recs, preds, "");
    write_jsonl(tmp("off.jsonl"), &recs, preds, "~");
    cJSON *r2 = eval_generate(tmp("base.gguf"), tmp("adapter.gguf"), tmp("own.jsonl"), NULL);
    cJSON *r3 = eval_generate(tmp("base.gguf"), tmp("adapter.gguf"), tmp("off.jsonl"), NULL);
    assert_true(metric_of(r2, "exact_match") == 1.0);
    assert_true(metric_of(r3, "exact_match") == 0.0);
    /* the merged model answers as the adapter at run time does */
    cJSON *r4 = eval_generate(tmp("merged.gguf"), NULL, tmp("own.jsonl"), NULL);
    fprintf(stderr, "  merged model reproduces %.0f/24 answers of base + adapter\n", metric_of(r4, "exact_match") * 24);
    assert_true(metric_of(r4, "exact_match") * 24 >= 22 - 1e-9);
    for (int i = 0; i < 24; i++) free(preds[i]);
    free(preds);
    cJSON_Delete(r0);
    cJSON_Delete(ra);
    cJSON_Delete(r2);
    cJSON_Delete(r3);
    cJSON_Delete(r4);
    et_recs_free(&recs);
    et_engine_detach_all(base);
    et_adapter_free(rt);
    et_engine_free(base);
    et_engine_free(merged);
    lora_train_free(&lt);
    lora_adapter_free(&ad);
    et_loader_close(lktr);
    et_loader_close(lkva);
    et_ds_close(dk);
    et_loader_close(ltr);
    et_loader_close(lva);
    et_loader_close(lte);
    et_ds_close(ds);
    et_ds_close(dt);
    et_train_llama_free(&tl);
    et_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_by_hand),
        cmocka_unit_test(test_vocab_demo_texts),
        cmocka_unit_test(test_vocab_errors),
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_pipeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
