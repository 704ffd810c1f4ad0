/*
 * dense_rows.c - a mostly zero float32 array, as its little-endian bytes
 * or their base64 text, written a window at a time from its non-zero rows
 * (see codec.h, mbx_dense_rows).  The bytes are zeros with the rows copied
 * over them.  The text:
 *
 * A dense /v1 gradient in b64 form is 37 MB of text for SSD300 at batch 32,
 * yet only the rows of the positives and counted negatives (a few percent)
 * are not zero.  Encoding the dense array means writing it (zeros and all),
 * reading it back and writing the text: three passes over memory for bytes
 * that are nearly all "AAAA".  Here the text is made where it is sent: the
 * window is filled with 'A' (three zero bytes encode as "AAAA"), then only
 * the groups that hold bytes of a non-zero row are encoded over it, from
 * those bytes as the raw reader gives them (a group may hold bytes of two
 * rows).
 */
#include <stdint.h>
#include <string.h>

#include "codec.h"
#include "codec_internal.h"
#include "half.h"

/* Groups encoded per step: the bytes of a step fit a small stack buffer. */
#define STEP_GROUPS 256

/* The first index k of s->rows whose row ends after byte offset at. */
static int64_t first_row_after(const mbx_dense_rows *s, size_t at)
{
    const size_t row_bytes = (size_t)s->width * sizeof(float);
    int64_t lo = 0, hi = s->num;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (((size_t)s->rows[mid] + 1) * row_bytes > at)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/*
 * Copies the little-endian bytes of the row at index k of s (row start byte
 * row_at) that fall in [from, to) into buf, which holds the bytes from on.
 */
static void put_row(const mbx_dense_rows *s, int64_t k, size_t row_at, size_t from, size_t to,
                    unsigned char *buf)
{
    const size_t row_bytes = (size_t)s->width * sizeof(float);
    const size_t a = row_at > from ? row_at : from;
    const size_t b = row_at + row_bytes < to ? row_at + row_bytes : to;
    if (a >= b)
        return;
    const float *v = s->values + k * s->width;
    if (mbx_host_is_little_endian()) {
        memcpy(buf + (a - from), (const unsigned char *)v + (a - row_at), b - a);
        return;
    }
    for (size_t i = a; i < b; i++) {
        uint32_t u;
        memcpy(&u, v + (i - row_at) / 4, sizeof u);
        buf[i - from] = (unsigned char)(u >> (8 * ((i - row_at) % 4)));
    }
}

mbx_dense_rows mbx_dense_rows_of(const mbx_sparse_grads *sp, int output, const mbx_batch *b)
{
    const int64_t total = b->batch * b->num_anchors;
    if (output == MBX_REQUEST_INPUT_LOC)
        return (mbx_dense_rows){sp->loc_rows, sp->loc_values, sp->num_loc, total, 4};
    return (mbx_dense_rows){sp->conf_rows, sp->conf_values, sp->num_conf, total, b->num_classes};
}

void mbx_dense_rows_raw_read(const mbx_dense_rows *s, size_t off, char *out, size_t n)
{
    const size_t row_bytes = (size_t)s->width * sizeof(float);
    memset(out, 0, n);
    for (int64_t k = first_row_after(s, off); k < s->num && (size_t)s->rows[k] * row_bytes < off + n;
         k++)
        put_row(s, k, (size_t)s->rows[k] * row_bytes, off, off + n, (unsigned char *)out);
}

size_t mbx_dense_rows_b64_size(const mbx_dense_rows *s)
{
    return mbx_base64_encoded_size((size_t)s->total_rows * (size_t)s->width * sizeof(float));
}

int64_t mbx_dense_rows_non_finite(const mbx_dense_rows *s)
{
    const int64_t n = s->num * s->width;
    const int64_t bad = mbx_find_non_finite(s->values, n);
    if (bad >= n)
        return -1;
    return (int64_t)s->rows[bad / s->width] * s->width + bad % s->width;
}

void mbx_dense_rows_b64_read(const mbx_dense_rows *s, size_t off, char *out, size_t n)
{
    const size_t row_bytes = (size_t)s->width * sizeof(float);
    const size_t total = (size_t)s->total_rows * row_bytes;
    const size_t text_len = mbx_base64_encoded_size(total);
    const size_t end = off + n;
    memset(out, 'A', n);
    /* A zero tail shorter than a group still ends in its padding. */
    for (size_t t = text_len - (total % 3 ? 3 - total % 3 : 0); t < text_len; t++)
        if (t >= off && t < end)
            out[t - off] = '=';

    unsigned char bytes[3 * STEP_GROUPS];
    char text[4 * STEP_GROUPS];
    /* The rows whose groups reach the window: those ending after its first group's bytes. */
    for (int64_t k = first_row_after(s, off / 4 * 3); k < s->num; k++) {
        const size_t r = (size_t)s->rows[k];
        const size_t g_first = r * row_bytes / 3, g_end = ((r + 1) * row_bytes + 2) / 3;
        if (4 * g_first >= end)
            break;
        for (size_t g = g_first; g < g_end; g += STEP_GROUPS) {
            const size_t g_stop = g + STEP_GROUPS < g_end ? g + STEP_GROUPS : g_end;
            if (4 * g_stop <= off)
                continue;
            if (4 * g >= end)
                break;
            /* The groups' bytes, neighbour rows' included, as the dense array holds them. */
            const size_t from = 3 * g, to = 3 * g_stop < total ? 3 * g_stop : total;
            mbx_dense_rows_raw_read(s, from, (char *)bytes, to - from);
            mbx_base64_encode(bytes, to - from, text);
            /* The part of text[4g, 4 g_stop) inside the window. */
            const size_t a = 4 * g > off ? 4 * g : off;
            const size_t b = 4 * g_stop < end ? 4 * g_stop : end;
            memcpy(out + (a - off), text + (a - 4 * g), b - a);
        }
    }
}
