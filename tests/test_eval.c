/* tests/test_eval.c — eval/: the tasks against the golden NLL, against the
 * engine's own perplexity and against independent recomputations in double;
 * the teacher-logits file against the engine's logits; bad input. */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../datasets/dataset.h"
#include "../datasets/ingest.h"
#include "../datasets/teacher.h"
#include "../engine/engine.h"
#include "../eval/eval.h"
#include "../eval/internal.h"
#include "../eval/logits.h"
#include "testutil.h"

/* Path of name in the temporary folder, written with content unless NULL. */
static const char *tmp_file(const char *name, const char *content) {
    const char *p = test_tmp(name);
    if (content) test_spit(p, content);
    return p;
}

static double metric(const cJSON *r, const char *k) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "metrics"), k);
    assert_true(cJSON_IsNumber(m));
    return m->valuedouble;
}

/* 1. perplexity of the golden sentence: 34 tokens scored, NLL 54.404121 (llama2.c reference). */
static void test_perplexity_golden(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    const char *txt = tmp_file("golden.txt", "One day, a clever fox found a shiny key under the old oak tree.");
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.data = txt;
    cJSON *r = NULL;
    et_err e = {0};
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_int_equal((int)metric(r, "tokens_scored"), 34);
    assert_true(fabs(metric(r, "nll_per_token") * 34 - 54.404121) < 0.01);
    /* the result validates and survives a write + read */
    const char *js = tmp_file("golden.json", NULL);
    assert_int_equal(et_eval_write_json(r, js, &e), 0);
    cJSON *back = NULL;
    assert_int_equal(et_eval_read_json(js, &back, &e), 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(back, "schema")->valuestring, ET_EVAL_SCHEMA);
    assert_true(metric(back, "ppl") > 4.9 && metric(back, "ppl") < 5.0);
    cJSON_Delete(back);
    cJSON_Delete(r);
}

/* 2. "all" scoring equals the engine's et_perplexity; "llama" scoring equals
 * a hand-made chunking with BOS replacement and the second half scored. */
static void test_perplexity_scorings(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(ts, "data/tinystories_sample.txt");
    et_map mp;
    et_err e = {0};
    assert_int_equal(et_map_open(&mp, ts, &e), 0);
    char *text = strndup((const char *)mp.data, 6000);
    et_map_close(&mp);
    const char *txt = tmp_file("ts6k.txt", text);
    et_engine *m;
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(m->tok, text, strlen(text), ET_TOK_DEFAULT_BOS, &ids, &n, &e), 0);
    et_state_opts so = et_state_default_opts();
    so.n_ctx = 64;
    so.kv_type = GGML_TYPE_F32;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &so, &e), 0);
    et_ppl ref;
    assert_int_equal(et_perplexity(s, ids, n, 64, &ref, &e), 0);
    /* llama: n/64 chunks, first token -> BOS, positions 32..62 predict 33..63 */
    double nll = 0;
    long cnt = 0;
    float *lg = malloc(sizeof(float) * 64 * (size_t)m->hp.n_vocab);
    for (size_t c = 0; c < n / 64; c++) {
        int32_t w[64];
        memcpy(w, ids + c * 64, sizeof w);
        w[0] = et_tok_bos(m->tok);
        et_state_reset(s);
        assert_int_equal(et_forward(s, w, 64, lg, 1, &e), 0);
        for (int p = 32; p < 63; p++) {
            const float *row = lg + (size_t)p * m->hp.n_vocab;
            double mx = row[0], z = 0;
            for (int v = 0; v < m->hp.n_vocab; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < m->hp.n_vocab; v++) z += exp(row[v] - mx);
            nll += mx + log(z) - row[w[p + 1]];
            cnt++;
        }
    }
    free(lg);
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.data = txt;
    o.n_ctx = 64;
    cJSON *r = NULL;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_int_equal((long)metric(r, "tokens_scored"), ref.n_scored);
    assert_true(fabs(metric(r, "nll_per_token") - ref.nll / ref.n_scored) < 1e-9);
    cJSON_Delete(r);
    o.scoring = "llama";
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_int_equal((long)metric(r, "tokens_scored"), cnt);
    assert_true(fabs(metric(r, "nll_per_token") - nll / cnt) < 1e-9);
    cJSON_Delete(r);
    free(ids);
    free(text);
    et_state_free(s);
    et_engine_free(m);
}

