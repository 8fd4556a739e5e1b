/* engine/imatrix.c — the calibration run of llama-imatrix over the engine's
 * forward, collecting through the matmul hook (engine.h et_imatrix_run;
 * the statistics and file formats are quant/imatrix.[ch]). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../quant/imatrix.h"
#include "internal.h"

typedef struct collect {
    et_imatrix *im;
    int process_output;
} collect;

/* collect_imatrix's "ask" test (only MUL_MAT on F32 input of >= 16 rows,
 * of weights named blk.* or, with --process-output, output.weight), then
 * the sums. */
static int on_matmul(void *user, const et_wmat *w, const float *x, int n_tok, et_err *e) {
    const collect *c = user;
    if (n_tok < 16) return 0;
    if (strncmp(w->name, "blk.", 4) && !(c->process_output && !strcmp(w->name, "output.weight"))) return 0;
    return et_imatrix_accumulate(c->im, w->name, x, n_tok, w->n_in, e);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int et_imatrix_run(et_state *s, const int32_t *tokens, size_t n, const et_imatrix_opts *o, et_imatrix *im,
                   et_imatrix_progress progress, void *user, et_err *e) {
    const int n_ctx = o->n_ctx > 0 ? o->n_ctx : 512;
    if (n_ctx > s->n_ctx)
        return et_fail(e, ET_EUSAGE, "imatrix: a context of %d tokens exceeds the state's %d", n_ctx, s->n_ctx);
    if (n < 2 * (size_t)n_ctx)
        return et_fail(e, ET_EINPUT, "imatrix: you need at least %d tokens for a context of %d tokens (the data "
                       "has %zu)", 2 * n_ctx, n_ctx, n);
    size_t n_chunk_max = n / (size_t)n_ctx;
    int n_chunk = o->n_chunks < 0 || (size_t)o->n_chunks > n_chunk_max ? (int)n_chunk_max : o->n_chunks;
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)n_ctx);
    if (!buf) return et_fail(e, ET_ERUN, "imatrix: out of memory");
    collect c = {im, o->process_output};
    et_matmul_hook old = s->hook;
    void *old_user = s->hook_user;
    et_state_set_matmul_hook(s, on_matmul, &c);
    double t0 = now_s();
    int rc = 0;
    float *logits = NULL;
    if (o->process_output) {
        logits = malloc(sizeof(float) * (size_t)s->n_batch * (size_t)s->m->hp.n_vocab);
        if (!logits) rc = et_fail(e, ET_ERUN, "imatrix: out of memory");
    }
    for (int i = 0; i < n_chunk && !rc; i++) {
        memcpy(buf, tokens + (size_t)i * (size_t)n_ctx, sizeof(int32_t) * (size_t)n_ctx);
        if (o->bos >= 0) buf[0] = o->bos;
        et_state_reset(s);
        /* one forward per ubatch; logits (all of them, so that the LM head
         * sees every row) only when output.weight is collected: llama-imatrix
         * computes them for its perplexity, which does not change other sums */
        for (int j = 0; j < n_ctx && !rc; j += s->n_batch) {
            int m = n_ctx - j < s->n_batch ? n_ctx - j : s->n_batch;
            rc = et_forward(s, buf + j, m, logits, logits != NULL, e);
        }
        if (!rc && progress) progress(user, i, n_chunk, now_s() - t0);
    }
    et_state_set_matmul_hook(s, old, old_user);
    free(logits);
    free(buf);
    if (rc) return rc;
    int32_t last = 0;
    for (int k = 0; k < im->n_entries; k++)
        if (im->e[k].ncall > last) last = im->e[k].ncall;
    im->chunk_count = last;
    im->chunk_size = n_ctx;
    return 0;
}
