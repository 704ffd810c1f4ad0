/*
 * test_priors.c - tests of the prior (anchor) generator of src/core/priors.c:
 * the three presets against the golden files priors/<name>.json bit for bit,
 * the generic path built from each file's "prior_box" member, small cases
 * derived by hand for each clip mode and the offset, and every validation
 * error (bad field named in the message, unknown preset, overflow, capacity).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "multibox/multibox.h"

/* ------------------------------------------------------------ golden files */

/* Loads MBX_GOLDEN_DIR/priors/<name>.json; fails the test when it cannot. */
static json_t *load_golden(const char *name)
{
    const char *dir = getenv("MBX_GOLDEN_DIR");
    if (!dir) {
        fail_msg("MBX_GOLDEN_DIR is not set");
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/priors/%s.json", dir, name);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        fail_msg("%s:%d: %s", path, err.line, err.text);
    return root;
}

/* The golden anchors as float32 (malloc'd) and their number. */
static float *golden_anchors(json_t *root, int64_t *count)
{
    json_t *anchors = json_object_get(root, "anchors");
    json_t *shape = json_object_get(anchors, "shape");
    json_t *data = json_object_get(anchors, "data");
    assert_non_null(data);
    assert_int_equal(json_integer_value(json_array_get(shape, 1)), 4);
    *count = json_integer_value(json_array_get(shape, 0));
    assert_int_equal((int64_t)json_array_size(data), *count * 4);
    float *out = malloc(json_array_size(data) * sizeof *out);
    assert_non_null(out);
    size_t i;
    json_t *v;
    /* 9 significant digits: double then float32 recovers the stored float32 */
    json_array_foreach(data, i, v) {
        assert_true(json_is_number(v));
        out[i] = (float)json_number_value(v);
    }
    return out;
}

/* Builds params from a "prior_box" object in the service's vocabulary. */
static void params_from_json(json_t *pb, mbx_prior_params *p)
{
    memset(p, 0, sizeof *p);
    p->image_size = json_number_value(json_object_get(pb, "image_size"));
    json_t *fm = json_object_get(pb, "feature_maps");
    json_t *steps = json_object_get(pb, "steps");
    json_t *mins = json_object_get(pb, "min_sizes");
    json_t *maxs = json_object_get(pb, "max_sizes");
    json_t *ratios = json_object_get(pb, "aspect_ratios");
    p->num_layers = (int)json_array_size(fm);
    assert_in_range(p->num_layers, 1, MBX_PRIOR_MAX_LAYERS);
    p->has_max_sizes = maxs != NULL;
    for (int k = 0; k < p->num_layers; k++) {
        p->feature_maps[k] = json_integer_value(json_array_get(fm, k));
        p->steps[k] = json_number_value(json_array_get(steps, k));
        p->min_sizes[k] = json_number_value(json_array_get(mins, k));
        if (maxs)
            p->max_sizes[k] = json_number_value(json_array_get(maxs, k));
        json_t *rk = json_array_get(ratios, k);
        p->num_ratios[k] = (int)json_array_size(rk);
        assert_in_range(p->num_ratios[k], 0, MBX_PRIOR_MAX_RATIOS);
        for (int r = 0; r < p->num_ratios[k]; r++)
            p->aspect_ratios[k][r] = json_number_value(json_array_get(rk, r));
    }
    const char *clip = json_string_value(json_object_get(pb, "clip"));
    assert_non_null(clip);
    if (strcmp(clip, "none") == 0)
        p->clip = MBX_CLIP_NONE;
    else if (strcmp(clip, "corners") == 0)
        p->clip = MBX_CLIP_CORNERS;
    else if (strcmp(clip, "center") == 0)
        p->clip = MBX_CLIP_CENTER;
    else
        fail_msg("unknown clip %s", clip);
    json_t *offset = json_object_get(pb, "offset");
    p->offset = offset ? json_number_value(offset) : 0.5;
}

/* Fails, naming the first anchor and coordinate that differ in any bit. */
static void assert_same_bits(const float *got, const float *want, int64_t n_anchors)
{
    for (int64_t i = 0; i < n_anchors * 4; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("first mismatch at anchor %lld coordinate %lld: got %.9g want %.9g",
                     (long long)(i / 4), (long long)(i % 4), got[i], want[i]);
    }
}

/* Generates p into a fresh buffer of exactly its count; returns it. */
static float *generate(const mbx_prior_params *p, int64_t *count)
{
    mbx_detail d = {0, ""};
    int rc = mbx_prior_count(p, count, &d);
    if (rc)
        fail_msg("mbx_prior_count: %s", d.message);
    float *out = malloc((size_t)*count * 4 * sizeof *out);
    assert_non_null(out);
    rc = mbx_prior_generate(p, out, *count, &d);
    if (rc)
        fail_msg("mbx_prior_generate: %s", d.message);
    return out;
}

/* ----------------------------------------------------------- golden tests */

static void check_preset(const char *name, int64_t expected_count)
{
    mbx_prior_params preset, generic;
    mbx_detail d = {12345, "untouched"};
    assert_int_equal(mbx_prior_preset(name, &preset, &d), 0);
    assert_int_equal(d.code, 12345); /* success leaves detail alone */
    assert_string_equal(d.message, "untouched");

    json_t *root = load_golden(name);
    int64_t golden_count;
    float *want = golden_anchors(root, &golden_count);
    assert_int_equal(golden_count, expected_count);

    int64_t count;
    float *got = generate(&preset, &count);
    assert_int_equal(count, expected_count);
    assert_same_bits(got, want, count);

    /* the generic path, from the file's own parameters, is the same */
    params_from_json(json_object_get(root, "prior_box"), &generic);
    int64_t generic_count;
    float *got2 = generate(&generic, &generic_count);
    assert_int_equal(generic_count, expected_count);
    assert_same_bits(got2, want, generic_count);
    assert_true(preset.image_size == generic.image_size);
    assert_int_equal(preset.num_layers, generic.num_layers);
    assert_int_equal(preset.clip, generic.clip);
    assert_true(preset.offset == generic.offset);
    for (int k = 0; k < preset.num_layers; k++) {
        assert_int_equal(preset.feature_maps[k], generic.feature_maps[k]);
        assert_true(preset.min_sizes[k] == generic.min_sizes[k]);
        assert_true(preset.max_sizes[k] == generic.max_sizes[k]);
        assert_true(preset.steps[k] == generic.steps[k]);
        assert_int_equal(preset.num_ratios[k], generic.num_ratios[k]);
    }

    free(got2);
    free(got);
    free(want);
    json_decref(root);
}

static void test_ssd300_voc(void **state)
{
    (void)state;
    check_preset("ssd300_voc", 8732);
}

static void test_ssd300_coco(void **state)
{
    (void)state;
    check_preset("ssd300_coco", 8732);
}

static void test_ssd512_voc(void **state)
{
    (void)state;
    check_preset("ssd512_voc", 24564);
}

static void test_preset_names(void **state)
{
    (void)state;
    const char *const *names = mbx_prior_preset_names();
    assert_non_null(names);
    assert_string_equal(names[0], "ssd300_voc");
    assert_string_equal(names[1], "ssd300_coco");
    assert_string_equal(names[2], "ssd512_voc");
    assert_null(names[3]);
    for (int i = 0; names[i]; i++) {
        mbx_prior_params p;
        assert_int_equal(mbx_prior_preset(names[i], &p, NULL), 0);
    }
}

/* ------------------------------------------------------ hand-derived cases */

/*
 * Case A: S = 128, one 2x2 layer, step 64, m = 64, M = 256, ratio 4, offset
 * 0.5.  f_k = 128/64 = 2, centres (j + 0.5)/2 = 0.25 and 0.75; s_k = 0.5;
 * sqrt box sqrt(0.5 * 2) = 1; ratio 4 (sqrt 2): (1, 0.25) and (0.25, 1).
 * Every value is a dyadic fraction, so float32 holds them exactly and
 * x1 = cx - w/2 etc. are exact.  Cells (i, j): (0,0) (0,1) (1,0) (1,1),
 * i.e. centres (cx, cy) = (.25,.25) (.75,.25) (.25,.75) (.75,.75).
 * (Cross-checked at writing time with a numpy transcription of
 * ssd.pytorch's PriorBox, the same one that reproduces the golden files.)
 */
static mbx_prior_params case_a(mbx_prior_clip clip)
{
    mbx_prior_params p;
    memset(&p, 0, sizeof p);
    p.image_size = 128;
    p.num_layers = 1;
    p.feature_maps[0] = 2;
    p.steps[0] = 64;
    p.min_sizes[0] = 64;
    p.has_max_sizes = 1;
    p.max_sizes[0] = 256;
    p.num_ratios[0] = 1;
    p.aspect_ratios[0][0] = 4;
    p.clip = clip;
    p.offset = 0.5;
    return p;
}

static void test_clip_none(void **state)
{
    (void)state;
    static const float want[16][4] = {
        /* cell (0,0), centre (.25,.25): half sizes (.25,.25) (.5,.5) (.5,.125) (.125,.5) */
        {0, 0, 0.5f, 0.5f}, {-0.25f, -0.25f, 0.75f, 0.75f},
        {-0.25f, 0.125f, 0.75f, 0.375f}, {0.125f, -0.25f, 0.375f, 0.75f},
        /* cell (0,1), centre (.75,.25) */
        {0.5f, 0, 1, 0.5f}, {0.25f, -0.25f, 1.25f, 0.75f},
        {0.25f, 0.125f, 1.25f, 0.375f}, {0.625f, -0.25f, 0.875f, 0.75f},
        /* cell (1,0), centre (.25,.75) */
        {0, 0.5f, 0.5f, 1}, {-0.25f, 0.25f, 0.75f, 1.25f},
        {-0.25f, 0.625f, 0.75f, 0.875f}, {0.125f, 0.25f, 0.375f, 1.25f},
        /* cell (1,1), centre (.75,.75) */
        {0.5f, 0.5f, 1, 1}, {0.25f, 0.25f, 1.25f, 1.25f},
        {0.25f, 0.625f, 1.25f, 0.875f}, {0.625f, 0.25f, 0.875f, 1.25f},
    };
    mbx_prior_params p = case_a(MBX_CLIP_NONE);
    int64_t count;
    float *got = generate(&p, &count);
    assert_int_equal(count, 16);
    assert_same_bits(got, &want[0][0], 16);
    free(got);
}

static void test_clip_corners(void **state)
{
    (void)state;
    /* case A with every coordinate of test_clip_none clamped to [0, 1] */
    static const float want[16][4] = {
        {0, 0, 0.5f, 0.5f}, {0, 0, 0.75f, 0.75f},
        {0, 0.125f, 0.75f, 0.375f}, {0.125f, 0, 0.375f, 0.75f},
        {0.5f, 0, 1, 0.5f}, {0.25f, 0, 1, 0.75f},
        {0.25f, 0.125f, 1, 0.375f}, {0.625f, 0, 0.875f, 0.75f},
        {0, 0.5f, 0.5f, 1}, {0, 0.25f, 0.75f, 1},
        {0, 0.625f, 0.75f, 0.875f}, {0.125f, 0.25f, 0.375f, 1},
        {0.5f, 0.5f, 1, 1}, {0.25f, 0.25f, 1, 1},
        {0.25f, 0.625f, 1, 0.875f}, {0.625f, 0.25f, 0.875f, 1},
    };
    mbx_prior_params p = case_a(MBX_CLIP_CORNERS);
    int64_t count;
    float *got = generate(&p, &count);
    assert_int_equal(count, 16);
    assert_same_bits(got, &want[0][0], 16);
    free(got);
}

/*
 * Case B, centre clip: S = 128, one 2x2 layer, step 128 (so f_k = 1 and the
 * centres (j + 0.5)/1 are 0.5 and 1.5, clipped to 1), m = 64 (s_k = 0.5),
 * no max size, ratio 16 (sqrt 4): (2, 0.125) clipped to (1, 0.125) and
 * (0.125, 2) clipped to (0.125, 1).  The clipped centre and sizes then give
 * corners outside [0, 1], as ssd.pytorch's clip does.  Half sizes:
 * (.25,.25) (.5,.0625) (.0625,.5).
 */
static void test_clip_center(void **state)
{
    (void)state;
    static const float want[12][4] = {
        /* cell (0,0), centre (.5,.5) */
        {0.25f, 0.25f, 0.75f, 0.75f}, {0, 0.4375f, 1, 0.5625f}, {0.4375f, 0, 0.5625f, 1},
        /* cell (0,1), centre (1.5 -> 1, .5) */
        {0.75f, 0.25f, 1.25f, 0.75f}, {0.5f, 0.4375f, 1.5f, 0.5625f},
        {0.9375f, 0, 1.0625f, 1},
        /* cell (1,0), centre (.5, 1) */
        {0.25f, 0.75f, 0.75f, 1.25f}, {0, 0.9375f, 1, 1.0625f},
        {0.4375f, 0.5f, 0.5625f, 1.5f},
        /* cell (1,1), centre (1, 1) */
        {0.75f, 0.75f, 1.25f, 1.25f}, {0.5f, 0.9375f, 1.5f, 1.0625f},
        {0.9375f, 0.5f, 1.0625f, 1.5f},
    };
    mbx_prior_params p;
    memset(&p, 0, sizeof p);
    p.image_size = 128;
    p.num_layers = 1;
    p.feature_maps[0] = 2;
    p.steps[0] = 128;
    p.min_sizes[0] = 64;
    p.has_max_sizes = 0;
    p.num_ratios[0] = 1;
    p.aspect_ratios[0][0] = 16;
    p.clip = MBX_CLIP_CENTER;
    p.offset = 0.5;
    int64_t count;
    float *got = generate(&p, &count);
    assert_int_equal(count, 12);
    assert_same_bits(got, &want[0][0], 12);
    free(got);
}

/*
 * Case A with offset 0 and no clip: centres j/2 = 0 and 0.5, so each box
 * of test_clip_none moves by -0.25 on both axes.
 */
static void test_offset_zero(void **state)
{
    (void)state;
    mbx_prior_params p = case_a(MBX_CLIP_NONE);
    p.offset = 0;
    int64_t count;
    float *got = generate(&p, &count);
    assert_int_equal(count, 16);
    static const float first[4] = {-0.25f, -0.25f, 0.25f, 0.25f};   /* cell (0,0), (m, m) */
    static const float last[4] = {0.375f, 0, 0.625f, 1};            /* cell (1,1), (m/2, 2m)/S */
    assert_same_bits(&got[0], first, 1);
    assert_same_bits(&got[15 * 4], last, 1);
    free(got);
}

/* Two layers: the second layer's anchors follow the first's, in order. */
static void test_layer_order(void **state)
{
    (void)state;
    mbx_prior_params two = case_a(MBX_CLIP_NONE);
    two.num_layers = 2;
    two.feature_maps[1] = 1;
    two.steps[1] = 128;
    two.min_sizes[1] = 32;
    two.max_sizes[1] = 128;
    two.num_ratios[1] = 0;
    int64_t count;
    float *got = generate(&two, &count);
    assert_int_equal(count, 16 + 2);
    mbx_prior_params one = case_a(MBX_CLIP_NONE);
    int64_t n1;
    float *first = generate(&one, &n1);
    assert_same_bits(got, first, 16);
    /* layer 1: centre 0.5, s_k = 0.25, sqrt(0.25 * 1) = 0.5 */
    static const float tail[2][4] = {{0.375f, 0.375f, 0.625f, 0.625f},
                                     {0.25f, 0.25f, 0.75f, 0.75f}};
    assert_same_bits(&got[16 * 4], &tail[0][0], 2);
    free(first);
    free(got);
}

/* ------------------------------------------------------------------ errors */

static void test_unknown_preset(void **state)
{
    (void)state;
    mbx_prior_params p;
    memset(&p, 0x5a, sizeof p);
    mbx_prior_params before = p;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_prior_preset("ssd300", &p, &d), MBX_E_UNKNOWN_PRESET);
    assert_int_equal(d.code, MBX_E_UNKNOWN_PRESET);
    assert_non_null(strstr(d.message, "\"ssd300\""));
    assert_memory_equal(&p, &before, sizeof p); /* untouched on failure */
    assert_int_equal(mbx_prior_preset("SSD300_VOC", &p, NULL), MBX_E_UNKNOWN_PRESET);
    assert_int_equal(mbx_prior_preset("", &p, NULL), MBX_E_UNKNOWN_PRESET);
    assert_int_equal(mbx_prior_preset(NULL, &p, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_prior_preset("ssd300_voc", NULL, &d), MBX_E_INVALID_ARGUMENT);
}

typedef struct bad_case {
    const char *what;
    void (*mutate)(mbx_prior_params *p);
    int code;
    const char *message; /* expected prefix of detail.message */
} bad_case;

#define MUTATION(fn, stmt)                                                    \
    static void fn(mbx_prior_params *p)                                       \
    {                                                                         \
        stmt;                                                                 \
    }

MUTATION(image_size_zero, p->image_size = 0)
MUTATION(image_size_negative, p->image_size = -300)
MUTATION(image_size_nan, p->image_size = NAN)
MUTATION(image_size_inf, p->image_size = INFINITY)
MUTATION(layers_zero, p->num_layers = 0)
MUTATION(layers_many, p->num_layers = MBX_PRIOR_MAX_LAYERS + 1)
MUTATION(has_max_two, p->has_max_sizes = 2)
MUTATION(feature_map_zero, p->feature_maps[3] = 0)
MUTATION(feature_map_negative, p->feature_maps[0] = -38)
MUTATION(step_zero, p->steps[1] = 0)
MUTATION(step_nan, p->steps[4] = NAN)
MUTATION(min_size_zero, p->min_sizes[2] = 0)
MUTATION(min_size_inf, p->min_sizes[0] = INFINITY)
MUTATION(max_size_negative, p->max_sizes[5] = -1)
MUTATION(ratios_many, p->num_ratios[1] = MBX_PRIOR_MAX_RATIOS + 1)
MUTATION(ratios_negative_count, p->num_ratios[0] = -1)
MUTATION(ratio_zero, p->aspect_ratios[1][1] = 0)
MUTATION(ratio_nan, p->aspect_ratios[0][0] = NAN)
MUTATION(clip_bad, p->clip = (mbx_prior_clip)7)
MUTATION(offset_negative, p->offset = -0.1)
MUTATION(offset_big, p->offset = 1.5)
MUTATION(offset_nan, p->offset = NAN)
MUTATION(min_size_underflow, p->min_sizes[0] = 1e-300)
MUTATION(max_size_underflow, p->max_sizes[2] = 1e-300)
MUTATION(ratio_underflow, p->aspect_ratios[2][1] = 1e-300)
MUTATION(step_overflow, p->steps[0] = 1e300)
MUTATION(feature_map_huge, p->feature_maps[0] = 1000000)
MUTATION(feature_map_max, p->feature_maps[5] = INT64_MAX)

static const bad_case bad_cases[] = {
    {"image_size 0", image_size_zero, MBX_E_BAD_CONFIG, "prior_box.image_size: must be"},
    {"image_size < 0", image_size_negative, MBX_E_BAD_CONFIG, "prior_box.image_size: must be"},
    {"image_size NaN", image_size_nan, MBX_E_BAD_CONFIG, "prior_box.image_size: must be"},
    {"image_size inf", image_size_inf, MBX_E_BAD_CONFIG, "prior_box.image_size: must be"},
    {"0 layers", layers_zero, MBX_E_BAD_CONFIG, "prior_box.feature_maps: must have 1..16"},
    {"17 layers", layers_many, MBX_E_BAD_CONFIG, "prior_box.feature_maps: must have 1..16"},
    {"has_max_sizes 2", has_max_two, MBX_E_BAD_CONFIG, "prior_box.has_max_sizes: must be 0 or 1"},
    {"feature map 0", feature_map_zero, MBX_E_BAD_CONFIG, "prior_box.feature_maps[3]: must be >= 1"},
    {"feature map < 0", feature_map_negative, MBX_E_BAD_CONFIG,
     "prior_box.feature_maps[0]: must be >= 1"},
    {"step 0", step_zero, MBX_E_BAD_CONFIG, "prior_box.steps[1]: must be > 0"},
    {"step NaN", step_nan, MBX_E_BAD_CONFIG, "prior_box.steps[4]: must be > 0"},
    {"min size 0", min_size_zero, MBX_E_BAD_CONFIG, "prior_box.min_sizes[2]: must be > 0"},
    {"min size inf", min_size_inf, MBX_E_BAD_CONFIG, "prior_box.min_sizes[0]: must be > 0"},
    {"max size < 0", max_size_negative, MBX_E_BAD_CONFIG, "prior_box.max_sizes[5]: must be > 0"},
    {"9 ratios", ratios_many, MBX_E_BAD_CONFIG, "prior_box.aspect_ratios[1]: must have 0..8"},
    {"-1 ratios", ratios_negative_count, MBX_E_BAD_CONFIG,
     "prior_box.aspect_ratios[0]: must have 0..8"},
    {"ratio 0", ratio_zero, MBX_E_BAD_CONFIG, "prior_box.aspect_ratios[1][1]: must be > 0"},
    {"ratio NaN", ratio_nan, MBX_E_BAD_CONFIG, "prior_box.aspect_ratios[0][0]: must be > 0"},
    {"clip 7", clip_bad, MBX_E_BAD_CONFIG, "prior_box.clip: must be none, corners or center"},
    {"offset < 0", offset_negative, MBX_E_BAD_CONFIG, "prior_box.offset: must be in [0, 1]"},
    {"offset > 1", offset_big, MBX_E_BAD_CONFIG, "prior_box.offset: must be in [0, 1]"},
    {"offset NaN", offset_nan, MBX_E_BAD_CONFIG, "prior_box.offset: must be in [0, 1]"},
    {"size rounds to 0", min_size_underflow, MBX_E_BAD_CONFIG, "prior_box.min_sizes[0]: the anchor"},
    {"sqrt box rounds to 0", max_size_underflow, MBX_E_BAD_CONFIG,
     "prior_box.max_sizes[2]: the anchor"},
    {"ratio box rounds to 0", ratio_underflow, MBX_E_BAD_CONFIG,
     "prior_box.aspect_ratios[2][1]: the anchor"},
    {"centres overflow float32", step_overflow, MBX_E_BAD_CONFIG, "prior_box.steps[0]: anchor"},
    {"10^12 cells", feature_map_huge, MBX_E_SHAPE_OVERFLOW,
     "prior_box.feature_maps[0]: more than 10000000 anchors"},
    {"INT64_MAX cells", feature_map_max, MBX_E_SHAPE_OVERFLOW,
     "prior_box.feature_maps[5]: more than 10000000 anchors"},
};

static void test_bad_params(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        mbx_prior_params p;
        assert_int_equal(mbx_prior_preset("ssd300_voc", &p, NULL), 0);
        c->mutate(&p);
        int64_t count = -7;
        mbx_detail d = {0, ""};
        int rc = mbx_prior_count(&p, &count, &d);
        if (rc != c->code || d.code != c->code ||
            strncmp(d.message, c->message, strlen(c->message)) != 0)
            fail_msg("%s: got %d (%s) \"%s\", want %d \"%s...\"", c->what, rc,
                     mbx_error_name(rc), d.message, c->code, c->message);
        assert_int_equal(count, -7); /* not written on failure */
        /* generate reports the same and does not touch out */
        float sentinel[4] = {7, 7, 7, 7};
        assert_int_equal(mbx_prior_generate(&p, sentinel, 1, NULL), c->code);
        for (int k = 0; k < 4; k++)
            assert_true(sentinel[k] == 7);
    }
}

