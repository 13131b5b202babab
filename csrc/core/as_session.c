/*
** The session model: blobs, metadata rules, JSON form of a session.
*/
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "as_alloc.h"
#include "as_json.h"
#include "as_utf8.h"
#include "as_session.h"

/* ---------------------------------------------------------------- blobs */

as_blob *as_blob_new(const char *text, size_t len) {
    as_blob *b;
    if (len > SIZE_MAX - sizeof(as_blob) - 1) return NULL;
    b = as_malloc(sizeof(as_blob) + len + 1);
    if (b == NULL) return NULL;
    b->refs = 1;
    b->len = len;
    memcpy(b->text, text, len);
    b->text[len] = '\0';
    return b;
}

as_blob *as_blob_from_buf(as_buf *buf) {
    as_blob *b = as_blob_new(buf->data ? buf->data : "", buf->len);
    buf->len = 0;
    return b;
}

void as_blob_unref(as_blob *b) {
    if (b != NULL && --b->refs == 0) as_free(b);
}

/* ---------------------------------------------------------------- metadata */

void as_meta_clear(as_meta *m) {
    size_t i;
    as_free(m->id);
    as_free(m->name);
    as_free(m->agent_name);
    as_free(m->parent_id);
    for (i = 0; i < m->ntags; i++) as_free(m->tags[i]);
    as_free(m->tags);
    memset(m, 0, sizeof *m);
}

static int dup_opt(char **dst, const char *src) {
    if (src == NULL) { *dst = NULL; return 0; }
    *dst = as_strdup(src);
    return *dst == NULL ? -1 : 0;
}

as_status as_meta_copy(as_meta *dst, const as_meta *src, as_error *err) {
    size_t i;
    memset(dst, 0, sizeof *dst);
    dst->created_at = src->created_at;
    dst->updated_at = src->updated_at;
    dst->turn_count = src->turn_count;
    dst->total_tokens = src->total_tokens;
    dst->version = src->version;
    if (dup_opt(&dst->id, src->id) || dup_opt(&dst->name, src->name)
        || dup_opt(&dst->agent_name, src->agent_name) || dup_opt(&dst->parent_id, src->parent_id))
        goto nomem;
    if (src->ntags > 0) {
        dst->tags = as_calloc(src->ntags, sizeof(char *));
        if (dst->tags == NULL) goto nomem;
        for (i = 0; i < src->ntags; i++) {
            dst->tags[i] = as_strdup(src->tags[i]);
            if (dst->tags[i] == NULL) goto nomem;
            dst->ntags = i + 1;
        }
    }
    return AS_OK;
nomem:
    as_meta_clear(dst);
    return as_error_nomem(err);
}

/* Text for a name, id or tag: valid UTF-8 with no C0, DEL or C1 control characters. */
static as_status check_text(const char *s, size_t len, const char *what, as_error *err) {
    size_t bad = as_utf8_check(s, len), i;
    if (bad < len) {
        as_error_set(err, AS_EINVALID, "invalid UTF-8 at byte %zu", bad + 1);
        as_error_prefix(err, what);
        return AS_EINVALID;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int control = c < 0x20 || c == 0x7f
                      || (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] < 0xA0);
        if (control) {
            as_error_set(err, AS_EINVALID, "control character at byte %zu", i + 1);
            as_error_prefix(err, what);
            return AS_EINVALID;
        }
    }
    return AS_OK;
}

static as_status check_bounded(const char *s, size_t len, size_t min, size_t max, const char *what,
                               as_error *err) {
    if (len < min || len > max) {
        as_error_set(err, AS_EINVALID, "must be %zu to %zu bytes long (got %zu)", min, max, len);
        as_error_prefix(err, what);
        return AS_EINVALID;
    }
    return check_text(s, len, what, err);
}

as_status as_check_id(const char *id, size_t len, const char *what, as_error *err) {
    return check_bounded(id, len, 1, AS_ID_MAX, what, err);
}

as_status as_check_name(const char *name, size_t len, const char *what, as_error *err) {
    return check_bounded(name, len, 0, AS_NAME_MAX, what, err);
}

as_status as_check_tag(const char *tag, size_t len, const char *what, as_error *err) {
    return check_bounded(tag, len, 1, AS_TAG_MAX, what, err);
}

