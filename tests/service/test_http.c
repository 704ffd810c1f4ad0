/*
 * test_http.c - multiboxd over real HTTP, everything but the loss math:
 * health, readiness, the embedded spec, 404/405/413/415, the anchors
 * endpoint against the golden priors, metrics moving with traffic, the
 * access log (never the payload) in text and JSON, flags and their
 * environment twins, --help/--version, invalid values (exit 2), a busy
 * port (exit 1) and --probe's exit codes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define JSON_LIMIT 100000 /* --max-json-body-bytes of the shared server */

static server srv; /* shared by the tests that need no special flags */

static int setup(void **state)
{
    (void)state;
    static const char *const args[] = {"--workers", "2", "--max-json-body-bytes", "100000",
                                       NULL};
    return server_start(&srv, args, NULL, 0);
}

/* cmocka 1.1 reports a failed group teardown but still exits 0: main checks this. */
static int teardown_failed;

static int teardown(void **state)
{
    (void)state;
    return server_stop_shared(&srv, 30, &teardown_failed);
}

static void expect_error(const http_resp *r, long status, const char *code)
{
    if (r->status != status || strcmp(error_code(r), code) != 0)
        fprintf(stderr, "got %ld %s (%s), expected %ld %s\n", r->status, r->body, r->curl_error,
                status, code);
    assert_int_equal(r->status, status);
    assert_string_equal(error_code(r), code);
    assert_string_equal(r->content_type, "application/json");
}

static void test_livez_readyz(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http_get(server_url(&srv, "/livez"), &r), 200);
    assert_string_equal(r.body, "ok\n");
    assert_non_null(strstr(r.content_type, "text/plain"));
    http_resp_free(&r);
    assert_int_equal(http_get(server_url(&srv, "/readyz"), &r), 200);
    assert_string_equal(r.body, "ok\n");
    http_resp_free(&r);
    /* Query strings do not matter. */
    assert_int_equal(http_get(server_url(&srv, "/livez?x=1"), &r), 200);
    http_resp_free(&r);
}

static void test_openapi(void **state)
{
    (void)state;
    const char *root = getenv("MBX_SOURCE_ROOT");
    assert_non_null(root);
    char path[4096];
    snprintf(path, sizeof path, "%s/api/openapi.yaml", root);
    size_t len;
    char *want = read_file(path, &len);
    assert_non_null(want);
    http_resp r;
    assert_int_equal(http_get(server_url(&srv, "/openapi.yaml"), &r), 200);
    assert_string_equal(r.content_type, "application/yaml");
    assert_int_equal(r.len, len);
    assert_memory_equal(r.body, want, len);
    assert_non_null(strstr(r.body, "openapi: 3.1"));
    http_resp_free(&r);
    free(want);
}

static void test_not_found(void **state)
{
    (void)state;
    static const char *const paths[] = {"/nope", "/v1/loss/", "/v1", "/", "/v1/anchors",
                                        "/v1/anchors/a/b", "/%00", "/livez/x"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        http_resp r;
        http_get(server_url(&srv, paths[i]), &r);
        expect_error(&r, 404, "not_found");
        http_resp_free(&r);
    }
    /* Under /v2 the error body is the protocol's: {"error": "<code>: <message>"}. */
    http_resp r;
    http_post_json(server_url(&srv, "/v2/models/x/infer"), "{}", 2, &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "{\"error\":\"not_found: "));
    http_resp_free(&r);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"GET", "/v1/loss", "POST"},         {"PUT", "/v1/loss", "POST"},
        {"POST", "/livez", "GET"},           {"DELETE", "/metrics", "GET"},
        {"POST", "/readyz", "GET"},          {"PATCH", "/openapi.yaml", "GET"},
        {"POST", "/v1/anchors/ssd300_voc", "GET"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_req q = {.method = cases[i].method, .url = server_url(&srv, cases[i].path)};
        if (strcmp(cases[i].method, "POST") == 0) {
            q.content_type = "application/json";
            q.body = "{}";
            q.len = 2;
        }
        http_resp r;
        http_do(&q, &r);
        expect_error(&r, 405, "method_not_allowed");
        assert_string_equal(r.allow, cases[i].allow);
        http_resp_free(&r);
    }
}

