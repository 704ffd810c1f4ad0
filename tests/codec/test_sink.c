/*
 * test_sink.c - a /v1 body stored by mbx_body_scan_write, which decodes
 * long base64 strings as the body arrives (src/codec/lift_decode.c), must
 * parse exactly as the body itself: the same code and message, or the same
 * values bit for bit.  The body is written in chunks of random sizes (one
 * byte at a time for short bodies), then ended and parsed as the server
 * does (MBX_REQUEST_DEFER_INPUTS, loc and conf used in place when both were
 * decoded, their NaN and infinity then named through
 * mbx_request_input_check, loc before conf), against mbx_request_parse_json
 * on the original bytes:
 *   - every golden case in b64 form, and that loc and conf were in fact
 *     decoded (used in place) wherever their text is long enough;
 *   - every fault case of the deferred parse (th_fault_body);
 *   - strings broken at every interesting place: a bad character, '=' too
 *     early, too much or non-canonical padding, an escape, a length off a
 *     multiple of 4, the body ending inside the string, all at, before and
 *     after the point where decoding starts; padded strings that decode;
 *     a long string in an array and a long non-base64 value;
 *   - running out of memory while the strings are listed: every decoded
 *     string is given back as text and the parse scans again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "helpers.h"

static uint32_t rng = 777u;
static uint32_t next_rand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* The outcome of a parse as the split job sees it: code, message, values. */
typedef struct outcome {
    int rc;
    mbx_detail d;
    float *loc, *conf; /* whole tensors when rc == 0 */
    int64_t n_loc, n_conf;
    int in_place;      /* loc and conf were used where they were decoded */
} outcome;

static void outcome_free(outcome *o)
{
    free(o->loc);
    free(o->conf);
}

/* The first NaN or infinity in v[0..n), or -1. */
static int64_t first_bad(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return -1;
}

/* Values of input (whole) from a parsed request, deferred or not; sets rc on a fault. */
static float *input_values(const mbx_request *req, int input, int64_t *n, outcome *o)
{
    const int64_t B = req->batch.batch, A = req->batch.num_anchors;
    const int64_t w = input == 0 ? 4 : req->batch.num_classes;
    *n = B * A * w;
    float *v = malloc((size_t)*n * sizeof *v + 1);
    const float *place = mbx_request_input_in_place(req, input);
    const float *plain = input == 0 ? req->batch.loc : req->batch.conf;
    if (place || plain) {
        memcpy(v, place ? place : plain, (size_t)*n * sizeof *v);
        return v;
    }
    for (int64_t i = 0; i < B; i++)
        if (mbx_request_load_input(req, input, i, NULL, 0, v + i * A * w) >= 0) {
            o->rc = mbx_request_input_fail(req, input, &o->d);
            break;
        }
    return v;
}

/* The plain parse of body. */
static outcome plain_outcome(const char *body, size_t len)
{
    outcome o = {0};
    mbx_request *req = NULL;
    o.rc = mbx_request_parse_json(body, len, &req, &o.d);
    if (o.rc == 0) {
        o.loc = input_values(req, 0, &o.n_loc, &o);
        o.conf = input_values(req, 1, &o.n_conf, &o);
    }
    mbx_request_free(req);
    return o;
}

/*
 * body written through a scan in chunks of at most max_chunk bytes (random
 * sizes; 1: a byte at a time), ended, and parsed as the server parses it.
 * *decoded gets how many strings the scan decoded.
 */
