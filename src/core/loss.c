/*
 * loss.c - the loss context: creation with its one workspace allocation,
 * input validation (begin), the reduction that fixes the normalizer, the
 * in-order totals (finish), the single-thread driver mbx_loss_compute(), and
 * the test hooks of loss_impl.h.  No I/O, no globals; after mbx_loss_new()
 * nothing here allocates.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "loss_impl.h"

#define ALIGN 64

/* Offsets of the workspace arrays, with overflow detection. */
typedef struct layout {
    size_t size;
    int overflow;
} layout;

static size_t place(layout *l, int64_t count, size_t elem)
{
    size_t off = (l->size + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
    if (off < l->size || count < 0 || (uint64_t)count > SIZE_MAX / elem ||
        off > SIZE_MAX - (size_t)count * elem) {
        l->overflow = 1;
        return 0;
    }
    l->size = off + (size_t)count * elem;
    return off;
}

/* Offsets of everything mbx_loss_new() carves; the same function sizes and assigns. */
typedef struct offsets {
    size_t ax1, ay1, ax2, ay2, aarea, blocks[MBX_BOUND_COLS], supers[MBX_BOUND_COLS];
    size_t loaded, match, role, images, slots;
    size_t touched, best, best_gt, cand, cub, taken, gt_value, gt_arg, gt_done, gts;
    size_t rank, values, aux, scratch, candidates, rows, pending;
    size_t slot_size, first_slot;
} offsets;

static int plan(const mbx_shape *s, int64_t apad, offsets *o, size_t *total)
{
    layout l = {0, 0};
    const int64_t B = s->batch, A = s->num_anchors, G = s->max_boxes;
    if (B > INT64_MAX / A)
        return MBX_E_SHAPE_OVERFLOW;
    o->ax1 = place(&l, apad, sizeof(double));
    o->ay1 = place(&l, apad, sizeof(double));
    o->ax2 = place(&l, apad, sizeof(double));
    o->ay2 = place(&l, apad, sizeof(double));
    o->aarea = place(&l, apad, sizeof(double));
    const int64_t nbv = mbx_block_count(apad);
    for (int k = 0; k < MBX_BOUND_COLS; k++) {
        o->blocks[k] = place(&l, nbv, sizeof(double));
        o->supers[k] = place(&l, mbx_super_count(apad), sizeof(double));
    }
    o->loaded = place(&l, A, 4 * sizeof(float));
    o->match = place(&l, B * A, sizeof(int32_t));
    o->role = place(&l, B * A, sizeof(uint8_t));
    o->images = place(&l, B, sizeof(mbx_image_state));
    o->slots = place(&l, s->num_slots, sizeof(mbx_slot));
    /* One slot's scratch, relative to the slot's base. */
    layout ls = {0, 0};
    /* The IoU passes' working space (mbx_iou_work). */
    o->touched = place(&ls, nbv, sizeof(uint8_t));
    o->best = place(&ls, apad, sizeof(double));
    o->best_gt = place(&ls, apad, sizeof(int64_t));
    o->cand = place(&ls, nbv, sizeof(int32_t));
    o->cub = place(&ls, nbv, sizeof(double));
    o->taken = place(&ls, A, sizeof(uint8_t));
    o->gt_value = place(&ls, G, sizeof(double));
    o->gt_arg = place(&ls, G, sizeof(int64_t));
    o->gt_done = place(&ls, G, sizeof(uint8_t));
    o->gts = place(&ls, G, sizeof(mbx_gt_box));
    /* rank also holds softmax_floor's histogram. */
    o->rank = place(&ls, A > MBX_FLOOR_BINS ? A : MBX_FLOOR_BINS, sizeof(float));
    o->values = place(&ls, A, sizeof(float));
    o->aux = place(&ls, A, sizeof(float));
    o->scratch = place(&ls, A, sizeof(float));
    o->candidates = place(&ls, A, sizeof(mbx_candidate));
    o->rows = place(&ls, A, sizeof(int32_t));
    o->pending = place(&ls, A, sizeof(int32_t));
    place(&ls, 0, 1); /* round the slot up to the alignment */
    o->slot_size = ls.size;
    const size_t first_slot = place(&l, 0, 1);
    o->first_slot = first_slot;
    if (ls.overflow || l.overflow || (uint64_t)s->num_slots > SIZE_MAX / (ls.size ? ls.size : 1))
        return MBX_E_SHAPE_OVERFLOW;
    const size_t slots_bytes = (size_t)s->num_slots * ls.size;
    if (first_slot > SIZE_MAX - slots_bytes - ALIGN)
        return MBX_E_SHAPE_OVERFLOW;
    *total = first_slot + slots_bytes + ALIGN; /* + ALIGN: aligning the block itself */
    return 0;
}

int mbx_loss_new(mbx_loss **out, const mbx_config *cfg, const mbx_shape *shape, mbx_detail *detail)
{
    if (!out)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "out: NULL");
    *out = NULL;
    if (!cfg || !shape)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "%s: NULL", cfg ? "shape" : "config");
    int rc = mbx_config_validate(cfg, 0, detail);
    if (rc)
        return rc;
    if (shape->batch < 1 || shape->num_anchors < 1 || shape->num_classes < 1 ||
        shape->max_boxes < 0 || shape->num_slots < 1)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT,
                              "shape: batch, num_anchors, num_classes and num_slots must be >= 1 "
                              "and max_boxes >= 0");
    if (shape->num_anchors > INT32_MAX - 8 || shape->max_boxes > INT32_MAX)
        return mbx_detail_set(detail, MBX_E_SHAPE_OVERFLOW,
                              "shape: num_anchors or max_boxes beyond 2^31");
    const int64_t apad =
        (shape->num_anchors + MBX_ANCHOR_BLOCK - 1) / MBX_ANCHOR_BLOCK * MBX_ANCHOR_BLOCK;
    offsets o;
    size_t total;
    if (plan(shape, apad, &o, &total))
        return mbx_detail_set(detail, MBX_E_SHAPE_OVERFLOW,
                              "shape: the workspace size overflows (batch %lld x anchors %lld)",
                              (long long)shape->batch, (long long)shape->num_anchors);

    mbx_loss *ctx = mbx_core_alloc(sizeof *ctx);
    if (!ctx)
        return mbx_detail_set(detail, MBX_E_OUT_OF_MEMORY, "loss context: out of memory");
    memset(ctx, 0, sizeof *ctx);
    ctx->block = mbx_core_alloc(total);
    if (!ctx->block) {
        mbx_core_free(ctx);
        return mbx_detail_set(detail, MBX_E_OUT_OF_MEMORY,
                              "loss workspace: out of memory (%zu bytes)", total);
    }
    unsigned char *base = (unsigned char *)(((uintptr_t)ctx->block + (ALIGN - 1)) &
                                            ~(uintptr_t)(ALIGN - 1));
    ctx->cfg = *cfg;
    ctx->shape = *shape;
    ctx->apad = apad;
    ctx->ax1 = (double *)(base + o.ax1);
    ctx->ay1 = (double *)(base + o.ay1);
    ctx->ax2 = (double *)(base + o.ax2);
    ctx->ay2 = (double *)(base + o.ay2);
    ctx->aarea = (double *)(base + o.aarea);
    double **const bcol[MBX_BOUND_COLS] = {
        &ctx->blocks.x1,   &ctx->blocks.y1,   &ctx->blocks.x2,   &ctx->blocks.y2,
        &ctx->blocks.amin, &ctx->blocks.amax, &ctx->blocks.wmax, &ctx->blocks.hmax};
    double **const scol[MBX_BOUND_COLS] = {
        &ctx->supers.x1,   &ctx->supers.y1,   &ctx->supers.x2,   &ctx->supers.y2,
        &ctx->supers.amin, &ctx->supers.amax, &ctx->supers.wmax, &ctx->supers.hmax};
    for (int k = 0; k < MBX_BOUND_COLS; k++) {
        *bcol[k] = (double *)(base + o.blocks[k]);
        *scol[k] = (double *)(base + o.supers[k]);
    }
    ctx->loaded_anchors = (float *)(base + o.loaded);
    ctx->loaded_count = 0;
    ctx->match = (int32_t *)(base + o.match);
    ctx->role = (uint8_t *)(base + o.role);
    ctx->images = (mbx_image_state *)(base + o.images);
    ctx->slots = (mbx_slot *)(base + o.slots);
    unsigned char *sb = base + o.first_slot;
    for (int s = 0; s < shape->num_slots; s++, sb += o.slot_size) {
        mbx_slot *sl = &ctx->slots[s];
        sl->match.iou.touched = sb + o.touched;
        sl->match.iou.best = (double *)(sb + o.best);
        sl->match.iou.best_gt = (int64_t *)(sb + o.best_gt);
        sl->match.iou.cand = (int32_t *)(sb + o.cand);
        sl->match.iou.cub = (double *)(sb + o.cub);
        sl->match.taken = sb + o.taken;
        sl->match.gt_value = (double *)(sb + o.gt_value);
        sl->match.gt_arg = (int64_t *)(sb + o.gt_arg);
        sl->match.gt_done = sb + o.gt_done;
        sl->gts = (mbx_gt_box *)(sb + o.gts);
        sl->rank = (float *)(sb + o.rank);
        sl->values = (float *)(sb + o.values);
        sl->aux = (float *)(sb + o.aux);
        sl->scratch = (float *)(sb + o.scratch);
        sl->candidates = (mbx_candidate *)(sb + o.candidates);
        sl->rows = (int32_t *)(sb + o.rows);
        sl->pending = (int32_t *)(sb + o.pending);
        sl->edge_hint = 0.0f;
    }
    mbx_kernels_select(&ctx->kern, 0);
    ctx->kp.kind = cfg->conf_loss;
    ctx->kp.num_classes = shape->num_classes;
    ctx->kp.focal_alpha = cfg->focal_alpha;
    ctx->kp.focal_gamma = cfg->focal_gamma;
    ctx->kp.focal_alpha_f = (float)cfg->focal_alpha;
    ctx->kp.focal_gamma_f = (float)(cfg->focal_gamma < 1e30 ? cfg->focal_gamma : 1e30);
    mbx_loc_params_init(&ctx->lp, cfg);
    ctx->phase = MBX_PHASE_IDLE;
    *out = ctx;
    return 0;
}

