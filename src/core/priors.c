/*
 * priors.c - the prior (anchor) box generator: the named presets, the
 * validation and count of a mbx_prior_params, and the generation of the
 * anchors as xyxy float32, bit for bit equal to amdegroot/ssd.pytorch's
 * PriorBox followed by a float32 centre-to-corner conversion (the semantics
 * document's last section).  Pure: no allocation, no I/O, no mutable state;
 * every function is safe to call from any number of threads at once.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "multibox/multibox.h"

/*
 * Most anchors one parameter set may produce (40 million floats, 160 MB of
 * output).  mbx_prior_count() returns MBX_E_SHAPE_OVERFLOW beyond it, which
 * also keeps every intermediate product far from int64 overflow.
 */
#define PRIOR_MAX_ANCHORS INT64_C(10000000)

/* ----------------------------------------------------------------- presets */

typedef struct prior_preset {
    const char *name;
    mbx_prior_params params;
} prior_preset;

/*
 * ssd300_voc / ssd300_coco: ssd.pytorch's data/config.py 'voc' and 'coco';
 * ssd512_voc: Caffe SSD512 VOC sizes (7%, 15%, 30%, 45%, ..., 105% of 512)
 * without integer truncation, no clip.  Equal to the "prior_box" member of
 * the golden files priors/<name>.json.
 */
static const prior_preset presets[] = {
    {"ssd300_voc",
     {.image_size = 300,
      .num_layers = 6,
      .feature_maps = {38, 19, 10, 5, 3, 1},
      .steps = {8, 16, 32, 64, 100, 300},
      .min_sizes = {30, 60, 111, 162, 213, 264},
      .has_max_sizes = 1,
      .max_sizes = {60, 111, 162, 213, 264, 315},
      .num_ratios = {1, 2, 2, 2, 1, 1},
      .aspect_ratios = {{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}},
      .clip = MBX_CLIP_CENTER,
      .offset = 0.5}},
    {"ssd300_coco",
     {.image_size = 300,
      .num_layers = 6,
      .feature_maps = {38, 19, 10, 5, 3, 1},
      .steps = {8, 16, 32, 64, 100, 300},
      .min_sizes = {21, 45, 99, 153, 207, 261},
      .has_max_sizes = 1,
      .max_sizes = {45, 99, 153, 207, 261, 315},
      .num_ratios = {1, 2, 2, 2, 1, 1},
      .aspect_ratios = {{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}},
      .clip = MBX_CLIP_CENTER,
      .offset = 0.5}},
    {"ssd512_voc",
     {.image_size = 512,
      .num_layers = 7,
      .feature_maps = {64, 32, 16, 8, 4, 2, 1},
      .steps = {8, 16, 32, 64, 128, 256, 512},
      .min_sizes = {35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8},
      .has_max_sizes = 1,
      .max_sizes = {76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6},
      .num_ratios = {1, 2, 2, 2, 2, 1, 1},
      .aspect_ratios = {{2}, {2, 3}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}},
      .clip = MBX_CLIP_NONE,
      .offset = 0.5}},
};

#define NUM_PRESETS ((int)(sizeof presets / sizeof presets[0]))

static const char *const preset_names[NUM_PRESETS + 1] = {
    "ssd300_voc", "ssd300_coco", "ssd512_voc", NULL,
};

const char *const *mbx_prior_preset_names(void)
{
    return preset_names;
}

/*
 * Copies the preset called name into *p.  MBX_E_INVALID_ARGUMENT for a NULL
 * name or p, MBX_E_UNKNOWN_PRESET for a name not in mbx_prior_preset_names();
 * on failure *p is left untouched.
 */
