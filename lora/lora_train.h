/* lora/lora_train.h — LoRA fine-tuning as an et_train_model for the
 * training loop (train/trainer.h): the adapter's one block (lora/adapter.h)
 * is what AdamW updates and checkpoints save; the base is frozen and held as
 * F32, F16, BF16, Q8_0, Q4_0 or Q4_1 (train/lora_llama.h).
 *
 *   lora_adapter ad;  lora_adapter_create(&ad, &m, &cfg, &e);   // A random, B = 0
 *   lora_train lt;    et_train_model tm;
 *   lora_train_init(&lt, &m, GGML_TYPE_Q8_0, &ad, &tm, &e);     // m may be freed now (non-F32)
 *   lt.recompute = 1;                                           // optional: less memory
 *   et_train_run(&tm, train, valid, &opts, &res, &e);           // trains ad.params
 *   lora_adapter_save_gguf(&ad, "out/adapter.gguf", GGML_TYPE_F32, &e);
 *   lora_train_free(&lt);
 *
 * Loss: mean next-token cross-entropy over the targets the loader's mask
 * keeps (instruction data: the response tokens; plain text: every token).
 * Dropout (ad.dropout) on every LoRA branch input while training, off in
 * evaluation; its mask is seeded from (ad.seed, the micro-batch's tokens),
 * so a resumed run draws the same masks as an uninterrupted one without any
 * extra state in the checkpoint.
 * The tensor table names each block tensor "<base name>.lora_a" /
 * ".lora_b" (GGUF adapter names) with ne {n_in, rank} / {rank, n_out}.
 */
#ifndef ET_LORA_TRAIN_H
#define ET_LORA_TRAIN_H

#include "../train/lora_llama.h"
#include "../train/trainer.h"
#include "adapter.h"

typedef struct lora_train {
    et_lora_llama ll;       /* frozen base + LoRA slots */
    lora_adapter *ad;       /* borrowed: its params block is trained */
    float *grads;           /* [ad->n_params] */
    et_named *t;            /* [n_t] table over ad->params */
    int n_t;
    et_tape tape;
    int chunk_rows;         /* LM-head rows per chunk (0 = the op's default) */
    int recompute;          /* 1: per-layer activation recomputation (train/recompute.h) */
    int cap;
    int32_t *inputs, *targets;
    float *row_loss;
} lora_train;

/* Build the frozen base from m (base_type as et_lora_llama_init) and
 * attach every tensor of ad (created for m) with its scale
 * (lora_tensor_scale).  Fills *tm.  0, ET_EINPUT (ad does not fit m) or
 * ET_ERUN. */
int lora_train_init(lora_train *lt, et_model *m, uint32_t base_type, lora_adapter *ad, et_train_model *tm,
                    et_err *e);
/* The same with the base's linear weights from fill, one tensor at a time
 * (et_lora_llama_init_fill: base_type not F32; m's linear floats are never
 * read), e.g. et_model_gguf_fill over the GGUF m was read from with
 * et_model_from_gguf_no_linears (export/model.h): no F32 copy of the
 * linears ever exists. */
int lora_train_init_fill(lora_train *lt, et_model *m, uint32_t base_type,
                         int (*fill)(void *ctx, const char *name, float *dst, int64_t n_out, int64_t n_in, et_err *e),
                         void *fill_ctx, lora_adapter *ad, et_train_model *tm, et_err *e);
void lora_train_free(lora_train *lt);

/* The dropout seed of a micro-batch: splitmix64 over (seed, tokens[0..n)). */
uint64_t lora_batch_seed(uint64_t seed, const int32_t *tokens, size_t n);

#endif
