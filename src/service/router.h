/*
 * router.h - the route table type and its matcher.  A route is a path
 * pattern whose "{name}" segments match any one non-empty segment, with
 * up to SVC_ROUTE_MAX_METHODS methods, each with its handler and the kind
 * of body it reads.  Adding an endpoint is adding one row to the table in
 * routes.c.  Matching is pure and thread-safe.
 */
#ifndef SVC_ROUTER_H
#define SVC_ROUTER_H

#include <stddef.h>

struct svc_request;
typedef void (*svc_handler_fn)(struct svc_request *req);

typedef enum svc_body_kind {
    SVC_BODY_NONE = 0, /* no body expected; a small one is read and ignored */
    SVC_BODY_JSON,     /* JSON text: application/json, --max-json-body-bytes */
    SVC_BODY_BINARY,   /* any bytes: --max-body-bytes */
    SVC_BODY_OIP,      /* /v2 inference: JSON header + binary tensors; content type,
                        * limits and buffer alignment from svc_oip_begin (job_oip.c) */
    SVC_BODY_LOSS      /* /v1/loss: as SVC_BODY_JSON, stored by the codec's scan, which
                        * decodes long b64 strings as they arrive (svc_loss_begin) */
} svc_body_kind;

/* Route flags. */
enum {
    SVC_ROUTE_WORK = 1 /* runs a job on the pool: 503 while draining */
};

#define SVC_ROUTE_MAX_METHODS 3
#define SVC_ROUTE_MAX_PARAMS 2
#define SVC_ROUTE_PARAM_MAX 128 /* longer segments do not match */

typedef struct svc_method {
    const char *method;     /* "GET", "POST", ...; NULL ends the list */
    svc_handler_fn handler; /* runs on the HTTP thread once the body is in */
    svc_body_kind body;
} svc_method;

typedef struct svc_route {
    const char *pattern; /* "/v1/anchors/{preset}"; also the metrics handler label */
    int flags;           /* SVC_ROUTE_* */
    svc_method methods[SVC_ROUTE_MAX_METHODS];
} svc_route;

typedef struct svc_route_match {
    int route;                /* index into the table, -1 when no pattern matched */
    const svc_method *method; /* NULL when the route has no such method (405) */
    int nparams;
    char params[SVC_ROUTE_MAX_PARAMS][SVC_ROUTE_PARAM_MAX]; /* "{name}" values, in order */
} svc_route_match;

/* Matches method and path against routes[0..n); fills *m. */
void svc_router_match(const svc_route *routes, int n, const char *method, const char *path,
                      svc_route_match *m);

/* Writes the route's methods as an Allow header value ("GET, POST"). */
void svc_router_allow(const svc_route *route, char *out, size_t cap);

#endif
