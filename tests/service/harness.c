/*
 * harness.c - process control, HTTP, golden-case and tensor helpers for
 * the service tests (see harness.h).  A reader thread drains each
 * server's stderr so its log never blocks it.
 */
#include "harness.h"

#include <curl/curl.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *multiboxd_path;
const char *const tensor_form_names[3] = {"nested", "flat", "b64"};

/* One mutex for every server's log buffer: simple, and contention is nil. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void harness_init(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/multiboxd\n", argv[0]);
        exit(2);
    }
    multiboxd_path = argv[1];
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ the server */

static void log_append(server *s, const char *p, size_t n)
{
    pthread_mutex_lock(&log_mu);
    if (s->log_len + n + 1 > s->log_cap) {
        size_t cap = s->log_cap ? s->log_cap : 4096;
        while (cap < s->log_len + n + 1)
            cap *= 2;
        char *q = realloc(s->log, cap);
        if (!q) {
            pthread_mutex_unlock(&log_mu);
            return;
        }
        s->log = q;
        s->log_cap = cap;
    }
    memcpy(s->log + s->log_len, p, n);
    s->log_len += n;
    s->log[s->log_len] = '\0';
    pthread_mutex_unlock(&log_mu);
}

void server_pump_log(server *s)
{
    char buf[8192];
    if (s->draining_thread)
        return; /* the drain thread reads: a second reader could reorder chunks */
    for (;;) {
        struct pollfd p = {.fd = s->stderr_fd, .events = POLLIN};
        if (s->stderr_fd < 0 || poll(&p, 1, 0) <= 0)
            return;
        ssize_t n = read(s->stderr_fd, buf, sizeof buf);
        if (n <= 0)
            return;
        log_append(s, buf, (size_t)n);
    }
}

