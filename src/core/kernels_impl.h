/*
 * kernels_impl.h - the bodies of the fast classification kernels, included
 * twice by kernels.c: once plain (generic SSE2) and once with the x86-64-v3
 * target attribute (AVX2).  Defines KSUF (name suffix) and KATTR (function
 * attribute) before inclusion.  Only kernels.c includes this file.
 *
 * Row geometry: a row of C floats is read as C/8 full vectors at 8j plus, if
 * C % 8 != 0, one tail vector: for C >= 8 the last 8 floats of the row (its
 * lanes that repeat columns of the previous vector are masked out of sums),
 * for C < 8 a padded copy.  So no kernel ever reads outside the row.
 */
#define KCAT2(a, b) a##_##b
#define KCAT(a, b) KCAT2(a, b)
#define KFN(n) KCAT(n, KSUF)
#define KINL MBX_INLINE KATTR

#include "vmath_impl.h"

#ifndef MBX_KERNELS_IMPL_COMMON
#define MBX_KERNELS_IMPL_COMMON
typedef struct krow {
    int64_t C;
    int64_t nfull;    /* full vectors at offsets 8j */
    int tail;         /* 1: one more vector */
    int copy;         /* 1 (C < 8): the tail vector is a padded copy */
    int64_t tail_off; /* column of the tail vector's lane 0 */
} krow;

static inline void krow_init(krow *g, int64_t C)
{
    g->C = C;
    g->nfull = C / 8;
    g->tail = (C % 8) != 0;
    g->copy = C < 8;
    g->tail_off = C < 8 ? 0 : C - 8;
}
#endif

/* Lanes of the tail vector that hold columns not covered by full vectors. */
KINL v8si KFN(tail_mask)(const krow *g)
{
    const v8si iota = {0, 1, 2, 3, 4, 5, 6, 7};
    int64_t first = g->copy ? 0 : 8 - (g->C % 8);
    int64_t last = g->copy ? g->C : 8;
    return (iota >= vset1i((int32_t)first)) & (iota < vset1i((int32_t)last));
}

KINL v8sf KFN(tail_load)(const krow *g, const float *z, float pad)
{
    if (g->copy) {
        float buf[8];
        for (int i = 0; i < 8; i++)
            buf[i] = pad;
        memcpy(buf, z, (size_t)g->C * sizeof(float));
        return vload(buf);
    }
    return vload(z + g->tail_off);
}

KINL void KFN(tail_store)(const krow *g, float *out, v8sf v)
{
    if (g->copy) {
        float buf[8];
        vstore(buf, v);
        memcpy(out, buf, (size_t)g->C * sizeof(float));
    } else {
        vstore(out + g->tail_off, v); /* repeated columns get their identical values */
    }
}

/* Lanes of the vector starting at column `col0` that are the target column. */
KINL v8si KFN(target_mask)(int64_t col0, int64_t target)
{
    const v8si iota = {0, 1, 2, 3, 4, 5, 6, 7};
    int64_t rel = target - col0;
    if (target < 0 || rel < 0 || rel > 7)
        return vset1i(0);
    return iota == vset1i((int32_t)rel);
}

/* Negates the lanes of v where m is set. */
KINL v8sf KFN(flip)(v8sf v, v8si m)
{
    return (v8sf)((v8si)v ^ (m & vset1i((int32_t)0x80000000u)));
}

KINL int KFN(all_zero)(v8sf acc)
{
    return vhsumi(acc == vset1(0.0f)) == -8;
}

/* softplus pieces: l = ln(1 + e^-|x|), so softplus(x) = max(x, 0) + l. */
KINL v8sf KFN(softplus_tail)(v8sf x)
{
    return KFN(vlog1p)(KFN(vexp_neg)(-vabs(x)));
}

/* ---------------------------------------------------------------- ranking */

/* Row maximum of z (softmax); adds v - v of every value to *fin (NaN if any is not finite). */
KINL float KFN(row_max)(const krow *g, const float *z, v8sf *fin)
{
    v8sf mx = vset1(-FLT_MAX);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf v = vload(z + 8 * j);
        *fin += v - v;
        mx = KVMAX(mx, v);
    }
    if (g->tail) {
        v8sf vt = KFN(tail_load)(g, z, -FLT_MAX);
        *fin += vt - vt;
        mx = KVMAX(mx, vt);
    }
    return vhmax(mx);
}

