/* engine/kernels_x86_repack.c — the 16-row repacked layout of the 32-element
 * block types and its AVX512-VNNI multi-row x multi-token kernels
 * (engine/repack.h states the layout and why).  The repacking is plain C. */
#include <pthread.h>
#include <string.h>

#include "../export/gguf.h"
#include "repack.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static int rp_nibbles(uint32_t t) { return t == GGML_TYPE_Q4_0 || t == GGML_TYPE_IQ4_NL || t == GGML_TYPE_Q4_1; }
static int rp_min(uint32_t t) { return t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1; }
static int rp_type(uint32_t t) {
    return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0 || t == GGML_TYPE_Q5_0 || t == GGML_TYPE_IQ4_NL ||
           t == GGML_TYPE_Q4_1 || t == GGML_TYPE_Q5_1;
}

/* Bytes of one block of 16 rows: the quants, d (and m), rounded up to 64. */
static size_t rp_stride(uint32_t type) {
    return ((size_t)(rp_nibbles(type) ? 256 : 512) + 32 + (rp_min(type) ? 32 : 0) + 63) & ~(size_t)63;
}

size_t et_repack_group_bytes(uint32_t type, int n_in) {
    if (!rp_type(type) || n_in <= 0 || n_in % ET_QK) return 0;
    return (size_t)(n_in / ET_QK) * rp_stride(type);
}

/* Element j (0..31) of block b of a byte-type row as its unsigned byte (value + c). */
static uint8_t byte_elem(uint32_t type, const uint8_t *row, int b, int j) {
    if (type == GGML_TYPE_Q8_0) {
        const et_block_q8_0 *w = (const et_block_q8_0 *)(const void *)row + b;
        return (uint8_t)(w->qs[j] ^ 0x80);
    }
    const uint8_t *qs, *qhb;
    if (type == GGML_TYPE_Q5_0) {
        const et_block_q5_0 *w = (const et_block_q5_0 *)(const void *)row + b;
        qs = w->qs;
        qhb = w->qh;
    } else {
        const et_block_q5_1 *w = (const et_block_q5_1 *)(const void *)row + b;
        qs = w->qs;
        qhb = w->qh;
    }
    uint32_t qh;
    memcpy(&qh, qhb, 4);
    int lo = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    return (uint8_t)(lo | (((qh >> j) & 1) << 4));
}

void et_repack_group(uint32_t type, int n_in, const void *rows, size_t row_bytes, void *dst) {
    const int nb = n_in / ET_QK, nib = rp_nibbles(type), ch = nib ? 256 : 512;
    const size_t bs = et_quant_row_bytes(type, ET_QK), st = rp_stride(type);   /* bytes per block: row, group */
    memset(dst, 0, et_repack_group_bytes(type, n_in));
    for (int r = 0; r < ET_RP_ROWS; r++) {
        const uint8_t *row = (const uint8_t *)rows + (size_t)r * row_bytes;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * bs;
            uint8_t *q = (uint8_t *)dst + (size_t)b * st;
            /* every block type starts with its fp16 d; Q4_1/Q5_1 then m */
            memcpy(q + ch + 2 * r, blk, 2);
            if (rp_min(type)) memcpy(q + ch + 32 + 2 * r, blk + 2, 2);
            if (nib) {
                const uint8_t *qs = blk + (rp_min(type) ? 4 : 2);
                for (int k = 0; k < 4; k++)
                    for (int j = 0; j < 4; j++) q[64 * k + 4 * r + j] = qs[4 * k + j];
            } else {
                for (int k = 0; k < 8; k++)
                    for (int j = 0; j < 4; j++) q[64 * k + 4 * r + j] = byte_elem(type, row, b, 4 * k + j);
            }
        }
    }
}

