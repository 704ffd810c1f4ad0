/*
 * test_base64.c - the strict base64 decoder and the encoder of
 * src/codec/base64.c: RFC 4648's test vectors, round trips of every length
 * against the test's own encoder, every rejection (length, alphabet,
 * misplaced or excess padding, non-zero padding bits, whitespace, NUL and
 * high bytes, the URL alphabet, output capacity), and the picohttpparser
 * trick: input placed right before a PROT_NONE page, and output buffers
 * ending right before one, so any over-read or over-write crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

/* ---------------------------------------------------------- guard pages */

typedef struct guarded {
    unsigned char *base;
    size_t page;
} guarded;

/* Two pages, the second unreadable; returns the first byte of the guard page. */
static unsigned char *guard_new(guarded *g)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    g->base = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->base != MAP_FAILED);
    assert_int_equal(mprotect(g->base + g->page, g->page, PROT_NONE), 0);
    return g->base + g->page;
}

static void guard_free(guarded *g)
{
    munmap(g->base, 2 * g->page);
}

/* Copies s (n bytes) so that it ends exactly at the guard page. */
static const char *place_before_guard(guarded *g, const char *s, size_t n)
{
    unsigned char *end = g->base + g->page;
    assert_true(n <= g->page);
    memcpy(end - n, s, n);
    return (const char *)(end - n);
}

/* ------------------------------------------------------------- vectors */

static const struct {
    const char *plain, *encoded;
} rfc4648[] = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    guarded g, gout;
    guard_new(&g);
    unsigned char *out_end = guard_new(&gout);
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        const char *plain = rfc4648[i].plain, *enc = rfc4648[i].encoded;
        size_t pn = strlen(plain), en = strlen(enc);
        char out[16];
        assert_int_equal(mbx_base64_encoded_size(pn), en);
        mbx_base64_encode(plain, pn, out);
        assert_memory_equal(out, enc, en);

        size_t size = 99;
        const char *in = place_before_guard(&g, enc, en);
        assert_int_equal(mbx_base64_decoded_size(in, en, &size, NULL), 0);
        assert_int_equal(size, pn);
        /* Output ends at the guard page too: exact capacity. */
        unsigned char *dst = out_end - pn;
        size_t written = 99;
        assert_int_equal(mbx_base64_decode(in, en, dst, pn, &written, NULL), 0);
        assert_int_equal(written, pn);
        assert_memory_equal(dst, plain, pn);
    }
    guard_free(&g);
    guard_free(&gout);
}

/* Every length 0..600, random bytes: encoder == test encoder, decode round-trips. */
static void test_round_trip_lengths(void **state)
{
    (void)state;
    guarded gin, gout;
    guard_new(&gin);
    unsigned char *out_end = guard_new(&gout);
    srand(12345);
    for (size_t n = 0; n <= 600; n++) {
        unsigned char src[600];
        for (size_t i = 0; i < n; i++)
            src[i] = (unsigned char)rand();
        char *ref = th_b64_encode(src, n);
        size_t en = strlen(ref);
        char *mine = malloc(en + 1);
        mbx_base64_encode(src, n, mine);
        assert_memory_equal(mine, ref, en);
        const char *in = place_before_guard(&gin, ref, en);
        unsigned char *dst = out_end - n;
        size_t written = 0;
        mbx_detail d = {0, ""};
        int rc = mbx_base64_decode(in, en, dst, n, &written, &d);
        if (rc)
            fail_msg("length %zu: %s", n, d.message);
        assert_int_equal(written, n);
        assert_memory_equal(dst, src, n);
        free(mine);
        free(ref);
    }
    guard_free(&gin);
    guard_free(&gout);
}

