/* train/rng.c — xoshiro256** and splitmix64 (the step is common/et.c's). See rng.h. */
#include <math.h>

#include "../common/et.h"
#include "rng.h"

void et_xoshiro_seed(et_xoshiro *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = et_splitmix64(&seed);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

uint64_t et_xoshiro_next(et_xoshiro *r) { return et_xoshiro256ss(r->s); }

double et_xoshiro_uniform(et_xoshiro *r) { return (double)(et_xoshiro_next(r) >> 11) * 0x1.0p-53; }

double et_xoshiro_normal(et_xoshiro *r) {
    double u1 = 1.0 - et_xoshiro_uniform(r); /* (0, 1]: log is finite */
    double u2 = et_xoshiro_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
