/* train/op_rmsnorm.c — RMSNorm (see ops.h).
 *
 * x [M, C], w [C], y [M, C]; per row r = 1/sqrt(mean(x^2) + eps):
 *   y_j = w_j x_j r
 * Backward (dr/dx_j = -r^3 x_j / C):
 *   dx_j += r (w_j dy_j) - x_j r^3 / C * sum_i w_i dy_i x_i
 *   dw_j += sum over rows of dy_j x_j r
 * Row reductions in double over 8 lanes (lane j % 8, then a fixed tree), so
 * they vectorize yet keep one order; dw sums the rows of each column in row
 * order, 64 columns at a time (vectorized over the columns).  Neither
 * depends on the number of threads. */
#include <math.h>
#include <omp.h>

#include "ops.h"
#include "simd.h"

/* Reductions of one row in double over 8 lanes (j % 8), then a fixed tree. */
static inline double lanes8(const double *acc) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* sum_j a[j]^2 over j < n */
static inline double row_sumsq(const float *a, long n) {
    double acc[8] = {0};
    const long n8 = n / 8 * 8;
    for (long j = 0; j < n8; j += 8) {
        #pragma omp simd
        for (int u = 0; u < 8; u++) acc[u] += (double)a[j + u] * a[j + u];
    }
    for (long j = n8; j < n; j++) acc[j - n8] += (double)a[j] * a[j];
    return lanes8(acc);
}

/* sum_j a[j] b[j] c[j] over j < n */
static inline double row_dot3(const float *a, const float *b, const float *c, long n) {
    double acc[8] = {0};
    const long n8 = n / 8 * 8;
    for (long j = 0; j < n8; j += 8) {
        #pragma omp simd
        for (int u = 0; u < 8; u++) acc[u] += (double)a[j + u] * b[j + u] * c[j + u];
    }
    for (long j = n8; j < n; j++) acc[j - n8] += (double)a[j] * b[j] * c[j];
    return lanes8(acc);
}

/* dw[j0 .. j0+nc) += sum over rows i (in order) of dy[i, j] x[i, j] rstd[i] */
ET_SIMD_CLONES
static void dw_block(const float *dy, const float *x, const float *rstd, long M, long C, long j0, int nc, float *dw) {
    double acc[64] = {0};
    for (long i = 0; i < M; i++) {
        const float *g = dy + i * C + j0, *xi = x + i * C + j0;
        const double r = rstd[i];
        #pragma omp simd
        for (int u = 0; u < nc; u++) acc[u] += (double)g[u] * xi[u] * r;
    }
    for (int u = 0; u < nc; u++) dw[j0 + u] += (float)acc[u];
}

/* y[j] = x[j] r w[j]: the forward's output row given its 1/rms (inlined into
 * each clone of the forward and of the rematerialisation: the same bits). */
static inline __attribute__((always_inline)) void scale_row(const float *x, float r, const float *w, float *y,
                                                            long C) {
    #pragma omp simd
    for (long j = 0; j < C; j++) y[j] = x[j] * r * w[j];
}

/* Rows [i0, i1) of the forward: rstd[i] and y[i, :] = x[i, :] * rstd[i] * w. */
ET_SIMD_CLONES
static void forward_rows(const float *x, const float *w, float *y, float *rstd, long i0, long i1, long C, float eps) {
    for (long i = i0; i < i1; i++) {
        const float *xi = x + i * C;
        const double ss = row_sumsq(xi, C);
        const float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        rstd[i] = r;
        scale_row(xi, r, w, y + i * C, C);
    }
}

/* Rows [i0, i1) of dx (fresh: store instead of add; see the file comment). */
ET_SIMD_CLONES
static void dx_rows(const float *dy, const float *x, const float *w, const float *rstd, long i0, long i1, long C,
                    int fresh, float *dx) {
    for (long i = i0; i < i1; i++) {
        const float *xi = x + i * C, *gi = dy + i * C;
        const double dot = row_dot3(w, gi, xi, C);
        const float r = rstd[i];
        const float c = (float)(dot * r * r * r / (double)C);
        float *di = dx + i * C;
        if (fresh) {
            #pragma omp simd
            for (long j = 0; j < C; j++) di[j] = r * w[j] * gi[j] - xi[j] * c;
        } else {
            #pragma omp simd
            for (long j = 0; j < C; j++) di[j] += r * w[j] * gi[j] - xi[j] * c;
        }
    }
}

typedef struct {
    float *rstd;  /* [M] 1/rms of each row */
    float eps;
} rmsnorm_saved;

enum { DX_ROWS = 32 }; /* rows per backward task */

/* One region for the whole backward: tasks 0 .. nb-1 are dw's blocks of 64
 * columns (first: a single block is as long as a third of dx), then dx in
 * blocks of DX_ROWS rows, handed out dynamically.  Each task's result does
 * not depend on which thread runs it. */
