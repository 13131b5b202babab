/*
** Allocation fault injection: a Lua host that runs tests/fault.lua (or the
** script named by argv[1]) with the agentsession module linked in statically
** and a `fault` table through which the script makes one allocation fail:
**
**   fault.run(mode, n, fn)  arms, calls fn() under lua_pcall, disarms at once
**                           (in C, before any other Lua code runs), and returns
**                           hit, ok, value: whether the armed failure happened,
**                           whether fn returned, and its first result or its
**                           error. mode "core": the n-th allocation of the
**                           core's allocator (as_alloc.h's test hook) fails;
**                           "lua": the n-th allocation of this lua_State's
**                           allocator fails; "sqlite": the n-th allocation
**                           of SQLite's allocator fails; "none": nothing is
**                           armed.
**   fault.live()            the core's live blocks (allocated, not yet freed).
**   fault.tmpdir()          a new private directory under $TMPDIR (or /tmp).
**
** The Lua allocator fails a *logical* allocation: Lua 5.4 answers a failed
** allocation with an emergency full collection and one more attempt with the
** same arguments, and that retry fails too, so the failure reaches the code
** that asked for the memory (a "not enough memory" error) instead of being
** absorbed every time. Shrinking a block or freeing one never fails, as the
** Lua manual requires of an allocator. One-shot: later allocations succeed.
**
** SQLite's allocator is replaced (SQLITE_CONFIG_MALLOC) before the library is
** first used, by one that calls SQLite's own and fails the n-th allocation or
** growth when armed; lookaside is off, so that every allocation of SQLite
** goes through it. SQLite retries none of them.
**
** Exits with the script's result: it returns the number of failures. After
** lua_close the core must hold no block at all.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <sqlite3.h>

#include "../csrc/core/as_alloc.h"

int luaopen_agentsession_core(lua_State *L);

/* ---------------------------------------------------------------- the Lua allocator */

static struct {
    unsigned long countdown; /* 0: off; else growing allocations until the failing one */
    int hit;
    int retry;               /* the failed request, to fail Lua's emergency retry too */
    void *rptr;
    size_t rosize, rnsize;
} lfault;

static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (ptr != NULL && nsize <= osize) {
        /* a shrink never fails (keep the block when realloc would) */
        void *q = realloc(ptr, nsize);
        return q ? q : ptr;
    }
    if (lfault.retry) {
        lfault.retry = 0;
        if (ptr == lfault.rptr && osize == lfault.rosize && nsize == lfault.rnsize) return NULL;
    }
    if (lfault.countdown != 0 && --lfault.countdown == 0) {
        lfault.hit = 1;
        lfault.retry = 1;
        lfault.rptr = ptr;
        lfault.rosize = osize;
        lfault.rnsize = nsize;
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* ---------------------------------------------------------------- SQLite's allocator */

static sqlite3_mem_methods sqlite_own; /* SQLite's allocator, which does the work */

static struct {
    unsigned long countdown; /* 0: off; else allocations until the failing one */
    int hit;
} sfault;

static int sqlite_fails(void) {
    if (sfault.countdown == 0 || --sfault.countdown != 0) return 0;
    sfault.hit = 1;
    return 1;
}

static void *sqlite_malloc(int n) {
    return sqlite_fails() ? NULL : sqlite_own.xMalloc(n);
}

static void *sqlite_realloc(void *p, int n) {
    /* a shrink never fails */
    if (n > sqlite_own.xSize(p) && sqlite_fails()) return NULL;
    return sqlite_own.xRealloc(p, n);
}

static int sqlite_hook_on(void) {
    sqlite3_mem_methods mine;
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_own) != SQLITE_OK) return 0;
    mine = sqlite_own;
    mine.xMalloc = sqlite_malloc;
    mine.xRealloc = sqlite_realloc;
    return sqlite3_config(SQLITE_CONFIG_MALLOC, &mine) == SQLITE_OK
           && sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0) == SQLITE_OK;
}

