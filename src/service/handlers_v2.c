/*
 * handlers_v2.c - the small Open Inference Protocol endpoints, answered on
 * the HTTP thread: server metadata (GET /v2), liveness and readiness (the
 * status is the answer, the body is empty), model metadata and model
 * readiness for the one model, multibox_loss (404 for any other name).
 * Their errors use the /v2 body (request.c sets the style for /v2 paths).
 */
#include <stdatomic.h>
#include <string.h>

#include "multibox/multibox.h"
#include "oip.h"
#include "pool.h"
#include "request.h"
#include "routes.h"

/* The loop thread ticks every 250 ms; this much silence means it is stuck (as /livez). */
#define LOOP_STALL_NS ((uint64_t)10 * 1000000000u)

static void respond_empty(svc_request *req)
{
    svc_response_static(&req->response, 200, NULL, "", 0);
    svc_request_respond(req);
}

/* Answers a JSON document made by the codec, or the error it gave. */
static void respond_json(svc_request *req, int rc, char *text, size_t len)
{
    if (rc != 0) {
        svc_request_fail(req, rc, "cannot render the metadata");
        return;
    }
    svc_response_owned(&req->response, 200, SVC_CT_JSON, text, len);
    svc_request_respond(req);
}

/* 1 when the path names our model; else answers 404 and returns 0. */
static int model_known(svc_request *req)
{
    if (strcmp(req->match.params[0], MBX_OIP_MODEL_NAME) == 0)
        return 1;
    svc_request_fail(req, MBX_E_NOT_FOUND, "unknown model \"%s\" (this server serves %s)",
                     req->match.params[0], MBX_OIP_MODEL_NAME);
    return 0;
}

/* 1 when ready; else answers 503 (draining, or starting up) and returns 0. */
static int ready(svc_request *req)
{
    if (atomic_load(&req->app->draining)) {
        svc_request_fail(req, MBX_E_DRAINING, "server is shutting down");
        return 0;
    }
    if (!atomic_load(&req->app->ready)) {
        svc_request_fail(req, MBX_E_OVERLOADED, "server is starting up");
        return 0;
    }
    return 1;
}

void svc_handle_v2_server(svc_request *req)
{
    char *text = NULL;
    size_t len = 0;
    int rc = mbx_oip_server_metadata_json(&text, &len);
    respond_json(req, rc, text, len);
}

void svc_handle_v2_live(svc_request *req)
{
    uint64_t beat = atomic_load(&req->app->heartbeat_ns);
    if (svc_now_ns() - beat > LOOP_STALL_NS) {
        svc_request_fail(req, MBX_E_INTERNAL, "the event loop has not run for %.1f s",
                         (double)(svc_now_ns() - beat) * 1e-9);
        return;
    }
    respond_empty(req);
}

void svc_handle_v2_ready(svc_request *req)
{
    if (ready(req))
        respond_empty(req);
}

void svc_handle_v2_model(svc_request *req)
{
    if (!model_known(req))
        return;
    char *text = NULL;
    size_t len = 0;
    int rc = mbx_oip_model_metadata_json(&text, &len);
    respond_json(req, rc, text, len);
}

void svc_handle_v2_model_ready(svc_request *req)
{
    if (model_known(req) && ready(req))
        respond_empty(req);
}