static void rmsnorm_backward(et_tape *t, const et_node *nd) {
    et_tensor *x = nd->in[0], *w = nd->in[1], *y = nd->out;
    const rmsnorm_saved *s = nd->saved;
    const long M = (long)et_rows(x), C = (long)et_cols(x);
    const float *dy = y->grad, *rstd = s->rstd;
    int fresh; /* a first gradient is stored, not added to zeros (tape.h) */
    float *dx = et_grad_fresh(t, x, &fresh);
    float *dw = et_grad(t, w);
    if (t->code) return;
    const float *xd = x->data, *wd = w->data;
    const long nb = dw ? (C + 63) / 64 : 0, nr = dx ? (M + DX_ROWS - 1) / DX_ROWS : 0;
    #pragma omp parallel for schedule(dynamic, 1) if ((size_t)M * C > ET_OMP_MIN_WORK && nb + nr > 1)
    for (long k = 0; k < nb + nr; k++) {
        if (k < nb) {
            dw_block(dy, xd, rstd, M, C, k * 64, (int)(C - k * 64 < 64 ? C - k * 64 : 64), dw);
        } else {
            const long i0 = (k - nb) * DX_ROWS;
            dx_rows(dy, xd, wd, rstd, i0, M < i0 + DX_ROWS ? M : i0 + DX_ROWS, C, fresh, dx);
        }
    }
}

/* Rows [i0, i1) of the forward's output again, from the saved rstd. */
ET_SIMD_CLONES
static void remat_rows(const float *x, const float *w, const float *rstd, float *y, long i0, long i1, long C) {
    for (long i = i0; i < i1; i++) scale_row(x + i * C, rstd[i], w, y + i * C, C);
}

/* The output from x, w and the saved rstd, in the forward's contiguous
 * shares of rows (et_remat_fn). */
static void rmsnorm_remat(const et_node *nd, float *y) {
    const et_tensor *x = nd->in[0], *w = nd->in[1];
    const rmsnorm_saved *s = nd->saved;
    const long M = (long)et_rows(x), C = (long)et_cols(x);
    #pragma omp parallel if ((size_t)M * C > ET_OMP_MIN_WORK)
    {
        const long nt = omp_get_num_threads(), id = omp_get_thread_num();
        remat_rows(x->data, w->data, s->rstd, y, M * id / nt, M * (id + 1) / nt, C);
    }
}

static et_tensor *rmsnorm(et_tape *t, const char *name, et_tensor *x, et_tensor *w, float eps, int remat) {
    if (t->code) return NULL;
    if (!x || !w) return et_tape_fail(t, ET_EINPUT, "rmsnorm %s: NULL input", name ? name : "");
    if (x->ndim < 1 || w->n != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "rmsnorm %s: weight %s has %zu elements, x rows have %zu",
                            name ? name : "", w->name, w->n, et_cols(x));
    const long M = (long)et_rows(x), C = (long)et_cols(x);
    et_tensor *in[2] = {x, w};
    int wants = et_tape_wants_grad(t, in, 2), pooled = 0;
    et_tensor *y = remat ? et_tape_remat_out(t, name, x->ndim, x->shape, wants, &pooled)
                         : et_tensor_new(t, name, x->ndim, x->shape, wants);
    rmsnorm_saved *s = y ? et_tape_alloc(t, sizeof *s) : NULL;
    float *rstd = s ? et_tape_alloc(t, (size_t)M * sizeof(float)) : NULL;
    if (!rstd) return NULL;
    const float *xd = x->data, *wd = w->data;
    float *yd = y->data;
    if ((size_t)M * C > ET_OMP_MIN_WORK) {
        #pragma omp parallel
        { /* contiguous equal shares of the rows */
            const long nt = omp_get_num_threads(), id = omp_get_thread_num();
            forward_rows(xd, wd, yd, rstd, M * id / nt, M * (id + 1) / nt, C, eps);
        }
    } else {
        forward_rows(xd, wd, yd, rstd, 0, M, C, eps);
    }
    s->rstd = rstd;
    s->eps = eps;
    et_node *nd = wants ? et_tape_push(t, "rmsnorm", rmsnorm_backward, y, in, 2, s) : NULL;
    if (wants && !nd) return NULL;
    if (pooled) nd->remat = rmsnorm_remat;
    return y;
}

et_tensor *et_rmsnorm(et_tape *t, const char *name, et_tensor *x, et_tensor *w, float eps) {
    return rmsnorm(t, name, x, w, eps, 0);
}

et_tensor *et_rmsnorm_remat(et_tape *t, const char *name, et_tensor *x, et_tensor *w, float eps) {
    return rmsnorm(t, name, x, w, eps, 1);
}
