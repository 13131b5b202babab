/*
** agentsession.custom(backend [, opts]): a store written in Lua.
**
** The backend is a table of plain functions, called as backend.load(id):
**
**   load(id [, hint]) -> session | nil            (required; see below)
**   store(session)                                (required; creates or replaces)
**   remove(id) -> existed                         (required)
**   list() -> { metadata, ... }                   (required; any order)
**   query(filter) -> { metadata, ... }            (optional: a filtered list)
**   update(metadata)                              (optional: tag, untag, rename)
**   rewind(id, keep, metadata)                    (optional: keep the first messages)
**   fork(source_id, metadata, count)              (optional: copy a session's first messages)
**   append(id, messages, metadata)                (optional: add messages at the end)
**   append_op(id, messages, metadata, op_ids)     (optional: the same, and set op_ids)
**   search(words, filter) -> { metadata, ... }    (optional: the sessions that may match)
**   prune(options) -> { id, ... }                 (optional: delete old sessions)
**   close()                                       (optional)
**
** A hint, { last = n } or { from = i [, count = n] }, says which messages the
** caller needs: a backend may return only some of them, saying which in the
** session's field window = { first = k, total = t } (its messages are the
** stored ones from index k on, of t stored); a session without `window` is
** the whole of it, and this store picks the messages asked for.
**
** Op ids live in the stored session: its field op_ids, an array of the op
** ids of its last appends that carried one (oldest first, at most
** AS_OP_IDS_KEPT), which store() is handed and load() gives back, with or
** without a hint, and which update, rewind and append leave as they are. An
** append with an op_id is checked against the loaded session's, and written
** with the new array by append_op, or else by store(). The manager never
** hands the field to its callers.
**
** This file is a store like the others, behind the store interface: the
** manager keeps every rule of the contract and this store keeps what it is
** told, by calling the backend. Every call into Lua runs under lua_pcall, so
** an error raised by a backend (or a Lua memory error) never jumps over the
** manager's C frames; it becomes a storage error carrying the backend's
** message, or, when the backend raised an agentsession error, that error.
**
** A load in a write transaction notes (as_stored.note) a registry reference
** to the table the backend returned, shifted left by one, the low bit set
** when it was read without its messages; the write that follows uses it, and
** release drops the reference.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_alloc.h"
#include "../core/as_manager.h"

typedef struct custom_store {
    as_store base;
    lua_State *L; /* the thread of the method under way */
    int backend;  /* registry references */
    int order;    /* id -> number of this manager's last write to it */
    int sizes;    /* id -> { version, updated_at, bytes } after that write */
    int64_t seq;  /* writes made through this store */
    int write;    /* the transaction under way writes */
    int busy;     /* a backend function is running */
    int big;      /* LBIND_BIG_*: integers beyond 2^53 handed to the backend */
    as_buf buf;
    /* the functions of this store: search and prune are the backend's when
    ** it has them as the manager is made */
    as_store_ops ops;
} custom_store;

/* What every protected call shares; each operation's own struct starts with it. */
typedef struct call {
    custom_store *cs;
    as_error *err;
    as_status st;
} call;

typedef struct load_call {
    call c;
    const char *id;
    const as_span *span; /* NULL: the metadata alone */
    as_session *out;
    as_stored *found;
} load_call;

typedef struct write_call {
    call c;
    const as_write *w;
} write_call;

typedef struct remove_call {
    call c;
    const char *id;
} remove_call;

typedef struct entry {
    as_meta meta;
    int64_t seq;  /* this manager's last write to it; 0 when none */
    size_t index; /* where the backend listed it */
} entry;

typedef struct list_call {
    call c;
    const as_filter *f;
    as_meta_list *out;
    entry *entries; /* gathered from the backend, freed by cu_list */
    size_t nentries;
} list_call;

typedef struct note_call {
    call c;
    const char *id;
    const as_write *w; /* NULL: the session was removed */
} note_call;

/* ---------------------------------------------------------------- calling the backend */

/* Pushes backend[name] (raw); returns its type. */
static int backend_fn(lua_State *L, custom_store *cs, const char *name) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->backend);
    lua_pushstring(L, name);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

/* Calls backend[name] with the nargs values on the stack (the function was
** pushed below them), keeping one result. On failure fills c->err: the
** backend's own agentsession error as it is, anything else as storage. */
static as_status backend_call(lua_State *L, call *c, const char *name, int nargs) {
    if (lua_pcall(L, nargs, 1, 0) == LUA_OK) return AS_OK;
    if (!lbind_error_get(L, -1, c->err)) {
        /* the message as tostring gives it (__tostring included); a failing
        ** __tostring is caught by the lua_pcall around the step */
        const char *msg = luaL_tolstring(L, -1, NULL);
        as_error_set(c->err, AS_ESTORAGE, "custom store: backend.%s raised: %.400s", name, msg);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return c->err->status;
}

/* The rules every stored metadata keeps, applied to what a backend returned:
** a session it holds has an id, names and tags within their limits, no tag
** twice, and a version of at least 1. */
static as_status check_returned(as_meta *m, as_error *why) {
    size_t ntags = m->ntags;
    as_status st = as_meta_check(m, why);
    if (st != AS_OK) return st;
    if (m->ntags != ntags) {
        as_error_set(why, AS_ESTORAGE, "a tag twice");
        as_error_prefix(why, "metadata.tags");
        return AS_ESTORAGE;
    }
    if (m->version < 1) {
        as_error_set(why, AS_ESTORAGE, "must be 1 or more (got %lld)", (long long)m->version);
        as_error_prefix(why, "metadata.version");
        return AS_ESTORAGE;
    }
    return AS_OK;
}

/* Fails the call: backend.<name> returned what `why` says. */
static as_status garbage(call *c, const char *name, const as_error *why) {
    char what[AS_ERROR_MESSAGE_MAX];
    snprintf(what, sizeof what, "%.200s%s%.300s", why->path, why->path[0] ? ": " : "",
             why->message);
    return as_error_set(c->err, AS_ESTORAGE, "custom store: backend.%s returned %.400s", name,
                        what);
}

/* Runs fn(arg) under lua_pcall on the calling thread, restoring its stack;
** arg is an operation's struct, whose first member is c. */
static as_status cu_run(custom_store *cs, lua_CFunction fn, call *c) {
    lua_State *L = cs->L;
    int top = lua_gettop(L), rc;
    if (!lua_checkstack(L, 30)) return as_error_nomem(c->err);
    c->cs = cs;
    c->st = AS_OK;
    cs->busy = 1;
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, c);
    rc = lua_pcall(L, 1, 0, 0);
    cs->busy = 0;
    if (rc != LUA_OK) {
        /* a Lua error outside a backend call: out of memory, an integer the
        ** option big_integers refuses, or an error object whose __tostring failed */
        if (rc == LUA_ERRMEM) c->st = as_error_nomem(c->err);
        else if (lbind_error_get(L, -1, c->err)) c->st = c->err->status;
        else c->st = as_error_set(c->err, AS_ESTORAGE, "custom store: %.400s",
                                  lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                 : "an error in Lua");
    }
    lua_settop(L, top);
    return c->st;
}

