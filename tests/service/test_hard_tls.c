/*
 * test_hard_tls.c - HTTPS through libmicrohttpd's GnuTLS support.  A
 * self-signed certificate for localhost and 127.0.0.1 is made with
 * openssl (the tests are skipped when openssl is missing); libcurl then
 * talks HTTPS to multiboxd with that certificate as its only CA: health,
 * a golden /v1/loss, a batch-8 request of about 9 MB, keep-alive, the
 * bearer token over TLS.  Refused: plain HTTP on the HTTPS port, a client
 * that does not trust the certificate, a silent client that never starts
 * the handshake (cut by the header timeout).  Start-up errors: a key that
 * does not fit the certificate (exit 1), missing or non-PEM files (exit 2).
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
#include <unistd.h>

#include "test_hard_util.h"

static char *dir, *dir2; /* two certificates */
static char cert[4200], key[4200], key2[4200];
static int have_cert;
static char *tiny_body;
static json_t *tiny_expected;

static int setup(void **state)
{
    (void)state;
    dir = hard_tempdir();
    dir2 = hard_tempdir();
    if (!dir || !dir2)
        return -1;
    have_cert = hard_make_cert(dir) == 0 && hard_make_cert(dir2) == 0;
    if (!have_cert)
        fprintf(stderr, "openssl cannot make a certificate (Debian package openssl missing?): "
                        "the TLS tests are skipped\n");
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(key2, sizeof key2, "%s/key.pem", dir2);
    tiny_body = golden_body("tiny", FORM_B64, &tiny_expected);
    if (!tiny_body)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hard_rmdir(dir);
    hard_rmdir(dir2);
    free(dir);
    free(dir2);
    free(tiny_body);
    json_decref(tiny_expected);
    return 0;
}

static const char *https_url(const server *s, const char *host, const char *path)
{
    static __thread char buf[512];
    snprintf(buf, sizeof buf, "https://%s:%d%s", host, s->port, path);
    return buf;
}

static void expect_answer(hard_resp *r, const json_t *expected)
{
    if (r->status != 200)
        fprintf(stderr, "expected 200, got %ld %.300s %s\n", r->status, r->body, r->curl_error);
    assert_int_equal(r->status, 200);
    json_t *a = json_loadb(r->body, r->len, 0, NULL);
    char why[512] = "not JSON";
    int rc = a ? check_golden(a, expected, why, sizeof why) : -1;
    if (rc)
        fprintf(stderr, "%s\n", why);
    assert_int_equal(rc, 0);
    json_decref(a);
    hard_resp_free(r);
}

