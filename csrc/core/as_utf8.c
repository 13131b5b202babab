/*
** UTF-8 checks (see as_utf8.h).
*/
#include "as_utf8.h"

size_t as_utf8_check(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (*p < 0x80) { p++; continue; }
        {
            size_t n = as_utf8_seq(p, end);
            if (n == 0) return (size_t)(p - (const unsigned char *)s);
            p += n;
        }
    }
    return len;
}
