/*
** Fuzz target: the JSON encoder, driven by decoded values.
**
** The input is decoded by the binding (lbind_decode: integers, floats, arrays
** with array_mt, null as agentsession.null). When it decodes, the value is
** encoded with sorted keys (the SQLite store's canonical form) and in table
** order (json.encode's form); each text must pass the core validator and
** decode again, and the sorted encodings of the value, of the value read back
** from the sorted text and of the value read back from the table-order text
** must be byte-identical. Both texts must also hold what the value holds
** (as many arrays, objects, members, integers, floats, strings and bytes of
** them, booleans and nulls). A decoded value that does not encode, a text that
** does not read back, or any Lua error aborts.
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
/* Kept across runs (and freed at exit), so a Lua error raised mid-encode leaks nothing. */
static as_buf sorted1 = AS_BUF_INIT, sorted2 = AS_BUF_INIT, plain = AS_BUF_INIT,
              sorted3 = AS_BUF_INIT, scratch = AS_BUF_INIT;
static const uint8_t *input;
static size_t input_size;

static void teardown(void) {
    if (L) lua_close(L);
    L = NULL;
    as_buf_free(&sorted1);
    as_buf_free(&sorted2);
    as_buf_free(&plain);
    as_buf_free(&sorted3);
    as_buf_free(&scratch);
}

static void die(const char *what, const as_error *err) {
    fprintf(stderr, "json_encode: %s", what);
    if (err) fprintf(stderr, ": %s%s%s", err->path, err->path[0] ? ": " : "", err->message);
    fprintf(stderr, " (input of %zu bytes: %.*s)\n", input_size,
            (int)(input_size > 200 ? 200 : input_size), (const char *)input);
    abort();
}

static void setup(void) {
    L = luaL_newstate();
    if (L == NULL) abort();
    luaL_requiref(L, "agentsession.core", luaopen_agentsession_core, 0);
    lua_settop(L, 0);
    atexit(teardown);
}

/* Encodes the value at idx into b (emptied first); it must encode. */
static void encode(int idx, as_buf *b, int sorted) {
    as_error err;
    as_error_clear(&err);
    b->len = 0;
    if (lbind_encode(L, idx, b, "value", sorted, &err) != AS_OK)
        die(sorted ? "a decoded value does not encode (sorted)" : "a decoded value does not encode",
            &err);
    if (b->len == 0) die("an encoding is empty", NULL);
}

/* A text the encoder wrote: valid JSON, and it decodes (the value is pushed). */
static void read_back(const as_buf *b) {
    as_error err;
    as_error_clear(&err);
    if (as_json_validate(b->data, b->len, &scratch, "value", &err) != AS_OK)
        die("the validator refuses an encoding", &err);
    if (lbind_decode(L, b->data, b->len, "value", LBIND_BIG_ERROR, &err) != AS_OK)
        die("an encoding does not decode", &err);
}

/* What a value holds, whatever the order of its members: counted once by
** walking the Lua value and once by parsing its encoding, the two must agree,
** so an encoder that turned [] into {}, an integer into a float or dropped a
** member would be caught even though its text reads back the same way. */
typedef struct shape {
    size_t arrays, objects, members, ints, floats, strings, trues, falses, nulls;
    size_t string_bytes, key_bytes;
} shape;

static void walk(lua_State *Ls, int idx, const void *array_mt, shape *sh) {
    idx = lua_absindex(Ls, idx);
    switch (lua_type(Ls, idx)) {
    case LUA_TTABLE: {
        int marked = 0;
        if (!lua_checkstack(Ls, 4)) die("Lua stack exhausted", NULL);
        if (lua_getmetatable(Ls, idx)) {
            marked = lua_topointer(Ls, -1) == array_mt;
            lua_pop(Ls, 1);
        }
        if (marked) {
            lua_Integer i, n = (lua_Integer)lua_rawlen(Ls, idx);
            sh->arrays++;
            for (i = 1; i <= n; i++) {
                lua_rawgeti(Ls, idx, i);
                walk(Ls, -1, array_mt, sh);
                lua_pop(Ls, 1);
            }
        } else {
            sh->objects++;
            lua_pushnil(Ls);
            while (lua_next(Ls, idx)) {
                size_t len;
                if (lua_type(Ls, -2) != LUA_TSTRING) die("a decoded object has a key that is not a string", NULL);
                lua_tolstring(Ls, -2, &len);
                sh->members++;
                sh->key_bytes += len;
                walk(Ls, -1, array_mt, sh);
                lua_pop(Ls, 1);
            }
        }
        break;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(Ls, idx)) sh->ints++;
        else sh->floats++;
        break;
    case LUA_TSTRING: {
        size_t len;
        lua_tolstring(Ls, idx, &len);
        sh->strings++;
        sh->string_bytes += len;
        break;
    }
    case LUA_TBOOLEAN:
        if (lua_toboolean(Ls, idx)) sh->trues++;
        else sh->falses++;
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(Ls, idx) != NULL) die("a decoded light userdata is not null", NULL);
        sh->nulls++;
        break;
    default:
        die("a decoded value of a type JSON does not have", NULL);
    }
}

