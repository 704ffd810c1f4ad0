/*
 * test_loss.c - POST /v1/loss over real HTTP: every golden case in each
 * tensor format (nested, flat, b64 in both directions) against the golden
 * "expected" with the README's tolerances, and every error class of the
 * contract with its status and code; a b64 body uploaded in small pieces
 * (the server scans it for long strings while it arrives) gets the answer,
 * byte for byte, of the same body sent at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static server srv;

static int setup(void **state)
{
    (void)state;
    static const char *const args[] = {"--workers", "2", NULL};
    return server_start(&srv, args, NULL, 0);
}

/* cmocka 1.1 reports a failed group teardown but still exits 0: main checks this. */
static int teardown_failed;

static int teardown(void **state)
{
    (void)state;
    return server_stop_shared(&srv, 60, &teardown_failed);
}

/* POSTs JSON text to /v1/loss at once. */
static void post_json_text(const char *text, size_t len, http_resp *r)
{
    http_post_json(server_url(&srv, "/v1/loss"), text, len, r);
}

/* POSTs a JSON value to /v1/loss. */
static long post(const json_t *body, http_resp *r)
{
    char *text = json_dumps(body, JSON_COMPACT);
    assert_non_null(text);
    long st = http_post_json(server_url(&srv, "/v1/loss"), text, strlen(text), r);
    free(text);
    return st;
}

static void run_case(const char *name)
{
    json_t *g = load_golden(name);
    assert_non_null(g);
    const json_t *request = json_object_get(g, "request"), *expected = json_object_get(g, "expected");
    for (int f = 0; f < 3; f++) {
        json_t *req = request_in_form(request, (tensor_form)f);
        http_resp r;
        post(req, &r);
        if (r.status != 200)
            fprintf(stderr, "%s (%s): %ld %.300s %s\n", name, tensor_form_names[f], r.status,
                    r.body, r.curl_error);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "application/json");
        json_error_t err;
        json_t *answer = json_loadb(r.body, r.len, 0, &err);
        assert_non_null(answer);
        /* Gradients come back in the asked format. */
        const json_t *gl = json_object_get(answer, "grad_loc");
        if (f == FORM_NESTED)
            assert_true(json_is_array(gl));
        else if (f == FORM_FLAT)
            assert_true(json_is_array(json_object_get(gl, "data")));
        else
            assert_true(json_is_string(json_object_get(gl, "b64")));
        char why[512];
        if (check_golden(answer, expected, why, sizeof why) != 0) {
            fprintf(stderr, "%s (%s): %s\n", name, tensor_form_names[f], why);
            fail();
        }
        json_decref(answer);
        http_resp_free(&r);
        json_decref(req);
    }
    json_decref(g);
}

static void test_golden_cases(void **state)
{
    (void)state;
    char **names = golden_case_names();
    assert_non_null(names);
    assert_non_null(names[0]);
    int n = 0;
    for (; names[n]; n++)
        run_case(names[n]);
    assert_true(n >= 20);
    free_names(names);
}

/* The tiny golden request in a form, to break in the error tests. */
static json_t *tiny(tensor_form form)
{
    json_t *g = load_golden("tiny");
    assert_non_null(g);
    json_t *req = request_in_form(json_object_get(g, "request"), form);
    json_decref(g);
    return req;
}

static void expect_error(const json_t *body, long status, const char *code, const char *in_msg)
{
    http_resp r;
    post(body, &r);
    if (r.status != status || strcmp(error_code(&r), code) != 0 ||
        (in_msg && !strstr(r.body, in_msg)))
        fprintf(stderr, "got %ld %s, expected %ld %s (mentioning %s)\n", r.status, r.body, status,
                code, in_msg ? in_msg : "-");
    assert_int_equal(r.status, status);
    assert_string_equal(error_code(&r), code);
    assert_string_equal(r.content_type, "application/json");
    if (in_msg)
        assert_non_null(strstr(r.body, in_msg));
    http_resp_free(&r);
}

static void test_malformed_json(void **state)
{
    (void)state;
    static const char *const bodies[] = {"", "{", "nul", "{\"loc\": [1, 2,]}", "\xff\xfe",
                                         "{\"a\":1} trailing"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_resp r;
        http_post_json(server_url(&srv, "/v1/loss"), bodies[i], strlen(bodies[i]), &r);
        if (r.status != 400)
            fprintf(stderr, "body %zu: %ld %s\n", i, r.status, r.body);
        assert_int_equal(r.status, 400);
        assert_string_equal(error_code(&r), "malformed_json");
        http_resp_free(&r);
    }
}

