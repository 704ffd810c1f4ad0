/*
 * oip_frame.c - the first pass over an Open Inference Protocol request:
 * jansson parses the JSON header (and only the header), then every input's
 * structure, datatype, shape and binary framing is checked: each
 * binary_data_size must equal shape x datatype, the binary tensors follow
 * the header in input order and must end exactly at the body's end.  No
 * tensor byte is read or copied here and nothing is allocated from a shape.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "oip_internal.h"

static int is_plain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

void oip_tensor_path(jpath *p, const oip_tensor *t, int known_name)
{
    char buf[64];
    jpath_init(p);
    if (t->name && (known_name || is_plain_name(t->name)))
        snprintf(buf, sizeof buf, "inputs[%s]", t->name);
    else
        snprintf(buf, sizeof buf, "inputs[%zu]", t->index);
    jpath_key(p, buf);
}

const char *oip_shape_str(const int64_t *shape, int rank, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    n += (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < rank && n < cap; k++) {
        if (n + 24 >= cap) {
            snprintf(buf + n, cap - n, "...");
            return buf;
        }
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, k ? "," : "", shape[k]);
    }
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Parses "shape": non-negative integers, rank and element count bounded. */
static int parse_shape(const json_t *j, oip_tensor *t, jpath *p, mbx_detail *d)
{
    if (!json_is_array(j))
        return jpath_fail(d, MBX_E_WRONG_TYPE, p, "shape must be an array of integers, found %s",
                          mbx_json_type_name(j));
    size_t rank = json_array_size(j);
    if (rank > OIP_MAX_RANK)
        return jpath_fail(d, MBX_E_SHAPE_MISMATCH, p, "shape has rank %zu; no input has more than 3",
                          rank);
    t->rank = (int)rank;
    t->count = 1;
    int overflow = 0;
    for (size_t k = 0; k < rank; k++) {
        const json_t *v = json_array_get(j, k);
        if (!json_is_integer(v))
            return jpath_fail(d, MBX_E_WRONG_TYPE, p, "shape[%zu] must be an integer, found %s", k,
                              mbx_json_type_name(v));
        json_int_t dim = json_integer_value(v);
        if (dim < 0)
            return jpath_fail(d, MBX_E_OUT_OF_RANGE, p, "shape[%zu] is negative (%" PRId64 ")", k,
                              (int64_t)dim);
        t->shape[k] = (int64_t)dim;
        if (dim > MBX_CODEC_MAX_ELEMENTS ||
            (dim != 0 && t->count > MBX_CODEC_MAX_ELEMENTS / dim))
            overflow = 1;
        else
            t->count *= dim;
    }
    if (overflow) {
        char buf[96];
        return jpath_fail(d, MBX_E_SHAPE_OVERFLOW, p,
                          "shape %s exceeds the limit of %" PRId64 " elements",
                          oip_shape_str(t->shape, t->rank, buf, sizeof buf),
                          (int64_t)MBX_CODEC_MAX_ELEMENTS);
    }
    return 0;
}

/* Parses an input's "parameters"; sets *size to binary_data_size or -1. */
static int parse_input_params(const json_t *j, int64_t *size, jpath *p, mbx_detail *d)
{
    const char *key;
    const json_t *v;
    *size = -1;
    if (!json_is_object(j))
        return jpath_fail(d, MBX_E_WRONG_TYPE, p, "parameters must be an object, found %s",
                          mbx_json_type_name(j));
    json_object_foreach((json_t *)j, key, v) {
        if (strcmp(key, "binary_data_size") == 0) {
            if (!json_is_integer(v))
                return jpath_fail(d, MBX_E_BAD_FRAMING, p,
                                  "parameters.binary_data_size must be an integer, found %s",
                                  mbx_json_type_name(v));
            if (json_integer_value(v) < 0)
                return jpath_fail(d, MBX_E_BAD_FRAMING, p,
                                  "parameters.binary_data_size is negative (%" PRId64 ")",
                                  (int64_t)json_integer_value(v));
            *size = (int64_t)json_integer_value(v);
        } else if (strncmp(key, "shared_memory_", 14) == 0) {
            return jpath_fail(d, MBX_E_UNKNOWN_FIELD, p,
                              "parameters.%.40s: shared memory is not supported", key);
        } else {
            return jpath_fail(d, MBX_E_UNKNOWN_FIELD, p,
                              "unknown parameter \"%.40s\" (only binary_data_size)", key);
        }
    }
    return 0;
}

