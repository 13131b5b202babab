/*
** The session manager: the rules of the contract, once, over any store.
**
** Each operation runs inside one store transaction (begin ... commit, or
** rollback on any failure), reads what it needs, computes the new metadata
** here, and hands the store a single as_write. A store with optimistic
** transactions (Redis) may answer AS_ERETRY when another client changed what
** the operation read; the operation then runs again from the start, so each
** attempt starts from the caller's arguments, never from a previous attempt.
*/
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <uuid/uuid.h>

#include "as_alloc.h"
#include "as_json.h"
#include "as_manager.h"

struct as_manager {
    as_store *store;
    size_t max_session_bytes;
    uint64_t max_total_tokens;
    int64_t last_stamp; /* so that a later write never gets an earlier updated_at */
    as_write_hook write_hook; /* see as_manager_set_write_hook */
    void *write_hook_ctx;
};

int64_t as_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

as_status as_uuid_v4(char out[37], as_error *err) {
    uuid_t u;
    (void)err;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
    return AS_OK;
}

as_status as_manager_new(as_store *store, const as_manager_opts *opts, as_manager **out,
                         as_error *err) {
    as_manager *m = as_calloc(1, sizeof *m);
    if (m == NULL) {
        store->ops->close(store);
        return as_error_nomem(err);
    }
    m->store = store;
    m->max_session_bytes = (opts && opts->max_session_bytes) ? opts->max_session_bytes
                                                             : AS_DEFAULT_MAX_SESSION_BYTES;
    m->max_total_tokens = (opts && opts->max_total_tokens && opts->max_total_tokens < AS_TOTAL_TOKENS_MAX)
                              ? opts->max_total_tokens : AS_TOTAL_TOKENS_MAX;
    *out = m;
    return AS_OK;
}

void as_manager_set_write_hook(as_manager *m, as_write_hook hook, void *ctx) {
    m->write_hook = hook;
    m->write_hook_ctx = ctx;
}

void as_manager_free(as_manager *m) {
    if (m == NULL) return;
    m->store->ops->close(m->store);
    as_free(m);
}

const char *as_manager_kind(const as_manager *m) {
    return m->store->ops->kind;
}

int as_manager_canonical(const as_manager *m) {
    return m->store->ops->canonical;
}

int as_manager_store_appends(const as_manager *m) {
    return m->store->ops->append != NULL;
}

const char *as_manager_location(const as_manager *m) {
    return m->store->location;
}

void as_manager_stats(const as_manager *m, as_store_stats *out) {
    memset(out, 0, sizeof *out);
    if (m->store->ops->stats) m->store->ops->stats(m->store, out);
}

static int64_t next_stamp(as_manager *m) {
    int64_t now = as_now_ms();
    if (now < m->last_stamp) now = m->last_stamp;
    m->last_stamp = now;
    return now;
}

/* ---------------------------------------------------------------- transactions */

/* Starts an attempt of an operation. err starts clear, so that a store's own
** not_found message (see not_found) is told from whatever err held before. */
static as_status txn_begin(as_manager *m, int write, as_error *err) {
    const as_store_ops *ops = m->store->ops;
    as_error_clear(err);
    return ops->begin ? ops->begin(m->store, write, err) : AS_OK;
}

/* Commits when st is AS_OK, else rolls back; returns the final status. */
static as_status txn_finish(as_manager *m, as_status st, as_error *err) {
    const as_store_ops *ops = m->store->ops;
    if (st == AS_OK) return ops->commit ? ops->commit(m->store, err) : AS_OK;
    if (ops->rollback) ops->rollback(m->store);
    return st;
}

/* ---------------------------------------------------------------- checks */

static as_status check_id(const char *id, as_error *err) {
    return as_check_id(id, strlen(id), "id", err);
}

/* The error of an id the store does not have, unless the store told its own
** (a custom store's backend may raise not_found with a message of its own). */
static void not_found(as_error *err, const char *id) {
    if (err->status == AS_ENOTFOUND && err->message[0]) return;
    as_error_set(err, AS_ENOTFOUND, "no session with id \"%s\"", id);
    as_error_set_id(err, id);
}

/* A stored session as a load in the current transaction found it: what a
** write or remove of it is handed (as_write.old and .found). */
typedef struct loaded {
    as_session s;
    as_stored found;
    int exists; /* the load found it; else s and found are empty */
} loaded;

/* Hands the store back what its load noted, and frees the session. */
static void loaded_clear(as_manager *m, loaded *l) {
    if (l->exists && m->store->ops->release) m->store->ops->release(m->store, &l->found);
    as_session_clear(&l->s);
    memset(l, 0, sizeof *l);
}

/* Loads the span's messages (see as_store_ops.load); not_found names the id. */
static as_status load_span(as_manager *m, const char *id, const as_span *span, loaded *out,
                           as_error *err) {
    as_status st;
    memset(out, 0, sizeof *out);
    st = m->store->ops->load(m->store, id, span, &out->s, &out->found, err);
    if (st == AS_ENOTFOUND) not_found(err, id);
    out->exists = st == AS_OK;
    return st;
}

static as_status load_meta(as_manager *m, const char *id, loaded *out, as_error *err) {
    return load_span(m, id, NULL, out, err);
}

/* The metadata of a session that may not exist (save, import): out->exists tells. */
static as_status load_if_any(as_manager *m, const char *id, loaded *out, as_error *err) {
    as_status st = load_meta(m, id, out, err);
    if (st != AS_ENOTFOUND) return st;
    as_error_clear(err);
    return AS_OK;
}

