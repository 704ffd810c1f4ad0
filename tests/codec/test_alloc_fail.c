/*
 * test_alloc_fail.c - allocation failure injected at every allocation in
 * turn over the whole parse -> compute -> render path (jansson's chaos
 * test, curl's torture).  The codec (mbx_codec_set_alloc_funcs), the core
 * (mbx_core_set_allocator) and jansson (json_set_alloc_funcs) allocate
 * through counting hooks.  Pass 1: for N = 1, 2, ... the Nth codec or core
 * allocation fails; the call must return MBX_E_OUT_OF_MEMORY with nothing
 * left allocated, until a run makes fewer than N allocations and succeeds.
 * Pass 2 does the same with jansson's allocations, where the rule is
 * weaker because jansson's lexer ignores a failed growth of its token
 * buffer (load.c lex_save) and so drops a character of the token: such a
 * run may succeed or fail with any code (a string one byte short is, say,
 * bad base64), but it must never leak or crash.  Runs on small requests of
 * every tensor form and output option, and on the smallest golden case.
 * Under ASan a leak or a use of a failed block also aborts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h" /* the core's allocation hook (src/core/alloc.h) */
#include "codec_internal.h"
#include "helpers.h"

static long alloc_count;  /* allocations attempted so far (of the hooked kind) */
static long fail_at;      /* the attempt that fails (0: none) */
static long live;         /* blocks currently allocated through the hooks */
static int hook_jansson;  /* 0: count codec + core allocations; 1: jansson's */

static int should_fail(void)
{
    alloc_count++;
    return fail_at && alloc_count == fail_at;
}

/* jansson's hooks: counted and failed only in pass 2. */
static void *j_malloc(size_t n)
{
    if (hook_jansson && should_fail())
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        live++;
    return p;
}

static void *t_malloc(size_t n)
{
    if (!hook_jansson && should_fail())
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        live++;
    return p;
}

static void *t_calloc(size_t c, size_t n)
{
    if (!hook_jansson && should_fail())
        return NULL;
    void *p = calloc(c ? c : 1, n ? n : 1);
    if (p)
        live++;
    return p;
}

static void *t_realloc(void *old, size_t n)
{
    if (!hook_jansson && should_fail())
        return NULL;
    void *p = realloc(old, n ? n : 1);
    if (p && !old)
        live++;
    return p;
}

static void t_free(void *p)
{
    if (p)
        live--;
    free(p);
}

static void install(void)
{
    json_set_alloc_funcs(j_malloc, t_free);
    mbx_codec_set_alloc_funcs(t_malloc, t_calloc, t_realloc, t_free);
    mbx_core_set_allocator(t_malloc, t_free);
}

static void uninstall(void)
{
    json_set_alloc_funcs(malloc, free);
    mbx_codec_set_alloc_funcs(NULL, NULL, NULL, NULL);
    mbx_core_set_allocator(NULL, NULL);
}

/* One pass over body failing each allocation of the hooked kind in turn. */
static long torture_pass(const char *label, const char *body, size_t len, int jansson)
{
    long n;
    hook_jansson = jansson;
    for (n = 1;; n++) {
        char *text = NULL;
        size_t text_len = 0;
        mbx_detail d = {0, ""};
        alloc_count = 0;
        live = 0;
        fail_at = n;
        int rc = th_run_request(body, len, &text, &text_len, &d);
        long made = alloc_count;
        if (rc == 0)
            t_free(text);
        if (live != 0) {
            uninstall();
            fail_msg("%s: %s allocation %ld failing: %ld blocks leaked (rc %s)", label,
                     jansson ? "jansson" : "codec/core", n, live, mbx_error_name(rc));
        }
        if (rc == 0 && made < n)
            break; /* no allocation failed: every point has been tried */
        if (rc == 0 && !jansson) {
            uninstall();
            fail_msg("%s: allocation %ld failed yet the call succeeded", label, n);
        }
        if (rc != 0 && rc != MBX_E_OUT_OF_MEMORY && !jansson) {
            uninstall();
            fail_msg("%s: %s allocation %ld failing gave %s: %s", label,
                     jansson ? "jansson" : "codec/core", n, mbx_error_name(rc), d.message);
        }
        if (rc != 0 && text) {
            uninstall();
            fail_msg("%s: allocation %ld failing left a response", label, n);
        }
    }
    return n - 1;
}

/* Runs body through the whole path failing each allocation in turn. */
static void torture(const char *label, const char *body, size_t len)
{
    install();
    long ours = torture_pass(label, body, len, 0);
    long theirs = torture_pass(label, body, len, 1);
    uninstall();
    hook_jansson = 0;
    print_message("%s: %ld codec/core and %ld jansson allocation points, each failing cleanly\n",
                  label, ours, theirs);
}

static char *read_valid(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/valid/%s", th_env("MBX_SOURCE_ROOT"), name);
    char *s = th_read_file(path, len);
    if (!s)
        fail_msg("cannot read %s", path);
    return s;
}

