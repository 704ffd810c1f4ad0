/*
 * test_property.c - 300 random valid inputs over random configurations
 * (every option, thresholds, variances, formats, logits up to 1e4, offsets up
 * to 100, 0 to 5 GT per image, A down to 1, C down to 1): no NaN or infinity
 * anywhere, and the invariants of the semantics document hold: per-image
 * values sum to the totals, the normalizer follows its rule, matches and
 * roles agree, negatives are counted by the mining rule and are the eligible
 * anchors of largest exact loss, rows that do not
 * count have zero gradients, and both kernel builds choose the same anchors.
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

static void random_config(mbx_config *cfg, rng *r, int64_t *C)
{
    mbx_config_default(cfg);
    cfg->box_format = (mbx_box_format)rng_int(r, 0, 1);
    cfg->bipartite = (mbx_bipartite)rng_int(r, 0, 2);
    cfg->overlap_threshold = rng_range(r, 0.05, 1.0);
    cfg->neg_overlap = rng_uniform(r) < 0.5 ? cfg->overlap_threshold
                                             : rng_range(r, 0.01, cfg->overlap_threshold);
    cfg->use_difficult = (int)rng_int(r, 0, 1);
    cfg->num_variances = rng_uniform(r) < 0.5 ? 2 : 4;
    for (int i = 0; i < 4; i++)
        cfg->variances[i] = rng_range(r, 0.05, 1.0);
    cfg->loc_loss = (mbx_loc_loss)rng_int(r, 0, 5);
    cfg->smooth_l1_beta = rng_range(r, 0.01, 3.0);
    cfg->alpha = rng_range(r, 0.0, 3.0);
    cfg->conf_loss = (mbx_conf_loss)rng_int(r, 0, 2);
    cfg->focal_alpha = rng_uniform(r);
    cfg->focal_gamma = rng_range(r, 0.0, 5.0);
    cfg->mining = (mbx_mining)rng_int(r, 0, 1);
    cfg->neg_pos_ratio = rng_range(r, 0.0, 5.0);
    cfg->min_negatives = rng_int(r, 0, 10);
    cfg->normalization = (mbx_normalization)rng_int(r, 0, 4);
    const int nobg = cfg->conf_loss != MBX_CONF_SOFTMAX && rng_uniform(r) < 0.3;
    *C = rng_int(r, nobg ? 1 : 2, 12);
    cfg->background_label = nobg ? -1 : (int)rng_int(r, 0, *C - 1);
}

/*
 * Hard negative mining picks the k eligible anchors of largest loss, exact
 * ties to the lower anchor: every NEGATIVE's double-precision loss (libm,
 * independent of the kernels) is above every NONE's, or equal with a lower
 * index.
 */
static void check_top_k(const mbx_config *cfg, const mbx_batch *b, int64_t image,
                        const uint8_t *roles)
{
    const int64_t A = b->num_anchors, C = b->num_classes;
    const mbx_kparams kp = {.kind = cfg->conf_loss,
                            .num_classes = C,
                            .focal_alpha = cfg->focal_alpha,
                            .focal_gamma = cfg->focal_gamma};
    double min_neg = INFINITY, max_none = -INFINITY;
    int64_t min_neg_at = -1, max_none_at = -1;
    for (int64_t a = 0; a < A; a++) {
        const uint8_t role = roles[image * A + a];
        if (role != MBX_ROLE_NEGATIVE && role != MBX_ROLE_NONE)
            continue;
        const double l =
            mbx_row_loss_exact(&kp, b->conf + (image * A + a) * C, cfg->background_label);
        if (role == MBX_ROLE_NEGATIVE && (l < min_neg || (l == min_neg && a > min_neg_at))) {
            min_neg = l;
            min_neg_at = a;
        }
        if (role == MBX_ROLE_NONE && (l > max_none || (l == max_none && a < max_none_at))) {
            max_none = l;
            max_none_at = a;
        }
    }
    if (min_neg_at < 0 || max_none_at < 0)
        return;
    if (!(min_neg > max_none || (min_neg == max_none && min_neg_at < max_none_at)))
        fail_msg("image %lld: negative %lld (loss %.17g) ranks below unchosen %lld (%.17g)",
                 (long long)image, (long long)min_neg_at, min_neg, (long long)max_none_at,
                 max_none);
}

