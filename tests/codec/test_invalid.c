/*
 * test_invalid.c - the data-driven request suites, in the style of
 * jansson's test/suites: every folder of tests/data/invalid/ holds an
 * input.json and an "expected" file (line 1: the error's stable code, line
 * 2: a substring its message must contain, usually the JSON path).  Each
 * input must be rejected by mbx_request_parse_json with that code and
 * message, leave *out NULL, and render as a valid error JSON.  Every file of
 * tests/data/valid/ must parse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

static char invalid_dir[4096], valid_dir[4096];

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static void test_invalid_case(void **state)
{
    const char *name = *state;
    char path[8192];
    size_t len;

    snprintf(path, sizeof path, "%s/%s/expected", invalid_dir, name);
    char *expected = th_read_file(path, NULL);
    if (!expected)
        fail_msg("cannot read %s", path);
    char *nl = strchr(expected, '\n');
    if (!nl)
        fail_msg("%s: expected 2 lines (code, message substring)", path);
    *nl = '\0';
    char *code = expected, *substring = nl + 1;
    chomp(substring);

    snprintf(path, sizeof path, "%s/%s/input.json", invalid_dir, name);
    char *body = th_read_file(path, &len);
    if (!body)
        fail_msg("cannot read %s", path);

    mbx_request *req = (mbx_request *)&req; /* must be set to NULL on failure */
    mbx_detail detail = {0, ""};
    int rc = mbx_request_parse_json(body, len, &req, &detail);
    if (rc == 0) {
        mbx_request_free(req);
        fail_msg("%s: accepted, expected %s", name, code);
    }
    assert_null(req);
    assert_int_equal(detail.code, rc);
    if (strcmp(mbx_error_name(rc), code) != 0)
        fail_msg("%s: got %s (%s), expected %s", name, mbx_error_name(rc), detail.message, code);
    if (!strstr(detail.message, substring))
        fail_msg("%s: message \"%s\" lacks \"%s\"", name, detail.message, substring);

    /* The error body is valid JSON with the same code and message. */
    char *text = NULL;
    size_t text_len = 0;
    assert_int_equal(mbx_error_render_json(rc, detail.message, &text, &text_len), 0);
    json_error_t err;
    json_t *j = json_loadb(text, text_len, 0, &err);
    if (!j)
        fail_msg("%s: error JSON does not parse: %s: %s", name, err.text, text);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        code);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "error"), "message")),
        detail.message);
    json_decref(j);
    free(text);
    free(body);
    free(expected);
}

static void test_valid_case(void **state)
{
    const char *name = *state;
    char path[8192];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", valid_dir, name);
    char *body = th_read_file(path, &len);
    if (!body)
        fail_msg("cannot read %s", path);
    mbx_request *req = NULL;
    mbx_detail detail = {0, ""};
    int rc = mbx_request_parse_json(body, len, &req, &detail);
    if (rc)
        fail_msg("%s: rejected: %s: %s", name, mbx_error_name(rc), detail.message);
    assert_non_null(req);
    assert_true(req->batch.batch >= 1);
    mbx_request_free(req);
    free(body);
}

int main(void)
{
    const char *root = getenv("MBX_SOURCE_ROOT");
    if (!root) {
        fprintf(stderr, "MBX_SOURCE_ROOT is not set (run through meson test)\n");
        return 1;
    }
    snprintf(invalid_dir, sizeof invalid_dir, "%s/tests/data/invalid", root);
    snprintf(valid_dir, sizeof valid_dir, "%s/tests/data/valid", root);
    char **inv = th_list_dir(invalid_dir, "");
    char **val = th_list_dir(valid_dir, ".json");
    if (!inv || !inv[0] || !val || !val[0]) {
        fprintf(stderr, "no cases under %s or %s\n", invalid_dir, valid_dir);
        return 1;
    }
    size_t ni = 0, nv = 0;
    while (inv[ni])
        ni++;
    while (val[nv])
        nv++;
    struct CMUnitTest *tests = calloc(ni + nv, sizeof *tests);
    for (size_t i = 0; i < ni; i++) {
        tests[i].name = inv[i];
        tests[i].test_func = test_invalid_case;
        tests[i].initial_state = inv[i];
    }
    for (size_t i = 0; i < nv; i++) {
        tests[ni + i].name = val[i];
        tests[ni + i].test_func = test_valid_case;
        tests[ni + i].initial_state = val[i];
    }
    int failed = _cmocka_run_group_tests("codec data-driven requests", tests, ni + nv, NULL,
                                         NULL);
    free(tests);
    th_free_list(inv);
    th_free_list(val);
    return failed;
}
