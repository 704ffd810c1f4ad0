/*
 * fuzz_oip.c - fuzz target of the Open Inference Protocol request codec:
 * JSON header + binary tensors (input format in fuzz.h: flags, header
 * length, body).  mbx_oip_request_parse must fail cleanly or return a
 * request the core runs; small requests are computed on a one-slot context
 * and rendered (binary or forced JSON), and the response must be
 * consistent: segment 0 is the header, valid JSON, the segments add up to
 * body_len, and the binary outputs' binary_data_size add up to the bytes
 * after the header.  Every response byte is read, so ASan sees a segment
 * that points at freed or foreign memory.
 */
#include "fuzz.h"

#include "oip.h"

#define FUZZ_MAX_CELLS ((int64_t)1 << 16)  /* B * A * (C + 4) */
#define FUZZ_MAX_PAIRS ((int64_t)1 << 18)  /* B * A * max_boxes */

static int small_enough(const mbx_oip_request *req)
{
    const mbx_batch *b = &req->core.batch;
    if (b->batch <= 0 || b->num_anchors <= 0 || b->num_classes <= 0)
        return 1;
    if (b->batch > FUZZ_MAX_CELLS || b->num_anchors > FUZZ_MAX_CELLS ||
        b->num_classes > FUZZ_MAX_CELLS)
        return 0;
    if (b->batch * b->num_anchors > FUZZ_MAX_CELLS / (b->num_classes + 4))
        return 0;
    if (req->core.max_boxes > 0 && b->batch * b->num_anchors > FUZZ_MAX_PAIRS / req->core.max_boxes)
        return 0;
    return 1;
}

/* Binary float outputs must hold finite values only, as their JSON "data" must. */
static void check_finite(const mbx_oip_segment *g, const char *datatype)
{
    const unsigned char *p = g->base;
    FUZZ_CHECK(datatype != NULL, "output without a datatype");
    if (strcmp(datatype, "FP32") == 0) {
        for (size_t k = 0; k + 4 <= g->len; k += 4)
            FUZZ_CHECK((p[k + 3] & 0x7f) != 0x7f || (p[k + 2] & 0x80) == 0,
                       "binary FP32 element %zu not finite", k / 4);
    } else if (strcmp(datatype, "FP16") == 0) {
        for (size_t k = 0; k + 2 <= g->len; k += 2)
            FUZZ_CHECK((p[k + 1] & 0x7c) != 0x7c, "binary FP16 element %zu not finite", k / 2);
    } else if (strcmp(datatype, "BF16") == 0) {
        for (size_t k = 0; k + 2 <= g->len; k += 2)
            FUZZ_CHECK((p[k + 1] & 0x7f) != 0x7f || (p[k] & 0x80) == 0,
                       "binary BF16 element %zu not finite", k / 2);
    }
}

