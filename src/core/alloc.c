/*
 * alloc.c - the core's allocation hook: malloc/free by default, or a pair a
 * test installed to inject failures.  The only mutable file-scope state of
 * the core lives here, and only tests ever change it.
 */
#include <stdlib.h>

#include "alloc.h"

static mbx_core_malloc_fn hook_malloc = NULL;
static mbx_core_free_fn hook_free = NULL;

void *mbx_core_alloc(size_t size)
{
    return hook_malloc ? hook_malloc(size) : malloc(size);
}

void mbx_core_free(void *ptr)
{
    if (!ptr)
        return;
    if (hook_free)
        hook_free(ptr);
    else
        free(ptr);
}

void mbx_core_set_allocator(mbx_core_malloc_fn malloc_fn, mbx_core_free_fn free_fn)
{
    hook_malloc = malloc_fn;
    hook_free = free_fn;
}
