/* lora/lora_impl.h — helpers shared by the lora/ sources (not a public API). */
#ifndef ET_LORA_IMPL_H
#define ET_LORA_IMPL_H

#include "adapter.h"

#define LORA_MAX_LAYER 4096
#define LORA_MAX_DIM (1 << 21)                 /* largest n_in / n_out accepted */
#define LORA_MAX_PARAMS ((size_t)1 << 34)      /* floats in one adapter */

/* What one lora_tensor will be, before the block is allocated. */
typedef struct lora_shape {
    char base_name[GGUF_MAX_NAME];
    int layer, target, rank, n_in, n_out, n_head_rope;
} lora_shape;

/* Validate rank, alpha, dropout, targets. 0 or ET_EUSAGE. */
int lora_check_config(const lora_config *c, et_err *e);
/* Allocate *ad with one tensor per shape (in order) inside one zeroed
 * block; sets arch, n_layer, targets, layer_sel and rank (the largest).
 * 0, ET_EINPUT (sizes out of range) or ET_ERUN. */
int lora_adapter_alloc(lora_adapter *ad, const char *arch, int n_layer, const lora_shape *shapes, int n,
                       et_err *e);
/* Every adaptable (layer, target) of m with its shape, in order (*out malloc'd). */
int lora_model_shapes(const et_model *m, lora_shape **out, int *n, et_err *e);
/* general.architecture and {arch}.block_count of a base GGUF. */
int lora_gguf_base_info(const gguf_file *g, char *arch, size_t cap, int *n_layer, et_err *e);
/* n_head / n_head_kv of layer il ({arch}.attention.head_count[_kv], scalar or per-layer array). */
int lora_gguf_layer_heads(const gguf_file *g, const char *arch, int il, int n_layer, int *n_head, int *n_head_kv,
                          et_err *e);
/* Parse "blk.N.<gguf target>.weight" (len bytes): layer and target, or -1. */
int lora_parse_base_name(const char *s, size_t len, int *layer, int *target);

#endif
