/*
** A growable byte buffer.
**
** Ownership: the buffer owns `data` (malloc'd, or NULL while empty). The caller
** that declared the buffer frees it with as_buf_free(). Functions that grow the buffer return 0 on
** success and -1 when the size would overflow or memory runs out; the buffer is
** unchanged on failure, so a caller can always free it.
*/
#ifndef AS_BUF_H
#define AS_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct as_buf {
    char *data;
    size_t len;
    size_t cap;
} as_buf;

#define AS_BUF_INIT { NULL, 0, 0 }

int as_buf_grow(as_buf *b, size_t extra);
void as_buf_free(as_buf *b);

static inline int as_buf_reserve(as_buf *b, size_t extra) {
    return (b->cap - b->len >= extra) ? 0 : as_buf_grow(b, extra);
}

static inline int as_buf_put(as_buf *b, const void *p, size_t n) {
    if (n == 0) return 0; /* an empty buffer's data is NULL: no pointer arithmetic on it */
    if (as_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int as_buf_putc(as_buf *b, char c) {
    if (as_buf_reserve(b, 1) != 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

#define as_buf_puts(b, lit) as_buf_put((b), (lit), sizeof(lit) - 1)

#endif
