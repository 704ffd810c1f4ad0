/*
 * copy.c - svc_copy_stream: SSE2 streaming stores on x86-64 (every x86-64
 * has SSE2), memcpy elsewhere and for small copies.
 */
#include "copy.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Below this, the copy stays in the caches: the JSON header, small bodies. */
#define STREAM_MIN 4096

void svc_copy_stream(void *dst, const void *src, size_t n)
{
#if defined(__SSE2__)
    if (n >= STREAM_MIN) {
        char *d = dst;
        const char *s = src;
        /* Ordinary stores up to d's first 16-byte boundary, streaming ones after. */
        const size_t head = (16 - ((uintptr_t)d & 15)) & 15;
        memcpy(d, s, head);
        d += head;
        s += head;
        n -= head;
        size_t i = 0;
        for (; i + 64 <= n; i += 64) {
            const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
            const __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
            const __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
            _mm_stream_si128((__m128i *)(void *)(d + i), a);
            _mm_stream_si128((__m128i *)(void *)(d + i + 16), b);
            _mm_stream_si128((__m128i *)(void *)(d + i + 32), c);
            _mm_stream_si128((__m128i *)(void *)(d + i + 48), e);
        }
        memcpy(d + i, s + i, n - i);
        _mm_sfence();
        return;
    }
#endif
    memcpy(dst, src, n);
}
