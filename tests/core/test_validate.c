/*
 * test_validate.c - every rejection at the API boundary, data-driven: the
 * configuration ranges of mbx_config_validate (message naming the key), the
 * arguments of mbx_loss_new, and the inputs begin checks (shapes, anchors,
 * GT boxes, labels, config against C) with the error code and the message
 * naming the path, e.g. "targets[1].boxes[2]: x2 <= x1".  A rejected batch
 * leaves the result untouched; phases called out of order are refused.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

typedef struct config_case {
    const char *message; /* expected prefix */
    void (*mutate)(mbx_config *c);
} config_case;

#define MUT(name, body)                                                                        \
    static void name(mbx_config *c)                                                            \
    {                                                                                          \
        body;                                                                                  \
    }
MUT(m_format, c->box_format = (mbx_box_format)7)
MUT(m_bipartite, c->bipartite = (mbx_bipartite)3)
MUT(m_thr0, c->overlap_threshold = 0.0)
MUT(m_thr_big, c->overlap_threshold = 1.5)
MUT(m_thr_nan, c->overlap_threshold = NAN)
MUT(m_neg0, c->neg_overlap = 0.0)
MUT(m_neg_above, c->neg_overlap = 0.6)
MUT(m_nvar, c->num_variances = 3)
MUT(m_var0, c->variances[1] = 0.0)
MUT(m_var4, { c->num_variances = 4; c->variances[2] = 0.2; c->variances[3] = -1.0; })
MUT(m_var_inf, c->variances[0] = INFINITY)
MUT(m_loc, c->loc_loss = (mbx_loc_loss)6)
MUT(m_beta, c->smooth_l1_beta = 0.0)
MUT(m_alpha, c->alpha = -0.5)
MUT(m_alpha_inf, c->alpha = INFINITY)
MUT(m_conf, c->conf_loss = (mbx_conf_loss)3)
MUT(m_bg_low, c->background_label = -2)
MUT(m_bg_softmax, c->background_label = -1)
MUT(m_falpha, c->focal_alpha = 1.5)
MUT(m_fgamma, c->focal_gamma = -1.0)
MUT(m_mining, c->mining = (mbx_mining)2)
MUT(m_ratio, c->neg_pos_ratio = -1.0)
MUT(m_minneg, c->min_negatives = -1)
MUT(m_norm, c->normalization = (mbx_normalization)5)

static const config_case config_cases[] = {
    {"config.box_format:", m_format},
    {"config.bipartite:", m_bipartite},
    {"config.overlap_threshold:", m_thr0},
    {"config.overlap_threshold:", m_thr_big},
    {"config.overlap_threshold:", m_thr_nan},
    {"config.neg_overlap:", m_neg0},
    {"config.neg_overlap:", m_neg_above},
    {"config.variances:", m_nvar},
    {"config.variances[1]:", m_var0},
    {"config.variances[3]:", m_var4},
    {"config.variances[0]:", m_var_inf},
    {"config.loc_loss:", m_loc},
    {"config.smooth_l1_beta:", m_beta},
    {"config.alpha:", m_alpha},
    {"config.alpha:", m_alpha_inf},
    {"config.conf_loss:", m_conf},
    {"config.background_label:", m_bg_low},
    {"config.background_label:", m_bg_softmax},
    {"config.focal_alpha:", m_falpha},
    {"config.focal_gamma:", m_fgamma},
    {"config.mining:", m_mining},
    {"config.neg_pos_ratio:", m_ratio},
    {"config.min_negatives:", m_minneg},
    {"config.normalization:", m_norm},
};