int mbx_prior_preset(const char *name, mbx_prior_params *p, mbx_detail *detail)
{
    if (!name || !p)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT,
                              "prior_box.preset: %s is NULL", name ? "params" : "name");
    for (int i = 0; i < NUM_PRESETS; i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *p = presets[i].params;
            return 0;
        }
    }
    return mbx_detail_set(detail, MBX_E_UNKNOWN_PRESET,
                          "prior_box.preset: unknown preset \"%.64s\" "
                          "(known: ssd300_voc, ssd300_coco, ssd512_voc)", name);
}

/* -------------------------------------------------------------- arithmetic */

/*
 * The per-layer quantities, computed exactly as ssd.pytorch does in double
 * (f_k = S / s_k, centre (j + offset) / f_k, s_k = m / S, the sqrt box
 * sqrt(s_k * (M / S)), the ratio boxes s_k * sqrt(r), s_k / sqrt(r)) and then
 * rounded to float32.  The reference files were checked to agree with both
 * this and the algebraically equal (j + offset) s_k / S form.
 */
static double layer_fk(const mbx_prior_params *p, int k)
{
    return p->image_size / p->steps[k];
}

/* Centre of row or column j in double; fk > 0 (checked by check_range()). */
static double centre_at(const mbx_prior_params *p, double fk, int64_t j)
{
    return ((double)j + p->offset) / fk;
}

/* Boxes per cell of layer k. */
static int64_t boxes_per_cell(const mbx_prior_params *p, int k)
{
    return 1 + (p->has_max_sizes ? 1 : 0) + 2 * (int64_t)p->num_ratios[k];
}

/*
 * Writes the (w, h) pairs of layer k in double, in generation order, into
 * wh[boxes_per_cell]; returns the number of pairs.  No clipping, no
 * rounding: callers convert to float32 only values check_range() accepted
 * (a double beyond FLT_MAX has no defined float conversion in ISO C).
 */
static int layer_sizes(const mbx_prior_params *p, int k, double wh[][2])
{
    double sk = p->min_sizes[k] / p->image_size;
    int n = 0;
    wh[n][0] = wh[n][1] = sk;
    n++;
    if (p->has_max_sizes) {
        double prime = sqrt(sk * (p->max_sizes[k] / p->image_size));
        wh[n][0] = wh[n][1] = prime;
        n++;
    }
    for (int r = 0; r < p->num_ratios[k]; r++) {
        double root = sqrt(p->aspect_ratios[k][r]);
        wh[n][0] = sk * root;
        wh[n][1] = sk / root;
        n++;
        wh[n][0] = sk / root;
        wh[n][1] = sk * root;
        n++;
    }
    return n;
}

static float clamp01(float v)
{
    return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

/* ---------------------------------------------------------------- validate */

static int positive_finite(double v)
{
    return v > 0.0 && isfinite(v);
}

/* Checks every field of p; 0 or MBX_E_BAD_CONFIG naming the field. */
static int check_fields(const mbx_prior_params *p, mbx_detail *detail)
{
    if (!positive_finite(p->image_size))
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                              "prior_box.image_size: must be a finite number > 0 (got %g)",
                              p->image_size);
    if (p->num_layers < 1 || p->num_layers > MBX_PRIOR_MAX_LAYERS)
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                              "prior_box.feature_maps: must have 1..%d layers (got %d)",
                              MBX_PRIOR_MAX_LAYERS, p->num_layers);
    if (p->has_max_sizes != 0 && p->has_max_sizes != 1)
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                              "prior_box.has_max_sizes: must be 0 or 1 (got %d)",
                              p->has_max_sizes);
    for (int k = 0; k < p->num_layers; k++) {
        if (p->feature_maps[k] < 1)
            return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                  "prior_box.feature_maps[%d]: must be >= 1 (got %lld)", k,
                                  (long long)p->feature_maps[k]);
        if (!positive_finite(p->steps[k]))
            return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                  "prior_box.steps[%d]: must be > 0 (got %g)", k, p->steps[k]);
        if (!positive_finite(p->min_sizes[k]))
            return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                  "prior_box.min_sizes[%d]: must be > 0 (got %g)", k,
                                  p->min_sizes[k]);
        if (p->has_max_sizes && !positive_finite(p->max_sizes[k]))
            return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                  "prior_box.max_sizes[%d]: must be > 0 (got %g)", k,
                                  p->max_sizes[k]);
        if (p->num_ratios[k] < 0 || p->num_ratios[k] > MBX_PRIOR_MAX_RATIOS)
            return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                  "prior_box.aspect_ratios[%d]: must have 0..%d ratios (got %d)",
                                  k, MBX_PRIOR_MAX_RATIOS, p->num_ratios[k]);
        for (int r = 0; r < p->num_ratios[k]; r++)
            if (!positive_finite(p->aspect_ratios[k][r]))
                return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                      "prior_box.aspect_ratios[%d][%d]: must be > 0 (got %g)", k,
                                      r, p->aspect_ratios[k][r]);
    }
    if (p->clip != MBX_CLIP_NONE && p->clip != MBX_CLIP_CORNERS && p->clip != MBX_CLIP_CENTER)
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                              "prior_box.clip: must be none, corners or center (got %d)",
                              (int)p->clip);
    if (!(p->offset >= 0.0 && p->offset <= 1.0))
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                              "prior_box.offset: must be in [0, 1] (got %g)", p->offset);
    return 0;
}

