/* train/gemm_x86.c — the AVX512_BF16 GEMM behind et_gemm (train/gemm.h).
 *
 * BLIS-style blocking (Van Zee & van de Geijn, "BLIS: A Framework for
 * Rapidly Instantiating BLAS Functionality", ACM TOMS 2015):
 *   for each NC-column block of C:
 *     for each KC-deep block of K:
 *       pack op(B)[KC, NC] into NR-column panels            (threads split the panels)
 *       for each MC-row block of C (threads split the blocks):
 *         pack op(A)[MC, KC] into MR-row panels
 *         for each NR panel, for each MR panel: the MR x NR microkernel
 * The microkernel keeps a 12 x 32 tile of C in 24 zmm accumulators and uses
 * vdpbf16ps (Intel SDM, "VDPBF16PS — Dot Product of BF16 Pairs Accumulated
 * into Packed Single Precision"): for each of 16 f32 lanes,
 * acc += a[2l] b[2l] + a[2l+1] b[2l+1] with exact products.  So both packed
 * operands hold k in pairs:
 *   A panel: [KC/2][MR][2] bf16   (one 32-bit pair per row, broadcast)
 *   B panel: [KC/2][NR][2] bf16   (two zmm per k pair)
 * K is padded to even with zeros; rows/columns beyond M/N are zero padding,
 * never stored.  Rounding f32 -> bf16 is done with integer AVX-512F ops,
 * bit-identical to et_fp32_to_bf16 (round to nearest even, NaN quieted).
 *
 * Only the functions marked ET_TARGET use AVX-512 instructions; they are
 * reached only after et_gemm_x86_bf16_available() said yes, so this file
 * builds with the project's portable flags (and to nothing on other CPUs).
 * The OpenMP regions are in plain functions (outlined OpenMP bodies do not
 * reliably inherit a target attribute); they call the ET_TARGET helpers. */
#include "gemm_kernel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_bf16_x86.h"

#define ET_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), noinline))

enum {
    MR = 12,      /* rows of the microkernel tile */
    NR = 32,      /* columns: two zmm of 16 f32 */
    KC_MAX = 1024, /* k per block: B micro-panel 1024 x 32 x 2 B = 64 KB, streamed from L2
                     (a k pair loads 176 B for 24 vdpbf16ps); C is updated once per block */
    MC_MAX = 288,  /* rows per A block: 288 x 1024 x 2 B = 576 KB (L2) */
    NC_MAX = 3072  /* columns per B block: 1024 x 3072 x 2 B = 6 MB (L3) */
};

int et_cpu_x86_features(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    v = 0;
    unsigned a, b, c, d, xlo = 0, xhi;
    if (__get_cpuid(1, &a, &b, &c, &d) && ((c >> 27) & 1)) { /* OSXSAVE */
        __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
        (void)xhi;
    }
    /* SSE, AVX, opmask, ZMM state enabled by the OS; then CPUID.7.0:EBX */
    if ((xlo & 0xe6) == 0xe6 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((b >> 16) & 1)) {
        v = ET_X86_AVX512F;
        const int bw_vl = ((b >> 30) & 1) && ((b >> 31) & 1);
        if (bw_vl && a >= 1) {
            __get_cpuid_count(7, 1, &a, &b, &c, &d);
            if ((a >> 5) & 1) v |= ET_X86_AVX512BF16; /* CPUID.7.1:EAX bit 5 */
        }
    }
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}

int et_gemm_x86_bf16_available(void) { return (et_cpu_x86_features() & ET_X86_AVX512BF16) != 0; }

/* ---- packing ---- */

