/* quant/quant.h — ggml tensor formats: quantize and dequantize rows,
 * bit-exact with ggml's reference functions.
 *
 *   float x[256];                    // one row of k = 256 weights
 *   et_block_q8_0 q[256 / ET_QK8_0]; // 8 blocks of 34 bytes
 *   et_quantize_row_q8_0(x, q, 256);
 *   float back[256];
 *   et_dequantize_row_q8_0(q, back, 256);
 *   // or, by type number: et_quantize_row(GGML_TYPE_Q8_0, x, q, 256) ...
 *
 * Source of every format and rounding rule: ggml/src/ggml-quants.c
 * (quantize_row_*_ref, dequantize_row_*) and ggml-common.h (block layouts),
 * ggml-org/ggml as of early 2025.  "Reference" means what llama-quantize
 * writes when no importance matrix is given: llama_model_quantize_impl ->
 * ggml_quantize_chunk -> quantize_q4_K(..., quant_weights = NULL) ->
 * quantize_row_q4_K_ref, and the same for Q4_0, Q5_0, Q4_1, Q5_1, Q2_K,
 * Q3_K, Q5_K, Q6_K, Q8_0; for IQ4_NL it is quantize_iq4_nl itself (the
 * _ref version differs: it skips the scale search).
 *
 * Conventions: k is the number of float elements (a row, or several rows
 * back to back); it must be a multiple of the type's block size (32 for
 * Q8_0/Q4_0/Q5_0/Q4_1/Q5_1/IQ4_NL, 256 = ET_QK_K for Q2_K/Q3_K/Q4_K/Q5_K/Q6_K, 1 for
 * F16/BF16/F32).  The typed row functions do not check k (callers check
 * it once, e.g. with et_quant_row_bytes); the dispatchers et_quantize_row /
 * et_dequantize_row do, and return ET_EINPUT.  Quantized data is little-endian, packed, with
 * no alignment requirement beyond 2 bytes for the fp16 scales (byte
 * arrays from an mmap are fine: the block structs contain only uint8_t,
 * int8_t and uint16_t).
 *
 * Non-finite inputs (NaN, inf) never cause undefined behaviour, but the
 * result for them is unspecified (ggml's is platform-dependent);
 * et_quantize_model rejects such tensors first, as llama-quantize does.
 *
 * Dependency rule: C11 + libm only (the runtime links it).
 */
#ifndef ET_QUANT_H
#define ET_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../export/gguf.h" /* enum ggml_type (type numbers only) */

#define ET_QK8_0 32  /* elements per Q8_0 block */
#define ET_QK4_0 32  /* elements per Q4_0 block */
#define ET_QK5_0 32  /* elements per Q5_0 block */
#define ET_QK4_1 32  /* elements per Q4_1 block */
#define ET_QK5_1 32  /* elements per Q5_1 block */
#define ET_QK4_NL 32 /* elements per IQ4_NL block */
#define ET_QK_K 256  /* elements per K-quant super-block (Q2_K .. Q6_K) */

/* Q8_0 (34 bytes / 32 weights): w[j] = d * qs[j]. d = max|x| / 127. */
typedef struct et_block_q8_0 {
    uint16_t d;            /* fp16 scale */
    int8_t qs[ET_QK8_0];   /* quants, -127..127 */
} et_block_q8_0;

/* Q4_0 (18 bytes / 32 weights): w[j] = d * (q[j] - 8), where q[j] is the
 * low nibble of qs[j] for j < 16 and the high nibble of qs[j-16] after.
 * d = (the signed value of largest magnitude) / -8. */
typedef struct et_block_q4_0 {
    uint16_t d;                /* fp16 scale */
    uint8_t qs[ET_QK4_0 / 2];  /* nibbles */
} et_block_q4_0;

/* Q5_0 (22 bytes / 32 weights): as Q4_0 with a fifth bit per weight in qh
 * (bit j of the little-endian u32 qh is bit 4 of q[j]); w = d * (q - 16),
 * d = (signed value of largest magnitude) / -16. */
typedef struct et_block_q5_0 {
    uint16_t d;                /* fp16 scale */
    uint8_t qh[4];             /* fifth bits, u32 little-endian */
    uint8_t qs[ET_QK5_0 / 2];  /* low nibbles as Q4_0 */
} et_block_q5_0;

/* Q4_1 (20 bytes / 32 weights): w[j] = d * q[j] + m, q[j] the nibbles in
 * Q4_0's order (low nibbles = weights 0..15, high = 16..31), unsigned.
 * m = the block's min, d = (max - min) / 15. */
typedef struct et_block_q4_1 {
    uint16_t d;                /* fp16 scale */
    uint16_t m;                /* fp16 min */
    uint8_t qs[ET_QK4_1 / 2];  /* nibbles */
} et_block_q4_1;

/* Q5_1 (24 bytes / 32 weights): as Q4_1 with a fifth bit per weight in qh
 * (as Q5_0); w = d * q + m, q unsigned 0..31, d = (max - min) / 31. */
