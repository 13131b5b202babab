/*
** Search: words, queries, texts, matches and snippets (see as_search.h).
*/
#include <stdint.h>
#include <string.h>

#include "as_alloc.h"
#include "as_json.h"
#include "as_search.h"
#include "as_utf8.h"
#include "as_word_table.h"

/* ---------------------------------------------------------------- characters */

static int in_word_table(uint32_t cp) {
    size_t lo = 0, hi = sizeof as_word_ranges / sizeof as_word_ranges[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < as_word_ranges[mid][0]) hi = mid;
        else if (cp > as_word_ranges[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static inline int ascii_word(unsigned char c) {
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static unsigned char fold(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* The length of the character at p (a byte that is not UTF-8 counts as one
** character), and whether it is part of a word. */
static size_t char_at(const unsigned char *p, const unsigned char *end, int *word) {
    size_t n;
    uint32_t cp;
    if (*p < 0x80) {
        *word = ascii_word(*p);
        return 1;
    }
    if ((n = as_utf8_seq(p, end)) == 0) {
        *word = 0;
        return 1;
    }
    if (n == 2) cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    else if (n == 3) cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    else cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12)
              | ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    *word = in_word_table(cp);
    return n;
}

/* The next word of s[*pos, len): its bytes [*start, *end); 0 when none is left.
** ASCII, most of most texts, is read a byte at a time without decoding. */
static int next_word(const char *s, size_t len, size_t *pos, size_t *start, size_t *end) {
    const unsigned char *p = (const unsigned char *)s + *pos, *e = (const unsigned char *)s + len;
    int word = 0;
    size_t n = 0;
    for (;;) {
        while (p < e && *p < 0x80 && !ascii_word(*p)) p++;
        if (p >= e || *p < 0x80 || (n = char_at(p, e, &word), word)) break;
        p += n;
    }
    if (p >= e) {
        *pos = len;
        return 0;
    }
    *start = (size_t)(p - (const unsigned char *)s);
    for (;;) {
        while (p < e && *p < 0x80 && ascii_word(*p)) p++;
        if (p >= e || *p < 0x80 || (n = char_at(p, e, &word), !word)) break;
        p += n;
    }
    *end = (size_t)(p - (const unsigned char *)s);
    *pos = *end;
    return 1;
}

/* The length of a word's key: at most AS_SEARCH_KEY_MAX bytes, cut between characters. */
static size_t key_len(const char *w, size_t n) {
    const unsigned char *p = (const unsigned char *)w, *e = p + n;
    size_t len = 0;
    if (n <= AS_SEARCH_KEY_MAX) return n;
    while (p + len < e) {
        int word;
        size_t k = char_at(p + len, e, &word);
        if (len + k > AS_SEARCH_KEY_MAX) break;
        len += k;
    }
    return len;
}

/* ---------------------------------------------------------------- queries */

static char *folded_copy(const char *s, size_t n) {
    char *out = as_malloc(n + 1);
    size_t i;
    if (out == NULL) return NULL;
    for (i = 0; i < n; i++) out[i] = (char)fold((unsigned char)s[i]);
    out[n] = '\0';
    return out;
}

void as_query_clear(as_query *q) {
    size_t i;
    for (i = 0; i < q->nwords; i++) as_free(q->words[i]);
    for (i = 0; i < q->nkeys; i++) as_free(q->keys[i]);
    as_free(q->words);
    as_free(q->ends);
    as_free(q->keys);
    memset(q, 0, sizeof *q);
}

static as_status query_invalid(as_error *err, const char *fmt, size_t n) {
    as_error_set(err, AS_EINVALID, fmt, n);
    as_error_prefix(err, "query");
    return AS_EINVALID;
}

/* Adds the words of s[0, len) as one phrase (or, `split`, one phrase each). */
static as_status add_words(as_query *q, const char *s, size_t len, int split, as_error *err) {
    size_t pos = 0, start, end, first = q->nwords;
    while (next_word(s, len, &pos, &start, &end)) {
        char *w;
        size_t k, i;
        int seen = 0;
        if (q->nwords == AS_QUERY_WORDS_MAX)
            return query_invalid(err, "more than %zu words", (size_t)AS_QUERY_WORDS_MAX);
        if ((w = folded_copy(s + start, end - start)) == NULL) return as_error_nomem(err);
        q->words[q->nwords++] = w;
        if (split) q->ends[q->nphrases++] = q->nwords;
        k = key_len(w, end - start);
        for (i = 0; i < q->nkeys && !seen; i++)
            seen = strlen(q->keys[i]) == k && memcmp(q->keys[i], w, k) == 0;
        if (!seen) {
            if ((q->keys[q->nkeys] = as_strndup(w, k)) == NULL) return as_error_nomem(err);
            q->nkeys++;
        }
    }
    if (!split && q->nwords > first) q->ends[q->nphrases++] = q->nwords;
    return AS_OK;
}

as_status as_query_parse(const char *text, as_query *q, as_error *err) {
    size_t len = strlen(text), i = 0;
    as_status st = AS_OK;
    memset(q, 0, sizeof *q);
    if (len > AS_QUERY_BYTES_MAX)
        return query_invalid(err, "longer than %zu bytes", (size_t)AS_QUERY_BYTES_MAX);
    if (as_utf8_check(text, len) != len) return query_invalid(err, "not UTF-8 (at byte %zu)",
                                                              as_utf8_check(text, len) + 1);
    q->words = as_calloc(AS_QUERY_WORDS_MAX, sizeof(char *));
    q->keys = as_calloc(AS_QUERY_WORDS_MAX, sizeof(char *));
    q->ends = as_calloc(AS_QUERY_WORDS_MAX, sizeof(size_t));
    if (q->words == NULL || q->keys == NULL || q->ends == NULL) st = as_error_nomem(err);
    while (st == AS_OK && i < len) {
        /* a quote opens a phrase, which the next quote (or the end) closes */
        const char *quote = memchr(text + i, '"', len - i), *close;
        size_t upto = quote ? (size_t)(quote - text) : len;
        st = add_words(q, text + i, upto - i, 1, err);
        if (st != AS_OK || quote == NULL) break;
        close = memchr(quote + 1, '"', len - upto - 1);
        i = close ? (size_t)(close - text) : len;
        st = add_words(q, quote + 1, i - upto - 1, 0, err);
        if (close) i++;
    }
    if (st == AS_OK && q->nwords == 0 && len == 0) {
        as_error_set(err, AS_EINVALID, "is empty");
        as_error_prefix(err, "query");
        st = AS_EINVALID;
    } else if (st == AS_OK && q->nwords == 0)
        st = query_invalid(err, "has no word, only %zu bytes of spaces, punctuation and quotes", len);
    for (i = 0; st == AS_OK && i < q->nphrases; i++) {
        size_t words = q->ends[i] - (i ? q->ends[i - 1] : 0);
        if (words > q->longest) q->longest = words;
    }
    if (st != AS_OK) as_query_clear(q);
    return st;
}

/* ---------------------------------------------------------------- texts */

typedef struct text_sink {
    as_buf *out;
    size_t start; /* out->len before the text */
    int nomem;
} text_sink;

static int ts_string(void *ctx, const char *s, size_t n) {
    text_sink *t = ctx;
    if ((t->out->len > t->start && as_buf_putc(t->out, '\n') != 0) || as_buf_put(t->out, s, n) != 0) {
        t->nomem = 1;
        return 1;
    }
    return 0;
}

static int ts_ok(void *ctx) { (void)ctx; return 0; }
static int ts_bool(void *ctx, int v) { (void)ctx; (void)v; return 0; }
static int ts_int(void *ctx, int64_t v) { (void)ctx; (void)v; return 0; }
static int ts_num(void *ctx, double v) { (void)ctx; (void)v; return 0; }
static int ts_key(void *ctx, const char *s, size_t n) { (void)ctx; (void)s; (void)n; return 0; }
static int ts_idx(void *ctx, size_t i) { (void)ctx; (void)i; return 0; }
static int ts_big(void *ctx, const char *s, size_t n, double d) {
    (void)ctx; (void)s; (void)n; (void)d;
    return 0;
}

static const as_json_sink text_sink_fns = {
    ts_ok, ts_bool, ts_int, ts_num, ts_string, ts_ok, ts_idx, ts_ok, ts_ok, ts_key, ts_ok, ts_ok,
    ts_big
};

int as_search_text(const char *json, size_t len, as_buf *out) {
    text_sink t;
    as_buf scratch = AS_BUF_INIT;
    as_error ignored;
    as_error_clear(&ignored); /* the parser reads its status when a sink refuses */
    t.out = out;
    t.start = out->len;
    t.nomem = 0;
    /* texts come from the encoder or were checked as they came in; one damaged in a
    ** store is still read safely, and the same bytes give the same words */
    as_json_parse(json, len, &text_sink_fns, &t, &scratch, AS_JSON_TRUSTED, NULL, &ignored);
    as_buf_free(&scratch);
    return t.nomem ? -1 : 0;
}

int as_search_label(const as_meta *m, as_buf *out) {
    size_t start = out->len, i;
    if (m->name && as_buf_put(out, m->name, strlen(m->name)) != 0) return -1;
    for (i = 0; i < m->ntags; i++)
        if ((out->len > start && as_buf_putc(out, '\n') != 0)
            || as_buf_put(out, m->tags[i], strlen(m->tags[i])) != 0)
            return -1;
    return 0;
}

/* ---------------------------------------------------------------- matching */

static int same_word(const char *text, size_t start, size_t end, const char *word) {
    size_t i, n = end - start;
    for (i = 0; i < n; i++)
        if (word[i] == '\0' || fold((unsigned char)text[start + i]) != (unsigned char)word[i])
            return 0;
    return word[n] == '\0';
}

/* The ring of the last words read: their starts and ends. */
#define RING AS_QUERY_WORDS_MAX

int as_query_match(const as_query *q, const char *text, size_t len, size_t *at) {
    size_t starts[RING], ends[RING], pos = 0, start, end, nread = 0, found = 0, p;
    size_t first_at[AS_QUERY_WORDS_MAX];
    unsigned char seen[AS_QUERY_WORDS_MAX];
    memset(seen, 0, q->nphrases);
    while (found < q->nphrases && next_word(text, len, &pos, &start, &end)) {
        starts[nread % RING] = start;
        ends[nread % RING] = end;
        nread++;
        for (p = 0; p < q->nphrases; p++) {
            size_t from = p ? q->ends[p - 1] : 0, k = q->ends[p] - from, j;
            int match = !seen[p] && nread >= k;
            /* the phrase ends at the word just read: compare from its last word back */
            for (j = k; match && j > 0; j--) {
                size_t slot = (nread - 1 - (k - j)) % RING;
                match = same_word(text, starts[slot], ends[slot], q->words[from + j - 1]);
            }
            if (match) {
                seen[p] = 1;
                first_at[p] = starts[(nread - k) % RING];
                found++;
            }
        }
    }
    if (found < q->nphrases) return 0;
    *at = len;
    for (p = 0; p < q->nphrases; p++)
        if (first_at[p] < *at) *at = first_at[p];
    return 1;
}

/* ---------------------------------------------------------------- snippets */

static size_t char_len(const unsigned char *p, const unsigned char *end) {
    size_t n = *p < 0x80 ? 1 : as_utf8_seq(p, end);
    return n ? n : 1;
}

/* The start of the character before byte i (i > 0) of a UTF-8 text. */
static size_t prev_char(const unsigned char *s, size_t i) {
    size_t back = 0;
    do i--, back++; while (i > 0 && back < 4 && (s[i] & 0xC0) == 0x80);
    return i;
}

as_status as_snippet(const char *text, size_t len, size_t at, char **out, as_error *err) {
    const unsigned char *s = (const unsigned char *)text, *e = s + len;
    size_t start = at > len ? len : at, end, chars = 0, before = 0;
    /* up to a fifth of the snippet before the match, the rest after it */
    while (start > 0 && before < AS_SNIPPET_CHARS / 5) {
        start = prev_char(s, start);
        before++;
    }
    for (end = start; end < len && chars < AS_SNIPPET_CHARS; chars++) end += char_len(s + end, e);
    /* near the end of the text: more of what comes before */
    while (start > 0 && chars < AS_SNIPPET_CHARS) {
        start = prev_char(s, start);
        chars++;
    }
    if ((*out = as_strndup(text + start, end - start)) == NULL) return as_error_nomem(err);
    return AS_OK;
}

/* ---------------------------------------------------------------- keys */

/* The keys already written to out, in an open-addressing set: each slot holds
** a key's offset in out (plus one; 0: empty), its length and its hash, so
** that a probe compares bytes only on a full match of the hash and growing
** reads no key again. */
typedef struct key_slot {
    size_t at;
    uint32_t len;
    uint32_t hash;
} key_slot;

typedef struct key_set {
    key_slot *slots;
    size_t mask;
    size_t n;
} key_set;

static int key_set_grow(key_set *ks, size_t cap) {
    key_slot *slots;
    size_t i;
    if (cap > SIZE_MAX / sizeof *slots || (slots = as_calloc(cap, sizeof *slots)) == NULL) return -1;
    for (i = 0; ks->slots && i <= ks->mask; i++) {
        size_t j;
        if (ks->slots[i].at == 0) continue;
        for (j = ks->slots[i].hash & (cap - 1); slots[j].at; j = (j + 1) & (cap - 1)) continue;
        slots[j] = ks->slots[i];
    }
    as_free(ks->slots);
    ks->slots = slots;
    ks->mask = cap - 1;
    return 0;
}

int as_search_keys(const char *text, size_t len, char sep, as_buf *out) {
    key_set ks = { NULL, 0, 0 };
    size_t pos = 0, start, end, cap = 64;
    int bad = 0;
    /* a slot for every four bytes of text, so that most texts never grow it */
    while (cap < len / 4 && cap < ((size_t)1 << 16)) cap *= 2;
    if (key_set_grow(&ks, cap) != 0) return -1;
    while (next_word(text, len, &pos, &start, &end)) {
        size_t n = key_len(text + start, end - start), j, off = out->len, i;
        uint32_t h;
        char *k;
        if ((ks.n + 1) * 2 > ks.mask + 1 && key_set_grow(&ks, (ks.mask + 1) * 2) != 0) {
            bad = 1;
            break;
        }
        if (as_buf_reserve(out, n + 1) != 0) {
            bad = 1;
            break;
        }
        /* folded into out (kept only when new) and hashed (FNV-1a) in one pass */
        k = out->data + off;
        h = 2166136261u;
        for (i = 0; i < n; i++) {
            unsigned char c = fold((unsigned char)text[start + i]);
            k[i] = (char)c;
            h = (h ^ c) * 16777619u;
        }
        for (j = h & ks.mask; ks.slots[j].at; j = (j + 1) & ks.mask) {
            const key_slot *sl = &ks.slots[j];
            if (sl->hash == h && sl->len == n && memcmp(out->data + sl->at - 1, k, n) == 0) break;
        }
        if (ks.slots[j].at) continue; /* seen: the bytes written past len are dropped */
        k[n] = sep;
        out->len += n + 1;
        ks.slots[j].at = off + 1;
        ks.slots[j].len = (uint32_t)n;
        ks.slots[j].hash = h;
        ks.n++;
    }
    as_free(ks.slots);
    return bad ? -1 : 0;
}

/* ---------------------------------------------------------------- lists */

void as_found_list_clear(as_found_list *l) {
    size_t i;
    for (i = 0; i < l->n; i++) {
        as_meta_clear(&l->items[i].meta);
        as_free(l->items[i].snippet);
    }
    as_free(l->items);
    memset(l, 0, sizeof *l);
}

void as_candidate_clear(as_candidate *c) {
    as_meta_clear(&c->meta);
    as_free(c->pos);
    if (c->text) as_blob_unref(c->text);
    memset(c, 0, sizeof *c);
}

as_status as_candidate_list_take(as_candidate_list *l, as_candidate *c, as_error *err) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        as_candidate *grown;
        if (cap > SIZE_MAX / sizeof *grown
            || (grown = as_realloc(l->items, cap * sizeof *grown)) == NULL) {
            as_candidate_clear(c);
            return as_error_nomem(err);
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = *c;
    memset(c, 0, sizeof *c);
    return AS_OK;
}

void as_candidate_list_clear(as_candidate_list *l) {
    size_t i;
    for (i = 0; i < l->n; i++) as_candidate_clear(&l->items[i]);
    as_free(l->items);
    memset(l, 0, sizeof *l);
}

as_status as_id_list_push(as_id_list *l, const char *id, as_error *err) {
    char *copy;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **grown;
        if (cap > SIZE_MAX / sizeof *grown || (grown = as_realloc(l->ids, cap * sizeof *grown)) == NULL)
            return as_error_nomem(err);
        l->ids = grown;
        l->cap = cap;
    }
    if ((copy = as_strdup(id)) == NULL) return as_error_nomem(err);
    l->ids[l->n++] = copy;
    return AS_OK;
}

void as_id_list_clear(as_id_list *l) {
    size_t i;
    for (i = 0; i < l->n; i++) as_free(l->ids[i]);
    as_free(l->ids);
    memset(l, 0, sizeof *l);
}
