/*
 * kernels.h - the vectorised kernels of the core (private): the passes
 * over conf that bound and rank the negatives' losses, the loss and gradient
 * of one counted row, the IoU passes and the threshold classification of
 * matching, and the exact double-precision loss that settles the ranking.
 *
 * Two builds of the fast kernels exist on x86-64 (generic SSE2 and x86-64-v3
 * AVX2 + FMA); mbx_kernels_select() picks one for the running CPU.  Kernels
 * never allocate, keep no state and read only whole rows they are given, so
 * they are thread-safe.
 */
#ifndef MBX_CORE_KERNELS_H
#define MBX_CORE_KERNELS_H

#include <stdint.h>

#include "multibox/multibox.h"

/* What the kernels need of the configuration, prepared once per context. */
typedef struct mbx_kparams {
    mbx_conf_loss kind;
    int64_t num_classes;  /* C >= 1 */
    double focal_alpha;   /* [0, 1] */
    double focal_gamma;   /* >= 0 */
    float focal_alpha_f;
    float focal_gamma_f;  /* clamped to 1e30 */
} mbx_kparams;

#define MBX_ANCHOR_BLOCK 16 /* anchors per culling block */
#define MBX_FLOOR_BINS 4096 /* histogram bins of softmax_floor: float bits 30..19 */
#define MBX_FLOOR_CONF_OK 1
#define MBX_FLOOR_LOC_OK 2

#define MBX_SUPER_BLOCK 16 /* blocks per superblock */

/*
 * Bounds of groups of anchors as columns: the bounding box of the group's
 * anchors, the range of their areas and their largest width and height.  A
 * GT box that does not overlap a group's box has IoU 0 with all of its
 * anchors.
 */
typedef struct mbx_bound_cols {
    double *x1, *y1, *x2, *y2, *amin, *amax, *wmax, *hmax;
} mbx_bound_cols;

#define MBX_BOUND_COLS 8 /* columns of mbx_bound_cols */

/*
 * Anchors as double-precision xyxy columns, padded to apad (a multiple of
 * MBX_ANCHOR_BLOCK) with zero boxes (IoU 0 with anything), and the bounds
 * (padding excluded) of each block of MBX_ANCHOR_BLOCK anchors and of each
 * superblock of MBX_SUPER_BLOCK blocks.  The block columns have
 * mbx_block_count(apad) entries (a multiple of MBX_SUPER_BLOCK), the
 * superblock columns mbx_super_count(apad) (a multiple of 4), so both read
 * four at a time; groups without anchors are zero boxes with zero areas,
 * which no GT box meets.  The kernels only read them.
 */
typedef struct mbx_anchor_cols {
    int64_t count, apad;
    const double *x1, *y1, *x2, *y2, *area;
    mbx_bound_cols blocks, supers;
} mbx_anchor_cols;

/* Entries of the block columns for apad anchors. */
static inline int64_t mbx_block_count(int64_t apad)
{
    return (apad / MBX_ANCHOR_BLOCK + MBX_SUPER_BLOCK - 1) / MBX_SUPER_BLOCK * MBX_SUPER_BLOCK;
}

/* Entries of the superblock columns for apad anchors. */
static inline int64_t mbx_super_count(int64_t apad)
{
    return (mbx_block_count(apad) / MBX_SUPER_BLOCK + 3) / 4 * 4;
}

/*
 * Working space of the IoU passes (one slot's scratch; nbv =
 * mbx_block_count(apad)):
 *   touched[nbv]: 1 for the blocks where some GT's IoU may reach neg_overlap;
 *   best[apad], best_gt[apad]: in those blocks, each anchor's largest IoU
 *     reaching neg_overlap (else 0) and the index of its first GT;
 *   cand[nbv], cub[nbv]: one GT's candidate blocks and their IoU bounds.
 */
typedef struct mbx_iou_work {
    uint8_t *touched;
    double *best;
    int64_t *best_gt;
    int32_t *cand;
    double *cub;
} mbx_iou_work;

/* One GT box as double-precision xyxy with its area and index in the image's list. */
typedef struct mbx_gt_box {
    double x1, y1, x2, y2, area;
    int64_t index;
} mbx_gt_box;

/*
 * The per-row work that streams along with the matching pass (iou_all), for
 * one image's rows a < A: conf and loc are checked for NaN/infinity; with
 * want_floor (softmax mining), lb[a] = max z - z_target (a lower bound of
 * the loss, which is at most lb + ln C) for anchors left NONE by the
 * threshold step, -infinity for the others, hist[MBX_FLOOR_BINS] counts
 * those lb by their float bits >> 19, and list[] gets the anchors with
 * lb >= collect, increasing.
 */
typedef struct mbx_rows_pass {
    const float *conf, *loc; /* the image's [A][C] and [A][4] */
    int64_t target;          /* background column (want_floor) */
    int want_floor;
    float *lb;               /* [A] (want_floor) */
    uint32_t *hist;          /* [MBX_FLOOR_BINS] (want_floor) */
    float collect;           /* list threshold (want_floor) */
    int32_t *list;           /* [A] (want_floor) */
    int64_t nlist;           /* out: entries of list */
    int flags;               /* out: MBX_FLOOR_CONF_OK | MBX_FLOOR_LOC_OK for what is finite */
} mbx_rows_pass;

