/*
 * config_json.c - the small objects of a /v1/loss request: "config" (every
 * key of the semantics table), "outputs", and the "prior_box" generator
 * parameters.  Checks JSON types, enum spellings and lengths and names the
 * key in every error; numeric ranges are the core's mbx_config_validate and
 * mbx_prior_count's job.  No allocation.
 */
#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include "codec_internal.h"

/* ---------------------------------------------------------------- helpers */

static int fail_type(mbx_detail *d, const jpath *p, const char *want, const json_t *j)
{
    return jpath_fail(d, MBX_E_WRONG_TYPE, p, "expected %s, found %s", want,
                      mbx_json_type_name(j));
}

/* A JSON number (integer or real) as a double. */
static int get_number(const json_t *j, double *out, const jpath *p, mbx_detail *d)
{
    if (!json_is_number(j))
        return fail_type(d, p, "a number", j);
    *out = json_number_value(j);
    return 0;
}

static int get_bool(const json_t *j, int *out, const jpath *p, mbx_detail *d)
{
    if (!json_is_boolean(j))
        return fail_type(d, p, "true or false", j);
    *out = json_is_true(j);
    return 0;
}

/*
 * A string among names[] (NULL-terminated); *out is its index.  A string
 * outside the list fails with bad_code and the list in the message.
 */
