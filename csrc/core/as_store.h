/*
** The store interface: what a place that keeps sessions must do.
**
** A store is a table of functions over its own state. It keeps what it is told
** and answers what it is asked; the rules of the contract (timestamps, fork
** names, tag order, versions, validation) live in the manager, once, above
** every store. Each store is one file that fills an as_store_ops.
**
** Every write goes through `write`, which describes the new session as "keep
** the first `keep` stored messages, then append these", so append, rewind,
** tag and rename touch only what changes, and a store that keeps messages one
** per row or one per list entry never rewrites a whole history.
**
** A write or remove of a stored session follows a load of it in the same
** transaction, and is handed what that load found (as_write.old and .found),
** so a store needs no memory of its own between the two calls: its row id,
** its old index entries, the table a backend returned travel with the call.
*/
#ifndef AS_STORE_H
#define AS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "as_error.h"
#include "as_search.h"
#include "as_session.h"

typedef struct as_store as_store;

#define AS_KEEP_ALL ((size_t)-1)
#define AS_ALL ((size_t)-1)       /* as_span.count: every message from `first` on */
#define AS_SPAN_TAIL ((size_t)-1) /* as_span.first: the last `count` messages */

/* Which stored messages a load reads: `count` of them from index `first`
** (0-based), clipped to those stored; a `first` past the end reads none. */
typedef struct as_span {
    size_t first;
    size_t count;
} as_span;

/* The stored indexes [*first, *first + *n) a span covers among `total` messages. */
static inline void as_span_clip(const as_span *span, size_t total, size_t *first, size_t *n) {
    if (span->first == AS_SPAN_TAIL) {
        *n = span->count < total ? span->count : total;
        *first = total - *n;
        return;
    }
    *first = span->first < total ? span->first : total;
    *n = total - *first;
    if (span->count < *n) *n = span->count;
}

/* What a load tells of the stored session besides what it returns. */
typedef struct as_stored {
    size_t bytes; /* the stored size: its state's text, and each message's text plus one */
    size_t total; /* messages stored (set by a load with a span; a store whose
                  ** write needs it may set it for the metadata alone too) */
    size_t first; /* the stored index of the first message loaded (set with a span) */
    /* The store's own note of what it found, for the write or remove that
    ** follows (SQLite's row id, Redis's write number, a custom store's
    ** reference to the table its backend returned); 0 when it notes nothing.
    ** Once the operation is done with it, the manager hands it to `release`. */
    int64_t note;
} as_stored;

typedef struct as_write {
    const as_meta *meta;   /* the complete new metadata */
    size_t bytes;          /* the session's size after the write, as in as_stored */
    int create;            /* 1: the id must not exist yet; 0: it must exist */
    size_t keep;           /* stored messages kept before `append` (AS_KEEP_ALL: all) */
    as_blob *const *append;
    size_t nappend;
    as_blob *state;        /* NULL: the stored state stays */
    /* Non-NULL for a fork: the appended messages are the first `nappend` of
    ** this session, so a store may copy them where they lie. */
    const char *from;
    /* Of a stored session (create == 0): its metadata as loaded, and what the
    ** load of it in this transaction found. NULL for a new session. */
    const as_meta *old;
    const as_stored *found;
    /* Non-NULL for an append that carries an op_id (see op_applied below):
    ** the store records it with the write, in the same atomic step, and keeps
    ** the op ids of at least the last AS_OP_IDS_KEPT such writes of the
    ** session for as long as the session exists. */
    const char *op_id;
} as_write;

/* How many op ids a store keeps per session, at least: those of the session's
** last appends that carried one. A session's op ids go when it is removed;
** a write that replaces its messages (save, import, rewind) keeps them, a
** fork starts with none. */
#define AS_OP_IDS_KEPT 100

/* Counters a store may keep of its work (all zero when it keeps none). */
typedef struct as_store_stats {
    uint64_t round_trips; /* requests sent to a server and answered */
    uint64_t connects;    /* connections made to a server */
    uint64_t retries;     /* operations run again after another client changed their session */
    uint64_t redirections; /* a cluster's MOVED and ASK answers */
    uint64_t refreshes;    /* times a cluster's slot map was learnt */
} as_store_stats;

