/* train/gemm_f32_x86.c — the AVX-512F f32 GEMM for small products behind
 * et_gemm (train/gemm.h, ET_GEMM_F32).
 *
 * Made for the GEMMs of a tiny model's training step (stories260K, batch
 * 1024 tokens: [1024, 64] x [64, 64..512], [1024, 172] x [172, 64], and the
 * weight gradients X^T dY with K = 1024), where OpenBLAS spends much of its
 * time copying panels and clearing C around a few microseconds of work.
 *
 * The microkernel keeps a tile of up to MR x NR = 12 x 32 of C in 24 zmm
 * accumulators (two zmm of 16 f32 per row) and runs the whole K in one
 * chain of vfmadd231ps per accumulator (Intel SDM, "VFMADD231PS"):
 *   acc[i][j] = fma(a(i, k), b(k, j), acc[i][j])   for k = 0, 1, ..., K-1
 *   C[i][j]   = alpha * acc[i][j]   (+ beta * C[i][j] when beta != 0)
 * The a(i, k) are broadcast straight from A (no packing: A is read where it
 * lies, a row of A (trans_a 0) or a row of A^T (trans_a 1) at a time); the
 * b(k, j0 .. j0+31) are two vector loads from a k-major B: B itself when
 * trans_b is 0, else a copy of B^T that each thread packs for itself (its
 * columns, in panels of [K][32]) so that it reads it from its own cache.
 * The structure follows the register-tile idea of BLIS (Van Zee & van de
 * Geijn, ACM TOMS 2015) without its cache blocking: these operands fit in
 * L2, and keeping K whole is what makes the results independent of the
 * tiling: every element of C is one FMA chain over k = 0 .. K-1 in order,
 * whatever tile (or thread) computes it, so results do not depend on the
 * number of threads.  Tiles of fewer rows or columns (tails) use the same
 * chain with fewer accumulators (masked loads and stores in N).
 *
 * Only the functions marked ET_TARGET use AVX-512 instructions; they are
 * reached only after et_gemm_x86_f32_available() said yes, so this file
 * builds with the project's portable flags.  The OpenMP region is in a
 * plain function that calls the ET_TARGET helpers. */
#include "gemm_kernel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <omp.h>
#include <stddef.h>

#include "x86_avx512.h"

#define ET_TARGET __attribute__((target("avx512f"), noinline))
#define ET_INLINE static inline __attribute__((always_inline, target("avx512f")))

enum {
    MR = 12, /* rows of the largest tile */
    NR = 32  /* columns: two zmm of 16 f32 */
};

/* Below this many multiply-adds one thread does it all (a parallel region
 * costs more than the product), as train/sgemm_omp.c. */
#define SERIAL_WORK ((double)(1 << 16))

int et_gemm_x86_f32_available(void) { return (et_cpu_x86_features() & ET_X86_AVX512F) != 0; }


/* One tile: C[MV, nv] (ldc) = alpha * op(A)[MV, K] op(B)[K, nv] + beta C,
 * nv <= 16 * NV.  a(i, k) = a[i * lda + k] (TA 0) or a[k * lda + i] (TA 1);
 * b(k, j) = b[k * ldb + j], loaded with masks (nothing read beyond nv). */
