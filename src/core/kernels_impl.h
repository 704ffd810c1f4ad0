/*
 * kernels_impl.h - the bodies of the fast kernels (ranking and counted rows
 * of the classification losses, IoU passes, the threshold classification),
 * included twice by kernels.c: once plain (generic SSE2) and once with the
 * x86-64-v3 target attribute (AVX2, FMA).  kernels.c defines KSUF (name
 * suffix), KATTR (function attribute), KFMA and KVMAX before inclusion.
 * Only kernels.c includes this file; nothing here allocates or keeps state.
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

#include "simd_ops_impl.h"
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
    return (v8sf)((v8si)v ^ (m & vset1i(INT32_MIN)));
}

KINL int KFN(all_zero)(v8sf acc)
{
    return vhsumi(acc == vset1(0.0f)) == -8;
}

/* 1 when all n values are finite: v - v is 0 for them, NaN otherwise. */
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

/*
 * The passes over conf check finiteness cheaply by summing the values they
 * load into `fin`: a NaN or infinity makes the sum non-finite.  So can an
 * overflow of huge finite values, so a non-finite sum is confirmed by the
 * exact check (rare).
 */
KINL int KFN(sum_finite)(v8sf fin)
{
    return KFN(all_zero)(fin - fin);
}

/* softplus pieces: l = ln(1 + e^-|x|), so softplus(x) = max(x, 0) + l. */
KINL v8sf KFN(softplus_tail)(v8sf x)
{
    return KFN(vlog1p)(KFN(vexp_neg)(-vabs(x)));
}

/* ---------------------------------------------------------------- ranking */

/*
 * The lane maxima of row z (the row maximum is their maximum); adds the
 * row's values to *fin (see sum_finite).
 */
KINL v8sf KFN(row_lanes_max)(const krow *g, v8si tmask, const float *z, v8sf *fin)
{
    v8sf mx = vset1(-FLT_MAX);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf v = vload(z + 8 * j);
        *fin += v;
        mx = KVMAX(mx, v);
    }
    if (g->tail) {
        v8sf vt = KFN(tail_load)(g, z, -FLT_MAX);
        *fin += vand(tmask, vt);
        mx = KVMAX(mx, vt);
    }
    return mx;
}

/*
 * row_rest before its horizontal sums: *s gets the lanes of the terms below
 * the maximum m, *cnt minus the lanes' counts of columns equal to m.  With
 * e (not NULL), e[0..C) also gets every column's e^(z - m), the maximum's
 * included: the softmax gradient's numerators, kept for grad_finish.
 */
KINL void KFN(row_rest_lanes)(const krow *g, v8si tmask, const float *z, float m, v8sf *s,
                              v8si *cnt, float *e)
{
    const v8sf mv = vset1(m);
    v8sf acc = vset1(0.0f);
    v8si c = vset1i(0);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf d = vload(z + 8 * j) - mv;
        v8sf x = KFN(vexp_neg)(d);
        acc += vand(d < vset1(0.0f), x);
        c += d == vset1(0.0f);
        if (e)
            vstore(e + 8 * j, x);
    }
    if (g->tail) {
        v8sf d = KFN(tail_load)(g, z, -FLT_MAX) - mv;
        v8sf x = KFN(vexp_neg)(d);
        acc += vand(tmask & (d < vset1(0.0f)), x);
        c += tmask & (d == vset1(0.0f));
        if (e)
            KFN(tail_store)(g, e, x);
    }
    *s = acc;
    *cnt = c;
}

/* Row maximum of z (softmax); adds the row's values to *fin (see sum_finite). */
KINL float KFN(row_max)(const krow *g, v8si tmask, const float *z, v8sf *fin)
{
    return vhmax(KFN(row_lanes_max)(g, tmask, z, fin));
}

/*
 * s = sum of e^(z_k - m) over every column but one maximal one: the terms
 * below the maximum plus (number of maxima - 1).  e as row_rest_lanes.
 */
KINL float KFN(row_rest)(const krow *g, v8si tmask, const float *z, float m, float *e)
{
    v8sf s;
    v8si cnt;
    KFN(row_rest_lanes)(g, tmask, z, m, &s, &cnt, e);
    /* The sum in sum8's order, so a row ranks the same alone or among eight. */
    const v4sf h = __builtin_shufflevector(s, s, 0, 2, 4, 6) + __builtin_shufflevector(s, s, 1, 3, 5, 7);
    return ((h[0] + h[1]) + (h[2] + h[3])) + (float)(-vhsumi(cnt) - 1);
}

/*
 * Within each 128-bit half: the maxima of the lane pairs (0,1) and (2,3) of
 * a, then of b.  Three rounds of it reduce eight vectors to their eight
 * maxima with 21 instructions, where eight horizontal maxima take about 50.
 */
KINL v8sf KFN(max_pairs)(v8sf a, v8sf b)
{
    const v8sf even = __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14);
    const v8sf odd = __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
    return KVMAX(even, odd);
}

/* Lane r = the largest lane of m[r], r < 8. */
KINL v8sf KFN(max8)(const v8sf m[8])
{
    const v8sf lo = KFN(max_pairs)(KFN(max_pairs)(m[0], m[1]), KFN(max_pairs)(m[2], m[3]));
    const v8sf hi = KFN(max_pairs)(KFN(max_pairs)(m[4], m[5]), KFN(max_pairs)(m[6], m[7]));
    return KVMAX(__builtin_shufflevector(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11),
                 __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15));
}

/*
 * Within each 128-bit half: the sums of the lane pairs (0,1) and (2,3) of
 * a, then of b (as max_pairs).
 */
KINL v8sf KFN(add_pairs)(v8sf a, v8sf b)
{
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}

KINL v8si KFN(add_pairsi)(v8si a, v8si b)
{
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
}

