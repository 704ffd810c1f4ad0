/*
 * test_oip_render.c - mbx_oip_response_render and the metadata documents,
 * without the core: a request is parsed, its mbx_result filled with known
 * values (exact in FP16 and BF16 where that matters), rendered, the segments
 * joined as they go on the wire and decoded by test_oip_util.c's decoder
 * written from the binary extension's description.  Checks every output's
 * name, datatype, shape and values in binary, JSON and mixed forms, that
 * dense FP32 gradients are not copied, that the sparse outputs scattered
 * back equal the dense ones, that binary FP32 dense gradients sent from
 * sparse rows are the same bytes, FP16 / BF16 gradients, the result
 * allocation per requested output, and allocation failures.
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

#include "codec_internal.h"
#include "oip.h"
#include "test_oip_util.h"

enum { B = 2, A = 5, C = 4 };

/* A request (B=2, A=5, C=4) with the given parameters and outputs JSON (may be NULL). */
static mbx_oip_request *make_request(const char *params, const char *outputs, tu_bytes *body)
{
    char header[4096];
    snprintf(header, sizeof header,
             "{\"id\":\"r\\\"1\",\"inputs\":["
             "{\"name\":\"loc\",\"datatype\":\"FP32\",\"shape\":[2,5,4],\"parameters\":{\"binary_data_size\":160}},"
             "{\"name\":\"conf\",\"datatype\":\"FP32\",\"shape\":[2,5,4],\"parameters\":{\"binary_data_size\":160}},"
             "{\"name\":\"anchors\",\"datatype\":\"FP32\",\"shape\":[5,4],\"data\":[0,0,0.2,0.2,0.2,0.2,0.4,0.4,0.4,0.4,0.6,0.6,0.6,0.6,0.8,0.8,0.8,0.8,1,1]},"
             "{\"name\":\"gt_boxes\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[0.1,0.1,0.3,0.3]},"
             "{\"name\":\"gt_labels\",\"datatype\":\"INT32\",\"shape\":[1],\"data\":[2]},"
             "{\"name\":\"gt_counts\",\"datatype\":\"INT32\",\"shape\":[2],\"data\":[0,1]}]"
             "%s%s%s%s}",
             params ? ",\"parameters\":" : "", params ? params : "",
             outputs ? ",\"outputs\":" : "", outputs ? outputs : "");
    memset(body, 0, sizeof *body);
    tu_put(body, header, strlen(header));
    for (int i = 0; i < 2 * B * A * C; i++)
        tu_put_value(body, "FP32", 0.01 * i);
    mbx_oip_request *req = NULL;
    mbx_detail d = {0, ""};
    int rc = mbx_oip_request_parse(body->data, body->len, strlen(header), &req, &d);
    if (rc)
        fail_msg("parse: %s", d.message);
    return req;
}

/*
 * Fills res with known values: roles per anchor (row r = b*A + a):
 * positive for r in {1, 7}, counted negative for r in {2, 4, 8}, ignored 3,
 * none elsewhere; gradients non-zero only where they may be.
 */
static void fill_result(mbx_result *res)
{
    static const uint8_t roles[B * A] = {0, 1, 2, 3, 2, 0, 0, 1, 2, 0};
    res->loss = 1.25;
    res->conf_loss = 0.75;
    res->loc_loss = 0.25;
    res->normalizer = 2;
    res->num_positives = 2;
    res->num_negatives = 3;
    if (res->per_image) {
        res->per_image[0].loss = 0.5;
        res->per_image[1].loss = 0.75;
    }
    if (res->roles)
        memcpy(res->roles, roles, sizeof roles);
    for (int r = 0; r < B * A; r++) {
        for (int k = 0; k < 4 && res->grad_loc; k++)
            res->grad_loc[r * 4 + k] = roles[r] == 1 ? (float)(r * 4 + k - 20) * 0.125f : 0.0f;
        for (int k = 0; k < C && res->grad_conf; k++)
            res->grad_conf[r * C + k] =
                roles[r] == 1 || roles[r] == 2 ? (float)((r * C + k) % 9 - 4) * 0.0625f : 0.0f;
    }
}

