/*
 * multibox_loss.c - the offline tool: `multibox-loss [FILE|-]` reads one
 * /v1/loss request body (JSON; a golden case's "request" member is one, the
 * whole case file is not), computes the loss on the calling thread and
 * prints the /v1/loss response JSON on stdout.  Exit status: 0 success;
 * 2 the request was rejected (the error JSON of the service,
 * {"error": {"code", "message"}}, on stderr); 1 anything else (unreadable
 * file, out of memory, bad usage), also with an error JSON on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "multibox/multibox.h"

static const char usage[] =
    "usage: multibox-loss [FILE|-]\n"
    "\n"
    "Computes the SSD MultiBox loss and its gradients for one request.\n"
    "FILE (or standard input when absent or '-') holds a POST /v1/loss body:\n"
    "  {\"anchors\", \"loc\", \"conf\", \"targets\", \"config\", \"outputs\"}\n"
    "(a golden case's \"request\" member is one; the whole case file is not).\n"
    "The response JSON goes to standard output.\n"
    "\n"
    "Exit status: 0 success; 2 the request is invalid (error JSON\n"
    "{\"error\": {\"code\", \"message\"}} on standard error); 1 other failures.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n";

/* Prints the error JSON on stderr; returns the exit status for code. */
static int report(int code, const char *message)
{
    char *text = NULL;
    size_t len = 0;
    if (mbx_error_render_json(code, message, &text, &len) == 0) {
        fwrite(text, 1, len, stderr);
        fputc('\n', stderr);
        free(text);
    } else {
        fprintf(stderr, "multibox-loss: %s\n", message ? message : mbx_error_message(code));
    }
    switch (code) {
    case MBX_E_OUT_OF_MEMORY:
    case MBX_E_INTERNAL:
    case MBX_E_INVALID_ARGUMENT:
        return 1;
    default:
        return 2;
    }
}

/* Reads all of f into a malloc'ed buffer; 0 or -1 with errno. */
static int read_all(FILE *f, char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (n == cap) {
            char *p = cap > ((size_t)-1) / 2 ? NULL : realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                errno = ENOMEM;
                return -1;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                free(buf);
                errno = e ? e : EIO;
                return -1;
            }
            break;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Parses, computes and renders; returns the exit status. */
static int run(const char *body, size_t len)
{
    mbx_detail detail = {0, ""};
    mbx_request *req = NULL;
    mbx_loss *loss = NULL;
    mbx_result res;
    char *text = NULL;
    size_t text_len = 0;
    int rc;

    memset(&res, 0, sizeof res);
    rc = mbx_request_parse_json(body, len, &req, &detail);
    if (rc)
        return report(rc, detail.message);
    mbx_shape shape = mbx_request_shape(req, 1);
    rc = mbx_loss_new(&loss, &req->config, &shape, &detail);
    if (rc == 0)
        rc = mbx_result_alloc(req, &res, &detail);
    if (rc == 0)
        rc = mbx_loss_compute(loss, &req->batch, &res, &detail);
    if (rc == 0)
        rc = mbx_response_render_json(req, &res, &text, &text_len, &detail);
    mbx_result_release(&res);
    mbx_loss_free(loss);
    mbx_request_free(req);
    if (rc)
        return report(rc, detail.message[0] ? detail.message : NULL);
    int status = 0;
    if (fwrite(text, 1, text_len, stdout) != text_len || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0)
        status = report(MBX_E_INTERNAL, "cannot write the response to standard output");
    free(text);
    return status;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("multibox-loss %s\n", MBX_VERSION_STRING);
            return 0;
        }
        if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "multibox-loss: unknown option '%s'\n%s", a, usage);
            return 1;
        }
        if (path) {
            fprintf(stderr, "multibox-loss: only one input file is read\n%s", usage);
            return 1;
        }
        path = a;
    }

    FILE *f = stdin;
    if (path && strcmp(path, "-") != 0) {
        f = fopen(path, "rb");
        if (!f) {
            char msg[256];
            snprintf(msg, sizeof msg, "cannot open %s: %s", path, strerror(errno));
            return report(MBX_E_INVALID_ARGUMENT, msg);
        }
    }
    char *body = NULL;
    size_t len = 0;
    int rd = read_all(f, &body, &len);
    int err = errno;
    if (f != stdin)
        fclose(f);
    if (rd) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot read %s: %s", path ? path : "standard input",
                 strerror(err));
        return report(err == ENOMEM ? MBX_E_OUT_OF_MEMORY : MBX_E_INVALID_ARGUMENT, msg);
    }
    int status = run(body, len);
    free(body);
    return status;
}
