/* train/trainer.h — the training loop: batches from the loader, gradient
 * accumulation, clipping, AdamW, LR schedule, periodic evaluation and
 * checkpoints, a clean stop on NaN/Inf, bit-for-bit resume.
 *
 * The loop does not know the model: it drives an et_train_model, a flat
 * parameter block with its gradient block and two functions (one micro-batch
 * forward+backward, one forward only).  train/train_llama.h binds the llama
 * forward/backward of train/llama.h to it; LoRA or distillation can bind
 * their own.
 *
 *   et_train_opts o = et_train_defaults();
 *   o.steps = 1000; o.batch_size = 8; o.seq_len = 256; o.ckpt_path = "out/checkpoint.h5";
 *   et_train_result r;
 *   int rc = et_train_run(&tm, train_loader, valid_loader, &o, &r, &e);
 *
 * One step, for step s = 1 .. steps (s = optimizer updates done after it):
 *   1. take grad_accum micro-batches [B, T+1] from the training loader and
 *      count the targets over all of them (n_tok: mask[b][1..T] ones);
 *   2. zero the gradient block; for each micro-batch call fwd_bwd with
 *      norm = n_tok, so the gradients add up to those of the mean token loss
 *      over the whole step (gradient accumulation, exact for uneven masks);
 *      If n_tok is 0 (every target of every micro-batch masked: short
 *      instruction records whose answer was cut off), nothing is updated:
 *      parameters, AdamW moments and its step count, the schedule and the
 *      RNG stay as they were; a SKIP event is emitted and the step is tried
 *      again on the next micro-batches (so `steps` counts updates).  A whole
 *      pass over the training rows without a target is ET_EINPUT;
 *   3. loss = sum of token losses / n_tok; if it or the gradient norm is NaN
 *      or Inf: stop with ET_ERUN naming the step; parameters, moments and the
 *      last checkpoint are left as they were before this step;
 *   4. clip by global norm (et_grad_scale_clip), AdamW with et_lr_at(s-1);
 *   5. every eval_every steps (and at step 0 and at the end): mean token loss
 *      and perplexity exp(loss) on the validation loader;
 *   6. every ckpt_every steps (and at the end): checkpoint (train/checkpoint.h).
 * Determinism: the only state is parameters, AdamW moments, step, the RNG
 * and the loader cursor, all in the checkpoint; with the same thread count a
 * resumed run computes the same floats as an uninterrupted one.
 */
#ifndef ET_TRAINER_H
#define ET_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../datasets/loader.h"
#include "../export/model.h"
#include "optim.h"
#include "rng.h"

#define ET_TRAIN_MAX_AUX 4

/* What the loop trains.  fwd_bwd ADDS into grads. */
typedef struct et_train_model {
    void *ctx;
    float *params;          /* [n] the trained block */
    float *grads;           /* [n] its gradients, same layout */
    size_t n;
    const et_named *t;      /* [n_t] tensors in the block (checkpoint table, decay mask) */
    int n_t;
    /* One micro-batch: tokens [B, T+1], mask [B, T+1] as the loader fills
     * them (inputs tokens[b][0..T-1], targets tokens[b][1..T], weights
     * mask[b][1..T]).  grads += d(sum of target losses / norm)/dparams.
     * *loss_sum = sum of -log p(target) over the weighted targets (nats).
     * 0 or an ET_E* code with e filled. */
    int (*fwd_bwd)(void *ctx, const int32_t *tokens, const uint8_t *mask, int B, int T, double norm,
                   double *loss_sum, et_err *e);
    /* The same loss without gradients (evaluation). */
    int (*forward)(void *ctx, const int32_t *tokens, const uint8_t *mask, int B, int T, double *loss_sum,
                   et_err *e);
    /* Optional, for losses that need data stored beside the tokens (the
     * teacher log-probs of distillation): when set, row_pos [B] gets each
     * row's /tokens index (et_loader_next_pos; -1 = padding) before every
     * fwd_bwd and forward call. */
    int64_t *row_pos;
    /* Optional extra figures per step (distillation: "ce" and "kl"): after a
     * step's fwd_bwd calls, aux_take(ctx, sums) gives n_aux sums over the
     * step's target tokens and resets them; STEP events carry them as means
     * per target token (et_train_event.aux). */
    int n_aux;
    const char *aux_name[ET_TRAIN_MAX_AUX];
    void (*aux_take)(void *ctx, double *sums);
} et_train_model;

typedef struct et_train_event et_train_event;

