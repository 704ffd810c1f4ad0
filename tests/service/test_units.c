/*
 * test_units.c - the service's pure parts without a server: flag and
 * environment parsing (sizes, durations, HOST:PORT, twins, precedence),
 * the error-to-status table, the router, the metrics text, the JSON
 * escaping of log lines, the worker pinning policy and the body copy with
 * streaming stores.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "affinity.h"
#include "copy.h"
#include "http_status.h"
#include "metrics.h"
#include "multibox/multibox.h"
#include "router.h"

/* A sample's value in Prometheus text, -1 when absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(svc_parse_size("512MiB", &v), 0);
    assert_true(v == 512ull << 20);
    assert_int_equal(svc_parse_size("512mib", &v), 0);
    assert_true(v == 512ull << 20);
    assert_int_equal(svc_parse_size("64M", &v), 0);
    assert_true(v == 64ull << 20);
    assert_int_equal(svc_parse_size("2MB", &v), 0);
    assert_true(v == 2000000);
    assert_int_equal(svc_parse_size("1GiB", &v), 0);
    assert_true(v == 1ull << 30);
    assert_int_equal(svc_parse_size("4k", &v), 0);
    assert_true(v == 4096);
    assert_int_equal(svc_parse_size("12345", &v), 0);
    assert_true(v == 12345);
    assert_int_equal(svc_parse_size("100B", &v), 0);
    assert_true(v == 100);
    assert_int_equal(svc_parse_size("", &v), -1);
    assert_int_equal(svc_parse_size("MiB", &v), -1);
    assert_int_equal(svc_parse_size("-5", &v), -1);
    assert_int_equal(svc_parse_size("5 XB", &v), -1);
    assert_int_equal(svc_parse_size("1.5MiB", &v), -1);
    assert_int_equal(svc_parse_size("99999999999999999999", &v), -1);
    assert_int_equal(svc_parse_size("17179869184TiB", &v), -1); /* overflows 64 bits */
}

