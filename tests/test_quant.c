/* tests/test_quant.c — quant/ row functions.
 *
 * - dequantization of hand-built blocks against values worked out by hand
 *   from the block layouts in ggml-common.h (independent of quant/);
 * - quantization of small hand-checkable rows (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1,
 *   F16, BF16) and of rows on the Q2_K/Q3_K/Q5_K grids (exact round trip);
 * - Q2_K/Q3_K/Q5_K dequantization of random blocks against each weight's
 *   value worked out in double from its bit positions (their quantization
 *   is checked bit for bit by test_quantize_model's sha256 of whole files);
 * - Q4_1/Q5_1 on random rows (outliers, zeros, constant and negative
 *   blocks) against the ggml formula recomputed here in double;
 * - round-trip error bounds on random rows with zeros and outliers;
 * - bit-exactness: every tensor of ../shared/golden/quant/rand-llama-256.gguf
 *   quantized to the type llama-quantize chose for it gives exactly the
 *   bytes of rand-llama-256-<TYPE>.gguf (a failure names tensor and block).
 * The golden files are read by a small GGUF walker below, written apart
 * from export/gguf.c on purpose. */
#include "testutil.h"

#include <math.h>

#include "../quant/quant.h"

/* ------------------------------------------------------------ helpers */

static const char *tname(uint32_t t) {
    switch (t) {
    case GGML_TYPE_F32: return "F32";
    case GGML_TYPE_F16: return "F16";
    case GGML_TYPE_BF16: return "BF16";
    case GGML_TYPE_Q8_0: return "Q8_0";
    case GGML_TYPE_Q4_0: return "Q4_0";
    case GGML_TYPE_Q5_0: return "Q5_0";
    case GGML_TYPE_Q4_1: return "Q4_1";
    case GGML_TYPE_Q5_1: return "Q5_1";
    case GGML_TYPE_Q4_K: return "Q4_K";
    case GGML_TYPE_Q6_K: return "Q6_K";
    case GGML_TYPE_Q5_K: return "Q5_K";
    case GGML_TYPE_Q3_K: return "Q3_K";
    case GGML_TYPE_Q2_K: return "Q2_K";
    case GGML_TYPE_IQ4_NL: return "IQ4_NL";
    default: return "?";
    }
}

static uint16_t h(float f) { return et_fp32_to_fp16(f); }

/* xorshift32 uniform in [-1, 1) */
static float frand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)((*s >> 8) * (1.0 / 8388608.0)) * 2.0f - 1.0f;
}

/* ---------------------------------------------- hand-built dequantization */

static void test_dequant_q8_0(void **state) {
    (void)state;
    et_block_q8_0 b[2];
    b[0].d = h(0.5f);
    b[1].d = h(-0.25f);
    for (int j = 0; j < 32; j++) {
        b[0].qs[j] = (int8_t)(j * 8 - 127);  /* -127, -119, ... */
        b[1].qs[j] = (int8_t)(j - 16);
    }
    float y[64];
    et_dequantize_row_q8_0(b, y, 64);
    for (int j = 0; j < 32; j++) {
        assert_true(y[j] == (float)(j * 8 - 127) * 0.5f);
        assert_true(y[32 + j] == (float)(j - 16) * -0.25f);
    }
    assert_true(y[0] == -63.5f && y[32 + 0] == 4.0f);
}

static void test_dequant_q4_0(void **state) {
    (void)state;
    et_block_q4_0 b;
    b.d = h(2.0f);
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    et_dequantize_row_q4_0(&b, y, 32);
    /* weight j (< 16) is the low nibble j: (j - 8) * 2; weight 16 + j is the
     * high nibble 15 - j: (7 - j) * 2 */
    assert_true(y[0] == -16.0f && y[8] == 0.0f && y[15] == 14.0f);
    assert_true(y[16] == 14.0f && y[31] == -16.0f);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == (float)((j - 8) * 2));
        assert_true(y[16 + j] == (float)((7 - j) * 2));
    }
}

static void test_dequant_q5_0(void **state) {
    (void)state;
    et_block_q5_0 b;
    b.d = h(1.0f);
    /* qh = 0x80000001 little-endian: fifth bit set for weights 0 and 31 */
    b.qh[0] = 0x01; b.qh[1] = 0x00; b.qh[2] = 0x00; b.qh[3] = 0x80;
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (j << 4));
    float y[32];
    et_dequantize_row_q5_0(&b, y, 32);
    assert_true(y[0] == 0.0f);         /* (0 | 16) - 16 */
    assert_true(y[1] == -15.0f);       /* 1 - 16 */
    assert_true(y[15] == -1.0f);       /* 15 - 16 */
    assert_true(y[16] == -16.0f);      /* 0 - 16 */
    assert_true(y[31] == 15.0f);       /* (15 | 16) - 16 */
    assert_true(y[30] == -2.0f);       /* 14 - 16 */
}

static void test_dequant_q4_1(void **state) {
    (void)state;
    et_block_q4_1 b[2];
    b[0].d = h(0.5f);
    b[0].m = h(-3.0f);
    b[1].d = h(0.0f);
    b[1].m = h(1.5f);
    for (int j = 0; j < 16; j++) b[0].qs[j] = b[1].qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[64];
    et_dequantize_row_q4_1(b, y, 64);
    /* weight j < 16: low nibble j -> 0.5 j - 3; weight 16 + j: high nibble 15 - j */
    assert_true(y[0] == -3.0f && y[6] == 0.0f && y[15] == 4.5f);
    assert_true(y[16] == 4.5f && y[31] == -3.0f);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * (float)j - 3.0f);
        assert_true(y[16 + j] == 0.5f * (float)(15 - j) - 3.0f);
    }
    for (int j = 32; j < 64; j++) assert_true(y[j] == 1.5f);   /* d = 0: every weight is m */
}

static void test_dequant_q5_1(void **state) {
    (void)state;
    et_block_q5_1 b;
    b.d = h(0.25f);
    b.m = h(1.0f);
    /* qh = 0x80000001 little-endian: fifth bit set for weights 0 and 31 */
    b.qh[0] = 0x01; b.qh[1] = 0x00; b.qh[2] = 0x00; b.qh[3] = 0x80;
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (j << 4));
    float y[32];
    et_dequantize_row_q5_1(&b, y, 32);
    assert_true(y[0] == 5.0f);          /* (0 | 16) * 0.25 + 1 */
    assert_true(y[1] == 1.25f);         /* 1 * 0.25 + 1 */
    assert_true(y[15] == 4.75f);        /* 15 * 0.25 + 1 */
    assert_true(y[16] == 1.0f);         /* 0 */
    assert_true(y[30] == 4.5f);         /* 14 */
    assert_true(y[31] == 8.75f);        /* (15 | 16) * 0.25 + 1 */
}

