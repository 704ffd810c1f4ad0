/*
 * probe.c - the health-check client behind --probe.  One blocking
 * connection with poll() timeouts; it reads only the status line.
 */
#include "probe.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits for events on fd until deadline; 1 when ready, 0 on timeout or error. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        return r > 0;
    }
}

/* Splits url into host, port and path; 0 or -1. */
static int split_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                     char *path, size_t pathlen)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7, *end;
    size_t hl;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end)
            return -1;
        hl = (size_t)(end - h - 1);
        h++;
        end++;
    } else {
        end = h + strcspn(h, ":/?#");
        hl = (size_t)(end - h);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "80");
    if (*end == ':') {
        const char *p = end + 1;
        size_t pl = strspn(p, "0123456789");
        if (pl == 0 || pl >= portlen || pl > 5)
            return -1;
        memcpy(port, p, pl);
        port[pl] = '\0';
        end = p + pl;
    }
    if (*end == '\0')
        end = "/";
    if (*end != '/' || strlen(end) >= pathlen)
        return -1;
    for (const char *c = end; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return -1;
    size_t n = strcspn(end, "#");
    memcpy(path, end, n);
    path[n] = '\0';
    return 0;
}

int svc_probe(const char *url, double timeout_s)
{
    char host[256], port[8], path[1024];
    if (split_url(url, host, sizeof host, port, sizeof port, path, sizeof path) != 0) {
        fprintf(stderr, "multiboxd: --probe: cannot parse URL '%s' (expected http://HOST:PORT/PATH)\n",
                url);
        return 2;
    }
    double deadline = now_s() + timeout_s;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "multiboxd: --probe: %s: %s\n", host, gai_strerror(rc));
        return 1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            int err = 0;
            socklen_t len = sizeof err;
            if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline) ||
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "multiboxd: --probe: cannot connect to %s:%s\n", host, port);
        return 1;
    }

    char req[1400];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s%s%s:%s\r\nConnection: close\r\n\r\n",
                     path, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
    size_t off = 0;
    while (n > 0 && off < (size_t)n) {
        if (!wait_fd(fd, POLLOUT, deadline))
            break;
        ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (n <= 0 || off < (size_t)n) {
        close(fd);
        fprintf(stderr, "multiboxd: --probe: cannot send the request\n");
        return 1;
    }

    char line[64];
    size_t got = 0;
    while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
        if (!wait_fd(fd, POLLIN, deadline))
            break;
        ssize_t r = recv(fd, line + got, sizeof line - 1 - got, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    line[got] = '\0';
    int status = 0;
    if (strncmp(line, "HTTP/1.", 7) == 0 && isdigit((unsigned char)line[7]) && line[8] == ' ' &&
        isdigit((unsigned char)line[9]) && isdigit((unsigned char)line[10]) &&
        isdigit((unsigned char)line[11]))
        status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (status >= 200 && status < 300)
        return 0;
    if (status)
        fprintf(stderr, "multiboxd: --probe: %s answered %d\n", url, status);
    else
        fprintf(stderr, "multiboxd: --probe: no HTTP answer from %s\n", url);
    return 1;
}
