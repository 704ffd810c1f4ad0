/*
 * multibox_bench.c - multibox-bench: times the loss core's forward+backward
 * on random but realistic SSD inputs (anchors of a preset, 1..10 GT boxes of
 * log-uniform size per image, N(0,1) offsets, N(0,2) logits) with the split
 * API on a persistent pool of T threads, and in the same run the
 * memory-traffic floor (one read of loc and conf, one write of both
 * gradients, same threads).  Prints the median and spread of each and the
 * machine-readable lines fwd_bwd_ms_median=, floor_ms_median=,
 * fwd_bwd_over_floor=.  --dump FILE writes the inputs as a /v1/loss request
 * so that multibox-loss and bench/torchvision_loss.py run on the same bytes.
 * Exit status: 0 on success, 1 on a core error, 2 on bad usage.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_config.h"
#include "bench_dump.h"
#include "bench_pool.h"
#include "multibox/multibox.h"

#ifdef MBX_BENCH_HAVE_CODEC
#include "codec.h"
#endif

/* ------------------------------------------------------------------ options */

typedef struct options {
    const char *preset;
    int64_t batch, classes, gt_lo, gt_hi;
    int threads, runs, warmup;
    uint64_t seed;
    const char *config_json; /* NULL: defaults */
    const char *dump_path;   /* NULL: no dump */
    int no_floor;
    int no_flush;            /* 1: keep the caches warm between timed runs */
    int64_t flush_mb;        /* eviction buffer size, 0: twice the L3 */
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: multibox-bench [--preset NAME] [--batch B] [--classes C] [--gt LO-HI]\n"
            "                      [--threads T] [--runs N] [--warmup W] [--seed S]\n"
            "                      [--config-json '{...}'] [--LOSS-KEY VALUE ...]\n"
            "                      [--dump FILE] [--no-floor] [--no-flush]\n"
            "Times forward+backward of the MultiBox loss (split API, T threads) and the\n"
            "memory-traffic floor; defaults: ssd300_voc, B 32, C 21, GT 1-10, T 2, 30 runs,\n"
            "5 warm-up runs, seed 1, the library's default config.\n"
            "  --config-json  a /v1/loss \"config\" object (needs the codec)\n"
            "  --dump FILE    write the generated inputs as a /v1/loss request body\n"
            "  --no-floor     skip the memory-traffic floor\n"
            "  --no-flush     do not evict the caches before each timed run (warm L3)\n"
            "  --flush-mb N   size of the eviction read (default: twice the L3, 64-256 MB)\n"
            "loss keys (override --config-json):\n");
    bench_config_print_keys(out);
}

static int parse_int64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Parses argv into opt and the config flags into cfg_flags (applied later). */
static int parse_args(int argc, char **argv, options *opt, int *flag_idx, int *num_flags)
{
    *num_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--no-floor") == 0) {
            opt->no_floor = 1;
            continue;
        }
        if (strcmp(a, "--no-flush") == 0) {
            opt->no_flush = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "multibox-bench: unexpected argument '%s'\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int64_t n;
        if (strcmp(a, "--preset") == 0) {
            opt->preset = v;
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_int64(v, 1, 1 << 20, &opt->batch))
                goto bad;
        } else if (strcmp(a, "--classes") == 0) {
            if (parse_int64(v, 1, 1 << 20, &opt->classes))
                goto bad;
        } else if (strcmp(a, "--gt") == 0) {
            char *dash = strchr(v, '-');
            char lo[32];
            if (!dash) {
                if (parse_int64(v, 0, 1 << 20, &opt->gt_lo))
                    goto bad;
                opt->gt_hi = opt->gt_lo;
            } else {
                size_t len = (size_t)(dash - v);
                if (len == 0 || len >= sizeof lo)
                    goto bad;
                memcpy(lo, v, len);
                lo[len] = '\0';
                if (parse_int64(lo, 0, 1 << 20, &opt->gt_lo) ||
                    parse_int64(dash + 1, 0, 1 << 20, &opt->gt_hi) || opt->gt_hi < opt->gt_lo)
                    goto bad;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_int64(v, 1, 256, &n))
                goto bad;
            opt->threads = (int)n;
        } else if (strcmp(a, "--runs") == 0) {
            if (parse_int64(v, 1, 1000000, &n))
                goto bad;
            opt->runs = (int)n;
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_int64(v, 0, 1000000, &n))
                goto bad;
            opt->warmup = (int)n;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_int64(v, 0, INT64_MAX, &n))
                goto bad;
            opt->seed = (uint64_t)n;
        } else if (strcmp(a, "--config-json") == 0) {
            opt->config_json = v;
        } else if (strcmp(a, "--flush-mb") == 0) {
            if (parse_int64(v, 1, 1 << 16, &opt->flush_mb))
                goto bad;
        } else if (strcmp(a, "--dump") == 0) {
            opt->dump_path = v;
        } else {
            flag_idx[(*num_flags)++] = i - 1; /* a loss key, checked later */
        }
        continue;
    bad:
        fprintf(stderr, "multibox-bench: %s: invalid value '%s'\n", a, v);
        return -1;
    }
    return 0;
}

