/*
** agentsession.sqlite(path [, opts]): a manager over one SQLite file.
*/
#include <limits.h>

#include "lbind.h"
#include "../core/as_manager.h"
#include "../core/as_store_sqlite.h"

/***
@module agentsession
*/

/***
A manager over one SQLite file, created (mode 0600) when missing.
@function sqlite
@within Managers
@string path the file
@tparam[opt] table opts `{ busy_timeout_ms = 5000, durability = "normal" or "full",
 triggers = false, max_session_bytes = n }`
@treturn SessionManager the manager
@raise `invalid` for a bad option, `storage` when the file cannot be opened as a store,
 `unavailable` when it stays locked
*/
int lbind_new_sqlite(lua_State *L) {
    static const char *const names[] = {
        "max_session_bytes", "big_integers", "busy_timeout_ms", "durability", "triggers", NULL
    };
    static const char *const durability[] = { "normal", "full", NULL };
    const char *path = lbind_check_text(L, 1, "path");
    lbind_opts opts;
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
        sopts.run_triggers = lbind_opt_bool(L, 2, "options", "triggers", 0);
        if (lbind_opt_int(L, 2, "options", "busy_timeout_ms", 0, INT_MAX, &v))
            sopts.busy_timeout_ms = (int)v;
        sopts.durability = lbind_opt_enum(L, 2, "options", "durability", durability, 0) == 1
                               ? AS_DURABILITY_FULL : AS_DURABILITY_NORMAL;
    }
    lbind_manager_new(L);
    as_error_clear(&err);
    if (as_store_sqlite_open(path, &sopts, &store, &err) != AS_OK) return lbind_error(L, &err);
    return lbind_manager_start(L, store, &opts);
}