/* 2b. llama scoring on a vocabulary that adds no BOS (SmolLM2: add_bos_token
 * false): each chunk's first token stays as it is, as llama-perplexity does. */
static void test_llama_scoring_no_bos(void **st) {
    (void)st;
    char model[4096];
    snprintf(model, sizeof model, "%s/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", et_shared_dir());
    if (access(model, R_OK) != 0) {
        const char *h = getenv("ET_MODEL_CACHE");
        if (h) snprintf(model, sizeof model, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", h);
        else snprintf(model, sizeof model, "%s/.cache/edgetune/SmolLM2-135M-Instruct.Q4_1.gguf", getenv("HOME") ? getenv("HOME") : ".");
    }
    if (access(model, R_OK) != 0 || getenv("ET_SANITIZED")) {
        fprintf(stderr, "SKIP: SmolLM2-135M-Instruct absent (scripts/get_models.sh fetches it) or sanitized build\n");
        skip();
    }
    SHARED_OR_SKIP(ts, "data/tinystories_sample.txt");
    et_map mp;
    et_err e = {0};
    assert_int_equal(et_map_open(&mp, ts, &e), 0);
    char *text = strndup((const char *)mp.data, 1500);
    et_map_close(&mp);
    const char *txt = tmp_file("ts1500.txt", text);
    et_engine *m;
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    assert_int_equal(et_tok_add_bos(m->tok), 0);
    int32_t *ids;
    size_t n;
    assert_int_equal(et_tok_encode(m->tok, text, strlen(text), ET_TOK_DEFAULT_BOS, &ids, &n, &e), 0);
    assert_true(n >= 256);
    et_state_opts so = et_state_default_opts();
    so.n_ctx = 128;
    so.kv_type = GGML_TYPE_F32;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &so, &e), 0);
    int V = m->hp.n_vocab;
    float *lg = malloc(sizeof(float) * 128 * (size_t)V);
    double nll = 0;
    long cnt = 0;
    for (size_t c = 0; c < n / 128; c++) {
        et_state_reset(s);
        assert_int_equal(et_forward(s, ids + c * 128, 128, lg, 1, &e), 0); /* no BOS put in */
        for (int p = 64; p < 127; p++) {
            nll -= et_logprob(lg + (size_t)p * V, V, ids[c * 128 + p + 1]);
            cnt++;
        }
    }
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.data = txt;
    o.n_ctx = 128;
    o.scoring = "llama";
    cJSON *r = NULL;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_int_equal((long)metric(r, "tokens_scored"), cnt);
    assert_true(fabs(metric(r, "nll_per_token") - nll / cnt) < 1e-9);
    cJSON_Delete(r);
    free(lg);
    free(ids);
    free(text);
    et_state_free(s);
    et_engine_free(m);
}

/* 2c. generate on chat records with the model's template (the real SmolLM2,
 * ChatML): the completion tokens scored are exactly those `edgetune data`
 * trains for the same records (an independent path: the ingest mask). */
