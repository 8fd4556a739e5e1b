/* train/attn_kd8_x86.c — the AVX-512F tiles of train/attn_kd8.h.
 *
 * Only functions marked KD8_TARGET use AVX-512 instructions; they are
 * reached only after et_attn_kd8_available() said yes, so the file builds
 * with the project's portable flags.  The OpenMP regions are in plain
 * functions (an outlined OpenMP body does not reliably inherit a target
 * attribute) and call one KD8_TARGET task per (b, h, query block) or (b, g).
 *
 * The softmax runs in base 2 (exp2_16 below). */
#include "attn_kd8.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <omp.h>
#include <string.h>

#include "x86_avx512.h"

#define KD8_TARGET __attribute__((target("avx512f"), noinline))
#define KD8_INLINE static inline __attribute__((target("avx512f"), always_inline))

enum { D = 8, L = 16, TILE = L * L };
#ifndef PF_AHEAD
#define PF_AHEAD 1024 /* floats: the backward prefetches the kept p 4 KB ahead of its reads */
#endif

int et_attn_kd8_available(void) { return (et_cpu_x86_features() & ET_X86_AVX512F) != 0; }

static int nblocks(int T) { return (T + L - 1) / L; }

size_t et_attn_kd8_p_floats(int T) {
    const size_t n = (size_t)nblocks(T);
    return TILE * (n * (n + 1) / 2);
}

/* Tiles are stored by key block (columns): kb's column holds qb = kb .. nb-1
   in order, so the backward (key block outer, query rows inner) reads them as
   one sequential stream. */
static size_t tile_off(int nb, int qb, int kb) {
    return (size_t)TILE * ((size_t)kb * nb - (size_t)kb * (kb - 1) / 2 + (size_t)(qb - kb));
}

/* forward: s/p rows [Tp][16]; backward: ds rows [Tp][16], Delta [grp][Tp],
   dq^T [grp][8][Tp] */