/* The ignored fields: max_sizes without has_max_sizes, ratios beyond num_ratios, layers beyond. */
static void test_unused_fields_ignored(void **state)
{
    (void)state;
    mbx_prior_params p = case_a(MBX_CLIP_NONE);
    p.has_max_sizes = 0;
    p.max_sizes[0] = -1;
    p.aspect_ratios[0][1] = NAN;
    p.feature_maps[1] = -5;
    p.steps[1] = NAN;
    int64_t count;
    assert_int_equal(mbx_prior_count(&p, &count, NULL), 0);
    assert_int_equal(count, 12);
}

/* The anchor cap: exactly 10 million is accepted, one more is not. */
static void test_count_cap(void **state)
{
    (void)state;
    mbx_prior_params p;
    memset(&p, 0, sizeof p);
    p.image_size = 1000;
    p.num_layers = 1;
    p.feature_maps[0] = 1000;
    p.steps[0] = 1;
    p.min_sizes[0] = 10;
    p.has_max_sizes = 1;
    p.max_sizes[0] = 20;
    p.num_ratios[0] = 4; /* 1 + 1 + 2 * 4 = 10 boxes per cell */
    for (int r = 0; r < 4; r++)
        p.aspect_ratios[0][r] = r + 2;
    p.clip = MBX_CLIP_NONE;
    p.offset = 0.5;
    int64_t count = 0;
    assert_int_equal(mbx_prior_count(&p, &count, NULL), 0);
    assert_int_equal(count, 10000000);

    p.num_layers = 2; /* one more cell of 4 boxes */
    p.feature_maps[1] = 1;
    p.steps[1] = 1000;
    p.min_sizes[1] = 500;
    p.max_sizes[1] = 900;
    p.num_ratios[1] = 1;
    p.aspect_ratios[1][0] = 2;
    mbx_detail d = {0, ""};
    assert_int_equal(mbx_prior_count(&p, &count, &d), MBX_E_SHAPE_OVERFLOW);
    assert_string_equal(d.message, "prior_box.feature_maps[1]: more than 10000000 anchors");
    assert_int_equal(count, 10000000);
}

