/*
 * test_oip_golden.c - every golden case through the Open Inference Protocol
 * codec and the core: each /v1 golden request is rewritten here as an OIP
 * request, once with binary tensors and once with JSON "data", parsed,
 * computed with mbx_loss_compute, rendered (binary outputs, then JSON) and
 * decoded by test_oip_util.c's decoder (written from the binary extension's
 * description), then compared with the golden "expected" within the README's
 * tolerances.  Also: sparse outputs scattered back equal the dense ones;
 * FP16 / BF16 / FP64 loc and conf give bit for bit what FP32 inputs holding
 * the same (rounded) values give.
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

#include "half.h"
#include "helpers.h"
#include "oip.h"
#include "test_oip_util.h"

static const char *golden_dir;

/* How loc and conf travel in a built request. */
typedef enum { AS_FP32, AS_FP16, AS_BF16, AS_FP64, AS_FP32_OF_FP16, AS_FP32_OF_BF16 } loc_form;

typedef struct built {
    tu_bytes body;
    size_t header_len;
    int has_difficult; /* gt_difficult is among the inputs */
} built;

static const char *const all_outputs[] = {
    "loss", "conf_loss", "loc_loss", "normalizer", "num_positives", "num_negatives",
    "per_image_loss", "grad_loc", "grad_conf", "grad_loc_rows", "grad_loc_values",
    "grad_conf_rows", "grad_conf_values"};


/* loc / conf values as the form says: rounded to FP16 / BF16 and widened for the FP32 twins. */
static void apply_form(double *v, size_t n, loc_form form, const char **dtype)
{
    *dtype = form == AS_FP16 ? "FP16" : form == AS_BF16 ? "BF16" : form == AS_FP64 ? "FP64" : "FP32";
    for (size_t i = 0; i < n; i++) {
        if (form == AS_FP32_OF_FP16)
            v[i] = tu_f16(mbx_f32_to_f16((float)v[i]));
        else if (form == AS_FP32_OF_BF16)
            v[i] = tu_bf16(mbx_f32_to_bf16((float)v[i]));
        else if (form == AS_FP64)
            v[i] = (float)v[i]; /* the float32 value, exactly, as FP64 */
    }
}