typedef struct mbx_kernels {
    /*
     * For each of the A rows of conf (row-major [A][C]), writes to rank[a]
     * the classification loss of that anchor against `target` (a class, or
     * -1 for the all-zero target of sigmoid/focal), accurate to the bound of
     * mbx_rank_bound().  scratch[A] is working space.  Returns 1 when every
     * value of conf is finite, else 0 (rank is then meaningless).
     */
    int (*rank)(const mbx_kparams *kp, const float *conf, int64_t A, int64_t target,
                float *rank, float *scratch);
    /*
     * out[i] = the ranking loss of anchor idx[i] of conf (i < n), as rank();
     * scratch[n] is working space.  Returns 1 when the listed rows are finite.
     */
    int (*rank_list)(const mbx_kparams *kp, const float *conf, const int32_t *idx, int64_t n,
                     int64_t target, float *out, float *scratch);
    /*
     * The loss of one row z[C] against `target`, float32-accurate (returned
     * in double); when grad is not NULL also writes grad[C] = scale * dloss/dz.
     */
    double (*row)(const mbx_kparams *kp, const float *z, int64_t target, float scale,
                  float *grad);
    /*
     * Eight rows at once: loss[r] = row(kp, z[r], target[r], scale, grad[r])
     * for r < 8, the same bits (grad[r] may be NULL).
     */
    void (*rows8)(const mbx_kparams *kp, const float *const z[8], const int64_t target[8],
                  float scale, float *const grad[8], double loss[8]);
    /*
     * The image pass.  IoU of every GT gts[0..n) with every anchor, exactly
     * as torchvision's box_iou in double, and the threshold step and ignore
     * band: for a < an->count, match[a] = the first GT reaching the anchor's
     * largest IoU and role POSITIVE where that IoU >= thr, else match -1
     * and role IGNORED (IoU >= neg) or NONE (all NONE when n is 0); needs
     * 0 < neg <= thr.  gt_value[g] and gt_arg[g] get each GT's largest IoU
     * and the lowest anchor reaching it (anchor 0 when the GT overlaps
     * none).  Returns the number of positives and sets *eligible to the
     * number of NONE roles.  ws is working space (unused when n is 0).
     * With rp, also the rows' work of mbx_rows_pass, block by block as the
     * roles become known.
     */
    int64_t (*iou_all)(const mbx_kparams *kp, const mbx_anchor_cols *an, const mbx_gt_box *gts,
                       int64_t n, double thr, double neg, const mbx_iou_work *ws,
                       double *gt_value, int64_t *gt_arg, int32_t *match, uint8_t *role,
                       int64_t *eligible, mbx_rows_pass *rp);
    /*
     * The best free anchor of one GT: *value = the largest IoU (as iou_all)
     * of gt with the anchors a < an->count that are free (taken NULL, or
     * taken[a] == 0), *arg the lowest free anchor reaching it; value 0 and
     * the lowest free anchor when the GT overlaps no free anchor, -1 and -1
     * when none is free.  hint only steers the search (fastest near the
     * result).  ws->cand and ws->cub are working space.
     */
    void (*best_anchor)(const mbx_anchor_cols *an, const mbx_gt_box *gt, const uint8_t *taken,
                        double hint, const mbx_iou_work *ws, double *value, int64_t *arg);
    /*
     * hi[] gets the indices a < A with v[a] >= top, lo[] those with bottom <=
     * v[a] < top, both increasing; *nhi and *nlo their counts.
     */
    void (*partition2)(const float *v, int64_t A, float top, float bottom, int32_t *hi,
                       int64_t *nhi, int32_t *lo, int64_t *nlo);
    /*
     * p[0..n) = 0 with streaming stores, fenced: for the gradient blocks,
     * which are written once and read by nobody in the core.
     */
    void (*zero_stream)(float *p, int64_t n);
    /*
     * Softmax only: keeps in place (in order) the listed finite rows idx[0..n)
     * whose loss against target may reach lk, dropping only rows whose exact
     * loss is below it; returns the number kept.
     */
    int64_t (*prune)(const mbx_kparams *kp, const float *conf, int32_t *idx, int64_t n,
                     int64_t target, double lk);
    /* 1 when all n values are finite. */
    int (*finite)(const float *p, int64_t n);
    /* Test entry points: y = e^x (x <= 0) and y = ln(1 + x) (x >= 0), n % 8 == 0. */
    void (*exp_array)(const float *x, float *y, int64_t n);
    void (*log1p_array)(const float *x, float *y, int64_t n);
    const char *name; /* "x86-64-v3" or "generic" */
} mbx_kernels;

/* Fills k with the best kernels for this CPU, or the generic ones when force_generic. */
void mbx_kernels_select(mbx_kernels *k, int force_generic);

/* The loss of row z[C] against target in double precision with libm (no fast math). */
double mbx_row_loss_exact(const mbx_kparams *kp, const float *z, int64_t target);

/*
 * Error bound of the ranking values: |rank - exact| <= eps_rel * exact + eps_abs
 * for every finite row (see kernels.c for the derivation).
 */
void mbx_rank_bound(const mbx_kparams *kp, double *eps_rel, double *eps_abs);

#endif
