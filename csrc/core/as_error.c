/*
** Error records: set, give a path to, name.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "as_error.h"
#include "as_utf8.h"

void as_error_clear(as_error *e) {
    e->status = AS_OK;
    e->path[0] = e->message[0] = e->id[0] = '\0';
}

as_status as_error_set(as_error *e, as_status status, const char *fmt, ...) {
    va_list ap;
    e->status = status;
    e->path[0] = e->id[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

as_status as_error_nomem(as_error *e) {
    return as_error_set(e, AS_ENOMEM, "not enough memory");
}

as_status as_error_nomem_applied(as_error *e, const char *id) {
    as_error_set(e, AS_ENOMEM, "not enough memory for the new metadata of session \"%.64s\", "
                 "whose append was applied", id);
    as_error_set_id(e, id);
    return AS_ENOMEM;
}

void as_error_prefix(as_error *e, const char *segment) {
    size_t have = strlen(e->path), add = strlen(segment);
    if (add >= sizeof e->path) return;
    if (have + add >= sizeof e->path) {
        /* keep the head of the path, which is the part nearest the caller's value */
        have = sizeof e->path - 1 - add;
    }
    memmove(e->path + add, e->path, have);
    memcpy(e->path, segment, add);
    e->path[have + add] = '\0';
}

void as_error_prefix_index(as_error *e, size_t index) {
    char seg[32];
    snprintf(seg, sizeof seg, "[%zu]", index);
    as_error_prefix(e, seg);
}

static int is_plain_name(const char *key, size_t len) {
    size_t i;
    if (len == 0 || len > 64) return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
    }
    return 1;
}

void as_error_prefix_key(as_error *e, const char *key, size_t len) {
    char seg[96];
    size_t i, n = 0;
    if (is_plain_name(key, len)) {
        snprintf(seg, sizeof seg, ".%.*s", (int)len, key);
        as_error_prefix(e, seg);
        return;
    }
    /* ["key"], with quotes and controls escaped and long keys cut */
    seg[n++] = '[';
    seg[n++] = '"';
    /* room left for one \xNN (4 bytes), "...", the closing quote and bracket and a NUL */
    for (i = 0; i < len && n < sizeof seg - 9; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '"' || c == '\\') { seg[n++] = '\\'; seg[n++] = (char)c; }
        else if (c < 0x20 || c == 0x7f) { n += (size_t)snprintf(seg + n, 5, "\\x%02x", c); }
        else if (c < 0x80) seg[n++] = (char)c;
        else {
            /* a whole UTF-8 sequence is copied; a byte that breaks UTF-8 is escaped,
            ** so that the message stays valid UTF-8 */
            size_t seq = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (seq <= len - i && as_utf8_check(key + i, seq) == seq) {
                memcpy(seg + n, key + i, seq);
                n += seq;
                i += seq - 1;
            } else n += (size_t)snprintf(seg + n, 5, "\\x%02x", c);
        }
    }
    if (i < len) { seg[n++] = '.'; seg[n++] = '.'; seg[n++] = '.'; }
    seg[n++] = '"';
    seg[n++] = ']';
    seg[n] = '\0';
    as_error_prefix(e, seg);
}

void as_error_set_id(as_error *e, const char *id) {
    snprintf(e->id, sizeof e->id, "%s", id);
}

const char *as_status_kind(as_status status) {
    switch (status) {
    case AS_OK: return "ok";
    case AS_ENOTFOUND: return "not_found";
    case AS_EINVALID: return "invalid";
    case AS_ETOOLARGE: return "too_large";
    case AS_ECONFLICT: return "conflict";
    case AS_ESTORAGE: return "storage";
    case AS_EUNAVAILABLE: return "unavailable";
    case AS_ECLOSED: return "closed";
    case AS_ENOMEM: return "storage";
    case AS_ERETRY: return "unavailable";
    }
    return "storage";
}

as_status as_status_of_kind(const char *kind) {
    static const as_status kinds[] = { AS_ENOTFOUND, AS_EINVALID, AS_ETOOLARGE, AS_ECONFLICT,
                                       AS_ESTORAGE, AS_EUNAVAILABLE, AS_ECLOSED };
    size_t i;
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, as_status_kind(kinds[i])) == 0) return kinds[i];
    return AS_OK;
}