void mbx_loss_free(mbx_loss *loss)
{
    if (!loss)
        return;
    mbx_core_free(loss->block);
    mbx_core_free(loss);
}

/* ---------------------------------------------------------------- begin */

/* Sets the detail of a bad box: "anchors[i]: what" (j < 0) or "targets[i].boxes[j]: what". */
static int box_error(mbx_detail *d, int code, long long i, long long j, const char *what)
{
    if (j < 0)
        return mbx_detail_set(d, code, "anchors[%lld]: %s", i, what);
    return mbx_detail_set(d, code, "targets[%lld].boxes[%lld]: %s", i, j, what);
}

/* Checks one box given in fmt (mbx_box_check) and converts it to xyxy double. */
static int check_box(const float *in, mbx_box_format fmt, double out[4], mbx_detail *d,
                     long long i, long long j)
{
    const char *why;
    const int rc = mbx_box_check(in, fmt, &why);
    if (rc != 0)
        return box_error(d, rc, i, j, why);
    mbx_box_to_xyxy(in, fmt, out);
    return 0;
}

/*
 * Fills the ng groups of `size` consecutive anchors of cols with their
 * bounding box and area range over the anchors a < A (mbx_bound_cols);
 * groups without anchors get zero boxes and areas.
 */
static void bound_groups(mbx_loss *ctx, const mbx_bound_cols *cols, int64_t size, int64_t ng,
                         int64_t A)
{
    for (int64_t k = 0; k < ng; k++) {
        const int64_t a0 = k * size;
        const int64_t a1 = a0 + size < A ? a0 + size : A;
        double x1 = 0.0, y1 = 0.0, x2 = 0.0, y2 = 0.0, amin = 0.0, amax = 0.0;
        double wmax = 0.0, hmax = 0.0;
        if (a0 < a1) {
            x1 = ctx->ax1[a0];
            y1 = ctx->ay1[a0];
            x2 = ctx->ax2[a0];
            y2 = ctx->ay2[a0];
            amin = amax = ctx->aarea[a0];
        }
        for (int64_t a = a0; a < a1; a++) {
            x1 = ctx->ax1[a] < x1 ? ctx->ax1[a] : x1;
            y1 = ctx->ay1[a] < y1 ? ctx->ay1[a] : y1;
            x2 = ctx->ax2[a] > x2 ? ctx->ax2[a] : x2;
            y2 = ctx->ay2[a] > y2 ? ctx->ay2[a] : y2;
            amin = ctx->aarea[a] < amin ? ctx->aarea[a] : amin;
            amax = ctx->aarea[a] > amax ? ctx->aarea[a] : amax;
            /* The kernels' overlap widths, min(x2) - max(x1), round to at most these. */
            const double w = ctx->ax2[a] - ctx->ax1[a], h = ctx->ay2[a] - ctx->ay1[a];
            wmax = w > wmax ? w : wmax;
            hmax = h > hmax ? h : hmax;
        }
        cols->x1[k] = x1;
        cols->y1[k] = y1;
        cols->x2[k] = x2;
        cols->y2[k] = y2;
        cols->amin[k] = amin;
        cols->amax[k] = amax;
        cols->wmax[k] = wmax;
        cols->hmax[k] = hmax;
    }
}

