/*
 * match.h - matching of anchors to ground truth for one image (private):
 * IoU, the bipartite step (greedy as Caffe's MatchBBox, per_gt as
 * torchvision's SSDMatcher, or none), the threshold step and the ignore band
 * of the semantics document.  Works only in caller-provided scratch.
 */
#ifndef MBX_CORE_MATCH_H
#define MBX_CORE_MATCH_H

#include <stdint.h>

#include "kernels.h"

/* Scratch of one slot: arrays of anchors (apad) and of GT boxes (max_boxes). */
typedef struct mbx_match_work {
    mbx_iou_work iou; /* the IoU passes' working space */
    uint8_t *taken;   /* [count] anchor taken by the bipartite step */
    double *gt_value; /* [max_boxes] each GT's best (greedy: free) IoU */
    int64_t *gt_arg;  /* [max_boxes] and its anchor */
    uint8_t *gt_done; /* [max_boxes] GT assigned (greedy) */
} mbx_match_work;

/*
 * Matches the n GT boxes gts[] (kept boxes, increasing index) against the
 * anchors: writes match[a] (the GT's index, or -1) and role[a]
 * (MBX_ROLE_POSITIVE, MBX_ROLE_IGNORED, or MBX_ROLE_NONE for an eligible
 * negative) for every anchor, and with rp does the rows' work of the image
 * in the same pass (mbx_rows_pass; lb and hist end up describing the
 * anchors still NONE after the bipartite step).  Returns the number of
 * positives and sets *eligible to the number of eligible negatives.
 * Thread-safe for distinct work and outputs.
 */
int64_t mbx_match_image(const mbx_kernels *k, const mbx_kparams *kp, const mbx_anchor_cols *an,
                        const mbx_gt_box *gts, int64_t n, mbx_bipartite mode,
                        double overlap_threshold, double neg_overlap, const mbx_match_work *w,
                        int32_t *match, uint8_t *role, int64_t *eligible, mbx_rows_pass *rp);

#endif
