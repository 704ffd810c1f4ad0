/*
 * oip.h - the Open Inference Protocol (KServe v2) codec of the /v2 endpoints,
 * with Triton's binary tensor data extension in both directions.
 *
 * Request: a JSON header (the only part jansson sees) optionally followed by
 * the raw little-endian bytes of the inputs that carry
 * parameters.binary_data_size, in input order.  Inputs of the model
 * "multibox_loss", by name:
 *   loc          FP32 | FP16 | BF16 | FP64   [B, A, 4]
 *   conf         FP32 | FP16 | BF16 | FP64   [B, A, C]
 *   anchors      FP32 [A, 4]    (or request parameter anchor_preset)
 *   gt_boxes     FP32 [N, 4]    (all images' boxes, image after image)
 *   gt_labels    INT32 | INT64 [N]
 *   gt_counts    INT32 [B]      (boxes per image, summing to N)
 *   gt_difficult BOOL [N]       (optional, one byte 0/1 each)
 * Request parameters: the configuration keys of multibox-semantics.md under
 * their names (variances as variance_center + variance_size, or
 * variance_cx, variance_cy, variance_w, variance_h), anchor_preset,
 * gradient_datatype (FP32 | FP16 | BF16), binary_data_output.
 *
 * Response: outputs loss, conf_loss, loc_loss, normalizer FP32 [1];
 * num_positives, num_negatives INT32 [1]; per_image_loss FP32 [B]; grad_loc
 * [B, A, 4]; grad_conf [B, A, C]; sparse grad_loc_rows INT32 [P] +
 * grad_loc_values [P, 4], grad_conf_rows INT32 [K] + grad_conf_values [K, C]
 * (rows: flat anchor index b*A + a, ascending).  Gradient values are FP32
 * or gradient_datatype.  Each output is JSON "data" or binary, as asked.
 *
 * Nothing here does I/O; every function is thread-safe (no shared state).
 */
#ifndef MBX_CODEC_OIP_H
#define MBX_CODEC_OIP_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define MBX_OIP_MODEL_NAME "multibox_loss"
#define MBX_OIP_SERVER_NAME "multibox"

/* Tensor datatypes of the protocol (only some are accepted anywhere). */
typedef enum mbx_oip_dtype {
    MBX_OIP_BOOL = 0,
    MBX_OIP_UINT8, MBX_OIP_UINT16, MBX_OIP_UINT32, MBX_OIP_UINT64,
    MBX_OIP_INT8, MBX_OIP_INT16, MBX_OIP_INT32, MBX_OIP_INT64,
    MBX_OIP_FP16, MBX_OIP_FP32, MBX_OIP_FP64, MBX_OIP_BF16,
    MBX_OIP_BYTES,
    MBX_OIP_DTYPE_COUNT
} mbx_oip_dtype;

/* "FP32" etc.; NULL for a value out of range. */
const char *mbx_oip_dtype_name(mbx_oip_dtype t);
/* Parses a datatype name (case-sensitive, as the protocol says); 0 or -1. */
int mbx_oip_dtype_parse(const char *name, mbx_oip_dtype *t);
/* Bytes per element, 0 for BYTES (variable length). */
size_t mbx_oip_dtype_size(mbx_oip_dtype t);

/* The outputs, in the order a response lists them when the request names none. */
typedef enum mbx_oip_output {
    MBX_OIP_OUT_LOSS = 0,
    MBX_OIP_OUT_CONF_LOSS,
    MBX_OIP_OUT_LOC_LOSS,
    MBX_OIP_OUT_NORMALIZER,
    MBX_OIP_OUT_NUM_POSITIVES,
    MBX_OIP_OUT_NUM_NEGATIVES,
    MBX_OIP_OUT_PER_IMAGE_LOSS,
    MBX_OIP_OUT_GRAD_LOC,
    MBX_OIP_OUT_GRAD_CONF,
    MBX_OIP_OUT_GRAD_LOC_ROWS,
    MBX_OIP_OUT_GRAD_LOC_VALUES,
    MBX_OIP_OUT_GRAD_CONF_ROWS,
    MBX_OIP_OUT_GRAD_CONF_VALUES,
    MBX_OIP_OUT_COUNT
} mbx_oip_output;

/* The output's protocol name ("grad_conf_rows"); NULL out of range. */
const char *mbx_oip_output_name(mbx_oip_output o);

