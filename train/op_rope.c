/* train/op_rope.c — rotary position embedding on interleaved pairs (see ops.h).
 *
 * x, y [B*T, n_head*head_dim]; for row r (position p = pos[r] or r % T),
 * head h and pair i < head_dim/2, with a = p * theta^(-2i/head_dim):
 *   y[2i]   = x[2i] cos a - x[2i+1] sin a
 *   y[2i+1] = x[2i] sin a + x[2i+1] cos a
 * (RoFormer, Su et al. 2021; pairs as llama2.c model.py apply_rotary_emb
 * and llama.cpp's rope "norm" mode).  The map is a rotation, so backward
 * is the rotation by -a:
 *   dx[2i]   += dy[2i] cos a + dy[2i+1] sin a
 *   dx[2i+1] += -dy[2i] sin a + dy[2i+1] cos a
 * cos/sin are tabulated in double, then rounded, and kept for backward;
 * the tables live in the tape's arena until its reset, and a later call with
 * the same positions, head_dim and theta (every layer, q and k) reuses them:
 * at the stories260K shape the table (256 x 4 cos/sin and pow in double)
 * cost more than the rotation itself. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops.h"
#include "simd.h"

typedef struct rope_saved rope_saved;
struct rope_saved {
    int T, n_head, head_dim;
    int by_row;      /* 1: table row = tensor row (explicit positions); 0: r % T */
    float *cos, *sin; /* [n_tab, n_head*head_dim/2]: each head's cos/sin, repeated */
    /* et_rope_qk_inplace: in k's node, q's node (saved, input, output), whose
       gradient k's backward rotates as well (then sets q's `done`) */
    rope_saved *pair;
    et_tensor *pair_x, *pair_y;
    int done;
};

/* Rows [r0, r1) of np pairs each: out (+)= R(sign * a) in.  A vector loop
 * over the pairs of a row (the table repeats each head's cos/sin); every
 * pair's arithmetic as in the file comment, so the floats do not depend on
 * the vector width.  in == out is fine (each pair read before written). */
ET_SIMD_CLONES
static void rope_rows(const float *cos_t, const float *sin_t, long np, int T, int by_row, long r0, long r1,
                      const float *in, float *out, float sign, int accumulate) {
    for (long r = r0; r < r1; r++) {
        const long tr = by_row ? r : r % T;
        const float *cs = cos_t + tr * np, *sn = sin_t + tr * np;
        const float *xi = in + r * 2 * np;
        float *yi = out + r * 2 * np;
        if (accumulate) {
            #pragma omp simd
            for (long p = 0; p < np; p++) {
                const float c = cs[p], si = sign * sn[p];
                const float x0 = xi[2 * p], x1 = xi[2 * p + 1];
                yi[2 * p] += x0 * c - x1 * si;
                yi[2 * p + 1] += x0 * si + x1 * c;
            }
        } else {
            #pragma omp simd
            for (long p = 0; p < np; p++) {
                const float c = cs[p], si = sign * sn[p];
                const float x0 = xi[2 * p], x1 = xi[2 * p + 1];
                yi[2 * p] = x0 * c - x1 * si;
                yi[2 * p + 1] = x0 * si + x1 * c;
            }
        }
    }
}

static void rope_rows_s(const rope_saved *s, long r0, long r1, const float *in, float *out, float sign,
                        int accumulate) {
    rope_rows(s->cos, s->sin, (long)s->n_head * (s->head_dim / 2), s->T, s->by_row, r0, r1, in, out, sign,
              accumulate);
}

/* One or two rotations (b may be NULL) over the same rows, in one parallel
 * region of contiguous equal shares: out_a (+)= R(sign a) in_a, and the same
 * for b. */
static void rope_apply2(const rope_saved *a, const float *in_a, float *out_a, int acc_a, const rope_saved *b,
                        const float *in_b, float *out_b, int acc_b, long rows, float sign) {
    const size_t work = (size_t)rows * a->n_head * a->head_dim + (b ? (size_t)rows * b->n_head * b->head_dim : 0);
    #pragma omp parallel if (work > ET_OMP_MIN_WORK)
    {
        const long nt = omp_get_num_threads(), id = omp_get_thread_num();
        const long r0 = rows * id / nt, r1 = rows * (id + 1) / nt;
        rope_rows_s(a, r0, r1, in_a, out_a, sign, acc_a);
        if (b) rope_rows_s(b, r0, r1, in_b, out_b, sign, acc_b);
    }
}

