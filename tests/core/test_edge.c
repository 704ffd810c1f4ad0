/*
 * test_edge.c - the edge cases of the semantics document, with expected
 * matches worked out by hand from the boxes (IoUs in the comments) or from
 * the test's own double-precision reference losses: images without ground
 * truth, a batch without any, two GT boxes sharing their best anchor (greedy,
 * per_gt, none), a GT overlapping no anchor, more negatives asked than exist,
 * extreme logits, identical and near-identical losses among negatives,
 * cxcywh against xyxy, and 2 against 4 variances.
 */
#include <float.h>
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

static void compute(const mbx_config *cfg, const mbx_batch *b, int64_t max_boxes, test_result *tr)
{
    mbx_loss *l = loss_for(cfg, b, max_boxes, 1);
    result_alloc(tr, b);
    mbx_detail d = {0, ""};
    int rc = mbx_loss_compute(l, b, &tr->r, &d);
    if (rc)
        fail_msg("compute: %s", d.message);
    mbx_loss_free(l);
    assert_true(result_finite(tr));
}

static int rows_zero(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (p[i] != 0.0f)
            return 0;
    return 1;
}

/* An image without GT among others: no positives, no negatives (ratio x 0), nothing written. */
static void test_image_without_gt(void **state)
{
    (void)state;
    rng r = {11};
    batch_spec spec = {3, 60, 5, 1, 4, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    tb.targets[1].num_boxes = 0;
    mbx_config cfg;
    mbx_config_default(&cfg);
    test_result tr;
    compute(&cfg, &tb.b, tb.max_boxes, &tr);
    const int64_t A = 60, C = 5;
    assert_int_equal(tr.r.per_image[1].num_positives, 0);
    assert_int_equal(tr.r.per_image[1].num_negatives, 0);
    assert_true(tr.r.per_image[1].loss == 0.0 && tr.r.per_image[1].conf_loss == 0.0 &&
                tr.r.per_image[1].loc_loss == 0.0);
    assert_true(rows_zero(tr.r.grad_conf + A * C, A * C));
    assert_true(rows_zero(tr.r.grad_loc + A * 4, A * 4));
    for (int64_t a = 0; a < A; a++) {
        assert_int_equal(tr.r.matches[A + a], -1);
        assert_int_equal(tr.r.roles[A + a], MBX_ROLE_NONE);
    }
    assert_true(tr.r.per_image[0].num_positives > 0 && tr.r.per_image[2].num_positives > 0);
    result_free(&tr);

    /* min_negatives: the 5 highest losses of that image count (reference ranking). */
    cfg.min_negatives = 5;
    compute(&cfg, &tb.b, tb.max_boxes, &tr);
    assert_int_equal(tr.r.per_image[1].num_negatives, 5);
    double lo_sel = INFINITY, hi_rest = -INFINITY;
    for (int64_t a = 0; a < A; a++) {
        const double l = ref_conf_loss(MBX_CONF_SOFTMAX, C, 0, 0, tb.conf + (A + a) * C, 0);
        if (tr.r.roles[A + a] == MBX_ROLE_NEGATIVE)
            lo_sel = fmin(lo_sel, l);
        else
            hi_rest = fmax(hi_rest, l);
    }
    assert_true(lo_sel > hi_rest);
    result_free(&tr);
    batch_free(&tb);
}

/* No GT anywhere: N = 1 (positives), 0 loss with mining; every anchor with mining none. */
static void test_batch_without_gt(void **state)
{
    (void)state;
    rng r = {12};
    batch_spec spec = {2, 50, 4, 0, 0, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    mbx_config cfg;
    mbx_config_default(&cfg);
    test_result tr;
    compute(&cfg, &tb.b, 0, &tr);
    assert_true(tr.r.normalizer == 1.0);
    assert_true(tr.r.loss == 0.0);
    assert_int_equal(tr.r.num_positives, 0);
    assert_int_equal(tr.r.num_negatives, 0);
    assert_true(rows_zero(tr.r.grad_conf, 2 * 50 * 4) && rows_zero(tr.r.grad_loc, 2 * 50 * 4));
    result_free(&tr);

    cfg.mining = MBX_MINING_NONE;
    compute(&cfg, &tb.b, 0, &tr);
    double want = 0.0;
    for (int64_t i = 0; i < 100; i++)
        want += ref_conf_loss(MBX_CONF_SOFTMAX, 4, 0, 0, tb.conf + i * 4, 0);
    assert_true(tr.r.normalizer == 1.0);
    assert_int_equal(tr.r.num_negatives, 100);
    assert_true(fabs(tr.r.loss - want) <= 1e-6 * want);
    assert_true(tr.r.loc_loss == 0.0);
    result_free(&tr);

    cfg.normalization = MBX_NORM_POSITIVES_PER_IMAGE;
    compute(&cfg, &tb.b, 0, &tr);
    assert_true(tr.r.normalizer == 2.0);
    assert_true(fabs(tr.r.loss - want / 2.0) <= 1e-6 * want);
    result_free(&tr);
    batch_free(&tb);
}

/*
 * Anchors a0 = [0,0,1,1], a1 = [0,0,1,2], a2 = [5,5,6,6]; GT g0 = [0,0,1,1.1],
 * g1 = [0,0,1,1.05].  IoU(a0,g0) = 1/1.1 = 0.909, IoU(a0,g1) = 1/1.05 = 0.952,
 * IoU(a1,g0) = 1.1/2 = 0.55, IoU(a1,g1) = 1.05/2 = 0.525, a2 overlaps nothing.
 * Both GTs have their best IoU with a0.
 */
static const float shared_anchors[12] = {0, 0, 1, 1, 0, 0, 1, 2, 5, 5, 6, 6};

static void shared_batch(mbx_batch *b, mbx_image_targets *t, const float *boxes,
                         const int64_t *labels, int64_t n, float *loc, float *conf)
{
    *t = (mbx_image_targets){boxes, labels, NULL, n};
    for (int i = 0; i < 12; i++)
        loc[i] = 0.1f * (float)(i % 5) - 0.2f;
    for (int i = 0; i < 9; i++)
        conf[i] = 0.3f * (float)(i % 4) - 0.5f;
    *b = (mbx_batch){1, 3, 3, loc, conf, shared_anchors, MBX_BOX_XYXY, t};
}

static void expect(const test_result *tr, const int32_t m[3], const uint8_t role[3])
{
    for (int a = 0; a < 3; a++) {
        if (tr->r.matches[a] != m[a] || tr->r.roles[a] != role[a])
            fail_msg("anchor %d: match %d role %d, expected match %d role %d", a,
                     tr->r.matches[a], tr->r.roles[a], m[a], role[a]);
    }
}

static void test_shared_best_anchor(void **state)
{
    (void)state;
    const float boxes[8] = {0, 0, 1, 1.1f, 0, 0, 1, 1.05f};
    const int64_t labels[2] = {1, 2};
    float loc[12], conf[9];
    mbx_image_targets t;
    mbx_batch b;
    shared_batch(&b, &t, boxes, labels, 2, loc, conf);
    mbx_config cfg;
    mbx_config_default(&cfg);
    cfg.overlap_threshold = 0.6; /* a1's 0.55 stays below it, inside the ignore band [0.5, 0.6) */
    cfg.neg_overlap = 0.5;
    cfg.mining = MBX_MINING_NONE;
    test_result tr;

    /* per_gt: g0 forces a0, then g1 (later) takes it; a1 is only in the ignore band. */
    cfg.bipartite = MBX_BIPARTITE_PER_GT;
    compute(&cfg, &b, 2, &tr);
    expect(&tr, (const int32_t[3]){1, -1, -1},
           (const uint8_t[3]){MBX_ROLE_POSITIVE, MBX_ROLE_IGNORED, MBX_ROLE_NEGATIVE});
    result_free(&tr);

    /* greedy: (a0, g1) = 0.952 first; g0 then takes its best free anchor a1 (0.55 > 1e-6). */
    cfg.bipartite = MBX_BIPARTITE_GREEDY;
    compute(&cfg, &b, 2, &tr);
    expect(&tr, (const int32_t[3]){1, 0, -1},
           (const uint8_t[3]){MBX_ROLE_POSITIVE, MBX_ROLE_POSITIVE, MBX_ROLE_NEGATIVE});
    result_free(&tr);

    /* none: a0 takes its best GT g1 by the threshold; a1 ignored. */
    cfg.bipartite = MBX_BIPARTITE_NONE;
    compute(&cfg, &b, 2, &tr);
    expect(&tr, (const int32_t[3]){1, -1, -1},
           (const uint8_t[3]){MBX_ROLE_POSITIVE, MBX_ROLE_IGNORED, MBX_ROLE_NEGATIVE});
    result_free(&tr);
}

/* A GT overlapping no anchor: greedy leaves it unmatched, per_gt forces it onto anchor 0. */
static void test_gt_overlapping_nothing(void **state)
{
    (void)state;
    const float boxes[8] = {0, 0, 1, 1.1f, 20, 20, 21, 21};
    const int64_t labels[2] = {1, 2};
    float loc[12], conf[9];
    mbx_image_targets t;
    mbx_batch b;
    shared_batch(&b, &t, boxes, labels, 2, loc, conf);
    mbx_config cfg;
    mbx_config_default(&cfg);
    cfg.mining = MBX_MINING_NONE;
    test_result tr;

    /* greedy: (a0, g0) = 0.909; g1's best IoU is 0 <= 1e-6; a1 -> g0 by threshold (0.55). */
    cfg.bipartite = MBX_BIPARTITE_GREEDY;
    compute(&cfg, &b, 2, &tr);
    expect(&tr, (const int32_t[3]){0, 0, -1},
           (const uint8_t[3]){MBX_ROLE_POSITIVE, MBX_ROLE_POSITIVE, MBX_ROLE_NEGATIVE});
    result_free(&tr);

    /* per_gt: g0 -> a0, then g1 (IoU 0 everywhere: anchor 0) -> a0, the later GT wins. */
    cfg.bipartite = MBX_BIPARTITE_PER_GT;
    compute(&cfg, &b, 2, &tr);
    expect(&tr, (const int32_t[3]){1, 0, -1},
           (const uint8_t[3]){MBX_ROLE_POSITIVE, MBX_ROLE_POSITIVE, MBX_ROLE_NEGATIVE});
    assert_true(tr.r.loc_loss > 0.0);
    result_free(&tr);
}

/* neg_pos_ratio far beyond the eligible count: every eligible anchor counts. */
static void test_more_negatives_than_exist(void **state)
{
    (void)state;
    rng r = {13};
    batch_spec spec = {2, 50, 4, 2, 4, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    mbx_config cfg;
    mbx_config_default(&cfg);
    cfg.neg_pos_ratio = 1000.0;
    cfg.neg_overlap = 0.3; /* some ignored anchors too */
    test_result tr;
    compute(&cfg, &tb.b, tb.max_boxes, &tr);
    int64_t neg = 0;
    for (int64_t i = 0; i < 100; i++) {
        assert_int_not_equal(tr.r.roles[i], MBX_ROLE_NONE);
        neg += tr.r.roles[i] == MBX_ROLE_NEGATIVE;
    }
    assert_int_equal(tr.r.num_negatives, neg);
    assert_true(neg > 0 && neg + tr.r.num_positives < 100);
    result_free(&tr);
    batch_free(&tb);
}

/* Logits of +-1e4: finite everywhere, and the fast losses agree with the exact ones. */
static void test_extreme_logits(void **state)
{
    (void)state;
    rng r = {14};
    for (int kind = 0; kind < 3; kind++)
        for (int nobg = 0; nobg < (kind ? 2 : 1); nobg++)
            for (int mining = 0; mining < 2; mining++) {
                batch_spec spec = {2, 40, 5, 1, 3, 1.0, 1.0, nobg ? -1 : 0, 0, MBX_BOX_XYXY};
                test_batch tb;
                batch_random(&tb, &spec, &r);
                for (int64_t i = 0; i < 2 * 40 * 5; i++)
                    tb.conf[i] = rng_uniform(&r) < 0.5 ? 1e4f : -1e4f;
                mbx_config cfg;
                mbx_config_default(&cfg);
                cfg.conf_loss = (mbx_conf_loss)kind;
                cfg.background_label = nobg ? -1 : 0;
                cfg.mining = (mbx_mining)mining;
                test_result fast, exact;
                compute(&cfg, &tb.b, tb.max_boxes, &fast);
                mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
                mbx_loss_test_set_exact_rows(l, 1);
                result_alloc(&exact, &tb.b);
                assert_int_equal(mbx_loss_compute(l, &tb.b, &exact.r, NULL), 0);
                assert_true(result_finite(&exact));
                assert_true(fabs(fast.r.conf_loss - exact.r.conf_loss) <=
                            1e-6 * fabs(exact.r.conf_loss) + 1e-12);
                assert_memory_equal(fast.r.roles, exact.r.roles, 80);
                mbx_loss_free(l);
                result_free(&fast);
                result_free(&exact);
                batch_free(&tb);
            }
}

/*
 * Identical rows: every negative has the same loss, so the selection keeps
 * the lowest anchor indices.  Then one row one ulp more wrong must win.
 */
static void test_identical_negative_losses(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        rng r = {15};
        batch_spec spec = {2, 80, 4, 1, 1, 1.0, 1.0, 0, 0, MBX_BOX_XYXY};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        const float row[4] = {0.5f, -0.25f, 1.0f, 0.125f};
        for (int64_t i = 0; i < 160; i++)
            memcpy(tb.conf + i * 4, row, sizeof row);
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.conf_loss = (mbx_conf_loss)kind;
        test_result tr;
        compute(&cfg, &tb.b, tb.max_boxes, &tr);
        for (int64_t i = 0; i < 2; i++) {
            int64_t seen = 0;
            const int64_t k = tr.r.per_image[i].num_negatives;
            assert_true(k > 0);
            for (int64_t a = 0; a < 80; a++) {
                const uint8_t role = tr.r.roles[i * 80 + a];
                if (role != MBX_ROLE_NEGATIVE && role != MBX_ROLE_NONE)
                    continue;
                assert_int_equal(role, seen < k ? MBX_ROLE_NEGATIVE : MBX_ROLE_NONE);
                seen++;
            }
        }
        /* The last eligible anchor of image 0, its background logit one ulp lower. */
        int64_t last = -1;
        for (int64_t a = 0; a < 80; a++)
            if (tr.r.roles[a] == MBX_ROLE_NONE)
                last = a;
        assert_true(last >= 0);
        result_free(&tr);
        float *z = tb.conf + last * 4;
        if (kind == MBX_CONF_SOFTMAX)
            z[0] = nextafterf(z[0], -INFINITY); /* -z_0 grows: more loss */
        else
            z[1] = nextafterf(z[1], INFINITY); /* a negative column's logit grows */
        compute(&cfg, &tb.b, tb.max_boxes, &tr);
        assert_int_equal(tr.r.roles[last], MBX_ROLE_NEGATIVE);
        result_free(&tr);
        batch_free(&tb);
    }
}

/* Dyadic boxes, exact in both forms: cxcywh gives bit for bit the xyxy results. */
static void test_cxcywh_equals_xyxy(void **state)
{
    (void)state;
    rng r = {16};
    batch_spec spec = {2, 48, 4, 1, 4, 2.0, 1.0, 0, 1, MBX_BOX_XYXY};
    test_batch x, c;
    batch_random(&x, &spec, &r);
    batch_random(&c, &spec, &r);
    /* Snap to multiples of 1/64 (sizes to 1/32), then write the cxcywh twin. */
    for (int64_t a = 0; a < 48; a++) {
        float *p = x.anchors + 4 * a;
        for (int k = 0; k < 2; k++) {
            p[k] = floorf(p[k] * 64.0f) / 64.0f;
            p[k + 2] = p[k] + fmaxf(floorf((p[k + 2] - p[k]) * 32.0f), 1.0f) / 32.0f;
        }
        float *q = c.anchors + 4 * a;
        q[0] = 0.5f * (p[0] + p[2]);
        q[1] = 0.5f * (p[1] + p[3]);
        q[2] = p[2] - p[0];
        q[3] = p[3] - p[1];
    }
    for (int64_t i = 0; i < 2; i++) {
        free((void *)c.targets[i].boxes);
        free((void *)c.targets[i].labels);
        free((void *)c.targets[i].difficult);
        const int64_t n = x.targets[i].num_boxes;
        float *xb = (float *)x.targets[i].boxes, *cb = malloc((size_t)n * 4 * sizeof(float));
        int64_t *lb = malloc((size_t)n * sizeof(int64_t));
        uint8_t *df = malloc((size_t)n);
        for (int64_t j = 0; j < n; j++) {
            float *p = xb + 4 * j, *q = cb + 4 * j;
            for (int k = 0; k < 2; k++) {
                p[k] = floorf(p[k] * 64.0f) / 64.0f;
                p[k + 2] = p[k] + fmaxf(floorf((p[k + 2] - p[k]) * 32.0f), 1.0f) / 32.0f;
            }
            q[0] = 0.5f * (p[0] + p[2]);
            q[1] = 0.5f * (p[1] + p[3]);
            q[2] = p[2] - p[0];
            q[3] = p[3] - p[1];
            lb[j] = x.targets[i].labels[j];
            df[j] = x.targets[i].difficult[j];
        }
        c.targets[i] = (mbx_image_targets){cb, lb, df, n};
    }
    memcpy(c.loc, x.loc, 2 * 48 * 4 * sizeof(float));
    memcpy(c.conf, x.conf, 2 * 48 * 4 * sizeof(float));
    c.b.anchors_format = MBX_BOX_CXCYWH;
    c.max_boxes = x.max_boxes;
    for (int lo = 0; lo < 6; lo++) {
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.loc_loss = (mbx_loc_loss)lo;
        cfg.use_difficult = 0;
        test_result rx, rc;
        compute(&cfg, &x.b, x.max_boxes, &rx);
        cfg.box_format = MBX_BOX_CXCYWH;
        compute(&cfg, &c.b, c.max_boxes, &rc);
        assert_true(rx.r.num_positives > 0);
        assert_true(result_identical(&rx, &rc));
        result_free(&rx);
        result_free(&rc);
    }
    batch_free(&x);
    batch_free(&c);
}

/* 4 variances (a, a, b, b) equal 2 variances (a, b); 4 distinct ones encode each coordinate. */
static void test_four_variances(void **state)
{
    (void)state;
    rng r = {17};
    batch_spec spec = {2, 50, 4, 1, 4, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    mbx_config cfg;
    mbx_config_default(&cfg);
    cfg.variances[0] = 0.125;
    cfg.variances[1] = 0.3;
    test_result two, four;
    compute(&cfg, &tb.b, tb.max_boxes, &two);
    cfg.num_variances = 4;
    cfg.variances[1] = 0.125;
    cfg.variances[2] = cfg.variances[3] = 0.3;
    compute(&cfg, &tb.b, tb.max_boxes, &four);
    assert_true(result_identical(&two, &four));

    /* Set each positive's loc to its own encoding with (0.1, 0.15, 0.2, 0.25): loss ~0. */
    const double v[4] = {0.1, 0.15, 0.2, 0.25};
    for (int k = 0; k < 4; k++)
        cfg.variances[k] = v[k];
    for (int64_t i = 0; i < 2; i++)
        for (int64_t a = 0; a < 50; a++) {
            const int32_t m = two.r.matches[i * 50 + a];
            if (m < 0)
                continue;
            const float *an = tb.anchors + 4 * a, *g = tb.targets[i].boxes + 4 * m;
            const double aw = (double)an[2] - an[0], ah = (double)an[3] - an[1];
            const double gw = (double)g[2] - g[0], gh = (double)g[3] - g[1];
            float *l = tb.loc + (i * 50 + a) * 4;
            l[0] = (float)(((g[0] + 0.5 * gw) - (an[0] + 0.5 * aw)) / aw / v[0]);
            l[1] = (float)(((g[1] + 0.5 * gh) - (an[1] + 0.5 * ah)) / ah / v[1]);
            l[2] = (float)(log(gw / aw) / v[2]);
            l[3] = (float)(log(gh / ah) / v[3]);
        }
    test_result enc;
    compute(&cfg, &tb.b, tb.max_boxes, &enc);
    assert_true(enc.r.num_positives > 0);
    assert_true(enc.r.loc_loss < 1e-10);
    cfg.variances[0] = 0.25; /* swapped: clearly off */
    cfg.variances[3] = 0.1;
    test_result off;
    compute(&cfg, &tb.b, tb.max_boxes, &off);
    assert_true(off.r.loc_loss > 1e-3);
    result_free(&two);
    result_free(&four);
    result_free(&enc);
    result_free(&off);
    batch_free(&tb);
}

/* Decoding clamps the size offsets at ln(1000/16): no gradient flows there. */
static void test_decode_clamp(void **state)
{
    (void)state;
    const float boxes[4] = {0, 0, 1, 1.1f};
    const int64_t labels[1] = {1};
    float loc[12], conf[9];
    mbx_image_targets t;
    mbx_batch b;
    shared_batch(&b, &t, boxes, labels, 1, loc, conf);
    loc[2] = 100.0f; /* dw = 100 * 0.2 = 20 > ln(62.5) */
    for (int lo = MBX_LOC_GIOU; lo <= MBX_LOC_CIOU; lo++) {
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.loc_loss = (mbx_loc_loss)lo;
        test_result tr;
        compute(&cfg, &b, 1, &tr);
        assert_int_equal(tr.r.roles[0], MBX_ROLE_POSITIVE);
        assert_true(tr.r.grad_loc[2] == 0.0f);
        assert_true(tr.r.grad_loc[3] != 0.0f);
        result_free(&tr);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_without_gt),
        cmocka_unit_test(test_batch_without_gt),
        cmocka_unit_test(test_shared_best_anchor),
        cmocka_unit_test(test_gt_overlapping_nothing),
        cmocka_unit_test(test_more_negatives_than_exist),
        cmocka_unit_test(test_extreme_logits),
        cmocka_unit_test(test_identical_negative_losses),
        cmocka_unit_test(test_cxcywh_equals_xyxy),
        cmocka_unit_test(test_four_variances),
        cmocka_unit_test(test_decode_clamp),
    };
    return cmocka_run_group_tests_name("core edge cases", tests, NULL, NULL);
}
