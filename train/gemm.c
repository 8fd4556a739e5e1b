/* train/gemm.c — et_gemm: f32 via the AVX-512F kernel for small products
 * (train/gemm_f32_x86.c) or OpenBLAS, bf16 via the AVX512_BF16 kernel
 * (train/gemm_x86.c; small products: train/gemm_bf16s_x86.c) or, without
 * it, bf16-rounded operands + cblas_sgemm (see gemm.h). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../common/et.h"
#include "gemm.h"
#include "gemm_kernel.h"
#include "sgemm_omp.h"

/* x rounded to bf16 and back (round to nearest even; NaN quieted): the same
 * bits as et_bf16_to_fp32(et_fp32_to_bf16(x)), inline so loops vectorize. */
static inline float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    if ((u & 0x7fffffffu) > 0x7f800000u) r = (u | 0x00400000u) & 0xffff0000u;
    float y;
    memcpy(&y, &r, 4);
    return y;
}

static inline float bf16_widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

static int force_portable = 0, force_blas = 0, force_blocked = 0;

void et_gemm_force_portable(int on) { force_portable = on != 0; }

void et_gemm_f32_force_blas(int on) { force_blas = on != 0; }

void et_gemm_bf16_force_blocked(int on) { force_blocked = on != 0; }

int et_gemm_f32_native(void) { return !force_blas && et_gemm_x86_f32_available(); }

int et_gemm_bf16_native(void) { return !force_portable && et_gemm_x86_bf16_available(); }

int et_gemm_precision_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "f32")) return ET_GEMM_F32;
    if (!strcmp(s, "bf16")) return ET_GEMM_BF16;
    return -1;
}

const char *et_gemm_precision_name(int precision) {
    return precision == ET_GEMM_F32 ? "f32" : precision == ET_GEMM_BF16 ? "bf16" : "?";
}

static int args_ok(int trans_a, int trans_b, int M, int N, int K, int lda, int ldb, int ldc) {
    if (M < 0 || N < 0 || K < 0) return 0;
    if (lda < 1 || ldb < 1 || ldc < 1) return 0;
    if (lda < (trans_a ? M : K) || ldb < (trans_b ? K : N) || ldc < N) return 0;
    return 1;
}

/* C = beta C (K == 0, or alpha == 0), not reading C when beta == 0. */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f) for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Portable bf16: operands rounded into f32 scratch, K in blocks of kb (so the
 * scratch stays near 16 MB), each block one cblas_sgemm (beta, then 1).
 * Bf (f32, rounded here) or Bh (bf16 bits, widened exactly). */
static void gemm_bf16_portable(int trans_a, int trans_b, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                               float beta, float *C, int ldc) {
    size_t kb = ((size_t)1 << 22) / ((size_t)M + (size_t)N);
    if (kb < 64) kb = 64;
    if (kb > (size_t)K) kb = (size_t)K;
    float *a = malloc((size_t)M * kb * sizeof(float));
    float *b = malloc(kb * (size_t)N * sizeof(float));
    if (!a || !b) {
        free(a);
        free(b);
        /* No memory: the same math one dot product at a time. */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++) {
                    float av = bf16_round(trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                    size_t bi = trans_b ? (size_t)j * ldb + k : (size_t)k * ldb + j;
                    s += av * (Bf ? bf16_round(Bf[bi]) : bf16_widen(Bh[bi]));
                }
                float *c = C + (size_t)i * ldc + j;
                *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
            }
        return;
    }
    for (size_t k0 = 0; k0 < (size_t)K; k0 += kb) {
        const int kn = (int)((size_t)K - k0 < kb ? (size_t)K - k0 : kb);
        #pragma omp parallel for schedule(static) if ((size_t)M * kn > ((size_t)1 << 18))
        for (int i = 0; i < M; i++)
            for (int k = 0; k < kn; k++) {
                size_t kk = k0 + (size_t)k;
                a[(size_t)i * kn + k] = bf16_round(trans_a ? A[kk * lda + i] : A[(size_t)i * lda + kk]);
            }
        #pragma omp parallel for schedule(static) if ((size_t)N * kn > ((size_t)1 << 18))
        for (int k = 0; k < kn; k++)
            for (int j = 0; j < N; j++) {
                size_t kk = k0 + (size_t)k;
                size_t bi = trans_b ? (size_t)j * ldb + kk : kk * ldb + j;
                b[(size_t)k * N + j] = Bf ? bf16_round(Bf[bi]) : bf16_widen(Bh[bi]);
            }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, kn, alpha, a, kn, b, N,
                    k0 == 0 ? beta : 1.0f, C, ldc);
    }
    free(a);
    free(b);
}

