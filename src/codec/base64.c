/*
 * base64.c - strict standard base64 (RFC 4648 section 4) both ways, for the
 * b64 TENSOR form.  The decoder writes straight into the caller's buffer
 * (a tensor's float storage), allocates nothing and never reads past the
 * input's length: inputs are JSON string values that may sit against the
 * end of a mapping.  Anything but the canonical padded encoding is refused.
 * On x86 CPUs with AVX2, both directions handle 24 bytes (32 characters) a
 * step with the vector method of Mula and Lemire ("Faster Base64 Encoding
 * and Decoding Using AVX2 Instructions", 2018); the scalar loops take the
 * rest, and the decoder hands any block with a character outside the
 * alphabet to them, so errors are reported exactly as without AVX2.
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

/* The character of sextet i, as a constant expression (for the tables below). */
#define B64C(i)                                                                             \
    ((i) < 26 ? 'A' + (i) : (i) < 52 ? 'a' + (i)-26 : (i) < 62 ? '0' + (i)-52 : (i) == 62 ? '+' \
                                                                                            : '/')
/* Value of character c, or 0xff, as a constant expression. */
#define B64V(c)                                                                             \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                 \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                           \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                           \
     : (c) == '+'               ? 62                                                        \
     : (c) == '/'               ? 63                                                        \
                                : 0xff)

#define R4(M, b) M(b), M((b) + 1), M((b) + 2), M((b) + 3)
#define R16(M, b) R4(M, b), R4(M, (b) + 4), R4(M, (b) + 8), R4(M, (b) + 12)
#define R64(M, b) R16(M, b), R16(M, (b) + 16), R16(M, (b) + 32), R16(M, (b) + 48)
#define R256(M, b) R64(M, b), R64(M, (b) + 64), R64(M, (b) + 128), R64(M, (b) + 192)
#define R1024(M, b) R256(M, b), R256(M, (b) + 256), R256(M, (b) + 512), R256(M, (b) + 768)
#define R4096(M, b) R1024(M, b), R1024(M, (b) + 1024), R1024(M, (b) + 2048), R1024(M, (b) + 3072)

/* Two output characters for 12 input bits, first character in the low byte. */
#define PAIR(i) (uint16_t)(B64C((i) >> 6) | B64C((i)&63) << 8)
static const uint16_t enc_pairs[4096] = {R4096(PAIR, 0)};

/*
 * Decoding tables: the value of each character already shifted into its
 * place of a 24-bit group; an invalid character sets bit 31.
 */
#define DEC_AT(c, shift) (B64V(c) == 0xff ? 0x80000000u : (uint32_t)B64V(c) << (shift))
#define D0(c) DEC_AT(c, 18)
#define D1(c) DEC_AT(c, 12)
#define D2(c) DEC_AT(c, 6)
#define D3(c) DEC_AT(c, 0)
static const uint32_t dec0[256] = {R256(D0, 0)};
static const uint32_t dec1[256] = {R256(D1, 0)};
static const uint32_t dec2[256] = {R256(D2, 0)};
static const uint32_t dec3[256] = {R256(D3, 0)};

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define MBX_B64_AVX2 1
#include <immintrin.h>

int mbx_cpu_has_avx2(void)
{
    static int state; /* 0 not asked yet, 1 no, 2 yes */
    int st = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (!st) {
        __builtin_cpu_init();
        st = __builtin_cpu_supports("avx2") ? 2 : 1;
        __atomic_store_n(&state, st, __ATOMIC_RELAXED);
    }
    return st == 2;
}

/*
 * Encodes s[0..i) into out[0..i/3*4) 24 bytes a step while 28 bytes are
 * readable; returns i (a multiple of 24).  Each 128-bit lane takes 12
 * bytes, spreads every 3-byte group over a 32-bit word as (b1, b0, b2, b1),
 * isolates the four sextets with two multiplies, then maps sextets to
 * characters by adding a per-range offset chosen with a byte shuffle.
 */
