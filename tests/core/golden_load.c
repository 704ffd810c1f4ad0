/*
 * golden_load.c - reads a golden case with jansson into a mbx_config, a
 * mbx_batch and the expected results (tensors as {"shape", "data"}, anchors
 * as a tensor, box_format xyxy, every config key spelled out).  Test helper:
 * allocates freely, reports problems as strings.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_load.h"

static const char *golden_dir(void)
{
    const char *d = getenv("MBX_GOLDEN_DIR");
    return d ? d : "../shared/golden";
}

void golden_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/cases/%s", golden_dir(), name);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int golden_list(char ***names)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/cases", golden_dir());
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0, cap = 64;
    char **v = malloc((size_t)cap * sizeof *v);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
            if (n == cap)
                v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            v[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *names = v;
    return n;
}

void golden_list_free(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* A {"shape","data"} tensor of the expected rank into a new float array. */
static float *tensor(json_t *t, int rank, int64_t *dims, char *err, size_t errlen, const char *what)
{
    json_t *shape = json_object_get(t, "shape"), *data = json_object_get(t, "data");
    if (!json_is_array(shape) || !json_is_array(data) || (int)json_array_size(shape) != rank) {
        snprintf(err, errlen, "%s: not a rank-%d {shape, data} tensor", what, rank);
        return NULL;
    }
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = json_integer_value(json_array_get(shape, (size_t)i));
        n *= (size_t)dims[i];
    }
    if (json_array_size(data) != n) {
        snprintf(err, errlen, "%s: %zu values for %zu", what, json_array_size(data), n);
        return NULL;
    }
    float *out = malloc((n ? n : 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = (float)json_number_value(json_array_get(data, i));
    return out;
}

static int parse_enum(json_t *cfg, const char *key, const char *const *names, int *out)
{
    const char *s = json_string_value(json_object_get(cfg, key));
    if (!s)
        return -1;
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

static int parse_config(json_t *j, mbx_config *c, char *err, size_t errlen)
{
    static const char *const fmt[] = {"xyxy", "cxcywh", NULL};
    static const char *const bip[] = {"greedy", "per_gt", "none", NULL};
    static const char *const locl[] = {"smooth_l1", "l1", "l2", "giou", "diou", "ciou", NULL};
    static const char *const confl[] = {"softmax", "sigmoid", "focal", NULL};
    static const char *const mining[] = {"hard_negative", "none", NULL};
    static const char *const norm[] = {"positives", "positives_per_image", "anchors", "batch",
                                       "none", NULL};
    mbx_config_default(c);
    int v;
    if (parse_enum(j, "box_format", fmt, &v))
        goto bad;
    c->box_format = (mbx_box_format)v;
    if (parse_enum(j, "bipartite", bip, &v))
        goto bad;
    c->bipartite = (mbx_bipartite)v;
    if (parse_enum(j, "loc_loss", locl, &v))
        goto bad;
    c->loc_loss = (mbx_loc_loss)v;
    if (parse_enum(j, "conf_loss", confl, &v))
        goto bad;
    c->conf_loss = (mbx_conf_loss)v;
    if (parse_enum(j, "mining", mining, &v))
        goto bad;
    c->mining = (mbx_mining)v;
    if (parse_enum(j, "normalization", norm, &v))
        goto bad;
    c->normalization = (mbx_normalization)v;
    c->overlap_threshold = json_number_value(json_object_get(j, "overlap_threshold"));
    c->neg_overlap = json_number_value(json_object_get(j, "neg_overlap"));
    c->use_difficult = json_is_true(json_object_get(j, "use_difficult"));
    json_t *var = json_object_get(j, "variances");
    c->num_variances = (int)json_array_size(var);
    for (int i = 0; i < c->num_variances && i < 4; i++)
        c->variances[i] = json_number_value(json_array_get(var, (size_t)i));
    c->smooth_l1_beta = json_number_value(json_object_get(j, "smooth_l1_beta"));
    c->alpha = json_number_value(json_object_get(j, "alpha"));
    c->background_label = (int)json_integer_value(json_object_get(j, "background_label"));
    c->focal_alpha = json_number_value(json_object_get(j, "focal_alpha"));
    c->focal_gamma = json_number_value(json_object_get(j, "focal_gamma"));
    c->neg_pos_ratio = json_number_value(json_object_get(j, "neg_pos_ratio"));
    c->min_negatives = json_integer_value(json_object_get(j, "min_negatives"));
    return 0;
bad:
    snprintf(err, errlen, "config: unexpected enum value");
    return -1;
}

int golden_load(const char *path, golden_case *gc, char *err, size_t errlen)
{
    memset(gc, 0, sizeof *gc);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        snprintf(err, errlen, "%s: %s", path, je.text);
        return -1;
    }
    int rc = -1;
    json_t *req = json_object_get(root, "request"), *exp = json_object_get(root, "expected");
    snprintf(gc->name, sizeof gc->name, "%s", json_string_value(json_object_get(root, "name")));
    if (parse_config(json_object_get(req, "config"), &gc->cfg, err, errlen))
        goto out;
    int64_t dl[3], dc[3], da[2], dg[3];
    gc->loc = tensor(json_object_get(req, "loc"), 3, dl, err, errlen, "loc");
    gc->conf = tensor(json_object_get(req, "conf"), 3, dc, err, errlen, "conf");
    gc->anchors = tensor(json_object_get(req, "anchors"), 2, da, err, errlen, "anchors");
    if (!gc->loc || !gc->conf || !gc->anchors)
        goto out;
    const int64_t B = dl[0], A = dl[1], C = dc[2];
    json_t *targets = json_object_get(req, "targets");
    gc->targets = calloc((size_t)B, sizeof *gc->targets);
    for (int64_t i = 0; i < B; i++) {
        json_t *t = json_array_get(targets, (size_t)i);
        json_t *boxes = json_object_get(t, "boxes"), *labels = json_object_get(t, "labels");
        json_t *diff = json_object_get(t, "difficult");
        const int64_t n = (int64_t)json_array_size(boxes);
        float *bx = malloc((size_t)(n ? n : 1) * 4 * sizeof *bx);
        int64_t *lb = malloc((size_t)(n ? n : 1) * sizeof *lb);
        uint8_t *df = diff ? malloc((size_t)(n ? n : 1)) : NULL;
        for (int64_t j = 0; j < n; j++) {
            for (int k = 0; k < 4; k++)
                bx[4 * j + k] = (float)json_number_value(
                    json_array_get(json_array_get(boxes, (size_t)j), (size_t)k));
            lb[j] = json_integer_value(json_array_get(labels, (size_t)j));
            if (df)
                df[j] = json_is_true(json_array_get(diff, (size_t)j));
        }
        gc->targets[i] = (mbx_image_targets){bx, lb, df, n};
        if (n > gc->max_boxes)
            gc->max_boxes = n;
    }
    gc->batch = (mbx_batch){B, A, C, gc->loc, gc->conf, gc->anchors, MBX_BOX_XYXY, gc->targets};

    gc->loss = json_number_value(json_object_get(exp, "loss"));
    gc->conf_loss = json_number_value(json_object_get(exp, "conf_loss"));
    gc->loc_loss = json_number_value(json_object_get(exp, "loc_loss"));
    gc->normalizer = json_number_value(json_object_get(exp, "normalizer"));
    gc->num_positives = json_integer_value(json_object_get(exp, "num_positives"));
    gc->num_negatives = json_integer_value(json_object_get(exp, "num_negatives"));
    json_t *pi = json_object_get(exp, "per_image");
    gc->per_image = calloc((size_t)B, sizeof *gc->per_image);
    for (int64_t i = 0; i < B; i++) {
        json_t *o = json_array_get(pi, (size_t)i);
        gc->per_image[i].loss = json_number_value(json_object_get(o, "loss"));
        gc->per_image[i].conf_loss = json_number_value(json_object_get(o, "conf_loss"));
        gc->per_image[i].loc_loss = json_number_value(json_object_get(o, "loc_loss"));
        gc->per_image[i].num_positives = json_integer_value(json_object_get(o, "num_positives"));
        gc->per_image[i].num_negatives = json_integer_value(json_object_get(o, "num_negatives"));
    }
    json_t *m = json_object_get(exp, "matches");
    gc->matches = malloc((size_t)(B * A) * sizeof *gc->matches);
    for (int64_t i = 0; i < B; i++)
        for (int64_t a = 0; a < A; a++)
            gc->matches[i * A + a] = (int32_t)json_integer_value(
                json_array_get(json_array_get(m, (size_t)i), (size_t)a));
    gc->grad_loc = tensor(json_object_get(exp, "grad_loc"), 3, dg, err, errlen, "grad_loc");
    if (!gc->grad_loc)
        goto out;
    gc->grad_conf = tensor(json_object_get(exp, "grad_conf"), 3, dg, err, errlen, "grad_conf");
    if (!gc->grad_conf)
        goto out;
    rc = 0;
out:
    json_decref(root);
    if (rc)
        golden_free(gc);
    return rc;
}

void golden_free(golden_case *gc)
{
    if (gc->targets)
        for (int64_t i = 0; i < gc->batch.batch; i++) {
            free((void *)gc->targets[i].boxes);
            free((void *)gc->targets[i].labels);
            free((void *)gc->targets[i].difficult);
        }
    free(gc->targets);
    free(gc->loc);
    free(gc->conf);
    free(gc->anchors);
    free(gc->per_image);
    free(gc->matches);
    free(gc->grad_loc);
    free(gc->grad_conf);
    memset(gc, 0, sizeof *gc);
}