typedef struct et_train_opts {
    int64_t steps;          /* optimizer steps of the whole run */
    int batch_size;         /* B: rows per micro-batch (must match the loaders) */
    int seq_len;            /* T: positions per row (must match the loaders) */
    int grad_accum;         /* micro-batches per step (>= 1) */
    et_adamw_hp adamw;
    int optim_state;        /* how AdamW stores its moments: ET_ADAMW_F32 (0, default) or ET_ADAMW_8BIT
                               (train/optim.h; `--optim adamw8bit`); checkpoints record it */
    int wd_policy;          /* ET_WD_* (optim.h) */
    et_lr_sched sched;      /* its total is set to steps by et_train_run */
    float grad_clip;        /* max global gradient norm; 0 = no clipping */
    int64_t eval_every;     /* steps between evaluations; 0 = only at the start and end */
    int64_t eval_batches;   /* validation batches per evaluation; 0 = the whole split */
    int64_t ckpt_every;     /* steps between checkpoints; 0 = only at the end */
    const char *ckpt_path;  /* NULL: no checkpoints */
    int resume;             /* 1: continue from ckpt_path */
    uint64_t seed;          /* seeds the trainer RNG (the loaders have their own seeds) */
    const char *config;     /* recipe JSON stored in checkpoints; may be NULL */
    /* Called after every step, evaluation and checkpoint (see et_train_event);
     * a nonzero return stops the run after saving a checkpoint (e.g. Ctrl-C).
     * May be NULL. */
    int (*on_event)(void *user, const et_train_event *ev);
    void *user;
} et_train_opts;

/* steps 100, B 4, T 256, accum 1, AdamW (0.9, 0.95, 1e-8, 0.1), ET_WD_DEFAULT,
 * cosine lr 3e-4 -> 3e-5 with 10 warmup steps, clip 1.0, eval_every 0,
 * eval_batches 0, ckpt_every 0, seed 1. */
et_train_opts et_train_defaults(void);

enum { ET_EV_STEP = 1, ET_EV_EVAL = 2, ET_EV_CKPT = 3, ET_EV_SKIP = 4 };

struct et_train_event {
    int kind;               /* ET_EV_* */
    int64_t step;           /* optimizer steps done */
    int64_t steps;          /* of the whole run */
    double loss;            /* STEP: mean training token loss of this step (nats) */
    double grad_norm;       /* STEP: global norm before clipping */
    float lr;               /* STEP: learning rate used */
    int64_t tokens;         /* training target tokens consumed so far */
    double tokens_per_s;    /* STEP: input tokens per second of this step */
    double elapsed_s;       /* wall time since this process started training */
    double eta_s;           /* estimated seconds to the end (-1 unknown) */
    double val_loss;        /* EVAL: mean validation token loss (nats) */
    double val_ppl;         /* EVAL: exp(val_loss) */
    int64_t val_tokens;     /* EVAL: validation targets counted */
    const char *path;       /* CKPT: file written */
    int64_t skipped;        /* SKIP: micro-batch groups without a target token skipped so far in this
                               process (step = the update they were drawn for; nothing was updated) */
    int n_aux;              /* STEP: extra figures of the model (et_train_model.aux_name), */
    const char *const *aux_name;
    double aux[ET_TRAIN_MAX_AUX]; /* as means per target token */
};

/* The event as one JSON object (no newline) in buf; returns the length
 * (snprintf-style). */
int et_train_event_json(const et_train_event *ev, char *buf, size_t cap);

typedef struct et_train_result {
    int64_t step;           /* steps done when the run ended */
    double last_loss;       /* training loss of the last step (NaN if none) */
    double val_loss;        /* last evaluation (NaN if none) */
    int64_t tokens;         /* training targets consumed */
    int64_t skipped;        /* steps skipped for having no target token (this process) */
    double first_val_loss;  /* the run's first evaluation (step 0), also after a resume (kept in the
                               checkpoint); NaN if none */
    int64_t first_val_step; /* its step; -1 if none */
} et_train_result;

/* Train tm with batches from train (loop, shuffled as its options say) and
 * evaluate on valid (may be NULL: no evaluation).  0 when opts->steps are
 * done (or on_event asked to stop), ET_EUSAGE for bad options, ET_EINPUT
 * for a checkpoint that does not match, ET_ERUN for NaN/Inf (message names
 * the step and the checkpoint kept), I/O or a model error. */
int et_train_run(const et_train_model *tm, et_loader *train, et_loader *valid, const et_train_opts *opts,
                 et_train_result *res, et_err *e);

/* Mean token loss of tm over up to max_batches batches of valid from its
 * start (0 = all); *n_tok = targets counted.  The loader's cursor is
 * restored afterwards.  0 or an error code. */
int et_train_evaluate(const et_train_model *tm, et_loader *valid, int B, int T, int64_t max_batches,
                      double *loss, int64_t *n_tok, et_err *e);

#endif
