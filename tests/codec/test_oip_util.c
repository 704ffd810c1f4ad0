/*
 * test_oip_util.c - see test_oip_util.h.  The response decoder follows the
 * binary tensor data extension's text: the JSON header is the first
 * Inference-Header-Content-Length bytes; each output whose parameters hold
 * binary_data_size takes that many bytes of what follows, in the order the
 * outputs are listed, little-endian, row-major, without padding; every byte
 * must be used.  It shares no code with the codec's encoder.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "half.h"
#include "test_oip_util.h"

void tu_put(tu_bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        assert_non_null(b->data);
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(tu_bytes *b, uint64_t u, int n)
{
    unsigned char tmp[8];
    for (int k = 0; k < n; k++)
        tmp[k] = (unsigned char)(u >> (8 * k));
    tu_put(b, tmp, (size_t)n);
}

void tu_put_value(tu_bytes *b, const char *t, double v)
{
    if (strcmp(t, "FP32") == 0) {
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(b, u, 4);
    } else if (strcmp(t, "FP64") == 0) {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_le(b, u, 8);
    } else if (strcmp(t, "FP16") == 0) {
        put_le(b, mbx_f32_to_f16((float)v), 2);
    } else if (strcmp(t, "BF16") == 0) {
        put_le(b, mbx_f32_to_bf16((float)v), 2);
    } else if (strcmp(t, "INT32") == 0) {
        put_le(b, (uint32_t)(int32_t)v, 4);
    } else if (strcmp(t, "INT64") == 0) {
        put_le(b, (uint64_t)(int64_t)v, 8);
    } else if (strcmp(t, "BOOL") == 0 || strcmp(t, "UINT8") == 0 || strcmp(t, "INT8") == 0) {
        put_le(b, (uint8_t)(int)v, 1);
    } else {
        fail_msg("tu_put_value: datatype %s", t);
    }
}

void tu_free(tu_bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ placement */

