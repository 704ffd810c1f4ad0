/*
 * test_numfmt.c - the number formatters of src/codec/numfmt.c against the
 * C library: mbx_format_f32 must write exactly snprintf("%.9g") for every
 * float tried (every exponent, near powers of ten, near rounding ties,
 * subnormals, the extremes, and millions of random bit patterns) and read
 * back as the same float; mbx_format_f64 is "%.17g"; mbx_format_i64 is
 * "%lld".  MBX_NUMFMT_EXHAUSTIVE=1 in the environment checks all 2^32
 * patterns (minutes; run by hand).
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* Compares one float; returns 0 or fails the test. */
static void check_f32(float f)
{
    char mine[MBX_NUMBER_MAX + 1], ref[64];
    if (!isfinite(f))
        return;
    size_t n = mbx_format_f32(f, mine);
    assert_true(n < MBX_NUMBER_MAX);
    mine[n] = '\0';
    snprintf(ref, sizeof ref, "%.9g", (double)f);
    if (strcmp(mine, ref) != 0) {
        uint32_t bits;
        memcpy(&bits, &f, 4);
        fail_msg("0x%08" PRIx32 ": got \"%s\", snprintf gives \"%s\"", bits, mine, ref);
    }
    float back = strtof(mine, NULL);
    if (memcmp(&back, &f, 4) != 0 && !(back == 0 && f == 0))
        fail_msg("\"%s\" does not read back as the same float", mine);
}

static void check_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    check_f32(f);
}

static void test_special(void **state)
{
    (void)state;
    char out[MBX_NUMBER_MAX + 1];
    size_t n = mbx_format_f32(0.0f, out);
    assert_int_equal(n, 1);
    assert_memory_equal(out, "0", 1);
    n = mbx_format_f32(-0.0f, out);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "-0", 2);
    const float values[] = {1.0f,     -1.0f,    0.1f,     0.5f,    1e-5f,   1e-4f,   9.99999e-5f,
                            123456789.0f, 1e9f, 999999999.0f, 1e10f, FLT_MAX, -FLT_MAX, FLT_MIN,
                            FLT_TRUE_MIN, 3.40282347e38f, 1.17549435e-38f, 0.0125000002f,
                            0.112499997f, 100.0f, 1e8f, 12345.678f, 6.02214076e23f, 1e-38f,
                            1e-40f, 2.5f, 0.25f, 1e-30f, 1e30f, 7e-45f};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        check_f32(values[i]);
        check_f32(-values[i]);
    }
}

/* Every exponent: powers of two, their neighbours, and values near 10^k. */
static void test_every_exponent(void **state)
{
    (void)state;
    for (uint32_t e = 0; e < 255; e++) {
        for (uint32_t m = 0; m < 64; m++) {
            check_bits(e << 23 | m);
            check_bits(e << 23 | (0x7fffffu - m));
            check_bits(e << 23 | (0x400000u + m));
        }
    }
    for (int k = -45; k <= 38; k++) {
        float p = (float)pow(10.0, k);
        uint32_t bits;
        memcpy(&bits, &p, 4);
        for (int d = -3; d <= 3; d++)
            check_bits(bits + (uint32_t)d);
    }
}

static void test_random(void **state)
{
    (void)state;
    for (int i = 0; i < 3000000; i++)
        check_bits(next_u32());
    /* values of gradient magnitude, the common case */
    for (int i = 0; i < 1000000; i++) {
        float f = (float)((double)next_u32() / 4294967296.0 - 0.5) * 1e-3f;
        check_f32(f);
    }
}

static void test_exhaustive(void **state)
{
    (void)state;
    const char *e = getenv("MBX_NUMFMT_EXHAUSTIVE");
    if (!e || strcmp(e, "1") != 0) {
        skip();
        return;
    }
    for (uint64_t b = 0; b <= 0xffffffffu; b++)
        check_bits((uint32_t)b);
}

static void test_f64_i64(void **state)
{
    (void)state;
    char out[MBX_NUMBER_MAX + 1], ref[64];
    const double dv[] = {0.0, -0.0, 1.0, 32.12434240374928, 1e-300, 1e300, DBL_MAX, 0.1, 2.0 / 3};
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) {
        size_t n = mbx_format_f64(dv[i], out);
        out[n] = '\0';
        snprintf(ref, sizeof ref, "%.17g", dv[i]);
        assert_string_equal(out, ref);
        assert_true(strtod(out, NULL) == dv[i]);
    }
    const int64_t iv[] = {0, 1, -1, 9, 10, -10, 123456789, INT64_MAX, INT64_MIN, -8732};
    for (size_t i = 0; i < sizeof iv / sizeof iv[0]; i++) {
        size_t n = mbx_format_i64(iv[i], out);
        out[n] = '\0';
        snprintf(ref, sizeof ref, "%" PRId64, iv[i]);
        assert_string_equal(out, ref);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_special),
        cmocka_unit_test(test_every_exponent),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_exhaustive),
        cmocka_unit_test(test_f64_i64),
    };
    return cmocka_run_group_tests_name("codec numfmt", tests, NULL, NULL);
}
