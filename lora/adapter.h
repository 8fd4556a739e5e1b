/* lora/adapter.h — the in-memory LoRA adapter, its GGUF and PEFT exports.
 *
 * LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
 * Models", arXiv:2106.09685) replaces a frozen linear W [n_out, n_in] by
 *     y = W x + scale * B (A x),   A = lora_a [rank, n_in], B = lora_b [n_out, rank]
 * with scale = alpha / rank, or alpha / sqrt(rank) for rsLoRA
 * (Kalajdzievski 2023, arXiv:2312.03732; PEFT LoraConfig.use_rslora).
 *
 *   et_model m;  ...loaded base...
 *   lora_config c = {.targets = LORA_TARGET_BIT(LORA_T_Q) | LORA_TARGET_BIT(LORA_T_V),
 *                    .rank = 8, .alpha = 16, .seed = 42};
 *   lora_adapter ad; et_err e = {0};
 *   if (lora_adapter_create(&ad, &m, &c, &e)) { puts(e.msg); return; }
 *   const lora_tensor *t = lora_adapter_find(&ad, "blk.0.attn_q.weight");
 *   // t->lora_a [rank, n_in], t->lora_b [n_out, rank], both inside ad.params
 *   lora_adapter_save_gguf(&ad, "adapter.gguf", GGML_TYPE_F32, &e);   // llama.cpp --lora
 *   lora_adapter_save_peft(&ad, "adapter_dir", "HuggingFaceTB/SmolLM2-135M", ST_F32, &e);
 *   lora_adapter_free(&ad);
 *
 * Memory (DESIGN §2): every lora_a and lora_b lives in ONE contiguous float
 * block `params` (so zero-grad is a memset, AdamW one loop, a checkpoint one
 * write); lora_tensor holds named pointers into it.  Tensors are ordered
 * layer by layer, and inside a layer q, k, v, o, gate, up, down; each
 * tensor's lora_a precedes its lora_b.
 *
 * Layout: base weights are GGUF's row-major [n_out, n_in] with Q/K rows in
 * llama.cpp's interleaved-RoPE order (DESIGN §3), so lora_b rows of q and k
 * are in that order too; the PEFT export un-permutes them to HF's
 * half-split order (inverse of llama.cpp convert_hf_to_gguf.py
 * LlamaModel.permute), the PEFT reader permutes them back.
 *
 * Initialisation as PEFT LoraLayer.reset_lora_parameters(init_lora_weights=True):
 * A ~ kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(n_in), 1/sqrt(n_in)),
 * B = 0.  Random numbers: splitmix64 (datasets/shuffle.h) seeded per
 * tensor from (seed, base tensor name), so one tensor's A does not depend on
 * which other targets are chosen.
 *
 * Errors: functions return 0 or an ET_E* code with e filled (naming the
 * file and the tensor or key); nothing here prints or exits.
 */
#ifndef ET_LORA_ADAPTER_H
#define ET_LORA_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../export/gguf.h"
#include "../export/model.h"

/* The linear layers LoRA can adapt, in the order used everywhere here. */
enum lora_target_id {
    LORA_T_Q, LORA_T_K, LORA_T_V, LORA_T_O, LORA_T_GATE, LORA_T_UP, LORA_T_DOWN, LORA_N_TARGETS
};
#define LORA_TARGET_BIT(t) (1u << (t))
#define LORA_ALL_LINEAR ((1u << LORA_N_TARGETS) - 1u)
#define LORA_DEFAULT_TARGETS (LORA_TARGET_BIT(LORA_T_Q) | LORA_TARGET_BIT(LORA_T_V))
#define LORA_MAX_RANK 4096

/* Names of target t (NULL when out of range):
 *   short  "q" "k" "v" "o" "gate" "up" "down"
 *   gguf   "attn_q" "attn_k" "attn_v" "attn_output" "ffn_gate" "ffn_up" "ffn_down"
 *          (GGUF tensor "blk.N.<gguf>.weight", llama.cpp LLM_TENSOR_* names)
 *   peft   "q_proj" "k_proj" "v_proj" "o_proj" "gate_proj" "up_proj" "down_proj"
 *   hf     "self_attn.q_proj" ... "mlp.down_proj" (module path inside model.layers.N) */
const char *lora_target_short(int t);
const char *lora_target_gguf(int t);
const char *lora_target_peft(int t);
const char *lora_target_hf(int t);

/* Parse a comma-separated target list: each item a short, GGUF or PEFT
 * name above, or "all-linear" (every one; PEFT spells it the same).
 * *bits = OR of LORA_TARGET_BIT.  0 or ET_EUSAGE naming the unknown item. */
int lora_parse_targets(const char *s, unsigned *bits, et_err *e);
/* Write the short names of `bits` as "q,v" (or "all-linear") into out[cap]. */
void lora_format_targets(unsigned bits, char *out, size_t cap);
/* Parse a layer selection for n_layer layers: NULL, "" or "all" = every
 * layer, else comma-separated indices and inclusive ranges "0-3,7".
 * sel[n_layer] gets 1 for selected layers, 0 otherwise.  0 or ET_EUSAGE
 * (malformed, out of range, or nothing selected). */
