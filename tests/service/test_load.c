/*
 * test_load.c - multiboxd under concurrency: 32 client threads mixing
 * valid and invalid requests (every answer right), a full queue answered
 * at once with 503 and Retry-After (and nothing else), and SIGTERM while
 * requests are in flight: readiness turns 503, no new connection is
 * accepted, every request already received gets its 200, the process
 * exits 0; with a tiny --drain-timeout it is forced out with 1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Bodies shared read-only by the client threads. */
static char *tiny_body, *bad_label_body, *big_body;
static json_t *tiny_expected, *big_expected;

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    return s;
}

static int setup(void **state)
{
    (void)state;
    json_t *g = load_golden("tiny");
    if (!g)
        return -1;
    json_t *req = request_in_form(json_object_get(g, "request"), FORM_FLAT);
    tiny_body = dump(req);
    json_t *labels =
        json_object_get(json_array_get(json_object_get(req, "targets"), 0), "labels");
    json_array_set_new(labels, 0, json_integer(99));
    bad_label_body = dump(req);
    json_decref(req);
    tiny_expected = json_incref(json_object_get(g, "expected"));
    json_decref(g);

    g = load_golden("ssd300_voc_b2");
    if (!g)
        return -1;
    big_body = dump(json_object_get(g, "request"));
    big_expected = json_incref(json_object_get(g, "expected"));
    json_decref(g);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(tiny_body);
    free(bad_label_body);
    free(big_body);
    json_decref(tiny_expected);
    json_decref(big_expected);
    return 0;
}

/* 0 when a 200 answer agrees with expected; prints why not. */
static int answer_ok(const http_resp *r, const json_t *expected, const char *what)
{
    if (r->status != 200) {
        fprintf(stderr, "%s: status %ld %.200s %s\n", what, r->status, r->body, r->curl_error);
        return -1;
    }
    json_t *a = json_loadb(r->body, r->len, 0, NULL);
    char why[512] = "not JSON";
    int rc = a ? check_golden(a, expected, why, sizeof why) : -1;
    if (rc)
        fprintf(stderr, "%s: %s\n", what, why);
    json_decref(a);
    return rc;
}

/* ------------------------------------------------------ 32 mixed clients */