static void test_dequant_q4_K(void **state) {
    (void)state;
    et_block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.5f);
    b.dmin = h(0.25f);
    /* sub-block scales/mins (6 bit), packed by hand:
     *   j=0: sc = 0xC1 & 63 = 1,  m = scales[4] & 63 = 2
     *   j=1: sc = 3,              m = 4
     *   j=4: sc = (scales[8] & 15) | (scales[0] >> 6) << 4 = 5 | 3<<4 = 53,
     *        m  = (scales[8] >> 4) | (scales[4] >> 6) << 4 = 6 | 0 = 6 */
    b.scales[0] = 0xC1; b.scales[1] = 3; b.scales[4] = 2; b.scales[5] = 4;
    b.scales[8] = 0x65;
    for (int l = 0; l < 32; l++) b.qs[l] = (uint8_t)((l & 15) | (15 - (l & 15)) << 4);
    b.qs[64 + 0] = 0x0F;  /* group 2 (weights 128..191), weight 128: q = 15 */
    float y[256];
    et_dequantize_row_q4_K(&b, y, 256);
    /* weight l < 32 (sub-block 0): 0.5*1*(l & 15) - 0.25*2 */
    assert_true(y[0] == -0.5f);
    assert_true(y[5] == 2.0f);
    /* weight 32 + l (sub-block 1, high nibbles): 0.5*3*(15 - (l&15)) - 0.25*4 */
    assert_true(y[32] == 21.5f);
    assert_true(y[47] == -1.0f);
    /* weight 128 (sub-block 4): 0.5*53*15 - 0.25*6 = 396 */
    assert_true(y[128] == 396.0f);
    /* weight 129 (sub-block 4, q = 0): -1.5 */
    assert_true(y[129] == -1.5f);
    /* sub-blocks 2,3,5,6,7 have scale and min 0 */
    assert_true(y[64] == 0.0f && y[255] == 0.0f);
}

static void test_dequant_q6_K(void **state) {
    (void)state;
    et_block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.125f);
    for (int s = 0; s < 16; s++) b.scales[s] = (int8_t)(s - 8);
    /* weight 0: low 4 bits ql[0] & 15 = 5, high 2 bits qh[0] & 3 = 2 -> q = 37 - 32 = 5,
     *           sub-block 0, scale -8: 0.125 * -8 * 5 = -5
     * weight 64: ql[0] >> 4 = 9, (qh[0] >> 4) & 3 = 1 -> q = 25 - 32 = -7,
     *            sub-block 4, scale -4: 0.125 * -4 * -7 = 3.5
     * weight 32: ql[32] & 15 = 0, (qh[0] >> 2) & 3 = 3 -> q = 48 - 32 = 16,
     *            sub-block 2, scale -6: -12
     * weight 224 (second half, l = 0 of 96..127): ql[64+32] >> 4 = 0xF,
     *            (qh[32] >> 6) & 3 = 3 -> q = 63 - 32 = 31, sub-block 14, scale 6: 23.25 */
    b.ql[0] = 0x95;
    b.qh[0] = 0x1E;  /* bits 0-1 = 2, bits 2-3 = 3, bits 4-5 = 1, bits 6-7 = 0 */
    b.ql[96] = 0xF0;
    b.qh[32] = 0xC0;
    float y[256];
    et_dequantize_row_q6_K(&b, y, 256);
    assert_true(y[0] == -5.0f);
    assert_true(y[64] == 3.5f);
    assert_true(y[32] == -12.0f);
    assert_true(y[224] == 23.25f);
    /* weight 96: ql[32] >> 4 = 0, (qh[0] >> 6) & 3 = 0 -> -32, sub-block 6 (scale -2): 8 */
    assert_true(y[96] == 8.0f);
    /* weight 1: all bits zero -> q = -32, sub-block 0 (scale -8): 32 */
    assert_true(y[1] == 32.0f);
}

static void test_dequant_q5_K(void **state) {
    (void)state;
    et_block_q5_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.5f);
    b.dmin = h(0.25f);
    /* scales/mins packed as Q4_K's (see test_dequant_q4_K): j=0 sc 1 m 2,
     * j=1 sc 3 m 4, j=4 sc 53 m 6 */
    b.scales[0] = 0xC1; b.scales[1] = 3; b.scales[4] = 2; b.scales[5] = 4;
    b.scales[8] = 0x65;
    /* weight 0: low nibble of qs[0] = 10, qh[0] bit 0 -> q = 26: 0.5*1*26 - 0.25*2 = 12.5
     * weight 32: high nibble of qs[0] = 3, qh[0] bit 1 -> q = 19: 0.5*3*19 - 0.25*4 = 27.5
     * weight 130 (group 2, l = 2, sub-block 4): low nibble of qs[66] = 7,
     *   qh[2] bit 4 -> q = 23: 0.5*53*23 - 0.25*6 = 608
     * weight 66 (group 1, sub-block 2, scale and min 0): qh[2] bit 2 -> 0 */
    b.qs[0] = 0x3A;
    b.qh[0] = 0x03;
    b.qs[66] = 0x07;
    b.qh[2] = 0x14;
    float y[256];
    et_dequantize_row_q5_K(&b, y, 256);
    assert_true(y[0] == 12.5f);
    assert_true(y[32] == 27.5f);
    assert_true(y[130] == 608.0f);
    assert_true(y[66] == 0.0f);
    assert_true(y[1] == -0.5f);   /* q = 0 in sub-block 0 */
    assert_true(y[33] == -1.0f);  /* q = 0 in sub-block 1 */
    assert_true(y[131] == -1.5f); /* q = 0 in sub-block 4 */
}

