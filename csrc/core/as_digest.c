/*
** A 64-bit digest over four independent lanes of 8-byte words, so the
** multiplications of neighbouring words overlap in the processor; the lanes
** and the tail are folded and avalanched at the end.
*/
#include <string.h>

#include "as_digest.h"

#define K1 0x9e3779b97f4a7c15u
#define K2 0xbf58476d1ce4e5b9u
#define K3 0x94d049bb133111ebu

static inline uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t word(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w); /* unaligned-safe; the byte order is the host's */
    return w;
}

static inline uint64_t lane(uint64_t h, uint64_t w) {
    return rotl(h ^ (w * K2), 29) * K1;
}

static inline uint64_t avalanche(uint64_t h) {
    h ^= h >> 30;
    h *= K2;
    h ^= h >> 27;
    h *= K3;
    return h ^ (h >> 31);
}

uint64_t as_digest(const void *data, size_t len) {
    const unsigned char *p = data;
    size_t n = len;
    uint64_t a = K1 ^ (uint64_t)len, b = K2, c = K3, d = ~K1, h, tail = 0;
    while (n >= 32) {
        a = lane(a, word(p));
        b = lane(b, word(p + 8));
        c = lane(c, word(p + 16));
        d = lane(d, word(p + 24));
        p += 32;
        n -= 32;
    }
    h = avalanche(a) ^ rotl(avalanche(b), 17) ^ rotl(avalanche(c), 31) ^ rotl(avalanche(d), 47);
    while (n >= 8) {
        h = lane(h, word(p));
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        memcpy(&tail, p, n);
        h = lane(h, tail ^ ((uint64_t)n << 56));
    }
    return avalanche(h ^ (uint64_t)len * K3);
}
