/* common/et.h — errors, atomic output files, read-only file mapping, half floats.
 *
 * Every edgetune function that can fail returns 0 on success or one of the
 * ET_E* codes below, and fills an et_err (which may be NULL) with a message
 * that names the file and what is wrong.  The library never calls exit().
 *
 *   et_err e = {0};
 *   et_map m;
 *   if (et_map_open(&m, "model.gguf", &e)) { fprintf(stderr, "%s\n", e.msg); return e.code; }
 *
 * The codes double as the command-line exit codes (DESIGN §5):
 * 1 usage, 2 bad input, 3 failure during the run (I/O, NaN, out of memory),
 * 4 a check that ran and failed (edgetune gate).
 * This folder is C11 + libc only, so the dependency-free runtime may use it.
 */
#ifndef ET_COMMON_H
#define ET_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The version written into every eval result and recipe. */
#define ET_VERSION "0.4.0-dev"

/* ET_ECHECK: a check that ran and failed (`edgetune gate`, a threshold). */
enum { ET_OK = 0, ET_EUSAGE = 1, ET_EINPUT = 2, ET_ERUN = 3, ET_ECHECK = 4 };

typedef struct et_err {
    int code;        /* ET_E*, 0 when no error was recorded */
    char msg[1024];  /* human-readable, names the file and the problem */
} et_err;

/* Record an error (printf-style) in e (may be NULL); returns code, so that
 * callers can write `return et_fail(e, ET_EINPUT, "%s: truncated", path);`. */
