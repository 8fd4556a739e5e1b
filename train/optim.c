/* train/optim.c — AdamW, gradient clipping, LR schedules. See optim.h. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "simd.h"

int et_adamw_init(et_adamw *o, size_t n, const et_adamw_hp *hp, et_err *e) {
    memset(o, 0, sizeof *o);
    if (!(hp->beta1 >= 0.0f && hp->beta1 < 1.0f) || !(hp->beta2 >= 0.0f && hp->beta2 < 1.0f))
        return et_fail(e, ET_EINPUT, "adamw: beta1 %g and beta2 %g must be in [0, 1)",
                       (double)hp->beta1, (double)hp->beta2);
    if (!(hp->eps > 0.0f)) return et_fail(e, ET_EINPUT, "adamw: eps %g must be > 0", (double)hp->eps);
    if (!(hp->weight_decay >= 0.0f))
        return et_fail(e, ET_EINPUT, "adamw: weight_decay %g must be >= 0", (double)hp->weight_decay);
    if (n == 0 || n > SIZE_MAX / sizeof(float)) return et_fail(e, ET_EINPUT, "adamw: bad block size %zu", n);
    o->hp = *hp;
    o->n = n;
    o->m = calloc(n, sizeof(float));
    o->v = calloc(n, sizeof(float));
    o->seg = malloc(sizeof *o->seg);
    if (!o->m || !o->v || !o->seg) {
        et_adamw_free(o);
        return et_fail(e, ET_ERUN, "adamw: out of memory for %zu moments", n);
    }
    o->seg[0] = (et_adamw_seg){0, n, 1};
    o->n_seg = 1;
    return 0;
}

void et_adamw_free(et_adamw *o) {
    free(o->m);
    free(o->v);
    free(o->seg);
    memset(o, 0, sizeof *o);
}

int et_adamw_set_segments(et_adamw *o, const et_adamw_seg *seg, int n_seg, et_err *e) {
    if (n_seg < 0) return et_fail(e, ET_EINPUT, "adamw: negative segment count");
    size_t end = 0;
    for (int i = 0; i < n_seg; i++) {
        if (seg[i].offset < end || seg[i].offset > o->n || seg[i].n > o->n - seg[i].offset)
            return et_fail(e, ET_EINPUT, "adamw: segment %d [%zu, +%zu) overlaps or leaves the block of %zu",
                           i, seg[i].offset, seg[i].n, o->n);
        end = seg[i].offset + seg[i].n;
    }
    et_adamw_seg *s = malloc(sizeof *s * (size_t)(n_seg ? n_seg : 1));
    if (!s) return et_fail(e, ET_ERUN, "adamw: out of memory");
    if (n_seg) memcpy(s, seg, sizeof *s * (size_t)n_seg);
    free(o->seg);
    o->seg = s;
    o->n_seg = n_seg;
    return 0;
}

int et_wd_default(const char *name, int n_dims) {
    if (n_dims < 2) return 0;                        /* norms, biases */
    if (!strcmp(name, "token_embd.weight")) return 0; /* embeddings (also the tied LM head) */
    return 1;
}

static int cmp_seg(const void *a, const void *b) {
    const et_adamw_seg *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int et_adamw_mask_tensors(et_adamw *o, const float *base, const et_named *t, int n_t, int policy, et_err *e) {
    if (n_t <= 0) return et_fail(e, ET_EINPUT, "adamw: no tensors");
    et_adamw_seg *s = malloc(sizeof *s * (size_t)n_t);
    if (!s) return et_fail(e, ET_ERUN, "adamw: out of memory");
    for (int i = 0; i < n_t; i++) {
        if (t[i].data < base || (size_t)(t[i].data - base) > o->n) {
            free(s);
            return et_fail(e, ET_EINPUT, "adamw: tensor %s lies outside the parameter block", t[i].name);
        }
        s[i].offset = (size_t)(t[i].data - base);
        s[i].n = t[i].n;
        s[i].decay = policy == ET_WD_ALL ? 1 : policy == ET_WD_NONE ? 0 : et_wd_default(t[i].name, t[i].n_dims);
    }
    qsort(s, (size_t)n_t, sizeof *s, cmp_seg);
    int rc = et_adamw_set_segments(o, s, n_t, e);
    free(s);
    return rc;
}

/* The update of elements [0, n) of one segment (pointers already offset).
 * Vectorized (ET_SIMD_CLONES, omp simd): GCC vectorizes sqrtf only without
 * errno, which neither a pragma nor a function attribute turns on, so the
 * Makefile compiles this file with -fno-math-errno (sqrtf of a negative
 * number, impossible here as v >= 0, would no longer set errno).  Every
 * element's arithmetic is unchanged (no contraction into FMA under -std=c11;
 * vector sqrt and division are IEEE-exact as the scalar ones), so the
 * result is bit-identical to the scalar loop: 260k parameters (stories260K)
 * 0.43 -> 0.05 ms on 2 cores. */
ET_SIMD_CLONES
static void adamw_kernel(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                         float gscale, float b1, float b2, float step_size, float bc2_sqrt, float eps,
                         float decay_mul) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i] * decay_mul;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

