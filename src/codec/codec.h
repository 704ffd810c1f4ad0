/*
 * codec.h - JSON (jansson) to and from the core's structs, for the /v1
 * endpoints and the offline tool.  The codec validates everything the core
 * would reject before a byte is allocated from a shape: every error names
 * its JSON path ("targets[3].boxes[7]: x2 <= x1").  It never does I/O.
 */
#ifndef MBX_CODEC_H
#define MBX_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "multibox/multibox.h"

typedef enum mbx_grad_output {
    MBX_GRAD_NONE = 0,   /* "gradients": false */
    MBX_GRAD_DENSE,      /* "gradients": true (default) */
    MBX_GRAD_SPARSE      /* "gradients": "sparse" */
} mbx_grad_output;

typedef enum mbx_tensor_format {
    MBX_TENSOR_NESTED = 0, /* nested arrays (default) */
    MBX_TENSOR_FLAT,       /* {"shape", "data"} */
    MBX_TENSOR_B64         /* {"shape", "dtype": "float32", "b64"} */
} mbx_tensor_format;

/* The request's "outputs" member. */
typedef struct mbx_outputs {
    mbx_grad_output gradients;       /* default MBX_GRAD_DENSE */
    int per_image;                   /* default 1 */
    int matches;                     /* default 0 */
    mbx_tensor_format tensor_format; /* default MBX_TENSOR_NESTED */
} mbx_outputs;

/*
 * A parsed, validated /v1/loss request.  config, batch and outputs are
 * public; batch's pointers point into storage the request owns, valid until
 * mbx_request_free().  max_boxes is the largest per-image GT count.
 */
typedef struct mbx_request {
    mbx_config config;
    mbx_batch batch;
    mbx_outputs outputs;
    int64_t max_boxes;
    struct mbx_request_storage *storage; /* private */
} mbx_request;

/*
 * Parses and validates a /v1/loss body of len bytes (need not be
 * NUL-terminated).  Returns 0 and a new *out, or a negative code with
 * detail naming the path: MBX_E_MALFORMED_JSON, MBX_E_BAD_BASE64 (400
 * class) or a validation code (422 class), MBX_E_OUT_OF_MEMORY.  On failure
 * *out is NULL and nothing leaks.  Thread-safe.
 */
int mbx_request_parse_json(const char *body, size_t len, mbx_request **out, mbx_detail *detail);
/*
 * Flag of mbx_request_parse_json_ex: loc and conf given as float32 b64 text
 * of at least MBX_LIFT_MIN bytes are checked for length and padding only
 * and stay text in the body: batch.loc / .conf are NULL for them, and the
 * caller widens one image (or some rows) at a time with
 * mbx_request_load_input(), so several workers share the decoding and no
 * float32 copy of the whole tensor exists.  The body must then stay valid
 * until the last load.  A bad character, NaN or infinity in them is found
 * by those loads; mbx_request_input_fail() then gives the error the plain
 * parse would have returned.  Any other error of the request is the plain
 * parse's too (an error in the targets is reported only after loc and
 * conf are checked whole, since the plain parse reads them first).
 */
#define MBX_REQUEST_DEFER_INPUTS 1u
enum { MBX_REQUEST_INPUT_LOC = 0, MBX_REQUEST_INPUT_CONF = 1 };
int mbx_request_parse_json_ex(const char *body, size_t len, unsigned flags, mbx_request **out,
                              mbx_detail *detail);
/*
 * Every /v1 parse starts with one pass over the whole body that finds its
 * long string values (b64 tensors), so that jansson never lexes them.  A
 * server runs that pass while the body arrives, as it stores it:
 * mbx_body_scan_write stores data[0..n), the body's next bytes, into body
 * (the buffer's start; room for them, and it may move between calls), and
 * decodes long base64 string values straight from data into their own
 * span of the body, where the parse then finds their bytes: the text is
 * neither copied nor decoded again (lift_decode.c).  The body then holds
 * those bytes instead of the text, so it is for the parse only; once the
 * body is complete, mbx_body_scan_end (which may give one string back as
 * text), then mbx_request_parse_json_scanned on the whole body, which
 * scans only what is left and answers exactly as mbx_request_parse_json_ex
 * on the body as sent.  A scan serves one parse.  mbx_body_scan_new
 * returns NULL when out of memory; a write that runs out of memory gives
 * every string back as text and only makes the parse scan again.
 */
typedef struct mbx_body_scan mbx_body_scan;
mbx_body_scan *mbx_body_scan_new(void);
void mbx_body_scan_free(mbx_body_scan *scan);
void mbx_body_scan_write(mbx_body_scan *scan, char *body, const char *data, size_t n);
void mbx_body_scan_end(mbx_body_scan *scan, char *body);
int mbx_request_parse_json_scanned(const char *body, size_t len, unsigned flags,
                                   mbx_body_scan *scan, mbx_request **out, mbx_detail *detail);