/*
 * Converts the anchors to the context's double xyxy columns and the bounds
 * of each block of MBX_ANCHOR_BLOCK anchors.  One branch-free pass checks
 * them all; only when one is bad does check_box() find and describe the
 * first.  Returns 0 or the error of that anchor.
 */
static int load_anchors(mbx_loss *ctx, const mbx_batch *b, mbx_detail *detail)
{
    const int64_t A = b->num_anchors;
    const int cxcywh = b->anchors_format == MBX_BOX_CXCYWH;
    /* The same anchors as the last loaded batch (a preset, typically): nothing to redo. */
    if (ctx->loaded_count == A && ctx->loaded_format == b->anchors_format &&
        memcmp(ctx->loaded_anchors, b->anchors, (size_t)A * 4 * sizeof(float)) == 0)
        return 0;
    ctx->loaded_count = 0;
    int bad = 0;
    for (int64_t a = 0; a < A; a++) {
        const float *p = b->anchors + 4 * a;
        double box[4];
        mbx_box_to_xyxy(p, b->anchors_format, box);
        const int finite = (fabsf(p[0]) <= FLT_MAX) & (fabsf(p[1]) <= FLT_MAX) &
                           (fabsf(p[2]) <= FLT_MAX) & (fabsf(p[3]) <= FLT_MAX);
        const int sized = cxcywh ? (p[2] > 0.0f) & (p[3] > 0.0f) : 1;
        bad |= !(finite & sized & (box[2] > box[0]) & (box[3] > box[1]));
        ctx->ax1[a] = box[0];
        ctx->ay1[a] = box[1];
        ctx->ax2[a] = box[2];
        ctx->ay2[a] = box[3];
        ctx->aarea[a] = (box[2] - box[0]) * (box[3] - box[1]);
    }
    if (bad) {
        for (int64_t a = 0; a < A; a++) {
            double box[4];
            int rc =
                check_box(b->anchors + 4 * a, b->anchors_format, box, detail, (long long)a, -1);
            if (rc)
                return rc;
        }
    }
    for (int64_t a = A; a < ctx->apad; a++)
        ctx->ax1[a] = ctx->ay1[a] = ctx->ax2[a] = ctx->ay2[a] = ctx->aarea[a] = 0.0;
    /* Bounds of the blocks and superblocks of anchors (padding left out). */
    bound_groups(ctx, &ctx->blocks, MBX_ANCHOR_BLOCK, mbx_block_count(ctx->apad), A);
    bound_groups(ctx, &ctx->supers, MBX_ANCHOR_BLOCK * MBX_SUPER_BLOCK, mbx_super_count(ctx->apad),
                 A);
    memcpy(ctx->loaded_anchors, b->anchors, (size_t)A * 4 * sizeof(float));
    ctx->loaded_count = A;
    ctx->loaded_format = b->anchors_format;
    return 0;
}