/* A small request of every shape of input, with outputs set by the caller. */
static void torture_file(const char *name, const char *outputs)
{
    size_t len;
    char *body = read_valid(name, &len);
    json_t *j = json_loadb(body, len, 0, NULL);
    assert_non_null(j);
    if (outputs)
        json_object_set_new(j, "outputs", json_loads(outputs, 0, NULL));
    char *text = json_dumps(j, JSON_COMPACT);
    char label[256];
    snprintf(label, sizeof label, "%s %s", name, outputs ? outputs : "");
    torture(label, text, strlen(text));
    free(text);
    json_decref(j);
    free(body);
}

static void test_small_requests(void **state)
{
    (void)state;
    torture_file("minimal.json", NULL);
    torture_file("minimal.json",
                 "{\"gradients\":\"sparse\",\"tensor_format\":\"b64\",\"matches\":true}");
    torture_file("minimal.json", "{\"gradients\":false,\"per_image\":false}");
    torture_file("tensor_forms.json", "{\"tensor_format\":\"flat\",\"matches\":true}");
    torture_file("difficult_and_empty_image.json", "{\"gradients\":\"sparse\"}");
    torture_file("prior_box_anchors.json", NULL);
    torture_file("cxcywh.json", NULL);
}

static void test_invalid_requests(void **state)
{
    (void)state;
    /* Failures on the error paths too: each call fails, with its own code or OOM. */
    const char *bodies[] = {
        ("{\"anchors\":[[0.1,0.1,0.4,0.4]],\"loc\":[[[0,0,0,0]]],\"conf\":[[[1,0]]],"
         "\"targets\":[{\"boxes\":[[0.5,0.1,0.4,0.4]],\"labels\":[1]}]}"),
        "{\"anchors\":{\"preset\":\"nope\"},\"loc\":[],\"conf\":[],\"targets\":[]}",
        "{\"loc\": [1,",
    };
    install();
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        int first_rc = 0;
        for (long n = 1; n < 100000; n++) {
            char *text = NULL;
            mbx_detail d = {0, ""};
            alloc_count = 0;
            live = 0;
            fail_at = n;
            int rc = th_run_request(bodies[i], strlen(bodies[i]), &text, NULL, &d);
            assert_true(rc != 0);
            assert_null(text);
            if (live != 0) {
                uninstall();
                fail_msg("invalid body %zu, allocation %ld failing: %ld blocks leaked", i, n, live);
            }
            if (alloc_count < n) {
                first_rc = rc;
                break;
            }
        }
        assert_true(first_rc != MBX_E_OUT_OF_MEMORY);
    }
    uninstall();
}

static json_t *to_b64(const json_t *t, int rank)
{
    return th_to_b64(t, 4, rank);
}

static void test_golden_tiny(void **state)
{
    (void)state;
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof path, "%s/cases/tiny.json", th_env("MBX_GOLDEN_DIR"));
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        fail_msg("%s: %s", path, err.text);
    json_t *req = json_object_get(root, "request");
    /* sparse b64 output: the renderer's most allocating path */
    json_object_set_new(req, "outputs",
                        json_pack("{s:s, s:b, s:s}", "gradients", "sparse", "matches", 1,
                                  "tensor_format", "b64"));
    char *text = json_dumps(req, JSON_COMPACT);
    torture("golden tiny.json", text, strlen(text));
    free(text);
    /* the same with b64 tensors long enough to be lifted out of jansson */
    th_rewrite_tensors(req, to_b64);
    text = json_dumps(req, JSON_COMPACT);
    json_decref(root);
    assert_non_null(strstr(text, "\"b64\""));
    torture("golden tiny.json, b64 inputs", text, strlen(text));
    free(text);
}

static void test_render_alone(void **state)
{
    (void)state;
    /* error and anchors rendering: every growth of the buffer failing */
    float anchors[4 * 50];
    for (int i = 0; i < 200; i++)
        anchors[i] = (float)i / 7;
    install();
    for (long n = 1;; n++) {
        char *text = NULL;
        alloc_count = 0;
        live = 0;
        fail_at = n;
        int rc = mbx_anchors_render_json(anchors, 50, MBX_TENSOR_NESTED, &text, NULL, NULL);
        if (rc == 0) {
            t_free(text);
            assert_int_equal(live, 0);
            break;
        }
        assert_int_equal(rc, MBX_E_OUT_OF_MEMORY);
        assert_null(text);
        assert_int_equal(live, 0);
    }
    for (long n = 1;; n++) {
        char *text = NULL;
        alloc_count = 0;
        live = 0;
        fail_at = n;
        int rc = mbx_error_render_json(MBX_E_BAD_LABEL, "targets[0].labels[0]: label 9", &text,
                                       NULL);
        if (rc == 0) {
            t_free(text);
            assert_int_equal(live, 0);
            break;
        }
        assert_int_equal(rc, MBX_E_OUT_OF_MEMORY);
        assert_int_equal(live, 0);
    }
    uninstall();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_requests),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_golden_tiny),
        cmocka_unit_test(test_render_alone),
    };
    return cmocka_run_group_tests_name("codec allocation failures", tests, NULL, NULL);
}
