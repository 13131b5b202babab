/*
** The Lua binding of the core: what its files share.
**
** The binding converts Lua values to core calls and core results to Lua values.
** Memory the core allocates for a call is always held by a call record (a
** userdata with __gc), so a Lua error raised anywhere mid-call (a longjmp)
** leaks nothing: the garbage collector frees what the call held.
*/
#ifndef LBIND_H
#define LBIND_H

#include "lcompat.h"

#include "../core/as_buf.h"
#include "../core/as_error.h"
#include "../core/as_manager.h"
#include "../core/as_session.h"

#define LBIND_MANAGER_MT "agentsession.SessionManager"
#define LBIND_CALL_MT "agentsession.call"
#define LBIND_ERROR_MT "agentsession.error"
#define LBIND_ARRAY_MT "agentsession.array_mt"
#define LBIND_SCRATCH_KEY "agentsession.scratch"

/* ---------------------------------------------------------------- lcommon.c: what every file shares */

/* What one call of a method holds while it runs (see above). */
typedef struct lbind_call {
    as_session session;
    as_meta meta;
    as_meta_list list;
    as_buf buf;
    as_found_list found; /* search's */
    as_id_list ids;      /* prune's */
} lbind_call;

lbind_call *lbind_call_new(lua_State *L);
/* Frees what the call holds now, rather than at the next collection. */
void lbind_call_done(lbind_call *c);
/* A buffer kept by the Lua state for encoding and decoding (never held across
** calls into Lua code, which the codec does not make). */
as_buf *lbind_scratch(lua_State *L);
/* Makes the scratch buffer and the call records' metatable (luaopen does). */
void lbind_shared_open(lua_State *L);

/* Pushes t[name] without running metamethods (no Lua code runs mid-call). */
int lbind_rawfield(lua_State *L, int idx, const char *name);
/* The length n of the table at idx when its keys are exactly 1..n (0 when
** empty), else -1. */
lua_Integer lbind_array_len(lua_State *L, int idx);
/* Whether the value at idx has the metatable registered under tname. */
static inline int lbind_has_metatable(lua_State *L, int idx, const char *tname) {
    int yes;
    if (!lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, tname);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return yes;
}
/* Pushes a count, as LUA_MAXINTEGER when it is larger. */
static inline void lbind_push_count(lua_State *L, size_t n) {
    lua_pushinteger(L, n > (size_t)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)n);
}
/* A Lua integer >= 0 as a size (SIZE_MAX when it is larger). */
size_t lbind_size(lua_Integer v);

/* The string at idx, which the core takes as a C string: a NUL in it would
** cut it short, so it is refused (invalid, naming path) as the control
** character it is. */
const char *lbind_text(lua_State *L, int idx, const char *path);
/* An argument that must be a string (else an argument error) without NUL bytes. */
const char *lbind_check_text(lua_State *L, int arg, const char *path);

/* Options tables. `what` names the table in messages ("options", "filter"),
** and a field's path is what.field. Each reader takes the field raw; absent
** (nil) is the default. */
/* Refuses keys other than the NULL-terminated names ("unknown <noun> \"k\""). */
void lbind_check_keys(lua_State *L, int tbl, const char *what, const char *const *names,
                      const char *noun);
void lbind_check_options(lua_State *L, int tbl, const char *what, const char *const *names);
/* A whole number in [lo, hi] into *out; returns 0 (out untouched) when absent. */
int lbind_opt_int(lua_State *L, int tbl, const char *what, const char *field, lua_Integer lo,
                  lua_Integer hi, lua_Integer *out);
int lbind_opt_bool(lua_State *L, int tbl, const char *what, const char *field, int dflt);
/* A string of min..max bytes without NUL (the table keeps it alive); NULL when absent. */
const char *lbind_opt_text(lua_State *L, int tbl, const char *what, const char *field,
                           size_t min, size_t max);
/* The index of the field's value in the NULL-terminated names, dflt when absent. */
int lbind_opt_enum(lua_State *L, int tbl, const char *what, const char *field,
                   const char *const *names, int dflt);

/* ---------------------------------------------------------------- lerror.c: error objects */