/*
 * s = sum of e^(z_k - m) over every column but one maximal one: the terms
 * below the maximum plus (number of maxima - 1).
 */
KINL float KFN(row_rest)(const krow *g, v8si tmask, const float *z, float m)
{
    const v8sf mv = vset1(m);
    v8sf s = vset1(0.0f);
    v8si cnt = vset1i(0);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf d = vload(z + 8 * j) - mv;
        s += vand(d < vset1(0.0f), KFN(vexp_neg)(d));
        cnt += d == vset1(0.0f);
    }
    if (g->tail) {
        v8sf d = KFN(tail_load)(g, z, -FLT_MAX) - mv;
        s += vand(tmask & (d < vset1(0.0f)), KFN(vexp_neg)(d));
        cnt += tmask & (d == vset1(0.0f));
    }
    return vhsum(s) + (float)(-vhsumi(cnt) - 1);
}

/* v[i] = add[i] + ln(1 + v[i]) for i < n, 8 at a time. */
KINL void KFN(add_log1p)(float *v, const float *add, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        vstore(v + i, vload(add + i) + KFN(vlog1p)(vload(v + i)));
    if (i < n) {
        float s[8] = {0}, d[8] = {0};
        memcpy(s, v + i, (size_t)(n - i) * sizeof(float));
        memcpy(d, add + i, (size_t)(n - i) * sizeof(float));
        vstore(s, vload(d) + KFN(vlog1p)(vload(s)));
        memcpy(v + i, s, (size_t)(n - i) * sizeof(float));
    }
}

/*
 * Softmax: loss = (m - z_t) + ln(1 + s), m the row maximum and s as in
 * row_rest.  Both terms are >= 0, so the value keeps float32 relative
 * accuracy even when the loss is tiny.
 */
KATTR static int KFN(rank_softmax)(const mbx_kparams *kp, const float *conf, int64_t A,
                                   int64_t target, float *rank, float *scratch)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    v8sf fin = vset1(0.0f);
    for (int64_t a = 0; a < A; a++) {
        const float *z = conf + a * g.C;
        const float m = KFN(row_max)(&g, z, &fin);
        rank[a] = KFN(row_rest)(&g, tmask, z, m);
        scratch[a] = m - z[target];
    }
    KFN(add_log1p)(rank, scratch, A);
    return KFN(all_zero)(fin);
}

/*
 * Softmax lower bound: lb[a] = m - z_t (<= the loss <= lb + ln C) for the
 * anchors with role NONE, -1 for the others, and hist[] (MBX_FLOOR_BINS
 * counters, zeroed here) of the eligible lb by their float bits >> 19.
 * Returns 1 when all of conf is finite.
 */
KATTR static int KFN(softmax_floor)(const mbx_kparams *kp, const float *conf, int64_t A,
                                    int64_t target, const uint8_t *role, float *lb,
                                    uint32_t *hist)
{
    krow g;
    krow_init(&g, kp->num_classes);
    v8sf fin = vset1(0.0f);
    memset(hist, 0, MBX_FLOOR_BINS * sizeof *hist);
    for (int64_t a = 0; a < A; a++) {
        const float *z = conf + a * g.C;
        const float m = KFN(row_max)(&g, z, &fin);
        float v = m - z[target];
        if (role[a] == MBX_ROLE_NONE) {
            uint32_t bits;
            memcpy(&bits, &v, sizeof bits);
            hist[(bits >> 19) & (MBX_FLOOR_BINS - 1)]++; /* v >= 0: sign bit clear */
        } else {
            v = -1.0f;
        }
        lb[a] = v;
    }
    return KFN(all_zero)(fin);
}

/* Sigmoid loss of one row: sum of softplus(x), x = -z on the target column, z elsewhere. */
KINL float KFN(sigmoid_rank_row)(const krow *g, v8si tmask, v8si ttail, const float *z,
                                 int64_t target, v8sf *fin)
{
    v8sf acc = vset1(0.0f);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf v = vload(z + 8 * j);
        *fin += v - v;
        v8sf x = KFN(flip)(v, KFN(target_mask)(8 * j, target));
        acc += KVMAX(x, vset1(0.0f)) + KFN(softplus_tail)(x);
    }
    if (g->tail) {
        v8sf v = KFN(tail_load)(g, z, 0.0f);
        *fin += v - v;
        v8sf x = KFN(flip)(v, ttail);
        acc += vand(tmask, KVMAX(x, vset1(0.0f)) + KFN(softplus_tail)(x));
    }
    return vhsum(acc);
}