/* Joins the segments as they go on the wire and decodes them. */
static void decode(const mbx_oip_response *resp, tu_response *out)
{
    tu_bytes wire = {0};
    for (size_t i = 0; i < resp->num_segments; i++)
        tu_put(&wire, resp->segments[i].base, resp->segments[i].len);
    assert_int_equal(wire.len, resp->body_len);
    assert_ptr_equal(resp->segments[0].base, resp->header);
    assert_int_equal(resp->segments[0].len, resp->header_len);
    assert_int_equal(strlen(resp->header), resp->header_len);
    char err[256];
    if (tu_decode(wire.data, wire.len, resp->binary ? resp->header_len : SIZE_MAX, out, err))
        fail_msg("decode: %s", err);
    tu_free(&wire);
}

static void expect_tensor(const tu_response *r, const char *name, const char *dtype, int rank,
                          const int64_t *shape, const float *f, const int32_t *i)
{
    const tu_tensor *t = tu_find(r, name);
    if (!t)
        fail_msg("output %s missing", name);
    assert_string_equal(t->datatype, dtype);
    assert_int_equal(t->rank, rank);
    for (int k = 0; k < rank; k++)
        assert_int_equal(t->shape[k], shape[k]);
    for (int64_t k = 0; k < t->count; k++) {
        double want = f ? (double)f[k] : (double)i[k];
        if (t->values[k] != want)
            fail_msg("%s[%lld] = %.9g, expected %.9g", name, (long long)k, t->values[k], want);
    }
}

/* Every output of a rendered response against res; sparse scattered back against dense. */
static void check_all(const tu_response *r, const mbx_result *res, const char *gdt)
{
    const int64_t one[1] = {1}, bs[1] = {B}, gl[3] = {B, A, 4}, gc[3] = {B, A, C};
    const float loss = 1.25f, cl = 0.75f, ll = 0.25f, n = 2, pi[2] = {0.5f, 0.75f};
    const int32_t np = 2, nn = 3;
    expect_tensor(r, "loss", "FP32", 1, one, &loss, NULL);
    expect_tensor(r, "conf_loss", "FP32", 1, one, &cl, NULL);
    expect_tensor(r, "loc_loss", "FP32", 1, one, &ll, NULL);
    expect_tensor(r, "normalizer", "FP32", 1, one, &n, NULL);
    expect_tensor(r, "num_positives", "INT32", 1, one, NULL, &np);
    expect_tensor(r, "num_negatives", "INT32", 1, one, NULL, &nn);
    expect_tensor(r, "per_image_loss", "FP32", 1, bs, pi, NULL);
    expect_tensor(r, "grad_loc", gdt, 3, gl, res->grad_loc, NULL);
    expect_tensor(r, "grad_conf", gdt, 3, gc, res->grad_conf, NULL);

    const int32_t loc_rows[2] = {1, 7}, conf_rows[5] = {1, 2, 4, 7, 8};
    const int64_t lr[1] = {2}, cr[1] = {5};
    expect_tensor(r, "grad_loc_rows", "INT32", 1, lr, NULL, loc_rows);
    expect_tensor(r, "grad_conf_rows", "INT32", 1, cr, NULL, conf_rows);
    /* Scatter the sparse values back: equal to the dense outputs everywhere. */
    const tu_tensor *lv = tu_find(r, "grad_loc_values"), *cv = tu_find(r, "grad_conf_values");
    const tu_tensor *dl = tu_find(r, "grad_loc"), *dc = tu_find(r, "grad_conf");
    assert_non_null(lv);
    assert_non_null(cv);
    assert_string_equal(lv->datatype, gdt);
    assert_int_equal(lv->shape[0], 2);
    assert_int_equal(lv->shape[1], 4);
    assert_int_equal(cv->shape[0], 5);
    assert_int_equal(cv->shape[1], C);
    double scattered_loc[B * A * 4] = {0}, scattered_conf[B * A * C] = {0};
    for (int k = 0; k < 2; k++)
        memcpy(scattered_loc + loc_rows[k] * 4, lv->values + k * 4, 4 * sizeof(double));
    for (int k = 0; k < 5; k++)
        memcpy(scattered_conf + conf_rows[k] * C, cv->values + k * C, C * sizeof(double));
    assert_memory_equal(scattered_loc, dl->values, sizeof scattered_loc);
    assert_memory_equal(scattered_conf, dc->values, sizeof scattered_conf);
}

