/*
 * jpath.c - the JSON path of the value being parsed ("targets[3].boxes[7]"),
 * kept in a fixed buffer on the parser's stack, and the helper that writes
 * "<path>: <message>" into an mbx_detail.  No allocation.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codec_internal.h"

/* Longest key copied into a path: keys are user text. */
#define JPATH_MAX_KEY 48

void jpath_init(jpath *p)
{
    p->len = 0;
    p->buf[0] = '\0';
}

/* Appends text, or marks the path cut with "..." when it does not fit. */
static void jpath_append(jpath *p, const char *s, size_t n)
{
    size_t cap = sizeof p->buf - 1;
    if (p->len + n > cap) {
        memcpy(p->buf + cap - 3, "...", 3);
        p->len = cap;
        p->buf[cap] = '\0';
        return;
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

size_t jpath_key(jpath *p, const char *key)
{
    size_t old = p->len;
    size_t n = strlen(key);
    if (p->len > 0)
        jpath_append(p, ".", 1);
    if (n > JPATH_MAX_KEY) {
        jpath_append(p, key, JPATH_MAX_KEY);
        jpath_append(p, "...", 3);
    } else {
        jpath_append(p, key, n);
    }
    return old;
}

size_t jpath_index(jpath *p, int64_t index)
{
    size_t old = p->len;
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "[%" PRId64 "]", index);
    jpath_append(p, tmp, (size_t)n);
    return old;
}

void jpath_restore(jpath *p, size_t len)
{
    if (len < p->len) {
        p->len = len;
        p->buf[len] = '\0';
    }
}

const char *jpath_str(const jpath *p)
{
    return p->len ? p->buf : "(root)";
}

int jpath_fail(mbx_detail *detail, int code, const jpath *p, const char *fmt, ...)
{
    if (detail) {
        char msg[sizeof detail->message];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        mbx_detail_set(detail, code, "%s: %s", jpath_str(p), msg);
    }
    return code;
}