/*
 * Focal term of one lane with x = -u (u = z on the target column, -z
 * elsewhere): alpha_t * softplus(-u) * sigmoid(-u)^gamma, the power taken as
 * e^(-gamma softplus(u)).
 */
KINL v8sf KFN(focal_term)(v8sf x, v8si t, v8sf al, v8sf ga)
{
    v8sf l = KFN(softplus_tail)(x);
    v8sf spn = KVMAX(x, vset1(0.0f)) + l;  /* softplus(-u): the BCE */
    v8sf spp = KVMAX(-x, vset1(0.0f)) + l; /* softplus(u) */
    v8sf w = KFN(vexp_neg)(-(ga * spp));
    v8sf at = vblend(t, al, vset1(1.0f) - al);
    return at * spn * w;
}

KINL float KFN(focal_rank_row)(const krow *g, v8si tmask, v8si ttail, const float *z,
                               int64_t target, v8sf al, v8sf ga, v8sf *fin)
{
    v8sf acc = vset1(0.0f);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf v = vload(z + 8 * j);
        *fin += v - v;
        v8si t = KFN(target_mask)(8 * j, target);
        acc += KFN(focal_term)(KFN(flip)(v, t), t, al, ga);
    }
    if (g->tail) {
        v8sf v = KFN(tail_load)(g, z, 0.0f);
        *fin += v - v;
        acc += vand(tmask, KFN(focal_term)(KFN(flip)(v, ttail), ttail, al, ga));
    }
    return vhsum(acc);
}

/*
 * out[i] = ranking loss of anchor idx[i] (i < n) against target; scratch[n]
 * is working space.  Returns 1 when the listed rows are finite.
 */
KATTR static int KFN(rank_list)(const mbx_kparams *kp, const float *conf, const int32_t *idx,
                                int64_t n, int64_t target, float *out, float *scratch)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    const v8si ttail = KFN(target_mask)(g.tail_off, target);
    const v8sf al = vset1(kp->focal_alpha_f), ga = vset1(kp->focal_gamma_f);
    v8sf fin = vset1(0.0f);
    for (int64_t i = 0; i < n; i++) {
        const float *z = conf + (int64_t)idx[i] * g.C;
        if (kp->kind == MBX_CONF_SOFTMAX) {
            const float m = KFN(row_max)(&g, z, &fin);
            out[i] = KFN(row_rest)(&g, tmask, z, m);
            scratch[i] = m - z[target];
        } else if (kp->kind == MBX_CONF_SIGMOID) {
            out[i] = KFN(sigmoid_rank_row)(&g, tmask, ttail, z, target, &fin);
        } else {
            out[i] = KFN(focal_rank_row)(&g, tmask, ttail, z, target, al, ga, &fin);
        }
    }
    if (kp->kind == MBX_CONF_SOFTMAX)
        KFN(add_log1p)(out, scratch, n);
    return KFN(all_zero)(fin);
}

KATTR static int KFN(rank)(const mbx_kparams *kp, const float *conf, int64_t A, int64_t target,
                           float *rank, float *scratch)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    const v8si ttail = KFN(target_mask)(g.tail_off, target);
    const v8sf al = vset1(kp->focal_alpha_f), ga = vset1(kp->focal_gamma_f);
    v8sf fin = vset1(0.0f);
    switch (kp->kind) {
    case MBX_CONF_SIGMOID:
        for (int64_t a = 0; a < A; a++)
            rank[a] = KFN(sigmoid_rank_row)(&g, tmask, ttail, conf + a * g.C, target, &fin);
        return KFN(all_zero)(fin);
    case MBX_CONF_FOCAL:
        for (int64_t a = 0; a < A; a++)
            rank[a] = KFN(focal_rank_row)(&g, tmask, ttail, conf + a * g.C, target, al, ga, &fin);
        return KFN(all_zero)(fin);
    default:
        return KFN(rank_softmax)(kp, conf, A, target, rank, scratch);
    }
}

/* ------------------------------------------------------- one counted row */

