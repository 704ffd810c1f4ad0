/*
 * router.c - segment-by-segment matching of request paths against the
 * route table (see router.h).  No allocation; never reads past the NULs.
 */
#include "router.h"

#include <stdio.h>
#include <string.h>

/* Matches one pattern; on success copies the parameters into m. */
static int match_pattern(const char *pat, const char *path, svc_route_match *m)
{
    int np = 0;
    while (*pat && *path) {
        if (*pat != '/' || *path != '/')
            return 0;
        pat++;
        path++;
        size_t pl = strcspn(pat, "/"), sl = strcspn(path, "/");
        if (pl >= 2 && pat[0] == '{' && pat[pl - 1] == '}') {
            if (sl == 0 || sl >= SVC_ROUTE_PARAM_MAX || np >= SVC_ROUTE_MAX_PARAMS)
                return 0;
            memcpy(m->params[np], path, sl);
            m->params[np][sl] = '\0';
            np++;
        } else if (pl != sl || memcmp(pat, path, pl) != 0) {
            return 0;
        }
        pat += pl;
        path += sl;
    }
    if (*pat || *path)
        return 0;
    m->nparams = np;
    return 1;
}

void svc_router_match(const svc_route *routes, int n, const char *method, const char *path,
                      svc_route_match *m)
{
    memset(m, 0, sizeof *m);
    m->route = -1;
    for (int i = 0; i < n; i++) {
        if (!match_pattern(routes[i].pattern, path, m))
            continue;
        m->route = i;
        for (int k = 0; k < SVC_ROUTE_MAX_METHODS && routes[i].methods[k].method; k++)
            if (strcmp(routes[i].methods[k].method, method) == 0)
                m->method = &routes[i].methods[k];
        return;
    }
}

void svc_router_allow(const svc_route *route, char *out, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return;
    out[0] = '\0';
    for (int k = 0; k < SVC_ROUTE_MAX_METHODS && route->methods[k].method; k++) {
        int w = snprintf(out + used, cap - used, "%s%s", k ? ", " : "", route->methods[k].method);
        if (w < 0 || (size_t)w >= cap - used)
            return;
        used += (size_t)w;
    }
}
