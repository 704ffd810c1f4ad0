/*
 * app.h - the running service as one object: configuration, the libuv
 * loop (run by the main thread), the worker pool, the HTTP server, the
 * metrics and the life-cycle flags.  Handlers reach everything through
 * svc_request->app.  The flags are atomics: the HTTP thread reads what the
 * loop thread writes.
 */
#ifndef SVC_APP_H
#define SVC_APP_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

struct svc_pool;
struct svc_server;
struct svc_metrics;
struct svc_anchor_cache;

typedef struct svc_app {
    svc_config cfg;
    uv_loop_t loop;
    struct svc_pool *pool;
    struct svc_server *server;
    struct svc_metrics *metrics;
    struct svc_anchor_cache *anchors; /* filled during start-up, read-only once ready */
    atomic_int ready;          /* 1 once start-up has ended */
    atomic_int draining;       /* 1 from the first SIGTERM/SIGINT */
    atomic_ullong heartbeat_ns; /* last tick of the loop thread (svc_now_ns) */

    /* Loop-thread handles and state. */
    uv_signal_t sigterm, sigint;
    uv_timer_t heartbeat, drain_poll, drain_deadline;
    int exit_code;

    /* The CPUs of the HTTP thread (--pin-http), set before the server
     * starts: it starts on the first and may move between the two
     * (server.c, place_http_thread); -1: free to run anywhere. */
    int http_cpus[2];
} svc_app;

/* Runs the service with cfg until it has drained; returns the exit status. */
int svc_app_run(const svc_config *cfg);

/* The metrics handler labels, indexed like the route table plus "unmatched". */
int svc_app_handler_count(void);

#endif
