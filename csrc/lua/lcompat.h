/*
** The Lua C API of Lua 5.4 on every Lua the binding builds for: 5.1, 5.2, 5.3,
** 5.4 and LuaJIT 2.1.
**
** For 5.1, 5.2 and LuaJIT, Debian's lua-compat53-dev (compat-5.3) provides
** the 5.3 API (a small layer of macros and functions, which a module compiles
** into itself); its functions are compiled once, into lcompat.c, under the
** prefix agentsession_compat53 (kept local to the module by the build's
** hidden visibility). What 5.4 added beyond 5.3 (user values counted at
** creation, luaL_argexpected) is defined here on top: the binding uses it in
** the forms 5.3 can express.
*/
#ifndef LCOMPAT_H
#define LCOMPAT_H

#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 503
#define COMPAT53_PREFIX agentsession_compat53
#if defined(__has_include) && !__has_include("compat-5.3.h")
/* LuaJIT's headers lie apart from compat-5.3, which Debian puts beside Lua 5.1's */
#include <lua5.1/compat-5.3.h>
#define LCOMPAT_IN_LUA51_DIR 1
#else
#include "compat-5.3.h"
#endif
#endif

#if defined(__has_include)
#if __has_include(<luajit.h>)
#include <luajit.h>
#endif
#endif

/* Whether numbers have an integer subtype (Lua 5.3 and later). Without one, a
** number is a double and the rules of API.md "Every Lua a host embeds" apply. */
#if LUA_VERSION_NUM >= 503
#define LBIND_INTEGERS 1
#else
#define LBIND_INTEGERS 0
#endif

/* The Lua this module is built for, as the loader names it ("Lua 5.4", "LuaJIT"). */
#if defined(LUAJIT_VERSION)
#define LBIND_BUILT_FOR "LuaJIT"
#else
#define LBIND_BUILT_FOR LUA_VERSION
#endif

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, size, nuv) ((void)(nuv), lua_newuserdata((L), (size)))
#define luaL_argexpected(L, cond, arg, tname) \
    ((void)((cond) || luaL_typeerror((L), (arg), (tname))))
int lbind_typeerror(lua_State *L, int arg, const char *tname);
#define luaL_typeerror lbind_typeerror
#endif

#if !LBIND_INTEGERS
/* lua_Integer is ptrdiff_t there: a count or size still has 64 bits in C. */
#define LUA_MAXINTEGER PTRDIFF_MAX
#define LUA_MININTEGER PTRDIFF_MIN
#endif

#ifndef LUA_OK
#define LUA_OK 0
#endif

#endif
