/*
 * response.h - an HTTP answer being prepared (status, body, the few headers
 * the service sets) and its hand-over to libmicrohttpd.  Error answers take
 * their status from http_status.c's table and their body from the codec's
 * error renderer, so every error has the contract's JSON shape (the /v2
 * one, {"error": "<code>: <message>"}, when r->v2 is set).  A 200 body may
 * also be a list of pieces sent without a copy (/v2 binary tensors).  A
 * response belongs to one request; it is not shared between threads except
 * by the hand-over through the connection's suspend/resume.
 */
#ifndef SVC_RESPONSE_H
#define SVC_RESPONSE_H

#include <stddef.h>

struct MHD_Connection;

typedef struct svc_response {
    int status;               /* 0 while nothing is set */
    const char *content_type; /* static string, NULL for none */
    char *body;               /* owned (free()) when owned is 1, else static */
    size_t len;               /* body length in bytes */
    int owned;
    int retry_after;          /* seconds for Retry-After, 0 for no header */
    int close;                /* 1: Connection: close */
    char allow[64];           /* Allow header value, "" for none */
    const char *www_authenticate; /* static WWW-Authenticate value, NULL for none */
    int v2;                   /* 1: errors in the /v2 body {"error": "<code>: <message>"};
                               * set once per request, kept by svc_response_clear */
    /* A body in pieces, sent without copying them (svc_response_pieces). */
    const void *pieces;       /* svc_piece (or, when made, svc_part) array, owned by pieces_cls */
    unsigned int num_pieces;
    void (*pieces_free)(void *cls); /* releases the pieces; called exactly once */
    void *pieces_cls;
    int made;                 /* pieces are svc_part (svc_response_parts): made as sent */
    const char *extra_header; /* one more header's (static) name, NULL for none */
    char extra_value[32];     /* its value */
} svc_response;

/* One piece of a body; the layout of struct MHD_IoVec and struct iovec. */
typedef struct svc_piece {
    const void *base;
    size_t len;
} svc_piece;

#define SVC_CT_JSON "application/json"

/*
 * Sets an error answer for a negative MBX_E_* code: the status from the
 * one table, {"error": {"code", "message"}} (fmt NULL: the code's default
 * message), Retry-After on 503.  Never fails: on allocation failure a
 * static out_of_memory body is used.  Releases any body set before.
 */
void svc_response_error(svc_response *r, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Sets an answer whose body is static (never freed). */
void svc_response_static(svc_response *r, int status, const char *content_type,
                         const char *body, size_t len);
/* Sets an answer that takes ownership of a malloc'ed body. */
void svc_response_owned(svc_response *r, int status, const char *content_type, char *body,
                        size_t len);
/*
 * Sets an answer whose body is pieces[0..n) in order (len bytes in all),
 * handed to libmicrohttpd without a copy.  pieces and what they point to
 * stay valid until free_fn(cls) runs: once, when libmicrohttpd is done with
 * the response, or when r is cleared or fails to queue.
 */
void svc_response_pieces(svc_response *r, int status, const char *content_type,
                         const svc_piece *pieces, unsigned int n, size_t len,
                         void (*free_fn)(void *cls), void *cls);
/*
 * One part of a body made as it is sent: bytes in memory (base), or, with
 * base NULL, a dense array given by its non-zero rows (codec.h): its
 * little-endian bytes, or their base64 text when b64 is 1.
 */
struct mbx_dense_rows;
typedef struct svc_part {
    const void *base;
    size_t len;
    const struct mbx_dense_rows *rows;
    int b64;
} svc_part;

/*
 * Sets an answer whose body is parts[0..n) in order (len bytes in all),
 * written a block at a time into libmicrohttpd's buffer as it is sent, on
 * the HTTP thread: for a big body that is cheap to make (mostly zeros) but
 * costly to hold.  parts and what they point to stay valid until
 * free_fn(cls) runs, as for svc_response_pieces.
 */
void svc_response_parts(svc_response *r, int status, const char *content_type,
                        const svc_part *parts, unsigned int n, size_t len,
                        void (*free_fn)(void *cls), void *cls);
/* Frees an owned body (or releases the pieces) and clears r; keeps r->v2. */
void svc_response_clear(svc_response *r);

/*
 * Queues r on conn (from libmicrohttpd's access handler only) and hands
 * the body to libmicrohttpd; r keeps status and len for the access log.
 * Returns the MHD_Result to give back to libmicrohttpd (MHD_NO closes the
 * connection).
 */
int svc_response_queue(struct MHD_Connection *conn, svc_response *r);

#endif
