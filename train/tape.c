/* train/tape.c — the arena, tensors and the reverse walk (see tape.h). */
#include "tape.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */
struct et_arena_chunk {
    et_arena_chunk *next;
    size_t cap, used;
    unsigned char *base;   /* 64-byte aligned */
};

enum { ARENA_ALIGN = 64, ARENA_MIN_CHUNK = 1 << 20 };

static et_arena_chunk *chunk_new(et_arena *a, size_t cap) {
    et_arena_chunk *c = malloc(sizeof *c);
    if (!c) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, ARENA_ALIGN, cap ? cap : ARENA_ALIGN)) { free(c); return NULL; }
    c->base = p;
    c->cap = cap;
    c->used = 0;
    c->next = NULL;
    a->n_mallocs++;
    return c;
}

static void chunks_free(et_arena_chunk *c) {
    while (c) {
        et_arena_chunk *n = c->next;
        free(c->base);
        free(c);
        c = n;
    }
}

int et_arena_init(et_arena *a, size_t bytes, et_err *e) {
    memset(a, 0, sizeof *a);
    if (bytes) {
        a->chunks = chunk_new(a, bytes);
        if (!a->chunks) return et_fail(e, ET_ERUN, "arena: out of memory reserving %zu bytes", bytes);
    }
    return 0;
}

void *et_arena_alloc(et_arena *a, size_t bytes) {
    if (bytes > SIZE_MAX - ARENA_ALIGN) return NULL;
    size_t need = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    et_arena_chunk *c = a->chunks;
    if (!c || c->cap - c->used < need) {
        size_t cap = c ? c->cap * 2 : ARENA_MIN_CHUNK;
        if (cap < need) cap = need;
        et_arena_chunk *n = chunk_new(a, cap);
        if (!n) return NULL;
        if (c) a->used += c->cap - c->used; /* the unused tail counts: a
                                               single block must hold it too */
        n->next = c;
        a->chunks = c = n;
    }
    void *p = c->base + c->used;
    c->used += need;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void et_arena_reset(et_arena *a) {
    if (a->chunks && a->chunks->next) {
        size_t peak = a->peak;
        chunks_free(a->chunks);
        a->chunks = chunk_new(a, peak); /* on failure: lazily regrown next step */
    }
    if (a->chunks) a->chunks->used = 0;
    a->used = 0;
}

void et_arena_free(et_arena *a) {
    chunks_free(a->chunks);
    memset(a, 0, sizeof *a);
}

/* ---- tensors ---- */
static void set_name(char dst[48], const char *name) {
    snprintf(dst, 48, "%s", name ? name : "");
}

void et_tensor_wrap(et_tensor *t, const char *name, float *data, float *grad,
                    int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    set_name(t->name, name);
    t->data = data;
    t->grad = grad;
    t->requires_grad = grad != NULL;
    t->ndim = ndim;
    t->n = 1;
    for (int i = 0; i < ndim && i < ET_MAX_DIMS; i++) {
        t->shape[i] = shape[i];
        t->n *= (size_t)shape[i];
    }
}

void *et_tape_fail(et_tape *t, int code, const char *fmt, ...) {
    if (t->code) return NULL;
    t->code = code;
    t->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err.msg, sizeof t->err.msg, fmt, ap);
    va_end(ap);
    return NULL;
}

void *et_tape_alloc(et_tape *t, size_t bytes) {
    void *p = et_arena_alloc(&t->arena, bytes);
    if (!p) et_tape_fail(t, ET_ERUN, "tape arena: out of memory (%zu bytes requested, %zu in use)",
                         bytes, t->arena.used);
    return p;
}

