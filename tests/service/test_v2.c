/*
 * test_v2.c - the Open Inference Protocol endpoints of the real multiboxd
 * over HTTP: metadata, health and readiness; every golden case through
 * POST /v2/models/multibox_loss/infer with binary tensors and with JSON
 * data, checked against the golden "expected" (README tolerances), against
 * /v1/loss (bit for bit), and sparse outputs against the dense ones; every
 * header-length residue mod 16 and chunked bodies giving the same answer;
 * FP16 / BF16 / FP64 inputs equal to FP32 inputs holding the same values;
 * FP16 / BF16 gradients equal to an independent rounding of the FP32 ones;
 * /v1 sparse gradients; requests without a Content-Type and shaped like
 * tritonclient's.  Binary answers are decoded by test_oip_util.c's decoder,
 * written from the binary tensor extension's description.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "oip.h"
#include "test_v2_util.h"

static server srv;
static int teardown_failed;

static int setup(void **state)
{
    (void)state;
    /* Streaming always, for the targets-first requests: this client is local. */
    static const char *const args[] = {"--workers", "2", "--stream-upload", "always", NULL};
    return server_start(&srv, args, NULL, 0);
}

static int teardown(void **state)
{
    (void)state;
    return server_stop_shared(&srv, 60, &teardown_failed);
}

static const char *url(const char *path)
{
    return server_url(&srv, path);
}

/* ------------------------------------------------------------- metadata */

static void expect_v2_error(const v2_resp *r, long status, const char *code)
{
    if (r->status != status || strcmp(v2_error_code(r), code) != 0)
        fail_msg("expected %ld %s, got %ld %.300s", status, code, r->status, r->body);
    assert_string_equal(r->content_type, "application/json");
}

static void test_metadata(void **state)
{
    (void)state;
    v2_resp r;
    v2_get(url("/v2"), &r);
    assert_int_equal(r.status, 200);
    json_t *j = json_loadb((const char *)r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_string(json_object_get(j, "name")));
    assert_true(json_is_string(json_object_get(j, "version")));
    const json_t *ext = json_object_get(j, "extensions");
    int binary = 0;
    for (size_t i = 0; i < json_array_size(ext); i++)
        binary |= !strcmp(json_string_value(json_array_get(ext, i)), "binary_tensor_data");
    assert_true(binary);
    json_decref(j);
    v2_resp_free(&r);

    v2_get(url("/v2/models/multibox_loss"), &r);
    assert_int_equal(r.status, 200);
    j = json_loadb((const char *)r.body, r.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "multibox_loss");
    static const char *const inputs[] = {"loc", "conf", "anchors", "gt_boxes", "gt_labels",
                                         "gt_counts", "gt_difficult"};
    const json_t *ins = json_object_get(j, "inputs");
    assert_int_equal(json_array_size(ins), 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(ins, i), "name")),
                            inputs[i]);
    assert_int_equal(json_array_size(json_object_get(j, "outputs")), 13);
    json_decref(j);
    v2_resp_free(&r);

    /* The status is the answer; the body is empty. */
    static const char *const probes[] = {"/v2/health/live", "/v2/health/ready",
                                         "/v2/models/multibox_loss/ready"};
    for (int i = 0; i < 3; i++) {
        v2_get(url(probes[i]), &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.len, 0);
        v2_resp_free(&r);
    }

    /* Errors under /v2 use the protocol's body: {"error": "<code>: <message>"}. */
    v2_get(url("/v2/models/resnet50"), &r);
    expect_v2_error(&r, 404, "not_found");
    assert_non_null(strstr(v2_error_message(&r), "resnet50"));
    v2_resp_free(&r);
    v2_get(url("/v2/models/resnet50/ready"), &r);
    expect_v2_error(&r, 404, "not_found");
    v2_resp_free(&r);
    v2_get(url("/v2/no/such/path"), &r);
    expect_v2_error(&r, 404, "not_found");
    v2_resp_free(&r);
    v2_get(url(V2_INFER), &r);
    expect_v2_error(&r, 405, "method_not_allowed");
    assert_string_equal(r.allow, "POST");
    v2_resp_free(&r);
    v2_req post = {.method = "POST", .url = url("/v2/health/live"), .header_len = SIZE_MAX};
    v2_do(&post, &r);
    expect_v2_error(&r, 405, "method_not_allowed");
    v2_resp_free(&r);
    /* An unknown model is refused before its body is read. */
    static const char body[] = "{\"inputs\": []}";
    v2_req other = {.url = url("/v2/models/resnet50/infer"), .body = body, .len = sizeof body - 1,
                    .content_type = "application/json", .header_len = SIZE_MAX};
    v2_do(&other, &r);
    expect_v2_error(&r, 404, "not_found");
    v2_resp_free(&r);
    /* Outside /v2 the errors keep the /v1 body. */
    http_resp h;
    http_get(url("/v3"), &h);
    assert_int_equal(h.status, 404);
    assert_string_equal(error_code(&h), "not_found");
    http_resp_free(&h);
}

/* ---------------------------------------------------------- golden cases */

static void close_rel(double got, double want, const char *what, const char *label)
{
    if (!(fabs(got - want) <= 1e-5 * fmax(fabs(got), fabs(want)) + 1e-7))
        fail_msg("%s: %s = %.9g, golden %.9g", label, what, got, want);
}

