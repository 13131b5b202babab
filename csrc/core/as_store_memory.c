/*
** The memory store: sessions in this process only, lost at exit.
**
** Entries live in an array, found by id through an open-addressing hash index
** (linear probing, backward-shift deletion). Messages are shared blobs, so a
** fork copies pointers, and an append grows the entry's array in place.
** Every write allocates all it needs before it changes anything, so a failed
** write leaves the store as it was.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_alloc.h"
#include "as_store_memory.h"

typedef struct entry {
    as_session s;
    size_t msg_cap;
    uint64_t seq; /* write order, for list's ties */
    size_t bytes; /* as_stored.bytes */
} entry;

typedef struct memory_store {
    as_store base;
    entry **entries;
    size_t n, cap;
    size_t *slots;   /* entry index + 1; 0 = empty */
    size_t nslots;   /* a power of two */
    uint64_t seq;
} memory_store;

static uint64_t hash_id(const char *s) {
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211u; }
    return h;
}

/* The slot holding id, or the empty slot where it would go. */
static size_t find_slot(const memory_store *ms, const char *id) {
    size_t mask = ms->nslots - 1, i = (size_t)hash_id(id) & mask;
    while (ms->slots[i] != 0 && strcmp(ms->entries[ms->slots[i] - 1]->s.meta.id, id) != 0)
        i = (i + 1) & mask;
    return i;
}

static entry *mem_find(const memory_store *ms, const char *id) {
    size_t slot;
    if (ms->n == 0) return NULL;
    slot = find_slot(ms, id);
    return ms->slots[slot] ? ms->entries[ms->slots[slot] - 1] : NULL;
}

static int rehash(memory_store *ms, size_t nslots) {
    size_t *slots = as_calloc(nslots, sizeof(size_t)), i;
    if (slots == NULL) return -1;
    as_free(ms->slots);
    ms->slots = slots;
    ms->nslots = nslots;
    for (i = 0; i < ms->n; i++) ms->slots[find_slot(ms, ms->entries[i]->s.meta.id)] = i + 1;
    return 0;
}

/* Room for one more entry, in the array and the index (load at most 1/2). */
static int reserve_one(memory_store *ms) {
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : 16;
        entry **grown;
        if (cap > SIZE_MAX / sizeof(entry *)) return -1;
        grown = as_realloc(ms->entries, cap * sizeof(entry *));
        if (grown == NULL) return -1;
        ms->entries = grown;
        ms->cap = cap;
    }
    if ((ms->n + 1) * 2 > ms->nslots) {
        size_t nslots = ms->nslots ? ms->nslots * 2 : 32;
        if (nslots > SIZE_MAX / sizeof(size_t) || rehash(ms, nslots) != 0) return -1;
    }
    return 0;
}

static void unlink_slot(memory_store *ms, size_t hole) {
    size_t mask = ms->nslots - 1, i = hole;
    ms->slots[hole] = 0;
    for (;;) {
        size_t home;
        i = (i + 1) & mask;
        if (ms->slots[i] == 0) return;
        home = (size_t)hash_id(ms->entries[ms->slots[i] - 1]->s.meta.id) & mask;
        /* move the entry back when its home is not between the hole and it */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            ms->slots[hole] = ms->slots[i];
            ms->slots[i] = 0;
            hole = i;
        }
    }
}

static void entry_free(entry *e) {
    as_session_clear(&e->s);
    as_free(e);
}

/* Makes room for `need` messages in e. */
static int reserve_msgs(entry *e, size_t need) {
    as_blob **grown;
    size_t cap;
    if (need <= e->msg_cap) return 0;
    cap = e->msg_cap ? e->msg_cap : 8;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof(as_blob *)) return -1;
        cap *= 2;
    }
    grown = as_realloc(e->s.msgs, cap * sizeof(as_blob *));
    if (grown == NULL) return -1;
    e->s.msgs = grown;
    e->msg_cap = cap;
    return 0;
}

/* ---------------------------------------------------------------- operations */

static as_status mem_load(as_store *st, const char *id, const as_span *span, as_session *out,
                          as_stored *info, as_error *err) {
    memory_store *ms = (memory_store *)st;
    entry *e = mem_find(ms, id);
    size_t from, n;
    if (e == NULL) return AS_ENOTFOUND;
    info->bytes = e->bytes;
    memset(out, 0, sizeof *out);
    if (as_meta_copy(&out->meta, &e->s.meta, err) != AS_OK) return err->status;
    if (span == NULL) return AS_OK;
    as_span_clip(span, e->s.nmsgs, &from, &n);
    info->total = e->s.nmsgs;
    info->first = from;
    if (n > 0 && as_session_push(out, e->s.msgs + from, n, err) != AS_OK) {
        as_session_clear(out);
        return err->status;
    }
    out->state = as_blob_ref(e->s.state);
    return AS_OK;
}

