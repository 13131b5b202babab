/*
** The Lua module for hosts that link it in statically (agentsession_lua.h):
** the Lua layer's sources are compiled in (build/gen/agentsession_lua_chunks.h,
** written by tools/embed-lua.sh), and preloaded next to the C module.
*/
#include <string.h>

#include "../lua/lcompat.h"
#include "agentsession_lua.h"

/* One source file of the Lua layer, carried by the library. */
typedef struct as_lua_chunk {
    const char *module;    /* "agentsession.conformance" */
    const char *chunkname; /* "@agentsession/conformance/init.lua", as require names the file */
    const unsigned char *text;
    size_t len;
} as_lua_chunk;

#include "agentsession_lua_chunks.h"

/* Runs a carried chunk as require would run its file: with its module name. */
static int run_chunk(lua_State *L, const as_lua_chunk *c) {
    if (luaL_loadbufferx(L, (const char *)c->text, c->len, c->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, c->module);
    lua_call(L, 1, 1);
    return 1;
}

/* The loader package.preload holds for a carried module (its chunk as upvalue). */
static int open_chunk(lua_State *L) {
    return run_chunk(L, lua_touserdata(L, lua_upvalueindex(1)));
}

static int run_module(lua_State *L, const char *module) {
    const as_lua_chunk *c;
    for (c = as_lua_chunks; c->module; c++)
        if (strcmp(c->module, module) == 0) return run_chunk(L, c);
    return luaL_error(L, "module '%s' is not carried by this library", module);
}

int luaopen_agentsession(lua_State *L) {
    return run_module(L, "agentsession");
}

int luaopen_agentsession_conformance(lua_State *L) {
    return run_module(L, "agentsession.conformance");
}

void agentsession_lua_preload(lua_State *L) {
    const as_lua_chunk *c;
#if LUA_VERSION_NUM >= 503
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
#else
    /* package.preload, which the host opened with the package library */
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "package");
    if (!lua_istable(L, -1)) luaL_error(L, "agentsession_lua_preload needs the package library open");
    luaL_getsubtable(L, -1, "preload");
    lua_replace(L, -3);
    lua_pop(L, 1);
#endif
    lua_pushcfunction(L, luaopen_agentsession_core);
    lua_setfield(L, -2, "agentsession.core");
    for (c = as_lua_chunks; c->module; c++) {
        lua_pushlightuserdata(L, (void *)c);
        lua_pushcclosure(L, open_chunk, 1);
        lua_setfield(L, -2, c->module);
    }
    lua_pop(L, 1);
}
