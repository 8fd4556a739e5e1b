/* train/ops.h — the differentiable ops of the tape (each one forward/backward
 * pair in one train/op_*.c file).
 *
 * Conventions for every op:
 * - Computes its output now; when the tape records and some input has
 *   requires_grad, appends a node whose backward ADDS into the inputs' grads.
 * - Returns a new arena tensor, or NULL when an input is NULL, a shape does
 *   not match (ET_EINPUT) or the arena is out of memory (ET_ERUN); the first
 *   error is kept in the tape (et_tape_status).
 * - `name` (may be NULL) names the output, for et_tape_find().
 * - Shapes outermost first; "[M, K]" means M rows of K floats.  A tensor of
 *   any rank is read as [rows, cols] with cols = its last dimension.
 * - Formulas follow the Llama reference (facebookresearch/llama model.py,
 *   karpathy/llama2.c model.py); gradients are derived in each file.
 */
#ifndef ET_OPS_H
#define ET_OPS_H

#include "tape.h"

/* Token embedding: out[n, C] with out[i] = w[ids[i]].
 * w [V, C]; ids [n] int32, each in [0, V) (else ET_EINPUT naming the row).
 * Backward: dw[ids[i]] += dout[i] (rows of repeated ids add up).
 * ids are copied. */
et_tensor *et_embedding(et_tape *t, const char *name, et_tensor *w, const int32_t *ids, int n);

/* Linear layer: y[M, N] = x[M, K] @ w[N, K]^T (+ b[N]), w in GGUF's
 * [out, in] layout; b may be NULL.  One cblas_sgemm each way, no copies:
 *   dx[M, K] += dy[M, N] @ w[N, K];  dw[N, K] += dy^T @ x;  db[N] += sum_rows dy. */
et_tensor *et_matmul(et_tape *t, const char *name, et_tensor *x, et_tensor *w, et_tensor *b);
/* The same plus a residual: y[M, N] = r[M, N] + x @ w^T (+ b); dr += dy.
 * r may be NULL (= et_matmul).  One activation instead of two for the
 * blocks' output projections. */
et_tensor *et_matmul_add(et_tape *t, const char *name, et_tensor *x, et_tensor *w, et_tensor *b, et_tensor *r);

/* RMSNorm (Zhang & Sennrich 2019, as in Llama):
 * y[M, C] = x * w / sqrt(mean_c(x^2) + eps); w [C].  Saves 1/rms per row. */
et_tensor *et_rmsnorm(et_tape *t, const char *name, et_tensor *x, et_tensor *w, float eps);
/* The same with the output rematerialised (train/tape.h, et_tape_drop): its
 * values live in a pool buffer until et_tape_drop(t, y) and are recomputed
 * in backward from x and the saved 1/rms (the same bits). */
et_tensor *et_rmsnorm_remat(et_tape *t, const char *name, et_tensor *x, et_tensor *w, float eps);

/* Rotary position embedding (Su et al. 2021) on interleaved pairs
 * (x[2i], x[2i+1]) of each head, as llama.cpp's "llama" arch and llama2.c:
 *   a = pos * theta^(-2i/head_dim),  (y0, y1) = (x0 cos a - x1 sin a, x0 sin a + x1 cos a)
 * x [B*T, n_head*head_dim] (row r = sequence r/T, position r%T);
 * pos [B*T] int32 positions, or NULL for pos = r % T.  head_dim even.
 * Backward rotates dy by -a. */
et_tensor *et_rope(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                   const int32_t *pos, float theta);
/* The same, rotating x's values in place (the output shares x's data, so no
 * new activation): only when nothing else reads x's values afterwards — in
 * particular no other op's backward (a matmul's backward does not read its
 * own output, so rope right after the q/k projection is fine). */
et_tensor *et_rope_inplace(et_tape *t, const char *name, et_tensor *x, int T, int n_head, int head_dim,
                           const int32_t *pos, float theta);

/* et_rope_inplace on q [B*T, n_head*head_dim] and k [B*T,
 * n_head_kv*head_dim] (the same rows, T, positions and theta) at once: one
 * pass over both, forward and backward (two tape nodes, q's then k's; k's
 * backward rotates both gradients).  Sets *q_out and *k_out as the two calls
 * would return (both NULL on error).  Returns 0 or the tape's error code
 * (ET_EINPUT: shapes; ET_ERUN: out of memory). */
int et_rope_qk_inplace(et_tape *t, const char *name_q, const char *name_k, et_tensor *q, et_tensor *k, int T,
                       int n_head, int n_head_kv, int head_dim, const int32_t *pos, float theta, et_tensor **q_out,
                       et_tensor **k_out);

