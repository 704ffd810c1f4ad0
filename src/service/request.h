/*
 * request.h - one HTTP request from its headers to its answer: routing,
 * the header-time checks (method, draining, content type, body limits),
 * the body read into one buffer, the hand-off of work to the pool with the
 * connection suspended, and the answer.  A request is touched by the HTTP
 * thread, except while it is suspended (SVC_REQ_WAITING), when only its
 * job touches body and response.  A job started while the body still
 * arrives (job_split.h, streaming) reads only the bytes the HTTP thread has
 * declared complete and writes only the response, which the HTTP thread
 * leaves alone until the body is done.
 */
#ifndef SVC_REQUEST_H
#define SVC_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "response.h"
#include "router.h"

struct MHD_Connection;
struct svc_job;

typedef enum svc_req_state {
    SVC_REQ_BODY = 0, /* reading the body (or waiting for the end of an empty one) */
    SVC_REQ_DISCARD,  /* answer set; the rest of the body is read and dropped */
    SVC_REQ_RESPOND,  /* answer set, to be queued now */
    SVC_REQ_WAITING,  /* suspended while a job runs; resumed with the answer set */
    SVC_REQ_QUEUED,   /* answer queued */
    SVC_REQ_ABORT     /* close the connection without an answer */
} svc_req_state;

typedef struct svc_request {
    svc_app *app;
    struct MHD_Connection *conn;
    char method[16];          /* truncated copy, for the log */
    char *path;               /* malloc'ed copy of the decoded path */
    svc_route_match match;    /* route, method and {params} */
    const svc_route *route;   /* NULL when no route matched */
    int handler_index;        /* metrics label index */

    svc_body_kind body_kind;
    uint64_t limit;           /* largest body accepted, bytes */
    uint64_t content_length;  /* valid when has_length */
    int has_length, chunked, expect_100;
    char *body;               /* malloc'ed block holding the body; NULL when empty */
    size_t body_offset;       /* the body's first byte is body[body_offset] (an alignment
                               * pad, set at header time; 0 except on /v2 inference) */
    size_t body_len, body_cap; /* bytes stored and room, both counted from body_offset */
    uint64_t bytes_in;        /* body bytes received, stored or not */

    svc_req_state state;
    svc_response response;
    uint64_t t_start_ns;
    int in_flight;            /* counted in the in-flight gauge */

    /*
     * Set by a handler at header time to follow the upload (HTTP thread):
     * on_progress after each stored chunk; on_abandon when the connection
     * ends before the request has an answer queued, returning 1 when it
     * takes over freeing the request (a job still running), else 0.
     * on_store, when set, stores each chunk (n bytes at body + body_offset +
     * body_len, room made) instead of a plain copy.
     */
    void (*on_progress)(struct svc_request *req);
    void (*on_store)(struct svc_request *req, const char *data, size_t n);
    int (*on_abandon)(struct svc_request *req);
    void *hook_data;
} svc_request;

/* HTTP thread, at header time: follows the upload with these hooks and their data. */
void svc_request_follow(svc_request *req, void (*on_progress)(svc_request *),
                        int (*on_abandon)(svc_request *), void *data);
/* HTTP thread: stops following the upload; returns the hooks' data, now the caller's. */
void *svc_request_unfollow(svc_request *req);

/* HTTP thread: a request whose headers have arrived; NULL when out of memory. */
svc_request *svc_request_new(svc_app *app, struct MHD_Connection *conn, const char *method,
                             const char *url);
void svc_request_free(svc_request *req);
/* Frees the body early (its bytes are no longer read nor written); the request lives on. */
void svc_request_free_body(svc_request *req);

/* HTTP thread: the header-time checks; may set an answer (state DISCARD/RESPOND). */
void svc_request_begin(svc_request *req);
/* HTTP thread: n body bytes arrived. */
void svc_request_data(svc_request *req, const char *data, size_t n);
/* HTTP thread: the body is complete; runs the route's handler. */
void svc_request_body_done(svc_request *req);

/* Handlers: answer with an error (status from the one table). */
void svc_request_fail(svc_request *req, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Handlers: the answer is set in req->response; queue it now. */
void svc_request_respond(svc_request *req);
/*
 * Handlers: runs job on the pool with the connection suspended; when the
 * pool is full, answers 503 overloaded instead (and job is not used).
 * The job's complete callback must end with svc_request_resume().
 */
void svc_request_dispatch(svc_request *req, struct svc_job *job);
/* HTTP thread: suspends the connection while a job runs (state WAITING). */
void svc_request_suspend(svc_request *req);
/* Loop thread, job complete: req->response is set; wakes the connection. */
void svc_request_resume(svc_request *req);

/*
 * 1 when the client is on this host: its address is a loopback one or the
 * connection's own local address (it connected to one of our addresses
 * from the same machine), else 0, also when either is unknown.
 */
int svc_request_client_is_local(const svc_request *r);

/* A request header's value, or NULL. */
const char *svc_request_header(const svc_request *req, const char *name);
/* A query argument's value, or NULL. */
const char *svc_request_query(const svc_request *req, const char *name);

#endif