/* The golden request as an OIP request. */
static void build_request(const json_t *request, int binary, loc_form form, const char *labels_dt,
                          built *out)
{
    json_t *header = json_object(), *inputs = json_array(), *params = json_object();
    tu_bytes bin = {0};
    int64_t shape[4];
    int rank;
    size_t n;
    const char *dt;
    const char *order[3] = {"loc", "conf", "anchors"};
    for (int t = 0; t < 3; t++) {
        double *v = tu_tensor_values(json_object_get(request, order[t]), &n, shape, &rank);
        dt = "FP32";
        if (t < 2)
            apply_form(v, n, form, &dt);
        tu_add_input(inputs, &bin, order[t], dt, rank, shape, v, n, binary);
        free(v);
    }
    /* Targets: all boxes, labels and flags concatenated, counts per image. */
    const json_t *targets = json_object_get(request, "targets");
    size_t B = json_array_size(targets), N = 0, any_difficult = 0;
    for (size_t i = 0; i < B; i++) {
        N += json_array_size(json_object_get(json_array_get(targets, i), "labels"));
        any_difficult |= json_object_get(json_array_get(targets, i), "difficult") != NULL;
    }
    double *boxes = malloc((4 * N + 1) * sizeof *boxes), *labels = malloc((N + 1) * sizeof *labels);
    double *diff = calloc(N + 1, sizeof *diff), *counts = malloc((B + 1) * sizeof *counts);
    size_t k = 0;
    for (size_t i = 0; i < B; i++) {
        const json_t *t = json_array_get(targets, i);
        const json_t *jb = json_object_get(t, "boxes"), *jl = json_object_get(t, "labels");
        const json_t *jd = json_object_get(t, "difficult");
        counts[i] = (double)json_array_size(jl);
        for (size_t g = 0; g < json_array_size(jl); g++, k++) {
            for (int c = 0; c < 4; c++)
                boxes[4 * k + (size_t)c] =
                    json_number_value(json_array_get(json_array_get(jb, g), (size_t)c));
            labels[k] = (double)json_integer_value(json_array_get(jl, g));
            diff[k] = jd ? json_is_true(json_array_get(jd, g)) : 0;
        }
    }
    int64_t s2[2] = {(int64_t)N, 4}, s1[1] = {(int64_t)N}, sb[1] = {(int64_t)B};
    tu_add_input(inputs, &bin, "gt_boxes", "FP32", 2, s2, boxes, 4 * N, binary);
    tu_add_input(inputs, &bin, "gt_labels", labels_dt, 1, s1, labels, N, binary);
    tu_add_input(inputs, &bin, "gt_counts", "INT32", 1, sb, counts, B, binary);
    if (any_difficult)
        tu_add_input(inputs, &bin, "gt_difficult", "BOOL", 1, s1, diff, N, binary);
    free(boxes);
    free(labels);
    free(diff);
    free(counts);

    /* Config keys as parameters; variances as scalars. */
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(request, "config"), key, v) {
        if (strcmp(key, "variances") == 0) {
            static const char *const two[2] = {"variance_center", "variance_size"};
            static const char *const four[4] = {"variance_cx", "variance_cy", "variance_w",
                                                "variance_h"};
            size_t nv = json_array_size(v);
            for (size_t i = 0; i < nv; i++)
                json_object_set(params, nv == 2 ? two[i] : four[i], json_array_get(v, i));
        } else {
            json_object_set(params, key, v);
        }
    }
    json_object_set_new(params, "binary_data_output", json_boolean(binary));
    json_t *outs = json_array();
    for (size_t i = 0; i < sizeof all_outputs / sizeof all_outputs[0]; i++)
        json_array_append_new(outs, json_pack("{s:s}", "name", all_outputs[i]));
    json_object_set_new(header, "inputs", inputs);
    json_object_set_new(header, "parameters", params);
    json_object_set_new(header, "outputs", outs);
    char *text = json_dumps(header, JSON_COMPACT);
    memset(out, 0, sizeof *out);
    out->has_difficult = any_difficult != 0;
    out->header_len = strlen(text);
    tu_put(&out->body, text, out->header_len);
    tu_put(&out->body, bin.data, bin.len);
    free(text);
    tu_free(&bin);
    json_decref(header);
}

typedef struct computed {
    mbx_oip_request *req;
    mbx_result res;
    tu_placed placed;
} computed;

static void compute(const built *b, computed *c, const char *label)
{
    mbx_detail d = {0, ""};
    mbx_loss *loss = NULL;
    memset(c, 0, sizeof *c);
    const uint8_t *body = tu_place_aligned(&c->placed, b->body.data, b->body.len, b->header_len, 0);
    int rc = mbx_oip_request_parse(body, b->body.len, b->header_len, &c->req, &d);
    if (rc)
        fail_msg("%s: parse: %s", label, d.message);
    mbx_shape shape = mbx_oip_request_shape(c->req, 1);
    rc = mbx_loss_new(&loss, &c->req->core.config, &shape, &d);
    if (rc == 0)
        rc = mbx_oip_result_alloc(c->req, &c->res, &d);
    if (rc == 0)
        rc = mbx_loss_compute(loss, &c->req->core.batch, &c->res, &d);
    mbx_loss_free(loss);
    if (rc)
        fail_msg("%s: compute: %s: %s", label, mbx_error_name(rc), d.message);
}

static void computed_free(computed *c)
{
    mbx_oip_result_release(&c->res);
    mbx_oip_request_free(c->req);
    tu_placed_free(&c->placed);
}

static void close_rel(double got, double want, const char *what, const char *label)
{
    if (!(fabs(got - want) <= 1e-5 * fmax(fabs(got), fabs(want)) + 1e-7))
        fail_msg("%s: %s = %.9g, golden %.9g", label, what, got, want);
}