void *et_tape_scratch(et_tape *t, size_t bytes) {
    if (bytes > t->scratch_cap) {
        free(t->scratch);
        t->scratch = NULL;
        t->scratch_cap = 0;
        size_t cap = (bytes + 63) & ~(size_t)63;
        if (bytes > SIZE_MAX - 64 || posix_memalign(&t->scratch, 64, cap)) {
            t->scratch = NULL;
            et_tape_fail(t, ET_ERUN, "tape scratch: out of memory (%zu bytes)", bytes);
            return NULL;
        }
        t->scratch_cap = cap;
        t->arena.n_mallocs++;
    }
    return t->scratch;
}

/* Elements of a valid shape (ndim 1..ET_MAX_DIMS, sizes >= 1, no overflow
 * of a float buffer's bytes), or 0 + tape error. */
static size_t shape_elems(et_tape *t, const char *name, int ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > ET_MAX_DIMS) {
        et_tape_fail(t, ET_EINPUT, "tensor %s: %d dimensions (1..%d allowed)", name ? name : "", ndim, ET_MAX_DIMS);
        return 0;
    }
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || (uint64_t)shape[i] > SIZE_MAX / sizeof(float) / n) {
            et_tape_fail(t, ET_EINPUT, "tensor %s: bad size %lld in dimension %d", name ? name : "",
                         (long long)shape[i], i);
            return 0;
        }
        n *= (size_t)shape[i];
    }
    return n;
}

et_tensor *et_tensor_new(et_tape *t, const char *name, int ndim, const int64_t *shape, int requires_grad) {
    const size_t n = shape_elems(t, name, ndim, shape);
    if (!n) return NULL;
    et_tensor *x = et_tape_alloc(t, sizeof *x);
    float *d = x ? et_tape_alloc(t, n * sizeof(float)) : NULL;
    if (!d) return NULL;
    et_tensor_wrap(x, name, d, NULL, ndim, shape);
    x->requires_grad = requires_grad;
    return x;
}

et_tensor *et_tensor_2d(et_tape *t, const char *name, int64_t rows, int64_t cols, int requires_grad) {
    int64_t s[2] = {rows, cols};
    return et_tensor_new(t, name, 2, s, requires_grad);
}

/* ---- recycled gradient buffers: one free list per exact byte size ---- */
static size_t grad_bytes(const et_tensor *x) {
    return (x->n * sizeof(float) + 63) & ~(size_t)63; /* as the arena rounds */
}

static void *bin_take(et_tape *t, size_t bytes) {
    for (int i = 0; i < t->n_bins; i++)
        if (t->bins[i].bytes == bytes && t->bins[i].head) {
            void *p = t->bins[i].head;
            memcpy(&t->bins[i].head, p, sizeof(void *)); /* next */
            return p;
        }
    return NULL;
}

static void bin_put(et_tape *t, void *p, size_t bytes) {
    int i = 0;
    while (i < t->n_bins && t->bins[i].bytes != bytes) i++;
    if (i == t->n_bins) {
        if (t->n_bins == ET_GRAD_BINS) return; /* too many sizes: just drop it */
        t->bins[t->n_bins].bytes = bytes;
        t->bins[t->n_bins++].head = NULL;
    }
    memcpy(p, &t->bins[i].head, sizeof(void *));
    t->bins[i].head = p;
}

float *et_grad_fresh(et_tape *t, et_tensor *x, int *fresh) {
    *fresh = 0;
    if (!x->requires_grad) return NULL;
    if (!x->grad) {
        const size_t bytes = grad_bytes(x);
        x->grad = bin_take(t, bytes);
        if (!x->grad) x->grad = et_tape_alloc(t, bytes);
        *fresh = x->grad != NULL;
    }
    return x->grad;
}

float *et_grad(et_tape *t, et_tensor *x) {
    int fresh;
    float *g = et_grad_fresh(t, x, &fresh);
    if (fresh) memset(g, 0, x->n * sizeof(float));
    return g;
}

int et_grad_take(et_tape *t, et_tensor *x, et_tensor *out) {
    if (!x->requires_grad || x->grad || x == out || x->n != out->n || !out->grad || t->keep_grads) return 0;
    x->grad = out->grad;
    out->grad = NULL;
    return 1;
}

