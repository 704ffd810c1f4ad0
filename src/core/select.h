/*
 * select.h - partial selection for hard negative mining (private).
 */
#ifndef MBX_CORE_SELECT_H
#define MBX_CORE_SELECT_H

#include <stdint.h>

/*
 * Returns the k-th largest of v[0..n) (1 <= k <= n; no NaN); v is left
 * untouched, scratch[n] is working space.  Linear time: a three-round radix
 * selection on the order-preserving integer image of the floats (11 + 11 +
 * 10 bits), each round counting only the values left in the bucket that
 * holds the answer; small arrays use a quickselect on the same keys.
 */
float mbx_kth_largest(const float *v, int64_t n, int64_t k, uint32_t *scratch);

#endif