/* Lane r = the sum of the lanes of v[r], r < 8 (a fixed order of additions). */
KINL v8sf KFN(sum8)(const v8sf v[8])
{
    const v8sf lo = KFN(add_pairs)(KFN(add_pairs)(v[0], v[1]), KFN(add_pairs)(v[2], v[3]));
    const v8sf hi = KFN(add_pairs)(KFN(add_pairs)(v[4], v[5]), KFN(add_pairs)(v[6], v[7]));
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15);
}

KINL v8si KFN(sum8i)(const v8si v[8])
{
    const v8si lo = KFN(add_pairsi)(KFN(add_pairsi)(v[0], v[1]), KFN(add_pairsi)(v[2], v[3]));
    const v8si hi = KFN(add_pairsi)(KFN(add_pairsi)(v[4], v[5]), KFN(add_pairsi)(v[6], v[7]));
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(lo, hi, 4, 5, 6, 7, 12, 13, 14, 15);
}

/*
 * row_rest of eight rows at once: lane r is row z[r]'s, mx[r] its maximum;
 * e[r] as row_rest_lanes's e (e NULL: none).  The maxima by max8 and the
 * sums by sum8, which spares each row its three horizontal reductions; the
 * sums add the same terms in row_rest's order, so a row's value is the same
 * alone or among eight.
 */
KINL v8sf KFN(rest8)(const krow *g, v8si tmask, const float *const z[8], float *const *e,
                     float mx[8], v8sf *fin)
{
    v8sf m[8];
    for (int r = 0; r < 8; r++)
        m[r] = KFN(row_lanes_max)(g, tmask, z[r], fin);
    vstore(mx, KFN(max8)(m));
    v8sf s[8];
    v8si cnt[8];
    for (int r = 0; r < 8; r++)
        KFN(row_rest_lanes)(g, tmask, z[r], mx[r], &s[r], &cnt[r], e ? e[r] : NULL);
    const v8si count = -KFN(sum8i)(cnt);
    return KFN(sum8)(s) + __builtin_convertvector(count - vset1i(1), v8sf);
}

/* Softmax ranking of eight listed rows at once (see rank_softmax), by rest8. */
KINL void KFN(rank_softmax8)(const krow *g, v8si tmask, const float *const z[8], int64_t target,
                             float *out, float *scratch, v8sf *fin)
{
    float mx[8];
    vstore(out, KFN(rest8)(g, tmask, z, NULL, mx, fin));
    for (int r = 0; r < 8; r++)
        scratch[r] = mx[r] - z[r][target];
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
        const float m = KFN(row_max)(&g, tmask, z, &fin);
        rank[a] = KFN(row_rest)(&g, tmask, z, m, NULL);
        scratch[a] = m - z[target];
    }
    KFN(add_log1p)(rank, scratch, A);
    return KFN(sum_finite)(fin) || KFN(finite)(conf, A * g.C);
}

/* Sigmoid loss of one row: sum of softplus(x), x = -z on the target column, z elsewhere. */
KINL float KFN(sigmoid_rank_row)(const krow *g, v8si tmask, v8si ttail, const float *z,
                                 int64_t target, v8sf *fin)
{
    v8sf acc = vset1(0.0f);
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf v = vload(z + 8 * j);
        *fin += v;
        v8sf x = KFN(flip)(v, KFN(target_mask)(8 * j, target));
        acc += KVMAX(x, vset1(0.0f)) + KFN(softplus_tail)(x);
    }
    if (g->tail) {
        v8sf v = KFN(tail_load)(g, z, 0.0f);
        *fin += v;
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
        *fin += v;
        v8si t = KFN(target_mask)(8 * j, target);
        acc += KFN(focal_term)(KFN(flip)(v, t), t, al, ga);
    }
    if (g->tail) {
        v8sf v = KFN(tail_load)(g, z, 0.0f);
        *fin += v;
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
    int64_t i = 0;
    if (kp->kind == MBX_CONF_SOFTMAX) {
        for (; i + 8 <= n; i += 8) {
            const float *z[8];
            for (int r = 0; r < 8; r++) {
                if (i + 8 + r < n) { /* the listed rows are scattered: fetch ahead */
                    const char *p = (const char *)(conf + (int64_t)idx[i + 8 + r] * g.C);
                    for (int64_t off = 0; off < g.C * (int64_t)sizeof(float); off += 64)
                        __builtin_prefetch(p + off);
                    __builtin_prefetch(p + g.C * (int64_t)sizeof(float) - 1);
                }
                z[r] = conf + (int64_t)idx[i + r] * g.C;
            }
            KFN(rank_softmax8)(&g, tmask, z, target, out + i, scratch + i, &fin);
        }
    }
    for (; i < n; i++) {
        if (i + 8 < n) { /* the listed rows are scattered: fetch ahead */
            const char *p = (const char *)(conf + (int64_t)idx[i + 8] * g.C);
            for (int64_t off = 0; off < g.C * (int64_t)sizeof(float); off += 64)
                __builtin_prefetch(p + off);
            __builtin_prefetch(p + g.C * (int64_t)sizeof(float) - 1);
        }
        const float *z = conf + (int64_t)idx[i] * g.C;
        if (kp->kind == MBX_CONF_SOFTMAX) {
            const float m = KFN(row_max)(&g, tmask, z, &fin);
            out[i] = KFN(row_rest)(&g, tmask, z, m, NULL);
            scratch[i] = m - z[target];
        } else if (kp->kind == MBX_CONF_SIGMOID) {
            out[i] = KFN(sigmoid_rank_row)(&g, tmask, ttail, z, target, &fin);
        } else {
            out[i] = KFN(focal_rank_row)(&g, tmask, ttail, z, target, al, ga, &fin);
        }
    }
    if (kp->kind == MBX_CONF_SOFTMAX)
        KFN(add_log1p)(out, scratch, n);
    if (KFN(sum_finite)(fin))
        return 1;
    for (int64_t i = 0; i < n; i++)
        if (!KFN(finite)(conf + (int64_t)idx[i] * g.C, g.C))
            return 0;
    return 1;
}

