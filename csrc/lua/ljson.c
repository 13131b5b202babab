/*
** Lua values to JSON text and back, through the core's writer and parser.
**
** The encoder reads tables with raw access only (no metamethod runs, so no Lua
** code runs and nothing can raise while it holds the scratch buffer). Tables
** are arrays when their metatable is array_mt or their keys are exactly 1..n,
** objects when every key is a string; anything else is refused with its path.
*/
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_json.h"

typedef struct encoder {
    lua_State *L;
    as_buf *b;
    as_error *err;
    const void *array_mt;
    int sorted; /* object keys in byte order rather than the table's order */
    int depth;
    const void *open[AS_JSON_MAX_DEPTH]; /* the tables being encoded, to find cycles */
} encoder;

static as_status refuse(encoder *E, const char *fmt, const char *detail) {
    return as_error_set(E->err, AS_EINVALID, fmt, detail);
}

static as_status encode_value(encoder *E, int idx);

/* Keys of an array must be exactly 1..n; returns n, or -1 (error set). */
static lua_Integer array_length(encoder *E, int idx, int marked) {
    lua_State *L = E->L;
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_Integer k;
        int keytype;
        lua_pop(L, 1);
        if (lua_isinteger(L, -1) && (k = lua_tointeger(L, -1)) >= 1) {
            count++;
            if (k > max) max = k;
            continue;
        }
        keytype = lua_type(L, -1);
        lua_pop(L, 1);
        refuse(E, "%s", marked ? "an array (array_mt) has a key that is not an index 1..n"
                        : keytype == LUA_TSTRING ? "a table mixes array items and string keys"
                        : "a table key is not an index 1..n or a string");
        return -1;
    }
    if (max != count) {
        refuse(E, "%s", "a sparse array (keys are not exactly 1..n)");
        return -1;
    }
    return count;
}

static as_status encode_array(encoder *E, int idx, lua_Integer n) {
    lua_State *L = E->L;
    lua_Integer i;
    as_status st;
    if (as_buf_putc(E->b, '[') != 0) return as_error_nomem(E->err);
    for (i = 1; i <= n; i++) {
        if (i > 1 && as_buf_putc(E->b, ',') != 0) return as_error_nomem(E->err);
        lua_rawgeti(L, idx, i);
        st = encode_value(E, lua_gettop(L));
        lua_pop(L, 1);
        if (st != AS_OK) {
            as_error_prefix_index(E->err, (size_t)i);
            return st;
        }
    }
    return as_buf_putc(E->b, ']') != 0 ? as_error_nomem(E->err) : AS_OK;
}

/* The object's members, starting with the key-value pair lua_next left on the stack. */
static as_status encode_object(encoder *E, int idx) {
    lua_State *L = E->L;
    int first = 1;
    if (as_buf_putc(E->b, '{') != 0) return as_error_nomem(E->err);
    do {
        size_t klen, bad;
        const char *key;
        as_status st;
        int r;
        if (lua_type(L, -2) != LUA_TSTRING)
            return refuse(E, "%s", lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1
                                       ? "a table mixes array items and string keys"
                                       : "a table key is not an index 1..n or a string");
        key = lua_tolstring(L, -2, &klen);
        if ((!first && as_buf_putc(E->b, ',') != 0)) return as_error_nomem(E->err);
        first = 0;
        r = as_json_write_string(E->b, key, klen, &bad);
        if (r < 0) return as_error_nomem(E->err);
        if (r > 0) {
            as_error_set(E->err, AS_EINVALID, "key is not valid UTF-8 (byte %zu)", bad + 1);
            as_error_prefix_key(E->err, key, klen);
            return AS_EINVALID;
        }
        if (as_buf_putc(E->b, ':') != 0) return as_error_nomem(E->err);
        st = encode_value(E, lua_gettop(L));
        if (st != AS_OK) {
            as_error_prefix_key(E->err, key, klen);
            return st;
        }
        lua_pop(L, 1);
    } while (lua_next(L, idx));
    return as_buf_putc(E->b, '}') != 0 ? as_error_nomem(E->err) : AS_OK;
}

