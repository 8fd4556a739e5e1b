/* engine/perplexity.c — teacher-forced negative log-likelihood. */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

/* -ln softmax(logits)[target], with the log-sum-exp in double. */
static double token_nll(const float *logits, int n_vocab, int target) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - (double)mx);
    return log(sum) + (double)mx - (double)logits[target];
}

int et_nll(et_state *s, const int32_t *tokens, int n, et_ppl *r, et_err *e) {
    int n_vocab = s->m->hp.n_vocab, rc;
    if (n < 2) return 0;
    if (n > s->n_ctx) return et_fail(e, ET_EUSAGE, "perplexity: %d tokens exceed the context of %d", n, s->n_ctx);
    et_state_reset(s);
    /* logits for one batch at a time keep memory at n_batch * n_vocab */
    int B = s->n_batch;
    float *logits = malloc(sizeof(float) * (size_t)B * (size_t)n_vocab);
    if (!logits) return et_fail(e, ET_ERUN, "perplexity: out of memory");
    for (int i = 0; i < n - 1; i += B) {
        int c = n - 1 - i < B ? n - 1 - i : B;
        if ((rc = et_forward(s, tokens + i, c, logits, 1, e))) {
            free(logits);
            return rc;
        }
        for (int t = 0; t < c; t++) {
            int target = tokens[i + t + 1];
            if (target < 0 || target >= n_vocab) {
                free(logits);
                return et_fail(e, ET_EUSAGE, "perplexity: token %d at index %d is outside [0, %d)", target,
                               i + t + 1, n_vocab);
            }
            r->nll += token_nll(logits + (size_t)t * n_vocab, n_vocab, target);
            r->n_scored++;
        }
    }
    free(logits);
    r->ppl = r->n_scored ? exp(r->nll / (double)r->n_scored) : 0;
    return 0;
}

int et_perplexity(et_state *s, const int32_t *tokens, size_t n, int window, et_ppl *r, et_err *e) {
    r->nll = 0;
    r->n_scored = 0;
    r->ppl = 0;
    if (window <= 0 || window > s->n_ctx) window = s->n_ctx;
    if (window < 2) return et_fail(e, ET_EUSAGE, "perplexity: the window must hold at least 2 tokens");
    for (size_t i = 0; i < n; i += (size_t)window) {
        size_t c = n - i < (size_t)window ? n - i : (size_t)window;
        int rc = et_nll(s, tokens + i, (int)c, r, e);
        if (rc) return rc;
    }
    r->ppl = r->n_scored ? exp(r->nll / (double)r->n_scored) : 0;
    return 0;
}
