/*
** Fuzz target: the JSON decoder.
**
** Every input goes to the core's validator (as_json_validate) and to the Lua
** binding's decoder (agentsession.json.decode, called under lua_pcall in one
** lua_State made at the first input). They must agree: a text is accepted by
** one iff by the other, and when both refuse it they give the same error (the
** decoder raises an `invalid` error object whose message is the validator's
** path and message). Anything else aborts.
**
** Built with libFuzzer by tools/fuzz.sh, and with gcc against fuzz/replay.c
** by fuzz/fuzz.mk (make fuzz-replay).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "../csrc/core/as_json.h"
#include "../csrc/lua/lbind.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int decode_ref = LUA_NOREF;
static as_buf scratch = AS_BUF_INIT;

static void teardown(void) {
    if (L) lua_close(L);
    L = NULL;
    as_buf_free(&scratch);
}

static void die(const char *what, const uint8_t *data, size_t size) {
    fprintf(stderr, "json_decode: %s (input of %zu bytes: %.*s)\n", what, size,
            (int)(size > 200 ? 200 : size), (const char *)data);
    abort();
}

/* A state with the core module loaded; json.decode kept in the registry. */
static void setup(void) {
    L = luaL_newstate();
    if (L == NULL) abort();
    luaL_requiref(L, "agentsession.core", luaopen_agentsession_core, 0);
    if (lua_getfield(L, -1, "json") != LUA_TTABLE || lua_getfield(L, -1, "decode") != LUA_TFUNCTION)
        abort();
    decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    atexit(teardown);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    as_error verr, derr;
    as_status vst;
    int rc;

    if (L == NULL) setup();
    as_error_clear(&verr);
    vst = as_json_validate(text, size, &scratch, "value", &verr);
    if (vst != AS_OK && vst != AS_EINVALID) die("the validator failed without refusing", data, size);
    if (vst == AS_EINVALID && (verr.status != AS_EINVALID || verr.message[0] == '\0'))
        die("the validator refused without an error message", data, size);

    lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
    lua_pushlstring(L, text, size);
    rc = lua_pcall(L, 1, 1, 0);
    if (rc == LUA_OK) {
        if (vst != AS_OK) die("json.decode accepts what the validator refuses", data, size);
        if (lua_isnil(L, -1)) die("json.decode returned nil", data, size);
    } else {
        char expected[AS_ERROR_PATH_MAX + AS_ERROR_MESSAGE_MAX + 2];
        if (!lbind_error_get(L, -1, &derr)) {
            fprintf(stderr, "json_decode: error: %s\n", lua_tostring(L, -1));
            die("json.decode raised something other than an error object", data, size);
        }
        if (vst == AS_OK) die("json.decode refuses what the validator accepts", data, size);
        if (derr.status != AS_EINVALID) die("json.decode refused with a kind other than invalid", data, size);
        if (verr.path[0]) snprintf(expected, sizeof expected, "%s: %s", verr.path, verr.message);
        else snprintf(expected, sizeof expected, "%s", verr.message);
        expected[AS_ERROR_MESSAGE_MAX - 1] = '\0'; /* as lbind_error_get cuts the message */
        if (strcmp(expected, derr.message) != 0) {
            fprintf(stderr, "json_decode: validator: %s\njson_decode: decoder:   %s\n", expected,
                    derr.message);
            die("the validator and json.decode give different errors", data, size);
        }
    }
    lua_settop(L, 0);
    /* Each input starts as the first one of a process does: with both scratch
    ** buffers empty (data NULL). And a full collection each run, so what an
    ** input allocates is freed by its end and libFuzzer's leak check (mallocs
    ** against frees) stays meaningful. */
    as_buf_free(&scratch);
    as_buf_free(lbind_scratch(L));
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
