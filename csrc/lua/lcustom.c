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
**   close()                                       (optional)
**
** A hint, { last = n } or { from = i [, count = n] }, says which messages the
** caller needs: a backend may return only some of them, saying which in the
** session's field window = { first = k, total = t } (its messages are the
** stored ones from index k on, of t stored); a session without `window` is
** the whole of it, and this store picks the messages asked for.
**
** This file is a store like the others, behind the store interface: the
** manager keeps every rule of the contract and this store keeps what it is
** told, by calling the backend. Every call into Lua runs under lua_pcall, so
** an error raised by a backend (or a Lua memory error) never jumps over the
** manager's C frames; it becomes a storage error carrying the backend's
** message, or, when the backend raised an agentsession error, that error.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_alloc.h"
#include "../core/as_manager.h"

typedef struct custom_store {
    as_store base;
    lua_State *L;      /* the thread of the method under way */
    int backend;       /* registry references */
    int order;         /* id -> number of this manager's last write to it */
    int sizes;         /* id -> { version, updated_at, bytes } after that write */
    int loaded;        /* the session table loaded in this transaction, or LUA_NOREF */
    char *loaded_id;   /* its id; NULL when nothing was loaded */
    int loaded_found;  /* 0: load said there is no such session */
    int loaded_partial;  /* it was read without its messages (see known_size) */
    int64_t seq;       /* writes made through this store */
    int write;         /* the transaction under way writes */
    int busy;          /* a backend function is running */
    as_buf buf;
} custom_store;

/* What a protected step works on. */
typedef struct step {
    custom_store *cs;
    as_error *err;
    as_status st;
    const char *id;
    const as_span *span; /* a load's: NULL for the metadata alone */
    int write;
    as_session *out;
    as_stored *info;
    const as_write *w;
    const as_filter *f;
    as_meta_list *list;
    /* list's gathered entries, freed by whoever runs the step */
    struct entry *entries;
    size_t nentries;
} step;

typedef struct entry {
    as_meta meta;
    int64_t seq;  /* this manager's last write to it; 0 when none */
    size_t index; /* where the backend listed it */
} entry;

static as_status fail(as_error *err, as_status st, const char *fmt, const char *a, const char *b) {
    return as_error_set(err, st, fmt, a, b);
}

/* Pushes backend[name] (raw); returns its type. */
static int backend_fn(lua_State *L, custom_store *cs, const char *name) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->backend);
    lua_pushstring(L, name);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

/* Calls backend[name] with the nargs values on the stack (the function was
** pushed below them), keeping one result. On failure fills s->err: the
** backend's own agentsession error as it is, anything else as storage. */
static as_status call(lua_State *L, step *s, const char *name, int nargs) {
    if (lua_pcall(L, nargs, 1, 0) == LUA_OK) return AS_OK;
    if (!lbind_error_get(L, -1, s->err)) {
        /* the message as tostring gives it (__tostring included); a failing
        ** __tostring is caught by the lua_pcall around the step */
        const char *msg = luaL_tolstring(L, -1, NULL);
        fail(s->err, AS_ESTORAGE, "custom store: backend.%s raised: %.400s", name, msg);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return s->err->status;
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

static as_status garbage(step *s, const char *name, const as_error *why) {
    char what[AS_ERROR_MESSAGE_MAX];
    snprintf(what, sizeof what, "%.200s%s%.300s", why->path, why->path[0] ? ": " : "",
             why->message);
    return fail(s->err, AS_ESTORAGE, "custom store: backend.%s returned %.400s", name, what);
}

static void forget_loaded(lua_State *L, custom_store *cs) {
    luaL_unref(L, LUA_REGISTRYINDEX, cs->loaded);
    cs->loaded = LUA_NOREF;
    as_free(cs->loaded_id);
    cs->loaded_id = NULL;
}

/* Pushes the table of the session loaded in this transaction. */
static int push_loaded(lua_State *L, custom_store *cs, const char *id) {
    if (cs->loaded_id == NULL || !cs->loaded_found || strcmp(cs->loaded_id, id) != 0) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->loaded);
    return 1;
}

/* ---------------------------------------------------------------- load */

/* A write reads a session's metadata and its size. When this manager wrote
** that very version of it (the same version and updated_at), the size it
** noted then is the size now, and the session table at the top of the stack
** need not be encoded: only its metadata is converted (and checked) into
** out->meta. Returns 1 then, 0 (out->meta empty) when the full load must run. */
static int known_size(lua_State *L, custom_store *cs, step *s, as_session *out) {
    as_error why;
    lua_Integer v[3];
    int i, top = lua_gettop(L);
    as_error_clear(&why);
    if (lbind_to_session_meta(L, top, &out->meta, &why) != AS_OK
        || strcmp(out->meta.id, s->id) != 0 || check_returned(&out->meta, &why) != AS_OK)
        goto no;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->sizes);
    if (lua_getfield(L, -1, s->id) != LUA_TTABLE) goto no;
    for (i = 0; i < 3; i++) {
        int isnum;
        lua_rawgeti(L, -1, i + 1);
        v[i] = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum || v[i] < 0) goto no;
    }
    if (v[0] != out->meta.version || v[1] != out->meta.updated_at) goto no;
    s->info->bytes = (size_t)v[2];
    lua_settop(L, top);
    return 1;
