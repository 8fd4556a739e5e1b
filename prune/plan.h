/* prune/plan.h — structured pruning plans: which query heads, kv heads, FFN
 * channels, layers (and optionally embedding channels) of a llama-family
 * model survive, read/written as JSON (DESIGN §3 "Pruning plan"), checked
 * against a model, and applied to it.
 *
 *   et_prune_plan p; et_err e = {0};
 *   et_prune_plan_read(&p, "plan.json", &e);
 *   et_prune_plan_check_model(&p, &m, sha_hex, "model.gguf", &e); // same model?
 *   et_model out;
 *   et_prune_apply(&m, &p, &out, 0, &e);     // a new model, m untouched
 *   et_model_save_gguf(&out, "pruned.gguf", GGML_TYPE_F32, &e); // llama or deci
 *   et_prune_plan_free(&p);
 *
 * The JSON (docs/pruning.md; indices are the BASE model's, ascending):
 *   {"format": "edgetune.prune_plan", "version": 1,
 *    "base_sha256": "<64 hex of the model file>" (or "" = not checked),
 *    "n_layer": 5, "n_embd": 64, "head_dim": 8,
 *    "embd": [kept embedding channels]             (optional; absent = all),
 *    "layers": [{"layer": 0, "n_head": 8, "n_head_kv": 4, "n_ff": 172,
 *                "heads": [kept query heads], "kv_heads": [kept kv heads],
 *                "ffn": [kept FFN channels]},
 *               {"layer": 1, "n_head": 8, "n_head_kv": 4, "n_ff": 172, "removed": true}, ...],
 *    "scores": {...}  (optional: the importance scores the plan came from,
 *                      prune/importance.h, kept verbatim)}
 *
 * GQA: query head h of the base belongs to kv group h / (n_head/n_head_kv)
 * (llama.cpp's broadcast in ggml_mul_mat over heads).  A layer's kept query
 * heads, in ascending order, must fall into its kept kv groups in order, the
 * same number c >= 1 in each, so that the pruned layer has n_head =
 * c * n_head_kv and head i still uses kv head i / c: either whole kv groups
 * go, or query heads go evenly within each group.
 */
#ifndef ET_PRUNE_PLAN_H
#define ET_PRUNE_PLAN_H

#include <cJSON.h>

#include "../common/et.h"
#include "../export/model.h"

typedef struct et_prune_layer {
    int n_head, n_head_kv, n_ff;        /* the base model's widths of this layer */
    int removed;                        /* 1: the whole layer goes (keep lists ignored) */
    int n_keep_head, n_keep_kv, n_keep_ff;
    int *keep_head;                     /* [n_keep_head] query heads, ascending */
    int *keep_kv;                       /* [n_keep_kv] kv heads, ascending */
    int *keep_ff;                       /* [n_keep_ff] FFN channels, ascending */
} et_prune_layer;

typedef struct et_prune_plan {
    char base_sha256[65];               /* lowercase hex of the base file, "" = unknown */
    int n_layer, n_embd, head_dim;      /* of the base model */
    int n_keep_embd;                    /* == n_embd when keep_embd is NULL */
    int *keep_embd;                     /* [n_keep_embd] ascending, or NULL = all kept */
    et_prune_layer *layers;             /* [n_layer] */
    cJSON *scores;                      /* owned; NULL or the importance scores */
} et_prune_plan;

/* A plan that keeps everything of m (sha may be NULL). 0 or ET_ERUN. */
int et_prune_plan_full(et_prune_plan *p, const et_model *m, const char *sha256, et_err *e);
void et_prune_plan_free(et_prune_plan *p);
/* Internal consistency: indices in range, strictly ascending, GQA grouping
 * (above), at least one layer kept, no kept layer without heads or FFN
 * channels ("layer 3: every attention head is pruned but the layer is not
 * removed").  0 or ET_EINPUT naming `what` (a file name) and the layer. */
int et_prune_plan_validate(const et_prune_plan *p, const char *what, et_err *e);
/* The plan belongs to model m (file `path`, sha256 hex or NULL = not
 * compared): n_layer, n_embd, head_dim and every layer's widths equal (else
 * ET_EINPUT naming the first layer that differs), and the file sha256
 * equal when both are known. */
int et_prune_plan_check_model(const et_prune_plan *p, const et_model *m, const char *sha256,
                              const char *path, et_err *e);
/* JSON I/O (cJSON).  read: parses, bounds-checks every count and index,
 * then et_prune_plan_validate; 0, ET_EINPUT naming the file and key, or
 * ET_ERUN.  write: atomic (temporary file renamed into place). */
int et_prune_plan_read(et_prune_plan *p, const char *path, et_err *e);
int et_prune_plan_write(const et_prune_plan *p, const char *path, et_err *e);
/* Parameters (floats) of the model the plan makes from m (embeddings,
 * norms and every kept layer's weights and biases). */
size_t et_prune_plan_params(const et_prune_plan *p, const et_model *m);
/* Bytes of tensor data of the model the plan makes from m once quantized by
 * `edgetune quantize --type <ftype>` (enum et_ftype, quant/quantize_model.h):
 * the quantizer's own per-tensor choices (et_quant_wants, et_quant_choose:
 * llama-quantize's rules and shape fallbacks, in its tensor order), the
 * tensors it leaves alone (1-D norms) as F32, as `edgetune prune` writes
 * them.  Header and metadata (the tokenizer: ~1.5 MB for a 49K vocabulary)
 * are not counted.  0, or ET_EUSAGE for an ftype the quantizer does not
 * produce, ET_ERUN (out of memory). */
int et_prune_plan_bytes(const et_prune_plan *p, const et_model *m, int ftype, uint64_t *bytes, et_err *e);
/* Widths of the pruned model's kept layer order: writes the pruned layer
 * count to *n_layer_out (arrays may be NULL). */
void et_prune_plan_widths(const et_prune_plan *p, int *n_layer_out, int *n_head, int *n_head_kv, int *n_ff);

/* Apply p to src into a new model dst (src unchanged, except that with
 * take_tokenizer != 0 dst takes over src->tok and src->tok becomes NULL;
 * otherwise dst->tok is NULL): kept rows of attn_q/k/v (and biases) per
 * kept head, kept columns of attn_output, kept rows of ffn_gate/ffn_up and
 * columns of ffn_down, kept layers in order, and with keep_embd the kept
 * columns of every matrix reading the residual stream, rows of every matrix
 * writing it, entries of the norms, columns of token_embd/output.  Layer
 * widths may then differ (hp.arch "deci"; et_model_save_gguf writes "deci"
 * with per-layer arrays, else "llama").  Deterministic: the same plan on
 * the same model gives the same bytes.  p must have passed
 * et_prune_plan_check_model for src.  0, ET_EINPUT or ET_ERUN. */
int et_prune_apply(et_model *src, const et_prune_plan *p, et_model *dst, int take_tokenizer, et_err *e);

/* sha256 (lowercase hex) of a whole file, read through et_map.  0 or ET_EINPUT. */
int et_prune_file_sha256(const char *path, char hex[65], et_err *e);

#endif
