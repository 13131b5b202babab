/*
** Session tables to core sessions and back.
**
** A session table is checked field by field, every message and the state are
** encoded to JSON blobs, and the result is a core session held by the caller's
** call record. Nothing in the caller's table is changed.
*/
#include <stdio.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_alloc.h"
#include "../core/as_json.h"

static as_status invalid(as_error *err, const char *path, const char *fmt, const char *detail) {
    as_error_set(err, AS_EINVALID, fmt, detail);
    as_error_prefix(err, path);
    return AS_EINVALID;
}

/* A string field copied for the core; NUL bytes are control characters. */
static as_status text_field(lua_State *L, int idx, const char *path, int optional, char **out,
                            as_error *err) {
    size_t len;
    const char *s;
    int t = lua_type(L, idx);
    if (t == LUA_TNIL) {
        if (optional) return AS_OK;
        return invalid(err, path, "%s", "required (a string)");
    }
    if (t != LUA_TSTRING)
        return invalid(err, path, optional ? "must be a string or nil (got %s)" : "must be a string (got %s)",
                       lua_typename(L, t));
    s = lua_tolstring(L, idx, &len);
    if (memchr(s, '\0', len) != NULL) return invalid(err, path, "%s", "control character (NUL) in string");
    if ((*out = as_strndup(s, len)) == NULL) return as_error_nomem(err);
    return AS_OK;
}

#if !LBIND_INTEGERS
/* The decimal text big_integers = "string" gives for an integer (digits, no
** leading zero, an optional '-') into *out; 0 when s is not such a text of a
** 64-bit integer. */
static int decimal_text(const char *s, size_t len, lua_Integer *out) {
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0, limit;
    if (len > 0 && s[0] == '-') neg = 1, i = 1;
    if (i == len || (s[i] == '0' && len - i > 1)) return 0;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        unsigned digit = (unsigned)(s[i] - '0');
        if (digit > 9 || v > (limit - digit) / 10) return 0;
        v = v * 10 + digit;
    }
    *out = neg ? (lua_Integer)(0 - v) : (lua_Integer)v;
    return 1;
}
#endif

/* A whole number in [0, max] (integral floats accepted; where numbers are
** doubles, also the decimal text big_integers = "string" reads a larger one
** as, so that such a session saves back unchanged); nil leaves *out. */
static as_status count_field(lua_State *L, int idx, const char *path, lua_Integer max,
                             lua_Integer *out, as_error *err) {
    int isint;
    lua_Integer v;
    int t = lua_type(L, idx);
    if (t == LUA_TNIL) return AS_OK;
#if LBIND_INTEGERS
    if (t != LUA_TNUMBER) return invalid(err, path, "must be an integer (got %s)", lua_typename(L, t));
    v = lua_tointegerx(L, idx, &isint);
#else
    if (t == LUA_TSTRING) {
        size_t len;
        const char *text = lua_tolstring(L, idx, &len);
        if (!decimal_text(text, len, &v))
            return invalid(err, path, "%s", "must be an integer (got a string that is not one)");
        isint = 1;
    } else if (t == LUA_TNUMBER) {
        double d = (double)lua_tonumber(L, idx);
        /* exactly a 64-bit integer: [-2^63, 2^63) and integral */
        isint = d >= -9223372036854775808.0 && d < 9223372036854775808.0 && (double)(int64_t)d == d;
        v = isint ? (lua_Integer)d : 0;
    } else {
        return invalid(err, path, "must be an integer (got %s)", lua_typename(L, t));
    }
#endif
    if (!isint) return invalid(err, path, "%s", "must be a whole number");
    if (v < 0 || v > max) {
        as_error_set(err, AS_EINVALID, "must be between 0 and %lld (got %lld)", (long long)max, (long long)v);
        as_error_prefix(err, path);
        return AS_EINVALID;
    }
    *out = v;
    return AS_OK;
}

