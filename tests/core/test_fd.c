/*
 * test_fd.c - central finite differences of the loss against the analytic
 * gradients, for every loc_loss x conf_loss x mining x normalization
 * combination (6 x 3 x 2 x 5), and again with background_label -1 for
 * sigmoid and focal (6 x 2 x 2 x 5), on small random batches (B = 2, A = 40,
 * C = 4, 1-3 GT per image) with randomised thresholds, variances (2 or 4),
 * beta, alpha, focal parameters and bipartite mode.
 *
 * The loss differentiated is the core's own total with the per-anchor
 * classification losses in libm double (test hook; the localization losses
 * are double anyway), so the differences are free of float32 noise; the
 * gradients checked are the fast float32 ones.  For ciou the trade-off
 * factor alpha is frozen at the unperturbed loc (test hook), which is
 * exactly the convention of torchvision (alpha computed without gradient):
 * the analytic gradient is the derivative of that function.
 *
 * Steps are h = 2^-16, exactly representable next to every input here but
 * the tiniest (|x| < 2^7); the quotient divides by the difference of the
 * float32 inputs really used.  The
 * mining selection must not change under a perturbation: batches whose
 * counted and uncounted negatives are closer than 1e-3 in loss are redrawn,
 * and every perturbed run's roles are compared with the base run's.
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

typedef struct combo {
    mbx_loc_loss loc;
    mbx_conf_loss conf;
    mbx_mining mining;
    mbx_normalization norm;
    int no_background;
    int index;
    char name[96];
} combo;

static const char *const loc_names[] = {"smooth_l1", "l1", "l2", "giou", "diou", "ciou"};
static const char *const conf_names[] = {"softmax", "sigmoid", "focal"};
static const char *const mining_names[] = {"hard_negative", "none"};
static const char *const norm_names[] = {"positives", "positives_per_image", "anchors", "batch",
                                         "none"};

static void random_config(mbx_config *cfg, const combo *cb, rng *r)
{
    mbx_config_default(cfg);
    cfg->loc_loss = cb->loc;
    cfg->conf_loss = cb->conf;
    cfg->mining = cb->mining;
    cfg->normalization = cb->norm;
    cfg->background_label = cb->no_background ? -1 : (int)rng_int(r, 0, 3);
    cfg->bipartite = (mbx_bipartite)rng_int(r, 0, 2);
    cfg->overlap_threshold = rng_range(r, 0.3, 0.6);
    cfg->neg_overlap = rng_uniform(r) < 0.5 ? cfg->overlap_threshold : rng_range(r, 0.1, 0.3);
    cfg->num_variances = rng_uniform(r) < 0.5 ? 2 : 4;
    for (int i = 0; i < 4; i++)
        cfg->variances[i] = rng_range(r, 0.1, 0.3);
    cfg->smooth_l1_beta = rng_range(r, 0.3, 2.0);
    cfg->alpha = rng_range(r, 0.5, 2.0);
    cfg->focal_alpha = rng_range(r, 0.1, 0.9);
    const double gammas[3] = {0.0, 1.5, 2.0};
    cfg->focal_gamma = gammas[rng_int(r, 0, 2)];
    cfg->neg_pos_ratio = (double)rng_int(r, 1, 3);
    cfg->min_negatives = rng_int(r, 0, 2);
}

/* Smallest loss gap between counted and uncounted eligible negatives of any image. */
static double selection_gap(const mbx_config *cfg, const mbx_batch *b, const uint8_t *roles)
{
    double gap = INFINITY;
    const int64_t A = b->num_anchors, C = b->num_classes;
    for (int64_t i = 0; i < b->batch; i++) {
        double lo_sel = INFINITY, hi_rest = -INFINITY;
        for (int64_t a = 0; a < A; a++) {
            const uint8_t role = roles[i * A + a];
            if (role != MBX_ROLE_NEGATIVE && role != MBX_ROLE_NONE)
                continue;
            const double l = ref_conf_loss(cfg->conf_loss, C, cfg->focal_alpha, cfg->focal_gamma,
                                           b->conf + (i * A + a) * C, cfg->background_label);
            if (role == MBX_ROLE_NEGATIVE)
                lo_sel = fmin(lo_sel, l);
            else
                hi_rest = fmax(hi_rest, l);
        }
        if (lo_sel < INFINITY && hi_rest > -INFINITY)
            gap = fmin(gap, lo_sel - hi_rest);
    }
    return gap;
}

static double run(mbx_loss *l, const mbx_batch *b, test_result *tr)
{
    mbx_detail d = {0, ""};
    int rc = mbx_loss_compute(l, b, &tr->r, &d);
    if (rc)
        fail_msg("compute: %s", d.message);
    return tr->r.loss;
}

/* Central difference of the loss in x (a float of the batch) against the analytic g. */
static void check_element(mbx_loss *l, const mbx_batch *b, float *x, double g, double gmax,
                          double abs_floor, const test_result *base, test_result *tmp,
                          const char *what, int64_t flat)
{
    const double h = 0x1p-16;
    const float orig = *x;
    const float up = (float)(orig + h), dn = (float)(orig - h);
    assert_true(up > orig && dn < orig);
    const size_t BA = (size_t)(b->batch * b->num_anchors);
    *x = up;
    const double lu = run(l, b, tmp);
    assert_memory_equal(tmp->r.roles, base->r.roles, BA);
    *x = dn;
    const double ld = run(l, b, tmp);
    assert_memory_equal(tmp->r.roles, base->r.roles, BA);
    *x = orig;
    /* The float inputs really used: (up - dn) is 2h up to the rounding of tiny inputs. */
    const double fd = (lu - ld) / ((double)up - (double)dn);
    /*
     * Tolerance: the float32 gradient's own rounding (2^-24 relative, and for
     * the classification p - t a few ulp of 1 times 1/N: abs_floor), the
     * float32 exp/log of the kernels (~1e-6 relative), the difference
     * quotient's truncation h^2 f'''/6 ~ 1e-10 and rounding 1e-16 L / h
     * ~ 1e-10: 1e-5 relative plus 1e-6 of the tensor's largest entry.
     */
    const double tol = 1e-5 * fabs(fd) + 1e-6 * gmax + abs_floor;
    if (!(fabs(fd - g) <= tol))
        fail_msg("%s[%lld]: analytic %.10g, finite difference %.10g (tol %.3g)", what,
                 (long long)flat, g, fd, tol);
}

