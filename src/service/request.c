/*
 * request.c - a request's life on the HTTP thread (see request.h): the
 * header-time checks, the body buffer with its hard limit checked before
 * any byte is stored, the early answers, and the suspend/resume around a
 * job.  It never queues an answer itself: server.c does, from the access
 * handler.
 */
#include "request.h"

#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "auth.h"
#include "copy.h"
#include "multibox/multibox.h"
#include "pool.h"
#include "routes.h"

/* A rejected body at most this large is read and dropped, keeping the
 * connection usable and the answer readable by clients that send the body
 * without waiting for 100 Continue; a larger one gets the answer at once
 * and the connection is closed. */
#define DISCARD_MAX ((uint64_t)1 << 20)
/* Limit for a body sent to an endpoint that reads none. */
#define NO_BODY_LIMIT ((uint64_t)64 << 10)
/* First allocation for a body of unknown length (chunked). */
#define CHUNKED_START ((size_t)64 << 10)

svc_request *svc_request_new(svc_app *app, struct MHD_Connection *conn, const char *method,
                             const char *url)
{
    svc_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->path = strdup(url ? url : "");
    if (!r->path) {
        free(r);
        return NULL;
    }
    r->app = app;
    r->conn = conn;
    r->t_start_ns = svc_now_ns();
    snprintf(r->method, sizeof r->method, "%s", method ? method : "");
    /* Under /v2 every error, routed or not, has the protocol's own body. */
    r->response.v2 = strncmp(r->path, "/v2", 3) == 0 && (r->path[3] == '\0' || r->path[3] == '/');
    svc_router_match(svc_routes, svc_route_count, method ? method : "", r->path, &r->match);
    if (r->match.route >= 0) {
        r->route = &svc_routes[r->match.route];
        r->handler_index = r->match.route;
    } else {
        r->handler_index = svc_route_count; /* "unmatched" */
    }
    return r;
}

void svc_request_free(svc_request *r)
{
    if (!r)
        return;
    svc_response_clear(&r->response);
    free(r->body);
    free(r->path);
    free(r);
}

void svc_request_free_body(svc_request *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
}

const char *svc_request_header(const svc_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *svc_request_query(const svc_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* 1 when the Content-Type is application/json, parameters allowed. */
static int is_json_type(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return 0;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* 1 when the request still has body bytes to send. */
static int body_pending(const svc_request *r)
{
    return r->chunked || (r->has_length && r->content_length > 0);
}

void svc_request_fail(svc_request *r, int code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    svc_response_error(&r->response, code, "%s", message);

    if (r->state == SVC_REQ_BODY && r->bytes_in == 0 && !r->body) {
        /* At header time.  Without a body, answer in libmicrohttpd's next
         * call (answering in this one would close the connection).  With a
         * body to come, read and drop a small one; answer at once (and
         * close) when the client waits for 100 Continue or the body is
         * large. */
        if (body_pending(r) &&
            (r->expect_100 || !r->has_length || r->content_length > DISCARD_MAX)) {
            r->response.close = 1;
            r->state = SVC_REQ_RESPOND;
        } else {
            r->state = SVC_REQ_DISCARD;
        }
    } else {
        r->state = SVC_REQ_RESPOND;
    }
}

void svc_request_respond(svc_request *r)
{
    r->state = SVC_REQ_RESPOND;
}

void svc_request_begin(svc_request *r)
{
    svc_app *app = r->app;
    const char *cl = svc_request_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = svc_request_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *expect = svc_request_header(r, MHD_HTTP_HEADER_EXPECT);
    if (cl) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end != cl && *end == '\0') {
            r->has_length = 1;
            r->content_length = v;
        }
    }
    r->chunked = te && strcasestr(te, "chunked") != NULL;
    r->expect_100 = expect && strcasecmp(expect, "100-continue") == 0;
    r->state = SVC_REQ_BODY;
    r->limit = NO_BODY_LIMIT;

    if (svc_auth_reject(r)) /* 401: a token is configured, and missing or wrong */
        return;
    if (!r->route) {
        svc_request_fail(r, MBX_E_NOT_FOUND, "no such path: %s", r->path);
        return;
    }
    if (!r->match.method) {
        svc_request_fail(r, MBX_E_METHOD_NOT_ALLOWED, "%s not allowed on %s", r->method,
                         r->route->pattern);
        svc_router_allow(r->route, r->response.allow, sizeof r->response.allow);
        return;
    }
    if ((r->route->flags & SVC_ROUTE_WORK) && atomic_load(&app->draining)) {
        svc_request_fail(r, MBX_E_DRAINING, "server is shutting down");
        return;
    }

    r->body_kind = r->match.method->body;
    if (r->body_kind == SVC_BODY_JSON || r->body_kind == SVC_BODY_LOSS) {
        const char *ct = svc_request_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!is_json_type(ct)) {
            svc_request_fail(r, MBX_E_UNSUPPORTED_MEDIA_TYPE,
                             "content type \"%s\" is not application/json", ct ? ct : "");
            return;
        }
        r->limit = app->cfg.max_json_body_bytes < app->cfg.max_body_bytes
                       ? app->cfg.max_json_body_bytes
                       : app->cfg.max_body_bytes;
    } else if (r->body_kind == SVC_BODY_BINARY) {
        r->limit = app->cfg.max_body_bytes;
    } else if (r->body_kind == SVC_BODY_OIP) {
        if (svc_oip_begin(r) != 0)
            return; /* answered */
    }
    if (r->has_length && r->content_length > r->limit) {
        svc_request_fail(r, MBX_E_PAYLOAD_TOO_LARGE,
                         "body of %llu bytes exceeds the limit of %llu",
                         (unsigned long long)r->content_length, (unsigned long long)r->limit);
        return;
    }
    /* A client that waits for 100 Continue is told about a full queue before it uploads. */
    if ((r->route->flags & SVC_ROUTE_WORK) && r->expect_100 && !svc_pool_has_room(app->pool)) {
        svc_request_fail(r, MBX_E_OVERLOADED, "server is overloaded, retry later");
        return;
    }
    if (r->body_kind == SVC_BODY_LOSS)
        svc_loss_begin(r);
}

