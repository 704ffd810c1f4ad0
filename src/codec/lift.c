/*
 * lift.c - keeps long string values out of jansson.  jansson lexes a string
 * byte by byte into a growing buffer (about 65 MB/s here), so a b64 tensor
 * of tens of megabytes would cost most of a request's time.  Before
 * parsing, one memchr-speed pass finds every string value (a string right
 * after a ':') of at least MBX_LIFT_MIN bytes without escapes; jansson then
 * reads the body through a callback that replaces each such string's
 * content with a short placeholder ("\u001bmbx#<index>"), and the tensor
 * reader resolves placeholders back to the bytes in the body, which the
 * base64 decoder reads in place (or, for a string decoded while the body
 * arrived, lift_decode.c, to its decoded bytes).  Keys, array elements,
 * short strings and strings with escapes go through jansson unchanged.  A
 * client sending a placeholder itself can only make the codec read another
 * string of its own body.  Allocates only the table of lifted strings.
 */
#include <string.h>

#include "codec_internal.h"

#define PH_PREFIX "\\u001bmbx#" /* as JSON text */
#define PH_DECODED "\x1b" "mbx#" /* as jansson returns it */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Whether the string opening at body[quote] is an object member's value. */
int mbx_lift_value_position(const char *body, size_t quote)
{
    while (quote > 0 && is_ws(body[quote - 1]))
        quote--;
    return quote > 0 && body[quote - 1] == ':';
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

/* Offset of the first '"' or '\\' in p[0..n), or n: 64 bytes a step. */
__attribute__((target("avx2"))) static size_t find_end_avx2(const char *p, size_t n)
{
    const __m256i quote = _mm256_set1_epi8('"'), backslash = _mm256_set1_epi8('\\');
    size_t i = 0;
    for (; n >= 64 && i <= n - 64; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 32));
        __m256i ma = _mm256_or_si256(_mm256_cmpeq_epi8(a, quote), _mm256_cmpeq_epi8(a, backslash));
        __m256i mb = _mm256_or_si256(_mm256_cmpeq_epi8(b, quote), _mm256_cmpeq_epi8(b, backslash));
        uint64_t m = (uint32_t)_mm256_movemask_epi8(ma) |
                     (uint64_t)(uint32_t)_mm256_movemask_epi8(mb) << 32;
        if (m)
            return i + (size_t)__builtin_ctzll(m);
    }
    for (; i < n; i++)
        if (p[i] == '"' || p[i] == '\\')
            return i;
    return n;
}
#define HAVE_FIND_END_AVX2 1
#endif

/*
 * Offset of the first '"' or '\\' in p[0..n), or n: where a string's text
 * ends or its first escape starts.  One pass where AVX2 runs, else two
 * memchr() passes.
 */
static size_t find_end(const char *p, size_t n)
{
#ifdef HAVE_FIND_END_AVX2
    if (mbx_cpu_has_avx2())
        return find_end_avx2(p, n);
#endif
    const char *q = memchr(p, '"', n);
    size_t end = q ? (size_t)(q - p) : n;
    const char *bs = memchr(p, '\\', end);
    return bs ? (size_t)(bs - p) : end;
}

int mbx_lift_push(mbx_lift *l, size_t start, size_t len)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        mbx_lifted *items = mbx_codec_realloc(l->items, cap * sizeof *items);
        if (!items)
            return MBX_E_OUT_OF_MEMORY;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count] = (mbx_lifted){start, len, 0, 0, 0};
    l->count++;
    return 0;
}

void mbx_lift_init(mbx_lift *l, size_t min_len)
{
    memset(l, 0, sizeof *l);
    l->min_len = min_len < 32 ? 32 : min_len; /* longer than any placeholder */
}