/* ---------------------------------------------------------------- load */

/* Whether this manager noted the size of a write of its own to that id. */
static int size_noted(lua_State *L, custom_store *cs, const char *id) {
    int noted;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->sizes);
    noted = lua_getfield(L, -1, id) == LUA_TTABLE;
    lua_pop(L, 2);
    return noted;
}

/* A write reads a session's metadata and its size. When this manager wrote
** that very version of it (the same version and updated_at), the size it
** noted then is the size now, and the session table at the top of the stack
** need not be encoded: only its metadata is converted (and checked) into
** out->meta. Returns 1 then, 0 (out->meta empty) when the full load must run. */
static int known_size(lua_State *L, load_call *lc) {
    custom_store *cs = lc->c.cs;
    as_meta *meta = &lc->out->meta;
    as_error why;
    lua_Integer v[3];
    int i, top = lua_gettop(L);
    as_error_clear(&why);
    if (lbind_to_session_meta(L, top, meta, &why) != AS_OK || strcmp(meta->id, lc->id) != 0
        || check_returned(meta, &why) != AS_OK)
        goto no;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->sizes);
    if (lua_getfield(L, -1, lc->id) != LUA_TTABLE) goto no;
    for (i = 0; i < 3; i++) {
        int isnum;
        lua_rawgeti(L, -1, i + 1);
        v[i] = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum || v[i] < 0) goto no;
    }
    if (v[0] != meta->version || v[1] != meta->updated_at) goto no;
    lc->found->bytes = (size_t)v[2];
    lua_settop(L, top);
    return 1;
no:
    lua_settop(L, top);
    as_meta_clear(meta);
    return 0;
}

/* Pushes the hint of a span that is not the whole history: { last = n } or
** { from = i [, count = n] }; returns 0 (pushing nothing) for the whole. */
static int push_hint(lua_State *L, const as_span *span) {
    if (span->first == 0 && span->count == AS_ALL) return 0;
    lua_createtable(L, 0, 2);
    if (span->first == AS_SPAN_TAIL) {
        lbind_push_count(L, span->count);
        lua_setfield(L, -2, "last");
        return 1;
    }
    lbind_push_count(L, span->first < AS_ALL - 1 ? span->first + 1 : span->first);
    lua_setfield(L, -2, "from");
    if (span->count != AS_ALL) {
        lbind_push_count(L, span->count);
        lua_setfield(L, -2, "count");
    }
    return 1;
}

/* Calls backend.load(id [, the hint of span]); leaves the session table on
** the stack and returns 1, or returns 0 with c->st set (AS_ENOTFOUND for nil). */
static int ask_load(lua_State *L, call *c, const char *id, const as_span *hint) {
    int t, nargs = 1;
    backend_fn(L, c->cs, "load");
    lua_pushstring(L, id);
    if (hint) nargs += push_hint(L, hint);
    if ((c->st = backend_call(L, c, "load", nargs)) != AS_OK) return 0;
    t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        c->st = AS_ENOTFOUND;
        return 0;
    }
    if (t != LUA_TTABLE) {
        as_error why;
        as_error_set(&why, AS_ESTORAGE, "a %s, not a session table or nil", lua_typename(L, t));
        c->st = garbage(c, "load", &why);
        return 0;
    }
    return 1;
}

/* The stored messages the session table at idx holds: from index *base
** (0-based), of *total stored. A session without `window` holds all of them. */
static as_status loaded_part(lua_State *L, int idx, size_t n, size_t *base, size_t *total,
                             as_error *why) {
    static const char *const names[] = { "first", "total" };
    lua_Integer v[2];
    int i;
    *base = 0;
    *total = n;
    if (lbind_rawfield(L, idx, "window") == LUA_TNIL) {
        lua_pop(L, 1);
        return AS_OK;
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return as_error_set(why, AS_ESTORAGE, "window: must be a table { first, total }");
    }
    for (i = 0; i < 2; i++) {
        int isint;
        lua_pushstring(L, names[i]);
        lua_rawget(L, -2);
        v[i] = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (!isint || v[i] < (i == 0 ? 1 : 0)) {
            lua_pop(L, 1);
            as_error_set(why, AS_ESTORAGE, "must be an integer of at least %d", i == 0 ? 1 : 0);
            as_error_prefix(why, names[i]);
            as_error_prefix(why, "window.");
            return AS_ESTORAGE;
        }
    }
    lua_pop(L, 1);
    if ((lua_Unsigned)v[0] - 1 > (lua_Unsigned)v[1] || n > (size_t)(v[1] - (v[0] - 1)))
        return as_error_set(why, AS_ESTORAGE, "window: %zu messages from %lld are more than "
                            "the %lld stored", n, (long long)v[0], (long long)v[1]);
    *base = (size_t)(v[0] - 1);
    *total = (size_t)v[1];
    return AS_OK;
}

