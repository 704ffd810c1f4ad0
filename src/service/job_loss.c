/*
 * job_loss.c - POST /v1/loss as a split job (job_split.c runs the phases):
 * the body is parsed as JSON by the /v1 codec (long b64 strings never go
 * through jansson; the scan that finds them runs on the HTTP thread while
 * the body arrives, svc_loss_begin).  float32 b64 loc and conf stay text
 * in the body and are decoded one image at a time by the match units
 * (ops->load), so both workers share the decoding; otherwise the body is
 * freed as soon as it is parsed, since the parsed request then holds its
 * own tensors.  Dense b64 gradients are encoded by the grad units, an image
 * each as soon as its rows are final, straight into their final texts; the
 * answer is the JSON around them plus those texts, sent in pieces without
 * a copy.  Other answers are rendered whole as JSON text.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "codec.h"
#include "job_split.h"
#include "multibox/multibox.h"
#include "request.h"
#include "routes.h"

typedef struct loss_job {
    svc_split_job base; /* first member */
    mbx_body_scan *scan; /* the scan run during the upload (NULL: none), for parse */
    mbx_request *parsed;
    mbx_result result;
    int result_allocated;
    /* Dense b64 gradients: their texts, encoded by the grad units (image_done). */
    char *grads_text[2];
    size_t grads_len[2];
    atomic_int encode_failed;
    mbx_detail encode_error; /* the first failure's, written by its winner only */
} loss_job;

/* The answer in pieces: JSON text, grad_loc's text, JSON, grad_conf's text, JSON. */
typedef struct loss_answer {
    char *json;
    char *grads_text[2];
    svc_piece pieces[5];
} loss_answer;

static void answer_free(void *cls)
{
    loss_answer *a = cls;
    free(a->json);
    free(a->grads_text[0]);
    free(a->grads_text[1]);
    free(a);
}

static int loss_parse(svc_split_job *sj, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
    svc_request *req = sj->req;
    int rc = mbx_request_parse_json_scanned(req->body ? req->body + req->body_offset : "",
                                            req->body_len, MBX_REQUEST_DEFER_INPUTS, j->scan,
                                            &j->parsed, d);
    mbx_body_scan_free(j->scan);
    j->scan = NULL;
    if (rc != 0)
        return rc;
    sj->deferred[0] = mbx_request_deferred(j->parsed, MBX_REQUEST_INPUT_LOC);
    sj->deferred[1] = mbx_request_deferred(j->parsed, MBX_REQUEST_INPUT_CONF);
    /* Deferred b64 inputs are read from the body until the last image: freed in release. */
    if (!sj->deferred[0] && !sj->deferred[1])
        svc_request_free_body(req); /* the parsed request holds its own copy */
    /* Sparse gradients come straight from the core's sparse units: no dense arrays. */
    rc = mbx_result_alloc_ex(j->parsed, &j->result, MBX_RESULT_SPARSE_DIRECT, d);
    if (rc != 0)
        return rc;
    j->result_allocated = 1;
    for (int k = 0; k < 2; k++) {
        j->grads_len[k] = mbx_grads_text_size(j->parsed, k);
        if (j->grads_len[k] && !(j->grads_text[k] = malloc(j->grads_len[k])))
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory for the answer");
    }
    sj->sparse = j->parsed->outputs.gradients == MBX_GRAD_SPARSE;
    sj->config = &j->parsed->config;
    sj->batch = &j->parsed->batch;
    sj->result = &j->result;
    sj->shape = mbx_request_shape(j->parsed, 1);
    return 0;
}

/* A grad unit: image's part of the gradients' texts. */
static void loss_image_done(svc_split_job *sj, int64_t image)
{
    loss_job *j = (loss_job *)sj;
    if (!j->grads_text[0])
        return;
    mbx_detail d = {0};
    int none = 0;
    if (mbx_grads_encode_image(j->parsed, &j->result, image, j->grads_text[0], j->grads_text[1],
                               &d) != 0 &&
        atomic_compare_exchange_strong(&j->encode_failed, &none, 1))
        j->encode_error = d;
}