/* One k pair p of one B panel, tb 0 (op(B) rows contiguous): columns
 * j0 .. j0+nv of rows k0+2p and k0+2p+1 (zero beyond nv / kc) -> d[NR]. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16")))
void pack_b_pair(const float *Bf, const uint16_t *Bh, int ldb, int k0, int kc, int p, int j0, int nv, uint32_t *d) {
    const __mmask16 m0 = mask16(nv), m1 = mask16(nv - 16);
    const size_t r0 = (size_t)(k0 + 2 * p) * ldb + j0, r1 = r0 + (size_t)ldb;
    const int has1 = 2 * p + 1 < kc;
    __m512i o0, o1;
    if (Bf) {
        __m512 a0 = _mm512_maskz_loadu_ps(m0, Bf + r0), a1 = _mm512_maskz_loadu_ps(m1, Bf + r0 + 16);
        __m512 b0 = has1 ? _mm512_maskz_loadu_ps(m0, Bf + r1) : _mm512_setzero_ps();
        __m512 b1 = has1 ? _mm512_maskz_loadu_ps(m1, Bf + r1 + 16) : _mm512_setzero_ps();
        o0 = pair_lanes(a0, b0);
        o1 = pair_lanes(a1, b1);
    } else {
        __m512i a0 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m0, Bh + r0));
        __m512i a1 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m1, Bh + r0 + 16));
        __m512i b0 = has1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m0, Bh + r1)) : _mm512_setzero_si512();
        __m512i b1 = has1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m1, Bh + r1 + 16)) : _mm512_setzero_si512();
        o0 = _mm512_or_si512(a0, _mm512_slli_epi32(b0, 16));
        o1 = _mm512_or_si512(a1, _mm512_slli_epi32(b1, 16));
    }
    _mm512_storeu_si512(d, o0);
    _mm512_storeu_si512(d + 16, o1);
}

/* The B block op(B)[k0 .. k0+kc, j0 .. j0+nc] -> ceil(nc/NR) panels, each
 * [kcp/2][NR][2] (kcp = kc rounded up to even; columns beyond nc and the
 * odd k pad are zero), panel q at dst + q*kcp*NR.
 * op(B)(k, j) = Bf/Bh[k*ldb + j] (tb 0) or [j*ldb + k] (tb 1). */
ET_TARGET void et_gemm_x86_bf16_pack_b(int tb, const float *Bf, const uint16_t *Bh, int ldb, int k0, int kc,
                                        int j0, int nc, uint16_t *dst) {
    const int nkp = (kc + 1) / 2, n_bp = (nc + NR - 1) / NR;
    uint32_t *d = (uint32_t *)dst;
    const size_t panel = (size_t)nkp * NR; /* uint32 per panel */
    if (!tb) { /* row by row of the source, across all panels (each line read once) */
        for (int p = 0; p < nkp; p++) {
            const size_t es = Bf ? sizeof(float) : sizeof(uint16_t);
            if (2 * p + ET_BF16_PF_ROWS + 1 < kc && (size_t)nc * es <= ET_BF16_PF_MAX_BYTES) {
                const size_t r = (size_t)(k0 + 2 * p + ET_BF16_PF_ROWS) * ldb + j0;
                prefetch_bytes(Bf ? (const void *)(Bf + r) : (const void *)(Bh + r), (size_t)nc * es);
                prefetch_bytes(Bf ? (const void *)(Bf + r + ldb) : (const void *)(Bh + r + ldb), (size_t)nc * es);
            }
            for (int q = 0; q < n_bp; q++)
                pack_b_pair(Bf, Bh, ldb, k0, kc, p, j0 + q * NR, nc - q * NR, d + q * panel + (size_t)p * NR);
        }
        return;
    }
    /* tb: column j of op(B) is row j of the stored matrix, k contiguous:
     * 16 columns x 16 k pairs at a time, transposed in registers. */
    for (int q = 0; q < n_bp; q++) {
        const int nv = nc - q * NR;
        for (int g = 0; g < NR; g += 16)
            for (int p0 = 0; p0 < nkp; p0 += 16) {
                __m512i r[16];
                rows_to_pairs(Bf, Bh, (size_t)(j0 + q * NR + g) * ldb + k0 + 2 * p0, (size_t)ldb, nv - g,
                              kc - 2 * p0, r);
                const int np = nkp - p0 < 16 ? nkp - p0 : 16;
                for (int t = 0; t < np; t++) _mm512_storeu_si512(d + q * panel + (size_t)(p0 + t) * NR + g, r[t]);
            }
    }
}

