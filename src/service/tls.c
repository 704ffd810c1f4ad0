/*
 * tls.c - loading the HTTPS certificate and key (see tls.h).  The PEM text
 * is checked only for its markers here; GnuTLS parses it when the daemon
 * starts, and a bad pair makes the start fail with GnuTLS's reason in the
 * log.  The key's bytes are never logged.
 */
#include "tls.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file of at most SVC_TLS_FILE_MAX bytes, NUL-terminated; NULL with errno. */
static char *read_pem(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rbe");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            if (cap > SVC_TLS_FILE_MAX) {
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
    }
    fclose(f);
    if (buf) {
        if (n > SVC_TLS_FILE_MAX) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

void svc_tls_free(svc_tls *t)
{
    if (!t)
        return;
    if (t->key_pem)
        wipe(t->key_pem, strlen(t->key_pem));
    free(t->key_pem);
    free(t->cert_pem);
    free(t);
}

int svc_tls_load(const svc_config *cfg, svc_tls **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->tls_cert_file[0] && !cfg->tls_key_file[0])
        return 0;
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "--tls-cert: this libmicrohttpd was built without HTTPS support");
        return -1;
    }
    svc_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "--tls-cert: out of memory");
        return -1;
    }
    size_t clen = 0, klen = 0;
    t->cert_pem = read_pem(cfg->tls_cert_file, &clen);
    if (!t->cert_pem) {
        snprintf(err, errlen, "--tls-cert: cannot read %s: %s", cfg->tls_cert_file,
                 errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
        svc_tls_free(t);
        return -1;
    }
    t->key_pem = read_pem(cfg->tls_key_file, &klen);
    if (!t->key_pem) {
        snprintf(err, errlen, "--tls-key: cannot read %s: %s", cfg->tls_key_file,
                 errno == EFBIG ? "larger than 1 MiB" : strerror(errno));
        svc_tls_free(t);
        return -1;
    }
    if (strlen(t->cert_pem) != clen || !strstr(t->cert_pem, "-----BEGIN CERTIFICATE-----")) {
        snprintf(err, errlen, "--tls-cert: %s holds no PEM certificate", cfg->tls_cert_file);
        svc_tls_free(t);
        return -1;
    }
    if (strlen(t->key_pem) != klen || !strstr(t->key_pem, "-----BEGIN ") ||
        !strstr(t->key_pem, "PRIVATE KEY-----")) {
        snprintf(err, errlen, "--tls-key: %s holds no PEM private key", cfg->tls_key_file);
        svc_tls_free(t);
        return -1;
    }
    *out = t;
    return 0;
}
