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
#include <string.h>

#include "ops.h"

typedef struct {
    int T, n_head, head_dim;
    int by_row;      /* 1: table row = tensor row (explicit positions); 0: r % T */
    float *cos, *sin; /* [n_tab, head_dim/2] */
} rope_saved;

/* out (+)= R(sign * a) in, for every head of every row. */
static void rope_apply(const rope_saved *s, long rows, const float *in, float *out, float sign, int accumulate) {
    const int half = s->head_dim / 2, n_head = s->n_head, head_dim = s->head_dim, T = s->T, by_row = s->by_row;
    const long C = (long)n_head * head_dim;
    const float *cos_t = s->cos, *sin_t = s->sin;
    #pragma omp parallel for schedule(static) if ((size_t)rows * C > ET_OMP_MIN_WORK)
    for (long r = 0; r < rows; r++) {
        const long tr = by_row ? r : r % T;
        const float *cs = cos_t + tr * half, *sn = sin_t + tr * half;
        for (int h = 0; h < n_head; h++) {
            const float *xi = in + r * C + (long)h * head_dim;
            float *yi = out + r * C + (long)h * head_dim;
            for (int i = 0; i < half; i++) {
                const float c = cs[i], si = sign * sn[i];
                const float x0 = xi[2 * i], x1 = xi[2 * i + 1];
                const float y0 = x0 * c - x1 * si, y1 = x0 * si + x1 * c;
                if (accumulate) { yi[2 * i] += y0; yi[2 * i + 1] += y1; }
                else { yi[2 * i] = y0; yi[2 * i + 1] = y1; }
            }
        }
    }
}

/* cos/sin of every (position, pair) for one set of positions: a list in
 * the tape's arena (t->rope_tables), emptied by et_tape_reset. */
typedef struct rope_table {
    struct rope_table *next;
    long n_tab;
    int head_dim;
    float theta;
    int32_t *pos;      /* [n_tab] copy, or NULL for positions 0 .. n_tab-1 */
    float *cos, *sin;  /* [n_tab, head_dim/2] */
} rope_table;

/* The table for these positions (pos [n_tab], or NULL: 0 .. n_tab-1), made
 * on first use since the last reset; NULL + tape error on OOM. */
static const rope_table *table_get(et_tape *t, long n_tab, int head_dim, const int32_t *pos, float theta) {
    for (const rope_table *c = t->rope_tables; c; c = c->next)
        if (c->n_tab == n_tab && c->head_dim == head_dim && c->theta == theta && !c->pos == !pos &&
            (!pos || !memcmp(c->pos, pos, (size_t)n_tab * sizeof *pos)))
            return c;
    const int half = head_dim / 2;
    rope_table *c = et_tape_alloc(t, sizeof *c);
    double *inv_freq = c ? et_tape_alloc(t, (size_t)half * sizeof(double)) : NULL;
    c = inv_freq ? c : NULL;
    if (c) {
        c->cos = et_tape_alloc(t, (size_t)n_tab * half * sizeof(float));
        c->sin = c->cos ? et_tape_alloc(t, (size_t)n_tab * half * sizeof(float)) : NULL;
        c->pos = c->sin && pos ? et_tape_alloc(t, (size_t)n_tab * sizeof *pos) : NULL;
    }
    if (!c || !c->sin || (pos && !c->pos)) return NULL;
    if (pos) memcpy(c->pos, pos, (size_t)n_tab * sizeof *pos);
    c->n_tab = n_tab;
    c->head_dim = head_dim;
    c->theta = theta;
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
    c->next = t->rope_tables;
    t->rope_tables = c;
    return c;
}

static void rope_backward(et_tape *t, const et_node *nd) {
    int fresh; /* a first gradient is stored, not added to zeros (tape.h) */
    float *dx = et_grad_fresh(t, nd->in[0], &fresh);
    if (!dx) return;
    rope_apply(nd->saved, (long)et_rows(nd->out), nd->out->grad, dx, -1.0f, !fresh);
}

static et_tensor *rope(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                       const int32_t *pos, float theta, int inplace) {
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
    const long n_tab = pos ? rows : T;
    s->T = T;
    s->n_head = n_head;
    s->head_dim = head_dim;
    s->by_row = pos != NULL;
    const rope_table *tab = table_get(t, n_tab, head_dim, pos, theta);
    if (!tab) return NULL;
    s->cos = tab->cos;
    s->sin = tab->sin;
    rope_apply(s, rows, x->data, y->data, 1.0f, 0); /* each pair read before written: in place is fine */
    if (wants && !et_tape_push(t, "rope", rope_backward, y, &x, 1, s)) return NULL;
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
