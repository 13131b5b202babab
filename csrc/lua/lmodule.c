/*
** luaopen_agentsession_core: the module table of the C layer, and what every
** binding file shares (the scratch buffer, call records).
*/
#include <string.h>

#include "lbind.h"
#include "../core/as_alloc.h"
#include "../core/as_manager.h"

/* ---------------------------------------------------------------- scratch */

static int scratch_gc(lua_State *L) {
    as_buf_free((as_buf *)lua_touserdata(L, 1));
    return 0;
}

as_buf *lbind_scratch(lua_State *L) {
    as_buf *b;
    lua_getfield(L, LUA_REGISTRYINDEX, LBIND_SCRATCH_KEY);
    b = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return b; /* kept alive by the registry */
}

static void scratch_open(lua_State *L) {
    as_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->data = NULL;
    b->len = b->cap = 0;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, LBIND_SCRATCH_KEY);
}

/* ---------------------------------------------------------------- call records */

void lbind_call_done(lbind_call *c) {
    as_session_clear(&c->session);
    as_meta_clear(&c->meta);
    as_meta_list_clear(&c->list);
    as_buf_free(&c->buf);
}

static int call_gc(lua_State *L) {
    lbind_call_done((lbind_call *)luaL_checkudata(L, 1, LBIND_CALL_MT));
    return 0;
}

lbind_call *lbind_call_new(lua_State *L) {
    lbind_call *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, LBIND_CALL_MT);
    return c;
}

int lbind_rawfield(lua_State *L, int idx, const char *name) {
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    return lua_rawget(L, idx);
}

/* ---------------------------------------------------------------- functions */

static int mod_uuid(lua_State *L) {
    char id[37];
    as_error err;
    as_error_clear(&err);
    if (as_uuid_v4(id, &err) != AS_OK) return lbind_error(L, &err);
    lua_pushstring(L, id);
    return 1;
}

static int mod_now(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)as_now_ms());
    return 1;
}

int luaopen_agentsession_core(lua_State *L) {
    static const luaL_Reg funcs[] = {
        { "uuid", mod_uuid },
        { "now", mod_now },
        { NULL, NULL }
    };
    luaL_checkversion(L);
    scratch_open(L);
    if (luaL_newmetatable(L, LBIND_CALL_MT)) {
        lua_pushcfunction(L, call_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    lbind_error_open(L);
    lbind_json_open(L);
    lbind_manager_open(L);
    return 1;
}
