/*
** The session manager: the contract of API.md over any store.
**
** This is the C host's entry point. A manager owns its store; every call
** returns AS_OK or fills the error, and a failed call leaves the store as it
** was. Results are written into structs the caller owns and clears.
*/
#ifndef AS_MANAGER_H
#define AS_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "as_error.h"
#include "as_session.h"
#include "as_store.h"

typedef struct as_manager as_manager;

typedef struct as_manager_opts {
    size_t max_session_bytes; /* 0: AS_DEFAULT_MAX_SESSION_BYTES */
    /* How far an append may take total_tokens (AS_EINVALID past it); 0:
    ** AS_TOTAL_TOKENS_MAX. A host whose numbers are doubles, which refuses to
    ** read a count beyond 2^53, sets 2^53: no append then writes a count it
    ** cannot read back. */
    uint64_t max_total_tokens;
} as_manager_opts;

/* Takes the store (closed with the manager, also on failure). */
as_status as_manager_new(as_store *store, const as_manager_opts *opts, as_manager **out,
                         as_error *err);
/* A function the manager calls in every write it hands the store (save,
** import, fork, rewind, tag, untag, rename, append; not delete), once the new
** metadata is final and just before the store is asked to write: w->meta is
** then exactly the metadata the operation returns (for rewind, the metadata of
** the session it fills). A status other than AS_OK (with err filled) fails the
** operation before anything is written. A host builds there what it returns
** to its caller when building it may fail (runs out of memory), so that the
** failure leaves the store unchanged. The hook may run more than once in one operation (a store may ask
** for a retry). A store's own append (as_store_ops.append) writes without
** calling it. NULL: none (the default). */
typedef as_status (*as_write_hook)(void *ctx, const as_write *w, as_error *err);
void as_manager_set_write_hook(as_manager *m, as_write_hook hook, void *ctx);
/* Closes the store and frees the manager; NULL is fine. */
void as_manager_free(as_manager *m);
const char *as_manager_kind(const as_manager *m);
/* Whether the store wants messages and state as canonical JSON (as_store_ops.canonical). */
int as_manager_canonical(const as_manager *m);
/* Whether the store appends by itself (as_store_ops.append): its appends write
** without calling the write hook, so their result can only be built after. */
int as_manager_store_appends(const as_manager *m);
/* Where the store keeps its data (as_store.location), or NULL. */
const char *as_manager_location(const as_manager *m);

/* The store's counters (zero when it keeps none). */
void as_manager_stats(const as_manager *m, as_store_stats *out);

/* Unix milliseconds from the wall clock. */
int64_t as_now_ms(void);
/* A random (version 4) UUID in lowercase: 36 characters and a NUL. */
as_status as_uuid_v4(char out[37], as_error *err);

/* A window: a session loaded in part. Its messages were the stored ones at
** indexes [first, first + count) (0-based) of the `total` messages stored at
** `version`. */
typedef struct as_window {
    size_t first;
    size_t count;
    size_t total;
    int64_t version;
} as_window;

/* Creates or replaces a session. The session's metadata is checked and
** completed; `s` is not modified. Its blobs must hold valid JSON
** (as_json_validate checks one); a NULL state is an empty object.
** win NULL: `s` is the whole session. Otherwise `s` is a window: the first
** win->first stored messages are kept and the rest replaced by s's, provided
** the stored version is still win->version (else AS_ECONFLICT); a window that
** stops before the end of the history (first + count < total) is AS_EINVALID.
** expect_version: the version the stored session must have (0: none may be
** stored), else AS_ECONFLICT; -1 for any; with a window, -1 or win->version.
** `stored` receives the metadata as stored. */
as_status as_manager_save(as_manager *m, const as_session *s, const as_window *win,
                          int64_t expect_version, as_meta *stored, as_error *err);
/* Loads a session: span NULL for the whole of it, else the messages of the
** span (see as_span), and then `win` (may be NULL) tells which they are. */
as_status as_manager_resume(as_manager *m, const char *id, const as_span *span,
                            as_session *out, as_window *win, as_error *err);
as_status as_manager_list(as_manager *m, const as_filter *f, as_meta_list *out, as_error *err);
/* name NULL: "<source name> (fork)" when the source has a name. at: messages
** kept (AS_KEEP_ALL for all). */
as_status as_manager_fork(as_manager *m, const char *id, const char *name, size_t at,
                          as_meta *out, as_error *err);
as_status as_manager_rewind(as_manager *m, const char *id, uint64_t turn_index, as_session *out,
                            as_error *err);
/* Adds (remove = 0) or removes tags; `out` receives the resulting metadata. */
as_status as_manager_tag(as_manager *m, const char *id, const char *const *tags, size_t ntags,
                         int remove, as_meta *out, as_error *err);
as_status as_manager_rename(as_manager *m, const char *id, const char *name, as_error *err);
as_status as_manager_delete(as_manager *m, const char *id, as_error *err);
/* The session as one JSON document with the seed's field names, and its
** parent_id when it has one (as_session_write_export_json), appended to out. */
as_status as_manager_export(as_manager *m, const char *id, as_buf *out, as_error *err);
/* Stores a session under its own id with its metadata as given (timestamps,
** counts and parent_id kept; version 1, or one more than the stored one). AS_ECONFLICT
** when the id exists, unless `replace`. */
as_status as_manager_import(as_manager *m, const as_session *s, int replace, as_meta *stored,
                            as_error *err);
/* What an append does besides adding its messages. */
typedef struct as_append_opts {
    uint64_t tokens;        /* added to total_tokens */
    int64_t expect_version; /* as for save, but 0 never matches: the session must exist; -1: any */
    as_blob *state;         /* replaces the stored state in the same write; NULL: it stays */
    /* NULL, or a name for this append (as_check_op_id): applied at most once
    ** per session. When an append carrying it was applied to the session
    ** already, nothing is written and `out` receives the current metadata. */
    const char *op_id;
    int *applied; /* NULL, or receives 1 when the append was applied, 0 when op_id was */
} as_append_opts;

/* Appends messages (valid JSON blobs); turn_count grows by n. opts NULL: no
** tokens, any version, the state stays, no op_id. `out` receives the new
** metadata (the current one when op_id had been applied). */
as_status as_manager_append(as_manager *m, const char *id, as_blob *const *msgs, size_t n,
                            const as_append_opts *opts, as_meta *out, as_error *err);
/* ---------------------------------------------------------------- search and retention */

/* The sessions whose one message, or whose label, holds every phrase of
** `query` (see as_search.h), among those matching the filter, most recently
** updated first, after f->offset and at most f->limit of them; each with the
** index of its last message that matched (0: the label) and a snippet.
** AS_EINVALID (path "query") for a query without a word. */
as_status as_manager_search(as_manager *m, const char *query, const as_filter *f,
                            as_found_list *out, as_error *err);
/* Deletes the sessions p asks for (see as_prune) and gives their ids; with
** p->dry_run deletes nothing and gives the ids it would delete. It deletes in
** batches, each one transaction: a prune that fails (or that p->progress
** stops) keeps what the batches before deleted, and gives no ids. */
as_status as_manager_prune(as_manager *m, const as_prune *p, as_id_list *out, as_error *err);

#endif
