/*
 * test_oip_half.c - FP16 and BF16 conversions of src/codec/half.c against
 * references written here from the formats' definitions: every one of the
 * 65536 FP16 patterns widened (value = ldexp(mantissa, exponent)), every
 * finite FP16 round-tripped, narrowing checked against a nearest-value
 * search with ties to even over a stride of all float32 patterns and over
 * every midpoint between neighbouring FP16 values, BF16 the same way, and
 * the bulk loads and stores (any alignment, little-endian bytes, the index
 * of the first non-finite element).
 *
 * Every test runs twice: with the SIMD paths of the bulk loops (F16C/AVX2,
 * when the CPU has them) and with the scalar code alone (mbx_half_set_simd).
 * The SIMD paths are also compared with the scalar code directly, bit for
 * bit: every FP16 and BF16 pattern widened, every one of the 2^32 float32
 * patterns narrowed, at odd addresses and lengths that are not a multiple
 * of 8, and the index of the first non-finite element for every position.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "half.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* FP16 by its definition: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* Nearest FP16 to x (finite, >= 0), ties to the even pattern; 0x7c00 when it overflows. */
static uint16_t ref_narrow_f16_pos(double x)
{
    /* The largest finite is 65504; from 65520 (the midpoint to 2^16) on, infinity. */
    if (x >= 65520.0)
        return 0x7c00;
    uint16_t lo = 0, hi = 0x7bff;
    if (x >= ref_f16(hi))
        return hi;
    while (hi - lo > 1) { /* invariant: f(lo) <= x < f(hi) */
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (ref_f16(mid) <= x)
            lo = mid;
        else
            hi = mid;
    }
    double dl = x - ref_f16(lo), dh = ref_f16(hi) - x;
    if (dl < dh)
        return lo;
    if (dh < dl)
        return hi;
    return (lo & 1) ? hi : lo;
}

static uint16_t ref_narrow_f16(float f)
{
    double x = f;
    if (isnan(x))
        return 0x7e00;
    uint16_t h = ref_narrow_f16_pos(fabs(x));
    return (uint16_t)(signbit(x) ? h | 0x8000 : h);
}

/* Nearest BF16 to f, ties to even, by comparing the two neighbours in double. */
static uint16_t ref_narrow_bf16(float f)
{
    uint32_t u = bits_of(f);
    uint32_t lo = u & 0xffff0000u;
    if ((u & 0xffffu) == 0)
        return (uint16_t)(lo >> 16);
    uint32_t hi = lo + 0x10000u; /* next pattern away from zero */
    double x = fabs((double)f), dl = x - fabs((double)float_of(lo));
    double dh = (hi & 0x7f800000u) == 0x7f800000u ? ldexp(1.0, 128) - x /* infinity as 2^128 */
                                                  : fabs((double)float_of(hi)) - x;
    if (dl < dh)
        return (uint16_t)(lo >> 16);
    if (dh < dl)
        return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}

static void test_f16_widen_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = mbx_f16_to_f32((uint16_t)h);
        double want = ref_f16((uint16_t)h);
        if (isnan(want)) {
            assert_true(isnan(got));
            continue;
        }
        if ((double)got != want || !signbit(got) != !signbit(want))
            fail_msg("FP16 0x%04x widened to %a, expected %a", h, (double)got, want);
    }
}

static void test_f16_round_trip_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 31) == 31 && (h & 1023))
            continue; /* NaN */
        uint16_t back = mbx_f32_to_f16(mbx_f16_to_f32((uint16_t)h));
        if (back != h)
            fail_msg("FP16 0x%04x came back as 0x%04x", h, back);
    }
}

static void check_f16_narrow(float f)
{
    uint16_t got = mbx_f32_to_f16(f), want = ref_narrow_f16(f);
    if (isnan(f)) {
        assert_true((got & 0x7c00) == 0x7c00 && (got & 0x3ff) != 0);
        return;
    }
    if (got != want)
        fail_msg("%a narrowed to FP16 0x%04x, expected 0x%04x", (double)f, got, want);
}