/* A decoded /v2 answer against the golden expected (README tolerances). */
static void check_golden_v2(const tu_response *r, const json_t *expected, const char *label)
{
    static const char *const reals[] = {"loss", "conf_loss", "loc_loss", "normalizer"};
    for (int i = 0; i < 4; i++) {
        const tu_tensor *t = tu_find(r, reals[i]);
        assert_non_null(t);
        assert_string_equal(t->datatype, "FP32");
        close_rel(t->values[0], json_number_value(json_object_get(expected, reals[i])), reals[i],
                  label);
    }
    static const char *const counts[] = {"num_positives", "num_negatives"};
    for (int i = 0; i < 2; i++) {
        const tu_tensor *t = tu_find(r, counts[i]);
        assert_non_null(t);
        assert_string_equal(t->datatype, "INT32");
        if (t->values[0] != (double)json_integer_value(json_object_get(expected, counts[i])))
            fail_msg("%s: %s = %.0f, golden %lld", label, counts[i], t->values[0],
                     (long long)json_integer_value(json_object_get(expected, counts[i])));
    }
    const json_t *pe = json_object_get(expected, "per_image");
    const tu_tensor *pi = tu_find(r, "per_image_loss");
    assert_non_null(pi);
    assert_int_equal(pi->count, (int64_t)json_array_size(pe));
    for (size_t i = 0; i < json_array_size(pe); i++)
        close_rel(pi->values[i], json_number_value(json_object_get(json_array_get(pe, i), "loss")),
                  "per_image_loss", label);
    static const char *const grads[] = {"grad_loc", "grad_conf"};
    for (int g = 0; g < 2; g++) {
        const tu_tensor *t = tu_find(r, grads[g]);
        const json_t *e = json_object_get(json_object_get(expected, grads[g]), "data");
        const json_t *es = json_object_get(json_object_get(expected, grads[g]), "shape");
        assert_non_null(t);
        assert_int_equal(t->rank, 3);
        for (int k = 0; k < 3; k++)
            assert_int_equal(t->shape[k], json_integer_value(json_array_get(es, (size_t)k)));
        assert_int_equal(t->count, (int64_t)json_array_size(e));
        double mx = 0;
        for (size_t i = 0; i < json_array_size(e); i++)
            mx = fmax(mx, fabs(json_number_value(json_array_get(e, i))));
        double tol = 1e-6 + 1e-4 * mx;
        for (size_t i = 0; i < json_array_size(e); i++) {
            double want = json_number_value(json_array_get(e, i));
            if (!(fabs(t->values[i] - want) <= tol))
                fail_msg("%s: %s[%zu] = %.9g, golden %.9g (tolerance %.3g)", label, grads[g], i,
                         t->values[i], want, tol);
        }
    }
}

/* Sparse rows/values of rs scattered into zeros equal the dense output of rd exactly. */
static void check_sparse2(const tu_response *rs, const tu_response *rd, const char *dense,
                          const char *rows, const char *values, const char *label)
{
    const tu_tensor *d = tu_find(rd, dense), *rw = tu_find(rs, rows), *vl = tu_find(rs, values);
    if (!d || !rw || !vl)
        fail_msg("%s: %s, %s or %s missing", label, dense, rows, values);
    assert_string_equal(rw->datatype, "INT32");
    int64_t width = d->shape[2], nrows = d->shape[0] * d->shape[1];
    assert_int_equal(vl->rank, 2);
    assert_int_equal(vl->shape[0], rw->count);
    assert_int_equal(vl->shape[1], width);
    double *s = calloc((size_t)d->count + 1, sizeof *s);
    assert_non_null(s);
    for (int64_t k = 0; k < rw->count; k++) {
        int64_t row = (int64_t)rw->values[k];
        assert_true(row >= 0 && row < nrows);
        if (k)
            assert_true(rw->values[k] > rw->values[k - 1]);
        memcpy(s + row * width, vl->values + k * width, (size_t)width * sizeof *s);
    }
    for (int64_t i = 0; i < d->count; i++)
        if (s[i] != d->values[i])
            fail_msg("%s: %s scattered [%lld] = %.9g, dense %.9g", label, rows, (long long)i,
                     s[i], d->values[i]);
    /* Every dense non-zero row is listed. */
    int64_t nonzero = 0;
    for (int64_t row = 0; row < nrows; row++) {
        int any = 0;
        for (int64_t c = 0; c < width; c++)
            any |= d->values[row * width + c] != 0;
        nonzero += any;
    }
    assert_true(nonzero <= rw->count);
    free(s);
}

/* Sparse rows/values scattered into zeros equal the dense output exactly. */
static void check_sparse(const tu_response *r, const char *dense, const char *rows,
                         const char *values, const char *label)
{
    check_sparse2(r, r, dense, rows, values, label);
}

/* The /v1 answer (b64 float32 gradients) equals the /v2 one bit for bit. */
static void check_same_as_v1(const tu_response *r, const json_t *v1, const char *label)
{
    static const char *const reals[] = {"loss", "conf_loss", "loc_loss", "normalizer"};
    for (int i = 0; i < 4; i++) {
        float want = (float)json_number_value(json_object_get(v1, reals[i]));
        if ((float)tu_find(r, reals[i])->values[0] != want)
            fail_msg("%s: %s = %.9g, /v1 gives %.9g", label, reals[i],
                     tu_find(r, reals[i])->values[0], want);
    }
    static const char *const counts[] = {"num_positives", "num_negatives"};
    for (int i = 0; i < 2; i++)
        assert_true(tu_find(r, counts[i])->values[0] ==
                    (double)json_integer_value(json_object_get(v1, counts[i])));
    const json_t *pe = json_object_get(v1, "per_image");
    const tu_tensor *pi = tu_find(r, "per_image_loss");
    assert_int_equal(pi->count, (int64_t)json_array_size(pe));
    for (size_t i = 0; i < json_array_size(pe); i++)
        assert_true((float)pi->values[i] ==
                    (float)json_number_value(json_object_get(json_array_get(pe, i), "loss")));
    static const char *const grads[] = {"grad_loc", "grad_conf"};
    for (int g = 0; g < 2; g++) {
        double *v = NULL;
        int64_t shape[8];
        int rank;
        assert_int_equal(tensor_decode(json_object_get(v1, grads[g]), &v, shape, &rank), 0);
        const tu_tensor *t = tu_find(r, grads[g]);
        assert_int_equal(rank, 3);
        for (int64_t i = 0; i < t->count; i++)
            if ((float)t->values[i] != (float)v[i])
                fail_msg("%s: %s[%lld] = %.9g, /v1 gives %.9g", label, grads[g], (long long)i,
                         t->values[i], v[i]);
        free(v);
    }
}