typedef struct key {
    const char *s;
    size_t len;
} key;

static int key_cmp(const key *a, const key *b) {
    int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
    return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
}

static int key_qsort_cmp(const void *a, const void *b) {
    return key_cmp(a, b);
}

static as_status write_key(encoder *E, const char *k, size_t klen) {
    size_t bad;
    int r = as_json_write_string(E->b, k, klen, &bad);
    if (r < 0) return as_error_nomem(E->err);
    if (r > 0) {
        as_error_set(E->err, AS_EINVALID, "key is not valid UTF-8 (byte %zu)", bad + 1);
        as_error_prefix_key(E->err, k, klen);
        return AS_EINVALID;
    }
    return as_buf_putc(E->b, ':') != 0 ? as_error_nomem(E->err) : AS_OK;
}

/* The object's members in byte order of their keys, so that equal objects give
** equal text whatever order their tables were filled in. Starts with the pair
** lua_next left on the stack. The key strings stay alive in the table, which
** nothing changes while it is encoded; a large key array is a userdata, so a
** memory error raised by Lua leaks nothing. */
static as_status encode_object_sorted(encoder *E, int idx) {
    lua_State *L = E->L;
    key small[32], *keys = small;
    size_t n = 0, cap = sizeof small / sizeof *small, i;
    lua_pop(L, 1);
    for (;;) {
        if (lua_type(L, -1) != LUA_TSTRING) {
            int index = lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1;
            return refuse(E, "%s", index ? "a table mixes array items and string keys"
                                         : "a table key is not an index 1..n or a string");
        }
        if (n == cap) {
            key *grown;
            if (cap > ((size_t)-1) / 2 / sizeof(key)) return as_error_nomem(E->err);
            grown = lua_newuserdatauv(L, 2 * cap * sizeof(key), 0);
            memcpy(grown, keys, n * sizeof(key));
            /* the array lives just below the iteration key */
            if (keys == small) lua_insert(L, -2);
            else lua_replace(L, -3);
            keys = grown;
            cap *= 2;
        }
        keys[n].s = lua_tolstring(L, -1, &keys[n].len);
        n++;
        if (!lua_next(L, idx)) break;
        lua_pop(L, 1);
    }
    if (n <= 16) {
        for (i = 1; i < n; i++) {
            key k = keys[i];
            size_t j = i;
            for (; j > 0 && key_cmp(&keys[j - 1], &k) > 0; j--) keys[j] = keys[j - 1];
            keys[j] = k;
        }
    } else qsort(keys, n, sizeof(key), key_qsort_cmp);
    if (as_buf_putc(E->b, '{') != 0) return as_error_nomem(E->err);
    for (i = 0; i < n; i++) {
        as_status st;
        if (i > 0 && as_buf_putc(E->b, ',') != 0) return as_error_nomem(E->err);
        if ((st = write_key(E, keys[i].s, keys[i].len)) != AS_OK) return st;
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, idx);
        st = encode_value(E, lua_gettop(L));
        lua_pop(L, 1);
        if (st != AS_OK) {
            as_error_prefix_key(E->err, keys[i].s, keys[i].len);
            return st;
        }
    }
    return as_buf_putc(E->b, '}') != 0 ? as_error_nomem(E->err) : AS_OK;
}

static as_status encode_table(encoder *E, int idx) {
    lua_State *L = E->L;
    const void *self = lua_topointer(L, idx);
    int marked = 0, i, top = lua_gettop(L);
    as_status st;
    for (i = 0; i < E->depth; i++)
        if (E->open[i] == self) return refuse(E, "%s", "a table contains itself (a cycle)");
    if (E->depth >= AS_JSON_MAX_DEPTH) return refuse(E, "%s", "nesting deeper than 128 levels");
    if (!lua_checkstack(L, 6)) return refuse(E, "%s", "Lua stack exhausted");
    if (lua_getmetatable(L, idx)) {
        marked = lua_topointer(L, -1) == E->array_mt;
        lua_pop(L, 1);
    }
    E->open[E->depth++] = self;
    if (marked) {
        lua_Integer n = array_length(E, idx, 1);
        st = n < 0 ? AS_EINVALID : encode_array(E, idx, n);
    } else {
        lua_pushnil(L);
        if (!lua_next(L, idx)) {
            st = as_buf_puts(E->b, "{}") != 0 ? as_error_nomem(E->err) : AS_OK;
        } else if (lua_type(L, -2) == LUA_TSTRING) {
            st = E->sorted ? encode_object_sorted(E, idx) : encode_object(E, idx);
        } else {
            lua_Integer n;
            lua_pop(L, 2);
            n = array_length(E, idx, 0);
            st = n < 0 ? AS_EINVALID : encode_array(E, idx, n);
        }
    }
    E->depth--;
    lua_settop(L, top);
    return st;
}

