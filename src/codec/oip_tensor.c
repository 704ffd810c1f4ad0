/*
 * oip_tensor.c - an Open Inference Protocol input's values, from its JSON
 * "data" (flat, or nested as its shape says) or from its binary bytes
 * (little-endian, any alignment), into the float32, int64 or byte arrays the
 * core reads; or, for aligned FP32 / INT64 binary tensors on a
 * little-endian host, the bytes themselves, used in place.  Half precision
 * is widened exactly (half.c).  Writes only into the caller's arrays.
 */
#include <inttypes.h>
#include <math.h>
#include <stdalign.h>
#include <string.h>

#include "half.h"
#include "oip_internal.h"

const float *oip_tensor_f32_in_place(const oip_tensor *t)
{
    if (t->data || t->dtype != MBX_OIP_FP32 || !mbx_host_is_little_endian())
        return NULL;
    if ((uintptr_t)t->bytes % alignof(float) != 0)
        return NULL;
    return (const float *)(const void *)t->bytes;
}

const int64_t *oip_tensor_i64_in_place(const oip_tensor *t)
{
    if (t->data || t->dtype != MBX_OIP_INT64 || !mbx_host_is_little_endian())
        return NULL;
    if ((uintptr_t)t->bytes % alignof(int64_t) != 0)
        return NULL;
    return (const int64_t *)(const void *)t->bytes;
}

/* Fails naming the element at flat index i ("inputs[loc][1][7][2]"). */
static int element_fail(const oip_tensor *t, int64_t i, mbx_detail *d, int code, const char *what)
{
    jpath p;
    oip_tensor_path(&p, t, 1);
    if (t->rank <= MBX_TENSOR_MAX_RANK && t->rank > 0)
        mbx_tensor_index_path(&p, t->shape, t->rank, i);
    else
        jpath_index(&p, i);
    return jpath_fail(d, code, &p, "%s", what);
}

/* ------------------------------------------------------------ JSON data */

/*
 * The data's layout: flat (one array of count scalars) or nested (arrays
 * of exactly the shape's lengths, scalars at depth rank).  Returns 0, with
 * *nested set, or a SHAPE_MISMATCH / WRONG_TYPE error.
 */
static int nested_ok(const json_t *j, const oip_tensor *t, int level, jpath *p, mbx_detail *d)
{
    if (level == t->rank) {
        if (json_is_array(j) || json_is_object(j))
            return jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                              "data nests deeper than the shape's rank %d", t->rank);
        return 0;
    }
    if (!json_is_array(j))
        return jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                          "data has a scalar at depth %d; the shape has rank %d", level, t->rank);
    if ((int64_t)json_array_size(j) != t->shape[level]) {
        char buf[96];
        return jpath_fail(d, MBX_E_SHAPE_MISMATCH, p,
                          "data has %zu elements at depth %d where shape %s has %" PRId64,
                          json_array_size(j), level,
                          oip_shape_str(t->shape, t->rank, buf, sizeof buf), t->shape[level]);
    }
    for (size_t i = 0; i < json_array_size(j); i++) {
        int rc = nested_ok(json_array_get(j, i), t, level + 1, p, d);
        if (rc)
            return rc;
    }
    return 0;
}

static int is_nested(const oip_tensor *t)
{
    return t->rank > 1 && json_array_size(t->data) > 0 &&
           json_is_array(json_array_get(t->data, 0));
}

int oip_check_data(const oip_tensor *t, mbx_detail *d)
{
    jpath p;
    if (!t->data)
        return 0;
    oip_tensor_path(&p, t, 1);
    if (is_nested(t))
        return nested_ok(t->data, t, 0, &p, d);
    if ((int64_t)json_array_size(t->data) != t->count) {
        char buf[96];
        return jpath_fail(d, MBX_E_SHAPE_MISMATCH, &p,
                          "data has %zu values, shape %s needs %" PRId64,
                          json_array_size(t->data),
                          oip_shape_str(t->shape, t->rank, buf, sizeof buf), t->count);
    }
    for (size_t i = 0; i < json_array_size(t->data); i++) {
        const json_t *v = json_array_get(t->data, i);
        if (json_is_array(v) || json_is_object(v))
            return jpath_fail(d, MBX_E_SHAPE_MISMATCH, &p,
                              "data[%zu] is %s in flat data", i, mbx_json_type_name(v));
    }
    return 0;
}

/* Visits the scalars of (checked) data in row-major order. */
typedef int (*leaf_fn)(const json_t *v, int64_t i, void *ctx);

