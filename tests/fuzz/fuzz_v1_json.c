/*
 * fuzz_v1_json.c - fuzz target of the /v1/loss JSON codec: the input is a
 * request body.  mbx_request_parse_json must either fail cleanly (a listed
 * code, a NUL-terminated detail, *out NULL) or return a request the core
 * accepts: when the shapes are small enough to run fast, the loss is
 * computed on a one-slot context and the response rendered, and the
 * rendered JSON must parse back.  The error body of a failure must be
 * valid JSON too (its message quotes bytes of the input).
 */
#include "fuzz.h"

#include "codec.h"

/* Work limits so one input runs in well under a millisecond or two. */
#define FUZZ_MAX_CELLS ((int64_t)1 << 16)  /* B * A * (C + 4) */
#define FUZZ_MAX_PAIRS ((int64_t)1 << 18)  /* B * A * max_boxes (IoU matrix) */

static int small_enough(const mbx_request *req)
{
    const mbx_batch *b = &req->batch;
    if (b->batch <= 0 || b->num_anchors <= 0 || b->num_classes <= 0)
        return 1; /* the core rejects these before any work */
    if (b->batch > FUZZ_MAX_CELLS || b->num_anchors > FUZZ_MAX_CELLS ||
        b->num_classes > FUZZ_MAX_CELLS)
        return 0;
    if (b->batch * b->num_anchors > FUZZ_MAX_CELLS / (b->num_classes + 4))
        return 0;
    if (req->max_boxes > 0 && b->batch * b->num_anchors > FUZZ_MAX_PAIRS / req->max_boxes)
        return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mbx_request *req = (mbx_request *)&req; /* poison: must be set to NULL on failure */
    mbx_detail d = {0, ""};
    char *out = NULL;
    size_t len = 0;

    int rc = mbx_request_parse_json((const char *)data, size, &req, &d);
    if (rc) {
        fuzz_note("parse: %s: %s", mbx_error_name(rc), d.message);
        fuzz_check_failure(rc, &d);
        FUZZ_CHECK(req == NULL, "*out not NULL after failure %d", rc);
        FUZZ_CHECK(mbx_error_render_json(rc, d.message, &out, &len) == 0, "error render failed");
        fuzz_check_json(out, len, "error body");
        free(out);
        return 0;
    }
    FUZZ_CHECK(req != NULL, "success without a request");
    fuzz_note("parse: ok, B=%lld A=%lld C=%lld max_boxes=%lld", (long long)req->batch.batch,
              (long long)req->batch.num_anchors, (long long)req->batch.num_classes,
              (long long)req->max_boxes);
    if (!small_enough(req)) {
        mbx_request_free(req);
        return 0;
    }

    mbx_result res;
    memset(&res, 0, sizeof res);
    mbx_loss *loss = NULL;
    rc = mbx_result_alloc(req, &res, &d);
    FUZZ_CHECK(rc == 0, "mbx_result_alloc: %d %s", rc, d.message);
    mbx_shape shape = mbx_request_shape(req, 1);
    rc = mbx_loss_new(&loss, &req->config, &shape, &d);
    /* The codec validated the configuration: the core must accept it. */
    FUZZ_CHECK(rc == 0, "mbx_loss_new after a successful parse: %s: %s", mbx_error_name(rc),
               d.message);
    rc = mbx_loss_compute(loss, &req->batch, &res, &d);
    /* The codec promises to reject everything the core would reject. */
    FUZZ_CHECK(rc == 0, "mbx_loss_compute after a successful parse: %s: %s", mbx_error_name(rc),
               d.message);
    rc = mbx_response_render_json(req, &res, &out, &len, &d);
    FUZZ_CHECK(rc == 0, "render: %s: %s", mbx_error_name(rc), d.message);
    fuzz_check_json(out, len, "response");
    fuzz_note("computed: loss %g, %zu response bytes", res.loss, len);
    free(out);

    mbx_loss_free(loss);
    mbx_result_release(&res);
    mbx_request_free(req);
    return 0;
}