/* Keeps the messages [first, first + n) of the stored ones in out, which
** holds those from `base` on. */
static void keep_messages(as_session *out, size_t base, size_t first, size_t n) {
    size_t i, drop = first - base;
    for (i = 0; i < drop; i++) as_blob_unref(out->msgs[i]);
    for (i = drop + n; i < out->nmsgs; i++) as_blob_unref(out->msgs[i]);
    if (drop > 0 && n > 0) memmove(out->msgs, out->msgs + drop, n * sizeof(as_blob *));
    out->nmsgs = n;
}

/* Converts the session table at the top of the stack into lc->out (checking
** it as any backend's answer) and keeps the messages of lc->span; `hinted`:
** load was given a hint, so the table may hold part of the messages. */
static int convert_loaded(lua_State *L, load_call *lc, int hinted) {
    static const as_span none = { AS_SPAN_TAIL, 0 };
    call *c = &lc->c;
    as_session *out = lc->out;
    size_t n, i, base, total, first, count;
    as_error why;
    as_error_clear(&why);
    /* the whole session is encoded, also for its metadata alone: its size is
    ** what the texts of its messages and state come to */
    c->st = lbind_to_stored_session(L, -1, out, &c->cs->buf, 0, &why);
    n = out->nmsgs;
    if (c->st != AS_OK) {
        if (c->st != AS_ENOMEM) c->st = garbage(c, "load", &why);
        else *c->err = why;
        return 0;
    }
    if (strcmp(out->meta.id, lc->id) != 0) {
        as_error_set(&why, AS_ESTORAGE, "the session \"%.64s\" for the id asked", out->meta.id);
        return (c->st = garbage(c, "load", &why)), 0;
    }
    if (check_returned(&out->meta, &why) != AS_OK
        || loaded_part(L, lua_gettop(L), n, &base, &total, &why) != AS_OK)
        return (c->st = garbage(c, "load", &why)), 0;
    if (out->state == NULL && (out->state = as_blob_new("{}", 2)) == NULL)
        return (c->st = as_error_nomem(c->err)), 0;
    /* the size is known from a whole session only, which every write reads */
    lc->found->bytes = out->state->len;
    for (i = 0; i < n; i++) lc->found->bytes += out->msgs[i]->len + 1;
    as_span_clip(lc->span ? lc->span : &none, total, &first, &count);
    if (first < base || first > base + n || count > base + n - first || (n < total && !hinted)) {
        as_error_set(&why, AS_ESTORAGE, "messages %zu to %zu of %zu, not the %zu from %zu asked",
                     base + 1, base + n, total, count, first + 1);
        return (c->st = garbage(c, "load", &why)), 0;
    }
    lc->found->total = total;
    lc->found->first = first;
    keep_messages(out, base, first, count);
    if (lc->span == NULL) {
        as_free(out->msgs);
        out->msgs = NULL;
        as_blob_unref(out->state);
        out->state = NULL;
    }
    return 1;
}

/* In a write transaction, notes the table at the top of the stack for the
** write (see the top of this file); `partial`: it holds no message. */
static void note_loaded(lua_State *L, load_call *lc, int partial) {
    if (!lc->c.cs->write) return;
    lua_pushvalue(L, -1);
    lc->found->note = (int64_t)luaL_ref(L, LUA_REGISTRYINDEX) * 2 + (partial ? 1 : 0);
}

static int step_load(lua_State *L) {
    static const as_span none = { AS_SPAN_TAIL, 0 };
    load_call *lc = lua_touserdata(L, 1);
    custom_store *cs = lc->c.cs;
    const as_span *hint = NULL;
    /* a write that needs only the metadata of a session whose size this
    ** manager noted asks for no message (known_size checks the size is that);
    ** a read asks for the messages it needs; other writes read everything */
    if (cs->write && lc->span == NULL && size_noted(L, cs, lc->id)) hint = &none;
    else if (!cs->write && lc->span) hint = lc->span;
    if (!ask_load(L, &lc->c, lc->id, hint)) return 0;
    if (hint == &none) {
        if (known_size(L, lc)) {
            note_loaded(L, lc, 1);
            return 0;
        }
        /* changed since this manager wrote it: read it whole to size it */
        lua_pop(L, 1);
        hint = NULL;
        if (!ask_load(L, &lc->c, lc->id, NULL)) return 0;
    }
    if (convert_loaded(L, lc, hint != NULL)) note_loaded(L, lc, 0);
    return 0;
}

static as_status cu_load(as_store *st, const char *id, const as_span *span, as_session *out,
                         as_stored *found, as_error *err) {
    custom_store *cs = (custom_store *)st;
    load_call lc;
    memset(&lc, 0, sizeof lc);
    memset(out, 0, sizeof *out);
    memset(found, 0, sizeof *found);
    lc.c.err = err;
    lc.id = id;
    lc.span = span;
    lc.out = out;
    lc.found = found;
    if (cu_run(cs, step_load, &lc.c) != AS_OK) as_session_clear(out);
    return lc.c.st;
}

static void cu_release(as_store *st, as_stored *found) {
    custom_store *cs = (custom_store *)st;
    if (found->note != 0) luaL_unref(cs->L, LUA_REGISTRYINDEX, (int)(found->note >> 1));
    found->note = 0;
}

/* ---------------------------------------------------------------- write: one path each */

