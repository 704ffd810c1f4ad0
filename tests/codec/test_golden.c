/*
 * test_golden.c - every golden case of MBX_GOLDEN_DIR/cases through the
 * codec and the core: the case's "request" is parsed, computed, rendered,
 * and the rendered JSON parsed back (jansson) and compared with "expected"
 * (tolerances of the golden README).  Each case also runs with its tensors
 * converted to nested arrays, to float32 base64 and to float64 base64, and
 * with each output format (nested, flat, b64, sparse); sparse gradients
 * scattered back must equal the dense ones bit for bit, and every row left
 * out of the sparse form must be zero in the dense one.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

typedef struct golden_case {
    char name[256];
    json_t *root; /* loaded on first use */
} golden_case;

static json_t *load_case(golden_case *gc)
{
    if (!gc->root) {
        char path[4096];
        json_error_t err;
        snprintf(path, sizeof path, "%s/cases/%s", th_env("MBX_GOLDEN_DIR"), gc->name);
        gc->root = json_load_file(path, 0, &err);
        if (!gc->root)
            fail_msg("%s: %s", path, err.text);
    }
    return gc->root;
}

/* Runs request (outputs overridden as given) and returns the parsed response. */
static json_t *run(json_t *request, const char *gradients, const char *tensor_format,
                   const char *label)
{
    json_t *outputs = json_object_get(request, "outputs");
    if (!outputs) {
        outputs = json_object();
        json_object_set_new(request, "outputs", outputs);
    }
    if (strcmp(gradients, "sparse") == 0)
        json_object_set_new(outputs, "gradients", json_string("sparse"));
    else
        json_object_set_new(outputs, "gradients", json_true());
    json_object_set_new(outputs, "tensor_format", json_string(tensor_format));
    json_object_set_new(outputs, "per_image", json_true());
    json_object_set_new(outputs, "matches", json_true());

    char *body = json_dumps(request, JSON_COMPACT);
    char *text = NULL;
    size_t len = 0;
    mbx_detail detail = {0, ""};
    int rc = th_run_request(body, strlen(body), &text, &len, &detail);
    free(body);
    if (rc)
        fail_msg("%s: %s: %s", label, mbx_error_name(rc), detail.message);
    assert_int_equal(strlen(text), len);
    json_error_t err;
    json_t *resp = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!resp)
        fail_msg("%s: rendered response is not JSON: %s", label, err.text);
    free(text);
    return resp;
}

static void check_form(golden_case *gc, const char *form, th_tensor_fn fn)
{
    json_t *root = load_case(gc);
    json_t *req = json_deep_copy(json_object_get(root, "request"));
    char label[400];
    snprintf(label, sizeof label, "%s (inputs %s)", gc->name, form);
    if (fn)
        th_rewrite_tensors(req, fn);
    json_t *resp = run(req, "dense", "flat", label);
    th_compare_expected(resp, json_object_get(root, "expected"), label);
    json_decref(resp);
    json_decref(req);
}

static json_t *to_nested(const json_t *t, int rank)
{
    (void)rank;
    return th_to_nested(t);
}
static json_t *to_b64_32(const json_t *t, int rank)
{
    return th_to_b64(t, 4, rank);
}
static json_t *to_b64_64(const json_t *t, int rank)
{
    return th_to_b64(t, 8, rank);
}

static void test_inputs_flat(void **state)
{
    check_form(*state, "as stored", NULL);
}
static void test_inputs_nested(void **state)
{
    check_form(*state, "nested", to_nested);
}
static void test_inputs_b64_f32(void **state)
{
    check_form(*state, "b64 float32", to_b64_32);
}
static void test_inputs_b64_f64(void **state)
{
    check_form(*state, "b64 float64", to_b64_64);
}

