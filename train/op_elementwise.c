/* train/op_elementwise.c — SwiGLU, residual add, scale (see ops.h). */
#include <math.h>
#include <omp.h>

#include "ops.h"
#include "simd.h"

/* The SwiGLU loops give each thread one contiguous share (a multiple of 16
 * elements, the last one takes the rest), each an `omp simd` loop in an
 * ET_SIMD_CLONES kernel (simd.h).  Data pointers are copied to locals
 * first: under -fno-strict-aliasing a store to dg[i] could change g->data,
 * which would stop vectorization. */

/* [*b0, *b1): thread id's share of n elements among nt threads */
static void share(long n, int nt, int id, long *b0, long *b1) {
    const long per = (n / nt + 15) / 16 * 16;
    *b0 = per * id < n ? per * id : n;
    *b1 = id == nt - 1 || per * (id + 1) > n ? n : per * (id + 1);
}

/* ---- SwiGLU: out = silu(g) * u, g and u [M, F] ----
 * With s = sigmoid(g): silu(g) = g s, silu'(g) = s (1 + g (1 - s)).
 *   dg += dout * u * s (1 + g (1 - s));   du += dout * g s */
ET_SIMD_CLONES
static void swiglu_forward_block(float *out, const float *g, const float *u, long n) {
    #pragma omp simd
    for (long i = 0; i < n; i++) out[i] = g[i] / (1.0f + et_vexpf(-g[i])) * u[i];
}

/* dg or du may be NULL; fresh: store (=) instead of add (+=) */
ET_SIMD_CLONES
static void swiglu_backward_block(float *dg, float *du, const float *dout, const float *g, const float *u, long n,
                                  int fresh) {
    if (dg && du && fresh) {
        #pragma omp simd
        for (long i = 0; i < n; i++) {
            const float s = 1.0f / (1.0f + et_vexpf(-g[i]));
            dg[i] = dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
            du[i] = dout[i] * g[i] * s;
        }
    } else if (dg && du) {
        #pragma omp simd
        for (long i = 0; i < n; i++) {
            const float s = 1.0f / (1.0f + et_vexpf(-g[i]));
            dg[i] += dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
            du[i] += dout[i] * g[i] * s;
        }
    } else if (dg) {
        #pragma omp simd
        for (long i = 0; i < n; i++) {
            const float s = 1.0f / (1.0f + et_vexpf(-g[i]));
            dg[i] += dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        }
    } else if (du) {
        #pragma omp simd
        for (long i = 0; i < n; i++) du[i] += dout[i] * g[i] / (1.0f + et_vexpf(-g[i]));
    }
}

static void swiglu_backward(et_tape *t, const et_node *nd) {
    et_tensor *g = nd->in[0], *u = nd->in[1];
    const float *dout = nd->out->grad;
    /* the common case (both fresh, the only consumer of gate and up) skips
       zeroing them: see et_grad_fresh */
    int fresh = 0, fresh_u = 0;
    float *dg = NULL, *du = NULL;
    if (g->requires_grad && u->requires_grad && !g->grad && !u->grad && g != u) {
        dg = et_grad_fresh(t, g, &fresh);
        du = et_grad_fresh(t, u, &fresh_u);
        fresh = fresh && fresh_u;
        if (!fresh) dg = et_grad(t, g), du = et_grad(t, u); /* out of memory: the error is set */
    } else {
        dg = et_grad(t, g), du = et_grad(t, u);
    }
    if (t->code) return;
    const long n = (long)g->n;
    const float *gd = g->data, *ud = u->data;
    #pragma omp parallel if ((size_t)n > ET_OMP_MIN_WORK)
    {
        long b0, b1;
        share(n, omp_get_num_threads(), omp_get_thread_num(), &b0, &b1);
        if (b1 > b0)
            swiglu_backward_block(dg ? dg + b0 : NULL, du ? du + b0 : NULL, dout + b0, gd + b0, ud + b0, b1 - b0,
                                  fresh);
    }
}

/* out = silu(g) * u over n elements, one contiguous share per thread. */
static void swiglu_fill(float *out, const float *g, const float *u, long n) {
    #pragma omp parallel if ((size_t)n > ET_OMP_MIN_WORK)
    {
        long b0, b1;
        share(n, omp_get_num_threads(), omp_get_thread_num(), &b0, &b1);
        if (b1 > b0) swiglu_forward_block(out + b0, g + b0, u + b0, b1 - b0);
    }
}

/* The forward's output again from gate and up (et_remat_fn; element-wise,
 * so the same bits). */
static void swiglu_remat(const et_node *nd, float *out) {
    swiglu_fill(out, nd->in[0]->data, nd->in[1]->data, (long)nd->in[0]->n);
}

