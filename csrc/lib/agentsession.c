/*
** The C library: agentsession.h over the core's manager.
**
** Each function checks its arguments, turns JSON text into core sessions
** (as_session_json.h), calls the manager and writes its result as JSON text.
** A write's result is written in the manager's write hook, before the store
** writes, so that running out of memory for it fails the call with the store
** unchanged; only a store's own append writes first (see append below).
*/
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "agentsession.h"
#include "as_lib.h"
#include "../core/as_alloc.h"
#include "../core/as_json.h"
#include "../core/as_manager.h"
#include "../core/as_session_json.h"
#include "../core/as_store_memory.h"
#include "../core/as_store_redis.h"
#include "../core/as_store_sqlite.h"

_Static_assert(sizeof(((agentsession_error *)0)->path) >= AS_ERROR_PATH_MAX, "error path");
_Static_assert(sizeof(((agentsession_error *)0)->id) >= AS_ID_MAX + 1, "error id");
_Static_assert(sizeof(((agentsession_error *)0)->message) >= AS_ERROR_PATH_MAX + AS_ERROR_MESSAGE_MAX + 2,
               "error message");
_Static_assert(AGENTSESSION_DEFAULT_MAX_SESSION_BYTES == AS_DEFAULT_MAX_SESSION_BYTES, "size limit");
_Static_assert(AGENTSESSION_TO_END == AS_ALL && AGENTSESSION_NO_LIMIT == SIZE_MAX, "sentinels");

struct agentsession_manager {
    as_manager *m; /* NULL once closed */
};

/* ---------------------------------------------------------------- errors */

static agentsession_status status_of(as_status st) {
    switch (st) {
    case AS_OK: return AGENTSESSION_OK;
    case AS_ENOTFOUND: return AGENTSESSION_ERR_NOT_FOUND;
    case AS_EINVALID: return AGENTSESSION_ERR_INVALID;
    case AS_ETOOLARGE: return AGENTSESSION_ERR_TOO_LARGE;
    case AS_ECONFLICT: return AGENTSESSION_ERR_CONFLICT;
    case AS_ESTORAGE: return AGENTSESSION_ERR_STORAGE;
    case AS_EUNAVAILABLE: return AGENTSESSION_ERR_UNAVAILABLE;
    case AS_ECLOSED: return AGENTSESSION_ERR_CLOSED;
    case AS_ENOMEM: return AGENTSESSION_ERR_NOMEM;
    case AS_ERETRY: return AGENTSESSION_ERR_UNAVAILABLE; /* never leaves the manager */
    }
    return AGENTSESSION_ERR_STORAGE;
}

agentsession_status as_lib_report(const as_error *e, agentsession_error *err) {
    agentsession_status st = status_of(e->status);
    if (err == NULL) return st;
    err->status = st;
    if (e->path[0]) snprintf(err->message, sizeof err->message, "%s: %s", e->path, e->message);
    else snprintf(err->message, sizeof err->message, "%s", e->message);
    memcpy(err->path, e->path, sizeof e->path);
    memcpy(err->id, e->id, sizeof e->id);
    return st;
}

agentsession_status as_lib_succeed(agentsession_error *err) {
    if (err) {
        err->status = AGENTSESSION_OK;
        err->message[0] = err->path[0] = err->id[0] = '\0';
    }
    return AGENTSESSION_OK;
}