static void test_unsupported_media_type(void **state)
{
    (void)state;
    static const char *const bad[] = {"text/plain", "application/x-www-form-urlencoded",
                                      "application/jsonx", "application/octet-stream", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_req q = {.method = "POST", .url = server_url(&srv, "/v1/loss"),
                      .content_type = bad[i], .body = "{}", .len = 2};
        http_resp r;
        http_do(&q, &r);
        expect_error(&r, 415, "unsupported_media_type");
        http_resp_free(&r);
    }
    /* Parameters and case do not matter: these bodies are read (and are not a request). */
    static const char *const good[] = {"application/json; charset=utf-8", "APPLICATION/JSON",
                                       "application/json ;charset=UTF-8"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        http_req q = {.method = "POST", .url = server_url(&srv, "/v1/loss"),
                      .content_type = good[i], .body = "{", .len = 1};
        http_resp r;
        http_do(&q, &r);
        expect_error(&r, 400, "malformed_json");
        http_resp_free(&r);
    }
}

static void test_json_body_limit(void **state)
{
    (void)state;
    char *body = malloc(JSON_LIMIT + 2);
    memset(body, ' ', JSON_LIMIT + 1);
    body[0] = '{';
    body[JSON_LIMIT - 1] = '}';
    CURL *c = curl_easy_init();
    /* One byte over: 413 at once, from Content-Length; the connection survives. */
    http_req q = {.method = "POST", .url = server_url(&srv, "/v1/loss"),
                  .content_type = "application/json", .body = body, .len = JSON_LIMIT + 1,
                  .curl = c};
    http_resp r;
    http_do(&q, &r);
    expect_error(&r, 413, "payload_too_large");
    http_resp_free(&r);
    /* Chunked (no Content-Length): 413 when the limit is crossed. */
    q.chunked = 1;
    http_do(&q, &r);
    expect_error(&r, 413, "payload_too_large");
    http_resp_free(&r);
    /* Exactly the limit is read: a JSON object, so a validation error, not a size one. */
    q.chunked = 0;
    q.len = JSON_LIMIT;
    http_do(&q, &r);
    assert_int_equal(r.status, 422);
    http_resp_free(&r);
    q.chunked = 1;
    http_do(&q, &r);
    assert_int_equal(r.status, 422);
    http_resp_free(&r);
    /* A large body far beyond the limit: answered before it is read.  The
     * client asks with Expect: 100-continue, as HTTP/1.1 clients sending big
     * bodies should: without it the server's early answer and close can
     * race the upload and the client may see EPIPE instead of the 413. */
    size_t big = 8u << 20;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    q.body = huge;
    q.len = big;
    q.chunked = 0;
    q.expect_continue = 1;
    q.curl = NULL;
    http_do(&q, &r);
    expect_error(&r, 413, "payload_too_large");
    assert_non_null(strstr(r.body, "8388608"));
    http_resp_free(&r);
    free(huge);
    curl_easy_cleanup(c);
    free(body);
    /* The server is fine afterwards. */
    assert_int_equal(http_get(server_url(&srv, "/livez"), &r), 200);
    http_resp_free(&r);
}