static void test_config_ranges(void **state)
{
    (void)state;
    mbx_config c;
    mbx_config_default(&c);
    mbx_detail d = {0, "untouched"};
    assert_int_equal(mbx_config_validate(&c, 21, &d), 0);
    assert_string_equal(d.message, "untouched");
    for (size_t i = 0; i < sizeof config_cases / sizeof config_cases[0]; i++) {
        mbx_config_default(&c);
        config_cases[i].mutate(&c);
        memset(&d, 0, sizeof d);
        const int rc = mbx_config_validate(&c, 0, &d);
        if (rc != MBX_E_BAD_CONFIG || strncmp(d.message, config_cases[i].message,
                                              strlen(config_cases[i].message)) != 0)
            fail_msg("case %zu: %s / \"%s\", expected bad_config \"%s...\"", i, mbx_error_name(rc),
                     d.message, config_cases[i].message);
        assert_int_equal(d.code, MBX_E_BAD_CONFIG);
        /* mbx_loss_new refuses it the same way. */
        mbx_shape s = {1, 10, 5, 2, 1};
        mbx_loss *l = NULL;
        assert_int_equal(mbx_loss_new(&l, &c, &s, NULL), MBX_E_BAD_CONFIG);
        assert_null(l);
    }
    /* Against the class count. */
    mbx_config_default(&c);
    c.background_label = 21;
    assert_int_equal(mbx_config_validate(&c, 21, &d), MBX_E_BAD_CONFIG);
    assert_string_equal(d.message, "config.background_label: 21 is outside [0, 21) for 21 classes");
    assert_int_equal(mbx_config_validate(&c, 0, NULL), 0); /* C unknown: not checked */
    c.background_label = -1;
    c.conf_loss = MBX_CONF_SIGMOID;
    assert_int_equal(mbx_config_validate(&c, 1, &d), 0);
    mbx_config_default(&c);
    assert_int_equal(mbx_config_validate(NULL, 0, &d), MBX_E_INVALID_ARGUMENT);
}

