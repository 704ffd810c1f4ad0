/*
 * anchor_cache.c - preset anchors generated with the core's prior-box
 * generator, cached for the anchors endpoint (see anchor_cache.h).
 */
#include "anchor_cache.h"

#include <stdlib.h>
#include <string.h>

#include "multibox/multibox.h"

int svc_anchors_generate(const char *name, float **out, int64_t *count)
{
    mbx_prior_params p;
    mbx_detail d = {0};
    int64_t n = 0;
    *out = NULL;
    *count = 0;
    int rc = mbx_prior_preset(name, &p, &d);
    if (rc == 0)
        rc = mbx_prior_count(&p, &n, &d);
    if (rc != 0)
        return rc;
    if (n < 1 || (uint64_t)n > SIZE_MAX / (4 * sizeof(float)))
        return MBX_E_SHAPE_OVERFLOW;
    float *a = malloc((size_t)n * 4 * sizeof(float));
    if (!a)
        return MBX_E_OUT_OF_MEMORY;
    rc = mbx_prior_generate(&p, a, n, &d);
    if (rc != 0) {
        free(a);
        return rc;
    }
    *out = a;
    *count = n;
    return 0;
}

svc_anchor_cache *svc_anchor_cache_new(void)
{
    svc_anchor_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    const char *const *names = mbx_prior_preset_names();
    for (int i = 0; names && names[i] && i < SVC_ANCHOR_CACHE_MAX; i++) {
        c->sets[i].name = names[i];
        c->count = i + 1;
    }
    return c;
}

void svc_anchor_cache_fill(svc_anchor_cache *c, int i)
{
    if (i < 0 || i >= c->count)
        return;
    svc_anchor_set *s = &c->sets[i];
    if (svc_anchors_generate(s->name, &s->anchors, &s->count) != 0) {
        s->anchors = NULL;
        s->count = 0;
    }
}

const svc_anchor_set *svc_anchor_cache_find(const svc_anchor_cache *c, const char *name)
{
    for (int i = 0; c && i < c->count; i++)
        if (c->sets[i].anchors && strcmp(c->sets[i].name, name) == 0)
            return &c->sets[i];
    return NULL;
}

void svc_anchor_cache_free(svc_anchor_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->count; i++)
        free(c->sets[i].anchors);
    free(c);
}
