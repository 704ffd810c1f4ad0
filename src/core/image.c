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
 * Hard negative mining of one image, 0 < k < E: marks k of the E eligible
 * anchors NEGATIVE.  Returns 0, or 1 when conf holds a NaN or infinity.
 *
 * Softmax first bounds every anchor's loss by [lb, lb + ln C] with lb = max z
 * - z_background (one cheap pass over the rows); with T_lb the k-th largest
 * lb, the true k-th largest loss is >= T_lb, so anchors whose upper bound is
 * below T_lb cannot be chosen and only the others get the full computation.
 */
static int mine(const mbx_loss *ctx, mbx_slot *slot, const float *conf, int64_t A, uint8_t *role,
                int64_t k, int64_t target)
{
    const mbx_kernels *kern = &ctx->kern;
    int32_t *idx = slot->rows;
    float *val = slot->values;
    int64_t n = 0;
    if (ctx->kp.kind == MBX_CONF_SOFTMAX) {
        float *lb = slot->aux;
        uint32_t *hist = (uint32_t *)(void *)slot->rank; /* sized for it, see loss.c */
        if (!kern->softmax_floor(&ctx->kp, conf, A, target, role, lb, hist))
            return 1;
        /* T_lb: the lower edge of the bin holding the k-th largest lb (<= that lb). */
        int64_t bin = MBX_FLOOR_BINS - 1, above = 0;
        while (above + hist[bin] < k)
            above += hist[bin--];
        const uint32_t edge_bits = (uint32_t)bin << 19;
        float edge;
        memcpy(&edge, &edge_bits, sizeof edge);
        const double u = 0x1p-22; /* generous: each float rounding is within 2^-24 */
        const double tlb = edge;
        const double lnc = log((double)ctx->kp.num_classes) * (1.0 + u);
        /* Keep lb (1 + u) + ln C >= T_lb (1 - u): the anchor's loss may reach the k-th. */
        const double cut = (tlb * (1.0 - u) - lnc) / (1.0 + u);
        for (int64_t a = 0; a < A; a++) {
            idx[n] = (int32_t)a;
            n += role[a] == MBX_ROLE_NONE && (double)lb[a] >= cut;
        }
        if (n >= k) {
            kern->rank_list(&ctx->kp, conf, idx, n, target, val, slot->aux);
            select_listed(ctx, slot, conf, role, idx, val, n, k, target);
            return 0;
        }
        n = 0; /* cannot happen (the k largest lb are kept); rank everything */
    }
    if (!kern->rank(&ctx->kp, conf, A, target, slot->aux, slot->values))
        return 1;
    for (int64_t a = 0; a < A; a++) {
        idx[n] = (int32_t)a;
        val[n] = slot->aux[a];
        n += role[a] == MBX_ROLE_NONE;
    }
    select_listed(ctx, slot, conf, role, idx, val, n, k, target);
    return 0;
}

