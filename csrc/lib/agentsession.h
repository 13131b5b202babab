/*
** agentsession: sessions of AI agents (create, persist, resume, fork, rewind,
** tag and list conversations) for hosts that link C.
**
** One header, one library: cc host.c $(pkg-config --cflags --libs agentsession)
**
** Sessions travel as JSON text, in the document form export writes:
**
**   {"metadata": {"id": "…", "name": "…", "tags": ["…"], "agent_name": "…",
**                 "created_at": 0, "updated_at": 0, "turn_count": 0,
**                 "total_tokens": 0, "parent_id": "…", "version": 1},
**    "messages": [ …any JSON values… ],
**    "state": …any JSON value…}
**
** plus, for a session loaded in part, "window": {"first": k, "count": n,
** "total": t, "version": v}. The rules (required fields, limits, windows,
** versions, errors) are those of the Lua module's manager; see docs/c-api.md.
**
** Conventions of every function below:
**  - It returns AGENTSESSION_OK, or an error status and then, when `err` is
**    not NULL, fills *err (kind, message, path, id). A failed call changes
**    nothing in the store.
**  - Text arguments are NUL-terminated UTF-8, read during the call only.
**  - A `char **` result receives text the library allocated, NUL-terminated,
**    which the caller frees with agentsession_free(); it is set to NULL when
**    the call fails. A result pointer may be NULL when the caller does not
**    want that result.
**  - An options pointer may be NULL for the defaults; an options struct
**    starts from its _INIT macro, so that fields added later get defaults.
**  - A manager is used by one thread at a time; separate managers are
**    independent of each other.
*/
#ifndef AGENTSESSION_H
#define AGENTSESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENTSESSION_VERSION_MAJOR 0
#define AGENTSESSION_VERSION_MINOR 1
#define AGENTSESSION_VERSION_PATCH 0
#define AGENTSESSION_VERSION "0.1.0"

#if defined(__GNUC__)
#define AGENTSESSION_API __attribute__((visibility("default")))
#else
#define AGENTSESSION_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum agentsession_status {
    AGENTSESSION_OK = 0,
    AGENTSESSION_ERR_NOT_FOUND = 1,   /* no session with that id */
    AGENTSESSION_ERR_INVALID = 2,     /* a session or argument that breaks the rules */
    AGENTSESSION_ERR_TOO_LARGE = 3,   /* over the store's max_session_bytes */
    AGENTSESSION_ERR_CONFLICT = 4,    /* expect_version or a window's version did not match */
    AGENTSESSION_ERR_STORAGE = 5,     /* the store failed or its data is damaged */
    AGENTSESSION_ERR_UNAVAILABLE = 6, /* a remote store cannot be reached or timed out */
    AGENTSESSION_ERR_CLOSED = 7,      /* the manager was closed */
    AGENTSESSION_ERR_NOMEM = 8        /* out of memory (its kind is "storage") */
} agentsession_status;

#define AGENTSESSION_ERROR_MESSAGE_SIZE 1024
#define AGENTSESSION_ERROR_PATH_SIZE 256
#define AGENTSESSION_ERROR_ID_SIZE 256

/* What went wrong: a plain struct the caller owns (on the stack is fine);
** it holds no pointer, so nothing in it is ever freed. */
typedef struct agentsession_error {
    agentsession_status status; /* as returned */
    /* "path: what went wrong", as the Lua module's error message */
    char message[AGENTSESSION_ERROR_MESSAGE_SIZE];
    /* the field at fault ("messages[3].content", "opts.port"), or "" */
    char path[AGENTSESSION_ERROR_PATH_SIZE];
    /* the session concerned, or "" */
    char id[AGENTSESSION_ERROR_ID_SIZE];
} agentsession_error;

/* The kind name of a status: "ok", "not_found", "invalid", "too_large",
** "conflict", "storage" (AGENTSESSION_ERR_NOMEM too), "unavailable", "closed".
** A static string. */
AGENTSESSION_API const char *agentsession_kind(agentsession_status status);

/* ---------------------------------------------------------------- memory and versions */

/* Frees text this library returned; NULL is fine. */
AGENTSESSION_API void agentsession_free(void *text);

/* The version of the library linked, AGENTSESSION_VERSION when it matches the header. */
AGENTSESSION_API const char *agentsession_version(void);

