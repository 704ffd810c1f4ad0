/*
 * job_split.c - the phases of a loss request on the worker pool (see
 * job_split.h): the parse unit, the per-image match units with the
 * reduction as their tail, the per-image gradient units with finish and
 * render as their tail.  The concrete jobs (job_loss.c, job_oip.c) give
 * only parse, render and release.
 */
#include "job_split.h"

#include <stdlib.h>
#include <string.h>

#include "memory.h"
#include "metrics.h"
#include "request.h"

void svc_sparse_free(svc_sparse_out *s)
{
    free(s->loc_rows);
    free(s->loc_values);
    free(s->conf_rows);
    free(s->conf_values);
    memset(s, 0, sizeof *s);
}

void svc_split_take_sparse(svc_split_job *j, svc_sparse_out *dst)
{
    *dst = j->out;
    memset(&j->out, 0, sizeof j->out);
}

mbx_sparse_grads svc_sparse_view(const svc_sparse_out *s)
{
    mbx_sparse_grads v = {s->loc_rows, s->loc_values, s->num_loc,
                          s->conf_rows, s->conf_values, s->num_conf};
    return v;
}

/* Frees the loss context, the phases' buffers and the concrete job's data, once. */
static void release(svc_split_job *j)
{
    if (j->released)
        return;
    j->released = 1;
    mbx_loss_free(j->loss);
    j->loss = NULL;
    free(j->scratch);
    free(j->row_scratch);
    free(j->bad);
    free(j->sp);
    free(j->conf_store);
    j->conf_store = NULL;
    j->scratch = NULL;
    j->row_scratch = NULL;
    j->bad = NULL;
    j->sp = NULL;
    svc_sparse_free(&j->out);
    j->ops->release(j);
}

static int any_deferred(const svc_split_job *j)
{
    return j->deferred[0] || j->deferred[1];
}

/*
 * Buffers of the phases, sized once the batch is known: with deferred
 * inputs, each unit's widened image (A * (4 + C) floats: far smaller than
 * the batch) and rows, and the per-image record of bad values.
 */
