/*
 * half.c - FP16 and BF16 to and from float32, and little-endian bulk loads
 * and stores of tensors for the binary tensor extension.  The scalar code:
 * branch-free bit manipulation (no F16C needed) that the compiler vectorizes, relying only
 * on IEEE float32 arithmetic in the default rounding mode; widening is exact.
 * Never allocates; reads and writes exactly n elements.
 *
 * On x86 the bulk loops of FP16 and BF16 take eight elements at a time with
 * F16C (vcvtph2ps, vcvtps2ph) and AVX2 when the CPU has both, chosen at run
 * time; the rest of a loop (fewer than eight) and every other CPU use the
 * scalar code.  The two paths give the same bits for every input, which
 * tests/codec/test_oip_half.c checks exhaustively with mbx_half_set_simd(),
 * in the default floating-point environment (no flush-to-zero or
 * denormals-are-zero), which the scalar narrowing already assumes.
 */
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "half.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MBX_HALF_X86 1
#include <cpuid.h>
#define MBX_TARGET_F16C __attribute__((target("f16c,avx2")))
#else
#define MBX_HALF_X86 0
#endif

/* 1 unless a test turned the SIMD paths off; relaxed: a flag, not a barrier. */
static atomic_int simd_allowed = 1;

void mbx_half_set_simd(int enabled)
{
    atomic_store_explicit(&simd_allowed, enabled != 0, memory_order_relaxed);
}

#if MBX_HALF_X86
/*
 * F16C from CPUID leaf 1 (clang 14's __builtin_cpu_supports does not know
 * "f16c"), asked once: CPUID traps to the hypervisor in a virtual machine.
 * AVX2 from the compiler's runtime, which also checks that the OS saves
 * the AVX registers (F16C needs that too).
 */
static atomic_int cpu_simd = -1; /* -1 not asked yet, else 0 or 1 */

static int cpu_has_simd(void)
{
    int v = atomic_load_explicit(&cpu_simd, memory_order_relaxed);
    if (v < 0) {
        unsigned a = 0, b = 0, c = 0, d = 0;
        v = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0 &&
            __builtin_cpu_supports("avx2");
        atomic_store_explicit(&cpu_simd, v, memory_order_relaxed);
    }
    return v;
}
#endif

int mbx_half_simd_active(void)
{
#if MBX_HALF_X86
    return atomic_load_explicit(&simd_allowed, memory_order_relaxed) && cpu_has_simd();
#else
    return 0;
#endif
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

int mbx_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

void mbx_f32_from_le(float *v, int64_t n)
{
    if (mbx_host_is_little_endian())
        return;
    for (int64_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, v + k, 4);
        u = (u >> 24) | ((u >> 8) & 0xff00u) | ((u << 8) & 0xff0000u) | (u << 24);
        memcpy(v + k, &u, 4);
    }
}


static inline uint32_t f16_to_f32_bits(uint32_t h);

float mbx_f16_to_f32(uint16_t h)
{
    return f32_from_bits(f16_to_f32_bits(h));
}

