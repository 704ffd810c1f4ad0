/*
 * memory.h - the service's malloc policy.  Request bodies, tensors, results
 * and answers run to tens of megabytes, and each fresh page costs a page
 * fault (about 15-20 ms per 28 MB on a loaded VM, as much as the loss
 * itself), so while requests come, freed memory stays with the process and
 * the next request reuses it; once the server has been idle for
 * SVC_MEMORY_IDLE_MS, the free memory goes back to the kernel, so an idle
 * server stays small.
 */
#ifndef SVC_MEMORY_H
#define SVC_MEMORY_H

#define SVC_MEMORY_IDLE_MS 5000

/* Sets glibc's malloc options (no per-allocation mmap, no trimming on free).
 * Call once at start-up, before the other threads start.  A no-op elsewhere. */
void svc_memory_init(void);
/* Any thread: a request's work has ended (its big buffers are freed or will be soon). */
void svc_memory_note_work(void);
/* Loop thread, periodically: gives free memory back to the kernel once the
 * last work is SVC_MEMORY_IDLE_MS old and idle is 1 (nothing in flight). */
void svc_memory_tick(int idle);

#endif