/* Causal self-attention with grouped-query heads (GQA: query head h reads
 * key/value head h / (n_head/n_head_kv)):
 *   out_h = softmax(q_h k_g^T / sqrt(head_dim) + causal mask) v_g
 * q [B*T, n_head*head_dim], k and v [B*T, n_head_kv*head_dim] (rows as in
 * et_rope) -> out [B*T, n_head*head_dim].  n_head a multiple of n_head_kv.
 * Memory: keeps only the per-row log-sum-exp [B, n_head, T] (as
 * FlashAttention, Dao et al. 2022); backward recomputes the probabilities
 * row by row, so nothing of size T*T is ever held beyond one row per thread
 * — except at head_dim 8 (stories260K), where recomputing a probability
 * costs ~25 operations against one load: there the forward keeps the causal
 * half of the probabilities, B * n_head * ~T*(T+16)/2 floats (4.5 MB per
 * layer at batch 4 x 256, 8 heads); on AVX-512 CPUs it runs in 16 x 16
 * tiles (train/attn_kd8.h). */
et_tensor *et_attention(et_tape *t, const char *name, et_tensor *q, et_tensor *k, et_tensor *v,
                        int T, int n_head, int n_head_kv, int head_dim);

/* Tests only: on != 0 makes et_attention use its portable row kernels at
 * head_dim 8 instead of the AVX-512 tiles of train/attn_kd8.h (which it
 * picks on CPUs with AVX-512F).  Process-wide; set it outside any tape. */
void et_attention_force_portable(int on);

/* SwiGLU (Shazeer 2020): out[M, F] = silu(gate) * up, silu(g) = g * sigmoid(g).
 * gate, up [M, F]. */
et_tensor *et_swiglu(et_tape *t, const char *name, et_tensor *gate, et_tensor *up);
/* The same with the output rematerialised (train/tape.h, et_tape_drop):
 * recomputed in backward from gate and up (the same bits). */
et_tensor *et_swiglu_remat(et_tape *t, const char *name, et_tensor *gate, et_tensor *up);

/* Residual add: out = a + b, same number of elements (out takes a's shape). */
et_tensor *et_add(et_tape *t, const char *name, et_tensor *a, et_tensor *b);

/* out = s * x (e.g. to weigh one loss against another). */
et_tensor *et_scale(et_tape *t, const char *name, et_tensor *x, float s);

/* ---- LM head + cross-entropy, computed over chunks of rows ---- */
typedef struct et_xent_opts {
    const uint8_t *mask;  /* [N] 0 = row not in the loss; NULL = all rows.
                             Rows whose target is < 0 are left out as well. */
    double norm;          /* loss = sum of row losses / norm; 0 = the number of
                             rows in the loss (a mean).  Set it to the token
                             count of the whole accumulated batch for
                             gradient accumulation. */
    int chunk_rows;       /* at most this many rows per chunk (chunks of equal size); 0 = at most 16M logits per chunk */
    float *logits_out;    /* [N, V] caller-owned: when set, forward writes every
                             logit here (tests, evaluation) */
    float *row_loss_out;  /* [N] caller-owned: when set, the row's -log p(target)
                             (0 for rows not in the loss) */
    int grad_in_forward;  /* 1: when recording (and logits_out is NULL), forward
                             also makes the gradients for dloss = 1: dx into a
                             saved [N, C] buffer, dw ADDED into w's gradient at
                             once; backward adds dloss * dx, and only when
                             dloss != 1 corrects dw by (dloss - 1) x its share
                             (recomputed).  So each chunk of logits is computed
                             once instead of twice: one N x V x C GEMM fewer per
                             step for the trainer, whose loss is seeded with 1
                             (the "fused linear cross-entropy" of Liger-Kernel,
                             Hsu et al. 2024, arXiv:2410.10989).  w's gradient
                             changes during the forward. */
} et_xent_opts;

/* Fused LM head + softmax cross-entropy:
 *   logits[N, V] = x[N, C] @ w[V, C]^T,
 *   loss[1] = (1/norm) sum_{rows in the loss} (logsumexp(logits_i) - logits_i[target_i])
 * targets [N] int32 in [0, V) (or < 0 to skip the row).  At most chunk_rows
 * x V logits exist at a time: forward keeps only each row's logsumexp; backward
 * recomputes one chunk of logits, turns it into dlogits = (softmax - onehot)
 * * dloss / norm, and does dx += dlogits @ w, dw += dlogits^T @ x (cblas).
 * The targets and mask are copied. */
et_tensor *et_cross_entropy(et_tape *t, const char *name, et_tensor *x, et_tensor *w,
                            const int32_t *targets, const et_xent_opts *opts);

/* ---- LM head + knowledge-distillation loss, over chunks of rows (op_kd.c) ---- */
enum { ET_KD_FORWARD = 0, ET_KD_REVERSE = 1 };

