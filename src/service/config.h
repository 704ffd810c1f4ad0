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

struct svc_auth;
struct svc_tls;

#define SVC_PATH_MAX 1024

/*
 * When a binary request's loss may start while its body still arrives
 * (job_oip.c): the overlap pays when the upload leaves the cores idle, as a
 * remote client's does; a client on this host spends the same cores on the
 * upload, where starting early only adds contention.
 */
typedef enum svc_stream_upload {
    SVC_STREAM_AUTO,   /* clients on other hosts only */
    SVC_STREAM_ALWAYS,
    SVC_STREAM_NEVER,
} svc_stream_upload;

/* Whether threads are pinned to CPUs (affinity.h): the workers, the HTTP thread. */
typedef enum svc_pin_policy {
    SVC_PIN_AUTO,   /* when the workers are at least as many as the allowed CPUs */
    SVC_PIN_ALWAYS,
    SVC_PIN_NEVER,
} svc_pin_policy;

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
    svc_stream_upload stream_upload;
    svc_pin_policy pin_workers;   /* each worker on a CPU of its own */
    svc_pin_policy pin_http;      /* the HTTP thread on one CPU */

    /* Hardening. */
    int max_connections;          /* 1..1000000 open connections (capped by RLIMIT_NOFILE) */
    int max_connections_per_ip;   /* 0 (no limit)..1000000 */
    double header_timeout_s;      /* > 0: a request line and headers must arrive within it */
    char auth_token_file[SVC_PATH_MAX]; /* "" when not given */
    int auth_token_env;           /* 1 when MULTIBOX_AUTH_TOKEN holds the token */
    int auth_health;              /* 1: health and metrics need the token too */
    char tls_cert_file[SVC_PATH_MAX]; /* PEM certificate chain, "" for plain HTTP */
    char tls_key_file[SVC_PATH_MAX];  /* PEM private key, "" for plain HTTP */

    /* Loaded from the files above by main.c after parsing (svc_auth_load,
     * svc_tls_load); NULL when not configured.  Owned by main.c, read-only
     * while the service runs. */
    const struct svc_auth *auth;
    const struct svc_tls *tls;
} svc_config;

/* The environment variable that may hold the bearer token itself. */
#define SVC_ENV_AUTH_TOKEN "MULTIBOX_AUTH_TOKEN"

/* Fills cfg with the documented defaults (workers = usable CPU count). */
void svc_config_default(svc_config *cfg);

/*
 * Parses argv (argv[0] skipped) over the environment twins and the
 * defaults.  Accepts "--flag value" and "--flag=value".  Returns 0, or -1
 * with a one-line message in err (cfg then partly written).  Files named
 * by flags are not opened here (see auth.h, tls.h); only their presence
 * and combinations are checked.  The token itself is never copied into cfg.
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
