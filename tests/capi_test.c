/*
** Tests of the C library (agentsession.h), as a host uses it: every function,
** bad input, windows, versions, ownership of results; then every operation
** again with each allocation of the core failing in turn, which must fail
** the call cleanly: AGENTSESSION_ERR_NOMEM, nothing leaked, the store as it was.
**
**   capi_test                         memory and SQLite (in a private directory)
**   capi_test redis HOST PORT PREFIX  the operations against a Redis server
**   capi_test redis-down HOST PORT    a server that does not answer: unavailable
**   capi_test redis-cluster PREFIX HOST:PORT...  the operations on a Redis Cluster
**
** Prints each failed check, then a count; exits 1 when any failed.
*/
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../csrc/lib/agentsession.h"
#include "../csrc/core/as_alloc.h"

static int checks, failures;
static agentsession_error err;

#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)

/* A call that must return `want`; on a mismatch prints the error it got. */
#define EXPECT(want, call) do { agentsession_status got_ = (call); checks++; if (got_ != (want)) { \
    failures++; fprintf(stderr, "%s:%d: %s: got %s (%s), wanted %s\n", __FILE__, __LINE__, #call, \
    agentsession_kind(got_), err.message, agentsession_kind(want)); } } while (0)

#define OK(call) EXPECT(AGENTSESSION_OK, call)

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format(const char *fmt, ...) {
    va_list ap;
    int n;
    char *s;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (s = malloc((size_t)n + 1)) == NULL) abort();
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int64_t integer_at(const char *json, const char *path) {
    int64_t v = -12345;
    OK(agentsession_json_integer(json, path, &v, &err));
    return v;
}

/* The string at path equals want. */
static int string_is(const char *json, const char *path, const char *want) {
    char *s = NULL;
    int same;
    if (agentsession_json_string(json, path, &s, &err) != AGENTSESSION_OK) {
        fprintf(stderr, "  %s: %s\n", path, err.message);
        return 0;
    }
    same = strcmp(s, want) == 0;
    if (!same) fprintf(stderr, "  %s: \"%s\", wanted \"%s\"\n", path, s, want);
    agentsession_free(s);
    return same;
}

static size_t length_at(const char *json, const char *path) {
    size_t n = 99999;
    OK(agentsession_json_length(json, path, &n, &err));
    return n;
}

/* Every session of the store, exported in list order: what a failed call must not change. */
static char *snapshot(agentsession_manager *m) {
    char *list = NULL, *all, *one = NULL, *id = NULL, path[32];
    size_t n, i;
    if (agentsession_list(m, NULL, &list, &err) != AGENTSESSION_OK) return NULL;
    n = length_at(list, "");
    all = format("%s", list);
    for (i = 1; i <= n; i++) {
        char *grown;
        snprintf(path, sizeof path, "[%zu].id", i);
        if (agentsession_json_string(list, path, &id, &err) != AGENTSESSION_OK
            || agentsession_export(m, id, &one, &err) != AGENTSESSION_OK) {
            CHECK(!"snapshot: a listed session exports");
            break;
        }
        grown = format("%s\n%s", all, one);
        free(all);
        all = grown;
        agentsession_free(id);
        agentsession_free(one);
        id = one = NULL;
    }
    agentsession_free(list);
    return all;
}

/* ---------------------------------------------------------------- the operations */

/* Saves a session {id, agent_name "tester", name} with messages; returns its metadata. */
static char *save_doc(agentsession_manager *m, const char *id, const char *name, const char *messages,
                      const char *state) {
    char *doc = format("{\"metadata\":{\"id\":\"%s\",\"agent_name\":\"tester\",\"name\":\"%s\","
                       "\"tags\":[\"t1\",\"t2\",\"t1\"]},\"messages\":%s,\"state\":%s}",
                       id, name, messages, state);
    char *meta = NULL;
    OK(agentsession_save(m, doc, NULL, &meta, &err));
    free(doc);
    return meta;
}

static void test_save_resume(agentsession_manager *m, const char *id) {
    char *meta, *s = NULL;
    meta = save_doc(m, id, "first", "[{\"role\":\"user\",\"text\":\"hi\"}, 1.0, [], {}, null]",
                    "{\"cwd\" : \"/tmp\"}");
    CHECK(meta && integer_at(meta, "version") == 1 && integer_at(meta, "created_at") > 0);
    CHECK(meta && string_is(meta, "id", id) && string_is(meta, "name", "first"));
    CHECK(meta && length_at(meta, "tags") == 2); /* repeats dropped */
    agentsession_free(meta);

    OK(agentsession_resume(m, id, &s, &err));
    CHECK(s && strstr(s, "\"messages\":[{\"role\":\"user\",\"text\":\"hi\"},1.0,[],{},null],"
                         "\"state\":{\"cwd\":\"/tmp\"}}") != NULL);
    CHECK(s && strstr(s, "\"window\"") == NULL);
    CHECK(s && length_at(s, "messages") == 5 && string_is(s, "messages[1].text", "hi"));
    agentsession_free(s);

    /* a save keeps created_at and bumps the version; expect_version guards it */
    {
        agentsession_save_options o = AGENTSESSION_SAVE_OPTIONS_INIT;
        char *doc = format("{\"metadata\":{\"id\":\"%s\",\"agent_name\":\"tester\"},\"messages\":[1,2,3,4,5]}", id);
        char *before = snapshot(m);
        o.expect_version = 7;
        EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_save(m, doc, &o, &meta, &err));
        CHECK(meta == NULL && strcmp(err.id, id) == 0 && err.status == AGENTSESSION_ERR_CONFLICT);
        o.expect_version = 0;
        EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_save(m, doc, &o, NULL, &err));
        s = snapshot(m);
        CHECK(s && before && strcmp(s, before) == 0);
        free(s);
        free(before);
        o.expect_version = 1;
        OK(agentsession_save(m, doc, &o, &meta, &err));
        CHECK(meta && integer_at(meta, "version") == 2 && integer_at(meta, "turn_count") == 0);
        agentsession_free(meta);
        o.expect_version = -2;
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_save(m, doc, &o, NULL, &err));
        CHECK(strcmp(err.path, "opts.expect_version") == 0);
        free(doc);
    }
}