static as_status encode_value(encoder *E, int idx) {
    lua_State *L = E->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len, bad;
        const char *s = lua_tolstring(L, idx, &len);
        int r = as_json_write_string(E->b, s, len, &bad);
        if (r < 0) return as_error_nomem(E->err);
        if (r > 0) return as_error_set(E->err, AS_EINVALID, "string is not valid UTF-8 (byte %zu)", bad + 1);
        return AS_OK;
    }
    case LUA_TNUMBER: {
        int64_t whole;
        if (lbind_whole(L, idx, &whole)) {
            if (as_json_write_integer(E->b, whole) != 0) return as_error_nomem(E->err);
        } else {
            int r = as_json_write_double(E->b, (double)lua_tonumber(L, idx));
            if (r < 0) return as_error_nomem(E->err);
            if (r > 0) return refuse(E, "%s", "NaN and infinities cannot be encoded as JSON");
        }
        return AS_OK;
    }
    case LUA_TTABLE:
        return encode_table(E, idx);
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx) ? as_buf_puts(E->b, "true") : as_buf_puts(E->b, "false"))
            return as_error_nomem(E->err);
        return AS_OK;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            if (as_buf_puts(E->b, "null") != 0) return as_error_nomem(E->err);
            return AS_OK;
        }
        return refuse(E, "%s", "a light userdata other than agentsession.null cannot be encoded as JSON");
    default:
        return refuse(E, "a %s cannot be encoded as JSON", luaL_typename(L, idx));
    }
}

as_status lbind_encode(lua_State *L, int idx, as_buf *b, const char *root, int sorted,
                       as_error *err) {
    encoder E;
    int top = lua_gettop(L);
    size_t mark = b->len;
    as_status st;
    E.L = L;
    E.b = b;
    E.err = err;
    E.sorted = sorted;
    E.depth = 0;
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, LBIND_ARRAY_MT);
    E.array_mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    st = encode_value(&E, idx);
    lua_settop(L, top);
    if (st != AS_OK) {
        b->len = mark;
        if (root) as_error_prefix(err, root);
    }
    return st;
}

/* ---------------------------------------------------------------- numbers */

/* 2^53: where numbers are doubles, every integer up to it in magnitude is exact. */
#define EXACT_MAX 9007199254740992.0

const char *const lbind_big_names[] = { "error", "float", "string", NULL };

int lbind_opt_big(lua_State *L, int tbl, const char *what) {
    return lbind_opt_enum(L, tbl, what, "big_integers", lbind_big_names, LBIND_BIG_ERROR);
}

int lbind_whole(lua_State *L, int idx, int64_t *out) {
#if LBIND_INTEGERS
    if (!lua_isinteger(L, idx)) return 0;
    *out = (int64_t)lua_tointeger(L, idx);
    return 1;
#else
    double d = (double)lua_tonumber(L, idx);
    /* -0 has no integer literal: it stays a float, "-0.0" */
    if (!(d >= -EXACT_MAX && d <= EXACT_MAX) || (double)(int64_t)d != d || (d == 0 && signbit(d))) return 0;
    *out = (int64_t)d;
    return 1;
#endif
}