void et_repack_unpack_row(uint32_t type, int n_in, const void *grp, int r, void *row) {
    const int nb = n_in / ET_QK, nib = rp_nibbles(type), ch = nib ? 256 : 512;
    const size_t bs = et_quant_row_bytes(type, ET_QK), st = rp_stride(type);
    for (int b = 0; b < nb; b++) {
        const uint8_t *q = (const uint8_t *)grp + (size_t)b * st;
        uint8_t *blk = (uint8_t *)row + (size_t)b * bs;
        memcpy(blk, q + ch + 2 * r, 2);
        if (rp_min(type)) memcpy(blk + 2, q + ch + 32 + 2 * r, 2);
        if (nib) {
            uint8_t *qs = blk + (rp_min(type) ? 4 : 2);
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 4; j++) qs[4 * k + j] = q[64 * k + 4 * r + j];
            continue;
        }
        uint8_t u[32];   /* element j's unsigned byte (value + c) */
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 4; j++) u[4 * k + j] = q[64 * k + 4 * r + j];
        if (type == GGML_TYPE_Q8_0) {
            for (int j = 0; j < 32; j++) blk[2 + j] = (uint8_t)(u[j] ^ 0x80);
            continue;
        }
        /* Q5_0 / Q5_1: the low nibbles as Q4_0 (element j < 16 low, j + 16 high), bit 4 into qh */
        uint8_t *qhb = blk + (type == GGML_TYPE_Q5_1 ? 4 : 2), *qs = qhb + 4;
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((u[j] & 0x0F) | ((u[j + 16] & 0x0F) << 4));
        for (int j = 0; j < 32; j++) qh |= (uint32_t)((u[j] >> 4) & 1) << j;
        for (int i = 0; i < 4; i++) qhb[i] = (uint8_t)(qh >> (8 * i));
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

enum { RK_Q8_0, RK_Q4_0, RK_Q5_0, RK_IQ4_NL, RK_Q4_1, RK_Q5_1 };

/* Bytes ahead that the one- and two-token kernels prefetch for the byte
 * types (Q8_0, Q5_0, Q5_1); the nibble types stream faster without
 * (bench_engine tg32, SmolLM2 Q8_0 / Q4_0: 137 -> 174 and 302 -> 253 t/s with a 1 KiB prefetch). */
#ifndef RP_PF
#define RP_PF 1024
#endif

static inline int32_t ld_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline float ld_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* 16 rows x T tokens, every block of the group (kind and T compile-time
 * constants in each instantiation).  Token t's activation is at act + t as:
 * its block b's quants at qoff + b xbs, its extras (kernels.h) at xe. */
static inline VNNI __attribute__((always_inline)) void gemm_t(int n, const uint8_t *grp, const uint8_t *act, size_t as,
                                                              float *out, size_t ldo, const int kind, const int T) {
    const int nib = kind == RK_Q4_0 || kind == RK_IQ4_NL || kind == RK_Q4_1;
    const int mins = kind == RK_Q4_1 || kind == RK_Q5_1;
    /* log2 of the offset c of the unsigned weight bytes (0: none) */
    const int lc = kind == RK_Q8_0 || kind == RK_IQ4_NL ? 7 : kind == RK_Q4_0 ? 3 : kind == RK_Q5_0 ? 4 : 0;
    const int nb = n / ET_QK, ch = nib ? 256 : 512;
    const size_t st = ((size_t)ch + 32 + (mins ? 32 : 0) + 63) & ~(size_t)63;   /* rp_stride */
    const size_t xbs = mins ? sizeof(et_block_q8_1) : sizeof(et_block_q8_0);
    /* per token: quants of block b at pq + b xbs; Q8_0: bsum[b] at pe + 4b, d[b] at pe + od + 4b;
     * Q8_1: d[b] at pe + 4b, s[b] at pe + os + 4b */
    const uint8_t *pq = act + (mins ? 4 : 2);
    const uint8_t *pe = act + (mins ? et_act_q8_1_extra_offset(n) : et_act_q8_0_extra_offset(n));
    const size_t od = mins ? 0 : (size_t)nb * 4, os = (size_t)nb * 4;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i tbl = _mm512_setzero_si512();
    if (kind == RK_IQ4_NL) {
        uint8_t u[16];
        for (int i = 0; i < 16; i++) u[i] = (uint8_t)(et_kvalues_iq4nl[i] + 128);
        tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)u));
    }
    __m512 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, pq += xbs, pe += 4) {
        __m512i w[8];
        const uint8_t *q = grp + (size_t)b * st;
#if RP_PF
        if (T <= 2 && !nib) {   /* generation streams the weights from DRAM */
            for (size_t k = 0; k < st; k += 64) _mm_prefetch((const char *)(q + RP_PF + k), _MM_HINT_T0);
        }
#endif
        if (nib) {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m512i v = _mm512_load_si512((const void *)(q + 64 * k));
                w[k] = _mm512_and_si512(v, m4);
                w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                if (kind == RK_IQ4_NL) {
                    w[k] = _mm512_shuffle_epi8(tbl, w[k]);
                    w[k + 4] = _mm512_shuffle_epi8(tbl, w[k + 4]);
                }
            }
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) w[k] = _mm512_load_si512((const void *)(q + 64 * k));
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(q + ch)));
        __m512 mw = _mm512_setzero_ps();
        if (mins) mw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(q + ch + 32)));
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const uint8_t *x = pq + (size_t)t * as, *e = pe + (size_t)t * as;
            __m512i s = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            if (T <= 2) {   /* two chains of four (one token has little else to overlap) */
#pragma GCC unroll 4
                for (int g = 0; g < 8; g += 2) {
                    s = _mm512_dpbusd_epi32(s, w[g], _mm512_set1_epi32(ld_i32(x + 4 * g)));
                    s1 = _mm512_dpbusd_epi32(s1, w[g + 1], _mm512_set1_epi32(ld_i32(x + 4 * g + 4)));
                }
                s = _mm512_add_epi32(s, s1);
            } else {
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) s = _mm512_dpbusd_epi32(s, w[g], _mm512_set1_epi32(ld_i32(x + 4 * g)));
            }
            if (lc) s = _mm512_sub_epi32(s, _mm512_slli_epi32(_mm512_set1_epi32(ld_i32(e)), lc));   /* - c bsum */
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(ld_f32(e + od)));   /* fp16(w.d) * fp16(x.d) */
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
            if (mins) acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(mw, _mm512_set1_ps(ld_f32(e + os))));
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + (size_t)t * ldo, acc[t]);
}