static void check_invariants(const mbx_config *cfg, const mbx_batch *b, const test_result *tr)
{
    const mbx_result *res = &tr->r;
    const int64_t B = b->batch, A = b->num_anchors, C = b->num_classes;
    double loss = 0.0, conf = 0.0, loc = 0.0, per_image_norm = 0.0;
    int64_t P = 0, Q = 0;
    for (int64_t i = 0; i < B; i++) {
        const mbx_image_result *pi = &res->per_image[i];
        loss += pi->loss;
        conf += pi->conf_loss;
        loc += pi->loc_loss;
        P += pi->num_positives;
        Q += pi->num_negatives;
        per_image_norm += pi->num_positives > 0 ? (double)pi->num_positives : 1.0;
        int64_t pos = 0, neg = 0, none = 0;
        for (int64_t a = 0; a < A; a++) {
            const int64_t row = i * A + a;
            const uint8_t role = res->roles[row];
            assert_true(role <= MBX_ROLE_IGNORED);
            assert_true((res->matches[row] >= 0) == (role == MBX_ROLE_POSITIVE));
            if (res->matches[row] >= 0) {
                const mbx_image_targets *t = &b->targets[i];
                assert_true(res->matches[row] < t->num_boxes);
                assert_false(!cfg->use_difficult && t->difficult &&
                             t->difficult[res->matches[row]]);
            }
            pos += role == MBX_ROLE_POSITIVE;
            neg += role == MBX_ROLE_NEGATIVE;
            none += role == MBX_ROLE_NONE;
            if (role == MBX_ROLE_IGNORED)
                assert_true(cfg->neg_overlap < cfg->overlap_threshold);
            if (role != MBX_ROLE_POSITIVE)
                for (int k = 0; k < 4; k++)
                    assert_true(res->grad_loc[row * 4 + k] == 0.0f);
            if (role != MBX_ROLE_POSITIVE && role != MBX_ROLE_NEGATIVE)
                for (int64_t c = 0; c < C; c++)
                    assert_true(res->grad_conf[row * C + c] == 0.0f);
        }
        assert_int_equal(pos, pi->num_positives);
        assert_int_equal(neg, pi->num_negatives);
        const int64_t E = neg + none;
        int64_t k = E;
        if (cfg->mining == MBX_MINING_HARD_NEGATIVE) {
            const double byratio = floor(cfg->neg_pos_ratio * (double)pos);
            const int64_t k1 = byratio >= (double)E ? E : (int64_t)byratio;
            const int64_t k2 = cfg->min_negatives < E ? cfg->min_negatives : E;
            k = k1 > k2 ? k1 : k2;
        }
        assert_int_equal(neg, k);
        if (cfg->mining == MBX_MINING_HARD_NEGATIVE)
            check_top_k(cfg, b, i, res->roles);
    }
    assert_int_equal(P, res->num_positives);
    assert_int_equal(Q, res->num_negatives);
    const double tol = 1e-12 * (fabs(res->conf_loss) + cfg->alpha * fabs(res->loc_loss)) + 1e-300;
    assert_true(fabs(loss - res->loss) <= 1e2 * tol);
    assert_true(fabs(conf - res->conf_loss) <= 1e2 * tol);
    assert_true(fabs(loc - res->loc_loss) <= 1e2 * tol + 1e-12 * fabs(res->loc_loss));
    assert_true(fabs(res->loss - (res->conf_loss + cfg->alpha * res->loc_loss)) <= 1e2 * tol);
    assert_true(res->conf_loss >= 0.0 && res->loc_loss >= -1e-12);
    double N = 1.0;
    switch (cfg->normalization) {
    case MBX_NORM_POSITIVES:
        N = P > 0 ? (double)P : 1.0;
        break;
    case MBX_NORM_POSITIVES_PER_IMAGE:
        N = per_image_norm;
        break;
    case MBX_NORM_ANCHORS:
        N = (double)(B * A);
        break;
    case MBX_NORM_BATCH:
        N = (double)B;
        break;
    case MBX_NORM_NONE:
        break;
    }
    assert_true(res->normalizer == N);
}

static void test_random_inputs(void **state)
{
    (void)state;
    rng r = {31};
    const double logit_scales[4] = {0.1, 3.0, 30.0, 1e4};
    const double loc_scales[4] = {0.1, 1.0, 10.0, 100.0};
    for (int rep = 0; rep < 300; rep++) {
        mbx_config cfg;
        int64_t C;
        random_config(&cfg, &r, &C);
        batch_spec spec = {rng_int(&r, 1, 4), rng_int(&r, 1, 120), C, 0, 5,
                           logit_scales[rng_int(&r, 0, 3)], loc_scales[rng_int(&r, 0, 3)],
                           cfg.background_label, (int)rng_int(&r, 0, 1), cfg.box_format};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        mbx_detail d = {0, ""};
        assert_int_equal(mbx_config_validate(&cfg, C, &d), 0);
        mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        test_result tr, tg;
        result_alloc(&tr, &tb.b);
        if (mbx_loss_compute(l, &tb.b, &tr.r, &d))
            fail_msg("rep %d: %s", rep, d.message);
        if (!result_finite(&tr))
            fail_msg("rep %d: NaN or infinity in the result", rep);
        check_invariants(&cfg, &tb.b, &tr);
        /* The generic kernels: same choice of anchors, same losses to float accuracy. */
        mbx_loss_test_force_generic(l, 1);
        result_alloc(&tg, &tb.b);
        assert_int_equal(mbx_loss_compute(l, &tb.b, &tg.r, &d), 0);
        const size_t BA = (size_t)(tb.b.batch * tb.b.num_anchors);
        assert_memory_equal(tr.r.roles, tg.r.roles, BA);
        assert_memory_equal(tr.r.matches, tg.r.matches, BA * sizeof(int32_t));
        assert_true(fabs(tr.r.loss - tg.r.loss) <= 1e-5 * fabs(tr.r.loss) + 1e-30);
        result_free(&tg);
        result_free(&tr);
        mbx_loss_free(l);
        batch_free(&tb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_inputs),
    };
    return cmocka_run_group_tests_name("core property", tests, NULL, NULL);
}
