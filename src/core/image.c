/*
 * image.c - the two per-image work units.  match: finiteness of the image's
 * loc and conf, matching, counts, and the choice of negatives; grad: the
 * losses of the counted anchors and both gradient blocks of the image, each
 * row written once.  Units touch only their image's slice of the per-batch
 * state and their slot's scratch, so units on distinct images and slots run
 * concurrently.  No allocation, no I/O.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss_impl.h"
#include "select.h"

static int64_t first_non_finite(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return i;
    return 0;
}

static void fail(mbx_image_state *st, int in_conf, const float *p, int64_t n)
{
    st->error = MBX_E_NOT_FINITE;
    st->error_in_conf = in_conf;
    st->error_index = first_non_finite(p, n);
}

/* Number of negatives to keep: max(min(floor(r P), E), min(min_negatives, E)). */
static int64_t negatives_wanted(const mbx_config *cfg, int64_t P, int64_t E)
{
    if (cfg->mining == MBX_MINING_NONE)
        return E;
    const double byratio = floor(cfg->neg_pos_ratio * (double)P);
    const int64_t k1 = byratio >= (double)E ? E : (int64_t)byratio;
    const int64_t k2 = cfg->min_negatives < E ? cfg->min_negatives : E;
    return k1 > k2 ? k1 : k2;
}

static int cmp_candidate(const void *pa, const void *pb)
{
    const mbx_candidate *a = pa, *b = pb;
    if (a->loss != b->loss)
        return a->loss > b->loss ? -1 : 1;
    return (a->anchor > b->anchor) - (a->anchor < b->anchor);
}

/*
 * Among the n listed eligible anchors idx[] with ranking values val[], marks
 * the k with the highest loss as NEGATIVE, exact ties to the lower anchor
 * index, 0 < k <= n.  The list holds every anchor of the true top k.  The
 * float32 ranking values are within a known bound of the exact losses
 * (mbx_rank_bound), so with T the k-th largest value every anchor above `hi`
 * is certainly in the top k and every anchor of the top k is at or above
 * `lo`; only the few anchors in [lo, hi] are settled with the exact
 * double-precision loss.
 */
static void select_listed(const mbx_loss *ctx, mbx_slot *slot, const float *conf, uint8_t *role,
                          const int32_t *idx, const float *val, int64_t n, int64_t k,
                          int64_t target)
{
    const int64_t C = ctx->kp.num_classes;
    const double T = mbx_kth_largest(val, n, k, (uint32_t *)(void *)slot->rank);
    double er, ea;
    mbx_rank_bound(&ctx->kp, &er, &ea);
    const double lo = (T - ea) * (1.0 - er) / (1.0 + er) - ea;
    const double hi = (T + ea) * (1.0 + er) / (1.0 - er) + ea;

    int64_t sure = 0, nc = 0;
    for (int64_t i = 0; i < n; i++) {
        const double r = val[i];
        if (r > hi) {
            role[idx[i]] = MBX_ROLE_NEGATIVE;
            sure++;
        } else if (r >= lo) {
            slot->candidates[nc++].anchor = idx[i];
        }
    }
    int64_t need = k - sure;
    if (need < 0 || need > nc) {
        /* Cannot happen while the bound holds; settle the whole list exactly. */
        for (int64_t i = 0; i < n; i++) {
            role[idx[i]] = MBX_ROLE_NONE;
            slot->candidates[i].anchor = idx[i];
        }
        nc = n;
        need = k;
    }
    if (need == nc) {
        for (int64_t i = 0; i < nc; i++)
            role[slot->candidates[i].anchor] = MBX_ROLE_NEGATIVE;
        return;
    }
    if (need == 0)
        return;
    for (int64_t i = 0; i < nc; i++) {
        mbx_candidate *c = &slot->candidates[i];
        c->loss = mbx_row_loss_exact(&ctx->kp, conf + c->anchor * C, target);
    }
    qsort(slot->candidates, (size_t)nc, sizeof *slot->candidates, cmp_candidate);
    for (int64_t i = 0; i < need; i++)
        role[slot->candidates[i].anchor] = MBX_ROLE_NEGATIVE;
}

