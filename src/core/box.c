/*
 * box.c - the validity of one box, shared by the core's checks of its
 * inputs and the codecs' validation (mbx_box_check in multibox.h).
 */
#include <math.h>

#include "loss_impl.h"

int mbx_box_check(const float box[4], mbx_box_format fmt, const char **why)
{
    const char *unused;
    if (!why)
        why = &unused;
    for (int k = 0; k < 4; k++)
        if (!isfinite(box[k])) {
            *why = "NaN or infinity";
            return MBX_E_NOT_FINITE;
        }
    if (fmt == MBX_BOX_CXCYWH) {
        if (!(box[2] > 0.0f)) {
            *why = "width <= 0";
            return MBX_E_DEGENERATE_BOX;
        }
        if (!(box[3] > 0.0f)) {
            *why = "height <= 0";
            return MBX_E_DEGENERATE_BOX;
        }
    } else {
        if (!(box[2] > box[0])) {
            *why = "x2 <= x1";
            return MBX_E_DEGENERATE_BOX;
        }
        if (!(box[3] > box[1])) {
            *why = "y2 <= y1";
            return MBX_E_DEGENERATE_BOX;
        }
    }
    double out[4];
    mbx_box_to_xyxy(box, fmt, out);
    if (!(out[2] > out[0] && out[3] > out[1])) {
        *why = "size vanishes next to the centre in double precision";
        return MBX_E_DEGENERATE_BOX;
    }
    *why = NULL;
    return 0;
}
