/*
 * tensor.c - reading a TENSOR out of a jansson document in two steps: probe
 * (recognise the form, check every type, that nested arrays are
 * rectangular, that the shape neither overflows nor exceeds the element cap
 * and that the data hold exactly that many values: all before anything is
 * allocated) and fill (copy the values as float32 into storage sized from
 * the probed shape, rejecting NaN, infinities and values beyond float32).
 * Errors name the JSON path.  No allocation here at all.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "codec_internal.h"

const char *mbx_json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

void mbx_tensor_index_path(jpath *p, const int64_t *shape, int rank, int64_t flat)
{
    int64_t idx[MBX_TENSOR_MAX_RANK];
    for (int k = rank - 1; k >= 0; k--) {
        int64_t d = shape[k] > 0 ? shape[k] : 1;
        idx[k] = flat % d;
        flat /= d;
    }
    for (int k = 0; k < rank; k++)
        jpath_index(p, idx[k]);
}

/* Checks dim <= cap and the running product; 0 or MBX_E_SHAPE_OVERFLOW. */
static int mul_checked(int64_t *count, int64_t dim)
{
    if (dim > MBX_CODEC_MAX_ELEMENTS)
        return MBX_E_SHAPE_OVERFLOW;
    if (dim != 0 && *count > MBX_CODEC_MAX_ELEMENTS / dim)
        return MBX_E_SHAPE_OVERFLOW;
    *count *= dim;
    return 0;
}

static int shape_overflow(mbx_detail *detail, const jpath *p, int rank, const int64_t *shape)
{
    char dims[96];
    size_t n = 0;
    for (int k = 0; k < rank && n < sizeof dims - 24; k++)
        n += (size_t)snprintf(dims + n, sizeof dims - n, "%s%" PRId64, k ? "," : "", shape[k]);
    return jpath_fail(detail, MBX_E_SHAPE_OVERFLOW, p,
                      "shape [%s] exceeds the limit of %" PRId64 " elements", dims,
                      (int64_t)MBX_CODEC_MAX_ELEMENTS);
}

/* Reports the path of a nested element from its index vector. */
static void nested_path(jpath *p, const int64_t *idx, int depth)
{
    for (int k = 0; k < depth; k++)
        jpath_index(p, idx[k]);
}

/*
 * Walks nested arrays checking each level's length against shape and that
 * leaves are numbers.  idx holds the indices of the current position so a
 * path is built only on error.
 */
static int nested_check(const json_t *j, int level, int rank, const int64_t *shape, int64_t *idx,
                        jpath *p, mbx_detail *detail)
{
    if (level < rank && shape[level] < 0)
        return 0; /* below an empty level: nothing there to check */
    if (level == rank) {
        if (json_is_number(j))
            return 0;
        nested_path(p, idx, level);
        if (json_is_array(j))
            return jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p,
                              "expected a number, found an array (tensor of rank %d)", rank);
        return jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected a number, found %s",
                          mbx_json_type_name(j));
    }
    if (!json_is_array(j)) {
        nested_path(p, idx, level);
        if (json_is_number(j))
            return jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p,
                              "expected an array, found a number (tensor of rank %d)", rank);
        return jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected an array, found %s",
                          mbx_json_type_name(j));
    }
    int64_t n = (int64_t)json_array_size(j);
    if (n != shape[level]) {
        nested_path(p, idx, level);
        return jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p,
                          "has %" PRId64 " elements, expected %" PRId64
                          " like the first one at this depth",
                          n, shape[level]);
    }
    for (int64_t i = 0; i < n; i++) {
        idx[level] = i;
        int rc = nested_check(json_array_get(j, (size_t)i), level + 1, rank, shape, idx, p,
                              detail);
        if (rc)
            return rc;
    }
    return 0;
}