__attribute__((target("avx2"))) static size_t encode_avx2(const unsigned char *s, size_t n,
                                                           char *out)
{
    const __m256i spread = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
                                            1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    /* Offsets from sextet to character: A-Z +65, a-z +71, 0-9 -4, '+' -19, '/' -16. */
    const __m256i offsets =
        _mm256_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0, 65, 71,
                         -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 0, 0);
    size_t i = 0;
    for (; n >= 28 && i <= n - 28; i += 24) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 12));
        __m256i in = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        in = _mm256_shuffle_epi8(in, spread);
        __m256i t0 = _mm256_and_si256(in, _mm256_set1_epi32(0x0fc0fc00));
        __m256i t1 = _mm256_mulhi_epu16(t0, _mm256_set1_epi32(0x04000040));
        __m256i t2 = _mm256_and_si256(in, _mm256_set1_epi32(0x003f03f0));
        __m256i t3 = _mm256_mullo_epi16(t2, _mm256_set1_epi32(0x01000010));
        __m256i sextets = _mm256_or_si256(t1, t3);
        /* Offset index: 0 for 0..25, 1 for 26..51, 2..11 for 52..61, 12, 13 for 62, 63. */
        __m256i idx = _mm256_subs_epu8(sextets, _mm256_set1_epi8(51));
        idx = _mm256_sub_epi8(idx, _mm256_cmpgt_epi8(sextets, _mm256_set1_epi8(25)));
        __m256i chars = _mm256_add_epi8(sextets, _mm256_shuffle_epi8(offsets, idx));
        _mm256_storeu_si256((__m256i *)(void *)(out + i / 3 * 4), chars);
    }
    return i;
}

/*
 * Decodes in[0..i) into dst[0..i/4*3) 32 characters a step while 32 remain
 * before full; returns i (a multiple of 32), stopping before the first
 * block that holds a character outside the alphabet ('=' included).  The
 * check and the character-to-sextet map are nibble lookups (aqrit's
 * method): a character is valid when the classes of its low and high
 * nibbles do not intersect; the sextets are then packed with two
 * multiply-adds and two shuffles.
 */
__attribute__((target("avx2"))) static size_t decode_avx2(const char *in, size_t full,
                                                           unsigned char *dst)
{
    const __m256i lut_lo = _mm256_setr_epi8(
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B,
        0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B,
        0x1B, 0x1A);
    const __m256i lut_hi = _mm256_setr_epi8(
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10, 0x10);
    /* Added to a character by its high nibble ('/' apart):
     * '+' +19, '/' +16, 0-9 +4, A-Z -65, a-z -71. */
    const __m256i lut_roll = _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0,
                                              0, 0, 0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0,
                                              0, 0, 0, 0);
    const __m256i mask_2f = _mm256_set1_epi8(0x2f);
    const __m256i pack = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
                                          2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    size_t i = 0;
    for (; full >= 32 && i <= full - 32; i += 32) {
        __m256i str = _mm256_loadu_si256((const __m256i *)(const void *)(in + i));
        __m256i hi_nibbles = _mm256_and_si256(_mm256_srli_epi32(str, 4), mask_2f);
        __m256i lo_nibbles = _mm256_and_si256(str, mask_2f);
        __m256i lo = _mm256_shuffle_epi8(lut_lo, lo_nibbles);
        __m256i hi = _mm256_shuffle_epi8(lut_hi, hi_nibbles);
        if (!_mm256_testz_si256(lo, hi))
            break;
        __m256i eq_2f = _mm256_cmpeq_epi8(str, mask_2f);
        __m256i roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(eq_2f, hi_nibbles));
        __m256i sextets = _mm256_add_epi8(str, roll);
        /* (a, b, c, d) sextets -> a<<18 | b<<12 | c<<6 | d per 32-bit word, then 3 bytes each. */
        __m256i ab_cd = _mm256_maddubs_epi16(sextets, _mm256_set1_epi32(0x01400140));
        __m256i words = _mm256_madd_epi16(ab_cd, _mm256_set1_epi32(0x00011000));
        __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(words, pack), lanes);
        unsigned char *o = dst + i / 4 * 3;
        _mm_storeu_si128((__m128i *)(void *)o, _mm256_castsi256_si128(bytes));
        _mm_storel_epi64((__m128i *)(void *)(o + 16), _mm256_extracti128_si256(bytes, 1));
    }
    return i;
}
#else
int mbx_cpu_has_avx2(void)
{
    return 0;
}
#endif

