/* train/op_lora.h — linear layers over a FROZEN weight that may be kept in
 * a compact type (F32, F16, BF16, Q8_0, Q4_0, ...), with an optional LoRA
 * branch: the ops behind LoRA and QLoRA-style fine-tuning.
 *
 *   // W [n_out, n_in] kept as Q8_0 blocks (quant/quant.h), A, B trainable
 *   et_frozen_w w = {.type = GGML_TYPE_Q8_0, .data = blocks, .n_out = 576, .n_in = 576};
 *   et_lora_opts o = {.scale = 16.0f / 8, .dropout = 0.05f, .seed = step_seed};
 *   et_tensor *y = et_lora_linear(t, "Qcur-0", x, &w, NULL, &lora_a, &lora_b, &o);
 *
 * LoRA (Hu et al. 2021, arXiv:2106.09685; PEFT tuners/lora/layer.py Linear.forward):
 *   y[M, n_out] = x[M, n_in] @ W^T (+ b) + scale * (drop(x) @ A^T) @ B^T
 *   A = lora_a [rank, n_in], B = lora_b [n_out, rank],
 *   scale = alpha / rank, or alpha / sqrt(rank) with rsLoRA (Kalajdzievski 2023),
 *   drop(x) = x * keep / (1 - p) with keep ~ Bernoulli(1 - p) per element
 *   (inverted dropout as torch.nn.Dropout; PEFT applies it to the LoRA
 *   branch input only).
 * W is never trained: no dW GEMM, only dx += dy @ W.  QLoRA-style memory
 * (Dettmers et al. 2023, arXiv:2305.14314): a W that is not F32 stays in its
 * own format and is dequantized a tile of rows at a time
 * (quant/quant.h et_dequantize_row) into a scratch buffer, and each tile
 * goes through the GEMM; no F32 copy of the whole W ever exists.
 * Precision (the tape's `gemm_precision`, train/gemm.h): the two products with W
 * run in et_gemm(precision) — ET_GEMM_F32 exactly as cblas_sgemm, ET_GEMM_BF16
 * with bf16-rounded operands and f32 accumulation.  An F32 W is used in place
 * (one GEMM, no tile); a BF16 W in bf16 precision goes as it is to
 * et_gemm_bf16w (no tile either); in f32 precision a BF16 W is dequantized
 * like the other types (exact).  The rank-r LoRA products are always f32
 * (plain OpenMP loops, no BLAS threads): ~1% of the work, and the adapter is
 * what trains.
 *
 * Gradients (dy = dL/dy [M, n_out], u = drop(x) A^T [M, rank], saved):
 *   dB[n_out, rank] += scale * dy^T @ u
 *   du[M, rank]      = scale * dy @ B
 *   dA[rank, n_in]  += du^T @ drop(x)
 *   dx[M, n_in]     += dy @ W  +  (du @ A) * keep / (1 - p)
 *   db[n_out]       += sum over rows of dy
 * The dropout mask is a pure function of (seed, element index) (a
 * splitmix64 hash), so backward regenerates it instead of storing it, and
 * the same seed gives the same mask on every thread count.
 *
 * Threads: dequantization, the rank-r products and element-wise loops use
 * OpenMP; et_gemm is called from the calling thread only, never inside an
 * OpenMP region.
 */
#ifndef ET_OP_LORA_H
#define ET_OP_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "tape.h"

/* A frozen weight W [n_out, n_in] in GGUF layout: n_out rows of
 * et_quant_row_bytes(type, n_in) bytes each, row-major.  type is an
 * enum ggml_type that quant/quant.h can dequantize (F32, F16, BF16, Q8_0,
 * Q4_0, Q5_0, Q4_1, Q5_1, Q4_K, Q6_K) and n_in a multiple of its block size.  The data
 * is borrowed (e.g. a model's block, or an mmap of a GGUF). */
typedef struct et_frozen_w {
    uint32_t type;
    const void *data;
    int64_t n_out, n_in;
} et_frozen_w;

/* Bytes of W's data, or 0 when the type/shape is invalid. */
uint64_t et_frozen_w_bytes(const et_frozen_w *w);

typedef struct et_lora_opts {
    float scale;           /* factor of the LoRA branch (alpha/rank or alpha/sqrt(rank)) */
    float dropout;         /* p in [0, 1) on the LoRA branch input; 0 = none */
    uint64_t seed;         /* dropout mask seed; vary it per step and per layer */
    float *scratch;        /* caller-owned tile buffer of scratch_floats floats that must
                              stay valid until the tape is reset (shared by every call,
                              which run one after another); NULL = take one from the
                              arena in each call */
    size_t scratch_floats; /* must be >= n_in when scratch is set */
} et_lora_opts;

/* Suggested scratch size for weights with rows up to n_in_max floats:
 * 256 rows of n_in_max (a 256-row tile keeps sgemm efficient and costs
 * 256 * n_in_max * 4 bytes, e.g. 1.5 MiB for n_in 1536). */
size_t et_lora_scratch_floats(int64_t n_in_max);

/* y[M, n_out] = x[M, n_in] @ W^T (+ b[n_out]) (+ the LoRA branch when
 * lora_a and lora_b are both set; both NULL = a plain frozen matmul).
 * x any rank with last dimension n_in (y keeps x's leading dimensions);
 * b may be NULL; lora_a [rank, n_in], lora_b [n_out, rank]; o may be NULL
 * when there is no LoRA branch (no dropout, arena scratch).
 * Gradients flow to x, b, lora_a, lora_b as each requires; never to W.
 * NULL (tape error ET_EINPUT) on a shape mismatch, an unsupported type or a
 * block size that does not divide n_in, dropout outside [0, 1), a scratch
 * smaller than n_in; ET_ERUN when the arena is out of memory. */
et_tensor *et_lora_linear(et_tape *t, const char *name, et_tensor *x, const et_frozen_w *w, et_tensor *b,
                          et_tensor *lora_a, et_tensor *lora_b, const et_lora_opts *o);

/* The same without a LoRA branch: y = x @ W^T (+ b), W frozen. */
et_tensor *et_frozen_matmul(et_tape *t, const char *name, et_tensor *x, const et_frozen_w *w, et_tensor *b,
                            const et_lora_opts *o);

/* The two products with a frozen W, for ops built on this one
 * (train/ffn_frozen.h), in precision (ET_GEMM_*), M rows:
 *   forward:  y[M, n_out] = x[M, n_in] @ W^T + beta * y
 *   backward: dx[M, n_in] = dy[M, n_out] @ W + beta * dx
 * F32 W (and BF16 W in bf16 precision) is used whole; any other W is
 * dequantized tile_rows rows at a time into tile (tile_rows * n_in floats),
 * which is only needed when et_frozen_w_needs_tile() says 1.  W must have
 * passed the checks of et_lora_linear (a supported type, n_in a multiple of
 * its block, dimensions in the BLAS int range). */
int et_frozen_w_needs_tile(const et_frozen_w *w, int precision);
void et_frozen_w_forward(const et_frozen_w *w, int precision, const float *x, int M, float beta, float *y,
                         float *tile, int64_t tile_rows);
void et_frozen_w_backward(const et_frozen_w *w, int precision, const float *dy, int M, float beta, float *dx,
                          float *tile, int64_t tile_rows);

/* The dropout factor of element i for (seed, p): 0 or 1/(1-p) (1 when
 * p == 0).  Exposed for tests and reference implementations. */
float et_lora_dropout_mult(uint64_t seed, uint64_t i, float p);

#endif
