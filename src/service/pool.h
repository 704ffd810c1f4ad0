/*
 * pool.h - jobs handed from the HTTP thread to the libuv loop thread and
 * run on libuv's worker pool.
 *
 * Any thread reserves a place (svc_pool_reserve: the admission check
 * against workers + queue depth) and enqueues a job; the enqueue takes a
 * mutex and wakes the loop with uv_async_send.  The loop thread keeps a
 * FIFO and starts at most `workers` jobs at a time; a started job runs
 * phases of parallel units with uv_queue_work (svc_job_phase) and ends
 * with svc_job_done.  Only the loop thread calls svc_job_phase,
 * svc_job_done and the job callbacks.
 */
#ifndef SVC_POOL_H
#define SVC_POOL_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

typedef struct svc_pool svc_pool;
typedef struct svc_job svc_job;
struct svc_metrics;

typedef void (*svc_job_fn)(svc_job *job);           /* loop thread */
typedef void (*svc_unit_fn)(svc_job *job, int unit); /* a worker */

typedef struct svc_unit {
    uv_work_t work;
    svc_job *job;
    int index;
} svc_unit;

struct svc_job {
    /* Set by the owner before svc_pool_enqueue. */
    svc_job_fn start;    /* the job left the queue: call svc_job_phase or svc_job_done */
    svc_job_fn complete; /* after svc_job_done: the pool no longer touches the job */
    svc_job_fn poke;     /* loop thread, after svc_job_poke (NULL: pokes are ignored) */
    int internal;        /* 1: not an HTTP request (start-up work), no metrics */

    /* Private to the pool. */
    svc_pool *pool;
    svc_job *next;
    svc_unit *units;
    int units_cap;
    int units_pending;             /* loop thread */
    atomic_int units_left;         /* workers: the last one runs the tail */
    svc_unit_fn unit_fn;
    svc_job_fn tail_fn;            /* runs on the worker that finishes a phase last */
    svc_job_fn phase_done;         /* loop thread, once every unit of the phase is done */
    uint64_t t_enqueue_ns, t_start_ns;
    int parked;                    /* loop thread: waiting for its input, no run slot held */
    int finished;                  /* under the pool's mutex: svc_job_done has run */
    int poke_listed;               /* under the pool's mutex: in the poke list */
    svc_job *poke_next;
};

/*
 * Creates the pool on loop (initializes its uv_async handle, so call from
 * the loop's thread before uv_run).  metrics may be NULL.  Returns 0 or a
 * negative MBX_E_* code.
 */
int svc_pool_new(svc_pool **out, uv_loop_t *loop, int workers, int queue_depth,
                 struct svc_metrics *metrics);
/* Closes the async handle (loop thread); free after uv_run has returned. */
void svc_pool_close(svc_pool *pool);
void svc_pool_free(svc_pool *pool);

/* Any thread: takes a place for one job; 0, or MBX_E_OVERLOADED when full. */
int svc_pool_reserve(svc_pool *pool);
/* Any thread: 1 when a reservation would succeed now (an early hint). */
int svc_pool_has_room(const svc_pool *pool);
/* Any thread, after a successful reserve: hands job to the loop. */
void svc_pool_enqueue(svc_pool *pool, svc_job *job);

/*
 * Before any job: each worker thread, on its first unit, takes the next of
 * cpus[0..n) (round robin) as its own, and from then on stays on it while
 * the job of the unit it runs is the only one admitted, and may run on any
 * of them otherwise (see affinity.h for why).  At most SVC_POOL_MAX_PIN
 * are kept; returns how many.
 */
#define SVC_POOL_MAX_PIN 1024
int svc_pool_pin(svc_pool *pool, const int *cpus, int n);

int svc_pool_workers(const svc_pool *pool);
/* Jobs started and not done (loop thread). */
int svc_pool_running(const svc_pool *pool);
/* Reserved and not yet started: the queue depth gauge (any thread). */
int64_t svc_pool_waiting(const svc_pool *pool);
/* Reserved and not done (any thread); 0 means idle. */
int64_t svc_pool_admitted(const svc_pool *pool);

/*
 * Loop thread: runs unit(job, i) for i in [0, units) on the workers; the
 * worker finishing last then runs tail(job) (NULL: none); then done(job)
 * runs on the loop thread.  Returns 0 or MBX_E_OUT_OF_MEMORY (nothing was
 * started then).
 */
int svc_job_phase(svc_job *job, int units, svc_unit_fn unit, svc_job_fn tail, svc_job_fn done);

/* Loop thread: the job is over; releases its place and calls job->complete. */
void svc_job_done(svc_job *job);

/*
 * A job that waits for input still arriving (a request body read while
 * the loss already runs): svc_job_park gives its run slot to the queue, so
 * a slow client never keeps other jobs from starting, and svc_job_unpark
 * takes it back (even when the slots are full: the job's input is in, so
 * it finishes as soon as it can).  Both on the loop thread, between phases.
 */
void svc_job_park(svc_job *job);
void svc_job_unpark(svc_job *job);
/*
 * Any thread: runs job->poke(job) on the loop thread soon (several pokes
 * before it runs make one call).  The caller must know the job is not
 * freed yet; a poke that arrives after svc_job_done is dropped.
 */
void svc_job_poke(svc_job *job);

/* Monotonic nanoseconds, shared by the service for durations. */
uint64_t svc_now_ns(void);

#endif
