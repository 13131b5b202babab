/*
** The core's allocator (see as_alloc.h), with its test hook.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_alloc.h"

/* The test hook's state (see as_alloc.h): process-global, not thread-safe. It
** is written only once a test host has called as_alloc_hook_on; until then the
** normal path only reads `hooked`, so hosts running managers on several threads
** share nothing that is written. */
static int hooked;
static unsigned long fail_countdown; /* 0: off; else allocations until the failing one */
static int fail_hit;
static unsigned long alloc_count;
static long live_blocks;

/* Counts an allocation; is it the one to fail? */
static int hook_alloc(void) {
    alloc_count++;
    if (fail_countdown == 0 || --fail_countdown != 0) return 0;
    fail_hit = 1;
    return 1;
}

#define HOOKED() __builtin_expect(hooked, 0)

void *as_malloc(size_t n) {
    void *p;
    if (HOOKED() && hook_alloc()) return NULL;
    p = malloc(n ? n : 1);
    if (HOOKED() && p != NULL) live_blocks++;
    return p;
}

void *as_calloc(size_t count, size_t size) {
    void *p;
    if (HOOKED() && hook_alloc()) return NULL;
    p = calloc(count ? count : 1, size ? size : 1);
    if (HOOKED() && p != NULL) live_blocks++;
    return p;
}

void *as_realloc(void *p, size_t n) {
    void *q;
    if (HOOKED() && hook_alloc()) return NULL;
    q = realloc(p, n ? n : 1);
    if (HOOKED() && q != NULL && p == NULL) live_blocks++;
    return q;
}

void as_free(void *p) {
    if (p == NULL) return;
    if (HOOKED()) live_blocks--;
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

/* ---------------------------------------------------------------- test hook */

void as_alloc_hook_on(void) {
    hooked = 1;
}

void as_alloc_fail_after(unsigned long n) {
    fail_countdown = n;
    if (n != 0) fail_hit = 0;
}

int as_alloc_fail_hit(void) {
    return fail_hit;
}

unsigned long as_alloc_count(void) {
    return alloc_count;
}

long as_alloc_live(void) {
    return live_blocks;
}
