/* train/gemm_bf16s_x86.c — the AVX512_BF16 GEMM for small products behind
 * et_gemm in bf16 (train/gemm.h, ET_GEMM_BF16) and et_gemm_bf16w.
 *
 * The bf16 twin of train/gemm_f32_x86.c, for the GEMMs of a tiny model's
 * training step (stories260K, batch 1024 tokens: [1024, 64] x [64, 32..512],
 * dx with K = 64..512, the weight gradients X^T dY with K = 1024), where the
 * blocked kernel of train/gemm_x86.c (made for SmolLM2) spends its time in
 * blocking and packing around a few microseconds of work.
 *
 * Per call, each thread rounds what it needs to bf16 pairs once (Intel SDM,
 * "VDPBF16PS": lane l of a 32-bit pair vector holds (x[2p], x[2p+1])):
 *   op(A) rows m0 .. m1:   ta 0: ap[i][p]  (row i's k pairs contiguous)
 *                          ta 1: ap[p][i]  (two rows of A^T, paired lane-wise)
 *   op(B) columns n0 .. n1: panels of [K/2][32] pairs (train/gemm_x86.c's
 *                          et_gemm_x86_bf16_pack_b), zero beyond N and K
 * (K odd: the last pair's second half is zero).  The microkernel keeps a
 * tile of up to MR x NR = 12 x 32 of C in 24 zmm accumulators and runs the
 * whole K in one chain of vdpbf16ps per accumulator:
 *   acc[i][j] += a(i, 2p) b(2p, j) + a(i, 2p+1) b(2p+1, j)   p = 0 .. ceil(K/2)-1
 *   C[i][j]    = alpha * acc[i][j]   (+ beta * C[i][j] when beta != 0)
 * with a(i, 2p..2p+1) one 32-bit broadcast and b two vector loads.  Every
 * element of C is one chain over the k pairs in order whatever tile or
 * thread computes it, so results do not depend on the number of threads.
 * Rounding is train/gemm_bf16_x86.h's, bit-identical to et_fp32_to_bf16;
 * vdpbf16ps treats subnormal inputs as zero (as gemm.h says).
 *
 * Only the functions marked ET_TARGET use AVX-512 instructions; they are
 * reached only after et_gemm_x86_bf16_available() said yes.  The OpenMP
 * region is in a plain function that calls them. */
#include "gemm_kernel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <omp.h>

#include "gemm_bf16_x86.h"

#define ET_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), noinline))
#define ET_INLINE static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))

enum {
    MR = 12, /* rows of the largest tile */
    NR = 32  /* columns: two zmm of 16 f32 (the panel width of et_gemm_x86_bf16_pack_b) */
};

/* Below this many multiply-adds one thread does it all, as gemm_f32_x86.c. */
#define SERIAL_WORK ((double)(1 << 16))

/* One tile: C[MV, nv] (ldc) = alpha * a[MV, 2 KP] b[2 KP, nv] + beta C,
 * nv <= 16 * NV.  Pair p of row i: a[i * lda + p] (TA 0) or a[p * lda + i]
 * (TA 1); b a panel of [KP][NR] pairs. */
ET_INLINE void tile_body(const int MV, const int NV, const int TA, int KP, const uint32_t *a, size_t lda,
                         const uint32_t *b, int nv, float *c, size_t ldc, float alpha, float beta) {
    __m512 acc[MR][2];
    const __mmask16 m0 = mask16(nv), m1 = mask16(nv - 16);
#pragma GCC unroll 12
    for (int i = 0; i < MV; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < KP; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR);
        const __m512bh b1 = NV == 2 ? (__m512bh)_mm512_loadu_si512(b + (size_t)p * NR + 16) : b0;
        const uint32_t *ap = TA ? a + (size_t)p * lda : a + p;
#pragma GCC unroll 12
        for (int i = 0; i < MV; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)(TA ? ap[i] : ap[(size_t)i * lda]));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            if (NV == 2) acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    store_tile(MV, NV, acc, c, ldc, alpha, beta, m0, m1);
}

