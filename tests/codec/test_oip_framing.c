/*
 * test_oip_framing.c - mbx_oip_request_parse: the data-driven cases of
 * tests/data/oip (one request each, with the expected error code and a
 * substring of its message, or "ok" and fields to check), each body placed
 * both against a guard page and aligned for the in-place path; the parsed
 * tensors compared with the values the case holds; every truncation of a
 * valid body (always BAD_FRAMING, never a crash); tensors used in place
 * exactly when aligned; presets; the allocation-failure sweep.
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
#include "half.h"
#include "helpers.h"
#include "oip.h"
#include "test_oip_util.h"

static char data_dir[1024];

/* A case's body: header text + binary tensors + extras; header_len as the case says. */
typedef struct built {
    tu_bytes body;
    size_t header_len;       /* SIZE_MAX: no Inference-Header-Content-Length */
    size_t exact_header_len; /* the JSON text's length */
} built;

static double value_of(const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "nan"))
            return NAN;
        if (!strcmp(s, "inf"))
            return INFINITY;
        if (!strcmp(s, "-inf"))
            return -INFINITY;
        fail_msg("bad value string %s", s);
    }
    return json_number_value(v);
}

static void build_case(const json_t *c, built *b)
{
    memset(b, 0, sizeof *b);
    char *text;
    const json_t *ht = json_object_get(c, "header_text");
    if (ht)
        text = strdup(json_string_value(ht));
    else
        text = json_dumps(json_object_get(c, "header"), JSON_COMPACT);
    assert_non_null(text);
    b->exact_header_len = strlen(text);
    tu_put(&b->body, text, strlen(text));
    free(text);
    const json_t *bin = json_object_get(c, "binary");
    for (size_t i = 0; i < json_array_size(bin); i++) {
        const json_t *e = json_array_get(bin, i);
        const char *dt = json_string_value(json_object_get(e, "dtype"));
        const json_t *vals = json_object_get(e, "values");
        for (size_t k = 0; k < json_array_size(vals); k++)
            tu_put_value(&b->body, dt, value_of(json_array_get(vals, k)));
    }
    const json_t *hex = json_object_get(c, "append_hex");
    if (hex) {
        const char *h = json_string_value(hex);
        for (size_t k = 0; h[k] && h[k + 1]; k += 2) {
            unsigned v;
            sscanf(h + k, "%2x", &v);
            unsigned char byte = (unsigned char)v;
            tu_put(&b->body, &byte, 1);
        }
    }
    const json_t *tr = json_object_get(c, "truncate");
    if (tr)
        b->body.len -= (size_t)json_integer_value(tr);
    const json_t *hl = json_object_get(c, "header_length");
    b->header_len = b->exact_header_len;
    if (json_is_string(hl) && !strcmp(json_string_value(hl), "absent"))
        b->header_len = SIZE_MAX;
    else if (json_is_object(hl))
        b->header_len = (size_t)((int64_t)b->exact_header_len +
                                 json_integer_value(json_object_get(hl, "delta")));
}

/* The request's input of that name in the case header, and its values (flattened). */
static const json_t *case_input(const json_t *c, const char *name, size_t *bin_index)
{
    const json_t *inputs = json_object_get(json_object_get(c, "header"), "inputs");
    size_t nbin = 0;
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        const json_t *in = json_array_get(inputs, i);
        int binary = json_object_get(json_object_get(in, "parameters"), "binary_data_size") != NULL;
        if (!strcmp(json_string_value(json_object_get(in, "name")), name)) {
            *bin_index = binary ? nbin : SIZE_MAX;
            return in;
        }
        nbin += binary;
    }
    return NULL;
}

static void flatten_into(const json_t *j, double *out, size_t *n)
{
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            flatten_into(json_array_get(j, i), out, n);
        return;
    }
    out[(*n)++] = json_is_boolean(j) ? json_is_true(j) : value_of(j);
}

/* What the parser must have stored for one value of datatype dt. */
static double expected_value(const char *dt, double v)
{
    if (!strcmp(dt, "FP16"))
        return tu_f16(mbx_f32_to_f16((float)v));
    if (!strcmp(dt, "BF16"))
        return tu_bf16(mbx_f32_to_bf16((float)v));
    if (!strcmp(dt, "FP32") || !strcmp(dt, "FP64"))
        return (float)v;
    return v;
}