/* name(n, grp, act, as, n_tok, out, ldo): all n_tok tokens through body (gemm_t or gemm2_t) in
 * steps of TMAX (8: VNNI, 4: AVX2) tokens, then 4 (when TMAX > 4), 2 and 1. */
#define GEMM_STEPS(name, attr, body, kind, TMAX)                                                                  \
    static attr void name(int n, const void *grp, const void *act, size_t as, int n_tok, float *out, size_t ldo) { \
        const uint8_t *a = act;                                                                                    \
        int t = 0;                                                                                                 \
        for (; t + TMAX <= n_tok; t += TMAX) body(n, grp, a + (size_t)t * as, as, out + (size_t)t * ldo, ldo, kind, TMAX); \
        if (TMAX > 4 && t + 4 <= n_tok) {                                                                          \
            body(n, grp, a + (size_t)t * as, as, out + (size_t)t * ldo, ldo, kind, 4);                             \
            t += 4;                                                                                                \
        }                                                                                                          \
        if (t + 2 <= n_tok) {                                                                                      \
            body(n, grp, a + (size_t)t * as, as, out + (size_t)t * ldo, ldo, kind, 2);                             \
            t += 2;                                                                                                \
        }                                                                                                          \
        if (t < n_tok) body(n, grp, a + (size_t)t * as, as, out + (size_t)t * ldo, ldo, kind, 1);                  \
    }

GEMM_STEPS(gemm_q8_0, VNNI, gemm_t, RK_Q8_0, 8)
GEMM_STEPS(gemm_q4_0, VNNI, gemm_t, RK_Q4_0, 8)
GEMM_STEPS(gemm_q5_0, VNNI, gemm_t, RK_Q5_0, 8)
GEMM_STEPS(gemm_iq4_nl, VNNI, gemm_t, RK_IQ4_NL, 8)
GEMM_STEPS(gemm_q4_1, VNNI, gemm_t, RK_Q4_1, 8)
GEMM_STEPS(gemm_q5_1, VNNI, gemm_t, RK_Q5_1, 8)