static int probe_nested(const json_t *j, int rank, mbx_tensor_src *src, jpath *p,
                        mbx_detail *detail)
{
    const json_t *cur = j;
    int64_t count = 1;
    int level, empty = 0;
    src->kind = MBX_TSRC_NESTED;
    src->json = j;
    /*
     * Infer the shape from the first element of each level.  Below an empty
     * level the dimensions are unknown (-1); when a non-array stops the
     * descent, the walk below reports it.
     */
    for (level = 0; level < rank; level++) {
        if (!json_is_array(cur))
            break;
        src->shape[level] = (int64_t)json_array_size(cur);
        if (src->shape[level] == 0) {
            empty = 1;
            level++;
            break;
        }
        cur = json_array_get(cur, 0);
    }
    for (int k = level; k < rank; k++)
        src->shape[k] = empty ? -1 : 0;
    for (int k = 0; k < rank; k++) {
        if (src->shape[k] < 0) {
            count = 0;
            break;
        }
        if (mul_checked(&count, src->shape[k]))
            return shape_overflow(detail, p, rank, src->shape);
    }
    src->count = count;
    int64_t idx[MBX_TENSOR_MAX_RANK] = {0};
    return nested_check(j, 0, rank, src->shape, idx, p, detail);
}

static int probe_object(const json_t *j, int rank, const mbx_lift *lift, mbx_tensor_src *src,
                        jpath *p, mbx_detail *detail)
{
    const char *key;
    const json_t *val;
    const json_t *shape = NULL, *data = NULL, *b64 = NULL, *dtype = NULL;
    size_t mark;
    int rc;

    json_object_foreach((json_t *)j, key, val) {
        if (strcmp(key, "shape") == 0)
            shape = val;
        else if (strcmp(key, "data") == 0)
            data = val;
        else if (strcmp(key, "b64") == 0)
            b64 = val;
        else if (strcmp(key, "dtype") == 0)
            dtype = val;
        else {
            mark = jpath_key(p, key);
            rc = jpath_fail(detail, MBX_E_UNKNOWN_FIELD, p,
                            "unknown field (a tensor has shape, data or dtype and b64)");
            jpath_restore(p, mark);
            return rc;
        }
    }
    if (!shape) {
        mark = jpath_key(p, "shape");
        rc = jpath_fail(detail, MBX_E_MISSING_FIELD, p, "missing (a tensor object needs it)");
        jpath_restore(p, mark);
        return rc;
    }
    if (data && b64) {
        mark = jpath_key(p, "b64");
        rc = jpath_fail(detail, MBX_E_UNKNOWN_FIELD, p,
                        "a tensor has either data or b64, not both");
        jpath_restore(p, mark);
        return rc;
    }
    if (!data && !b64) {
        mark = jpath_key(p, "data");
        rc = jpath_fail(detail, MBX_E_MISSING_FIELD, p, "missing (a tensor needs data or b64)");
        jpath_restore(p, mark);
        return rc;
    }

    /* shape: rank non-negative integers, product under the cap. */
    mark = jpath_key(p, "shape");
    if (!json_is_array(shape)) {
        rc = jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected an array of integers, found %s",
                        mbx_json_type_name(shape));
        jpath_restore(p, mark);
        return rc;
    }
    if ((int)json_array_size(shape) != rank || json_array_size(shape) > MBX_TENSOR_MAX_RANK) {
        rc = jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p, "has %zu dimensions, expected %d",
                        json_array_size(shape), rank);
        jpath_restore(p, mark);
        return rc;
    }
    int64_t count = 1;
    int overflow = 0;
    for (int k = 0; k < rank; k++) {
        const json_t *d = json_array_get(shape, (size_t)k);
        if (!json_is_integer(d)) {
            jpath_index(p, k);
            rc = jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected an integer, found %s",
                            mbx_json_type_name(d));
            jpath_restore(p, mark);
            return rc;
        }
        json_int_t v = json_integer_value(d);
        if (v < 0) {
            jpath_index(p, k);
            rc = jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p, "negative dimension %" PRId64,
                            (int64_t)v);
            jpath_restore(p, mark);
            return rc;
        }
        src->shape[k] = (int64_t)v;
        if (!overflow && mul_checked(&count, (int64_t)v))
            overflow = 1;
    }
    if (overflow) {
        rc = shape_overflow(detail, p, rank, src->shape);
        jpath_restore(p, mark);
        return rc;
    }
    jpath_restore(p, mark);
    src->count = count;

    if (data) {
        src->kind = MBX_TSRC_FLAT;
        src->json = data;
        mark = jpath_key(p, "data");
        if (!json_is_array(data)) {
            rc = jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected an array of numbers, found %s",
                            mbx_json_type_name(data));
            jpath_restore(p, mark);
            return rc;
        }
        if ((int64_t)json_array_size(data) != count) {
            rc = jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p,
                            "has %zu numbers, the shape needs %" PRId64, json_array_size(data),
                            count);
            jpath_restore(p, mark);
            return rc;
        }
        jpath_restore(p, mark);
    }
    if (dtype || b64) {
        mark = jpath_key(p, "dtype");
        if (!dtype) {
            rc = jpath_fail(detail, MBX_E_MISSING_FIELD, p,
                            "missing (b64 needs \"float32\" or \"float64\")");
            jpath_restore(p, mark);
            return rc;
        }
        if (!json_is_string(dtype)) {
            rc = jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected a string, found %s",
                            mbx_json_type_name(dtype));
            jpath_restore(p, mark);
            return rc;
        }
        if (strcmp(json_string_value(dtype), "float32") == 0) {
            src->dtype_size = 4;
        } else if (strcmp(json_string_value(dtype), "float64") == 0) {
            src->dtype_size = 8;
        } else {
            rc = jpath_fail(detail, MBX_E_OUT_OF_RANGE, p,
                            "unsupported dtype (expected \"float32\" or \"float64\")");
            jpath_restore(p, mark);
            return rc;
        }
        jpath_restore(p, mark);
    }
    if (b64) {
        size_t size;
        src->kind = MBX_TSRC_B64;
        mark = jpath_key(p, "b64");
        if (!json_is_string(b64)) {
            rc = jpath_fail(detail, MBX_E_WRONG_TYPE, p, "expected a base64 string, found %s",
                            mbx_json_type_name(b64));
            jpath_restore(p, mark);
            return rc;
        }
        src->b64 = json_string_value(b64);
        src->b64_len = json_string_length(b64);
        const mbx_lifted *it = mbx_lift_resolve(lift, &src->b64, &src->b64_len);
        mbx_detail sub = {0, ""};
        if (it && it->decoded) { /* valid base64 of these bytes */
            src->raw = (const unsigned char *)lift->body + it->raw;
            src->raw_len = size = it->raw_len;
            rc = 0;
        } else {
            rc = mbx_base64_decoded_size(src->b64, src->b64_len, &size, &sub);
        }
        if (rc) {
            rc = jpath_fail(detail, rc, p, "%s", sub.message);
            jpath_restore(p, mark);
            return rc;
        }
        if ((uint64_t)size != (uint64_t)count * (uint64_t)src->dtype_size) {
            rc = jpath_fail(detail, MBX_E_SHAPE_MISMATCH, p,
                            "decodes to %zu bytes, the shape needs %" PRId64 " values of %d bytes",
                            size, count, src->dtype_size);
            jpath_restore(p, mark);
            return rc;
        }
        jpath_restore(p, mark);
    }
    return 0;
}