static const char *all_outputs =
    "[{\"name\":\"loss\"},{\"name\":\"conf_loss\"},{\"name\":\"loc_loss\"},{\"name\":"
    "\"normalizer\"},{\"name\":\"num_positives\"},{\"name\":\"num_negatives\"},{\"name\":"
    "\"per_image_loss\"},{\"name\":\"grad_loc\"},{\"name\":\"grad_conf\"},{\"name\":"
    "\"grad_loc_rows\"},{\"name\":\"grad_loc_values\"},{\"name\":\"grad_conf_rows\"},{\"name\":"
    "\"grad_conf_values\"}]";

static void render_and_check(const char *params, int force_json, const char *gdt)
{
    tu_bytes body;
    mbx_oip_request *req = make_request(params, all_outputs, &body);
    mbx_result res;
    assert_int_equal(mbx_oip_result_alloc(req, &res, NULL), 0);
    assert_non_null(res.roles);
    fill_result(&res);
    mbx_oip_response resp;
    mbx_detail d = {0, ""};
    int rc = mbx_oip_response_render(req, &res, force_json, &resp, &d);
    if (rc)
        fail_msg("render: %s", d.message);
    tu_response r;
    decode(&resp, &r);
    check_all(&r, &res, gdt);
    /* id echoed, model named */
    assert_string_equal(json_string_value(json_object_get(r.header, "id")), "r\"1");
    assert_string_equal(json_string_value(json_object_get(r.header, "model_name")),
                        "multibox_loss");
    int want_binary = !force_json && params && strstr(params, "\"binary_data_output\":true");
    if (!want_binary) {
        assert_int_equal(resp.num_segments, 1);
        assert_int_equal(resp.binary, 0);
    } else {
        assert_int_equal(resp.binary, 1);
        assert_int_equal(resp.num_segments, 14);
        /* Dense FP32 gradients go out of the result's own arrays. */
        int found = 0;
        for (size_t i = 1; i < resp.num_segments; i++)
            found += resp.segments[i].base == (const void *)res.grad_loc ||
                     resp.segments[i].base == (const void *)res.grad_conf;
        assert_int_equal(found, strcmp(gdt, "FP32") == 0 ? 2 : 0);
    }
    tu_response_free(&r);
    mbx_oip_response_free(&resp);
    mbx_oip_response_free(&resp); /* freeing twice is harmless (zeroed) */
    mbx_oip_result_release(&res);
    mbx_oip_request_free(req);
    tu_free(&body);
}

static void test_binary_fp32(void **state)
{
    (void)state;
    render_and_check("{\"binary_data_output\":true}", 0, "FP32");
}

/* The wire bytes of resp, with segments sent from rows read in windows of odd sizes. */
static void join_wire(const mbx_oip_response *resp, tu_bytes *wire)
{
    memset(wire, 0, sizeof *wire);
    for (size_t i = 0; i < resp->num_segments; i++) {
        if (resp->segments[i].base) {
            tu_put(wire, resp->segments[i].base, resp->segments[i].len);
            continue;
        }
        assert_true(i == resp->rows_segment[0] || i == resp->rows_segment[1]);
        char window[7];
        for (size_t off = 0; off < resp->segments[i].len; off += sizeof window) {
            const size_t n = resp->segments[i].len - off < sizeof window
                                 ? resp->segments[i].len - off
                                 : sizeof window;
            mbx_dense_rows_raw_read(&resp->rows[i == resp->rows_segment[1]], off, window, n);
            tu_put(wire, window, n);
        }
    }
    assert_int_equal(wire->len, resp->body_len);
}

