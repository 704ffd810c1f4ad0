/*
 * metrics.c - counters and histograms behind one mutex, and their
 * Prometheus text rendering (with HELP and TYPE lines).  Observations are
 * O(buckets); nothing here allocates after svc_metrics_new except the
 * rendering buffer.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "multibox/multibox.h"
#include "procstat.h"

#define MAX_BUCKETS 20
#define STATUS_MIN 100
#define STATUS_MAX 599

static const double duration_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05,   0.1,   0.25,   0.5,   1,    2.5,
                                          5,      10,    30,     60};
static const double size_buckets[] = {256,      1024,     4096,      16384,     65536,
                                      262144,   1048576,  4194304,   16777216,  67108864,
                                      268435456, 1073741824};
static const double wait_buckets[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05,
                                      0.1,    0.5,    1,     5,     10,   30};

#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct histogram {
    const double *bounds;
    int nbounds;
    uint64_t counts[MAX_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} histogram;

typedef struct handler_stats {
    const char *name;
    uint64_t by_status[STATUS_MAX - STATUS_MIN + 1];
    histogram duration, request_size, response_size;
} handler_stats;

struct svc_metrics {
    pthread_mutex_t mu;
    const char *version;
    int nhandlers;
    handler_stats *handlers;
    histogram compute, queue_wait;
    uint64_t streamed;
};

static void hist_init(histogram *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->nbounds = n;
}

static void hist_observe(histogram *h, double v)
{
    int i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    if (i < h->nbounds)
        h->counts[i]++;
    h->count++;
    h->sum += v;
}

int svc_metrics_new(svc_metrics **out, const char *const *handlers, int nhandlers,
                    const char *version)
{
    *out = NULL;
    svc_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return MBX_E_OUT_OF_MEMORY;
    m->handlers = calloc((size_t)nhandlers, sizeof *m->handlers);
    if (!m->handlers || pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m->handlers);
        free(m);
        return MBX_E_OUT_OF_MEMORY;
    }
    m->version = version;
    m->nhandlers = nhandlers;
    for (int i = 0; i < nhandlers; i++) {
        handler_stats *h = &m->handlers[i];
        h->name = handlers[i];
        hist_init(&h->duration, duration_buckets, NB(duration_buckets));
        hist_init(&h->request_size, size_buckets, NB(size_buckets));
        hist_init(&h->response_size, size_buckets, NB(size_buckets));
    }
    hist_init(&m->compute, duration_buckets, NB(duration_buckets));
    hist_init(&m->queue_wait, wait_buckets, NB(wait_buckets));
    *out = m;
    return 0;
}

void svc_metrics_free(svc_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->handlers);
    free(m);
}

void svc_metrics_observe_request(svc_metrics *m, int handler, int status, uint64_t bytes_in,
                                 uint64_t bytes_out, double seconds)
{
    if (handler < 0 || handler >= m->nhandlers || status < STATUS_MIN || status > STATUS_MAX)
        return;
    pthread_mutex_lock(&m->mu);
    handler_stats *h = &m->handlers[handler];
    h->by_status[status - STATUS_MIN]++;
    hist_observe(&h->duration, seconds);
    hist_observe(&h->request_size, (double)bytes_in);
    hist_observe(&h->response_size, (double)bytes_out);
    pthread_mutex_unlock(&m->mu);
}

void svc_metrics_observe_compute(svc_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->compute, seconds);
    pthread_mutex_unlock(&m->mu);
}

void svc_metrics_observe_queue_wait(svc_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->queue_wait, seconds);
    pthread_mutex_unlock(&m->mu);
}

void svc_metrics_count_streamed(svc_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->streamed++;
    pthread_mutex_unlock(&m->mu);
}

static void header(svc_buf *b, const char *name, const char *type, const char *help)
{
    svc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes one histogram's series; label is "" or `handler="..."`. */
static void hist_render(svc_buf *b, const char *name, const char *label, const histogram *h)
{
    uint64_t cum = 0;
    const char *sep = label[0] ? "," : "";
    for (int i = 0; i < h->nbounds; i++) {
        cum += h->counts[i];
        svc_buf_printf(b, "%s_bucket{%s%sle=\"%.15g\"} %llu\n", name, label, sep, h->bounds[i],
                       (unsigned long long)cum);
    }
    svc_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, sep,
                   (unsigned long long)h->count);
    if (label[0]) {
        svc_buf_printf(b, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", name, label, h->sum, name,
                       label, (unsigned long long)h->count);
    } else {
        svc_buf_printf(b, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name,
                       (unsigned long long)h->count);
    }
}

