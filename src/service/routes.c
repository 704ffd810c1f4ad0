/*
 * routes.c - the one route table of multiboxd.  Pattern, flags, and per
 * method the handler and the kind of body it reads.  The pattern is also
 * the `handler` label of the HTTP metrics.
 */
#include "routes.h"

const svc_route svc_routes[] = {
    {"/v1/loss", SVC_ROUTE_WORK, {{"POST", svc_handle_loss, SVC_BODY_LOSS}}},
    {"/v1/anchors/{preset}", SVC_ROUTE_WORK, {{"GET", svc_handle_anchors, SVC_BODY_NONE}}},
    {"/livez", 0, {{"GET", svc_handle_livez, SVC_BODY_NONE}}},
    {"/readyz", 0, {{"GET", svc_handle_readyz, SVC_BODY_NONE}}},
    {"/metrics", 0, {{"GET", svc_handle_metrics, SVC_BODY_NONE}}},
    {"/openapi.yaml", 0, {{"GET", svc_handle_openapi, SVC_BODY_NONE}}},
    {"/v2", 0, {{"GET", svc_handle_v2_server, SVC_BODY_NONE}}},
    {"/v2/health/live", 0, {{"GET", svc_handle_v2_live, SVC_BODY_NONE}}},
    {"/v2/health/ready", 0, {{"GET", svc_handle_v2_ready, SVC_BODY_NONE}}},
    {"/v2/models/{model_name}", 0, {{"GET", svc_handle_v2_model, SVC_BODY_NONE}}},
    {"/v2/models/{model_name}/ready", 0, {{"GET", svc_handle_v2_model_ready, SVC_BODY_NONE}}},
    {"/v2/models/{model_name}/infer", SVC_ROUTE_WORK,
     {{"POST", svc_handle_v2_infer, SVC_BODY_OIP}}},
};

const int svc_route_count = (int)(sizeof svc_routes / sizeof svc_routes[0]);
