/*
 * job_oip.c - POST /v2/models/multibox_loss/infer, the Open Inference
 * Protocol's fast path, as a split job (job_split.c runs the phases).
 *
 * Header time (svc_oip_begin): the model name, the content type
 * (application/octet-stream, application/json, or none as tritonclient
 * sends), Inference-Header-Content-Length, the limits (the JSON part is
 * bounded by --max-json-body-bytes, the whole body by --max-body-bytes),
 * and the body's place in its buffer: the body is stored at an offset that
 * makes body + header length 16-byte aligned, so the codec uses the FP32
 * tensors where they lie.  The body therefore lives until the loss is
 * computed.  The answer is sent from the codec's segments without a copy;
 * binary FP32 dense gradients are computed as sparse rows and their bytes
 * written as they are sent (zeros with the rows over them), so no dense
 * array is zeroed, written or read back.  The result and the rendered
 * response are owned by the libmicrohttpd response and freed by its free
 * callback.  Errors use the /v2 body (request.c sets the style).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "job_split.h"
#include "multibox/multibox.h"
#include "oip.h"
#include "request.h"
#include "routes.h"

#define IHCL "Inference-Header-Content-Length"
#define BODY_ALIGN 16

_Static_assert(sizeof(mbx_oip_segment) == sizeof(svc_piece) &&
                   offsetof(mbx_oip_segment, len) == offsetof(svc_piece, len),
               "the codec's segments are pieces");

/* 1 when the media type ct (parameters allowed) is want, case-insensitive. */
static int media_type_is(const char *ct, const char *want)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/*
 * The Inference-Header-Content-Length of r: 0 and *len (SIZE_MAX when the
 * header is absent), or -1 when its value is not a decimal byte count.
 */
static int header_length(const svc_request *r, size_t *len)
{
    const char *v = svc_request_header(r, IHCL);
    *len = SIZE_MAX;
    if (!v)
        return 0;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || *end || n >= SIZE_MAX)
        return -1;
    *len = (size_t)n;
    return 0;
}

static void follow_upload(svc_request *r, size_t header_len);

/*
 * Whether r's loss may start while its body arrives (svc_stream_upload):
 * by default only for a client on another host, whose upload leaves our
 * cores idle; a local client's upload runs on them (measured on 2 cores,
 * batch 32 over loopback: 1.2x the time of reading the body first).
 */
static int stream_upload(const svc_request *r)
{
    switch (r->app->cfg.stream_upload) {
    case SVC_STREAM_ALWAYS:
        return 1;
    case SVC_STREAM_NEVER:
        return 0;
    default:
        return !svc_request_client_is_local(r);
    }
}

int svc_oip_begin(svc_request *r)
{
    const svc_config *cfg = &r->app->cfg;
    if (strcmp(r->match.params[0], MBX_OIP_MODEL_NAME) != 0) {
        svc_request_fail(r, MBX_E_NOT_FOUND, "unknown model \"%s\" (this server serves %s)",
                         r->match.params[0], MBX_OIP_MODEL_NAME);
        return -1;
    }
    const char *ct = svc_request_header(r, "Content-Type");
    if (ct && ct[strspn(ct, " \t")] != '\0' && !media_type_is(ct, "application/octet-stream") &&
        !media_type_is(ct, "application/json")) {
        svc_request_fail(r, MBX_E_UNSUPPORTED_MEDIA_TYPE,
                         "content type \"%s\" is not application/octet-stream, "
                         "application/json or none",
                         ct);
        return -1;
    }
    size_t hl;
    if (header_length(r, &hl) != 0) {
        svc_request_fail(r, MBX_E_BAD_FRAMING, IHCL " \"%s\" is not a byte count",
                         svc_request_header(r, IHCL));
        return -1;
    }
    uint64_t json_limit = cfg->max_json_body_bytes < cfg->max_body_bytes
                              ? cfg->max_json_body_bytes
                              : cfg->max_body_bytes;
    if (hl == SIZE_MAX || hl == 0) { /* the whole body is JSON (the codec reads 0 so too) */
        r->limit = json_limit;
        return 0;
    }
    r->limit = cfg->max_body_bytes;
    if (r->has_length && hl > r->content_length) {
        svc_request_fail(r, MBX_E_BAD_FRAMING,
                         IHCL " %zu is beyond the body (%llu bytes)", hl,
                         (unsigned long long)r->content_length);
        return -1;
    }
    if (hl > json_limit) {
        svc_request_fail(r, MBX_E_PAYLOAD_TOO_LARGE,
                         "JSON header of %zu bytes exceeds the limit of %llu", hl,
                         (unsigned long long)json_limit);
        return -1;
    }
    r->body_offset = (BODY_ALIGN - hl % BODY_ALIGN) % BODY_ALIGN;
    if (r->has_length && hl < r->content_length && stream_upload(r))
        follow_upload(r, hl);
    return 0;
}