static void test_bad_base64(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_B64);
    json_t *loc = json_object_get(req, "loc");
    char *b = strdup(json_string_value(json_object_get(loc, "b64")));
    b[5] = '!';
    json_object_set_new(loc, "b64", json_string(b));
    free(b);
    expect_error(req, 400, "bad_base64", "loc");
    json_decref(req);
}

static void test_shape_mismatch(void **state)
{
    (void)state;
    /* conf says 191 anchors, loc 192. */
    json_t *req = tiny(FORM_FLAT);
    json_t *conf = json_object_get(req, "conf");
    json_t *data = json_object_get(conf, "data");
    for (int i = 0; i < 3; i++)
        json_array_remove(data, json_array_size(data) - 1);
    json_array_set_new(json_object_get(conf, "shape"), 1, json_integer(191));
    expect_error(req, 422, "shape_mismatch", NULL);
    json_decref(req);
    /* data that disagrees with its own shape */
    req = tiny(FORM_FLAT);
    json_array_remove(json_object_get(json_object_get(req, "loc"), "data"), 0);
    expect_error(req, 422, "shape_mismatch", "loc");
    json_decref(req);
}

static void test_unknown_key(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_object_set_new(json_object_get(req, "config"), "overlap", json_real(0.5));
    expect_error(req, 422, "unknown_field", "config.overlap");
    json_decref(req);
    req = tiny(FORM_FLAT);
    json_object_set_new(req, "extra", json_true());
    expect_error(req, 422, "unknown_field", "extra");
    json_decref(req);
}

static void test_missing_and_wrong_type(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_object_del(req, "conf");
    expect_error(req, 422, "missing_field", "conf");
    json_decref(req);
    req = tiny(FORM_FLAT);
    json_object_set_new(req, "loc", json_string("abc"));
    expect_error(req, 422, "wrong_type", "loc");
    json_decref(req);
}

static void test_bad_label(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_t *labels = json_object_get(json_array_get(json_object_get(req, "targets"), 0), "labels");
    json_array_set_new(labels, 1, json_integer(7)); /* C = 3 */
    expect_error(req, 422, "bad_label", "targets[0]");
    json_array_set_new(labels, 1, json_integer(0)); /* the background */
    expect_error(req, 422, "bad_label", "targets[0]");
    json_decref(req);
}

static void test_degenerate_box(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_t *boxes = json_object_get(json_array_get(json_object_get(req, "targets"), 0), "boxes");
    json_array_set_new(boxes, 1, json_pack("[f,f,f,f]", 0.5, 0.5, 0.4, 0.7)); /* x2 < x1 */
    expect_error(req, 422, "degenerate_box", "targets[0]");
    json_decref(req);
}

/*
 * Replaces req's key tensor (FORM_FLAT) by float32 b64 of zeros but for
 * v[at] = value (at < 0: none); bad_char >= 0 puts '*' that many
 * characters before the text's end.
 */
static void put_b64_tensor(json_t *req, const char *key, long at, float value, int bad_char)
{
    json_t *t = json_object_get(req, key);
    size_t n = json_array_size(json_object_get(t, "data"));
    float *v = calloc(n, sizeof *v);
    assert_non_null(v);
    if (at >= 0)
        v[at < (long)n ? at : (long)n - 1] = value;
    char *b = b64_encode(v, n * sizeof *v);
    if (bad_char >= 0)
        b[strlen(b) - (size_t)bad_char] = '*';
    json_object_set_new(req, key, json_pack("{s:O,s:s,s:s}", "shape", json_object_get(t, "shape"),
                                            "dtype", "float32", "b64", b));
    free(b);
    free(v);
}

static void test_not_finite(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    put_b64_tensor(req, "loc", 17, NAN, -1);
    expect_error(req, 422, "not_finite", "loc");
    json_decref(req);
    /* conf, with a bad character in loc too: the character wins (400), as the codec orders them */
    req = tiny(FORM_FLAT);
    const long last_but_one = (long)json_array_size(
                                  json_object_get(json_object_get(req, "conf"), "data")) - 2;
    put_b64_tensor(req, "conf", last_but_one, INFINITY, -1);
    expect_error(req, 422, "not_finite", "conf.b64: element [0][191][1] is NaN or infinite");
    put_b64_tensor(req, "loc", -1, 0.0f, 10);
    expect_error(req, 400, "bad_base64", "loc.b64: invalid character '*'");
    json_decref(req);
    /* NaN in loc and in conf: loc is named first, wherever the core meets them (read in place) */
    req = tiny(FORM_FLAT);
    put_b64_tensor(req, "conf", 3, NAN, -1);
    put_b64_tensor(req, "loc", 17, NAN, -1);
    expect_error(req, 422, "not_finite", "loc.b64: element [0][4][1] is NaN or infinite");
    json_decref(req);
}

