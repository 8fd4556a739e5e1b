/* train/optim.h — AdamW over the flat parameter block, gradient clipping by
 * global norm, learning-rate schedules.
 *
 *   et_adamw opt; et_err e = {0};
 *   et_adamw_init(&opt, m.n_params, &(et_adamw_hp){.beta1 = 0.9f, .beta2 = 0.95f,
 *                                    .eps = 1e-8f, .weight_decay = 0.1f}, &e);
 *   et_adamw_mask_model(&opt, &m, ET_WD_DEFAULT, &e);   // no decay on norms, embeddings
 *   et_lr_sched s = {ET_LR_COSINE, 3e-4f, 3e-5f, 100, 5000};
 *   for (step...) {
 *       // grads = sum over n_micro micro-batches of d(mean loss)/d(params)
 *       double norm;
 *       float g = et_grad_scale_clip(grads, n, 1.0f / n_micro, 1.0f, &norm);
 *       if (!isfinite(norm)) stop;
 *       et_adamw_step(&opt, params, grads, et_lr_at(&s, opt.step), g);
 *   }
 *   et_adamw_free(&opt);
 *
 * The update is Loshchilov & Hutter, "Decoupled Weight Decay Regularization"
 * (ICLR 2019), Algorithm 2, exactly as PyTorch torch.optim.AdamW
 * (amsgrad=False, maximize=False) computes it, step t counted from 1:
 *   p   <- p * (1 - lr*wd)                          (decayed tensors only)
 *   m   <- beta1*m + (1-beta1)*g
 *   v   <- beta2*v + (1-beta2)*g*g
 *   p   <- p - (lr / (1-beta1^t)) * m / (sqrt(v) / sqrt(1-beta2^t) + eps)
 * The loop is element-wise (OpenMP), so results do not depend on the thread
 * count.  Element-wise updates are float; the bias corrections are double.
 *
 * 8-bit moments (et_adamw_init_state(..., ET_ADAMW_8BIT, ...); `--optim
 * adamw8bit`): block-wise quantized optimizer state after Dettmers, Lewis,
 * Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise Quantization"
 * (arXiv:2110.02861): every segment is cut into blocks of ET_ADAMW8_BLOCK
 * elements (the last one shorter), each block stores its moments as 8-bit
 * codes and one float absmax per moment.  A step dequantizes a block's m and
 * v, applies the same update as above in float (the new m, v unrounded),
 * then re-quantizes them with the block's new absmax.  The code is not the
 * paper's dynamic-tree map but a floating-point one of the same kind (a
 * dynamic exponent, computed by bit arithmetic instead of a table search):
 *   m: sign bit, 4-bit exponent e, 3-bit mantissa f: |m|/absmax =
 *      2^(e-15) * (1 + f/8) for e >= 1, 0 for e = 0 (smallest 2^-14);
 *   v: 5-bit exponent e, 3-bit mantissa f: v/absmax = 2^(e-31) * (1 + f/8)
 *      for e >= 1, 0 for e = 0 (smallest 2^-30 -- its square root 2^-15
 *      matches m's range);
 * rounded to the nearest code (ties away from zero), except that a v > 0
 * never becomes 0 (it takes the smallest code: a zero second moment under a
 * nonzero first one is the instability the paper's dynamic range avoids).
 * Memory: 2 bytes + 8 / ET_ADAMW8_BLOCK bytes per parameter instead of 8.
 */
#ifndef ET_OPTIM_H
#define ET_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../export/model.h"

typedef struct et_adamw_hp {
    float beta1;        /* first-moment decay, e.g. 0.9 */
    float beta2;        /* second-moment decay, e.g. 0.95 or 0.999 */
    float eps;          /* added to sqrt(v_hat), e.g. 1e-8 */
    float weight_decay; /* decoupled decay coefficient (multiplied by lr), e.g. 0.1 */
} et_adamw_hp;

/* How the moments are stored (et_adamw_init_state). */
enum {
    ET_ADAMW_F32 = 0,   /* float32 m, v (et_adamw_init) */
    ET_ADAMW_8BIT = 1   /* block-wise 8-bit m, v (arXiv:2110.02861; codes above) */
};
#define ET_ADAMW8_BLOCK 256 /* elements per quantization block */

/* A contiguous run of the parameter block that the optimizer updates.
 * Elements outside every segment are never touched (frozen). */
typedef struct et_adamw_seg {
    size_t offset;      /* first element, in floats from the start of the block */
    size_t n;           /* elements */
    int decay;          /* 1: apply weight decay, 0: not */
} et_adamw_seg;

typedef struct et_adamw {
    et_adamw_hp hp;
    size_t n;           /* floats in the parameter block */
    float *m;           /* [n] first moment, zero at start (NULL when 8-bit) */
    float *v;           /* [n] second moment, zero at start (NULL when 8-bit) */
    int64_t step;       /* updates done so far; the next update uses t = step+1 */
    int n_seg;
    et_adamw_seg *seg;  /* [n_seg], sorted by offset, non-overlapping */
    /* ET_ADAMW_8BIT only (all NULL / 0 for ET_ADAMW_F32): */
    int state;          /* ET_ADAMW_F32 or ET_ADAMW_8BIT */
    uint8_t *m8;        /* [n] codes of m, by element (elements outside segments unused, 0) */
    uint8_t *v8;        /* [n] codes of v */
    size_t n_blk;       /* blocks over all segments: sum of ceil(seg.n / ET_ADAMW8_BLOCK) */
    float *m_absmax;    /* [n_blk] per block, segment by segment, in offset order */
    float *v_absmax;    /* [n_blk] */
    size_t *seg_blk;    /* [n_seg + 1] first block of each segment (seg_blk[n_seg] = n_blk) */
} et_adamw;

