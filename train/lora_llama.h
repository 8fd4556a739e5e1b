/* train/lora_llama.h — a llama model (train/llama.h) with a FROZEN base and
 * LoRA branches on chosen linear layers: the forward/backward of LoRA and
 * QLoRA-style fine-tuning.
 *
 *   et_lora_llama ll; et_err e = {0};
 *   et_lora_llama_init(&ll, &m, GGML_TYPE_Q8_0, &e);   // base linears kept as Q8_0
 *   et_model_free(&m);                                // allowed: ll owns its copies (non-F32 base)
 *   for each adapted (layer, linear):                 // e.g. q and v of every layer
 *       et_lora_llama_attach(&ll, l, ET_LIN_Q, a, da, b, db, rank, alpha / rank, &e);
 *   ll.dropout = 0.05f; ll.train = 1; ll.seed = hash_of_batch; ll.recompute = 1;
 *   et_tensor *loss = et_lora_llama_forward(&t, &ll, tokens, targets, B, T, &xo);
 *   et_tape_backward(&t, loss);                       // da, db += dloss/dA, dloss/dB
 *
 * Every parameter of the base is frozen (bound without gradients: no dW
 * GEMM anywhere, not even for the LM head or the embedding).  The seven
 * linears of a layer (q, k, v, o, gate, up, down) are computed by
 * et_lora_linear (train/op_lora.h) through the et_linear hook of
 * train/llama.h: with the LoRA branch where one is attached, else as a
 * frozen matmul over the weight in the base type.
 *
 * Base types: GGML_TYPE_F32 uses the model's own floats (no copy; m must
 * outlive ll).  F16, BF16, Q8_0, Q4_0 (or any type quant/quant.h
 * quantizes) convert every linear weight once, bit-exactly as
 * quant/quant.h (= ggml's quantize_row_*_ref); a weight whose rows are not
 * a multiple of the type's block falls back as et_quant_fallback says
 * (e.g. stories260K's ffn_down rows of 172 -> F16).  Embedding, norms,
 * biases and the output weight stay F32 and are copied, so m may then be
 * freed.
 *
 * Linear numbering is the order of lora/adapter.h's enum lora_target_id.
 */
#ifndef ET_LORA_LLAMA_H
#define ET_LORA_LLAMA_H

#include "llama.h"
#include "op_lora.h"
#include "recompute.h"

struct et_qat;
struct et_qat_opts;

enum { ET_LIN_Q, ET_LIN_K, ET_LIN_V, ET_LIN_O, ET_LIN_GATE, ET_LIN_UP, ET_LIN_DOWN, ET_N_LIN };

typedef struct et_lora_llama et_lora_llama;

/* One linear of one layer. */
typedef struct et_lora_slot {
    et_lora_llama *owner;
    int layer, lin;         /* ET_LIN_* */
    et_frozen_w w;          /* the frozen base weight [n_out, n_in] in its type */
    et_tensor a, b;         /* lora_a [rank, n_in], lora_b [n_out, rank]; a.data NULL: no LoRA */
    float scale;            /* of the LoRA branch */
} et_lora_slot;

struct et_lora_llama {
    et_llama L;             /* the model as tape tensors, all frozen; forward with et_llama_forward */
    uint32_t base_type;     /* requested type of the linear weights */
    et_lora_slot *slots;    /* [n_layer * ET_N_LIN], slot(l, i) = slots[l * ET_N_LIN + i] */
    uint8_t *wblock;        /* converted linear weights (NULL for an F32 base) */
    size_t wbytes;          /* bytes in wblock */
    float *small;           /* own copy of the F32 tensors (NULL for an F32 base) */
    size_t small_floats;
    float *scratch;         /* tile buffer shared by every linear (et_lora_opts.scratch) */
    size_t scratch_floats;
    /* per forward: */
    int train;              /* 1: apply dropout (training); 0: evaluation */
    float dropout;          /* p on every LoRA branch input, in [0, 1) */
    uint64_t seed;          /* dropout seed of this forward (e.g. a hash of the batch);
                               each slot mixes in its layer and linear */
    int recompute;          /* 1: recompute layers' activations in backward
                               (train/recompute.h): far less memory, one more forward
                               of each recomputed layer */
    int recompute_layers;   /* with recompute: how many layers, the first ones, are
                               recomputed (0 or >= n_layer: all); the rest keep their
                               activations.  Each recomputed layer saves its
                               activations' memory (about (7 n_embd + 2 n_embd_kv +
                               3 n_ff) * 4 bytes per token) for ~1/3 of its time */
    et_tape inner;          /* the recomputation tape (allocated on first use) */
    int inner_ready;
    struct et_qat *qat;     /* NULL, or LoRA-QAT (et_lora_llama_qat): synced at
                               the start of every et_lora_llama_forward */
};

