/*
** float_test: as_json_write_double against an exact search for the shortest
** decimal that reads back, sharing no code with it.
**
** The reference takes a double's exact decimal expansion from printf ("%.800e"
** holds every digit of every double, subnormals included: none has more than
** 767 significant digits), and for p = 1, 2, … 17 cuts it to the p-digit
** decimals just below and just above the double; the answer is the first p
** where one of them reads back (strtod), the nearer one when both do (when the
** double lies halfway, the one with an even last digit, as printf rounds). The
** encoder's text must give the same digits and exponent, read back bit for
** bit, and read as a float ('.' or an exponent).
**
** Inputs: fixed cases (every power of two, powers of ten, the neighbourhoods
** of 2^53 and 2^63, the ends of the ranges), then `count` random values: bit
** patterns, subnormals and short decimals, from a seed.
**
** Usage: float_test [count [seed]]   (defaults: 100000, and a fixed seed for
** a missing seed or 0)
*/
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/core/as_json.h"

#define DEFAULT_SEED UINT64_C(0x5eed2024f10a7e57)
#define EXACT_DIGITS 800
#define SHOWN_DIFFERENCES 10

/* Significant digits (no leading or trailing zeros) and the exponent of the first. */
typedef struct digits {
    char d[EXACT_DIGITS + 2];
    int n, exp;
} digits;

static unsigned long checked, differences, ties;

static uint64_t rng_state;

static uint64_t rng_next(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(0x2545F4914F6CDD1D);
}

