/*
 * test_hard_drain.c - SIGTERM under real load.  12 clients (half on
 * kept-alive connections, half opening one per request) send batch-8
 * SSD300 requests (b64) and the tiny golden case without pause; after two
 * seconds the server gets SIGTERM.  Then:
 *   - /readyz answers 503 draining at once on an open connection, long
 *     before the drain ends;
 *   - every request the server had received is answered 200, correct;
 *   - a request that arrives later is refused at connect (new connection)
 *     or answered 503 draining with Retry-After (kept-alive connection;
 *     with a body over 1 MiB that answer comes before the upload ends and
 *     the connection closes, so the client may see its send fail instead);
 *     nothing else: no reset, no empty answer, no wrong answer;
 *   - the server's log accounts for every answer the clients saw (each 200,
 *     and each 503 or failed send), no request is logged unanswered, the
 *     log says "drained", and the process exits 0 well within
 *     --drain-timeout.
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
#include <unistd.h>

#include "test_hard_util.h"

#define DRAIN_TIMEOUT_S 60
#define CLIENTS 12
#define MAX_REQ 4096

static char *tiny_body, *batch_body;
static json_t *tiny_expected, *batch_expected;

static int setup(void **state)
{
    (void)state;
    tiny_body = golden_body("tiny", FORM_B64, &tiny_expected);
    if (!tiny_body)
        return -1;
    batch_body = hard_batch_body(8, &batch_expected);
    return batch_body ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(tiny_body);
    free(batch_body);
    json_decref(tiny_expected);
    json_decref(batch_expected);
    return 0;
}

typedef enum outcome { OK_200 = 0, DRAINING_503, REFUSED, SEND_CUT, WRONG } outcome;

typedef struct record {
    double t_start, t_end;
    outcome what;
} record;

typedef struct client {
    const server *srv;
    int id;
    int keep_alive;
    atomic_int *signalled;
    record rec[MAX_REQ];
    int n;
} client;

static outcome classify(const hard_resp *r, const json_t *expected, int id, int big_kept)
{
    if (r->status == 200) {
        json_t *a = json_loadb(r->body, r->len, 0, NULL);
        char why[512] = "not JSON";
        int rc = a ? check_golden(a, expected, why, sizeof why) : -1;
        json_decref(a);
        if (rc == 0)
            return OK_200;
        fprintf(stderr, "client %d: wrong 200: %s\n", id, why);
        return WRONG;
    }
    if (r->status == 503 && strcmp(hard_error_code(r->body, r->len), "draining") == 0 &&
        strcmp(r->retry_after, "1") == 0)
        return DRAINING_503;
    if (r->status == 0 && r->curl_code == CURLE_COULDNT_CONNECT)
        return REFUSED;
    /* A large body on a kept-alive connection, answered 503 before its end. */
    if (r->status == 0 && big_kept &&
        (r->curl_code == CURLE_SEND_ERROR || r->curl_code == CURLE_RECV_ERROR))
        return SEND_CUT;
    fprintf(stderr, "client %d: status %ld, curl %d (%s), body %.200s\n", id, r->status,
            r->curl_code, r->curl_error, r->body);
    return WRONG;
}

static void *client_main(void *arg)
{
    client *c = arg;
    CURL *keep = c->keep_alive ? curl_easy_init() : NULL;
    for (int k = 0; c->n < MAX_REQ; k++) {
        int big = (c->id + k) % 3 != 0;
        hard_req q = {.method = "POST", .url = server_url(c->srv, "/v1/loss"),
                      .content_type = "application/json", .body = big ? batch_body : tiny_body,
                      .len = strlen(big ? batch_body : tiny_body), .curl = keep,
                      .timeout_ms = 120000};
        hard_resp r;
        hard_do(&q, &r);
        record *rec = &c->rec[c->n++];
        rec->t_start = r.t_start;
        rec->t_end = r.t_end;
        rec->what = classify(&r, big ? batch_expected : tiny_expected, c->id,
                             big && c->keep_alive);
        hard_resp_free(&r);
        /* After the signal, a client goes on until the server refuses it. */
        if (rec->what == REFUSED || rec->what == WRONG)
            break;
        if (rec->what == SEND_CUT && !atomic_load(c->signalled)) {
            rec->what = WRONG; /* only a drain may cut an upload */
            break;
        }
    }
    if (keep)
        curl_easy_cleanup(keep);
    return NULL;
}

/* Occurrences of needle in text. */
static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static double scrape(const server *s, CURL *keep, const char *series)
{
    hard_resp r;
    hard_req q = {.method = "GET", .url = server_url(s, "/metrics"), .curl = keep};
    hard_do(&q, &r);
    double v = r.status == 200 ? metric_value(r.body, series) : -1;
    hard_resp_free(&r);
    return v;
}

