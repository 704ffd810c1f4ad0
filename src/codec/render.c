/*
 * render.c - the codec's output side: the result arrays a request asks for
 * (mbx_result_alloc / mbx_result_release) and the JSON texts of the /v1
 * answers: the 200 response of /v1/loss (dense or sparse gradients in any
 * tensor format), error bodies and anchor tensors.  Text is written by hand
 * into one growing buffer (jbuf), numbers with mbx_format_f32 ("%.9g",
 * exact for float32) and "%.17g" for doubles; NaN is never written.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "codec_internal.h"
#include "half.h"

/* --------------------------------------------------------------- results */

int mbx_result_alloc(const mbx_request *req, mbx_result *res, mbx_detail *detail)
{
    return mbx_result_alloc_ex(req, res, 0, detail);
}

int mbx_result_alloc_ex(const mbx_request *req, mbx_result *res, unsigned flags,
                        mbx_detail *detail)
{
    const mbx_batch *b = &req->batch;
    size_t rows = (size_t)(b->batch * b->num_anchors);
    const int gather = (req->outputs.gradients == MBX_GRAD_DENSE &&
                        !((flags & MBX_RESULT_GRADS_FROM_ROWS) && mbx_grads_from_rows(req))) ||
                       (req->outputs.gradients == MBX_GRAD_SPARSE &&
                        !(flags & MBX_RESULT_SPARSE_DIRECT));
    memset(res, 0, sizeof *res);
    if (req->outputs.per_image) {
        res->per_image = mbx_codec_calloc((size_t)b->batch, sizeof *res->per_image);
        if (!res->per_image)
            goto oom;
    }
    if (gather) {
        /* Not zeroed: the core writes every element (runs of zeros included),
         * and memory reused from an earlier request would be cleared for nothing. */
        res->grad_loc = mbx_codec_malloc(rows * 4 * sizeof(float));
        res->grad_conf = mbx_codec_malloc(rows * (size_t)b->num_classes * sizeof(float));
        if (!res->grad_loc || !res->grad_conf)
            goto oom;
    }
    if (req->outputs.matches) {
        res->matches = mbx_codec_calloc(rows, sizeof(int32_t));
        if (!res->matches)
            goto oom;
    }
    if (req->outputs.gradients == MBX_GRAD_SPARSE && !(flags & MBX_RESULT_SPARSE_DIRECT)) {
        res->roles = mbx_codec_calloc(rows, 1);
        if (!res->roles)
            goto oom;
    }
    return 0;
oom:
    mbx_result_release(res);
    return mbx_detail_set(detail, MBX_E_OUT_OF_MEMORY, "out of memory for the results");
}

void mbx_result_release(mbx_result *res)
{
    if (!res)
        return;
    mbx_codec_free(res->per_image);
    mbx_codec_free(res->grad_loc);
    mbx_codec_free(res->grad_conf);
    mbx_codec_free(res->matches);
    mbx_codec_free(res->roles);
    memset(res, 0, sizeof *res);
}

/* -------------------------------------------------------------- response */

static void put_key(jbuf *b, const char *key)
{
    jbuf_putc(b, ',');
    jbuf_putc(b, '"');
    jbuf_puts(b, key);
    jbuf_puts(b, "\":");
}

/* A double member; a non-finite value is an internal error (JSON has no NaN). */
static int put_f64_member(jbuf *b, const char *key, double v, mbx_detail *d)
{
    if (!isfinite(v))
        return mbx_detail_set(d, MBX_E_INTERNAL, "%s: non-finite value in the output", key);
    put_key(b, key);
    jbuf_put_f64(b, v);
    return 0;
}

