/*
 * fuzz_frame.c - fuzz target of the OIP binary framing alone and of the
 * tensor conversions: oip_frame_parse on the body (input format in
 * fuzz.h), then every framed input small enough is loaded with the
 * loader its datatype takes (oip_load_f32 / _i64 / _bool).  Binary values
 * are checked against reference conversions written here from the
 * formats' definitions (FP16 / BF16 widening with ldexp, narrowing as
 * "the nearest value, ties to even" found by search), not from half.c's
 * bit tricks; the bulk stores must agree with the scalar narrowings, and
 * FP16 / BF16 tensors must survive load + store unchanged.
 */
#include <float.h>
#include <math.h>

#include "fuzz.h"

#include "half.h"
#include "oip_internal.h"

#define FUZZ_MAX_ELEMENTS ((int64_t)1 << 16)

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 to double from its definition. */
static double ref_f16(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Magnitude of a bf16 bit pattern (sign dropped), from its definition: the top half of a float32. */
static double ref_bf16_mag(uint16_t b)
{
    return (double)float_of((uint32_t)(b & 0x7fff) << 16);
}

/* Nearest (ties to even) of a >= 0 between patterns lo and lo + 1 of values vlo <= a < vhi. */
static uint16_t nearest(double a, uint16_t lo, double vlo, double vhi)
{
    double dl = a - vlo, dh = vhi - a;
    if (dl < dh)
        return lo;
    if (dh < dl)
        return (uint16_t)(lo + 1);
    return (lo & 1) ? (uint16_t)(lo + 1) : lo;
}

/* FP32 -> FP16 pattern, round to nearest even, by binary search over the finite halves. */
static void check_f16_narrowing(float x)
{
    uint16_t got = mbx_f32_to_f16(x);
    uint16_t sign = (bits_of(x) >> 16) & 0x8000;
    if (isnan(x)) {
        FUZZ_CHECK((got & 0x7c00) == 0x7c00 && (got & 0x3ff), "f16(NaN 0x%08x) = 0x%04x",
                   bits_of(x), got);
        return;
    }
    FUZZ_CHECK((got & 0x8000) == sign, "f16(0x%08x) = 0x%04x: sign", bits_of(x), got);
    double a = fabs((double)x);
    uint16_t want;
    if (a >= 65520.0) {
        want = 0x7c00;
    } else {
        uint16_t lo = 0, hi = 0x7bff; /* largest pattern with value <= a */
        while (lo < hi) {
            uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
            if (ref_f16(mid) <= a)
                lo = mid;
            else
                hi = (uint16_t)(mid - 1);
        }
        double vhi = lo == 0x7bff ? 65536.0 : ref_f16((uint16_t)(lo + 1));
        want = nearest(a, lo, ref_f16(lo), vhi);
    }
    FUZZ_CHECK((got & 0x7fff) == want, "f16(%a = 0x%08x) = 0x%04x, want 0x%04x", (double)x,
               bits_of(x), got, (unsigned)(want | sign));
}

static void check_bf16_narrowing(float x)
{
    uint16_t got = mbx_f32_to_bf16(x);
    uint16_t sign = (bits_of(x) >> 16) & 0x8000;
    if (isnan(x)) {
        FUZZ_CHECK((got & 0x7f80) == 0x7f80 && (got & 0x7f), "bf16(NaN 0x%08x) = 0x%04x",
                   bits_of(x), got);
        return;
    }
    FUZZ_CHECK((got & 0x8000) == sign, "bf16(0x%08x) = 0x%04x: sign", bits_of(x), got);
    double a = fabs((double)x);
    uint16_t want;
    if (isinf(x)) {
        want = 0x7f80;
    } else {
        uint16_t lo = (uint16_t)((bits_of(x) & 0x7fffffff) >> 16); /* truncation: value <= a */
        double vhi = lo == 0x7f7f ? ldexp(1.0, 128) : ref_bf16_mag((uint16_t)(lo + 1));
        want = nearest(a, lo, ref_bf16_mag(lo), vhi);
    }
    FUZZ_CHECK((got & 0x7fff) == want, "bf16(%a = 0x%08x) = 0x%04x, want 0x%04x", (double)x,
               bits_of(x), got, (unsigned)(want | sign));
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* The reference float32 of binary element i and whether it is acceptable (finite in float32). */
static int ref_element(const oip_tensor *t, size_t i, float *out)
{
    const uint8_t *p = t->bytes;
    switch (t->dtype) {
    case MBX_OIP_FP16: {
        double v = ref_f16(le16(p + 2 * i));
        *out = (float)v; /* exact; NaN stays NaN */
        return isfinite(v);
    }
    case MBX_OIP_BF16: {
        uint16_t b = le16(p + 2 * i);
        *out = float_of((uint32_t)b << 16);
        return isfinite(*out);
    }
    case MBX_OIP_FP32: {
        uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                     (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
        *out = float_of(u);
        return isfinite(*out);
    }
    case MBX_OIP_FP64: {
        uint64_t u = 0;
        double v;
        for (int k = 7; k >= 0; k--)
            u = u << 8 | p[8 * i + (size_t)k];
        memcpy(&v, &u, sizeof v);
        /* Beyond FLT_MAX + half an ulp the float32 would be infinite (and the cast undefined). */
        if (!(fabs(v) < 0x1.ffffffp127))
            return 0;
        *out = (float)v;
        return 1;
    }
    default:
        FUZZ_CHECK(0, "not a float datatype");
    }
    return 0;
}

static void check_float_tensor(const oip_tensor *t)
{
    size_t n = (size_t)t->count;
    float *dst = malloc(n ? n * sizeof *dst : 1);
    mbx_detail d = {0, ""};
    FUZZ_CHECK(dst != NULL, "out of memory");
    int rc = oip_load_f32(t, dst, &d);
    if (rc)
        fuzz_check_failure(rc, &d);
    if (t->data) {
        /* JSON numbers: rounded to the datatype, so FP16 / BF16 values are representable. */
        for (size_t i = 0; rc == 0 && i < n; i++) {
            FUZZ_CHECK(isfinite(dst[i]), "JSON element %zu not finite", i);
            if (t->dtype == MBX_OIP_FP16)
                FUZZ_CHECK(mbx_f16_to_f32(mbx_f32_to_f16(dst[i])) == dst[i], "not an FP16 value");
            if (t->dtype == MBX_OIP_BF16)
                FUZZ_CHECK(mbx_bf16_to_f32(mbx_f32_to_bf16(dst[i])) == dst[i], "not a BF16 value");
        }
        free(dst);
        return;
    }
    size_t first_bad = n;
    for (size_t i = 0; i < n; i++) {
        float r;
        if (!ref_element(t, i, &r)) {
            first_bad = i;
            break;
        }
        if (rc == 0)
            FUZZ_CHECK(bits_of(dst[i]) == bits_of(r), "element %zu: 0x%08x, want 0x%08x", i,
                       bits_of(dst[i]), bits_of(r));
    }
    FUZZ_CHECK((rc == 0) == (first_bad == n), "rc %d but first non-finite element %zu of %zu", rc,
               first_bad, n);
    if (rc)
        FUZZ_CHECK(rc == MBX_E_NOT_FINITE, "rc %s", mbx_error_name(rc));

    /* Scalar widening against the reference, for every binary half. */
    if (t->dtype == MBX_OIP_FP16 || t->dtype == MBX_OIP_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = le16(t->bytes + 2 * i);
            float w = t->dtype == MBX_OIP_FP16 ? mbx_f16_to_f32(h) : mbx_bf16_to_f32(h);
            double r = t->dtype == MBX_OIP_FP16 ? ref_f16(h) : (double)float_of((uint32_t)h << 16);
            FUZZ_CHECK(isnan(r) ? isnan(w) : bits_of(w) == bits_of((float)r),
                       "widen 0x%04x = %a, want %a", h, (double)w, r);
            /* Narrowing back gives the same pattern (NaN: some NaN). */
            uint16_t back = t->dtype == MBX_OIP_FP16 ? mbx_f32_to_f16(w) : mbx_f32_to_bf16(w);
            FUZZ_CHECK(isnan(r) || back == h, "round trip 0x%04x -> 0x%04x", h, back);
        }
        if (rc == 0) {
            uint8_t *again = malloc(n ? 2 * n : 1);
            FUZZ_CHECK(again != NULL, "out of memory");
            if (t->dtype == MBX_OIP_FP16)
                mbx_store_f16(dst, n, again);
            else
                mbx_store_bf16(dst, n, again);
            FUZZ_CHECK(memcmp(again, t->bytes, 2 * n) == 0, "load + store changed the tensor");
            free(again);
        }
    }

    /* Narrowing of arbitrary float32 patterns, scalar against reference and bulk against scalar. */
    if (t->dtype == MBX_OIP_FP32) {
        float *vals = malloc(n ? n * sizeof *vals : 1);
        uint8_t *h16 = malloc(n ? 2 * n : 1), *b16 = malloc(n ? 2 * n : 1);
        uint8_t *f32 = malloc(n ? 4 * n : 1);
        FUZZ_CHECK(vals && h16 && b16 && f32, "out of memory");
        memcpy(vals, t->bytes, 4 * n);
        mbx_store_f16(vals, n, h16);
        mbx_store_bf16(vals, n, b16);
        mbx_store_f32(vals, n, f32);
        FUZZ_CHECK(memcmp(f32, t->bytes, 4 * n) == 0, "mbx_store_f32 changed the bytes");
        for (size_t i = 0; i < n; i++) {
            check_f16_narrowing(vals[i]);
            check_bf16_narrowing(vals[i]);
            uint16_t h = mbx_f32_to_f16(vals[i]), b = mbx_f32_to_bf16(vals[i]);
            uint16_t bh = le16(h16 + 2 * i), bb = le16(b16 + 2 * i);
            if (isnan(vals[i])) {
                FUZZ_CHECK((bh & 0x7c00) == 0x7c00 && (bh & 0x3ff), "bulk f16 %zu: NaN", i);
                FUZZ_CHECK((bb & 0x7f80) == 0x7f80 && (bb & 0x7f), "bulk bf16 %zu: NaN", i);
            } else {
                FUZZ_CHECK(bh == h, "bulk f16 %zu: 0x%04x, scalar 0x%04x", i, bh, h);
                FUZZ_CHECK(bb == b, "bulk bf16 %zu: 0x%04x, scalar 0x%04x", i, bb, b);
            }
        }
        free(vals);
        free(h16);
        free(b16);
        free(f32);
    }
    free(dst);
}

static void check_int_tensor(const oip_tensor *t)
{
    size_t n = (size_t)t->count;
    int64_t *dst = malloc(n ? n * sizeof *dst : 1);
    mbx_detail d = {0, ""};
    FUZZ_CHECK(dst != NULL, "out of memory");
    int rc = oip_load_i64(t, dst, &d);
    if (rc) {
        fuzz_check_failure(rc, &d);
        FUZZ_CHECK(t->data != NULL, "binary integers cannot fail: %s", d.message);
    } else if (!t->data) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = t->bytes + (t->dtype == MBX_OIP_INT32 ? 4 : 8) * i;
            int64_t want;
            if (t->dtype == MBX_OIP_INT32) {
                uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24;
                want = u >= 0x80000000u ? (int64_t)u - ((int64_t)1 << 32) : (int64_t)u;
            } else {
                uint64_t u;
                memcpy(&u, p, 8); /* little-endian host */
                memcpy(&want, &u, 8);
            }
            FUZZ_CHECK(dst[i] == want, "integer %zu", i);
        }
    }
    const int64_t *ip = oip_tensor_i64_in_place(t);
    FUZZ_CHECK(ip == NULL || (!t->data && t->dtype == MBX_OIP_INT64 &&
                              (const void *)ip == (const void *)t->bytes &&
                              (uintptr_t)ip % 8 == 0),
               "i64 in place");
    free(dst);
}

