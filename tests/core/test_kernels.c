/*
 * test_kernels.c - the core's numeric building blocks against independent
 * references, for every kernel variant this CPU can run (generic and, on
 * x86-64 with AVX2, x86-64-v3): the vector e^x and ln(1 + x) against libm in
 * double; the ranking values against the double-precision loss within the
 * bound the exact selection relies on (mbx_rank_bound); one-row losses and
 * gradients against a test-local double reference and its central
 * differences; the detection of NaN and infinity in the passes over conf;
 * and the radix selection against qsort.
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

#include "kernels.h"
#include "select.h"
#include "testutil.h"

static int variants(mbx_kernels k[2])
{
    mbx_kernels_select(&k[0], 1);
    mbx_kernels_select(&k[1], 0);
    return strcmp(k[0].name, k[1].name) ? 2 : 1;
}

static double ulps(double got, double want)
{
    if (want == 0.0)
        return got == 0.0 ? 0.0 : INFINITY;
    return fabs(got - want) / ldexp(1.0, ilogb(want) - 23);
}

/* e^x on [-87.3, 0]: within 2 ulp of libm's double result; exactly 1 at 0. */
static void test_vexp(void **state)
{
    (void)state;
    mbx_kernels k[2];
    const int nv = variants(k);
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int v = 0; v < nv; v++) {
        double worst = 0.0;
        for (int rep = 0; rep < 16; rep++) {
            for (int i = 0; i < N; i++)
                x[i] = (float)(-87.3 * ((double)(rep * N + i) / (16.0 * N)));
            k[v].exp_array(x, y, N);
            for (int i = 0; i < N; i++)
                worst = fmax(worst, ulps(y[i], exp((double)x[i])));
        }
        x[0] = 0.0f;
        k[v].exp_array(x, y, 8);
        assert_true(y[0] == 1.0f);
        print_message("%s: vexp worst %.3f ulp\n", k[v].name, worst);
        assert_true(worst <= 2.0);
    }
    free(x);
    free(y);
}

/* ln(1 + x) for x >= 0 from 1e-30 to 1e6: within 2 ulp. */
static void test_vlog1p(void **state)
{
    (void)state;
    mbx_kernels k[2];
    const int nv = variants(k);
    enum { N = 1 << 16 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int v = 0; v < nv; v++) {
        double worst = 0.0;
        for (int i = 0; i < N; i++)
            x[i] = (float)pow(10.0, -30.0 + 36.0 * i / (double)N);
        k[v].log1p_array(x, y, N);
        for (int i = 0; i < N; i++)
            worst = fmax(worst, ulps(y[i], log1p((double)x[i])));
        x[0] = 0.0f;
        k[v].log1p_array(x, y, 8);
        assert_true(y[0] == 0.0f);
        print_message("%s: vlog1p worst %.3f ulp\n", k[v].name, worst);
        assert_true(worst <= 2.0);
    }
    free(x);
    free(y);
}

/* ---------------------------------------------- test-local double reference */