static void test_body_limit(void **state)
{
    (void)state;
    /* --max-body-bytes below --max-json-body-bytes bounds JSON bodies too. */
    server s;
    static const char *const args[] = {"--max-body-bytes", "2000", "--max-json-body-bytes",
                                       "64MiB", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    char body[3000];
    memset(body, ' ', sizeof body);
    http_resp r;
    http_post_json(server_url(&s, "/v1/loss"), body, 2001, &r);
    expect_error(&r, 413, "payload_too_large");
    assert_non_null(strstr(r.body, "2000"));
    http_resp_free(&r);
    http_post_json(server_url(&s, "/v1/loss"), body, 2000, &r);
    expect_error(&r, 400, "malformed_json");
    http_resp_free(&r);
    /* A body sent to an endpoint that reads none is ignored up to a small limit. */
    http_req q = {.method = "GET", .url = server_url(&s, "/livez"), .body = body, .len = 100};
    assert_int_equal(http_do(&q, &r), 200);
    http_resp_free(&r);
    char *big = calloc(1, 70000);
    q.body = big;
    q.len = 70000;
    http_do(&q, &r);
    expect_error(&r, 413, "payload_too_large");
    http_resp_free(&r);
    q.chunked = 1; /* and when only the bytes tell */
    http_do(&q, &r);
    expect_error(&r, 413, "payload_too_large");
    http_resp_free(&r);
    free(big);
    assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
}

/* Golden priors: {"anchors": {"shape": [A, 4], "data": [...]}}. */
static void check_anchors(const char *preset)
{
    const char *dir = getenv("MBX_GOLDEN_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/priors/%s.json", dir, preset);
    json_t *golden = json_load_file(path, 0, NULL);
    assert_non_null(golden);
    const json_t *want = json_object_get(golden, "anchors");
    json_t *wdata = json_object_get(want, "data");
    for (int f = -1; f < 3; f++) {
        char url_path[256];
        if (f < 0)
            snprintf(url_path, sizeof url_path, "/v1/anchors/%s", preset); /* default: nested */
        else
            snprintf(url_path, sizeof url_path, "/v1/anchors/%s?tensor_format=%s", preset,
                     tensor_form_names[f]);
        http_resp r;
        assert_int_equal(http_get(server_url(&srv, url_path), &r), 200);
        assert_string_equal(r.content_type, "application/json");
        json_t *got = json_loadb(r.body, r.len, 0, NULL);
        assert_non_null(got);
        if (f <= 0)
            assert_true(json_is_array(got));
        else if (f == FORM_FLAT)
            assert_non_null(json_object_get(got, "data"));
        else
            assert_string_equal(json_string_value(json_object_get(got, "dtype")), "float32");
        double *data;
        int64_t shape[8];
        int rank;
        assert_int_equal(tensor_decode(got, &data, shape, &rank), 0);
        assert_int_equal(rank, 2);
        assert_int_equal(shape[0], json_integer_value(json_array_get(json_object_get(want, "shape"), 0)));
        assert_int_equal(shape[1], 4);
        for (size_t i = 0; i < json_array_size(wdata); i++) {
            float w = (float)json_number_value(json_array_get(wdata, i));
            if ((float)data[i] != w) {
                fprintf(stderr, "%s %s: anchor value %zu is %.9g, expected %.9g\n", preset,
                        f < 0 ? "default" : tensor_form_names[f], i, data[i], (double)w);
                fail();
            }
        }
        free(data);
        json_decref(got);
        http_resp_free(&r);
    }
    json_decref(golden);
}

static void test_anchors(void **state)
{
    (void)state;
    check_anchors("ssd300_voc");
    check_anchors("ssd300_coco");
    check_anchors("ssd512_voc");
    http_resp r;
    http_get(server_url(&srv, "/v1/anchors/ssd999"), &r);
    expect_error(&r, 404, "not_found");
    assert_non_null(strstr(r.body, "ssd999"));
    http_resp_free(&r);
    http_get(server_url(&srv, "/v1/anchors/ssd300_voc?tensor_format=png"), &r);
    expect_error(&r, 422, "out_of_range");
    http_resp_free(&r);
}

static double requests_total(const char *handler, int code)
{
    char series[256];
    snprintf(series, sizeof series, "multibox_http_requests_total{handler=\"%s\",code=\"%d\"}",
             handler, code);
    http_resp r;
    http_get(server_url(&srv, "/metrics"), &r);
    double v = metric_value(r.body, series);
    http_resp_free(&r);
    return v < 0 ? 0 : v;
}

static void test_metrics_move(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http_get(server_url(&srv, "/metrics"), &r), 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    static const char *const names[] = {
        "# TYPE multibox_http_requests_total counter",
        "# TYPE multibox_http_request_duration_seconds histogram",
        "# TYPE multibox_http_request_size_bytes histogram",
        "# TYPE multibox_http_response_size_bytes histogram",
        "# TYPE multibox_compute_duration_seconds histogram",
        "# TYPE multibox_queue_wait_seconds histogram",
        "# TYPE multibox_queue_depth gauge",
        "# TYPE multibox_requests_in_flight gauge",
        "# TYPE multibox_build_info gauge",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
        "multibox_build_info{version=\"",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(r.body, names[i]))
            fprintf(stderr, "missing: %s\n", names[i]);
        assert_non_null(strstr(r.body, names[i]));
    }
    /* The scrape itself is in flight. */
    assert_true(metric_value(r.body, "multibox_requests_in_flight") >= 1);
    assert_true(metric_value(r.body, "process_resident_memory_bytes") > 0);
    http_resp_free(&r);

    double livez0 = requests_total("/livez", 200), miss0 = requests_total("unmatched", 404);
    double loss0 = requests_total("/v1/loss", 400);
    double compute0 = -1;
    for (int i = 0; i < 3; i++) {
        http_get(server_url(&srv, "/livez"), &r);
        http_resp_free(&r);
    }
    http_get(server_url(&srv, "/no/such/thing"), &r);
    http_resp_free(&r);
    http_post_json(server_url(&srv, "/v1/loss"), "[", 1, &r);
    http_resp_free(&r);
    assert_true(requests_total("/livez", 200) == livez0 + 3);
    assert_true(requests_total("unmatched", 404) == miss0 + 1);
    assert_true(requests_total("/v1/loss", 400) == loss0 + 1);

    /* A job moves the compute and queue-wait histograms. */
    http_get(server_url(&srv, "/metrics"), &r);
    compute0 = metric_value(r.body, "multibox_compute_duration_seconds_count");
    double wait0 = metric_value(r.body, "multibox_queue_wait_seconds_count");
    double size0 = metric_value(r.body, "multibox_http_request_size_bytes_sum{handler=\"/v1/loss\"}");
    http_resp_free(&r);
    http_post_json(server_url(&srv, "/v1/loss"), "[1,2]", 5, &r);
    http_resp_free(&r);
    http_get(server_url(&srv, "/metrics"), &r);
    assert_true(metric_value(r.body, "multibox_compute_duration_seconds_count") == compute0 + 1);
    assert_true(metric_value(r.body, "multibox_queue_wait_seconds_count") == wait0 + 1);
    assert_true(metric_value(r.body, "multibox_http_request_size_bytes_sum{handler=\"/v1/loss\"}") ==
                size0 + 5);
    assert_true(metric_value(r.body, "multibox_queue_depth") == 0);
    http_resp_free(&r);
}