static as_status push_decoded(lua_State *L, call *c, const as_blob *b) {
    as_error why;
    as_error_clear(&why);
    if (lbind_decode(L, b->text, b->len, NULL, c->cs->big, &why) == AS_OK) return AS_OK;
    *c->err = why;
    return why.status;
}

/* Pushes an array of the decoded texts. */
static as_status push_messages(lua_State *L, call *c, as_blob *const *msgs, size_t n) {
    size_t i;
    lua_createtable(L, n < 100000 ? (int)n : 0, 0);
    for (i = 0; i < n; i++) {
        as_status st = push_decoded(L, c, msgs[i]);
        if (st != AS_OK) return st;
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    return AS_OK;
}

/* tag, untag, rename: backend.update(metadata). */
static void write_update(lua_State *L, call *c, const as_meta *meta) {
    backend_fn(L, c->cs, "update");
    lbind_push_meta(L, meta, c->cs->big);
    c->st = backend_call(L, c, "update", 1);
}

/* rewind: backend.rewind(id, keep, metadata). */
static void write_rewind(lua_State *L, call *c, const char *id, size_t keep, const as_meta *meta) {
    backend_fn(L, c->cs, "rewind");
    lua_pushstring(L, id);
    lbind_push_count(L, keep);
    lbind_push_meta(L, meta, c->cs->big);
    c->st = backend_call(L, c, "rewind", 3);
}

/* append: backend.append(id, messages, metadata). */
static void write_append(lua_State *L, call *c, const char *id, as_blob *const *msgs, size_t n,
                         const as_meta *meta) {
    backend_fn(L, c->cs, "append");
    lua_pushstring(L, id);
    if ((c->st = push_messages(L, c, msgs, n)) != AS_OK) return;
    lbind_push_meta(L, meta, c->cs->big);
    c->st = backend_call(L, c, "append", 3);
}

/* fork: backend.fork(source_id, metadata, count). */
static void write_fork(lua_State *L, call *c, const char *from, const as_meta *meta, size_t n) {
    backend_fn(L, c->cs, "fork");
    lua_pushstring(L, from);
    lbind_push_meta(L, meta, c->cs->big);
    lbind_push_count(L, n);
    c->st = backend_call(L, c, "fork", 3);
}

/* ---------------------------------------------------------------- write: op ids */

/* Pushes the op_ids array of the stored session at idx (a new empty one when
** it has none); 0 with c->st set when it is not an array of strings. */
static int push_stored_op_ids(lua_State *L, call *c, int idx) {
    lua_Integer n, i;
    int t = lbind_rawfield(L, idx, "op_ids");
    as_error why;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 0);
        return 1;
    }
    if (t == LUA_TTABLE && (n = lbind_array_len(L, -1)) >= 0) {
        for (i = 1; i <= n; i++) {
            t = lua_rawgeti(L, -1, i);
            lua_pop(L, 1);
            if (t != LUA_TSTRING) break;
        }
        if (i > n) return 1;
    }
    as_error_set(&why, AS_ESTORAGE, "must be an array of strings");
    as_error_prefix(&why, "op_ids");
    c->st = garbage(c, "load", &why);
    return 0;
}

/* Pushes the op ids a write leaves the session: those of the stored session
** at `session` (0: none), and op_id (NULL: none) as the newest, the oldest
** dropped past AS_OP_IDS_KEPT. 0 with c->st set when the stored ones are garbage. */
static int push_op_ids(lua_State *L, call *c, int session, const char *op_id) {
    lua_Integer n = 0, from, i, k = 0;
    int old = 0;
    if (session) {
        if (!push_stored_op_ids(L, c, session)) return 0;
        old = lua_gettop(L);
        n = (lua_Integer)lua_rawlen(L, old);
    }
    from = n - (AS_OP_IDS_KEPT - (op_id != NULL)) + 1;
    if (from < 1) from = 1;
    lua_createtable(L, (int)(n - from + 2), 0);
    for (i = from; i <= n; i++) {
        lua_rawgeti(L, old, i);
        lua_rawseti(L, -2, ++k);
    }
    if (op_id) {
        lua_pushstring(L, op_id);
        lua_rawseti(L, -2, ++k);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    if (old) lua_remove(L, old);
    return 1;
}

/* An append with an op_id: backend.append_op(id, messages, metadata, op_ids). */
static void write_append_op(lua_State *L, call *c, const as_write *w) {
    int session;
    lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(w->found->note >> 1));
    session = lua_gettop(L);
    backend_fn(L, c->cs, "append_op");
    lua_pushstring(L, w->meta->id);
    if ((c->st = push_messages(L, c, w->append, w->nappend)) != AS_OK) return;
    lbind_push_meta(L, w->meta, c->cs->big);
    if (!push_op_ids(L, c, session, w->op_id)) return;
    c->st = backend_call(L, c, "append_op", 4);
}

typedef struct op_call {
    call c;
    const as_stored *found;
    const char *op_id;
    int *applied;
} op_call;

static int step_op_applied(lua_State *L) {
    op_call *oc = lua_touserdata(L, 1);
    size_t len = strlen(oc->op_id), n, i;
    lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(oc->found->note >> 1));
    if (!push_stored_op_ids(L, &oc->c, lua_gettop(L))) return 0;
    n = (size_t)lua_rawlen(L, -1);
    *oc->applied = 0;
    for (i = 1; i <= n && !*oc->applied; i++) {
        size_t have;
        const char *s;
        lua_rawgeti(L, -1, (lua_Integer)i);
        s = lua_tolstring(L, -1, &have);
        *oc->applied = have == len && memcmp(s, oc->op_id, len) == 0;
        lua_pop(L, 1);
    }
    return 0;
}

static as_status cu_op_applied(as_store *st, const as_meta *old, const as_stored *found,
                               const char *op_id, int *applied, as_error *err) {
    op_call oc;
    (void)old;
    memset(&oc, 0, sizeof oc);
    oc.c.err = err;
    oc.found = found;
    oc.op_id = op_id;
    oc.applied = applied;
    return cu_run((custom_store *)st, step_op_applied, &oc.c);
}

