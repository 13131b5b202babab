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

#include <lua.h>
#include <lauxlib.h>

#include "../core/as_buf.h"
#include "../core/as_error.h"
#include "../core/as_session.h"

#define LBIND_MANAGER_MT "agentsession.SessionManager"
#define LBIND_CALL_MT "agentsession.call"
#define LBIND_ERROR_MT "agentsession.error"
#define LBIND_ARRAY_MT "agentsession.array_mt"
#define LBIND_SCRATCH_KEY "agentsession.scratch"

/* What one call of a method holds while it runs (see above). */
typedef struct lbind_call {
    as_session session;
    as_meta meta;
    as_meta_list list;
    as_buf buf;
} lbind_call;

lbind_call *lbind_call_new(lua_State *L);
/* Frees what the call holds now, rather than at the next collection. */
void lbind_call_done(lbind_call *c);

/* Raises the error object of API.md for a core error. Its `where` names the
** caller of the running C function: raise from the function Lua called, never
** from one called through lua_call or lua_pcall (the code there is not the
** user's; convert with lbind_error_get and raise again). */
int lbind_error(lua_State *L, const as_error *err);
/* Pushes the error object of err without raising it (`where` as above). */
void lbind_push_error(lua_State *L, const as_error *err);
/* Raises an error object of the given status with a message (`where` as above). */
int lbind_errorf(lua_State *L, as_status status, const char *path, const char *fmt, ...);
void lbind_error_open(lua_State *L);
/* When the value at idx is an agentsession error object, fills err with it and
** returns 1; else returns 0. Runs no Lua code. */
int lbind_error_get(lua_State *L, int idx, as_error *err);

/* A buffer kept by the Lua state for encoding and decoding (never held across
** calls into Lua code, which the codec does not make). */
as_buf *lbind_scratch(lua_State *L);

/* Encodes the value at idx as JSON into b (appended). Errors name the path from root.
** With `sorted`, object keys are written in byte order: equal values, equal text. */
as_status lbind_encode(lua_State *L, int idx, as_buf *b, const char *root, int sorted,
                       as_error *err);
/* Pushes the value of a JSON text; on failure pushes nothing. */
as_status lbind_decode(lua_State *L, const char *text, size_t len, const char *root,
                       as_error *err);
/* The same for a session document, whose own two levels do not count (AS_JSON_DOCUMENT). */
as_status lbind_decode_document(lua_State *L, const char *text, size_t len, const char *root,
                                as_error *err);
void lbind_json_open(lua_State *L);

/* Sessions and metadata. */
/* With `sorted`, messages and state are encoded with sorted keys (see lbind_encode). */
as_status lbind_to_session(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                           as_error *err);
/* An array of messages (the value at idx) as blobs appended to s. */
as_status lbind_to_messages(lua_State *L, int idx, as_session *s, as_buf *b, int sorted,
                            as_error *err);
/* The metadata of the session table at idx, checking the table's fields but
** converting no message and no state. */
as_status lbind_to_session_meta(lua_State *L, int idx, as_meta *m, as_error *err);
/* A metadata table (as list() gives) to core metadata. */
as_status lbind_to_meta(lua_State *L, int idx, as_meta *m, as_error *err);
void lbind_push_meta(lua_State *L, const as_meta *m);
void lbind_push_tags(lua_State *L, const as_meta *m);
/* Pushes {metadata, messages, state}; raises a storage error when a stored value
** does not decode, naming `where` the store keeps it (NULL: not named). */
void lbind_push_session(lua_State *L, const as_session *s, const char *where);

/* Pushes a count, as LUA_MAXINTEGER when it is larger. */
static inline void lbind_push_count(lua_State *L, size_t n) {
    lua_pushinteger(L, n > (size_t)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)n);
}

/* Pushes t[name] without running metamethods (no Lua code runs mid-call). */
int lbind_rawfield(lua_State *L, int idx, const char *name);

/* An argument that must be a string without NUL bytes (the core takes C strings). */
const char *lbind_check_text(lua_State *L, int arg, const char *path);
/* An optional whole number >= 0 in a field of an options table. */
int lbind_opt_count(lua_State *L, int tbl, const char *field, const char *path,
                    lua_Integer *out);

/* Refuses keys of an options table other than the NULL-terminated names. */
void lbind_check_options(lua_State *L, int tbl, const char *what, const char *const *names);

/* Store constructors: parse the options (raising on bad ones) into opts, push a
** closed manager with lbind_manager_new, make the store, then return
** lbind_manager_start, which opens the manager on it. */
struct as_manager_opts;
struct as_store;
void lbind_manager_opts(lua_State *L, int arg, const char *const *names,
                        struct as_manager_opts *opts);
void lbind_manager_new(lua_State *L);
/* A store whose work calls into Lua learns, before every method runs, which
** Lua state (thread) calls it; `enter` returns non-zero when the store is
** busy (a backend function called its own manager), and the method raises. */
typedef int (*lbind_enter_fn)(void *store, lua_State *L);
void lbind_manager_set_enter(lua_State *L, int idx, lbind_enter_fn enter, void *store);
int lbind_manager_start(lua_State *L, struct as_store *store, const struct as_manager_opts *opts);

void lbind_manager_open(lua_State *L);
void lbind_sqlite_open(lua_State *L);
void lbind_redis_open(lua_State *L);
void lbind_custom_open(lua_State *L);

/* The only exported symbol. */
__attribute__((visibility("default"))) int luaopen_agentsession_core(lua_State *L);

#endif