/* Compares one parsed tensor with the case's values for that input. */
static void check_values(const json_t *c, const char *name, const mbx_oip_request *req)
{
    size_t bi;
    const json_t *in = case_input(c, name, &bi);
    if (!in)
        return;
    double vals[64];
    size_t n = 0;
    const json_t *src = bi == SIZE_MAX
                            ? json_object_get(in, "data")
                            : json_object_get(json_array_get(json_object_get(c, "binary"), bi),
                                              "values");
    flatten_into(src, vals, &n);
    const char *dt = json_string_value(json_object_get(in, "datatype"));
    const mbx_batch *b = &req->core.batch;
    for (size_t k = 0; k < n; k++) {
        double want = expected_value(dt, vals[k]), got;
        if (!strcmp(name, "loc"))
            got = b->loc[k];
        else if (!strcmp(name, "conf"))
            got = b->conf[k];
        else if (!strcmp(name, "anchors"))
            got = b->anchors[k];
        else if (!strcmp(name, "gt_boxes"))
            got = b->targets[0].boxes[k];
        else if (!strcmp(name, "gt_labels"))
            got = (double)b->targets[0].labels[k];
        else if (!strcmp(name, "gt_difficult"))
            got = b->targets[0].difficult[k];
        else
            return;
        if (got != want)
            fail_msg("%s[%zu]: parsed %.9g, case holds %.9g", name, k, got, want);
    }
}

static void check_ok(const json_t *c, const mbx_oip_request *req, int aligned)
{
    static const char *const names[] = {"loc", "conf", "anchors", "gt_boxes", "gt_labels",
                                        "gt_difficult"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_values(c, names[i], req);
    assert_int_equal(req->core.batch.batch, 1);
    assert_int_equal(req->core.batch.num_anchors, 2);
    assert_int_equal(req->core.batch.num_classes, 3);
    assert_int_equal(req->core.max_boxes, 1);
    const json_t *chk = json_object_get(c, "check");
    const json_t *v;
    if (!chk)
        return;
    if ((v = json_object_get(chk, "in_place_aligned")) && aligned)
        assert_int_equal(req->in_place, json_integer_value(v));
    if ((v = json_object_get(chk, "num_outputs")))
        assert_int_equal(req->num_outputs, json_integer_value(v));
    if ((v = json_object_get(chk, "binary")))
        for (int k = 0; k < req->num_outputs; k++)
            assert_int_equal(req->binary[k], json_is_true(v));
    if ((v = json_object_get(chk, "id")))
        assert_string_equal(req->id, json_string_value(v));
    if ((v = json_object_get(chk, "gradient_datatype")))
        assert_string_equal(mbx_oip_dtype_name(req->gradient_datatype), json_string_value(v));
    if ((v = json_object_get(chk, "use_difficult")))
        assert_int_equal(req->core.config.use_difficult, json_is_true(v));
    if ((v = json_object_get(chk, "bipartite")))
        assert_int_equal(req->core.config.bipartite, json_integer_value(v));
    if ((v = json_object_get(chk, "variances"))) {
        assert_int_equal(req->core.config.num_variances, (int)json_array_size(v));
        for (size_t k = 0; k < json_array_size(v); k++)
            assert_true(req->core.config.variances[k] == json_number_value(json_array_get(v, k)));
    }
    if ((v = json_object_get(chk, "outputs"))) {
        assert_int_equal(req->num_outputs, (int)json_array_size(v));
        for (size_t k = 0; k < json_array_size(v); k++) {
            const json_t *o = json_array_get(v, k);
            assert_string_equal(mbx_oip_output_name(req->output[k]),
                                json_string_value(json_array_get(o, 0)));
            assert_int_equal(req->binary[k], json_is_true(json_array_get(o, 1)));
        }
    }
}

static void run_case(const char *file)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!c)
        fail_msg("%s: %s", file, je.text);
    built b;
    build_case(c, &b);
    const char *expect = json_string_value(json_object_get(c, "expect"));
    const char *message = json_string_value(json_object_get(c, "message"));

    for (int placement = 0; placement < 2; placement++) {
        tu_placed pl = {0};
        const uint8_t *body =
            placement == 0
                ? tu_place_guarded(&pl, b.body.data, b.body.len)
                : tu_place_aligned(&pl, b.body.data, b.body.len,
                                   b.header_len == SIZE_MAX ? 0 : b.header_len, 0);
        mbx_oip_request *req = (mbx_oip_request *)1;
        mbx_detail d = {0, ""};
        int rc = mbx_oip_request_parse(body, b.body.len, b.header_len, &req, &d);
        if (strcmp(expect, "ok") == 0) {
            if (rc)
                fail_msg("%s: expected success, got %s: %s", file, mbx_error_name(rc), d.message);
            check_ok(c, req, placement == 1);
            mbx_oip_request_free(req);
        } else {
            if (rc == 0)
                fail_msg("%s: expected %s, parsed fine", file, expect);
            assert_null(req);
            if (strcmp(mbx_error_name(rc), expect) != 0)
                fail_msg("%s: expected %s, got %s: %s", file, expect, mbx_error_name(rc),
                         d.message);
            assert_int_equal(d.code, rc);
            if (placement == 0 && getenv("MBX_TEST_VERBOSE"))
                printf("%-40s %s: %s\n", file, mbx_error_name(rc), d.message);
            if (message && !strstr(d.message, message))
                fail_msg("%s: message \"%s\" lacks \"%s\"", file, d.message, message);
        }
        tu_placed_free(&pl);
    }
    tu_free(&b.body);
    json_decref(c);
}