static as_status required(as_error *err, const char *what) {
    as_error_set(err, AS_EINVALID, "required");
    as_error_prefix(err, what);
    return AS_EINVALID;
}

as_status as_meta_check(as_meta *m, as_error *err) {
    size_t i, j, kept = 0;
    as_status st;
    if (m->id == NULL) return required(err, "metadata.id");
    if ((st = as_check_id(m->id, strlen(m->id), "metadata.id", err)) != AS_OK) return st;
    if (m->name && (st = as_check_name(m->name, strlen(m->name), "metadata.name", err)) != AS_OK)
        return st;
    if (m->agent_name == NULL) return required(err, "metadata.agent_name");
    if ((st = as_check_name(m->agent_name, strlen(m->agent_name), "metadata.agent_name", err))
        != AS_OK)
        return st;
    if (m->parent_id && (st = as_check_id(m->parent_id, strlen(m->parent_id),
                                          "metadata.parent_id", err)) != AS_OK)
        return st;
    for (i = 0; i < m->ntags; i++) {
        if ((st = as_check_tag(m->tags[i], strlen(m->tags[i]), "", err)) != AS_OK) {
            /* the path, written only when it is needed */
            char what[48];
            snprintf(what, sizeof what, "metadata.tags[%zu]", i + 1);
            as_error_prefix(err, what);
            return st;
        }
    }
    /* drop repeats, keeping the first of each */
    for (i = 0; i < m->ntags; i++) {
        int repeat = 0;
        for (j = 0; j < kept && !repeat; j++) repeat = strcmp(m->tags[j], m->tags[i]) == 0;
        if (repeat) as_free(m->tags[i]);
        else m->tags[kept++] = m->tags[i];
    }
    m->ntags = kept;
    return AS_OK;
}

int as_meta_has_tag(const as_meta *m, const char *tag) {
    size_t i;
    for (i = 0; i < m->ntags; i++)
        if (strcmp(m->tags[i], tag) == 0) return 1;
    return 0;
}

int as_meta_matches(const as_meta *m, const as_filter *f) {
    size_t i;
    if (f->agent_name && strcmp(m->agent_name, f->agent_name) != 0) return 0;
    if (f->parent_id && (m->parent_id == NULL || strcmp(m->parent_id, f->parent_id) != 0)) return 0;
    for (i = 0; i < f->ntags; i++)
        if (!as_meta_has_tag(m, f->tags[i])) return 0;
    if (f->has_before && m->updated_at >= f->before) return 0;
    if (f->without_tag && as_meta_has_tag(m, f->without_tag)) return 0;
    return 1;
}

/* ---------------------------------------------------------------- sessions */

void as_session_clear(as_session *s) {
    size_t i;
    as_meta_clear(&s->meta);
    for (i = 0; i < s->nmsgs; i++) as_blob_unref(s->msgs[i]);
    as_free(s->msgs);
    as_blob_unref(s->state);
    s->msgs = NULL;
    s->nmsgs = 0;
    s->state = NULL;
}

as_status as_session_push(as_session *s, as_blob *const *msgs, size_t n, as_error *err) {
    as_blob **grown;
    size_t i;
    if (n == 0) return AS_OK;
    if (n > SIZE_MAX / sizeof(as_blob *) - s->nmsgs) return as_error_nomem(err);
    grown = as_realloc(s->msgs, (s->nmsgs + n) * sizeof(as_blob *));
    if (grown == NULL) return as_error_nomem(err);
    s->msgs = grown;
    for (i = 0; i < n; i++) s->msgs[s->nmsgs++] = as_blob_ref(msgs[i]);
    return AS_OK;
}