static void test_new_arguments(void **state)
{
    (void)state;
    mbx_config c;
    mbx_config_default(&c);
    mbx_shape s = {2, 10, 5, 3, 1};
    mbx_loss *l = NULL;
    mbx_detail d;
    assert_int_equal(mbx_loss_new(NULL, &c, &s, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_new(&l, NULL, &s, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_new(&l, &c, NULL, &d), MBX_E_INVALID_ARGUMENT);
    const mbx_shape bad[5] = {{0, 10, 5, 3, 1}, {2, 0, 5, 3, 1}, {2, 10, 0, 3, 1},
                              {2, 10, 5, -1, 1}, {2, 10, 5, 3, 0}};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(mbx_loss_new(&l, &c, &bad[i], &d), MBX_E_INVALID_ARGUMENT);
        assert_null(l);
        assert_true(strncmp(d.message, "shape:", 6) == 0);
    }
    mbx_loss_free(NULL);
}

/* A valid little batch: B = 2, A = 6 anchors, C = 5, two GT in image 0, one in image 1. */
typedef struct small {
    float anchors[24], loc[48], conf[60], boxes0[8], boxes1[4];
    int64_t labels0[2], labels1[1];
    mbx_image_targets t[2];
    mbx_batch b;
} small;

static void small_init(small *s)
{
    for (int a = 0; a < 6; a++) {
        float *p = s->anchors + 4 * a;
        p[0] = 0.1f * (float)a;
        p[1] = 0.05f * (float)a;
        p[2] = p[0] + 0.3f;
        p[3] = p[1] + 0.4f;
    }
    for (int i = 0; i < 48; i++)
        s->loc[i] = 0.01f * (float)(i % 7);
    for (int i = 0; i < 60; i++)
        s->conf[i] = 0.1f * (float)(i % 9) - 0.3f;
    const float b0[8] = {0.1f, 0.1f, 0.4f, 0.5f, 0.2f, 0.2f, 0.6f, 0.7f};
    const float b1[4] = {0.0f, 0.0f, 0.3f, 0.4f};
    memcpy(s->boxes0, b0, sizeof b0);
    memcpy(s->boxes1, b1, sizeof b1);
    s->labels0[0] = 1;
    s->labels0[1] = 4;
    s->labels1[0] = 2;
    s->t[0] = (mbx_image_targets){s->boxes0, s->labels0, NULL, 2};
    s->t[1] = (mbx_image_targets){s->boxes1, s->labels1, NULL, 1};
    s->b = (mbx_batch){2, 6, 5, s->loc, s->conf, s->anchors, MBX_BOX_XYXY, s->t};
}

typedef struct input_case {
    int code;
    const char *message; /* exact */
    void (*mutate)(small *s, mbx_config *c);
} input_case;

#define IMUT(name, body)                                                                       \
    static void name(small *s, mbx_config *c)                                                  \
    {                                                                                          \
        (void)s;                                                                               \
        (void)c;                                                                               \
        body;                                                                                  \
    }
IMUT(i_b0, s->b.batch = 0)
IMUT(i_a0, s->b.num_anchors = 0)
IMUT(i_c1, s->b.num_classes = 1)
IMUT(i_b_big, s->b.batch = 3)
IMUT(i_a_big, s->b.num_anchors = 7)
IMUT(i_loc_null, s->b.loc = NULL)
IMUT(i_targets_null, s->b.targets = NULL)
IMUT(i_anchor_nan, s->anchors[5 * 4 + 1] = NAN)
IMUT(i_anchor_x, s->anchors[5 * 4 + 2] = s->anchors[5 * 4 + 0])
IMUT(i_anchor_y, s->anchors[2 * 4 + 3] = s->anchors[2 * 4 + 1] - 0.1f)
IMUT(i_anchor_w, { s->b.anchors_format = MBX_BOX_CXCYWH; s->anchors[2 * 4 + 2] = 0.0f; })
IMUT(i_anchor_h, { s->b.anchors_format = MBX_BOX_CXCYWH; s->anchors[3 * 4 + 3] = -1.0f; })
IMUT(i_anchor_fmt, s->b.anchors_format = (mbx_box_format)5)
IMUT(i_gt_x, s->boxes0[4 + 2] = 0.1f)
IMUT(i_gt_y, s->boxes1[3] = 0.0f)
IMUT(i_gt_inf, s->boxes0[1] = -INFINITY)
IMUT(i_gt_w, { c->box_format = MBX_BOX_CXCYWH; s->boxes0[2] = -0.5f; })
IMUT(i_gt_tiny, { c->box_format = MBX_BOX_CXCYWH; s->boxes1[0] = 1.0f; s->boxes1[2] = 1e-30f; })
IMUT(i_label_high, s->labels0[1] = 5)
IMUT(i_label_neg, s->labels1[0] = -1)
IMUT(i_label_bg, s->labels0[0] = 0)
IMUT(i_label_bg3, { c->background_label = 3; s->labels1[0] = 3; })
IMUT(i_nboxes_neg, s->t[1].num_boxes = -1)
IMUT(i_nboxes_big, s->t[1].num_boxes = 3)
IMUT(i_boxes_null, s->t[0].boxes = NULL)
IMUT(i_bg_c, c->background_label = 5)
IMUT(i_c0_nobg, { s->b.num_classes = 0; c->conf_loss = MBX_CONF_FOCAL; c->background_label = -1; })

static const input_case input_cases[] = {
    {MBX_E_SHAPE_MISMATCH, "batch: 0 images, at least 1 needed", i_b0},
    {MBX_E_SHAPE_MISMATCH, "anchors: 0 anchors, at least 1 needed", i_a0},
    {MBX_E_SHAPE_MISMATCH, "conf: 1 classes, at least 2 needed", i_c1},
    {MBX_E_INVALID_ARGUMENT, "batch: 3 images exceed the context's 2", i_b_big},
    {MBX_E_INVALID_ARGUMENT, "anchors: 7 anchors exceed the context's 6", i_a_big},
    {MBX_E_INVALID_ARGUMENT, "loc: NULL", i_loc_null},
    {MBX_E_INVALID_ARGUMENT, "targets: NULL", i_targets_null},
    {MBX_E_NOT_FINITE, "anchors[5]: NaN or infinity", i_anchor_nan},
    {MBX_E_DEGENERATE_BOX, "anchors[5]: x2 <= x1", i_anchor_x},
    {MBX_E_DEGENERATE_BOX, "anchors[2]: y2 <= y1", i_anchor_y},
    {MBX_E_DEGENERATE_BOX, "anchors[2]: width <= 0", i_anchor_w},
    {MBX_E_DEGENERATE_BOX, "anchors[3]: height <= 0", i_anchor_h},
    {MBX_E_INVALID_ARGUMENT, "anchors: unknown box format 5", i_anchor_fmt},
    {MBX_E_DEGENERATE_BOX, "targets[0].boxes[1]: x2 <= x1", i_gt_x},
    {MBX_E_DEGENERATE_BOX, "targets[1].boxes[0]: y2 <= y1", i_gt_y},
    {MBX_E_NOT_FINITE, "targets[0].boxes[0]: NaN or infinity", i_gt_inf},
    {MBX_E_DEGENERATE_BOX, "targets[0].boxes[0]: width <= 0", i_gt_w},
    {MBX_E_DEGENERATE_BOX,
     "targets[1].boxes[0]: size vanishes next to the centre in double precision", i_gt_tiny},
    {MBX_E_BAD_LABEL, "targets[0].labels[1]: 5 is outside [0, 5)", i_label_high},
    {MBX_E_BAD_LABEL, "targets[1].labels[0]: -1 is outside [0, 5)", i_label_neg},
    {MBX_E_BAD_LABEL, "targets[0].labels[0]: 0 is the background_label", i_label_bg},
    {MBX_E_BAD_LABEL, "targets[1].labels[0]: 3 is the background_label", i_label_bg3},
    {MBX_E_SHAPE_MISMATCH, "targets[1].boxes: -1 boxes", i_nboxes_neg},
    {MBX_E_INVALID_ARGUMENT, "targets[1].boxes: 3 boxes exceed the context's max_boxes 2",
     i_nboxes_big},
    {MBX_E_INVALID_ARGUMENT, "targets[0].boxes: NULL", i_boxes_null},
    {MBX_E_BAD_CONFIG, "config.background_label: 5 is outside [0, 5) for 5 classes", i_bg_c},
    {MBX_E_SHAPE_MISMATCH, "conf: 0 classes, at least 1 needed", i_c0_nobg},
};

static void test_begin_rejects(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof input_cases / sizeof input_cases[0]; i++) {
        small s;
        small_init(&s);
        mbx_config c;
        mbx_config_default(&c);
        input_cases[i].mutate(&s, &c);
        mbx_shape shape = {2, 6, 5, 2, 1};
        mbx_loss *l = NULL;
        assert_int_equal(mbx_loss_new(&l, &c, &shape, NULL), 0);
        mbx_result r;
        memset(&r, 0xab, sizeof r);
        r.per_image = NULL;
        r.grad_loc = r.grad_conf = NULL;
        r.matches = NULL;
        r.roles = NULL;
        mbx_result before = r;
        mbx_detail d = {0, ""};
        const int rc = mbx_loss_compute(l, &s.b, &r, &d);
        if (rc != input_cases[i].code || strcmp(d.message, input_cases[i].message) != 0)
            fail_msg("case %zu: %s \"%s\", expected %s \"%s\"", i, mbx_error_name(rc), d.message,
                     mbx_error_name(input_cases[i].code), input_cases[i].message);
        assert_int_equal(d.code, rc);
        assert_memory_equal(&r, &before, sizeof r);
        /* The context still works for a valid batch afterwards. */
        small_init(&s);
        if (c.background_label == 3) /* the one config change: keep the labels clear of it */
            s.labels1[0] = 1;
        if (c.background_label < 5) {
            assert_int_equal(mbx_loss_compute(l, &s.b, &r, &d), 0);
            assert_true(isfinite(r.loss) && r.num_positives > 0);
        }
        mbx_loss_free(l);
    }
}