/* POST /v1/loss with b64 answers (float32 exactly). */
static json_t *v1_answer(const json_t *request, const char *gradients)
{
    json_t *req = json_deep_copy(request);
    json_t *outputs = json_object_get(req, "outputs");
    if (!outputs) {
        outputs = json_object();
        json_object_set_new(req, "outputs", outputs);
    }
    json_object_set_new(outputs, "tensor_format", json_string("b64"));
    json_object_set_new(outputs, "matches", json_false());
    json_object_set_new(outputs, "per_image", json_true());
    if (!strcmp(gradients, "sparse"))
        json_object_set_new(outputs, "gradients", json_string("sparse"));
    else
        json_object_set_new(outputs, "gradients", json_true());
    char *text = json_dumps(req, JSON_COMPACT);
    http_resp h;
    http_post_json(url("/v1/loss"), text, strlen(text), &h);
    free(text);
    json_decref(req);
    if (h.status != 200)
        fail_msg("/v1/loss: %ld %.300s", h.status, h.body);
    json_t *a = json_loadb(h.body, h.len, 0, NULL);
    assert_non_null(a);
    http_resp_free(&h);
    return a;
}

/* /v1 sparse gradients scattered back equal the /v1 dense ones. */
static void check_v1_sparse(const json_t *dense, const json_t *sparse, const char *label)
{
    static const char *const grads[] = {"grad_loc", "grad_conf"};
    for (int g = 0; g < 2; g++) {
        double *d = NULL, *vals = NULL;
        int64_t ds[8], vs[8];
        int dr, vr;
        assert_int_equal(tensor_decode(json_object_get(dense, grads[g]), &d, ds, &dr), 0);
        const json_t *sp = json_object_get(sparse, grads[g]);
        const json_t *rows = json_object_get(sp, "rows");
        assert_true(json_is_array(rows));
        assert_int_equal(tensor_decode(json_object_get(sp, "values"), &vals, vs, &vr), 0);
        int64_t width = ds[2], count = ds[0] * ds[1] * ds[2];
        assert_int_equal(vr, 2);
        assert_int_equal(vs[0], (int64_t)json_array_size(rows));
        assert_int_equal(vs[1], width);
        double *s = calloc((size_t)count + 1, sizeof *s);
        for (size_t k = 0; k < json_array_size(rows); k++) {
            int64_t row = json_integer_value(json_array_get(rows, k));
            assert_true(row >= 0 && row < ds[0] * ds[1]);
            memcpy(s + row * width, vals + (int64_t)k * width, (size_t)width * sizeof *s);
        }
        for (int64_t i = 0; i < count; i++)
            if (s[i] != d[i])
                fail_msg("%s: /v1 sparse %s [%lld] = %.9g, dense %.9g", label, grads[g],
                         (long long)i, s[i], d[i]);
        free(s);
        free(d);
        free(vals);
    }
}

/*
 * A golden request in form f through the endpoint, decoded into *out (the
 * caller frees it); returns the answer's Inference-Header-Content-Length
 * (SIZE_MAX when it has none).
 */
static size_t infer(const json_t *request, const v2_form *f, const char *content_type,
                    const char *label, tu_response *out)
{
    v2_built b;
    v2_build(request, f, &b);
    v2_resp r;
    v2_post_built(url(V2_INFER), &b, content_type, &r);
    v2_decode(&r, out, label);
    const size_t header_len = r.header_len;
    v2_resp_free(&r);
    tu_free(&b.body);
    return header_len;
}

static void run_case(const char *name)
{
    char label[256];
    json_t *g = load_golden(name);
    const json_t *request = json_object_get(g, "request");
    const json_t *expected = json_object_get(g, "expected");
    json_t *v1 = v1_answer(request, "dense");
    json_t *v1s = v1_answer(request, "sparse");
    snprintf(label, sizeof label, "%s /v1 sparse", name);
    check_v1_sparse(v1, v1s, label);

    /* Binary in and out, every output, INT64 labels, application/octet-stream. */
    v2_form fb = {.binary_in = 1, .binary_out = 1, .labels_dtype = "INT64", .all_outputs = 1};
    tu_response db;
    snprintf(label, sizeof label, "%s (binary)", name);
    assert_true(infer(request, &fb, "application/octet-stream", label, &db) != SIZE_MAX);
    assert_int_equal(tu_find(&db, "grad_conf")->binary, 1);
    assert_int_equal(db.num, 13);
    assert_string_equal(json_string_value(json_object_get(db.header, "model_name")),
                        "multibox_loss");
    assert_string_equal(json_string_value(json_object_get(db.header, "id")), "golden");
    check_golden_v2(&db, expected, label);
    check_same_as_v1(&db, v1, label);
    check_sparse(&db, "grad_loc", "grad_loc_rows", "grad_loc_values", label);
    check_sparse(&db, "grad_conf", "grad_conf_rows", "grad_conf_values", label);
    /* /v2 sparse rows are /v1's sparse rows. */
    static const char *const rows[2][2] = {{"grad_loc", "grad_loc_rows"},
                                           {"grad_conf", "grad_conf_rows"}};
    for (int k = 0; k < 2; k++) {
        const json_t *vr = json_object_get(json_object_get(v1s, rows[k][0]), "rows");
        const tu_tensor *t = tu_find(&db, rows[k][1]);
        assert_int_equal(t->count, (int64_t)json_array_size(vr));
        for (int64_t i = 0; i < t->count; i++)
            assert_true(t->values[i] == (double)json_integer_value(json_array_get(vr, (size_t)i)));
    }

    /*
     * The same inputs ordered anchors, gt_*, loc, conf: with B > 1 the
     * server starts on the first images before the body ends (streaming);
     * every output is the same, bit for bit.
     */
    v2_form fs = fb;
    fs.targets_first = 1;
    tu_response ds;
    snprintf(label, sizeof label, "%s (binary, targets first)", name);
    infer(request, &fs, "application/octet-stream", label, &ds);
    assert_int_equal(ds.num, 13);
    for (size_t i = 0; i < V2_NUM_OUTPUTS; i++)
        v2_same_output(&ds, &db, v2_every_output[i], label);
    tu_response_free(&ds);

    /* JSON data in and out (the default outputs), application/json. */
    v2_form fj = {0};
    tu_response dj;
    snprintf(label, sizeof label, "%s (JSON data)", name);
    assert_true(infer(request, &fj, "application/json", label, &dj) == SIZE_MAX);
    assert_int_equal(dj.num, 9); /* every output but the sparse forms */
    assert_int_equal(tu_find(&dj, "grad_conf")->binary, 0);
    check_golden_v2(&dj, expected, label);
    check_same_as_v1(&dj, v1, label);

    /* Binary in, JSON out, no Content-Type at all (tritonclient). */
    v2_form fn = {.binary_in = 1};
    tu_response dn;
    snprintf(label, sizeof label, "%s (binary in, JSON out, no Content-Type)", name);
    infer(request, &fn, NULL, label, &dn);
    static const char *const outs[] = {"loss", "conf_loss", "loc_loss", "normalizer",
                                       "num_positives", "num_negatives", "per_image_loss",
                                       "grad_loc", "grad_conf"};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        v2_same_output(&dn, &db, outs[i], label);
        v2_same_output(&dj, &db, outs[i], label);
    }

    tu_response_free(&db);
    tu_response_free(&dj);
    tu_response_free(&dn);
    json_decref(v1);
    json_decref(v1s);
    json_decref(g);
}