/* Decoding must fail with MBX_E_BAD_BASE64 and a message containing want. */
static void expect_bad(const char *in, size_t len, const char *want)
{
    guarded g;
    unsigned char out[64];
    mbx_detail d = {0, ""};
    guard_new(&g);
    const char *placed = place_before_guard(&g, in, len);
    int rc = mbx_base64_decode(placed, len, out, sizeof out, NULL, &d);
    guard_free(&g);
    if (rc != MBX_E_BAD_BASE64)
        fail_msg("\"%.*s\": got %d, expected bad_base64", (int)len, in, rc);
    assert_int_equal(d.code, MBX_E_BAD_BASE64);
    if (!strstr(d.message, want))
        fail_msg("\"%.*s\": message \"%s\" lacks \"%s\"", (int)len, in, d.message, want);
}

static void test_rejects(void **state)
{
    (void)state;
    expect_bad("Zg=", 3, "not a multiple of 4");
    expect_bad("Zm9vY", 5, "not a multiple of 4");
    expect_bad("Z===", 4, "too much '=' padding at offset 1");
    expect_bad("====", 4, "too much '=' padding");
    expect_bad("Zg==Zm8=", 8, "misplaced '=' padding at offset 2");
    expect_bad("Z=g=", 4, "misplaced '=' padding at offset 1");
    expect_bad("Zm9*", 4, "invalid character '*' at offset 3");
    expect_bad("Zm9v YmFy", 9, "not a multiple of 4");
    expect_bad("Zm9vYm y", 8, "invalid character ' ' at offset 6");
    expect_bad("Zm9\nYmFy", 8, "invalid byte 0x0a at offset 3");
    expect_bad("Zm9v\0mFy", 8, "invalid byte 0x00 at offset 4");
    expect_bad("Zm9v\xc3\xa9" "Fy", 8, "invalid byte 0xc3 at offset 4");
    expect_bad("Zm9-", 4, "invalid character '-'");
    expect_bad("Zm9_", 4, "invalid character '_'");
    expect_bad("Zh==", 4, "non-zero padding bits");  /* 'h' leaves bits set */
    expect_bad("Zm9=", 4, "non-zero padding bits");  /* '9' leaves bits set */
    expect_bad("*g==", 4, "invalid character '*' at offset 0");
    expect_bad("Z*==", 4, "invalid character '*' at offset 1");
    expect_bad("Zm*=", 4, "invalid character '*' at offset 2");
}

static void test_capacity(void **state)
{
    (void)state;
    unsigned char *out_end;
    guarded g;
    out_end = guard_new(&g);
    mbx_detail d = {0, ""};
    /* "foobar" needs 6 bytes: a capacity of 5 is refused before any write. */
    assert_int_equal(mbx_base64_decode("Zm9vYmFy", 8, out_end - 5, 5, NULL, &d),
                     MBX_E_BAD_BASE64);
    assert_non_null(strstr(d.message, "decodes to 6 bytes"));
    /* Empty input decodes to nothing, even with a zero capacity. */
    size_t w = 7;
    assert_int_equal(mbx_base64_decode("", 0, out_end, 0, &w, NULL), 0);
    assert_int_equal(w, 0);
    guard_free(&g);
}

/* Large input: a float tensor's worth, decoded at the guard page. */
static void test_large(void **state)
{
    (void)state;
    size_t n = 3 * 40000 + 2;
    unsigned char *src = malloc(n);
    for (size_t i = 0; i < n; i++)
        src[i] = (unsigned char)(i * 131 + 7);
    char *enc = malloc(mbx_base64_encoded_size(n));
    mbx_base64_encode(src, n, enc);
    size_t en = mbx_base64_encoded_size(n);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (en + page - 1) / page * page;
    unsigned char *m = mmap(NULL, span + page, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + span, page, PROT_NONE), 0);
    memcpy(m + span - en, enc, en);
    unsigned char *dst = malloc(n);
    size_t w = 0;
    assert_int_equal(mbx_base64_decode((const char *)m + span - en, en, dst, n, &w, NULL), 0);
    assert_int_equal(w, n);
    assert_memory_equal(dst, src, n);
    munmap(m, span + page);
    free(dst);
    free(enc);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_round_trip_lengths),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests_name("codec base64", tests, NULL, NULL);
}
