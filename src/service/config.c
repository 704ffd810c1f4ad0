/*
 * config.c - flag and environment parsing for multiboxd (see config.h).
 * One table lists every option with its twin and its value parser, so a
 * new option is one row.  Nothing here starts threads or touches sockets.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "affinity.h"

#define MAX_WORKERS 1024
#define MAX_QUEUE_DEPTH 1000000
#define MAX_BODY_LIMIT ((uint64_t)1 << 40) /* 1 TiB */
#define MAX_CONNECTIONS 1000000

typedef enum opt_id {
    OPT_LISTEN,
    OPT_WORKERS,
    OPT_QUEUE_DEPTH,
    OPT_MAX_BODY,
    OPT_MAX_JSON_BODY,
    OPT_REQUEST_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_LOG_FORMAT,
    OPT_STREAM_UPLOAD,
    OPT_PIN_WORKERS,
    OPT_PIN_HTTP,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_CONNECTIONS_PER_IP,
    OPT_HEADER_TIMEOUT,
    OPT_AUTH_TOKEN_FILE,
    OPT_AUTH_HEALTH,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_PROBE,
    OPT_HELP,
    OPT_VERSION,
    OPT_COUNT
} opt_id;

typedef struct opt_def {
    const char *flag;  /* without the leading dashes */
    const char *env;   /* environment twin, NULL for none */
    int takes_value;   /* 0: a switch, whose twin holds true/false */
} opt_def;

/* --probe, --help and --version have no twin: a twin would turn every
 * process started in that environment into a probe.  There is no
 * --auth-token flag: a command line is readable by every local user
 * (/proc/PID/cmdline); the token comes from a file or MULTIBOX_AUTH_TOKEN. */
static const opt_def opts[OPT_COUNT] = {
    [OPT_LISTEN] = {"listen", "MULTIBOX_LISTEN", 1},
    [OPT_WORKERS] = {"workers", "MULTIBOX_WORKERS", 1},
    [OPT_QUEUE_DEPTH] = {"queue-depth", "MULTIBOX_QUEUE_DEPTH", 1},
    [OPT_MAX_BODY] = {"max-body-bytes", "MULTIBOX_MAX_BODY_BYTES", 1},
    [OPT_MAX_JSON_BODY] = {"max-json-body-bytes", "MULTIBOX_MAX_JSON_BODY_BYTES", 1},
    [OPT_REQUEST_TIMEOUT] = {"request-timeout", "MULTIBOX_REQUEST_TIMEOUT", 1},
    [OPT_DRAIN_TIMEOUT] = {"drain-timeout", "MULTIBOX_DRAIN_TIMEOUT", 1},
    [OPT_LOG_FORMAT] = {"log-format", "MULTIBOX_LOG_FORMAT", 1},
    [OPT_STREAM_UPLOAD] = {"stream-upload", "MULTIBOX_STREAM_UPLOAD", 1},
    [OPT_PIN_WORKERS] = {"pin-workers", "MULTIBOX_PIN_WORKERS", 1},
    [OPT_PIN_HTTP] = {"pin-http", "MULTIBOX_PIN_HTTP", 1},
    [OPT_MAX_CONNECTIONS] = {"max-connections", "MULTIBOX_MAX_CONNECTIONS", 1},
    [OPT_MAX_CONNECTIONS_PER_IP] = {"max-connections-per-ip", "MULTIBOX_MAX_CONNECTIONS_PER_IP", 1},
    [OPT_HEADER_TIMEOUT] = {"header-timeout", "MULTIBOX_HEADER_TIMEOUT", 1},
    [OPT_AUTH_TOKEN_FILE] = {"auth-token-file", "MULTIBOX_AUTH_TOKEN_FILE", 1},
    [OPT_AUTH_HEALTH] = {"auth-health", "MULTIBOX_AUTH_HEALTH", 0},
    [OPT_TLS_CERT] = {"tls-cert", "MULTIBOX_TLS_CERT", 1},
    [OPT_TLS_KEY] = {"tls-key", "MULTIBOX_TLS_KEY", 1},
    [OPT_PROBE] = {"probe", NULL, 1},
    [OPT_HELP] = {"help", NULL, 0},
    [OPT_VERSION] = {"version", NULL, 0},
};