/* An append, for stores that do it in one step: the messages go after the
** stored ones; turn_count grows by nmsgs (AS_EINVALID past AS_TURN_COUNT_MAX),
** total_tokens by tokens (AS_EINVALID past max_tokens), version by
** one; updated_at becomes now; a non-NULL state replaces the stored one; the
** size grows by `bytes` (and by the new state's length less the old one's),
** and AS_ETOOLARGE when the session would then pass max_bytes (its size as in
** as_session_json_size). AS_ECONFLICT when expect_version >= 0 and the stored
** version differs; AS_ENOTFOUND when there is no such session. */
typedef struct as_append {
    const char *id;
    as_blob *const *msgs;
    size_t nmsgs;
    uint64_t tokens;
    int64_t expect_version; /* -1: none */
    int64_t now;
    size_t bytes;
    size_t max_bytes;
    uint64_t max_tokens; /* at most AS_TOTAL_TOKENS_MAX */
    as_blob *state; /* NULL: the stored state stays */
    /* NULL, or the append's op_id: when the session's op ids hold it, the
    ** append is not applied (nothing is written, no check fails) and `out`
    ** receives the stored metadata; else it is applied and op_id recorded in
    ** the same step (see as_write.op_id). First of the checks after the
    ** session is found: a repeat is not a conflict. */
    const char *op_id;
    int *applied; /* never NULL: receives 1 when the append was applied, else 0 */
} as_append;

typedef struct as_store_ops {
    const char *kind; /* "memory", "sqlite", ... */
    /* An operation's reads and writes between begin and commit are one atomic
    ** step for every other user of the store. A store whose every call is
    ** already atomic for its users leaves all three NULL.
    **
    ** The manager's operations read first and write last: a store may defer
    ** its writes to commit. Before writing or removing a stored session the
    ** manager has loaded it in the same transaction, and hands the write what
    ** the load found. An optimistic store may fail any
    ** step with AS_ERETRY (see as_error.h); the manager then rolls back and
    ** runs the whole operation again, beginning anew, and the store bounds
    ** how long that goes on. */
    as_status (*begin)(as_store *st, int write, as_error *err);
    as_status (*commit)(as_store *st, as_error *err);
    void (*rollback)(as_store *st);
    /* Loads the metadata, the state and the messages of `span` (NULL: the
    ** metadata alone, with msgs and state NULL), and tells the stored size
    ** and, with a span, how many messages are stored and where those loaded
    ** begin, and notes what a write needs (found->note). A store outside the
    ** process reads only the span's messages. AS_ENOTFOUND if absent (and
    ** nothing noted). */
    as_status (*load)(as_store *st, const char *id, const as_span *span, as_session *out,
                      as_stored *found, as_error *err);
    as_status (*write)(as_store *st, const as_write *w, as_error *err);
    /* Removes the session `old` that a load found. */
    as_status (*remove)(as_store *st, const as_meta *old, const as_stored *found, as_error *err);
    /* Optional: frees what a load noted (found->note), which is not used again. */
    void (*release)(as_store *st, as_stored *found);
    /* Metadata matching the filter, most recently updated first, ties to the
    ** most recent write, after `offset` and at most `limit` of them. */
    as_status (*list)(as_store *st, const as_filter *f, as_meta_list *out, as_error *err);
    void (*close)(as_store *st);
    /* NULL when the store keeps no counters. */
    void (*stats)(as_store *st, as_store_stats *out);
    /* Optional: an append as one atomic step of the store's own (for a server,
    ** one round trip). It does what the manager's append does from the stored
    ** metadata (see as_append); NULL: the manager loads, then writes. */
    as_status (*append)(as_store *st, const struct as_append *a, as_meta *out, as_error *err);
    /* 1 when the store compares message texts to find what changed, and so
    ** wants them canonical: object keys in byte order, so that an unchanged
    ** message gives the same text however its table was built. */
    int canonical;
    /* Whether an append carrying op_id was applied to the session `old`, which
    ** a load in this transaction found (found: what it noted): *applied
    ** receives 1 when the session's op ids hold it, else 0. A store with its
    ** own append answers op ids there and may leave this NULL; a store with
    ** neither keeps no op ids, and an append with an op_id is refused. */
    as_status (*op_applied)(as_store *st, const as_meta *old, const as_stored *found,
                            const char *op_id, int *applied, as_error *err);
    /* Optional: a search's candidates (see as_search.h): the sessions that
    ** match the filter and whose texts may hold every key of q, in list
    ** order, after f->offset and at most f->limit of them. Every session that
    ** matches the query must be among them; others may be. NULL: the manager
    ** takes every session list() gives as a candidate and reads it whole. */
    as_status (*search)(as_store *st, const as_query *q, const as_filter *f,
                        as_candidate_list *out, as_error *err);
    /* Optional: a prune that is one operation of the store's own, deleting
    ** what p asks (never with p->dry_run) and giving the ids deleted. NULL:
    ** the manager lists the sessions (as_filter.before and .without_tag) and
    ** removes them, prune_batch sessions per transaction. */
    as_status (*prune)(as_store *st, const as_prune *p, as_id_list *out, as_error *err);
    size_t prune_batch; /* 0: one */
} as_store_ops;

struct as_store {
    const as_store_ops *ops;
    /* Where the data lives (a file's path, a server's address), for messages;
    ** NULL when it lives in this process. Texts a store outside the process
    ** loads may have been damaged there, so the manager checks them before it
    ** writes anything on the strength of them. */
    const char *location;
};

#endif