/* Allocate zero moments for a block of n floats; one segment [0, n) with
 * decay.  0, ET_EINPUT (bad hyper-parameters: beta outside [0,1), eps <= 0,
 * wd < 0) or ET_ERUN (out of memory). */
int et_adamw_init(et_adamw *o, size_t n, const et_adamw_hp *hp, et_err *e);
/* The same with the moments stored as `state` (ET_ADAMW_F32 or
 * ET_ADAMW_8BIT): 8-bit allocates 2n bytes of codes and one pair of absmax
 * floats per block of the segments.  ET_EINPUT also for an unknown state. */
int et_adamw_init_state(et_adamw *o, size_t n, const et_adamw_hp *hp, int state, et_err *e);
void et_adamw_free(et_adamw *o);

/* "adamw" -> ET_ADAMW_F32, "adamw8bit" -> ET_ADAMW_8BIT; -1 otherwise. */
int et_adamw_state_parse(const char *name);
/* The inverse ("adamw", "adamw8bit"; "?" for an unknown state). */
const char *et_adamw_state_name(int state);

/* Bytes the moments take: 8n (f32) or 2n + 8 n_blk (8-bit). */
size_t et_adamw_state_bytes(const et_adamw *o);

/* One block of 8-bit AdamW state, as et_adamw_step stores it: x[0..n)
 * (n >= 1 floats, finite; v >= 0 when is_v) -> *absmax = max |x[i]| and
 * q[i] = the code nearest |x[i]| * (1 / absmax) (both roundings in float;
 * above 1 gives the code of 1) with x[i]'s sign bit, under the
 * code of the moment (is_v 0: m's signed E4M3-style code, 1: v's unsigned
 * E5M3-style code; see the top of this file), ties away from zero, a
 * positive v never coded 0.  absmax 0 gives all codes 0. */
void et_adamw8_quantize(const float *x, size_t n, int is_v, uint8_t *q, float *absmax);
/* The value of code q in [-1, 1] (multiply by the block's absmax to
 * dequantize: x ~ et_adamw8_value(q, is_v) * absmax, as the step does). */
float et_adamw8_value(uint8_t q, int is_v);

/* The 8-bit state layout must be rebuilt when the segments change:
 * et_adamw_set_segments resets an 8-bit optimizer's moments to zero (call
 * it before the first step, as the trainer does). */

/* Replace the segments.  They must lie inside [0, n) and be sorted and
 * non-overlapping; else ET_EINPUT and the old segments are kept. */
int et_adamw_set_segments(et_adamw *o, const et_adamw_seg *seg, int n_seg, et_err *e);

/* Weight-decay policy for et_adamw_mask_model. */
enum {
    ET_WD_DEFAULT = 0, /* decay 2-D weights except token_embd (norms and embeddings: none) */
    ET_WD_ALL = 1,     /* decay every tensor */
    ET_WD_NONE = 2     /* decay nothing */
};
/* Whether the default policy decays tensor `name` with n_dims dimensions. */
int et_wd_default(const char *name, int n_dims);
/* One segment per tensor t[0..n_t) (data pointers into the block that
 * starts at base), decay chosen by `policy`.  0 or ET_EINPUT (a tensor
 * outside the block, overlapping tensors). */
int et_adamw_mask_tensors(et_adamw *o, const float *base, const et_named *t, int n_t, int policy, et_err *e);
/* One segment per parameter tensor of m (et_model_tensors, offsets into
 * m->params), decay chosen by `policy`.  o->n must equal m->n_params.
 * 0 or ET_EINPUT. */
int et_adamw_mask_model(et_adamw *o, const et_model *m, int policy, et_err *e);

/* One AdamW update of params[n] with grads[n] * gscale (gscale folds in the
 * 1/n_micro of gradient accumulation and the clipping factor; grads is not
 * modified).  lr is the learning rate for this step.  Increments o->step. */
void et_adamw_step(et_adamw *o, float *params, const float *grads, float lr, float gscale);

/* Global L2 norm of (scale * g[0..n)), summed in double over fixed chunks
 * of 65536 elements so it does not depend on the thread count.  Returns the
 * factor to pass to et_adamw_step: scale * min(1, max_norm / (norm + 1e-6))
 * (torch.nn.utils.clip_grad_norm_), or just scale when max_norm <= 0.
 * *norm (may be NULL) receives the norm before clipping; it is NaN or Inf
 * when a gradient is, and the caller should stop. */
float et_grad_scale_clip(const float *g, size_t n, float scale, float max_norm, double *norm);

/* ---- learning-rate schedules ---- */
enum { ET_LR_CONSTANT = 0, ET_LR_COSINE = 1, ET_LR_LINEAR = 2 };

typedef struct et_lr_sched {
    int kind;           /* ET_LR_* */
    float lr;           /* peak learning rate (after warmup) */
    float min_lr;       /* floor reached at total_steps (cosine, linear) */
    int64_t warmup;     /* steps of linear warmup; 0 for none */
    int64_t total;      /* total optimizer steps of the run */
} et_lr_sched;

/* Learning rate of optimizer step `step` (0-based).
 *   warmup: step < warmup     -> lr * (step+1) / warmup   (karpathy/llm.c; no zero-lr step)
 *   then p = (step - warmup) / max(1, total - warmup), clamped to [0, 1]:
 *   constant: lr
 *   cosine:   min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * p))   (Loshchilov & Hutter, SGDR)
 *   linear:   lr + (min_lr - lr) * p */
float et_lr_at(const et_lr_sched *s, int64_t step);
/* Parse "constant", "cosine" or "linear"; -1 if none of them. */
int et_lr_kind_parse(const char *name);
/* The name of kind ("cosine", "linear"; "constant" for anything else). */
const char *et_lr_kind_name(int kind);

#endif