#define SHAPE_ERR(...) mbx_detail_set(detail, MBX_E_SHAPE_MISMATCH, __VA_ARGS__)
#define ARG_ERR(...) mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, __VA_ARGS__)

/* inputs_later: loc and conf may be NULL (every unit is then given its image's inputs). */
static int validate_and_load(mbx_loss *ctx, const mbx_batch *b, int inputs_later,
                             mbx_detail *detail)
{
    const mbx_config *cfg = &ctx->cfg;
    const mbx_shape *s = &ctx->shape;
    if (b->batch < 1)
        return SHAPE_ERR("batch: %lld images, at least 1 needed", (long long)b->batch);
    if (b->num_anchors < 1)
        return SHAPE_ERR("anchors: %lld anchors, at least 1 needed", (long long)b->num_anchors);
    if (b->num_classes < 1 || (cfg->background_label >= 0 && b->num_classes < 2))
        return SHAPE_ERR("conf: %lld classes, at least %d needed", (long long)b->num_classes,
                         cfg->background_label >= 0 ? 2 : 1);
    if (b->batch > s->batch)
        return ARG_ERR("batch: %lld images exceed the context's %lld", (long long)b->batch,
                       (long long)s->batch);
    if (b->num_anchors > s->num_anchors)
        return ARG_ERR("anchors: %lld anchors exceed the context's %lld",
                       (long long)b->num_anchors, (long long)s->num_anchors);
    if ((!inputs_later && (!b->loc || !b->conf)) || !b->anchors || !b->targets)
        return ARG_ERR("%s: NULL", !b->loc ? "loc" : !b->conf ? "conf" : !b->anchors ? "anchors"
                                                                                     : "targets");
    if (b->anchors_format != MBX_BOX_XYXY && b->anchors_format != MBX_BOX_CXCYWH)
        return ARG_ERR("anchors: unknown box format %d", (int)b->anchors_format);
    if ((uint64_t)b->batch * (uint64_t)b->num_anchors > (uint64_t)INT64_MAX / 4 /
                                                             (uint64_t)b->num_classes)
        return mbx_detail_set(detail, MBX_E_SHAPE_OVERFLOW, "conf: B x A x C overflows");
    int rc = mbx_config_validate(cfg, b->num_classes, detail);
    if (rc)
        return rc;

    rc = load_anchors(ctx, b, detail);
    if (rc)
        return rc;

    for (int64_t i = 0; i < b->batch; i++) {
        const mbx_image_targets *t = &b->targets[i];
        if (t->num_boxes < 0)
            return SHAPE_ERR("targets[%lld].boxes: %lld boxes", (long long)i,
                             (long long)t->num_boxes);
        if (t->num_boxes > s->max_boxes)
            return ARG_ERR("targets[%lld].boxes: %lld boxes exceed the context's max_boxes %lld",
                           (long long)i, (long long)t->num_boxes, (long long)s->max_boxes);
        if (t->num_boxes > 0 && (!t->boxes || !t->labels))
            return ARG_ERR("targets[%lld].%s: NULL", (long long)i, t->boxes ? "labels" : "boxes");
        for (int64_t j = 0; j < t->num_boxes; j++) {
            double box[4];
            rc = check_box(t->boxes + 4 * j, cfg->box_format, box, detail, (long long)i,
                           (long long)j);
            if (rc)
                return rc;
            const int64_t lab = t->labels[j];
            if (lab < 0 || lab >= b->num_classes)
                return mbx_detail_set(detail, MBX_E_BAD_LABEL,
                                      "targets[%lld].labels[%lld]: %lld is outside [0, %lld)",
                                      (long long)i, (long long)j, (long long)lab,
                                      (long long)b->num_classes);
            if (lab == cfg->background_label)
                return mbx_detail_set(detail, MBX_E_BAD_LABEL,
                                      "targets[%lld].labels[%lld]: %lld is the background_label",
                                      (long long)i, (long long)j, (long long)lab);
        }
    }
    return 0;
}

