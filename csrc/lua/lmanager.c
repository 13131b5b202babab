/*
** The SessionManager userdata: one type for every store, and its methods. The
** stores' constructors (lmemory.c, lsqlite.c, lredis.c, lcustom.c) make one
** with lbind_manager_new and open it on their store with lbind_manager_start.
**
** A manager is created closed (NULL) and opened only once its store exists, so
** __gc never sees a half-built object; __gc and __close share close, which is
** safe to run twice.
**
** As with Lua's own file handles, getmetatable(mgr) is the real metatable: every
** function in it checks its first argument with luaL_checkudata, so calling one
** on anything but a manager is an argument error.
*/
#include <stdio.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_manager.h"

typedef struct lmanager {
    as_manager *m; /* NULL once closed */
    int big;       /* LBIND_BIG_*: integers beyond 2^53 where numbers are doubles */
    lbind_enter_fn enter;
    void *store;
    int pruning; /* a prune is calling its progress function */
} lmanager;

static lmanager *check_manager_at(lua_State *L, int arg) {
    return (lmanager *)luaL_checkudata(L, arg, LBIND_MANAGER_MT);
}

static lmanager *check_manager(lua_State *L) {
    return check_manager_at(L, 1);
}

static void enter(lua_State *L, lmanager *lm) {
    if (lm->pruning)
        lbind_errorf(L, AS_EINVALID, NULL, "the manager is busy: its prune's progress function called it");
    if (lm->m && lm->enter && lm->enter(lm->store, L))
        lbind_errorf(L, AS_EINVALID, NULL, "the manager is busy: a function of its backend called it");
}

static as_manager *check_open(lua_State *L) {
    lmanager *lm = check_manager(L);
    if (lm->m == NULL) return (lbind_errorf(L, AS_ECLOSED, NULL, "the manager is closed"), NULL);
    enter(L, lm);
    return lm->m;
}

/* The id argument: a string (else an argument error); NULs are refused as the
** control characters they are, and the core checks the rest. */
static const char *check_id(lua_State *L, int arg) {
    return lbind_check_text(L, arg, "id");
}

/* ---------------------------------------------------------------- methods */

/* A write's result is built in the manager's write hook, before the store
** writes (as_manager_set_write_hook), so that a Lua error while building it
** (out of memory) fails the call with the store unchanged: nothing that can
** raise runs after a write. The result goes into a stack slot reserved for it. */
enum { RESULT_META, RESULT_TAGS, RESULT_SESSION };

typedef struct result_hook {
    lua_State *L;
    int slot;                  /* where the result goes */
    int what;                  /* RESULT_* */
    const as_session *session; /* RESULT_SESSION: the session the operation fills */
    const char *where;         /* the store's location, for damaged values */
    int big;                   /* LBIND_BIG_* */
    int built;
} result_hook;

static void push_result(lua_State *L, const result_hook *h, const as_meta *meta) {
    if (h->what == RESULT_META) lbind_push_meta(L, meta, h->big);
    else if (h->what == RESULT_TAGS) lbind_push_tags(L, meta);
    else lbind_push_session(L, h->session, h->where, h->big);
}

static int build_result(lua_State *L) {
    push_result(L, lua_touserdata(L, 1), lua_touserdata(L, 2));
    return 1;
}

static as_status write_hook(void *ctx, const as_write *w, as_error *err) {
    result_hook *h = ctx;
    lua_State *L = h->L;
    int rc;
    lua_pushcfunction(L, build_result);
    lua_pushlightuserdata(L, h);
    lua_pushlightuserdata(L, (void *)w->meta);
    rc = lua_pcall(L, 2, 1, 0);
    if (rc != LUA_OK) {
        if (!lbind_error_get(L, -1, err)) {
            if (rc == LUA_ERRMEM) as_error_nomem(err);
            else as_error_set(err, AS_ESTORAGE, "%.400s", lua_type(L, -1) == LUA_TSTRING
                                                             ? lua_tostring(L, -1) : "an error in Lua");
        }
        lua_pop(L, 1);
        return err->status;
    }
    lua_replace(L, h->slot);
    h->built = 1;
    return AS_OK;
}

/* Reserves the result's slot and hooks its building into the next core call,
** which must follow at once (nothing that can raise may run before unhook). */
static void hook_result(lua_State *L, as_manager *m, result_hook *h, int what,
                        const as_session *session) {
    luaL_checkstack(L, 6, "agentsession");
    lua_pushnil(L);
    h->L = L;
    h->slot = lua_gettop(L);
    h->what = what;
    h->session = session;
    h->where = as_manager_location(m);
    h->big = check_manager_at(L, 1)->big;
    h->built = 0;
    as_manager_set_write_hook(m, write_hook, h);
}