/* tile_body with its shape as constants: mv 1..MR rows, nv 1..NR columns. */
ET_TARGET static void tile(int ta, int mv, int KP, const uint32_t *a, size_t lda, const uint32_t *b, int nv,
                           float *c, size_t ldc, float alpha, float beta) {
    const int nv2 = nv > 16;
#define ET_TILE_CASE(R)                                                                 \
    case R:                                                                             \
        if (ta && nv2) tile_body(R, 2, 1, KP, a, lda, b, nv, c, ldc, alpha, beta);      \
        else if (ta) tile_body(R, 1, 1, KP, a, lda, b, nv, c, ldc, alpha, beta);        \
        else if (nv2) tile_body(R, 2, 0, KP, a, lda, b, nv, c, ldc, alpha, beta);       \
        else tile_body(R, 1, 0, KP, a, lda, b, nv, c, ldc, alpha, beta);                \
        break;
    switch (mv) {
        ET_TILE_CASE(1) ET_TILE_CASE(2) ET_TILE_CASE(3) ET_TILE_CASE(4) ET_TILE_CASE(5) ET_TILE_CASE(6)
        ET_TILE_CASE(7) ET_TILE_CASE(8) ET_TILE_CASE(9) ET_TILE_CASE(10) ET_TILE_CASE(11) ET_TILE_CASE(12)
    default: break;
    }
#undef ET_TILE_CASE
}

/* Rows m0 .. m1 of op(A) as bf16 pairs (K odd: the last pair's second half
 * zero), KP = ceil(K / 2) pairs per row:
 *   ta 0 (op(A)(i, k) = A[i * lda + k]): ap[(i - m0) * KP + p]
 *   ta 1 (op(A)(i, k) = A[k * lda + i]): ap[p * (m1 - m0) + (i - m0)] */
ET_TARGET static void pack_a(int ta, int m0, int m1, int K, const float *A, size_t lda, uint32_t *ap) {
    const int KP = (K + 1) / 2, rows = m1 - m0;
    if (!ta) {
        for (int i = 0; i < rows; i++) {
            const float *src = A + (size_t)(m0 + i) * lda;
            uint32_t *dst = ap + (size_t)i * KP;
            if (i + ET_BF16_PF_ROWS / 2 < rows && (size_t)K * sizeof(float) <= ET_BF16_PF_MAX_BYTES)
                prefetch_bytes(src + ET_BF16_PF_ROWS / 2 * lda, (size_t)K * sizeof(float));
            for (int p0 = 0; p0 < KP; p0 += 16) {
                const int left = K - 2 * p0;
                const __m512 x0 = _mm512_maskz_loadu_ps(mask16(left), src + 2 * p0);
                const __m512 x1 = _mm512_maskz_loadu_ps(mask16(left - 16), src + 2 * p0 + 16);
                _mm512_mask_storeu_epi32(dst + p0, mask16(KP - p0), pair_adjacent(x0, x1));
            }
        }
        return;
    }
    for (int p = 0; p < KP; p++) {
        const float *r0 = A + (size_t)(2 * p) * lda + m0, *r1 = r0 + lda;
        const int has1 = 2 * p + 1 < K;
        uint32_t *dst = ap + (size_t)p * rows;
        if (2 * p + ET_BF16_PF_ROWS + 1 < K && (size_t)rows * sizeof(float) <= ET_BF16_PF_MAX_BYTES) {
            prefetch_bytes(r0 + ET_BF16_PF_ROWS * lda, (size_t)rows * sizeof(float));
            prefetch_bytes(r1 + ET_BF16_PF_ROWS * lda, (size_t)rows * sizeof(float));
        }
        for (int i0 = 0; i0 < rows; i0 += 16) {
            const __mmask16 m = mask16(rows - i0);
            const __m512 lo = _mm512_maskz_loadu_ps(m, r0 + i0);
            const __m512 hi = has1 ? _mm512_maskz_loadu_ps(m, r1 + i0) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(dst + i0, m, pair_lanes(lo, hi));
        }
    }
}