/* Loads the session `id` whole for the write under way and pushes its
** table; 0 with c->st set when it fails. The converted session is only
** checked, and freed even when a Lua error cuts the load short. */
static int load_whole(lua_State *L, call *c, const char *id) {
    static const as_span whole = { 0, AS_ALL };
    as_session tmp = { 0 };
    as_stored found;
    load_call inner;
    int rc;
    memset(&inner, 0, sizeof inner);
    memset(&found, 0, sizeof found);
    inner.c = *c;
    inner.id = id;
    inner.span = &whole;
    inner.out = &tmp;
    inner.found = &found;
    lua_pushcfunction(L, step_load);
    lua_pushlightuserdata(L, &inner);
    rc = lua_pcall(L, 1, 1, 0);
    as_session_clear(&tmp);
    if (rc != LUA_OK) lua_error(L);
    if ((c->st = inner.c.st) != AS_OK) return 0;
    /* the note is the table's reference: take the table, drop the reference */
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(found.note >> 1));
    luaL_unref(L, LUA_REGISTRYINDEX, (int)(found.note >> 1));
    return 1;
}

/* Pushes a new array of the first `n` entries of the array at idx. */
static void push_prefix(lua_State *L, int idx, size_t n) {
    size_t i;
    idx = lua_absindex(L, idx);
    lua_createtable(L, n < 100000 ? (int)n : 0, 0);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        lua_rawseti(L, -2, (lua_Integer)i);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
}

/* Every other write: backend.store(session), the whole session: the kept
** messages and the state come from the table the load of it returned. */
static void write_store(lua_State *L, call *c, const as_write *w) {
    size_t keep = w->keep, i;
    int session = 0;
    if (!w->create) {
        const as_stored *found = w->found;
        lua_rawgeti(L, LUA_REGISTRYINDEX, (int)(found->note >> 1));
        /* read without its messages, and the store needs them */
        if ((found->note & 1) && keep > 0) {
            lua_pop(L, 1);
            if (!load_whole(L, c, w->meta->id)) return;
        }
        session = lua_gettop(L);
    }
    backend_fn(L, c->cs, "store");
    lua_createtable(L, 0, 3);
    lbind_push_meta(L, w->meta, c->cs->big);
    lua_setfield(L, -2, "metadata");
    if (session && keep > 0) {
        lua_getfield(L, session, "messages");
        if (keep == AS_KEEP_ALL) keep = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
        if (lua_istable(L, -1)) push_prefix(L, -1, keep);
        else lua_createtable(L, 0, 0);
        lua_remove(L, -2);
    } else {
        keep = 0;
        lua_createtable(L, w->nappend < 100000 ? (int)w->nappend : 0, 0);
        luaL_setmetatable(L, LBIND_ARRAY_MT);
    }
    for (i = 0; i < w->nappend; i++) {
        if ((c->st = push_decoded(L, c, w->append[i])) != AS_OK) return;
        lua_rawseti(L, -2, (lua_Integer)(keep + i + 1));
    }
    lua_setfield(L, -2, "messages");
    if (w->state) {
        if ((c->st = push_decoded(L, c, w->state)) != AS_OK) return;
    } else if (session) {
        lua_getfield(L, session, "state");
    } else {
        lua_newtable(L);
    }
    lua_setfield(L, -2, "state");
    if (session || w->op_id) {
        if (!push_op_ids(L, c, session, w->op_id)) return;
        lua_setfield(L, -2, "op_ids");
    }
    c->st = backend_call(L, c, "store", 1);
}

/* Whether the backend has the optional function `name`. */
static int has(lua_State *L, custom_store *cs, const char *name) {
    int yes = backend_fn(L, cs, name) == LUA_TFUNCTION;
    lua_pop(L, 1);
    return yes;
}

/* Picks the write's path: the backend's own function for it when it has one. */
static int step_write(lua_State *L) {
    write_call *wc = lua_touserdata(L, 1);
    call *c = &wc->c;
    const as_write *w = wc->w;
    int meta_only = !w->create && w->nappend == 0 && w->state == NULL && w->op_id == NULL;
    int appends = !w->create && w->keep == AS_KEEP_ALL && w->state == NULL;
    if (meta_only && w->keep == AS_KEEP_ALL && has(L, c->cs, "update"))
        write_update(L, c, w->meta);
    else if (meta_only && w->keep != AS_KEEP_ALL && has(L, c->cs, "rewind"))
        write_rewind(L, c, w->meta->id, w->keep, w->meta);
    else if (appends && w->nappend > 0 && w->op_id == NULL && has(L, c->cs, "append"))
        write_append(L, c, w->meta->id, w->append, w->nappend, w->meta);
    else if (appends && w->op_id && has(L, c->cs, "append_op"))
        write_append_op(L, c, w);
    else if (w->create && w->from && has(L, c->cs, "fork"))
        write_fork(L, c, w->from, w->meta, w->nappend);
    else
        write_store(L, c, w);
    return 0;
}

/* ---------------------------------------------------------------- this manager's notes */

/* Notes this manager's write to (or removal of) an id: its number, for
** list's ties, and the size written, which a later write reads back. */
static int step_note(lua_State *L) {
    note_call *nc = lua_touserdata(L, 1);
    custom_store *cs = nc->c.cs;
    const as_write *w = nc->w;
    /* forget the old size first: if noting the new one fails, none is known */
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->sizes);
    lua_pushnil(L);
    lua_setfield(L, -2, nc->id);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->order);
    lua_pushstring(L, nc->id);
    if (w != NULL) lua_pushinteger(L, (lua_Integer)++cs->seq);
    else lua_pushnil(L);
    lua_rawset(L, -3);
    if (w != NULL) {
        lua_createtable(L, 3, 0);
        lua_pushinteger(L, (lua_Integer)w->meta->version);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, (lua_Integer)w->meta->updated_at);
        lua_rawseti(L, -2, 2);
        lua_pushinteger(L, (lua_Integer)w->bytes);
        lua_rawseti(L, -2, 3);
        lua_setfield(L, -3, nc->id);
    }
    return 0;
}