static double softplus(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

/* Per-anchor loss written from the semantics document, independently of the core. */
static double ref_loss(const mbx_kparams *kp, const double *z, int64_t target)
{
    const int64_t C = kp->num_classes;
    double sum = 0.0;
    if (kp->kind == MBX_CONF_SOFTMAX) {
        double m = z[0];
        for (int64_t c = 1; c < C; c++)
            m = fmax(m, z[c]);
        for (int64_t c = 0; c < C; c++)
            sum += exp(z[c] - m);
        return m + log(sum) - z[target];
    }
    for (int64_t c = 0; c < C; c++) {
        const double t = c == target ? 1.0 : 0.0;
        const double ce = softplus(z[c]) - t * z[c]; /* BCE with logits */
        if (kp->kind == MBX_CONF_SIGMOID) {
            sum += ce;
        } else {
            const double p = 1.0 / (1.0 + exp(-z[c]));
            const double pt = p * t + (1.0 - p) * (1.0 - t);
            const double at = kp->focal_alpha * t + (1.0 - kp->focal_alpha) * (1.0 - t);
            sum += at * ce * pow(1.0 - pt, kp->focal_gamma);
        }
    }
    return sum;
}

static void random_row(rng *r, float *z, int64_t C, int extreme)
{
    const double scale = extreme == 1 ? 30.0 : extreme == 2 ? 1e4 : 3.0;
    for (int64_t c = 0; c < C; c++)
        z[c] = (float)(scale * rng_normal(r));
    if (extreme == 3) /* ties: a repeated maximum */
        for (int64_t c = 0; c < C; c += 3)
            z[c] = 2.5f;
}

/*
 * The image pass (iou_all) with no GT over A rows: all anchors eligible.
 * Fills lb, hist and list when want_floor; returns the finiteness flags.
 */
static int rows_pass(const mbx_kernels *k, const mbx_kparams *kp, const float *conf,
                     const float *loc, int64_t A, int64_t target, int want_floor, float collect,
                     float *lb, uint32_t *hist, int32_t *list, int64_t *nlist)
{
    const int64_t apad = (A + MBX_ANCHOR_BLOCK - 1) / MBX_ANCHOR_BLOCK * MBX_ANCHOR_BLOCK;
    const mbx_anchor_cols an = {.count = A, .apad = apad};
    int32_t *match = malloc((size_t)A * sizeof *match);
    uint8_t *role = malloc((size_t)A);
    float *zero_loc = calloc((size_t)A * 4, sizeof(float));
    mbx_rows_pass rp = {.conf = conf,
                        .loc = loc ? loc : zero_loc,
                        .target = target,
                        .want_floor = want_floor,
                        .lb = lb,
                        .hist = hist,
                        .collect = collect,
                        .list = list};
    int64_t eligible;
    const int64_t pos = k->iou_all(kp, &an, NULL, 0, 0.5, 0.5, NULL, NULL, NULL, match, role,
                                   &eligible, &rp);
    assert_int_equal(pos, 0);
    assert_int_equal(eligible, A);
    if (nlist)
        *nlist = rp.nlist;
    free(match);
    free(role);
    free(zero_loc);
    return rp.flags;
}

/*
 * The fast ranking values (rank, rank_list, and the row losses) are within
 * mbx_rank_bound of the double-precision loss: the exactness of the negative
 * selection rests on this.
 */
static void test_rank_bound(void **state)
{
    (void)state;
    int64_t pruned = 0; /* rows prune dropped: it must do something */
    mbx_kernels k[2];
    const int nv = variants(k);
    rng r = {42};
    enum { A = 61 };
    for (int v = 0; v < nv; v++)
        for (int kind = 0; kind < 3; kind++)
            for (int64_t C = 1; C <= 70; C += (C < 24 ? 1 : 23)) {
                if (kind == MBX_CONF_SOFTMAX && C < 2)
                    continue;
                mbx_kparams kp = {(mbx_conf_loss)kind, C, 0.3, kind == 2 ? 1.7 : 0.0, 0.3f,
                                  1.7f};
                float *conf = malloc((size_t)(A * C) * sizeof(float));
                float rank[A], list[A], scratch[A], grad[128];
                int32_t idx[A];
                double er, ea;
                mbx_rank_bound(&kp, &er, &ea);
                for (int extreme = 0; extreme < 4; extreme++) {
                    for (int a = 0; a < A; a++)
                        random_row(&r, conf + a * C, C, extreme);
                    for (int64_t target = kind == 0 ? 0 : -1; target < C; target += 2) {
                        assert_int_equal(k[v].rank(&kp, conf, A, target, rank, scratch), 1);
                        for (int a = 0; a < A; a++)
                            idx[a] = (int32_t)((a * 7) % A);
                        assert_int_equal(
                            k[v].rank_list(&kp, conf, idx, A, target, list, scratch), 1);
                        for (int a = 0; a < A; a++) {
                            double zd[128];
                            for (int64_t c = 0; c < C; c++)
                                zd[c] = conf[a * C + c];
                            const double exact = mbx_row_loss_exact(&kp, conf + a * C, target);
                            const double ref = ref_loss(&kp, zd, target);
                            /*
                             * The core's own double reference agrees with the test's, whose
                             * m + ln(sum) - z_t cancels: allow 1e-13 of the magnitudes.
                             */
                            double mag = 1.0;
                            for (int64_t c = 0; c < C; c++)
                                mag += fabs(zd[c]);
                            if (!(fabs(exact - ref) <= 1e-13 * mag))
                                fail_msg("exact %.17g vs reference %.17g (kind %d C %lld)",
                                         exact, ref, kind, (long long)C);
                            const double tol = er * exact + ea;
                            if (!(fabs(rank[a] - exact) <= tol))
                                fail_msg("%s kind %d C %lld target %lld extreme %d: rank %.9g "
                                         "exact %.9g tol %.3g",
                                         k[v].name, kind, (long long)C, (long long)target,
                                         extreme, rank[a], exact, tol);
                            const double fast = k[v].row(&kp, conf + a * C, target, 1.0f, grad);
                            assert_true(fabs(fast - exact) <= tol);
                        }
                        for (int a = 0; a < A; a++)
                            assert_true(list[a] == rank[idx[a]]);
                        if (kind == MBX_CONF_SOFTMAX) {
                            /* The pruning bound holds: lb <= exact loss <= lb + ln C. */
                            float lb[A];
                            uint32_t hist[MBX_FLOOR_BINS];
                            int32_t idx2[A];
                            int64_t nl;
                            const float collect = 1.5f;
                            rows_pass(&k[v], &kp, conf, NULL, A, target, 1, collect, lb, hist,
                                      idx2, &nl);
                            int64_t want = 0;
                            for (int a = 0; a < A; a++)
                                if (lb[a] >= collect) /* collected, in order */
                                    assert_int_equal(idx2[want++], a);
                            assert_int_equal(nl, want);
                            for (int a = 0; a < A; a++) {
                                const double exact = mbx_row_loss_exact(&kp, conf + a * C, target);
                                if (!(lb[a] <= exact * (1.0 + 1e-6) &&
                                      exact <= lb[a] * (1.0 + 1e-6) + log((double)C)))
                                    fail_msg("%s C %lld: lb %.9g for loss %.9g", k[v].name,
                                             (long long)C, lb[a], exact);
                            }
                            /*
                             * prune keeps, in order, every row whose exact loss reaches
                             * lk; lk runs over the rows' own losses, the hardest cuts.
                             */
                            for (int t = 0; t < A; t += 3) {
                                const double lk = mbx_row_loss_exact(&kp, conf + t * C, target);
                                for (int a = 0; a < A; a++)
                                    idx2[a] = (int32_t)((a * 7) % A);
                                const int64_t kept = k[v].prune(&kp, conf, idx2, A, target, lk);
                                int64_t at = 0;
                                for (int a = 0; a < A; a++) {
                                    const int32_t row = (int32_t)((a * 7) % A);
                                    const int in = at < kept && idx2[at] == row;
                                    at += in;
                                    if (!in && mbx_row_loss_exact(&kp, conf + row * C,
                                                                  target) >= lk)
                                        fail_msg("%s C %lld: prune dropped row %d (loss %.17g, "
                                                 "lk %.17g)",
                                                 k[v].name, (long long)C, row,
                                                 mbx_row_loss_exact(&kp, conf + row * C, target),
                                                 lk);
                                }
                                assert_int_equal(at, kept); /* a subsequence, in order */
                                pruned += A - kept;
                            }
                        }
                    }
                }
                free(conf);
            }
    assert_true(pruned > 0);
}

/*
 * Row gradients against central differences of the test's double reference
 * (h = 1e-5 in double: truncation ~h^2 |third derivative| / 6 < 1e-10,
 * rounding ~1e-16 / h < 1e-10).  The kernels compute in float32: p - t
 * carries a few ulp of 1 absolute error, times the scale, and the rest is
 * within 1e-5 relative.
 */
static void test_row_gradient(void **state)
{
    (void)state;
    mbx_kernels k[2];
    const int nv = variants(k);
    rng r = {7};
    for (int v = 0; v < nv; v++)
        for (int kind = 0; kind < 3; kind++)
            for (int64_t C = 1; C <= 40; C += 3) {
                if (kind == 0 && C < 2)
                    continue;
                for (int gi = 0; gi < 3; gi++) {
                    const double gammas[3] = {0.0, 0.5, 2.0};
                    mbx_kparams kp = {(mbx_conf_loss)kind, C, 0.25, gammas[gi], 0.25f,
                                      (float)gammas[gi]};
                    float z[64], g[64];
                    double zd[64];
                    random_row(&r, z, C, 0);
                    for (int64_t target = kind == 0 ? 0 : -1; target < C; target += 3) {
                        const float scale = 0.375f;
                        k[v].row(&kp, z, target, scale, g);
                        double gmax = 0.0;
                        for (int64_t c = 0; c < C; c++)
                            gmax = fmax(gmax, fabs(g[c]));
                        for (int64_t c = 0; c < C; c++) {
                            for (int64_t j = 0; j < C; j++)
                                zd[j] = z[j];
                            const double h = 1e-5;
                            zd[c] = (double)z[c] + h;
                            const double up = ref_loss(&kp, zd, target);
                            zd[c] = (double)z[c] - h;
                            const double dn = ref_loss(&kp, zd, target);
                            const double fd = scale * (up - dn) / (2 * h);
                            (void)gmax;
                            if (!(fabs(fd - g[c]) <= 4 * 0x1p-23 * scale + 1e-5 * fabs(fd)))
                                fail_msg("%s kind %d C %lld gamma %g target %lld col %lld: grad "
                                         "%.9g fd %.9g",
                                         k[v].name, kind, (long long)C, gammas[gi],
                                         (long long)target, (long long)c, g[c], fd);
                        }
                    }
                }
            }
}

/* Logits of +-1e4 and beyond: finite losses and gradients. */
/*
 * rows8 gives each of its eight rows the bits row gives it alone: loss and
 * gradient, every kind, C across the vector widths (tails that are copies,
 * that overlap a full vector, and none), rows with ties and huge logits,
 * some gradients not asked.
 */
static void test_rows8_same_bits(void **state)
{
    (void)state;
    mbx_kernels k[2];
    const int nv = variants(k);
    rng r = {11};
    for (int v = 0; v < nv; v++)
        for (int kind = 0; kind < 3; kind++)
            for (int64_t C = 1; C <= 90; C += (C < 26 ? 1 : 16)) {
                if (kind == MBX_CONF_SOFTMAX && C < 2)
                    continue;
                mbx_kparams kp = {(mbx_conf_loss)kind, C, 0.25, kind == 2 ? 2.0 : 0.0, 0.25f,
                                  kind == 2 ? 2.0f : 0.0f};
                float z[8][96], g8[8][96], g1[96];
                const float *zp[8];
                float *gp[8];
                int64_t target[8];
                double loss[8];
                for (int rep = 0; rep < 4; rep++) {
                    for (int i = 0; i < 8; i++) {
                        random_row(&r, z[i], C, (rep + i) % 4);
                        zp[i] = z[i];
                        target[i] = kind == 0 ? (i * 5 + rep) % C : (i * 5 + rep) % (C + 1) - 1;
                        gp[i] = (i + rep) % 5 == 4 ? NULL : g8[i];
                        for (int c = 0; c < 96; c++)
                            g8[i][c] = -7.0f; /* untouched past C */
                    }
                    k[v].rows8(&kp, zp, target, 0.375f, gp, loss);
                    for (int i = 0; i < 8; i++) {
                        const double one = k[v].row(&kp, z[i], target[i], 0.375f, gp[i] ? g1 : NULL);
                        if (memcmp(&one, &loss[i], sizeof one) != 0)
                            fail_msg("%s kind %d C %lld row %d: rows8 loss %.17g, row %.17g",
                                     k[v].name, kind, (long long)C, i, loss[i], one);
                        if (gp[i]) {
                            assert_memory_equal(g8[i], g1, (size_t)C * sizeof(float));
                            for (int c = (int)C; c < 96; c++)
                                assert_true(g8[i][c] == -7.0f);
                        }
                    }
                }
            }
}

static void test_row_extremes(void **state)
{
    (void)state;
    mbx_kernels k[2];
    const int nv = variants(k);
    const float vals[] = {1e4f, -1e4f, 3e38f, -3e38f, 0.0f, 88.0f, -88.0f, 1e-30f};
    for (int v = 0; v < nv; v++)
        for (int kind = 0; kind < 3; kind++) {
            mbx_kparams kp = {(mbx_conf_loss)kind, 5, 0.25, 2.0, 0.25f, 2.0f};
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++) {
                    float z[5] = {vals[i], vals[j], vals[(i + j) % 8], vals[(i * 3) % 8],
                                  vals[(j * 5) % 8]}, g[5], rank;
                    for (int64_t t = kind == 0 ? 0 : -1; t < 5; t++) {
                        const double l = k[v].row(&kp, z, t, 1.0f, g);
                        assert_true(isfinite(l));
                        for (int c = 0; c < 5; c++)
                            assert_true(isfinite(g[c]));
                        assert_true(isfinite(mbx_row_loss_exact(&kp, z, t)));
                        float scratch[1];
                        k[v].rank(&kp, z, 1, t, &rank, scratch);
                        assert_false(isnan(rank));
                    }
                }
        }
}

