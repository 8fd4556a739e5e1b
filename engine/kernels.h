/* engine/kernels.h — dot-product kernels: a scalar reference and SIMD paths
 * (AVX2, AVX-512, NEON) chosen at run time.
 *
 * Block layouts are ggml's (ggml-common.h); activations are quantized to
 * the weight's vec_dot_type as ggml-cpu does (ggml-cpu.c type_traits_cpu):
 *
 *   weight   activations   kernel
 *   F32      F32           dot_f32
 *   F16      F16           dot_f16    (products of halves are exact in F32)
 *   BF16     BF16          dot_bf16
 *   Q8_0     Q8_0          dot_q8_0   (ggml_vec_dot_q8_0_q8_0)
 *   Q4_0     Q8_0          dot_q4_0   (ggml_vec_dot_q4_0_q8_0)
 *   Q5_0     Q8_0          dot_q5_0   (ggml_vec_dot_q5_0_q8_0)
 *   IQ4_NL   Q8_0          dot_iq4_nl (ggml_vec_dot_iq4_nl_q8_0)
 *   Q4_1     Q8_1          dot_q4_1   (ggml_vec_dot_q4_1_q8_1)
 *   Q5_1     Q8_1          dot_q5_1   (ggml_vec_dot_q5_1_q8_1)
 *   Q2_K     Q8_K          dot_q2_K   (ggml_vec_dot_q2_K_q8_K)
 *   Q3_K     Q8_K          dot_q3_K   (ggml_vec_dot_q3_K_q8_K)
 *   Q4_K     Q8_K          dot_q4_K   (ggml_vec_dot_q4_K_q8_K)
 *   Q5_K     Q8_K          dot_q5_K   (ggml_vec_dot_q5_K_q8_K)
 *   Q6_K     Q8_K          dot_q6_K   (ggml_vec_dot_q6_K_q8_K)
 *
 * THE ACCUMULATION ORDER IS PART OF THE CONTRACT, so that every path gives
 * bit-identical results (same tokens on x86-64 and aarch64, tests compare
 * with ==).  Products and sums are separate roundings (no FMA contraction):
 *
 *  - F32/F16/BF16: 32 partial sums, element i goes to lane i % 32 over the
 *    whole multiples of 32; lanes are folded pairwise (lane l += lane l+w for
 *    w = 16, 8, 4, 2, 1); the remaining n % 32 products are then added in order.
 *  - Q8_0/Q4_0/Q5_0/IQ4_NL (blocks of 32): one float accumulator acc,
 *    starting at +0; per block b, in block order, the exact integer sum
 *    sumi(b) of the block's 32 products (q the weight's integer value: Q8_0
 *    -128..127, Q4_0 -8..7, Q5_0 -16..15, IQ4_NL kvalues_iq4nl) is
 *    converted to float and multiplied by d(b) = fp16(w.d) * fp16(x.d):
 *    acc = acc + (float)sumi(b) * d(b), the product rounded, then the sum
 *    (no FMA, also not in the scalar code: -ffp-contract=off / the pragma).
 *  - Q4_1/Q5_1 (blocks of 32, w = d_w q + m_w with q unsigned, against Q8_1):
 *    the d_w q part exactly as above (sumi(b) the exact sum of q times the
 *    activation's qs, d(b) = fp16(w.d) * fp16(x.d)), then, still per block,
 *    acc = acc + fp16(w.m) * fp16(x.s) (the product rounded, then the sum).
 *    ggml keeps the min terms in a separate sum; one running sum keeps
 *    every path's arithmetic one chain per (row, token).
 *  So a row's result depends only on that row and that token, never on how
 *  many rows or tokens a kernel does at once: the multi-row x multi-token
 *  kernels (engine/repack.h: rows repacked at load, 16 rows in the 16 lanes
 *  of a vector, one VNNI vpdpbusd for 16 rows x 4 elements) give the bits of
 *  this single dot.  The integer part may be regrouped at will (it is
 *  exact: |sumi| <= 32 * 128 * 127 < 2^24, so (float)sumi is exact too).
 *  - Q2_K/Q3_K/Q4_K/Q5_K/Q6_K (super-blocks of 256): per super-block the
 *    exact integer sums sumi = sum_j scale_j * dot_j over the sub-blocks j
 *    (dot_j = sum of q * y, q the weight's integer value: Q2_K 0..3, Q3_K
 *    -4..3, Q4_K 0..15, Q5_K 0..31, Q6_K -32..31; scale_j: Q3_K the stored
 *    6-bit value - 32, Q6_K the int8, the others unsigned) and, for the
 *    types with mins (Q2_K, Q4_K, Q5_K), summ = sum_j min_j * bsum_j
 *    (bsum over the sub-block's elements) are scaled:
 *    acc += d * (float)sumi; acc -= dmin * (float)summ, with
 *    d = fp16(x.d) * y.d and dmin = fp16(x.dmin) * y.d, in super-block
 *    order.  A path may regroup the integer work at will (it is exact:
 *    |sumi| < 2^23 for every type), e.g. Q3_K as sum_j sc_j * (dot'_j -
 *    4 bsum_j) with unsigned q' = q + 4.
 *
 * Activation quantization (same in every path, done by the scalar code):
 *  - Q8_0: ggml-cpu's x86 quantize_row_q8_0: d = amax/127, id = 127/amax,
 *    q = round-half-even(x * id).
 *  - Q8_1: ggml-cpu's x86 quantize_row_q8_1 (what llama.cpp's CPU backend
 *    runs on x86-64; its reference and NEON versions use id = 1/d and
 *    round half away / half even): qs and d as Q8_0 above, and
 *    s = fp16(d * (float)sum(qs)) with the fp32 d (before its fp16 rounding).
 *  - Q8_K: ggml quantize_row_q8_K_ref: iscale = -127/max (max = the value of
 *    largest magnitude, first on ties), q = min(127, nearest_int(iscale*x)),
 *    d = 1/iscale, bsums over groups of 16.
 *  Non-finite activations (only from hostile weights) quantize to a defined
 *  value: NaN -> 0, +-inf -> +-127, where ggml's result is platform-specific.
 */
