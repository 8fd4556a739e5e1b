/* engine/tile.h — multi-token matmul tiles for prompt processing: a tile of
 * rows x tokens of W x computed in registers, each output bit-identical to
 * the single dot product of engine/kernels.h (the same 16 lanes, products
 * and sums, the same pairwise fold).
 *
 * The activations are first packed (et_tile.pack), from the Q8_0
 * activations et_act_convert makes (blocks, group sums, fp32 scales:
 * kernels.h), in groups of tile_tok tokens, into one
 * stream the tile reads in order with aligned 64-byte loads: for block
 * pair p (blocks 2p, 2p+1, one 512-bit register) and token k of the group,
 * 192 bytes at offset (p * tile_tok + k) * 192:
 *   int8  qs[64]     the Q8_0 quants of the two blocks, in order
 *   int32 corr[16]   per group of 4 quants: -c * (sum of the 4 quants),
 *                    c = 8 for Q4_0 weights, 128 for Q8_0 weights;
 *                    for Q4_1 weights (Q8_1 activations, unsigned quants,
 *                    no correction) instead float s[16]: fp32(x.s) of
 *                    block 2p in lane 0, of 2p+1 in lane 8, 0 elsewhere
 *   float d[16]      fp32(x.d) of block 2p (lanes 0..7), 2p+1 (8..15)
 * The integer group sums are exact with AVX512-VNNI's
 * vpdpbusd (unsigned x signed bytes): Q4_0 nibbles q (0..15) against x give
 * sum q*x, and sum (q - 8)*x = sum q*x - 8 sum x; Q8_0 weights w + 128
 * (w XOR 0x80, unsigned) give sum w*x + 128 sum x.  The correction is the
 * accumulator's start value.  (The idea of a precomputed activation sum is
 * ggml's Q8_1 s field; the tile is the register blocking of ggml's
 * ggml_tile_set_q4_0_8x8_q8_0, on rows left in place.)
 */
#ifndef ET_ENGINE_TILE_H
#define ET_ENGINE_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

typedef struct et_tile {
    const char *name;
    int tile_rows, tile_tok;   /* outputs per call: tile_rows x tile_tok */
    /* Pack one token's n activations (x as et_act_convert writes them for
     * the weight's vec_dot_type — Q8_0 with the group sums and scales, or
     * for Q4_1 Q8_1 with d and s, passed through this pointer type; n a
     * multiple of 64)
     * as token k < tile_tok of the group at dst (tile_tok *
     * et_tile_act_bytes(n) bytes, 64-byte aligned). */
    void (*pack)(const et_block_q8_0 *x, int n, void *dst, int k);
    /* out[t * ldo + r] = dot(row r of w, token t) for r < tile_rows,
     * t < tile_tok: w points at the first row (rows row_bytes apart, the
     * weight type's blocks), act at a packed group. */
    void (*tile)(int n, const void *w, size_t row_bytes, const void *act, float *out, size_t ldo);
} et_tile;

/* Bytes per token of packed activations for n inputs (3 n). */
size_t et_tile_act_bytes(int n);

/* The tile for a weight type (Q8_0, Q4_0 or Q4_1) with the kernel set k, or NULL
 * when none applies: not an x86 build, the CPU lacks AVX512-VNNI, k is not
 * an "avx512..." set (ET_ISA picks the path), or n is not a multiple of 64. */
const et_tile *et_tile_get(const et_kernels *k, uint32_t weight_type, int n);

#endif