/* ---- AVX2: the same groups, the same sums, 8 rows per ymm ----
 * The integer sum of each (row, block, token) is exact whatever computes it;
 * here vpmaddubsw (unsigned x signed bytes, pairs summed to int16) then
 * vpmaddwd by ones (int16 pairs to int32) replace vpdpbusd, with no int16
 * overflow: unsigned weights (Q4_0, Q4_1 nibbles <= 15; Q5_0, Q5_1 values
 * <= 31) meet activations |x| <= 127 (et_act_convert's Q8 blocks), so a pair
 * is at most 2 * 31 * 127 = 7874 and up to four groups (Q5) or eight (Q4:
 * 8 * 3810) are summed in int16 before vpmaddwd; Q8_0 and IQ4_NL use their
 * signed values (Q8_0 byte XOR 0x80, IQ4_NL's table) with the sign trick
 * (|w| unsigned times x with w's sign, as ggml's mul_sum_i8_pairs): a pair
 * is at most 2 * 128 * 127 = 32512, so each group goes to int32 at once and
 * no offset c is subtracted.  The float work per block is the AVX-512
 * kernel's lane for lane (d = dw * x.d; acc + (float)sumi * d; + mw * x.s):
 * the same bits. */
#define AVX2T __attribute__((target("avx2,fma,f16c")))

static inline AVX2T __attribute__((always_inline)) void gemm2_t(int n, const uint8_t *grp, const uint8_t *act,
                                                                size_t as, float *out, size_t ldo, const int kind,
                                                                const int T) {
    const int nib = kind == RK_Q4_0 || kind == RK_IQ4_NL || kind == RK_Q4_1;
    const int mins = kind == RK_Q4_1 || kind == RK_Q5_1;
    const int sgn = kind == RK_Q8_0 || kind == RK_IQ4_NL;            /* signed weights, sign trick */
    const int lc = kind == RK_Q4_0 ? 3 : kind == RK_Q5_0 ? 4 : 0;    /* log2 of c (unsigned forms) */
    const int g16 = kind == RK_Q5_0 || kind == RK_Q5_1 ? 4 : 8;      /* groups summed in int16 */
    const int nb = n / ET_QK, ch = nib ? 256 : 512;
    const size_t st = ((size_t)ch + 32 + (mins ? 32 : 0) + 63) & ~(size_t)63;   /* rp_stride */
    const size_t xbs = mins ? sizeof(et_block_q8_1) : sizeof(et_block_q8_0);
    const uint8_t *pq = act + (mins ? 4 : 2);
    const uint8_t *pe = act + (mins ? et_act_q8_1_extra_offset(n) : et_act_q8_0_extra_offset(n));
    const size_t od = mins ? 0 : (size_t)nb * 4, os = (size_t)nb * 4;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), x80 = _mm256_set1_epi8((char)0x80);
    __m256i tbl = _mm256_setzero_si256();
    if (kind == RK_IQ4_NL) tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)et_kvalues_iq4nl));
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, pq += xbs, pe += 4) {
        const uint8_t *q = grp + (size_t)b * st;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {   /* rows 8h .. 8h+7: bytes 32h .. 32h+31 of every chunk */
            __m256i w[8];
            if (nib) {
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    __m256i v = _mm256_load_si256((const __m256i *)(const void *)(q + 64 * k + 32 * h));
                    w[k] = _mm256_and_si256(v, m4);
                    w[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                    if (kind == RK_IQ4_NL) {
                        w[k] = _mm256_shuffle_epi8(tbl, w[k]);
                        w[k + 4] = _mm256_shuffle_epi8(tbl, w[k + 4]);
                    }
                }
            } else {
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    w[k] = _mm256_load_si256((const __m256i *)(const void *)(q + 64 * k + 32 * h));
                    if (kind == RK_Q8_0) w[k] = _mm256_xor_si256(w[k], x80);
                }
            }
            __m256i aw[8];   /* sign trick: |w| as unsigned bytes */
            if (sgn) {
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) aw[k] = _mm256_sign_epi8(w[k], w[k]);
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(q + ch + 16 * h)));
            __m256 mw = _mm256_setzero_ps();
            if (mins) mw = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(const void *)(q + ch + 32 + 16 * h)));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const uint8_t *x = pq + (size_t)t * as, *e = pe + (size_t)t * as;
                __m256i s = _mm256_setzero_si256();
                if (sgn) {
#pragma GCC unroll 8
                    for (int g = 0; g < 8; g++) {
                        const __m256i xb = _mm256_set1_epi32(ld_i32(x + 4 * g));
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(aw[g], _mm256_sign_epi8(xb, w[g])), ones));
                    }
                } else {
#pragma GCC unroll 2
                    for (int g0 = 0; g0 < 8; g0 += g16) {
                        __m256i p = _mm256_setzero_si256();
#pragma GCC unroll 8
                        for (int g = g0; g < g0 + g16; g++)
                            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[g], _mm256_set1_epi32(ld_i32(x + 4 * g))));
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
                    }
                    if (lc) s = _mm256_sub_epi32(s, _mm256_slli_epi32(_mm256_set1_epi32(ld_i32(e)), lc));   /* - c bsum */
                }
                const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(ld_f32(e + od)));   /* fp16(w.d) * fp16(x.d) */
                acc[t][h] = _mm256_add_ps(acc[t][h], _mm256_mul_ps(_mm256_cvtepi32_ps(s), d));
                if (mins) acc[t][h] = _mm256_add_ps(acc[t][h], _mm256_mul_ps(mw, _mm256_set1_ps(ld_f32(e + os))));
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        _mm256_storeu_ps(out + (size_t)t * ldo, acc[t][0]);
        _mm256_storeu_ps(out + (size_t)t * ldo + 8, acc[t][1]);
    }
}

