/*
 * golden_load.h - loads a golden case (../shared/golden/cases, one JSON file each) into
 * core structs for the core's own tests, with jansson directly (the codec is
 * tested separately).  Test helper only.
 */
#ifndef MBX_TEST_GOLDEN_LOAD_H
#define MBX_TEST_GOLDEN_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "multibox/multibox.h"

typedef struct golden_case {
    char name[128];
    mbx_config cfg;
    mbx_batch batch;        /* points into the arrays below */
    int64_t max_boxes;
    float *loc, *conf, *anchors;
    mbx_image_targets *targets;
    /* expected */
    double loss, conf_loss, loc_loss, normalizer;
    int64_t num_positives, num_negatives;
    mbx_image_result *per_image; /* [B] */
    int32_t *matches;            /* [B][A] */
    float *grad_loc, *grad_conf; /* [B][A][4], [B][A][C] */
} golden_case;

/* Loads path; returns 0 or -1 with a message in err. */
int golden_load(const char *path, golden_case *gc, char *err, size_t errlen);
void golden_free(golden_case *gc);

/* Sorted file names of the .json files in $MBX_GOLDEN_DIR/cases; returns the count, -1 on error. */
int golden_list(char ***names);
void golden_list_free(char **names, int n);
/* $MBX_GOLDEN_DIR/cases/<name> into buf. */
void golden_path(const char *name, char *buf, size_t len);

#endif