static void check_response(const mbx_oip_response *r, int force_json)
{
    FUZZ_CHECK(r->num_segments >= 1, "no segments");
    FUZZ_CHECK(r->segments[0].base == r->header && r->segments[0].len == r->header_len,
               "segment 0 is not the header");
    fuzz_check_json(r->header, r->header_len, "response header");
    size_t total = 0;
    unsigned sum = 0;
    for (size_t i = 0; i < r->num_segments; i++) {
        const unsigned char *p = r->segments[i].base;
        FUZZ_CHECK(p != NULL || r->segments[i].len == 0, "segment %zu NULL", i);
        for (size_t k = 0; k < r->segments[i].len; k++)
            sum += p[k];
        total += r->segments[i].len;
    }
    (void)sum;
    FUZZ_CHECK(total == r->body_len, "segments hold %zu bytes, body_len %zu", total, r->body_len);
    FUZZ_CHECK(!force_json || (r->num_segments == 1 && !r->binary), "force_json gave binary");
    FUZZ_CHECK(r->binary || r->num_segments == 1, "JSON response with %zu segments",
               r->num_segments);

    json_t *h = json_loadb(r->header, r->header_len, 0, NULL);
    json_t *outputs = json_object_get(h, "outputs");
    FUZZ_CHECK(json_is_array(outputs), "header has no outputs array");
    size_t bin = 0, i, seg = 1;
    json_t *o;
    json_array_foreach(outputs, i, o) {
        json_t *sz = json_object_get(json_object_get(o, "parameters"), "binary_data_size");
        json_t *data = json_object_get(o, "data");
        FUZZ_CHECK((sz != NULL) != (data != NULL), "output %zu: data xor binary_data_size", i);
        if (sz) {
            FUZZ_CHECK(json_is_integer(sz) && json_integer_value(sz) >= 0, "bad size");
            bin += (size_t)json_integer_value(sz);
            FUZZ_CHECK(seg < r->num_segments && r->segments[seg].len == (size_t)json_integer_value(sz),
                       "output %zu: segment %zu does not hold its %lld bytes", i, seg,
                       (long long)json_integer_value(sz));
            check_finite(&r->segments[seg], json_string_value(json_object_get(o, "datatype")));
            seg++;
        }
    }
    FUZZ_CHECK(seg == r->num_segments, "%zu segments for %zu binary outputs", r->num_segments,
               seg - 1);
    FUZZ_CHECK(bin == r->body_len - r->header_len, "binary sizes %zu, bytes after header %zu", bin,
               r->body_len - r->header_len);
    FUZZ_CHECK(bin == 0 || r->binary, "binary flag 0 with %zu binary bytes", bin);
    json_decref(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_oip_input in;
    if (fuzz_oip_split(data, size, &in))
        return 0;
    mbx_oip_request *req = (mbx_oip_request *)&req;
    mbx_detail d = {0, ""};
    char *err = NULL;
    size_t err_len = 0;

    int rc = mbx_oip_request_parse(in.body, in.len, in.header_len, &req, &d);
    if (rc) {
        fuzz_note("parse: %s: %s", mbx_error_name(rc), d.message);
        fuzz_check_failure(rc, &d);
        FUZZ_CHECK(req == NULL, "*out not NULL after failure %d", rc);
        FUZZ_CHECK(mbx_oip_error_json(rc, d.message, &err, &err_len) == 0, "error body failed");
        fuzz_check_json(err, err_len, "error body");
        free(err);
        free(in.mem);
        return 0;
    }
    FUZZ_CHECK(req != NULL, "success without a request");
    fuzz_note("parse: ok, B=%lld A=%lld C=%lld, %d in place", (long long)req->core.batch.batch,
              (long long)req->core.batch.num_anchors, (long long)req->core.batch.num_classes,
              req->in_place);
    if (small_enough(req)) {
        mbx_result res;
        mbx_loss *loss = NULL;
        rc = mbx_oip_result_alloc(req, &res, &d);
        FUZZ_CHECK(rc == 0, "result alloc: %s", d.message);
        mbx_shape shape = mbx_oip_request_shape(req, 1);
        rc = mbx_loss_new(&loss, &req->core.config, &shape, &d);
        FUZZ_CHECK(rc == 0, "mbx_loss_new after a successful parse: %s: %s",
                   mbx_error_name(rc), d.message);
        rc = mbx_loss_compute(loss, &req->core.batch, &res, &d);
        /* loc and conf used in place are left to the core's NaN check (oip.h). */
        if (rc)
            fuzz_note("compute: %s: %s", mbx_error_name(rc), d.message);
        FUZZ_CHECK(rc == 0 || (rc == MBX_E_NOT_FINITE && req->in_place > 0),
                   "mbx_loss_compute after a successful parse: %s: %s", mbx_error_name(rc),
                   d.message);
        if (rc == 0) {
            int force_json = (in.flags & FUZZ_OIP_FORCE_JSON) != 0;
            mbx_oip_response resp;
            rc = mbx_oip_response_render(req, &res, force_json, &resp, &d);
            FUZZ_CHECK(rc == 0, "render: %s: %s", mbx_error_name(rc), d.message);
            check_response(&resp, force_json);
            fuzz_note("computed: loss %g, %zu segments, %zu bytes", res.loss, resp.num_segments,
                      resp.body_len);
            mbx_oip_response_free(&resp);
        }
        mbx_loss_free(loss);
        mbx_oip_result_release(&res);
    }
    mbx_oip_request_free(req);
    free(in.mem);
    return 0;
}