int mbx_lift_feed(mbx_lift *l, const char *body, size_t avail)
{
    for (;;) {
        if (!l->in_string) {
            if (l->scan_pos >= avail)
                return 0;
            const char *q = memchr(body + l->scan_pos, '"', avail - l->scan_pos);
            if (!q) {
                l->scan_pos = avail;
                return 0;
            }
            l->open = (size_t)(q - body);
            l->scan_i = l->open + 1;
            l->escaped = 0;
            l->no_decode = 0;
            l->in_string = 1;
        }
        /* Inside the string: to its closing quote, over escapes, or to the end of the bytes in. */
        size_t close;
        for (;;) {
            if (l->scan_i >= avail)
                return 0; /* unterminated so far */
            const size_t k = l->scan_i + find_end(body + l->scan_i, avail - l->scan_i);
            if (k >= avail) {
                l->scan_i = avail;
                return 0;
            }
            if (body[k] == '"') {
                close = k;
                break;
            }
            l->escaped = 1;
            l->scan_i = k + 2; /* skip the escaped character */
        }
        l->in_string = 0;
        l->scan_pos = close + 1;
        if (!l->escaped && close - l->open - 1 >= l->min_len &&
            mbx_lift_value_position(body, l->open)) {
            int rc = mbx_lift_push(l, l->open + 1, close - l->open - 1);
            if (rc)
                return rc;
        }
    }
}

int mbx_lift_scan(mbx_lift *l, const char *body, size_t len, size_t min_len)
{
    mbx_lift_init(l, min_len);
    l->body = body;
    l->len = len;
    return mbx_lift_feed(l, body, len); /* a string left open: jansson will say so */
}

mbx_body_scan *mbx_body_scan_new(void)
{
    mbx_body_scan *s = mbx_codec_calloc(1, sizeof *s);
    if (s)
        mbx_lift_init(&s->lift, MBX_LIFT_MIN);
    return s;
}

void mbx_body_scan_free(mbx_body_scan *s)
{
    if (!s)
        return;
    mbx_lift_free(&s->lift);
    mbx_codec_free(s);
}

void mbx_lift_free(mbx_lift *l)
{
    mbx_codec_free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

/* Placeholder text for item k into out; returns its length. */
static size_t placeholder(size_t k, char *out)
{
    size_t n = sizeof PH_PREFIX - 1;
    memcpy(out, PH_PREFIX, n);
    n += mbx_format_i64((int64_t)k, out + n);
    return n;
}

size_t mbx_lift_read(void *buffer, size_t buflen, void *data)
{
    mbx_lift *l = data;
    char *out = buffer;
    size_t done = 0;
    while (done < buflen) {
        if (l->ph_pos < l->ph_len) { /* inside a placeholder */
            size_t n = l->ph_len - l->ph_pos;
            if (n > buflen - done)
                n = buflen - done;
            memcpy(out + done, l->ph + l->ph_pos, n);
            l->ph_pos += n;
            done += n;
            continue;
        }
        size_t stop = l->next < l->count ? l->items[l->next].start : l->len;
        if (l->pos < stop) { /* body bytes up to the next lifted string */
            size_t n = stop - l->pos;
            if (n > buflen - done)
                n = buflen - done;
            memcpy(out + done, l->body + l->pos, n);
            l->pos += n;
            done += n;
            continue;
        }
        if (l->next >= l->count)
            break; /* end of the body */
        l->ph_len = placeholder(l->next, l->ph);
        l->ph_pos = 0;
        l->pos += l->items[l->next].len;
        l->next++;
    }
    return done;
}

const mbx_lifted *mbx_lift_resolve(const mbx_lift *l, const char **text, size_t *len)
{
    const size_t pre = sizeof PH_DECODED - 1;
    if (!l || *len <= pre || *len > pre + 20 || memcmp(*text, PH_DECODED, pre) != 0)
        return NULL;
    size_t k = 0;
    for (size_t i = pre; i < *len; i++) {
        char c = (*text)[i];
        if (c < '0' || c > '9')
            return NULL;
        k = k * 10 + (size_t)(c - '0');
    }
    if (k >= l->count)
        return NULL;
    *text = l->body + l->items[k].start;
    *len = l->items[k].len;
    return &l->items[k];
}

size_t mbx_lift_body_offset(const mbx_lift *l, size_t stream_pos)
{
    size_t shift = 0; /* body bytes minus stream bytes so far, lifted strings before */
    for (size_t k = 0; k < l->count; k++) {
        char ph[48];
        size_t ph_len = placeholder(k, ph);
        size_t start = l->items[k].start - shift; /* in stream coordinates */
        if (stream_pos < start)
            break;
        if (stream_pos < start + ph_len)
            return l->items[k].start;
        shift += l->items[k].len - ph_len;
    }
    return stream_pos + shift;
}
