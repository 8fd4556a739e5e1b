/* train/gemm_auto.h — `--precision auto`: f32 or bf16 matmuls, chosen by
 * measured speed on the CPU at hand, not by its feature bits.
 *
 * Why: AVX512_BF16 is present on AMD Zen 4 and on Intel Sapphire Rapids
 * alike, but edgetune's bf16 kernel runs at about 2x OpenBLAS's f32 sgemm on
 * the first and at 0.30-0.65x of it on the second (issue 16's measurements),
 * so a choice made from the feature bit makes training slower by default on
 * the most common server CPU.
 *
 * How, in order:
 *  1. without the native bf16 kernel (et_gemm_bf16_native() == 0): f32, not
 *     measured (the portable bf16 path is rounding + sgemm: never faster);
 *  2. a table of the CPU families measured so far (gemm_auto.c cpu_table:
 *     AMD Zen 4 -> bf16, Intel Sapphire Rapids -> f32), from /proc/cpuinfo's
 *     vendor, family and model (ET_CPUINFO names another file, for tests;
 *     ET_GEMM_AUTO=measure skips the table);
 *  3. otherwise a calibration: the training products of the run's own
 *     shapes — the forward X W^T, dX = dY W and dW = dY^T X of an
 *     [n_embd, n_embd] and an [n_ff, n_embd] weight over `rows` = B*T rows
 *     (at most 2048) — are timed in f32 and in bf16, alternating, 5 rounds of
 *     at least 5 ms, at the caller's thread count; bf16 is chosen when its
 *     median rate is at least 1.05x f32's (bf16 rounds the operands, so it
 *     must buy speed).  The result is cached per (CPU model, threads, n_embd,
 *     n_ff, rows) in <cache_dir>/gemm_auto.json, so a CPU model is measured
 *     once per shape (about 0.1-1 s); delete the file to measure again.
 * A calibration on a loaded machine measures the load: the table is there so
 * that known CPUs get a stable answer. */
#ifndef ET_GEMM_AUTO_H
#define ET_GEMM_AUTO_H

#include "../common/et.h"

typedef struct et_gemm_auto {
    int precision;          /* ET_GEMM_F32 or ET_GEMM_BF16 (train/gemm.h) */
    double f32_gflops;      /* median rate of the products in f32, GFLOP/s (0: not measured) */
    double bf16_gflops;     /* the same in bf16 */
    int cached;             /* 1: read from the cache file, 0: measured now or by rule */
    char cpu[128];          /* the CPU model (/proc/cpuinfo "model name"), or "unknown" */
    char why[1500];         /* one line for the run's first line */
} et_gemm_auto;

/* The default cache folder: $ET_CACHE_DIR, else $XDG_CACHE_HOME/edgetune,
 * else $HOME/.cache/edgetune, else NULL (no cache: measure every time). */
const char *et_gemm_auto_cache_dir(void);

/* Choose the matmul precision for a run of a model with n_embd, n_ff over
 * rows = B*T rows per micro-batch at n_threads threads (used only as part of
 * the cache key: the caller has set OpenMP's/OpenBLAS's thread count).
 * cache_dir NULL: measure, cache nothing.  A cache file that cannot be read
 * or parsed (or is hostile) is ignored and rewritten; failing to write it is
 * not an error (the choice is still made).  0, ET_EUSAGE (sizes < 1) or
 * ET_ERUN (out of memory). */
int et_gemm_auto_choose(int n_embd, int n_ff, int rows, int n_threads, const char *cache_dir, et_gemm_auto *out,
                        et_err *e);

#endif