/* The operands of one call. */
typedef struct job {
    int ta, tb, K, ldb;
    const float *A, *Bf;
    const uint16_t *Bh;
    size_t lda, ldc;
    float *C, alpha, beta;
} job;

/* C[m0..m1, n0..n1] on the calling thread: packs op(A)'s rows into ap and
 * op(B)'s columns into bp, then row tiles of at most MR rows (as even as
 * possible), each across the column panels. */
static void run_block(const job *J, int m0, int m1, int n0, int n1, uint32_t *ap, uint32_t *bp) {
    const int KP = (J->K + 1) / 2, rows = m1 - m0, nt = (rows + MR - 1) / MR;
    pack_a(J->ta, m0, m1, J->K, J->A, J->lda, ap);
    et_gemm_x86_bf16_pack_b(J->tb, J->Bf, J->Bh, J->ldb, 0, J->K, n0, n1 - n0, (uint16_t *)bp);
    const size_t pstride = (size_t)KP * NR, alda = J->ta ? (size_t)rows : (size_t)KP;
    for (int t = 0, i = 0; t < nt; t++) {
        const int mv = rows / nt + (t < rows % nt);
        const uint32_t *a = J->ta ? ap + i : ap + (size_t)i * KP;
        for (int j0 = n0; j0 < n1; j0 += NR)
            tile(J->ta, mv, KP, a, alda, bp + (size_t)((j0 - n0) / NR) * pstride, n1 - j0 < NR ? n1 - j0 : NR,
                 J->C + (size_t)(m0 + i) * J->ldc + j0, J->ldc, J->alpha, J->beta);
        i += mv;
    }
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

int et_gemm_x86_bf16s(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                      float beta, float *C, int ldc) {
    const job J = {trans_a, trans_b, K, ldb, A, Bf, Bh, (size_t)lda, (size_t)ldc, C, alpha, beta};
    int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((double)M * N * K <= SERIAL_WORK || nth < 1) nth = 1;
    /* Rows split between the threads (as evenly as possible) from 64 rows
     * per thread (each thread then packs all of op(B): K N pairs, at most a
     * 64th of its multiply-adds), else columns in multiples of NR (each
     * thread packs all of op(A)).  Either way each element of C is one
     * chain over the whole K (see the top of the file). */
    const int by_rows = M >= 64 * nth;
    if (!by_rows && nth > (N + NR - 1) / NR) nth = (N + NR - 1) / NR;
    if (nth < 1) nth = 1;
    const int KP = (K + 1) / 2;
    const int rows = by_rows ? (M + nth - 1) / nth : M;
    const int cols = by_rows ? N : ((N + nth - 1) / nth + NR - 1) / NR * NR;
    /* per thread: its rows of op(A), then its column panels of op(B);
     * 64-byte aligned slices of one buffer, each used by its own thread */
    const size_t a_len = round16((size_t)rows * KP), slice = a_len + round16((size_t)(cols + NR - 1) / NR * KP * NR);
    uint32_t *buf = et_gemm_x86_scratch((size_t)nth * slice * sizeof(uint32_t));
    if (!buf) return -1;
    if (nth < 2) {
        run_block(&J, 0, M, 0, N, buf, buf + a_len);
        return 0;
    }
    #pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int t = 0; t < nth; t++) {
        uint32_t *ap = buf + (size_t)t * slice, *bp = ap + a_len;
        if (by_rows)
            run_block(&J, (int)((long)M * t / nth), (int)((long)M * (t + 1) / nth), 0, N, ap, bp);
        else if (t * cols < N)
            run_block(&J, 0, M, t * cols, (t + 1) * cols < N ? (t + 1) * cols : N, ap, bp);
    }
    return 0;
}

#else /* not x86-64: no native kernel */

int et_gemm_x86_bf16s(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                      float beta, float *C, int ldc) {
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
    (void)Bf; (void)Bh; (void)ldb; (void)beta; (void)C; (void)ldc;
    return -1;
}

#endif
