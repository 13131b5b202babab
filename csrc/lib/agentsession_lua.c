/*
** The Lua module for hosts that link it in statically (agentsession_lua.h):
** the Lua layer's sources are compiled in (build/gen/agentsession_lua_chunks.h,
** written by tools/embed-lua.sh), and preloaded next to the C module.
*/
#include <lua.h>
#include <lauxlib.h>

#include "agentsession_lua.h"
#include "agentsession_lua_chunks.h"

/* Runs one carried chunk as require would run its file: with the module name. */
static int run_chunk(lua_State *L, const unsigned char *text, size_t len, const char *chunkname,
                     const char *modname) {
    if (luaL_loadbufferx(L, (const char *)text, len, chunkname, "t") != LUA_OK) return lua_error(L);
    lua_pushstring(L, modname);
    lua_call(L, 1, 1);
    return 1;
}

int luaopen_agentsession(lua_State *L) {
    return run_chunk(L, as_chunk_init, sizeof as_chunk_init, "@agentsession/init.lua", "agentsession");
}

int luaopen_agentsession_conformance(lua_State *L) {
    return run_chunk(L, as_chunk_conformance, sizeof as_chunk_conformance,
                     "@agentsession/conformance.lua", "agentsession.conformance");
}

void agentsession_lua_preload(lua_State *L) {
    static const luaL_Reg modules[] = {
        { "agentsession.core", luaopen_agentsession_core },
        { "agentsession", luaopen_agentsession },
        { "agentsession.conformance", luaopen_agentsession_conformance },
        { NULL, NULL }
    };
    const luaL_Reg *mod;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (mod = modules; mod->name; mod++) {
        lua_pushcfunction(L, mod->func);
        lua_setfield(L, -2, mod->name);
    }
    lua_pop(L, 1);
}