/*
 * v's place among auto, always, never, or -1: the values of both
 * svc_stream_upload and svc_pin_policy, in their order.
 */
_Static_assert(SVC_STREAM_AUTO == 0 && SVC_STREAM_ALWAYS == 1 && SVC_STREAM_NEVER == 2,
               "svc_stream_upload in the order of auto_always_never");
_Static_assert(SVC_PIN_AUTO == 0 && SVC_PIN_ALWAYS == 1 && SVC_PIN_NEVER == 2,
               "svc_pin_policy in the order of auto_always_never");
static int auto_always_never(const char *v)
{
    static const char *const words[] = {"auto", "always", "never"};
    for (int i = 0; i < 3; i++)
        if (strcmp(v, words[i]) == 0)
            return i;
    return -1;
}

int svc_usable_cpus(void)
{
    int n = svc_affinity_cpus(NULL, 0);
    if (n < 1)
        n = 1;

    /* cgroup v2 "quota period" or "max period"; cgroup v1 as a fallback. */
    double quota = -1, period = -1;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32];
        if (fscanf(f, "%31s %lf", q, &period) == 2 && strcmp(q, "max") != 0)
            quota = strtod(q, NULL);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) != NULL) {
        if (fscanf(f, "%lf", &quota) != 1)
            quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) != NULL) {
            if (fscanf(f, "%lf", &period) != 1)
                period = -1;
            fclose(f);
        }
    }
    if (quota > 0 && period > 0) {
        double cpus = ceil(quota / period);
        if (cpus >= 1 && cpus < n)
            n = (int)cpus;
    }
    return n > MAX_WORKERS ? MAX_WORKERS : n;
}

void svc_config_default(svc_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen_host, "0.0.0.0");
    cfg->listen_port = 8080;
    cfg->workers = svc_usable_cpus();
    cfg->queue_depth = 64;
    cfg->max_body_bytes = (uint64_t)512 << 20;
    cfg->max_json_body_bytes = (uint64_t)64 << 20;
    cfg->request_timeout_s = 60;
    cfg->drain_timeout_s = 30;
    cfg->log_format = SVC_LOG_TEXT;
    cfg->stream_upload = SVC_STREAM_AUTO;
    cfg->pin_workers = SVC_PIN_AUTO;
    cfg->pin_http = SVC_PIN_AUTO;
    cfg->max_connections = 1024;
    cfg->max_connections_per_ip = 0;
    cfg->header_timeout_s = 0; /* resolved to the request timeout after parsing */
}

int svc_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1ull << 10}, {"kib", 1ull << 10}, {"kb", 1000ull},
        {"m", 1ull << 20}, {"mib", 1ull << 20}, {"mb", 1000000ull},
        {"g", 1ull << 30}, {"gib", 1ull << 30}, {"gb", 1000000000ull},
        {"t", 1ull << 40}, {"tib", 1ull << 40}, {"tb", 1000000000000ull},
    };
    if (!s || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            if (v > UINT64_MAX / units[i].mult)
                return -1;
            *out = v * units[i].mult;
            return 0;
        }
    }
    return -1;
}

int svc_parse_duration(const char *s, double *out)
{
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1}, {"s", 1}, {"ms", 1e-3}, {"m", 60}, {"h", 3600}};
    if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.'))
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            v *= units[i].mult;
            if (v > 1e9)
                return -1;
            *out = v;
            return 0;
        }
    }
    return -1;
}