static void test_generate_chat(void **st) {
    (void)st;
    char model[4096];
    snprintf(model, sizeof model, "%s/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", et_shared_dir());
    if (access(model, R_OK) != 0)
        snprintf(model, sizeof model, "%s/SmolLM2-135M-Instruct.Q4_1.gguf",
                 getenv("ET_MODEL_CACHE") ? getenv("ET_MODEL_CACHE") : "/root/.cache/edgetune");
    if (access(model, R_OK) != 0 || getenv("ET_SANITIZED") || access("./edgetune", X_OK) != 0) {
        fprintf(stderr, "SKIP: SmolLM2-135M-Instruct absent (scripts/get_models.sh fetches it), ./edgetune not built, "
                        "or sanitized build\n");
        skip();
    }
    const char *chat = tmp_file("chat.jsonl",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"You are brief.\"}, {\"role\": \"user\", \"content\": "
        "\"What is the capital of France?\"}, {\"role\": \"assistant\", \"content\": \"Paris.\"}]}\n"
        "{\"instruction\": \"Name a primary colour.\", \"input\": \"\", \"output\": \"Red.\"}\n");
    const char *h5 = tmp_file("chat.h5", NULL), *samples = tmp_file("chat_samples.jsonl", NULL);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s", model, chat, h5);
    assert_int_equal(system(cmd), 0);
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, h5, &e), 0);
    uint8_t mask[4096];
    assert_true(ds->n_tokens < 4096);
    assert_int_equal(et_ds_read_mask(ds, 0, ds->n_tokens, mask, &e), 0);
    long trained = 0;
    for (int64_t i = 0; i < ds->n_tokens; i++) trained += mask[i];
    et_ds_close(ds);
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "generate";
    o.data = chat;
    o.n_predict = 12;
    o.samples = samples;
    cJSON *r = NULL;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_int_equal((long)metric(r, "loss_tokens"), trained);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "task");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(t, "chat_template")->valuestring, "chatml");
    cJSON_Delete(r);
    FILE *f = fopen(samples, "rb");
    char line[8192];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    cJSON *j = cJSON_Parse(line);
    assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(j, "prompt")->valuestring, "<|im_start|>assistant\n"));
    assert_null(strstr(cJSON_GetObjectItemCaseSensitive(j, "pred")->valuestring, "<|im_end|>"));
    cJSON_Delete(j);
}

/* 3. classify: every choice's log-likelihood from the KV-reusing scorer equals
 * NLL(prompt) - NLL(prompt + verbalizer) from a fresh state; accuracy and
 * macro-F1 recomputed from the samples. */
static void test_classify_independent(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    const char *tsv = tmp_file("cls.tsv",
                               "sentence\tlabel\nthe dog was happy and played all day\t1\nthe cat was sad and cried\t0\n"
                               "Lily loved the big red ball\t1\nTom was angry at the storm\t0\nthey had fun at the park\t1\n");
    const char *samples = tmp_file("cls.jsonl", NULL);
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "classify";
    o.data = tsv;
    o.template_ = "Story: {text}\\nFeeling:";
    o.labels = " sad, happy";
    o.samples = samples;
    cJSON *r = NULL;
    et_err e = {0};
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    et_engine *m;
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    et_state_opts so = et_state_default_opts();
    so.kv_type = GGML_TYPE_F32;
    so.n_ctx = 256;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &so, &e), 0);
    et_map mp;
    assert_int_equal(et_map_open(&mp, samples, &e), 0);
    char *all = strndup((const char *)mp.data, mp.size);
    et_map_close(&mp);
    int n = 0, correct = 0, tp[2] = {0}, fp[2] = {0}, fn[2] = {0};
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n"), n++) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const char *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt")->valuestring;
        assert_non_null(strstr(prompt, "Story: "));
        assert_non_null(strstr(prompt, "\nFeeling:"));
        const cJSON *ll = cJSON_GetObjectItemCaseSensitive(j, "loglik");
        for (int c = 0; c < 2; c++) {
            const char *verb = c ? " happy" : " sad";
            char full[1024];
            snprintf(full, sizeof full, "%s%s", prompt, verb);
            int32_t *a, *b;
            size_t na, nb;
            assert_int_equal(et_tok_encode(m->tok, prompt, strlen(prompt), ET_TOK_DEFAULT_BOS, &a, &na, &e), 0);
            assert_int_equal(et_tok_encode(m->tok, full, strlen(full), ET_TOK_DEFAULT_BOS, &b, &nb, &e), 0);
            size_t k = 0;
            while (k < na && k < nb && a[k] == b[k]) k++;
            et_ppl p1 = {0}, p2 = {0};
            assert_int_equal(et_nll(s, b, (int)k, &p1, &e), 0);
            assert_int_equal(et_nll(s, b, (int)nb, &p2, &e), 0);
            double want = -(p2.nll - p1.nll);
            assert_true(fabs(cJSON_GetArrayItem(ll, c)->valuedouble - want) < 1e-4);
            free(a);
            free(b);
        }
        int gold = cJSON_GetObjectItemCaseSensitive(j, "gold")->valueint;
        int pred = cJSON_GetObjectItemCaseSensitive(j, "pred")->valueint;
        correct += gold == pred;
        if (gold == pred) tp[gold]++;
        else {
            fp[pred]++;
            fn[gold]++;
        }
        cJSON_Delete(j);
    }
    assert_int_equal(n, 5);
    assert_true(fabs(metric(r, "accuracy") - correct / 5.0) < 1e-12);
    double f1 = 0;
    for (int c = 0; c < 2; c++) f1 += 2 * tp[c] + fp[c] + fn[c] ? 2.0 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) : 0;
    assert_true(fabs(metric(r, "macro_f1") - f1 / 2) < 1e-12);
    free(all);
    cJSON_Delete(r);
    et_state_free(s);
    et_engine_free(m);
}