/*
 * Hard negative mining of one image, 0 < k < E, after the image pass rp
 * (finite rows): marks k of the E eligible anchors NEGATIVE.
 *
 * Softmax first bounds every anchor's loss L by [lb, lb + ln C] with lb =
 * max z - z_background, in one cheap pass over the rows.  Any k anchors give
 * a lower bound of the k-th largest loss L_k (their k-th largest loss), and
 * an anchor whose upper bound is below it cannot be chosen, so only the
 * others get the full computation:
 *  1. the histogram of lb gives `edge` <= the k-th largest lb; the set S1
 *     of anchors with lb >= edge (at least k) gets its losses computed and
 *     their k-th largest, lowered by the error bound of the fast values,
 *     is T <= L_k;
 *  2. anchors outside S1 with lb + ln C >= T (margins for float rounding)
 *     are computed too; the rest are dropped.
 * The lb come from the image pass (mbx_rows_pass), which also collected
 * the candidates for both sets by a guess from the slot's previous image
 * (checked; a pass over lb otherwise).  None of this changes the result,
 * which is the exact top k whatever the guess or the split.
 */
static void mine(const mbx_loss *ctx, mbx_slot *slot, const float *conf, int64_t A,
                 uint8_t *role, int64_t k, int64_t target, const mbx_rows_pass *rp)
{
    const mbx_kernels *kern = &ctx->kern;
    int32_t *idx = slot->rows;
    float *val = slot->values;
    int64_t n = 0;
    if (rp->want_floor) {
        const float *lb = rp->lb;
        const uint32_t *hist = rp->hist;
        /* The lower edge of the bin holding the k-th largest lb. */
        int64_t bin = MBX_FLOOR_BINS - 1, above = 0;
        while (above + hist[bin] < k)
            above += hist[bin--];
        const uint32_t edge_bits = (uint32_t)bin << 19;
        float edge;
        memcpy(&edge, &edge_bits, sizeof edge);
        slot->edge_hint = edge;
        /*
         * S1: lb >= edge.  pending: below the edge but above the cut that
         * L_k >= edge alone implies, rounded down: a superset of step 2.
         */
        const double u = 0x1p-22; /* generous: each float rounding is within 2^-24 */
        const double lnc = log((double)ctx->kp.num_classes) * (1.0 + u);
        const float loose = nextafterf((float)((edge * (1.0 - u) - lnc) / (1.0 + u)), -INFINITY);
        int32_t *pending = slot->pending; /* rp->list */
        int64_t npend = 0;
        if (rp->collect <= loose) { /* the collected list holds both sets: split it in place */
            for (int64_t i = 0; i < rp->nlist; i++) {
                const int32_t a = pending[i];
                const float v = lb[a];
                idx[n] = a;
                pending[npend] = a; /* npend <= i: writes trail the reads */
                n += v >= edge;
                npend += (v < edge) & (v >= loose);
            }
        } else {
            kern->partition2(lb, A, edge, loose, idx, &n, pending, &npend);
        }
        if (n >= k) {
            kern->rank_list(&ctx->kp, conf, idx, n, target, val, slot->scratch);
            double er, ea;
            mbx_rank_bound(&ctx->kp, &er, &ea);
            const double kth = mbx_kth_largest(val, n, k, (uint32_t *)(void *)slot->rank);
            const double lk = fmax((kth - ea) / (1.0 + er), (double)edge); /* <= L_k */
            /* Keep lb (1 + u) + ln C >= L_k (1 - u): the anchor's loss may reach L_k. */
            const double cut = (lk * (1.0 - u) - lnc) / (1.0 + u);
            const int64_t n1 = n;
            for (int64_t i = 0; i < npend; i++) {
                idx[n] = pending[i];
                n += (double)lb[pending[i]] >= cut;
            }
            /* A tighter bound than lb + ln C drops most of them before the exponentials. */
            n = n1 + kern->prune(&ctx->kp, conf, idx + n1, n - n1, target, lk);
            kern->rank_list(&ctx->kp, conf, idx + n1, n - n1, target, val + n1, slot->scratch);
            select_listed(ctx, slot, conf, role, idx, val, n, k, target);
            return;
        }
        n = 0; /* cannot happen (the bins above hold fewer than k); rank everything */
    }
    kern->rank(&ctx->kp, conf, A, target, slot->aux, slot->scratch);
    for (int64_t a = 0; a < A; a++) {
        idx[n] = (int32_t)a;
        val[n] = slot->aux[a];
        n += role[a] == MBX_ROLE_NONE;
    }
    select_listed(ctx, slot, conf, role, idx, val, n, k, target);
}

/* How many counted rows ahead the gradient unit prefetches. */
#define PREFETCH_AHEAD 16