size_t et_attn_kd8_scratch_floats(int T, int n_head, int n_head_kv) {
    const size_t Tp = (size_t)nblocks(T) * L, grp = (size_t)(n_head / n_head_kv);
    return Tp * L + grp * Tp * (1 + D) + L; /* + L: room to align to 64 bytes */
}

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* 2^x for finite x: x = k + f with k = round(x), |f| <= 1/2; 2^f by a
   degree-5 polynomial (coefficients fitted here for minimal relative error
   on [-1/2, 1/2]: at most 2.4e-7 evaluated in float, against 3e-7 for
   train/simd.h's et_vexpf), then 2^k applied by vscalefps, which returns 0
   or +inf (not garbage) when 2^k leaves the float range, so no clamps: the
   forward feeds it s - max <= 0 for live keys and zeroes masked lanes after
   it.  Scores are kept in log2 units (q scaled by log2(e) / sqrt(8)), which
   saves the ln2 range reduction of exp. */
KD8_INLINE __m512 exp2_16(__m512 x) {
    const __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, k);
    __m512 p = _mm512_set1_ps(1.3276466634124517e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.675541892647743e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550713464617729e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022120237350464f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931469440460205f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_scalef_ps(p, k);
}

/* Lane-wise dot of 8 vectors x[d] with the 8 floats at w (broadcast). */
KD8_INLINE __m512 dot8(const __m512 x[D], const float *w) {
    __m512 a = _mm512_mul_ps(x[0], _mm512_set1_ps(w[0]));
    __m512 b = _mm512_mul_ps(x[1], _mm512_set1_ps(w[1]));
    a = _mm512_fmadd_ps(x[2], _mm512_set1_ps(w[2]), a);
    b = _mm512_fmadd_ps(x[3], _mm512_set1_ps(w[3]), b);
    a = _mm512_fmadd_ps(x[4], _mm512_set1_ps(w[4]), a);
    b = _mm512_fmadd_ps(x[5], _mm512_set1_ps(w[5]), b);
    a = _mm512_fmadd_ps(x[6], _mm512_set1_ps(w[6]), a);
    b = _mm512_fmadd_ps(x[7], _mm512_set1_ps(w[7]), b);
    return _mm512_add_ps(a, b);
}

/* Lanes l >= n of the causal diagonal: keys j = i0 + n are live for rows
   i0 + l with l >= n. */
static const float zero8[D];

static __mmask16 live_from(int n) { return (__mmask16)(0xFFFFu << n); }

/* One block of 16 query rows i0 = 16 qb .. of head h in sequence b. */
KD8_TARGET static void fwd_block(int T, int H, int G, int b, int h, int qb, const float *q, const float *k,
                                 const float *v, float *o, float *pk, float *sb) {
    const int grp = H / G, g = h / grp, Cq = H * D, Ck = G * D;
    const int i0 = qb * L, nr = T - i0 < L ? T - i0 : L, nk = i0 + nr;
    const float scale = 1.44269504088896341f / sqrtf((float)D); /* log2(e) / sqrt(head_dim) */
    float tmp[D][L] __attribute__((aligned(64)));
    memset(tmp, 0, sizeof tmp);
    for (int r = 0; r < nr; r++) {
        const float *qr = q + ((size_t)b * T + i0 + r) * Cq + (size_t)h * D;
        for (int d = 0; d < D; d++) tmp[d][r] = qr[d] * scale;
    }
    __m512 qt[D];
    #pragma GCC unroll 16
    for (int d = 0; d < D; d++) qt[d] = _mm512_load_ps(tmp[d]);
    const float *kb = k + (size_t)b * T * Ck + (size_t)g * D, *vb = v + (size_t)b * T * Ck + (size_t)g * D;

    /* scores and their lane-wise maximum over live keys */
    __m512 m = _mm512_set1_ps(-HUGE_VALF);
    for (int j = 0; j < i0; j++) {
        const __m512 s = dot8(qt, kb + (size_t)j * Ck);
        _mm512_store_ps(sb + (size_t)j * L, s);
        m = _mm512_max_ps(m, s);
    }
    for (int j = i0; j < nk; j++) {
        const __m512 s = dot8(qt, kb + (size_t)j * Ck);
        _mm512_store_ps(sb + (size_t)j * L, s);
        m = _mm512_mask_max_ps(m, live_from(j - i0), m, s);
    }
    /* probabilities (unnormalized), their sum, and p v */
    __m512 l = _mm512_setzero_ps(), acc[D];
    #pragma GCC unroll 16
    for (int d = 0; d < D; d++) acc[d] = _mm512_setzero_ps();
    for (int j = 0; j < nk; j++) {
        __m512 p = exp2_16(_mm512_sub_ps(_mm512_load_ps(sb + (size_t)j * L), m));
        if (j >= i0) p = _mm512_maskz_mov_ps(live_from(j - i0), p);
        _mm512_store_ps(sb + (size_t)j * L, p);
        l = _mm512_add_ps(l, p);
        const float *vj = vb + (size_t)j * Ck;
        #pragma GCC unroll 16
        for (int d = 0; d < D; d++) acc[d] = _mm512_fmadd_ps(p, _mm512_set1_ps(vj[d]), acc[d]);
    }
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), l);
    #pragma GCC unroll 16
    for (int d = 0; d < D; d++) _mm512_store_ps(tmp[d], _mm512_mul_ps(acc[d], inv));
    for (int r = 0; r < nr; r++) {
        float *orow = o + ((size_t)b * T + i0 + r) * Cq + (size_t)h * D;
        #pragma GCC unroll 16
        for (int d = 0; d < D; d++) orow[d] = tmp[d][r];
    }
    if (!pk) return;
    /* keep p normalized, as tiles [16 rows][16 keys].  Streaming stores
       (the tiles are 64-byte aligned: pkeep is, and a tile is 1 KB): the
       backward reads them only after every other layer's forward, so
       caching them would only evict what the next ops need (step -7%) */
    float *pt = pk + ((size_t)b * H + h) * et_attn_kd8_p_floats(T);
    for (int kbk = 0; kbk <= qb; kbk++) {
        __m512 r[L];
        #pragma GCC unroll 16
        for (int jj = 0; jj < L; jj++) {
            const int j = kbk * L + jj;
            r[jj] = j < nk ? _mm512_mul_ps(_mm512_load_ps(sb + (size_t)j * L), inv) : _mm512_setzero_ps();
        }
        transpose16_ps(r);
        float *dst = pt + tile_off(nblocks(T), qb, kbk);
        #pragma GCC unroll 16
        for (int rr = 0; rr < L; rr++) _mm512_stream_ps(dst + (size_t)rr * L, r[rr]);
    }
}

