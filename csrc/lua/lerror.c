/*
** Error objects: every runtime failure of the library is raised from here, as
** a table { kind, message, id } whose tostring is "agentsession: kind: message".
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lbind.h"

static void push_error(lua_State *L, as_status status, const char *path, const char *message,
                       const char *id) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, as_status_kind(status));
    lua_setfield(L, -2, "kind");
    if (path && path[0]) lua_pushfstring(L, "%s: %s", path, message);
    else lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (id && id[0]) {
        lua_pushstring(L, id);
        lua_setfield(L, -2, "id");
    }
    luaL_setmetatable(L, LBIND_ERROR_MT);
}

void lbind_push_error(lua_State *L, const as_error *err) {
    push_error(L, err->status, err->path, err->message, err->id);
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
    push_error(L, status, path, message, NULL);
    return lua_error(L);
}

static int error_tostring(lua_State *L) {
    lua_getfield(L, 1, "kind");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "agentsession: %s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
    return 1;
}

/* is_error(value [, kind]) */
static int error_is(lua_State *L) {
    int yes = 0;
    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, LBIND_ERROR_MT);
        yes = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (yes && !lua_isnoneornil(L, 2)) {
        const char *kind = luaL_checkstring(L, 2);
        lua_getfield(L, 1, "kind");
        yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), kind) == 0;
    }
    lua_pushboolean(L, yes);
    return 1;
}

static const char *const kinds[] = {
    "not_found", "invalid", "too_large", "conflict", "storage", "unavailable", "closed", NULL
};
static const as_status statuses[] = {
    AS_ENOTFOUND, AS_EINVALID, AS_ETOOLARGE, AS_ECONFLICT, AS_ESTORAGE, AS_EUNAVAILABLE, AS_ECLOSED
};

/* new_error(kind, message [, id]): the object, for the Lua layer to raise. */
static int error_new(lua_State *L) {
    int k = luaL_checkoption(L, 1, NULL, kinds);
    push_error(L, statuses[k], NULL, luaL_checkstring(L, 2), luaL_optstring(L, 3, NULL));
    return 1;
}

int lbind_error_get(lua_State *L, int idx, as_error *err) {
    int yes = 0, i;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, LBIND_ERROR_MT);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!yes) return 0;
    as_error_clear(err);
    err->status = AS_ESTORAGE;
    lua_pushliteral(L, "kind");
    if (lua_rawget(L, idx) == LUA_TSTRING)
        for (i = 0; kinds[i]; i++)
            if (strcmp(lua_tostring(L, -1), kinds[i]) == 0) err->status = statuses[i];
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
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, error_is);
    lua_setfield(L, -2, "is_error");
    lua_pushcfunction(L, error_new);
    lua_setfield(L, -2, "new_error");
}
