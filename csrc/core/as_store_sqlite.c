/*
** The SQLite store: sessions in one file, durable and shared by processes.
**
** Layout (schema version 5, kept in PRAGMA user_version):
**   sessions  one row per session: the metadata in columns, the state as JSON
**             text, the message count, the session's size in bytes (`bytes`,
**             so append checks the size limit without reading the history),
**             and `seq`, a store-wide write counter that breaks list()'s ties
**             between equal updated_at;
**   messages  one row per message, keyed by slot = rid * 2^32 + position, so
**             a session's messages sit together in key order: "the last n",
**             append and rewind are range operations on the key. Each row
**             keeps a digest of its text, also held by a small index, so a save
**             reads a session's digests without touching its texts, and
**             rewrites only the rows whose digest changed;
**   tags      one row per tag, carrying its session's updated_at and seq, so a
**             tag filter walks an index already in list order;
**   counter   the last seq given out;
**   search    an FTS5 index without content: for each message its slot and
**             the search keys of its text (as_search.h), and for each
**             session's label (name and tags) the slot rid * 2^32 + 2^32 - 1,
**             which no message takes;
**   search_recent  the same rows, as text, for the texts written since the
**             last write that moved them into `search` (at most RECENT_MAX):
**             an FTS5 insert costs a new segment per transaction, a row of
**             this table a row. A search reads both. Every write keeps them
**             in its own transaction: a text's keys are removed with it
**             (recomputed from the stored text) and added with the new one.
** A session's row also keeps, in `ops`, the digests of the op ids of its last
** appends that carried one: the row every write rewrites anyway, so that
** recording an op id writes no page of its own.
** Version 1 kept messages keyed by (rid, pos) without digests, version 2 had
** no `bytes`, version 3 no `ops`, version 4 no search index; opening such a
** file migrates it in one transaction.
**
** Writes run in BEGIN IMMEDIATE transactions: the write lock is taken first,
** so a busy file is waited for (busy_timeout_ms) and never deadlocks on a lock
** upgrade. WAL lets readers go on while one process writes.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "as_alloc.h"
#include "as_digest.h"
#include "as_store_sqlite.h"

#define SCHEMA_VERSION 5
#define APPLICATION_ID 1634169715 /* 0x61677373, "agss" */
#define STR(x) #x
#define XSTR(x) STR(x)
#define SLOT_SPAN ((int64_t)1 << 32) /* slots of one session: rid * SLOT_SPAN + pos */
/* so that (rid + 1) * SLOT_SPAN, the end of the last session's slots, fits */
#define RID_MAX_VALUE 2147483646
#define RID_MAX ((int64_t)RID_MAX_VALUE)
/* sessions.ops: the op ids' digests, OP_DIGEST bytes each (little-endian),
** oldest first, at most AS_OP_IDS_KEPT of them. A write with an op id
** (?14, its digest; NULL for any other write) keeps the last
** AS_OP_IDS_KEPT - 1 and adds it. */
#define OP_DIGEST 8
#define OPS_TAIL 792
#define OPS_PUSH                                                                            \
    "CASE WHEN ?14 IS NULL THEN ops WHEN ops IS NULL THEN ?14"                              \
    " ELSE CAST(substr(ops, -" XSTR(OPS_TAIL) ") || ?14 AS BLOB) END"
_Static_assert(OPS_TAIL == (AS_OP_IDS_KEPT - 1) * OP_DIGEST, "OPS_TAIL keeps all but one op id");

enum {
    S_BEGIN_READ, S_BEGIN_WRITE, S_COMMIT, S_ROLLBACK,
    S_META, S_TAGS, S_STATE, S_MSGS, S_DIGESTS,
    S_NEXT_SEQ, S_SEQ, S_KEY,
    S_INSERT_SESSION, S_UPDATE_SESSION, S_UPDATE_STATE, S_DELETE_SESSION,
    S_DELETE_TAGS, S_INSERT_TAG,
    S_INSERT_MSG, S_UPDATE_MSG, S_DELETE_MSGS,
    S_OPS,
    S_COUNT
};

#define META_COLUMNS                                                                        \
    "s.rid, s.id, s.name, s.agent_name, s.parent_id, s.created_at, s.updated_at, "          \
    "s.turn_count, s.total_tokens, s.version, s.nmsgs, s.bytes"

static const char *const sql_text[S_COUNT] = {
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SELECT " META_COLUMNS " FROM sessions s WHERE s.id = ?1",
    "SELECT tag FROM tags WHERE rid = ?1 ORDER BY pos",
    "SELECT state FROM sessions WHERE rid = ?1",
    "SELECT slot, body FROM messages WHERE slot >= ?1 AND slot < ?2 ORDER BY slot",
    "SELECT slot, digest FROM messages WHERE slot >= ?1 AND slot < ?2 ORDER BY slot",
    "UPDATE counter SET seq = seq + 1",
    "SELECT seq FROM counter",
    "SELECT digest_key FROM counter",
    "INSERT INTO sessions (id, name, agent_name, parent_id, created_at, updated_at, seq, "
    "turn_count, total_tokens, version, nmsgs, state, bytes) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    "UPDATE sessions SET name = ?2, agent_name = ?3, parent_id = ?4, created_at = ?5, "
    "updated_at = ?6, seq = ?7, turn_count = ?8, total_tokens = ?9, version = ?10, nmsgs = ?11, "
    "bytes = ?13, ops = " OPS_PUSH " WHERE rid = ?1",
    "UPDATE sessions SET state = ?2 WHERE rid = ?1",
    "DELETE FROM sessions WHERE rid = ?1",
    "DELETE FROM tags WHERE rid = ?1",
    "INSERT INTO tags (rid, pos, tag, updated_at, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
    "INSERT INTO messages (slot, digest, body) VALUES (?1, ?2, ?3)",
    "UPDATE messages SET digest = ?2, body = ?3 WHERE slot = ?1",
    "DELETE FROM messages WHERE slot >= ?1 AND slot < ?2",
    "SELECT ops FROM sessions WHERE rid = ?1",
};

static const char schema_tables[] =
    "CREATE TABLE counter (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL,"
    " digest_key INTEGER NOT NULL);"
    "INSERT INTO counter VALUES (1, 0, random());"
    "CREATE TABLE sessions ("
    " rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT, agent_name TEXT NOT NULL,"
    " parent_id TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, turn_count INTEGER NOT NULL, total_tokens INTEGER NOT NULL,"
    " version INTEGER NOT NULL, nmsgs INTEGER NOT NULL, state TEXT NOT NULL,"
    " bytes INTEGER NOT NULL, ops BLOB);"
    "CREATE TABLE tags ("
    " rid INTEGER NOT NULL, pos INTEGER NOT NULL, tag TEXT NOT NULL,"
    " updated_at INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (rid, pos)) WITHOUT ROWID;"
    "CREATE TABLE messages (slot INTEGER PRIMARY KEY, digest INTEGER, body TEXT NOT NULL);";

/* Created with IF NOT EXISTS, so a migrated file gains any it lacks. */
static const char schema_indexes[] =
    "CREATE INDEX IF NOT EXISTS sessions_recent ON sessions (updated_at, seq);"
    "CREATE INDEX IF NOT EXISTS sessions_agent ON sessions (agent_name, updated_at, seq);"
    "CREATE INDEX IF NOT EXISTS sessions_parent ON sessions (parent_id, updated_at, seq)"
    " WHERE parent_id IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS tags_recent ON tags (tag, updated_at, seq);"
    "CREATE INDEX IF NOT EXISTS messages_digest ON messages (slot, digest);";

/* Version 1 had no digests: a key is drawn, then every message is re-keyed by
** slot with its digest (agentsession_digest uses the store's key). */
static const char migrate_1_to_2_key[] =
    "ALTER TABLE counter ADD COLUMN digest_key INTEGER NOT NULL DEFAULT 0;"
    "UPDATE counter SET digest_key = random();";

static const char migrate_1_to_2[] =
    "CREATE TABLE messages_v2 (slot INTEGER PRIMARY KEY, digest INTEGER, body TEXT NOT NULL);"
    "INSERT INTO messages_v2 (slot, digest, body)"
    " SELECT rid * 4294967296 + pos, agentsession_digest(body), body FROM messages;"
    "DROP TABLE messages;"
    "ALTER TABLE messages_v2 RENAME TO messages;";

/* Version 2 did not keep each session's size: it is counted from its rows. */
static const char migrate_2_to_3[] =
    "ALTER TABLE sessions ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;"
    "UPDATE sessions SET bytes = length(CAST(state AS BLOB)) + coalesce((SELECT"
    " sum(length(CAST(body AS BLOB)) + 1) FROM messages WHERE slot >= sessions.rid * 4294967296"
    " AND slot < (sessions.rid + 1) * 4294967296), 0);";

