/* tests/test_robust_simd.c — issue 11, smaller item: et_vexpf (train/simd.h)
 * on a NaN input converted NaN to int and overflowed a signed multiply
 * (UBSan under `make check`).  Now: no undefined behaviour for any input,
 * NaN in gives NaN out, and finite results are unchanged (against libm's
 * exp in double, the accuracy the header states). */
#include <math.h>

#include "testutil.h"

#include "../train/simd.h"

static void test_vexpf_hostile(void **state) {
    (void)state;
    volatile float in[] = {NAN, -NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 3e9f, -3e9f, 1e38f, 88.5f, -90.0f};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        float y = et_vexpf(in[i]);   /* UBSan: signed-integer-overflow before the fix */
        if (isnan(in[i])) assert_true(isnan(y));
    }
    for (float x = -87.0f; x <= 88.0f; x += 0.37f) {
        double want = exp((double)x), got = et_vexpf(x);
        assert_true(fabs(got - want) <= 3e-7 * want);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_vexpf_hostile)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
