/*
 * oip_params.c - the request "parameters" and "outputs" of an Open
 * Inference Protocol request.  Configuration keys keep the names of the
 * semantics table and go through the /v1 codec's config parser (so types,
 * spellings and unknown keys are judged the same way on both endpoints);
 * the variances arrive as scalars (variance_center and variance_size, or
 * variance_cx, variance_cy, variance_w and variance_h) since protocol
 * parameters are scalars.  The protocol's own parameters are taken out
 * first: binary_data_output, anchor_preset, gradient_datatype, and Triton's
 * priority and timeout (accepted and ignored).
 */
#include <stdio.h>
#include <string.h>

#include "oip_internal.h"

static const char *const variance_names[6] = {
    "variance_center", "variance_size", /* the two-value form */
    "variance_cx", "variance_cy", "variance_w", "variance_h",
};

static int key_fail(mbx_detail *d, int code, const char *key, const char *fmt, const char *arg)
{
    jpath p;
    jpath_init(&p);
    jpath_key(&p, "parameters");
    jpath_key(&p, key);
    return jpath_fail(d, code, &p, fmt, arg);
}

/* Builds the "variances" array from the scalar forms into cfgobj. */
static int gather_variances(const json_t *vars[6], int have_array, json_t *cfgobj, mbx_detail *d)
{
    int two = (vars[0] != NULL) + (vars[1] != NULL);
    int four = 0;
    for (int i = 2; i < 6; i++)
        four += vars[i] != NULL;
    if (two == 0 && four == 0)
        return 0;
    if (have_array)
        return key_fail(d, MBX_E_BAD_CONFIG, "variances", "%s",
                        "given both as variances and as variance_* parameters");
    if (two && four)
        return key_fail(d, MBX_E_BAD_CONFIG, vars[0] ? "variance_center" : "variance_size", "%s",
                        "cannot be combined with variance_cx/cy/w/h (give 2 or 4 variances)");
    int first = two ? 0 : 2, n = two ? 2 : 4;
    for (int i = first; i < first + n; i++) {
        if (!vars[i])
            return key_fail(d, MBX_E_MISSING_FIELD, variance_names[i], "%s",
                            two ? "missing (variance_center and variance_size go together)"
                                : "missing (variance_cx, _cy, _w and _h go together)");
        if (!json_is_number(vars[i]))
            return key_fail(d, MBX_E_WRONG_TYPE, variance_names[i], "expected a number, found %s",
                            mbx_json_type_name(vars[i]));
    }
    json_t *arr = json_array();
    if (!arr)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    for (int i = first; i < first + n; i++) {
        if (json_array_append(arr, (json_t *)vars[i])) {
            json_decref(arr);
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
        }
    }
    if (json_object_set_new(cfgobj, "variances", arr))
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    return 0;
}

static int parse_params(const json_t *params, json_t *cfgobj, mbx_config *cfg, oip_params *op,
                        mbx_detail *d)
{
    const json_t *vars[6] = {NULL};
    const char *key;
    json_t *v;
    int rc;

    json_object_foreach((json_t *)params, key, v) {
        int var = -1;
        for (int i = 0; i < 6; i++)
            if (strcmp(key, variance_names[i]) == 0)
                var = i;
        if (var >= 0) {
            vars[var] = v;
        } else if (strcmp(key, "binary_data_output") == 0) {
            if (!json_is_boolean(v))
                return key_fail(d, MBX_E_WRONG_TYPE, key, "expected true or false, found %s",
                                mbx_json_type_name(v));
            op->binary_data_output = json_is_true(v);
        } else if (strcmp(key, "anchor_preset") == 0) {
            if (!json_is_string(v))
                return key_fail(d, MBX_E_WRONG_TYPE, key, "expected a preset name, found %s",
                                mbx_json_type_name(v));
            op->anchor_preset = json_string_value(v);
        } else if (strcmp(key, "gradient_datatype") == 0) {
            if (!json_is_string(v))
                return key_fail(d, MBX_E_WRONG_TYPE, key, "expected FP32, FP16 or BF16, found %s",
                                mbx_json_type_name(v));
            const char *s = json_string_value(v);
            if (strcmp(s, "FP32") == 0)
                op->gradient_datatype = MBX_OIP_FP32;
            else if (strcmp(s, "FP16") == 0)
                op->gradient_datatype = MBX_OIP_FP16;
            else if (strcmp(s, "BF16") == 0)
                op->gradient_datatype = MBX_OIP_BF16;
            else
                return key_fail(d, MBX_E_BAD_CONFIG, key,
                                "\"%.40s\" is not FP32, FP16 or BF16", s);
        } else if (strcmp(key, "priority") == 0 || strcmp(key, "timeout") == 0) {
            /* Triton scheduling hints: meaningless here, accepted for its clients. */
        } else if (json_object_set(cfgobj, key, v)) {
            return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
        }
    }
    rc = gather_variances(vars, json_object_get(cfgobj, "variances") != NULL, cfgobj, d);
    if (rc)
        return rc;
    jpath p;
    jpath_init(&p);
    jpath_key(&p, "parameters");
    rc = mbx_config_parse_json(cfgobj, cfg, &p, d);
    if (rc == MBX_E_UNKNOWN_FIELD && d) {
        /* The config parser says "unknown config key"; here it is a request parameter. */
        char *tail = strstr(d->message, ": unknown config key");
        if (tail)
            snprintf(tail, sizeof d->message - (size_t)(tail - d->message),
                     ": unknown parameter (configuration keys, variance_*, anchor_preset, "
                     "gradient_datatype, binary_data_output)");
    }
    return rc;
}