/* An invalid argument: `path` names it. */
static agentsession_status invalid(agentsession_error *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static agentsession_status invalid(agentsession_error *err, const char *path, const char *fmt, ...) {
    as_error e;
    va_list ap;
    as_error_clear(&e);
    e.status = AS_EINVALID;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    as_error_prefix(&e, path);
    return as_lib_report(&e, err);
}

static agentsession_status nomem(agentsession_error *err) {
    as_error e;
    as_error_nomem(&e);
    return as_lib_report(&e, err);
}

const char *agentsession_kind(agentsession_status status) {
    switch (status) {
    case AGENTSESSION_OK: return "ok";
    case AGENTSESSION_ERR_NOT_FOUND: return "not_found";
    case AGENTSESSION_ERR_INVALID: return "invalid";
    case AGENTSESSION_ERR_TOO_LARGE: return "too_large";
    case AGENTSESSION_ERR_CONFLICT: return "conflict";
    case AGENTSESSION_ERR_STORAGE: return "storage";
    case AGENTSESSION_ERR_UNAVAILABLE: return "unavailable";
    case AGENTSESSION_ERR_CLOSED: return "closed";
    case AGENTSESSION_ERR_NOMEM: return "storage";
    }
    return "storage";
}

/* ---------------------------------------------------------------- arguments */

static agentsession_status check_open(const agentsession_manager *am, agentsession_error *err) {
    as_error e;
    if (am == NULL) return invalid(err, "m", "must be a manager (got NULL)");
    if (am->m != NULL) return AGENTSESSION_OK;
    as_error_set(&e, AS_ECLOSED, "the manager is closed");
    return as_lib_report(&e, err);
}

static agentsession_status check_text(const char *s, const char *path, agentsession_error *err) {
    return s ? AGENTSESSION_OK : invalid(err, path, "must be a string (got NULL)");
}

/* What every call on one session checks first: an open manager and an id. */
static agentsession_status check_call(const agentsession_manager *am, const char *id,
                                      agentsession_error *err) {
    agentsession_status st = check_open(am, err);
    return st != AGENTSESSION_OK ? st : check_text(id, "id", err);
}

static agentsession_status check_expect(int64_t v, const char *path, agentsession_error *err) {
    if (v >= AGENTSESSION_ANY_VERSION) return AGENTSESSION_OK;
    return invalid(err, path, "must be at least 0, or AGENTSESSION_ANY_VERSION (got %lld)", (long long)v);
}

static agentsession_status check_strings(const char *const *list, size_t n, const char *path,
                                         agentsession_error *err) {
    size_t i;
    if (n > 0 && list == NULL) return invalid(err, path, "is NULL, with a count of %zu", n);
    for (i = 0; i < n; i++)
        if (list[i] == NULL) {
            char item[64];
            snprintf(item, sizeof item, "%s[%zu]", path, i + 1);
            return invalid(err, item, "must be a string (got NULL)");
        }
    return AGENTSESSION_OK;
}

/* ---------------------------------------------------------------- results */

/* Text for the caller: out (NULL when not wanted) receives buf's bytes. */
typedef struct result {
    char **out;
    as_buf text;
} result;

static void result_init(result *r, char **out) {
    r->out = out;
    r->text.data = NULL;
    r->text.len = r->text.cap = 0;
    if (out) *out = NULL;
}

/* A NUL after the text, not counted in its length. */
static int terminate(as_buf *b) {
    if (as_buf_putc(b, '\0') != 0) return -1;
    b->len--;
    return 0;
}

/* Ends a call: on success hands the text over, else frees it and reports e. */
static agentsession_status result_end(result *r, as_status st, const as_error *e,
                                      agentsession_error *err) {
    if (st == AS_OK && r->out && terminate(&r->text) == 0) {
        *r->out = r->text.data;
        return as_lib_succeed(err);
    }
    as_buf_free(&r->text);
    if (st == AS_OK && r->out) return nomem(err);
    return st == AS_OK ? as_lib_succeed(err) : as_lib_report(e, err);
}

static int write_tags(as_buf *b, const as_meta *m) {
    size_t i;
    if (as_buf_putc(b, '[') != 0) return -1;
    for (i = 0; i < m->ntags; i++)
        if ((i && as_buf_putc(b, ',') != 0)
            || as_json_write_string(b, m->tags[i], strlen(m->tags[i]), NULL) != 0)
            return -1;
    return as_buf_putc(b, ']');
}

static int write_count(as_buf *b, const char *name, size_t n, int last) {
    if (as_buf_putc(b, '"') || as_buf_put(b, name, strlen(name)) || as_buf_puts(b, "\":")
        || as_json_write_integer(b, n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n))
        return -1;
    return as_buf_putc(b, last ? '}' : ',');
}

/* The document of a session; with a window, its "window" field too. */
static int write_session(as_buf *b, const as_session *s, const as_window *win) {
    if (as_session_write_json(b, s) != 0) return -1;
    if (win == NULL) return 0;
    b->len--; /* the closing brace */
    if (as_buf_puts(b, ",\"window\":{")) return -1;
    if (write_count(b, "first", win->first < SIZE_MAX ? win->first + 1 : win->first, 0)
        || write_count(b, "count", win->count, 0) || write_count(b, "total", win->total, 0)
        || as_buf_puts(b, "\"version\":") || as_json_write_integer(b, win->version))
        return -1;
    return as_buf_puts(b, "}}");
}

/* A write's result, built by the manager's write hook (see the top). */
enum { WRITE_META, WRITE_TAGS, WRITE_SESSION };

typedef struct write_result {
    as_buf *text;
    int what;
    const as_session *session; /* WRITE_SESSION: the session the operation fills */
    int built;
} write_result;

/* Written whole, NUL included, so that nothing is left to allocate after the write. */
static int write_result_text(write_result *r, const as_meta *meta) {
    int bad;
    r->text->len = 0;
    if (r->what == WRITE_META) bad = as_meta_write_json(r->text, meta);
    else if (r->what == WRITE_TAGS) bad = write_tags(r->text, meta);
    else bad = write_session(r->text, r->session, NULL); /* its metadata is `meta` */
    return bad ? -1 : terminate(r->text);
}

static as_status on_write(void *ctx, const as_write *w, as_error *err) {
    write_result *r = ctx;
    if (write_result_text(r, w->meta) != 0) return as_error_nomem(err);
    r->built = 1;
    return AS_OK;
}

/* Hooks the result's building into the manager's next write, when wanted. */
static void hook(as_manager *m, write_result *wr, result *r, int what, const as_session *s) {
    wr->text = &r->text;
    wr->what = what;
    wr->session = s;
    wr->built = 0;
    if (r->out) as_manager_set_write_hook(m, on_write, wr);
}

static void unhook(as_manager *m) {
    as_manager_set_write_hook(m, NULL, NULL);
}

/* A store outside the process may hand back damaged texts: they are checked
** before the host reads them, as the Lua binding checks them when it decodes. */
static as_status check_stored(const as_manager *m, const as_session *s, as_error *e) {
    const char *where = as_manager_location(m);
    as_buf scratch = AS_BUF_INIT;
    as_status st = AS_OK;
    size_t i;
    if (where == NULL) return AS_OK;
    for (i = 0; i <= s->nmsgs && st == AS_OK; i++) {
        const as_blob *b = i < s->nmsgs ? s->msgs[i] : s->state;
        char root[48];
        if (b == NULL) continue;
        if (i < s->nmsgs) snprintf(root, sizeof root, "messages[%zu]", i + 1);
        else snprintf(root, sizeof root, "state");
        st = as_json_validate(b->text, b->len, &scratch, root, e);
    }
    as_buf_free(&scratch);
    if (st == AS_EINVALID) {
        char path[AS_ERROR_PATH_MAX], why[AS_ERROR_MESSAGE_MAX / 2];
        memcpy(path, e->path, sizeof path);
        snprintf(why, sizeof why, "%.200s", e->message);
        as_error_set(e, AS_ESTORAGE, "stored value in %.200s is damaged (%s)", where, why);
        memcpy(e->path, path, sizeof path);
        as_error_set_id(e, s->meta.id);
        st = AS_ESTORAGE;
    }
    return st;
}

/* ---------------------------------------------------------------- managers */

/* Opens a manager on a store made by `open` once the handle exists, so that
** no failure leaves a store without its manager. */
typedef as_status (*store_open_fn)(const void *opts, as_store **out, as_error *err);

static agentsession_status start(store_open_fn open, const void *opts, size_t max_bytes,
                                 agentsession_manager **out, agentsession_error *err) {
    agentsession_manager *am;
    as_manager_opts mopts = { 0 };
    as_store *store;
    as_error e;
    as_error_clear(&e);
    if (out == NULL) return invalid(err, "out", "must be a pointer (got NULL)");
    *out = NULL;
    if (max_bytes == 0) return invalid(err, "opts.max_session_bytes", "must be at least 1");
    if ((am = as_malloc(sizeof *am)) == NULL) return nomem(err);
    mopts.max_session_bytes = max_bytes;
    if (open(opts, &store, &e) != AS_OK || as_manager_new(store, &mopts, &am->m, &e) != AS_OK) {
        as_free(am);
        return as_lib_report(&e, err);
    }
    *out = am;
    return as_lib_succeed(err);
}

static as_status open_memory(const void *opts, as_store **out, as_error *err) {
    (void)opts;
    return as_store_memory_new(out, err);
}

agentsession_status agentsession_open_memory(const agentsession_memory_options *opts,
                                             agentsession_manager **out, agentsession_error *err) {
    static const agentsession_memory_options defaults = AGENTSESSION_MEMORY_OPTIONS_INIT;
    if (opts == NULL) opts = &defaults;
    return start(open_memory, NULL, opts->max_session_bytes, out, err);
}

typedef struct sqlite_args {
    const char *path;
    as_sqlite_opts opts;
} sqlite_args;

static as_status open_sqlite(const void *args, as_store **out, as_error *err) {
    const sqlite_args *a = args;
    return as_store_sqlite_open(a->path, &a->opts, out, err);
}

agentsession_status agentsession_open_sqlite(const char *path, const agentsession_sqlite_options *opts,
                                             agentsession_manager **out, agentsession_error *err) {
    static const agentsession_sqlite_options defaults = AGENTSESSION_SQLITE_OPTIONS_INIT;
    sqlite_args a;
    agentsession_status st;
    if (out) *out = NULL;
    if (opts == NULL) opts = &defaults;
    if ((st = check_text(path, "path", err)) != AGENTSESSION_OK) return st;
    if (path[0] == '\0') return invalid(err, "path", "must not be empty");
    if (opts->busy_timeout_ms < 0)
        return invalid(err, "opts.busy_timeout_ms", "must not be negative (got %d)", opts->busy_timeout_ms);
    if (opts->durability != AGENTSESSION_DURABILITY_NORMAL
        && opts->durability != AGENTSESSION_DURABILITY_FULL)
        return invalid(err, "opts.durability", "must be AGENTSESSION_DURABILITY_NORMAL or _FULL (got %d)",
                       (int)opts->durability);
    a.path = path;
    a.opts.busy_timeout_ms = opts->busy_timeout_ms;
    a.opts.durability = opts->durability == AGENTSESSION_DURABILITY_FULL ? AS_DURABILITY_FULL
                                                                         : AS_DURABILITY_NORMAL;
    a.opts.run_triggers = opts->triggers ? 1 : 0;
    return start(open_sqlite, &a, opts->max_session_bytes, out, err);
}

static as_status open_redis(const void *opts, as_store **out, as_error *err) {
    return as_store_redis_open(opts, out, err);
}

/* An optional string option of min..max bytes. */
static agentsession_status check_option_text(const char *s, const char *path, size_t min, size_t max,
                                             agentsession_error *err) {
    size_t len;
    if (s == NULL) return AGENTSESSION_OK;
    len = strlen(s);
    if (len < min) return invalid(err, path, "must not be empty");
    if (len > max) return invalid(err, path, "must be at most %zu bytes", max);
    return AGENTSESSION_OK;
}

static agentsession_status check_option_int(int v, const char *path, int lo, int hi,
                                            agentsession_error *err) {
    if (v >= lo && v <= hi) return AGENTSESSION_OK;
    return invalid(err, path, "must be from %d to %d (got %d)", lo, hi, v);
}

/* The options of both Redis stores; `nodes` non-NULL for a cluster. */
static agentsession_status open_redis_with(const char *const *nodes, size_t n,
                                           const agentsession_redis_options *opts,
                                           agentsession_manager **out, agentsession_error *err) {
    static const agentsession_redis_options defaults = AGENTSESSION_REDIS_OPTIONS_INIT;
    as_redis_opts ropts;
    agentsession_status st;
    size_t i;
    if (out) *out = NULL;
    if (opts == NULL) opts = &defaults;
    if (nodes == NULL
        && ((st = check_option_text(opts->host, "opts.host", 1, 255, err)) != AGENTSESSION_OK
            || (st = check_option_int(opts->port, "opts.port", 1, 65535, err)) != AGENTSESSION_OK
            || (st = check_option_int(opts->db, "opts.db", 0, INT_MAX, err)) != AGENTSESSION_OK))
        return st;
    for (i = 0; nodes && i < n; i++)
        if (nodes[i] == NULL) return invalid(err, "nodes", "[%zu] must be a string (got NULL)", i);
    if ((st = check_option_text(opts->username, "opts.username", 1, 4096, err)) != AGENTSESSION_OK
        || (st = check_option_text(opts->password, "opts.password", 0, 4096, err)) != AGENTSESSION_OK
        || (st = check_option_text(opts->prefix, "opts.prefix", 0, AS_REDIS_PREFIX_MAX, err))
               != AGENTSESSION_OK
        || (st = check_option_int(opts->timeout_ms, "opts.timeout_ms", 1, INT_MAX, err)) != AGENTSESSION_OK)
        return st;
    if (opts->username && opts->password == NULL)
        return invalid(err, "opts.username", "needs a password");
    ropts.host = opts->host;
    ropts.port = opts->port;
    ropts.db = opts->db;
    ropts.username = opts->username;
    ropts.password = opts->password;
    ropts.prefix = opts->prefix;
    ropts.timeout_ms = opts->timeout_ms;
    ropts.cluster = nodes;
    ropts.ncluster = n;
    return start(open_redis, &ropts, opts->max_session_bytes, out, err);
}

agentsession_status agentsession_open_redis(const agentsession_redis_options *opts,
                                            agentsession_manager **out, agentsession_error *err) {
    return open_redis_with(NULL, 0, opts, out, err);
}

agentsession_status agentsession_open_redis_cluster(const char *const *nodes, size_t n,
                                                    const agentsession_redis_options *opts,
                                                    agentsession_manager **out,
                                                    agentsession_error *err) {
    if (out) *out = NULL;
    if (nodes == NULL || n == 0) return invalid(err, "nodes", "must name at least one node");
    return open_redis_with(nodes, n, opts, out, err);
}

void agentsession_close(agentsession_manager *am) {
    if (am == NULL) return;
    as_manager_free(am->m);
    am->m = NULL;
}

void agentsession_manager_free(agentsession_manager *am) {
    agentsession_close(am);
    as_free(am);
}

agentsession_status agentsession_stats(agentsession_manager *am, agentsession_store_stats *out,
                                       agentsession_error *err) {
    as_store_stats s;
    agentsession_status st;
    if ((st = check_open(am, err)) != AGENTSESSION_OK) return st;
    if (out == NULL) return invalid(err, "out", "must be a pointer (got NULL)");
    as_manager_stats(am->m, &s);
    out->kind = as_manager_kind(am->m);
    out->location = as_manager_location(am->m);
    out->round_trips = s.round_trips;
    out->connects = s.connects;
    out->retries = s.retries;
    out->redirections = s.redirections;
    out->refreshes = s.refreshes;
    return as_lib_succeed(err);
}

/* ---------------------------------------------------------------- sessions */

agentsession_status agentsession_save(agentsession_manager *am, const char *session_json,
                                      const agentsession_save_options *opts, char **metadata_json,
                                      agentsession_error *err) {
    int64_t expect = opts ? opts->expect_version : AGENTSESSION_ANY_VERSION;
    as_session s = { 0 };
    as_meta stored = { 0 };
    as_window win;
    int windowed;
    write_result wr;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, metadata_json);
    if ((st = check_open(am, err)) != AGENTSESSION_OK
        || (st = check_text(session_json, "session_json", err)) != AGENTSESSION_OK
        || (st = check_expect(expect, "opts.expect_version", err)) != AGENTSESSION_OK)
        return st;
    rc = as_session_from_json(session_json, strlen(session_json), AS_DOC_SESSION,
                              as_manager_canonical(am->m), &s, &win, &windowed, &e);
    if (rc == AS_OK) {
        hook(am->m, &wr, &r, WRITE_META, NULL);
        rc = as_manager_save(am->m, &s, windowed ? &win : NULL, expect, &stored, &e);
        unhook(am->m);
    }
    as_session_clear(&s);
    as_meta_clear(&stored);
    return result_end(&r, rc, &e, err);
}

