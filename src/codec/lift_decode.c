/*
 * lift_decode.c - the body scan that also stores the body
 * (mbx_body_scan_write), decoding long base64 strings as they arrive.
 *
 * A /v1 body with b64 tensors is nearly all base64 text: 37 MB for an
 * SSD300 batch of 32.  Copied into the body buffer as it arrives, then read
 * again by the decoder, the text crosses memory twice; decoded instead
 * straight from the HTTP layer's buffer, where it is still in cache, it is
 * written once, as the 28 MB of bytes the parse wants, and never read back
 * as text.  The decoded bytes go inside the string's own span of the body
 * (a long string's bytes are three quarters of its text), at the first
 * 64-byte boundary of it, so the body buffer stays the only buffer and the
 * float32 values are aligned.
 *
 * Only what decodes exactly as the whole text would is decoded here: a
 * string value of at least DECODE_AFTER characters (the lift's minimum)
 * whose characters are whole groups of the alphabet, with padding at most
 * in its last group and nothing after the padding but the closing quote.
 * Anything else (a bad character, an escape, misplaced padding, a length
 * that is not a multiple of 4, a body that ends inside the string) gives
 * the string back: the groups decoded so far are encoded again in place,
 * which restores the text byte for byte (a group of four alphabet
 * characters and its three bytes map one to one), and the string goes on
 * as plain text, so the parse reports exactly what it reports without this
 * file.  Running out of memory gives back every decoded string.
 */
#include <string.h>

#include "codec.h"
#include "codec_internal.h"

/* A string starts decoding once this many characters of it are in. */
static size_t decode_after(const mbx_lift *l)
{
    return (l->min_len + 3) / 4 * 4; /* >= 256: the bytes then fit in the span */
}

/* Where the bytes of the string whose text starts at body offset text go. */
static size_t raw_place(size_t text)
{
    /* At most 63 bytes in: with 3/4 of at least 256 characters it stays in the span. */
    return (text + 63) / 64 * 64;
}

/*
 * Writes the text of the bytes at body[raw, raw + bytes) back at body[text]
 * (raw - text < 64).  From the last block of groups down: block b > 0
 * starts at group 256b, whose text lies past the bytes of every earlier
 * group, so only block 0 needs its bytes copied away first (each block's
 * are, for simplicity).
 */
static void encode_back(char *body, size_t text, size_t raw, size_t bytes)
{
    enum { BLOCK = 256 };
    unsigned char tmp[3 * BLOCK];
    const size_t groups = bytes / 3;
    if (bytes % 3) { /* the padded last group, which lies after every block */
        memcpy(tmp, body + raw + 3 * groups, bytes % 3);
        mbx_base64_encode(tmp, bytes % 3, body + text + 4 * groups);
    }
    for (size_t b = (groups + BLOCK - 1) / BLOCK; b-- > 0;) {
        const size_t g1 = b * BLOCK, g2 = groups < g1 + BLOCK ? groups : g1 + BLOCK;
        memcpy(tmp, body + raw + 3 * g1, 3 * (g2 - g1));
        mbx_base64_encode(tmp, 3 * (g2 - g1), body + text + 4 * g1);
    }
}

/* Gives the open string back as text; it goes on as a plain string. */
static void give_back(mbx_lift *l, char *body)
{
    const size_t text = l->open + 1;
    encode_back(body, text, l->raw_at, 3 * l->groups);
    memcpy(body + text + 4 * l->groups, l->pend, (size_t)l->npend);
    l->scan_i = text + 4 * l->groups + (size_t)l->npend;
    l->decoding = 0;
    l->no_decode = 1;
}

/* Out of memory: every string goes back to text, and the parse scans again. */
static void fail_all(mbx_body_scan *s, char *body)
{
    mbx_lift *l = &s->lift;
    if (l->decoding)
        give_back(l, body);
    for (size_t k = 0; k < l->count; k++)
        if (l->items[k].decoded)
            encode_back(body, l->items[k].start, l->items[k].raw, l->items[k].raw_len);
    s->failed = 1;
}

/*
 * The open string has exactly decode_after characters in the body: decodes
 * them, or leaves the string as text when they are not whole groups of the
 * alphabet.
 */