static as_status tags_field(lua_State *L, int idx, as_meta *m, as_error *err) {
    lua_Integer n, i;
    idx = lua_absindex(L, idx);
    if (lua_isnil(L, idx)) return AS_OK;
    if (!lua_istable(L, idx) || (n = lbind_array_len(L, idx)) < 0)
        return invalid(err, "metadata.tags", "%s", "must be an array of strings");
    if (n == 0) return AS_OK;
    if ((size_t)n > SIZE_MAX / sizeof(char *) || (m->tags = as_calloc((size_t)n, sizeof(char *))) == NULL)
        return as_error_nomem(err);
    for (i = 1; i <= n; i++) {
        char path[48];
        as_status st;
        snprintf(path, sizeof path, "metadata.tags[%lld]", (long long)i);
        lua_rawgeti(L, idx, i);
        st = text_field(L, -1, path, 0, &m->tags[i - 1], err);
        lua_pop(L, 1);
        if (st != AS_OK) return st;
        m->ntags = (size_t)i;
    }
    return AS_OK;
}

static const char *const meta_fields[] = {
    "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count",
    "total_tokens", "version", "parent_id", NULL
};

static int field_index(lua_State *L, int key, const char *const *names) {
    int i;
    if (lua_type(L, key) != LUA_TSTRING) return -1;
    for (i = 0; names[i]; i++)
        if (strcmp(lua_tostring(L, key), names[i]) == 0) return i;
    return -1;
}

/* Refuses keys that are not fields, naming the first one found. */
static as_status known_fields(lua_State *L, int idx, const char *const *names, const char *where,
                              as_error *err) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (field_index(L, -1, names) < 0) {
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t len;
                const char *k = lua_tolstring(L, -1, &len);
                as_error_set(err, AS_EINVALID, "unknown field");
                as_error_prefix_key(err, k, len);
                if (where[0]) as_error_prefix(err, where);
                else if (err->path[0] == '.') memmove(err->path, err->path + 1, strlen(err->path));
            } else {
                as_error_set(err, AS_EINVALID, "a key of type %s is not a field", luaL_typename(L, -1));
                if (where[0]) as_error_prefix(err, where);
            }
            lua_pop(L, 1);
            return AS_EINVALID;
        }
    }
    return AS_OK;
}

static as_status to_meta(lua_State *L, int idx, as_meta *m, as_error *err) {
    lua_Integer v;
    as_status st;
    if ((st = known_fields(L, idx, meta_fields, "metadata", err)) != AS_OK) return st;
#define FIELD(name) lbind_rawfield(L, idx, name)
#define DONE(expr) do { st = (expr); lua_pop(L, 1); if (st != AS_OK) return st; } while (0)
    FIELD("id");
    DONE(text_field(L, -1, "metadata.id", 0, &m->id, err));
    FIELD("name");
    DONE(text_field(L, -1, "metadata.name", 1, &m->name, err));
    FIELD("agent_name");
    DONE(text_field(L, -1, "metadata.agent_name", 0, &m->agent_name, err));
    FIELD("parent_id");
    DONE(text_field(L, -1, "metadata.parent_id", 1, &m->parent_id, err));
    FIELD("tags");
    DONE(tags_field(L, -1, m, err));
    v = 0;
    FIELD("created_at");
    DONE(count_field(L, -1, "metadata.created_at", LUA_MAXINTEGER, &v, err));
    m->created_at = (int64_t)v;
    v = 0;
    FIELD("updated_at");
    DONE(count_field(L, -1, "metadata.updated_at", LUA_MAXINTEGER, &v, err));
    m->updated_at = (int64_t)v;
    v = 0;
    FIELD("turn_count");
    DONE(count_field(L, -1, "metadata.turn_count", (lua_Integer)AS_TURN_COUNT_MAX, &v, err));
    m->turn_count = (uint32_t)v;
    v = 0;
    FIELD("total_tokens");
    DONE(count_field(L, -1, "metadata.total_tokens", LUA_MAXINTEGER, &v, err));
    m->total_tokens = (uint64_t)v;
    v = 0;
    FIELD("version");
    DONE(count_field(L, -1, "metadata.version", LUA_MAXINTEGER, &v, err));
    m->version = (int64_t)v;
#undef FIELD
#undef DONE
    return AS_OK;
}

