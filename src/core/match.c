/*
 * match.c - one image's matching: per-anchor best GT and per-GT best anchor
 * in the image pass (iou_all), then the bipartite step over the threshold
 * step and ignore band.
 * Pure computation in caller scratch; never allocates.
 */
#include <math.h>
#include <string.h>

#include "match.h"

/* Greedy never matches an IoU at or below this (Caffe's MatchBBox). */
#define GREEDY_MIN_IOU 1e-6

/*
 * Makes anchor a a positive of GT index g, keeping the counts right, and
 * the rows pass's lb / hist when it has them (an eligible anchor leaves).
 */
static void force(int32_t *match, uint8_t *role, int64_t a, int64_t g, int64_t *P, int64_t *E,
                  mbx_rows_pass *rp)
{
    if (role[a] != MBX_ROLE_POSITIVE)
        (*P)++;
    if (role[a] == MBX_ROLE_NONE) {
        (*E)--;
        if (rp && rp->want_floor) {
            uint32_t bits;
            memcpy(&bits, &rp->lb[a], sizeof bits);
            rp->hist[(bits >> 19) & (MBX_FLOOR_BINS - 1)]--;
            rp->lb[a] = -INFINITY;
        }
    }
    match[a] = (int32_t)g;
    role[a] = MBX_ROLE_POSITIVE;
}

/*
 * Caffe's MatchBBox: repeatedly the largest IoU among free anchors and
 * unassigned GTs (ties: lowest anchor, then lowest GT), until it is <= 1e-6.
 * Each GT keeps its best free anchor; only GTs whose best anchor was just
 * taken recompute theirs, with the bounded search of best_anchor (a few
 * blocks of anchors, not all of them; the search is fastest when hinted
 * near the result, and the new best is usually a little below the old).
 * Writes the pairs into match/role.
 */
static void greedy(const mbx_kernels *k, const mbx_anchor_cols *an, const mbx_gt_box *gts,
                   int64_t n, const mbx_match_work *w, int32_t *match, uint8_t *role, int64_t *P,
                   int64_t *E, mbx_rows_pass *rp)
{
    memset(w->taken, 0, (size_t)an->count);
    for (int64_t g = 0; g < n; g++)
        w->gt_done[g] = 0;
    for (;;) {
        int64_t pick = -1;
        for (int64_t g = 0; g < n; g++) {
            if (w->gt_done[g] || w->gt_arg[g] < 0)
                continue;
            if (pick < 0 || w->gt_value[g] > w->gt_value[pick] ||
                (w->gt_value[g] == w->gt_value[pick] && w->gt_arg[g] < w->gt_arg[pick]))
                pick = g;
        }
        if (pick < 0 || !(w->gt_value[pick] > GREEDY_MIN_IOU))
            break;
        const int64_t a = w->gt_arg[pick];
        w->taken[a] = 1;
        w->gt_done[pick] = 1;
        force(match, role, a, gts[pick].index, P, E, rp);
        for (int64_t g = 0; g < n; g++)
            if (!w->gt_done[g] && w->gt_arg[g] == a)
                k->best_anchor(an, &gts[g], w->taken, 0.75 * w->gt_value[g], &w->iou,
                               &w->gt_value[g], &w->gt_arg[g]);
    }
}

int64_t mbx_match_image(const mbx_kernels *k, const mbx_kparams *kp, const mbx_anchor_cols *an,
                        const mbx_gt_box *gts, int64_t n, mbx_bipartite mode,
                        double overlap_threshold, double neg_overlap, const mbx_match_work *w,
                        int32_t *match, uint8_t *role, int64_t *eligible, mbx_rows_pass *rp)
{
    /*
     * The threshold step and ignore band for every anchor, and the GTs' best
     * anchors; the bipartite step overrides.  IoU 0 with every GT means best
     * 0 with the first GT, as torch's argmax.
     */
    int64_t E;
    int64_t P = k->iou_all(kp, an, gts, n, overlap_threshold, neg_overlap, &w->iou, w->gt_value,
                           w->gt_arg, match, role, &E, rp);
    if (n > 0 && mode == MBX_BIPARTITE_PER_GT) {
        /* Each GT's best anchor, later GTs winning a shared anchor. */
        for (int64_t g = 0; g < n; g++)
            force(match, role, w->gt_arg[g], gts[g].index, &P, &E, rp);
    } else if (n > 0 && mode == MBX_BIPARTITE_GREEDY) {
        greedy(k, an, gts, n, w, match, role, &P, &E, rp);
    }
    *eligible = E;
    return P;
}
