/* train/op_matmul.c — linear layer y = x W^T (+ b) on et_gemm (see ops.h):
 * cblas_sgemm, or bf16 operands with f32 accumulation when the tape's
 * gemm_precision is ET_GEMM_BF16 (train/gemm.h).
 *
 * Shapes: x [M, K], w [N, K] (GGUF [out, in]), b [N], y [M, N].
 *   forward:  y  = x @ w^T            sgemm(NoTrans, Trans)  M x N x K
 *   backward: dx += dy @ w            sgemm(NoTrans, NoTrans) M x K x N, beta 1
 *             dw += dy^T @ x          sgemm(Trans, NoTrans)   N x K x M, beta 1
 *             db += sum over rows of dy
 * et_matmul_add also adds a residual r [M, N] (y = r + x @ w^T, one sgemm
 * with beta 1 over a copy of r; dr += dy): the llama blocks' output
 * projections, which saves keeping x @ w^T as a separate activation.
 * All row-major with the natural leading dimensions: no copies, no transposes
 * in memory.  BLAS runs on the calling thread only (never inside OpenMP). */
#include <string.h>

#include "gemm.h"
#include "ops.h"

static void matmul_backward(et_tape *t, const et_node *nd) {
    et_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *r = nd->in[3], *y = nd->out;
    const int M = (int)et_rows(x), K = (int)et_cols(x), N = (int)w->shape[0];
    const float *dy = y->grad;
    int fresh; /* a first gradient is stored, not added to zeros (tape.h) */
    /* dr = dy when r has no gradient yet: r takes over dy's buffer (unless
       x is r: dx is written below, while dy is still read) */
    const int taken = r && r != x && et_grad_take(t, r, y);
    float *dr = r && !taken ? et_grad_fresh(t, r, &fresh) : NULL;
    if (dr && fresh) {
        memcpy(dr, dy, y->n * sizeof(float));
    } else if (dr) {
        const long n = (long)y->n;
        #pragma omp parallel for schedule(static) if ((size_t)n > ET_OMP_MIN_WORK)
        for (long i = 0; i < n; i++) dr[i] += dy[i];
    }
    float *dx = et_grad_fresh(t, x, &fresh);
    const int prec = t->gemm_precision;
    if (dx) et_gemm(prec, 0, 0, M, K, N, 1.0f, dy, N, w->data, K, fresh ? 0.0f : 1.0f, dx, K);
    float *dw = et_grad(t, w);
    if (dw) et_gemm(prec, 1, 0, N, K, M, 1.0f, dy, N, x->data, K, 1.0f, dw, K);
    float *db = b ? et_grad(t, b) : NULL;
    if (db) {
        #pragma omp parallel for schedule(static) if ((size_t)M * N > ET_OMP_MIN_WORK)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int i = 0; i < M; i++) s += dy[(size_t)i * N + j];
            db[j] += s;
        }
    }
}

et_tensor *et_matmul(et_tape *t, const char *name, et_tensor *x, et_tensor *w, et_tensor *b) {
    return et_matmul_add(t, name, x, w, b, NULL);
}

et_tensor *et_matmul_add(et_tape *t, const char *name, et_tensor *x, et_tensor *w, et_tensor *b, et_tensor *r) {
    if (t->code) return NULL;
    if (!x || !w) return et_tape_fail(t, ET_EINPUT, "matmul %s: NULL input", name ? name : "");
    if (w->ndim != 2 || (size_t)w->shape[1] != et_cols(x))
        return et_tape_fail(t, ET_EINPUT, "matmul %s: x has %zu columns but weight %s is not [N, %zu]",
                            name ? name : "", et_cols(x), w->name, et_cols(x));
    if (b && b->n != (size_t)w->shape[0])
        return et_tape_fail(t, ET_EINPUT, "matmul %s: bias %s has %zu elements, weight has %lld rows",
                            name ? name : "", b->name, b->n, (long long)w->shape[0]);
    if (et_rows(x) > INT32_MAX || w->shape[0] > INT32_MAX || w->shape[1] > INT32_MAX)
        return et_tape_fail(t, ET_EINPUT, "matmul %s: dimensions exceed the BLAS int range", name ? name : "");
    const int M = (int)et_rows(x), K = (int)et_cols(x), N = (int)w->shape[0];
    if (r && r->n != (size_t)M * N)
        return et_tape_fail(t, ET_EINPUT, "matmul %s: residual %s has %zu elements, the product [%d, %d]",
                            name ? name : "", r->name, r->n, M, N);
    et_tensor *in[4] = {x, w, b, r};
    int wants = et_tape_wants_grad(t, in, 4);
    int64_t shape[ET_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = N;
    et_tensor *y = et_tensor_new(t, name, x->ndim, shape, wants);
    if (!y) return NULL;
    if (r) memcpy(y->data, r->data, y->n * sizeof(float));
    if (t->gemm_precision != ET_GEMM_F32 && t->gemm_precision != ET_GEMM_BF16)
        return et_tape_fail(t, ET_EINPUT, "matmul %s: unknown gemm_precision %d", name ? name : "", t->gemm_precision);
    et_gemm(t->gemm_precision, 0, 1, M, N, K, 1.0f, x->data, K, w->data, K, r ? 1.0f : 0.0f, y->data, N);
    if (b) {
        float *yd = y->data;
        const float *bd = b->data;
        #pragma omp parallel for schedule(static) if ((size_t)M * N > ET_OMP_MIN_WORK)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) yd[(size_t)i * N + j] += bd[j];
    }
    if (wants && !et_tape_push(t, "matmul", matmul_backward, y, in, 4, NULL)) return NULL;
    return y;
}
