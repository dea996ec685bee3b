/* The sampler's random-number generator: xoshiro256** (Blackman & Vigna),
 * seeded through splitmix64 so that any 64-bit seed, 0 included, gives a
 * well-mixed state. Written from the published description of the algorithms.
 * Same seed → same sequence on every platform (pure 64-bit integer maths). */
#ifndef BN_SAMPLING_RNG_H
#define BN_SAMPLING_RNG_H

#include <stdint.h>

typedef struct bn_rng {
    uint64_t s[4];
} bn_rng;

static inline uint64_t bn_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void bn_rng_seed(bn_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = bn_splitmix64(&seed);
}

static inline uint64_t bn_rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t bn_rng_next(bn_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = bn_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bn_rotl64(s[3], 45);
    return out;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static inline double bn_rng_uniform(bn_rng *r) { return (double)(bn_rng_next(r) >> 11) * 0x1.0p-53; }

#endif