/* Builds the config: defaults, then --config-json, then the loss flags. */
static int build_config(const options *opt, char **argv, const int *flag_idx, int num_flags,
                        mbx_config *cfg)
{
    mbx_config_default(cfg);
    if (opt->config_json) {
#ifdef MBX_BENCH_HAVE_CODEC
        /* The codec owns config parsing: wrap the object in a minimal request. */
        size_t cap = strlen(opt->config_json) + 512 + 4 * (size_t)opt->classes;
        char *body = malloc(cap);
        if (!body)
            return -1;
        int len = snprintf(body, cap,
                           "{\"anchors\": [[0.25, 0.25, 0.75, 0.75]], \"loc\": [[[0, 0, 0, 0]]],"
                           " \"conf\": {\"shape\": [1, 1, %lld], \"data\": [",
                           (long long)opt->classes);
        for (int64_t k = 0; k < opt->classes; k++)
            len += snprintf(body + len, cap - (size_t)len, "%s0", k ? "," : "");
        snprintf(body + len, cap - (size_t)len,
                 "]}, \"targets\": [{\"boxes\": [], \"labels\": []}], \"config\": %s}",
                 opt->config_json);
        mbx_request *req = NULL;
        mbx_detail d = {0};
        int rc = mbx_request_parse_json(body, strlen(body), &req, &d);
        free(body);
        if (rc != 0) {
            fprintf(stderr, "multibox-bench: --config-json: %s: %s\n", mbx_error_name(rc),
                    d.message);
            return -1;
        }
        *cfg = req->config;
        mbx_request_free(req);
#else
        fprintf(stderr, "multibox-bench: --config-json needs the codec, not built in\n");
        return -1;
#endif
    }
    for (int f = 0; f < num_flags; f++) {
        const char *key = argv[flag_idx[f]] + 2;
        char err[256];
        int rc = bench_config_apply(cfg, key, argv[flag_idx[f] + 1], err, sizeof err);
        if (rc == 0) {
            fprintf(stderr, "multibox-bench: unknown option --%s\n", key);
            return -1;
        }
        if (rc < 0) {
            fprintf(stderr, "multibox-bench: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ inputs */

static uint64_t rng_state;

/* splitmix64: small, fast, and good enough for test data. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_uniform(void)
{
    return (double)(rng_next() >> 11) * 0x1.0p-53;
}

/* Fills out[n] with N(0, sigma^2) samples (Box-Muller). */
static void fill_normal(float *out, size_t n, double sigma)
{
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - rng_uniform(); /* (0, 1] */
        double u2 = rng_uniform();
        double r = sigma * sqrt(-2.0 * log(u1));
        out[i] = (float)(r * cos(two_pi * u2));
        if (i + 1 < n)
            out[i + 1] = (float)(r * sin(two_pi * u2));
    }
}

/* xyxy -> cxcywh in place, for a --box-format cxcywh run. */
static void to_cxcywh(float *b, int64_t count)
{
    for (int64_t i = 0; i < count; i++, b += 4) {
        float w = b[2] - b[0], h = b[3] - b[1];
        float cx = b[0] + 0.5f * w, cy = b[1] + 0.5f * h;
        b[0] = cx;
        b[1] = cy;
        b[2] = w;
        b[3] = h;
    }
}

/* Everything one benchmark batch owns. */
typedef struct bench_inputs {
    float *anchors, *loc, *conf, *boxes;
    int64_t *labels;
    mbx_image_targets *targets;
    int64_t max_boxes;
    mbx_batch batch;
} bench_inputs;

static void *xalloc(size_t bytes)
{
    /* 64-byte aligned, rounded up as aligned_alloc requires */
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "multibox-bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static void inputs_free(bench_inputs *in)
{
    free(in->anchors);
    free(in->loc);
    free(in->conf);
    free(in->boxes);
    free(in->labels);
    free(in->targets);
}

/*
 * Generates the batch: the preset's anchors, per image LO..HI GT boxes with
 * log-uniform sides in [0.04, 0.9] placed uniformly inside [0,1]^2, labels
 * uniform over the non-background classes, loc ~ N(0,1), conf ~ N(0,2).
 */
static int inputs_make(bench_inputs *in, const options *opt, const mbx_config *cfg)
{
    mbx_prior_params params;
    mbx_detail d = {0};
    int64_t A;
    memset(in, 0, sizeof *in);
    int rc = mbx_prior_preset(opt->preset, &params, &d);
    if (rc == 0)
        rc = mbx_prior_count(&params, &A, &d);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: --preset %s: %s: %s\n", opt->preset, mbx_error_name(rc),
                d.message);
        return rc;
    }
    const int64_t B = opt->batch, C = opt->classes;
    in->anchors = xalloc((size_t)A * 4 * sizeof(float));
    rc = mbx_prior_generate(&params, in->anchors, A, &d);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: prior generation: %s: %s\n", mbx_error_name(rc),
                d.message);
        return rc;
    }
    rng_state = opt->seed;
    in->loc = xalloc((size_t)(B * A * 4) * sizeof(float));
    in->conf = xalloc((size_t)(B * A * C) * sizeof(float));
    in->targets = xalloc((size_t)B * sizeof *in->targets);
    in->boxes = xalloc((size_t)(B * opt->gt_hi * 4 + 4) * sizeof(float));
    in->labels = xalloc((size_t)(B * opt->gt_hi + 1) * sizeof(int64_t));

    int64_t used = 0;
    const int bg = cfg->background_label;
    const int64_t label_choices = bg >= 0 ? C - 1 : C;
    if (opt->gt_hi > 0 && label_choices < 1) {
        fprintf(stderr, "multibox-bench: --classes %lld leaves no foreground label\n",
                (long long)C);
        return MBX_E_INVALID_ARGUMENT;
    }
    for (int64_t i = 0; i < B; i++) {
        int64_t n = opt->gt_lo + (int64_t)(rng_next() % (uint64_t)(opt->gt_hi - opt->gt_lo + 1));
        mbx_image_targets *t = &in->targets[i];
        t->boxes = in->boxes + 4 * used;
        t->labels = in->labels + used;
        t->difficult = NULL;
        t->num_boxes = n;
        for (int64_t g = 0; g < n; g++) {
            float *b = in->boxes + 4 * (used + g);
            double w = exp(log(0.04) + rng_uniform() * (log(0.9) - log(0.04)));
            double h = exp(log(0.04) + rng_uniform() * (log(0.9) - log(0.04)));
            double x1 = rng_uniform() * (1.0 - w), y1 = rng_uniform() * (1.0 - h);
            b[0] = (float)x1;
            b[1] = (float)y1;
            b[2] = (float)(x1 + w);
            b[3] = (float)(y1 + h);
            int64_t k = (int64_t)(rng_next() % (uint64_t)label_choices);
            in->labels[used + g] = bg >= 0 && k >= bg ? k + 1 : k;
        }
        used += n;
        if (n > in->max_boxes)
            in->max_boxes = n;
    }
    fill_normal(in->loc, (size_t)(B * A * 4), 1.0);
    fill_normal(in->conf, (size_t)(B * A * C), 2.0);
    if (cfg->box_format == MBX_BOX_CXCYWH) {
        to_cxcywh(in->anchors, A);
        to_cxcywh(in->boxes, used);
    }
    in->batch = (mbx_batch){
        .batch = B,
        .num_anchors = A,
        .num_classes = C,
        .loc = in->loc,
        .conf = in->conf,
        .anchors = in->anchors,
        .anchors_format = cfg->box_format,
        .targets = in->targets,
    };
    return 0;
}

