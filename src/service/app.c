/*
 * app.c - start-up, the loop thread and the drain.
 *
 * Start-up: size libuv's pool from --workers (before its first use), bind
 * and start the HTTP thread, log the bound address, then fill the anchor
 * cache on the workers; /readyz turns 200 when that is done.  The main
 * thread runs the libuv loop: the pool's queue, the heartbeat /livez
 * watches (which also gives free memory back once idle, memory.c), and
 * SIGTERM/SIGINT through uv_signal (no work in a signal handler).  Drain:
 * /readyz turns 503 at once, the listening socket stops accepting,
 * requests already received are answered, then the loop ends and the
 * process exits 0; after --drain-timeout it exits 1 regardless.
 */
#include "app.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "affinity.h"
#include "anchor_cache.h"
#include "log.h"
#include "memory.h"
#include "metrics.h"
#include "pool.h"
#include "routes.h"
#include "server.h"

#ifndef MBX_SERVICE_VERSION
#define MBX_SERVICE_VERSION MBX_VERSION_STRING
#endif

#define HEARTBEAT_MS 250
#define DRAIN_POLL_MS 5

int svc_app_handler_count(void)
{
    return svc_route_count + 1;
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Closes every handle of the loop so uv_run returns. */
static void stop_loop(svc_app *app)
{
    close_handle((uv_handle_t *)&app->sigterm);
    close_handle((uv_handle_t *)&app->sigint);
    close_handle((uv_handle_t *)&app->heartbeat);
    close_handle((uv_handle_t *)&app->drain_poll);
    close_handle((uv_handle_t *)&app->drain_deadline);
    svc_pool_close(app->pool);
}

static void on_heartbeat(uv_timer_t *t)
{
    svc_app *app = t->data;
    atomic_store(&app->heartbeat_ns, svc_now_ns());
    svc_memory_tick(svc_pool_admitted(app->pool) == 0 && svc_server_in_flight(app->server) == 0);
}

static void on_drain_poll(uv_timer_t *t)
{
    svc_app *app = t->data;
    if (svc_server_in_flight(app->server) == 0 && svc_pool_admitted(app->pool) == 0) {
        svc_log_info("drained: every request answered, exiting");
        app->exit_code = 0;
        stop_loop(app);
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    svc_app *app = t->data;
    svc_log_error("drain timeout (%gs) with %lld requests in flight: exiting now",
                  app->cfg.drain_timeout_s, (long long)svc_server_in_flight(app->server));
    _exit(1);
}

static void on_signal(uv_signal_t *h, int signum)
{
    svc_app *app = h->data;
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (atomic_load(&app->draining)) {
        if (signum == SIGINT) {
            svc_log_warn("second SIGINT while draining: exiting now");
            _exit(1);
        }
        svc_log_info("%s while draining: already draining", name);
        return;
    }
    atomic_store(&app->draining, 1);
    svc_log_info("%s: draining (%lld requests in flight, timeout %gs)", name,
                 (long long)svc_server_in_flight(app->server), app->cfg.drain_timeout_s);
    svc_server_quiesce(app->server);
    uv_timer_start(&app->drain_poll, on_drain_poll, 0, DRAIN_POLL_MS);
    double ms = app->cfg.drain_timeout_s * 1000.0;
    uv_timer_start(&app->drain_deadline, on_drain_deadline, (uint64_t)(ms < 0 ? 0 : ms), 0);
}

/* ------------------------------------------------------------- start-up */

typedef struct startup_job {
    svc_job job; /* first member */
    svc_app *app;
} startup_job;

static void startup_unit(svc_job *job, int unit)
{
    svc_anchor_cache_fill(((startup_job *)job)->app->anchors, unit);
}

static void startup_done(svc_job *job)
{
    svc_job_done(job);
}

static void startup_complete(svc_job *job)
{
    svc_app *app = ((startup_job *)job)->app;
    free(job);
    atomic_store(&app->ready, 1);
    svc_log_info("ready");
}

static void startup_start(svc_job *job)
{
    int n = ((startup_job *)job)->app->anchors->count;
    if (svc_job_phase(job, n > 0 ? n : 1, startup_unit, NULL, startup_done) != 0)
        svc_job_done(job); /* the cache stays empty: anchors are generated per request */
}

static int start_startup_job(svc_app *app)
{
    startup_job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->app = app;
    j->job.start = startup_start;
    j->job.complete = startup_complete;
    j->job.internal = 1;
    if (svc_pool_reserve(app->pool) != 0) {
        free(j);
        return -1;
    }
    svc_pool_enqueue(app->pool, &j->job);
    return 0;
}

/* ------------------------------------------------------------------ run */

int svc_app_run(const svc_config *cfg)
{
    static const char *labels[64];
    int rc = 1;
    svc_app *app = calloc(1, sizeof *app);
    if (!app) {
        fprintf(stderr, "multiboxd: out of memory\n");
        return 1;
    }
    app->cfg = *cfg;
    app->exit_code = 1;
    svc_log_set_format(cfg->log_format);

    /* libuv sizes its pool from this on its first use, which is below. */
    char workers[16];
    snprintf(workers, sizeof workers, "%d", cfg->workers);
    setenv("UV_THREADPOOL_SIZE", workers, 1);
    signal(SIGPIPE, SIG_IGN);
    svc_memory_init();

    int nlabels = svc_app_handler_count();
    if (nlabels > (int)(sizeof labels / sizeof labels[0]))
        nlabels = (int)(sizeof labels / sizeof labels[0]);
    for (int i = 0; i < nlabels; i++)
        labels[i] = i < svc_route_count ? svc_routes[i].pattern : SVC_HANDLER_UNMATCHED;

    if (svc_metrics_new(&app->metrics, labels, nlabels, MBX_SERVICE_VERSION) != 0 ||
        (app->anchors = svc_anchor_cache_new()) == NULL || uv_loop_init(&app->loop) != 0) {
        svc_log_error("start-up failed: out of memory");
        svc_anchor_cache_free(app->anchors);
        svc_metrics_free(app->metrics);
        free(app);
        return 1;
    }
    if (svc_pool_new(&app->pool, &app->loop, cfg->workers, cfg->queue_depth, app->metrics) != 0) {
        svc_log_error("start-up failed: cannot create the worker pool");
        goto out_loop;
    }
    int cpus[SVC_POOL_MAX_PIN];
    const int ncpus = svc_affinity_cpus(cpus, SVC_POOL_MAX_PIN);
    const int pinned = svc_affinity_wanted(cfg->pin_workers, cfg->workers, ncpus)
                           ? svc_pool_pin(app->pool, cpus, ncpus)
                           : 0;
    /* The last two allowed CPUs: interrupts are mostly taken on the first ones. */
    const int pin_http = svc_affinity_wanted(cfg->pin_http, cfg->workers, ncpus);
    app->http_cpus[0] = pin_http ? cpus[ncpus - 1] : -1;
    app->http_cpus[1] = pin_http ? cpus[ncpus > 1 ? ncpus - 2 : 0] : -1;
    uv_signal_init(&app->loop, &app->sigterm);
    uv_signal_init(&app->loop, &app->sigint);
    uv_timer_init(&app->loop, &app->heartbeat);
    uv_timer_init(&app->loop, &app->drain_poll);
    uv_timer_init(&app->loop, &app->drain_deadline);
    app->sigterm.data = app->sigint.data = app;
    app->heartbeat.data = app->drain_poll.data = app->drain_deadline.data = app;
    atomic_store(&app->heartbeat_ns, svc_now_ns());
    uv_timer_start(&app->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);

    svc_log_info("multiboxd %s starting: workers=%d pinned_cpus=%d http_cpu=%d queue_depth=%d "
                 "max_body_bytes=%llu max_json_body_bytes=%llu request_timeout=%gs "
                 "drain_timeout=%gs",
                 MBX_SERVICE_VERSION, cfg->workers, pinned, app->http_cpus[0], cfg->queue_depth,
                 (unsigned long long)cfg->max_body_bytes,
                 (unsigned long long)cfg->max_json_body_bytes, cfg->request_timeout_s,
                 cfg->drain_timeout_s);
    if (svc_server_start(&app->server, app) != 0) {
        stop_loop(app);
        uv_run(&app->loop, UV_RUN_DEFAULT);
        goto out_loop;
    }
    int v6 = strchr(cfg->listen_host, ':') != NULL;
    svc_log_info("listening on %s%s%s:%d", v6 ? "[" : "", cfg->listen_host, v6 ? "]" : "",
                 svc_server_port(app->server));
    if (start_startup_job(app) != 0) {
        svc_log_error("start-up failed: out of memory");
        svc_server_stop(app->server);
        stop_loop(app);
        uv_run(&app->loop, UV_RUN_DEFAULT);
        goto out_loop;
    }

    uv_run(&app->loop, UV_RUN_DEFAULT);
    rc = app->exit_code;
    svc_server_stop(app->server);

out_loop:
    if (app->pool) {
        svc_pool_close(app->pool);
        uv_run(&app->loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&app->loop) != 0)
        svc_log_warn("event loop closed with handles still open");
    svc_pool_free(app->pool);
    svc_anchor_cache_free(app->anchors);
    svc_metrics_free(app->metrics);
    free(app);
    svc_log_info("stopped");
    return rc;
}
