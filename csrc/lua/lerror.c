/*
** Error objects: every runtime failure of the library is raised from here, as
** a table { kind, message, id, where } whose tostring is
** "agentsession: kind: message (at file.lua:12)".
*/
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lbind.h"

/* Pushes the position of the function at `level`, as error(msg, level) names
** it ("file.lua:12:"), or "" when it has none (a C function, a stripped chunk).
** Level 1 is the caller of the running C function. */
static void push_where(lua_State *L, int level) {
    lua_Debug ar;
    if (lua_getstack(L, level, &ar)) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d:", ar.short_src, ar.currentline);
            return;
        }
    }
    lua_pushliteral(L, "");
}

static void push_error(lua_State *L, int level, as_status status, const char *path,
                       const char *message, const char *id) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, as_status_kind(status));
    lua_setfield(L, -2, "kind");
    if (path && path[0]) lua_pushfstring(L, "%s: %s", path, message);
    else lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (id && id[0]) {
        lua_pushstring(L, id);
        lua_setfield(L, -2, "id");
    }
    push_where(L, level);
    lua_setfield(L, -2, "where");
    luaL_setmetatable(L, LBIND_ERROR_MT);
}

/* where: the caller of the running C function (see lbind.h). */
void lbind_push_error(lua_State *L, const as_error *err) {
    push_error(L, 1, err->status, err->path, err->message, err->id);
}

int lbind_error(lua_State *L, const as_error *err) {
    lbind_push_error(L, err);
    return lua_error(L);
}

int lbind_errorf(lua_State *L, as_status status, const char *path, const char *fmt, ...) {
    char message[AS_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    push_error(L, 1, status, path, message, NULL);
    return lua_error(L);
}

static int is_error_object(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TTABLE && lbind_has_metatable(L, idx, LBIND_ERROR_MT);
}

/* Pushes the text of the error object at idx (see the top of this file). */
static void push_text(lua_State *L, int idx) {
    size_t len = 0;
    const char *where = NULL;
    idx = lua_absindex(L, idx);
    lua_getfield(L, idx, "kind");
    lua_getfield(L, idx, "message");
    lua_pushfstring(L, "agentsession: %s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
    lua_replace(L, -3);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "where") == LUA_TSTRING) where = lua_tolstring(L, -1, &len);
    if (len > 0) {
        if (where[len - 1] == ':') len--;
        lua_pushliteral(L, " (at ");
        lua_pushlstring(L, where, len);
        lua_pushliteral(L, ")");
        lua_remove(L, -4);
        lua_concat(L, 4);
    } else {
        lua_pop(L, 1);
    }
}

static int error_tostring(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    push_text(L, 1);
    return 1;
}

/* "text" .. err, err .. "text" and err .. err: the text of each error object;
** any other operand but a string or a number fails as in Lua's own concatenation. */
static int error_concat(lua_State *L) {
    int i;
    for (i = 1; i <= 2; i++) {
        if (is_error_object(L, i)) push_text(L, i);
        else if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) {
            lua_pushvalue(L, i);
            lua_tostring(L, -1);
        } else {
            return luaL_error(L, "attempt to concatenate a %s value", luaL_typename(L, i));
        }
    }
    lua_concat(L, 2);
    return 1;
}

/***
@module agentsession
*/

/***
Is a value an agentsession error object, of that kind?
@function is_error
@within Errors
@param err any value, typically what `pcall` caught
@tparam[opt] string kind `"not_found"`, `"invalid"`, `"too_large"`, `"conflict"`,
 `"storage"`, `"unavailable"` or `"closed"`
@treturn bool true when `err` is an error object (whose `kind` is `kind`, when given)
*/
int lbind_is_error(lua_State *L) {
    int yes = is_error_object(L, 1);
    if (yes && !lua_isnoneornil(L, 2)) {
        const char *kind = luaL_checkstring(L, 2);
        lua_getfield(L, 1, "kind");
        yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), kind) == 0;
    }
    lua_pushboolean(L, yes);
    return 1;
}

/* new_error(kind, message [, id [, level]]): the object, for the Lua layer to
** raise. Its where names the function at `level`, counted as error() counts
** (1, the default: the function calling new_error). */
int lbind_new_error(lua_State *L) {
    as_status status = as_status_of_kind(luaL_checkstring(L, 1));
    const char *message = luaL_checkstring(L, 2);
    const char *id = luaL_optstring(L, 3, NULL);
    lua_Integer level = luaL_optinteger(L, 4, 1);
    if (status == AS_OK)
        return luaL_argerror(L, 1, lua_pushfstring(L, "invalid option '%s'", lua_tostring(L, 1)));
    luaL_argcheck(L, level >= 0, 4, "must not be negative");
    push_error(L, level > INT_MAX ? INT_MAX : (int)level, status, NULL, message, id);
    return 1;
}

int lbind_error_get(lua_State *L, int idx, as_error *err) {
    idx = lua_absindex(L, idx);
    if (!is_error_object(L, idx)) return 0;
    as_error_clear(err);
    err->status = AS_ESTORAGE;
    lua_pushliteral(L, "kind");
    if (lua_rawget(L, idx) == LUA_TSTRING && as_status_of_kind(lua_tostring(L, -1)) != AS_OK)
        err->status = as_status_of_kind(lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushliteral(L, "message");
    if (lua_rawget(L, idx) == LUA_TSTRING)
        snprintf(err->message, sizeof err->message, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushliteral(L, "id");
    if (lua_rawget(L, idx) == LUA_TSTRING) as_error_set_id(err, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

void lbind_error_open(lua_State *L) {
    if (luaL_newmetatable(L, LBIND_ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, error_concat);
        lua_setfield(L, -2, "__concat");
    }
    lua_pop(L, 1);
}