static void test_dequant_q3_K(void **state) {
    (void)state;
    et_block_q3_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.25f);
    /* stored 6-bit scales, effective = stored - 32:
     *   j=0: low 4 = scales[0] & 15 = 1, high 2 = scales[8] & 3 = 2 -> 33 -> 1
     *   j=8: low 4 = scales[0] >> 4 = 2, high 2 = (scales[8] >> 4) & 3 = 3 -> 50 -> 18
     *   j=1: low 4 = scales[1] & 15 = 15, high 2 = scales[9] & 3 = 3 -> 63 -> 31
     *   all others 0 -> -32 */
    b.scales[0] = 0x21; b.scales[8] = 0x32; b.scales[1] = 0x0F; b.scales[9] = 0x03;
    /* weight 128h + 32s + l: low bits (qs[32h + l] >> 2s) & 3, high bit
     * hmask[l] bit 4h + s (set: q - 0, clear: q - 4) */
    b.qs[0] = 0x03; b.hmask[0] = 0x11;  /* weight 0: 3 - 0; weight 128: hmask bit 4 */
    b.qs[32] = 0x02;                     /* weight 128: 2 - 0 */
    b.qs[40] = 0x30; b.hmask[8] = 0x40;  /* weight 200 (h 1, s 2, l 8): 3 - 0 */
    float y[256];
    et_dequantize_row_q3_K(&b, y, 256);
    assert_true(y[0] == 0.75f);    /* 0.25 * 1 * 3 */
    assert_true(y[1] == -1.0f);    /* 0.25 * 1 * -4 */
    assert_true(y[128] == 9.0f);   /* 0.25 * 18 * 2 */
    assert_true(y[64] == 32.0f);   /* sub-block 4: 0.25 * -32 * -4 */
    assert_true(y[16] == -31.0f);  /* sub-block 1: 0.25 * 31 * -4 */
    assert_true(y[200] == -24.0f); /* sub-block 12: 0.25 * -32 * 3 */
}

static void test_dequant_q2_K(void **state) {
    (void)state;
    et_block_q2_K b;
    memset(&b, 0, sizeof b);
    b.d = h(0.5f);
    b.dmin = h(0.125f);
    /* scales[j] = scale | min << 4 */
    b.scales[0] = 0x21;  /* sc 1, m 2 */
    b.scales[8] = 0x3F;  /* sc 15, m 3 */
    b.scales[4] = 0xF0;  /* sc 0, m 15 */
    b.scales[6] = 0x13;  /* sc 3, m 1 */
    /* weight 128h + 32s + l: (qs[32h + l] >> 2s) & 3 */
    b.qs[0] = 0x83;  /* weight 0: 3, weight 64: 0, weight 96: 2 */
    b.qs[32] = 0x02; /* weight 128: 2 */
    float y[256];
    et_dequantize_row_q2_K(&b, y, 256);
    assert_true(y[0] == 1.25f);     /* 0.5*1*3 - 0.125*2 */
    assert_true(y[1] == -0.25f);    /* q 0 */
    assert_true(y[128] == 14.625f); /* 0.5*15*2 - 0.125*3 */
    assert_true(y[64] == -1.875f);  /* 0 - 0.125*15 */
    assert_true(y[96] == 2.875f);   /* 0.5*3*2 - 0.125*1 */
    assert_true(y[255] == 0.0f);
}

/* Random Q2_K/Q3_K/Q5_K blocks (random bytes, finite fp16 scales) against
 * the value of each weight worked out here in double from its bit
 * positions: every product is exact in float, so ggml's float result is
 * the double rounded once. */
static uint32_t xs32(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}
static uint16_t rand_h(uint32_t *s) {
    uint16_t v;
    do v = (uint16_t)xs32(s);
    while (((v >> 10) & 31) == 31);  /* no inf/NaN */
    return v;
}
static void test_k_dequant_vs_double(void **state) {
    (void)state;
    uint32_t s = 777;
    for (int rep = 0; rep < 200; rep++) {
        float y[256];
        /* Q5_K */
        et_block_q5_K a;
        for (size_t i = 0; i < sizeof a; i++) ((uint8_t *)&a)[i] = (uint8_t)xs32(&s);
        a.d = rand_h(&s);
        a.dmin = rand_h(&s);
        et_dequantize_row_q5_K(&a, y, 256);
        for (int w = 0; w < 256; w++) {
            int j = w / 32, g = w / 64, l = w % 32, hi = (w / 32) & 1;
            int sc = j < 4 ? a.scales[j] & 63 : (a.scales[j + 4] & 15) + 16 * (a.scales[j - 4] >> 6);
            int mn = j < 4 ? a.scales[j + 4] & 63 : (a.scales[j + 4] >> 4) + 16 * (a.scales[j] >> 6);
            int q = (hi ? a.qs[32 * g + l] >> 4 : a.qs[32 * g + l] & 15) + 16 * ((a.qh[l] >> (2 * g + hi)) & 1);
            double v = (double)et_fp16_to_fp32(a.d) * sc * q - (double)et_fp16_to_fp32(a.dmin) * mn;
            if (y[w] != (float)v) fail_msg("Q5_K rep %d weight %d: %.9g, formula %.9g", rep, w, y[w], v);
        }
        /* Q3_K */
        et_block_q3_K c;
        for (size_t i = 0; i < sizeof c; i++) ((uint8_t *)&c)[i] = (uint8_t)xs32(&s);
        c.d = rand_h(&s);
        et_dequantize_row_q3_K(&c, y, 256);
        for (int w = 0; w < 256; w++) {
            int hh = w / 128, sh = (w % 128) / 32, l = w % 32, j = w / 16;
            int lo4 = j < 8 ? c.scales[j] & 15 : c.scales[j - 8] >> 4;
            int sc = lo4 + 16 * ((c.scales[8 + j % 4] >> (2 * (j / 4))) & 3) - 32;
            int q = ((c.qs[32 * hh + l] >> (2 * sh)) & 3) + 4 * ((c.hmask[l] >> (4 * hh + sh)) & 1) - 4;
            double v = (double)et_fp16_to_fp32(c.d) * sc * q;
            if (y[w] != (float)v) fail_msg("Q3_K rep %d weight %d: %.9g, formula %.9g", rep, w, y[w], v);
        }
        /* Q2_K */
        et_block_q2_K b;
        for (size_t i = 0; i < sizeof b; i++) ((uint8_t *)&b)[i] = (uint8_t)xs32(&s);
        b.d = rand_h(&s);
        b.dmin = rand_h(&s);
        et_dequantize_row_q2_K(&b, y, 256);
        for (int w = 0; w < 256; w++) {
            int hh = w / 128, sh = (w % 128) / 32, l = w % 32, j = w / 16;
            int q = (b.qs[32 * hh + l] >> (2 * sh)) & 3;
            double v = (double)et_fp16_to_fp32(b.d) * (b.scales[j] & 15) * q -
                       (double)et_fp16_to_fp32(b.dmin) * (b.scales[j] >> 4);
            if (y[w] != (float)v) fail_msg("Q2_K rep %d weight %d: %.9g, formula %.9g", rep, w, y[w], v);
        }
    }
}