/* resume, whole (span NULL) or a window. */
static agentsession_status resume(agentsession_manager *am, const char *id, const as_span *span,
                                  char **session_json, agentsession_error *err) {
    as_session s = { 0 };
    as_window win;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, session_json);
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK)
        return st;
    as_error_clear(&e);
    rc = as_manager_resume(am->m, id, span, &s, &win, &e);
    if (rc == AS_OK) rc = check_stored(am->m, &s, &e);
    if (rc == AS_OK && r.out && write_session(&r.text, &s, span ? &win : NULL) != 0) rc = as_error_nomem(&e);
    as_session_clear(&s);
    return result_end(&r, rc, &e, err);
}

agentsession_status agentsession_resume(agentsession_manager *am, const char *id, char **session_json,
                                        agentsession_error *err) {
    return resume(am, id, NULL, session_json, err);
}

agentsession_status agentsession_resume_last(agentsession_manager *am, const char *id, size_t last,
                                             char **session_json, agentsession_error *err) {
    as_span span;
    span.first = AS_SPAN_TAIL;
    span.count = last;
    return resume(am, id, &span, session_json, err);
}

agentsession_status agentsession_resume_from(agentsession_manager *am, const char *id, size_t from,
                                             size_t count, char **session_json,
                                             agentsession_error *err) {
    as_span span;
    if (session_json) *session_json = NULL;
    if (from < 1) return invalid(err, "from", "must be at least 1 (got 0)");
    span.first = from - 1;
    span.count = count;
    return resume(am, id, &span, session_json, err);
}

