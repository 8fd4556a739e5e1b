/* tests/test_tile.c — the multi-token tiles of engine/tile.h against the
 * scalar reference dot products: every output of a tile must be
 * bit-identical (==) to et_dot_q4_0_scalar / et_dot_q8_0_scalar /
 * et_dot_q4_1_scalar (Q8_1 activations) of its row
 * and token, for random weights with outliers and all-zero blocks,
 * activations of very different magnitudes, and the extreme quants
 * (-128 weights in hostile Q8_0 rows, +-127 activations).  Skips when this
 * CPU or build has no tile (no AVX512-VNNI). */
#include "testutil.h"

#include <math.h>

#include "../engine/f16row.h"
#include "../engine/tile.h"
#include "../engine/kernels.h"
#include "../export/gguf.h"
#include "../quant/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(void) {   /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void check_type(uint32_t type, int n, int trial) {
    const et_kernels *k = et_kernels_get("avx512");
    const et_tile *g = et_tile_get(k, type, n);
    if (!g) return;
    int R = g->tile_rows, T = g->tile_tok;
    size_t rb = et_quant_row_bytes(type, n), ab = et_act_bytes(type, n), ps = et_tile_act_bytes(n);
    uint8_t *w = malloc(rb * (size_t)R);
    uint8_t *a = malloc(ab * (size_t)T);
    uint8_t *p = aligned_alloc(64, ps * (size_t)T);
    float *f = malloc(sizeof(float) * (size_t)n), out[64];
    assert_non_null(w);
    assert_non_null(a);
    assert_non_null(p);
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < n; i++) f[i] = frand() * (trial == 3 && i % 97 == r ? 40.0f : 1.0f);
        if (trial == 1) for (int i = 0; i < 64; i++) f[i] = 0;   /* all-zero blocks */
        assert_int_equal(et_quantize_row(type, f, w + (size_t)r * rb, n), 0);
        if (type == GGML_TYPE_Q8_0 && trial == 2) {   /* hostile rows: -128 quants (never made by quantizers) */
            et_block_q8_0 *blk = (et_block_q8_0 *)(void *)(w + (size_t)r * rb);
            for (int b = 0; b < n / 32; b++) blk[b].qs[(b + r) % 32] = -128;
        }
    }
    for (int t = 0; t < T; t++) {
        float scale = t % 3 == 0 ? 3.0f : t % 3 == 1 ? 1e-3f : 50.0f;
        for (int i = 0; i < n; i++) f[i] = frand() * scale;
        if (t == 5) for (int i = 0; i < n; i += 2) f[i] = i % 4 ? scale : -scale;   /* +-127 quants */
        et_act_convert(type, f, a + (size_t)t * ab, n);
        g->pack((const et_block_q8_0 *)(const void *)(a + (size_t)t * ab), n, p, t);
    }
    g->tile(n, w, rb, p, out, (size_t)R);
    et_dot_fn ref = type == GGML_TYPE_Q4_0 ? et_dot_q4_0_scalar : type == GGML_TYPE_Q4_1 ? et_dot_q4_1_scalar : et_dot_q8_0_scalar;
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float want = ref(n, w + (size_t)r * rb, a + (size_t)t * ab), got = out[t * R + r];
            if (memcmp(&want, &got, sizeof want))
                fail_msg("%s tile %s n=%d trial %d row %d token %d: %.9g != scalar %.9g", g->name,
                         ggml_type_name(type), n, trial, r, t, got, want);
        }
    free(w);
    free(a);
    free(p);
    free(f);
}

static void test_tiles_match_scalar(void **state) {
    (void)state;
    const et_kernels *k = et_kernels_get("avx512");
    if (!et_tile_get(k, GGML_TYPE_Q4_0, 64)) skip();   /* prints nothing: cmocka reports SKIPPED */
    static const int sizes[] = {64, 576, 1536, 4096 + 64};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int trial = 0; trial < 4; trial++) {
            check_type(GGML_TYPE_Q4_0, sizes[si], trial);
            check_type(GGML_TYPE_Q8_0, sizes[si], trial);
            check_type(GGML_TYPE_Q4_1, sizes[si], trial);
        }
}

/* Which types and sizes have a tile: only Q4_0/Q8_0/Q4_1, n a multiple of 64,
 * and only on the avx512 kernel set. */
static void test_tile_selection(void **state) {
    (void)state;
    const et_kernels *sc = et_kernels_get("scalar");
    assert_null(et_tile_get(sc, GGML_TYPE_Q4_0, 576));
    assert_null(et_tile_get(NULL, GGML_TYPE_Q4_0, 576));
    const et_kernels *k = et_kernels_get("avx512");
    if (!k) return;
    assert_null(et_tile_get(k, GGML_TYPE_Q4_0, 32));
    assert_null(et_tile_get(k, GGML_TYPE_Q4_0, 96));   /* an odd number of blocks */
    assert_null(et_tile_get(k, GGML_TYPE_F16, 576));
    assert_null(et_tile_get(k, GGML_TYPE_Q4_K, 512));
    assert_int_equal(et_tile_act_bytes(576), 3 * 576);
    /* every AVX-512 set gets the tiles when the CPU has VNNI (the fastest
     * set, the one et_kernels_best picks, included) */
    const et_kernels *kv = et_kernels_get("avx512vnni");
    if (kv && et_tile_get(k, GGML_TYPE_Q4_0, 576)) {
        assert_non_null(et_tile_get(kv, GGML_TYPE_Q4_0, 576));
        assert_non_null(et_tile_get(kv, GGML_TYPE_Q8_0, 576));
        assert_non_null(et_tile_get(kv, GGML_TYPE_Q4_1, 576));
        assert_null(et_tile_get(kv, GGML_TYPE_Q5_1, 576));
        assert_non_null(et_tile_get(et_kernels_best(), GGML_TYPE_Q4_0, 576));
    }
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
        cmocka_unit_test(test_tiles_match_scalar),
        cmocka_unit_test(test_tile_selection),
        cmocka_unit_test(test_rows_match_scalar),
        cmocka_unit_test(test_attention_dots_match_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
