/*
 * copy.h - copying a request body's bytes where nobody reads them soon.
 */
#ifndef SVC_COPY_H
#define SVC_COPY_H

#include <stddef.h>

/*
 * Copies n bytes from src to dst (not overlapping), as memcpy, but for big
 * copies on x86-64 with streaming (non-temporal) stores: the bytes go to
 * memory without each destination line being read first and without
 * filling the caches with them.  For a body read whole before its loss
 * starts: tens of megabytes that the workers read only later, by which
 * time ordinary stores would have been evicted anyway, after pushing the
 * client's and the socket's buffers out (measured on 2 cores over loopback,
 * batch 32, 40 paired rounds each after a 0.3 s pause: 0.88x the request's
 * time).  The stores are fenced before it returns,
 * so any later store (the one publishing the body to a worker) is ordered
 * after them.
 */
void svc_copy_stream(void *dst, const void *src, size_t n);

#endif
