/*
** agentsession.redis([opts]): a manager over a Redis server.
*/
#include <limits.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_manager.h"
#include "../core/as_store_redis.h"

/* An integer option in [lo, hi], dflt when absent. */
static int redis_int(lua_State *L, const char *field, lua_Integer lo, lua_Integer hi, int dflt) {
    lua_Integer v;
    return lbind_opt_int(L, 1, "options", field, lo, hi, &v) ? (int)v : dflt;
}

/* options.cluster: its nodes, in a userdata left on the stack, which with the
** options table keeps them alive for the call; NULL when absent. */
static const char *const *cluster_nodes(lua_State *L, size_t *n) {
    int t = lbind_rawfield(L, 1, "cluster");
    const char **nodes;
    size_t i;
    *n = 0;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t != LUA_TTABLE)
        lbind_errorf(L, AS_EINVALID, "options.cluster", "must be an array of \"host:port\" "
                     "strings (got %s)", lua_typename(L, t));
    *n = (size_t)lua_rawlen(L, -1);
    if (*n == 0) lbind_errorf(L, AS_EINVALID, "options.cluster", "must name at least one node");
    if (*n > 1024) lbind_errorf(L, AS_EINVALID, "options.cluster", "must name at most 1024 nodes");
    nodes = lua_newuserdata(L, *n * sizeof *nodes);
    for (i = 0; i < *n; i++) {
        size_t len;
        lua_rawgeti(L, -2, (lua_Integer)(i + 1));
        if (lua_type(L, -1) != LUA_TSTRING)
            lbind_errorf(L, AS_EINVALID, "options.cluster", "[%d] must be a \"host:port\" string "
                         "(got %s)", (int)(i + 1), luaL_typename(L, -1));
        nodes[i] = lua_tolstring(L, -1, &len);
        if (len == 0 || len > 300 || memchr(nodes[i], '\0', len))
            lbind_errorf(L, AS_EINVALID, "options.cluster", "[%d] must be \"host:port\"",
                         (int)(i + 1));
        lua_pop(L, 1); /* the array holds the string */
    }
    return nodes;
}

/***
@module agentsession
*/

/***
A manager over a Redis server, or over a Redis Cluster with `cluster`; it connects at once.
@function redis
@within Managers
@tparam[opt] table opts `{ host = "127.0.0.1", port = 6379, db = 0, username =, password =,
 prefix = "agentsession:", timeout_ms = 2000, max_session_bytes = n }`, or
 `{ cluster = { "host:port", ... }, username =, password =, prefix =, timeout_ms =,
 max_session_bytes = }` for a cluster, learnt from any of the nodes named
@treturn SessionManager the manager
@raise `invalid` for a bad option, a wrong password or a missing db; `unavailable` when
 the server cannot be reached
*/
int lbind_new_redis(lua_State *L) {
    static const char *const names[] = {
        "max_session_bytes", "big_integers", "host", "port", "db", "username", "password", "prefix",
        "timeout_ms", "cluster", NULL
    };
    lbind_opts opts;
    as_redis_opts ropts;
    as_store *store;
    as_error err;
    memset(&ropts, 0, sizeof ropts);
    lbind_manager_opts(L, 1, names, &opts);
    if (lua_istable(L, 1)) {
        ropts.host = lbind_opt_text(L, 1, "options", "host", 1, 255);
        ropts.port = redis_int(L, "port", 1, 65535, AS_REDIS_DEFAULT_PORT);
        ropts.db = redis_int(L, "db", 0, INT_MAX, 0);
        ropts.username = lbind_opt_text(L, 1, "options", "username", 1, 4096);
        ropts.password = lbind_opt_text(L, 1, "options", "password", 0, 4096);
        ropts.prefix = lbind_opt_text(L, 1, "options", "prefix", 0, AS_REDIS_PREFIX_MAX);
        ropts.timeout_ms = redis_int(L, "timeout_ms", 1, INT_MAX, AS_REDIS_DEFAULT_TIMEOUT_MS);
        if (ropts.username && ropts.password == NULL)
            lbind_errorf(L, AS_EINVALID, "options.username", "needs a password");
        ropts.cluster = cluster_nodes(L, &ropts.ncluster);
        if (ropts.cluster && (ropts.host || lbind_rawfield(L, 1, "port") != LUA_TNIL
                              || lbind_rawfield(L, 1, "db") != LUA_TNIL))
            lbind_errorf(L, AS_EINVALID, "options.cluster", "does not go with host, port or db: "
                         "the cluster names its nodes");
    }
    lbind_manager_new(L);
    as_error_clear(&err);
    if (as_store_redis_open(&ropts, &store, &err) != AS_OK) return lbind_error(L, &err);
    return lbind_manager_start(L, store, &opts);
}