/*
 * A parsed, validated inference request.
 *
 * core.config and core.batch are ready for the loss core (mbx_loss_new with
 * mbx_oip_request_shape(), then mbx_loss_compute or the split API);
 * core.max_boxes is the largest per-image GT count.  core.outputs is unused
 * and core.storage is NULL: never pass &core to mbx_request_free().
 *
 * core.batch's pointers point either INTO THE BODY the request was parsed
 * from (FP32 tensors whose bytes are 4-byte aligned, INT64 labels 8-byte
 * aligned, BOOL difficult flags, on a little-endian host) or into buffers
 * the request owns (converted tensors, JSON data, a generated preset).  So
 * the body buffer must stay valid and unmodified until mbx_oip_request_free().
 * To get the in-place path, put the body in memory so that
 * body + header_len is 16-byte aligned (e.g. receive it at an offset of
 * (-header_len) mod 16 into a malloc'ed buffer); FP32 tensors are then used
 * in place when every binary tensor before them has a size that is a
 * multiple of 4 bytes.
 */
typedef struct mbx_oip_request {
    mbx_request core;
    int num_outputs;                      /* entries used in output[] and binary[] */
    mbx_oip_output output[MBX_OIP_OUT_COUNT]; /* in response order, no repeats */
    uint8_t binary[MBX_OIP_OUT_COUNT];    /* per entry of output[]: 1 binary, 0 JSON data */
    mbx_oip_dtype gradient_datatype;      /* FP32 (default), FP16 or BF16 */
    const char *id;                       /* request "id" to echo, or NULL; owned */
    int in_place;                         /* number of tensors used in place (for tests, metrics) */
    struct mbx_oip_storage *storage;      /* private */
} mbx_oip_request;

/*
 * Parses and validates an inference request body of len bytes.
 *
 * header_len is the value of the Inference-Header-Content-Length header:
 * the JSON header is body[0, header_len) and the binary tensors follow;
 * pass SIZE_MAX (or 0) when the header is absent: the whole body is JSON
 * and no input may then carry bytes.  The body need not be NUL-terminated.
 *
 * Returns 0 and a new *out (free with mbx_oip_request_free), or a negative
 * code with detail naming the input, e.g.
 * "inputs[conf]: shape [2,100,5] disagrees with loc [2,99,4]":
 *   400 class: MBX_E_BAD_FRAMING (header length beyond the body, binary
 *     size that disagrees with shape x datatype, bytes past the body's end,
 *     trailing bytes, unknown datatype, data and binary_data_size both or
 *     binary data without a header length), MBX_E_MALFORMED_JSON;
 *   422 class: MBX_E_MISSING_FIELD, MBX_E_UNKNOWN_FIELD (unknown or
 *     duplicated input, output or key), MBX_E_WRONG_TYPE (a datatype the
 *     input does not accept, a JSON value of the wrong type),
 *     MBX_E_SHAPE_MISMATCH, MBX_E_SHAPE_OVERFLOW, MBX_E_OUT_OF_RANGE,
 *     MBX_E_BAD_LABEL, MBX_E_DEGENERATE_BOX, MBX_E_NOT_FINITE,
 *     MBX_E_BAD_CONFIG, MBX_E_UNKNOWN_PRESET;
 *   MBX_E_OUT_OF_MEMORY.
 * The framing of every input (400) is checked before the inputs' names,
 * datatypes and shapes are judged (422), so a body that is both badly framed
 * and invalid gets 400; an input whose own JSON structure is broken (no
 * "shape", an unknown member) is reported when the first pass reaches it.
 * Every shape is checked (overflow, element cap, agreement with the byte
 * count or the JSON data) before anything is allocated from it.  loc and conf used in place are
 * not scanned for NaN here (the core's per-image check reports them);
 * converted ones are.  On failure *out is NULL and nothing leaks.
 */
int mbx_oip_request_parse(const uint8_t *body, size_t len, size_t header_len,
                          mbx_oip_request **out, mbx_detail *detail);

/*
 * Flag of mbx_oip_request_parse_ex: binary loc and conf that cannot be used
 * in place (FP16, BF16, FP64, unaligned FP32) are neither converted nor
 * scanned: core.batch.loc / .conf stay NULL for them and the caller widens
 * one image (or some rows) at a time with mbx_oip_request_load_input(), so
 * no float32 copy of the whole tensor exists.  The body must then stay
 * valid until the last load.  A NaN or infinity in them is found by those
 * loads; mbx_oip_request_input_fail() gives the error the plain parse would
 * have returned (the plain parse checks loc entirely before conf).
 */