static void test_golden_cases(void **state)
{
    (void)state;
    char **names = golden_case_names();
    assert_non_null(names);
    int n = 0;
    for (; names[n]; n++)
        run_case(names[n]);
    assert_true(n >= 20);
    free_names(names);
}

/* ------------------------------------------------- placement and framing */

/* A binary request answered the same for every header length mod 16, and chunked. */
static void test_alignment_and_chunked(void **state)
{
    (void)state;
    json_t *g = load_golden("ssd300_voc_b2");
    v2_form f = {.binary_in = 1, .binary_out = 1};
    v2_built b;
    v2_build(json_object_get(g, "request"), &f, &b);
    v2_resp r0;
    v2_post_built(url(V2_INFER), &b, "application/octet-stream", &r0);
    tu_response d0;
    v2_decode(&r0, &d0, "reference");
    const unsigned char *bin = b.body.data + b.header_len;
    size_t bin_len = b.body.len - b.header_len;
    for (int pad = 1; pad <= 16; pad++) {
        /* JSON allows whitespace after the header's closing brace. */
        tu_bytes body = {0};
        tu_put(&body, b.body.data, b.header_len);
        for (int k = 0; k < pad; k++)
            tu_put(&body, " ", 1);
        tu_put(&body, bin, bin_len);
        v2_req q = {.url = url(V2_INFER), .body = body.data, .len = body.len,
                    .content_type = "application/octet-stream",
                    .header_len = b.header_len + (size_t)pad, .chunked = pad == 16};
        v2_resp r;
        v2_do(&q, &r);
        char label[64];
        snprintf(label, sizeof label, "header length +%d%s", pad, pad == 16 ? " chunked" : "");
        tu_response d;
        v2_decode(&r, &d, label);
        for (int i = 0; i < d0.num; i++)
            v2_same_output(&d, &d0, d0.t[i].name, label);
        tu_response_free(&d);
        v2_resp_free(&r);
        tu_free(&body);
    }
    tu_response_free(&d0);
    v2_resp_free(&r0);
    tu_free(&b.body);
    json_decref(g);
}

/* The data-driven cases of tests/data/oip, each POSTed as it is framed. */
static void run_oip_case(const char *dir, const char *file)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je);
    if (!c)
        fail_msg("%s: %s", file, je.text);
    tu_bytes body = {0};
    const json_t *ht = json_object_get(c, "header_text");
    char *text = ht ? strdup(json_string_value(ht))
                    : json_dumps(json_object_get(c, "header"), JSON_COMPACT);
    size_t exact = strlen(text);
    tu_put(&body, text, exact);
    free(text);
    const json_t *bin = json_object_get(c, "binary");
    for (size_t i = 0; i < json_array_size(bin); i++) {
        const json_t *e = json_array_get(bin, i);
        const char *dt = json_string_value(json_object_get(e, "dtype"));
        const json_t *vals = json_object_get(e, "values");
        for (size_t k = 0; k < json_array_size(vals); k++) {
            const json_t *v = json_array_get(vals, k);
            double x = json_number_value(v);
            if (json_is_string(v))
                x = !strcmp(json_string_value(v), "nan")    ? NAN
                    : !strcmp(json_string_value(v), "-inf") ? -INFINITY
                                                            : INFINITY;
            tu_put_value(&body, dt, x);
        }
    }
    const char *hex = json_string_value(json_object_get(c, "append_hex"));
    for (size_t k = 0; hex && hex[k] && hex[k + 1]; k += 2) {
        unsigned v;
        sscanf(hex + k, "%2x", &v);
        unsigned char byte = (unsigned char)v;
        tu_put(&body, &byte, 1);
    }
    if (json_object_get(c, "truncate"))
        body.len -= (size_t)json_integer_value(json_object_get(c, "truncate"));
    const json_t *hl = json_object_get(c, "header_length");
    size_t header_len = exact;
    if (json_is_string(hl) && !strcmp(json_string_value(hl), "absent"))
        header_len = SIZE_MAX;
    else if (json_is_object(hl))
        header_len = (size_t)((int64_t)exact + json_integer_value(json_object_get(hl, "delta")));

    v2_req q = {.url = url(V2_INFER), .body = body.data, .len = body.len,
                .content_type = header_len == SIZE_MAX ? "application/json"
                                                       : "application/octet-stream",
                .header_len = header_len};
    v2_resp r;
    v2_do(&q, &r);
    const char *expect = json_string_value(json_object_get(c, "expect"));
    if (!strcmp(expect, "ok")) {
        if (r.status != 200)
            fail_msg("%s: expected 200, got %ld %.300s", file, r.status, r.body);
        tu_response d;
        v2_decode(&r, &d, file);
        tu_response_free(&d);
    } else {
        static const char *const c400[] = {"bad_framing", "malformed_json", "bad_base64"};
        long status = 422;
        for (int i = 0; i < 3; i++)
            if (!strcmp(expect, c400[i]))
                status = 400;
        const char *msg = json_string_value(json_object_get(c, "message"));
        if (r.status != status || strcmp(v2_error_code(&r), expect) != 0 ||
            (msg && !strstr(v2_error_message(&r), msg)))
            fail_msg("%s: expected %ld %s (\"%s\"), got %ld %.300s", file, status, expect,
                     msg ? msg : "", r.status, r.body);
        assert_string_equal(r.content_type, "application/json");
    }
    v2_resp_free(&r);
    tu_free(&body);
    json_decref(c);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_oip_cases(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/data/oip", getenv("MBX_SOURCE_ROOT"));
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".json"))
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    int errors400 = 0, errors422 = 0;
    for (int i = 0; i < n; i++) {
        run_oip_case(dir, names[i]);
        errors400 += !strncmp(names[i], "frame_", 6) || !strncmp(names[i], "json_", 5);
        errors422 += strncmp(names[i], "frame_", 6) && strncmp(names[i], "json_", 5) &&
                     strncmp(names[i], "ok_", 3);
        free(names[i]);
    }
    assert_true(errors400 >= 15);
    assert_true(errors422 >= 30);
}

