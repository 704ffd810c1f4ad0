/*
 * testutil.c - helpers of the core tests (see testutil.h).
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

void result_alloc(test_result *t, const mbx_batch *b)
{
    memset(t, 0, sizeof *t);
    t->B = b->batch;
    t->A = b->num_anchors;
    t->C = b->num_classes;
    const size_t BA = (size_t)(t->B * t->A);
    t->r.per_image = calloc((size_t)t->B, sizeof *t->r.per_image);
    t->r.grad_loc = calloc(BA * 4, sizeof(float));
    t->r.grad_conf = calloc(BA * (size_t)t->C, sizeof(float));
    t->r.matches = calloc(BA, sizeof(int32_t));
    t->r.roles = calloc(BA, 1);
}

void result_free(test_result *t)
{
    free(t->r.per_image);
    free(t->r.grad_loc);
    free(t->r.grad_conf);
    free(t->r.matches);
    free(t->r.roles);
    memset(t, 0, sizeof *t);
}

static int same_d(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

int result_identical(const test_result *x, const test_result *y)
{
    const mbx_result *a = &x->r, *b = &y->r;
    if (!same_d(a->loss, b->loss) || !same_d(a->conf_loss, b->conf_loss) ||
        !same_d(a->loc_loss, b->loc_loss) || !same_d(a->normalizer, b->normalizer) ||
        a->num_positives != b->num_positives || a->num_negatives != b->num_negatives)
        return 0;
    const size_t BA = (size_t)(x->B * x->A);
    for (int64_t i = 0; i < x->B; i++) {
        const mbx_image_result *p = &a->per_image[i], *q = &b->per_image[i];
        if (!same_d(p->loss, q->loss) || !same_d(p->conf_loss, q->conf_loss) ||
            !same_d(p->loc_loss, q->loc_loss) || p->num_positives != q->num_positives ||
            p->num_negatives != q->num_negatives)
            return 0;
    }
    return memcmp(a->grad_loc, b->grad_loc, BA * 4 * sizeof(float)) == 0 &&
           memcmp(a->grad_conf, b->grad_conf, BA * (size_t)x->C * sizeof(float)) == 0 &&
           memcmp(a->matches, b->matches, BA * sizeof(int32_t)) == 0 &&
           memcmp(a->roles, b->roles, BA) == 0;
}

int result_finite(const test_result *t)
{
    const mbx_result *r = &t->r;
    if (!isfinite(r->loss) || !isfinite(r->conf_loss) || !isfinite(r->loc_loss) ||
        !isfinite(r->normalizer))
        return 0;
    for (int64_t i = 0; i < t->B; i++)
        if (!isfinite(r->per_image[i].loss) || !isfinite(r->per_image[i].conf_loss) ||
            !isfinite(r->per_image[i].loc_loss))
            return 0;
    const size_t BA = (size_t)(t->B * t->A);
    for (size_t i = 0; i < BA * 4; i++)
        if (!isfinite(r->grad_loc[i]))
            return 0;
    for (size_t i = 0; i < BA * (size_t)t->C; i++)
        if (!isfinite(r->grad_conf[i]))
            return 0;
    return 1;
}

uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_uniform(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

double rng_range(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_uniform(r);
}

int64_t rng_int(rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

double rng_normal(rng *r)
{
    double u = rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

void put_box(float *out, double x1, double y1, double x2, double y2, mbx_box_format f)
{
    if (f == MBX_BOX_CXCYWH) {
        out[0] = (float)(0.5 * (x1 + x2));
        out[1] = (float)(0.5 * (y1 + y2));
        out[2] = (float)(x2 - x1);
        out[3] = (float)(y2 - y1);
    } else {
        out[0] = (float)x1;
        out[1] = (float)y1;
        out[2] = (float)x2;
        out[3] = (float)y2;
    }
}

void batch_random(test_batch *tb, const batch_spec *s, rng *r)
{
    memset(tb, 0, sizeof *tb);
    const int64_t B = s->B, A = s->A, C = s->C;
    tb->anchors = malloc((size_t)A * 4 * sizeof(float));
    /* Anchors: centres spread over the unit square, sizes from 0.1 to 0.6. */
    for (int64_t a = 0; a < A; a++) {
        double cx = rng_range(r, 0.05, 0.95), cy = rng_range(r, 0.05, 0.95);
        double w = rng_range(r, 0.1, 0.6), h = w * rng_range(r, 0.5, 2.0);
        put_box(tb->anchors + 4 * a, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, s->format);
    }
    tb->loc = malloc((size_t)(B * A) * 4 * sizeof(float));
    tb->conf = malloc((size_t)(B * A * C) * sizeof(float));
    for (int64_t i = 0; i < B * A * 4; i++)
        tb->loc[i] = (float)(s->loc_scale * rng_normal(r));
    for (int64_t i = 0; i < B * A * C; i++)
        tb->conf[i] = (float)(s->logit_scale * rng_normal(r));
    tb->targets = calloc((size_t)B, sizeof *tb->targets);
    for (int64_t i = 0; i < B; i++) {
        const int64_t n = rng_int(r, s->gt_min, s->gt_max);
        float *boxes = malloc((size_t)(n ? n : 1) * 4 * sizeof(float));
        int64_t *labels = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
        uint8_t *diff = s->difficult ? malloc((size_t)(n ? n : 1)) : NULL;
        for (int64_t j = 0; j < n; j++) {
            double cx = rng_range(r, 0.1, 0.9), cy = rng_range(r, 0.1, 0.9);
            double w = rng_range(r, 0.1, 0.5), h = rng_range(r, 0.1, 0.5);
            put_box(boxes + 4 * j, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, s->format);
            int64_t lab;
            do
                lab = rng_int(r, 0, C - 1);
            while (lab == s->background_label);
            labels[j] = lab;
            if (diff)
                diff[j] = rng_uniform(r) < 0.3;
        }
        tb->targets[i] = (mbx_image_targets){boxes, labels, diff, n};
        if (n > tb->max_boxes)
            tb->max_boxes = n;
    }
    tb->b = (mbx_batch){B, A, C, tb->loc, tb->conf, tb->anchors, s->format, tb->targets};
}

