/*
** The core's allocator (see as_alloc.h).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_alloc.h"

void *as_malloc(size_t n) {
    return malloc(n ? n : 1);
}

void *as_calloc(size_t count, size_t size) {
    return calloc(count ? count : 1, size ? size : 1);
}

void *as_realloc(void *p, size_t n) {
    return realloc(p, n ? n : 1);
}

void as_free(void *p) {
    free(p);
}

char *as_strndup(const char *s, size_t n) {
    char *p;
    if (n == SIZE_MAX) return NULL;
    p = as_malloc(n + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *as_strdup(const char *s) {
    return as_strndup(s, strlen(s));
}
