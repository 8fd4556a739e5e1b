/* tests/test_tile.c — the repacked multi-row x multi-token kernels of
 * engine/repack.h against the scalar reference dot products: every output
 * (16 rows x n_tok tokens, n_tok 1..17 so that every token step 8/4/2/1 is
 * used) must be bit-identical (==) to et_dot_*_scalar of its original row
 * and token, for Q8_0, Q4_0, Q5_0, IQ4_NL, Q4_1 and Q5_1, random weights
 * with outliers and all-zero blocks, activations of very different
 * magnitudes, and the extreme quants (-128 weights in hostile Q8_0 rows,
 * +-127 activations).  The kernels skip when this CPU or build has none (no
 * AVX512-VNNI); the repacking's size rules are checked everywhere.  (The
 * file keeps its name from the 2-row x 8-token tiles the repacked kernels
 * replaced.) */
#include "testutil.h"

#include <math.h>

#include "../engine/f16row.h"
#include "../engine/kernels.h"
#include "../engine/repack.h"
#include "../export/gguf.h"
#include "../quant/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(void) {   /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static et_dot_fn scalar_dot(uint32_t type) {
    return et_kernels_dot(et_kernels_get("scalar"), type);
}

enum { R = ET_RP_ROWS, TMAX = 17 };

static void check_type(const char *isa, uint32_t type, int n, int trial) {
    const et_kernels *k = et_kernels_get(isa);
    const et_repack *g = et_repack_get(k, type, n);
    if (!g) return;
    size_t rb = et_quant_row_bytes(type, n), ab = (et_act_bytes(type, n) + 63) & ~(size_t)63;
    size_t gb = et_repack_group_bytes(type, n);
    uint8_t *w = malloc(rb * R);
    uint8_t *a = malloc(ab * TMAX);
    uint8_t *p = aligned_alloc(64, gb);
    float *f = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * (R + 3) * TMAX);
    assert_non_null(w);
    assert_non_null(a);
    assert_non_null(p);
    assert_non_null(out);
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < n; i++) f[i] = frand() * (trial == 3 && i % 97 == r ? 40.0f : 1.0f);
        if (trial == 1) for (int i = 0; i < 64 && i < n; i++) f[i] = 0;   /* all-zero blocks */
        if (trial == 2 && r % 4 == 1) for (int i = 0; i < n; i++) f[i] = fabsf(f[i]) + 0.5f;   /* all-positive rows */
        assert_int_equal(et_quantize_row(type, f, w + (size_t)r * rb, n), 0);
        if (type == GGML_TYPE_Q8_0 && trial == 2) {   /* hostile rows: -128 quants (never made by quantizers) */
            et_block_q8_0 *blk = (et_block_q8_0 *)(void *)(w + (size_t)r * rb);
            for (int b = 0; b < n / 32; b++) blk[b].qs[(b + r) % 32] = -128;
        }
    }
    for (int t = 0; t < TMAX; t++) {
        float scale = t % 3 == 0 ? 3.0f : t % 3 == 1 ? 1e-3f : 50.0f;
        for (int i = 0; i < n; i++) f[i] = frand() * scale;
        if (t == 5) for (int i = 0; i < n; i += 2) f[i] = i % 4 ? scale : -scale;   /* +-127 quants */
        et_act_convert(type, f, a + (size_t)t * ab, n);
    }
    et_repack_group(type, n, w, rb, p);
    et_dot_fn ref = scalar_dot(type);
    static const int ntoks[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17};
    for (size_t ti = 0; ti < sizeof ntoks / sizeof ntoks[0]; ti++) {
        int nt = ntoks[ti];
        for (int i = 0; i < (R + 3) * TMAX; i++) out[i] = NAN;
        g->gemm(n, p, a, ab, nt, out, R + 3);   /* ldo wider than 16: only 16 per token written */
        for (int t = 0; t < nt; t++)
            for (int r = 0; r < R + 3; r++) {
                float got = out[t * (R + 3) + r];
                if (r >= R) {
                    if (!isnan(got) && t + 1 < nt) fail_msg("%s n=%d: ldo gap written (token %d col %d)", ggml_type_name(type), n, t, r);
                    continue;
                }
                float want = ref(n, w + (size_t)r * rb, a + (size_t)t * ab);
                if (memcmp(&want, &got, sizeof want))
                    fail_msg("repacked %s (%s) n=%d trial %d n_tok %d row %d token %d: %.9g != scalar %.9g",
                             ggml_type_name(type), isa, n, trial, nt, r, t, got, want);
            }
    }
    free(w);
    free(a);
    free(p);
    free(f);
    free(out);
}