/* resume_last / resume_from give windows; a window saves back without losing the rest. */
static void test_windows(agentsession_manager *m, const char *id) {
    char *w = NULL, *doc, *meta = NULL, *s = NULL, *before, *after;
    int64_t version;
    OK(agentsession_resume_last(m, id, 2, &w, &err));
    CHECK(w && length_at(w, "messages") == 2 && integer_at(w, "messages[1]") == 4);
    CHECK(w && integer_at(w, "window.first") == 4 && integer_at(w, "window.count") == 2
          && integer_at(w, "window.total") == 5);
    version = w ? integer_at(w, "window.version") : 0;
    CHECK(w && integer_at(w, "metadata.version") == version);
    agentsession_free(w);

    /* the window's last message replaced by two: 1,2,3,4,"a","b" */
    doc = format("{\"metadata\":{\"id\":\"%s\",\"agent_name\":\"tester\"},\"messages\":[4,\"a\",\"b\"],"
                 "\"window\":{\"first\":4,\"count\":2,\"total\":5,\"version\":%" PRId64 "}}", id, version);
    OK(agentsession_save(m, doc, NULL, &meta, &err));
    CHECK(meta && integer_at(meta, "version") == version + 1);
    agentsession_free(meta);
    OK(agentsession_resume(m, id, &s, &err));
    CHECK(s && strstr(s, "\"messages\":[1,2,3,4,\"a\",\"b\"]") != NULL);
    agentsession_free(s);

    /* the same window again is stale: conflict, nothing changed */
    before = snapshot(m);
    EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_save(m, doc, NULL, &meta, &err));
    CHECK(meta == NULL && strcmp(err.id, id) == 0);
    after = snapshot(m);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    free(doc);

    /* a window short of the end cannot be saved */
    OK(agentsession_resume_from(m, id, 2, 1, &w, &err));
    CHECK(w && integer_at(w, "window.first") == 2 && integer_at(w, "window.count") == 1
          && integer_at(w, "window.total") == 6 && integer_at(w, "messages[1]") == 2);
    if (w) {
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_save(m, w, NULL, NULL, &err));
        CHECK(strcmp(err.path, "window") == 0);
    }
    agentsession_free(w);

    /* from with the count to the end, round trip as it is */
    OK(agentsession_resume_from(m, id, 5, AGENTSESSION_TO_END, &w, &err));
    CHECK(w && length_at(w, "messages") == 2 && string_is(w, "messages[2]", "b"));
    if (w) OK(agentsession_save(m, w, NULL, NULL, &err));
    agentsession_free(w);
    OK(agentsession_resume_from(m, id, 99, 3, &w, &err)); /* past the end: none */
    CHECK(w && length_at(w, "messages") == 0 && integer_at(w, "window.first") == 7);
    agentsession_free(w);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_resume_from(m, id, 0, 1, &w, &err));
    CHECK(w == NULL && strcmp(err.path, "from") == 0);
    OK(agentsession_resume(m, id, &s, &err));
    CHECK(s && strstr(s, "\"messages\":[1,2,3,4,\"a\",\"b\"]") != NULL);
    agentsession_free(s);
}

/* An append with an op_id is applied once: sent again it changes nothing and
** gives the current metadata; another op_id applies. */
static void test_append_op_id(agentsession_manager *m, const char *id) {
    agentsession_append_options o = AGENTSESSION_APPEND_OPTIONS_INIT;
    bool applied = false;
    char *meta = NULL, *before, *after;
    int64_t version;
    o.op_id = "6c1f6a3e-retry-1";
    o.applied = &applied;
    o.tokens = 3;
    OK(agentsession_append(m, id, "[\"once\"]", &o, &meta, &err));
    CHECK(applied && meta != NULL);
    version = meta ? integer_at(meta, "version") : 0;
    agentsession_free(meta);
    before = snapshot(m);
    o.expect_version = version - 1; /* a stale version: the repeat is no conflict */
    OK(agentsession_append(m, id, "[\"once\"]", &o, &meta, &err));
    CHECK(!applied && meta && integer_at(meta, "version") == version);
    agentsession_free(meta);
    after = snapshot(m);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    o.expect_version = AGENTSESSION_ANY_VERSION;
    o.op_id = "6c1f6a3e-retry-2";
    OK(agentsession_append(m, id, "[\"twice\"]", &o, NULL, &err));
    CHECK(applied);
    o.op_id = "";
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_append(m, id, "[]", &o, NULL, &err));
    CHECK(strcmp(err.path, "opts.op_id") == 0);
    o.op_id = "tab\there";
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_append(m, id, "[]", &o, NULL, &err));
    CHECK(strcmp(err.path, "opts.op_id") == 0);
}

static void test_append(agentsession_manager *m, const char *id) {
    agentsession_append_options o = AGENTSESSION_APPEND_OPTIONS_INIT;
    char *meta = NULL, *s = NULL, *before, *after;
    int64_t turns, version;
    OK(agentsession_resume(m, id, &s, &err));
    turns = s ? integer_at(s, "metadata.turn_count") : 0;
    version = s ? integer_at(s, "metadata.version") : 0;
    agentsession_free(s);

    o.tokens = 42;
    o.state_json = "{ \"mood\": \"calm\" }";
    OK(agentsession_append(m, id, "[{\"n\":7}, {\"n\":8}]", &o, &meta, &err));
    CHECK(meta && integer_at(meta, "turn_count") == turns + 2 && integer_at(meta, "total_tokens") == 42
          && integer_at(meta, "version") == version + 1);
    agentsession_free(meta);
    OK(agentsession_resume_last(m, id, 2, &s, &err));
    CHECK(s && strstr(s, "\"messages\":[{\"n\":7},{\"n\":8}],\"state\":{\"mood\":\"calm\"}") != NULL);
    agentsession_free(s);

    before = snapshot(m);
    o.expect_version = version; /* stale */
    o.state_json = NULL;
    EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_append(m, id, "[1]", &o, &meta, &err));
    CHECK(meta == NULL);
    o.expect_version = 0; /* never matches */
    EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_append(m, id, "[1]", &o, NULL, &err));
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_append(m, id, "[1, {\"a\": nul}]", NULL, NULL, &err));
    CHECK(strcmp(err.path, "messages[2].a") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_append(m, id, "{\"n\":1}", NULL, NULL, &err));
    CHECK(strcmp(err.path, "messages") == 0);
    o.expect_version = AGENTSESSION_ANY_VERSION;
    o.state_json = "{\"a\":1,\"a\":2}";
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_append(m, id, "[]", &o, NULL, &err));
    CHECK(strcmp(err.path, "state.a") == 0);
    o.state_json = NULL;
    o.tokens = UINT64_MAX;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_append(m, id, "[]", &o, NULL, &err));
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_append(m, "no-such-id", "[]", NULL, NULL, &err));
    after = snapshot(m);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* a JSON null state, and an append of nothing */
    o.tokens = 0;
    o.state_json = "null";
    OK(agentsession_append(m, id, "[]", &o, NULL, &err));
    OK(agentsession_resume_last(m, id, 0, &s, &err));
    CHECK(s && strstr(s, "\"messages\":[],\"state\":null,\"window\":") != NULL);
    agentsession_free(s);
    test_append_op_id(m, id);
}