/*
 * Softmax pruning of listed finite rows before ranking: keeps in place, in
 * order, the rows idx[0..n) whose loss may reach lk, and returns how many.
 * With m the row maximum and M_l the maximum of the columns lane l of a
 * row's vectors holds (cnt_l of them), every term of s = sum of e^(z_k - m)
 * over the columns but one maximal one is at most e^(M_l - m) for its lane,
 * so L = (m - z_t) + ln(1 + s) <= (m - z_t) + ln(sum_l cnt_l e^(M_l - m)):
 * ln C where all columns are near the maximum, far less where one column
 * stands out.  The float bound is kept against lk with a margin (1e-4 +
 * 1e-5 |bound|) hundreds of times its rounding error, so a row is dropped
 * only when its exact loss is below lk.  Rows left over from groups of
 * eight are kept.
 */
KATTR static int64_t KFN(prune_softmax)(const mbx_kparams *kp, const float *conf, int32_t *idx,
                                        int64_t n, int64_t target, double lk)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    const v8sf cnt = vset1((float)g.nfull) + vand(tmask, vset1(g.tail ? 1.0f : 0.0f));
    v8sf fin = vset1(0.0f); /* unused: the listed rows are known finite */
    int64_t kept = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *z[8];
        v8sf m[8];
        for (int r = 0; r < 8; r++) {
            z[r] = conf + (int64_t)idx[i + r] * g.C;
            m[r] = KFN(row_lanes_max)(&g, tmask, z[r], &fin);
        }
        float mx[8];
        vstore(mx, KFN(max8)(m));
        v8sf e[8];
        for (int r = 0; r < 8; r++)
            e[r] = cnt * KFN(vexp_neg)(m[r] - vset1(mx[r]));
        float ln[8];
        vstore(ln, KFN(vlog)(KFN(sum8)(e))); /* the sums are >= 1: the maximum's own lane */
        for (int r = 0; r < 8; r++) {
            const double ub = ((double)mx[r] - (double)z[r][target]) + (double)ln[r];
            const int32_t a = idx[i + r];
            idx[kept] = a; /* kept <= i + r: writes trail the reads */
            kept += ub + 1e-4 + 1e-5 * fabs(ub) >= lk;
        }
    }
    for (; i < n; i++)
        idx[kept++] = idx[i];
    (void)fin;
    return kept;
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
        return KFN(sum_finite)(fin) || KFN(finite)(conf, A * g.C);
    case MBX_CONF_FOCAL:
        for (int64_t a = 0; a < A; a++)
            rank[a] = KFN(focal_rank_row)(&g, tmask, ttail, conf + a * g.C, target, al, ga, &fin);
        return KFN(sum_finite)(fin) || KFN(finite)(conf, A * g.C);
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

/*
 * The softmax gradient from the numerators row_rest_lanes left in grad[]:
 * grad = scale (e inv - onehot(target)), inv = 1 / (1 + s).
 */
KINL void KFN(grad_finish)(const krow *g, float *grad, int64_t target, float inv, float scale)
{
    const v8sf vi = vset1(inv), sc = vset1(scale);
    /* The tail vector overlaps the last full one: read it before that is rewritten. */
    v8sf tail = vset1(0.0f);
    if (g->tail) {
        v8sf t = vand(KFN(target_mask)(g->tail_off, target), vset1(1.0f));
        tail = (KFN(tail_load)(g, grad, 0.0f) * vi - t) * sc;
    }
    for (int64_t j = 0; j < g->nfull; j++) {
        v8sf t = vand(KFN(target_mask)(8 * j, target), vset1(1.0f));
        vstore(grad + 8 * j, (vload(grad + 8 * j) * vi - t) * sc);
    }
    if (g->tail)
        KFN(tail_store)(g, grad, tail);
}

/*
 * Softmax: loss = (m - z_t) + ln(1 + s), s = row_rest (its sum order: the
 * same alone or among eight), ln(1 + s) by vlog1p (float32-accurate, within
 * mbx_rank_bound as the ranking values), the sum in double.  rows8_softmax
 * gives every row the same bits.
 */
KATTR static double KFN(row_softmax)(const mbx_kparams *kp, const float *z, int64_t target,
                                     float scale, float *grad)
{
    krow g;
    krow_init(&g, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&g);
    v8sf fin = vset1(0.0f); /* unused: counted rows are finite */
    const float m = KFN(row_max)(&g, tmask, z, &fin);
    const float rest = KFN(row_rest)(&g, tmask, z, m, grad);
    if (grad)
        KFN(grad_finish)(&g, grad, target, 1.0f / (1.0f + rest), scale);
    const v8sf lp = KFN(vlog1p)(vset1(rest));
    return ((double)m - (double)z[target]) + (double)lp[0];
}

/*
 * Eight softmax rows at once, each exactly as row_softmax: the sums by
 * rest8 and one vlog1p for the eight, which spares each row its horizontal
 * reductions and its logarithm.
 */