/*
 * Binary FP32 dense gradients sent from sparse rows: no dense arrays are
 * allocated, their segments are left to the sender, and the bytes on the
 * wire are exactly those of the render from dense arrays; any other form of
 * the dense gradients (JSON data, FP16, BF16) keeps its arrays.
 */
static void test_binary_fp32_from_rows(void **state)
{
    (void)state;
    tu_bytes body, body2;
    mbx_oip_request *req = make_request("{\"binary_data_output\":true}", all_outputs, &body);
    assert_true(mbx_oip_grads_from_rows(req));
    mbx_result dense, bare;
    assert_int_equal(mbx_oip_result_alloc(req, &dense, NULL), 0);
    fill_result(&dense);
    assert_int_equal(mbx_oip_result_alloc_ex(
                         req, &bare, MBX_RESULT_SPARSE_DIRECT | MBX_RESULT_GRADS_FROM_ROWS, NULL),
                     0);
    assert_null(bare.grad_loc);
    assert_null(bare.grad_conf);
    assert_non_null(bare.per_image);
    fill_result(&bare);
    /* The sparse rows, as the core's sparse units write them: positives, and counted rows. */
    int32_t loc_rows[B * A], conf_rows[B * A];
    float loc_values[B * A * 4], conf_values[B * A * C];
    int64_t P = 0, K = 0;
    for (int r = 0; r < B * A; r++) {
        if (dense.roles[r] == 1) {
            loc_rows[P] = r;
            memcpy(loc_values + 4 * P++, dense.grad_loc + 4 * r, 4 * sizeof(float));
        }
        if (dense.roles[r] == 1 || dense.roles[r] == 2) {
            conf_rows[K] = r;
            memcpy(conf_values + C * K++, dense.grad_conf + C * r, C * sizeof(float));
        }
    }
    const mbx_sparse_grads given = {loc_rows, loc_values, P, conf_rows, conf_values, K};
    mbx_oip_response want, got;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_oip_response_render(req, &dense, 0, &want, &d), 0);
    assert_int_equal(mbx_oip_response_render_sparse(req, &bare, &given, 0, &got, &d), 0);
    assert_int_equal(want.rows_segment[0], 0);
    assert_true(got.rows_segment[0] > 0 && got.rows_segment[1] > got.rows_segment[0]);
    tu_bytes wire_want, wire_got;
    join_wire(&want, &wire_want);
    join_wire(&got, &wire_got);
    assert_int_equal(wire_got.len, wire_want.len);
    assert_memory_equal(wire_got.data, wire_want.data, wire_want.len);
    tu_free(&wire_want);
    tu_free(&wire_got);
    mbx_oip_response_free(&want);
    mbx_oip_response_free(&got);
    mbx_oip_result_release(&dense);
    mbx_oip_result_release(&bare);
    mbx_oip_request_free(req);
    tu_free(&body);

    static const char *const kept[] = {
        NULL, "{\"binary_data_output\":true,\"gradient_datatype\":\"FP16\"}",
        "{\"binary_data_output\":true,\"gradient_datatype\":\"BF16\"}"};
    for (size_t k = 0; k < sizeof kept / sizeof kept[0]; k++) {
        req = make_request(kept[k], all_outputs, &body2);
        assert_false(mbx_oip_grads_from_rows(req));
        assert_int_equal(mbx_oip_result_alloc_ex(req, &bare, MBX_RESULT_GRADS_FROM_ROWS, NULL), 0);
        assert_non_null(bare.grad_loc);
        assert_non_null(bare.grad_conf);
        mbx_oip_result_release(&bare);
        mbx_oip_request_free(req);
        tu_free(&body2);
    }
}

