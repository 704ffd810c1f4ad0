/*
 * test_hard_util.c - helpers of the hardening tests (see test_hard_util.h).
 * Nothing here asserts: each helper reports failure to its caller, which
 * decides (cmocka lives in the tests themselves).
 */
#include "test_hard_util.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double hard_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ the server */

/* Servers started and not stopped: a failed assertion leaves its test
 * early, with its server running and the harness's log thread reading the
 * server struct (so the tests keep theirs in static storage). */
static server *running[32];

/* Kills and reaps every server a failed test left behind. */
static void stop_leftovers(void)
{
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++) {
        if (running[i]) {
            server *s = running[i];
            running[i] = NULL;
            server_stop(s, SIGKILL, 10);
        }
    }
}

void hard_init(int argc, char **argv)
{
    harness_init(argc, argv);
    atexit(stop_leftovers);
}

int hard_start(server *s, const char *const *args, const char *const *env)
{
    stop_leftovers(); /* tests run one server at a time */
    int rc = server_start(s, args, env, 0);
    for (size_t i = 0; rc == 0 && i < sizeof running / sizeof running[0]; i++) {
        if (!running[i]) {
            running[i] = s;
            break;
        }
    }
    return rc;
}

int hard_stop(server *s, int sig, double timeout_s)
{
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
        if (running[i] == s)
            running[i] = NULL;
    return server_stop(s, sig, timeout_s);
}

/* ------------------------------------------------------------------ HTTP */

typedef struct xfer {
    hard_resp *resp;
    const char *body;
    size_t len, off;
} xfer;

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    xfer *x = arg;
    size_t n = size * nitems, left = x->len - x->off;
    if (n > left)
        n = left;
    memcpy(buf, x->body + x->off, n);
    x->off += n;
    if (x->off == x->len && !x->resp->t_body_sent)
        x->resp->t_body_sent = hard_now();
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    hard_resp *r = arg;
    size_t n = size * nmemb;
    static const struct {
        const char *name;
        size_t off, cap;
    } want[] = {
        {"content-type:", offsetof(hard_resp, content_type), sizeof((hard_resp *)0)->content_type},
        {"retry-after:", offsetof(hard_resp, retry_after), sizeof((hard_resp *)0)->retry_after},
        {"connection:", offsetof(hard_resp, connection), sizeof((hard_resp *)0)->connection},
        {"www-authenticate:", offsetof(hard_resp, www_authenticate),
         sizeof((hard_resp *)0)->www_authenticate},
    };
    if (n > 12 && strncmp(p, "HTTP/", 5) == 0) {
        /* A 100 Continue is not the answer: only a final status line counts. */
        const char *sp = memchr(p, ' ', n);
        if (sp && sp[1] != '1') {
            r->t_first_header = hard_now();
            r->content_type[0] = r->retry_after[0] = r->connection[0] = '\0';
            r->www_authenticate[0] = '\0';
        }
    }
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t l = strlen(want[i].name);
        if (n >= l && strncasecmp(p, want[i].name, l) == 0)
            http_header_value((char *)r + want[i].off, want[i].cap, p + l, n - l);
    }
    return n;
}

long hard_do(const hard_req *req, hard_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    CURL *c = req->curl ? req->curl : curl_easy_init();
    if (!c) {
        snprintf(resp->curl_error, sizeof resp->curl_error, "curl_easy_init failed");
        resp->body = strdup("");
        return 0;
    }
    xfer x = {.resp = resp, .body = req->body, .len = req->len};
    http_sink body = {0};
    struct curl_slist *hdrs = NULL;
    char ct[256];
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms ? req->timeout_ms : 120000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, resp->curl_error);
    if (req->cainfo)
        curl_easy_setopt(c, CURLOPT_CAINFO, req->cainfo);
    hdrs = curl_slist_append(hdrs, req->expect_100 ? "Expect: 100-continue" : "Expect:");
    /* curl sends the body anyway after 1 s without an answer; on a loaded
     * machine (sanitizers, CI) the server's early answer can take longer, so
     * wait as long as the request may take. */
    if (req->expect_100)
        curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 30000L);
    if (req->content_type) {
        snprintf(ct, sizeof ct, "Content-Type: %s", req->content_type);
        hdrs = curl_slist_append(hdrs, ct);
    }
    for (int i = 0; req->headers && req->headers[i]; i++)
        hdrs = curl_slist_append(hdrs, req->headers[i]);
    if (req->body) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &x);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    resp->t_start = hard_now();
    CURLcode rc = curl_easy_perform(c);
    resp->t_end = hard_now();
    resp->curl_code = (int)rc;
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

void hard_resp_free(hard_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}

const char *hard_error_code(const char *body, size_t len)
{
    static __thread char code[64];
    code[0] = '\0';
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    if (c && json_is_string(json_object_get(e, "message")) && json_object_size(j) == 1 &&
        json_object_size(e) == 2)
        snprintf(code, sizeof code, "%s", c);
    json_decref(j);
    return code;
}

/* ------------------------------------------------------------- sockets */

