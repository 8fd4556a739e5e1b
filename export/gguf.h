/* export/gguf.h — GGUF v2/v3 reader (mmap, validated) and writer.
 *
 * Format: ggml's docs/gguf.md and llama.cpp ggml/src/gguf.cpp.  Little-endian;
 * header "GGUF", u32 version, u64 n_tensors, u64 n_kv; each KV is
 * string key, u32 type, value; strings are u64 length + bytes (no NUL);
 * arrays are u32 element type, u64 count, elements; then tensor infos
 * (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset
 * relative to the data section); the data section starts at the first
 * multiple of general.alignment (default 32) after the infos.
 * ne[0] is the row length (fastest-varying dimension).
 *
 *   gguf_file g; et_err e = {0};
 *   if (gguf_open(&g, "stories260K.gguf", &e)) { puts(e.msg); return; }
 *   uint32_t n_layer; gguf_get_u32(&g, "llama.block_count", &n_layer, &e);
 *   const gguf_tensor *t = gguf_find_tensor(&g, "token_embd.weight");
 *   // t->data points into the mapping: t->nbytes bytes of type t->type
 *   gguf_close(&g);
 *
 * Dependency rule: C11 + libc only (used by the runtime).
 */
#ifndef ET_GGUF_H
#define ET_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../common/et.h"

/* KV value types (gguf.md `gguf_metadata_value_type`). */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT
};

/* Tensor element types, numbered as ggml.h `enum ggml_type` (4, 5 and
 * 31..33, 36..38 are removed or repacked-only types: unknown here).  The
 * reader knows the block sizes of all of these; what the engine can
 * compute with is a smaller set (engine/). */
enum ggml_type {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15, GGML_TYPE_IQ2_XXS = 16, GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18, GGML_TYPE_IQ1_S = 19, GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22, GGML_TYPE_IQ4_XS = 23, GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27, GGML_TYPE_F64 = 28, GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30, GGML_TYPE_TQ1_0 = 34, GGML_TYPE_TQ2_0 = 35, GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40
};

/* Name ("F32", "Q4_K", ...) or NULL for a type edgetune does not know. */
const char *ggml_type_name(uint32_t type);
/* Elements per block and bytes per block (F32: 1 and 4; Q8_0: 32 and 34;
 * Q4_K: 256 and 144, ...). Returns 0 on both for an unknown type. */
void ggml_type_block(uint32_t type, uint64_t *block_elems, uint64_t *block_bytes);
/* Bytes of a row of `n` elements, or 0 if n is not a multiple of the block
 * size or the type is unknown. */
uint64_t ggml_row_bytes(uint32_t type, uint64_t n);

/* Bytes of one value of a fixed-size KV type (UINT8 1 ... FLOAT64 8,
 * BOOL 1); 0 for STRING, ARRAY and unknown types. */
uint64_t gguf_type_size(uint32_t type);
/* "UINT8", "STRING", ... or NULL for an unknown KV type. */
const char *gguf_type_name(uint32_t type);

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_STRING (64u << 20) /* longest string value the reader accepts (bytes) */
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64   /* tensor names are < 64 bytes (llama.cpp GGML_MAX_NAME) */

typedef struct gguf_str {
    const char *ptr;  /* points into the mapping; NOT NUL-terminated */
    uint64_t len;     /* bytes */
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    uint32_t type;       /* enum gguf_type */
    uint32_t arr_type;   /* element type when type == GGUF_TYPE_ARRAY */
    uint64_t n;          /* element count (1 for scalars) */
    const uint8_t *data; /* scalar value, or first array element, in the mapping
                          * (little-endian, unaligned: decode with memcpy or the
                          * getters; for strings use strs) */
    gguf_str *strs;      /* for STRING and ARRAY-of-STRING: n strings (owned by gguf_file) */
    uint64_t file_offset;/* byte offset of this KV's key in the file (for messages) */
    const uint8_t *raw;  /* the value exactly as stored (after the u32 type), in the mapping */
    uint64_t raw_len;    /* bytes of raw */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];  /* ne[0] = row length; unused dims are 1 */
    uint32_t type;              /* enum ggml_type */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;            /* size of the data, from type and ne */
    const void *data;           /* points into the mapping */
} gguf_tensor;

typedef struct gguf_file {
    char *path;             /* owned copy, used in messages */
    et_map map;
    uint32_t version;       /* 2 or 3 */
    uint64_t n_kv;
    gguf_kv *kv;            /* [n_kv], in file order */
    uint64_t n_tensors;
    gguf_tensor *tensors;   /* [n_tensors], in file order */
    uint64_t alignment;     /* general.alignment or 32 */
    uint64_t data_offset;   /* absolute byte offset of the data section */
    int owns_map;           /* internal: 1 if gguf_close unmaps `map` */
} gguf_file;