/* Framing errors the service itself sees in the headers. */
static void test_header_errors(void **state)
{
    (void)state;
    json_t *g = load_golden("tiny");
    v2_form f = {.binary_in = 1};
    v2_built b;
    v2_build(json_object_get(g, "request"), &f, &b);
    v2_resp r;
    v2_req q = {.url = url(V2_INFER), .body = b.body.data, .len = b.body.len,
                .content_type = "application/octet-stream", .header_len = SIZE_MAX};
    struct {
        const char *ct;
        size_t hl;
        long status;
        const char *code;
    } cases[] = {
        {"application/octet-stream", b.body.len + 1, 400, "bad_framing"}, /* beyond the body */
        {"application/octet-stream", SIZE_MAX, 400, "malformed_json"},   /* bytes, no length */
        {"text/plain", b.header_len, 415, "unsupported_media_type"},
        {"application/x-www-form-urlencoded", b.header_len, 415, "unsupported_media_type"},
        {"application/octet-stream", b.header_len, 200, ""},
        {"Application/Octet-Stream; charset=binary", b.header_len, 200, ""},
        {"application/json; charset=utf-8", b.header_len, 200, ""},
        {NULL, b.header_len, 200, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        q.content_type = cases[i].ct;
        q.header_len = cases[i].hl;
        v2_do(&q, &r);
        if (cases[i].status == 200) {
            tu_response d;
            v2_decode(&r, &d, cases[i].ct ? cases[i].ct : "no Content-Type");
            tu_response_free(&d);
        } else {
            expect_v2_error(&r, cases[i].status, cases[i].code);
        }
        v2_resp_free(&r);
    }
    /* An Inference-Header-Content-Length that is not a byte count. */
    static const char *const bad[] = {"abc", "-5", "12x", "99999999999999999999999"};
    for (int i = 0; i < 4; i++) {
        char hdr[96];
        snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %s", bad[i]);
        CURL *c = curl_easy_init();
        struct curl_slist *h = curl_slist_append(NULL, hdr);
        h = curl_slist_append(h, "Content-Type: application/octet-stream");
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(c, CURLOPT_URL, url(V2_INFER));
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)b.body.data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b.body.len);
        FILE *sinkf = fopen("/dev/null", "w");
        curl_easy_setopt(c, CURLOPT_WRITEDATA, sinkf);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        assert_int_equal(status, 400);
        fclose(sinkf);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
    }
    /* A header length of 0: the whole body is JSON. */
    v2_form fj = {0};
    v2_built bj;
    v2_build(json_object_get(g, "request"), &fj, &bj);
    v2_req qj = {.url = url(V2_INFER), .body = bj.body.data, .len = bj.body.len,
                 .content_type = NULL, .header_len = 0};
    v2_do(&qj, &r);
    tu_response dj;
    v2_decode(&r, &dj, "header length 0, JSON body");
    tu_response_free(&dj);
    v2_resp_free(&r);
    tu_free(&bj.body);
    /* The server is still fine. */
    q.content_type = NULL;
    q.header_len = b.header_len;
    v2_do(&q, &r);
    assert_int_equal(r.status, 200);
    v2_resp_free(&r);
    tu_free(&b.body);
    json_decref(g);
}

/* ------------------------------------------------------- half precision */

/* v rounded to FP16 (BF16 when bf16) to nearest, ties to even: from the formats' definitions. */
static double round_ref(double v, int bf16)
{
    if (v == 0 || !isfinite(v))
        return v;
    int mant = bf16 ? 7 : 10, emin = bf16 ? -126 : -14;
    int e;
    frexp(v, &e); /* v = f * 2^e, 0.5 <= |f| < 1: the leading bit is 2^(e-1) */
    int lead = e - 1 < emin ? emin : e - 1;
    double ulp = ldexp(1.0, lead - mant);
    double r = nearbyint(v / ulp) * ulp; /* the default rounding mode: ties to even */
    double max = bf16 ? ldexp(2.0 - ldexp(1.0, -7), 127) : 65504.0;
    if (fabs(r) > max)
        return copysign(INFINITY, v);
    return r;
}

