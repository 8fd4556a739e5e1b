/* engine/matmul.c — y = W x for a batch of activation rows, threads
 * splitting W's rows (several matrices that read the same input share one
 * job: q/k/v, gate/up), plus the LoRA terms y += s * B (A x)
 * (llama.cpp src/llama-graph.cpp build_lora_mm). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "repack.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define ROW_TILE 16     /* weight rows kept hot while every token passes over them */
#define MAX_MATS 4

typedef struct mm_mat {
    const et_wmat *w;
    et_dot_fn dot;
    et_dot4_fn dot4;         /* NULL: single dots only */
    const et_repack *rp;     /* NULL: the rows are not repacked (or not for this kernel set) */
    size_t grp_bytes;        /* rp: bytes per group of 16 rows at w->packed */
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

/* Rows [r0, r1) of one matrix for every token, by single (or four-token) dots. */
/* et_wmat_row, inlined into the dot loop: the file's row, or the rebuilt one. */
static inline const void *wmat_row(const et_wmat *w, int r, void *buf) {
    if (r >= w->n_dropped) return (const uint8_t *)w->data + (size_t)r * w->row_bytes;
    const size_t gb = et_repack_group_bytes(w->type, w->n_in);
    et_repack_unpack_row(w->type, w->n_in, (const uint8_t *)w->packed + (size_t)(r / ET_RP_ROWS) * gb, r % ET_RP_ROWS,
                         buf);
    return buf;
}

const void *et_wmat_row(const et_wmat *w, int r, void *buf) { return wmat_row(w, r, buf); }

static void mm_rows_dot(const mm_job *j, const mm_mat *mm, int r0, int r1) {
    const et_wmat *w = mm->w;
    _Alignas(64) uint8_t buf[ET_WMAT_ROW_MAX];   /* a dropped row, rebuilt (not the repacked kernels' path) */
    for (int rb = r0; rb < r1; rb += ROW_TILE) {
        int re = rb + ROW_TILE < r1 ? rb + ROW_TILE : r1;
        int t = 0;
        if (mm->dot4)
            for (; t + 4 <= j->n_tok; t += 4) {
                const uint8_t *xa = mm->act + (size_t)t * mm->act_stride;
                for (int r = rb; r < re; r++) {
                    float v[4];
                    mm->dot4(w->n_in, wmat_row(w, r, buf), xa, mm->act_stride, v);
                    for (int k = 0; k < 4; k++) store(j, mm->y + (size_t)(t + k) * w->n_out + r, v[k]);
                }
            }
        for (; t < j->n_tok; t++) {
            const void *xa = mm->act + (size_t)t * mm->act_stride;
            float *yt = mm->y + (size_t)t * w->n_out;
            for (int r = rb; r < re; r++) store(j, yt + r, mm->dot(w->n_in, wmat_row(w, r, buf), xa));
        }
    }
}

/* Rows [r0, r1) of one matrix for every token: the whole 16-row groups
 * inside by the repacked kernels (engine/repack.h), the rest by dots. */
static void mm_rows(const mm_job *j, const mm_mat *mm, int r0, int r1) {
    const et_wmat *w = mm->w;
    if (!mm->rp) {
        mm_rows_dot(j, mm, r0, r1);
        return;
    }
    int g0 = (r0 + ET_RP_ROWS - 1) / ET_RP_ROWS, g1 = r1 / ET_RP_ROWS;
    if (g0 >= g1) {
        mm_rows_dot(j, mm, r0, r1);
        return;
    }
    mm_rows_dot(j, mm, r0, g0 * ET_RP_ROWS);
    const uint8_t *pk = w->packed;
    for (int g = g0; g < g1; g++) {
        const uint8_t *grp = pk + (size_t)g * mm->grp_bytes;
        int r = g * ET_RP_ROWS;
        if (!j->accumulate) {
            mm->rp->gemm(w->n_in, grp, mm->act, mm->act_stride, j->n_tok, mm->y + r, (size_t)w->n_out);
            continue;
        }
        for (int t = 0; t < j->n_tok; t += 8) {
            int nt = j->n_tok - t < 8 ? j->n_tok - t : 8;
            float v[8 * ET_RP_ROWS];
            mm->rp->gemm(w->n_in, grp, mm->act + (size_t)t * mm->act_stride, mm->act_stride, nt, v, ET_RP_ROWS);
            for (int k = 0; k < nt; k++)
                for (int i = 0; i < ET_RP_ROWS; i++) store(j, mm->y + (size_t)(t + k) * w->n_out + r + i, v[k * ET_RP_ROWS + i]);
        }
    }
    mm_rows_dot(j, mm, g1 * ET_RP_ROWS, r1);
}

static void mm_work(void *arg, int ith, int chunk) {
    (void)ith;
    const mm_job *j = arg;
    int64_t g0 = j->rows * chunk / j->n_chunks / ROW_TILE * ROW_TILE, base = 0;
    int64_t g1 = chunk + 1 == j->n_chunks ? j->rows : j->rows * (chunk + 1) / j->n_chunks / ROW_TILE * ROW_TILE;
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

/* Activation conversion for the matrices of one job, split over tokens:
 * each distinct input form is made once (conversion to vec_dot_type, and
 * nothing more: the repacked kernels read et_act_convert's layout). */
typedef struct conv_job {
    int n, n_tok, n_chunks;
    struct {
        uint32_t type;          /* weight type */
        int n_in;
        int convert;            /* 0: act is made by an earlier entry */
        uint8_t *act;
        size_t act_stride;
    } c[MAX_MATS];
    const float *x;
} conv_job;

static void conv_tokens(const conv_job *cj, int t0, int t1) {
    for (int t = t0; t < t1; t++)
        for (int i = 0; i < cj->n; i++) {
            int n_in = cj->c[i].n_in;
            uint8_t *a = cj->c[i].act + (size_t)t * cj->c[i].act_stride;
            if (cj->c[i].convert) et_act_convert(cj->c[i].type, cj->x + (size_t)t * n_in, a, n_in);
        }
}

static void conv_work(void *arg, int ith, int chunk) {
    (void)ith;
    const conv_job *cj = arg;
    conv_tokens(cj, (int)((int64_t)cj->n_tok * chunk / cj->n_chunks), (int)((int64_t)cj->n_tok * (chunk + 1) / cj->n_chunks));
}

/* One job over n matrices with the same n_in; each converted input is
 * made once per vec_dot_type. */
static int matmul_plain(et_state *s, int n, const et_wmat *const *w, const float *x, int n_tok, float *const *y,
                        int accumulate, float alpha, et_err *e) {
    mm_job j;
    conv_job cj;
    memset(&j, 0, sizeof j);
    memset(&cj, 0, sizeof cj);
    j.n_mats = n;
    j.n_tok = n_tok;
    j.accumulate = accumulate;
    j.alpha = alpha;
    size_t off[MAX_MATS], total = 0;
    int act_src[MAX_MATS];
    for (int i = 0; i < n; i++) {
        mm_mat *mm = &j.mats[i];
        mm->w = w[i];
        mm->y = y[i];
        mm->dot = et_kernels_dot(s->k, w[i]->type);
        mm->dot4 = et_kernels_dot4(s->k, w[i]->type);
        if (w[i]->packed && (mm->rp = et_repack_get(s->k, w[i]->type, w[i]->n_in)))
            mm->grp_bytes = et_repack_group_bytes(w[i]->type, w[i]->n_in);
        if (!mm->dot) return et_fail(e, ET_EINPUT, "engine: tensor '%s' has an unsupported type %u", w[i]->name, w[i]->type);
        mm->act_stride = (et_act_bytes(w[i]->type, w[i]->n_in) + 63) & ~(size_t)63;
        act_src[i] = -1;
        for (int k = 0; k < i && act_src[i] < 0; k++)
            if (et_vec_dot_type(w[k]->type) == et_vec_dot_type(w[i]->type) && w[k]->n_in == w[i]->n_in) act_src[i] = k;
        if (act_src[i] >= 0) off[i] = off[act_src[i]];
        else {
            off[i] = total;
            total += mm->act_stride * (size_t)n_tok;
        }
        j.rows += w[i]->n_out;
    }
    if (ensure(&s->act, &s->act_cap, total + 64, e)) return ET_ERUN;
    uint8_t *base = (uint8_t *)(((uintptr_t)s->act + 63) & ~(uintptr_t)63);
    cj.n = n;
    cj.n_tok = n_tok;
    cj.x = x;
    for (int i = 0; i < n; i++) {
        mm_mat *mm = &j.mats[i];
        mm->act = base + off[i];
        cj.c[i].type = w[i]->type;
        cj.c[i].n_in = w[i]->n_in;
        cj.c[i].act_stride = mm->act_stride;
        cj.c[i].convert = act_src[i] < 0;
        cj.c[i].act = base + off[i];
    }
    int nth = et_pool_size(s->pool);
    if (nth == 1 || n_tok < 2 * nth) conv_tokens(&cj, 0, n_tok);
    else {
        cj.n_chunks = n_tok < 4 * nth ? n_tok : 4 * nth;
        et_pool_run(s->pool, conv_work, &cj, cj.n_chunks);
    }
    /* a few chunks per thread (claimed dynamically), of at least ROW_TILE rows */
    int64_t max_chunks = (j.rows + ROW_TILE - 1) / ROW_TILE;
    j.n_chunks = nth == 1 ? 1 : (int)(max_chunks < 4 * nth ? max_chunks : 4 * nth);
    et_pool_run(s->pool, mm_work, &j, j.n_chunks);
    return 0;
}

void et_state_set_matmul_hook(et_state *s, et_matmul_hook fn, void *user) {
    s->hook = fn;
    s->hook_user = user;
}

static int add_lora(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, float alpha, et_err *e) {
    for (int i = 0; i < w->n_lora; i++) {
        const et_lora_use *u = &w->lora[i];
        int rank = u->a->n_out, rc;
        size_t cap_bytes = s->lora_cap * sizeof(float);
        if (ensure((void **)&s->lora_t, &cap_bytes, (size_t)rank * (size_t)n_tok * sizeof(float), e)) return ET_ERUN;
        s->lora_cap = cap_bytes / sizeof(float);
        float *t = s->lora_t;
        if (s->hook && (rc = s->hook(s->hook_user, u->a, x, n_tok, e))) return rc;
        if ((rc = matmul_plain(s, 1, &u->a, x, n_tok, &t, 0, 1.0f, e))) return rc;
        if (s->hook && (rc = s->hook(s->hook_user, u->b, s->lora_t, n_tok, e))) return rc;
        if ((rc = matmul_plain(s, 1, &u->b, s->lora_t, n_tok, &y, 1, u->scale * alpha, e))) return rc;
    }
    return 0;
}

int et_wmat_matmul_multi(et_state *s, int n, const et_wmat *const *w, const float *x, int n_tok, float *const *y,
                    et_err *e) {
    if (n < 1 || n > MAX_MATS) return et_fail(e, ET_EUSAGE, "engine: %d matrices in one job", n);
    int rc = 0;
    for (int i = 0; s->hook && !rc && i < n; i++) rc = s->hook(s->hook_user, w[i], x, n_tok, e);
    if (!rc) rc = matmul_plain(s, n, w, x, n_tok, y, 0, 1.0f, e);
    for (int i = 0; !rc && i < n; i++) rc = add_lora(s, w[i], x, n_tok, y[i], 1.0f, e);
    return rc;
}

int et_wmat_matmul(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, int accumulate, float alpha,
              int with_lora, et_err *e) {
    int rc = s->hook ? s->hook(s->hook_user, w, x, n_tok, e) : 0;
    if (!rc) rc = matmul_plain(s, 1, &w, x, n_tok, &y, accumulate, alpha, e);
    if (rc || !with_lora) return rc;
    return add_lora(s, w, x, n_tok, y, accumulate ? alpha : 1.0f, e);
}
