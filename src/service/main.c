/*
 * main.c - multiboxd's entry point: parses the configuration (invalid
 * values exit 2), answers --help, --version and --probe, else runs the
 * service until it has drained.
 */
#include <stdio.h>

#include "app.h"
#include "config.h"
#include "multibox/multibox.h"
#include "probe.h"

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
    return svc_app_run(&cfg);
}
