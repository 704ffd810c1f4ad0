/*
 * bench_pool.h - a persistent pool of threads for multibox-bench: the
 * threads are created once, so a timed phase pays only for waking them, as a
 * trainer's own pool would.  Used only by the benchmark; not part of the
 * library.
 */
#ifndef MBX_BENCH_POOL_H
#define MBX_BENCH_POOL_H

typedef struct bench_pool bench_pool;

/* One phase of work: called once on every thread of the pool, with the
 * thread's index in [0, num_threads) (index 0 is the calling thread). */
typedef void (*bench_pool_fn)(void *arg, int thread_index);

/*
 * Starts num_threads - 1 worker threads (the caller is thread 0).  Returns
 * the pool, or NULL when num_threads < 1 or a thread or allocation fails
 * (nothing is left running then).
 */
bench_pool *bench_pool_new(int num_threads);

/*
 * Runs fn(arg, t) on every thread t of the pool, the caller included, and
 * returns when all have returned.  Must be called by the thread that created
 * the pool, never concurrently.
 */
void bench_pool_run(bench_pool *pool, bench_pool_fn fn, void *arg);

/* Stops and joins the workers, frees the pool; NULL is a no-op. */
void bench_pool_free(bench_pool *pool);

#endif
