/*
** A growable byte buffer (see as_buf.h for ownership).
*/
#include <stdint.h>
#include <stdlib.h>

#include "as_buf.h"
#include "as_alloc.h"

int as_buf_grow(as_buf *b, size_t extra) {
    size_t need, cap;
    char *p;
    if (extra > SIZE_MAX - b->len - 1) return -1;
    need = b->len + extra + 1; /* room for a terminating NUL */
    if (need <= b->cap) return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    p = as_realloc(b->data, cap);
    if (p == NULL) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void as_buf_free(as_buf *b) {
    as_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
