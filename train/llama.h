/* train/llama.h — forward (and, through the tape, backward) of a llama-family
 * model (export/model.h) built from the ops of train/ops.h.
 *
 *   et_model m, g;                       // weights; gradients, same layout
 *   et_model_load(&m, "stories260K.gguf", NULL, &e);
 *   et_model_grads_alloc(&g, &m, &e);    // g.params: n_params zeroed floats
 *   et_llama L;
 *   et_llama_bind(&L, &m, &g, &e);       // tensors over m's and g's memory
 *   et_tape t; et_tape_init(&t, 0, &e);
 *   et_tensor *loss = et_llama_forward(&t, &L, tokens, targets, B, T, NULL);
 *   et_tape_backward(&t, loss);          // g.params += dloss/dparams
 *   // loss->data[0]; optimizer: one loop over m.params / g.params (n_params)
 *   memset(g.params, 0, g.n_params * sizeof(float));
 *   et_tape_reset(&t);
 *
 * The graph per layer (llama2.c model.py / llama.cpp build_llama):
 *   x = tok_embd[tokens]
 *   for each layer:  h = rmsnorm(x) ; q,k,v = h Wq^T, h Wk^T, h Wv^T (+ biases)
 *                    q,k = rope(q), rope(k) ; x = x + attention(q,k,v) Wo^T
 *                    h = rmsnorm(x) ; x = x + (silu(h Wg^T) * h Wu^T) Wd^T
 *   loss = cross_entropy(rmsnorm(x) Wout^T, targets)   (chunked, ops.h)
 * Intermediate tensors carry llama.cpp's callback names with the layer
 * ("attn_norm-0", "Qcur-0", "Kcur-0", "Vcur-0", "Qrope-0", "Krope-0",
 * "kqv_out-0", "ffn_inp-0", "ffn_norm-0", "ffn_gate-0", "ffn_up-0",
 * "ffn_swiglu-0", "l_out-0", "inp_embd", "result_norm"), so et_tape_find()
 * can fetch any.  Memory: RoPE rotates Qcur/Kcur in place (Qrope shares
 * their data), and the output projections add into the residual stream
 * inside the GEMM (ffn_inp = x + kqv_out Wo^T, l_out = ffn_inp + swiglu
 * Wdown^T), so neither keeps a separate activation.  A linear hook (fn)
 * on q or k must therefore not read its own output in its backward.
 *
 * Frozen weights: a tensor whose grad is NULL gets no gradient (bind with
 * g = NULL to freeze everything, or clear one tensor's grad/requires_grad
 * after binding).  Layers with n_head 0 (or n_ff 0) skip attention (FFN),
 * as pruned "deci" models may.
 */
#ifndef ET_LLAMA_H
#define ET_LLAMA_H

#include "../export/model.h"
#include "ops.h"

typedef struct et_linear et_linear;
/* Extension point: a linear whose `fn` is set is computed as
 * fn(t, name, x, lin) -> y [rows of x, out] instead of x W^T + b, with
 * lin->ctx for the hook's own data (LoRA and frozen quantized weights:
 * train/lora_llama.h).  NULL after et_llama_bind. */
typedef et_tensor *(*et_linear_fn)(et_tape *t, const char *name, et_tensor *x, et_linear *lin);

struct et_linear {
    et_tensor w;            /* [out, in] */
    et_tensor b;            /* [out]; b.data == NULL: no bias */
    et_linear_fn fn;        /* NULL: y = x W^T + b */
    void *ctx;
};

typedef struct et_llama_block {
    int n_head, n_head_kv, n_ff;
    et_tensor attn_norm, ffn_norm;             /* [n_embd] */
    et_linear q, k, v, o;                      /* attn_q, attn_k, attn_v, attn_output */
    et_linear gate, up, down;                  /* ffn_gate, ffn_up, ffn_down */
} et_llama_block;

