/*
 * test_match.c - matching against a brute-force reference written here from
 * the semantics document: the full IoU matrix in double (torchvision's
 * box_iou), greedy as a naive search of the largest IoU over all free pairs
 * (ties: lowest anchor, then lowest GT; IoU <= 1e-6 never), per_gt with the
 * later GT winning a shared anchor, the threshold step and the ignore band,
 * difficult boxes dropped but numbered as sent.  Random batches of many
 * shapes, including duplicated and nested boxes, anchors in random order and
 * every threshold combination; mining none so every role is visible.
 * Many-GT images (100-200 boxes) over SSD-like anchor grids exercise the
 * bounded IoU search of the image pass and of greedy with both kernel
 * builds: overlapping, duplicated, tiny and huge boxes, copies of anchors,
 * duplicated anchors and boxes midway between two anchors (exact ties).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loss_impl.h"
#include "testutil.h"

static void to_xyxy(const float *in, mbx_box_format f, double out[4])
{
    if (f == MBX_BOX_CXCYWH) {
        out[0] = (double)in[0] - 0.5 * (double)in[2];
        out[1] = (double)in[1] - 0.5 * (double)in[3];
        out[2] = (double)in[0] + 0.5 * (double)in[2];
        out[3] = (double)in[1] + 0.5 * (double)in[3];
    } else {
        for (int k = 0; k < 4; k++)
            out[k] = in[k];
    }
}

/* torchvision box_iou(gt, anchor) for one pair. */
static double iou(const double g[4], const double a[4])
{
    const double ag = (g[2] - g[0]) * (g[3] - g[1]), aa = (a[2] - a[0]) * (a[3] - a[1]);
    const double w = fmax(fmin(g[2], a[2]) - fmax(g[0], a[0]), 0.0);
    const double h = fmax(fmin(g[3], a[3]) - fmax(g[1], a[1]), 0.0);
    const double inter = w * h;
    return inter / (ag + aa - inter);
}

/* Expected match[] and role[] (POSITIVE, IGNORED, NEGATIVE) of one image. */
static void reference(const mbx_config *cfg, const mbx_batch *b, int64_t image, int32_t *match,
                      uint8_t *role)
{
    const int64_t A = b->num_anchors;
    const mbx_image_targets *t = &b->targets[image];
    int64_t n = 0, *keep = malloc((size_t)(t->num_boxes + 1) * sizeof *keep);
    for (int64_t j = 0; j < t->num_boxes; j++)
        if (cfg->use_difficult || !t->difficult || !t->difficult[j])
            keep[n++] = j;
    double *m = malloc((size_t)(n * A + 1) * sizeof *m); /* m[g * A + a] */
    for (int64_t g = 0; g < n; g++) {
        double gb[4];
        to_xyxy(t->boxes + 4 * keep[g], cfg->box_format, gb);
        for (int64_t a = 0; a < A; a++) {
            double ab[4];
            to_xyxy(b->anchors + 4 * a, b->anchors_format, ab);
            m[g * A + a] = iou(gb, ab);
        }
    }
    int *forced = calloc((size_t)A, sizeof *forced);
    for (int64_t a = 0; a < A; a++)
        match[a] = -1;
    if (n > 0 && cfg->bipartite == MBX_BIPARTITE_PER_GT) {
        for (int64_t g = 0; g < n; g++) {
            int64_t arg = 0;
            for (int64_t a = 1; a < A; a++)
                if (m[g * A + a] > m[g * A + arg])
                    arg = a;
            match[arg] = (int32_t)keep[g];
            forced[arg] = 1;
        }
    } else if (n > 0 && cfg->bipartite == MBX_BIPARTITE_GREEDY) {
        int *done = calloc((size_t)n, sizeof *done);
        for (;;) {
            int64_t bg = -1, ba = -1;
            double bv = 1e-6;
            for (int64_t a = 0; a < A; a++) {
                if (forced[a])
                    continue;
                for (int64_t g = 0; g < n; g++)
                    if (!done[g] && m[g * A + a] > bv) { /* strict: lowest a, then g */
                        bv = m[g * A + a];
                        bg = g;
                        ba = a;
                    }
            }
            if (bg < 0)
                break;
            match[ba] = (int32_t)keep[bg];
            forced[ba] = 1;
            done[bg] = 1;
        }
        free(done);
    }
    for (int64_t a = 0; a < A; a++) {
        double best = -1.0;
        int64_t bg = -1;
        for (int64_t g = 0; g < n; g++)
            if (m[g * A + a] > best) {
                best = m[g * A + a];
                bg = g;
            }
        if (!forced[a] && n > 0 && best >= cfg->overlap_threshold)
            match[a] = (int32_t)keep[bg];
        if (match[a] >= 0)
            role[a] = MBX_ROLE_POSITIVE;
        else if (n > 0 && best >= cfg->neg_overlap)
            role[a] = MBX_ROLE_IGNORED;
        else
            role[a] = MBX_ROLE_NEGATIVE;
    }
    free(forced);
    free(m);
    free(keep);
}