/* The A block op(A)[i0 .. i0+mc, k0 .. k0+kc] -> ceil(mc/MR) panels, each
 * [kcp/2][MR][2] (rows beyond mc zero), panel r at dst + r*kcp*MR.
 * op(A)(i, k) = A[i*lda + k] (ta 0) or A[k*lda + i] (ta 1). */
ET_TARGET static void pack_a(int ta, const float *A, int lda, int i0, int mc, int k0, int kc, uint16_t *dst) {
    const int nkp = (kc + 1) / 2, n_ap = (mc + MR - 1) / MR;
    uint32_t *d = (uint32_t *)dst;
    const size_t panel = (size_t)nkp * MR;
    if (ta) { /* row by row of the source, across all panels */
        for (int p = 0; p < nkp; p++) {
            const size_t r0 = (size_t)(k0 + 2 * p) * lda + i0;
            const int has1 = 2 * p + 1 < kc;
            for (int r = 0; r < n_ap; r++) {
                const __mmask16 m = mask16(mc - r * MR < MR ? mc - r * MR : MR);
                __m512 a = _mm512_maskz_loadu_ps(m, A + r0 + r * MR);
                __m512 b = has1 ? _mm512_maskz_loadu_ps(m, A + r0 + lda + r * MR) : _mm512_setzero_ps();
                _mm512_mask_storeu_epi32(d + r * panel + (size_t)p * MR, (__mmask16)0x0fff, pair_lanes(a, b));
            }
        }
        return;
    }
    for (int r = 0; r < n_ap; r++) {
        const int mv = mc - r * MR < MR ? mc - r * MR : MR;
        for (int p0 = 0; p0 < nkp; p0 += 16) {
            __m512i v[16];
            rows_to_pairs(A, NULL, (size_t)(i0 + r * MR) * lda + k0 + 2 * p0, (size_t)lda, mv, kc - 2 * p0, v);
            const int np = nkp - p0 < 16 ? nkp - p0 : 16;
            for (int q = 0; q < np; q++)
                _mm512_mask_storeu_epi32(d + r * panel + (size_t)(p0 + q) * MR, (__mmask16)0x0fff, v[q]);
        }
    }
}

/* ---- microkernel ---- */

/* C[mv, nv] (ldc) = alpha * A_panel @ B_panel + beta * C (beta 0: C not
 * read); nkp k pairs; mv <= MR, nv <= NR. */
ET_TARGET static void kernel(int nkp, const uint16_t *a, const uint16_t *b, float *C, int ldc,
                             int mv, int nv, float alpha, float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const int32_t *a32 = (const int32_t *)a;
    for (int p = 0; p < nkp; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * 2 * NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * 2 * NR + 32);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32(a32[(size_t)p * MR + i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    const __mmask16 m0 = mask16(nv), m1 = mask16(nv - 16);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= mv) break;
        float *c = C + (size_t)i * ldc;
        __m512 y0 = _mm512_mul_ps(va, acc[i][0]), y1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), y0);
            y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), y1);
        }
        _mm512_mask_storeu_ps(c, m0, y0);
        _mm512_mask_storeu_ps(c + 16, m1, y1);
    }
}

/* ---- driver ---- */

typedef struct plan {
    int ta, tb, lda, ldb;
    float alpha;
    const float *A, *Bf;
    const uint16_t *Bh;
    int kc;             /* k per block (even) */
} plan;

static int min_i(int a, int b) { return a < b ? a : b; }

/* Block size for n items in blocks of at most cap, a multiple of unit,
 * as even as possible. */
static int block_size(int n, int cap, int unit) {
    int nb = (n + cap - 1) / cap;
    return ((n + nb - 1) / nb + unit - 1) / unit * unit;
}