/* MBX_E_BAD_CONFIG naming the parameter behind box b of layer k's sizes. */
static int size_range_error(const mbx_prior_params *p, int k, int b, mbx_detail *detail)
{
    const char *why = "the anchor size rounds to 0 or overflows in float32";
    if (b == 0)
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG, "prior_box.min_sizes[%d]: %s", k, why);
    if (p->has_max_sizes && b == 1)
        return mbx_detail_set(detail, MBX_E_BAD_CONFIG, "prior_box.max_sizes[%d]: %s", k, why);
    return mbx_detail_set(detail, MBX_E_BAD_CONFIG, "prior_box.aspect_ratios[%d][%d]: %s", k,
                          (b - 1 - p->has_max_sizes) / 2, why);
}

/*
 * Checks that the float32 anchors of every layer are usable: every width
 * and height fits float32 and does not round to 0, and no centre or corner
 * overflows float32, whatever the clip (so that a config is valid or not
 * independently of it).  The largest x2 is at the last column with the
 * widest box, since rounding and float32 addition are monotonic.  Call
 * after check_fields().
 */
static int check_range(const mbx_prior_params *p, mbx_detail *detail)
{
    double wh[2 + 2 * MBX_PRIOR_MAX_RATIOS][2];
    for (int k = 0; k < p->num_layers; k++) {
        int n = layer_sizes(p, k, wh);
        float widest = 0.0f;
        for (int b = 0; b < n; b++) {
            for (int c = 0; c < 2; c++) {
                if (!(wh[b][c] <= (double)FLT_MAX) || !((float)wh[b][c] > 0.0f))
                    return size_range_error(p, k, b, detail);
                if ((float)wh[b][c] > widest)
                    widest = (float)wh[b][c];
            }
        }
        double fk = layer_fk(p, k);
        double last = fk > 0.0 ? centre_at(p, fk, p->feature_maps[k] - 1) : HUGE_VAL;
        if (!(last <= (double)FLT_MAX) || !isfinite((float)last + widest / 2.0f))
            return mbx_detail_set(detail, MBX_E_BAD_CONFIG,
                                  "prior_box.steps[%d]: anchor centres (step %g, image_size %g) "
                                  "overflow float32",
                                  k, p->steps[k], p->image_size);
    }
    return 0;
}

/*
 * Validates p (every field, MBX_E_BAD_CONFIG naming it) and sets *count to
 * sum_k f_k^2 * (1 + has_max_sizes + 2 * num_ratios[k]); MBX_E_SHAPE_OVERFLOW
 * if that exceeds PRIOR_MAX_ANCHORS (10 million), MBX_E_INVALID_ARGUMENT for
 * a NULL p or count.  *count is written only on success.
 */