/* The whole-K bf16 kernel (train/gemm_bf16s_x86.c) takes the products the
 * f32 kernel would (up to ET_SGEMM_OMP_MAX_WORK multiply-adds) when its
 * packed copies of op(A) and op(B) stay under 2^21 elements each (8 MB);
 * larger ones go to the blocked kernel (train/gemm_x86.c). */
static int bf16_small_suits(int M, int N, int K) {
    if (force_blocked || (double)M * N * K > ET_SGEMM_OMP_MAX_WORK) return 0;
    return (double)K * N <= (double)(1 << 21) && (double)M * K <= (double)(1 << 21);
}

static int gemm_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                     float beta, float *C, int ldc) {
    if (!args_ok(trans_a, trans_b, M, N, K, lda, ldb, ldc)) return ET_EINPUT;
    if (M == 0 || N == 0) return 0;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return 0;
    }
    if (et_gemm_bf16_native() && bf16_small_suits(M, N, K) &&
        et_gemm_x86_bf16s(trans_a != 0, trans_b != 0, M, N, K, alpha, A, lda, Bf, Bh, ldb, beta, C, ldc) == 0)
        return 0;
    if (et_gemm_bf16_native() &&
        et_gemm_x86_bf16(trans_a != 0, trans_b != 0, M, N, K, alpha, A, lda, Bf, Bh, ldb, beta, C, ldc) == 0)
        return 0;
    gemm_bf16_portable(trans_a != 0, trans_b != 0, M, N, K, alpha, A, lda, Bf, Bh, ldb, beta, C, ldc);
    return 0;
}

/* The AVX-512F kernel takes products up to ET_SGEMM_OMP_MAX_WORK
 * multiply-adds (larger ones: OpenBLAS's cache blocking and threads win),
 * except with trans_b when packing B^T (K x N floats) would cost more than
 * the product gains (M < 16) or take more than 8 MB. */
static int f32_kernel_suits(int trans_b, int M, int N, int K) {
    if (K < 1 || (double)M * N * K > ET_SGEMM_OMP_MAX_WORK) return 0;
    return !trans_b || (M >= 16 && (double)K * N <= (double)(1 << 21));
}

int et_gemm(int precision, int trans_a, int trans_b, int M, int N, int K,
            float alpha, const float *A, int lda, const float *B, int ldb,
            float beta, float *C, int ldc) {
    if (precision == ET_GEMM_BF16)
        return gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, NULL, ldb, beta, C, ldc);
    if (precision != ET_GEMM_F32 || !args_ok(trans_a, trans_b, M, N, K, lda, ldb, ldc)) return ET_EINPUT;
    if (M == 0 || N == 0) return 0;
    if (f32_kernel_suits(trans_b, M, N, K) && alpha != 0.0f && et_gemm_f32_native() &&
        et_gemm_x86_f32(trans_a != 0, trans_b != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0)
        return 0;
    et_sgemm_omp(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); /* small: per OpenMP thread */
    return 0;
}

int et_gemm_bf16w(int trans_a, int trans_b, int M, int N, int K,
                  float alpha, const float *A, int lda, const uint16_t *B, int ldb,
                  float beta, float *C, int ldc) {
    return gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, NULL, B, ldb, beta, C, ldc);
}
