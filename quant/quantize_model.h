/* quant/quantize_model.h — whole-model quantization of a GGUF file, with
 * the per-tensor type choices of llama.cpp's llama-quantize.
 *
 *   et_quant_params p = {.ftype = ET_FTYPE_MOSTLY_Q4_K_M};
 *   et_quant_stats st;
 *   et_err e = {0};
 *   if (et_quantize_model("model-f32.gguf", "model-q4_k_m.gguf", &p, &st, &e))
 *       fprintf(stderr, "%s\n", e.msg);
 *
 * What it does, following llama.cpp src/llama-quant.cpp
 * (llama_model_quantize_impl, llama_tensor_get_type; early-2025 version)
 * with default options (an importance matrix: see et_quant_params.imatrix):
 *  - tensors are written in llama_model_loader's weights_map order: by
 *    layer number parsed as sscanf("blk.%d."), non-layer tensors (-1)
 *    first, then by name (byte order);
 *  - a tensor is quantized only if its name ends in "weight", it has at
 *    least 2 dimensions (1-D norms stay as they are, usually F32), and its
 *    name contains none of "_norm.weight", "ffn_gate_inp.weight",
 *    "ssm_conv1d.weight", "attn_rel_b.weight", the RWKV time_mix weights;
 *  - the type: the ftype's base type; for K-quants and Q4_0/Q4_1/Q5_1/Q8_0
 *    adjusted by llama_tensor_get_type: output.weight (or token_embd.weight when the
 *    model has no output.weight, i.e. tied embeddings) -> Q6_K unless the
 *    base type is Q8_0 (or Q8_0 if its rows do not divide the base block);
 *    Q4_K_M / Q5_K_M: attn_v.weight and ffn_down of the layers picked by
 *    use_more_bits (i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2) -> Q6_K;
 *    Q2_K: attn_v -> Q3_K (Q4_K when n_head/n_head_kv >= 4), ffn_down and
 *    attn_output -> Q3_K;  Q3_K_M: attn_v -> Q5_K for the first two, Q4_K
 *    after, ffn_down -> Q5_K for layers < n/16, Q4_K after, attn_output ->
 *    Q4_K;  Q3_K_L: attn_v, ffn_down, attn_output -> Q5_K;  Q3_K_S, Q5_K_S:
 *    only the output rule;  attn_qkv: Q3_K_M/L -> Q4_K, Q4_K_M -> Q5_K,
 *    Q5_K_M -> Q6_K;  70B attn_v in Q3_K/Q4_K -> Q5_K;  falcon's variants;
 *  - shape fallback when the row length ne[0] does not divide the block:
 *    Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> IQ4_NL, then
 *    F16 (llama.cpp); Q8_0/Q4_0/Q4_1/Q5_1 -> F16 (edgetune; llama-quantize
 *    refuses these), reported per tensor;
 *  - KVs copied in order; split.* removed; general.quantization_version = 2
 *    and general.file_type = ftype set last (ggml's gguf_set_val removes
 *    and re-appends an existing key, so both end up at the end);
 *  - source tensors must be finite (llama.cpp's loader validates them);
 *    already-quantized sources are dequantized only with allow_requantize.
 * Not reproduced (refused with an error): mixture-of-experts models.
 *
 * The output is written atomically.  Memory: the input is mapped; the
 * output tensors are held in memory until the file is written.
 * Dependency rule: C11 + libc + libm (runtime-safe).
 */
#ifndef ET_QUANTIZE_MODEL_H
#define ET_QUANTIZE_MODEL_H

#include <stdint.h>

#include "../common/et.h"
#include "../export/gguf.h"

/* llama.h enum llama_ftype values (what general.file_type stores). */
enum et_ftype {
    ET_FTYPE_ALL_F32 = 0,
    ET_FTYPE_MOSTLY_F16 = 1,
    ET_FTYPE_MOSTLY_Q4_0 = 2,
    ET_FTYPE_MOSTLY_Q4_1 = 3,
    ET_FTYPE_MOSTLY_Q8_0 = 7,
    ET_FTYPE_MOSTLY_Q5_1 = 9,
    ET_FTYPE_MOSTLY_Q2_K = 10,
    ET_FTYPE_MOSTLY_Q3_K_S = 11,
    ET_FTYPE_MOSTLY_Q3_K_M = 12,
    ET_FTYPE_MOSTLY_Q3_K_L = 13,
    ET_FTYPE_MOSTLY_Q4_K_M = 15,
    ET_FTYPE_MOSTLY_Q5_K_S = 16,
    ET_FTYPE_MOSTLY_Q5_K_M = 17,
    ET_FTYPE_MOSTLY_Q6_K = 18,
    ET_FTYPE_MOSTLY_BF16 = 32,
};

/* "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_1", "Q2_K", "Q3_K_S",
 * "Q3_K_M", "Q3_K_L", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"
 * (case-insensitive) -> ftype, or -1. */
int et_ftype_from_name(const char *name);
/* The name of an ftype above, or NULL. */
const char *et_ftype_name(int ftype);
/* The base tensor type of an ftype (Q4_K_M -> Q4_K), or GGML_TYPE_COUNT. */
uint32_t et_ftype_base_type(int ftype);

