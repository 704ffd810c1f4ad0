/*
 * fuzz_v1_json.c - fuzz target of the /v1/loss JSON codec: the input is a
 * request body.  mbx_request_parse_json must either fail cleanly (a listed
 * code, a NUL-terminated detail, *out NULL) or return a request the core
 * accepts: when the shapes are small enough to run fast, the loss is
 * computed on a one-slot context and the response rendered, and the
 * rendered JSON must parse back.  The error body of a failure must be
 * valid JSON too (its message quotes bytes of the input).
 *
 * Differential checks on the server's split path: the parse with
 * MBX_REQUEST_DEFER_INPUTS, its loads image by image (in reverse order, as
 * racing units may) and mbx_request_input_fail must give exactly the plain
 * parse's outcome (the same code and message, or the same values bit for
 * bit); so must the body stored by mbx_body_scan_write in chunks (long b64
 * strings decoded as they arrive, then used in place and checked as the
 * core would); and a dense b64 answer rendered around its gradients, their
 * texts written from the non-zero rows a window at a time, must splice into
 * exactly the whole render.
 */
#include "fuzz.h"

#include <math.h>

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

/* The first NaN or infinity in v[0..n), or -1. */
static int64_t first_bad(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return -1;
}

/*
 * A split job's outcome for req (parsed with MBX_REQUEST_DEFER_INPUTS into
 * rc, d) against the plain parse (plain: its request, or NULL after failure
 * rc_plain with detail want): deferred inputs widened image by image, and
 * inputs used in place checked as the core would, their faults named by
 * mbx_request_input_check (loc before conf).  Frees req.
 */
static void check_outcome(const char *how, mbx_request *req, int rc, mbx_detail *d,
                          const mbx_request *plain, int rc_plain, const mbx_detail *want)
{
    float *buf = NULL;
    if (rc == 0) {
        const mbx_batch *b = &req->batch;
        const int64_t A = b->num_anchors, C = b->num_classes;
        /* Only widen what a fuzz input can afford (the plain parse decoded it already). */
        if (A > 0 && C > 0 && b->batch * A <= FUZZ_MAX_CELLS / (C + 4)) {
            buf = malloc((size_t)(A * (C > 4 ? C : 4)) * sizeof *buf + 1);
            FUZZ_CHECK(buf != NULL, "out of memory");
        }
        const float *in_place[2] = {mbx_request_input_in_place(req, 0),
                                    mbx_request_input_in_place(req, 1)};
        if (!in_place[0] || !in_place[1]) /* the server reads in place both or neither */
            in_place[0] = in_place[1] = NULL;
        int bad_in_place = 0;
        for (int input = 0; buf && input < 2 && rc == 0; input++) {
            if (!mbx_request_deferred(req, input))
                continue;
            const int64_t w = input == 0 ? 4 : C;
            for (int64_t i = b->batch - 1; i >= 0; i--) {
                const float *v = buf;
                if (in_place[input]) {
                    v = in_place[input] + i * A * w;
                    bad_in_place |= first_bad(v, A * w) >= 0;
                } else if (mbx_request_load_input(req, input, i, NULL, 0, buf) >= 0) {
                    rc = mbx_request_input_fail(req, input, d);
                    break;
                }
                if (plain) {
                    const float *want_v =
                        (input == 0 ? plain->batch.loc : plain->batch.conf) + i * A * w;
                    FUZZ_CHECK(memcmp(v, want_v, (size_t)(A * w) * sizeof *v) == 0,
                               "%s: input %d image %lld differs from the plain parse", how,
                               input, (long long)i);
                }
            }
        }
        /* The core finds a fault in inputs used in place: the parse's error for it. */
        for (int input = 0; rc == 0 && bad_in_place && input < 2; input++)
            if (in_place[input])
                rc = mbx_request_input_check(req, input, d);
    }
    if (rc == 0 && !buf && req && plain == NULL) {
        /* Too big to widen here: the plain parse failing is then not checked. */
        mbx_request_free(req);
        return;
    }
    fuzz_note("%s: %s: %s", how, mbx_error_name(rc), d->message);
    FUZZ_CHECK(rc == rc_plain, "%s parse %s, plain %s (%s / %s)", how, mbx_error_name(rc),
               mbx_error_name(rc_plain), d->message, want->message);
    if (rc != 0)
        FUZZ_CHECK(strcmp(d->message, want->message) == 0, "%s: messages differ: \"%s\" / \"%s\"",
                   how, d->message, want->message);
    free(buf);
    mbx_request_free(req);
}

/* The deferred parse of data against the plain one. */
static void check_deferred(const uint8_t *data, size_t size, const mbx_request *plain,
                           int rc_plain, const mbx_detail *want)
{
    mbx_request *req = NULL;
    mbx_detail d = {0, ""};
    int rc = mbx_request_parse_json_ex((const char *)data, size, MBX_REQUEST_DEFER_INPUTS, &req,
                                       &d);
    check_outcome("deferred", req, rc, &d, plain, rc_plain, want);
}

