/*
 * job_loss.c - POST /v1/loss as a job on the worker pool:
 *
 *   parse + validate + allocate + mbx_loss_begin      1 unit
 *   mbx_loss_match_image per image                     k units, then reduce
 *   mbx_loss_grad_image per image                      k units, then finish + render
 *
 * k (the loss context's slots) is the batch split: up to the number of
 * workers when the pool is quiet, fewer when other jobs run, never more
 * than B.  Each request has its own loss context.  The serial steps
 * (reduce, finish, render) run on the worker that ends a phase.  Any
 * error renders the error answer and frees everything at once; the body
 * is freed as soon as it is parsed.
 */
#include <stdlib.h>

#include "codec.h"
#include "multibox/multibox.h"
#include "pool.h"
#include "request.h"
#include "routes.h"

typedef struct loss_job {
    svc_job job; /* first member: the pool's handle */
    svc_request *req;
    mbx_request *parsed;
    mbx_result result;
    int result_allocated;
    mbx_loss *loss;
    int64_t batch;
    int units; /* parallel units per phase = loss slots */
    int failed;
} loss_job;

/* Frees everything but the answer; any thread that owns the job. */
static void release(loss_job *j)
{
    mbx_loss_free(j->loss);
    j->loss = NULL;
    if (j->result_allocated)
        mbx_result_release(&j->result);
    j->result_allocated = 0;
    mbx_request_free(j->parsed);
    j->parsed = NULL;
    free(j->req->body);
    j->req->body = NULL;
    j->req->body_len = j->req->body_cap = 0;
}

static void fail(loss_job *j, int code, const mbx_detail *d)
{
    if (d && d->message[0])
        svc_response_error(&j->req->response, code, "%s", d->message);
    else
        svc_response_error(&j->req->response, code, NULL);
    j->failed = 1;
    release(j);
}

static void parse_unit(svc_job *job, int unit)
{
    loss_job *j = (loss_job *)job;
    svc_request *req = j->req;
    mbx_detail d = {0};
    (void)unit;
    int rc = mbx_request_parse_json(req->body ? req->body : "", req->body_len, &j->parsed, &d);
    free(req->body); /* the parsed request holds its own copy */
    req->body = NULL;
    req->body_len = req->body_cap = 0;
    if (rc != 0) {
        fail(j, rc, &d);
        return;
    }
    j->batch = j->parsed->batch.batch;
    if (j->units > j->batch)
        j->units = (int)(j->batch > 0 ? j->batch : 1);
    rc = mbx_result_alloc(j->parsed, &j->result, &d);
    if (rc != 0) {
        fail(j, rc, &d);
        return;
    }
    j->result_allocated = 1;
    mbx_shape shape = mbx_request_shape(j->parsed, j->units);
    rc = mbx_loss_new(&j->loss, &j->parsed->config, &shape, &d);
    if (rc == 0)
        rc = mbx_loss_begin(j->loss, &j->parsed->batch, &j->result, &d);
    if (rc != 0)
        fail(j, rc, &d);
}

static void match_unit(svc_job *job, int unit)
{
    loss_job *j = (loss_job *)job;
    for (int64_t i = unit; i < j->batch; i += j->units)
        mbx_loss_match_image(j->loss, i, unit);
}

static void reduce_tail(svc_job *job)
{
    loss_job *j = (loss_job *)job;
    mbx_detail d = {0};
    int rc = mbx_loss_reduce(j->loss, &d);
    if (rc != 0)
        fail(j, rc, &d);
}

static void grad_unit(svc_job *job, int unit)
{
    loss_job *j = (loss_job *)job;
    for (int64_t i = unit; i < j->batch; i += j->units)
        mbx_loss_grad_image(j->loss, i, unit);
}

static void finish_tail(svc_job *job)
{
    loss_job *j = (loss_job *)job;
    mbx_detail d = {0};
    int rc = mbx_loss_finish(j->loss, &d);
    if (rc != 0) {
        fail(j, rc, &d);
        return;
    }
    char *out = NULL;
    size_t len = 0;
    rc = mbx_response_render_json(j->parsed, &j->result, &out, &len, &d);
    if (rc != 0) {
        free(out);
        fail(j, rc, &d);
        return;
    }
    svc_response_owned(&j->req->response, 200, SVC_CT_JSON, out, len);
    release(j);
}

/* Loop thread: a phase could not start. */
static void phase_failed(loss_job *j, int rc)
{
    fail(j, rc, NULL);
    svc_job_done(&j->job);
}

static void after_grad(svc_job *job)
{
    svc_job_done(job);
}

static void after_match(svc_job *job)
{
    loss_job *j = (loss_job *)job;
    if (j->failed) {
        svc_job_done(job);
        return;
    }
    int rc = svc_job_phase(job, j->units, grad_unit, finish_tail, after_grad);
    if (rc != 0)
        phase_failed(j, rc);
}

static void after_parse(svc_job *job)
{
    loss_job *j = (loss_job *)job;
    if (j->failed) {
        svc_job_done(job);
        return;
    }
    int rc = svc_job_phase(job, j->units, match_unit, reduce_tail, after_match);
    if (rc != 0)
        phase_failed(j, rc);
}

static void loss_start(svc_job *job)
{
    loss_job *j = (loss_job *)job;
    /* Split wide when alone, narrow when the workers are shared. */
    int workers = svc_pool_workers(job->pool), running = svc_pool_running(job->pool);
    j->units = workers / (running > 0 ? running : 1);
    if (j->units < 1)
        j->units = 1;
    int rc = svc_job_phase(job, 1, parse_unit, NULL, after_parse);
    if (rc != 0)
        phase_failed(j, rc);
}

static void loss_complete(svc_job *job)
{
    loss_job *j = (loss_job *)job;
    svc_request *req = j->req;
    free(j);
    svc_request_resume(req);
}

void svc_handle_loss(svc_request *req)
{
    loss_job *j = calloc(1, sizeof *j);
    if (!j) {
        svc_request_fail(req, MBX_E_OUT_OF_MEMORY, "out of memory");
        return;
    }
    j->req = req;
    j->job.start = loss_start;
    j->job.complete = loss_complete;
    svc_request_dispatch(req, &j->job);
    if (req->state != SVC_REQ_WAITING)
        free(j); /* refused (overloaded): never enqueued */
}
