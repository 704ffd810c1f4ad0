/*
 * select.c - the k-th largest of an array of floats in linear time, for the
 * ranking of negatives (no sort of the A anchors).  Pure: works in place in
 * the caller's array, 8 KiB of stack, never allocates.
 */
#include <string.h>

#include "select.h"

/* Order-preserving map float -> uint32 (negative values reversed below positives). */
static uint32_t key_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static float float_of(uint32_t key)
{
    uint32_t u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float mbx_kth_largest(const float *v, int64_t n, int64_t k, uint32_t *scratch)
{
    static const int shifts[3] = {21, 10, 0};
    static const uint32_t widths[3] = {0x7ffu, 0x7ffu, 0x3ffu};
    uint32_t hist[2048];
    uint32_t prefix = 0, prefix_mask = 0;
    for (int round = 0; round < 3; round++) {
        const int sh = shifts[round];
        const uint32_t w = widths[round];
        memset(hist, 0, (w + 1) * sizeof hist[0]);
        if (round == 0)
            for (int64_t i = 0; i < n; i++)
                hist[key_of(v[i]) >> sh]++;
        else
            for (int64_t i = 0; i < n; i++)
                hist[(scratch[i] >> sh) & w]++;
        /* The bucket holding the k-th largest, scanning from the top. */
        uint32_t b = w;
        int64_t above = 0;
        while (above + hist[b] < k) {
            above += hist[b];
            b--;
        }
        k -= above;
        prefix |= b << sh;
        prefix_mask |= w << sh;
        /* Keep only that bucket's keys. */
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            const uint32_t x = round == 0 ? key_of(v[i]) : scratch[i];
            scratch[m] = x;
            m += (x & prefix_mask) == prefix;
        }
        n = m;
    }
    return float_of(prefix);
}
