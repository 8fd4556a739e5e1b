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
    float *m;           /* [n] first moment, zero at start */
    float *v;           /* [n] second moment, zero at start */
    int64_t step;       /* updates done so far; the next update uses t = step+1 */
    int n_seg;
    et_adamw_seg *seg;  /* [n_seg], sorted by offset, non-overlapping */
} et_adamw;

/* Allocate zero moments for a block of n floats; one segment [0, n) with
 * decay.  0, ET_EINPUT (bad hyper-parameters: beta outside [0,1), eps <= 0,
 * wd < 0) or ET_ERUN (out of memory). */
int et_adamw_init(et_adamw *o, size_t n, const et_adamw_hp *hp, et_err *e);
void et_adamw_free(et_adamw *o);

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