/* Version 3 kept no op ids: a file starts with none. */
static const char migrate_3_to_4[] = "ALTER TABLE sessions ADD COLUMN ops BLOB;";

/* The search index (see the top of this file). The keys of a message are
** computed from its stored text by agentsession_keys(body), so that a
** message's keys leave the index exactly as they came in. */
static const char schema_search[] =
    "CREATE VIRTUAL TABLE search USING fts5(words, content='', columnsize=0, detail=none,"
    " tokenize='ascii');"
    "CREATE TABLE search_recent (slot INTEGER PRIMARY KEY, words TEXT NOT NULL);";

/* Version 3 (and 4) had no search index: it is built from every message and label. */
static const char migrate_add_search_sql[] =
    "INSERT INTO search (rowid, words) SELECT slot, agentsession_keys(body) FROM messages;"
    "INSERT INTO search (rowid, words) SELECT rid * 4294967296 + 4294967295,"
    " agentsession_label_keys(coalesce(name, '') || char(10) || coalesce((SELECT"
    " group_concat(tag, char(10)) FROM tags WHERE tags.rid = sessions.rid), '')) FROM sessions;";

/* Rows search_recent holds before a write moves them into search. */
#define RECENT_MAX 64

enum {
    X_ADD, X_RECENT_COUNT, X_MOVE, X_CLEAR, X_FORGET, X_DELETE, X_FORGET_RANGE, X_DELETE_RANGE,
    X_COUNT
};

static const char *const index_sql[X_COUNT] = {
    "INSERT OR REPLACE INTO search_recent (slot, words) VALUES (?1, ?2)",
    "SELECT count(*) FROM search_recent",
    "INSERT INTO search (rowid, words) SELECT slot, words FROM search_recent",
    "DELETE FROM search_recent",
    "DELETE FROM search_recent WHERE slot = ?1",
    "INSERT INTO search (search, rowid, words) VALUES ('delete', ?1, ?2)",
    "DELETE FROM search_recent WHERE slot >= ?1 AND slot < ?2",
    "INSERT INTO search (search, rowid, words) SELECT 'delete', slot, agentsession_keys(body)"
    " FROM messages m WHERE slot >= ?1 AND slot < ?2"
    " AND NOT EXISTS (SELECT 1 FROM search_recent r WHERE r.slot = m.slot)",
};

/* list() statements kept prepared: by filter tag (or none), agent, parent,
** and updated_at bound (prune's). */
#define LIST_SHAPES 16

typedef struct sqlite_store {
    as_store base;
    sqlite3 *db;
    char *path;
    int busy_timeout_ms;
    as_digest_key key;
    sqlite3_stmt *stmt[S_COUNT];
    sqlite3_stmt *list_stmt[LIST_SHAPES];
    sqlite3_stmt *index_stmt[X_COUNT];
    sqlite3_stmt *search_stmt[LIST_SHAPES / 2];
} sqlite_store;

/* ---------------------------------------------------------------- errors */

static as_status sq_fail(sqlite_store *ss, int rc, as_error *err) {
    const char *why = sqlite3_extended_errcode(ss->db) == rc ? sqlite3_errmsg(ss->db)
                                                               : sqlite3_errstr(rc);
    switch (rc & 0xff) {
    case SQLITE_NOMEM: /* also what SQLite answers for some damaged schemas */
        return as_error_set(err, AS_ENOMEM, "%s: out of memory (%s)", ss->path, why);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return as_error_set(err, AS_EUNAVAILABLE,
                            "%s: locked by another connection for more than %d ms "
                            "(busy_timeout_ms): %s", ss->path, ss->busy_timeout_ms, why);
    case SQLITE_NOTADB:
        return as_error_set(err, AS_ESTORAGE, "%s: not a SQLite database (%s)", ss->path, why);
    default:
        return as_error_set(err, AS_ESTORAGE, "%s: %s", ss->path, why);
    }
}

static as_status sq_damaged(sqlite_store *ss, const char *what, as_error *err) {
    return as_error_set(err, AS_ESTORAGE, "%s: damaged store: %s", ss->path, what);
}

/* ---------------------------------------------------------------- statements */

/* The statement kept in *slot, prepared from sql the first time it is asked for. */
static as_status prepare_kept(sqlite_store *ss, sqlite3_stmt **slot, const char *sql,
                              sqlite3_stmt **out, as_error *err) {
    *out = NULL;
    if (*slot == NULL) {
        int rc = sqlite3_prepare_v3(ss->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) return sq_fail(ss, rc, err);
    }
    *out = *slot;
    return AS_OK;
}

static as_status stmt_prepare(sqlite_store *ss, int which, sqlite3_stmt **out, as_error *err) {
    return prepare_kept(ss, &ss->stmt[which], sql_text[which], out, err);
}

/* Makes a statement ready for its next use (and drops pointers to bound text). */
static void stmt_reset(sqlite3_stmt *s) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Runs a statement that returns no rows. */
static as_status stmt_run(sqlite_store *ss, sqlite3_stmt *s, as_error *err) {
    int rc = sqlite3_step(s);
    stmt_reset(s);
    return rc == SQLITE_DONE ? AS_OK : sq_fail(ss, rc, err);
}

static as_status sq_run(sqlite_store *ss, int which, as_error *err) {
    sqlite3_stmt *s;
    as_status st = stmt_prepare(ss, which, &s, err);
    return st == AS_OK ? stmt_run(ss, s, err) : st;
}