float mbx_bf16_to_f32(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

/*
 * Branch-free FP32 -> FP16 bits, round to nearest even (vectorizes in the
 * bulk loop).  Normal halves: rebias and round the 13 dropped bits in
 * integers.  Subnormal halves (|f| < 2^-14): |f| + 0.5 rounds |f| to a
 * multiple of 2^-24, the half's unit, in the FPU's round-to-nearest-even
 * mode (C's default; nothing here changes it).  >= 65520 becomes infinity,
 * NaN a quiet NaN keeping the top of its payload.
 */
static inline uint32_t f32_to_f16_bits(uint32_t u)
{
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t v = a - (112u << 23);
    uint32_t q = v >> 13, rem = v & 0x1fffu;
    q += (uint32_t)(rem > 0x1000u) | ((uint32_t)(rem == 0x1000u) & q);
    uint32_t sub = f32_bits(f32_from_bits(a) + 0.5f) - 0x3f000000u;
    uint32_t m_sub = 0u - (uint32_t)(a < 0x38800000u);
    uint32_t m_inf = 0u - (uint32_t)(a >= 0x47800000u);
    uint32_t m_nan = 0u - (uint32_t)(a > 0x7f800000u);
    uint32_t r = (q & ~m_sub) | (sub & m_sub);
    r = (r & ~m_inf) | (0x7c00u & m_inf);
    r = (r & ~m_nan) | ((0x7e00u | ((a >> 13) & 0x3ffu)) & m_nan);
    return sign | r;
}

uint16_t mbx_f32_to_f16(float f)
{
    return (uint16_t)f32_to_f16_bits(f32_bits(f));
}

static inline uint32_t f32_to_bf16_bits(uint32_t u)
{
    uint32_t m_nan = 0u - (uint32_t)((u & 0x7fffffffu) > 0x7f800000u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (r & ~m_nan) | (((u >> 16) | 0x0040u) & m_nan); /* NaN: quiet */
}

uint16_t mbx_f32_to_bf16(float f)
{
    return (uint16_t)f32_to_bf16_bits(f32_bits(f));
}

/* ------------------------------------------------------------ bulk */

static uint16_t load_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t load_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const unsigned char *p)
{
    return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

/*
 * Branch-free exact FP16 -> FP32 bits, so the bulk loops vectorize: a normal
 * half has its exponent and mantissa shifted into place and rebiased by an
 * exact multiplication by 2^-112 (infinity and NaN stay so); a subnormal or
 * zero is (0.5 + m * 2^-24) - 0.5, also exact.
 */
static inline uint32_t f16_to_f32_bits(uint32_t h)
{
    uint32_t w = h << 16, sign = w & 0x80000000u, two_w = w + w;
    uint32_t norm = f32_bits(f32_from_bits((two_w >> 4) + (0xe0u << 23)) * 0x1p-112f);
    uint32_t den = f32_bits(f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f);
    uint32_t small = 0u - (uint32_t)(two_w < (1u << 27)); /* all ones for zero / subnormal */
    return sign | (den & small) | (norm & ~small);
}

/* Loops run in chunks: convert a chunk, then look for a bad element only if one was seen. */
#define CHUNK 512

#if MBX_HALF_X86
/*
 * The SIMD heads of the loops: each converts the first m - m % 8 elements
 * of c (any alignment) into dst and returns how many it did; the bad flag
 * is set when one of them has an all-ones exponent (infinity or NaN), the
 * same test the scalar loop makes, so the rescan below finds it.
 */
MBX_TARGET_F16C static size_t f16_head_f16c(const unsigned char *c, size_t m, float *dst,
                                            uint32_t *bad)
{
    const __m128i e = _mm_set1_epi16(0x7c00);
    __m128i any = _mm_setzero_si128();
    size_t k = 0;
    for (; k + 8 <= m; k += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(c + 2 * k));
        any = _mm_or_si128(any, _mm_cmpeq_epi16(_mm_and_si128(h, e), e));
        _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(h));
    }
    *bad |= (uint32_t)!_mm_testz_si128(any, any);
    return k;
}

MBX_TARGET_F16C static size_t bf16_head_avx2(const unsigned char *c, size_t m, float *dst,
                                             uint32_t *bad)
{
    const __m128i e = _mm_set1_epi16(0x7f80);
    __m128i any = _mm_setzero_si128();
    size_t k = 0;
    for (; k + 8 <= m; k += 8) {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(c + 2 * k));
        any = _mm_or_si128(any, _mm_cmpeq_epi16(_mm_and_si128(b, e), e));
        __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16);
        _mm256_storeu_si256((__m256i *)(void *)(dst + k), u);
    }
    *bad |= (uint32_t)!_mm_testz_si128(any, any);
    return k;
}

/* FP32 -> FP16, eight at a time: vcvtps2ph with round to nearest even, as the scalar code. */
MBX_TARGET_F16C static size_t f16_store_f16c(const float *src, size_t n, unsigned char *d)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(void *)(d + 2 * i), h);
    }
    return i;
}

/* FP32 -> BF16, eight at a time: f32_to_bf16_bits() in 32-bit lanes, then packed. */
MBX_TARGET_F16C static size_t bf16_store_avx2(const float *src, size_t n, unsigned char *d)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i round = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    const __m256i quiet = _mm256_set1_epi32(0x0040);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        __m256i hi = _mm256_srli_epi32(u, 16);
        __m256i r = _mm256_srli_epi32(
            _mm256_add_epi32(_mm256_add_epi32(u, round), _mm256_and_si256(hi, one)), 16);
        /* Signed compare is right: both sides are in [0, 2^31). */
        __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
        /* Every lane is in [0, 0xffff]: packus's saturation never applies. */
        __m128i b = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(void *)(d + 2 * i), b);
    }
    return i;
}
#endif

