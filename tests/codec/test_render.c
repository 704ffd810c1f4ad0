/*
 * test_render.c - the codec's output side without the core: responses
 * rendered from hand-made results (exact text of a tiny response; every
 * tensor format read back bit for bit; sparse rows chosen from the roles;
 * optional members left out; NaN refused; missing arrays refused), error
 * bodies (escaping, invalid UTF-8, default messages), anchor tensors,
 * mbx_tensor_format_parse, mbx_result_alloc, and the time to render an
 * SSD300 batch-32 gradient as flat text.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "helpers.h"

/* A request with only what rendering reads: dims and outputs. */
static mbx_request fake_request(int64_t B, int64_t A, int64_t C, mbx_grad_output g,
                                mbx_tensor_format fmt, int per_image, int matches)
{
    mbx_request req;
    memset(&req, 0, sizeof req);
    req.batch.batch = B;
    req.batch.num_anchors = A;
    req.batch.num_classes = C;
    req.outputs.gradients = g;
    req.outputs.tensor_format = fmt;
    req.outputs.per_image = per_image;
    req.outputs.matches = matches;
    return req;
}

static json_t *parse_text(const char *text, size_t len)
{
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        fail_msg("not JSON (%s): %.200s", err.text, text);
    return j;
}

static void test_tiny_exact_text(void **state)
{
    (void)state;
    mbx_request req = fake_request(1, 1, 2, MBX_GRAD_DENSE, MBX_TENSOR_NESTED, 1, 1);
    mbx_image_result pi = {1.5, 1.0, 0.5, 1, 0};
    float gl[4] = {0.1f, -0.25f, 0.0f, -0.0f};
    float gc[2] = {1e-7f, 3.0f};
    int32_t m[1] = {-1};
    mbx_result res;
    memset(&res, 0, sizeof res);
    res.loss = 1.5;
    res.conf_loss = 1.0;
    res.loc_loss = 0.5;
    res.normalizer = 1.0;
    res.num_positives = 1;
    res.num_negatives = 0;
    res.per_image = &pi;
    res.grad_loc = gl;
    res.grad_conf = gc;
    res.matches = m;
    char *text;
    size_t len;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, NULL), 0);
    assert_string_equal(text,
                        "{\"loss\":1.5,\"conf_loss\":1,\"loc_loss\":0.5,\"normalizer\":1,"
                        "\"num_positives\":1,\"num_negatives\":0,"
                        "\"per_image\":[{\"loss\":1.5,\"conf_loss\":1,\"loc_loss\":0.5,"
                        "\"num_positives\":1,\"num_negatives\":0}],"
                        "\"grad_loc\":[[[0.100000001,-0.25,0,-0]]],"
                        "\"grad_conf\":[[[1.00000001e-07,3]]],"
                        "\"matches\":[[-1]]}");
    assert_int_equal(len, strlen(text));
    free(text);

    /* flat and b64 spellings of the same response */
    req.outputs.tensor_format = MBX_TENSOR_FLAT;
    req.outputs.per_image = 0;
    req.outputs.matches = 0;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, NULL), 0);
    assert_non_null(strstr(text, "\"grad_loc\":{\"shape\":[1,1,4],\"data\":[0.100000001,-0.25,0,-0]}"));
    assert_null(strstr(text, "per_image"));
    assert_null(strstr(text, "matches"));
    free(text);
    req.outputs.tensor_format = MBX_TENSOR_B64;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, NULL), 0);
    /* 3.0f = 00 00 40 40, 1e-7f = 95 bf d6 33 little-endian */
    assert_non_null(strstr(text, "\"grad_conf\":{\"shape\":[1,1,2],\"dtype\":\"float32\","
                                 "\"b64\":\"lb/WMwAAQEA=\"}"));
    free(text);
    req.outputs.gradients = MBX_GRAD_NONE;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, NULL), 0);
    assert_null(strstr(text, "grad_"));
    free(text);
}

/* Random dense results read back bit for bit in every format. */
static void test_formats_round_trip(void **state)
{
    (void)state;
    const int64_t B = 3, A = 7, C = 5;
    float gl[3 * 7 * 4], gc[3 * 7 * 5];
    srand(7);
    for (size_t i = 0; i < sizeof gl / sizeof gl[0]; i++)
        gl[i] = (float)(rand() - RAND_MAX / 2) / (float)RAND_MAX * 1e-3f;
    for (size_t i = 0; i < sizeof gc / sizeof gc[0]; i++)
        gc[i] = (float)(rand() - RAND_MAX / 2) / (float)(RAND_MAX / 64);
    gc[3] = 1e-38f;  /* tiny and subnormal values survive too */
    gc[4] = 1e-44f;
    mbx_result res;
    memset(&res, 0, sizeof res);
    res.normalizer = 4;
    res.grad_loc = gl;
    res.grad_conf = gc;
    for (int f = 0; f < 3; f++) {
        mbx_request req = fake_request(B, A, C, MBX_GRAD_DENSE, (mbx_tensor_format)f, 0, 0);
        char *text;
        size_t len;
        assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, NULL), 0);
        json_t *j = parse_text(text, len);
        float *dl = th_dense_gradient(j, "grad_loc", B * A, 4);
        float *dc = th_dense_gradient(j, "grad_conf", B * A, C);
        assert_memory_equal(dl, gl, sizeof gl);
        assert_memory_equal(dc, gc, sizeof gc);
        free(dl);
        free(dc);
        json_decref(j);
        free(text);
    }
}

