/*
 * test_hard_auth.c - the optional bearer token.  Units: the header check
 * (scheme, white space, prefixes, lengths), the open paths, loading the
 * token (file with a trailing newline, environment, empty, too long, bad
 * characters) and the new flags' parsing.  Over HTTP: no token, a wrong
 * one and the right one on /v1 and /v2 paths (401 with the contract's
 * body and WWW-Authenticate, 200 with the golden answer), health, metrics
 * and the spec open unless --auth-health, an unknown path is 401 (not 404), a
 * large body without a token is answered, and the token (and the wrong
 * tokens sent) never appear in the log, in text or JSON format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "test_hard_util.h"

#define TOKEN "s3cr3t-T0ken_with.chars~+/="

/* ------------------------------------------------------------- units */

static svc_auth *load_env_token(const char *token, int health)
{
    svc_config cfg;
    svc_config_default(&cfg);
    setenv(SVC_ENV_AUTH_TOKEN, token, 1);
    cfg.auth_token_env = 1;
    cfg.auth_health = health;
    svc_auth *a = NULL;
    char err[256];
    int rc = svc_auth_load(&cfg, &a, err, sizeof err);
    unsetenv(SVC_ENV_AUTH_TOKEN);
    return rc == 0 ? a : NULL;
}

static void test_check_header(void **state)
{
    (void)state;
    svc_auth *a = load_env_token(TOKEN, 0);
    assert_non_null(a);
    assert_int_equal(svc_auth_check_header(a, "Bearer " TOKEN), 1);
    assert_int_equal(svc_auth_check_header(a, "bearer " TOKEN), 1);
    assert_int_equal(svc_auth_check_header(a, "BEARER\t " TOKEN "  "), 1);
    assert_int_equal(svc_auth_check_header(a, "  Bearer " TOKEN), 1);
    /* absent or not a bearer credential */
    assert_int_equal(svc_auth_check_header(a, NULL), 0);
    assert_int_equal(svc_auth_check_header(a, ""), 0);
    assert_int_equal(svc_auth_check_header(a, "Bearer"), 0);
    assert_int_equal(svc_auth_check_header(a, "Bearer   "), 0);
    assert_int_equal(svc_auth_check_header(a, "Basic dXNlcjpwYXNz"), 0);
    assert_int_equal(svc_auth_check_header(a, "Bearer" TOKEN), 0);
    assert_int_equal(svc_auth_check_header(a, TOKEN), 0);
    /* wrong: prefixes, extensions, one character off anywhere, case */
    assert_int_equal(svc_auth_check_header(a, "Bearer s3cr3t"), -1);
    assert_int_equal(svc_auth_check_header(a, "Bearer " TOKEN "x"), -1);
    assert_int_equal(svc_auth_check_header(a, "Bearer " TOKEN " extra"), -1);
    char wrong[64];
    for (size_t i = 0; i < strlen(TOKEN); i++) {
        snprintf(wrong, sizeof wrong, "Bearer %s", TOKEN);
        wrong[7 + i] ^= 0x01;
        assert_int_equal(svc_auth_check_header(a, wrong), -1);
    }
    assert_int_equal(svc_auth_check_header(a, "Bearer S3CR3T-t0KEN_WITH.CHARS~+/="), -1);
    assert_int_equal(svc_auth_check_header(NULL, "Bearer " TOKEN), 0);
    assert_int_equal(svc_auth_protects_health(a), 0);
    svc_auth_free(a);
    a = load_env_token(TOKEN, 1);
    assert_int_equal(svc_auth_protects_health(a), 1);
    svc_auth_free(a);
    svc_auth_free(NULL);
}

static void test_health_paths(void **state)
{
    (void)state;
    static const char *const open_paths[] = {"/livez", "/readyz", "/metrics", "/openapi.yaml",
                                             "/v2/health/live", "/v2/health/ready"};
    static const char *const closed[] = {"/v1/loss", "/openapi.yamlx", "/v2", "/v2/health",
                                         "/livez/", "/metricsx", "/v2/models/multibox_loss/ready",
                                         "/v1/anchors/ssd300_voc", "", "/"};
    for (size_t i = 0; i < sizeof open_paths / sizeof open_paths[0]; i++)
        assert_true(svc_auth_path_is_open(open_paths[i]));
    for (size_t i = 0; i < sizeof closed / sizeof closed[0]; i++)
        assert_false(svc_auth_path_is_open(closed[i]));
}