static void test_combo(void **state)
{
    const combo *cb = *state;
    rng r = {0x5eed0000ull + (uint64_t)cb->index * 7919u};
    mbx_config cfg;
    test_batch tb;
    test_result base, tmp;
    mbx_loss *l = NULL;
    for (int attempt = 0;; attempt++) {
        if (attempt == 50)
            fail_msg("no well-separated batch in 50 draws");
        random_config(&cfg, cb, &r);
        batch_spec spec = {2, 40, 4, 1, 3, 1.5, 0.5, cfg.background_label, 1, MBX_BOX_XYXY};
        cfg.use_difficult = rng_uniform(&r) < 0.7;
        batch_random(&tb, &spec, &r);
        l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        mbx_loss_test_set_exact_rows(l, 1);
        result_alloc(&base, &tb.b);
        run(l, &tb.b, &base);
        if (base.r.num_positives > 0 &&
            (cfg.mining == MBX_MINING_NONE || selection_gap(&cfg, &tb.b, base.r.roles) > 1e-3))
            break;
        result_free(&base);
        mbx_loss_free(l);
        batch_free(&tb);
    }
    /* CIoU: alpha frozen at the unperturbed loc, the same in every run. */
    const int64_t B = tb.b.batch, A = tb.b.num_anchors, C = tb.b.num_classes;
    float *alpha_loc = malloc((size_t)(B * A * 4) * sizeof(float));
    memcpy(alpha_loc, tb.loc, (size_t)(B * A * 4) * sizeof(float));
    mbx_loss_test_set_ciou_alpha_loc(l, alpha_loc);
    run(l, &tb.b, &base);
    result_alloc(&tmp, &tb.b);

    double gmax_loc = 0.0, gmax_conf = 0.0;
    for (int64_t i = 0; i < B * A * 4; i++)
        gmax_loc = fmax(gmax_loc, fabs(base.r.grad_loc[i]));
    for (int64_t i = 0; i < B * A * C; i++)
        gmax_conf = fmax(gmax_conf, fabs(base.r.grad_conf[i]));
    const double conf_floor = 8 * 0x1p-24 / base.r.normalizer;

    int64_t checked = 0;
    for (int64_t i = 0; i < B; i++) {
        /* Every counted row, and two rows that do not count (gradient 0). */
        int64_t extra_loc = 2, extra_conf = 2;
        for (int64_t a = 0; a < A; a++) {
            const int64_t row = i * A + a;
            const uint8_t role = base.r.roles[row];
            const int pos = role == MBX_ROLE_POSITIVE;
            const int counted = pos || role == MBX_ROLE_NEGATIVE;
            const int pick_loc = pos || (extra_loc > 0 && rng_uniform(&r) < 0.1);
            const int pick_conf = counted || (extra_conf > 0 && rng_uniform(&r) < 0.1);
            if (pick_loc && !pos)
                extra_loc--;
            if (pick_conf && !counted)
                extra_conf--;
            for (int k = 0; pick_loc && k < 4; k++, checked++)
                check_element(l, &tb.b, &tb.loc[row * 4 + k], base.r.grad_loc[row * 4 + k],
                              gmax_loc, 0.0, &base, &tmp, "grad_loc", row * 4 + k);
            for (int64_t c = 0; pick_conf && c < C; c++, checked++)
                check_element(l, &tb.b, &tb.conf[row * C + c], base.r.grad_conf[row * C + c],
                              gmax_conf, conf_floor, &base, &tmp, "grad_conf", row * C + c);
        }
    }
    assert_true(checked > 0);
    free(alpha_loc);
    result_free(&tmp);
    result_free(&base);
    mbx_loss_free(l);
    batch_free(&tb);
}

int main(void)
{
    enum { MAX = 6 * 3 * 2 * 5 * 2 };
    static combo combos[MAX];
    static struct CMUnitTest tests[MAX];
    int n = 0;
    for (int nb = 0; nb < 2; nb++)
        for (int lo = 0; lo < 6; lo++)
            for (int cf = 0; cf < 3; cf++)
                for (int mi = 0; mi < 2; mi++)
                    for (int no = 0; no < 5; no++) {
                        if (nb && cf == MBX_CONF_SOFTMAX)
                            continue; /* no background column: not with softmax */
                        combo *cb = &combos[n];
                        *cb = (combo){(mbx_loc_loss)lo, (mbx_conf_loss)cf, (mbx_mining)mi,
                                      (mbx_normalization)no, nb, n, ""};
                        snprintf(cb->name, sizeof cb->name, "%s/%s/%s/%s%s", loc_names[lo],
                                 conf_names[cf], mining_names[mi], norm_names[no],
                                 nb ? "/background -1" : "");
                        tests[n] = (struct CMUnitTest){cb->name, test_combo, NULL, NULL, cb};
                        n++;
                    }
    return _cmocka_run_group_tests("core finite differences", tests, (size_t)n, NULL, NULL);
}
