/*
** JSON text: the strict parser and the writing primitives (see as_json.h).
**
** The parser is a recursive descent over a byte range that never reads past its
** end and never allocates: depth is bounded by AS_JSON_MAX_DEPTH, and strings
** with escapes are decoded into the caller's scratch buffer.
*/
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "as_json.h"
#include "as_utf8.h"

/* The first byte at or after s that a JSON string cannot hold as it is: a
** quote, a backslash, a control character or a non-ASCII byte (end if none).
** Eight bytes at a time: in each test the lowest flagged byte is exact. */
static const unsigned char *skip_plain(const unsigned char *s, const unsigned char *end) {
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
#if defined(__SSE2__)
    {
        /* sixteen at a time: as signed bytes, controls and non-ASCII are < 0x20 */
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - s >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                       _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(hit);
            if (mask) return s + __builtin_ctz((unsigned)mask);
            s += 16;
        }
    }
#endif
    while (end - s >= 8) {
        uint64_t v, quote, bslash, flagged;
        memcpy(&v, s, 8);
        quote = v ^ (ones * '"');
        bslash = v ^ (ones * '\\');
        flagged = (((v - ones * 0x20) & ~v) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) | v)
                  & highs;
        if (flagged) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return s + (__builtin_ctzll(flagged) >> 3);
#else
            break;
#endif
        }
        s += 8;
    }
    while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\') s++;
    return s;
}

/* ---------------------------------------------------------------- parser */

/* What a string byte needs: 0 nothing, 1 closes, 2 escape, 3 control, 4 non-ASCII. */
static const unsigned char string_class[256] = {
    3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3, 3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,
    0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4, 4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,
    4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4, 4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,
    4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4, 4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,
    4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4, 4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,
};

typedef struct parser {
    const unsigned char *start, *p, *end;
    const as_json_sink *sink;
    void *ctx;
    as_buf *scratch;
    as_error *err;
    int flags;
    int depth;
    int max_depth;
} parser;

static as_status parse_fail(parser *P, const char *what) {
    as_error_set(P->err, AS_EINVALID, "at byte %zu: %s", (size_t)(P->p - P->start) + 1, what);
    return AS_EINVALID;
}

static as_status sink_failed(parser *P) {
    if (P->err->status == AS_OK) as_error_set(P->err, AS_EINVALID, "the value was refused");
    return P->err->status;
}

#define SINK(P, call) do { if ((P)->sink->call) return sink_failed(P); } while (0)

static void skip_ws(parser *P) {
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\n' || *P->p == '\r' || *P->p == '\t'))
        P->p++;
}

static int hex4(const unsigned char *s, unsigned long *out) {
    unsigned long v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned long)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned long)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned long)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Decodes the string at P->p (on its opening quote). The result points into the