/* 4. logits: rows are the engine's log-softmax (float16), best first; KL of
 * the model against itself ~ 0, against another model equal to an exact
 * double computation; the top-k bound is below the exact KL. */
static void test_logits_and_kl(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    SHARED_OR_SKIP(other, "golden/quant/rand-llama-256.gguf");
    const char *txt = tmp_file("kl.txt", "Once upon a time there was a little girl named Lily. She liked to play in the park with "
                                         "her friends. One day she saw a big dog and she was scared.");
    const char *ref = tmp_file("ref.h5", NULL), *ref16 = tmp_file("ref16.h5", NULL);
    et_err e = {0};
    et_engine *m;
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    et_logits_opts lo = et_logits_defaults();
    lo.full = 1;
    lo.n_ctx = 32;
    double tps;
    int64_t rows;
    assert_int_equal(et_logits_run(m, model, txt, &lo, ref, &tps, &rows, &e), 0);
    lo.full = 0;
    lo.top_k = 16;
    assert_int_equal(et_logits_run(m, model, txt, &lo, ref16, &tps, &rows, &e), 0);
    /* rows against the engine */
    et_teacher *t;
    et_teacher_meta meta;
    assert_int_equal(et_teacher_open(&t, ref, &meta, &e), 0);
    assert_int_equal(meta.k, 512);
    int V = 512;
    int32_t *ids = malloc(sizeof(int32_t) * 32 * V);
    float *lp = malloc(sizeof(float) * 32 * V), tgt[32];
    uint8_t sc[32];
    assert_int_equal(et_teacher_read(t, 0, 32, ids, lp, tgt, sc, &e), 0);
    et_doc_tokens d;
    assert_int_equal(et_doc_tokens_read(m, txt, "all", &d, &e), 0);
    assert_int_equal(d.n_tokens, rows);
    et_state_opts so = et_state_default_opts();
    so.kv_type = GGML_TYPE_F32;
    so.n_ctx = 32;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &so, &e), 0);
    float *lg = malloc(sizeof(float) * 32 * V);
    assert_int_equal(et_forward(s, d.tok, 32, lg, 1, &e), 0);
    for (int p = 0; p < 32; p++) {
        const float *row = lg + (size_t)p * V;
        for (int j = 0; j < V; j++) {
            double want = et_logprob(row, V, ids[p * V + j]);
            assert_true(fabs(lp[p * V + j] - want) <= 2e-3 * fabs(want) + 1e-4);
            if (j) assert_true(lp[p * V + j] <= lp[p * V + j - 1]);
        }
        assert_int_equal(sc[p], p < 31);
        if (p < 31) assert_true(fabs(tgt[p] - et_logprob(row, V, d.tok[p + 1])) < 1e-5);
    }
    et_teacher_close(t);
    /* KL of the model against its own stored distribution */
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "kl";
    o.ref = ref;
    cJSON *r = NULL;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_true(fabs(metric(r, "kl_mean")) < 1e-3);
    assert_true(metric(r, "same_top1") == 1.0);
    assert_true(fabs(metric(r, "ppl_ratio") - 1) < 1e-6);
    cJSON_Delete(r);
    /* another model: exact KL in double from both models' logits */
    et_engine *m2;
    assert_int_equal(et_engine_load(&m2, other, &e), 0);
    et_state *s2;
    assert_int_equal(et_state_new(&s2, m2, &so, &e), 0);
    double kl_exact = 0;
    long cnt = 0;
    for (int64_t w0 = 0; w0 < d.n_tokens; w0 += 32) {
        int len = d.n_tokens - w0 < 32 ? (int)(d.n_tokens - w0) : 32;
        if (len < 2) continue;
        float *l1 = malloc(sizeof(float) * len * V), *l2 = malloc(sizeof(float) * len * V);
        et_state_reset(s);
        et_state_reset(s2);
        assert_int_equal(et_forward(s, d.tok + w0, len, l1, 1, &e), 0);
        assert_int_equal(et_forward(s2, d.tok + w0, len, l2, 1, &e), 0);
        for (int p = 0; p + 1 < len; p++) {
            for (int v = 0; v < V; v++) {
                double a = et_logprob(l1 + (size_t)p * V, V, v), b = et_logprob(l2 + (size_t)p * V, V, v);
                kl_exact += exp(a) * (a - b);
            }
            cnt++;
        }
        free(l1);
        free(l2);
    }
    kl_exact /= cnt;
    o.model = other;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_int_equal((long)metric(r, "tokens_scored"), cnt);
    assert_true(fabs(metric(r, "kl_mean") - kl_exact) < 2e-3 * kl_exact + 1e-3);
    double kl_full = metric(r, "kl_mean");
    cJSON_Delete(r);
    o.ref = ref16;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_true(metric(r, "kl_mean") <= kl_full + 1e-3);
    assert_true(metric(r, "kl_mean") > 0.3 * kl_full);
    cJSON_Delete(r);
    /* --ref-model: computed once into the cache, reused while it matches, remade when not */
    const char *cache = tmp_file("cache.h5", NULL);
    o.ref = cache;
    o.ref_model = model;
    o.data = txt;
    o.ref_full = 1;
    o.n_ctx = 32;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_true(fabs(metric(r, "kl_mean") - kl_full) < 1e-6 * kl_full + 1e-6);
    cJSON_Delete(r);
    struct stat st1, st2;
    assert_int_equal(stat(cache, &st1), 0);
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    cJSON_Delete(r);
    assert_int_equal(stat(cache, &st2), 0);
    assert_true(st1.st_ino == st2.st_ino); /* reused, not rewritten (writes rename a new file in) */
    o.ref_model = other; /* another reference: remade */
    o.model = model;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_true(fabs(metric(r, "kl_mean") - kl_full) > 1e-3);
    cJSON_Delete(r);
    assert_int_equal(stat(cache, &st2), 0);
    assert_true(st1.st_ino != st2.st_ino);
    free(lg);
    free(ids);
    free(lp);
    et_docs_tok_free(&d);
    et_state_free(s);
    et_state_free(s2);
    et_engine_free(m);
    et_engine_free(m2);
}

