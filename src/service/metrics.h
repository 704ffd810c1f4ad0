/*
 * metrics.h - the service's Prometheus metrics: request counters by handler
 * and status, histograms of request duration and sizes (by handler), of
 * compute time and queue wait, the queue and in-flight gauges, build info
 * and the process_* metrics.  Rendered in the text format 0.0.4.
 * Thread-safe: every observation and the rendering take one mutex.
 */
#ifndef SVC_METRICS_H
#define SVC_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct svc_metrics svc_metrics;

/* Live gauge values, sampled by the caller at render time. */
typedef struct svc_gauges {
    int64_t queue_depth; /* requests waiting for a worker */
    int64_t in_flight;   /* HTTP requests being handled */
} svc_gauges;

/*
 * Creates the registry for nhandlers handler labels (copied pointers: the
 * strings must outlive the registry).  Returns 0 or MBX_E_OUT_OF_MEMORY.
 */
int svc_metrics_new(svc_metrics **out, const char *const *handlers, int nhandlers,
                    const char *version);
void svc_metrics_free(svc_metrics *m);

/* One answered request; handler in [0, nhandlers), status 100..599 (others ignored). */
void svc_metrics_observe_request(svc_metrics *m, int handler, int status, uint64_t bytes_in,
                                 uint64_t bytes_out, double seconds);
/* Time a job spent computing (leaving the queue to done). */
void svc_metrics_observe_compute(svc_metrics *m, double seconds);
/* Time a job waited for a worker. */
void svc_metrics_observe_queue_wait(svc_metrics *m, double seconds);
/* A request's loss started while its body was still arriving. */
void svc_metrics_count_streamed(svc_metrics *m);

/*
 * Renders every metric as Prometheus text; *out is malloc'ed and
 * NUL-terminated (*len excludes the NUL).  Returns 0 or MBX_E_OUT_OF_MEMORY.
 */
int svc_metrics_render(svc_metrics *m, const svc_gauges *g, char **out, size_t *len);

#endif