/* ------------------------------------------------------------------ job */

typedef struct oip_job {
    svc_split_job base; /* first member */
    size_t header_len;  /* SIZE_MAX: no Inference-Header-Content-Length */
    mbx_oip_request *parsed;
    mbx_result result;
    int result_allocated;
    /* Following the upload (HTTP thread): the layout once the header is in. */
    int layout_state;   /* 0 not yet read, 1 read */
    mbx_oip_layout layout;
} oip_job;

/* What a 200 answer's pieces point into; freed by libmicrohttpd's callback. */
typedef struct oip_answer {
    mbx_result result;
    svc_sparse_out sparse; /* FP32 sparse values are sent from here */
    mbx_oip_response resp;
    svc_part parts[MBX_OIP_OUT_COUNT + 1]; /* resp's segments, when some are made from rows */
} oip_answer;

static void answer_free(void *cls)
{
    oip_answer *a = cls;
    mbx_oip_response_free(&a->resp);
    mbx_oip_result_release(&a->result);
    svc_sparse_free(&a->sparse);
    free(a);
}

static int oip_parse(svc_split_job *sj, mbx_detail *d)
{
    oip_job *j = (oip_job *)sj;
    svc_request *req = sj->req;
    static const uint8_t empty[1];
    const uint8_t *body = req->body ? (const uint8_t *)req->body + req->body_offset : empty;
    /*
     * Tensors used in place point into the body: it is freed in release
     * (streaming: once the upload is over too).
     * loc and conf that are not used in place (FP16, BF16, FP64) stay in
     * the body too and are widened one image at a time by the match units
     * (ops->load), never as whole float32 copies.
     */
    int rc = mbx_oip_request_parse_ex(body, sj->body_bytes, j->header_len,
                                      MBX_OIP_PARSE_DEFER_INPUTS, &j->parsed, d);
    if (rc != 0)
        return rc;
    /* Sparse outputs come straight from the core's sparse units, and binary FP32
     * dense gradients from the same rows as they are sent: no dense arrays. */
    rc = mbx_oip_result_alloc_ex(j->parsed, &j->result,
                                 MBX_RESULT_SPARSE_DIRECT | MBX_RESULT_GRADS_FROM_ROWS, d);
    if (rc != 0)
        return rc;
    j->result_allocated = 1;
    const uint32_t sparse_outputs =
        1u << MBX_OIP_OUT_GRAD_LOC_ROWS | 1u << MBX_OIP_OUT_GRAD_LOC_VALUES |
        1u << MBX_OIP_OUT_GRAD_CONF_ROWS | 1u << MBX_OIP_OUT_GRAD_CONF_VALUES;
    sj->sparse = (mbx_oip_request_outputs(j->parsed) & sparse_outputs) != 0 ||
                 mbx_oip_grads_from_rows(j->parsed);
    sj->deferred[0] = mbx_oip_request_deferred(j->parsed, MBX_OIP_INPUT_LOC);
    sj->deferred[1] = mbx_oip_request_deferred(j->parsed, MBX_OIP_INPUT_CONF);
    sj->config = &j->parsed->core.config;
    sj->batch = &j->parsed->core.batch;
    sj->result = &j->result;
    sj->shape = mbx_oip_request_shape(j->parsed, 1);
    return 0;
}

static int oip_render(svc_split_job *sj, mbx_detail *d)
{
    oip_job *j = (oip_job *)sj;
    oip_answer *a = calloc(1, sizeof *a);
    if (!a)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    /* The answer takes the result and the sparse arrays: FP32 ones are sent as they are. */
    a->result = j->result;
    memset(&j->result, 0, sizeof j->result);
    j->result_allocated = 0;
    svc_split_take_sparse(sj, &a->sparse);
    const mbx_sparse_grads view = svc_sparse_view(&a->sparse);
    int rc = mbx_oip_response_render_sparse(j->parsed, &a->result, sj->sparse ? &view : NULL, 0,
                                            &a->resp, d);
    if (rc != 0) {
        answer_free(a);
        return rc;
    }
    svc_response *r = &sj->req->response;
    const char *ct = a->resp.binary ? "application/octet-stream" : SVC_CT_JSON;
    if (a->resp.rows_segment[0] || a->resp.rows_segment[1]) {
        for (size_t k = 0; k < a->resp.num_segments; k++) {
            const mbx_oip_segment *seg = &a->resp.segments[k];
            a->parts[k] = (svc_part){seg->base, seg->len,
                                     seg->base ? NULL : &a->resp.rows[k == a->resp.rows_segment[1]],
                                     0};
        }
        svc_response_parts(r, 200, ct, a->parts, (unsigned int)a->resp.num_segments,
                           a->resp.body_len, answer_free, a);
    } else {
        svc_response_pieces(r, 200, ct, (const svc_piece *)a->resp.segments,
                            (unsigned int)a->resp.num_segments, a->resp.body_len, answer_free, a);
    }
    if (a->resp.binary) {
        r->extra_header = IHCL;
        snprintf(r->extra_value, sizeof r->extra_value, "%zu", a->resp.header_len);
    }
    return 0;
}