/* Ends the hook; on success leaves the result on top of the stack (built now
** when the store wrote without calling the hook). A result built after the
** write is built under lua_pcall when `written` is a stack index: running out
** of memory then raises the error object there, made before the write, which
** says the write was made (raising it allocates nothing). */
static void unhook_result(lua_State *L, as_manager *m, result_hook *h, as_status st,
                          const as_meta *meta, int written) {
    as_manager_set_write_hook(m, NULL, NULL);
    if (st != AS_OK) return;
    lua_settop(L, h->slot);
    if (h->built) return;
    if (written) {
        lua_pushcfunction(L, build_result);
        lua_pushlightuserdata(L, h);
        lua_pushlightuserdata(L, (void *)meta);
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
            lua_pushvalue(L, written);
            lua_error(L);
        }
        return;
    }
    push_result(L, h, meta);
}

/* options.expect_version: -1 when absent. */
static int64_t opt_expect_version(lua_State *L, int tbl) {
    lua_Integer v;
    if (!lbind_opt_int(L, tbl, "options", "expect_version", 0, LUA_MAXINTEGER, &v)) return -1;
    return (int64_t)v;
}

/* options.op_id: NULL when absent. The core checks its text (as_check_op_id),
** naming the path "op_id", which an error here takes as "options.op_id". */
static const char *opt_op_id(lua_State *L, int tbl) {
    return lbind_opt_text(L, tbl, "options", "op_id", 1, AS_OP_ID_MAX);
}

/* A field a window must have: a whole number >= lo. */
static lua_Integer window_field(lua_State *L, int tbl, const char *name, lua_Integer lo) {
    lua_Integer v;
    if (!lbind_opt_int(L, tbl, "window", name, lo, LUA_MAXINTEGER, &v)) {
        lua_pushfstring(L, "window.%s", name);
        lbind_errorf(L, AS_EINVALID, lua_tostring(L, -1), "required");
    }
    return v;
}

/* The `window` field of the session table at idx (see as_window); 0 when it
** has none. A window without `count` holds the messages the table holds. */
static int opt_window(lua_State *L, int idx, as_window *win) {
    static const char *const names[] = { "first", "count", "total", "version", NULL };
    lua_Integer first, count, total, version;
    int tbl;
    if (lbind_rawfield(L, idx, "window") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1))
        lbind_errorf(L, AS_EINVALID, "window", "must be a table (got %s)", luaL_typename(L, -1));
    tbl = lua_gettop(L);
    lbind_check_options(L, tbl, "window", names);
    first = window_field(L, tbl, "first", 1);
    total = window_field(L, tbl, "total", 0);
    version = window_field(L, tbl, "version", 1);
    if (!lbind_opt_int(L, tbl, "window", "count", 0, LUA_MAXINTEGER, &count)) {
        lbind_rawfield(L, idx, "messages");
        count = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    win->first = lbind_size(first - 1);
    win->count = lbind_size(count);
    win->total = lbind_size(total);
    win->version = (int64_t)version;
    return 1;
}

/***
@module agentsession
*/

/***
A manager: a store of sessions, of any kind, with the same methods.
Made by `memory`, `sqlite`, `redis`, `custom` or `open`; every method raises on failure,
and a failed call changes nothing in the store.
@type SessionManager
*/

/***
Creates or replaces the session with that id (a window keeps the messages before it).
@function save
@tparam table session `{ metadata, messages, state }`, or a window from `resume`
@tparam[opt] table opts `{ expect_version = v }`: `conflict` unless the stored version is `v`
 (`0`: the id must not exist yet)
@treturn table the stored metadata
@raise `invalid`, `too_large`, `conflict`, `storage`, `unavailable` or `closed`
*/
static int m_save(lua_State *L) {
    as_manager *m = check_open(L);
    int64_t expect = -1;
    as_window win;
    int windowed;
    lbind_call *c;
    result_hook h;
    as_status st;
    as_error err;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        static const char *const names[] = { "expect_version", NULL };
        luaL_checktype(L, 3, LUA_TTABLE);
        lbind_check_options(L, 3, "options", names);
        expect = opt_expect_version(L, 3);
    }
    windowed = opt_window(L, 2, &win);
    c = lbind_call_new(L);
    as_error_clear(&err);
    st = lbind_to_session(L, 2, &c->session, &c->buf, as_manager_canonical(m), &err);
    if (st == AS_OK) {
        hook_result(L, m, &h, RESULT_META, NULL);
        st = as_manager_save(m, &c->session, windowed ? &win : NULL, expect, &c->meta, &err);
        unhook_result(L, m, &h, st, &c->meta, 0);
    }
    lbind_call_done(c);
    return st == AS_OK ? 1 : lbind_error(L, &err);
}

/* resume's options as a span; 0 for the whole session. */
static int resume_span(lua_State *L, int tbl, as_span *span) {
    static const char *const names[] = { "last", "from", "count", NULL };
    lua_Integer last, from, count;
    int has_last, has_from, has_count;
    if (lua_isnoneornil(L, tbl)) return 0;
    luaL_checktype(L, tbl, LUA_TTABLE);
    lbind_check_options(L, tbl, "options", names);
    has_last = lbind_opt_int(L, tbl, "options", "last", 0, LUA_MAXINTEGER, &last);
    has_from = lbind_opt_int(L, tbl, "options", "from", 1, LUA_MAXINTEGER, &from);
    has_count = lbind_opt_int(L, tbl, "options", "count", 0, LUA_MAXINTEGER, &count);
    if (has_last && (has_from || has_count))
        lbind_errorf(L, AS_EINVALID, "options", "give last, or from with an optional count, not both");
    if (has_count && !has_from) lbind_errorf(L, AS_EINVALID, "options.count", "needs from");
    if (has_last) {
        span->first = AS_SPAN_TAIL;
        span->count = lbind_size(last);
        return 1;
    }
    if (!has_from) return 0;
    span->first = lbind_size(from - 1);
    span->count = has_count ? lbind_size(count) : AS_ALL;
    return 1;
}