static as_status sq_exec(sqlite_store *ss, const char *sql, as_error *err) {
    int rc = sqlite3_exec(ss->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? AS_OK : sq_fail(ss, rc, err);
}

/* The single integer a query returns. */
static as_status sq_query_int(sqlite_store *ss, const char *sql, int64_t *out, as_error *err) {
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(ss->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) return sq_fail(ss, rc, err);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? AS_OK : sq_fail(ss, rc, err);
}

static int bind_opt_text(sqlite3_stmt *s, int i, const char *text) {
    return text ? sqlite3_bind_text(s, i, text, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* ---------------------------------------------------------------- the search index */

static as_status index_prepare(sqlite_store *ss, int which, sqlite3_stmt **out, as_error *err) {
    return prepare_kept(ss, &ss->index_stmt[which], index_sql[which], out, err);
}

/* The label's slot in the index: the last of the session's slots. */
static int64_t label_slot(int64_t rid) {
    return rid * SLOT_SPAN + SLOT_SPAN - 1;
}

static as_status index_run(sqlite_store *ss, int which, int64_t a, int64_t b, as_error *err) {
    sqlite3_stmt *s;
    as_status st = index_prepare(ss, which, &s, err);
    if (st != AS_OK) return st;
    sqlite3_bind_int64(s, 1, a);
    sqlite3_bind_int64(s, 2, b);
    return stmt_run(ss, s, err);
}

/* Adds the keys of `text` under `slot` (to search_recent), or removes them
** (from search_recent when they are still there, else from search). */
static as_status index_text(sqlite_store *ss, int add, int64_t slot, const char *text, size_t len,
                            as_error *err) {
    as_buf keys = AS_BUF_INIT;
    sqlite3_stmt *s;
    as_status st;
    if (as_search_keys(text, len, ' ', &keys) != 0 || keys.len > INT32_MAX) {
        as_buf_free(&keys);
        return as_error_nomem(err);
    }
    if (!add && (st = index_run(ss, X_FORGET, slot, 0, err)) == AS_OK && sqlite3_changes(ss->db) > 0)
        goto done;
    if (!add && st != AS_OK) goto done;
    if ((st = index_prepare(ss, add ? X_ADD : X_DELETE, &s, err)) == AS_OK) {
        sqlite3_bind_int64(s, 1, slot);
        sqlite3_bind_text(s, 2, keys.data ? keys.data : "", (int)keys.len, SQLITE_STATIC);
        st = stmt_run(ss, s, err);
    }
done:
    as_buf_free(&keys);
    return st;
}

static as_status index_message(sqlite_store *ss, int64_t slot, const as_blob *b, as_error *err) {
    as_buf text = AS_BUF_INIT;
    as_status st;
    if (as_search_text(b->text, b->len, &text) != 0) st = as_error_nomem(err);
    else st = index_text(ss, 1, slot, text.data ? text.data : "", text.len, err);
    as_buf_free(&text);
    return st;
}

/* Adds (add = 1) or removes a session's label. */
static as_status index_label(sqlite_store *ss, int add, int64_t rid, const as_meta *m,
                             as_error *err) {
    as_buf text = AS_BUF_INIT;
    as_status st;
    if (as_search_label(m, &text) != 0) st = as_error_nomem(err);
    else st = index_text(ss, add, label_slot(rid), text.data ? text.data : "", text.len, err);
    as_buf_free(&text);
    return st;
}

static int same_label(const as_meta *a, const as_meta *b) {
    size_t i;
    if ((a->name == NULL) != (b->name == NULL) || (a->name && strcmp(a->name, b->name) != 0)
        || a->ntags != b->ntags)
        return 0;
    for (i = 0; i < a->ntags; i++)
        if (strcmp(a->tags[i], b->tags[i]) != 0) return 0;
    return 1;
}

/* Removes the keys of the stored messages in slots [from, to). */
static as_status unindex_messages(sqlite_store *ss, int64_t from, int64_t to, as_error *err) {
    as_status st = index_run(ss, X_DELETE_RANGE, from, to, err);
    return st == AS_OK ? index_run(ss, X_FORGET_RANGE, from, to, err) : st;
}

/* Moves search_recent into search once it holds RECENT_MAX rows: a write
** adds its keys to a small table, and search takes them in batches, so
** that an append does not pay for a new segment of the full-text index. */
static as_status index_settle(sqlite_store *ss, as_error *err) {
    sqlite3_stmt *s;
    int64_t n = 0;
    as_status st = index_prepare(ss, X_RECENT_COUNT, &s, err);
    int rc;
    if (st != AS_OK) return st;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    else st = sq_fail(ss, rc, err);
    stmt_reset(s);
    if (st != AS_OK || n < RECENT_MAX) return st;
    st = index_run(ss, X_MOVE, 0, 0, err);
    return st == AS_OK ? index_run(ss, X_CLEAR, 0, 0, err) : st;
}

/* agentsession_holds(words, keys): whether every key (space-separated) is
** one of the words (space-separated): a search of search_recent. */
static void sql_holds(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const char *words = (const char *)sqlite3_value_text(argv[0]);
    const char *keys = (const char *)sqlite3_value_text(argv[1]);
    size_t nw = (size_t)sqlite3_value_bytes(argv[0]), i = 0;
    int all = words != NULL && keys != NULL;
    (void)argc;
    while (all) {
        size_t k, at = 0;
        int found = 0;
        while (keys[i] == ' ') i++;
        if (keys[i] == '\0') break;
        k = strcspn(keys + i, " ");
        while (!found && at < nw) {
            size_t w = strcspn(words + at, " ");
            found = w == k && memcmp(words + at, keys + i, k) == 0;
            at += w + 1;
        }
        all = found;
        i += k;
    }
    sqlite3_result_int(ctx, all);
}

/* agentsession_keys(json) and agentsession_label_keys(text): the search keys
** of a message's JSON text and of a label's text, for the index. */
static void sql_keys(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const char *in = (const char *)sqlite3_value_text(argv[0]);
    size_t len = (size_t)sqlite3_value_bytes(argv[0]);
    int json = sqlite3_user_data(ctx) != NULL;
    as_buf text = AS_BUF_INIT, keys = AS_BUF_INIT;
    (void)argc;
    if (in == NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    if ((json && as_search_text(in, len, &text) != 0)
        || as_search_keys(json ? (text.data ? text.data : "") : in, json ? text.len : len, ' ',
                          &keys) != 0
        || keys.len > INT32_MAX)
        sqlite3_result_error_nomem(ctx);
    else sqlite3_result_text(ctx, keys.data ? keys.data : "", (int)keys.len, SQLITE_TRANSIENT);
    as_buf_free(&text);
    as_buf_free(&keys);
}

/* ---------------------------------------------------------------- reading rows */

static as_status col_text(sqlite_store *ss, sqlite3_stmt *s, int i, int nullable, char **out,
                          as_error *err) {
    const char *text;
    int n;
    *out = NULL;
    if (sqlite3_column_type(s, i) == SQLITE_NULL && nullable) return AS_OK;
    if (sqlite3_column_type(s, i) != SQLITE_TEXT) {
        char what[96];
        snprintf(what, sizeof what, "column %s is not text", sqlite3_column_name(s, i));
        return sq_damaged(ss, what, err);
    }
    text = (const char *)sqlite3_column_text(s, i);
    n = sqlite3_column_bytes(s, i);
    if (text == NULL) return as_error_nomem(err);
    if (memchr(text, '\0', (size_t)n) != NULL) return sq_damaged(ss, "a text holds a NUL byte", err);
    if ((*out = as_strndup(text, (size_t)n)) == NULL) return as_error_nomem(err);
    return AS_OK;
}

static as_status col_int(sqlite_store *ss, sqlite3_stmt *s, int i, int64_t lo, int64_t hi,
                         int64_t *out, as_error *err) {
    if (sqlite3_column_type(s, i) != SQLITE_INTEGER
        || (*out = sqlite3_column_int64(s, i)) < lo || *out > hi) {
        char what[96];
        snprintf(what, sizeof what, "column %s is not an integer in range",
                 sqlite3_column_name(s, i));
        return sq_damaged(ss, what, err);
    }
    return AS_OK;
}

/* Reads the META_COLUMNS of the current row. */
static as_status read_meta(sqlite_store *ss, sqlite3_stmt *s, as_meta *m, int64_t *rid,
                           int64_t *nmsgs, int64_t *bytes, as_error *err) {
    int64_t turns, tokens;
    as_status st;
    memset(m, 0, sizeof *m);
    if ((st = col_int(ss, s, 0, 1, RID_MAX, rid, err)) != AS_OK
        || (st = col_text(ss, s, 1, 0, &m->id, err)) != AS_OK
        || (st = col_text(ss, s, 2, 1, &m->name, err)) != AS_OK
        || (st = col_text(ss, s, 3, 0, &m->agent_name, err)) != AS_OK
        || (st = col_text(ss, s, 4, 1, &m->parent_id, err)) != AS_OK
        || (st = col_int(ss, s, 5, INT64_MIN, INT64_MAX, &m->created_at, err)) != AS_OK
        || (st = col_int(ss, s, 6, INT64_MIN, INT64_MAX, &m->updated_at, err)) != AS_OK
        || (st = col_int(ss, s, 7, 0, AS_TURN_COUNT_MAX, &turns, err)) != AS_OK
        || (st = col_int(ss, s, 8, 0, INT64_MAX, &tokens, err)) != AS_OK
        || (st = col_int(ss, s, 9, 1, INT64_MAX - 1, &m->version, err)) != AS_OK
        || (st = col_int(ss, s, 10, 0, SLOT_SPAN - 1, nmsgs, err)) != AS_OK
        || (st = col_int(ss, s, 11, 0, INT64_MAX, bytes, err)) != AS_OK) {
        as_meta_clear(m);
        return st;
    }
    m->turn_count = (uint32_t)turns;
    m->total_tokens = (uint64_t)tokens;
    return AS_OK;
}

static as_status read_tags(sqlite_store *ss, int64_t rid, as_meta *m, as_error *err) {
    sqlite3_stmt *s;
    as_status st = stmt_prepare(ss, S_TAGS, &s, err);
    int rc;
    if (st != AS_OK) return st;
    sqlite3_bind_int64(s, 1, rid);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char **grown, *tag;
        if ((st = col_text(ss, s, 0, 0, &tag, err)) != AS_OK) break;
        if (m->ntags >= SIZE_MAX / sizeof(char *) - 1
            || (grown = as_realloc(m->tags, (m->ntags + 1) * sizeof(char *))) == NULL) {
            as_free(tag);
            st = as_error_nomem(err);
            break;
        }
        m->tags = grown;
        m->tags[m->ntags++] = tag;
    }
    if (st == AS_OK && rc != SQLITE_DONE) st = sq_fail(ss, rc, err);
    stmt_reset(s);
    return st;
}

/* What the file holds must pass the checks a save makes. */
static as_status check_loaded(sqlite_store *ss, as_meta *m, as_error *err) {
    size_t ntags = m->ntags;
    as_status st = as_meta_check(m, err);
    if (st == AS_EINVALID || (st == AS_OK && m->ntags != ntags)) {
        char what[AS_ERROR_MESSAGE_MAX];
        if (st == AS_OK) snprintf(what, sizeof what, "session \"%.64s\" repeats a tag", m->id);
        else snprintf(what, sizeof what, "%.200s: %.200s", err->path, err->message);
        return sq_damaged(ss, what, err);
    }
    return st;
}

/* A stored JSON text as a blob. Whether it is JSON is checked by whoever uses
** it (the manager before a write, the binding as it decodes). */
static as_status read_text(sqlite_store *ss, sqlite3_stmt *s, int col, const char *id,
                           const char *what, as_blob **out, as_error *err) {
    const char *text;
    if (sqlite3_column_type(s, col) != SQLITE_TEXT)
        return as_error_set(err, AS_ESTORAGE, "%s: damaged store: %s of session \"%.64s\" is "
                            "not text", ss->path, what, id);
    text = (const char *)sqlite3_column_text(s, col);
    if (text == NULL || (*out = as_blob_new(text, (size_t)sqlite3_column_bytes(s, col))) == NULL)
        return as_error_nomem(err);
    return AS_OK;
}

/* Reads the n messages from position `from` on. */
static as_status read_messages(sqlite_store *ss, int64_t rid, const char *id, int64_t from,
                               int64_t n, as_session *out, as_error *err) {
    sqlite3_stmt *s;
    int64_t base = rid * SLOT_SPAN;
    size_t cap = 0;
    as_status st;
    int rc;
    if (n == 0) return AS_OK;
    if ((st = stmt_prepare(ss, S_MSGS, &s, err)) != AS_OK) return st;
    sqlite3_bind_int64(s, 1, base + from);
    sqlite3_bind_int64(s, 2, base + from + n);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t pos = sqlite3_column_int64(s, 0) - base;
        char what[48];
        if (pos != from + (int64_t)out->nmsgs) break; /* a row is missing */
        if (out->nmsgs == cap) {
            /* grown as rows come, not sized from a count that may be damaged */
            as_blob **grown;
            cap = cap ? cap * 2 : 16;
            if (cap > SIZE_MAX / sizeof(as_blob *)
                || (grown = as_realloc(out->msgs, cap * sizeof(as_blob *))) == NULL) {
                st = as_error_nomem(err);
                break;
            }
            out->msgs = grown;
        }
        snprintf(what, sizeof what, "messages[%lld]", (long long)pos + 1);
        if ((st = read_text(ss, s, 1, id, what, &out->msgs[out->nmsgs], err)) != AS_OK)
            break;
        out->nmsgs++;
    }
    if (st == AS_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) st = sq_fail(ss, rc, err);
    if (st == AS_OK && (int64_t)out->nmsgs != n)
        st = as_error_set(err, AS_ESTORAGE, "%s: damaged store: message %lld of session \"%.64s\" "
                          "is missing", ss->path, (long long)(from + (int64_t)out->nmsgs + 1), id);
    stmt_reset(s);
    return st;
}

static as_status read_state(sqlite_store *ss, int64_t rid, const char *id, as_session *out,
                            as_error *err) {
    sqlite3_stmt *s;
    as_status st = stmt_prepare(ss, S_STATE, &s, err);
    int rc;
    if (st != AS_OK) return st;
    sqlite3_bind_int64(s, 1, rid);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) st = sq_fail(ss, rc, err);
    else st = read_text(ss, s, 0, id, "state", &out->state, err);
    stmt_reset(s);
    return st;
}

/* ---------------------------------------------------------------- store operations */

static as_status sq_begin(as_store *st, int write, as_error *err) {
    return sq_run((sqlite_store *)st, write ? S_BEGIN_WRITE : S_BEGIN_READ, err);
}

static void sq_rollback(as_store *st) {
    sqlite_store *ss = (sqlite_store *)st;
    as_error ignored;
    /* SQLite may have rolled back already (after a full disk, for instance). */
    if (!sqlite3_get_autocommit(ss->db)) sq_run(ss, S_ROLLBACK, &ignored);
}

static as_status sq_commit(as_store *st, as_error *err) {
    as_status status = sq_run((sqlite_store *)st, S_COMMIT, err);
    if (status != AS_OK) sq_rollback(st);
    return status;
}

static as_status sq_load(as_store *st, const char *id, const as_span *span, as_session *out,
                         as_stored *info, as_error *err) {
    sqlite_store *ss = (sqlite_store *)st;
    sqlite3_stmt *s;
    int64_t rid, nmsgs, bytes;
    size_t first = 0, n = 0;
    as_status status;
    int rc;
    memset(out, 0, sizeof *out);
    if ((status = stmt_prepare(ss, S_META, &s, err)) != AS_OK) return status;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) status = read_meta(ss, s, &out->meta, &rid, &nmsgs, &bytes, err);
    else status = rc == SQLITE_DONE ? AS_ENOTFOUND : sq_fail(ss, rc, err);
    stmt_reset(s);
    /* a damaged index of ids can lead to another session's row */
    if (status == AS_OK && strcmp(out->meta.id, id) != 0)
        status = sq_damaged(ss, "the index of session ids leads to another session", err);
    if (status == AS_OK) status = read_tags(ss, rid, &out->meta, err);
    if (status == AS_OK) status = check_loaded(ss, &out->meta, err);
    if (status == AS_OK && span != NULL) {
        as_span_clip(span, (size_t)nmsgs, &first, &n);
        status = read_messages(ss, rid, id, (int64_t)first, (int64_t)n, out, err);
        if (status == AS_OK) status = read_state(ss, rid, id, out, err);
    }
    if (status != AS_OK) {
        as_session_clear(out);
        return status;
    }
    info->bytes = (size_t)bytes;
    info->total = (size_t)nmsgs;
    info->first = first;
    info->note = rid; /* for the write: the row, found once */
    return AS_OK;
}

