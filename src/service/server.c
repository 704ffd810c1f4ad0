/*
 * server.c - libmicrohttpd glue (see server.h).  The access handler is
 * the only place answers are queued; work never runs on the HTTP thread
 * beyond routing, header checks, copying the body and small answers
 * (health, metrics, the embedded spec).
 *
 * Hostile clients: libmicrohttpd bounds the open connections (in all and
 * per address), closes a connection idle for --request-timeout, and keeps
 * each connection's headers in a fixed memory pool.  What it lacks is a
 * deadline for the headers themselves: a client trickling one byte every
 * few seconds is never idle.  The header watchdog here adds it: every
 * connection waiting for a request's headers (from its accept, or from the
 * end of its previous answer) is shut down once it has waited longer than
 * --header-timeout.  At start-up the open-files limit is raised to its
 * hard limit so the connection limit can be met.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "affinity.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "request.h"
#include "tls.h"

/* libmicrohttpd's per-connection memory: headers plus the read buffer that
 * upload data arrives in; larger means fewer handler calls for big bodies. */
#define CONNECTION_MEMORY ((size_t)256 << 10)
/* File descriptors kept for everything but client connections (the
 * listening socket, epoll, libuv's loop and pool, logs, files). */
#define FD_RESERVE 64
/* The watchdog looks at the waiting connections this often at most. */
#define WATCHDOG_PERIOD_NS ((uint64_t)250 * 1000000u)
/* At most one log line per this many seconds about connections cut. */
#define WATCHDOG_LOG_PERIOD_NS ((uint64_t)10 * 1000000000u)
/* At the drain, connections still in the listen backlog are accepted and
 * served (at most this many), and the drain waits at least this long, so
 * that requests on connections just accepted arrive. */
#define ADOPT_MAX 4096
#define ADOPT_GRACE_NS ((uint64_t)250 * 1000000u)
/* A libmicrohttpd message repeated within this is counted, not logged. */
#define MHD_LOG_REPEAT_NS ((uint64_t)10 * 1000000000u)

/* One open connection, as the header watchdog sees it. */
typedef struct conn_track {
    struct conn_track *prev, *next;
    MHD_socket fd;
    uint64_t since_ns; /* start of the current wait for headers */
    int waiting;       /* 1 while waiting for a request's headers */
    int cut;           /* 1 once shut down by the watchdog */
} conn_track;

struct svc_server {
    svc_app *app;
    struct MHD_Daemon *daemon;
    MHD_socket quiesced_fd;
    int port;
    atomic_llong in_flight;
    atomic_ullong adopt_grace_until_ns; /* see svc_server_in_flight; 0: none */
    /* HTTP thread only (place_http_thread). */
    int http_cpu;                /* the CPU it is kept on; -1: not kept (--pin-http) */
    int http_placed;             /* 1 once it has been put on http_cpu */
    int http_free;               /* 1: left to the scheduler until http_free_until_ns */
    uint64_t http_free_until_ns;
    int http_schedstat_fd;       /* its /proc/thread-self/schedstat; -1: not yet open */
    uint64_t http_look_ns, http_waited_ns; /* at the last look: time, run-queue wait */

    /* Header watchdog.  The list holds every open connection; mu guards it
     * and the tracks' fields.  libmicrohttpd closes a socket only after
     * its CLOSED notification, which takes mu, so a socket in the list is
     * always open. */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    conn_track *conns;
    uint64_t header_timeout_ns;
    int watchdog_started, watchdog_stop;
    pthread_t watchdog;
    uint64_t cut_total, cut_logged, last_log_ns;

    /* libmicrohttpd's last message, to fold repeats (on_mhd_log). */
    pthread_mutex_t log_mu;
    char log_last[512];
    uint64_t log_last_ns, log_repeats;
};

/* Marks the connection of conn as waiting for headers (1) or not (0). */
static void track_set_waiting(svc_server *s, struct MHD_Connection *conn, int waiting)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_track *t = ci ? ci->socket_context : NULL;
    if (!t)
        return;
    pthread_mutex_lock(&s->mu);
    t->waiting = waiting;
    t->since_ns = svc_now_ns();
    pthread_mutex_unlock(&s->mu);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    svc_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_track *t = ci ? calloc(1, sizeof *t) : NULL;
        *socket_context = t;
        if (!t)
            return; /* not watched: only the idle timeout applies */
        t->fd = ci->connect_fd;
        t->since_ns = svc_now_ns();
        t->waiting = 1;
        pthread_mutex_lock(&s->mu);
        t->next = s->conns;
        if (s->conns)
            s->conns->prev = t;
        s->conns = t;
        pthread_mutex_unlock(&s->mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_track *t = *socket_context;
        *socket_context = NULL;
        if (!t)
            return;
        pthread_mutex_lock(&s->mu);
        if (t->prev)
            t->prev->next = t->next;
        else
            s->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&s->mu);
        free(t);
    }
}