/* Quantization of rows whose best fit is known: a sub-block holding the
 * grid values themselves must come back exactly (Q3_K: 16 values c*l with
 * l in -4..3 in every sub-block, same c, so the scales are all equal and
 * the error is zero; Q5_K/Q2_K: c*q with q spanning 0..nmax, no min, c a
 * multiple of 63 or 15 so that the fp16 super-block scale is exact). */
static void test_quant_k_exact_grid(void **state) {
    (void)state;
    float x[256], y[256];
    uint8_t q[256];
    /* Q3_K: l = (i % 8) - 4, c = 0.5 */
    for (int i = 0; i < 256; i++) x[i] = 0.5f * (float)((i % 8) - 4);
    et_quantize_row_q3_K(x, q, 256);
    et_dequantize_row_q3_K(q, y, 256);
    for (int i = 0; i < 256; i++)
        if (y[i] != x[i]) fail_msg("Q3_K weight %d: %g != %g", i, y[i], x[i]);
    /* Q5_K: q = i % 32, c = 63/256 so that d = c/63 is exact in fp16 */
    for (int i = 0; i < 256; i++) x[i] = (63.0f / 256) * (float)(i % 32);
    et_quantize_row_q5_K(x, q, 256);
    et_dequantize_row_q5_K(q, y, 256);
    for (int i = 0; i < 256; i++)
        if (y[i] != x[i]) fail_msg("Q5_K weight %d: %g != %g", i, y[i], x[i]);
    /* Q2_K: q = i % 4, c = 15/8 so that d = c/15 is exact */
    for (int i = 0; i < 256; i++) x[i] = (15.0f / 8) * (float)(i % 4);
    et_quantize_row_q2_K(x, q, 256);
    et_dequantize_row_q2_K(q, y, 256);
    for (int i = 0; i < 256; i++)
        if (y[i] != x[i]) fail_msg("Q2_K weight %d: %g != %g", i, y[i], x[i]);
    /* all zero: d = dmin = 0 and every weight 0 */
    memset(x, 0, sizeof x);
    const uint32_t types[] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K};
    for (int t = 0; t < 3; t++) {
        assert_int_equal(et_quantize_row(types[t], x, q, 256), 0);
        assert_int_equal(et_dequantize_row(types[t], q, y, 256), 0);
        for (int i = 0; i < 256; i++) assert_true(y[i] == 0.0f);
    }
}

static void test_dequant_iq4_nl(void **state) {
    (void)state;
    /* ggml-common.h kvalues_iq4nl, written out again here */
    static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    et_block_iq4_nl b;
    b.d = h(0.5f);
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    et_dequantize_row_iq4_nl(&b, y, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == 0.5f * (float)kv[j]);            /* low nibble j: weight j */
        assert_true(y[j + 16] == 0.5f * (float)kv[15 - j]);  /* high nibble: weight 16 + j */
    }
    assert_true(y[0] == -63.5f && y[15] == 56.5f && y[16] == 56.5f);
}

/* IQ4_NL quantization, checked where the answer is known: a block whose
 * values are c * kvalues (every table entry twice) comes back exactly when
 * c is a power of two (the fit finds the scale c and fp16 holds it), and
 * an all-zero block gives d = 0 with every index 8 (the table value 1
 * nearest to 0, as ggml's best_index_int8: 0 - (-10) < 1 - 0 is false). */
static void test_quant_iq4_nl(void **state) {
    (void)state;
    float x[64], y[64];
    et_block_iq4_nl q[2];
    for (int i = 0; i < 32; i++) x[i] = 0.25f * (float)et_kvalues_iq4nl[(i * 7) % 16];
    for (int i = 32; i < 64; i++) x[i] = 0.0f;
    et_quantize_row_iq4_nl(x, q, 64);
    et_dequantize_row_iq4_nl(q, y, 64);
    for (int i = 0; i < 32; i++)
        if (y[i] != x[i]) fail_msg("IQ4_NL weight %d: %g != %g", i, y[i], x[i]);
    assert_int_equal(q[1].d, 0);
    for (int j = 0; j < 16; j++) assert_int_equal(q[1].qs[j], 0x88);
    for (int i = 32; i < 64; i++) assert_true(y[i] == 0.0f);
}

static void test_dequant_f16_bf16(void **state) {
    (void)state;
    uint16_t a[3] = {0x3c00, 0xc000, 0x3555};  /* 1, -2, 0.333251953125 */
    uint16_t bb[2] = {0x3f80, 0xc040};         /* 1, -3 */
    float y[3];
    et_dequantize_row_f16(a, y, 3);
    assert_true(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.333251953125f);
    et_dequantize_row_bf16(bb, y, 2);
    assert_true(y[0] == 1.0f && y[1] == -3.0f);
}

/* ------------------------------------------------ hand-checked quantization */

static void test_quant_q8_0_small(void **state) {
    (void)state;
    float x[32];
    /* amax 63.5: d = 63.5 / 127 = 0.5 exactly, 1/d = 2, q = roundf(2x),
     * ties away from zero: 1.25 -> 3, -1.25 -> -3, 0.25 -> 1 */
    for (int j = 0; j < 32; j++) x[j] = (float)j * 0.75f - 12.0f;  /* -12 .. 11.25 */
    x[0] = -63.5f;
    x[1] = 1.25f;
    x[2] = -1.25f;
    x[3] = 0.25f;
    et_block_q8_0 b;
    et_quantize_row_q8_0(x, &b, 32);
    assert_int_equal(b.d, 0x3800);  /* fp16 0.5 */
    assert_int_equal(b.qs[0], -127);
    assert_int_equal(b.qs[1], 3);
    assert_int_equal(b.qs[2], -3);
    assert_int_equal(b.qs[3], 1);
    for (int j = 4; j < 32; j++) assert_int_equal(b.qs[j], (int)lround(2.0 * (j * 0.75 - 12.0)));
    assert_int_equal(b.qs[31], 23);  /* 2 * 11.25 = 22.5 -> 23 */
    /* all zeros: d = 0, q = 0 */
    memset(x, 0, sizeof x);
    et_quantize_row_q8_0(x, &b, 32);
    assert_int_equal(b.d, 0);
    for (int j = 0; j < 32; j++) assert_int_equal(b.qs[j], 0);
}

