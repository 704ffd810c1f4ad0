/*
 * job_loss.c - POST /v1/loss as a split job (job_split.c runs the phases):
 * the body is parsed as JSON by the /v1 codec (long b64 strings are decoded
 * straight from the body, never through jansson) and freed as soon as it is
 * parsed, since the parsed request holds its own tensors; the answer is
 * rendered as JSON text.
 */
#include <stdlib.h>

#include "codec.h"
#include "job_split.h"
#include "multibox/multibox.h"
#include "request.h"
#include "routes.h"

typedef struct loss_job {
    svc_split_job base; /* first member */
    mbx_request *parsed;
    mbx_result result;
    int result_allocated;
} loss_job;

static int loss_parse(svc_split_job *sj, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
    svc_request *req = sj->req;
    int rc = mbx_request_parse_json(req->body ? req->body + req->body_offset : "", req->body_len,
                                    &j->parsed, d);
    svc_request_free_body(req); /* the parsed request holds its own copy */
    if (rc != 0)
        return rc;
    /* Sparse gradients come straight from the core's sparse units: no dense arrays. */
    rc = mbx_result_alloc_ex(j->parsed, &j->result, MBX_RESULT_SPARSE_DIRECT, d);
    if (rc != 0)
        return rc;
    j->result_allocated = 1;
    sj->sparse = j->parsed->outputs.gradients == MBX_GRAD_SPARSE;
    sj->config = &j->parsed->config;
    sj->batch = &j->parsed->batch;
    sj->result = &j->result;
    sj->shape = mbx_request_shape(j->parsed, 1);
    return 0;
}

static int loss_render(svc_split_job *sj, mbx_detail *d)
{
    loss_job *j = (loss_job *)sj;
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
    svc_request_free_body(sj->req);
}

static const svc_split_ops loss_ops = {loss_parse, loss_render, loss_release, NULL, NULL};

void svc_handle_loss(svc_request *req)
{
    loss_job *j = calloc(1, sizeof *j);
    if (!j) {
        svc_request_fail(req, MBX_E_OUT_OF_MEMORY, "out of memory");
        return;
    }
    svc_split_dispatch(req, &j->base, &loss_ops);
}
