/*
** Tests of the C core on its own, as a C host uses it: no Lua anywhere, sessions
** built from C strings and JSON text. Prints each failed check, then a count.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/core/as_json.h"
#include "../csrc/core/as_manager.h"
#include "../csrc/core/as_digest.h"
#include "../csrc/core/as_store_redis.h"
#include "../csrc/core/as_store_memory.h"
#include "../csrc/core/as_store_sqlite.h"
#include "../csrc/core/as_alloc.h"
#include "../csrc/core/as_search.h"
#include "../csrc/core/as_utf8.h"

static int checks, failures;

#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static as_status validate(const char *text, as_error *err) {
    as_buf scratch = AS_BUF_INIT;
    as_status st = as_json_validate(text, strlen(text), &scratch, "value", err);
    as_buf_free(&scratch);
    return st;
}

static void test_json(void) {
    static const char *const good[] = {
        "null", "true", " [1, -0, 1.5e3, \"\\ud83d\\ude00\"] ", "{\"a\":{\"b\":[]}}",
        "\"caf\xc3\xa9\"", "-9223372036854775808", "123456789012345678901234567890"
    };
    static const char *const bad[] = {
        "", "[", "[1,]", "{\"a\"}", "01", "1.", "+1", "NaN", "\"\\ud800\"", "\"\xff\"",
        "\"\xc0\xaf\"", "[1] x", "1e400", "{1:2}", "\"a\x01\""
    };
    as_error err;
    as_buf b = AS_BUF_INIT;
    size_t i, bad_at = 0;
    char deep[300];

    for (i = 0; i < sizeof good / sizeof *good; i++) CHECK(validate(good[i], &err) == AS_OK);
    for (i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(validate(bad[i], &err) == AS_EINVALID);

    CHECK(validate("[1, {\"a\": [true, tru]}]", &err) == AS_EINVALID);
    CHECK(strcmp(err.path, "value[2].a[2]") == 0);

    memset(deep, '[', 129);
    memset(deep + 129, ']', 129);
    deep[258] = '\0';
    CHECK(validate(deep, &err) == AS_EINVALID);
    CHECK(validate(deep + 1, &err) == AS_EINVALID); /* unbalanced */
    deep[128] = ' ';
    deep[129 + 128] = '\0';
    CHECK(validate(deep, &err) == AS_OK);           /* 128 levels */

    CHECK(as_json_write_double(&b, 1.0) == 0 && b.len == 3 && memcmp(b.data, "1.0", 3) == 0);
    b.len = 0;
    CHECK(as_json_write_double(&b, 0.1) == 0 && memcmp(b.data, "0.1", 3) == 0 && b.len == 3);
    b.len = 0;
    CHECK(as_json_write_double(&b, 5e-324) == 0 && b.len == 6 && memcmp(b.data, "5e-324", 6) == 0);
    b.len = 0;
    CHECK(as_json_write_integer(&b, INT64_MIN) == 0 && b.len == 20);
    b.len = 0;
    CHECK(as_json_write_string(&b, "a\"\n\x01", 4, NULL) == 0 && b.len == 13 && memcmp(b.data, "\"a\\\"\\n\\u0001\"", 13) == 0);
    b.len = 0;
    CHECK(as_json_write_string(&b, "ok\xed\xa0\x80", 5, &bad_at) == 1 && bad_at == 2 && b.len == 0);
    as_buf_free(&b);
}

static as_blob *blob(const char *json) {
    return as_blob_new(json, strlen(json));
}