static void test_https(void **state)
{
    (void)state;
    if (!have_cert)
        skip();
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, "--request-timeout", "30",
                          "--header-timeout", "2", NULL};
    static server s;
    assert_int_equal(hard_start(&s, args, NULL), 0);
    assert_true(server_log_contains(&s, "http: https"));
    hard_resp r;

    /* Health by name and by address (both are in the certificate). */
    hard_req q = {.method = "GET", .url = https_url(&s, "localhost", "/livez"), .cainfo = cert};
    hard_do(&q, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    hard_resp_free(&r);
    q.url = https_url(&s, "127.0.0.1", "/readyz");
    assert_int_equal(hard_do(&q, &r), 200);
    hard_resp_free(&r);

    /* The loss, several times on one kept-alive TLS connection. */
    CURL *keep = curl_easy_init();
    for (int i = 0; i < 3; i++) {
        hard_req p = {.method = "POST", .url = https_url(&s, "localhost", "/v1/loss"),
                      .content_type = "application/json", .body = tiny_body,
                      .len = strlen(tiny_body), .cainfo = cert, .curl = keep};
        hard_do(&p, &r);
        expect_answer(&r, tiny_expected);
    }
    long reused = -1;
    curl_easy_getinfo(keep, CURLINFO_NUM_CONNECTS, &reused);
    assert_int_equal(reused, 0); /* the last request opened no new connection */
    curl_easy_cleanup(keep);

    /* A large body (batch 8, SSD300, about 9 MB of b64) over TLS. */
    json_t *expected8;
    char *body8 = hard_batch_body(8, &expected8);
    assert_non_null(body8);
    hard_req p = {.method = "POST", .url = https_url(&s, "localhost", "/v1/loss"),
                  .content_type = "application/json", .body = body8, .len = strlen(body8),
                  .cainfo = cert, .expect_100 = 1};
    hard_do(&p, &r);
    expect_answer(&r, expected8);
    free(body8);
    json_decref(expected8);

    /* Plain HTTP on the HTTPS port gets no HTTP answer. */
    hard_req plain = {.method = "GET", .url = server_url(&s, "/livez"), .timeout_ms = 5000};
    hard_do(&plain, &r);
    assert_int_equal(r.status, 0);
    hard_resp_free(&r);
    /* A client that trusts only the system's CAs refuses the certificate. */
    hard_req untrusted = {.method = "GET", .url = https_url(&s, "localhost", "/livez"),
                          .cainfo = "/dev/null"};
    hard_do(&untrusted, &r);
    assert_int_equal(r.status, 0);
    assert_true(r.curl_code == CURLE_PEER_FAILED_VERIFICATION ||
                r.curl_code == CURLE_SSL_CACERT_BADFILE || r.curl_code == CURLE_SSL_CONNECT_ERROR);
    hard_resp_free(&r);

    /* A client that connects and never starts the handshake is cut by the
     * header timeout (2 s), an ordinary one is served meanwhile. */
    int fd = hard_connect(s.port);
    assert_true(fd >= 0);
    q.url = https_url(&s, "localhost", "/livez");
    assert_int_equal(hard_do(&q, &r), 200);
    hard_resp_free(&r);
    double waited = hard_wait_closed(fd, 10);
    close(fd);
    fprintf(stderr, "tls: silent connection closed after %.2f s\n", waited);
    assert_true(waited >= 1.0 && waited < 6.0);

    /* The server is still fine and drains on SIGTERM. */
    assert_int_equal(hard_do(&q, &r), 200);
    hard_resp_free(&r);
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

static void test_https_with_token(void **state)
{
    (void)state;
    if (!have_cert)
        skip();
    static const char *const env[] = {"MULTIBOX_AUTH_TOKEN=tls-and-token", NULL};
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    static server s;
    assert_int_equal(hard_start(&s, args, env), 0);
    hard_resp r;
    hard_req p = {.method = "POST", .url = https_url(&s, "localhost", "/v1/loss"),
                  .content_type = "application/json", .body = tiny_body,
                  .len = strlen(tiny_body), .cainfo = cert};
    hard_do(&p, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(hard_error_code(r.body, r.len), "unauthorized");
    assert_string_equal(r.www_authenticate, "Bearer realm=\"multibox\"");
    hard_resp_free(&r);
    static const char *const auth[] = {"Authorization: Bearer tls-and-token", NULL};
    p.headers = auth;
    hard_do(&p, &r);
    expect_answer(&r, tiny_expected);
    assert_false(server_log_contains(&s, "tls-and-token"));
    assert_int_equal(hard_stop(&s, SIGTERM, 30), 0);
}

static void test_tls_start_errors(void **state)
{
    (void)state;
    if (!have_cert)
        skip();
    char *out;
    /* A key that is not the certificate's: GnuTLS refuses it at start (exit 1). */
    const char *mismatch[] = {"--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key2,
                              NULL};
    assert_int_equal(run_multiboxd(mismatch, NULL, &out), 1);
    assert_non_null(strstr(out, "TLS"));
    free(out);
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    const char *nofile[] = {"--tls-cert", missing, "--tls-key", key, NULL};
    assert_int_equal(run_multiboxd(nofile, NULL, &out), 2);
    assert_non_null(strstr(out, "--tls-cert"));
    free(out);
    /* The key where the certificate belongs, and the other way round. */
    const char *swapped[] = {"--tls-cert", key, "--tls-key", cert, NULL};
    assert_int_equal(run_multiboxd(swapped, NULL, &out), 2);
    assert_non_null(strstr(out, "no PEM certificate"));
    free(out);
    const char *certs[] = {"--tls-cert", cert, "--tls-key", cert, NULL};
    assert_int_equal(run_multiboxd(certs, NULL, &out), 2);
    assert_non_null(strstr(out, "no PEM private key"));
    free(out);
    const char *half[] = {"--tls-cert", cert, NULL};
    assert_int_equal(run_multiboxd(half, NULL, &out), 2);
    assert_non_null(strstr(out, "--tls-key"));
    free(out);
    /* The key's text never reaches the log. */
    char *k = read_file(key, NULL);
    assert_non_null(k);
    const char *b64 = strchr(k, '\n'); /* the first line of the key's base64 */
    assert_non_null(b64);
    char line[40];
    snprintf(line, sizeof line, "%.32s", b64 + 1);
    assert_int_equal(run_multiboxd(mismatch, NULL, &out), 1);
    assert_null(strstr(out, line));
    free(out);
    free(k);
}

int main(int argc, char **argv)
{
    hard_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_https_with_token),
        cmocka_unit_test(test_tls_start_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
