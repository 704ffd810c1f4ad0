/*
 * memory.c - the malloc policy of memory.h on glibc: M_MMAP_MAX 0 (big
 * blocks come from the arenas, so freed ones are reused without faults,
 * instead of a fresh mmap each time) and M_TRIM_THRESHOLD at its largest
 * (free memory is not returned on each free), one arena; malloc_trim(0)
 * returns the free memory when the server has been idle for a while.  Other C libraries (and the
 * sanitizers' allocators) keep their own policy: the calls compile away or
 * do nothing there.
 */
#include "memory.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "pool.h"

static atomic_ullong last_work_ns;
static atomic_int dirty; /* work has ended since the last trim */

void svc_memory_init(void)
{
#if defined(__GLIBC__)
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
    /* One arena: malloc_trim() gives back the top of the main arena only,
     * and a big block freed by another thread than the one that allocated
     * it is then reused by whichever thread asks next. */
    mallopt(M_ARENA_MAX, 1);
#endif
}

void svc_memory_note_work(void)
{
    atomic_store(&last_work_ns, svc_now_ns());
    atomic_store(&dirty, 1);
}

void svc_memory_tick(int idle)
{
    if (!idle || !atomic_load(&dirty))
        return;
    if (svc_now_ns() - atomic_load(&last_work_ns) < (uint64_t)SVC_MEMORY_IDLE_MS * 1000000u)
        return;
    atomic_store(&dirty, 0);
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