static outcome written_outcome(const char *body, size_t len, size_t max_chunk, size_t *decoded)
{
    outcome o = {0};
    char *buf = malloc(len + 1);
    mbx_body_scan *scan = mbx_body_scan_new();
    assert_non_null(scan);
    for (size_t at = 0; at < len;) {
        size_t n = max_chunk <= 1 ? 1 : 1 + next_rand() % max_chunk;
        if (n > len - at)
            n = len - at;
        mbx_body_scan_write(scan, buf, body + at, n);
        at += n;
    }
    mbx_body_scan_end(scan, buf);
    *decoded = 0;
    for (size_t k = 0; !scan->failed && k < scan->lift.count; k++)
        *decoded += scan->lift.items[k].decoded;
    mbx_request *req = NULL;
    o.rc = mbx_request_parse_json_scanned(buf, len, MBX_REQUEST_DEFER_INPUTS, scan, &req, &o.d);
    mbx_body_scan_free(scan);
    if (o.rc == 0) {
        o.in_place = mbx_request_input_in_place(req, 0) && mbx_request_input_in_place(req, 1);
        o.loc = input_values(req, 0, &o.n_loc, &o);
        if (o.rc == 0)
            o.conf = input_values(req, 1, &o.n_conf, &o);
        /* In place, the core finds a NaN or infinity: the parse's error, loc before conf. */
        if (o.rc == 0 && o.in_place &&
            (first_bad(o.loc, o.n_loc) >= 0 || first_bad(o.conf, o.n_conf) >= 0)) {
            o.rc = mbx_request_input_check(req, 0, &o.d);
            if (o.rc == 0)
                o.rc = mbx_request_input_check(req, 1, &o.d);
            assert_int_not_equal(o.rc, 0);
        }
        if (o.rc != 0) {
            free(o.loc);
            free(o.conf);
            o.loc = o.conf = NULL;
        }
    }
    mbx_request_free(req);
    free(buf);
    return o;
}

/* The written parse of body, in several chunkings, must be the plain one. */
static void check_body(const char *body, size_t len, const char *what, size_t *decoded)
{
    outcome want = plain_outcome(body, len);
    static const size_t chunks[] = {1, 7, 300, 5000, (size_t)-1};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        if (chunks[c] == 1 && len > 20000)
            continue;
        size_t dec = 0;
        outcome got = written_outcome(body, len, chunks[c] == (size_t)-1 ? len : chunks[c], &dec);
        if (decoded)
            *decoded = dec;
        if (got.rc != want.rc || strcmp(got.d.message, want.d.message) != 0)
            fail_msg("%s (chunks %zu): plain %s \"%s\", written %s \"%s\"", what, chunks[c],
                     mbx_error_name(want.rc), want.d.message, mbx_error_name(got.rc),
                     got.d.message);
        if (want.rc == 0) {
            assert_int_equal(got.n_loc, want.n_loc);
            assert_int_equal(got.n_conf, want.n_conf);
            if (memcmp(got.loc, want.loc, (size_t)want.n_loc * 4) != 0 ||
                memcmp(got.conf, want.conf, (size_t)want.n_conf * 4) != 0)
                fail_msg("%s (chunks %zu): values differ", what, chunks[c]);
        }
        outcome_free(&got);
    }
    outcome_free(&want);
}

static void test_golden_bodies(void **state)
{
    (void)state;
    char **names = th_golden_case_names();
    assert_non_null(names);
    int n = 0, long_ones = 0;
    for (char **p = names; *p; p++, n++) {
        char *body = th_golden_b64_body(*p);
        const size_t len = strlen(body);
        size_t decoded = 0;
        check_body(body, len, *p, &decoded);
        /* loc's and conf's texts of 256 characters or more are decoded as they come. */
        mbx_request *req = NULL;
        mbx_detail d = {0, ""};
        assert_int_equal(mbx_request_parse_json(body, len, &req, &d), 0);
        const int64_t BA = req->batch.batch * req->batch.num_anchors;
        const int long_loc = BA * 16 / 3 * 4 >= 256;
        const int long_conf = BA * req->batch.num_classes * 4 / 3 * 4 >= 256;
        size_t dec = 0;
        outcome o = written_outcome(body, len, 4096, &dec);
        assert_int_equal(o.rc, 0);
        if (long_loc && long_conf) {
            long_ones++;
            if (!o.in_place || dec < 2)
                fail_msg("%s: loc and conf not decoded as they came (%zu strings)", *p, dec);
        }
        outcome_free(&o);
        mbx_request_free(req);
        free(body);
    }
    assert_true(n >= 20);
    assert_true(long_ones >= 10);
    th_free_list(names);
}

static void test_fault_bodies(void **state)
{
    (void)state;
    const char *what;
    char *body;
    for (size_t k = 0; (body = th_fault_body(k, &what)); k++) {
        check_body(body, strlen(body), what, NULL);
        free(body);
    }
}