/* Sparse: grad_loc rows = positives, grad_conf rows = positives + counted negatives. */
static void test_sparse_rows(void **state)
{
    (void)state;
    const int64_t B = 2, A = 4, C = 3;
    uint8_t roles[8] = {MBX_ROLE_NONE,     MBX_ROLE_POSITIVE, MBX_ROLE_NEGATIVE, MBX_ROLE_IGNORED,
                        MBX_ROLE_NEGATIVE, MBX_ROLE_NONE,     MBX_ROLE_NONE,     MBX_ROLE_POSITIVE};
    float gl[8 * 4] = {0}, gc[8 * 3] = {0};
    for (int r = 0; r < 8; r++) {
        if (roles[r] == MBX_ROLE_POSITIVE)
            for (int k = 0; k < 4; k++)
                gl[r * 4 + k] = (float)(r * 10 + k + 1);
        if (roles[r] == MBX_ROLE_POSITIVE || roles[r] == MBX_ROLE_NEGATIVE)
            for (int k = 0; k < 3; k++)
                gc[r * 3 + k] = (float)(r * 10 + k + 1) / 8;
    }
    mbx_result res;
    memset(&res, 0, sizeof res);
    res.normalizer = 2;
    res.grad_loc = gl;
    res.grad_conf = gc;
    res.roles = roles;
    for (int f = 0; f < 3; f++) {
        mbx_request req = fake_request(B, A, C, MBX_GRAD_SPARSE, (mbx_tensor_format)f, 0, 0);
        char *text;
        size_t len;
        assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, NULL), 0);
        assert_non_null(strstr(text, "\"grad_loc\":{\"rows\":[1,7],\"values\":"));
        assert_non_null(strstr(text, "\"grad_conf\":{\"rows\":[1,2,4,7],\"values\":"));
        json_t *j = parse_text(text, len);
        float *dl = th_dense_gradient(j, "grad_loc", B * A, 4);
        float *dc = th_dense_gradient(j, "grad_conf", B * A, C);
        assert_memory_equal(dl, gl, sizeof gl);
        assert_memory_equal(dc, gc, sizeof gc);
        free(dl);
        free(dc);
        json_decref(j);
        free(text);
    }
    /* no rows at all */
    memset(roles, MBX_ROLE_NONE, sizeof roles);
    mbx_request req = fake_request(B, A, C, MBX_GRAD_SPARSE, MBX_TENSOR_B64, 0, 0);
    char *text;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, NULL, NULL), 0);
    assert_non_null(strstr(text, "\"grad_loc\":{\"rows\":[],\"values\":{\"shape\":[0,4],"
                                 "\"dtype\":\"float32\",\"b64\":\"\"}}"));
    free(text);
}

static void test_refusals(void **state)
{
    (void)state;
    float gl[4] = {0}, gc[2] = {0};
    mbx_result res;
    memset(&res, 0, sizeof res);
    res.grad_loc = gl;
    res.grad_conf = gc;
    mbx_request req = fake_request(1, 1, 2, MBX_GRAD_DENSE, MBX_TENSOR_NESTED, 0, 0);
    char *text = (char *)&text;
    size_t len = 5;
    mbx_detail d = {0, ""};

    gc[1] = NAN;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, &d), MBX_E_INTERNAL);
    assert_null(text);
    assert_non_null(strstr(d.message, "grad_conf[0][0][1]"));
    gc[1] = 0;
    res.loss = INFINITY;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, &d), MBX_E_INTERNAL);
    res.loss = 0;
    res.normalizer = NAN;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, &d), MBX_E_INTERNAL);
    assert_non_null(strstr(d.message, "normalizer"));
    res.normalizer = 1;

    /* arrays the outputs ask for but the result lacks */
    req.outputs.per_image = 1;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, &d),
                     MBX_E_INVALID_ARGUMENT);
    req.outputs.per_image = 0;
    req.outputs.gradients = MBX_GRAD_SPARSE;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, &d),
                     MBX_E_INVALID_ARGUMENT);
    req.outputs.gradients = MBX_GRAD_DENSE;
    assert_int_equal(mbx_response_render_json(&req, &res, &text, &len, &d), 0);
    free(text);
}

