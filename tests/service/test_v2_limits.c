/*
 * test_v2_limits.c - the /v2 inference endpoint at its limits, each with a
 * multiboxd of its own: 413 for a body over --max-body-bytes, for a
 * JSON-only body or a JSON header over --max-json-body-bytes, while binary
 * tensors beyond the JSON limit are fine; 503 overloaded with Retry-After
 * when the one worker is busy and the queue holds nothing; a big batch
 * (SSD300 priors by preset, B = 8) answered the same when split over 2
 * workers as on 1.  Every error has the /v2 body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "test_v2_util.h"

static void expect_v2_error(const v2_resp *r, long status, const char *code)
{
    if (r->status != status || strcmp(v2_error_code(r), code) != 0)
        fail_msg("expected %ld %s, got %ld %.300s", status, code, r->status, r->body);
    assert_string_equal(r->content_type, "application/json");
}

/* The server a test is running, so that a failed test's teardown stops it. */
static server *running;

static void start(server *s, const char *const *args)
{
    assert_int_equal(server_start(s, args, NULL, 0), 0);
    running = s;
}

static void stop(server *s)
{
    running = NULL;
    assert_int_equal(server_stop(s, SIGTERM, 60), 0);
}

static int stop_leftover(void **state)
{
    (void)state;
    if (running)
        server_stop(running, SIGKILL, 10);
    running = NULL;
    return 0;
}

static void test_body_limits(void **state)
{
    (void)state;
    static server s;
    static const char *const args[] = {"--workers", "1", "--max-body-bytes", "64KiB",
                                       "--max-json-body-bytes", "8KiB", NULL};
    start(&s, args);
    json_t *g = load_golden("tiny"); /* 192 anchors, 3 classes: ~9 KB of binary tensors */
    const json_t *request = json_object_get(g, "request");
    char url[128];
    snprintf(url, sizeof url, "%s", server_url(&s, V2_INFER));

    /* Binary tensors beyond the JSON limit, header under it: fine. */
    v2_form fb = {.binary_in = 1, .binary_out = 1};
    v2_built b;
    v2_build(request, &fb, &b);
    assert_true(b.header_len < 8192 && b.body.len > 8192 && b.body.len < 65536);
    v2_resp r;
    v2_post_built(url, &b, "application/octet-stream", &r);
    tu_response d;
    v2_decode(&r, &d, "binary under the limits");
    tu_response_free(&d);
    v2_resp_free(&r);

    /* The same data as JSON only: over the JSON limit. */
    v2_form fj = {0};
    v2_built bj;
    v2_build(request, &fj, &bj);
    assert_true(bj.body.len > 8192 && bj.body.len < 65536);
    v2_post_built(url, &bj, "application/json", &r);
    expect_v2_error(&r, 413, "payload_too_large");
    v2_resp_free(&r);
    /* ...also with a header length of 0, which means the same (the whole body is JSON). */
    v2_req q0 = {.url = url, .body = bj.body.data, .len = bj.body.len,
                 .content_type = "application/octet-stream", .header_len = 0};
    v2_do(&q0, &r);
    expect_v2_error(&r, 413, "payload_too_large");
    v2_resp_free(&r);
    /* ...also chunked (no Content-Length): the limit is enforced while reading. */
    v2_req q = {.url = url, .body = bj.body.data, .len = bj.body.len,
                .content_type = "application/json", .header_len = SIZE_MAX, .chunked = 1};
    v2_do(&q, &r);
    expect_v2_error(&r, 413, "payload_too_large");
    v2_resp_free(&r);

    /* A JSON header over the JSON limit, even inside a small enough body. */
    tu_bytes big = {0};
    tu_put(&big, b.body.data, b.header_len);
    for (int i = 0; i < 9000; i++)
        tu_put(&big, " ", 1);
    tu_put(&big, b.body.data + b.header_len, b.body.len - b.header_len);
    v2_req qh = {.url = url, .body = big.data, .len = big.len,
                 .content_type = "application/octet-stream", .header_len = b.header_len + 9000};
    v2_do(&qh, &r);
    expect_v2_error(&r, 413, "payload_too_large");
    v2_resp_free(&r);

    /* A body over the body limit. */
    tu_bytes huge = {0};
    tu_put(&huge, b.body.data, b.body.len);
    while (huge.len <= 65536)
        tu_put(&huge, b.body.data + b.header_len, b.body.len - b.header_len);
    v2_req qb = {.url = url, .body = huge.data, .len = huge.len,
                 .content_type = "application/octet-stream", .header_len = b.header_len};
    v2_do(&qb, &r);
    expect_v2_error(&r, 413, "payload_too_large");
    v2_resp_free(&r);

    /* Still serving. */
    v2_post_built(url, &b, NULL, &r);
    assert_int_equal(r.status, 200);
    v2_resp_free(&r);
    tu_free(&big);
    tu_free(&huge);
    tu_free(&b.body);
    tu_free(&bj.body);
    json_decref(g);
    stop(&s);
}