/*
 * The watchdog thread: shuts down (both directions) every connection that
 * has waited for headers longer than the header timeout; libmicrohttpd
 * then sees the end of the stream and closes it as usual.
 */
static void *watchdog_main(void *arg)
{
    svc_server *s = arg;
    uint64_t period = s->header_timeout_ns / 4;
    if (period > WATCHDOG_PERIOD_NS)
        period = WATCHDOG_PERIOD_NS;
    if (period < 1000000u)
        period = 1000000u;
    pthread_mutex_lock(&s->mu);
    while (!s->watchdog_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + period;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&s->wake, &s->mu, &until);
        if (s->watchdog_stop)
            break;
        uint64_t now = svc_now_ns();
        for (conn_track *t = s->conns; t; t = t->next) {
            if (t->waiting && !t->cut && now - t->since_ns > s->header_timeout_ns) {
                shutdown(t->fd, SHUT_RDWR);
                t->cut = 1;
                s->cut_total++;
            }
        }
        if (s->cut_total > s->cut_logged && now - s->last_log_ns > WATCHDOG_LOG_PERIOD_NS) {
            uint64_t n = s->cut_total - s->cut_logged;
            s->cut_logged = s->cut_total;
            s->last_log_ns = now;
            pthread_mutex_unlock(&s->mu);
            svc_log_warn("closed %llu connections that sent no complete request headers "
                         "within %gs (%llu since start)",
                         (unsigned long long)n, (double)s->header_timeout_ns * 1e-9,
                         (unsigned long long)s->cut_logged);
            pthread_mutex_lock(&s->mu);
        }
    }
    uint64_t unlogged = s->cut_total - s->cut_logged;
    pthread_mutex_unlock(&s->mu);
    if (unlogged)
        svc_log_warn("closed %llu connections that sent no complete request headers within "
                     "%gs (not logged before)",
                     (unsigned long long)unlogged, (double)s->header_timeout_ns * 1e-9);
    return NULL;
}

/*
 * Raises the soft open-files limit to the hard one and returns how many
 * client connections the result leaves room for.
 */
static int connection_room(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1 << 20;
    if (rl.rlim_cur != RLIM_INFINITY && (rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max)) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl = want;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > ((rlim_t)1 << 30))
        return 1 << 30;
    long room = (long)rl.rlim_cur - FD_RESERVE;
    return room < 1 ? 1 : (int)room;
}

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

/*
 * A kept HTTP thread that waited on its CPU's run queue for more than this
 * share of the time between two looks, with its client elsewhere, shares
 * that CPU with another busy process: it is then left to the scheduler for
 * HTTP_FREE_NS.  (A busy loop on that CPU made batch-32 answers 1.6x
 * slower; with this, 0.94 to 1.13x the time of a thread never kept.  Kept
 * again sooner, after 1 s or at every request, 1.2 to 1.3x: each such
 * request is read beside the loop until the next look.)
 */
#define HTTP_CONTENDED_SHARE 0.25
#define HTTP_FREE_NS ((uint64_t)2000 * 1000000u)

/* The CPU on which conn's last packets were taken, or -1. */
static int client_cpu(struct MHD_Connection *conn)
{
    int cpu = -1;
#ifdef SO_INCOMING_CPU
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    socklen_t len = sizeof cpu;
    if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len) != 0)
        cpu = -1;
#else
    (void)conn;
#endif
    return cpu;
}

/* HTTP thread: the time it has spent waiting on a run queue (schedstat), 0 if unknown. */
static uint64_t http_run_queue_wait_ns(svc_server *s)
{
    if (s->http_schedstat_fd == -1) { /* -2: tried, not there */
        s->http_schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        if (s->http_schedstat_fd < 0)
            s->http_schedstat_fd = -2;
    }
    char text[96];
    ssize_t n = s->http_schedstat_fd >= 0 ? pread(s->http_schedstat_fd, text, sizeof text - 1, 0)
                                          : -1;
    if (n <= 0)
        return 0;
    text[n] = '\0';
    unsigned long long run, wait;
    return sscanf(text, "%llu %llu", &run, &wait) == 2 ? (uint64_t)wait : 0;
}

/*
 * HTTP thread, when kept on a CPU (--pin-http), at a request's headers
 * (start 1) and at each MiB of its body, while the request is alone on the
 * server (under load the moves would chase many clients):
 *  - it moves to the other of its two CPUs when conn's packets are taken on
 *    the one it is on.  For a local client that is the client's own CPU
 *    (loopback packets are processed by the sender), and a client and the
 *    thread reading its upload, waking each other, were otherwise often left
 *    taking turns on one CPU (affinity.h);
 *  - it lets the scheduler place it for HTTP_FREE_NS when it waited for its
 *    CPU (HTTP_CONTENDED_SHARE) with the client elsewhere; the first
 *    request after that starts on that CPU again.
 */
