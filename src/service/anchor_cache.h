/*
 * anchor_cache.h - the anchors of every preset, generated once during
 * start-up on the workers and read-only afterwards, for
 * GET /v1/anchors/{preset}.  Filling entry i is one work unit; readers
 * look entries up only after start-up has ended (app->ready), which
 * orders the writes before the reads.
 */
#ifndef SVC_ANCHOR_CACHE_H
#define SVC_ANCHOR_CACHE_H

#include <stdint.h>

#define SVC_ANCHOR_CACHE_MAX 16

typedef struct svc_anchor_set {
    const char *name; /* preset name (the core's static string) */
    float *anchors;   /* [count][4] xyxy, NULL until filled or on failure */
    int64_t count;
} svc_anchor_set;

typedef struct svc_anchor_cache {
    int count; /* number of presets */
    svc_anchor_set sets[SVC_ANCHOR_CACHE_MAX];
} svc_anchor_cache;

/* Lists the presets (nothing generated yet); NULL when out of memory. */
svc_anchor_cache *svc_anchor_cache_new(void);
/* Generates entry i (a worker); on failure the entry stays empty. */
void svc_anchor_cache_fill(svc_anchor_cache *c, int i);
/* The filled entry for name, or NULL. */
const svc_anchor_set *svc_anchor_cache_find(const svc_anchor_cache *c, const char *name);
void svc_anchor_cache_free(svc_anchor_cache *c);

/*
 * Generates a preset's anchors into a new malloc'ed array (*out, *count).
 * Returns 0 or a negative MBX_E_* code (MBX_E_UNKNOWN_PRESET...).
 */
int svc_anchors_generate(const char *name, float **out, int64_t *count);

#endif
