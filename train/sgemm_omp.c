/* train/sgemm_omp.c — small GEMMs split over OpenMP threads (see sgemm_omp.h). */
#include "sgemm_omp.h"

#include <cblas.h>
#include <omp.h>

/* Below this many multiply-adds one thread does it all (a parallel region
 * costs more than the product). */
#define SERIAL_WORK ((double)(1 << 16))

static void one(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

void et_sgemm_omp(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc) {
    if (M < 1 || N < 1) return;
    const double work = (double)M * N * K;
    if (K < 1 || work > ET_SGEMM_OMP_MAX_WORK) { /* K = 0: C = beta C, as BLAS */
        one(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    const int nth = work <= SERIAL_WORK ? 1 : omp_get_max_threads();
    if (nth <= 1) {
        one(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    } else {
        /* split the longer side of C into nth blocks, multiples of 16 */
        const int by_rows = M >= N, len = by_rows ? M : N;
        const int blk = ((len + nth - 1) / nth + 15) / 16 * 16;
        #pragma omp parallel for num_threads(nth) schedule(static, 1)
        for (int p = 0; p < nth; p++) {
            const int s = p * blk, n = len - s < blk ? len - s : blk;
            if (n <= 0) continue;
            if (by_rows)
                one(trans_a, trans_b, n, N, K, alpha, trans_a ? A + s : A + (size_t)s * lda, lda, B, ldb, beta,
                    C + (size_t)s * ldc, ldc);
            else
                one(trans_a, trans_b, M, n, K, alpha, A, lda, trans_b ? B + (size_t)s * ldb : B + s, ldb, beta,
                    C + s, ldc);
        }
    }
    if (saved != 1) openblas_set_num_threads(saved);
}