/* *acc += the 8 lanes of v, widened to double. */
KINL void KFN(acc_double)(v4df *acc, v8sf v)
{
    *acc += __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), v4df) +
            __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), v4df);
}

KATTR static double KFN(row_softmax)(const mbx_kparams *kp, const float *z, int64_t target,
                                     float scale, float *grad)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    v8sf mx = vset1(-FLT_MAX), vt = vset1(0.0f);
    for (int64_t j = 0; j < g.nfull; j++)
        mx = KVMAX(mx, vload(z + 8 * j));
    if (g.tail) {
        vt = KFN(tail_load)(&g, z, -FLT_MAX);
        mx = KVMAX(mx, vt);
    }
    const float m = vhmax(mx);
    const v8sf mv = vset1(m);
    v8sf s = vset1(0.0f);
    v8si cnt = vset1i(0);
    for (int64_t j = 0; j < g.nfull; j++) {
        v8sf d = vload(z + 8 * j) - mv;
        s += vand(d < vset1(0.0f), KFN(vexp_neg)(d));
        cnt += d == vset1(0.0f);
    }
    if (g.tail) {
        v8sf d = vt - mv;
        s += vand(tmask & (d < vset1(0.0f)), KFN(vexp_neg)(d));
        cnt += tmask & (d == vset1(0.0f));
    }
    const float rest = vhsum(s) + (float)(-vhsumi(cnt) - 1); /* sum(e) - 1 */
    if (grad) {
        const v8sf inv = vset1(1.0f / (1.0f + rest));
        const v8sf sc = vset1(scale);
        for (int64_t j = 0; j < g.nfull; j++) {
            v8sf e = KFN(vexp_neg)(vload(z + 8 * j) - mv);
            v8sf t = vand(KFN(target_mask)(8 * j, target), vset1(1.0f));
            vstore(grad + 8 * j, (e * inv - t) * sc);
        }
        if (g.tail) {
            v8sf e = KFN(vexp_neg)(vt - mv);
            v8sf t = vand(KFN(target_mask)(g.tail_off, target), vset1(1.0f));
            KFN(tail_store)(&g, grad, (e * inv - t) * sc);
        }
    }
    return ((double)m - (double)z[target]) + log1p((double)rest);
}

/* Sigmoid: sum of BCE-with-logits; gradient sigmoid(z) - t. */
KATTR static double KFN(row_sigmoid)(const mbx_kparams *kp, const float *z, int64_t target,
                                     float scale, float *grad)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    const v8sf sc = vset1(scale);
    v4df acc = vset1d(0.0); /* double: terms of huge logits would overflow a float sum */
    for (int64_t j = 0; j <= g.nfull; j++) {
        const int is_tail = j == g.nfull;
        if (is_tail && !g.tail)
            break;
        v8sf v = is_tail ? KFN(tail_load)(&g, z, 0.0f) : vload(z + 8 * j);
        v8si t = KFN(target_mask)(is_tail ? g.tail_off : 8 * j, target);
        v8sf x = KFN(flip)(v, t);
        v8sf e = KFN(vexp_neg)(-vabs(v));
        v8sf term = KVMAX(x, vset1(0.0f)) + KFN(vlog1p)(e);
        KFN(acc_double)(&acc, is_tail ? vand(tmask, term) : term);
        if (grad) {
            v8sf r = vset1(1.0f) / (vset1(1.0f) + e);
            v8sf p = vblend(v >= vset1(0.0f), r, e * r);
            v8sf gv = (p - vand(t, vset1(1.0f))) * sc;
            if (is_tail)
                KFN(tail_store)(&g, grad, gv);
            else
                vstore(grad + 8 * j, gv);
        }
    }
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/*
 * Focal: the sum of the lane terms of focal_term; with u as there,
 * dL/du = -alpha_t q^gamma (q + gamma softplus(-u) (1 - q)), q = sigmoid(-u),
 * taken as 0 where q^gamma underflows (so no 0 * inf can appear).
 */