static void push_window(lua_State *L, const as_window *win) {
    lua_createtable(L, 0, 4);
    lbind_push_count(L, win->first < AS_ALL ? win->first + 1 : win->first);
    lua_setfield(L, -2, "first");
    lbind_push_count(L, win->count);
    lua_setfield(L, -2, "count");
    lbind_push_count(L, win->total);
    lua_setfield(L, -2, "total");
    lua_pushinteger(L, (lua_Integer)win->version);
    lua_setfield(L, -2, "version");
}

/***
Loads a session, or only some of its messages as a window.
@function resume
@string id the session's id
@tparam[opt] table opts `{ last = n }`, or `{ from = i [, count = n] }` (`i` from 1)
@treturn table a fresh session table; with `opts`, a window: it has a field
 `window = { first, count, total, version }`
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_resume(lua_State *L) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    as_span span;
    as_window win;
    int windowed = resume_span(L, 3, &span);
    lbind_call *c = lbind_call_new(L);
    as_error err;
    as_error_clear(&err);
    if (as_manager_resume(m, id, windowed ? &span : NULL, &c->session, &win, &err) != AS_OK) {
        lbind_call_done(c);
        return lbind_error(L, &err);
    }
    lbind_push_session(L, &c->session, as_manager_location(m), check_manager(L)->big);
    if (windowed) {
        push_window(L, &win);
        lua_setfield(L, -2, "window");
    }
    lbind_call_done(c);
    return 1;
}

/***
Adds messages after the stored ones in one atomic write, without reading the history.
@function append
@string id the session's id
@tparam table messages an array of messages
@tparam[opt] table opts `{ tokens = n, expect_version = v, state = x, op_id = s }`: `tokens` is
 added to `total_tokens`; `state`, when given, replaces the stored state in the same write;
 `op_id` (1 to 128 bytes of UTF-8, a UUID for instance) makes the append apply at most once to
 the session: sent again, it changes nothing
@treturn table the new metadata (the current one when `op_id` had been applied)
@treturn bool `true` when the append was applied, `false` when an append with that `op_id` had been
@raise `not_found`, `invalid`, `too_large`, `conflict`, `storage`, `unavailable` or `closed`
*/
static int m_append(lua_State *L) {
    static const char *const names[] = { "tokens", "op_id", "expect_version", "state", NULL };
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    as_append_opts opts = { .expect_version = -1 };
    lua_Integer tokens = 0;
    int has_state = 0, applied = 1;
    lbind_call *c;
    result_hook h;
    as_status st;
    as_error err;
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lbind_check_options(L, 4, "options", names);
        lbind_opt_int(L, 4, "options", "tokens", 0, LUA_MAXINTEGER, &tokens);
        opts.tokens = (uint64_t)tokens;
        opts.expect_version = opt_expect_version(L, 4);
        has_state = lbind_rawfield(L, 4, "state") != LUA_TNIL;
        lua_pop(L, 1);
        opts.op_id = opt_op_id(L, 4);
    }
    opts.applied = &applied;
    c = lbind_call_new(L);
    as_error_clear(&err);
    st = lbind_to_messages(L, 3, &c->session, &c->buf, as_manager_canonical(m), &err);
    if (st == AS_OK && has_state) {
        lbind_rawfield(L, 4, "state");
        c->buf.len = 0;
        st = lbind_encode(L, -1, &c->buf, "options.state", as_manager_canonical(m), &err);
        lua_pop(L, 1);
        if (st == AS_OK && (c->session.state = as_blob_from_buf(&c->buf)) == NULL)
            st = as_error_nomem(&err);
        opts.state = c->session.state;
    }
    if (st == AS_OK) {
        int written = 0;
        if (as_manager_store_appends(m)) {
            /* the store's own append writes before the result can be built */
            as_error was_applied;
            as_error_nomem_applied(&was_applied, id);
            lbind_push_error(L, &was_applied);
            written = lua_gettop(L);
        }
        hook_result(L, m, &h, RESULT_META, NULL);
        st = as_manager_append(m, id, c->session.msgs, c->session.nmsgs, &opts, &c->meta, &err);
        unhook_result(L, m, &h, st, &c->meta, written);
    }
    lbind_call_done(c);
    if (st != AS_OK) {
        if (st == AS_EINVALID && strcmp(err.path, "op_id") == 0) as_error_prefix(&err, "options.");
        return lbind_error(L, &err);
    }
    lua_pushboolean(L, applied);
    return 2;
}

