/* train/op_lmhead.h — LM head + softmax cross-entropy over a FROZEN output
 * weight, in the tape's GEMM precision, with the gradient computed during
 * the forward pass (for LoRA / frozen-base fine-tuning).
 *
 *   et_tensor *h = et_llama_hidden(t, &L, tokens, B, T, NULL);   // [N, n_embd]
 *   et_tensor *loss = et_lm_head_xent(t, "loss", h, L.output, targets, &xo);
 *
 * Same loss as et_cross_entropy (train/ops.h, same options):
 *   logits[N, V] = x[N, C] @ w[V, C]^T
 *   loss = (1/norm) sum_{rows in the loss} (logsumexp(logits_i) - logits_i[target_i])
 * but w is never trained (no dw, whatever w->grad says), and because the
 * loss is linear in its upstream gradient g, the forward already computes
 *   dx1 = dloss/dx for g = 1:  per chunk, dz = (softmax(z) - onehot(target)) / norm,
 *                              dx1[chunk] = dz @ w
 * and backward only adds g * dx1 into x's gradient.  So each chunk of logits
 * is computed once (et_cross_entropy recomputes it in backward): two GEMMs of
 * N x V x C instead of three, at the cost of holding dx1 [N, C] (as big as x).
 * This is the "fused linear cross-entropy" of Liger-Kernel (Hsu et al. 2024,
 * arXiv:2410.10989), which also computes the gradient in the forward.
 * At most chunk_rows x V logits exist at a time (in the tape's scratch).
 * Products: et_gemm (train/gemm.h) in t->gemm_precision (bf16: x, w and dz rounded
 * to bf16, f32 accumulation); logsumexp summed in double, as et_cross_entropy.
 * Without recording (t->record 0) or when x needs no gradient, nothing is
 * computed for backward.
 * NULL (tape error ET_EINPUT) when w is not [V, C] with C = x's columns, a
 * target is >= V, norm or chunk_rows is negative; ET_ERUN when out of memory. */
#ifndef ET_OP_LMHEAD_H
#define ET_OP_LMHEAD_H

#include "ops.h"

et_tensor *et_lm_head_xent(et_tape *t, const char *name, et_tensor *x, const et_tensor *w, const int32_t *targets,
                           const et_xent_opts *opts);

#endif
