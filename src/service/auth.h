/*
 * auth.h - optional bearer-token authentication of multiboxd.  The token
 * comes from a file (--auth-token-file) or from MULTIBOX_AUTH_TOKEN; a
 * request then needs `Authorization: Bearer <token>`, compared in constant
 * time, or gets 401 with `WWW-Authenticate: Bearer realm="multibox"`.
 * Health, readiness, metrics and the spec stay open unless --auth-health.
 * The token is never logged, never echoed in an answer, and wiped from
 * memory when freed.
 */
#ifndef SVC_AUTH_H
#define SVC_AUTH_H

#include <stddef.h>

#include "config.h"

struct svc_request;

/* Longest token accepted, in bytes. */
#define SVC_AUTH_TOKEN_MAX 4096

typedef struct svc_auth svc_auth;

/*
 * Loads the token that cfg names (a file, or MULTIBOX_AUTH_TOKEN).  A
 * trailing newline (and other trailing white space) of the file is
 * dropped; the token must then be 1..SVC_AUTH_TOKEN_MAX visible ASCII
 * characters (0x21..0x7e).  *out is NULL when cfg asks for no token.
 * Returns 0, or -1 with a one-line message in err that never contains the
 * token.  Not thread-safe (call at start-up).
 */
int svc_auth_load(const svc_config *cfg, svc_auth **out, char *err, size_t errlen);
/* Wipes and frees a; NULL does nothing. */
void svc_auth_free(svc_auth *a);
/* Whether the open paths (svc_auth_path_is_open) need the token too. */
int svc_auth_protects_health(const svc_auth *a);

/*
 * Checks an Authorization header value ("Bearer <token>", the scheme
 * case-insensitive, NULL when absent).  The comparison takes a time that
 * depends only on the configured token's length, never on where a wrong
 * token differs.  Returns 1 when it matches, 0 when the header is absent
 * or not a bearer credential, -1 when a bearer token is present but wrong.
 * Thread-safe (a is read-only).
 */
int svc_auth_check_header(const svc_auth *a, const char *authorization);

/* 1 when path is open without a token unless --auth-health: /livez,
 * /readyz, /metrics, /openapi.yaml, /v2/health/live and /v2/health/ready. */
int svc_auth_path_is_open(const char *path);

/*
 * Header-time check of a request (HTTP thread, from svc_request_begin):
 * returns 0 when the request may go on (no token configured, an open
 * path, or the right token); else sets the 401 answer (the /v2 error body
 * on /v2 paths) with its WWW-Authenticate header and returns 1.
 */
int svc_auth_reject(struct svc_request *req);

#endif