/* The answer around the texts the grad units wrote, sent in pieces without a copy. */
static int render_around(loss_job *j, mbx_detail *d)
{
    if (atomic_load(&j->encode_failed)) {
        *d = j->encode_error;
        return d->code;
    }
    mbx_grads_encode_seams(j->parsed, &j->result, j->grads_text[0], j->grads_text[1]);
    loss_answer *a = calloc(1, sizeof *a);
    if (!a)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    size_t len = 0, at[2];
    int rc = mbx_response_render_json_around(j->parsed, &j->result, &a->json, &len, at, d);
    if (rc != 0) {
        answer_free(a);
        return rc;
    }
    for (int k = 0; k < 2; k++) {
        a->grads_text[k] = j->grads_text[k];
        j->grads_text[k] = NULL;
    }
    a->pieces[0] = (svc_piece){a->json, at[0]};
    a->pieces[1] = (svc_piece){a->grads_text[0], j->grads_len[0]};
    a->pieces[2] = (svc_piece){a->json + at[0], at[1] - at[0]};
    a->pieces[3] = (svc_piece){a->grads_text[1], j->grads_len[1]};
    a->pieces[4] = (svc_piece){a->json + at[1], len - at[1]};
    svc_response_pieces(&j->base.req->response, 200, SVC_CT_JSON, a->pieces, 5,
                        len + j->grads_len[0] + j->grads_len[1], answer_free, a);
    return 0;
}

static int loss_render(svc_split_job *sj, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
    if (j->grads_text[0])
        return render_around(j, d);
    char *out = NULL;
    size_t len = 0;
    const mbx_sparse_grads view = svc_sparse_view(&sj->out);
    int rc = mbx_response_render_json_sparse(j->parsed, &j->result, sj->sparse ? &view : NULL,
                                             &out, &len, d);
    if (rc != 0) {
        free(out);
        return rc;
    }
    svc_response_owned(&sj->req->response, 200, SVC_CT_JSON, out, len);
    return 0;
}

static void loss_release(svc_split_job *sj)
{
    loss_job *j = (loss_job *)sj;
    if (j->result_allocated)
        mbx_result_release(&j->result);
    j->result_allocated = 0;
    mbx_request_free(j->parsed);
    j->parsed = NULL;
    mbx_body_scan_free(j->scan);
    j->scan = NULL;
    for (int k = 0; k < 2; k++) {
        free(j->grads_text[k]);
        j->grads_text[k] = NULL;
    }
    svc_request_free_body(sj->req);
}

static int64_t loss_load(svc_split_job *sj, int input, int64_t image, const int32_t *rows,
                         int64_t n, float *dst)
{
    return mbx_request_load_input(((loss_job *)sj)->parsed, input, image, rows, n, dst);
}

static int loss_load_fail(svc_split_job *sj, int input, int64_t image, int64_t index,
                          mbx_detail *d)
{
    (void)image; /* the whole text is read again: a bad character anywhere comes first */
    (void)index;
    return mbx_request_input_fail(((loss_job *)sj)->parsed, input, d);
}

static const svc_split_ops loss_ops = {loss_parse,     loss_render,   loss_release,
                                       loss_load,      loss_load_fail, loss_image_done};

/* HTTP thread, after each stored chunk: the scan goes as far as the bytes in. */
static void loss_progress(svc_request *r)
{
    mbx_body_scan_feed(r->hook_data, r->body + r->body_offset, r->body_len);
}

/* HTTP thread: the connection ended before the handler ran (or an error answered it). */
static int loss_abandon(svc_request *r)
{
    mbx_body_scan_free(svc_request_unfollow(r));
    return 0;
}

void svc_loss_begin(svc_request *r)
{
    mbx_body_scan *scan = mbx_body_scan_new();
    if (scan)
        svc_request_follow(r, loss_progress, loss_abandon, scan);
}

void svc_handle_loss(svc_request *req)
{
    mbx_body_scan *scan = svc_request_unfollow(req);
    loss_job *j = calloc(1, sizeof *j);
    if (!j) {
        mbx_body_scan_free(scan);
        svc_request_fail(req, MBX_E_OUT_OF_MEMORY, "out of memory");
        return;
    }
    j->scan = scan;
    svc_split_dispatch(req, &j->base, &loss_ops);
}
