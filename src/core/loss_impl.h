/*
 * loss_impl.h - the inside of the opaque mbx_loss context (private): the
 * configuration prepared for the kernels, the workspace carved from one
 * allocation in mbx_loss_new(), the per-batch state the work units share,
 * and the test hooks.  Only src/core and tests/core include it.
 */
#ifndef MBX_CORE_LOSS_IMPL_H
#define MBX_CORE_LOSS_IMPL_H

#include <stdint.h>

#include "kernels.h"
#include "loc.h"
#include "match.h"
#include "multibox/multibox.h"

/* Where a context is in the begin / match / reduce / grad / finish sequence. */
enum mbx_phase {
    MBX_PHASE_IDLE = 0, /* no batch, or the last one finished */
    MBX_PHASE_MATCH,    /* begin succeeded: match units may run */
    MBX_PHASE_GRAD,     /* reduce succeeded: grad units may run */
    MBX_PHASE_FAILED    /* a unit failed: later phases do nothing */
};

/* What the units of one image leave for reduce and finish. */
typedef struct mbx_image_state {
    int64_t num_positives, num_negatives; /* counted anchors */
    double conf_sum, loc_sum;             /* un-normalised sums over counted anchors */
    int error;                            /* 0 or MBX_E_NOT_FINITE */
    int error_in_conf;                    /* 0: loc, 1: conf, 2: no inputs given */
    int64_t error_index;                  /* flat index inside the image's tensor */
} mbx_image_state;

/* Ranking candidate: exact loss and anchor. */
typedef struct mbx_candidate {
    double loss;
    int64_t anchor;
} mbx_candidate;

/* Scratch of one slot: whatever one running unit needs. */
typedef struct mbx_slot {
    mbx_match_work match;
    mbx_gt_box *gts;           /* [max_boxes] */
    float *rank;               /* [max(A, MBX_FLOOR_BINS)] histogram, selection keys */
    float *values;             /* [A] ranking losses of the listed anchors */
    float *aux;                /* [A] lower bounds or full ranking */
    float *scratch;            /* [A] kernel scratch */
    mbx_candidate *candidates; /* [A] anchors settled with the exact loss */
    int32_t *rows;             /* [A] listed anchors (match); counted rows (grad) */
    int32_t *pending;          /* [A] anchors that may still be listed */
    float edge_hint;           /* mining's last edge: a guess for the next image */
} mbx_slot;

struct mbx_loss {
    mbx_config cfg;
    mbx_shape shape;
    mbx_kernels kern;
    mbx_kparams kp;
    mbx_loc_params lp;

    /* Workspace (one allocation). */
    void *block;
    int64_t apad;
    double *ax1, *ay1, *ax2, *ay2, *aarea; /* [apad] anchors of the current batch */
    mbx_bound_cols blocks;                  /* [mbx_block_count(apad)] block bounds */
    mbx_bound_cols supers;                  /* [mbx_super_count(apad)] superblock bounds */
    float *loaded_anchors;                  /* [A][4] the raw anchors the columns hold */
    int64_t loaded_count;                   /* their count, 0 when none */
    mbx_box_format loaded_format;
    int32_t *match;                         /* [B][A] GT index or -1 */
    uint8_t *role;                          /* [B][A] mbx_anchor_role */
    mbx_image_state *images;                /* [B] */
    mbx_slot *slots;                        /* [num_slots] */

    /* The current batch. */
    enum mbx_phase phase;
    mbx_batch batch;
    mbx_result *result;
    double normalizer;
    int error;
    mbx_detail error_detail;

    /* Test hooks (tests/core only). */
    int exact_rows;              /* 1: per-anchor classification losses in libm double */
    const float *ciou_alpha_loc; /* [B][A][4] or NULL: loc that sets CIoU's alpha */
};

/*
 * Test hooks (tests/core and tools only; hidden in the shared library), to
 * be called between batches: exact_rows computes the per-anchor
 * classification losses with libm in double (for finite differences);
 * force_generic selects the generic kernels even on an AVX2 CPU (0 goes
 * back to the best ones); ciou_alpha_loc names a [B][A][4] loc whose decoded
 * boxes set CIoU's alpha (frozen for finite differences), NULL for the
 * normal rule; kernel_name is "x86-64-v3" or "generic".
 */
void mbx_loss_test_set_exact_rows(mbx_loss *loss, int on);
void mbx_loss_test_force_generic(mbx_loss *loss, int on);
void mbx_loss_test_set_ciou_alpha_loc(mbx_loss *loss, const float *loc);
const char *mbx_loss_test_kernel_name(const mbx_loss *loss);

/*
 * The per-image units (image.c).  loc [A][4] and conf [A][C] are the
 * image's inputs (the batch's slices or the caller's per-image ones); grad
 * reads loc only at positives and conf only at counted rows, and only when
 * sp asks for conf values the dense array does not hold and conf_rows (the
 * image's store of them, see mbx_image_input; may be NULL) does not hold
 * them either.  sp may be NULL.
 */
void mbx_image_match(mbx_loss *ctx, int64_t image, mbx_slot *slot, const float *loc,
                     const float *conf, float *conf_rows);
void mbx_image_grad(mbx_loss *ctx, int64_t image, mbx_slot *slot, const float *loc,
                    const float *conf, const float *conf_rows, const mbx_sparse_grad *sp);

/* Anchor a of the current batch as xyxy double. */
static inline void mbx_anchor_box(const mbx_loss *ctx, int64_t a, double box[4])
{
    box[0] = ctx->ax1[a];
    box[1] = ctx->ay1[a];
    box[2] = ctx->ax2[a];
    box[3] = ctx->ay2[a];
}

/* A box given in fmt as xyxy double (cxcywh: centre -/+ half size). */
static inline void mbx_box_to_xyxy(const float in[4], mbx_box_format fmt, double out[4])
{
    if (fmt == MBX_BOX_CXCYWH) {
        const double cx = in[0], cy = in[1], hw = 0.5 * (double)in[2], hh = 0.5 * (double)in[3];
        out[0] = cx - hw;
        out[1] = cy - hh;
        out[2] = cx + hw;
        out[3] = cy + hh;
    } else {
        out[0] = in[0];
        out[1] = in[1];
        out[2] = in[2];
        out[3] = in[3];
    }
}

#endif