static void test_quant_q4_0_small(void **state) {
    (void)state;
    float x[32];
    /* values k/4 for k = -8..7 twice; the largest magnitude is -2 (k = -8),
     * so d = -2 / -8 = 0.25, 1/d = 4: x * 4 = k, and k + 8.5 truncated is
     * k + 8, the nibble. */
    for (int j = 0; j < 32; j++) x[j] = (float)((j % 16) - 8) / 4.0f;
    et_block_q4_0 b;
    et_quantize_row_q4_0(x, &b, 32);
    assert_int_equal(b.d, et_fp32_to_fp16(0.25f));
    for (int j = 0; j < 16; j++) assert_int_equal(b.qs[j], j | (j << 4));
    /* signed max: the largest magnitude is positive (+2): d = -0.25, and the
     * value 2 maps to -8 (nibble 0); -1.75 * (1/-0.25) = 7 -> 15 */
    for (int j = 0; j < 32; j++) x[j] = 0.0f;
    x[0] = 2.0f;
    x[1] = -1.75f;
    x[2] = -1.875f; /* 7.5 + 8.5 = 16 -> clamped to 15 */
    et_quantize_row_q4_0(x, &b, 32);
    assert_int_equal(b.d, et_fp32_to_fp16(-0.25f));
    assert_int_equal(b.qs[0] & 15, 0);
    assert_int_equal(b.qs[1] & 15, 15);
    assert_int_equal(b.qs[2] & 15, 15);
    assert_int_equal(b.qs[3] & 15, 8);
    assert_int_equal(b.qs[3] >> 4, 8);
}

static void test_quant_q5_0_small(void **state) {
    (void)state;
    float x[32];
    /* largest magnitude -16 -> d = 1, q = x + 16 */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    et_block_q5_0 b;
    et_quantize_row_q5_0(x, &b, 32);
    assert_int_equal(b.d, et_fp32_to_fp16(1.0f));
    /* q[j] = j: weights 16..31 have bit 4 set: qh = 0xFFFF0000 */
    assert_int_equal(b.qh[0], 0x00);
    assert_int_equal(b.qh[1], 0x00);
    assert_int_equal(b.qh[2], 0xFF);
    assert_int_equal(b.qh[3], 0xFF);
    for (int j = 0; j < 16; j++) assert_int_equal(b.qs[j], j | (j << 4));
}

static void test_quant_q4_1_small(void **state) {
    (void)state;
    float x[32];
    /* min -4, max 11: d = 15 / 15 = 1, id = 1, q = (int)(x + 4 + 0.5):
     * integers map to x + 4; +0.5 rounds up (ties up: truncation after
     * +0.5 of a non-negative value); +0.25 rounds down */
    for (int j = 0; j < 32; j++) x[j] = (float)((j * 7) % 16) - 4.0f;
    x[0] = -4.0f;
    x[1] = 11.0f;
    x[2] = 2.5f;    /* 6.5 -> 7 */
    x[3] = -3.75f;  /* 0.25 -> 0 */
    x[17] = 9.5f;   /* 13.5 -> 14 */
    et_block_q4_1 b;
    et_quantize_row_q4_1(x, &b, 32);
    assert_int_equal(b.d, et_fp32_to_fp16(1.0f));
    assert_int_equal(b.m, et_fp32_to_fp16(-4.0f));
    int want[32];
    for (int j = 0; j < 32; j++) want[j] = (j * 7) % 16;
    want[0] = 0; want[1] = 15; want[2] = 7; want[3] = 0; want[17] = 14;
    for (int j = 0; j < 16; j++) {
        assert_int_equal(b.qs[j] & 15, want[j]);
        assert_int_equal(b.qs[j] >> 4, want[16 + j]);
    }
    /* a constant block: d = 0, id = 0, q = 0, m = the value (fp16) */
    for (int j = 0; j < 32; j++) x[j] = 0.1f;
    et_quantize_row_q4_1(x, &b, 32);
    assert_int_equal(b.d, 0);
    assert_int_equal(b.m, et_fp32_to_fp16(0.1f));
    for (int j = 0; j < 16; j++) assert_int_equal(b.qs[j], 0);
}

static void test_quant_q5_1_small(void **state) {
    (void)state;
    float x[32];
    /* x = j/2 - 3: min -3, max 12.5, d = 15.5 / 31 = 0.5, q = j */
    for (int j = 0; j < 32; j++) x[j] = (float)j * 0.5f - 3.0f;
    et_block_q5_1 b;
    et_quantize_row_q5_1(x, &b, 32);
    assert_int_equal(b.d, et_fp32_to_fp16(0.5f));
    assert_int_equal(b.m, et_fp32_to_fp16(-3.0f));
    /* q[j] = j: weights 16..31 have bit 4 set: qh = 0xFFFF0000 */
    assert_int_equal(b.qh[0], 0x00);
    assert_int_equal(b.qh[1], 0x00);
    assert_int_equal(b.qh[2], 0xFF);
    assert_int_equal(b.qh[3], 0xFF);
    for (int j = 0; j < 16; j++) assert_int_equal(b.qs[j], j | (j << 4));
}

/* The ggml formula in double: min/max of the block, d = (max - min) / qmax,
 * q = floor((x - min) / d + 0.5) (clamped to 15 for Q4_1); a q within
 * 1e-4 of a rounding boundary is not judged (there the float arithmetic
 * of the reference decides).  Also: d and m are the fp16 of the float d
 * and min, the fifth bits land in qh, and the dequantized value is
 * d * q + m.  Rows: random with outliers, an all-zero block, a constant
 * block, an all-negative block, a block of two values, tiny values. */
