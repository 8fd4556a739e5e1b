/* export/model.h — the in-memory llama-family model.
 *
 * One struct for every llama-family import: GGUF arch "llama" and "deci"
 * (per-layer widths), llama2.c .bin v0, Hugging Face directories
 * (config.json + safetensors).  A quantized GGUF (Q8_0, Q4_0, Q5_0, Q4_1,
 * Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, F16, BF16) is dequantized to F32 on import, bit-exact with ggml's
 * dequantize_row_* (quant/quant.h); src_type records each tensor's file
 * type.  All weights are F32 in ONE contiguous block
 * (karpathy/llm.c train_gpt2.c ParameterTensors): zero-grad is a memset,
 * AdamW one loop, a checkpoint one write.  Layout is GGUF's: row-major
 * [out, in] (ne[0] = in), RoPE on interleaved pairs (x[2i], x[2i+1]), so
 * HF Q/K rows are permuted on import (llama.cpp convert_hf_to_gguf.py
 * LlamaModel.permute).
 *
 *   et_model m; et_err e = {0};
 *   if (et_model_load(&m, "stories260K.gguf", NULL, &e)) { puts(e.msg); return; }
 *   // m.hp.n_layer, m.layers[0].wq [n_head*head_dim, n_embd] ...
 *   et_model_save_gguf(&m, "out.gguf", GGML_TYPE_F16, &e);
 *   et_model_free(&m);
 */
#ifndef ET_MODEL_H
#define ET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../datasets/tokenizer.h"

typedef struct et_hparams {
    char arch[16];          /* "llama" (uniform) or "deci" (per-layer widths) */
    int n_vocab, n_embd, n_layer;
    int n_ctx;              /* training context length (llama.context_length) */
    int n_head, n_head_kv;  /* of layer 0; per layer in layer_* below */
    int n_ff;               /* of layer 0 */
    int head_dim;           /* key_length == value_length; n_embd/n_head by default */
    float rms_eps;          /* attention.layer_norm_rms_epsilon */
    float rope_theta;       /* rope.freq_base */
    int tied_output;        /* 1: output weight is tok_embd (no output tensor) */
    int qkv_bias;           /* 1: attn_q/k/v carry biases (Qwen2-style) */
    int *layer_n_head;      /* [n_layer] */
    int *layer_n_head_kv;   /* [n_layer] */
    int *layer_n_ff;        /* [n_layer] */
} et_hparams;

/* Per-layer widths (arch "deci", llama.cpp src/models/deci.cpp):
 * n_head == 0 makes an attention-free layer (n_head_kv must be 0 too; its
 * attn_norm, wq..wo, biases are NULL); n_ff == 0 makes an FFN-free layer
 * (ffn_norm, w_gate, w_up, w_down NULL).  n_head > 0 needs n_head_kv > 0
 * dividing n_head.  DeciLM's "linear attention" (n_head > 0, n_head_kv == 0:
 * a lone [n_embd, n_embd] attn_output) is not supported and refused. */
typedef struct et_layer {
    float *attn_norm;       /* [n_embd]                                 blk.N.attn_norm.weight */
    float *wq;              /* [n_head*head_dim, n_embd]                blk.N.attn_q.weight */
    float *wk;              /* [n_head_kv*head_dim, n_embd]             blk.N.attn_k.weight */
    float *wv;              /* [n_head_kv*head_dim, n_embd]             blk.N.attn_v.weight */
    float *bq, *bk, *bv;    /* [out] biases or NULL                     blk.N.attn_q.bias ... */
    float *wo;              /* [n_embd, n_head*head_dim]                blk.N.attn_output.weight */
    float *ffn_norm;        /* [n_embd]                                 blk.N.ffn_norm.weight */
    float *w_gate;          /* [n_ff, n_embd]                           blk.N.ffn_gate.weight */
    float *w_up;            /* [n_ff, n_embd]                           blk.N.ffn_up.weight */
    float *w_down;          /* [n_embd, n_ff]                           blk.N.ffn_down.weight */
} et_layer;

