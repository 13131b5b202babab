/*
** agentsession.memory([opts]): a manager whose sessions live in this process.
*/
#include "lbind.h"
#include "../core/as_manager.h"
#include "../core/as_store_memory.h"

/***
@module agentsession
*/

/***
A manager whose sessions live in this process.
@function memory
@within Managers
@tparam[opt] table opts `{ max_session_bytes = n }` (default 16 MiB)
@treturn SessionManager the manager
@raise `invalid` for an unknown option or a bad value
*/
int lbind_new_memory(lua_State *L) {
    static const char *const names[] = { "max_session_bytes", "big_integers", NULL };
    lbind_opts opts;
    as_store *store;
    as_error err;
    lbind_manager_opts(L, 1, names, &opts);
    lbind_manager_new(L);
    as_error_clear(&err);
    if (as_store_memory_new(&store, &err) != AS_OK) return lbind_error(L, &err);
    return lbind_manager_start(L, store, &opts);
}