/* 1 when input (MBX_REQUEST_INPUT_LOC or _CONF) was deferred by the parse. */
int mbx_request_deferred(const mbx_request *req, int input);
/*
 * Widens image's rows of a deferred input into dst, the image's [A][w]
 * float32 array (w = 4 for loc, C for conf): every row when rows is NULL,
 * else only rows[0..n), given as flat indices image * A + a (other rows of
 * dst are left alone).  Returns -1 when they decode to finite values, else
 * an index (>= 0) within the image's values at or before which the first
 * fault lies (a bad character, NaN or infinity); dst may then be partly
 * written.  Reads only the body; thread-safe; no allocation.
 */
int64_t mbx_request_load_input(const mbx_request *req, int input, int64_t image,
                               const int32_t *rows, int64_t n, float *dst);
/*
 * The plain parse's error for a deferred input in which a load found a
 * fault (the whole text is decoded again to find it); returns its code.
 */
int mbx_request_input_fail(const mbx_request *req, int input, mbx_detail *detail);
/*
 * A deferred input whose bytes were decoded as the body arrived
 * (mbx_body_scan_write) can be used where it lies, as the [B][A][w]
 * float32 array mbx_request_input_in_place returns (NULL when it cannot:
 * not decoded so, or a big-endian host).  Its values are then not checked:
 * a caller whose loss finds a NaN or infinity in them gets the plain
 * parse's error from mbx_request_input_check (0 when input has none).
 */
const float *mbx_request_input_in_place(const mbx_request *req, int input);
int mbx_request_input_check(const mbx_request *req, int input, mbx_detail *detail);
void mbx_request_free(mbx_request *req);

/*
 * Allocates, for req, the result arrays its outputs ask for (gradients,
 * per-image, matches, and roles when sparse gradients are asked); the
 * gradient arrays are not zeroed (the core writes every element).  Release
 * with mbx_result_release(), which frees the arrays and zeroes *res.
 */
int mbx_result_alloc(const mbx_request *req, mbx_result *res, mbx_detail *detail);

/*
 * A whole batch's sparse gradients, as the core's sparse units write them
 * when each image's arrays are carved, in image order, from these: rows are
 * flat indices b*A + a, ascending; loc rows are the positives, conf rows
 * the positives and counted negatives.  Borrowed by the renderers.
 */
typedef struct mbx_sparse_grads {
    const int32_t *loc_rows;     /* [num_loc] */
    const float *loc_values;     /* [num_loc][4] */
    int64_t num_loc;
    const int32_t *conf_rows;    /* [num_conf] */
    const float *conf_values;    /* [num_conf][C] */
    int64_t num_conf;
} mbx_sparse_grads;

/* Flag of the _ex allocators: sparse gradients come as an mbx_sparse_grads (see oip.h). */
#define MBX_RESULT_SPARSE_DIRECT 1u

/* mbx_result_alloc with flags (MBX_RESULT_SPARSE_DIRECT: no dense arrays or roles for sparse). */
int mbx_result_alloc_ex(const mbx_request *req, mbx_result *res, unsigned flags,
                        mbx_detail *detail);
/*
 * Dense b64 gradients made from the sparse rows, where they are sent: most
 * of a dense gradient is zero, and its text is mostly "AAAA".  With the
 * flag below, mbx_result_alloc_ex gives no dense gradient arrays for a dense
 * b64 answer (mbx_grads_from_rows(req) says whether req's answer is one);
 * the caller computes sparse rows instead, renders the answer's JSON without
 * the two texts (mbx_response_render_json_around: out holds the rest, and
 * the texts go at offsets holes[0], grad_loc's, and holes[1], grad_conf's,
 * of it), and writes the texts a window at a time with
 * mbx_dense_rows_b64_read.
 * Spliced, they are exactly what mbx_response_render_json writes.
 */
#define MBX_RESULT_GRADS_FROM_ROWS 2u
int mbx_grads_from_rows(const mbx_request *req);

/*
 * A dense float32 array [total_rows][width], zero except at rows[0..num)
 * (ascending indices, each < total_rows) whose values are values[num][width]:
 * a gradient as the sparse units give it.  Borrowed arrays.  The readers
 * write any window of the dense array's little-endian bytes (raw) or of
 * their base64 text (b64, what mbx_base64_encode writes for those bytes),
 * in time proportional to the window plus the rows in it, so a big, mostly
 * zero answer is made where it is sent and never held whole.  Reads only;
 * any thread; no allocation; off + n at most the bytes' or text's length.
 */
typedef struct mbx_dense_rows {
    const int32_t *rows;
    const float *values;
    int64_t num;
    int64_t total_rows;
    int64_t width;
} mbx_dense_rows;

