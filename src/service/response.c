/*
 * response.c - building answers (see response.h) and queueing them with
 * libmicrohttpd.  It must only be queued from the access handler.
 */
#include "response.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "http_status.h"
#include "multibox/multibox.h"

static const char oom_body[] =
    "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}";

void svc_response_clear(svc_response *r)
{
    if (r->owned)
        free(r->body);
    memset(r, 0, sizeof *r);
}

void svc_response_static(svc_response *r, int status, const char *content_type,
                         const char *body, size_t len)
{
    svc_response_clear(r);
    r->status = status;
    r->content_type = content_type;
    r->body = (char *)body;
    r->len = len;
}

void svc_response_owned(svc_response *r, int status, const char *content_type, char *body,
                        size_t len)
{
    svc_response_clear(r);
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->len = len;
    r->owned = 1;
}

void svc_response_error(svc_response *r, int code, const char *fmt, ...)
{
    char message[512];
    const char *msg = NULL;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        msg = message;
    }
    char *body = NULL;
    size_t len = 0;
    if (mbx_error_render_json(code, msg, &body, &len) == 0 && body) {
        svc_response_owned(r, svc_http_status(code), SVC_CT_JSON, body, len);
    } else {
        free(body);
        svc_response_static(r, 500, SVC_CT_JSON, oom_body, sizeof oom_body - 1);
    }
    if (svc_http_retryable(code))
        r->retry_after = 1;
    if (code == MBX_E_DRAINING)
        r->close = 1;
}

int svc_response_queue(struct MHD_Connection *conn, svc_response *r)
{
    struct MHD_Response *mr;
    if (r->owned) {
        mr = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    } else {
        mr = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_PERSISTENT);
    }
    if (!mr) {
        svc_response_clear(r);
        return MHD_NO;
    }
    /* libmicrohttpd owns the body now. */
    r->body = NULL;
    r->owned = 0;
    if (r->content_type)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->allow[0])
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", r->retry_after);
        MHD_add_response_header(mr, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (r->close)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}
