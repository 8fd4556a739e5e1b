/* tests/test_common.c — half-float conversion against an independent
 * computation, SHA-256 against FIPS 180-4 vectors, atomic files. */
#include "testutil.h"

#include <math.h>

/* Independent fp16 -> fp32 -> fp16: exhaustively, every finite half maps
 * back to itself, and midpoints between consecutive halves round to even. */
static void test_fp16_roundtrip_and_ties(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint16_t x = (uint16_t)h;
        if ((x & 0x7c00) == 0x7c00) continue; /* inf/nan */
        float f = et_fp16_to_fp32(x);
        assert_int_equal(et_fp32_to_fp16(f), x);
        /* tie between x and x+1 (same sign, both finite) */
        uint16_t y = (uint16_t)(x + 1);
        if ((y & 0x7c00) == 0x7c00 || (y & 0x7fff) == 0) continue;
        double mid = ((double)et_fp16_to_fp32(x) + (double)et_fp16_to_fp32(y)) / 2;
        float fm = (float)mid; /* exact in fp32 */
        uint16_t want = (x & 1) ? y : x;
        assert_int_equal(et_fp32_to_fp16(fm), want);
    }
    assert_int_equal(et_fp32_to_fp16(65520.0f), 0x7c00);     /* rounds to inf */
    assert_int_equal(et_fp32_to_fp16(65519.0f), 0x7bff);
    assert_int_equal(et_fp32_to_fp16(1e-8f), 0);
    assert_int_equal(et_fp32_to_fp16(NAN) & 0x7e00, 0x7e00);
}

static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(et_fp32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is a tie between 1 and 1+2^-7: to even (1.0) */
    assert_int_equal(et_fp32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(et_fp32_to_bf16(1.01171875f), 0x3f82);
    assert_true(et_bf16_to_fp32(0x3f80) == 1.0f);
}

static void test_sha256(void **state) {
    (void)state;
    char hex[65];
    et_sha256 s;
    et_sha256_init(&s);
    et_sha256_update(&s, "abc", 3);
    et_sha256_final_hex(&s, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    et_sha256_init(&s);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    et_sha256_update(&s, m, strlen(m));
    et_sha256_final_hex(&s, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_afile(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", test_tmpdir());
    et_err e = {0};
    et_afile a;
    assert_int_equal(et_afile_open(&a, path, &e), 0);
    fputs("first", a.f);
    assert_int_equal(et_afile_commit(&a, &e), 0);
    /* an aborted write leaves the old file intact */
    assert_int_equal(et_afile_open(&a, path, &e), 0);
    fputs("second, never committed", a.f);
    et_afile_abort(&a);
    et_map m;
    assert_int_equal(et_map_open(&m, path, &e), 0);
    assert_int_equal(m.size, 5);
    assert_memory_equal(m.data, "first", 5);
    et_map_close(&m);
    assert_int_equal(et_map_open(&m, "/nonexistent/x.gguf", &e), ET_EINPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_roundtrip_and_ties),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_afile),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