static int put_per_image(jbuf *b, const mbx_result *res, int64_t B, mbx_detail *d)
{
    put_key(b, "per_image");
    jbuf_putc(b, '[');
    for (int64_t i = 0; i < B; i++) {
        const mbx_image_result *r = &res->per_image[i];
        if (!isfinite(r->loss) || !isfinite(r->conf_loss) || !isfinite(r->loc_loss))
            return mbx_detail_set(d, MBX_E_INTERNAL,
                                  "per_image[%" PRId64 "]: non-finite value in the output", i);
        if (i)
            jbuf_putc(b, ',');
        jbuf_puts(b, "{\"loss\":");
        jbuf_put_f64(b, r->loss);
        jbuf_puts(b, ",\"conf_loss\":");
        jbuf_put_f64(b, r->conf_loss);
        jbuf_puts(b, ",\"loc_loss\":");
        jbuf_put_f64(b, r->loc_loss);
        jbuf_puts(b, ",\"num_positives\":");
        jbuf_put_i64(b, r->num_positives);
        jbuf_puts(b, ",\"num_negatives\":");
        jbuf_put_i64(b, r->num_negatives);
        jbuf_putc(b, '}');
    }
    jbuf_putc(b, ']');
    return 0;
}

static void put_matches(jbuf *b, const mbx_result *res, int64_t B, int64_t A)
{
    put_key(b, "matches");
    jbuf_putc(b, '[');
    for (int64_t i = 0; i < B; i++) {
        if (i)
            jbuf_putc(b, ',');
        jbuf_putc(b, '[');
        for (int64_t a = 0; a < A; a++) {
            if (a)
                jbuf_putc(b, ',');
            jbuf_put_i64(b, res->matches[i * A + a]);
        }
        jbuf_putc(b, ']');
    }
    jbuf_putc(b, ']');
}

/* {"rows": [...], "values": TENSOR[k,width]} of rows and values computed sparse. */
static int put_sparse_given(jbuf *b, const char *name, const int32_t *rows, const float *values,
                            int64_t k, int64_t width, mbx_tensor_format fmt, mbx_detail *d)
{
    put_key(b, name);
    jbuf_puts(b, "{\"rows\":[");
    for (int64_t n = 0; n < k; n++) {
        if (n)
            jbuf_putc(b, ',');
        jbuf_put_i64(b, rows[n]);
    }
    jbuf_puts(b, "],\"values\":");
    int64_t shape[2] = {k, width};
    int rc = jbuf_put_tensor(b, values, 2, shape, fmt, name, d);
    jbuf_putc(b, '}');
    return rc;
}

/*
 * {"rows": [...], "values": TENSOR[K,width]} for the rows whose role is
 * POSITIVE (and NEGATIVE when with_negatives), in ascending b*A+a order.
 */
static int put_sparse(jbuf *b, const char *name, const float *dense, int64_t width,
                      const uint8_t *roles, int64_t rows, int with_negatives,
                      mbx_tensor_format fmt, mbx_detail *d)
{
    int64_t k = 0;
    for (int64_t r = 0; r < rows; r++)
        k += roles[r] == MBX_ROLE_POSITIVE || (with_negatives && roles[r] == MBX_ROLE_NEGATIVE);
    float *values = mbx_codec_malloc(k ? (size_t)(k * width) * sizeof(float) : 1);
    if (!values) {
        b->failed = 1;
        return 0;
    }
    put_key(b, name);
    jbuf_puts(b, "{\"rows\":[");
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (roles[r] == MBX_ROLE_POSITIVE || (with_negatives && roles[r] == MBX_ROLE_NEGATIVE)) {
            if (n)
                jbuf_putc(b, ',');
            jbuf_put_i64(b, r);
            memcpy(values + n * width, dense + r * width, (size_t)width * sizeof(float));
            n++;
        }
    }
    jbuf_puts(b, "],\"values\":");
    int64_t shape[2] = {k, width};
    int rc = jbuf_put_tensor(b, values, 2, shape, fmt, name, d);
    mbx_codec_free(values);
    jbuf_putc(b, '}');
    return rc;
}

static int render_json(const mbx_request *req, const mbx_result *res,
                       const mbx_sparse_grads *sp, char **out, size_t *len, size_t holes[2],
                       mbx_detail *detail);