/* 5. choice and generate on tiny files: acc from the samples' log-likelihoods;
 * exact match after trimming; a stop string. */
static void test_choice_generate(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    const char *ch = tmp_file("ch.jsonl", "{\"context\": \"Once upon a time\", \"choices\": [\" there was\", \" purple seven\"], \"answer\": 0}\n"
                                          "\n{\"context\": \"The dog\", \"choices\": [\" xq zz\", \" ran\", \" ran fast\"], \"answer\": 1}\n");
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "choice";
    o.data = ch;
    cJSON *r = NULL;
    et_err e = {0};
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_true(metric(r, "acc") >= 0.5);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "task"), "records")->valuedouble, 2);
    cJSON_Delete(r);
    /* greedy generation: the model's own greedy continuation is an exact match
     * even with trailing whitespace in the gold */
    et_engine *m;
    assert_int_equal(et_engine_load(&m, model, &e), 0);
    et_state_opts so = et_state_default_opts();
    so.kv_type = GGML_TYPE_F32;
    et_state *s;
    assert_int_equal(et_state_new(&s, m, &so, &e), 0);
    et_sampler smp;
    et_sampler_params sp = et_sampler_default_params();
    sp.temp = 0;
    assert_int_equal(et_sampler_init(&smp, &sp, m->hp.n_vocab, &e), 0);
    int32_t *ids;
    size_t n;
    const char *prompt = "Once upon a time";
    assert_int_equal(et_tok_encode(m->tok, prompt, strlen(prompt), ET_TOK_DEFAULT_BOS, &ids, &n, &e), 0);
    int32_t out[8];
    int n_out = 0;
    assert_int_equal(et_generate(s, &smp, ids, (int)n, 8, 1, NULL, NULL, out, &n_out, NULL, &e), 0);
    char *txt;
    size_t tl;
    int32_t all[64];
    memcpy(all, ids, n * sizeof *ids);
    memcpy(all + n, out, (size_t)n_out * sizeof *out);
    char *ptxt;
    size_t pl;
    assert_int_equal(et_tok_decode(m->tok, all, n + (size_t)n_out, 0, &txt, &tl, &e), 0);
    assert_int_equal(et_tok_decode(m->tok, ids, n, 0, &ptxt, &pl, &e), 0);
    assert_true(tl > pl);
    char line[1024];
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "prompt", prompt);
    char *gold = strndup(txt + pl, tl - pl);
    char gold_ws[512];
    snprintf(gold_ws, sizeof gold_ws, "%s \n", gold);
    cJSON_AddStringToObject(rec, "completion", gold_ws);
    char *js = cJSON_PrintUnformatted(rec);
    snprintf(line, sizeof line, "%s\n", js);
    const char *gen = tmp_file("gen.jsonl", line);
    o.task = "generate";
    o.data = gen;
    o.n_predict = 8;
    assert_int_equal(et_eval_run(&o, &r, &e), 0);
    assert_true(metric(r, "exact_match") == 1.0);
    cJSON_Delete(r);
    free(js);
    free(gold);
    free(txt);
    free(ptxt);
    free(ids);
    cJSON_Delete(rec);
    et_sampler_free(&smp);
    et_state_free(s);
    et_engine_free(m);
}

