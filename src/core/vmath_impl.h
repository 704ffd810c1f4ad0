/*
 * vmath_impl.h - accurate vector e^x and ln(1 + x) (Cephes expf/logf
 * polynomials), included by kernels_impl.h once per kernel variant with KFN
 * (name suffix) and KFMA(a, b, c) = a * b + c (fused in the AVX2 variant).
 *
 * Accuracy, checked by tests/core/test_kernels.c against libm in double for
 * every variant: exp <= 2 ulp on [-87.3, 0] and exactly 1 at 0; log1p <= 2
 * ulp for x >= 0.
 */

#ifndef MBX_EXP_LO
#define MBX_EXP_LO (-87.33654f) /* e^MBX_EXP_LO ~ FLT_MIN */
#endif

/*
 * e^x for x <= 0, any x (including -inf): x = n ln2 + r, |r| <= ln2/2,
 * degree-5 polynomial, scaled by 2^n through the exponent bits.  Inputs below
 * MBX_EXP_LO give e^MBX_EXP_LO ~ 1.2e-38 instead of something smaller: an
 * absolute error under 1.2e-38 that the error bounds of the kernels include.
 */
KINL v8sf KFN(vexp_neg)(v8sf x)
{
    const v8sf magic = vset1(12582912.0f); /* 1.5 * 2^23: round to nearest */
    x = KVMAX(x, vset1(MBX_EXP_LO));
    v8sf t = KFMA(x, vset1(1.44269504088896341f), magic);
    v8sf n = t - magic;
    v8su ni = (v8su)t - (v8su)magic; /* n in two's complement, -126 <= n <= 127 */
    x = KFMA(n, vset1(-0.693359375f), x);
    x = KFMA(n, vset1(2.12194440e-4f), x);
    v8sf z = x * x;
    v8sf y = vset1(1.9875691500E-4f);
    y = KFMA(y, x, vset1(1.3981999507E-3f));
    y = KFMA(y, x, vset1(8.3334519073E-3f));
    y = KFMA(y, x, vset1(4.1665795894E-2f));
    y = KFMA(y, x, vset1(1.6666665459E-1f));
    y = KFMA(y, x, vset1(5.0000001201E-1f));
    y = KFMA(y, z, x) + vset1(1.0f);
    v8su scale = (ni + 127u) << 23;
    return y * (v8sf)scale;
}

/*
 * ln x for finite normal x > 0 (Cephes logf): x = m 2^e, m in [sqrt(1/2),
 * sqrt(2)), degree-9 polynomial in m - 1.
 */
KINL v8sf KFN(vlog)(v8sf x)
{
    v8si xi = (v8si)x;
    v8si e = ((xi >> 23) & vset1i(0xff)) - vset1i(126);
    v8sf m = (v8sf)((xi & vset1i(0x007fffff)) | vset1i(0x3f000000)); /* [0.5, 1) */
    v8si small = m < vset1(0.707106781186547524f);
    e = e + small;                       /* small lanes are -1 */
    m = m - vset1(1.0f) + vand(small, m); /* 2m - 1 or m - 1 */
    v8sf ef = __builtin_convertvector(e, v8sf);
    v8sf z = m * m;
    v8sf y = vset1(7.0376836292E-2f);
    y = KFMA(y, m, vset1(-1.1514610310E-1f));
    y = KFMA(y, m, vset1(1.1676998740E-1f));
    y = KFMA(y, m, vset1(-1.2420140846E-1f));
    y = KFMA(y, m, vset1(1.4249322787E-1f));
    y = KFMA(y, m, vset1(-1.6668057665E-1f));
    y = KFMA(y, m, vset1(2.0000714765E-1f));
    y = KFMA(y, m, vset1(-2.4999993993E-1f));
    y = KFMA(y, m, vset1(3.3333331174E-1f));
    y = y * m * z;
    y = KFMA(ef, vset1(-2.12194440e-4f), y);
    y = KFMA(vset1(-0.5f), z, y);
    v8sf r = m + y;
    return KFMA(ef, vset1(0.693359375f), r);
}

/*
 * ln(1 + x) for finite x >= 0: ln(u) with u = 1 + x rounded, corrected by
 * (x - (u - 1)) / u, the first-order term of the rounding error of u.
 */
KINL v8sf KFN(vlog1p)(v8sf x)
{
    v8sf u = vset1(1.0f) + x;
    v8sf c = (x - (u - vset1(1.0f))) / u;
    return KFN(vlog)(u) + c;
}