static void test_against_reference(void **state)
{
    (void)state;
    rng r = {51};
    for (int rep = 0; rep < 400; rep++) {
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.mining = MBX_MINING_NONE;
        cfg.bipartite = (mbx_bipartite)(rep % 3);
        cfg.box_format = (mbx_box_format)rng_int(&r, 0, 1);
        const double thr[5] = {0.5, 0.3, 0.7, 1.0, 0.05};
        cfg.overlap_threshold = thr[rng_int(&r, 0, 4)];
        cfg.neg_overlap = rng_uniform(&r) < 0.5 ? cfg.overlap_threshold
                                                 : cfg.overlap_threshold * rng_uniform(&r) + 1e-3;
        if (cfg.neg_overlap > cfg.overlap_threshold)
            cfg.neg_overlap = cfg.overlap_threshold;
        cfg.use_difficult = (int)rng_int(&r, 0, 1);
        batch_spec spec = {rng_int(&r, 1, 3), rng_int(&r, 1, 200), 3, 0, rng_int(&r, 0, 12),
                           1.0, 1.0, 0, 1, cfg.box_format};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        /* Duplicates and copies of anchors among the GT: exact ties. */
        for (int64_t i = 0; i < tb.b.batch; i++) {
            float *bx = (float *)tb.targets[i].boxes;
            for (int64_t j = 1; j < tb.targets[i].num_boxes; j++) {
                if (rng_uniform(&r) < 0.2)
                    memcpy(bx + 4 * j, bx + 4 * (j - 1), 4 * sizeof(float));
                else if (rng_uniform(&r) < 0.2)
                    memcpy(bx + 4 * j, tb.anchors + 4 * rng_int(&r, 0, tb.b.num_anchors - 1),
                           4 * sizeof(float));
            }
        }
        test_result tr;
        mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        result_alloc(&tr, &tb.b);
        mbx_detail d = {0, ""};
        if (mbx_loss_compute(l, &tb.b, &tr.r, &d))
            fail_msg("rep %d: %s", rep, d.message);
        const int64_t A = tb.b.num_anchors;
        int32_t *m = malloc((size_t)A * sizeof *m);
        uint8_t *role = malloc((size_t)A);
        for (int64_t i = 0; i < tb.b.batch; i++) {
            reference(&cfg, &tb.b, i, m, role);
            for (int64_t a = 0; a < A; a++)
                if (m[a] != tr.r.matches[i * A + a] || role[a] != tr.r.roles[i * A + a])
                    fail_msg("rep %d (%s, thr %g, neg %g) image %lld anchor %lld: match %d "
                             "role %d, reference %d role %d",
                             rep, cfg.bipartite == 0 ? "greedy" : cfg.bipartite == 1 ? "per_gt"
                                                                                     : "none",
                             cfg.overlap_threshold, cfg.neg_overlap, (long long)i, (long long)a,
                             tr.r.matches[i * A + a], tr.r.roles[i * A + a], m[a], role[a]);
        }
        free(m);
        free(role);
        result_free(&tr);
        mbx_loss_free(l);
        batch_free(&tb);
    }
}

