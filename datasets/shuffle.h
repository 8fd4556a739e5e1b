/* datasets/shuffle.h — the seeded random numbers behind the train/validation
 * split and the loader's per-epoch shuffle.  Deterministic on every platform:
 * the same seed gives the same permutation everywhere.
 *
 * Generator: splitmix64 (Steele, Lea & Flood, "Fast splittable pseudorandom
 * number generators", OOPSLA 2014; constants as in Vigna's splitmix64.c).
 * Bounded draws use rejection so every value in [0, n) is equally likely.
 * Permutations are Fisher-Yates (Knuth, TAOCP vol. 2, Algorithm P), drawing
 * j in [0, i] for i = n-1 down to 1.
 *
 * C11 + libc only.
 */
#ifndef ET_SHUFFLE_H
#define ET_SHUFFLE_H

#include <stdint.h>

/* Advance *state and return the next 64 random bits. */
uint64_t et_shuffle_next(uint64_t *state);
/* Uniform integer in [0, n); n must be > 0 (returns 0 when n == 0). */
uint64_t et_shuffle_below(uint64_t *state, uint64_t n);
/* perm[0..n-1] = a permutation of 0..n-1 drawn with generator state *state
 * (advanced).  n >= 0. */
void et_shuffle_perm(uint64_t *state, int64_t *perm, int64_t n);

/* Generator states for the two uses, so they never share a stream:
 * the split of documents, and epoch `epoch` of a loader with `seed`. */
uint64_t et_shuffle_split_state(uint64_t seed);
uint64_t et_shuffle_epoch_state(uint64_t seed, uint64_t epoch);

#endif
