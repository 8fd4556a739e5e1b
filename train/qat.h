/* train/qat.h — quantization-aware training (QAT) on the exact GGUF grids:
 * every weight the quantizer would quantize is seen by the forward as
 * w_q = dequantize(quantize(w)) with quant/'s bit-exact ggml quantizers and
 * the very per-tensor types `edgetune quantize --type FTYPE` would choose
 * (quant/quantize_model.h: output/token_embd -> Q6_K, the Q4_K_M / Q3_K_M
 * bumps of attn_v and ffn_down, the row-length fallbacks Q4_K -> Q5_0 ...),
 * while the optimizer updates the F32 master weights.  The backward is the
 * straight-through estimator (Bengio et al. 2013, arXiv:1308.3432):
 * dL/dw = dL/dw_q.  The op itself is train/op_fakequant.c.
 *
 *   et_qat_opts o = {.ftype = ET_FTYPE_MOSTLY_Q4_K_M, .start_step = 0};
 *   et_qat q;
 *   et_qat_attach(&q, &L, &o, &e);     // L bound by et_llama_bind (train/llama.h)
 *   for each optimizer step s = 1, 2, ...:
 *       et_qat_sync(&q);               // before the step's first forward (cheap when nothing changed)
 *       ... forward (et_llama_forward on L), backward, optimizer on the master weights ...
 *       et_qat_step(&q, s);            // the weights changed: requantize before the next forward
 *   et_qat_free(&q);                   // L back as it was
 *
 * How it plugs in (no second forward, train/llama.h): every fake-quantized
 * tensor's data pointer points at its cached w_q while QAT is on (set by
 * et_qat_sync, which et_train_llama calls before every forward), while its
 * gradient pointer stays the master's, so every op that reads it (the
 * linears' matmuls, fused with the residual add where llama.c fuses them,
 * the embedding lookup, the LM head) adds dL/dw_q into w's gradient: the
 * STE, with no extra node or copy.  With et_qat_opts.hooks the linears go
 * through the linear hook et_linear.fn instead (et_qat_linear: et_matmul on
 * a view of the cache with w's gradient; it syncs a stale cache itself); a
 * hook that was already set (LoRA: train/lora_llama.h) is not replaced — for
 * LoRA-QAT use et_lora_llama_qat (train/lora_llama.h).
 * So anything that reads the model through L sees w_q, and anything that
 * reads the parameter block (optimizer, checkpoint, et_model_save_gguf)
 * sees the master weights.  Exporting the master weights as F32 and running
 * `edgetune quantize --type FTYPE` on them writes exactly w_q's blocks
 * (tests/test_qat.c checks the dequantized file against the cache, bit for
 * bit, and engine logits against the training forward's).
 *
 * Cost: each weight is quantized and dequantized once per optimizer step
 * (on the first forward after et_qat_step, or in et_qat_sync), not per use:
 * gradient accumulation and activation recomputation reuse the cache.
 * Memory: one float per quantized weight (the cache).
 *
 * Schedule: fake quantization starts after start_step optimizer steps
 * (torchao's fake_quant_after_n_steps); before that the forward uses the
 * master weights.  et_qat_step(q, s) (or et_qat_set_step on resume) decides.
 *
 * Determinism: the cache is a pure function of the master weights, so a run
 * resumed from a checkpoint computes the same floats (the trainer's resume
 * test holds with QAT on).
 */
#ifndef ET_QAT_H
#define ET_QAT_H

#include <stdint.h>

#include "llama.h"

typedef struct et_qat_opts {
    int ftype;              /* enum et_ftype (quant/quantize_model.h): the type
                               mix `edgetune quantize --type` applies (Q4_0,
                               Q4_K_M, Q3_K_M, Q2_K, ...) */
    int64_t start_step;     /* fake-quant once this many optimizer steps are done */
    /* Optional per-tensor overrides (--qat-type-map): n_over entries of
     * (GGUF tensor name, ggml type); a type whose block does not divide the
     * row length falls back as et_quant_fallback says (reported). */
    int n_over;
    const char *const *over_names;
    const uint32_t *over_types;
    /* Optional: called for every tensor whose row length forces a fallback
     * type, with the reason (as `edgetune quantize` prints it). */
    void (*notice)(void *ctx, const char *name, const char *why);
    void *notice_ctx;
    int hooks;              /* 0 (default): every weight's data pointer is switched
                               to its cache by et_qat_sync, so the forward runs its
                               own fused ops (the GEMM with the residual add);
                               1: the linears get the hook et_qat_linear instead,
                               which brings a stale cache up to date lazily */
    int act;                /* 1 (--qat-act): also round each fake-quantized
                               linear's input, and the LM head's, as the engine
                               does for that weight type (et_fake_quant_act);
                               forces the linear hooks */
    /* Optional importance matrix (quant/imatrix.h; --qat-imatrix F): the
     * forward then sees `edgetune quantize --type FTYPE --imatrix F`'s grid
     * (ggml's weighted quantize_row_*_impl searches, et_quantize_rows_imatrix,
     * and the imatrix type rule: Q4_0's first n_layer/8 ffn_down -> Q4_1), so
     * QAT starts from imatrix PTQ.  The imatrix must match the model
     * (et_imatrix_check; imatrix_name names it in errors). */
    const struct et_imatrix *imatrix;
    const char *imatrix_name;
} et_qat_opts;