/***
The session as one JSON document `{"metadata":{…},"messages":[…],"state":…}`.
@function export
@string id the session's id
@treturn string the document
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_export(lua_State *L) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    lbind_call *c = lbind_call_new(L);
    as_error err;
    as_error_clear(&err);
    if (as_manager_export(m, id, &c->buf, &err) != AS_OK) {
        lbind_call_done(c);
        return lbind_error(L, &err);
    }
    lua_pushlstring(L, c->buf.data, c->buf.len);
    lbind_call_done(c);
    return 1;
}

/* Is the value at idx a decoded JSON array (a table carrying array_mt)? */
static int is_json_array(lua_State *L, int idx) {
    return lua_istable(L, idx) && lbind_has_metatable(L, idx, LBIND_ARRAY_MT);
}

/* A field of a decoded document that must be a JSON array when present (or null, when
** `null_ok`): `{}` is an object, which a Lua table could not tell from an empty array. */
static void check_json_array(lua_State *L, int obj, const char *key, int null_ok,
                             const char *path, const char *what) {
    int t = lbind_rawfield(L, obj, key);
    if (t != LUA_TNIL && !(null_ok && t == LUA_TLIGHTUSERDATA) && !is_json_array(L, -1))
        lbind_errorf(L, AS_EINVALID, path, "must be %s", what);
    lua_pop(L, 1);
}