static void test_f16_narrow_stride(void **state)
{
    (void)state;
    /* Every 4099th float32 pattern, both signs: all exponents, many mantissas. */
    for (uint64_t u = 0; u <= 0xffffffffu; u += 4099)
        check_f16_narrow(float_of((uint32_t)u));
    check_f16_narrow(INFINITY);
    check_f16_narrow(-INFINITY);
    check_f16_narrow(65504.0f);
    check_f16_narrow(65519.99f);
    check_f16_narrow(65520.0f);
    check_f16_narrow(0x1p-25f);
    check_f16_narrow(0x1.000002p-25f);
    check_f16_narrow(0x1p-26f);
}

static void test_f16_narrow_midpoints(void **state)
{
    (void)state;
    /* Midpoints between neighbours (exact in float32) and their float neighbours. */
    for (uint16_t h = 0; h < 0x7bff; h++) {
        double mid = (ref_f16(h) + ref_f16((uint16_t)(h + 1))) / 2;
        float m = (float)mid;
        assert_true((double)m == mid);
        check_f16_narrow(m);
        check_f16_narrow(-m);
        check_f16_narrow(nextafterf(m, 0));
        check_f16_narrow(nextafterf(m, INFINITY));
        assert_int_equal(mbx_f32_to_f16(m), (h & 1) ? h + 1 : h);
    }
}

