/*
 * test_hard_util.h - what the hardening tests (test_hard_*.c) share beyond
 * harness.h: HTTP(S) requests with any headers and timing of their phases,
 * raw loopback sockets for slow clients, the batch-8 SSD300 request built
 * from the ssd300_voc_b2 golden case with its expected answer, a
 * self-signed certificate made with openssl, temporary files, and a
 * process's resident memory.
 */
#ifndef MBX_TEST_HARD_UTIL_H
#define MBX_TEST_HARD_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "harness.h"

/* Monotonic seconds. */
double hard_now(void);

/* ------------------------------------------------------------ the server */

/* harness_init, and a process-exit hook that kills any server a failed
 * test left running. */
void hard_init(int argc, char **argv);
/*
 * server_start and server_stop that keep the list of running servers:
 * hard_start first kills the servers a failed test left behind.  A test's
 * server struct must outlive the test (static storage): a server left
 * running is still read by the harness's log thread.
 */
int hard_start(server *s, const char *const *args, const char *const *env);
int hard_stop(server *s, int sig, double timeout_s);

/* ------------------------------------------------------------------ HTTP */

typedef struct hard_req {
    const char *method;            /* "GET", "POST" */
    const char *url;               /* http:// or https:// */
    const char *content_type;      /* NULL: none */
    const void *body;              /* NULL: no body */
    size_t len;
    const char *const *headers;    /* extra "Name: value" lines, NULL-terminated, or NULL */
    const char *cainfo;            /* CA file for https, NULL: the system's */
    int expect_100;                /* 1: send Expect: 100-continue (else none) */
    long timeout_ms;               /* 0: 120 s */
    void *curl;                    /* an easy handle to reuse (keep-alive), or NULL */
} hard_req;

typedef struct hard_resp {
    long status;                   /* 0 on a transport failure */
    int curl_code;                 /* CURLcode */
    char curl_error[256];
    char *body;                    /* NUL-terminated, malloc'ed */
    size_t len;
    char content_type[128];
    char retry_after[32];
    char connection[32];
    char www_authenticate[160];
    double t_start;                /* hard_now() when the request began */
    double t_body_sent;            /* when the last body byte was handed to curl (0: never) */
    double t_first_header;         /* when the final status line arrived (0: never) */
    double t_end;                  /* when the transfer ended */
} hard_resp;

/* Performs req; fills *resp (free with hard_resp_free).  Returns resp->status. */
long hard_do(const hard_req *req, hard_resp *resp);
void hard_resp_free(hard_resp *resp);
/* The /v1 error code of a body ("" when it is not {"error":{"code","message"}}). */
const char *hard_error_code(const char *body, size_t len);

/* ------------------------------------------------------------- sockets */

/* A blocking TCP connection to 127.0.0.1:port; -1 on failure. */
int hard_connect(int port);
/* Sends all of s; 0, or -1 when the peer is gone. */
int hard_send(int fd, const char *s, size_t n);
/*
 * Waits up to timeout_s for the peer to close fd (EOF or reset), reading
 * and dropping whatever arrives; returns the seconds waited, or -1 when it
 * is still open at the timeout.
 */
double hard_wait_closed(int fd, double timeout_s);
/* 1 when fd is still open as far as a zero-timeout poll tells. */
int hard_is_open(int fd);

/* ------------------------------------------------------- batch-8 request */

/*
 * The /v1/loss body of a batch of b = 2k images: ssd300_voc_b2's two
 * images repeated k times, anchors as {"preset": "ssd300_voc"}, loc and
 * conf as float32 b64 TENSORs, answers as b64 with dense gradients and
 * per-image values.  *expected gets the answer derived from the golden
 * one: with normalization by the batch's positives, repeating the batch k
 * times leaves the loss totals as they are, multiplies the normalizer and
 * the counts by k, divides the per-image losses and every gradient by k.
 * Also checks that the golden request's anchors are exactly the preset's
 * (the golden priors file).  Returns the body (malloc'ed) or NULL.
 */
char *hard_batch_body(int b, json_t **expected);

/* ------------------------------------------------------- files, processes */

/* A fresh private directory under $TMPDIR (malloc'ed path), or NULL. */
char *hard_tempdir(void);
/* Removes the files of dir (not recursive) and dir itself. */
void hard_rmdir(const char *dir);
/* Writes text to dir/name; returns the path (malloc'ed) or NULL. */
char *hard_write_file(const char *dir, const char *name, const char *text, mode_t mode);
/*
 * Makes a self-signed certificate for localhost and 127.0.0.1 (EC P-256,
 * one day) with openssl in dir: dir/cert.pem and dir/key.pem.  Returns 0,
 * or -1 when openssl is missing or fails (the caller skips).
 */
int hard_make_cert(const char *dir);
/* Resident memory of pid in KiB (VmRSS), or -1. */
long hard_rss_kib(pid_t pid);

#endif