#ifndef ET_ENGINE_KERNELS_H
#define ET_ENGINE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/quant.h"

/* Weight blocks: quant/quant.h (et_block_q8_0 ... et_block_q2_K, ggml's layouts). */
#define ET_QK 32      /* elements per Q8_0/Q4_0/Q5_0/Q4_1/Q5_1/IQ4_NL/Q8_1 block */

/* Q8_1, used only for activations (ggml block_q8_1): 36 bytes / 32. */
typedef struct et_block_q8_1 {
    uint16_t d;            /* fp16 scale */
    uint16_t s;            /* fp16 of d * sum(qs) (the fp32 d) */
    int8_t qs[ET_QK];      /* quants, -127..127 */
} et_block_q8_1;
_Static_assert(sizeof(et_block_q8_1) == 36, "Q8_1 block is 36 bytes");

/* Q8_K, used only for activations (ggml block_q8_K): 292 bytes / 256. */
typedef struct et_block_q8_K {
    float d;               /* scale (fp32) */
    int8_t qs[ET_QK_K];    /* quants, -127..127 */
    int16_t bsums[16];     /* sums of qs over groups of 16 */
} et_block_q8_K;
_Static_assert(sizeof(et_block_q8_K) == 292, "Q8_K block is 292 bytes");

/* A dot product of n elements: w is a weight row, x an activation row
 * already converted to the weight's vec_dot_type.  n is a multiple of the
 * block size for block types. */
typedef float (*et_dot_fn)(int n, const void *w, const void *x);
/* Four dot products of one weight row with four activation rows
 * (x + k * x_stride bytes, k < 4): out[k], each bit-identical to the
 * single dot.  Lets a batch reuse the unpacked weights (prompt processing). */
typedef void (*et_dot4_fn)(int n, const void *w, const void *x, size_t x_stride, float *out);
typedef struct et_kernels {
    const char *name;          /* "scalar", "avx2", "avx512", "avx512vnni", "neon" */
    et_dot_fn dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, dot_q5_0, dot_q4_1, dot_q5_1, dot_q4_K, dot_q6_K;
    et_dot_fn dot_q2_K, dot_q3_K, dot_q5_K, dot_iq4_nl;
    et_dot4_fn dot4_q8_0, dot4_q4_0, dot4_q4_1, dot4_q5_1;   /* NULL: four single dots */
    et_dot4_fn dot4_q4_K, dot4_q5_K, dot4_q6_K;
} et_kernels;

/* Q8_0 activations (the vec_dot_type of Q8_0, Q4_0, Q5_0 and IQ4_NL weights) of n =
 * 32 nb elements, as et_act_convert writes them (et_act_bytes long):
 *   bytes [0, 34 nb): nb et_block_q8_0 (ggml's block_q8_0) — every dot_*
 *                     and dot4_* kernel reads only these, so a bare
 *                     et_quantize_q8_0 output is still a valid dot operand;
 *   from E = 34 nb rounded up to 64 (et_act_q8_0_bsum):
 *     int32 bsum[nb]: sum of the 32 qs of block b, the integer correction
 *                     of the unsigned-times-signed (vpdpbusd) trick:
 *                     sum (w+c) x = sum w x + c bsum;
 *   from E + 4 nb (et_act_q8_0_d):
 *     float d[nb]:    fp32 of each block's fp16 d (exact, et_fp16_to_fp32).
 * The extras serve the repacked multi-row kernels (engine/repack.h). */