static void test_fork_rewind(agentsession_manager *m, const char *id) {
    char *meta = NULL, *s = NULL, *fork_id = NULL;
    OK(agentsession_rename(m, id, "task", &err));
    OK(agentsession_fork(m, id, NULL, &meta, &err));
    CHECK(meta && string_is(meta, "name", "task (fork)") && string_is(meta, "parent_id", id)
          && integer_at(meta, "version") == 1);
    if (meta) OK(agentsession_json_string(meta, "id", &fork_id, &err));
    agentsession_free(meta);

    OK(agentsession_fork_at(m, id, "branch", 2, &meta, &err));
    CHECK(meta && string_is(meta, "name", "branch") && integer_at(meta, "turn_count") == 2);
    agentsession_free(meta);
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_fork(m, "no-such-id", NULL, &meta, &err));
    CHECK(meta == NULL && strcmp(err.id, "no-such-id") == 0 && strstr(err.message, "no-such-id"));

    if (fork_id) {
        OK(agentsession_rewind(m, fork_id, 3, &s, &err));
        CHECK(s && strstr(s, "\"messages\":[1,2,3],") != NULL && integer_at(s, "metadata.turn_count") == 3
              && integer_at(s, "metadata.version") == 2 && string_is(s, "metadata.parent_id", id));
        agentsession_free(s);
        OK(agentsession_rewind(m, fork_id, UINT64_MAX, NULL, &err)); /* keeps all */
        OK(agentsession_resume(m, fork_id, &s, &err));
        CHECK(s && length_at(s, "messages") == 3);
        agentsession_free(s);
    }
    agentsession_free(fork_id);
}

static void test_tags_list(agentsession_manager *m, const char *id) {
    static const char *const add[] = { "b", "a", "t1" };
    static const char *const drop[] = { "t1", "zz" };
    static const char *const both[] = { "a", "b" };
    agentsession_filter f = AGENTSESSION_FILTER_INIT;
    char *tags = NULL, *list = NULL;
    /* the saves since the first gave no tags */
    OK(agentsession_tag(m, id, add, 3, &tags, &err));
    CHECK(tags && strcmp(tags, "[\"b\",\"a\",\"t1\"]") == 0);
    agentsession_free(tags);
    OK(agentsession_tag(m, id, add, 3, &tags, &err));
    CHECK(tags && strcmp(tags, "[\"b\",\"a\",\"t1\"]") == 0);
    agentsession_free(tags);
    OK(agentsession_untag(m, id, drop, 2, &tags, &err));
    CHECK(tags && strcmp(tags, "[\"b\",\"a\"]") == 0);
    agentsession_free(tags);
    OK(agentsession_tag(m, id, NULL, 0, &tags, &err));
    CHECK(tags && strcmp(tags, "[\"b\",\"a\"]") == 0);
    agentsession_free(tags);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_tag(m, id, (const char *const[]){ "ok", "" }, 2, &tags, &err));
    CHECK(tags == NULL && strcmp(err.path, "tags[2]") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_untag(m, id, (const char *const[]){ NULL }, 1, NULL, &err));
    CHECK(strcmp(err.path, "tags[1]") == 0);
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_tag(m, "gone", both, 2, NULL, &err));

    OK(agentsession_list(m, NULL, &list, &err));
    CHECK(list && length_at(list, "") == 3 && string_is(list, "[1].id", id)); /* tagged last */
    agentsession_free(list);
    f.tags = both;
    f.ntags = 2;
    OK(agentsession_list(m, &f, &list, &err));
    CHECK(list && length_at(list, "") == 1 && string_is(list, "[1].name", "task"));
    agentsession_free(list);
    f = (agentsession_filter)AGENTSESSION_FILTER_INIT;
    f.parent_id = id;
    OK(agentsession_list(m, &f, &list, &err));
    CHECK(list && length_at(list, "") == 2 && string_is(list, "[1].name", "task (fork)")); /* rewound last */
    agentsession_free(list);
    f.limit = 1;
    f.offset = 1;
    OK(agentsession_list(m, &f, &list, &err));
    CHECK(list && length_at(list, "") == 1 && string_is(list, "[1].name", "branch"));
    agentsession_free(list);
    f = (agentsession_filter)AGENTSESSION_FILTER_INIT;
    f.agent_name = "nobody";
    OK(agentsession_list(m, &f, &list, &err));
    CHECK(list && strcmp(list, "[]") == 0);
    agentsession_free(list);
    f.agent_name = NULL;
    f.ntags = 1;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_list(m, &f, &list, &err));
    CHECK(list == NULL && strcmp(err.path, "filter.tags") == 0);
}

static void test_export_import(agentsession_manager *m, const char *id) {
    agentsession_import_options o = AGENTSESSION_IMPORT_OPTIONS_INIT;
    agentsession_manager *other = NULL;
    char *json = NULL, *again = NULL, *meta = NULL, *s = NULL;
    OK(agentsession_export(m, id, &json, &err));
    CHECK(json && strstr(json, "\"version\"") == NULL && strstr(json, "\"window\"") == NULL);
    if (json == NULL) return;
    EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_import(m, json, NULL, &meta, &err));
    CHECK(meta == NULL && strcmp(err.id, id) == 0);
    o.replace = true;
    OK(agentsession_import(m, json, &o, &meta, &err));
    CHECK(meta && string_is(meta, "id", id));
    agentsession_free(meta);

    OK(agentsession_open_memory(NULL, &other, &err));
    OK(agentsession_import(other, json, NULL, &meta, &err));
    CHECK(meta && integer_at(meta, "version") == 1);
    agentsession_free(meta);
    OK(agentsession_export(other, id, &again, &err));
    CHECK(again && strcmp(json, again) == 0);
    agentsession_free(again);
    /* a document with a version or a window is not an export */
    OK(agentsession_resume(m, id, &s, &err));
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_import(other, s, &o, NULL, &err));
    CHECK(strcmp(err.path, "metadata.version") == 0);
    agentsession_free(s);
    agentsession_manager_free(other);
    agentsession_free(json);
}

