/*
** UTF-8: the one definition of valid UTF-8 the library keeps (no overlong
** forms, no surrogates, nothing above U+10FFFF), for the codec, the metadata
** checks and the error messages that quote a key.
*/
#ifndef AS_UTF8_H
#define AS_UTF8_H

#include <stddef.h>

/* Length (2..4) of the valid UTF-8 sequence starting at s (s[0] >= 0x80), or 0. */
static inline size_t as_utf8_seq(const unsigned char *s, const unsigned char *end) {
    unsigned char c = s[0];
    size_t avail = (size_t)(end - s);
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (avail < 2 || (s[1] & 0xC0) != 0x80) return 0;
        return 2;
    }
    if (c < 0xF0) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (avail < 3) return 0;
        if (c == 0xE0) lo = 0xA0;       /* no overlong forms */
        else if (c == 0xED) hi = 0x9F;  /* no surrogates */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) return 0;
        return 3;
    }
    if (c < 0xF5) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (avail < 4) return 0;
        if (c == 0xF0) lo = 0x90;       /* no overlong forms */
        else if (c == 0xF4) hi = 0x8F;  /* nothing above U+10FFFF */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        return 4;
    }
    return 0;
}

/* Writes the UTF-8 form (1..4 bytes) of code point cp (at most 0x10FFFF, no
** surrogate) to out; returns its length. */
static inline size_t as_utf8_put(unsigned char *out, unsigned long cp) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Offset of the first byte of s that breaks UTF-8 (len when none). */
size_t as_utf8_check(const char *s, size_t len);

#endif
