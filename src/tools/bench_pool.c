/*
 * bench_pool.c - the persistent thread pool of multibox-bench.  Workers spin
 * briefly on a generation counter before sleeping on a condition variable,
 * so back-to-back phases (match, then gradients) start without a scheduler
 * round trip.  No work is queued: each phase calls one function on every
 * thread, which picks its own share of the work.
 */
#include "bench_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_LIMIT 4000 /* ~0.1 ms of pause before sleeping: short, since cores are shared */

struct bench_pool {
    int num_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t start_cv, done_cv;
    atomic_uint generation;  /* bumped to start a phase */
    atomic_int pending;      /* workers still running the phase */
    atomic_int stop;
    bench_pool_fn fn;
    void *arg;
};

struct worker_arg {
    bench_pool *pool;
    int index;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p)
{
    struct worker_arg wa = *(struct worker_arg *)p;
    bench_pool *pool = wa.pool;
    free(p);
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&pool->generation) == seen && spins < SPIN_LIMIT) {
            cpu_relax();
            spins++;
        }
        if (atomic_load(&pool->generation) == seen) {
            pthread_mutex_lock(&pool->mutex);
            while (atomic_load(&pool->generation) == seen)
                pthread_cond_wait(&pool->start_cv, &pool->mutex);
            pthread_mutex_unlock(&pool->mutex);
        }
        seen = atomic_load(&pool->generation);
        if (atomic_load(&pool->stop))
            return NULL;
        pool->fn(pool->arg, wa.index);
        if (atomic_fetch_sub(&pool->pending, 1) == 1) {
            pthread_mutex_lock(&pool->mutex);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->mutex);
        }
    }
}

/* Wakes the workers for the phase already stored in pool->fn/arg (or for stop). */
static void start_generation(bench_pool *pool)
{
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->mutex);
}

bench_pool *bench_pool_new(int num_threads)
{
    if (num_threads < 1)
        return NULL;
    bench_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->num_threads = num_threads;
    pool->threads = calloc((size_t)num_threads, sizeof *pool->threads);
    if (!pool->threads) {
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->start_cv, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->stop, 0);
    for (int t = 1; t < num_threads; t++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = pool;
            wa->index = t;
        }
        if (!wa || pthread_create(&pool->threads[t], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->num_threads = t; /* only threads 1..t-1 exist */
            bench_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void bench_pool_run(bench_pool *pool, bench_pool_fn fn, void *arg)
{
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->num_threads - 1);
    if (pool->num_threads > 1)
        start_generation(pool);
    fn(arg, 0);
    int spins = 0;
    while (atomic_load(&pool->pending) > 0 && spins < SPIN_LIMIT) {
        cpu_relax();
        spins++;
    }
    if (atomic_load(&pool->pending) > 0) {
        pthread_mutex_lock(&pool->mutex);
        while (atomic_load(&pool->pending) > 0)
            pthread_cond_wait(&pool->done_cv, &pool->mutex);
        pthread_mutex_unlock(&pool->mutex);
    }
}

void bench_pool_free(bench_pool *pool)
{
    if (!pool)
        return;
    if (pool->num_threads > 1) {
        atomic_store(&pool->stop, 1);
        start_generation(pool);
        for (int t = 1; t < pool->num_threads; t++)
            pthread_join(pool->threads[t], NULL);
    }
    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->start_cv);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}