int oip_params_parse(const json_t *params, mbx_config *cfg, oip_params *op, mbx_detail *d)
{
    op->binary_data_output = 0;
    op->anchor_preset = NULL;
    op->gradient_datatype = MBX_OIP_FP32;
    if (!params)
        return 0;
    json_t *cfgobj = json_object();
    if (!cfgobj)
        return mbx_detail_set(d, MBX_E_OUT_OF_MEMORY, "out of memory");
    int rc = parse_params(params, cfgobj, cfg, op, d);
    json_decref(cfgobj);
    return rc;
}

/* ---------------------------------------------------------------- outputs */

static int output_fail(mbx_detail *d, int code, size_t i, const char *fmt, const char *arg)
{
    jpath p;
    jpath_init(&p);
    jpath_key(&p, "outputs");
    jpath_index(&p, (int64_t)i);
    return jpath_fail(d, code, &p, fmt, arg);
}

static int parse_output(const json_t *j, size_t i, int binary_default, mbx_oip_request *req,
                        mbx_detail *d)
{
    const char *key;
    json_t *v;
    const json_t *name = NULL, *params = NULL;
    if (!json_is_object(j))
        return output_fail(d, MBX_E_WRONG_TYPE, i, "expected an object, found %s",
                           mbx_json_type_name(j));
    json_object_foreach((json_t *)j, key, v) {
        if (strcmp(key, "name") == 0)
            name = v;
        else if (strcmp(key, "parameters") == 0)
            params = v;
        else
            return output_fail(d, MBX_E_UNKNOWN_FIELD, i, "unknown member \"%.40s\"", key);
    }
    if (!name)
        return output_fail(d, MBX_E_MISSING_FIELD, i, "%s", "missing \"name\"");
    if (!json_is_string(name))
        return output_fail(d, MBX_E_WRONG_TYPE, i, "name must be a string, found %s",
                           mbx_json_type_name(name));
    const char *s = json_string_value(name);
    int which = -1;
    for (int o = 0; o < MBX_OIP_OUT_COUNT; o++)
        if (strcmp(s, mbx_oip_output_name((mbx_oip_output)o)) == 0)
            which = o;
    if (which < 0)
        return output_fail(d, MBX_E_UNKNOWN_FIELD, i,
                           "unknown output \"%.40s\" (see GET /v2/models/multibox_loss)", s);
    for (int k = 0; k < req->num_outputs; k++)
        if ((int)req->output[k] == which)
            return output_fail(d, MBX_E_UNKNOWN_FIELD, i, "output \"%s\" is requested twice", s);

    int binary = binary_default;
    if (params) {
        if (!json_is_object(params))
            return output_fail(d, MBX_E_WRONG_TYPE, i, "parameters must be an object, found %s",
                               mbx_json_type_name(params));
        json_object_foreach((json_t *)params, key, v) {
            if (strcmp(key, "binary_data") == 0) {
                if (!json_is_boolean(v))
                    return output_fail(d, MBX_E_WRONG_TYPE, i,
                                       "parameters.binary_data must be true or false, found %s",
                                       mbx_json_type_name(v));
                binary = json_is_true(v);
            } else {
                return output_fail(d, MBX_E_UNKNOWN_FIELD, i,
                                   "unsupported parameter \"%.40s\" (only binary_data)", key);
            }
        }
    }
    req->output[req->num_outputs] = (mbx_oip_output)which;
    req->binary[req->num_outputs] = (uint8_t)binary;
    req->num_outputs++;
    return 0;
}

int oip_outputs_parse(const json_t *outputs, int binary_default, mbx_oip_request *req,
                      mbx_detail *d)
{
    req->num_outputs = 0;
    if (outputs && json_array_size(outputs) > 0) {
        for (size_t i = 0; i < json_array_size(outputs); i++) {
            if (req->num_outputs == MBX_OIP_OUT_COUNT)
                return output_fail(d, MBX_E_UNKNOWN_FIELD, i, "%s",
                                   "more outputs than the model has");
            int rc = parse_output(json_array_get(outputs, i), i, binary_default, req, d);
            if (rc)
                return rc;
        }
        return 0;
    }
    /* Default: every output but the sparse forms, which duplicate the dense ones. */
    for (int o = MBX_OIP_OUT_LOSS; o <= MBX_OIP_OUT_GRAD_CONF; o++) {
        req->output[req->num_outputs] = (mbx_oip_output)o;
        req->binary[req->num_outputs] = (uint8_t)binary_default;
        req->num_outputs++;
    }
    return 0;
}