static int walk(const json_t *j, int depth, int nested_rank, int64_t *i, leaf_fn fn, void *ctx)
{
    if (depth == nested_rank)
        return fn(j, (*i)++, ctx);
    for (size_t k = 0; k < json_array_size(j); k++) {
        int rc = walk(json_array_get(j, k), depth + 1, nested_rank, i, fn, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

static int walk_data(const oip_tensor *t, leaf_fn fn, void *ctx)
{
    int64_t i = 0;
    return walk(t->data, 0, is_nested(t) ? t->rank : 1, &i, fn, ctx);
}

struct leaf_ctx {
    const oip_tensor *t;
    void *dst;
    mbx_detail *d;
};

/* A JSON number as float32 after rounding to the tensor's datatype. */
static int leaf_f32(const json_t *v, int64_t i, void *c)
{
    struct leaf_ctx *ctx = c;
    if (!json_is_number(v))
        return element_fail(ctx->t, i, ctx->d, MBX_E_WRONG_TYPE, "expected a number");
    double x = json_number_value(v);
    if (!(fabs(x) < 0x1.ffffffp127))
        return element_fail(ctx->t, i, ctx->d, MBX_E_NOT_FINITE, "value beyond float32's range");
    float f = (float)x;
    if (ctx->t->dtype == MBX_OIP_FP16) {
        uint16_t h = mbx_f32_to_f16(f);
        if ((h & 0x7c00u) == 0x7c00u)
            return element_fail(ctx->t, i, ctx->d, MBX_E_NOT_FINITE, "value beyond FP16's range");
        f = mbx_f16_to_f32(h);
    } else if (ctx->t->dtype == MBX_OIP_BF16) {
        uint16_t b = mbx_f32_to_bf16(f);
        if ((b & 0x7f80u) == 0x7f80u)
            return element_fail(ctx->t, i, ctx->d, MBX_E_NOT_FINITE, "value beyond BF16's range");
        f = mbx_bf16_to_f32(b);
    }
    ((float *)ctx->dst)[i] = f;
    return 0;
}

static int leaf_i64(const json_t *v, int64_t i, void *c)
{
    struct leaf_ctx *ctx = c;
    if (!json_is_integer(v))
        return element_fail(ctx->t, i, ctx->d, MBX_E_WRONG_TYPE, "expected an integer");
    json_int_t x = json_integer_value(v);
    if (ctx->t->dtype == MBX_OIP_INT32 && (x < INT32_MIN || x > INT32_MAX))
        return element_fail(ctx->t, i, ctx->d, MBX_E_OUT_OF_RANGE, "value beyond INT32's range");
    ((int64_t *)ctx->dst)[i] = (int64_t)x;
    return 0;
}

static int leaf_bool(const json_t *v, int64_t i, void *c)
{
    struct leaf_ctx *ctx = c;
    if (!json_is_boolean(v))
        return element_fail(ctx->t, i, ctx->d, MBX_E_WRONG_TYPE, "expected true or false");
    ((uint8_t *)ctx->dst)[i] = json_is_true(v) ? 1 : 0;
    return 0;
}

static int load_json(const oip_tensor *t, leaf_fn fn, void *dst, mbx_detail *d)
{
    int rc = oip_check_data(t, d);
    if (rc)
        return rc;
    struct leaf_ctx ctx = {t, dst, d};
    return walk_data(t, fn, &ctx);
}

/* ------------------------------------------------------------ loaders */

int oip_load_f32(const oip_tensor *t, float *dst, mbx_detail *d)
{
    size_t n = (size_t)t->count, bad;
    if (t->data)
        return load_json(t, leaf_f32, dst, d);
    switch (t->dtype) {
    case MBX_OIP_FP16: bad = mbx_load_f16(t->bytes, n, dst); break;
    case MBX_OIP_BF16: bad = mbx_load_bf16(t->bytes, n, dst); break;
    case MBX_OIP_FP32: bad = mbx_load_f32(t->bytes, n, dst); break;
    case MBX_OIP_FP64: bad = mbx_load_f64(t->bytes, n, dst); break;
    default:
        return mbx_detail_set(d, MBX_E_INTERNAL, "oip_load_f32: datatype %s",
                              mbx_oip_dtype_name(t->dtype));
    }
    if (bad < n)
        return oip_load_fail(t, (int64_t)bad, d);
    return 0;
}

int64_t oip_load_f32_range(const oip_tensor *t, int64_t first, int64_t n, float *dst)
{
    const size_t es = mbx_oip_dtype_size(t->dtype);
    const void *src = t->bytes + (size_t)first * es;
    switch (t->dtype) {
    case MBX_OIP_FP16: return (int64_t)mbx_load_f16(src, (size_t)n, dst);
    case MBX_OIP_BF16: return (int64_t)mbx_load_bf16(src, (size_t)n, dst);
    case MBX_OIP_FP32: return (int64_t)mbx_load_f32(src, (size_t)n, dst);
    case MBX_OIP_FP64: return (int64_t)mbx_load_f64(src, (size_t)n, dst);
    default: return 0; /* not a float tensor: never deferred */
    }
}

int oip_load_fail(const oip_tensor *t, int64_t i, mbx_detail *d)
{
    return element_fail(t, i, d, MBX_E_NOT_FINITE,
                        t->dtype == MBX_OIP_FP64 ? "NaN, infinity or beyond float32's range"
                                                 : "NaN or infinity");
}

int oip_load_i64(const oip_tensor *t, int64_t *dst, mbx_detail *d)
{
    size_t n = (size_t)t->count;
    const unsigned char *s = t->bytes;
    if (t->data)
        return load_json(t, leaf_i64, dst, d);
    if (t->dtype == MBX_OIP_INT32) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)s[4 * i] | (uint32_t)s[4 * i + 1] << 8 |
                         (uint32_t)s[4 * i + 2] << 16 | (uint32_t)s[4 * i + 3] << 24;
            dst[i] = (int64_t)(int32_t)u;
        }
        return 0;
    }
    if (t->dtype == MBX_OIP_INT64) {
        for (size_t i = 0; i < n; i++) {
            uint64_t u = 0;
            for (int k = 7; k >= 0; k--)
                u = u << 8 | s[8 * i + (size_t)k];
            dst[i] = (int64_t)u;
        }
        return 0;
    }
    return mbx_detail_set(d, MBX_E_INTERNAL, "oip_load_i64: datatype %s",
                          mbx_oip_dtype_name(t->dtype));
}

int oip_load_bool(const oip_tensor *t, uint8_t *dst, mbx_detail *d)
{
    if (t->data)
        return load_json(t, leaf_bool, dst, d);
    for (int64_t i = 0; i < t->count; i++) {
        if (t->bytes[i] > 1)
            return element_fail(t, i, d, MBX_E_OUT_OF_RANGE, "BOOL byte is neither 0 nor 1");
    }
    if (dst)
        memcpy(dst, t->bytes, (size_t)t->count);
    return 0;
}