void as_meta_list_clear(as_meta_list *l) {
    size_t i;
    for (i = 0; i < l->n; i++) as_meta_clear(&l->items[i]);
    as_free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

as_status as_meta_list_reserve(as_meta_list *l, size_t n, as_error *err) {
    as_meta *grown;
    if (n <= l->cap) return AS_OK;
    if (n > SIZE_MAX / sizeof(as_meta)) return as_error_nomem(err);
    grown = as_realloc(l->items, n * sizeof(as_meta));
    if (grown == NULL) return as_error_nomem(err);
    l->items = grown;
    l->cap = n;
    return AS_OK;
}

as_status as_meta_list_push(as_meta_list *l, const as_meta *m, as_error *err) {
    if (l->n == l->cap && as_meta_list_reserve(l, l->cap ? l->cap * 2 : 8, err) != AS_OK)
        return err->status;
    if (as_meta_copy(&l->items[l->n], m, err) != AS_OK) return err->status;
    l->n++;
    return AS_OK;
}

/* ---------------------------------------------------------------- JSON form */

static int write_opt_string(as_buf *b, const char *s) {
    if (s == NULL) return as_buf_puts(b, "null");
    return as_json_write_string(b, s, strlen(s), NULL) == 0 ? 0 : -1;
}

/* {"id":…, …, "total_tokens":… — the seed's eight fields, without the closing brace. */
static int write_seed_fields(as_buf *b, const as_meta *m) {
    size_t i;
    if (as_buf_puts(b, "{\"id\":") || write_opt_string(b, m->id)
        || as_buf_puts(b, ",\"name\":") || write_opt_string(b, m->name)
        || as_buf_puts(b, ",\"tags\":["))
        return -1;
    for (i = 0; i < m->ntags; i++)
        if ((i && as_buf_putc(b, ',')) || write_opt_string(b, m->tags[i])) return -1;
    if (as_buf_puts(b, "],\"agent_name\":") || write_opt_string(b, m->agent_name)
        || as_buf_puts(b, ",\"created_at\":") || as_json_write_integer(b, m->created_at)
        || as_buf_puts(b, ",\"updated_at\":") || as_json_write_integer(b, m->updated_at)
        || as_buf_puts(b, ",\"turn_count\":") || as_json_write_integer(b, m->turn_count)
        || as_buf_puts(b, ",\"total_tokens\":") || as_json_write_integer(b, (int64_t)m->total_tokens))
        return -1;
    return 0;
}

int as_meta_write_json(as_buf *b, const as_meta *m) {
    if (write_seed_fields(b, m) || as_buf_puts(b, ",\"parent_id\":")
        || write_opt_string(b, m->parent_id) || as_buf_puts(b, ",\"version\":")
        || as_json_write_integer(b, m->version) || as_buf_putc(b, '}'))
        return -1;
    return 0;
}

as_status as_session_json_size(const as_session *s, size_t *size, as_error *err) {
    as_buf b = AS_BUF_INIT;
    size_t total, i;
    if (as_meta_write_json(&b, &s->meta) != 0) {
        as_buf_free(&b);
        return as_error_nomem(err);
    }
    /* {"metadata":M,"messages":[m1,m2],"state":S} */
    total = b.len + 38 + (s->state ? s->state->len : 2);
    as_buf_free(&b);
    for (i = 0; i < s->nmsgs; i++) {
        size_t add = s->msgs[i]->len + 1;
        total = total > SIZE_MAX - add ? SIZE_MAX : total + add;
    }
    *size = total;
    return AS_OK;
}

/* The export's metadata: the seed's eight fields, then parent_id when set. */
static int write_export_meta(as_buf *b, const as_meta *m) {
    if (write_seed_fields(b, m)) return -1;
    if (m->parent_id && (as_buf_puts(b, ",\"parent_id\":") || write_opt_string(b, m->parent_id)))
        return -1;
    return as_buf_putc(b, '}');
}

static int write_session(as_buf *b, const as_session *s, int for_export) {
    size_t i;
    if (as_buf_puts(b, "{\"metadata\":")
        || (for_export ? write_export_meta(b, &s->meta) : as_meta_write_json(b, &s->meta))
        || as_buf_puts(b, ",\"messages\":["))
        return -1;
    for (i = 0; i < s->nmsgs; i++)
        if ((i && as_buf_putc(b, ',')) || as_buf_put(b, s->msgs[i]->text, s->msgs[i]->len)) return -1;
    if (as_buf_puts(b, "],\"state\":")) return -1;
    if (s->state ? as_buf_put(b, s->state->text, s->state->len) : as_buf_puts(b, "{}")) return -1;
    return as_buf_putc(b, '}');
}

int as_session_write_json(as_buf *b, const as_session *s) {
    return write_session(b, s, 0);
}

int as_session_write_export_json(as_buf *b, const as_session *s) {
    return write_session(b, s, 1);
}

/* ---------------------------------------------------------------- op ids */

as_status as_check_op_id(const char *op_id, size_t len, const char *what, as_error *err) {
    return check_bounded(op_id, len, 1, AS_OP_ID_MAX, what, err);
}
