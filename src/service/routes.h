/*
 * routes.h - the service's route table (routes.c) and the handlers it
 * names.  Each endpoint is one row; /v2 endpoints join as rows too.
 */
#ifndef SVC_ROUTES_H
#define SVC_ROUTES_H

#include "router.h"

extern const svc_route svc_routes[];
extern const int svc_route_count;
/* Metrics label of requests that matched no route. */
#define SVC_HANDLER_UNMATCHED "unmatched"

struct svc_request;
void svc_handle_loss(struct svc_request *req);         /* POST /v1/loss */
void svc_handle_anchors(struct svc_request *req);      /* GET /v1/anchors/{preset} */
void svc_handle_livez(struct svc_request *req);        /* GET /livez */
void svc_handle_readyz(struct svc_request *req);       /* GET /readyz */
void svc_handle_metrics(struct svc_request *req);      /* GET /metrics */
void svc_handle_openapi(struct svc_request *req);      /* GET /openapi.yaml */

#endif
