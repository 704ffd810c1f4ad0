/*
 * codec_internal.h - helpers shared by the codec's files and its tests, not
 * by the service: the one allocation wrapper every codec allocation goes
 * through (with a test hook for failure injection), the JSON path builder
 * used in error messages, the growable output buffer of the renderers, and
 * the request sub-parsers.  Nothing here does I/O.
 */
#ifndef MBX_CODEC_INTERNAL_H
#define MBX_CODEC_INTERNAL_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"

/* 1 when the CPU runs AVX2 (x86 only; asked once, then cached; thread-safe). */
int mbx_cpu_has_avx2(void);

/*
 * Index of the first NaN or infinity of v[0..n), or n when all are finite.
 * Blocks are first tested without an early exit (an OR of exponent tests,
 * which compilers vectorize), so scanning tens of megabytes of finite
 * tensors costs a fraction of a value-by-value isfinite() loop.
 */
static inline int64_t mbx_find_non_finite(const float *v, int64_t n)
{
    enum { BLOCK = 1024 };
    int64_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        uint32_t bad = 0;
        for (int k = 0; k < BLOCK; k++) {
            uint32_t u;
            memcpy(&u, v + i + k, sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            break;
    }
    for (; i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return n;
}

/*
 * Little-endian float32 bytes, just decoded into v[0..n), as host floats:
 * swapped in place on a big-endian host, untouched otherwise (half.c).
 */
void mbx_f32_from_le(float *v, int64_t n);

/* ------------------------------------------------------------ allocation */

/*
 * Every allocation of the codec goes through these four.  By default they
 * are the C library's.  mbx_codec_set_alloc_funcs() replaces them for the
 * whole process (tests only: not thread-safe, call it while no codec call
 * runs); passing NULLs restores the defaults.
 */
typedef void *(*mbx_codec_malloc_fn)(size_t size);
typedef void *(*mbx_codec_calloc_fn)(size_t count, size_t size);
typedef void *(*mbx_codec_realloc_fn)(void *ptr, size_t size);
typedef void (*mbx_codec_free_fn)(void *ptr);
void mbx_codec_set_alloc_funcs(mbx_codec_malloc_fn m, mbx_codec_calloc_fn c,
                               mbx_codec_realloc_fn r, mbx_codec_free_fn f);
void *mbx_codec_malloc(size_t size);
void *mbx_codec_calloc(size_t count, size_t size);
void *mbx_codec_realloc(void *ptr, size_t size);
void mbx_codec_free(void *ptr);

/*
 * mbx_base64_decode on a part of a longer text that starts at offset base
 * of it (only messages differ).  The part must be a whole number of groups.
 */
int mbx_base64_decode_part(const char *in, size_t len, size_t base, void *out, size_t cap,
                           size_t *written, mbx_detail *detail);
/*
 * Decodes the whole groups of in[0..n) (n rounded down to a multiple of 4)
 * into out, three bytes a group, up to the first group that holds a
 * character outside the alphabet ('=' included); returns the characters
 * decoded (a multiple of 4).  Writes exactly three bytes per group decoded.
 * mbx_base64_char_ok: whether c is in the alphabet ('=' is not).
 */
size_t mbx_base64_decode_groups(const char *in, size_t n, void *out);
int mbx_base64_char_ok(char c);
/*
 * Decodes bytes [from, from + n) of what in[0..len) encodes into out (n
 * bytes), reading only the groups that hold them (base64_range.c).
 * Returns 0, or MBX_E_BAD_BASE64 (no detail: an invalid character or
 * misplaced padding in those groups, or bytes beyond the text); the whole
 * text's decode then names the first fault.  Thread-safe, no allocation.
 */
int mbx_base64_decode_range(const char *in, size_t len, size_t from, size_t n, void *out);

/* ------------------------------------------------------------- JSON paths */

/*
 * The JSON path of the value being parsed, for error messages
 * ("targets[3].boxes[7]").  Push with jpath_key / jpath_index, which return
 * the previous length to restore with jpath_restore.  A path longer than the
 * buffer is cut (and ends in "..."), never overflowed.
 */
typedef struct jpath {
    char buf[160];
    size_t len;
} jpath;

void jpath_init(jpath *p);
size_t jpath_key(jpath *p, const char *key);
size_t jpath_index(jpath *p, int64_t index);
void jpath_restore(jpath *p, size_t len);
/* The path as text; "(root)" for the empty path. */
const char *jpath_str(const jpath *p);

/* Fills detail with "<path>: <printf message>" and returns code. */
int jpath_fail(mbx_detail *detail, int code, const jpath *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ------------------------------------------------------------ out buffer */

/*
 * A growable text buffer.  After any failed growth the buffer is marked
 * failed, later writes do nothing and jbuf_finish reports
 * MBX_E_OUT_OF_MEMORY, so renderers check once at the end.
 */
typedef struct jbuf {
    char *data;
    size_t len, cap;
    int failed;
} jbuf;

/* Ensures room for extra more bytes (plus a NUL); 0 or -1 (and failed set). */
int jbuf_reserve(jbuf *b, size_t extra);
void jbuf_put(jbuf *b, const char *s, size_t n);
void jbuf_puts(jbuf *b, const char *s);
void jbuf_putc(jbuf *b, char c);
void jbuf_put_i64(jbuf *b, int64_t v);
void jbuf_put_f64(jbuf *b, double v);  /* "%.17g"; callers pass finite values */
void jbuf_put_f32(jbuf *b, float v);   /* "%.9g"; callers pass finite values */
/* A JSON string literal of s (n bytes): escapes, invalid UTF-8 becomes U+FFFD. */
void jbuf_put_jstring(jbuf *b, const char *s, size_t n);
/* Hands the NUL-terminated text to *out and *len, or frees it and returns MBX_E_OUT_OF_MEMORY. */
int jbuf_finish(jbuf *b, char **out, size_t *len);
void jbuf_free(jbuf *b);

/*
 * Renders data (count = product of shape) as a TENSOR of the given rank and
 * shape in format fmt.  Fails (MBX_E_INTERNAL, path in detail) on a
 * non-finite value: JSON has no NaN and the core never produces one.
 * name is the member's name for that message.
 */
int jbuf_put_tensor(jbuf *b, const float *data, int rank, const int64_t *shape,
                    mbx_tensor_format fmt, const char *name, mbx_detail *detail);
/* jbuf_put_tensor's error for a non-finite element i (flat) of output name. */
int jbuf_non_finite_at(int64_t i, const int64_t *shape, int rank, const char *name,
                       mbx_detail *detail);
/*
 * A float32 b64 TENSOR of the given rank and shape without its text:
 * *hole is the offset in b where the text belongs (between the quotes).
 */
void jbuf_put_b64_hole(jbuf *b, int rank, const int64_t *shape, size_t *hole);

/* ------------------------------------------------------ lifted strings */

/*
 * Long string values kept out of jansson (lift.c): mbx_lift_scan finds
 * them, jansson reads the body through mbx_lift_read (json_load_callback)
 * with each one's content replaced by a placeholder, and mbx_lift_resolve
 * turns a placeholder back into the body's bytes.  The body must outlive
 * the mbx_lift and everything resolved through it.
 */
#define MBX_LIFT_MIN 256 /* shortest string value lifted, in bytes (>= 32) */

typedef struct mbx_lifted {
    size_t start, len;   /* the string's content in the body */
    /*
     * Decoded as the body arrived (mbx_body_scan_write): the content's bytes
     * are at body[raw, raw + raw_len), inside the string's span, and the
     * span no longer holds the text.  The text was valid base64.
     */
    int decoded;
    size_t raw, raw_len;
} mbx_lifted;

typedef struct mbx_lift {
    const char *body;
    size_t len;
    mbx_lifted *items;   /* in body order */
    size_t count, cap;
    size_t pos, next;    /* mbx_lift_read: next body byte, next item */
    char ph[48];         /* placeholder being emitted */
    size_t ph_len, ph_pos;
    /* The scan, resumable as more of the body arrives (mbx_lift_feed). */
    size_t min_len;
    size_t scan_pos;     /* outside strings: the next byte to look at */
    int in_string;       /* inside the string opened at open */
    int escaped;         /* that string has an escape so far */
    size_t open, scan_i; /* its opening quote; where its scan resumes */
    /* The open string, decoded as it arrives (lift_decode.c). */
    int decoding;        /* its bytes go to raw_at, not its text to the body */
    int no_decode;       /* it was given back as text: stays so */
    size_t raw_at;       /* body offset of its bytes */
    size_t groups;       /* whole groups decoded */
    char pend[4];        /* the characters of the group after them */
    int npend;
    int npad;            /* '=' among them */
} mbx_lift;

/* Fills l (zeroed first); 0 or MBX_E_OUT_OF_MEMORY (free l in both cases). */
int mbx_lift_scan(mbx_lift *l, const char *body, size_t len, size_t min_len);
/*
 * The same scan in steps, while the body arrives: mbx_lift_init zeroes l,
 * then each mbx_lift_feed scans the body's first avail bytes (avail never
 * shrinks; the bytes already scanned never change, though the buffer may
 * move) as far as they allow.  Fed in any steps up to len, l holds what
 * mbx_lift_scan(l, body, len, min_len) finds.  0 or MBX_E_OUT_OF_MEMORY.
 */
void mbx_lift_init(mbx_lift *l, size_t min_len);
int mbx_lift_feed(mbx_lift *l, const char *body, size_t avail);
/* codec.h's mbx_body_scan: the scan run (and the body stored) while the body arrives. */
struct mbx_body_scan {
    mbx_lift lift;
    int failed;    /* out of memory: every string given back, the parse scans again */
    size_t stored; /* mbx_body_scan_write: the body bytes stored so far */
};
/* lift.c's pieces that lift_decode.c shares. */
int mbx_lift_push(mbx_lift *l, size_t start, size_t len);
int mbx_lift_value_position(const char *body, size_t quote);
void mbx_lift_free(mbx_lift *l);
/* A json_load_callback_t reading l's body with the lifted strings replaced. */
size_t mbx_lift_read(void *buffer, size_t buflen, void *data);
/*
 * If (*text, *len) is a placeholder of l (l may be NULL), points them at
 * the lifted bytes in the body and returns its item; otherwise leaves
 * them, NULL.
 */
const mbx_lifted *mbx_lift_resolve(const mbx_lift *l, const char **text, size_t *len);
/* The body offset of a position in the stream mbx_lift_read produced. */
size_t mbx_lift_body_offset(const mbx_lift *l, size_t stream_pos);

/* ---------------------------------------------------------------- tensors */

/* Hard cap on the elements of any one tensor (1 GiB of float32). */
#define MBX_CODEC_MAX_ELEMENTS ((int64_t)1 << 28)
#define MBX_TENSOR_MAX_RANK 4

typedef enum mbx_tensor_kind {
    MBX_TSRC_NESTED = 0,
    MBX_TSRC_FLAT,
    MBX_TSRC_B64
} mbx_tensor_kind;

/*
 * A TENSOR found in a JSON document, validated for structure and shape but
 * not yet copied: what mbx_tensor_probe learnt, mbx_tensor_fill uses.  It
 * points into the JSON document, which must outlive it.  A dimension after
 * an empty nested level is unknown and reported as -1 (its product is 0).
 */
typedef struct mbx_tensor_src {
    mbx_tensor_kind kind;
    int rank;
    int64_t shape[MBX_TENSOR_MAX_RANK];
    int64_t count;          /* product of the shape, <= MBX_CODEC_MAX_ELEMENTS */
    const json_t *json;     /* nested: the outer array; flat: the data array */
    const char *b64;        /* b64: the text, b64_len bytes */
    size_t b64_len;
    const unsigned char *raw; /* b64 decoded as the body arrived (lift_decode.c), or NULL:
                               * then b64 is not the text, only its place */
    size_t raw_len;
    int dtype_size;         /* b64: 4 (float32) or 8 (float64) */
} mbx_tensor_src;

/*
 * Recognises a TENSOR of the given rank at j (path p): nested arrays,
 * {"shape","data"} or {"shape","dtype","b64"}.  Checks types, that nested
 * arrays are rectangular and hold only numbers, that shape products neither
 * overflow nor exceed MBX_CODEC_MAX_ELEMENTS, and that data or b64 hold
 * exactly that many values.  Allocates nothing.  Returns 0 or a negative
 * code with detail (WRONG_TYPE, SHAPE_MISMATCH, SHAPE_OVERFLOW,
 * MISSING_FIELD, UNKNOWN_FIELD, OUT_OF_RANGE, BAD_BASE64).
 */
int mbx_tensor_probe(const json_t *j, int rank, mbx_tensor_src *src, jpath *p,
                     mbx_detail *detail);
/* The same, resolving b64 strings lifted out of the document by lift (may be NULL). */
int mbx_tensor_probe_lifted(const json_t *j, int rank, const mbx_lift *lift, mbx_tensor_src *src,
                            jpath *p, mbx_detail *detail);

/*
 * Writes the probed tensor's src->count values as float32 into dst, row
 * major.  Fails with MBX_E_NOT_FINITE (NaN, infinity, or a value beyond
 * float32's range), MBX_E_WRONG_TYPE (a non-number in flat data) or
 * MBX_E_BAD_BASE64, naming the element's path; dst is then partly written.
 */
int mbx_tensor_fill(const mbx_tensor_src *src, float *dst, jpath *p, mbx_detail *detail);
/*
 * For a float32 b64 tensor only: the error mbx_tensor_fill would return,
 * found the same way, with the values decoded a chunk at a time into a
 * buffer of its own and dropped.  MBX_E_OUT_OF_MEMORY for that buffer.
 */
int mbx_tensor_check(const mbx_tensor_src *src, jpath *p, mbx_detail *detail);

/* Appends "[i][j]..." for flat element index flat of shape to p. */
void mbx_tensor_index_path(jpath *p, const int64_t *shape, int rank, int64_t flat);

/* The JSON type's name for messages ("an object", "a string", ...). */
const char *mbx_json_type_name(const json_t *j);

/* ----------------------------------------------------------- sub-parsers */

/* Parses the "config" object into cfg (already holding defaults); types and enums only. */
int mbx_config_parse_json(const json_t *j, mbx_config *cfg, jpath *p, mbx_detail *detail);
/* Parses the "outputs" object into out (already holding defaults). */
int mbx_outputs_parse_json(const json_t *j, mbx_outputs *out, jpath *p, mbx_detail *detail);
/*
 * Parses a {"prior_box": {...}} member's object into params (types and
 * lengths; ranges are mbx_prior_count's job).
 */
int mbx_prior_params_parse_json(const json_t *j, mbx_prior_params *params, jpath *p,
                                 mbx_detail *detail);

/* Default outputs: dense gradients, per_image, no matches, nested tensors. */
void mbx_outputs_default(mbx_outputs *out);

#endif