/* The image pass's finiteness flags for A rows of conf (and loc, may be NULL). */
static int floor_flags(const mbx_kernels *k, const mbx_kparams *kp, const float *conf, int64_t A,
                       const float *loc)
{
    float *lb = malloc((size_t)A * sizeof *lb);
    int32_t *list = malloc((size_t)A * sizeof *list);
    uint32_t *hist = malloc(MBX_FLOOR_BINS * sizeof *hist);
    const int ok = rows_pass(k, kp, conf, loc, A, 0, kp->kind == MBX_CONF_SOFTMAX, 0.0f, lb, hist,
                             list, NULL);
    free(lb);
    free(list);
    free(hist);
    return ok;
}

/*
 * The passes over conf report any NaN or infinity (every position, tail
 * lanes included) and never a batch of huge but finite logits whose sum
 * overflows.
 */
static void test_finiteness(void **state)
{
    (void)state;
    mbx_kernels k[2];
    const int nv = variants(k);
    rng r = {9};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    enum { A = 19 };
    for (int v = 0; v < nv; v++)
        for (int kind = 0; kind < 3; kind++)
            for (int64_t C = 2; C <= 21; C += (C < 9 ? 1 : 6)) {
                mbx_kparams kp = {(mbx_conf_loss)kind, C, 0.25, 2.0, 0.25f, 2.0f};
                float *conf = malloc((size_t)(A * C) * sizeof(float));
                float out[A], scratch[A];
                int32_t idx[A];
                for (int a = 0; a < A; a++)
                    idx[a] = a;
                /* Huge finite values everywhere: all finite. */
                for (int64_t i = 0; i < A * C; i++)
                    conf[i] = (i % 3 ? 3e38f : -3e38f);
                assert_int_equal(k[v].rank(&kp, conf, A, 0, out, scratch), 1);
                assert_int_equal(k[v].rank_list(&kp, conf, idx, A, 0, out, scratch), 1);
                assert_int_equal(floor_flags(&k[v], &kp, conf, A, NULL),
                                 MBX_FLOOR_CONF_OK | MBX_FLOOR_LOC_OK);
                for (int64_t pos = 0; pos < A * C; pos += 1 + (pos % 5)) {
                    for (int64_t i = 0; i < A * C; i++)
                        conf[i] = (float)rng_normal(&r);
                    conf[pos] = bad[pos % 3];
                    const int64_t row = pos / C;
                    if (k[v].rank(&kp, conf, A, 0, out, scratch) != 0)
                        fail_msg("%s kind %d C %lld: rank missed %g at %lld", k[v].name, kind,
                                 (long long)C, conf[pos], (long long)pos);
                    assert_int_equal(k[v].rank_list(&kp, conf, idx, A, 0, out, scratch), 0);
                    /* Only the listed rows count for rank_list. */
                    int32_t others[A];
                    int64_t m = 0;
                    for (int a = 0; a < A; a++)
                        if (a != row)
                            others[m++] = a;
                    assert_int_equal(k[v].rank_list(&kp, conf, others, m, 0, out, scratch), 1);
                    assert_int_equal(floor_flags(&k[v], &kp, conf, A, NULL), MBX_FLOOR_LOC_OK);
                }
                {
                    /* The loc rows the image pass checks as it streams. */
                    float loc[A * 4];
                    for (int64_t i = 0; i < A * C; i++)
                        conf[i] = (float)rng_normal(&r);
                    for (int i = 0; i < A * 4; i++)
                        loc[i] = i % 2 ? 3e38f : 2e38f; /* sums overflow, values finite */
                    assert_int_equal(floor_flags(&k[v], &kp, conf, A, loc),
                                     MBX_FLOOR_CONF_OK | MBX_FLOOR_LOC_OK);
                    for (int pos = 0; pos < A * 4; pos += 7) {
                        const float keep = loc[pos];
                        loc[pos] = bad[pos % 3];
                        assert_int_equal(floor_flags(&k[v], &kp, conf, A, loc),
                                         MBX_FLOOR_CONF_OK);
                        loc[pos] = keep;
                    }
                }
                free(conf);
            }
}

