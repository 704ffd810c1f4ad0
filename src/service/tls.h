/*
 * tls.h - optional HTTPS for multiboxd through libmicrohttpd's GnuTLS
 * support: the PEM certificate chain and private key named by --tls-cert
 * and --tls-key, read once at start-up and handed to libmicrohttpd.  The
 * key is wiped from memory when freed.
 */
#ifndef SVC_TLS_H
#define SVC_TLS_H

#include <stddef.h>

#include "config.h"

/* Largest certificate chain or key file accepted. */
#define SVC_TLS_FILE_MAX ((size_t)1 << 20)

typedef struct svc_tls {
    char *cert_pem; /* NUL-terminated PEM text, malloc'ed */
    char *key_pem;  /* NUL-terminated PEM text, malloc'ed; wiped on free */
} svc_tls;

/*
 * Reads the files cfg names.  *out is NULL when cfg asks for no TLS.
 * Fails (-1, one line in err) when this libmicrohttpd lacks HTTPS, a file
 * cannot be read, is larger than SVC_TLS_FILE_MAX, or holds no PEM block
 * of the expected kind (a CERTIFICATE; a PRIVATE KEY).  Whether the key
 * fits the certificate is checked by GnuTLS when the server starts.
 * Not thread-safe (call at start-up).
 */
int svc_tls_load(const svc_config *cfg, svc_tls **out, char *err, size_t errlen);
/* Wipes the key and frees t; NULL does nothing. */
void svc_tls_free(svc_tls *t);

#endif
