/* train/recompute.h — activation recomputation ("gradient checkpointing",
 * Chen et al. 2016, arXiv:1604.06174) one transformer layer at a time.
 *
 *   et_tape inner; et_tape_init(&inner, 0, &e);      // scratch tape, reused by every layer
 *   x = et_embedding(t, ...);
 *   for (l...) x = et_llama_layer_recompute(t, &inner, L, l, x, T, NULL);
 *   ... loss ...; et_tape_backward(t, loss);
 *
 * Forward: the layer (train/llama.h et_llama_layer) runs on `inner`
 * without recording; only its output is copied into t's arena, so t keeps
 * one [B*T, n_embd] tensor per layer instead of every activation.
 * Backward: the layer runs again on `inner`, recording, from the same input
 * (the same dropout seeds give the same masks: et_lora_llama), is
 * back-propagated from the output's gradient, and the input's gradient is
 * added into t's; parameter gradients inside the layer accumulate as usual.
 * `inner` is reset before and after each use, so its arena holds one
 * layer's forward and backward at a time.  Costs one more forward of each
 * layer per step.
 *
 * The hook functions of the layer's linears and pos (copied) must stay
 * valid until t's backward.  NULL on error (t's status; an error inside a
 * recomputation is copied into t). */
#ifndef ET_RECOMPUTE_H
#define ET_RECOMPUTE_H

#include "llama.h"

/* Layer l of L on x [B*T, n_embd] (B rows of T tokens, row-major) with
 * positions pos [B*T] or NULL (0..T-1 in each row), as et_llama_layer;
 * returns the layer's output [B*T, n_embd] in t, or NULL (see above). */
et_tensor *et_llama_layer_recompute(et_tape *t, et_tape *inner, et_llama *L, int l, et_tensor *x, int T,
                                    const int32_t *pos);

/* A layer computed by a function of the caller's: layer l of the model
 * behind ctx on x, as et_llama_layer does it (e.g. train/lora_llama.c's
 * layer with the fused frozen FFN).  Returns the output or NULL (t's status). */
typedef et_tensor *(*et_layer_fn)(et_tape *t, void *ctx, int l, et_tensor *x, int T, const int32_t *pos);

/* et_llama_layer_recompute with the layer computed by fn(.., ctx, ..) both
 * in the forward and in the recomputation; fn and ctx must stay valid
 * until t's backward. */
et_tensor *et_layer_recompute(et_tape *t, et_tape *inner, et_layer_fn fn, void *ctx, int l, et_tensor *x, int T,
                              const int32_t *pos);

#endif
