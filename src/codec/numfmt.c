/*
 * numfmt.c - number to text for JSON, fast and locale-independent.
 * mbx_format_f32 produces the very text of printf("%.9g") (9 significant
 * digits: every float32 reads back exactly) about ten times faster than
 * snprintf, which matters when a response holds millions of gradient values;
 * in the rare cases where double arithmetic cannot decide the rounding of
 * the ninth digit it falls back to snprintf.  No allocation, no state.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"

/*
 * 10^k for k = -38 .. 53, correctly rounded doubles (exact for 0 <= k <= 22).
 * Both the decimal exponent test and the scaling use it; where the entries
 * are inexact, the results carry at most two roundings of double
 * arithmetic, far inside the margin the tie test below leaves.
 */
#define POW10_MIN (-38)
static const double pow10_tab[] = {
    1e-38, 1e-37, 1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31, 1e-30, 1e-29, 1e-28, 1e-27, 1e-26,
    1e-25, 1e-24, 1e-23, 1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13,
    1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2,
    1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33,
    1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47, 1e48,
    1e49, 1e50, 1e51, 1e52, 1e53,
};
#define POW10(k) (pow10_tab[(k) - POW10_MIN])

/* "00" .. "99" */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static size_t fallback_f32(float v, char *out)
{
    char tmp[MBX_NUMBER_MAX];
    int n = snprintf(tmp, sizeof tmp, "%.9g", (double)v);
    memcpy(out, tmp, (size_t)n);
    return (size_t)n;
}

/*
 * How: v = |f| is exact as a double; x, the decimal exponent of its leading
 * digit, comes from the binary exponent and one comparison; s = v * 10^(8-x)
 * lies in [1e8, 1e9) and its correctly rounded integer n is the 9
 * significant digits printf would print.  s carries a relative error below
 * 3e-16 (absolute below 3e-7), so rounding s gives the right n unless its
 * fraction is within 1e-6 of one half: those rare values, subnormals, and
 * non-finite values go to snprintf.  The layout then follows %g: exponent
 * form when x < -4 or x >= 9, trailing zeros and a bare point removed.
 */
size_t mbx_format_f32(float f, char *out)
{
    char *o = out;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    int biased = (int)((bits >> 23) & 0xff);
    if ((bits & 0x7fffffffu) == 0) {
        if (bits >> 31)
            *o++ = '-';
        *o++ = '0';
        return (size_t)(o - out);
    }
    if (biased == 0 || biased == 0xff) /* subnormal, or not finite */
        return fallback_f32(f, out);

    double v = fabs((double)f);
    int x = (int)(((biased - 127) * 78913L) >> 18); /* floor(e2 * log10(2)) */
    x += v >= POW10(x + 1);
    double s = v * POW10(8 - x);
    uint64_t n = (uint64_t)(int64_t)s; /* 0 < s < 2^31: truncation is floor */
    double frac = s - (double)n;
    if (frac > 0.5 - 1e-6 && frac < 0.5 + 1e-6)
        return fallback_f32(f, out);
    n += frac > 0.5;
    if (n >= 1000000000u) {
        if (n != 1000000000u || s >= 1e9) /* x one too low: let snprintf decide */
            return fallback_f32(f, out);
        n = 100000000u; /* 999999999.5.. rounded up to the next power of ten */
        x++;
    } else if (n < 100000000u) { /* x one too high (v just below a power of ten) */
        return fallback_f32(f, out);
    }

    char dig[10];
    uint32_t hi = (uint32_t)(n / 100000000u), lo = (uint32_t)(n % 100000000u);
    dig[0] = (char)('0' + hi);
    memcpy(dig + 1, digit_pairs + 2 * (lo / 1000000u), 2);
    memcpy(dig + 3, digit_pairs + 2 * (lo / 10000u % 100u), 2);
    memcpy(dig + 5, digit_pairs + 2 * (lo / 100u % 100u), 2);
    memcpy(dig + 7, digit_pairs + 2 * (lo % 100u), 2);
    int nd = 9;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;

    if (bits >> 31)
        *o++ = '-';
    if (x < -4 || x >= 9) {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, 8);
            o += nd - 1;
        }
        *o++ = 'e';
        int ax = x;
        if (ax < 0) {
            *o++ = '-';
            ax = -ax;
        } else {
            *o++ = '+';
        }
        memcpy(o, digit_pairs + 2 * ax, 2); /* |x| <= 38 */
        o += 2;
    } else if (x >= 0) {
        /* x + 1 integer digits (all within the 9), then the fraction. */
        memcpy(o, dig, 9);
        o += x + 1;
        if (nd > x + 1) {
            *o++ = '.';
            memcpy(o, dig + x + 1, (size_t)(8 - x));
            o += nd - x - 1;
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -x - 1; i++)
            *o++ = '0';
        memcpy(o, dig, 9);
        o += nd;
    }
    return (size_t)(o - out);
}

size_t mbx_format_f64(double v, char *out)
{
    char tmp[MBX_NUMBER_MAX];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    memcpy(out, tmp, (size_t)n);
    return (size_t)n;
}

size_t mbx_format_i64(int64_t v, char *out)
{
    char tmp[24];
    size_t n = 0, len;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    len = n + (v < 0);
    if (v < 0)
        *out++ = '-';
    while (n)
        *out++ = tmp[--n];
    return len;
}