/* Best effort, once the backend has done the write: the call has succeeded
** (without memory for the note, ties just fall back to the backend's order,
** and the next write encodes the session to size it). */
static as_status note_write(custom_store *cs, const char *id, const as_write *w) {
    as_error ignored;
    note_call nc;
    memset(&nc, 0, sizeof nc);
    nc.c.err = &ignored;
    nc.id = id;
    nc.w = w;
    cu_run(cs, step_note, &nc.c);
    return AS_OK;
}

static as_status cu_write(as_store *st, const as_write *w, as_error *err) {
    custom_store *cs = (custom_store *)st;
    write_call wc;
    memset(&wc, 0, sizeof wc);
    wc.c.err = err;
    wc.w = w;
    if (cu_run(cs, step_write, &wc.c) != AS_OK) return wc.c.st;
    return note_write(cs, w->meta->id, w);
}

/* ---------------------------------------------------------------- remove */

static int step_remove(lua_State *L) {
    remove_call *rc = lua_touserdata(L, 1);
    backend_fn(L, rc->c.cs, "remove");
    lua_pushstring(L, rc->id);
    if ((rc->c.st = backend_call(L, &rc->c, "remove", 1)) != AS_OK) return 0;
    rc->c.st = lua_toboolean(L, -1) ? AS_OK : AS_ENOTFOUND;
    return 0;
}

static as_status cu_remove(as_store *st, const as_meta *old, const as_stored *found,
                           as_error *err) {
    custom_store *cs = (custom_store *)st;
    remove_call rc;
    (void)found;
    memset(&rc, 0, sizeof rc);
    rc.c.err = err;
    rc.id = old->id;
    if (cu_run(cs, step_remove, &rc.c) != AS_OK) return rc.c.st;
    return note_write(cs, old->id, NULL);
}

/* ---------------------------------------------------------------- list */

static int newer_first(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->meta.updated_at != y->meta.updated_at) return x->meta.updated_at > y->meta.updated_at ? -1 : 1;
    if (x->seq != y->seq) return x->seq > y->seq ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void push_filter(lua_State *L, const as_filter *f) {
    size_t i;
    lua_createtable(L, 0, 3);
    if (f->ntags > 0) {
        lua_createtable(L, (int)(f->ntags < 1000 ? f->ntags : 1000), 0);
        for (i = 0; i < f->ntags; i++) {
            lua_pushstring(L, f->tags[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, LBIND_ARRAY_MT);
        lua_setfield(L, -2, "tags");
    }
    if (f->agent_name) {
        lua_pushstring(L, f->agent_name);
        lua_setfield(L, -2, "agent_name");
    }
    if (f->parent_id) {
        lua_pushstring(L, f->parent_id);
        lua_setfield(L, -2, "parent_id");
    }
}

/* Calls backend.query(filter) when the filter asks and the backend has it,
** else backend.list(); leaves the array on the stack and returns the name of
** the function called, or NULL with c->st set. */
static const char *ask_list(lua_State *L, list_call *lc) {
    const as_filter *f = lc->f;
    const char *name = "list";
    int nargs = 0;
    if ((f->ntags > 0 || f->agent_name || f->parent_id) && has(L, lc->c.cs, "query")) {
        name = "query";
        backend_fn(L, lc->c.cs, name);
        push_filter(L, f);
        nargs = 1;
    } else backend_fn(L, lc->c.cs, name);
    if ((lc->c.st = backend_call(L, &lc->c, name, nargs)) != AS_OK) return NULL;
    if (!lua_istable(L, -1)) {
        as_error why;
        as_error_set(&why, AS_ESTORAGE, "a %s, not an array of metadata", luaL_typename(L, -1));
        lc->c.st = garbage(&lc->c, name, &why);
        return NULL;
    }
    return name;
}

/* The entries of the array at `list` that match the filter, each with this
** manager's last write to it, into lc->entries. */
static int gather_entries(lua_State *L, list_call *lc, int list, const char *name) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, list), i;
    int order;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lc->c.cs->order);
    order = lua_gettop(L);
    if (n > 0 && ((size_t)n > SIZE_MAX / sizeof(entry)
                  || (lc->entries = as_calloc((size_t)n, sizeof(entry))) == NULL))
        return (lc->c.st = as_error_nomem(lc->c.err)), 0;
    for (i = 1; i <= n; i++) {
        /* counted before it is filled, so that whatever it holds is freed
        ** even if a Lua error cuts its conversion short */
        entry *e = &lc->entries[lc->nentries++];
        as_error why;
        as_error_clear(&why);
        lua_rawgeti(L, list, i);
        if ((lc->c.st = lbind_to_meta(L, -1, &e->meta, &why)) != AS_OK
            || (lc->c.st = check_returned(&e->meta, &why)) != AS_OK) {
            char where[32];
            if (lc->c.st == AS_ENOMEM) return (*lc->c.err = why), 0;
            snprintf(where, sizeof where, "[%lld]", (long long)i);
            as_error_prefix(&why, where);
            as_error_set(lc->c.err, AS_ESTORAGE, "custom store: backend.%s returned an entry "
                         "that is not metadata: %.200s: %.200s", name, why.path, why.message);
            lc->c.st = AS_ESTORAGE;
            return 0;
        }
        lua_pop(L, 1);
        if (!as_meta_matches(&e->meta, lc->f)) {
            as_meta_clear(&e->meta);
            lc->nentries--;
            continue;
        }
        lua_pushstring(L, e->meta.id);
        e->seq = lua_rawget(L, order) == LUA_TNUMBER ? (int64_t)lua_tointeger(L, -1) : 0;
        lua_pop(L, 1);
        e->index = (size_t)i;
    }
    return 1;
}