static void handler_hists(svc_buf *b, const svc_metrics *m, const char *name, size_t offset)
{
    for (int i = 0; i < m->nhandlers; i++) {
        char label[160];
        const handler_stats *h = &m->handlers[i];
        snprintf(label, sizeof label, "handler=\"%s\"", h->name);
        hist_render(b, name, label, (const histogram *)((const char *)h + offset));
    }
}

int svc_metrics_render(svc_metrics *m, const svc_gauges *g, char **out, size_t *len)
{
    svc_buf b = SVC_BUF_INIT;
    svc_procstat ps;
    svc_procstat_read(&ps);

    pthread_mutex_lock(&m->mu);
    header(&b, "multibox_http_requests_total", "counter",
           "HTTP requests answered, by handler and status code.");
    for (int i = 0; i < m->nhandlers; i++)
        for (int s = STATUS_MIN; s <= STATUS_MAX; s++)
            if (m->handlers[i].by_status[s - STATUS_MIN])
                svc_buf_printf(&b, "multibox_http_requests_total{handler=\"%s\",code=\"%d\"} %llu\n",
                               m->handlers[i].name, s,
                               (unsigned long long)m->handlers[i].by_status[s - STATUS_MIN]);
    header(&b, "multibox_http_request_duration_seconds", "histogram",
           "Time from a request's headers until its answer was sent.");
    handler_hists(&b, m, "multibox_http_request_duration_seconds",
                  offsetof(handler_stats, duration));
    header(&b, "multibox_http_request_size_bytes", "histogram", "Request body sizes.");
    handler_hists(&b, m, "multibox_http_request_size_bytes",
                  offsetof(handler_stats, request_size));
    header(&b, "multibox_http_response_size_bytes", "histogram", "Response body sizes.");
    handler_hists(&b, m, "multibox_http_response_size_bytes",
                  offsetof(handler_stats, response_size));
    header(&b, "multibox_compute_duration_seconds", "histogram",
           "Time a job spent on the workers (parse, loss, gradients, rendering).");
    hist_render(&b, "multibox_compute_duration_seconds", "", &m->compute);
    header(&b, "multibox_queue_wait_seconds", "histogram",
           "Time a job waited for a free worker.");
    hist_render(&b, "multibox_queue_wait_seconds", "", &m->queue_wait);
    header(&b, "multibox_streamed_requests_total", "counter",
           "Inference requests whose loss started while their body was still arriving.");
    svc_buf_printf(&b, "multibox_streamed_requests_total %llu\n",
                   (unsigned long long)m->streamed);
    pthread_mutex_unlock(&m->mu);

    header(&b, "multibox_queue_depth", "gauge", "Requests waiting for a worker.");
    svc_buf_printf(&b, "multibox_queue_depth %lld\n", (long long)g->queue_depth);
    header(&b, "multibox_requests_in_flight", "gauge", "HTTP requests being handled.");
    svc_buf_printf(&b, "multibox_requests_in_flight %lld\n", (long long)g->in_flight);
    header(&b, "multibox_build_info", "gauge", "Build information; the value is always 1.");
    svc_buf_printf(&b, "multibox_build_info{version=\"%s\"} 1\n", m->version);

    if (ps.ok_cpu) {
        header(&b, "process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds.");
        svc_buf_printf(&b, "process_cpu_seconds_total %.17g\n", ps.cpu_seconds);
    }
    if (ps.ok_rss) {
        header(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        svc_buf_printf(&b, "process_resident_memory_bytes %.17g\n", ps.resident_bytes);
    }
    if (ps.ok_fds) {
        header(&b, "process_open_fds", "gauge", "Number of open file descriptors.");
        svc_buf_printf(&b, "process_open_fds %.17g\n", ps.open_fds);
    }
    if (ps.ok_start) {
        header(&b, "process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.");
        svc_buf_printf(&b, "process_start_time_seconds %.17g\n", ps.start_time_seconds);
    }

    *out = svc_buf_take(&b, len);
    return *out ? 0 : MBX_E_OUT_OF_MEMORY;
}
