/* datasets/shuffle.c — splitmix64, bounded draws, Fisher-Yates. See shuffle.h. */
#include "shuffle.h"

uint64_t et_shuffle_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t et_shuffle_below(uint64_t *state, uint64_t n) {
    if (n == 0) return 0;
    /* reject the top partial copy of [0, n) so the result is unbiased */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    for (;;) {
        uint64_t x = et_shuffle_next(state);
        if (x < limit) return x % n;
    }
}

void et_shuffle_perm(uint64_t *state, int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)et_shuffle_below(state, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

uint64_t et_shuffle_split_state(uint64_t seed) {
    uint64_t s = seed ^ 0x73706c6974000000ull; /* "split" */
    return et_shuffle_next(&s);
}

uint64_t et_shuffle_epoch_state(uint64_t seed, uint64_t epoch) {
    uint64_t s = seed ^ 0x65706f6368000000ull; /* "epoch" */
    uint64_t a = et_shuffle_next(&s);
    uint64_t t = a ^ (epoch * 0xd1b54a32d192ed03ull);
    return et_shuffle_next(&t);
}