typedef struct et_model {
    et_hparams hp;
    float *params;          /* the one block */
    size_t n_params;        /* floats in the block */
    float *tok_embd;        /* [n_vocab, n_embd]   token_embd.weight */
    float *output_norm;     /* [n_embd]            output_norm.weight */
    float *output;          /* [n_vocab, n_embd]   output.weight, == tok_embd when tied */
    et_layer *layers;       /* [n_layer] */
    et_tokenizer *tok;      /* owned; may be NULL */
    char name[64];          /* general.name; "" when unknown */
    uint32_t *src_type;     /* [et_model_tensors count] or NULL: the ggml type each
                               tensor had in the GGUF it was loaded from (e.g.
                               GGML_TYPE_Q8_0; the data above is its F32
                               dequantization); NULL for other sources. Owned. */
} et_model;

/* A named view of one parameter tensor, GGUF naming and shape order. */
typedef struct et_named {
    char name[64];          /* e.g. "blk.0.attn_q.weight" */
    float *data;            /* into m->params */
    int n_dims;             /* 1 or 2 */
    int64_t ne[2];          /* ne[0] = row length (in), ne[1] = rows (out) */
    size_t n;               /* elements */
} et_named;

/* Fill in layer_* arrays (uniform from n_head/n_head_kv/n_ff when NULL),
 * allocate the block and set every pointer; weights are zero.
 * Copies hp (the caller keeps its arrays); head_dim 0 means n_embd/n_head;
 * hp.n_head/n_head_kv/n_ff are set to layer 0's.  0 or ET_EINPUT (bad
 * sizes, message names the field) / ET_ERUN (out of memory). */
int et_model_alloc(et_model *m, const et_hparams *hp, et_err *e);
/* et_model_alloc in two steps, so that an importer can check a file's
 * tensors against et_model_tensors (names and shapes; data NULL) before
 * allocating anything large.  Both free m on error. */
int et_model_plan(et_model *m, const et_hparams *hp, et_err *e);
int et_model_alloc_params(et_model *m, et_err *e);
void et_model_free(et_model *m);
/* Parameter tensors in GGUF order, which is also their order in the block:
 * token_embd, output_norm, output unless tied, then per layer attn_norm,
 * attn_q, [attn_q.bias], attn_k, [attn_k.bias], attn_v, [attn_v.bias],
 * attn_output (none of these when n_head == 0), ffn_norm, ffn_gate, ffn_up,
 * ffn_down (none when n_ff == 0).  Returns the count; writes at most cap
 * entries into out (out may be NULL to count). */
int et_model_tensors(const et_model *m, et_named *out, int cap);
/* 1 if every layer has the same n_head, n_head_kv and n_ff. */
int et_model_is_uniform(const et_model *m);
/* The tensor with this GGUF name (e.g. "blk.3.ffn_up.weight") into *out;
 * 0, or -1 when the model has no such tensor. */
int et_model_find(const et_model *m, const char *name, et_named *out);

/* Load any supported model: a directory (HF: config.json + *.safetensors +
 * tokenizer.json), a file starting with "GGUF", else a llama2.c .bin
 * (tokenizer_path = its tokenizer.bin, or NULL to look for tokenizer.bin /
 * tok<vocab>.bin beside it).  For a GGUF or HF model a tokenizer_path
 * replaces the model's own tokenizer (et_model_set_tokenizer).
 * 0 or ET_EINPUT naming the file and problem. */
int et_model_load(et_model *m, const char *path, const char *tokenizer_path, et_err *e);
/* Replace m->tok by the tokenizer in `path`: a GGUF (tokenizer.ggml.* keys,
 * e.g. a vocab-only file), an HF tokenizer.json (*.json), or else a
 * llama2.c tokenizer.bin read with m->hp.n_vocab entries.  Its size must
 * equal m->hp.n_vocab.  0 or ET_EINPUT naming the file (m unchanged). */
int et_model_set_tokenizer(et_model *m, const char *path, et_err *e);
/* The loaders behind et_model_load, one per format; each returns 0,
 * ET_EINPUT naming the file and problem (with the tensor or key), or ET_ERUN
 * (out of memory); m is left freed on error.
 * _gguf: gguf_open + et_model_from_gguf (below). */
