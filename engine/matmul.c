/* engine/matmul.c — y = W x for a batch of activation rows, threads
 * splitting W's rows, plus the LoRA terms y += s * B (A x)
 * (llama.cpp src/llama-graph.cpp build_lora_mm). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define ROW_TILE 16   /* weight rows kept hot while every token passes over them */

typedef struct mm_job {
    const et_wmat *w;
    et_dot_fn dot;
    const uint8_t *act;      /* [n_tok] rows of act_stride bytes */
    size_t act_stride;
    int n_tok;
    float *y;
    int accumulate;
    float alpha;
} mm_job;

static void mm_work(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const et_wmat *w = j->w;
    int r0 = (int)((int64_t)w->n_out * ith / nth), r1 = (int)((int64_t)w->n_out * (ith + 1) / nth);
    const uint8_t *wd = w->data;
    for (int rb = r0; rb < r1; rb += ROW_TILE) {
        int re = rb + ROW_TILE < r1 ? rb + ROW_TILE : r1;
        for (int t = 0; t < j->n_tok; t++) {
            const void *xa = j->act + (size_t)t * j->act_stride;
            float *yt = j->y + (size_t)t * w->n_out;
            for (int r = rb; r < re; r++) {
                float v = j->dot(w->n_in, wd + (size_t)r * w->row_bytes, xa);
                if (j->accumulate) {
                    float p = j->alpha * v;
                    yt[r] = yt[r] + p;
                } else {
                    yt[r] = v;
                }
            }
        }
    }
}

static int ensure(void **buf, size_t *cap, size_t need, et_err *e) {
    if (need <= *cap) return 0;
    void *p = realloc(*buf, need);
    if (!p) return et_fail(e, ET_ERUN, "engine: out of memory (%zu bytes of scratch)", need);
    *buf = p;
    *cap = need;
    return 0;
}

static int matmul_plain(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, int accumulate,
                        float alpha, et_err *e) {
    et_dot_fn dot = et_kernels_dot(s->k, w->type);
    if (!dot) return et_fail(e, ET_EINPUT, "engine: tensor '%s' has an unsupported type %u", w->name, w->type);
    size_t stride = et_act_bytes(w->type, w->n_in);
    stride = (stride + 63) & ~(size_t)63;
    if (ensure(&s->act, &s->act_cap, stride * (size_t)n_tok, e)) return ET_ERUN;
    for (int t = 0; t < n_tok; t++)
        et_act_convert(w->type, x + (size_t)t * w->n_in, (uint8_t *)s->act + (size_t)t * stride, w->n_in);
    mm_job j = {w, dot, s->act, stride, n_tok, y, accumulate, alpha};
    et_pool_run(s->pool, mm_work, &j);
    return 0;
}

int et_wmat_matmul(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, int accumulate, float alpha,
              int with_lora, et_err *e) {
    int rc = matmul_plain(s, w, x, n_tok, y, accumulate, alpha, e);
    if (rc || !with_lora) return rc;
    for (int i = 0; i < w->n_lora; i++) {
        const et_lora_use *u = &w->lora[i];
        int rank = u->a->n_out;
        size_t need = (size_t)rank * (size_t)n_tok * sizeof(float);
        size_t cap_bytes = s->lora_cap * sizeof(float);
        if (ensure((void **)&s->lora_t, &cap_bytes, need, e)) return ET_ERUN;
        s->lora_cap = cap_bytes / sizeof(float);
        if ((rc = matmul_plain(s, u->a, x, n_tok, s->lora_t, 0, 1.0f, e))) return rc;
        if ((rc = matmul_plain(s, u->b, s->lora_t, n_tok, y, 1, u->scale * (accumulate ? alpha : 1.0f), e)))
            return rc;
    }
    return 0;
}