#define MBX_OIP_PARSE_DEFER_INPUTS 1u

enum { MBX_OIP_INPUT_LOC = 0, MBX_OIP_INPUT_CONF = 1 };

int mbx_oip_request_parse_ex(const uint8_t *body, size_t len, size_t header_len, unsigned flags,
                             mbx_oip_request **out, mbx_detail *detail);
/*
 * Where the inputs of a binary request lie (offsets from the body's first
 * byte), read from the JSON header and the framing alone: a server may
 * start on image i once the first mbx_oip_layout_image_end(l, i) bytes of
 * the body are in, since parse reads only the bytes before prefix_end and
 * image i's loss reads only its own slices of loc and conf.  Clients that
 * send anchors and the gt_* inputs first, then loc, then conf, let it start
 * early.  body holds at least header_len bytes; len is the whole body's
 * length.  Returns 0, or -1 when the request has no such layout (no header
 * length, loc or conf as JSON data or not [B, A, w], framing the parse will
 * reject): then it is read whole before anything starts.
 */
typedef struct mbx_oip_layout {
    int64_t batch;            /* B */
    size_t prefix_end;        /* end of the header and of every input but loc and conf */
    size_t loc_offset, loc_image_bytes;
    size_t conf_offset, conf_image_bytes;
} mbx_oip_layout;
int mbx_oip_request_layout(const uint8_t *body, size_t len, size_t header_len,
                           mbx_oip_layout *out);
/* The body bytes that must be in before image (0 <= image < batch) can start. */
size_t mbx_oip_layout_image_end(const mbx_oip_layout *l, int64_t image);

/* 1 when input (MBX_OIP_INPUT_LOC or _CONF) was deferred by the parse. */
int mbx_oip_request_deferred(const mbx_oip_request *req, int input);
/*
 * Widens image's rows of a deferred input into dst, the image's [A][w]
 * float32 array (w = 4 for loc, C for conf): every row when rows is NULL,
 * else only rows[0..n), given as flat indices image * A + a (other rows of
 * dst are left alone).  Returns the index within the image's [A][w] values
 * of the first NaN or infinity (FP64: or beyond float32's range), or -1 when
 * all are finite; after a bad value the rest may be unwritten.  Reads only
 * the body; thread-safe; no allocation.
 */
int64_t mbx_oip_request_load_input(const mbx_oip_request *req, int input, int64_t image,
                                   const int32_t *rows, int64_t n, float *dst);
/* The plain parse's error for element index of image's values of input; returns its code. */
int mbx_oip_request_input_fail(const mbx_oip_request *req, int input, int64_t image,
                               int64_t index, mbx_detail *detail);
/* Bit (1u << mbx_oip_output) per output the request asks for. */
uint32_t mbx_oip_request_outputs(const mbx_oip_request *req);
/* Frees a request; NULL is a no-op.  The body may be released afterwards. */
void mbx_oip_request_free(mbx_oip_request *req);

/* The shape a loss context must be created with for req, with num_slots slots. */
mbx_shape mbx_oip_request_shape(const mbx_oip_request *req, int num_slots);

/*
 * Allocates the result arrays req's outputs need: per_image for
 * per_image_loss, grad_loc / grad_conf for any dense or sparse gradient
 * output, roles for the sparse ones.  The scalar fields, per_image and
 * roles are zeroed; grad_loc and grad_conf are not (the core writes every
 * element of them).
 * Release with mbx_oip_result_release (frees the arrays, zeroes *res;
 * safe on a zeroed or released result).  Returns 0 or MBX_E_OUT_OF_MEMORY
 * (then nothing stays allocated), MBX_E_SHAPE_OVERFLOW.
 */
int mbx_oip_result_alloc(const mbx_oip_request *req, mbx_result *res, mbx_detail *detail);
/*
 * Flag of mbx_oip_result_alloc_ex (and mbx_result_alloc_ex for /v1): the
 * sparse gradient outputs will come from the core's sparse units
 * (mbx_loss_grad_image_sparse) as an mbx_sparse_grads, so they need no
 * dense arrays and no roles; dense arrays are allocated only for the dense
 * outputs asked.
 */