static void test_manager(void) {
    as_store *store;
    as_manager *m;
    as_error err;
    as_session s = { 0 }, got = { 0 };
    as_meta stored = { 0 }, forked = { 0 }, tagged = { 0 };
    as_meta_list list = { 0 };
    as_filter all = AS_FILTER_ALL;
    const char *tags[] = { "reviewed", "production" };
    char *first_id;
    as_buf doc = AS_BUF_INIT;

    CHECK(as_store_memory_new(&store, &err) == AS_OK);
    CHECK(as_manager_new(store, NULL, &m, &err) == AS_OK);
    CHECK(strcmp(as_manager_kind(m), "memory") == 0);

    s.meta.id = "3f2c0000-0000-4000-8000-000000000001";
    s.meta.name = "my-task";
    s.meta.agent_name = "code-agent";
    s.msgs = (as_blob *[]){ blob("{\"role\":\"user\",\"n\":1}"), blob("[]"), blob("2.5") };
    s.nmsgs = 3;
    s.state = blob("{\"cwd\":\"/home/user\"}");

    CHECK(as_manager_save(m, &s, NULL, -1, &stored, &err) == AS_OK);
    CHECK(stored.version == 1 && stored.created_at == stored.updated_at && stored.created_at > 0);
    first_id = stored.id;

    CHECK(as_manager_resume(m, first_id, NULL, &got, NULL, &err) == AS_OK);
    CHECK(got.nmsgs == 3 && strcmp(got.msgs[1]->text, "[]") == 0 && got.msgs[0] == s.msgs[0]);
    CHECK(as_session_write_json(&doc, &got) == 0 && as_buf_putc(&doc, '\0') == 0
          && strstr(doc.data, "\"messages\":[{\"role\"") != NULL);
    as_session_clear(&got);

    CHECK(as_manager_resume(m, first_id, &(as_span){ AS_SPAN_TAIL, 1 }, &got, NULL, &err) == AS_OK);
    CHECK(got.nmsgs == 1 && strcmp(got.msgs[0]->text, "2.5") == 0);
    as_session_clear(&got);

    /* an error record reused from call to call tells each call's own error */
    CHECK(as_manager_resume(m, "missing-a", NULL, &got, NULL, &err) == AS_ENOTFOUND
          && strstr(err.message, "missing-a") != NULL);
    CHECK(as_manager_resume(m, "missing-b", NULL, &got, NULL, &err) == AS_ENOTFOUND
          && strstr(err.message, "missing-b") != NULL && strcmp(err.id, "missing-b") == 0);

    /* a fork shares the blobs of its source */
    CHECK(as_manager_fork(m, first_id, NULL, AS_KEEP_ALL, &forked, &err) == AS_OK);
    CHECK(strcmp(forked.name, "my-task (fork)") == 0 && strcmp(forked.parent_id, first_id) == 0);
    CHECK(s.msgs[0]->refs == 3); /* ours, the source's and the fork's */

    /* export writes a fork's parent_id after the seed's eight fields, and no version */
    doc.len = 0;
    CHECK(as_manager_export(m, forked.id, &doc, &err) == AS_OK && as_buf_putc(&doc, '\0') == 0
          && strstr(doc.data, "\"total_tokens\":0,\"parent_id\":\"3f2c0000-0000-4000-8000-000000000001\"},")
          && strstr(doc.data, "\"version\"") == NULL);
    doc.len = 0;
    CHECK(as_manager_export(m, first_id, &doc, &err) == AS_OK && as_buf_putc(&doc, '\0') == 0
          && strstr(doc.data, "\"total_tokens\":0},") && strstr(doc.data, "parent_id") == NULL);

    CHECK(as_manager_rewind(m, first_id, 1, &got, &err) == AS_OK);
    CHECK(got.nmsgs == 1 && got.meta.turn_count == 1 && got.meta.version == 2);
    as_session_clear(&got);

    CHECK(as_manager_tag(m, first_id, tags, 2, 0, &tagged, &err) == AS_OK);
    CHECK(tagged.ntags == 2 && strcmp(tagged.tags[0], "reviewed") == 0);
    as_meta_clear(&tagged);

    CHECK(as_manager_list(m, &all, &list, &err) == AS_OK);
    CHECK(list.n == 2 && strcmp(list.items[0].id, first_id) == 0); /* most recent write first */
    as_meta_list_clear(&list);

    CHECK(as_manager_rename(m, first_id, "bad\x01name", &err) == AS_EINVALID);
    CHECK(strcmp(err.path, "name") == 0);
    CHECK(as_manager_resume(m, "", NULL, &got, NULL, &err) == AS_EINVALID);
    CHECK(as_manager_delete(m, first_id, &err) == AS_OK);
    CHECK(as_manager_delete(m, first_id, &err) == AS_ENOTFOUND && strcmp(err.id, first_id) == 0);
    CHECK(as_manager_resume(m, forked.id, NULL, &got, NULL, &err) == AS_OK && got.nmsgs == 3);
    as_session_clear(&got);

    as_manager_free(m);
    CHECK(s.msgs[0]->refs == 1); /* the store let go of everything */
    as_blob_unref(s.msgs[0]);
    as_blob_unref(s.msgs[1]);
    as_blob_unref(s.msgs[2]);
    as_blob_unref(s.state);
    as_meta_clear(&stored);
    as_meta_clear(&forked);
    as_buf_free(&doc);
}

