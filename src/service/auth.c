/*
 * auth.c - the bearer token (see auth.h): loading it at start-up, the
 * constant-time check of the Authorization header, and the 401 answer.
 * Nothing here may write the token, or what a client sent as one, to a log
 * line or an answer.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "multibox/multibox.h"
#include "request.h"

struct svc_auth {
    size_t len;       /* 1..SVC_AUTH_TOKEN_MAX */
    int protect_health;
    char token[];     /* len bytes, NUL-terminated */
};

/* The header's realm, and RFC 6750's error code for a token that does not match. */
#define WWW_AUTH_MISSING "Bearer realm=\"multibox\""
#define WWW_AUTH_INVALID "Bearer realm=\"multibox\", error=\"invalid_token\""

static const char msg_missing[] = "missing bearer token (Authorization: Bearer <token>)";
static const char msg_invalid[] = "invalid bearer token";
/* Overwrites n bytes in a way the compiler may not drop. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* Reads at most cap bytes of path into buf; the byte count, or -1 with errno. */
static long read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        if (got == cap)
            break;
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return (long)got;
}

int svc_auth_load(const svc_config *cfg, svc_auth **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->auth_token_file[0] && !cfg->auth_token_env)
        return 0;
    const char *origin = cfg->auth_token_file[0] ? "--auth-token-file" : SVC_ENV_AUTH_TOKEN;
    /* One byte more than allowed, to tell "too long" from "exactly the limit";
     * trailing white space may follow the longest token. */
    enum { CAP = SVC_AUTH_TOKEN_MAX + 64 };
    svc_auth *a = calloc(1, sizeof *a + CAP + 1);
    if (!a) {
        snprintf(err, errlen, "%s: out of memory", origin);
        return -1;
    }
    size_t n;
    if (cfg->auth_token_file[0]) {
        long got = read_small_file(cfg->auth_token_file, a->token, CAP);
        if (got < 0) {
            snprintf(err, errlen, "--auth-token-file: cannot read %s: %s", cfg->auth_token_file,
                     strerror(errno));
            free(a);
            return -1;
        }
        n = (size_t)got;
    } else {
        const char *t = getenv(SVC_ENV_AUTH_TOKEN);
        n = t ? strnlen(t, CAP) : 0;
        memcpy(a->token, t ? t : "", n);
    }
    while (n > 0 && (a->token[n - 1] == '\n' || a->token[n - 1] == '\r' ||
                     a->token[n - 1] == ' ' || a->token[n - 1] == '\t'))
        n--;
    a->token[n] = '\0';
    const char *why = NULL;
    if (n == 0)
        why = "the token is empty";
    else if (n > SVC_AUTH_TOKEN_MAX)
        why = "the token is longer than 4096 bytes";
    for (size_t i = 0; !why && i < n; i++)
        if ((unsigned char)a->token[i] < 0x21 || (unsigned char)a->token[i] > 0x7e)
            why = "the token may hold only visible ASCII characters (no spaces)";
    if (why) {
        snprintf(err, errlen, "%s: %s", origin, why);
        wipe(a->token, CAP);
        free(a);
        return -1;
    }
    a->len = n;
    a->protect_health = cfg->auth_health;
    *out = a;
    return 0;
}

void svc_auth_free(svc_auth *a)
{
    if (!a)
        return;
    wipe(a->token, a->len);
    free(a);
}

int svc_auth_protects_health(const svc_auth *a)
{
    return a && a->protect_health;
}

int svc_auth_check_header(const svc_auth *a, const char *h)
{
    static const char scheme[] = "Bearer";
    if (!a || !h)
        return 0;
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, scheme, sizeof scheme - 1) != 0 ||
        (h[sizeof scheme - 1] != ' ' && h[sizeof scheme - 1] != '\t'))
        return 0;
    h += sizeof scheme - 1;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strcspn(h, " \t");
    if (n == 0)
        return 0;
    /* Only white space may follow the token. */
    for (const char *rest = h + n; *rest; rest++)
        if (*rest != ' ' && *rest != '\t')
            return -1;
    /* Every byte of the configured token is looked at, whatever was sent;
     * the given bytes are read only within their length (public). */
    /* The volatile accumulator keeps the compiler from leaving the loop early. */
    volatile unsigned char diff = (unsigned char)(n != a->len);
    for (size_t i = 0; i < a->len; i++) {
        unsigned char g = i < n ? (unsigned char)h[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)a->token[i]);
    }
    return diff == 0 ? 1 : -1;
}

int svc_auth_path_is_open(const char *path)
{
    static const char *const open_paths[] = {"/livez", "/readyz", "/metrics", "/openapi.yaml",
                                             "/v2/health/live", "/v2/health/ready"};
    for (size_t i = 0; i < sizeof open_paths / sizeof open_paths[0]; i++)
        if (strcmp(path, open_paths[i]) == 0)
            return 1;
    return 0;
}

int svc_auth_reject(svc_request *r)
{
    const svc_auth *a = r->app->cfg.auth;
    if (!a)
        return 0;
    if (!a->protect_health && svc_auth_path_is_open(r->path))
        return 0;
    int rc = svc_auth_check_header(a, svc_request_header(r, MHD_HTTP_HEADER_AUTHORIZATION));
    if (rc == 1)
        return 0;
    /* The body is the /v2 one on /v2 paths (r->response.v2, set with the request). */
    svc_request_fail(r, MBX_E_UNAUTHORIZED, "%s", rc == 0 ? msg_missing : msg_invalid);
    r->response.www_authenticate = rc == 0 ? WWW_AUTH_MISSING : WWW_AUTH_INVALID;
    return 1;
}