static void test_access_log(void **state)
{
    (void)state;
    static const char marker[] = "{\"SECRET-PAYLOAD-MARKER\": [1, 2, 3]}";
    http_resp r;
    http_post_json(server_url(&srv, "/v1/loss"), marker, sizeof marker - 1, &r);
    http_resp_free(&r);
    http_get(server_url(&srv, "/readyz"), &r);
    http_resp_free(&r);
    char line[128];
    snprintf(line, sizeof line, "method=POST path=/v1/loss status=422 bytes_in=%zu ",
             sizeof marker - 1);
    assert_true(server_wait_log(&srv, line, 5));
    assert_true(server_wait_log(&srv, "method=GET path=/readyz status=200 bytes_in=0 bytes_out=3 duration_ms=", 5));
    assert_false(server_log_contains(&srv, "SECRET-PAYLOAD-MARKER"));
}

static void test_json_log(void **state)
{
    (void)state;
    server s;
    static const char *const args[] = {"--log-format", "json", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    http_resp r;
    http_get(server_url(&s, "/nope\"quote"), &r);
    http_resp_free(&r);
    assert_true(server_wait_log(&s, "\"status\":404", 5));
    /* Every line is one JSON object; the request line has the fields. */
    int requests = 0;
    char *log = strdup(s.log);
    for (char *save = NULL, *line = strtok_r(log, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j)
            fprintf(stderr, "not JSON: %s\n", line);
        assert_non_null(j);
        assert_non_null(json_string_value(json_object_get(j, "ts")));
        assert_non_null(json_string_value(json_object_get(j, "level")));
        if (json_object_get(j, "status")) {
            requests++;
            assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
            assert_string_equal(json_string_value(json_object_get(j, "path")), "/nope\"quote");
            assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
            assert_true(json_is_integer(json_object_get(j, "bytes_in")));
            assert_true(json_is_integer(json_object_get(j, "bytes_out")));
            assert_true(json_is_number(json_object_get(j, "duration_ms")));
        }
        json_decref(j);
    }
    free(log);
    assert_int_equal(requests, 1);
    assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
}

/*
 * Threads of process pid whose CPU affinity is a single CPU (the
 * Cpus_allowed_list of /proc/PID/task/TID/status holds no ',' or '-');
 * *cpu (if cpu) gets the CPU of the last one found.
 */
static int single_cpu_threads(pid_t pid, int *cpu)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char file[320];
        snprintf(file, sizeof file, "/proc/%d/task/%s/status", (int)pid, e->d_name);
        FILE *f = fopen(file, "r"); /* /proc files have no size: read by lines */
        if (!f)
            continue; /* the thread ended meanwhile */
        char line[256];
        int found = 0;
        while (!found && fgets(line, sizeof line, f))
            if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
                found = 1;
                if (strpbrk(line + 18, ",-") == NULL) {
                    n++;
                    if (cpu)
                        *cpu = (int)strtol(line + 18, NULL, 10);
                }
            }
        fclose(f);
        assert_true(found);
    }
    closedir(d);
    return n;
}