/* ------------------------------------------------------------------ timing */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    double median, min, max, p10, p90;
} stats;

/* Quantile q of sorted v[n], linear interpolation between ranks. */
static double quantile(const double *v, int n, double q)
{
    double pos = q * (n - 1);
    int lo = (int)pos;
    if (lo >= n - 1)
        return v[n - 1];
    return v[lo] + (pos - lo) * (v[lo + 1] - v[lo]);
}

static stats stats_of(const double *samples, int n)
{
    double *v = xalloc((size_t)n * sizeof *v);
    memcpy(v, samples, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    stats s = {quantile(v, n, 0.5), v[0], v[n - 1], quantile(v, n, 0.1), quantile(v, n, 0.9)};
    free(v);
    return s;
}

static void print_stats(const char *name, const stats *s)
{
    printf("%-26s median %8.3f  min %8.3f  p10 %8.3f  p90 %8.3f  max %8.3f\n", name, s->median,
           s->min, s->p10, s->p90, s->max);
}

/* ------------------------------------------------------------- loss phases */

typedef struct loss_job {
    mbx_loss *loss;
    int64_t batch;
    atomic_llong next; /* next image to hand out */
} loss_job;

static void match_phase(void *arg, int thread)
{
    loss_job *job = arg;
    long long i;
    while ((i = atomic_fetch_add(&job->next, 1)) < job->batch)
        mbx_loss_match_image(job->loss, i, thread);
}

static void grad_phase(void *arg, int thread)
{
    loss_job *job = arg;
    long long i;
    while ((i = atomic_fetch_add(&job->next, 1)) < job->batch)
        mbx_loss_grad_image(job->loss, i, thread);
}

/* Where one forward+backward spent its time, ms. */
typedef struct phase_times {
    double begin, match, reduce, grad, finish;
} phase_times;

/* One forward+backward with the split API on the pool; returns 0 or the core's code. */
static int run_split(bench_pool *pool, loss_job *job, const mbx_batch *batch, mbx_result *res,
                     mbx_detail *d, phase_times *pt)
{
    double t0 = now_ms();
    int rc = mbx_loss_begin(job->loss, batch, res, d);
    double t1 = now_ms();
    pt->begin = t1 - t0;
    if (rc != 0)
        return rc;
    atomic_store(&job->next, 0);
    bench_pool_run(pool, match_phase, job);
    double t2 = now_ms();
    pt->match = t2 - t1;
    rc = mbx_loss_reduce(job->loss, d);
    double t3 = now_ms();
    pt->reduce = t3 - t2;
    if (rc != 0)
        return rc;
    atomic_store(&job->next, 0);
    bench_pool_run(pool, grad_phase, job);
    double t4 = now_ms();
    pt->grad = t4 - t3;
    rc = mbx_loss_finish(job->loss, d);
    pt->finish = now_ms() - t4;
    return rc;
}

/* -------------------------------------------------------- memory-traffic floor */

/*
 * The floor: each thread reads its share (whole images) of loc and conf
 * once and writes its share of both gradients once.  Five simple ways,
 * the best of which is the floor:
 *   0 read+memset  sum the inputs as 64-bit words, then memset the outputs
 *   1 fused        one pass, out[i] = 0.5f * in[i] (ordinary stores)
 *   2 read+store   sum the inputs, then an ordinary store loop of a constant
 *   3 read+stream  sum the inputs, then zero the outputs with streaming
 *                  (non-temporal) stores, as the loss zeroes its gradients
 *   4 fused stream one pass, out[i] = 0.5f * in[i] with streaming stores
 * and, for comparison with the match phase (reads) and the gradient phase
 * (writes), the two halves of variant 0 alone:
 *   5 read only, 6 memset only
 */
#define FLOOR_VARIANTS 5 /* candidates for the floor; two more parts follow */
#define FLOOR_PARTS 2
static const char *const floor_names[FLOOR_VARIANTS + FLOOR_PARTS] = {
    "read+memset", "fused", "read+store", "read+stream", "fused stream", "read only",
    "memset only"};

typedef uint64_t __attribute__((__may_alias__)) alias_u64;

typedef struct floor_job {
    const float *loc, *conf;
    float *grad_loc, *grad_conf;
    int64_t batch, loc_row, conf_row; /* floats per image */
    int threads, variant;
    uint64_t sink[256];
} floor_job;

static uint64_t sum_words(const float *p, size_t floats)
{
    const alias_u64 *w = (const alias_u64 *)p;
    size_t n = floats / 2;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += w[i];
        s1 += w[i + 1];
        s2 += w[i + 2];
        s3 += w[i + 3];
    }
    for (; i < n; i++)
        s0 += w[i];
    if (floats & 1) {
        uint32_t last;
        memcpy(&last, p + floats - 1, sizeof last);
        s1 += last;
    }
    return s0 + s1 + s2 + s3;
}

