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

/*
** TEST HOOK: allocation fault injection and counting, for tests only.
**
** Process-global and NOT thread-safe (plain counters, no locks): use it only
** from a single-threaded test host. It is off until as_alloc_hook_on(), which
** the host calls once before its first allocation; while it is off an
** allocation only reads one flag (one well-predicted branch more than malloc
** itself) and nothing is written, so it costs threaded hosts nothing.
**
** as_alloc_fail_after(n): the n-th allocation from now (1: the very next
** one) returns NULL, once; the following ones succeed again. An allocation is
** any call of as_malloc, as_calloc, as_realloc (a failed as_realloc leaves its
** block as it was, as realloc does) or of the helpers built on them
** (as_strndup, as_strdup). n = 0 disarms.
** as_alloc_fail_hit(): 1 when the armed failure has happened since the last
** as_alloc_fail_after (a later as_alloc_fail_after(0) keeps the answer).
** as_alloc_count(): allocations attempted since the process started.
** as_alloc_live(): blocks allocated and not yet freed (as_free(NULL) frees
** nothing; as_realloc of NULL allocates one, moving a block keeps the count),
** so a test compares it before and after a case to see a leak of core memory.
*/
void as_alloc_hook_on(void);
void as_alloc_fail_after(unsigned long n);
int as_alloc_fail_hit(void);
unsigned long as_alloc_count(void);
long as_alloc_live(void);

#endif
