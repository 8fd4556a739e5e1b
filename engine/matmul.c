/* engine/matmul.c — y = W x for a batch of activation rows, threads
 * splitting W's rows (several matrices that read the same input share one
 * job: q/k/v, gate/up), plus the LoRA terms y += s * B (A x)
 * (llama.cpp src/llama-graph.cpp build_lora_mm). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define ROW_TILE 16     /* weight rows kept hot while every token passes over them */
#define MAX_MATS 4

typedef struct mm_mat {
    const et_wmat *w;
    et_dot_fn dot;
    et_dot4_fn dot4;         /* NULL: single dots only */
    et_gemv_fn gemv;         /* NULL: one dot per row for a single token */
    const uint8_t *act;      /* [n_tok] rows of act_stride bytes */
    size_t act_stride;
    float *y;                /* [n_tok][w->n_out] */
} mm_mat;

typedef struct mm_job {
    mm_mat mats[MAX_MATS];
    int n_mats;
    int64_t rows;            /* sum of n_out */
    int n_tok;
    int n_chunks;            /* the rows are cut into this many equal chunks */
    int accumulate;
    float alpha;
} mm_job;

static inline void store(const mm_job *j, float *y, float v) {
    if (j->accumulate) {
        float p = j->alpha * v;
        *y = *y + p;
    } else {
        *y = v;
    }
}

/* Rows [r0, r1) of one matrix for every token. */
static void mm_rows(const mm_job *j, const mm_mat *mm, int r0, int r1) {
    const et_wmat *w = mm->w;
    const uint8_t *wd = w->data;
    for (int rb = r0; rb < r1; rb += ROW_TILE) {
        int re = rb + ROW_TILE < r1 ? rb + ROW_TILE : r1;
        int t = 0;
        if (mm->dot4)
            for (; t + 4 <= j->n_tok; t += 4) {
                const uint8_t *xa = mm->act + (size_t)t * mm->act_stride;
                for (int r = rb; r < re; r++) {
                    float v[4];
                    mm->dot4(w->n_in, wd + (size_t)r * w->row_bytes, xa, mm->act_stride, v);
                    for (int k = 0; k < 4; k++) store(j, mm->y + (size_t)(t + k) * w->n_out + r, v[k]);
                }
            }
        for (; t < j->n_tok; t++) {
            const void *xa = mm->act + (size_t)t * mm->act_stride;
            float *yt = mm->y + (size_t)t * w->n_out;
            if (mm->gemv) {
                float v[ROW_TILE];
                mm->gemv(w->n_in, wd + (size_t)rb * w->row_bytes, w->row_bytes, re - rb, xa, v);
                for (int r = rb; r < re; r++) store(j, yt + r, v[r - rb]);
                continue;
            }
            for (int r = rb; r < re; r++) store(j, yt + r, mm->dot(w->n_in, wd + (size_t)r * w->row_bytes, xa));
        }
    }
}

