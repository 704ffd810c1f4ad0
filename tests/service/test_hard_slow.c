/*
 * test_hard_slow.c - slow and silent clients.
 *
 * Slowloris: MBX_SLOWLORIS_CONNECTIONS connections (64 here; the hardening
 * script runs 500) trickle header bytes every 0.5 s, a few more trickle a
 * body, a few say nothing; meanwhile ordinary clients must be served, each
 * answer correct and quick.  Then the header timeout cuts every header
 * trickler and silent client, each within its window.
 *
 * Timeouts: an idle connection, headers that stop, a body that stops and
 * a kept-alive connection with nothing more to say are closed after
 * --request-timeout; a trickler that is never idle is closed after
 * --header-timeout, also on a kept-alive connection.
 *
 * Limits: past --max-connections a connection is closed at once and the
 * server serves again when connections go; past --max-connections-per-ip a
 * client address is refused while another address is served.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_hard_util.h"

static char *tiny_body;
static json_t *tiny_expected;

static int setup(void **state)
{
    (void)state;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    tiny_body = golden_body("tiny", FORM_FLAT, &tiny_expected);
    if (!tiny_body)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(tiny_body);
    json_decref(tiny_expected);
    return 0;
}

/* ------------------------------------------------------------ slowloris */

typedef enum slow_kind { SLOW_HEADERS = 0, SLOW_BODY, SLOW_SILENT } slow_kind;

typedef struct slow_conn {
    int fd;
    slow_kind kind;
    size_t sent;       /* bytes of the script sent */
    double t_open;     /* when connected */
    double t_closed;   /* when the server closed it (0: open) */
} slow_conn;

typedef struct slow_crowd {
    slow_conn *c;
    int n;
    atomic_int stop;
    int port;
    pthread_mutex_t mu; /* guards c[].t_closed and c[].sent */
} slow_crowd;

/* What a header trickler sends, one byte at a time: never the blank line. */
static const char header_script[] =
    "POST /v1/loss HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/* A body trickler sends its headers at once, then the body a byte at a time. */
static const char body_headers[] =
    "POST /v1/loss HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Content-Length: 100000\r\n\r\n";

/* Notes the connections the server has closed. */
static void check_closed(slow_crowd *cr)
{
    pthread_mutex_lock(&cr->mu);
    for (int i = 0; i < cr->n; i++) {
        slow_conn *c = &cr->c[i];
        if (c->fd >= 0 && !c->t_closed && !hard_is_open(c->fd))
            c->t_closed = hard_now();
    }
    pthread_mutex_unlock(&cr->mu);
}

/* How many connections of a kind (-1: any) the server has not closed yet. */
static int count_open(slow_crowd *cr, int kind)
{
    int n = 0;
    pthread_mutex_lock(&cr->mu);
    for (int i = 0; i < cr->n; i++)
        n += (kind < 0 || cr->c[i].kind == (slow_kind)kind) && cr->c[i].t_closed == 0;
    pthread_mutex_unlock(&cr->mu);
    return n;
}