int mbx_response_render_json(const mbx_request *req, const mbx_result *res, char **out,
                             size_t *len, mbx_detail *detail)
{
    return mbx_response_render_json_sparse(req, res, NULL, out, len, detail);
}

int mbx_response_render_json_sparse(const mbx_request *req, const mbx_result *res,
                                    const mbx_sparse_grads *sp, char **out, size_t *len,
                                    mbx_detail *detail)
{
    return render_json(req, res, sp, out, len, NULL, detail);
}

int mbx_response_render_json_around(const mbx_request *req, const mbx_result *res, char **out,
                                    size_t *len, size_t holes[2], mbx_detail *detail)
{
    *out = NULL;
    if (!mbx_grads_from_rows(req))
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT,
                              "the answer has no dense b64 gradients to leave out");
    return render_json(req, res, NULL, out, len, holes, detail);
}

/*
 * The JSON text of a /v1/loss answer.  holes NULL: whole.  Otherwise the
 * dense b64 gradients' texts are left out and holes[0], holes[1] get where
 * grad_loc's and grad_conf's belong.
 */
static int render_json(const mbx_request *req, const mbx_result *res,
                       const mbx_sparse_grads *sp, char **out, size_t *len, size_t holes[2],
                       mbx_detail *detail)
{
    const mbx_batch *bt = &req->batch;
    const int64_t B = bt->batch, A = bt->num_anchors, C = bt->num_classes;
    const mbx_outputs *o = &req->outputs;
    jbuf b = {0};
    int rc;

    *out = NULL;
    if (len)
        *len = 0;
    if ((o->per_image && !res->per_image) || (o->matches && !res->matches) ||
        (o->gradients == MBX_GRAD_DENSE && !holes && (!res->grad_loc || !res->grad_conf)) ||
        (o->gradients == MBX_GRAD_SPARSE && !sp &&
         (!res->roles || !res->grad_loc || !res->grad_conf)) ||
        (o->gradients == MBX_GRAD_SPARSE && sp &&
         (!sp->loc_rows || !sp->loc_values || !sp->conf_rows || !sp->conf_values)))
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT,
                              "the result lacks an array the request's outputs ask for");

    if (!isfinite(res->loss))
        return mbx_detail_set(detail, MBX_E_INTERNAL, "loss: non-finite value in the output");
    /*
     * Reserve once what dense gradients need (exact for b64; for text, two
     * bytes a value, what mostly-zero gradients take) so big responses are
     * not copied from one growth to the next.
     */
    if (o->gradients == MBX_GRAD_DENSE && !holes) {
        size_t values = (size_t)(B * A) * (size_t)(4 + C);
        size_t want = o->tensor_format == MBX_TENSOR_B64 ? mbx_base64_encoded_size(values * 4)
                                                         : values * 2;
        jbuf_reserve(&b, want + 4096 + (o->matches ? (size_t)(B * A) * 3 : 0));
    }
    jbuf_puts(&b, "{\"loss\":");
    jbuf_put_f64(&b, res->loss);
    if ((rc = put_f64_member(&b, "conf_loss", res->conf_loss, detail)) ||
        (rc = put_f64_member(&b, "loc_loss", res->loc_loss, detail)) ||
        (rc = put_f64_member(&b, "normalizer", res->normalizer, detail)))
        goto fail;
    put_key(&b, "num_positives");
    jbuf_put_i64(&b, res->num_positives);
    put_key(&b, "num_negatives");
    jbuf_put_i64(&b, res->num_negatives);
    if (o->per_image && (rc = put_per_image(&b, res, B, detail)))
        goto fail;
    if (o->gradients == MBX_GRAD_DENSE && holes) {
        int64_t shape_loc[3] = {B, A, 4}, shape_conf[3] = {B, A, C};
        put_key(&b, "grad_loc");
        jbuf_put_b64_hole(&b, 3, shape_loc, &holes[0]);
        put_key(&b, "grad_conf");
        jbuf_put_b64_hole(&b, 3, shape_conf, &holes[1]);
    } else if (o->gradients == MBX_GRAD_DENSE) {
        int64_t shape_loc[3] = {B, A, 4}, shape_conf[3] = {B, A, C};
        put_key(&b, "grad_loc");
        if ((rc = jbuf_put_tensor(&b, res->grad_loc, 3, shape_loc, o->tensor_format, "grad_loc",
                                  detail)))
            goto fail;
        put_key(&b, "grad_conf");
        if ((rc = jbuf_put_tensor(&b, res->grad_conf, 3, shape_conf, o->tensor_format,
                                  "grad_conf", detail)))
            goto fail;
    } else if (o->gradients == MBX_GRAD_SPARSE && sp) {
        if ((rc = put_sparse_given(&b, "grad_loc", sp->loc_rows, sp->loc_values, sp->num_loc, 4,
                                   o->tensor_format, detail)) ||
            (rc = put_sparse_given(&b, "grad_conf", sp->conf_rows, sp->conf_values, sp->num_conf,
                                   C, o->tensor_format, detail)))
            goto fail;
    } else if (o->gradients == MBX_GRAD_SPARSE) {
        if ((rc = put_sparse(&b, "grad_loc", res->grad_loc, 4, res->roles, B * A, 0,
                             o->tensor_format, detail)) ||
            (rc = put_sparse(&b, "grad_conf", res->grad_conf, C, res->roles, B * A, 1,
                             o->tensor_format, detail)))
            goto fail;
    }
    if (o->matches)
        put_matches(&b, res, B, A);
    jbuf_putc(&b, '}');
    rc = jbuf_finish(&b, out, len);
    if (rc)
        return mbx_detail_set(detail, rc, "out of memory rendering the response");
    return 0;
