/* engine/sampler.c — greedy, temperature, top-k, top-p, min-p with a
 * seeded xoshiro256** generator (Blackman & Vigna, "Scrambled linear
 * pseudorandom number generators", 2018; seeded through splitmix64; the
 * step is common/et.c's et_xoshiro256ss, shared with train/rng.c).
 * The filter order is llama.cpp's default sampler chain
 * (common/sampling.cpp): top-k, top-p, min-p, then temperature, then a draw. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

void et_rng_seed(et_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = et_splitmix64(&seed);
}

uint64_t et_rng_next(et_rng *r) { return et_xoshiro256ss(r->s); }

float et_rng_uniform(et_rng *r) { return (float)(et_rng_next(r) >> 40) / 16777216.0f; }

typedef struct cand { float logit; int32_t id; } cand;

et_sampler_params et_sampler_default_params(void) {
    et_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 0};
    return p;
}

int et_sampler_init(et_sampler *s, const et_sampler_params *p, int n_vocab, et_err *e) {
    memset(s, 0, sizeof *s);
    if (n_vocab < 1) return et_fail(e, ET_EUSAGE, "sampler: n_vocab must be positive");
    if (p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1) || isnan(p->temp))
        return et_fail(e, ET_EUSAGE, "sampler: need top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1");
    s->p = *p;
    s->n_vocab = n_vocab;
    et_rng_seed(&s->rng, p->seed);
    s->idx = malloc(sizeof(int32_t) * (size_t)n_vocab);
    s->prob = malloc(sizeof(float) * (size_t)n_vocab);
    s->cand = malloc(sizeof(cand) * (size_t)n_vocab);
    if (!s->idx || !s->prob || !s->cand) {
        et_sampler_free(s);
        return et_fail(e, ET_ERUN, "sampler: out of memory");
    }
    return 0;
}

void et_sampler_free(et_sampler *s) {
    free(s->idx);
    free(s->prob);
    free(s->cand);
    s->idx = NULL;
    s->prob = NULL;
    s->cand = NULL;
}

int et_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}


/* Descending logit, ties by lower id (deterministic). */
static int by_logit(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The k best ids into s->idx[0..k), best first, ties to the lower id: one
 * pass keeping a sorted buffer (O(n) when k << n). */
static void top_k_select(et_sampler *s, const float *lg, int k) {
    int32_t *b = s->idx;
    int m = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        float v = lg[i];
        if (m == k && !(v > lg[b[m - 1]])) continue;
        int pos = m < k ? m : k - 1;   /* the slot freed (or the last one) */
        while (pos > 0 && v > lg[b[pos - 1]]) {   /* equal logits keep the earlier (lower) id first */
            b[pos] = b[pos - 1];
            pos--;
        }
        b[pos] = i;
        if (m < k) m++;
    }
}

/* Every id by descending logit, ties to the lower id. */
static void sort_all(et_sampler *s, const float *lg) {
    cand *c = s->cand;
    for (int i = 0; i < s->n_vocab; i++) {
        c[i].logit = lg[i];
        c[i].id = i;
    }
    qsort(c, (size_t)s->n_vocab, sizeof *c, by_logit);
    for (int i = 0; i < s->n_vocab; i++) s->idx[i] = c[i].id;
}

int et_sample(et_sampler *s, const float *logits) {
    int n = s->n_vocab;
    if (!(s->p.temp > 0)) return et_argmax(logits, n);
    /* candidates: the top k (sorted), all sorted (top-p needs the order), or all as they are */
    int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    if (k < n) top_k_select(s, logits, k);
    else if (s->p.top_p < 1.0f) sort_all(s, logits);
    else for (int i = 0; i < n; i++) s->idx[i] = i;
    float mx = logits[s->idx[0]];
    for (int i = 1; i < k; i++) mx = logits[s->idx[i]] > mx ? logits[s->idx[i]] : mx;
    /* softmax of the untempered candidates (relative to the best: p_max = 1) */
    double sum = 0;
    for (int i = 0; i < k; i++) {
        s->prob[i] = expf(logits[s->idx[i]] - mx);
        sum += s->prob[i];
    }
    /* top-p: the smallest prefix (candidates sorted here) with probability >= top_p */
    if (s->p.top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < k; i++) {
            cum += s->prob[i] / sum;
            if (cum >= s->p.top_p) {
                k = i + 1;
                break;
            }
        }
    }
    /* min-p: keep p >= min_p * p_max, order kept */
    if (s->p.min_p > 0) {
        int kk = 0;
        for (int i = 0; i < k; i++)
            if (s->prob[i] >= s->p.min_p) s->idx[kk++] = s->idx[i];
        /* the best has prob 1 >= min_p for finite logits; non-finite ones
         * (which et_forward refuses, but a caller may pass any array) can
         * leave nothing: keep the best candidate rather than index idx[-1] */
        k = kk > 0 ? kk : 1;
    }
    /* temperature on the survivors, then a draw */
    sum = 0;
    for (int i = 0; i < k; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - mx) / s->p.temp);
        sum += s->prob[i];
    }
    double r = (double)et_rng_uniform(&s->rng) * sum, cum = 0;
    for (int i = 0; i < k; i++) {
        cum += s->prob[i];
        if (r < cum) return s->idx[i];
    }
    return s->idx[k > 0 ? k - 1 : 0];
}