/* One thread drives every slow connection: a byte each 0.5 s. */
static void *crowd_main(void *arg)
{
    slow_crowd *cr = arg;
    while (!atomic_load(&cr->stop)) {
        pthread_mutex_lock(&cr->mu);
        for (int i = 0; i < cr->n; i++) {
            slow_conn *c = &cr->c[i];
            if (c->fd < 0 || c->t_closed || c->kind == SLOW_SILENT)
                continue;
            char b = c->kind == SLOW_HEADERS
                         ? header_script[c->sent % (sizeof header_script - 1)]
                         : ' ';
            if (send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                c->sent++;
            else if (errno != EAGAIN)
                c->t_closed = hard_now();
        }
        pthread_mutex_unlock(&cr->mu);
        for (int k = 0; k < 10 && !atomic_load(&cr->stop); k++) {
            check_closed(cr);
            usleep(50000);
        }
    }
    return NULL;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

static void test_slowloris(void **state)
{
    (void)state;
    int n = env_int("MBX_SLOWLORIS_CONNECTIONS", 64);
    const double header_timeout = 6, request_timeout = 20;
    int body_slow = n / 16 + 1, silent = n / 16 + 1;
    static server s;
    char maxc[32];
    snprintf(maxc, sizeof maxc, "%d", n + body_slow + silent + 64);
    const char *args[] = {"--workers", "2", "--header-timeout", "6s", "--request-timeout", "20s",
                          "--max-connections", maxc, NULL};
    assert_int_equal(hard_start(&s, args, NULL), 0);

    static slow_crowd cr;
    cr = (slow_crowd){.n = n + body_slow + silent, .port = s.port};
    pthread_mutex_init(&cr.mu, NULL);
    cr.c = calloc((size_t)cr.n, sizeof *cr.c);
    double t0 = hard_now();
    for (int i = 0; i < cr.n; i++) {
        slow_conn *c = &cr.c[i];
        c->kind = i < n ? SLOW_HEADERS : i < n + body_slow ? SLOW_BODY : SLOW_SILENT;
        c->fd = hard_connect(s.port);
        if (c->fd < 0) {
            fprintf(stderr, "slow connection %d: cannot connect: %s\n", i, strerror(errno));
            fail();
        }
        c->t_open = hard_now();
        if (c->kind == SLOW_BODY)
            assert_int_equal(hard_send(c->fd, body_headers, sizeof body_headers - 1), 0);
    }
    double t_opened = hard_now() - t0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, crowd_main, &cr), 0);

    /* Ordinary clients while the crowd trickles: each answer right and quick. */
    int served = 0, failed = 0;
    double worst = 0;
    CURL *keep = curl_easy_init();
    while (hard_now() - t0 < header_timeout - 2) {
        for (int k = 0; k < 2; k++) {
            hard_resp r;
            hard_req q = {.method = "POST", .url = server_url(&s, "/v1/loss"),
                          .content_type = "application/json", .body = tiny_body,
                          .len = strlen(tiny_body), .timeout_ms = 10000,
                          .curl = k ? keep : NULL};
            hard_do(&q, &r);
            json_t *a = json_loadb(r.body, r.len, 0, NULL);
            char why[256] = "";
            if (r.status == 200 && a && check_golden(a, tiny_expected, why, sizeof why) == 0) {
                served++;
            } else {
                failed++;
                fprintf(stderr, "ordinary client: %ld %s %s\n", r.status, r.curl_error, why);
            }
            double t = r.t_end - r.t_start;
            worst = t > worst ? t : worst;
            json_decref(a);
            hard_resp_free(&r);
        }
        usleep(20000);
    }
    curl_easy_cleanup(keep);
    /* Every slow connection was still open while they were served. */
    check_closed(&cr);
    int open_during = count_open(&cr, -1);

    /* The header timeout then cuts the header tricklers and the silent ones. */
    double deadline = t0 + t_opened + header_timeout + 6;
    int pending;
    do {
        usleep(100000);
        pending = count_open(&cr, SLOW_HEADERS) + count_open(&cr, SLOW_SILENT);
    } while (pending && hard_now() < deadline);
    atomic_store(&cr.stop, 1);
    pthread_join(th, NULL);
    double first = 1e9, last = 0;
    int cut = 0, body_open = 0;
    for (int i = 0; i < cr.n; i++) {
        slow_conn *c = &cr.c[i];
        if (c->kind == SLOW_BODY) {
            body_open += c->t_closed == 0;
            continue;
        }
        if (!c->t_closed)
            continue;
        cut++;
        double after = c->t_closed - c->t_open;
        first = after < first ? after : first;
        last = after > last ? after : last;
    }
    fprintf(stderr,
            "slowloris: %d header tricklers + %d body tricklers + %d silent (opened in %.2f s); "
            "ordinary requests meanwhile: %d served correctly, %d failed, slowest %.3f s; "
            "%d of %d slow connections open during that; header timeout %.0f s cut %d of %d "
            "(after %.2f..%.2f s); body tricklers still open: %d of %d\n",
            n, body_slow, silent, t_opened, served, failed, worst, open_during, cr.n,
            header_timeout, cut, n + silent, first, last, body_open, body_slow);
    assert_int_equal(failed, 0);
    assert_true(served >= 10);
    assert_true(worst < 2.0);
    assert_int_equal(open_during, cr.n);
    assert_int_equal(cut, n + silent);
    assert_true(first >= header_timeout - 0.5);
    assert_true(last <= header_timeout + 3);
    /* A body that trickles is not idle: it stays until --request-timeout of silence. */
    assert_int_equal(body_open, body_slow);
    for (int i = 0; i < cr.n; i++)
        close(cr.c[i].fd);
    free(cr.c);
    pthread_mutex_destroy(&cr.mu);
    (void)request_timeout;

    /* Still serving; the cuts were logged (once, not per connection). */
    hard_resp r;
    hard_req q = {.method = "GET", .url = server_url(&s, "/readyz")};
    assert_int_equal(hard_do(&q, &r), 200);
    hard_resp_free(&r);
    assert_true(server_wait_log(&s, "sent no complete request headers", 5));
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

/* ------------------------------------------------------------ timeouts */

/* Opens a connection, sends what, and returns it. */
static int open_with(int port, const char *what)
{
    int fd = hard_connect(port);
    assert_true(fd >= 0);
    if (what && *what)
        assert_int_equal(hard_send(fd, what, strlen(what)), 0);
    return fd;
}

/* Reads and drops what the server sent; 0 once it has closed fd, else 1. */
static int still_open(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n == 0)
            return 0;
        return errno == EAGAIN || errno == EINTR;
    }
}