/* An as_write of what an operation computed, over the session `old` a load
** found (NULL: a new session, created). */
static void write_init(as_write *w, const as_meta *meta, size_t bytes, const loaded *old) {
    memset(w, 0, sizeof *w);
    w->meta = meta;
    w->bytes = bytes;
    w->create = old == NULL;
    w->old = old ? &old->s.meta : NULL;
    w->found = old ? &old->found : NULL;
}

/* A write; a session gone since it was read is not_found with the usual message. */
static as_status store_write(as_manager *m, const as_write *w, as_error *err) {
    as_status st;
    if (m->write_hook && (st = m->write_hook(m->write_hook_ctx, w, err)) != AS_OK) return st;
    st = m->store->ops->write(m->store, w, err);
    if (st == AS_ENOTFOUND) not_found(err, w->meta->id);
    return st;
}

static size_t add_size(size_t a, size_t b) {
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* The stored size of messages and a state (as_stored.bytes). */
static size_t body_size(as_blob *const *msgs, size_t n, const as_blob *state) {
    size_t size = state ? state->len : 2, i;
    for (i = 0; i < n; i++) size = add_size(size, add_size(msgs[i]->len, 1));
    return size;
}

/* The session's size as encoded JSON (as as_session_json_size counts it) is
** its metadata's JSON, 38 bytes of frame, and the body. */
static as_status check_size(as_manager *m, const as_meta *meta, size_t body, as_error *err) {
    as_buf b = AS_BUF_INIT;
    size_t size;
    if (as_meta_write_json(&b, meta) != 0) {
        as_buf_free(&b);
        return as_error_nomem(err);
    }
    size = add_size(add_size(b.len, 38), body);
    as_buf_free(&b);
    if (size > m->max_session_bytes) {
        as_error_set(err, AS_ETOOLARGE, "session of %zu bytes is over the limit of %zu bytes",
                     size, m->max_session_bytes);
        as_error_set_id(err, meta->id);
        return AS_ETOOLARGE;
    }
    return AS_OK;
}

static as_status check_text(const as_blob *b, const char *root, const char *where,
                            const char *id, as_buf *scratch, as_error *err) {
    char why[AS_ERROR_MESSAGE_MAX / 2];
    if (as_json_validate(b->text, b->len, scratch, root, err) == AS_OK) return AS_OK;
    if (err->status == AS_ENOMEM) return AS_ENOMEM;
    snprintf(why, sizeof why, "%.200s", err->message);
    as_error_set(err, AS_ESTORAGE, "%s: damaged store: %s of session \"%.64s\" is not JSON: %s",
                 where, root, id, why);
    as_error_set_id(err, id);
    return AS_ESTORAGE;
}

/* Texts loaded from a store outside the process may have been damaged there
** (a hand edit, a bad disk): fork and rewind check them before they commit a
** write made on the strength of them: the state and the first n messages. */
static as_status check_texts(as_manager *m, const as_session *s, size_t n, as_error *err) {
    const char *where = m->store->location;
    as_buf scratch = AS_BUF_INIT;
    as_status st = AS_OK;
    size_t i;
    if (where == NULL) return AS_OK;
    for (i = 0; i < n && st == AS_OK; i++) {
        char root[40];
        snprintf(root, sizeof root, "messages[%zu]", i + 1);
        st = check_text(s->msgs[i], root, where, s->meta.id, &scratch, err);
    }
    if (st == AS_OK && s->state) st = check_text(s->state, "state", where, s->meta.id, &scratch, err);
    as_buf_free(&scratch);
    return st;
}

/* ---------------------------------------------------------------- operations */

/* AS_ECONFLICT unless the stored version (0: none) is the one expected (< 0: any). */
static as_status check_version(const char *id, int64_t stored, int64_t expected, as_error *err) {
    if (expected < 0 || stored == expected) return AS_OK;
    if (stored == 0) as_error_set(err, AS_ECONFLICT, "session \"%.64s\" does not exist (version "
                                  "%lld was expected)", id, (long long)expected);
    else if (expected == 0) as_error_set(err, AS_ECONFLICT, "session \"%.64s\" exists (version "
                                         "%lld; none was expected)", id, (long long)stored);
    else as_error_set(err, AS_ECONFLICT, "session \"%.64s\" is at version %lld, not %lld", id,
                      (long long)stored, (long long)expected);
    as_error_set_id(err, id);
    return AS_ECONFLICT;
}

/* Writes a whole session (save, import) over `old` (NULL: a new one): its
** messages and state replace the stored ones. */
static as_status write_whole(as_manager *m, const as_session *s, as_blob *state, as_meta *meta,
                             const loaded *old, as_error *err) {
    as_write w;
    as_status st;
    size_t bytes = body_size(s->msgs, s->nmsgs, state);
    if ((st = check_size(m, meta, bytes, err)) != AS_OK) return st;
    write_init(&w, meta, bytes, old);
    w.keep = 0;
    w.append = s->msgs;
    w.nappend = s->nmsgs;
    w.state = state;
    return store_write(m, &w, err);
}

/* A window's save: the stored messages before the window are kept, the
** rest replaced. Only the replaced tail is read, to learn its size, so the
** cost follows the window, not the history. */
static as_status save_window_in(as_manager *m, const as_session *s, as_blob *state,
                                as_meta *meta, const as_window *win, as_error *err) {
    loaded old;
    as_span tail;
    size_t replaced, bytes;
    as_write w;
    as_status st;
    tail.first = win->first;
    tail.count = AS_ALL;
    st = load_span(m, meta->id, &tail, &old, err);
    if (st == AS_ENOTFOUND) {
        as_error_clear(err);
        return check_version(meta->id, 0, win->version, err);
    }
    if (st != AS_OK) return st;
    if ((st = check_version(meta->id, old.s.meta.version, win->version, err)) != AS_OK) goto done;
    if (old.found.total != win->total) {
        st = as_error_set(err, AS_EINVALID, "%zu, but version %lld of session \"%.64s\" holds "
                          "%zu messages", win->total, (long long)win->version, meta->id,
                          old.found.total);
        as_error_prefix(err, "window.total");
        goto done;
    }
    replaced = body_size(old.s.msgs, old.s.nmsgs, old.s.state);
    if (meta->created_at == 0) meta->created_at = old.s.meta.created_at;
    meta->updated_at = next_stamp(m);
    meta->version = old.s.meta.version + 1;
    bytes = add_size(old.found.bytes > replaced ? old.found.bytes - replaced : 0,
                     body_size(s->msgs, s->nmsgs, state));
    if ((st = check_size(m, meta, bytes, err)) != AS_OK) goto done;
    write_init(&w, meta, bytes, &old);
    w.keep = win->first;
    w.append = s->msgs;
    w.nappend = s->nmsgs;
    w.state = state;
    st = store_write(m, &w, err);
done:
    loaded_clear(m, &old);
    return st;
}

/* What can be told of a window before the store is asked. */
static as_status check_window(const as_window *win, int64_t expect_version, as_error *err) {
    if (win->first > win->total) {
        as_error_set(err, AS_EINVALID, "must be at most total + 1 (%zu), got %zu",
                     win->total + 1, win->first + 1);
        as_error_prefix(err, "window.first");
        return AS_EINVALID;
    }
    if (win->count < win->total - win->first) {
        as_error_set(err, AS_EINVALID, "it holds messages %zu to %zu of %zu, and a window that "
                     "stops before the end of the history cannot be saved (load it with "
                     "{ last = n } or { from = i } without count)",
                     win->first + 1, win->first + win->count, win->total);
        as_error_prefix(err, "window");
        return AS_EINVALID;
    }
    if (win->version < 1) {
        as_error_set(err, AS_EINVALID, "must be at least 1");
        as_error_prefix(err, "window.version");
        return AS_EINVALID;
    }
    if (expect_version >= 0 && expect_version != win->version) {
        as_error_set(err, AS_EINVALID, "%lld differs from the window's version %lld",
                     (long long)expect_version, (long long)win->version);
        as_error_prefix(err, "options.expect_version");
        return AS_EINVALID;
    }
    return AS_OK;
}

static as_status save_in(as_manager *m, const as_session *s, as_blob *state, as_meta *meta,
                         int64_t expect_version, as_error *err) {
    loaded old;
    int64_t now;
    as_status st = load_if_any(m, meta->id, &old, err);
    if (st != AS_OK) return st;
    if ((st = check_version(meta->id, old.exists ? old.s.meta.version : 0, expect_version, err))
        == AS_OK) {
        now = next_stamp(m);
        if (meta->created_at == 0) meta->created_at = old.exists ? old.s.meta.created_at : now;
        meta->updated_at = now;
        meta->version = old.exists ? old.s.meta.version + 1 : 1;
        st = write_whole(m, s, state, meta, old.exists ? &old : NULL, err);
    }
    loaded_clear(m, &old);
    return st;
}

static as_status import_in(as_manager *m, const as_session *s, as_blob *state, as_meta *meta,
                           int replace, as_error *err);

/* save and import: a session from the caller. import < 0: save (with
** expect_version, of a window when win is not NULL); else import, replacing a
** stored session when import > 0. */
static as_status put_session(as_manager *m, const as_session *s, const as_window *win,
                             int64_t expect_version, int import, as_meta *stored,
                             as_error *err) {
    as_meta meta;
    as_blob *state = s->state;
    as_status st;
    if ((st = as_meta_copy(&meta, &s->meta, err)) != AS_OK) return st;
    if ((st = as_meta_check(&meta, err)) != AS_OK
        || (win && (st = check_window(win, expect_version, err)) != AS_OK))
        goto done;
    if (state == NULL && (state = as_blob_new("{}", 2)) == NULL) {
        st = as_error_nomem(err);
        goto done;
    }
    do {
        meta.created_at = s->meta.created_at;
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        if (import >= 0) st = import_in(m, s, state, &meta, import, err);
        else if (win) st = save_window_in(m, s, state, &meta, win, err);
        else st = save_in(m, s, state, &meta, expect_version, err);
        st = txn_finish(m, st, err);
    } while (st == AS_ERETRY);
done:
    if (state != s->state) as_blob_unref(state);
    if (st == AS_OK) *stored = meta;
    else as_meta_clear(&meta);
    return st;
}

as_status as_manager_save(as_manager *m, const as_session *s, const as_window *win,
                          int64_t expect_version, as_meta *stored, as_error *err) {
    return put_session(m, s, win, expect_version, -1, stored, err);
}

as_status as_manager_resume(as_manager *m, const char *id, const as_span *span,
                            as_session *out, as_window *win, as_error *err) {
    static const as_span whole = { 0, AS_ALL };
    loaded l;
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    do {
        if ((st = txn_begin(m, 0, err)) != AS_OK) break;
        st = txn_finish(m, load_span(m, id, span ? span : &whole, &l, err), err);
        if (st == AS_OK && win) {
            win->first = l.found.first;
            win->count = l.s.nmsgs;
            win->total = l.found.total;
            win->version = l.s.meta.version;
        }
        if (st == AS_OK) {
            *out = l.s;
            memset(&l.s, 0, sizeof l.s);
        }
        loaded_clear(m, &l);
    } while (st == AS_ERETRY);
    return st;
}

as_status as_manager_list(as_manager *m, const as_filter *f, as_meta_list *out, as_error *err) {
    as_status st;
    do {
        if ((st = txn_begin(m, 0, err)) != AS_OK) break;
        if ((st = txn_finish(m, m->store->ops->list(m->store, f, out, err), err)) != AS_OK)
            as_meta_list_clear(out);
    } while (st == AS_ERETRY);
    return st;
}

static as_status fork_name(const char *given, const char *source, char **out, as_error *err) {
    size_t n;
    *out = NULL;
    if (given) *out = as_strdup(given);
    else if (source) {
        n = strlen(source);
        if ((*out = as_malloc(n + sizeof " (fork)")) != NULL) {
            memcpy(*out, source, n);
            memcpy(*out + n, " (fork)", sizeof " (fork)");
        }
    } else return AS_OK;
    return *out ? AS_OK : as_error_nomem(err);
}

static as_status fork_in(as_manager *m, const char *id, const char *name, size_t at,
                         as_meta *meta, as_error *err) {
    loaded l;
    const as_session *src = &l.s;
    as_span first;
    size_t keep;
    char uuid[37];
    as_write w;
    as_status st;
    first.first = 0;
    first.count = at;
    if ((st = load_span(m, id, &first, &l, err)) != AS_OK) goto done;
    keep = src->nmsgs;
    if ((st = check_texts(m, src, keep, err)) != AS_OK) goto done;
    if ((st = as_uuid_v4(uuid, err)) != AS_OK || (st = as_meta_copy(meta, &src->meta, err)) != AS_OK)
        goto done;
    as_free(meta->id);
    as_free(meta->name);
    as_free(meta->parent_id);
    meta->id = meta->name = meta->parent_id = NULL;
    if ((meta->id = as_strdup(uuid)) == NULL || (meta->parent_id = as_strdup(id)) == NULL) {
        st = as_error_nomem(err);
        goto done;
    }
    if ((st = fork_name(name, src->meta.name, &meta->name, err)) != AS_OK) goto done;
    if ((st = as_meta_check(meta, err)) != AS_OK) goto done;
    if (at != AS_KEEP_ALL) meta->turn_count = (uint32_t)(keep > UINT32_MAX ? UINT32_MAX : keep);
    meta->created_at = meta->updated_at = next_stamp(m);
    meta->version = 1;
    write_init(&w, meta, body_size(src->msgs, keep, src->state), NULL);
    if ((st = check_size(m, meta, w.bytes, err)) != AS_OK) goto done;
    w.keep = 0;
    w.append = src->msgs;
    w.nappend = keep;
    w.state = src->state;
    w.from = id;
    st = store_write(m, &w, err);
done:
    loaded_clear(m, &l);
    return st;
}

as_status as_manager_fork(as_manager *m, const char *id, const char *name, size_t at,
                          as_meta *out, as_error *err) {
    as_meta meta = { 0 };
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    if (name && (st = as_check_name(name, strlen(name), "name", err)) != AS_OK) return st;
    do {
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        if ((st = txn_finish(m, fork_in(m, id, name, at, &meta, err), err)) != AS_OK)
            as_meta_clear(&meta);
    } while (st == AS_ERETRY);
    if (st == AS_OK) *out = meta;
    return st;
}

/* Reads the messages kept (their texts are checked and returned), then
** keeps them in the store. */
static as_status rewind_in(as_manager *m, const char *id, uint64_t turn_index, as_session *out,
                           as_error *err) {
    loaded old;
    as_span kept;
    as_write w;
    as_status st;
    kept.first = 0;
    kept.count = turn_index < AS_ALL ? (size_t)turn_index : AS_ALL;
    if ((st = load_span(m, id, &kept, &old, err)) != AS_OK) return st;
    if ((st = check_texts(m, &old.s, old.s.nmsgs, err)) != AS_OK
        || (st = as_meta_copy(&out->meta, &old.s.meta, err)) != AS_OK
        || (st = as_session_push(out, old.s.msgs, old.s.nmsgs, err)) != AS_OK)
        goto done;
    out->state = as_blob_ref(old.s.state);
    out->meta.turn_count = (uint32_t)(out->nmsgs > UINT32_MAX ? UINT32_MAX : out->nmsgs);
    out->meta.updated_at = next_stamp(m);
    out->meta.version++;
    write_init(&w, &out->meta, body_size(out->msgs, out->nmsgs, out->state), &old);
    w.keep = out->nmsgs;
    st = store_write(m, &w, err);
done:
    loaded_clear(m, &old);
    return st;
}

as_status as_manager_rewind(as_manager *m, const char *id, uint64_t turn_index, as_session *out,
                            as_error *err) {
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    do {
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        if ((st = txn_finish(m, rewind_in(m, id, turn_index, out, err), err)) != AS_OK)
            as_session_clear(out);
    } while (st == AS_ERETRY);
    return st;
}

/* Rewrites the metadata of `old` only, as `meta`: the messages and state stay as stored. */
static as_status write_meta(as_manager *m, as_meta *meta, const loaded *old, as_error *err) {
    as_write w;
    meta->updated_at = next_stamp(m);
    meta->version++;
    write_init(&w, meta, old->found.bytes, old);
    w.keep = AS_KEEP_ALL;
    return store_write(m, &w, err);
}

static as_status change_tags(as_meta *meta, const char *const *tags, size_t ntags, int remove,
                             as_error *err) {
    size_t i, j, kept;
    if (remove) {
        for (i = 0, kept = 0; i < meta->ntags; i++) {
            int drop = 0;
            for (j = 0; j < ntags && !drop; j++) drop = strcmp(meta->tags[i], tags[j]) == 0;
            if (drop) as_free(meta->tags[i]);
            else meta->tags[kept++] = meta->tags[i];
        }
        meta->ntags = kept;
        return AS_OK;
    }
    for (i = 0; i < ntags; i++) {
        char **grown, *copy;
        if (as_meta_has_tag(meta, tags[i])) continue;
        if (meta->ntags >= SIZE_MAX / sizeof(char *) - 1) return as_error_nomem(err);
        grown = as_realloc(meta->tags, (meta->ntags + 1) * sizeof(char *));
        if (grown == NULL) return as_error_nomem(err);
        meta->tags = grown;
        if ((copy = as_strdup(tags[i])) == NULL) return as_error_nomem(err);
        meta->tags[meta->ntags++] = copy;
    }
    return AS_OK;
}

/* Loads the session `id`, has change(meta, ctx) change a copy of its
** metadata, and writes that copy: tag, untag, rename. `out` (may be NULL)
** receives the metadata written. */
static as_status change_meta(as_manager *m, const char *id,
                             as_status (*change)(as_meta *, const void *, as_error *),
                             const void *ctx, as_meta *out, as_error *err) {
    as_meta meta = { 0 };
    loaded old = { 0 };
    as_status st;
    do {
        as_meta_clear(&meta);
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        if ((st = load_meta(m, id, &old, err)) == AS_OK
            && (st = as_meta_copy(&meta, &old.s.meta, err)) == AS_OK
            && (st = change(&meta, ctx, err)) == AS_OK)
            st = write_meta(m, &meta, &old, err);
        loaded_clear(m, &old);
        st = txn_finish(m, st, err);
    } while (st == AS_ERETRY);
    if (st == AS_OK && out) *out = meta;
    else as_meta_clear(&meta);
    return st;
}

typedef struct tag_change {
    const char *const *tags;
    size_t ntags;
    int remove;
} tag_change;

static as_status apply_tags(as_meta *meta, const void *ctx, as_error *err) {
    const tag_change *t = ctx;
    return change_tags(meta, t->tags, t->ntags, t->remove, err);
}

static as_status apply_name(as_meta *meta, const void *ctx, as_error *err) {
    char *copy = as_strdup(ctx);
    if (copy == NULL) return as_error_nomem(err);
    as_free(meta->name);
    meta->name = copy;
    return as_meta_check(meta, err);
}

as_status as_manager_tag(as_manager *m, const char *id, const char *const *tags, size_t ntags,
                         int remove, as_meta *out, as_error *err) {
    tag_change t;
    size_t i;
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    for (i = 0; i < ntags; i++) {
        char what[32];
        snprintf(what, sizeof what, "tags[%zu]", i + 1);
        if ((st = as_check_tag(tags[i], strlen(tags[i]), what, err)) != AS_OK) return st;
    }
    t.tags = tags;
    t.ntags = ntags;
    t.remove = remove;
    return change_meta(m, id, apply_tags, &t, out, err);
}

as_status as_manager_rename(as_manager *m, const char *id, const char *name, as_error *err) {
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    if ((st = as_check_name(name, strlen(name), "name", err)) != AS_OK) return st;
    return change_meta(m, id, apply_name, name, NULL, err);
}

as_status as_manager_delete(as_manager *m, const char *id, as_error *err) {
    loaded old;
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    do {
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        if ((st = load_meta(m, id, &old, err)) == AS_OK) {
            st = m->store->ops->remove(m->store, &old.s.meta, &old.found, err);
            if (st == AS_ENOTFOUND) not_found(err, id);
        }
        loaded_clear(m, &old);
        st = txn_finish(m, st, err);
    } while (st == AS_ERETRY);
    return st;
}

/* ---------------------------------------------------------------- append */

/* An op_id is checked as an id is; a store that keeps none refuses it. */
static as_status check_op_id(as_manager *m, const char *op_id, as_error *err) {
    as_status st = as_check_op_id(op_id, strlen(op_id), "op_id", err);
    if (st != AS_OK) return st;
    if (m->store->ops->append == NULL && m->store->ops->op_applied == NULL) {
        as_error_set(err, AS_EINVALID, "the %s store keeps no op ids", m->store->ops->kind);
        as_error_prefix(err, "op_id");
        return AS_EINVALID;
    }
    return AS_OK;
}

/* Whether the append's op_id was applied to the session `old` already: then
** *a->applied is 0 and `out` takes the stored metadata (nothing is written). */
static as_status op_seen(as_manager *m, const as_append *a, loaded *old, as_meta *out,
                         as_error *err) {
    int seen = 0;
    as_status st = m->store->ops->op_applied(m->store, &old->s.meta, &old->found, a->op_id, &seen,
                                             err);
    if (st != AS_OK) return st;
    *a->applied = !seen;
    if (!seen) return AS_OK;
    *out = old->s.meta;
    memset(&old->s.meta, 0, sizeof old->s.meta);
    return AS_OK;
}

static as_status append_in(as_manager *m, const as_append *a, as_meta *out, as_error *err) {
    static const as_span no_message = { AS_SPAN_TAIL, 0 };
    loaded old;
    as_meta meta = { 0 };
    size_t bytes;
    as_write w;
    /* a new state's size replaces the stored one's, which is then read */
    as_status st = load_span(m, a->id, a->state ? &no_message : NULL, &old, err);
    if (st != AS_OK) goto done;
    if (a->op_id && (st = op_seen(m, a, &old, out, err)) != AS_OK) goto done;
    if (a->op_id && *a->applied == 0) goto done;
    if ((st = check_version(a->id, old.s.meta.version, a->expect_version, err)) != AS_OK) goto done;
    if (a->nmsgs > (size_t)(AS_TURN_COUNT_MAX - old.s.meta.turn_count)) {
        st = as_error_set(err, AS_EINVALID, "turn_count would pass %lu",
                          (unsigned long)AS_TURN_COUNT_MAX);
        goto done;
    }
    if (old.s.meta.total_tokens > a->max_tokens || a->tokens > a->max_tokens - old.s.meta.total_tokens) {
        st = as_error_set(err, AS_EINVALID, "total_tokens would pass %llu",
                          (unsigned long long)a->max_tokens);
        goto done;
    }
    if ((st = as_meta_copy(&meta, &old.s.meta, err)) != AS_OK) goto done;
    meta.turn_count += (uint32_t)a->nmsgs;
    meta.total_tokens += a->tokens;
    meta.updated_at = a->now;
    meta.version++;
    bytes = add_size(old.found.bytes, a->bytes);
    if (a->state) {
        size_t was = old.s.state ? old.s.state->len : 2;
        bytes = add_size(bytes > was ? bytes - was : 0, a->state->len);
    }
    if ((st = check_size(m, &meta, bytes, err)) != AS_OK) goto done;
    write_init(&w, &meta, bytes, &old);
    w.keep = AS_KEEP_ALL;
    w.append = a->msgs;
    w.nappend = a->nmsgs;
    w.state = a->state;
    w.op_id = a->op_id;
    if ((st = store_write(m, &w, err)) == AS_OK) {
        *out = meta;
        memset(&meta, 0, sizeof meta);
        *a->applied = 1;
    }
done:
    as_meta_clear(&meta);
    loaded_clear(m, &old);
    return st;
}

as_status as_manager_append(as_manager *m, const char *id, as_blob *const *msgs, size_t n,
                            const as_append_opts *opts, as_meta *out, as_error *err) {
    static const as_append_opts defaults = { .expect_version = -1 };
    as_append a;
    as_status st;
    size_t i;
    int applied = 1;
    if (opts == NULL) opts = &defaults;
    if ((st = check_id(id, err)) != AS_OK) return st;
    if (opts->tokens > m->max_total_tokens)
        return as_error_set(err, AS_EINVALID, "tokens: must be at most %llu",
                            (unsigned long long)m->max_total_tokens);
    if (opts->op_id && (st = check_op_id(m, opts->op_id, err)) != AS_OK) return st;
    a.op_id = opts->op_id;
    a.applied = &applied;
    a.id = id;
    a.msgs = msgs;
    a.nmsgs = n;
    a.tokens = opts->tokens;
    a.expect_version = opts->expect_version;
    a.state = opts->state;
    a.max_bytes = m->max_session_bytes;
    a.max_tokens = m->max_total_tokens;
    for (a.bytes = 0, i = 0; i < n; i++) a.bytes = add_size(a.bytes, add_size(msgs[i]->len, 1));
    do {
        a.now = next_stamp(m);
        applied = 1;
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        if (m->store->ops->append) {
            st = m->store->ops->append(m->store, &a, out, err);
            if (st == AS_ENOTFOUND) not_found(err, id);
        } else st = append_in(m, &a, out, err);
        if ((st = txn_finish(m, st, err)) != AS_OK) as_meta_clear(out);
    } while (st == AS_ERETRY);
    if (st == AS_OK && opts->applied) *opts->applied = applied;
    return st;
}

/* ---------------------------------------------------------------- export and import */

as_status as_manager_export(as_manager *m, const char *id, as_buf *out, as_error *err) {
    as_session s = { 0 };
    as_status st = as_manager_resume(m, id, NULL, &s, NULL, err);
    if (st == AS_OK) st = check_texts(m, &s, s.nmsgs, err);
    if (st == AS_OK && as_session_write_export_json(out, &s) != 0) st = as_error_nomem(err);
    as_session_clear(&s);
    return st;
}

static as_status import_in(as_manager *m, const as_session *s, as_blob *state, as_meta *meta,
                           int replace, as_error *err) {
    loaded old;
    as_status st = load_if_any(m, meta->id, &old, err);
    if (st != AS_OK) return st;
    meta->version = old.exists ? old.s.meta.version + 1 : 1;
    if (old.exists && !replace) {
        as_error_set(err, AS_ECONFLICT, "a session with id \"%.64s\" exists (import it with "
                     "replace = true to overwrite it)", meta->id);
        as_error_set_id(err, meta->id);
        st = AS_ECONFLICT;
    } else st = write_whole(m, s, state, meta, old.exists ? &old : NULL, err);
    loaded_clear(m, &old);
    return st;
}

as_status as_manager_import(as_manager *m, const as_session *s, int replace, as_meta *stored,
                            as_error *err) {
    return put_session(m, s, NULL, -1, replace ? 1 : 0, stored, err);
}

/* ---------------------------------------------------------------- search */

/* What a search keeps while it checks candidates. */
typedef struct search_run {
    as_manager *m;
    const as_query *q;
    as_buf text; /* the text of the message or label being checked */
} search_run;

/* Whether the text in r->text matches; if it does, found gets its index and snippet. */
static as_status check_text_match(search_run *r, size_t index, as_found *found, int *hit,
                                  as_error *err) {
    size_t at;
    const char *text = r->text.data ? r->text.data : "";
    *hit = as_query_match(r->q, text, r->text.len, &at);
    if (!*hit) return AS_OK;
    found->index = index;
    return as_snippet(text, r->text.len, at, &found->snippet, err);
}

static as_status check_message(search_run *r, const as_blob *msg, size_t index, as_found *found,
                               int *hit, as_error *err) {
    r->text.len = 0;
    if (as_search_text(msg->text, msg->len, &r->text) != 0) return as_error_nomem(err);
    return check_text_match(r, index, found, hit, err);
}

/* Checks the stored messages [first, first + count) of a candidate, the last
** first; a session gone since the search is no match. */
static as_status check_stored(search_run *r, const as_candidate *c, size_t first, size_t count,
                              as_found *found, int *hit, as_error *err) {
    loaded l;
    as_span span;
    size_t i;
    as_status st;
    span.first = first;
    span.count = count;
    if ((st = load_span(r->m, c->meta.id, &span, &l, err)) == AS_ENOTFOUND) {
        as_error_clear(err);
        return AS_OK;
    }
    for (i = l.s.nmsgs; st == AS_OK && i > 0 && !*hit; i--)
        st = check_message(r, l.s.msgs[i - 1], l.found.first + i, found, hit, err);
    loaded_clear(r->m, &l);
    return st;
}

/* Whether a candidate matches: its last message that does, else its label. */
static as_status check_candidate(search_run *r, const as_candidate *c, as_found *found, int *hit,
                                 as_error *err) {
    as_status st = AS_OK;
    size_t i;
    *hit = 0;
    if (c->all) st = check_stored(r, c, 0, AS_ALL, found, hit, err);
    for (i = 0; !c->all && st == AS_OK && i < c->npos && !*hit; i++) {
        if (i == 0 && c->text) st = check_message(r, c->text, c->pos[0] + 1, found, hit, err);
        else st = check_stored(r, c, c->pos[i], 1, found, hit, err);
    }
    if (st == AS_OK && !*hit) {
        r->text.len = 0;
        if (as_search_label(&c->meta, &r->text) != 0) return as_error_nomem(err);
        st = check_text_match(r, 0, found, hit, err);
    }
    if (st == AS_OK && *hit) st = as_meta_copy(&found->meta, &c->meta, err);
    return st;
}

/* A page of candidates: the store's, or every session of a page of list(). */
static as_status candidates(as_manager *m, const as_query *q, const as_filter *page,
                            as_candidate_list *out, as_error *err) {
    as_meta_list l = { 0 };
    as_status st;
    size_t i;
    if (m->store->ops->search) return m->store->ops->search(m->store, q, page, out, err);
    if ((st = m->store->ops->list(m->store, page, &l, err)) != AS_OK) return st;
    for (i = 0; i < l.n && st == AS_OK; i++) {
        as_candidate c;
        memset(&c, 0, sizeof c);
        c.meta = l.items[i];
        memset(&l.items[i], 0, sizeof l.items[i]);
        c.all = 1;
        st = as_candidate_list_take(out, &c, err);
    }
    as_meta_list_clear(&l);
    return st;
}

static as_status found_push(as_found_list *l, as_found *f, as_error *err) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        as_found *grown;
        if (cap > SIZE_MAX / sizeof *grown || (grown = as_realloc(l->items, cap * sizeof *grown)) == NULL)
            return as_error_nomem(err);
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = *f;
    memset(f, 0, sizeof *f);
    return AS_OK;
}