static void test_bf16(void **state)
{
    (void)state;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = mbx_bf16_to_f32((uint16_t)b);
        assert_int_equal(bits_of(f), b << 16);
        if ((b & 0x7f80) == 0x7f80 && (b & 0x7f))
            assert_true(isnan(f) && isnan(mbx_bf16_to_f32(mbx_f32_to_bf16(f))));
        else
            assert_int_equal(mbx_f32_to_bf16(f), b);
    }
    for (uint64_t u = 0; u <= 0xffffffffu; u += 1021) {
        float f = float_of((uint32_t)u);
        uint16_t got = mbx_f32_to_bf16(f);
        if (isnan(f)) {
            assert_true(isnan(mbx_bf16_to_f32(got)));
            continue;
        }
        uint16_t want = ref_narrow_bf16(f);
        if (got != want)
            fail_msg("%a narrowed to BF16 0x%04x, expected 0x%04x", (double)f, got, want);
    }
    /* Exact ties: 1 + 2^-8 lies between 1 and 1 + 2^-7 (even: 1); 1 + 3*2^-8 goes up. */
    assert_int_equal(mbx_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(mbx_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(mbx_f32_to_bf16(3.4028235e38f), 0x7f80); /* FLT_MAX rounds to infinity */
}

static void test_bulk_loads(void **state)
{
    (void)state;
    enum { N = 37 };
    unsigned char *buf = malloc(8 * N + 1);
    float out[N], src[N];
    assert_non_null(buf);
    for (int i = 0; i < N; i++)
        src[i] = (float)(i - 18) * 0.375f;

    /* FP16 at an odd address, little-endian. */
    for (int i = 0; i < N; i++) {
        uint16_t h = mbx_f32_to_f16(src[i]);
        buf[1 + 2 * i] = (unsigned char)h;
        buf[2 + 2 * i] = (unsigned char)(h >> 8);
    }
    assert_int_equal(mbx_load_f16(buf + 1, N, out), N);
    assert_memory_equal(out, src, sizeof src);
    buf[1 + 2 * 20 + 1] = 0x7c; /* element 20: infinity */
    buf[1 + 2 * 20] = 0x00;
    assert_int_equal(mbx_load_f16(buf + 1, N, out), 20);

    /* BF16 */
    for (int i = 0; i < N; i++) {
        uint16_t b = mbx_f32_to_bf16(src[i]);
        buf[1 + 2 * i] = (unsigned char)b;
        buf[2 + 2 * i] = (unsigned char)(b >> 8);
    }
    assert_int_equal(mbx_load_bf16(buf + 1, N, out), N);
    assert_memory_equal(out, src, sizeof src);

    /* FP32 misaligned, with a NaN at 36. */
    for (int i = 0; i < N; i++) {
        uint32_t u = bits_of(src[i]);
        for (int k = 0; k < 4; k++)
            buf[1 + 4 * i + k] = (unsigned char)(u >> (8 * k));
    }
    assert_int_equal(mbx_load_f32(buf + 1, N, out), N);
    assert_memory_equal(out, src, sizeof src);
    memset(buf + 1 + 4 * 36, 0xff, 4);
    assert_int_equal(mbx_load_f32(buf + 1, N, out), 36);

    /* FP64: rounds to nearest; beyond float32's range is reported. */
    double dv[3] = {0.1, -1e300, 3.4028235677973366e38 /* above FLT_MAX + half ulp */};
    for (int i = 0; i < 3; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        for (int k = 0; k < 8; k++)
            buf[1 + 8 * i + k] = (unsigned char)(u >> (8 * k));
    }
    assert_int_equal(mbx_load_f64(buf + 1, 1, out), 1);
    assert_true(out[0] == 0.1f);
    assert_int_equal(mbx_load_f64(buf + 1, 3, out), 1);
    assert_int_equal(mbx_load_f64(buf + 1 + 16, 1, out), 0);
    double near_max = 3.4028235e38; /* rounds to FLT_MAX */
    memcpy(buf, &near_max, 8);
    assert_int_equal(mbx_load_f64(buf, 1, out), 1);
    assert_true(out[0] == 3.4028235e38f);
    free(buf);
}

static void test_bulk_stores(void **state)
{
    (void)state;
    float src[5] = {1.0f, -2.5f, 0x1p-24f, 65504.0f, 1.0f / 3.0f};
    unsigned char b16[10], bb[10], b32[20];
    mbx_store_f16(src, 5, b16);
    mbx_store_bf16(src, 5, bb);
    mbx_store_f32(src, 5, b32);
    for (int i = 0; i < 5; i++) {
        uint16_t h = (uint16_t)(b16[2 * i] | b16[2 * i + 1] << 8);
        uint16_t b = (uint16_t)(bb[2 * i] | bb[2 * i + 1] << 8);
        uint32_t u = (uint32_t)b32[4 * i] | (uint32_t)b32[4 * i + 1] << 8 |
                     (uint32_t)b32[4 * i + 2] << 16 | (uint32_t)b32[4 * i + 3] << 24;
        assert_int_equal(h, ref_narrow_f16(src[i]));
        assert_int_equal(b, ref_narrow_bf16(src[i]));
        assert_int_equal(u, bits_of(src[i]));
    }
    assert_int_equal(b16[0] | b16[1] << 8, 0x3c00);
    assert_int_equal(b16[4] | b16[5] << 8, 0x0001);
}

/* ------------------------------------------------ SIMD vs scalar */

/* Little-endian bytes of the 65536 patterns in order, at buf + off. */
static void fill_patterns(unsigned char *buf, size_t off)
{
    for (uint32_t h = 0; h < 65536; h++) {
        buf[off + 2 * h] = (unsigned char)h;
        buf[off + 2 * h + 1] = (unsigned char)(h >> 8);
    }
}

typedef size_t (*load_fn)(const void *, size_t, float *);

/*
 * Loads of every pattern with the bulk loop, in pieces of len (one call
 * each), with the source at byte offset soff and the destination at float
 * offset doff.  Each call must return the index the scalar path returns,
 * the two paths must leave the same bits everywhere (both write whole
 * chunks of 512 up to the one holding the first bad element), and every
 * element written must have the bits of the one-value conversion (the
 * scalar definition).  A piece of at most 512 is one chunk, written whole:
 * then every pattern is checked.  0xa5a5a5a5 marks "unwritten": no FP16 or
 * BF16 widens to it (its low 13 bits are not zero).
 */
static void check_load_all(load_fn load, float (*one)(uint16_t), size_t soff, size_t doff,
                           size_t len)
{
    unsigned char *buf = malloc(2 * 65536 + 16);
    float *out = malloc((65536 + 16) * sizeof *out), *ref = malloc((65536 + 16) * sizeof *ref);
    assert_true(buf && out && ref);
    fill_patterns(buf, soff);
    memset(out, 0xa5, (65536 + 16) * sizeof *out);
    memset(ref, 0xa5, (65536 + 16) * sizeof *ref);
    for (size_t i = 0; i < 65536; i += len) {
        size_t m = 65536 - i < len ? 65536 - i : len;
        mbx_half_set_simd(0);
        size_t want = load(buf + soff + 2 * i, m, ref + doff + i);
        mbx_half_set_simd(1);
        size_t got = load(buf + soff + 2 * i, m, out + doff + i);
        if (got != want)
            fail_msg("load of [%zu, %zu) returned %zu, scalar %zu", i, i + m, got, want);
    }
    for (size_t k = 0; k < 65536 + 16; k++)
        if (bits_of(out[k]) != bits_of(ref[k]))
            fail_msg("len %zu, element %zu: SIMD 0x%08x, scalar 0x%08x", len, k,
                     bits_of(out[k]), bits_of(ref[k]));
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t g = bits_of(out[doff + h]), w = bits_of(one((uint16_t)h));
        if (g == 0xa5a5a5a5u && len > 512)
            continue; /* after a bad element, in a later chunk */
        if (g != w)
            fail_msg("len %zu, pattern 0x%04x: loaded 0x%08x, one-value 0x%08x", len, h, g, w);
    }
    /* Nothing written outside the destination. */
    for (size_t k = 0; k < doff; k++)
        assert_int_equal(bits_of(out[k]), 0xa5a5a5a5u);
    for (size_t k = doff + 65536; k < 65536 + 16; k++)
        assert_int_equal(bits_of(out[k]), 0xa5a5a5a5u);
    free(buf);
    free(out);
    free(ref);
}