static void test_idle_and_stalled(void **state)
{
    (void)state;
    static server s;
    /* The header timeout is out of the way: only the idle timeout acts. */
    static const char *const args[] = {"--request-timeout", "2", "--header-timeout", "60", NULL};
    assert_int_equal(hard_start(&s, args, NULL), 0);
    static const char *const what[] = {
        "",                                                        /* silent */
        "GET /livez HTTP/1.1\r\nHo",                              /* headers stop */
        ("POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: 100\r\n\r\n{\"anchors\":"),              /* body stops */
        "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",                 /* answered, then idle */
    };
    enum { K = sizeof what / sizeof what[0] };
    int fd[K];
    double t_open[K];
    for (int i = 0; i < K; i++) {
        fd[i] = open_with(s.port, what[i]);
        t_open[i] = hard_now();
    }
    for (int i = 0; i < K; i++) {
        double t = hard_wait_closed(fd[i], 8);
        assert_true(t >= 0); /* closed */
        t = hard_now() - t_open[i];
        fprintf(stderr, "timeouts: case %d closed %.2f s after its last byte (request timeout "
                        "2 s)\n", i, t);
        assert_true(t >= 1.5 && t < 5);
        close(fd[i]);
    }
    /* The stalled body's request is logged as unanswered (status 0). */
    assert_true(server_wait_log(&s, "path=/v1/loss status=0 ", 5));
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);

    /* A trickler is never idle: the header timeout closes it, on a fresh
     * connection and on a kept-alive one after its first answer. */
    static const char *const args2[] = {"--request-timeout", "2", "--header-timeout", "3",
                                        NULL};
    assert_int_equal(hard_start(&s, args2, NULL), 0);
    int fresh = open_with(s.port, "G");
    int kept = open_with(s.port, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
    double t0 = hard_now(), closed[2] = {0, 0};
    const char *next = "GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    size_t sent = 0;
    while (hard_now() - t0 < 10 && (!closed[0] || !closed[1])) {
        usleep(500000);
        int fds[2] = {fresh, kept};
        for (int k = 0; k < 2; k++) {
            if (closed[k])
                continue;
            if (!still_open(fds[k])) {
                closed[k] = hard_now() - t0;
                continue;
            }
            char b = next[sent % strlen(next)];
            if (send(fds[k], &b, 1, MSG_NOSIGNAL) != 1)
                closed[k] = hard_now() - t0;
        }
        sent++;
    }
    fprintf(stderr, "timeouts: tricklers cut after %.2f s (fresh) and %.2f s (kept alive); "
                    "header timeout 3 s\n",
            closed[0], closed[1]);
    assert_true(closed[0] >= 2.5 && closed[0] <= 5.5);
    assert_true(closed[1] >= 2.5 && closed[1] <= 5.5);
    close(fresh);
    close(kept);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

/* ------------------------------------------------------------ limits */

/* GET /livez from source address src over a raw socket; the status or 0. */
static int raw_get_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &d.sin_addr);
    int status = 0;
    if (connect(fd, (struct sockaddr *)&d, sizeof d) == 0) {
        static const char req[] = "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if (hard_send(fd, req, sizeof req - 1) == 0) {
            char buf[256];
            size_t got = 0;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            while (got < 12 && poll(&p, 1, 3000) > 0) {
                ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
                if (r <= 0)
                    break;
                got += (size_t)r;
            }
            buf[got] = '\0';
            if (got >= 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0)
                status = atoi(buf + 9);
        }
    }
    close(fd);
    return status;
}