** input when the string has no escapes, else into the scratch buffer. */
static as_status read_string(parser *P, const char **out, size_t *outlen) {
    const unsigned char *s = P->p + 1, *run;
    int trusted = P->flags & AS_JSON_TRUSTED;
    as_buf *sb = P->scratch;
    int escaped = 0;

    P->p = s;
    run = s;
    for (;;) {
        unsigned char cls;
        s = skip_plain(s, P->end);
        if (s >= P->end) { P->p = s; return parse_fail(P, "unterminated string"); }
        cls = string_class[*s];
        if (cls == 1) break;
        if (cls == 4) {
            if (trusted) { s++; continue; }
            {
                size_t n = as_utf8_seq(s, P->end);
                if (n == 0) { P->p = s; return parse_fail(P, "invalid UTF-8 in string"); }
                s += n;
            }
            continue;
        }
        if (cls == 3) { P->p = s; return parse_fail(P, "control character in string"); }
        /* an escape: move what came before into the scratch buffer */
        if (!escaped) { sb->len = 0; escaped = 1; }
        if (as_buf_put(sb, run, (size_t)(s - run)) != 0) return as_error_nomem(P->err);
        if (s + 1 >= P->end) { P->p = s; return parse_fail(P, "unterminated string"); }
        {
            char c;
            switch (s[1]) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned long cp, lo;
                unsigned char u8[4];
                if (P->end - s < 6 || hex4(s + 2, &cp) != 0) { P->p = s; return parse_fail(P, "invalid \\u escape"); }
                s += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) { P->p = s - 6; return parse_fail(P, "lone surrogate in \\u escape"); }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (P->end - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) != 0
                        || lo < 0xDC00 || lo > 0xDFFF) {
                        P->p = s - 6;
                        return parse_fail(P, "lone surrogate in \\u escape");
                    }
                    s += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (as_buf_put(sb, u8, as_utf8_put(u8, cp)) != 0) return as_error_nomem(P->err);
                run = s;
                continue;
            }
            default: P->p = s; return parse_fail(P, "invalid escape in string");
            }
            if (as_buf_putc(sb, c) != 0) return as_error_nomem(P->err);
            s += 2;
            run = s;
        }
    }
    if (escaped) {
        if (as_buf_put(sb, run, (size_t)(s - run)) != 0) return as_error_nomem(P->err);
        *out = sb->data;
        *outlen = sb->len;
    } else {
        *out = (const char *)P->p;
        *outlen = (size_t)(s - P->p);
    }
    P->p = s + 1;
    return AS_OK;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static as_status read_number(parser *P) {
    const unsigned char *s = P->p, *begin = P->p;
    int neg = 0, is_float = 0;
    if (*s == '-') { neg = 1; s++; }
    if (s >= P->end || !is_digit(*s)) return parse_fail(P, "invalid number");
    if (*s == '0') {
        s++;
        if (s < P->end && is_digit(*s)) return parse_fail(P, "leading zero in number");
    } else {
        while (s < P->end && is_digit(*s)) s++;
    }
    if (s < P->end && *s == '.') {
        s++;
        if (s >= P->end || !is_digit(*s)) { P->p = s; return parse_fail(P, "digit expected after '.'"); }
        while (s < P->end && is_digit(*s)) s++;
        is_float = 1;
    }
    if (s < P->end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < P->end && (*s == '+' || *s == '-')) s++;
        if (s >= P->end || !is_digit(*s)) { P->p = s; return parse_fail(P, "digit expected in exponent"); }
        while (s < P->end && is_digit(*s)) s++;
        is_float = 1;
    }
    if (!is_float) {
        /* an integer literal: exact when it fits in 64 bits */
        const unsigned char *d = begin + neg;
        uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int fits = 1;
        for (; d < s; d++) {
            unsigned digit = (unsigned)(*d - '0');
            if (v > (limit - digit) / 10) { fits = 0; break; }
            v = v * 10 + digit;
        }
        if (fits) {
            int64_t iv = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
            P->p = s;
            SINK(P, integer(P->ctx, iv));
            return AS_OK;
        }
    }
    {
        /* strtod wants a NUL-terminated text in the current locale */
        size_t n = (size_t)(s - begin), i;
        char local[64], *txt = local;
        char point = localeconv()->decimal_point[0];
        double d;
        if (n >= sizeof local) {
            P->scratch->len = 0;
            if (as_buf_reserve(P->scratch, n + 1) != 0) return as_error_nomem(P->err);
            txt = P->scratch->data;
        }
        memcpy(txt, begin, n);
        txt[n] = '\0';
        if (point != '.' && point != '\0')
            for (i = 0; i < n; i++) if (txt[i] == '.') txt[i] = point;
        errno = 0;
        d = strtod(txt, NULL);
        if (isinf(d)) return parse_fail(P, "number out of range of a double");
        P->p = s;
        if (!is_float && P->sink->big_integer) SINK(P, big_integer(P->ctx, (const char *)begin, n, d));
        else SINK(P, number(P->ctx, d));
    }
    return AS_OK;
}

static as_status parse_value(parser *P);

static as_status parse_array(parser *P) {
    size_t index = 0;
    as_status st;
    if (++P->depth > P->max_depth) return parse_fail(P, "nesting deeper than 128 levels");
    P->p++;
    SINK(P, begin_array(P->ctx));
    skip_ws(P);
    if (P->p < P->end && *P->p == ']') {
        P->p++;
    } else {
        for (;;) {
            index++;
            if ((st = parse_value(P)) != AS_OK) {
                as_error_prefix_index(P->err, index);
                return st;
            }
            SINK(P, array_item(P->ctx, index));
            skip_ws(P);
            if (P->p < P->end && *P->p == ',') {
                P->p++;
                skip_ws(P);
                continue;
            }
            if (P->p < P->end && *P->p == ']') { P->p++; break; }
            return parse_fail(P, "',' or ']' expected");
        }
    }
    SINK(P, end_array(P->ctx));
    P->depth--;
    return AS_OK;
}

