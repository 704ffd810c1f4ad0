/*
 * main.c - multiboxd's entry point: parses the configuration and loads the
 * files it names (the bearer token, the TLS certificate and key; invalid
 * values and unreadable files exit 2), answers --help, --version and
 * --probe, else runs the service until it has drained.
 */
#include <stdio.h>

#include "app.h"
#include "auth.h"
#include "config.h"
#include "multibox/multibox.h"
#include "probe.h"
#include "tls.h"

#ifndef MBX_SERVICE_VERSION
#define MBX_SERVICE_VERSION MBX_VERSION_STRING
#endif

/* The probe gives up after this long (the health check has its own timeout too). */
#define PROBE_TIMEOUT_S 5.0

int main(int argc, char **argv)
{
    svc_config cfg;
    char err[512];
    if (svc_config_parse(&cfg, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "multiboxd: %s\n", err);
        return 2;
    }
    if (cfg.help) {
        svc_config_usage(stdout);
        return 0;
    }
    if (cfg.version) {
        printf("multiboxd %s\n", MBX_SERVICE_VERSION);
        return 0;
    }
    if (cfg.probe_url[0])
        return svc_probe(cfg.probe_url, PROBE_TIMEOUT_S);

    svc_auth *auth = NULL;
    svc_tls *tls = NULL;
    if (svc_auth_load(&cfg, &auth, err, sizeof err) != 0 ||
        svc_tls_load(&cfg, &tls, err, sizeof err) != 0) {
        fprintf(stderr, "multiboxd: %s\n", err);
        svc_auth_free(auth);
        return 2;
    }
    cfg.auth = auth;
    cfg.tls = tls;
    int rc = svc_app_run(&cfg);
    svc_tls_free(tls);
    svc_auth_free(auth);
    return rc;
}