/*
 * --pin-workers: with always, a worker that ran units of a request alone
 * on the server is kept on one CPU afterwards and the start-up line says
 * over how many CPUs the workers spread; with never no thread is confined.
 * Needs two CPUs.
 */
static void test_pin_workers(void **state)
{
    (void)state;
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    const int ncpus = CPU_COUNT(&set);
    if (ncpus < 2)
        skip();
    json_t *golden = load_golden("ssd300_voc_b2");
    char *body = json_dumps(json_object_get(golden, "request"), JSON_COMPACT);
    assert_non_null(body);
    static const char *const modes[] = {"always", "never"};
    for (int m = 0; m < 2; m++) {
        server s;
        const char *const args[] = {"--workers",   "2",      "--pin-workers", modes[m],
                                    "--pin-http", "never", NULL};
        assert_int_equal(server_start(&s, args, NULL, 0), 0);
        char want[64];
        snprintf(want, sizeof want, "pinned_cpus=%d ", m == 0 ? ncpus : 0);
        assert_true(server_wait_log(&s, want, 5));
        for (int i = 0; i < 3; i++) {
            http_resp r;
            http_post_json(server_url(&s, "/v1/loss"), body, strlen(body), &r);
            assert_int_equal(r.status, 200);
            http_resp_free(&r);
        }
        const int pinned = single_cpu_threads(s.pid, NULL);
        if (m == 0 && pinned < 1)
            fail_msg("--pin-workers always: no thread kept on one CPU");
        if (m == 1 && pinned != 0)
            fail_msg("--pin-workers never: %d threads kept on one CPU", pinned);
        assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
    }
    free(body);
    json_decref(golden);
}

/* The CPUs this process may use (*all), its last and next to last; -1 if fewer than two. */
static int last_two_cpus(cpu_set_t *all, int *last, int *before_last)
{
    assert_int_equal(sched_getaffinity(0, sizeof *all, all), 0);
    *last = *before_last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, all)) {
            *before_last = *last;
            *last = c;
        }
    return *before_last < 0 ? -1 : 0;
}

/* Keeps the calling thread on cpu alone (or, with cpu < 0, on the CPUs of *all). */
static void run_on(int cpu, const cpu_set_t *all)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    if (cpu >= 0)
        CPU_SET(cpu, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, cpu >= 0 ? &one : all), 0);
}

/*
 * --pin-http: with always, after a first request (sent from the next to
 * last allowed CPU) one thread, the HTTP thread (the workers are left free
 * here), is kept on the CPU the start-up line names, the last allowed one;
 * a request sent from that CPU moves it to the next to last (loopback
 * packets are taken on the sender's CPU: the thread keeps off its local
 * client's), and one sent from there moves it back.  With never no thread
 * is confined.  Needs two CPUs.
 */