static void place_http_thread(svc_server *s, struct MHD_Connection *conn, int start)
{
    if (s->http_cpu < 0)
        return;
    if (!s->http_placed) { /* libmicrohttpd's thread, at its first request */
        s->http_placed = 1;
        if (svc_affinity_set_self(&s->http_cpu, 1) != 0) {
            s->http_cpu = -1;
            return;
        }
    }
    if (atomic_load(&s->in_flight) != 1)
        return;
    const uint64_t now = svc_now_ns();
    if (s->http_free) { /* no look while free: the share is measured from the next keep */
        if (!start || now < s->http_free_until_ns ||
            svc_affinity_set_self(&s->http_cpu, 1) != 0)
            return;
        s->http_free = 0;
    }
    const uint64_t waited = http_run_queue_wait_ns(s);
    const double share = waited >= s->http_waited_ns && now > s->http_look_ns
                             ? (double)(waited - s->http_waited_ns) / (double)(now - s->http_look_ns)
                             : 0;
    s->http_look_ns = now;
    s->http_waited_ns = waited;
    const int cpu = client_cpu(conn);
    if (cpu == s->http_cpu) {
        const int *two = s->app->http_cpus;
        const int other = two[0] == cpu ? two[1] : two[0];
        if (other != cpu && svc_affinity_set_self(&other, 1) == 0)
            s->http_cpu = other;
    } else if (!start && share > HTTP_CONTENDED_SHARE && svc_affinity_free_self() == 0) {
        s->http_free = 1;
        s->http_free_until_ns = now + HTTP_FREE_NS;
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
        track_set_waiting(s, conn, 0);
        r = svc_request_new(s->app, conn, method, url);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->in_flight = 1;
        atomic_fetch_add(&s->in_flight, 1);
        place_http_thread(s, conn, 1);
        svc_request_begin(r);
        return respond_if_ready(r);
    }
    if (*upload_data_size > 0) {
        /* At each MiB of a body: the client may have come here since, or another process. */
        if ((r->bytes_in ^ (r->bytes_in + *upload_data_size)) >> 20)
            place_http_thread(s, conn, 0);
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
    (void)toe;
    track_set_waiting(s, conn, 1); /* a kept-alive connection waits for the next headers */
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
    if (r->on_abandon && r->on_abandon(r))
        return; /* a job still reads the request; it frees it when it ends */
    svc_request_free(r);
}

/*
 * libmicrohttpd's messages, as warnings.  A message repeated within
 * MHD_LOG_REPEAT_NS of its last line is counted instead of logged (a
 * client over the per-address limit would otherwise write a line per
 * connection); the count comes with its next line.
 */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    svc_server *s = cls;
    char msg[sizeof s->log_last];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    uint64_t now = svc_now_ns(), repeats = 0;
    pthread_mutex_lock(&s->log_mu);
    if (strcmp(msg, s->log_last) == 0 && now - s->log_last_ns < MHD_LOG_REPEAT_NS) {
        s->log_repeats++;
        pthread_mutex_unlock(&s->log_mu);
        return;
    }
    if (strcmp(msg, s->log_last) == 0)
        repeats = s->log_repeats;
    s->log_repeats = 0;
    s->log_last_ns = now;
    memcpy(s->log_last, msg, n + 1);
    pthread_mutex_unlock(&s->log_mu);
    if (repeats)
        svc_log_warn("libmicrohttpd: %s (and %llu times more before, not logged)", msg,
                     (unsigned long long)repeats);
    else
        svc_log_warn("libmicrohttpd: %s", msg);
}

