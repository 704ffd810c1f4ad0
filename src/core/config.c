/*
 * config.c - the defaults of the semantics document (SSD paper / Caffe SSD)
 * and the range checks of every configuration key.  Pure: no allocation, no
 * state; messages name the key as the JSON request spells it.
 */
#include <math.h>

#include "multibox/multibox.h"

void mbx_config_default(mbx_config *cfg)
{
    if (!cfg)
        return;
    cfg->box_format = MBX_BOX_XYXY;
    cfg->bipartite = MBX_BIPARTITE_GREEDY;
    cfg->overlap_threshold = 0.5;
    cfg->neg_overlap = 0.5;
    cfg->use_difficult = 1;
    cfg->num_variances = 2;
    cfg->variances[0] = 0.1;
    cfg->variances[1] = 0.2;
    cfg->variances[2] = 0.0;
    cfg->variances[3] = 0.0;
    cfg->loc_loss = MBX_LOC_SMOOTH_L1;
    cfg->smooth_l1_beta = 1.0;
    cfg->alpha = 1.0;
    cfg->conf_loss = MBX_CONF_SOFTMAX;
    cfg->background_label = 0;
    cfg->focal_alpha = 0.25;
    cfg->focal_gamma = 2.0;
    cfg->mining = MBX_MINING_HARD_NEGATIVE;
    cfg->neg_pos_ratio = 3.0;
    cfg->min_negatives = 0;
    cfg->normalization = MBX_NORM_POSITIVES;
}

#define BAD(...) mbx_detail_set(detail, MBX_E_BAD_CONFIG, __VA_ARGS__)

/*
 * Checks every range of the semantics table, in the table's order, and the
 * keys that depend on the class count when num_classes > 0.  Returns 0 or
 * MBX_E_BAD_CONFIG naming the first offending key; detail untouched on
 * success.  Thread-safe (reads cfg only).
 */
int mbx_config_validate(const mbx_config *cfg, int64_t num_classes, mbx_detail *detail)
{
    if (!cfg)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "config: NULL");
    if (cfg->box_format != MBX_BOX_XYXY && cfg->box_format != MBX_BOX_CXCYWH)
        return BAD("config.box_format: unknown value %d", (int)cfg->box_format);
    if (cfg->bipartite != MBX_BIPARTITE_GREEDY && cfg->bipartite != MBX_BIPARTITE_PER_GT &&
        cfg->bipartite != MBX_BIPARTITE_NONE)
        return BAD("config.bipartite: unknown value %d", (int)cfg->bipartite);
    if (!(cfg->overlap_threshold > 0.0 && cfg->overlap_threshold <= 1.0))
        return BAD("config.overlap_threshold: %g is outside (0, 1]", cfg->overlap_threshold);
    if (!(cfg->neg_overlap > 0.0 && cfg->neg_overlap <= cfg->overlap_threshold))
        return BAD("config.neg_overlap: %g is outside (0, overlap_threshold = %g]",
                   cfg->neg_overlap, cfg->overlap_threshold);
    if (cfg->num_variances != 2 && cfg->num_variances != 4)
        return BAD("config.variances: %d values, expected 2 or 4", cfg->num_variances);
    for (int i = 0; i < cfg->num_variances; i++)
        if (!(cfg->variances[i] > 0.0 && isfinite(cfg->variances[i])))
            return BAD("config.variances[%d]: %g is not a finite number > 0", i,
                       cfg->variances[i]);
    if ((unsigned)cfg->loc_loss > (unsigned)MBX_LOC_CIOU)
        return BAD("config.loc_loss: unknown value %d", (int)cfg->loc_loss);
    if (!(cfg->smooth_l1_beta > 0.0 && isfinite(cfg->smooth_l1_beta)))
        return BAD("config.smooth_l1_beta: %g is not a finite number > 0", cfg->smooth_l1_beta);
    if (!(cfg->alpha >= 0.0 && isfinite(cfg->alpha)))
        return BAD("config.alpha: %g is not a finite number >= 0", cfg->alpha);
    if ((unsigned)cfg->conf_loss > (unsigned)MBX_CONF_FOCAL)
        return BAD("config.conf_loss: unknown value %d", (int)cfg->conf_loss);
    if (cfg->background_label < -1)
        return BAD("config.background_label: %d is below -1", cfg->background_label);
    if (cfg->background_label == -1 && cfg->conf_loss == MBX_CONF_SOFTMAX)
        return BAD("config.background_label: -1 (no background column) needs conf_loss "
                   "sigmoid or focal, not softmax");
    if (!(cfg->focal_alpha >= 0.0 && cfg->focal_alpha <= 1.0))
        return BAD("config.focal_alpha: %g is outside [0, 1]", cfg->focal_alpha);
    if (!(cfg->focal_gamma >= 0.0 && isfinite(cfg->focal_gamma)))
        return BAD("config.focal_gamma: %g is not a finite number >= 0", cfg->focal_gamma);
    if (cfg->mining != MBX_MINING_HARD_NEGATIVE && cfg->mining != MBX_MINING_NONE)
        return BAD("config.mining: unknown value %d", (int)cfg->mining);
    if (!(cfg->neg_pos_ratio >= 0.0 && isfinite(cfg->neg_pos_ratio)))
        return BAD("config.neg_pos_ratio: %g is not a finite number >= 0", cfg->neg_pos_ratio);
    if (cfg->min_negatives < 0)
        return BAD("config.min_negatives: %lld is below 0", (long long)cfg->min_negatives);
    if ((unsigned)cfg->normalization > (unsigned)MBX_NORM_NONE)
        return BAD("config.normalization: unknown value %d", (int)cfg->normalization);
    if (num_classes > 0) {
        if (cfg->background_label >= num_classes)
            return BAD("config.background_label: %d is outside [0, %lld) for %lld classes",
                       cfg->background_label, (long long)num_classes, (long long)num_classes);
        if (cfg->background_label >= 0 && num_classes < 2)
            return BAD("config.background_label: %d leaves no object class with %lld class",
                       cfg->background_label, (long long)num_classes);
    }
    return 0;
}
