/*
 * simd.h - portable 8 x float32 and 4 x float64 vectors (GCC/clang vector
 * extensions) and their elementary helpers (private header).
 *
 * The functions here are always inlined, so the same source compiles to SSE2
 * in the generic kernels and to AVX2 in the x86-64-v3 kernels (kernels.c
 * includes kernels_impl.h twice; the vector exp/log live in vmath_impl.h,
 * built per variant so the AVX2 one can use FMA).
 */
#ifndef MBX_CORE_SIMD_H
#define MBX_CORE_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
/* Passing 32-byte vectors between always-inline helpers: no ABI is involved. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));
typedef uint32_t v8su __attribute__((vector_size(32)));
typedef float v8sf_unaligned __attribute__((vector_size(32), aligned(4), __may_alias__));

typedef double v4df __attribute__((vector_size(32)));
typedef int64_t v4di __attribute__((vector_size(32)));
typedef double v4df_unaligned __attribute__((vector_size(32), aligned(8), __may_alias__));
typedef int64_t v4di_unaligned __attribute__((vector_size(32), aligned(8), __may_alias__));

#define MBX_INLINE static inline __attribute__((always_inline))

#define vset1d(s) ((v4df){(s), (s), (s), (s)})
#define vset1l(s) ((v4di){(s), (s), (s), (s)})

MBX_INLINE v4df vloadd(const double *p)
{
    return *(const v4df_unaligned *)p;
}

MBX_INLINE void vstored(double *p, v4df v)
{
    *(v4df_unaligned *)p = v;
}

MBX_INLINE v4di vloadl(const int64_t *p)
{
    return *(const v4di_unaligned *)p;
}

MBX_INLINE void vstorel(int64_t *p, v4di v)
{
    *(v4di_unaligned *)p = v;
}

MBX_INLINE v4df vblendd(v4di m, v4df a, v4df b)
{
    return (v4df)(((v4di)a & m) | ((v4di)b & ~m));
}

MBX_INLINE v4di vblendl(v4di m, v4di a, v4di b)
{
    return (a & m) | (b & ~m);
}

MBX_INLINE v4df vmaxd(v4df a, v4df b)
{
    return vblendd(a > b, a, b);
}

MBX_INLINE v4df vmind(v4df a, v4df b)
{
    return vblendd(a < b, a, b);
}

/*
 * Broadcasts are macros, not functions: a vector constructor in an inline
 * function compiled for the generic target is lowered there lane by lane,
 * even after inlining into an AVX2 function.
 */
#define vset1(s) ((v8sf){(s), (s), (s), (s), (s), (s), (s), (s)})
#define vset1i(s) ((v8si){(s), (s), (s), (s), (s), (s), (s), (s)})

MBX_INLINE v8sf vload(const float *p)
{
    return *(const v8sf_unaligned *)p;
}

MBX_INLINE void vstore(float *p, v8sf v)
{
    *(v8sf_unaligned *)p = v;
}

/* m ? a : b lane by lane (m lanes are all ones or all zeros). */
MBX_INLINE v8sf vblend(v8si m, v8sf a, v8sf b)
{
    return (v8sf)(((v8si)a & m) | ((v8si)b & ~m));
}

/* a where m, else +0. */
MBX_INLINE v8sf vand(v8si m, v8sf a)
{
    return (v8sf)((v8si)a & m);
}

MBX_INLINE v8sf vmax(v8sf a, v8sf b)
{
    return vblend(a > b, a, b);
}

MBX_INLINE v8sf vabs(v8sf a)
{
    return (v8sf)((v8si)a & vset1i(0x7fffffff));
}

typedef float v4sf __attribute__((vector_size(16)));
typedef int32_t v4si __attribute__((vector_size(16)));

MBX_INLINE float vhmax(v8sf v)
{
    v4sf a = __builtin_shufflevector(v, v, 0, 1, 2, 3);
    v4sf b = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    a = (v4sf)(((v4si)a & (a > b)) | ((v4si)b & ~(a > b)));
    b = __builtin_shufflevector(a, a, 2, 3, 0, 1);
    a = (v4sf)(((v4si)a & (a > b)) | ((v4si)b & ~(a > b)));
    return a[0] > a[1] ? a[0] : a[1];
}

/* Pairwise horizontal sum in a fixed order: ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)). */
MBX_INLINE float vhsum(v8sf v)
{
    v4sf a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    a = a + __builtin_shufflevector(a, a, 2, 3, 0, 1);
    return a[0] + a[1];
}

MBX_INLINE int32_t vhsumi(v8si v)
{
    v4si a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
    a = a + __builtin_shufflevector(a, a, 2, 3, 0, 1);
    return a[0] + a[1];
}

#endif