/* cos/sin of every (position, pair) for one set of positions: a list in
 * the tape's arena (t->rope_tables), emptied by et_tape_reset. */
typedef struct rope_table {
    struct rope_table *next;
    long n_tab;
    int head_dim, n_head;
    float theta;
    int32_t *pos;      /* [n_tab] copy, or NULL for positions 0 .. n_tab-1 */
    float *cos, *sin;  /* [n_tab, n_head*head_dim/2] (each head's the same) */
} rope_table;

/* The table for these positions (pos [n_tab], or NULL: 0 .. n_tab-1) and
 * n_head heads, made on first use since the last reset (for n_head > 1 by
 * repeating the one-head table); NULL + tape error on OOM. */
static const rope_table *table_get(et_tape *t, long n_tab, int head_dim, int n_head, const int32_t *pos,
                                   float theta) {
    for (const rope_table *c = t->rope_tables; c; c = c->next)
        if (c->n_tab == n_tab && c->head_dim == head_dim && c->n_head == n_head && c->theta == theta &&
            !c->pos == !pos && (!pos || !memcmp(c->pos, pos, (size_t)n_tab * sizeof *pos)))
            return c;
    const int half = head_dim / 2;
    const rope_table *one = n_head > 1 ? table_get(t, n_tab, head_dim, 1, pos, theta) : NULL;
    if (n_head > 1 && !one) return NULL;
    rope_table *c = et_tape_alloc(t, sizeof *c);
    if (c) {
        c->cos = et_tape_alloc(t, (size_t)n_tab * n_head * half * sizeof(float));
        c->sin = c->cos ? et_tape_alloc(t, (size_t)n_tab * n_head * half * sizeof(float)) : NULL;
        c->pos = c->sin && pos ? et_tape_alloc(t, (size_t)n_tab * sizeof *pos) : NULL;
    }
    if (!c || !c->sin || (pos && !c->pos)) return NULL;
    if (pos) memcpy(c->pos, pos, (size_t)n_tab * sizeof *pos);
    c->n_tab = n_tab;
    c->head_dim = head_dim;
    c->n_head = n_head;
    c->theta = theta;
    if (one) {
        const size_t np = (size_t)n_head * half;
        for (long r = 0; r < n_tab; r++)
            for (int h = 0; h < n_head; h++) {
                memcpy(c->cos + r * np + (size_t)h * half, one->cos + r * half, (size_t)half * sizeof(float));
                memcpy(c->sin + r * np + (size_t)h * half, one->sin + r * half, (size_t)half * sizeof(float));
            }
    } else {
        double *inv_freq = et_tape_alloc(t, (size_t)half * sizeof(double));
        if (!inv_freq) return NULL;
        for (int i = 0; i < half; i++) inv_freq[i] = pow((double)theta, -2.0 * i / (double)head_dim);
        float *cos_t = c->cos, *sin_t = c->sin;
        #pragma omp parallel for schedule(static) if ((size_t)n_tab * half * 64 > ET_OMP_MIN_WORK)
        for (long r = 0; r < n_tab; r++) {
            const double p = pos ? (double)pos[r] : (double)r;
            for (int i = 0; i < half; i++) {
                const double a = p * inv_freq[i];
                cos_t[r * half + i] = (float)cos(a);
                sin_t[r * half + i] = (float)sin(a);
            }
        }
    }
    c->next = t->rope_tables;
    t->rope_tables = c;
    return c;
}

static void rope_backward(et_tape *t, const et_node *nd) {
    rope_saved *s = nd->saved;
    if (s->done) { /* rotated by the paired k node's backward */
        s->done = 0;
        return;
    }
    int fresh, fresh_q = 0; /* a first gradient is stored, not added to zeros (tape.h) */
    float *dx = et_grad_fresh(t, nd->in[0], &fresh);
    /* the pair's output gradient is complete: its consumers come after both nodes */
    const float *dq = s->pair ? s->pair_y->grad : NULL;
    float *dxq = dq ? et_grad_fresh(t, s->pair_x, &fresh_q) : NULL;
    if (!dx || (dq && !dxq)) return;
    rope_apply2(s, nd->out->grad, dx, !fresh, dq ? s->pair : NULL, dq, dxq, !fresh_q, (long)et_rows(nd->out), -1.0f);
    if (dq) s->pair->done = 1;
}

/* Checks, the output header (in place: over x's data) and the saved data
 * with the table; NULL + tape error on bad shapes or OOM. */