/* Documents that break a rule: the status and the path of the error. */
static void test_bad_documents(agentsession_manager *m) {
    static const struct { const char *doc; agentsession_status st; const char *path; } bad[] = {
        { "", AGENTSESSION_ERR_INVALID, "" },
        { "[]", AGENTSESSION_ERR_INVALID, "" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"}} x", AGENTSESSION_ERR_INVALID, "" },
        { "{}", AGENTSESSION_ERR_INVALID, "metadata" },
        { "{\"metadata\":null}", AGENTSESSION_ERR_INVALID, "metadata" },
        { "{\"metadata\":{\"agent_name\":\"a\"}}", AGENTSESSION_ERR_INVALID, "metadata.id" },
        { "{\"metadata\":{\"id\":\"x\"}}", AGENTSESSION_ERR_INVALID, "metadata.agent_name" },
        { "{\"metadata\":{\"id\":7,\"agent_name\":\"a\"}}", AGENTSESSION_ERR_INVALID, "metadata.id" },
        { "{\"metadata\":{\"id\":\"\",\"agent_name\":\"a\"}}", AGENTSESSION_ERR_INVALID, "metadata.id" },
        { "{\"metadata\":{\"id\":\"a\\u0000b\",\"agent_name\":\"a\"}}", AGENTSESSION_ERR_INVALID, "metadata.id" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"colour\":1}}", AGENTSESSION_ERR_INVALID, "metadata.colour" },
        { "{\"metadata\":{\"id\":\"x\",\"id\":\"y\",\"agent_name\":\"a\"}}", AGENTSESSION_ERR_INVALID, "metadata.id" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"tags\":[\"ok\",3]}}", AGENTSESSION_ERR_INVALID, "metadata.tags[2]" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"tags\":\"t\"}}", AGENTSESSION_ERR_INVALID, "metadata.tags" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"turn_count\":-1}}", AGENTSESSION_ERR_INVALID, "metadata.turn_count" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"turn_count\":4294967296}}", AGENTSESSION_ERR_INVALID, "metadata.turn_count" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"created_at\":1.5}}", AGENTSESSION_ERR_INVALID, "metadata.created_at" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\",\"updated_at\":\"1\"}}", AGENTSESSION_ERR_INVALID, "metadata.updated_at" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"messages\":{}}", AGENTSESSION_ERR_INVALID, "messages" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"messages\":null}", AGENTSESSION_ERR_INVALID, "messages" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"messages\":[1,{\"c\":[tru]}]}", AGENTSESSION_ERR_INVALID, "messages[2].c[1]" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"messages\":[{\"k\":1,\"k\":2}]}", AGENTSESSION_ERR_INVALID, "messages[1].k" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"messages\":[\"\\ud800\"]}", AGENTSESSION_ERR_INVALID, "messages[1]" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"messages\":[1e400]}", AGENTSESSION_ERR_INVALID, "messages[1]" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"state\":{\"a\":{\"b\":\"\xff\"}}}", AGENTSESSION_ERR_INVALID, "state.a.b" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"extra\":1}", AGENTSESSION_ERR_INVALID, "extra" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"window\":{\"first\":1,\"total\":0}}", AGENTSESSION_ERR_INVALID, "window.version" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"window\":{\"first\":0,\"total\":0,\"version\":1}}", AGENTSESSION_ERR_INVALID, "window.first" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"window\":{\"first\":1,\"total\":0,\"version\":1,\"last\":2}}", AGENTSESSION_ERR_INVALID, "window.last" },
        { "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},\"window\":{\"first\":3,\"total\":0,\"version\":1}}", AGENTSESSION_ERR_INVALID, "window.first" },
        { "{\"metadata\":{\"id\":\"never-saved\",\"agent_name\":\"a\"},\"window\":{\"first\":1,\"total\":0,\"version\":1}}", AGENTSESSION_ERR_CONFLICT, "" },
    };
    char *before = snapshot(m), *after, *meta = NULL;
    size_t i;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        agentsession_status st = agentsession_save(m, bad[i].doc, NULL, &meta, &err);
        checks++;
        if (st != bad[i].st || strcmp(err.path, bad[i].path) != 0 || meta != NULL || err.status != st) {
            failures++;
            fprintf(stderr, "%s:%d: bad document %zu: got %s at \"%s\" (%s), wanted %s at \"%s\"\n",
                    __FILE__, __LINE__, i + 1, agentsession_kind(st), err.path, err.message,
                    agentsession_kind(bad[i].st), bad[i].path);
        }
        /* the message leads with the path */
        CHECK(err.path[0] == '\0' || strncmp(err.message, err.path, strlen(err.path)) == 0);
    }
    after = snapshot(m);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
    /* the example of docs/c-api.md, word for word */
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_save(m, "{\"metadata\":{\"id\":\"x\",\"agent_name\":\"a\"},"
                                                        "\"messages\":[1,{\"c\":[tru]}]}", NULL, NULL, &err));
    CHECK(strcmp(err.message, "messages[2].c[1]: at byte 61: invalid literal") == 0);

    /* nesting: 128 levels in a message are fine, 129 are not */
    {
        char deep[400], *doc;
        memset(deep, '[', 129);
        memset(deep + 129, ']', 129);
        deep[258] = '\0';
        doc = format("{\"metadata\":{\"id\":\"deep\",\"agent_name\":\"a\"},\"messages\":[%s]}", deep);
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_save(m, doc, NULL, NULL, &err));
        free(doc);
        doc = format("{\"metadata\":{\"id\":\"deep\",\"agent_name\":\"a\"},\"state\":%s}", deep);
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_save(m, doc, NULL, NULL, &err));
        free(doc);
        doc = format("{\"metadata\":{\"id\":\"deep\",\"agent_name\":\"a\"},\"messages\":[%s]}", deep + 1);
        doc[strlen(doc) - 3] = ']'; /* balance: 128 open, 128 closed */
        doc[strlen(doc) - 2] = '}';
        doc[strlen(doc) - 1] = '\0';
        OK(agentsession_save(m, doc, NULL, NULL, &err));
        free(doc);
        OK(agentsession_delete(m, "deep", &err));
    }
}

