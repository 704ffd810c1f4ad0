/*
 * harness.h - what the service tests share: starting the real multiboxd
 * on 127.0.0.1 with an ephemeral port (read back from its log), stopping
 * it with a signal, HTTP requests through libcurl, reading files, base64,
 * decoding TENSORs of any format and checking a /v1/loss answer against a
 * golden case with the golden README's tolerances.
 */
#ifndef MBX_TEST_HARNESS_H
#define MBX_TEST_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ------------------------------------------------------------ the server */

typedef struct server {
    pid_t pid;
    int port;
    int stderr_fd;     /* read end of the server's stderr */
    char *log;         /* everything read from stderr so far, NUL-terminated */
    size_t log_len, log_cap;
    int draining_thread; /* 1 while a thread reads stderr */
} server;

/* Path of the multiboxd under test (argv[1] of the test, set by harness_init). */
extern const char *multiboxd_path;
/* Call first thing in main(): takes multiboxd's path from argv[1]. */
void harness_init(int argc, char **argv);

/*
 * Starts multiboxd with args (NULL-terminated; "--listen 127.0.0.1:0" is
 * prepended unless no_listen) and extra environment entries "K=V"
 * (NULL-terminated, may be NULL).  Waits for the "listening on" and
 * "ready" log lines (timeout 30 s).  Returns 0, or -1 if the process died
 * or never got ready (its log is printed).
 */
int server_start(server *s, const char *const *args, const char *const *env, int no_listen);
/* Sends sig and waits up to timeout_s for the exit; returns the exit
 * status, 128+signal if killed by one, -1 on timeout (then SIGKILLs). */
int server_stop(server *s, int sig, double timeout_s);
/*
 * The group teardown of a test file's one shared server: SIGTERM, then up
 * to timeout_s for the exit.  Returns 0 when it exited 0; else -1 with a
 * line on stderr (a sanitizer report makes the exit status non-zero), and
 * sets *failed so that main() can fail even when cmocka ignores it.
 */
int server_stop_shared(server *s, double timeout_s, int *failed);
/* Reads whatever the server has logged so far (non-blocking). */
void server_pump_log(server *s);
/* 1 when the log contains needle (after pumping). */
int server_log_contains(server *s, const char *needle);
/* Waits up to timeout_s for needle in the log; 1 when found. */
int server_wait_log(server *s, const char *needle, double timeout_s);
/* "http://127.0.0.1:PORT" + path, in a static per-thread buffer. */
const char *server_url(const server *s, const char *path);
/* A TCP connection to the server (127.0.0.1, its port), or -1. */
int server_connect(const server *s);

/* Runs multiboxd with args and env to completion (no --listen added);
 * returns its exit status and (if out) its stdout+stderr, malloc'ed. */
int run_multiboxd(const char *const *args, const char *const *env, char **out);

/* ------------------------------------------------------------------ HTTP */

typedef struct http_resp {
    long status;          /* 0 on a transport failure */
    char *body;           /* NUL-terminated, malloc'ed */
    size_t len;
    char content_type[128];
    char retry_after[32];
    char allow[64];
    char connection[32];
    char curl_error[256];
} http_resp;

typedef struct http_req {
    const char *method;       /* "GET", "POST"... */
    const char *url;
    const char *content_type; /* NULL: no Content-Type header */
    const void *body;         /* NULL: no body */
    size_t len;
    int chunked;              /* send the body chunked */
    int expect_continue;      /* send "Expect: 100-continue" (the server may answer before the body) */
    void *curl;               /* a CURL easy handle to reuse (keep-alive), or NULL */
    long timeout_ms;          /* 0: 60 s */
} http_req;

/* Performs req; fills *resp (free with http_resp_free).  Returns resp->status. */
long http_do(const http_req *req, http_resp *resp);

/*
 * The pieces every libcurl client of these tests needs.  http_sink collects
 * a body (always NUL-terminated, malloc'ed: the caller frees data);
 * http_sink_write is its CURLOPT_WRITEFUNCTION.  http_header_value copies
 * the value v[0..n) of a header line into dst[cap], without surrounding
 * spaces and line ends, truncated to fit.
 */
typedef struct http_sink {
    char *data;
    size_t len, cap;
} http_sink;
size_t http_sink_write(char *p, size_t size, size_t nmemb, void *arg);
void http_header_value(char *dst, size_t cap, const char *v, size_t n);
long http_get(const char *url, http_resp *resp);
long http_post_json(const char *url, const char *body, size_t len, http_resp *resp);
void http_resp_free(http_resp *resp);
/* The error code of a JSON error body ("" if the body is not one), static per-thread buffer. */
const char *error_code(const http_resp *resp);

/* ---------------------------------------------------------------- files */

/* Whole file, NUL-terminated, malloc'ed; NULL on failure. */
char *read_file(const char *path, size_t *len);
/* CLOCK_MONOTONIC in seconds. */
double now_s(void);
/* Sleeps ms milliseconds. */
void sleep_ms(int ms);
/* $MBX_GOLDEN_DIR/cases/<name>.json parsed; fails the test if missing. */
json_t *load_golden(const char *name);
/* Names of every golden case (NULL-terminated, malloc'ed array of malloc'ed strings). */
char **golden_case_names(void);
void free_names(char **names);

/* --------------------------------------------------------------- tensors */

typedef enum tensor_form { FORM_NESTED = 0, FORM_FLAT, FORM_B64 } tensor_form;
extern const char *const tensor_form_names[3];

/* Converts a {"shape","data"} tensor to form (b64 as float32 little-endian). New reference. */
json_t *tensor_convert(const json_t *flat, tensor_form form);
/* A golden request rewritten: every input tensor in form, answers in form. New reference. */
json_t *request_in_form(const json_t *request, tensor_form form);

/*
 * Golden case `name`'s request in `form` as compact JSON text (malloc'ed,
 * the caller frees it) and, in *expected, a new reference to its expected
 * answer; NULL (and *expected untouched) when the case cannot be read.
 */
char *golden_body(const char *name, tensor_form form, json_t **expected);

/* Decodes a TENSOR of any form; *data malloc'ed (doubles), shape up to 8 dims. 0 or -1. */
int tensor_decode(const json_t *t, double **data, int64_t *shape, int *rank);

/*
 * Checks a /v1/loss answer against a golden "expected" object with the
 * README's tolerances (losses relative 1e-5, counts and matches exact,
 * gradients within 1e-6 + 1e-4 * max|grad|).  Returns 0, or -1 with the
 * first disagreement in why.
 */
int check_golden(const json_t *answer, const json_t *expected, char *why, size_t cap);

/* Base64 of n bytes, malloc'ed and NUL-terminated. */
char *b64_encode(const void *in, size_t n);

/* A metric's value in Prometheus text (name with its labels exactly as
 * rendered, e.g. `multibox_http_requests_total{handler="/livez",code="200"}`),
 * or -1 if absent. */
double metric_value(const char *text, const char *series);

#endif