static void compare_grad(const tu_response *r, const json_t *expected, const char *name,
                         const char *label)
{
    const tu_tensor *t = tu_find(r, name);
    const json_t *e = json_object_get(json_object_get(expected, name), "data");
    assert_non_null(t);
    if ((size_t)t->count != json_array_size(e))
        fail_msg("%s: %s has %lld values, golden %zu", label, name, (long long)t->count,
                 json_array_size(e));
    double mx = 0;
    for (size_t i = 0; i < json_array_size(e); i++)
        mx = fmax(mx, fabs(json_number_value(json_array_get(e, i))));
    double tol = 1e-6 + 1e-4 * mx;
    for (size_t i = 0; i < json_array_size(e); i++) {
        double want = json_number_value(json_array_get(e, i));
        if (!(fabs(t->values[i] - want) <= tol))
            fail_msg("%s: %s[%zu] = %.9g, golden %.9g (tolerance %.3g)", label, name, i,
                     t->values[i], want, tol);
    }
}

/* Sparse rows/values scattered into zeros equal the dense output exactly. */
static void check_sparse(const tu_response *r, const char *dense, const char *rows,
                         const char *values)
{
    const tu_tensor *d = tu_find(r, dense), *rw = tu_find(r, rows), *vl = tu_find(r, values);
    assert_non_null(d);
    assert_non_null(rw);
    assert_non_null(vl);
    int64_t width = d->shape[2];
    assert_int_equal(vl->shape[0], rw->count);
    assert_int_equal(vl->shape[1], width);
    double *s = calloc((size_t)d->count + 1, sizeof *s);
    for (int64_t k = 0; k < rw->count; k++) {
        int64_t row = (int64_t)rw->values[k];
        assert_true(row >= 0 && row < d->shape[0] * d->shape[1]);
        if (k)
            assert_true(rw->values[k] > rw->values[k - 1]); /* ascending */
        memcpy(s + row * width, vl->values + k * width, (size_t)width * sizeof *s);
    }
    assert_memory_equal(s, d->values, (size_t)d->count * sizeof *s);
    free(s);
    /* Sparse means sparse: rows hold the only non-zero values. */
    assert_true(rw->count <= d->shape[0] * d->shape[1]);
}

static void check_response(const computed *c, int force_json, const json_t *expected,
                           const char *label)
{
    mbx_oip_response resp;
    mbx_detail d = {0, ""};
    int rc = mbx_oip_response_render(c->req, &c->res, force_json, &resp, &d);
    if (rc)
        fail_msg("%s: render: %s", label, d.message);
    tu_bytes wire = {0};
    for (size_t i = 0; i < resp.num_segments; i++)
        tu_put(&wire, resp.segments[i].base, resp.segments[i].len);
    tu_response r;
    char err[256];
    if (tu_decode(wire.data, wire.len, resp.binary ? resp.header_len : SIZE_MAX, &r, err))
        fail_msg("%s: decode: %s", label, err);
    static const char *const losses[] = {"loss", "conf_loss", "loc_loss", "normalizer"};
    for (int i = 0; i < 4; i++)
        close_rel(tu_find(&r, losses[i])->values[0],
                  json_number_value(json_object_get(expected, losses[i])), losses[i], label);
    static const char *const counts[] = {"num_positives", "num_negatives"};
    for (int i = 0; i < 2; i++) {
        double got = tu_find(&r, counts[i])->values[0];
        json_int_t want = json_integer_value(json_object_get(expected, counts[i]));
        if (got != (double)want)
            fail_msg("%s: %s = %.0f, golden %lld", label, counts[i], got, (long long)want);
    }
    const json_t *pe = json_object_get(expected, "per_image");
    const tu_tensor *pi = tu_find(&r, "per_image_loss");
    assert_int_equal(pi->count, (int64_t)json_array_size(pe));
    for (size_t i = 0; i < json_array_size(pe); i++)
        close_rel(pi->values[i], json_number_value(json_object_get(json_array_get(pe, i), "loss")),
                  "per_image_loss", label);
    compare_grad(&r, expected, "grad_loc", label);
    compare_grad(&r, expected, "grad_conf", label);
    check_sparse(&r, "grad_loc", "grad_loc_rows", "grad_loc_values");
    check_sparse(&r, "grad_conf", "grad_conf_rows", "grad_conf_values");
    tu_response_free(&r);
    tu_free(&wire);
    mbx_oip_response_free(&resp);
}

