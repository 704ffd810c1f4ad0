/*
 * job_anchors.c - GET /v1/anchors/{preset}: checks the preset (404) and
 * ?tensor_format= on the HTTP thread, then renders the anchors on a
 * worker, from the start-up cache or freshly generated before start-up
 * has ended.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anchor_cache.h"
#include "codec.h"
#include "multibox/multibox.h"
#include "pool.h"
#include "request.h"
#include "routes.h"

typedef struct anchors_job {
    svc_job job; /* first member */
    svc_request *req;
    mbx_tensor_format format;
    char preset[SVC_ROUTE_PARAM_MAX];
} anchors_job;

static void render_unit(svc_job *job, int unit)
{
    anchors_job *j = (anchors_job *)job;
    svc_app *app = j->req->app;
    const svc_anchor_set *set = NULL;
    float *own = NULL;
    const float *anchors;
    int64_t count;
    (void)unit;
    if (atomic_load(&app->ready))
        set = svc_anchor_cache_find(app->anchors, j->preset);
    if (set) {
        anchors = set->anchors;
        count = set->count;
    } else {
        int rc = svc_anchors_generate(j->preset, &own, &count);
        if (rc != 0) {
            svc_response_error(&j->req->response, rc, "cannot generate the anchors of %s",
                               j->preset);
            return;
        }
        anchors = own;
    }
    char *out = NULL;
    size_t len = 0;
    mbx_detail d = {0};
    int rc = mbx_anchors_render_json(anchors, count, j->format, &out, &len, &d);
    free(own);
    if (rc != 0) {
        free(out);
        if (d.message[0])
            svc_response_error(&j->req->response, rc, "%s", d.message);
        else
            svc_response_error(&j->req->response, rc, NULL);
        return;
    }
    svc_response_owned(&j->req->response, 200, SVC_CT_JSON, out, len);
}

static void after_render(svc_job *job)
{
    svc_job_done(job);
}

static void anchors_start(svc_job *job)
{
    int rc = svc_job_phase(job, 1, render_unit, NULL, after_render);
    if (rc != 0) {
        svc_response_error(&((anchors_job *)job)->req->response, rc, NULL);
        svc_job_done(job);
    }
}

static void anchors_complete(svc_job *job)
{
    anchors_job *j = (anchors_job *)job;
    svc_request *req = j->req;
    free(j);
    svc_request_resume(req);
}

void svc_handle_anchors(svc_request *req)
{
    const char *name = req->match.params[0];
    mbx_prior_params p;
    if (mbx_prior_preset(name, &p, NULL) != 0) {
        svc_request_fail(req, MBX_E_NOT_FOUND, "unknown anchor preset \"%s\"", name);
        return;
    }
    mbx_tensor_format format = MBX_TENSOR_NESTED;
    const char *q = svc_request_query(req, "tensor_format");
    if (q && mbx_tensor_format_parse(q, &format) != 0) {
        svc_request_fail(req, MBX_E_OUT_OF_RANGE,
                         "tensor_format: \"%s\" is not one of nested, flat, b64", q);
        return;
    }
    anchors_job *j = calloc(1, sizeof *j);
    if (!j) {
        svc_request_fail(req, MBX_E_OUT_OF_MEMORY, "out of memory");
        return;
    }
    j->req = req;
    j->format = format;
    snprintf(j->preset, sizeof j->preset, "%s", name);
    j->job.start = anchors_start;
    j->job.complete = anchors_complete;
    svc_request_dispatch(req, &j->job);
    if (req->state != SVC_REQ_WAITING)
        free(j);
}