no:
    lua_settop(L, top);
    as_meta_clear(&out->meta);
    return 0;
}

/* Whether this manager noted the size of a write of its own to that id. */
static int size_noted(lua_State *L, custom_store *cs, const char *id) {
    int noted;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->sizes);
    noted = lua_getfield(L, -1, id) == LUA_TTABLE;
    lua_pop(L, 2);
    return noted;
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

static int step_load(lua_State *L) {
    step *s = lua_touserdata(L, 1);
    custom_store *cs = s->cs;
    as_session *out = s->out;
    const as_span *span = s->span;
    int nargs, t, hint;
    size_t n, i, base, total, first, count;
    as_error why;
    /* a write that needs only the metadata of a session whose size this
    ** manager noted asks for no message (known_size checks the size is that) */
    int hinted = s->write && span == NULL && size_noted(L, cs, s->id);
again:
    backend_fn(L, cs, "load");
    lua_pushstring(L, s->id);
    if (hinted) {
        lua_createtable(L, 0, 1);
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, "last");
        hint = 1;
    } else hint = !s->write && span != NULL && push_hint(L, span);
    nargs = 1 + hint;
    if ((s->st = call(L, s, "load", nargs)) != AS_OK) return 0;
    t = lua_type(L, -1);
    if (s->write) {
        forget_loaded(L, cs);
        if ((cs->loaded_id = as_strdup(s->id)) == NULL) return (s->st = as_error_nomem(s->err)), 0;
        cs->loaded_found = 0;
        cs->loaded_partial = 0;
    }
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        s->st = AS_ENOTFOUND;
        return 0;
    }
    if (t != LUA_TTABLE) {
        as_error_set(&why, AS_ESTORAGE, "a %s, not a session table or nil", lua_typename(L, t));
        s->st = garbage(s, "load", &why);
        return 0;
    }
    if (s->write && span == NULL) {
        if (known_size(L, cs, s, out)) {
            lua_pushvalue(L, -1);
            cs->loaded = luaL_ref(L, LUA_REGISTRYINDEX);
            cs->loaded_found = 1;
            cs->loaded_partial = hinted;
            s->st = AS_OK;
            return 0;
        }
        if (hinted) {
            /* changed since this manager wrote it: read it whole to size it */
            hinted = 0;
            lua_settop(L, 1);
            goto again;
        }
    }
    as_error_clear(&why);
    /* the whole session is encoded, also for its metadata alone: its size is
    ** what the texts of its messages and state come to */
    s->st = lbind_to_session(L, -1, out, &cs->buf, 0, &why);
    n = out->nmsgs;
    if (s->st != AS_OK) {
        if (s->st != AS_ENOMEM) s->st = garbage(s, "load", &why);
        else *s->err = why;
        return 0;
    }
    if (strcmp(out->meta.id, s->id) != 0) {
        as_error_set(&why, AS_ESTORAGE, "the session \"%.64s\" for the id asked", out->meta.id);
        s->st = garbage(s, "load", &why);
        return 0;
    }
    if (check_returned(&out->meta, &why) != AS_OK
        || loaded_part(L, lua_gettop(L), n, &base, &total, &why) != AS_OK) {
        s->st = garbage(s, "load", &why);
        return 0;
    }
    if (out->state == NULL && (out->state = as_blob_new("{}", 2)) == NULL)
        return (s->st = as_error_nomem(s->err)), 0;
    /* the size is known from a whole session only, which every write reads */
    s->info->bytes = out->state->len;
    for (i = 0; i < n; i++) s->info->bytes += out->msgs[i]->len + 1;
    as_span_clip(span ? span : &(as_span){ AS_SPAN_TAIL, 0 }, total, &first, &count);
    if (first < base || first > base + n || count > base + n - first || (n < total && !hint)) {
        as_error_set(&why, AS_ESTORAGE, "messages %zu to %zu of %zu, not the %zu from %zu asked",
                     base + 1, base + n, total, count, first + 1);
        s->st = garbage(s, "load", &why);
        return 0;
    }
    s->info->total = total;
    s->info->first = first;
    if (span == NULL) {
        keep_messages(out, base, first, 0);
        as_free(out->msgs);
        out->msgs = NULL;
        as_blob_unref(out->state);
        out->state = NULL;
    } else keep_messages(out, base, first, count);
    if (s->write) {
        lua_pushvalue(L, -1);
        cs->loaded = luaL_ref(L, LUA_REGISTRYINDEX);
        cs->loaded_found = 1;
    }
    s->st = AS_OK;
    return 0;
}

