/* prune/select.h — from importance scores and targets to a pruning plan.
 *
 *   et_prune_targets t = {.heads = 0.25, .ffn = 0.3, .layers = 2};
 *   et_prune_select(&m, &scores, &t, sha_hex, &plan, &e);
 *
 * Layers: the t.layers layers with the lowest layer_loss (t.depth_loss) or
 * Block Influence go first.  Heads (GQA-aware, prune/plan.h): a "unit" is
 * either one whole kv group (t.head_groups) or, per layer, the lowest-scoring
 * query head of EVERY kv group (so each group keeps the same count); units of
 * a layer go in ascending score order and every layer keeps one.  FFN
 * channels one at a time, the kept count of a layer rounded to a multiple of
 * t.ffn_multiple (row lengths that Q8_0/Q4_0 blocks of 32 divide).
 *  - uniform (t.uniform): every kept layer loses the same number of units /
 *    channels, round(ratio * count), the lowest-scoring of its own;
 *  - per-layer ratios (t.layer_heads / t.layer_ffn, [n_layer] each): the
 *    same within each layer with its own ratio;
 *  - otherwise (global): units and channels are ranked across all layers by
 *    score per removed head / channel (the raw scores; Taylor scores are
 *    loss estimates and compare across layers, activation norms only
 *    roughly) and the lowest go until round(ratio * total) are removed.
 * Embedding channels (t.embd): the lowest by the embd score, the same in
 * every layer (Minitron), kept count a multiple of t.ffn_multiple.
 * t.target_params > 0: the head and FFN ratios are searched (bisection, the
 * one given explicitly stays fixed; neither given: both equal) for the
 * smallest that brings the pruned model to at most target_params
 * parameters; t.target_bytes > 0 the same for the bytes of tensor data
 * once quantized to t.target_ftype (et_prune_plan_bytes: the quantizer's
 * own per-tensor types).  Ratios must lie in [0, 1): ET_EINPUT otherwise.
 */
#ifndef ET_PRUNE_SELECT_H
#define ET_PRUNE_SELECT_H

#include <stdint.h>

#include "importance.h"
#include "plan.h"

typedef struct et_prune_targets {
    double heads;          /* share of query heads to remove, [0, 1) */
    double ffn;            /* share of FFN channels to remove, [0, 1) */
    int layers;            /* whole layers to remove, [0, n_layer) */
    double embd;           /* share of embedding channels to remove, [0, 1) */
    int64_t target_params; /* > 0: search heads/ffn for this parameter count */
    int64_t target_bytes;  /* > 0: instead, for at most this many bytes of tensor data once
                              quantized to target_ftype (et_prune_plan_bytes) */
    int target_ftype;      /* enum et_ftype of target_bytes */
    int heads_set, ffn_set;/* with target_params: 1 = that ratio was given (kept fixed) */
    int uniform;           /* 1: the same widths in every layer */
    int head_groups;       /* 1: remove whole kv groups; 0: query heads within groups */
    int ffn_multiple;      /* kept FFN channels (and embd) a multiple of this; 0 = 32 when
                              n_ff is a multiple of 32, else 1 */
    int depth_loss;        /* 1: layers chosen by layer_loss (needs it), else layer_bi */
    const double *layer_heads, *layer_ffn; /* [n_layer] per-layer ratios, or NULL */
} et_prune_targets;

/* Fill p (a fresh plan for m, base_sha256 = sha or "") from scores s and
 * targets t; p->scores gets s as JSON.  0, ET_EINPUT (ratio out of range,
 * target unreachable, scores lacking what the targets need) or ET_ERUN. */
int et_prune_select(const et_model *m, const et_prune_scores *s, const et_prune_targets *t, const char *sha,
                    et_prune_plan *p, et_err *e);

#endif