/* ---------------------------------------------------------------- fault.* */

static int f_run(lua_State *L) {
    static const char *const modes[] = { "none", "core", "lua", "sqlite", NULL };
    int mode = luaL_checkoption(L, 1, NULL, modes), status, hit = 0;
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_argcheck(L, n >= 1 || mode == 0, 2, "an allocation number from 1");
    lua_settop(L, 3);
    luaL_checkstack(L, 8, "fault.run");
    if (mode == 1) as_alloc_fail_after((unsigned long)n);
    else if (mode == 2) {
        lfault.countdown = (unsigned long)n;
        lfault.hit = lfault.retry = 0;
    } else if (mode == 3) {
        sfault.countdown = (unsigned long)n;
        sfault.hit = 0;
    }
    status = lua_pcall(L, 0, 1, 0);
    /* disarm before anything else can allocate */
    if (mode == 1) {
        as_alloc_fail_after(0);
        hit = as_alloc_fail_hit();
    } else if (mode == 2) {
        lfault.countdown = 0;
        lfault.retry = 0;
        hit = lfault.hit;
    } else if (mode == 3) {
        sfault.countdown = 0;
        hit = sfault.hit;
    }
    /* the stack is mode, n, and fn's result or error */
    lua_pushboolean(L, hit);
    lua_pushboolean(L, status == LUA_OK);
    lua_pushvalue(L, 3);
    return 3;
}

static int f_live(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)as_alloc_live());
    return 1;
}

static int f_tmpdir(lua_State *L) {
    const char *base = getenv("TMPDIR");
    char path[4096];
    if (base == NULL || base[0] == '\0') base = "/tmp";
    if ((size_t)snprintf(path, sizeof path, "%s/agentsession-fault-XXXXXX", base) >= sizeof path)
        return luaL_error(L, "fault.tmpdir: TMPDIR is too long");
    if (mkdtemp(path) == NULL) return luaL_error(L, "fault.tmpdir: mkdtemp: %s", strerror(errno));
    lua_pushstring(L, path);
    return 1;
}

static void open_fault(lua_State *L) {
    static const luaL_Reg funcs[] = {
        { "run", f_run },
        { "live", f_live },
        { "tmpdir", f_tmpdir },
        { NULL, NULL }
    };
    luaL_newlib(L, funcs);
    lua_setglobal(L, "fault");
}

/* ---------------------------------------------------------------- main */

static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int main(int argc, char **argv) {
    const char *script = argc > 1 ? argv[1] : "tests/fault.lua";
    lua_State *L;
    int status, failed = 1;
    long live;
    as_alloc_hook_on(); /* before the first allocation of the core */
    if (!sqlite_hook_on()) { /* before SQLite is first used */
        fprintf(stderr, "fault_test: cannot replace SQLite's allocator\n");
        return 1;
    }
    L = lua_newstate(lua_alloc, NULL);
    if (L == NULL) {
        fprintf(stderr, "fault_test: cannot create a Lua state\n");
        return 1;
    }
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_agentsession_core);
    lua_setfield(L, -2, "agentsession.core");
    lua_pop(L, 1);
    open_fault(L);
    lua_pushcfunction(L, traceback);
    status = luaL_loadfile(L, script);
    if (status == LUA_OK) status = lua_pcall(L, 0, 1, 1);
    if (status != LUA_OK) fprintf(stderr, "fault_test: %s\n", lua_tostring(L, -1));
    else if (lua_isinteger(L, -1)) failed = lua_tointeger(L, -1) != 0;
    else fprintf(stderr, "fault_test: %s returned no failure count\n", script);
    lua_close(L);
    live = as_alloc_live();
    if (live != 0) {
        fprintf(stderr, "fault_test: %ld core block(s) still allocated after lua_close\n", live);
        failed = 1;
    }
    return failed ? 1 : 0;
}
