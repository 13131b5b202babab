/*
** Sessions from JSON text (see as_session_json.h).
**
** One sink over as_json's parser reads the frame of a document (its fields,
** the metadata, the window) itself and hands each message and the state to a
** value writer, which writes them back compactly into blobs. The writer keeps
** the members of each open object, so that it can refuse a repeated key and,
** for a store that compares texts, put the members in byte order of their keys
** when the object closes.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_alloc.h"
#include "as_json.h"
#include "as_session_json.h"

/* A value as the parser reports it; containers only by their type. */
enum { T_NULL, T_BOOLEAN, T_NUMBER, T_STRING, T_ARRAY, T_OBJECT };

static const char *const type_names[] = { "null", "boolean", "number", "string", "array", "object" };

typedef struct scalar {
    int type;
    int is_int;    /* T_NUMBER: an integer literal that fits in 64 bits */
    int64_t i;     /* T_BOOLEAN, and T_NUMBER when is_int */
    double d;      /* T_NUMBER otherwise */
    const char *s; /* T_STRING */
    size_t len;
} scalar;

/* ---------------------------------------------------------------- value writer */

/* A member of an open object: its key (unescaped, in the key arena) and where
** its text ("key":value) lies in the output. */
typedef struct vw_member {
    size_t key_off, key_len;
    const char *key; /* set when the object closes, once the arena stops moving */
    size_t start, end;
} vw_member;

typedef struct vw_frame {
    int object;
    size_t open;         /* where its '{' or '[' is in the output */
    size_t first_member; /* its members, from here to the end of `members` */
    size_t keys_len;     /* the key arena's length when it opened */
    size_t count;        /* items or members so far */
} vw_frame;

typedef struct value_writer {
    as_buf out;  /* the value's text */
    as_buf keys; /* key arena */
    as_buf tmp;  /* an object's members while they are put in order */
    vw_member *members;
    size_t nmembers, cap;
    vw_frame frames[AS_JSON_MAX_DEPTH];
    int depth;
    int canonical;
    as_error *err;
} value_writer;

static void vw_init(value_writer *w, int canonical, as_error *err) {
    memset(w, 0, sizeof *w);
    w->canonical = canonical;
    w->err = err;
}

static void vw_free(value_writer *w) {
    as_buf_free(&w->out);
    as_buf_free(&w->keys);
    as_buf_free(&w->tmp);
    as_free(w->members);
    w->members = NULL;
    w->nmembers = w->cap = 0;
}

static void vw_reset(value_writer *w) {
    w->out.len = w->keys.len = 0;
    w->nmembers = 0;
    w->depth = 0;
}

static int vw_nomem(value_writer *w) {
    as_error_nomem(w->err);
    return 1;
}

/* Before any value: the comma between the items of an array. */
static int vw_value(value_writer *w) {
    vw_frame *f;
    if (w->depth == 0) return 0;
    f = &w->frames[w->depth - 1];
    if (!f->object && f->count++ > 0 && as_buf_putc(&w->out, ',') != 0) return vw_nomem(w);
    return 0;
}

static int vw_scalar(value_writer *w, const scalar *v) {
    int r;
    if (vw_value(w)) return 1;
    switch (v->type) {
    case T_NULL: r = as_buf_puts(&w->out, "null"); break;
    case T_BOOLEAN: r = v->i ? as_buf_puts(&w->out, "true") : as_buf_puts(&w->out, "false"); break;
    case T_NUMBER:
        /* the parser refuses what overflows a double: a finite number here */
        r = v->is_int ? as_json_write_integer(&w->out, v->i) : as_json_write_double(&w->out, v->d);
        break;
    default: r = as_json_write_string(&w->out, v->s, v->len, NULL); break; /* UTF-8 checked */
    }
    return r != 0 ? vw_nomem(w) : 0;
}

static int vw_open(value_writer *w, int object) {
    vw_frame *f;
    if (vw_value(w)) return 1;
    if (w->depth == AS_JSON_MAX_DEPTH) {
        as_error_set(w->err, AS_EINVALID, "nesting deeper than %d levels", AS_JSON_MAX_DEPTH);
        return 1;
    }
    f = &w->frames[w->depth++];
    f->object = object;
    f->open = w->out.len;
    f->first_member = w->nmembers;
    f->keys_len = w->keys.len;
    f->count = 0;
    return as_buf_putc(&w->out, object ? '{' : '[') != 0 ? vw_nomem(w) : 0;
}