/* ---- rematerialised outputs' pool (see tape.h) ---- */
/* A free pool buffer of at least n floats for owner: the smallest free one
 * that fits, else a free one (or a new entry) grown to fit. */
static float *pool_take(et_tape *t, const et_tensor *owner, size_t n) {
    if (n > (SIZE_MAX - 64) / sizeof(float))
        return et_tape_fail(t, ET_ERUN, "tape: rematerialised %s too large", owner->name);
    const size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    int pick = -1;
    for (int i = 0; i < t->n_pool; i++)
        if (!t->pool[i].owner && t->pool[i].cap >= bytes && (pick < 0 || t->pool[i].cap < t->pool[pick].cap))
            pick = i;
    if (pick < 0) {
        for (int i = 0; i < t->n_pool && pick < 0; i++)
            if (!t->pool[i].owner) pick = i;
        if (pick < 0) {
            if (t->n_pool == ET_REMAT_POOL)
                return et_tape_fail(t, ET_ERUN, "tape: more than %d rematerialised tensors alive at once (%s)",
                                    ET_REMAT_POOL, owner->name);
            pick = t->n_pool++;
            t->pool[pick].p = NULL;
            t->pool[pick].cap = 0;
        }
        free(t->pool[pick].p);
        t->pool[pick].cap = 0;
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes)) {
            t->pool[pick].p = NULL;
            return et_tape_fail(t, ET_ERUN, "tape: out of memory for rematerialised %s (%zu bytes)", owner->name,
                                bytes);
        }
        t->pool[pick].p = p;
        t->pool[pick].cap = bytes;
        t->arena.n_mallocs++;
    }
    t->pool[pick].owner = owner;
    return t->pool[pick].p;
}

/* The pool entry holding p for owner, or -1. */
static int pool_find(const et_tape *t, const float *p, const et_tensor *owner) {
    for (int i = 0; i < t->n_pool; i++)
        if (p && t->pool[i].p == p && t->pool[i].owner == owner) return i;
    return -1;
}

et_tensor *et_tape_remat_out(et_tape *t, const char *name, int ndim, const int64_t *shape, int wants_grad,
                             int *pooled) {
    *pooled = 0;
    if (!t->record || !wants_grad || t->no_remat || t->keep_grads)
        return et_tensor_new(t, name, ndim, shape, wants_grad);
    const size_t n = shape_elems(t, name, ndim, shape);
    et_tensor *x = n ? et_tape_alloc(t, sizeof *x) : NULL;
    if (!x) return NULL;
    et_tensor_wrap(x, name, NULL, NULL, ndim, shape);
    float *d = pool_take(t, x, n);
    if (!d) return NULL;
    x->data = d;
    x->requires_grad = wants_grad;
    *pooled = 1;
    return x;
}

void et_tape_drop(et_tape *t, et_tensor *y) {
    if (t->code || !y) return;
    const int i = pool_find(t, y->data, y);
    if (i < 0) return; /* kept in the arena */
    const et_node *p = t->last;
    while (p && !(p->out == y && p->remat)) p = p->prev;
    if (!p) {
        et_tape_fail(t, ET_EINPUT, "tape: drop of %s, which no rematerialising op produced", y->name);
        return;
    }
    et_node *m = et_tape_push(t, "remat", NULL, y, NULL, 0, NULL);
    if (!m) return;
    m->restore = p;
    t->pool[i].owner = NULL;
    y->data = NULL;
}

/* Backward at a drop marker: y's values back in a pool buffer. */
static void restore(et_tape *t, const et_node *m) {
    const et_node *p = m->restore;
    float *d = pool_take(t, p->out, p->out->n);
    if (!d) return;
    p->remat(p, d);
    p->out->data = d;
}

/* ---- tape ---- */
int et_tape_init(et_tape *t, size_t arena_bytes, et_err *e) {
    memset(t, 0, sizeof *t);
    t->record = 1;
    return et_arena_init(&t->arena, arena_bytes, e);
}