static int alloc_phase_buffers(svc_split_job *j, mbx_detail *d)
{
    const int64_t A = j->batch->num_anchors, C = j->batch->num_classes;
    if (any_deferred(j)) {
        j->scratch = malloc((size_t)j->units * (size_t)(A * (4 + C)) * sizeof(float));
        j->row_scratch = malloc((size_t)j->units * 2 * (size_t)A * sizeof(int32_t));
        j->bad = malloc(2 * (size_t)j->images * sizeof(int64_t));
        if (!j->scratch || !j->row_scratch || !j->bad)
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory for the inputs");
        for (int64_t i = 0; i < 2 * j->images; i++)
            j->bad[i] = -1;
    }
    if (j->sparse && !(j->sp = calloc((size_t)j->images, sizeof *j->sp)))
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    /*
     * Sparse conf rows without a dense array: match, with the image's conf
     * in cache, keeps each image's counted rows in its slice of a store
     * that grad scales, instead of grad reading conf again (long evicted)
     * to compute them.  Only the rows written are touched: a few percent of
     * the pages, never zeroed.
     */
    if (j->sparse && !j->result->grad_conf &&
        !(j->conf_store = malloc((size_t)(j->images * A * C) * sizeof(float) + 1)))
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    return 0;
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

/*
 * Records a work unit's error.  The units fail only when called out of
 * order or out of range, which this file never does; should it happen, the
 * request gets a 500 instead of an answer missing an image.
 */
static void unit_result(svc_split_job *j, int rc)
{
    int none = 0;
    if (rc != 0)
        atomic_compare_exchange_strong(&j->unit_error, &none, rc);
}

/* Fails the job with an internal error when a unit recorded one; returns 1 then. */
static int unit_failed(svc_split_job *j)
{
    const int rc = atomic_load(&j->unit_error);
    if (rc == 0)
        return 0;
    mbx_detail d = {0};
    mbx_detail_set(&d, MBX_E_INTERNAL, "a work unit failed: %s", mbx_error_name(rc));
    fail(j, MBX_E_INTERNAL, &d);
    return 1;
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
        rc = alloc_phase_buffers(j, &d);
    if (rc == 0)
        rc = mbx_loss_begin(j->loss, j->batch, j->result, &d);
    if (rc != 0)
        fail(j, rc, &d);
}

/* Image i's inputs: the batch's slices, or widened into the unit's scratch. */
static mbx_image_input unit_input(const svc_split_job *j, int64_t i, int unit)
{
    const int64_t A = j->batch->num_anchors, C = j->batch->num_classes;
    /* No scratch without deferred inputs: no offset from a null pointer either. */
    float *buf = j->scratch ? j->scratch + (size_t)unit * (size_t)(A * (4 + C)) : NULL;
    mbx_image_input in;
    in.loc = j->deferred[0] ? buf : j->batch->loc + i * A * 4;
    in.conf = j->deferred[1] ? buf + A * 4 : j->batch->conf + i * A * C;
    in.conf_rows = j->conf_store ? j->conf_store + i * A * C : NULL;
    return in;
}

/* The next image below limit for a unit to take, or -1 when there is none. */
static int64_t take_image(svc_split_job *j, int64_t limit)
{
    long long i = atomic_load(&j->next_image);
    while (i < limit && !atomic_compare_exchange_weak(&j->next_image, &i, i + 1)) {
    }
    return i < limit ? (int64_t)i : -1;
}

/* The images that are in (streaming: as far as the upload has come, read anew each time). */
static int64_t images_in(svc_split_job *j)
{
    const long long ready = atomic_load(&j->ready);
    return ready < j->images ? (int64_t)ready : j->images;
}

static void match_unit(svc_job *job, int unit)
{
    svc_split_job *j = (svc_split_job *)job;
    for (int64_t i; (i = take_image(j, images_in(j))) >= 0;) {
        mbx_image_input in = unit_input(j, i, unit);
        if (!any_deferred(j)) { /* NaN and infinity are reduce's to report */
            unit_result(j, mbx_loss_match_image_input(j->loss, i, unit, &in));
            continue;
        }
        /* Widen this image only; loc first, as a whole-tensor check would. */
        int64_t bad = -1;
        if (j->deferred[0] && (bad = j->ops->load(j, 0, i, NULL, 0, (float *)in.loc)) >= 0) {
            j->bad[i] = bad;
            continue;
        }
        if (j->deferred[1] && (bad = j->ops->load(j, 1, i, NULL, 0, (float *)in.conf)) >= 0) {
            j->bad[j->images + i] = bad;
            continue;
        }
        unit_result(j, mbx_loss_match_image_input(j->loss, i, unit, &in));
    }
}

/*
 * Carves every image's slice of the sparse outputs from one array per
 * output, sized from the counts that reduce made final.
 */
static int size_sparse(svc_split_job *j, mbx_detail *d)
{
    const int64_t A = j->batch->num_anchors, C = j->batch->num_classes;
    int64_t P = 0, K = 0;
    for (int64_t i = 0; i < j->images; i++) {
        int64_t p = 0, k = 0;
        const int rc = mbx_loss_sparse_counts(j->loss, i, &p, &k);
        if (rc != 0)
            return mbx_detail_set(d, MBX_E_INTERNAL, "sparse counts: %s", mbx_error_name(rc));
        P += p;
        K += k;
    }
    svc_sparse_out *o = &j->out;
    o->num_loc = P;
    o->num_conf = K;
    o->loc_rows = malloc((size_t)P * sizeof(int32_t) + 1);
    o->loc_values = malloc((size_t)P * 4 * sizeof(float) + 1);
    o->conf_rows = malloc((size_t)K * sizeof(int32_t) + 1);
    o->conf_values = malloc((size_t)K * (size_t)C * sizeof(float) + 1);
    if (!o->loc_rows || !o->loc_values || !o->conf_rows || !o->conf_values)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory for the sparse gradients");
    P = K = 0;
    for (int64_t i = 0; i < j->images; i++) {
        int64_t p = 0, k = 0;
        mbx_loss_sparse_counts(j->loss, i, &p, &k);
        j->sp[i] = (mbx_sparse_grad){i * A, o->loc_rows + P, o->loc_values + 4 * P,
                                     o->conf_rows + K, o->conf_values + C * K};
        P += p;
        K += k;
    }
    return 0;
}

static void reduce_tail(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    mbx_detail d = {0};
    int rc = 0;
    /* A bad deferred value: the error the parse would have given (all loc before conf). */
    for (int input = 0; j->bad && input < 2 && rc == 0; input++)
        for (int64_t i = 0; i < j->images; i++)
            if (j->bad[input * j->images + i] >= 0) {
                rc = j->ops->load_fail(j, input, i, j->bad[input * j->images + i], &d);
                break;
            }
    if (unit_failed(j))
        return;
    if (rc == 0)
        rc = mbx_loss_reduce(j->loss, &d);
    if (rc == MBX_E_NOT_FINITE && j->ops->check) {
        for (int input = 0; input < 2; input++) {
            mbx_detail parse_error = {0, ""};
            const int code = j->ops->check(j, input, &parse_error);
            if (code != 0) {
                rc = code;
                d = parse_error;
                break;
            }
        }
    }
    if (rc == 0 && j->sparse)
        rc = size_sparse(j, &d);
    if (rc != 0)
        fail(j, rc, &d);
}

/* The tail of a run of match units: the reduction, once every image is matched. */
static void match_tail(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    if (atomic_load(&j->next_image) >= j->images)
        reduce_tail(job);
}

/*
 * Image i's gradient with deferred inputs: re-widens only the rows the
 * unit reads: loc at the positives, conf at the counted rows when their
 * gradient is computed here (sparse and no dense array).  Known finite:
 * match widened them all.
 */
static void grad_image_deferred(svc_split_job *j, int64_t i, int unit, const mbx_sparse_grad *sp)
{
    const int64_t A = j->batch->num_anchors;
    mbx_image_input in = unit_input(j, i, unit);
    int32_t *rows = j->row_scratch + (size_t)unit * 2 * (size_t)A;
    int64_t P = 0, K = 0;
    unit_result(j, mbx_loss_sparse_counts(j->loss, i, &P, &K));
    const int conf_rows = j->deferred[1] && sp && !j->result->grad_conf && !j->conf_store;
    mbx_sparse_grad r = {i * A, j->deferred[0] ? rows : NULL, NULL, conf_rows ? rows + A : NULL,
                         NULL};
    unit_result(j, mbx_loss_sparse_rows(j->loss, i, &r));
    if (j->deferred[0])
        j->ops->load(j, 0, i, r.loc_rows, P, (float *)in.loc);
    if (conf_rows)
        j->ops->load(j, 1, i, r.conf_rows, K, (float *)in.conf);
    unit_result(j, mbx_loss_grad_image_sparse(j->loss, i, unit, &in, sp));
}

static void grad_unit(svc_job *job, int unit)
{
    svc_split_job *j = (svc_split_job *)job;
    for (int64_t i; (i = take_image(j, j->images)) >= 0;) {
        const mbx_sparse_grad *sp = j->sparse ? &j->sp[i] : NULL;
        if (any_deferred(j)) {
            grad_image_deferred(j, i, unit, sp);
        } else {
            mbx_image_input in = unit_input(j, i, unit);
            unit_result(j, mbx_loss_grad_image_sparse(j->loss, i, unit, &in, sp));
        }
    }
}

static void finish_tail(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    if (unit_failed(j))
        return;
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

static void match_more(svc_split_job *j);

static void after_match(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    if (j->failed) {
        svc_job_done(job);
        return;
    }
    if (atomic_load(&j->next_image) < j->images) { /* streaming: more images to come */
        match_more(j);
        return;
    }
    atomic_store(&j->next_image, 0);
    int rc = svc_job_phase(job, j->units, grad_unit, finish_tail, after_grad);
    if (rc != 0)
        phase_failed(j, rc);
}

/*
 * Loop thread: matches the images that are in and not yet matched, on up
 * to j->units units, or parks the job until svc_split_ready or
 * svc_split_abandon pokes it.  Without streaming every image is in at once.
 */
static void match_more(svc_split_job *j)
{
    svc_job *job = &j->job;
    if (atomic_load(&j->abandoned)) {
        mbx_detail d = {0};
        mbx_detail_set(&d, MBX_E_INTERNAL, "the client went away during the upload");
        fail(j, MBX_E_INTERNAL, &d);
        svc_job_done(job);
        return;
    }
    const int64_t ready = images_in(j), next = atomic_load(&j->next_image);
    if (ready <= next) {
        j->waiting = 1;
        svc_job_park(job);
        return;
    }
    j->waiting = 0;
    svc_job_unpark(job);
    const int units = ready - next < j->units ? (int)(ready - next) : j->units;
    int rc = svc_job_phase(job, units, match_unit, match_tail, after_match);
    if (rc != 0)
        phase_failed(j, rc);
}

/* Loop thread: more images are in, or the client went away. */
static void split_poke(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    if (j->waiting)
        match_more(j);
}

static void after_parse(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    if (j->failed) {
        svc_job_done(job);
        return;
    }
    atomic_store(&j->next_image, 0);
    match_more(j);
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

enum { SPLIT_BODY_DONE = 1, SPLIT_JOB_DONE = 2, SPLIT_ABANDONED = 4 };

static void split_complete(svc_job *job)
{
    svc_split_job *j = (svc_split_job *)job;
    svc_request *req = j->req;
    release(j); /* already done on every path; kept as a guard */
    svc_memory_note_work();
    if (!j->streaming) {
        free(j);
        svc_request_resume(req);
        return;
    }
    /* The side that comes second ends the request (svc_split_body_done, svc_split_abandon). */
    const int was = atomic_fetch_or(&j->handoff, SPLIT_JOB_DONE);
    if (was & SPLIT_ABANDONED) {
        free(j);
        svc_request_free(req);
    } else if (was & SPLIT_BODY_DONE) {
        free(j);
        svc_request_free_body(req);
        svc_request_resume(req);
    }
}

static void init_job(svc_request *req, svc_split_job *j, const svc_split_ops *ops)
{
    j->ops = ops;
    j->req = req;
    j->job.start = split_start;
    j->job.complete = split_complete;
    j->job.poke = split_poke;
    atomic_store(&j->ready, INT64_MAX);
}

void svc_split_dispatch(svc_request *req, svc_split_job *j, const svc_split_ops *ops)
{
    init_job(req, j, ops);
    j->body_bytes = req->body_len;
    svc_request_dispatch(req, &j->job);
    if (req->state != SVC_REQ_WAITING) { /* refused (overloaded): never enqueued */
        release(j);
        free(j);
    }
}

int svc_split_dispatch_early(svc_request *req, svc_split_job *j, const svc_split_ops *ops,
                             size_t body_bytes)
{
    init_job(req, j, ops);
    j->streaming = 1;
    j->body_bytes = body_bytes;
    atomic_store(&j->ready, 0);
    if (svc_pool_reserve(req->app->pool) != 0) {
        j->streaming = 0;
        return -1;
    }
    svc_pool_enqueue(req->app->pool, &j->job);
    if (req->app->metrics)
        svc_metrics_count_streamed(req->app->metrics);
    return 0;
}

void svc_split_ready(svc_split_job *j, int64_t n)
{
    if (n > atomic_load(&j->ready)) {
        atomic_store(&j->ready, n);
        svc_job_poke(&j->job);
    }
}

void svc_split_body_done(svc_split_job *j)
{
    svc_request *req = j->req;
    if (atomic_load(&j->handoff) & SPLIT_JOB_DONE) { /* it ended early: an error */
        free(j);
        svc_request_free_body(req);
        req->state = SVC_REQ_RESPOND;
        return;
    }
    svc_request_suspend(req);
    if (atomic_fetch_or(&j->handoff, SPLIT_BODY_DONE) & SPLIT_JOB_DONE) {
        free(j); /* it ended between the two lines above */
        svc_request_free_body(req);
        svc_request_resume(req);
    }
}

int svc_split_abandon(svc_split_job *j)
{
    atomic_store(&j->abandoned, 1);
    svc_job_poke(&j->job);
    if (atomic_fetch_or(&j->handoff, SPLIT_ABANDONED) & SPLIT_JOB_DONE) {
        free(j);
        return 0;
    }
    return 1;
}