static int vw_key(value_writer *w, const char *k, size_t len) {
    vw_frame *f = &w->frames[w->depth - 1];
    vw_member *m;
    if (f->count++ > 0 && as_buf_putc(&w->out, ',') != 0) return vw_nomem(w);
    if (w->nmembers == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        vw_member *grown;
        if (cap > SIZE_MAX / sizeof *grown) return vw_nomem(w);
        if ((grown = as_realloc(w->members, cap * sizeof *grown)) == NULL) return vw_nomem(w);
        w->members = grown;
        w->cap = cap;
    }
    m = &w->members[w->nmembers++];
    m->key_off = w->keys.len;
    m->key_len = len;
    m->start = w->out.len;
    m->end = w->out.len;
    if (as_buf_put(&w->keys, k, len) != 0 || as_json_write_string(&w->out, k, len, NULL) != 0
        || as_buf_putc(&w->out, ':') != 0)
        return vw_nomem(w);
    return 0;
}

/* After a member's value. */
static void vw_member_done(value_writer *w) {
    w->members[w->nmembers - 1].end = w->out.len;
}

static int member_cmp(const vw_member *a, const vw_member *b) {
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = n ? memcmp(a->key, b->key, n) : 0;
    return c != 0 ? c : (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

static int member_qsort_cmp(const void *a, const void *b) {
    return member_cmp(a, b);
}

static void sort_members(vw_member *ms, size_t n) {
    size_t i, j;
    if (n > 16) {
        qsort(ms, n, sizeof *ms, member_qsort_cmp);
        return;
    }
    for (i = 1; i < n; i++) {
        vw_member m = ms[i];
        for (j = i; j > 0 && member_cmp(&ms[j - 1], &m) > 0; j--) ms[j] = ms[j - 1];
        ms[j] = m;
    }
}

/* Writes the object's members again in the order of `ms` (same length). */
static int vw_reorder(value_writer *w, const vw_frame *f, const vw_member *ms, size_t n) {
    size_t body = f->open + 1, i;
    w->tmp.len = 0;
    if (as_buf_put(&w->tmp, w->out.data + body, w->out.len - body) != 0) return vw_nomem(w);
    w->out.len = body;
    for (i = 0; i < n; i++)
        if ((i > 0 && as_buf_putc(&w->out, ',') != 0)
            || as_buf_put(&w->out, w->tmp.data + (ms[i].start - body), ms[i].end - ms[i].start) != 0)
            return vw_nomem(w);
    return 0;
}

/* Refuses a repeated key among the members of an object that closes and,
** for a canonical text, writes them again in byte order of their keys. */
static int vw_order(value_writer *w, const vw_frame *f, vw_member *ms, size_t n) {
    const char *arena = w->keys.data ? w->keys.data : "";
    size_t i;
    int ordered = 1;
    for (i = 0; i < n; i++) ms[i].key = arena + ms[i].key_off;
    for (i = 1; i < n && ordered; i++) ordered = member_cmp(&ms[i - 1], &ms[i]) < 0;
    if (ordered) return 0;
    sort_members(ms, n);
    for (i = 1; i < n; i++)
        if (member_cmp(&ms[i - 1], &ms[i]) == 0) {
            as_error_set(w->err, AS_EINVALID, "the key appears more than once in its object");
            as_error_prefix_key(w->err, ms[i].key, ms[i].key_len);
            return 1;
        }
    return w->canonical ? vw_reorder(w, f, ms, n) : 0;
}

static int vw_close_object(value_writer *w) {
    vw_frame *f = &w->frames[w->depth - 1];
    size_t n = w->nmembers - f->first_member;
    /* one member or none is in order (and `members` may still be NULL then) */
    if (n > 1 && vw_order(w, f, w->members + f->first_member, n)) return 1;
    w->nmembers = f->first_member;
    w->keys.len = f->keys_len;
    w->depth--;
    return as_buf_putc(&w->out, '}') != 0 ? vw_nomem(w) : 0;
}

static int vw_close_array(value_writer *w) {
    w->depth--;
    return as_buf_putc(&w->out, ']') != 0 ? vw_nomem(w) : 0;
}

/* ---------------------------------------------------------------- documents */

typedef enum { MODE_DOCUMENT, MODE_MESSAGES, MODE_VALUE } doc_mode;

enum { F_METADATA, F_MESSAGES, F_STATE, F_WINDOW };
static const char *const doc_fields[] = { "metadata", "messages", "state", "window", NULL };

enum { M_ID, M_NAME, M_TAGS, M_AGENT_NAME, M_CREATED_AT, M_UPDATED_AT, M_TURN_COUNT,
       M_TOTAL_TOKENS, M_VERSION, M_PARENT_ID };
static const char *const meta_fields[] = {
    "id", "name", "tags", "agent_name", "created_at", "updated_at", "turn_count",
    "total_tokens", "version", "parent_id", NULL
};

enum { W_FIRST, W_COUNT, W_TOTAL, W_VERSION };
static const char *const window_fields[] = { "first", "count", "total", "version", NULL };

typedef struct doc_parser {
    value_writer w;
    doc_mode mode;
    as_doc_form form;
    int capturing; /* the writer is taking a message, the state or the value */
    int level;     /* containers open outside the writer: 1 the document (or the
                   ** array of messages), 2 metadata, messages or window, 3 tags */
    int field;     /* the document's member being read */
    int sub;       /* the member of metadata or window being read */
    unsigned seen, meta_seen, window_seen; /* keys read so far, a bit each */
    unsigned window_given;                 /* the window's fields given a number */
    int has_window;
    as_session *s;
    size_t msgs_cap, tags_cap;
    int64_t window[4];
    as_blob *value; /* MODE_VALUE */
    as_error *err;
} doc_parser;

static int fail(doc_parser *d, const char *message) {
    as_error_set(d->err, AS_EINVALID, "%s", message);
    return 1;
}

static int fail_type(doc_parser *d, const char *want, int got) {
    as_error_set(d->err, AS_EINVALID, "must be %s (got %s)", want, type_names[got]);
    return 1;
}

static int nomem(doc_parser *d) {
    as_error_nomem(d->err);
    return 1;
}

static int lookup(const char *const *names, const char *k, size_t len) {
    int i;
    for (i = 0; names[i]; i++)
        if (strlen(names[i]) == len && memcmp(names[i], k, len) == 0) return i;
    return -1;
}

/* Whether the value starting now is a message, the state or the value taken whole. */
static int at_capture(const doc_parser *d) {
    if (d->mode == MODE_VALUE) return d->level == 0;
    if (d->mode == MODE_MESSAGES) return d->level == 1;
    return (d->level == 1 && d->field == F_STATE) || (d->level == 2 && d->field == F_MESSAGES);
}

static int push_message(doc_parser *d, as_blob *b) {
    as_session *s = d->s;
    if (s->nmsgs == d->msgs_cap) {
        size_t cap = d->msgs_cap ? d->msgs_cap * 2 : 16;
        as_blob **grown;
        if (cap > SIZE_MAX / sizeof *grown || (grown = as_realloc(s->msgs, cap * sizeof *grown)) == NULL) {
            as_blob_unref(b);
            return nomem(d);
        }
        s->msgs = grown;
        d->msgs_cap = cap;
    }
    s->msgs[s->nmsgs++] = b;
    return 0;
}

/* The writer holds a whole message, state or value. */
static int captured(doc_parser *d) {
    as_blob *b = as_blob_new(d->w.out.data ? d->w.out.data : "", d->w.out.len);
    d->capturing = 0;
    if (b == NULL) return nomem(d);
    if (d->mode == MODE_VALUE) d->value = b;
    else if (d->mode == MODE_DOCUMENT && d->field == F_STATE) d->s->state = b;
    else return push_message(d, b);
    return 0;
}

/* A text field of the metadata: a string without NUL, or null (absent). */
static int meta_text(doc_parser *d, const scalar *v, char **out) {
    if (v->type == T_NULL) return 0;
    if (v->type != T_STRING) return fail_type(d, "a string", v->type);
    if (memchr(v->s, '\0', v->len) != NULL) return fail(d, "control character (NUL) in string");
    return (*out = as_strndup(v->s, v->len)) == NULL ? nomem(d) : 0;
}

/* A whole number (an integral float too) of the document, in *out. */
static int whole_number(doc_parser *d, const scalar *v, int64_t *out) {
    if (v->type != T_NUMBER) return fail_type(d, "an integer", v->type);
    if (v->is_int) {
        *out = v->i;
        return 0;
    }
    /* 2^63 is exact as a double; every integral double below it fits */
    if (!(v->d >= -9223372036854775808.0 && v->d < 9223372036854775808.0)
        || (double)(int64_t)v->d != v->d)
        return fail(d, "must be a whole number");
    *out = (int64_t)v->d;
    return 0;
}

static int meta_count(doc_parser *d, const scalar *v, int64_t max, int64_t *out) {
    int64_t n;
    if (v->type == T_NULL) return 0;
    if (whole_number(d, v, &n)) return 1;
    if (n < 0 || n > max) {
        as_error_set(d->err, AS_EINVALID, "must be between 0 and %lld (got %lld)", (long long)max,
                     (long long)n);
        return 1;
    }
    *out = n;
    return 0;
}

static int meta_value(doc_parser *d, const scalar *v) {
    as_meta *m = &d->s->meta;
    int64_t n = 0;
    int r;
    switch (d->sub) {
    case M_ID: return meta_text(d, v, &m->id);
    case M_NAME: return meta_text(d, v, &m->name);
    case M_AGENT_NAME: return meta_text(d, v, &m->agent_name);
    case M_PARENT_ID: return meta_text(d, v, &m->parent_id);
    case M_TAGS:
        if (v->type == T_NULL) return 0;
        if (v->type != T_ARRAY) return fail_type(d, "an array of strings", v->type);
        d->level = 3;
        return 0;
    case M_CREATED_AT: return meta_count(d, v, INT64_MAX, &m->created_at);
    case M_UPDATED_AT: return meta_count(d, v, INT64_MAX, &m->updated_at);
    case M_TURN_COUNT:
        r = meta_count(d, v, AS_TURN_COUNT_MAX, &n);
        m->turn_count = (uint32_t)n;
        return r;
    case M_TOTAL_TOKENS:
        r = meta_count(d, v, INT64_MAX, &n);
        m->total_tokens = (uint64_t)n;
        return r;
    default: return meta_count(d, v, INT64_MAX, &m->version);
    }
}

static int tag_value(doc_parser *d, const scalar *v) {
    as_meta *m = &d->s->meta;
    char *tag;
    if (v->type != T_STRING) return fail_type(d, "a string", v->type);
    if (memchr(v->s, '\0', v->len) != NULL) return fail(d, "control character (NUL) in string");
    if (m->ntags == d->tags_cap) {
        size_t cap = d->tags_cap ? d->tags_cap * 2 : 8;
        char **grown;
        if (cap > SIZE_MAX / sizeof *grown || (grown = as_realloc(m->tags, cap * sizeof *grown)) == NULL)
            return nomem(d);
        m->tags = grown;
        d->tags_cap = cap;
    }
    if ((tag = as_strndup(v->s, v->len)) == NULL) return nomem(d);
    m->tags[m->ntags++] = tag;
    return 0;
}

static int window_value(doc_parser *d, const scalar *v) {
    static const int64_t least[] = { 1, 0, 0, 1 };
    int64_t n;
    if (v->type == T_NULL) return 0;
    if (whole_number(d, v, &n)) return 1;
    if (n < 0) return fail(d, "must not be negative");
    if (n < least[d->sub]) {
        as_error_set(d->err, AS_EINVALID, "must be at least %d", (int)least[d->sub]);
        return 1;
    }
    d->window[d->sub] = n;
    d->window_given |= 1u << d->sub;
    return 0;
}

/* Opens the container v when it is of the type wanted. */
static int open_as(doc_parser *d, const scalar *v, int want, const char *what) {
    if (v->type != want) return fail_type(d, what, v->type);
    d->level++;
    return 0;
}

/* A value (or the start of a container) of the frame, not taken by the writer. */
static int frame_value(doc_parser *d, const scalar *v) {
    if (d->level == 0) {
        if (d->mode == MODE_MESSAGES) return open_as(d, v, T_ARRAY, "an array");
        return open_as(d, v, T_OBJECT, "a JSON object {\"metadata\", \"messages\", \"state\"}");
    }
    if (d->level == 1) {
        if (d->field == F_METADATA) {
            d->meta_seen = 0;
            return open_as(d, v, T_OBJECT, "an object");
        }
        if (d->field == F_MESSAGES) return open_as(d, v, T_ARRAY, "an array");
        if (v->type == T_NULL) return 0; /* window: null is none */
        d->has_window = 1;
        return open_as(d, v, T_OBJECT, "an object");
    }
    if (d->level == 2) return d->field == F_METADATA ? meta_value(d, v) : window_value(d, v);
    return tag_value(d, v);
}

static int frame_key(doc_parser *d, const char *k, size_t len) {
    const char *const *names = d->level == 1 ? doc_fields
                             : d->field == F_METADATA ? meta_fields : window_fields;
    unsigned *seen = d->level == 1 ? &d->seen : d->field == F_METADATA ? &d->meta_seen : &d->window_seen;
    int i = lookup(names, k, len);
    if (d->form == AS_DOC_EXPORT
        && ((names == doc_fields && i == F_WINDOW) || (names == meta_fields && i == M_VERSION)))
        i = -1;
    if (i < 0) {
        fail(d, "unknown field");
        as_error_prefix_key(d->err, k, len);
        return 1;
    }
    if (*seen & (1u << i)) {
        fail(d, "the key appears more than once in its object");
        as_error_prefix_key(d->err, k, len);
        return 1;
    }
    *seen |= 1u << i;
    if (d->level == 1) d->field = i;
    else d->sub = i;
    return 0;
}

static int required(doc_parser *d, const char *field, const char *message) {
    fail(d, message);
    as_error_prefix_key(d->err, field, strlen(field));
    return 1;
}

/* The end of a container of the frame. */
static int frame_close(doc_parser *d) {
    if (d->level == 3) {
        d->level = 2;
        return 0;
    }
    if (d->level == 2) {
        d->level = 1;
        if (d->field == F_METADATA) {
            if (d->s->meta.id == NULL) return required(d, "id", "required (a string)");
            if (d->s->meta.agent_name == NULL) return required(d, "agent_name", "required (a string)");
        } else if (d->field == F_WINDOW) {
            int i;
            for (i = 0; i < 4; i++)
                if (i != W_COUNT && !(d->window_given & (1u << i)))
                    return required(d, window_fields[i], "required");
        }
        return 0;
    }
    d->level = 0;
    if (d->mode == MODE_DOCUMENT && !(d->seen & (1u << F_METADATA)))
        return required(d, "metadata", "required (an object)");
    return 0;
}

/* ---------------------------------------------------------------- the sink */

static int on_scalar(doc_parser *d, const scalar *v) {
    if (d->capturing) return vw_scalar(&d->w, v);
    if (at_capture(d)) {
        vw_reset(&d->w);
        return vw_scalar(&d->w, v) || captured(d);
    }
    return frame_value(d, v);
}

static int on_open(doc_parser *d, int object) {
    scalar v;
    if (d->capturing) return vw_open(&d->w, object);
    if (at_capture(d)) {
        vw_reset(&d->w);
        d->capturing = 1;
        return vw_open(&d->w, object);
    }
    memset(&v, 0, sizeof v);
    v.type = object ? T_OBJECT : T_ARRAY;
    return frame_value(d, &v);
}

static int on_close(doc_parser *d, int object) {
    if (!d->capturing) return frame_close(d);
    if (object ? vw_close_object(&d->w) : vw_close_array(&d->w)) return 1;
    return d->w.depth == 0 ? captured(d) : 0;
}

static int s_null(void *ctx) {
    scalar v = { T_NULL, 0, 0, 0, NULL, 0 };
    return on_scalar(ctx, &v);
}

static int s_boolean(void *ctx, int b) {
    scalar v = { T_BOOLEAN, 0, 0, 0, NULL, 0 };
    v.i = b;
    return on_scalar(ctx, &v);
}

static int s_integer(void *ctx, int64_t i) {
    scalar v = { T_NUMBER, 1, 0, 0, NULL, 0 };
    v.i = i;
    return on_scalar(ctx, &v);
}

static int s_number(void *ctx, double x) {
    scalar v = { T_NUMBER, 0, 0, 0, NULL, 0 };
    v.d = x;
    return on_scalar(ctx, &v);
}

static int s_string(void *ctx, const char *s, size_t len) {
    scalar v = { T_STRING, 0, 0, 0, NULL, 0 };
    v.s = s;
    v.len = len;
    return on_scalar(ctx, &v);
}

static int s_begin_array(void *ctx) { return on_open(ctx, 0); }
static int s_begin_object(void *ctx) { return on_open(ctx, 1); }
static int s_end_array(void *ctx) { return on_close(ctx, 0); }
static int s_end_object(void *ctx) { return on_close(ctx, 1); }

static int s_array_item(void *ctx, size_t index) {
    (void)ctx;
    (void)index;
    return 0;
}

static int s_key(void *ctx, const char *k, size_t len) {
    doc_parser *d = ctx;
    return d->capturing ? vw_key(&d->w, k, len) : frame_key(d, k, len);
}

static int s_object_item(void *ctx) {
    doc_parser *d = ctx;
    if (d->capturing) vw_member_done(&d->w);
    return 0;
}

static const as_json_sink doc_sink = {
    s_null, s_boolean, s_integer, s_number, s_string,
    s_begin_array, s_array_item, s_end_array,
    s_begin_object, s_key, s_object_item, s_end_object, NULL
};

static void doc_init(doc_parser *d, doc_mode mode, int canonical, as_session *s, as_error *err) {
    memset(d, 0, sizeof *d);
    vw_init(&d->w, canonical, err);
    d->mode = mode;
    d->form = AS_DOC_SESSION;
    d->s = s;
    d->msgs_cap = s ? s->nmsgs : 0;
    d->err = err;
}

static as_status doc_run(doc_parser *d, const char *text, size_t len, int flags, const char *root) {
    as_buf scratch = AS_BUF_INIT;
    as_status st;
    as_error_clear(d->err);
    st = as_json_parse(text, len, &doc_sink, d, &scratch, flags, root, d->err);
    as_buf_free(&scratch);
    vw_free(&d->w);
    if (st == AS_ENOMEM) d->err->path[0] = '\0';
    else if (d->err->path[0] == '.') memmove(d->err->path, d->err->path + 1, strlen(d->err->path));
    return st;
}

static size_t to_size(int64_t v) {
    return (uint64_t)v > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)v;
}

as_status as_session_from_json(const char *text, size_t len, as_doc_form form, int canonical,
                               as_session *out, as_window *win, int *windowed, as_error *err) {
    doc_parser d;
    as_status st;
    doc_init(&d, MODE_DOCUMENT, canonical, out, err);
    d.form = form;
    if (windowed) *windowed = 0;
    if ((st = doc_run(&d, text, len, AS_JSON_DOCUMENT, NULL)) != AS_OK) return st;
    if (d.has_window && win && windowed) {
        win->first = to_size(d.window[W_FIRST] - 1);
        win->count = (d.window_given & (1u << W_COUNT)) ? to_size(d.window[W_COUNT]) : out->nmsgs;
        win->total = to_size(d.window[W_TOTAL]);
        win->version = d.window[W_VERSION];
        *windowed = 1;
    }
    return AS_OK;
}

as_status as_messages_from_json(const char *text, size_t len, int canonical, const char *root,
                                as_session *out, as_error *err) {
    doc_parser d;
    doc_init(&d, MODE_MESSAGES, canonical, out, err);
    /* the array is a frame around the messages, as a document's is */
    return doc_run(&d, text, len, AS_JSON_DOCUMENT, root);
}

as_status as_blob_from_json(const char *text, size_t len, int canonical, const char *root,
                            as_blob **out, as_error *err) {
    doc_parser d;
    as_status st;
    doc_init(&d, MODE_VALUE, canonical, NULL, err);
    st = doc_run(&d, text, len, 0, root);
    *out = st == AS_OK ? d.value : NULL;
    if (st != AS_OK) as_blob_unref(d.value);
    return st;
}
