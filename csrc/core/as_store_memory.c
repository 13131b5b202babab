/*
** The memory store: sessions in this process only, lost at exit.
**
** Entries live in an array, found by id through an open-addressing hash index
** (linear probing, backward-shift deletion). Messages are shared blobs, so a
** fork copies pointers, and an append grows the entry's array in place.
** Every write allocates all it needs before it changes anything, so a failed
** write leaves the store as it was. Each entry keeps the op ids of its last
** AS_OP_IDS_KEPT appends that carried one, dropped with the entry.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_alloc.h"
#include "as_store_memory.h"

/* The op ids of an entry's last AS_OP_IDS_KEPT appends that carried one: a
** ring of their texts and hashes, and an open-addressing index of it (linear
** probing, backward-shift deletion), so that a lookup reads a slot or two
** and one hash rather than all of them. */
#define OP_SLOTS 256 /* a power of two, more than twice AS_OP_IDS_KEPT */
/* An op id shorter than this (a UUID) is kept in the ring itself, in no more
** room than an allocation of its own would take, and costs no allocation. */
#define OP_INLINE 48

typedef struct op_ids {
    uint64_t hash[AS_OP_IDS_KEPT];
    char *text[AS_OP_IDS_KEPT];   /* inline[k], or an allocation of its own */
    char inline_text[AS_OP_IDS_KEPT][OP_INLINE];
    unsigned char slot[OP_SLOTS]; /* ring index + 1; 0 = empty */
    size_t n;                     /* op ids held */
    size_t next;                  /* the ring's place for the next (its oldest once full) */
} op_ids;

typedef char op_ids_fit_a_slot[AS_OP_IDS_KEPT < 255 ? 1 : -1];