/* ---------------------------------------------------------------- running a step */

/* Runs fn(s) under lua_pcall on the calling thread, restoring its stack. */
static as_status run(custom_store *cs, lua_CFunction fn, step *s) {
    lua_State *L = cs->L;
    int top = lua_gettop(L), rc;
    if (!lua_checkstack(L, 30)) return as_error_nomem(s->err);
    s->cs = cs;
    s->st = AS_OK;
    cs->busy = 1;
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, s);
    rc = lua_pcall(L, 1, 0, 0);
    cs->busy = 0;
    if (rc != LUA_OK) {
        /* a Lua error outside a backend call: out of memory, or an error
        ** object whose __tostring failed */
        if (rc == LUA_ERRMEM) s->st = as_error_nomem(s->err);
        else s->st = as_error_set(s->err, AS_ESTORAGE, "custom store: %.400s",
                                  lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                                 : "an error in Lua");
    }
    lua_settop(L, top);
    return s->st;
}

static as_status cu_load(as_store *st, const char *id, const as_span *span, as_session *out,
                         as_stored *info, as_error *err) {
    custom_store *cs = (custom_store *)st;
    step s = { 0 };
    memset(out, 0, sizeof *out);
    s.err = err;
    s.id = id;
    s.span = span;
    s.write = cs->write;
    s.out = out;
    s.info = info;
    if (run(cs, step_load, &s) != AS_OK) as_session_clear(out);
    return s.st;
}

/* ---------------------------------------------------------------- write */

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

static as_status push_decoded(lua_State *L, step *s, const as_blob *b) {
    as_error why;
    as_error_clear(&why);
    if (lbind_decode(L, b->text, b->len, NULL, &why) == AS_OK) return AS_OK;
    *s->err = why;
    return why.status;
}

/* Loads the session `id` for the write under way (span: NULL for the
** metadata, or the whole) and pushes the table loaded; 0 with s->st set when
** it fails. */
static int load_for_write(lua_State *L, step *s, const char *id, const as_span *span) {
    as_session tmp = { 0 };
    as_stored info;
    step inner = *s;
    int rc;
    inner.id = id;
    inner.span = span;
    inner.write = 1;
    inner.out = &tmp;
    inner.info = &info;
    lua_pushcfunction(L, step_load);
    lua_pushlightuserdata(L, &inner);
    rc = lua_pcall(L, 1, 0, 0);
    as_session_clear(&tmp); /* also when a Lua error cut the load short */
    if (rc != LUA_OK) lua_error(L);
    if (inner.st != AS_OK) return (s->st = inner.st), 0;
    if (!push_loaded(L, s->cs, id)) return (s->st = AS_ENOTFOUND), 0;
    return 1;
}