GEMM_STEPS(gemm2_q8_0, AVX2T, gemm2_t, RK_Q8_0, 4)
GEMM_STEPS(gemm2_q4_0, AVX2T, gemm2_t, RK_Q4_0, 4)
GEMM_STEPS(gemm2_q5_0, AVX2T, gemm2_t, RK_Q5_0, 4)
GEMM_STEPS(gemm2_iq4_nl, AVX2T, gemm2_t, RK_IQ4_NL, 4)
GEMM_STEPS(gemm2_q4_1, AVX2T, gemm2_t, RK_Q4_1, 4)
GEMM_STEPS(gemm2_q5_1, AVX2T, gemm2_t, RK_Q5_1, 4)

/* [kernel set: 0 VNNI, 1 AVX2][RK_ kind] */
static const et_repack RP[2][6] = {
    {{GGML_TYPE_Q8_0, gemm_q8_0}, {GGML_TYPE_Q4_0, gemm_q4_0}, {GGML_TYPE_Q5_0, gemm_q5_0},
     {GGML_TYPE_IQ4_NL, gemm_iq4_nl}, {GGML_TYPE_Q4_1, gemm_q4_1}, {GGML_TYPE_Q5_1, gemm_q5_1}},
    {{GGML_TYPE_Q8_0, gemm2_q8_0}, {GGML_TYPE_Q4_0, gemm2_q4_0}, {GGML_TYPE_Q5_0, gemm2_q5_0},
     {GGML_TYPE_IQ4_NL, gemm2_iq4_nl}, {GGML_TYPE_Q4_1, gemm2_q4_1}, {GGML_TYPE_Q5_1, gemm2_q5_1}},
};

static int vnni, avx2;

static void check_cpu(void) {
    vnni = et_kernels_get("avx512vnni") != NULL;
    avx2 = et_kernels_get("avx2") != NULL;
}

/* CPUID once (it traps to the hypervisor in a VM). */
int et_repack_cpu(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, check_cpu);
    return vnni || avx2;
}

const et_repack *et_repack_get(const et_kernels *k, uint32_t type, int n_in) {
    if (!k || !et_repack_group_bytes(type, n_in) || !et_repack_cpu()) return NULL;
    int set = !strncmp(k->name, "avx512", 6) && vnni ? 0
            : !strncmp(k->name, "avx", 3) && avx2    ? 1   /* "avx2", or "avx512" on a CPU without VNNI */
                                                     : -1;
    if (set < 0) return NULL;
    for (int i = 0; i < 6; i++)
        if (RP[set][i].type == type) return &RP[set][i];
    return NULL;
}

#else

int et_repack_cpu(void) { return 0; }

const et_repack *et_repack_get(const et_kernels *k, uint32_t type, int n_in) {
    (void)k;
    (void)type;
    (void)n_in;
    return NULL;
}

#endif
