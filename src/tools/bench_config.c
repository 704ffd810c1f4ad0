/*
 * bench_config.c - maps the semantics document's config names to the core's
 * enums for multibox-bench: flag parsing ("--bipartite per_gt") and the
 * config object of the dumped /v1/loss request.  It never validates ranges
 * (mbx_config_validate() does) and never allocates.
 */
#include "bench_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const box_formats[] = {"xyxy", "cxcywh", NULL};
static const char *const bipartites[] = {"greedy", "per_gt", "none", NULL};
static const char *const loc_losses[] = {"smooth_l1", "l1", "l2", "giou", "diou", "ciou", NULL};
static const char *const conf_losses[] = {"softmax", "sigmoid", "focal", NULL};
static const char *const minings[] = {"hard_negative", "none", NULL};
static const char *const normalizations[] = {"positives", "positives_per_image", "anchors",
                                             "batch", "none", NULL};

/* Index of name in the NULL-terminated list, or -1. */
static int lookup(const char *const *list, const char *name)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return i;
    return -1;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_long(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0)
        return -1;
    *out = v;
    return 0;
}

/* Parses "a,b" or "a,b,c,d" into the variances. */
static int parse_variances(mbx_config *cfg, const char *s)
{
    double v[4];
    int n = 0;
    const char *p = s;
    while (n < 4) {
        char *end;
        errno = 0;
        v[n] = strtod(p, &end);
        if (end == p || errno != 0)
            return -1;
        n++;
        if (*end == '\0')
            break;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
    if ((n != 2 && n != 4) || *p == '\0')
        return -1;
    cfg->num_variances = n;
    for (int i = 0; i < 4; i++)
        cfg->variances[i] = i < n ? v[i] : 0.0;
    return 0;
}

int bench_config_apply(mbx_config *cfg, const char *key, const char *value, char *err,
                       size_t err_len)
{
    char k[64];
    size_t n = strlen(key);
    if (n >= sizeof k)
        return 0;
    for (size_t i = 0; i <= n; i++)
        k[i] = key[i] == '-' ? '_' : key[i];

    int idx;
    double d;
    long long ll;
#define ENUM_KEY(name, list, field, type)                                     \
    if (strcmp(k, name) == 0) {                                               \
        if ((idx = lookup(list, value)) < 0)                                  \
            goto bad;                                                         \
        cfg->field = (type)idx;                                               \
        return 1;                                                             \
    }
#define REAL_KEY(name, field)                                                 \
    if (strcmp(k, name) == 0) {                                               \
        if (parse_double(value, &d) != 0)                                     \
            goto bad;                                                         \
        cfg->field = d;                                                       \
        return 1;                                                             \
    }
    ENUM_KEY("box_format", box_formats, box_format, mbx_box_format)
    ENUM_KEY("bipartite", bipartites, bipartite, mbx_bipartite)
    ENUM_KEY("loc_loss", loc_losses, loc_loss, mbx_loc_loss)
    ENUM_KEY("conf_loss", conf_losses, conf_loss, mbx_conf_loss)
    ENUM_KEY("mining", minings, mining, mbx_mining)
    ENUM_KEY("normalization", normalizations, normalization, mbx_normalization)
    REAL_KEY("overlap_threshold", overlap_threshold)
    REAL_KEY("neg_overlap", neg_overlap)
    REAL_KEY("smooth_l1_beta", smooth_l1_beta)
    REAL_KEY("alpha", alpha)
    REAL_KEY("focal_alpha", focal_alpha)
    REAL_KEY("focal_gamma", focal_gamma)
    REAL_KEY("neg_pos_ratio", neg_pos_ratio)
#undef ENUM_KEY
#undef REAL_KEY
    if (strcmp(k, "use_difficult") == 0) {
        if (strcmp(value, "true") == 0)
            cfg->use_difficult = 1;
        else if (strcmp(value, "false") == 0)
            cfg->use_difficult = 0;
        else
            goto bad;
        return 1;
    }
    if (strcmp(k, "background_label") == 0) {
        if (parse_long(value, &ll) != 0 || ll < -1 || ll > 1000000000)
            goto bad;
        cfg->background_label = (int)ll;
        return 1;
    }
    if (strcmp(k, "min_negatives") == 0) {
        if (parse_long(value, &ll) != 0)
            goto bad;
        cfg->min_negatives = ll;
        return 1;
    }
    if (strcmp(k, "variances") == 0) {
        if (parse_variances(cfg, value) != 0)
            goto bad;
        return 1;
    }
    return 0;
bad:
    snprintf(err, err_len, "--%s: invalid value '%s'", key, value);
    return -1;
}

void bench_config_print_keys(FILE *out)
{
    fprintf(out,
            "  --box-format xyxy|cxcywh         --bipartite greedy|per_gt|none\n"
            "  --overlap-threshold X            --neg-overlap X\n"
            "  --use-difficult true|false       --variances A,B[,C,D]\n"
            "  --loc-loss smooth_l1|l1|l2|giou|diou|ciou   --smooth-l1-beta X\n"
            "  --alpha X                        --conf-loss softmax|sigmoid|focal\n"
            "  --background-label N             --focal-alpha X  --focal-gamma X\n"
            "  --mining hard_negative|none      --neg-pos-ratio X  --min-negatives N\n"
            "  --normalization positives|positives_per_image|anchors|batch|none\n");
}

/* Prints a double so that it reads back as the same double. */
static void write_real(FILE *out, double v)
{
    fprintf(out, "%.17g", v);
}

void bench_config_write_json(FILE *out, const mbx_config *cfg)
{
    fprintf(out, "{\"box_format\": \"%s\", \"bipartite\": \"%s\", \"overlap_threshold\": ",
            box_formats[cfg->box_format], bipartites[cfg->bipartite]);
    write_real(out, cfg->overlap_threshold);
    fprintf(out, ", \"neg_overlap\": ");
    write_real(out, cfg->neg_overlap);
    fprintf(out, ", \"use_difficult\": %s, \"variances\": [", cfg->use_difficult ? "true" : "false");
    for (int i = 0; i < cfg->num_variances; i++) {
        if (i)
            fprintf(out, ", ");
        write_real(out, cfg->variances[i]);
    }
    fprintf(out, "], \"loc_loss\": \"%s\", \"smooth_l1_beta\": ", loc_losses[cfg->loc_loss]);
    write_real(out, cfg->smooth_l1_beta);
    fprintf(out, ", \"alpha\": ");
    write_real(out, cfg->alpha);
    fprintf(out, ", \"conf_loss\": \"%s\", \"background_label\": %d, \"focal_alpha\": ",
            conf_losses[cfg->conf_loss], cfg->background_label);
    write_real(out, cfg->focal_alpha);
    fprintf(out, ", \"focal_gamma\": ");
    write_real(out, cfg->focal_gamma);
    fprintf(out, ", \"mining\": \"%s\", \"neg_pos_ratio\": ", minings[cfg->mining]);
    write_real(out, cfg->neg_pos_ratio);
    fprintf(out, ", \"min_negatives\": %lld, \"normalization\": \"%s\"}",
            (long long)cfg->min_negatives, normalizations[cfg->normalization]);
}

void bench_config_write_summary(FILE *out, const mbx_config *cfg)
{
    fprintf(out, "bipartite=%s loc_loss=%s conf_loss=%s mining=%s normalization=%s",
            bipartites[cfg->bipartite], loc_losses[cfg->loc_loss], conf_losses[cfg->conf_loss],
            minings[cfg->mining], normalizations[cfg->normalization]);
}
