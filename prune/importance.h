/* prune/importance.h — importance of attention heads, FFN channels,
 * embedding channels and whole layers, measured on calibration tokens with
 * the training forward (train/llama.c) and its named intermediates
 * (et_tape_find: "kqv_out-L", "ffn_swiglu-L", "attn_norm-L", "ffn_norm-L",
 * "l_out-L"); no second copy of the model.
 *
 *   et_prune_scores s; et_prune_score_opts o = {.method = ET_PRUNE_ACTIVATION};
 *   et_prune_score(&m, rows, n_rows, T, &o, &s, &e);   // rows [n_rows, T+1]
 *   et_prune_scores_write(&s, "scores.json", &e);
 *   ... prune/select.h turns scores + targets into a plan ...
 *   et_prune_scores_free(&s);
 *
 * Methods (per calibration row b of T tokens; "mean over batch, L2 over
 * sequence", the best aggregation in Minitron, Muralidharan et al. 2024,
 * arXiv:2407.14679 §2.2):
 *  - activation: head h of layer l: mean_b sqrt(sum_t ||o_{b,t,h}||^2), o the
 *    head's attention output before attn_output (kqv_out columns
 *    h*head_dim..); FFN channel c: mean_b sqrt(sum_t (silu(gate)*up)_{b,t,c}^2)
 *    (ffn_swiglu); embedding channel i: the same of the attn_norm and
 *    ffn_norm outputs, summed over layers (Minitron's LayerNorm activations).
 *  - taylor: first-order Taylor (LLM-Pruner, Ma et al. 2023,
 *    arXiv:2305.11627, eq. 4, "vector-wise"): |sum_{w in group} w * dL/dw|,
 *    dL/dw accumulated over all calibration rows (L = mean next-token
 *    cross-entropy); a head's group is its attn_q rows and attn_output
 *    columns, a channel's its ffn_gate and ffn_up rows and ffn_down column.
 *    No embedding scores (all 0).
 * Depth, with either method:
 *  - layer_bi: Block Influence (ShortGPT, Men et al. 2024, arXiv:2403.03853
 *    eq. 1): mean over tokens of 1 - cos(x_in, x_out) of the layer's
 *    residual stream.
 *  - layer_loss (opts.depth_loss): mean token loss over the first
 *    depth_rows rows with the layer removed minus base_loss (the model's).
 *    n_layer + 1 forwards of depth_rows rows.
 */
#ifndef ET_PRUNE_IMPORTANCE_H
#define ET_PRUNE_IMPORTANCE_H

#include <stdint.h>

#include "../common/et.h"
#include "../export/model.h"

enum { ET_PRUNE_ACTIVATION = 0, ET_PRUNE_TAYLOR = 1 };

typedef struct et_prune_score_opts {
    int method;         /* ET_PRUNE_ACTIVATION or ET_PRUNE_TAYLOR */
    int batch;          /* rows per forward (0 = 8) */
    int depth_loss;     /* 1: layer_loss as well */
    int depth_rows;     /* rows of that loss (0 = 8, at most n_rows) */
    /* progress: called after each batch with rows done and total; may be NULL */
    void (*progress)(void *ctx, const char *stage, int done, int total);
    void *ctx;
} et_prune_score_opts;

typedef struct et_prune_scores {
    char method[16];    /* "activation" or "taylor" */
    int n_layer, n_embd;
    int *n_head;        /* [n_layer] */
    int *n_ff;          /* [n_layer] */
    double **head;      /* [n_layer][n_head[l]] query-head scores */
    double **ffn;       /* [n_layer][n_ff[l]] channel scores */
    double *embd;       /* [n_embd] */
    double *layer_bi;   /* [n_layer] */
    double *layer_loss; /* [n_layer] or NULL */
    double base_loss;   /* mean token loss over the depth rows (NAN when not computed) */
    int64_t n_tokens;   /* calibration tokens scored */
    double seconds;     /* wall time of et_prune_score */
} et_prune_scores;

/* Score m (F32 weights; left unchanged) on rows [n_rows, T+1] of tokens
 * (row b: inputs rows[b*(T+1) .. +T], targets shifted by one; every token
 * must be < n_vocab).  0, ET_EINPUT (bad sizes/tokens) or ET_ERUN. */
int et_prune_score(et_model *m, const int32_t *rows, int n_rows, int T, const et_prune_score_opts *o,
                   et_prune_scores *s, et_err *e);
void et_prune_scores_free(et_prune_scores *s);
/* JSON: {"method", "n_layer", "n_embd", "n_tokens", "base_loss",
 * "layer_bi": [..], "layer_loss": [..] (when computed), "embd": [..],
 * "layers": [{"heads": [..], "ffn": [..]}, ...]}.  to_json returns a new
 * cJSON object (void * to keep cJSON out of this header) or NULL. */
void *et_prune_scores_to_json(const et_prune_scores *s);
int et_prune_scores_write(const et_prune_scores *s, const char *path, et_err *e);
/* Read a scores.json back (checked against m's widths: ET_EINPUT naming the
 * first layer that differs). */
int et_prune_scores_read(et_prune_scores *s, const char *path, const et_model *m, et_err *e);

#endif