typedef struct et_llama {
    et_model *m;
    int n_embd, n_vocab, n_layer, head_dim;
    float rms_eps, rope_theta;
    et_tensor tok_embd;                        /* [n_vocab, n_embd] */
    et_tensor output_norm;                     /* [n_embd] */
    et_tensor output_own;                      /* [n_vocab, n_embd] when not tied */
    et_tensor *output;                         /* &output_own, or &tok_embd when tied */
    /* Optional: the LM head's input as the device rounds it (QAT with
     * --qat-act, train/qat.h): h [B*T, n_embd] -> a tensor of the same
     * shape; NULL: h itself.  Applied by et_llama_head_input. */
    et_tensor *(*head_in)(et_tape *t, et_tensor *h, void *ctx);
    void *head_in_ctx;
    et_llama_block *blocks;                    /* [n_layer] */
    int n_tensors;                             /* every parameter tensor, GGUF order */
    et_tensor **tensors;                       /* (tied output listed once) */
} et_llama;

/* Gradients with the model's layout: g gets a zeroed block of m->n_params
 * floats and every pointer of m rebased into it (g->tok_embd - g->params ==
 * m->tok_embd - m->params, ...), so zero-grad is one memset and an optimizer
 * one loop.  g->hp shares m's per-layer arrays (g must not outlive m);
 * g->tok is NULL.  Free with et_model_grads_free (not et_model_free).
 * 0 or ET_ERUN (out of memory). */
int et_model_grads_alloc(et_model *g, const et_model *m, et_err *e);
void et_model_grads_free(et_model *g);
/* Move m's parameters into a new zeroed block of n_total >= m->n_params
 * floats (the model's own tensors first, at the same offsets; the tail is
 * room for other trainable tensors, e.g. et_train_llama_add_params).
 * m->n_params is unchanged; every pointer into the old block (m's own are
 * rebased; anything bound to it, such as an et_llama, is not) is stale.
 * 0, ET_EUSAGE (n_total too small) or ET_ERUN (out of memory; m unchanged). */
int et_model_grow_block(et_model *m, size_t n_total, et_err *e);

/* Describe m's parameters as tape tensors named as in GGUF, with gradients
 * in g (same layout, from et_model_grads_alloc) or none (g == NULL).
 * No copies: the tensors point into m->params and g->params.
 * 0, ET_EINPUT (hparams inconsistent: head_dim odd, n_head not a multiple
 * of n_head_kv, ...) or ET_ERUN. */
int et_llama_bind(et_llama *L, et_model *m, et_model *g, et_err *e);
void et_llama_unbind(et_llama *L);
/* The bound tensor with this GGUF name, or NULL. */
et_tensor *et_llama_find(const et_llama *L, const char *name);

/* Final hidden states result_norm [B*T, n_embd] for tokens [B*T] (B rows of
 * T tokens, row-major); pos [B*T] positions or NULL (0..T-1 in each row).
 * NULL on error (tape status). */
/* h [B*T, n_embd] (the final norm's output) through L->head_in when set,
 * else h: every forward applies it before the LM head. */
et_tensor *et_llama_head_input(et_tape *t, const et_llama *L, et_tensor *h);
et_tensor *et_llama_hidden(et_tape *t, et_llama *L, const int32_t *tokens, int B, int T,
                           const int32_t *pos);

/* One transformer block: x [B*T, n_embd] (rows as in et_rope) -> the
 * residual stream after layer l ("l_out-<l>"), the loop body of
 * et_llama_hidden; for callers that run layers themselves (activation
 * recomputation, train/lora_llama.h).  NULL on error. */
et_tensor *et_llama_layer(et_tape *t, et_llama *L, int l, et_tensor *x, int T, const int32_t *pos);

/* Mean next-token cross-entropy (a [1] tensor): et_llama_hidden, then
 * et_cross_entropy with the output weight.  targets [B*T] (the token
 * following each input, < 0 = not in the loss); xo may be NULL (mean over
 * the rows in the loss) or set a mask, a normalizer, chunk size or a
 * full-logits buffer. */
et_tensor *et_llama_forward(et_tape *t, et_llama *L, const int32_t *tokens, const int32_t *targets,
                            int B, int T, const et_xent_opts *xo);

#endif