agentsession_status agentsession_append(agentsession_manager *am, const char *id,
                                        const char *messages_json,
                                        const agentsession_append_options *opts,
                                        char **metadata_json, agentsession_error *err) {
    static const agentsession_append_options defaults = AGENTSESSION_APPEND_OPTIONS_INIT;
    as_append_opts aopts;
    as_session msgs = { 0 };
    as_meta meta = { 0 };
    write_result wr;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    int canonical, applied = 1;
    result_init(&r, metadata_json);
    if (opts == NULL) opts = &defaults;
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK
        || (st = check_text(messages_json, "messages_json", err)) != AGENTSESSION_OK
        || (st = check_expect(opts->expect_version, "opts.expect_version", err)) != AGENTSESSION_OK)
        return st;
    canonical = as_manager_canonical(am->m);
    aopts.tokens = opts->tokens;
    aopts.expect_version = opts->expect_version;
    aopts.state = NULL;
    aopts.op_id = opts->op_id;
    aopts.applied = &applied;
    rc = opts->op_id ? as_check_op_id(opts->op_id, strlen(opts->op_id), "opts.op_id", &e) : AS_OK;
    if (rc == AS_OK)
        rc = as_messages_from_json(messages_json, strlen(messages_json), canonical, "messages", &msgs,
                                   &e);
    if (rc == AS_OK && opts->state_json)
        rc = as_blob_from_json(opts->state_json, strlen(opts->state_json), canonical, "state",
                               &aopts.state, &e);
    if (rc == AS_OK) {
        hook(am->m, &wr, &r, WRITE_META, NULL);
        rc = as_manager_append(am->m, id, msgs.msgs, msgs.nmsgs, &aopts, &meta, &e);
        unhook(am->m);
        /* a store's own append writes without the hook: the result comes after */
        if (rc == AS_OK && r.out && !wr.built && write_result_text(&wr, &meta) != 0)
            rc = applied ? as_error_nomem_applied(&e, id) : as_error_nomem(&e);
    }
    if (rc == AS_OK && opts->applied) *opts->applied = applied != 0;
    as_blob_unref(aopts.state);
    as_session_clear(&msgs);
    as_meta_clear(&meta);
    return result_end(&r, rc, &e, err);
}