static void post_decode(const json_t *request, const v2_form *f, tu_response *out,
                        const char *label)
{
    v2_built b;
    v2_build(request, f, &b);
    v2_resp r;
    v2_post_built(url(V2_INFER), &b, f->binary_in ? "application/octet-stream" : "application/json",
                  &r);
    v2_decode(&r, out, label);
    v2_resp_free(&r);
    tu_free(&b.body);
}

static void test_half_precision(void **state)
{
    (void)state;
    static const char *const cases[] = {"ssd300_voc_b2", "focal", "tiny"};
    static const char *const all[] = {"loss", "conf_loss", "loc_loss", "normalizer",
                                      "num_positives", "num_negatives", "per_image_loss",
                                      "grad_loc", "grad_conf", "grad_loc_rows",
                                      "grad_loc_values", "grad_conf_rows", "grad_conf_values"};
    for (int c = 0; c < 3; c++) {
        json_t *g = load_golden(cases[c]);
        const json_t *request = json_object_get(g, "request");
        char label[128];
        tu_response fp32;
        v2_form f32 = {.binary_in = 1, .binary_out = 1, .all_outputs = 1};
        post_decode(request, &f32, &fp32, cases[c]);
        /* FP64 inputs holding the float32 values give the FP32 answer. */
        tu_response fp64;
        v2_form f64 = {.binary_in = 1, .binary_out = 1, .all_outputs = 1, .loc_dtype = "FP64"};
        snprintf(label, sizeof label, "%s FP64", cases[c]);
        post_decode(request, &f64, &fp64, label);
        for (int i = 0; i < 13; i++)
            v2_same_output(&fp64, &fp32, all[i], label);
        tu_response_free(&fp64);

        static const char *const halves[] = {"FP16", "BF16"};
        for (int h = 0; h < 2; h++) {
            /* Binary half inputs, JSON-data half inputs (rounded by the server), and FP32
             * inputs holding the rounded values: the same answer, bit for bit. */
            tu_response hb, hj, twin;
            v2_form fh = {.binary_in = 1, .binary_out = 1, .all_outputs = 1,
                          .loc_dtype = halves[h]};
            v2_form fhj = {.binary_out = 1, .all_outputs = 1, .loc_dtype = halves[h]};
            v2_form ft = {.binary_in = 1, .binary_out = 1, .all_outputs = 1,
                          .round_to = halves[h]};
            snprintf(label, sizeof label, "%s %s binary", cases[c], halves[h]);
            post_decode(request, &fh, &hb, label);
            snprintf(label, sizeof label, "%s %s JSON data", cases[c], halves[h]);
            post_decode(request, &fhj, &hj, label);
            snprintf(label, sizeof label, "%s FP32 holding %s values", cases[c], halves[h]);
            post_decode(request, &ft, &twin, label);
            for (int i = 0; i < 13; i++) {
                v2_same_output(&hb, &twin, all[i], label);
                v2_same_output(&hj, &twin, all[i], label);
            }
            tu_response_free(&hb);
            tu_response_free(&hj);
            tu_response_free(&twin);

            /* Half gradients: the FP32 gradients rounded to nearest even. */
            tu_response gh;
            v2_form fg = {.binary_in = 1, .binary_out = 1, .all_outputs = 1,
                          .gradient_datatype = halves[h]};
            snprintf(label, sizeof label, "%s gradient_datatype %s", cases[c], halves[h]);
            post_decode(request, &fg, &gh, label);
            static const char *const grads[] = {"grad_loc", "grad_conf", "grad_loc_values",
                                                "grad_conf_values"};
            for (int k = 0; k < 4; k++) {
                const tu_tensor *t = tu_find(&gh, grads[k]), *ref = tu_find(&fp32, grads[k]);
                assert_string_equal(t->datatype, halves[h]);
                assert_int_equal(t->count, ref->count);
                for (int64_t i = 0; i < t->count; i++)
                    if (t->values[i] != round_ref(ref->values[i], h))
                        fail_msg("%s: %s[%lld] = %.9g, FP32 %.9g rounds to %.9g", label,
                                 grads[k], (long long)i, t->values[i], ref->values[i],
                                 round_ref(ref->values[i], h));
            }
            static const char *const same[] = {"loss", "num_positives", "grad_loc_rows",
                                               "grad_conf_rows", "per_image_loss"};
            for (int k = 0; k < 5; k++)
                v2_same_output(&gh, &fp32, same[k], label);
            tu_response_free(&gh);
        }
        tu_response_free(&fp32);
        json_decref(g);
    }
}

/*
 * Sparse outputs alone (the server then writes no dense gradient and, for
 * FP16 / BF16 inputs, widens one image at a time and, in the gradient
 * phase, only the rows it reads) and dense outputs alone, for FP32, FP16
 * and BF16 inputs: scattered into zeros, the sparse gradients equal the
 * dense ones of FP32 inputs holding the same values, bit for bit, and so do
 * the losses and counts.
 */