/* C[m0..m1, n0..n1] = alpha op(A)[m0..m1, k0..k1] op(B)[k0..k1, n0..n1]
 * + beta C (C addressed from row 0, column 0 with leading dimension ldc),
 * on the calling thread alone, with its own packing buffers bp (kc x nc)
 * and ap (mc x kc). */
static void gemm_block(const plan *P, int m0, int m1, int n0, int n1, int k0, int k1, int mc, int nc,
                       float beta0, float *C, int ldc, uint16_t *bp, uint16_t *ap) {
    for (int jc = n0; jc < n1; jc += nc) {
        const int ncv = min_i(n1 - jc, nc), n_bp = (ncv + NR - 1) / NR;
        for (int pc = k0; pc < k1; pc += P->kc) {
            const int kcv = min_i(k1 - pc, P->kc), kcp = (kcv + 1) & ~1;
            const float beta = pc == k0 ? beta0 : 1.0f;
            et_gemm_x86_bf16_pack_b(P->tb, P->Bf, P->Bh, P->ldb, pc, kcv, jc, ncv, bp);
            for (int ic = m0; ic < m1; ic += mc) {
                const int mcv = min_i(m1 - ic, mc), n_ap = (mcv + MR - 1) / MR;
                pack_a(P->ta, P->A, P->lda, ic, mcv, pc, kcv, ap);
                for (int q = 0; q < n_bp; q++)
                    for (int r = 0; r < n_ap; r++)
                        kernel(kcp / 2, ap + (size_t)r * kcp * MR, bp + (size_t)q * kcp * NR,
                               C + (size_t)(ic + r * MR) * ldc + jc + q * NR, ldc,
                               min_i(mcv - r * MR, MR), min_i(ncv - q * NR, NR), P->alpha, beta);
            }
        }
    }
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* The packing buffers, kept per calling thread between calls and grown when
 * too small (a training step makes ~650 GEMM calls of a few MB of packing
 * each: malloc + free per call meant fresh pages, i.e. page faults, each
 * time); freed when the thread exits. */
typedef struct buf_cache { void *p; size_t cap; } buf_cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_ok;

static void cache_free(void *v) {
    buf_cache *c = v;
    free(c->p);
    free(c);
}

static void cache_init(void) { cache_ok = pthread_key_create(&cache_key, cache_free) == 0; }

/* 64-byte aligned scratch of at least `bytes` for this thread, or NULL. */
static void *cache_get(size_t bytes) {
    pthread_once(&cache_once, cache_init);
    if (!cache_ok) return NULL;
    buf_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return NULL;
        if (pthread_setspecific(cache_key, c)) {
            free(c);
            return NULL;
        }
    }
    if (c->cap < bytes) {
        free(c->p);
        c->cap = 0;
        if (!(c->p = aligned_alloc(64, round64(bytes)))) return NULL;
        c->cap = round64(bytes);
    }
    return c->p;
}

void *et_gemm_x86_scratch(size_t bytes) { return cache_get(bytes); }

enum { SPLIT_M, SPLIT_N, SPLIT_K };

/* Threads split the work with no barrier inside the call (an OpenMP barrier
 * with OMP_WAIT_POLICY=PASSIVE sleeps, which costs more than the extra
 * work on the shared cores here), in the way that duplicates the least:
 *   SPLIT_M: row slabs of C, every thread packs all of op(B)  (K x N again)
 *   SPLIT_N: column slabs, every thread packs all of op(A)    (M x K again)
 *   SPLIT_K: k ranges into private partial C's, summed at the end (~3 M x N)
 * (e.g. the LM head's dx = dz W, K = n_vocab: SPLIT_K). */