KINL void KFN(rows8_softmax)(const krow *g, v8si tmask, const float *const z[8],
                             const int64_t target[8], float scale, float *const grad[8],
                             double loss[8])
{
    v8sf fin = vset1(0.0f); /* unused: counted rows are finite */
    float mx[8];
    const v8sf rest = KFN(rest8)(g, tmask, z, grad, mx, &fin);
    float inv[8], lp[8];
    vstore(inv, vset1(1.0f) / (vset1(1.0f) + rest));
    vstore(lp, KFN(vlog1p)(rest));
    for (int r = 0; r < 8; r++) {
        if (grad[r])
            KFN(grad_finish)(g, grad[r], target[r], inv[r], scale);
        loss[r] = ((double)mx[r] - (double)z[r][target[r]]) + (double)lp[r];
    }
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

KATTR static void KFN(rows8)(const mbx_kparams *kp, const float *const z[8],
                             const int64_t target[8], float scale, float *const grad[8],
                             double loss[8])
{
    if (kp->kind != MBX_CONF_SOFTMAX) {
        for (int r = 0; r < 8; r++)
            loss[r] = KFN(row)(kp, z[r], target[r], scale, grad[r]);
        return;
    }
    krow g;
    krow_init(&g, kp->num_classes);
    KFN(rows8_softmax)(&g, KFN(tail_mask)(&g), z, target, scale, grad, loss);
}


/* ------------------------------------------------------------------- IoU */

/*
 * Exactness of the pruning below.  The anchors' and GTs' coordinates are
 * doubles and every IoU is computed as torchvision's box_iou:
 * w = max(min(x2) - max(x1), 0), likewise h, inter = w h, union = (area_gt +
 * area_anchor) - inter, iou = inter / union.  Rounding is monotonic, so
 * an anchor's computed inter is at most the same computation over the
 * bounding box of its block or superblock (I), and at most either box's
 * computed area; the bounds (group_bound) and the IoUs they bound are each
 * within a few roundings (< 2^-50 relative) of the real expressions.  A
 * bound v is therefore "out of reach" of a target t only when
 * v < t (1 - 2^-40): comfortably beyond any rounding, so no block holding
 * an IoU that reaches t (ties included) is ever skipped.
 */
#ifndef MBX_IOU_SLACK
#define MBX_IOU_SLACK (1.0 - 0x1p-40)
#endif

/*
 * The anchor columns, the group bounds and one GT box in registers: stores
 * through the outputs could alias the structs, so the loops below read them
 * once, here.
 */
typedef struct KFN(iou_ctx) {
    const double *x1, *y1, *x2, *y2, *area;
    mbx_bound_cols blocks, supers;
    v4df vx1, vy1, vx2, vy2, varea;
} KFN(iou_ctx);

KINL void KFN(iou_ctx_init)(KFN(iou_ctx) *c, const mbx_anchor_cols *an, const mbx_gt_box *gt)
{
    c->x1 = an->x1;
    c->y1 = an->y1;
    c->x2 = an->x2;
    c->y2 = an->y2;
    c->area = an->area;
    c->blocks = an->blocks;
    c->supers = an->supers;
    c->vx1 = vset1d(gt->x1);
    c->vy1 = vset1d(gt->y1);
    c->vx2 = vset1d(gt->x2);
    c->vy2 = vset1d(gt->y2);
    c->varea = vset1d(gt->area);
}

/*
 * Intersection and union of 4 anchors from a with the GT as torchvision's
 * box_iou: wh = clamp(rb - lt, 0), inter = w h, union = area_gt +
 * area_anchor - inter.
 */
KINL void KFN(inter4_all)(const KFN(iou_ctx) *c, int64_t a, v4df *inter, v4df *uni)
{
    v4df w = vmind(vloadd(c->x2 + a), c->vx2) - vmaxd(vloadd(c->x1 + a), c->vx1);
    v4df h = vmind(vloadd(c->y2 + a), c->vy2) - vmaxd(vloadd(c->y1 + a), c->vy1);
    w = vmaxd(w, vset1d(0.0));
    h = vmaxd(h, vset1d(0.0));
    *inter = w * h;
    *uni = (c->varea + vloadd(c->area + a)) - *inter;
}

/*
 * For the 4 groups of anchors from k of g (blocks or superblocks): *meets
 * = the GT's box overlaps the group's bounds with a positive area (no
 * anchor of the others intersects it), and an upper bound of the GT's IoU
 * with any anchor of the group as the quotient *num / *den.  An anchor's
 * overlap with the GT is at most the bounds' overlap along each axis and
 * at most the group's largest width and height: I, their product.  An
 * anchor of area s has inter <= m = min(I, s, area_gt) and so IoU <= m /
 * (area_gt + s - m), which grows with s up to s = min(I, area_gt) and falls
 * beyond: its largest value over the group's areas [amin, amax] is at s =
 * that point clamped to the range.  den >= area_gt > 0.  A superblock's
 * bound is at least its blocks'.
 */
KINL void KFN(group_bound)(const KFN(iou_ctx) *c, const mbx_bound_cols *g, int64_t k,
                           v4di *meets, v4df *num, v4df *den)
{
    v4df w = vmind(vloadd(g->x2 + k), c->vx2) - vmaxd(vloadd(g->x1 + k), c->vx1);
    v4df h = vmind(vloadd(g->y2 + k), c->vy2) - vmaxd(vloadd(g->y1 + k), c->vy1);
    w = vmind(vmaxd(w, vset1d(0.0)), vloadd(g->wmax + k));
    h = vmind(vmaxd(h, vset1d(0.0)), vloadd(g->hmax + k));
    const v4df I = w * h;
    *meets = I > vset1d(0.0);
    const v4df c0 = vmind(I, c->varea);
    const v4df s = vmind(vmaxd(c0, vloadd(g->amin + k)), vloadd(g->amax + k));
    const v4df m = vmind(c0, s);
    *num = m;
    *den = (c->varea + s) - m;
}

/*
 * One GT's pass over the anchors' groups: writes to cand[] the blocks its
 * box meets whose IoU bound is in reach of lo but not of hi (hi > 1
 * includes them all: no bound reaches above 1 by the slack), their bounds
 * to cub[] unless it is NULL, and returns their number.  Only the blocks
 * of superblocks whose bound reaches lo are looked at.
 */
KINL int64_t KFN(gt_scan)(const KFN(iou_ctx) *c, int64_t nsv, double lo, double hi,
                          int32_t *cand, double *cub)
{
    /* The bounds against lo and hi without dividing (the slack covers the roundings). */
    const v4df vlo = vset1d(lo * MBX_IOU_SLACK);
    const v4df vhi = vset1d(hi > 1.0 ? 2.0 : hi * MBX_IOU_SLACK);
    int64_t nc = 0;
    for (int64_t sb = 0; sb < nsv; sb += 4) {
        v4di smeets;
        v4df snum, sden;
        KFN(group_bound)(c, &c->supers, sb, &smeets, &snum, &sden);
        const v4di shit = smeets & (snum >= vlo * sden);
        if (!KANY4(shit))
            continue;
        for (int sl = 0; sl < 4; sl++) {
            if (!shit[sl])
                continue;
            const int64_t b0 = (sb + sl) * MBX_SUPER_BLOCK;
            for (int64_t blk = b0; blk < b0 + MBX_SUPER_BLOCK; blk += 4) {
                v4di meets;
                v4df num, den;
                KFN(group_bound)(c, &c->blocks, blk, &meets, &num, &den);
                const v4di hit = meets & (num >= vlo * den) & (num < vhi * den);
                if (!KANY4(hit))
                    continue;
                const v4df ub = cub ? num / den : num;
                for (int l = 0; l < 4; l++) { /* nc <= blk + l: within the arrays */
                    cand[nc] = (int32_t)(blk + l);
                    if (cub)
                        cub[nc] = ub[l];
                    nc -= hit[l]; /* lanes are 0 or -1 */
                }
            }
        }
    }
    return nc;
}

/*
 * Folds the lanes of anchors a..a+3 that need[] marks and that are free
 * (taken NULL, or taken[a + l] == 0) into (*best, *arg), the largest IoU
 * so far and the lowest anchor reaching it: a larger IoU, or an equal one
 * at a lower anchor, replaces them.
 */
KINL void KFN(fold_best4)(v4di need, v4df iou, int64_t a, const uint8_t *taken, double *best,
                          int64_t *arg)
{
    for (int l = 0; l < 4; l++) {
        /* Padding anchors have inter 0: never needed, their taken[] never read. */
        if (!need[l] || (taken && taken[a + l]))
            continue;
        if (iou[l] > *best || (iou[l] == *best && a + l < *arg)) {
            *best = iou[l];
            *arg = a + l;
        }
    }
}

/*
 * Folds the free anchors (taken NULL, or taken[a] == 0) of block blk into
 * (*best, *arg), the largest IoU with the GT so far and the lowest anchor
 * reaching it: a larger IoU, or an equal one at a lower anchor, replaces
 * them.  Lanes that cannot reach *best are not divided
 * (inter >= best union (1 - 2^-50) holds for every lane with
 * fl(inter / union) >= best).
 */
KINL void KFN(block_best)(const KFN(iou_ctx) *c, int64_t blk, const uint8_t *taken,
                          double *best, int64_t *arg)
{
    const v4df shrink = vset1d(1.0 - 0x1p-50);
    const int64_t a0 = blk * MBX_ANCHOR_BLOCK;
    for (int v = 0; v < MBX_ANCHOR_BLOCK / 4; v++) {
        const int64_t a = a0 + 4 * v;
        v4df inter, uni;
        KFN(inter4_all)(c, a, &inter, &uni);
        const v4di need = (inter > vset1d(0.0)) & (inter >= vset1d(*best) * uni * shrink);
        if (KANY4(need))
            KFN(fold_best4)(need, inter / uni, a, taken, best, arg);
    }
}

/* Restores the max-heap order of cub[] (cand[] alongside) below entry i of n. */
KINL void KFN(heap_down)(int32_t *cand, double *cub, int64_t n, int64_t i)
{
    const double u = cub[i];
    const int32_t blk = cand[i];
    for (;;) {
        int64_t ch = 2 * i + 1;
        if (ch >= n)
            break;
        if (ch + 1 < n && cub[ch + 1] > cub[ch])
            ch++;
        if (!(cub[ch] > u))
            break;
        cub[i] = cub[ch];
        cand[i] = cand[ch];
        i = ch;
    }
    cub[i] = u;
    cand[i] = blk;
}

/*
 * Completes (*best, *arg) (as block_best) over the nc candidate blocks
 * cand[] with bounds cub[] (both reordered), largest bound first, until
 * the largest bound left is out of reach of the best so far.
 */
KINL void KFN(gt_search)(const KFN(iou_ctx) *c, const uint8_t *taken, int32_t *cand,
                         double *cub, int64_t nc, double *best, int64_t *arg)
{
    for (int64_t i = nc / 2 - 1; i >= 0; i--)
        KFN(heap_down)(cand, cub, nc, i);
    while (nc > 0 && cub[0] >= *best * MBX_IOU_SLACK) {
        const int64_t blk = cand[0];
        nc--;
        cand[0] = cand[nc];
        cub[0] = cub[nc];
        KFN(heap_down)(cand, cub, nc, 0);
        KFN(block_best)(c, blk, taken, best, arg);
    }
}

/*
 * Completes (*best, *arg) over the blocks not yet searched, exactly, after
 * the blocks whose bound reaches t0 were: while the best is below the
 * bounds searched so far, the blocks whose bound is in [lo, hi), hi the
 * last lo, largest bound first, with lo a quarter of hi (few blocks at a
 * time) or, once that is at or below the best (or tiny), the best itself.
 * Blocks left out have bounds below lo <= best: out of reach.
 */
KINL void KFN(gt_rest)(const KFN(iou_ctx) *c, int64_t nsv, double t0, const uint8_t *taken,
                       const mbx_iou_work *ws, double *best, int64_t *arg)
{
    double hi = t0;
    while (*best < hi) {
        double lo = 0.25 * hi;
        if (lo <= *best || lo < 0x1p-10)
            lo = *best;
        const int64_t nc = KFN(gt_scan)(c, nsv, lo, hi, ws->cand, ws->cub);
        KFN(gt_search)(c, taken, ws->cand, ws->cub, nc, best, arg);
        hi = lo;
    }
}

/*
 * Block blk for GT index gidx in the image pass's step 1: each anchor's
 * (best[], best_gt[]) takes the GT's IoU where it reaches floor and beats
 * the anchor's best (strictly: GTs come in increasing order, so the first
 * reaching the maximum stays), and the GT's best so far is kept lane by
 * lane in (*gb, *ga): lane l the largest IoU of the anchors 4i + l seen and
 * the first reaching it (blocks come in increasing order, so strictly
 * larger replaces), gt_lanes_best folding the lanes at the end.  Only lanes
 * that may reach floor or the gate, the largest lane so far, count (as in
 * block_best): a lane below the gate cannot hold the GT's best, and a tie
 * with it still passes.  Every lane is divided, without branches on the
 * needs, which the lanes make unpredictable.
 */
KINL void KFN(block_both)(const KFN(iou_ctx) *c, int64_t blk, v4df vfloor, v4di gidx,
                          double *best, int64_t *best_gt, v4df *gb, v4di *ga)
{
    const v4df shrink = vset1d(1.0 - 0x1p-50);
    v4df lb = *gb;
    v4di la = *ga;
    /* No NaN here (IoUs and zeros): plain comparisons, not libm's fmax. */
    const double g01 = lb[0] > lb[1] ? lb[0] : lb[1], g23 = lb[2] > lb[3] ? lb[2] : lb[3];
    const v4df vgate = vset1d(g01 > g23 ? g01 : g23);
    const int64_t a0 = blk * MBX_ANCHOR_BLOCK;
    for (int v = 0; v < MBX_ANCHOR_BLOCK / 4; v++) {
        const int64_t a = a0 + 4 * v;
        v4df inter, uni;
        KFN(inter4_all)(c, a, &inter, &uni);
        const v4di pos = inter > vset1d(0.0);
        const v4df us = uni * shrink;
        const v4di need_a = pos & (inter >= vfloor * us);
        const v4di need_g = pos & (inter >= vgate * us);
        const v4df iou = inter / uni;
        const v4df b = vloadd(best + a);
        const v4di upa = need_a & (iou > b);
        vstored(best + a, vblendd(upa, iou, b));
        vstorel(best_gt + a, vblendl(upa, gidx, vloadl(best_gt + a)));
        const v4di up = need_g & (iou > lb);
        lb = vblendd(up, iou, lb);
        const v4di lanes = vset1l(a) + (v4di){0, 1, 2, 3};
        la = vblendl(up, lanes, la);
    }
    *gb = lb;
    *ga = la;
}

/*
 * The GT's best of block_both's lanes: the largest IoU and the lowest
 * anchor reaching it (0 and anchor 0 when no lane saw an overlap), as
 * block_best's sequential fold would have found.
 */
KINL void KFN(gt_lanes_best)(v4df gb, v4di ga, double *gbest, int64_t *garg)
{
    double b = gb[0];
    int64_t arg = ga[0];
    for (int l = 1; l < 4; l++)
        if (gb[l] > b || (gb[l] == b && ga[l] < arg)) {
            b = gb[l];
            arg = ga[l];
        }
    *gbest = b;
    *garg = arg;
}

/*
 * The image pass, in two steps.
 *  1. GT by GT: the blocks whose IoU bound reaches the floor (neg: an
 *     anchor's best IoU below it changes nothing, as neg <= thr) get the
 *     GT's IoUs, folded into each anchor's best and its first GT (ws->best,
 *     best_gt, kept only for the touched blocks) and into the GT's best
 *     anchor; when that best is below the floor, the other blocks whose
 *     bound can reach it are searched too (gt_rest).
 *  2. Anchors outside, a block of MBX_ANCHOR_BLOCK at a time: each anchor's
 *     best IoU and its GT (0 and gts[0].index where untouched) are
 *     classified at once (threshold step and ignore band); then, with rp,
 *     the block's rows of conf and loc are processed (rows_block), so the
 *     image's reads stream while the roles are decided.
 */
/*
 * p[0..n) = 0: whole 64-byte lines with streaming (non-temporal) stores,
 * the partial lines at the ends with ordinary ones, then a store fence that
 * orders the zeros before any later store.  The zeros go to memory without
 * each line being read first, and without pushing out of the caches the
 * rows the caller reads next.
 */
KATTR static void KFN(zero_stream)(float *p, int64_t n)
{
    float *const end = p + n;
    float *const last = (float *)((uintptr_t)end & ~(uintptr_t)63);
    while (p < end && ((uintptr_t)p & 63u) != 0)
        *p++ = 0.0f;
    for (; p + 16 <= last; p += 16) {
        KSTREAM8(p, vset1(0.0f));
        KSTREAM8(p + 8, vset1(0.0f));
    }
    while (p < end)
        *p++ = 0.0f;
    KSFENCE();
}

/*
 * The floor work of one row a whose row maximum is m: lb, the histogram
 * and the list (see mbx_rows_pass).  Returns the list's new length.
 */
KINL int64_t KFN(floor_row)(float m, const float *z, int64_t target, uint8_t role, int64_t a,
                            float *lb, uint32_t *hist, int32_t *list, int64_t n, float collect)
{
    float v = m - z[target];
    if (role == MBX_ROLE_NONE) {
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        hist[(bits >> 19) & (MBX_FLOOR_BINS - 1)]++; /* v >= 0: sign bit clear */
    } else {
        v = -INFINITY;
    }
    lb[a] = v;
    list[n] = (int32_t)a;
    return n + (v >= collect);
}

/*
 * The per-row work of the image pass for anchors [a0, a1), whose roles are
 * known: see mbx_rows_pass.  fin / lfin collect the sums of the conf and loc
 * values (see sum_finite).  Row maxima come eight rows at a time (max8): a
 * maximum is exact whatever the order of its comparisons, so lb is the same
 * as row by row.
 */
KINL void KFN(rows_block)(const krow *g, v8si tmask, mbx_rows_pass *rp, const uint8_t *role,
                          int64_t a0, int64_t a1, v8sf *fin, v8sf *lfin, int64_t *nl)
{
    /* Locals: stores through lb / hist / list could alias rp itself. */
    const float *const loc = rp->loc, *const conf = rp->conf;
    float *const lb = rp->lb;
    uint32_t *const hist = rp->hist;
    int32_t *const list = rp->list;
    const float collect = rp->collect;
    const int64_t target = rp->target, C = g->C;
    int64_t n = *nl;
    v8sf f = *fin;
    v8sf lf = *lfin;
    {
        /* Two rows per vector, two sums: no chain of dependent adds per row. */
        const float *p = loc + 4 * a0, *const end = loc + 4 * a1;
        v8sf lf2 = vset1(0.0f);
        for (; p + 16 <= end; p += 16) {
            lf += vload(p);
            lf2 += vload(p + 8);
        }
        for (; p + 8 <= end; p += 8)
            lf += vload(p);
        if (p < end) {
            v4sf l;
            memcpy(&l, p, sizeof l);
            lf2 += __builtin_shufflevector(l, (v4sf){0.0f, 0.0f, 0.0f, 0.0f}, 0, 1, 2, 3, 4, 5, 6,
                                           7);
        }
        lf += lf2;
    }
    if (rp->want_floor) {
        int64_t a = a0;
        for (; a + 8 <= a1; a += 8) {
            v8sf m[8];
            for (int r = 0; r < 8; r++)
                m[r] = KFN(row_lanes_max)(g, tmask, conf + (a + r) * C, &f);
            float mx[8];
            vstore(mx, KFN(max8)(m));
            for (int r = 0; r < 8; r++)
                n = KFN(floor_row)(mx[r], conf + (a + r) * C, target, role[a + r], a + r, lb,
                                   hist, list, n, collect);
        }
        for (; a < a1; a++) {
            const float *z = conf + a * C;
            const float m = KFN(row_max)(g, tmask, z, &f);
            n = KFN(floor_row)(m, z, target, role[a], a, lb, hist, list, n, collect);
        }
    } else {
        for (int64_t a = a0; a < a1; a++) {
            const float *z = conf + a * C;
            for (int64_t j = 0; j < g->nfull; j++)
                f += vload(z + 8 * j);
            if (g->tail)
                f += vand(tmask, KFN(tail_load)(g, z, 0.0f));
        }
    }
    *nl = n;
    *fin = f;
    *lfin = lf;
}

KATTR static int64_t KFN(iou_all)(const mbx_kparams *kp, const mbx_anchor_cols *an,
                                  const mbx_gt_box *gts, int64_t n, double thr, double neg,
                                  const mbx_iou_work *ws, double *gt_value, int64_t *gt_arg,
                                  int32_t *match, uint8_t *role, int64_t *eligible,
                                  mbx_rows_pass *rp)
{
    krow rg;
    krow_init(&rg, kp->num_classes);
    const v8si tmask = KFN(tail_mask)(&rg);
    v8sf fin = vset1(0.0f);
    v8sf lfin = vset1(0.0f);
    int64_t nl = 0;
    if (rp && rp->want_floor)
        memset(rp->hist, 0, MBX_FLOOR_BINS * sizeof *rp->hist);
    const double floor = neg; /* best IoUs below neg_overlap (<= thr) change nothing */
    const v4df vthr = vset1d(thr), vneg = vset1d(neg);
    const int64_t count = an->count;
    const int64_t nblk = an->apad / MBX_ANCHOR_BLOCK;
    v4di npos = vset1l(0), nelig = vset1l(0);
    const v4di first = vset1l(n > 0 ? gts[0].index : -1);

    /* Step 1: the anchors' best GTs where they reach the floor, and each GT's best anchor. */
    uint8_t *const touched = n > 0 ? ws->touched : NULL;
    double *const best = n > 0 ? ws->best : NULL;
    int64_t *const best_gt = n > 0 ? ws->best_gt : NULL;
    if (n > 0) {
        const int64_t nsv = mbx_super_count(an->apad);
        const v4df vfloor = vset1d(floor);
        memset(touched, 0, (size_t)nblk);
        for (int64_t g = 0; g < n; g++) {
            KFN(iou_ctx) c;
            KFN(iou_ctx_init)(&c, an, &gts[g]);
            const v4di gidx = vset1l(gts[g].index);
            const int64_t nc = KFN(gt_scan)(&c, nsv, floor, 2.0, ws->cand, NULL);
            v4df gb = vset1d(0.0);
            v4di ga = vset1l(0);
            for (int64_t i = 0; i < nc; i++) {
                const int64_t blk = ws->cand[i];
                if (!touched[blk]) {
                    touched[blk] = 1;
                    for (int v = 0; v < MBX_ANCHOR_BLOCK / 4; v++) {
                        vstored(best + blk * MBX_ANCHOR_BLOCK + 4 * v, vset1d(0.0));
                        vstorel(best_gt + blk * MBX_ANCHOR_BLOCK + 4 * v, first);
                    }
                }
                KFN(block_both)(&c, blk, vfloor, gidx, best, best_gt, &gb, &ga);
            }
            double gbest;
            int64_t garg;
            KFN(gt_lanes_best)(gb, ga, &gbest, &garg);
            KFN(gt_rest)(&c, nsv, floor, NULL, ws, &gbest, &garg);
            gt_value[g] = gbest;
            gt_arg[g] = garg;
        }
    }

    /* Step 2: block by block, the threshold step and the rows' work. */
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t a0 = blk * MBX_ANCHOR_BLOCK;
        v4df b[MBX_ANCHOR_BLOCK / 4];
        v4di bg[MBX_ANCHOR_BLOCK / 4];
        const int t = touched && touched[blk];
        for (int v = 0; v < MBX_ANCHOR_BLOCK / 4; v++) {
            b[v] = t ? vloadd(best + a0 + 4 * v) : vset1d(0.0);
            bg[v] = t ? vloadl(best_gt + a0 + 4 * v) : first;
        }
        /* Threshold step and ignore band; the bipartite step overrides later. */
        for (int v = 0; v < MBX_ANCHOR_BLOCK / 4; v++) {
            const int64_t a = a0 + 4 * v;
            const v4di pos = b[v] >= vthr;
            const v4di ign = ~pos & (b[v] >= vneg);
            const v4di m = vblendl(pos, bg[v], vset1l(-1));
            const v4di r = (pos & vset1l(MBX_ROLE_POSITIVE)) | (ign & vset1l(MBX_ROLE_IGNORED));
            if (a + 4 <= count) {
                const v4si m32 = __builtin_convertvector(m, v4si);
                const v4qu r8 = __builtin_convertvector(r, v4qu);
                memcpy(match + a, &m32, sizeof m32);
                memcpy(role + a, &r8, sizeof r8);
                npos -= pos;
                nelig -= ~(pos | ign);
            } else {
                for (int l = 0; l < 4 && a + l < count; l++) {
                    match[a + l] = (int32_t)m[l];
                    role[a + l] = (uint8_t)r[l];
                    npos[l] -= pos[l];
                    nelig[l] -= ~(pos[l] | ign[l]);
                }
            }
        }
        if (rp) {
            const int64_t a1 = a0 + MBX_ANCHOR_BLOCK < count ? a0 + MBX_ANCHOR_BLOCK : count;
            KFN(rows_block)(&rg, tmask, rp, role, a0, a1, &fin, &lfin, &nl);
        }
    }
    *eligible = nelig[0] + nelig[1] + nelig[2] + nelig[3];
    if (rp) {
        rp->nlist = nl;
        rp->flags = 0;
        if (KFN(sum_finite)(fin) || KFN(finite)(rp->conf, count * rg.C))
            rp->flags |= MBX_FLOOR_CONF_OK;
        if (KFN(sum_finite)(lfin) ||
            KFN(finite)(rp->loc, count * 4))
            rp->flags |= MBX_FLOOR_LOC_OK;
    }
    return npos[0] + npos[1] + npos[2] + npos[3];
}

