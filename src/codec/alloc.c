/*
 * alloc.c - the codec's one allocation wrapper.  Every codec allocation goes
 * through here so the tests can fail the Nth one (curl's torture, jansson's
 * chaos test).  The hook is process-global and for tests only; the service
 * never sets it.
 */
#include <stdlib.h>

#include "codec_internal.h"

static mbx_codec_malloc_fn hook_malloc;
static mbx_codec_calloc_fn hook_calloc;
static mbx_codec_realloc_fn hook_realloc;
static mbx_codec_free_fn hook_free;

void mbx_codec_set_alloc_funcs(mbx_codec_malloc_fn m, mbx_codec_calloc_fn c,
                               mbx_codec_realloc_fn r, mbx_codec_free_fn f)
{
    hook_malloc = m;
    hook_calloc = c;
    hook_realloc = r;
    hook_free = f;
}

void *mbx_codec_malloc(size_t size)
{
    return hook_malloc ? hook_malloc(size) : malloc(size);
}

void *mbx_codec_calloc(size_t count, size_t size)
{
    return hook_calloc ? hook_calloc(count, size) : calloc(count, size);
}

void *mbx_codec_realloc(void *ptr, size_t size)
{
    return hook_realloc ? hook_realloc(ptr, size) : realloc(ptr, size);
}

void mbx_codec_free(void *ptr)
{
    if (hook_free)
        hook_free(ptr);
    else
        free(ptr);
}
