/* train/rng.h — the trainer's random number generator: xoshiro256**
 * (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
 * 2021, prng.di.unimi.it), seeded through splitmix64.  Its whole state is
 * four uint64 words, saved in the checkpoint (train/checkpoint.h) so that a
 * resumed run draws the same numbers.
 *
 *   et_rng r; et_rng_seed(&r, 42);
 *   uint64_t x = et_rng_next(&r);  double u = et_rng_uniform(&r);  double z = et_rng_normal(&r);
 */
#ifndef ET_RNG_H
#define ET_RNG_H

#include <stdint.h>

typedef struct et_rng { uint64_t s[4]; } et_rng;

/* State from one 64-bit seed (four splitmix64 outputs; never all zero). */
void et_rng_seed(et_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t et_rng_next(et_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double et_rng_uniform(et_rng *r);
/* Standard normal, Box-Muller (one pair per call; the second value is
 * dropped so that the state alone determines the stream). */
double et_rng_normal(et_rng *r);

#endif