/*
 * data stored by a scan that decodes long b64 strings as they arrive, in
 * chunks of sizes taken from the data itself, then parsed as the server
 * does, against the plain parse.
 */
static void check_written(const uint8_t *data, size_t size, const mbx_request *plain,
                          int rc_plain, const mbx_detail *want)
{
    char *body = malloc(size + 1);
    mbx_body_scan *scan = mbx_body_scan_new();
    FUZZ_CHECK(body && scan, "out of memory");
    size_t at = 0;
    for (size_t k = 0; at < size; k++) {
        size_t n = 1 + (size_t)data[(k * 7919) % size] * (1 + k % 5);
        if (n > size - at)
            n = size - at;
        mbx_body_scan_write(scan, body, (const char *)data + at, n);
        at += n;
    }
    mbx_body_scan_end(scan, body);
    mbx_request *req = NULL;
    mbx_detail d = {0, ""};
    int rc = mbx_request_parse_json_scanned(body, size, MBX_REQUEST_DEFER_INPUTS, scan, &req, &d);
    mbx_body_scan_free(scan);
    check_outcome("written", req, rc, &d, plain, rc_plain, want);
    free(body);
}

/* The non-zero rows of a dense [rows][w] array, as the server's sparse units give them. */
static mbx_dense_rows rows_of(const float *dense, int64_t rows, int64_t w, int32_t *idx,
                            float *values)
{
    mbx_dense_rows s = {idx, values, 0, rows, w};
    for (int64_t r = 0; r < rows; r++) {
        int any = 0;
        for (int64_t k = 0; k < w; k++)
            any |= dense[r * w + k] != 0.0f || signbit(dense[r * w + k]);
        if (!any)
            continue;
        idx[s.num] = (int32_t)r;
        memcpy(values + s.num * w, dense + r * w, (size_t)w * sizeof(float));
        s.num++;
    }
    return s;
}

/* A dense b64 answer rendered around its texts, written from the non-zero rows, against the whole. */
static void check_render_around(const mbx_request *req, const mbx_result *res, const char *whole,
                                size_t whole_len)
{
    if (!mbx_grads_from_rows(req))
        return;
    const int64_t rows = req->batch.batch * req->batch.num_anchors, C = req->batch.num_classes;
    const int64_t width[2] = {4, C};
    const float *dense[2] = {res->grad_loc, res->grad_conf};
    char *texts[2] = {NULL, NULL}, *around = NULL;
    size_t n[2];
    for (int k = 0; k < 2; k++) {
        int32_t *idx = malloc((size_t)rows * sizeof(int32_t) + 1);
        float *values = malloc((size_t)(rows * width[k]) * sizeof(float) + 1);
        FUZZ_CHECK(idx && values, "out of memory");
        const mbx_dense_rows t = rows_of(dense[k], rows, width[k], idx, values);
        n[k] = mbx_dense_rows_b64_size(&t);
        texts[k] = malloc(n[k] + 1);
        FUZZ_CHECK(texts[k], "out of memory");
        /* Windows of odd sizes, as libmicrohttpd asks for them. */
        for (size_t off = 0; off < n[k]; off += 61)
            mbx_dense_rows_b64_read(&t, off, texts[k] + off, n[k] - off < 61 ? n[k] - off : 61);
        free(idx);
        free(values);
    }
    mbx_detail d = {0, ""};
    size_t len = 0, at[2];
    FUZZ_CHECK(mbx_response_render_json_around(req, res, &around, &len, at, &d) == 0,
               "render_around: %s", d.message);
    FUZZ_CHECK(len + n[0] + n[1] == whole_len, "spliced length %zu, whole %zu",
               len + n[0] + n[1], whole_len);
    const char *w = whole;
    FUZZ_CHECK(memcmp(w, around, at[0]) == 0 && memcmp(w + at[0], texts[0], n[0]) == 0 &&
                   memcmp(w + at[0] + n[0], around + at[0], at[1] - at[0]) == 0 &&
                   memcmp(w + n[0] + at[1], texts[1], n[1]) == 0 &&
                   memcmp(w + n[0] + n[1] + at[1], around + at[1], len - at[1]) == 0,
               "the spliced answer differs from the whole render");
    free(around);
    free(texts[0]);
    free(texts[1]);
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
        check_deferred(data, size, NULL, rc, &d);
        check_written(data, size, NULL, rc, &d);
        return 0;
    }
    check_deferred(data, size, req, 0, &d);
    check_written(data, size, req, 0, &d);
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
    check_render_around(req, &res, out, len);
    free(out);

    mbx_loss_free(loss);
    mbx_result_release(&res);
    mbx_request_free(req);
    return 0;
}