#define AGENTSESSION_UUID_SIZE 37 /* 36 characters and a NUL */

/* A new random (version 4) UUID in lowercase, for a new session's id. */
AGENTSESSION_API agentsession_status agentsession_uuid(char out[AGENTSESSION_UUID_SIZE],
                                                       agentsession_error *err);

/* ---------------------------------------------------------------- managers */

/* A manager: the operations below over one store. Opened by one of the
** agentsession_open_* functions, released by agentsession_manager_free(). */
typedef struct agentsession_manager agentsession_manager;

#define AGENTSESSION_DEFAULT_MAX_SESSION_BYTES ((size_t)16 * 1024 * 1024)

typedef struct agentsession_memory_options {
    size_t max_session_bytes; /* a session's limit as encoded JSON, at least 1 */
} agentsession_memory_options;

#define AGENTSESSION_MEMORY_OPTIONS_INIT { AGENTSESSION_DEFAULT_MAX_SESSION_BYTES }

/* A store in this process only, lost when the manager is freed. On success
** *out is a manager the caller releases with agentsession_manager_free(). */
AGENTSESSION_API agentsession_status agentsession_open_memory(const agentsession_memory_options *opts,
                                                              agentsession_manager **out,
                                                              agentsession_error *err);

typedef enum agentsession_durability {
    AGENTSESSION_DURABILITY_NORMAL, /* survives a crash of the process */
    AGENTSESSION_DURABILITY_FULL    /* also survives a power cut (slower writes) */
} agentsession_durability;

typedef struct agentsession_sqlite_options {
    int busy_timeout_ms;        /* how long to wait for another process's lock, 0 or more */
    agentsession_durability durability;
    bool triggers;              /* run the triggers the file holds (false: a file is data, never code) */
    size_t max_session_bytes;   /* as for memory */
} agentsession_sqlite_options;

#define AGENTSESSION_SQLITE_OPTIONS_INIT \
    { 5000, AGENTSESSION_DURABILITY_NORMAL, false, AGENTSESSION_DEFAULT_MAX_SESSION_BYTES }

/* A store in one SQLite file at `path` (created with mode 0600 when absent),
** durable and shared by processes. *out as for agentsession_open_memory(). */
AGENTSESSION_API agentsession_status agentsession_open_sqlite(const char *path,
                                                              const agentsession_sqlite_options *opts,
                                                              agentsession_manager **out,
                                                              agentsession_error *err);

typedef struct agentsession_redis_options {
    const char *host;         /* NULL: "127.0.0.1" */
    int port;                 /* 1..65535 */
    int db;                   /* the database number, 0 or more */
    const char *username;     /* NULL: the default user (needs a password when set) */
    const char *password;     /* NULL: no AUTH */
    const char *prefix;       /* of every key; NULL: "agentsession:" */
    int timeout_ms;           /* bounds each call to the server, 1 or more */
    size_t max_session_bytes; /* as for memory */
} agentsession_redis_options;

#define AGENTSESSION_REDIS_OPTIONS_INIT \
    { NULL, 6379, 0, NULL, NULL, NULL, 2000, AGENTSESSION_DEFAULT_MAX_SESSION_BYTES }

/* A store on a Redis server, shared by processes on many machines. The
** strings of opts are read during the call only. AGENTSESSION_ERR_UNAVAILABLE
** when the server cannot be reached; later calls reconnect by themselves.
** *out as for agentsession_open_memory(). */
AGENTSESSION_API agentsession_status agentsession_open_redis(const agentsession_redis_options *opts,
                                                             agentsession_manager **out,
                                                             agentsession_error *err);

/* A store over a Redis Cluster, learnt from any of the n nodes named
** ("host:port", an IPv6 address in brackets): sessions spread over its
** masters, redirections followed, the slot map learnt again as it changes.
** opts as for agentsession_open_redis() but host, port and db, which are not
** used (a cluster has db 0 only); its prefix holds no "{" or "}".
** AGENTSESSION_ERR_INVALID for a malformed node or a node that is not in
** cluster mode; AGENTSESSION_ERR_UNAVAILABLE when no node answers. */
AGENTSESSION_API agentsession_status agentsession_open_redis_cluster(const char *const *nodes,
                                                                     size_t n,
                                                                     const agentsession_redis_options *opts,
                                                                     agentsession_manager **out,
                                                                     agentsession_error *err);

