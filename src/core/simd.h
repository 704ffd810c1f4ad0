/*
 * simd.h - the portable vector types of the kernels (GCC/clang vector
 * extensions: 8 x float32, 4 x float64 and their integer twins) and the
 * broadcast macros (private header).  The same kernel source compiles to
 * SSE2 in the generic build and to AVX2 in the x86-64-v3 one: kernels.c
 * includes kernels_impl.h twice, which includes the per-variant helpers
 * (simd_ops_impl.h) and the vector exp/log (vmath_impl.h).
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

typedef float v4sf __attribute__((vector_size(16)));
typedef int32_t v4si __attribute__((vector_size(16)));
typedef uint8_t v4qu __attribute__((vector_size(4)));

/*
 * Broadcasts are macros, not functions: a vector constructor in an inline
 * function compiled for the generic target is lowered there lane by lane,
 * even after inlining into an AVX2 function.  The helpers that take or
 * return vectors live in simd_ops_impl.h, built per kernel variant: clang
 * refuses vector arguments between functions of different targets.
 */
#define vset1(s) ((v8sf){(s), (s), (s), (s), (s), (s), (s), (s)})
#define vset1i(s) ((v8si){(s), (s), (s), (s), (s), (s), (s), (s)})
#define vset1d(s) ((v4df){(s), (s), (s), (s)})
#define vset1l(s) ((v4di){(s), (s), (s), (s)})

#endif
