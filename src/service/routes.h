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

/* The Open Inference Protocol (handlers_v2.c, job_oip.c). */
void svc_handle_v2_server(struct svc_request *req);      /* GET /v2 */
void svc_handle_v2_live(struct svc_request *req);        /* GET /v2/health/live */
void svc_handle_v2_ready(struct svc_request *req);       /* GET /v2/health/ready */
void svc_handle_v2_model(struct svc_request *req);       /* GET /v2/models/{model_name} */
void svc_handle_v2_model_ready(struct svc_request *req); /* GET /v2/models/{model_name}/ready */
void svc_handle_v2_infer(struct svc_request *req);       /* POST /v2/models/{model_name}/infer */
/*
 * Header time of a SVC_BODY_OIP request (from svc_request_begin): checks
 * the model name, the content type (application/octet-stream,
 * application/json or none) and Inference-Header-Content-Length, sets the
 * body limit and the body's alignment offset.  Returns 0, or -1 when it has
 * set an error answer.
 */
int svc_oip_begin(struct svc_request *req);
/*
 * Header time of POST /v1/loss, once the request is accepted (job_loss.c):
 * the codec's scan stores the upload, decoding long b64 strings as they
 * arrive, so the parse finds them done.  Never fails: without memory the
 * body is stored as sent and the parse scans it at the end.
 */
void svc_loss_begin(struct svc_request *req);

#endif
