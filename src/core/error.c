/*
 * error.c - the name and message tables generated from MBX_ERROR_LIST, and
 * the helper that fills an mbx_detail.  Pure: no allocation, no globals
 * beyond the constant tables.
 */
#include <stdarg.h>
#include <stdio.h>

#include "multibox/multibox.h"

static const char *const error_names[MBX_ERROR_COUNT] = {
#define MBX_X_NAME(name, code, msg) code,
    MBX_ERROR_LIST(MBX_X_NAME)
#undef MBX_X_NAME
};

static const char *const error_messages[MBX_ERROR_COUNT] = {
#define MBX_X_MSG(name, code, msg) msg,
    MBX_ERROR_LIST(MBX_X_MSG)
#undef MBX_X_MSG
};

const char *mbx_error_name(int code)
{
    if (code == 0)
        return "ok";
    if (code < 0 && -code <= MBX_ERROR_COUNT)
        return error_names[-code - 1];
    return "unknown_error";
}

const char *mbx_error_message(int code)
{
    if (code == 0)
        return "success";
    if (code < 0 && -code <= MBX_ERROR_COUNT)
        return error_messages[-code - 1];
    return "unknown error";
}

int mbx_detail_set(mbx_detail *detail, int code, const char *fmt, ...)
{
    if (detail) {
        va_list ap;
        detail->code = code;
        va_start(ap, fmt);
        vsnprintf(detail->message, sizeof detail->message, fmt, ap);
        va_end(ap);
    }
    return code;
}