/* Releases the store (closes the file, the connection); the manager stays
** valid, and its calls then fail with AGENTSESSION_ERR_CLOSED. Safe to call
** twice; NULL is fine. */
AGENTSESSION_API void agentsession_close(agentsession_manager *m);

/* Closes the manager when still open, then frees it; NULL is fine. */
AGENTSESSION_API void agentsession_manager_free(agentsession_manager *m);

/* ---------------------------------------------------------------- sessions */

#define AGENTSESSION_ANY_VERSION ((int64_t)-1) /* expect_version: no check */

typedef struct agentsession_save_options {
    /* The version the stored session must have, else AGENTSESSION_ERR_CONFLICT
    ** and nothing written; 0: it must not exist yet. */
    int64_t expect_version;
} agentsession_save_options;

#define AGENTSESSION_SAVE_OPTIONS_INIT { AGENTSESSION_ANY_VERSION }

/*
** Creates or replaces the session of the document `session_json` under its
** metadata.id. Sets updated_at to now, and created_at to now when it is 0 or
** absent (keeping the stored one when the id exists). version is set by the
** store (one more than the stored one).
** A document with a "window" (as a resume_last/resume_from gave it) is a
** window: the stored messages before window.first are kept and the rest
** replaced by the document's, unless the session was written since
** (AGENTSESSION_ERR_CONFLICT); a window that stops before the end of the
** history cannot be saved (AGENTSESSION_ERR_INVALID).
** *metadata_json: the metadata as stored.
*/
AGENTSESSION_API agentsession_status agentsession_save(agentsession_manager *m,
                                                       const char *session_json,
                                                       const agentsession_save_options *opts,
                                                       char **metadata_json,
                                                       agentsession_error *err);

/* The whole session `id` as a document, in *session_json. */
AGENTSESSION_API agentsession_status agentsession_resume(agentsession_manager *m, const char *id,
                                                         char **session_json,
                                                         agentsession_error *err);

/* A window of its last `last` messages (all of them when fewer): the document
** with a "window" field. A durable or remote store reads only those messages. */
AGENTSESSION_API agentsession_status agentsession_resume_last(agentsession_manager *m,
                                                              const char *id, size_t last,
                                                              char **session_json,
                                                              agentsession_error *err);

#define AGENTSESSION_TO_END ((size_t)-1) /* count: every message from `from` on */

/* A window of `count` messages from the 1-based `from` (clipped to the
** history). Only a window that reaches the end of the history can be saved. */
AGENTSESSION_API agentsession_status agentsession_resume_from(agentsession_manager *m,
                                                              const char *id, size_t from,
                                                              size_t count, char **session_json,
                                                              agentsession_error *err);

typedef struct agentsession_append_options {
    uint64_t tokens;            /* added to total_tokens */
    int64_t expect_version;     /* as for save, but 0 never matches */
    const char *state_json;     /* a JSON value that replaces the stored state in the same
                                ** write ("null" for a JSON null); NULL: the state stays */
    /* A name for this append, 1 to 128 bytes of UTF-8 without control
    ** characters (a UUID, say), so that it is applied at most once to the
    ** session: when an append carrying it was applied already, the call
    ** changes nothing and succeeds with the current metadata. The store
    ** remembers the op_ids of at least the session's last 100 such appends.
    ** NULL: none. */
    const char *op_id;
    bool *applied;              /* NULL, or set on success: true when this call applied the
                                ** append, false when op_id had been applied */
} agentsession_append_options;

#define AGENTSESSION_APPEND_OPTIONS_INIT { 0, AGENTSESSION_ANY_VERSION, NULL, NULL, NULL }

/* Appends `messages_json` (a JSON array of messages) to session `id` in one
** atomic write: turn_count grows by their number, total_tokens by
** opts->tokens, updated_at becomes now. Its cost does not grow with the
** history. *metadata_json: the new metadata (with an op_id already applied,
** the current one). An append that failed with AGENTSESSION_ERR_UNAVAILABLE
** may have been applied: sent again with the same op_id, it is applied once. */
AGENTSESSION_API agentsession_status agentsession_append(agentsession_manager *m, const char *id,
                                                         const char *messages_json,
                                                         const agentsession_append_options *opts,
                                                         char **metadata_json,
                                                         agentsession_error *err);

