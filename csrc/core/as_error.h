/*
** Status codes and the error record every core function fills on failure.
**
** The core never exits and never prints: a failing function returns a status
** other than AS_OK and describes the failure in an as_error the caller owns
** (a plain struct, no heap memory, so it survives anything the caller does next).
*/
#ifndef AS_ERROR_H
#define AS_ERROR_H

#include <stddef.h>

typedef enum as_status {
    AS_OK = 0,
    AS_ENOTFOUND,
    AS_EINVALID,
    AS_ETOOLARGE,
    AS_ECONFLICT,
    AS_ESTORAGE,
    AS_EUNAVAILABLE,
    AS_ECLOSED,
    AS_ENOMEM,
    /* Between a store and the manager only: another client changed what the
    ** operation read before it could commit, so the manager runs it again.
    ** The store decides when to stop (and fails with AS_EUNAVAILABLE). */
    AS_ERETRY
} as_status;

#define AS_ERROR_MESSAGE_MAX 512
#define AS_ERROR_PATH_MAX 256
#define AS_ID_MAX 255

typedef struct as_error {
    as_status status;
    char path[AS_ERROR_PATH_MAX];       /* field path, e.g. "messages[3].content"; may be empty */
    char message[AS_ERROR_MESSAGE_MAX]; /* what went wrong, without the path */
    char id[AS_ID_MAX + 1];             /* the session id concerned; may be empty */
} as_error;

void as_error_clear(as_error *e);
/* Sets status and message (printf-style); clears path and id. Returns status. */
as_status as_error_set(as_error *e, as_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
as_status as_error_nomem(as_error *e);
/* Out of memory for the result of an append that was applied to session `id`
** (a store's own append writes before its result is read). */
as_status as_error_nomem_applied(as_error *e, const char *id);
/* Puts a segment in front of the path ("[3]", ".content", "metadata"). */
void as_error_prefix(as_error *e, const char *segment);
void as_error_prefix_index(as_error *e, size_t index);
void as_error_prefix_key(as_error *e, const char *key, size_t len);
void as_error_set_id(as_error *e, const char *id);
/* "not_found", "invalid", ...: the kind names of API.md. */
const char *as_status_kind(as_status status);
/* The status of a kind name of API.md ("not_found" ... "closed"); AS_OK for
** any other text. */
as_status as_status_of_kind(const char *kind);

#endif
