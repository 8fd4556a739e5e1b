/* train/checkpoint.h — the run state of a training run in one HDF5 file
 * (DESIGN §3), written to "<path>.tmp.<pid>", fsynced and renamed
 * (et_commit_tmp), so an interrupted save leaves the previous file intact.
 *
 *   et_ckpt st = {.step = opt.step, .tokens = n_tok, .config = recipe_json};
 *   memcpy(st.rng, rng.s, sizeof st.rng);
 *   if (et_ckpt_save("out/checkpoint.h5", &blk, &opt, &st, &e)) ...
 *   ...
 *   et_ckpt back = {0};
 *   if (et_ckpt_load("out/checkpoint.h5", &blk, &opt, &back, &e)) ... // e.msg names file + problem
 *   et_ckpt_free(&back);
 *
 * Layout (all little-endian native types; readable with h5py):
 *   /params        float32 [n]   the flat parameter block
 *   /adamw_m       float32 [n]   AdamW first moment
 *   /adamw_v       float32 [n]   AdamW second moment
 *   (8-bit moments, --optim adamw8bit, train/optim.h, instead of the two:
 *   /adamw_m8, /adamw_v8  uint8 [n]  codes;  /adamw_m_absmax,
 *   /adamw_v_absmax  float32 [n_blk]  block scales; attribute adamw_state
 *   "adamw" or "adamw8bit", absent in older files = "adamw")
 *   /tensors/name  string(64) [k]  GGUF tensor names, in block order
 *   /tensors/offset int64 [k]      first float of each tensor in the block
 *   /tensors/ne    int64 [k, 2]    ne[0] = row length, ne[1] = rows (1 for 1-D)
 *   /data_cursor   uint8 [c]     the batch loader's position (opaque bytes; absent when c = 0)
 *   attributes of /: format "edgetune-checkpoint", version 1, step, tokens,
 *     rng uint64[4], adamw_beta1/beta2/eps/weight_decay, config (the recipe
 *     JSON, a string), n_params; optional val_loss_start (float64) and
 *     val_loss_start_step (int64): the run's first validation loss.
 * The block and moment datasets are chunked with the Fletcher-32 filter and the
 * file uses the HDF5 1.10 format, whose metadata is checksummed too, so a
 * corrupted or truncated file is refused on load rather than read silently.
 */
#ifndef ET_CHECKPOINT_H
#define ET_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"
#include "../export/model.h"
#include "optim.h"

/* A parameter block and its tensor table (pointers into data). */
typedef struct et_param_block {
    float *data;            /* [n] */
    size_t n;
    const et_named *t;      /* [n_t] tensors inside data */
    int n_t;
} et_param_block;

/* Everything of a run's state that is not a float block. */
typedef struct et_ckpt {
    int64_t step;           /* optimizer steps completed (== et_adamw.step) */
    int64_t tokens;         /* training tokens consumed so far */
    uint64_t rng[4];        /* the trainer's RNG state */
    uint8_t *cursor;        /* data loader state, opaque bytes (malloc'd by load) */
    size_t cursor_len;
    char *config;           /* the run's recipe JSON, NUL-terminated (malloc'd by load); may be NULL */
    /* The validation loss at the start of the run (nats per token; step 0), so
     * a resumed run reports its "before" figure: written when has_val_start,
     * read back as has_val_start = 0 from files that lack it. */
    int has_val_start;
    double val_start;
    int64_t val_start_step;
} et_ckpt;

/* Write the block, the optimizer moments and st to path atomically.
 * o->n must equal b->n.  0 or ET_EINPUT (sizes disagree) / ET_ERUN (I/O;
 * path is left as it was). */
int et_ckpt_save(const char *path, const et_param_block *b, const et_adamw *o, const et_ckpt *st, et_err *e);

/* Read path into b->data, o->m, o->v (o->step = st->step) and st (whose
 * cursor and config are allocated; free with et_ckpt_free).  Everything is
 * validated first: format and version, n, and every tensor's name, offset
 * and shape against b's table.  0 or ET_EINPUT with a message naming the
 * file and the first difference.  When a checksum fails during the read,
 * the block and moments are partly overwritten: the caller must not train on. */
int et_ckpt_load(const char *path, et_param_block *b, et_adamw *o, et_ckpt *st, et_err *e);

/* Read only the attributes (step, tokens, rng, config) and the cursor,
 * e.g. to rebuild the model from the saved recipe before et_ckpt_load.
 * 0 or ET_EINPUT. */
int et_ckpt_peek(const char *path, et_ckpt *st, et_err *e);

/* The AdamW hyperparameters stored in the checkpoint (adamw_beta1, _beta2,
 * _eps, _weight_decay) must equal hp: a resume with other values would mix
 * two optimizers' moments.  et_ckpt_load checks it too; commands call this
 * before they write anything for the resumed run.  Checkpoints without the
 * attributes pass.  0, ET_EUSAGE naming the value and its flag, ET_EINPUT. */
int et_ckpt_check_optimizer(const char *path, const et_adamw_hp *hp, et_err *e);

/* et_ckpt_check_optimizer, and the stored moment format (attribute
 * adamw_state) must be `state` (ET_ADAMW_F32 / ET_ADAMW_8BIT, train/optim.h):
 * ET_EUSAGE naming --optim otherwise.  et_ckpt_load checks both against o. */
int et_ckpt_check_optimizer_state(const char *path, const et_adamw_hp *hp, int state, et_err *e);

/* Free st's cursor and config and zero it; safe to call twice. */
void et_ckpt_free(et_ckpt *st);

/* The block of a model (its params and et_model_tensors table); t must
 * hold room for et_model_tensors(m, NULL, 0) entries. */
static inline void et_param_block_of_model(et_param_block *b, et_model *m, et_named *t) {
    b->data = m->params;
    b->n = m->n_params;
    b->n_t = et_model_tensors(m, t, et_model_tensors(m, NULL, 0));
    b->t = t;
}

#endif