static void check_q_1_vs_double(uint32_t type) {
    const int qmax = type == GGML_TYPE_Q4_1 ? 15 : 31;
    enum { K = 32 * 64 };
    static float x[K], y[K];
    static uint8_t q[K];
    uint32_t s = 777;
    for (int i = 0; i < K; i++) x[i] = frand(&s) * (i % 97 == 5 ? 30.0f : 1.0f);
    for (int i = 64; i < 96; i++) x[i] = 0.0f;                    /* all zero */
    for (int i = 96; i < 128; i++) x[i] = -2.75f;                 /* constant */
    for (int i = 128; i < 160; i++) x[i] = -1.0f - frand(&s) * frand(&s);   /* all negative */
    for (int i = 160; i < 192; i++) x[i] = i % 2 ? 3.0f : -5.0f;  /* two values: q 0 and qmax */
    for (int i = 192; i < 224; i++) x[i] = frand(&s) * 1e-6f;     /* small: fp16 d underflows */
    assert_int_equal(et_quantize_row(type, x, q, K), 0);
    assert_int_equal(et_dequantize_row(type, q, y, K), 0);
    const size_t bs = type == GGML_TYPE_Q4_1 ? sizeof(et_block_q4_1) : sizeof(et_block_q5_1);
    int judged = 0, skipped = 0;
    for (int b = 0; b < K / 32; b++) {
        const uint8_t *blk = q + bs * (size_t)b;
        uint16_t dh, mh;
        memcpy(&dh, blk, 2);
        memcpy(&mh, blk + 2, 2);
        double mn = x[32 * b], mx = x[32 * b];
        for (int j = 0; j < 32; j++) {
            mn = fmin(mn, x[32 * b + j]);
            mx = fmax(mx, x[32 * b + j]);
        }
        if (dh != h((float)(mx - mn) / (float)qmax) || mh != h((float)mn))
            fail_msg("%s block %d: d/m 0x%04x/0x%04x, expected 0x%04x/0x%04x", tname(type), b, dh, mh,
                     h((float)(mx - mn) / (float)qmax), h((float)mn));
        uint32_t qh = 0;
        if (type == GGML_TYPE_Q5_1) memcpy(&qh, blk + 4, 4);
        const uint8_t *qs = blk + (type == GGML_TYPE_Q5_1 ? 8 : 4);
        const double dd = (mx - mn) / qmax;
        for (int j = 0; j < 32; j++) {
            int got = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
            if (type == GGML_TYPE_Q5_1) got |= (int)((qh >> j) & 1) << 4;
            double t = dd > 0 ? (x[32 * b + j] - mn) / dd + 0.5 : 0.5;
            int want = (int)floor(t);
            if (want > qmax) want = qmax;
            if (fabs(t - floor(t + 0.5)) < 1e-4 && dd > 0) { skipped++; continue; }
            if (got != want)
                fail_msg("%s block %d weight %d: x = %.9g, q = %d, expected %d (t = %.9g)", tname(type), b, j,
                         x[32 * b + j], got, want, t);
            judged++;
            float deq = (float)got * et_fp16_to_fp32(dh) + et_fp16_to_fp32(mh);
            assert_true(y[32 * b + j] == deq);
        }
    }
    assert_true(judged > 30 * K / 32 && skipped < K / 100);
    /* the special blocks */
    for (int i = 64; i < 96; i++) assert_true(y[i] == 0.0f);
    for (int i = 96; i < 128; i++) assert_true(y[i] == et_fp16_to_fp32(h(-2.75f)));
    for (int i = 160; i < 192; i++) assert_true(fabsf(y[i] - x[i]) < 1e-2f);
}

static void test_q4_1_vs_double(void **state) { (void)state; check_q_1_vs_double(GGML_TYPE_Q4_1); }
static void test_q5_1_vs_double(void **state) { (void)state; check_q_1_vs_double(GGML_TYPE_Q5_1); }

static void test_quant_f16_bf16_rows(void **state) {
    (void)state;
    float x[4] = {1.0f, 1.00048828125f /* tie: 1 + 2^-11 -> 1.0 */, -65520.0f, 0.1f};
    uint16_t y[4];
    et_quantize_row_f16(x, y, 4);
    assert_int_equal(y[0], 0x3c00);
    assert_int_equal(y[1], 0x3c00);
    assert_int_equal(y[2], 0xfc00);
    assert_int_equal(y[3], 0x2e66);
    et_quantize_row_bf16(x, y, 4);
    assert_int_equal(y[0], 0x3f80);
    assert_int_equal(y[3], 0x3dcd);
}

/* ------------------------------------------------------- round-trip bounds */

/* Quantize a random row (with an all-zero block and an outlier) and check
 * the reconstruction error per block against the format's step size. */
static void test_roundtrip(void **state) {
    (void)state;
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_K,
                              GGML_TYPE_Q6_K, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_F32,
                              GGML_TYPE_Q4_1, GGML_TYPE_Q5_1, GGML_TYPE_Q5_K, GGML_TYPE_Q3_K,
                              GGML_TYPE_Q2_K, GGML_TYPE_IQ4_NL};
    /* max |error| / max |x| of the block, generous: half a quantization step
     * plus fp16 scale rounding (K-quants: the 6-bit sub-scales cost more). */
    const double tol[] = {0.5 / 127 + 2e-3, 1.0 / 8 + 2e-3, 1.0 / 16 + 2e-3, 0.1,
                          0.5 / 32 * 2 + 0.02, 1e-3, 1e-2, 0,
                          1.0 / 15 + 2e-3, 1.0 / 31 + 2e-3,   /* Q4_1/Q5_1: half of (max-min)/15 or /31 */
                          0.06, 0.2, 0.45,                    /* Q5_K, Q3_K, Q2_K: measured x ~1.5 */
                          0.12};                              /* IQ4_NL: the widest table gap / 2 / 127 ~ 0.09 */
    enum { K = 1024 };
    float x[K], y[K];
    uint8_t q[K * 4];
    uint32_t s = 12345;
    for (int i = 0; i < K; i++) x[i] = frand(&s);
    for (int i = 256; i < 512; i++) x[i] = 0.0f;  /* a zero super-block */
    x[700] = 40.0f;                                /* an outlier */
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        assert_int_equal(et_quantize_row(types[t], x, q, K), 0);
        assert_int_equal(et_dequantize_row(types[t], q, y, K), 0);
        const int be = (int)et_quant_block_elems(types[t]);
        for (int b0 = 0; b0 < K; b0 += be) {
            double amax = 0, emax = 0;
            for (int i = b0; i < b0 + be; i++) {
                amax = fmax(amax, fabs(x[i]));
                emax = fmax(emax, fabs((double)y[i] - x[i]));
            }
            if (emax > tol[t] * amax + 1e-30) {
                fail_msg("type %s: block at %d: max error %g > %g * max|x| %g",
                         tname(types[t]), b0, emax, tol[t], amax);
            }
        }
        for (int i = 256; i < 512; i++) assert_true(y[i] == 0.0f);
    }
}