int mbx_oip_result_alloc_ex(const mbx_oip_request *req, mbx_result *res, unsigned flags,
                            mbx_detail *detail);
void mbx_oip_result_release(mbx_result *res);
/*
 * Whether req's dense gradients can be sent from sparse rows: it asks for
 * grad_loc or grad_conf, every one of them as binary FP32 bytes.  With
 * MBX_RESULT_GRADS_FROM_ROWS, mbx_oip_result_alloc_ex then gives no dense
 * gradient arrays; mbx_oip_response_render_sparse, given the rows, leaves
 * those outputs' segments empty (base NULL) and describes them in
 * resp->rows for the sender (mbx_dense_rows_raw_read).
 */
int mbx_oip_grads_from_rows(const mbx_oip_request *req);

/* ------------------------------------------------------------- responses */

/* One piece of a response body; same layout as struct iovec and MHD_IoVec. */
typedef struct mbx_oip_segment {
    const void *base;
    size_t len;
} mbx_oip_segment;

/*
 * A rendered 200 response: the body is segments[0..num_segments) in order;
 * segments[0] is the JSON header (header, header_len bytes, also
 * NUL-terminated).  When binary is 1 the body has binary tensors after the
 * header: send Inference-Header-Content-Length: header_len and
 * Content-Type: application/octet-stream; otherwise the body is only the
 * JSON (num_segments == 1), send Content-Type: application/json.
 *
 * Dense FP32 gradients are not copied: their segments point into the
 * mbx_result's grad_loc / grad_conf arrays, so the result must stay valid
 * until the response has been sent and freed.  Everything else (header,
 * scalars, FP16/BF16 conversions, sparse gathers) is owned by the response.
 */
typedef struct mbx_oip_response {
    char *header;
    size_t header_len;
    mbx_oip_segment *segments;
    size_t num_segments;
    size_t body_len;       /* sum of every segment's len */
    int binary;
    /*
     * Dense gradients sent from sparse rows: rows_segment[0] (grad_loc) and
     * [1] (grad_conf) are the indices of their segments (base NULL), 0 for
     * none; the bytes of such a segment are those of rows[k].
     */
    size_t rows_segment[2];
    mbx_dense_rows rows[2];
    struct mbx_oip_response_storage *storage; /* private */
} mbx_oip_response;

/*
 * Renders the response to req for its computed result res (allocated with
 * mbx_oip_result_alloc and filled by the core).  Outputs are binary or JSON
 * data as req asks; force_json renders every output as JSON data instead
 * (num_segments is then 1).  Returns 0, or MBX_E_OUT_OF_MEMORY or
 * MBX_E_INTERNAL (a non-finite value, which the core never produces); on
 * failure *resp is zeroed and nothing leaks.  Release with
 * mbx_oip_response_free (safe on a zeroed response).
 */
int mbx_oip_response_render(const mbx_oip_request *req, const mbx_result *res, int force_json,
                            mbx_oip_response *resp, mbx_detail *detail);
/*
 * The same with the sparse outputs given by sp (the whole batch's rows and
 * values, see mbx_sparse_grads) instead of gathered from the result's dense
 * arrays; sp NULL is mbx_oip_response_render.  FP32 binary values are sent
 * from sp's arrays without a copy, so they must stay valid until the
 * response has been sent and freed.
 */
int mbx_oip_response_render_sparse(const mbx_oip_request *req, const mbx_result *res,
                                   const mbx_sparse_grads *sp, int force_json,
                                   mbx_oip_response *resp, mbx_detail *detail);
void mbx_oip_response_free(mbx_oip_response *resp);

/*
 * JSON documents of the metadata endpoints: GET /v2 (server name, version,
 * extensions including "binary_tensor_data"), GET /v2/models/multibox_loss
 * (inputs and outputs with datatypes and shapes, -1 for variable
 * dimensions), and the /v2 error body {"error": "<code name>: <message>"}
 * (message NULL: the code's default message).  *out is malloc'ed (free with
 * free()) and NUL-terminated, *len excludes the NUL.  0 or MBX_E_OUT_OF_MEMORY.
 */
int mbx_oip_server_metadata_json(char **out, size_t *len);
int mbx_oip_model_metadata_json(char **out, size_t *len);
int mbx_oip_error_json(int code, const char *message, char **out, size_t *len);

#endif
