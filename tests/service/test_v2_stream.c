/*
 * test_v2_stream.c - binary inference requests whose loss starts while the
 * body still arrives (inputs ordered anchors, gt_*, loc, conf), through the
 * real multiboxd, with a raw-socket client that sends the body in paced
 * pieces so the job really waits for images between them:
 *   - paced uploads give exactly the answer of the same request sent at
 *     once in the usual order, and are counted as streamed;
 *   - an upload stalled half-way holds no worker: with --workers 1, other
 *     requests are answered while it waits, and it is answered once it ends;
 *   - clients that go away at any point of the upload leave nothing
 *     behind (in-flight back to 0, next requests fine; the sanitizer builds
 *     check for leaks when the server exits);
 *   - errors found while the body still arrives (a label out of range in
 *     the targets, NaN in the first image's conf) and framing errors give
 *     the status and message of the same request in the usual order;
 *   - --stream-upload: by default (auto) a client on this host, as this
 *     test's, is not streamed, nor any with never; the answers are the same.
 * Binary answers are decoded by test_oip_util.c's decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test_v2_util.h"

static server srv;
static int teardown_failed;

static int setup(void **state)
{
    (void)state;
    /*
     * One worker: a stalled upload that held it would block every other
     * request.  Streaming always: this client is local (test_stream_policy).
     */
    static const char *const args[] = {"--workers", "1", "--stream-upload", "always", NULL};
    return server_start(&srv, args, NULL, 0);
}

static int teardown(void **state)
{
    (void)state;
    return server_stop_shared(&srv, 60, &teardown_failed);
}

static const char *url(const char *path)
{
    return server_url(&srv, path);
}

/* A metric's value from /metrics (a sample without labels), or -1. */
static double metric(const char *name)
{
    http_resp r;
    http_get(url("/metrics"), &r);
    assert_int_equal(r.status, 200);
    const double v = metric_value(r.body, name);
    http_resp_free(&r);
    return v;
}

/* ------------------------------------------------------ raw-socket client */

static int connect_server(void)
{
    int fd = server_connect(&srv);
    assert_true(fd >= 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

/* The request line and headers of b as a binary inference request. */
static void send_head(int fd, const v2_built *b)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/octet-stream\r\n"
                     "Inference-Header-Content-Length: %zu\r\nContent-Length: %zu\r\n\r\n",
                     V2_INFER, b->header_len, b->body.len);
    send_all(fd, head, (size_t)n);
}

