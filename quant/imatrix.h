/* quant/imatrix.h — the importance matrix: per weight matrix, the sum over
 * calibration tokens of the squared activations entering each input column
 * (Σ x_j^2), with the token count; what llama.cpp's llama-imatrix collects
 * and llama-quantize --imatrix uses (as the per-column weights Σx²/count).
 *
 *   et_imatrix im; et_err e = {0};
 *   if (et_imatrix_load(&im, "imatrix.dat", &e)) { puts(e.msg); return e.code; }
 *   const et_imatrix_entry *x = et_imatrix_find(&im, "blk.0.attn_q.weight");
 *   float *w = malloc(sizeof(float) * x->n);
 *   et_imatrix_weights(&im, x, w);          // what quantize_row_*_impl gets
 *   et_imatrix_free(&im);
 *
 * Two file formats, both read (the format is recognised by its first bytes)
 * and both written:
 *  - legacy .dat (examples/imatrix/imatrix.cpp save_imatrix at llama.cpp
 *    c392e509, the default there and what its llama-quantize reads),
 *    little-endian int32 throughout:
 *      n_entries; then per entry: name_len, name bytes (no NUL), ncall,
 *      n_values, n_values float32 = (Σx² / count) * ncall;
 *      then (optional trailer) the chunk count, dataset_len, dataset bytes.
 *    llama-quantize divides each value by ncall, so the weight is Σx²/count.
 *  - GGUF (later llama.cpp, tools/imatrix, --output-format gguf): KVs
 *    general.type = "imatrix", imatrix.datasets (array of strings),
 *    imatrix.chunk_count (u32), imatrix.chunk_size (u32); per entry, sorted
 *    by name, tensors "<name>.in_sum2" F32 ne {n_values, 1} = Σx² and
 *    "<name>.counts" F32 ne {1, 1} = count (tokens); "<name>.in_sum" (Σx,
 *    newer files) is read and ignored.  Weight = in_sum2 / counts.
 * Entries are kept in the file's order (collected ones: first use order);
 * a .dat is written in that order (llama-imatrix writes its hash map's
 * order, so files of the two tools may list entries differently), a GGUF
 * sorted by name as llama.cpp does.
 *
 * The loader treats the file as hostile: every count, length and offset is
 * checked against the file size before use; names must be 1..255 bytes
 * without NUL, unique; values finite (llama-quantize refuses non-finite
 * ones); errors are ET_EINPUT naming the file, the entry and what is wrong.
 * Mixture-of-experts entries (several matrices per tensor) are refused.
 * Dependency rule: C11 + libc + libm (runtime-safe).
 */
#ifndef ET_QUANT_IMATRIX_H
#define ET_QUANT_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"

#define ET_IMATRIX_MAX_NAME 256

enum { ET_IMATRIX_DAT = 0, ET_IMATRIX_GGUF = 1 };

typedef struct et_imatrix_entry {
    char name[ET_IMATRIX_MAX_NAME]; /* the weight's GGUF tensor name */
    int64_t n;         /* values = the matrix's input columns (ne[0]) */
    float *sum2;       /* [n]: Σx² (collected, or GGUF in_sum2); for a loaded
                        * .dat, the stored (Σx²/count)*ncall */
    double count;      /* tokens summed (collected / GGUF counts); for a loaded
                        * .dat, ncall (so sum2/count is the weight either way) */
    int32_t ncall;     /* matmul calls that fed it (one per ubatch: llama-imatrix's ncall) */
} et_imatrix_entry;

typedef struct et_imatrix {
    et_imatrix_entry *e;  /* [n_entries] */
    int n_entries, cap;
    int32_t chunk_count;  /* chunks processed (.dat trailer "m_last_call"; GGUF chunk_count) */
    int32_t chunk_size;   /* tokens per chunk (GGUF chunk_size; 0 when unknown) */
    char *dataset;        /* calibration file name (may be NULL) */
    int format;           /* ET_IMATRIX_DAT / ET_IMATRIX_GGUF: what was loaded */
} et_imatrix;

/* Empty matrix (no allocation). */
void et_imatrix_init(et_imatrix *im);
void et_imatrix_free(et_imatrix *im);  /* safe on an initialised or freed one */

/* Load a .dat or GGUF imatrix file (recognised by content).  im is
 * initialised here; on error it is left empty.  0 or ET_EINPUT / ET_ERUN. */
int et_imatrix_load(et_imatrix *im, const char *path, et_err *e);
/* The same from a buffer (for fuzzing); `name` is used in messages. */
int et_imatrix_load_mem(et_imatrix *im, const void *data, size_t size, const char *name, et_err *e);

/* Write atomically as ET_IMATRIX_DAT or ET_IMATRIX_GGUF.  Entries with a
 * zero count are skipped, as llama-imatrix does (no data).  0, ET_EUSAGE
 * (bad format), ET_EINPUT (no entry with data) or ET_ERUN (I/O). */
int et_imatrix_save(const et_imatrix *im, const char *path, int format, et_err *e);

/* The entry named `name`, or NULL. */
const et_imatrix_entry *et_imatrix_find(const et_imatrix *im, const char *name);

/* The per-column weights llama-quantize passes to the quantizer, w [x->n]:
 * sum2[j] / count in float (a .dat: stored / ncall, examples/quantize
 * load_imatrix; ncall 0 leaves the value; a GGUF: in_sum2 / counts, 1.0
 * where counts is 0). */
void et_imatrix_weights(const et_imatrix *im, const et_imatrix_entry *x, float *w);

/* ---- collecting (engine/imatrix.c drives it; see et_imatrix_run) ---- */

/* Add n_tok activation rows x [n_tok][n] to the entry `name` (created on
 * first use): sum2[j] += x[t][j]^2 in float, token by token in order, as
 * llama-imatrix's collect_imatrix; count += n_tok; ncall += 1.
 * 0, ET_EINPUT (the entry exists with another n, or a sum is no longer
 * finite: the message names the tensor), ET_ERUN (out of memory). */
int et_imatrix_accumulate(et_imatrix *im, const char *name, const float *x, int n_tok, int64_t n, et_err *e);

/* Name of the first difference between an imatrix and the model's weights,
 * for refusing an imatrix made for another model: each entry must name a
 * tensor of the model with ne[0] (x ne[2]) == n (entries ending in
 * ".lora_a"/".lora_b" are skipped), and each 2-D "blk.*" weight the
 * quantizer will quantize with weights (want[i] != 0) must have an entry.
 * names/ne0/ne2 describe the model's n tensors.  0, or ET_EINPUT with a
 * message such as "imatrix.dat: entry 'blk.0.attn_q.weight' has 288
 * columns but the model's tensor has 64 (an imatrix for another model?)". */
int et_imatrix_check(const et_imatrix *im, const char *path, int n, const char *const *names,
                     const int64_t *ne0, const int64_t *ne2, const int *want, et_err *e);

#endif