static int step_write(lua_State *L) {
    static const as_span whole = { 0, AS_ALL };
    step *s = lua_touserdata(L, 1);
    custom_store *cs = s->cs;
    const as_write *w = s->w;
    const char *id = w->meta->id;
    int have, session;
    size_t i, keep = w->keep;
    have = w->create ? 0 : push_loaded(L, cs, id);
    /* not loaded in this transaction: load it now */
    if (!w->create && !have && !load_for_write(L, s, id, NULL)) return 0;
    have = !w->create;
    session = lua_gettop(L); /* the loaded session, when have */
    if (!w->create && w->nappend == 0 && w->state == NULL) {
        if (keep == AS_KEEP_ALL && backend_fn(L, cs, "update") == LUA_TFUNCTION) {
            lbind_push_meta(L, w->meta);
            return (s->st = call(L, s, "update", 1)), 0;
        }
        lua_settop(L, session);
        if (keep != AS_KEEP_ALL && backend_fn(L, cs, "rewind") == LUA_TFUNCTION) {
            lua_pushstring(L, id);
            lua_pushinteger(L, (lua_Integer)keep);
            lbind_push_meta(L, w->meta);
            return (s->st = call(L, s, "rewind", 3)), 0;
        }
        lua_settop(L, session);
    }
    if (!w->create && keep == AS_KEEP_ALL && w->nappend > 0 && w->state == NULL
        && backend_fn(L, cs, "append") == LUA_TFUNCTION) {
        lua_pushstring(L, id);
        lua_createtable(L, w->nappend < 100000 ? (int)w->nappend : 0, 0);
        for (i = 0; i < w->nappend; i++) {
            if ((s->st = push_decoded(L, s, w->append[i])) != AS_OK) return 0;
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, LBIND_ARRAY_MT);
        lbind_push_meta(L, w->meta);
        return (s->st = call(L, s, "append", 3)), 0;
    }
    lua_settop(L, session);
    if (w->create && w->from && backend_fn(L, cs, "fork") == LUA_TFUNCTION) {
        lua_pushstring(L, w->from);
        lbind_push_meta(L, w->meta);
        lua_pushinteger(L, (lua_Integer)w->nappend);
        return (s->st = call(L, s, "fork", 3)), 0;
    }
    lua_settop(L, session);
    if (have && keep > 0 && cs->loaded_partial) {
        /* the session was read without its messages, and store needs them */
        lua_settop(L, session - 1);
        if (!load_for_write(L, s, id, &whole)) return 0;
        session = lua_gettop(L);
    }
    /* the whole session, for backend.store */
    backend_fn(L, cs, "store");
    lua_createtable(L, 0, 3);
    lbind_push_meta(L, w->meta);
    lua_setfield(L, -2, "metadata");
    if (have && keep > 0) {
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
        if ((s->st = push_decoded(L, s, w->append[i])) != AS_OK) return 0;
        lua_rawseti(L, -2, (lua_Integer)(keep + i + 1));
    }
    lua_setfield(L, -2, "messages");
    if (w->state) {
        if ((s->st = push_decoded(L, s, w->state)) != AS_OK) return 0;
    } else if (have) {
        lua_getfield(L, session, "state");
    } else {
        lua_newtable(L);
    }
    lua_setfield(L, -2, "state");
    s->st = call(L, s, "store", 1);
    return 0;
}

static int step_written(lua_State *L) {
    step *s = lua_touserdata(L, 1);
    custom_store *cs = s->cs;
    const as_write *w = s->w;
    /* forget the old size first: if noting the new one fails, none is known */
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->sizes);
    lua_pushnil(L);
    lua_setfield(L, -2, s->id);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->order);
    lua_pushstring(L, s->id);
    if (s->write) lua_pushinteger(L, (lua_Integer)++cs->seq);
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
        lua_setfield(L, -3, s->id);
    }
    return 0;
}

