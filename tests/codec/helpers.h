/*
 * helpers.h - shared by the codec tests: file and folder reading, the
 * parse -> compute -> render path in one call, tensor conversions of a
 * request (to nested arrays, to base64) and a decoder of response tensors
 * written independently of the codec (its own base64 decoder), and the
 * golden comparison with the tolerances of the golden README.
 */
#ifndef MBX_TEST_CODEC_HELPERS_H
#define MBX_TEST_CODEC_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "codec.h"

/* Reads a whole file (NUL-terminated, *len without it); NULL on failure. */
char *th_read_file(const char *path, size_t *len);
/* Sorted names of the entries of dir matching suffix ("" for all, no "." or ".."); NULL-terminated. */
char **th_list_dir(const char *dir, const char *suffix);
void th_free_list(char **list);
/* getenv(name) or fail the test with a message. */
const char *th_env(const char *name);

/*
 * parse + mbx_loss_new(1 slot) + result alloc + compute + render.  Returns
 * 0 and *response (malloc'ed text) or the first failing code, with detail.
 */
int th_run_request(const char *body, size_t len, char **response, size_t *response_len,
                   mbx_detail *detail);

/* Converts a {"shape","data"} or nested tensor into a fresh nested array. */
json_t *th_to_nested(const json_t *tensor);
/* Converts a tensor into {"shape", "dtype", "b64"}, float32 (dtype_size 4) or float64 (8). */
json_t *th_to_b64(const json_t *tensor, int dtype_size, int rank);
/*
 * Rewrites every tensor of a request (anchors when a tensor, loc, conf,
 * each image's boxes) with fn(tensor, rank) -> new reference.
 */
typedef json_t *(*th_tensor_fn)(const json_t *tensor, int rank);
void th_rewrite_tensors(json_t *request, th_tensor_fn fn);

/*
 * Decodes any TENSOR form of a response into float32 values: *data
 * malloc'ed, *count elements; shape[] gets up to 4 dims.  Independent of
 * the codec's own decoder.  Returns 0, or -1 when malformed.
 */
int th_decode_tensor(const json_t *t, float **data, int64_t *count, int64_t *shape, int *rank);
/* The test's own base64 decoder (returns -1 on bad input). */
int th_b64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len);
/* The test's own base64 encoder; malloc'ed, NUL-terminated. */
char *th_b64_encode(const unsigned char *in, size_t n);

/* The golden cases' file names (th_free_list), NULL when the directory cannot be read. */
char **th_golden_case_names(void);
/* Golden case name's request with every tensor as b64 float32, as compact text (malloc'ed). */
char *th_golden_b64_body(const char *name);
/*
 * Body k (malloc'ed; NULL past the last) of the faulty /v1 requests, made
 * from golden ssd300_voc_b2 in b64: NaN, infinity, bad characters and
 * misplaced '=' in loc and conf, alone and together, with a degenerate GT
 * box, and with one input's text escaped (so jansson reads it whole);
 * *what describes it.  Every one fails the plain parse.
 */
char *th_fault_body(size_t k, const char **what);

/*
 * Compares a rendered response against a golden "expected": losses within
 * relative 1e-5, counts and matches exactly, per_image when present,
 * gradients within 1e-6 + 1e-4 * max|expected| (dense or sparse forms).
 * Fails the running cmocka test with a message naming what differs; label
 * goes into that message.
 */
void th_compare_expected(const json_t *response, const json_t *expected, const char *label);

/* Dense gradient from a response member (dense or sparse); *count elements. */
float *th_dense_gradient(const json_t *response, const char *name, int64_t rows, int64_t width);

#endif