void mbx_image_match(mbx_loss *ctx, int64_t image, mbx_slot *slot)
{
    const mbx_batch *b = &ctx->batch;
    const mbx_config *cfg = &ctx->cfg;
    const int64_t A = b->num_anchors, C = b->num_classes;
    const float *loc = b->loc + image * A * 4;
    const float *conf = b->conf + image * A * C;
    mbx_image_state *st = &ctx->images[image];
    int32_t *match = ctx->match + image * A;
    uint8_t *role = ctx->role + image * A;

    memset(st, 0, sizeof *st);
    if (!ctx->kern.finite(loc, A * 4)) {
        fail(st, 0, loc, A * 4);
        return;
    }

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
    const mbx_anchor_cols an = {A,          ctx->apad,  ctx->ax1,   ctx->ay1,
                                ctx->ax2,   ctx->ay2,   ctx->aarea, ctx->bx1,
                                ctx->by1,   ctx->bx2,   ctx->by2};
    int64_t E;
    const int64_t P = mbx_match_image(&ctx->kern, &an, slot->gts, n, cfg->bipartite,
                                      cfg->overlap_threshold, cfg->neg_overlap, &slot->match,
                                      match, role, &E);
    const int64_t k = negatives_wanted(cfg, P, E);
    const int64_t target = cfg->background_label;
    if (k > 0 && k < E) {
        if (mine(ctx, slot, conf, A, role, k, target)) {
            fail(st, 1, conf, A * C);
            return;
        }
    } else {
        if (!ctx->kern.finite(conf, A * C)) {
            fail(st, 1, conf, A * C);
            return;
        }
        if (k == E)
            for (int64_t a = 0; a < A; a++)
                if (role[a] == MBX_ROLE_NONE)
                    role[a] = MBX_ROLE_NEGATIVE;
    }
    st->num_positives = P;
    st->num_negatives = k;
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

/* How many counted rows ahead the gradient unit prefetches. */
#define PREFETCH_AHEAD 8

static void prefetch_row(const float *p, int64_t n)
{
    const char *c = (const char *)p;
    const int64_t bytes = n * (int64_t)sizeof(float);
    for (int64_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(c + off);
    __builtin_prefetch(c + bytes - 1);
}

void mbx_image_grad(mbx_loss *ctx, int64_t image, mbx_slot *slot)
{
    const mbx_batch *b = &ctx->batch;
    const mbx_config *cfg = &ctx->cfg;
    const mbx_result *res = ctx->result;
    const int64_t A = b->num_anchors, C = b->num_classes;
    const float *loc = b->loc + image * A * 4;
    const float *conf = b->conf + image * A * C;
    const int32_t *match = ctx->match + image * A;
    const uint8_t *role = ctx->role + image * A;
    const mbx_image_targets *t = &b->targets[image];
    float *gl = res->grad_loc ? res->grad_loc + image * A * 4 : NULL;
    float *gc = res->grad_conf ? res->grad_conf + image * A * C : NULL;
    const float cscale = (float)(1.0 / ctx->normalizer);
    const double lscale = cfg->alpha / ctx->normalizer;
    const float *alpha_loc = ctx->ciou_alpha_loc ? ctx->ciou_alpha_loc + image * A * 4 : NULL;

    /*
     * The rows that count, in order (positives and counted negatives: ~2%).
     * Roles 1 and 2 are the ones whose two low bits differ, so eight roles
     * at a time are skipped when no byte has bit 0 ^ bit 1 set.
     */
    int32_t *rows = slot->rows;
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

    double conf_sum = 0.0, loc_sum = 0.0;
    int64_t zl = 0, zc = 0; /* first row of the pending zero runs */
    for (int64_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) {
            const int64_t ahead = rows[i + PREFETCH_AHEAD];
            prefetch_row(conf + ahead * C, C);
            __builtin_prefetch(loc + 4 * ahead);
        }
        a = rows[i];
        const int positive = role[a] == MBX_ROLE_POSITIVE;
        const int64_t target = positive ? t->labels[match[a]] : cfg->background_label;
        const float *z = conf + a * C;
        float *grow = NULL;
        if (gc) {
            if (zc < a)
                memset(gc + zc * C, 0, (size_t)(a - zc) * (size_t)C * sizeof(float));
            grow = gc + a * C;
            zc = a + 1;
        }
        double lc = ctx->kern.row(&ctx->kp, z, target, cscale, grow);
        if (ctx->exact_rows)
            lc = mbx_row_loss_exact(&ctx->kp, z, target);
        conf_sum += lc;
        if (!positive)
            continue;
        double anchor[4], gt[4], g[4];
        mbx_anchor_box(ctx, a, anchor);
        mbx_box_to_xyxy(t->boxes + 4 * (int64_t)match[a], cfg->box_format, gt);
        loc_sum += mbx_loc_loss_grad(&ctx->lp, loc + 4 * a, anchor, gt, gl ? g : NULL,
                                     alpha_loc ? alpha_loc + 4 * a : NULL);
        if (gl) {
            if (zl < a)
                memset(gl + zl * 4, 0, (size_t)(a - zl) * 4 * sizeof(float));
            for (int k = 0; k < 4; k++)
                gl[4 * a + k] = to_float_sat(g[k] * lscale);
            zl = a + 1;
        }
    }
    if (gc && zc < A)
        memset(gc + zc * C, 0, (size_t)(A - zc) * (size_t)C * sizeof(float));
    if (gl && zl < A)
        memset(gl + zl * 4, 0, (size_t)(A - zl) * 4 * sizeof(float));
    if (res->matches)
        memcpy(res->matches + image * A, match, (size_t)A * sizeof *match);
    if (res->roles)
        memcpy(res->roles + image * A, role, (size_t)A);
    ctx->images[image].conf_sum = conf_sum;
    ctx->images[image].loc_sum = loc_sum;
}
