/* engine/repack.h — weights of the 32-element block types repacked at load
 * into 16-row interleaved groups, and the AVX512-VNNI kernels that multiply
 * a group by any number of tokens: out[t][r] for 16 rows r, each output
 * bit-identical to the single dot of engine/kernels.h (one accumulator per
 * (row, token): acc = acc + (float)sumi(b) * d(b) per block, in block order).
 *
 * Why: with a row's 16 outputs in the 16 lanes of a vector, one vpdpbusd
 * (unsigned x signed bytes, 4 products per lane) covers 16 rows x 4
 * elements of one block, eight of them a whole block; the float work is then
 * one conversion, two multiplies and one add per block per 16 rows per token
 * (the rows' d times the token's d, then the product, then the sum) — what
 * ggml's repacked GEMM spends (ggml-cpu repack.cpp, ggml_gemm_q4_0_8x8_q8_0:
 * 8-row interleaved Q4_0, one fused multiply-add per block per (row,
 * token); here 16 rows, the product and the sum rounded separately).
 *
 * Layout of one group (16 consecutive rows r0 .. r0+15 of n_in = 32 nb
 * elements; et_repack_group_bytes = nb * S long): block b's S bytes at b * S,
 * S = the quants' CH bytes + 32 (+ 32) rounded up to 64, so that one stream
 * of the group's memory is everything a block needs (generation streams
 * the weights from DRAM; the quants and the scales in two separate areas
 * streamed at 0.6x the speed, bench_engine tg32 Q8_0 103 vs 174 t/s):
 *   bytes [0, CH): CH/64 chunks of 64 bytes; chunk k holds, at byte 4 r + j,
 *     element j of the 4-element group k of row r (so one 64-byte load is a
 *     vpdpbusd operand):
 *       nibble types (Q4_0, IQ4_NL, Q4_1; CH = 256, 4 chunks): the row's
 *         original qs byte 4k + j: low nibble = element 4k + j (group k),
 *         high nibble = element 16 + 4k + j (group k + 4);
 *       byte types (Q8_0, Q5_0, Q5_1; CH = 512, 8 chunks): the element's
 *         integer value plus an offset c, as an unsigned byte: Q8_0 q + 128
 *         (q XOR 0x80), Q5_0 the 5-bit value (q + 16), Q5_1 the 5-bit value;
 *   bytes [CH, CH + 32): row r's fp16 d at CH + 2 r;
 *   Q4_1, Q5_1: bytes [CH + 32, CH + 64): row r's fp16 m at CH + 32 + 2 r;
 *   the rest (to S) zero.
 * S per row and block (the file's bytes in brackets): Q4_0 and IQ4_NL 20
 * (18), Q4_1 20 (20), Q8_0 36 (34), Q5_0 36 (22), Q5_1 36 (24).
 * The integer sums: vpdpbusd of the unsigned weight bytes u = q + c (Q4_0
 * nibbles c = 8, IQ4_NL kvalues + 128 by vpshufb c = 128, Q8_0 c = 128,
 * Q5_0 c = 16; Q4_1 and Q5_1 have unsigned quants, c = 0) with the token's
 * four activation bytes broadcast, started from -c * bsum (the activation's
 * block sum, kernels.h): exactly sum q x. */
#ifndef ET_ENGINE_REPACK_H
#define ET_ENGINE_REPACK_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#define ET_RP_ROWS 16   /* rows per group */

typedef struct et_repack {
    uint32_t type;   /* the weight type */
    /* out[t * ldo + r] = dot(row r of the group, token t) for r < 16,
     * t < n_tok (any n_tok >= 1): grp a group of rows of n_in elements
     * (64-byte aligned), act token 0's activation (et_act_convert's layout
     * for the weight's vec_dot_type, with its extras), token t's act_stride
     * bytes further. */
    void (*gemm)(int n_in, const void *grp, const void *act, size_t act_stride, int n_tok, float *out, size_t ldo);
} et_repack;

/* Bytes of one group of 16 rows of n_in elements of the weight type, or 0
 * when the type has no repacked layout (not a 32-element block type, or
 * n_in not a multiple of 32). */
size_t et_repack_group_bytes(uint32_t type, int n_in);
/* Repack rows [0, 16) (row r at rows + r * row_bytes, the weight type's
 * blocks) into one group at dst (et_repack_group_bytes long).  Plain C,
 * any target. */
void et_repack_group(uint32_t type, int n_in, const void *rows, size_t row_bytes, void *dst);
/* The inverse of et_repack_group for one row: row r (0..15) of the group
 * grp (n_in elements of `type`) written to row (et_quant_row_bytes(type,
 * n_in) bytes) in the type's own block layout, byte-identical to the row the
 * group was made from (the layout keeps every bit of it: the fp16 d and m,
 * the nibbles as they were, the bytes' values from which Q5's qh is rebuilt).
 * Plain C, any target. */
void et_repack_unpack_row(uint32_t type, int n_in, const void *grp, int r, void *row);
/* 1 when this CPU runs the repacked kernels (x86-64 with AVX512-VNNI or
 * AVX2: the engine repacks at load). */
int et_repack_cpu(void);
/* The repacked kernels for the weight type under the kernel set k, or NULL
 * (et_repack_group_bytes != 0 and: an "avx512..." set on a CPU with
 * AVX512-VNNI: the vpdpbusd kernels, 16 rows per zmm, 1..8 tokens at a
 * time; the "avx2" set, or "avx512" without VNNI: the AVX2 kernels, 8 rows
 * per ymm, 1..4 tokens at a time, vpmaddubsw + vpmaddwd (kernels_x86_repack.c
 * says why no int16 sum overflows); the same bits either way). */
const et_repack *et_repack_get(const et_kernels *k, uint32_t type, int n_in);

#endif