static void check_bool_tensor(const oip_tensor *t)
{
    size_t n = (size_t)t->count;
    uint8_t *dst = malloc(n ? n : 1);
    mbx_detail d = {0, ""};
    FUZZ_CHECK(dst != NULL, "out of memory");
    int rc = oip_load_bool(t, dst, &d);
    if (rc)
        fuzz_check_failure(rc, &d);
    if (!t->data) {
        int ok = 1;
        for (size_t i = 0; i < n; i++)
            ok &= t->bytes[i] <= 1;
        FUZZ_CHECK(ok == (rc == 0), "BOOL bytes valid %d, rc %d", ok, rc);
        FUZZ_CHECK(rc == 0 || rc == MBX_E_OUT_OF_RANGE, "rc %s", mbx_error_name(rc));
        FUZZ_CHECK(rc == 0 || oip_load_bool(t, NULL, &d) == rc, "validation-only pass disagrees");
        if (rc == 0)
            FUZZ_CHECK(memcmp(dst, t->bytes, n) == 0, "BOOL copy");
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        FUZZ_CHECK(dst[i] <= 1, "BOOL %zu is %u", i, dst[i]);
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_oip_input in;
    if (fuzz_oip_split(data, size, &in))
        return 0;
    oip_frame f;
    mbx_detail d = {0, ""};
    int rc = oip_frame_parse(in.body, in.len, in.header_len, &f, &d);
    if (rc) {
        fuzz_note("frame: %s: %s", mbx_error_name(rc), d.message);
        fuzz_check_failure(rc, &d);
        FUZZ_CHECK(f.root == NULL && f.inputs == NULL, "frame not released on failure");
        free(in.mem);
        return 0;
    }
    fuzz_note("frame: ok, %zu inputs", f.num_inputs);
    int has_header = in.header_len != 0 && in.header_len != SIZE_MAX;
    size_t cursor = has_header ? in.header_len : in.len;
    for (size_t i = 0; i < f.num_inputs; i++) {
        const oip_tensor *t = &f.inputs[i];
        FUZZ_CHECK(t->index == i && t->name != NULL, "input %zu", i);
        FUZZ_CHECK(t->rank >= 0 && t->rank <= OIP_MAX_RANK, "rank %d", t->rank);
        FUZZ_CHECK(t->count >= 0 && t->count <= MBX_CODEC_MAX_ELEMENTS, "count");
        if (!t->data) {
            /* Binary tensors follow the header in input order, back to back, inside the body. */
            FUZZ_CHECK(t->offset == cursor && t->bytes == in.body + t->offset,
                       "input %zu at %zu, expected %zu", i, t->offset, cursor);
            size_t es = mbx_oip_dtype_size(t->dtype);
            FUZZ_CHECK(es == 0 || t->nbytes == (size_t)t->count * es, "size of input %zu", i);
            FUZZ_CHECK(t->nbytes <= in.len - cursor, "input %zu past the end", i);
            cursor += t->nbytes;
        }
        const float *fp = oip_tensor_f32_in_place(t);
        FUZZ_CHECK(fp == NULL || (!t->data && t->dtype == MBX_OIP_FP32 &&
                                  (const void *)fp == (const void *)t->bytes &&
                                  (uintptr_t)fp % 4 == 0),
                   "f32 in place");
        if (t->count > FUZZ_MAX_ELEMENTS || t->rank > MBX_TENSOR_MAX_RANK)
            continue;
        switch (t->dtype) {
        case MBX_OIP_FP16:
        case MBX_OIP_BF16:
        case MBX_OIP_FP32:
        case MBX_OIP_FP64: check_float_tensor(t); break;
        case MBX_OIP_INT32:
        case MBX_OIP_INT64: check_int_tensor(t); break;
        case MBX_OIP_BOOL: check_bool_tensor(t); break;
        default: break;
        }
    }
    FUZZ_CHECK(cursor == in.len, "binary tensors end at %zu of %zu", cursor, in.len);
    oip_frame_release(&f);
    free(in.mem);
    return 0;
}
