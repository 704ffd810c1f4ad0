/*
 * jbuf.c - the renderers' growable text buffer and its JSON writers:
 * escaped strings, numbers, and TENSORs in the three forms.  Big tensors are
 * written by one loop into memory reserved up front, never through a
 * jansson tree.  A failed growth makes the buffer "failed" and every later
 * write a no-op, so callers check once, in jbuf_finish.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "codec_internal.h"
#include "half.h"

int jbuf_reserve(jbuf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (extra < b->cap - b->len)
        return 0;
    size_t want = b->len + extra + 1;
    if (want < b->len) {
        b->failed = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want) {
        if (cap > SIZE_MAX / 2) {
            cap = want;
            break;
        }
        cap *= 2;
    }
    char *p = mbx_codec_realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void jbuf_put(jbuf *b, const char *s, size_t n)
{
    if (jbuf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void jbuf_puts(jbuf *b, const char *s)
{
    jbuf_put(b, s, strlen(s));
}

void jbuf_putc(jbuf *b, char c)
{
    if (jbuf_reserve(b, 1))
        return;
    b->data[b->len++] = c;
}

void jbuf_put_i64(jbuf *b, int64_t v)
{
    if (jbuf_reserve(b, MBX_NUMBER_MAX))
        return;
    b->len += mbx_format_i64(v, b->data + b->len);
}

void jbuf_put_f64(jbuf *b, double v)
{
    if (jbuf_reserve(b, MBX_NUMBER_MAX))
        return;
    b->len += mbx_format_f64(v, b->data + b->len);
}

void jbuf_put_f32(jbuf *b, float v)
{
    if (jbuf_reserve(b, MBX_NUMBER_MAX))
        return;
    b->len += mbx_format_f32(v, b->data + b->len);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void jbuf_put_jstring(jbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* Worst case: every byte becomes a 6-byte escape. */
    if (n > (SIZE_MAX - 2) / 6 || jbuf_reserve(b, n * 6 + 2))
        return;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            i++;
        } else if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
            i++;
        } else if (c < 0x80) {
            *o++ = (char)c;
            i++;
        } else {
            size_t len = utf8_len(s + i, n - i);
            if (len == 0) {
                memcpy(o, "\\ufffd", 6); /* invalid UTF-8 (e.g. a cut message) */
                o += 6;
                i++;
            } else {
                memcpy(o, s + i, len);
                o += len;
                i += len;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
}

int jbuf_finish(jbuf *b, char **out, size_t *len)
{
    if (jbuf_reserve(b, 0)) {
        jbuf_free(b);
        *out = NULL;
        if (len)
            *len = 0;
        return MBX_E_OUT_OF_MEMORY;
    }
    b->data[b->len] = '\0';
    *out = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return 0;
}

void jbuf_free(jbuf *b)
{
    mbx_codec_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------ tensors */

int jbuf_non_finite_at(int64_t i, const int64_t *shape, int rank, const char *name,
                       mbx_detail *detail)
{
    jpath p;
    jpath_init(&p);
    jpath_key(&p, name);
    mbx_tensor_index_path(&p, shape, rank, i);
    return jpath_fail(detail, MBX_E_INTERNAL, &p, "non-finite value in the output");
}

static int non_finite(const float *data, int64_t count, const int64_t *shape, int rank,
                      const char *name, mbx_detail *detail)
{
    int64_t i = mbx_find_non_finite(data, count);
    if (i < count)
        return jbuf_non_finite_at(i, shape, rank, name, detail);
    return 0;
}

/*
 * Writes "[v0,v1,...]" for count floats: chunks of values are formatted
 * straight into space reserved for their worst case, so a big tensor costs
 * one formatting loop and a few reallocations.
 */
static void put_float_array(jbuf *b, const float *v, int64_t count)
{
    enum { CHUNK = 4096 };
    jbuf_putc(b, '[');
    for (int64_t i = 0; i < count;) {
        int64_t n = count - i < CHUNK ? count - i : CHUNK;
        if (jbuf_reserve(b, (size_t)n * (MBX_NUMBER_MAX + 1)))
            return;
        char *o = b->data + b->len;
        for (int64_t k = 0; k < n; k++, i++) {
            if (i)
                *o++ = ',';
            o += mbx_format_f32(v[i], o);
        }
        b->len = (size_t)(o - b->data);
    }
    jbuf_putc(b, ']');
}

/* Nested arrays: rows of the last dimension written in bulk. */
static void put_nested(jbuf *b, const float *data, int rank, const int64_t *shape)
{
    if (rank == 1) {
        put_float_array(b, data, shape[0]);
        return;
    }
    int64_t inner = 1;
    for (int k = 1; k < rank; k++)
        inner *= shape[k];
    jbuf_putc(b, '[');
    for (int64_t i = 0; i < shape[0] && !b->failed; i++) {
        if (i)
            jbuf_putc(b, ',');
        put_nested(b, data + i * inner, rank - 1, shape + 1);
    }
    jbuf_putc(b, ']');
}

static void put_shape(jbuf *b, int rank, const int64_t *shape)
{
    jbuf_puts(b, "\"shape\":[");
    for (int k = 0; k < rank; k++) {
        if (k)
            jbuf_putc(b, ',');
        jbuf_put_i64(b, shape[k]);
    }
    jbuf_putc(b, ']');
}

/*
 * Writes the b64 string of count floats, failing like non_finite() on a
 * NaN or infinity; on a little-endian host, 12288 floats (64 Ki characters)
 * at a time, each chunk checked while it is in cache.
 */
static int put_b64_floats(jbuf *b, const float *data, int64_t count, const int64_t *shape,
                          int rank, const char *name, mbx_detail *detail)
{
    enum { CHUNK = 12288 }; /* floats: 49152 bytes, whole base64 groups */
    size_t bytes = (size_t)count * 4;
    size_t enc = mbx_base64_encoded_size(bytes);
    if (jbuf_reserve(b, enc + 2))
        return 0; /* the failure is sticky: jbuf_finish reports it */
    char *o = b->data + b->len;
    *o++ = '"';
    if (mbx_host_is_little_endian()) {
        for (int64_t done = 0; done < count; done += CHUNK) {
            int64_t n = count - done < CHUNK ? count - done : CHUNK;
            int64_t i = mbx_find_non_finite(data + done, n);
            if (i < n)
                return jbuf_non_finite_at(done + i, shape, rank, name, detail);
            mbx_base64_encode(data + done, (size_t)n * 4, o + (size_t)done / 3 * 16);
        }
    } else {
        int rc = non_finite(data, count, shape, rank, name, detail);
        if (rc)
            return rc;
        /* Byte-swap in chunks of 3 floats (12 bytes: whole base64 groups). */
        size_t done = 0;
        while (done < (size_t)count) {
            unsigned char chunk[12];
            size_t n = (size_t)count - done < 3 ? (size_t)count - done : 3;
            for (size_t k = 0; k < n; k++) {
                uint32_t u;
                memcpy(&u, data + done + k, 4);
                for (int j = 0; j < 4; j++)
                    chunk[4 * k + (size_t)j] = (unsigned char)(u >> (8 * j));
            }
            mbx_base64_encode(chunk, n * 4, o + done / 3 * 16);
            done += n;
        }
    }
    o += enc;
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* A float32 b64 TENSOR up to its text: {"shape":[...],"dtype":"float32","b64": */
static void put_b64_head(jbuf *b, int rank, const int64_t *shape)
{
    jbuf_putc(b, '{');
    put_shape(b, rank, shape);
    jbuf_puts(b, ",\"dtype\":\"float32\",\"b64\":");
}

void jbuf_put_b64_hole(jbuf *b, int rank, const int64_t *shape, size_t *hole)
{
    put_b64_head(b, rank, shape);
    jbuf_putc(b, '"');
    *hole = b->len;
    jbuf_puts(b, "\"}");
}

int jbuf_put_tensor(jbuf *b, const float *data, int rank, const int64_t *shape,
                    mbx_tensor_format fmt, const char *name, mbx_detail *detail)
{
    int64_t count = 1;
    for (int k = 0; k < rank; k++)
        count *= shape[k];
    int rc = fmt == MBX_TENSOR_B64 ? 0 : non_finite(data, count, shape, rank, name, detail);
    if (rc)
        return rc;
    switch (fmt) {
    case MBX_TENSOR_NESTED:
        put_nested(b, data, rank, shape);
        break;
    case MBX_TENSOR_FLAT:
        jbuf_putc(b, '{');
        put_shape(b, rank, shape);
        jbuf_puts(b, ",\"data\":");
        put_nested(b, data, 1, &count);
        jbuf_putc(b, '}');
        break;
    case MBX_TENSOR_B64:
        put_b64_head(b, rank, shape);
        rc = put_b64_floats(b, data, count, shape, rank, name, detail);
        if (rc)
            return rc;
        jbuf_putc(b, '}');
        break;
    default:
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "unknown tensor format %d",
                              (int)fmt);
    }
    return 0;
}