/*
 * SSD-like anchors in place of tb's (which has room for A of them): levels
 * of f x f cells, k boxes per cell (aspect ratios 1, 2, 1/2, 3, 1/3, and a
 * larger square), in level, row, column, box order, truncated or repeated
 * to fill A; a few are exact copies of earlier anchors.  Returns the cell
 * size of the first level.
 */
static double ssd_anchors(float *anchors, int64_t A, mbx_box_format fmt, rng *r)
{
    static const int fs[] = {16, 8, 4, 2, 1};
    static const int ks[] = {4, 6, 6, 4, 4};
    static const double ar[] = {1.0, 2.0, 0.5, 3.0, 1.0 / 3.0};
    int64_t a = 0;
    while (a < A) {
        for (int l = 0; l < 5 && a < A; l++) {
            const double s = 0.1 + 0.18 * l, s2 = sqrt(s * (s + 0.18));
            for (int i = 0; i < fs[l] && a < A; i++)
                for (int j = 0; j < fs[l] && a < A; j++)
                    for (int k = 0; k < ks[l] && a < A; k++, a++) {
                        const double cx = (j + 0.5) / fs[l], cy = (i + 0.5) / fs[l];
                        const double w = k == ks[l] - 1 ? s2 : s * sqrt(ar[k % 5]);
                        const double h = k == ks[l] - 1 ? s2 : s / sqrt(ar[k % 5]);
                        put_box(anchors + 4 * a, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2,
                                fmt);
                    }
        }
    }
    for (int d = 0; d < 6 && A > 2; d++) { /* duplicated anchors: ties of a GT's best */
        const int64_t from = rng_int(r, 0, A - 2), to = rng_int(r, from + 1, A - 1);
        memcpy(anchors + 4 * to, anchors + 4 * from, 4 * sizeof(float));
    }
    return 1.0 / fs[0];
}

/* n GT boxes of every awkward kind over the anchors of ssd_anchors(). */
static void many_boxes(float *boxes, int64_t n, const float *anchors, int64_t A, double cell,
                       mbx_box_format fmt, rng *r)
{
    for (int64_t j = 0; j < n; j++) {
        float *b = boxes + 4 * j;
        const int kind = (int)rng_int(r, 0, 9);
        if (kind == 0 && j > 0) { /* duplicate */
            memcpy(b, boxes + 4 * rng_int(r, 0, j - 1), 4 * sizeof(float));
        } else if (kind == 1) { /* an anchor's copy */
            memcpy(b, anchors + 4 * rng_int(r, 0, A - 1), 4 * sizeof(float));
        } else if (kind == 2) { /* tiny */
            const double x = rng_uniform(r), y = rng_uniform(r), w = rng_range(r, 1e-5, 1e-3);
            put_box(b, x, y, x + w, y + w * rng_range(r, 0.5, 2.0), fmt);
        } else if (kind == 3) { /* huge, past the image */
            put_box(b, rng_range(r, -0.6, 0.1), rng_range(r, -0.6, 0.1), rng_range(r, 0.9, 1.6),
                    rng_range(r, 0.9, 1.6), fmt);
        } else if (kind == 4) { /* a first-level square midway between two cells: equal IoUs */
            const int i = (int)rng_int(r, 0, 14), jj = (int)rng_int(r, 0, 14);
            const double cx = (jj + 1.0) * cell, cy = (i + 0.5) * cell, s = 0.05;
            put_box(b, cx - s, cy - s, cx + s, cy + s, fmt);
        } else if (kind == 5 && j > 0) { /* nested in an earlier box */
            float *o = boxes + 4 * rng_int(r, 0, j - 1);
            double ob[4];
            to_xyxy(o, fmt, ob);
            const double w = ob[2] - ob[0], h = ob[3] - ob[1];
            put_box(b, ob[0] + 0.1 * w, ob[1] + 0.2 * h, ob[2] - 0.2 * w, ob[3] - 0.1 * h, fmt);
        } else { /* sizes over two decades, overlapping one another */
            const double w = exp(rng_range(r, log(0.01), log(1.0)));
            const double h = w * exp(rng_range(r, log(0.3), log(3.0)));
            const double x = rng_range(r, -0.1, 1.0 - 0.5 * w), y = rng_range(r, -0.1, 0.9);
            put_box(b, x, y, x + w, y + h, fmt);
        }
    }
}