int svc_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon, *h = s;
    size_t hl;
    if (!s || !*s)
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
        if (memchr(s, ':', hl))
            return -1; /* IPv6 needs brackets */
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5)
        return -1;
    long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)v;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    if (!s || !*s)
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* A switch's environment twin: 1, 0, or -1 when not a boolean. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Copies a file path option; "" and over-long paths are refused. */
static int set_path(char *dst, const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= SVC_PATH_MAX)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Applies one option value; `where` names its origin for messages. */
static int apply(svc_config *cfg, opt_id id, const char *v, const char *where, char *err,
                 size_t errlen)
{
    switch (id) {
    case OPT_LISTEN:
        if (svc_parse_listen(v, cfg->listen_host, sizeof cfg->listen_host, &cfg->listen_port))
            return fail(err, errlen, "%s: invalid value '%s' (expected HOST:PORT)", where, v);
        return 0;
    case OPT_WORKERS:
        if (parse_int(v, 1, MAX_WORKERS, &cfg->workers))
            return fail(err, errlen, "%s: invalid value '%s' (expected 1..%d)", where, v,
                        MAX_WORKERS);
        return 0;
    case OPT_QUEUE_DEPTH:
        if (parse_int(v, 0, MAX_QUEUE_DEPTH, &cfg->queue_depth))
            return fail(err, errlen, "%s: invalid value '%s' (expected 0..%d)", where, v,
                        MAX_QUEUE_DEPTH);
        return 0;
    case OPT_MAX_BODY:
    case OPT_MAX_JSON_BODY: {
        uint64_t n;
        if (svc_parse_size(v, &n) || n < 1 || n > MAX_BODY_LIMIT)
            return fail(err, errlen,
                        "%s: invalid value '%s' (expected a size from 1 byte to 1TiB, "
                        "e.g. 512MiB)",
                        where, v);
        if (id == OPT_MAX_BODY)
            cfg->max_body_bytes = n;
        else
            cfg->max_json_body_bytes = n;
        return 0;
    }
    case OPT_REQUEST_TIMEOUT:
    case OPT_HEADER_TIMEOUT:
    case OPT_DRAIN_TIMEOUT: {
        double d;
        int positive = id != OPT_DRAIN_TIMEOUT;
        if (svc_parse_duration(v, &d) || (positive && d <= 0))
            return fail(err, errlen,
                        "%s: invalid value '%s' (expected a duration such as 60, 60s, "
                        "500ms, 2m%s)",
                        where, v, positive ? "; > 0" : "");
        if (id == OPT_REQUEST_TIMEOUT)
            cfg->request_timeout_s = d;
        else if (id == OPT_HEADER_TIMEOUT)
            cfg->header_timeout_s = d;
        else
            cfg->drain_timeout_s = d;
        return 0;
    }
    case OPT_MAX_CONNECTIONS:
        if (parse_int(v, 1, MAX_CONNECTIONS, &cfg->max_connections))
            return fail(err, errlen, "%s: invalid value '%s' (expected 1..%d)", where, v,
                        MAX_CONNECTIONS);
        return 0;
    case OPT_MAX_CONNECTIONS_PER_IP:
        if (parse_int(v, 0, MAX_CONNECTIONS, &cfg->max_connections_per_ip))
            return fail(err, errlen, "%s: invalid value '%s' (expected 0..%d; 0: no limit)",
                        where, v, MAX_CONNECTIONS);
        return 0;
    case OPT_AUTH_TOKEN_FILE:
    case OPT_TLS_CERT:
    case OPT_TLS_KEY: {
        char *dst = id == OPT_AUTH_TOKEN_FILE ? cfg->auth_token_file
                    : id == OPT_TLS_CERT      ? cfg->tls_cert_file
                                              : cfg->tls_key_file;
        if (set_path(dst, v))
            return fail(err, errlen, "%s: invalid file name (empty or longer than %d bytes)",
                        where, SVC_PATH_MAX - 1);
        return 0;
    }
    case OPT_AUTH_HEALTH: {
        int b = *v ? parse_bool(v) : 1; /* the flag itself carries no value */
        if (b < 0)
            return fail(err, errlen, "%s: invalid value '%s' (expected true or false)", where,
                        v);
        cfg->auth_health = b;
        return 0;
    }
    case OPT_LOG_FORMAT:
        if (strcmp(v, "text") == 0)
            cfg->log_format = SVC_LOG_TEXT;
        else if (strcmp(v, "json") == 0)
            cfg->log_format = SVC_LOG_JSON;
        else
            return fail(err, errlen, "%s: invalid value '%s' (expected text or json)", where,
                        v);
        return 0;
    case OPT_STREAM_UPLOAD:
    case OPT_PIN_WORKERS:
    case OPT_PIN_HTTP: {
        const int t = auto_always_never(v);
        if (t < 0)
            return fail(err, errlen, "%s: invalid value '%s' (expected auto, always or never)",
                        where, v);
        if (id == OPT_STREAM_UPLOAD)
            cfg->stream_upload = (svc_stream_upload)t;
        else if (id == OPT_PIN_WORKERS)
            cfg->pin_workers = (svc_pin_policy)t;
        else
            cfg->pin_http = (svc_pin_policy)t;
        return 0;
    }
    case OPT_PROBE:
        if (!*v || strlen(v) >= sizeof cfg->probe_url)
            return fail(err, errlen, "%s: invalid URL", where);
        strcpy(cfg->probe_url, v);
        return 0;
    case OPT_HELP:
        cfg->help = 1;
        return 0;
    case OPT_VERSION:
        cfg->version = 1;
        return 0;
    case OPT_COUNT:
        break;
    }
    return fail(err, errlen, "internal: unknown option");
}

