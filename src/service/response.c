/*
 * response.c - building answers (see response.h) and queueing them with
 * libmicrohttpd.  It must only be queued from the access handler.
 */
#include "response.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "oip.h"
#include "http_status.h"
#include "multibox/multibox.h"

static const char oom_body[] =
    "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}";
static const char oom_body_v2[] = "{\"error\":\"out_of_memory: out of memory\"}";

void svc_response_clear(svc_response *r)
{
    if (r->owned)
        free(r->body);
    if (r->pieces_free)
        r->pieces_free(r->pieces_cls);
    int v2 = r->v2;
    memset(r, 0, sizeof *r);
    r->v2 = v2;
}

void svc_response_pieces(svc_response *r, int status, const char *content_type,
                         const svc_piece *pieces, unsigned int n, size_t len,
                         void (*free_fn)(void *cls), void *cls)
{
    svc_response_clear(r);
    r->status = status;
    r->content_type = content_type;
    r->pieces = pieces;
    r->num_pieces = n;
    r->len = len;
    r->pieces_free = free_fn;
    r->pieces_cls = cls;
}

void svc_response_parts(svc_response *r, int status, const char *content_type,
                        const svc_part *parts, unsigned int n, size_t len,
                        void (*free_fn)(void *cls), void *cls)
{
    /* The pieces field holds either kind; made says which. */
    svc_response_pieces(r, status, content_type, (const svc_piece *)(const void *)parts, n, len,
                        free_fn, cls);
    r->made = 1;
}

/* libmicrohttpd's reader over svc_response_parts's parts. */
typedef struct parts_reader {
    const svc_part *parts;
    unsigned int n;
    void (*free_fn)(void *cls);
    void *cls;
} parts_reader;

/* HTTP thread: body bytes [pos, pos + k) into buf, k as large as max allows. */
static ssize_t parts_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    const parts_reader *s = cls;
    size_t done = 0;
    uint64_t start = 0;
    for (unsigned int k = 0; k < s->n && done < max; k++) {
        const svc_part *p = &s->parts[k];
        const uint64_t end = start + p->len;
        if (pos + done < end) {
            const size_t at = (size_t)(pos + done - start);
            const size_t n = p->len - at < max - done ? p->len - at : max - done;
            if (p->base)
                memcpy(buf + done, (const char *)p->base + at, n);
            else if (p->b64)
                mbx_dense_rows_b64_read(p->rows, at, buf + done, n);
            else
                mbx_dense_rows_raw_read(p->rows, at, buf + done, n);
            done += n;
        }
        start = end;
    }
    return (ssize_t)done;
}

static void parts_free(void *cls)
{
    parts_reader *s = cls;
    s->free_fn(s->cls);
    free(s);
}

/*
 * libmicrohttpd allocates the block with the response and calls the reader
 * for at most that much, sending it before it asks again: large enough to
 * cost few calls and sends, small enough to stay in cache while it is
 * written and sent (A/B on the 37 MB SSD300 answer: 64 KiB blocks were
 * clearly slower, 1 to 4 MiB alike).
 */
#define PARTS_BLOCK ((size_t)1 << 20)

static struct MHD_Response *create_made(svc_response *r)
{
    parts_reader *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    *s = (parts_reader){r->pieces, r->num_pieces, r->pieces_free, r->pieces_cls};
    struct MHD_Response *mr =
        MHD_create_response_from_callback(r->len, r->len < PARTS_BLOCK ? r->len + 1 : PARTS_BLOCK,
                                          parts_read, s, parts_free);
    if (!mr) {
        free(s);
        return NULL;
    }
    r->made = 0;
    r->pieces = NULL; /* libmicrohttpd calls pieces_free through parts_free now */
    r->pieces_free = NULL;
    r->pieces_cls = NULL;
    return mr;
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
    int rc = r->v2 ? mbx_oip_error_json(code, msg, &body, &len)
                   : mbx_error_render_json(code, msg, &body, &len);
    if (rc == 0 && body) {
        svc_response_owned(r, svc_http_status(code), SVC_CT_JSON, body, len);
    } else {
        free(body);
        if (r->v2)
            svc_response_static(r, 500, SVC_CT_JSON, oom_body_v2, sizeof oom_body_v2 - 1);
        else
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
    if (r->made) {
        mr = create_made(r);
    } else if (r->pieces_free || r->pieces) {
        _Static_assert(sizeof(svc_piece) == sizeof(struct MHD_IoVec) &&
                           offsetof(svc_piece, len) == offsetof(struct MHD_IoVec, iov_len),
                       "svc_piece has the layout of MHD_IoVec");
        mr = MHD_create_response_from_iovec((const struct MHD_IoVec *)r->pieces, r->num_pieces,
                                            r->pieces_free, r->pieces_cls);
        if (mr) { /* libmicrohttpd calls pieces_free now */
            r->pieces = NULL;
            r->pieces_free = NULL;
            r->pieces_cls = NULL;
        }
    } else if (r->owned) {
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
    if (r->www_authenticate)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_authenticate);
    if (r->retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", r->retry_after);
        MHD_add_response_header(mr, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (r->close)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->extra_header)
        MHD_add_response_header(mr, r->extra_header, r->extra_value);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}
