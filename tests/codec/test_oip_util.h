/*
 * test_oip_util.h - shared by the Open Inference Protocol tests: a byte
 * builder for request bodies, placement of a body in memory (aligned for
 * the in-place path, or ending against an unreadable guard page so any
 * over-read crashes), and a decoder of responses written from the
 * description of Triton's binary tensor data extension, independently of
 * src/codec/oip_response.c.
 */
#ifndef MBX_TEST_OIP_UTIL_H
#define MBX_TEST_OIP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* A growable byte buffer; aborts the test when out of memory. */
typedef struct tu_bytes {
    unsigned char *data;
    size_t len, cap;
} tu_bytes;

void tu_put(tu_bytes *b, const void *p, size_t n);
/* Appends one value as the little-endian bytes of datatype ("FP32", "FP16", "BF16",
 * "FP64", "INT32", "INT64", "BOOL", "UINT8"); FP16/BF16 round to nearest even. */
void tu_put_value(tu_bytes *b, const char *datatype, double v);
void tu_free(tu_bytes *b);

/* A body placed in its own mapping. */
typedef struct tu_placed {
    unsigned char *map;
    size_t map_len;
    const uint8_t *body;
} tu_placed;

/* Copies len bytes so that body + header_len is 64-byte aligned plus misalign bytes. */
const uint8_t *tu_place_aligned(tu_placed *pl, const void *bytes, size_t len, size_t header_len,
                                size_t misalign);
/* Copies len bytes so that they end exactly where a PROT_NONE page begins. */
const uint8_t *tu_place_guarded(tu_placed *pl, const void *bytes, size_t len);
void tu_placed_free(tu_placed *pl);

/* One decoded output: values widened to double, row-major. */
typedef struct tu_tensor {
    char name[40];
    char datatype[12];
    int rank;
    int64_t shape[4];
    int64_t count;
    int binary;          /* 1 if it came as binary data */
    double *values;
} tu_tensor;

typedef struct tu_response {
    json_t *header;
    int num;
    tu_tensor t[24];
} tu_response;

/*
 * Decodes a response body.  header_len: the Inference-Header-Content-Length
 * response header, or SIZE_MAX when absent (then the whole body is JSON).
 * Returns 0, or -1 with a message in err (256 bytes) when the body does not
 * follow the extension (sizes that disagree with shape x datatype, bytes
 * left over or missing, unknown datatypes).
 */
int tu_decode(const unsigned char *body, size_t len, size_t header_len, tu_response *out,
              char *err);
const tu_tensor *tu_find(const tu_response *r, const char *name);
void tu_response_free(tu_response *r);

/* FP16 / BF16 bit patterns to double, from the formats' definitions. */
double tu_f16(uint16_t h);
double tu_bf16(uint16_t b);

/* OIP request building from golden {"shape","data"} tensors (shared by the codec and service tests). */
json_t *tu_input_desc(const char *name, const char *dtype, int rank, const int64_t *shape);
void tu_add_input(json_t *inputs, tu_bytes *bin, const char *name, const char *dtype, int rank,
                  const int64_t *shape, const double *vals, size_t n, int binary);
double *tu_tensor_values(const json_t *t, size_t *n, int64_t *shape, int *rank);

#endif