/*
 * Every pattern widened by both paths, in pieces of many lengths: short
 * ones (all scalar tail, or one vector and a tail), lengths that are and
 * are not multiples of 8, a whole chunk (512) and more than one.
 */
static void test_simd_widen_all(void **state)
{
    (void)state;
    if (!mbx_half_simd_active())
        skip(); /* the scalar path alone: nothing to compare */
    static const size_t lens[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 512, 513, 1000, 65536};
    for (size_t l = 0; l < sizeof lens / sizeof *lens; l++)
        for (size_t soff = 0; soff < 2; soff++) {
            check_load_all(mbx_load_f16, mbx_f16_to_f32, soff, soff ? 3 : 0, lens[l]);
            check_load_all(mbx_load_bf16, mbx_bf16_to_f32, soff, soff ? 1 : 0, lens[l]);
        }
}

/*
 * The index of the first non-finite element, both paths, for a bad element
 * (infinity, a NaN) at every position of every length up to 40 and around
 * the chunk boundary at 512, from an odd address.
 */
static void test_simd_first_bad(void **state)
{
    (void)state;
    enum { MAXN = 1100 };
    unsigned char *buf = malloc(2 * MAXN + 1);
    float *out = malloc(MAXN * sizeof *out);
    assert_true(buf && out);
    static const uint16_t bad16[] = {0x7c00, 0xfc00, 0x7c01, 0xfe00, 0x7fff};
    static const uint16_t badb[] = {0x7f80, 0xff80, 0x7f81, 0xffc0, 0x7fff};
    for (int form = 0; form < 2; form++) {
        load_fn load = form ? mbx_load_bf16 : mbx_load_f16;
        const uint16_t *bad = form ? badb : bad16;
        for (size_t n = 0; n <= MAXN; n += n < 40 ? 1 : (n < 500 ? 460 : (n < 530 ? 1 : 570))) {
            for (size_t k = 0; k <= n; k++) {
                /* Finite values that exercise every exponent below the top one. */
                for (size_t i = 0; i < n; i++) {
                    uint16_t v = (uint16_t)((i * 2654435761u) >> 7) & (form ? 0xff7f : 0xfbff);
                    buf[1 + 2 * i] = (unsigned char)v;
                    buf[2 + 2 * i] = (unsigned char)(v >> 8);
                }
                if (k < n) {
                    uint16_t b = bad[k % 5];
                    buf[1 + 2 * k] = (unsigned char)b;
                    buf[2 + 2 * k] = (unsigned char)(b >> 8);
                }
                for (int simd = 0; simd < 2; simd++) {
                    mbx_half_set_simd(simd);
                    size_t got = load(buf + 1, n, out);
                    if (got != k)
                        fail_msg("%s, n %zu, bad at %zu, simd %d: returned %zu",
                                 form ? "BF16" : "FP16", n, k, simd, got);
                }
            }
        }
    }
    mbx_half_set_simd(1);
    free(buf);
    free(out);
}