static void test_durations(void **state)
{
    (void)state;
    double d;
    assert_int_equal(svc_parse_duration("60", &d), 0);
    assert_true(d == 60);
    assert_int_equal(svc_parse_duration("60s", &d), 0);
    assert_true(d == 60);
    assert_int_equal(svc_parse_duration("1500ms", &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(svc_parse_duration("2m", &d), 0);
    assert_true(d == 120);
    assert_int_equal(svc_parse_duration("1h", &d), 0);
    assert_true(d == 3600);
    assert_int_equal(svc_parse_duration("0.5", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(svc_parse_duration("", &d), -1);
    assert_int_equal(svc_parse_duration("s", &d), -1);
    assert_int_equal(svc_parse_duration("-1", &d), -1);
    assert_int_equal(svc_parse_duration("10 years", &d), -1);
    assert_int_equal(svc_parse_duration("nan", &d), -1);
    assert_int_equal(svc_parse_duration("inf", &d), -1);
}

static void test_listen(void **state)
{
    (void)state;
    char host[256];
    int port;
    assert_int_equal(svc_parse_listen("0.0.0.0:8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 8080);
    assert_int_equal(svc_parse_listen("127.0.0.1:0", host, sizeof host, &port), 0);
    assert_int_equal(port, 0);
    assert_int_equal(svc_parse_listen("[::1]:9000", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9000);
    assert_int_equal(svc_parse_listen("localhost:65535", host, sizeof host, &port), 0);
    assert_int_equal(svc_parse_listen("localhost:65536", host, sizeof host, &port), -1);
    assert_int_equal(svc_parse_listen("8080", host, sizeof host, &port), -1);
    assert_int_equal(svc_parse_listen(":8080", host, sizeof host, &port), -1);
    assert_int_equal(svc_parse_listen("host:", host, sizeof host, &port), -1);
    assert_int_equal(svc_parse_listen("host:80x", host, sizeof host, &port), -1);
    assert_int_equal(svc_parse_listen("::1:80", host, sizeof host, &port), -1);
    assert_int_equal(svc_parse_listen("[::1]80", host, sizeof host, &port), -1);
}

static void clear_env(void)
{
    static const char *const names[] = {
        "MULTIBOX_LISTEN", "MULTIBOX_WORKERS", "MULTIBOX_QUEUE_DEPTH",
        "MULTIBOX_MAX_BODY_BYTES", "MULTIBOX_MAX_JSON_BODY_BYTES", "MULTIBOX_REQUEST_TIMEOUT",
        "MULTIBOX_DRAIN_TIMEOUT", "MULTIBOX_LOG_FORMAT", "MULTIBOX_STREAM_UPLOAD",
        "MULTIBOX_PIN_WORKERS", "MULTIBOX_PIN_HTTP"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
}

static int parse(svc_config *cfg, char *err, const char *a1, const char *a2, const char *a3)
{
    char *argv[5] = {"multiboxd", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
    return svc_config_parse(cfg, argc, argv, err, 256);
}

static void test_config_defaults(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    clear_env();
    assert_int_equal(parse(&cfg, err, NULL, NULL, NULL), 0);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 8080);
    assert_int_equal(cfg.workers, svc_usable_cpus());
    assert_true(cfg.workers >= 1);
    assert_int_equal(cfg.queue_depth, 64);
    assert_true(cfg.max_body_bytes == 512ull << 20);
    assert_true(cfg.max_json_body_bytes == 64ull << 20);
    assert_true(cfg.request_timeout_s == 60);
    assert_true(cfg.drain_timeout_s == 30);
    assert_int_equal(cfg.log_format, SVC_LOG_TEXT);
    assert_int_equal(cfg.stream_upload, SVC_STREAM_AUTO);
    assert_int_equal(cfg.pin_workers, SVC_PIN_AUTO);
    assert_int_equal(cfg.pin_http, SVC_PIN_AUTO);
    assert_int_equal(cfg.help, 0);
    assert_int_equal(cfg.version, 0);
    assert_string_equal(cfg.probe_url, "");
}

/*
 * The value of cfg's k-th auto|always|never option (--stream-upload,
 * --pin-workers, --pin-http): 0 auto, 1 always, 2 never in each enum.
 */
static int tri_value(const svc_config *cfg, int k)
{
    return k == 0 ? (int)cfg->stream_upload : k == 1 ? (int)cfg->pin_workers : (int)cfg->pin_http;
}

static void test_config_flags_and_env(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    clear_env();
    assert_int_equal(parse(&cfg, err, "--workers", "3", "--queue-depth=0"), 0);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.queue_depth, 0);

    setenv("MULTIBOX_QUEUE_DEPTH", "7", 1);
    setenv("MULTIBOX_MAX_BODY_BYTES", "1MiB", 1);
    setenv("MULTIBOX_REQUEST_TIMEOUT", "5s", 1);
    setenv("MULTIBOX_LOG_FORMAT", "json", 1);
    setenv("MULTIBOX_LISTEN", "127.0.0.1:0", 1);
    assert_int_equal(parse(&cfg, err, NULL, NULL, NULL), 0);
    assert_int_equal(cfg.queue_depth, 7);
    assert_true(cfg.max_body_bytes == 1ull << 20);
    assert_true(cfg.request_timeout_s == 5);
    assert_int_equal(cfg.log_format, SVC_LOG_JSON);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 0);
    /* The auto|always|never options: by flag, by their twin, by flag=value. */
    static const char *const tri[][3] = {
        {"--stream-upload", "MULTIBOX_STREAM_UPLOAD", "--stream-upload=auto"},
        {"--pin-workers", "MULTIBOX_PIN_WORKERS", "--pin-workers=auto"},
        {"--pin-http", "MULTIBOX_PIN_HTTP", "--pin-http=auto"}};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(parse(&cfg, err, tri[k][0], "always", NULL), 0);
        assert_int_equal(tri_value(&cfg, k), SVC_PIN_ALWAYS);
        setenv(tri[k][1], "never", 1);
        assert_int_equal(parse(&cfg, err, NULL, NULL, NULL), 0);
        assert_int_equal(tri_value(&cfg, k), SVC_PIN_NEVER);
        assert_int_equal(parse(&cfg, err, tri[k][2], NULL, NULL), 0);
        assert_int_equal(tri_value(&cfg, k), SVC_PIN_AUTO);
        for (int o = 0; o < 3; o++) /* the others keep their defaults */
            assert_int_equal(tri_value(&cfg, o), o == k ? SVC_PIN_AUTO : o < k ? SVC_PIN_NEVER : 0);
    }

    /* A flag overrides its twin, and then the twin is not even parsed. */
    setenv("MULTIBOX_WORKERS", "not-a-number", 1);
    assert_int_equal(parse(&cfg, err, "--workers", "2", NULL), 0);
    assert_int_equal(cfg.workers, 2);
    assert_int_equal(parse(&cfg, err, NULL, NULL, NULL), -1);
    assert_non_null(strstr(err, "MULTIBOX_WORKERS"));

    /* An empty twin counts as unset. */
    setenv("MULTIBOX_WORKERS", "", 1);
    assert_int_equal(parse(&cfg, err, NULL, NULL, NULL), 0);
    assert_int_equal(cfg.workers, svc_usable_cpus());
    clear_env();
}

static void test_config_errors(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    clear_env();
    static const char *const bad[][2] = {
        {"--workers", "0"},          {"--workers", "1025"},
        {"--workers", "2x"},         {"--queue-depth", "-1"},
        {"--max-body-bytes", "0"},   {"--max-json-body-bytes", "lots"},
        {"--request-timeout", "0"},  {"--request-timeout", "abc"},
        {"--drain-timeout", "-3"},   {"--log-format", "xml"},
        {"--stream-upload", "yes"},   {"--pin-workers", "0"},
        {"--pin-http", "sometimes"},
        {"--listen", "nohostport"},  {"--bogus", "1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(parse(&cfg, err, bad[i][0], bad[i][1], NULL), -1);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(parse(&cfg, err, "--workers", NULL, NULL), -1); /* missing value */
    assert_int_equal(parse(&cfg, err, "positional", NULL, NULL), -1);
    assert_int_equal(parse(&cfg, err, "--help=yes", NULL, NULL), -1);
    assert_int_equal(parse(&cfg, err, "--help", NULL, NULL), 0);
    assert_int_equal(cfg.help, 1);
    assert_int_equal(parse(&cfg, err, "--version", NULL, NULL), 0);
    assert_int_equal(cfg.version, 1);
    assert_int_equal(parse(&cfg, err, "--probe", "http://127.0.0.1:1/livez", NULL), 0);
    assert_string_equal(cfg.probe_url, "http://127.0.0.1:1/livez");
    assert_int_equal(parse(&cfg, err, "--drain-timeout", "0", NULL), 0);
    assert_true(cfg.drain_timeout_s == 0);
}

static void test_status_table(void **state)
{
    (void)state;
    /* Every code of the error list has a deliberate status. */
    for (int i = 1; i <= MBX_ERROR_COUNT; i++) {
        int st = svc_http_status(-i);
        assert_true(st == 400 || st == 401 || st == 404 || st == 405 || st == 413 ||
                    st == 415 || st == 422 || st == 500 || st == 503);
    }
    assert_int_equal(svc_http_status(MBX_E_MALFORMED_JSON), 400);
    assert_int_equal(svc_http_status(MBX_E_BAD_BASE64), 400);
    assert_int_equal(svc_http_status(MBX_E_BAD_FRAMING), 400);
    assert_int_equal(svc_http_status(MBX_E_UNAUTHORIZED), 401);
    assert_int_equal(svc_http_status(MBX_E_NOT_FOUND), 404);
    assert_int_equal(svc_http_status(MBX_E_METHOD_NOT_ALLOWED), 405);
    assert_int_equal(svc_http_status(MBX_E_PAYLOAD_TOO_LARGE), 413);
    assert_int_equal(svc_http_status(MBX_E_UNSUPPORTED_MEDIA_TYPE), 415);
    static const int validation[] = {
        MBX_E_MISSING_FIELD, MBX_E_UNKNOWN_FIELD, MBX_E_WRONG_TYPE, MBX_E_SHAPE_MISMATCH,
        MBX_E_SHAPE_OVERFLOW, MBX_E_OUT_OF_RANGE, MBX_E_NOT_FINITE, MBX_E_DEGENERATE_BOX,
        MBX_E_BAD_LABEL, MBX_E_BAD_CONFIG, MBX_E_UNKNOWN_PRESET};
    for (size_t i = 0; i < sizeof validation / sizeof validation[0]; i++)
        assert_int_equal(svc_http_status(validation[i]), 422);
    assert_int_equal(svc_http_status(MBX_E_OVERLOADED), 503);
    assert_int_equal(svc_http_status(MBX_E_DRAINING), 503);
    assert_true(svc_http_retryable(MBX_E_OVERLOADED));
    assert_true(svc_http_retryable(MBX_E_DRAINING));
    assert_false(svc_http_retryable(MBX_E_BAD_LABEL));
    assert_int_equal(svc_http_status(MBX_E_INTERNAL), 500);
    assert_int_equal(svc_http_status(MBX_E_OUT_OF_MEMORY), 500);
    assert_int_equal(svc_http_status(0), 500);
    assert_int_equal(svc_http_status(-1000), 500);
    assert_int_equal(svc_http_status(17), 500);
}

static void dummy(struct svc_request *r)
{
    (void)r;
}

static const svc_route routes[] = {
    {"/v1/loss", SVC_ROUTE_WORK, {{"POST", dummy, SVC_BODY_JSON}}},
    {"/v1/anchors/{preset}", SVC_ROUTE_WORK, {{"GET", dummy, SVC_BODY_NONE}}},
    {"/v2/models/{model}/versions/{version}", 0,
     {{"GET", dummy, SVC_BODY_NONE}, {"POST", dummy, SVC_BODY_BINARY}}},
    {"/livez", 0, {{"GET", dummy, SVC_BODY_NONE}}},
};

static void test_router(void **state)
{
    (void)state;
    svc_route_match m;
    int n = (int)(sizeof routes / sizeof routes[0]);
    svc_router_match(routes, n, "POST", "/v1/loss", &m);
    assert_int_equal(m.route, 0);
    assert_non_null(m.method);
    svc_router_match(routes, n, "GET", "/v1/loss", &m);
    assert_int_equal(m.route, 0);
    assert_null(m.method);
    svc_router_match(routes, n, "GET", "/v1/anchors/ssd300_voc", &m);
    assert_int_equal(m.route, 1);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.params[0], "ssd300_voc");
    svc_router_match(routes, n, "POST", "/v2/models/m/versions/3", &m);
    assert_int_equal(m.route, 2);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(m.params[0], "m");
    assert_string_equal(m.params[1], "3");
    assert_ptr_equal(m.method, &routes[2].methods[1]);
    static const char *const misses[] = {"/v1/anchors/", "/v1/anchors", "/v1/anchors/a/b",
                                         "/v1/loss/", "/v1/losss", "//v1/loss", "/", "",
                                         "/livez/", "/LIVEZ", "livez"};
    for (size_t i = 0; i < sizeof misses / sizeof misses[0]; i++) {
        svc_router_match(routes, n, "GET", misses[i], &m);
        assert_int_equal(m.route, -1);
    }
    char longseg[400] = "/v1/anchors/";
    memset(longseg + strlen(longseg), 'a', 300);
    svc_router_match(routes, n, "GET", longseg, &m);
    assert_int_equal(m.route, -1);

    char allow[64];
    svc_router_allow(&routes[2], allow, sizeof allow);
    assert_string_equal(allow, "GET, POST");
    svc_router_allow(&routes[0], allow, sizeof allow);
    assert_string_equal(allow, "POST");
}

static void test_metrics_text(void **state)
{
    (void)state;
    static const char *const handlers[] = {"/v1/loss", "/livez"};
    svc_metrics *m;
    assert_int_equal(svc_metrics_new(&m, handlers, 2, "9.9.9"), 0);
    svc_metrics_observe_request(m, 0, 200, 1000, 50, 0.003);
    svc_metrics_observe_request(m, 0, 200, 3000, 70, 0.2);
    svc_metrics_observe_request(m, 0, 422, 10, 90, 0.0001);
    svc_metrics_observe_request(m, 1, 200, 0, 3, 0.00001);
    svc_metrics_observe_request(m, 5, 200, 0, 3, 0.00001); /* ignored: no such handler */
    svc_metrics_observe_request(m, 0, 99, 0, 3, 0.00001);  /* ignored: not a status */
    svc_metrics_observe_compute(m, 0.02);
    svc_metrics_observe_queue_wait(m, 0.0002);
    svc_gauges g = {.queue_depth = 4, .in_flight = 9};
    char *text;
    size_t len;
    assert_int_equal(svc_metrics_render(m, &g, &text, &len), 0);
    assert_int_equal(strlen(text), len);

    assert_true(value_of(text, "multibox_http_requests_total{handler=\"/v1/loss\",code=\"200\"}") == 2);
    assert_true(value_of(text, "multibox_http_requests_total{handler=\"/v1/loss\",code=\"422\"}") == 1);
    assert_true(value_of(text, "multibox_http_requests_total{handler=\"/livez\",code=\"200\"}") == 1);
    assert_true(value_of(text, "multibox_http_requests_total{handler=\"/livez\",code=\"422\"}") == -1);
    /* durations 0.0001, 0.003, 0.2: cumulative buckets */
    assert_true(value_of(text, "multibox_http_request_duration_seconds_bucket{handler=\"/v1/loss\",le=\"0.0005\"}") == 1);
    assert_true(value_of(text, "multibox_http_request_duration_seconds_bucket{handler=\"/v1/loss\",le=\"0.0025\"}") == 1);
    assert_true(value_of(text, "multibox_http_request_duration_seconds_bucket{handler=\"/v1/loss\",le=\"0.005\"}") == 2);
    assert_true(value_of(text, "multibox_http_request_duration_seconds_bucket{handler=\"/v1/loss\",le=\"0.25\"}") == 3);
    assert_true(value_of(text, "multibox_http_request_duration_seconds_bucket{handler=\"/v1/loss\",le=\"+Inf\"}") == 3);
    assert_true(value_of(text, "multibox_http_request_duration_seconds_count{handler=\"/v1/loss\"}") == 3);
    assert_true(fabs(value_of(text, "multibox_http_request_duration_seconds_sum{handler=\"/v1/loss\"}") - 0.2031) < 1e-12);
    assert_true(value_of(text, "multibox_http_request_size_bytes_sum{handler=\"/v1/loss\"}") == 4010);
    assert_true(value_of(text, "multibox_http_request_size_bytes_bucket{handler=\"/v1/loss\",le=\"1024\"}") == 2);
    assert_true(value_of(text, "multibox_http_response_size_bytes_sum{handler=\"/v1/loss\"}") == 210);
    assert_true(value_of(text, "multibox_compute_duration_seconds_count") == 1);
    assert_true(value_of(text, "multibox_compute_duration_seconds_bucket{le=\"0.025\"}") == 1);
    assert_true(value_of(text, "multibox_compute_duration_seconds_bucket{le=\"0.01\"}") == 0);
    assert_true(value_of(text, "multibox_queue_wait_seconds_bucket{le=\"0.0005\"}") == 1);
    assert_true(value_of(text, "multibox_queue_depth") == 4);
    assert_true(value_of(text, "multibox_requests_in_flight") == 9);
    assert_true(value_of(text, "multibox_build_info{version=\"9.9.9\"}") == 1);
    assert_true(value_of(text, "process_cpu_seconds_total") >= 0);
    assert_true(value_of(text, "process_resident_memory_bytes") > 1e5);
    assert_true(value_of(text, "process_open_fds") >= 3);
    assert_true(value_of(text, "process_start_time_seconds") > 1e9);

    static const char *const typed[][2] = {
        {"multibox_http_requests_total", "counter"},
        {"multibox_http_request_duration_seconds", "histogram"},
        {"multibox_http_request_size_bytes", "histogram"},
        {"multibox_http_response_size_bytes", "histogram"},
        {"multibox_compute_duration_seconds", "histogram"},
        {"multibox_queue_wait_seconds", "histogram"},
        {"multibox_queue_depth", "gauge"},
        {"multibox_requests_in_flight", "gauge"},
        {"multibox_build_info", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_open_fds", "gauge"},
        {"process_start_time_seconds", "gauge"},
    };
    for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
        char line[160];
        snprintf(line, sizeof line, "\n# TYPE %s %s\n", typed[i][0], typed[i][1]);
        assert_non_null(strstr(text, line));
        snprintf(line, sizeof line, "# HELP %s ", typed[i][0]);
        assert_non_null(strstr(text, line));
    }
    /* Every sample line is `name[{labels}] value`. */
    for (char *p = text; *p;) {
        char *eol = strchr(p, '\n');
        assert_non_null(eol);
        if (*p != '#') {
            char *sp = memchr(p, ' ', (size_t)(eol - p));
            assert_non_null(sp);
            char *end;
            strtod(sp + 1, &end);
            assert_ptr_equal(end, eol);
        }
        p = eol + 1;
    }
    svc_metrics_free(m);
    free(text);
}

static void test_json_escape(void **state)
{
    (void)state;
    svc_buf b = SVC_BUF_INIT;
    svc_buf_puts(&b, "\"");
    svc_buf_json_escape(&b, "a\"b\\c\n\x01\xff\xc3\xa9/\xe2\x82");
    svc_buf_puts(&b, "\"");
    json_error_t err;
    json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), "a\"b\\c\n\x01\xef\xbf\xbd\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
    svc_buf_free(&b);
}

/*
 * svc_copy_stream gives memcpy's bytes for sizes around its threshold and
 * its 64-byte steps, from and to every alignment, and writes nothing
 * outside [dst, dst + n).
 */
/*
 * svc_affinity_wanted: auto pins when the workers cover every allowed CPU
 * (and there is more than one), never under a CPU quota on a bigger
 * machine; always and never as they say.
 */
static void test_pin_policy(void **state)
{
    (void)state;
    assert_int_equal(svc_affinity_wanted(SVC_PIN_AUTO, 2, 2), 1);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_AUTO, 8, 4), 1);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_AUTO, 2, 64), 0);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_AUTO, 1, 1), 0);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_AUTO, 4, 0), 0);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_ALWAYS, 2, 64), 1);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_ALWAYS, 2, 0), 0);
    assert_int_equal(svc_affinity_wanted(SVC_PIN_NEVER, 2, 2), 0);
    int cpus[8];
    assert_true(svc_affinity_cpus(cpus, 8) >= 1);
}

