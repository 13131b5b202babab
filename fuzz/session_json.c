/*
** Fuzz target: session documents, as a C host hands them to the library.
**
** The input goes to agentsession_save (a session document, maybe a window)
** and agentsession_import (an export) on fresh memory managers, and to
** agentsession_append as an array of messages. Each call must succeed or
** fail with invalid, conflict or too_large, and an error must carry a message
** that starts with its path. A session that saved must come back as written:
** resumed, saved again and resumed, its messages and state are the same text.
** And the text the core writes for each value is a fixed point, in table
** order and with keys sorted (as for SQLite): read and written again, it does
** not change. Anything else aborts.
**
** Built with libFuzzer by tools/fuzz.sh, and with gcc against fuzz/replay.c
** by fuzz/fuzz.mk (make fuzz-replay).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/core/as_session_json.h"
#include "../csrc/lib/agentsession.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *input;

static void die(const char *what) {
    fprintf(stderr, "session_json: %s (input: %.300s)\n", what, input);
    abort();
}

/* A failed call: one of the kinds bad input may get, said with its path. */
static void check_refusal(agentsession_status st, const agentsession_error *err, const char *call) {
    if (st != AGENTSESSION_ERR_INVALID && st != AGENTSESSION_ERR_CONFLICT && st != AGENTSESSION_ERR_TOO_LARGE) {
        fprintf(stderr, "session_json: %s: %s: %s\n", call, agentsession_kind(st), err->message);
        die("a call failed with a kind bad input does not get");
    }
    if (err->status != st || err->message[0] == '\0'
        || (err->path[0] && strncmp(err->message, err->path, strlen(err->path)) != 0))
        die("an error without its status, its message, or its path first");
}

static agentsession_manager *open_memory(void) {
    agentsession_manager *m;
    agentsession_error err;
    if (agentsession_open_memory(NULL, &m, &err) != AGENTSESSION_OK) die("no memory manager");
    return m;
}

/* From "messages": on: what a resume gives besides the metadata. */
static const char *body(const char *doc) {
    const char *p = strstr(doc, ",\"messages\":");
    if (p == NULL) die("a resumed session without messages");
    return p;
}

/* Saved, it comes back as written, and as written again. */
static void round_trip(agentsession_manager *m, const char *meta) {
    agentsession_error err;
    char *id, *first, *second;
    if (agentsession_json_string(meta, "id", &id, &err) != AGENTSESSION_OK) die("metadata without an id");
    if (agentsession_resume(m, id, &first, &err) != AGENTSESSION_OK) die("a saved session does not resume");
    if (agentsession_save(m, first, NULL, NULL, &err) != AGENTSESSION_OK) die("a resumed session does not save");
    if (agentsession_resume(m, id, &second, &err) != AGENTSESSION_OK) die("a saved session does not resume");
    if (strcmp(body(first), body(second)) != 0) die("a session saved again changed");
    agentsession_free(first);
    agentsession_free(second);
    agentsession_free(id);
}

/* Each value's text, read and written again, is the same (table order and sorted keys). */
static void fixed_points(const char *text, size_t len, int canonical) {
    as_session s = { 0 };
    as_error err;
    size_t i;
    if (as_session_from_json(text, len, AS_DOC_SESSION, canonical, &s, NULL, NULL, &err) == AS_OK) {
        for (i = 0; i <= s.nmsgs; i++) {
            as_blob *b = i < s.nmsgs ? s.msgs[i] : s.state, *again;
            if (b == NULL) continue;
            if (as_blob_from_json(b->text, b->len, canonical, "value", &again, &err) != AS_OK)
                die("the text written for a value does not read back");
            if (again->len != b->len || memcmp(again->text, b->text, b->len) != 0)
                die("the text written for a value is not a fixed point");
            as_blob_unref(again);
        }
    } else if (err.status != AS_EINVALID) {
        die("as_session_from_json failed without refusing");
    }
    as_session_clear(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    agentsession_manager *m = open_memory(), *other = open_memory();
    agentsession_error err;
    agentsession_import_options replace = AGENTSESSION_IMPORT_OPTIONS_INIT;
    agentsession_status st;
    char *text = malloc(size + 1), *meta, *json;
    if (text == NULL) die("no memory for the input");
    memcpy(text, data, size);
    text[size] = '\0'; /* a NUL in the input ends the text the library reads */
    input = text;

    st = agentsession_save(m, text, NULL, &meta, &err);
    if (st == AGENTSESSION_OK) round_trip(m, meta);
    else check_refusal(st, &err, "save");
    agentsession_free(meta);

    st = agentsession_import(other, text, NULL, &meta, &err);
    if (st == AGENTSESSION_OK) {
        char *id;
        if (agentsession_json_string(meta, "id", &id, &err) != AGENTSESSION_OK
            || agentsession_export(other, id, &json, &err) != AGENTSESSION_OK)
            die("an imported session does not export");
        replace.replace = true;
        if (agentsession_import(other, json, &replace, NULL, &err) != AGENTSESSION_OK)
            die("an export does not import");
        agentsession_free(json);
        agentsession_free(id);
    } else {
        check_refusal(st, &err, "import");
    }
    agentsession_free(meta);

    if (agentsession_save(m, "{\"metadata\":{\"id\":\"fuzz\",\"agent_name\":\"f\"}}", NULL, NULL, &err)
        != AGENTSESSION_OK)
        die("a plain session does not save");
    st = agentsession_append(m, "fuzz", text, NULL, NULL, &err);
    if (st != AGENTSESSION_OK) check_refusal(st, &err, "append");

    fixed_points(text, strlen(text), 0);
    fixed_points(text, strlen(text), 1);
    agentsession_manager_free(m);
    agentsession_manager_free(other);
    free(text);
    return 0;
}