static as_status next_seq(sqlite_store *ss, int64_t *seq, as_error *err) {
    sqlite3_stmt *s;
    as_status st;
    int rc;
    if ((st = sq_run(ss, S_NEXT_SEQ, err)) != AS_OK || (st = stmt_prepare(ss, S_SEQ, &s, err)) != AS_OK)
        return st;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) st = col_int(ss, s, 0, 1, INT64_MAX, seq, err);
    else st = rc == SQLITE_DONE ? sq_damaged(ss, "the counter row is missing", err)
                                : sq_fail(ss, rc, err);
    stmt_reset(s);
    return st;
}

/* Binds parameters 2..11 of S_INSERT_SESSION and S_UPDATE_SESSION. */
static void bind_meta(sqlite3_stmt *s, const as_meta *m, int64_t seq, int64_t nmsgs) {
    bind_opt_text(s, 2, m->name);
    sqlite3_bind_text(s, 3, m->agent_name, -1, SQLITE_STATIC);
    bind_opt_text(s, 4, m->parent_id);
    sqlite3_bind_int64(s, 5, m->created_at);
    sqlite3_bind_int64(s, 6, m->updated_at);
    sqlite3_bind_int64(s, 7, seq);
    sqlite3_bind_int64(s, 8, (int64_t)m->turn_count);
    sqlite3_bind_int64(s, 9, (int64_t)m->total_tokens);
    sqlite3_bind_int64(s, 10, m->version);
    sqlite3_bind_int64(s, 11, nmsgs);
}

/* Replaces the session's tag rows (each carries the session's updated_at and seq). */
static as_status write_tags(sqlite_store *ss, int64_t rid, const as_meta *m, int64_t seq,
                            as_error *err) {
    sqlite3_stmt *s;
    as_status st;
    size_t i;
    if ((st = stmt_prepare(ss, S_DELETE_TAGS, &s, err)) != AS_OK) return st;
    sqlite3_bind_int64(s, 1, rid);
    if ((st = stmt_run(ss, s, err)) != AS_OK) return st;
    if (m->ntags == 0) return AS_OK;
    if ((st = stmt_prepare(ss, S_INSERT_TAG, &s, err)) != AS_OK) return st;
    for (i = 0; i < m->ntags; i++) {
        sqlite3_bind_int64(s, 1, rid);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, m->tags[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, m->updated_at);
        sqlite3_bind_int64(s, 5, seq);
        if ((st = stmt_run(ss, s, err)) != AS_OK) return st;
    }
    return AS_OK;
}

/* Binds a JSON text; one over SQLite's length limit is too_large. */
static as_status bind_body(sqlite_store *ss, sqlite3_stmt *s, int i, const as_blob *b,
                           as_error *err) {
    int limit = sqlite3_limit(ss->db, SQLITE_LIMIT_LENGTH, -1), rc;
    if (b->len > (size_t)limit) {
        stmt_reset(s);
        return as_error_set(err, AS_ETOOLARGE, "a value of %zu bytes is over SQLite's limit of "
                            "%d bytes", b->len, limit);
    }
    rc = sqlite3_bind_text(s, i, b->text, (int)b->len, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        stmt_reset(s);
        return sq_fail(ss, rc, err);
    }
    return AS_OK;
}

