/*
 * fuzz_base64.c - fuzz target of the strict base64 codec (codec.h,
 * codec_internal.h).  Byte 0 of the input selects a mode, the rest is the
 * text (or, in mode bit 0, raw bytes to encode):
 *   bit 0: encode the bytes, then decode: must give them back;
 *   bit 1: decode into a buffer one byte short (must fail, not overflow);
 *   bits 2-7: offset passed to mbx_base64_decode_part (messages only).
 * Decoding is compared with a plain reference decoder written here from
 * RFC 4648 section 4 and the strictness rules of codec.h; accepted text
 * must re-encode to itself (the canonical encoding is unique).  Input and
 * output buffers are allocated to the exact size, so ASan sees any access
 * past them.
 */
#include "fuzz.h"

#include "codec_internal.h"

static int ref_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Returns the decoded size, or -1 for text the strict rules refuse; out holds len/4*3 bytes. */
static long ref_decode(const unsigned char *in, size_t len, unsigned char *out)
{
    if (len % 4)
        return -1;
    size_t pad = 0;
    while (pad < len && pad < 3 && in[len - 1 - pad] == '=')
        pad++;
    if (pad > 2)
        return -1;
    size_t n = 0;
    for (size_t g = 0; g < len; g += 4) {
        int v[4];
        int last = g + 4 == len;
        for (int k = 0; k < 4; k++) {
            int pos_is_pad = last && k >= 4 - (int)pad;
            v[k] = pos_is_pad ? 0 : ref_value(in[g + (size_t)k]);
            if (v[k] < 0)
                return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t bytes = last ? 3 - pad : 3;
        /* Unused bits of the last group must be zero. */
        if (last && pad == 1 && (w & 0xff))
            return -1;
        if (last && pad == 2 && (w & 0xffff))
            return -1;
        for (size_t k = 0; k < bytes; k++)
            out[n++] = (unsigned char)(w >> (16 - 8 * k));
    }
    return (long)n;
}

static void encode_then_decode(const uint8_t *raw, size_t n)
{
    size_t elen = mbx_base64_encoded_size(n);
    FUZZ_CHECK(elen == (n + 2) / 3 * 4, "encoded size of %zu is %zu", n, elen);
    char *text = malloc(elen ? elen : 1);
    unsigned char *back = malloc(n ? n : 1), *ref = malloc(elen / 4 * 3 + 1);
    FUZZ_CHECK(text && back && ref, "out of memory");
    mbx_base64_encode(raw, n, text);
    size_t size = 0, written = 0;
    mbx_detail d = {0, ""};
    FUZZ_CHECK(mbx_base64_decoded_size(text, elen, &size, &d) == 0 && size == n,
               "decoded size of an encoding: %s", d.message);
    FUZZ_CHECK(mbx_base64_decode(text, elen, back, n, &written, &d) == 0 && written == n,
               "decoding an encoding: %s", d.message);
    FUZZ_CHECK(n == 0 || memcmp(back, raw, n) == 0, "round trip changed the bytes");
    FUZZ_CHECK(ref_decode((const unsigned char *)text, elen, ref) == (long)n &&
                   (n == 0 || memcmp(ref, raw, n) == 0),
               "the reference does not read the encoding back");
    free(text);
    free(back);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    size_t len = size - 1;
    if (mode & 1) {
        encode_then_decode(data + 1, len);
        return 0;
    }
    /* The text in its own exact-size allocation. */
    char *text = malloc(len ? len : 1);
    FUZZ_CHECK(text != NULL, "out of memory");
    memcpy(text, data + 1, len);
    unsigned char *ref = malloc(len / 4 * 3 + 1);
    FUZZ_CHECK(ref != NULL, "out of memory");
    long want = ref_decode((const unsigned char *)text, len, ref);

    mbx_detail d = {0, ""};
    size_t dsize = 0;
    int rc = mbx_base64_decoded_size(text, len, &dsize, &d);
    if (rc) {
        fuzz_check_failure(rc, &d);
        FUZZ_CHECK(rc == MBX_E_BAD_BASE64, "decoded_size: %s", mbx_error_name(rc));
        FUZZ_CHECK(want < 0, "decoded_size refused text the reference decodes: %s", d.message);
        /* decode must refuse it the same way. */
        unsigned char one;
        FUZZ_CHECK(mbx_base64_decode(text, len, &one, 1, NULL, &d) == MBX_E_BAD_BASE64,
                   "decode accepted what decoded_size refused");
        free(text);
        free(ref);
        return 0;
    }
    /* decoded_size checks only length and padding. */
    FUZZ_CHECK(dsize == len / 4 * 3 - (len && text[len - 1] == '=') -
                            (len > 1 && text[len - 1] == '=' && text[len - 2] == '='),
               "decoded size %zu of %zu bytes", dsize, len);
    FUZZ_CHECK(want < 0 || (size_t)want == dsize, "decoded size %zu, reference %ld", dsize, want);

    int short_buf = (mode & 2) && dsize > 0;
    size_t cap = short_buf ? dsize - 1 : dsize;
    unsigned char *out = malloc(cap ? cap : 1);
    FUZZ_CHECK(out != NULL, "out of memory");
    size_t written = (size_t)-1;
    size_t base = (size_t)(mode >> 2) * 1000;
    mbx_detail d2 = {0, ""};
    rc = (len % 4 == 0) ? mbx_base64_decode_part(text, len, base, out, cap, &written, &d2)
                        : mbx_base64_decode(text, len, out, cap, &written, &d2);
    if (short_buf) {
        FUZZ_CHECK(rc == MBX_E_BAD_BASE64, "decoding %zu bytes into %zu succeeded", dsize, cap);
    } else if (want < 0) {
        FUZZ_CHECK(rc == MBX_E_BAD_BASE64, "accepted text the reference refuses (mode %u)", mode);
        fuzz_check_failure(rc, &d2);
    } else {
        FUZZ_CHECK(rc == 0, "refused text the reference decodes: %s", d2.message);
        FUZZ_CHECK(written == dsize, "written %zu of %zu", written, dsize);
        FUZZ_CHECK(dsize == 0 || memcmp(out, ref, dsize) == 0, "bytes differ from the reference");
        /* The canonical encoding is unique: re-encoding gives the text back. */
        char *again = malloc(len ? len : 1);
        FUZZ_CHECK(again != NULL, "out of memory");
        FUZZ_CHECK(mbx_base64_encoded_size(dsize) == len, "encoded size");
        mbx_base64_encode(out, dsize, again);
        FUZZ_CHECK(len == 0 || memcmp(again, text, len) == 0, "re-encoding differs");
        free(again);
    }
    free(out);
    free(text);
    free(ref);
    return 0;
}