/* One tensor's outcome, passed to the progress callback. */
typedef struct et_quant_tensor {
    const char *name;     /* NUL-terminated, valid during the callback */
    uint64_t index;       /* 0-based position in the output file */
    uint64_t count;       /* number of tensors */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type_in;     /* as stored in the input */
    uint32_t type_want;   /* the rule's choice before the row-length check */
    uint32_t type_out;    /* as written */
    uint64_t bytes_in, bytes_out;
    int fallback;         /* 1 if type_out != type_want because of the row length */
    const char *message;  /* for a fallback: why, e.g. "row length 172 is not a
                           * multiple of 256 (Q4_K) nor of 32 (Q5_0): using F16";
                           * NULL otherwise */
    int imatrix;          /* 1 if quantized with importance weights */
} et_quant_tensor;

typedef void (*et_quant_progress)(const et_quant_tensor *t, void *ctx);

typedef struct et_quant_params {
    int ftype;               /* enum et_ftype */
    int allow_requantize;    /* dequantize already-quantized tensors (llama-quantize --allow-requantize) */
    et_quant_progress on_tensor; /* optional, called once per tensor, in output order */
    void *ctx;               /* passed to on_tensor */
} et_quant_params;

typedef struct et_quant_stats {
    uint64_t n_tensors;
    uint64_t n_quantized;    /* tensors whose type changed */
    uint64_t n_fallback;     /* tensors written in a fallback type */
    uint64_t bytes_in;       /* tensor data bytes in the input */
    uint64_t bytes_out;      /* tensor data bytes in the output */
    uint64_t file_bytes_in;  /* file sizes */
    uint64_t file_bytes_out;
} et_quant_stats;

/* Quantize the GGUF at `in` into `out` (written atomically; `out` is left
 * untouched on error).  stats may be NULL.  Returns 0, ET_EUSAGE (bad
 * ftype), ET_EINPUT (unreadable/invalid input, non-finite values with the
 * tensor and element named, a type edgetune cannot produce), or ET_ERUN
 * (out of memory, write failure). */
int et_quantize_model(const char *in, const char *out, const et_quant_params *p,
                      et_quant_stats *stats, et_err *e);

/* The same with an importance matrix (quant/imatrix.h; llama-quantize
 * --imatrix F): every quantized tensor with an entry of ne[0] values is
 * quantized by the weighted paths (et_quantize_rows_imatrix, also in the
 * fallback types); Q4_0's first n_layer/8 ffn_down become Q4_1 (llama.cpp's
 * rule with an imatrix); the imatrix must match the model (et_imatrix_check:
 * ET_EINPUT naming the first tensor that differs, before anything is
 * written); and the output gets llama-quantize's KVs after the copied ones:
 * quantize.imatrix.file = imatrix_name (at most 127 bytes, the path as the
 * user typed it), quantize.imatrix.dataset (when the file names one),
 * quantize.imatrix.entries_count and quantize.imatrix.chunks_count (when
 * > 0) as INT32.  imatrix NULL is et_quantize_model. */
struct et_imatrix;
int et_quantize_model_imatrix(const char *in, const char *out, const et_quant_params *p,
                              const struct et_imatrix *imatrix, const char *imatrix_name, et_quant_stats *stats,
                              et_err *e);

/* ---- the type policy alone (used by et_quantize_model; exposed for tests) ---- */

/* What llama_tensor_get_type needs to know about the whole model, and its
 * running counters (quantize_state_impl). */
typedef struct et_quant_policy {
    int ftype;
    uint32_t base_type;
    int is_falcon;        /* general.architecture == "falcon" */
    int is_70b;           /* llama/deci with 80 layers (llama: and n_head != n_head_kv) */
    int n_gqa;            /* n_head / n_head_kv of layer 0 (0 when n_head_kv is 0) */
    int has_output;       /* an "output.weight" tensor exists */
    int n_attention_wv;   /* tensors named *attn_v.weight, *attn_qkv.weight, *attn_kv_b.weight */
    int n_layer;          /* {arch}.block_count: n_ffn_down */
    int i_attention_wv;   /* counters, advanced as tensors are decided in output order */
    int i_ffn_down;
    int has_imatrix;      /* quantize_state_impl.has_imatrix: Q4_0's first n/8 ffn_down -> Q4_1 */
} et_quant_policy;

/* 1 if llama-quantize would quantize this tensor at all (see above). */
int et_quant_wants(const char *name, uint32_t n_dims);
/* Decide the type of one tensor that et_quant_wants, advancing the
 * counters: *want = the rule's type, return value = after the shape
 * fallback; msg (cap bytes, may be NULL) gets the fallback reason or "".
 * Returns GGML_TYPE_COUNT, with the reason in msg, when the rule asks for
 * a type edgetune cannot produce (none at present). */
uint32_t et_quant_choose(et_quant_policy *qp, const char *name, int64_t ne0, uint32_t *want,
                         char *msg, size_t cap);

#endif