static void test_dispatch(void **state) {
    (void)state;
    float x[64] = {0};
    uint8_t q[512];
    assert_int_equal(et_quantize_row(GGML_TYPE_Q8_0, x, q, 33), ET_EINPUT);
    assert_int_equal(et_quantize_row(GGML_TYPE_Q4_K, x, q, 64), ET_EINPUT);
    assert_int_equal(et_quantize_row(GGML_TYPE_Q2_K, x, q, 64), ET_EINPUT);
    assert_int_equal(et_dequantize_row(GGML_TYPE_Q5_K, q, x, 128), ET_EINPUT);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q2_K, 512), 168);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q3_K, 256), 110);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q5_K, 256), 176);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q5_K, 64), GGML_TYPE_Q5_1);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q5_K, 100), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q3_K, 64), GGML_TYPE_IQ4_NL);
    assert_int_equal(et_quant_fallback(GGML_TYPE_IQ4_NL, 48), GGML_TYPE_F16);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_IQ4_NL, 64), 36);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q2_K, 48), GGML_TYPE_F16);
    assert_int_equal(et_dequantize_row(GGML_TYPE_MXFP4, q, x, 32), ET_EINPUT);
    assert_int_equal(et_quantize_row(GGML_TYPE_TQ2_0, x, q, 256), ET_EINPUT);
    assert_int_equal(et_quantize_row(GGML_TYPE_Q4_1, x, q, 48), ET_EINPUT);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q4_1, 64), 40);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q5_1, 64), 48);
    assert_int_equal(et_quant_block_elems(GGML_TYPE_Q5_1), 32);
    assert_int_equal(et_quantize_row(GGML_TYPE_Q8_0, x, q, -32), ET_EINPUT);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q8_0, 64), 68);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q4_0, 64), 36);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q5_0, 64), 44);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q4_K, 512), 288);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q6_K, 256), 210);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_F16, 3), 6);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_Q6_K, 100), 0);
    assert_int_equal(et_quant_row_bytes(GGML_TYPE_F32, INT64_MAX), 0);
    /* fallback chain (llama.cpp's plus edgetune's -> F16) */
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q4_K, 512), GGML_TYPE_Q4_K);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q4_K, 64), GGML_TYPE_Q5_0);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q4_K, 172), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q6_K, 64), GGML_TYPE_Q8_0);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q6_K, 172), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q8_0, 172), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q4_0, 172), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q4_0, 64), GGML_TYPE_Q4_0);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q4_1, 172), GGML_TYPE_F16);
    assert_int_equal(et_quant_fallback(GGML_TYPE_Q5_1, 96), GGML_TYPE_Q5_1);
    assert_int_equal(et_quant_fallback(GGML_TYPE_F16, 7), GGML_TYPE_F16);
}

/* Non-finite inputs: defined behaviour (checked under UBSan), no crash. */
static void test_nonfinite_no_ub(void **state) {
    (void)state;
    const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_1,
                              GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K,
                              GGML_TYPE_Q3_K, GGML_TYPE_Q2_K, GGML_TYPE_IQ4_NL};
    float x[256], y[256];
    uint8_t q[1024];
    for (int i = 0; i < 256; i++) x[i] = (float)i;
    x[3] = NAN;
    x[40] = INFINITY;
    x[100] = -INFINITY;
    x[200] = 3e38f;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        assert_int_equal(et_quantize_row(types[t], x, q, 256), 0);
        assert_int_equal(et_dequantize_row(types[t], q, y, 256), 0);
    }
}

/* ---------------------------------------- golden files from llama-quantize */

/* A minimal, independent GGUF v3 walker: finds a tensor's type, element
 * count, row length and data in a file loaded into memory. */
typedef struct gold {
    uint8_t *buf;
    size_t size;
    uint64_t n_tensors;
    size_t info_off;  /* first tensor info */
    size_t data_off;  /* data section */
} gold;

static int rd_u64(const gold *g, size_t *o, uint64_t *v) {
    if (*o + 8 > g->size) return -1;
    memcpy(v, g->buf + *o, 8);
    *o += 8;
    return 0;
}
static int rd_u32(const gold *g, size_t *o, uint32_t *v) {
    if (*o + 4 > g->size) return -1;
    memcpy(v, g->buf + *o, 4);
    *o += 4;
    return 0;
}
static int skip_str(const gold *g, size_t *o) {
    uint64_t n;
    if (rd_u64(g, o, &n) || n > g->size - *o) return -1;
    *o += n;
    return 0;
}
static int skip_val(const gold *g, size_t *o, uint32_t t) {
    static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) return skip_str(g, o);
    if (t == 9) {
        uint32_t at;
        uint64_t n;
        if (rd_u32(g, o, &at) || rd_u64(g, o, &n) || at > 12) return -1;
        for (uint64_t i = 0; i < n; i++)
            if (skip_val(g, o, at)) return -1;
        return 0;
    }
    if (t > 12 || *o + (size_t)sz[t] > g->size) return -1;
    *o += (size_t)sz[t];
    return 0;
}

static int gold_open(gold *g, const char *path) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    g->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->buf = malloc(g->size);
    if (!g->buf || fread(g->buf, 1, g->size, f) != g->size) { fclose(f); return -1; }
    fclose(f);
    size_t o = 8;
    uint64_t n_kv;
    if (memcmp(g->buf, "GGUF", 4) || rd_u64(g, &o, &g->n_tensors) || rd_u64(g, &o, &n_kv)) return -1;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint32_t t;
        if (skip_str(g, &o) || rd_u32(g, &o, &t) || skip_val(g, &o, t)) return -1;
    }
    g->info_off = o;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        uint32_t nd, t;
        uint64_t v;
        if (skip_str(g, &o) || rd_u32(g, &o, &nd) || nd > 4) return -1;
        for (uint32_t d = 0; d < nd; d++)  /* ne[0..nd) */
            if (rd_u64(g, &o, &v)) return -1;
        if (rd_u32(g, &o, &t) || rd_u64(g, &o, &v)) return -1;  /* type, offset */
    }
    g->data_off = (o + 31) / 32 * 32;
    return 0;
}

