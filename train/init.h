/* train/init.h — random initialization of a parameter block for training
 * from scratch.
 *
 *   et_xoshiro r; et_xoshiro_seed(&r, seed);
 *   et_init_normal(tm.t, tm.n_t, m.hp.n_layer, 0.02f, &r);
 *
 * Scheme (GPT-2, Radford et al. 2019 §2.3; karpathy/llm.c and llama2.c
 * model.py do the same): every 2-D weight ~ N(0, std^2), except the
 * projections that write into the residual stream (attn_output, ffn_down),
 * ~ N(0, (std / sqrt(2 * n_layer))^2); RMSNorm weights 1 (names containing
 * "_norm"); 1-D biases 0.  Tensors are filled in table order from one RNG
 * stream, so a seed gives the same model whatever the thread count.
 */
#ifndef ET_INIT_H
#define ET_INIT_H

#include "../export/model.h"
#include "rng.h"

/* Fill the n_t tensors of t (each t[i].data, t[i].n floats, any shape) by
 * the scheme above; std is the weights' standard deviation (e.g. 0.02),
 * n_layer scales the residual projections (values < 1 count as 1).
 * Draws from r in table order; cannot fail. */
void et_init_normal(const et_named *t, int n_t, int n_layer, float std, et_xoshiro *r);

#endif