static void scale_copy(float *restrict out, const float *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = 0.5f * in[i];
}

static void store_const(float *restrict out, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        out[i] = v;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* Streaming stores of 0 (or 0.5 in[i]) over out[0..n), ordinary stores at unaligned ends. */
__attribute__((target("avx2"))) static void stream_out(float *out, const float *in, size_t n)
{
    size_t i = 0;
    while (i < n && ((uintptr_t)(out + i) & 31u) != 0) {
        out[i] = in ? 0.5f * in[i] : 0.0f;
        i++;
    }
    const __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        _mm256_stream_ps(out + i, in ? _mm256_mul_ps(half, _mm256_loadu_ps(in + i)) : zero);
    for (; i < n; i++)
        out[i] = in ? 0.5f * in[i] : 0.0f;
    _mm_sfence();
}
#else
static void stream_out(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in ? 0.5f * in[i] : 0.0f;
}
#endif

static void floor_phase(void *arg, int t)
{
    floor_job *job = arg;
    int64_t i0 = job->batch * t / job->threads, i1 = job->batch * (t + 1) / job->threads;
    size_t loc_off = (size_t)(i0 * job->loc_row), loc_n = (size_t)((i1 - i0) * job->loc_row);
    size_t conf_off = (size_t)(i0 * job->conf_row), conf_n = (size_t)((i1 - i0) * job->conf_row);
    uint64_t s = 0;
    switch (job->variant) {
    case 0:
        s = sum_words(job->loc + loc_off, loc_n) + sum_words(job->conf + conf_off, conf_n);
        memset(job->grad_loc + loc_off, 0, loc_n * sizeof(float));
        memset(job->grad_conf + conf_off, 0, conf_n * sizeof(float));
        break;
    case 1:
        scale_copy(job->grad_loc + loc_off, job->loc + loc_off, loc_n);
        scale_copy(job->grad_conf + conf_off, job->conf + conf_off, conf_n);
        break;
    case 2:
        s = sum_words(job->loc + loc_off, loc_n) + sum_words(job->conf + conf_off, conf_n);
        store_const(job->grad_loc + loc_off, loc_n, (float)(s & 1));
        store_const(job->grad_conf + conf_off, conf_n, (float)(s & 1));
        break;
    case 3:
        s = sum_words(job->loc + loc_off, loc_n) + sum_words(job->conf + conf_off, conf_n);
        stream_out(job->grad_loc + loc_off, NULL, loc_n);
        stream_out(job->grad_conf + conf_off, NULL, conf_n);
        break;
    case 4:
        stream_out(job->grad_loc + loc_off, job->loc + loc_off, loc_n);
        stream_out(job->grad_conf + conf_off, job->conf + conf_off, conf_n);
        break;
    case 5:
        s = sum_words(job->loc + loc_off, loc_n) + sum_words(job->conf + conf_off, conf_n);
        break;
    default:
        memset(job->grad_loc + loc_off, 0, loc_n * sizeof(float));
        memset(job->grad_conf + conf_off, 0, conf_n * sizeof(float));
        break;
    }
    job->sink[t] += s; /* keeps the reads alive */
}

/*
 * Cache eviction before each timed run: the pool's threads read (clean, so
 * nothing is written back later) their share of a buffer twice the size of
 * the last-level cache, so that the loss and the floor both start from DRAM,
 * in the same state, as a floor of memory traffic means.
 */
typedef struct flush_job {
    const uint64_t *buf;
    size_t words;
    int threads;
    uint64_t sink[256];
} flush_job;

static void flush_phase(void *arg, int t)
{
    flush_job *job = arg;
    size_t w0 = job->words * (size_t)t / (size_t)job->threads;
    size_t w1 = job->words * (size_t)(t + 1) / (size_t)job->threads;
    uint64_t s = 0;
    for (size_t i = w0; i < w1; i += 8) /* one word per 64-byte line */
        s += job->buf[i];
    job->sink[t] += s;
}

/* Bytes of the last-level cache: sysfs first (sysconf may report a VM's
 * host-wide figure), then sysconf, else 0. */
static size_t l3_bytes(void)
{
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    if (f) {
        unsigned long long v = 0;
        char unit = 0;
        int got = fscanf(f, "%llu%c", &v, &unit);
        fclose(f);
        if (got >= 1 && v > 0)
            return (size_t)v * (unit == 'K' ? 1024u : unit == 'M' ? 1024u * 1024u : 1u);
    }
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return l3 > 0 ? (size_t)l3 : 0;
}

/* Twice the last-level cache, within [64 MB, 256 MB]. */
static size_t flush_bytes(void)
{
    const size_t lo = (size_t)64 << 20, hi = (size_t)256 << 20;
    size_t bytes = 2 * l3_bytes();
    return bytes < lo ? lo : bytes > hi ? hi : bytes;
}

/* 1 when the totals and both gradients of a and b are equal bit for bit. */
static int same_result(const mbx_result *a, const mbx_result *b, size_t loc_n, size_t conf_n)
{
    return memcmp(&a->loss, &b->loss, sizeof a->loss) == 0 &&
           memcmp(&a->conf_loss, &b->conf_loss, sizeof a->conf_loss) == 0 &&
           memcmp(&a->loc_loss, &b->loc_loss, sizeof a->loc_loss) == 0 &&
           a->num_positives == b->num_positives && a->num_negatives == b->num_negatives &&
           memcmp(a->grad_loc, b->grad_loc, loc_n * sizeof(float)) == 0 &&
           memcmp(a->grad_conf, b->grad_conf, conf_n * sizeof(float)) == 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    options opt = {.preset = "ssd300_voc", .batch = 32, .classes = 21, .gt_lo = 1, .gt_hi = 10,
                   .threads = 2, .runs = 30, .warmup = 5, .seed = 1};
    int *flag_idx = calloc((size_t)argc + 1, sizeof *flag_idx);
    int num_flags;
    if (!flag_idx)
        return 1;
    if (parse_args(argc, argv, &opt, flag_idx, &num_flags) != 0) {
        usage(stderr);
        free(flag_idx);
        return 2;
    }
    mbx_config cfg;
    int bad = build_config(&opt, argv, flag_idx, num_flags, &cfg);
    free(flag_idx);
    if (bad)
        return 2;
    mbx_detail d = {0};
    int rc = mbx_config_validate(&cfg, opt.classes, &d);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: %s: %s\n", mbx_error_name(rc), d.message);
        return 2;
    }

    bench_inputs in;
    if (inputs_make(&in, &opt, &cfg) != 0) {
        inputs_free(&in);
        return 2;
    }
    const int64_t B = opt.batch, A = in.batch.num_anchors, C = opt.classes;
    const size_t loc_n = (size_t)(B * A * 4), conf_n = (size_t)(B * A * C);

    printf("multibox-bench: preset=%s anchors=%lld batch=%lld classes=%lld gt=%lld-%lld "
           "threads=%d runs=%d warmup=%d seed=%llu\n",
           opt.preset, (long long)A, (long long)B, (long long)C, (long long)opt.gt_lo,
           (long long)opt.gt_hi, opt.threads, opt.runs, opt.warmup, (unsigned long long)opt.seed);
    printf("config: ");
    bench_config_write_summary(stdout, &cfg);
    printf("\nbytes: loc %.2f MB, conf %.2f MB, gradients %.2f MB\n",
           (double)loc_n * 4 / 1e6, (double)conf_n * 4 / 1e6, (double)(loc_n + conf_n) * 4 / 1e6);

    if (opt.dump_path) {
        char err[512];
        if (bench_dump_request(opt.dump_path, &cfg, &in.batch, err, sizeof err) != 0) {
            fprintf(stderr, "multibox-bench: %s\n", err);
            inputs_free(&in);
            return 1;
        }
        printf("dumped the request to %s\n", opt.dump_path);
    }
    fflush(stdout);

    mbx_shape shape = {.batch = B, .num_anchors = A, .num_classes = C,
                       .max_boxes = in.max_boxes, .num_slots = opt.threads};
    mbx_loss *loss = NULL;
    bench_pool *pool = NULL;
    float *grad_loc = xalloc(loc_n * sizeof(float)), *grad_conf = xalloc(conf_n * sizeof(float));
    float *serial_loc = NULL, *serial_conf = NULL;
    double *fb_ms = xalloc((size_t)opt.runs * sizeof(double));
    double *floor_ms = xalloc((size_t)opt.runs * (FLOOR_VARIANTS + FLOOR_PARTS) * sizeof(double));
    double *phase_ms = xalloc((size_t)opt.runs * 2 * sizeof(double)); /* match, grad */
    phase_times pt;
    floor_job *fjob = NULL;
    int status = 1;
    /* fault the pages in before timing; the NaN pattern shows any row left unwritten */
    memset(grad_loc, 0xff, loc_n * sizeof(float));
    memset(grad_conf, 0xff, conf_n * sizeof(float));

    rc = mbx_loss_new(&loss, &cfg, &shape, &d);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: mbx_loss_new: %s: %s\n", mbx_error_name(rc), d.message);
        goto out;
    }
    pool = bench_pool_new(opt.threads);
    if (!pool) {
        fprintf(stderr, "multibox-bench: cannot start %d threads\n", opt.threads);
        goto out;
    }
    loss_job job = {.loss = loss, .batch = B};
    mbx_result res = {.grad_loc = grad_loc, .grad_conf = grad_conf};

    /* one checked run: the loss, and the split equals the serial call bit for bit */
    rc = run_split(pool, &job, &in.batch, &res, &d, &pt);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: forward+backward: %s: %s\n", mbx_error_name(rc),
                d.message);
        goto out;
    }
    printf("loss=%.9g conf_loss=%.9g loc_loss=%.9g normalizer=%.9g num_positives=%lld "
           "num_negatives=%lld\n",
           res.loss, res.conf_loss, res.loc_loss, res.normalizer, (long long)res.num_positives,
           (long long)res.num_negatives);
    serial_loc = xalloc(loc_n * sizeof(float));
    serial_conf = xalloc(conf_n * sizeof(float));
    memset(serial_loc, 0x7f, loc_n * sizeof(float));
    memset(serial_conf, 0x7f, conf_n * sizeof(float));
    mbx_result serial = {.grad_loc = serial_loc, .grad_conf = serial_conf};
    rc = mbx_loss_compute(loss, &in.batch, &serial, &d);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: mbx_loss_compute: %s: %s\n", mbx_error_name(rc),
                d.message);
        goto out;
    }
    int same = same_result(&serial, &res, loc_n, conf_n);
    fflush(stdout);

    fjob = xalloc(sizeof *fjob);
    *fjob = (floor_job){.loc = in.loc, .conf = in.conf, .grad_loc = grad_loc,
                        .grad_conf = grad_conf, .batch = B, .loc_row = A * 4, .conf_row = A * C,
                        .threads = opt.threads};

    /* warm-up, then timed runs; the floor variants run interleaved with the
     * loss so that a noisy neighbour slows both alike */
    flush_job *flush = NULL;
    if (!opt.no_flush) {
        flush = xalloc(sizeof *flush);
        size_t bytes = opt.flush_mb > 0 ? (size_t)opt.flush_mb << 20 : flush_bytes();
        uint64_t *buf = xalloc(bytes);
        memset(buf, 1, bytes); /* real pages, not the shared zero page */
        *flush = (flush_job){.buf = buf, .words = bytes / sizeof *buf, .threads = opt.threads};
        printf("caches: %zu MB read before each timed run (--no-flush keeps them warm)\n",
               bytes >> 20);
    } else {
        printf("caches: warm (not flushed between timed runs)\n");
    }
    fflush(stdout);
    for (int r = -opt.warmup; r < opt.runs; r++) {
        if (flush)
            bench_pool_run(pool, flush_phase, flush);
        double t0 = now_ms();
        rc = run_split(pool, &job, &in.batch, &res, &d, &pt);
        double t1 = now_ms();
        if (rc != 0) {
            fprintf(stderr, "multibox-bench: forward+backward: %s: %s\n", mbx_error_name(rc),
                    d.message);
            goto out;
        }
        if (r >= 0) {
            fb_ms[r] = t1 - t0;
            phase_ms[r] = pt.match;
            phase_ms[opt.runs + r] = pt.grad;
        }
        if (opt.no_floor)
            continue;
        for (int v = 0; v < FLOOR_VARIANTS + FLOOR_PARTS; v++) {
            fjob->variant = v;
            if (flush)
                bench_pool_run(pool, flush_phase, flush);
            t0 = now_ms();
            bench_pool_run(pool, floor_phase, fjob);
            t1 = now_ms();
            if (r >= 0)
                floor_ms[v * opt.runs + r] = t1 - t0;
        }
    }

    if (flush) {
        free((void *)flush->buf);
        free(flush);
    }

    /* the timed loop reused the buffers: check once more that a run rewrites all of them */
    memset(grad_loc, 0xff, loc_n * sizeof(float));
    memset(grad_conf, 0xff, conf_n * sizeof(float));
    rc = run_split(pool, &job, &in.batch, &res, &d, &pt);
    if (rc != 0) {
        fprintf(stderr, "multibox-bench: forward+backward: %s: %s\n", mbx_error_name(rc),
                d.message);
        goto out;
    }
    same = same && same_result(&serial, &res, loc_n, conf_n);
    /* checked against mbx_loss_compute on fresh buffers, before and after the timed runs */
    printf("split_equals_serial=%s\n", same ? "yes" : "NO");

    stats fb = stats_of(fb_ms, opt.runs);
    print_stats("fwd_bwd_ms:", &fb);
    stats match_st = stats_of(phase_ms, opt.runs), grad_st = stats_of(phase_ms + opt.runs, opt.runs);
    print_stats("  match phase ms:", &match_st);
    print_stats("  grad phase ms:", &grad_st);
    double floor_best = 0;
    int best = -1;
    if (!opt.no_floor) {
        for (int v = 0; v < FLOOR_VARIANTS + FLOOR_PARTS; v++) {
            char name[64];
            stats s = stats_of(floor_ms + v * opt.runs, opt.runs);
            snprintf(name, sizeof name, "%sfloor_ms (%s):", v < FLOOR_VARIANTS ? "" : "  ",
                     floor_names[v]);
            print_stats(name, &s);
            if (v < FLOOR_VARIANTS && (best < 0 || s.median < floor_best)) {
                floor_best = s.median;
                best = v;
            }
        }
    }
    printf("fwd_bwd_ms_median=%.3f\n", fb.median);
    if (best >= 0) {
        printf("floor_ms_median=%.3f (%s)\n", floor_best, floor_names[best]);
        printf("fwd_bwd_over_floor=%.2f\n", fb.median / floor_best);
    }
    status = 0;
out:
    free(fjob);
    free(serial_loc);
    free(serial_conf);
    bench_pool_free(pool);
    mbx_loss_free(loss);
    free(fb_ms);
    free(floor_ms);
    free(phase_ms);
    free(grad_loc);
    free(grad_conf);
    inputs_free(&in);
    return status;
}