static void test_json_fp32(void **state)
{
    (void)state;
    render_and_check(NULL, 0, "FP32");                           /* binary not asked */
    render_and_check("{\"binary_data_output\":true}", 1, "FP32"); /* forced */
}

static void test_half_gradients(void **state)
{
    (void)state;
    render_and_check("{\"binary_data_output\":true,\"gradient_datatype\":\"FP16\"}", 0, "FP16");
    render_and_check("{\"binary_data_output\":true,\"gradient_datatype\":\"BF16\"}", 0, "BF16");
    render_and_check("{\"gradient_datatype\":\"FP16\"}", 0, "FP16");
    render_and_check("{\"gradient_datatype\":\"BF16\"}", 1, "BF16");
}

/* A value that FP16 / BF16 cannot hold travels rounded to nearest. */
static void test_half_rounding(void **state)
{
    (void)state;
    static const char *const dts[2] = {"FP16", "BF16"};
    for (int t = 0; t < 2; t++) {
        for (int json = 0; json < 2; json++) {
            char params[128];
            snprintf(params, sizeof params, "{\"gradient_datatype\":\"%s\",\"binary_data_output\":%s}",
                     dts[t], json ? "false" : "true");
            tu_bytes body;
            mbx_oip_request *req = make_request(params, "[{\"name\":\"grad_conf\"}]", &body);
            mbx_result res;
            assert_int_equal(mbx_oip_result_alloc(req, &res, NULL), 0);
            assert_null(res.grad_loc);
            assert_null(res.roles);
            assert_null(res.per_image);
            /* The gradients are the core's to write, every element: not zeroed here. */
            memset(res.grad_conf, 0, (size_t)(B * A * C) * sizeof(float));
            res.grad_conf[0] = 0.1f;
            res.grad_conf[1] = -1000.3f;
            mbx_oip_response resp;
            assert_int_equal(mbx_oip_response_render(req, &res, 0, &resp, NULL), 0);
            tu_response r;
            decode(&resp, &r);
            const tu_tensor *g = tu_find(&r, "grad_conf");
            assert_int_equal(g->binary, !json);
            /* half an ulp: FP16 at 0.1 is 2^-15, at 1000 it is 2^-2; BF16 2^-11, 2^2 */
            double tol0 = t == 0 ? 0x1p-15 : 0x1p-11, tol1 = t == 0 ? 0x1p-2 : 0x1p2;
            assert_true(fabs(g->values[0] - 0.1) <= tol0 && g->values[0] != (double)0.1f);
            assert_true(fabs(g->values[1] + 1000.3) <= tol1);
            assert_true(g->values[2] == 0.0);
            tu_response_free(&r);
            mbx_oip_response_free(&resp);
            mbx_oip_result_release(&res);
            mbx_oip_request_free(req);
            tu_free(&body);
        }
    }
}