static double from_bits(uint64_t bits) {
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static uint64_t to_bits(double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

static void strip_zeros(digits *x) {
    while (x->n > 1 && x->d[x->n - 1] == '0') x->n--;
    x->d[x->n] = '\0';
}

/* The exact decimal expansion of a > 0. */
static void exact_expansion(double a, digits *x) {
    char text[EXACT_DIGITS + 32];
    const char *s = text;
    snprintf(text, sizeof text, "%.*e", EXACT_DIGITS, a);
    x->n = 0;
    for (; *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') x->d[x->n++] = *s;
    x->exp = atoi(s + 1);
    strip_zeros(x);
}

/* Whether the decimal d[0..n) × 10^(exp-n+1) reads back as a. */
static int reads_back(const char *d, int n, int exp, double a) {
    char text[64];
    snprintf(text, sizeof text, "%.*se%d", n, d, exp - n + 1);
    return strtod(text, NULL) == a;
}

/* The shortest decimal that reads back as a > 0, from its exact expansion. */
static void reference_shortest(double a, digits *out) {
    digits exact;
    int p;
    exact_expansion(a, &exact);
    for (p = 1; p <= 17; p++) {
        char below[18], above[19];
        int i, above_exp = exact.exp, below_ok, above_ok = 0;
        memcpy(below, exact.d, (size_t)(p < exact.n ? p : exact.n));
        for (i = exact.n; i < p; i++) below[i] = '0';
        below_ok = reads_back(below, p, exact.exp, a);
        if (p < exact.n) { /* a is not a p-digit decimal: the one above is below's successor */
            memcpy(above, below, (size_t)p);
            for (i = p - 1; i >= 0 && above[i] == '9'; i--) above[i] = '0';
            if (i >= 0) above[i]++;
            else { above[0] = '1'; above_exp++; }
            above_ok = reads_back(above, p, above_exp, a);
        }
        if (below_ok || above_ok) {
            int use_above = above_ok;
            if (below_ok && above_ok) { /* the nearer: compare what was cut off with one half */
                const char *rest = exact.d + p;
                int c = rest[0] - '5';
                if (c == 0) c = rest[1] != '\0';
                if (c == 0) { /* halfway: the even last digit, as printf rounds */
                    ties++;
                    c = (below[p - 1] - '0') % 2 ? 1 : -1;
                }
                use_above = c > 0;
            }
            memcpy(out->d, use_above ? above : below, (size_t)p);
            out->n = p;
            out->exp = use_above ? above_exp : exact.exp;
            strip_zeros(out);
            return;
        }
    }
    fprintf(stderr, "float_test: no 17-digit decimal reads back as %a\n", a);
    exit(2);
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int json_number(const char *s) {
    if (*s == '-') s++;
    if (*s == '0') s++;
    else if (*s >= '1' && *s <= '9') while (*s >= '0' && *s <= '9') s++;
    else return 0;
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9') s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return 0;
        while (*s >= '0' && *s <= '9') s++;
    }
    return *s == '\0';
}

/* The significant digits and exponent of a number's text. */
static void text_digits(const char *s, digits *x) {
    int point = -1, i = 0, lead = 0, seen = 0;
    x->n = 0;
    if (*s == '-') s++;
    for (; *s && *s != 'e' && *s != 'E'; s++, i++) {
        if (*s == '.') { point = i; i--; continue; }
        if (!seen && *s == '0') { lead++; continue; }
        seen = 1;
        if (x->n < EXACT_DIGITS) x->d[x->n++] = *s;
    }
    if (point < 0) point = i;
    x->exp = point - lead - 1 + (*s ? atoi(s + 1) : 0);
    if (x->n == 0) { x->d[0] = '0'; x->n = 1; x->exp = 0; }
    strip_zeros(x);
}

static void report(double v, const char *text, const char *why, const digits *want) {
    differences++;
    if (differences > SHOWN_DIFFERENCES) return;
    if (want)
        fprintf(stderr, "float_test: %a (bits %016" PRIx64 ") gave %s, %s %s.e%d\n", v,
                to_bits(v), text, why, want->d, want->exp);
    else
        fprintf(stderr, "float_test: %a (bits %016" PRIx64 ") gave %s: %s\n", v, to_bits(v),
                text, why);
}

static void check(double v) {
    as_buf b = AS_BUF_INIT;
    char text[64];
    digits got, want;
    double back;
    if (!isfinite(v)) return;
    checked++;
    if (as_json_write_double(&b, v) != 0 || b.len >= sizeof text) {
        as_buf_free(&b);
        report(v, "nothing", "the writer failed", NULL);
        return;
    }
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    as_buf_free(&b);
    back = strtod(text, NULL);
    if (!json_number(text)) report(v, text, "not a JSON number", NULL);
    else if (!strpbrk(text, ".e")) report(v, text, "reads as an integer", NULL);
    else if (to_bits(back) != to_bits(v)) report(v, text, "does not read back", NULL);
    else if (v != 0) {
        reference_shortest(fabs(v), &want);
        text_digits(text, &got);
        if (got.n != want.n || got.exp != want.exp || memcmp(got.d, want.d, (size_t)got.n) != 0)
            report(v, text, "the shortest is", &want);
    }
}

static void check_both_signs(double v) {
    check(v);
    check(-v);
}

/* Known cases, with the text they must give. */
static void check_text(double v, const char *expected) {
    as_buf b = AS_BUF_INIT;
    int ok = as_json_write_double(&b, v) == 0 && b.len == strlen(expected)
             && memcmp(b.data, expected, b.len) == 0;
    if (!ok) {
        differences++;
        fprintf(stderr, "float_test: %a gave %.*s, expected %s\n", v, (int)b.len,
                b.data ? b.data : "", expected);
    }
    as_buf_free(&b);
    checked++;
}

static void fixed_cases(void) {
    int e, k;
    check_text(1e-318, "1e-318");
    check_text(from_bits(0x0f), "7.4e-323");
    check_text(ldexp(1, -24), "5.960464477539063e-08");
    check_text(5e-324, "5e-324");
    check_text(0.1, "0.1");
    check_text(1.0, "1.0");
    check_text(-0.0, "-0.0");
    check_text(1e13, "10000000000000.0");
    check_text(1e14, "1e+14");
    check_text(123456789012345.0, "123456789012345.0");
    check_text(1234567890123450.0, "1.23456789012345e+15");
    check_text(1e300, "1e+300");
    check_text(DBL_MAX, "1.7976931348623157e+308");
    check_both_signs(0.0);
    for (e = -1074; e <= 1023; e++) check_both_signs(ldexp(1, e));
    for (e = -324; e <= 308; e++) {
        char text[16];
        double v;
        snprintf(text, sizeof text, "1e%d", e);
        v = strtod(text, NULL);
        check_both_signs(v);
        check(nextafter(v, 0));
        check(nextafter(v, INFINITY));
    }
    for (e = 0; e < 4; e++) {
        static const int around[] = { 53, 63, 64, -1022 };
        double up = ldexp(1, around[e]), down = up;
        for (k = 0; k < 1000; k++) {
            check(up);
            check(down);
            up = nextafter(up, INFINITY);
            down = nextafter(down, 0);
        }
    }
    for (k = 0; k < 1000; k++) {
        check_both_signs(from_bits((uint64_t)k));                           /* smallest subnormals */
        check_both_signs(from_bits(UINT64_C(0x000fffffffffffff) - (uint64_t)k)); /* largest */
        check_both_signs(from_bits(UINT64_C(0x7fefffffffffffff) - (uint64_t)k)); /* up to DBL_MAX */
    }
}

/* A random decimal of 1..17 digits at a random exponent, read as a double. */
static double random_short_decimal(void) {
    char text[40];
    uint64_t r = rng_next();
    int n = 1 + (int)(r % 17), e = (int)((r >> 8) % 640) - 330, i;
    for (i = 0; i < n; i++) text[i] = (char)('0' + rng_next() % 10);
    snprintf(text + n, sizeof text - (size_t)n, "e%d", e);
    return strtod(text, NULL);
}

static void random_cases(unsigned long count, uint64_t seed) {
    unsigned long i;
    rng_state = seed;
    for (i = 0; i < count; i++) {
        switch (i % 4) {
        case 0:
        case 1: check(from_bits(rng_next())); break;
        case 2: check(from_bits(rng_next() & UINT64_C(0x800fffffffffffff))); break; /* subnormal */
        default: check(random_short_decimal()); break;
        }
    }
}

/* A whole number argument (decimal or 0x hex), or exits with the usage. */
static uint64_t number_arg(const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *s == '-' || *end != '\0') {
        fprintf(stderr, "usage: float_test [count [seed]]\n");
        exit(2);
    }
    return (uint64_t)v;
}

int main(int argc, char **argv) {
    unsigned long count = argc > 1 ? (unsigned long)number_arg(argv[1]) : 100000;
    uint64_t seed = argc > 2 ? number_arg(argv[2]) : 0;
    if (seed == 0) seed = DEFAULT_SEED; /* xorshift cannot start from 0 */
    fixed_cases();
    random_cases(count, seed);
    printf("float_test: %lu doubles (%lu random, seed %#" PRIx64 "; %lu halfway between two "
           "that read back), %lu differences\n", checked, count, seed, ties, differences);
    return differences == 0 ? 0 : 1;
}