/* An append with an op_id applies once per session; the last AS_OP_IDS_KEPT
** are remembered; a deleted session's go with it. */
static void test_op_ids(void) {
    as_store *store;
    as_manager *m;
    as_error err;
    as_session s = { 0 };
    as_meta meta = { 0 };
    as_blob *msg = blob("\"m\"");
    int applied = -1, i, again = 0;
    char op[32];
    as_append_opts opts = { .expect_version = -1, .op_id = "op-1", .applied = &applied };

    CHECK(as_store_memory_new(&store, &err) == AS_OK);
    CHECK(as_manager_new(store, NULL, &m, &err) == AS_OK);
    s.meta.id = "ops";
    s.meta.agent_name = "";
    CHECK(as_manager_save(m, &s, NULL, -1, &meta, &err) == AS_OK);
    as_meta_clear(&meta);
    CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK && applied == 1);
    CHECK(meta.version == 2 && meta.turn_count == 1);
    as_meta_clear(&meta);
    opts.expect_version = 1; /* a repeat is no conflict */
    CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK && applied == 0);
    CHECK(meta.version == 2 && meta.turn_count == 1);
    as_meta_clear(&meta);
    opts.expect_version = -1;
    for (i = 2; i <= AS_OP_IDS_KEPT + 1; i++) {
        snprintf(op, sizeof op, "op-%d", i);
        opts.op_id = op;
        CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK && applied == 1);
        as_meta_clear(&meta);
    }
    for (i = 2; i <= AS_OP_IDS_KEPT + 1; i++) {
        snprintf(op, sizeof op, "op-%d", i);
        CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK);
        again += applied;
        as_meta_clear(&meta);
    }
    CHECK(again == 0);
    /* many more: the memory store keeps exactly the last AS_OP_IDS_KEPT, through its index */
    for (i = AS_OP_IDS_KEPT + 2; i <= 1000; i++) {
        int j;
        snprintf(op, sizeof op, "op-%d", i);
        CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK && applied == 1);
        as_meta_clear(&meta);
        if (i % 97 != 0) continue;
        for (j = i - AS_OP_IDS_KEPT + 1; j <= i; j++) {
            snprintf(op, sizeof op, "op-%d", j);
            CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK);
            again += applied;
            as_meta_clear(&meta);
        }
    }
    CHECK(again == 0);
    snprintf(op, sizeof op, "op-%d", 1000 - AS_OP_IDS_KEPT);
    CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK && applied == 1);
    as_meta_clear(&meta);
    opts.op_id = "op\x01";
    CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_EINVALID);
    CHECK(strcmp(err.path, "op_id") == 0);
    opts.op_id = "op-2";
    CHECK(as_manager_delete(m, "ops", &err) == AS_OK);
    CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_ENOTFOUND);
    CHECK(as_manager_save(m, &s, NULL, -1, &meta, &err) == AS_OK);
    as_meta_clear(&meta);
    CHECK(as_manager_append(m, "ops", &msg, 1, &opts, &meta, &err) == AS_OK && applied == 1);
    as_meta_clear(&meta);
    as_manager_free(m);
    as_blob_unref(msg);
}

