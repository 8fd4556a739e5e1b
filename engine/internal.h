/* engine/internal.h — what the engine's files share (not a public API). */
#ifndef ET_ENGINE_INTERNAL_H
#define ET_ENGINE_INTERNAL_H

#include "engine.h"
#include "kernels.h"
#include "pool.h"

struct et_state {
    const et_engine *m;
    const et_kernels *k;
    et_pool *pool;
    int n_ctx, n_batch, n_past;
    uint32_t kv_type;        /* GGML_TYPE_F16 or GGML_TYPE_F32 */
    size_t kv_elt;           /* bytes per cached element */
    void **k_cache;          /* [n_layer] -> [n_ctx][n_head_kv*head_dim] */
    void **v_cache;          /* [n_layer] -> [n_head_kv*head_dim][n_ctx] (transposed, as llama.cpp) */
    /* activations for up to n_batch tokens, row-major [token][...] */
    float *x;                /* [n_batch][n_embd] residual stream */
    float *xb;               /* [n_batch][n_embd] normed input / sublayer output */
    float *q;                /* [n_batch][max_q] */
    float *kk, *vv;          /* [n_batch][max_kv] */
    float *att;              /* [n_batch][max_q] attention output before wo */
    float *hb, *hb2;         /* [n_batch][max_ff] */
    float *rope;             /* [n_batch][n_rot] cos, sin interleaved */
    void *act;               /* converted activations for a matmul */
    size_t act_cap;          /* bytes */
    float *lora_t;           /* [n_batch][rank] LoRA A x */
    size_t lora_cap;         /* floats */
    void *att_tmp;           /* per thread: scores [n_ctx] f32, probs [n_ctx] kv type, q [head_dim] kv type */
    size_t att_tmp_stride;   /* bytes per thread */
    et_matmul_hook hook;     /* et_state_set_matmul_hook, or NULL */
    void *hook_user;
};

/* Every weight matrix with data (token_embd, output unless tied, then the
 * layers' projections); writes at most cap pointers, returns the count. */
int et_engine_mats(et_engine *m, et_wmat **out, int cap);

/* y[t][r] (= or +=) alpha * (W x_t)[r] for t < n_tok, plus every attached
 * LoRA term when with_lora.  x: [n_tok][w->n_in], y: [n_tok][w->n_out].
 * accumulate == 0 overwrites y (alpha must then be 1).  Uses s->act and
 * s->lora_t; ET_ERUN when out of memory. */
int et_wmat_matmul(et_state *s, const et_wmat *w, const float *x, int n_tok, float *y, int accumulate, float alpha,
              int with_lora, et_err *e);

/* Several matrices with the same input x [n_tok][n_in] in one threaded
 * job (q/k/v; gate/up): y[i] = W[i] x (+ LoRA terms).  n <= 4. */
int et_wmat_matmul_multi(et_state *s, int n, const et_wmat *const *w, const float *x, int n_tok, float *const *y,
                    et_err *e);

/* engine/hugecopy.c: the whole file `path` copied into read-only anonymous
 * memory advised MADV_HUGEPAGE (2 MiB-aligned; *size = file bytes, *alloc =
 * bytes mapped, for et_engine_huge_free).  Returns NULL (the caller then
 * maps the file in place) when not x86-64 Linux, THP is "never", the file is
 * not a regular file of 2 MiB .. 1/4 of free RAM, ET_ENGINE_MMAP is set to
 * anything but "0", or on any I/O error. */
void *et_engine_huge_copy(const char *path, size_t *size, size_t *alloc);
void et_engine_huge_free(void *p, size_t alloc);
/* n bytes of zeroed anonymous memory, 2 MiB-aligned and advised MADV_HUGEPAGE
 * (unless THP is "never" or ET_ENGINE_MMAP is set to anything but "0");
 * *alloc = bytes mapped, for et_engine_huge_free.  NULL when not x86-64
 * Linux or out of memory. */
void *et_engine_huge_alloc(size_t n, size_t *alloc);

#endif