KATTR static void KFN(best_anchor)(const mbx_anchor_cols *an, const mbx_gt_box *gt,
                                   const uint8_t *taken, double hint, const mbx_iou_work *ws,
                                   double *value, int64_t *arg)
{
    int64_t free0 = 0; /* the lowest free anchor */
    if (taken) {
        const uint8_t *p = memchr(taken, 0, (size_t)an->count);
        if (!p) {
            *value = -1.0;
            *arg = -1;
            return;
        }
        free0 = p - taken;
    }
    KFN(iou_ctx) c;
    KFN(iou_ctx_init)(&c, an, gt);
    double best = 0.0;
    int64_t a = free0;
    const int64_t nsv = mbx_super_count(an->apad);
    const int64_t nc = KFN(gt_scan)(&c, nsv, hint, 2.0, ws->cand, ws->cub);
    KFN(gt_search)(&c, taken, ws->cand, ws->cub, nc, &best, &a);
    KFN(gt_rest)(&c, nsv, hint, taken, ws, &best, &a);
    *value = best;
    *arg = a;
}
/*
 * Appends to hi[] the anchors a < A with v[a] >= top and to lo[] those with
 * bottom <= v[a] < top, in increasing order; returns the counts in *nhi and
 * *nlo.  Eight values per step, then one pass over the set bits.
 */