static int get_enum(const json_t *j, const char *const *names, int bad_code, int *out,
                    const jpath *p, mbx_detail *d)
{
    char list[160];
    size_t n = 0;
    if (!json_is_string(j))
        return fail_type(d, p, "a string", j);
    for (int i = 0; names[i]; i++) {
        if (strcmp(json_string_value(j), names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    list[0] = '\0';
    for (int i = 0; names[i] && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", names[i]);
    return jpath_fail(d, bad_code, p, "unknown value (expected one of %s)", list);
}

/* ---------------------------------------------------------------- config */

static const char *const box_format_names[] = {"xyxy", "cxcywh", NULL};
static const char *const bipartite_names[] = {"greedy", "per_gt", "none", NULL};
static const char *const loc_loss_names[] = {"smooth_l1", "l1", "l2", "giou", "diou", "ciou",
                                             NULL};
static const char *const conf_loss_names[] = {"softmax", "sigmoid", "focal", NULL};
static const char *const mining_names[] = {"hard_negative", "none", NULL};
static const char *const normalization_names[] = {"positives", "positives_per_image", "anchors",
                                                  "batch", "none", NULL};

enum key_kind { K_ENUM, K_NUMBER, K_BOOL, K_INT, K_INT64, K_VARIANCES };

typedef struct config_key {
    const char *name;
    enum key_kind kind;
    size_t offset;                /* of the field in mbx_config */
    const char *const *names;     /* K_ENUM */
} config_key;

#define OFF(field) offsetof(mbx_config, field)
static const config_key config_keys[] = {
    {"box_format", K_ENUM, OFF(box_format), box_format_names},
    {"bipartite", K_ENUM, OFF(bipartite), bipartite_names},
    {"overlap_threshold", K_NUMBER, OFF(overlap_threshold), NULL},
    {"neg_overlap", K_NUMBER, OFF(neg_overlap), NULL},
    {"use_difficult", K_BOOL, OFF(use_difficult), NULL},
    {"variances", K_VARIANCES, OFF(variances), NULL},
    {"loc_loss", K_ENUM, OFF(loc_loss), loc_loss_names},
    {"smooth_l1_beta", K_NUMBER, OFF(smooth_l1_beta), NULL},
    {"alpha", K_NUMBER, OFF(alpha), NULL},
    {"conf_loss", K_ENUM, OFF(conf_loss), conf_loss_names},
    {"background_label", K_INT, OFF(background_label), NULL},
    {"focal_alpha", K_NUMBER, OFF(focal_alpha), NULL},
    {"focal_gamma", K_NUMBER, OFF(focal_gamma), NULL},
    {"mining", K_ENUM, OFF(mining), mining_names},
    {"neg_pos_ratio", K_NUMBER, OFF(neg_pos_ratio), NULL},
    {"min_negatives", K_INT64, OFF(min_negatives), NULL},
    {"normalization", K_ENUM, OFF(normalization), normalization_names},
};
#undef OFF

static int parse_variances(const json_t *j, mbx_config *cfg, jpath *p, mbx_detail *d)
{
    double v[4];
    size_t n;
    if (!json_is_array(j))
        return fail_type(d, p, "an array of 2 or 4 numbers", j);
    n = json_array_size(j);
    if (n != 2 && n != 4)
        return jpath_fail(d, MBX_E_BAD_CONFIG, p,
                          "has %zu numbers, expected 2 (centre, size) or 4 (cx, cy, w, h)", n);
    for (size_t i = 0; i < n; i++) {
        size_t mark = jpath_index(p, (int64_t)i);
        int rc = get_number(json_array_get(j, i), &v[i], p, d);
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }
    cfg->num_variances = (int)n;
    if (n == 2) {
        /* Only [0] and [1] are read with 2; the copies keep all four valid. */
        v[2] = v[0];
        v[3] = v[1];
    }
    memcpy(cfg->variances, v, sizeof v);
    return 0;
}

static int parse_config_key(const config_key *k, const json_t *j, mbx_config *cfg, jpath *p,
                            mbx_detail *d)
{
    char *field = (char *)cfg + k->offset;
    int rc, iv = 0;
    double dv = 0;
    switch (k->kind) {
    case K_ENUM:
        rc = get_enum(j, k->names, MBX_E_BAD_CONFIG, &iv, p, d);
        if (rc == 0) {
            /* Every enum field of mbx_config has an enum type: int-sized. */
            memcpy(field, &iv, sizeof iv);
        }
        return rc;
    case K_NUMBER:
        rc = get_number(j, &dv, p, d);
        if (rc == 0)
            memcpy(field, &dv, sizeof dv);
        return rc;
    case K_BOOL:
        rc = get_bool(j, &iv, p, d);
        if (rc == 0)
            memcpy(field, &iv, sizeof iv);
        return rc;
    case K_INT:
    case K_INT64: {
        if (!json_is_integer(j))
            return fail_type(d, p, "an integer", j);
        json_int_t v = json_integer_value(j);
        if (k->kind == K_INT) {
            if (v < INT_MIN || v > INT_MAX)
                return jpath_fail(d, MBX_E_BAD_CONFIG, p, "%" PRId64 " is out of range",
                                  (int64_t)v);
            iv = (int)v;
            memcpy(field, &iv, sizeof iv);
        } else {
            int64_t v64 = (int64_t)v;
            memcpy(field, &v64, sizeof v64);
        }
        return 0;
    }
    case K_VARIANCES:
        return parse_variances(j, cfg, p, d);
    }
    return MBX_E_INTERNAL;
}

int mbx_config_parse_json(const json_t *j, mbx_config *cfg, jpath *p, mbx_detail *detail)
{
    const char *key;
    json_t *val;
    /* The enum fields are copied as int: make sure that is their size. */
    _Static_assert(sizeof(mbx_box_format) == sizeof(int) && sizeof(mbx_bipartite) == sizeof(int) &&
                       sizeof(mbx_loc_loss) == sizeof(int) && sizeof(mbx_conf_loss) == sizeof(int) &&
                       sizeof(mbx_mining) == sizeof(int) &&
                       sizeof(mbx_normalization) == sizeof(int),
                   "config enums are int-sized");
    if (!json_is_object(j))
        return fail_type(detail, p, "an object", j);
    json_object_foreach((json_t *)j, key, val) {
        const config_key *k = NULL;
        for (size_t i = 0; i < sizeof config_keys / sizeof config_keys[0]; i++) {
            if (strcmp(key, config_keys[i].name) == 0) {
                k = &config_keys[i];
                break;
            }
        }
        size_t mark = jpath_key(p, key);
        int rc = k ? parse_config_key(k, val, cfg, p, detail)
                   : jpath_fail(detail, MBX_E_UNKNOWN_FIELD, p, "unknown config key");
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }
    return 0;
}

/* --------------------------------------------------------------- outputs */

void mbx_outputs_default(mbx_outputs *out)
{
    out->gradients = MBX_GRAD_DENSE;
    out->per_image = 1;
    out->matches = 0;
    out->tensor_format = MBX_TENSOR_NESTED;
}

int mbx_tensor_format_parse(const char *name, mbx_tensor_format *fmt)
{
    if (!name)
        return MBX_E_OUT_OF_RANGE;
    if (strcmp(name, "nested") == 0)
        *fmt = MBX_TENSOR_NESTED;
    else if (strcmp(name, "flat") == 0)
        *fmt = MBX_TENSOR_FLAT;
    else if (strcmp(name, "b64") == 0)
        *fmt = MBX_TENSOR_B64;
    else
        return MBX_E_OUT_OF_RANGE;
    return 0;
}

static int parse_outputs_key(const char *key, const json_t *val, mbx_outputs *out, jpath *p,
                             mbx_detail *d)
{
    if (strcmp(key, "gradients") == 0) {
        if (json_is_boolean(val)) {
            out->gradients = json_is_true(val) ? MBX_GRAD_DENSE : MBX_GRAD_NONE;
            return 0;
        }
        if (json_is_string(val) && strcmp(json_string_value(val), "sparse") == 0) {
            out->gradients = MBX_GRAD_SPARSE;
            return 0;
        }
        if (json_is_string(val))
            return jpath_fail(d, MBX_E_OUT_OF_RANGE, p,
                              "unknown value (expected true, false or \"sparse\")");
        return fail_type(d, p, "true, false or \"sparse\"", val);
    }
    if (strcmp(key, "per_image") == 0)
        return get_bool(val, &out->per_image, p, d);
    if (strcmp(key, "matches") == 0)
        return get_bool(val, &out->matches, p, d);
    if (strcmp(key, "tensor_format") == 0) {
        if (!json_is_string(val))
            return fail_type(d, p, "a string", val);
        if (mbx_tensor_format_parse(json_string_value(val), &out->tensor_format))
            return jpath_fail(d, MBX_E_OUT_OF_RANGE, p,
                              "unknown value (expected nested, flat or b64)");
        return 0;
    }
    return jpath_fail(d, MBX_E_UNKNOWN_FIELD, p, "unknown outputs key");
}

int mbx_outputs_parse_json(const json_t *j, mbx_outputs *out, jpath *p, mbx_detail *detail)
{
    const char *key;
    json_t *val;
    if (!json_is_object(j))
        return fail_type(detail, p, "an object", j);
    json_object_foreach((json_t *)j, key, val) {
        size_t mark = jpath_key(p, key);
        int rc = parse_outputs_key(key, val, out, p, detail);
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }
    return 0;
}

/* -------------------------------------------------------------- prior_box */

static const char *const clip_names[] = {"none", "corners", "center", NULL};

/* An array of n_max at most numbers into out; *n gets the count. */
static int get_number_list(const json_t *j, double *out, int n_max, int *n, jpath *p,
                           mbx_detail *d)
{
    if (!json_is_array(j))
        return fail_type(d, p, "an array of numbers", j);
    if (json_array_size(j) > (size_t)n_max)
        return jpath_fail(d, MBX_E_BAD_CONFIG, p, "has %zu entries, at most %d are allowed",
                          json_array_size(j), n_max);
    *n = (int)json_array_size(j);
    for (int i = 0; i < *n; i++) {
        size_t mark = jpath_index(p, i);
        int rc = get_number(json_array_get(j, (size_t)i), &out[i], p, d);
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }
    return 0;
}

static int want_layers(int n, int layers, const jpath *p, mbx_detail *d)
{
    if (n != layers)
        return jpath_fail(d, MBX_E_BAD_CONFIG, p,
                          "has %d entries, feature_maps has %d (one per layer)", n, layers);
    return 0;
}

int mbx_prior_params_parse_json(const json_t *j, mbx_prior_params *pp, jpath *p,
                                mbx_detail *detail)
{
    const char *key;
    json_t *val;
    const json_t *fm = NULL, *steps = NULL, *mins = NULL, *maxs = NULL, *ratios = NULL;
    const json_t *size = NULL, *clip = NULL, *offset = NULL;
    size_t mark;
    int rc, n;
    double tmp[MBX_PRIOR_MAX_LAYERS];

    memset(pp, 0, sizeof *pp);
    pp->offset = 0.5;
    pp->clip = MBX_CLIP_NONE;
    if (!json_is_object(j))
        return fail_type(detail, p, "an object", j);
    json_object_foreach((json_t *)j, key, val) {
        if (strcmp(key, "image_size") == 0)
            size = val;
        else if (strcmp(key, "feature_maps") == 0)
            fm = val;
        else if (strcmp(key, "steps") == 0)
            steps = val;
        else if (strcmp(key, "min_sizes") == 0)
            mins = val;
        else if (strcmp(key, "max_sizes") == 0)
            maxs = val;
        else if (strcmp(key, "aspect_ratios") == 0)
            ratios = val;
        else if (strcmp(key, "clip") == 0)
            clip = val;
        else if (strcmp(key, "offset") == 0)
            offset = val;
        else {
            mark = jpath_key(p, key);
            rc = jpath_fail(detail, MBX_E_UNKNOWN_FIELD, p, "unknown prior_box key");
            jpath_restore(p, mark);
            return rc;
        }
    }
    static const char *const required[] = {"image_size", "feature_maps", "steps", "min_sizes"};
    const json_t *present[] = {size, fm, steps, mins};
    for (int i = 0; i < 4; i++) {
        if (!present[i]) {
            mark = jpath_key(p, required[i]);
            rc = jpath_fail(detail, MBX_E_MISSING_FIELD, p, "missing");
            jpath_restore(p, mark);
            return rc;
        }
    }

    mark = jpath_key(p, "image_size");
    rc = get_number(size, &pp->image_size, p, detail);
    jpath_restore(p, mark);
    if (rc)
        return rc;

    mark = jpath_key(p, "feature_maps");
    if (!json_is_array(fm)) {
        rc = fail_type(detail, p, "an array of integers", fm);
    } else if (json_array_size(fm) < 1 || json_array_size(fm) > MBX_PRIOR_MAX_LAYERS) {
        rc = jpath_fail(detail, MBX_E_BAD_CONFIG, p, "has %zu layers, expected 1 to %d",
                        json_array_size(fm), MBX_PRIOR_MAX_LAYERS);
    } else {
        pp->num_layers = (int)json_array_size(fm);
        for (int i = 0; i < pp->num_layers && rc == 0; i++) {
            const json_t *v = json_array_get(fm, (size_t)i);
            size_t m2 = jpath_index(p, i);
            if (!json_is_integer(v))
                rc = fail_type(detail, p, "an integer", v);
            else
                pp->feature_maps[i] = (int64_t)json_integer_value(v);
            jpath_restore(p, m2);
        }
    }
    jpath_restore(p, mark);
    if (rc)
        return rc;

    mark = jpath_key(p, "steps");
    rc = get_number_list(steps, pp->steps, MBX_PRIOR_MAX_LAYERS, &n, p, detail);
    if (!rc)
        rc = want_layers(n, pp->num_layers, p, detail);
    jpath_restore(p, mark);
    if (rc)
        return rc;

    mark = jpath_key(p, "min_sizes");
    rc = get_number_list(mins, pp->min_sizes, MBX_PRIOR_MAX_LAYERS, &n, p, detail);
    if (!rc)
        rc = want_layers(n, pp->num_layers, p, detail);
    jpath_restore(p, mark);
    if (rc)
        return rc;

    if (maxs) {
        mark = jpath_key(p, "max_sizes");
        rc = get_number_list(maxs, tmp, MBX_PRIOR_MAX_LAYERS, &n, p, detail);
        if (!rc)
            rc = want_layers(n, pp->num_layers, p, detail);
        jpath_restore(p, mark);
        if (rc)
            return rc;
        memcpy(pp->max_sizes, tmp, sizeof tmp);
        pp->has_max_sizes = 1;
    }

    if (ratios) {
        mark = jpath_key(p, "aspect_ratios");
        if (!json_is_array(ratios))
            rc = fail_type(detail, p, "an array of arrays of numbers", ratios);
        else
            rc = want_layers((int)json_array_size(ratios) > MBX_PRIOR_MAX_LAYERS
                                 ? MBX_PRIOR_MAX_LAYERS + 1
                                 : (int)json_array_size(ratios),
                             pp->num_layers, p, detail);
        for (int i = 0; i < pp->num_layers && rc == 0; i++) {
            size_t m2 = jpath_index(p, i);
            rc = get_number_list(json_array_get(ratios, (size_t)i), pp->aspect_ratios[i],
                                 MBX_PRIOR_MAX_RATIOS, &pp->num_ratios[i], p, detail);
            jpath_restore(p, m2);
        }
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }

    if (clip) {
        int iv;
        mark = jpath_key(p, "clip");
        rc = get_enum(clip, clip_names, MBX_E_BAD_CONFIG, &iv, p, detail);
        jpath_restore(p, mark);
        if (rc)
            return rc;
        pp->clip = (mbx_prior_clip)iv;
    }
    if (offset) {
        mark = jpath_key(p, "offset");
        rc = get_number(offset, &pp->offset, p, detail);
        jpath_restore(p, mark);
        if (rc)
            return rc;
    }
    return 0;
}