agentsession_status agentsession_rewind(agentsession_manager *am, const char *id, uint64_t turn_index,
                                        char **session_json, agentsession_error *err) {
    as_session s = { 0 };
    write_result wr;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, session_json);
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK)
        return st;
    hook(am->m, &wr, &r, WRITE_SESSION, &s);
    rc = as_manager_rewind(am->m, id, turn_index, &s, &e);
    unhook(am->m);
    as_session_clear(&s);
    return result_end(&r, rc, &e, err);
}

agentsession_status agentsession_fork_at(agentsession_manager *am, const char *id, const char *new_name,
                                         size_t at, char **metadata_json, agentsession_error *err) {
    as_meta meta = { 0 };
    write_result wr;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, metadata_json);
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK)
        return st;
    hook(am->m, &wr, &r, WRITE_META, NULL);
    rc = as_manager_fork(am->m, id, new_name, at, &meta, &e);
    unhook(am->m);
    as_meta_clear(&meta);
    return result_end(&r, rc, &e, err);
}

agentsession_status agentsession_fork(agentsession_manager *am, const char *id, const char *new_name,
                                      char **metadata_json, agentsession_error *err) {
    return agentsession_fork_at(am, id, new_name, AS_KEEP_ALL, metadata_json, err);
}

static agentsession_status change_tags(agentsession_manager *am, const char *id, const char *const *tags,
                                       size_t ntags, int remove, char **tags_json,
                                       agentsession_error *err) {
    as_meta meta = { 0 };
    write_result wr;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, tags_json);
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK
        || (st = check_strings(tags, ntags, "tags", err)) != AGENTSESSION_OK)
        return st;
    hook(am->m, &wr, &r, WRITE_TAGS, NULL);
    rc = as_manager_tag(am->m, id, tags, ntags, remove, &meta, &e);
    unhook(am->m);
    as_meta_clear(&meta);
    return result_end(&r, rc, &e, err);
}

