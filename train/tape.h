/* train/tape.h — tensors, the per-step arena and the autograd tape.
 *
 * A step builds its graph eagerly: every op computes its output at once and,
 * when the tape is recording and some input needs a gradient, appends one
 * node (op name, inputs, output, what it saved, its backward function).
 * et_tape_backward() walks the nodes newest-first and each backward ADDS
 * (+=) into its inputs' gradients.  Once a node's backward has run, the
 * gradient of its output is complete and dead: its buffer is recycled for
 * the gradients still to come (so activation gradients take a few layers'
 * worth of memory, not the whole network's), unless keep_grads is set.  Everything a step allocates (activation
 * tensors, their gradients, saved data, nodes) comes from the tape's arena,
 * which et_tape_reset() rewinds after the optimizer step: after the first
 * step the arena holds one block of the peak size and a step calls malloc
 * no more (et_arena.n_mallocs stops growing).
 *
 *   et_tape t; et_err e = {0};
 *   et_tape_init(&t, 0, &e);
 *   for (step...) {
 *       et_tensor *loss = et_llama_forward(&t, &L, tokens, B, T, &tg);  // train/llama.h
 *       et_tape_backward(&t, loss);          // grads += dloss/dparam
 *       if (et_tape_status(&t, &e)) break;   // first error of any op, if any
 *       ... optimizer on the flat grad block ...
 *       et_tape_reset(&t);
 *   }
 *   et_tape_free(&t);
 *
 * Errors are sticky (as HDF5/ggml contexts do): an op that fails (bad shape,
 * out of memory) records the first error in the tape and returns NULL; every
 * later op given a NULL input returns NULL at once, so a forward pass need
 * not check each call — check et_tape_status() once at the end.
 *
 * Shapes are written outermost first, row-major, as PyTorch prints them:
 * a [rows, cols] tensor stores element (r, c) at data[r*cols + c].
 * Parameters use GGUF's [out, in] layout (row = one output unit).
 * Threads: ops use OpenMP for their own loops and call OpenBLAS only from
 * the calling thread, never from inside an OpenMP region.
 */
#ifndef ET_TAPE_H
#define ET_TAPE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"

/* ---- arena: a bump allocator rewound once per step ---- */
typedef struct et_arena_chunk et_arena_chunk;
typedef struct et_arena {
    et_arena_chunk *chunks;  /* newest first */
    size_t used;             /* bytes handed out since the last reset (with padding) */
    size_t peak;             /* largest `used` seen */
    size_t n_mallocs;        /* chunk allocations so far (constant in steady state) */
} et_arena;

/* Reserve `bytes` now (0: allocate lazily). 0 or ET_ERUN (out of memory). */
int et_arena_init(et_arena *a, size_t bytes, et_err *e);
/* 64-byte aligned, uninitialized; NULL when out of memory. */
void *et_arena_alloc(et_arena *a, size_t bytes);
/* Forget every allocation; if the last step needed more than one chunk,
 * replace them by a single chunk of the peak size (so the next step does
 * not allocate). */
void et_arena_reset(et_arena *a);
void et_arena_free(et_arena *a);

/* ---- tensors ---- */
#define ET_MAX_DIMS 4

typedef struct et_tensor {
    float *data;            /* values, row-major */
    float *grad;            /* same shape; NULL until backward first writes it
                               (activations) or NULL for good (frozen params) */
    int requires_grad;      /* 1: backward computes a gradient for it */
    int ndim;
    int64_t shape[ET_MAX_DIMS]; /* outermost first */
    size_t n;               /* elements */
    char name[48];          /* e.g. "blk.0.attn_q.weight", "blk.3.ffn_out"; may be "" */
} et_tensor;

/* Describe existing memory (a parameter): grad NULL = frozen.
 * Shape given as ndim sizes outermost first.  No allocation. */
void et_tensor_wrap(et_tensor *t, const char *name, float *data, float *grad,
                    int ndim, const int64_t *shape);
/* Rows = product of all dimensions but the last; cols = the last. */
static inline size_t et_rows(const et_tensor *t) { return t->ndim ? t->n / (size_t)t->shape[t->ndim - 1] : 1; }
static inline size_t et_cols(const et_tensor *t) { return t->ndim ? (size_t)t->shape[t->ndim - 1] : 1; }

/* ---- the tape ---- */
typedef struct et_tape et_tape;
typedef struct et_node et_node;

/* One op's backward: reads n->out->grad, ADDS into n->in[i]->grad for every
 * input with requires_grad (get the buffer with et_grad()). */
typedef void (*et_backward_fn)(et_tape *t, const et_node *n);

/* Recompute a node's output values into out [n->out->n] from the node's
 * inputs and saved data, bit for bit as its forward computed them (for
 * rematerialised outputs, see et_tape_drop). */
