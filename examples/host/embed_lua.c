/*
** A host that embeds Lua 5.4 with agentsession linked into the program: no
** module file on disk, require("agentsession") finds it in the program. The
** host gives its scripts one function of its own, host.reply(text), where a
** real host would call its language model.
**
**   cc -o embed_lua embed_lua.c $(pkg-config --cflags --libs agentsession-lua lua5.4)
**   ./embed_lua agent.lua agent.db
*/
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include <agentsession_lua.h>

/* host.reply(text): a canned answer for each question the agent asks. */
static int host_reply(lua_State *L) {
    static const char *const answers[][2] = {
        { "password", "Use the 'Forgot password' link on the sign-in page." },
        { "expired", "Links last an hour: ask for a new one and use it at once." },
        { "Thanks", "Glad to help." },
    };
    const char *text = luaL_checkstring(L, 1);
    size_t i;
    for (i = 0; i < sizeof answers / sizeof *answers; i++)
        if (strstr(text, answers[i][0])) {
            lua_pushstring(L, answers[i][1]);
            return 1;
        }
    lua_pushliteral(L, "Could you say that again?");
    return 1;
}

/* Everything that can raise a Lua error, run under lua_pcall: the standard
** libraries, agentsession in package.preload, the host table, the script. */
static int run(lua_State *L) {
    const char *script = lua_touserdata(L, 1);
    const char *store = lua_touserdata(L, 2);
    luaL_openlibs(L);
    agentsession_lua_preload(L);
    lua_newtable(L);
    lua_pushcfunction(L, host_reply);
    lua_setfield(L, -2, "reply");
    lua_setglobal(L, "host");
    if (luaL_loadfile(L, script) != LUA_OK) return lua_error(L);
    lua_pushstring(L, store);
    lua_call(L, 1, 0);
    return 0;
}

/* Adds a traceback to an error given as a string; an error object (as
** agentsession raises) is kept as it is, so that its __tostring speaks. */
static int on_error(lua_State *L) {
    if (lua_type(L, 1) == LUA_TSTRING) luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int main(int argc, char **argv) {
    lua_State *L;
    int status;
    if (argc != 3) {
        fprintf(stderr, "usage: embed_lua SCRIPT.lua STORE.db\n");
        return 2;
    }
    if ((L = luaL_newstate()) == NULL) {
        fprintf(stderr, "embed_lua: not enough memory for a Lua state\n");
        return 1;
    }
    lua_pushcfunction(L, on_error);
    lua_pushcfunction(L, run);
    lua_pushlightuserdata(L, argv[1]);
    lua_pushlightuserdata(L, argv[2]);
    status = lua_pcall(L, 2, 0, 1);
    if (status != LUA_OK) {
        /* luaL_tolstring runs __tostring: "agentsession: kind: message (at agent.lua:12)" */
        fprintf(stderr, "embed_lua: %s\n", luaL_tolstring(L, -1, NULL));
        lua_close(L);
        return 1;
    }
    lua_close(L);
    return 0;
}