/* Checks candidates page by page, in list order, until the filter's page of
** matches is full or the candidates run out. */
static as_status search_in(search_run *r, const as_filter *f, as_found_list *out, as_error *err) {
    size_t skip = f->offset, need = add_size(f->offset, f->limit), from = 0;
    size_t batch = need < 16 ? 16 : need > 1024 ? 1024 : need;
    as_status st = AS_OK;
    for (;;) {
        as_candidate_list cands = { 0 };
        as_filter page = *f;
        size_t i;
        int last;
        page.offset = from;
        page.limit = batch;
        st = candidates(r->m, r->q, &page, &cands, err);
        for (i = 0; st == AS_OK && i < cands.n && out->n < f->limit; i++) {
            as_found found;
            int hit;
            memset(&found, 0, sizeof found);
            st = check_candidate(r, &cands.items[i], &found, &hit, err);
            if (st == AS_OK && hit && skip > 0) skip--;
            else if (st == AS_OK && hit) st = found_push(out, &found, err);
            as_meta_clear(&found.meta);
            as_free(found.snippet);
        }
        last = cands.n < batch;
        as_candidate_list_clear(&cands);
        if (st != AS_OK || last || out->n >= f->limit) return st;
        from = add_size(from, batch);
        if (batch < 1024) batch *= 2;
    }
}

