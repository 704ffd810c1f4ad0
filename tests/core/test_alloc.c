/*
 * test_alloc.c - allocation failure injected at every allocation of
 * mbx_loss_new() in turn (jansson's chaos test, curl's torture test): each
 * failure returns MBX_E_OUT_OF_MEMORY with *out NULL and nothing leaks (the
 * hook counts live blocks; the sanitizer build also runs LeakSanitizer).
 * Also: shapes whose workspace size overflows fail before any allocation, and
 * no compute call allocates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "testutil.h"

static int64_t calls, fail_at, live;

static void *counting_malloc(size_t n)
{
    if (++calls == fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        live++;
    return p;
}

static void counting_free(void *p)
{
    live--;
    free(p);
}

static void test_fail_each_allocation(void **state)
{
    (void)state;
    const mbx_shape shapes[3] = {{32, 8732, 21, 10, 2}, {1, 1, 2, 0, 1}, {4, 100, 5, 3, 8}};
    mbx_config cfg;
    mbx_config_default(&cfg);
    for (int s = 0; s < 3; s++) {
        int64_t n = 0;
        for (fail_at = 1;; fail_at++) {
            calls = live = 0;
            mbx_core_set_allocator(counting_malloc, counting_free);
            mbx_loss *l = (mbx_loss *)(uintptr_t)1;
            mbx_detail d = {0, ""};
            const int rc = mbx_loss_new(&l, &cfg, &shapes[s], &d);
            if (rc == 0) {
                assert_true(l != NULL);
                assert_true(live > 0);
                mbx_loss_free(l);
                assert_int_equal(live, 0);
                mbx_core_set_allocator(NULL, NULL);
                break;
            }
            mbx_core_set_allocator(NULL, NULL);
            assert_int_equal(rc, MBX_E_OUT_OF_MEMORY);
            assert_int_equal(d.code, MBX_E_OUT_OF_MEMORY);
            assert_null(l);
            assert_int_equal(live, 0);
            n++;
        }
        print_message("shape %d: %lld allocation(s), each failure handled\n", s, (long long)n);
        assert_true(n >= 1);
    }
}

/* After mbx_loss_new, computing never allocates: every allocation fails meanwhile. */
static void test_compute_allocates_nothing(void **state)
{
    (void)state;
    rng r = {41};
    batch_spec spec = {3, 80, 6, 1, 4, 2.0, 1.0, 0, 0, MBX_BOX_XYXY};
    test_batch tb;
    batch_random(&tb, &spec, &r);
    for (int kind = 0; kind < 3; kind++) {
        mbx_config cfg;
        mbx_config_default(&cfg);
        cfg.conf_loss = (mbx_conf_loss)kind;
        mbx_loss *l = loss_for(&cfg, &tb.b, tb.max_boxes, 1);
        test_result tr;
        result_alloc(&tr, &tb.b);
        calls = live = 0;
        fail_at = 1;
        mbx_core_set_allocator(counting_malloc, counting_free);
        const int rc = mbx_loss_compute(l, &tb.b, &tr.r, NULL);
        mbx_core_set_allocator(NULL, NULL);
        assert_int_equal(rc, 0);
        assert_int_equal(calls, 0);
        result_free(&tr);
        mbx_loss_free(l);
    }
    batch_free(&tb);
}

static void test_size_overflow(void **state)
{
    (void)state;
    mbx_config cfg;
    mbx_config_default(&cfg);
    const mbx_shape big[3] = {
        {INT64_MAX / 2, 1000, 21, 10, 1},
        {1, INT32_MAX - 16, 21, 10, INT32_MAX},
        {1LL << 40, 1LL << 30, 21, 10, 1},
    };
    for (int i = 0; i < 3; i++) {
        calls = live = 0;
        fail_at = 0;
        mbx_core_set_allocator(counting_malloc, counting_free);
        mbx_loss *l = NULL;
        mbx_detail d = {0, ""};
        const int rc = mbx_loss_new(&l, &cfg, &big[i], &d);
        mbx_core_set_allocator(NULL, NULL);
        if (rc != MBX_E_SHAPE_OVERFLOW)
            fail_msg("shape %d: %s (%s)", i, mbx_error_name(rc), d.message);
        assert_null(l);
        assert_int_equal(calls, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_each_allocation),
        cmocka_unit_test(test_compute_allocates_nothing),
        cmocka_unit_test(test_size_overflow),
    };
    return cmocka_run_group_tests_name("core allocation failures", tests, NULL, NULL);
}