/* Frees s once no thread uses it (its daemon stopped or never started). */
static void server_free(svc_server *s)
{
    if (s->http_schedstat_fd >= 0)
        close(s->http_schedstat_fd);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
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
    s->http_schedstat_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->log_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    s->header_timeout_ns = (uint64_t)(cfg->header_timeout_s * 1e9);

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
        server_free(s);
        return -1;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (cfg->tls)
        flags |= MHD_USE_TLS;
    double t = ceil(cfg->request_timeout_s);
    unsigned int timeout = t < 1 ? 1 : t > 86400 ? 86400 : (unsigned int)t;
    int room = connection_room(), max_conn = cfg->max_connections;
    if (max_conn > room) {
        svc_log_warn("--max-connections %d exceeds what the open-files limit allows; using %d",
                     max_conn, room);
        max_conn = room;
    }

    struct MHD_OptionItem opts[16];
    int n = 0;
#define OPT(o, v, p) opts[n++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (void *)(p)}
    OPT(MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s);
    OPT(MHD_OPTION_SOCK_ADDR, 0, res->ai_addr);
    OPT(MHD_OPTION_CONNECTION_TIMEOUT, timeout, NULL);
    OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_MEMORY, NULL);
    OPT(MHD_OPTION_CONNECTION_LIMIT, max_conn, NULL);
    OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip, NULL);
    OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, s);
    OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, s);
    if (cfg->tls) {
        OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls->cert_pem);
        OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->tls->key_pem);
    }
    OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
    s->http_cpu = app->http_cpus[0]; /* before the HTTP thread exists */
    /* MHD_OPTION_ARRAY: a callback goes in `value` (cast to intptr_t) with
     * its closure in `ptr_value`; a lone pointer goes in `ptr_value`. */
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
    freeaddrinfo(res);
    if (!s->daemon) {
        svc_log_error("cannot listen on %s:%d (address in use or not available%s?)",
                      cfg->listen_host, cfg->listen_port,
                      cfg->tls ? ", or the TLS certificate and key do not fit" : "");
        server_free(s);
        return -1;
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0)
        s->watchdog_started = 1;
    else
        svc_log_warn("cannot start the header watchdog: only the idle timeout applies");
    svc_log_info("http: %s, auth %s, max_connections=%d max_connections_per_ip=%d "
                 "header_timeout=%gs",
                 cfg->tls ? "https" : "plain http",
                 !cfg->auth ? "off"
                 : svc_auth_protects_health(cfg->auth) ? "bearer on every path"
                                                       : "bearer (health, metrics and spec open)",
                 max_conn, cfg->max_connections_per_ip, cfg->header_timeout_s);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->listen_port;
    *out = s;
    return 0;
}

int svc_server_port(const svc_server *s)
{
    return s->port;
}

/*
 * Connections the kernel has completed but libmicrohttpd has not accepted
 * yet would be reset by the shutdown below: their clients could not tell
 * that from a crash.  They are accepted here and handed to libmicrohttpd,
 * so each gets an answer (503 draining on the work routes).  Returns how
 * many were handed over.
 */
static int adopt_backlog(svc_server *s)
{
    int n = 0, fl = fcntl(s->quiesced_fd, F_GETFL);
    if (fl < 0 || fcntl(s->quiesced_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return 0;
    for (int i = 0; i < ADOPT_MAX; i++) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd = accept4(s->quiesced_fd, (struct sockaddr *)&addr, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* EAGAIN: the backlog is empty */
        }
        /* libmicrohttpd closes fd itself when it cannot take it. */
        if (MHD_add_connection(s->daemon, fd, (struct sockaddr *)&addr, len) == MHD_YES)
            n++;
    }
    return n;
}

void svc_server_quiesce(svc_server *s)
{
    if (!s || s->quiesced_fd != MHD_INVALID_SOCKET)
        return;
    s->quiesced_fd = MHD_quiesce_daemon(s->daemon);
    if (s->quiesced_fd == MHD_INVALID_SOCKET)
        return;
    /* Connections accepted just before, and those taken from the backlog,
     * get a moment for their request to arrive (svc_server_in_flight). */
    atomic_store(&s->adopt_grace_until_ns, svc_now_ns() + ADOPT_GRACE_NS);
    int adopted = adopt_backlog(s);
    if (adopted > 0)
        svc_log_info("drain: %d connections waiting to be accepted are served", adopted);
    /* The socket stays open until the stop (libmicrohttpd's rule), but it
     * stops listening now: new connections are refused at once instead of
     * waiting in the backlog, so load balancers move on quickly. */
    shutdown(s->quiesced_fd, SHUT_RDWR);
}

int64_t svc_server_in_flight(const svc_server *s)
{
    if (!s)
        return 0;
    svc_server *m = (svc_server *)s;
    int64_t n = atomic_load(&m->in_flight);
    /* From the drain's start, new connections (accepted just before it or
     * adopted from the backlog) count as one request until theirs has had
     * time to arrive. */
    uint64_t grace = atomic_load(&m->adopt_grace_until_ns);
    if (grace && svc_now_ns() < grace)
        n++;
    return n;
}

void svc_server_stop(svc_server *s)
{
    if (!s)
        return;
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->mu);
        s->watchdog_stop = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->watchdog, NULL);
    }
    MHD_stop_daemon(s->daemon);
    /* The listening socket handed back by quiesce is ours to close, after the stop. */
    if (s->quiesced_fd != MHD_INVALID_SOCKET)
        close(s->quiesced_fd);
    server_free(s);
}
