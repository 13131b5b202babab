/*
** agentsession.sqlite(path [, opts]): a manager over one SQLite file.
*/
#include <limits.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_manager.h"
#include "../core/as_store_sqlite.h"

static as_durability check_durability(lua_State *L, int tbl) {
    int t = lbind_rawfield(L, tbl, "durability");
    as_durability d = AS_DURABILITY_NORMAL;
    if (t != LUA_TNIL) {
        size_t len;
        const char *s;
        if (t != LUA_TSTRING)
            lbind_errorf(L, AS_EINVALID, "options.durability",
                         "must be \"normal\" or \"full\" (got %s)", lua_typename(L, t));
        s = lua_tolstring(L, -1, &len);
        if (len == 4 && memcmp(s, "full", 4) == 0) d = AS_DURABILITY_FULL;
        else if (len != 6 || memcmp(s, "normal", 6) != 0)
            lbind_errorf(L, AS_EINVALID, "options.durability",
                         "must be \"normal\" or \"full\" (got \"%s\")", s);
    }
    lua_pop(L, 1);
    return d;
}

static int new_sqlite(lua_State *L) {
    static const char *const names[] = {
        "max_session_bytes", "busy_timeout_ms", "durability", "triggers", NULL
    };
    const char *path = lbind_check_text(L, 1, "path");
    as_manager_opts opts;
    as_sqlite_opts sopts;
    as_store *store;
    as_error err;
    lua_Integer v;
    if (path[0] == '\0') lbind_errorf(L, AS_EINVALID, "path", "must not be empty");
    lbind_manager_opts(L, 2, names, &opts);
    sopts.busy_timeout_ms = AS_SQLITE_DEFAULT_BUSY_TIMEOUT_MS;
    sopts.durability = AS_DURABILITY_NORMAL;
    sopts.run_triggers = 0;
    if (lua_istable(L, 2)) {
        int t = lbind_rawfield(L, 2, "triggers");
        if (t != LUA_TNIL && t != LUA_TBOOLEAN)
            lbind_errorf(L, AS_EINVALID, "options.triggers", "must be a boolean (got %s)",
                         lua_typename(L, t));
        sopts.run_triggers = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lbind_opt_count(L, 2, "busy_timeout_ms", "options.busy_timeout_ms", &v)) {
            if (v > INT_MAX)
                lbind_errorf(L, AS_EINVALID, "options.busy_timeout_ms", "must be at most %d",
                             INT_MAX);
            sopts.busy_timeout_ms = (int)v;
        }
        sopts.durability = check_durability(L, 2);
    }
    lbind_manager_new(L);
    as_error_clear(&err);
    if (as_store_sqlite_open(path, &sopts, &store, &err) != AS_OK) return lbind_error(L, &err);
    return lbind_manager_start(L, store, &opts);
}

void lbind_sqlite_open(lua_State *L) {
    lua_pushcfunction(L, new_sqlite);
    lua_setfield(L, -2, "sqlite");
}