/* 6. bad input: clear errors (exit 2 class), nothing written. */
static void test_bad_input(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "classify";
    cJSON *r = NULL;
    et_err e = {0};
    o.data = tmp_file("ok.tsv", "a good day\tpos\na bad day\tneg\n");
    o.template_ = "Review:\\nSentiment:";
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "{text}"));
    o.template_ = NULL;
    o.classes = "neg,pos";
    o.data = tmp_file("bad_label.tsv", "a good day\tpos\na bad day\tneutral\n");
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "line 2"));
    o.classes = NULL;
    o.data = tmp_file("empty.tsv", "");
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EINPUT);
    o.data = tmp_file("bad.jsonl", "{\"text\": \"x\", \"label\": \"a\"}\n{\"text\": \"y\", \n");
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "line 2"));
    o.task = "choice";
    o.data = tmp_file("bad_ans.jsonl", "{\"context\": \"x\", \"choices\": [\" a\", \" b\"], \"answer\": 2}\n");
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EINPUT);
    o.task = "nonsense";
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EUSAGE);
    o.task = "perplexity";
    o.data = tmp_file("empty.txt", "");
    assert_int_equal(et_eval_run(&o, &r, &e), ET_EINPUT);
    assert_null(r);
    /* a result with NaN is refused by the reader */
    const char *nanj = tmp_file("nan.json", "{\"schema\": \"edgetune.eval/1\", \"name\": \"x\", \"task\": {\"name\": \"kl\"}, "
                                            "\"metrics\": {\"kl_mean\": NaN}, \"primary\": {\"metric\": \"kl_mean\", \"value\": 1},"
                                            " \"artifact\": {\"bytes\": 1}}");
    assert_int_not_equal(et_eval_read_json(nanj, &r, &e), 0);
    /* a teacher file that is a plain tokens.h5 */
    et_teacher *t;
    assert_int_equal(et_teacher_open(&t, tmp_file("golden.txt", NULL), NULL, &e), ET_EINPUT);
}