/* A big synthetic batch on the SSD300 preset: B images, A = 8732, C = 21. */
static void build_big(int B, v2_built *out)
{
    const int64_t A = 8732, C = 21;
    tu_bytes bin = {0};
    uint32_t seed = 12345;
    for (int64_t i = 0; i < (int64_t)B * A * (4 + C); i++) {
        seed = seed * 1664525u + 1013904223u;
        float v = (float)((double)(seed >> 8) / 16777216.0 - 0.5);
        tu_put(&bin, &v, 4);
    }
    int N = 0;
    for (int b = 0; b < B; b++)
        N += 1 + b % 5;
    for (int k = 0; k < N; k++) {
        float x = 0.05f + 0.013f * (float)(k % 50), y = 0.07f + 0.011f * (float)(k % 60);
        float box[4] = {x, y, x + 0.2f + 0.01f * (float)(k % 7), y + 0.25f};
        tu_put(&bin, box, sizeof box);
    }
    for (int k = 0; k < N; k++) {
        int32_t label = 1 + k % 20;
        tu_put(&bin, &label, 4);
    }
    for (int b = 0; b < B; b++) {
        int32_t count = 1 + b % 5;
        tu_put(&bin, &count, 4);
    }
    char header[2048];
    int n = snprintf(
        header, sizeof header,
        "{\"parameters\":{\"anchor_preset\":\"ssd300_voc\",\"binary_data_output\":true},"
        "\"inputs\":["
        "{\"name\":\"loc\",\"datatype\":\"FP32\",\"shape\":[%d,8732,4],"
        "\"parameters\":{\"binary_data_size\":%lld}},"
        "{\"name\":\"conf\",\"datatype\":\"FP32\",\"shape\":[%d,8732,21],"
        "\"parameters\":{\"binary_data_size\":%lld}},"
        "{\"name\":\"gt_boxes\",\"datatype\":\"FP32\",\"shape\":[%d,4],"
        "\"parameters\":{\"binary_data_size\":%d}},"
        "{\"name\":\"gt_labels\",\"datatype\":\"INT32\",\"shape\":[%d],"
        "\"parameters\":{\"binary_data_size\":%d}},"
        "{\"name\":\"gt_counts\",\"datatype\":\"INT32\",\"shape\":[%d],"
        "\"parameters\":{\"binary_data_size\":%d}}]}",
        B, (long long)B * A * 16, B, (long long)B * A * C * 4, N, N * 16, N, N * 4, B, B * 4);
    memset(out, 0, sizeof *out);
    out->binary = 1;
    out->header_len = (size_t)n;
    tu_put(&out->body, header, (size_t)n);
    /* loc then conf: the values were drawn in one run; split them. */
    tu_put(&out->body, bin.data, (size_t)B * (size_t)A * 16);
    tu_put(&out->body, bin.data + (size_t)B * (size_t)A * 16,
           (size_t)B * (size_t)A * (size_t)C * 4);
    tu_put(&out->body, bin.data + (size_t)B * (size_t)A * (4 + C) * 4,
           bin.len - (size_t)B * (size_t)A * (4 + C) * 4);
    tu_free(&bin);
}

typedef struct busy_arg {
    const char *url;
    const v2_built *big;
    atomic_int done;
    v2_resp r;
} busy_arg;

static void *post_big(void *p)
{
    busy_arg *a = p;
    v2_post_built(a->url, a->big, "application/octet-stream", &a->r);
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_overloaded(void **state)
{
    (void)state;
    static server s;
    static const char *const args[] = {"--workers", "1", "--queue-depth", "0", NULL};
    start(&s, args);
    char url[128];
    snprintf(url, sizeof url, "%s", server_url(&s, V2_INFER));
    v2_built big;
    build_big(16, &big);
    json_t *g = load_golden("tiny");
    v2_form f = {.binary_in = 1};
    v2_built small;
    v2_build(json_object_get(g, "request"), &f, &small);
    int got503 = 0;
    for (int attempt = 0; attempt < 5 && !got503; attempt++) {
        busy_arg a = {.url = url, .big = &big};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, post_big, &a), 0);
        while (!atomic_load(&a.done) && !got503) {
            v2_resp r;
            v2_post_built(url, &small, NULL, &r);
            if (r.status == 503) {
                expect_v2_error(&r, 503, "overloaded");
                assert_string_equal(r.retry_after, "1");
                got503 = 1;
            } else {
                assert_int_equal(r.status, 200);
            }
            v2_resp_free(&r);
        }
        pthread_join(t, NULL);
        /* The small request may win the race for the worker: then the big one is refused. */
        if (a.r.status == 503) {
            expect_v2_error(&a.r, 503, "overloaded");
            assert_string_equal(a.r.retry_after, "1");
            got503 = 1;
        } else {
            assert_int_equal(a.r.status, 200);
        }
        v2_resp_free(&a.r);
    }
    assert_true(got503);
    tu_free(&big.body);
    tu_free(&small.body);
    json_decref(g);
    stop(&s);
}

/* The batch split over 2 workers gives what 1 worker gives, bit for bit. */
static void test_split_equals_serial(void **state)
{
    (void)state;
    v2_built big;
    build_big(6, &big);
    tu_response d[2];
    for (int w = 0; w < 2; w++) {
        static server s;
        const char *args[] = {"--workers", w ? "2" : "1", NULL};
        start(&s, args);
        v2_resp r;
        v2_post_built(server_url(&s, V2_INFER), &big, "application/octet-stream", &r);
        v2_decode(&r, &d[w], w ? "2 workers" : "1 worker");
        v2_resp_free(&r);
        stop(&s);
    }
    assert_int_equal(d[0].num, 9);
    assert_true(tu_find(&d[0], "num_positives")->values[0] > 0);
    for (int i = 0; i < d[0].num; i++)
        v2_same_output(&d[1], &d[0], d[0].t[i].name, "split vs serial");
    tu_response_free(&d[0]);
    tu_response_free(&d[1]);
    tu_free(&big.body);
}

int main(int argc, char **argv)
{
    harness_init(argc, argv);
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_body_limits, stop_leftover),
        cmocka_unit_test_teardown(test_overloaded, stop_leftover),
        cmocka_unit_test_teardown(test_split_equals_serial, stop_leftover),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