int et_gemm_x86_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                     float beta, float *C, int ldc) {
    plan P = {trans_a, trans_b, lda, ldb, alpha, A, Bf, Bh, 0};
    int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
    if ((double)M * N * K < (double)(1 << 21)) nth = 1; /* a parallel region costs more */
    if (nth < 1) nth = 1;
    const double dup_m = (double)K * N, dup_n = (double)M * K, dup_k = 3.0 * M * N;
    int split = dup_m <= dup_n && dup_m <= dup_k ? SPLIT_M : dup_n <= dup_k ? SPLIT_N : SPLIT_K;
    const int units = split == SPLIT_M ? (M + MR - 1) / MR : split == SPLIT_N ? (N + NR - 1) / NR : (K + KC_MAX - 1) / KC_MAX;
    if (nth > units) nth = units;
    if (nth < 1) nth = 1;
    if (nth == 1) split = SPLIT_M;
    const int rows = split == SPLIT_M ? ((M + nth - 1) / nth + MR - 1) / MR * MR : M;
    const int cols = split == SPLIT_N ? ((N + nth - 1) / nth + NR - 1) / NR * NR : N;
    const int ks = split == SPLIT_K ? ((K + nth - 1) / nth + 1) & ~1 : K;
    P.kc = block_size(ks, KC_MAX, 2);
    const int mc = block_size(rows, MC_MAX, MR), nc = block_size(cols, NC_MAX, NR);
    const size_t per_thread = round64((size_t)P.kc * nc) + round64((size_t)mc * P.kc);
    const size_t buf_bytes = (size_t)nth * per_thread * sizeof(uint16_t);
    /* SPLIT_K: threads 1.. write [M, N] partial products after the buffers */
    const size_t part_bytes = split == SPLIT_K ? round64((size_t)(nth - 1) * M * N * sizeof(float)) : 0;
    uint16_t *buf = cache_get(buf_bytes + part_bytes);
    if (!buf) return -1;
    float *part = split == SPLIT_K ? (float *)(void *)((char *)buf + buf_bytes) : NULL;
    #pragma omp parallel for num_threads(nth) schedule(static, 1) if (nth > 1)
    for (int t = 0; t < nth; t++) {
        uint16_t *bp = buf + (size_t)t * per_thread, *ap = bp + round64((size_t)P.kc * nc);
        if (split == SPLIT_M) {
            const int m0 = t * rows;
            if (m0 < M) gemm_block(&P, m0, min_i(M, m0 + rows), 0, N, 0, K, mc, nc, beta, C, ldc, bp, ap);
        } else if (split == SPLIT_N) {
            const int n0 = t * cols;
            if (n0 < N) gemm_block(&P, 0, M, n0, min_i(N, n0 + cols), 0, K, mc, nc, beta, C, ldc, bp, ap);
        } else {
            const int k0 = t * ks, k1 = min_i(K, k0 + ks);
            float *ct = t ? part + (size_t)(t - 1) * M * N : C;
            if (k0 < k1) gemm_block(&P, 0, M, 0, N, k0, k1, mc, nc, t ? 0.0f : beta, ct, t ? N : ldc, bp, ap);
            else if (t) memset(ct, 0, (size_t)M * N * sizeof(float));
        }
    }
    if (split == SPLIT_K) {
        #pragma omp parallel for num_threads(nth) schedule(static)
        for (int i = 0; i < M; i++)
            for (int t = 1; t < nth; t++) {
                const float *p = part + (size_t)(t - 1) * M * N + (size_t)i * N;
                float *c = C + (size_t)i * ldc;
                for (int j = 0; j < N; j++) c[j] += p[j];
            }
    }
    return 0;
}

#else /* not x86-64: no native kernel */

int et_gemm_x86_bf16_available(void) { return 0; }

void *et_gemm_x86_scratch(size_t bytes) {
    (void)bytes;
    return NULL;
}

int et_gemm_x86_bf16(int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *Bf, const uint16_t *Bh, int ldb,
                     float beta, float *C, int ldc) {
    (void)trans_a; (void)trans_b; (void)M; (void)N; (void)K; (void)alpha; (void)A; (void)lda;
    (void)Bf; (void)Bh; (void)ldb; (void)beta; (void)C; (void)ldc;
    return -1;
}

#endif