#if !LBIND_INTEGERS
/* An integer beyond 2^53, of decimal text `text`, as the option `big` says. */
static int push_big(lua_State *L, const char *text, size_t len, double nearest, int big,
                    as_error *err) {
    if (big == LBIND_BIG_FLOAT) {
        lua_pushnumber(L, (lua_Number)nearest);
        return 0;
    }
    if (big == LBIND_BIG_STRING) {
        lua_pushlstring(L, text, len);
        return 0;
    }
    as_error_set(err, AS_EINVALID,
                 "the integer %.*s%s is beyond 2^53, the largest a number of %s holds exactly "
                 "(the option big_integers = \"float\" or \"string\" reads it)",
                 (int)(len > 40 ? 40 : len), text, len > 40 ? "…" : "", LBIND_BUILT_FOR);
    return 1;
}
#endif

int lbind_push_int64(lua_State *L, int64_t v, int big, as_error *err) {
#if LBIND_INTEGERS
    (void)big;
    (void)err;
    lua_pushinteger(L, (lua_Integer)v);
    return 0;
#else
    char text[24];
    int n;
    if (v >= -((int64_t)1 << 53) && v <= (int64_t)1 << 53) {
        lua_pushnumber(L, (lua_Number)v);
        return 0;
    }
    n = snprintf(text, sizeof text, "%" PRId64, v);
    return push_big(L, text, (size_t)n, (double)v, big, err);
#endif
}

/* ---------------------------------------------------------------- decoding */

typedef struct decoder {
    lua_State *L;
    int array_mt; /* stack index of array_mt */
    int big;      /* LBIND_BIG_*: integers beyond 2^53 where numbers are doubles */
    as_error *err;
} decoder;

static int d_null(void *ctx) {
    lua_pushlightuserdata(((decoder *)ctx)->L, NULL);
    return 0;
}

static int d_boolean(void *ctx, int v) {
    lua_pushboolean(((decoder *)ctx)->L, v);
    return 0;
}

static int d_integer(void *ctx, int64_t v) {
    decoder *D = ctx;
    return lbind_push_int64(D->L, v, D->big, D->err);
}

/* An integer literal beyond 64 bits: a float where Lua has integers (as the
** contract says), else an integer beyond 2^53 like any other. */
static int d_big_integer(void *ctx, const char *text, size_t len, double nearest) {
    decoder *D = ctx;
#if LBIND_INTEGERS
    (void)text;
    (void)len;
    lua_pushnumber(D->L, (lua_Number)nearest);
    return 0;
#else
    return push_big(D->L, text, len, nearest, D->big, D->err);
#endif
}

static int d_number(void *ctx, double v) {
    lua_pushnumber(((decoder *)ctx)->L, (lua_Number)v);
    return 0;
}

static int d_string(void *ctx, const char *s, size_t len) {
    lua_pushlstring(((decoder *)ctx)->L, s, len);
    return 0;
}

static int d_begin_array(void *ctx) {
    decoder *D = ctx;
    luaL_checkstack(D->L, 4, "JSON nesting");
    lua_createtable(D->L, 4, 0);
    lua_pushvalue(D->L, D->array_mt);
    lua_setmetatable(D->L, -2);
    return 0;
}

static int d_array_item(void *ctx, size_t index) {
    lua_rawseti(((decoder *)ctx)->L, -2, (lua_Integer)index);
    return 0;
}

static int d_begin_object(void *ctx) {
    decoder *D = ctx;
    luaL_checkstack(D->L, 4, "JSON nesting");
    lua_createtable(D->L, 0, 4);
    return 0;
}

static int d_object_item(void *ctx) {
    lua_rawset(((decoder *)ctx)->L, -3);
    return 0;
}

static int d_end(void *ctx) {
    (void)ctx;
    return 0;
}

static const as_json_sink lua_sink = {
    d_null, d_boolean, d_integer, d_number, d_string,
    d_begin_array, d_array_item, d_end,
    d_begin_object, d_string, d_object_item, d_end, d_big_integer
};

static as_status decode(lua_State *L, const char *text, size_t len, int flags,
                        const char *root, int big, as_error *err) {
    decoder D;
    int top = lua_gettop(L);
    as_status st;
    luaL_checkstack(L, 8, "JSON decoding");
    D.L = L;
    D.big = big;
    D.err = err;
    lua_getfield(L, LUA_REGISTRYINDEX, LBIND_ARRAY_MT);
    D.array_mt = lua_gettop(L);
    st = as_json_parse(text, len, &lua_sink, &D, lbind_scratch(L), flags, root, err);
    if (st != AS_OK) {
        lua_settop(L, top);
        return st;
    }
    lua_remove(L, D.array_mt);
    return AS_OK;
}

