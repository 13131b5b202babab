/*
** Polynomial digests modulo 2^61 - 1 (see as_digest.h). The text is read as
** chunks c1..cm of 7 bytes (below the prime), preceded by its length, and the
** digest is len*k^(m+1) + c1*k^m + ... + cm*k. Four chunks are folded per step
** with the precomputed powers k^4..k, so the four products are independent and
** one reduction serves them all.
*/
#include <string.h>

#include "as_digest.h"

#define P AS_DIGEST_PRIME

typedef unsigned __int128 u128;

/* x mod P for x < 2^125. */
static inline uint64_t reduce(u128 x) {
    x = (x & P) + (x >> 61); /* < 2^61 + 2^64 */
    x = (x & P) + (x >> 61); /* < 2^61 + 2^4 */
    return (uint64_t)x >= P ? (uint64_t)x - P : (uint64_t)x;
}

static inline uint64_t mulmod(uint64_t a, uint64_t b) {
    return reduce((u128)a * b);
}

/* Seven bytes as a number below 2^56, the same on every machine. */
static inline uint64_t chunk(const unsigned char *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24
           | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48;
}

void as_digest_key_init(as_digest_key *key, uint64_t seed) {
    uint64_t k = seed % P;
    if (k < 2) k += 2; /* 0 and 1 would make every text of one length alike */
    key->k[0] = k;
    key->k[1] = mulmod(k, k);
    key->k[2] = mulmod(key->k[1], k);
    key->k[3] = mulmod(key->k[2], k);
}

uint64_t as_digest(const as_digest_key *key, const void *data, size_t len) {
    const unsigned char *p = data;
    const uint64_t k1 = key->k[0], k2 = key->k[1], k3 = key->k[2], k4 = key->k[3];
    uint64_t h = mulmod((uint64_t)len % P, k1);
    size_t n = len;
    while (n >= 28) {
        u128 sum = (u128)(h + chunk(p)) * k4 + (u128)chunk(p + 7) * k3
                   + (u128)chunk(p + 14) * k2 + (u128)chunk(p + 21) * k1;
        h = reduce(sum);
        p += 28;
        n -= 28;
    }
    while (n >= 7) {
        h = mulmod(h + chunk(p), k1);
        p += 7;
        n -= 7;
    }
    if (n > 0) {
        unsigned char last[7] = { 0 };
        memcpy(last, p, n);
        h = mulmod(h + chunk(last), k1);
    }
    return h;
}