static void oip_release(svc_split_job *sj)
{
    oip_job *j = (oip_job *)sj;
    if (j->result_allocated)
        mbx_oip_result_release(&j->result);
    j->result_allocated = 0;
    mbx_oip_request_free(j->parsed);
    j->parsed = NULL;
    if (!sj->streaming) /* a streaming body is freed once the upload is over too */
        svc_request_free_body(sj->req);
}

static int64_t oip_load(svc_split_job *sj, int input, int64_t image, const int32_t *rows,
                        int64_t n, float *dst)
{
    return mbx_oip_request_load_input(((oip_job *)sj)->parsed, input, image, rows, n, dst);
}

static int oip_load_fail(svc_split_job *sj, int input, int64_t image, int64_t index,
                         mbx_detail *d)
{
    return mbx_oip_request_input_fail(((oip_job *)sj)->parsed, input, image, index, d);
}

static const svc_split_ops oip_ops = {oip_parse, oip_render,    oip_release,
                                      oip_load,  oip_load_fail, NULL};

/* Stops following the upload: the request is read whole, then dispatched. */
static void unfollow(svc_request *r)
{
    r->on_progress = NULL;
}

/*
 * HTTP thread, after each chunk of a binary request with a Content-Length:
 * once the header is in, its layout; once every byte the parse reads is
 * in, the job starts (streaming); then the images whose loc and conf
 * slices are complete are handed to it.  Anything unusual (no layout,
 * nothing to gain, a full pool) leaves the request to the usual path.
 */
static void on_progress(svc_request *r)
{
    oip_job *j = r->hook_data;
    if (!j->layout_state) {
        if (r->body_len < j->header_len)
            return;
        const uint8_t *body = (const uint8_t *)r->body + r->body_offset;
        if (mbx_oip_request_layout(body, (size_t)r->content_length, j->header_len, &j->layout) !=
                0 ||
            mbx_oip_layout_image_end(&j->layout, 0) >= r->content_length) {
            unfollow(r);
            return;
        }
        j->layout_state = 1;
    }
    if (!j->base.streaming) {
        if (r->body_len < j->layout.prefix_end)
            return;
        if (svc_split_dispatch_early(r, &j->base, &oip_ops, (size_t)r->content_length) != 0) {
            unfollow(r);
            return;
        }
    }
    int64_t n = atomic_load(&j->base.ready); /* this thread is its only writer */
    while (n < j->layout.batch && mbx_oip_layout_image_end(&j->layout, n) <= r->body_len)
        n++;
    svc_split_ready(&j->base, n); /* pokes the job only when n grew */
}

/* HTTP thread: the connection ended before the body did. */
static int on_abandon(svc_request *r)
{
    oip_job *j = svc_request_unfollow(r);
    if (j->base.streaming)
        return svc_split_abandon(&j->base);
    free(j);
    return 0;
}

static void follow_upload(svc_request *r, size_t header_len)
{
    oip_job *j = calloc(1, sizeof *j);
    if (!j)
        return; /* the handler tries again, and answers 500 if it fails too */
    j->header_len = header_len;
    svc_request_follow(r, on_progress, on_abandon, j);
}

void svc_handle_v2_infer(svc_request *req)
{
    oip_job *j = svc_request_unfollow(req);
    if (j && j->base.streaming) {
        svc_split_body_done(&j->base);
        return;
    }
    if (!j && !(j = calloc(1, sizeof *j))) {
        svc_request_fail(req, MBX_E_OUT_OF_MEMORY, "out of memory");
        return;
    }
    if (header_length(req, &j->header_len) != 0) { /* checked at header time */
        free(j);
        svc_request_fail(req, MBX_E_BAD_FRAMING, "bad " IHCL);
        return;
    }
    svc_split_dispatch(req, &j->base, &oip_ops);
}
