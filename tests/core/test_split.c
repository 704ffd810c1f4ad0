/*
 * test_split.c - the split API gives bit for bit the result of
 * mbx_loss_compute() whatever the split: two pthreads running the match and
 * grad units on their own slots, images in forward, reverse, interleaved and
 * shuffled orders, slots swapped between phases, and a context reused for
 * several batches (anchors changed in place included).  Also: a unit's
 * failure is reported by reduce (lowest image first) and finish, and later
 * units do nothing.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

typedef struct plan {
    mbx_loss *loss;
    int phase;        /* 0 match, 1 grad */
    int slot;
    const int64_t *order;
    int64_t count;
} plan;

static void *worker(void *p)
{
    plan *pl = p;
    for (int64_t i = 0; i < pl->count; i++) {
        if (pl->phase == 0)
            mbx_loss_match_image(pl->loss, pl->order[i], pl->slot);
        else
            mbx_loss_grad_image(pl->loss, pl->order[i], pl->slot);
    }
    return NULL;
}

/* Runs one phase on two threads: thread t gets order[t][0..count[t]). */
static void two_threads(mbx_loss *l, int phase, int64_t *order[2], const int64_t count[2],
                        int swap_slots)
{
    pthread_t th[2];
    plan pl[2];
    for (int t = 0; t < 2; t++) {
        pl[t] = (plan){l, phase, swap_slots ? 1 - t : t, order[t], count[t]};
        assert_int_equal(pthread_create(&th[t], NULL, worker, &pl[t]), 0);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
}

static void run_split(mbx_loss *l, const mbx_batch *b, test_result *tr, int mode, rng *r)
{
    int64_t *order[2] = {malloc((size_t)b->batch * sizeof(int64_t)),
                         malloc((size_t)b->batch * sizeof(int64_t))};
    int64_t count[2];
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_loss_begin(l, b, &tr->r, &d), 0);
    split_images_2(mode, b->batch, r, order, count);
    two_threads(l, 0, order, count, 0);
    assert_int_equal(mbx_loss_reduce(l, &d), 0);
    split_images_2((mode + 3) % 5, b->batch, r, order, count); /* another split for phase 2 */
    two_threads(l, 1, order, count, mode % 2);
    assert_int_equal(mbx_loss_finish(l, &d), 0);
    free(order[0]);
    free(order[1]);
}

static void test_split_bit_identical(void **state)
{
    (void)state;
    rng r = {21};
    for (int rep = 0; rep < 12; rep++) {
        const int64_t B = rng_int(&r, 1, 9);
        batch_spec spec = {B, rng_int(&r, 30, 300), rng_int(&r, 2, 23), 0, 6, 2.0, 1.0, 0, 1,
                           MBX_BOX_XYXY};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.conf_loss = (mbx_conf_loss)(rep % 3);
        cfg.loc_loss = (mbx_loc_loss)(rep % 6);
        cfg.bipartite = (mbx_bipartite)(rep % 3);
        cfg.normalization = (mbx_normalization)(rep % 5);
        cfg.use_difficult = rep % 2;
        cfg.neg_overlap = rep % 4 == 0 ? 0.3 : 0.5;
        mbx_loss *one = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        mbx_loss *two = loss_for(&cfg, &tb.b, tb.max_boxes, 2);
        test_result ref, got;
        result_alloc(&ref, &tb.b);
        assert_int_equal(mbx_loss_compute(one, &tb.b, &ref.r, NULL), 0);
        for (int mode = 0; mode < 5; mode++) {
            result_alloc(&got, &tb.b);
            memset(got.r.grad_conf, 0x7f, (size_t)(B * tb.b.num_anchors * tb.b.num_classes) * 4);
            run_split(two, &tb.b, &got, mode, &r);
            if (!result_identical(&ref, &got))
                fail_msg("rep %d mode %d: split result differs from mbx_loss_compute", rep, mode);
            result_free(&got);
        }
        /* The same context again on the same batch: same bits. */
        result_alloc(&got, &tb.b);
        assert_int_equal(mbx_loss_compute(one, &tb.b, &got.r, NULL), 0);
        assert_true(result_identical(&ref, &got));
        result_free(&got);
        result_free(&ref);
        mbx_loss_free(one);
        mbx_loss_free(two);
        batch_free(&tb);
    }
}