int et_fail(et_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- read-only whole-file mapping (mmap; falls back to read for pipes) ---- */
typedef struct et_map {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;         /* bytes */
    int is_mmap;         /* internal: 1 if data came from mmap, 0 if malloc */
} et_map;

/* 1 when path names an HDF5 file by its extension (".h5", ".hdf5"): such a
 * path is never read as text (a file named tokens.h5 without the HDF5
 * signature is refused by the readers that also take text). */
int et_is_h5_name(const char *path);
/* 1 when path is a regular file or a directory; 0 for a FIFO, socket or
 * device (which cannot be sniffed and then mapped), or when stat fails. */
int et_is_regular_path(const char *path);

/* The rule for inputs that are not regular files (FIFOs, character devices),
 * shared by every reader (docs/guide.md, "Inputs from pipes"):
 *  - readers that take their input whole (et_map_open: GGUF models in
 *    run/perplexity/eval/edgerun, text, JSON, tokenizers) read a FIFO into
 *    memory.  The FIFO is opened with O_NONBLOCK (an open never waits for a
 *    writer), then waited on for at most et_fifo_wait_s() seconds; if no
 *    writer has come by then the read fails with a message saying so
 *    (ET_EINPUT), else O_NONBLOCK is cleared and the data read to its end;
 *  - readers that seek (HDF5: tokens.h5, teacher logits, checkpoints) and
 *    those that sniff a file's first bytes before choosing a parser (the
 *    export loaders: convert, train, lora, merge...) refuse a non-regular
 *    file by its stat() alone, never opening it (et_need_regular);
 *  - a file is opened at most once: a second open of a FIFO would wait for a
 *    writer that has already gone. */

/* Seconds a reader waits for a FIFO's writer: $ET_FIFO_WAIT_S if set to a
 * number in [0, 86400], else 10. */
int et_fifo_wait_s(void);

/* 0 when path is a regular file; else ET_EINPUT naming path and why a
 * regular file is needed (`why`, e.g. "HDF5 files are read by seeking"), or
 * the open error (no such file...).  Uses stat() only: a FIFO is never opened. */
int et_need_regular(const char *path, const char *why, et_err *e);

/* Copy up to n first bytes of the regular file path into buf; returns how
 * many were read (0 when path is missing, unreadable or not a regular file:
 * sniffing a FIFO would eat its first bytes, so it is never opened). */
size_t et_sniff(const char *path, void *buf, size_t n);
/* 1 when path is a regular file starting with the HDF5 signature
 * (\x89HDF\r\n\x1a\n, HDF5 File Format Specification §II.A). */
int et_sniff_hdf5(const char *path);

/* Map `path` read-only (a regular file), or read a FIFO/device into memory
 * (the rule above).  Returns 0, ET_EINPUT (cannot open/stat/map/read, a FIFO
 * with no writer) or ET_ERUN (out of memory). */
int et_map_open(et_map *m, const char *path, et_err *e);
/* Unmap (or free) and zero m; safe on a zeroed or already closed map. */
void et_map_close(et_map *m);

/* ---- atomic output: write to "<path>.tmp.<pid>", fsync, rename ---- */
typedef struct et_afile {
    FILE *f;            /* write through this */
    char *path;         /* final path */
    char *tmp;          /* temporary path in the same directory */
} et_afile;

/* Open a temporary file beside `path`. Returns 0 or ET_ERUN. */
int et_afile_open(et_afile *a, const char *path, et_err *e);
/* Flush, fsync and rename into place; frees `a`. Returns 0 or ET_ERUN
 * (the temporary file is removed and `path` is left untouched). */
int et_afile_commit(et_afile *a, et_err *e);
/* Remove the temporary file; `path` is left untouched. Safe to call twice. */
void et_afile_abort(et_afile *a);
/* Write text (NUL-terminated) to path atomically (tmp + fsync + rename).  0 or ET_ERUN. */
int et_write_text(const char *path, const char *text, et_err *e);
/* fsync+rename an already-written temporary file `tmp` onto `path`
 * (for writers such as HDF5 that open files by name). 0 or ET_ERUN. */
int et_commit_tmp(const char *tmp, const char *path, et_err *e);

/* ---- IEEE half and bfloat16 (bit-exact with ggml's reference conversions) ---- */
/* fp32 -> fp16, round to nearest even; NaN stays NaN, overflow -> inf. */
uint16_t et_fp32_to_fp16(float f);
/* fp16 bits -> fp32, exact (subnormals, inf and NaN kept; ggml_compute_fp16_to_fp32). */
float et_fp16_to_fp32(uint16_t h);
/* fp32 -> bf16, round to nearest even (ggml_compute_fp32_to_bf16); NaN quieted. */
uint16_t et_fp32_to_bf16(float f);
/* bf16 bits -> fp32, exact (the 16 bits become the high half; ggml_compute_bf16_to_fp32). */
float et_bf16_to_fp32(uint16_t h);

/* ---- SHA-256 (FIPS 180-4), for tokenizer fingerprints ---- */
typedef struct et_sha256 { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t nbuf; } et_sha256;
/* Start a digest (FIPS 180-4 §5.3.3 initial hash value). */
void et_sha256_init(et_sha256 *s);
/* Hash n more bytes of data (any n, any number of calls). */
void et_sha256_update(et_sha256 *s, const void *data, size_t n);
/* Writes 64 lowercase hex digits and a NUL into hex[65]. */
void et_sha256_final_hex(et_sha256 *s, char hex[65]);

/* ---- xoshiro256** and splitmix64 (Blackman & Vigna, "Scrambled linear
 * pseudorandom number generators", ACM TOMS 2021; prng.di.unimi.it) ----
 * The one copy of the generator step, shared by the trainer (train/rng.h,
 * et_xoshiro) and the runtime's sampler (engine/engine.h, et_rng). */
/* splitmix64: advance *x by the golden-ratio increment and return the mixed
 * 64-bit output (used to expand one seed into xoshiro's four state words). */
uint64_t et_splitmix64(uint64_t *x);
/* One xoshiro256** step on the state s[4] (updated in place); returns the
 * next 64 random bits.  A state of all zeros stays all zeros. */
uint64_t et_xoshiro256ss(uint64_t s[4]);

/* The one rule for size flags given as 0 (issue 11), in every command:
 * 0 means "automatic", the same choice as leaving the flag out where its
 * default is automatic, and is refused where a flag has no automatic value
 * (`data --pack --seq-len`, which must equal the training's):
 *   --threads 0   et_auto_threads() (training commands: OpenMP's and
 *                 OpenBLAS's own default, the same count);
 *   --ctx 0       the model's context, at most 4096 (run, perplexity, eval,
 *                 logits, imatrix, edgerun -c 0);
 *   --seq-len 0   the model's context, at most 256 (train, lora, distill, prune).
 * et_auto_threads: $OMP_NUM_THREADS if it is a number >= 1, else the online
 * CPUs (sysconf), within [1, 256]. */
int et_auto_threads(void);

/* Path of the shared data folder: $ET_SHARED if set, else "../shared". */
const char *et_shared_dir(void);

/* Seconds on the monotonic clock (CLOCK_MONOTONIC), for durations. */
double et_now_s(void);

#endif