/* The document of import as a session table: the seed's fields and parent_id,
** a null field (`"name": null`) taken as absent. Pushes the table. */
static void import_session(lua_State *L, int doc) {
    static const char *const fields[] = {
        "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count",
        "total_tokens", "parent_id", NULL
    };
    int meta;
    if (!lua_istable(L, doc) || is_json_array(L, doc))
        lbind_errorf(L, AS_EINVALID, "json", "must be an object {\"metadata\", \"messages\", \"state\"}");
    check_json_array(L, doc, "messages", 0, "json.messages", "an array");
    lbind_check_keys(L, doc, "json", (const char *const[]){ "metadata", "messages", "state", NULL },
                     "field");
    lua_createtable(L, 0, 3);
    if (lbind_rawfield(L, doc, "metadata") != LUA_TTABLE)
        lbind_errorf(L, AS_EINVALID, "json.metadata", "must be an object");
    meta = lua_gettop(L);
    lbind_check_keys(L, meta, "json.metadata", fields, "field");
    check_json_array(L, meta, "tags", 1, "json.metadata.tags", "an array of strings");
    lua_createtable(L, 0, 9);
    lua_pushnil(L);
    while (lua_next(L, meta)) {
        if (lua_type(L, -1) == LUA_TLIGHTUSERDATA) lua_pop(L, 1); /* null: absent */
        else {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_setfield(L, -3, "metadata");
    lua_pop(L, 1);
    lbind_rawfield(L, doc, "messages");
    lua_setfield(L, -2, "messages");
    lbind_rawfield(L, doc, "state");
    lua_setfield(L, -2, "state");
}

/* A field of the document that import refused is named from the document's
** root, as its JSON errors are: json.metadata.id, json.messages[2]. */
static void import_path(as_error *err) {
    static const char *const roots[] = { "metadata", "messages", "state", NULL };
    int i;
    if (err->status != AS_EINVALID) return;
    for (i = 0; roots[i]; i++) {
        size_t n = strlen(roots[i]);
        if (strncmp(err->path, roots[i], n) == 0 && (err->path[n] == '\0' || err->path[n] == '.'
                                                     || err->path[n] == '[')) {
            as_error_prefix(err, "json.");
            return;
        }
    }
}

/***
Stores a document made by `export` under its own id, its metadata as given.
@function import
@string json the document
@tparam[opt] table opts `{ replace = true }` replaces a session of that id
@treturn table the stored metadata
@raise `invalid` (naming the field from the document's root, as `json.metadata.id`),
 `conflict` when the id exists without `replace`, `too_large`, `storage`, `unavailable` or `closed`
*/
static int m_import(lua_State *L) {
    as_manager *m = check_open(L);
    size_t len;
    const char *text;
    int replace = 0;
    lbind_call *c;
    result_hook h;
    as_status st;
    as_error err;
    luaL_checktype(L, 2, LUA_TSTRING); /* a number is the wrong type, as for an id */
    text = lua_tolstring(L, 2, &len);
    if (!lua_isnoneornil(L, 3)) {
        static const char *const names[] = { "replace", NULL };
        int t;
        luaL_checktype(L, 3, LUA_TTABLE);
        lbind_check_options(L, 3, "options", names);
        t = lbind_rawfield(L, 3, "replace");
        if (t != LUA_TNIL && t != LUA_TBOOLEAN)
            lbind_errorf(L, AS_EINVALID, "options.replace", "must be a boolean (got %s)",
                         lua_typename(L, t));
        replace = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    as_error_clear(&err);
    if (lbind_decode_document(L, text, len, "json", check_manager(L)->big, &err) != AS_OK)
        return lbind_error(L, &err);
    import_session(L, 3);
    c = lbind_call_new(L);
    st = lbind_to_session(L, 4, &c->session, &c->buf, as_manager_canonical(m), &err);
    if (st == AS_OK) {
        hook_result(L, m, &h, RESULT_META, NULL);
        st = as_manager_import(m, &c->session, replace, &c->meta, &err);
        unhook_result(L, m, &h, st, &c->meta, 0);
    }
    lbind_call_done(c);
    if (st != AS_OK) import_path(&err);
    return st == AS_OK ? 1 : lbind_error(L, &err);
}

/* A text option of list's filter: NULL when absent. */
static const char *filter_text(lua_State *L, int tbl, const char *field, const char *path) {
    const char *s = NULL;
    int t = lbind_rawfield(L, tbl, field);
    if (t == LUA_TSTRING) s = lbind_text(L, -1, path);
    else if (t != LUA_TNIL)
        lbind_errorf(L, AS_EINVALID, path, "must be a string (got %s)", lua_typename(L, t));
    lua_pop(L, 1); /* the string stays alive in the filter table */
    return s;
}

/* The length of an array of filter tags, refusing holes and other keys. */

/***
The metadata of the sessions, most recently updated first; ties go to the most recent write.
@function list
@tparam[opt] table filter `{ tag =, tags =, agent_name =, parent_id =, limit =, offset = }`,
 combined
@treturn table an array of metadata
@raise `invalid`, `storage`, `unavailable` or `closed`
*/
/* The filter fields of list (and search, and prune) in the table at tbl:
** tag, tags, agent_name, parent_id, limit, offset, each when present. Leaves
** on the stack the userdata that holds f->tags. */
static void read_filter(lua_State *L, int tbl, const char *what, as_filter *f) {
    char path[64];
    const char **tags;
    const char *tag;
    lua_Integer n = 0, k, v;
    snprintf(path, sizeof path, "%s.tag", what);
    tag = filter_text(L, tbl, "tag", path);
    if (lbind_rawfield(L, tbl, "tags") != LUA_TNIL) {
        if (!lua_istable(L, -1) || (n = lbind_array_len(L, -1)) < 0) {
            snprintf(path, sizeof path, "%s.tags", what);
            lbind_errorf(L, AS_EINVALID, path, "must be an array of strings");
        }
    }
    tags = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(char *), 0);
    lua_insert(L, -2);
    for (k = 1; k <= n; k++) {
        snprintf(path, sizeof path, "%s.tags[%d]", what, (int)k);
        if (lua_rawgeti(L, -1, k) != LUA_TSTRING)
            lbind_errorf(L, AS_EINVALID, path, "must be a string (got %s)", luaL_typename(L, -1));
        tags[f->ntags++] = lbind_text(L, -1, path);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (tag) tags[f->ntags++] = tag;
    f->tags = tags;
    snprintf(path, sizeof path, "%s.agent_name", what);
    f->agent_name = filter_text(L, tbl, "agent_name", path);
    snprintf(path, sizeof path, "%s.parent_id", what);
    f->parent_id = filter_text(L, tbl, "parent_id", path);
    if (lbind_opt_int(L, tbl, what, "limit", 0, LUA_MAXINTEGER, &v)) f->limit = lbind_size(v);
    if (lbind_opt_int(L, tbl, what, "offset", 0, LUA_MAXINTEGER, &v)) f->offset = lbind_size(v);
}

/***
The metadata of the sessions, most recently updated first; ties go to the most recent write.
@function list
@tparam[opt] table filter `{ tag =, tags =, agent_name =, parent_id =, limit =, offset = }`,
 combined
@treturn table an array of metadata
@raise `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_list(lua_State *L) {
    static const char *const names[] = { "tag", "tags", "agent_name", "parent_id", "limit", "offset", NULL };
    as_manager *m = check_open(L);
    as_filter f = AS_FILTER_ALL;
    lbind_call *c;
    as_error err;
    size_t i;
    int big;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lbind_check_options(L, 2, "filter", names);
        read_filter(L, 2, "filter", &f);
    }
    c = lbind_call_new(L);
    as_error_clear(&err);
    if (as_manager_list(m, &f, &c->list, &err) != AS_OK) {
        lbind_call_done(c);
        return lbind_error(L, &err);
    }
    big = check_manager(L)->big;
    lua_createtable(L, c->list.n < INT32_MAX ? (int)c->list.n : 0, 0);
    for (i = 0; i < c->list.n; i++) {
        lbind_push_meta(L, &c->list.items[i], big);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    lbind_call_done(c);
    return 1;
}

/***
Copies a session under a new UUID, with `parent_id` set to its source.
@function fork
@string id the source's id
@tparam[opt] string name the copy's name; by default `"<name> (fork)"`, or none when the source
 has none
@tparam[opt] table opts `{ at = k }` copies only the first `k` messages
@treturn table the new metadata
@raise `not_found`, `invalid`, `too_large`, `storage`, `unavailable` or `closed`
*/
static int m_fork(lua_State *L) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    const char *name = NULL;
    lua_Integer at = -1;
    lbind_call *c;
    result_hook h;
    as_status st;
    as_error err;
    if (!lua_isnoneornil(L, 3)) name = lbind_check_text(L, 3, "name");
    if (!lua_isnoneornil(L, 4)) {
        static const char *const names[] = { "at", NULL };
        luaL_checktype(L, 4, LUA_TTABLE);
        lbind_check_options(L, 4, "options", names);
        lbind_opt_int(L, 4, "options", "at", 0, LUA_MAXINTEGER, &at);
    }
    c = lbind_call_new(L);
    as_error_clear(&err);
    hook_result(L, m, &h, RESULT_META, NULL);
    st = as_manager_fork(m, id, name, at < 0 ? AS_KEEP_ALL : lbind_size(at), &c->meta, &err);
    unhook_result(L, m, &h, st, &c->meta, 0);
    lbind_call_done(c);
    return st == AS_OK ? 1 : lbind_error(L, &err);
}

/***
Keeps the first `min(k, #messages)` messages; `turn_count` becomes that number.
@function rewind
@string id the session's id
@int k the number of messages to keep
@treturn table the rewound session
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_rewind(lua_State *L) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    lua_Integer k;
    int isint;
    lbind_call *c;
    result_hook h;
    as_status st;
    as_error err;
    luaL_checktype(L, 3, LUA_TNUMBER);
    k = lua_tointegerx(L, 3, &isint);
    if (!isint) return lbind_errorf(L, AS_EINVALID, "turn_index", "must be a whole number");
    if (k < 0) return lbind_errorf(L, AS_EINVALID, "turn_index", "must not be negative (got %d)", (int)(k < -1000000 ? -1000000 : k));
    c = lbind_call_new(L);
    as_error_clear(&err);
    hook_result(L, m, &h, RESULT_SESSION, &c->session);
    st = as_manager_rewind(m, id, (uint64_t)k, &c->session, &err);
    unhook_result(L, m, &h, st, &c->session.meta, 0);
    lbind_call_done(c);
    return st == AS_OK ? 1 : lbind_error(L, &err);
}

/* tag and untag: a string or an array of strings. */
static int change_tags(lua_State *L, int remove) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    const char **tags;
    lua_Integer n = 1, k;
    lbind_call *c;
    result_hook h;
    as_status st;
    as_error err;
    luaL_argexpected(L, lua_type(L, 3) == LUA_TSTRING || lua_istable(L, 3), 3, "string or array of strings");
    if (lua_istable(L, 3) && (n = lbind_array_len(L, 3)) < 0)
        return lbind_errorf(L, AS_EINVALID, "tags", "must be a string or an array of strings");
    tags = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(char *), 0);
    if (lua_istable(L, 3)) {
        for (k = 1; k <= n; k++) {
            char path[32];
            snprintf(path, sizeof path, "tags[%d]", (int)k);
            if (lua_rawgeti(L, 3, k) != LUA_TSTRING)
                return lbind_errorf(L, AS_EINVALID, path, "must be a string (got %s)", luaL_typename(L, -1));
            tags[k - 1] = lbind_check_text(L, lua_gettop(L), path);
            lua_pop(L, 1);
        }
    } else {
        tags[0] = lbind_check_text(L, 3, "tags[1]");
    }
    c = lbind_call_new(L);
    as_error_clear(&err);
    hook_result(L, m, &h, RESULT_TAGS, NULL);
    st = as_manager_tag(m, id, tags, (size_t)n, remove, &c->meta, &err);
    unhook_result(L, m, &h, st, &c->meta, 0);
    lbind_call_done(c);
    return st == AS_OK ? 1 : lbind_error(L, &err);
}

