/*
 * buf.h - a growable, NUL-terminated text buffer for rendering small
 * documents (metrics, log lines).  An allocation failure is sticky: later
 * appends do nothing and svc_buf_failed() reports it, so callers check once
 * at the end.  Not thread-safe; one buffer belongs to one thread.
 */
#ifndef SVC_BUF_H
#define SVC_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct svc_buf {
    char *data;   /* NUL-terminated when len > 0 or after any append */
    size_t len;   /* bytes used, excluding the NUL */
    size_t cap;   /* bytes allocated */
    int failed;   /* 1 after an allocation failure */
} svc_buf;

#define SVC_BUF_INIT {NULL, 0, 0, 0}

void svc_buf_append(svc_buf *b, const char *s, size_t n);
void svc_buf_puts(svc_buf *b, const char *s);
void svc_buf_printf(svc_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void svc_buf_vprintf(svc_buf *b, const char *fmt, va_list ap);
/* Appends s as the inside of a JSON string (quotes not included); control
 * characters are escaped and invalid UTF-8 bytes become U+FFFD. */
void svc_buf_json_escape(svc_buf *b, const char *s);
/* Hands the text to the caller (malloc'ed) and resets b; NULL if it failed. */
char *svc_buf_take(svc_buf *b, size_t *len);
void svc_buf_free(svc_buf *b);

#endif