/* Bind m frozen with its linear weights held as base_type (see top).
 * 0, ET_EINPUT (bad hparams, unsupported type, naming it) or ET_ERUN
 * (out of memory). */
int et_lora_llama_init(et_lora_llama *ll, et_model *m, uint32_t base_type, et_err *e);
/* The same, but each linear weight's F32 values come from
 * fill(ctx, gguf_name, dst [n_out * n_in], n_out, n_in) (0 or an ET_E*
 * code with e filled) one tensor at a time instead of from m, so a base
 * can be built without a full F32 copy ever existing (m's linear floats are
 * then never read: they may be untouched calloc memory).  base_type must
 * not be F32. */
int et_lora_llama_init_fill(et_lora_llama *ll, et_model *m, uint32_t base_type,
                            int (*fill)(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in,
                                        et_err *e),
                            void *ctx, et_err *e);
/* Free what init allocated (slots, converted base weights, scratch, the inner
 * tape) and zero ll; m and the attached lora_a/lora_b stay the caller's. */
void et_lora_llama_free(et_lora_llama *ll);

/* The slot of linear `lin` of `layer`, or NULL when out of range or the
 * layer has no such linear (n_head 0 / n_ff 0). */
et_lora_slot *et_lora_llama_slot(et_lora_llama *ll, int layer, int lin);

/* Attach a LoRA branch to a linear: lora_a [rank, n_in] and lora_b
 * [n_out, rank] (borrowed, e.g. inside an adapter's one block), gradients
 * grad_a / grad_b of the same shapes (NULL = that factor frozen), branch
 * factor scale (alpha/rank, or alpha/sqrt(rank) for rsLoRA).
 * 0 or ET_EINPUT (no such linear, rank < 1). */
int et_lora_llama_attach(et_lora_llama *ll, int layer, int lin, float *lora_a, float *grad_a, float *lora_b,
                         float *grad_b, int rank, float scale, et_err *e);

/* Rows of the LM head's logits computed at a time when xo leaves
 * chunk_rows 0: 256 rows of 49152 logits are 48 MiB.  Each chunk's two
 * GEMMs pack (and in bf16 convert) the whole [n_vocab, n_embd] weight, so
 * fewer rows cost time: on the SmolLM2 bench 64 rows gave 11% fewer tokens
 * per CPU-second than 256, and 1024 rows no more than 256. */
#define ET_LORA_XENT_CHUNK_ROWS 256

/* Mean next-token cross-entropy through the frozen base and its LoRA
 * branches, as et_llama_forward (same arguments; xo may be NULL, and its
 * chunk_rows 0 means ET_LORA_XENT_CHUNK_ROWS), with per-layer
 * activation recomputation when ll->recompute is set and t records.
 * The LM head is train/op_lmhead.h's (frozen, gradient formed in the
 * forward); every GEMM of the base runs in t->gemm_precision (train/gemm.h).
 * NULL on error (t's status). */
et_tensor *et_lora_llama_forward(et_tape *t, et_lora_llama *ll, const int32_t *tokens, const int32_t *targets,
                                 int B, int T, const et_xent_opts *xo);

/* LoRA-QAT (train/qat.h): fake-quantize the weights the model would have
 * after merging, W + s B A for adapted linears (s the slot's scale), as
 * `edgetune quantize --type o->ftype` (or merge --type) would store them,
 * so merging the trained adapter into the F32 base and quantizing ships
 * exactly the weights training saw.  Call after every et_lora_llama_attach,
 * on an F32 base (the merge adds to F32 weights).  The adapted linears keep
 * their LoRA op: their frozen weight becomes fq(W + s B A) - s B A
 * (recomputed once per optimizer step, et_qat_step), so the op's
 * x W'^T + s (x A^T) B^T is x fq(W + s B A)^T up to float rounding, with
 * the straight-through gradients for A and B; the other linears, token_embd
 * and output become fq(W) once.  LoRA dropout must be 0 (a dropped branch
 * has no merged weight).  0, ET_EUSAGE (base not F32, dropout set) or
 * et_qat_attach's errors.  Free q with et_qat_free before ll. */
int et_lora_llama_qat(et_lora_llama *ll, struct et_qat *q, const struct et_qat_opts *o, et_err *e);

/* Bytes held for the frozen base: linear weights in their types plus the
 * F32 tensors (counts the model's own floats for an F32 base). */
uint64_t et_lora_llama_base_bytes(const et_lora_llama *ll);

#endif