static void test_error_json(void **state)
{
    (void)state;
    char *text;
    size_t len;
    assert_int_equal(mbx_error_render_json(MBX_E_DEGENERATE_BOX, "targets[3].boxes[7]: x2 <= x1",
                                           &text, &len),
                     0);
    assert_string_equal(text, "{\"error\":{\"code\":\"degenerate_box\",\"message\":"
                              "\"targets[3].boxes[7]: x2 <= x1\"}}");
    free(text);
    assert_int_equal(mbx_error_render_json(MBX_E_NOT_FOUND, NULL, &text, &len), 0);
    assert_string_equal(text, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such resource\"}}");
    free(text);
    /* quotes, backslashes, control bytes, valid and invalid UTF-8 */
    const char *msg = "a \"key\" \\ \n\t\x01 caf\xc3\xa9 \xe2\x82\xac cut\xc3";
    assert_int_equal(mbx_error_render_json(MBX_E_UNKNOWN_FIELD, msg, &text, &len), 0);
    json_t *j = parse_text(text, len);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                        "a \"key\" \\ \n\t\x01 caf\xc3\xa9 \xe2\x82\xac cut\xef\xbf\xbd");
    json_decref(j);
    free(text);
    /* every code of the list renders its stable name */
    for (int code = -1; code >= -MBX_ERROR_COUNT; code--) {
        assert_int_equal(mbx_error_render_json(code, NULL, &text, &len), 0);
        j = parse_text(text, len);
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                            mbx_error_name(code));
        json_decref(j);
        free(text);
    }
}

static void test_anchors_render(void **state)
{
    (void)state;
    float anchors[3 * 4] = {0.1f, 0.2f, 0.3f, 0.4f, -0.0366666689f, 0, 1, 1, 0.5f, 0.5f, 0.75f, 1};
    for (int f = 0; f < 3; f++) {
        char *text;
        size_t len;
        assert_int_equal(mbx_anchors_render_json(anchors, 3, (mbx_tensor_format)f, &text, &len,
                                                 NULL),
                         0);
        json_t *j = parse_text(text, len);
        float *data;
        int64_t count, shape[4];
        int rank;
        assert_int_equal(th_decode_tensor(j, &data, &count, shape, &rank), 0);
        assert_int_equal(rank, 2);
        assert_int_equal(shape[0], 3);
        assert_int_equal(shape[1], 4);
        assert_memory_equal(data, anchors, sizeof anchors);
        free(data);
        json_decref(j);
        free(text);
    }
    char *text;
    assert_int_equal(mbx_anchors_render_json(anchors, 0, MBX_TENSOR_FLAT, &text, NULL, NULL), 0);
    assert_string_equal(text, "{\"shape\":[0,4],\"data\":[]}");
    free(text);
}

static void test_tensor_format_parse(void **state)
{
    (void)state;
    mbx_tensor_format f = MBX_TENSOR_B64;
    assert_int_equal(mbx_tensor_format_parse("nested", &f), 0);
    assert_int_equal(f, MBX_TENSOR_NESTED);
    assert_int_equal(mbx_tensor_format_parse("flat", &f), 0);
    assert_int_equal(f, MBX_TENSOR_FLAT);
    assert_int_equal(mbx_tensor_format_parse("b64", &f), 0);
    assert_int_equal(f, MBX_TENSOR_B64);
    assert_int_equal(mbx_tensor_format_parse("B64", &f), MBX_E_OUT_OF_RANGE);
    assert_int_equal(mbx_tensor_format_parse("", &f), MBX_E_OUT_OF_RANGE);
    assert_int_equal(mbx_tensor_format_parse(NULL, &f), MBX_E_OUT_OF_RANGE);
    assert_int_equal(f, MBX_TENSOR_B64);
}

static void test_result_alloc(void **state)
{
    (void)state;
    mbx_request req = fake_request(2, 5, 3, MBX_GRAD_SPARSE, MBX_TENSOR_NESTED, 1, 1);
    mbx_result res;
    assert_int_equal(mbx_result_alloc(&req, &res, NULL), 0);
    assert_non_null(res.per_image);
    assert_non_null(res.grad_loc);
    assert_non_null(res.grad_conf);
    assert_non_null(res.matches);
    assert_non_null(res.roles);
    res.grad_conf[2 * 5 * 3 - 1] = 1; /* sized [B][A][C] */
    res.matches[9] = 1;
    mbx_result_release(&res);
    assert_null(res.grad_loc);
    req = fake_request(2, 5, 3, MBX_GRAD_NONE, MBX_TENSOR_NESTED, 0, 0);
    assert_int_equal(mbx_result_alloc(&req, &res, NULL), 0);
    assert_null(res.per_image);
    assert_null(res.grad_loc);
    assert_null(res.grad_conf);
    assert_null(res.matches);
    assert_null(res.roles);
    mbx_result_release(&res);
    mbx_result_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_exact_text),  cmocka_unit_test(test_formats_round_trip),
        cmocka_unit_test(test_sparse_rows),      cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_error_json),       cmocka_unit_test(test_anchors_render),
        cmocka_unit_test(test_tensor_format_parse), cmocka_unit_test(test_result_alloc),
    };
    return cmocka_run_group_tests_name("codec render", tests, NULL, NULL);
}
