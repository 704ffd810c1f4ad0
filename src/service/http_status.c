/*
 * http_status.c - the mapping of every MBX_E_* code to its HTTP status, in
 * one table indexed by the error list.  A code missing from the table
 * answers 500, and tests/service checks that none is missing.
 */
#include "http_status.h"

#include "multibox/multibox.h"

#define AT(name) [MBX_ERROR_INDEX_##name]

static const unsigned short status_of[MBX_ERROR_COUNT] = {
    /* 400: the body cannot be read as a request at all */
    AT(MALFORMED_JSON) = 400,
    AT(BAD_BASE64) = 400,
    AT(BAD_FRAMING) = 400,
    AT(UNAUTHORIZED) = 401,
    AT(NOT_FOUND) = 404,
    AT(METHOD_NOT_ALLOWED) = 405,
    AT(PAYLOAD_TOO_LARGE) = 413,
    AT(UNSUPPORTED_MEDIA_TYPE) = 415,
    /* 422: well-formed but invalid */
    AT(MISSING_FIELD) = 422,
    AT(UNKNOWN_FIELD) = 422,
    AT(WRONG_TYPE) = 422,
    AT(SHAPE_MISMATCH) = 422,
    AT(SHAPE_OVERFLOW) = 422,
    AT(OUT_OF_RANGE) = 422,
    AT(NOT_FINITE) = 422,
    AT(DEGENERATE_BOX) = 422,
    AT(BAD_LABEL) = 422,
    AT(BAD_CONFIG) = 422,
    AT(UNKNOWN_PRESET) = 422,
    /* 5xx: the server's side.  invalid_argument comes from an API call the
     * server itself got wrong (NULL, unknown enum), never from a body. */
    AT(INVALID_ARGUMENT) = 500,
    AT(OUT_OF_MEMORY) = 500,
    AT(INTERNAL) = 500,
    AT(OVERLOADED) = 503,
    AT(DRAINING) = 503,
    AT(TIMEOUT) = 503,
};

int svc_http_status(int mbx_code)
{
    if (mbx_code < 0 && -mbx_code <= MBX_ERROR_COUNT && status_of[-mbx_code - 1])
        return status_of[-mbx_code - 1];
    return 500;
}

int svc_http_retryable(int mbx_code)
{
    return svc_http_status(mbx_code) == 503;
}