int hard_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int hard_send(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

double hard_wait_closed(int fd, double timeout_s)
{
    double t0 = hard_now();
    char buf[4096];
    for (;;) {
        double left = t0 + timeout_s - hard_now();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return hard_now() - t0;
    }
}

int hard_is_open(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 1;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

/* ------------------------------------------------------- batch-8 request */

/* The float32 values of a {"shape","data"} tensor; NULL on a bad tensor. */
static float *tensor_floats(const json_t *t, size_t *count)
{
    const json_t *d = json_object_get(t, "data");
    size_t n = json_array_size(d);
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; f && i < n; i++)
        f[i] = (float)json_number_value(json_array_get(d, i));
    *count = n;
    return f;
}

/* A b64 float32 TENSOR of shape [b, A, W] whose image i is image i % 2 of src. */
static json_t *repeat_tensor(const json_t *src, int b)
{
    size_t n;
    float *f = tensor_floats(src, &n);
    const json_t *shape = json_object_get(src, "shape");
    if (!f || json_array_size(shape) != 3 ||
        json_integer_value(json_array_get(shape, 0)) != 2) {
        free(f);
        return NULL;
    }
    size_t per = n / 2;
    float *out = malloc((size_t)b * per * sizeof *out);
    if (!out) {
        free(f);
        return NULL;
    }
    for (int i = 0; i < b; i++)
        memcpy(out + (size_t)i * per, f + (size_t)(i % 2) * per, per * sizeof *out);
    char *b64 = b64_encode(out, (size_t)b * per * sizeof *out); /* the host is little-endian */
    json_t *t = json_pack("{s:[I,O,O],s:s,s:s}", "shape", (json_int_t)b,
                          json_array_get(shape, 1), json_array_get(shape, 2), "dtype", "float32",
                          "b64", b64);
    free(b64);
    free(out);
    free(f);
    return t;
}

/* {"shape": [b, A, W], "data"} whose image i is image i % 2 of src, divided by k. */
static json_t *repeat_expected(const json_t *src, int b, double k)
{
    const json_t *shape = json_object_get(src, "shape"), *d = json_object_get(src, "data");
    size_t n = json_array_size(d), per = n / 2;
    json_t *data = json_array();
    for (int i = 0; i < b; i++)
        for (size_t j = 0; j < per; j++)
            json_array_append_new(
                data, json_real(json_number_value(json_array_get(d, (size_t)(i % 2) * per + j)) / k));
    return json_pack("{s:[I,O,O],s:o}", "shape", (json_int_t)b, json_array_get(shape, 1),
                     json_array_get(shape, 2), "data", data);
}

/* 1 when the golden request's anchors equal the ssd300_voc priors file exactly. */
static int anchors_are_preset(const json_t *anchors)
{
    const char *dir = getenv("MBX_GOLDEN_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/priors/ssd300_voc.json", dir ? dir : ".");
    json_t *p = json_load_file(path, 0, NULL);
    const json_t *pa = json_object_get(p, "anchors");
    int same = pa && json_equal(json_object_get(pa, "shape"), json_object_get(anchors, "shape")) &&
               json_equal(json_object_get(pa, "data"), json_object_get(anchors, "data"));
    json_decref(p);
    return same;
}

char *hard_batch_body(int b, json_t **expected)
{
    *expected = NULL;
    if (b < 2 || b % 2)
        return NULL;
    json_t *g = load_golden("ssd300_voc_b2");
    if (!g)
        return NULL;
    const json_t *req = json_object_get(g, "request"), *exp = json_object_get(g, "expected");
    if (!anchors_are_preset(json_object_get(req, "anchors"))) {
        fprintf(stderr, "ssd300_voc_b2's anchors are not the ssd300_voc preset\n");
        json_decref(g);
        return NULL;
    }
    double k = b / 2;
    json_t *targets = json_array();
    for (int i = 0; i < b; i++)
        json_array_append(targets, json_array_get(json_object_get(req, "targets"), (size_t)(i % 2)));
    json_t *body = json_pack(
        "{s:{s:s},s:o,s:o,s:o,s:O,s:{s:b,s:b,s:b,s:s}}", "anchors", "preset", "ssd300_voc",
        "loc", repeat_tensor(json_object_get(req, "loc"), b), "conf",
        repeat_tensor(json_object_get(req, "conf"), b), "targets", targets, "config",
        json_object_get(req, "config"), "outputs", "gradients", 1, "per_image", 1, "matches", 0,
        "tensor_format", "b64");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    json_t *e = json_object();
    static const char *const same[] = {"loss", "conf_loss", "loc_loss"};
    for (int i = 0; i < 3; i++)
        json_object_set(e, same[i], json_object_get(exp, same[i]));
    json_object_set_new(e, "normalizer",
                        json_real(json_number_value(json_object_get(exp, "normalizer")) * k));
    static const char *const counts[] = {"num_positives", "num_negatives"};
    for (int i = 0; i < 2; i++)
        json_object_set_new(e, counts[i],
                            json_integer(json_integer_value(json_object_get(exp, counts[i])) *
                                         (json_int_t)k));
    json_t *per = json_array();
    for (int i = 0; i < b; i++) {
        const json_t *src = json_array_get(json_object_get(exp, "per_image"), (size_t)(i % 2));
        json_t *img = json_deep_copy(src);
        for (int j = 0; j < 3; j++)
            json_object_set_new(img, same[j],
                                json_real(json_number_value(json_object_get(src, same[j])) / k));
        json_array_append_new(per, img);
    }
    json_object_set_new(e, "per_image", per);
    json_object_set_new(e, "grad_loc", repeat_expected(json_object_get(exp, "grad_loc"), b, k));
    json_object_set_new(e, "grad_conf", repeat_expected(json_object_get(exp, "grad_conf"), b, k));
    json_decref(g);
    if (!text) {
        json_decref(e);
        return NULL;
    }
    *expected = e;
    return text;
}

/* ------------------------------------------------------- files, processes */

char *hard_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/mbx-hard-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

void hard_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

char *hard_write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok &= fclose(f) == 0;
    chmod(path, mode);
    return ok ? strdup(path) : NULL;
}

int hard_make_cert(const char *dir)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout '%s/key.pem' -out '%s/cert.pem' -days 1 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
             dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

long hard_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}
