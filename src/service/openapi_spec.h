/*
 * openapi_spec.h - api/openapi.yaml embedded at build time by mbx-embed
 * (embed.c); the generated openapi_spec.c defines these.
 */
#ifndef SVC_OPENAPI_SPEC_H
#define SVC_OPENAPI_SPEC_H

#include <stddef.h>

extern const char svc_openapi_yaml[];   /* NUL-terminated */
extern const size_t svc_openapi_yaml_len; /* bytes, excluding the NUL */

#endif