/* The digest by its definition, one chunk at a time, with 128-bit arithmetic
** done the slow way: len*k^(m+1) + c1*k^m + ... + cm*k mod 2^61 - 1. */
/* A window's save keeps the stored messages before it and replaces the rest. */
static void test_windows(void) {
    as_store *store;
    as_manager *m;
    as_error err;
    as_session s = { 0 }, win = { 0 }, got = { 0 };
    as_meta stored = { 0 };
    as_window w, stale;
    as_append_opts opts = { .expect_version = -1 };
    as_blob *msgs[5], *added = blob("\"added\""), *state = blob("{\"step\":2}");
    size_t i;
    char text[8];

    CHECK(as_store_memory_new(&store, &err) == AS_OK);
    CHECK(as_manager_new(store, NULL, &m, &err) == AS_OK);
    for (i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "%zu", i + 1);
        msgs[i] = blob(text);
    }
    s.meta.id = "window";
    s.meta.agent_name = "";
    s.msgs = msgs;
    s.nmsgs = 5;
    CHECK(as_manager_save(m, &s, NULL, -1, &stored, &err) == AS_OK);
    as_meta_clear(&stored);

    CHECK(as_manager_resume(m, "window", &(as_span){ AS_SPAN_TAIL, 2 }, &win, &w, &err) == AS_OK);
    CHECK(w.first == 3 && w.count == 2 && w.total == 5 && w.version == 1 && win.nmsgs == 2);
    CHECK(as_session_push(&win, &added, 1, &err) == AS_OK);
    CHECK(as_manager_save(m, &win, &w, -1, &stored, &err) == AS_OK && stored.version == 2);
    as_meta_clear(&stored);
    CHECK(as_manager_resume(m, "window", NULL, &got, NULL, &err) == AS_OK && got.nmsgs == 6);
    CHECK(got.msgs[0] == msgs[0] && got.msgs[2] == msgs[2] && got.msgs[5] == added);
    as_session_clear(&got);

    /* the same window again: the session moved on */
    CHECK(as_manager_save(m, &win, &w, -1, &stored, &err) == AS_ECONFLICT);
    /* a window that stops short of the end */
    CHECK(as_manager_resume(m, "window", &(as_span){ 1, 2 }, &got, &stale, &err) == AS_OK);
    CHECK(stale.first == 1 && stale.count == 2 && stale.total == 6);
    CHECK(as_manager_save(m, &got, &stale, -1, &stored, &err) == AS_EINVALID);
    as_session_clear(&got);
    /* past the end: no message, and its save appends */
    CHECK(as_manager_resume(m, "window", &(as_span){ 9, AS_ALL }, &got, &stale, &err) == AS_OK);
    CHECK(got.nmsgs == 0 && stale.first == 6 && stale.total == 6 && stale.version == 2);
    as_session_clear(&got);

    /* append with a state */
    opts.state = state;
    CHECK(as_manager_append(m, "window", &added, 1, &opts, &stored, &err) == AS_OK);
    CHECK(stored.turn_count == 1 && stored.version == 3);
    as_meta_clear(&stored);
    CHECK(as_manager_resume(m, "window", NULL, &got, NULL, &err) == AS_OK);
    CHECK(got.nmsgs == 7 && got.state == state);
    as_session_clear(&got);

    as_session_clear(&win);
    as_manager_free(m);
    for (i = 0; i < 5; i++) as_blob_unref(msgs[i]);
    as_blob_unref(added);
    as_blob_unref(state);
}

static uint64_t digest_reference(uint64_t k, const unsigned char *p, size_t len) {
    const uint64_t prime = AS_DIGEST_PRIME;
    uint64_t h = len % prime;
    size_t i, j;
    h = (uint64_t)(((unsigned __int128)h * k) % prime);
    for (i = 0; i < len; i += 7) {
        uint64_t c = 0;
        for (j = 0; j < 7 && i + j < len; j++) c |= (uint64_t)p[i + j] << (8 * j);
        h = (uint64_t)(((unsigned __int128)(h + c) * k) % prime);
    }
    return h;
}

/* Redis Cluster's hash slots: CRC16 (XModem), hash tags, as redis-cli computes them. */
static void test_key_slot(void) {
    CHECK(as_redis_key_slot("123456789", 9) == (0x31c3 & 16383));
    CHECK(as_redis_key_slot("foo", 3) == 12182);
    CHECK(as_redis_key_slot("{user1000}.following", 20) == as_redis_key_slot("user1000", 8));
    CHECK(as_redis_key_slot("foo{}{bar}", 10) == as_redis_key_slot("foo{}{bar}", 10)
          && as_redis_key_slot("foo{}{bar}", 10) != as_redis_key_slot("bar", 3));
    CHECK(as_redis_key_slot("foo{{bar}}zap", 13) == as_redis_key_slot("{bar", 4));
    CHECK(as_redis_key_slot("foo{bar}{zap}", 13) == as_redis_key_slot("bar", 3));
    CHECK(as_redis_key_slot("", 0) == 0);
}