static void test_capacity_and_nulls(void **state)
{
    (void)state;
    mbx_prior_params p = case_a(MBX_CLIP_NONE);
    float buf[17 * 4];
    for (int i = 0; i < 17 * 4; i++)
        buf[i] = -9;
    mbx_detail d = {0, ""};

    /* too small: error, nothing written */
    assert_int_equal(mbx_prior_generate(&p, buf, 15, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(d.code, MBX_E_INVALID_ARGUMENT);
    assert_string_equal(d.message, "prior_box: capacity 15 is less than the 16 anchors");
    assert_int_equal(mbx_prior_generate(&p, buf, -1, NULL), MBX_E_INVALID_ARGUMENT);
    for (int i = 0; i < 17 * 4; i++)
        assert_true(buf[i] == -9);

    /* larger than needed: the count anchors are written, nothing after */
    assert_int_equal(mbx_prior_generate(&p, buf, 17, NULL), 0);
    assert_true(buf[0] == 0 && buf[2] == 0.5f);
    for (int i = 16 * 4; i < 17 * 4; i++)
        assert_true(buf[i] == -9);

    int64_t count;
    assert_int_equal(mbx_prior_generate(&p, NULL, 16, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_prior_generate(NULL, buf, 16, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_prior_count(NULL, &count, &d), MBX_E_INVALID_ARGUMENT);
    assert_int_equal(mbx_prior_count(&p, NULL, &d), MBX_E_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssd300_voc),
        cmocka_unit_test(test_ssd300_coco),
        cmocka_unit_test(test_ssd512_voc),
        cmocka_unit_test(test_preset_names),
        cmocka_unit_test(test_clip_none),
        cmocka_unit_test(test_clip_corners),
        cmocka_unit_test(test_clip_center),
        cmocka_unit_test(test_offset_zero),
        cmocka_unit_test(test_layer_order),
        cmocka_unit_test(test_unknown_preset),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_unused_fields_ignored),
        cmocka_unit_test(test_count_cap),
        cmocka_unit_test(test_capacity_and_nulls),
    };
    return cmocka_run_group_tests_name("priors", tests, NULL, NULL);
}