static as_status put_message(sqlite_store *ss, int which, int64_t slot, const as_blob *b,
                             uint64_t digest, as_error *err) {
    sqlite3_stmt *s;
    as_status st;
    /* the keys of the text replaced leave the index as it did come in */
    if (which == S_UPDATE_MSG && (st = unindex_messages(ss, slot, slot + 1, err)) != AS_OK) return st;
    if ((st = stmt_prepare(ss, which, &s, err)) != AS_OK) return st;
    sqlite3_bind_int64(s, 1, slot);
    sqlite3_bind_int64(s, 2, (int64_t)digest);
    if ((st = bind_body(ss, s, 3, b, err)) != AS_OK || (st = stmt_run(ss, s, err)) != AS_OK) return st;
    if (which == S_UPDATE_MSG && sqlite3_changes(ss->db) != 1)
        return sq_damaged(ss, "a message row is missing", err);
    return index_message(ss, slot, b, err);
}

/* Reads the digests of the stored messages at positions [from, from + n). A
** row whose digest is unknown (NULL) or missing gets known[i] = 0. */
static as_status read_digests(sqlite_store *ss, int64_t rid, int64_t from, size_t n,
                              uint64_t *digests, unsigned char *known, as_error *err) {
    sqlite3_stmt *s;
    int64_t base = rid * SLOT_SPAN;
    as_status st = stmt_prepare(ss, S_DIGESTS, &s, err);
    int rc;
    if (st != AS_OK) return st;
    memset(known, 0, n);
    sqlite3_bind_int64(s, 1, base + from);
    sqlite3_bind_int64(s, 2, base + from + (int64_t)n);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        size_t i = (size_t)(sqlite3_column_int64(s, 0) - base - from);
        if (i < n && sqlite3_column_type(s, 1) == SQLITE_INTEGER) {
            digests[i] = (uint64_t)sqlite3_column_int64(s, 1);
            known[i] = 1;
        }
    }
    if (rc != SQLITE_DONE) st = sq_fail(ss, rc, err);
    stmt_reset(s);
    return st;
}

/* Makes the messages from position `keep` on equal to blobs[0..n), given that
** `stored` rows exist: rows whose digest matches are left alone. */
static as_status put_messages(sqlite_store *ss, int64_t rid, int64_t keep, int64_t stored,
                              as_blob *const *blobs, size_t n, as_error *err) {
    int64_t base = rid * SLOT_SPAN;
    size_t overlap = 0, i;
    uint64_t *digests = NULL;
    unsigned char *known = NULL;
    as_status st = AS_OK;
    if (stored > keep) overlap = (uint64_t)(stored - keep) < n ? (size_t)(stored - keep) : n;
    if (overlap > 0) {
        if (overlap > SIZE_MAX / sizeof(uint64_t)
            || (digests = as_malloc(overlap * sizeof(uint64_t))) == NULL
            || (known = as_malloc(overlap)) == NULL) {
            as_free(digests);
            return as_error_nomem(err);
        }
        st = read_digests(ss, rid, keep, overlap, digests, known, err);
    }
    for (i = 0; i < n && st == AS_OK; i++) {
        uint64_t d = as_digest(&ss->key, blobs[i]->text, blobs[i]->len);
        if (i < overlap && known[i] && digests[i] == d) continue;
        st = put_message(ss, i < overlap ? S_UPDATE_MSG : S_INSERT_MSG, base + keep + (int64_t)i,
                         blobs[i], d, err);
    }
    as_free(digests);
    as_free(known);
    return st;
}

/* Deletes the message rows from position `from` on; `indexed`: their keys
** leave the index too. Rows past a session's count are debris of damage (an
** append clears the range past its end, a new session its own), whose keys,
** if any, only make a search read a candidate and drop it. */
static as_status delete_messages(sqlite_store *ss, int64_t rid, int64_t from, int indexed,
                                 as_error *err) {
    sqlite3_stmt *s;
    as_status st = indexed ? unindex_messages(ss, rid * SLOT_SPAN + from, label_slot(rid), err) : AS_OK;
    if (st == AS_OK) st = stmt_prepare(ss, S_DELETE_MSGS, &s, err);
    if (st != AS_OK) return st;
    sqlite3_bind_int64(s, 1, rid * SLOT_SPAN + from);
    sqlite3_bind_int64(s, 2, (rid + 1) * SLOT_SPAN);
    return stmt_run(ss, s, err);
}

/* ---------------------------------------------------------------- op ids */

/* The digest of an op id under the file's key, as sessions.ops keeps it. */
static void op_digest(const sqlite_store *ss, const char *op_id, unsigned char out[OP_DIGEST]) {
    uint64_t d = as_digest(&ss->key, op_id, strlen(op_id));
    int i;
    for (i = 0; i < OP_DIGEST; i++) out[i] = (unsigned char)(d >> (8 * i));
}

/* Looks the op id's digest up among those the session's row keeps (the row
** the load in this transaction found). Two different op ids have the same
** digest for at most one key in 2^56 (see as_digest.h). */
static as_status sq_op_applied(as_store *st, const as_meta *old, const as_stored *found,
                               const char *op_id, int *applied, as_error *err) {
    sqlite_store *ss = (sqlite_store *)st;
    unsigned char want[OP_DIGEST];
    const unsigned char *ops;
    sqlite3_stmt *s;
    as_status status = stmt_prepare(ss, S_OPS, &s, err);
    int rc, n, i;
    (void)old;
    if (status != AS_OK) return status;
    *applied = 0;
    op_digest(ss, op_id, want);
    sqlite3_bind_int64(s, 1, found->note);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) status = rc == SQLITE_DONE ? sq_damaged(ss, "a session row is missing", err)
                                                     : sq_fail(ss, rc, err);
    else if (sqlite3_column_type(s, 0) == SQLITE_NULL) status = AS_OK;
    else if (sqlite3_column_type(s, 0) != SQLITE_BLOB
             || (n = sqlite3_column_bytes(s, 0)) % OP_DIGEST != 0
             || n > AS_OP_IDS_KEPT * OP_DIGEST)
        status = sq_damaged(ss, "column ops is not a list of op id digests", err);
    else if ((ops = sqlite3_column_blob(s, 0)) == NULL && n > 0) status = as_error_nomem(err);
    else
        for (i = 0; i < n && !*applied; i += OP_DIGEST) *applied = memcmp(ops + i, want, OP_DIGEST) == 0;
    stmt_reset(s);
    return status;
}

static as_status sq_create(sqlite_store *ss, const as_write *w, int64_t seq, as_error *err) {
    const as_blob *state = w->state;
    sqlite3_stmt *s;
    int64_t rid;
    as_status st;
    int rc;
    if (state == NULL) return as_error_set(err, AS_EINVALID, "a new session needs a state");
    if ((st = stmt_prepare(ss, S_INSERT_SESSION, &s, err)) != AS_OK) return st;
    sqlite3_bind_text(s, 1, w->meta->id, -1, SQLITE_STATIC);
    bind_meta(s, w->meta, seq, (int64_t)w->nappend);
    sqlite3_bind_int64(s, 13, w->bytes > (size_t)INT64_MAX ? INT64_MAX : (int64_t)w->bytes);
    if ((st = bind_body(ss, s, 12, state, err)) != AS_OK) return st;
    rc = sqlite3_step(s);
    stmt_reset(s);
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        as_error_set(err, AS_ECONFLICT, "a session with id \"%s\" exists", w->meta->id);
        as_error_set_id(err, w->meta->id);
        return AS_ECONFLICT;
    }
    if (rc != SQLITE_DONE) return sq_fail(ss, rc, err);
    rid = sqlite3_last_insert_rowid(ss->db);
    if (rid < 1 || rid > RID_MAX)
        return as_error_set(err, AS_ESTORAGE, "%s: out of session row ids", ss->path);
    /* a reused row id may find debris of damage in its tag rows and slots */
    if ((st = write_tags(ss, rid, w->meta, seq, err)) != AS_OK
        || (st = delete_messages(ss, rid, 0, 0, err)) != AS_OK
        || (st = index_label(ss, 1, rid, w->meta, err)) != AS_OK)
        return st;
    return put_messages(ss, rid, 0, 0, w->append, w->nappend, err);
}