/* Raises the error object of API.md for a core error. Its `where` names the
** caller of the running C function: raise from the function Lua called, never
** from one called through lua_call or lua_pcall (the code there is not the
** user's; convert with lbind_error_get and raise again). */
int lbind_error(lua_State *L, const as_error *err);
/* Pushes the error object of err without raising it (`where` as above). */
void lbind_push_error(lua_State *L, const as_error *err);
/* Raises an error object of the given status with a message (`where` as above). */
int lbind_errorf(lua_State *L, as_status status, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* When the value at idx is an agentsession error object, fills err with it and
** returns 1; else returns 0. Runs no Lua code. */
int lbind_error_get(lua_State *L, int idx, as_error *err);
/* Makes the error metatable. */
void lbind_error_open(lua_State *L);
int lbind_is_error(lua_State *L);  /* agentsession.is_error(value [, kind]) */
int lbind_new_error(lua_State *L); /* core.new_error(kind, message [, id [, level]]) */

/* ---------------------------------------------------------------- ljson.c: the codec */

/* How an integer beyond 2^53 is read where numbers are doubles (Lua 5.1, 5.2,
** LuaJIT): the option big_integers of the constructors and of json.decode. */
enum { LBIND_BIG_ERROR, LBIND_BIG_FLOAT, LBIND_BIG_STRING };
extern const char *const lbind_big_names[]; /* "error", "float", "string", NULL */
/* The option big_integers of the table at tbl (checked on every Lua). */
int lbind_opt_big(lua_State *L, int tbl, const char *what);
/* Whether the number at idx is written as a JSON integer, which it is then in
** *out: an integer where Lua has them; elsewhere a number with an integral
** value of magnitude at most 2^53 (but -0). */
int lbind_whole(lua_State *L, int idx, int64_t *out);
/* Pushes an integer read from a store or a text: beyond 2^53 where numbers are
** doubles, as `big` says; returns 0, or 1 with err set (invalid) when "error"
** refuses it (nothing pushed). */
int lbind_push_int64(lua_State *L, int64_t v, int big, as_error *err);

/* Encodes the value at idx as JSON into b (appended). Errors name the path from root.
** With `sorted`, object keys are written in byte order: equal values, equal text. */
as_status lbind_encode(lua_State *L, int idx, as_buf *b, const char *root, int sorted,
                       as_error *err);
/* Pushes the value of a JSON text, integers beyond 2^53 as `big` says; on failure
** pushes nothing. */
as_status lbind_decode(lua_State *L, const char *text, size_t len, const char *root, int big,
                       as_error *err);
/* The same for a session document, whose own two levels do not count (AS_JSON_DOCUMENT). */
as_status lbind_decode_document(lua_State *L, const char *text, size_t len, const char *root,
                                int big, as_error *err);
/* Sets json, null, array_mt and array in the module table at the top. */
void lbind_json_open(lua_State *L);

/* ---------------------------------------------------------------- lsession.c: sessions */

/* With `sorted`, messages and state are encoded with sorted keys (see lbind_encode). */
as_status lbind_to_session(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                           as_error *err);
/* An array of messages (the value at idx) as blobs appended to s. */
as_status lbind_to_messages(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                            as_error *err);
/* A session table a custom store's backend returned, which may also carry the
** field op_ids (not converted: lcustom.c reads it). */
as_status lbind_to_stored_session(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                                  as_error *err);
/* The metadata of such a table, checking the table's fields but converting no
** message and no state. */
as_status lbind_to_session_meta(lua_State *L, int idx, as_meta *m, as_error *err);
/* A metadata table (as list() gives) to core metadata. */
as_status lbind_to_meta(lua_State *L, int idx, as_meta *m, as_error *err);
/* Pushes the metadata table; a count, time or version beyond 2^53 where numbers
** are doubles as `big` says (raising invalid, naming the field, for "error"). */
void lbind_push_meta(lua_State *L, const as_meta *m, int big);
void lbind_push_tags(lua_State *L, const as_meta *m);
/* Pushes {metadata, messages, state}; raises a storage error when a stored value
** does not decode, naming `where` the store keeps it (NULL: not named), and
** invalid for an integer beyond 2^53 that `big` refuses. */
void lbind_push_session(lua_State *L, const as_session *s, const char *where, int big);

/* ---------------------------------------------------------------- lmanager.c: the manager */

/* Store constructors: parse the options (raising on bad ones) into opts, push a
** closed manager with lbind_manager_new, make the store, then return
** lbind_manager_start, which opens the manager on it. */
/* A manager's options: the core's, and how it reads integers beyond 2^53 (big_integers). */
typedef struct lbind_opts {
    as_manager_opts core;
    int big; /* LBIND_BIG_* */
} lbind_opts;
void lbind_manager_opts(lua_State *L, int arg, const char *const *names, lbind_opts *opts);
void lbind_manager_new(lua_State *L);
/* A store whose work calls into Lua learns, before every method runs, which
** Lua state (thread) calls it; `enter` returns non-zero when the store is
** busy (a backend function called its own manager), and the method raises. */
typedef int (*lbind_enter_fn)(void *store, lua_State *L);
void lbind_manager_set_enter(lua_State *L, int idx, lbind_enter_fn enter, void *store);
int lbind_manager_start(lua_State *L, as_store *store, const lbind_opts *opts);
/* Makes the manager's metatable and methods. */
void lbind_manager_open(lua_State *L);

/* ---------------------------------------------------------------- the stores' constructors */

int lbind_new_memory(lua_State *L); /* lmemory.c: agentsession.memory([opts]) */
int lbind_new_sqlite(lua_State *L); /* lsqlite.c: agentsession.sqlite(path [, opts]) */
int lbind_new_redis(lua_State *L);  /* lredis.c: agentsession.redis([opts]) */
int lbind_new_custom(lua_State *L); /* lcustom.c: agentsession.custom(backend [, opts]) */

/* The only exported symbol (lmodule.c). */
__attribute__((visibility("default"))) int luaopen_agentsession_core(lua_State *L);

#endif
