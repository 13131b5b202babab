/*
** Search and retention: what a query means, once, for every store.
**
** Words are runs of letters, marks and digits (ASCII letters and digits, and
** the characters above U+007F of Unicode categories L, M and N: see
** as_word_table.h); any other character separates words. ASCII letters are
** compared without case; every other character as it is. A message's text is
** the values of its strings (not object keys, not numbers), in document
** order, joined by newlines; a session's label is its name and its tags,
** joined the same way.
**
** A query is a sequence of phrases: a word on its own is a phrase of one
** word, and words between double quotes are one phrase. A text matches when
** it holds every phrase, each as consecutive words in that order.
**
** A store's index answers with candidates, sessions that may match (see
** as_store_ops.search), looked up by keys: a word folded to lower case and
** cut to AS_SEARCH_KEY_MAX bytes on a character boundary. An index may give
** more candidates than match; the manager checks each against its texts, so
** that every store answers alike.
*/
#ifndef AS_SEARCH_H
#define AS_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_error.h"
#include "as_session.h"

#define AS_QUERY_BYTES_MAX 4096 /* bytes of a query's text */
#define AS_QUERY_WORDS_MAX 64   /* words of a query, all its phrases together */
#define AS_SEARCH_KEY_MAX 64    /* bytes of an index key */
#define AS_SNIPPET_CHARS 200    /* characters of a snippet, at most */

typedef struct as_query {
    char **words;       /* every word, folded, in query order */
    size_t nwords;
    size_t *ends;       /* phrase i is words [ends[i - 1], ends[i]) (ends[-1] = 0) */
    size_t nphrases;
    size_t longest;     /* words of the longest phrase */
    char **keys;        /* the distinct keys of the words, for an index */
    size_t nkeys;
} as_query;

/* Parses a query (NUL-terminated). AS_EINVALID, path "query", when it holds
** no word or is over the limits above. */
as_status as_query_parse(const char *text, as_query *q, as_error *err);
void as_query_clear(as_query *q);

/* The text of a JSON value (see above), appended to out. A text that is not
** JSON gives the text of the strings before the fault. Returns 0, or -1 when
** memory runs out. */
int as_search_text(const char *json, size_t len, as_buf *out);
/* The label of a session's metadata, appended to out; 0 or -1 as above. */
int as_search_label(const as_meta *m, as_buf *out);

/* Whether text holds every phrase of q; *at is then the byte offset of the
** earliest phrase found. */
int as_query_match(const as_query *q, const char *text, size_t len, size_t *at);

/* At most AS_SNIPPET_CHARS characters of text around byte `at`, cut between
** characters, as a new NUL-terminated string in *out; AS_ENOMEM or AS_OK. */
as_status as_snippet(const char *text, size_t len, size_t at, char **out, as_error *err);

/* The distinct keys of the words of a text, each followed by `sep`,
** appended to out; 0, or -1 when memory runs out. */
int as_search_keys(const char *text, size_t len, char sep, as_buf *out);

/* A session a search found, as mgr:search returns it. */
typedef struct as_found {
    as_meta meta;
    size_t index;   /* 1-based index of the last message that matched; 0: the label */
    char *snippet;
} as_found;

typedef struct as_found_list {
    as_found *items;
    size_t n, cap;
} as_found_list;

void as_found_list_clear(as_found_list *l);

/* A session an index says may match, for the manager to check. */
typedef struct as_candidate {
    as_meta meta;
    size_t *pos;    /* stored messages that may match (0-based), highest first */
    size_t npos;
    int all;        /* the store has no index of messages: any may match */
    as_blob *text;  /* NULL, or the text of message pos[0], read with the search */
} as_candidate;

typedef struct as_candidate_list {
    as_candidate *items;
    size_t n, cap;
} as_candidate_list;

/* Appends a candidate taking over *c (left empty); AS_ENOMEM frees it. */
as_status as_candidate_list_take(as_candidate_list *l, as_candidate *c, as_error *err);
void as_candidate_clear(as_candidate *c);
void as_candidate_list_clear(as_candidate_list *l);

/* Ids, as prune returns them. */
typedef struct as_id_list {
    char **ids;
    size_t n, cap;
} as_id_list;

as_status as_id_list_push(as_id_list *l, const char *id, as_error *err);
void as_id_list_clear(as_id_list *l);

/* What prune deletes: sessions with updated_at < before that match the
** filter (its tags, agent_name and parent_id; offset and limit unused) and do
** not carry keep_tag. */
typedef struct as_prune {
    int64_t before;
    const char *keep_tag;   /* NULL: none */
    as_filter filter;
    int dry_run;            /* delete nothing; give the ids it would delete */
    /* Called after each batch with the number deleted so far (NULL: none);
    ** anything but AS_OK (err filled) stops the prune with that error. */
    as_status (*progress)(void *ctx, size_t deleted, as_error *err);
    void *progress_ctx;
} as_prune;

#endif