static inline size_t et_act_q8_0_extra_offset(int n) { return ((size_t)(n / 32) * 34 + 63) & ~(size_t)63; }
static inline const int32_t *et_act_q8_0_bsum(const void *x, int n) {
    return (const int32_t *)((const uint8_t *)x + et_act_q8_0_extra_offset(n));
}
static inline const float *et_act_q8_0_d(const void *x, int n) {
    return (const float *)((const uint8_t *)x + et_act_q8_0_extra_offset(n) + (size_t)(n / 32) * 4);
}

/* Q8_1 activations (the vec_dot_type of Q4_1 and Q5_1) of n = 32 nb
 * elements, as et_act_convert writes them (et_act_bytes long):
 *   bytes [0, 36 nb): nb et_block_q8_1 — what every dot_* kernel reads;
 *   from E = 36 nb rounded up to 64 (et_act_q8_1_d):
 *     float d[nb]:  fp32 of each block's fp16 d;
 *     float s[nb]:  fp32 of each block's fp16 s (et_act_q8_1_s), for the
 *                   repacked kernels (engine/repack.h). */
static inline size_t et_act_q8_1_extra_offset(int n) { return ((size_t)(n / 32) * 36 + 63) & ~(size_t)63; }
static inline const float *et_act_q8_1_d(const void *x, int n) {
    return (const float *)((const uint8_t *)x + et_act_q8_1_extra_offset(n));
}
static inline const float *et_act_q8_1_s(const void *x, int n) {
    return (const float *)((const uint8_t *)x + et_act_q8_1_extra_offset(n) + (size_t)(n / 32) * 4);
}

/* The kernel set by name, or NULL when this build or this CPU lacks it. */
const et_kernels *et_kernels_get(const char *name);
/* The fastest set this CPU supports; $ET_ISA (a name above) overrides. */
const et_kernels *et_kernels_best(void);

/* The dot kernel for a weight type, or NULL for an unsupported type. */
et_dot_fn et_kernels_dot(const et_kernels *k, uint32_t weight_type);
/* The four-row kernel for a weight type, or NULL when the path has none. */
et_dot4_fn et_kernels_dot4(const et_kernels *k, uint32_t weight_type);
/* The activation type a weight type is multiplied with (F32, F16, BF16,
 * Q8_0, Q8_1 or Q8_K), or (uint32_t)-1 for an unsupported weight type. */
uint32_t et_vec_dot_type(uint32_t weight_type);
/* Bytes of n activations converted to vec_dot_type (n a multiple of its block). */
size_t et_act_bytes(uint32_t weight_type, int n);
/* Convert n floats to the weight's vec_dot_type (dst et_act_bytes long;
 * for Q8_0 and Q8_1 the layouts above, blocks plus extras). */
void et_act_convert(uint32_t weight_type, const float *x, void *dst, int n);

/* Activation quantizers (see the header comment); n a multiple of 32 / 256. */
void et_quantize_q8_0(const float *x, et_block_q8_0 *y, int n);
void et_quantize_q8_1(const float *x, et_block_q8_1 *y, int n);
void et_quantize_q8_K(const float *x, et_block_q8_K *y, int n);

/* fp16 -> fp32 by table (exact; et_fp16_to_fp32 builds it once). */
extern float et_f16_table[65536];
/* Fill et_f16_table once (pthread_once: any thread, any number of calls). */
void et_kernels_init(void);

/* The scalar reference kernels (a SIMD table may use one it does not
 * vectorize): the dot product of one row of n weights w (the weight type's
 * blocks) with n activations x (its vec_dot_type, table above), as the
 * ggml_vec_dot_* named there; n a multiple of the block size. */
float et_dot_f32_scalar(int n, const void *w, const void *x);
float et_dot_f16_scalar(int n, const void *w, const void *x);
float et_dot_bf16_scalar(int n, const void *w, const void *x);
float et_dot_q8_0_scalar(int n, const void *w, const void *x);
float et_dot_q4_0_scalar(int n, const void *w, const void *x);
float et_dot_q5_0_scalar(int n, const void *w, const void *x);
float et_dot_q4_1_scalar(int n, const void *w, const void *x);
float et_dot_q5_1_scalar(int n, const void *w, const void *x);
float et_dot_q4_K_scalar(int n, const void *w, const void *x);
float et_dot_q6_K_scalar(int n, const void *w, const void *x);
float et_dot_q2_K_scalar(int n, const void *w, const void *x);
float et_dot_q3_K_scalar(int n, const void *w, const void *x);
float et_dot_q5_K_scalar(int n, const void *w, const void *x);
float et_dot_iq4_nl_scalar(int n, const void *w, const void *x);

/* The per-path tables (NULL-free; a path not compiled for this target is absent). */
extern const et_kernels et_kernels_scalar;
#if defined(__x86_64__) || defined(__i386__)
extern const et_kernels et_kernels_avx2;
extern const et_kernels et_kernels_avx512;
extern const et_kernels et_kernels_avx512vnni;   /* avx512 + the repacked VNNI kernels (repack.h) */
#endif
#if defined(__aarch64__)
extern const et_kernels et_kernels_neon;
#endif

#endif
