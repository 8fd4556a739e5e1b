/* bench/bench_eval.c — classify throughput (SST-2) beside the engine's own
 * prompt-processing rate, measured in the same run (issue: evaluation §5).
 *
 *   build/bench/bench_eval [MODEL.gguf [N_RECORDS [THREADS]]]
 *
 * For each of 5 rounds: (1) the engine's prompt processing, tokens/s, over
 * the same rendered prompts + verbalizers fed from an empty cache in one
 * et_forward each; (2) `eval --task classify` on the first N records,
 * examples/s.  The token-bound rate is pp tokens/s divided by the tokens an
 * example needs at best (its prompt once plus each verbalizer's new tokens,
 * counted by the scorer itself); the ratio examples/s / token-bound rate is
 * the figure of merit (target >= 0.8).  Medians of the rounds are printed.
 * Without arguments: ../shared stories260K (300 records), then the real
 * SmolLM2-135M-Instruct when scripts/get_models.sh has fetched it (100
 * records); 1 thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../datasets/ingest.h"
#include "../eval/eval.h"
#include "../eval/internal.h"
#include "bench_util.h"

static int bench_one(const char *model, long n_rec, int threads) {
    char data[4096];
    snprintf(data, sizeof data, "%s/data/sst2/test.tsv", et_shared_dir());
    FILE *f = fopen(model, "rb"), *g = fopen(data, "rb");
    if (!f || !g) {
        printf("bench_eval: SKIP (%s or %s absent)\n", model, data);
        if (f) fclose(f);
        if (g) fclose(g);
        return 0;
    }
    fclose(f);
    fclose(g);
    et_eval_opts o = et_eval_defaults();
    o.model = model;
    o.task = "classify";
    o.data = data;
    o.template_ = "Review: {text}\\nSentiment:";
    o.labels = " negative, positive";
    o.max_records = n_rec;
    o.n_threads = threads;
    et_err e = {0};
    et_recs recs;
    if (et_recs_read(&o, &recs, &e)) {
        printf("bench_eval: %s\n", e.msg);
        return 1;
    }
    et_engine *m;
    if (et_engine_load(&m, model, &e)) {
        printf("bench_eval: %s\n", e.msg);
        return 1;
    }
    /* the sequences: prompt + each verbalizer, and the tokens an example needs at best */
    long n = recs.n < n_rec ? recs.n : n_rec, need = 0, total = 0;
    int32_t **seq = calloc((size_t)n * 2, sizeof *seq);
    int *len = calloc((size_t)n * 2, sizeof *len);
    for (long i = 0; i < n; i++) {
        int32_t *p = NULL;
        size_t np = 0;
        et_tok_encode(m->tok, recs.r[i].prompt, strlen(recs.r[i].prompt), ET_TOK_DEFAULT_BOS, &p, &np, &e);
        need += (long)np;
        for (int c = 0; c < 2; c++) {
            char buf[4096];
            snprintf(buf, sizeof buf, "%s%s", recs.r[i].prompt, recs.verbalizers[c]);
            size_t ns = 0;
            et_tok_encode(m->tok, buf, strlen(buf), ET_TOK_DEFAULT_BOS, &seq[2 * i + c], &ns, &e);
            len[2 * i + c] = (int)ns;
            size_t k = 0;
            while (k < np && k < ns && p[k] == seq[2 * i + c][k]) k++;
            need += (long)(ns - k);
            total += (long)ns;
        }
        free(p);
    }
    et_state_opts so = et_state_default_opts();
    so.n_threads = threads;
    so.kv_type = GGML_TYPE_F32;
    so.n_ctx = 512;
    et_state *st;
    if (et_state_new(&st, m, &so, &e)) {
        printf("bench_eval: %s\n", e.msg);
        return 1;
    }
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    enum { R = 5 };
    double pp[R], ex[R], ratio[R];
    for (int r = 0; r < R; r++) {
        double t0 = now();
        for (long i = 0; i < 2 * n; i++) {
            et_state_reset(st);
            et_forward(st, seq[i], len[i], logits, 0, &e);
        }
        pp[r] = (double)total / (now() - t0);
        cJSON *res = NULL;
        if (et_eval_run(&o, &res, &e)) {
            printf("bench_eval: %s\n", e.msg);
            return 1;
        }
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(res, "speed");
        ex[r] = cJSON_GetObjectItemCaseSensitive(sp, "examples_per_s")->valuedouble;
        ratio[r] = ex[r] / (pp[r] / ((double)need / (double)n));
        cJSON_Delete(res);
    }
    printf("bench_eval: %s, SST-2 classify, %ld records, %d thread(s); medians of %d rounds\n", model, n, threads, R);
    printf("  engine prompt processing  %10.0f tokens/s (prompt + verbalizer from an empty cache)\n", median(pp, R));
    printf("  tokens an example needs   %10.1f at best (prompt once + new verbalizer tokens); %.1f without reuse\n",
           (double)need / (double)n, (double)total / (double)n);
    printf("  token-bound rate          %10.1f examples/s\n", median(pp, R) / ((double)need / (double)n));
    printf("  classify                  %10.1f examples/s  = %.2fx the token-bound rate (target >= 0.8)\n",
           median(ex, R), median(ratio, R));
    for (long i = 0; i < 2 * n; i++) free(seq[i]);
    free(seq);
    free(len);
    free(logits);
    et_state_free(st);
    et_engine_free(m);
    et_recs_free(&recs);
    return 0;
}

/* The real SmolLM2-135M-Instruct: ../shared first, then the cache of scripts/get_models.sh. */
static const char *smollm2(char *buf, size_t cap) {
    const char *name = "SmolLM2-135M-Instruct.Q4_1.gguf";
    snprintf(buf, cap, "%s/models/smollm2-135m-instruct/%s", et_shared_dir(), name);
    if (access(buf, R_OK) == 0) return buf;
    const char *c = getenv("ET_MODEL_CACHE"), *h = getenv("HOME");
    if (c) snprintf(buf, cap, "%s/%s", c, name);
    else snprintf(buf, cap, "%s/.cache/edgetune/%s", h ? h : ".", name);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) return bench_one(argv[1], argc > 2 ? atol(argv[2]) : 300, argc > 3 ? atoi(argv[3]) : 1);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/models/stories260K/stories260K.gguf", et_shared_dir());
    int rc = bench_one(buf, 300, 1);
    if (rc) return rc;
    const char *m = smollm2(buf, sizeof buf);
    if (!m) {
        printf("bench_eval: SmolLM2-135M-Instruct absent (scripts/get_models.sh fetches it): skipped\n");
        return 0;
    }
    return bench_one(m, 100, 1);
}