/* Two computations on the same values must agree bit for bit. */
static void same_result(const computed *a, const computed *b, const char *label)
{
    const mbx_batch *bt = &a->req->core.batch;
    size_t BA = (size_t)(bt->batch * bt->num_anchors);
    if (a->res.loss != b->res.loss || a->res.conf_loss != b->res.conf_loss ||
        a->res.loc_loss != b->res.loc_loss || a->res.num_positives != b->res.num_positives ||
        a->res.num_negatives != b->res.num_negatives)
        fail_msg("%s: totals differ (%.17g vs %.17g)", label, a->res.loss, b->res.loss);
    assert_memory_equal(a->res.grad_loc, b->res.grad_loc, BA * 4 * sizeof(float));
    assert_memory_equal(a->res.grad_conf, b->res.grad_conf,
                        BA * (size_t)bt->num_classes * sizeof(float));
    assert_memory_equal(a->res.roles, b->res.roles, BA);
}

static void run_case(const char *file)
{
    char path[2048], label[256];
    snprintf(path, sizeof path, "%s/cases/%s", golden_dir, file);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    if (!g)
        fail_msg("%s: %s", file, je.text);
    const json_t *request = json_object_get(g, "request");
    const json_t *expected = json_object_get(g, "expected");

    built bb, bj;
    computed cb, cj;
    build_request(request, 1, AS_FP32, "INT64", &bb);
    build_request(request, 0, AS_FP32, "INT32", &bj);
    snprintf(label, sizeof label, "%s (binary)", file);
    compute(&bb, &cb, label);
    /* In place: loc, conf, anchors, gt_boxes, gt_labels (INT64) and gt_difficult. */
    assert_int_equal(cb.req->in_place, 5 + bb.has_difficult);
    check_response(&cb, 0, expected, label);
    snprintf(label, sizeof label, "%s (binary request, JSON response)", file);
    check_response(&cb, 1, expected, label);
    snprintf(label, sizeof label, "%s (JSON data)", file);
    compute(&bj, &cj, label);
    assert_int_equal(cj.req->in_place, 0);
    check_response(&cj, 0, expected, label);
    same_result(&cb, &cj, label);
    computed_free(&cj);
    tu_free(&bj.body);

    /* Half precision: exactly the FP32 result of the rounded values; FP64: of the same values. */
    static const loc_form pairs[3][2] = {
        {AS_FP16, AS_FP32_OF_FP16}, {AS_BF16, AS_FP32_OF_BF16}, {AS_FP64, AS_FP32}};
    static const char *const names[3] = {"FP16", "BF16", "FP64"};
    for (int p = 0; p < 3; p++) {
        built bh, bf;
        computed ch, cf;
        snprintf(label, sizeof label, "%s (%s)", file, names[p]);
        build_request(request, 1, pairs[p][0], "INT64", &bh);
        compute(&bh, &ch, label);
        if (pairs[p][1] == AS_FP32) {
            same_result(&ch, &cb, label);
        } else {
            build_request(request, 1, pairs[p][1], "INT64", &bf);
            compute(&bf, &cf, label);
            same_result(&ch, &cf, label);
            computed_free(&cf);
            tu_free(&bf.body);
        }
        computed_free(&ch);
        tu_free(&bh.body);
    }
    computed_free(&cb);
    tu_free(&bb.body);
    json_decref(g);
}

static void test_golden_cases(void **state)
{
    (void)state;
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/cases", golden_dir);
    char **files = th_list_dir(dir, ".json");
    assert_non_null(files);
    int n = 0;
    for (int i = 0; files[i]; i++, n++)
        run_case(files[i]);
    assert_true(n >= 20);
    th_free_list(files);
}

int main(void)
{
    golden_dir = getenv("MBX_GOLDEN_DIR");
    if (!golden_dir) {
        fprintf(stderr, "MBX_GOLDEN_DIR is not set\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