static et_tensor *rope_prepare(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                               const int32_t *pos, float theta, int inplace, rope_saved **sp) {
    if (t->code) return NULL;
    if (!x) return et_tape_fail(t, ET_EINPUT, "rope %s: NULL input", name ? name : "");
    if (T < 1 || n_head < 1 || head_dim < 2 || head_dim % 2 || !(theta > 0.0f) ||
        et_cols(x) != (size_t)n_head * (size_t)head_dim || et_rows(x) % (size_t)T)
        return et_tape_fail(t, ET_EINPUT,
                            "rope %s: x %s is [%zu, %zu], expected [B*%d, %d*%d] with even head_dim and theta > 0",
                            name ? name : "", x->name, et_rows(x), et_cols(x), T, n_head, head_dim);
    const long rows = (long)et_rows(x);
    int wants = et_tape_wants_grad(t, &x, 1);
    et_tensor *y;
    if (inplace) { /* a new header over x's data */
        y = et_tape_alloc(t, sizeof *y);
        if (y) {
            et_tensor_wrap(y, name, x->data, NULL, x->ndim, x->shape);
            y->requires_grad = wants;
        }
    } else {
        y = et_tensor_new(t, name, x->ndim, x->shape, wants);
    }
    rope_saved *s = y ? et_tape_alloc(t, sizeof *s) : NULL;
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->T = T;
    s->n_head = n_head;
    s->head_dim = head_dim;
    s->by_row = pos != NULL;
    const rope_table *tab = table_get(t, pos ? rows : T, head_dim, n_head, pos, theta);
    if (!tab) return NULL;
    s->cos = tab->cos;
    s->sin = tab->sin;
    *sp = s;
    return y;
}

static et_tensor *rope(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                       const int32_t *pos, float theta, int inplace) {
    rope_saved *s;
    et_tensor *y = rope_prepare(t, name, x, T, n_head, head_dim, pos, theta, inplace, &s);
    if (!y) return NULL;
    /* each pair read before written: in place is fine */
    rope_apply2(s, x->data, y->data, 0, NULL, NULL, NULL, 0, (long)et_rows(x), 1.0f);
    if (y->requires_grad && !et_tape_push(t, "rope", rope_backward, y, &x, 1, s)) return NULL;
    return y;
}

et_tensor *et_rope(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                   const int32_t *pos, float theta) {
    return rope(t, name, x, T, n_head, head_dim, pos, theta, 0);
}

et_tensor *et_rope_inplace(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                           const int32_t *pos, float theta) {
    return rope(t, name, x, T, n_head, head_dim, pos, theta, 1);
}

/* Two nodes, q's then k's, pushed next to each other: every consumer of
 * q's output comes after k's node, so when k's backward runs (first), q's
 * output gradient is complete and both are rotated in one region. */
int et_rope_qk_inplace(et_tape *t, const char *name_q, const char *name_k, et_tensor *q, et_tensor *k, int T,
                       int n_head, int n_head_kv, int head_dim, const int32_t *pos, float theta, et_tensor **q_out,
                       et_tensor **k_out) {
    *q_out = *k_out = NULL;
    if (q && k && et_rows(q) != et_rows(k)) {
        et_tape_fail(t, ET_EINPUT, "rope %s: q %s has %zu rows, k %s %zu", name_q ? name_q : "", q->name,
                     et_rows(q), k->name, et_rows(k));
        return t->code;
    }
    rope_saved *sq, *sk;
    et_tensor *yq = rope_prepare(t, name_q, q, T, n_head, head_dim, pos, theta, 1, &sq);
    et_tensor *yk = yq ? rope_prepare(t, name_k, k, T, n_head_kv, head_dim, pos, theta, 1, &sk) : NULL;
    if (!yk) return t->code;
    rope_apply2(sq, q->data, yq->data, 0, sk, k->data, yk->data, 0, (long)et_rows(q), 1.0f);
    if (yq->requires_grad && !et_tape_push(t, "rope", rope_backward, yq, &q, 1, sq)) return t->code;
    if (yk->requires_grad) {
        if (yq->requires_grad) {
            sk->pair = sq;
            sk->pair_x = q;
            sk->pair_y = yq;
        }
        if (!et_tape_push(t, "rope", rope_backward, yk, &k, 1, sk)) return t->code;
    }
    *q_out = yq;
    *k_out = yk;
    return 0;
}