/* Per-output binary_data overrides binary_data_output both ways; order follows the request. */
static void test_mixed_and_order(void **state)
{
    (void)state;
    tu_bytes body;
    mbx_oip_request *req = make_request(
        "{\"binary_data_output\":true}",
        "[{\"name\":\"num_negatives\"},{\"name\":\"grad_loc\",\"parameters\":{\"binary_data\":false}},"
        "{\"name\":\"loss\",\"parameters\":{\"binary_data\":true}}]",
        &body);
    mbx_result res;
    assert_int_equal(mbx_oip_result_alloc(req, &res, NULL), 0);
    fill_result(&res);
    mbx_oip_response resp;
    assert_int_equal(mbx_oip_response_render(req, &res, 0, &resp, NULL), 0);
    assert_int_equal(resp.num_segments, 3);
    tu_response r;
    decode(&resp, &r);
    assert_int_equal(r.num, 3);
    assert_string_equal(r.t[0].name, "num_negatives");
    assert_string_equal(r.t[1].name, "grad_loc");
    assert_string_equal(r.t[2].name, "loss");
    assert_int_equal(r.t[0].binary, 1);
    assert_int_equal(r.t[1].binary, 0);
    assert_int_equal(r.t[2].binary, 1);
    assert_true(r.t[0].values[0] == 3 && r.t[2].values[0] == 1.25);
    for (int k = 0; k < B * A * 4; k++)
        assert_true(r.t[1].values[k] == res.grad_loc[k]);
    /* The default set (no outputs listed): everything but the sparse forms, in order. */
    tu_response_free(&r);
    mbx_oip_response_free(&resp);
    mbx_oip_result_release(&res);
    mbx_oip_request_free(req);
    tu_free(&body);

    req = make_request(NULL, NULL, &body);
    assert_int_equal(mbx_oip_result_alloc(req, &res, NULL), 0);
    assert_null(res.roles);
    assert_non_null(res.per_image);
    fill_result(&res);
    assert_int_equal(mbx_oip_response_render(req, &res, 0, &resp, NULL), 0);
    decode(&resp, &r);
    static const char *const order[] = {"loss", "conf_loss", "loc_loss", "normalizer",
                                        "num_positives", "num_negatives", "per_image_loss",
                                        "grad_loc", "grad_conf"};
    assert_int_equal(r.num, 9);
    for (int k = 0; k < 9; k++)
        assert_string_equal(r.t[k].name, order[k]);
    tu_response_free(&r);
    mbx_oip_response_free(&resp);
    mbx_oip_result_release(&res);
    mbx_oip_request_free(req);
    tu_free(&body);
}

static void test_missing_arrays(void **state)
{
    (void)state;
    tu_bytes body;
    mbx_oip_request *req = make_request(NULL, all_outputs, &body);
    mbx_result res;
    memset(&res, 0, sizeof res);
    mbx_oip_response resp;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_oip_response_render(req, &res, 0, &resp, &d), MBX_E_INVALID_ARGUMENT);
    assert_null(resp.header);
    assert_null(resp.segments);
    mbx_oip_request_free(req);
    tu_free(&body);
}

/* A non-finite value cannot be written as JSON: MBX_E_INTERNAL, nothing leaks. */
static void test_non_finite_json(void **state)
{
    (void)state;
    tu_bytes body;
    mbx_oip_request *req = make_request(NULL, "[{\"name\":\"grad_loc\"}]", &body);
    mbx_result res;
    assert_int_equal(mbx_oip_result_alloc(req, &res, NULL), 0);
    res.grad_loc[3] = NAN;
    mbx_oip_response resp;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_oip_response_render(req, &res, 0, &resp, &d), MBX_E_INTERNAL);
    assert_non_null(strstr(d.message, "grad_loc"));
    mbx_oip_result_release(&res);
    mbx_oip_request_free(req);
    tu_free(&body);
}

static void test_metadata(void **state)
{
    (void)state;
    char *text;
    size_t len;
    assert_int_equal(mbx_oip_server_metadata_json(&text, &len), 0);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    assert_int_equal(strlen(text), len);
    assert_string_equal(json_string_value(json_object_get(j, "version")), MBX_VERSION_STRING);
    const json_t *ext = json_object_get(j, "extensions");
    int found = 0;
    for (size_t i = 0; i < json_array_size(ext); i++)
        found |= !strcmp(json_string_value(json_array_get(ext, i)), "binary_tensor_data");
    assert_true(found);
    json_decref(j);
    free(text);

    assert_int_equal(mbx_oip_model_metadata_json(&text, &len), 0);
    j = json_loads(text, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "multibox_loss");
    const json_t *ins = json_object_get(j, "inputs"), *outs = json_object_get(j, "outputs");
    assert_int_equal(json_array_size(ins), 7);
    assert_int_equal(json_array_size(outs), MBX_OIP_OUT_COUNT);
    for (int o = 0; o < MBX_OIP_OUT_COUNT; o++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(outs, (size_t)o), "name")),
                            mbx_oip_output_name((mbx_oip_output)o));
    const json_t *loc = json_array_get(ins, 0);
    assert_string_equal(json_string_value(json_object_get(loc, "name")), "loc");
    const json_t *shape = json_object_get(loc, "shape");
    assert_int_equal(json_integer_value(json_array_get(shape, 0)), -1);
    assert_int_equal(json_integer_value(json_array_get(shape, 2)), 4);
    json_decref(j);
    free(text);

    assert_int_equal(mbx_oip_error_json(MBX_E_BAD_FRAMING, "inputs[loc]: \"x\"\n", &text, &len), 0);
    j = json_loads(text, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "bad_framing: inputs[loc]: \"x\"\n");
    json_decref(j);
    free(text);
    assert_int_equal(mbx_oip_error_json(MBX_E_NOT_FOUND, NULL, &text, &len), 0);
    assert_string_equal(text, "{\"error\":\"not_found: no such resource\"}");
    free(text);
}