/*
 * Every float32 pattern narrowed to FP16 and BF16 by the bulk stores, SIMD
 * against scalar, bit for bit (NaN payloads, signs, subnormals, ties,
 * overflow included), in pieces of 4093 (not a multiple of 8: scalar tails
 * too) to an odd address.
 */
static void test_simd_narrow_all(void **state)
{
    (void)state;
    if (!mbx_half_simd_active())
        skip();
    enum { PIECE = 4093 };
    float *src = malloc(PIECE * sizeof *src);
    unsigned char *a = malloc(2 * PIECE + 1), *b = malloc(2 * PIECE + 1);
    assert_true(src && a && b);
    for (uint64_t base = 0; base <= 0xffffffffu; base += PIECE) {
        size_t n = 0x100000000u - base < PIECE ? (size_t)(0x100000000u - base) : PIECE;
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)(base + i);
            memcpy(src + i, &u, 4);
        }
        for (int form = 0; form < 2; form++) {
            void (*store)(const float *, size_t, void *) = form ? mbx_store_bf16 : mbx_store_f16;
            mbx_half_set_simd(0);
            store(src, n, a + 1);
            mbx_half_set_simd(1);
            store(src, n, b + 1);
            if (memcmp(a + 1, b + 1, 2 * n) != 0)
                for (size_t i = 0; i < n; i++)
                    if (memcmp(a + 1 + 2 * i, b + 1 + 2 * i, 2) != 0)
                        fail_msg("%s of 0x%08x: SIMD 0x%02x%02x, scalar 0x%02x%02x",
                                 form ? "BF16" : "FP16", (unsigned)(base + i), b[2 + 2 * i],
                                 b[1 + 2 * i], a[2 + 2 * i], a[1 + 2 * i]);
        }
    }
    free(src);
    free(a);
    free(b);
}

static int use_simd(void **state)
{
    (void)state;
    mbx_half_set_simd(1);
    return 0;
}

static int use_scalar(void **state)
{
    (void)state;
    mbx_half_set_simd(0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_widen_all),     cmocka_unit_test(test_f16_round_trip_all),
        cmocka_unit_test(test_f16_narrow_stride), cmocka_unit_test(test_f16_narrow_midpoints),
        cmocka_unit_test(test_bf16),              cmocka_unit_test(test_bulk_loads),
        cmocka_unit_test(test_bulk_stores),
    };
    const struct CMUnitTest compare[] = {
        cmocka_unit_test(test_simd_widen_all),
        cmocka_unit_test(test_simd_first_bad),
        cmocka_unit_test(test_simd_narrow_all),
    };
    mbx_half_set_simd(1);
    print_message("SIMD paths (F16C/AVX2) %s\n",
                  mbx_half_simd_active() ? "in use" : "not available: scalar alone");
    int failed = cmocka_run_group_tests_name("default paths", tests, use_simd, NULL);
    failed += cmocka_run_group_tests_name("scalar paths", tests, use_scalar, NULL);
    failed += cmocka_run_group_tests_name("SIMD vs scalar", compare, use_simd, NULL);
    return failed;
}