int lora_parse_layers(const char *s, int n_layer, uint8_t *sel, et_err *e);

typedef struct lora_config {
    unsigned targets;   /* OR of LORA_TARGET_BIT; 0 = LORA_DEFAULT_TARGETS (q, v) */
    const char *layers; /* layer selection (lora_parse_layers); NULL = all */
    int rank;           /* r, 1..LORA_MAX_RANK */
    float alpha;        /* lora_alpha (> 0) */
    int use_rslora;     /* 1: scale = alpha/sqrt(rank), else alpha/rank */
    float dropout;      /* lora_dropout in [0, 1); stored for the trainer and the recipe */
    uint64_t seed;      /* initialisation seed */
} lora_config;

/* One adapted weight of the base. */
typedef struct lora_tensor {
    char base_name[GGUF_MAX_NAME]; /* GGUF name of the base weight, "blk.3.attn_q.weight" */
    int layer;          /* 3 */
    int target;         /* enum lora_target_id */
    int rank;           /* rows of lora_a (= the adapter's rank for adapters made here) */
    int n_in, n_out;    /* base weight is [n_out, n_in] (ne = {n_in, n_out}) */
    int n_head_rope;    /* q: n_head, k: n_head_kv of the layer (rows in interleaved RoPE
                         * order, permuted for PEFT); 0 for the other targets */
    float *lora_a;      /* [rank, n_in], row-major, inside the adapter's params */
    float *lora_b;      /* [n_out, rank], row-major, inside the adapter's params */
} lora_tensor;

typedef struct lora_adapter {
    char arch[32];      /* base general.architecture ("llama", "deci") */
    int n_layer;        /* base layers */
    int rank;           /* r (for a loaded adapter: the largest tensor rank) */
    float alpha;        /* lora_alpha as configured (not multiplied for rsLoRA) */
    int use_rslora;
    float dropout;
    uint64_t seed;
    unsigned targets;   /* OR of LORA_TARGET_BIT present */
    uint8_t *layer_sel; /* [n_layer]: 1 where at least one tensor is adapted */
    float *params;      /* the one block: every lora_a and lora_b */
    size_t n_params;    /* floats in params */
    int n_tensors;
    lora_tensor *tensors; /* [n_tensors], layer by layer, targets in enum order */
} lora_adapter;

/* Create an adapter for the base model m (shapes, head counts and arch
 * from m->hp; weights are not read): one tensor per selected layer and
 * target (targets a layer does not have, e.g. attention of a deci layer
 * with n_head 0, are skipped), initialised as described at the top.
 * 0, ET_EUSAGE (bad config) or ET_ERUN (out of memory). */
int lora_adapter_create(lora_adapter *ad, const et_model *m, const lora_config *c, et_err *e);
/* Same, with shapes from the tensors of an open base GGUF (any tensor
 * type, e.g. a quantized base) and head counts from its
 * {arch}.attention.head_count[_kv] (scalar or per-layer array).
 * Targets whose tensor the file lacks are skipped.  0, ET_EUSAGE, ET_EINPUT
 * (missing or bad metadata, naming the key) or ET_ERUN. */
int lora_adapter_create_gguf(lora_adapter *ad, const gguf_file *base, const lora_config *c, et_err *e);
void lora_adapter_free(lora_adapter *ad);

/* Fill every lora_a with U(-1/sqrt(n_in), 1/sqrt(n_in)) (PEFT's
 * kaiming_uniform_(a=sqrt(5))) and every lora_b with 0, from `seed`. */
void lora_adapter_init(lora_adapter *ad, uint64_t seed);
/* Tensor adapting the base weight `base_name`, or NULL. */
lora_tensor *lora_adapter_find(const lora_adapter *ad, const char *base_name);
/* The factor applied to B(Ax): alpha/rank, or alpha/sqrt(rank) with
 * rsLoRA; rank is the tensor's own rank.  Returns 1 when alpha == 0, as
 * llama.cpp's llama_adapter_lora_weight::get_scale does. */
float lora_tensor_scale(const lora_adapter *ad, const lora_tensor *t);
/* The value of adapter.lora.alpha written to GGUF so that llama.cpp's
 * alpha/rank gives this adapter's scale: alpha, or alpha*sqrt(rank). */
float lora_gguf_alpha(const lora_adapter *ad);

/* ------------------------------------------------------------ GGUF */
/* Exact bytes of the file lora_adapter_save_gguf writes with tensor type
 * `type` (GGML_TYPE_F32 or GGML_TYPE_F16), or 0 for another type. */