static as_status mem_create(memory_store *ms, const as_write *w, as_error *err) {
    entry *e = as_calloc(1, sizeof *e);
    if (e == NULL || reserve_one(ms) != 0 || reserve_msgs(e, w->nappend) != 0
        || as_meta_copy(&e->s.meta, w->meta, err) != AS_OK) {
        if (e) { as_free(e->s.msgs); as_free(e); }
        return as_error_nomem(err);
    }
    if (w->nappend > 0) memcpy(e->s.msgs, w->append, w->nappend * sizeof(as_blob *));
    for (e->s.nmsgs = 0; e->s.nmsgs < w->nappend; e->s.nmsgs++) as_blob_ref(e->s.msgs[e->s.nmsgs]);
    e->s.state = w->state ? as_blob_ref(w->state) : as_blob_new("{}", 2);
    if (e->s.state == NULL) {
        entry_free(e);
        return as_error_nomem(err);
    }
    e->seq = ++ms->seq;
    e->bytes = w->bytes;
    ms->entries[ms->n] = e;
    ms->n++;
    ms->slots[find_slot(ms, e->s.meta.id)] = ms->n;
    return AS_OK;
}

static as_status mem_write(as_store *st, const as_write *w, as_error *err) {
    memory_store *ms = (memory_store *)st;
    entry *e = mem_find(ms, w->meta->id);
    as_meta meta;
    size_t keep, i;
    if (w->create) {
        if (e != NULL) {
            as_error_set(err, AS_ECONFLICT, "a session with id \"%s\" exists", w->meta->id);
            as_error_set_id(err, w->meta->id);
            return AS_ECONFLICT;
        }
        return mem_create(ms, w, err);
    }
    if (e == NULL) return AS_ENOTFOUND;
    keep = w->keep < e->s.nmsgs ? w->keep : e->s.nmsgs;
    if (w->nappend > SIZE_MAX - keep || reserve_msgs(e, keep + w->nappend) != 0)
        return as_error_nomem(err);
    if (as_meta_copy(&meta, w->meta, err) != AS_OK) return err->status;
    /* nothing can fail from here on */
    for (i = 0; i < w->nappend; i++) as_blob_ref(w->append[i]);
    for (i = keep; i < e->s.nmsgs; i++) as_blob_unref(e->s.msgs[i]);
    if (w->nappend > 0) memcpy(e->s.msgs + keep, w->append, w->nappend * sizeof(as_blob *));
    e->s.nmsgs = keep + w->nappend;
    if (w->state) {
        as_blob_ref(w->state);
        as_blob_unref(e->s.state);
        e->s.state = w->state;
    }
    as_meta_clear(&e->s.meta);
    e->s.meta = meta;
    e->seq = ++ms->seq;
    e->bytes = w->bytes;
    return AS_OK;
}

static as_status mem_remove(as_store *st, const as_meta *old, const as_stored *found,
                            as_error *err) {
    memory_store *ms = (memory_store *)st;
    size_t slot, index;
    (void)found;
    (void)err;
    if (ms->n == 0) return AS_ENOTFOUND;
    slot = find_slot(ms, old->id);
    if (ms->slots[slot] == 0) return AS_ENOTFOUND;
    index = ms->slots[slot] - 1;
    entry_free(ms->entries[index]);
    unlink_slot(ms, slot);
    /* move the last entry into the gap */
    ms->n--;
    if (index != ms->n) {
        ms->entries[index] = ms->entries[ms->n];
        ms->slots[find_slot(ms, ms->entries[index]->s.meta.id)] = index + 1;
    }
    return AS_OK;
}

static int newer_first(const void *a, const void *b) {
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    if (x->s.meta.updated_at != y->s.meta.updated_at)
        return x->s.meta.updated_at > y->s.meta.updated_at ? -1 : 1;
    return x->seq > y->seq ? -1 : (x->seq < y->seq ? 1 : 0);
}

static as_status mem_list(as_store *st, const as_filter *f, as_meta_list *out, as_error *err) {
    memory_store *ms = (memory_store *)st;
    entry **hits;
    size_t nhits = 0, i;
    if (ms->n == 0) return AS_OK;
    hits = as_malloc(ms->n * sizeof(entry *));
    if (hits == NULL) return as_error_nomem(err);
    for (i = 0; i < ms->n; i++)
        if (as_meta_matches(&ms->entries[i]->s.meta, f)) hits[nhits++] = ms->entries[i];
    qsort(hits, nhits, sizeof(entry *), newer_first);
    for (i = f->offset; i < nhits && out->n < f->limit; i++) {
        if (as_meta_list_push(out, &hits[i]->s.meta, err) != AS_OK) {
            as_free(hits);
            as_meta_list_clear(out);
            return err->status;
        }
    }
    as_free(hits);
    return AS_OK;
}

static void mem_close(as_store *st) {
    memory_store *ms = (memory_store *)st;
    size_t i;
    for (i = 0; i < ms->n; i++) entry_free(ms->entries[i]);
    as_free(ms->entries);
    as_free(ms->slots);
    as_free(ms);
}

static const as_store_ops memory_ops = {
    .kind = "memory",
    .load = mem_load,
    .write = mem_write,
    .remove = mem_remove,
    .list = mem_list,
    .close = mem_close,
};

as_status as_store_memory_new(as_store **out, as_error *err) {
    memory_store *ms = as_calloc(1, sizeof *ms);
    if (ms == NULL) return as_error_nomem(err);
    ms->base.ops = &memory_ops;
    *out = &ms->base;
    return AS_OK;
}
