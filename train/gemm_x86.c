/* train/gemm_x86.c — the AVX512_BF16 GEMM kernel (placeholder: not yet
 * available, so et_gemm uses its portable path). */
#include "gemm_kernel.h"

int et_gemm_x86_bf16_available(void) { return 0; }

int et_gemm_x86_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                     float beta, float *C, int ldc) {
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
    (void)Bf; (void)Bh; (void)ldb; (void)beta; (void)C; (void)ldc;
    return -1;
}
