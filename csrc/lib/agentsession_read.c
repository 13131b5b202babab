/*
** Reading one value out of JSON text (agentsession_json_string, _integer,
** _length): a sink over as_json's parser follows the path as the values go
** by and stops at the one it names.
*/
#include <stdint.h>
#include <string.h>

#include "agentsession.h"
#include "as_lib.h"
#include "../core/as_alloc.h"
#include "../core/as_json.h"

#define PATH_MAX_SEGMENTS 64

typedef struct segment {
    size_t index;    /* 1-based; 0 for a key */
    const char *key;
    size_t len;
} segment;

enum { WANT_STRING, WANT_INTEGER, WANT_LENGTH };

typedef struct reader {
    segment segs[PATH_MAX_SEGMENTS];
    int nsegs;
    int want;
    int depth;       /* containers open */
    int on_path;     /* the open containers the path goes through: depths 1..on_path */
    int is_array[PATH_MAX_SEGMENTS + 1];
    size_t items[PATH_MAX_SEGMENTS + 1]; /* values begun so far in each */
    int key_matched; /* the last key read in the innermost container is the path's */
    int counting;    /* the target is a container whose items are being counted */
    size_t count;
    int found;       /* the read is over: err tells how it went */
    char *string;
    int64_t integer;
    as_error *err;   /* the outcome, apart from the parser's own errors */
} reader;

static as_status bad_path(reader *r, const char *why) {
    return as_error_set(r->err, AS_EINVALID, "path: %s", why);
}

/* Reads a path: names joined with '.', 1-based indexes in brackets. */
static as_status parse_path(reader *r, const char *path) {
    const char *p = path;
    r->nsegs = 0;
    while (*p) {
        segment *s;
        if (r->nsegs == PATH_MAX_SEGMENTS)
            return as_error_set(r->err, AS_EINVALID, "path: more than %d steps", PATH_MAX_SEGMENTS);
        s = &r->segs[r->nsegs++];
        if (*p == '[') {
            size_t v = 0;
            p++;
            if (*p < '0' || *p > '9') return bad_path(r, "a digit must follow '['");
            for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (SIZE_MAX - 9) / 10) return bad_path(r, "index too large");
                v = v * 10 + (size_t)(*p - '0');
            }
            if (*p++ != ']') return bad_path(r, "']' expected after an index");
            if (v == 0) return bad_path(r, "indexes start at 1");
            s->index = v;
        } else {
            if (*p == '.') {
                if (p == path) return bad_path(r, "a name must not start with '.'");
                p++;
            } else if (p != path) {
                return bad_path(r, "'.' or '[' expected");
            }
            s->index = 0;
            s->key = p;
            p += strcspn(p, ".[");
            s->len = (size_t)(p - s->key);
            if (s->len == 0) return bad_path(r, "empty name");
        }
    }
    return AS_OK;
}

static int done(reader *r) {
    r->found = 1;
    return 1;
}

static int wrong_type(reader *r, const char *got) {
    static const char *const wanted[] = { "a string", "an integer", "an array or an object" };
    as_error_set(r->err, AS_EINVALID, "the value is %s, not %s", got, wanted[r->want]);
    return done(r);
}

/* A value starts: is it the one the path names, or on the way to it? Returns
** 1 when it is on the path, and then *target tells whether it is the end. */
static int on_path_value(reader *r, int *target) {
    int here = 0;
    *target = 0;
    if (r->depth == 0) here = 1;
    else if (r->depth == r->on_path && r->depth <= r->nsegs) {
        const segment *s = &r->segs[r->depth - 1];
        if (r->is_array[r->depth]) here = s->index > 0 && ++r->items[r->depth] == s->index;
        else here = r->key_matched;
        r->key_matched = 0;
    }
    if (here) *target = r->depth == r->nsegs;
    return here;
}

static int on_scalar(reader *r, const char *type) {
    int target;
    if (!on_path_value(r, &target)) return 0;
    if (!target) {
        as_error_set(r->err, AS_ENOTFOUND, "no value here: the path goes through %s", type);
        return done(r);
    }
    return wrong_type(r, type);
}

static int r_null(void *ctx) { return on_scalar(ctx, "null"); }
static int r_boolean(void *ctx, int v) { (void)v; return on_scalar(ctx, "a boolean"); }

static int r_number(reader *r, int is_int, int64_t i, double d) {
    int target;
    if (!on_path_value(r, &target)) return 0;
    if (!target) {
        as_error_set(r->err, AS_ENOTFOUND, "no value here: the path goes through a number");
        return done(r);
    }
    if (r->want != WANT_INTEGER) return wrong_type(r, "a number");
    if (!is_int) {
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || (double)(int64_t)d != d)
            return wrong_type(r, "a number that is not an integer within 64 bits");
        i = (int64_t)d;
    }
    r->integer = i;
    return done(r);
}

static int r_integer(void *ctx, int64_t v) { return r_number(ctx, 1, v, 0); }
static int r_double(void *ctx, double v) { return r_number(ctx, 0, 0, v); }