as_status as_manager_search(as_manager *m, const char *query, const as_filter *f,
                            as_found_list *out, as_error *err) {
    search_run r;
    as_query q;
    as_status st;
    memset(out, 0, sizeof *out);
    if ((st = as_query_parse(query, &q, err)) != AS_OK) return st;
    if (f->limit == 0) {
        as_query_clear(&q);
        return AS_OK;
    }
    r.m = m;
    r.q = &q;
    r.text.data = NULL;
    r.text.len = r.text.cap = 0;
    do {
        if ((st = txn_begin(m, 0, err)) != AS_OK) break;
        if ((st = txn_finish(m, search_in(&r, f, out, err), err)) != AS_OK) as_found_list_clear(out);
    } while (st == AS_ERETRY);
    as_buf_free(&r.text);
    as_query_clear(&q);
    return st;
}

/* ---------------------------------------------------------------- prune */

#define PRUNE_PAGE 256 /* sessions listed at a time */

/* Removes, in one transaction, those of the n listed sessions that still match
** the filter when read in it; *kept counts those that no longer do. */
static as_status remove_batch(as_manager *m, const as_filter *f, const as_meta *listed, size_t n,
                              as_id_list *out, size_t *kept, as_error *err) {
    size_t had = out->n, i;
    as_status st;
    do {
        while (out->n > had) as_free(out->ids[--out->n]);
        *kept = 0;
        if ((st = txn_begin(m, 1, err)) != AS_OK) break;
        for (i = 0; i < n && st == AS_OK; i++) {
            loaded old;
            if ((st = load_meta(m, listed[i].id, &old, err)) == AS_ENOTFOUND) {
                as_error_clear(err);
                st = AS_OK;
                continue;
            }
            /* the id is noted first: a store without transactions cannot take
            ** a removal back when noting it fails */
            if (st == AS_OK && !as_meta_matches(&old.s.meta, f)) (*kept)++;
            else if (st == AS_OK && (st = as_id_list_push(out, listed[i].id, err)) == AS_OK
                     && (st = m->store->ops->remove(m->store, &old.s.meta, &old.found, err)) != AS_OK)
                as_free(out->ids[--out->n]);
            loaded_clear(m, &old);
        }
        st = txn_finish(m, st, err);
    } while (st == AS_ERETRY);
    if (st != AS_OK)
        while (out->n > had) as_free(out->ids[--out->n]);
    return st;
}

