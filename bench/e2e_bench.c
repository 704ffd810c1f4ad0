/*
 * e2e_bench.c - the end-to-end client of bench/run-e2e.sh: times HTTP
 * requests to multiboxd over loopback, from the first byte sent to the
 * last byte received, on one keep-alive connection per case (raw sockets,
 * no HTTP library, so the client adds next to nothing).
 *
 * usage: e2e_bench --port P [--pid SERVER_PID] [--runs N --warmup W] CASE...
 *   CASE is NAME=PATH,CONTENT_TYPE,HEADER_LEN,BODY_FILE[,PORT]
 *   (CONTENT_TYPE "-" sends none; HEADER_LEN "-" sends no
 *   Inference-Header-Content-Length; PORT overrides --port for the case,
 *   to compare two servers side by side).
 * With --runs, it runs every case W + N times, interleaved (case after case
 * in each round), and prints per case: median, min, p10, p90, max in ms.
 * Without --runs it reads commands from stdin, one per line, and answers
 * one line each on stdout (for a driver that interleaves other work):
 *   run NAME          -> "time NAME ms=<ms> status=<s> sent=<bytes> received=<bytes>"
 *   rss NAME          -> resets the server's peak RSS (/proc/PID/clear_refs, needs
 *                        --pid), runs once, then "rss NAME hwm_kb=.. rss_kb=.. ms=.. ..."
 *   save NAME FILE    -> runs once and writes the response body to FILE
 *   quit
 * Exits 1 on any transport error or a status other than 200.
 *
 * Build: cc -O2 -o e2e_bench bench/e2e_bench.c (no library needed).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_case {
    char name[64];
    char path[256];
    char content_type[128]; /* "" for none */
    long header_len;        /* -1 for none */
    unsigned char *body;
    size_t len;
    char head[1024];        /* request line and headers */
    size_t head_len;
    int port;
    int fd;                 /* keep-alive connection, -1 when closed */
    unsigned char *resp;    /* response buffer, reused */
    size_t resp_cap, resp_len;
    size_t body_off;        /* where the response body starts */
    int status;
    double *ms;             /* --runs samples */
    int nms;
} bench_case;