uint64_t lora_adapter_gguf_bytes(const lora_adapter *ad, uint32_t type);
/* Write a llama.cpp LoRA adapter (src/llama-adapter.cpp
 * llama_adapter_lora_init_impl): KVs general.architecture (the base's),
 * general.type "adapter", adapter.type "lora", adapter.lora.alpha (F32,
 * lora_gguf_alpha), plus edgetune.lora.alpha / use_rslora / dropout so the
 * recipe survives a round trip; tensors "<base name>.lora_a" ne {n_in, rank}
 * and "<base name>.lora_b" ne {rank, n_out}, both of `type` (F32 or F16;
 * never quantized, so rank < 32 is fine).  Atomic.  0, ET_EUSAGE (type),
 * ET_EINPUT (a name too long) or ET_ERUN (I/O). */
int lora_adapter_save_gguf(const lora_adapter *ad, const char *path, uint32_t type, et_err *e);
/* Read a GGUF LoRA adapter (any file llama.cpp accepts whose lora tensors
 * are F32, F16, BF16 or a type quant/ can dequantize) into *ad (one F32
 * block).  Checks general.type, adapter.type, that every tensor is a
 * 2-D ".lora_a"/".lora_b" of a "blk.N.<target>.weight" (tensors ending
 * "_norm.weight" are ignored as llama.cpp does), that each pair is
 * complete and a.ne[1] == b.ne[0].  rank, alpha, use_rslora come from the
 * edgetune.lora.* keys when present, else alpha = adapter.lora.alpha and
 * rank = the largest tensor rank.  n_head_rope is 0 (unknown) until
 * lora_adapter_check_gguf fills it from a base.  0 or ET_EINPUT naming the
 * file and the tensor/key, ET_ERUN (memory). */
int lora_adapter_load_gguf(lora_adapter *ad, const char *path, et_err *e);
/* Check that the adapter fits the base GGUF: general.architecture equal,
 * every base tensor present, 2-D, with ne {n_in, n_out} equal to the
 * adapter's (and n_layer equal); fills n_head_rope from the base's head
 * counts.  The first mismatch is reported (ET_EINPUT), naming `adapter_name`
 * (a path, for the message), the key or tensor, and both values. */
int lora_adapter_check_gguf(lora_adapter *ad, const char *adapter_name, const gguf_file *base, et_err *e);
/* The same check against an in-memory base model. */
int lora_adapter_check_model(lora_adapter *ad, const char *adapter_name, const et_model *m, et_err *e);

/* ------------------------------------------------------------ PEFT */
/* Write a PEFT LoRA adapter into directory dir (created if missing):
 * adapter_model.safetensors with keys
 *   base_model.model.model.layers.N.<hf module>.lora_A.weight [rank, n_in]
 *   base_model.model.model.layers.N.<hf module>.lora_B.weight [n_out, rank]
 * (st_dtype ST_F32, ST_F16 or ST_BF16 from export/safetensors.h; lora_B
 * rows of q_proj/k_proj un-permuted to HF's
 * half-split RoPE order) and adapter_config.json (peft_type "LORA", r,
 * lora_alpha, target_modules, use_rslora, use_dora false, lora_dropout,
 * bias "none", task_type "CAUSAL_LM", base_model_name_or_path (NULL ->
 * null), fan_in_fan_out false, init_lora_weights true, ...).  target_modules
 * is the list of module names ("q_proj", ...) with layers_to_transform
 * when not every layer is adapted; if the layers differ in their targets it
 * is a regular expression over module paths, which PEFT full-matches.
 * Numbers are written as the shortest decimal of the float (0.05, not
 * 0.0500000007).  Both files atomic; PEFT needs one rank for all tensors.
 * Needs n_head_rope on q/k tensors (set by create, or by a check against a
 * base).  0, ET_EUSAGE, ET_EINPUT or ET_ERUN. */
int lora_adapter_save_peft(const lora_adapter *ad, const char *dir, const char *base_model_name_or_path,
                           int st_dtype, et_err *e);
/* Read a PEFT LoRA adapter directory (adapter_config.json +
 * adapter_model.safetensors) for the base GGUF `base` (which gives arch,
 * shapes and head counts; validated as lora_adapter_check_gguf does):
 * lora_B rows of q/k are permuted into GGUF order.  Refuses use_dora,
 * bias other than "none", fan_in_fan_out, keys it does not understand
 * (naming them).  0, ET_EINPUT or ET_ERUN. */
int lora_adapter_load_peft(lora_adapter *ad, const char *dir, const gguf_file *base, et_err *e);

/* The row permutation between HF and GGUF Q/K layouts, for n_out rows
 * in n_head heads of head_dim = n_out / n_head rows each (llama.cpp
 * convert_hf_to_gguf.py LlamaModel.permute):
 *   gguf row h*head_dim + 2*i + p  ==  hf row h*head_dim + p*head_dim/2 + i
 * for i < head_dim/2, p in {0, 1}.  Returns the HF row of GGUF row r
 * (-1 when n_head does not divide n_out into even head_dim). */
int64_t lora_rope_hf_row(int64_t r, int64_t n_out, int64_t n_head);

#endif