/* Prefetches row p[n] for a read-modify-write. */
static void prefetch_row(const float *p, int64_t n)
{
    const char *c = (const char *)p;
    const int64_t bytes = n * (int64_t)sizeof(float);
    for (int64_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(c + off, 1);
    __builtin_prefetch(c + bytes - 1, 1);
}

/* Prefetches row p[n] for reading. */
static void prefetch_row_read(const float *p, int64_t n)
{
    const char *c = (const char *)p;
    const int64_t bytes = n * (int64_t)sizeof(float);
    for (int64_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(c + off);
    __builtin_prefetch(c + bytes - 1);
}

/*
 * rows[] = the anchors whose role counts (POSITIVE or NEGATIVE: ~2%), in
 * increasing order; returns their number.  Roles 1 and 2 are the ones whose
 * two low bits differ, so eight roles at a time are skipped when no byte has
 * bit 0 ^ bit 1 set.
 */
static int64_t collect_counted(const uint8_t *role, int64_t A, int32_t *rows)
{
    int64_t n = 0, a = 0;
    for (; a + 8 <= A; a += 8) {
        uint64_t w;
        memcpy(&w, role + a, sizeof w);
        if (!((w ^ (w >> 1)) & 0x0101010101010101ull))
            continue;
        for (int64_t j = a; j < a + 8; j++) {
            rows[n] = (int32_t)j;
            n += role[j] == MBX_ROLE_POSITIVE || role[j] == MBX_ROLE_NEGATIVE;
        }
    }
    for (; a < A; a++) {
        rows[n] = (int32_t)a;
        n += role[a] == MBX_ROLE_POSITIVE || role[a] == MBX_ROLE_NEGATIVE;
    }
    return n;
}

/*
 * The part of the image's outputs phase 1 can write (both gradient blocks
 * were zeroed first): matches, roles, and for every counted row its
 * classification loss (summed into conf_sum) and its gradient before the
 * 1/N that grad applies (N needs every image).  The loc rows of positives
 * are left to grad.
 */
static void write_known(mbx_loss *ctx, int64_t image, mbx_slot *slot, const float *conf,
                        float *conf_rows)
{
    const mbx_result *res = ctx->result;
    const mbx_config *cfg = &ctx->cfg;
    const int64_t A = ctx->batch.num_anchors, C = ctx->batch.num_classes;
    const mbx_image_targets *t = &ctx->batch.targets[image];
    const int32_t *match = ctx->match + image * A;
    const uint8_t *role = ctx->role + image * A;
    if (res->matches)
        memcpy(res->matches + image * A, match, (size_t)A * sizeof *match);
    if (res->roles)
        memcpy(res->roles + image * A, role, (size_t)A);
    int32_t *rows = slot->rows;
    const int64_t n = collect_counted(role, A, rows);
    /* Eight rows to a kernel call (rows8), the rest one by one: the same bits either way. */
    double conf_sum = 0.0;
    const float *z[8];
    int64_t target[8];
    float *grow[8];
    double loss[8];
    int batched = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t a = rows[i];
        if (i + PREFETCH_AHEAD < n) {
            const int64_t ra = rows[i + PREFETCH_AHEAD];
            prefetch_row_read(conf + ra * C, C);
            /* The gradient rows were zeroed past the caches: fetch them for writing. */
            if (res->grad_conf)
                prefetch_row(res->grad_conf + (image * A + ra) * C, C);
        }
        target[batched] =
            role[a] == MBX_ROLE_POSITIVE ? t->labels[match[a]] : cfg->background_label;
        z[batched] = conf + a * C;
        grow[batched] = res->grad_conf ? res->grad_conf + (image * A + a) * C
                        : conf_rows    ? conf_rows + i * C
                                       : NULL;
        if (++batched < 8 && i + 1 < n)
            continue;
        if (batched == 8)
            ctx->kern.rows8(&ctx->kp, z, target, 1.0f, grow, loss);
        else
            for (int r = 0; r < batched; r++)
                loss[r] = ctx->kern.row(&ctx->kp, z[r], target[r], 1.0f, grow[r]);
        for (int r = 0; r < batched; r++)
            conf_sum += ctx->exact_rows ? mbx_row_loss_exact(&ctx->kp, z[r], target[r]) : loss[r];
        batched = 0;
    }
    ctx->images[image].conf_sum = conf_sum;
}

/*
 * Phase 1 of one image: matches, checks its loc and conf for NaN/infinity
 * (the first bad value, loc before conf, is recorded in the image's state
 * and nothing is written to the result but, maybe, zero gradient rows),
 * mines, and leaves the image's match[] and role[] slices final (POSITIVE,
 * NEGATIVE that counts, IGNORED, NONE) with the counts in its state; then
 * writes what it can of the outputs (write_known).  Touches only that
 * image's slices of the state and the result, and the slot's scratch.
 */
void mbx_image_match(mbx_loss *ctx, int64_t image, mbx_slot *slot, const float *loc,
                     const float *conf, float *conf_rows)
{
    const mbx_batch *b = &ctx->batch;
    const mbx_config *cfg = &ctx->cfg;
    const int64_t A = b->num_anchors, C = b->num_classes;
    mbx_image_state *st = &ctx->images[image];
    int32_t *match = ctx->match + image * A;
    uint8_t *role = ctx->role + image * A;

    memset(st, 0, sizeof *st);
    /*
     * The image's gradient blocks start at zero (the rows that count are
     * written over, a few percent), with streaming stores: the zeros go
     * straight to memory and leave the caches to conf, which the image
     * pass and mining read next.
     */
    const mbx_result *res = ctx->result;
    if (res->grad_conf)
        ctx->kern.zero_stream(res->grad_conf + image * A * C, A * C);
    if (res->grad_loc)
        ctx->kern.zero_stream(res->grad_loc + image * A * 4, A * 4);

    /* Ground truth of this image, difficult boxes dropped unless used. */
    const mbx_image_targets *t = &b->targets[image];
    int64_t n = 0;
    for (int64_t j = 0; j < t->num_boxes; j++) {
        if (!cfg->use_difficult && t->difficult && t->difficult[j])
            continue;
        double box[4];
        mbx_box_to_xyxy(t->boxes + 4 * j, cfg->box_format, box);
        mbx_gt_box *g = &slot->gts[n++];
        g->x1 = box[0];
        g->y1 = box[1];
        g->x2 = box[2];
        g->y2 = box[3];
        g->area = (box[2] - box[0]) * (box[3] - box[1]);
        g->index = j;
    }
    const mbx_anchor_cols an = {.count = A,
                                .apad = ctx->apad,
                                .x1 = ctx->ax1,
                                .y1 = ctx->ay1,
                                .x2 = ctx->ax2,
                                .y2 = ctx->ay2,
                                .area = ctx->aarea,
                                .blocks = ctx->blocks,
                                .supers = ctx->supers};
    /*
     * The image pass: matching, and as the roles of each block of anchors
     * become known its rows' work (mbx_rows_pass): conf and loc checked,
     * and for softmax mining the lb and their
     * histogram, with the candidates collected at or above the cut implied
     * by this slot's previous edge less 10% (a guess, checked by mine()).
     */
    const int64_t target = cfg->background_label;
    const int want_floor =
        cfg->mining == MBX_MINING_HARD_NEGATIVE && ctx->kp.kind == MBX_CONF_SOFTMAX;
    const double u = 0x1p-22, lnc = log((double)C) * (1.0 + u);
    const double guess = 0.9 * slot->edge_hint;
    mbx_rows_pass rp = {
        .conf = conf,
        .loc = loc,
        .target = target,
        .want_floor = want_floor,
        .lb = slot->aux,
        .hist = (uint32_t *)(void *)slot->rank, /* sized for it, see loss.c */
        .collect = guess > 0.0 ? nextafterf((float)((guess * (1.0 - u) - lnc) / (1.0 + u)),
                                            -INFINITY)
                               : INFINITY,
        .list = slot->pending,
    };
    int64_t E;
    const int64_t P = mbx_match_image(&ctx->kern, &ctx->kp, &an, slot->gts, n, cfg->bipartite,
                                      cfg->overlap_threshold, cfg->neg_overlap, &slot->match,
                                      match, role, &E, &rp);
    if (!(rp.flags & MBX_FLOOR_LOC_OK)) {
        fail(st, 0, loc, A * 4);
        return;
    }
    if (!(rp.flags & MBX_FLOOR_CONF_OK)) {
        fail(st, 1, conf, A * C);
        return;
    }
    const int64_t k = negatives_wanted(cfg, P, E);
    if (k > 0 && k < E)
        mine(ctx, slot, conf, A, role, k, target, &rp);
    else if (k == E)
        for (int64_t a = 0; a < A; a++)
            if (role[a] == MBX_ROLE_NONE)
                role[a] = MBX_ROLE_NEGATIVE;
    st->num_positives = P;
    st->num_negatives = k;
    write_known(ctx, image, slot, conf, conf_rows);
}

/* float of a finite double, saturated at the largest finite float. */
static float to_float_sat(double x)
{
    if (x > FLT_MAX)
        return FLT_MAX;
    if (x < -FLT_MAX)
        return -FLT_MAX;
    return (float)x;
}

/*
 * Phase 2 of one image (after reduce fixed N): scales its counted
 * classification gradient rows by 1/N (float, as the kernels would have),
 * and computes the localization loss of its positives (summed in anchor
 * order into the image's state) and, when asked, their loc gradient rows.
 * With sp, the same rows also go to the caller's compact arrays; a conf row
 * that no dense array holds is computed here from conf exactly as match
 * would have (unscaled, then times 1/N), so its bits are the dense ones.
 * Touches only that image's slices, sp's arrays and the slot's scratch.
 */
void mbx_image_grad(mbx_loss *ctx, int64_t image, mbx_slot *slot, const float *loc,
                    const float *conf, const float *conf_rows, const mbx_sparse_grad *sp)
{
    const mbx_batch *b = &ctx->batch;
    const mbx_config *cfg = &ctx->cfg;
    const mbx_result *res = ctx->result;
    const int64_t A = b->num_anchors, C = b->num_classes;
    const int32_t *match = ctx->match + image * A;
    const uint8_t *role = ctx->role + image * A;
    const mbx_image_targets *t = &b->targets[image];
    float *gl = res->grad_loc ? res->grad_loc + image * A * 4 : NULL;
    float *gc = res->grad_conf ? res->grad_conf + image * A * C : NULL;
    const float cscale = (float)(1.0 / ctx->normalizer);
    const double lscale = cfg->alpha / ctx->normalizer;
    const float *alpha_loc = ctx->ciou_alpha_loc ? ctx->ciou_alpha_loc + image * A * 4 : NULL;
    const int64_t base = sp ? sp->row_base : 0;
    int32_t *lrows = sp ? sp->loc_rows : NULL, *crows = sp ? sp->conf_rows : NULL;
    float *lval = sp ? sp->loc_values : NULL, *cval = sp ? sp->conf_values : NULL;
    const int want_g = gl || lval;

    int32_t *rows = slot->rows;
    const int64_t n = collect_counted(role, A, rows);
    double loc_sum = 0.0;
    int64_t np = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) {
            const int64_t ahead = rows[i + PREFETCH_AHEAD];
            if (gc) {
                prefetch_row(gc + ahead * C, C);
            } else if (cval && !conf_rows) { /* computed here, from conf long out of the caches */
                prefetch_row_read(conf + ahead * C, C);
            }
            __builtin_prefetch(loc + 4 * ahead);
        }
        const int64_t a = rows[i];
        if (crows)
            crows[i] = (int32_t)(base + a);
        if (gc) {
            float *g = gc + a * C;
            for (int64_t c = 0; c < C; c++)
                g[c] *= cscale;
            if (cval)
                memcpy(cval + i * C, g, (size_t)C * sizeof *g);
        } else if (cval && conf_rows) { /* match wrote it, unscaled */
            float *g = cval + i * C;
            const float *u = conf_rows + i * C;
            for (int64_t c = 0; c < C; c++)
                g[c] = u[c] * cscale;
        } else if (cval) {
            float *g = cval + i * C;
            const int64_t target =
                role[a] == MBX_ROLE_POSITIVE ? t->labels[match[a]] : cfg->background_label;
            ctx->kern.row(&ctx->kp, conf + a * C, target, 1.0f, g);
            for (int64_t c = 0; c < C; c++)
                g[c] *= cscale;
        }
        if (role[a] != MBX_ROLE_POSITIVE)
            continue;
        double anchor[4], gt[4], g[4];
        mbx_anchor_box(ctx, a, anchor);
        mbx_box_to_xyxy(t->boxes + 4 * (int64_t)match[a], cfg->box_format, gt);
        loc_sum += mbx_loc_loss_grad(&ctx->lp, loc + 4 * a, anchor, gt, want_g ? g : NULL,
                                     alpha_loc ? alpha_loc + 4 * a : NULL);
        if (gl)
            for (int k = 0; k < 4; k++)
                gl[4 * a + k] = to_float_sat(g[k] * lscale);
        if (lval)
            for (int k = 0; k < 4; k++)
                lval[4 * np + k] = to_float_sat(g[k] * lscale);
        if (lrows)
            lrows[np] = (int32_t)(base + a);
        np++;
    }
    ctx->images[image].loc_sum = loc_sum;
}
