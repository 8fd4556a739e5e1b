/* train/batch.h — a loader batch as next-token-prediction inputs and
 * targets, shared by the full trainer (train/train_llama.c) and the LoRA
 * trainer (lora/lora_train.c).
 *
 *   int32_t *in = NULL, *tg = NULL; float *rl = NULL; int cap = 0;
 *   et_batch_split(tokens, mask, B, T, &in, &tg, &rl, &cap, "train", &e);
 *   ...; free(in); free(tg); free(rl);
 */
#ifndef ET_BATCH_H
#define ET_BATCH_H

#include <stdint.h>

#include "../common/et.h"

/* tokens [B][T+1] and mask [B][T+1] (datasets/loader.h et_loader_next rows)
 * -> (*inputs)[b*T + j] = tokens[b][j] and (*targets)[b*T + j] =
 * tokens[b][j+1], or -1 (ignored by the loss) where mask[b][j+1] is 0, for
 * j in [0, T).  The three buffers (*inputs, *targets, and *row_loss, the
 * caller's [B*T] per-row loss scratch) are grown with realloc to B*T
 * elements when *cap (their capacity in elements) is smaller; a buffer that
 * was grown stays valid for the caller to free, even on failure.
 * 0, or ET_ERUN (out of memory; the message starts with `who`). */
int et_batch_split(const int32_t *tokens, const uint8_t *mask, int B, int T, int32_t **inputs, int32_t **targets,
                   float **row_loss, int *cap, const char *who, et_err *e);

#endif