static as_status to_messages(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                             as_error *err) {
    lua_Integer n, i;
    if (lua_isnil(L, idx)) return AS_OK;
    if (!lua_istable(L, idx) || (n = lbind_array_len(L, idx)) < 0)
        return invalid(err, "messages", "%s", "must be an array");
    if (n == 0) return AS_OK;
    if ((size_t)n > SIZE_MAX / sizeof(as_blob *)
        || (s->msgs = as_calloc((size_t)n, sizeof(as_blob *))) == NULL)
        return as_error_nomem(err);
    for (i = 1; i <= n; i++) {
        as_status st;
        lua_rawgeti(L, idx, i);
        b->len = 0;
        st = lbind_encode(L, -1, b, NULL, sorted, err);
        lua_pop(L, 1);
        if (st != AS_OK) {
            as_error_prefix_index(err, (size_t)i);
            as_error_prefix(err, "messages");
            return st;
        }
        if ((s->msgs[i - 1] = as_blob_from_buf(b)) == NULL) return as_error_nomem(err);
        s->nmsgs = (size_t)i;
    }
    return AS_OK;
}

/* `window` marks a session loaded in part (see m_save and lcustom.c). */
static const char *const session_fields[] = { "metadata", "messages", "state", "window", NULL };
/* A session a custom store's backend returns may also carry its op ids (lcustom.c). */
static const char *const stored_fields[] = { "metadata", "messages", "state", "window", "op_ids",
                                             NULL };

as_status lbind_to_messages(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                            as_error *err) {
    if (lua_isnil(L, idx)) return invalid(err, "messages", "%s", "must be an array");
    return to_messages(L, lua_absindex(L, idx), s, b, sorted, err);
}

/* The fields of the session table at idx (an absolute index), which may be
** those named, and its metadata. */
static as_status session_meta(lua_State *L, int idx, const char *const *fields, as_meta *m,
                              as_error *err) {
    as_status st;
    if ((st = known_fields(L, idx, fields, "", err)) != AS_OK) return st;
    lbind_rawfield(L, idx, "metadata");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return invalid(err, "metadata", "%s", "must be a table");
    }
    st = to_meta(L, lua_gettop(L), m, err);
    lua_pop(L, 1);
    return st;
}

as_status lbind_to_session_meta(lua_State *L, int idx, as_meta *m, as_error *err) {
    return session_meta(L, lua_absindex(L, idx), stored_fields, m, err);
}

static as_status to_session(lua_State *L, int idx, const char *const *fields, as_session *s,
                            as_buf *b, int sorted, as_error *err) {
    as_status st;
    idx = lua_absindex(L, idx);
    if ((st = session_meta(L, idx, fields, &s->meta, err)) != AS_OK) return st;
    lbind_rawfield(L, idx, "messages");
    st = to_messages(L, lua_gettop(L), s, b, sorted, err);
    lua_pop(L, 1);
    if (st != AS_OK) return st;
    lbind_rawfield(L, idx, "state");
    if (!lua_isnil(L, -1)) {
        b->len = 0;
        st = lbind_encode(L, -1, b, "state", sorted, err);
        if (st == AS_OK && (s->state = as_blob_from_buf(b)) == NULL) st = as_error_nomem(err);
    }
    lua_pop(L, 1);
    return st;
}

as_status lbind_to_session(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                           as_error *err) {
    return to_session(L, idx, session_fields, s, b, sorted, err);
}

as_status lbind_to_stored_session(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                                  as_error *err) {
    return to_session(L, idx, stored_fields, s, b, sorted, err);
}

as_status lbind_to_meta(lua_State *L, int idx, as_meta *m, as_error *err) {
    if (!lua_istable(L, idx)) return invalid(err, "metadata", "%s", "must be a table");
    return to_meta(L, lua_absindex(L, idx), m, err);
}