int server_log_contains(server *s, const char *needle)
{
    server_pump_log(s);
    pthread_mutex_lock(&log_mu);
    int found = s->log && strstr(s->log, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return found;
}

/* A thread per server keeps the pipe drained while tests run. */
static void *drain_thread(void *arg)
{
    server *s = arg;
    char buf[8192];
    for (;;) {
        struct pollfd p = {.fd = s->stderr_fd, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return NULL;
        if (r == 0) {
            if (kill(s->pid, 0) != 0)
                return NULL;
            continue;
        }
        ssize_t n = read(s->stderr_fd, buf, sizeof buf);
        if (n <= 0)
            return NULL;
        log_append(s, buf, (size_t)n);
    }
}

static pid_t spawn(const char *const *args, const char *const *env, int no_listen, int *out_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    const char *argv[64];
    int n = 0;
    argv[n++] = multiboxd_path;
    if (!no_listen) {
        argv[n++] = "--listen";
        argv[n++] = "127.0.0.1:0";
    }
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* A test that dies (a failed assertion, a sanitizer abort) must not
         * leave its server running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDERR_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(multiboxd_path, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    *out_fd = fds[0];
    return pid;
}

static pthread_t drain_threads[64];
static server *drain_owners[64];

int server_start(server *s, const char *const *args, const char *const *env, int no_listen)
{
    memset(s, 0, sizeof *s);
    s->stderr_fd = -1;
    s->pid = spawn(args, env, no_listen, &s->stderr_fd);
    if (s->pid < 0)
        return -1;
    double deadline = now_s() + 30;
    while (now_s() < deadline) {
        server_pump_log(s);
        pthread_mutex_lock(&log_mu);
        const char *l = s->log ? strstr(s->log, "listening on ") : NULL;
        int ready = s->log && (strstr(s->log, " ready\n") || strstr(s->log, "\"ready\""));
        if (l && !s->port) {
            const char *eol = strchr(l, '\n'), *colon = NULL;
            for (const char *c = l; eol && c < eol; c++)
                if (*c == ':')
                    colon = c; /* the last colon of the address */
            if (colon)
                s->port = atoi(colon + 1);
        }
        pthread_mutex_unlock(&log_mu);
        if (s->port && ready)
            break;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            server_pump_log(s);
            fprintf(stderr, "multiboxd exited during start-up:\n%s\n", s->log ? s->log : "");
            s->pid = -1;
            return -1;
        }
        usleep(10000);
    }
    if (!s->port) {
        fprintf(stderr, "multiboxd did not get ready:\n%s\n", s->log ? s->log : "");
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        return -1;
    }
    for (int i = 0; i < 64; i++) {
        if (!drain_owners[i]) {
            drain_owners[i] = s;
            s->draining_thread = 1;
            pthread_create(&drain_threads[i], NULL, drain_thread, s);
            break;
        }
    }
    return 0;
}

int server_stop(server *s, int sig, double timeout_s)
{
    int status = 0, rc = -1;
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    double deadline = now_s() + timeout_s;
    for (;;) {
        pid_t w = waitpid(s->pid, &status, WNOHANG);
        if (w == s->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (now_s() > deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            rc = -1;
            break;
        }
        usleep(5000);
    }
    for (int i = 0; i < 64; i++) {
        if (drain_owners[i] == s) {
            pthread_join(drain_threads[i], NULL);
            drain_owners[i] = NULL;
            s->draining_thread = 0;
        }
    }
    server_pump_log(s);
    if (rc != 0 && s->log)
        fprintf(stderr, "--- multiboxd log (exit %d) ---\n%s--- end ---\n", rc, s->log);
    close(s->stderr_fd);
    s->stderr_fd = -1;
    s->pid = -1;
    free(s->log);
    s->log = NULL;
    s->log_len = s->log_cap = 0;
    return rc;
}

int server_stop_shared(server *s, double timeout_s, int *failed)
{
    int rc = server_stop(s, SIGTERM, timeout_s);
    if (rc != 0) {
        fprintf(stderr, "the shared multiboxd exited with %d (a sanitizer report?)\n", rc);
        *failed = 1;
    }
    return rc == 0 ? 0 : -1;
}

int server_wait_log(server *s, const char *needle, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    do {
        if (server_log_contains(s, needle))
            return 1;
        usleep(10000);
    } while (now_s() < deadline);
    return 0;
}

int server_connect(const server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

const char *server_url(const server *s, const char *path)
{
    static __thread char buf[1024];
    snprintf(buf, sizeof buf, "http://127.0.0.1:%d%s", s->port, path);
    return buf;
}

int run_multiboxd(const char *const *args, const char *const *env, char **out)
{
    int fd;
    pid_t pid = spawn(args, env, 1, &fd);
    if (pid < 0)
        return -1;
    char *text = NULL;
    size_t len = 0, cap = 0;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (len + (size_t)n + 1 > cap) {
            cap = (len + (size_t)n + 1) * 2;
            text = realloc(text, cap);
        }
        memcpy(text + len, buf, (size_t)n);
        len += (size_t)n;
    }
    close(fd);
    if (text)
        text[len] = '\0';
    int status;
    waitpid(pid, &status, 0);
    if (out)
        *out = text ? text : strdup("");
    else
        free(text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------------ HTTP */

size_t http_sink_write(char *p, size_t size, size_t nmemb, void *arg)
{
    http_sink *s = arg;
    size_t n = size * nmemb;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *q = realloc(s->data, cap);
        if (!q)
            return 0;
        s->data = q;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

void http_header_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    while (n > 0 && *v == ' ') {
        v++;
        n--;
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    http_resp *r = arg;
    size_t n = size * nmemb;
    static const struct {
        const char *name;
        size_t off, cap;
    } want[] = {
        {"content-type:", offsetof(http_resp, content_type), sizeof((http_resp *)0)->content_type},
        {"retry-after:", offsetof(http_resp, retry_after), sizeof((http_resp *)0)->retry_after},
        {"allow:", offsetof(http_resp, allow), sizeof((http_resp *)0)->allow},
        {"connection:", offsetof(http_resp, connection), sizeof((http_resp *)0)->connection},
    };
    if (n > 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (after 100 Continue) */
        r->content_type[0] = r->retry_after[0] = r->allow[0] = r->connection[0] = '\0';
    }
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t l = strlen(want[i].name);
        if (n >= l && strncasecmp(p, want[i].name, l) == 0)
            http_header_value((char *)r + want[i].off, want[i].cap, p + l, n - l);
    }
    return n;
}

typedef struct chunk_src {
    const char *data;
    size_t len, off;
} chunk_src;

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    chunk_src *c = arg;
    size_t n = size * nitems, left = c->len - c->off;
    if (n > left)
        n = left;
    if (n > 65536)
        n = 65536;
    memcpy(buf, c->data + c->off, n);
    c->off += n;
    return n;
}

long http_do(const http_req *req, http_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    CURL *c = req->curl ? req->curl : curl_easy_init();
    http_sink body = {0};
    chunk_src src = {req->body, req->len, 0};
    struct curl_slist *hdrs = NULL;
    char ct[256];
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms ? req->timeout_ms : 60000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->curl_error);
    hdrs = curl_slist_append(hdrs, req->expect_continue ? "Expect: 100-continue" : "Expect:");
    if (req->content_type) {
        snprintf(ct, sizeof ct, "Content-Type: %s", req->content_type);
        hdrs = curl_slist_append(hdrs, ct);
    }
    if (req->body) {
        if (req->chunked) {
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
            curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &src);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)req->body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
        }
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    else if (!resp->curl_error[0])
        snprintf(resp->curl_error, sizeof resp->curl_error, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(hdrs);
    if (!req->curl)
        curl_easy_cleanup(c);
    resp->body = body.data ? body.data : strdup("");
    resp->len = body.len;
    return resp->status;
}

long http_get(const char *url, http_resp *resp)
{
    http_req r = {.method = "GET", .url = url};
    return http_do(&r, resp);
}

long http_post_json(const char *url, const char *body, size_t len, http_resp *resp)
{
    http_req r = {.method = "POST", .url = url, .content_type = "application/json",
                  .body = body, .len = len};
    return http_do(&r, resp);
}

void http_resp_free(http_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}

const char *error_code(const http_resp *resp)
{
    static __thread char code[64];
    code[0] = '\0';
    json_t *j = json_loadb(resp->body, resp->len, 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    json_t *msg = json_object_get(json_object_get(j, "error"), "message");
    if (c && json_is_string(msg) && json_object_size(j) == 1 &&
        json_object_size(json_object_get(j, "error")) == 2)
        snprintf(code, sizeof code, "%s", c);
    json_decref(j);
    return code;
}

/* ---------------------------------------------------------------- files */

char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return p;
}

json_t *load_golden(const char *name)
{
    const char *dir = getenv("MBX_GOLDEN_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/cases/%s.json", dir ? dir : ".", name);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j)
        fprintf(stderr, "cannot load %s: %s\n", path, err.text);
    return j;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **golden_case_names(void)
{
    const char *dir = getenv("MBX_GOLDEN_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/cases", dir ? dir : ".");
    DIR *d = opendir(path);
    char **names = calloc(256, sizeof *names);
    int n = 0;
    struct dirent *e;
    while (d && names && (e = readdir(d)) != NULL && n < 255) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0)
            names[n++] = strndup(e->d_name, l - 5);
    }
    if (d)
        closedir(d);
    if (names)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    return names;
}

void free_names(char **names)
{
    for (int i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* --------------------------------------------------------------- tensors */

char *b64_encode(const void *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = in;
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes standard padded base64; returns the byte count or -1. */
static long b64_decode(const char *s, unsigned char *out, size_t cap)
{
    size_t n = strlen(s), o = 0;
    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' ? 0 : b64_value(s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
            return -1;
        unsigned w = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        int bytes = s[i + 2] == '=' ? 1 : s[i + 3] == '=' ? 2 : 3;
        for (int k = 0; k < bytes; k++) {
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(w >> (16 - 8 * k));
        }
    }
    return (long)o;
}

static json_t *nest(const double *data, const int64_t *shape, int rank, size_t *off)
{
    json_t *a = json_array();
    for (int64_t i = 0; i < shape[0]; i++) {
        if (rank == 1)
            json_array_append_new(a, json_real(data[(*off)++]));
        else
            json_array_append_new(a, nest(data, shape + 1, rank - 1, off));
    }
    return a;
}

json_t *tensor_convert(const json_t *flat, tensor_form form)
{
    const json_t *shape = json_object_get(flat, "shape"), *data = json_object_get(flat, "data");
    size_t n = json_array_size(data);
    if (form == FORM_FLAT)
        return json_deep_copy(flat);
    if (form == FORM_NESTED) {
        int64_t sh[8];
        int rank = (int)json_array_size(shape);
        double *vals = malloc((n ? n : 1) * sizeof *vals);
        for (size_t i = 0; i < n; i++)
            vals[i] = json_number_value(json_array_get(data, i));
        for (int k = 0; k < rank && k < 8; k++)
            sh[k] = json_integer_value(json_array_get(shape, (size_t)k));
        size_t off = 0;
        json_t *t = nest(vals, sh, rank, &off);
        free(vals);
        return t;
    }
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)json_number_value(json_array_get(data, i)); /* the host is little-endian */
    char *b = b64_encode(f, n * sizeof *f);
    json_t *t = json_pack("{s:O,s:s,s:s}", "shape", shape, "dtype", "float32", "b64", b);
    free(f);
    free(b);
    return t;
}

json_t *request_in_form(const json_t *request, tensor_form form)
{
    json_t *r = json_deep_copy(request);
    static const char *const inputs[] = {"anchors", "loc", "conf"};
    for (int i = 0; i < 3; i++) {
        json_t *t = json_object_get(r, inputs[i]);
        if (json_object_get(t, "shape") && json_object_get(t, "data"))
            json_object_set_new(r, inputs[i], tensor_convert(t, form));
    }
    json_t *outputs = json_object_get(r, "outputs");
    if (!outputs) {
        outputs = json_object();
        json_object_set_new(r, "outputs", outputs);
    }
    json_object_set_new(outputs, "tensor_format", json_string(tensor_form_names[form]));
    return r;
}

static int flatten(const json_t *t, int depth, double **data, size_t *n, size_t *cap,
                   int64_t *shape, int *rank)
{
    if (json_is_number(t)) {
        if (*rank < 0)
            *rank = depth;
        if (depth != *rank)
            return -1;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 1024;
            *data = realloc(*data, *cap * sizeof **data);
        }
        (*data)[(*n)++] = json_number_value(t);
        return 0;
    }
    if (!json_is_array(t) || depth >= 8)
        return -1;
    if (shape[depth] < 0)
        shape[depth] = (int64_t)json_array_size(t);
    else if (shape[depth] != (int64_t)json_array_size(t))
        return -1;
    for (size_t i = 0; i < json_array_size(t); i++)
        if (flatten(json_array_get(t, i), depth + 1, data, n, cap, shape, rank) != 0)
            return -1;
    return 0;
}

int tensor_decode(const json_t *t, double **data, int64_t *shape, int *rank)
{
    *data = NULL;
    if (json_is_array(t)) {
        size_t n = 0, cap = 0;
        for (int k = 0; k < 8; k++)
            shape[k] = -1;
        *rank = -1;
        if (flatten(t, 0, data, &n, &cap, shape, rank) != 0)
            return -1;
        if (*rank < 0) { /* an empty array: rank 1, no values */
            *rank = 1;
            shape[0] = 0;
        }
        if (!*data)
            *data = malloc(sizeof **data);
        return 0;
    }
    const json_t *sh = json_object_get(t, "shape");
    if (!json_is_array(sh) || json_array_size(sh) > 8)
        return -1;
    *rank = (int)json_array_size(sh);
    size_t count = 1;
    for (int k = 0; k < *rank; k++) {
        shape[k] = json_integer_value(json_array_get(sh, (size_t)k));
        count *= (size_t)shape[k];
    }
    *data = malloc((count ? count : 1) * sizeof **data);
    const json_t *d = json_object_get(t, "data");
    const char *b = json_string_value(json_object_get(t, "b64"));
    if (json_is_array(d)) {
        if (json_array_size(d) != count)
            return -1;
        for (size_t i = 0; i < count; i++)
            (*data)[i] = json_number_value(json_array_get(d, i));
        return 0;
    }
    if (b) {
        const char *dtype = json_string_value(json_object_get(t, "dtype"));
        int f64 = dtype && strcmp(dtype, "float64") == 0;
        size_t bytes = count * (f64 ? 8 : 4);
        unsigned char *raw = malloc(bytes ? bytes : 1);
        long got = b64_decode(b, raw, bytes);
        if (got != (long)bytes) {
            free(raw);
            return -1;
        }
        for (size_t i = 0; i < count; i++) {
            if (f64) {
                double v;
                memcpy(&v, raw + 8 * i, 8);
                (*data)[i] = v;
            } else {
                float v;
                memcpy(&v, raw + 4 * i, 4);
                (*data)[i] = v;
            }
        }
        free(raw);
        return 0;
    }
    return -1;
}

static int close_rel(double got, double want, double rel)
{
    return fabs(got - want) <= rel * fmax(fabs(want), 1e-300) || got == want;
}

static int fail_why(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static int check_scalars(const json_t *a, const json_t *e, const char *where, char *why,
                         size_t cap)
{
    static const char *const reals[] = {"loss", "conf_loss", "loc_loss", "normalizer"};
    static const char *const counts[] = {"num_positives", "num_negatives"};
    for (int i = 0; i < 4; i++) {
        const json_t *ev = json_object_get(e, reals[i]);
        if (!ev)
            continue;
        const json_t *av = json_object_get(a, reals[i]);
        if (!json_is_number(av))
            return fail_why(why, cap, "%s%s missing", where, reals[i]);
        if (!close_rel(json_number_value(av), json_number_value(ev), 1e-5))
            return fail_why(why, cap, "%s%s: %.17g, expected %.17g", where, reals[i],
                            json_number_value(av), json_number_value(ev));
    }
    for (int i = 0; i < 2; i++) {
        const json_t *ev = json_object_get(e, counts[i]);
        if (!ev)
            continue;
        const json_t *av = json_object_get(a, counts[i]);
        if (!json_is_integer(av) || json_integer_value(av) != json_integer_value(ev))
            return fail_why(why, cap, "%s%s: %lld, expected %lld", where, counts[i],
                            (long long)json_integer_value(av), (long long)json_integer_value(ev));
    }
    return 0;
}

static int check_grad(const json_t *a, const json_t *e, const char *name, char *why, size_t cap)
{
    double *ad = NULL, *ed = NULL;
    int64_t as[8], es[8];
    int ar, er, rc = 0;
    if (tensor_decode(a, &ad, as, &ar) != 0 || tensor_decode(e, &ed, es, &er) != 0) {
        rc = fail_why(why, cap, "%s: cannot decode the tensor", name);
        goto out;
    }
    if (ar != er) {
        rc = fail_why(why, cap, "%s: rank %d, expected %d", name, ar, er);
        goto out;
    }
    size_t count = 1;
    for (int k = 0; k < er; k++) {
        if (as[k] != es[k]) {
            rc = fail_why(why, cap, "%s: dim %d is %lld, expected %lld", name, k,
                          (long long)as[k], (long long)es[k]);
            goto out;
        }
        count *= (size_t)es[k];
    }
    double maxabs = 0;
    for (size_t i = 0; i < count; i++)
        maxabs = fmax(maxabs, fabs(ed[i]));
    double tol = 1e-6 + 1e-4 * maxabs;
    for (size_t i = 0; i < count; i++) {
        if (!(fabs(ad[i] - ed[i]) <= tol)) {
            rc = fail_why(why, cap, "%s[%zu]: %.9g, expected %.9g (tolerance %.3g)", name, i,
                          ad[i], ed[i], tol);
            goto out;
        }
    }
out:
    free(ad);
    free(ed);
    return rc;
}

int check_golden(const json_t *answer, const json_t *expected, char *why, size_t cap)
{
    if (check_scalars(answer, expected, "", why, cap) != 0)
        return -1;
    const json_t *ep = json_object_get(expected, "per_image"), *ap = json_object_get(answer, "per_image");
    if (ep) {
        if (json_array_size(ap) != json_array_size(ep))
            return fail_why(why, cap, "per_image: %zu items, expected %zu", json_array_size(ap),
                            json_array_size(ep));
        for (size_t i = 0; i < json_array_size(ep); i++) {
            char where[48];
            snprintf(where, sizeof where, "per_image[%zu].", i);
            if (check_scalars(json_array_get(ap, i), json_array_get(ep, i), where, why, cap))
                return -1;
        }
    }
    const json_t *em = json_object_get(expected, "matches"), *am = json_object_get(answer, "matches");
    if (em) {
        if (!json_equal((json_t *)am, (json_t *)em))
            return fail_why(why, cap, "matches differ");
    }
    if (json_object_get(expected, "grad_loc") &&
        check_grad(json_object_get(answer, "grad_loc"), json_object_get(expected, "grad_loc"),
                   "grad_loc", why, cap))
        return -1;
    if (json_object_get(expected, "grad_conf") &&
        check_grad(json_object_get(answer, "grad_conf"), json_object_get(expected, "grad_conf"),
                   "grad_conf", why, cap))
        return -1;
    return 0;
}

double metric_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

char *golden_body(const char *name, tensor_form form, json_t **expected)
{
    json_t *g = load_golden(name);
    if (!g)
        return NULL;
    json_t *req = request_in_form(json_object_get(g, "request"), form);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (body)
        *expected = json_incref(json_object_get(g, "expected"));
    json_decref(req);
    json_decref(g);
    return body;
}