typedef struct et_kd_opts {
    int kind;                 /* ET_KD_FORWARD: KL(teacher || student); ET_KD_REVERSE: KL(student || teacher) */
    float temperature;        /* T > 0: both distributions are softmax(logits / T) */
    float alpha;              /* loss = (alpha T^2 sum KD_r + (1 - alpha) sum CE_r) / norm, alpha in [0, 1] */
    double norm;              /* 0: the rows in the loss (a mean); else e.g. the step's token count */
    const uint8_t *mask;      /* [N] 0 = row in neither term; NULL = all rows */
    const uint8_t *kd_mask;   /* [N] 0 = row has no teacher (CE only); NULL = every row in mask */
    /* a stored teacher (top-k or sampled), row-major [N, k]: */
    int k;
    const int32_t *ids;       /* [N, k] token ids in [0, V) */
    const float *logprobs;    /* [N, k] log p(ids) at temperature T over the full vocabulary (<= 0) */
    const float *weights;     /* [N, k] sampled mode: count / draws (each row sums to 1; 0 = unused
                                 slot); NULL = top-k mode (teacher renormalised over its k) */
    /* or an online teacher: logits [N, V] = teacher_x [N, Ct] @ teacher_w [V, Ct]^T, computed
       chunk by chunk (full-vocabulary KL); both must stay alive until backward */
    const et_tensor *teacher_x, *teacher_w;
    int chunk_rows;           /* at most this many rows per chunk (chunks of equal size); 0 = at most 16M logits per chunk */
    float *row_ce_out;        /* [N] caller-owned, or NULL: each row's CE (nats, T = 1; 0 without target) */
    float *row_kd_out;        /* [N] caller-owned, or NULL: each row's KL (nats, at T, without T^2) */
    int grad_in_forward;      /* as et_xent_opts: each chunk of logits computed once per step */
} et_kd_opts;

/* Fused LM head + distillation loss (the formulas, their sources and the
 * gradients are in op_kd.c's header; stored top-k follows the `definitions`
 * of ../shared/golden/kd_topk.h5):
 *   x [N, C] student hidden states, w [V, C] student output weight,
 *   targets [N] next tokens (< 0: no CE term; may be NULL when alpha = 1).
 * Returns the loss [1]; the ids, log-probs, weights and targets are copied.
 * Errors (tape error, NULL): shapes, T <= 0, alpha outside [0, 1], k outside
 * [1, V], an id outside [0, V) or a NaN / positive log-prob in a row with a
 * teacher (ET_EINPUT, naming the row), reverse KL on sampled tokens. */
et_tensor *et_kd_loss(et_tape *t, const char *name, et_tensor *x, et_tensor *w, const int32_t *targets,
                      const et_kd_opts *opts);

/* Hidden-state distillation loss (TinyBERT, arXiv:1909.10351; op_kd.c):
 * x [N, C] student hidden states, y [N, C] the teacher's at the mapped layer
 * (a constant the caller keeps alive until backward), mask [N] or NULL.
 *   ET_HIDDEN_MSE:    mean over rows of (1/C) |x_r - y_r|^2
 *   ET_HIDDEN_COSINE: mean over rows of 1 - cos(x_r, y_r)
 * "mean" = sum / norm (0: the rows in the mask).  Returns the loss [1] or
 * NULL (tape error: unknown kind, negative norm). */
enum { ET_HIDDEN_MSE = 0, ET_HIDDEN_COSINE = 1 };
et_tensor *et_hidden_loss(et_tape *t, const char *name, et_tensor *x, const float *y, const uint8_t *mask, int kind,
                          double norm);

/* The fused LM-head ops' backward share for x (grad_in_forward): dx [n] =
 * 0 + g dx1 when fresh (a first gradient: the same floats as adding into
 * zeros, -0 included), else dx += g dx1 (op_xent.c, op_kd.c). */
void et_fused_dx(float *dx, const float *dx1, float g, size_t n, int fresh);

/* The fused LM-head loss ops' scalar output [1] (it wants a gradient when x
 * [N, C] or w [V, C] does) and their row chunk: with c = chunk_rows, or
 * the rows that hold 2^24 logits when 0, the N rows go in ceil(N / c)
 * chunks of equal size, *chunk = ceil(N / that) <= c (op_xent.c, op_kd.c).
 * NULL on a tape error. */
et_tensor *et_lmhead_loss_out(et_tape *t, const char *name, et_tensor *x, et_tensor *w, int chunk_rows, int N, int V,
                              int *chunk);

/* logsumexp_v (s z_v) of one row z [V], s > 0, exponentials summed in double
 * (shared by the cross-entropy and distillation ops). */
float et_row_lse(const float *z, int V, float s);

#endif