static void test_pin_http(void **state)
{
    (void)state;
    cpu_set_t all;
    int last, before_last;
    if (last_two_cpus(&all, &last, &before_last) != 0)
        skip();
    static const char *const modes[] = {"always", "never"};
    for (int m = 0; m < 2; m++) {
        server s;
        const char *const args[] = {"--workers",  "2",      "--pin-workers", "never",
                                    "--pin-http", modes[m], NULL};
        assert_int_equal(server_start(&s, args, NULL, 0), 0);
        char want[64];
        snprintf(want, sizeof want, "http_cpu=%d ", m == 0 ? last : -1);
        assert_true(server_wait_log(&s, want, 5));
        const int from[] = {before_last, last, before_last};
        const int then[] = {last, before_last, last};
        for (int i = 0; i < 3; i++) {
            run_on(from[i], &all);
            http_resp r;
            http_get(server_url(&s, "/v2/health/live"), &r);
            run_on(-1, &all);
            assert_int_equal(r.status, 200);
            http_resp_free(&r);
            int cpu = -1;
            const int pinned = single_cpu_threads(s.pid, &cpu);
            if (m == 1) {
                assert_int_equal(pinned, 0);
                break;
            }
            assert_int_equal(pinned, 1);
            if (cpu != then[i])
                fail_msg("a request from CPU %d left the HTTP thread on CPU %d, not %d", from[i],
                         cpu, then[i]);
        }
        assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
    }
}

/* A child process that keeps cpu busy until killed; returns once it spins there. */
static pid_t busy_loop_on(int cpu)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        sched_setaffinity(0, sizeof one, &one);
        close(ready[0]);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        close(ready[1]);
        for (volatile unsigned long spin = 0;; spin++)
            ;
    }
    close(ready[1]);
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);
    close(ready[0]);
    usleep(20 * 1000); /* a few of the scheduler's slices spent spinning */
    return pid;
}

/*
 * --pin-http under contention: with a busy loop on the HTTP thread's CPU
 * (and the client on the other one), 16 MiB uploads (five at most: other
 * tests may run beside this one) leave the thread free to run on every
 * CPU; once the loop is gone and the thread has been free for 2 s, the
 * next request keeps it on its CPU again.  Needs two CPUs.
 */
static void test_pin_http_contended(void **state)
{
    (void)state;
    cpu_set_t all;
    int last, before_last;
    if (last_two_cpus(&all, &last, &before_last) != 0)
        skip();
    server s;
    const char *const args[] = {"--workers",  "2",      "--pin-workers", "never",
                                "--pin-http", "always", NULL};
    assert_int_equal(server_start(&s, args, NULL, 0), 0);
    const size_t len = (size_t)16 << 20;
    char *junk = malloc(len);
    assert_non_null(junk);
    memset(junk, ' ', len);
    run_on(before_last, &all);
    http_resp r;
    http_get(server_url(&s, "/v2/health/live"), &r); /* the first request places the thread */
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    int cpu = -1;
    assert_int_equal(single_cpu_threads(s.pid, &cpu), 1);
    assert_int_equal(cpu, last);

    pid_t busy = busy_loop_on(last);
    int kept = 1;
    for (int i = 0; i < 5 && kept; i++) {
        http_req req = {.method = "POST", .url = server_url(&s, "/v1/loss"),
                        .content_type = "application/json", .body = junk, .len = len};
        http_do(&req, &r);
        assert_true(r.status >= 400 && r.status < 500);
        http_resp_free(&r);
        kept = single_cpu_threads(s.pid, NULL);
    }
    kill(busy, SIGKILL);
    assert_int_equal(waitpid(busy, NULL, 0), busy);
    if (kept != 0)
        fail_msg("with its CPU busy, the HTTP thread is still kept on one CPU");

    usleep(2100 * 1000);
    http_get(server_url(&s, "/v2/health/live"), &r);
    run_on(-1, &all);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(single_cpu_threads(s.pid, &cpu), 1);
    assert_int_equal(cpu, last);
    free(junk);
    assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
}