static void test_bad_config(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_object_set_new(json_object_get(req, "config"), "overlap_threshold", json_real(2.0));
    expect_error(req, 422, "bad_config", "overlap_threshold");
    json_decref(req);
}

static void test_empty_batch(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_t *loc = json_object_get(req, "loc"), *conf = json_object_get(req, "conf");
    json_array_set_new(json_object_get(loc, "shape"), 0, json_integer(0));
    json_array_set_new(json_object_get(conf, "shape"), 0, json_integer(0));
    json_object_set_new(loc, "data", json_array());
    json_object_set_new(conf, "data", json_array());
    json_object_set_new(req, "targets", json_array());
    expect_error(req, 422, "out_of_range", "B = 0");
    json_decref(req);
}

static void test_unknown_preset_in_body(void **state)
{
    (void)state;
    json_t *req = tiny(FORM_FLAT);
    json_object_set_new(req, "anchors", json_pack("{s:s}", "preset", "ssd999"));
    expect_error(req, 422, "unknown_preset", "anchors");
    json_decref(req);
}

/* Posts body over a raw socket in pieces cut at random, 1 ms apart; returns the answer's body. */
static char *post_in_pieces(const char *body, size_t len, int pieces, long *status)
{
    int fd = server_connect(&srv);
    assert_true(fd >= 0);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /v1/loss HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", len);
    assert_int_equal(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
    size_t sent = 0;
    unsigned seed = 99;
    for (int k = 0; k < pieces && sent < len; k++) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = k == pieces - 1 ? len - sent : 1 + (seed >> 8) % (2 * len / (size_t)pieces);
        if (piece > len - sent)
            piece = len - sent;
        for (size_t done = 0; done < piece;) {
            ssize_t w = send(fd, body + sent + done, piece - done, MSG_NOSIGNAL);
            assert_true(w > 0 || errno == EINTR);
            if (w > 0)
                done += (size_t)w;
        }
        sent += piece;
        sleep_ms(1);
    }
    /* The answer: headers, then Content-Length bytes. */
    size_t cap = 1 << 16, got = 0, want = SIZE_MAX, hend = 0;
    char *buf = malloc(cap);
    while (got < want) {
        if (got + 1 >= cap)
            assert_non_null(buf = realloc(buf, cap *= 2));
        ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
        assert_true(r > 0 || errno == EINTR);
        if (r > 0)
            got += (size_t)r;
        buf[got] = '\0';
        char *e;
        if (want == SIZE_MAX && (e = strstr(buf, "\r\n\r\n")) != NULL) {
            hend = (size_t)(e - buf) + 4;
            *status = strtol(buf + 9, NULL, 10);
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            assert_true(cl && cl < e);
            want = hend + strtoull(cl + 17, NULL, 10);
        }
    }
    close(fd);
    char *answer = strndup(buf + hend, want - hend);
    free(buf);
    return answer;
}

static void test_uploaded_in_pieces(void **state)
{
    (void)state;
    json_t *expected = NULL;
    char *body = golden_body("ssd300_voc_b2", FORM_B64, &expected);
    assert_non_null(body);
    const size_t len = strlen(body);
    http_resp once;
    post_json_text(body, len, &once);
    assert_int_equal(once.status, 200);
    long status = 0;
    char *pieces = post_in_pieces(body, len, 60, &status);
    assert_int_equal(status, 200);
    assert_int_equal(strlen(pieces), once.len);
    assert_memory_equal(pieces, once.body, once.len);
    free(pieces);
    http_resp_free(&once);
    /* A body broken at its very end: the same error either way. */
    body[len - 1] = ',';
    post_json_text(body, len, &once);
    assert_int_equal(once.status, 400);
    pieces = post_in_pieces(body, len, 60, &status);
    assert_int_equal(status, 400);
    assert_string_equal(pieces, once.body);
    free(pieces);
    http_resp_free(&once);
    free(body);
    json_decref(expected);
}

static void test_server_survives(void **state)
{
    (void)state;
    /* After every error above, a valid request is still answered right. */
    run_case("tiny");
    http_resp r;
    assert_int_equal(http_get(server_url(&srv, "/livez"), &r), 200);
    http_resp_free(&r);
}

int main(int argc, char **argv)
{
    harness_init(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_cases),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_missing_and_wrong_type),
        cmocka_unit_test(test_bad_label),
        cmocka_unit_test(test_degenerate_box),
        cmocka_unit_test(test_not_finite),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_empty_batch),
        cmocka_unit_test(test_unknown_preset_in_body),
        cmocka_unit_test(test_uploaded_in_pieces),
        cmocka_unit_test(test_server_survives),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed || teardown_failed ? 1 : 0;
}