static as_status parse_object(parser *P) {
    as_status st;
    if (++P->depth > P->max_depth) return parse_fail(P, "nesting deeper than 128 levels");
    P->p++;
    SINK(P, begin_object(P->ctx));
    skip_ws(P);
    if (P->p < P->end && *P->p == '}') {
        P->p++;
    } else {
        for (;;) {
            const char *key;
            const unsigned char *raw;
            size_t keylen, rawlen;
            if (P->p >= P->end || *P->p != '"') return parse_fail(P, "string key expected");
            raw = P->p + 1;
            if ((st = read_string(P, &key, &keylen)) != AS_OK) return st;
            rawlen = (size_t)(P->p - 1 - raw);
            SINK(P, key(P->ctx, key, keylen));
            skip_ws(P);
            if (P->p >= P->end || *P->p != ':') return parse_fail(P, "':' expected");
            P->p++;
            skip_ws(P);
            if ((st = parse_value(P)) != AS_OK) {
                /* the key as written (escapes and all) names the member in the path */
                as_error_prefix_key(P->err, (const char *)raw, rawlen);
                return st;
            }
            SINK(P, object_item(P->ctx));
            skip_ws(P);
            if (P->p < P->end && *P->p == ',') {
                P->p++;
                skip_ws(P);
                continue;
            }
            if (P->p < P->end && *P->p == '}') { P->p++; break; }
            return parse_fail(P, "',' or '}' expected");
        }
    }
    SINK(P, end_object(P->ctx));
    P->depth--;
    return AS_OK;
}

static int match_word(parser *P, const char *word, size_t n) {
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0) return 0;
    P->p += n;
    return 1;
}

static as_status parse_value(parser *P) {
    if (P->p >= P->end) return parse_fail(P, "value expected");
    switch (*P->p) {
    case '{': return parse_object(P);
    case '[': return parse_array(P);
    case '"': {
        const char *s;
        size_t n;
        as_status st = read_string(P, &s, &n);
        if (st != AS_OK) return st;
        SINK(P, string(P->ctx, s, n));
        return AS_OK;
    }
    case 't':
        if (!match_word(P, "true", 4)) return parse_fail(P, "invalid literal");
        SINK(P, boolean(P->ctx, 1));
        return AS_OK;
    case 'f':
        if (!match_word(P, "false", 5)) return parse_fail(P, "invalid literal");
        SINK(P, boolean(P->ctx, 0));
        return AS_OK;
    case 'n':
        if (!match_word(P, "null", 4)) return parse_fail(P, "invalid literal");
        SINK(P, null_value(P->ctx));
        return AS_OK;
    default:
        if (*P->p == '-' || is_digit(*P->p)) return read_number(P);
        return parse_fail(P, "value expected");
    }
}

as_status as_json_parse(const char *text, size_t len, const as_json_sink *sink, void *ctx,
                        as_buf *scratch, int flags, const char *root, as_error *err) {
    parser P;
    as_status st;
    P.start = P.p = (const unsigned char *)text;
    P.end = P.start + len;
    P.sink = sink;
    P.ctx = ctx;
    P.scratch = scratch;
    P.err = err;
    P.flags = flags;
    P.depth = 0;
    P.max_depth = AS_JSON_MAX_DEPTH + ((flags & AS_JSON_DOCUMENT) ? 2 : 0);
    skip_ws(&P);
    st = parse_value(&P);
    if (st == AS_OK) {
        skip_ws(&P);
        if (P.p != P.end) st = parse_fail(&P, "unexpected text after the value");
    }
    if (st != AS_OK && root) as_error_prefix(err, root);
    return st;
}

/* A sink that accepts everything: validation only. The key callback keeps the
** parser's rule that keys are strings; nothing else needs doing. */
static int ok0(void *ctx) { (void)ctx; return 0; }
static int ok_bool(void *ctx, int v) { (void)ctx; (void)v; return 0; }
static int ok_int(void *ctx, int64_t v) { (void)ctx; (void)v; return 0; }
static int ok_num(void *ctx, double v) { (void)ctx; (void)v; return 0; }
static int ok_str(void *ctx, const char *s, size_t n) { (void)ctx; (void)s; (void)n; return 0; }
static int ok_idx(void *ctx, size_t i) { (void)ctx; (void)i; return 0; }

static const as_json_sink validate_sink = {
    ok0, ok_bool, ok_int, ok_num, ok_str, ok0, ok_idx, ok0, ok0, ok_str, ok0, ok0, NULL
};