int mbx_tensor_probe(const json_t *j, int rank, mbx_tensor_src *src, jpath *p,
                     mbx_detail *detail)
{
    return mbx_tensor_probe_lifted(j, rank, NULL, src, p, detail);
}

int mbx_tensor_probe_lifted(const json_t *j, int rank, const mbx_lift *lift, mbx_tensor_src *src,
                            jpath *p, mbx_detail *detail)
{
    memset(src, 0, sizeof *src);
    src->rank = rank;
    if (rank < 1 || rank > MBX_TENSOR_MAX_RANK)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT, "bad tensor rank %d", rank);
    if (json_is_array(j))
        return probe_nested(j, rank, src, p, detail);
    if (json_is_object(j))
        return probe_object(j, rank, lift, src, p, detail);
    return jpath_fail(detail, MBX_E_WRONG_TYPE, p,
                      "expected a tensor (nested arrays or an object with shape), found %s",
                      mbx_json_type_name(j));
}

/* One JSON number as float32; MBX_E_NOT_FINITE beyond float32's range. */
static int number_to_f32(const json_t *j, float *out)
{
    if (json_is_integer(j)) {
        *out = (float)json_integer_value(j);
        return 0;
    }
    double d = json_real_value(j);
    float f = (float)d;
    if (!isfinite(f))
        return MBX_E_NOT_FINITE;
    *out = f;
    return 0;
}

