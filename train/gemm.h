/* train/gemm.h — matrix products for training: f32 (OpenBLAS) or bf16
 * mixed precision (bf16 operands, f32 products and accumulation).
 *
 * Both functions are drop-in for cblas_sgemm in row-major order:
 *   C[M, N] = alpha * op(A) @ op(B) + beta * C
 *   op(A) [M, K]: A stored [M, K] (lda >= K) or, trans_a != 0, [K, M] (lda >= M)
 *   op(B) [K, N]: B stored [K, N] (ldb >= N) or, trans_b != 0, [N, K] (ldb >= K)
 *   C stored [M, N] with ldc >= N.  beta == 0 does not read C (as BLAS).
 *
 * ET_GEMM_BF16 is the "bf16 autocast" of mixed-precision training (PyTorch
 * torch.autocast(dtype=torch.bfloat16); Kalamkar et al. 2019, "A Study of
 * BFLOAT16 for Deep Learning Training"): every element of A and B is rounded
 * to bfloat16 (round to nearest even, as et_fp32_to_bf16), the products of
 * two bf16 numbers are exact in f32, and the sums are accumulated in f32.
 * On x86-64 CPUs with AVX512_BF16 (CPUID leaf 7.1 EAX bit 5) this runs on
 * vdpbf16ps (twice the f32 FMA rate); elsewhere the rounded operands go to
 * cblas_sgemm, so every machine computes the same bf16 math up to the order
 * of the f32 additions.  The AVX512_BF16 path treats f32 inputs below 2^-126
 * in magnitude (subnormals) as zero, as vcvtne2ps2bf16/vdpbf16ps do.
 *
 * Threads: the bf16 and f32 kernels open their own OpenMP region
 * (omp_get_max_threads() threads) from the calling thread; the OpenBLAS f32
 * path calls OpenBLAS from the calling thread (small products: once per
 * OpenMP thread, train/sgemm_omp.h).  Never call either from inside an
 * OpenMP parallel region (DESIGN §2).
 * Memory: packing buffers are malloc'ed per call (a few hundred KB); when
 * that fails the call still completes on a slow path that needs none.
 */
#ifndef ET_GEMM_H
#define ET_GEMM_H

#include <stdint.h>

enum { ET_GEMM_F32 = 0, ET_GEMM_BF16 = 1 };

/* C = alpha op(A) op(B) + beta C as described above, in `precision`
 * (ET_GEMM_F32: small products on the AVX-512F kernel when the CPU has it
 * (et_gemm_f32_native), else and for large ones cblas_sgemm, small products
 * split over the OpenMP threads by train/sgemm_omp.h; ET_GEMM_BF16: bf16
 * operands).
 * Returns 0, or ET_EINPUT (nothing computed) for an unknown precision,
 * negative sizes or a leading dimension smaller than its row. */
int et_gemm(int precision, int trans_a, int trans_b, int M, int N, int K,
            float alpha, const float *A, int lda, const float *B, int ldb,
            float beta, float *C, int ldc);

/* The same product with B already in bf16 (raw bfloat16 bits, e.g. a frozen
 * base weight stored as BF16): A is rounded to bf16, B used as is (exact).
 * Layout and return values as et_gemm. */
int et_gemm_bf16w(int trans_a, int trans_b, int M, int N, int K,
                  float alpha, const float *A, int lda, const uint16_t *B, int ldb,
                  float beta, float *C, int ldc);

/* 1 when the bf16 kernel (AVX512_BF16) runs on this machine, 0 when the
 * portable path (rounding + cblas_sgemm) does. */
int et_gemm_bf16_native(void);

/* Tests and benchmarks: force the portable bf16 path (on != 0) or allow the
 * native kernel again (on == 0).  Not thread-safe against running GEMMs. */
void et_gemm_force_portable(int on);

/* Tests and benchmarks: send every native bf16 product to the blocked
 * AVX512_BF16 kernel (train/gemm_x86.c; on != 0) or let products up to
 * ET_SGEMM_OMP_MAX_WORK multiply-adds run on the whole-K one again
 * (train/gemm_bf16s_x86.c: each element of C one vdpbf16ps chain over the k
 * pairs in order, the same result at any thread count; on == 0).  Not
 * thread-safe against running GEMMs. */
void et_gemm_bf16_force_blocked(int on);

/* 1 when et_gemm's f32 products up to ET_SGEMM_OMP_MAX_WORK multiply-adds
 * (train/sgemm_omp.h; trans_b ones from 16 rows of C and up to 2^21 elements
 * of B) run on the AVX-512F kernel (train/gemm_f32_x86.c:
 * each element of C one FMA chain over k in order, so the same result at
 * any thread count), 0 when they go to OpenBLAS (train/sgemm_omp.h). */
int et_gemm_f32_native(void);

/* Tests and benchmarks: send every f32 product to OpenBLAS (on != 0) or
 * allow the AVX-512F kernel again (on == 0).  Not thread-safe against
 * running GEMMs. */
void et_gemm_f32_force_blas(int on);

/* "f32" -> ET_GEMM_F32, "bf16" -> ET_GEMM_BF16; -1 for anything else. */
int et_gemm_precision_parse(const char *s);
/* The inverse: "f32" / "bf16" (or "?" for an unknown value). */
const char *et_gemm_precision_name(int precision);

#endif
