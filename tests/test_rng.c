/* tests/test_rng.c — xoshiro256** against the published reference outputs
 * (state {1,2,3,4}: 11520, 0, 1509978240, 1215971899390074240), splitmix64
 * seeding (first output for seed 0 is 0xe220a8397b1dcdaf), and the moments
 * of et_xoshiro_uniform / et_xoshiro_normal. */
#include <math.h>

#include "testutil.h"
#include "../train/rng.h"

static void test_reference_outputs(void **state) {
    (void)state;
    et_xoshiro r = {{1, 2, 3, 4}};
    assert_true(et_xoshiro_next(&r) == 11520u);
    assert_true(et_xoshiro_next(&r) == 0u);
    assert_true(et_xoshiro_next(&r) == 1509978240u);
    assert_true(et_xoshiro_next(&r) == 1215971899390074240ull);
    et_xoshiro_seed(&r, 0);
    assert_true(r.s[0] == 0xe220a8397b1dcdafULL);
    /* same seed, same stream; state copy continues it */
    et_xoshiro a, b;
    et_xoshiro_seed(&a, 42);
    for (int i = 0; i < 10; i++) et_xoshiro_next(&a);
    b = a;
    for (int i = 0; i < 100; i++) assert_true(et_xoshiro_next(&a) == et_xoshiro_next(&b));
}

static void test_moments(void **state) {
    (void)state;
    et_xoshiro r;
    et_xoshiro_seed(&r, 7);
    const int n = 200000;
    double su = 0, sz = 0, sz2 = 0;
    for (int i = 0; i < n; i++) {
        double u = et_xoshiro_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        su += u;
        double z = et_xoshiro_normal(&r);
        assert_true(isfinite(z));
        sz += z;
        sz2 += z * z;
    }
    assert_true(fabs(su / n - 0.5) < 0.005);
    assert_true(fabs(sz / n) < 0.01);
    assert_true(fabs(sz2 / n - 1.0) < 0.02);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_outputs),
        cmocka_unit_test(test_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