/***
Appends the tags the session does not carry yet, in order.
@function tag
@string id the session's id
@tparam string|table tags a tag or an array of tags
@treturn table the session's tag array
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_tag(lua_State *L) {
    return change_tags(L, 0);
}

/***
Removes tags from a session.
@function untag
@string id the session's id
@tparam string|table tags a tag or an array of tags
@treturn table the session's tag array
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_untag(lua_State *L) {
    return change_tags(L, 1);
}

/***
Sets a session's name.
@function rename
@string id the session's id
@string name the new name
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_rename(lua_State *L) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    const char *name = lbind_check_text(L, 3, "name");
    as_error err;
    as_error_clear(&err);
    if (as_manager_rename(m, id, name, &err) != AS_OK) return lbind_error(L, &err);
    return 0;
}

/***
Removes a session and all its data.
@function delete
@string id the session's id
@raise `not_found`, `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_delete(lua_State *L) {
    as_manager *m = check_open(L);
    const char *id = check_id(L, 2);
    as_error err;
    as_error_clear(&err);
    if (as_manager_delete(m, id, &err) != AS_OK) return lbind_error(L, &err);
    return 0;
}

/***
Finds the sessions in which one message, or the name and tags taken together, holds every word
of the query.
Words are runs of letters, marks and digits; ASCII letters match without case; words in double
quotes are a phrase, matched in that order.
@function search
@string query the words
@tparam[opt] table opts `{ limit = 20, offset = 0, tag =, tags =, agent_name =, parent_id = }`
@treturn table an array, most recently updated first, of `{ metadata =, index =, snippet = }`:
 `index` is the 1-based index of the last message that matched (0: the name and tags), `snippet`
 at most 200 characters of its text around the match
@raise `invalid` (a query without a word), `storage`, `unavailable` or `closed`
*/
static int m_search(lua_State *L) {
    static const char *const names[] = { "tag", "tags", "agent_name", "parent_id", "limit",
                                         "offset", NULL };
    as_manager *m = check_open(L);
    const char *query = lbind_check_text(L, 2, "query");
    as_filter f = AS_FILTER_ALL;
    lbind_call *c;
    as_error err;
    size_t i;
    int big = check_manager(L)->big;
    f.limit = 20;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lbind_check_options(L, 3, "options", names);
        read_filter(L, 3, "options", &f);
    }
    c = lbind_call_new(L);
    as_error_clear(&err);
    if (as_manager_search(m, query, &f, &c->found, &err) != AS_OK) {
        lbind_call_done(c);
        return lbind_error(L, &err);
    }
    lua_createtable(L, c->found.n < INT32_MAX ? (int)c->found.n : 0, 0);
    for (i = 0; i < c->found.n; i++) {
        const as_found *hit = &c->found.items[i];
        lua_createtable(L, 0, 3);
        lbind_push_meta(L, &hit->meta, big);
        lua_setfield(L, -2, "metadata");
        lbind_push_count(L, hit->index);
        lua_setfield(L, -2, "index");
        lua_pushstring(L, hit->snippet);
        lua_setfield(L, -2, "snippet");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    lbind_call_done(c);
    return 1;
}