/* One context, batches of different sizes within its shape, alternating. */
static void test_context_reuse(void **state)
{
    (void)state;
    rng r = {22};
    mbx_config cfg;
    mbx_config_default(&cfg);
    mbx_shape shape = {6, 200, 10, 8, 2};
    mbx_loss *shared = NULL;
    assert_int_equal(mbx_loss_new(&shared, &cfg, &shape, NULL), 0);
    for (int rep = 0; rep < 10; rep++) {
        batch_spec spec = {rng_int(&r, 1, 6), rng_int(&r, 10, 200), rng_int(&r, 2, 10), 0, 8,
                           2.0, 1.0, 0, 0, MBX_BOX_XYXY};
        test_batch tb;
        batch_random(&tb, &spec, &r);
        mbx_loss *fresh = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        test_result a, b;
        result_alloc(&a, &tb.b);
        result_alloc(&b, &tb.b);
        assert_int_equal(mbx_loss_compute(fresh, &tb.b, &a.r, NULL), 0);
        run_split(shared, &tb.b, &b, rep % 5, &r);
        assert_true(result_identical(&a, &b));
        result_free(&a);
        result_free(&b);
        mbx_loss_free(fresh);
        batch_free(&tb);
    }
    mbx_loss_free(shared);
}

/*
 * The context keeps the anchors it converted last and skips the work when
 * the next batch brings the same ones: anchors changed in place (same
 * pointer), or rejected, must be seen.
 */
static void test_anchor_reload(void **state)
{
    (void)state;
    rng r = {24};
    batch_spec spec = {2, 64, 5, 1, 4, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    mbx_config cfg;
    mbx_config_default(&cfg);
    mbx_loss *kept = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
    test_result a, b;
    result_alloc(&a, &tb.b);
    result_alloc(&b, &tb.b);
    for (int step = 0; step < 4; step++) {
        if (step == 1) /* move one anchor in place */
            for (int k = 0; k < 4; k++)
                tb.anchors[4 * 7 + k] = tb.targets[0].boxes[k];
        if (step == 2) { /* a bad anchor, then the good ones again */
            const float keep = tb.anchors[4 * 9 + 2];
            tb.anchors[4 * 9 + 2] = tb.anchors[4 * 9];
            assert_int_equal(mbx_loss_compute(kept, &tb.b, &a.r, NULL), MBX_E_DEGENERATE_BOX);
            tb.anchors[4 * 9 + 2] = keep;
        }
        if (step == 3) /* the same values read as cxcywh */
            tb.b.anchors_format = MBX_BOX_CXCYWH;
        mbx_loss *fresh = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        assert_int_equal(mbx_loss_compute(kept, &tb.b, &a.r, NULL), 0);
        assert_int_equal(mbx_loss_compute(fresh, &tb.b, &b.r, NULL), 0);
        if (!result_identical(&a, &b))
            fail_msg("step %d: the kept context differs from a fresh one", step);
        mbx_loss_free(fresh);
    }
    result_free(&a);
    result_free(&b);
    mbx_loss_free(kept);
    batch_free(&tb);
}

/* NaN in image 3's conf and infinity in image 1's loc: reduce names image 1; nothing written. */
static void test_unit_errors(void **state)
{
    (void)state;
    rng r = {23};
    batch_spec spec = {5, 40, 4, 1, 3, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    tb.conf[(3 * 40 + 7) * 4 + 2] = NAN;
    tb.loc[(1 * 40 + 9) * 4 + 1] = INFINITY;
    mbx_config cfg;
    mbx_config_default(&cfg);
    mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 2);
    test_result tr;
    result_alloc(&tr, &tb.b);
    tr.r.loss = 12345.0;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_loss_begin(l, &tb.b, &tr.r, &d), 0);
    for (int64_t i = 4; i >= 0; i--)
        mbx_loss_match_image(l, i, (int)(i % 2));
    assert_int_equal(mbx_loss_reduce(l, &d), MBX_E_NOT_FINITE);
    assert_string_equal(d.message, "loc[1][9][1]: NaN or infinity");
    for (int64_t i = 0; i < 5; i++)
        mbx_loss_grad_image(l, i, 0); /* no-ops after a failure */
    mbx_detail d2 = {0, ""};
    assert_int_equal(mbx_loss_finish(l, &d2), MBX_E_NOT_FINITE);
    assert_string_equal(d2.message, d.message);
    assert_true(tr.r.loss == 12345.0);
    for (int64_t i = 0; i < 5 * 40 * 4; i++)
        assert_true(tr.r.grad_loc[i] == 0.0f);

    tb.loc[(1 * 40 + 9) * 4 + 1] = 0.5f;
    assert_int_equal(mbx_loss_compute(l, &tb.b, &tr.r, &d), MBX_E_NOT_FINITE);
    assert_string_equal(d.message, "conf[3][7][2]: NaN or infinity");
    tb.conf[(3 * 40 + 7) * 4 + 2] = 0.5f;
    assert_int_equal(mbx_loss_compute(l, &tb.b, &tr.r, &d), 0);
    result_free(&tr);
    mbx_loss_free(l);
    batch_free(&tb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_bit_identical),
        cmocka_unit_test(test_context_reuse),
        cmocka_unit_test(test_anchor_reload),
        cmocka_unit_test(test_unit_errors),
    };
    return cmocka_run_group_tests_name("core split determinism", tests, NULL, NULL);
}