typedef struct et_block_q5_1 {
    uint16_t d;                /* fp16 scale */
    uint16_t m;                /* fp16 min */
    uint8_t qh[4];             /* fifth bits, u32 little-endian */
    uint8_t qs[ET_QK5_1 / 2];  /* low nibbles as Q4_1 */
} et_block_q5_1;

/* Q4_K (144 bytes / 256 weights): 8 sub-blocks of 32, each with a 6-bit
 * scale sc and 6-bit min m packed in `scales` (ggml get_scale_min_k4);
 * w = d*sc * q - dmin*m, q 4-bit; qs holds 4 groups of 64 weights, each
 * 32 bytes: low nibbles = first 32 weights, high nibbles = next 32. */
typedef struct et_block_q4_K {
    uint16_t d;              /* fp16 super-block scale for the scales */
    uint16_t dmin;           /* fp16 super-block scale for the mins */
    uint8_t scales[12];      /* 8 scales + 8 mins, 6 bits each */
    uint8_t qs[ET_QK_K / 2]; /* 4-bit quants */
} et_block_q4_K;

/* Q6_K (210 bytes / 256 weights): 16 sub-blocks of 16 with int8 scales;
 * w = d * scales[s] * (q - 32), q 6-bit: low 4 bits in ql, high 2 in qh
 * (layout: ggml dequantize_row_q6_K). */
typedef struct et_block_q6_K {
    uint8_t ql[ET_QK_K / 2];      /* low 4 bits */
    uint8_t qh[ET_QK_K / 4];      /* high 2 bits */
    int8_t scales[ET_QK_K / 16];  /* 8-bit sub-block scales */
    uint16_t d;                   /* fp16 super-block scale */
} et_block_q6_K;

/* Q5_K (176 bytes / 256 weights): 8 sub-blocks of 32 with 6-bit scales and
 * mins packed as Q4_K's; w = d*sc * q - dmin*m, q 5-bit unsigned: the low
 * 4 bits in qs as Q4_K (4 groups of 64: low nibbles = the first 32, high =
 * the next 32), bit 4 of weight 64g + l (l < 32) in qh[l] bit 2g and of
 * weight 64g + 32 + l in qh[l] bit 2g+1 (ggml dequantize_row_q5_K). */
typedef struct et_block_q5_K {
    uint16_t d;              /* fp16 super-block scale for the scales */
    uint16_t dmin;           /* fp16 super-block scale for the mins */
    uint8_t scales[12];      /* 8 scales + 8 mins, 6 bits each */
    uint8_t qh[ET_QK_K / 8]; /* fifth bits */
    uint8_t qs[ET_QK_K / 2]; /* low 4 bits */
} et_block_q5_K;

/* Q3_K (110 bytes / 256 weights): 16 sub-blocks of 16 with 6-bit scales
 * stored +32 (low 4 bits: scales[j] for j < 8, the high nibble of
 * scales[j-8] after; bits 4-5: scales[8 + j%4] at bit 2*(j/4));
 * w = d * (sc - 32) * (q - 4), q 3-bit: 2 low bits in qs (weight
 * 128h + 32s + l at qs[32h + l] bits 2s), the high bit of weight j in
 * hmask[j % 32] bit j / 32 (ggml dequantize_row_q3_K). */
typedef struct et_block_q3_K {
    uint8_t hmask[ET_QK_K / 8]; /* high bits */
    uint8_t qs[ET_QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];         /* 16 scales, 6 bits each */
    uint16_t d;                 /* fp16 super-block scale */
} et_block_q3_K;

/* Q2_K (84 bytes / 256 weights): 16 sub-blocks of 16, scales[j] = 4-bit
 * scale (low nibble) | 4-bit min (high nibble); w = d*sc * q - dmin*m,
 * q 2-bit unsigned in qs as Q3_K's low bits (ggml dequantize_row_q2_K). */
typedef struct et_block_q2_K {
    uint8_t scales[ET_QK_K / 16]; /* scale | min << 4 */
    uint8_t qs[ET_QK_K / 4];      /* 2-bit quants */
    uint16_t d;                   /* fp16 super-block scale for the scales */
    uint16_t dmin;                /* fp16 super-block scale for the mins */
} et_block_q2_K;

/* IQ4_NL (18 bytes / 32 weights): w[j] = d * et_kvalues_iq4nl[q[j]], q[j]
 * the 4-bit index in Q4_0's nibble order (low nibbles = weights 0..15). */
typedef struct et_block_iq4_nl {
    uint16_t d;                 /* fp16 scale */
    uint8_t qs[ET_QK4_NL / 2];  /* 4-bit indices */
} et_block_iq4_nl;
/* ggml-common.h kvalues_iq4nl: the 16 values an IQ4_NL index selects. */
extern const int8_t et_kvalues_iq4nl[16];

