/*
** What lcompat.h declares for Luas older than 5.4: the compat-5.3 functions
** (5.1, 5.2 and LuaJIT), compiled here once, and luaL_typeerror.
*/
#include "lcompat.h"

#if LUA_VERSION_NUM < 503
#if defined(LCOMPAT_IN_LUA51_DIR)
#include <lua5.1/compat-5.3.c>
#else
#include "compat-5.3.c"
#endif
#endif

#if LUA_VERSION_NUM < 504
/* luaL_typeerror of Lua 5.4: "<tname> expected, got <type>", the type named by
** the value's __name when it has one. */
int lbind_typeerror(lua_State *L, int arg, const char *tname) {
    const char *got;
    if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING) got = lua_tostring(L, -1);
    else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA) got = "light userdata";
    else got = luaL_typename(L, arg);
    return luaL_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}
#endif