/* Error for element flat of a nested or flat tensor: j is the offending JSON value. */
static int element_error(int rc, const json_t *j, const mbx_tensor_src *src, int64_t flat,
                         jpath *p, mbx_detail *detail)
{
    size_t mark;
    if (src->kind == MBX_TSRC_NESTED) {
        mark = p->len;
        mbx_tensor_index_path(p, src->shape, src->rank, flat);
    } else {
        mark = jpath_key(p, "data");
        jpath_index(p, flat);
    }
    if (rc == MBX_E_NOT_FINITE)
        rc = jpath_fail(detail, rc, p, "%.9g is beyond float32's range", json_real_value(j));
    else
        rc = jpath_fail(detail, rc, p, "expected a number, found %s", mbx_json_type_name(j));
    jpath_restore(p, mark);
    return rc;
}

/* Error for element flat of a b64 tensor: NaN/infinite, or a finite double beyond float32. */
static int b64_value_error(const mbx_tensor_src *src, int64_t flat, int beyond_range, jpath *p,
                           mbx_detail *detail)
{
    jpath where;
    jpath_init(&where);
    mbx_tensor_index_path(&where, src->shape, src->rank, flat);
    size_t mark = jpath_key(p, "b64");
    int rc = jpath_fail(detail, MBX_E_NOT_FINITE, p, "element %s is %s", where.buf,
                        beyond_range ? "beyond float32's range" : "NaN or infinite");
    jpath_restore(p, mark);
    return rc;
}