fail:
    jbuf_free(&b);
    return rc;
}

/* ---------------------------------------------------------- error, anchors */

int mbx_error_render_json(int code, const char *message, char **out, size_t *len)
{
    jbuf b = {0};
    if (!message)
        message = mbx_error_message(code);
    jbuf_puts(&b, "{\"error\":{\"code\":");
    const char *name = mbx_error_name(code);
    jbuf_put_jstring(&b, name, strlen(name));
    jbuf_puts(&b, ",\"message\":");
    jbuf_put_jstring(&b, message, strlen(message));
    jbuf_puts(&b, "}}");
    return jbuf_finish(&b, out, len);
}

int mbx_anchors_render_json(const float *anchors, int64_t count, mbx_tensor_format fmt,
                            char **out, size_t *len, mbx_detail *detail)
{
    jbuf b = {0};
    int64_t shape[2] = {count, 4};
    *out = NULL;
    if (len)
        *len = 0;
    if (count < 0 || (count > 0 && !anchors))
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "bad anchors");
    int rc = jbuf_put_tensor(&b, anchors, 2, shape, fmt, "anchors", detail);
    if (rc) {
        jbuf_free(&b);
        return rc;
    }
    rc = jbuf_finish(&b, out, len);
    if (rc)
        return mbx_detail_set(detail, rc, "out of memory rendering the anchors");
    return 0;
}

/* --------------------------------------- dense b64 gradients from sparse rows */

int mbx_grads_from_rows(const mbx_request *req)
{
    return req->outputs.gradients == MBX_GRAD_DENSE && req->outputs.tensor_format == MBX_TENSOR_B64;
}

int mbx_grads_non_finite(const mbx_request *req, int output, int64_t at, mbx_detail *detail)
{
    const mbx_batch *bt = &req->batch;
    const int64_t shape[3] = {bt->batch, bt->num_anchors,
                              output == MBX_REQUEST_INPUT_LOC ? 4 : bt->num_classes};
    return jbuf_non_finite_at(at, shape, 3, output == MBX_REQUEST_INPUT_LOC ? "grad_loc"
                                                                             : "grad_conf",
                              detail);
}