/* One fake-quantized weight. */
typedef struct et_qat_w {
    char name[64];
    et_tensor *t;           /* the bound tensor in L (data: master or cache) */
    float *master;          /* its F32 master weights (t->data when attached) */
    float *wq;              /* [n] the cache: dequantize(quantize(master)) */
    et_tensor view;         /* the cache as a tensor with the master's gradient */
    uint32_t type;          /* the tensor type it is quantized to */
    float *imw;             /* [cols] the imatrix's per-column weights
                               (et_imatrix_weights), or NULL: unweighted */
    uint32_t want;          /* the policy's type before the row-length fallback */
    int64_t rows, cols;     /* [rows, cols], cols = row length ne[0] */
    uint64_t gen;           /* q->gen when wq was made (0: never) */
    int constant;           /* the tensor is frozen (no gradient, no LoRA): made once */
    et_linear *lin;         /* its linear (hooked with et_qat_linear when
                               hooks), or NULL for token_embd/output */
    float **data_ptr;       /* the tensor's data pointer (all but hooked linears),
                               set to wq while QAT is on (else the master) */
    const void **frozen_ptr;/* LoRA-QAT: the slot's frozen weight pointer, the same way */
    /* LoRA-QAT (et_lora_llama_qat): the branch merged before quantizing;
     * lora_a NULL otherwise.  Then wq = fq(W + s B A) - s B A, so the LoRA
     * linear x wq^T + s (x A^T) B^T equals x fq(W + s B A)^T up to float
     * rounding, with the STE gradients for A and B and dx through w_q. */
    const float *lora_a;    /* [rank, cols] */
    const float *lora_b;    /* [rows, rank] */
    int rank;
    float lora_scale;
    struct et_qat *owner;
} et_qat_w;

typedef struct et_qat {
    et_llama *L;
    et_qat_w *w;            /* [n_w] in quantize order (by layer, then name) */
    int n_w;
    int64_t start_step;
    int active;             /* 1: the forward sees w_q */
    int act;                /* et_qat_opts.act */
    uint64_t gen;           /* bumped by et_qat_step: caches older than this are stale */
    uint64_t n_refresh;     /* tensors requantized so far (for tests and benches) */
    int n_fallback;         /* tensors whose row length forced a fallback type */
    void *scratch;          /* quantized bytes of the largest tensor */
    size_t scratch_bytes;
} et_qat;

/* The per-tensor types that `edgetune quantize --type ftype` (et_quantize_model)
 * gives the model L is bound to, with its policy (et_quant_choose) run over
 * L's tensors in the file's order.  For each bound tensor i of L
 * (L->tensors[i]): types[i] = the type it is written in (GGML_TYPE_F32 for
 * tensors the quantizer leaves alone: norms, biases), want[i] (may be NULL)
 * = the rule's type before the row-length fallback; has_imatrix: 1 for the
 * types `quantize --imatrix` gives (llama-quantize's has_imatrix rule);
 * msg (may be NULL) is
 * called for every fallback with the quantizer's reason.
 * 0, ET_EUSAGE (unknown ftype) or ET_EINPUT (a type edgetune cannot
 * produce; L not bound to a model). */
int et_qat_types(const et_llama *L, int ftype, int has_imatrix, uint32_t *types, uint32_t *want,
                 void (*msg)(void *ctx, const char *name, const char *why), void *ctx, et_err *e);

/* Attach QAT to a bound model: choose the types (et_qat_types, then the
 * overrides), allocate the caches, hook the linears whose fn is NULL.
 * Tensors whose type is F32 are left alone.  The caches are made lazily
 * (first forward or et_qat_sync).  0, ET_EUSAGE (unknown ftype or override
 * type), ET_EINPUT (override names no tensor of L) or ET_ERUN (memory). */
