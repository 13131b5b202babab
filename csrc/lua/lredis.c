/*
** agentsession.redis([opts]): a manager over a Redis server.
*/
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lbind.h"
#include "../core/as_manager.h"
#include "../core/as_store_redis.h"

/* An optional string option without NUL bytes, at most `max` bytes. */
static const char *opt_text(lua_State *L, int tbl, const char *field, size_t min, size_t max) {
    char path[64];
    int t = lbind_rawfield(L, tbl, field);
    const char *s, *nul;
    size_t len;
    snprintf(path, sizeof path, "options.%s", field);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t != LUA_TSTRING)
        lbind_errorf(L, AS_EINVALID, path, "must be a string (got %s)", lua_typename(L, t));
    s = lua_tolstring(L, -1, &len);
    if ((nul = memchr(s, '\0', len)) != NULL)
        lbind_errorf(L, AS_EINVALID, path, "control character (NUL) at byte %d", (int)(nul - s) + 1);
    if (len < min) lbind_errorf(L, AS_EINVALID, path, "must not be empty");
    if (len > max) lbind_errorf(L, AS_EINVALID, path, "must be at most %zu bytes", max);
    /* the options table holds the string for as long as the call runs */
    lua_pop(L, 1);
    return s;
}

static int opt_int(lua_State *L, int tbl, const char *field, lua_Integer lo, lua_Integer hi,
                   int dflt) {
    char path[64];
    lua_Integer v;
    snprintf(path, sizeof path, "options.%s", field);
    if (!lbind_opt_count(L, tbl, field, path, &v)) return dflt;
    if (v < lo || v > hi)
        lbind_errorf(L, AS_EINVALID, path, "must be from %lld to %lld", (long long)lo,
                     (long long)hi);
    return (int)v;
}

static int new_redis(lua_State *L) {
    static const char *const names[] = {
        "max_session_bytes", "host", "port", "db", "username", "password", "prefix",
        "timeout_ms", NULL
    };
    as_manager_opts opts;
    as_redis_opts ropts;
    as_store *store;
    as_error err;
    memset(&ropts, 0, sizeof ropts);
    lbind_manager_opts(L, 1, names, &opts);
    if (lua_istable(L, 1)) {
        ropts.host = opt_text(L, 1, "host", 1, 255);
        ropts.port = opt_int(L, 1, "port", 1, 65535, AS_REDIS_DEFAULT_PORT);
        ropts.db = opt_int(L, 1, "db", 0, INT_MAX, 0);
        ropts.username = opt_text(L, 1, "username", 1, 4096);
        ropts.password = opt_text(L, 1, "password", 0, 4096);
        ropts.prefix = opt_text(L, 1, "prefix", 0, AS_REDIS_PREFIX_MAX);
        ropts.timeout_ms = opt_int(L, 1, "timeout_ms", 1, INT_MAX, AS_REDIS_DEFAULT_TIMEOUT_MS);
        if (ropts.username && ropts.password == NULL)
            lbind_errorf(L, AS_EINVALID, "options.username", "needs a password");
    }
    lbind_manager_new(L);
    as_error_clear(&err);
    if (as_store_redis_open(&ropts, &store, &err) != AS_OK) return lbind_error(L, &err);
    return lbind_manager_start(L, store, &opts);
}

void lbind_redis_open(lua_State *L) {
    lua_pushcfunction(L, new_redis);
    lua_setfield(L, -2, "redis");
}