static int begin(mbx_loss *ctx, const mbx_batch *batch, mbx_result *result, int inputs_later,
                 mbx_detail *detail)
{
    if (!ctx || !batch || !result)
        return ARG_ERR("%s: NULL", !ctx ? "loss" : !batch ? "batch" : "result");
    ctx->phase = MBX_PHASE_IDLE;
    int rc = validate_and_load(ctx, batch, inputs_later, detail);
    if (rc)
        return rc;
    ctx->batch = *batch;
    ctx->result = result;
    ctx->kp.num_classes = batch->num_classes;
    ctx->error = 0;
    ctx->normalizer = 1.0;
    memset(ctx->images, 0, (size_t)batch->batch * sizeof *ctx->images);
    ctx->phase = MBX_PHASE_MATCH;
    return 0;
}

int mbx_loss_begin(mbx_loss *ctx, const mbx_batch *batch, mbx_result *result, mbx_detail *detail)
{
    return begin(ctx, batch, result, 1, detail);
}

/* 1 when a unit of this phase may run on image and slot. */
static int unit_ok(const mbx_loss *ctx, enum mbx_phase phase, int64_t image, int slot)
{
    return ctx && ctx->phase == phase && image >= 0 && image < ctx->batch.batch && slot >= 0 &&
           slot < ctx->shape.num_slots;
}