int svc_config_parse(svc_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *given[OPT_COUNT] = {0};
    svc_config_default(cfg);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (strcmp(a, "-h") == 0) {
                given[OPT_HELP] = "";
                continue;
            }
            return fail(err, errlen, "unexpected argument '%s' (see --help)", a);
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        int id = -1;
        for (int k = 0; k < OPT_COUNT; k++)
            if (strlen(opts[k].flag) == nl && strncmp(opts[k].flag, name, nl) == 0)
                id = k;
        if (id < 0)
            return fail(err, errlen, "unknown flag '--%.*s' (see --help)", (int)nl, name);
        if (!opts[id].takes_value) {
            if (eq)
                return fail(err, errlen, "flag --%s takes no value", opts[id].flag);
            given[id] = "";
        } else if (eq) {
            given[id] = eq + 1;
        } else if (i + 1 < argc) {
            given[id] = argv[++i];
        } else {
            return fail(err, errlen, "flag --%s needs a value", opts[id].flag);
        }
    }

    for (int k = 0; k < OPT_COUNT; k++) {
        char where[96];
        const char *v = given[k];
        if (v) {
            snprintf(where, sizeof where, "--%s", opts[k].flag);
        } else if (opts[k].env && (v = getenv(opts[k].env)) != NULL && *v) {
            /* an empty twin counts as unset */
            snprintf(where, sizeof where, "%s", opts[k].env);
        } else {
            continue;
        }
        if (apply(cfg, (opt_id)k, v, where, err, errlen) != 0)
            return -1;
    }

    /* Combinations. */
    const char *tok = getenv(SVC_ENV_AUTH_TOKEN);
    cfg->auth_token_env = tok && *tok;
    if (cfg->auth_token_env && cfg->auth_token_file[0])
        return fail(err, errlen,
                    "both a token file (--auth-token-file or MULTIBOX_AUTH_TOKEN_FILE) and "
                    "%s are set: give the token one way",
                    SVC_ENV_AUTH_TOKEN);
    if (cfg->auth_health && !cfg->auth_token_env && !cfg->auth_token_file[0])
        return fail(err, errlen,
                    "--auth-health needs a token (--auth-token-file or %s)", SVC_ENV_AUTH_TOKEN);
    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0])
        return fail(err, errlen, "--tls-cert and --tls-key go together: give both or neither");
    if (cfg->header_timeout_s <= 0)
        cfg->header_timeout_s = cfg->request_timeout_s;
    return 0;
}

