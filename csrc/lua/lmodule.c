/*
** luaopen_agentsession_core: the module table of the C layer. It makes the
** shared state and the metatables, and registers every function the module
** has, the stores' constructors among them.
*/
#include <string.h>

#include "lbind.h"
#include "../core/as_manager.h"

/***
@module agentsession
*/

/***
A random UUID v4 from libuuid, in lowercase.
@function uuid
@within Values
@treturn string the UUID, as `"3f2c5a1e-…"`
*/
static int mod_uuid(lua_State *L) {
    char id[37];
    as_error err;
    as_error_clear(&err);
    if (as_uuid_v4(id, &err) != AS_OK) return lbind_error(L, &err);
    lua_pushstring(L, id);
    return 1;
}

/***
The wall clock in Unix milliseconds.
@function now
@within Values
@treturn int milliseconds since 1970
*/
static int mod_now(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)as_now_ms());
    return 1;
}

/* Names the Lua this file was built for, where a loader that cannot link it
** (lua/agentsession/init.lua) finds it in the file. */
__attribute__((used)) static const char built_for[] =
    "agentsession.core is built for " LBIND_BUILT_FOR ".";

/* The Lua that loads the module, as built_for names it: LuaJIT when its jit
** library is loaded, else the _VERSION of the globals; NULL when neither
** says (a host that opened no library). Raw reads only: nothing can raise. */
static const char *running_lua(lua_State *L) {
    const char *name = NULL;
    lua_pushliteral(L, "_LOADED");
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_istable(L, -1)) {
        lua_pushliteral(L, "jit");
        lua_rawget(L, -2);
        if (lua_istable(L, -1)) name = "LuaJIT";
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (name) return name;
    lua_pushglobaltable(L);
    lua_pushliteral(L, "_VERSION");
    lua_rawget(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) name = lua_tostring(L, -1);
    lua_pop(L, 2); /* the string stays alive in _G */
    return name;
}

/* A module built for one Lua and loaded by another that links it all the same
** fails here, naming both; Lua 5.1 and LuaJIT share an ABI, and a build for
** either serves both. */
static void check_lua(lua_State *L) {
    const char *running = running_lua(L);
    if (running == NULL || strcmp(running, LBIND_BUILT_FOR) == 0) return;
    if ((strcmp(running, "LuaJIT") == 0 || strcmp(running, "Lua 5.1") == 0)
        && (strcmp(LBIND_BUILT_FOR, "LuaJIT") == 0 || strcmp(LBIND_BUILT_FOR, "Lua 5.1") == 0))
        return;
    luaL_error(L, "agentsession.core is built for %s, but %s loads it: build it for %s "
               "(make LUA=...) or point package.cpath at its build", LBIND_BUILT_FOR, running, running);
}

int luaopen_agentsession_core(lua_State *L) {
    static const luaL_Reg funcs[] = {
        { "uuid", mod_uuid },
        { "now", mod_now },
        { "is_error", lbind_is_error },
        { "new_error", lbind_new_error },
        { "memory", lbind_new_memory },
        { "sqlite", lbind_new_sqlite },
        { "redis", lbind_new_redis },
        { "custom", lbind_new_custom },
        { NULL, NULL }
    };
    check_lua(L);
    luaL_checkversion(L);
    lbind_shared_open(L);
    lbind_error_open(L);
    lbind_manager_open(L);
    luaL_newlib(L, funcs);
    lbind_json_open(L);
    return 1;
}