void svc_request_follow(svc_request *r, void (*on_progress)(svc_request *),
                        int (*on_abandon)(svc_request *), void *data)
{
    r->hook_data = data;
    r->on_progress = on_progress;
    r->on_abandon = on_abandon;
    r->on_store = NULL;
}

void *svc_request_unfollow(svc_request *r)
{
    void *data = r->hook_data;
    svc_request_follow(r, NULL, NULL, NULL);
    return data;
}

void svc_request_data(svc_request *r, const char *data, size_t n)
{
    r->bytes_in += n;
    if (r->state == SVC_REQ_DISCARD) {
        if (r->bytes_in > r->limit + DISCARD_MAX)
            r->state = SVC_REQ_ABORT; /* a client that ignores the answer: hang up */
        return;
    }
    if (r->state != SVC_REQ_BODY)
        return;
    /* The hard limit, checked before a byte is stored (bytes_in counts this chunk). */
    if (r->bytes_in > r->limit) {
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        svc_request_fail(r, MBX_E_PAYLOAD_TOO_LARGE, "body exceeds the limit of %llu bytes",
                         (unsigned long long)r->limit);
        r->state = SVC_REQ_DISCARD;
        return;
    }
    if (r->body_kind == SVC_BODY_NONE)
        return; /* read and ignored */
    if (r->body_len + n > r->body_cap) {
        size_t cap;
        if (r->has_length) {
            cap = (size_t)r->content_length; /* exactly, once */
        } else {
            cap = r->body_cap ? r->body_cap : CHUNKED_START;
            while (cap < r->body_len + n)
                cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            if (cap > r->limit)
                cap = (size_t)r->limit;
        }
        if (cap < r->body_len + n)
            cap = r->body_len + n;
        char *p = realloc(r->body, r->body_offset + cap);
        if (!p) {
            free(r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            svc_request_fail(r, MBX_E_OUT_OF_MEMORY, "cannot hold a body of %llu bytes",
                             (unsigned long long)(r->has_length ? r->content_length
                                                                : r->bytes_in));
            r->state = SVC_REQ_DISCARD;
            return;
        }
        r->body = p;
        r->body_cap = cap;
    }
    if (r->on_store)
        r->on_store(r, data, n);
    else if (r->on_progress) /* streamed: the workers read these bytes next, from the caches */
        memcpy(r->body + r->body_offset + r->body_len, data, n);
    else
        svc_copy_stream(r->body + r->body_offset + r->body_len, data, n);
    r->body_len += n;
    if (r->on_progress)
        r->on_progress(r);
}

void svc_request_body_done(svc_request *r)
{
    if (r->state == SVC_REQ_DISCARD) {
        r->state = SVC_REQ_RESPOND;
        return;
    }
    if (r->state != SVC_REQ_BODY)
        return;
    r->match.method->handler(r);
    if (r->state == SVC_REQ_BODY) /* a handler that set no answer */
        svc_request_fail(r, MBX_E_INTERNAL, "handler gave no answer");
}

void svc_request_dispatch(svc_request *r, struct svc_job *job)
{
    svc_pool *pool = r->app->pool;
    if (svc_pool_reserve(pool) != 0) {
        svc_request_fail(r, MBX_E_OVERLOADED, "server is overloaded, retry later");
        return;
    }
    /* Suspend before the job can finish and resume. */
    svc_request_suspend(r);
    svc_pool_enqueue(pool, job);
}

void svc_request_suspend(svc_request *r)
{
    r->state = SVC_REQ_WAITING;
    MHD_suspend_connection(r->conn);
}

void svc_request_resume(svc_request *r)
{
    /* After this call the HTTP thread owns r again and may free it at once. */
    MHD_resume_connection(r->conn);
}

/* 1 when a is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
static int is_loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)a;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)(const void *)a)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(in6) || (IN6_IS_ADDR_V4MAPPED(in6) && in6->s6_addr[12] == 127);
    }
    return 0;
}

/* 1 when a and b hold the same IP address (ports aside). */
static int same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)(const void *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return 0;
}

int svc_request_client_is_local(const svc_request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return 0;
    struct sockaddr_storage peer, local;
    socklen_t pl = sizeof peer, ll = sizeof local;
    if (getpeername(ci->connect_fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(ci->connect_fd, (struct sockaddr *)&local, &ll) != 0)
        return 0;
    return is_loopback(&peer) || same_address(&peer, &local);
}