/* ---------------------------------------------------------------- to Lua */

/* A C string as a Lua string: with its length given, Lua skips its cache of
** C strings, which metadata values (new each time) would only miss. */
static void push_text(lua_State *L, const char *s) {
    lua_pushlstring(L, s, strlen(s));
}

void lbind_push_tags(lua_State *L, const as_meta *m) {
    size_t i;
    lua_createtable(L, (int)(m->ntags < 1000 ? m->ntags : 1000), 0);
    for (i = 0; i < m->ntags; i++) {
        push_text(L, m->tags[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
}

/* Sets t[name] (t at the top) to an integer of metadata, as `big` says. */
static void meta_int(lua_State *L, const char *name, int64_t v, int big) {
    as_error err;
    as_error_clear(&err);
    if (lbind_push_int64(L, v, big, &err) != 0) {
        char path[32];
        snprintf(path, sizeof path, "metadata.%s", name);
        as_error_prefix(&err, path);
        lbind_error(L, &err);
    }
    lua_setfield(L, -2, name);
}

void lbind_push_meta(lua_State *L, const as_meta *m, int big) {
    lua_createtable(L, 0, 10);
    push_text(L, m->id);
    lua_setfield(L, -2, "id");
    if (m->name) {
        push_text(L, m->name);
        lua_setfield(L, -2, "name");
    }
    lbind_push_tags(L, m);
    lua_setfield(L, -2, "tags");
    push_text(L, m->agent_name ? m->agent_name : "");
    lua_setfield(L, -2, "agent_name");
    meta_int(L, "created_at", m->created_at, big);
    meta_int(L, "updated_at", m->updated_at, big);
    meta_int(L, "turn_count", (int64_t)m->turn_count, big);
    meta_int(L, "total_tokens", (int64_t)m->total_tokens, big);
    meta_int(L, "version", m->version, big);
    if (m->parent_id) {
        push_text(L, m->parent_id);
        lua_setfield(L, -2, "parent_id");
    }
}

static void push_stored(lua_State *L, const as_blob *blob, const char *root, size_t index,
                        const char *id, const char *where, int big) {
    as_error err;
    as_error_clear(&err);
    if (lbind_decode(L, blob->text, blob->len, NULL, big, &err) == AS_OK) return;
    if (index) as_error_prefix_index(&err, index);
    as_error_prefix(&err, root);
    {
        /* a value that is JSON was refused (an integer beyond 2^53 the option
        ** refuses): that is the caller's choice, not damage */
        as_error valid;
        as_error_clear(&valid);
        if (as_json_validate(blob->text, blob->len, lbind_scratch(L), NULL, &valid) == AS_OK) {
            as_error_set_id(&err, id);
            lbind_error(L, &err);
        }
    }
    {
        as_error damaged = err;
        if (where)
            as_error_set(&damaged, AS_ESTORAGE, "stored value in %s is damaged (%s)", where,
                         err.message);
        else as_error_set(&damaged, AS_ESTORAGE, "stored value is damaged (%s)", err.message);
        memcpy(damaged.path, err.path, sizeof damaged.path);
        as_error_set_id(&damaged, id);
        lbind_error(L, &damaged);
    }
}

void lbind_push_session(lua_State *L, const as_session *s, const char *where, int big) {
    size_t i;
    lua_createtable(L, 0, 3);
    lbind_push_meta(L, &s->meta, big);
    lua_setfield(L, -2, "metadata");
    lua_createtable(L, s->nmsgs < INT32_MAX ? (int)s->nmsgs : 0, 0);
    for (i = 0; i < s->nmsgs; i++) {
        push_stored(L, s->msgs[i], "messages", i + 1, s->meta.id, where, big);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    lua_setfield(L, -2, "messages");
    if (s->state) push_stored(L, s->state, "state", 0, s->meta.id, where, big);
    else lua_newtable(L);
    lua_setfield(L, -2, "state");
}
