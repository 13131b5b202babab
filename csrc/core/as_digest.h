/*
** Digests of message texts: a 64-bit fingerprint a store keeps beside each
** stored message, so a save can tell which messages changed without reading
** them back. Not cryptographic: it guards against accidental sameness, which
** is all a store comparing its own writes needs.
*/
#ifndef AS_DIGEST_H
#define AS_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/* The length takes part, so texts of different lengths never collide by
** construction of the input alone. */
uint64_t as_digest(const void *data, size_t len);

#endif