static int c_null(void *ctx) { ((shape *)ctx)->nulls++; return 0; }
static int c_boolean(void *ctx, int v) { if (v) ((shape *)ctx)->trues++; else ((shape *)ctx)->falses++; return 0; }
static int c_integer(void *ctx, int64_t v) { (void)v; ((shape *)ctx)->ints++; return 0; }
static int c_number(void *ctx, double v) { (void)v; ((shape *)ctx)->floats++; return 0; }
static int c_string(void *ctx, const char *s, size_t len) {
    (void)s;
    ((shape *)ctx)->strings++;
    ((shape *)ctx)->string_bytes += len;
    return 0;
}
static int c_begin_array(void *ctx) { ((shape *)ctx)->arrays++; return 0; }
static int c_begin_object(void *ctx) { ((shape *)ctx)->objects++; return 0; }
static int c_key(void *ctx, const char *s, size_t len) {
    (void)s;
    ((shape *)ctx)->members++;
    ((shape *)ctx)->key_bytes += len;
    return 0;
}
static int c_item(void *ctx, size_t index) { (void)ctx; (void)index; return 0; }
static int c_none(void *ctx) { (void)ctx; return 0; }

static const as_json_sink counting_sink = {
    c_null, c_boolean, c_integer, c_number, c_string, c_begin_array, c_item, c_none,
    c_begin_object, c_key, c_none, c_none, NULL
};

/* The shape of the value at idx must be the shape of the text b. */
static void check_shape(lua_State *Ls, int idx, const as_buf *b) {
    shape of_value, of_text;
    as_error err;
    const void *array_mt;
    memset(&of_value, 0, sizeof of_value);
    memset(&of_text, 0, sizeof of_text);
    as_error_clear(&err);
    lua_getfield(Ls, LUA_REGISTRYINDEX, LBIND_ARRAY_MT);
    array_mt = lua_topointer(Ls, -1);
    lua_pop(Ls, 1);
    walk(Ls, idx, array_mt, &of_value);
    if (as_json_parse(b->data, b->len, &counting_sink, &of_text, &scratch, 0, "value", &err) != AS_OK)
        die("the validator refuses an encoding", &err);
    if (memcmp(&of_value, &of_text, sizeof of_value) != 0) {
        fprintf(stderr, "json_encode: text: %.*s\n", (int)b->len, b->data);
        die("an encoding does not hold what its value holds", NULL);
    }
}

static int same(const as_buf *a, const as_buf *b) {
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Runs under lua_pcall: argument 1 is the input. */
static int roundtrip(lua_State *Ls) {
    size_t len;
    const char *text = lua_tolstring(Ls, 1, &len);
    as_error err;
    int value;
    as_error_clear(&err);
    if (lbind_decode(Ls, text, len, "value", LBIND_BIG_ERROR, &err) != AS_OK) {
        if (err.status != AS_EINVALID) die("the decoder failed without refusing", &err);
        return 0;
    }
    value = lua_gettop(Ls);
    encode(value, &sorted1, 1);
    encode(value, &plain, 0);
    check_shape(Ls, value, &sorted1);
    check_shape(Ls, value, &plain);
    read_back(&sorted1);
    encode(lua_gettop(Ls), &sorted2, 1);
    if (!same(&sorted1, &sorted2)) {
        fprintf(stderr, "json_encode: first:  %.*s\njson_encode: second: %.*s\n",
                (int)sorted1.len, sorted1.data, (int)sorted2.len, sorted2.data);
        die("encode(decode(encode(v))) differs from encode(v)", NULL);
    }
    read_back(&plain);
    encode(lua_gettop(Ls), &sorted3, 1);
    if (!same(&sorted1, &sorted3)) {
        fprintf(stderr, "json_encode: sorted:          %.*s\njson_encode: via table order: %.*s\n",
                (int)sorted1.len, sorted1.data, (int)sorted3.len, sorted3.data);
        die("the table-order text reads back as a different value", NULL);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (L == NULL) setup();
    input = data;
    input_size = size;
    lua_pushcfunction(L, roundtrip);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        as_error err;
        if (lbind_error_get(L, -1, &err)) die("an error raised during the round trip", &err);
        fprintf(stderr, "json_encode: Lua error: %s\n",
                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
        die("a Lua error during the round trip", NULL);
    }
    lua_settop(L, 0);
    /* Each input starts with the scratch buffers empty (data NULL), as the
    ** first decode of a process does; a full collection frees what it made. */
    as_buf_free(&scratch);
    as_buf_free(lbind_scratch(L));
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