as_status as_json_validate(const char *text, size_t len, as_buf *scratch, const char *root,
                           as_error *err) {
    return as_json_parse(text, len, &validate_sink, NULL, scratch, 0, root, err);
}

/* ---------------------------------------------------------------- writing */

int as_json_write_integer(as_buf *b, int64_t v) {
    char tmp[24], *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *--p = '-';
    return as_buf_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/*
** The shortest text of a double. For a normal double v, two decimals of 15
** significant digits near v lie about v * 1e-15 or more apart, several times
** the width of v's rounding interval (at most v * 2^-52, about v * 2.2e-16).
** So at most one decimal of 15 or fewer digits reads back as v, and when one
** does it is the nearest (no further from v than that one), which %.15g prints
** with its trailing zeros dropped: one printf and one strtod for the numbers
** messages hold. A subnormal has fewer bits and a wider interval, so several
** 15-digit decimals may read back and %.15g's need not be the shortest: it
** takes the search below, as does a normal double that needs 16 or 17 digits.
*/

/* d[0].d[1]…d[n-1] × 10^exp, n ASCII digits (1..17). */
typedef struct decimal {
    char d[17];
    int n, exp;
} decimal;

/* The p-digit decimal nearest a (> 0), as printf rounds it: correctly. */
static void decimal_nearest(double a, int p, decimal *x) {
    char tmp[40];
    const char *s = tmp;
    int n = 0;
    if (p < 1 || p > 17) p = 17; /* the callers' range; bounds the text for the compiler */
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, a);
    for (; *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && n < 17) x->d[n++] = *s;
    x->n = n;
    x->exp = atoi(s + 1);
}

/* Writes 'e' and the exponent, at least two digits as printf does; returns the length. */
static int put_exponent(char *out, int e) {
    int k = 0;
    out[k++] = 'e';
    out[k++] = e < 0 ? '-' : '+';
    if (e < 0) e = -e;
    if (e >= 100) out[k++] = (char)('0' + e / 100);
    out[k++] = (char)('0' + e / 10 % 10);
    out[k++] = (char)('0' + e % 10);
    return k;
}

/* What strtod reads from x, written as an integer and an exponent: no decimal
** point, so the locale cannot change it. */
static double decimal_value(const decimal *x) {
    char tmp[32];
    int k = x->n;
    memcpy(tmp, x->d, (size_t)k);
    k += put_exponent(tmp + k, x->exp - (x->n - 1));
    tmp[k] = '\0';
    return strtod(tmp, NULL);
}

/* Moves x one unit in its last place, keeping n digits: 9.99 -> 10.0 going up,
** 1.00 -> 0.999 going down. */
static void decimal_step(decimal *x, int up) {
    int i = x->n - 1;
    if (up) {
        while (i >= 0 && x->d[i] == '9') x->d[i--] = '0';
        if (i >= 0) x->d[i]++;
        else { x->d[0] = '1'; x->exp++; }
    } else {
        while (x->d[i] == '0') x->d[i--] = '9'; /* d[0] is never '0' */
        x->d[i]--;
        if (x->d[0] == '0') { memset(x->d, '9', (size_t)x->n); x->exp--; }
    }
}

/*
** A p-digit decimal that reads back as a, the nearer one when two do. Only the
** two p-digit decimals around a can: the nearest, and its neighbour on a's
** other side. Where the gap to the next double below a is as wide as the gap
** above, the neighbour is no nearer to a than the nearest and so reads back only
** if the nearest does; at a power of two (not the smallest normal) the gap below
** is half the gap above, and the neighbour above may read back when the
** nearest, below, does not.
*/
static int decimal_reads_back(double a, int p, int lopsided, decimal *x) {
    double r;
    decimal_nearest(a, p, x);
    r = decimal_value(x);
    if (r == a) return 1;
    if (!lopsided) return 0;
    decimal_step(x, r < a);
    return decimal_value(x) == a;
}

/* The fewest digits from `lo` on that read back as a (> 0). Binary search is
** right: a p-digit decimal that reads back is also a (p+1)-digit one, and 17
** digits always read back. */
static void decimal_shortest(double a, int lo, decimal *best) {
    int hi = 17, e, found = 0;
    int lopsided = frexp(a, &e) == 0.5 && a > DBL_MIN;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        decimal x;
        if (decimal_reads_back(a, mid, lopsided, &x)) {
            *best = x;
            found = 1;
            hi = mid;
        } else lo = mid + 1;
    }
    if (!found) decimal_nearest(a, 17, best);
}