void svc_config_usage(FILE *out)
{
    fputs("Usage: multiboxd [FLAGS]\n"
          "SSD MultiBox loss and gradients over HTTP.\n"
          "\n"
          "Flags (each has an environment twin; a flag overrides its twin):\n"
          "  --listen HOST:PORT          address to listen on; port 0 picks a free one\n"
          "                              (MULTIBOX_LISTEN, default 0.0.0.0:8080)\n"
          "  --workers N                 compute threads, 1..1024\n"
          "                              (MULTIBOX_WORKERS, default: usable CPUs)\n"
          "  --queue-depth N             requests that may wait beyond the workers; more\n"
          "                              get 503 (MULTIBOX_QUEUE_DEPTH, default 64)\n"
          "  --max-body-bytes SIZE       hard limit for any request body\n"
          "                              (MULTIBOX_MAX_BODY_BYTES, default 512MiB)\n"
          "  --max-json-body-bytes SIZE  limit for bodies of JSON text\n"
          "                              (MULTIBOX_MAX_JSON_BODY_BYTES, default 64MiB)\n"
          "  --request-timeout DURATION  idle connection timeout\n"
          "                              (MULTIBOX_REQUEST_TIMEOUT, default 60s)\n"
          "  --drain-timeout DURATION    after SIGTERM/SIGINT, forced exit after this\n"
          "                              (MULTIBOX_DRAIN_TIMEOUT, default 30s)\n"
          "  --log-format text|json      format of the log lines on stderr\n"
          "                              (MULTIBOX_LOG_FORMAT, default text)\n"
          "  --stream-upload auto|always|never\n"
          "                              start a binary request's loss while its body\n"
          "                              still arrives; auto: for clients on other hosts\n"
          "                              (MULTIBOX_STREAM_UPLOAD, default auto)\n"
          "  --pin-workers auto|always|never\n"
          "                              keep each worker thread on a CPU of its own;\n"
          "                              auto: when the workers cover every allowed CPU\n"
          "                              (MULTIBOX_PIN_WORKERS, default auto)\n"
          "  --pin-http auto|always|never\n"
          "                              keep the HTTP thread on one CPU (the last\n"
          "                              allowed); auto: as for --pin-workers\n"
          "                              (MULTIBOX_PIN_HTTP, default auto)\n"
          "  --max-connections N         open connections at most; more are refused\n"
          "                              (MULTIBOX_MAX_CONNECTIONS, default 1024)\n"
          "  --max-connections-per-ip N  open connections per client address, 0: no limit\n"
          "                              (MULTIBOX_MAX_CONNECTIONS_PER_IP, default 0)\n"
          "  --header-timeout DURATION   a request's line and headers must arrive within\n"
          "                              this (MULTIBOX_HEADER_TIMEOUT, default: the\n"
          "                              request timeout)\n"
          "  --auth-token-file FILE      require 'Authorization: Bearer TOKEN', TOKEN read\n"
          "                              from FILE (MULTIBOX_AUTH_TOKEN_FILE); or put the\n"
          "                              token itself in MULTIBOX_AUTH_TOKEN\n"
          "  --auth-health               every path needs the token: also health,\n"
          "                              readiness, metrics and /openapi.yaml\n"
          "                              (MULTIBOX_AUTH_HEALTH=true|false, default false)\n"
          "  --tls-cert FILE             serve HTTPS with this PEM certificate chain\n"
          "                              (MULTIBOX_TLS_CERT; needs --tls-key)\n"
          "  --tls-key FILE              the PEM private key (MULTIBOX_TLS_KEY)\n"
          "  --probe URL                 GET http://HOST:PORT/PATH, exit 0 on a 2xx, else 1\n"
          "                              (the container health check)\n"
          "  --help                      this text\n"
          "  --version                   print the version\n"
          "\n"
          "SIZE: bytes, or a number with KiB/MiB/GiB (also K/M/G) or KB/MB/GB.\n"
          "DURATION: seconds, or a number with ms, s, m or h.\n"
          "Invalid values exit with status 2.\n",
          out);
}
