/*
 * affinity.h - keeping the worker threads on CPUs of their own.
 *
 * A request's units are queued together; a sleeping worker woken for the
 * second unit was often placed by the scheduler on the CPU the first one
 * runs on and waited there for the load balancer (median 1 to 2 ms, in 17
 * of 24 requests, on 2 CPUs), so one worker did most of the batch.  Each
 * worker pinned to a CPU of its own starts at once (0.12 ms: the match
 * phase of a batch of 32 took 1.9 to 2.0 ms instead of 3.2).  The pool
 * keeps a worker there only while its job is alone on the server
 * (pool.c): under load the scheduler's balancing served more requests.
 *
 * The HTTP thread is kept on one CPU for the same kind of reason: a local
 * client and the thread that reads its upload wake each other at every
 * socket buffer's worth, and the scheduler's wake-up affinity then often
 * ran both on one CPU, taking turns, while the other CPU idled (traced
 * with sched_switch, batch 32 after a torchvision step: the 28 MB upload
 * took 10.2 to 10.5 ms, 6.7 to 7.9 ms with the HTTP thread pinned).  On a
 * VM an idle virtual CPU may count as preempted, and the wakee is then put
 * on the waker's CPU even when the other one is free; so the HTTP thread
 * also moves off a client that came onto its CPU (server.c).
 */
#ifndef SVC_AFFINITY_H
#define SVC_AFFINITY_H

#include "config.h"

/*
 * The CPUs this process may run on, ascending, at most cap of them, and
 * their count; with cpus NULL only the count of all of them.  0: unknown.
 */
int svc_affinity_cpus(int *cpus, int cap);

/*
 * Whether the workers are pinned under policy p: always, never, or (auto)
 * when they are at least as many as the CPUs allowed, so that each CPU of
 * the set gets a worker of its own; fewer workers than CPUs (a CPU quota
 * on a bigger machine, or an explicit --workers) stay free to move.
 */
int svc_affinity_wanted(svc_pin_policy p, int workers, int allowed_cpus);

/*
 * Lets the calling thread run only on cpus[0..n) (one CPU: pinned to it);
 * 0, or a negative MBX_E_* code.
 */
int svc_affinity_set_self(const int *cpus, int n);

/*
 * Lets the calling thread run on every CPU the process may use (those of
 * its main thread); 0, or a negative MBX_E_* code.
 */
int svc_affinity_free_self(void);

#endif
