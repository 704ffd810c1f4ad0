/*
 * log.h - the service's logger: one line per event on stderr, as text or
 * as one JSON object per line.  Request lines carry method, path, status,
 * bytes in and out and duration, never a payload.  Thread-safe: each line
 * is written with a single write(2).
 */
#ifndef SVC_LOG_H
#define SVC_LOG_H

#include <stdint.h>

typedef enum svc_log_format { SVC_LOG_TEXT = 0, SVC_LOG_JSON } svc_log_format;

/* Sets the format for the whole process; call once before other threads start. */
void svc_log_set_format(svc_log_format format);

void svc_log_info(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void svc_log_warn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void svc_log_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* One access-log line. status 0 means the client went away before an answer. */
void svc_log_request(const char *method, const char *path, int status, uint64_t bytes_in,
                     uint64_t bytes_out, double seconds);

#endif