KATTR static double KFN(row_focal)(const mbx_kparams *kp, const float *z, int64_t target,
                                   float scale, float *grad)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    const v8sf sc = vset1(scale);
    const v8sf al = vset1(kp->focal_alpha_f), ga = vset1(kp->focal_gamma_f);
    v4df acc = vset1d(0.0); /* double: terms of huge logits would overflow a float sum */
    for (int64_t j = 0; j <= g.nfull; j++) {
        const int is_tail = j == g.nfull;
        if (is_tail && !g.tail)
            break;
        v8sf v = is_tail ? KFN(tail_load)(&g, z, 0.0f) : vload(z + 8 * j);
        v8si t = KFN(target_mask)(is_tail ? g.tail_off : 8 * j, target);
        v8sf x = KFN(flip)(v, t);
        v8sf l = KFN(softplus_tail)(x);
        v8sf spn = KVMAX(x, vset1(0.0f)) + l;
        v8sf spp = KVMAX(-x, vset1(0.0f)) + l;
        v8sf w = KFN(vexp_neg)(-(ga * spp));
        v8sf at = vblend(t, al, vset1(1.0f) - al);
        v8sf term = at * spn * w;
        KFN(acc_double)(&acc, is_tail ? vand(tmask, term) : term);
        if (grad) {
            /* 1 - q = e^-softplus(-u) must be 0, not ~1e-38, where softplus(-u) is huge. */
            v8sf q = KFN(vexp_neg)(-spp);
            v8sf omq = vand(spn < vset1(-MBX_EXP_LO), KFN(vexp_neg)(-spn));
            v8sf dldu = -(at * w * (q + ga * (spn * omq)));
            dldu = vand(w > vset1(0.0f), dldu);
            v8sf gv = KFN(flip)(dldu, ~t) * sc; /* dz = du on the target, -du elsewhere */
            if (is_tail)
                KFN(tail_store)(&g, grad, gv);
            else
                vstore(grad + 8 * j, gv);
        }
    }
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

KATTR static double KFN(row)(const mbx_kparams *kp, const float *z, int64_t target, float scale,
                             float *grad)
{
    switch (kp->kind) {
    case MBX_CONF_SIGMOID:
        return KFN(row_sigmoid)(kp, z, target, scale, grad);
    case MBX_CONF_FOCAL:
        return KFN(row_focal)(kp, z, target, scale, grad);
    default:
        return KFN(row_softmax)(kp, z, target, scale, grad);
    }
}

KATTR static int KFN(finite)(const float *p, int64_t n)
{
    v8sf acc = vset1(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8sf v = vload(p + i);
        acc += v - v;
    }
    int ok = KFN(all_zero)(acc);
    for (; i < n; i++)
        ok &= isfinite(p[i]) != 0;
    return ok;
}

/* ------------------------------------------------------------------- IoU */

/*
 * IoU of 4 anchors with one GT as torchvision's box_iou: wh = clamp(rb - lt, 0),
 * inter = w h, union = area_gt + area_anchor - inter, iou = inter / union.
 * Returns 0 without computing the IoU when no lane intersects (all IoUs 0).
 */
KINL int KFN(iou4)(const mbx_anchor_cols *an, int64_t a, const mbx_gt_box *gt, v4df *iou)
{
    v4df w = vmind(vloadd(an->x2 + a), vset1d(gt->x2)) - vmaxd(vloadd(an->x1 + a), vset1d(gt->x1));
    v4df h = vmind(vloadd(an->y2 + a), vset1d(gt->y2)) - vmaxd(vloadd(an->y1 + a), vset1d(gt->y1));
    w = vmaxd(w, vset1d(0.0));
    h = vmaxd(h, vset1d(0.0));
    v4df inter = w * h;
    v4di hit = inter > vset1d(0.0);
    if (!(hit[0] | hit[1] | hit[2] | hit[3]))
        return 0;
    v4df uni = (vset1d(gt->area) + vloadd(an->area + a)) - inter;
    *iou = inter / uni;
    return 1;
}

/* 1 when gt cannot overlap any anchor of block blk (disjoint from its bounds). */
KINL int KFN(block_misses)(const mbx_anchor_cols *an, int64_t blk, const mbx_gt_box *gt)
{
    return an->bx2[blk] <= gt->x1 || an->bx1[blk] >= gt->x2 || an->by2[blk] <= gt->y1 ||
           an->by1[blk] >= gt->y2;
}