static void test_dtype_names(void **state)
{
    (void)state;
    for (int t = 0; t < MBX_OIP_DTYPE_COUNT; t++) {
        mbx_oip_dtype back;
        assert_int_equal(mbx_oip_dtype_parse(mbx_oip_dtype_name((mbx_oip_dtype)t), &back), 0);
        assert_int_equal(back, t);
    }
    mbx_oip_dtype x;
    assert_int_equal(mbx_oip_dtype_parse("fp32", &x), -1); /* case-sensitive */
    assert_null(mbx_oip_dtype_name(MBX_OIP_DTYPE_COUNT));
    assert_int_equal(mbx_oip_dtype_size(MBX_OIP_BF16), 2);
    assert_int_equal(mbx_oip_dtype_size(MBX_OIP_BYTES), 0);
    assert_null(mbx_oip_output_name(MBX_OIP_OUT_COUNT));
}

/* ------------------------------------------------------ allocation failure */

static int fail_at_n, alloc_count;
static void *counting_malloc(size_t n)
{
    return ++alloc_count == fail_at_n ? NULL : malloc(n);
}
static void *counting_calloc(size_t c, size_t n)
{
    return ++alloc_count == fail_at_n ? NULL : calloc(c, n);
}
static void *counting_realloc(void *p, size_t n)
{
    return ++alloc_count == fail_at_n ? NULL : realloc(p, n);
}

static void test_render_allocation_failures(void **state)
{
    (void)state;
    for (int json = 0; json < 2; json++) {
        tu_bytes body;
        mbx_oip_request *req = make_request(
            json ? "{\"gradient_datatype\":\"BF16\"}" : "{\"binary_data_output\":true,\"gradient_datatype\":\"FP16\"}",
            all_outputs, &body);
        mbx_result res;
        assert_int_equal(mbx_oip_result_alloc(req, &res, NULL), 0);
        fill_result(&res);
        for (fail_at_n = 1;; fail_at_n++) {
            alloc_count = 0;
            mbx_codec_set_alloc_funcs(counting_malloc, counting_calloc, counting_realloc, free);
            mbx_oip_response resp;
            int rc = mbx_oip_response_render(req, &res, 0, &resp, NULL);
            mbx_codec_set_alloc_funcs(NULL, NULL, NULL, NULL);
            if (rc == 0) {
                mbx_oip_response_free(&resp);
                break;
            }
            assert_int_equal(rc, MBX_E_OUT_OF_MEMORY);
            assert_null(resp.header);
        }
        assert_true(fail_at_n > 5);
        mbx_oip_result_release(&res);
        mbx_oip_request_free(req);
        tu_free(&body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_fp32),
        cmocka_unit_test(test_binary_fp32_from_rows),
        cmocka_unit_test(test_json_fp32),
        cmocka_unit_test(test_half_gradients),
        cmocka_unit_test(test_half_rounding),
        cmocka_unit_test(test_mixed_and_order),
        cmocka_unit_test(test_missing_arrays),
        cmocka_unit_test(test_non_finite_json),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_render_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
