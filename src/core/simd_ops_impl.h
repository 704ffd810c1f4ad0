/*
 * simd_ops_impl.h - the elementary vector helpers, included by
 * kernels_impl.h once per kernel variant (KFN names them, KINL gives them the
 * variant's target), so every call passes vectors between functions of the
 * same target.  The short names (vload, vblend, ...) are macros onto the
 * variant's functions, undefined again at the end of kernels_impl.h.
 */

KINL v4df KFN(vloadd_)(const double *p)
{
    return *(const v4df_unaligned *)p;
}

KINL void KFN(vstored_)(double *p, v4df v)
{
    *(v4df_unaligned *)p = v;
}

KINL v4di KFN(vloadl_)(const int64_t *p)
{
    return *(const v4di_unaligned *)p;
}

KINL void KFN(vstorel_)(int64_t *p, v4di v)
{
    *(v4di_unaligned *)p = v;
}

KINL v4df KFN(vblendd_)(v4di m, v4df a, v4df b)
{
    return (v4df)(((v4di)a & m) | ((v4di)b & ~m));
}

KINL v4di KFN(vblendl_)(v4di m, v4di a, v4di b)
{
    return (a & m) | (b & ~m);
}

KINL v4df KFN(vmaxd_)(v4df a, v4df b)
{
    return KFN(vblendd_)(a > b, a, b);
}

KINL v4df KFN(vmind_)(v4df a, v4df b)
{
    return KFN(vblendd_)(a < b, a, b);
}

KINL v8sf KFN(vload_)(const float *p)
{
    return *(const v8sf_unaligned *)p;
}

KINL void KFN(vstore_)(float *p, v8sf v)
{
    *(v8sf_unaligned *)p = v;
}

/* m ? a : b lane by lane (m lanes are all ones or all zeros). */
KINL v8sf KFN(vblend_)(v8si m, v8sf a, v8sf b)
{
    return (v8sf)(((v8si)a & m) | ((v8si)b & ~m));
}

/* a where m, else +0. */
KINL v8sf KFN(vand_)(v8si m, v8sf a)
{
    return (v8sf)((v8si)a & m);
}

/* a > b ? a : b, lane by lane (the semantics of x86 maxps). */
KINL v8sf KFN(vmax_)(v8sf a, v8sf b)
{
    return KFN(vblend_)(a > b, a, b);
}

KINL v8sf KFN(vabs_)(v8sf a)
{
    return (v8sf)((v8si)a & vset1i(0x7fffffff));
}

/* KVMAX4(a, b) is a > b ? a : b on 4 lanes: maxps where the variant has it. */
KINL float KFN(vhmax_)(v8sf v)
{
    v4sf a = __builtin_shufflevector(v, v, 0, 1, 2, 3);
    v4sf b = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    a = KVMAX4(a, b);
    b = __builtin_shufflevector(a, a, 2, 3, 0, 1);
    a = KVMAX4(a, b);
    return a[0] > a[1] ? a[0] : a[1];
}

/* Pairwise horizontal sum in a fixed order: ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)). */
KINL float KFN(vhsum_)(v8sf v)
{
    v4sf a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    a = a + __builtin_shufflevector(a, a, 2, 3, 0, 1);
    return a[0] + a[1];
}

KINL int32_t KFN(vhsumi_)(v8si v)
{
    v4si a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    a = a + __builtin_shufflevector(a, a, 2, 3, 0, 1);
    return a[0] + a[1];
}

#define vloadd(p) KFN(vloadd_)(p)
#define vstored(p, v) KFN(vstored_)(p, v)
#define vloadl(p) KFN(vloadl_)(p)
#define vstorel(p, v) KFN(vstorel_)(p, v)
#define vblendd(m, a, b) KFN(vblendd_)(m, a, b)
#define vblendl(m, a, b) KFN(vblendl_)(m, a, b)
#define vmaxd(a, b) KFN(vmaxd_)(a, b)
#define vmind(a, b) KFN(vmind_)(a, b)
#define vload(p) KFN(vload_)(p)
#define vstore(p, v) KFN(vstore_)(p, v)
#define vblend(m, a, b) KFN(vblend_)(m, a, b)
#define vand(m, a) KFN(vand_)(m, a)
#define vmax(a, b) KFN(vmax_)(a, b)
#define vabs(a) KFN(vabs_)(a)
#define vhmax(v) KFN(vhmax_)(v)
#define vhsum(v) KFN(vhsum_)(v)
#define vhsumi(v) KFN(vhsumi_)(v)