static void test_many_gt(void **state)
{
    (void)state;
    rng r = {77};
    for (int rep = 0; rep < 12; rep++) {
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.mining = MBX_MINING_NONE;
        cfg.bipartite = (mbx_bipartite)(rep % 3);
        cfg.box_format = (mbx_box_format)(rep / 3 % 2);
        const double thr[4] = {0.5, 0.3, 0.7, 0.5};
        cfg.overlap_threshold = thr[rep / 3 % 4];
        cfg.neg_overlap = rep % 2 ? cfg.overlap_threshold : 0.4 * cfg.overlap_threshold;
        cfg.use_difficult = 1;
        const int64_t A = cfg.bipartite == MBX_BIPARTITE_GREEDY ? rng_int(&r, 300, 1300)
                                                                 : rng_int(&r, 1000, 2400);
        const int64_t G = rng_int(&r, 100, 200);
        batch_spec spec = {2, A, 3, G, G, 1.0, 1.0, 0, 0, cfg.box_format};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        const double cell = ssd_anchors(tb.anchors, A, cfg.box_format, &r);
        for (int64_t i = 0; i < tb.b.batch; i++)
            many_boxes((float *)tb.targets[i].boxes, tb.targets[i].num_boxes, tb.anchors, A,
                       cell, cfg.box_format, &r);
        const int64_t Amax = A;
        int32_t *m = malloc((size_t)Amax * sizeof *m);
        uint8_t *role = malloc((size_t)Amax);
        for (int generic = 0; generic < 2; generic++) {
            test_result tr;
            mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
            mbx_loss_test_force_generic(l, generic);
            result_alloc(&tr, &tb.b);
            mbx_detail d = {0, ""};
            if (mbx_loss_compute(l, &tb.b, &tr.r, &d))
                fail_msg("rep %d: %s", rep, d.message);
            for (int64_t i = 0; i < tb.b.batch; i++) {
                reference(&cfg, &tb.b, i, m, role);
                for (int64_t a = 0; a < A; a++)
                    if (m[a] != tr.r.matches[i * A + a] || role[a] != tr.r.roles[i * A + a])
                        fail_msg("many-GT rep %d (%s, %s kernels, %lld GT, %lld anchors, thr %g, "
                                 "neg %g) image %lld anchor %lld: match %d role %d, reference "
                                 "%d role %d",
                                 rep, cfg.bipartite == 0 ? "greedy"
                                      : cfg.bipartite == 1 ? "per_gt" : "none",
                                 mbx_loss_test_kernel_name(l), (long long)G, (long long)A,
                                 cfg.overlap_threshold, cfg.neg_overlap, (long long)i,
                                 (long long)a, tr.r.matches[i * A + a], tr.r.roles[i * A + a],
                                 m[a], role[a]);
            }
            result_free(&tr);
            mbx_loss_free(l);
        }
        free(m);
        free(role);
        batch_free(&tb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_many_gt),
    };
    return cmocka_run_group_tests_name("core matching", tests, NULL, NULL);
}