void et_attn_kd8_forward(int B, int T, int H, int G, const float *q, const float *k, const float *v,
                         float *o, float *pkeep, float *scratch) {
    const int nb = nblocks(T), npair = (nb + 1) / 2;
    const size_t per = et_attn_kd8_scratch_floats(T, H, G);
    /* block qb costs ~ qb + 1: pairing qb with nb - 1 - qb gives tasks of
       equal cost, split statically */
    #pragma omp parallel
    {
        #pragma omp for collapse(3) schedule(static) nowait
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int pq = 0; pq < npair; pq++) {
                    float *sb = align64(scratch + (size_t)omp_get_thread_num() * per);
                    fwd_block(T, H, G, b, h, pq, q, k, v, o, pkeep, sb);
                    if (nb - 1 - pq != pq) fwd_block(T, H, G, b, h, nb - 1 - pq, q, k, v, o, pkeep, sb);
                }
        _mm_sfence(); /* this thread's streamed tiles are visible before the region ends */
    }
}

/* One (b, g): all query heads of the group, every key block. */
KD8_TARGET static void bwd_group(int T, int H, int G, int b, int g, const float *q, const float *k,
                                 const float *v, const float *o, const float *dout, const float *pkeep,
                                 float *dq, int dq_set, float *dk, int dk_set, float *dv, int dv_set, float *sc) {
    const int grp = H / G, Cq = H * D, Ck = G * D, nb = nblocks(T), Tp = nb * L;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t pf = et_attn_kd8_p_floats(T);
    float *ds = sc, *delta = ds + (size_t)Tp * L, *dqt = delta + (size_t)grp * Tp; /* dqt [grp][D][Tp] */
    for (int hh = 0; hh < grp; hh++) {
        const int h = g * grp + hh;
        for (int i = 0; i < Tp; i++) {
            float s = 0.0f;
            if (i < T) {
                const size_t ri = ((size_t)b * T + i) * Cq + (size_t)h * D;
                #pragma GCC unroll 16
                for (int d = 0; d < D; d++) s += dout[ri + d] * o[ri + d];
            }
            delta[(size_t)hh * Tp + i] = s;
        }
    }
    if (dq) memset(dqt, 0, (size_t)grp * D * Tp * sizeof(float));
    const float *kb = k + (size_t)b * T * Ck + (size_t)g * D, *vb = v + (size_t)b * T * Ck + (size_t)g * D;
    float tmp[2 * D][L] __attribute__((aligned(64)));

    for (int kbk = 0; kbk < nb; kbk++) {
        const int j0 = kbk * L, nkk = T - j0 < L ? T - j0 : L;
        memset(tmp, 0, sizeof tmp);
        for (int jj = 0; jj < nkk; jj++)
            #pragma GCC unroll 16
            for (int d = 0; d < D; d++) tmp[d][jj] = vb[(size_t)(j0 + jj) * Ck + d];
        __m512 vt[D], dvt[D], dkt[D];
        #pragma GCC unroll 16
        for (int d = 0; d < D; d++) {
            vt[d] = _mm512_load_ps(tmp[d]);
            dvt[d] = dkt[d] = _mm512_setzero_ps();
        }
        for (int hh = 0; hh < grp; hh++) {
            const int h = g * grp + hh;
            const float *pt = pkeep + ((size_t)b * H + h) * pf, *dl = delta + (size_t)hh * Tp;
            for (int i = j0; i < T; i++) {
                const size_t ri = ((size_t)b * T + i) * Cq + (size_t)h * D;
                const float *dor = dout + ri, *qr = q + ri;
                const float *prow = pt + tile_off(nb, i / L, kbk) + (size_t)(i % L) * L;
                _mm_prefetch((const char *)(prow + PF_AHEAD), _MM_HINT_T0);
                const __m512 p = _mm512_loadu_ps(prow);
                const __m512 dp = dot8(vt, dor);
                const __m512 dsv = _mm512_mul_ps(p, _mm512_sub_ps(dp, _mm512_set1_ps(dl[i])));
                #pragma GCC unroll 16
                for (int d = 0; d < D; d++) {
                    dvt[d] = _mm512_fmadd_ps(p, _mm512_set1_ps(dor[d]), dvt[d]);
                    dkt[d] = _mm512_fmadd_ps(dsv, _mm512_set1_ps(qr[d]), dkt[d]);
                }
                _mm512_store_ps(ds + (size_t)(i - j0) * L, dsv);
            }
            if (!dq) continue;
            /* dq^T[d][i] += sum_jj ds[i][jj] k[j0 + jj][d], 16 rows i at a time */
            float *dq_h = dqt + (size_t)hh * D * Tp;
            for (int qb = kbk; qb < nb; qb++) {
                const int i0 = qb * L, nr = T - i0 < L ? T - i0 : L;
                __m512 r[L];
                #pragma GCC unroll 16
                for (int rr = 0; rr < L; rr++)
                    r[rr] = rr < nr ? _mm512_load_ps(ds + (size_t)(i0 + rr - j0) * L) : _mm512_setzero_ps();
                transpose16_ps(r); /* r[jj]: ds of key j0 + jj, query rows in lanes */
                __m512 a[D];
                #pragma GCC unroll 16
                for (int d = 0; d < D; d++) a[d] = _mm512_load_ps(dq_h + (size_t)d * Tp + i0);
                #pragma GCC unroll 16
                for (int jj = 0; jj < L; jj++) { /* keys past T: ds = 0, k read as 0 */
                    const float *kj = jj < nkk ? kb + (size_t)(j0 + jj) * Ck : zero8;
                    #pragma GCC unroll 16
                    for (int d = 0; d < D; d++) a[d] = _mm512_fmadd_ps(r[jj], _mm512_set1_ps(kj[d]), a[d]);
                }
                #pragma GCC unroll 16
                for (int d = 0; d < D; d++) _mm512_store_ps(dq_h + (size_t)d * Tp + i0, a[d]);
            }
        }
        #pragma GCC unroll 16
        for (int d = 0; d < D; d++) {
            _mm512_store_ps(tmp[d], _mm512_mul_ps(dkt[d], _mm512_set1_ps(scale)));
            _mm512_store_ps(tmp[D + d], dvt[d]);
        }
        for (int jj = 0; jj < nkk; jj++) {
            const size_t rj = ((size_t)b * T + j0 + jj) * Ck + (size_t)g * D;
            #pragma GCC unroll 16
            for (int d = 0; d < D; d++) {
                if (dk) dk[rj + d] = (dk_set ? 0.0f : dk[rj + d]) + tmp[d][jj];
                if (dv) dv[rj + d] = (dv_set ? 0.0f : dv[rj + d]) + tmp[D + d][jj];
            }
        }
    }
    if (!dq) return;
    for (int hh = 0; hh < grp; hh++) {
        const float *dq_h = dqt + (size_t)hh * D * Tp;
        for (int i = 0; i < T; i++) {
            float *dqr = dq + ((size_t)b * T + i) * Cq + (size_t)(g * grp + hh) * D;
            #pragma GCC unroll 16
            for (int d = 0; d < D; d++) dqr[d] = (dq_set ? 0.0f : dqr[d]) + scale * dq_h[(size_t)d * Tp + i];
        }
    }
}