KATTR static void KFN(partition2)(const float *v, int64_t A, float top, float bottom,
                                  int32_t *hi, int64_t *nhi, int32_t *lo, int64_t *nlo)
{
    int64_t n1 = 0, n2 = 0, a = 0;
    for (; a + 8 <= A; a += 8) {
        const v8sf x = vload(v + a);
        const v8si m1 = x >= vset1(top);
        const v8si m2 = ~m1 & (x >= vset1(bottom));
        unsigned b1 = KMASK8(m1), b2 = KMASK8(m2);
        for (; b1; b1 &= b1 - 1)
            hi[n1++] = (int32_t)(a + __builtin_ctz(b1));
        for (; b2; b2 &= b2 - 1)
            lo[n2++] = (int32_t)(a + __builtin_ctz(b2));
    }
    for (; a < A; a++) {
        if (v[a] >= top)
            hi[n1++] = (int32_t)a;
        else if (v[a] >= bottom)
            lo[n2++] = (int32_t)a;
    }
    *nhi = n1;
    *nlo = n2;
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

#undef vloadd
#undef vstored
#undef vloadl
#undef vstorel
#undef vblendd
#undef vblendl
#undef vmaxd
#undef vmind
#undef vload
#undef vstore
#undef vblend
#undef vand
#undef vmax
#undef vabs
#undef vhmax
#undef vhsum
#undef vhsumi
#undef KCAT2
#undef KCAT
#undef KFN
#undef KINL