/* Object members: as given in memory, in key order where the store compares texts. */
static void test_key_order(agentsession_manager *m, int canonical) {
    char *s = NULL;
    agentsession_free(save_doc(m, "order", "order", "[{\"b\":1,\"a\":{\"d\":[{\"z\":0,\"y\":1}],\"c\":2}}]", "{\"y\":1,\"x\":2}"));
    OK(agentsession_resume(m, "order", &s, &err));
    if (canonical)
        CHECK(s && strstr(s, "[{\"a\":{\"c\":2,\"d\":[{\"y\":1,\"z\":0}]},\"b\":1}],\"state\":{\"x\":2,\"y\":1}"));
    else
        CHECK(s && strstr(s, "[{\"b\":1,\"a\":{\"d\":[{\"z\":0,\"y\":1}],\"c\":2}}],\"state\":{\"y\":1,\"x\":2}"));
    agentsession_free(s);
    OK(agentsession_delete(m, "order", &err));
}

static void test_delete_close(agentsession_manager *m, const char *id) {
    agentsession_store_stats st;
    char *s = NULL;
    OK(agentsession_delete(m, id, &err));
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_resume(m, id, &s, &err));
    CHECK(s == NULL && strcmp(err.id, id) == 0 && strcmp(agentsession_kind(err.status), "not_found") == 0);
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_delete(m, id, &err));
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_rename(m, id, "x", &err));
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_rewind(m, id, 1, &s, &err));
    EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_export(m, id, &s, &err));
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_resume(m, "", &s, &err));
    CHECK(strcmp(err.path, "id") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_resume(m, NULL, &s, &err));
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_rename(m, "x", NULL, &err));
    CHECK(strcmp(err.path, "new_name") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_stats(m, NULL, &err));
    OK(agentsession_stats(m, &st, &err));

    agentsession_close(m);
    agentsession_close(m);
    EXPECT(AGENTSESSION_ERR_CLOSED, agentsession_resume(m, id, &s, &err));
    CHECK(s == NULL && strcmp(err.message, "the manager is closed") == 0);
    EXPECT(AGENTSESSION_ERR_CLOSED, agentsession_list(m, NULL, &s, &err));
    EXPECT(AGENTSESSION_ERR_CLOSED, agentsession_stats(m, &st, &err));
    EXPECT(AGENTSESSION_ERR_CLOSED, agentsession_save(m, "{}", NULL, NULL, &err));
}

/* Every operation on a fresh manager m (closed and freed here). */
/* Progress functions: one that counts its calls, one that stops the prune. */
static agentsession_status count_calls(void *ctx, size_t deleted) {
    size_t *calls = ctx;
    (void)deleted;
    ++*calls;
    return AGENTSESSION_OK;
}

static agentsession_status stop(void *ctx, size_t deleted) {
    (void)ctx;
    (void)deleted;
    return AGENTSESSION_ERR_CONFLICT;
}

/* Sessions sp-1 .. sp-3 of their own agent, searched and pruned. */
static void test_search_prune(agentsession_manager *m) {
    agentsession_filter f = AGENTSESSION_FILTER_INIT;
    agentsession_prune_options o = AGENTSESSION_PRUNE_OPTIONS_INIT;
    char *doc, *meta = NULL, *found = NULL, *ids = NULL;
    size_t calls = 0;
    int64_t last = 0;
    int i;
    for (i = 1; i <= 3; i++) {
        doc = format("{\"metadata\":{\"id\":\"sp-%d\",\"agent_name\":\"sp\",\"name\":\"%s\",\"tags\":[\"%s\"]},"
                     "\"messages\":%s}", i, i == 3 ? "zebracorn notes" : "other", i == 1 ? "keep" : "t",
                     i == 2 ? "[\"a Zebracorn \\u00e9t\u00e9\", {\"text\": \"none\"}]" : "[\"plain\"]");
        OK(agentsession_save(m, doc, NULL, &meta, &err));
        last = meta ? integer_at(meta, "updated_at") : 0;
        agentsession_free(meta);
        free(doc);
    }
    OK(agentsession_search(m, "ZEBRACORN", NULL, &found, &err));
    CHECK(found && length_at(found, "") == 2 && string_is(found, "[1].metadata.id", "sp-3")
          && integer_at(found, "[1].index") == 0 && string_is(found, "[1].snippet", "zebracorn notes\nt"));
    CHECK(found && string_is(found, "[2].metadata.id", "sp-2") && integer_at(found, "[2].index") == 1
          && string_is(found, "[2].snippet", "a Zebracorn \u00e9t\u00e9"));
    agentsession_free(found);
    f.agent_name = "sp";
    f.offset = 1;
    OK(agentsession_search(m, "\"a zebracorn\"", &f, &found, &err));
    CHECK(found && strcmp(found, "[]") == 0);
    agentsession_free(found);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_search(m, " - ", NULL, &found, &err));
    CHECK(found == NULL && strcmp(err.path, "query") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_search(m, NULL, NULL, NULL, &err));
    CHECK(strcmp(err.path, "query") == 0);

    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_prune(m, NULL, &ids, &err));
    CHECK(ids == NULL && strcmp(err.path, "opts") == 0);
    o.before = last + 1;
    o.keep_tag = "";
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_prune(m, &o, &ids, &err));
    CHECK(strcmp(err.path, "opts.keep_tag") == 0);
    o.ntags = 1;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_prune(m, &o, &ids, &err));
    CHECK(strcmp(err.path, "opts.tags") == 0);
    o.ntags = 0;
    o.keep_tag = "keep";
    o.agent_name = "sp";
    o.dry_run = true;
    OK(agentsession_prune(m, &o, &ids, &err));
    CHECK(ids && (strcmp(ids, "[\"sp-3\",\"sp-2\"]") == 0 || strcmp(ids, "[\"sp-2\",\"sp-3\"]") == 0));
    agentsession_free(ids);
    o.dry_run = false;
    o.progress = count_calls;
    o.progress_ctx = &calls;
    o.parent_id = "none";
    OK(agentsession_prune(m, &o, &ids, &err));
    CHECK(ids && strcmp(ids, "[]") == 0 && calls == 0);
    agentsession_free(ids);
    o.parent_id = NULL;
    o.progress = stop;
    EXPECT(AGENTSESSION_ERR_CONFLICT, agentsession_prune(m, &o, &ids, &err));
    CHECK(ids == NULL && strstr(err.message, "stopped by opts.progress (conflict) after") != NULL);
    o.progress = count_calls;
    OK(agentsession_prune(m, &o, &ids, &err));
    CHECK(ids != NULL); /* what the batch before the stop left, if any */
    agentsession_free(ids);
    OK(agentsession_search(m, "zebracorn", NULL, &found, &err));
    CHECK(found && strcmp(found, "[]") == 0);
    agentsession_free(found);
    OK(agentsession_search(m, "plain", &f, &found, &err));
    CHECK(found && strcmp(found, "[]") == 0); /* offset 1 */
    agentsession_free(found);
    f.offset = 0;
    OK(agentsession_search(m, "plain", &f, &found, &err));
    CHECK(found && length_at(found, "") == 1 && string_is(found, "[1].metadata.id", "sp-1"));
    agentsession_free(found);
    OK(agentsession_delete(m, "sp-1", &err));
}