size_t mbx_load_f16(const void *src, size_t n, float *dst)
{
    const unsigned char *s = src;
    const int simd = mbx_half_simd_active();
    (void)simd; /* unused without the x86 paths */
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        const unsigned char *c = s + 2 * i;
        uint32_t bad = 0;
        size_t k0 = 0;
#if MBX_HALF_X86
        if (simd)
            k0 = f16_head_f16c(c, m, dst + i, &bad);
#endif
        for (size_t k = k0; k < m; k++) {
            uint32_t h = load_u16(c + 2 * k);
            bad |= (h & 0x7c00u) == 0x7c00u;
            uint32_t u = f16_to_f32_bits(h);
            memcpy(dst + i + k, &u, 4);
        }
        if (bad)
            for (size_t k = 0; k < m; k++)
                if ((load_u16(c + 2 * k) & 0x7c00u) == 0x7c00u)
                    return i + k;
    }
    return n;
}

size_t mbx_load_bf16(const void *src, size_t n, float *dst)
{
    const unsigned char *s = src;
    const int simd = mbx_half_simd_active();
    (void)simd; /* unused without the x86 paths */
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        const unsigned char *c = s + 2 * i;
        uint32_t bad = 0;
        size_t k0 = 0;
#if MBX_HALF_X86
        if (simd)
            k0 = bf16_head_avx2(c, m, dst + i, &bad);
#endif
        for (size_t k = k0; k < m; k++) {
            uint32_t b = load_u16(c + 2 * k);
            bad |= (b & 0x7f80u) == 0x7f80u;
            uint32_t u = b << 16;
            memcpy(dst + i + k, &u, 4);
        }
        if (bad)
            for (size_t k = 0; k < m; k++)
                if ((load_u16(c + 2 * k) & 0x7f80u) == 0x7f80u)
                    return i + k;
    }
    return n;
}

size_t mbx_load_f32(const void *src, size_t n, float *dst)
{
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        const unsigned char *c = s + 4 * i;
        uint32_t bad = 0;
        for (size_t k = 0; k < m; k++) {
            uint32_t u = load_u32(c + 4 * k);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
            memcpy(dst + i + k, &u, 4);
        }
        if (bad)
            for (size_t k = 0; k < m; k++)
                if ((load_u32(c + 4 * k) & 0x7f800000u) == 0x7f800000u)
                    return i + k;
    }
    return n;
}

size_t mbx_load_f64(const void *src, size_t n, float *dst)
{
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        uint64_t u = load_u64(s + 8 * i);
        double d;
        memcpy(&d, &u, sizeof d);
        /* Below this bound (FLT_MAX plus half an ulp) the conversion rounds to a finite float. */
        if (!(fabs(d) < 0x1.ffffffp127))
            return i;
        dst[i] = (float)d;
    }
    return n;
}

void mbx_store_f16(const float *src, size_t n, void *dst)
{
    unsigned char *d = dst;
    if (mbx_host_is_little_endian()) {
        size_t i0 = 0;
#if MBX_HALF_X86
        if (mbx_half_simd_active())
            i0 = f16_store_f16c(src, n, d);
#endif
        for (size_t i = i0; i < n; i++) {
            uint16_t h = (uint16_t)f32_to_f16_bits(f32_bits(src[i]));
            memcpy(d + 2 * i, &h, 2);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t h = f32_to_f16_bits(f32_bits(src[i]));
        d[2 * i] = (unsigned char)h;
        d[2 * i + 1] = (unsigned char)(h >> 8);
    }
}

void mbx_store_bf16(const float *src, size_t n, void *dst)
{
    unsigned char *d = dst;
    if (mbx_host_is_little_endian()) {
        size_t i0 = 0;
#if MBX_HALF_X86
        if (mbx_half_simd_active())
            i0 = bf16_store_avx2(src, n, d);
#endif
        for (size_t i = i0; i < n; i++) {
            uint16_t b = (uint16_t)f32_to_bf16_bits(f32_bits(src[i]));
            memcpy(d + 2 * i, &b, 2);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t b = f32_to_bf16_bits(f32_bits(src[i]));
        d[2 * i] = (unsigned char)b;
        d[2 * i + 1] = (unsigned char)(b >> 8);
    }
}

void mbx_store_f32(const float *src, size_t n, void *dst)
{
    unsigned char *d = dst;
    if (mbx_host_is_little_endian()) {
        memcpy(d, src, n * sizeof *src);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f32_bits(src[i]);
        d[4 * i] = (unsigned char)u;
        d[4 * i + 1] = (unsigned char)(u >> 8);
        d[4 * i + 2] = (unsigned char)(u >> 16);
        d[4 * i + 3] = (unsigned char)(u >> 24);
    }
}