static et_tensor *swiglu(et_tape *t, const char *name, et_tensor *g, et_tensor *u, int remat) {
    if (t->code) return NULL;
    if (!g || !u) return et_tape_fail(t, ET_EINPUT, "swiglu %s: NULL input", name ? name : "");
    if (g->n != u->n || g->ndim < 1)
        return et_tape_fail(t, ET_EINPUT, "swiglu %s: gate %s has %zu elements, up %s has %zu",
                            name ? name : "", g->name, g->n, u->name, u->n);
    et_tensor *in[2] = {g, u};
    int wants = et_tape_wants_grad(t, in, 2), pooled = 0;
    et_tensor *out = remat ? et_tape_remat_out(t, name, g->ndim, g->shape, wants, &pooled)
                           : et_tensor_new(t, name, g->ndim, g->shape, wants);
    if (!out) return NULL;
    swiglu_fill(out->data, g->data, u->data, (long)g->n);
    et_node *nd = wants ? et_tape_push(t, "swiglu", swiglu_backward, out, in, 2, NULL) : NULL;
    if (wants && !nd) return NULL;
    if (pooled) nd->remat = swiglu_remat;
    return out;
}

et_tensor *et_swiglu(et_tape *t, const char *name, et_tensor *g, et_tensor *u) {
    return swiglu(t, name, g, u, 0);
}

et_tensor *et_swiglu_remat(et_tape *t, const char *name, et_tensor *g, et_tensor *u) {
    return swiglu(t, name, g, u, 1);
}


/* ---- add: out = a + b;  da += dout, db += dout ---- */
static void add_backward(et_tape *t, const et_node *nd) {
    const float *dout = nd->out->grad;
    const long n = (long)nd->out->n;
    /* a first gradient of a is dout itself: a takes over its buffer */
    const int taken = nd->in[0] != nd->in[1] && et_grad_take(t, nd->in[0], nd->out);
    for (int k = taken; k < 2; k++) {
        float *d = et_grad(t, nd->in[k]);
        if (!d) continue;
        #pragma omp parallel for schedule(static) if ((size_t)n > ET_OMP_MIN_WORK)
        for (long i = 0; i < n; i++) d[i] += dout[i];
    }
}

et_tensor *et_add(et_tape *t, const char *name, et_tensor *a, et_tensor *b) {
    if (t->code) return NULL;
    if (!a || !b) return et_tape_fail(t, ET_EINPUT, "add %s: NULL input", name ? name : "");
    if (a->n != b->n || a->ndim < 1)
        return et_tape_fail(t, ET_EINPUT, "add %s: %s has %zu elements, %s has %zu",
                            name ? name : "", a->name, a->n, b->name, b->n);
    et_tensor *in[2] = {a, b};
    int wants = et_tape_wants_grad(t, in, 2);
    et_tensor *out = et_tensor_new(t, name, a->ndim, a->shape, wants);
    if (!out) return NULL;
    const long n = (long)a->n;
    const float *ad = a->data, *bd = b->data;
    float *od = out->data;
    #pragma omp parallel for schedule(static) if ((size_t)n > ET_OMP_MIN_WORK)
    for (long i = 0; i < n; i++) od[i] = ad[i] + bd[i];
    if (wants && !et_tape_push(t, "add", add_backward, out, in, 2, NULL)) return NULL;
    return out;
}

/* ---- scale: out = s x;  dx += s dout ---- */
typedef struct { float s; } scale_saved;

static void scale_backward(et_tape *t, const et_node *nd) {
    const scale_saved *sv = nd->saved;
    float *dx = et_grad(t, nd->in[0]);
    if (!dx) return;
    const float *dout = nd->out->grad;
    const long n = (long)nd->out->n;
    #pragma omp parallel for schedule(static) if ((size_t)n > ET_OMP_MIN_WORK)
    for (long i = 0; i < n; i++) dx[i] += sv->s * dout[i];
}

et_tensor *et_scale(et_tape *t, const char *name, et_tensor *x, float s) {
    if (t->code) return NULL;
    if (!x || x->ndim < 1) return et_tape_fail(t, ET_EINPUT, "scale %s: NULL input", name ? name : "");
    int wants = et_tape_wants_grad(t, &x, 1);
    et_tensor *out = et_tensor_new(t, name, x->ndim, x->shape, wants);
    scale_saved *sv = out && wants ? et_tape_alloc(t, sizeof *sv) : NULL;
    if (!out || (wants && !sv)) return NULL;
    const long n = (long)x->n;
    const float *xd = x->data;
    float *od = out->data;
    #pragma omp parallel for schedule(static) if ((size_t)n > ET_OMP_MIN_WORK)
    for (long i = 0; i < n; i++) od[i] = s * xd[i];
    if (wants) {
        sv->s = s;
        if (!et_tape_push(t, "scale", scale_backward, out, &x, 1, sv)) return NULL;
    }
    return out;
}