/* x as printf's %.{n}g would write it (n its digit count), with a '.' for the
** decimal point; returns the length (at most 24). */
static int decimal_format(char *out, int neg, const decimal *x) {
    int n = x->n, p = x->n, e = x->exp, k = 0, i;
    while (n > 1 && x->d[n - 1] == '0') n--;
    if (neg) out[k++] = '-';
    if (e < -4 || e >= p) {
        out[k++] = x->d[0];
        if (n > 1) {
            out[k++] = '.';
            for (i = 1; i < n; i++) out[k++] = x->d[i];
        }
        k += put_exponent(out + k, e);
    } else if (e >= 0) {
        for (i = 0; i <= e; i++) out[k++] = i < n ? x->d[i] : '0';
        if (n > e + 1) {
            out[k++] = '.';
            for (i = e + 1; i < n; i++) out[k++] = x->d[i];
        }
    } else {
        out[k++] = '0';
        out[k++] = '.';
        for (i = -1; i > e; i--) out[k++] = '0';
        for (i = 0; i < n; i++) out[k++] = x->d[i];
    }
    return k;
}

/* The shortest text of v (finite, not 0) with at least `lo` digits. */
static int write_shortest(char *out, double v, int lo) {
    decimal x;
    decimal_shortest(fabs(v), lo, &x);
    return decimal_format(out, v < 0, &x);
}

int as_json_write_double(as_buf *b, double v) {
    char tmp[40];
    double a = fabs(v);
    int n, i, has_mark = 0;
    if (!isfinite(v)) return 1;
    if (a < DBL_MIN && a != 0) {
        n = write_shortest(tmp, v, 1);
    } else {
        n = snprintf(tmp, sizeof tmp, "%.15g", v);
        if (n <= 0 || (size_t)n >= sizeof tmp - 2) return -1;
        if (strtod(tmp, NULL) != v) n = write_shortest(tmp, v, 16);
        else {
            char point = localeconv()->decimal_point[0];
            int neg = v < 0, k = 15;
            /* 15 digits, all before the point, ending in zeros: only the digits
            ** that count, with an exponent (1e+14, not 100000000000000.0) */
            if (n - neg == 15 && strspn(tmp + neg, "0123456789") == 15 && tmp[n - 1] == '0') {
                while (tmp[neg + k - 1] == '0') k--;
                n = snprintf(tmp, sizeof tmp, "%.*g", k, v);
            }
            for (i = 0; i < n; i++)
                if (tmp[i] == point && point != '\0') tmp[i] = '.';
        }
    }
    for (i = 0; i < n; i++)
        if (tmp[i] == '.' || tmp[i] == 'e') has_mark = 1;
    if (!has_mark) { tmp[n++] = '.'; tmp[n++] = '0'; }
    return as_buf_put(b, tmp, (size_t)n);
}

/* The escape each ASCII byte needs in a JSON string ("" for none). */
static const char *const escapes[128] = {
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
    "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f",
    "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    NULL, NULL, "\\\"", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "\\\\", NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
};

int as_json_write_string(as_buf *b, const char *str, size_t len, size_t *bad) {
    const unsigned char *s = (const unsigned char *)str, *end = s + len, *run = s;
    size_t mark = b->len;
    if (len > SIZE_MAX - 2 || as_buf_reserve(b, len + 2) != 0) return -1;
    b->data[b->len++] = '"';
    while ((s = skip_plain(s, end)) < end) {
        unsigned char c = *s;
        if (c < 0x80) {
            const char *esc = escapes[c];
            if (as_buf_put(b, run, (size_t)(s - run)) != 0
                || as_buf_put(b, esc, esc[1] == 'u' ? 6 : 2) != 0) {
                b->len = mark;
                return -1;
            }
            run = ++s;
        } else {
            size_t n = as_utf8_seq(s, end);
            if (n == 0) {
                if (bad) *bad = (size_t)(s - (const unsigned char *)str);
                b->len = mark;
                return 1;
            }
            s += n;
        }
    }
    if (as_buf_put(b, run, (size_t)(s - run)) != 0 || as_buf_putc(b, '"') != 0) {
        b->len = mark;
        return -1;
    }
    return 0;
}
