/*
** Digests of message texts: a fingerprint a store keeps beside each stored
** message, so that a save can tell which messages changed without reading
** them back.
**
** The digest is a polynomial over the text's 7-byte chunks, evaluated modulo
** the prime 2^61 - 1 at a secret random point (the key, kept with the store).
** For two different texts of at most n chunks, at most n of the 2^61 - 1
** possible keys make their digests equal, so whoever writes the texts cannot
** make two of them collide without knowing the key: a save never mistakes a
** changed message for an unchanged one, whatever the messages hold, except
** with a probability below n / 2^61 per comparison.
*/
#ifndef AS_DIGEST_H
#define AS_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define AS_DIGEST_PRIME (((uint64_t)1 << 61) - 1)

typedef struct as_digest_key {
    uint64_t k[8]; /* the point and its powers 2..8 */
} as_digest_key;

/* A key from any 64-bit value (a random one, drawn once per store). */
void as_digest_key_init(as_digest_key *key, uint64_t seed);
/* The digest of a text: a number below AS_DIGEST_PRIME. */
uint64_t as_digest(const as_digest_key *key, const void *data, size_t len);

#endif
