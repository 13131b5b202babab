/*
** agentsession for a host that embeds Lua 5.4 and links the module in
** statically (libagentsession_lua.a): the C module, the Lua layer compiled
** into the library, and one call after which require("agentsession") finds
** both without any file on disk.
**
**   lua_State *L = luaL_newstate();
**   luaL_openlibs(L);              -- require needs the package library
**   agentsession_lua_preload(L);
**   ... luaL_dostring(L, "local agentsession = require('agentsession') ...")
**
** Build: cc host.c $(pkg-config --cflags --libs agentsession-lua) plus the
** host's Lua 5.4 (for Debian's: $(pkg-config --cflags --libs lua5.4)).
*/
#ifndef AGENTSESSION_LUA_H
#define AGENTSESSION_LUA_H

#if defined(__GNUC__)
#define AGENTSESSION_LUA_API __attribute__((visibility("default")))
#else
#define AGENTSESSION_LUA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct lua_State;

/* The C module "agentsession.core", as require opens it: pushes its table. */
AGENTSESSION_LUA_API int luaopen_agentsession_core(struct lua_State *L);

/* The module "agentsession": runs the Lua layer carried by the library
** (lua/agentsession/init.lua), which requires "agentsession.core" (register
** it first, as agentsession_lua_preload does). Pushes the module table. */
AGENTSESSION_LUA_API int luaopen_agentsession(struct lua_State *L);

/* The module "agentsession.conformance" (the behavioural suite for stores
** written in Lua), carried likewise. Pushes its table. */
AGENTSESSION_LUA_API int luaopen_agentsession_conformance(struct lua_State *L);

/* Puts the modules above, and the modules of the conformance suite they
** load (agentsession.conformance.*), in L's package.preload (the registry's
** "_PRELOAD" table), so that require finds them before any file. Raises a
** Lua error only when memory runs out (call it where a Lua error is caught,
** or right after luaL_newstate as luaL_openlibs is). */
AGENTSESSION_LUA_API void agentsession_lua_preload(struct lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
