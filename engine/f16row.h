/* engine/f16row.h — row conversions the forward pass does per token, with
 * an AVX-512 path chosen at run time, bit-identical to the scalar
 * functions they replace (tests/test_tile.c checks every case). */
#ifndef ET_ENGINE_F16ROW_H
#define ET_ENGINE_F16ROW_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/* y[i] = et_fp32_to_fp16(x[i]) for i < n (round to nearest even, NaN ->
 * sign | 0x7e00, as common/et.c). */
void et_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n);

/* et_quantize_q8_0(x, y, n) (kernels.h), vectorized when the CPU has
 * AVX-512; n a multiple of 32. */
void et_quantize_q8_0_row(const float *x, et_block_q8_0 *y, int n);

/* Attention with an F16 KV cache, each result bit-identical to the F16 dot
 * of kernels.h (32 lanes over the whole multiples of 32, pairwise fold,
 * then the remaining products in order).  Only when et_att_f16_fast()
 * (AVX-512): otherwise the caller uses the kernel set's dot_f16.
 *  scores: sc[p] = dot(hd, k + p * ld, q) for p < n_kv; qf[i] is fp32 of
 *          the fp16 q (the products are the same floats);
 *  values: o[d] = dot(n_kv, v + d * ld, p) for d < hd; pf[i] is fp32 of
 *          the fp16 probabilities. */
int et_att_f16_fast(void);
void et_att_scores_f16(int hd, int n_kv, const uint16_t *k, size_t ld, const float *qf, float *sc);
void et_att_values_f16(int hd, int n_kv, const uint16_t *v, size_t ld, const float *pf, float *o);

#endif