/*
 * A small valid request whose loc (1 x A x 4, float32) text is the given
 * one; conf (C = 2) and the anchors are short enough to stay plain.
 * Returns the body (malloc'ed).
 */
static char *small_body(int64_t A, const char *loc_text, const char *extra)
{
    const size_t n = strlen(loc_text) + 4096 + (size_t)A * 64;
    char *body = malloc(n);
    size_t at = (size_t)snprintf(body, n, "{\"anchors\":[");
    for (int64_t a = 0; a < A; a++)
        at += (size_t)snprintf(body + at, n - at, "%s[%.3f,0.1,%.3f,0.4]", a ? "," : "",
                               0.01 * (double)a, 0.05 + 0.01 * (double)a);
    at += (size_t)snprintf(body + at, n - at,
                           "],\"loc\":{\"shape\":[1,%lld,4],\"dtype\":\"float32\",\"b64\":\"%s\"},"
                           "\"conf\":[[",
                           (long long)A, loc_text);
    for (int64_t a = 0; a < A; a++)
        at += (size_t)snprintf(body + at, n - at, "%s[%.2f,%.2f]", a ? "," : "",
                               0.1 * (double)(a % 5), -0.2);
    snprintf(body + at, n - at,
             "]],\"targets\":[{\"boxes\":[[0.1,0.1,0.2,0.4]],\"labels\":[1]}]%s}",
             extra ? extra : "");
    return body;
}

/* The b64 text of A x 4 float32 values that differ from each other. */
static char *loc_text_of(int64_t A)
{
    float *v = malloc((size_t)A * 16);
    for (int64_t i = 0; i < A * 4; i++)
        v[i] = (float)((int)(next_rand() % 2001) - 1000) / 337.0f;
    char *t = th_b64_encode((const unsigned char *)v, (size_t)A * 16);
    free(v);
    return t;
}

/* body with the character at text offset at of loc's text replaced by s. */
static char *with_edit(int64_t A, const char *text, size_t at, const char *s, size_t drop)
{
    const size_t len = strlen(text);
    char *t = malloc(len + strlen(s) + 1);
    memcpy(t, text, at);
    strcpy(t + at, s);
    strcat(t, text + (at + drop <= len ? at + drop : len));
    char *body = small_body(A, t, NULL);
    free(t);
    return body;
}

static void test_broken_strings(void **state)
{
    (void)state;
    /* 12 anchors: 256 characters exactly; 13: 280 ending "=="; 14: 300 ending "=";
     * 40: 856; 11: 236, too short to be decoded. */
    static const int64_t anchors[] = {12, 13, 14, 40, 11};
    for (size_t ai = 0; ai < sizeof anchors / sizeof anchors[0]; ai++) {
        const int64_t A = anchors[ai];
        char *text = loc_text_of(A);
        const size_t len = strlen(text);
        char what[128];
        size_t decoded = 0;
        char *body = small_body(A, text, NULL);
        snprintf(what, sizeof what, "A %lld, intact", (long long)A);
        check_body(body, strlen(body), what, &decoded);
        assert_int_equal(decoded, len >= 256 ? 1 : 0);
        free(body);
        /* Edits at the start, around where decoding starts, and at the end. */
        const size_t places[] = {0, 3, 100, 252, 255, 256, 257, 259, 260, len / 2, len - 5,
                                 len - 4, len - 3, len - 2, len - 1};
        static const struct {
            const char *s;
            size_t drop;
        } edits[] = {
            {"*", 1},  {"=", 1},   {"==", 2},   {"\\/", 1}, {"\\u0041", 1}, {" ", 1},
            {"", 1},   {"A", 0},   {"AB", 0},   {"\"", 1},  {"=A", 2},      {"\\n", 1},
            {"====", 4}, {"Zm9=", 4}, {"Zm8=", 4}, {"Zg==", 4}, {"Zh==", 4}, {"AAA", 3},
        };
        for (size_t pi = 0; pi < sizeof places / sizeof places[0]; pi++)
            for (size_t ei = 0; ei < sizeof edits / sizeof edits[0]; ei++) {
                if (places[pi] >= len)
                    continue;
                body = with_edit(A, text, places[pi], edits[ei].s, edits[ei].drop);
                snprintf(what, sizeof what, "A %lld, \"%s\" for %zu at %zu", (long long)A,
                         edits[ei].s, edits[ei].drop, places[pi]);
                check_body(body, strlen(body), what, NULL);
                free(body);
            }
        /* The body ends inside the string, or right after it. */
        body = small_body(A, text, NULL);
        const char *open = strstr(body, "\"b64\":\"") + 7;
        const size_t cut_at[] = {0, 100, 256, 257, len - 1, len, len + 1, len + 2};
        for (size_t ci = 0; ci < sizeof cut_at / sizeof cut_at[0]; ci++) {
            const size_t cut = (size_t)(open - body) + cut_at[ci];
            snprintf(what, sizeof what, "A %lld, body cut %zu into loc", (long long)A,
                     cut_at[ci]);
            check_body(body, cut, what, NULL);
        }
        free(body);
        /* The same text where no value is: in an array, as a key, and a long plain value. */
        char extra[4096];
        snprintf(extra, sizeof extra, ",\"x\":[\"%s\"]", text);
        body = small_body(A, text, extra);
        check_body(body, strlen(body), "a long string in an array", NULL);
        free(body);
        snprintf(extra, sizeof extra, ",\"%s\":1", text);
        body = small_body(A, text, extra);
        check_body(body, strlen(body), "a long key", NULL);
        free(body);
        free(text);
    }
    char words[1200];
    memset(words, 'w', sizeof words - 1);
    words[sizeof words - 1] = '\0';
    for (size_t k = 0; k < sizeof words - 1; k += 7)
        words[k] = ' ';
    char *body = small_body(12, words, NULL);
    check_body(body, strlen(body), "a long value that is not base64", NULL);
    free(body);
}