void et_adamw_step(et_adamw *o, float *params, const float *grads, float lr, float gscale) {
    o->step++;
    const double t = (double)o->step;
    const float b1 = o->hp.beta1, b2 = o->hp.beta2, eps = o->hp.eps;
    const float step_size = (float)((double)lr / (1.0 - pow((double)b1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, t));
    const float decay_mul = 1.0f - lr * o->hp.weight_decay;
    float *m = o->m, *v = o->v;
    const int n_seg = o->n_seg;
    const et_adamw_seg *seg = o->seg;
    #pragma omp parallel
    {
        /* each thread takes the same share of every segment (static split) */
        const size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        for (int s = 0; s < n_seg; s++) {
            const size_t a = seg[s].offset + seg[s].n * id / nt, b = seg[s].offset + seg[s].n * (id + 1) / nt;
            if (b > a)
                adamw_kernel(params + a, grads + a, m + a, v + a, b - a, gscale, b1, b2, step_size, bc2_sqrt, eps,
                             seg[s].decay ? decay_mul : 1.0f);
        }
    }
}

/* Sum of squares of g[0, n) in double: 8 running sums (one vector), then
 * combined in a fixed order, so every vector width gives the same result. */
ET_SIMD_CLONES static double sum_squares(const float *g, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        #pragma omp simd
        for (int u = 0; u < 8; u++) acc[u] += (double)g[i + u] * (double)g[i + u];
    }
    for (; i < n; i++) acc[i & 7] += (double)g[i] * (double)g[i];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

#define NORM_CHUNK 65536

float et_grad_scale_clip(const float *g, size_t n, float scale, float max_norm, double *norm) {
    size_t n_chunk = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double stack[256];
    double *part = n_chunk <= 256 ? stack : malloc(sizeof(double) * n_chunk);
    double sum = 0.0;
    if (!part) { /* out of memory: serial, the same chunks, still deterministic */
        for (size_t a = 0; a < n; a += NORM_CHUNK) sum += sum_squares(g + a, n - a < NORM_CHUNK ? n - a : NORM_CHUNK);
    } else {
        #pragma omp parallel for schedule(static)
        for (ptrdiff_t c = 0; c < (ptrdiff_t)n_chunk; c++) {
            size_t a = (size_t)c * NORM_CHUNK, b = a + NORM_CHUNK < n ? a + NORM_CHUNK : n;
            part[c] = sum_squares(g + a, b - a);
        }
        for (size_t c = 0; c < n_chunk; c++) sum += part[c];
        if (part != stack) free(part);
    }
    double nrm = sqrt(sum) * fabs((double)scale);
    if (norm) *norm = nrm;
    if (max_norm <= 0.0f || !isfinite(nrm)) return scale;
    double coef = (double)max_norm / (nrm + 1e-6);
    return coef < 1.0 ? (float)(scale * coef) : scale;
}

float et_lr_at(const et_lr_sched *s, int64_t step) {
    if (step < 0) step = 0;
    if (s->warmup > 0 && step < s->warmup) return (float)((double)s->lr * (double)(step + 1) / (double)s->warmup);
    int64_t span = s->total - s->warmup;
    double p = (double)(step - s->warmup) / (double)(span > 1 ? span : 1);
    if (p > 1.0) p = 1.0;
    double lr = s->lr, lo = s->min_lr;
    switch (s->kind) {
    case ET_LR_COSINE: return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(M_PI * p)));
    case ET_LR_LINEAR: return (float)(lr + (lo - lr) * p);
    default: return (float)lr;
    }
}

int et_lr_kind_parse(const char *name) {
    if (!strcmp(name, "constant")) return ET_LR_CONSTANT;
    if (!strcmp(name, "cosine")) return ET_LR_COSINE;
    if (!strcmp(name, "linear")) return ET_LR_LINEAR;
    return -1;
}

const char *et_lr_kind_name(int kind) {
    return kind == ET_LR_COSINE ? "cosine" : kind == ET_LR_LINEAR ? "linear" : "constant";
}