typedef void (*et_remat_fn)(const et_node *n, float *out);

#define ET_NODE_MAX_IN 6
struct et_node {
    const char *op;                 /* "matmul", "rmsnorm", ... (static string) */
    et_backward_fn backward;
    et_tensor *in[ET_NODE_MAX_IN];  /* unused slots NULL */
    et_tensor *out;
    void *saved;                    /* op-specific, in the arena */
    et_node *prev;                  /* previous node (backward order) */
    et_remat_fn remat;              /* set by ops whose output data is
                                       rematerialised (et_tape_remat_out) */
    const et_node *restore;         /* an et_tape_drop marker: the producer
                                       node whose output it brings back */
};

#define ET_REMAT_POOL 8

#define ET_GRAD_BINS 32
struct et_tape {
    et_arena arena;
    et_node *last;          /* newest node, NULL when empty */
    int n_nodes;
    int record;             /* 1 (default): record nodes; 0: forward only (eval) */
    int keep_grads;         /* 0 (default): an activation's gradient buffer is
                               recycled once its node's backward has run (its
                               grad pointer becomes NULL); 1: keep them all
                               readable after backward (debugging) */
    int gemm_precision;     /* ET_GEMM_F32 (0, the default) or ET_GEMM_BF16
                               (train/gemm.h): the precision of the GEMMs of
                               et_matmul* and et_cross_entropy (bf16 operands,
                               f32 accumulation, f32 everything else: bf16
                               mixed-precision training); kept by et_tape_reset */
    int code;               /* first error's ET_E* code, 0 if none */
    et_err err;             /* its message */
    struct { size_t bytes; void *head; } bins[ET_GRAD_BINS]; /* recycled gradient
                               buffers by size (internal) */
    int n_bins;
    void *scratch;          /* et_tape_scratch's buffer (internal) */
    size_t scratch_cap;
    int no_remat;           /* 1: et_tape_remat_out keeps outputs in the
                               arena like any activation (tests, A/B
                               measurements); kept by et_tape_reset */
    struct { float *p; size_t cap; const et_tensor *owner; } pool[ET_REMAT_POOL];
    int n_pool;             /* rematerialised outputs' buffers (internal) */
    void *rope_tables;      /* rope cos/sin tables made since the last reset,
                               shared by the layers (train/op_rope.c; internal) */
};

/* arena_bytes: reserved up front (0 = grow on the first step).
 * 0 or ET_ERUN. */
int et_tape_init(et_tape *t, size_t arena_bytes, et_err *e);
/* Drop all nodes and activations (after the optimizer step); keeps the
 * recording mode; clears the error. */
void et_tape_reset(et_tape *t);
void et_tape_free(et_tape *t);
/* 0 when no op failed since the last reset, else the first error's code
 * (message copied into e when e != NULL). */
int et_tape_status(const et_tape *t, et_err *e);

/* Backward from a one-element loss (seeded with dloss = 1).
 * 0, ET_EINPUT (loss not scalar / NULL) or the tape's first error. */
int et_tape_backward(et_tape *t, et_tensor *loss);
/* Backward from any tensor with a given upstream gradient dout[out->n]
 * (copied), e.g. to test one op or to chain a custom loss. */
int et_tape_backward_seed(et_tape *t, et_tensor *out, const float *dout);

/* ---- helpers for writing ops (see train/op_*.c for examples) ---- */
/* A fresh activation [shape] in the arena (data uninitialized, grad NULL),
 * requires_grad set from `requires_grad`.  NULL + tape error when out of
 * memory or the shape is invalid (ndim 1..4, sizes >= 1, product overflow). */
et_tensor *et_tensor_new(et_tape *t, const char *name, int ndim, const int64_t *shape, int requires_grad);
et_tensor *et_tensor_2d(et_tape *t, const char *name, int64_t rows, int64_t cols, int requires_grad);
/* Arena memory for an op's saved data; NULL + tape error on OOM. */
void *et_tape_alloc(et_tape *t, size_t bytes);
/* Temporary memory for one op call (forward or backward), 64-byte aligned:
 * the tape's single scratch buffer, grown when too small (counted in
 * arena.n_mallocs, so again only during the first step).  Valid until the
 * next et_tape_scratch call: ask once per call for everything needed.
 * NULL + tape error on OOM. */
void *et_tape_scratch(et_tape *t, size_t bytes);
/* The gradient buffer of x, allocated zeroed in the arena on first use;
 * NULL for a tensor that does not require grad (or on OOM). */
float *et_grad(et_tape *t, et_tensor *x);
/* The same for an op whose backward writes EVERY element of x's gradient:
 * when x has no gradient buffer yet, one is taken uninitialized (no memset)
 * and *fresh = 1 — the caller must then store (=), not add (+=), into every
 * element; otherwise the existing buffer with *fresh = 0 (add as usual).
 * NULL (and *fresh = 0) as et_grad. */