typedef struct client {
    const server *srv;
    int id;
    int failures;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    CURL *curl = curl_easy_init();
    for (int k = 0; k < 6; k++) {
        int kind = (c->id + k) % 6;
        http_req q = {.method = "POST", .url = server_url(c->srv, "/v1/loss"),
                      .content_type = "application/json", .curl = curl};
        http_resp r;
        char what[64];
        snprintf(what, sizeof what, "client %d request %d kind %d", c->id, k, kind);
        switch (kind) {
        case 0: /* valid */
        case 3:
            q.body = tiny_body;
            q.len = strlen(tiny_body);
            http_do(&q, &r);
            c->failures += answer_ok(&r, tiny_expected, what) != 0;
            break;
        case 1: /* malformed */
            q.body = tiny_body;
            q.len = strlen(tiny_body) / 2;
            http_do(&q, &r);
            c->failures += !(r.status == 400 && strcmp(error_code(&r), "malformed_json") == 0);
            break;
        case 2: /* invalid label */
            q.body = bad_label_body;
            q.len = strlen(bad_label_body);
            http_do(&q, &r);
            c->failures += !(r.status == 422 && strcmp(error_code(&r), "bad_label") == 0);
            break;
        case 4: /* anchors */
            q.method = "GET";
            q.url = server_url(c->srv, "/v1/anchors/ssd300_voc?tensor_format=b64");
            http_do(&q, &r);
            c->failures += !(r.status == 200 && strstr(r.body, "\"shape\":[8732,4]"));
            break;
        default: /* wrong content type, then an unknown path */
            q.content_type = "text/plain";
            q.body = tiny_body;
            q.len = strlen(tiny_body);
            http_do(&q, &r);
            c->failures += !(r.status == 415 && strcmp(error_code(&r), "unsupported_media_type") == 0);
            http_resp_free(&r);
            q.url = server_url(c->srv, "/v1/nothing");
            http_do(&q, &r);
            c->failures += !(r.status == 404 && strcmp(error_code(&r), "not_found") == 0);
            break;
        }
        if (c->failures)
            fprintf(stderr, "%s: %ld %.200s\n", what, r.status, r.body);
        http_resp_free(&r);
    }
    curl_easy_cleanup(curl);
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    (void)state;
    server s;
    static const char *const args[] = {"--workers", "2", "--queue-depth", "64", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    enum { N = 32 };
    pthread_t th[N];
    client cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (client){.srv = &s, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        failures += cl[i].failures;
    }
    assert_int_equal(failures, 0);
    /* Every request was counted. */
    http_resp r;
    http_get(server_url(&s, "/metrics"), &r);
    double ok = metric_value(r.body, "multibox_http_requests_total{handler=\"/v1/loss\",code=\"200\"}");
    double bad = metric_value(r.body, "multibox_http_requests_total{handler=\"/v1/loss\",code=\"422\"}");
    assert_true(ok == N * 2);
    assert_true(bad == N);
    assert_true(metric_value(r.body, "multibox_queue_depth") == 0);
    http_resp_free(&r);
    assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
}

/* ------------------------------------------------------ the full queue */

typedef struct big_client {
    const server *srv;
    atomic_int *go;
    http_resp resp;
} big_client;

static void *big_main(void *arg)
{
    big_client *c = arg;
    while (!atomic_load(c->go))
        usleep(100);
    http_post_json(server_url(c->srv, "/v1/loss"), big_body, strlen(big_body), &c->resp);
    return NULL;
}

static void test_queue_full(void **state)
{
    (void)state;
    server s;
    static const char *const args[] = {"--workers", "1", "--queue-depth", "1", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    enum { N = 10 };
    int saw_503 = 0, saw_200 = 0;
    for (int round = 0; round < 5 && !saw_503; round++) {
        pthread_t th[N];
        big_client bc[N];
        atomic_int go = 0;
        for (int i = 0; i < N; i++) {
            bc[i] = (big_client){.srv = &s, .go = &go};
            assert_int_equal(pthread_create(&th[i], NULL, big_main, &bc[i]), 0);
        }
        atomic_store(&go, 1);
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            http_resp *r = &bc[i].resp;
            if (r->status == 503) {
                saw_503++;
                assert_string_equal(error_code(r), "overloaded");
                assert_string_equal(r->retry_after, "1");
            } else {
                assert_int_equal(answer_ok(r, big_expected, "queue test"), 0);
                saw_200++;
            }
            http_resp_free(r);
        }
    }
    assert_true(saw_503 > 0);
    assert_true(saw_200 >= 2);
    http_resp r;
    http_get(server_url(&s, "/metrics"), &r);
    assert_true(metric_value(r.body, "multibox_http_requests_total{handler=\"/v1/loss\",code=\"503\"}") ==
                saw_503);
    http_resp_free(&r);
    assert_int_equal(server_stop(&s, SIGTERM, 60), 0);
}

/* --------------------------------------------------------------- drain */

/* Waits until the server reports at least n requests in flight (on a kept-alive handle). */
static void wait_in_flight(const server *s, CURL *keep, double n)
{
    double deadline = now_s() + 30, v = 0;
    while (now_s() < deadline) {
        http_req q = {.method = "GET", .url = server_url(s, "/metrics"), .curl = keep};
        http_resp r;
        http_do(&q, &r);
        v = metric_value(r.body, "multibox_requests_in_flight");
        http_resp_free(&r);
        if (v >= n)
            return;
        usleep(2000);
    }
    fprintf(stderr, "only %g requests in flight\n", v);
    fail();
}

static void test_sigterm_drains(void **state)
{
    (void)state;
    server s;
    static const char *const args[] = {"--workers", "1", "--queue-depth", "16",
                                       "--drain-timeout", "120", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    enum { N = 6 };
    pthread_t th[N];
    big_client bc[N];
    atomic_int go = 1;
    CURL *keep = curl_easy_init();
    for (int i = 0; i < N; i++) {
        bc[i] = (big_client){.srv = &s, .go = &go};
        assert_int_equal(pthread_create(&th[i], NULL, big_main, &bc[i]), 0);
    }
    wait_in_flight(&s, keep, N + 1); /* the N requests and the scrape itself */
    kill(s.pid, SIGTERM);

    /* Readiness turns 503 on the connection already open... */
    double deadline = now_s() + 10;
    http_resp r = {0};
    for (;;) {
        http_req q = {.method = "GET", .url = server_url(&s, "/readyz"), .curl = keep};
        http_do(&q, &r);
        if (r.status == 503 || now_s() > deadline)
            break;
        http_resp_free(&r);
        usleep(1000);
    }
    assert_int_equal(r.status, 503);
    assert_string_equal(error_code(&r), "draining");
    assert_string_equal(r.retry_after, "1");
    http_resp_free(&r);
    /* ...and new connections are no longer accepted. */
    http_req q = {.method = "GET", .url = server_url(&s, "/livez"), .timeout_ms = 2000};
    http_do(&q, &r);
    assert_int_equal(r.status, 0);
    http_resp_free(&r);

    int failures = 0, kept = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        failures += answer_ok(&bc[i].resp, big_expected, "drain") != 0;
        /* Answered during the drain: the connection is not kept.  (One answer
         * may have left between the scrape and the signal.) */
        kept += strcmp(bc[i].resp.connection, "close") != 0;
        http_resp_free(&bc[i].resp);
    }
    curl_easy_cleanup(keep);
    assert_int_equal(failures, 0);
    assert_true(kept <= 1);
    assert_true(server_wait_log(&s, "drained", 30));
    assert_int_equal(server_stop(&s, 0, 60), 0); /* signal 0: just wait for the exit */
}

static void test_drain_timeout(void **state)
{
    (void)state;
    server s;
    static const char *const args[] = {"--workers", "1", "--queue-depth", "16",
                                       "--drain-timeout", "1ms", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    enum { N = 6 };
    pthread_t th[N];
    big_client bc[N];
    atomic_int go = 1;
    CURL *keep = curl_easy_init();
    for (int i = 0; i < N; i++) {
        bc[i] = (big_client){.srv = &s, .go = &go};
        assert_int_equal(pthread_create(&th[i], NULL, big_main, &bc[i]), 0);
    }
    wait_in_flight(&s, keep, N + 1);
    curl_easy_cleanup(keep);
    assert_int_equal(server_stop(&s, SIGTERM, 60), 1);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        http_resp_free(&bc[i].resp);
    }
}

int main(int argc, char **argv)
{
    harness_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_drain_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