static void test_load(void **state)
{
    (void)state;
    char *dir = hard_tempdir();
    assert_non_null(dir);
    svc_config cfg;
    svc_auth *a;
    char err[512];

    /* A file's trailing newline is not part of the token. */
    char *f = hard_write_file(dir, "token", TOKEN "\r\n", 0600);
    svc_config_default(&cfg);
    snprintf(cfg.auth_token_file, sizeof cfg.auth_token_file, "%s", f);
    assert_int_equal(svc_auth_load(&cfg, &a, err, sizeof err), 0);
    assert_int_equal(svc_auth_check_header(a, "Bearer " TOKEN), 1);
    svc_auth_free(a);
    free(f);

    /* Refused: empty, white space only, inner space, control byte, too long, missing. */
    static const char *const bad[] = {"", "\n", "two words\n", "tab\there", "bell\a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = hard_write_file(dir, "bad", bad[i], 0600);
        snprintf(cfg.auth_token_file, sizeof cfg.auth_token_file, "%s", f);
        a = (svc_auth *)1;
        assert_int_equal(svc_auth_load(&cfg, &a, err, sizeof err), -1);
        assert_null(a);
        assert_non_null(strstr(err, "--auth-token-file"));
        free(f);
    }
    char *big = malloc(SVC_AUTH_TOKEN_MAX + 2);
    memset(big, 'a', SVC_AUTH_TOKEN_MAX + 1);
    big[SVC_AUTH_TOKEN_MAX + 1] = '\0';
    f = hard_write_file(dir, "bad", big, 0600);
    snprintf(cfg.auth_token_file, sizeof cfg.auth_token_file, "%s", f);
    assert_int_equal(svc_auth_load(&cfg, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer"));
    free(f);
    big[SVC_AUTH_TOKEN_MAX] = '\0'; /* exactly the limit is fine */
    f = hard_write_file(dir, "ok", big, 0600);
    snprintf(cfg.auth_token_file, sizeof cfg.auth_token_file, "%s", f);
    assert_int_equal(svc_auth_load(&cfg, &a, err, sizeof err), 0);
    svc_auth_free(a);
    free(f);
    free(big);
    snprintf(cfg.auth_token_file, sizeof cfg.auth_token_file, "%s/missing", dir);
    assert_int_equal(svc_auth_load(&cfg, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read"));

    /* No token configured: no auth object. */
    svc_config_default(&cfg);
    a = (svc_auth *)1;
    assert_int_equal(svc_auth_load(&cfg, &a, err, sizeof err), 0);
    assert_null(a);
    hard_rmdir(dir);
    free(dir);
}

/* Runs svc_config_parse on a NULL-terminated argument list. */
static int parse(svc_config *cfg, char *err, const char *const *args)
{
    char *argv[16] = {"multiboxd"};
    int argc = 1;
    for (; args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    return svc_config_parse(cfg, argc, argv, err, 512);
}

static void test_flags(void **state)
{
    (void)state;
    svc_config cfg;
    char err[512];
    unsetenv(SVC_ENV_AUTH_TOKEN);
    unsetenv("MULTIBOX_AUTH_TOKEN_FILE");
    unsetenv("MULTIBOX_AUTH_HEALTH");
    static const char *const none[] = {NULL};
    assert_int_equal(parse(&cfg, err, none), 0);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.max_connections_per_ip, 0);
    assert_true(cfg.header_timeout_s == cfg.request_timeout_s);
    assert_int_equal(cfg.auth_token_env, 0);
    assert_string_equal(cfg.auth_token_file, "");
    assert_null(cfg.auth);
    assert_null(cfg.tls);

    static const char *const all[] = {"--max-connections", "600", "--max-connections-per-ip=8",
                                      "--header-timeout", "1500ms", "--request-timeout", "9",
                                      "--auth-token-file", "/run/t", "--auth-health",
                                      "--tls-cert", "c.pem", "--tls-key", "k.pem", NULL};
    assert_int_equal(parse(&cfg, err, all), 0);
    assert_int_equal(cfg.max_connections, 600);
    assert_int_equal(cfg.max_connections_per_ip, 8);
    assert_true(cfg.header_timeout_s == 1.5);
    assert_string_equal(cfg.auth_token_file, "/run/t");
    assert_int_equal(cfg.auth_health, 1);
    assert_string_equal(cfg.tls_cert_file, "c.pem");
    assert_string_equal(cfg.tls_key_file, "k.pem");

    /* The header timeout follows the request timeout unless given. */
    static const char *const rt[] = {"--request-timeout", "7s", NULL};
    assert_int_equal(parse(&cfg, err, rt), 0);
    assert_true(cfg.header_timeout_s == 7);

    /* The switch's twin takes true/false. */
    setenv("MULTIBOX_AUTH_HEALTH", "false", 1);
    static const char *const file[] = {"--auth-token-file", "/run/t", NULL};
    assert_int_equal(parse(&cfg, err, file), 0);
    assert_int_equal(cfg.auth_health, 0);
    setenv("MULTIBOX_AUTH_HEALTH", "yes", 1);
    assert_int_equal(parse(&cfg, err, file), 0);
    assert_int_equal(cfg.auth_health, 1);
    setenv("MULTIBOX_AUTH_HEALTH", "maybe", 1);
    assert_int_equal(parse(&cfg, err, file), -1);
    assert_non_null(strstr(err, "MULTIBOX_AUTH_HEALTH"));
    unsetenv("MULTIBOX_AUTH_HEALTH");

    /* The token from the environment is noted, never copied. */
    setenv(SVC_ENV_AUTH_TOKEN, TOKEN, 1);
    assert_int_equal(parse(&cfg, err, none), 0);
    assert_int_equal(cfg.auth_token_env, 1);
    assert_null(memmem(&cfg, sizeof cfg, TOKEN, strlen(TOKEN)));
    /* ...and a second source is refused. */
    assert_int_equal(parse(&cfg, err, file), -1);
    assert_non_null(strstr(err, "one way"));
    assert_null(strstr(err, TOKEN));
    unsetenv(SVC_ENV_AUTH_TOKEN);

    static const char *const bad[][4] = {
        {"--auth-health", NULL},                       /* needs a token */
        {"--tls-cert", "c.pem", NULL},                 /* needs the key */
        {"--tls-key", "k.pem", NULL},                  /* needs the certificate */
        {"--max-connections", "0", NULL},
        {"--max-connections-per-ip", "-1", NULL},
        {"--header-timeout", "0", NULL},
        {"--auth-token-file", "", NULL},
        {"--auth-health=1", NULL},
        {"--auth-token", "x", NULL},                    /* no such flag: argv is public */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(&cfg, err, bad[i]) != -1)
            fprintf(stderr, "accepted: %s %s\n", bad[i][0], bad[i][1] ? bad[i][1] : "");
        assert_int_equal(parse(&cfg, err, bad[i]), -1);
    }
}

/* ------------------------------------------------------------- over HTTP */

static char *tiny_body;
static json_t *tiny_expected;

static int setup(void **state)
{
    (void)state;
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

static const char *url_of(const server *s, const char *path)
{
    return server_url(s, path);
}

/* GET path with an optional Authorization value. */
static long get_auth(const server *s, const char *path, const char *authorization, hard_resp *r)
{
    char h[256];
    const char *hdrs[] = {h, NULL};
    if (authorization)
        snprintf(h, sizeof h, "Authorization: %s", authorization);
    hard_req q = {.method = "GET", .url = url_of(s, path),
                  .headers = authorization ? hdrs : NULL};
    return hard_do(&q, r);
}

static long post_loss(const server *s, const char *authorization, hard_resp *r)
{
    char h[256];
    const char *hdrs[] = {h, NULL};
    if (authorization)
        snprintf(h, sizeof h, "Authorization: %s", authorization);
    hard_req q = {.method = "POST", .url = url_of(s, "/v1/loss"),
                  .content_type = "application/json", .body = tiny_body,
                  .len = strlen(tiny_body), .headers = authorization ? hdrs : NULL};
    return hard_do(&q, r);
}

/* A 401 with the /v1 body and the realm; invalid: the RFC 6750 error code too. */
static void expect_401(hard_resp *r, int invalid)
{
    if (r->status != 401)
        fprintf(stderr, "expected 401, got %ld %s %s\n", r->status, r->body, r->curl_error);
    assert_int_equal(r->status, 401);
    assert_string_equal(hard_error_code(r->body, r->len), "unauthorized");
    assert_string_equal(r->content_type, "application/json");
    assert_string_equal(r->www_authenticate,
                        invalid ? "Bearer realm=\"multibox\", error=\"invalid_token\""
                                : "Bearer realm=\"multibox\"");
    assert_null(strstr(r->body, TOKEN));
    hard_resp_free(r);
}

static void expect_golden_200(hard_resp *r)
{
    if (r->status != 200)
        fprintf(stderr, "expected 200, got %ld %.300s %s\n", r->status, r->body, r->curl_error);
    assert_int_equal(r->status, 200);
    json_t *a = json_loadb(r->body, r->len, 0, NULL);
    char why[512] = "not JSON";
    int rc = a ? check_golden(a, tiny_expected, why, sizeof why) : -1;
    if (rc)
        fprintf(stderr, "%s\n", why);
    assert_int_equal(rc, 0);
    json_decref(a);
    hard_resp_free(r);
}

/* Every request kind against a server with TOKEN; health open unless health_closed. */
static void exercise(server *s, int health_closed)
{
    hard_resp r;
    post_loss(s, NULL, &r);
    expect_401(&r, 0);
    post_loss(s, "Bearer wrong", &r);
    expect_401(&r, 1);
    post_loss(s, "Bearer " TOKEN "0", &r);
    expect_401(&r, 1);
    post_loss(s, "Bearer s3cr3t", &r);
    expect_401(&r, 1);
    post_loss(s, "Basic " TOKEN, &r);
    expect_401(&r, 0);
    post_loss(s, "Bearer " TOKEN, &r);
    expect_golden_200(&r);
    post_loss(s, "bearer  " TOKEN, &r);
    expect_golden_200(&r);

    /* Unknown paths and other methods need the token before anything is told. */
    get_auth(s, "/no/such/path", NULL, &r);
    expect_401(&r, 0);
    get_auth(s, "/no/such/path", "Bearer " TOKEN, &r);
    assert_int_equal(r.status, 404);
    hard_resp_free(&r);
    get_auth(s, "/v1/loss", NULL, &r);
    expect_401(&r, 0);
    get_auth(s, "/v1/anchors/ssd300_voc", "Bearer nope", &r);
    expect_401(&r, 1);
    get_auth(s, "/v1/anchors/ssd300_voc?tensor_format=b64", "Bearer " TOKEN, &r);
    assert_int_equal(r.status, 200);
    hard_resp_free(&r);

    /* /v2 paths answer with the protocol's own error body. */
    static const char *const v2[] = {"/v2", "/v2/models/multibox_loss",
                                     "/v2/models/multibox_loss/ready"};
    for (size_t i = 0; i < sizeof v2 / sizeof v2[0]; i++) {
        get_auth(s, v2[i], NULL, &r);
        assert_int_equal(r.status, 401);
        assert_string_equal(r.www_authenticate, "Bearer realm=\"multibox\"");
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        const char *e = json_string_value(json_object_get(j, "error"));
        if (!e || strncmp(e, "unauthorized: ", 14) != 0)
            fprintf(stderr, "%s: %s\n", v2[i], r.body);
        assert_non_null(e);
        assert_true(strncmp(e, "unauthorized: ", 14) == 0);
        json_decref(j);
        hard_resp_free(&r);
    }

    /* Health, readiness, metrics and the spec. */
    static const char *const health[] = {"/livez", "/readyz", "/metrics", "/openapi.yaml"};
    for (size_t i = 0; i < sizeof health / sizeof health[0]; i++) {
        get_auth(s, health[i], NULL, &r);
        if (health_closed) {
            expect_401(&r, 0);
            get_auth(s, health[i], "Bearer " TOKEN, &r);
        }
        assert_int_equal(r.status, 200);
        hard_resp_free(&r);
    }
    static const char *const v2_health[] = {"/v2/health/live", "/v2/health/ready"};
    for (size_t i = 0; i < sizeof v2_health / sizeof v2_health[0]; i++) {
        get_auth(s, v2_health[i], NULL, &r);
        assert_int_equal(r.status, health_closed ? 401 : 200);
        hard_resp_free(&r);
    }

    /* A large body without a token: a client that waits for 100 Continue gets
     * its 401 before uploading.  One that does not is answered at once and
     * the connection closed (the server reads no more than 1 MiB of an
     * unauthenticated body), so it may see its upload fail instead. */
    size_t big_len = (size_t)3 << 20;
    char *big = malloc(big_len);
    memset(big, ' ', big_len);
    hard_req q = {.method = "POST", .url = url_of(s, "/v1/loss"),
                  .content_type = "application/json", .body = big, .len = big_len,
                  .expect_100 = 1};
    hard_do(&q, &r);
    assert_true(r.t_body_sent == 0);
    expect_401(&r, 0);
    q.expect_100 = 0;
    hard_do(&q, &r);
    if (r.status == 0)
        assert_true(r.curl_code == CURLE_SEND_ERROR || r.curl_code == CURLE_RECV_ERROR);
    else
        expect_401(&r, 0);
    hard_resp_free(&r);
    free(big);
}

/* The log so far holds neither the token nor the wrong tokens sent. */
static void expect_clean_log(server *s)
{
    server_pump_log(s);
    assert_true(server_log_contains(s, "status=401") || server_log_contains(s, "\"status\":401"));
    assert_false(server_log_contains(s, TOKEN));
    assert_false(server_log_contains(s, "s3cr3t"));
    assert_false(server_log_contains(s, "wrong"));
}

static void test_token_file(void **state)
{
    (void)state;
    char *dir = hard_tempdir();
    char *f = hard_write_file(dir, "token", TOKEN "\n", 0600);
    const char *args[] = {"--auth-token-file", f, NULL};
    static server s;
    assert_int_equal(hard_start(&s, args, NULL), 0);
    assert_true(server_log_contains(&s, "auth bearer (health, metrics and spec open)"));
    exercise(&s, 0);
    expect_clean_log(&s);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
    free(f);
    hard_rmdir(dir);
    free(dir);
}

static void test_token_env_json_log(void **state)
{
    (void)state;
    static const char *const env[] = {"MULTIBOX_AUTH_TOKEN=" TOKEN, NULL};
    static const char *const args[] = {"--log-format", "json", NULL};
    static server s;
    assert_int_equal(hard_start(&s, args, env), 0);
    exercise(&s, 0);
    expect_clean_log(&s);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

static void test_token_file_twin_auth_health(void **state)
{
    (void)state;
    char *dir = hard_tempdir();
    char *f = hard_write_file(dir, "token", TOKEN, 0600);
    char e1[4200];
    snprintf(e1, sizeof e1, "MULTIBOX_AUTH_TOKEN_FILE=%s", f);
    const char *env[] = {e1, "MULTIBOX_AUTH_HEALTH=true", NULL};
    static server s;
    /* harness.c waits for "ready" only: /readyz itself is closed now. */
    assert_int_equal(hard_start(&s, NULL, env), 0);
    assert_true(server_log_contains(&s, "auth bearer on every path"));
    exercise(&s, 1);
    expect_clean_log(&s);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
    free(f);
    hard_rmdir(dir);
    free(dir);
}

static void test_no_token_no_auth(void **state)
{
    (void)state;
    static server s;
    assert_int_equal(hard_start(&s, NULL, NULL), 0);
    assert_true(server_log_contains(&s, "auth off"));
    hard_resp r;
    post_loss(&s, NULL, &r);
    expect_golden_200(&r);
    post_loss(&s, "Bearer anything", &r); /* ignored when no token is configured */
    expect_golden_200(&r);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

static void test_start_errors(void **state)
{
    (void)state;
    char *dir = hard_tempdir();
    char *empty = hard_write_file(dir, "empty", "\n", 0600);
    char *good = hard_write_file(dir, "good", TOKEN "\n", 0600);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    char *out;

    const char *a1[] = {"--auth-token-file", empty, NULL};
    assert_int_equal(run_multiboxd(a1, NULL, &out), 2);
    assert_non_null(strstr(out, "empty"));
    free(out);
    const char *a2[] = {"--auth-token-file", missing, NULL};
    assert_int_equal(run_multiboxd(a2, NULL, &out), 2);
    assert_non_null(strstr(out, "cannot read"));
    free(out);
    /* Two sources: refused, and the message does not carry the token. */
    const char *a3[] = {"--auth-token-file", good, NULL};
    static const char *const env[] = {"MULTIBOX_AUTH_TOKEN=" TOKEN, NULL};
    assert_int_equal(run_multiboxd(a3, env, &out), 2);
    assert_null(strstr(out, TOKEN));
    free(out);
    static const char *const env_bad[] = {"MULTIBOX_AUTH_TOKEN=has space", NULL};
    static const char *const listen[] = {"--listen", "127.0.0.1:0", NULL};
    assert_int_equal(run_multiboxd(listen, env_bad, &out), 2);
    assert_non_null(strstr(out, "MULTIBOX_AUTH_TOKEN"));
    assert_null(strstr(out, "has space"));
    free(out);
    free(empty);
    free(good);
    hard_rmdir(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    hard_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_header),
        cmocka_unit_test(test_health_paths),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_token_file),
        cmocka_unit_test(test_token_env_json_log),
        cmocka_unit_test(test_token_file_twin_auth_health),
        cmocka_unit_test(test_no_token_no_auth),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