/* One walk over the sessions list() gives for the filter, removing them in
** batches. Those kept stay listed first, so the next page starts past them. */
static as_status prune_pass(as_manager *m, const as_prune *p, const as_filter *f, as_id_list *out,
                            as_error *err) {
    size_t batch = m->store->ops->prune_batch ? m->store->ops->prune_batch : 1, skipped = 0;
    for (;;) {
        as_meta_list page = { 0 };
        as_filter pf = *f;
        as_status st;
        size_t i, kept;
        int last;
        pf.offset = skipped;
        pf.limit = PRUNE_PAGE;
        if ((st = as_manager_list(m, &pf, &page, err)) != AS_OK) return st;
        for (i = 0; i < page.n && st == AS_OK; i += batch) {
            size_t k = page.n - i < batch ? page.n - i : batch;
            /* a store whose list ignores part of the filter is read again here */
            if ((st = remove_batch(m, f, page.items + i, k, out, &kept, err)) != AS_OK) break;
            skipped += kept;
            if (p->progress) st = p->progress(p->progress_ctx, out->n, err);
        }
        last = page.n < PRUNE_PAGE;
        as_meta_list_clear(&page);
        if (st != AS_OK || last) return st;
    }
}

/* keep_tag protects sessions: one no session could carry is refused. */
static as_status check_prune(const as_prune *p, as_error *err) {
    if (p->keep_tag == NULL) return AS_OK;
    return as_check_tag(p->keep_tag, strlen(p->keep_tag), "keep_tag", err);
}

