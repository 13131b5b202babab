/*
** The core's allocator: every allocation of the core goes through here, so a
** host (or a test) sees one place where memory is taken and given back.
*/
#ifndef AS_ALLOC_H
#define AS_ALLOC_H

#include <stddef.h>

void *as_malloc(size_t n);
void *as_calloc(size_t count, size_t size);
void *as_realloc(void *p, size_t n);
void as_free(void *p);
/* A copy of n bytes of s with a terminating NUL, or NULL on no memory. */
char *as_strndup(const char *s, size_t n);
char *as_strdup(const char *s);

#endif
