/* train/ffn_frozen.h — the feed-forward half of a llama layer over FROZEN
 * weights as one op, keeping only what its backward needs.
 *
 *   y[M, C] = x + swiglu(h Wg^T, h Wu^T) Wd^T,   h = rmsnorm(x) * norm_w
 *   rmsnorm(x)_j = x_j / sqrt(mean_k x_k^2 + eps)            (llama.cpp llm_build_norm)
 *   swiglu(g, u) = silu(g) * u, silu(g) = g * sigmoid(g)      (Shazeer 2020)
 * x [M, C] (C = n_embd), norm_w [C] (ffn_norm), Wg = ffn_gate, Wu = ffn_up
 * [F, C], Wd = ffn_down [C, F] (F = n_ff), each an et_frozen_w
 * (train/op_lora.h: F32 used in place, other types a tile at a time).
 *
 * The same numbers as et_rmsnorm -> et_matmul (gate, up) -> et_swiglu ->
 * et_matmul_add (down) of train/llama.h, up to float rounding, but with every
 * weight frozen the unfused ops keep tensors no backward reads: the normed
 * h [M, C] (read only by dWg, dWu) and swiglu's output [M, F] (read only by
 * dWd).  Here h and that output live in the tape's scratch, and only
 * g, u [M, F] and the per-row 1/rms [M] are kept: (2 F + 1) floats per row
 * instead of (C + 3 F) plus the output (for SmolLM2-135M: 8.6 MB less per
 * layer at 1024 rows).
 * Backward (dy = dL/dy):
 *   ds = dy Wd;  du = ds * silu(g);  dg = ds * u * s (1 + g (1 - s)), s = sigmoid(g)
 *   dh = dg Wg + du Wu
 *   dx += dy + r (dh * norm_w) - x r^3 / C * sum_k (dh * norm_w)_k x_k,   r = 1/rms
 * The GEMMs run in t->gemm_precision (train/gemm.h).  Only x gets a gradient
 * (norm_w and the W are frozen).
 * tile: tile_floats floats of scratch for the non-F32 weights' tiles (shared
 * by every call, valid until the tape is reset; et_lora_scratch_floats(F)),
 * or NULL to take one from the arena.
 * NULL (tape error ET_EINPUT) on a shape mismatch or unusable weight, ET_ERUN
 * when out of memory. */
#ifndef ET_FFN_FROZEN_H
#define ET_FFN_FROZEN_H

#include "op_lora.h"

et_tensor *et_ffn_frozen(et_tape *t, const char *name, et_tensor *x, const et_tensor *norm_w, float eps,
                         const et_frozen_w *gate, const et_frozen_w *up, const et_frozen_w *down, float *tile,
                         size_t tile_floats);

#endif