/*
 * One input: structure, datatype, shape and, for binary data, its place in
 * the body (*cursor advances past it).  has_header: the request has an
 * Inference-Header-Content-Length.
 */
static int frame_input(const json_t *j, size_t index, const uint8_t *body, size_t len,
                       int has_header, size_t *cursor, oip_tensor *t, mbx_detail *d)
{
    jpath p;
    const char *key;
    const json_t *v;
    const json_t *jname, *jshape, *jtype, *jparams;
    int64_t size = -1;
    int rc;

    memset(t, 0, sizeof *t);
    t->index = index;
    oip_tensor_path(&p, t, 0);
    if (!json_is_object(j))
        return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "expected an object, found %s",
                          mbx_json_type_name(j));
    jname = json_object_get(j, "name");
    if (!jname)
        return jpath_fail(d, MBX_E_MISSING_FIELD, &p, "missing \"name\"");
    if (!json_is_string(jname))
        return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "name must be a string, found %s",
                          mbx_json_type_name(jname));
    t->name = json_string_value(jname);
    oip_tensor_path(&p, t, 0);

    json_object_foreach((json_t *)j, key, v) {
        if (strcmp(key, "name") && strcmp(key, "shape") && strcmp(key, "datatype") &&
            strcmp(key, "parameters") && strcmp(key, "data"))
            return jpath_fail(d, MBX_E_UNKNOWN_FIELD, &p, "unknown member \"%.40s\"", key);
    }
    jtype = json_object_get(j, "datatype");
    if (!jtype)
        return jpath_fail(d, MBX_E_MISSING_FIELD, &p, "missing \"datatype\"");
    if (!json_is_string(jtype))
        return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "datatype must be a string, found %s",
                          mbx_json_type_name(jtype));
    if (mbx_oip_dtype_parse(json_string_value(jtype), &t->dtype))
        return jpath_fail(d, MBX_E_BAD_FRAMING, &p, "unknown datatype \"%.40s\"",
                          json_string_value(jtype));
    jshape = json_object_get(j, "shape");
    if (!jshape)
        return jpath_fail(d, MBX_E_MISSING_FIELD, &p, "missing \"shape\"");
    rc = parse_shape(jshape, t, &p, d);
    if (rc)
        return rc;
    jparams = json_object_get(j, "parameters");
    if (jparams && (rc = parse_input_params(jparams, &size, &p, d)))
        return rc;
    t->data = json_object_get(j, "data");
    if (t->data && size >= 0)
        return jpath_fail(d, MBX_E_BAD_FRAMING, &p,
                          "has both \"data\" and parameters.binary_data_size");
    if (t->data) {
        if (!json_is_array(t->data))
            return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "data must be an array, found %s",
                              mbx_json_type_name(t->data));
        return 0;
    }
    if (size < 0)
        return jpath_fail(d, MBX_E_MISSING_FIELD, &p,
                          "has neither \"data\" nor parameters.binary_data_size");

    /* Binary: the size must be what shape and datatype say (BYTES: any). */
    size_t esize = mbx_oip_dtype_size(t->dtype);
    if (esize && (uint64_t)size != (uint64_t)t->count * esize) {
        char buf[96];
        return jpath_fail(d, MBX_E_BAD_FRAMING, &p,
                          "binary_data_size %" PRId64 " disagrees with shape %s of %s (%" PRIu64
                          " bytes)",
                          size, oip_shape_str(t->shape, t->rank, buf, sizeof buf),
                          mbx_oip_dtype_name(t->dtype), (uint64_t)t->count * esize);
    }
    if (size > 0 && !has_header)
        return jpath_fail(d, MBX_E_BAD_FRAMING, &p,
                          "binary_data_size %" PRId64
                          " but the request has no Inference-Header-Content-Length",
                          size);
    if ((uint64_t)size > (uint64_t)(len - *cursor))
        return jpath_fail(d, MBX_E_BAD_FRAMING, &p,
                          "binary data of %" PRId64 " bytes at offset %zu runs past the end of "
                          "the %zu-byte body",
                          size, *cursor, len);
    t->offset = *cursor;
    t->bytes = body + *cursor;
    t->nbytes = (size_t)size;
    *cursor += (size_t)size;
    return 0;
}

