/*
** What every file of the binding shares: the scratch buffer, call records,
** raw field access, and the readers of arguments and options tables, which
** raise the error of API.md (invalid, naming the field) on bad input.
*/
#include <stdio.h>
#include <string.h>

#include "lbind.h"

/* ---------------------------------------------------------------- scratch */

static int scratch_gc(lua_State *L) {
    as_buf_free((as_buf *)lua_touserdata(L, 1));
    return 0;
}

as_buf *lbind_scratch(lua_State *L) {
    as_buf *b;
    lua_getfield(L, LUA_REGISTRYINDEX, LBIND_SCRATCH_KEY);
    b = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return b; /* kept alive by the registry */
}

/* ---------------------------------------------------------------- call records */

void lbind_call_done(lbind_call *c) {
    as_session_clear(&c->session);
    as_meta_clear(&c->meta);
    as_meta_list_clear(&c->list);
    as_buf_free(&c->buf);
    as_found_list_clear(&c->found);
    as_id_list_clear(&c->ids);
}

static int call_gc(lua_State *L) {
    lbind_call_done((lbind_call *)luaL_checkudata(L, 1, LBIND_CALL_MT));
    return 0;
}

lbind_call *lbind_call_new(lua_State *L) {
    lbind_call *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LBIND_CALL_MT);
    return c;
}

void lbind_shared_open(lua_State *L) {
    as_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->data = NULL;
    b->len = b->cap = 0;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, LBIND_SCRATCH_KEY);
    if (luaL_newmetatable(L, LBIND_CALL_MT)) {
        lua_pushcfunction(L, call_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------- values */

int lbind_rawfield(lua_State *L, int idx, const char *name) {
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    return lua_rawget(L, idx);
}

lua_Integer lbind_array_len(lua_State *L, int idx) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_Integer k;
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) < 1 || k > n) {
            lua_pop(L, 1);
            return -1;
        }
        count++;
    }
    return count == n ? n : -1;
}

const char *lbind_text(lua_State *L, int idx, const char *path) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    const char *nul = memchr(s, '\0', len);
    if (nul != NULL)
        lbind_errorf(L, AS_EINVALID, path, "control character (NUL) at byte %d",
                     (int)(nul - s) + 1);
    return s;
}

const char *lbind_check_text(lua_State *L, int arg, const char *path) {
    luaL_checktype(L, arg, LUA_TSTRING);
    return lbind_text(L, arg, path);
}

size_t lbind_size(lua_Integer v) {
    return (lua_Unsigned)v > (lua_Unsigned)SIZE_MAX ? SIZE_MAX : (size_t)v;
}

/* ---------------------------------------------------------------- options */

void lbind_check_keys(lua_State *L, int tbl, const char *what, const char *const *names,
                      const char *noun) {
    tbl = lua_absindex(L, tbl);
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        int i, known = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING)
            for (i = 0; names[i] && !known; i++) known = strcmp(lua_tostring(L, -1), names[i]) == 0;
        if (!known) {
            if (lua_type(L, -1) == LUA_TSTRING)
                lbind_errorf(L, AS_EINVALID, what, "unknown %s \"%s\"", noun, lua_tostring(L, -1));
            lbind_errorf(L, AS_EINVALID, what, "%s keys are strings (got %s)", noun,
                         luaL_typename(L, -1));
        }
    }
}

void lbind_check_options(lua_State *L, int tbl, const char *what, const char *const *names) {
    lbind_check_keys(L, tbl, what, names, "option");
}

/* The path of a field in messages: "options.timeout_ms". */
static void field_path(char *out, size_t size, const char *what, const char *field) {
    snprintf(out, size, "%s.%s", what, field);
}

int lbind_opt_int(lua_State *L, int tbl, const char *what, const char *field, lua_Integer lo,
                  lua_Integer hi, lua_Integer *out) {
    char path[96];
    int isint, t = lbind_rawfield(L, tbl, field);
    lua_Integer v;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    field_path(path, sizeof path, what, field);
    if (t != LUA_TNUMBER)
        lbind_errorf(L, AS_EINVALID, path, "must be an integer (got %s)", lua_typename(L, t));
    v = lua_tointegerx(L, -1, &isint);
    if (!isint) lbind_errorf(L, AS_EINVALID, path, "must be a whole number");
    if (v < 0 && lo >= 0) lbind_errorf(L, AS_EINVALID, path, "must not be negative");
    if (v < lo || v > hi) {
        if (hi == LUA_MAXINTEGER)
            lbind_errorf(L, AS_EINVALID, path, "must be at least %lld", (long long)lo);
        if (lo == 0) lbind_errorf(L, AS_EINVALID, path, "must be at most %lld", (long long)hi);
        lbind_errorf(L, AS_EINVALID, path, "must be from %lld to %lld", (long long)lo,
                     (long long)hi);
    }
    lua_pop(L, 1);
    *out = v;
    return 1;
}

int lbind_opt_bool(lua_State *L, int tbl, const char *what, const char *field, int dflt) {
    char path[96];
    int t = lbind_rawfield(L, tbl, field), v = dflt;
    if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL) {
        field_path(path, sizeof path, what, field);
        lbind_errorf(L, AS_EINVALID, path, "must be a boolean (got %s)", lua_typename(L, t));
    }
    lua_pop(L, 1);
    return v;
}

const char *lbind_opt_text(lua_State *L, int tbl, const char *what, const char *field,
                           size_t min, size_t max) {
    char path[96];
    int t = lbind_rawfield(L, tbl, field);
    const char *s;
    size_t len;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t == LUA_TSTRING) { /* the usual case, without the path's formatting */
        s = lua_tolstring(L, -1, &len);
        if (len >= min && len <= max && memchr(s, '\0', len) == NULL) {
            /* the options table holds the string for as long as the call runs */
            lua_pop(L, 1);
            return s;
        }
    }
    field_path(path, sizeof path, what, field);
    if (t != LUA_TSTRING)
        lbind_errorf(L, AS_EINVALID, path, "must be a string (got %s)", lua_typename(L, t));
    s = lbind_text(L, -1, path);
    len = lua_rawlen(L, -1);
    if (len < min) lbind_errorf(L, AS_EINVALID, path, "must not be empty");
    if (len > max) lbind_errorf(L, AS_EINVALID, path, "must be at most %zu bytes", max);
    /* the options table holds the string for as long as the call runs */
    lua_pop(L, 1);
    return s;
}

int lbind_opt_enum(lua_State *L, int tbl, const char *what, const char *field,
                   const char *const *names, int dflt) {
    char path[96], list[128] = "";
    const char *s;
    int i, t = lbind_rawfield(L, tbl, field);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    field_path(path, sizeof path, what, field);
    for (i = 0; names[i]; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s\"%s\"", i == 0 ? "" : names[i + 1] ? ", "
                                                                          : " or ", names[i]);
    }
    if (t != LUA_TSTRING) lbind_errorf(L, AS_EINVALID, path, "must be %s (got %s)", list,
                                       lua_typename(L, t));
    s = lua_tostring(L, -1);
    for (i = 0; names[i]; i++)
        if (strlen(names[i]) == lua_rawlen(L, -1) && strcmp(s, names[i]) == 0) break;
    if (names[i] == NULL) lbind_errorf(L, AS_EINVALID, path, "must be %s (got \"%s\")", list, s);
    lua_pop(L, 1);
    return i;
}