static int cmp_desc(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Radix selection = qsort's k-th element, with duplicates, negatives, zeros, infinities. */
static void test_kth_largest(void **state)
{
    (void)state;
    rng r = {3};
    for (int rep = 0; rep < 200; rep++) {
        const int64_t n = rng_int(&r, 1, 3000);
        float *v = malloc((size_t)n * sizeof *v), *s = malloc((size_t)n * sizeof *s);
        uint32_t *scratch = malloc((size_t)n * sizeof *scratch);
        const int mode = rep % 4;
        for (int64_t i = 0; i < n; i++) {
            double x = rng_normal(&r);
            if (mode == 1)
                x = floor(x * 3.0); /* many duplicates */
            if (mode == 2)
                x = fabs(x) * 1e-38; /* denormals and tiny values */
            if (mode == 3 && i % 17 == 0)
                x = i % 2 ? INFINITY : -0.0;
            v[i] = (float)x;
        }
        memcpy(s, v, (size_t)n * sizeof *s);
        qsort(s, (size_t)n, sizeof *s, cmp_desc);
        for (int t = 0; t < 5; t++) {
            const int64_t k = t == 0 ? 1 : t == 1 ? n : rng_int(&r, 1, n);
            const float got = mbx_kth_largest(v, n, k, scratch);
            if (!(got == s[k - 1]))
                fail_msg("n %lld k %lld: got %.9g expected %.9g", (long long)n, (long long)k, got,
                         s[k - 1]);
        }
        free(v);
        free(s);
        free(scratch);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vexp),          cmocka_unit_test(test_vlog1p),
        cmocka_unit_test(test_rank_bound),    cmocka_unit_test(test_row_gradient),
        cmocka_unit_test(test_row_extremes),  cmocka_unit_test(test_finiteness),
        cmocka_unit_test(test_kth_largest),   cmocka_unit_test(test_rows8_same_bits),
    };
    return cmocka_run_group_tests_name("core kernels", tests, NULL, NULL);
}
