/*
 * oip_meta.c - the small JSON documents of the Open Inference Protocol
 * endpoints: server metadata (GET /v2), model metadata (GET
 * /v2/models/multibox_loss: every input and output with its datatype and
 * shape, -1 for a variable dimension) and the /v2 error body, whose "error"
 * is a string because that is what standard clients read.
 */
#include <string.h>

#include "oip_internal.h"

int mbx_oip_server_metadata_json(char **out, size_t *len)
{
    jbuf jb = {0};
    jbuf_puts(&jb, "{\"name\":\"" MBX_OIP_SERVER_NAME "\",\"version\":\"" MBX_VERSION_STRING
                   "\",\"extensions\":[\"binary_tensor_data\"]}");
    return jbuf_finish(&jb, out, len);
}

/* Datatypes listed in the metadata: the first accepted one where several are. */
typedef struct meta_tensor {
    const char *name, *datatype, *shape;
} meta_tensor;

static const meta_tensor meta_inputs[] = {
    {"loc", "FP32", "[-1,-1,4]"},
    {"conf", "FP32", "[-1,-1,-1]"},
    {"anchors", "FP32", "[-1,4]"},
    {"gt_boxes", "FP32", "[-1,4]"},
    {"gt_labels", "INT32", "[-1]"},
    {"gt_counts", "INT32", "[-1]"},
    {"gt_difficult", "BOOL", "[-1]"},
};

static const meta_tensor meta_outputs[] = {
    {"loss", "FP32", "[1]"},
    {"conf_loss", "FP32", "[1]"},
    {"loc_loss", "FP32", "[1]"},
    {"normalizer", "FP32", "[1]"},
    {"num_positives", "INT32", "[1]"},
    {"num_negatives", "INT32", "[1]"},
    {"per_image_loss", "FP32", "[-1]"},
    {"grad_loc", "FP32", "[-1,-1,4]"},
    {"grad_conf", "FP32", "[-1,-1,-1]"},
    {"grad_loc_rows", "INT32", "[-1]"},
    {"grad_loc_values", "FP32", "[-1,4]"},
    {"grad_conf_rows", "INT32", "[-1]"},
    {"grad_conf_values", "FP32", "[-1,-1]"},
};

static void put_tensors(jbuf *jb, const char *key, const meta_tensor *t, size_t n)
{
    jbuf_puts(jb, ",\"");
    jbuf_puts(jb, key);
    jbuf_puts(jb, "\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            jbuf_putc(jb, ',');
        jbuf_puts(jb, "{\"name\":\"");
        jbuf_puts(jb, t[i].name);
        jbuf_puts(jb, "\",\"datatype\":\"");
        jbuf_puts(jb, t[i].datatype);
        jbuf_puts(jb, "\",\"shape\":");
        jbuf_puts(jb, t[i].shape);
        jbuf_putc(jb, '}');
    }
    jbuf_putc(jb, ']');
}

int mbx_oip_model_metadata_json(char **out, size_t *len)
{
    jbuf jb = {0};
    _Static_assert(sizeof meta_outputs / sizeof meta_outputs[0] == MBX_OIP_OUT_COUNT,
                   "every output is listed");
    /* No "versions": the model is not versioned (no /versions/<v> paths). */
    jbuf_puts(&jb, "{\"name\":\"" MBX_OIP_MODEL_NAME "\",\"platform\":\"multibox\"");
    put_tensors(&jb, "inputs", meta_inputs, sizeof meta_inputs / sizeof meta_inputs[0]);
    put_tensors(&jb, "outputs", meta_outputs, MBX_OIP_OUT_COUNT);
    jbuf_putc(&jb, '}');
    return jbuf_finish(&jb, out, len);
}

int mbx_oip_error_json(int code, const char *message, char **out, size_t *len)
{
    jbuf jb = {0};
    const char *name = mbx_error_name(code);
    const char *msg = message && message[0] ? message : mbx_error_message(code);
    size_t nn = strlen(name), mn = strlen(msg);
    char *text = mbx_codec_malloc(nn + 2 + mn + 1);
    if (!text) {
        *out = NULL;
        if (len)
            *len = 0;
        return MBX_E_OUT_OF_MEMORY;
    }
    memcpy(text, name, nn);
    memcpy(text + nn, ": ", 2);
    memcpy(text + nn + 2, msg, mn + 1);
    jbuf_puts(&jb, "{\"error\":");
    jbuf_put_jstring(&jb, text, nn + 2 + mn);
    jbuf_putc(&jb, '}');
    mbx_codec_free(text);
    return jbuf_finish(&jb, out, len);
}