/* Keeps the first min(turn_index, messages) messages; turn_count becomes
** that number. *session_json: the rewound session. */
AGENTSESSION_API agentsession_status agentsession_rewind(agentsession_manager *m, const char *id,
                                                         uint64_t turn_index, char **session_json,
                                                         agentsession_error *err);

/* Copies session `id` under a new id (messages, state, tags, agent_name,
** counts; parent_id = id). Name: new_name, or "<name> (fork)" when new_name
** is NULL and the source has a name. *metadata_json: the new metadata. */
AGENTSESSION_API agentsession_status agentsession_fork(agentsession_manager *m, const char *id,
                                                       const char *new_name, char **metadata_json,
                                                       agentsession_error *err);

/* The same, keeping only the first min(at, messages) messages. */
AGENTSESSION_API agentsession_status agentsession_fork_at(agentsession_manager *m, const char *id,
                                                          const char *new_name, size_t at,
                                                          char **metadata_json,
                                                          agentsession_error *err);

/* Adds the `ntags` tags not yet present, keeping order (tags may be NULL
** when ntags is 0). *tags_json: the resulting tags, a JSON array. */
AGENTSESSION_API agentsession_status agentsession_tag(agentsession_manager *m, const char *id,
                                                      const char *const *tags, size_t ntags,
                                                      char **tags_json, agentsession_error *err);

/* Removes those tags. *tags_json as for agentsession_tag(). */
AGENTSESSION_API agentsession_status agentsession_untag(agentsession_manager *m, const char *id,
                                                        const char *const *tags, size_t ntags,
                                                        char **tags_json, agentsession_error *err);

/* Sets the session's name. */
AGENTSESSION_API agentsession_status agentsession_rename(agentsession_manager *m, const char *id,
                                                         const char *new_name,
                                                         agentsession_error *err);

/* Removes the session and all its data. */
AGENTSESSION_API agentsession_status agentsession_delete(agentsession_manager *m, const char *id,
                                                         agentsession_error *err);

/* ---------------------------------------------------------------- listing */

#define AGENTSESSION_NO_LIMIT ((size_t)-1)

/* Which sessions list() gives; every field set must match. */
typedef struct agentsession_filter {
    const char *const *tags; /* sessions carrying all of these (NULL when ntags is 0) */
    size_t ntags;
    const char *agent_name;  /* NULL: any */
    const char *parent_id;   /* the forks of this session; NULL: any */
    size_t offset;           /* skip this many */
    size_t limit;            /* at most this many */
} agentsession_filter;

#define AGENTSESSION_FILTER_INIT { NULL, 0, NULL, NULL, 0, AGENTSESSION_NO_LIMIT }

/* The metadata of the sessions that match (filter NULL: all), most recently
** updated first, as a JSON array in *metadata_array_json. */
AGENTSESSION_API agentsession_status agentsession_list(agentsession_manager *m,
                                                       const agentsession_filter *filter,
                                                       char **metadata_array_json,
                                                       agentsession_error *err);

/* ---------------------------------------------------------------- search and retention */

/*
** The sessions in which one message, or the name and tags taken together,
** hold every word of `query`: words are runs of letters, marks and digits,
** ASCII letters match in any case, words "in double quotes" are a phrase,
** matched in that order; a message's text is its string values. Among the
** sessions filter keeps (as for list), most recently updated first, after
** filter->offset and at most filter->limit of them (filter NULL: the first 20
** of every session). *results_json: a JSON array of
**   {"metadata":{…},"index":i,"snippet":"…"}
** `index` the 1-based index of the last message that matched (0: the name and
** tags), `snippet` at most 200 characters of its text around the match.
** AGENTSESSION_ERR_INVALID (path "query") for a query without a word.
*/
AGENTSESSION_API agentsession_status agentsession_search(agentsession_manager *m, const char *query,
                                                         const agentsession_filter *filter,
                                                         char **results_json,
                                                         agentsession_error *err);

