/* lora/merge.h — fold LoRA adapters into a base model (GGUF in, GGUF out).
 *
 *   lora_merge_adapter ads[] = {{"style.gguf", 1.0f}, {"task.gguf", 0.5f}};
 *   lora_merge_stats st; et_err e = {0};
 *   if (lora_merge("base.gguf", ads, 2, "merged.gguf", -1, &st, &e)) puts(e.msg);
 *
 * For every base weight W [n_out, n_in] an adapter adapts, in F32:
 *     W' = W + s * k * B @ A,   k = alpha/rank (alpha/sqrt(rank) for rsLoRA;
 *                                   1 when alpha is 0, as llama.cpp)
 * with s the user's scale: the same weight llama.cpp applies at run time
 * with `--lora-scaled ADAPTER s` (src/llama-graph.cpp build_lora_mm:
 * y = W x + s * k * B (A x)), so the merged model's logits equal the base
 * with the adapter applied, up to rounding.  Adapters are applied in the
 * order given.  A quantized base tensor is dequantized first
 * (quant/quant.h); every other KV and tensor is copied unchanged.
 *
 * Output types: out_ftype -1 keeps every tensor's type (an adapted Q8_0
 * weight is re-quantized to Q8_0, bit-exact with ggml's reference
 * quantizer); otherwise an enum et_ftype (F32, F16, BF16, Q8_0, Q4_0,
 * Q4_K_M, Q6_K): the merged model is written with adapted weights in F32
 * to a temporary file beside `out`, then quantized with llama-quantize's
 * per-tensor policy (quant/quantize_model.h, allow_requantize on), and the
 * temporary file removed.  The output is written atomically either way.
 * Memory: the base and adapters are mapped/loaded; adapted tensors are
 * held in memory until the file is written.
 */
#ifndef ET_LORA_MERGE_H
#define ET_LORA_MERGE_H

#include <stdint.h>

#include "../common/et.h"
#include "adapter.h"

typedef struct lora_merge_adapter {
    const char *path;  /* GGUF LoRA adapter */
    float scale;       /* user scale s (1.0 = as trained) */
} lora_merge_adapter;

typedef struct lora_merge_stats {
    int n_adapted;            /* base tensors changed */
    int n_pairs;              /* lora_a/lora_b pairs applied (over all adapters) */
    uint64_t file_bytes_out;  /* size of the output file */
} lora_merge_stats;

/* W [n_out, n_in] (row-major, F32) += s * B @ A with B = t->lora_b
 * [n_out, rank], A = t->lora_a [rank, n_in]; each row's delta is summed
 * over the rank in F32 and added to W once.  0, or ET_ERUN when the
 * row buffer cannot be allocated (w is then unchanged). */
int lora_merge_f32(float *w, const lora_tensor *t, float s);

/* Merge n adapters into the base GGUF at base_path, writing out_path.
 * Every adapter is read (lora_adapter_load_gguf) and checked against the
 * base (lora_adapter_check_gguf) before anything is written; a mismatch
 * names the adapter file and the first key or tensor that differs.
 * stats may be NULL.  Returns 0, ET_EUSAGE (n < 1, bad out_ftype),
 * ET_EINPUT (unreadable or mismatched input, a base tensor type edgetune
 * cannot dequantize, a merged weight that is not finite, naming it) or
 * ET_ERUN (memory, I/O); out_path is untouched on error. */
int lora_merge(const char *base_path, const lora_merge_adapter *ads, int n, const char *out_path, int out_ftype,
               lora_merge_stats *stats, et_err *e);

#endif