static void test_data_cases(void **state)
{
    (void)state;
    char **files = th_list_dir(data_dir, ".json");
    assert_non_null(files);
    int n = 0;
    for (int i = 0; files[i]; i++, n++)
        run_case(files[i]);
    assert_true(n >= 60);
    th_free_list(files);
}

/* Loads one case file's body. */
static void load_built(const char *file, built *b)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    json_t *c = json_load_file(path, 0, NULL);
    assert_non_null(c);
    build_case(c, b);
    json_decref(c);
}

static void test_every_truncation(void **state)
{
    (void)state;
    built b;
    load_built("ok_binary.json", &b);
    for (size_t len = 0; len < b.body.len; len++) {
        tu_placed pl = {0};
        const uint8_t *body = tu_place_guarded(&pl, b.body.data, len);
        mbx_oip_request *req = NULL;
        mbx_detail d = {0, ""};
        int rc = mbx_oip_request_parse(body, len, b.header_len, &req, &d);
        if (rc != MBX_E_BAD_FRAMING)
            fail_msg("length %zu of %zu: %s: %s", len, b.body.len, mbx_error_name(rc), d.message);
        assert_null(req);
        tu_placed_free(&pl);
    }
    tu_free(&b.body);
}

static void test_in_place_only_when_aligned(void **state)
{
    (void)state;
    built b;
    load_built("ok_binary.json", &b);
    for (size_t mis = 0; mis < 8; mis++) {
        tu_placed pl = {0};
        const uint8_t *body = tu_place_aligned(&pl, b.body.data, b.body.len, b.header_len, mis);
        mbx_oip_request *req = NULL;
        assert_int_equal(mbx_oip_request_parse(body, b.body.len, b.header_len, &req, NULL), 0);
        const mbx_batch *bt = &req->core.batch;
        int aligned = mis % 4 == 0;
        assert_int_equal(req->in_place, aligned ? 4 : 0);
        /* loc is the first binary tensor: right after the header. */
        assert_int_equal((const uint8_t *)bt->loc == body + b.header_len, aligned);
        assert_true(bt->loc[0] == 0.1f && bt->loc[7] == 0.15f);
        assert_true(bt->conf[5] == -1.0f);
        assert_true(bt->anchors[6] == 1.0f);
        assert_true(bt->targets[0].boxes[2] == 0.45f);
        assert_int_equal(bt->targets[0].labels[0], 1);
        assert_int_equal(bt->targets[0].num_boxes, 1);
        assert_null(bt->targets[0].difficult);
        assert_int_equal(bt->anchors_format, MBX_BOX_XYXY);
        mbx_oip_request_free(req);
        tu_placed_free(&pl);
    }
    tu_free(&b.body);
}

/* A JSON-only body parses alike with the header length absent (SIZE_MAX or 0) or exact. */
static void test_header_length_forms(void **state)
{
    (void)state;
    built b;
    load_built("ok_json.json", &b);
    size_t forms[3] = {SIZE_MAX, 0, b.body.len};
    for (int i = 0; i < 3; i++) {
        mbx_oip_request *req = NULL;
        mbx_detail d = {0, ""};
        int rc = mbx_oip_request_parse(b.body.data, b.body.len, forms[i], &req, &d);
        if (rc)
            fail_msg("form %d: %s", i, d.message);
        assert_true(req->core.batch.conf[4] == 2.0f);
        mbx_oip_request_free(req);
    }
    tu_free(&b.body);
}