int et_qat_attach(et_qat *q, et_llama *L, const et_qat_opts *o, et_err *e);
/* Undo attach (hooks cleared, data pointers back to the master weights)
 * and free the caches. */
void et_qat_free(et_qat *q);

/* After optimizer step `step` (1-based count of updates done): marks every
 * cache stale and turns fake quantization on once step >= start_step. */
void et_qat_step(et_qat *q, int64_t step);
/* The same without marking (resume from a checkpoint at `step`). */
void et_qat_set_step(et_qat *q, int64_t step);
/* Mark every cache stale (the master weights were changed from outside,
 * e.g. loaded from a checkpoint). */
void et_qat_invalidate(et_qat *q);
/* Bring every stale cache up to date and point token_embd/output at theirs
 * (or back at the master weights while QAT is off).  Call before a forward;
 * et_train_llama does (train/train_llama.h).  Uses OpenMP over rows. */
void et_qat_sync(et_qat *q);

/* 1 when w's cache must be remade before the next forward reads it. */
int et_qat_stale(const et_qat_w *w);

/* The entry for a bound tensor, or NULL when it is not fake-quantized. */
et_qat_w *et_qat_find(et_qat *q, const char *name);

/* ---- the op (train/op_fakequant.c) ---- */

/* Fake quantization, forward: wq[rows, cols] = dequantize(quantize(w)) row
 * by row in ggml `type` (quant/quant.h, bit-exact with ggml's
 * quantize_row_*_ref / dequantize_row_*).  cols must be a multiple of the
 * type's block (et_quant_block_elems); scratch holds
 * et_quant_row_bytes(type, cols) * rows bytes.  wq may equal w.  OpenMP over
 * rows.  0 or ET_EINPUT (unsupported type, cols not a multiple). */
int et_fake_quant_rows(uint32_t type, const float *w, float *wq, int64_t rows, int64_t cols, void *scratch);
/* The same on `edgetune quantize --imatrix`'s grid: each row quantized by
 * et_quantize_rows_imatrix with the per-column weights imw [cols] (ggml's
 * quantize_row_*_impl with quant_weights; imw NULL: et_fake_quant_rows).
 * Types whose ggml quantizer ignores the weights (Q8_0, F16, BF16) are the
 * same as unweighted.  0 or ET_EINPUT. */
int et_fake_quant_rows_imatrix(uint32_t type, const float *w, float *wq, int64_t rows, int64_t cols,
                               const float *imw, void *scratch);

/* Fake quantization as a tape op: the tensor w_q [rows, cols] of wq's
 * cache, whose gradient is w's.  Backward (the straight-through estimator,
 * arXiv:1308.3432): dL/dw += dL/dw_q, realized by sharing w's gradient
 * buffer, so no node is recorded and nothing is copied.  `view` is the
 * caller's persistent tensor (it must outlive the tape's nodes). */
et_tensor *et_fake_quant_view(et_tensor *view, const et_tensor *w, float *wq);

/* The linear hook of a fake-quantized weight (lin->ctx = its et_qat_w):
 * y[M, out] = x[M, in] w_q^T (+ b) with the cache brought up to date;
 * the master weights while QAT is off. */
et_tensor *et_qat_linear(et_tape *t, const char *name, et_tensor *x, et_linear *lin);

/* ---- activation rounding (--qat-act) ---- */

/* The activations of a matmul with a weight of `weight_type` as the engine
 * rounds them before its dot products (engine/kernels.h, ggml-cpu's
 * vec_dot_type): xq[rows, cols] = dequantize(quantize(x)) row by row in
 * Q8_0 blocks of 32 (Q8_0, Q4_0, Q5_0, IQ4_NL weights; also Q4_1/Q5_1,
 * whose Q8_1 activations have Q8_0's qs and d), Q8_K super-blocks of 256
 * (K-quants; d in fp32), fp16 (F16) or bf16 (BF16); F32: a copy.  The min
 * term of Q4_1/Q5_1 uses the block's fp16 sum s in the engine, which this
 * does not model (fp16 rounding of one addend per block).  xq may equal x.
 * OpenMP over rows.  0 or ET_EINPUT (unsupported type, cols not a multiple
 * of the activation block). */
int et_fake_quant_act_rows(uint32_t weight_type, const float *x, float *xq, int64_t rows, int64_t cols);
/* The same as a tape op: y = fq_act(x) [same shape as x, rows = all but the
 * last dimension]; backward the straight-through estimator, dx += dy
 * (arXiv:1308.3432).  F32 weights: x itself, no node.  NULL + tape error on
 * a bad shape. */
et_tensor *et_fake_quant_act(et_tape *t, const char *name, et_tensor *x, uint32_t weight_type);

#endif