static void test_sigterm_under_load(void **state)
{
    (void)state;
    static server s;
    static const char *const args[] = {"--workers", "2", "--queue-depth", "64",
                                       "--drain-timeout", "60", NULL};
    assert_int_equal(hard_start(&s, args, NULL), 0);
    static client cl[CLIENTS];
    pthread_t th[CLIENTS];
    atomic_int signalled = 0;
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){.srv = &s, .id = i, .keep_alive = i % 2, .signalled = &signalled};
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    /* Load for two seconds, with requests in flight at the signal. */
    CURL *probe = curl_easy_init();
    double t0 = hard_now();
    double in_flight = 0;
    while (hard_now() - t0 < 2 || in_flight < 4) {
        in_flight = scrape(&s, probe, "multibox_requests_in_flight");
        usleep(20000);
        assert_true(hard_now() - t0 < 60);
    }
    hard_resp r;
    hard_req ready = {.method = "GET", .url = server_url(&s, "/readyz"), .curl = probe};
    assert_int_equal(hard_do(&ready, &r), 200);
    hard_resp_free(&r);

    double t_sig = hard_now();
    kill(s.pid, SIGTERM);
    atomic_store(&signalled, 1);
    /* Readiness turns 503 at once on the connection already open. */
    double t_ready503 = 0;
    for (int k = 0; k < 1000 && !t_ready503; k++) {
        hard_do(&ready, &r);
        if (r.status == 503) {
            assert_string_equal(hard_error_code(r.body, r.len), "draining");
            t_ready503 = hard_now();
        } else {
            assert_int_equal(r.status, 200);
            usleep(1000);
        }
        hard_resp_free(&r);
    }
    curl_easy_cleanup(probe);
    assert_true(t_ready503 > 0);

    /* The process ends by itself: wait for its last log line. */
    assert_true(server_wait_log(&s, " stopped", DRAIN_TIMEOUT_S + 10));
    double t_exit = hard_now();
    assert_true(server_log_contains(&s, "drained: every request answered"));
    /* No request was left unanswered (status 0 means the server dropped it). */
    assert_false(server_log_contains(&s, "status=0 "));
    /* The process has ended: its log is complete and no longer written. */
    const char *log = s.log ? s.log : "";
    int logged_in_flight = -1;
    const char *m = strstr(log, "SIGTERM: draining (");
    if (m)
        logged_in_flight = atoi(m + strlen("SIGTERM: draining ("));
    int log_200 = count(log, "path=/v1/loss status=200 "),
        log_503 = count(log, "path=/v1/loss status=503 "),
        log_all = count(log, "path=/v1/loss status=");
    assert_int_equal(hard_stop(&s, 0, 30), 0);

    int ok_before = 0, ok_after = 0, draining = 0, refused = 0, cut = 0, wrong = 0, early = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        for (int k = 0; k < cl[i].n; k++) {
            const record *rec = &cl[i].rec[k];
            switch (rec->what) {
            case OK_200:
                if (rec->t_end < t_sig)
                    ok_before++;
                else
                    ok_after++;
                break;
            case DRAINING_503:
                draining++;
                early += rec->t_end < t_sig; /* must not happen before the signal */
                break;
            case REFUSED:
                refused++;
                break;
            case SEND_CUT:
                cut++;
                break;
            case WRONG:
                wrong++;
                break;
            }
        }
    }
    fprintf(stderr,
            "drain: %d clients (%d kept alive), signal after %.2f s of load with %d requests "
            "in flight (log); readiness 503 after %.1f ms; exit 0 %.2f s after SIGTERM "
            "(drain timeout %d s); answers: %d x 200 before the signal, %d x 200 after it "
            "(all correct), %d x 503 draining, %d uploads cut by an early 503, %d refused at "
            "connect, %d wrong or dropped; server log: %d x 200, %d x 503, %d in all\n",
            CLIENTS, CLIENTS / 2, t_sig - t0, logged_in_flight, (t_ready503 - t_sig) * 1e3,
            t_exit - t_sig, DRAIN_TIMEOUT_S, ok_before, ok_after, draining, cut, refused, wrong,
            log_200, log_503, log_all);
    assert_int_equal(wrong, 0);
    assert_int_equal(early, 0);
    /* Every request in flight at the signal was answered 200 (the count the
     * server logs may include the readiness probe sent right after it). */
    assert_true(logged_in_flight >= 1);
    assert_true(ok_after >= logged_in_flight - 1);
    /* The server answered exactly what the clients saw. */
    assert_int_equal(log_200, ok_before + ok_after);
    /*
     * Every 503 a client saw is in the log, and an upload cut short is
     * normally a 503 answered before its end.  The two counts may differ,
     * by one per kept-alive client at most (after it, that client connects
     * anew and is refused), in either direction (the README's "microseconds
     * between these steps"): a 503 written as the server closes the
     * connection can reach the client as a dead connection, which curl
     * retries on a new one and is refused (logged, not seen); and a request
     * sent on an idle kept-alive connection just as the drained server
     * exits is cut before its headers are read (seen as a cut, not logged:
     * once in CI under ASan, 2 x 503 logged for 2 draining + 1 cut).
     */
    assert_true(log_503 >= draining);
    assert_true(abs(log_503 - (draining + cut)) <= CLIENTS / 2);
    assert_int_equal(log_all, log_200 + log_503);
    assert_int_equal(refused, CLIENTS); /* each client ended refused */
    /* Readiness turned while the drain was still going on (and fast: the
     * bound leaves room for a loaded machine and sanitizers). */
    assert_true(t_ready503 < t_exit);
    assert_true(t_ready503 - t_sig < 2.0);
    assert_true(t_exit - t_sig < DRAIN_TIMEOUT_S);
}

int main(int argc, char **argv)
{
    hard_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_under_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
