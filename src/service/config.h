/*
 * config.h - multiboxd's configuration: command-line flags, each with an
 * environment twin MULTIBOX_<FLAG> (upper case, dashes as underscores), a
 * flag overriding its twin.  Parsing is pure (no I/O besides reading the
 * environment and the CPU count) so it is unit-tested directly.
 */
#ifndef SVC_CONFIG_H
#define SVC_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

typedef struct svc_config {
    char listen_host[256];        /* IPv4/IPv6 literal or host name, no brackets */
    int listen_port;              /* 0..65535; 0 picks an ephemeral port */
    int workers;                  /* 1..1024 worker threads (default: usable CPUs) */
    int queue_depth;              /* 0..1000000 requests waiting beyond the workers */
    uint64_t max_body_bytes;      /* hard limit for any body, >= 1 */
    uint64_t max_json_body_bytes; /* limit for bodies of JSON text, >= 1 */
    double request_timeout_s;     /* idle connection timeout, > 0 */
    double drain_timeout_s;       /* >= 0, forced exit after it */
    svc_log_format log_format;
    int help, version;            /* --help / --version asked */
    char probe_url[1024];         /* --probe URL, "" when not asked */
} svc_config;

/* Fills cfg with the documented defaults (workers = usable CPU count). */
void svc_config_default(svc_config *cfg);

/*
 * Parses argv (argv[0] skipped) over the environment twins and the
 * defaults.  Accepts "--flag value" and "--flag=value".  Returns 0, or -1
 * with a one-line message in err (cfg then partly written).
 */
int svc_config_parse(svc_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Writes the --help text. */
void svc_config_usage(FILE *out);

/*
 * Value parsers shared with the tests.  Sizes: plain bytes or a number with
 * K/M/G/T, KiB/MiB/GiB/TiB (powers of 1024) or KB/MB/GB/TB (powers of 1000),
 * case-insensitive.  Durations: seconds, or a number with ms, s, m or h.
 * HOST:PORT, with [v6]:PORT for IPv6.  Each returns 0 or -1.
 */
int svc_parse_size(const char *s, uint64_t *out);
int svc_parse_duration(const char *s, double *out);
int svc_parse_listen(const char *s, char *host, size_t hostlen, int *port);

/* CPUs this process may use: affinity mask, capped by a cgroup CPU quota. */
int svc_usable_cpus(void);

#endif