static void test_sparse_only(void **state)
{
    (void)state;
    /* Batches of 3 on 2 workers: a unit's buffer holds another image when a phase starts. */
    static const char *const cases[] = {"ssd300_voc_b2", "focal", "tiny",
                                        "batch_with_empty_image", "per_image_norm_min_negatives"};
    static const char *const sparse_outs[] = {"loss", "num_positives", "per_image_loss",
                                              "grad_loc_rows", "grad_loc_values",
                                              "grad_conf_rows", "grad_conf_values", NULL};
    static const char *const conf_only[] = {"loss", "grad_conf_rows", "grad_conf_values", NULL};
    static const char *const dtypes[] = {NULL, "FP16", "BF16"};
    for (int c = 0; c < 5; c++) {
        json_t *g = load_golden(cases[c]);
        const json_t *request = json_object_get(g, "request");
        for (int h = 0; h < 3; h++) {
            char label[128];
            tu_response twin, sp, co, dense;
            v2_form ft = {.binary_in = 1, .binary_out = 1, .all_outputs = 1,
                          .round_to = dtypes[h]};
            v2_form fs = {.binary_in = 1, .binary_out = 1, .loc_dtype = dtypes[h],
                          .outputs = sparse_outs};
            v2_form fc = {.binary_in = 1, .binary_out = 1, .loc_dtype = dtypes[h],
                          .outputs = conf_only};
            v2_form fd = {.binary_in = 1, .binary_out = 1, .loc_dtype = dtypes[h]};
            const char *dt = dtypes[h] ? dtypes[h] : "FP32";
            snprintf(label, sizeof label, "%s FP32 holding %s values", cases[c], dt);
            post_decode(request, &ft, &twin, label);
            snprintf(label, sizeof label, "%s %s sparse only", cases[c], dt);
            post_decode(request, &fs, &sp, label);
            assert_null(tu_find(&sp, "grad_conf"));
            check_sparse2(&sp, &twin, "grad_loc", "grad_loc_rows", "grad_loc_values", label);
            check_sparse2(&sp, &twin, "grad_conf", "grad_conf_rows", "grad_conf_values", label);
            for (int k = 0; sparse_outs[k]; k++)
                v2_same_output(&sp, &twin, sparse_outs[k], label);
            snprintf(label, sizeof label, "%s %s conf sparse only", cases[c], dt);
            post_decode(request, &fc, &co, label);
            check_sparse2(&co, &twin, "grad_conf", "grad_conf_rows", "grad_conf_values", label);
            v2_same_output(&co, &twin, "loss", label);
            snprintf(label, sizeof label, "%s %s dense only", cases[c], dt);
            post_decode(request, &fd, &dense, label);
            static const char *const dense_outs[] = {"loss", "conf_loss", "loc_loss",
                                                     "per_image_loss", "grad_loc", "grad_conf"};
            for (int k = 0; k < 6; k++)
                v2_same_output(&dense, &twin, dense_outs[k], label);
            tu_response_free(&twin);
            tu_response_free(&sp);
            tu_response_free(&co);
            tu_response_free(&dense);
        }
        json_decref(g);
    }
}

/* Writes a NaN of datatype dt at element idx of the binary tensor at body + off. */
static void put_nan(unsigned char *body, size_t off, const char *dt, int64_t idx)
{
    if (!strcmp(dt, "FP32")) {
        static const unsigned char nan32[4] = {0x00, 0x00, 0xc0, 0x7f};
        memcpy(body + off + 4 * (size_t)idx, nan32, 4);
    } else if (!strcmp(dt, "FP64")) {
        static const unsigned char nan64[8] = {0, 0, 0, 0, 0, 0, 0xf8, 0x7f};
        memcpy(body + off + 8 * (size_t)idx, nan64, 8);
    } else { /* FP16 0x7e00, BF16 0x7fc0 */
        body[off + 2 * (size_t)idx] = !strcmp(dt, "FP16") ? 0x00 : 0xc0;
        body[off + 2 * (size_t)idx + 1] = !strcmp(dt, "FP16") ? 0x7e : 0x7f;
    }
}

static size_t dsize(const char *dt)
{
    return !strcmp(dt, "FP32") ? 4 : !strcmp(dt, "FP64") ? 8 : 2;
}

/*
 * A NaN in loc or conf sent as FP16, BF16 or FP64 (widened image by image
 * in the server) gets the error the codec's whole-tensor parse gives for
 * the same body, its reference here: loc is judged before conf whatever
 * the images, a converted tensor before an FP32 one used in place.
 */
static void test_deferred_not_finite(void **state)
{
    (void)state;
    json_t *g = load_golden("ssd300_voc_b2");
    const json_t *request = json_object_get(g, "request");
    const json_t *loc = json_object_get(request, "loc"), *conf = json_object_get(request, "conf");
    size_t nloc, nconf;
    int64_t shape[4];
    int rank;
    free(tu_tensor_values(loc, &nloc, shape, &rank));
    const int64_t A = shape[1];
    free(tu_tensor_values(conf, &nconf, shape, &rank));
    const int64_t C = shape[2];
    static const struct {
        const char *loc_dt, *conf_dt;
        int64_t loc_nan, conf_nan; /* flat element, or -1 */
        const char *want;          /* "loc" or "conf": which the reference names */
    } cases[] = {
        {"FP16", "FP16", -1, 0, "conf"},
        {"FP16", "FP16", -1, 0, "conf"},
        {"FP16", "FP16", 0, -1, "loc"},
        {"BF16", "BF16", 0, -1, "loc"},
        {"FP64", "FP64", 0, -1, "loc"},
    };
    for (size_t k = 0; k < 9; k++) {
        /* Cases beyond the table: image 1's loc and image 0's conf, in three datatypes,
         * and an FP32 loc used in place with a NaN plus a bad FP16 conf. */
        const char *ldt, *cdt, *want;
        int64_t ln, cn;
        if (k < 5) {
            ldt = cases[k].loc_dt, cdt = cases[k].conf_dt, want = cases[k].want;
            ln = cases[k].loc_nan;
            cn = cases[k].conf_nan;
            if (k == 1)
                cn = A * C + 5 * C + 3; /* image 1 */
            if (k >= 2)
                ln = A * 4 + 17 * 4 + 2; /* image 1 */
        } else if (k < 8) {
            static const char *const dts[] = {"FP16", "BF16", "FP64"};
            ldt = cdt = dts[k - 5];
            ln = A * 4 + 9 * 4 + 1; /* image 1 */
            cn = 2 * C + 1;          /* image 0 */
            want = "loc";
        } else {
            ldt = "FP32";
            cdt = "FP16";
            ln = 3;
            cn = A * C + 1;
            want = "conf";
        }
        v2_form f = {.binary_in = 1, .binary_out = 1, .loc_dtype = ldt, .conf_dtype = cdt};
        v2_built b;
        v2_build(request, &f, &b);
        const size_t loc_off = b.header_len, conf_off = loc_off + nloc * dsize(ldt);
        if (ln >= 0)
            put_nan(b.body.data, loc_off, ldt, ln);
        if (cn >= 0)
            put_nan(b.body.data, conf_off, cdt, cn);
        /* The reference: the codec's plain parse, the body placed as the server places it. */
        unsigned char *aligned = malloc(b.body.len + 32);
        const size_t shift = (16 - ((uintptr_t)aligned + b.header_len) % 16) % 16;
        memcpy(aligned + shift, b.body.data, b.body.len);
        mbx_oip_request *parsed = NULL;
        mbx_detail ref = {0, ""};
        const int rc = mbx_oip_request_parse(aligned + shift, b.body.len, b.header_len, &parsed,
                                             &ref);
        mbx_oip_request_free(parsed);
        free(aligned);
        char label[96];
        snprintf(label, sizeof label, "case %zu (loc %s, conf %s)", k, ldt, cdt);
        /* (case 8: the in-place loc is left to the core's check, so the reference names conf) */
        assert_int_equal(rc, MBX_E_NOT_FINITE);
        if (!strstr(ref.message, want))
            fail_msg("%s: reference \"%s\" does not name %s", label, ref.message, want);
        v2_resp r;
        v2_post_built(url(V2_INFER), &b, "application/octet-stream", &r);
        if (r.status != 422 || strcmp(v2_error_code(&r), "not_finite") != 0 ||
            strcmp(v2_error_message(&r), ref.message) != 0)
            fail_msg("%s: %ld %s \"%s\", reference \"%s\"", label, r.status, v2_error_code(&r),
                     v2_error_message(&r), ref.message);
        v2_resp_free(&r);
        tu_free(&b.body);
    }
    json_decref(g);
}