static void test_phase_order(void **state)
{
    (void)state;
    small s;
    small_init(&s);
    mbx_config c;
    mbx_config_default(&c);
    mbx_shape shape = {2, 6, 5, 2, 1};
    mbx_loss *l = NULL;
    assert_int_equal(mbx_loss_new(&l, &c, &shape, NULL), 0);
    mbx_detail d;
    mbx_result r = {0};
    assert_int_equal(mbx_loss_reduce(l, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_finish(l, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_begin(l, &s.b, NULL, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_begin(NULL, &s.b, &r, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_loss_begin(l, &s.b, &r, &d), 0);
    mbx_loss_grad_image(l, 0, 0); /* before reduce: ignored */
    mbx_loss_match_image(l, 5, 0); /* out of range: ignored */
    mbx_loss_match_image(l, 0, 3); /* no such slot: ignored */
    assert_int_equal(mbx_loss_finish(l, &d), MBX_E_INVALID_ARGUMENT);
    mbx_loss_match_image(l, 0, 0);
    mbx_loss_match_image(l, 1, 0);
    assert_int_equal(mbx_loss_reduce(l, &d), 0);
    mbx_loss_grad_image(l, 0, 0);
    mbx_loss_grad_image(l, 1, 0);
    assert_int_equal(mbx_loss_finish(l, &d), 0);
    assert_true(r.num_positives > 0 && isfinite(r.loss));
    assert_int_equal(mbx_loss_finish(l, &d), MBX_E_INVALID_ARGUMENT); /* finished already */
    mbx_loss_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_ranges),
        cmocka_unit_test(test_new_arguments),
        cmocka_unit_test(test_begin_rejects),
        cmocka_unit_test(test_phase_order),
    };
    return cmocka_run_group_tests_name("core validation", tests, NULL, NULL);
}
