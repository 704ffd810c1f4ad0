/*
 * oip_layout.c - where a binary inference request's inputs lie in its body,
 * from the JSON header alone, so that a server can start on the first
 * images while the rest of loc and conf still arrive (see oip.h).
 */
#include <string.h>

#include "oip_internal.h"

/* The binary loc or conf of f: rank 3 [B, A, w] with bytes; NULL otherwise. */
static const oip_tensor *image_tensor(const oip_frame *f, const char *name)
{
    for (size_t i = 0; i < f->num_inputs; i++) {
        const oip_tensor *t = &f->inputs[i];
        if (t->name && strcmp(t->name, name) == 0)
            return !t->data && t->rank == 3 && t->shape[0] > 0 ? t : NULL;
    }
    return NULL;
}

int mbx_oip_request_layout(const uint8_t *body, size_t len, size_t header_len, mbx_oip_layout *out)
{
    memset(out, 0, sizeof *out);
    if (!body || header_len == 0 || header_len == SIZE_MAX || header_len > len)
        return -1;
    oip_frame f;
    mbx_detail d = {0};
    if (oip_frame_parse(body, len, header_len, &f, &d) != 0)
        return -1; /* the parse proper reports it */
    const oip_tensor *loc = image_tensor(&f, "loc"), *conf = image_tensor(&f, "conf");
    int rc = -1;
    if (loc && conf && loc->shape[0] == conf->shape[0] &&
        loc->nbytes % (size_t)loc->shape[0] == 0 && conf->nbytes % (size_t)conf->shape[0] == 0) {
        out->batch = loc->shape[0];
        out->loc_offset = loc->offset;
        out->loc_image_bytes = loc->nbytes / (size_t)loc->shape[0];
        out->conf_offset = conf->offset;
        out->conf_image_bytes = conf->nbytes / (size_t)conf->shape[0];
        out->prefix_end = header_len;
        for (size_t i = 0; i < f.num_inputs; i++) {
            const oip_tensor *t = &f.inputs[i];
            if (t != loc && t != conf && !t->data && t->offset + t->nbytes > out->prefix_end)
                out->prefix_end = t->offset + t->nbytes;
        }
        rc = 0;
    }
    oip_frame_release(&f);
    return rc;
}

size_t mbx_oip_layout_image_end(const mbx_oip_layout *l, int64_t image)
{
    const size_t n = (size_t)image + 1;
    size_t end = l->prefix_end;
    if (l->loc_offset + n * l->loc_image_bytes > end)
        end = l->loc_offset + n * l->loc_image_bytes;
    if (l->conf_offset + n * l->conf_image_bytes > end)
        end = l->conf_offset + n * l->conf_image_bytes;
    return end;
}
