/*
 * test_v2_util.h - what the /v2 (Open Inference Protocol) service tests
 * share: HTTP through libcurl with the extension's headers in both
 * directions (Inference-Header-Content-Length, no Content-Type at all),
 * and a golden /v1 request rewritten as an OIP request with JSON data or
 * binary tensors.  The binary answers are decoded by tests/codec's
 * test_oip_util.c decoder, written from the binary extension's text.
 */
#ifndef MBX_TEST_V2_UTIL_H
#define MBX_TEST_V2_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "test_oip_util.h"

#define V2_INFER "/v2/models/multibox_loss/infer"

/* Every output name of the model, in the default response order. */
#define V2_NUM_OUTPUTS 13
extern const char *const v2_every_output[V2_NUM_OUTPUTS];

typedef struct v2_resp {
    long status;           /* 0 on a transport failure */
    unsigned char *body;   /* NUL-terminated (one byte past len), malloc'ed */
    size_t len;
    char content_type[128];
    char retry_after[32];
    char allow[64];
    size_t header_len;     /* Inference-Header-Content-Length, SIZE_MAX when absent */
    char curl_error[256];
} v2_resp;

typedef struct v2_req {
    const char *method;       /* NULL: POST when body, else GET */
    const char *url;
    const void *body;         /* NULL: none */
    size_t len;
    const char *content_type; /* NULL: no Content-Type header at all */
    size_t header_len;        /* SIZE_MAX: no Inference-Header-Content-Length */
    int chunked;              /* send the body chunked (no Content-Length) */
    void *curl;               /* easy handle to reuse, or NULL */
    long timeout_ms;          /* 0: 120 s */
} v2_req;

long v2_do(const v2_req *req, v2_resp *resp);
long v2_get(const char *url, v2_resp *resp);
void v2_resp_free(v2_resp *resp);
/* The code of a /v2 error body {"error": "<code>: <message>"} ("" if not one); static per-thread. */
const char *v2_error_code(const v2_resp *resp);
/* Its message (after "<code>: "), "" if not one; static per-thread. */
const char *v2_error_message(const v2_resp *resp);

/* How a golden request is rewritten. */
typedef struct v2_form {
    int binary_in;            /* inputs as binary tensors (else JSON data) */
    int binary_out;           /* parameters.binary_data_output */
    const char *loc_dtype;    /* datatype of loc and conf: FP32 (NULL), FP16, BF16, FP64 */
    const char *round_to;     /* FP32 inputs holding values rounded to FP16 or BF16, or NULL */
    const char *labels_dtype; /* INT32 (NULL) or INT64 */
    int all_outputs;          /* list every output, sparse ones included (else none: the default) */
    const char *gradient_datatype; /* parameter gradient_datatype, or NULL */
    const char *conf_dtype;   /* datatype of conf when it differs from loc_dtype, or NULL */
    const char *const *outputs; /* NULL-terminated output names to ask (without all_outputs) */
    int targets_first;        /* inputs ordered anchors, gt_*, loc, conf (else loc, conf, anchors,
                               * gt_*): the order that lets the server start before the end */
} v2_form;

typedef struct v2_built {
    tu_bytes body;
    size_t header_len;        /* the JSON header's length */
    int binary;               /* the body carries binary tensors */
} v2_built;

/* Builds the OIP request of a golden "request" object. */
void v2_build(const json_t *request, const v2_form *form, v2_built *out);
/* POSTs it to server base url + V2_INFER (header length sent when binary). */
long v2_post_built(const char *url, const v2_built *b, const char *content_type, v2_resp *resp);

/* Offset in b's body of input name's binary bytes (and their size in *size); fails the test
 * when there is no such binary input. */
size_t v2_input_offset(const v2_built *b, const char *name, size_t *size);

/* Decodes a 200 answer with the extension's decoder; fails the test on a bad body. */
void v2_decode(const v2_resp *resp, tu_response *out, const char *label);

/* Exact (bit for bit) equality of two decoded outputs of the same name. */
void v2_same_output(const tu_response *a, const tu_response *b, const char *name,
                    const char *label);

#endif
