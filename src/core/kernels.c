/*
 * kernels.c - builds the fast classification kernels for each supported
 * instruction set from kernels_impl.h, picks one at context creation, and
 * holds the double-precision reference of the per-anchor loss that settles
 * the ranking of negatives.  Pure: no allocation, no state.
 */
#include <float.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MBX_HAVE_V3 1
#endif

/* Generic build: the vectors lower to SSE2 (or the target's own SIMD). */
#define KSUF generic
#define KATTR
#define KFMA(a, b, c) ((a) * (b) + (c))
#define KVMAX(a, b) vmax(a, b)
#define KVMAX4(a, b) ((v4sf)(((v4si)(a) & ((a) > (b))) | ((v4si)(b) & ~((a) > (b)))))
#define KANY4(m) any4_generic(m)
#define KMASK8(m) mask8_generic(m)
#if defined(__SSE2__)
#define KSTREAM8(p, v)                                                                     \
    do {                                                                                   \
        _mm_stream_ps((p), (__m128)__builtin_shufflevector((v), (v), 0, 1, 2, 3));         \
        _mm_stream_ps((p) + 4, (__m128)__builtin_shufflevector((v), (v), 4, 5, 6, 7));     \
    } while (0)
#define KSFENCE() _mm_sfence()
#else
#define KSTREAM8(p, v) vstore((p), (v))
#define KSFENCE() ((void)0)
#endif
static inline int any4_generic(v4di m)
{
    return (m[0] | m[1] | m[2] | m[3]) != 0;
}
/* Bit l set where lane l of m is set. */
static inline unsigned mask8_generic(v8si m)
{
    unsigned bits = 0;
    for (int l = 0; l < 8; l++)
        bits |= (unsigned)(m[l] & 1) << l;
    return bits;
}
#include "kernels_impl.h"
#undef KSUF
#undef KATTR
#undef KFMA
#undef KVMAX
#undef KVMAX4
#undef KANY4
#undef KMASK8
#undef KSTREAM8
#undef KSFENCE

#ifdef MBX_HAVE_V3
/* x86-64-v3 build: AVX2 with fused multiply-add in the polynomials. */
#define KSUF v3
#define KATTR __attribute__((target("avx2,fma")))
#define KFMA(a, b, c) ((v8sf)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(c)))
#define KVMAX(a, b) ((v8sf)_mm256_max_ps((__m256)(a), (__m256)(b))) /* = a > b ? a : b */
#define KVMAX4(a, b) ((v4sf)_mm_max_ps((__m128)(a), (__m128)(b)))
#define KANY4(m) (!_mm256_testz_si256((__m256i)(m), (__m256i)(m)))
#define KMASK8(m) ((unsigned)_mm256_movemask_ps((__m256)(m)))
#define KSTREAM8(p, v) _mm256_stream_ps((p), (__m256)(v))
#define KSFENCE() _mm_sfence()
#include "kernels_impl.h"
#undef KSUF
#undef KATTR
#undef KFMA
#undef KVMAX
#undef KVMAX4
#undef KANY4
#undef KMASK8
#undef KSTREAM8
#undef KSFENCE
#endif

void mbx_kernels_select(mbx_kernels *k, int force_generic)
{
    k->rank = rank_generic;
    k->rank_list = rank_list_generic;
    k->row = row_generic;
    k->rows8 = rows8_generic;
    k->finite = finite_generic;
    k->iou_all = iou_all_generic;
    k->best_anchor = best_anchor_generic;
    k->partition2 = partition2_generic;
    k->prune = prune_softmax_generic;
    k->exp_array = exp_array_generic;
    k->log1p_array = log1p_array_generic;
    k->zero_stream = zero_stream_generic;
    k->name = "generic";
#ifdef MBX_HAVE_V3
    if (!force_generic) {
        /* libgcc / compiler-rt fill the CPU model in a constructor: read-only here. */
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            k->rank = rank_v3;
            k->rank_list = rank_list_v3;
            k->row = row_v3;
            k->rows8 = rows8_v3;
            k->finite = finite_v3;
            k->iou_all = iou_all_v3;
            k->best_anchor = best_anchor_v3;
            k->partition2 = partition2_v3;
            k->prune = prune_softmax_v3;
            k->exp_array = exp_array_v3;
            k->log1p_array = log1p_array_v3;
            k->zero_stream = zero_stream_v3;
            k->name = "x86-64-v3";
        }
    }
#else
    (void)force_generic;
#endif
}

/* ------------------------------------------------ double-precision reference */

static double softplus(double x)
{
    return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
}

double mbx_row_loss_exact(const mbx_kparams *kp, const float *z, int64_t target)
{
    const int64_t C = kp->num_classes;
    double sum = 0.0;
    if (kp->kind == MBX_CONF_SOFTMAX) {
        int64_t im = 0;
        for (int64_t c = 1; c < C; c++)
            if (z[c] > z[im])
                im = c;
        const double m = z[im];
        for (int64_t c = 0; c < C; c++)
            if (c != im)
                sum += exp((double)z[c] - m);
        return (m - (double)z[target]) + log1p(sum);
    }
    for (int64_t c = 0; c < C; c++) {
        const double x = c == target ? -(double)z[c] : (double)z[c]; /* -u */
        if (kp->kind == MBX_CONF_SIGMOID) {
            sum += softplus(x);
        } else {
            const double at = c == target ? kp->focal_alpha : 1.0 - kp->focal_alpha;
            sum += at * softplus(x) * exp(-kp->focal_gamma * softplus(-x));
        }
    }
    return sum;
}

/*
 * Error bound of the ranking kernels, u = 2^-24.  Softmax: z_k - m rounds
 * with error <= u |z_k - m| <= 88u (smaller terms are dropped: each < 1.2e-38),
 * vexp <= 1 ulp, the float sum of C terms <= (C - 1)u relative, ln(1 + s)
 * passes s's relative error through at most unchanged plus its own ~1.2 ulp,
 * and m - z_t and the final sum add one rounding each: about (C + 95)u.
 * Sigmoid: each term ~5u, the sum (C - 1)u.  Focal: e^(-gamma softplus(u))
 * carries the relative error of its argument times the argument (<= 87.4,
 * beyond that the term is dropped), ~620u per term, plus the sum.  The
 * bounds below double these; tests/core/test_kernels.c checks them.
 */
void mbx_rank_bound(const mbx_kparams *kp, double *eps_rel, double *eps_abs)
{
    const double u = 0x1p-24;
    const double C = (double)kp->num_classes;
    switch (kp->kind) {
    case MBX_CONF_SIGMOID:
        *eps_rel = 2.0 * (C + 10.0) * u;
        *eps_abs = 1e-37 * C;
        break;
    case MBX_CONF_FOCAL:
        *eps_rel = 2.0 * (C + 640.0) * u;
        *eps_abs = 1e-35 * C;
        break;
    default:
        *eps_rel = 2.0 * (C + 100.0) * u;
        *eps_abs = 1e-37 * C;
        break;
    }
}