static const uint32_t RP_TYPES[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0,
                                    GGML_TYPE_IQ4_NL, GGML_TYPE_Q4_1, GGML_TYPE_Q5_1};

static void test_repacked_match_scalar(void **state) {
    (void)state;
    static const char *const isas[] = {"avx512vnni", "avx2"};   /* the vpdpbusd kernels, the AVX2 ones */
    int done = 0;
    for (size_t ii = 0; ii < 2; ii++) {
        if (!et_repack_get(et_kernels_get(isas[ii]), GGML_TYPE_Q4_0, 64)) continue;
        done++;
        static const int sizes[] = {32, 96, 576, 1536, 4096 + 32};
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (int trial = 0; trial < 4; trial++)
                for (size_t ti = 0; ti < sizeof RP_TYPES / sizeof RP_TYPES[0]; ti++)
                    check_type(isas[ii], RP_TYPES[ti], sizes[si], trial);
    }
    if (!done) skip();   /* cmocka reports SKIPPED */
}

/* et_repack_unpack_row gives back every row's bytes exactly, for rows of
 * random bytes (any d, m, nibble and fifth-bit pattern a hostile file may
 * hold: the layout must keep them all), on any CPU (plain C). */
static void test_repack_unpack_roundtrip(void **state) {
    (void)state;
    static const int sizes[] = {32, 576, 1536 + 32};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t ti = 0; ti < sizeof RP_TYPES / sizeof RP_TYPES[0]; ti++) {
            const uint32_t type = RP_TYPES[ti];
            const int n = sizes[si];
            const size_t rb = et_quant_row_bytes(type, n), gb = et_repack_group_bytes(type, n);
            uint8_t *w = malloc(rb * R), *p = aligned_alloc(64, gb), *back = malloc(rb);
            assert_non_null(w);
            assert_non_null(p);
            assert_non_null(back);
            for (size_t i = 0; i < rb * R; i++) w[i] = (uint8_t)(frand() * 128.0f + 128.0f);
            et_repack_group(type, n, w, rb, p);
            for (int r = 0; r < R; r++) {
                memset(back, 0xA5, rb);
                et_repack_unpack_row(type, n, p, r, back);
                if (memcmp(back, w + (size_t)r * rb, rb))
                    fail_msg("%s n=%d: row %d unpacked differs from the original", ggml_type_name(type), n, r);
            }
            free(w);
            free(p);
            free(back);
        }
}

/* Which types and sizes are repacked, and the group sizes (repack.h). */
static void test_repack_selection(void **state) {
    (void)state;
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q4_0, 576), 18 * 320);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_IQ4_NL, 64), 2 * 320);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q4_1, 32), 320);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q8_0, 576), 18 * 576);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q5_0, 32), 576);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q5_1, 32), 576);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q4_0, 48), 0);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_F16, 576), 0);
    assert_int_equal(et_repack_group_bytes(GGML_TYPE_Q4_K, 512), 0);
    const et_kernels *sc = et_kernels_get("scalar");
    assert_null(et_repack_get(sc, GGML_TYPE_Q4_0, 576));
    assert_null(et_repack_get(NULL, GGML_TYPE_Q4_0, 576));
    const et_kernels *k = et_kernels_get("avx512vnni"), *k2 = et_kernels_get("avx2");
    assert_int_equal(et_repack_cpu(), k || k2);   /* x86-64 with AVX512-VNNI or AVX2 */
    if (k2) {
        for (size_t ti = 0; ti < sizeof RP_TYPES / sizeof RP_TYPES[0]; ti++)
            assert_non_null(et_repack_get(k2, RP_TYPES[ti], 576));
        assert_null(et_repack_get(k2, GGML_TYPE_Q4_K, 512));
        if (!k) assert_ptr_equal(et_repack_get(et_kernels_best(), GGML_TYPE_Q4_0, 576), et_repack_get(k2, GGML_TYPE_Q4_0, 576));
    }
    if (!k) return;
    assert_true(k2 != NULL);
    assert_ptr_not_equal(et_repack_get(k, GGML_TYPE_Q4_0, 576), et_repack_get(k2, GGML_TYPE_Q4_0, 576));
    for (size_t ti = 0; ti < sizeof RP_TYPES / sizeof RP_TYPES[0]; ti++) assert_non_null(et_repack_get(k, RP_TYPES[ti], 576));
    assert_null(et_repack_get(k, GGML_TYPE_Q4_K, 512));
    assert_null(et_repack_get(k, GGML_TYPE_F16, 576));
    assert_non_null(et_repack_get(et_kernels_get("avx512"), GGML_TYPE_Q4_0, 576));
    assert_non_null(et_repack_get(et_kernels_best(), GGML_TYPE_Q4_0, 576));
}