/* A write of a stored session uses the row id and message count its load
** noted (as_write.found); a new one is inserted, and an id taken already is
** a conflict. */
static as_status sq_write(as_store *st, const as_write *w, as_error *err) {
    sqlite_store *ss = (sqlite_store *)st;
    sqlite3_stmt *s;
    int64_t rid = 0, stored = 0, keep = 0, total, seq;
    unsigned char digest[OP_DIGEST];
    as_status status;
    if (!w->create) {
        rid = w->found->note;
        stored = (int64_t)w->found->total;
        keep = w->keep < (size_t)stored ? (int64_t)w->keep : stored;
    }
    if (w->nappend >= (size_t)(SLOT_SPAN - keep))
        return as_error_set(err, AS_ETOOLARGE, "a session holds at most %lld messages",
                            (long long)(SLOT_SPAN - 1));
    total = keep + (int64_t)w->nappend;
    if ((status = next_seq(ss, &seq, err)) != AS_OK) return status;
    if (w->create) {
        status = sq_create(ss, w, seq, err);
        return status == AS_OK ? index_settle(ss, err) : status;
    }
    /* one delete clears the rows past the new end and any debris of damage past
    ** the stored count, which would otherwise survive or collide with appends */
    if ((status = delete_messages(ss, rid, total < stored ? total : stored, total < stored, err)) != AS_OK
        || (status = put_messages(ss, rid, keep, stored, w->append, w->nappend, err)) != AS_OK)
        return status;
    if ((status = stmt_prepare(ss, S_UPDATE_SESSION, &s, err)) != AS_OK) return status;
    sqlite3_bind_int64(s, 1, rid);
    bind_meta(s, w->meta, seq, total);
    sqlite3_bind_int64(s, 13, w->bytes > (size_t)INT64_MAX ? INT64_MAX : (int64_t)w->bytes);
    if (w->op_id) {
        op_digest(ss, w->op_id, digest);
        sqlite3_bind_blob(s, 14, digest, OP_DIGEST, SQLITE_STATIC);
    }
    if ((status = stmt_run(ss, s, err)) != AS_OK) return status;
    if (w->state) {
        if ((status = stmt_prepare(ss, S_UPDATE_STATE, &s, err)) != AS_OK) return status;
        sqlite3_bind_int64(s, 1, rid);
        if ((status = bind_body(ss, s, 2, w->state, err)) != AS_OK
            || (status = stmt_run(ss, s, err)) != AS_OK)
            return status;
    }
    if (!same_label(w->old, w->meta)
        && ((status = index_label(ss, 0, rid, w->old, err)) != AS_OK
            || (status = index_label(ss, 1, rid, w->meta, err)) != AS_OK))
        return status;
    if ((status = write_tags(ss, rid, w->meta, seq, err)) != AS_OK) return status;
    return index_settle(ss, err);
}

static as_status sq_remove(as_store *st, const as_meta *old, const as_stored *found,
                           as_error *err) {
    sqlite_store *ss = (sqlite_store *)st;
    sqlite3_stmt *s;
    int64_t rid = found->note;
    as_status status;
    if ((status = delete_messages(ss, rid, 0, 1, err)) != AS_OK
        || (status = index_label(ss, 0, rid, old, err)) != AS_OK)
        return status;
    if ((status = stmt_prepare(ss, S_DELETE_TAGS, &s, err)) != AS_OK) return status;
    sqlite3_bind_int64(s, 1, rid);
    if ((status = stmt_run(ss, s, err)) != AS_OK) return status;
    if ((status = stmt_prepare(ss, S_DELETE_SESSION, &s, err)) != AS_OK) return status;
    sqlite3_bind_int64(s, 1, rid);
    return stmt_run(ss, s, err);
}

/* ---------------------------------------------------------------- list */

/* The SQL of a list() filter: with tags, the first one drives a walk of
** tags_recent, already in list order; without, sessions_recent (or the agent
** or parent index) is walked. Further tags are checked on each session's tags
** as they are read, so any number of them costs no SQL. */
static const char *list_sql(int tagged, int agent, int parent, int before, char *buf, size_t size) {
    snprintf(buf, size, "SELECT " META_COLUMNS " FROM %s WHERE 1%s%s%s ORDER BY %s LIMIT ?3 OFFSET ?4",
             tagged ? "tags t0 JOIN sessions s ON s.rid = t0.rid AND t0.tag = ?5" : "sessions s",
             agent ? " AND s.agent_name = ?1" : "", parent ? " AND s.parent_id = ?2" : "",
             !before ? "" : tagged ? " AND t0.updated_at < ?6" : " AND s.updated_at < ?6",
             tagged ? "t0.updated_at DESC, t0.seq DESC" : "s.updated_at DESC, s.seq DESC");
    return buf;
}

/* The filter's conditions the SQL leaves to C: tags after the first, and without_tag. */
static int has_tags(const as_meta *m, const as_filter *f) {
    size_t i;
    for (i = 1; i < f->ntags; i++)
        if (!as_meta_has_tag(m, f->tags[i])) return 0;
    return f->without_tag == NULL || !as_meta_has_tag(m, f->without_tag);
}

static as_status sq_list(as_store *st, const as_filter *f, as_meta_list *out, as_error *err) {
    sqlite_store *ss = (sqlite_store *)st;
    int tagged = f->ntags > 0, agent = f->agent_name != NULL, parent = f->parent_id != NULL;
    int before = f->has_before != 0;
    sqlite3_stmt **slot = &ss->list_stmt[before * 8 + tagged * 4 + agent * 2 + parent], *s;
    /* with further tags to check here, offset and limit apply here too */
    int here = f->ntags > 1 || f->without_tag != NULL, rc = SQLITE_DONE;
    size_t skip = here ? f->offset : 0;
    as_status status = AS_OK;
    if (*slot == NULL) {
        char sql[512];
        rc = sqlite3_prepare_v3(ss->db, list_sql(tagged, agent, parent, before, sql, sizeof sql), -1,
                                SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) return sq_fail(ss, rc, err);
    }
    s = *slot;
    if (agent) sqlite3_bind_text(s, 1, f->agent_name, -1, SQLITE_STATIC);
    if (parent) sqlite3_bind_text(s, 2, f->parent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, here || f->limit > (size_t)INT64_MAX ? -1 : (int64_t)f->limit);
    sqlite3_bind_int64(s, 4, here ? 0 : f->offset > (size_t)INT64_MAX ? INT64_MAX
                                                                       : (int64_t)f->offset);
    if (tagged) sqlite3_bind_text(s, 5, f->tags[0], -1, SQLITE_STATIC);
    if (before) sqlite3_bind_int64(s, 6, f->before);
    while (out->n < f->limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        as_meta m;
        int64_t rid, nmsgs, bytes;
        if ((status = read_meta(ss, s, &m, &rid, &nmsgs, &bytes, err)) != AS_OK) break;
        if ((status = read_tags(ss, rid, &m, err)) == AS_OK
            && (status = check_loaded(ss, &m, err)) == AS_OK && has_tags(&m, f)) {
            if (skip > 0) skip--;
            else status = as_meta_list_push(out, &m, err);
        }
        as_meta_clear(&m);
        if (status != AS_OK) break;
    }
    if (status == AS_OK && out->n < f->limit && rc != SQLITE_DONE) status = sq_fail(ss, rc, err);
    stmt_reset(s);
    if (status != AS_OK) as_meta_list_clear(out);
    return status;
}

/* ---------------------------------------------------------------- search */

/* The SQL of a search's candidates: the index's rows matching the keys, by
** session, joined with the sessions the filter keeps (as list_sql does). */
static const char *search_sql(int tagged, int agent, int parent, char *buf, size_t size) {
    snprintf(buf, size, "SELECT " META_COLUMNS ", h.slots FROM (SELECT slot >> 32 AS rid,"
             " group_concat(slot & 4294967295) AS slots FROM (SELECT rowid AS slot FROM search"
             " WHERE search MATCH ?6 UNION ALL SELECT slot FROM search_recent"
             " WHERE agentsession_holds(words, ?7)) GROUP BY 1) h"
             " JOIN sessions s ON s.rid = h.rid%s WHERE 1%s%s"
             " ORDER BY s.updated_at DESC, s.seq DESC LIMIT ?3 OFFSET ?4",
             tagged ? " JOIN tags t0 ON t0.rid = s.rid AND t0.tag = ?5" : "",
             agent ? " AND s.agent_name = ?1" : "", parent ? " AND s.parent_id = ?2" : "");
    return buf;
}

/* The MATCH expression of the keys (each a quoted string, all required), a
** NUL, and the keys joined by spaces for agentsession_holds. */
static int match_expr(const as_query *q, as_buf *b, size_t *plain) {
    size_t i;
    for (i = 0; i < q->nkeys; i++)
        if ((i && as_buf_putc(b, ' ')) || as_buf_putc(b, '"')
            || as_buf_put(b, q->keys[i], strlen(q->keys[i])) || as_buf_putc(b, '"'))
            return -1;
    if (as_buf_putc(b, '\0')) return -1;
    *plain = b->len;
    for (i = 0; i < q->nkeys; i++)
        if ((i && as_buf_putc(b, ' ')) || as_buf_put(b, q->keys[i], strlen(q->keys[i])))
            return -1;
    return as_buf_putc(b, '\0');
}