static void test_copy_stream(void **state)
{
    (void)state;
    enum { CAP = 70000, GUARD = 64 };
    unsigned char *src = malloc(CAP + 32), *dst = malloc(CAP + 2 * GUARD + 32);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < CAP + 32; i++)
        src[i] = (unsigned char)(i * 131u + (i >> 8));
    static const size_t sizes[] = {0, 1, 15, 16, 63, 64, 4095, 4096, 4097, 4159, 4160, 65599, CAP};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (size_t so = 0; so < 17; so += 3) {
            for (size_t d_off = 0; d_off < 17; d_off++) {
                const size_t n = sizes[k];
                memset(dst, 0xA5, CAP + 2 * GUARD + 32);
                unsigned char *d = dst + GUARD + d_off;
                svc_copy_stream(d, src + so, n);
                if (memcmp(d, src + so, n) != 0)
                    fail_msg("n %zu, src +%zu, dst +%zu: bytes differ", n, so, d_off);
                for (size_t g = 0; g < GUARD; g++)
                    if (d[-1 - (ptrdiff_t)g] != 0xA5 || d[n + g] != 0xA5)
                        fail_msg("n %zu, src +%zu, dst +%zu: wrote outside", n, so, d_off);
            }
        }
    }
    free(src);
    free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_flags_and_env),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_router),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_pin_policy),
        cmocka_unit_test(test_copy_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