as_status as_manager_prune(as_manager *m, const as_prune *p, as_id_list *out, as_error *err) {
    as_filter f = p->filter;
    as_status st;
    memset(out, 0, sizeof *out);
    if ((st = check_prune(p, err)) != AS_OK) return st;
    f.has_before = 1;
    f.before = p->before;
    f.without_tag = p->keep_tag;
    f.offset = 0;
    f.limit = SIZE_MAX;
    if (p->dry_run) {
        as_meta_list l = { 0 };
        size_t i;
        if ((st = as_manager_list(m, &f, &l, err)) != AS_OK) return st;
        /* a store whose list ignores part of the filter is held to it here */
        for (i = 0; i < l.n && st == AS_OK; i++)
            if (as_meta_matches(&l.items[i], &f)) st = as_id_list_push(out, l.items[i].id, err);
        as_meta_list_clear(&l);
    } else if (m->store->ops->prune) {
        if ((st = txn_begin(m, 1, err)) == AS_OK)
            st = txn_finish(m, m->store->ops->prune(m->store, p, out, err), err);
        if (st == AS_OK && p->progress) st = p->progress(p->progress_ctx, out->n, err);
    } else {
        size_t had;
        /* again until a walk deletes nothing: one that writers changed under
        ** it may have stepped past a session it should delete */
        do {
            had = out->n;
            st = prune_pass(m, p, &f, out, err);
        } while (st == AS_OK && out->n > had);
    }
    if (st != AS_OK) as_id_list_clear(out);
    return st;
}
