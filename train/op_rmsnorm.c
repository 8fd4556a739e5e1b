/* train/op_rmsnorm.c — RMSNorm (see ops.h).
 *
 * x [M, C], w [C], y [M, C]; per row r = 1/sqrt(mean(x^2) + eps):
 *   y_j = w_j x_j r
 * Backward (dr/dx_j = -r^3 x_j / C):
 *   dx_j += r (w_j dy_j) - x_j r^3 / C * sum_i w_i dy_i x_i
 *   dw_j += sum over rows of dy_j x_j r
 * Row reductions in double; dw is reduced column by column in a fixed order
 * so the result does not depend on the number of threads. */
#include <math.h>

#include "ops.h"

typedef struct {
    float *rstd;  /* [M] 1/rms of each row */
    float eps;
} rmsnorm_saved;

static void rmsnorm_backward(et_tape *t, const et_node *nd) {
    et_tensor *x = nd->in[0], *w = nd->in[1], *y = nd->out;
    const rmsnorm_saved *s = nd->saved;
    const long M = (long)et_rows(x), C = (long)et_cols(x);
    const float *dy = y->grad, *rstd = s->rstd;
    float *dx = et_grad(t, x);
    float *dw = et_grad(t, w);
    if (t->code) return;
    const float *xd = x->data, *wd = w->data;
    if (dx) {
        #pragma omp parallel for schedule(static) if ((size_t)M * C > ET_OMP_MIN_WORK)
        for (long i = 0; i < M; i++) {
            const float *xi = xd + i * C, *gi = dy + i * C;
            double dot = 0.0;
            for (long j = 0; j < C; j++) dot += (double)wd[j] * gi[j] * xi[j];
            const float r = rstd[i];
            const float c = (float)(dot * r * r * r / (double)C);
            float *di = dx + i * C;
            for (long j = 0; j < C; j++) di[j] += r * wd[j] * gi[j] - xi[j] * c;
        }
    }
    if (dw) {
        #pragma omp parallel for schedule(static) if ((size_t)M * C > ET_OMP_MIN_WORK)
        for (long j = 0; j < C; j++) {
            double acc = 0.0;
            for (long i = 0; i < M; i++) acc += (double)dy[i * C + j] * xd[i * C + j] * rstd[i];
            dw[j] += (float)acc;
        }
    }
}

et_tensor *et_rmsnorm(et_tape *t, const char *name, et_tensor *x, et_tensor *w, float eps) {
    if (t->code) return NULL;
    if (!x || !w) return et_tape_fail(t, ET_EINPUT, "rmsnorm %s: NULL input", name ? name : "");
    if (x->ndim < 1 || w->n != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "rmsnorm %s: weight %s has %zu elements, x rows have %zu",
                            name ? name : "", w->name, w->n, et_cols(x));
    const long M = (long)et_rows(x), C = (long)et_cols(x);
    et_tensor *in[2] = {x, w};
    int wants = et_tape_wants_grad(t, in, 2);
    et_tensor *y = et_tensor_new(t, name, x->ndim, x->shape, wants);
    rmsnorm_saved *s = y ? et_tape_alloc(t, sizeof *s) : NULL;
    float *rstd = s ? et_tape_alloc(t, (size_t)M * sizeof(float)) : NULL;
    if (!rstd) return NULL;
    const float *xd = x->data, *wd = w->data;
    float *yd = y->data;
    #pragma omp parallel for schedule(static) if ((size_t)M * C > ET_OMP_MIN_WORK)
    for (long i = 0; i < M; i++) {
        const float *xi = xd + i * C;
        double ss = 0.0;
        for (long j = 0; j < C; j++) ss += (double)xi[j] * xi[j];
        const float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        rstd[i] = r;
        float *yi = yd + i * C;
        for (long j = 0; j < C; j++) yi[j] = xi[j] * r * wd[j];
    }
    s->rstd = rstd;
    s->eps = eps;
    if (wants && !et_tape_push(t, "rmsnorm", rmsnorm_backward, y, in, 2, s)) return NULL;
    return y;
}