static int port = 0; /* --port: the default for every case */
static long server_pid = 0;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static void die(const char *what)
{
    fprintf(stderr, "e2e_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        die(path);
    unsigned char *p = malloc((size_t)st.st_size + 1);
    if (!p || fread(p, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        die(path);
    fclose(f);
    *len = (size_t)st.st_size;
    return p;
}

static void parse_case(const char *arg, bench_case *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    const char *eq = strchr(arg, '=');
    char rest[2048];
    if (!eq || (size_t)(eq - arg) >= sizeof c->name || strlen(eq + 1) >= sizeof rest) {
        fprintf(stderr, "e2e_bench: bad case %s\n", arg);
        exit(2);
    }
    memcpy(c->name, arg, (size_t)(eq - arg));
    snprintf(rest, sizeof rest, "%s", eq + 1);
    char *fields[5];
    char *save = NULL, *tok = strtok_r(rest, ",", &save);
    int n = 0;
    while (tok && n < 5) {
        fields[n++] = tok;
        tok = strtok_r(NULL, ",", &save);
    }
    c->port = n == 5 ? atoi(fields[4]) : port;
    if (n != 4 && n != 5) {
        fprintf(stderr, "e2e_bench: bad case %s (NAME=PATH,CT,HEADER_LEN,FILE)\n", arg);
        exit(2);
    }
    snprintf(c->path, sizeof c->path, "%s", fields[0]);
    if (strcmp(fields[1], "-") != 0)
        snprintf(c->content_type, sizeof c->content_type, "%s", fields[1]);
    c->header_len = strcmp(fields[2], "-") == 0 ? -1 : atol(fields[2]);
    c->body = read_all(fields[3], &c->len);
    int w = snprintf(c->head, sizeof c->head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: %zu\r\n", c->path,
                     c->port, c->len);
    if (c->content_type[0])
        w += snprintf(c->head + w, sizeof c->head - (size_t)w, "Content-Type: %s\r\n",
                      c->content_type);
    if (c->header_len >= 0)
        w += snprintf(c->head + w, sizeof c->head - (size_t)w,
                      "Inference-Header-Content-Length: %ld\r\n", c->header_len);
    w += snprintf(c->head + w, sizeof c->head - (size_t)w, "\r\n");
    c->head_len = (size_t)w;
}

static int connect_server(int to_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect");
    return fd;
}

static void ensure_cap(bench_case *c, size_t need)
{
    if (need <= c->resp_cap)
        return;
    size_t cap = c->resp_cap ? c->resp_cap : 65536;
    while (cap < need)
        cap *= 2;
    c->resp = realloc(c->resp, cap);
    if (!c->resp)
        die("realloc");
    memset(c->resp + c->resp_cap, 0, cap - c->resp_cap); /* touch the pages outside timing */
    c->resp_cap = cap;
}

/* Finds "\r\n\r\n"; the header block's length, or 0. */
static size_t header_end(const unsigned char *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i - 3] == '\r' && p[i - 2] == '\n' && p[i - 1] == '\r' && p[i] == '\n')
            return i + 1;
    return 0;
}

/* A header's value in the block (case-insensitive name), or NULL; value ends at \r. */
static const char *find_header(const unsigned char *p, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 < n; i++) {
        if ((i == 0 || p[i - 1] == '\n') && strncasecmp((const char *)p + i, name, nl) == 0 &&
            p[i + nl] == ':') {
            const char *v = (const char *)p + i + nl + 1;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

/* One request on the case's connection; returns the elapsed ms (first byte out to last in). */
static double run_once(bench_case *c)
{
    if (c->fd < 0)
        c->fd = connect_server(c->port);
    ensure_cap(c, 65536);
    struct iovec iov[2] = {{c->head, c->head_len}, {c->body, c->len}};
    size_t total = c->head_len + c->len, sent = 0;
    double t0 = now_ms();
    while (sent < total) {
        struct iovec v[2];
        int nv = 0;
        size_t skip = sent;
        for (int k = 0; k < 2; k++) {
            if (skip >= iov[k].iov_len) {
                skip -= iov[k].iov_len;
                continue;
            }
            v[nv].iov_base = (char *)iov[k].iov_base + skip;
            v[nv].iov_len = iov[k].iov_len - skip;
            skip = 0;
            nv++;
        }
        ssize_t w = writev(c->fd, v, nv);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("writev");
        }
        sent += (size_t)w;
    }
    size_t got = 0, hend = 0, want = SIZE_MAX;
    for (;;) {
        if (got == c->resp_cap)
            ensure_cap(c, c->resp_cap * 2);
        ssize_t r = read(c->fd, c->resp + got, c->resp_cap - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (r == 0) {
            fprintf(stderr, "e2e_bench: %s: connection closed after %zu bytes\n", c->name, got);
            exit(1);
        }
        got += (size_t)r;
        if (!hend && (hend = header_end(c->resp, got)) != 0) {
            const char *cl = find_header(c->resp, hend, "Content-Length");
            if (!cl) {
                fprintf(stderr, "e2e_bench: %s: no Content-Length in the answer\n", c->name);
                exit(1);
            }
            want = hend + (size_t)strtoull(cl, NULL, 10);
            ensure_cap(c, want + 1);
        }
        if (hend && got >= want)
            break;
    }
    double t1 = now_ms();
    c->resp_len = got;
    c->body_off = hend;
    c->status = atoi((const char *)c->resp + 9);
    const char *conn = find_header(c->resp, hend, "Connection");
    if (conn && strncasecmp(conn, "close", 5) == 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->status != 200) {
        fprintf(stderr, "e2e_bench: %s: status %d: %.300s\n", c->name, c->status,
                (const char *)c->resp + hend);
        exit(1);
    }
    return t1 - t0;
}

static long status_kb(const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = atol(line + kl + 1);
    fclose(f);
    return v;
}

static void reset_peak(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/clear_refs", server_pid);
    FILE *f = fopen(path, "w");
    if (!f || fputs("5", f) < 0 || fclose(f) != 0)
        die("clear_refs (resetting the peak RSS)");
}

static bench_case *find_case(bench_case *cases, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(cases[i].name, name) == 0)
            return &cases[i];
    fprintf(stderr, "e2e_bench: no case %s\n", name);
    exit(2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(const double *v, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

int main(int argc, char **argv)
{
    int runs = 0, warmup = 0, ncases = 0;
    bench_case *cases = calloc((size_t)argc, sizeof *cases);
    const char *case_args[256];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pid") && i + 1 < argc)
            server_pid = atol(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (ncases < 256)
            case_args[ncases++] = argv[i];
    }
    if (!port || !ncases) {
        fprintf(stderr, "usage: e2e_bench --port P [--pid PID] [--runs N --warmup W] "
                        "NAME=PATH,CONTENT_TYPE,HEADER_LEN,BODY_FILE...\n");
        return 2;
    }
    for (int i = 0; i < ncases; i++)
        parse_case(case_args[i], &cases[i]);

    if (runs > 0) {
        for (int i = 0; i < ncases; i++)
            cases[i].ms = calloc((size_t)runs, sizeof(double));
        for (int r = -warmup; r < runs; r++)
            for (int i = 0; i < ncases; i++) {
                double ms = run_once(&cases[i]);
                if (r >= 0)
                    cases[i].ms[cases[i].nms++] = ms;
            }
        for (int i = 0; i < ncases; i++) {
            bench_case *c = &cases[i];
            qsort(c->ms, (size_t)c->nms, sizeof(double), cmp_double);
            printf("case %s median_ms=%.3f min_ms=%.3f p10_ms=%.3f p90_ms=%.3f max_ms=%.3f "
                   "sent=%zu received=%zu runs=%d\n",
                   c->name, quantile(c->ms, c->nms, 0.5), c->ms[0], quantile(c->ms, c->nms, 0.1),
                   quantile(c->ms, c->nms, 0.9), c->ms[c->nms - 1], c->head_len + c->len,
                   c->resp_len, c->nms);
        }
        return 0;
    }

    char line[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16], name[64], file[2048];
        int n = sscanf(line, "%15s %63s %2047s", cmd, name, file);
        if (n < 1 || !strcmp(cmd, "quit"))
            break;
        if (n < 2) {
            fprintf(stderr, "e2e_bench: bad command %s", line);
            return 2;
        }
        bench_case *c = find_case(cases, ncases, name);
        if (!strcmp(cmd, "run")) {
            double ms = run_once(c);
            printf("time %s ms=%.3f status=%d sent=%zu received=%zu\n", c->name, ms, c->status,
                   c->head_len + c->len, c->resp_len);
        } else if (!strcmp(cmd, "rss")) {
            if (!server_pid) {
                fprintf(stderr, "e2e_bench: rss needs --pid\n");
                return 2;
            }
            long before = status_kb("VmRSS");
            reset_peak();
            double ms = run_once(c);
            printf("rss %s hwm_kb=%ld rss_kb=%ld rss_before_kb=%ld ms=%.3f sent=%zu "
                   "received=%zu body_sent=%zu body_received=%zu\n",
                   c->name, status_kb("VmHWM"), status_kb("VmRSS"), before, ms,
                   c->head_len + c->len, c->resp_len, c->len, c->resp_len - c->body_off);
        } else if (!strcmp(cmd, "save") && n == 3) {
            run_once(c);
            FILE *f = fopen(file, "wb");
            if (!f || fwrite(c->resp + c->body_off, 1, c->resp_len - c->body_off, f) !=
                          c->resp_len - c->body_off)
                die(file);
            fclose(f);
            const char *ihcl = find_header(c->resp, c->body_off, "Inference-Header-Content-Length");
            printf("saved %s %s header_len=%ld\n", c->name, file, ihcl ? atol(ihcl) : -1L);
        } else {
            fprintf(stderr, "e2e_bench: bad command %s", line);
            return 2;
        }
    }
    return 0;
}
