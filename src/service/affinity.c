/*
 * affinity.c - CPU affinity of the calling thread, on Linux
 * (sched_getaffinity / pthread_setaffinity_np); elsewhere nothing is pinned.
 */
#include "affinity.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "multibox/multibox.h"

int svc_affinity_cpus(int *cpus, int cap)
{
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    if (!cpus)
        return CPU_COUNT(&set);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
#else
    (void)cpus;
    (void)cap;
    return 0;
#endif
}

int svc_affinity_wanted(svc_pin_policy p, int workers, int allowed_cpus)
{
    if (p == SVC_PIN_ALWAYS)
        return allowed_cpus > 0;
    if (p == SVC_PIN_NEVER)
        return 0;
    return allowed_cpus > 1 && workers >= allowed_cpus;
}

int svc_affinity_set_self(const int *cpus, int n)
{
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < n; i++)
        CPU_SET(cpus[i], &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : MBX_E_INTERNAL;
#else
    (void)cpus;
    (void)n;
    return MBX_E_INTERNAL;
#endif
}

int svc_affinity_free_self(void)
{
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0)
        return MBX_E_INTERNAL;
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : MBX_E_INTERNAL;
#else
    return MBX_E_INTERNAL;
#endif
}
