/* export/safetensors.h — safetensors reader (mmap, validated) and writer.
 *
 * Format (huggingface/safetensors, docs "Format"): u64 little-endian N,
 * then N bytes of UTF-8 JSON: an object mapping each tensor name to
 * {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * plus an optional "__metadata__" object of string -> string; then the
 * data block.  Offsets are bytes relative to the start of the data block
 * (8 + N), end exclusive; shapes are PyTorch order (row-major, last
 * dimension fastest: a Linear weight is [out, in]).
 *
 *   st_file f; et_err e = {0};
 *   if (st_open(&f, "model.safetensors", &e)) { puts(e.msg); return; }
 *   const st_tensor *t = st_find(&f, "model.norm.weight");
 *   float *x = malloc(t->n_elems * sizeof *x);
 *   st_tensor_to_f32(&f, t, x, &e);            // F32, F16 or BF16
 *   st_close(&f);
 *
 *   st_writer *w = st_writer_new();
 *   st_writer_add(w, "a", ST_F16, 2, (int64_t[]){4, 8}, data, &e);  // data: 32 floats
 *   st_writer_set_meta(w, "format", "pt");
 *   st_writer_write(w, "out.safetensors", &e);   // atomic
 *   st_writer_free(w);
 *
 * Uses cJSON to parse the header (so it is not part of the runtime).
 */
#ifndef ET_SAFETENSORS_H
#define ET_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"

/* Element types, as spelled in the header. */
enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_I64, ST_U64, ST_F64, ST_DTYPE_COUNT
};

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit (100 MB) */

/* "F32", "BF16", ... or NULL for an out-of-range value. */
const char *st_dtype_name(int dtype);
/* Bytes per element, 0 for an out-of-range value. */
size_t st_dtype_size(int dtype);

typedef struct st_tensor {
    char *name;                 /* owned, NUL-terminated */
    int dtype;                  /* enum st_dtype */
    int n_dims;                 /* 0..ST_MAX_DIMS (0 = scalar) */
    int64_t shape[ST_MAX_DIMS]; /* PyTorch order: shape[n_dims-1] is fastest */
    uint64_t n_elems;           /* product of shape (1 for a scalar) */
    uint64_t offset;            /* bytes, relative to the data block */
    uint64_t nbytes;            /* n_elems * element size */
    const void *data;           /* into the mapping (may be unaligned) */
} st_tensor;

typedef struct st_meta {
    char *key, *value;          /* owned */
} st_meta;

typedef struct st_file {
    char *path;                 /* owned copy, used in messages */
    et_map map;                 /* unused (zero) when opened from memory */
    const uint8_t *base;        /* file bytes */
    size_t size;                /* file size in bytes */
    uint64_t header_len;        /* N */
    size_t n_tensors;
    st_tensor *tensors;         /* in header order */
    size_t n_meta;
    st_meta *meta;              /* __metadata__ entries */
} st_file;

/* Open and validate: header length against the file size and ST_MAX_HEADER,
 * the JSON (an object; trailing bytes only spaces), every entry's dtype,
 * shape (non-negative, product without overflow) and data_offsets (begin <=
 * end, end inside the data block, end - begin == n_elems * element size),
 * no two tensors overlapping, no duplicate names, __metadata__ values
 * strings.  Errors (ET_EINPUT) name the file and the tensor, e.g.
 * "m.safetensors: tensor 'lm_head.weight': data_offsets [0, 12] hold 12 bytes, dtype F32 x shape [2, 2] needs 16".
 * On error *f is left closed (nothing to free). */
int st_open(st_file *f, const char *path, et_err *e);
/* Same over a caller-owned buffer that must outlive f (fuzzing, tests). */
int st_open_mem(st_file *f, const void *data, size_t size, const char *name, et_err *e);
void st_close(st_file *f);

/* Tensor by exact name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
/* __metadata__ value of key, or NULL. */
const char *st_get_meta(const st_file *f, const char *key);
/* Decode a F32, F16 or BF16 tensor into out[n_elems] (host float).
 * ET_EINPUT naming the file and tensor for any other dtype. */
int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *out, et_err *e);

/* ------------------------------------------------------------------ writer */
typedef struct st_writer st_writer;

st_writer *st_writer_new(void);       /* NULL on out of memory */
void st_writer_free(st_writer *w);    /* NULL is fine */
/* Add a tensor of dtype ST_F32, ST_F16 or ST_BF16 from n_elems floats
 * (converted at write time, round to nearest even; NOT copied: data must
 * stay valid until st_writer_write returns).  shape is PyTorch order.
 * 0, or ET_EINPUT for another dtype, a bad shape, an empty or duplicate
 * name or one starting "__"; ET_ERUN on out of memory. */
int st_writer_add(st_writer *w, const char *name, int dtype, int n_dims, const int64_t *shape,
                  const float *data, et_err *e);
/* Set a __metadata__ string (copied; setting a key again replaces it).
 * 0 or ET_ERUN. */
int st_writer_set_meta(st_writer *w, const char *key, const char *value);
/* Write atomically: header JSON (__metadata__ first, then tensors in the
 * order added, data laid out in that order), padded with spaces to a
 * multiple of 8 bytes as the reference writer does.  0 or ET_ERUN naming
 * the path. */
int st_writer_write(st_writer *w, const char *path, et_err *e);

#endif