void mbx_loss_match_image(mbx_loss *ctx, int64_t image, int slot)
{
    if (!unit_ok(ctx, MBX_PHASE_MATCH, image, slot))
        return;
    const mbx_batch *b = &ctx->batch;
    if (!b->loc || !b->conf) { /* begun for per-image inputs, and none given */
        mbx_image_state *st = &ctx->images[image];
        memset(st, 0, sizeof *st);
        st->error = MBX_E_INVALID_ARGUMENT;
        st->error_in_conf = 2;
        return;
    }
    mbx_image_match(ctx, image, &ctx->slots[slot], b->loc + image * b->num_anchors * 4,
                    b->conf + image * b->num_anchors * b->num_classes, NULL);
}

int mbx_loss_match_image_input(mbx_loss *ctx, int64_t image, int slot, const mbx_image_input *in)
{
    if (!unit_ok(ctx, MBX_PHASE_MATCH, image, slot) || !in || !in->loc || !in->conf)
        return MBX_E_INVALID_ARGUMENT;
    mbx_image_match(ctx, image, &ctx->slots[slot], in->loc, in->conf,
                    ctx->result->grad_conf ? NULL : in->conf_rows);
    return 0;
}

/* The detail of image i's failure. */
static void describe_image_error(const mbx_loss *ctx, int64_t i, mbx_detail *d)
{
    const mbx_image_state *st = &ctx->images[i];
    const int64_t e = st->error_index;
    if (st->error_in_conf == 2) {
        mbx_detail_set(d, st->error, "loc[%lld], conf[%lld]: no inputs (the batch has none and "
                       "the unit was given none)", (long long)i, (long long)i);
    } else if (st->error_in_conf) {
        const int64_t C = ctx->batch.num_classes;
        mbx_detail_set(d, st->error, "conf[%lld][%lld][%lld]: NaN or infinity", (long long)i,
                       (long long)(e / C), (long long)(e % C));
    } else {
        mbx_detail_set(d, st->error, "loc[%lld][%lld][%lld]: NaN or infinity", (long long)i,
                       (long long)(e / 4), (long long)(e % 4));
    }
}

