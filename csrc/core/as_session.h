/*
** The session model: metadata, messages and state.
**
** Messages and state are kept as JSON text, one immutable, reference-counted
** blob per message, so appending, rewinding and forking move blobs around and
** never re-encode a history; a fork shares the blobs of its source.
*/
#ifndef AS_SESSION_H
#define AS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_error.h"

#define AS_NAME_MAX 1024  /* bytes in a name or agent_name */
#define AS_TAG_MAX 255    /* bytes in a tag */
#define AS_TURN_COUNT_MAX UINT32_MAX
#define AS_TOTAL_TOKENS_MAX ((uint64_t)INT64_MAX)
#define AS_DEFAULT_MAX_SESSION_BYTES ((size_t)16 * 1024 * 1024)

/* One JSON value as text. Not thread-safe: a blob belongs to one manager's thread. */
typedef struct as_blob {
    size_t refs;
    size_t len;
    char text[]; /* len bytes and a NUL */
} as_blob;

as_blob *as_blob_new(const char *text, size_t len);
/* Takes the bytes of a buffer as a new blob (the buffer is left empty). */
as_blob *as_blob_from_buf(as_buf *b);
static inline as_blob *as_blob_ref(as_blob *b) { b->refs++; return b; }
void as_blob_unref(as_blob *b);

typedef struct as_meta {
    char *id;
    char *name;       /* NULL when unset */
    char *agent_name;
    char *parent_id;  /* NULL unless forked */
    char **tags;
    size_t ntags;
    int64_t created_at;
    int64_t updated_at;
    uint32_t turn_count;
    uint64_t total_tokens;
    int64_t version;
} as_meta;

typedef struct as_session {
    as_meta meta;
    as_blob **msgs;
    size_t nmsgs;
    as_blob *state; /* NULL only in a session being built */
} as_session;

typedef struct as_meta_list {
    as_meta *items;
    size_t n;
    size_t cap;
} as_meta_list;

/* Filters of list(): every set field must match; tags all present. */
typedef struct as_filter {
    const char *const *tags;
    size_t ntags;
    const char *agent_name; /* NULL: any */
    const char *parent_id;  /* NULL: any */
    size_t offset;
    size_t limit;           /* SIZE_MAX: no limit */
    /* What prune asks of list: updated_at < before (when has_before), and
    ** without the tag without_tag (when not NULL). */
    int has_before;
    int64_t before;
    const char *without_tag;
} as_filter;

#define AS_FILTER_ALL { NULL, 0, NULL, NULL, 0, SIZE_MAX, 0, 0, NULL }

void as_meta_clear(as_meta *m);
as_status as_meta_copy(as_meta *dst, const as_meta *src, as_error *err);
/* Validates strings (ids, names, tags) and drops repeated tags, keeping the first. */
as_status as_meta_check(as_meta *m, as_error *err);
int as_meta_has_tag(const as_meta *m, const char *tag);
int as_meta_matches(const as_meta *m, const as_filter *f);

/* Checks an id: 1..255 bytes of UTF-8 without control characters. `what` is its path. */
as_status as_check_id(const char *id, size_t len, const char *what, as_error *err);
as_status as_check_tag(const char *tag, size_t len, const char *what, as_error *err);
/* A name or agent_name: 0..1024 bytes of UTF-8 without control characters. */
as_status as_check_name(const char *name, size_t len, const char *what, as_error *err);

void as_session_clear(as_session *s);
/* Appends blobs (references taken) to a session's messages. */
as_status as_session_push(as_session *s, as_blob *const *msgs, size_t n, as_error *err);

void as_meta_list_clear(as_meta_list *l);
/* Appends a copy of m. */
as_status as_meta_list_push(as_meta_list *l, const as_meta *m, as_error *err);
/* Room for n items in all (a store then fills items[l->n ...] and counts them). */
as_status as_meta_list_reserve(as_meta_list *l, size_t n, as_error *err);

/* The metadata as a JSON object with the seed's field names. */
int as_meta_write_json(as_buf *b, const as_meta *m);
/* Bytes of the session as one JSON document {"metadata":…,"messages":[…],"state":…}. */
as_status as_session_json_size(const as_session *s, size_t *size, as_error *err);
int as_session_write_json(as_buf *b, const as_session *s);
/* The export document: the same with the seed's eight metadata fields (as its
** serde types write them: id, name (null when unset), tags, agent_name,
** created_at, updated_at, turn_count, total_tokens), then parent_id when the
** session has one; no version. */
int as_session_write_export_json(as_buf *b, const as_session *s);

/* ---------------------------------------------------------------- op ids */

/* An op_id names one append so that sending it again cannot apply it twice
** (see as_append_opts.op_id): 1..AS_OP_ID_MAX bytes of UTF-8 without control
** characters, as an id. `what` is its path. */
#define AS_OP_ID_MAX 128
as_status as_check_op_id(const char *op_id, size_t len, const char *what, as_error *err);

#endif
