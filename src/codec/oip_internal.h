/*
 * oip_internal.h - what the Open Inference Protocol codec's files share and
 * nothing else uses: the first pass over a request (JSON header and binary
 * framing of every input), the tensor loaders that turn an input's JSON
 * data or binary bytes into float32 / int64 / byte arrays, and the parsers
 * of the request parameters and requested outputs.
 */
#ifndef MBX_CODEC_OIP_INTERNAL_H
#define MBX_CODEC_OIP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "codec_internal.h"
#include "oip.h"

#define OIP_MAX_RANK 8

/* One entry of "inputs" after the framing pass: checked for structure only. */
typedef struct oip_tensor {
    const char *name;          /* the input's "name", inside the JSON document */
    size_t index;              /* position in "inputs" */
    mbx_oip_dtype dtype;
    int rank;                  /* 0 .. OIP_MAX_RANK */
    int64_t shape[OIP_MAX_RANK];
    int64_t count;             /* product of shape, <= MBX_CODEC_MAX_ELEMENTS */
    const json_t *data;        /* the "data" array, or NULL for binary */
    const uint8_t *bytes;      /* binary: nbytes bytes inside the body */
    size_t nbytes;
    size_t offset;             /* binary: offset of bytes in the body */
} oip_tensor;

/* The whole request after the framing pass. */
typedef struct oip_frame {
    json_t *root;              /* the parsed JSON header (owned) */
    const char *id;            /* "id" or NULL */
    const json_t *parameters;  /* object or NULL */
    const json_t *outputs;     /* array or NULL */
    size_t num_inputs;
    oip_tensor *inputs;        /* [num_inputs], owned */
} oip_frame;

/*
 * Parses the JSON header with jansson and checks the binary framing of
 * every input (sizes against shape x datatype, bounds, trailing bytes) and
 * the structure of the root and of each input.  Returns 0 with f filled
 * (release with oip_frame_release), or an error with f released.
 */
int oip_frame_parse(const uint8_t *body, size_t len, size_t header_len, oip_frame *f,
                    mbx_detail *detail);
void oip_frame_release(oip_frame *f);

/* Sets p to "inputs[<name>]" (known input names) or "inputs[<index>]". */
void oip_tensor_path(jpath *p, const oip_tensor *t, int known_name);

/* "[2,100,5]" into buf (cut with "..." when it does not fit). */
const char *oip_shape_str(const int64_t *shape, int rank, char *buf, size_t cap);

/*
 * The tensor's float32 values, when usable in place: binary FP32 on a
 * little-endian host, 4-byte aligned.  NULL otherwise.
 */
const float *oip_tensor_f32_in_place(const oip_tensor *t);
/* Same for binary INT64 (8-byte aligned) as int64_t. */
const int64_t *oip_tensor_i64_in_place(const oip_tensor *t);

/*
 * Loaders into dst[t->count], from JSON data or binary bytes.  The tensor's
 * rank must be <= MBX_TENSOR_MAX_RANK (element paths).  f32 accepts FP16,
 * BF16, FP32, FP64 (FP16/BF16 widened exactly, FP64 rounded; JSON numbers
 * for FP16/BF16 are first rounded to that type) and fails with
 * MBX_E_NOT_FINITE on NaN, infinity or a value beyond the type's range;
 * i64 accepts INT32 and INT64; bool accepts BOOL and fails with
 * MBX_E_OUT_OF_RANGE on a byte other than 0 or 1.  JSON data may be flat
 * or nested as the shape says (MBX_E_SHAPE_MISMATCH otherwise), elements
 * of the wrong JSON type fail with MBX_E_WRONG_TYPE.  Errors name the element
 * ("inputs[loc][1][7][2]").  dst may be partly written on failure.
 */
int oip_load_f32(const oip_tensor *t, float *dst, mbx_detail *detail);
/*
 * Binary elements [first, first + n) of t as float32 into dst[n]; returns
 * the index (from first) of the first NaN or infinity (FP64: or beyond
 * float32's range), or n.  oip_load_fail gives oip_load_f32's error for
 * element i of t.  No allocation.
 */
int64_t oip_load_f32_range(const oip_tensor *t, int64_t first, int64_t n, float *dst);
int oip_load_fail(const oip_tensor *t, int64_t i, mbx_detail *detail);
int oip_load_i64(const oip_tensor *t, int64_t *dst, mbx_detail *detail);
int oip_load_bool(const oip_tensor *t, uint8_t *dst, mbx_detail *detail);
/* (oip_load_bool with dst NULL and binary bytes only validates them, for use in place.) */
/* Checks JSON data's structure and count against the shape, allocating nothing. */
int oip_check_data(const oip_tensor *t, mbx_detail *detail);

/* The request parameters that are not configuration keys. */
typedef struct oip_params {
    int binary_data_output;        /* default 0 */
    const char *anchor_preset;     /* or NULL; inside the JSON document */
    mbx_oip_dtype gradient_datatype; /* default FP32 */
} oip_params;

/*
 * Parses the request "parameters" object (NULL: none): the configuration
 * keys into cfg (already holding defaults; types and names only, ranges are
 * mbx_config_validate's), variances from variance_center/variance_size or
 * variance_cx/cy/w/h, the others into op.  Errors name "parameters.<key>".
 */
int oip_params_parse(const json_t *params, mbx_config *cfg, oip_params *op, mbx_detail *detail);

/*
 * Parses "outputs" (NULL or empty: the default set, every output but the
 * sparse ones) into req->output / binary / num_outputs; binary_default is
 * the request's binary_data_output.
 */
int oip_outputs_parse(const json_t *outputs, int binary_default, mbx_oip_request *req,
                      mbx_detail *detail);

#endif