agentsession_status agentsession_tag(agentsession_manager *am, const char *id, const char *const *tags,
                                     size_t ntags, char **tags_json, agentsession_error *err) {
    return change_tags(am, id, tags, ntags, 0, tags_json, err);
}

agentsession_status agentsession_untag(agentsession_manager *am, const char *id, const char *const *tags,
                                       size_t ntags, char **tags_json, agentsession_error *err) {
    return change_tags(am, id, tags, ntags, 1, tags_json, err);
}

agentsession_status agentsession_rename(agentsession_manager *am, const char *id, const char *new_name,
                                        agentsession_error *err) {
    as_error e;
    agentsession_status st;
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK
        || (st = check_text(new_name, "new_name", err)) != AGENTSESSION_OK)
        return st;
    if (as_manager_rename(am->m, id, new_name, &e) != AS_OK) return as_lib_report(&e, err);
    return as_lib_succeed(err);
}

agentsession_status agentsession_delete(agentsession_manager *am, const char *id, agentsession_error *err) {
    as_error e;
    agentsession_status st;
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK)
        return st;
    if (as_manager_delete(am->m, id, &e) != AS_OK) return as_lib_report(&e, err);
    return as_lib_succeed(err);
}

/* ---------------------------------------------------------------- listing */

/* The core's filter of a list or search filter (NULL: f as it is). */
static agentsession_status to_filter(const agentsession_filter *filter, as_filter *f,
                                     agentsession_error *err) {
    agentsession_status st;
    if (filter == NULL) return AGENTSESSION_OK;
    if ((st = check_strings(filter->tags, filter->ntags, "filter.tags", err)) != AGENTSESSION_OK)
        return st;
    f->tags = filter->tags;
    f->ntags = filter->ntags;
    f->agent_name = filter->agent_name;
    f->parent_id = filter->parent_id;
    f->offset = filter->offset;
    f->limit = filter->limit;
    return AGENTSESSION_OK;
}

