/*
** Polynomial digests modulo 2^61 - 1 (see as_digest.h). The text is read as
** chunks c1..cm of 7 bytes (below the prime; the last one padded with zeros),
** and the digest is len*k^(m+1) + c1*k^m + ... + cm*k: two different texts
** give two different polynomials of degree at most m + 1. Eight chunks are
** folded per step with the precomputed powers k^8..k, so their products are
** independent and one reduction serves them all.
*/
#include <string.h>

#include "as_digest.h"

#define P AS_DIGEST_PRIME

typedef unsigned __int128 u128;

/* x mod P for x < 2^127. */
static inline uint64_t reduce(u128 x) {
    x = (x & P) + (x >> 61); /* < 2^61 + 2^66 */
    x = (x & P) + (x >> 61); /* < 2^61 + 2^6 */
    return (uint64_t)x >= P ? (uint64_t)x - P : (uint64_t)x;
}

static inline uint64_t mulmod(uint64_t a, uint64_t b) {
    return reduce((u128)a * b);
}

/* Seven bytes as a number below 2^56 (little-endian, the same on every machine). */
static inline uint64_t chunk(const unsigned char *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24
           | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48;
}

/* The same from an 8-byte load, where the eighth byte may be read. */
static inline uint64_t chunk8(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w & 0x00ffffffffffffffu;
#else
    return chunk(p);
#endif
}

void as_digest_key_init(as_digest_key *key, uint64_t seed) {
    uint64_t k = seed % P;
    if (k < 2) k += 2; /* 0 and 1 would make every text of one length alike */
    int i;
    key->k[0] = k;
    for (i = 1; i < 8; i++) key->k[i] = mulmod(key->k[i - 1], k);
}

uint64_t as_digest(const as_digest_key *key, const void *data, size_t len) {
    const unsigned char *p = data;
    const uint64_t k1 = key->k[0], k2 = key->k[1], k3 = key->k[2], k4 = key->k[3];
    const uint64_t k5 = key->k[4], k6 = key->k[5], k7 = key->k[6], k8 = key->k[7];
    uint64_t h = mulmod((uint64_t)len % P, k1);
    size_t n = len;
    while (n >= 57) { /* 56 bytes a step, and the eighth byte of the last load */
        u128 hi = (u128)(h + chunk8(p)) * k8 + (u128)chunk8(p + 7) * k7
                  + (u128)chunk8(p + 14) * k6 + (u128)chunk8(p + 21) * k5;
        u128 lo = (u128)chunk8(p + 28) * k4 + (u128)chunk8(p + 35) * k3
                  + (u128)chunk8(p + 42) * k2 + (u128)chunk8(p + 49) * k1;
        h = reduce(hi + lo);
        p += 56;
        n -= 56;
    }
    while (n >= 29) {
        u128 sum = (u128)(h + chunk8(p)) * k4 + (u128)chunk8(p + 7) * k3
                   + (u128)chunk8(p + 14) * k2 + (u128)chunk8(p + 21) * k1;
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