static void test_operations(agentsession_manager *m, int canonical) {
    char id[AGENTSESSION_UUID_SIZE];
    OK(agentsession_uuid(id, &err));
    CHECK(strlen(id) == 36 && id[14] == '4');
    test_save_resume(m, id);
    test_windows(m, id);
    test_append(m, id);
    test_fork_rewind(m, id);
    test_tags_list(m, id);
    test_export_import(m, id);
    test_bad_documents(m);
    test_key_order(m, canonical);
    test_search_prune(m);
    test_delete_close(m, id);
    agentsession_manager_free(m);
}

/* ---------------------------------------------------------------- the rest */

static void test_small_things(void) {
    char version[32], *s = NULL;
    int64_t v;
    size_t n;
    snprintf(version, sizeof version, "%d.%d.%d", AGENTSESSION_VERSION_MAJOR, AGENTSESSION_VERSION_MINOR,
             AGENTSESSION_VERSION_PATCH);
    CHECK(strcmp(version, AGENTSESSION_VERSION) == 0 && strcmp(agentsession_version(), version) == 0);
    CHECK(strcmp(agentsession_kind(AGENTSESSION_ERR_TOO_LARGE), "too_large") == 0);
    CHECK(strcmp(agentsession_kind(AGENTSESSION_ERR_NOMEM), "storage") == 0);
    CHECK(strcmp(agentsession_kind(AGENTSESSION_ERR_UNAVAILABLE), "unavailable") == 0);
    agentsession_free(NULL);
    agentsession_close(NULL);
    agentsession_manager_free(NULL);

    /* the readers */
    {
        const char *doc = "{\"a\":{\"b\":[10,{\"c\":\"x\\\"y\"},[1,2,3]],\"d\":2.0,\"e\":2.5,\"f\":null}}";
        CHECK(integer_at(doc, "a.b[1]") == 10 && integer_at(doc, "a.d") == 2);
        CHECK(string_is(doc, "a.b[2].c", "x\"y"));
        CHECK(length_at(doc, "a.b[3]") == 3 && length_at(doc, "a") == 4 && length_at(doc, "") == 1);
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_integer(doc, "a.e", &v, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_string(doc, "a.b[1]", &s, &err));
        CHECK(s == NULL && strcmp(err.path, "a.b[1]") == 0);
        EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_json_length(doc, "a.b[4]", &n, &err));
        EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_json_length(doc, "a.zz", &n, &err));
        EXPECT(AGENTSESSION_ERR_NOT_FOUND, agentsession_json_length(doc, "a.f.g", &n, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_length(doc, "a.f", &n, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_length(doc, "a[0]", &n, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_length(doc, ".a", &n, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_length("[1,", "[3]", &n, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_string("\"a\\u0000\"", "", &s, &err));
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_json_string(NULL, "", &s, &err));
        OK(agentsession_json_integer("[9223372036854775807]", "[1]", &v, &err));
        CHECK(v == INT64_MAX);
    }
}

static void test_constructors(const char *dir) {
    agentsession_manager *m = NULL;
    agentsession_memory_options mo = AGENTSESSION_MEMORY_OPTIONS_INIT;
    agentsession_sqlite_options so = AGENTSESSION_SQLITE_OPTIONS_INIT;
    agentsession_redis_options ro = AGENTSESSION_REDIS_OPTIONS_INIT;
    agentsession_store_stats st;
    char *path = format("%s/options.db", dir), *meta = NULL;
    struct stat info;

    mo.max_session_bytes = 0;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_memory(&mo, &m, &err));
    CHECK(m == NULL && strcmp(err.path, "opts.max_session_bytes") == 0);
    mo.max_session_bytes = 300;
    OK(agentsession_open_memory(&mo, &m, &err));
    EXPECT(AGENTSESSION_ERR_TOO_LARGE, agentsession_save(m, "{\"metadata\":{\"id\":\"big\",\"agent_name\":\"a\"},"
        "\"messages\":[\"0123456789012345678901234567890123456789012345678901234567890123456789\","
        "\"0123456789012345678901234567890123456789012345678901234567890123456789\"]}", NULL, &meta, &err));
    CHECK(meta == NULL && strcmp(err.id, "big") == 0);
    OK(agentsession_stats(m, &st, &err));
    CHECK(strcmp(st.kind, "memory") == 0 && st.location == NULL && st.round_trips == 0);
    agentsession_manager_free(m);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_memory(NULL, NULL, &err));

    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_sqlite("", NULL, &m, &err));
    CHECK(m == NULL && strcmp(err.path, "path") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_sqlite(NULL, NULL, &m, &err));
    so.busy_timeout_ms = -1;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_sqlite(path, &so, &m, &err));
    CHECK(strcmp(err.path, "opts.busy_timeout_ms") == 0);
    so.busy_timeout_ms = 100;
    so.durability = (agentsession_durability)7;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_sqlite(path, &so, &m, &err));
    so.durability = AGENTSESSION_DURABILITY_FULL;
    so.triggers = true;
    OK(agentsession_open_sqlite(path, &so, &m, &err));
    OK(agentsession_stats(m, &st, &err));
    CHECK(strcmp(st.kind, "sqlite") == 0 && st.location && strstr(st.location, "options.db"));
    CHECK(stat(path, &info) == 0 && (info.st_mode & 0777) == 0600);
    agentsession_manager_free(m);
    free(path);
    path = format("%s/no-such-dir/x.db", dir);
    EXPECT(AGENTSESSION_ERR_STORAGE, agentsession_open_sqlite(path, NULL, &m, &err));
    CHECK(m == NULL);
    free(path);

    ro.port = 0;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis(&ro, &m, &err));
    CHECK(m == NULL && strcmp(err.path, "opts.port") == 0 && strcmp(err.message, "opts.port: must be from 1 to 65535 (got 0)") == 0);
    ro = (agentsession_redis_options)AGENTSESSION_REDIS_OPTIONS_INIT;
    ro.username = "u";
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis(&ro, &m, &err));
    CHECK(strcmp(err.path, "opts.username") == 0);
    ro = (agentsession_redis_options)AGENTSESSION_REDIS_OPTIONS_INIT;
    ro.host = "";
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis(&ro, &m, &err));
    ro.host = NULL;
    ro.timeout_ms = 0;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis(&ro, &m, &err));
    ro.timeout_ms = 1000;
    ro.db = -1;
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis(&ro, &m, &err));
    CHECK(strcmp(err.path, "opts.db") == 0);
    EXPECT(AGENTSESSION_ERR_INVALID, agentsession_save(NULL, "{}", NULL, NULL, &err));
    CHECK(strcmp(err.path, "m") == 0);
}