agentsession_status agentsession_list(agentsession_manager *am, const agentsession_filter *filter,
                                      char **metadata_array_json, agentsession_error *err) {
    as_filter f = AS_FILTER_ALL;
    as_meta_list list = { 0 };
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    size_t i;
    result_init(&r, metadata_array_json);
    if ((st = check_open(am, err)) != AGENTSESSION_OK) return st;
    if ((st = to_filter(filter, &f, err)) != AGENTSESSION_OK) return st;
    rc = as_manager_list(am->m, &f, &list, &e);
    if (rc == AS_OK && r.out) {
        int bad = as_buf_putc(&r.text, '[');
        for (i = 0; i < list.n && !bad; i++)
            bad = (i && as_buf_putc(&r.text, ',')) || as_meta_write_json(&r.text, &list.items[i]);
        if (bad || as_buf_putc(&r.text, ']')) rc = as_error_nomem(&e);
    }
    as_meta_list_clear(&list);
    return result_end(&r, rc, &e, err);
}

/* ---------------------------------------------------------------- search and retention */

agentsession_status agentsession_search(agentsession_manager *am, const char *query,
                                        const agentsession_filter *filter, char **results_json,
                                        agentsession_error *err) {
    as_filter f = AS_FILTER_ALL;
    as_found_list found = { 0 };
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    size_t i;
    result_init(&r, results_json);
    f.limit = 20;
    if ((st = check_open(am, err)) != AGENTSESSION_OK
        || (st = check_text(query, "query", err)) != AGENTSESSION_OK
        || (st = to_filter(filter, &f, err)) != AGENTSESSION_OK)
        return st;
    rc = as_manager_search(am->m, query, &f, &found, &e);
    if (rc == AS_OK && r.out) {
        int bad = as_buf_putc(&r.text, '[');
        for (i = 0; i < found.n && !bad; i++) {
            const as_found *hit = &found.items[i];
            bad = (i && as_buf_putc(&r.text, ',')) || as_buf_puts(&r.text, "{\"metadata\":")
                  || as_meta_write_json(&r.text, &hit->meta) || as_buf_puts(&r.text, ",\"index\":")
                  || as_json_write_integer(&r.text, (int64_t)hit->index)
                  || as_buf_puts(&r.text, ",\"snippet\":")
                  || as_json_write_string(&r.text, hit->snippet, strlen(hit->snippet), NULL) != 0
                  || as_buf_putc(&r.text, '}');
        }
        if (bad || as_buf_putc(&r.text, ']')) rc = as_error_nomem(&e);
    }
    as_found_list_clear(&found);
    return result_end(&r, rc, &e, err);
}

/* The status of the core of a status of this library (status_of's inverse). */
static as_status core_status(agentsession_status st) {
    switch (st) {
    case AGENTSESSION_OK: return AS_OK;
    case AGENTSESSION_ERR_NOT_FOUND: return AS_ENOTFOUND;
    case AGENTSESSION_ERR_INVALID: return AS_EINVALID;
    case AGENTSESSION_ERR_TOO_LARGE: return AS_ETOOLARGE;
    case AGENTSESSION_ERR_CONFLICT: return AS_ECONFLICT;
    case AGENTSESSION_ERR_STORAGE: return AS_ESTORAGE;
    case AGENTSESSION_ERR_UNAVAILABLE: return AS_EUNAVAILABLE;
    case AGENTSESSION_ERR_CLOSED: return AS_ECLOSED;
    case AGENTSESSION_ERR_NOMEM: return AS_ENOMEM;
    }
    return AS_ESTORAGE;
}

