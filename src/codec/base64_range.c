/*
 * base64_range.c - parts of one long base64 text, so that several workers
 * can each decode their own image's slice of a tensor.  A slice of bytes
 * [from, to) seldom starts or ends on a 3-byte group: it reads the one or
 * two groups it shares with its neighbours (reading is harmless).
 */
#include "codec_internal.h"

#include <string.h>

/*
 * Decodes group g (characters 4g..4g+3) of in[0..len) into out[0..3);
 * returns the bytes it holds (fewer than 3 only for a padded last group)
 * or -1 when the group is invalid or lies beyond the text.
 */
static int decode_group(const char *in, size_t len, size_t g, unsigned char out[3])
{
    size_t got = 0;
    if (g >= len / 4 ||
        mbx_base64_decode_part(in + 4 * g, 4, 4 * g, out, 3, &got, NULL) != 0)
        return -1;
    if (got < 3 && 4 * g + 4 < len)
        return -1; /* '=' padding before the end */
    return (int)got;
}

/* Copies bytes [from, to) of group g's decoding to dst; 0, or -1 when they are not there. */
static int copy_from_group(const char *in, size_t len, size_t g, size_t from, size_t to,
                           unsigned char *dst)
{
    unsigned char tmp[3];
    const int got = decode_group(in, len, g, tmp);
    if (got < 0 || to - 3 * g > (size_t)got)
        return -1;
    memcpy(dst, tmp + (from - 3 * g), to - from);
    return 0;
}

int mbx_base64_decode_range(const char *in, size_t len, size_t from, size_t n, void *out)
{
    unsigned char *dst = out;
    const size_t to = from + n;
    if (n == 0)
        return 0;
    const size_t first = (from + 2) / 3, end = to / 3; /* whole groups inside: [first, end) */
    if (first >= end) { /* within one group or across the boundary of two */
        const size_t g = from / 3, mid = (g + 1) * 3 < to ? (g + 1) * 3 : to;
        if (copy_from_group(in, len, g, from, mid, dst) != 0)
            return MBX_E_BAD_BASE64;
        if (mid < to && copy_from_group(in, len, g + 1, mid, to, dst + (mid - from)) != 0)
            return MBX_E_BAD_BASE64;
        return 0;
    }
    if (from % 3 != 0 && copy_from_group(in, len, first - 1, from, 3 * first, dst) != 0)
        return MBX_E_BAD_BASE64;
    if (4 * end > len)
        return MBX_E_BAD_BASE64;
    size_t got = 0;
    if (mbx_base64_decode_part(in + 4 * first, 4 * (end - first), 4 * first,
                               dst + (3 * first - from), 3 * (end - first), &got, NULL) != 0 ||
        got != 3 * (end - first))
        return MBX_E_BAD_BASE64;
    if (to % 3 != 0 && copy_from_group(in, len, end, 3 * end, to, dst + (3 * end - from)) != 0)
        return MBX_E_BAD_BASE64;
    return 0;
}
