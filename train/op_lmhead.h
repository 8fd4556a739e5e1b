/* train/op_lmhead.h — LM head + softmax cross-entropy over a FROZEN output
 * weight, in the tape's GEMM precision, with the gradient computed during
 * the forward pass (for LoRA / frozen-base fine-tuning).
 *
 *   et_tensor *h = et_llama_hidden(t, &L, tokens, B, T, NULL);   // [N, n_embd]
 *   et_tensor *loss = et_lm_head_xent(t, "loss", h, L.output, targets, &xo);
 *
 * The same op as et_cross_entropy (train/ops.h, same options) with
 * grad_in_forward forced on, and w never trained (no dw, whatever
 * w->requires_grad says: the op works on a header of w that takes no gradient):
 *   logits[N, V] = x[N, C] @ w[V, C]^T
 *   loss = (1/norm) sum_{rows in the loss} (logsumexp(logits_i) - logits_i[target_i])
 * Because the loss is linear in its upstream gradient g, the forward already
 * computes dx1 = dloss/dx for g = 1 chunk by chunk (dz = (softmax(z) -
 * onehot(target)) / norm, dx1[chunk] = dz @ w) and backward only adds
 * g * dx1: two GEMMs of N x V x C instead of three, at the cost of holding
 * dx1 [N, C].  This is the "fused linear cross-entropy" of Liger-Kernel
 * (Hsu et al. 2024, arXiv:2410.10989).  With opts->logits_out set,
 * et_cross_entropy keeps the logits instead and backward recomputes dz.
 * At most chunk_rows x V logits exist at a time (in the tape's scratch).
 * Products: et_gemm (train/gemm.h) in t->gemm_precision (bf16: x, w and dz
 * rounded to bf16, f32 accumulation); logsumexp summed in double.
 * NULL (tape error ET_EINPUT) when w is NULL or not [V, C] with C = x's
 * columns, a target is >= V, norm or chunk_rows is negative; ET_ERUN when
 * out of memory. */
#ifndef ET_OP_LMHEAD_H
#define ET_OP_LMHEAD_H

#include "ops.h"

et_tensor *et_lm_head_xent(et_tape *t, const char *name, et_tensor *x, const et_tensor *w, const int32_t *targets,
                           const et_xent_opts *opts);

#endif