/* Notes this manager's write (or the removal) for list's ties and the size
** of what it wrote, once the backend has done it: best effort, since the call
** has succeeded (without memory for the note, ties just fall back to the
** backend's order, and the next write encodes the session to size it). */
static as_status written(custom_store *cs, const char *id, const as_write *w) {
    as_error ignored;
    step s = { 0 };
    s.err = &ignored;
    s.id = id;
    s.write = w != NULL;
    s.w = w;
    run(cs, step_written, &s);
    return AS_OK;
}

static as_status cu_write(as_store *st, const as_write *w, as_error *err) {
    custom_store *cs = (custom_store *)st;
    step s = { 0 };
    s.err = err;
    s.w = w;
    if (run(cs, step_write, &s) != AS_OK) return s.st;
    return written(cs, w->meta->id, w);
}

static int step_remove(lua_State *L) {
    step *s = lua_touserdata(L, 1);
    backend_fn(L, s->cs, "remove");
    lua_pushstring(L, s->id);
    if ((s->st = call(L, s, "remove", 1)) != AS_OK) return 0;
    s->st = lua_toboolean(L, -1) ? AS_OK : AS_ENOTFOUND;
    return 0;
}

static as_status cu_remove(as_store *st, const char *id, as_error *err) {
    custom_store *cs = (custom_store *)st;
    step s = { 0 };
    s.err = err;
    s.id = id;
    if (run(cs, step_remove, &s) != AS_OK) return s.st;
    return written(cs, id, NULL);
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

static int step_list(lua_State *L) {
    step *s = lua_touserdata(L, 1);
    custom_store *cs = s->cs;
    const as_filter *f = s->f;
    const char *name = "list";
    lua_Integer n, i;
    int list, order, seen;
    size_t skip = f->offset, k;
    if ((f->ntags > 0 || f->agent_name || f->parent_id)
        && backend_fn(L, cs, "query") == LUA_TFUNCTION) {
        name = "query";
        push_filter(L, f);
        if ((s->st = call(L, s, name, 1)) != AS_OK) return 0;
    } else {
        lua_settop(L, 1);
        backend_fn(L, cs, "list");
        if ((s->st = call(L, s, name, 0)) != AS_OK) return 0;
    }
    list = lua_gettop(L);
    if (!lua_istable(L, list)) {
        as_error why;
        as_error_set(&why, AS_ESTORAGE, "a %s, not an array of metadata", luaL_typename(L, list));
        s->st = garbage(s, name, &why);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, cs->order);
    order = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, list);
    if (n > 0 && ((size_t)n > SIZE_MAX / sizeof(entry)
                  || (s->entries = as_calloc((size_t)n, sizeof(entry))) == NULL))
        return (s->st = as_error_nomem(s->err)), 0;
    for (i = 1; i <= n; i++) {
        /* counted before it is filled, so that whatever it holds is freed
        ** even if a Lua error cuts its conversion short */
        entry *e = &s->entries[s->nentries++];
        as_error why;
        as_error_clear(&why);
        lua_rawgeti(L, list, i);
        if ((s->st = lbind_to_meta(L, -1, &e->meta, &why)) != AS_OK
            || (s->st = check_returned(&e->meta, &why)) != AS_OK) {
            char where[32];
            if (s->st == AS_ENOMEM) return (*s->err = why), 0;
            snprintf(where, sizeof where, "[%lld]", (long long)i);
            as_error_prefix(&why, where);
            as_error_set(s->err, AS_ESTORAGE, "custom store: backend.%s returned an entry that is "
                         "not metadata: %.200s: %.200s", name, why.path, why.message);
            s->st = AS_ESTORAGE;
            return 0;
        }
        lua_pop(L, 1);
        if (!as_meta_matches(&e->meta, f)) {
            as_meta_clear(&e->meta);
            s->nentries--;
            continue;
        }
        lua_pushstring(L, e->meta.id);
        e->seq = lua_rawget(L, order) == LUA_TNUMBER ? (int64_t)lua_tointeger(L, -1) : 0;
        lua_pop(L, 1);
        e->index = (size_t)i;
    }
    if (s->nentries > 1) qsort(s->entries, s->nentries, sizeof(entry), newer_first);
    lua_newtable(L); /* the ids listed so far: an id the backend gave twice counts once, the newest */
    seen = lua_gettop(L);
    for (k = 0; k < s->nentries && s->list->n < f->limit; k++) {
        lua_pushstring(L, s->entries[k].meta.id);
        if (lua_rawget(L, seen) != LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        lua_pushstring(L, s->entries[k].meta.id);
        lua_pushboolean(L, 1);
        lua_rawset(L, seen);
        if (skip > 0) {
            skip--;
            continue;
        }
        if ((s->st = as_meta_list_push(s->list, &s->entries[k].meta, s->err)) != AS_OK) return 0;
    }
    return 0;
}

static as_status cu_list(as_store *st, const as_filter *f, as_meta_list *out, as_error *err) {
    custom_store *cs = (custom_store *)st;
    step s = { 0 };
    size_t i;
    s.err = err;
    s.f = f;
    s.list = out;
    run(cs, step_list, &s);
    for (i = 0; i < s.nentries; i++) as_meta_clear(&s.entries[i].meta);
    as_free(s.entries);
    if (s.st != AS_OK) as_meta_list_clear(out);
    return s.st;
}

/* ---------------------------------------------------------------- transactions */

static int step_forget(lua_State *L) {
    step *s = lua_touserdata(L, 1);
    forget_loaded(L, s->cs);
    return 0;
}

static void end_txn(custom_store *cs) {
    as_error ignored;
    step s = { 0 };
    if (cs->loaded == LUA_NOREF && cs->loaded_id == NULL) return;
    s.err = &ignored;
    run(cs, step_forget, &s);
}

static as_status cu_begin(as_store *st, int write, as_error *err) {
    custom_store *cs = (custom_store *)st;
    (void)err;
    end_txn(cs);
    cs->write = write;
    return AS_OK;
}

static as_status cu_commit(as_store *st, as_error *err) {
    (void)err;
    end_txn((custom_store *)st);
    return AS_OK;
}

static void cu_rollback(as_store *st) {
    end_txn((custom_store *)st);
}

static int step_close(lua_State *L) {
    step *s = lua_touserdata(L, 1);
    custom_store *cs = s->cs;
    forget_loaded(L, cs);
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
    step s = { 0 };
    s.err = &ignored;
    if (cs->L) run(cs, step_close, &s);
    as_free(cs->loaded_id);
    as_buf_free(&cs->buf);
    as_free(cs);
}

static const as_store_ops custom_ops = {
    .kind = "custom",
    .begin = cu_begin,
    .commit = cu_commit,
    .rollback = cu_rollback,
    .load = cu_load,
    .write = cu_write,
    .remove = cu_remove,
    .list = cu_list,
    .close = cu_close,
    .canonical = 0,
};

/* ---------------------------------------------------------------- the constructor */

static int enter(void *store, lua_State *L) {
    custom_store *cs = store;
    if (cs->busy) return 1;
    cs->L = L;
    return 0;
}

static void check_backend(lua_State *L) {
    static const char *const required[] = { "load", "store", "remove", "list", NULL };
    static const char *const optional[] = { "query", "update", "rewind", "fork", "append",
                                            "close", NULL };
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

int lbind_new_custom(lua_State *L) {
    static const char *const names[] = { "max_session_bytes", NULL };
    as_manager_opts opts;
    custom_store *cs;
    check_backend(L);
    lbind_manager_opts(L, 2, names, &opts);
    lbind_manager_new(L);
    if ((cs = as_calloc(1, sizeof *cs)) == NULL) {
        as_error err;
        return lbind_error(L, (as_error_nomem(&err), &err));
    }
    cs->base.ops = &custom_ops;
    cs->backend = cs->order = cs->sizes = cs->loaded = LUA_NOREF;
    /* from here the manager owns the store and closes it, also on error */
    lbind_manager_start(L, &cs->base, &opts);
    lbind_manager_set_enter(L, -1, enter, cs);
    cs->L = L;
    lua_pushvalue(L, 1);
    cs->backend = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    cs->order = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    cs->sizes = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}