static void mm_work(void *arg, int ith, int chunk) {
    (void)ith;
    const mm_job *j = arg;
    int64_t g0 = j->rows * chunk / j->n_chunks, g1 = j->rows * (chunk + 1) / j->n_chunks, base = 0;
    for (int i = 0; i < j->n_mats; i++) {
        const mm_mat *mm = &j->mats[i];
        int64_t n = mm->w->n_out, lo = g0 > base ? g0 - base : 0, hi = g1 - base < n ? g1 - base : n;
        if (lo < hi) mm_rows(j, mm, (int)lo, (int)hi);
        base += n;
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

/* One job over n matrices with the same n_in; each converted input is
 * made once per vec_dot_type. */
static int matmul_plain(et_state *s, int n, const et_wmat *const *w, const float *x, int n_tok, float *const *y,
                        int accumulate, float alpha, et_err *e) {
    mm_job j;
    memset(&j, 0, sizeof j);
    j.n_mats = n;
    j.n_tok = n_tok;
    j.accumulate = accumulate;
    j.alpha = alpha;
    size_t off[MAX_MATS], total = 0;
    for (int i = 0; i < n; i++) {
        mm_mat *mm = &j.mats[i];
        mm->w = w[i];
        mm->y = y[i];
        mm->dot = et_kernels_dot(s->k, w[i]->type);
        mm->dot4 = et_kernels_dot4(s->k, w[i]->type);
        mm->gemv = et_kernels_gemv(s->k, w[i]->type);
        if (!mm->dot) return et_fail(e, ET_EINPUT, "engine: tensor '%s' has an unsupported type %u", w[i]->name, w[i]->type);
        mm->act_stride = (et_act_bytes(w[i]->type, w[i]->n_in) + 63) & ~(size_t)63;
        off[i] = total;
        for (int k = 0; k < i; k++)
            if (et_vec_dot_type(w[k]->type) == et_vec_dot_type(w[i]->type) && w[k]->n_in == w[i]->n_in) {
                off[i] = off[k];
                break;
            }
        if (off[i] == total) total += mm->act_stride * (size_t)n_tok;
        j.rows += w[i]->n_out;
    }
    if (ensure(&s->act, &s->act_cap, total, e)) return ET_ERUN;
    for (int i = 0; i < n; i++) {
        mm_mat *mm = &j.mats[i];
        mm->act = (const uint8_t *)s->act + off[i];
        int done = 0;
        for (int k = 0; k < i; k++) done |= off[k] == off[i];
        if (done) continue;
        for (int t = 0; t < n_tok; t++)
            et_act_convert(w[i]->type, x + (size_t)t * w[i]->n_in, (uint8_t *)s->act + off[i] + (size_t)t * mm->act_stride,
                           w[i]->n_in);
    }
    /* a few chunks per thread (claimed dynamically), of at least ROW_TILE rows */
    int nth = et_pool_size(s->pool);
    int64_t max_chunks = (j.rows + ROW_TILE - 1) / ROW_TILE;
    j.n_chunks = nth == 1 ? 1 : (int)(max_chunks < 4 * nth ? max_chunks : 4 * nth);
    et_pool_run(s->pool, mm_work, &j, j.n_chunks);
    return 0;
}

static int add_lora(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, float alpha, et_err *e) {
    for (int i = 0; i < w->n_lora; i++) {
        const et_lora_use *u = &w->lora[i];
        int rank = u->a->n_out, rc;
        size_t cap_bytes = s->lora_cap * sizeof(float);
        if (ensure((void **)&s->lora_t, &cap_bytes, (size_t)rank * (size_t)n_tok * sizeof(float), e)) return ET_ERUN;
        s->lora_cap = cap_bytes / sizeof(float);
        float *t = s->lora_t;
        if ((rc = matmul_plain(s, 1, &u->a, x, n_tok, &t, 0, 1.0f, e))) return rc;
        if ((rc = matmul_plain(s, 1, &u->b, s->lora_t, n_tok, &y, 1, u->scale * alpha, e))) return rc;
    }
    return 0;
}

int et_wmat_matmul_multi(et_state *s, int n, const et_wmat *const *w, const float *x, int n_tok, float *const *y,
                    et_err *e) {
    if (n < 1 || n > MAX_MATS) return et_fail(e, ET_EUSAGE, "engine: %d matrices in one job", n);
    int rc = matmul_plain(s, n, w, x, n_tok, y, 0, 1.0f, e);
    for (int i = 0; !rc && i < n; i++) rc = add_lora(s, w[i], x, n_tok, y[i], 1.0f, e);
    return rc;
}

int et_wmat_matmul(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, int accumulate, float alpha,
              int with_lora, et_err *e) {
    int rc = matmul_plain(s, 1, &w, x, n_tok, &y, accumulate, alpha, e);
    if (rc || !with_lora) return rc;
    return add_lora(s, w, x, n_tok, y, accumulate ? alpha : 1.0f, e);
}