int mbx_loss_reduce(mbx_loss *ctx, mbx_detail *detail)
{
    if (!ctx)
        return ARG_ERR("loss: NULL");
    if (ctx->phase == MBX_PHASE_FAILED) {
        if (detail)
            *detail = ctx->error_detail;
        return ctx->error;
    }
    if (ctx->phase != MBX_PHASE_MATCH)
        return ARG_ERR("mbx_loss_reduce: no batch begun");
    const int64_t B = ctx->batch.batch;
    int64_t P = 0, per_image = 0;
    for (int64_t i = 0; i < B; i++) {
        const mbx_image_state *st = &ctx->images[i];
        if (st->error) {
            ctx->error = st->error;
            describe_image_error(ctx, i, &ctx->error_detail);
            ctx->phase = MBX_PHASE_FAILED;
            if (detail)
                *detail = ctx->error_detail;
            return ctx->error;
        }
        P += st->num_positives;
        per_image += st->num_positives > 0 ? st->num_positives : 1;
    }
    double N = 1.0;
    switch (ctx->cfg.normalization) {
    case MBX_NORM_POSITIVES:
        N = P > 0 ? (double)P : 1.0;
        break;
    case MBX_NORM_POSITIVES_PER_IMAGE:
        N = (double)per_image;
        break;
    case MBX_NORM_ANCHORS:
        N = (double)B * (double)ctx->batch.num_anchors;
        break;
    case MBX_NORM_BATCH:
        N = (double)B;
        break;
    case MBX_NORM_NONE:
        N = 1.0;
        break;
    }
    ctx->normalizer = N;
    ctx->phase = MBX_PHASE_GRAD;
    return 0;
}

void mbx_loss_grad_image(mbx_loss *ctx, int64_t image, int slot)
{
    (void)mbx_loss_grad_image_sparse(ctx, image, slot, NULL, NULL);
}

int mbx_loss_sparse_counts(const mbx_loss *ctx, int64_t image, int64_t *loc_rows,
                           int64_t *conf_rows)
{
    if (!unit_ok(ctx, MBX_PHASE_GRAD, image, 0))
        return MBX_E_INVALID_ARGUMENT;
    const mbx_image_state *st = &ctx->images[image];
    if (loc_rows)
        *loc_rows = st->num_positives;
    if (conf_rows)
        *conf_rows = st->num_positives + st->num_negatives;
    return 0;
}

/* 1 when row indices row_base + a (a < A) fit int32, or no rows are written. */
static int rows_fit(const mbx_loss *ctx, const mbx_sparse_grad *sp)
{
    if (!sp || (!sp->loc_rows && !sp->conf_rows))
        return 1;
    return sp->row_base >= 0 && sp->row_base <= (int64_t)INT32_MAX - (ctx->batch.num_anchors - 1);
}

int mbx_loss_sparse_rows(const mbx_loss *ctx, int64_t image, const mbx_sparse_grad *out)
{
    if (!unit_ok(ctx, MBX_PHASE_GRAD, image, 0) || !out || !rows_fit(ctx, out))
        return MBX_E_INVALID_ARGUMENT;
    const int64_t A = ctx->batch.num_anchors;
    const uint8_t *role = ctx->role + image * A;
    int64_t p = 0, k = 0;
    for (int64_t a = 0; a < A; a++) {
        const int32_t row = (int32_t)(out->row_base + a);
        if (role[a] == MBX_ROLE_POSITIVE && out->loc_rows)
            out->loc_rows[p++] = row;
        if ((role[a] == MBX_ROLE_POSITIVE || role[a] == MBX_ROLE_NEGATIVE) && out->conf_rows)
            out->conf_rows[k++] = row;
    }
    return 0;
}

