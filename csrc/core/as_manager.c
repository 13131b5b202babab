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
    int64_t last_stamp; /* so that a later write never gets an earlier updated_at */
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
    *out = m;
    return AS_OK;
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

const char *as_manager_location(const as_manager *m) {
    return m->store->location;
}

void as_manager_stats(const as_manager *m, as_store_stats *out) {
    memset(out, 0, sizeof *out);
    if (m->store->ops->stats) m->store->ops->stats(m->store, out);
}

static int64_t stamp(as_manager *m) {
    int64_t now = as_now_ms();
    if (now < m->last_stamp) now = m->last_stamp;
    m->last_stamp = now;
    return now;
}

/* ---------------------------------------------------------------- transactions */

static as_status begin(as_manager *m, int write, as_error *err) {
    const as_store_ops *ops = m->store->ops;
    return ops->begin ? ops->begin(m->store, write, err) : AS_OK;
}

/* Commits when st is AS_OK, else rolls back; returns the final status. */
static as_status finish(as_manager *m, as_status st, as_error *err) {
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

static as_status load_meta(as_manager *m, const char *id, as_session *out, size_t *count,
                           as_error *err) {
    as_status st = m->store->ops->load(m->store, id, AS_LOAD_META, out, count, err);
    if (st == AS_ENOTFOUND) not_found(err, id);
    return st;
}

static as_status check_size(as_manager *m, const as_meta *meta, as_blob *const *msgs, size_t n,
                            as_blob *state, as_error *err) {
    as_session view;
    size_t size;
    as_status st;
    view.meta = *meta;
    view.msgs = (as_blob **)msgs;
    view.nmsgs = n;
    view.state = state;
    if ((st = as_session_json_size(&view, &size, err)) != AS_OK) return st;
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

static as_status save_in(as_manager *m, const as_session *s, as_blob *state, as_meta *meta,
                         as_error *err) {
    as_session old = { 0 };
    size_t count;
    as_write w;
    as_status st = load_meta(m, meta->id, &old, &count, err);
    int exists = st == AS_OK;
    int64_t now;
    if (st != AS_OK && st != AS_ENOTFOUND) return st;
    as_error_clear(err);
    now = stamp(m);
    if (meta->created_at == 0) meta->created_at = exists ? old.meta.created_at : now;
    meta->updated_at = now;
    meta->version = exists ? old.meta.version + 1 : 1;
    as_session_clear(&old);
    if ((st = check_size(m, meta, s->msgs, s->nmsgs, state, err)) != AS_OK) return st;
    w.meta = meta;
    w.create = !exists;
    w.keep = 0;
    w.append = s->msgs;
    w.nappend = s->nmsgs;
    w.state = state;
    w.from = NULL;
    return m->store->ops->write(m->store, &w, err);
}

as_status as_manager_save(as_manager *m, const as_session *s, as_meta *stored, as_error *err) {
    as_meta meta;
    as_blob *state = s->state;
    as_status st;
    if ((st = as_meta_copy(&meta, &s->meta, err)) != AS_OK) return st;
    if ((st = as_meta_check(&meta, err)) != AS_OK) goto done;
    if (state == NULL && (state = as_blob_new("{}", 2)) == NULL) {
        st = as_error_nomem(err);
        goto done;
    }
    do {
        meta.created_at = s->meta.created_at;
        if ((st = begin(m, 1, err)) != AS_OK) break;
        st = finish(m, save_in(m, s, state, &meta, err), err);
    } while (st == AS_ERETRY);
done:
    if (state != s->state) as_blob_unref(state);
    if (st == AS_OK) *stored = meta;
    else as_meta_clear(&meta);
    return st;
}

as_status as_manager_resume(as_manager *m, const char *id, size_t last, as_session *out,
                            as_error *err) {
    size_t count;
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    do {
        if ((st = begin(m, 0, err)) != AS_OK) break;
        st = m->store->ops->load(m->store, id, last, out, &count, err);
        if (st == AS_ENOTFOUND) not_found(err, id);
        if ((st = finish(m, st, err)) != AS_OK) as_session_clear(out);
    } while (st == AS_ERETRY);
    return st;
}

as_status as_manager_list(as_manager *m, const as_filter *f, as_meta_list *out, as_error *err) {
    as_status st;
    do {
        if ((st = begin(m, 0, err)) != AS_OK) break;
        if ((st = finish(m, m->store->ops->list(m->store, f, out, err), err)) != AS_OK)
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
    as_session src = { 0 };
    size_t count, keep;
    char uuid[37];
    as_write w;
    as_status st = m->store->ops->load(m->store, id, AS_LOAD_ALL, &src, &count, err);
    if (st == AS_ENOTFOUND) not_found(err, id);
    if (st != AS_OK) goto done;
    keep = at < src.nmsgs ? at : src.nmsgs;
    if ((st = check_texts(m, &src, keep, err)) != AS_OK) goto done;
    if ((st = as_uuid_v4(uuid, err)) != AS_OK || (st = as_meta_copy(meta, &src.meta, err)) != AS_OK)
        goto done;
    as_free(meta->id);
    as_free(meta->name);
    as_free(meta->parent_id);
    meta->id = meta->parent_id = NULL;
    if ((meta->id = as_strdup(uuid)) == NULL || (meta->parent_id = as_strdup(id)) == NULL) {
        st = as_error_nomem(err);
        goto done;
    }
    if ((st = fork_name(name, src.meta.name, &meta->name, err)) != AS_OK) goto done;
    if ((st = as_meta_check(meta, err)) != AS_OK) goto done;
    if (at != AS_KEEP_ALL) meta->turn_count = (uint32_t)(keep > UINT32_MAX ? UINT32_MAX : keep);
    meta->created_at = meta->updated_at = stamp(m);
    meta->version = 1;
    if ((st = check_size(m, meta, src.msgs, keep, src.state, err)) != AS_OK) goto done;
    w.meta = meta;
    w.create = 1;
    w.keep = 0;
    w.append = src.msgs;
    w.nappend = keep;
    w.state = src.state;
    w.from = id;
    st = m->store->ops->write(m->store, &w, err);
done:
    as_session_clear(&src);
    return st;
}

as_status as_manager_fork(as_manager *m, const char *id, const char *name, size_t at,
                          as_meta *out, as_error *err) {
    as_meta meta = { 0 };
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    if (name && (st = as_check_name(name, strlen(name), "name", err)) != AS_OK) return st;
    do {
        if ((st = begin(m, 1, err)) != AS_OK) break;
        if ((st = finish(m, fork_in(m, id, name, at, &meta, err), err)) != AS_OK)
            as_meta_clear(&meta);
    } while (st == AS_ERETRY);
    if (st == AS_OK) *out = meta;
    return st;
}

/* Reads the whole session (its texts are checked and returned), then keeps
** the first messages in the store. */
static as_status rewind_in(as_manager *m, const char *id, uint64_t turn_index, as_session *out,
                           as_error *err) {
    size_t count, keep, i;
    as_write w;
    as_status st = m->store->ops->load(m->store, id, AS_LOAD_ALL, out, &count, err);
    if (st == AS_ENOTFOUND) not_found(err, id);
    if (st != AS_OK) return st;
    keep = turn_index < out->nmsgs ? (size_t)turn_index : out->nmsgs;
    for (i = keep; i < out->nmsgs; i++) as_blob_unref(out->msgs[i]);
    out->nmsgs = keep;
    if ((st = check_texts(m, out, keep, err)) != AS_OK) return st;
    out->meta.turn_count = (uint32_t)(keep > UINT32_MAX ? UINT32_MAX : keep);
    out->meta.updated_at = stamp(m);
    out->meta.version++;
    w.meta = &out->meta;
    w.create = 0;
    w.keep = keep;
    w.append = NULL;
    w.nappend = 0;
    w.state = NULL;
    w.from = NULL;
    return m->store->ops->write(m->store, &w, err);
}

as_status as_manager_rewind(as_manager *m, const char *id, uint64_t turn_index, as_session *out,
                            as_error *err) {
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    do {
        if ((st = begin(m, 1, err)) != AS_OK) break;
        if ((st = finish(m, rewind_in(m, id, turn_index, out, err), err)) != AS_OK)
            as_session_clear(out);
    } while (st == AS_ERETRY);
    return st;
}

/* Rewrites the metadata only: the messages and state stay as stored. */
static as_status write_meta(as_manager *m, as_meta *meta, as_error *err) {
    as_write w;
    meta->updated_at = stamp(m);
    meta->version++;
    w.meta = meta;
    w.create = 0;
    w.keep = AS_KEEP_ALL;
    w.append = NULL;
    w.nappend = 0;
    w.state = NULL;
    w.from = NULL;
    return m->store->ops->write(m->store, &w, err);
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

as_status as_manager_tag(as_manager *m, const char *id, const char *const *tags, size_t ntags,
                         int remove, as_meta *out, as_error *err) {
    as_session cur = { 0 };
    size_t count, i;
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    for (i = 0; i < ntags; i++) {
        char what[32];
        snprintf(what, sizeof what, "tags[%zu]", i + 1);
        if ((st = as_check_tag(tags[i], strlen(tags[i]), what, err)) != AS_OK) return st;
    }
    do {
        as_session_clear(&cur);
        if ((st = begin(m, 1, err)) != AS_OK) break;
        if ((st = load_meta(m, id, &cur, &count, err)) == AS_OK
            && (st = change_tags(&cur.meta, tags, ntags, remove, err)) == AS_OK)
            st = write_meta(m, &cur.meta, err);
        st = finish(m, st, err);
    } while (st == AS_ERETRY);
    if (st == AS_OK) {
        *out = cur.meta;
        memset(&cur.meta, 0, sizeof cur.meta);
    }
    as_session_clear(&cur);
    return st;
}

as_status as_manager_rename(as_manager *m, const char *id, const char *name, as_error *err) {
    as_session cur = { 0 };
    size_t count;
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    if ((st = as_check_name(name, strlen(name), "name", err)) != AS_OK) return st;
    do {
        if ((st = begin(m, 1, err)) != AS_OK) break;
        if ((st = load_meta(m, id, &cur, &count, err)) == AS_OK) {
            char *copy = as_strdup(name);
            if (copy == NULL) st = as_error_nomem(err);
            else {
                as_free(cur.meta.name);
                cur.meta.name = copy;
                if ((st = as_meta_check(&cur.meta, err)) == AS_OK)
                    st = write_meta(m, &cur.meta, err);
            }
        }
        as_session_clear(&cur);
        st = finish(m, st, err);
    } while (st == AS_ERETRY);
    return st;
}

as_status as_manager_delete(as_manager *m, const char *id, as_error *err) {
    as_status st;
    if ((st = check_id(id, err)) != AS_OK) return st;
    do {
        if ((st = begin(m, 1, err)) != AS_OK) break;
        st = m->store->ops->remove(m->store, id, err);
        if (st == AS_ENOTFOUND) not_found(err, id);
        st = finish(m, st, err);
    } while (st == AS_ERETRY);
    return st;
}
