/*
 * testutil.h - shared helpers of the core tests: result buffers, tolerance
 * checks with readable failure messages, and a seeded generator of random
 * valid batches.  Test code only.
 */
#ifndef MBX_TEST_UTIL_H
#define MBX_TEST_UTIL_H

#include <stdint.h>

#include "multibox/multibox.h"

/* Result with every array allocated for batch b. */
typedef struct test_result {
    mbx_result r;
    int64_t B, A, C;
} test_result;

void result_alloc(test_result *t, const mbx_batch *b);
void result_free(test_result *t);
/* 1 when both results are bit-identical (scalars, per-image and every array). */
int result_identical(const test_result *x, const test_result *y);
/* 1 when no value of the result is NaN or infinite. */
int result_finite(const test_result *t);

/* Deterministic PRNG (splitmix64). */
typedef struct rng {
    uint64_t s;
} rng;
uint64_t rng_next(rng *r);
double rng_uniform(rng *r);               /* [0, 1) */
double rng_range(rng *r, double lo, double hi);
int64_t rng_int(rng *r, int64_t lo, int64_t hi); /* [lo, hi] */
double rng_normal(rng *r);

/* A random valid batch owned by the struct. */
typedef struct test_batch {
    mbx_batch b;
    float *loc, *conf, *anchors;
    mbx_image_targets *targets;
    int64_t max_boxes;
} test_batch;

typedef struct batch_spec {
    int64_t B, A, C;
    int64_t gt_min, gt_max;  /* boxes per image */
    double logit_scale;      /* std of logits */
    double loc_scale;        /* std of loc */
    int background_label;    /* labels avoid it; -1: none */
    int difficult;           /* 1: random difficult flags */
    mbx_box_format format;   /* of anchors and GT */
} batch_spec;

/* Writes the box (x1, y1, x2, y2) into out[4] in format f. */
void put_box(float *out, double x1, double y1, double x2, double y2, mbx_box_format f);

/* Fills tb with a random batch: anchors on a grid of several scales, GT boxes near anchors. */
void batch_random(test_batch *tb, const batch_spec *spec, rng *r);
void batch_free(test_batch *tb);

/*
 * The per-anchor classification loss written from the semantics document in
 * double, independently of the core: softmax via m + ln(sum) - z_t, sigmoid
 * BCE with logits, focal as torchvision's sigmoid_focal_loss.
 */
double ref_conf_loss(mbx_conf_loss kind, int64_t C, double focal_alpha, double focal_gamma,
                     const float *z, int64_t target);

/*
 * Splits the B images between two threads in one of five ways (mode 0..4:
 * halves, reversed halves, alternating, shuffled halves, all on thread 0):
 * thread t gets order[t][0..count[t]), order[t] sized B by the caller.
 */
void split_images_2(int mode, int64_t B, rng *r, int64_t *order[2], int64_t count[2]);

/* A context for batch b and cfg with num_slots slots; fails the test on error. */
mbx_loss *loss_for(const mbx_config *cfg, const mbx_batch *b, int64_t max_boxes, int slots);

#endif