int mbx_loss_grad_image_sparse(mbx_loss *ctx, int64_t image, int slot, const mbx_image_input *in,
                               const mbx_sparse_grad *out)
{
    if (!unit_ok(ctx, MBX_PHASE_GRAD, image, slot) || !rows_fit(ctx, out))
        return MBX_E_INVALID_ARGUMENT;
    const mbx_batch *b = &ctx->batch;
    const int64_t A = b->num_anchors, C = b->num_classes;
    const float *loc = in ? in->loc : b->loc ? b->loc + image * A * 4 : NULL;
    const float *conf = in ? in->conf : b->conf ? b->conf + image * A * C : NULL;
    const float *stored = in && !ctx->result->grad_conf ? in->conf_rows : NULL;
    const int need_conf = out && out->conf_values && !ctx->result->grad_conf && !stored;
    if (!loc || (need_conf && !conf))
        return MBX_E_INVALID_ARGUMENT;
    mbx_image_grad(ctx, image, &ctx->slots[slot], loc, conf, stored, out);
    return 0;
}

int mbx_loss_finish(mbx_loss *ctx, mbx_detail *detail)
{
    if (!ctx)
        return ARG_ERR("loss: NULL");
    if (ctx->phase == MBX_PHASE_FAILED) {
        ctx->phase = MBX_PHASE_IDLE;
        if (detail)
            *detail = ctx->error_detail;
        return ctx->error;
    }
    if (ctx->phase != MBX_PHASE_GRAD)
        return ARG_ERR("mbx_loss_finish: no batch reduced");
    mbx_result *r = ctx->result;
    const double N = ctx->normalizer, alpha = ctx->cfg.alpha;
    double conf = 0.0, loc = 0.0;
    int64_t P = 0, Q = 0;
    for (int64_t i = 0; i < ctx->batch.batch; i++) {
        const mbx_image_state *st = &ctx->images[i];
        conf += st->conf_sum;
        loc += st->loc_sum;
        P += st->num_positives;
        Q += st->num_negatives;
        if (r->per_image) {
            mbx_image_result *pi = &r->per_image[i];
            pi->conf_loss = st->conf_sum / N;
            pi->loc_loss = st->loc_sum / N;
            pi->loss = (st->conf_sum + alpha * st->loc_sum) / N;
            pi->num_positives = st->num_positives;
            pi->num_negatives = st->num_negatives;
        }
    }
    r->conf_loss = conf / N;
    r->loc_loss = loc / N;
    r->loss = (conf + alpha * loc) / N;
    r->normalizer = N;
    r->num_positives = P;
    r->num_negatives = Q;
    ctx->phase = MBX_PHASE_IDLE;
    return 0;
}

int mbx_loss_compute(mbx_loss *ctx, const mbx_batch *batch, mbx_result *result, mbx_detail *detail)
{
    int rc = begin(ctx, batch, result, 0, detail);
    if (rc)
        return rc;
    for (int64_t i = 0; i < batch->batch; i++)
        mbx_loss_match_image(ctx, i, 0);
    rc = mbx_loss_reduce(ctx, detail);
    if (rc) {
        ctx->phase = MBX_PHASE_IDLE;
        return rc;
    }
    for (int64_t i = 0; i < batch->batch; i++)
        mbx_loss_grad_image(ctx, i, 0);
    return mbx_loss_finish(ctx, detail);
}

/* ----------------------------------------------------------- test hooks */

void mbx_loss_test_set_exact_rows(mbx_loss *loss, int on)
{
    loss->exact_rows = on;
}

void mbx_loss_test_force_generic(mbx_loss *loss, int on)
{
    mbx_kernels_select(&loss->kern, on);
}

void mbx_loss_test_set_ciou_alpha_loc(mbx_loss *loss, const float *loc)
{
    loss->ciou_alpha_loc = loc;
}

const char *mbx_loss_test_kernel_name(const mbx_loss *loss)
{
    return loss->kern.name;
}