/*
 * The dense [B][A][w] gradient of batch b that sp's rows give: grad_loc
 * (output MBX_REQUEST_INPUT_LOC, w 4) or grad_conf (w C).  Borrows sp's arrays.
 */
mbx_dense_rows mbx_dense_rows_of(const mbx_sparse_grads *sp, int output, const mbx_batch *b);
void mbx_dense_rows_raw_read(const mbx_dense_rows *s, size_t off, char *out, size_t n);
/* The length of the base64 text of s's bytes. */
size_t mbx_dense_rows_b64_size(const mbx_dense_rows *s);
void mbx_dense_rows_b64_read(const mbx_dense_rows *s, size_t off, char *out, size_t n);
/* The flat index (row * width + column) of s's first NaN or infinity, or -1. */
int64_t mbx_dense_rows_non_finite(const mbx_dense_rows *s);

int mbx_response_render_json_around(const mbx_request *req, const mbx_result *res, char **out,
                                    size_t *len, size_t holes[2], mbx_detail *detail);
/*
 * The error the whole render gives for a non-finite value at flat index
 * `at` of output (MBX_REQUEST_INPUT_LOC: grad_loc, _CONF: grad_conf).
 */
int mbx_grads_non_finite(const mbx_request *req, int output, int64_t at, mbx_detail *detail);

/* mbx_response_render_json with sparse gradients from sp (NULL: gathered from res). */
int mbx_response_render_json_sparse(const mbx_request *req, const mbx_result *res,
                                    const mbx_sparse_grads *sp, char **out, size_t *len,
                                    mbx_detail *detail);
void mbx_result_release(mbx_result *res);

/* The shape a loss context must be created with for req, with num_slots slots. */
mbx_shape mbx_request_shape(const mbx_request *req, int num_slots);

/*
 * Renders the 200 response for req and its computed res as JSON text:
 * *out is malloc'ed and NUL-terminated (*len excludes the NUL), the caller
 * frees it.  Returns 0 or MBX_E_OUT_OF_MEMORY.
 */
int mbx_response_render_json(const mbx_request *req, const mbx_result *res, char **out,
                             size_t *len, mbx_detail *detail);

/*
 * Renders {"error": {"code": mbx_error_name(code), "message": message}}
 * (message NULL: the code's default message).  *out malloc'ed as above.
 */
int mbx_error_render_json(int code, const char *message, char **out, size_t *len);

/*
 * Renders anchors[count][4] as a TENSOR of shape [count, 4] in format fmt
 * (the body of GET /v1/anchors/{preset}).  *out malloc'ed as above.
 */
int mbx_anchors_render_json(const float *anchors, int64_t count, mbx_tensor_format fmt,
                            char **out, size_t *len, mbx_detail *detail);

/* Parses "nested" | "flat" | "b64"; returns 0 or MBX_E_OUT_OF_RANGE. */
int mbx_tensor_format_parse(const char *name, mbx_tensor_format *fmt);

/* ------------------------------------------------------------------------
 * Helpers the other /v1 and /v2 paths reuse (added by the codec).
 */

/*
 * Strict standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /):
 * length a multiple of 4, '=' padding only at the very end (0, 1 or 2), no
 * whitespace, unused bits of the last group zero.  mbx_base64_decoded_size
 * checks length and padding only and sets *size to the exact decoded size;
 * mbx_base64_decode decodes in[0..len) straight into out (capacity cap,
 * which must hold the decoded size) and allocates nothing.  Both return 0
 * or MBX_E_BAD_BASE64 (detail names the byte offset); on failure out may be
 * partly written.  Never reads in[len] or writes past out[cap).
 */
int mbx_base64_decoded_size(const char *in, size_t len, size_t *size, mbx_detail *detail);
int mbx_base64_decode(const char *in, size_t len, void *out, size_t cap, size_t *written,
                      mbx_detail *detail);
/* Encoded length of n bytes (padded), excluding any NUL: 4 * ceil(n / 3). */
size_t mbx_base64_encoded_size(size_t n);
/* Writes the padded encoding of in[0..n) into out (mbx_base64_encoded_size(n) bytes, no NUL). */
void mbx_base64_encode(const void *in, size_t n, char *out);

/*
 * Number formatting for JSON, no NUL written; out must hold MBX_NUMBER_MAX
 * bytes.  mbx_format_f32 writes exactly what printf("%.9g", (double)v)
 * writes (so it reads back as the same float32), about 20 ns a value;
 * mbx_format_f64 writes "%.17g".  v must be finite.  Return the length.
 * The rare cases mbx_format_f32 hands to snprintf, and mbx_format_f64,
 * assume LC_NUMERIC "C", the default of a program that never calls
 * setlocale().  Thread-safe, no allocation.
 */
#define MBX_NUMBER_MAX 32
size_t mbx_format_f32(float v, char *out);
size_t mbx_format_f64(double v, char *out);
size_t mbx_format_i64(int64_t v, char *out);

#endif
