/* train/gemm_kernel.h — internal: the native bf16 GEMM kernel behind
 * et_gemm (train/gemm_x86.c), called only by train/gemm.c. */
#ifndef ET_GEMM_KERNEL_H
#define ET_GEMM_KERNEL_H

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

#endif