static void start_decoding(mbx_lift *l, char *body)
{
    const size_t text = l->open + 1, n = decode_after(l);
    unsigned char tmp[1024];
    if (n / 4 * 3 > sizeof tmp || mbx_base64_decode_groups(body + text, n, tmp) != n) {
        l->no_decode = 1;
        return;
    }
    l->raw_at = raw_place(text);
    memcpy(body + l->raw_at, tmp, n / 4 * 3);
    l->groups = n / 4;
    l->npend = l->npad = 0;
    l->decoding = 1;
}

/* The closing quote of the open string is at body offset close: it is lifted, decoded. */
static void finish(mbx_body_scan *s, char *body, size_t close, size_t raw_len)
{
    mbx_lift *l = &s->lift;
    const size_t text = l->open + 1;
    body[close] = '"';
    l->decoding = 0;
    l->in_string = 0;
    l->scan_pos = close + 1;
    if (mbx_lift_push(l, text, close - text) != 0) {
        encode_back(body, text, l->raw_at, raw_len);
        fail_all(s, body);
        return;
    }
    mbx_lifted *it = &l->items[l->count - 1];
    it->decoded = 1;
    it->raw = l->raw_at;
    it->raw_len = raw_len;
}

/*
 * The open string is being decoded and data[0..n) (at body offset at)
 * continues it: decodes what it can, ends the string at its closing quote
 * or gives it back at the first thing that cannot be decoded.  Returns how
 * many bytes of data it took (the rest continues as text).
 */
static size_t decode_more(mbx_body_scan *s, char *body, size_t at, const char *data, size_t n)
{
    mbx_lift *l = &s->lift;
    size_t i = 0;
    for (;;) {
        if (l->npend == 0 && n - i >= 4) {
            const size_t got = mbx_base64_decode_groups(data + i, n - i,
                                                        body + l->raw_at + 3 * l->groups);
            l->groups += got / 4;
            i += got;
        }
        if (i == n)
            return n;
        const char c = data[i];
        if (l->npad == 0 && mbx_base64_char_ok(c)) {
            l->pend[l->npend++] = c;
            i++;
            if (l->npend == 4) {
                mbx_base64_decode_groups(l->pend, 4, body + l->raw_at + 3 * l->groups);
                l->groups++;
                l->npend = 0;
            }
            continue;
        }
        if (c == '=' && l->npend >= 2 && l->npend < 4) {
            l->pend[l->npend++] = c;
            l->npad++;
            i++;
            continue;
        }
        if (c == '"' && (l->npend == 0 || (l->npend == 4 && l->npad > 0))) {
            size_t raw_len = 3 * l->groups;
            if (l->npend == 4) { /* the padded last group, checked as the whole decode does */
                unsigned char tail[3];
                size_t got = 0;
                if (mbx_base64_decode(l->pend, 4, tail, sizeof tail, &got, NULL) != 0) {
                    give_back(l, body);
                    return i;
                }
                memcpy(body + l->raw_at + raw_len, tail, got);
                raw_len += got;
            }
            finish(s, body, at + i, raw_len);
            return i + 1;
        }
        give_back(l, body);
        return i;
    }
}

void mbx_body_scan_write(mbx_body_scan *s, char *body, const char *data, size_t n)
{
    mbx_lift *l = &s->lift;
    while (n > 0) {
        const size_t at = s->stored;
        size_t k = n;
        if (!s->failed && l->decoding) {
            k = decode_more(s, body, at, data, n);
        } else {
            /*
             * Text, in pieces that end where a string may start decoding:
             * after each quote (it may open one), and at a candidate's
             * decode_after-th character.
             */
            if (!s->failed) {
                if (l->in_string && !l->escaped && !l->no_decode) {
                    const size_t start = l->open + 1 + decode_after(l);
                    if (start > at && start - at < k)
                        k = start - at;
                } else {
                    const char *q = memchr(data, '"', n);
                    if (q)
                        k = (size_t)(q - data) + 1;
                }
            }
            memcpy(body + at, data, k);
            if (!s->failed && mbx_lift_feed(l, body, at + k) != 0)
                fail_all(s, body);
            if (!s->failed && l->in_string && !l->escaped && !l->no_decode &&
                at + k == l->open + 1 + decode_after(l) && mbx_lift_value_position(body, l->open))
                start_decoding(l, body);
        }
        s->stored += k;
        data += k;
        n -= k;
    }
}

void mbx_body_scan_end(mbx_body_scan *s, char *body)
{
    if (s && !s->failed && s->lift.decoding)
        give_back(&s->lift, body); /* the body ends inside it: the parse says how */
}