/* Each output format gives the same numbers; sparse scattered equals dense. */
static void test_outputs(void **state)
{
    golden_case *gc = *state;
    json_t *root = load_case(gc);
    json_t *expected = json_object_get(root, "expected");
    json_t *req = json_object_get(root, "request");
    json_t *shape = json_object_get(json_object_get(req, "conf"), "shape");
    int64_t B = json_integer_value(json_array_get(shape, 0));
    int64_t A = json_integer_value(json_array_get(shape, 1));
    int64_t C = json_integer_value(json_array_get(shape, 2));
    static const char *const formats[] = {"nested", "flat", "b64"};
    float *dense_loc = NULL, *dense_conf = NULL;
    for (int f = 0; f < 3; f++) {
        for (int sparse = 0; sparse < 2; sparse++) {
            char label[400];
            snprintf(label, sizeof label, "%s (outputs %s%s)", gc->name, formats[f],
                     sparse ? " sparse" : "");
            json_t *r = json_deep_copy(req);
            json_t *resp = run(r, sparse ? "sparse" : "dense", formats[f], label);
            th_compare_expected(resp, expected, label);
            float *gl = th_dense_gradient(resp, "grad_loc", B * A, 4);
            float *gcf = th_dense_gradient(resp, "grad_conf", B * A, C);
            if (!dense_loc) {
                dense_loc = gl;
                dense_conf = gcf;
            } else {
                /* Same floats whatever the format: text is %.9g, exact for float32. */
                if (memcmp(gl, dense_loc, (size_t)(B * A * 4) * sizeof(float)) != 0)
                    fail_msg("%s: grad_loc differs from the nested dense one", label);
                if (memcmp(gcf, dense_conf, (size_t)(B * A * C) * sizeof(float)) != 0)
                    fail_msg("%s: grad_conf differs from the nested dense one", label);
                free(gl);
                free(gcf);
            }
            if (sparse) {
                /* Rows left out must be exactly zero in the dense gradient. */
                const json_t *rows = json_object_get(json_object_get(resp, "grad_conf"), "rows");
                const json_t *lrows = json_object_get(json_object_get(resp, "grad_loc"), "rows");
                assert_true(json_array_size(lrows) <= json_array_size(rows));
                assert_int_equal(json_array_size(lrows),
                                 json_integer_value(json_object_get(expected, "num_positives")));
                assert_int_equal(json_array_size(rows) - json_array_size(lrows),
                                 json_integer_value(json_object_get(expected, "num_negatives")));
                size_t k = 0;
                for (int64_t row = 0; row < B * A; row++) {
                    int listed = k < json_array_size(rows) &&
                                 json_integer_value(json_array_get(rows, k)) == row;
                    if (listed) {
                        k++;
                        continue;
                    }
                    for (int64_t c = 0; c < C; c++)
                        if (dense_conf[row * C + c] != 0.0f)
                            fail_msg("%s: grad_conf row %lld is non-zero but not listed", label,
                                     (long long)row);
                }
            }
            json_decref(resp);
            json_decref(r);
        }
    }
    free(dense_loc);
    free(dense_conf);
}

static int teardown_case(void **state)
{
    golden_case *gc = *state;
    json_decref(gc->root);
    gc->root = NULL;
    return 0;
}

int main(void)
{
    char dir[4096];
    const char *golden = getenv("MBX_GOLDEN_DIR");
    if (!golden) {
        fprintf(stderr, "MBX_GOLDEN_DIR is not set (run through meson test)\n");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/cases", golden);
    char **names = th_list_dir(dir, ".json");
    if (!names || !names[0]) {
        fprintf(stderr, "no golden cases in %s\n", dir);
        return 1;
    }
    size_t n = 0;
    while (names[n])
        n++;
    golden_case *cases = calloc(n, sizeof *cases);
    struct CMUnitTest *tests = calloc(n * 5, sizeof *tests);
    char **test_names = calloc(n * 5, sizeof *test_names);
    static const char *const kinds[] = {"inputs flat", "inputs nested", "inputs b64 float32",
                                        "inputs b64 float64", "outputs all formats"};
    static const CMUnitTestFunction fns[] = {test_inputs_flat, test_inputs_nested,
                                             test_inputs_b64_f32, test_inputs_b64_f64,
                                             test_outputs};
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(cases[i].name, sizeof cases[i].name, "%s", names[i]);
        for (int k = 0; k < 5; k++) {
            test_names[t] = malloc(400);
            snprintf(test_names[t], 400, "%s: %s", names[i], kinds[k]);
            tests[t].name = test_names[t];
            tests[t].test_func = fns[k];
            tests[t].initial_state = &cases[i];
            /* the case file is freed after its last test */
            tests[t].teardown_func = k == 4 ? teardown_case : NULL;
            t++;
        }
    }
    int failed = _cmocka_run_group_tests("codec golden", tests, t, NULL, NULL);
    for (size_t i = 0; i < t; i++)
        free(test_names[i]);
    for (size_t i = 0; i < n; i++)
        json_decref(cases[i].root);
    free(test_names);
    free(tests);
    free(cases);
    th_free_list(names);
    return failed;
}
