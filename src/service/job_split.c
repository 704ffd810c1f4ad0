/*
 * job_split.c - the phases of a loss request on the worker pool (see
 * job_split.h): the parse unit, the per-image match units with the
 * reduction as their tail, the per-image gradient units with finish and
 * render as their tail.  The concrete jobs (job_loss.c, job_oip.c) give
 * only parse, render and release.
 */
#include "job_split.h"

#include <stdlib.h>

#include "memory.h"
#include "request.h"

/* Frees the loss context and the concrete job's data, once. */
static void release(svc_split_job *j)
{
    if (j->released)
        return;
    j->released = 1;
    mbx_loss_free(j->loss);
    j->loss = NULL;
    j->ops->release(j);
}

static void fail(svc_split_job *j, int code, const mbx_detail *d)
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
    svc_split_job *j = (svc_split_job *)job;
    mbx_detail d = {0};
    (void)unit;
    int rc = j->ops->parse(j, &d);
    if (rc != 0) {
        fail(j, rc, &d);
        return;
    }
    j->images = j->batch->batch;
    if (j->units > j->images)
        j->units = (int)(j->images > 0 ? j->images : 1);
    j->shape.num_slots = j->units;
    rc = mbx_loss_new(&j->loss, j->config, &j->shape, &d);
    if (rc == 0)
        rc = mbx_loss_begin(j->loss, j->batch, j->result, &d);
    if (rc != 0)
        fail(j, rc, &d);
}

static void match_unit(svc_job *job, int unit)
{
    svc_split_job *j = (svc_split_job *)job;
    for (int64_t i = unit; i < j->images; i += j->units)
        mbx_loss_match_image(j->loss, i, unit);
}

static void reduce_tail(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    mbx_detail d = {0};
    int rc = mbx_loss_reduce(j->loss, &d);
    if (rc != 0)
        fail(j, rc, &d);
}

static void grad_unit(svc_job *job, int unit)
{
    svc_split_job *j = (svc_split_job *)job;
    for (int64_t i = unit; i < j->images; i += j->units)
        mbx_loss_grad_image(j->loss, i, unit);
}

static void finish_tail(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    mbx_detail d = {0};
    int rc = mbx_loss_finish(j->loss, &d);
    if (rc == 0)
        rc = j->ops->render(j, &d);
    if (rc != 0) {
        fail(j, rc, &d);
        return;
    }
    release(j);
}

/* Loop thread: a phase could not start. */
static void phase_failed(svc_split_job *j, int rc)
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
    svc_split_job *j = (svc_split_job *)job;
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
    svc_split_job *j = (svc_split_job *)job;
    if (j->failed) {
        svc_job_done(job);
        return;
    }
    int rc = svc_job_phase(job, j->units, match_unit, reduce_tail, after_match);
    if (rc != 0)
        phase_failed(j, rc);
}

static void split_start(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    /* Split wide when alone, narrow when the workers are shared. */
    int workers = svc_pool_workers(job->pool), running = svc_pool_running(job->pool);
    j->units = workers / (running > 0 ? running : 1);
    if (j->units < 1)
        j->units = 1;
    int rc = svc_job_phase(job, 1, parse_unit, NULL, after_parse);
    if (rc != 0)
        phase_failed(j, rc);
}

static void split_complete(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    svc_request *req = j->req;
    release(j); /* already done on every path; kept as a guard */
    free(j);
    svc_memory_note_work();
    svc_request_resume(req);
}

void svc_split_dispatch(svc_request *req, svc_split_job *j, const svc_split_ops *ops)
{
    j->ops = ops;
    j->req = req;
    j->job.start = split_start;
    j->job.complete = split_complete;
    svc_request_dispatch(req, &j->job);
    if (req->state != SVC_REQ_WAITING) { /* refused (overloaded): never enqueued */
        release(j);
        free(j);
    }
}