/* The root's other members, checked after the framing of the inputs. */
static int check_root(oip_frame *f, mbx_detail *d)
{
    const char *key;
    const json_t *v;
    jpath p;
    jpath_init(&p);
    json_object_foreach(f->root, key, v) {
        size_t old = jpath_key(&p, key);
        if (strcmp(key, "inputs") == 0) {
            /* done */
        } else if (strcmp(key, "id") == 0) {
            if (!json_is_string(v))
                return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "must be a string, found %s",
                                  mbx_json_type_name(v));
            f->id = json_string_value(v);
        } else if (strcmp(key, "parameters") == 0) {
            if (!json_is_object(v))
                return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "must be an object, found %s",
                                  mbx_json_type_name(v));
            f->parameters = v;
        } else if (strcmp(key, "outputs") == 0) {
            if (!json_is_array(v))
                return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "must be an array, found %s",
                                  mbx_json_type_name(v));
            f->outputs = v;
        } else if (strcmp(key, "model_name") == 0 || strcmp(key, "model_version") == 0) {
            if (!json_is_string(v))
                return jpath_fail(d, MBX_E_WRONG_TYPE, &p, "must be a string, found %s",
                                  mbx_json_type_name(v));
            if (strcmp(key, "model_name") == 0 && strcmp(json_string_value(v), MBX_OIP_MODEL_NAME))
                return jpath_fail(d, MBX_E_OUT_OF_RANGE, &p, "this model is \"%s\"",
                                  MBX_OIP_MODEL_NAME);
        } else {
            return mbx_detail_set(d, MBX_E_UNKNOWN_FIELD,
                                  "unknown member \"%.40s\" of the inference request (id, "
                                  "parameters, inputs, outputs)",
                                  key);
        }
        jpath_restore(&p, old);
    }
    return 0;
}

int oip_frame_parse(const uint8_t *body, size_t len, size_t header_len, oip_frame *f,
                    mbx_detail *d)
{
    json_error_t err;
    int has_header = header_len != 0 && header_len != SIZE_MAX;
    size_t json_len = has_header ? header_len : len;
    int rc = 0;

    memset(f, 0, sizeof *f);
    if (has_header && header_len > len)
        return mbx_detail_set(d, MBX_E_BAD_FRAMING,
                              "Inference-Header-Content-Length %zu is beyond the %zu-byte body",
                              header_len, len);
    f->root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, &err);
    if (!f->root && json_error_code(&err) == json_error_out_of_memory)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory parsing the inference header");
    if (!f->root) {
        /* Bytes after the JSON without a header length: most likely binary tensors. */
        int hint = !has_header && json_error_code(&err) != json_error_premature_end_of_input;
        return mbx_detail_set(d, MBX_E_MALFORMED_JSON, "inference header, line %d column %d: %s%s",
                              err.line, err.column, err.text,
                              hint ? " (binary tensors need an Inference-Header-Content-Length)"
                                   : "");
    }
    if (!json_is_object(f->root)) {
        rc = mbx_detail_set(d, MBX_E_MALFORMED_JSON,
                            "the inference header must be a JSON object, found %s",
                            mbx_json_type_name(f->root));
        goto fail;
    }
    const json_t *inputs = json_object_get(f->root, "inputs");
    if (!inputs) {
        rc = mbx_detail_set(d, MBX_E_MISSING_FIELD, "inputs: missing");
        goto fail;
    }
    if (!json_is_array(inputs)) {
        rc = mbx_detail_set(d, MBX_E_WRONG_TYPE, "inputs: must be an array, found %s",
                            mbx_json_type_name(inputs));
        goto fail;
    }
    f->num_inputs = json_array_size(inputs);
    if (f->num_inputs) {
        f->inputs = mbx_codec_calloc(f->num_inputs, sizeof *f->inputs);
        if (!f->inputs) {
            rc = mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
    }
    size_t cursor = json_len;
    for (size_t i = 0; i < f->num_inputs; i++) {
        rc = frame_input(json_array_get(inputs, i), i, body, len, has_header, &cursor,
                         &f->inputs[i], d);
        if (rc)
            goto fail;
    }
    if (cursor != len) {
        rc = mbx_detail_set(d, MBX_E_BAD_FRAMING,
                            "%zu trailing bytes after the binary tensors (header %zu + tensors "
                            "%zu of a %zu-byte body)",
                            len - cursor, json_len, cursor - json_len, len);
        goto fail;
    }
    rc = check_root(f, d);
    if (rc)
        goto fail;
    return 0;
fail:
    oip_frame_release(f);
    return rc;
}

void oip_frame_release(oip_frame *f)
{
    mbx_codec_free(f->inputs);
    if (f->root)
        json_decref(f->root);
    memset(f, 0, sizeof *f);
}