static void test_limits(void **state)
{
    (void)state;
    static server s;
    static const char *const args[] = {"--max-connections", "16", NULL};
    assert_int_equal(hard_start(&s, args, NULL), 0);
    int fd[16];
    for (int i = 0; i < 16; i++)
        fd[i] = open_with(s.port, "");
    usleep(200000);
    /* The 17th waits (libmicrohttpd stops accepting at the limit): no answer... */
    int extra = open_with(s.port, "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    struct pollfd p = {.fd = extra, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 1000), 0);
    for (int i = 0; i < 16; i++)
        assert_true(still_open(fd[i]));
    /* ...until connections go: then it is served. */
    close(fd[0]);
    close(fd[1]);
    char buf[256] = "";
    ssize_t got = 0;
    if (poll(&p, 1, 3000) == 1)
        got = recv(extra, buf, sizeof buf - 1, 0);
    buf[got > 0 ? got : 0] = '\0';
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    close(extra);
    assert_int_equal(raw_get_from("127.0.0.1", s.port), 200);
    for (int i = 2; i < 16; i++)
        close(fd[i]);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);

    /* Per address: 127.0.0.1 holds its 4, 127.0.0.2 is still served. */
    static const char *const args2[] = {"--max-connections-per-ip", "4", NULL};
    assert_int_equal(hard_start(&s, args2, NULL), 0);
    for (int i = 0; i < 4; i++)
        fd[i] = open_with(s.port, "GET /livez HTTP/1.1\r\nHo");
    usleep(200000);
    /* The 5th from the same address is closed at once, unanswered. */
    extra = hard_connect(s.port);
    assert_true(extra >= 0);
    double t = hard_wait_closed(extra, 3);
    close(extra);
    assert_true(t >= 0 && t < 1);
    assert_int_equal(raw_get_from("127.0.0.1", s.port), 0);
    int other = raw_get_from("127.0.0.2", s.port);
    if (other < 0) {
        fprintf(stderr, "cannot bind 127.0.0.2 here: the per-address check is skipped\n");
    } else {
        assert_int_equal(other, 200);
    }
    for (int i = 0; i < 4; i++)
        close(fd[i]);
    usleep(200000);
    assert_int_equal(raw_get_from("127.0.0.1", s.port), 200);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

int main(int argc, char **argv)
{
    hard_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_idle_and_stalled),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