/* Open and validate: every count, string length, array size, tensor
 * shape, type, offset and size is checked against the file size before
 * use; tensor data must lie inside the file and not overlap.  Errors
 * (ET_EINPUT) name the file, the field and the byte offset, e.g.
 * "x.gguf: byte 1234: tensor 3 'blk.0.attn_q.weight': data runs past end of file".
 * On error *g is left closed (nothing to free). */
int gguf_open(gguf_file *g, const char *path, et_err *e);
/* Same, over a caller-owned buffer that must outlive g (for fuzzing/tests). */
int gguf_open_mem(gguf_file *g, const void *data, size_t size, const char *name, et_err *e);
void gguf_close(gguf_file *g);

/* Index of the key, or -1. */
int64_t gguf_find_key(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
/* 1 if the gguf_str equals the NUL-terminated string s. */
int gguf_str_eq(gguf_str a, const char *s);

/* Typed getters.  Return 0, or ET_EINPUT if the key is missing
 * ("<file>: missing key 'llama.block_count'") or has another type.
 * Integer getters accept any integer KV type whose value fits. */
int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, et_err *e);
int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, et_err *e);
int gguf_get_f32(const gguf_file *g, const char *key, float *out, et_err *e);
int gguf_get_bool(const gguf_file *g, const char *key, int *out, et_err *e);
/* Copies a NUL-terminated string (truncating to cap-1 is an error). */
int gguf_get_str(const gguf_file *g, const char *key, char *out, size_t cap, et_err *e);
/* Element i of an integer/float array KV as int64/double; 0 or ET_EINPUT. */
int gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out);
int gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out);

/* ------------------------------------------------------------------ writer */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);          /* NULL on out of memory */
void gguf_writer_free(gguf_writer *w);       /* NULL is fine */
/* Scalars and strings (value copied), GGUF value types as named
 * (gguf.md).  Keys are written in the order they are first set; setting a
 * key again replaces its value in place.  A NULL string value is the empty
 * string.  0, ET_EINPUT (string longer than the reader accepts) or ET_ERUN
 * (out of memory, NULL key, NULL v with len > 0). */
int gguf_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_set_f32(gguf_writer *w, const char *key, float v);
int gguf_set_f64(gguf_writer *w, const char *key, double v);
int gguf_set_bool(gguf_writer *w, const char *key, int v);
int gguf_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_set_strn(gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Array of n fixed-size elements of arr_type (raw little-endian bytes copied).
 * 0, ET_EINPUT (arr_type not a fixed-size type) or ET_ERUN (out of memory,
 * size overflow, NULL data with n > 0). */
int gguf_set_arr(gguf_writer *w, const char *key, uint32_t arr_type, const void *data, uint64_t n);
/* Array of n strings (copied); lens may be NULL for NUL-terminated strings. */
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
/* Copy KV i of an open file verbatim (same type).  0, ET_EINPUT (i >= n_kv)
 * or ET_ERUN (out of memory). */
int gguf_set_kv_from(gguf_writer *w, const gguf_file *g, uint64_t i);
/* Remove a key if present. */
void gguf_remove_key(gguf_writer *w, const char *key);
/* Add a tensor; `data` (nbytes, computed from type and ne) is NOT copied and
 * must stay valid until gguf_writer_write returns.  Returns 0, or ET_EINPUT
 * for a name >= 64 bytes, a duplicate name, a bad shape, or a row length
 * not divisible by the type's block size. Tensors are laid out in the order
 * added, each at a multiple of the alignment (zero padding). */
int gguf_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                    const int64_t *ne, const void *data, et_err *e);
/* Add tensor i of an open file (name, type, shape; data points into g's
 * mapping, so g must stay open until gguf_writer_write returns). */
int gguf_add_tensor_from(gguf_writer *w, const gguf_file *g, uint64_t i, et_err *e);
/* Write the file atomically (temp + fsync + rename). Version 3.
 * The alignment is general.alignment if set (UINT32, a power of two),
 * else 32.  With no tensors nothing follows the last KV (as gguf-py writes
 * vocab-only files; llama.cpp reads both forms).
 * Returns 0 or ET_ERUN/ET_EINPUT with the path in the message. */
int gguf_writer_write(gguf_writer *w, const char *path, et_err *e);

#endif