size_t mbx_base64_encoded_size(size_t n)
{
    return (n / 3 + (n % 3 != 0)) * 4;
}

void mbx_base64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *s = in;
    size_t i = 0;
#ifdef MBX_B64_AVX2
    if (mbx_cpu_has_avx2()) {
        i = encode_avx2(s, n, out);
        out += i / 3 * 4;
    }
#endif
    /* 6 bytes (two groups) a step, read as one 8-byte load while 8 remain. */
    for (; i + 8 <= n; i += 6) {
        uint64_t w = (uint64_t)s[i] << 56 | (uint64_t)s[i + 1] << 48 | (uint64_t)s[i + 2] << 40 |
                     (uint64_t)s[i + 3] << 32 | (uint64_t)s[i + 4] << 24 | (uint64_t)s[i + 5] << 16;
        uint64_t o = (uint64_t)enc_pairs[w >> 52] | (uint64_t)enc_pairs[(w >> 40) & 0xfff] << 16 |
                     (uint64_t)enc_pairs[(w >> 28) & 0xfff] << 32 |
                     (uint64_t)enc_pairs[(w >> 16) & 0xfff] << 48;
        for (int k = 0; k < 8; k++)
            out[k] = (char)(o >> (8 * k));
        out += 8;
    }
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        uint16_t hi = enc_pairs[v >> 12], lo = enc_pairs[v & 0xfff];
        out[0] = (char)(hi & 0xff);
        out[1] = (char)(hi >> 8);
        out[2] = (char)(lo & 0xff);
        out[3] = (char)(lo >> 8);
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

size_t mbx_base64_decode_groups(const char *in, size_t n, void *out)
{
    unsigned char *dst = out;
    size_t i = 0;
    n -= n % 4;
#ifdef MBX_B64_AVX2
    if (mbx_cpu_has_avx2()) {
        i = decode_avx2(in, n, dst);
        dst += i / 4 * 3;
    }
#endif
    /* Two groups a step, then one: each stops before a group with a bad character. */
    for (; i + 8 <= n; i += 8) {
        uint32_t v = dec0[(unsigned char)in[i]] | dec1[(unsigned char)in[i + 1]] |
                     dec2[(unsigned char)in[i + 2]] | dec3[(unsigned char)in[i + 3]];
        uint32_t w = dec0[(unsigned char)in[i + 4]] | dec1[(unsigned char)in[i + 5]] |
                     dec2[(unsigned char)in[i + 6]] | dec3[(unsigned char)in[i + 7]];
        if ((v | w) & 0x80000000u)
            break;
        uint64_t o = (uint64_t)v << 40 | (uint64_t)w << 16;
        for (int k = 0; k < 6; k++)
            dst[k] = (unsigned char)(o >> (56 - 8 * k));
        dst += 6;
    }
    for (; i < n; i += 4) {
        uint32_t v = dec0[(unsigned char)in[i]] | dec1[(unsigned char)in[i + 1]] |
                     dec2[(unsigned char)in[i + 2]] | dec3[(unsigned char)in[i + 3]];
        if (v & 0x80000000u)
            break;
        dst[0] = (unsigned char)(v >> 16);
        dst[1] = (unsigned char)(v >> 8);
        dst[2] = (unsigned char)v;
        dst += 3;
    }
    return i;
}

int mbx_base64_char_ok(char c)
{
    return dec_table[(unsigned char)c] != 0xff;
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
    i = mbx_base64_decode_groups(in, full, dst);
    dst += i / 4 * 3;
    if (i < full) { /* the group at i holds a bad character */
        size_t k = i;
        while (dec_table[(unsigned char)in[k]] != 0xff)
            k++;
        return bad_char(detail, in, k, base);
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