KATTR static int64_t KFN(iou_update)(const mbx_anchor_cols *an, const mbx_gt_box *gt,
                                     double *best, int64_t *bestg, double *value)
{
    const v4di gidx = vset1l(gt->index);
    v4df lane_max = vset1d(0.0);
    v4di lane_arg = vset1l(0);
    const int64_t nblk = an->apad / MBX_ANCHOR_BLOCK;
    for (int64_t blk = 0; blk < nblk; blk++) {
        if (KFN(block_misses)(an, blk, gt))
            continue; /* IoU 0 everywhere: nothing can change */
        for (int64_t a = blk * MBX_ANCHOR_BLOCK; a < (blk + 1) * MBX_ANCHOR_BLOCK; a += 4) {
            v4df iou;
            if (!KFN(iou4)(an, a, gt, &iou))
                continue; /* all 0: nothing can change */
            const v4di idx = vset1l(a) + (v4di){0, 1, 2, 3};
            v4df b = vloadd(best + a);
            v4di up = iou > b;
            vstored(best + a, vblendd(up, iou, b));
            vstorel(bestg + a, vblendl(up, gidx, vloadl(bestg + a)));
            v4di better = iou > lane_max; /* strict: each lane keeps its first maximum */
            lane_max = vblendd(better, iou, lane_max);
            lane_arg = vblendl(better, idx, lane_arg);
        }
    }
    double v = lane_max[0];
    int64_t arg = lane_arg[0];
    for (int l = 1; l < 4; l++)
        if (lane_max[l] > v || (lane_max[l] == v && lane_arg[l] < arg)) {
            v = lane_max[l];
            arg = lane_arg[l];
        }
    *value = v;
    return arg;
}

KATTR static void KFN(iou_row)(const mbx_anchor_cols *an, const mbx_gt_box *gt, double *row)
{
    const int64_t nblk = an->apad / MBX_ANCHOR_BLOCK;
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t a0 = blk * MBX_ANCHOR_BLOCK;
        if (KFN(block_misses)(an, blk, gt)) {
            for (int64_t a = a0; a < a0 + MBX_ANCHOR_BLOCK; a += 4)
                vstored(row + a, vset1d(0.0));
            continue;
        }
        for (int64_t a = a0; a < a0 + MBX_ANCHOR_BLOCK; a += 4) {
            v4df iou = vset1d(0.0);
            KFN(iou4)(an, a, gt, &iou);
            vstored(row + a, iou);
        }
    }
}

KATTR static int64_t KFN(classify)(const double *best, const int64_t *bestg, int64_t count,
                                   double thr, double neg, int32_t *match, uint8_t *role,
                                   int64_t *eligible)
{
    v4di npos = vset1l(0), nelig = vset1l(0);
    int64_t a = 0;
    for (; a + 4 <= count; a += 4) {
        const v4df b = vloadd(best + a);
        const v4di pos = b >= vset1d(thr);
        const v4di ign = ~pos & (b >= vset1d(neg));
        const v4di m = vblendl(pos, vloadl(bestg + a), vset1l(-1));
        const v4di r = (pos & vset1l(MBX_ROLE_POSITIVE)) | (ign & vset1l(MBX_ROLE_IGNORED));
        npos -= pos;
        nelig -= ~(pos | ign);
        for (int l = 0; l < 4; l++) {
            match[a + l] = (int32_t)m[l];
            role[a + l] = (uint8_t)r[l];
        }
    }
    int64_t P = npos[0] + npos[1] + npos[2] + npos[3];
    int64_t E = nelig[0] + nelig[1] + nelig[2] + nelig[3];
    for (; a < count; a++) {
        if (best[a] >= thr) {
            match[a] = (int32_t)bestg[a];
            role[a] = MBX_ROLE_POSITIVE;
            P++;
        } else {
            match[a] = -1;
            role[a] = best[a] >= neg ? MBX_ROLE_IGNORED : MBX_ROLE_NONE;
            E += role[a] == MBX_ROLE_NONE;
        }
    }
    *eligible = E;
    return P;
}

/* Test entry points: the vector functions over arrays (n a multiple of 8). */
KATTR static void KFN(exp_array)(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i + 8 <= n; i += 8)
        vstore(y + i, KFN(vexp_neg)(vload(x + i)));
}

KATTR static void KFN(log1p_array)(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i + 8 <= n; i += 8)
        vstore(y + i, KFN(vlog1p)(vload(x + i)));
}

#undef KCAT2
#undef KCAT
#undef KFN
#undef KINL
