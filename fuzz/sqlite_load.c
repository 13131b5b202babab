/*
** Fuzz target: a SQLite store file whose bytes the fuzzer controls.
**
** Each input is written to a private file (in a directory made once with
** mkdtemp, under /dev/shm when it can be written, else $TMPDIR or /tmp; the
** -wal, -shm and -journal files of the previous run are removed first) and
** opened with the core's SQLite store under a manager. The run then lists the
** sessions (also with filters), resumes every listed one (whole, and its last
** message), exports it, and writes: save (the session read back plus one
** message), tag, untag, append, fork, rewind, rename, a new session and the
** deletes. Every call must return a status a caller can handle (ok, not_found,
** invalid, too_large, conflict, storage, unavailable, or no memory, which
** SQLite answers for some damaged files) with a message; nothing
** may crash, leak or hang. What a call returns is checked where the contract
** says what it must be: an export is JSON, a resumed session's state is there.
**
** Built with libFuzzer by tools/fuzz.sh, and with gcc against fuzz/replay.c
** by fuzz/fuzz.mk (make fuzz-replay). Seeds: fuzz/make_sqlite_seeds.lua.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../csrc/core/as_json.h"
#include "../csrc/core/as_manager.h"
#include "../csrc/core/as_store_sqlite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SESSIONS 16 /* sessions of a listing the run works on */

static char dir[1024], db_path[1100];
static const char *const suffixes[] = { "-wal", "-shm", "-journal" };
static as_buf scratch = AS_BUF_INIT;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "sqlite_load: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void remove_side_files(void) {
    char p[1200];
    size_t i;
    for (i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(p, sizeof p, "%s%s", db_path, suffixes[i]);
        if (unlink(p) != 0 && errno != ENOENT) die("cannot remove", p);
    }
}

static void teardown(void) {
    remove_side_files();
    unlink(db_path);
    rmdir(dir);
    as_buf_free(&scratch);
}

static void setup(void) {
    const char *base = getenv("AGENTSESSION_FUZZ_TMPDIR");
    if (base == NULL || base[0] == '\0') {
        if (access("/dev/shm", W_OK | X_OK) == 0) base = "/dev/shm";
        else if ((base = getenv("TMPDIR")) == NULL || base[0] == '\0') base = "/tmp";
    }
    snprintf(dir, sizeof dir, "%s/agentsession-fuzz-XXXXXX", base);
    if (mkdtemp(dir) == NULL) die("mkdtemp failed in", base);
    snprintf(db_path, sizeof db_path, "%s/store.db", dir);
    atexit(teardown);
}

static void write_file(const uint8_t *data, size_t size) {
    int fd;
    remove_side_files();
    fd = open(db_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) die("cannot create", db_path);
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("cannot write", db_path);
        data += n;
        size -= (size_t)n;
    }
    if (close(fd) != 0) die("cannot close", db_path);
}

/* A failed call must say why with a status a caller can handle. */
static as_status check(const char *call, as_status st, const as_error *err) {
    char detail[AS_ERROR_MESSAGE_MAX + 64];
    if (st == AS_OK) return st;
    snprintf(detail, sizeof detail, "%s gave status %d (error record: %d, \"%s\")", call,
             (int)st, (int)err->status, err->message);
    switch (st) {
    case AS_ENOTFOUND: case AS_EINVALID: case AS_ETOOLARGE: case AS_ECONFLICT:
    case AS_ESTORAGE: case AS_EUNAVAILABLE:
        break;
    case AS_ENOMEM:
        /* SQLite answers SQLITE_NOMEM for some damaged schemas; the binding
        ** raises it as `storage` (see fuzz/README.md). Real exhaustion cannot
        ** get here: under ASan a failed malloc aborts, and libFuzzer caps RSS. */
        break;
    default:
        die("a call failed with an unexpected status", detail);
    }
    if (err->status != st || err->message[0] == '\0')
        die("a failed call left no matching error record", detail);
    return st;
}

/* Every text a store hands back is either JSON or refused as such. */
static int is_json(const as_blob *b) {
    as_error err;
    as_status st;
    as_error_clear(&err);
    st = as_json_validate(b->text, b->len, &scratch, "value", &err);
    if (st != AS_OK && st != AS_EINVALID) die("the validator failed without refusing", err.message);
    return st == AS_OK;
}

static int session_is_json(const as_session *s) {
    size_t i;
    int ok = s->state != NULL && is_json(s->state);
    for (i = 0; i < s->nmsgs; i++) ok &= is_json(s->msgs[i]);
    return ok;
}

static void resume_one(as_manager *m, const char *id, as_blob *extra) {
    as_session s = { 0 };
    as_meta stored = { 0 };
    as_window win;
    as_buf out = AS_BUF_INIT;
    as_error err;
    as_error_clear(&err);
    if (check("resume", as_manager_resume(m, id, NULL, &s, NULL, &err), &err) == AS_OK) {
        if (s.state == NULL) die("a resumed session has no state", id);
        if (strcmp(s.meta.id, id) != 0) die("resume gave another session", id);
        /* saved back with one more message: the store compares digests row by row */
        if (session_is_json(&s) && as_session_push(&s, &extra, 1, &err) == AS_OK)
            check("save", as_manager_save(m, &s, NULL, s.meta.version, &stored, &err), &err);
        as_meta_clear(&stored);
    }
    as_session_clear(&s);
    memset(&s, 0, sizeof s);
    if (check("resume last", as_manager_resume(m, id, &(as_span){ AS_SPAN_TAIL, 1 }, &s, &win,
                                               &err), &err) == AS_OK) {
        if (s.nmsgs > 1) die("resume with last = 1 gave more than one message", id);
        if (win.first + win.count != win.total) die("a window of the last message is not the last", id);
        /* saved back: the stored messages before it are kept */
        if (session_is_json(&s))
            check("save window", as_manager_save(m, &s, &win, -1, &stored, &err), &err);
        as_meta_clear(&stored);
    }
    as_session_clear(&s);
    if (check("export", as_manager_export(m, id, &out, &err), &err) == AS_OK) {
        as_blob *b = as_blob_new(out.data ? out.data : "", out.len);
        if (b == NULL) die("out of memory", NULL);
        if (!is_json(b)) die("export wrote text that is not JSON", id);
        as_blob_unref(b);
    }
    as_buf_free(&out);
}