as_status lbind_decode(lua_State *L, const char *text, size_t len, const char *root, int big,
                       as_error *err) {
    return decode(L, text, len, 0, root, big, err);
}

as_status lbind_decode_document(lua_State *L, const char *text, size_t len, const char *root,
                                int big, as_error *err) {
    return decode(L, text, len, AS_JSON_DOCUMENT, root, big, err);
}

/* ---------------------------------------------------------------- json.* */

/* The options of json.encode: { canonical = boolean }; returns whether keys are sorted. */
static int encode_options(lua_State *L, int arg) {
    static const char *const names[] = { "canonical", NULL };
    if (lua_isnoneornil(L, arg)) return 0;
    luaL_checktype(L, arg, LUA_TTABLE);
    lbind_check_options(L, arg, "options", names);
    return lbind_opt_bool(L, arg, "options", "canonical", 0);
}

/***
@module agentsession
*/

/***
A value as JSON text, with the codec the stores use.
@function json.encode
@within JSON
@param value a JSON value: `agentsession.null`, a boolean, a number, a UTF-8 string or a table
@tparam[opt] table opts `{ canonical = true }` writes object keys in byte order at every level
@treturn string the JSON text
@raise `invalid`, naming the path, for a value that cannot round trip
*/
static int json_encode(lua_State *L) {
    as_buf *b = lbind_scratch(L);
    as_error err;
    int sorted;
    luaL_checkany(L, 1);
    sorted = encode_options(L, 2);
    if (lua_isnil(L, 1)) return lbind_errorf(L, AS_EINVALID, "value", "nil cannot be encoded as JSON (use agentsession.null)");
    as_error_clear(&err);
    b->len = 0;
    if (lbind_encode(L, 1, b, "value", sorted, &err) != AS_OK) return lbind_error(L, &err);
    lua_pushlstring(L, b->data, b->len);
    return 1;
}

/***
The value of a JSON text: integers stay integers, arrays carry `array_mt`.
@function json.decode
@within JSON
@string text the JSON text
@tparam[opt] table opts `{ big_integers = "error" | "float" | "string" }`: how an integer
 literal beyond 2^53 is read where numbers are doubles (Lua 5.1, 5.2, LuaJIT): an `invalid`
 error naming its path (the default), the nearest number, or its decimal text. On Lua 5.3
 and 5.4 it changes nothing.
@return the value
@raise `invalid`, naming the byte offset and the path, for text that is not strict JSON
*/
static int json_decode(lua_State *L) {
    static const char *const names[] = { "big_integers", NULL };
    size_t len;
    const char *text;
    as_error err;
    int big = LBIND_BIG_ERROR;
    luaL_checktype(L, 1, LUA_TSTRING);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lbind_check_options(L, 2, "options", names);
        big = lbind_opt_big(L, 2, "options");
    }
    text = lua_tolstring(L, 1, &len);
    as_error_clear(&err);
    if (lbind_decode(L, text, len, "value", big, &err) != AS_OK) return lbind_error(L, &err);
    return 1;
}

/***
Marks a table as a JSON array by setting `array_mt` on it.
@function array
@within JSON
@tparam[opt] table t the table; a new empty one when absent
@treturn table `t`
*/
static int array_new(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, LBIND_ARRAY_MT);
    return 1;
}

void lbind_json_open(lua_State *L) {
    static const luaL_Reg json_funcs[] = {
        { "encode", json_encode },
        { "decode", json_decode },
        { NULL, NULL }
    };
    luaL_newmetatable(L, LBIND_ARRAY_MT);
    lua_setfield(L, -2, "array_mt");
    lua_pushcfunction(L, array_new);
    lua_setfield(L, -2, "array");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    luaL_newlib(L, json_funcs);
    lua_setfield(L, -2, "json");
}