static int later_first(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x > y ? -1 : x < y;
}

/* The message positions of a comma-separated list of slots (the label's left
** out), highest first. */
static as_status candidate_positions(sqlite_store *ss, sqlite3_stmt *s, int col, as_candidate *c,
                                     as_error *err) {
    const char *p = (const char *)sqlite3_column_text(s, col);
    size_t n = 1, i;
    if (p == NULL) return sqlite3_column_type(s, col) == SQLITE_NULL ? AS_OK : as_error_nomem(err);
    for (i = 0; p[i]; i++) n += p[i] == ',';
    if ((c->pos = as_malloc(n * sizeof *c->pos)) == NULL) return as_error_nomem(err);
    while (*p) {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p) return sq_damaged(ss, "the search index gives a slot that is not a number", err);
        if (v < (unsigned long long)(SLOT_SPAN - 1)) c->pos[c->npos++] = (size_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    qsort(c->pos, c->npos, sizeof *c->pos, later_first);
    return AS_OK;
}

static as_status sq_search(as_store *st, const as_query *q, const as_filter *f,
                           as_candidate_list *out, as_error *err) {
    sqlite_store *ss = (sqlite_store *)st;
    int tagged = f->ntags > 0, agent = f->agent_name != NULL, parent = f->parent_id != NULL;
    sqlite3_stmt **slot = &ss->search_stmt[tagged * 4 + agent * 2 + parent], *s;
    int here = f->ntags > 1 || f->without_tag != NULL, rc = SQLITE_DONE;
    size_t skip = here ? f->offset : 0;
    as_buf expr = AS_BUF_INIT;
    size_t plain = 0;
    as_status status = AS_OK;
    if (*slot == NULL) {
        char sql[800];
        rc = sqlite3_prepare_v3(ss->db, search_sql(tagged, agent, parent, sql, sizeof sql), -1,
                                SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) return sq_fail(ss, rc, err);
    }
    if (match_expr(q, &expr, &plain) != 0) {
        as_buf_free(&expr);
        return as_error_nomem(err);
    }
    s = *slot;
    if (agent) sqlite3_bind_text(s, 1, f->agent_name, -1, SQLITE_STATIC);
    if (parent) sqlite3_bind_text(s, 2, f->parent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, here || f->limit > (size_t)INT64_MAX ? -1 : (int64_t)f->limit);
    sqlite3_bind_int64(s, 4, here ? 0 : f->offset > (size_t)INT64_MAX ? INT64_MAX
                                                                       : (int64_t)f->offset);
    if (tagged) sqlite3_bind_text(s, 5, f->tags[0], -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, expr.data, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, expr.data + plain, -1, SQLITE_STATIC);
    while (out->n < f->limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        as_candidate c;
        int64_t rid, nmsgs, bytes;
        memset(&c, 0, sizeof c);
        if ((status = read_meta(ss, s, &c.meta, &rid, &nmsgs, &bytes, err)) != AS_OK) break;
        if ((status = read_tags(ss, rid, &c.meta, err)) == AS_OK
            && (status = check_loaded(ss, &c.meta, err)) == AS_OK && has_tags(&c.meta, f)
            && !(skip > 0 && skip--)
            && (status = candidate_positions(ss, s, 12, &c, err)) == AS_OK)
            status = as_candidate_list_take(out, &c, err);
        as_candidate_clear(&c);
        if (status != AS_OK) break;
    }
    if (status == AS_OK && out->n < f->limit && rc != SQLITE_DONE) status = sq_fail(ss, rc, err);
    stmt_reset(s);
    as_buf_free(&expr);
    if (status != AS_OK) as_candidate_list_clear(out);
    return status;
}

static void sq_close(as_store *st) {
    sqlite_store *ss = (sqlite_store *)st;
    size_t i;
    for (i = 0; i < S_COUNT; i++) sqlite3_finalize(ss->stmt[i]);
    for (i = 0; i < LIST_SHAPES; i++) sqlite3_finalize(ss->list_stmt[i]);
    for (i = 0; i < X_COUNT; i++) sqlite3_finalize(ss->index_stmt[i]);
    for (i = 0; i < LIST_SHAPES / 2; i++) sqlite3_finalize(ss->search_stmt[i]);
    sqlite3_close_v2(ss->db);
    as_free(ss->path);
    as_free(ss);
}

static const as_store_ops sqlite_ops = {
    .kind = "sqlite",
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .load = sq_load,
    .write = sq_write,
    .remove = sq_remove,
    .list = sq_list,
    .close = sq_close,
    .canonical = 1, /* save compares digests of message texts */
    .op_applied = sq_op_applied,
    .search = sq_search,
    .prune_batch = 64,
};

/* ---------------------------------------------------------------- opening */

/* Creates the file with mode 0600 when it does not exist, so SQLite (which
** gives -wal and -shm the mode of the database file) never makes it readable
** by others; refuses what is not a regular file. */
static as_status prepare_file(const char *path, as_error *err) {
    struct stat sb;
    int fd;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return as_error_set(err, AS_ESTORAGE, "%s: is a directory", path);
        if (!S_ISREG(sb.st_mode))
            return as_error_set(err, AS_ESTORAGE, "%s: is not a regular file", path);
        return AS_OK;
    }
    if (errno != ENOENT)
        return as_error_set(err, AS_ESTORAGE, "%s: cannot open: %s", path, strerror(errno));
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return AS_OK; /* another process made it first */
        return as_error_set(err, AS_ESTORAGE, "%s: cannot create: %s", path, strerror(errno));
    }
    if (fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        return as_error_set(err, AS_ESTORAGE, "%s: cannot set mode 0600: %s", path, strerror(e));
    }
    close(fd);
    return AS_OK;
}