void et_tape_reset(et_tape *t) {
    et_arena_reset(&t->arena);
    t->last = NULL;
    t->n_nodes = 0;
    t->n_bins = 0;
    t->rope_tables = NULL; /* they lived in the arena */
    for (int i = 0; i < t->n_pool; i++) t->pool[i].owner = NULL; /* their tensors lived in the arena */
    t->code = 0;
    memset(&t->err, 0, sizeof t->err);
}

void et_tape_free(et_tape *t) {
    et_arena_free(&t->arena);
    free(t->scratch);
    for (int i = 0; i < t->n_pool; i++) free(t->pool[i].p);
    memset(t, 0, sizeof *t);
}

int et_tape_status(const et_tape *t, et_err *e) {
    if (t->code && e) *e = t->err;
    return t->code;
}

int et_tape_wants_grad(const et_tape *t, et_tensor *const *in, int n) {
    if (!t->record) return 0;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return 1;
    return 0;
}

et_node *et_tape_push(et_tape *t, const char *op, et_backward_fn backward,
                      et_tensor *out, et_tensor *const *in, int n_in, void *saved) {
    if (n_in > ET_NODE_MAX_IN) return et_tape_fail(t, ET_EINPUT, "%s: %d inputs (max %d)", op, n_in, ET_NODE_MAX_IN);
    et_node *nd = et_tape_alloc(t, sizeof *nd);
    if (!nd) return NULL;
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->backward = backward;
    nd->out = out;
    for (int i = 0; i < n_in; i++) nd->in[i] = in[i];
    nd->saved = saved;
    nd->prev = t->last;
    t->last = nd;
    t->n_nodes++;
    return nd;
}

et_tensor *et_tape_find(const et_tape *t, const char *name) {
    for (const et_node *n = t->last; n; n = n->prev)
        if (n->out && strcmp(n->out->name, name) == 0) return n->out;
    return NULL;
}

/* Newest node first.  A node whose output received no gradient is skipped;
 * after a node's backward, its output's gradient is complete and no longer
 * needed (every consumer of the output comes later in the tape and has run
 * already), so its buffer goes back to the bins — and a rematerialised
 * output's values, which no node still to run reads, go back to the pool.
 * A drop marker (et_tape_drop) restores its tensor's values. */
static int walk(et_tape *t) {
    for (const et_node *n = t->last; n && !t->code; n = n->prev) {
        if (n->restore) {
            restore(t, n);
            continue;
        }
        if (n->out->grad) {
            n->backward(t, n);
            if (!t->keep_grads && n->out->grad) { /* NULL: taken over (et_grad_take) */
                bin_put(t, n->out->grad, grad_bytes(n->out));
                n->out->grad = NULL;
            }
        }
        if (n->remat) {
            const int i = pool_find(t, n->out->data, n->out);
            if (i >= 0) {
                t->pool[i].owner = NULL;
                n->out->data = NULL;
            }
        }
    }
    return t->code;
}

int et_tape_backward(et_tape *t, et_tensor *loss) {
    if (t->code) return t->code;
    if (!loss || loss->n != 1) {
        et_tape_fail(t, ET_EINPUT, "backward: loss must be a one-element tensor");
        return t->code;
    }
    if (!loss->requires_grad) return 0; /* nothing to differentiate */
    float *g = et_grad(t, loss);
    if (!g) return t->code;
    g[0] += 1.0f;
    return walk(t);
}

int et_tape_backward_seed(et_tape *t, et_tensor *out, const float *dout) {
    if (t->code) return t->code;
    if (!out) {
        et_tape_fail(t, ET_EINPUT, "backward: NULL output");
        return t->code;
    }
    if (!out->requires_grad) return 0;
    float *g = et_grad(t, out);
    if (!g) return t->code;
    for (size_t i = 0; i < out->n; i++) g[i] += dout[i];
    return walk(t);
}
