/*
 * test_cli.c - the multibox-loss tool as a user runs it (path in argv[1]):
 * a golden case's request extracted to a file gives exit 0 and the
 * expected numbers on stdout (also read from standard input and with "-");
 * invalid JSON, an invalid request and a missing file give the error JSON
 * on stderr with exit 2 (1 for the missing file); --help and --version.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "helpers.h"

static const char *tool;
static char tmpdir[256];

typedef struct run_out {
    int status;
    char *out, *err;
    size_t out_len, err_len;
} run_out;

/* Runs "tool args" through the shell with stdout and stderr captured. */
static run_out run_tool(const char *args, const char *stdin_file)
{
    char cmd[8192], out_path[512], err_path[512];
    run_out r;
    snprintf(out_path, sizeof out_path, "%s/stdout", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' %s <'%s' >'%s' 2>'%s'", tool, args,
             stdin_file ? stdin_file : "/dev/null", out_path, err_path);
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    r.status = WEXITSTATUS(st);
    r.out = th_read_file(out_path, &r.out_len);
    r.err = th_read_file(err_path, &r.err_len);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void run_free(run_out *r)
{
    free(r->out);
    free(r->err);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The golden tiny case's request into tmpdir/request.json; returns its expected. */
static json_t *extract_tiny(char *req_path, size_t cap)
{
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof path, "%s/cases/tiny.json", th_env("MBX_GOLDEN_DIR"));
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        fail_msg("%s: %s", path, err.text);
    snprintf(req_path, cap, "%s/request.json", tmpdir);
    assert_int_equal(json_dump_file(json_object_get(root, "request"), req_path, JSON_COMPACT), 0);
    json_t *expected = json_incref(json_object_get(root, "expected"));
    json_decref(root);
    return expected;
}

static void check_success(run_out *r, const json_t *expected, const char *label)
{
    if (r->status != 0)
        fail_msg("%s: exit %d, stderr: %s", label, r->status, r->err);
    assert_int_equal(r->err_len, 0);
    json_error_t err;
    json_t *resp = json_loadb(r->out, r->out_len, 0, &err);
    if (!resp)
        fail_msg("%s: stdout is not JSON: %s", label, err.text);
    th_compare_expected(resp, expected, label);
    json_decref(resp);
}

static void test_golden_request(void **state)
{
    (void)state;
    char req_path[512], args[1024];
    json_t *expected = extract_tiny(req_path, sizeof req_path);
    snprintf(args, sizeof args, "'%s'", req_path);
    run_out r = run_tool(args, NULL);
    check_success(&r, expected, "multibox-loss FILE");
    run_free(&r);
    r = run_tool("", req_path);
    check_success(&r, expected, "multibox-loss < FILE");
    run_free(&r);
    r = run_tool("-", req_path);
    check_success(&r, expected, "multibox-loss - < FILE");
    run_free(&r);
    json_decref(expected);
}

/* Exit status want, nothing on stdout, {"error": {"code": code, "message"}} on stderr. */
static void check_error(run_out *r, int want, const char *code, const char *substring)
{
    if (r->status != want)
        fail_msg("exit %d, expected %d; stderr: %s", r->status, want, r->err);
    assert_int_equal(r->out_len, 0);
    json_error_t err;
    json_t *j = json_loadb(r->err, r->err_len, 0, &err);
    if (!j)
        fail_msg("stderr is not JSON (%s): %s", err.text, r->err);
    const json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    const char *msg = json_string_value(json_object_get(e, "message"));
    assert_non_null(msg);
    if (!strstr(msg, substring))
        fail_msg("message \"%s\" lacks \"%s\"", msg, substring);
    json_decref(j);
}

static void test_bad_input(void **state)
{
    (void)state;
    char path[512], args[1024];
    snprintf(path, sizeof path, "%s/bad.json", tmpdir);
    snprintf(args, sizeof args, "'%s'", path);

    write_file(path, "{\"loc\": [1, 2");
    run_out r = run_tool(args, NULL);
    check_error(&r, 2, "malformed_json", "malformed JSON");
    run_free(&r);

    write_file(path, "{\"anchors\":[[0.1,0.1,0.4,0.4]],\"loc\":[[[0,0,0,0]]],\"conf\":[[[1,0]]],"
                     "\"targets\":[{\"boxes\":[[0.5,0.1,0.4,0.4]],\"labels\":[1]}]}");
    r = run_tool(args, NULL);
    check_error(&r, 2, "degenerate_box", "targets[0].boxes[0]: x2 <= x1");
    run_free(&r);

    /* a whole golden case file is not a request body */
    char golden[4096];
    snprintf(golden, sizeof golden, "'%s/cases/tiny.json'", th_env("MBX_GOLDEN_DIR"));
    r = run_tool(golden, NULL);
    check_error(&r, 2, "unknown_field", "name: unknown field");
    run_free(&r);

    r = run_tool("", NULL); /* empty standard input */
    check_error(&r, 2, "malformed_json", "malformed JSON");
    run_free(&r);

    snprintf(args, sizeof args, "'%s/does-not-exist.json'", tmpdir);
    r = run_tool(args, NULL);
    check_error(&r, 1, "invalid_argument", "cannot open");
    run_free(&r);
}

static void test_help_version(void **state)
{
    (void)state;
    run_out r = run_tool("--help", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: multibox-loss [FILE|-]"));
    run_free(&r);
    r = run_tool("--version", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "multibox-loss " MBX_VERSION_STRING));
    run_free(&r);
    r = run_tool("--frobnicate", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "unknown option"));
    run_free(&r);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mbx-cli-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-multibox-loss\n", argv[0]);
        return 1;
    }
    tool = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_request),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_help_version),
    };
    return cmocka_run_group_tests_name("codec multibox-loss cli", tests, setup, teardown);
}