void batch_free(test_batch *tb)
{
    for (int64_t i = 0; tb->targets && i < tb->b.batch; i++) {
        free((void *)tb->targets[i].boxes);
        free((void *)tb->targets[i].labels);
        free((void *)tb->targets[i].difficult);
    }
    free(tb->targets);
    free(tb->loc);
    free(tb->conf);
    free(tb->anchors);
    memset(tb, 0, sizeof *tb);
}

mbx_loss *loss_for(const mbx_config *cfg, const mbx_batch *b, int64_t max_boxes, int slots)
{
    mbx_shape shape = {b->batch, b->num_anchors, b->num_classes, max_boxes, slots};
    mbx_loss *l = NULL;
    mbx_detail d = {0, ""};
    int rc = mbx_loss_new(&l, cfg, &shape, &d);
    if (rc)
        fail_msg("mbx_loss_new: %s (%s)", d.message, mbx_error_name(rc));
    return l;
}

static double softplus(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

double ref_conf_loss(mbx_conf_loss kind, int64_t C, double focal_alpha, double focal_gamma,
                     const float *z, int64_t target)
{
    double sum = 0.0;
    if (kind == MBX_CONF_SOFTMAX) {
        double m = z[0];
        for (int64_t c = 1; c < C; c++)
            m = fmax(m, z[c]);
        for (int64_t c = 0; c < C; c++)
            sum += exp((double)z[c] - m);
        return m + log(sum) - z[target];
    }
    for (int64_t c = 0; c < C; c++) {
        const double t = c == target ? 1.0 : 0.0;
        const double ce = softplus(z[c]) - t * z[c];
        if (kind == MBX_CONF_SIGMOID) {
            sum += ce;
        } else {
            const double p = 1.0 / (1.0 + exp(-(double)z[c]));
            const double pt = p * t + (1.0 - p) * (1.0 - t);
            const double at = focal_alpha * t + (1.0 - focal_alpha) * (1.0 - t);
            sum += at * ce * pow(1.0 - pt, focal_gamma);
        }
    }
    return sum;
}

void split_images_2(int mode, int64_t B, rng *r, int64_t *order[2], int64_t count[2])
{
    int64_t *perm = malloc((size_t)B * sizeof *perm);
    for (int64_t i = 0; i < B; i++)
        perm[i] = mode == 1 ? B - 1 - i : i;
    if (mode == 3)
        for (int64_t i = B - 1; i > 0; i--) {
            int64_t j = rng_int(r, 0, i), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
    count[0] = count[1] = 0;
    for (int64_t i = 0; i < B; i++) {
        const int t = mode == 2 ? (int)(i % 2) : mode == 4 ? 0 : (i < B / 2 ? 0 : 1);
        order[t][count[t]++] = perm[i];
    }
    free(perm);
}