/* A damaged message in a SQLite file is a storage error when resumed, naming it. */
static void test_damaged(const char *dir) {
    agentsession_manager *m = NULL;
    char *path = format("%s/damaged.db", dir), *s = NULL;
    sqlite3 *db;
    OK(agentsession_open_sqlite(path, NULL, &m, &err));
    agentsession_free(save_doc(m, "hurt", "hurt", "[1,{\"a\":2}]", "{}"));
    agentsession_manager_free(m);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK
          && sqlite3_exec(db, "UPDATE messages SET body = '{\"a\":' WHERE body = '{\"a\":2}'", NULL, NULL, NULL)
             == SQLITE_OK
          && sqlite3_changes(db) == 1);
    sqlite3_close(db);
    OK(agentsession_open_sqlite(path, NULL, &m, &err));
    EXPECT(AGENTSESSION_ERR_STORAGE, agentsession_resume(m, "hurt", &s, &err));
    CHECK(s == NULL && strcmp(err.path, "messages[2].a") == 0 && strcmp(err.id, "hurt") == 0
          && strstr(err.message, "is damaged") != NULL);
    OK(agentsession_resume_last(m, "hurt", 0, &s, &err)); /* a window without it reads well */
    agentsession_free(s);
    agentsession_manager_free(m);
    free(path);
}

/* ---------------------------------------------------------------- out of memory */

typedef agentsession_status (*operation)(agentsession_manager *m, char **out);

static agentsession_status op_save(agentsession_manager *m, char **out) {
    return agentsession_save(m, "{\"metadata\":{\"id\":\"s1\",\"agent_name\":\"a\",\"tags\":[\"x\",\"y\"],"
                                "\"name\":\"n\"},\"messages\":[{\"b\":1,\"a\":[true,null]},\"two\"],"
                                "\"state\":{\"k\":\"v\"}}", NULL, out, &err);
}
static agentsession_status op_save_window(agentsession_manager *m, char **out) {
    return agentsession_save(m, "{\"metadata\":{\"id\":\"s1\",\"agent_name\":\"a\"},\"messages\":[3],"
                                "\"window\":{\"first\":3,\"total\":2,\"version\":1}}", NULL, out, &err);
}
static agentsession_status op_resume(agentsession_manager *m, char **out) {
    return agentsession_resume(m, "s1", out, &err);
}
static agentsession_status op_resume_last(agentsession_manager *m, char **out) {
    return agentsession_resume_last(m, "s1", 1, out, &err);
}
static agentsession_status op_append(agentsession_manager *m, char **out) {
    agentsession_append_options o = AGENTSESSION_APPEND_OPTIONS_INIT;
    o.tokens = 5;
    o.state_json = "{\"z\":1,\"y\":2}";
    return agentsession_append(m, "s1", "[{\"q\":1},\"r\"]", &o, out, &err);
}
static agentsession_status op_append_op_id(agentsession_manager *m, char **out) {
    agentsession_append_options o = AGENTSESSION_APPEND_OPTIONS_INIT;
    o.op_id = "faults";
    return agentsession_append(m, "s1", "[{\"op\":1}]", &o, out, &err);
}
static agentsession_status op_list(agentsession_manager *m, char **out) {
    return agentsession_list(m, NULL, out, &err);
}
static agentsession_status op_fork(agentsession_manager *m, char **out) {
    return agentsession_fork_at(m, "s1", NULL, 1, out, &err);
}
static agentsession_status op_rewind(agentsession_manager *m, char **out) {
    return agentsession_rewind(m, "s1", 1, out, &err);
}
static agentsession_status op_tag(agentsession_manager *m, char **out) {
    return agentsession_tag(m, "s1", (const char *const[]){ "new" }, 1, out, &err);
}
static agentsession_status op_untag(agentsession_manager *m, char **out) {
    return agentsession_untag(m, "s1", (const char *const[]){ "x" }, 1, out, &err);
}
static agentsession_status op_rename(agentsession_manager *m, char **out) {
    *out = NULL;
    return agentsession_rename(m, "s1", "renamed", &err);
}
static agentsession_status op_export(agentsession_manager *m, char **out) {
    return agentsession_export(m, "s1", out, &err);
}
static agentsession_status op_import(agentsession_manager *m, char **out) {
    agentsession_import_options o = AGENTSESSION_IMPORT_OPTIONS_INIT;
    o.replace = true;
    return agentsession_import(m, "{\"metadata\":{\"id\":\"s1\",\"name\":null,\"tags\":[],\"agent_name\":\"a\","
                                  "\"created_at\":5,\"updated_at\":6,\"turn_count\":1,\"total_tokens\":0},"
                                  "\"messages\":[{\"m\":1}],\"state\":{}}", &o, out, &err);
}
static agentsession_status op_delete(agentsession_manager *m, char **out) {
    *out = NULL;
    return agentsession_delete(m, "s1", &err);
}