/* Tensor i: name (copied), type, ne, data. */
static int gold_tensor(const gold *g, uint64_t idx, char name[64], uint32_t *type, int64_t ne[4],
                       uint32_t *n_dims, const uint8_t **data) {
    size_t o = g->info_off;
    for (uint64_t i = 0; i <= idx; i++) {
        uint64_t n, v;
        if (rd_u64(g, &o, &n) || n >= 64 || n > g->size - o) return -1;
        memcpy(name, g->buf + o, n);
        name[n] = 0;
        o += n;
        if (rd_u32(g, &o, n_dims) || *n_dims > 4) return -1;
        for (int d = 0; d < 4; d++) ne[d] = 1;
        for (uint32_t d = 0; d < *n_dims; d++) {
            if (rd_u64(g, &o, &v)) return -1;
            ne[d] = (int64_t)v;
        }
        if (rd_u32(g, &o, type) || rd_u64(g, &o, &v)) return -1;
        if (v > g->size - g->data_off) return -1;
        *data = g->buf + g->data_off + v;
    }
    return 0;
}

static const uint8_t *gold_find(const gold *g, const char *want, uint32_t *type, int64_t *nel, int64_t *ne0) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        char name[64];
        int64_t ne[4];
        uint32_t nd;
        const uint8_t *d;
        if (gold_tensor(g, i, name, type, ne, &nd, &d)) return NULL;
        if (!strcmp(name, want)) {
            *nel = ne[0] * ne[1] * ne[2] * ne[3];
            *ne0 = ne[0];
            return d;
        }
    }
    return NULL;
}

static void check_golden(const char *suffix) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/quant/rand-llama-256-%s.gguf", suffix);
    const char *qpath = shared_path(rel);
    const char *fpath = shared_path("golden/quant/rand-llama-256.gguf");
    if (!qpath || !fpath) {
        fprintf(stderr, "SKIP: %s/%s not found (shared data absent)\n", et_shared_dir(), rel);
        skip();
    }
    gold gq, gf;
    assert_int_equal(gold_open(&gq, qpath), 0);
    assert_int_equal(gold_open(&gf, fpath), 0);
    int n_quant = 0;
    for (uint64_t i = 0; i < gq.n_tensors; i++) {
        char name[64];
        int64_t ne[4];
        uint32_t type, nd, ftype;
        const uint8_t *want;
        assert_int_equal(gold_tensor(&gq, i, name, &type, ne, &nd, &want), 0);
        int64_t nel = 0, ne0 = 1;
        const float *x = (const float *)gold_find(&gf, name, &ftype, &nel, &ne0);
        assert_non_null(x);
        assert_int_equal(ftype, GGML_TYPE_F32);
        assert_int_equal(nel, ne[0] * ne[1] * ne[2] * ne[3]);
        if (!et_quant_supported(type)) fail_msg("%s: %s has unsupported type %u", suffix, name, type);
        uint64_t nbytes = et_quant_row_bytes(type, nel);
        assert_true(nbytes > 0 && (size_t)(want - gq.buf) + nbytes <= gq.size);
        uint8_t *got = malloc(nbytes);
        assert_non_null(got);
        assert_int_equal(et_quantize_row(type, x, got, nel), 0);
        if (memcmp(got, want, nbytes)) {
            uint64_t b = 0;
            while (got[b] == want[b]) b++;
            uint64_t bb = et_quant_row_bytes(type, et_quant_block_elems(type));
            free(got);
            fail_msg("%s: tensor %s (%s): byte %llu differs (block %llu, row %lld)", suffix, name,
                     tname(type), (unsigned long long)b,
                     (unsigned long long)(b / bb),
                     (long long)(b / et_quant_row_bytes(type, ne0)));
        }
        free(got);
        n_quant += type != GGML_TYPE_F32;
    }
    assert_true(n_quant >= 15);
    free(gq.buf);
    free(gf.buf);
}

static void test_golden_f16(void **state) { (void)state; check_golden("F16"); }
static void test_golden_q8_0(void **state) { (void)state; check_golden("Q8_0"); }
static void test_golden_q4_0(void **state) { (void)state; check_golden("Q4_0"); }
static void test_golden_q4_k_m(void **state) { (void)state; check_golden("Q4_K_M"); }
static void test_golden_q6_k(void **state) { (void)state; check_golden("Q6_K"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_q8_0),
        cmocka_unit_test(test_dequant_q4_0),
        cmocka_unit_test(test_dequant_q5_0),
        cmocka_unit_test(test_dequant_q4_1),
        cmocka_unit_test(test_dequant_q5_1),
        cmocka_unit_test(test_dequant_q4_K),
        cmocka_unit_test(test_dequant_q6_K),
        cmocka_unit_test(test_dequant_q5_K),
        cmocka_unit_test(test_dequant_q3_K),
        cmocka_unit_test(test_dequant_q2_K),
        cmocka_unit_test(test_k_dequant_vs_double),
        cmocka_unit_test(test_quant_k_exact_grid),
        cmocka_unit_test(test_dequant_iq4_nl),
        cmocka_unit_test(test_quant_iq4_nl),
        cmocka_unit_test(test_dequant_f16_bf16),
        cmocka_unit_test(test_quant_q8_0_small),
        cmocka_unit_test(test_quant_q4_0_small),
        cmocka_unit_test(test_quant_q5_0_small),
        cmocka_unit_test(test_quant_q4_1_small),
        cmocka_unit_test(test_quant_q5_1_small),
        cmocka_unit_test(test_q4_1_vs_double),
        cmocka_unit_test(test_q5_1_vs_double),
        cmocka_unit_test(test_quant_f16_bf16_rows),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_nonfinite_no_ub),
        cmocka_unit_test(test_golden_f16),
        cmocka_unit_test(test_golden_q8_0),
        cmocka_unit_test(test_golden_q4_0),
        cmocka_unit_test(test_golden_q4_k_m),
        cmocka_unit_test(test_golden_q6_k),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