/* The row conversions (f16row.h) against the scalar functions, bit for
 * bit: random bit patterns (NaNs with payloads, infinities, subnormals,
 * values that round to fp16 subnormals or overflow), and lengths with tails. */
static void test_rows_match_scalar(void **state) {
    (void)state;
    enum { N = 4096 + 13 };
    float *x = malloc(sizeof(float) * N);
    uint16_t *h = malloc(2 * N);
    et_block_q8_0 *qa = malloc(sizeof(et_block_q8_0) * (N / 32)), *qb = malloc(sizeof(et_block_q8_0) * (N / 32));
    assert_non_null(x);
    assert_non_null(h);
    assert_non_null(qa);
    assert_non_null(qb);
    for (int trial = 0; trial < 6; trial++) {
        for (int i = 0; i < N; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            uint32_t u = (uint32_t)(rng >> 32);
            if (trial == 1) u = (u & 0x807fffffu) | ((uint32_t)(100 + (u >> 8) % 60) << 23);   /* near fp16's range ends */
            memcpy(&x[i], &u, 4);
            if (trial >= 2) x[i] = frand() * (trial == 2 ? 1.0f : trial == 3 ? 1e-6f : 7e4f);
            if (trial == 5 && i % 37 == 0) x[i] = i % 3 ? NAN : (i % 2 ? INFINITY : -INFINITY);
        }
        et_fp32_to_fp16_row(x, h, N);
        for (int i = 0; i < N; i++)
            if (h[i] != et_fp32_to_fp16(x[i])) fail_msg("fp16 row: %a -> %04x, scalar %04x", (double)x[i], h[i], et_fp32_to_fp16(x[i]));
        et_quantize_q8_0_row(x, qa, N / 32 * 32);
        et_quantize_q8_0(x, qb, N / 32 * 32);
        if (memcmp(qa, qb, sizeof(et_block_q8_0) * (N / 32))) fail_msg("q8_0 row differs from et_quantize_q8_0 (trial %d)", trial);
    }
    free(x);
    free(h);
    free(qa);
    free(qb);
}

/* The attention dots (f16row.h) against et_dot_f16_scalar: lengths with
 * and without a tail, strided rows. */
static void test_attention_dots_match_scalar(void **state) {
    (void)state;
    if (!et_att_f16_fast()) skip();
    enum { LD = 300 };
    static const int lens[] = {1, 8, 31, 32, 33, 64, 100, 128, 257};
    uint16_t *m = malloc(2 * LD * 64), q16[LD];
    float qf[LD], out[LD];
    assert_non_null(m);
    for (int i = 0; i < LD * 64; i++) m[i] = et_fp32_to_fp16(frand() * 4.0f);
    for (int i = 0; i < LD; i++) {
        q16[i] = et_fp32_to_fp16(frand());
        qf[i] = et_f16_table[q16[i]];
    }
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int n = lens[li];
        et_att_scores_f16(n, 64, m, LD, qf, out);   /* 64 rows of n */
        for (int p = 0; p < 64; p++) {
            float want = et_dot_f16_scalar(n, m + (size_t)p * LD, q16);
            if (memcmp(&want, &out[p], 4)) fail_msg("scores n=%d row %d: %.9g != scalar %.9g", n, p, out[p], want);
        }
        et_att_values_f16(64, n, m, LD, qf, out);   /* the same as values: hd 64, n_kv n */
        for (int d = 0; d < 64; d++) {
            float want = et_dot_f16_scalar(n, m + (size_t)d * LD, q16);
            if (memcmp(&want, &out[d], 4)) fail_msg("values n=%d dim %d: %.9g != scalar %.9g", n, d, out[d], want);
        }
    }
    free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repacked_match_scalar),
        cmocka_unit_test(test_repack_selection),
        cmocka_unit_test(test_repack_unpack_roundtrip),
        cmocka_unit_test(test_rows_match_scalar),
        cmocka_unit_test(test_attention_dots_match_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
