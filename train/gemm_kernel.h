/* train/gemm_kernel.h — internal: the native GEMM kernels behind et_gemm
 * (bf16: train/gemm_x86.c, f32: train/gemm_f32_x86.c), called only by
 * train/gemm.c. */
#ifndef ET_GEMM_KERNEL_H
#define ET_GEMM_KERNEL_H

#include <stddef.h>
#include <stdint.h>

/* 1 when the CPU and OS support AVX-512 F/BW/BF16 (CPUID + XGETBV), else 0
 * (always 0 on other architectures). Cached after the first call. */
int et_gemm_x86_bf16_available(void);

/* C = alpha op(A) op(B) + beta C in bf16 as et_gemm (gemm.h), with B given
 * as f32 (Bf) or as bf16 bits (Bh, Bf NULL); trans_a/trans_b are 0 or 1;
 * M, N, K >= 1.  Only call when et_gemm_x86_bf16_available().  Returns 0,
 * or -1 when its packing buffers could not be allocated (nothing written). */
int et_gemm_x86_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                     float beta, float *C, int ldc);

/* op(B)[k0 .. k0+kc, j0 .. j0+nc] rounded to bf16 (Bf) or copied (Bh, Bf
 * NULL) into ceil(nc/32) panels of [kcp/2][32][2] bf16 (kcp = kc rounded up
 * to even: k in pairs, the pad and columns beyond nc zero), panel q at
 * dst + q*kcp*32; op(B)(k, j) = B[k*ldb + j] (tb 0) or B[j*ldb + k] (tb 1).
 * x86-64 only; only call when et_gemm_x86_bf16_available(). */
void et_gemm_x86_bf16_pack_b(int tb, const float *Bf, const uint16_t *Bh, int ldb, int k0, int kc,
                             int j0, int nc, uint16_t *dst);

/* C = alpha op(A) op(B) + beta C in bf16 as et_gemm_x86_bf16, for small
 * products (train/gemm_bf16s_x86.c): every element of C is one chain of
 * vdpbf16ps over the k pairs in order (results do not depend on the number
 * of threads); operands rounded to bf16 pairs once per call (op(A)'s rows
 * and op(B)'s columns that each thread needs: at most M x K and K x N bf16
 * per thread).  train/gemm.c calls it for M N K <= 2^26, K N <= 2^21 and
 * M K <= 2^21.  Only call when et_gemm_x86_bf16_available().  Returns 0, or
 * -1 when the packing buffers could not be allocated (nothing written). */
int et_gemm_x86_bf16s(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                      float beta, float *C, int ldc);

/* 64-byte aligned scratch of at least `bytes` for the calling thread, kept
 * between calls (grown when too small, freed when the thread exits); NULL
 * when it cannot be allocated (or not on x86-64).  Shared by both kernels:
 * valid until the calling thread's next call. */
void *et_gemm_x86_scratch(size_t bytes);

/* 1 when the CPU and OS support AVX-512F (CPUID + XGETBV), else 0 (always 0
 * on other architectures).  Cached after the first call. */
int et_gemm_x86_f32_available(void);

/* C = alpha op(A) op(B) + beta C in f32 as et_gemm (gemm.h): trans_a and
 * trans_b 0 or 1, M, N, K >= 1, beta 0 does not read C.  Every element of C
 * is one FMA chain over k = 0 .. K-1 (results do not depend on the number
 * of threads).  Meant for small products (whole K per tile, no cache
 * blocking): train/gemm.c calls it for M N K <= 2^26 (ET_SGEMM_OMP_MAX_WORK),
 * and with trans_b for M >= 16 and K N <= 2^21 only.  Only call when
 * et_gemm_x86_f32_available().  Returns 0, or -1 when the packing buffers for
 * op(B) (trans_b 1: K x N floats, per thread at most) could not be allocated
 * (nothing written). */
int et_gemm_x86_f32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);

#endif