static void test_digest(void) {
    unsigned char text[200];
    uint64_t seen[sizeof text];
    as_digest_key key, other;
    size_t i, j;
    int same = 1, distinct = 1;
    for (i = 0; i < sizeof text; i++) text[i] = (unsigned char)(i * 37 + 11);
    as_digest_key_init(&key, 0x243f6a8885a308d3u);
    as_digest_key_init(&other, 0x13198a2e03707344u);
    /* the folded four-chunk loop computes the polynomial of the definition */
    for (i = 0; i <= sizeof text; i++)
        same &= as_digest(&key, text, i) == digest_reference(key.k[0], text, i);
    CHECK(same);
    /* trailing zero bytes count: the length takes part */
    memset(text, 0, sizeof text);
    for (i = 0; i < sizeof text; i++) seen[i] = as_digest(&key, text, i);
    for (i = 0; i < sizeof text; i++)
        for (j = 0; j < i; j++) distinct &= seen[i] != seen[j];
    CHECK(distinct);
    CHECK(as_digest(&key, "{\"a\":1}", 7) == as_digest(&key, "{\"a\":1}", 7));
    CHECK(as_digest(&key, "{\"a\":1}", 7) != as_digest(&other, "{\"a\":1}", 7));
    CHECK(as_digest(&key, "{\"a\":1}", 7) < AS_DIGEST_PRIME);
}