/* 7. the template renderer and list splitter shared with `edgetune data`. */
static void test_template(void **st) {
    (void)st;
    char *s = et_render_template("Review: {text}\\nSentiment:{text}", "ok", 2);
    assert_string_equal(s, "Review: ok\nSentiment:ok");
    free(s);
    char **v;
    int n;
    et_err e = {0};
    assert_int_equal(et_split_list(" negative, positive", 8, &v, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], " negative");
    assert_string_equal(v[1], " positive");
    et_strs_free(v, n);
    assert_int_equal(et_split_list("a,,b", 8, &v, &n, &e), ET_EUSAGE);
}

static long count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* 8. the command line: data --test-out holds out records verbatim and the rest
 * is tokenized; eval writes its JSON only on success; exit codes 1 / 2. */
static void test_cli(void **st) {
    (void)st;
    SHARED_OR_SKIP(model, "models/stories260K/stories260K.gguf");
    if (access("./edgetune", X_OK) != 0) {
        fprintf(stderr, "SKIP: ./edgetune not built\n");
        skip();
    }
    char buf[4096] = "sentence\tlabel\n";
    for (int i = 0; i < 40; i++) {
        char row[96];
        snprintf(row, sizeof row, "story number %d was %s\t%d\n", i, i % 2 ? "happy" : "sad", i % 2);
        strcat(buf, row);
    }
    const char *tsv = tmp_file("cli.tsv", buf), *h5 = tmp_file("cli.h5", NULL), *test = tmp_file("cli_test.tsv", NULL);
    const char *js = tmp_file("cli.json", NULL);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "./edgetune data --tokenizer %s --input %s -o %s --template 'Story: {text}\\nFeeling:' "
             "--labels ' sad, happy' --test-fraction 0.25 --test-out %s --seed 3", model, tsv, h5, test);
    assert_int_equal(test_run(cmd), 0);
    assert_int_equal(count_lines(test), 1 + 10); /* the header + 10 records */
    et_ds *ds;
    et_err e = {0};
    assert_int_equal(et_ds_open(&ds, h5, &e), 0);
    assert_int_equal(ds->n_docs, 30);
    assert_int_equal(ds->n_labels, 2);
    et_ds_close(ds);
    /* every held-out line is a line of the input */
    FILE *f = fopen(test, "rb");
    char line[256];
    while (fgets(line, sizeof line, f)) assert_non_null(strstr(buf, line));
    fclose(f);
    snprintf(cmd, sizeof cmd, "./edgetune eval %s --task classify --data %s --template 'Story: {text}\\nFeeling:' "
             "--labels ' sad, happy' --json %s", model, test, js);
    assert_int_equal(test_run(cmd), 0);
    cJSON *r = NULL;
    assert_int_equal(et_eval_read_json(js, &r, &e), 0);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "task"), "records")->valuedouble, 10);
    cJSON_Delete(r);
    /* a malformed line: exit 2, no JSON */
    const char *bad = tmp_file("cli_bad.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \n");
    const char *js2 = tmp_file("cli_bad.json", NULL);
    snprintf(cmd, sizeof cmd, "./edgetune eval %s --task generate --data %s --json %s", model, bad, js2);
    assert_int_equal(test_run(cmd), 2);
    assert_int_equal(access(js2, F_OK), -1);
    snprintf(cmd, sizeof cmd, "./edgetune eval %s --task classify --data %s --template 'no placeholder' --json %s", model, tsv, js2);
    assert_int_equal(test_run(cmd), 2);
    assert_int_equal(access(js2, F_OK), -1);
    snprintf(cmd, sizeof cmd, "./edgetune eval %s --task nope --data %s", model, tsv);
    assert_int_equal(test_run(cmd), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perplexity_golden), cmocka_unit_test(test_perplexity_scorings), cmocka_unit_test(test_llama_scoring_no_bos), cmocka_unit_test(test_generate_chat),
        cmocka_unit_test(test_classify_independent), cmocka_unit_test(test_logits_and_kl),
        cmocka_unit_test(test_choice_generate), cmocka_unit_test(test_bad_input), cmocka_unit_test(test_template), cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
