/*
** JSON text: a strict parser that reports values to a sink, and the writing
** primitives an encoder needs (strings checked for UTF-8, numbers that read
** back exactly, integers kept apart from floats).
**
** The parser keeps no heap memory of its own: strings with escapes are decoded
** into a scratch buffer the caller owns, so a sink may abandon a parse at any
** point (a sink may even longjmp out of it) and the caller frees the scratch later.
*/
#ifndef AS_JSON_H
#define AS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_error.h"

/* Nested arrays and objects allowed in one value. */
#define AS_JSON_MAX_DEPTH 128

/* Every callback returns 0 to go on, anything else to stop (the parse then fails
** with the error the sink put in its own context, or a generic one). */
typedef struct as_json_sink {
    int (*null_value)(void *ctx);
    int (*boolean)(void *ctx, int value);
    int (*integer)(void *ctx, int64_t value);
    int (*number)(void *ctx, double value);
    int (*string)(void *ctx, const char *s, size_t len);
    int (*begin_array)(void *ctx);
    int (*array_item)(void *ctx, size_t index); /* after each element; index from 1 */
    int (*end_array)(void *ctx);
    int (*begin_object)(void *ctx);
    int (*key)(void *ctx, const char *s, size_t len);
    int (*object_item)(void *ctx); /* after each member's value */
    int (*end_object)(void *ctx);
    /* An integer literal outside the 64-bit range: its text (sign and digits) and
    ** the nearest double. NULL: `number` gets that double, as for any float. */
    int (*big_integer)(void *ctx, const char *text, size_t len, double nearest);
} as_json_sink;

/* Parse flags. */
#define AS_JSON_TRUSTED 1 /* text this library wrote: skip the UTF-8 check of strings */
/* A session document {"metadata":…,"messages":[…],"state":…}: the document and its
** messages array are a frame around the values, so they do not count against
** AS_JSON_MAX_DEPTH (each value inside is held to it when the session is checked). */
#define AS_JSON_DOCUMENT 2

/*
** Parses exactly one JSON value (surrounded by optional white space) from text.
** On failure returns AS_EINVALID with a message naming the byte offset (1-based)
** and the path (rooted at `root`, e.g. "value"), or the sink's status.
*/
as_status as_json_parse(const char *text, size_t len, const as_json_sink *sink, void *ctx,
                        as_buf *scratch, int flags, const char *root, as_error *err);

/* Checks that text is one JSON value, without building anything. */
as_status as_json_validate(const char *text, size_t len, as_buf *scratch, const char *root,
                           as_error *err);

/* Writing. Each returns 0, or -1 when memory runs out. */
int as_json_write_integer(as_buf *b, int64_t v);
/* A double with the fewest significant digits that read back bit for bit (of
** two such decimals the nearer), always with a '.' or an exponent so it reads
** back as a float, and a '.' whatever the locale. Returns 1 for NaN or
** infinity (nothing written), -1 on no memory. */
int as_json_write_double(as_buf *b, double v);
/* A quoted string. Returns 1 when s is not valid UTF-8 (nothing written; *bad is
** the offset of the first bad byte), -1 on no memory. */
int as_json_write_string(as_buf *b, const char *s, size_t len, size_t *bad);

#endif