/* Sorts the entries in list order and puts the page of the filter into
** lc->out; an id the backend gave twice counts once, the newest. */
static void page_entries(lua_State *L, list_call *lc) {
    size_t skip = lc->f->offset, k;
    int seen;
    if (lc->nentries > 1) qsort(lc->entries, lc->nentries, sizeof(entry), newer_first);
    lua_newtable(L);
    seen = lua_gettop(L);
    for (k = 0; k < lc->nentries && lc->out->n < lc->f->limit; k++) {
        lua_pushstring(L, lc->entries[k].meta.id);
        if (lua_rawget(L, seen) != LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        lua_pushstring(L, lc->entries[k].meta.id);
        lua_pushboolean(L, 1);
        lua_rawset(L, seen);
        if (skip > 0) {
            skip--;
            continue;
        }
        if ((lc->c.st = as_meta_list_push(lc->out, &lc->entries[k].meta, lc->c.err)) != AS_OK)
            return;
    }
}

static int step_list(lua_State *L) {
    list_call *lc = lua_touserdata(L, 1);
    const char *name = ask_list(L, lc);
    if (name && gather_entries(L, lc, lua_gettop(L), name)) page_entries(L, lc);
    return 0;
}

static as_status cu_list(as_store *st, const as_filter *f, as_meta_list *out, as_error *err) {
    custom_store *cs = (custom_store *)st;
    list_call lc;
    size_t i;
    memset(&lc, 0, sizeof lc);
    lc.c.err = err;
    lc.f = f;
    lc.out = out;
    cu_run(cs, step_list, &lc.c);
    for (i = 0; i < lc.nentries; i++) as_meta_clear(&lc.entries[i].meta);
    as_free(lc.entries);
    if (lc.c.st != AS_OK) as_meta_list_clear(out);
    return lc.c.st;
}

/* ---------------------------------------------------------------- search */

typedef struct search_call {
    list_call l;
    const as_query *q;
} search_call;

/* backend.search(words, filter): the metadata of the sessions whose texts may
** hold every word; gathered and ordered as list's, for the manager to check. */
static int step_search(lua_State *L) {
    search_call *sc = lua_touserdata(L, 1);
    list_call *lc = &sc->l;
    size_t i;
    backend_fn(L, lc->c.cs, "search");
    lua_createtable(L, (int)sc->q->nkeys, 0);
    for (i = 0; i < sc->q->nkeys; i++) {
        lua_pushstring(L, sc->q->keys[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    push_filter(L, lc->f);
    if ((lc->c.st = backend_call(L, &lc->c, "search", 2)) != AS_OK) return 0;
    if (!lua_istable(L, -1)) {
        as_error why;
        as_error_set(&why, AS_ESTORAGE, "a %s, not an array of metadata", luaL_typename(L, -1));
        lc->c.st = garbage(&lc->c, "search", &why);
        return 0;
    }
    if (gather_entries(L, lc, lua_gettop(L), "search")) page_entries(L, lc);
    return 0;
}

static as_status cu_search(as_store *st, const as_query *q, const as_filter *f,
                           as_candidate_list *out, as_error *err) {
    custom_store *cs = (custom_store *)st;
    as_meta_list found = { 0 };
    search_call sc;
    size_t i;
    memset(&sc, 0, sizeof sc);
    sc.l.c.err = err;
    sc.l.f = f;
    sc.l.out = &found;
    sc.q = q;
    cu_run(cs, step_search, &sc.l.c);
    for (i = 0; i < sc.l.nentries; i++) as_meta_clear(&sc.l.entries[i].meta);
    as_free(sc.l.entries);
    /* the backend has no index of messages: the manager reads each session */
    for (i = 0; sc.l.c.st == AS_OK && i < found.n; i++) {
        as_candidate c;
        memset(&c, 0, sizeof c);
        c.meta = found.items[i];
        memset(&found.items[i], 0, sizeof found.items[i]);
        c.all = 1;
        sc.l.c.st = as_candidate_list_take(out, &c, err);
    }
    as_meta_list_clear(&found);
    if (sc.l.c.st != AS_OK) as_candidate_list_clear(out);
    return sc.l.c.st;
}

/* ---------------------------------------------------------------- prune */

typedef struct prune_call {
    call c;
    const as_prune *p;
    as_id_list *out;
} prune_call;

/* backend.prune{ before, keep_tag, tags, agent_name, parent_id }: the ids it deleted. */
static int step_prune(lua_State *L) {
    prune_call *pc = lua_touserdata(L, 1);
    const as_prune *p = pc->p;
    lua_Integer n, i;
    int list;
    backend_fn(L, pc->c.cs, "prune");
    push_filter(L, &p->filter);
    lua_pushinteger(L, (lua_Integer)p->before);
    lua_setfield(L, -2, "before");
    if (p->keep_tag) {
        lua_pushstring(L, p->keep_tag);
        lua_setfield(L, -2, "keep_tag");
    }
    if ((pc->c.st = backend_call(L, &pc->c, "prune", 1)) != AS_OK) return 0;
    list = lua_gettop(L);
    if (!lua_istable(L, list) || (n = lbind_array_len(L, list)) < 0) {
        as_error why;
        as_error_set(&why, AS_ESTORAGE, "a %s, not an array of ids", luaL_typename(L, list));
        pc->c.st = garbage(&pc->c, "prune", &why);
        return 0;
    }
    for (i = 1; i <= n; i++) {
        as_error why;
        const char *id;
        size_t len;
        as_error_clear(&why);
        /* a number is not an id (lua_tolstring would make it one) */
        id = lua_rawgeti(L, list, i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (id == NULL || as_check_id(id, len, "", &why) != AS_OK || strlen(id) != len) {
            if (why.status == AS_OK) as_error_set(&why, AS_ESTORAGE, "not an id");
            as_error_prefix_index(&why, (size_t)i);
            pc->c.st = garbage(&pc->c, "prune", &why);
            return 0;
        }
        if ((pc->c.st = as_id_list_push(pc->out, id, pc->c.err)) != AS_OK) return 0;
        lua_pop(L, 1);
    }
    return 0;
}

static as_status cu_prune(as_store *st, const as_prune *p, as_id_list *out, as_error *err) {
    custom_store *cs = (custom_store *)st;
    prune_call pc;
    size_t i;
    memset(&pc, 0, sizeof pc);
    pc.c.err = err;
    pc.p = p;
    pc.out = out;
    cu_run(cs, step_prune, &pc.c);
    if (pc.c.st != AS_OK) {
        as_id_list_clear(out);
        return pc.c.st;
    }
    for (i = 0; i < out->n; i++) note_write(cs, out->ids[i], NULL);
    return AS_OK;
}

/* ---------------------------------------------------------------- transactions and closing */

static as_status cu_begin(as_store *st, int write, as_error *err) {
    (void)err;
    ((custom_store *)st)->write = write;
    return AS_OK;
}

static int step_close(lua_State *L) {
    call *c = lua_touserdata(L, 1);
    custom_store *cs = c->cs;
    /* no backend when the constructor ran out of memory taking its reference */
    if (cs->backend != LUA_NOREF && backend_fn(L, cs, "close") == LUA_TFUNCTION)
        lua_pcall(L, 0, 0, 0);
    luaL_unref(L, LUA_REGISTRYINDEX, cs->backend);
    luaL_unref(L, LUA_REGISTRYINDEX, cs->order);
    luaL_unref(L, LUA_REGISTRYINDEX, cs->sizes);
    cs->backend = cs->order = cs->sizes = LUA_NOREF;
    return 0;
}

static void cu_close(as_store *st) {
    custom_store *cs = (custom_store *)st;
    as_error ignored;
    call c;
    memset(&c, 0, sizeof c);
    c.err = &ignored;
    if (cs->L) cu_run(cs, step_close, &c);
    as_buf_free(&cs->buf);
    as_free(cs);
}

static const as_store_ops custom_ops = {
    .kind = "custom",
    .begin = cu_begin,
    .load = cu_load,
    .write = cu_write,
    .remove = cu_remove,
    .release = cu_release,
    .list = cu_list,
    .close = cu_close,
    .canonical = 0,
    .op_applied = cu_op_applied,
    .prune_batch = 1,
};

/* ---------------------------------------------------------------- the constructor */

/* Before each method: learns the calling thread; refuses a backend calling
** its own manager. */
static int cu_enter(void *store, lua_State *L) {
    custom_store *cs = store;
    if (cs->busy) return 1;
    cs->L = L;
    return 0;
}

static void check_backend(lua_State *L) {
    static const char *const required[] = { "load", "store", "remove", "list", NULL };
    static const char *const optional[] = { "query", "update", "rewind", "fork", "append",
                                            "append_op", "search", "prune", "close", NULL };
    int i;
    luaL_checktype(L, 1, LUA_TTABLE);
    for (i = 0; required[i]; i++) {
        int t = lbind_rawfield(L, 1, required[i]);
        if (t != LUA_TFUNCTION)
            lbind_errorf(L, AS_EINVALID, NULL, "backend.%s: must be a function (got %s)",
                         required[i], lua_typename(L, t));
        lua_pop(L, 1);
    }
    for (i = 0; optional[i]; i++) {
        int t = lbind_rawfield(L, 1, optional[i]);
        if (t != LUA_TFUNCTION && t != LUA_TNIL)
            lbind_errorf(L, AS_EINVALID, NULL, "backend.%s: must be a function or nil (got %s)",
                         optional[i], lua_typename(L, t));
        lua_pop(L, 1);
    }
}

/***
@module agentsession
*/

/***
A manager over a store written in Lua, with every rule of the other managers.
@function custom
@within Managers
@tparam table backend the functions `load`, `store`, `remove` and `list`, and optionally
 `query`, `update`, `rewind`, `fork`, `append`, `append_op`, `search`, `prune` and `close`
@tparam[opt] table opts `{ max_session_bytes = n }`
@treturn SessionManager the manager
@raise `invalid` for a backend without its functions or a bad option
*/
int lbind_new_custom(lua_State *L) {
    static const char *const names[] = { "max_session_bytes", "big_integers", NULL };
    lbind_opts opts;
    custom_store *cs;
    check_backend(L);
    lbind_manager_opts(L, 2, names, &opts);
    lbind_manager_new(L);
    if ((cs = as_calloc(1, sizeof *cs)) == NULL) {
        as_error err;
        return lbind_error(L, (as_error_nomem(&err), &err));
    }
    cs->ops = custom_ops;
    cs->base.ops = &cs->ops;
    cs->backend = cs->order = cs->sizes = LUA_NOREF;
    cs->big = opts.big;
    /* from here the manager owns the store and closes it, also on error */
    lbind_manager_start(L, &cs->base, &opts);
    lbind_manager_set_enter(L, -1, cu_enter, cs);
    if (lbind_rawfield(L, 1, "search") == LUA_TFUNCTION) cs->ops.search = cu_search;
    if (lbind_rawfield(L, 1, "prune") == LUA_TFUNCTION) cs->ops.prune = cu_prune;
    lua_pop(L, 2);
    cs->L = L;
    lua_pushvalue(L, 1);
    cs->backend = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    cs->order = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    cs->sizes = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}