const uint8_t *tu_place_aligned(tu_placed *pl, const void *bytes, size_t len, size_t header_len,
                                size_t misalign)
{
    size_t pad = (64 - header_len % 64) % 64 + misalign;
    pl->map_len = len + pad + 64;
    pl->map = mmap(NULL, pl->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(pl->map != MAP_FAILED);
    memcpy(pl->map + pad, bytes, len);
    pl->body = pl->map + pad;
    return pl->body;
}

const uint8_t *tu_place_guarded(tu_placed *pl, const void *bytes, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    pl->map_len = (pages + 1) * page;
    pl->map = mmap(NULL, pl->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(pl->map != MAP_FAILED);
    unsigned char *guard = pl->map + pages * page;
    assert_int_equal(mprotect(guard, page, PROT_NONE), 0);
    memcpy(guard - len, bytes, len);
    pl->body = guard - len;
    return pl->body;
}

void tu_placed_free(tu_placed *pl)
{
    if (pl->map)
        munmap(pl->map, pl->map_len);
    memset(pl, 0, sizeof *pl);
}

/* ------------------------------------------------------------- decoding */

double tu_f16(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

double tu_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int elem_size(const char *t)
{
    if (!strcmp(t, "FP32") || !strcmp(t, "INT32") || !strcmp(t, "UINT32"))
        return 4;
    if (!strcmp(t, "FP64") || !strcmp(t, "INT64") || !strcmp(t, "UINT64"))
        return 8;
    if (!strcmp(t, "FP16") || !strcmp(t, "BF16") || !strcmp(t, "INT16") || !strcmp(t, "UINT16"))
        return 2;
    if (!strcmp(t, "BOOL") || !strcmp(t, "INT8") || !strcmp(t, "UINT8"))
        return 1;
    return 0;
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t u = 0;
    for (int k = n - 1; k >= 0; k--)
        u = u << 8 | p[k];
    return u;
}

static double value_at(const unsigned char *p, const char *t)
{
    if (!strcmp(t, "FP32")) {
        uint32_t u = (uint32_t)get_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    if (!strcmp(t, "FP64")) {
        uint64_t u = get_le(p, 8);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    if (!strcmp(t, "FP16"))
        return tu_f16((uint16_t)get_le(p, 2));
    if (!strcmp(t, "BF16"))
        return tu_bf16((uint16_t)get_le(p, 2));
    if (!strcmp(t, "INT32"))
        return (int32_t)(uint32_t)get_le(p, 4);
    if (!strcmp(t, "INT64"))
        return (double)(int64_t)get_le(p, 8);
    return (double)p[0];
}

/* Flattens JSON data (flat or nested) into values; returns the count or -1. */
static int64_t flatten(const json_t *j, double *out, int64_t cap, int64_t n)
{
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            n = flatten(json_array_get(j, i), out, cap, n);
            if (n < 0)
                return -1;
        }
        return n;
    }
    if (n >= cap)
        return -1;
    if (json_is_number(j))
        out[n] = json_number_value(j);
    else if (json_is_boolean(j))
        out[n] = json_is_true(j);
    else
        return -1;
    return n + 1;
}

int tu_decode(const unsigned char *body, size_t len, size_t header_len, tu_response *r,
              char *err)
{
    json_error_t je;
    size_t hl = header_len == SIZE_MAX ? len : header_len;
    memset(r, 0, sizeof *r);
    if (hl > len) {
        snprintf(err, 256, "header length %zu > body %zu", hl, len);
        return -1;
    }
    r->header = json_loadb((const char *)body, hl, 0, &je);
    if (!r->header) {
        snprintf(err, 256, "header is not JSON: %s", je.text);
        return -1;
    }
    const json_t *outputs = json_object_get(r->header, "outputs");
    if (!json_is_array(outputs)) {
        snprintf(err, 256, "no outputs array");
        return -1;
    }
    size_t pos = hl;
    for (size_t i = 0; i < json_array_size(outputs); i++) {
        const json_t *o = json_array_get(outputs, i);
        tu_tensor *t = &r->t[r->num];
        if (r->num == 24) {
            snprintf(err, 256, "too many outputs");
            return -1;
        }
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *dt = json_string_value(json_object_get(o, "datatype"));
        const json_t *shape = json_object_get(o, "shape");
        if (!name || !dt || !json_is_array(shape) || json_array_size(shape) > 4) {
            snprintf(err, 256, "output %zu: name, datatype or shape missing", i);
            return -1;
        }
        snprintf(t->name, sizeof t->name, "%s", name);
        snprintf(t->datatype, sizeof t->datatype, "%s", dt);
        t->rank = (int)json_array_size(shape);
        t->count = 1;
        for (int k = 0; k < t->rank; k++) {
            t->shape[k] = json_integer_value(json_array_get(shape, (size_t)k));
            t->count *= t->shape[k];
        }
        t->values = calloc((size_t)t->count + 1, sizeof(double));
        r->num++;
        const json_t *size = json_object_get(json_object_get(o, "parameters"), "binary_data_size");
        if (size) {
            int es = elem_size(dt);
            if (!es || !json_is_integer(size) ||
                (int64_t)json_integer_value(size) != t->count * es) {
                snprintf(err, 256, "%s: binary_data_size disagrees with shape x %s", name, dt);
                return -1;
            }
            if ((size_t)json_integer_value(size) > len - pos) {
                snprintf(err, 256, "%s: bytes missing", name);
                return -1;
            }
            for (int64_t k = 0; k < t->count; k++)
                t->values[k] = value_at(body + pos + (size_t)(k * es), dt);
            pos += (size_t)json_integer_value(size);
            t->binary = 1;
        } else {
            const json_t *data = json_object_get(o, "data");
            if (flatten(data, t->values, t->count, 0) != t->count) {
                snprintf(err, 256, "%s: data disagree with the shape", name);
                return -1;
            }
        }
    }
    if (pos != len) {
        snprintf(err, 256, "%zu bytes left over", len - pos);
        return -1;
    }
    return 0;
}

const tu_tensor *tu_find(const tu_response *r, const char *name)
{
    for (int i = 0; i < r->num; i++)
        if (strcmp(r->t[i].name, name) == 0)
            return &r->t[i];
    return NULL;
}

void tu_response_free(tu_response *r)
{
    for (int i = 0; i < r->num; i++)
        free(r->t[i].values);
    if (r->header)
        json_decref(r->header);
    memset(r, 0, sizeof *r);
}

json_t *tu_input_desc(const char *name, const char *dtype, int rank, const int64_t *shape)
{
    json_t *j = json_object(), *s = json_array();
    for (int k = 0; k < rank; k++)
        json_array_append_new(s, json_integer(shape[k]));
    json_object_set_new(j, "name", json_string(name));
    json_object_set_new(j, "shape", s);
    json_object_set_new(j, "datatype", json_string(dtype));
    return j;
}

/* Adds an input whose values are vals[n] (doubles), as binary bytes or JSON data. */
void tu_add_input(json_t *inputs, tu_bytes *bin, const char *name, const char *dtype,
                      int rank, const int64_t *shape, const double *vals, size_t n, int binary)
{
    json_t *j = tu_input_desc(name, dtype, rank, shape);
    if (binary) {
        size_t before = bin->len;
        for (size_t i = 0; i < n; i++)
            tu_put_value(bin, dtype, vals[i]);
        json_t *p = json_object();
        json_object_set_new(p, "binary_data_size", json_integer((json_int_t)(bin->len - before)));
        json_object_set_new(j, "parameters", p);
    } else {
        json_t *data = json_array();
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(dtype, "BOOL"))
                json_array_append_new(data, json_boolean(vals[i] != 0));
            else if (!strncmp(dtype, "INT", 3))
                json_array_append_new(data, json_integer((json_int_t)vals[i]));
            else
                json_array_append_new(data, json_real(vals[i]));
        }
        json_object_set_new(j, "data", data);
    }
    json_array_append_new(inputs, j);
}

/* The values of a {"shape","data"} tensor (malloc'ed) and its shape. */
double *tu_tensor_values(const json_t *t, size_t *n, int64_t *shape, int *rank)
{
    const json_t *data = json_object_get(t, "data"), *s = json_object_get(t, "shape");
    *n = json_array_size(data);
    *rank = (int)json_array_size(s);
    for (int k = 0; k < *rank; k++)
        shape[k] = json_integer_value(json_array_get(s, (size_t)k));
    double *v = malloc((*n + 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < *n; i++)
        v[i] = json_number_value(json_array_get(data, i));
    return v;
}