/* The writes of the contract on one session (and a new one). */
static void write_some(as_manager *m, const char *id, as_blob *msg) {
    static const char *const tags[] = { "fuzz-tag", "second" };
    as_meta meta = { 0 }, fork = { 0 };
    as_session s = { 0 };
    char new_id[] = "fuzz-new-session", agent[] = "fuzz";
    as_error err;
    as_error_clear(&err);

    check("tag", as_manager_tag(m, id, tags, 2, 0, &meta, &err), &err);
    as_meta_clear(&meta);
    check("untag", as_manager_tag(m, id, tags, 1, 1, &meta, &err), &err);
    as_meta_clear(&meta);
    check("append", as_manager_append(m, id, &msg, 1,
                                      &(as_append_opts){ .tokens = 7, .expect_version = -1,
                                                         .state = msg }, &meta, &err),
          &err);
    as_meta_clear(&meta);
    check("append with an op_id",
          as_manager_append(m, id, &msg, 1, &(as_append_opts){ .expect_version = -1,
                                                               .op_id = "fuzz-op" }, &meta, &err),
          &err);
    as_meta_clear(&meta);
    if (check("fork", as_manager_fork(m, id, NULL, AS_KEEP_ALL, &fork, &err), &err) == AS_OK) {
        check("fork of fork", as_manager_fork(m, fork.id, "fork", 1, &meta, &err), &err);
        as_meta_clear(&meta);
        check("delete fork", as_manager_delete(m, fork.id, &err), &err);
    }
    as_meta_clear(&fork);
    if (check("rewind", as_manager_rewind(m, id, 1, &s, &err), &err) == AS_OK && s.nmsgs > 1)
        die("rewind to 1 kept more than one message", id);
    as_session_clear(&s);
    check("rename", as_manager_rename(m, id, "renamed by the fuzzer", &err), &err);

    memset(&s, 0, sizeof s);
    s.meta.id = new_id;
    s.meta.agent_name = agent;
    s.msgs = &msg;
    s.nmsgs = 1;
    if (check("save new", as_manager_save(m, &s, NULL, -1, &meta, &err), &err) == AS_OK)
        check("delete new", as_manager_delete(m, new_id, &err), &err);
    as_meta_clear(&meta);
    check("delete", as_manager_delete(m, id, &err), &err);
}

static void lists(as_manager *m, const as_meta *first) {
    as_filter f = { NULL, 0, NULL, NULL, 0, SIZE_MAX };
    as_meta_list l = { 0 };
    as_error err;
    as_error_clear(&err);
    f.tags = (const char *const *)first->tags;
    f.ntags = first->ntags;
    check("list by tags", as_manager_list(m, &f, &l, &err), &err);
    as_meta_list_clear(&l);
    f.tags = NULL;
    f.ntags = 0;
    f.agent_name = first->agent_name;
    f.offset = 1;
    f.limit = 2;
    check("list by agent", as_manager_list(m, &f, &l, &err), &err);
    as_meta_list_clear(&l);
    f.agent_name = NULL;
    f.parent_id = first->id;
    f.offset = 0;
    f.limit = SIZE_MAX;
    check("list by parent", as_manager_list(m, &f, &l, &err), &err);
    as_meta_list_clear(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char message[] = "{\"role\":\"user\",\"content\":\"one more turn\",\"n\":[1,2.5,null]}";
    as_sqlite_opts sopts = { 10, AS_DURABILITY_NORMAL, 0 };
    as_manager_opts mopts = { .max_session_bytes = 1 << 20 };
    as_filter all = { NULL, 0, NULL, NULL, 0, SIZE_MAX };
    as_meta_list list = { 0 };
    as_session missing = { 0 };
    as_store *store = NULL;
    as_manager *m = NULL;
    as_blob *msg;
    as_error err;
    size_t i;

    if (dir[0] == '\0') setup();
    write_file(data, size);
    as_error_clear(&err);
    if (check("open", as_store_sqlite_open(db_path, &sopts, &store, &err), &err) != AS_OK) return 0;
    if (check("manager", as_manager_new(store, &mopts, &m, &err), &err) != AS_OK) return 0;
    if ((msg = as_blob_new(message, sizeof message - 1)) == NULL) die("out of memory", NULL);

    if (check("list", as_manager_list(m, &all, &list, &err), &err) == AS_OK) {
        for (i = 0; i < list.n && i < MAX_SESSIONS; i++) resume_one(m, list.items[i].id, msg);
        if (list.n > 0) {
            lists(m, &list.items[0]);
            write_some(m, list.items[0].id, msg);
        }
    }
    as_meta_list_clear(&list);
    check("resume missing", as_manager_resume(m, "fuzz-absent", NULL, &missing, NULL, &err), &err);
    as_session_clear(&missing);
    write_some(m, "fuzz-absent", msg);
    as_blob_unref(msg);
    as_manager_free(m);
    as_buf_free(&scratch); /* each input starts with it empty */
    return 0;
}
