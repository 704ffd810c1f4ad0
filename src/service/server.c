/*
 * server.c - libmicrohttpd glue (see server.h).  The access handler is
 * the only place answers are queued; work never runs on the HTTP thread
 * beyond routing, header checks, copying the body and small answers
 * (health, metrics, the embedded spec).
 */
#include "server.h"

#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "request.h"

/* libmicrohttpd's per-connection memory: headers plus the read buffer that
 * upload data arrives in; larger means fewer handler calls for big bodies. */
#define CONNECTION_MEMORY ((size_t)256 << 10)

struct svc_server {
    svc_app *app;
    struct MHD_Daemon *daemon;
    MHD_socket quiesced_fd;
    int port;
    atomic_llong in_flight;
};

/* Queues the answer if one is ready; tells libmicrohttpd how to go on. */
static enum MHD_Result respond_if_ready(svc_request *r)
{
    switch (r->state) {
    case SVC_REQ_RESPOND:
        r->state = SVC_REQ_QUEUED;
        /* While draining, every answer closes its connection: the client's
         * next request then goes to a fresh connection (refused here, so a
         * balancer retries elsewhere) instead of getting 503 draining. */
        if (atomic_load(&r->app->draining))
            r->response.close = 1;
        return (enum MHD_Result)svc_response_queue(r->conn, &r->response);
    case SVC_REQ_ABORT:
        return MHD_NO;
    default:
        return MHD_YES;
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    svc_server *s = cls;
    svc_request *r = *con_cls;
    (void)version;

    if (!r) { /* first call: the headers are in */
        r = svc_request_new(s->app, conn, method, url);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->in_flight = 1;
        atomic_fetch_add(&s->in_flight, 1);
        svc_request_begin(r);
        return respond_if_ready(r);
    }
    if (*upload_data_size > 0) {
        svc_request_data(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return respond_if_ready(r);
    }
    switch (r->state) {
    case SVC_REQ_BODY:
    case SVC_REQ_DISCARD:
        svc_request_body_done(r); /* may suspend (WAITING) */
        break;
    case SVC_REQ_WAITING: /* resumed: the job has set the answer */
        r->state = SVC_REQ_RESPOND;
        break;
    default:
        break;
    }
    return respond_if_ready(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    svc_server *s = cls;
    svc_request *r = *con_cls;
    (void)conn;
    (void)toe;
    if (!r)
        return;
    *con_cls = NULL;
    double seconds = (double)(svc_now_ns() - r->t_start_ns) * 1e-9;
    int status = r->state == SVC_REQ_QUEUED ? r->response.status : 0;
    uint64_t out = status ? (uint64_t)r->response.len : 0;
    if (status)
        svc_metrics_observe_request(s->app->metrics, r->handler_index, status, r->bytes_in, out,
                                    seconds);
    svc_log_request(r->method, r->path, status, r->bytes_in, out, seconds);
    if (r->in_flight)
        atomic_fetch_sub(&s->in_flight, 1);
    svc_request_free(r);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    svc_log_warn("libmicrohttpd: %s", msg);
}

int svc_server_start(svc_server **out, svc_app *app)
{
    *out = NULL;
    const svc_config *cfg = &app->cfg;
    svc_server *s = calloc(1, sizeof *s);
    if (!s) {
        svc_log_error("out of memory");
        return -1;
    }
    s->app = app;
    s->quiesced_fd = MHD_INVALID_SOCKET;

    char port[8];
    snprintf(port, sizeof port, "%d", cfg->listen_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(cfg->listen_host, port, &hints, &res);
    if (rc != 0 || !res) {
        svc_log_error("cannot resolve listen address %s: %s", cfg->listen_host,
                      gai_strerror(rc));
        free(s);
        return -1;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    double t = ceil(cfg->request_timeout_s);
    unsigned int timeout = t < 1 ? 1 : t > 86400 ? 86400 : (unsigned int)t;
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                                 MHD_OPTION_SOCK_ADDR, res->ai_addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_END);
    freeaddrinfo(res);
    if (!s->daemon) {
        svc_log_error("cannot listen on %s:%d (address in use or not available?)",
                      cfg->listen_host, cfg->listen_port);
        free(s);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->listen_port;
    *out = s;
    return 0;
}

int svc_server_port(const svc_server *s)
{
    return s->port;
}

void svc_server_quiesce(svc_server *s)
{
    if (!s || s->quiesced_fd != MHD_INVALID_SOCKET)
        return;
    s->quiesced_fd = MHD_quiesce_daemon(s->daemon);
    /* The socket stays open until the stop (libmicrohttpd's rule), but it
     * stops listening now: new connections are refused at once instead of
     * waiting in the backlog, so load balancers move on quickly. */
    if (s->quiesced_fd != MHD_INVALID_SOCKET)
        shutdown(s->quiesced_fd, SHUT_RDWR);
}

int64_t svc_server_in_flight(const svc_server *s)
{
    return s ? atomic_load(&((svc_server *)s)->in_flight) : 0;
}

void svc_server_stop(svc_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon);
    /* The listening socket handed back by quiesce is ours to close, after the stop. */
    if (s->quiesced_fd != MHD_INVALID_SOCKET)
        close(s->quiesced_fd);
    free(s);
}
