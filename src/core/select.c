/*
 * select.c - the k-th largest of an array of floats in linear time, for the
 * ranking of negatives (no sort of the A anchors).  Pure: works in the
 * caller's scratch, 8 KiB of stack, never allocates.
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

/* Below this many values a quickselect on the keys beats clearing the histograms. */
#define SMALL_N 1536

/*
 * The k-th largest key of x[0..n) (1 <= k <= n), reordering x: quickselect
 * with a three-way partition around the median of three; after 48 rounds
 * (never seen) an insertion sort of what is left bounds the work.
 */
static uint32_t small_select(uint32_t *x, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    const int64_t target = k - 1; /* position in descending order */
    for (int round = 0; lo < hi; round++) {
        if (round == 48) {
            for (int64_t i = lo + 1; i <= hi; i++)
                for (int64_t j = i; j > lo && x[j - 1] < x[j]; j--) {
                    uint32_t t = x[j];
                    x[j] = x[j - 1];
                    x[j - 1] = t;
                }
            return x[target];
        }
        uint32_t a = x[lo], b = x[lo + (hi - lo) / 2], c = x[hi], t;
        if (a > b) {
            t = a;
            a = b;
            b = t;
        }
        if (b > c)
            b = c;
        const uint32_t pivot = a > b ? a : b;
        /* [lo, gt) > pivot, [gt, i) == pivot, (lt, hi] < pivot */
        int64_t gt = lo, i = lo, lt = hi;
        while (i <= lt) {
            const uint32_t y = x[i];
            if (y > pivot) {
                x[i] = x[gt];
                x[gt++] = y;
                i++;
            } else if (y < pivot) {
                x[i] = x[lt];
                x[lt--] = y;
            } else {
                i++;
            }
        }
        if (target < gt)
            hi = gt - 1;
        else if (target > lt)
            lo = lt + 1;
        else
            return pivot;
    }
    return x[target];
}

float mbx_kth_largest(const float *v, int64_t n, int64_t k, uint32_t *scratch)
{
    if (n <= SMALL_N) {
        for (int64_t i = 0; i < n; i++)
            scratch[i] = key_of(v[i]);
        return float_of(small_select(scratch, n, k));
    }
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
