/* datasets/loader.h — streaming batches from a tokens.h5 (dataset.h).
 *
 * A batch is two arrays, row-major:
 *   tokens [B, T+1] int32   row b holds T+1 consecutive tokens of one sample
 *   mask   [B, T+1] uint8   1 = tokens[b][j] is a real token that counts in the loss
 *                           (the file's /loss_mask, or 1 when it has none);
 *                           0 = a masked token (prompt) or padding.
 * Training on a batch uses
 *   inputs  = tokens[b][0 .. T-1]
 *   targets = tokens[b][1 .. T]        (position j predicts tokens[b][j+1])
 *   weight  = mask[b][1 .. T]          (column 0 is never a target: mask[b][0] is
 *                                       reported but must be ignored by the loss)
 * Padding uses pad_id (default: the file's eos_id, or 0) with mask 0.
 *
 * What a sample is (opts.mode):
 *   ET_LOAD_STREAM  the split's documents concatenated (each already ends in EOS) and
 *                   cut into windows of T+1 at stride T, so every token after the
 *                   first is a target exactly once: sample k = stream[k*T, k*T+T+1);
 *                   ceil((n-1)/T) samples for n tokens, the last one padded.
 *   ET_LOAD_ROWS    one sample per document (row): its first T+1 tokens, padded when
 *                   shorter, cut when longer.  Use for packed files, instruction and
 *                   classification data.
 *   ET_LOAD_AUTO    ROWS when the file is packed with packed_len == T+1, else STREAM.
 *
 * Order: with shuffle, epoch e visits the samples in the Fisher-Yates permutation
 * drawn from et_shuffle_epoch_state(seed, e) (shuffle.h); without, in file order.
 * With loop = 1 the loader never ends: a batch that reaches the end of an epoch
 * continues with the first samples of the next epoch.  With loop = 0 it makes one
 * pass: the last batch may have fewer real rows (the rest are padding, mask 0)
 * and afterwards next() returns 0 rows.
 *
 * Memory: only the permutation (8 bytes per sample) and, from the et_ds, the
 * document offsets; each sample is read by an HDF5 hyperslab of T+1 elements.
 *
 * Resuming: et_loader_get_cursor() returns (seed, epoch, position, n_samples).
 * The shuffle generator's state is a pure function of (seed, epoch), so this is
 * the whole state: a loader opened on the same file with the same B, T, mode and
 * split, then given the cursor, yields exactly the batches the original would have
 * yielded next.
 *
 *   et_ds *ds; et_ds_open(&ds, "tokens.h5", &e);
 *   et_loader_opts o = et_loader_defaults(); o.batch_size = 4; o.seq_len = 256; o.seed = 42;
 *   et_loader *L; et_loader_open(&L, ds, &o, &e);
 *   int32_t tok[4 * 257]; uint8_t msk[4 * 257]; int64_t rows;
 *   et_loader_next(L, tok, msk, &rows, &e);
 *   et_cursor c; et_loader_get_cursor(L, &c);   // store in the checkpoint
 *   et_loader_close(L); et_ds_close(ds);
 */
#ifndef ET_LOADER_H
#define ET_LOADER_H

#include <stdint.h>

#include "dataset.h"

enum { ET_LOAD_AUTO = 0, ET_LOAD_STREAM = 1, ET_LOAD_ROWS = 2 };

typedef struct et_loader_opts {
    int64_t batch_size; /* B >= 1 */
    int64_t seq_len;    /* T >= 1; rows hold T+1 tokens */
    int split;          /* ET_SPLIT_TRAIN or ET_SPLIT_VALID */
    int mode;           /* ET_LOAD_* */
    int shuffle;        /* 1: a new permutation every epoch */
    int loop;           /* 1: endless; 0: one pass */
    uint64_t seed;
    int32_t pad_id;     /* < 0: the file's eos_id, or 0 when it has none */
} et_loader_opts;

/* B 1, T 1, train split, AUTO, shuffle, loop, seed 0, pad_id -1. */
et_loader_opts et_loader_defaults(void);

typedef struct et_cursor {
    uint64_t seed;      /* shuffle seed */
    uint64_t epoch;     /* completed epochs */
    uint64_t position;  /* samples already taken in this epoch */
    uint64_t n_samples; /* samples per epoch (checked on restore) */
} et_cursor;

typedef struct et_loader et_loader;

/* Borrow ds (must outlive the loader).  0, ET_EUSAGE (bad options, or the
 * split has no sample, e.g. an empty validation split), ET_ERUN (memory). */
int et_loader_open(et_loader **L, const et_ds *ds, const et_loader_opts *o, et_err *e);
void et_loader_close(et_loader *L);

/* Samples per epoch, and the mode actually used (STREAM or ROWS). */
int64_t et_loader_n_samples(const et_loader *L);
int et_loader_mode(const et_loader *L);

/* Fill tokens [B, T+1] and mask [B, T+1]; *n_rows = real rows (B with loop,
 * possibly fewer, then 0, without).  0 or ET_ERUN (read error). */
int et_loader_next(et_loader *L, int32_t *tokens, uint8_t *mask, int64_t *n_rows, et_err *e);
/* et_loader_next, and pos [B] (may be NULL) gets the /tokens index of each
 * row's first token (tokens[b][0]; -1 for a padding row), so callers can
 * find per-position data stored beside the tokens (the teacher log-probs of
 * datasets/teacher.h).  0 or ET_ERUN. */
int et_loader_next_pos(et_loader *L, int32_t *tokens, uint8_t *mask, int64_t *pos, int64_t *n_rows, et_err *e);
/* Sample k (in file order, 0 <= k < n_samples) into tokens [T+1], mask [T+1].
 * 0, ET_EUSAGE (k out of range), ET_ERUN. */
int et_loader_sample(const et_loader *L, int64_t k, int32_t *tokens, uint8_t *mask, et_err *e);

/* Copy the loader's position (seed, epoch, next sample, n_samples) into *c,
 * e.g. for a checkpoint; cannot fail. */
void et_loader_get_cursor(const et_loader *L, et_cursor *c);
/* Continue from c.  ET_EUSAGE if c.n_samples differs from this loader's (another
 * file, split, T or mode) or c.position > n_samples. */
int et_loader_set_cursor(et_loader *L, const et_cursor *c, et_err *e);

/* The cursor as ET_CURSOR_BYTES bytes (magic "ETC1", then seed, epoch,
 * position, n_samples as little-endian u64) for train/checkpoint.h's opaque
 * /data_cursor.  unpack: 0, or ET_EINPUT when len or magic is wrong. */
#define ET_CURSOR_BYTES 36
void et_cursor_pack(const et_cursor *c, uint8_t out[ET_CURSOR_BYTES]);
int et_cursor_unpack(et_cursor *c, const uint8_t *in, size_t len, et_err *e);

#endif
