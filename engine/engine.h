/* engine/engine.h — the reference inference engine (DESIGN §4).
 *
 * A GGUF llama-family model (arch "llama", or "deci" with per-layer widths)
 * is mapped read-only and its weights are used IN PLACE: F32, F16, BF16,
 * Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_NL.
 * Matrix-vector products quantize the activations to the weight's ggml
 * "vec_dot_type" (Q8_0 for Q8_0/Q4_0/Q5_0/IQ4_NL, Q8_1 for Q4_1/Q5_1, Q8_K for
 * Q2_K..Q6_K, F16 for F16,
 * BF16 for BF16) as ggml-cpu does, so the logits agree with llama.cpp's
 * CPU backend.  The forward pass is
 * llama.cpp's llm_build_llama / llm_build_deci: RMSNorm, RoPE on
 * interleaved pairs (LLAMA_ROPE_TYPE_NORM), grouped-query attention with a
 * KV cache (F16 by default, as llama.cpp), SwiGLU FFN, tied or untied output.
 *
 *   et_engine *m; et_state *st; et_err e = {0};
 *   if (et_engine_load(&m, "stories260K.gguf", &e)) { puts(e.msg); return; }
 *   et_state_opts o = et_state_default_opts();      // n_ctx, threads, KV type
 *   if (et_state_new(&st, m, &o, &e)) { ... }
 *   int32_t bos = 1;
 *   float *logits = malloc(sizeof(float) * m->hp.n_vocab);
 *   et_forward(st, &bos, 1, logits, 0, &e);          // logits of the last token
 *   et_state_free(st); et_engine_free(m);
 *
 * Results are bit-identical whatever the SIMD path (scalar, AVX2, AVX-512,
 * NEON) and the thread count: every dot product accumulates in one fixed
 * order that each path reproduces (engine/kernels.h).
 *
 * Threads: an et_engine is read-only while it runs, so several et_states
 * (one per calling thread) may share it; attach or detach adapters only
 * when no state is running.  Each et_state has its own worker pool.
 *
 * Dependency rule: C11 + libc + libm + pthreads only (the runtime, edgerun,
 * links this folder, quant/, common/, export/gguf* and datasets/tokenizer*).
 * The library never prints and never exits; errors come back as et codes
 * with a message naming the file and the tensor or key.
 */
#ifndef ET_ENGINE_H
#define ET_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../datasets/tokenizer.h"
#include "../export/gguf.h"
#include "../export/model.h"

/* ------------------------------------------------------------ the model */

typedef struct et_adapter et_adapter;

/* One LoRA pair attached to a weight: y += scale * B (A x), with
 * scale = user_scale * alpha / rank (or user_scale when alpha == 0, as
 * llama.cpp src/llama-graph.cpp build_lora_mm). */
typedef struct et_lora_use {
    const struct et_wmat *a;    /* [rank, n_in]  (GGUF ne {n_in, rank}) */
    const struct et_wmat *b;    /* [n_out, rank] (GGUF ne {rank, n_out}) */
    float scale;
} et_lora_use;

/* A weight matrix used in place: n_out rows of n_in elements of `type`,
 * each row row_bytes long (GGUF layout, ne[0] = n_in, ne[1] = n_out). */
typedef struct et_wmat {
    const void *data;           /* into the mapping (or the borrowed et_model) */
    uint32_t type;              /* enum ggml_type */
    int n_in, n_out;
    size_t row_bytes;
    char name[GGUF_MAX_NAME];   /* GGUF tensor name, for messages */
    et_lora_use *lora;          /* [n_lora] adapters attached (owned by the engine) */
    int n_lora;
    const void *packed;         /* the first n_out / 16 groups of 16 rows repacked at load
                                 * (engine/repack.h; in the engine's packed memory), or NULL */
    int n_dropped;              /* rows [0, n_dropped) exist only in `packed`: their bytes at
                                 * `data` were given back to the OS at load (engine/load.c
                                 * engine_repack); read rows with et_wmat_row */
} et_wmat;

/* The most bytes a row may have for its original bytes to be dropped at
 * load (a reader's stack buffer holds one row). */
#define ET_WMAT_ROW_MAX 9216

/* Row r (0 <= r < n_out) of w in the file's layout: a pointer into
 * w->data, or, for a row whose bytes were dropped at load (r < n_dropped),
 * buf (at least w->row_bytes, at most ET_WMAT_ROW_MAX) filled from the
 * repacked group (et_repack_unpack_row: the same bytes).  Never fails. */