/* ------------------------------------------------------- out of memory */

static int reallocs_left = -1; /* -1: no limit */

static void *failing_realloc(void *p, size_t n)
{
    if (reallocs_left == 0)
        return NULL;
    if (reallocs_left > 0)
        reallocs_left--;
    return realloc(p, n);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    /* A golden body with ten more long b64 values (an unknown field: the parse says so). */
    char *golden = th_golden_b64_body("ssd300_voc_b2.json");
    char *text = loc_text_of(20);
    const size_t n = strlen(golden) + 11 * (strlen(text) + 16);
    char *body = malloc(n);
    size_t at = (size_t)snprintf(body, n, "{\"extra\":{");
    for (int k = 0; k < 10; k++)
        at += (size_t)snprintf(body + at, n - at, "%s\"k%d\":\"%s\"", k ? "," : "", k, text);
    snprintf(body + at, n - at, "},%s", golden + 1);
    const size_t len = strlen(body);
    outcome want = plain_outcome(body, len);
    assert_int_not_equal(want.rc, 0);
    /* The strings' table grows by realloc (8, then 16 items): fail the first, then the second. */
    for (int left = 0; left < 2; left++) {
        char *buf = malloc(len + 1);
        mbx_body_scan *scan = mbx_body_scan_new();
        reallocs_left = left;
        mbx_codec_set_alloc_funcs(NULL, NULL, failing_realloc, NULL);
        for (size_t done = 0; done < len; done += 4093)
            mbx_body_scan_write(scan, buf, body + done, len - done < 4093 ? len - done : 4093);
        mbx_codec_set_alloc_funcs(NULL, NULL, NULL, NULL);
        reallocs_left = -1;
        mbx_body_scan_end(scan, buf);
        assert_true(scan->failed);
        /* Every string was given back: the body is the original again. */
        assert_memory_equal(buf, body, len);
        mbx_request *req = NULL;
        mbx_detail d = {0, ""};
        const int rc =
            mbx_request_parse_json_scanned(buf, len, MBX_REQUEST_DEFER_INPUTS, scan, &req, &d);
        assert_int_equal(rc, want.rc);
        assert_string_equal(d.message, want.d.message);
        mbx_body_scan_free(scan);
        free(buf);
    }
    outcome_free(&want);
    free(body);
    free(text);
    free(golden);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bodies),
        cmocka_unit_test(test_fault_bodies),
        cmocka_unit_test(test_broken_strings),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests_name("codec sink", tests, NULL, NULL);
}