int et_model_load_gguf(et_model *m, const char *path, et_err *e);
/* The same from an open GGUF (arch "llama" or "deci"): every tensor's type
 * and shape are checked against the hparams before anything large is
 * allocated, and a tensor the model has no place for is refused by name.
 * Types: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL
 * (et_quant_supported),
 * each converted to F32 with et_dequantize_row (so a tensor's floats are
 * exactly what ggml's dequantize_row_* gives; a Q8_0/Q4_0 tensor written
 * back with et_quantize_row of the same type reproduces reference-quantized
 * blocks bit for bit, see tests/test_model_quant.c); m->src_type[i] is
 * tensor i's file type.  Any other type (Q5_K, IQ*, TQ*, ...) or a byte
 * size that does not match the shape is refused naming the tensor and
 * type.  g may be closed afterwards. */
int et_model_from_gguf(et_model *m, const gguf_file *g, et_err *e);
/* The same, except that the floats of the layers' linear weights (the 2-D
 * "blk.*" tensors: attn_q/k/v/output, ffn_gate/up/down) are not read: they
 * stay untouched zero pages of the block (calloc'd, so not resident), for a
 * frozen base built one tensor at a time straight from the file
 * (et_lora_llama_init_fill with et_model_gguf_fill below): then no F32 copy
 * of the linears ever exists (QLoRA-style memory).  Same checks and errors;
 * g must stay open while the fill runs. */
int et_model_from_gguf_no_linears(et_model *m, const gguf_file *g, et_err *e);
/* A fill callback of et_lora_llama_init_fill: ctx is a const gguf_file *;
 * dst [n_out, n_in] = tensor `name` dequantized (et_dequantize_row,
 * bit-exact with ggml).  0, or ET_EINPUT when the tensor is missing, of
 * another shape or of a type that cannot be dequantized. */
int et_model_gguf_fill(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in, et_err *e);
/* llama2.c .bin (karpathy/llama2.c run.c read_checkpoint: 7 int32 header,
 * negative vocab_size = untied classifier, then F32 weights); the
 * tokenizer as in et_model_load. */
int et_model_load_llama2c(et_model *m, const char *path, const char *tokenizer_path, et_err *e);
/* HF directory: config.json (LlamaForCausalLM or Qwen2ForCausalLM),
 * *.safetensors (F32, F16 or BF16; Q/K rows permuted with
 * et_rope_rows_hf_to_gguf), tokenizer.json. */
int et_model_load_hf(et_model *m, const char *dir, et_err *e);
/* The same with the tokenizer from tokenizer_path (et_model_set_tokenizer)
 * instead of dir/tokenizer.json; NULL = et_model_load_hf. */
int et_model_load_hf_with_tokenizer(et_model *m, const char *dir, const char *tokenizer_path, et_err *e);

/* Q/K row order between Hugging Face (RoPE on the two halves of each
 * head, transformers rotate_half) and GGUF/edgetune (interleaved pairs):
 * llama.cpp convert_hf_to_gguf.py LlamaModel.permute, i.e. GGUF row
 * h*head_dim + 2i + j = HF row h*head_dim + j*head_dim/2 + i.  src and dst
 * are [n_head*head_dim, row_len] row-major and must not overlap; use
 * n_head = n_head_kv for K, row_len 1 for a bias.  The _to_hf direction is
 * the inverse (for PEFT lora_B of q_proj/k_proj). */
void et_rope_rows_hf_to_gguf(float *dst, const float *src, int n_head, int head_dim, size_t row_len);
void et_rope_rows_gguf_to_hf(float *dst, const float *src, int n_head, int head_dim, size_t row_len);

/* Export to GGUF (type GGML_TYPE_F32 or GGML_TYPE_F16; 1-D tensors stay
 * F32 as llama.cpp does) with complete metadata for arch "llama" (or
 * "deci" when widths differ per layer, or a layer lacks attention or FFN;
 * per-layer INT32 arrays) and the tokenizer, as llama.cpp's
 * convert_hf_to_gguf.py writes them.  For llama.cpp's deci graph
 * (src/models/deci.cpp) an FFN-free layer that has attention is written
 * with an all-zero FFN of width 1 (exactly equivalent), and a model whose
 * layer 0 has no attention is refused (llama.cpp takes the head size from
 * layer 0).  Without m->tok no tokenizer keys are written (llama.cpp will
 * not load such a file).  Atomic.  0 or ET_EINPUT / ET_ERUN. */
int et_model_save_gguf(const et_model *m, const char *path, uint32_t type, et_err *e);
/* The GGUF architecture et_model_save_gguf writes: "llama" when every layer
 * has the same widths with attention and an FFN, else "deci". */
const char *et_model_export_arch(const et_model *m);

#endif