const void *et_wmat_row(const et_wmat *w, int r, void *buf);

typedef struct et_engine_layer {
    int n_head, n_head_kv, n_ff;   /* this layer's widths (0: sublayer absent, deci) */
    float *attn_norm;              /* [n_embd] (owned F32 copy)   blk.N.attn_norm.weight */
    et_wmat wq;                    /* [n_head*head_dim, n_embd]   blk.N.attn_q.weight */
    et_wmat wk, wv;                /* [n_head_kv*head_dim, n_embd] */
    et_wmat wo;                    /* [n_embd, n_head*head_dim]   blk.N.attn_output.weight */
    float *bq, *bk, *bv, *bo;      /* optional biases (owned F32) or NULL */
    float *ffn_norm;               /* [n_embd]                    blk.N.ffn_norm.weight */
    et_wmat w_gate, w_up;          /* [n_ff, n_embd]              blk.N.ffn_gate/ffn_up.weight */
    et_wmat w_down;                /* [n_embd, n_ff]              blk.N.ffn_down.weight */
} et_engine_layer;

typedef struct et_engine {
    et_hparams hp;                 /* layer_* arrays owned by the engine */
    int n_rot;                     /* rope.dimension_count (<= head_dim; head_dim by default) */
    float rope_freq_scale;         /* 1 / rope.scaling.factor for "linear" scaling, else 1 */
    float *rope_freqs;             /* [n_rot/2] rope_freqs.weight (Llama 3 factors) or NULL */
    et_wmat tok_embd;              /* [n_vocab, n_embd] token_embd.weight (rows looked up) */
    float *output_norm;            /* [n_embd] (owned F32) */
    et_wmat output;                /* [n_vocab, n_embd] output.weight, or tok_embd when tied */
    et_engine_layer *layers;       /* [n_layer] */
    et_tokenizer *tok;             /* owned; NULL when the file has no tokenizer */
    char *path;                    /* owned, for messages */
    gguf_file gguf;                /* the mapping (unused for et_engine_from_model) */
    int from_gguf;
    void *huge;                    /* internal: huge-page copy of the file (engine/hugecopy.c) or NULL */
    size_t huge_alloc;             /* bytes mapped at huge */
    void *packed_mem;              /* internal: the repacked weights (et_wmat.packed point into it) or NULL */
    size_t packed_bytes;           /* bytes at packed_mem */
} et_engine;

/* Load and validate a GGUF model.  Every tensor's presence, shape and type
 * is checked against the hyperparameters before use; errors (ET_EINPUT)
 * name the file and the first tensor or key that is wrong, e.g.
 * "m.gguf: tensor 'blk.0.attn_k.weight' has shape [64, 48], expected [64, 32]".
 * The tokenizer is loaded when the file has tokenizer.ggml.* keys. */
int et_engine_load(et_engine **out, const char *path, et_err *e);
/* The same over a caller's buffer holding a GGUF file (it must outlive the
 * engine); `name` is used in messages.  For fuzzing and embedded use. */
int et_engine_load_mem(et_engine **out, const void *data, size_t size, const char *name, et_err *e);
/* Wrap an in-memory F32 model (export/model.h: a llama2.c .bin, HF
 * directory, or a model being trained).  The weights are BORROWED: m must
 * outlive the engine.  The tokenizer pointer is borrowed too. 0 or ET_EINPUT. */
int et_engine_from_model(et_engine **out, const et_model *m, et_err *e);
/* Validate a model file before a command rewrites it (quantize, merge): for
 * arch "llama"/"deci", everything et_engine_load checks (every tensor's
 * presence, shape and type against the metadata, the vocabulary against the
 * embedding rows), plus the special token ids (tokenizer.ggml.bos/eos/
 * unknown/padding_token_id) inside the vocabulary (-1 = none).  Other archs are not
 * judged (0).  A FIFO or device is refused unopened (its callers read the file
 * again; common/et.h).  0 or ET_EINPUT naming the file and the key or tensor. */