_Static_assert(sizeof(et_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(et_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(et_block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(et_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(et_block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(et_block_q4_K) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(et_block_q6_K) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(et_block_q5_K) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(et_block_q3_K) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(et_block_q2_K) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(et_block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");

/* ---- typed row functions: x [k] floats <-> y [k / block] blocks ----
 * quantize: ggml-quants.c quantize_row_*_ref (no importance matrix); they
 * cannot fail (k is not checked: see above). */
void et_quantize_row_q8_0(const float *x, void *y, int64_t k);
void et_quantize_row_q4_0(const float *x, void *y, int64_t k);
void et_quantize_row_q5_0(const float *x, void *y, int64_t k);
void et_quantize_row_q4_1(const float *x, void *y, int64_t k);
void et_quantize_row_q5_1(const float *x, void *y, int64_t k);
void et_quantize_row_q4_K(const float *x, void *y, int64_t k);
void et_quantize_row_q6_K(const float *x, void *y, int64_t k);
void et_quantize_row_q5_K(const float *x, void *y, int64_t k);
void et_quantize_row_q3_K(const float *x, void *y, int64_t k);
void et_quantize_row_q2_K(const float *x, void *y, int64_t k);
void et_quantize_row_iq4_nl(const float *x, void *y, int64_t k);  /* quantize_iq4_nl, no imatrix */
void et_quantize_row_f16(const float *x, void *y, int64_t k);  /* round to nearest even */
void et_quantize_row_bf16(const float *x, void *y, int64_t k); /* round to nearest even */

/* x [k / block] blocks -> y [k] floats (ggml-quants.c dequantize_row_*;
 * f16/bf16 as common/et.h's exact conversions).  k unchecked, as above. */
void et_dequantize_row_q8_0(const void *x, float *y, int64_t k);
void et_dequantize_row_q4_0(const void *x, float *y, int64_t k);
void et_dequantize_row_q5_0(const void *x, float *y, int64_t k);
void et_dequantize_row_q4_1(const void *x, float *y, int64_t k);
void et_dequantize_row_q5_1(const void *x, float *y, int64_t k);
void et_dequantize_row_q4_K(const void *x, float *y, int64_t k);
void et_dequantize_row_q6_K(const void *x, float *y, int64_t k);
void et_dequantize_row_q5_K(const void *x, float *y, int64_t k);
void et_dequantize_row_q3_K(const void *x, float *y, int64_t k);
void et_dequantize_row_q2_K(const void *x, float *y, int64_t k);
void et_dequantize_row_iq4_nl(const void *x, float *y, int64_t k);
void et_dequantize_row_f16(const void *x, float *y, int64_t k);
void et_dequantize_row_bf16(const void *x, float *y, int64_t k);

/* ---- by type number (enum ggml_type) ---- */

/* 1 if et_quantize_row / et_dequantize_row handle `type`: F32, F16, BF16,
 * Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL. */
int et_quant_supported(uint32_t type);
/* Elements per block (1 for F32/F16/BF16), or 0 for an unsupported type. */
int64_t et_quant_block_elems(uint32_t type);
/* Bytes of k elements of `type`, or 0 when the type is unsupported, k < 0,
 * k is not a multiple of the block size, or the size overflows. */
uint64_t et_quant_row_bytes(uint32_t type, int64_t k);
/* Quantize k floats (x) into `type` (y, et_quant_row_bytes(type, k) bytes;
 * F32 is a copy).  Returns 0, or ET_EINPUT for an unsupported type or a k
 * that is negative or not a multiple of the block. */
int et_quantize_row(uint32_t type, const float *x, void *y, int64_t k);
/* Dequantize k elements of `type` (x) into floats (y).  0 or ET_EINPUT. */
int et_dequantize_row(uint32_t type, const void *x, float *y, int64_t k);

/* Quantize nrows rows of n_per_row floats (x, row-major) into `type` (y,
 * nrows * et_quant_row_bytes(type, n_per_row) bytes) with an importance
 * matrix: qw [n_per_row] weights one column each (llama-imatrix's mean
 * squared activation), the same for every row.  qw NULL is et_quantize_row.
 * ggml.c ggml_quantize_chunk(type, ..., imatrix) -> quantize_row_*_impl
 * (quant/weighted.c): Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 * and IQ4_NL use the weights; F32/F16/BF16/Q8_0 ignore them.  Returns 0, or
 * ET_EINPUT for an unsupported type, nrows < 0, or a row length that is not
 * a positive multiple of the block. */
int et_quantize_rows_imatrix(uint32_t type, const float *x, void *y, int64_t nrows, int64_t n_per_row,
                             const float *qw);

/* The type a tensor with rows of `n_per_row` elements gets when `want`
 * does not divide it (DESIGN §3).  Chain, as llama.cpp's
 * llama_tensor_get_type (src/llama-quant.cpp, "convert_incompatible_tensor"):
 *   Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> IQ4_NL, and if
 *   that does not divide either -> F16;
 * edgetune adds Q8_0 / Q4_0 / Q5_0 / Q4_1 / Q5_1 / IQ4_NL -> F16, where
 * llama.cpp throws "Unsupported tensor size encountered".  Returns `want` itself when it
 * divides n_per_row; F16/BF16/F32 always divide. */
uint32_t et_quant_fallback(uint32_t want, int64_t n_per_row);

#endif
