/*
 * log.c - formats log lines (text or JSON) and writes each with one
 * write(2) on stderr, so lines from concurrent threads never interleave.
 * It must never log a request or response payload.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static svc_log_format log_format = SVC_LOG_TEXT;

void svc_log_set_format(svc_log_format format)
{
    log_format = format;
}

/* RFC 3339 UTC timestamp with milliseconds. */
static void timestamp(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static void emit(svc_buf *b)
{
    if (b->failed || b->len == 0)
        return;
    const char *p = b->data;
    size_t left = b->len;
    while (left > 0) {
        ssize_t n = write(STDERR_FILENO, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
}

/* Appends text with control characters replaced, for text-format lines. */
static void append_plain(svc_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char c = (*p < 0x20 || *p == 0x7f || *p == ' ') ? '_' : (char)*p;
        svc_buf_append(b, &c, 1);
    }
}

static void log_message(const char *level, const char *fmt, va_list ap)
{
    char ts[32];
    svc_buf msg = SVC_BUF_INIT, line = SVC_BUF_INIT;
    timestamp(ts);
    svc_buf_vprintf(&msg, fmt, ap);
    if (msg.failed)
        return;
    if (log_format == SVC_LOG_JSON) {
        svc_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level);
        svc_buf_json_escape(&line, msg.data ? msg.data : "");
        svc_buf_puts(&line, "\"}\n");
    } else {
        svc_buf_printf(&line, "%s %s %s\n", ts, level, msg.data ? msg.data : "");
    }
    emit(&line);
    svc_buf_free(&msg);
    svc_buf_free(&line);
}

void svc_log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_message("info", fmt, ap);
    va_end(ap);
}

void svc_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_message("warn", fmt, ap);
    va_end(ap);
}

void svc_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_message("error", fmt, ap);
    va_end(ap);
}

void svc_log_request(const char *method, const char *path, int status, uint64_t bytes_in,
                     uint64_t bytes_out, double seconds)
{
    char ts[32];
    svc_buf line = SVC_BUF_INIT;
    timestamp(ts);
    if (log_format == SVC_LOG_JSON) {
        svc_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"",
                       ts);
        svc_buf_json_escape(&line, method);
        svc_buf_puts(&line, "\",\"path\":\"");
        svc_buf_json_escape(&line, path);
        svc_buf_printf(&line,
                       "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                       "\"duration_ms\":%.3f}\n",
                       status, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
                       seconds * 1e3);
    } else {
        svc_buf_printf(&line, "%s info request method=", ts);
        append_plain(&line, method);
        svc_buf_puts(&line, " path=");
        append_plain(&line, path);
        svc_buf_printf(&line, " status=%d bytes_in=%llu bytes_out=%llu duration_ms=%.3f\n",
                       status, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
                       seconds * 1e3);
    }
    emit(&line);
    svc_buf_free(&line);
}
