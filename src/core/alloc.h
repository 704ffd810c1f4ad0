/*
 * alloc.h - the core's one allocation path (private; not part of the public
 * API).  Every byte libmultibox allocates goes through mbx_core_alloc() and
 * back through mbx_core_free(), so a test can install a hook that makes the
 * Nth allocation fail (jansson's chaos test, curl's torture test).  The hook
 * is process-wide: install it only while no other thread allocates through
 * the core (tests only).
 */
#ifndef MBX_CORE_ALLOC_H
#define MBX_CORE_ALLOC_H

#include <stddef.h>

typedef void *(*mbx_core_malloc_fn)(size_t size);
typedef void (*mbx_core_free_fn)(void *ptr);

/* malloc(size) through the installed hook; NULL on failure. */
void *mbx_core_alloc(size_t size);
/* free(ptr) through the installed hook; NULL is a no-op. */
void mbx_core_free(void *ptr);
/*
 * Installs a malloc/free pair (both NULL: back to the C library's).  Test
 * hook: not thread-safe against concurrent allocations through the core.
 */
void mbx_core_set_allocator(mbx_core_malloc_fn malloc_fn, mbx_core_free_fn free_fn);

#endif