/* agentsession_digest(text): the digest under the store's key, for migrations. */
static void sql_digest(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    const sqlite_store *ss = sqlite3_user_data(ctx);
    const unsigned char *text = sqlite3_value_text(argv[0]);
    (void)argc;
    if (text == NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_int64(ctx, (sqlite3_int64)as_digest(&ss->key, text,
                                                       (size_t)sqlite3_value_bytes(argv[0])));
}

/* The digest key drawn when the file was made. */
static as_status load_key(sqlite_store *ss, as_error *err) {
    int64_t seed;
    as_status st = sq_query_int(ss, "SELECT digest_key FROM counter", &seed, err);
    if (st == AS_OK) as_digest_key_init(&ss->key, (uint64_t)seed);
    return st;
}

/* The step to version 5: the search index, made and filled from every
** message and label (inside the migration's transaction). Tables of that
** name a file of an older version holds are not an index of its texts. */
static as_status migrate_add_search(sqlite_store *ss, as_error *err) {
    as_status st = sq_exec(ss, "DROP TABLE IF EXISTS search; DROP TABLE IF EXISTS search_recent;", err);
    if (st == AS_OK) st = sq_exec(ss, schema_search, err);
    return st == AS_OK ? sq_exec(ss, migrate_add_search_sql, err) : st;
}

static as_status migrate(sqlite_store *ss, int64_t version, as_error *err) {
    int64_t bad;
    as_status st;
    if (version == 1) {
        st = sq_query_int(ss, "SELECT count(*) FROM messages WHERE rid < 1 OR rid > "
                           XSTR(RID_MAX_VALUE) " OR pos < 0 OR pos > 4294967295", &bad, err);
        if (st != AS_OK) return st;
        if (bad > 0) return sq_damaged(ss, "message positions out of range in a version 1 file", err);
        if ((st = sq_exec(ss, migrate_1_to_2_key, err)) != AS_OK || (st = load_key(ss, err)) != AS_OK
            || (st = sq_exec(ss, migrate_1_to_2, err)) != AS_OK)
            return st;
    }
    if (version <= 2 && (st = sq_exec(ss, migrate_2_to_3, err)) != AS_OK) return st;
    if (version <= 3 && (st = sq_exec(ss, migrate_3_to_4, err)) != AS_OK) return st;
    if (version <= 4 && (st = migrate_add_search(ss, err)) != AS_OK) return st;
    if ((st = sq_exec(ss, schema_indexes, err)) != AS_OK) return st;
    return sq_exec(ss, "PRAGMA user_version = " XSTR(SCHEMA_VERSION), err);
}

/* What the file is: new (empty), ours at some schema version, or not ours.
** Reads only, so a file that is refused is left as it was. */
static as_status inspect(sqlite_store *ss, int *fresh, int64_t *version, as_error *err) {
    int64_t app, objects;
    as_status st;
    if ((st = sq_query_int(ss, "PRAGMA application_id", &app, err)) != AS_OK
        || (st = sq_query_int(ss, "PRAGMA user_version", version, err)) != AS_OK
        || (st = sq_query_int(ss, "SELECT count(*) FROM sqlite_master", &objects, err)) != AS_OK)
        return st;
    *fresh = app == 0 && *version == 0 && objects == 0;
    if (*fresh) return AS_OK;
    if (app != APPLICATION_ID)
        return as_error_set(err, AS_ESTORAGE, "%s: a SQLite database of another application, "
                            "not an agentsession store", ss->path);
    if (*version > SCHEMA_VERSION)
        return as_error_set(err, AS_ESTORAGE, "%s: written by a newer agentsession (schema "
                            "version %lld; this one reads up to %d)", ss->path,
                            (long long)*version, SCHEMA_VERSION);
    if (*version < 1) return sq_damaged(ss, "no schema version", err);
    return AS_OK;
}

/* Ends a transaction of the open: commits when `st` is AS_OK, else (or when
** the commit fails, out of memory for one) rolls back, so that no transaction
** stays open on the connection. Returns `st`, or the commit's failure. */
static as_status end_open_step(sqlite_store *ss, as_status st, as_error *err) {
    if (st == AS_OK) {
        int rc = sqlite3_exec(ss->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) st = sq_fail(ss, rc, err);
    }
    if (st != AS_OK && !sqlite3_get_autocommit(ss->db)) {
        sqlite3_exec(ss->db, "ROLLBACK", NULL, NULL, NULL);
        /* a connection still inside a transaction is not handed on (it is closed) */
        if (!sqlite3_get_autocommit(ss->db) && st == AS_OK)
            st = as_error_set(err, AS_ESTORAGE, "%s: cannot end a transaction", ss->path);
    }
    return st;
}

/* Creates or migrates the schema in one write transaction, looking again
** inside it, since another process may have done it first. */
static as_status ensure_schema(sqlite_store *ss, as_error *err) {
    int64_t version;
    int fresh;
    as_status st;
    if ((st = sq_exec(ss, "BEGIN IMMEDIATE", err)) != AS_OK) return st;
    if ((st = inspect(ss, &fresh, &version, err)) == AS_OK) {
        if (fresh) {
            if ((st = sq_exec(ss, schema_tables, err)) == AS_OK
                && (st = sq_exec(ss, schema_indexes, err)) == AS_OK
                && (st = sq_exec(ss, schema_search, err)) == AS_OK)
                st = sq_exec(ss, "PRAGMA application_id = " XSTR(APPLICATION_ID) ";"
                              "PRAGMA user_version = " XSTR(SCHEMA_VERSION), err);
        } else if (version < SCHEMA_VERSION) st = migrate(ss, version, err);
    }
    return end_open_step(ss, st, err);
}

/* Switches a file to write-ahead logging (once per file: the mode is kept in
** it). Processes switching one new file at once can deadlock on its lock, and
** SQLite then answers busy without waiting, so this waits here, up to the
** busy timeout, as the busy handler would. */
static as_status use_wal(sqlite_store *ss, as_error *err) {
    int waited = 0, pause = 1, rc;
    for (;;) {
        sqlite3_stmt *s;
        as_status st = AS_OK;
        rc = sqlite3_prepare_v2(ss->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(s, 0);
            if (mode == NULL || sqlite3_stricmp(mode, "wal") != 0)
                st = as_error_set(err, AS_ESTORAGE, "%s: cannot use write-ahead logging "
                                  "(journal mode stays %s)", ss->path, mode ? mode : "unknown");
        }
        sqlite3_finalize(s);
        if (rc == SQLITE_ROW) return st;
        if ((rc & 0xff) != SQLITE_BUSY || waited >= ss->busy_timeout_ms) return sq_fail(ss, rc, err);
        sqlite3_sleep(pause);
        waited += pause;
        if (pause < 32) pause *= 2;
    }
}

static as_status configure(sqlite_store *ss, as_durability durability, int run_triggers,
                           as_error *err) {
    int64_t version;
    int fresh, rc;
    as_status st;
    sqlite3_extended_result_codes(ss->db, 1);
    sqlite3_busy_timeout(ss->db, ss->busy_timeout_ms);
    /* The file is data, never code: triggers or views someone put in it do not
    ** run (unless the caller asks for its triggers), SQL functions in its schema
    ** are not trusted, and the schema cannot be written around SQLite. */
#ifdef SQLITE_DBCONFIG_ENABLE_TRIGGER
    sqlite3_db_config(ss->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, run_triggers ? 1 : 0, (int *)NULL);
#else
    (void)run_triggers;
#endif
#ifdef SQLITE_DBCONFIG_ENABLE_VIEW
    sqlite3_db_config(ss->db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
    sqlite3_db_config(ss->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_DEFENSIVE
    sqlite3_db_config(ss->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
#endif
    rc = sqlite3_create_function(ss->db, "agentsession_digest", 1,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC, ss, sql_digest, NULL, NULL);
    if (rc != SQLITE_OK) return sq_fail(ss, rc, err);
    /* direct only: the file's schema cannot call them */
    rc = sqlite3_create_function(ss->db, "agentsession_keys", 1,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, ss,
                                 sql_keys, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(ss->db, "agentsession_label_keys", 1,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                     sql_keys, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(ss->db, "agentsession_holds", 2,
                                     SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, NULL,
                                     sql_holds, NULL, NULL);
    if (rc != SQLITE_OK) return sq_fail(ss, rc, err);
    /* refuse a file that is not ours before changing anything in it; one read
    ** transaction, so a schema another process is creating is seen whole or not */
    if ((st = sq_exec(ss, "BEGIN", err)) != AS_OK) return st;
    st = end_open_step(ss, inspect(ss, &fresh, &version, err), err);
    if (st != AS_OK) return st;
    if ((st = use_wal(ss, err)) != AS_OK) return st;
    st = sq_exec(ss, durability == AS_DURABILITY_FULL ? "PRAGMA synchronous = FULL"
                                                   : "PRAGMA synchronous = NORMAL", err);
    /* a deleted or rewound conversation is overwritten, not left in free pages */
    if (st == AS_OK) st = sq_exec(ss, "PRAGMA secure_delete = ON", err);
    if (st == AS_OK && (fresh || version < SCHEMA_VERSION)) st = ensure_schema(ss, err);
    return st == AS_OK ? load_key(ss, err) : st;
}

/* Opens the file at path as a file: SQLite would take a path starting with
** "file:" as a URI and ":memory:" as no file at all, so a relative path is
** handed over as "./path". */
static int open_db(sqlite_store *ss, const char *path) {
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    size_t len = strlen(path);
    char *local;
    int rc;
    if (path[0] == '/') return sqlite3_open_v2(path, &ss->db, flags, NULL);
    if ((local = as_malloc(len + 3)) == NULL) return SQLITE_NOMEM;
    memcpy(local, "./", 2);
    memcpy(local + 2, path, len + 1);
    rc = sqlite3_open_v2(local, &ss->db, flags, NULL);
    as_free(local);
    return rc;
}

as_status as_store_sqlite_open(const char *path, const as_sqlite_opts *opts, as_store **out,
                               as_error *err) {
    sqlite_store *ss;
    as_status st;
    int rc;
    if ((st = prepare_file(path, err)) != AS_OK) return st;
    if ((ss = as_calloc(1, sizeof *ss)) == NULL) return as_error_nomem(err);
    ss->base.ops = &sqlite_ops;
    ss->busy_timeout_ms = opts ? opts->busy_timeout_ms : AS_SQLITE_DEFAULT_BUSY_TIMEOUT_MS;
    if ((ss->path = as_strdup(path)) == NULL) {
        as_free(ss);
        return as_error_nomem(err);
    }
    ss->base.location = ss->path;
    rc = open_db(ss, path);
    if (rc != SQLITE_OK) {
        if (ss->db) st = sq_fail(ss, rc, err);
        else if (rc == SQLITE_NOMEM) st = as_error_nomem(err);
        else st = as_error_set(err, AS_ESTORAGE, "%s: %s", path, sqlite3_errstr(rc));
    } else st = configure(ss, opts ? opts->durability : AS_DURABILITY_NORMAL,
                          opts ? opts->run_triggers : 0, err);
    if (st != AS_OK) {
        sq_close(&ss->base);
        return st;
    }
    *out = &ss->base;
    return AS_OK;
}