/* anchor_preset with A = 8732 and several images: counts split boxes per image. */
static void test_preset_and_images(void **state)
{
    (void)state;
    const int64_t B = 3, A = 8732, C = 4;
    json_t *h = json_pack(
        "{s:[{s:s,s:[I,I,i],s:s,s:{s:I}},{s:s,s:[I,I,I],s:s,s:{s:I}},"
        "{s:s,s:[i,i],s:s,s:[f,f,f,f,f,f,f,f]},{s:s,s:[i],s:s,s:[i,i]},{s:s,s:[I],s:s,s:[i,i,i]}],"
        "s:{s:s,s:s}}",
        "inputs", "name", "loc", "shape", B, A, 4, "datatype", "FP16", "parameters",
        "binary_data_size", B * A * 4 * 2, "name", "conf", "shape", B, A, C, "datatype", "FP32",
        "parameters", "binary_data_size", B * A * C * 4, "name", "gt_boxes", "shape", 2, 4,
        "datatype", "FP32", "data", 0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.9, 0.8, "name", "gt_labels",
        "shape", 2, "datatype", "INT64", "data", 1, 3, "name", "gt_counts", "shape", B,
        "datatype", "INT32", "data", 1, 0, 1, "parameters", "anchor_preset", "ssd300_voc",
        "box_format", "xyxy");
    assert_non_null(h);
    char *text = json_dumps(h, JSON_COMPACT);
    tu_bytes body = {0};
    tu_put(&body, text, strlen(text));
    for (int64_t i = 0; i < B * A * 4; i++)
        tu_put_value(&body, "FP16", (double)(i % 17) * 0.125 - 1.0);
    for (int64_t i = 0; i < B * A * C; i++)
        tu_put_value(&body, "FP32", (double)(i % 29) * 0.1);
    mbx_oip_request *req = NULL;
    mbx_detail d = {0, ""};
    int rc = mbx_oip_request_parse(body.data, body.len, strlen(text), &req, &d);
    if (rc)
        fail_msg("%s", d.message);
    const mbx_batch *b = &req->core.batch;
    assert_int_equal(b->batch, B);
    assert_int_equal(b->num_anchors, A);
    assert_int_equal(b->anchors_format, MBX_BOX_XYXY);
    float ref[8732 * 4];
    mbx_prior_params pp;
    assert_int_equal(mbx_prior_preset("ssd300_voc", &pp, NULL), 0);
    assert_int_equal(mbx_prior_generate(&pp, ref, A, NULL), 0);
    assert_memory_equal(b->anchors, ref, sizeof ref);
    assert_int_equal(b->targets[0].num_boxes, 1);
    assert_int_equal(b->targets[1].num_boxes, 0);
    assert_int_equal(b->targets[2].num_boxes, 1);
    assert_true(b->targets[2].boxes[0] == 0.5f && b->targets[2].labels[0] == 3);
    assert_true(b->loc[17 * 3 + 2] == 0.125f * 2 - 1.0f);
    assert_true(b->conf[30] == 0.1f);
    mbx_shape s = mbx_oip_request_shape(req, 2);
    assert_int_equal(s.max_boxes, 1);
    assert_int_equal(s.num_classes, C);
    assert_int_equal(s.num_slots, 2);
    mbx_oip_request_free(req);
    free(text);
    json_decref(h);
    tu_free(&body);
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

static void sweep(const char *file)
{
    built b;
    load_built(file, &b);
    for (fail_at_n = 1;; fail_at_n++) {
        alloc_count = 0;
        mbx_codec_set_alloc_funcs(counting_malloc, counting_calloc, counting_realloc, free);
        mbx_oip_request *req = NULL;
        mbx_detail d = {0, ""};
        int rc = mbx_oip_request_parse(b.body.data, b.body.len, b.header_len, &req, &d);
        mbx_result res;
        int rc2 = rc == 0 ? mbx_oip_result_alloc(req, &res, &d) : -1;
        mbx_codec_set_alloc_funcs(NULL, NULL, NULL, NULL);
        if (rc == 0 && rc2 == 0) {
            mbx_oip_result_release(&res);
            mbx_oip_request_free(req);
            break;
        }
        if (rc == 0) {
            assert_int_equal(rc2, MBX_E_OUT_OF_MEMORY);
            mbx_oip_request_free(req);
            continue;
        }
        assert_int_equal(rc, MBX_E_OUT_OF_MEMORY);
        assert_null(req);
    }
    assert_true(fail_at_n > 3);
    tu_free(&b.body);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    sweep("ok_binary.json");
    sweep("ok_json.json");
    sweep("ok_int64_labels.json");
    sweep("ok_outputs_subset.json");
}

int main(void)
{
    const char *root = getenv("MBX_SOURCE_ROOT");
    snprintf(data_dir, sizeof data_dir, "%s/tests/data/oip", root ? root : ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_cases),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_in_place_only_when_aligned),
        cmocka_unit_test(test_header_length_forms),
        cmocka_unit_test(test_preset_and_images),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