/* Copies nested arrays (already checked rectangular) level by level. */
static int fill_nested(const json_t *j, int level, const mbx_tensor_src *src, float **dst,
                       int64_t *flat, jpath *p, mbx_detail *detail)
{
    size_t n = json_array_size(j);
    if (level == src->rank - 1) {
        for (size_t i = 0; i < n; i++) {
            const json_t *v = json_array_get(j, i);
            int rc = number_to_f32(v, *dst);
            if (rc)
                return element_error(rc, v, src, *flat, p, detail);
            (*dst)++;
            (*flat)++;
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = fill_nested(json_array_get(j, i), level + 1, src, dst, flat, p, detail);
        if (rc)
            return rc;
    }
    return 0;
}

static int b64_error(int rc, const mbx_detail *sub, jpath *p, mbx_detail *detail)
{
    size_t mark = jpath_key(p, "b64");
    rc = jpath_fail(detail, rc, p, "%s", sub->message);
    jpath_restore(p, mark);
    return rc;
}

/*
 * Bytes of characters [at, at + chunk) of src's text, as
 * mbx_base64_decode_part gives them; from the bytes decoded as the body
 * arrived when there are (the text was valid: no error then).
 */
static int text_chunk(const mbx_tensor_src *src, size_t at, size_t chunk, unsigned char *out,
                      size_t cap, size_t *got, mbx_detail *sub)
{
    if (!src->raw)
        return mbx_base64_decode_part(src->b64 + at, chunk, at, out, cap, got, sub);
    const size_t from = at / 4 * 3;
    size_t n = at + chunk >= src->b64_len ? src->raw_len - from : chunk / 4 * 3;
    if (n > cap)
        n = cap;
    memcpy(out, src->raw + from, n);
    *got = n;
    return 0;
}

/*
 * float32 b64: decodes 64 Ki characters (12288 floats) at a time straight
 * into dst and checks each chunk for NaN / infinity while it is in cache.
 * A bad character anywhere still wins over a non-finite value (400 before
 * 422), so the first non-finite index is only remembered until the whole
 * text has decoded.  With dst NULL every chunk decodes into one chunk-sized
 * buffer instead: the same checks, no values kept (mbx_tensor_check).
 */
static int fill_b64_f32(const mbx_tensor_src *src, float *dst, jpath *p, mbx_detail *detail)
{
    enum { CHARS = 65536, CHUNK_BYTES = CHARS / 4 * 3 };
    mbx_detail sub = {0, ""};
    const size_t bytes = (size_t)src->count * 4;
    unsigned char *chunk_buf = NULL;
    if (!dst && !(chunk_buf = mbx_codec_malloc(CHUNK_BYTES)))
        return mbx_detail_set(detail, MBX_E_OUT_OF_MEMORY, "out of memory checking a tensor");
    size_t done_chars = 0, at = 0;
    int64_t bad = -1;
    int rc = 0;
    while (done_chars < src->b64_len) {
        size_t chunk = src->b64_len - done_chars;
        size_t got;
        if (chunk > CHARS)
            chunk = CHARS;
        unsigned char *u = dst ? (unsigned char *)dst + at : chunk_buf;
        size_t cap = bytes - at;
        if (!dst && cap > CHUNK_BYTES)
            cap = CHUNK_BYTES;
        rc = text_chunk(src, done_chars, chunk, u, cap, &got, &sub);
        if (rc) {
            rc = b64_error(rc, &sub, p, detail);
            break;
        }
        if (done_chars + chunk < src->b64_len && got != chunk / 4 * 3) {
            mbx_detail_set(&sub, MBX_E_BAD_BASE64, "misplaced '=' padding before offset %zu",
                           done_chars + chunk);
            rc = b64_error(MBX_E_BAD_BASE64, &sub, p, detail);
            break;
        }
        const int64_t n = (int64_t)(got / 4);
        float *v = (float *)(void *)u; /* chunks start on whole floats */
        mbx_f32_from_le(v, n);
        if (bad < 0) {
            int64_t k = mbx_find_non_finite(v, n);
            if (k < n)
                bad = (int64_t)(at / 4) + k;
        }
        done_chars += chunk;
        at += got;
    }
    mbx_codec_free(chunk_buf);
    if (rc == 0 && bad >= 0)
        rc = b64_value_error(src, bad, 0, p, detail);
    return rc;
}

static int fill_b64(const mbx_tensor_src *src, float *dst, jpath *p, mbx_detail *detail)
{
    mbx_detail sub = {0, ""};
    int rc;
    if (src->dtype_size == 4)
        return fill_b64_f32(src, dst, p, detail);
    /*
     * float64: decode 4096 characters (384 doubles) at a time into the
     * stack and narrow.  Only the last chunk may carry padding, so a chunk
     * that decodes short is a padding error.
     */
    enum { CHARS = 4096, BYTES = CHARS / 4 * 3 };
    unsigned char buf[BYTES];
    size_t done_chars = 0;
    int64_t flat = 0;
    while (done_chars < src->b64_len) {
        size_t chunk = src->b64_len - done_chars;
        size_t got;
        if (chunk > CHARS)
            chunk = CHARS;
        rc = text_chunk(src, done_chars, chunk, buf, sizeof buf, &got, &sub);
        if (rc)
            return b64_error(rc, &sub, p, detail);
        if (done_chars + chunk < src->b64_len && got != chunk / 4 * 3) {
            mbx_detail_set(&sub, MBX_E_BAD_BASE64, "misplaced '=' padding before offset %zu",
                           done_chars + chunk);
            return b64_error(MBX_E_BAD_BASE64, &sub, p, detail);
        }
        /* A chunk holds whole doubles: 3072 bytes = 384 doubles. */
        for (size_t off = 0; off + 8 <= got; off += 8) {
            uint64_t u = 0;
            double d;
            for (int k = 7; k >= 0; k--)
                u = u << 8 | buf[off + (size_t)k];
            memcpy(&d, &u, 8);
            float f = (float)d;
            if (!isfinite(f))
                return b64_value_error(src, flat, isfinite(d), p, detail);
            dst[flat++] = f;
        }
        done_chars += chunk;
    }
    return 0;
}

int mbx_tensor_check(const mbx_tensor_src *src, jpath *p, mbx_detail *detail)
{
    if (src->kind != MBX_TSRC_B64 || src->dtype_size != 4)
        return mbx_detail_set(detail, MBX_E_INVALID_ARGUMENT,
                              "only float32 b64 tensors are checked apart");
    return src->count == 0 ? 0 : fill_b64_f32(src, NULL, p, detail);
}

int mbx_tensor_fill(const mbx_tensor_src *src, float *dst, jpath *p, mbx_detail *detail)
{
    if (src->count == 0)
        return 0;
    switch (src->kind) {
    case MBX_TSRC_NESTED: {
        int64_t flat = 0;
        float *cur = dst;
        return fill_nested(src->json, 0, src, &cur, &flat, p, detail);
    }
    case MBX_TSRC_FLAT:
        for (int64_t i = 0; i < src->count; i++) {
            const json_t *v = json_array_get(src->json, (size_t)i);
            int rc = json_is_number(v) ? number_to_f32(v, &dst[i]) : MBX_E_WRONG_TYPE;
            if (rc)
                return element_error(rc, v, src, i, p, detail);
        }
        return 0;
    case MBX_TSRC_B64:
        return fill_b64(src, dst, p, detail);
    }
    return MBX_E_INTERNAL;
}