/* The host's progress function behind the core's. */
static as_status prune_progress(void *ctx, size_t deleted, as_error *err) {
    const agentsession_prune_options *o = ctx;
    agentsession_status st = o->progress(o->progress_ctx, deleted);
    if (st == AGENTSESSION_OK) return AS_OK;
    return as_error_set(err, core_status(st), "stopped by opts.progress (%s) after %zu deleted",
                        agentsession_kind(st), deleted);
}

agentsession_status agentsession_prune(agentsession_manager *am, const agentsession_prune_options *opts,
                                       char **ids_json, agentsession_error *err) {
    as_prune p;
    as_id_list ids = { 0 };
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    size_t i;
    result_init(&r, ids_json);
    if ((st = check_open(am, err)) != AGENTSESSION_OK) return st;
    if (opts == NULL) return invalid(err, "opts", "must be given: it holds before, which is required");
    if ((st = check_strings(opts->tags, opts->ntags, "opts.tags", err)) != AGENTSESSION_OK) return st;
    memset(&p, 0, sizeof p);
    p.filter = (as_filter)AS_FILTER_ALL;
    p.filter.tags = opts->tags;
    p.filter.ntags = opts->ntags;
    p.filter.agent_name = opts->agent_name;
    p.filter.parent_id = opts->parent_id;
    p.before = opts->before;
    p.keep_tag = opts->keep_tag;
    p.dry_run = opts->dry_run;
    if (opts->progress) {
        p.progress = prune_progress;
        p.progress_ctx = (void *)opts;
    }
    rc = as_manager_prune(am->m, &p, &ids, &e);
    if (rc == AS_OK && r.out) {
        int bad = as_buf_putc(&r.text, '[');
        for (i = 0; i < ids.n && !bad; i++)
            bad = (i && as_buf_putc(&r.text, ','))
                  || as_json_write_string(&r.text, ids.ids[i], strlen(ids.ids[i]), NULL) != 0;
        if (bad || as_buf_putc(&r.text, ']')) rc = as_error_nomem(&e);
    }
    if (rc != AS_OK && e.path[0] && strcmp(e.path, "keep_tag") == 0) as_error_prefix(&e, "opts.");
    as_id_list_clear(&ids);
    return result_end(&r, rc, &e, err);
}

/* ---------------------------------------------------------------- export and import */

agentsession_status agentsession_export(agentsession_manager *am, const char *id, char **json,
                                        agentsession_error *err) {
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, json);
    if ((st = check_call(am, id, err)) != AGENTSESSION_OK)
        return st;
    rc = as_manager_export(am->m, id, &r.text, &e);
    return result_end(&r, rc, &e, err);
}

agentsession_status agentsession_import(agentsession_manager *am, const char *json,
                                        const agentsession_import_options *opts, char **metadata_json,
                                        agentsession_error *err) {
    as_session s = { 0 };
    as_meta stored = { 0 };
    write_result wr;
    result r;
    as_status rc;
    as_error e;
    agentsession_status st;
    result_init(&r, metadata_json);
    if ((st = check_open(am, err)) != AGENTSESSION_OK
        || (st = check_text(json, "json", err)) != AGENTSESSION_OK)
        return st;
    rc = as_session_from_json(json, strlen(json), AS_DOC_EXPORT, as_manager_canonical(am->m), &s, NULL,
                              NULL, &e);
    if (rc == AS_OK) {
        hook(am->m, &wr, &r, WRITE_META, NULL);
        rc = as_manager_import(am->m, &s, opts && opts->replace, &stored, &e);
        unhook(am->m);
    }
    as_session_clear(&s);
    as_meta_clear(&stored);
    return result_end(&r, rc, &e, err);
}

/* ---------------------------------------------------------------- small things */

void agentsession_free(void *text) {
    as_free(text);
}

const char *agentsession_version(void) {
    return AGENTSESSION_VERSION;
}

agentsession_status agentsession_uuid(char out[AGENTSESSION_UUID_SIZE], agentsession_error *err) {
    as_error e;
    if (out == NULL) return invalid(err, "out", "must be a pointer (got NULL)");
    as_error_clear(&e);
    if (as_uuid_v4(out, &e) != AS_OK) return as_lib_report(&e, err);
    return as_lib_succeed(err);
}
