/*
 * oip_names.c - the Open Inference Protocol's names: tensor datatypes (name
 * and element size) and this model's output names.  Constant tables only.
 */
#include <string.h>

#include "oip.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[MBX_OIP_DTYPE_COUNT] = {
    [MBX_OIP_BOOL] = {"BOOL", 1},     [MBX_OIP_UINT8] = {"UINT8", 1},
    [MBX_OIP_UINT16] = {"UINT16", 2}, [MBX_OIP_UINT32] = {"UINT32", 4},
    [MBX_OIP_UINT64] = {"UINT64", 8}, [MBX_OIP_INT8] = {"INT8", 1},
    [MBX_OIP_INT16] = {"INT16", 2},   [MBX_OIP_INT32] = {"INT32", 4},
    [MBX_OIP_INT64] = {"INT64", 8},   [MBX_OIP_FP16] = {"FP16", 2},
    [MBX_OIP_FP32] = {"FP32", 4},     [MBX_OIP_FP64] = {"FP64", 8},
    [MBX_OIP_BF16] = {"BF16", 2},     [MBX_OIP_BYTES] = {"BYTES", 0},
};

static const char *const outputs[MBX_OIP_OUT_COUNT] = {
    [MBX_OIP_OUT_LOSS] = "loss",
    [MBX_OIP_OUT_CONF_LOSS] = "conf_loss",
    [MBX_OIP_OUT_LOC_LOSS] = "loc_loss",
    [MBX_OIP_OUT_NORMALIZER] = "normalizer",
    [MBX_OIP_OUT_NUM_POSITIVES] = "num_positives",
    [MBX_OIP_OUT_NUM_NEGATIVES] = "num_negatives",
    [MBX_OIP_OUT_PER_IMAGE_LOSS] = "per_image_loss",
    [MBX_OIP_OUT_GRAD_LOC] = "grad_loc",
    [MBX_OIP_OUT_GRAD_CONF] = "grad_conf",
    [MBX_OIP_OUT_GRAD_LOC_ROWS] = "grad_loc_rows",
    [MBX_OIP_OUT_GRAD_LOC_VALUES] = "grad_loc_values",
    [MBX_OIP_OUT_GRAD_CONF_ROWS] = "grad_conf_rows",
    [MBX_OIP_OUT_GRAD_CONF_VALUES] = "grad_conf_values",
};

const char *mbx_oip_dtype_name(mbx_oip_dtype t)
{
    return (unsigned)t < MBX_OIP_DTYPE_COUNT ? dtypes[t].name : NULL;
}

int mbx_oip_dtype_parse(const char *name, mbx_oip_dtype *t)
{
    for (int i = 0; i < MBX_OIP_DTYPE_COUNT; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *t = (mbx_oip_dtype)i;
            return 0;
        }
    }
    return -1;
}

size_t mbx_oip_dtype_size(mbx_oip_dtype t)
{
    return (unsigned)t < MBX_OIP_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *mbx_oip_output_name(mbx_oip_output o)
{
    return (unsigned)o < MBX_OIP_OUT_COUNT ? outputs[o] : NULL;
}