/* Reads one answer (Content-Length framed) into *r, as v2_do would fill it. */
static void read_answer(int fd, v2_resp *r)
{
    memset(r, 0, sizeof *r);
    r->header_len = SIZE_MAX;
    size_t cap = 1 << 16, got = 0, hend = 0, want = SIZE_MAX;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    while (!hend || got < want) {
        if (got == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("connection closed after %zu bytes of the answer", got);
        got += (size_t)n;
        buf[got] = '\0';
        char *e;
        if (!hend && (e = strstr(buf, "\r\n\r\n")) != NULL) {
            hend = (size_t)(e - buf) + 4;
            r->status = strtol(buf + 9, NULL, 10);
            for (char *line = strstr(buf, "\r\n") + 2; line < e; line = strstr(line, "\r\n") + 2) {
                if (strncasecmp(line, "Content-Length:", 15) == 0)
                    want = hend + strtoull(line + 15, NULL, 10);
                else if (strncasecmp(line, "Inference-Header-Content-Length:", 32) == 0)
                    r->header_len = strtoull(line + 32, NULL, 10);
                else if (strncasecmp(line, "Content-Type:", 13) == 0)
                    http_header_value(r->content_type, sizeof r->content_type, line + 13,
                                      (size_t)(strstr(line, "\r\n") - line) - 13);
            }
            assert_true(want != SIZE_MAX);
        }
    }
    r->len = want - hend;
    r->body = malloc(r->len + 1);
    assert_non_null(r->body);
    memcpy(r->body, buf + hend, r->len);
    r->body[r->len] = '\0';
    free(buf);
}

/*
 * Sends b in pieces: the header and every input but loc and conf, then loc,
 * then conf image by image, pausing pause_ms after each piece; stops after
 * images_sent images of conf when that is below B (the caller goes on with
 * send_rest).  Returns the offset reached.
 */
static size_t send_paced(int fd, const v2_built *b, int64_t B, int64_t images_sent, int pause_ms)
{
    size_t loc_size, conf_size;
    const size_t loc = v2_input_offset(b, "loc", &loc_size);
    const size_t conf = v2_input_offset(b, "conf", &conf_size);
    assert_true(loc < conf && conf + conf_size == b->body.len); /* the targets-first order */
    send_head(fd, b);
    send_all(fd, b->body.data, loc);
    sleep_ms(pause_ms);
    send_all(fd, b->body.data + loc, conf - loc);
    sleep_ms(pause_ms);
    const size_t per_image = conf_size / (size_t)B;
    size_t off = conf;
    for (int64_t i = 0; i < B && i < images_sent; i++) {
        /* Each image in two pieces: the job must wait for the second. */
        send_all(fd, b->body.data + off, per_image / 2);
        sleep_ms(pause_ms);
        send_all(fd, b->body.data + off + per_image / 2, per_image - per_image / 2);
        off += per_image;
        sleep_ms(pause_ms);
    }
    return off;
}

static void send_rest(int fd, const v2_built *b, size_t from)
{
    send_all(fd, b->body.data + from, b->body.len - from);
}

/* ------------------------------------------------------------ the cases */

typedef struct stream_case {
    json_t *golden;
    v2_built usual; /* loc, conf, anchors, gt_*: read whole, then computed */
    v2_built first; /* anchors, gt_*, loc, conf: streamed */
    v2_resp answer; /* the usual order's answer (200), to compare with */
    int64_t B;
} stream_case;

static void case_load(stream_case *c, const char *name)
{
    c->golden = load_golden(name);
    const json_t *request = json_object_get(c->golden, "request");
    v2_form f = {.binary_in = 1, .binary_out = 1, .all_outputs = 1};
    v2_build(request, &f, &c->usual);
    f.targets_first = 1;
    v2_build(request, &f, &c->first);
    c->B = (int64_t)json_array_size(json_object_get(request, "targets"));
    assert_true(c->B >= 2);
    v2_post_built(url(V2_INFER), &c->usual, "application/octet-stream", &c->answer);
    if (c->answer.status != 200)
        fail_msg("%s in the usual order: %ld %.300s", name, c->answer.status, c->answer.body);
}

static void case_free(stream_case *c)
{
    tu_free(&c->usual.body);
    tu_free(&c->first.body);
    v2_resp_free(&c->answer);
    json_decref(c->golden);
}

/* Every output of a equals b's, bit for bit. */
static void same_answer(const v2_resp *a, const v2_resp *b, const char *label)
{
    tu_response da, db;
    v2_decode(a, &da, label);
    v2_decode(b, &db, label);
    assert_int_equal(da.num, V2_NUM_OUTPUTS);
    for (int i = 0; i < V2_NUM_OUTPUTS; i++)
        v2_same_output(&da, &db, v2_every_output[i], label);
    tu_response_free(&da);
    tu_response_free(&db);
}

/* c's targets-first body sent image by image with pause_ms between: the usual order's answer. */
static void paced_same_answer(const stream_case *c, int pause_ms, const char *label)
{
    int fd = connect_server();
    send_paced(fd, &c->first, c->B, c->B, pause_ms);
    v2_resp r;
    read_answer(fd, &r);
    close(fd);
    if (r.status != 200)
        fail_msg("%s: %ld %.300s", label, r.status, r.body);
    same_answer(&r, &c->answer, label);
    v2_resp_free(&r);
}

/* Paced uploads of the two-image SSD300 case, with short and long pauses. */
static void test_paced_upload(void **state)
{
    (void)state;
    stream_case c;
    case_load(&c, "ssd300_voc_b2");
    const double streamed0 = metric("multibox_streamed_requests_total");
    assert_true(streamed0 >= 0);
    /* The usual order is not streamed: the last image's bytes end the body. */
    v2_resp again;
    v2_post_built(url(V2_INFER), &c.usual, "application/octet-stream", &again);
    assert_true(metric("multibox_streamed_requests_total") == streamed0);
    v2_resp_free(&again);

    static const int pauses[] = {1, 30, 150};
    for (size_t k = 0; k < sizeof pauses / sizeof pauses[0]; k++) {
        char label[64];
        snprintf(label, sizeof label, "paced, %d ms pauses", pauses[k]);
        paced_same_answer(&c, pauses[k], label);
        assert_true(metric("multibox_streamed_requests_total") == streamed0 + (double)(k + 1));
    }
    case_free(&c);
}

/* An upload stalled after its first image keeps no other request waiting. */
static void test_stall_holds_no_worker(void **state)
{
    (void)state;
    stream_case c, tiny;
    case_load(&c, "ssd300_voc_b2");
    case_load(&tiny, "batch_with_empty_image");

    int fd = connect_server();
    const size_t off = send_paced(fd, &c.first, c.B, 1, 20);
    sleep_ms(100); /* the job has matched image 0 and waits for image 1 */
    const double t0 = now_s();
    for (int i = 0; i < 3; i++) { /* the one worker is free for these */
        v2_resp r;
        v2_req q = {.url = url(V2_INFER),
                    .body = tiny.usual.body.data,
                    .len = tiny.usual.body.len,
                    .content_type = "application/octet-stream",
                    .header_len = tiny.usual.header_len,
                    .timeout_ms = 10000};
        v2_do(&q, &r);
        if (r.status != 200)
            fail_msg("request %d during the stall: %ld %.300s %s", i, r.status, r.body,
                     r.curl_error);
        same_answer(&r, &tiny.answer, "during the stall");
        v2_resp_free(&r);
    }
    assert_true(now_s() - t0 < 20.0);
    send_rest(fd, &c.first, off);
    v2_resp r;
    read_answer(fd, &r);
    close(fd);
    assert_int_equal(r.status, 200);
    same_answer(&r, &c.answer, "after the stall");
    v2_resp_free(&r);
    case_free(&c);
    case_free(&tiny);
}

/* Waits up to 10 s for the in-flight gauge to fall to 1: the /metrics request
 * reading it. */
static void wait_idle(const char *label)
{
    for (int i = 0; i < 1000; i++) {
        if (metric("multibox_requests_in_flight") <= 1)
            return;
        sleep_ms(10);
    }
    fail_msg("%s: requests stay in flight", label);
}

/* Clients that go away at every stage of a streamed upload. */
static void test_abandoned_uploads(void **state)
{
    (void)state;
    stream_case c;
    case_load(&c, "ssd300_voc_b2");
    size_t loc_size;
    const size_t loc = v2_input_offset(&c.first, "loc", &loc_size);
    size_t conf_size;
    const size_t conf = v2_input_offset(&c.first, "conf", &conf_size);
    const size_t stops[] = {c.first.header_len / 2,   /* header incomplete: nothing started */
                            loc - 1,                  /* one byte short of the start */
                            loc + loc_size / 2,       /* started, no image in */
                            conf + conf_size / 2 + 7, /* image 0 matched, image 1 partial */
                            c.first.body.len - 1};    /* one byte short of the end */
    for (size_t k = 0; k < sizeof stops / sizeof stops[0]; k++) {
        char label[64];
        snprintf(label, sizeof label, "abandoned after %zu of %zu bytes", stops[k],
                 c.first.body.len);
        int fd = connect_server();
        send_head(fd, &c.first);
        send_all(fd, c.first.body.data, stops[k]);
        sleep_ms(50);
        close(fd);
        wait_idle(label);
        v2_resp r;
        v2_post_built(url(V2_INFER), &c.first, "application/octet-stream", &r);
        if (r.status != 200)
            fail_msg("%s: the next request got %ld %.300s", label, r.status, r.body);
        same_answer(&r, &c.answer, label);
        v2_resp_free(&r);
    }
    case_free(&c);
}

/* The status and /v2 error message of a request sent in the targets-first order
 * (paced, or at once when its framing is broken) equal those of the same
 * request in the usual order. */
static void same_error(const stream_case *c, const v2_built *first, const v2_built *usual,
                       int paced, long status, const char *label)
{
    v2_resp u;
    v2_post_built(url(V2_INFER), usual, "application/octet-stream", &u);
    int fd = connect_server();
    if (paced) {
        send_paced(fd, first, c->B, c->B, 20);
    } else {
        send_head(fd, first);
        send_all(fd, first->body.data, first->body.len);
    }
    v2_resp s;
    read_answer(fd, &s);
    close(fd);
    if (u.status != status || s.status != status)
        fail_msg("%s: usual order %ld %.200s, targets first %ld %.200s", label, u.status, u.body,
                 s.status, s.body);
    assert_string_equal(v2_error_code(&s), v2_error_code(&u));
    assert_string_equal(v2_error_message(&s), v2_error_message(&u));
    assert_string_equal(s.content_type, "application/json");
    v2_resp_free(&u);
    v2_resp_free(&s);
}

static void put_f32(v2_built *b, const char *input, size_t index, float v)
{
    size_t size;
    const size_t off = v2_input_offset(b, input, &size);
    assert_true((index + 1) * 4 <= size);
    memcpy(b->body.data + off + index * 4, &v, 4);
}

static void put_i32(v2_built *b, const char *input, size_t index, int32_t v)
{
    size_t size;
    const size_t off = v2_input_offset(b, input, &size);
    assert_true((index + 1) * 4 <= size);
    memcpy(b->body.data + off + index * 4, &v, 4);
}

static void test_errors_while_streaming(void **state)
{
    (void)state;
    stream_case c;
    case_load(&c, "ssd300_voc_b2");
    const json_t *request = json_object_get(c.golden, "request");
    const int64_t C = json_integer_value(
        json_array_get(json_object_get(json_object_get(request, "conf"), "shape"), 2));

    /* A label out of range: found by the parse, before any image is in. */
    put_i32(&c.usual, "gt_labels", 0, (int32_t)C + 5);
    put_i32(&c.first, "gt_labels", 0, (int32_t)C + 5);
    same_error(&c, &c.first, &c.usual, 1, 422, "label out of range");
    case_free(&c);

    /* NaN in the first image's conf: found while image 1 still arrives. */
    case_load(&c, "ssd300_voc_b2");
    put_f32(&c.usual, "conf", 5 * (size_t)C + 3, NAN);
    put_f32(&c.first, "conf", 5 * (size_t)C + 3, NAN);
    same_error(&c, &c.first, &c.usual, 1, 422, "NaN in image 0");
    case_free(&c);

    /* Infinity in the last image's loc. */
    case_load(&c, "ssd300_voc_b2");
    size_t loc_size;
    v2_input_offset(&c.first, "loc", &loc_size);
    put_f32(&c.usual, "loc", loc_size / 4 - 2, INFINITY);
    put_f32(&c.first, "loc", loc_size / 4 - 2, INFINITY);
    same_error(&c, &c.first, &c.usual, 1, 422, "infinity in image 1's loc");
    case_free(&c);

    /* Framing: conf's binary_data_size one element short, the body the same
     * length (trailing bytes): never streamed, 400 either way. */
    case_load(&c, "ssd300_voc_b2");
    v2_built *forms[2] = {&c.usual, &c.first};
    for (int k = 0; k < 2; k++) {
        v2_built *b = forms[k];
        size_t conf_size;
        v2_input_offset(b, "conf", &conf_size);
        char old[64], new[64];
        snprintf(old, sizeof old, "\"binary_data_size\":%zu", conf_size);
        snprintf(new, sizeof new, "\"binary_data_size\":%zu", conf_size - 4);
        char *p = strstr((char *)b->body.data, old);
        assert_non_null(p);
        assert_true(p < (char *)b->body.data + b->header_len);
        /* Same length: pad the number with a space inside the JSON header. */
        memset(p, ' ', strlen(old));
        memcpy(p, new, strlen(new));
    }
    same_error(&c, &c.first, &c.usual, 0, 400, "binary_data_size disagrees");
    case_free(&c);
    wait_idle("after the errors");
}

/*
 * --stream-upload auto (the default) and never, on a server restarted so:
 * the paced targets-first upload from this host is read whole before the
 * loss starts (the streamed count stays), with the same answer; the last
 * test, as it replaces the shared server.
 */
static void test_stream_policy(void **state)
{
    (void)state;
    static const char *const defaults[] = {"--workers", "1", NULL};
    static const char *const never[] = {"--workers", "1", "--stream-upload", "never", NULL};
    const char *const *const configs[] = {defaults, never};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(server_stop(&srv, SIGTERM, 60), 0);
        assert_int_equal(server_start(&srv, configs[i], NULL, 0), 0);
        stream_case c;
        case_load(&c, "ssd300_voc_b2");
        const char *label = i == 0 ? "auto, local client" : "never";
        paced_same_answer(&c, 30, label);
        if (metric("multibox_streamed_requests_total") != 0)
            fail_msg("%s: the upload was streamed", label);
        case_free(&c);
    }
}

int main(int argc, char **argv)
{
    harness_init(argc, argv);
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paced_upload),
        cmocka_unit_test(test_stall_holds_no_worker),
        cmocka_unit_test(test_abandoned_uploads),
        cmocka_unit_test(test_errors_while_streaming),
        cmocka_unit_test(test_stream_policy),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc || teardown_failed;
}