static void test_help_version(void **state)
{
    (void)state;
    char *out;
    static const char *const help[] = {"--help", NULL};
    assert_int_equal(run_multiboxd(help, NULL, &out), 0);
    static const char *const words[] = {
        "--listen", "--workers", "--queue-depth", "--max-body-bytes", "--max-json-body-bytes",
        "--request-timeout", "--drain-timeout", "--log-format", "--probe", "--help",
        "--version", "MULTIBOX_LISTEN", "MULTIBOX_WORKERS", "MULTIBOX_QUEUE_DEPTH",
        "MULTIBOX_MAX_BODY_BYTES", "MULTIBOX_MAX_JSON_BODY_BYTES", "MULTIBOX_REQUEST_TIMEOUT",
        "MULTIBOX_DRAIN_TIMEOUT", "MULTIBOX_LOG_FORMAT", "--stream-upload",
        "MULTIBOX_STREAM_UPLOAD", "--pin-workers", "MULTIBOX_PIN_WORKERS", "--pin-http",
        "MULTIBOX_PIN_HTTP"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        assert_non_null(strstr(out, words[i]));
    free(out);
    static const char *const version[] = {"--version", NULL};
    assert_int_equal(run_multiboxd(version, NULL, &out), 0);
    assert_true(strncmp(out, "multiboxd ", 10) == 0);
    assert_true(out[10] >= '0' && out[10] <= '9');
    free(out);
}

static void test_invalid_values(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"--workers", "0", "--workers"},
        {"--queue-depth", "many", "--queue-depth"},
        {"--max-body-bytes", "12XB", "--max-body-bytes"},
        {"--request-timeout", "soon", "--request-timeout"},
        {"--log-format", "yaml", "--log-format"},
        {"--listen", "8080", "--listen"},
        {"--frobnicate", "1", "--frobnicate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {bad[i][0], bad[i][1], NULL};
        char *out;
        assert_int_equal(run_multiboxd(args, NULL, &out), 2);
        assert_non_null(strstr(out, bad[i][2]));
        free(out);
    }
    static const char *const env[] = {"MULTIBOX_WORKERS=abc", NULL};
    char *out;
    assert_int_equal(run_multiboxd(NULL, env, &out), 2);
    assert_non_null(strstr(out, "MULTIBOX_WORKERS"));
    free(out);
}

static void test_env_twins(void **state)
{
    (void)state;
    /* The twin of --listen alone places the server; the JSON limit comes from its twin. */
    server s;
    static const char *const env[] = {"MULTIBOX_LISTEN=127.0.0.1:0",
                                      "MULTIBOX_MAX_JSON_BODY_BYTES=100",
                                      "MULTIBOX_QUEUE_DEPTH=3", NULL};
    assert_int_equal(server_start(&s, NULL, env, 1), 0);
    assert_true(server_log_contains(&s, "queue_depth=3"));
    char body[200];
    memset(body, ' ', sizeof body);
    http_resp r;
    http_post_json(server_url(&s, "/v1/loss"), body, sizeof body, &r);
    expect_error(&r, 413, "payload_too_large");
    http_resp_free(&r);
    assert_int_equal(server_stop(&s, SIGTERM, 30), 0);

    /* A flag overrides its twin. */
    static const char *const args[] = {"--max-json-body-bytes", "1KiB", NULL};
    assert_int_equal(server_start(&s, args, env, 1), 0);
    http_post_json(server_url(&s, "/v1/loss"), body, sizeof body, &r);
    expect_error(&r, 400, "malformed_json");
    http_resp_free(&r);
    assert_int_equal(server_stop(&s, SIGTERM, 30), 0);
}

static void test_port_in_use(void **state)
{
    (void)state;
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", srv.port);
    const char *args[] = {"--listen", listen, NULL};
    char *out;
    assert_int_equal(run_multiboxd(args, NULL, &out), 1);
    assert_non_null(strstr(out, "cannot listen"));
    free(out);
}

static void test_probe(void **state)
{
    (void)state;
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/livez", srv.port);
    const char *ok[] = {"--probe", url, NULL};
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", srv.port);
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 0);
    snprintf(url, sizeof url, "http://localhost:%d/livez", srv.port);
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nope", srv.port);
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 1);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/loss", srv.port); /* 405 */
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 1);
    snprintf(url, sizeof url, "http://127.0.0.1:1/livez"); /* nobody listens */
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 1);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/livez", srv.port);
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 2);
    snprintf(url, sizeof url, "not a url");
    assert_int_equal(run_multiboxd(ok, NULL, NULL), 2);
}

int main(int argc, char **argv)
{
    harness_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_livez_readyz),
        cmocka_unit_test(test_openapi),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_unsupported_media_type),
        cmocka_unit_test(test_json_body_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_anchors),
        cmocka_unit_test(test_metrics_move),
        cmocka_unit_test(test_access_log),
        cmocka_unit_test(test_json_log),
        cmocka_unit_test(test_pin_workers),
        cmocka_unit_test(test_pin_http),
        cmocka_unit_test(test_pin_http_contended),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_env_twins),
        cmocka_unit_test(test_port_in_use),
        cmocka_unit_test(test_probe),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed || teardown_failed ? 1 : 0;
}
