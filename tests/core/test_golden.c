/*
 * test_golden.c - every golden case straight through the core (no codec):
 * losses within a relative 1e-5, normalizer, counts and matches exact,
 * gradients within 1e-6 + 1e-4 max|grad| (the golden README's tolerances).
 * Each case runs with the CPU's kernels, with the generic kernels forced,
 * and with the double-precision per-anchor losses of the test hook.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "golden_load.h"
#include "loss_impl.h"
#include "testutil.h"

static void check_rel(const char *what, double got, double want)
{
    if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-12))
        fail_msg("%s: got %.12g, expected %.12g (rel %.3g)", what, got, want,
                 fabs(got - want) / fabs(want));
}

static void check_grad(const char *what, const float *got, const float *want, size_t n,
                       int64_t row)
{
    double mx = 0.0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(want[i]));
    const double tol = 1e-6 + 1e-4 * mx;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - (double)want[i]) <= tol))
            fail_msg("%s[%zu] (row %zu, col %zu): got %.9g, expected %.9g (tol %.3g)", what, i,
                     i / (size_t)row, i % (size_t)row, got[i], want[i], tol);
}

/* mode 0: CPU kernels; 1: generic kernels; 2: exact per-anchor losses. */
static void run_case(const char *file, int mode)
{
    char path[1024], err[256];
    golden_path(file, path, sizeof path);
    golden_case gc;
    if (golden_load(path, &gc, err, sizeof err))
        fail_msg("%s", err);
    mbx_loss *l = loss_for(&gc.cfg, &gc.batch, gc.max_boxes, 1);
    if (mode == 1)
        mbx_loss_test_force_generic(l, 1);
    if (mode == 2)
        mbx_loss_test_set_exact_rows(l, 1);
    test_result tr;
    result_alloc(&tr, &gc.batch);
    mbx_detail d = {0, ""};
    int rc = mbx_loss_compute(l, &gc.batch, &tr.r, &d);
    if (rc)
        fail_msg("%s: %s", gc.name, d.message);
    const mbx_result *r = &tr.r;
    const int64_t B = gc.batch.batch, A = gc.batch.num_anchors, C = gc.batch.num_classes;
    assert_true(r->normalizer == gc.normalizer);
    assert_int_equal(r->num_positives, gc.num_positives);
    assert_int_equal(r->num_negatives, gc.num_negatives);
    for (int64_t i = 0; i < B; i++) {
        assert_int_equal(r->per_image[i].num_positives, gc.per_image[i].num_positives);
        assert_int_equal(r->per_image[i].num_negatives, gc.per_image[i].num_negatives);
    }
    for (int64_t i = 0; i < B * A; i++)
        if (r->matches[i] != gc.matches[i])
            fail_msg("matches[%lld][%lld]: got %d, expected %d", (long long)(i / A),
                     (long long)(i % A), r->matches[i], gc.matches[i]);
    check_rel("loss", r->loss, gc.loss);
    check_rel("conf_loss", r->conf_loss, gc.conf_loss);
    check_rel("loc_loss", r->loc_loss, gc.loc_loss);
    for (int64_t i = 0; i < B; i++) {
        char w[64];
        snprintf(w, sizeof w, "per_image[%lld].loss", (long long)i);
        check_rel(w, r->per_image[i].loss, gc.per_image[i].loss);
        snprintf(w, sizeof w, "per_image[%lld].conf_loss", (long long)i);
        check_rel(w, r->per_image[i].conf_loss, gc.per_image[i].conf_loss);
        snprintf(w, sizeof w, "per_image[%lld].loc_loss", (long long)i);
        check_rel(w, r->per_image[i].loc_loss, gc.per_image[i].loc_loss);
    }
    check_grad("grad_loc", r->grad_loc, gc.grad_loc, (size_t)(B * A * 4), 4);
    check_grad("grad_conf", r->grad_conf, gc.grad_conf, (size_t)(B * A * C), C);
    result_free(&tr);
    mbx_loss_free(l);
    golden_free(&gc);
}

static void test_case_fast(void **state)
{
    run_case(*state, 0);
}

static void test_case_generic(void **state)
{
    run_case(*state, 1);
}

static void test_case_exact(void **state)
{
    run_case(*state, 2);
}

int main(void)
{
    char **names;
    int n = golden_list(&names);
    if (n <= 0) {
        fprintf(stderr, "no golden cases found (MBX_GOLDEN_DIR)\n");
        return 1;
    }
    struct CMUnitTest *tests = calloc((size_t)n * 3, sizeof *tests);
    char **labels = calloc((size_t)n * 3, sizeof *labels);
    static const char *const suffix[3] = {"", " [generic kernels]", " [exact rows]"};
    void (*const fns[3])(void **) = {test_case_fast, test_case_generic, test_case_exact};
    for (int m = 0; m < 3; m++)
        for (int i = 0; i < n; i++) {
            int k = m * n + i;
            labels[k] = malloc(strlen(names[i]) + 32);
            sprintf(labels[k], "%s%s", names[i], suffix[m]);
            tests[k].name = labels[k];
            tests[k].test_func = fns[m];
            tests[k].initial_state = names[i];
        }
    int rc = _cmocka_run_group_tests("core golden cases", tests, (size_t)n * 3, NULL, NULL);
    for (int k = 0; k < n * 3; k++)
        free(labels[k]);
    free(labels);
    free(tests);
    golden_list_free(names, n);
    return rc;
}
