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

#endif