/* Runs op with the n-th allocation failing, for n = 1, 2, … until it
** succeeds: each failed run must report NOMEM, leak nothing and leave the
** store as it was; the successful run is the one kept. */
static void under_faults(agentsession_manager *m, const char *name, operation op) {
    unsigned long n;
    for (n = 1; n < 100000; n++) {
        char *before = snapshot(m), *after, *out = NULL;
        long live = as_alloc_live();
        agentsession_status st;
        agentsession_error got;
        as_alloc_fail_after(n);
        st = op(m, &out);
        as_alloc_fail_after(0);
        got = err;
        if (!as_alloc_fail_hit()) {
            EXPECT(AGENTSESSION_OK, st);
            CHECK(out != NULL || op == op_rename || op == op_delete);
            agentsession_free(out);
            free(before);
            return;
        }
        after = snapshot(m);
        checks++;
        if (st != AGENTSESSION_ERR_NOMEM || out != NULL || as_alloc_live() != live
            || before == NULL || after == NULL || strcmp(before, after) != 0) {
            failures++;
            fprintf(stderr, "%s:%d: %s with allocation %lu failing: %s (%s), live %ld -> %ld, store %s\n",
                    __FILE__, __LINE__, name, n, agentsession_kind(st), got.message, live, as_alloc_live(),
                    before && after && strcmp(before, after) == 0 ? "unchanged" : "CHANGED");
            agentsession_free(out);
            free(before);
            free(after);
            return;
        }
        free(before);
        free(after);
    }
    CHECK(!"under_faults: the operation never succeeded");
}

/* The store grows its tables once: a first session saved and deleted makes
** that growth, which a failed call may keep, happen before the counting. */
static void test_faults(agentsession_manager *m) {
    static const struct { const char *name; operation op; } ops[] = {
        { "save", op_save }, { "save of a window", op_save_window }, { "resume", op_resume },
        { "resume_last", op_resume_last }, { "append", op_append },
        { "append with an op_id", op_append_op_id }, { "append with that op_id again", op_append_op_id },
        { "list", op_list },
        { "fork", op_fork }, { "rewind", op_rewind }, { "tag", op_tag }, { "untag", op_untag },
        { "rename", op_rename }, { "export", op_export }, { "import", op_import }, { "delete", op_delete },
    };
    size_t i;
    char *out = NULL;
    OK(op_save(m, &out));
    agentsession_free(out);
    OK(op_delete(m, &out));
    for (i = 0; i < sizeof ops / sizeof *ops; i++) under_faults(m, ops[i].name, ops[i].op);
    agentsession_manager_free(m);
}

/* ---------------------------------------------------------------- main */

static int finish(void) {
    printf("capi_test: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    agentsession_manager *m = NULL;
    const char *tmp = getenv("TMPDIR");
    char *dir, *path, *cmd;
    long live;

    if (argc == 5 && strcmp(argv[1], "redis") == 0) {
        agentsession_redis_options o = AGENTSESSION_REDIS_OPTIONS_INIT;
        agentsession_store_stats st;
        o.host = argv[2];
        o.port = atoi(argv[3]);
        o.prefix = argv[4];
        OK(agentsession_open_redis(&o, &m, &err));
        if (m == NULL) return finish();
        OK(agentsession_stats(m, &st, &err));
        CHECK(strcmp(st.kind, "redis") == 0 && st.connects >= 1);
        test_operations(m, 0);
        return finish();
    }
    if (argc == 4 && strcmp(argv[1], "redis-down") == 0) {
        agentsession_redis_options o = AGENTSESSION_REDIS_OPTIONS_INIT;
        o.host = argv[2];
        o.port = atoi(argv[3]);
        o.timeout_ms = 500;
        EXPECT(AGENTSESSION_ERR_UNAVAILABLE, agentsession_open_redis(&o, &m, &err));
        CHECK(m == NULL && strstr(err.message, argv[3]) != NULL);
        return finish();
    }
    if (argc >= 4 && strcmp(argv[1], "redis-cluster") == 0) {
        agentsession_redis_options o = AGENTSESSION_REDIS_OPTIONS_INIT;
        agentsession_store_stats st;
        const char *bad[1] = { "no-port" };
        o.prefix = argv[2];
        o.timeout_ms = 30000;
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis_cluster(NULL, 0, &o, &m, &err));
        CHECK(m == NULL && strcmp(err.path, "nodes") == 0);
        EXPECT(AGENTSESSION_ERR_INVALID, agentsession_open_redis_cluster(bad, 1, &o, &m, &err));
        CHECK(m == NULL && strcmp(err.path, "cluster[1]") == 0);
        OK(agentsession_open_redis_cluster((const char *const *)argv + 3, (size_t)argc - 3, &o, &m,
                                           &err));
        if (m == NULL) return finish();
        OK(agentsession_stats(m, &st, &err));
        CHECK(strcmp(st.kind, "redis") == 0 && st.refreshes >= 1
              && strncmp(st.location, "redis cluster at ", 17) == 0);
        test_operations(m, 0);
        return finish();
    }
    if (argc != 1) {
        fprintf(stderr, "usage: capi_test [redis HOST PORT PREFIX | redis-down HOST PORT | "
                "redis-cluster PREFIX HOST:PORT...]\n");
        return 2;
    }

    as_alloc_hook_on();
    dir = format("%s/capi_test.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("capi_test: mkdtemp");
        return 1;
    }
    live = as_alloc_live();
    test_small_things();
    test_constructors(dir);

    OK(agentsession_open_memory(NULL, &m, &err));
    if (m) test_operations(m, 0);
    path = format("%s/store.db", dir);
    OK(agentsession_open_sqlite(path, NULL, &m, &err));
    if (m) test_operations(m, 1);
    free(path);
    test_damaged(dir);

    OK(agentsession_open_memory(NULL, &m, &err));
    if (m) test_faults(m);
    path = format("%s/faults.db", dir);
    OK(agentsession_open_sqlite(path, NULL, &m, &err));
    if (m) test_faults(m);
    free(path);

    CHECK(as_alloc_live() == live); /* every result freed, every manager too */
    cmd = format("rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "capi_test: could not remove %s\n", dir);
    free(cmd);
    free(dir);
    return finish();
}
