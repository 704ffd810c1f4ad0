/*
 * e2e_floor.c - the transport floor of bench/run-e2e.sh: a minimal HTTP/1.1
 * server that does nothing but move bytes, for e2e_bench to time against.
 * It reads each request's headers and Content-Length body into one buffer
 * that is reused (pre-touched, so no page faults), then answers 200 with a
 * body of --response-bytes bytes (default: as long as the request's body)
 * from another pre-touched buffer, headers and body in one sendmsg loop.
 * A child process per connection, blocking sockets, no parsing beyond
 * Content-Length: the time e2e_bench measures against it is what loopback
 * costs this machine for the same bytes, with the same client.
 *
 * usage: e2e_floor --port P [--response-bytes N]   (P 0: picks one; prints "port=P")
 * Build: cc -O2 -o e2e_floor bench/e2e_floor.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "e2e_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Grows *buf to at least need bytes, touching the new pages once. */
static void reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    char *p = realloc(*buf, need);
    if (!p)
        die("realloc");
    memset(p + *cap, 0, need - *cap);
    *buf = p;
    *cap = need;
}

/* Serves one connection until the client closes it. */
static void serve(int fd, long response_bytes, char **in, size_t *in_cap, char **out,
                  size_t *out_cap)
{
    size_t got = 0;
    for (;;) {
        /* Headers: read until "\r\n\r\n" is in. */
        size_t hend = 0;
        for (;;) {
            for (size_t i = 3; i < got && !hend; i++)
                if (!memcmp(*in + i - 3, "\r\n\r\n", 4))
                    hend = i + 1;
            if (hend)
                break;
            reserve(in, in_cap, got + 65536);
            ssize_t r = read(fd, *in + got, *in_cap - got);
            if (r <= 0)
                return;
            got += (size_t)r;
        }
        size_t body = 0;
        for (size_t i = 0; i + 15 < hend; i++)
            if ((i == 0 || (*in)[i - 1] == '\n') && !strncasecmp(*in + i, "Content-Length:", 15))
                body = strtoull(*in + i + 15, NULL, 10);
        reserve(in, in_cap, hend + body);
        while (got < hend + body) {
            ssize_t r = read(fd, *in + got, *in_cap - got);
            if (r <= 0)
                return;
            got += (size_t)r;
        }
        size_t n = response_bytes >= 0 ? (size_t)response_bytes : body;
        reserve(out, out_cap, n);
        char head[128];
        int hl = snprintf(head, sizeof head,
                          "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                          "Content-Type: application/octet-stream\r\n\r\n",
                          n);
        struct iovec v[2] = {{head, (size_t)hl}, {*out, n}};
        size_t total = (size_t)hl + n, sent = 0;
        while (sent < total) {
            struct iovec w[2];
            int nw = 0;
            size_t skip = sent;
            for (int k = 0; k < 2; k++) {
                if (skip >= v[k].iov_len) {
                    skip -= v[k].iov_len;
                    continue;
                }
                w[nw].iov_base = (char *)v[k].iov_base + skip;
                w[nw].iov_len = v[k].iov_len - skip;
                skip = 0;
                nw++;
            }
            ssize_t s = writev(fd, w, nw);
            if (s < 0) {
                if (errno == EINTR)
                    continue;
                return;
            }
            sent += (size_t)s;
        }
        /* Keep what came after this request (pipelining is not expected). */
        memmove(*in, *in + hend + body, got - hend - body);
        got -= hend + body;
    }
}

int main(int argc, char **argv)
{
    int port = -1;
    long response_bytes = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--response-bytes") && i + 1 < argc)
            response_bytes = atol(argv[++i]);
    }
    if (port < 0) {
        fprintf(stderr, "usage: e2e_floor --port P [--response-bytes N]\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 16) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0)
        die("listen");
    printf("port=%d\n", ntohs(a.sin_port));
    fflush(stdout);
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    char *in = NULL, *out = NULL;
    size_t in_cap = 0, out_cap = 0;
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(ls);
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            serve(fd, response_bytes, &in, &in_cap, &out, &out_cap);
            _exit(0);
        }
        close(fd);
    }
}