typedef struct agentsession_prune_options {
    int64_t before;             /* deletes the sessions updated before it (Unix ms) */
    const char *keep_tag;       /* keeps the sessions carrying it; NULL: none */
    const char *const *tags;    /* only sessions carrying all of these (NULL when ntags is 0) */
    size_t ntags;
    const char *agent_name;     /* NULL: any */
    const char *parent_id;      /* the forks of this session; NULL: any */
    bool dry_run;               /* delete nothing; give the ids it would delete */
    /* Called after each batch with the number deleted so far (NULL: none). A
    ** status other than AGENTSESSION_OK stops the prune, which returns it. */
    agentsession_status (*progress)(void *ctx, size_t deleted);
    void *progress_ctx;
} agentsession_prune_options;

#define AGENTSESSION_PRUNE_OPTIONS_INIT { 0, NULL, NULL, 0, NULL, NULL, false, NULL, NULL }

/*
** Deletes the sessions whose updated_at is before opts->before, that the
** filters keep and that do not carry opts->keep_tag (opts is required: it
** holds `before`). It deletes in batches, each one atomic; a prune that fails
** keeps what the batches before deleted. *ids_json: a JSON array of the ids
** deleted (with dry_run, of those it would delete).
*/
AGENTSESSION_API agentsession_status agentsession_prune(agentsession_manager *m,
                                                        const agentsession_prune_options *opts,
                                                        char **ids_json, agentsession_error *err);

/* ---------------------------------------------------------------- export and import */

/* The session as one JSON document with the seed's metadata fields ("name"
** null when unset) and parent_id when it has one; no version, no window. */
AGENTSESSION_API agentsession_status agentsession_export(agentsession_manager *m, const char *id,
                                                         char **json, agentsession_error *err);

typedef struct agentsession_import_options {
    bool replace; /* overwrite a stored session with the same id (else AGENTSESSION_ERR_CONFLICT) */
} agentsession_import_options;

#define AGENTSESSION_IMPORT_OPTIONS_INIT { false }

/* Stores an exported document under its own id, with its timestamps, counts
** and parent_id. *metadata_json: the metadata as stored. */
AGENTSESSION_API agentsession_status agentsession_import(agentsession_manager *m, const char *json,
                                                         const agentsession_import_options *opts,
                                                         char **metadata_json,
                                                         agentsession_error *err);

/* ---------------------------------------------------------------- stats */

typedef struct agentsession_store_stats {
    const char *kind;     /* "memory", "sqlite" or "redis" */
    const char *location; /* the file or server; NULL for memory */
    uint64_t round_trips; /* requests a server answered */
    uint64_t connects;    /* connections made to a server */
    uint64_t retries;     /* operations run again after another client changed their session */
    uint64_t redirections; /* a cluster's MOVED and ASK answers */
    uint64_t refreshes;    /* times a cluster's slot map was learnt */
} agentsession_store_stats;

/* The store's counters. kind and location belong to the manager: valid until
** it is closed. */
AGENTSESSION_API agentsession_status agentsession_stats(agentsession_manager *m,
                                                        agentsession_store_stats *out,
                                                        agentsession_error *err);

/* ---------------------------------------------------------------- reading results */

/*
** Small readers of the JSON text this library returns, for hosts without a
** JSON library. `path` names a value as error paths do: members by name
** joined with '.', array items by 1-based index in brackets: "id",
** "metadata.turn_count", "messages[2].text", "[1].name" (in a list), "" for
** the whole text. Each reads the text from the start: a host reading many
** values of a large document is better served by a JSON library.
** AGENTSESSION_ERR_NOT_FOUND when nothing is at path; AGENTSESSION_ERR_INVALID
** when the value is of another type or the text is not JSON.
*/

/* A string value, unescaped, in *out (freed with agentsession_free()). A
** string holding a NUL character is AGENTSESSION_ERR_INVALID. */
AGENTSESSION_API agentsession_status agentsession_json_string(const char *json, const char *path,
                                                              char **out, agentsession_error *err);

/* An integer value (an integral number within int64_t). */
AGENTSESSION_API agentsession_status agentsession_json_integer(const char *json, const char *path,
                                                               int64_t *out, agentsession_error *err);

/* The number of items of an array, or of members of an object. */
AGENTSESSION_API agentsession_status agentsession_json_length(const char *json, const char *path,
                                                              size_t *out, agentsession_error *err);

#ifdef __cplusplus
}
#endif

#endif
