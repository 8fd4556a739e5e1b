/* train/sgemm_omp.h — f32 GEMM for small products: OpenBLAS single-threaded
 * on each OpenMP thread, over disjoint row (or column) blocks of C.
 *
 * Why: a GEMM of a tiny model (stories260K: [1024, 64] x [64, 172], a few
 * tens of microseconds) costs OpenBLAS's threaded path more in handing the
 * work to its worker threads than in arithmetic, and those workers then spin
 * in sched_yield for ~0.1 s after every call (perf: a third of the cycles of
 * a stories260K step), holding the cores the OpenMP ops need.  Splitting C
 * into one block per OpenMP thread, each an ordinary single-threaded
 * cblas_sgemm, keeps all the parallel work in the one (OpenMP) pool.
 * Every element of C is still computed by one sgemm over the whole K; but
 * OpenBLAS picks its kernel (e.g. its small-matrix path) by the shape of
 * each block, so a split can change the summation order: measured, about 1
 * random shape in 20 (M, N, K < 300) gives different bits at 1 and 2
 * threads.  et_gemm sends the small products to its own AVX-512F kernel
 * when the CPU has one (train/gemm.h, et_gemm_f32_native), which is
 * bit-identical at any thread count.
 * Products above ET_SGEMM_OMP_MAX_WORK multiply-adds go to cblas_sgemm
 * unchanged (OpenBLAS's own threading, which packs B once for all threads,
 * wins there).
 *
 * Layout as cblas_sgemm in row-major order:
 *   C[M, N] = alpha * op(A) @ op(B) + beta * C
 *   op(A) [M, K]: A stored [M, K] (lda >= K) or, trans_a != 0, [K, M] (lda >= M)
 *   op(B) [K, N]: B stored [K, N] (ldb >= N) or, trans_b != 0, [N, K] (ldb >= K)
 * beta == 0 does not read C.  No error return (M or N < 1: nothing to do).
 * Call from outside any OpenMP region (DESIGN §2); it opens its own.
 * Changes OpenBLAS's thread count while it runs (openblas_set_num_threads)
 * and restores it: not to be called concurrently with other BLAS calls. */
#ifndef ET_SGEMM_OMP_H
#define ET_SGEMM_OMP_H

/* M * N * K above this: plain (threaded) cblas_sgemm. */
#define ET_SGEMM_OMP_MAX_WORK ((double)(1 << 26))

void et_sgemm_omp(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

#endif
