/*
 * base64.c - strict standard base64 (RFC 4648 section 4) both ways, for the
 * b64 TENSOR form.  The decoder writes straight into the caller's buffer
 * (a tensor's float storage), allocates nothing and never reads past the
 * input's length: inputs are JSON string values that may sit against the
 * end of a mapping.  Anything but the canonical padded encoding is refused.
 */
#include <string.h>

#include "codec_internal.h"

static const char enc_table[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0xff for anything else (including '='). */
static const unsigned char dec_table[256] = {
#define X 0xff
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,
    X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,
    X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
#undef X
};

size_t mbx_base64_encoded_size(size_t n)
{
    return (n / 3 + (n % 3 != 0)) * 4;
}

void mbx_base64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *s = in;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[0] = enc_table[v >> 18];
        out[1] = enc_table[(v >> 12) & 63];
        out[2] = enc_table[(v >> 6) & 63];
        out[3] = enc_table[v & 63];
        out += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        out[0] = enc_table[v >> 18];
        out[1] = enc_table[(v >> 12) & 63];
        out[2] = '=';
        out[3] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        out[0] = enc_table[v >> 18];
        out[1] = enc_table[(v >> 12) & 63];
        out[2] = enc_table[(v >> 6) & 63];
        out[3] = '=';
    }
}

static int decoded_size_at(const char *in, size_t len, size_t base, size_t *size,
                           mbx_detail *detail)
{
    size_t pad = 0;
    if (len % 4 != 0)
        return mbx_detail_set(detail, MBX_E_BAD_BASE64,
                              "base64 length %zu is not a multiple of 4", len);
    if (len > 0 && in[len - 1] == '=') {
        pad = 1;
        if (in[len - 2] == '=') {
            pad = 2;
            if (in[len - 3] == '=')
                return mbx_detail_set(detail, MBX_E_BAD_BASE64,
                                      "too much '=' padding at offset %zu", base + len - 3);
        }
    }
    *size = len / 4 * 3 - pad;
    return 0;
}

int mbx_base64_decoded_size(const char *in, size_t len, size_t *size, mbx_detail *detail)
{
    return decoded_size_at(in, len, 0, size, detail);
}

/* base: offset of in[0] in the whole text, for messages. */
static int bad_char(mbx_detail *detail, const char *in, size_t at, size_t base)
{
    unsigned char c = (unsigned char)in[at];
    if (c == '=')
        return mbx_detail_set(detail, MBX_E_BAD_BASE64, "misplaced '=' padding at offset %zu",
                              base + at);
    if (c >= 0x20 && c < 0x7f)
        return mbx_detail_set(detail, MBX_E_BAD_BASE64, "invalid character '%c' at offset %zu",
                              c, base + at);
    return mbx_detail_set(detail, MBX_E_BAD_BASE64, "invalid byte 0x%02x at offset %zu", c,
                          base + at);
}

int mbx_base64_decode(const char *in, size_t len, void *out, size_t cap, size_t *written,
                      mbx_detail *detail)
{
    return mbx_base64_decode_part(in, len, 0, out, cap, written, detail);
}

int mbx_base64_decode_part(const char *in, size_t len, size_t base, void *out, size_t cap,
                           size_t *written, mbx_detail *detail)
{
    unsigned char *dst = out;
    size_t size = 0, full, i;
    int rc = decoded_size_at(in, len, base, &size, detail);
    if (rc)
        return rc;
    if (size > cap)
        return mbx_detail_set(detail, MBX_E_BAD_BASE64,
                              "decodes to %zu bytes, more than the %zu expected", size, cap);
    /* Groups without padding; the last group is handled apart when padded. */
    full = (size % 3 == 0) ? len : len - 4;
    for (i = 0; i < full; i += 4) {
        unsigned a = dec_table[(unsigned char)in[i]];
        unsigned b = dec_table[(unsigned char)in[i + 1]];
        unsigned c = dec_table[(unsigned char)in[i + 2]];
        unsigned d = dec_table[(unsigned char)in[i + 3]];
        if ((a | b | c | d) & 0x80) {
            size_t k = i;
            while (dec_table[(unsigned char)in[k]] != 0xff)
                k++;
            return bad_char(detail, in, k, base);
        }
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        dst[0] = (unsigned char)(v >> 16);
        dst[1] = (unsigned char)(v >> 8);
        dst[2] = (unsigned char)v;
        dst += 3;
    }
    if (full < len) {
        size_t rest = size % 3; /* 1 (two '=') or 2 (one '=') bytes */
        unsigned a = dec_table[(unsigned char)in[i]];
        unsigned b = dec_table[(unsigned char)in[i + 1]];
        unsigned c = rest == 2 ? dec_table[(unsigned char)in[i + 2]] : 0;
        if (a & 0x80)
            return bad_char(detail, in, i, base);
        if (b & 0x80)
            return bad_char(detail, in, i + 1, base);
        if (c & 0x80)
            return bad_char(detail, in, i + 2, base);
        uint32_t v = a << 18 | b << 12 | c << 6;
        if ((rest == 1 && (v & 0xffff)) || (rest == 2 && (v & 0xff)))
            return mbx_detail_set(detail, MBX_E_BAD_BASE64,
                                  "non-zero padding bits in the last group at offset %zu",
                                  base + i);
        dst[0] = (unsigned char)(v >> 16);
        if (rest == 2)
            dst[1] = (unsigned char)(v >> 8);
    }
    if (written)
        *written = size;
    return 0;
}