void et_attn_kd8_backward(int B, int T, int H, int G, const float *q, const float *k, const float *v,
                          const float *o, const float *dout, const float *pkeep, float *dq, int dq_set,
                          float *dk, int dk_set, float *dv, int dv_set, float *scratch) {
    const size_t per = et_attn_kd8_scratch_floats(T, H, G);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++)
            bwd_group(T, H, G, b, g, q, k, v, o, dout, pkeep, dq, dq_set, dk, dk_set, dv, dv_set,
                      align64(scratch + (size_t)omp_get_thread_num() * per));
}

#else /* not x86-64 GCC/clang: never available */

int et_attn_kd8_available(void) { return 0; }
size_t et_attn_kd8_p_floats(int T) { (void)T; return 0; }
size_t et_attn_kd8_scratch_floats(int T, int n_head, int n_head_kv) { (void)T, (void)n_head, (void)n_head_kv; return 0; }
void et_attn_kd8_forward(int B, int T, int H, int G, const float *q, const float *k, const float *v,
                         float *o, float *pkeep, float *scratch) {
    (void)B, (void)T, (void)H, (void)G, (void)q, (void)k, (void)v, (void)o, (void)pkeep, (void)scratch;
}
void et_attn_kd8_backward(int B, int T, int H, int G, const float *q, const float *k, const float *v,
                          const float *o, const float *dout, const float *pkeep, float *dq, int dq_set,
                          float *dk, int dk_set, float *dv, int dv_set, float *scratch) {
    (void)B, (void)T, (void)H, (void)G, (void)q, (void)k, (void)v, (void)o, (void)dout, (void)pkeep;
    (void)dq, (void)dq_set, (void)dk, (void)dk_set, (void)dv, (void)dv_set, (void)scratch;
}

#endif