/* ------------------------------------------------------- standard clients */

/* The request tritonclient.http's InferenceServerClient.infer builds: no
 * Content-Type, the header length, inputs with binary_data_size, outputs
 * asked with parameters.binary_data, custom parameters, a request id. */
static void test_tritonclient_shape(void **state)
{
    (void)state;
    json_t *g = load_golden("tiny");
    const json_t *request = json_object_get(g, "request");
    v2_form f = {.binary_in = 1};
    v2_built b;
    v2_build(request, &f, &b);
    json_t *header = json_loadb((const char *)b.body.data, b.header_len, 0, NULL);
    assert_non_null(header);
    json_object_set_new(header, "id", json_string("42"));
    json_t *outs = json_array();
    static const char *const names[] = {"loss", "grad_conf_rows", "grad_conf_values",
                                        "num_positives"};
    for (int i = 0; i < 4; i++)
        json_array_append_new(outs, json_pack("{s:s,s:{s:b}}", "name", names[i], "parameters",
                                              "binary_data", i != 3));
    json_object_set_new(header, "outputs", outs);
    char *text = json_dumps(header, 0); /* json.dumps spacing is irrelevant */
    tu_bytes body = {0};
    tu_put(&body, text, strlen(text));
    tu_put(&body, b.body.data + b.header_len, b.body.len - b.header_len);
    v2_req q = {.url = url(V2_INFER), .body = body.data, .len = body.len,
                .content_type = NULL, .header_len = strlen(text)};
    v2_resp r;
    v2_do(&q, &r);
    tu_response d;
    v2_decode(&r, &d, "tritonclient-shaped");
    assert_int_equal(d.num, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(d.t[i].name, names[i]);
        assert_int_equal(d.t[i].binary, i != 3);
    }
    assert_string_equal(json_string_value(json_object_get(d.header, "id")), "42");
    const json_t *expected = json_object_get(g, "expected");
    close_rel(tu_find(&d, "loss")->values[0], json_number_value(json_object_get(expected, "loss")),
              "loss", "tritonclient-shaped");
    tu_response_free(&d);
    v2_resp_free(&r);
    free(text);
    tu_free(&body);

    /* Without outputs, tritonclient asks binary_data_output for all. */
    json_object_del(header, "outputs");
    json_object_set_new(json_object_get(header, "parameters"), "binary_data_output", json_true());
    text = json_dumps(header, 0);
    memset(&body, 0, sizeof body);
    tu_put(&body, text, strlen(text));
    tu_put(&body, b.body.data + b.header_len, b.body.len - b.header_len);
    q.body = body.data;
    q.len = body.len;
    q.header_len = strlen(text);
    v2_do(&q, &r);
    v2_decode(&r, &d, "tritonclient-shaped, all outputs");
    assert_int_equal(d.num, 9);
    for (int i = 0; i < d.num; i++)
        assert_int_equal(d.t[i].binary, 1);
    tu_response_free(&d);
    v2_resp_free(&r);
    free(text);
    tu_free(&body);
    json_decref(header);
    tu_free(&b.body);
    json_decref(g);
}

static void test_metrics(void **state)
{
    (void)state;
    http_resp h;
    http_get(url("/metrics"), &h);
    assert_int_equal(h.status, 200);
#define INFER_SERIES "multibox_http_requests_total{handler=\"/v2/models/{model_name}/infer\""
    double ok = metric_value(h.body, INFER_SERIES ",code=\"200\"}");
    double bad = metric_value(h.body, INFER_SERIES ",code=\"400\"}");
    double meta = metric_value(
        h.body, "multibox_http_requests_total{handler=\"/v2/models/{model_name}\",code=\"200\"}");
    assert_true(ok >= 20);
    assert_true(bad >= 10);
    assert_true(meta >= 1);
    http_resp_free(&h);
}

int main(int argc, char **argv)
{
    harness_init(argc, argv);
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_golden_cases),
        cmocka_unit_test(test_alignment_and_chunked),
        cmocka_unit_test(test_oip_cases),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_half_precision),
        cmocka_unit_test(test_sparse_only),
        cmocka_unit_test(test_deferred_not_finite),
        cmocka_unit_test(test_tritonclient_shape),
        cmocka_unit_test(test_metrics),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc || teardown_failed;
}