int et_engine_check_file(const char *path, et_err *e);
/* Free the engine (and its mapping); NULL is fine. */
void et_engine_free(et_engine *m);
/* Max over layers of n_head*head_dim, n_head_kv*head_dim, n_ff. */
int et_engine_max_q(const et_engine *m);
int et_engine_max_kv(const et_engine *m);
int et_engine_max_ff(const et_engine *m);
/* Bytes of weights the model reads per token (every matrix once + the
 * looked-up embedding row), for the memory-bandwidth bound. */
uint64_t et_engine_weight_bytes(const et_engine *m);

/* ------------------------------------------------------------ LoRA adapters */

/* Load a GGUF LoRA adapter (DESIGN §3, llama.cpp src/llama-adapter.cpp):
 * general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (F32),
 * general.architecture equal to the base's, tensors "<base>.lora_a" with
 * ne {n_in, rank} and "<base>.lora_b" with ne {rank, n_out}.  Refuses
 * (ET_EINPUT) an adapter made for another base, naming the first key or
 * tensor that differs ("a.gguf: tensor 'blk.0.attn_q.weight.lora_a' has
 * n_in 128 but the base's blk.0.attn_q.weight has 64"). */
int et_adapter_load(et_adapter **out, const char *path, const et_engine *base, et_err *e);
/* Free an adapter (detach it from every engine first); NULL is fine. */
void et_adapter_free(et_adapter *a);
/* The one validation of a LoRA adapter's numbers, shared by every path that
 * loads an adapter: et_adapter_load (run, edgerun, perplexity, eval, logits)
 * and lora/adapter_gguf.c, lora/adapter_peft.c (merge, lora --resume, the
 * PEFT reader).  alpha must be finite; every element of a lora_a/lora_b
 * tensor [n] (F32, after dequantization) must be finite.  0 or ET_EINPUT
 * naming `path` and the tensor, e.g. "a.gguf: tensor
 * 'blk.0.attn_q.weight.lora_b' holds a non-finite value (NaN at element 12)". */
int et_lora_check_alpha(const char *path, double alpha, et_err *e);
int et_lora_check_values(const char *path, const char *tensor, const float *x, size_t n, et_err *e);
/* adapter.lora.alpha as stored (0 when the key is absent).  The term added
 * is (scale * alpha / rank) B A x, or scale B A x when alpha is 0
 * (llama.cpp src/llama-adapter.cpp, llama_adapter_lora_weight::get_scale). */
float et_adapter_alpha(const et_adapter *a);
/* Attach an adapter with a user scale (1.0 = as trained).  Several adapters
 * may be attached at once; each adds its own term.  The adapter must
 * outlive its attachment.  0, or ET_EINPUT if it was made for another base. */
int et_engine_attach(et_engine *m, const et_adapter *a, float scale, et_err *e);
/* Remove every attached adapter. */
void et_engine_detach_all(et_engine *m);

/* ------------------------------------------------------------ state and forward */

typedef struct et_state et_state;

typedef struct et_state_opts {
    int n_ctx;          /* KV cache length in tokens (0: the model's n_ctx, capped at 4096) */
    int n_threads;      /* worker threads including the caller (0: 1) */
    int n_batch;        /* tokens per forward chunk (0: 64) */
    uint32_t kv_type;   /* GGML_TYPE_F16 (default, as llama.cpp) or GGML_TYPE_F32 */
    const char *isa;    /* "scalar", "avx2", "avx512", "avx512vnni", "neon", or NULL for the best available */
} et_state_opts;

/* n_ctx 0 (the model's, capped at 4096), 1 thread, n_batch 64, F16 KV
 * cache (llama.cpp's default), best ISA. */
et_state_opts et_state_default_opts(void);
/* 0, ET_EUSAGE (bad option, unknown/unsupported isa), ET_ERUN (out of memory). */
int et_state_new(et_state **out, const et_engine *m, const et_state_opts *o, et_err *e);
/* Free the state and its KV cache; NULL is fine. */
void et_state_free(et_state *s);
/* Forget the cached sequence (n_past = 0). */
void et_state_reset(et_state *s);
/* Tokens in the KV cache / its capacity in tokens. */
int et_state_n_past(const et_state *s);
int et_state_n_ctx(const et_state *s);
const char *et_state_isa(const et_state *s);   /* the SIMD path in use */
/* Drop cached positions >= n_past (to rewind, e.g. after a rejected draft). */
int et_state_truncate(et_state *s, int n_past, et_err *e);