ET_INLINE void tile_body(const int MV, const int NV, const int TA, int K, const float *a, size_t lda,
                         const float *b, size_t ldb, int nv, float *c, size_t ldc, float alpha, float beta) {
    __m512 acc[MR][2];
    const __mmask16 m0 = mask16(nv), m1 = mask16(nv - 16);
#pragma GCC unroll 12
    for (int i = 0; i < MV; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *bk = b + (size_t)k * ldb;
        const __m512 b0 = NV == 2 ? _mm512_loadu_ps(bk) : _mm512_maskz_loadu_ps(m0, bk); /* NV 2: nv > 16 */
        const __m512 b1 = NV == 2 ? _mm512_maskz_loadu_ps(m1, bk + 16) : _mm512_setzero_ps();
        const float *ak = TA ? a + (size_t)k * lda : a + k;
#pragma GCC unroll 12
        for (int i = 0; i < MV; i++) {
            const __m512 av = _mm512_set1_ps(TA ? ak[i] : ak[(size_t)i * lda]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            if (NV == 2) acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    store_tile(MV, NV, acc, c, ldc, alpha, beta, m0, m1);
}

/* tile_body with its shape as constants: mv 1..MR rows, nv 1..NR columns. */
ET_TARGET static void tile(int ta, int mv, int K, const float *a, size_t lda, const float *b, size_t ldb, int nv,
                           float *c, size_t ldc, float alpha, float beta) {
    const int nv2 = nv > 16;
#define ET_TILE_CASE(R)                                                                     \
    case R:                                                                                 \
        if (ta && nv2) tile_body(R, 2, 1, K, a, lda, b, ldb, nv, c, ldc, alpha, beta);      \
        else if (ta) tile_body(R, 1, 1, K, a, lda, b, ldb, nv, c, ldc, alpha, beta);        \
        else if (nv2) tile_body(R, 2, 0, K, a, lda, b, ldb, nv, c, ldc, alpha, beta);       \
        else tile_body(R, 1, 0, K, a, lda, b, ldb, nv, c, ldc, alpha, beta);                \
        break;
    switch (mv) {
        ET_TILE_CASE(1) ET_TILE_CASE(2) ET_TILE_CASE(3) ET_TILE_CASE(4) ET_TILE_CASE(5) ET_TILE_CASE(6)
        ET_TILE_CASE(7) ET_TILE_CASE(8) ET_TILE_CASE(9) ET_TILE_CASE(10) ET_TILE_CASE(11) ET_TILE_CASE(12)
    default: break;
    }
#undef ET_TILE_CASE
}

/* Columns n0 .. n1 of op(B) = B^T, packed k-major in panels of NR columns
 * (so that a tile's panel is one contiguous K x NR block, whatever N: a
 * row stride of a power of two would put the panel's rows in a few L1 sets):
 *   bp[q * K * NR + k * NR + j] = B[(n0 + q * NR + j) * ldb + k]
 * for n0 + q * NR + j < n1, zero up to the next multiple of 16 (the rest of
 * a last panel is not written and never read: tiles load it masked).
 * 16 x 16 blocks, transposed in registers. */
ET_TARGET static void pack_bt(int n0, int n1, int K, const float *B, size_t ldb, float *bp) {
    for (int j0 = n0; j0 < n1; j0 += 16) {
        float *dst = bp + (size_t)((j0 - n0) / NR) * K * NR + (j0 - n0) % NR;
        for (int k0 = 0; k0 < K; k0 += 16) {
            const int kn = K - k0 < 16 ? K - k0 : 16;
            const __mmask16 m = mask16(kn);
            __m512 r[16];
            for (int a = 0; a < 16; a++)
                r[a] = j0 + a < n1 ? _mm512_maskz_loadu_ps(m, B + (size_t)(j0 + a) * ldb + k0) : _mm512_setzero_ps();
            transpose16_ps(r);
            for (int t = 0; t < kn; t++) _mm512_storeu_ps(dst + (size_t)(k0 + t) * NR, r[t]);
        }
    }
}

/* The operands of one call. */
typedef struct job {
    int ta, tb, K;
    const float *A, *B;
    size_t lda, ldb, ldc;
    float *C, alpha, beta;
} job;

/* C[m0..m1, n0..n1] on the calling thread: row tiles of at most MR rows
 * (as even as possible), each across the columns in panels of NR.  With
 * trans_b, first packs op(B)[:, n0..n1] into bt (n0 a multiple of NR), so
 * that each thread reads a copy in its own cache. */
static void run_block(const job *J, int m0, int m1, int n0, int n1, float *bt) {
    const float *b = J->B;
    size_t ldb = J->ldb;
    if (J->tb) {
        pack_bt(n0, n1, J->K, J->B, J->ldb, bt);
        b = bt;
        ldb = NR;
    }
    const size_t pstride = (size_t)J->K * NR;
    const int rows = m1 - m0, nt = (rows + MR - 1) / MR;
    for (int t = 0, i0 = m0; t < nt; t++) {
        const int mv = rows / nt + (t < rows % nt);
        const float *a = J->ta ? J->A + i0 : J->A + (size_t)i0 * J->lda;
        for (int j0 = n0; j0 < n1; j0 += NR)
            tile(J->ta, mv, J->K, a, J->lda, J->tb ? b + (size_t)((j0 - n0) / NR) * pstride : b + j0, ldb,
                 n1 - j0 < NR ? n1 - j0 : NR, J->C + (size_t)i0 * J->ldc + j0, J->ldc, J->alpha, J->beta);
        i0 += mv;
    }
}

int et_gemm_x86_f32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    const job J = {trans_a, trans_b, K, A, B, (size_t)lda, (size_t)ldb, (size_t)ldc, C, alpha, beta};
    int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((double)M * N * K <= SERIAL_WORK || nth < 1) nth = 1;
    /* Rows split between the threads (as evenly as possible) when there
     * are enough of them, else columns in multiples of NR; either way each
     * element of C is one chain over the whole K (see the top of the file).
     * With trans_b a row split has every thread pack all of op(B): only
     * from 64 rows per thread (packing then costs at most a quarter of the
     * FMAs, and all the copies together at most 2^20 floats, as M N K <=
     * 2^26 is the caller's rule). */
    const int by_rows = M >= (trans_b ? 64 : 8) * nth;
    if (by_rows && nth > (M + 3) / 4) nth = (M + 3) / 4;
    if (!by_rows && nth > (N + NR - 1) / NR) nth = (N + NR - 1) / NR;
    if (nth < 1) nth = 1;
    const int cols = by_rows ? N : ((N + nth - 1) / nth + NR - 1) / NR * NR;
    /* trans_b: one packed op(B) per thread (its columns), each written and
     * read by its own thread; 64-byte aligned slices of one buffer */
    const size_t slice = trans_b ? ((size_t)(cols + NR - 1) / NR * K * NR + 15) & ~(size_t)15 : 0;
    float *bt = NULL;
    if (trans_b && !(bt = et_gemm_x86_scratch((size_t)nth * slice * sizeof(float)))) return -1;
    if (nth < 2) {
        run_block(&J, 0, M, 0, N, bt);
        return 0;
    }
    #pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int t = 0; t < nth; t++) {
        float *bt_t = bt ? bt + (size_t)t * slice : NULL;
        if (by_rows)
            run_block(&J, (int)((long)M * t / nth), (int)((long)M * (t + 1) / nth), 0, N, bt_t);
        else if (t * cols < N)
            run_block(&J, 0, M, t * cols, (t + 1) * cols < N ? (t + 1) * cols : N, bt_t);
    }
    return 0;
}

#else /* not x86-64: no native kernel */

int et_gemm_x86_f32_available(void) { return 0; }

int et_gemm_x86_f32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
    (void)B; (void)ldb; (void)beta; (void)C; (void)ldc;
    return -1;
}

#endif
