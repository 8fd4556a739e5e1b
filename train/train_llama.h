/* train/train_llama.h — binds a llama model (train/llama.h) to the training
 * loop (train/trainer.h): its parameter block, a gradient block of the same
 * layout, a tape, and the two loss functions the loop calls.
 *
 *   et_train_llama tl; et_train_model tm;
 *   et_train_llama_init(&tl, &m, 0, &tm, &e);   // m stays owned by the caller
 *   et_train_run(&tm, train, valid, &opts, &res, &e);
 *   et_train_llama_free(&tl);
 */
#ifndef ET_TRAIN_LLAMA_H
#define ET_TRAIN_LLAMA_H

#include "llama.h"
#include "trainer.h"

typedef struct et_train_llama et_train_llama;
struct et_train_llama {
    et_model *m;            /* borrowed */
    et_model g;             /* gradients (et_model_grads_alloc) */
    et_llama L;
    et_tape tape;
    et_named *t;            /* [n_t] table of L's tensors over m->params */
    int n_t;
    int chunk_rows;         /* rows per LM-head chunk (0: the op's default) */
    int recompute;          /* 0 after init; set to 1 for activation recomputation (below) */
    int recompute_layers;   /* with recompute: how many layers, the first ones, are recomputed
                               (0 after init, or >= n_layer: all); the others keep their
                               activations (as et_lora_llama.recompute_layers) */
    et_tape inner;          /* the recomputation's scratch tape */
    int cap;                /* B*T the buffers below hold */
    int32_t *inputs;        /* [B*T] */
    int32_t *targets;       /* [B*T], -1 where the mask is 0 */
    float *row_loss;        /* [B*T] */
    struct et_qat *qat;     /* NULL, or fake quantization attached to L (train/qat.h):
                               synced before every forward */
    /* Optional loss hook (distillation, distill/distill.h): when set, the
     * step's loss is loss_fn(loss_ctx, t, tl, h, B, T, norm) on the final
     * hidden states h [B*T, n_embd] ("result_norm", from the same forward,
     * recomputation and precision as the cross-entropy) instead of
     * et_cross_entropy(h, output, tl->targets).  It returns a [1] loss (sum
     * of row losses / norm, norm 0 = a mean), fills tl->row_loss [B*T] with
     * each row's loss in nats, and reads t->record to know whether a
     * backward follows.  NULL on error (tape status). */
    et_tensor *(*loss_fn)(void *loss_ctx, et_tape *t, struct et_train_llama *tl, et_tensor *h, int B, int T,
                          double norm);
    void *loss_ctx;
    /* Trainable tensors beyond the model's own (et_train_llama_add_params),
     * after them in the same block: in the checkpoint, not in the model. */
    et_tensor *extra;       /* [n_extra] */
    int n_extra;
};

/* Bind m for training (every tensor trainable) and fill *tm.  chunk_rows
 * as et_xent_opts (0 = default).  0 or ET_EINPUT / ET_ERUN.
 * Setting tl->recompute = 1 afterwards turns on activation recomputation
 * per layer (Chen et al. 2016; train/recompute.h): a step keeps one
 * [B*T, n_embd] tensor per layer plus one layer's activations instead of
 * every layer's, for one more forward pass of each layer; the losses and
 * gradients are the same floats (the layer is recomputed by the same code on
 * the same input; tested).
 * Setting tl->tape.gemm_precision = ET_GEMM_BF16 (train/gemm.h) afterwards
 * runs the matmuls and the LM head in bf16 mixed precision (the recomputed
 * layers follow the outer tape's setting). */
int et_train_llama_init(et_train_llama *tl, et_model *m, int chunk_rows, et_train_model *tm, et_err *e);
void et_train_llama_free(et_train_llama *tl);

/* Append n trainable tensors to the block the trainer sees, after the
 * model's own (so the model, its export and its layout are unchanged): e.g.
 * the learned projections of distillation's hidden-state loss.  Tensor i is
 * names[i] (< 64 bytes), [rows[i], cols[i]] (cols 0: a vector [rows]),
 * zeros; tl->extra[i] is it on the tape (data and gradient in the blocks).
 * It is in tm->t, so checkpoints save and resume it, AdamW and clipping
 * see it, and et_adamw's decay policy applies by its shape.
 * The model's block moves (et_model_grow_block) and tl->L is bound again:
 * call it right after et_train_llama_init, before anything hooks tl->L
 * (QAT, LoRA).  Once per tl.  0, ET_EUSAGE (called twice, after a hook, or
 * bad sizes) or ET_ERUN (out of memory; tl is then unusable: free it). */
int et_train_llama_add_params(et_train_llama *tl, et_train_model *tm, int n, const char *const *names,
                              const int64_t *rows, const int64_t *cols, et_err *e);

#endif