float *et_grad_fresh(et_tape *t, et_tensor *x, int *fresh);
/* For a backward whose input x receives exactly its output's gradient
 * (dx += dout, as a residual): when x has no gradient buffer yet, x takes
 * over out's buffer (no copy; out->grad becomes NULL, and the tape does not
 * recycle it after this node) and 1 is returned.  0 (nothing changed) when
 * x needs no gradient, already has one, differs in size, is out itself, or
 * the tape keeps gradients (keep_grads).  Only from the backward of the
 * node whose output is out, after its last write to out->grad; the caller
 * may still read the values through its own pointer. */
int et_grad_take(et_tape *t, et_tensor *x, et_tensor *out);
/* 1 if the tape records and any of the n inputs needs a gradient. */
int et_tape_wants_grad(const et_tape *t, et_tensor *const *in, int n);
/* Append a node (only call when et_tape_wants_grad()).  Returns the node
 * (to fill `saved`) or NULL + tape error on OOM. */
et_node *et_tape_push(et_tape *t, const char *op, et_backward_fn backward,
                      et_tensor *out, et_tensor *const *in, int n_in, void *saved);
/* ---- rematerialised activations (selective recomputation) ----
 * Some activations are read by backward only as GEMM operands and are cheap
 * to recompute from tensors that are kept anyway: an RMSNorm's normed rows
 * (from its input and the saved 1/rms), SwiGLU's product (from gate and
 * up).  Keeping them costs (2 n_embd + n_ff) floats per token and layer
 * (SmolLM2-135M at 1024 tokens: 330 MB of a 1 GB tape).  Instead such an
 * op (et_rmsnorm_remat, et_swiglu_remat in ops.h) writes its output into a
 * small pool buffer and sets its node's remat function; after the output's
 * last consumer the caller calls et_tape_drop(t, y), which gives the buffer
 * back and records a marker node.  Backward meets the marker before any
 * consumer's backward (it was pushed after them), takes a pool buffer,
 * recomputes the values into it (the same bits: the op's own forward
 * arithmetic on the same inputs) and points y->data at it; the buffer
 * returns to the pool after the producer's own backward, the last node to
 * read y.  Only a few pool buffers are alive at any time (one per tensor
 * between production and drop, one per tensor between marker and
 * producer).  Selective activation recomputation: Korthikanti et al. 2022,
 * arXiv:2205.05198 (they recompute attention; here only element-wise and
 * normalisation outputs, whose recomputation costs under 1% of a step). */

/* For an op's output: a fresh tensor [shape] whose data is a pool buffer
 * when the tape records, wants_grad is set and no_remat is 0 (*pooled = 1:
 * the op must then set its node's remat function), else et_tensor_new's
 * (*pooled = 0).  NULL + tape error on OOM or when every pool buffer is
 * busy (ET_ERUN). */
et_tensor *et_tape_remat_out(et_tape *t, const char *name, int ndim, const int64_t *shape, int wants_grad,
                             int *pooled);

/* After the last op that reads y in the forward pass: when y's data is a
 * pool buffer (et_tape_remat_out), give it back (y->data becomes NULL until
 * backward restores it) and record the marker that restores it; otherwise
 * nothing.  y must not be read again in the forward pass.  Tape error
 * (ET_EINPUT) when y's producer is not among the tape's nodes. */
void et_tape_drop(et_tape *t, et_tensor *y);

/* Record an error (first one wins); returns NULL so ops can
 * `return et_tape_fail(t, ET_EINPUT, "rmsnorm: ...")`. */
void *et_tape_fail(et_tape *t, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Loops doing less than this many element operations stay on the calling
 * thread (`#pragma omp parallel for if (work > ET_OMP_MIN_WORK)`): a parallel
 * region costs microseconds on a quiet machine and a scheduler time slice
 * when the cores are shared, far more than a small loop's work.  2^15: with
 * idle workers spinning ~30 us before they sleep (train/threads.h) the
 * stories260K element-wise ops ([1024, 64] .. [1024, 172]) gain from two
 * threads (step 25.2-26.2 -> 23.4-24.1 ms, 4 interleaved pairs; 2^18 before).
 * 2^13 since 2026-11-21: also the [1024, 32] k/v-sized loops go parallel
 * (stories260K step medians 23.3 -> 22.4 and 25.2 -> 24.7 ms in two
 * interleaved runs of 9 and 11 rounds; 2^16 and 2^17 were 5% slower). */
#define ET_OMP_MIN_WORK ((size_t)1 << 13)
/* The newest tensor recorded as an op output with this name, or NULL
 * (inspection and tests; recorded nodes only). */
et_tensor *et_tape_find(const et_tape *t, const char *name);

#endif
