/*
** luaopen_agentsession_core: the module table of the C layer. It makes the
** shared state and the metatables, and registers every function the module
** has, the stores' constructors among them.
*/
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
    luaL_checkversion(L);
    lbind_shared_open(L);
    lbind_error_open(L);
    lbind_manager_open(L);
    luaL_newlib(L, funcs);
    lbind_json_open(L);
    return 1;
}