/* The SQLite store from C alone: a session saved by one manager is read by
** another opened on the same file. */
static void test_sqlite(void) {
    char dir[] = "/tmp/agentsession-core-XXXXXX", path[64];
    as_sqlite_opts opts = { 1000, AS_DURABILITY_FULL, 0 };
    as_store *store;
    as_manager *m;
    as_error err;
    as_session s = { 0 }, got = { 0 };
    as_meta stored = { 0 };
    as_meta_list list = { 0 };
    as_filter tagged = { NULL, 1, NULL, NULL, 0, SIZE_MAX, 0, 0, NULL };
    const char *tag = "t";
    char *tags[] = { "t" };

    tagged.tags = &tag;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/store.db", dir);
    CHECK(as_store_sqlite_open(dir, &opts, &store, &err) == AS_ESTORAGE);
    CHECK(strstr(err.message, "is a directory") != NULL);

    CHECK(as_store_sqlite_open(path, &opts, &store, &err) == AS_OK);
    CHECK(as_manager_new(store, NULL, &m, &err) == AS_OK);
    CHECK(strcmp(as_manager_kind(m), "sqlite") == 0);
    s.meta.id = "c-host";
    s.meta.agent_name = "";
    s.meta.tags = tags;
    s.meta.ntags = 1;
    s.msgs = (as_blob *[]){ blob("{\"n\":1}"), blob("\"two\"") };
    s.nmsgs = 2;
    s.state = blob("{}");
    CHECK(as_manager_save(m, &s, NULL, -1, &stored, &err) == AS_OK);
    as_meta_clear(&stored);
    as_manager_free(m);

    CHECK(as_store_sqlite_open(path, NULL, &store, &err) == AS_OK);
    CHECK(as_manager_new(store, NULL, &m, &err) == AS_OK);
    CHECK(as_manager_resume(m, "c-host", NULL, &got, NULL, &err) == AS_OK);
    CHECK(got.nmsgs == 2 && strcmp(got.msgs[1]->text, "\"two\"") == 0 && got.meta.version == 1);
    CHECK(got.meta.ntags == 1 && strcmp(got.meta.tags[0], "t") == 0);
    as_session_clear(&got);
    CHECK(as_manager_list(m, &tagged, &list, &err) == AS_OK && list.n == 1);
    as_meta_list_clear(&list);
    CHECK(as_manager_resume(m, "absent", NULL, &got, NULL, &err) == AS_ENOTFOUND);
    as_manager_free(m);

    as_blob_unref(s.msgs[0]);
    as_blob_unref(s.msgs[1]);
    as_blob_unref(s.state);
    remove(path);
    snprintf(path, sizeof path, "%s/store.db-wal", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/store.db-shm", dir);
    remove(path);
    CHECK(remove(dir) == 0);
}

/* Whether `query` matches the JSON value `json`; *snippet (may be NULL) its snippet. */
static int matches(const char *query, const char *json, char **snippet) {
    as_query q;
    as_error err;
    as_buf text = AS_BUF_INIT;
    size_t at = 0;
    int hit;
    if (as_query_parse(query, &q, &err) != AS_OK) return -1;
    CHECK(as_search_text(json, strlen(json), &text) == 0);
    hit = as_query_match(&q, text.data ? text.data : "", text.len, &at);
    if (hit && snippet) CHECK(as_snippet(text.data, text.len, at, snippet, &err) == AS_OK);
    as_query_clear(&q);
    as_buf_free(&text);
    return hit;
}

static void test_search_rules(void) {
    as_query q;
    as_error err;
    as_buf keys = AS_BUF_INIT;
    char *snippet = NULL, long_text[1201], long_json[1300];
    size_t i;

    /* words: letters, marks and digits; ASCII case folds; keys and numbers are not text */
    CHECK(matches("parser", "{\"text\":\"Fixed the Parser.\"}", NULL) == 1);
    CHECK(matches("cat", "\"a category\"", NULL) == 0);
    CHECK(matches("text", "{\"text\":\"other\"}", NULL) == 0);
    CHECK(matches("42", "{\"n\":42}", NULL) == 0);
    CHECK(matches("caf\xc3\xa9", "[\"un caf\xc3\xa9, merci\"]", NULL) == 1);
    CHECK(matches("CAF\xc3\xa9", "[\"un caf\xc3\xa9\"]", NULL) == 1);
    CHECK(matches("caf\xc3\x89", "[\"un caf\xc3\xa9\"]", NULL) == 0); /* only ASCII folds */
    CHECK(matches("caf", "[\"un caf\xc3\xa9\"]", NULL) == 0);
    /* typographic quotes and an em dash separate words; an escape is its character */
    CHECK(matches("parser", "\"\xe2\x80\x9cparser\xe2\x80\x9d\xe2\x80\x94" "done\"", NULL) == 1);
    CHECK(matches("caf\xc3\xa9 ok", "\"caf\\u00e9\\nok\"", NULL) == 1);
    CHECK(matches("\xe6\x97\xa5\xe6\x9c\xac", "\"\xe6\x97\xa5\xe6\x9c\xac\xe3\x80\x82\"", NULL) == 1);
    /* phrases: in order, consecutive, across the strings of a message */
    CHECK(matches("\"fixed the parser\"", "\"we fixed the parser today\"", NULL) == 1);
    CHECK(matches("\"parser fixed\"", "\"we fixed the parser\"", NULL) == 0);
    CHECK(matches("\"fixed parser\"", "\"we fixed the parser\"", NULL) == 0);
    CHECK(matches("\"a a b\"", "\"a a a b\"", NULL) == 1);
    CHECK(matches("\"one two\"", "[\"one\", {\"k\": \"two\"}]", NULL) == 1);
    CHECK(matches("today \"fixed the", "\"we fixed the parser today\"", NULL) == 1);
    CHECK(matches("parser missing", "\"we fixed the parser\"", NULL) == 0);

    CHECK(as_query_parse("  \"\" ,;- ", &q, &err) == AS_EINVALID && strcmp(err.path, "query") == 0);
    CHECK(as_query_parse("", &q, &err) == AS_EINVALID);
    CHECK(as_query_parse("bad \xff", &q, &err) == AS_EINVALID);
    CHECK(as_query_parse("Parser \"the PARSER\" x", &q, &err) == AS_OK);
    CHECK(q.nwords == 4 && q.nphrases == 3 && q.nkeys == 3 && q.longest == 2);
    CHECK(strcmp(q.words[0], "parser") == 0 && strcmp(q.keys[2], "x") == 0);
    as_query_clear(&q);

    /* snippets: at most 200 characters around the match, cut between characters */
    for (i = 0; i < 600; i++) memcpy(long_text + 2 * i, "\xc3\xa9", 2);
    memcpy(long_text + 600, " needle ", 8);
    long_text[1200] = '\0';
    snprintf(long_json, sizeof long_json, "\"%s\"", long_text);
    CHECK(matches("needle", long_json, &snippet) == 1);
    CHECK(snippet != NULL && strstr(snippet, " needle ") != NULL);
    CHECK(as_utf8_check(snippet, strlen(snippet)) == strlen(snippet));
    {
        size_t chars = 0, k;
        for (k = 0; snippet && snippet[k]; k++) chars += ((unsigned char)snippet[k] & 0xC0) != 0x80;
        CHECK(chars == 200);
    }
    as_free(snippet);
    snippet = NULL;
    CHECK(matches("short", "\"a short text\"", &snippet) == 1 && strcmp(snippet, "a short text") == 0);
    as_free(snippet);

    /* keys: distinct, folded, cut to 64 bytes between characters */
    memset(long_text, 'a', 100);
    memcpy(long_text + 63, "\xc3\xa9", 2);
    long_text[100] = '\0';
    CHECK(as_search_keys("The the THE cat", 15, ' ', &keys) == 0);
    CHECK(keys.len == 8 && memcmp(keys.data, "the cat ", 8) == 0);
    keys.len = 0;
    CHECK(as_search_keys(long_text, 100, '\n', &keys) == 0 && keys.len == 64 && keys.data[63] == '\n');
    as_buf_free(&keys);
}

/* search and prune on the memory store, through the manager */
static void test_search_memory(void) {
    as_store *store;
    as_manager *m;
    as_error err;
    as_session s = { 0 };
    as_meta stored = { 0 };
    as_found_list found = { 0 };
    as_id_list ids = { 0 };
    as_filter all = AS_FILTER_ALL;
    as_prune p;
    char *tags[] = { "keep" };
    as_blob *msgs[3];
    int64_t cut;

    CHECK(as_store_memory_new(&store, &err) == AS_OK);
    CHECK(as_manager_new(store, NULL, &m, &err) == AS_OK);
    msgs[0] = blob("{\"text\":\"the parser broke\"}");
    msgs[1] = blob("{\"text\":\"fixed the parser\"}");
    msgs[2] = blob("{\"text\":\"thanks\"}");
    s.meta.id = "s1";
    s.meta.name = "parser work";
    s.meta.agent_name = "";
    s.msgs = msgs;
    s.nmsgs = 3;
    s.state = blob("{}");
    CHECK(as_manager_save(m, &s, NULL, -1, &stored, &err) == AS_OK);
    as_meta_clear(&stored);
    s.meta.id = "s2";
    s.meta.name = "other";
    s.meta.tags = tags;
    s.meta.ntags = 1;
    s.nmsgs = 1;
    CHECK(as_manager_save(m, &s, NULL, -1, &stored, &err) == AS_OK);
    cut = stored.updated_at + 1;
    as_meta_clear(&stored);

    CHECK(as_manager_search(m, "PARSER", &all, &found, &err) == AS_OK);
    CHECK(found.n == 2 && strcmp(found.items[0].meta.id, "s2") == 0 && found.items[0].index == 1);
    CHECK(found.n == 2 && found.items[1].index == 2 && strcmp(found.items[1].snippet, "fixed the parser") == 0);
    as_found_list_clear(&found);
    CHECK(as_manager_search(m, "work", &all, &found, &err) == AS_OK);
    CHECK(found.n == 1 && found.items[0].index == 0 && strcmp(found.items[0].snippet, "parser work") == 0);
    as_found_list_clear(&found);
    all.offset = 1;
    CHECK(as_manager_search(m, "parser", &all, &found, &err) == AS_OK);
    CHECK(found.n == 1 && strcmp(found.items[0].meta.id, "s1") == 0);
    as_found_list_clear(&found);
    all.offset = 0;
    CHECK(as_manager_search(m, "- -", &all, &found, &err) == AS_EINVALID && found.n == 0);

    memset(&p, 0, sizeof p);
    p.filter = all;
    p.before = cut;
    p.keep_tag = "keep";
    p.dry_run = 1;
    CHECK(as_manager_prune(m, &p, &ids, &err) == AS_OK && ids.n == 1 && strcmp(ids.ids[0], "s1") == 0);
    as_id_list_clear(&ids);
    p.dry_run = 0;
    CHECK(as_manager_prune(m, &p, &ids, &err) == AS_OK && ids.n == 1 && strcmp(ids.ids[0], "s1") == 0);
    as_id_list_clear(&ids);
    CHECK(as_manager_search(m, "parser", &all, &found, &err) == AS_OK && found.n == 1);
    as_found_list_clear(&found);
    p.keep_tag = "";
    CHECK(as_manager_prune(m, &p, &ids, &err) == AS_EINVALID && strcmp(err.path, "keep_tag") == 0);

    as_manager_free(m);
    as_blob_unref(msgs[0]);
    as_blob_unref(msgs[1]);
    as_blob_unref(msgs[2]);
    as_blob_unref(s.state);
}

int main(void) {
    test_json();
    test_search_rules();
    test_search_memory();
    test_manager();
    test_windows();
    test_op_ids();
    test_digest();
    test_key_slot();
    test_sqlite();
    printf("core tests: %d checks, %d failed\n", checks, failures);
    return failures != 0;
}
