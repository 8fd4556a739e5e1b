/* train/rng.h — the trainer's random number generator: xoshiro256**
 * (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
 * 2021, prng.di.unimi.it), seeded through splitmix64.  Its whole state is
 * four uint64 words, saved in the checkpoint (train/checkpoint.h) so that a
 * resumed run draws the same numbers.  (The generator step itself is
 * common/et.h's et_xoshiro256ss, shared with engine/'s et_rng, which adds a
 * 24-bit float uniform for sampling; the runtime links neither train/ nor
 * this file.)
 *
 *   et_xoshiro r; et_xoshiro_seed(&r, 42);
 *   uint64_t x = et_xoshiro_next(&r);  double u = et_xoshiro_uniform(&r);  double z = et_xoshiro_normal(&r);
 */
#ifndef ET_RNG_H
#define ET_RNG_H

#include <stdint.h>

typedef struct et_xoshiro { uint64_t s[4]; } et_xoshiro;

/* State from one 64-bit seed (four splitmix64 outputs; never all zero). */
void et_xoshiro_seed(et_xoshiro *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t et_xoshiro_next(et_xoshiro *r);
/* Uniform in [0, 1) with 53 random bits. */
double et_xoshiro_uniform(et_xoshiro *r);
/* Standard normal, Box-Muller (one pair per call; the second value is
 * dropped so that the state alone determines the stream). */
double et_xoshiro_normal(et_xoshiro *r);

#endif
