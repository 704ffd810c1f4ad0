/*
 * loc.h - box encoding and the localization losses with their gradients
 * for one positive anchor (private).  Everything in double precision from the
 * float32 inputs, following torchvision's BoxCoder and torchvision.ops'
 * IoU-family losses.  Pure functions: thread-safe, no allocation.
 */
#ifndef MBX_CORE_LOC_H
#define MBX_CORE_LOC_H

#include "multibox/multibox.h"

/* What the localization loss needs of the configuration. */
typedef struct mbx_loc_params {
    mbx_loc_loss kind;
    double weights[4]; /* BoxCoder weights: 1 / variance of cx, cy, w, h */
    double beta;       /* smooth_l1_beta */
} mbx_loc_params;

/* Fills p from cfg (cfg must be valid). */
void mbx_loc_params_init(mbx_loc_params *p, const mbx_config *cfg);

/* BoxCoder.encode_single of gt (xyxy) against anchor (xyxy): t[4]. */
void mbx_encode(const mbx_loc_params *p, const double anchor[4], const double gt[4], double t[4]);

/* BoxCoder.decode_single of loc against anchor: the predicted box, xyxy. */
void mbx_decode(const mbx_loc_params *p, const float loc[4], const double anchor[4], double box[4]);

/*
 * Localization loss of one positive (loc against the matched gt, both boxes
 * xyxy) and, when grad is not NULL, grad[k] = d loss / d loc[k].  For ciou,
 * alpha_loc (NULL normally) names the loc whose decoded box sets the trade-off
 * factor instead of loc itself: a test hook that freezes it for finite
 * differences.  Always finite for finite inputs.
 */
double mbx_loc_loss_grad(const mbx_loc_params *p, const float loc[4], const double anchor[4],
                    const double gt[4], double grad[4], const float *alpha_loc);

#endif
