/*
** Sessions from JSON text, for hosts that hold sessions as JSON rather than as
** Lua tables: the session document {"metadata":…,"messages":[…],"state":…},
** an array of messages, one value.
**
** Each message and the state become one blob, written compactly (the text
** as_json writes: no white space, strings with the fewest escapes, numbers
** that read back exactly); with `canonical`, object members in byte order of
** their keys (as_store_ops.canonical). A key repeated in one object is refused:
** no store could give both members back. Values nest at most
** AS_JSON_MAX_DEPTH levels, counted from each message and from the state.
**
** Failures are AS_EINVALID with the path of the field (metadata.id,
** messages[3].content, window.total) or AS_ENOMEM. Whatever the outcome, the
** caller clears what it passed in (as_session_clear, as_blob_unref).
*/
#ifndef AS_SESSION_JSON_H
#define AS_SESSION_JSON_H

#include <stddef.h>

#include "as_error.h"
#include "as_manager.h"
#include "as_session.h"

/* What a document may hold besides the seed's fields and parent_id. */
typedef enum as_doc_form {
    AS_DOC_SESSION, /* a session to save: metadata.version (read, not used) and "window" */
    AS_DOC_EXPORT   /* export's document, for import: neither */
} as_doc_form;

/*
** Parses a session document into `out` (zeroed by the caller). Metadata as
** the Lua binding takes a session table: id and agent_name required strings;
** name, parent_id and tags optional (null is absent); created_at,
** updated_at, turn_count, total_tokens (and version) whole numbers from 0;
** any other field refused. messages: an array (absent: none); state: any
** value (absent: an empty object; null is a JSON null state).
** A "window" (AS_DOC_SESSION only) fills *win and sets *windowed to 1: first
** (1-based, as resume gives it), total and version required, count optional
** (absent: the document's messages); else *windowed is 0. win and windowed
** may be NULL for AS_DOC_EXPORT.
*/
as_status as_session_from_json(const char *text, size_t len, as_doc_form form, int canonical,
                               as_session *out, as_window *win, int *windowed, as_error *err);

/* A JSON array of messages, appended to out->msgs as blobs. `root` names the
** array in error paths ("messages"). */
as_status as_messages_from_json(const char *text, size_t len, int canonical, const char *root,
                                as_session *out, as_error *err);

/* One JSON value as a new blob in *out (NULL on failure). `root` names it in
** error paths ("state"). */
as_status as_blob_from_json(const char *text, size_t len, int canonical, const char *root,
                            as_blob **out, as_error *err);

#endif