/* Run n tokens at positions n_past .. n_past+n-1 and append them to the
 * KV cache.  logits: [n][n_vocab] when all_logits, else [n_vocab] of the
 * last token (may be NULL to only fill the cache).  ET_EUSAGE when the
 * cache would overflow or a token id is outside [0, n_vocab). */
int et_forward(et_state *s, const int32_t *tokens, int n, float *logits, int all_logits, et_err *e);

/* An observer of the weight matmuls (for edgetune imatrix): called with
 * each matrix w and its input x [n_tok][w->n_in] before y = W x is
 * computed — the base projections (q, k, v, output, gate, up, down), the
 * LM head when logits are wanted, and each attached LoRA adapter's A (input
 * x) and B (input A x) — in the order the forward uses them.  A nonzero
 * return aborts the forward with that code (the message in e).  The
 * callback runs on the calling thread; NULL fn removes it.  With no hook
 * the matmul path costs one pointer test. */
typedef int (*et_matmul_hook)(void *user, const et_wmat *w, const float *x, int n_tok, et_err *e);
void et_state_set_matmul_hook(et_state *s, et_matmul_hook fn, void *user);

/* ------------------------------------------------------------ sampling */

/* Deterministic RNG: xoshiro256** seeded by splitmix64 (Blackman & Vigna). */
typedef struct et_rng { uint64_t s[4]; } et_rng;
/* State from one seed: four splitmix64 outputs (common/et.h). */
void et_rng_seed(et_rng *r, uint64_t seed);
/* Next 64 random bits (common/et.h et_xoshiro256ss). */
uint64_t et_rng_next(et_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float et_rng_uniform(et_rng *r);

typedef struct et_sampler_params {
    float temp;      /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;       /* keep the k most likely (0: off) */
    float top_p;     /* nucleus: smallest set with probability >= top_p (1: off) */
    float min_p;     /* drop tokens with p < min_p * p_max (0: off) */
    uint64_t seed;
} et_sampler_params;

typedef struct et_sampler {
    et_sampler_params p;
    et_rng rng;
    int n_vocab;
    int32_t *idx;    /* [n_vocab] scratch: candidate ids, best first */
    float *prob;     /* [n_vocab] scratch */
    void *cand;      /* [n_vocab] scratch: (logit, id) pairs for sorting */
} et_sampler;

et_sampler_params et_sampler_default_params(void);   /* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, seed 0 */
/* Seed the RNG from p->seed and allocate the [n_vocab] scratch arrays.
 * 0, ET_EUSAGE (n_vocab < 1, top_k < 0, top_p outside (0, 1], min_p outside
 * [0, 1], temp NaN) or ET_ERUN (out of memory; s is left freed). */
int et_sampler_init(et_sampler *s, const et_sampler_params *p, int n_vocab, et_err *e);
/* Free the scratch arrays; safe to call twice. */
void et_sampler_free(et_sampler *s);
/* Pick a token from logits [n_vocab].  The chain is llama.cpp's default
 * order: top-k, then softmax, top-p, min-p over the untempered
 * distribution, then temperature, then a draw. */
int et_sample(et_sampler *s, const float *logits);   /* returns the id, in [0, n_vocab) */
/* Index of the largest logit (lowest index on ties). */
int et_argmax(const float *logits, int n);

/* ------------------------------------------------------------ generation */

/* Turns a stream of token ids into UTF-8 text pieces as they arrive:
 * decodes a small window with the tokenizer and emits only the new bytes,
 * holding back an incomplete UTF-8 sequence until it completes (a byte that
 * can never start a character, 0xC0, 0xC1, 0xF5..0xFF, is not held). */
typedef struct et_detok {
    const et_tokenizer *tok;
    int32_t win[8];      /* last ids (context for decoding) */
    int n_win;
    char pend[8];        /* bytes of an incomplete UTF-8 character */
    int n_pend;
    int started;         /* 0 until the first piece (SPM drops the first leading space) */
} et_detok;

/* Start a detokenizer; prompt [n_prompt] ids (BOS skipped) seed the
 * decoding window so that the first generated piece gets its leading space
 * right.  tok is borrowed.  Cannot fail. */
void et_detok_init(et_detok *d, const et_tokenizer *tok, const int32_t *prompt, int n_prompt);
/* Text for one more id, in a malloc'd NUL-terminated buffer (*len bytes,
 * possibly 0). 0 or ET_EINPUT (id out of range) / ET_ERUN. */
int et_detok_push(et_detok *d, int32_t id, char **text, size_t *len, et_err *e);

/* The bytes still held back (an incomplete UTF-8 sequence at the end of a
 * generation), in a malloc'd NUL-terminated buffer (*len bytes, possibly 0);
 * the detokenizer then holds nothing.  et_generate appends them to the last
 * token's text.  0 or ET_ERUN. */
int et_detok_flush(et_detok *d, char **text, size_t *len, et_err *e);

/* Called once per generated token with its text (may be empty); return
 * nonzero to stop. */
typedef int (*et_token_cb)(void *user, int32_t id, const char *text, size_t len);

typedef struct et_gen_stats {
    int n_prompt, n_gen;
    double t_prompt_s, t_gen_s;   /* wall time of prompt processing and generation */
} et_gen_stats;

/* Feed the prompt (after the cached tokens), then sample up to n_predict
 * tokens, stopping early at EOS when stop_at_eos.  Each token is reported
 * through cb (may be NULL) with its text when the engine has a tokenizer.
 * out_ids (may be NULL) receives up to n_predict ids.  0 or an et code. */
int et_generate(et_state *s, et_sampler *smp, const int32_t *prompt, int n_prompt, int n_predict,
                int stop_at_eos, et_token_cb cb, void *user, int32_t *out_ids, int *n_out,
                et_gen_stats *stats, et_err *e);

/* ------------------------------------------------------------ perplexity */

typedef struct et_ppl {
    double nll;        /* sum of -ln p(token | prefix) over the scored tokens, nats */
    long n_scored;     /* tokens scored */
    double ppl;        /* exp(nll / n_scored) */
} et_ppl;

/* Teacher-forced NLL of tokens[0..n) as one sequence from an empty cache:
 * scores tokens[1..n) given their prefixes (n <= n_ctx).  Adds to *r. */
int et_nll(et_state *s, const int32_t *tokens, int n, et_ppl *r, et_err *e);
/* Perplexity of a long token array split into consecutive windows of
 * `window` tokens (0: the state's n_ctx), each evaluated from an empty
 * cache, every token after a window's first scored (the last window may be
 * shorter).  Result in *r (zeroed first). */
int et_perplexity(et_state *s, const int32_t *tokens, size_t n, int window, et_ppl *r, et_err *e);

/* ------------------------------------------------------------ importance matrix */

struct et_imatrix;

typedef struct et_imatrix_opts {
    int n_ctx;            /* tokens per chunk (llama-imatrix -c; default 512) */
    int n_chunks;         /* chunks to run (-1: all that fit, as --chunks) */
    int process_output;   /* also collect output.weight (--process-output) */
    int bos;              /* token put first in every chunk, or -1 (llama-imatrix: the
                           * vocabulary's BOS when it adds BOS) */
} et_imatrix_opts;

/* Called after each chunk: chunk (0-based), n_chunk, seconds so far. */
typedef void (*et_imatrix_progress)(void *user, int chunk, int n_chunk, double seconds);

/* The calibration run of llama.cpp's llama-imatrix (examples/imatrix,
 * compute_imatrix at c392e509): tokens [n] (the whole text tokenized with
 * BOS as the vocabulary says) are cut into n_chunk = min(n_chunks, n / n_ctx)
 * windows of n_ctx tokens; each runs from an empty cache with its first
 * token replaced by o->bos (when >= 0), in ubatches of the state's n_batch
 * (set it to llama.cpp's n_ubatch, 512: one matmul call per ubatch, the
 * "ncall" unit).  Through the matmul hook, every matrix named "blk.*" (and
 * "output.weight" when process_output) whose input has >= 16 rows adds
 * Σx² per column to `im` (et_imatrix_accumulate), as collect_imatrix does.
 * im->chunk_count becomes the largest ncall and im->chunk_size n_ctx.  The
 * state needs n_ctx >= o->n_ctx.  0, ET_EINPUT (fewer than 2 * n_ctx
 * tokens, as llama-imatrix requires), ET_EUSAGE (n_ctx above the state's),
 * or the forward's error. */
int et_imatrix_run(et_state *s, const int32_t *tokens, size_t n, const et_imatrix_opts *o, struct et_imatrix *im,
                   et_imatrix_progress progress, void *user, et_err *e);

#endif
