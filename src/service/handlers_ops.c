/*
 * handlers_ops.c - the operations endpoints, answered on the HTTP thread
 * (each is small and bounded): /livez, /readyz, /metrics, /openapi.yaml.
 */
#include <stdatomic.h>

#include "metrics.h"
#include "multibox/multibox.h"
#include "openapi_spec.h"
#include "pool.h"
#include "request.h"
#include "routes.h"
#include "server.h"

/* The loop thread ticks every 250 ms; this much silence means it is stuck. */
#define LOOP_STALL_NS ((uint64_t)10 * 1000000000u)

static const char ok_text[] = "ok\n";

void svc_handle_livez(svc_request *req)
{
    uint64_t beat = atomic_load(&req->app->heartbeat_ns);
    if (svc_now_ns() - beat > LOOP_STALL_NS) {
        svc_request_fail(req, MBX_E_INTERNAL, "the event loop has not run for %.1f s",
                         (double)(svc_now_ns() - beat) * 1e-9);
        return;
    }
    svc_response_static(&req->response, 200, "text/plain; charset=utf-8", ok_text,
                        sizeof ok_text - 1);
    svc_request_respond(req);
}

void svc_handle_readyz(svc_request *req)
{
    if (atomic_load(&req->app->draining)) {
        svc_request_fail(req, MBX_E_DRAINING, "server is shutting down");
        return;
    }
    if (!atomic_load(&req->app->ready)) {
        svc_request_fail(req, MBX_E_OVERLOADED, "server is starting up");
        return;
    }
    svc_response_static(&req->response, 200, "text/plain; charset=utf-8", ok_text,
                        sizeof ok_text - 1);
    svc_request_respond(req);
}

void svc_handle_metrics(svc_request *req)
{
    svc_gauges g = {
        .queue_depth = svc_pool_waiting(req->app->pool),
        .in_flight = svc_server_in_flight(req->app->server),
    };
    char *text = NULL;
    size_t len = 0;
    int rc = svc_metrics_render(req->app->metrics, &g, &text, &len);
    if (rc != 0) {
        svc_request_fail(req, rc, "cannot render the metrics");
        return;
    }
    svc_response_owned(&req->response, 200, "text/plain; version=0.0.4; charset=utf-8", text,
                       len);
    svc_request_respond(req);
}

void svc_handle_openapi(svc_request *req)
{
    svc_response_static(&req->response, 200, "application/yaml", svc_openapi_yaml,
                        svc_openapi_yaml_len);
    svc_request_respond(req);
}