int mbx_prior_count(const mbx_prior_params *p, int64_t *count, mbx_detail *detail)
{
    if (!p || !count)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "prior_box: %s is NULL",
                              p ? "count" : "params");
    int rc = check_fields(p, detail);
    if (rc)
        return rc;
    int64_t total = 0;
    for (int k = 0; k < p->num_layers; k++) {
        int64_t f = p->feature_maps[k];
        /* f <= cap keeps f * f * per_cell (<= 1e14 * 18) and total below 2^63 */
        if (f <= PRIOR_MAX_ANCHORS)
            total += f * f * boxes_per_cell(p, k);
        if (f > PRIOR_MAX_ANCHORS || total > PRIOR_MAX_ANCHORS)
            return mbx_detail_set(detail, MBX_E_SHAPE_OVERFLOW,
                                  "prior_box.feature_maps[%d]: more than %lld anchors", k,
                                  (long long)PRIOR_MAX_ANCHORS);
    }
    rc = check_range(p, detail);
    if (rc)
        return rc;
    *count = total;
    return 0;
}

/* ---------------------------------------------------------------- generate */

/*
 * Writes the count anchors of p, xyxy, into out[0 .. count*4).  Layers in
 * order, cells row i outer and column j inner, boxes of a cell in the
 * layer_sizes() order.  Errors of mbx_prior_count(), or
 * MBX_E_INVALID_ARGUMENT for a NULL out or capacity < count; out is not
 * touched on failure, nor beyond count anchors on success.
 */
int mbx_prior_generate(const mbx_prior_params *p, float *out, int64_t capacity,
                       mbx_detail *detail)
{
    int64_t count;
    int rc = mbx_prior_count(p, &count, detail);
    if (rc)
        return rc;
    if (!out)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "prior_box: out is NULL");
    if (capacity < count)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT,
                              "prior_box: capacity %lld is less than the %lld anchors",
                              (long long)capacity, (long long)count);

    const int centre_clip = p->clip == MBX_CLIP_CENTER;
    const int corner_clip = p->clip == MBX_CLIP_CORNERS;
    double wide[2 + 2 * MBX_PRIOR_MAX_RATIOS][2];
    float wh[2 + 2 * MBX_PRIOR_MAX_RATIOS][2];
    float *o = out;
    for (int k = 0; k < p->num_layers; k++) {
        int n = layer_sizes(p, k, wide);
        for (int b = 0; b < n; b++) {
            wh[b][0] = (float)wide[b][0];
            wh[b][1] = (float)wide[b][1];
            if (centre_clip) {
                wh[b][0] = clamp01(wh[b][0]);
                wh[b][1] = clamp01(wh[b][1]);
            }
        }
        double fk = layer_fk(p, k);
        int64_t f = p->feature_maps[k];
        for (int64_t i = 0; i < f; i++) {
            float cy = (float)centre_at(p, fk, i);
            if (centre_clip)
                cy = clamp01(cy);
            for (int64_t j = 0; j < f; j++) {
                float cx = (float)centre_at(p, fk, j);
                if (centre_clip)
                    cx = clamp01(cx);
                for (int b = 0; b < n; b++) {
                    /* float32 arithmetic, as torch does on the float32 tensor */
                    float hw = wh[b][0] / 2.0f, hh = wh[b][1] / 2.0f;
                    float x1 = cx - hw, y1 = cy - hh, x2 = cx + hw, y2 = cy + hh;
                    if (corner_clip) {
                        x1 = clamp01(x1);
                        y1 = clamp01(y1);
                        x2 = clamp01(x2);
                        y2 = clamp01(y2);
                    }
                    o[0] = x1;
                    o[1] = y1;
                    o[2] = x2;
                    o[3] = y2;
                    o += 4;
                }
            }
        }
    }
    return 0;
}