static int r_string(void *ctx, const char *s, size_t len) {
    reader *r = ctx;
    int target;
    if (!on_path_value(r, &target)) return 0;
    if (!target) {
        as_error_set(r->err, AS_ENOTFOUND, "no value here: the path goes through a string");
        return done(r);
    }
    if (r->want != WANT_STRING) return wrong_type(r, "a string");
    if (memchr(s, '\0', len) != NULL) {
        as_error_set(r->err, AS_EINVALID, "the string holds a NUL character");
        return done(r);
    }
    if ((r->string = as_strndup(s, len)) == NULL) as_error_nomem(r->err);
    return done(r);
}

static int r_open(reader *r, int array) {
    int target;
    if (!on_path_value(r, &target)) {
        r->depth++;
        return 0;
    }
    r->depth++;
    if (target) {
        if (r->want != WANT_LENGTH) return wrong_type(r, array ? "an array" : "an object");
        r->counting = 1;
        return 0;
    }
    r->on_path = r->depth;
    r->is_array[r->depth] = array;
    r->items[r->depth] = 0;
    return 0;
}

static int r_begin_array(void *ctx) { return r_open(ctx, 1); }
static int r_begin_object(void *ctx) { return r_open(ctx, 0); }

static int r_item(reader *r) {
    if (r->counting && r->depth == r->nsegs + 1) r->count++;
    return 0;
}

static int r_array_item(void *ctx, size_t index) {
    (void)index;
    return r_item(ctx);
}

static int r_object_item(void *ctx) { return r_item(ctx); }

static int r_close(void *ctx) {
    reader *r = ctx;
    if (r->counting && r->depth == r->nsegs + 1) return done(r);
    if (r->depth == r->on_path && r->on_path > 0) {
        as_error_set(r->err, AS_ENOTFOUND, "no value at this path");
        return done(r);
    }
    r->depth--;
    return 0;
}

static int r_key(void *ctx, const char *k, size_t len) {
    reader *r = ctx;
    if (r->depth == r->on_path && r->depth <= r->nsegs && !r->is_array[r->depth]) {
        const segment *s = &r->segs[r->depth - 1];
        r->key_matched = s->index == 0 && s->len == len && memcmp(s->key, k, len) == 0;
    }
    return 0;
}

static const as_json_sink read_sink = {
    r_null, r_boolean, r_integer, r_double, r_string,
    r_begin_array, r_array_item, r_close,
    r_begin_object, r_key, r_object_item, r_close, NULL
};

/* The parser stops at the sink's first non-zero return: a read that found
** its value stops it too, so the outcome is kept apart from the parse error. */
static agentsession_status read_value(const char *json, const char *path, int want, reader *r,
                                      agentsession_error *err) {
    as_error outcome, parse;
    as_buf scratch = AS_BUF_INIT;
    as_status st;
    memset(r, 0, sizeof *r);
    r->want = want;
    r->err = &outcome;
    as_error_clear(&outcome);
    as_error_clear(&parse);
    if (json == NULL || path == NULL) {
        as_error_set(&outcome, AS_EINVALID, "must be a string (got NULL)");
        as_error_prefix(&outcome, json == NULL ? "json" : "path");
        return as_lib_report(&outcome, err);
    }
    if (parse_path(r, path) != AS_OK) return as_lib_report(&outcome, err);
    st = as_json_parse(json, strlen(json), &read_sink, r, &scratch, 0, NULL, &parse);
    as_buf_free(&scratch);
    if (r->found) st = outcome.status;
    else if (st == AS_OK) st = as_error_set(&outcome, AS_ENOTFOUND, "no value at this path");
    else {
        outcome = parse;
        if (outcome.path[0] == '.') memmove(outcome.path, outcome.path + 1, strlen(outcome.path));
    }
    if (st == AS_OK) return as_lib_succeed(err);
    if (st == AS_ENOTFOUND || (st == AS_EINVALID && r->found)) {
        outcome.path[0] = '\0';
        as_error_prefix(&outcome, path[0] ? path : "(the whole text)");
    }
    as_free(r->string);
    r->string = NULL;
    return as_lib_report(&outcome, err);
}

agentsession_status agentsession_json_string(const char *json, const char *path, char **out,
                                             agentsession_error *err) {
    reader r;
    agentsession_status st;
    if (out) *out = NULL;
    st = read_value(json, path, WANT_STRING, &r, err);
    if (out) *out = r.string;
    else as_free(r.string);
    return st;
}

agentsession_status agentsession_json_integer(const char *json, const char *path, int64_t *out,
                                              agentsession_error *err) {
    reader r;
    agentsession_status st = read_value(json, path, WANT_INTEGER, &r, err);
    if (st == AGENTSESSION_OK && out) *out = r.integer;
    return st;
}

agentsession_status agentsession_json_length(const char *json, const char *path, size_t *out,
                                             agentsession_error *err) {
    reader r;
    agentsession_status st = read_value(json, path, WANT_LENGTH, &r, err);
    if (st == AGENTSESSION_OK && out) *out = r.count;
    return st;
}