typedef struct entry {
    as_session s;
    size_t msg_cap;
    uint64_t seq; /* write order, for list's ties */
    size_t bytes; /* as_stored.bytes */
    op_ids *ops;  /* NULL until its first append with an op id */
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

static void op_text_free(op_ids *o, size_t k) {
    if (o->text[k] != o->inline_text[k]) as_free(o->text[k]);
}

static void entry_free(entry *e) {
    size_t i;
    for (i = 0; e->ops && i < e->ops->n; i++) op_text_free(e->ops, i);
    as_free(e->ops);
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

/* ---------------------------------------------------------------- op ids */

/* The hash of an op id, eight bytes at a time (an op id is read twice per
** append: once to look it up, once to record it). */
static uint64_t op_hash(const char *s) {
    size_t len = strlen(s), i;
    uint64_t h = 0x9E3779B97F4A7C15u ^ len, w;
    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9u;
        h ^= h >> 31;
    }
    w = 0;
    memcpy(&w, s + i, len - i);
    h = (h ^ w) * 0x94D049BB133111EBu;
    return h ^ (h >> 29);
}

/* Makes room for one more op id in e, copying op_id (NULL: none) into *copy
** when it is too long to be kept inline, so that recording it can no longer
** fail. */
static int ops_reserve(entry *e, const char *op_id, char **copy) {
    *copy = NULL;
    if (op_id == NULL) return 0;
    if (strlen(op_id) >= OP_INLINE && (*copy = as_strdup(op_id)) == NULL) return -1;
    if (e->ops == NULL && (e->ops = as_calloc(1, sizeof *e->ops)) == NULL) {
        as_free(*copy);
        *copy = NULL;
        return -1;
    }
    return 0;
}

/* The index slot of the ring's entry k. */
static size_t op_slot(const op_ids *o, size_t k) {
    size_t i = (size_t)o->hash[k] & (OP_SLOTS - 1);
    while (o->slot[i] != k + 1) i = (i + 1) & (OP_SLOTS - 1);
    return i;
}

static void op_unlink(op_ids *o, size_t hole) {
    size_t i = hole;
    o->slot[hole] = 0;
    for (;;) {
        size_t home;
        i = (i + 1) & (OP_SLOTS - 1);
        if (o->slot[i] == 0) return;
        home = (size_t)o->hash[o->slot[i] - 1] & (OP_SLOTS - 1);
        /* move the entry back when its home is not between the hole and it */
        if (((i - home) & (OP_SLOTS - 1)) >= ((i - hole) & (OP_SLOTS - 1))) {
            o->slot[hole] = o->slot[i];
            o->slot[i] = 0;
            hole = i;
        }
    }
}

/* Records op_id as the newest (in `copy` when ops_reserve made one), in place
** of the oldest when AS_OP_IDS_KEPT are kept. */
static void ops_push(entry *e, const char *op_id, char *copy) {
    op_ids *o = e->ops;
    size_t k = o->next, i;
    if (o->n == AS_OP_IDS_KEPT) {
        op_unlink(o, op_slot(o, k));
        op_text_free(o, k);
    } else o->n++;
    if (copy == NULL) copy = strcpy(o->inline_text[k], op_id);
    o->hash[k] = op_hash(copy);
    o->text[k] = copy;
    for (i = (size_t)o->hash[k] & (OP_SLOTS - 1); o->slot[i] != 0; i = (i + 1) & (OP_SLOTS - 1))
        continue;
    o->slot[i] = (unsigned char)(k + 1);
    o->next = (k + 1) % AS_OP_IDS_KEPT;
}

static as_status mem_op_applied(as_store *st, const as_meta *old, const as_stored *found,
                                const char *op_id, int *applied, as_error *err) {
    const op_ids *o = ((const entry *)(intptr_t)found->note)->ops;
    uint64_t hash = op_hash(op_id);
    size_t i;
    (void)st;
    (void)old;
    (void)err;
    *applied = 0;
    if (o == NULL) return AS_OK;
    for (i = (size_t)hash & (OP_SLOTS - 1); o->slot[i] != 0 && !*applied; i = (i + 1) & (OP_SLOTS - 1)) {
        size_t k = o->slot[i] - 1u;
        *applied = o->hash[k] == hash && strcmp(o->text[k], op_id) == 0;
    }
    return AS_OK;
}

/* ---------------------------------------------------------------- operations */

static as_status mem_load(as_store *st, const char *id, const as_span *span, as_session *out,
                          as_stored *info, as_error *err) {
    memory_store *ms = (memory_store *)st;
    entry *e = mem_find(ms, id);
    size_t from, n;
    if (e == NULL) return AS_ENOTFOUND;
    info->bytes = e->bytes;
    info->note = (int64_t)(intptr_t)e; /* for op_applied: entries stay put until removed */
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
    char *op = NULL;
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
    if (ops_reserve(e, w->op_id, &op) != 0) {
        as_meta_clear(&meta);
        return as_error_nomem(err);
    }
    /* nothing can fail from here on */
    if (w->op_id) ops_push(e, w->op_id, op);
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

/* ---------------------------------------------------------------- search */

/* Whether hay holds key (folded to lower case) with ASCII letters of any case. */
static int holds_folded(const char *hay, size_t n, const char *key, size_t k) {
    size_t i, j;
    for (i = 0; i + k <= n; i++) {
        for (j = 0; j < k; j++) {
            unsigned char c = (unsigned char)hay[i + j];
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + ('a' - 'A'));
            if (c != (unsigned char)key[j]) break;
        }
        if (j == k) return 1;
    }
    return 0;
}

/* Whether a message's text holds every phrase of q. A JSON text without
** escapes holds its strings as they are: one that lacks a key cannot match,
** and is passed over without reading its strings. */
static int message_matches(const as_query *q, const as_blob *b, as_buf *text, int *nomem) {
    size_t i, at;
    if (memchr(b->text, '\\', b->len) == NULL)
        for (i = 0; i < q->nkeys; i++)
            if (!holds_folded(b->text, b->len, q->keys[i], strlen(q->keys[i]))) return 0;
    text->len = 0;
    if (as_search_text(b->text, b->len, text) != 0) {
        *nomem = 1;
        return 0;
    }
    return as_query_match(q, text->data ? text->data : "", text->len, &at);
}

typedef struct mem_hit {
    entry *e;
    size_t pos; /* the last message that matches + 1; 0: none (the label may) */
} mem_hit;

static int hit_newer_first(const void *a, const void *b) {
    return newer_first(&((const mem_hit *)a)->e, &((const mem_hit *)b)->e);
}

/* Finds the sessions that match: every message of every session the filter
** keeps is read (see docs/README.md), so writes keep no index. */
static as_status mem_find_hits(memory_store *ms, const as_query *q, const as_filter *f,
                               mem_hit *hits, size_t *nhits, as_error *err) {
    as_buf text = AS_BUF_INIT;
    size_t i, k, at;
    int nomem = 0;
    *nhits = 0;
    for (i = 0; i < ms->n && !nomem; i++) {
        entry *e = ms->entries[i];
        if (!as_meta_matches(&e->s.meta, f)) continue;
        for (k = e->s.nmsgs; k > 0 && !nomem; k--)
            if (message_matches(q, e->s.msgs[k - 1], &text, &nomem)) break;
        if (k == 0 && !nomem) {
            text.len = 0;
            if (as_search_label(&e->s.meta, &text) != 0) nomem = 1;
            else if (!as_query_match(q, text.data ? text.data : "", text.len, &at)) continue;
        }
        hits[*nhits].e = e;
        hits[*nhits].pos = k;
        (*nhits)++;
    }
    as_buf_free(&text);
    return nomem ? as_error_nomem(err) : AS_OK;
}

static as_status mem_search(as_store *st, const as_query *q, const as_filter *f,
                            as_candidate_list *out, as_error *err) {
    memory_store *ms = (memory_store *)st;
    mem_hit *hits;
    size_t nhits, i;
    as_status status;
    if (ms->n == 0) return AS_OK;
    if ((hits = as_malloc(ms->n * sizeof *hits)) == NULL) return as_error_nomem(err);
    status = mem_find_hits(ms, q, f, hits, &nhits, err);
    if (status == AS_OK) qsort(hits, nhits, sizeof *hits, hit_newer_first);
    for (i = f->offset; status == AS_OK && i < nhits && out->n < f->limit; i++) {
        as_candidate c;
        memset(&c, 0, sizeof c);
        if (hits[i].pos > 0) {
            if ((c.pos = as_malloc(sizeof *c.pos)) == NULL) {
                status = as_error_nomem(err);
                break;
            }
            c.pos[0] = hits[i].pos - 1;
            c.npos = 1;
            c.text = as_blob_ref(hits[i].e->s.msgs[hits[i].pos - 1]);
        }
        if ((status = as_meta_copy(&c.meta, &hits[i].e->s.meta, err)) != AS_OK) as_candidate_clear(&c);
        else status = as_candidate_list_take(out, &c, err);
    }
    as_free(hits);
    if (status != AS_OK) as_candidate_list_clear(out);
    return status;
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
    .op_applied = mem_op_applied,
    .search = mem_search,
    .prune_batch = 256, /* no transactions: each removal is its own */
};

as_status as_store_memory_new(as_store **out, as_error *err) {
    memory_store *ms = as_calloc(1, sizeof *ms);
    if (ms == NULL) return as_error_nomem(err);
    ms->base.ops = &memory_ops;
    *out = &ms->base;
    return AS_OK;
}