/* What prune's progress function needs: the thread and the function's stack slot. */
typedef struct prune_progress {
    lua_State *L;
    int fn;
} prune_progress;

/* Calls progress(deleted) under lua_pcall; its error stops the prune. */
static as_status call_progress(void *ctx, size_t deleted, as_error *err) {
    prune_progress *p = ctx;
    lua_State *L = p->L;
    int rc;
    lua_pushvalue(L, p->fn);
    lbind_push_count(L, deleted);
    rc = lua_pcall(L, 1, 0, 0);
    if (rc == LUA_OK) return AS_OK;
    if (!lbind_error_get(L, -1, err)) {
        if (rc == LUA_ERRMEM) as_error_nomem(err);
        else as_error_set(err, AS_ESTORAGE, "options.progress raised: %.400s",
                          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "an error");
    }
    lua_pop(L, 1);
    return err->status;
}

/***
Deletes the sessions last updated before a time, but those carrying a tag to keep.
It deletes in batches, each of them atomic, and never holds the store for long.
@function prune
@tparam table opts `{ before = ms, keep_tag =, tag =, tags =, agent_name =, parent_id =,
 dry_run =, progress = }`: `before` (required) a time in Unix milliseconds; the filters as for
 `list`; `dry_run = true` deletes nothing; `progress(deleted)` is called after each batch
@treturn table the array of the ids deleted (with `dry_run`, that would be deleted)
@raise `invalid`, `storage`, `unavailable` or `closed`
*/
static int m_prune(lua_State *L) {
    static const char *const names[] = { "before", "keep_tag", "tag", "tags", "agent_name",
                                         "parent_id", "dry_run", "progress", NULL };
    as_manager *m = check_open(L);
    as_prune p;
    prune_progress progress;
    lua_Integer before;
    lbind_call *c;
    as_error err;
    as_status st;
    size_t i;
    int t;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lbind_check_options(L, 2, "options", names);
    memset(&p, 0, sizeof p);
    p.filter = (as_filter)AS_FILTER_ALL;
    if (!lbind_opt_int(L, 2, "options", "before", LUA_MININTEGER, LUA_MAXINTEGER, &before))
        return lbind_errorf(L, AS_EINVALID, "options.before", "required: a time in Unix "
                            "milliseconds");
    p.before = (int64_t)before;
    p.keep_tag = lbind_opt_text(L, 2, "options", "keep_tag", 0, SIZE_MAX);
    p.dry_run = lbind_opt_bool(L, 2, "options", "dry_run", 0);
    read_filter(L, 2, "options", &p.filter);
    t = lbind_rawfield(L, 2, "progress");
    if (t == LUA_TFUNCTION) {
        progress.L = L;
        progress.fn = lua_gettop(L);
        p.progress = call_progress;
        p.progress_ctx = &progress;
    } else if (t != LUA_TNIL)
        return lbind_errorf(L, AS_EINVALID, "options.progress", "must be a function (got %s)",
                            lua_typename(L, t));
    c = lbind_call_new(L);
    as_error_clear(&err);
    check_manager(L)->pruning = p.progress != NULL;
    st = as_manager_prune(m, &p, &c->ids, &err);
    check_manager(L)->pruning = 0;
    if (st != AS_OK) {
        lbind_call_done(c);
        if (err.path[0] && strncmp(err.path, "keep_tag", 8) == 0) as_error_prefix(&err, "options.");
        return lbind_error(L, &err);
    }
    lua_createtable(L, c->ids.n < INT32_MAX ? (int)c->ids.n : 0, 0);
    for (i = 0; i < c->ids.n; i++) {
        lua_pushstring(L, c->ids.ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    lbind_call_done(c);
    return 1;
}

/***
Releases the store; idempotent. Also the manager's `__gc` and `__close`.
@function close
*/
static int m_close(lua_State *L) {
    lmanager *lm = check_manager(L);
    as_manager *m = lm->m;
    enter(L, lm);
    lm->m = NULL;
    as_manager_free(m);
    return 0;
}

/***
What the store is and what it counted.
@function stats
@treturn table `{ kind =, location =, round_trips =, connects =, retries =, redirections =,
 refreshes = }`: `kind` is `"memory"`, `"sqlite"`, `"redis"` or `"custom"`; the counts are
 Redis's (zero for the others; `redirections`, the `MOVED` and `ASK` answers, and `refreshes`,
 the times the slot map was learnt, are a cluster's)
@raise `closed`
*/
static int m_stats(lua_State *L) {
    as_manager *m = check_open(L);
    const char *where = as_manager_location(m);
    as_store_stats s;
    as_manager_stats(m, &s);
    lua_createtable(L, 0, 7);
    lua_pushstring(L, as_manager_kind(m));
    lua_setfield(L, -2, "kind");
    if (where) {
        lua_pushstring(L, where);
        lua_setfield(L, -2, "location");
    }
    lua_pushinteger(L, (lua_Integer)s.round_trips);
    lua_setfield(L, -2, "round_trips");
    lua_pushinteger(L, (lua_Integer)s.connects);
    lua_setfield(L, -2, "connects");
    lua_pushinteger(L, (lua_Integer)s.retries);
    lua_setfield(L, -2, "retries");
    lua_pushinteger(L, (lua_Integer)s.redirections);
    lua_setfield(L, -2, "redirections");
    lua_pushinteger(L, (lua_Integer)s.refreshes);
    lua_setfield(L, -2, "refreshes");
    return 1;
}

static int m_tostring(lua_State *L) {
    lmanager *lm = check_manager(L);
    if (lm->m) lua_pushfstring(L, "%s (%s): %p", LBIND_MANAGER_MT, as_manager_kind(lm->m), (void *)lm);
    else lua_pushfstring(L, "%s (closed): %p", LBIND_MANAGER_MT, (void *)lm);
    return 1;
}

/* ---------------------------------------------------------------- constructors */

/* Pushes a manager that is closed until lbind_manager_start gives it a store,
** so that a Lua error raised while the store is being made leaks nothing. */
void lbind_manager_new(lua_State *L) {
    lmanager *lm = lua_newuserdatauv(L, sizeof *lm, 0);
    lm->m = NULL;
    lm->big = LBIND_BIG_ERROR;
    lm->enter = NULL;
    lm->store = NULL;
    lm->pruning = 0;
    luaL_setmetatable(L, LBIND_MANAGER_MT);
}

/* Opens the manager at the top of the stack on the store (which it takes). */
int lbind_manager_start(lua_State *L, as_store *store, const lbind_opts *opts) {
    lmanager *lm = check_manager_at(L, -1);
    as_manager_opts core = opts->core;
    as_error err;
    as_error_clear(&err);
    lm->big = opts->big;
#if !LBIND_INTEGERS
    /* a manager that refuses to read a count beyond 2^53 writes none */
    if (opts->big == LBIND_BIG_ERROR) core.max_total_tokens = (uint64_t)1 << 53;
#endif
    if (as_manager_new(store, &core, &lm->m, &err) != AS_OK) return lbind_error(L, &err);
    return 1;
}

void lbind_manager_set_enter(lua_State *L, int idx, lbind_enter_fn fn, void *store) {
    lmanager *lm = check_manager_at(L, idx);
    lm->enter = fn;
    lm->store = store;
}

void lbind_manager_opts(lua_State *L, int arg, const char *const *names, lbind_opts *opts) {
    lua_Integer v;
    memset(opts, 0, sizeof *opts);
    opts->big = LBIND_BIG_ERROR;
    if (lua_isnoneornil(L, arg)) return;
    luaL_checktype(L, arg, LUA_TTABLE);
    lbind_check_options(L, arg, "options", names);
    if (lbind_opt_int(L, arg, "options", "max_session_bytes", 1, LUA_MAXINTEGER, &v))
        opts->core.max_session_bytes = lbind_size(v);
    opts->big = lbind_opt_big(L, arg, "options");
}

void lbind_manager_open(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "save", m_save },
        { "resume", m_resume },
        { "list", m_list },
        { "fork", m_fork },
        { "rewind", m_rewind },
        { "tag", m_tag },
        { "untag", m_untag },
        { "rename", m_rename },
        { "delete", m_delete },
        { "append", m_append },
        { "export", m_export },
        { "import", m_import },
        { "search", m_search },
        { "prune", m_prune },
        { "stats", m_stats },
        { "close", m_close },
        { NULL, NULL }
    };
    static const luaL_Reg metamethods[] = {
        { "__gc", m_close },
        { "__close", m_close },
        { "__tostring", m_tostring },
        { NULL, NULL }
    };
    luaL_newmetatable(L, LBIND_MANAGER_MT);
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
